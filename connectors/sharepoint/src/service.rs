//! One Graph request → one response, with the retry policy: a `Retry-After` pauses every worker
//! of the tenant (a shared gate), 5xx and dropped connections back off exponentially with jitter,
//! a 401 refreshes the token once. What is retriable and what is permanent is decided in one
//! place, [`classify`].

use std::time::{Duration, Instant};

use rand::Rng as _;
use syncbridge_api::ConnectorError;

use crate::auth::TokenSource;
use crate::config::SharePointConfig;
use crate::pacing::{AdaptiveLimit, Pacer, estimate_cost};

/// What a status means for the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Success,
    /// 404: the item is gone (a delete counts this as done).
    NotFound,
    /// Throttled or the service is struggling: wait and try again.
    Retriable,
    /// The request itself is wrong (bad value, unknown field, conflict): retrying cannot help.
    Permanent,
}

/// Classifies a Graph status (graph-api.md §8–§9).
pub fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Success,
        404 | 410 => Class::NotFound,
        408 | 429 | 500 | 502 | 503 | 504 | 509 => Class::Retriable,
        _ => Class::Permanent,
    }
}

/// Seconds from a `Retry-After` value (Graph sends integers or decimals).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The longest `Retry-After` inside a `$batch` answer, found by a plain scan of its text (no
/// JSON parse, no lower-cased copy: every answer is scanned, and Graph echoes each created item
/// in full), so the pause can start as soon as the answer is read.
///
/// Candidates are the answer's `-` bytes, found with `memchr`: far fewer than its quotes (an
/// earlier scan stopped at every quote and took about three times as long).
pub fn batch_retry_after(text: &str) -> Option<Duration> {
    const NEEDLE: &[u8] = b"\"retry-after\":";
    const DASH_AT: usize = 6;
    let bytes = text.as_bytes();
    let mut longest: Option<Duration> = None;
    for dash in memchr::memchr_iter(b'-', bytes) {
        let Some(start) = dash.checked_sub(DASH_AT) else {
            continue;
        };
        let end = start + NEEDLE.len();
        if !bytes
            .get(start..end)
            .is_some_and(|name| name.eq_ignore_ascii_case(NEEDLE))
        {
            continue;
        }
        // `end` follows an ASCII `:`, so it is a character boundary.
        let value: String = text[end..]
            .trim_start()
            .trim_start_matches('"')
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if let Some(wait) = parse_retry_after(&value) {
            longest = Some(longest.map_or(wait, |l| l.max(wait)));
        }
    }
    longest
}

/// A body as text. Graph answers in UTF-8, taken as is: `Response::text` would decode it
/// lossily, a slower check and a copy of every answer. Anything else is decoded lossily too.
fn text_of(body: bytes::Bytes) -> String {
    match String::from_utf8(Vec::from(body)) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

/// A response with its body as text.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The `Location` header (a fresh delta enumeration after `410 Gone`).
    pub location: Option<String>,
    pub text: String,
}

impl RawResponse {
    /// The body parsed as JSON (text that is not JSON becomes a JSON string).
    pub fn parsed(self) -> GraphResponse {
        let body = if self.text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&self.text).unwrap_or(serde_json::Value::String(self.text))
        };
        GraphResponse {
            status: self.status,
            retry_after: self.retry_after,
            location: self.location,
            body,
        }
    }
}

/// A response with its body parsed.
#[derive(Debug, Clone)]
pub struct GraphResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The `Location` header (a fresh delta enumeration after `410 Gone`).
    pub location: Option<String>,
    pub body: serde_json::Value,
}

impl GraphResponse {
    /// Graph's error code and message, for dead-letter entries.
    pub fn error(&self) -> (String, String) {
        let code = self
            .body
            .pointer("/error/code")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_owned();
        let message = self
            .body
            .pointer("/error/message")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        (code, message)
    }
}

/// Sends Graph requests for one connection.
pub struct GraphService {
    pub(crate) http: reqwest::Client,
    pub(crate) config: SharePointConfig,
    tokens: TokenSource,
    /// Nobody sends before this instant (the tenant was told to wait).
    /// A plain mutex: setting the pause must not yield, or a worker woken by the slot this one
    /// just released could send before the pause is in place.
    paused_until: std::sync::Mutex<Option<Instant>>,
    /// Requests in flight, adapted to how the service answers.
    pub(crate) limit: AdaptiveLimit,
    /// Spreads the rest of the resource-unit budget once `RateLimit-*` headers appear.
    pub(crate) pacer: Pacer,
}

