//! Client-credentials tokens, cached and refreshed five minutes before they expire.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use syncbridge_api::ConnectorError;
use tokio::sync::Mutex;

use crate::config::SharePointConfig;

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Fetches and caches access tokens.
pub struct TokenSource {
    http: reqwest::Client,
    url: String,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(http: reqwest::Client, config: &SharePointConfig) -> Self {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            config.authority_host.trim_end_matches('/'),
            config.tenant_id
        );
        Self {
            http,
            url,
            cached: Mutex::new(None),
        }
    }

    /// A valid token, from the cache when it is not close to expiry.
    pub async fn token(&self, config: &SharePointConfig) -> Result<String, ConnectorError> {
        let mut cached = self.cached.lock().await;
        if let Some(entry) = cached.as_ref()
            && Instant::now() < entry.refresh_at
        {
            return Ok(entry.token.clone());
        }
        let fresh = self.fetch(config).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets the cached token (after a 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Fetches a token; a network failure, a cut-off answer or a 5xx/429 from the authority is
    /// tried again (up to four times, with growing pauses); a refusal is final.
    async fn fetch(&self, config: &SharePointConfig) -> Result<Cached, ConnectorError> {
        const ATTEMPTS: u32 = 4;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_once(config).await {
                Err(error) if error.is_retriable() && attempt < ATTEMPTS => {
                    tracing::warn!(attempt, error = %error, "token request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn fetch_once(&self, config: &SharePointConfig) -> Result<Cached, ConnectorError> {
        let scope = config.scopes.join(" ");
        let form = [
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.expose_secret()),
            ("scope", scope.as_str()),
            ("grant_type", "client_credentials"),
        ];
        let unreachable = |error: reqwest::Error| {
            ConnectorError::external(format!(
                "cannot reach the token endpoint {}: {error}",
                self.url
            ))
            .with_hint("check `authority_host` and the network")
        };
        let response = self
            .http
            .post(&self.url)
            .form(&form)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ConnectorError::external(format!(
                "the token endpoint {} answered {status}",
                self.url
            )));
        }
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() {
            let code = body
                .get("error")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown_error");
            let description = body
                .get("error_description")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let first_line = description.lines().next().unwrap_or(description);
            return Err(ConnectorError::external(format!(
                "the token endpoint refused client `{}` of tenant `{}` ({status}, {code}): {first_line}",
                config.client_id, config.tenant_id
            ))
            .with_hint("check tenant_id, client_id and the client secret of this connection")
            .permanent());
        }
        let token = body
            .get("access_token")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                ConnectorError::external(format!(
                    "the token endpoint {} answered without an access_token",
                    self.url
                ))
            })?;
        let lifetime = body
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .unwrap_or(3599);
        let margin = Duration::from_secs(300).min(Duration::from_secs(lifetime / 2));
        Ok(Cached {
            token: token.to_owned(),
            refresh_at: Instant::now() + Duration::from_secs(lifetime) - margin,
        })
    }
}
