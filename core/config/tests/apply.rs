//! `apply` on both meta-store backends: creates, then changes nothing; edits update only what
//! changed and are audited; `--prune` deletes what the file dropped; `--dry-run` writes nothing.

use std::path::Path;

use std::sync::Arc;
use syncbridge_config::apply::{Action, ApplyOptions, apply};
use syncbridge_config::{Config, Known, load_str};
use syncbridge_store::testing::TestStore;

use syncbridge_store::secrets::MasterKey;
use syncbridge_store::{Store, with_pool};

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local-emulator.yaml");
    std::fs::read_to_string(path).expect("example exists")
}

fn config(text: &str) -> Config {
    load_str(text, Path::new("test.yaml"), &Known::default()).expect("valid config")
}

fn options() -> ApplyOptions {
    let key =
        MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("valid key");
    ApplyOptions {
        prune: false,
        dry_run: false,
        actor: "test".into(),
        master_key: Some(Arc::new(key)),
    }
}

async fn count(store: &Store, sql: &str) -> i64 {
    with_pool!(store, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await)
        .expect("count")
}

#[tokio::test]
async fn apply_is_idempotent_and_audited() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let first = apply(&store, &config(&example()), &options())
            .await
            .expect("first apply");
        assert!(first.changes.len() >= 15, "{backend}: {:?}", first.changes);
        assert!(first.changes.iter().all(|c| c.action == Action::Create));
        let audit_rows = count(&store, "SELECT count(*) FROM audit_log").await;
        assert_eq!(
            audit_rows as usize,
            first.changes.len(),
            "{backend}: one audit row per change"
        );

        let second = apply(&store, &config(&example()), &options())
            .await
            .expect("second apply");
        assert!(
            second.is_noop(),
            "{backend}: second apply changed {:?}",
            second.changes
        );
        assert_eq!(
            count(&store, "SELECT count(*) FROM audit_log").await,
            audit_rows
        );

        // One edited field: one update, naming the field.
        let edited = example().replace("transform: trim", "transform: upper");
        let third = apply(&store, &config(&edited), &options())
            .await
            .expect("edit");
        assert_eq!(third.changes.len(), 1, "{backend}: {:?}", third.changes);
        assert_eq!(third.changes[0].action, Action::Update);
        assert_eq!(third.changes[0].fields, vec!["transform_rule".to_owned()]);

        // A changed secret is re-encrypted and reported without its value.
        let rotated = edited.replace("demo-client-secret-change-me", "rotated-secret");
        let fourth = apply(&store, &config(&rotated), &options())
            .await
            .expect("rotate");
        assert_eq!(fourth.changes.len(), 1, "{backend}: {:?}", fourth.changes);
        assert!(!format!("{:?}", fourth).contains("rotated-secret"));
        let stored: String = with_pool!(store, pool => sqlx::query_scalar("SELECT client_secret FROM sharepoint_connections").fetch_one(pool).await)
            .expect("secret column");
        assert!(
            stored.starts_with("enc:v1:") && !stored.contains("rotated"),
            "{backend}: {stored}"
        );
        let audit: Vec<String> = with_pool!(store, pool => sqlx::query_scalar("SELECT COALESCE(CAST(after AS TEXT), '') FROM audit_log").fetch_all(pool).await)
            .expect("audit");
        assert!(
            audit
                .iter()
                .all(|a| !a.contains("rotated-secret") && !a.contains("demo-client-secret")),
            "{backend}: secret in audit"
        );
    }
}

#[tokio::test]
async fn children_follow_the_file_and_prune_removes_top_level_objects() {
    for store in TestStore::all().await {
        let backend = store.backend();
        apply(&store, &config(&example()), &options())
            .await
            .expect("apply");
        // Removing a mapping removes its row without --prune.
        let fewer = example().replace(
            "      - { source: started_on, target: StartedOn, target_type: dateTime }\n",
            "",
        );
        let report = apply(&store, &config(&fewer), &options())
            .await
            .expect("apply fewer");
        assert_eq!(report.changes.len(), 1, "{backend}: {:?}", report.changes);
        assert_eq!(report.changes[0].action, Action::Delete);
        assert_eq!(
            count(&store, "SELECT count(*) FROM field_mappings").await,
            6
        );

        // An empty file deletes nothing without --prune, everything with it.
        let empty = config("version: 1\n");
        assert!(
            apply(&store, &empty, &options())
                .await
                .expect("no prune")
                .is_noop()
        );
        let dry = apply(
            &store,
            &empty,
            &ApplyOptions {
                prune: true,
                dry_run: true,
                ..options()
            },
        )
        .await
        .expect("dry run");
        assert!(!dry.changes.is_empty());
        assert_eq!(
            count(&store, "SELECT count(*) FROM sync_definitions").await,
            1,
            "{backend}: dry run wrote"
        );
        apply(
            &store,
            &empty,
            &ApplyOptions {
                prune: true,
                ..options()
            },
        )
        .await
        .expect("prune");
        for table in [
            "sync_definitions",
            "field_mappings",
            "sharepoint_connections",
            "databases",
            "applications",
        ] {
            assert_eq!(
                count(&store, &format!("SELECT count(*) FROM {table}")).await,
                0,
                "{backend}: {table} pruned"
            );
        }
    }
}

/// `apply` reads before it writes. On SQLite a deferred transaction that does so is refused at
/// once ("database is locked") when another connection holds the write lock at its first
/// write; `apply` must wait for that writer instead, as it waits for any other.
#[tokio::test]
async fn apply_waits_for_another_writer_on_sqlite() {
    use sqlx::Connection;

    let store = TestStore::sqlite().await;
    let mut other = sqlx::SqliteConnection::connect(store.url())
        .await
        .expect("a second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("the second connection takes the write lock");

    let applying = tokio::spawn(async move {
        let applied = apply(&store, &config(&example()), &options()).await;
        (store, applied)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !applying.is_finished(),
        "apply finished while another connection held the write lock: {:?}",
        applying
            .await
            .expect("apply task")
            .1
            .map(|r| r.changes.len())
    );
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("the second connection commits");

    let (store, applied) = applying.await.expect("apply task");
    let report = applied.expect("apply succeeds once the other writer is done");
    assert!(report.changes.len() >= 15, "{:?}", report.changes);
    assert!(count(&store, "SELECT count(*) FROM sync_definitions").await > 0);
}
