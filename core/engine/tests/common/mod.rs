//! What the engine tests against real databases share: a SQLite meta-store with a config
//! applied, and engines over it with the built-in connectors.

use std::path::Path;
use std::sync::Arc;

use syncbridge_api::Registry;
use syncbridge_config::apply::{ApplyOptions, apply};
use syncbridge_engine::run::Engine;
use syncbridge_store::secrets::MasterKey;
use syncbridge_store::testing::TestStore;

/// A fresh SQLite meta-store with the config `text` applied, and the key its secrets use.
pub async fn applied(text: &str) -> (TestStore, Arc<MasterKey>) {
    let config = syncbridge_config::load_str(
        text,
        Path::new("test.yaml"),
        &syncbridge_config::Known::default(),
    )
    .expect("config");
    let store = TestStore::sqlite().await;
    let key = Arc::new(
        MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("key"),
    );
    let options = ApplyOptions {
        prune: false,
        dry_run: false,
        actor: "t".into(),
        master_key: Some(key.clone()),
    };
    apply(&store, &config, &options).await.expect("apply");
    (store, key)
}

/// An engine over `store` with the PostgreSQL and MySQL sources and the SharePoint target (a new
/// one stands for a restarted process).
pub fn engine(store: &TestStore, key: &Arc<MasterKey>) -> Engine {
    let mut registry = Registry::new();
    registry.register_source::<syncbridge_postgres::PostgresSource>();
    registry.register_source::<syncbridge_mysql::MySqlSource>();
    registry.register_target::<syncbridge_sharepoint::SharePointTarget>();
    syncbridge_engine::rules::register_builtin_rules(&mut registry);
    Engine::new((**store).clone(), Arc::new(registry), Some(key.clone()))
}

/// The events `report`'s run recorded: `(severity, event_type, message)`, oldest first.
pub async fn run_events(
    store: &TestStore,
    report: &syncbridge_engine::run::RunReport,
) -> Vec<(String, String, String)> {
    let run_id = report
        .run_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .expect("run id");
    syncbridge_store::runtime::run_events(store, run_id)
        .await
        .expect("events")
}

/// Whether `events` (from [`run_events`]) hold one of this kind whose message contains
/// `contains`, with this severity when one is given.
pub fn has_event(
    events: &[(String, String, String)],
    severity: Option<&str>,
    kind: &str,
    contains: &str,
) -> bool {
    events.iter().any(|(s, k, message)| {
        severity.is_none_or(|severity| s == severity) && k == kind && message.contains(contains)
    })
}
