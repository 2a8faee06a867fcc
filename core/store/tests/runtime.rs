//! Runs, ledger, cursors and the dead-letter queue on both backends.

use syncbridge_store::runtime::{self, LedgerWrite, NewFailure, RunCounters};
use syncbridge_store::testing::{TestStore, insert_definition};
use syncbridge_store::{Id, with_pool};

#[tokio::test]
async fn ledger_cursor_runs_and_failures_round_trip() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let def = insert_definition(&store).await;
        let run = runtime::start_run(&store, def, "PUSH")
            .await
            .expect("start");
        let write = LedgerWrite {
            sync_def_id: def,
            source_identity: "1",
            source_identity_hash: "h1",
            key_strategy: "PRIMARY_KEY",
            source_instance_id: None,
            sp_list_id: None,
            sp_item_id: None,
            content_hash: None,
            sync_state: "PENDING_CREATE",
            pending_list_id: Some("list-a"),
            sync_target_id: None,
            run_id: run,
            fresh: false,
        };
        runtime::put_ledger(&store, &write).await.expect("pending");
        assert_eq!(
            runtime::pending_ledger_rows(&store, def)
                .await
                .expect("pending rows")
                .len(),
            1,
            "{backend}"
        );
        runtime::put_ledger(
            &store,
            &LedgerWrite {
                sp_list_id: Some("list-a"),
                sp_item_id: Some(7),
                content_hash: Some("c"),
                sync_state: "SYNCED",
                pending_list_id: None,
                ..write.clone()
            },
        )
        .await
        .expect("synced");
        let rows = runtime::ledger_rows(&store, def, &["h1".into(), "h2".into()])
            .await
            .expect("rows");
        assert_eq!(rows.len(), 1, "{backend}");
        assert_eq!(
            (rows[0].sp_item_id, rows[0].sync_state.as_str()),
            (Some(7), "SYNCED"),
            "{backend}"
        );
        assert!(
            runtime::pending_ledger_rows(&store, def)
                .await
                .expect("pending rows")
                .is_empty()
        );
        assert_eq!(
            runtime::ledger_page(&store, def, None, 10)
                .await
                .expect("page")
                .len(),
            1
        );
        assert!(
            runtime::ledger_page(&store, def, Some("h1"), 10)
                .await
                .expect("page")
                .is_empty()
        );

        assert_eq!(
            runtime::source_cursor(&store, def, None)
                .await
                .expect("cursor"),
            None
        );
        runtime::put_source_cursor(&store, def, None, "KEYSET", "p1", run)
            .await
            .expect("put");
        runtime::put_source_cursor(&store, def, None, "KEYSET", "p2", run)
            .await
            .expect("put again");
        assert_eq!(
            runtime::source_cursor(&store, def, None)
                .await
                .expect("cursor")
                .as_deref(),
            Some("p2"),
            "{backend}"
        );

        let failure = NewFailure {
            sync_def_id: def,
            run_id: Some(run),
            source_identity: Some("2"),
            source_identity_hash: Some("h2"),
            target_list_id: Some("list-a"),
            stage: "WRITE",
            error_code: Some("invalidRequest"),
            error_message: "Title is too long",
            raw_data: Some(serde_json::json!({"id": 2})),
            normalized_data: None,
        };
        runtime::record_failure(&store, &failure)
            .await
            .expect("dead-letter");
        runtime::record_failure(&store, &failure)
            .await
            .expect("dead-letter again");
        let open = runtime::open_failures(&store, Some(def))
            .await
            .expect("open");
        assert_eq!(open.len(), 1, "{backend}: one entry per identity");
        assert_eq!(open[0].retry_count, 1, "{backend}");
        let wait = open[0].next_retry_at.expect("a retry time") - chrono::Utc::now();
        assert!(
            wait > chrono::Duration::minutes(9) && wait <= chrono::Duration::minutes(10),
            "{backend}: the second failure waits twice as long as the first: {wait}"
        );
        // Failing on: the wait doubles up to a day, and the automatic retries run out.
        for _ in 0..4 {
            runtime::record_failure(&store, &failure)
                .await
                .expect("dead-letter again");
        }
        let in_two_days = chrono::Utc::now() + chrono::Duration::days(2);
        assert!(
            runtime::due_failures(&store, def, in_two_days)
                .await
                .expect("due")
                .is_empty(),
            "{backend}: no automatic retries left"
        );
        // `dlq retry`: one more retry, now, and the count still tells how often it failed.
        assert!(
            runtime::retry_failure_now(&store, open[0].id)
                .await
                .expect("retry now")
        );
        let due = runtime::due_failures(&store, def, chrono::Utc::now())
            .await
            .expect("due");
        assert_eq!(
            (due.len(), due[0].retry_count),
            (1, 5),
            "{backend}: due again after a manual retry"
        );
        runtime::resolve_failure(&store, def, "h2")
            .await
            .expect("resolve");
        assert!(
            runtime::open_failures(&store, None)
                .await
                .expect("open")
                .is_empty()
        );

        // A whole read resolves the entries it did not dead-letter again since it started,
        // whichever run wrote them.
        let earlier = NewFailure {
            source_identity: Some("3"),
            source_identity_hash: Some("h3"),
            ..failure.clone()
        };
        runtime::record_failure(&store, &earlier)
            .await
            .expect("dead-letter");
        let read_started_at = chrono::Utc::now();
        let again = NewFailure {
            source_identity: Some("4"),
            source_identity_hash: Some("h4"),
            ..failure.clone()
        };
        runtime::record_failure(&store, &again)
            .await
            .expect("dead-letter");
        assert_eq!(
            runtime::resolve_failures_not_met(&store, def, read_started_at)
                .await
                .expect("resolve"),
            1,
            "{backend}"
        );
        let open = runtime::open_failures(&store, Some(def))
            .await
            .expect("open");
        assert_eq!(
            open.iter()
                .map(|f| f.source_identity_hash.as_deref())
                .collect::<Vec<_>>(),
            [Some("h4")],
            "{backend}"
        );
        runtime::resolve_failure(&store, def, "h4")
            .await
            .expect("resolve");

        let counters = RunCounters {
            processed: 2,
            created: 1,
            failed: 1,
            ..RunCounters::default()
        };
        runtime::finish_run(&store, run, "COMPLETED", counters, None)
            .await
            .expect("finish");
        runtime::add_event(&store, run, "INFO", "test", "done", None)
            .await
            .expect("event");
        runtime::add_event(
            &store,
            run,
            "INFO",
            "counted",
            "2 of 3",
            Some(serde_json::json!({"of": 3, "n": 2})),
        )
        .await
        .expect("event with a payload");
        assert_eq!(
            runtime::run_event_payload(&store, run, "counted")
                .await
                .expect("payload"),
            Some(serde_json::json!({"n": 2, "of": 3})),
            "{backend}"
        );
        assert_eq!(
            runtime::run_event_payload(&store, run, "test")
                .await
                .expect("no payload"),
            None,
            "{backend}"
        );
        assert_eq!(
            runtime::run_event_payload(&store, run, "absent")
                .await
                .expect("no event"),
            None,
            "{backend}"
        );
        let runs = runtime::recent_runs(&store, Some("s"), 5)
            .await
            .expect("runs");
        assert_eq!(
            (runs.len(), runs[0].items_created, runs[0].status.as_str()),
            (1, 1, "COMPLETED"),
            "{backend}"
        );
        assert_eq!(
            runtime::recent_runs(&store, None, 5)
                .await
                .expect("runs")
                .len(),
            1
        );
    }
}

