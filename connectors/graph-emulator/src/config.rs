//! What the emulator serves: tenants with their registered apps, sites with pre-created lists,
//! token lifetime, paging, throttling and fault injection. Every setting has a default, so
//! `EmulatorConfig::default()` is a working single-tenant, single-site setup.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The whole emulator configuration (YAML or JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorConfig {
    pub tenants: Vec<TenantConfig>,
    pub sites: Vec<SiteConfig>,
    /// Lifetime of issued tokens, in seconds (Entra ID issues about an hour: 3599).
    pub token_lifetime_seconds: u64,
    /// Items per page when `$top` is not given (SharePoint: 200).
    pub default_page_size: usize,
    /// The largest `$top` honoured; larger values are clamped (reported as 5000).
    pub max_page_size: usize,
    pub throttle: ThrottleConfig,
    pub faults: FaultConfig,
    /// Keep sites, lists and items here across restarts.
    pub data_file: Option<PathBuf>,
}

/// A tenant (GUID or domain) and the apps registered in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    pub apps: Vec<AppConfig>,
}

/// An app registration: client id and the secret it authenticates with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default = "default_app_name")]
    pub display_name: String,
}

fn default_app_name() -> String {
    "SyncBridge".to_owned()
}

/// A site by host name and server-relative path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub hostname: String,
    pub path: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// SharePoint's resource-unit throttling, per app per tenant per minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    pub enabled: bool,
    /// Resource units per minute (single-item read 1, list read/create/update/delete 2).
    pub resource_units_per_minute: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            resource_units_per_minute: 1250,
        }
    }
}

/// Deterministic fault injection: the same seed gives the same faults for the same requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    pub seed: u64,
    /// Share of Graph requests answered 429 (0.0 – 1.0).
    pub rate_429: f64,
    /// Share answered 503.
    pub rate_503: f64,
    /// `Retry-After` seconds sent with injected 429/503.
    pub retry_after_seconds: f64,
    /// Only requests of these kinds get faults (`item.create`, `item.update`, `site.get` … as in
    /// the counts); empty means every Graph request.
    pub kinds: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            tenants: vec![TenantConfig {
                id: "syncbridge-demo".to_owned(),
                apps: vec![AppConfig {
                    client_id: "00000000-0000-4000-8000-000000000001".to_owned(),
                    client_secret: "demo-client-secret-change-me".to_owned(),
                    display_name: default_app_name(),
                }],
            }],
            sites: vec![SiteConfig {
                hostname: "contoso.sharepoint.com".to_owned(),
                path: "/sites/projects".to_owned(),
                display_name: Some("Projects".to_owned()),
            }],
            token_lifetime_seconds: 3599,
            default_page_size: 200,
            max_page_size: 5000,
            throttle: ThrottleConfig::default(),
            faults: FaultConfig::default(),
            data_file: None,
        }
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read emulator config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("emulator config {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl EmulatorConfig {
    /// Reads a YAML or JSON file (`.json` is JSON; anything else YAML).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))
        } else {
            serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))
        }
    }
}
