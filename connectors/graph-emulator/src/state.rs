//! The emulated tenant's data: sites, lists, columns and items, and how they render as Graph
//! JSON. Shapes follow shared/notes/graph-api.md §2–§5: string item ids, `eTag` as
//! `"guid,version"`, null fields absent, hidden columns absent unless selected by name.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Everything that persists across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Data {
    pub sites: Vec<Site>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Site {
    /// `hostname,siteCollectionGuid,webGuid`.
    pub id: String,
    pub hostname: String,
    pub path: String,
    pub display_name: String,
    pub created: DateTime<Utc>,
    pub lists: Vec<List>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List {
    pub id: String,
    pub display_name: String,
    pub name: String,
    pub description: String,
    pub template: String,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub columns: Vec<Column>,
    pub items: BTreeMap<i64, Item>,
    pub next_item_id: i64,
    /// The list's change counter: every create, update and delete takes the next number. Delta
    /// tokens are positions in this sequence.
    #[serde(default)]
    pub change_seq: u64,
    /// Deleted items, for delta (the service keeps them in the recycle bin).
    #[serde(default)]
    pub tombstones: BTreeMap<i64, Tombstone>,
    /// Bumped to invalidate every delta token of the list (`POST /_emulator/reset-delta`).
    #[serde(default)]
    pub delta_generation: u64,
    /// Values of `enforceUniqueValues` columns (case-folded) → item id, so a create checks
    /// uniqueness without scanning the list. Rebuilt on demand, never persisted.
    #[serde(skip)]
    pub unique_index: Option<HashMap<String, HashMap<String, i64>>>,
}

/// What delta needs to know about a deleted item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tombstone {
    pub created_seq: u64,
    pub deleted_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Column {
    pub id: String,
    /// The internal name writes use.
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub hidden: bool,
    pub indexed: bool,
    pub required: bool,
    pub read_only: bool,
    pub enforce_unique_values: bool,
    /// The type facet as Graph spells it (`text`, `number`, `boolean`, `dateTime`, `choice` …) and
    /// its settings.
    pub kind: String,
    pub facet: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: i64,
    pub fields: Map<String, Value>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub version: u64,
    pub etag_guid: String,
    pub author_app: String,
    /// The list change number that created the item.
    #[serde(default)]
    pub created_seq: u64,
    /// The list change number of its latest create or update.
    #[serde(default)]
    pub changed_seq: u64,
}

/// Graph's timestamp format: UTC, whole seconds, `Z`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A stable GUID derived from text (sites keep their id across restarts and configs).
pub fn stable_guid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let hex = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Site {
    pub fn new(hostname: &str, path: &str, display_name: &str) -> Self {
        let collection = stable_guid(&format!("collection:{hostname}{path}")).to_uppercase();
        let web = stable_guid(&format!("web:{hostname}{path}")).to_uppercase();
        Self {
            id: format!("{hostname},{collection},{web}"),
            hostname: hostname.to_owned(),
            path: path.to_owned(),
            display_name: display_name.to_owned(),
            created: Utc::now(),
            lists: Vec::new(),
        }
    }

    pub fn web_url(&self) -> String {
        format!("https://{}{}", self.hostname, self.path)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "displayName": self.display_name,
            "name": self.path.rsplit('/').next().unwrap_or_default(),
            "createdDateTime": timestamp(self.created),
            "lastModifiedDateTime": timestamp(self.created),
            "webUrl": self.web_url(),
        })
    }
}

/// The columns every generic list starts with (read-only system columns are hidden from writes).
pub fn template_columns() -> Vec<Column> {
    let text = |name: &str, read_only: bool| Column {
        id: stable_guid(&format!("column:{name}")),
        name: name.to_owned(),
        display_name: name.to_owned(),
        description: String::new(),
        hidden: false,
        indexed: false,
        required: false,
        read_only,
        enforce_unique_values: false,
        kind: "text".to_owned(),
        facet: json!({"allowMultipleLines": false, "appendChangesToExistingText": false, "linesForEditing": 0, "maxLength": 255}),
    };
    let mut columns = vec![text("Title", false)];
    for (name, kind) in [
        ("Created", "dateTime"),
        ("Modified", "dateTime"),
        ("Author", "personOrGroup"),
        ("Editor", "personOrGroup"),
    ] {
        let mut column = text(name, true);
        column.kind = kind.to_owned();
        column.facet = json!({});
        columns.push(column);
    }
    columns
}

impl Column {
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "columnGroup": "Custom Columns",
            "description": self.description,
            "displayName": self.display_name,
            "enforceUniqueValues": self.enforce_unique_values,
            "hidden": self.hidden,
            "id": self.id,
            "indexed": self.indexed,
            "name": self.name,
            "readOnly": self.read_only,
            "required": self.required,
        });
        if let Some(map) = out.as_object_mut() {
            map.insert(self.kind.clone(), self.facet.clone());
        }
        out
    }

    pub fn max_length(&self) -> Option<u64> {
        if self.kind == "text"
            && !self
                .facet
                .get("allowMultipleLines")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        {
            Some(
                self.facet
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .unwrap_or(255),
            )
        } else if self.kind == "text" {
            Some(63_999)
        } else {
            None
        }
    }
}

impl List {
    pub fn web_url(&self, site: &Site) -> String {
        format!("{}/Lists/{}", site.web_url(), self.name)
    }