/// The digest visits every ledger row of the definition once, across SQLite's pages, with the
/// content hash only for rows synced to a list asked about.
#[tokio::test]
async fn the_ledger_digest_visits_every_row_once() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let def = insert_definition(&store).await;
        let other = {
            // A second definition's rows stay out of the visit.
            let other = Id::new();
            let table: Id = with_pool!(&store, pool => sqlx::query_scalar("SELECT source_table_id FROM sync_definitions WHERE id = $1").bind(def).fetch_one(pool).await)
                .expect("table");
            with_pool!(&store, pool => sqlx::query("INSERT INTO sync_definitions (id, name, source_table_id, sync_mode, key_strategy, cursor_strategy, created_at, updated_at)
                     VALUES ($1, 's2', $2, 'ONE_WAY_PUSH', 'PRIMARY_KEY', 'FULL_SCAN', $3, $3)")
                .bind(other).bind(table).bind(chrono::Utc::now()).execute(pool).await.map(|_| ()))
            .expect("second definition");
            other
        };
        let run = runtime::start_run(&store, def, "PUSH")
            .await
            .expect("start");
        let rows = 45_000;
        let hashes: Vec<String> = (0..rows).map(|i| format!("{i:032x}{:032x}", 0)).collect();
        let contents: Vec<String> = (0..rows)
            .map(|i| format!("{:032x}{:032x}", i + 1, 0))
            .collect();
        let identities: Vec<String> = (0..rows).map(|i| i.to_string()).collect();
        let writes: Vec<LedgerWrite<'_>> = (0..rows)
            .map(|i| LedgerWrite {
                // The other definition's rows come first, in between and last: each
                // definition's pages cover its own rowids, and only its own rows.
                sync_def_id: if [0, 7, rows - 1].contains(&i) {
                    other
                } else {
                    def
                },
                source_identity: &identities[i],
                source_identity_hash: &hashes[i],
                key_strategy: "PRIMARY_KEY",
                source_instance_id: None,
                // Every third row in list b, one row pending, the rest synced to list a.
                sp_list_id: Some(if i % 3 == 0 { "list-b" } else { "list-a" }),
                sp_item_id: (i != 5).then_some(i as i64),
                content_hash: Some(&contents[i]),
                sync_state: if i == 5 { "PENDING_CREATE" } else { "SYNCED" },
                pending_list_id: None,
                sync_target_id: None,
                run_id: run,
                fresh: false,
            })
            .collect();
        runtime::put_ledger_many(&store, &writes)
            .await
            .expect("ledger");
        let mut seen = std::collections::HashMap::new();
        runtime::visit_ledger_digest(&store, def, &["list-x", "list-a"], |row| {
            let previous = seen.insert(
                row.identity_hash_prefix.to_owned(),
                row.synced_to
                    .map(|(list, content)| (list, content.to_owned())),
            );
            assert!(previous.is_none(), "visited twice");
        })
        .await
        .expect("digest");
        assert_eq!(seen.len(), rows - 3, "{backend}");
        for i in [0, 1, 2, 3, 5, 7, 20_001, 44_998, 44_999] {
            let expected: Option<Option<(usize, String)>> = match i {
                0 | 7 | 44_999 => None,
                5 => Some(None),
                i if i % 3 == 0 => Some(None),
                i => Some(Some((1, contents[i][..32].to_owned()))),
            };
            assert_eq!(
                seen.get(&hashes[i][..32]).cloned(),
                expected,
                "{backend} row {i}"
            );
        }
        let mut others = Vec::new();
        runtime::visit_ledger_digest(&store, other, &["list-b"], |row| {
            others.push((row.identity_hash_prefix.to_owned(), row.synced_to.is_some()));
        })
        .await
        .expect("other digest");
        others.sort();
        let expected: Vec<(String, bool)> = [0, 7, rows - 1]
            .into_iter()
            .map(|i| (hashes[i][..32].to_owned(), i % 3 == 0))
            .collect();
        assert_eq!(others, expected, "{backend}");
    }
}

