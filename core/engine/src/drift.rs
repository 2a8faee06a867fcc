//! Schema drift: the live source table against its last snapshot and against the mappings.
//!
//! Severities (shared/seeds/schema-drift.md): CRITICAL — a mapped or key column dropped or
//! renamed; HIGH — a mapped column's type changed to another kind (text → integer); MEDIUM — a
//! new column, a nullability change, a compatible type change (varchar(50) → varchar(100)), an
//! unmapped column dropped; LOW — an index or default changed.

use std::collections::BTreeSet;

use serde::Serialize;
use syncbridge_api::TableRef;
use syncbridge_store::inventory::{ColumnRecord, ConstraintRecord, IndexRecord, latest_snapshot};

use crate::introspect::record;
use crate::run::{Engine, EngineError};

/// How bad a change is, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "LOW" => Ok(Severity::Low),
            "MEDIUM" => Ok(Severity::Medium),
            "HIGH" => Ok(Severity::High),
            "CRITICAL" => Ok(Severity::Critical),
            _ => Err(format!(
                "`{text}` is not a severity; use LOW, MEDIUM, HIGH or CRITICAL"
            )),
        }
    }
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub sync: String,
    pub table: String,
    pub severity: Severity,
    pub column: Option<String>,
    pub message: String,
}

/// Compares a table's snapshot columns with its live ones. `mapped` are the columns syncs use.
pub fn compare_columns(
    sync: &str,
    table: &str,
    before: &[ColumnRecord],
    after: &[ColumnRecord],
    mapped: &BTreeSet<String>,
) -> Vec<Finding> {
    let finding = |severity, column: &str, message: String| Finding {
        sync: sync.to_owned(),
        table: table.to_owned(),
        severity,
        column: Some(column.to_owned()),
        message,
    };
    let mut out = Vec::new();
    for column in mapped {
        if !after.iter().any(|c| &c.column_name == column) {
            out.push(finding(Severity::Critical, column, format!("mapped column `{column}` no longer exists (dropped or renamed); fix the mapping or the table")));
        }
    }
    for old in before {
        match after.iter().find(|c| c.column_name == old.column_name) {
            None if !mapped.contains(&old.column_name) => {
                out.push(finding(
                    Severity::Medium,
                    &old.column_name,
                    format!("column `{}` was dropped (not mapped)", old.column_name),
                ));
            }
            None => {}
            Some(new) => {
                if new.data_type != old.data_type {
                    let incompatible =
                        !old.kind.is_empty() && !new.kind.is_empty() && old.kind != new.kind;
                    let severity = if incompatible && mapped.contains(&new.column_name) {
                        Severity::High
                    } else {
                        Severity::Medium
                    };
                    out.push(finding(
                        severity,
                        &new.column_name,
                        format!(
                            "type of `{}` changed from {} to {}",
                            new.column_name, old.data_type, new.data_type
                        ),
                    ));
                }
                if new.is_nullable != old.is_nullable {
                    out.push(finding(
                        Severity::Medium,
                        &new.column_name,
                        format!(
                            "`{}` is now {}",
                            new.column_name,
                            if new.is_nullable {
                                "nullable"
                            } else {
                                "NOT NULL"
                            }
                        ),
                    ));
                }
                if new.default_value != old.default_value {
                    out.push(finding(
                        Severity::Low,
                        &new.column_name,
                        format!("default of `{}` changed", new.column_name),
                    ));
                }
            }
        }
    }
    for new in after {
        if !before.iter().any(|c| c.column_name == new.column_name) {
            out.push(finding(
                Severity::Medium,
                &new.column_name,
                format!("new column `{}` ({})", new.column_name, new.data_type),
            ));
        }
    }
    out
}

