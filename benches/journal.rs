//! Journal throughput (BENCHMARKS.md): durable appends per second with 1, 8 and 64
//! concurrent writers, next to this disk's fsync ceiling measured in the same run.
//!
//! Not a criterion bench: each figure is one timed run of a fixed number of appends, which
//! is what "durable sales per second" means; criterion's sampling would mostly measure
//! file growth. Run: `cargo bench --bench journal`.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use leadrouter::domain::ledger::{Event, SaleSettled};
use leadrouter::domain::model::Model;
use leadrouter::domain::money::Money;
use leadrouter::store::journal::Journal;

/// Appends per run: enough for a second or more at the expected rates.
const APPENDS: usize = 20_000;

fn sale(n: usize) -> Event {
    Event::SaleSettled(SaleSettled {
        sale_id: format!("sal_{n:020}"),
        lead_id: format!("led_{n:020}"),
        ping_id: Some(format!("png_{n:020}")),
        supplier_id: "solarportal".into(),
        buyer_id: format!("buyer-{}", n % 100),
        campaign_id: format!("campaign-{}", n % 1000),
        vertical: "solar".into(),
        country: "DE".into(),
        model: Model::PingPost,
        price: Money::cents(3800),
        payout: Money::cents(2280),
        currency: "EUR".into(),
        sold_at: Utc::now(),
        internal: false,
        dedup_keys: vec![hex_key(n, 1), hex_key(n, 2)],
    })
}

fn hex_key(n: usize, salt: usize) -> String {
    format!("{:064x}", n * 31 + salt)
}

/// fdatasync after each 256-byte write: the most durable appends one writer can make.
fn fsync_ceiling() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("ceiling")).unwrap();
    let record = [7u8; 256];
    let rounds = 2_000;
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&record).unwrap();
        file.sync_data().unwrap();
    }
    rounds as f64 / started.elapsed().as_secs_f64()
}

fn appends_per_second(runtime: &tokio::runtime::Runtime, writers: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path()).unwrap();
    let journal = Arc::new(journal);
    let per_writer = APPENDS / writers;
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let journal = Arc::clone(&journal);
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        journal.append(sale(w * per_writer + i), Utc::now()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let rate = (per_writer * writers) as f64 / started.elapsed().as_secs_f64();
    (rate, journal.fsyncs())
}

fn main() {
    // `cargo bench` passes flags such as --bench; this binary takes none.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("fsync ceiling (256-byte write + fdatasync, one writer): {:>9.0} /s", fsync_ceiling());
    for writers in [1, 8, 64] {
        let (rate, fsyncs) = appends_per_second(&runtime, writers);
        println!(
            "journal appends, {writers:>2} concurrent writers:          {rate:>9.0} /s  ({} appends, {fsyncs} fsyncs)",
            APPENDS / writers * writers
        );
    }
}
