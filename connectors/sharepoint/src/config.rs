//! The connection a SharePoint target uses: where Graph and the token authority are, the app's
//! credentials, the site, and how hard to push.

use secrecy::SecretString;
use serde::Deserialize;

/// What to do with text longer than a column allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextOverflow {
    /// Refuse the row (it goes to the dead-letter queue with the column and lengths).
    #[default]
    DeadLetter,
    /// Cut the text to the column's maximum length.
    Truncate,
}

/// The SharePoint target's configuration (the engine builds it from the meta-store).
#[derive(Debug, Clone, Deserialize)]
pub struct SharePointConfig {
    /// Graph's root, e.g. `https://graph.microsoft.com/v1.0` (or an emulator's).
    #[serde(default = "default_graph_base_url")]
    pub graph_base_url: String,
    /// The token authority, e.g. `https://login.microsoftonline.com`.
    #[serde(default = "default_authority_host")]
    pub authority_host: String,
    pub tenant_id: String,
    pub client_id: String,
    /// Never printed: `SecretString` redacts itself.
    pub client_secret: SecretString,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The site's host name, e.g. `contoso.sharepoint.com`.
    pub site_hostname: String,
    /// The site's server-relative path, e.g. `/sites/pmo`.
    pub site_path: String,
    /// `$batch` requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Writes per `$batch` (Graph allows at most 20).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub text_overflow: TextOverflow,
    /// Attempts per request before a retriable failure is reported.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_graph_base_url() -> String {
    "https://graph.microsoft.com/v1.0".to_owned()
}

fn default_authority_host() -> String {
    "https://login.microsoftonline.com".to_owned()
}

fn default_scopes() -> Vec<String> {
    vec!["https://graph.microsoft.com/.default".to_owned()]
}

fn default_concurrency() -> usize {
    4
}

fn default_batch_size() -> usize {
    20
}

fn default_attempts() -> u32 {
    8
}
