//! The `Target` implementation: discovery, provisioning, batched writes with one outcome per
//! operation, and look-up by the identity key column.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value as Json, json};
use syncbridge_api::{
    CollectionRef, CollectionSpec, ConnectorError, DataType, ItemId, Position, ProvisionReport,
    RemoteChange, RemoteChangePage, RemoteCollection, RemoteField, Target, TargetLocation, WriteOp,
    WriteOutcome,
};
use tokio::sync::Mutex;

use crate::batch::{BatchAnswer, SubBody, SubRequest, SubRequestBody, batch_body};
use crate::config::SharePointConfig;
use crate::encoder::{ColumnInfo, encode};
use crate::service::{Class, GraphService, classify};

/// A SharePoint site reached through Microsoft Graph.
pub struct SharePointTarget {
    service: Arc<GraphService>,
    site_id: String,
    site_url: Option<String>,
    columns: Mutex<HashMap<String, Arc<Vec<ColumnInfo>>>>,
}

impl std::fmt::Debug for SharePointTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharePointTarget")
            .field("site_id", &self.site_id)
            .finish_non_exhaustive()
    }
}

fn graph_failure(what: &str, response: &crate::service::GraphResponse) -> ConnectorError {
    let (code, message) = response.error();
    let text = format!(
        "{what}: Graph answered {} {code}: {message}",
        response.status
    );
    match classify(response.status) {
        Class::Retriable => ConnectorError::external(text).retry_after(response.retry_after),
        Class::NotFound => ConnectorError::user(text),
        _ => ConnectorError::user(text).permanent(),
    }
}

/// A field value as Graph returns it, in the core value model: strings stay text (dates
/// included: Graph's are UTC ISO 8601 strings), numbers become integers when they are whole,
/// anything structured (lookups, people, multi-choice) stays JSON.
fn decode(value: &Json) -> syncbridge_api::Value {
    use syncbridge_api::Value;
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_f64().map(Value::Float))
            .unwrap_or(Value::Null),
        Json::String(text) => Value::Text(text.clone()),
        other => Value::Json(other.clone()),
    }
}

/// The columnDefinition body for a field type.
pub fn column_definition(name: &str, data_type: &DataType) -> Json {
    let facet = match data_type {
        DataType::Bool => json!({"boolean": {}}),
        DataType::Int { .. } | DataType::Float { .. } => json!({"number": {}}),
        DataType::Decimal {
            precision: None,
            scale: Some(2),
        } => json!({"currency": {"locale": "en-us"}}),
        DataType::Decimal { .. } => json!({"number": {}}),
        DataType::Date => json!({"dateTime": {"format": "dateOnly"}}),
        DataType::Time => json!({"text": {"maxLength": 32}}),
        DataType::Timestamp | DataType::TimestampTz => json!({"dateTime": {"format": "dateTime"}}),
        DataType::Enum { values } => {
            json!({"choice": {"allowTextEntry": false, "choices": values, "displayAs": "dropDownMenu"}})
        }
        DataType::Uuid => json!({"text": {"maxLength": 36}}),
        DataType::Text {
            max_length: Some(n),
        } if *n <= 255 => json!({"text": {"maxLength": n}}),
        DataType::Text { .. } | DataType::Json | DataType::Bytes { .. } => {
            json!({"text": {"allowMultipleLines": true}})
        }
    };
    let mut body = json!({"name": name, "displayName": name});
    if let (Some(map), Some(facet)) = (body.as_object_mut(), facet.as_object()) {
        map.extend(facet.clone());
    }
    body
}

fn facet_kind(definition: &Json) -> String {
    ColumnInfo::from_graph(definition)
        .map(|c| c.kind)
        .unwrap_or_default()
}

impl SharePointTarget {
    fn list_path(&self, list_id: &str) -> String {
        format!("/sites/{}/lists/{list_id}", self.site_id)
    }

    async fn get(&self, path: &str) -> Result<crate::service::GraphResponse, ConnectorError> {
        self.service
            .send(reqwest::Method::GET, path, None, &[])
            .await
    }

