//! Introspection from the catalog views, one simple query each, joined here.

use std::collections::HashMap;

use syncbridge_api::{
    ColumnDescriptor, ConnectorError, ConstraintDescriptor, ConstraintKind, DataType,
    IndexDescriptor, PlanColumn, TableDescriptor, TableKind, TableRef,
};

use crate::connect::{Connection, rows};
use crate::convert::{ReadAs, int, text};

/// A column as reads need it.
#[derive(Debug, Clone)]
pub(crate) struct CatalogColumn {
    pub name: String,
    pub type_name: String,
    pub data_type: Option<DataType>,
    pub read_as: ReadAs,
    pub descriptor: ColumnDescriptor,
}

impl PlanColumn for CatalogColumn {
    fn name(&self) -> &str {
        &self.name
    }

    fn unreadable(&self) -> Option<&str> {
        self.data_type.is_none().then_some(self.type_name.as_str())
    }
}

/// The SyncBridge type of a SQL Server type, and how to read it; `None` when it cannot be read.
fn map_type(
    type_name: &str,
    max_length: i64,
    precision: u8,
    scale: u8,
) -> (Option<DataType>, ReadAs) {
    let chars =
        |bytes_per_char: i64| (max_length > 0).then(|| (max_length / bytes_per_char) as u32);
    let plain = |t| (Some(t), ReadAs::Plain);
    match type_name {
        "bit" => plain(DataType::Bool),
        "tinyint" => plain(DataType::Int {
            bits: 8,
            unsigned: true,
        }),
        "smallint" => plain(DataType::Int {
            bits: 16,
            unsigned: false,
        }),
        "int" => plain(DataType::Int {
            bits: 32,
            unsigned: false,
        }),
        "bigint" => plain(DataType::Int {
            bits: 64,
            unsigned: false,
        }),
        "decimal" | "numeric" => (
            Some(DataType::Decimal {
                precision: Some(precision),
                scale: Some(scale),
            }),
            if scale >= 38 {
                ReadAs::DecimalText
            } else {
                ReadAs::Plain
            },
        ),
        "money" => plain(DataType::Decimal {
            precision: Some(19),
            scale: Some(4),
        }),
        "smallmoney" => plain(DataType::Decimal {
            precision: Some(10),
            scale: Some(4),
        }),
        "float" => plain(DataType::Float { bits: 64 }),
        "real" => plain(DataType::Float { bits: 32 }),
        "nvarchar" | "nchar" => plain(DataType::Text {
            max_length: chars(2),
        }),
        "varchar" | "char" => plain(DataType::Text {
            max_length: chars(1),
        }),
        "ntext" | "text" | "xml" => plain(DataType::Text { max_length: None }),
        "varbinary" | "binary" | "image" => plain(DataType::Bytes {
            max_length: chars(1),
        }),
        "timestamp" | "rowversion" => plain(DataType::Bytes {
            max_length: Some(8),
        }),
        "date" => plain(DataType::Date),
        "time" => plain(DataType::Time),
        "datetime" | "datetime2" | "smalldatetime" => plain(DataType::Timestamp),
        "datetimeoffset" => plain(DataType::TimestampTz),
        "uniqueidentifier" => plain(DataType::Uuid),
        "hierarchyid" | "sql_variant" => (
            Some(DataType::Text {
                max_length: Some(4000),
            }),
            ReadAs::Text,
        ),
        // geography, geometry and other CLR types: tiberius cannot decode them.
        _ => (None, ReadAs::Plain),
    }
}

