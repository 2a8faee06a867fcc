//! A plugin's source connector, seen as an [`ErasedSource`].

use std::sync::Arc;

use futures::StreamExt as _;
use syncbridge_api::{
    BatchStream, BoxFuture, ConnectorError, ErasedSource, Position, ReadRequest, RowBatch,
    RowChange, TableDescriptor, TableRef, WriteBackOutcome,
};
use syncbridge_plugin::abi::ROLE_SOURCE;
use syncbridge_plugin::wire::{SourceCall, WireBatch, WireWriteBackOutcome};

use crate::{Instance, NativePlugin};

/// A source connector living in a native plugin.
#[derive(Debug)]
pub struct NativeSource {
    instance: Arc<Instance>,
    kind: &'static str,
}

impl NativeSource {
    /// Opens the plugin's `kind` source with `config` (on the blocking pool).
    pub async fn open(
        plugin: Arc<NativePlugin>,
        kind: &'static str,
        config: serde_json::Value,
    ) -> Result<Self, ConnectorError> {
        let instance =
            tokio::task::spawn_blocking(move || Instance::open(plugin, ROLE_SOURCE, kind, &config))
                .await
                .map_err(|e| {
                    ConnectorError::internal(format!("opening a plugin source did not finish: {e}"))
                })??;
        Ok(Self {
            instance: Arc::new(instance),
            kind,
        })
    }
}

/// A read in progress inside the plugin; closing it there when the engine drops it early.
struct OpenStream {
    instance: Arc<Instance>,
    id: u64,
    finished: bool,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if !self.finished {
            // A quick map removal inside the plugin.
            let _: Result<(), _> = self
                .instance
                .call("close_stream", &SourceCall::CloseStream { stream: self.id });
        }
    }
}

impl ErasedSource for NativeSource {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(
            self.instance
                .call_async("healthcheck", SourceCall::Healthcheck),
        )
    }

    fn introspect<'a>(
        &'a self,
        tables: Option<&'a [TableRef]>,
    ) -> BoxFuture<'a, Result<Vec<TableDescriptor>, ConnectorError>> {
        let call = SourceCall::Introspect {
            tables: tables.map(<[TableRef]>::to_vec),
        };
        Box::pin(self.instance.call_async("introspect", call))
    }

    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<BatchStream, ConnectorError>> {
        Box::pin(async move {
            let id: u64 = self
                .instance
                .call_async("read", SourceCall::Read { request })
                .await?;
            let open = OpenStream {
                instance: self.instance.clone(),
                id,
                finished: false,
            };
            let stream = futures::stream::unfold(open, |mut open| async move {
                if open.finished {
                    return None;
                }
                let next: Result<Option<WireBatch>, ConnectorError> = open
                    .instance
                    .call_async("next", SourceCall::Next { stream: open.id })
                    .await;
                match next {
                    Ok(Some(batch)) => Some((Ok(RowBatch::from(batch)), open)),
                    Ok(None) => {
                        // The plugin dropped the stream at its end: nothing to close.
                        open.finished = true;
                        drop(open);
                        None
                    }
                    Err(error) => {
                        // The plugin dropped the stream with the error.
                        open.finished = true;
                        Some((Err(error), open))
                    }
                }
            });
            Ok(stream.boxed())
        })
    }

    fn acknowledge<'a>(
        &'a self,
        request: &'a ReadRequest,
        position: &'a Position,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        let call = SourceCall::Acknowledge {
            request: request.clone(),
            position: position.clone(),
        };
        Box::pin(self.instance.call_async("acknowledge", call))
    }

    fn release<'a>(
        &'a self,
        request: &'a ReadRequest,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        let call = SourceCall::Release {
            request: request.clone(),
        };
        Box::pin(self.instance.call_async("release", call))
    }

    fn write_back(
        &self,
        changes: Vec<RowChange>,
    ) -> BoxFuture<'_, Result<Vec<WriteBackOutcome>, ConnectorError>> {
        Box::pin(async move {
            let outcomes: Vec<WireWriteBackOutcome> = self
                .instance
                .call_async("write_back", SourceCall::WriteBack { changes })
                .await?;
            Ok(outcomes.into_iter().map(Into::into).collect())
        })
    }
}