    /// Every page of a collection, following `@odata.nextLink`.
    async fn get_all(&self, path: &str, what: &str) -> Result<Vec<Json>, ConnectorError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(url) = next.take() {
            let response = self.get(&url).await?;
            if classify(response.status) != Class::Success {
                return Err(graph_failure(what, &response));
            }
            out.extend(
                response
                    .body
                    .get("value")
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            next = response
                .body
                .get("@odata.nextLink")
                .and_then(Json::as_str)
                .map(str::to_owned);
        }
        Ok(out)
    }

    async fn list_columns(&self, list_id: &str) -> Result<Vec<Json>, ConnectorError> {
        self.get_all(&format!("{}/columns?$select=id,name,displayName,hidden,indexed,readOnly,required,enforceUniqueValues,text,number,currency,boolean,dateTime,choice,lookup,personOrGroup,hyperlinkOrPicture,calculated", self.list_path(list_id)), "reading columns").await
    }

    async fn columns_for(&self, list_id: &str) -> Result<Arc<Vec<ColumnInfo>>, ConnectorError> {
        if let Some(columns) = self.columns.lock().await.get(list_id) {
            return Ok(columns.clone());
        }
        let columns: Vec<ColumnInfo> = self
            .list_columns(list_id)
            .await?
            .iter()
            .filter_map(ColumnInfo::from_graph)
            .collect();
        let columns = Arc::new(columns);
        self.columns
            .lock()
            .await
            .insert(list_id.to_owned(), columns.clone());
        Ok(columns)
    }

    /// Encodes an op's fields for its list; an unencodable value rejects the op.
    fn encode_fields(
        &self,
        columns: &[ColumnInfo],
        fields: &[(String, syncbridge_api::Value)],
    ) -> Result<json::Map, (String, String)> {
        let mut out = serde_json::Map::new();
        for (name, value) in fields {
            let Some(column) = columns.iter().find(|c| c.name == *name) else {
                return Err((
                    "unknownField".into(),
                    format!(
                        "the list has no column `{name}`; run `syncbridge provision` to add it"
                    ),
                ));
            };
            match encode(column, value, self.service.config.text_overflow) {
                Ok(pairs) => out.extend(pairs),
                Err(error) => return Err(("invalidValue".into(), error.to_string())),
            }
        }
        Ok(out)
    }