/// Compares a table's constraints and indexes with the snapshot's. Index changes are LOW; a
/// changed primary key is HIGH (item identities are built from it); the unique constraint a
/// `UNIQUE_CONSTRAINT` sync keys on, dropped, is CRITICAL; other constraint changes are LOW.
pub fn compare_structure(
    sync: &str,
    table: &str,
    before: (&[ConstraintRecord], &[IndexRecord]),
    after: (&[ConstraintRecord], &[IndexRecord]),
    key_constraint: Option<&str>,
) -> Vec<Finding> {
    let finding = |severity, message: String| Finding {
        sync: sync.to_owned(),
        table: table.to_owned(),
        severity,
        column: None,
        message,
    };
    let mut out = Vec::new();
    let primary = |constraints: &[ConstraintRecord]| {
        constraints
            .iter()
            .find(|c| c.constraint_type == "PRIMARY_KEY")
            .map(|c| c.columns.clone())
    };
    let (old_pk, new_pk) = (primary(before.0), primary(after.0));
    if old_pk != new_pk {
        let show = |pk: &Option<Vec<String>>| {
            pk.as_ref()
                .map_or_else(|| "none".to_owned(), |c| format!("({})", c.join(", ")))
        };
        out.push(finding(
            Severity::High,
            format!(
                "primary key changed from {} to {}; item identities are built from the key: check the sync's key strategy",
                show(&old_pk),
                show(&new_pk)
            ),
        ));
    }
    for old in before
        .0
        .iter()
        .filter(|c| c.constraint_type != "PRIMARY_KEY")
    {
        match after.0.iter().find(|c| c.constraint_name == old.constraint_name) {
            None if key_constraint == Some(old.constraint_name.as_str()) => out.push(finding(
                Severity::Critical,
                format!(
                    "unique constraint `{}`, the sync's key, was dropped; choose another key strategy",
                    old.constraint_name
                ),
            )),
            None => out.push(finding(
                Severity::Low,
                format!("{} constraint `{}` was dropped", old.constraint_type, old.constraint_name),
            )),
            Some(new) if new.columns != old.columns || new.definition != old.definition => {
                out.push(finding(
                    Severity::Low,
                    format!("constraint `{}` changed", old.constraint_name),
                ));
            }
            Some(_) => {}
        }
    }
    for new in after
        .0
        .iter()
        .filter(|c| c.constraint_type != "PRIMARY_KEY")
    {
        if !before
            .0
            .iter()
            .any(|c| c.constraint_name == new.constraint_name)
        {
            out.push(finding(
                Severity::Low,
                format!(
                    "new {} constraint `{}`",
                    new.constraint_type, new.constraint_name
                ),
            ));
        }
    }
    for old in before.1 {
        match after.1.iter().find(|i| i.index_name == old.index_name) {
            None => out.push(finding(
                Severity::Low,
                format!("index `{}` was dropped", old.index_name),
            )),
            Some(new) if new.columns != old.columns || new.is_unique != old.is_unique => {
                out.push(finding(
                    Severity::Low,
                    format!(
                        "index `{}` changed: ({}){} → ({}){}",
                        old.index_name,
                        old.columns.join(", "),
                        if old.is_unique { " unique" } else { "" },
                        new.columns.join(", "),
                        if new.is_unique { " unique" } else { "" }
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for new in after.1 {
        if !before.1.iter().any(|i| i.index_name == new.index_name) {
            out.push(finding(
                Severity::Low,
                format!(
                    "new index `{}` on ({})",
                    new.index_name,
                    new.columns.join(", ")
                ),
            ));
        }
    }
    out
}

impl Engine {
    /// Drift findings of every definition (or one), most severe first.
    pub async fn drift(&self, only: Option<&str>) -> Result<Vec<Finding>, EngineError> {
        let names = match only {
            Some(name) => vec![name.to_owned()],
            None => syncbridge_store::definitions::sync_names(self.store()).await?,
        };
        let mut findings = Vec::new();
        for name in names {
            let def = self.definition(&name).await?;
            let (_, source) = self.connect_source(&def).await?;
            let table = TableRef {
                schema: def.schema_name.clone(),
                name: def.table_name.clone(),
            };
            let mut mapped: BTreeSet<String> = def
                .mappings
                .iter()
                .map(|m| m.source_column_name.clone())
                .collect();
            mapped.extend(def.key_columns.iter().cloned());
            mapped.extend(def.cursor_column.iter().cloned());
            let live = match source.introspect(Some(std::slice::from_ref(&table))).await {
                Ok(mut tables) => tables.pop(),
                Err(error) if error.domain() == syncbridge_api::ErrorDomain::User => None,
                Err(error) => {
                    return Err(EngineError::Connector {
                        sync: name.clone(),
                        error,
                    });
                }
            };
            let Some(live) = live else {
                findings.push(Finding {
                    sync: name.clone(),
                    table: table.to_string(),
                    severity: Severity::Critical,
                    column: None,
                    message: format!("table `{table}` no longer exists"),
                });
                continue;
            };
            let after = record(&live);
            let (before, constraints, indexes) =
                match latest_snapshot(self.store(), def.table_id).await? {
                    Some((_, columns, constraints, indexes)) => (columns, constraints, indexes),
                    // No snapshot yet: only the mappings can be checked.
                    None => (
                        after.columns.clone(),
                        after.constraints.clone(),
                        after.indexes.clone(),
                    ),
                };
            findings.extend(compare_columns(
                &name,
                &table.to_string(),
                &before,
                &after.columns,
                &mapped,
            ));
            let key_constraint = (def.key_strategy == "UNIQUE_CONSTRAINT")
                .then_some(def.key_constraint_name.as_deref())
                .flatten();
            findings.extend(compare_structure(
                &name,
                &table.to_string(),
                (&constraints, &indexes),
                (&after.constraints, &after.indexes),
                key_constraint,
            ));
        }
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        Ok(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: &str, kind: &str, nullable: bool) -> ColumnRecord {
        ColumnRecord {
            ordinal_position: 1,
            column_name: name.into(),
            data_type: data_type.into(),
            kind: kind.into(),
            is_nullable: nullable,
            default_value: None,
            is_identity: false,
            is_primary_key: false,
            is_unique: false,
        }
    }

    #[test]
    fn index_and_constraint_changes_are_graded() {
        let constraint = |name: &str, kind: &str, columns: &[&str]| ConstraintRecord {
            constraint_name: name.into(),
            constraint_type: kind.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            referenced_table: None,
            definition: None,
        };
        let index = |name: &str, unique: bool, columns: &[&str]| IndexRecord {
            index_name: name.into(),
            is_unique: unique,
            index_method: None,
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            definition: None,
        };
        let before_c = [
            constraint("pk", "PRIMARY_KEY", &["id"]),
            constraint("uq_code", "UNIQUE", &["code"]),
        ];
        let before_i = [
            index("ix_name", false, &["name"]),
            index("ix_old", false, &["x"]),
        ];
        let after_c = [constraint("pk", "PRIMARY_KEY", &["id", "region"])];
        let after_i = [
            index("ix_name", true, &["name"]),
            index("ix_new", false, &["y"]),
        ];
        let findings = compare_structure(
            "s",
            "t",
            (&before_c, &before_i),
            (&after_c, &after_i),
            Some("uq_code"),
        );
        let graded: Vec<(Severity, &str)> = findings
            .iter()
            .map(|f| (f.severity, f.message.as_str()))
            .collect();
        assert!(
            graded.iter().any(|(s, m)| *s == Severity::High
                && m.contains("primary key changed from (id) to (id, region)")),
            "{graded:?}"
        );
        assert!(
            graded
                .iter()
                .any(|(s, m)| *s == Severity::Critical && m.contains("`uq_code`")),
            "{graded:?}"
        );
        assert!(
            graded
                .iter()
                .any(|(s, m)| *s == Severity::Low && m.contains("index `ix_name` changed")),
            "{graded:?}"
        );
        assert!(
            graded
                .iter()
                .any(|(s, m)| *s == Severity::Low && m.contains("index `ix_old` was dropped")),
            "{graded:?}"
        );
        assert!(
            graded
                .iter()
                .any(|(s, m)| *s == Severity::Low && m.contains("new index `ix_new`")),
            "{graded:?}"
        );
        assert_eq!(findings.len(), 5, "{graded:?}");
        assert!(
            compare_structure(
                "s",
                "t",
                (&before_c, &before_i),
                (&before_c, &before_i),
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn severities_follow_the_seed() {
        let before = vec![
            column("id", "integer", "int", false),
            column("name", "text", "text", true),
            column("budget", "numeric", "decimal", true),
            column("old", "text", "text", true),
        ];
        let after = vec![
            column("id", "integer", "int", false),
            column("budget", "text", "text", false),
            column("extra", "date", "date", true),
        ];
        let mapped: BTreeSet<String> = ["id", "name", "budget"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let findings = compare_columns("s", "t", &before, &after, &mapped);
        let by = |column: &str| {
            findings
                .iter()
                .filter(|f| f.column.as_deref() == Some(column))
                .map(|f| f.severity)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            by("name"),
            vec![Severity::Critical],
            "mapped column dropped"
        );
        assert!(
            by("budget").contains(&Severity::High),
            "mapped column changed kind"
        );
        assert!(
            by("budget").contains(&Severity::Medium),
            "nullability changed"
        );
        assert_eq!(by("extra"), vec![Severity::Medium], "new column");
        assert_eq!(by("old"), vec![Severity::Medium], "unmapped column dropped");
        assert!(by("id").is_empty());
    }
}
