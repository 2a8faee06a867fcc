//! The command line, as clap sees it. Doc comments here are the `--help` text.

use std::path::PathBuf;

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// SyncBridge keeps SharePoint Online lists in step with PostgreSQL, SQL Server, MySQL/MariaDB
/// and SQLite tables through Microsoft Graph.
///
/// Exit codes: 0 ok, 1 finished with failed items or drift found, 2 bad input (usage, config,
/// validation), 3 a dependency is unreachable (database, Graph), 4 internal error.
#[derive(Debug, Parser)]
#[command(
    name = "syncbridge",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The meta-store: `sqlite://PATH` (one file, created if missing) or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "SYNCBRIDGE_STORE",
        default_value = "sqlite://syncbridge.db"
    )]
    pub store: String,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log line format on stderr (text is coloured only on a terminal, and not when NO_COLOR is set to a non-empty value).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SYNCBRIDGE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the meta-store's tables.
    Migrate,
    /// Upsert a declarative config (YAML or JSON) into the meta-store.
    ///
    /// Idempotent: a second apply of the same file changes nothing and says so. Every change is
    /// written to the audit log.
    Apply(ApplyArgs),
    /// Print the JSON Schema of the config file format.
    Schema,
    /// Show what is configured and the last runs.
    Status,
    /// Describe a source database's tables, columns, keys and indexes into the inventory.
    Introspect(IntrospectArgs),
    /// Compare each sync's source table with its last snapshot and its mappings.
    ///
    /// Severities: CRITICAL (a mapped or key column dropped or renamed), HIGH (a mapped column
    /// changed type), MEDIUM (new column, nullability), LOW (defaults, indexes).
    Drift(DriftArgs),
    /// Create the target lists of a sync and their columns (idempotent).
    Provision(SyncArgs),
    /// Run a sync once: write only what changed.
    Run(RunArgs),
    /// List recent runs.
    Runs(RunsArgs),
    /// Compare, list by list, the source rows a sync routes there with the items present.
    Reconcile(SyncArgs),
    /// Release what the source keeps for a sync (a PostgreSQL replication slot) and forget its
    /// position: for a sync being removed, or one that must start over with a full read.
    Release(SyncArgs),
    /// Show what changed in a sync's target lists since the last call (SharePoint delta),
    /// e.g. edits made in SharePoint; the position is kept in the meta-store.
    Changes(SyncArgs),
    /// Inspect and manage the dead-letter queue.
    Dlq(DlqArgs),
    /// SharePoint connections: discover their sites' lists and columns.
    Sharepoint(SharepointArgs),
    /// Plugins: list the plugin directory (native connectors and WASM modules), check a WASM
    /// module against the SyncBridge worlds.
    Plugins(PluginsArgs),
    /// Run a local Microsoft Graph emulator (SharePoint lists) for development and tests.
    Emulator(EmulatorArgs),
    /// The whole job on embedded defaults: a SQLite table, the in-process Graph emulator, three
    /// lists, a first sync, source edits, an incremental sync and a reconciliation.
    Quickstart(QuickstartArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The config file (`.yaml`, `.yml` or `.json`).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Also delete what the meta-store holds but the file no longer names.
    #[arg(long)]
    pub prune: bool,
    /// Show what would change without writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The sync definition's name.
    pub sync: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sync definition's name.
    pub sync: String,
    /// Read everything, ignoring the committed cursor (also finds deleted rows).
    #[arg(long)]
    pub full: bool,
    /// Print the planned creates, updates, moves and deletes (the first 10,000; the counts
    /// include all); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per source batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Without a progress bar (output not a terminal, or `--json`), log a progress line this
    /// often, in seconds; 0 logs one after every batch.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub progress_every: u64,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this sync's runs.
    pub sync: Option<String>,
    /// How many runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    pub command: PluginsCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Compile a `.wasm` file, check that it implements a SyncBridge world (transform or shard,
    /// `syncbridge:plugin@0.1.0`) and, with `--function`, that it accepts that function. Exit 2
    /// when it does not, with the reason.
    Check {
        /// The module.
        file: PathBuf,
        /// A function the configs will name after `#`.
        #[arg(long)]
        function: Option<String>,
    },
    /// What the plugin directory holds, as SyncBridge would load it: native connector
    /// libraries (`.so`, `.dylib`, `.dll`) with their name, version, ABI version and the
    /// connectors they provide, and WASM modules with their world and SHA-256. Refused files are
    /// listed with the reason; the exit code is then 1.
    List {
        /// The directory to list (default: `SYNCBRIDGE_PLUGIN_DIR`, else the working directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SharepointArgs {
    #[command(subcommand)]
    pub command: SharepointCommand,
}

#[derive(Debug, Subcommand)]
pub enum SharepointCommand {
    /// Read every list of a connection's sites (columns, item counts) into the meta-store.
    Discover {
        /// The connection's name (`sharepoint[].name` in the config).
        connection: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Open entries, newest first.
    List {
        /// Only this sync's entries.
        sync: Option<String>,
    },
    /// One entry with its raw and normalized payload.
    Show { id: String },
    /// Retry an entry with the next run.
    Retry { id: String },
    /// Never retry an entry (it is kept for the record).
    Discard { id: String },
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Keep sites, lists and items in this file across restarts.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Emulator settings (tenants, apps, sites, throttling, faults) in YAML or JSON.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where to put the sample database, the meta-store and the key file.
    #[arg(long, default_value = "syncbridge-quickstart")]
    pub dir: PathBuf,
    /// Rows in the sample `projects` table.
    #[arg(long, default_value_t = 10_000)]
    pub rows: usize,
}

#[derive(Debug, Args)]
pub struct IntrospectArgs {
    /// The logical database's name (`databases[].name` in the config).
    pub database: String,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Only this sync definition.
    pub sync: Option<String>,
    /// Exit with code 1 when a finding is at or above `--threshold` (for CI).
    #[arg(long)]
    pub check: bool,
    /// The lowest severity `--check` fails on: LOW, MEDIUM, HIGH or CRITICAL.
    #[arg(long, default_value = "HIGH")]
    pub threshold: String,
}
