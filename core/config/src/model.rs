//! The declarative configuration, as users write it in YAML or JSON.
//!
//! These structs are the single source of truth for the file format: their doc comments become
//! the JSON Schema's descriptions (`syncbridge schema`), `deny_unknown_fields` turns a typo into an
//! error instead of a silently ignored key, and defaults live in named functions so the schema and
//! the code agree on them.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret as written in the file: a literal or a `${env:…}` / `${file:…}` reference.
/// Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if crate::secret_ref::SecretRef::parse(&self.0).is_some() {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str("\"[redacted]\"")
        }
    }
}

/// A whole SyncBridge configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file format version. Only `1` exists.
    pub version: u32,
    /// Parent applications or product domains that own databases.
    #[serde(default)]
    pub applications: Vec<Application>,
    /// Logical databases and their physical instances.
    #[serde(default)]
    pub databases: Vec<Database>,
    /// SharePoint (Microsoft Graph) connections with their sites and lists.
    #[serde(default)]
    pub sharepoint: Vec<SharePointConnection>,
    /// Sync definitions: which table goes to which lists, and how.
    #[serde(default)]
    pub syncs: Vec<SyncDefinition>,
}

/// A parent application or product domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Unique name, referenced by `databases[].application`.
    pub name: String,
    #[serde(default)]
    pub owner_team: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "default_application_status")]
    pub status: ApplicationStatus,
}

fn default_application_status() -> ApplicationStatus {
    ApplicationStatus::Active
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplicationStatus {
    Active,
    Archived,
}

/// A logical database: a stable identity, independent of where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Unique name, referenced by `syncs[].source.database`.
    pub name: String,
    /// The owning application (`applications[].name`).
    pub application: String,
    /// The source connector: `postgres`, `mysql`, `sqlserver`, `sqlite`, or a plugin's kind.
    #[serde(rename = "type")]
    pub db_type: String,
    #[serde(default = "default_environment")]
    pub environment: Environment,
    /// The database name on the server (the file path for SQLite).
    pub database_name: String,
    #[serde(default = "default_enabled_status")]
    pub status: EnabledStatus,
    /// Physical endpoints. Reads use the first healthy one by role and priority.
    pub instances: Vec<DatabaseInstance>,
}

