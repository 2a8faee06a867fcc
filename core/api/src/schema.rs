//! Descriptors of what a source holds: tables, columns, constraints and indexes.
//!
//! Sources fill these in from their catalogs; the meta-store keeps them as the inventory and as
//! schema snapshots for drift detection; provisioning turns them into target columns.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A table's address inside one database: an optional schema (PostgreSQL, SQL Server) and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    pub schema: Option<String>,
    pub name: String,
}

impl TableRef {
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Base table or view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableKind {
    Base,
    View,
}

/// The portable type of a column: what its values become in the [`crate::Value`] model.
///
/// The source's own type name is kept beside it in [`ColumnDescriptor::native_type`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DataType {
    Bool,
    /// An integer of `bits` width (8, 16, 32 or 64); `unsigned` ones above i64 read as decimals.
    Int {
        bits: u8,
        unsigned: bool,
    },
    Float {
        bits: u8,
    },
    /// Exact numeric; `None` precision means unconstrained (PostgreSQL `numeric`).
    Decimal {
        precision: Option<u8>,
        scale: Option<u8>,
    },
    /// Text; `max_length` in characters where the source limits it.
    Text {
        max_length: Option<u32>,
    },
    /// A closed set of text values (PostgreSQL enums, MySQL ENUM): a choice column in SharePoint.
    Enum {
        values: Vec<String>,
    },
    Bytes {
        max_length: Option<u32>,
    },
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
}

impl DataType {
    /// A short type name for messages and snapshots.
    pub fn name(&self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Int { .. } => "int",
            DataType::Float { .. } => "float",
            DataType::Decimal { .. } => "decimal",
            DataType::Text { .. } => "text",
            DataType::Enum { .. } => "enum",
            DataType::Bytes { .. } => "bytes",
            DataType::Date => "date",
            DataType::Time => "time",
            DataType::Timestamp => "timestamp",
            DataType::TimestampTz => "timestamptz",
            DataType::Uuid => "uuid",
            DataType::Json => "json",
        }
    }
}

/// One column of a table as the source's catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDescriptor {
    pub name: String,
    /// 1-based position in the table.
    pub ordinal: u32,
    pub data_type: DataType,
    /// The source's own spelling of the type (`character varying(40)`, `tinyint(1)`).
    pub native_type: String,
    pub nullable: bool,
    pub default: Option<String>,
    pub is_identity: bool,
    pub is_primary_key: bool,
    /// Part of a single-column unique constraint or unique index.
    pub is_unique: bool,
}

/// The kind of a table constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConstraintKind {
    PrimaryKey,
    ForeignKey,
    Unique,
    Check,
}

/// A constraint: key columns in key order, and for foreign keys what they reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintDescriptor {
    pub name: String,
    pub kind: ConstraintKind,
    pub columns: Vec<String>,
    pub referenced_table: Option<TableRef>,
    pub referenced_columns: Vec<String>,
    /// The source's definition text, where it gives one (check expressions).
    pub definition: Option<String>,
}

/// An index with its columns in index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDescriptor {
    pub name: String,
    pub is_unique: bool,
    /// Access method (`btree`, `hash`, `gin`, `CLUSTERED` …).
    pub method: Option<String>,
    pub columns: Vec<String>,
    pub definition: Option<String>,
}

/// Everything introspection learns about one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDescriptor {
    pub table: TableRef,
    pub kind: TableKind,
    pub columns: Vec<ColumnDescriptor>,
    pub constraints: Vec<ConstraintDescriptor>,
    pub indexes: Vec<IndexDescriptor>,
    /// The catalog's row estimate; `None` when the source does not know (e.g. never analyzed).
    pub row_estimate: Option<i64>,
}

impl TableDescriptor {
    /// The primary key's columns in key order (empty when the table has none).
    pub fn primary_key(&self) -> Vec<String> {
        self.constraints
            .iter()
            .find(|c| c.kind == ConstraintKind::PrimaryKey)
            .map(|c| c.columns.clone())
            .unwrap_or_default()
    }

    /// The column with this name, if any.
    pub fn column(&self, name: &str) -> Option<&ColumnDescriptor> {
        self.columns.iter().find(|c| c.name == name)
    }
}
