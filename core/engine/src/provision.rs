//! `provision`: make every target list of a definition exist with the columns its mappings
//! need, plus the hidden, indexed, unique key column the idempotency protocol looks items up by.
//! Re-provisioning changes nothing; a missing column is added; an incompatible one is reported.

use serde::Serialize;
use syncbridge_api::{CollectionSpec, DataType, FieldSpec};
use syncbridge_store::definitions::set_list_provisioned;

use crate::run::{Engine, EngineError, KEY_FIELD};

/// What provisioning did to one list.
#[derive(Debug, Clone, Serialize)]
pub struct ListProvisioned {
    pub list: String,
    pub list_id: String,
    pub created: bool,
    pub added_fields: Vec<String>,
    pub incompatible_fields: Vec<String>,
}

/// The list column type for a mapping: its `target_type` when given, else from the source type.
pub fn field_type(target_type: Option<&str>, source: Option<&DataType>) -> DataType {
    match target_type.map(str::to_ascii_lowercase).as_deref() {
        Some("text") => DataType::Text {
            max_length: Some(255),
        },
        Some("note" | "multilinetext") => DataType::Text { max_length: None },
        Some("number") => DataType::Float { bits: 64 },
        Some("currency") => DataType::Decimal {
            precision: None,
            scale: Some(2),
        },
        Some("datetime" | "date") => DataType::TimestampTz,
        Some("boolean") => DataType::Bool,
        Some("choice") => match source {
            Some(DataType::Enum { values }) => DataType::Enum {
                values: values.clone(),
            },
            _ => DataType::Enum { values: Vec::new() },
        },
        _ => source.cloned().unwrap_or(DataType::Text {
            max_length: Some(255),
        }),
    }
}

impl Engine {
    /// Provisions every target list of `name`.
    pub async fn provision(&self, name: &str) -> Result<Vec<ListProvisioned>, EngineError> {
        let def = self.definition(name).await?;
        let (_, source) = self.connect_source(&def).await?;
        let described = self.describe_table(&def, source.as_ref()).await?;
        let mut fields: Vec<FieldSpec> = def
            .mappings
            .iter()
            .filter(|m| !m.is_system_field)
            .map(|m| {
                let source_type = described
                    .as_ref()
                    .and_then(|t| t.column(&m.source_column_name))
                    .map(|c| &c.data_type);
                FieldSpec {
                    name: m.target_column_name.clone(),
                    data_type: field_type(m.target_type.as_deref(), source_type),
                    required: false,
                    indexed: m.is_key,
                    unique: false,
                    hidden: false,
                }
            })
            .filter(|f| f.name != "Title")
            .collect();
        fields.push(FieldSpec {
            name: KEY_FIELD.to_owned(),
            data_type: DataType::Text {
                max_length: Some(64),
            },
            required: false,
            indexed: true,
            unique: true,
            hidden: true,
        });
        let mut reports = Vec::new();
        let targets = self.connect_targets_for_provisioning(&def).await?;
        for (row, target) in def.targets.iter().zip(targets) {
            let spec = CollectionSpec {
                name: row.list_name.clone(),
                description: row.list_description.clone(),
                fields: fields.clone(),
                key_field: KEY_FIELD.to_owned(),
            };
            let report = target
                .provision(&spec)
                .await
                .map_err(|error| EngineError::Connector {
                    sync: def.name.clone(),
                    error,
                })?;
            set_list_provisioned(self.store(), row.list_row_id, &report.collection.id).await?;
            reports.push(ListProvisioned {
                list: row.list_name.clone(),
                list_id: report.collection.id,
                created: report.created,
                added_fields: report.added_fields,
                incompatible_fields: report.incompatible_fields,
            });
        }
        Ok(reports)
    }
}
