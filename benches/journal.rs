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
    Event::from(SaleSettled {
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
        currency: leadrouter::domain::money::Currency::EUR,
        sold_at: Utc::now(),
        internal: false,
        dedup_keys: vec![hex_key(n, 1), hex_key(n, 2)],
        return_terms: None,
        lease: None,
        buyer_reference: None,
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

/// Events in the restart and replay measurements (issue 4: one million).
const HISTORY: usize = 1_000_000;

/// Fills a journal with `HISTORY` sales through 256 concurrent writers; answers its dir.
fn history(runtime: &tokio::runtime::Runtime) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path()).unwrap();
    let journal = Arc::new(journal);
    let writers = 256;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let journal = Arc::clone(&journal);
                tokio::spawn(async move {
                    for i in 0..HISTORY / writers {
                        journal.append(sale(w * (HISTORY / writers) + i), Utc::now()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    dir
}

/// Restart: open (read, CRC-check and decode every segment), as the server does first.
fn restart_seconds(dir: &std::path::Path) -> (f64, u64, u64) {
    let started = Instant::now();
    let (_, recovery) = Journal::open(dir).unwrap();
    let bytes = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().metadata().unwrap().len()).sum();
    (started.elapsed().as_secs_f64(), recovery.last_sequence, bytes)
}

/// Replay to a real gRPC consumer on loopback: subscribe from 0 and count to the end.
fn replay_per_second(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) -> f64 {
    use leadrouter::ledger::proto::ledger_stream_client::LedgerStreamClient;
    use leadrouter::ledger::proto::SubscribeRequest;
    use leadrouter::store::EventLog;
    runtime.block_on(async {
        let (journal, recovery) = Journal::open(dir).unwrap();
        let log: Arc<dyn EventLog> = Arc::new(journal);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let clock = Arc::new(leadrouter::clock::SystemClock);
        let service = leadrouter::ledger::LedgerService::new(log, None, clock, stopped.clone());
        let server = tokio::spawn(leadrouter::ledger::serve(listener, service, stopped));
        let mut client = LedgerStreamClient::connect(format!("http://{addr}")).await.unwrap();
        let started = Instant::now();
        let mut stream =
            client.subscribe(SubscribeRequest { after_sequence: 0, ..Default::default() }).await.unwrap().into_inner();
        let mut last = 0;
        while last < recovery.last_sequence {
            let event = stream.message().await.unwrap().unwrap();
            assert_eq!(event.sequence, last + 1, "gap-free");
            last = event.sequence;
        }
        let rate = last as f64 / started.elapsed().as_secs_f64();
        drop(stream);
        drop(client);
        let _ = stop.send(true);
        let _ = server.await;
        rate
    })
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
    let started = Instant::now();
    let dir = history(&runtime);
    println!("wrote {HISTORY} sales with 256 writers in {:.1} s", started.elapsed().as_secs_f64());
    let (seconds, events, bytes) = restart_seconds(dir.path());
    println!("restart (open + recover) with {events} events, {:.0} MB: {seconds:.2} s", bytes as f64 / 1e6);
    println!("replay to a gRPC consumer from sequence 0: {:>9.0} events/s", replay_per_second(&runtime, dir.path()));
}
