//! Checks that need the whole file: unique names, references between sections, and the rules
//! that tie one field to another (a `CONDITIONAL` definition needs a default target …).
//! Every check reports a [`Problem`] with its JSON path and a fix; all problems are reported at
//! once so a user fixes a file in one pass.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::load::Problem;
use crate::model::{
    Config, CursorStrategy, KeyStrategy, SyncDefinition, SyncDirection, TargetStrategy,
};
use crate::secret_ref::SecretRef;

/// The names that exist in this build, so typos are caught at apply time.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Source connector kinds (`postgres`, `sqlite` …). Empty disables the check.
    pub source_kinds: Vec<String>,
    /// Target connector kinds (`sharepoint`, a plugin's `jsonl` …). Empty disables the check.
    pub target_kinds: Vec<String>,
    /// Transform rule names (`trim`, `round` …); `wasm:` rules are checked when they load.
    /// Empty disables the check.
    pub rule_names: Vec<String>,
}

/// SharePoint's read-only system fields: never written by a push.
pub const SYSTEM_FIELDS: &[&str] = &[
    "ID",
    "id",
    "Created",
    "Modified",
    "Author",
    "Editor",
    "_UIVersionString",
    "Attachments",
    "ContentType",
    "Edit",
    "LinkTitle",
    "LinkTitleNoMenu",
    "DocIcon",
    "ItemChildCount",
    "FolderChildCount",
    "AppAuthor",
    "AppEditor",
    "ComplianceAssetId",
];

/// The hidden list column that holds each item's identity hash (provisioned by SyncBridge).
pub const KEY_COLUMN: &str = "SyncBridgeKey";

/// Why a HASHED key takes only the FULL_SCAN cursor (checked here and by the engine, for
/// definitions written to the store another way).
pub const HASHED_NEEDS_FULL_SCAN: &str = "HASHED keys need the FULL_SCAN cursor: an incremental read cannot tell which item an updated or deleted row had";

