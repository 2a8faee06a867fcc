//! `apply`: make the meta-store hold what a config file says, changing only what differs.
//!
//! Each config object becomes one row identified by its natural key (a name, or a parent and a
//! name). A row is inserted when missing, updated field by field when different, and left alone
//! when equal; every insert, update and delete writes an `audit_log` row with the before and after
//! values (secrets shown as `[secret]`). Children of an object the file names (a database's
//! instances, a definition's targets and mappings …) are kept exactly as listed; top-level objects
//! the file no longer names are deleted only with `--prune`. Everything happens in one
//! transaction: an apply is all or nothing, and `--dry-run` rolls it back.

mod sql;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Utc;
use serde::Serialize;
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::{Id, Store};

use crate::model::{Config, KeyStrategy, SecretValue, SyncDefinition};
use crate::secret_ref::SecretRef;
use crate::validate::SYSTEM_FIELDS;
use sql::{Sql, Tx};

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Delete top-level objects the file no longer names.
    pub prune: bool,
    /// Compute the changes, then roll them back.
    pub dry_run: bool,
    /// Who is applying (recorded in the audit log).
    pub actor: String,
    /// The key for literal secrets; `None` loads it with [`MasterKey::load`] when needed.
    pub master_key: Option<std::sync::Arc<MasterKey>>,
}

/// What an apply changed.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub changes: Vec<Change>,
    pub unchanged: usize,
    pub dry_run: bool,
}

impl ApplyReport {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One created, updated or deleted object.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub action: Action,
    /// The meta-store table.
    pub entity: &'static str,
    /// A readable name (`pmo-db/primary`, `projects → Active Projects`).
    pub name: String,
    /// For updates: the fields that changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// Why an apply failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The meta-store refused or failed a statement.
    #[error("meta-store error while applying {entity}: {source}")]
    Store {
        entity: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A secret could not be encrypted or compared.
    #[error("{0}")]
    Secret(String),
    /// A URL in the file cannot be split into connection fields.
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// The meta-store could not be reached (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Store {
                source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
                ..
            }
        )
    }

    /// The file or the environment must change (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Secret(_))
    }

    fn store(entity: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Store { entity, source }
    }
}

/// A secret column pair: ciphertext in `enc`, or a reference in `reference`.
struct SecretField {
    enc: &'static str,
    reference: &'static str,
    value: Option<SecretValue>,
}

