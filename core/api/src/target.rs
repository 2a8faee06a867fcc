//! The [`Target`] trait: where rows go (a SharePoint list, or a plugin's collection).
//!
//! A target stores *items* in *collections* (lists). It has no transactions and no upsert, so the
//! engine drives it with explicit creates, updates and deletes and keeps its own ledger; the target
//! only has to report, for every operation, what happened to it ([`WriteOutcome`]).

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{BoxFuture, ConnectorError, DataType, Position, Value};

/// A target item's id (SharePoint list item ids are integers, increasing, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemId(pub i64);

/// A collection the target holds: its stable id and its display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CollectionRef {
    pub id: String,
    pub name: String,
}

/// A field to provision in a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// The field's name as writes use it.
    pub name: String,
    pub data_type: DataType,
    pub required: bool,
    pub indexed: bool,
    pub unique: bool,
    pub hidden: bool,
}

/// What a collection must look like; provisioning makes it so without destroying anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSpec {
    pub name: String,
    pub description: Option<String>,
    pub fields: Vec<FieldSpec>,
    /// The field holding each item's identity hash (indexed, unique, hidden): the idempotency
    /// protocol looks items up by it after a crash.
    pub key_field: String,
}

/// What provisioning did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionReport {
    pub collection: CollectionRef,
    /// The collection did not exist and was created.
    pub created: bool,
    pub added_fields: Vec<String>,
    /// Fields that exist with a type or settings provisioning will not change, with the reason.
    pub incompatible_fields: Vec<String>,
}

/// A field as the target reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteField {
    /// The internal name writes use.
    pub name: String,
    pub display_name: String,
    /// The target's own type name (`text`, `number`, `choice` …).
    pub field_type: String,
    pub required: bool,
    pub read_only: bool,
    pub indexed: bool,
    pub hidden: bool,
}

/// A collection as discovery finds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteCollection {
    pub collection: CollectionRef,
    pub template: Option<String>,
    pub item_count: Option<u64>,
    pub last_modified: Option<DateTime<Utc>>,
    pub fields: Vec<RemoteField>,
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum WriteOp {
    /// Creates an item whose key field holds `key` (the identity hash).
    Create {
        key: String,
        fields: Vec<(String, Value)>,
    },
    /// Sets `fields` on an existing item; a null value clears the field.
    Update {
        item_id: ItemId,
        fields: Vec<(String, Value)>,
    },
    Delete {
        item_id: ItemId,
    },
}

/// What happened to one [`WriteOp`]; `write` returns one per op, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteOutcome {
    Created {
        item_id: ItemId,
    },
    Updated,
    Deleted,
    /// The item to update or delete does not exist (a delete treats this as done).
    NotFound,
    /// The target refused the values; retrying the same op will fail again (dead-letter it).
    Rejected {
        code: String,
        message: String,
    },
    /// The target could not encode the values for the collection (a value its column cannot
    /// take, a column the collection lacks) and sent nothing; like [`Self::Rejected`], it fails
    /// again until the row, the mapping or the collection changes.
    Unencodable {
        code: String,
        message: String,
    },
    /// The op may succeed later (throttling, 5xx, a dropped connection).
    Failed(ConnectorError),
}

/// A change read from the target (for two-way sync and reconciliation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum RemoteChange {
    Upserted {
        item_id: ItemId,
        fields: Vec<(String, Value)>,
        modified: Option<DateTime<Utc>>,
    },
    Deleted {
        item_id: ItemId,
    },
}

/// Where a target's collections live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetLocation {
    /// The service's id of the container (SharePoint: `hostname,siteGuid,webGuid`).
    pub id: String,
    pub url: Option<String>,
}

/// A page of changes and where to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteChangePage {
    pub changes: Vec<RemoteChange>,
    /// The position to read from next time (a delta link for SharePoint).
    pub next: Position,
    /// More pages are available right now.
    pub more: bool,
    /// The position could not be honoured (SharePoint: delta token expired, `410 Gone`): the
    /// pages that follow enumerate the whole collection again, and items they do not report
    /// are gone.
    #[serde(default)]
    pub reset: bool,
}