/// Runs every whole-file check.
pub fn validate(config: &Config, known: &Known) -> Vec<Problem> {
    let mut problems = Vec::new();
    if config.version != 1 {
        problems.push(
            Problem::new("version", format!("unsupported version {}", config.version))
                .fix("set `version: 1`"),
        );
    }

    let applications = unique_names(
        config.applications.iter().map(|a| a.name.as_str()),
        "applications",
        &mut problems,
    );

    let databases = unique_names(
        config.databases.iter().map(|d| d.name.as_str()),
        "databases",
        &mut problems,
    );
    for (i, database) in config.databases.iter().enumerate() {
        let path = format!("databases[{i}]");
        if !applications.contains(database.application.as_str()) {
            problems.push(dangling(
                &format!("{path}.application"),
                "application",
                &database.application,
                &applications,
            ));
        }
        if !known.source_kinds.is_empty() && !known.source_kinds.contains(&database.db_type) {
            problems.push(
                Problem::new(
                    format!("{path}.type"),
                    format!("unknown database type `{}`", database.db_type),
                )
                .fix(format!(
                    "use one of: {} (plugin sources load from SYNCBRIDGE_PLUGIN_DIR; see `syncbridge plugins list`)",
                    known.source_kinds.join(", ")
                )),
            );
        }
        if database.instances.is_empty() {
            problems.push(
                Problem::new(
                    format!("{path}.instances"),
                    "a database needs at least one instance",
                )
                .fix("add an instance with its host, port and credentials"),
            );
        }
        unique_names(
            database.instances.iter().map(|inst| inst.label.as_str()),
            &format!("{path}.instances"),
            &mut problems,
        );
        for (j, instance) in database.instances.iter().enumerate() {
            let ipath = format!("{path}.instances[{j}]");
            if let Some(password) = &instance.password {
                check_secret(
                    password.expose(),
                    &format!("{ipath}.password"),
                    &mut problems,
                );
            }
            if instance.url.is_some()
                && (instance.host.is_some()
                    || instance.user.is_some()
                    || instance.password.is_some())
            {
                problems.push(
                    Problem::new(&ipath, "both `url` and host/user/password are set")
                        .fix("use either `url` or the separate fields, not both"),
                );
            }
        }
    }

    let mut sites_by_connection: HashMap<&str, Vec<(String, HashSet<&str>)>> = HashMap::new();
    let connections = unique_names(
        config.sharepoint.iter().map(|c| c.name.as_str()),
        "sharepoint",
        &mut problems,
    );
    for (i, connection) in config.sharepoint.iter().enumerate() {
        let path = format!("sharepoint[{i}]");
        let is_sharepoint = connection.connector == crate::model::SHAREPOINT;
        match &connection.client_secret {
            Some(secret) => check_secret(
                secret.expose(),
                &format!("{path}.client_secret"),
                &mut problems,
            ),
            None if is_sharepoint => problems.push(
                Problem::new(
                    format!("{path}.client_secret"),
                    "a SharePoint connection needs the app's client secret",
                )
                .fix("write the secret, or `${env:NAME}` / `${file:PATH}`"),
            ),
            None => {}
        }
        if !known.target_kinds.is_empty() && !known.target_kinds.contains(&connection.connector) {
            problems.push(
                Problem::new(
                    format!("{path}.type"),
                    format!("unknown target type `{}`", connection.connector),
                )
                .fix(format!(
                    "use one of: {} (plugin targets load from SYNCBRIDGE_PLUGIN_DIR; see `syncbridge plugins list`)",
                    known.target_kinds.join(", ")
                )),
            );
        }
        if is_sharepoint {
            for (field, value) in [
                ("tenant_id", &connection.tenant_id),
                ("client_id", &connection.client_id),
            ] {
                if value.trim().is_empty() {
                    problems.push(
                        Problem::new(
                            format!("{path}.{field}"),
                            format!("a SharePoint connection needs `{field}`"),
                        )
                        .fix("copy it from the app registration in Entra ID"),
                    );
                }
            }
            if !connection.options.is_empty() {
                problems.push(
                    Problem::new(
                        format!("{path}.options"),
                        "`options` configure plugin targets; SharePoint does not read them",
                    )
                    .fix("remove `options`, or set `type` to the plugin's target kind"),
                );
            }
        }
        for field in [
            ("authority_host", &connection.authority_host),
            ("graph_base_url", &connection.graph_base_url),
        ] {
            if !(field.1.starts_with("https://") || field.1.starts_with("http://")) {
                problems.push(
                    Problem::new(
                        format!("{path}.{}", field.0),
                        format!("`{}` is not an http(s) URL", field.1),
                    )
                    .fix("write the full URL, e.g. https://graph.microsoft.com/v1.0"),
                );
            }
        }
        let mut seen_sites = HashSet::new();
        let mut sites = Vec::new();
        for (j, site) in connection.sites.iter().enumerate() {
            let spath = format!("{path}.sites[{j}]");
            let site_key = format!("{}:{}", site.hostname, site.path);
            if !seen_sites.insert(site_key.clone()) {
                problems.push(
                    Problem::new(&spath, format!("site `{site_key}` is listed twice"))
                        .fix("merge the two entries"),
                );
            }
            if !site.path.starts_with('/') {
                problems.push(
                    Problem::new(
                        format!("{spath}.path"),
                        format!("`{}` is not a server-relative path", site.path),
                    )
                    .fix("start it with `/`, e.g. `/sites/pmo`"),
                );
            }
            let lists = unique_names(
                site.lists.iter().map(|l| l.name.as_str()),
                &format!("{spath}.lists"),
                &mut problems,
            );
            sites.push((site_key, lists));
        }
        sites_by_connection.insert(connection.name.as_str(), sites);
    }

    unique_names(
        config.syncs.iter().map(|s| s.name.as_str()),
        "syncs",
        &mut problems,
    );
    for (i, sync) in config.syncs.iter().enumerate() {
        validate_sync(
            config,
            sync,
            &format!("syncs[{i}]"),
            &databases,
            &connections,
            &sites_by_connection,
            known,
            &mut problems,
        );
    }
    problems
}

