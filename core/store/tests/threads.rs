//! The meta-store's SQLite connection threads yield the cores to the runtime's threads (Linux).
//! A file of its own: it looks at every thread of the test process.
#![cfg(target_os = "linux")]

use syncbridge_store::testing::TestStore;
use syncbridge_store::{SQLITE_CONNECTION_THREADS, StorePool};
use syncbridge_threads::{BACKGROUND_NICE, thread_nice, threads_named};

#[tokio::test]
async fn sqlite_connection_threads_run_at_background_priority() {
    let own = thread_nice(None).expect("nice");
    let store = TestStore::sqlite().await;
    for pool in [store.pool(), store.writer()] {
        let StorePool::Sqlite(pool) = pool else {
            unreachable!("a SQLite store");
        };
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(pool)
            .await
            .expect("query");
        assert_eq!(one, 1);
    }
    let threads = threads_named(SQLITE_CONNECTION_THREADS);
    assert!(threads.len() >= 2, "a reader and the writer: {threads:?}");
    for tid in threads {
        let nice = thread_nice(Some(tid))
            .expect("nice")
            .expect("Linux has one");
        assert_eq!(nice, BACKGROUND_NICE, "thread {tid}");
    }
    // The test's own thread is left as it was.
    assert_eq!(thread_nice(None).expect("nice"), own);
}