/// One desired row.
struct Desired {
    table: &'static str,
    name: String,
    key: Vec<(&'static str, Sql)>,
    fields: Vec<(&'static str, Sql)>,
    /// Written on insert only (defaults the inventory may refine later).
    insert_only: Vec<(&'static str, Sql)>,
    secrets: Vec<SecretField>,
    timestamps: Timestamps,
}

#[derive(Clone, Copy)]
enum Timestamps {
    None,
    Created,
    CreatedUpdated,
}

impl Desired {
    fn new(table: &'static str, name: impl Into<String>) -> Self {
        Self {
            table,
            name: name.into(),
            key: Vec::new(),
            fields: Vec::new(),
            insert_only: Vec::new(),
            secrets: Vec::new(),
            timestamps: Timestamps::None,
        }
    }

    fn key(mut self, column: &'static str, value: Sql) -> Self {
        self.key.push((column, value));
        self
    }

    fn field(mut self, column: &'static str, value: Sql) -> Self {
        self.fields.push((column, value));
        self
    }

    fn insert_only(mut self, column: &'static str, value: Sql) -> Self {
        self.insert_only.push((column, value));
        self
    }

    fn secret(
        mut self,
        enc: &'static str,
        reference: &'static str,
        value: Option<SecretValue>,
    ) -> Self {
        self.secrets.push(SecretField {
            enc,
            reference,
            value,
        });
        self
    }

    fn timestamps(mut self, timestamps: Timestamps) -> Self {
        self.timestamps = timestamps;
        self
    }
}

struct Applier<'a> {
    tx: Tx,
    key: Option<&'a MasterKey>,
    options: &'a ApplyOptions,
    report: ApplyReport,
    /// Ids of rows the file names, per table, for pruning.
    seen: HashMap<&'static str, HashSet<Id>>,
    /// Inventory rows implied by the file are neither reported nor audited.
    quiet: bool,
}

/// Applies `config` to `store`. The caller has validated `config` (see [`crate::load_file`]).
pub async fn apply(
    store: &Store,
    config: &Config,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let problems = crate::validate::validate(config, &crate::Known::default());
    if let Some(problem) = problems.first() {
        return Err(ApplyError::Invalid(format!(
            "the config is not valid ({} problems), first: {}: {}",
            problems.len(),
            problem.path,
            problem.message
        )));
    }
    let needs_key = has_literal_secret(config);
    let key = match (&options.master_key, needs_key) {
        (Some(key), _) => Some(key.clone()),
        (None, true) => Some(std::sync::Arc::new(
            MasterKey::load().map_err(|e| ApplyError::Secret(e.to_string()))?,
        )),
        (None, false) => None,
    };
    let tx = Tx::begin(store)
        .await
        .map_err(ApplyError::store("the transaction"))?;
    let mut applier = Applier {
        tx,
        key: key.as_deref(),
        options,
        report: ApplyReport {
            changes: Vec::new(),
            unchanged: 0,
            dry_run: options.dry_run,
        },
        seen: HashMap::new(),
        quiet: false,
    };
    applier.apply_all(config).await?;
    let Applier { tx, report, .. } = applier;
    if options.dry_run {
        drop(tx); // rolls back
    } else {
        tx.commit().await.map_err(ApplyError::store("the commit"))?;
    }
    Ok(report)
}

fn has_literal_secret(config: &Config) -> bool {
    let literal = |s: &SecretValue| SecretRef::parse(s.expose()).is_none();
    config
        .sharepoint
        .iter()
        .any(|c| c.client_secret.as_ref().is_some_and(literal))
        || config
            .databases
            .iter()
            .flat_map(|d| &d.instances)
            .any(|i| i.password.as_ref().is_some_and(literal) || i.url.is_some())
}

/// Connection fields split out of an instance's `url`.
struct UrlParts {
    host: Option<String>,
    port: Option<i64>,
    db_name: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

fn split_url(url: &str) -> Result<UrlParts, ApplyError> {
    let invalid = || {
        ApplyError::Invalid(
            "an instance `url` is not of the form scheme://user:password@host:port/database"
                .to_owned(),
        )
    };
    let (_, rest) = url.split_once("://").ok_or_else(invalid)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((credentials, host_port)) => (Some(credentials), host_port),
        None => (None, authority),
    };
    let (user, password) = match credentials {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(c.to_owned()), None),
        },
        None => (None, None),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), Some(p.parse::<i64>().map_err(|_| invalid())?)),
        None => (host_port.to_owned(), None),
    };
    let db_name = path
        .split('?')
        .next()
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    Ok(UrlParts {
        host: Some(host).filter(|h| !h.is_empty()),
        port,
        db_name,
        user,
        password,
    })
}

fn enum_text<T: Serialize>(value: &T) -> Sql {
    Sql::Text(
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
    )
}