#[allow(clippy::too_many_arguments)]
fn validate_sync(
    config: &Config,
    sync: &SyncDefinition,
    path: &str,
    databases: &HashSet<&str>,
    connections: &HashSet<&str>,
    sites_by_connection: &HashMap<&str, Vec<(String, HashSet<&str>)>>,
    known: &Known,
    problems: &mut Vec<Problem>,
) {
    // Source and its instances.
    match config
        .databases
        .iter()
        .find(|d| d.name == sync.source.database)
    {
        None => problems.push(dangling(
            &format!("{path}.source.database"),
            "database",
            &sync.source.database,
            databases,
        )),
        Some(database) => {
            let labels: HashSet<&str> = database
                .instances
                .iter()
                .map(|i| i.label.as_str())
                .collect();
            for (j, bound) in sync.source.instances.iter().enumerate() {
                if !labels.contains(bound.instance.as_str()) {
                    problems.push(dangling(
                        &format!("{path}.source.instances[{j}].instance"),
                        "instance",
                        &bound.instance,
                        &labels,
                    ));
                }
            }
        }
    }
    if sync.source.table.trim().is_empty() || sync.source.table.split('.').count() > 2 {
        problems.push(
            Problem::new(
                format!("{path}.source.table"),
                format!("`{}` is not `table` or `schema.table`", sync.source.table),
            )
            .fix("write e.g. `public.projects`"),
        );
    }

    // Key.
    let key = &sync.key;
    match key.strategy {
        KeyStrategy::CompositeColumns if key.columns.is_empty() => problems.push(
            Problem::new(
                format!("{path}.key.columns"),
                "COMPOSITE_COLUMNS needs the key columns",
            )
            .fix("list the columns in key order, e.g. `columns: [region, code]`"),
        ),
        KeyStrategy::UniqueConstraint if key.constraint.is_none() => problems.push(
            Problem::new(
                format!("{path}.key.constraint"),
                "UNIQUE_CONSTRAINT needs the constraint's name",
            )
            .fix("set `constraint:` to the unique constraint's name"),
        ),
        KeyStrategy::Hashed if !key.columns.is_empty() => problems.push(
            Problem::new(
                format!("{path}.key.columns"),
                "HASHED uses the whole mapped row, not columns",
            )
            .fix("remove `columns`, or use COMPOSITE_COLUMNS"),
        ),
        _ => {}
    }
    // A HASHED identity is the row's content: an update is a new identity, and the old one is
    // found gone only by reading the whole table. An incremental cursor would leave the old
    // item behind (UPDATED_AT until a `--full` run; LSN delete events carry no content at all).
    if key.strategy == KeyStrategy::Hashed && sync.cursor.strategy != CursorStrategy::FullScan {
        problems.push(
            Problem::new(
                format!("{path}.cursor.strategy"),
                HASHED_NEEDS_FULL_SCAN,
            )
            .fix("use `cursor: { strategy: FULL_SCAN }`, or key the rows by columns (PRIMARY_KEY, UNIQUE_CONSTRAINT or COMPOSITE_COLUMNS)"),
        );
    }

    // Cursor.
    match (sync.cursor.strategy, &sync.cursor.column) {
        (CursorStrategy::UpdatedAt, None) => problems.push(
            Problem::new(
                format!("{path}.cursor.column"),
                "UPDATED_AT needs the watermark column",
            )
            .fix("set `column:` to a timestamp column updated on every change, e.g. `updated_at`"),
        ),
        (CursorStrategy::FullScan | CursorStrategy::Lsn, Some(column)) => problems.push(
            Problem::new(
                format!("{path}.cursor.column"),
                format!("`{column}` is only used by UPDATED_AT"),
            )
            .fix("remove `column`, or use strategy UPDATED_AT"),
        ),
        _ => {}
    }

    // Targets.
    if sync.targets.is_empty() {
        problems.push(
            Problem::new(
                format!("{path}.targets"),
                "a definition needs at least one target",
            )
            .fix("add a target list"),
        );
    }
    unique_names(
        sync.targets.iter().map(|t| t.name.as_str()),
        &format!("{path}.targets"),
        problems,
    );
    let defaults = sync.targets.iter().filter(|t| t.default).count();
    match sync.target_strategy {
        TargetStrategy::Single => {
            if sync.sharding.is_some() {
                problems.push(
                    Problem::new(
                        format!("{path}.sharding"),
                        "a sharding predicate needs `target_strategy: CONDITIONAL`",
                    )
                    .fix("set `target_strategy: CONDITIONAL`, or remove `sharding`"),
                );
            }
            if sync.targets.len() > 1 {
                problems.push(
                    Problem::new(
                        format!("{path}.targets"),
                        format!("SINGLE takes one target, found {}", sync.targets.len()),
                    )
                    .fix("set `target_strategy: CONDITIONAL` to route rows to several lists"),
                );
            }
            for (j, target) in sync.targets.iter().enumerate() {
                if target.when.is_some() {
                    problems.push(
                        Problem::new(
                            format!("{path}.targets[{j}].when"),
                            "predicates need `target_strategy: CONDITIONAL`",
                        )
                        .fix("remove `when`, or set `target_strategy: CONDITIONAL`"),
                    );
                }
            }
        }
        TargetStrategy::Conditional => {
            if defaults != 1 {
                problems.push(
                    Problem::new(
                        format!("{path}.targets"),
                        format!("CONDITIONAL needs exactly one default target, found {defaults}"),
                    )
                    .fix("mark the list that takes unmatched rows with `default: true`"),
                );
            }
            if let Some(sharding) = &sync.sharding {
                if !sharding.trim_start().starts_with("wasm:") || !sharding.contains('#') {
                    problems.push(
                        Problem::new(
                            format!("{path}.sharding"),
                            format!("`{sharding}` is not a WASM reference"),
                        )
                        .fix(
                            "write `wasm:MODULE#FUNCTION`, e.g. `wasm:status_shard.wasm#by_status`",
                        ),
                    );
                }
                for (j, target) in sync.targets.iter().enumerate() {
                    if target.when.is_some() {
                        problems.push(
                            Problem::new(
                                format!("{path}.targets[{j}].when"),
                                "the sync routes with `sharding`; targets take no `when`",
                            )
                            .fix("remove `when`, or remove `sharding` to route with predicates"),
                        );
                    }
                }
            }
            for (j, target) in sync.targets.iter().enumerate() {
                if sync.sharding.is_some() {
                    break;
                }
                match (&target.when, target.default) {
                    (None, false) => problems.push(
                        Problem::new(
                            format!("{path}.targets[{j}].when"),
                            format!("target `{}` has no predicate", target.name),
                        )
                        .fix("add `when:`, e.g. `status == 'Active'`, or make it the default"),
                    ),
                    (Some(_), true) => problems.push(
                        Problem::new(
                            format!("{path}.targets[{j}].when"),
                            "the default target takes unmatched rows; it has no predicate",
                        )
                        .fix("remove `when` from the default target"),
                    ),
                    _ => {}
                }
            }
        }
    }
    for (j, target) in sync.targets.iter().enumerate() {
        let tpath = format!("{path}.targets[{j}]");
        let Some(sites) = sites_by_connection.get(target.connection.as_str()) else {
            problems.push(dangling(
                &format!("{tpath}.connection"),
                "SharePoint connection",
                &target.connection,
                connections,
            ));
            continue;
        };
        let site = match &target.site {
            Some(name) => sites.iter().find(|(key, _)| key == name),
            None if sites.len() == 1 => sites.first(),
            None => {
                problems.push(
                    Problem::new(
                        format!("{tpath}.site"),
                        format!(
                            "connection `{}` has {} sites; say which",
                            target.connection,
                            sites.len()
                        ),
                    )
                    .fix("set `site:` to `hostname:/path` of one of its sites"),
                );
                continue;
            }
        };
        match site {
            None => {
                let names: HashSet<&str> = sites.iter().map(|(key, _)| key.as_str()).collect();
                problems.push(dangling(
                    &format!("{tpath}.site"),
                    "site",
                    target.site.as_deref().unwrap_or(""),
                    &names,
                ));
            }
            Some((_, lists)) => {
                if !lists.contains(target.list.as_str()) {
                    problems.push(dangling(
                        &format!("{tpath}.list"),
                        "list",
                        &target.list,
                        lists,
                    ));
                }
            }
        }
    }

    // Mappings.
    if sync.mappings.is_empty() {
        problems.push(
            Problem::new(
                format!("{path}.mappings"),
                "a definition needs at least one mapping",
            )
            .fix("map at least one column, e.g. to `Title`"),
        );
    }
    unique_names(
        sync.mappings.iter().map(|m| m.source.as_str()),
        &format!("{path}.mappings[].source"),
        problems,
    );
    unique_names(
        sync.mappings.iter().map(|m| m.target.as_str()),
        &format!("{path}.mappings[].target"),
        problems,
    );
    for (j, mapping) in sync.mappings.iter().enumerate() {
        let mpath = format!("{path}.mappings[{j}]");
        if mapping.target.eq_ignore_ascii_case(KEY_COLUMN) {
            problems.push(
                Problem::new(
                    format!("{mpath}.target"),
                    format!(
                        "`{}` is the hidden column where SyncBridge keeps each item's identity; writing it would break crash recovery",
                        mapping.target
                    ),
                )
                .fix("choose another column name"),
            );
        }
        if SYSTEM_FIELDS.contains(&mapping.target.as_str())
            && mapping.direction != SyncDirection::PullOnly
        {
            problems.push(
                Problem::new(
                    format!("{mpath}.target"),
                    format!(
                        "`{}` is a read-only SharePoint system field",
                        mapping.target
                    ),
                )
                .fix("map it with `direction: PULL_ONLY`, or choose another column"),
            );
        }
        if let Some(rule) = &mapping.transform {
            let name = rule.split('(').next().unwrap_or(rule).trim();
            if !name.starts_with("wasm:")
                && !known.rule_names.is_empty()
                && !known.rule_names.iter().any(|r| r == name)
            {
                problems.push(
                    Problem::new(
                        format!("{mpath}.transform"),
                        format!("unknown transform rule `{name}`"),
                    )
                    .fix(format!(
                        "use one of: {}, or `wasm:<module>#<function>`",
                        known.rule_names.join(", ")
                    )),
                );
            }
        }
    }
    let pull_only = sync.mappings.iter().position(|m| {
        m.direction == SyncDirection::PullOnly && !SYSTEM_FIELDS.contains(&m.target.as_str())
    });
    if sync.mode != crate::model::SyncMode::TwoWay
        && let Some(j) = pull_only
    {
        problems.push(
            Problem::new(
                format!("{path}.mappings[{j}].direction"),
                "PULL_ONLY fields are only read back in TWO_WAY mode",
            )
            .fix("set `mode: TWO_WAY`, or use PUSH_ONLY"),
        );
    }

    // Window and schedule.
    if let Some(window) = &sync.window {
        for (field, value) in [("start", &window.start), ("end", &window.end)] {
            if !is_hh_mm(value) {
                problems.push(
                    Problem::new(
                        format!("{path}.window.{field}"),
                        format!("`{value}` is not a time of day"),
                    )
                    .fix("write it as HH:MM, e.g. `19:00`"),
                );
            }
        }
    }
    if let Some(schedule) = &sync.schedule
        && schedule.cron.split_whitespace().count() != 5
    {
        problems.push(
            Problem::new(
                format!("{path}.schedule.cron"),
                format!("`{}` is not a five-field cron expression", schedule.cron),
            )
            .fix("write minute hour day-of-month month day-of-week, e.g. `*/15 * * * *`"),
        );
    }
}

