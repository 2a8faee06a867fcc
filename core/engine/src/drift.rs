//! Schema drift: the live source table against its last snapshot and against the mappings.
//!
//! Severities (shared/seeds/schema-drift.md): CRITICAL — a mapped or key column dropped or
//! renamed; HIGH — a mapped column's type changed to another kind (text → integer); MEDIUM — a
//! new column, a nullability change, a compatible type change (varchar(50) → varchar(100)), an
//! unmapped column dropped; LOW — an index or default changed.

use std::collections::BTreeSet;

use serde::Serialize;
use syncbridge_api::TableRef;
use syncbridge_store::inventory::{ColumnRecord, latest_snapshot};

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
            let after = record(&live).columns;
            let before = match latest_snapshot(self.store(), def.table_id).await? {
                Some((_, columns, _, _)) => columns,
                // No snapshot yet: only the mappings can be checked.
                None => after.clone(),
            };
            findings.extend(compare_columns(
                &name,
                &table.to_string(),
                &before,
                &after,
                &mapped,
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
