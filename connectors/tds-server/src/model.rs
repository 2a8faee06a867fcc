//! The in-memory database behind the server: tables with typed columns and keys, the catalog
//! views derived from them, change tracking and a database-wide rowversion counter.
//!
//! Tests change data through [`Database::insert`], [`Database::update`] and
//! [`Database::delete`], which keep change tracking and rowversions as SQL Server does.

use std::collections::BTreeMap;

use crate::types::{SqlType, SqlValue};

/// A column definition.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    pub identity: bool,
    pub computed: bool,
}

impl Column {
    pub fn new(name: &str, ty: SqlType) -> Self {
        Self {
            name: name.to_owned(),
            ty,
            nullable: true,
            identity: false,
            computed: false,
        }
    }

    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }

    pub fn identity(mut self) -> Self {
        self.identity = true;
        self.nullable = false;
        self
    }

    pub fn computed(mut self) -> Self {
        self.computed = true;
        self
    }
}

/// A change-tracking entry: the last change to a key.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedChange {
    pub version: i64,
    /// `I`, `U` or `D`.
    pub operation: char,
    /// The version the key was created at (`SYS_CHANGE_CREATION_VERSION`).
    pub creation_version: Option<i64>,
}

/// Change tracking of one table.
#[derive(Debug, Clone, Default)]
pub struct ChangeTracking {
    /// The latest change per primary key.
    pub changes: BTreeMap<Vec<KeyPart>, TrackedChange>,
    /// `CHANGE_TRACKING_MIN_VALID_VERSION`: changes before it were cleaned up.
    pub min_valid_version: i64,
}

/// A key value that orders (for the change table's map).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyPart {
    Null,
    Int(i64),
    Text(String),
    Other(String),
}

impl From<&SqlValue> for KeyPart {
    fn from(value: &SqlValue) -> Self {
        match value {
            SqlValue::Null => KeyPart::Null,
            SqlValue::Int(v) => KeyPart::Int(*v),
            SqlValue::Text(t) => KeyPart::Text(t.clone()),
            other => KeyPart::Other(crate::wire::display(other)),
        }
    }
}

/// A table and its rows.
#[derive(Debug, Clone)]
pub struct Table {
    pub object_id: i32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// The primary key constraint's name and columns, in key order.
    pub primary_key: Option<(String, Vec<String>)>,
    /// Unique constraints: name and columns.
    pub unique: Vec<(String, Vec<String>)>,
    pub rows: Vec<Vec<SqlValue>>,
    pub change_tracking: Option<ChangeTracking>,
    /// A view rather than a base table.
    pub is_view: bool,
    /// The primary keys present, so inserts check uniqueness without a scan.
    keys: std::collections::BTreeSet<Vec<KeyPart>>,
}

impl Table {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    fn key_indexes(&self) -> Vec<usize> {
        self.primary_key
            .as_ref()
            .map(|(_, cols)| cols.iter().filter_map(|c| self.column_index(c)).collect())
            .unwrap_or_default()
    }

    fn key_of(&self, row: &[SqlValue]) -> Vec<KeyPart> {
        self.key_indexes()
            .iter()
            .map(|&i| KeyPart::from(&row[i]))
            .collect()
    }

    fn rowversion_index(&self) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.ty == SqlType::RowVersion)
    }
}

/// The database the server answers from.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub tables: Vec<Table>,
    /// `CHANGE_TRACKING_CURRENT_VERSION()`.
    pub change_version: i64,
    /// The last rowversion handed out (`@@DBTS`).
    pub rowversion: u64,
    /// Rowversions of transactions still open: `MIN_ACTIVE_ROWVERSION()` stays below them.
    pub active_rowversions: Vec<u64>,
    /// The login lacks VIEW DATABASE STATE: `sys.dm_db_partition_stats` is refused (error 300).
    pub deny_view_database_state: bool,
    next_object_id: i32,
}

/// A failed change to the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

