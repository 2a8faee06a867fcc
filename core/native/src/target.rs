//! A plugin's target connector, seen as an [`ErasedTarget`].

use std::sync::Arc;

use syncbridge_api::{
    BoxFuture, CollectionRef, CollectionSpec, ConnectorError, ErasedTarget, ItemId, Position,
    ProvisionReport, RemoteChangePage, RemoteCollection, TargetLocation, WriteOp, WriteOutcome,
};
use syncbridge_plugin::abi::ROLE_TARGET;
use syncbridge_plugin::wire::{TargetCall, WireWriteOutcome};

use crate::{Instance, NativePlugin};

/// A target connector living in a native plugin.
#[derive(Debug)]
pub struct NativeTarget {
    instance: Arc<Instance>,
    kind: &'static str,
    /// Asked once at open: `ErasedTarget::location` is not async.
    location: Option<TargetLocation>,
}

impl NativeTarget {
    /// Opens the plugin's `kind` target with `config` (on the blocking pool).
    pub async fn open(
        plugin: Arc<NativePlugin>,
        kind: &'static str,
        config: serde_json::Value,
    ) -> Result<Self, ConnectorError> {
        let (instance, location) = tokio::task::spawn_blocking(move || {
            let instance = Instance::open(plugin, ROLE_TARGET, kind, &config)?;
            let location: Option<TargetLocation> =
                instance.call("location", &TargetCall::Location)?;
            Ok::<_, ConnectorError>((instance, location))
        })
        .await
        .map_err(|e| {
            ConnectorError::internal(format!("opening a plugin target did not finish: {e}"))
        })??;
        Ok(Self {
            instance: Arc::new(instance),
            kind,
            location,
        })
    }
}

impl ErasedTarget for NativeTarget {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn location(&self) -> Option<TargetLocation> {
        self.location.clone()
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(
            self.instance
                .call_async("healthcheck", TargetCall::Healthcheck),
        )
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<RemoteCollection>, ConnectorError>> {
        Box::pin(self.instance.call_async("discover", TargetCall::Discover))
    }

    fn provision<'a>(
        &'a self,
        spec: &'a CollectionSpec,
    ) -> BoxFuture<'a, Result<ProvisionReport, ConnectorError>> {
        let call = TargetCall::Provision { spec: spec.clone() };
        Box::pin(self.instance.call_async("provision", call))
    }

    fn write<'a>(
        &'a self,
        collection: &'a CollectionRef,
        ops: Vec<WriteOp>,
    ) -> BoxFuture<'a, Result<Vec<WriteOutcome>, ConnectorError>> {
        let call = TargetCall::Write {
            collection: collection.clone(),
            ops,
        };
        Box::pin(async move {
            let outcomes: Vec<WireWriteOutcome> = self.instance.call_async("write", call).await?;
            Ok(outcomes.into_iter().map(Into::into).collect())
        })
    }

    fn find_by_key<'a>(
        &'a self,
        collection: &'a CollectionRef,
        key_field: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ItemId>, ConnectorError>> {
        let call = TargetCall::FindByKey {
            collection: collection.clone(),
            key_field: key_field.to_owned(),
            key: key.to_owned(),
        };
        Box::pin(self.instance.call_async("find_by_key", call))
    }

    fn read_changes<'a>(
        &'a self,
        collection: &'a CollectionRef,
        from: Option<Position>,
    ) -> BoxFuture<'a, Result<RemoteChangePage, ConnectorError>> {
        let call = TargetCall::ReadChanges {
            collection: collection.clone(),
            from,
        };
        Box::pin(self.instance.call_async("read_changes", call))
    }

    fn list_keys<'a>(
        &'a self,
        collection: &'a CollectionRef,
        key_field: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(ItemId, String)>, ConnectorError>> {
        let call = TargetCall::ListKeys {
            collection: collection.clone(),
            key_field: key_field.to_owned(),
        };
        Box::pin(self.instance.call_async("list_keys", call))
    }
}
