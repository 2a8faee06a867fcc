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
    /// Behaviours no source settles (graph-api.md §14), each with its default.
    pub behaviour: BehaviourConfig,
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
    /// Lists that exist from the start, each written as the body of Graph's create-list call:
    /// `{displayName, description?, columns: [columnDefinition…], list: {template}}`.
    #[serde(default)]
    pub lists: Vec<serde_json::Value>,
}

/// SharePoint's resource-unit throttling, per app per tenant per minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    pub enabled: bool,
    /// Resource units per minute (single-item read and delta with a token 1; list reads, delta
    /// without a token, create, update and delete 2). SharePoint's default for a tenant with up
    /// to 1,000 licences is 1,250.
    pub resource_units_per_minute: u32,
    /// The status of a throttled answer: 429 (the usual) or 503 (SharePoint's "server too busy").
    pub respond_with: u16,
    /// The length of the budget window. SharePoint's is one minute; tests shorten it so a
    /// client can wait out a window quickly. The budget stays `resource_units_per_minute` per
    /// window.
    pub window_seconds: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            resource_units_per_minute: 1250,
            respond_with: 429,
            window_seconds: 60,
        }
    }
}

/// Deterministic fault injection: the same seed gives the same faults for the same sequence of
/// requests. Each fault draws from its own seeded stream, so turning one on does not move the
/// others.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    pub seed: u64,
    /// Share of Graph requests answered 429 (0.0 – 1.0), before they take effect.
    pub rate_429: f64,
    /// Share answered 503 `serviceNotAvailable`.
    pub rate_503: f64,
    /// Share answered 500 `generalException`.
    pub rate_500: f64,
    /// Share answered 504 `gatewayTimeout`.
    pub rate_504: f64,
    /// `Retry-After` seconds sent with injected 429/503 (fractions allowed, as Graph sends them).
    pub retry_after_seconds: f64,
    /// Share of HTTP responses cut off mid-body **after** the request took effect: the client
    /// sees a broken connection and cannot know whether its write happened.
    pub rate_drop: f64,
    /// Added latency per HTTP request, in milliseconds.
    pub latency_ms: u64,
    /// Extra latency drawn uniformly from `0..=latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// Share of Graph requests whose access token is revoked early: answered 401 (expired) and
    /// the token stays unusable, so the client must fetch a new one.
    pub rate_token_expiry: f64,
    /// Only requests of these kinds get faults (`item.create`, `item.update`, `item.delta`,
    /// `batch`, `site.get` … as in the counts); empty means every Graph request. Dropped
    /// connections and latency apply to the HTTP request, so a `$batch` counts as `batch`.
    pub kinds: Vec<String>,
}

/// Behaviours of the real service that no source settles (graph-api.md §14). Each is a setting,
/// so tests can cover both answers; the defaults are the emulator's best reading, explained in
/// the README.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    /// Refuse choice values that are not among the column's `choices` (default: accept, as
    /// SharePoint's API paths historically skip UI validation).
    pub enforce_choices: bool,
    /// Refuse creates without, and updates clearing, a `required` column (default: not
    /// enforced, as REST/CSOM writes are reported not to enforce it).
    pub enforce_required: bool,
    /// The site's regional time zone as minutes east of UTC: date-only values are stored as
    /// local midnight and read back as that instant in UTC (e.g. -300 turns `2024-05-01` into
    /// `2024-05-01T05:00:00Z`). No daylight saving.
    pub site_utc_offset_minutes: i32,
    /// How long a delta token stays usable; older tokens get `410 Gone` (undocumented for list
    /// items; 7 days is the figure documented for directory objects).
    pub delta_token_lifetime_seconds: u64,
    /// The inner code of the `410` a stale delta token gets: `resyncChangesApplyDifferences` or
    /// `resyncChangesUploadDifferences`.
    pub delta_resync_code: String,
    /// Re-deliver the latest state of items touched by the last N changes before each delta
    /// token (the service may replay; clients must merge idempotently). 0: no replays.
    pub delta_replay_changes: u64,
    /// The message of `412` on an eTag mismatch.
    pub precondition_failed_message: String,
    /// The message of `400 invalidRequest` for a value of the wrong type.
    pub invalid_value_message: String,
    /// The message for text over `maxLength`; `{field}` and `{max}` are replaced.
    pub too_long_message: String,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        Self {
            enforce_choices: false,
            enforce_required: false,
            site_utc_offset_minutes: 0,
            delta_token_lifetime_seconds: 7 * 24 * 3600,
            delta_resync_code: "resyncChangesApplyDifferences".to_owned(),
            delta_replay_changes: 0,
            precondition_failed_message: "ETag does not match current item's value".to_owned(),
            invalid_value_message: "Invalid request".to_owned(),
            too_long_message:
                "The value of field '{field}' exceeds its maximum length of {max} characters."
                    .to_owned(),
        }
    }
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
                lists: Vec::new(),
            }],
            token_lifetime_seconds: 3599,
            default_page_size: 200,
            max_page_size: 5000,
            throttle: ThrottleConfig::default(),
            faults: FaultConfig::default(),
            behaviour: BehaviourConfig::default(),
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

impl FaultConfig {
    /// Every rate is a share between 0 and 1, and the status rates together at most 1.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("rate_429", self.rate_429),
            ("rate_503", self.rate_503),
            ("rate_500", self.rate_500),
            ("rate_504", self.rate_504),
            ("rate_drop", self.rate_drop),
            ("rate_token_expiry", self.rate_token_expiry),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "faults.{name} is {rate}; use a share between 0.0 and 1.0"
                ));
            }
        }
        let statuses = self.rate_429 + self.rate_503 + self.rate_500 + self.rate_504;
        if statuses > 1.0 {
            return Err(format!(
                "faults.rate_429 + rate_503 + rate_500 + rate_504 is {statuses}; together they must not exceed 1.0"
            ));
        }
        if !self.retry_after_seconds.is_finite() || self.retry_after_seconds < 0.0 {
            return Err("faults.retry_after_seconds must be 0 or more".to_owned());
        }
        Ok(())
    }
}

impl EmulatorConfig {
    /// Checks what serde cannot: shares, statuses and codes with a fixed set of values.
    pub fn validate(&self) -> Result<(), String> {
        self.faults.validate()?;
        if self.throttle.window_seconds == 0 {
            return Err("throttle.window_seconds must be at least 1".to_owned());
        }
        if ![429, 503].contains(&self.throttle.respond_with) {
            return Err(format!(
                "throttle.respond_with is {}; use 429 or 503",
                self.throttle.respond_with
            ));
        }
        let codes = [
            "resyncChangesApplyDifferences",
            "resyncChangesUploadDifferences",
        ];
        if !codes.contains(&self.behaviour.delta_resync_code.as_str()) {
            return Err(format!(
                "behaviour.delta_resync_code is '{}'; use one of {}",
                self.behaviour.delta_resync_code,
                codes.join(", ")
            ));
        }
        if self.tenants.iter().all(|t| t.apps.is_empty()) {
            return Err(
                "no tenant has an app: add tenants[].apps with a client_id and client_secret"
                    .to_owned(),
            );
        }
        if self.default_page_size == 0 || self.max_page_size == 0 {
            return Err("default_page_size and max_page_size must be at least 1".to_owned());
        }
        Ok(())
    }

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
        let config: Self = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?
        } else {
            serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?
        };
        config.validate().map_err(invalid)?;
        Ok(config)
    }
}
