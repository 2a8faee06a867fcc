//! Streaming a large table through the PostgreSQL source: peak RSS after reading 100,000 rows and
//! after reading 1,000,000 (the peak is reset in between through `/proc/self/clear_refs`), and
//! rows per second compared with `COPY (SELECT …) TO STDOUT` of the same rows, measured in the
//! same run. Needs the local PostgreSQL.
//!
//! `cargo bench -p syncbridge-postgres --bench stream -- [ROWS]` (default 1,000,000).

use std::time::Instant;

use futures::{StreamExt as _, TryStreamExt as _};
use sqlx::Connection as _;
use syncbridge_api::{CursorSpec, ReadRequest, Source as _, TableRef};
use syncbridge_postgres::{PostgresSource, PostgresSourceConfig};
use syncbridge_store::testing::PgDatabase;

/// Peak resident memory of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn stream(source: &PostgresSource, table: &str) -> (usize, f64) {
    let started = Instant::now();
    let mut stream = source
        .read(ReadRequest {
            table: TableRef::new(Some("public"), table),
            columns: Vec::new(),
            key: vec!["id".into()],
            cursor: CursorSpec::FullScan,
            from: None,
            batch_size: 5_000,
            defer_conversion: false,
        })
        .await
        .expect("read");
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.expect("batch").len();
    }
    (rows, started.elapsed().as_secs_f64())
}

async fn copy_out(url: &str, table: &str) -> (usize, f64) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let started = Instant::now();
    let chunks = conn
        .copy_out_raw(&format!(
            "COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT"
        ))
        .await
        .expect("copy");
    let lines: usize = chunks
        .map_ok(|chunk| chunk.iter().filter(|b| **b == b'\n').count())
        .try_fold(0, |total, n| async move { Ok(total + n) })
        .await
        .expect("copy data");
    (lines, started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let small = rows / 10;
    let Some(db) = PgDatabase::create("bench") else {
        eprintln!("PostgreSQL on 127.0.0.1:5432 is needed");
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    for (table, n) in [("small", small), ("large", rows)] {
        sqlx::raw_sql(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), at timestamptz, note text);
             INSERT INTO {table} SELECT g, 'row ' || g, (g % 100000) / 100.0, now() - g * interval '1 second', repeat('n', g % 40)
             FROM generate_series(1, {n}) g;
             ANALYZE {table};"
        ))
        .execute(&mut conn)
        .await
        .expect("load");
    }
    let config: PostgresSourceConfig =
        serde_json::from_value(serde_json::json!({"database": db.name})).expect("config");
    let source = PostgresSource::connect(config).await.expect("source");

    reset_peak_rss();
    let (small_rows, small_secs) = stream(&source, "small").await;
    let small_peak = peak_rss_kib();
    reset_peak_rss();
    let (large_rows, large_secs) = stream(&source, "large").await;
    let large_peak = peak_rss_kib();
    let (copy_rows, copy_secs) = copy_out(&db.url, "large").await;
    assert_eq!((small_rows as u64, large_rows as u64), (small, rows));
    assert_eq!(copy_rows, large_rows);

    println!("rows: {small} and {rows}, batches of 5,000");
    println!("peak RSS streaming {small:>9} rows: {:>8} KiB", small_peak);
    println!("peak RSS streaming {rows:>9} rows: {:>8} KiB", large_peak);
    println!(
        "RSS growth 10x rows:            {:>8.2}x",
        large_peak as f64 / small_peak.max(1) as f64
    );
    let rate = large_rows as f64 / large_secs;
    let copy_rate = copy_rows as f64 / copy_secs;
    println!("source: {rate:>10.0} rows/s ({large_secs:.2} s)");
    println!("COPY:   {copy_rate:>10.0} rows/s ({copy_secs:.2} s)");
    println!("source / COPY throughput:  {:.2}", rate / copy_rate);
    let _ = small_secs;
}