impl Applier<'_> {
    async fn apply_all(&mut self, config: &Config) -> Result<(), ApplyError> {
        let mut applications = HashMap::new();
        for app in &config.applications {
            let row = Desired::new("applications", &app.name)
                .key("name", Sql::text(&app.name))
                .field("owner_team", Sql::opt_text(app.owner_team.clone()))
                .field("description", Sql::opt_text(app.description.clone()))
                .field("status", enum_text(&app.status))
                .timestamps(Timestamps::Created);
            applications.insert(app.name.clone(), self.reconcile(row).await?);
        }

        let mut databases = HashMap::new();
        let mut instances: HashMap<(String, String), Id> = HashMap::new();
        for database in &config.databases {
            let app_id = applications[&database.application];
            let row = Desired::new("databases", &database.name)
                .key("name", Sql::text(&database.name))
                .field("application_id", Sql::Id(Some(app_id)))
                .field("db_type", Sql::text(&database.db_type))
                .field("environment", enum_text(&database.environment))
                .field("database_name", Sql::text(&database.database_name))
                .field("status", enum_text(&database.status))
                .timestamps(Timestamps::Created);
            let database_id = self.reconcile(row).await?;
            databases.insert(database.name.clone(), database_id);
            let mut kept = Vec::new();
            for instance in &database.instances {
                let (host, port, db_name, user, password) = match &instance.url {
                    Some(url) => {
                        let parts = split_url(url.expose())?;
                        (
                            parts.host,
                            parts.port,
                            parts.db_name,
                            parts.user,
                            parts.password.map(SecretValue),
                        )
                    }
                    None => (
                        instance.host.clone(),
                        instance.port.map(i64::from),
                        instance.db_name.clone(),
                        instance.user.clone(),
                        instance.password.clone(),
                    ),
                };
                let row = Desired::new(
                    "database_instances",
                    format!("{}/{}", database.name, instance.label),
                )
                .key("database_id", Sql::Id(Some(database_id)))
                .key("instance_label", Sql::text(&instance.label))
                .field("host", Sql::opt_text(host))
                .field("port", Sql::Int(port))
                .field(
                    "db_name",
                    Sql::opt_text(db_name.or_else(|| Some(database.database_name.clone()))),
                )
                .field("db_user", Sql::opt_text(user))
                .field(
                    "config",
                    Sql::Json(Some(serde_json::Value::Object(instance.options.clone()))),
                )
                .field("role", enum_text(&instance.role))
                .field("priority", Sql::Int(Some(i64::from(instance.priority))))
                .field("status", enum_text(&instance.status))
                .secret("db_password", "db_password_ref", password)
                .timestamps(Timestamps::CreatedUpdated);
                let id = self.reconcile(row).await?;
                instances.insert((database.name.clone(), instance.label.clone()), id);
                kept.push(id);
            }
            self.remove_other_children("database_instances", "database_id", database_id, &kept)
                .await?;
        }

        let mut connections = HashMap::new();
        let mut sites: HashMap<(String, String), Id> = HashMap::new();
        let mut lists: HashMap<(String, String, String), Id> = HashMap::new();
        for connection in &config.sharepoint {
            let row = Desired::new("sharepoint_connections", &connection.name)
                .key("name", Sql::text(&connection.name))
                .field("connector", Sql::text(&connection.connector))
                .field(
                    "options",
                    Sql::Json(
                        (!connection.options.is_empty())
                            .then(|| serde_json::Value::Object(connection.options.clone())),
                    ),
                )
                .field("tenant_id", Sql::text(&connection.tenant_id))
                .field("client_id", Sql::text(&connection.client_id))
                .field("authority_host", Sql::text(&connection.authority_host))
                .field("graph_base_url", Sql::text(&connection.graph_base_url))
                .field(
                    "scopes",
                    Sql::Json(Some(serde_json::json!(connection.scopes))),
                )
                .field("status", enum_text(&connection.status))
                .secret(
                    "client_secret",
                    "client_secret_ref",
                    connection.client_secret.clone(),
                )
                .timestamps(Timestamps::CreatedUpdated);
            let connection_id = self.reconcile(row).await?;
            connections.insert(connection.name.clone(), connection_id);
            let mut kept_sites = Vec::new();
            for site in &connection.sites {
                let site_key = format!("{}:{}", site.hostname, site.path);
                let row = Desired::new(
                    "sharepoint_sites",
                    format!("{}/{site_key}", connection.name),
                )
                .key("connection_id", Sql::Id(Some(connection_id)))
                .key("hostname", Sql::text(&site.hostname))
                .key("site_path", Sql::text(&site.path))
                .field("tenant_id", Sql::text(&connection.tenant_id))
                .insert_only("status", Sql::text("ACTIVE"));
                let site_id = self.reconcile(row).await?;
                sites.insert((connection.name.clone(), site_key.clone()), site_id);
                kept_sites.push(site_id);
                let mut kept_lists = Vec::new();
                for list in &site.lists {
                    let row = Desired::new("sharepoint_lists", format!("{site_key}/{}", list.name))
                        .key("site_id", Sql::Id(Some(site_id)))
                        .key("display_name", Sql::text(&list.name))
                        .field("description", Sql::opt_text(list.description.clone()))
                        .field("template", Sql::text(&list.template))
                        .insert_only("is_provisioned", Sql::Bool(Some(false)));
                    let list_id = self.reconcile(row).await?;
                    lists.insert(
                        (connection.name.clone(), site_key.clone(), list.name.clone()),
                        list_id,
                    );
                    kept_lists.push(list_id);
                }
                self.remove_other_children("sharepoint_lists", "site_id", site_id, &kept_lists)
                    .await?;
            }
            self.remove_other_children(
                "sharepoint_sites",
                "connection_id",
                connection_id,
                &kept_sites,
            )
            .await?;
        }

        for sync in &config.syncs {
            let refs = Refs {
                config,
                databases: &databases,
                instances: &instances,
                connections: &connections,
                sites: &sites,
                lists: &lists,
            };
            self.apply_sync(sync, &refs).await?;
        }

        if self.options.prune {
            // Children first, so no foreign key is left dangling.
            self.prune("sync_definitions", "name").await?;
            self.prune("sharepoint_connections", "name").await?;
            self.prune("databases", "name").await?;
            self.prune("applications", "name").await?;
        }
        Ok(())
    }

    async fn apply_sync(
        &mut self,
        sync: &SyncDefinition,
        refs: &Refs<'_>,
    ) -> Result<(), ApplyError> {
        let database_id = refs.databases[&sync.source.database];
        let (schema, table) = match sync.source.table.split_once('.') {
            Some((schema, table)) => (Some(schema.to_owned()), table.to_owned()),
            None => (None, sync.source.table.clone()),
        };
        let table_row = Desired::new(
            "database_tables",
            format!("{}/{}", sync.source.database, sync.source.table),
        )
        .key("database_id", Sql::Id(Some(database_id)))
        .key("schema_name", Sql::opt_text(schema))
        .key("table_name", Sql::text(&table))
        .insert_only("table_type", Sql::text("BASE"));
        let table_id = self.reconcile_quiet(table_row).await?;

        // Columns the definition names; introspection fills in their types later.
        let mut column_names: Vec<&str> = sync.mappings.iter().map(|m| m.source.as_str()).collect();
        column_names.extend(sync.key.columns.iter().map(String::as_str));
        column_names.extend(sync.cursor.column.as_deref());
        let mut columns = HashMap::new();
        for name in column_names {
            if columns.contains_key(name) {
                continue;
            }
            let row = Desired::new("table_columns", format!("{}.{name}", sync.source.table))
                .key("table_id", Sql::Id(Some(table_id)))
                .key("column_name", Sql::text(name));
            columns.insert(name.to_owned(), self.reconcile_quiet(row).await?);
        }

        let mut target_lists: Vec<(Id, Id, Id)> = Vec::new();
        for target in &sync.targets {
            let resolved = refs
                .site_of(&target.connection, target.site.as_deref())
                .and_then(|(site_key, site_id)| {
                    let list_id = refs.list_of(&target.connection, &site_key, &target.list)?;
                    Some((*refs.connections.get(&target.connection)?, site_id, list_id))
                });
            target_lists.push(resolved.ok_or_else(|| {
                ApplyError::Invalid(format!(
                    "sync `{}`: target `{}` names a list the file does not define",
                    sync.name, target.name
                ))
            })?);
        }
        let default_index = sync.targets.iter().position(|t| t.default).unwrap_or(0);
        let sharding = serde_json::json!({
            "strategy": sync.target_strategy,
            "rules": sync.targets.iter().filter(|t| t.when.is_some())
                .map(|t| serde_json::json!({"target": t.name, "when": t.when}))
                .collect::<Vec<_>>(),
            "default": sync.targets.get(default_index).map(|t| t.name.clone()),
            "wasm": sync.sharding,
        });
        let cursor_options = match &sync.cursor.slot {
            Some(slot) => {
                serde_json::json!({ "look_back_seconds": sync.cursor.look_back_seconds, "slot": slot })
            }
            None => serde_json::json!({ "look_back_seconds": sync.cursor.look_back_seconds }),
        };
        let window = sync
            .window
            .as_ref()
            .map(|w| serde_json::to_value(w).unwrap_or_default());
        let def_row = Desired::new("sync_definitions", &sync.name)
            .key("name", Sql::text(&sync.name))
            .field("source_table_id", Sql::Id(Some(table_id)))
            .field(
                "target_list_id",
                Sql::Id(target_lists.get(default_index).map(|t| t.2)),
            )
            .field("sync_mode", enum_text(&sync.mode))
            .field("conflict_policy", enum_text(&sync.conflict_policy))
            .field("key_strategy", enum_text(&sync.key.strategy))
            .field(
                "key_constraint_name",
                Sql::opt_text(sync.key.constraint.clone()),
            )
            .field("target_strategy", enum_text(&sync.target_strategy))
            .field("cursor_strategy", enum_text(&sync.cursor.strategy))
            .field(
                "cursor_column_id",
                Sql::Id(sync.cursor.column.as_ref().map(|c| columns[c.as_str()])),
            )
            .field("cursor_options", Sql::Json(Some(cursor_options)))
            .field("sharding_policy", Sql::Json(Some(sharding)))
            .field(
                "schedule_cron",
                Sql::opt_text(sync.schedule.as_ref().map(|s| s.cron.clone())),
            )
            .field("background_window", Sql::Json(window))
            .field("is_enabled", Sql::Bool(Some(sync.enabled)))
            .timestamps(Timestamps::CreatedUpdated);
        let def_id = self.reconcile(def_row).await?;

        let mut kept = Vec::new();
        for (priority, (target, (connection_id, site_id, list_id))) in
            sync.targets.iter().zip(&target_lists).enumerate()
        {
            let row = Desired::new("sync_targets", format!("{} → {}", sync.name, target.list))
                .key("sync_def_id", Sql::Id(Some(def_id)))
                .key("target_list_id", Sql::Id(Some(*list_id)))
                .field("name", Sql::text(&target.name))
                .field("connection_id", Sql::Id(Some(*connection_id)))
                .field("site_id", Sql::Id(Some(*site_id)))
                .field("is_default", Sql::Bool(Some(priority == default_index)))
                .field("priority", Sql::Int(Some(priority as i64 + 1)))
                .insert_only("status", Sql::text("ACTIVE"))
                .timestamps(Timestamps::CreatedUpdated);
            kept.push(self.reconcile(row).await?);
        }
        self.remove_other_children("sync_targets", "sync_def_id", def_id, &kept)
            .await?;

        let database = refs
            .config
            .databases
            .iter()
            .find(|d| d.name == sync.source.database);
        let bound: Vec<(String, crate::model::InstanceRole, i32, bool)> =
            if sync.source.instances.is_empty() {
                database
                    .map(|d| {
                        d.instances
                            .iter()
                            .map(|i| (i.label.clone(), i.role, i.priority, true))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                sync.source
                    .instances
                    .iter()
                    .map(|i| (i.instance.clone(), i.role, i.priority, i.enabled))
                    .collect()
            };
        let mut kept = Vec::new();
        for (label, role, priority, enabled) in bound {
            let instance_id = refs.instances[&(sync.source.database.clone(), label.clone())];
            let row = Desired::new(
                "sync_sources",
                format!("{} ← {}/{label}", sync.name, sync.source.database),
            )
            .key("sync_def_id", Sql::Id(Some(def_id)))
            .key("database_instance_id", Sql::Id(Some(instance_id)))
            .field("role", enum_text(&role))
            .field("priority", Sql::Int(Some(i64::from(priority))))
            .field("is_enabled", Sql::Bool(Some(enabled)));
            kept.push(self.reconcile(row).await?);
        }
        self.remove_other_children("sync_sources", "sync_def_id", def_id, &kept)
            .await?;

        let mut kept = Vec::new();
        if matches!(
            sync.key.strategy,
            KeyStrategy::CompositeColumns | KeyStrategy::PrimaryKey
        ) {
            for (ordinal, column) in sync.key.columns.iter().enumerate() {
                let row = Desired::new(
                    "sync_key_columns",
                    format!("{}.key[{ordinal}] {column}", sync.name),
                )
                .key("sync_def_id", Sql::Id(Some(def_id)))
                .key("column_id", Sql::Id(Some(columns[column.as_str()])))
                .field("ordinal_position", Sql::Int(Some(ordinal as i64 + 1)))
                .field("is_required", Sql::Bool(Some(true)));
                kept.push(self.reconcile(row).await?);
            }
        }
        self.remove_other_children("sync_key_columns", "sync_def_id", def_id, &kept)
            .await?;

        let mut kept = Vec::new();
        for mapping in &sync.mappings {
            let row = Desired::new(
                "field_mappings",
                format!("{}: {} → {}", sync.name, mapping.source, mapping.target),
            )
            .key("sync_def_id", Sql::Id(Some(def_id)))
            .key(
                "source_column_id",
                Sql::Id(Some(columns[mapping.source.as_str()])),
            )
            .field("source_column_name", Sql::text(&mapping.source))
            .field("target_column_name", Sql::text(&mapping.target))
            .field("target_type", Sql::opt_text(mapping.target_type.clone()))
            .field("sync_direction", enum_text(&mapping.direction))
            .field(
                "is_system_field",
                Sql::Bool(Some(SYSTEM_FIELDS.contains(&mapping.target.as_str()))),
            )
            .field("transform_rule", Sql::opt_text(mapping.transform.clone()))
            .field("is_key", Sql::Bool(Some(mapping.key)))
            .timestamps(Timestamps::CreatedUpdated);
            kept.push(self.reconcile(row).await?);
        }
        self.remove_other_children("field_mappings", "sync_def_id", def_id, &kept)
            .await?;
        Ok(())
    }

    /// Like [`Self::reconcile`] for inventory rows the file only implies: created when missing,
    /// never reported as a configuration change and never pruned.
    async fn reconcile_quiet(&mut self, row: Desired) -> Result<Id, ApplyError> {
        let changes = self.report.changes.len();
        let unchanged = self.report.unchanged;
        self.quiet = true;
        let result = self.reconcile(row).await;
        self.quiet = false;
        self.report.changes.truncate(changes);
        self.report.unchanged = unchanged;
        result
    }

    /// Makes one row match `row`; returns its id.
    async fn reconcile(&mut self, row: Desired) -> Result<Id, ApplyError> {
        let table = row.table;
        let err = ApplyError::store;
        let mut select_columns = vec!["id".to_owned()];
        let mut kinds = vec![Sql::Id(None)];
        for (column, value) in &row.fields {
            select_columns.push((*column).to_owned());
            kinds.push(value.null_like());
        }
        for secret in &row.secrets {
            select_columns.push(secret.enc.to_owned());
            kinds.push(Sql::Text(None));
            select_columns.push(secret.reference.to_owned());
            kinds.push(Sql::Text(None));
        }
        let condition = row
            .key
            .iter()
            .enumerate()
            .map(|(i, (column, _))| format!("{column} IS NOT DISTINCT FROM ${}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let select = format!(
            "SELECT {} FROM {table} WHERE {condition}",
            select_columns.join(", ")
        );
        let key_values: Vec<Sql> = row.key.iter().map(|(_, v)| v.clone()).collect();
        let existing = self
            .tx
            .fetch_all(&select, &key_values, &kinds)
            .await
            .map_err(err(table))?;

        let now = Utc::now();
        match existing.into_iter().next() {
            None => {
                let id = Id::new();
                let mut columns = vec!["id"];
                let mut values = vec![Sql::Id(Some(id))];
                for (column, value) in row.key.iter().chain(&row.fields).chain(&row.insert_only) {
                    columns.push(column);
                    values.push(value.clone());
                }
                let mut after = BTreeMap::new();
                for (column, value) in row.key.iter().chain(&row.fields) {
                    after.insert((*column).to_owned(), value.to_json());
                }
                for secret in &row.secrets {
                    let (enc, reference) = self.secret_columns(table, secret)?;
                    columns.push(secret.enc);
                    values.push(Sql::Text(enc));
                    columns.push(secret.reference);
                    values.push(Sql::Text(reference.clone()));
                    after.insert(secret.enc.to_owned(), redacted(secret));
                }
                match row.timestamps {
                    Timestamps::None => {}
                    Timestamps::Created => {
                        columns.push("created_at");
                        values.push(Sql::Time(Some(now)));
                    }
                    Timestamps::CreatedUpdated => {
                        columns.extend(["created_at", "updated_at"]);
                        values.extend([Sql::Time(Some(now)), Sql::Time(Some(now))]);
                    }
                }
                let placeholders: Vec<String> =
                    (1..=values.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "INSERT INTO {table} ({}) VALUES ({})",
                    columns.join(", "),
                    placeholders.join(", ")
                );
                self.tx.execute(&sql, &values).await.map_err(err(table))?;
                self.audit(
                    table,
                    id,
                    Action::Create,
                    None,
                    Some(serde_json::json!(after)),
                )
                .await?;
                self.record(table, id, Action::Create, row.name, Vec::new());
                Ok(id)
            }
            Some(current) => {
                let Some(Sql::Id(Some(id))) = current.first().cloned() else {
                    return Err(ApplyError::Invalid(format!("{table} row without an id")));
                };
                let mut changed: Vec<(&'static str, Sql)> = Vec::new();
                let mut before = BTreeMap::new();
                let mut after = BTreeMap::new();
                for ((column, desired), existing) in row.fields.iter().zip(current.iter().skip(1)) {
                    if desired != existing {
                        before.insert((*column).to_owned(), existing.to_json());
                        after.insert((*column).to_owned(), desired.to_json());
                        changed.push((column, desired.clone()));
                    }
                }
                let secret_values = &current[1 + row.fields.len()..];
                for (index, secret) in row.secrets.iter().enumerate() {
                    let (Sql::Text(enc), Sql::Text(reference)) =
                        (&secret_values[index * 2], &secret_values[index * 2 + 1])
                    else {
                        continue;
                    };
                    if !self.secret_matches(table, secret, enc.as_deref(), reference.as_deref())? {
                        let (new_enc, new_ref) = self.secret_columns(table, secret)?;
                        before.insert(secret.enc.to_owned(), serde_json::json!("[secret]"));
                        after.insert(secret.enc.to_owned(), redacted(secret));
                        changed.push((secret.enc, Sql::Text(new_enc)));
                        changed.push((secret.reference, Sql::Text(new_ref)));
                    }
                }
                if changed.is_empty() {
                    self.seen.entry(table).or_default().insert(id);
                    self.report.unchanged += 1;
                    return Ok(id);
                }
                let fields: Vec<String> = after.keys().cloned().collect();
                if matches!(row.timestamps, Timestamps::CreatedUpdated) {
                    changed.push(("updated_at", Sql::Time(Some(now))));
                }
                let sets: Vec<String> = changed
                    .iter()
                    .enumerate()
                    .map(|(i, (column, _))| format!("{column} = ${}", i + 2))
                    .collect();
                let sql = format!("UPDATE {table} SET {} WHERE id = $1", sets.join(", "));
                let mut values = vec![Sql::Id(Some(id))];
                values.extend(changed.iter().map(|(_, v)| v.clone()));
                self.tx.execute(&sql, &values).await.map_err(err(table))?;
                self.audit(
                    table,
                    id,
                    Action::Update,
                    Some(serde_json::json!(before)),
                    Some(serde_json::json!(after)),
                )
                .await?;
                self.record(table, id, Action::Update, row.name, fields);
                Ok(id)
            }
        }
    }

    fn record(
        &mut self,
        table: &'static str,
        id: Id,
        action: Action,
        name: String,
        fields: Vec<String>,
    ) {
        self.seen.entry(table).or_default().insert(id);
        self.report.changes.push(Change {
            action,
            entity: table,
            name,
            fields,
        });
    }

    /// The (ciphertext, reference) pair to store for a secret.
    fn secret_columns(
        &self,
        table: &'static str,
        secret: &SecretField,
    ) -> Result<(Option<String>, Option<String>), ApplyError> {
        let Some(value) = &secret.value else {
            return Ok((None, None));
        };
        if SecretRef::parse(value.expose()).is_some() {
            return Ok((None, Some(value.expose().to_owned())));
        }
        let key = self
            .key
            .ok_or_else(|| ApplyError::Secret("no master key loaded".to_owned()))?;
        let aad = format!("{table}.{}", secret.enc);
        let enc = key
            .encrypt(value.expose(), &aad)
            .map_err(|e| ApplyError::Secret(e.to_string()))?;
        Ok((Some(enc), None))
    }

    fn secret_matches(
        &self,
        table: &'static str,
        secret: &SecretField,
        enc: Option<&str>,
        reference: Option<&str>,
    ) -> Result<bool, ApplyError> {
        let Some(value) = &secret.value else {
            return Ok(enc.is_none() && reference.is_none());
        };
        if SecretRef::parse(value.expose()).is_some() {
            return Ok(enc.is_none() && reference == Some(value.expose()));
        }
        let (Some(enc), None) = (enc, reference) else {
            return Ok(false);
        };
        let Some(key) = self.key else {
            return Ok(false);
        };
        let aad = format!("{table}.{}", secret.enc);
        // A secret stored under another key reads as "different": it is re-encrypted.
        Ok(key.decrypt(enc, &aad).is_ok_and(|plain| {
            use secrecy::ExposeSecret as _;
            plain.expose_secret() == value.expose()
        }))
    }

    async fn audit(
        &mut self,
        table: &'static str,
        id: Id,
        action: Action,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<(), ApplyError> {
        if self.quiet {
            return Ok(());
        }
        let sql = "INSERT INTO audit_log (id, entity, entity_id, action, before, after, actor, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let action = enum_text(&action);
        let values = [
            Sql::Id(Some(Id::new())),
            Sql::text(table),
            Sql::Id(Some(id)),
            action,
            Sql::Json(before),
            Sql::Json(after),
            Sql::text(&self.options.actor),
            Sql::Time(Some(Utc::now())),
        ];
        self.tx
            .execute(sql, &values)
            .await
            .map_err(ApplyError::store("audit_log"))?;
        Ok(())
    }

    /// Deletes `table` rows under `parent` that the file did not name this time.
    async fn remove_other_children(
        &mut self,
        table: &'static str,
        parent_column: &'static str,
        parent: Id,
        kept: &[Id],
    ) -> Result<(), ApplyError> {
        let select = format!("SELECT id FROM {table} WHERE {parent_column} = $1");
        let rows = self
            .tx
            .fetch_all(&select, &[Sql::Id(Some(parent))], &[Sql::Id(None)])
            .await
            .map_err(ApplyError::store(table))?;
        for row in rows {
            let Some(Sql::Id(Some(id))) = row.into_iter().next() else {
                continue;
            };
            if !kept.contains(&id) {
                self.delete(table, id, format!("{table} {id}")).await?;
            }
        }
        Ok(())
    }

    /// Deletes top-level rows of `table` the file no longer names (`--prune`).
    async fn prune(
        &mut self,
        table: &'static str,
        name_column: &'static str,
    ) -> Result<(), ApplyError> {
        let select = format!("SELECT id, {name_column} FROM {table}");
        let rows = self
            .tx
            .fetch_all(&select, &[], &[Sql::Id(None), Sql::Text(None)])
            .await
            .map_err(ApplyError::store(table))?;
        for row in rows {
            let (Some(Sql::Id(Some(id))), Some(Sql::Text(name))) = (row.first(), row.get(1)) else {
                continue;
            };
            let keep = self.seen.get(table).is_some_and(|seen| seen.contains(id));
            if !keep {
                let name = name.clone().unwrap_or_default();
                self.delete_tree(table, *id, name).await?;
            }
        }
        Ok(())
    }

    /// Deletes a top-level row and the configuration rows that hang off it.
    async fn delete_tree(
        &mut self,
        table: &'static str,
        id: Id,
        name: String,
    ) -> Result<(), ApplyError> {
        let children: &[(&'static str, &'static str)] = match table {
            "sync_definitions" => &[
                ("field_mappings", "sync_def_id"),
                ("sync_key_columns", "sync_def_id"),
                ("sync_sources", "sync_def_id"),
                ("sync_targets", "sync_def_id"),
            ],
            "sharepoint_connections" => &[("sharepoint_sites", "connection_id")],
            "databases" => &[("database_instances", "database_id")],
            _ => &[],
        };
        for (child, column) in children {
            if *child == "sharepoint_sites" {
                let sites = self
                    .tx
                    .fetch_all(
                        "SELECT id FROM sharepoint_sites WHERE connection_id = $1",
                        &[Sql::Id(Some(id))],
                        &[Sql::Id(None)],
                    )
                    .await
                    .map_err(ApplyError::store("sharepoint_sites"))?;
                for site in sites {
                    if let Some(Sql::Id(Some(site_id))) = site.into_iter().next() {
                        self.remove_other_children("sharepoint_lists", "site_id", site_id, &[])
                            .await?;
                    }
                }
            }
            self.remove_other_children(child, column, id, &[]).await?;
        }
        self.delete(table, id, name).await
    }

    async fn delete(
        &mut self,
        table: &'static str,
        id: Id,
        name: String,
    ) -> Result<(), ApplyError> {
        self.tx
            .execute(
                &format!("DELETE FROM {table} WHERE id = $1"),
                &[Sql::Id(Some(id))],
            )
            .await
            .map_err(ApplyError::store(table))?;
        self.audit(table, id, Action::Delete, None, None).await?;
        self.report.changes.push(Change {
            action: Action::Delete,
            entity: table,
            name,
            fields: Vec::new(),
        });
        Ok(())
    }
}

fn redacted(secret: &SecretField) -> serde_json::Value {
    match &secret.value {
        Some(value) if SecretRef::parse(value.expose()).is_some() => value.expose().into(),
        Some(_) => "[secret]".into(),
        None => serde_json::Value::Null,
    }
}

/// Ids of the objects already applied, for resolving a definition's references.
struct Refs<'a> {
    config: &'a Config,
    databases: &'a HashMap<String, Id>,
    instances: &'a HashMap<(String, String), Id>,
    connections: &'a HashMap<String, Id>,
    sites: &'a HashMap<(String, String), Id>,
    lists: &'a HashMap<(String, String, String), Id>,
}

impl Refs<'_> {
    /// The site a target names, or its connection's only site (validation guarantees one).
    fn site_of(&self, connection: &str, site: Option<&str>) -> Option<(String, Id)> {
        self.sites
            .iter()
            .find(|((c, key), _)| c == connection && site.is_none_or(|s| s == key))
            .map(|((_, key), id)| (key.clone(), *id))
    }

    fn list_of(&self, connection: &str, site: &str, list: &str) -> Option<Id> {
        self.lists
            .get(&(connection.to_owned(), site.to_owned(), list.to_owned()))
            .copied()
    }
}
