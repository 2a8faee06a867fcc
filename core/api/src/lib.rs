//! The stable core of SyncBridge, for connector, plugin and rule authors.
//!
//! This crate is deliberately small and changes slowly: it holds the value model every row is
//! expressed in ([`Value`], [`Decimal`]), the descriptors of tables and columns, the row batches that
//! flow through a sync, the traits a connector implements ([`Source`], [`Target`]) and the traits a
//! rule implements ([`FieldRule`], [`ShardRouter`]), the error type that says whose fault a failure is
//! and whether to retry it ([`ConnectorError`]), and the explicit [`Registry`] that maps the names a
//! config uses to the implementations that exist.
//!
//! # Two layers of traits
//! Authors implement a *typed* trait with an associated `Config` (deserialized from the user's
//! configuration) and plain `async fn`s. The engine, the WASM host and the native plugin host only
//! ever see the *erased*, object-safe twin ([`ErasedSource`], [`ErasedTarget`]), which a blanket impl
//! derives from the typed trait. Nothing here knows about HTTP, SQL, the meta-store or tokio.

mod batch;
mod error;
mod keyset;
mod registry;
mod schema;
mod source;
mod target;
mod transform;
mod value;

pub use batch::{Row, RowBatch, RowConverter, RowKind, UnconvertedRows};
pub use error::{ConnectorError, ErrorDomain, RetryHint};
pub use keyset::{KeysetPlan, KeysetPosition, PlanColumn};
pub use registry::{
    Registry, SourceFactory, TargetFactory, UnknownName, WasmRef, WasmRouterFactory,
    WasmRuleFactory,
};
pub use schema::{
    ColumnDescriptor, ConstraintDescriptor, ConstraintKind, DataType, IndexDescriptor,
    TableDescriptor, TableKind, TableRef,
};
pub use source::{
    BatchStream, CursorSpec, ErasedSource, Position, ReadRequest, RowChange, Source,
    WriteBackOutcome,
};
pub use target::{
    CollectionRef, CollectionSpec, ErasedTarget, FieldSpec, ItemId, ProvisionReport, RemoteChange,
    RemoteChangePage, RemoteCollection, RemoteField, Target, TargetLocation, WriteOp, WriteOutcome,
};
pub use transform::{FieldRule, RouteDecision, RowView, RuleError, ShardRouter};
pub use value::{Decimal, DecimalError, Value};

/// A boxed future, as the erased traits return them.
pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
