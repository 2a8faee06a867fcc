//! An example native plugin: a target that keeps each collection (list) as a JSON-lines file,
//! one item per line, in a directory.
//!
//! `Projects` becomes `Projects.jsonl` (the items: `{"id": 7, "fields": {...}}`, fields as plain
//! JSON: numbers, strings, booleans, dates as ISO text, exact decimals as strings) and
//! `Projects.meta.json` (the fields provisioned, the key field and the next item id, so ids are
//! never reused). Every write call rewrites the file through a temporary file and a rename, so a
//! crash leaves the old or the new content, never half of it; the engine's idempotency protocol
//! then finds creates that landed through [`Target::find_by_key`].
//!
//! It is an ordinary [`Target`] implementation, exported with one macro line at the bottom.
//! Collections are loaded on each call: this keeps the example short, and it is fine for files of
//! tens of thousands of items.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;
use syncbridge_plugin::api::{
    CollectionRef, CollectionSpec, ConnectorError, FieldSpec, ItemId, Position, ProvisionReport,
    RemoteChange, RemoteChangePage, RemoteCollection, RemoteField, Target, TargetLocation, Value,
    WriteOp, WriteOutcome,
};

/// The target's configuration: a target connection's `options:` map (plus what SyncBridge adds:
/// the connection's name and the site, which this target does not need).
#[derive(Debug, Clone, Deserialize)]
pub struct JsonlConfig {
    /// Where the files go (created if missing).
    pub directory: PathBuf,
}

/// A directory of JSON-lines collections.
#[derive(Debug)]
pub struct JsonlTarget {
    dir: PathBuf,
    /// Writes to one directory are serialised: each rewrites a whole file.
    lock: Mutex<()>,
}

/// What `NAME.meta.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    key_field: String,
    fields: Vec<FieldSpec>,
    next_id: i64,
}

/// One line of `NAME.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    id: i64,
    fields: BTreeMap<String, serde_json::Value>,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> ConnectorError {
    ConnectorError::external(format!("cannot {what} {}: {error}", path.display()))
        .with_hint("check that the target directory exists and is writable")
}

/// A value as plain JSON.
fn plain(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(v) => json!(v),
        Value::Int(v) => json!(v),
        Value::Float(v) => json!(v),
        Value::Decimal(v) => json!(v.to_string()),
        Value::Text(v) => json!(v),
        Value::Json(v) => v.clone(),
        other => json!(other.to_string()),
    }
}

/// Plain JSON back as a value (types the file does not keep come back as text).
fn typed(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(v) => Value::Bool(*v),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.clone()),
    }
}

impl JsonlTarget {
    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.meta.json"))
    }

    fn items_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.jsonl"))
    }

    fn read_meta(&self, name: &str) -> Result<Option<Meta>, ConnectorError> {
        let path = self.meta_path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ConnectorError::user(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    fn meta(&self, collection: &CollectionRef) -> Result<Meta, ConnectorError> {
        self.read_meta(&collection.name)?.ok_or_else(|| {
            ConnectorError::user(format!(
                "collection `{}` does not exist in {}",
                collection.name,
                self.dir.display()
            ))
            .with_hint("run `syncbridge provision` first")
        })
    }

    fn read_items(&self, name: &str) -> Result<Vec<Item>, ConnectorError> {
        let path = self.items_path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line).map_err(|e| {
                    ConnectorError::user(format!(
                        "{} line {} is not an item: {e}",
                        path.display(),
                        number + 1
                    ))
                })
            })
            .collect()
    }

    /// Replaces `path` with `bytes` atomically (temporary file, then rename).
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), ConnectorError> {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, bytes).map_err(|e| io_error("write", &temporary, e))?;
        std::fs::rename(&temporary, path).map_err(|e| io_error("replace", path, e))
    }

    fn save(&self, meta: &Meta, items: &[Item]) -> Result<(), ConnectorError> {
        let mut lines = Vec::new();
        for item in items {
            serde_json::to_writer(&mut lines, item)
                .map_err(|e| ConnectorError::internal(format!("cannot encode an item: {e}")))?;
            lines.push(b'\n');
        }
        // Items first: a crash between the two leaves a `next_id` that is too low, which the
        // next load repairs from the items themselves.
        self.replace(&self.items_path(&meta.name), &lines)?;
        let meta_bytes = serde_json::to_vec_pretty(meta)
            .map_err(|e| ConnectorError::internal(format!("cannot encode metadata: {e}")))?;
        self.replace(&self.meta_path(&meta.name), &meta_bytes)
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>, ConnectorError> {
        self.lock
            .lock()
            .map_err(|_| ConnectorError::internal("the jsonl target's lock is poisoned"))
    }
}