/// A target, as a connector author writes it. The engine uses it through [`ErasedTarget`].
pub trait Target: Send + Sync + Sized + 'static {
    type Config: DeserializeOwned + Send + 'static;
    const KIND: &'static str;

    fn connect(config: Self::Config) -> impl Future<Output = Result<Self, ConnectorError>> + Send;

    /// Proves credentials and reachability before a run writes anything.
    fn healthcheck(&self) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Lists the collections and their fields.
    fn discover(
        &self,
    ) -> impl Future<Output = Result<Vec<RemoteCollection>, ConnectorError>> + Send;

    /// Where the collections live, as the service names it once connected (SharePoint: the
    /// site's composite id and web URL), for the inventory. `None` when there is nothing to say.
    fn location(&self) -> Option<TargetLocation> {
        None
    }

    /// Creates the collection and any missing field; reports incompatible ones, changes none.
    fn provision(
        &self,
        spec: &CollectionSpec,
    ) -> impl Future<Output = Result<ProvisionReport, ConnectorError>> + Send;

    /// Applies `ops` and returns one outcome per op in the same order. An `Err` means no op's
    /// outcome is known (e.g. authentication failed) and all may be retried.
    fn write(
        &self,
        collection: &CollectionRef,
        ops: Vec<WriteOp>,
    ) -> impl Future<Output = Result<Vec<WriteOutcome>, ConnectorError>> + Send;

    /// Finds the item whose key field equals `key` (crash recovery of pending creates).
    fn find_by_key(
        &self,
        collection: &CollectionRef,
        key_field: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<ItemId>, ConnectorError>> + Send;

    /// Reads changes since `from` (`None`: everything, then a position for next time).
    fn read_changes(
        &self,
        collection: &CollectionRef,
        from: Option<Position>,
    ) -> impl Future<Output = Result<RemoteChangePage, ConnectorError>> + Send;

    /// Every item's id and key-field value (for reconciliation). Targets that cannot enumerate
    /// keep the default, which refuses.
    fn list_keys(
        &self,
        collection: &CollectionRef,
        _key_field: &str,
    ) -> impl Future<Output = Result<Vec<(ItemId, String)>, ConnectorError>> + Send {
        let name = collection.name.clone();
        async move {
            Err(ConnectorError::user(format!(
                "the {} target cannot list the items of `{name}`",
                Self::KIND
            )))
        }
    }
}

/// The object-safe form of [`Target`].
pub trait ErasedTarget: Send + Sync {
    fn kind(&self) -> &'static str;
    fn location(&self) -> Option<TargetLocation>;
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>>;
    fn discover(&self) -> BoxFuture<'_, Result<Vec<RemoteCollection>, ConnectorError>>;
    fn provision<'a>(
        &'a self,
        spec: &'a CollectionSpec,
    ) -> BoxFuture<'a, Result<ProvisionReport, ConnectorError>>;
    fn write<'a>(
        &'a self,
        collection: &'a CollectionRef,
        ops: Vec<WriteOp>,
    ) -> BoxFuture<'a, Result<Vec<WriteOutcome>, ConnectorError>>;
    fn find_by_key<'a>(
        &'a self,
        collection: &'a CollectionRef,
        key_field: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ItemId>, ConnectorError>>;
    fn read_changes<'a>(
        &'a self,
        collection: &'a CollectionRef,
        from: Option<Position>,
    ) -> BoxFuture<'a, Result<RemoteChangePage, ConnectorError>>;
    fn list_keys<'a>(
        &'a self,
        collection: &'a CollectionRef,
        key_field: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(ItemId, String)>, ConnectorError>>;
}

impl<T: Target> ErasedTarget for T {
    fn kind(&self) -> &'static str {
        T::KIND
    }

    fn location(&self) -> Option<TargetLocation> {
        Target::location(self)
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(Target::healthcheck(self))
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<RemoteCollection>, ConnectorError>> {
        Box::pin(Target::discover(self))
    }

    fn provision<'a>(
        &'a self,
        spec: &'a CollectionSpec,
    ) -> BoxFuture<'a, Result<ProvisionReport, ConnectorError>> {
        Box::pin(Target::provision(self, spec))
    }

    fn write<'a>(
        &'a self,
        collection: &'a CollectionRef,
        ops: Vec<WriteOp>,
    ) -> BoxFuture<'a, Result<Vec<WriteOutcome>, ConnectorError>> {
        Box::pin(Target::write(self, collection, ops))
    }

    fn find_by_key<'a>(
        &'a self,
        collection: &'a CollectionRef,
        key_field: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ItemId>, ConnectorError>> {
        Box::pin(Target::find_by_key(self, collection, key_field, key))
    }

    fn read_changes<'a>(
        &'a self,
        collection: &'a CollectionRef,
        from: Option<Position>,
    ) -> BoxFuture<'a, Result<RemoteChangePage, ConnectorError>> {
        Box::pin(Target::read_changes(self, collection, from))
    }

    fn list_keys<'a>(
        &'a self,
        collection: &'a CollectionRef,
        key_field: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(ItemId, String)>, ConnectorError>> {
        Box::pin(Target::list_keys(self, collection, key_field))
    }
}