/// A saved digest is current until the next ledger write: every write counts a generation and
/// drops it, and a digest read before a write cannot be saved after it.
#[tokio::test]
async fn a_saved_ledger_digest_lasts_until_the_next_ledger_write() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let def = insert_definition(&store).await;
        let run = runtime::start_run(&store, def, "PUSH")
            .await
            .expect("start");
        let write = |hash: &'static str| LedgerWrite {
            sync_def_id: def,
            source_identity: "1",
            source_identity_hash: hash,
            key_strategy: "PRIMARY_KEY",
            source_instance_id: None,
            sp_list_id: Some("list-a"),
            sp_item_id: Some(1),
            content_hash: Some("c"),
            sync_state: "SYNCED",
            pending_list_id: None,
            sync_target_id: None,
            run_id: run,
            fresh: false,
        };
        let lists = vec!["list-a".to_owned()];
        assert_eq!(
            runtime::ledger_digest_state(&store, def)
                .await
                .expect("state"),
            (0, false),
            "{backend}: no write yet"
        );

        runtime::put_ledger_many(&store, &[write("h1"), write("h2")])
            .await
            .expect("ledger");
        let (generation, saved) = runtime::saved_ledger_digest(&store, def)
            .await
            .expect("saved");
        assert_eq!((generation, saved.is_none()), (1, true), "{backend}");
        assert!(
            runtime::save_ledger_digest(&store, def, generation, &lists, b"entries")
                .await
                .expect("save"),
            "{backend}: saved at the current generation"
        );
        let (_, saved) = runtime::saved_ledger_digest(&store, def)
            .await
            .expect("saved");
        let saved = saved.expect("a saved digest");
        assert_eq!(
            (saved.lists, saved.entries),
            (lists.clone(), b"entries".to_vec())
        );
        assert_eq!(
            runtime::ledger_digest_state(&store, def)
                .await
                .expect("state"),
            (1, true),
            "{backend}"
        );

        // A write drops it, and a digest read before that write is refused.
        runtime::delete_ledger(&store, def, "h1")
            .await
            .expect("delete");
        assert_eq!(
            runtime::ledger_digest_state(&store, def)
                .await
                .expect("state"),
            (2, false),
            "{backend}: a delete is a write"
        );
        assert!(
            !runtime::save_ledger_digest(&store, def, generation, &lists, b"stale")
                .await
                .expect("save"),
            "{backend}: a stale digest is not saved"
        );
        runtime::put_ledger(&store, &write("h3"))
            .await
            .expect("ledger");
        let (generation, saved) = runtime::saved_ledger_digest(&store, def)
            .await
            .expect("saved");
        assert_eq!((generation, saved.is_none()), (3, true), "{backend}");
    }
}