fn is_hh_mm(value: &str) -> bool {
    let Some((hours, minutes)) = value.split_once(':') else {
        return false;
    };
    hours.len() == 2
        && minutes.len() == 2
        && hours.parse::<u8>().is_ok_and(|h| h < 24)
        && minutes.parse::<u8>().is_ok_and(|m| m < 60)
}

fn check_secret(value: &str, path: &str, problems: &mut Vec<Problem>) {
    if value.is_empty() {
        problems.push(
            Problem::new(path, "the secret is empty")
                .fix("write the secret, or `${env:NAME}` / `${file:PATH}`"),
        );
    } else if value.starts_with("${") && SecretRef::parse(value).is_none() {
        problems.push(
            Problem::new(path, "not a valid secret reference")
                .fix("write `${env:NAME}` or `${file:PATH}`"),
        );
    }
}

/// Collects names, reporting duplicates at `path`.
fn unique_names<'a>(
    names: impl Iterator<Item = &'a str>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            problems.push(
                Problem::new(path, format!("`{name}` is used twice"))
                    .fix("names must be unique here; rename or merge one of them"),
            );
        }
    }
    seen
}

fn dangling(path: &str, what: &str, name: &str, existing: &HashSet<&str>) -> Problem {
    let sorted: BTreeSet<&str> = existing.iter().copied().collect();
    let available = if sorted.is_empty() {
        "none is defined".to_owned()
    } else {
        format!(
            "defined: {}",
            sorted.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Problem::new(path, format!("no {what} named `{name}`"))
        .fix(format!("use a {what} defined in this file ({available})"))
}