/// Type names by `user_type_id`; an alias type (`CREATE TYPE flag FROM bit`) maps to its base
/// type through `system_type_id`.
async fn type_names(
    client: &mut Connection,
    address: &str,
) -> Result<HashMap<i64, String>, ConnectorError> {
    let sql = "SELECT [user_type_id], [system_type_id], [name] FROM [sys].[types]";
    let all: Vec<(i64, i64, String)> = rows(client, address, sql, Vec::new())
        .await?
        .iter()
        .filter_map(|r| Some((int(r, 0)?, int(r, 1)?, text(r, 2)?)))
        .collect();
    let by_id: HashMap<i64, String> = all
        .iter()
        .map(|(id, _, name)| (*id, name.clone()))
        .collect();
    Ok(all
        .iter()
        .map(|(id, system, name)| {
            let base = if map_type(name, 0, 0, 0).0.is_some() || id == system {
                name.clone()
            } else {
                by_id.get(system).cloned().unwrap_or_else(|| name.clone())
            };
            (*id, base)
        })
        .collect())
}

/// The tables (and views) of the database, or the ones asked for.
pub(crate) async fn describe(
    client: &mut Connection,
    address: &str,
    wanted: Option<&[TableRef]>,
) -> Result<Vec<TableDescriptor>, ConnectorError> {
    let schemas: HashMap<i64, String> = rows(
        client,
        address,
        "SELECT [schema_id], [name] FROM [sys].[schemas]",
        Vec::new(),
    )
    .await?
    .iter()
    .filter_map(|r| Some((int(r, 0)?, text(r, 1)?)))
    .collect();
    let mut objects: Vec<(i64, TableRef, TableKind)> = Vec::new();
    for (view, kind) in [
        ("[sys].[tables]", TableKind::Base),
        ("[sys].[views]", TableKind::View),
    ] {
        let sql = format!("SELECT [object_id], [name], [schema_id] FROM {view}");
        for row in rows(client, address, &sql, Vec::new()).await? {
            let (Some(id), Some(name), Some(schema)) = (int(&row, 0), text(&row, 1), int(&row, 2))
            else {
                continue;
            };
            let table = TableRef::new(schemas.get(&schema).map(String::as_str), &name);
            objects.push((id, table, kind));
        }
    }
    if let Some(wanted) = wanted {
        let matches = |t: &TableRef, w: &TableRef| {
            t.name.eq_ignore_ascii_case(&w.name)
                && t.schema
                    .as_deref()
                    .unwrap_or("dbo")
                    .eq_ignore_ascii_case(w.schema.as_deref().unwrap_or("dbo"))
        };
        for w in wanted {
            if !objects.iter().any(|(_, t, _)| matches(t, w)) {
                return Err(ConnectorError::user(format!(
                    "table `{w}` does not exist in SQL Server at {address}"
                ))
                .with_hint("check the schema and table name (`dbo.projects`)"));
            }
        }
        objects.retain(|(_, t, _)| wanted.iter().any(|w| matches(t, w)));
    }
    objects.sort_by(|a, b| a.1.cmp(&b.1));

    let types = type_names(client, address).await?;
    let mut columns: HashMap<i64, Vec<CatalogColumn>> = HashMap::new();
    let sql = "SELECT [object_id], [column_id], [name], [user_type_id], [max_length], [precision], [scale], [is_nullable], [is_identity], [is_computed] FROM [sys].[columns] ORDER BY [object_id], [column_id]";
    for row in rows(client, address, sql, Vec::new()).await? {
        let (Some(object), Some(ordinal), Some(name)) = (int(&row, 0), int(&row, 1), text(&row, 2))
        else {
            continue;
        };
        let type_name = int(&row, 3)
            .and_then(|t| types.get(&t).cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        let max_length = int(&row, 4).unwrap_or(0);
        let precision = int(&row, 5).unwrap_or(0) as u8;
        let scale = int(&row, 6).unwrap_or(0) as u8;
        let (data_type, read_as) = map_type(&type_name, max_length, precision, scale);
        let native_type = match type_name.as_str() {
            "decimal" | "numeric" => format!("{type_name}({precision},{scale})"),
            "nvarchar" | "nchar" if max_length == -1 => format!("{type_name}(max)"),
            "nvarchar" | "nchar" => format!("{type_name}({})", max_length / 2),
            "varchar" | "char" | "varbinary" | "binary" if max_length == -1 => {
                format!("{type_name}(max)")
            }
            "varchar" | "char" | "varbinary" | "binary" => format!("{type_name}({max_length})"),
            _ => type_name.clone(),
        };
        columns.entry(object).or_default().push(CatalogColumn {
            name: name.clone(),
            type_name: type_name.clone(),
            data_type: data_type.clone(),
            read_as,
            descriptor: ColumnDescriptor {
                name,
                ordinal: ordinal as u32,
                data_type: data_type.unwrap_or(DataType::Text { max_length: None }),
                native_type,
                nullable: int(&row, 7) == Some(1),
                default: None,
                is_identity: int(&row, 8) == Some(1),
                is_primary_key: false,
                is_unique: false,
            },
        });
    }

    // Keys and indexes.
    let mut index_columns: HashMap<(i64, i64), Vec<(i64, i64)>> = HashMap::new();
    let sql = "SELECT [object_id], [index_id], [column_id], [key_ordinal] FROM [sys].[index_columns] ORDER BY [object_id], [index_id], [key_ordinal]";
    for row in rows(client, address, sql, Vec::new()).await? {
        if let (Some(object), Some(index), Some(column), Some(ordinal)) =
            (int(&row, 0), int(&row, 1), int(&row, 2), int(&row, 3))
        {
            index_columns
                .entry((object, index))
                .or_default()
                .push((ordinal, column));
        }
    }
    let names_of = |object: i64, index: i64, cols: &[CatalogColumn]| -> Vec<String> {
        let mut keyed = index_columns
            .get(&(object, index))
            .cloned()
            .unwrap_or_default();
        keyed.sort();
        keyed
            .iter()
            .filter_map(|(_, id)| cols.get((*id - 1) as usize).map(|c| c.name.clone()))
            .collect()
    };
    let mut constraints: HashMap<i64, Vec<ConstraintDescriptor>> = HashMap::new();
    let sql =
        "SELECT [name], [parent_object_id], [type], [unique_index_id] FROM [sys].[key_constraints]";
    for row in rows(client, address, sql, Vec::new()).await? {
        let (Some(name), Some(parent), Some(kind), Some(index)) =
            (text(&row, 0), int(&row, 1), text(&row, 2), int(&row, 3))
        else {
            continue;
        };
        let cols = columns.get(&parent).map(Vec::as_slice).unwrap_or_default();
        constraints
            .entry(parent)
            .or_default()
            .push(ConstraintDescriptor {
                name,
                kind: if kind.trim() == "PK" {
                    ConstraintKind::PrimaryKey
                } else {
                    ConstraintKind::Unique
                },
                columns: names_of(parent, index, cols),
                referenced_table: None,
                referenced_columns: Vec::new(),
                definition: None,
            });
    }
    let mut indexes: HashMap<i64, Vec<IndexDescriptor>> = HashMap::new();
    let sql = "SELECT [object_id], [index_id], [name], [is_unique], [type_desc] FROM [sys].[indexes] WHERE [index_id] > 0";
    for row in rows(client, address, sql, Vec::new()).await? {
        let (Some(object), Some(index), Some(name)) = (int(&row, 0), int(&row, 1), text(&row, 2))
        else {
            continue;
        };
        let cols = columns.get(&object).map(Vec::as_slice).unwrap_or_default();
        indexes.entry(object).or_default().push(IndexDescriptor {
            name,
            is_unique: int(&row, 3) == Some(1),
            method: text(&row, 4),
            columns: names_of(object, index, cols),
            definition: None,
        });
    }
    let mut estimates: HashMap<i64, i64> = HashMap::new();
    // Partition stats need VIEW DATABASE STATE; `sys.partitions` gives the same counts without.
    let sql = "SELECT [object_id], [index_id], [row_count] FROM [sys].[dm_db_partition_stats] WHERE [index_id] IN (0, 1)";
    let stats = match rows(client, address, sql, Vec::new()).await {
        Ok(stats) => stats,
        Err(error) => {
            tracing::debug!(%error, "partition stats unavailable, using sys.partitions");
            let sql = "SELECT [object_id], [index_id], [rows] FROM [sys].[partitions] WHERE [index_id] IN (0, 1)";
            rows(client, address, sql, Vec::new()).await?
        }
    };
    for row in stats {
        if let (Some(object), Some(count)) = (int(&row, 0), int(&row, 2)) {
            *estimates.entry(object).or_default() += count;
        }
    }

    Ok(objects
        .into_iter()
        .map(|(object, table, kind)| {
            let constraints = constraints.remove(&object).unwrap_or_default();
            let primary: Vec<String> = constraints
                .iter()
                .find(|c| c.kind == ConstraintKind::PrimaryKey)
                .map(|c| c.columns.clone())
                .unwrap_or_default();
            let unique: Vec<&ConstraintDescriptor> = constraints
                .iter()
                .filter(|c| c.kind == ConstraintKind::Unique && c.columns.len() == 1)
                .collect();
            let columns = columns
                .remove(&object)
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    let mut d = c.descriptor;
                    d.is_primary_key = primary.contains(&d.name);
                    d.is_unique = (primary.len() == 1 && d.is_primary_key)
                        || unique.iter().any(|u| u.columns[0] == d.name);
                    d
                })
                .collect();
            TableDescriptor {
                table,
                kind,
                columns,
                constraints,
                indexes: indexes.remove(&object).unwrap_or_default(),
                row_estimate: estimates.get(&object).copied(),
            }
        })
        .collect())
}