/// Rows written as fresh (the writer saw no ledger row) are inserted; one that is in the
/// ledger after all is replaced as an upsert would, and a row that breaks a constraint still
/// fails its transaction, which leaves nothing behind.
#[tokio::test]
async fn fresh_ledger_rows_are_inserted_and_rows_already_there_replaced() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let def = insert_definition(&store).await;
        let run = runtime::start_run(&store, def, "PUSH")
            .await
            .expect("start");
        let write = |hash: &'static str, item: i64| LedgerWrite {
            sync_def_id: def,
            source_identity: hash,
            source_identity_hash: hash,
            key_strategy: "PRIMARY_KEY",
            source_instance_id: None,
            sp_list_id: Some("list-a"),
            sp_item_id: Some(item),
            content_hash: Some("c"),
            sync_state: "SYNCED",
            pending_list_id: None,
            sync_target_id: None,
            run_id: run,
            fresh: true,
        };
        let items = |hashes: &[&str]| {
            let hashes: Vec<String> = hashes.iter().map(|h| h.to_string()).collect();
            let store = &store;
            async move {
                let mut found: Vec<(String, Option<i64>)> =
                    runtime::ledger_rows(store, def, &hashes)
                        .await
                        .expect("rows")
                        .into_iter()
                        .map(|row| (row.source_identity_hash, row.sp_item_id))
                        .collect();
                found.sort();
                found
            }
        };

        runtime::put_ledger_many(&store, &[write("h1", 1), write("h2", 2)])
            .await
            .expect("fresh rows");
        runtime::put_ledger_many(&store, &[write("h2", 20), write("h3", 3)])
            .await
            .expect("h2 is there already");
        assert_eq!(
            items(&["h1", "h2", "h3"]).await,
            vec![
                ("h1".to_owned(), Some(1)),
                ("h2".to_owned(), Some(20)),
                ("h3".to_owned(), Some(3))
            ],
            "{backend}"
        );

        let broken = LedgerWrite {
            sync_state: "SLEEPING",
            ..write("h5", 5)
        };
        assert!(
            runtime::put_ledger_many(&store, &[write("h4", 4), broken])
                .await
                .is_err(),
            "{backend}: a CHECK constraint still fails the write"
        );
        let orphan = LedgerWrite {
            run_id: Id::new(),
            ..write("h6", 6)
        };
        assert!(
            runtime::put_ledger_many(&store, &[orphan]).await.is_err(),
            "{backend}: a foreign key still fails the write"
        );
        assert_eq!(items(&["h4", "h5", "h6"]).await, vec![], "{backend}");
    }
}