impl std::fmt::Debug for GraphService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphService")
            .field("base", &self.config.graph_base_url)
            .finish_non_exhaustive()
    }
}

/// The User-Agent Microsoft asks integrators to send.
pub fn user_agent() -> String {
    format!("ISV|SyncBridge|SyncBridge/{}", env!("CARGO_PKG_VERSION"))
}

impl GraphService {
    pub fn new(config: SharePointConfig) -> Result<Self, ConnectorError> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent())
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ConnectorError::internal(format!("cannot build the HTTP client: {e}")))?;
        let tokens = TokenSource::new(http.clone(), &config);
        let config_concurrency = config.concurrency;
        Ok(Self {
            http,
            config,
            tokens,
            paused_until: std::sync::Mutex::new(None),
            limit: AdaptiveLimit::new(config_concurrency),
            pacer: Pacer::default(),
        })
    }

    /// The absolute URL of a path relative to the Graph root.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.config.graph_base_url.trim_end_matches('/'))
        }
    }

    pub async fn token(&self) -> Result<String, ConnectorError> {
        self.tokens.token(&self.config).await
    }

    /// Waits until the tenant-wide pause (from a `Retry-After`) is over.
    pub async fn wait_for_gate(&self) {
        loop {
            let until = *self
                .paused_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await
                }
                _ => return,
            }
        }
    }

    /// Pauses every request of this connection for `wait`.
    pub fn pause(&self, wait: Duration) {
        let mut until = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let candidate = Instant::now() + wait;
        if until.is_none_or(|u| u < candidate) {
            *until = Some(candidate);
        }
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            "Graph asked to slow down; pausing all requests"
        );
    }

    /// Feeds `RateLimit-Remaining` / `RateLimit-Reset` (from a response or a batch entry) to the
    /// pacer.
    pub fn observe_rate_limit(&self, remaining: Option<&str>, reset: Option<&str>) {
        if let (Some(remaining), Some(reset)) = (
            remaining.and_then(|r| r.trim().parse::<u32>().ok()),
            reset.and_then(parse_retry_after),
        ) {
            self.pacer.observe(remaining, reset);
        }
    }

    fn backoff(attempt: u32) -> Duration {
        let base = Duration::from_millis(200) * 2u32.saturating_pow(attempt.min(6));
        let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
        base + Duration::from_millis(jitter)
    }

    /// Sends one request, retrying what is retriable; returns the final response (which may be a
    /// permanent error the caller classifies) or an error when retries ran out.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        extra_headers: &[(&str, &str)],
    ) -> Result<GraphResponse, ConnectorError> {
        let cost = estimate_cost(&method, path, body);
        let body = match body {
            Some(body) => Some(serde_json::to_vec(body).map_err(|e| {
                ConnectorError::internal(format!("cannot serialize a Graph request: {e}"))
            })?),
            None => None,
        };
        let response = self
            .send_serialized(method, path, body, cost, extra_headers)
            .await?;
        Ok(response.parsed())
    }

    /// [`send`](Self::send) for a body already serialized as JSON, costing `cost` resource
    /// units; the answer's text is left to the caller, who may need only part of it (a
    /// `$batch` answer carries every created item whole).
    pub async fn send_serialized(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        cost: u32,
        extra_headers: &[(&str, &str)],
    ) -> Result<RawResponse, ConnectorError> {
        let url = self.url(path);
        // Shared, not copied, by every attempt.
        let body = body.map(bytes::Bytes::from);
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            self.wait_for_gate().await;
            self.pacer.reserve(cost).await;
            let _slot = self.limit.acquire().await;
            // The wait for a slot may have outlasted a pause another worker started meanwhile.
            self.wait_for_gate().await;
            let token = self.token().await?;
            let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
            for (name, value) in extra_headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let outcome = request.send().await;
            attempt += 1;
            let response = match outcome {
                Ok(response) => response,
                Err(error) => {
                    if attempt >= self.config.max_attempts {
                        return Err(ConnectorError::external(format!(
                            "{method} {url} failed {attempt} times: {error}"
                        )));
                    }
                    tracing::warn!(url = %url, attempt, error = %error, "request failed; retrying");
                    tokio::time::sleep(Self::backoff(attempt)).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = header("retry-after").as_deref().and_then(parse_retry_after);
            let location = header("location");
            self.observe_rate_limit(
                header("ratelimit-remaining").as_deref(),
                header("ratelimit-reset").as_deref(),
            );
            match status {
                429 | 503 => self.limit.on_throttle(),
                200..=299 => self.limit.on_success(),
                _ => {}
            }
            let text = match response.bytes().await {
                Ok(body) => text_of(body),
                Err(error) => {
                    // The connection dropped mid-body: the request may or may not have happened.
                    if attempt >= self.config.max_attempts {
                        return Err(ConnectorError::external(format!(
                            "{method} {url}: response lost: {error}"
                        )));
                    }
                    tokio::time::sleep(Self::backoff(attempt)).await;
                    continue;
                }
            };
            // Throttled requests inside a `$batch`: pause before anything else, so no other worker
            // sends in the meantime (parsing a large answer takes a while).
            if status == 200
                && let Some(wait) = batch_retry_after(&text)
            {
                self.pause(wait);
            }
            let response = RawResponse {
                status,
                retry_after,
                location,
                text,
            };
            if status == 401 && !refreshed {
                refreshed = true;
                self.tokens.invalidate().await;
                continue;
            }
            if status == 401 {
                let (code, message) = response.parsed().error();
                return Err(ConnectorError::external(format!(
                    "Graph refused the token ({code}): {message}"
                ))
                .with_hint("check the app registration's permissions (Sites.Manage.All)")
                .permanent());
            }
            if classify(status) == Class::Retriable && attempt < self.config.max_attempts {
                match retry_after {
                    Some(wait) => self.pause(wait),
                    None => tokio::time::sleep(Self::backoff(attempt)).await,
                }
                continue;
            }
            return Ok(response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases = [
            (200, Class::Success),
            (201, Class::Success),
            (204, Class::Success),
            (400, Class::Permanent),
            (403, Class::Permanent),
            (404, Class::NotFound),
            (409, Class::Permanent),
            (412, Class::Permanent),
            (429, Class::Retriable),
            (500, Class::Retriable),
            (503, Class::Retriable),
            (504, Class::Retriable),
        ];
        for (status, class) in cases {
            assert_eq!(classify(status), class, "status {status}");
        }
    }

    #[test]
    fn retry_after_accepts_decimals() {
        assert_eq!(parse_retry_after("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("0.249"), Some(Duration::from_millis(249)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn bodies_become_text_and_invalid_utf8_is_replaced() {
        assert_eq!(text_of(bytes::Bytes::from("{\"é\":1}")), "{\"é\":1}");
        assert_eq!(
            text_of(bytes::Bytes::from_static(b"ok \xff end")),
            "ok \u{fffd} end"
        );
    }

    #[test]
    fn retry_after_is_found_inside_batch_answers() {
        let text = r#"{"responses":[{"id":"1","status":201,"headers":{}},{"id":"2","status":429,"headers":{"Retry-After":"0.5"}},{"id":"3","status":503,"headers":{"retry-after": "2"}}]}"#;
        assert_eq!(batch_retry_after(text), Some(Duration::from_secs(2)));
        assert_eq!(batch_retry_after(r#"{"responses":[]}"#), None);
        // Names and values around it that are not the header, text that is not ASCII.
        let text = r#"{"responses":[{"id":"1","status":201,"body":{"fields":{"Title":"\"retry-after\" — é","retry-afterX":"9"}}},{"id":"2","status":429,"headers":{"RETRY-AFTER":"1.5"}}],"x":"\"retry-after\":"}"#;
        assert_eq!(batch_retry_after(text), Some(Duration::from_millis(1500)));
        // Dashes everywhere else (dates, GUIDs), one at the very start, mixed case.
        let text = r#"-{"responses":[{"id":"1","status":201,"body":{"Due":"2024-05-06","eTag":"\"b4f6e2c1-8d3a-4f5e\""}},{"id":"2","status":429,"headers":{"rEtRy-AfTeR":"3"}}]}"#;
        assert_eq!(batch_retry_after(text), Some(Duration::from_secs(3)));
    }

    #[test]
    fn user_agent_is_decorated() {
        assert!(user_agent().starts_with("ISV|SyncBridge|SyncBridge/"));
    }
}