    pub fn to_json(&self, site: &Site) -> Value {
        json!({
            "@odata.etag": format!("\"{},{}\"", self.id, 1),
            "createdDateTime": timestamp(self.created),
            "description": self.description,
            "eTag": format!("\"{},{}\"", self.id, 1),
            "id": self.id,
            "lastModifiedDateTime": timestamp(self.modified),
            "name": self.name,
            "webUrl": self.web_url(site),
            "displayName": self.display_name,
            "createdBy": {"user": {"displayName": "System Account"}},
            "parentReference": {"siteId": site.id},
            "list": {"contentTypesEnabled": false, "hidden": false, "template": self.template},
        })
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Takes the next change number.
    pub fn next_change(&mut self) -> u64 {
        self.change_seq += 1;
        self.change_seq
    }

    /// Builds the uniqueness index when it is missing (after a load or a column change).
    pub fn ensure_unique_index(&mut self) {
        if self.unique_index.is_some() {
            return;
        }
        let mut index: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for column in self.columns.iter().filter(|c| c.enforce_unique_values) {
            let values = index.entry(column.name.clone()).or_default();
            for item in self.items.values() {
                if let Some(key) = item.fields.get(&column.name).and_then(unique_key) {
                    values.insert(key, item.id);
                }
            }
        }
        self.unique_index = Some(index);
    }

    /// The item other than `except` holding `value` in unique column `column`, if any.
    pub fn unique_owner(&self, column: &str, value: &Value, except: Option<i64>) -> Option<i64> {
        let key = unique_key(value)?;
        match &self.unique_index {
            Some(index) => index
                .get(column)?
                .get(&key)
                .copied()
                .filter(|id| Some(*id) != except),
            None => self
                .items
                .values()
                .find(|item| {
                    Some(item.id) != except
                        && item.fields.get(column).and_then(unique_key).as_ref() == Some(&key)
                })
                .map(|item| item.id),
        }
    }

    /// Keeps the uniqueness index in step with an item's fields (`None`: the item is gone).
    pub fn reindex(
        &mut self,
        id: i64,
        old: Option<&Map<String, Value>>,
        new: Option<&Map<String, Value>>,
    ) {
        let Some(index) = self.unique_index.as_mut() else {
            return;
        };
        for (column, values) in index.iter_mut() {
            if let Some(key) = old.and_then(|f| f.get(column)).and_then(unique_key) {
                values.remove(&key);
            }
            if let Some(key) = new.and_then(|f| f.get(column)).and_then(unique_key) {
                values.insert(key, id);
            }
        }
    }
}

/// SharePoint compares unique values case-insensitively.
fn unique_key(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.to_lowercase()),
        other => Some(other.to_string()),
    }
}

impl Item {
    pub fn etag(&self) -> String {
        format!("\"{},{}\"", self.etag_guid, self.version)
    }

    /// The `fields` object: set values, system fields, hidden columns only when `select`ed.
    pub fn fields_json(&self, list: &List, select: Option<&[String]>) -> Value {
        let mut out = Map::new();
        out.insert("@odata.etag".into(), Value::String(self.etag()));
        let wanted = |name: &str| select.is_none_or(|s| s.iter().any(|n| n == name));
        for column in &list.columns {
            if column.read_only {
                continue;
            }
            if column.hidden && !select.is_some_and(|s| s.contains(&column.name)) {
                continue;
            }
            if !wanted(&column.name) {
                continue;
            }
            if let Some(value) = self.fields.get(&column.name).filter(|v| !v.is_null()) {
                out.insert(column.name.clone(), value.clone());
            }
        }
        let title = self.fields.get("Title").cloned().unwrap_or(Value::Null);
        let system = [
            ("id", Value::String(self.id.to_string())),
            ("ContentType", Value::String("Item".into())),
            ("Modified", Value::String(timestamp(self.modified))),
            ("Created", Value::String(timestamp(self.created))),
            ("AuthorLookupId", Value::String("1073741822".into())),
            ("EditorLookupId", Value::String("1073741822".into())),
            (
                "_UIVersionString",
                Value::String(format!("{}.0", self.version)),
            ),
            ("Attachments", Value::Bool(false)),
            ("Edit", Value::String(String::new())),
            ("LinkTitleNoMenu", title.clone()),
            ("LinkTitle", title),
            ("ItemChildCount", Value::String("0".into())),
            ("FolderChildCount", Value::String("0".into())),
            ("AppAuthorLookupId", Value::String("1".into())),
            ("AppEditorLookupId", Value::String("1".into())),
        ];
        for (name, value) in system {
            if (select.is_none() || wanted(name) || name == "id") && !value.is_null() {
                out.insert(name.to_owned(), value);
            }
        }
        Value::Object(out)
    }

    pub fn to_json(
        &self,
        site: &Site,
        list: &List,
        expand_fields: bool,
        select: Option<&[String]>,
    ) -> Value {
        let by = json!({
            "application": {"id": self.author_app, "displayName": "SyncBridge"},
            "user": {"displayName": "SharePoint App"}
        });
        let mut out = json!({
            "@odata.etag": self.etag(),
            "createdDateTime": timestamp(self.created),
            "eTag": self.etag(),
            "id": self.id.to_string(),
            "lastModifiedDateTime": timestamp(self.modified),
            "webUrl": format!("{}/{}_.000", list.web_url(site), self.id),
            "createdBy": by,
            "lastModifiedBy": by,
            "parentReference": {"id": list.id, "siteId": site.id},
            "contentType": {"id": "0x0100", "name": "Item"},
        });
        if expand_fields && let Some(map) = out.as_object_mut() {
            map.insert(
                "fields@odata.context".into(),
                Value::String(format!(
                    "https://graph.microsoft.com/v1.0/$metadata#sites('{}')/lists('{}')/items('{}')/fields/$entity",
                    site.id, list.id, self.id
                )),
            );
            map.insert("fields".into(), self.fields_json(list, select));
        }
        out
    }
}
