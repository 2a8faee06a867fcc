//! Streaming a large table through the MySQL source: peak RSS after reading 100,000 rows and
//! after reading 1,000,000 (the peak is reset in between through `/proc/self/clear_refs`), and
//! rows per second compared with `mariadb --quick -e 'SELECT …' > /dev/null` of the same rows,
//! measured in the same run. Needs the local MariaDB.
//!
//! `cargo bench -p syncbridge-mysql --bench stream -- [ROWS]` (default 1,000,000).

use std::time::Instant;

use futures::StreamExt as _;
use syncbridge_api::{CursorSpec, ReadRequest, Source as _, TableRef};
use syncbridge_mysql::{MySqlSource, MySqlSourceConfig};
use syncbridge_store::testing::MariaDatabase;

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

async fn stream(source: &MySqlSource, table: &str) -> (usize, f64) {
    let started = Instant::now();
    let mut stream = source
        .read(ReadRequest {
            table: TableRef::new(None, table),
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

fn client_read(database: &str, table: &str) -> f64 {
    let started = Instant::now();
    let status = std::process::Command::new("mariadb")
        .args([
            "-uroot",
            "-h127.0.0.1",
            "-P3306",
            "--protocol=TCP",
            "--quick",
            "-D",
            database,
        ])
        .args(["-e", &format!("SELECT * FROM {table} ORDER BY id")])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mariadb client");
    assert!(status.success());
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let small = rows / 10;
    let Some(db) = MariaDatabase::create("bench") else {
        eprintln!("MariaDB on 127.0.0.1:3306 is needed");
        return;
    };
    for (table, n) in [("small", small), ("large", rows)] {
        db.execute(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, amount DECIMAL(12,2),
                at DATETIME(6), note TEXT);
             INSERT INTO {table} SELECT seq, CONCAT('row ', seq), (seq % 100000) / 100.0,
                '2024-01-01' + INTERVAL seq SECOND, REPEAT('n', seq % 40) FROM seq_1_to_{n};"
        ));
    }
    let config: MySqlSourceConfig =
        serde_json::from_value(serde_json::json!({"database": db.name})).expect("config");
    let source = MySqlSource::connect(config).await.expect("source");

    reset_peak_rss();
    let (small_rows, _) = stream(&source, "small").await;
    let small_peak = peak_rss_kib();
    reset_peak_rss();
    let (large_rows, large_secs) = stream(&source, "large").await;
    let large_peak = peak_rss_kib();
    let client_secs = client_read(&db.name, "large");
    assert_eq!((small_rows as u64, large_rows as u64), (small, rows));

    println!("rows: {small} and {rows}, batches of 5,000");
    println!("peak RSS streaming {small:>9} rows: {small_peak:>8} KiB");
    println!("peak RSS streaming {rows:>9} rows: {large_peak:>8} KiB");
    println!(
        "RSS growth 10x rows:            {:>8.2}x",
        large_peak as f64 / small_peak.max(1) as f64
    );
    let rate = large_rows as f64 / large_secs;
    let client_rate = rows as f64 / client_secs;
    println!("source:           {rate:>10.0} rows/s ({large_secs:.2} s)");
    println!("mariadb --quick:  {client_rate:>10.0} rows/s ({client_secs:.2} s)");
    println!("source / client throughput:  {:.2}", rate / client_rate);
}