    /// Sends sub-requests through `$batch`, retrying throttled ones; returns one answer per
    /// request in order: `(status, body)`. A sub-request's id is its index here.
    async fn run_batch(
        &self,
        requests: Vec<SubRequest>,
    ) -> Result<Vec<(u16, SubBody)>, ConnectorError> {
        let mut results: Vec<Option<(u16, SubBody)>> = vec![None; requests.len()];
        let mut pending: Vec<usize> = (0..requests.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let body = batch_body(pending.iter().map(|i| &requests[*i]));
            let cost = pending.iter().map(|i| requests[*i].cost()).sum();
            let response = self
                .service
                .send_serialized(reqwest::Method::POST, "/$batch", Some(body), cost, &[])
                .await?;
            if response.status != 200 {
                return Err(graph_failure("sending a $batch", &response.parsed()));
            }
            let mut longest_wait: Option<Duration> = None;
            let mut throttled = false;
            let mut still = Vec::new();
            for entry in BatchAnswer::read(&response.text).responses {
                let Some(index) = entry.index() else {
                    continue;
                };
                let status = entry.status();
                let headers = entry.headers();
                self.service.observe_rate_limit(
                    headers.get("RateLimit-Remaining"),
                    headers.get("RateLimit-Reset"),
                );
                throttled |= matches!(status, 429 | 503);
                if classify(status) == Class::Retriable
                    && attempt < self.service.config.max_attempts
                {
                    let wait = headers
                        .get("Retry-After")
                        .and_then(crate::service::parse_retry_after);
                    longest_wait = longest_wait.max(wait).or(wait);
                    still.push(index);
                } else if index < results.len() {
                    results[index] = Some((status, entry.into_body()));
                }
            }
            if throttled {
                self.service.limit.on_throttle();
            }
            for index in &pending {
                if results[*index].is_none() && !still.contains(index) {
                    still.push(*index); // missing from the answer: send again
                }
            }
            still.sort_unstable();
            still.dedup();
            pending = still;
            if !pending.is_empty() {
                match longest_wait {
                    Some(wait) => self.service.pause(wait),
                    None => {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or((500, SubBody::default())))
            .collect())
    }

    async fn find(
        &self,
        list_id: &str,
        key_field: &str,
        key: &str,
    ) -> Result<Option<ItemId>, ConnectorError> {
        let escaped = key.replace('\'', "''");
        let path = format!(
            "{}/items?$filter=fields/{key_field} eq '{escaped}'&$expand=fields(select={key_field})&$top=2",
            self.list_path(list_id)
        );
        let response = self.get(&path).await?;
        if classify(response.status) != Class::Success {
            return Err(graph_failure("looking an item up by its key", &response));
        }
        Ok(response
            .body
            .get("value")
            .and_then(Json::as_array)
            .and_then(|items| items.first())
            .and_then(|item| item.get("id")?.as_str()?.parse().ok())
            .map(ItemId))
    }
}

impl Target for SharePointTarget {
    type Config = SharePointConfig;
    const KIND: &'static str = "sharepoint";

    async fn connect(config: Self::Config) -> Result<Self, ConnectorError> {
        let site_path = format!("/sites/{}:{}", config.site_hostname, config.site_path);
        let site_name = format!("{}{}", config.site_hostname, config.site_path);
        let service = Arc::new(GraphService::new(config)?);
        let response = service
            .send(reqwest::Method::GET, &site_path, None, &[])
            .await?;
        if response.status == 404 {
            return Err(ConnectorError::user(format!(
                "SharePoint site `{site_name}` was not found"
            ))
            .with_hint("check the site's hostname and path in the config"));
        }
        if classify(response.status) != Class::Success {
            return Err(graph_failure(
                &format!("resolving site {site_name}"),
                &response,
            ));
        }
        let site_id = response
            .body
            .get("id")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let site_url = response
            .body
            .get("webUrl")
            .and_then(Json::as_str)
            .map(str::to_owned);
        Ok(Self {
            service,
            site_id,
            site_url,
            columns: Mutex::new(HashMap::new()),
        })
    }

    async fn healthcheck(&self) -> Result<(), ConnectorError> {
        let response = self.get(&format!("/sites/{}", self.site_id)).await?;
        if classify(response.status) == Class::Success {
            Ok(())
        } else {
            Err(graph_failure("checking the site", &response))
        }
    }

    fn location(&self) -> Option<TargetLocation> {
        Some(TargetLocation {
            id: self.site_id.clone(),
            url: self.site_url.clone(),
        })
    }

    async fn discover(&self) -> Result<Vec<RemoteCollection>, ConnectorError> {
        let lists = self
            .get_all(&format!("/sites/{}/lists", self.site_id), "listing lists")
            .await?;
        let mut out = Vec::new();
        for list in lists {
            let id = list
                .get("id")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            let name = list
                .get("displayName")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            let fields = self
                .list_columns(&id)
                .await?
                .iter()
                .filter_map(|c| {
                    Some(RemoteField {
                        name: c.get("name")?.as_str()?.to_owned(),
                        display_name: c
                            .get("displayName")
                            .and_then(Json::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        field_type: facet_kind(c),
                        required: c.get("required").and_then(Json::as_bool).unwrap_or(false),
                        read_only: c.get("readOnly").and_then(Json::as_bool).unwrap_or(false),
                        indexed: c.get("indexed").and_then(Json::as_bool).unwrap_or(false),
                        hidden: c.get("hidden").and_then(Json::as_bool).unwrap_or(false),
                    })
                })
                .collect();
            // Graph's list resource has no item count: page through ids (2 resource units per
            // 5,000 items).
            let item_count = self
                .get_all(
                    &format!("{}/items?$select=id&$top=5000", self.list_path(&id)),
                    "counting items",
                )
                .await?
                .len() as u64;
            out.push(RemoteCollection {
                collection: CollectionRef { id, name },
                template: list
                    .pointer("/list/template")
                    .and_then(Json::as_str)
                    .map(str::to_owned),
                item_count: Some(item_count),
                last_modified: list
                    .get("lastModifiedDateTime")
                    .and_then(Json::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
                fields,
            });
        }
        Ok(out)
    }

    async fn provision(&self, spec: &CollectionSpec) -> Result<ProvisionReport, ConnectorError> {
        let definitions: Vec<Json> = spec
            .fields
            .iter()
            .map(|field| {
                let mut body = column_definition(&field.name, &field.data_type);
                if let Some(map) = body.as_object_mut() {
                    map.insert("indexed".into(), json!(field.indexed || field.unique));
                    map.insert("enforceUniqueValues".into(), json!(field.unique));
                    map.insert("hidden".into(), json!(field.hidden));
                    map.insert("required".into(), json!(field.required));
                }
                body
            })
            .collect();
        let existing = self
            .get(&format!("/sites/{}/lists/{}", self.site_id, spec.name))
            .await?;
        let (list_id, created) = match classify(existing.status) {
            Class::Success => (
                existing
                    .body
                    .get("id")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                false,
            ),
            Class::NotFound => {
                let body = json!({"displayName": spec.name, "description": spec.description.clone().unwrap_or_default(), "columns": definitions, "list": {"template": "genericList"}});
                let response = self
                    .service
                    .send(
                        reqwest::Method::POST,
                        &format!("/sites/{}/lists", self.site_id),
                        Some(&body),
                        &[],
                    )
                    .await?;
                if response.status != 201 {
                    return Err(graph_failure(
                        &format!("creating list `{}`", spec.name),
                        &response,
                    ));
                }
                (
                    response
                        .body
                        .get("id")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    true,
                )
            }
            _ => {
                return Err(graph_failure(
                    &format!("reading list `{}`", spec.name),
                    &existing,
                ));
            }
        };
        // Whatever the create did, make sure every column exists (creates have been seen to drop
        // columns) and report the ones that exist with another type.
        let present = self.list_columns(&list_id).await?;
        let mut added = Vec::new();
        let mut incompatible = Vec::new();
        for definition in &definitions {
            let name = definition
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default();
            match present
                .iter()
                .find(|c| c.get("name").and_then(Json::as_str) == Some(name))
            {
                Some(column) => {
                    let (have, want) = (facet_kind(column), facet_kind(definition));
                    let compatible = have == want
                        || (have == "number" && want == "currency")
                        || (have == "currency" && want == "number");
                    if !compatible {
                        incompatible
                            .push(format!("{name}: is `{have}`, the mapping needs `{want}`"));
                    }
                }
                None => {
                    let response = self
                        .service
                        .send(
                            reqwest::Method::POST,
                            &format!("{}/columns", self.list_path(&list_id)),
                            Some(definition),
                            &[],
                        )
                        .await?;
                    if response.status != 201 {
                        return Err(graph_failure(
                            &format!("adding column `{name}` to `{}`", spec.name),
                            &response,
                        ));
                    }
                    if !created {
                        added.push(name.to_owned());
                    }
                }
            }
        }
        self.columns.lock().await.remove(&list_id);
        Ok(ProvisionReport {
            collection: CollectionRef {
                id: list_id,
                name: spec.name.clone(),
            },
            created,
            added_fields: added,
            incompatible_fields: incompatible,
        })
    }

    async fn write(
        &self,
        collection: &CollectionRef,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let columns = self.columns_for(&collection.id).await?;
        let items = format!("{}/items", self.list_path(&collection.id));
        let mut outcomes: Vec<Option<WriteOutcome>> = (0..ops.len()).map(|_| None).collect();
        // Each op's sub-request, serialized once; its id is its place in its `$batch`.
        let chunk = self.service.config.batch_size.clamp(1, 20);
        let mut batches: Vec<Vec<(usize, SubRequest)>> = Vec::new();
        let mut serialized = 0;
        for (index, op) in ops.iter().enumerate() {
            let id = serialized % chunk;
            let request = match op {
                WriteOp::Create { fields, .. } => {
                    self.encode_fields(&columns, fields).and_then(|fields| {
                        sub_request(
                            id,
                            &reqwest::Method::POST,
                            &items,
                            Some(SubRequestBody::Fields { fields: &fields }),
                        )
                    })
                }
                WriteOp::Update { item_id, fields } => {
                    self.encode_fields(&columns, fields).and_then(|fields| {
                        let url = format!("{items}/{}/fields", item_id.0);
                        sub_request(
                            id,
                            &reqwest::Method::PATCH,
                            &url,
                            Some(SubRequestBody::Map(&fields)),
                        )
                    })
                }
                WriteOp::Delete { item_id } => {
                    let url = format!("{items}/{}", item_id.0);
                    sub_request(id, &reqwest::Method::DELETE, &url, None)
                }
            };
            match request {
                Ok(request) => {
                    if id == 0 {
                        batches.push(Vec::with_capacity(chunk));
                    }
                    if let Some(batch) = batches.last_mut() {
                        batch.push((index, request));
                    }
                    serialized += 1;
                }
                Err((code, message)) => {
                    outcomes[index] = Some(WriteOutcome::Unencodable { code, message });
                }
            }
        }
        let concurrency = self.service.config.concurrency.max(1);
        let mut answered = futures::stream::iter(batches.into_iter().map(|batch| async move {
            let (indexes, requests): (Vec<usize>, Vec<SubRequest>) = batch.into_iter().unzip();
            self.run_batch(requests)
                .await
                .map(|responses| indexes.into_iter().zip(responses).collect::<Vec<_>>())
        }))
        .buffer_unordered(concurrency);
        // Collect every answer before looking anything up: a look-up needs a request slot, and
        // batches parked in the stream (not polled while we awaited it) may hold them all.
        let mut answers = Vec::with_capacity(ops.len());
        while let Some(result) = answered.next().await {
            answers.extend(result?);
        }
        drop(answered);
        for (index, (status, body)) in answers {
            let op = &ops[index];
            outcomes[index] = Some(match (op, classify(status)) {
                (WriteOp::Create { .. }, Class::Success) => match body.item_id() {
                    Some(id) => WriteOutcome::Created {
                        item_id: ItemId(id),
                    },
                    None => WriteOutcome::Failed(ConnectorError::external(
                        "a create succeeded without an item id",
                    )),
                },
                // A retried create whose first attempt went through meets the unique key.
                (WriteOp::Create { key, .. }, Class::Permanent) if status == 409 => {
                    match self.find(&collection.id, "SyncBridgeKey", key).await? {
                        Some(item_id) => WriteOutcome::Created { item_id },
                        None => {
                            let (code, message) = body.error();
                            WriteOutcome::Rejected { code, message }
                        }
                    }
                }
                (WriteOp::Update { .. }, Class::Success) => WriteOutcome::Updated,
                (WriteOp::Delete { .. }, Class::Success) => WriteOutcome::Deleted,
                (WriteOp::Delete { .. } | WriteOp::Update { .. }, Class::NotFound) => {
                    WriteOutcome::NotFound
                }
                (_, Class::Retriable) => {
                    let (code, message) = body.error();
                    WriteOutcome::Failed(ConnectorError::external(format!(
                        "{status} {code}: {message}"
                    )))
                }
                _ => {
                    let (code, message) = body.error();
                    WriteOutcome::Rejected { code, message }
                }
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    WriteOutcome::Failed(ConnectorError::internal("no answer for this write"))
                })
            })
            .collect())
    }

    async fn list_keys(
        &self,
        collection: &CollectionRef,
        key_field: &str,
    ) -> Result<Vec<(ItemId, String)>, ConnectorError> {
        let path = format!(
            "{}/items?$expand=fields(select={key_field})&$top=5000",
            self.list_path(&collection.id)
        );
        let items = self.get_all(&path, "listing items").await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = item.get("id")?.as_str()?.parse().ok()?;
                let key = item
                    .pointer(&format!("/fields/{key_field}"))
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Some((ItemId(id), key))
            })
            .collect())
    }

    async fn find_by_key(
        &self,
        collection: &CollectionRef,
        key_field: &str,
        key: &str,
    ) -> Result<Option<ItemId>, ConnectorError> {
        self.find(&collection.id, key_field, key).await
    }

    /// One page of `items/delta` (graph-api.md §6): from the start (a full enumeration) or from
    /// a link a previous page returned. Deleted items come back as [`RemoteChange::Deleted`];
    /// a stale link (`410 Gone`) restarts from the `Location` the service gives, flagged `reset`.
    async fn read_changes(
        &self,
        collection: &CollectionRef,
        from: Option<Position>,
    ) -> Result<RemoteChangePage, ConnectorError> {
        let url = match from {
            Some(position) => position.0,
            None => format!(
                "{}/items/delta?$expand=fields&$top=1000",
                self.list_path(&collection.id)
            ),
        };
        let response = self.get(&url).await?;
        if response.status == 410 {
            let Some(location) = response.location.clone() else {
                return Err(graph_failure(
                    &format!("reading changes of `{}`", collection.name),
                    &response,
                ));
            };
            tracing::warn!(list = %collection.name, "the delta link expired; enumerating the list again");
            return Ok(RemoteChangePage {
                changes: Vec::new(),
                next: Position(location),
                more: true,
                reset: true,
            });
        }
        if classify(response.status) != Class::Success {
            return Err(graph_failure(
                &format!("reading changes of `{}`", collection.name),
                &response,
            ));
        }
        let columns = self.columns_for(&collection.id).await?;
        let mut changes = Vec::new();
        for entry in response
            .body
            .get("value")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let Some(item_id) = entry
                .get("id")
                .and_then(Json::as_str)
                .and_then(|id| id.parse().ok())
                .map(ItemId)
            else {
                continue;
            };
            if entry.get("deleted").is_some() {
                changes.push(RemoteChange::Deleted { item_id });
                continue;
            }
            let fields = entry
                .get("fields")
                .and_then(Json::as_object)
                .map(|fields| {
                    columns
                        .iter()
                        .filter_map(|column| {
                            let value = fields.get(&column.name)?;
                            Some((column.name.clone(), decode(value)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let modified = entry
                .get("lastModifiedDateTime")
                .and_then(Json::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            changes.push(RemoteChange::Upserted {
                item_id,
                fields,
                modified,
            });
        }
        let next_link = response.body.get("@odata.nextLink").and_then(Json::as_str);
        let delta_link = response.body.get("@odata.deltaLink").and_then(Json::as_str);
        let (next, more) = match (next_link, delta_link) {
            (Some(next), _) => (next.to_owned(), true),
            (None, Some(delta)) => (delta.to_owned(), false),
            (None, None) => {
                return Err(ConnectorError::external(format!(
                    "reading changes of `{}`: Graph answered without a nextLink or deltaLink",
                    collection.name
                )));
            }
        };
        Ok(RemoteChangePage {
            changes,
            next: Position(next),
            more,
            reset: false,
        })
    }
}

/// A sub-request, or why it cannot be one (a rejection's code and message).
fn sub_request(
    id: usize,
    method: &reqwest::Method,
    url: &str,
    body: Option<SubRequestBody<'_>>,
) -> Result<SubRequest, (String, String)> {
    SubRequest::new(id, method, url, body).map_err(|error| {
        (
            "invalidValue".into(),
            format!("cannot serialize the item: {error}"),
        )
    })
}

mod json {
    pub type Map = serde_json::Map<String, serde_json::Value>;
}