fn default_environment() -> Environment {
    Environment::Prod
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Environment {
    Dev,
    Staging,
    Prod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnabledStatus {
    Active,
    Disabled,
}

fn default_enabled_status() -> EnabledStatus {
    EnabledStatus::Active
}

/// One physical endpoint of a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseInstance {
    /// Unique within the database, e.g. `primary`, `replica-eu`.
    pub label: String,
    /// Host name or address (for SQLite: leave out and set `db_name` to the file path).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// The database name on this instance; defaults to the database's `database_name`.
    #[serde(default)]
    pub db_name: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The password: a literal (stored encrypted) or a reference `${env:NAME}` / `${file:PATH}`
    /// (stored as the reference and resolved when used).
    #[serde(default)]
    pub password: Option<SecretValue>,
    /// A whole connection URL (`postgres://user:pass@host:5432/db`) instead of host, port,
    /// db_name, user and password; it is split into those fields when applied, and its password
    /// is stored encrypted. References are resolved when the file is applied.
    #[serde(default)]
    pub url: Option<SecretValue>,
    #[serde(default = "default_role")]
    pub role: InstanceRole,
    /// Lower numbers are tried first within a role.
    #[serde(default = "default_priority")]
    pub priority: i32,
    #[serde(default = "default_enabled_status")]
    pub status: EnabledStatus,
    /// Connector-specific options (TLS mode, timeouts …).
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

fn default_role() -> InstanceRole {
    InstanceRole::Primary
}

fn default_priority() -> i32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceRole {
    Primary,
    Secondary,
}

/// A target connection: a Microsoft Graph app registration in one tenant and the sites it
/// writes to, or (with `type`) a target connector from a native plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharePointConnection {
    /// Unique name, referenced by `syncs[].targets[].connection`.
    pub name: String,
    /// The target connector: `sharepoint` (the default), or the target kind of a native plugin
    /// loaded from `SYNCBRIDGE_PLUGIN_DIR` (e.g. `jsonl`), which gets `options` as its
    /// configuration. Sites and lists keep their meaning: where the collections live and which.
    #[serde(rename = "type", default = "default_target_type")]
    pub connector: String,
    /// The Entra ID tenant (GUID or domain). Required for SharePoint.
    #[serde(default)]
    pub tenant_id: String,
    /// The app registration's client id. Required for SharePoint.
    #[serde(default)]
    pub client_id: String,
    /// The client secret: a literal (stored encrypted) or `${env:NAME}` / `${file:PATH}`.
    /// Required for SharePoint; a plugin target gets it as `client_secret` when set.
    #[serde(default)]
    pub client_secret: Option<SecretValue>,
    /// A plugin target's settings, passed to it as its configuration. Not used by SharePoint.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Where tokens come from.
    #[serde(default = "default_authority_host")]
    pub authority_host: String,
    /// The Graph endpoint (point it at `syncbridge emulator` for local work).
    #[serde(default = "default_graph_base_url")]
    pub graph_base_url: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_enabled_status")]
    pub status: EnabledStatus,
    /// Sites reached through this connection.
    #[serde(default)]
    pub sites: Vec<SharePointSite>,
}

/// The built-in target connector.
pub const SHAREPOINT: &str = "sharepoint";

pub fn default_target_type() -> String {
    SHAREPOINT.to_owned()
}

pub fn default_authority_host() -> String {
    "https://login.microsoftonline.com".to_owned()
}

pub fn default_graph_base_url() -> String {
    "https://graph.microsoft.com/v1.0".to_owned()
}

pub fn default_scopes() -> Vec<String> {
    vec!["https://graph.microsoft.com/.default".to_owned()]
}

/// A SharePoint site, by host name and server-relative path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharePointSite {
    /// e.g. `contoso.sharepoint.com`.
    pub hostname: String,
    /// Server-relative path, e.g. `/sites/pmo`.
    pub path: String,
    /// Lists on this site that syncs write to (created by `syncbridge provision` if missing).
    #[serde(default)]
    pub lists: Vec<SharePointList>,
}

/// A target list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharePointList {
    /// The list's display name, unique within its site.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "default_template")]
    pub template: String,
}

fn default_template() -> String {
    "genericList".to_owned()
}

/// How one table is kept in step with one or more lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncDefinition {
    /// Unique name, used by `syncbridge run NAME`.
    pub name: String,
    pub source: SyncSource,
    #[serde(default = "default_mode")]
    pub mode: SyncMode,
    /// Who wins when both sides changed (two-way only).
    #[serde(default = "default_conflict_policy")]
    pub conflict_policy: ConflictPolicy,
    pub key: KeySpec,
    pub cursor: CursorSpec,
    /// How rows are routed to targets.
    #[serde(default = "default_target_strategy")]
    pub target_strategy: TargetStrategy,
    /// The lists rows go to. `SINGLE`: exactly one. `CONDITIONAL`: predicates in order, first
    /// match wins, one target marked `default` takes the rest.
    pub targets: Vec<SyncTarget>,
    /// `CONDITIONAL` only: a WASM sharding predicate, `wasm:MODULE#FUNCTION`, instead of `when`
    /// on each target. It names a target per row, or none for the default target.
    #[serde(default)]
    pub sharding: Option<String>,
    /// Which source columns go to which list columns.
    pub mappings: Vec<FieldMapping>,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Limit a large definition to a daily window and row budget.
    #[serde(default)]
    pub window: Option<BackgroundWindow>,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

fn default_mode() -> SyncMode {
    SyncMode::OneWayPush
}

fn default_conflict_policy() -> ConflictPolicy {
    ConflictPolicy::SourceWins
}