/// The columns of one table (by object id, from [`object_id`]), as reads need them.
pub(crate) async fn columns_of(
    client: &mut Connection,
    address: &str,
    object: i64,
) -> Result<Vec<CatalogColumn>, ConnectorError> {
    let types = type_names(client, address).await?;
    let sql = "SELECT [name], [user_type_id], [max_length], [precision], [scale], [is_nullable] FROM [sys].[columns] WHERE [object_id] = @P1 ORDER BY [column_id]";
    let mut out = Vec::new();
    for (i, row) in rows(
        client,
        address,
        sql,
        vec![crate::connect::Param::Int(object)],
    )
    .await?
    .iter()
    .enumerate()
    {
        let Some(name) = text(row, 0) else { continue };
        let type_name = int(row, 1)
            .and_then(|t| types.get(&t).cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        let (data_type, read_as) = map_type(
            &type_name,
            int(row, 2).unwrap_or(0),
            int(row, 3).unwrap_or(0) as u8,
            int(row, 4).unwrap_or(0) as u8,
        );
        out.push(CatalogColumn {
            name: name.clone(),
            type_name: type_name.clone(),
            data_type: data_type.clone(),
            read_as,
            descriptor: ColumnDescriptor {
                name,
                ordinal: i as u32 + 1,
                data_type: data_type.unwrap_or(DataType::Text { max_length: None }),
                native_type: type_name,
                nullable: int(row, 5) == Some(1),
                default: None,
                is_identity: false,
                is_primary_key: false,
                is_unique: false,
            },
        });
    }
    Ok(out)
}

/// The object id of a table (`OBJECT_ID`), or an error naming it.
pub(crate) async fn object_id(
    client: &mut Connection,
    address: &str,
    table: &TableRef,
) -> Result<i64, ConnectorError> {
    rows(
        client,
        address,
        "SELECT OBJECT_ID(@P1) AS [id]",
        vec![crate::connect::Param::Text(crate::table_sql(table))],
    )
    .await?
    .first()
    .and_then(|r| int(r, 0))
    .ok_or_else(|| {
        ConnectorError::user(format!(
            "table `{table}` does not exist in SQL Server at {address}"
        ))
        .with_hint("check the schema and table name (`dbo.projects`)")
    })
}