impl Database {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            tables: Vec::new(),
            change_version: 0,
            rowversion: 2000,
            active_rowversions: Vec::new(),
            deny_view_database_state: false,
            next_object_id: 245_575_913,
        }
    }

    /// Creates a table; `primary_key` names its columns in key order (empty: none).
    pub fn create_table(
        &mut self,
        schema: &str,
        name: &str,
        columns: Vec<Column>,
        primary_key: &[&str],
    ) -> &mut Table {
        let object_id = self.next_object_id;
        self.next_object_id += 16_000;
        self.tables.push(Table {
            object_id,
            schema: schema.to_owned(),
            name: name.to_owned(),
            columns,
            primary_key: (!primary_key.is_empty()).then(|| {
                (
                    format!("PK__{name}__{object_id:X}"),
                    primary_key.iter().map(|c| (*c).to_owned()).collect(),
                )
            }),
            unique: Vec::new(),
            rows: Vec::new(),
            change_tracking: None,
            is_view: false,
            keys: Default::default(),
        });
        let last = self.tables.len() - 1;
        &mut self.tables[last]
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.schema.eq_ignore_ascii_case(schema) && t.name.eq_ignore_ascii_case(name))
    }

    fn table_mut(&mut self, schema: &str, name: &str) -> Result<&mut Table, ModelError> {
        self.tables
            .iter_mut()
            .find(|t| t.schema.eq_ignore_ascii_case(schema) && t.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| ModelError(format!("no table {schema}.{name}")))
    }

    /// `ALTER TABLE … ENABLE CHANGE_TRACKING` (the table needs a primary key).
    pub fn enable_change_tracking(&mut self, schema: &str, name: &str) -> Result<(), ModelError> {
        let version = self.change_version;
        let table = self.table_mut(schema, name)?;
        if table.primary_key.is_none() {
            return Err(ModelError(format!(
                "Cannot enable change tracking on table '{name}'. Change tracking requires a primary key on the table."
            )));
        }
        table.change_tracking = Some(ChangeTracking {
            changes: BTreeMap::new(),
            min_valid_version: version,
        });
        Ok(())
    }

    /// The change-tracking cleanup: forgets every change up to now, as retention expiring does.
    pub fn purge_change_tracking(&mut self, schema: &str, name: &str) -> Result<(), ModelError> {
        let version = self.change_version;
        let table = self.table_mut(schema, name)?;
        let tracking = table
            .change_tracking
            .as_mut()
            .ok_or_else(|| ModelError(format!("change tracking is off for {name}")))?;
        tracking
            .changes
            .retain(|_, change| change.version > version);
        tracking.min_valid_version = version;
        Ok(())
    }

    fn next_rowversion(&mut self) -> Vec<u8> {
        self.rowversion += 1;
        self.rowversion.to_be_bytes().to_vec()
    }

    fn track(
        &mut self,
        schema: &str,
        name: &str,
        key: Vec<KeyPart>,
        operation: char,
    ) -> Result<(), ModelError> {
        self.change_version += 1;
        let version = self.change_version;
        let table = self.table_mut(schema, name)?;
        if let Some(tracking) = table.change_tracking.as_mut() {
            let creation_version = match (tracking.changes.get(&key), operation) {
                (_, 'I') => Some(version),
                (Some(previous), _) => previous.creation_version,
                (None, _) => None,
            };
            // An insert then a delete inside the tracked window leaves a delete; an insert
            // followed by updates stays an insert, as SQL Server reports the net change.
            let operation = match (tracking.changes.get(&key).map(|c| c.operation), operation) {
                (Some('I'), 'U') => 'I',
                (Some('D'), 'I') => 'U',
                (_, op) => op,
            };
            tracking.changes.insert(
                key,
                TrackedChange {
                    version,
                    operation,
                    creation_version,
                },
            );
        }
        Ok(())
    }

    /// Inserts a row given as (column, value) pairs; missing columns are NULL, a rowversion
    /// column gets the next rowversion.
    pub fn insert(
        &mut self,
        schema: &str,
        name: &str,
        values: &[(&str, SqlValue)],
    ) -> Result<(), ModelError> {
        let rowversion = self.next_rowversion();
        let table = self.table_mut(schema, name)?;
        let mut row = vec![SqlValue::Null; table.columns.len()];
        for (column, value) in values {
            let index = table
                .column_index(column)
                .ok_or_else(|| ModelError(format!("Invalid column name '{column}'.")))?;
            row[index] = value.clone();
        }
        if let Some(index) = table.rowversion_index() {
            row[index] = SqlValue::Bytes(rowversion);
        }
        for (i, column) in table.columns.iter().enumerate() {
            if !column.nullable && row[i].is_null() {
                return Err(ModelError(format!(
                    "Cannot insert the value NULL into column '{}', table '{}'.",
                    column.name, table.name
                )));
            }
        }
        let key = table.key_of(&row);
        if table.primary_key.is_some() && !table.keys.insert(key.clone()) {
            return Err(ModelError(format!(
                "Violation of PRIMARY KEY constraint on '{}': duplicate key {key:?}.",
                table.name
            )));
        }
        table.rows.push(row);
        self.track(schema, name, key, 'I')
    }

    /// Sets columns of the row whose key equals `key` (values in key order).
    pub fn update(
        &mut self,
        schema: &str,
        name: &str,
        key: &[SqlValue],
        values: &[(&str, SqlValue)],
    ) -> Result<(), ModelError> {
        let rowversion = self.next_rowversion();
        let table = self.table_mut(schema, name)?;
        let wanted: Vec<KeyPart> = key.iter().map(KeyPart::from).collect();
        let position = table
            .rows
            .iter()
            .position(|r| table.key_of(r) == wanted)
            .ok_or_else(|| ModelError(format!("no row with key {wanted:?} in {name}")))?;
        let mut row = table.rows[position].clone();
        for (column, value) in values {
            let index = table
                .column_index(column)
                .ok_or_else(|| ModelError(format!("Invalid column name '{column}'.")))?;
            row[index] = value.clone();
        }
        if let Some(index) = table.rowversion_index() {
            row[index] = SqlValue::Bytes(rowversion);
        }
        let new_key = table.key_of(&row);
        if new_key != wanted && table.primary_key.is_some() {
            if table.keys.contains(&new_key) {
                return Err(ModelError(format!(
                    "Violation of PRIMARY KEY constraint on '{}': duplicate key {new_key:?}.",
                    table.name
                )));
            }
            table.keys.remove(&wanted);
            table.keys.insert(new_key.clone());
        }
        table.rows[position] = row;
        if new_key != wanted {
            // A key update is tracked as a delete of the old key and an insert of the new.
            self.track(schema, name, wanted, 'D')?;
            return self.track(schema, name, new_key, 'I');
        }
        self.track(schema, name, wanted, 'U')
    }

    /// Deletes the row whose key equals `key`.
    pub fn delete(&mut self, schema: &str, name: &str, key: &[SqlValue]) -> Result<(), ModelError> {
        let table = self.table_mut(schema, name)?;
        let wanted: Vec<KeyPart> = key.iter().map(KeyPart::from).collect();
        let before = table.rows.len();
        table
            .rows
            .retain(|r| table_key(r, &table.columns, &table.primary_key) != wanted);
        if table.rows.len() == before {
            return Err(ModelError(format!("no row with key {wanted:?} in {name}")));
        }
        table.keys.remove(&wanted);
        self.track(schema, name, wanted, 'D')
    }
}

fn table_key(
    row: &[SqlValue],
    columns: &[Column],
    primary_key: &Option<(String, Vec<String>)>,
) -> Vec<KeyPart> {
    primary_key
        .as_ref()
        .map(|(_, cols)| {
            cols.iter()
                .filter_map(|c| columns.iter().position(|x| x.name.eq_ignore_ascii_case(c)))
                .map(|i| KeyPart::from(&row[i]))
                .collect()
        })
        .unwrap_or_default()
}