fn default_target_strategy() -> TargetStrategy {
    TargetStrategy::Single
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncMode {
    /// Source → lists.
    OneWayPush,
    /// Source → lists, plus list → source for `PULL_ONLY` and `BIDIRECTIONAL` fields.
    TwoWay,
    /// Rows are written once and never updated or deleted in the list.
    ArchiveOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictPolicy {
    SourceWins,
    DestinationWins,
    LatestWins,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetStrategy {
    Single,
    Conditional,
}

/// The table a definition reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncSource {
    /// `databases[].name`.
    pub database: String,
    /// The table, as `schema.table` or `table`.
    pub table: String,
    /// Which instances to read from; by default every instance of the database, by role and
    /// priority.
    #[serde(default)]
    pub instances: Vec<SyncSourceInstance>,
}

/// One instance bound to a definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncSourceInstance {
    /// `databases[].instances[].label`.
    pub instance: String,
    #[serde(default = "default_role")]
    pub role: InstanceRole,
    #[serde(default = "default_priority")]
    pub priority: i32,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// How a source row's identity is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub strategy: KeyStrategy,
    /// `COMPOSITE_COLUMNS`: the key columns in order. `PRIMARY_KEY`: optional, taken from the
    /// table when left out.
    #[serde(default)]
    pub columns: Vec<String>,
    /// `UNIQUE_CONSTRAINT`: the constraint's name.
    #[serde(default)]
    pub constraint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyStrategy {
    PrimaryKey,
    UniqueConstraint,
    CompositeColumns,
    /// A hash of the whole mapped row, for tables without a stable key. Needs the `FULL_SCAN`
    /// cursor: only a whole read can tell that an updated or deleted row's old identity is gone.
    Hashed,
}

/// How changes are found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CursorSpec {
    pub strategy: CursorStrategy,
    /// `UPDATED_AT`: the watermark column.
    #[serde(default)]
    pub column: Option<String>,
    /// `UPDATED_AT`: how far behind the watermark to re-read, in seconds, because statement time
    /// is not commit time.
    #[serde(default = "default_look_back")]
    pub look_back_seconds: u64,
    /// `LSN` (PostgreSQL): the logical replication slot to read from. By default SyncBridge
    /// derives a name from the database and table, creates the slot on the first run and
    /// recreates it on `run --full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
}

fn default_look_back() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CursorStrategy {
    UpdatedAt,
    Lsn,
    FullScan,
}

/// One list a definition may write to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncTarget {
    /// Unique within the definition, e.g. `Active`; what a predicate routes to.
    pub name: String,
    /// `sharepoint[].name`.
    pub connection: String,
    /// `hostname:/path` of one of the connection's sites; may be left out when it has one.
    #[serde(default)]
    pub site: Option<String>,
    /// The list's display name on that site.
    pub list: String,
    /// `CONDITIONAL`: a CEL predicate over the mapped row, e.g. `status == 'Active'`.
    #[serde(default)]
    pub when: Option<String>,
    /// `CONDITIONAL`: takes rows no predicate matched. Exactly one target is the default.
    #[serde(default)]
    pub default: bool,
}

/// One column mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// The source column.
    pub source: String,
    /// The list column's internal name.
    pub target: String,
    /// The SharePoint column type to provision (`text`, `note`, `number`, `currency`,
    /// `dateTime`, `boolean`, `choice`, `lookup`); inferred from the source type when left out.
    #[serde(default)]
    pub target_type: Option<String>,
    #[serde(default = "default_direction")]
    pub direction: SyncDirection,
    /// A rule applied on the way to the list: `trim`, `upper`, `round(2)`, `wasm:module#function` …
    #[serde(default)]
    pub transform: Option<String>,
    /// Part of the key (informational; the key itself is `key`).
    #[serde(default)]
    pub key: bool,
}

fn default_direction() -> SyncDirection {
    SyncDirection::PushOnly
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncDirection {
    Bidirectional,
    PushOnly,
    PullOnly,
}

/// When a definition runs under `syncbridge serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// A cron expression (five fields), e.g. `*/15 * * * *`.
    pub cron: String,
}

/// A daily window and row budget for large definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackgroundWindow {
    /// Start of the window, `HH:MM` (local time of the host).
    pub start: String,
    /// End of the window, `HH:MM`; earlier than `start` means it spans midnight.
    pub end: String,
    /// Rows per day at most.
    #[serde(default)]
    pub daily_row_budget: Option<i64>,
    /// Spread a first sync over this many days.
    #[serde(default)]
    pub days_to_complete: Option<i32>,
}