fn collection_ref(name: &str) -> CollectionRef {
    CollectionRef {
        id: name.to_owned(),
        name: name.to_owned(),
    }
}

impl Target for JsonlTarget {
    type Config = JsonlConfig;
    const KIND: &'static str = "jsonl";

    async fn connect(config: JsonlConfig) -> Result<Self, ConnectorError> {
        std::fs::create_dir_all(&config.directory)
            .map_err(|e| io_error("create", &config.directory, e))?;
        let dir = config
            .directory
            .canonicalize()
            .map_err(|e| io_error("resolve", &config.directory, e))?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }

    fn location(&self) -> Option<TargetLocation> {
        Some(TargetLocation {
            id: self.dir.display().to_string(),
            url: Some(format!("file://{}", self.dir.display())),
        })
    }

    async fn healthcheck(&self) -> Result<(), ConnectorError> {
        let probe = self.dir.join(".syncbridge-probe");
        std::fs::write(&probe, b"ok").map_err(|e| io_error("write", &probe, e))?;
        std::fs::remove_file(&probe).map_err(|e| io_error("remove", &probe, e))
    }

    async fn discover(&self) -> Result<Vec<RemoteCollection>, ConnectorError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error("list", &self.dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.strip_suffix(".meta.json").map(str::to_owned))
            .collect();
        names.sort();
        let mut collections = Vec::new();
        for name in names {
            let Some(meta) = self.read_meta(&name)? else {
                continue;
            };
            let items = self.read_items(&name)?;
            collections.push(RemoteCollection {
                collection: collection_ref(&name),
                template: Some("jsonl".to_owned()),
                item_count: Some(items.len() as u64),
                last_modified: None,
                fields: meta
                    .fields
                    .iter()
                    .map(|f| RemoteField {
                        name: f.name.clone(),
                        display_name: f.name.clone(),
                        field_type: f.data_type.name().to_owned(),
                        required: f.required,
                        read_only: false,
                        indexed: f.indexed,
                        hidden: f.hidden,
                    })
                    .collect(),
            });
        }
        Ok(collections)
    }

    async fn provision(&self, spec: &CollectionSpec) -> Result<ProvisionReport, ConnectorError> {
        let _guard = self.guard()?;
        let existing = self.read_meta(&spec.name)?;
        let created = existing.is_none();
        let mut meta = existing.unwrap_or_else(|| Meta {
            name: spec.name.clone(),
            key_field: spec.key_field.clone(),
            fields: Vec::new(),
            next_id: 1,
        });
        let mut added_fields = Vec::new();
        let mut incompatible_fields = Vec::new();
        for field in &spec.fields {
            match meta.fields.iter().find(|f| f.name == field.name) {
                None => {
                    meta.fields.push(field.clone());
                    added_fields.push(field.name.clone());
                }
                Some(have) if have.data_type != field.data_type => {
                    incompatible_fields.push(format!(
                        "{} is {} here, the mapping wants {}",
                        field.name,
                        have.data_type.name(),
                        field.data_type.name()
                    ))
                }
                Some(_) => {}
            }
        }
        let items = self.read_items(&spec.name)?;
        self.save(&meta, &items)?;
        Ok(ProvisionReport {
            collection: collection_ref(&spec.name),
            created,
            added_fields,
            incompatible_fields,
        })
    }

    async fn write(
        &self,
        collection: &CollectionRef,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let _guard = self.guard()?;
        let mut meta = self.meta(collection)?;
        let mut items = self.read_items(&collection.name)?;
        let highest = items.iter().map(|i| i.id).max().unwrap_or(0);
        meta.next_id = meta.next_id.max(highest + 1);
        let mut by_id: BTreeMap<i64, usize> = items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.id, i))
            .collect();
        let mut removed = vec![false; items.len()];
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            let outcome = match op {
                WriteOp::Create { key, fields } => {
                    let id = meta.next_id;
                    meta.next_id += 1;
                    let mut values: BTreeMap<String, serde_json::Value> =
                        fields.iter().map(|(n, v)| (n.clone(), plain(v))).collect();
                    values.insert(meta.key_field.clone(), json!(key));
                    by_id.insert(id, items.len());
                    items.push(Item { id, fields: values });
                    removed.push(false);
                    WriteOutcome::Created {
                        item_id: ItemId(id),
                    }
                }
                WriteOp::Update { item_id, fields } => match by_id.get(&item_id.0) {
                    Some(&index) if !removed[index] => {
                        for (name, value) in &fields {
                            items[index].fields.insert(name.clone(), plain(value));
                        }
                        WriteOutcome::Updated
                    }
                    _ => WriteOutcome::NotFound,
                },
                WriteOp::Delete { item_id } => match by_id.get(&item_id.0) {
                    Some(&index) if !removed[index] => {
                        removed[index] = true;
                        WriteOutcome::Deleted
                    }
                    _ => WriteOutcome::NotFound,
                },
            };
            outcomes.push(outcome);
        }
        let kept: Vec<Item> = items
            .into_iter()
            .zip(removed)
            .filter(|(_, gone)| !gone)
            .map(|(item, _)| item)
            .collect();
        self.save(&meta, &kept)?;
        Ok(outcomes)
    }

    async fn find_by_key(
        &self,
        collection: &CollectionRef,
        key_field: &str,
        key: &str,
    ) -> Result<Option<ItemId>, ConnectorError> {
        let _guard = self.guard()?;
        Ok(self
            .read_items(&collection.name)?
            .iter()
            .find(|item| item.fields.get(key_field).and_then(|v| v.as_str()) == Some(key))
            .map(|item| ItemId(item.id)))
    }

    /// Files keep no change log: every read returns every item, flagged as a reset (items not
    /// in it are gone).
    async fn read_changes(
        &self,
        collection: &CollectionRef,
        _from: Option<Position>,
    ) -> Result<RemoteChangePage, ConnectorError> {
        let _guard = self.guard()?;
        let changes = self
            .read_items(&collection.name)?
            .into_iter()
            .map(|item| RemoteChange::Upserted {
                item_id: ItemId(item.id),
                fields: item
                    .fields
                    .iter()
                    .map(|(n, v)| (n.clone(), typed(v)))
                    .collect(),
                modified: None,
            })
            .collect();
        Ok(RemoteChangePage {
            changes,
            next: Position("full".to_owned()),
            more: false,
            reset: true,
        })
    }

    async fn list_keys(
        &self,
        collection: &CollectionRef,
        key_field: &str,
    ) -> Result<Vec<(ItemId, String)>, ConnectorError> {
        let _guard = self.guard()?;
        Ok(self
            .read_items(&collection.name)?
            .into_iter()
            .filter_map(|item| {
                let key = item.fields.get(key_field)?.as_str()?.to_owned();
                Some((ItemId(item.id), key))
            })
            .collect())
    }
}

syncbridge_plugin::declare_target_plugin!(JsonlTarget);
