//! `introspect`: describe every table of a source database into the inventory, with a schema
//! snapshot per table (for drift) and an `introspection_runs` row with statistics. Rerunning
//! updates the same rows; it never duplicates them.

use serde::Serialize;
use syncbridge_api::{ConstraintKind, TableDescriptor, TableKind};
use syncbridge_store::definitions::database_sources;
use syncbridge_store::inventory::{
    ColumnRecord, ConstraintRecord, IndexRecord, TableRecord, database_by_name,
    finish_introspection, put_table, start_introspection,
};

use crate::connect::source_config;
use crate::run::{Engine, EngineError};

/// What an introspection found.
#[derive(Debug, Clone, Serialize)]
pub struct IntrospectionReport {
    pub database: String,
    pub tables: usize,
    pub views: usize,
    pub columns: usize,
    pub constraints: usize,
    pub indexes: usize,
}

pub(crate) fn record(table: &TableDescriptor) -> TableRecord {
    let primary = table.primary_key();
    TableRecord {
        schema_name: table.table.schema.clone(),
        table_name: table.table.name.clone(),
        table_type: match table.kind {
            TableKind::Base => "BASE".into(),
            TableKind::View => "VIEW".into(),
        },
        primary_key: (!primary.is_empty()).then(|| primary.join(",")),
        row_estimate: table.row_estimate,
        columns: table
            .columns
            .iter()
            .map(|c| ColumnRecord {
                ordinal_position: i64::from(c.ordinal),
                column_name: c.name.clone(),
                data_type: c.native_type.clone(),
                kind: c.data_type.name().to_owned(),
                is_nullable: c.nullable,
                default_value: c.default.clone(),
                is_identity: c.is_identity,
                is_primary_key: c.is_primary_key,
                is_unique: c.is_unique,
            })
            .collect(),
        constraints: table
            .constraints
            .iter()
            .map(|c| ConstraintRecord {
                constraint_name: c.name.clone(),
                constraint_type: match c.kind {
                    ConstraintKind::PrimaryKey => "PRIMARY_KEY",
                    ConstraintKind::ForeignKey => "FOREIGN_KEY",
                    ConstraintKind::Unique => "UNIQUE",
                    ConstraintKind::Check => "CHECK",
                }
                .into(),
                columns: c.columns.clone(),
                referenced_table: c.referenced_table.as_ref().map(ToString::to_string),
                definition: c.definition.clone(),
            })
            .collect(),
        indexes: table
            .indexes
            .iter()
            .map(|i| IndexRecord {
                index_name: i.name.clone(),
                is_unique: i.is_unique,
                index_method: i.method.clone(),
                columns: i.columns.clone(),
                definition: i.definition.clone(),
            })
            .collect(),
    }
}

impl Engine {
    /// Introspects the logical database `name` through its first healthy instance.
    pub async fn introspect(&self, name: &str) -> Result<IntrospectionReport, EngineError> {
        let unknown = || EngineError::Config {
            sync: name.to_owned(),
            message: format!("no database named `{name}`; apply a config that defines it"),
        };
        let (database_id, db_type, database_name) = database_by_name(self.store(), name)
            .await?
            .ok_or_else(unknown)?;
        let instances = database_sources(self.store(), database_id).await?;
        let instance = instances.first().ok_or_else(|| EngineError::Config {
            sync: name.to_owned(),
            message: format!("database `{name}` has no active instance"),
        })?;
        let factory = self
            .registry()
            .source(&db_type)
            .map_err(|e| EngineError::Config {
                sync: name.to_owned(),
                message: e.to_string(),
            })?;
        let key = || self.master_key();
        let connector_error = |error| EngineError::Connector {
            sync: name.to_owned(),
            error,
        };
        let config = source_config(&database_name, instance, &key).map_err(connector_error)?;
        let source = factory(config).await.map_err(connector_error)?;
        let run = start_introspection(self.store(), instance.instance_id).await?;
        let tables = match source.introspect(None).await {
            Ok(tables) => tables,
            Err(error) => {
                finish_introspection(
                    self.store(),
                    run,
                    false,
                    serde_json::json!({"error": error.to_string()}),
                )
                .await?;
                return Err(connector_error(error));
            }
        };
        let mut report = IntrospectionReport {
            database: name.to_owned(),
            tables: 0,
            views: 0,
            columns: 0,
            constraints: 0,
            indexes: 0,
        };
        for table in &tables {
            put_table(
                self.store(),
                database_id,
                instance.instance_id,
                &record(table),
            )
            .await?;
            match table.kind {
                TableKind::Base => report.tables += 1,
                TableKind::View => report.views += 1,
            }
            report.columns += table.columns.len();
            report.constraints += table.constraints.len();
            report.indexes += table.indexes.len();
        }
        finish_introspection(
            self.store(),
            run,
            true,
            serde_json::to_value(&report).unwrap_or_default(),
        )
        .await?;
        Ok(report)
    }
}