/// The values a statement's rows share are bound once per statement: rows of one call with
/// different runs or key strategies, interleaved and more than a statement's worth, each keep
/// their own, fresh or not.
#[tokio::test]
async fn ledger_rows_keep_their_own_run_and_key_strategy() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let def = insert_definition(&store).await;
        let runs = [
            runtime::start_run(&store, def, "PUSH")
                .await
                .expect("first run"),
            runtime::start_run(&store, def, "PUSH")
                .await
                .expect("second run"),
        ];
        let rows = 1_203;
        let hashes: Vec<String> = (0..rows).map(|i| format!("h{i:04}")).collect();
        // Runs alternate every 700 rows, key strategies every row; every other row is fresh.
        let expected = |i: usize| {
            (
                runs[(i / 700) % 2],
                if i.is_multiple_of(2) {
                    "PRIMARY_KEY"
                } else {
                    "HASHED"
                },
            )
        };
        let writes: Vec<LedgerWrite<'_>> = (0..rows)
            .map(|i| LedgerWrite {
                sync_def_id: def,
                source_identity: &hashes[i],
                source_identity_hash: &hashes[i],
                key_strategy: expected(i).1,
                source_instance_id: None,
                sp_list_id: Some("list-a"),
                sp_item_id: Some(i as i64),
                content_hash: Some("c"),
                sync_state: "SYNCED",
                pending_list_id: None,
                sync_target_id: None,
                run_id: expected(i).0,
                fresh: i % 4 < 2,
            })
            .collect();
        runtime::put_ledger_many(&store, &writes)
            .await
            .expect("ledger");
        let found: Vec<(String, Id, String, i64, String)> =
            with_pool!(&store, pool => sqlx::query_as(
            "SELECT source_identity_hash, last_run_id, source_key_strategy, sp_item_id, provenance
               FROM sync_ledger WHERE sync_def_id = $1 AND created_at = updated_at
                AND last_sync_ts = created_at ORDER BY source_identity_hash")
            .bind(def).fetch_all(pool).await)
            .expect("rows");
        assert_eq!(found.len(), rows, "{backend}");
        for (i, (hash, run, strategy, item, provenance)) in found.into_iter().enumerate() {
            assert_eq!(
                (
                    hash.as_str(),
                    run,
                    strategy.as_str(),
                    item,
                    provenance.as_str()
                ),
                (
                    hashes[i].as_str(),
                    expected(i).0,
                    expected(i).1,
                    i as i64,
                    "PUSH"
                ),
                "{backend} row {i}"
            );
        }
    }
}

#[tokio::test]
async fn a_definition_runs_one_at_a_time() {
    for store in TestStore::all().await {
        let backend = store.backend();
        let (def, other) = (Id::new(), Id::new());
        let held = syncbridge_store::lock::try_lock_definition(&store, def)
            .await
            .expect("lock")
            .expect("free at first");
        assert!(
            syncbridge_store::lock::try_lock_definition(&store, def)
                .await
                .expect("lock")
                .is_none(),
            "{backend}: held"
        );
        assert!(
            syncbridge_store::lock::try_lock_definition(&store, other)
                .await
                .expect("lock")
                .is_some(),
            "{backend}: another definition runs meanwhile"
        );
        held.release().await;
        assert!(
            syncbridge_store::lock::try_lock_definition(&store, def)
                .await
                .expect("lock")
                .is_some(),
            "{backend}: released"
        );
    }
}
