//! Billing figures for BENCHMARKS.md (run: `cargo bench -p leadrouter-billing --bench billing`).
//!
//! 0. Catching up end to end: a router journal holding 100,000 sales served by the router's
//!    own gRPC ledger server on loopback, and the worker's `consume::catch_up` reading it
//!    into a fresh database (decode, parse, batch, apply).
//! 1. Catching up: 100,000 sales (1,000 buyers, 50 suppliers) applied to a fresh database
//!    through `store::ledger::apply`, as the consumer does: batches of up to 1,024 events,
//!    one transaction each. Baseline in the same run: one transaction per event.
//! 2. A monthly run over those 100,000 sales: every invoice, statement and settlement.
//! 3. Reconciliation of the result.
//!
//! A plain timing harness (not criterion): each figure is one pass over 100,000 sales,
//! which takes seconds, and is printed with the machine's core count.

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use leadrouter_billing::consume;
use leadrouter_billing::domain::dunning::DunningPolicy;
use leadrouter_billing::domain::facts::{BillingMode, Buyer, Entry, Fact, Sale, Supplier};
use leadrouter_billing::domain::period::Interval;
use leadrouter_billing::engine::{reconcile, run};
use leadrouter_billing::store::{ledger, Db};
use rust_decimal::Decimal;

const SALES: u64 = 100_000;
const BUYERS: u64 = 1_000;
const SUPPLIERS: u64 = 50;

fn entries() -> Vec<Entry> {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut entries = Vec::new();
    let mut sequence = 0;
    let mut push = |fact: Fact, entries: &mut Vec<Entry>| {
        sequence += 1;
        entries.push(Entry { sequence, at: start, fact });
    };
    for b in 0..BUYERS {
        let mode = match b % 10 {
            0 => BillingMode::Internal,
            1..=3 => BillingMode::Prepaid,
            _ => BillingMode::Invoice,
        };
        let buyer = Buyer {
            buyer_id: format!("buy_{b}").into(),
            name: format!("Buyer {b}"),
            email: Some(format!("b{b}@example.com")),
            currency: leadrouter_types::Currency::EUR,
            timezone: chrono_tz::Europe::Berlin,
            mode,
            interval: Interval::Monthly,
            payment_terms_days: 14,
            credit_limit: None,
        };
        push(Fact::Buyer(buyer), &mut entries);
    }
    for s in 0..SUPPLIERS {
        let supplier = Supplier {
            supplier_id: format!("sup_{s}").into(),
            name: format!("Supplier {s}"),
            email: None,
            interval: Interval::Monthly,
            timezone: chrono_tz::UTC,
        };
        push(Fact::Supplier(supplier), &mut entries);
    }
    for n in 0..SALES {
        let sale = Sale {
            sale_id: format!("sal_{n:08}").into(),
            lead_id: format!("led_{n:08}").into(),
            ping_id: None,
            supplier_id: format!("sup_{}", n % SUPPLIERS).into(),
            buyer_id: format!("buy_{}", n % BUYERS).into(),
            campaign_id: format!("cmp_{}", n % BUYERS).into(),
            vertical: "solar".into(),
            country: "DE".into(),
            model: leadrouter_types::Model::Bidding,
            price: Decimal::new(3_850, 2),
            payout: Decimal::new(2_280, 2),
            currency: leadrouter_types::Currency::EUR,
            sold_at: start + Duration::seconds((n * 25) as i64), // spread over November
            internal: (n % BUYERS).is_multiple_of(10),
            buyer_reference: None,
        };
        push(Fact::Sale(sale), &mut entries);
    }
    entries
}

/// A router journal with `SALES` sales, written by 256 concurrent writers.
fn router_journal(runtime: &tokio::runtime::Runtime) -> tempfile::TempDir {
    use leadrouter::domain::ledger::{Event, SaleSettled};
    use leadrouter::domain::model::Model;
    use leadrouter::domain::money::Money;
    use leadrouter::store::journal::Journal;
    let dir = tempfile::tempdir().expect("journal dir");
    let (journal, _) = Journal::open(dir.path()).expect("journal");
    let journal = std::sync::Arc::new(journal);
    let writers = 256;
    let per_writer = SALES as usize / writers + 1;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let journal = std::sync::Arc::clone(&journal);
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        let n = w * per_writer + i;
                        if n >= SALES as usize {
                            break;
                        }
                        let sale = Event::from(SaleSettled {
                            sale_id: format!("sal_{n:020}"),
                            lead_id: format!("led_{n:020}"),
                            ping_id: None,
                            supplier_id: format!("sup_{}", n as u64 % SUPPLIERS),
                            buyer_id: format!("buy_{}", n as u64 % BUYERS),
                            campaign_id: format!("cmp_{}", n as u64 % BUYERS),
                            vertical: "solar".into(),
                            country: "DE".into(),
                            model: Model::Bidding,
                            price: Money::cents(3850),
                            payout: Money::cents(2280),
                            currency: leadrouter_types::Currency::EUR,
                            sold_at: Utc::now(),
                            internal: false,
                            dedup_keys: Vec::new(),
                            return_terms: None,
                            lease: None,
                            buyer_reference: None,
                        });
                        journal.append(sale, Utc::now()).await.expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
    });
    dir
}

/// Serves the journal over the router's gRPC ledger server and catches a fresh worker
/// database up from it; answers (events, seconds without the final quiet wait).
fn catch_up_over_grpc(runtime: &tokio::runtime::Runtime, journal_dir: &std::path::Path, db: &Db) -> (u64, f64) {
    use leadrouter::store::journal::Journal;
    use leadrouter::store::EventLog;
    const QUIET: std::time::Duration = std::time::Duration::from_millis(300);
    runtime.block_on(async {
        let (journal, _) = Journal::open(journal_dir).expect("journal");
        let log: std::sync::Arc<dyn EventLog> = std::sync::Arc::new(journal);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let clock = std::sync::Arc::new(leadrouter::clock::SystemClock);
        let service = leadrouter::ledger::LedgerService::new(log, None, clock, stopped.clone());
        let server = tokio::spawn(leadrouter::ledger::serve(listener, service, stopped));
        let started = Instant::now();
        let source = consume::Source { url, consumer: None };
        let applied = consume::catch_up(db, &source, QUIET).await.expect("catch up");
        let seconds = (started.elapsed() - QUIET).as_secs_f64();
        let _ = stop.send(true);
        let _ = server.await;
        (applied, seconds)
    })
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` probes harness-less benches with --list
    }
    let entries = entries();
    let dir = tempfile::tempdir().expect("temp dir");
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let journal = router_journal(&runtime);
    let grpc_db = Db::open(&dir.path().join("grpc.db")).expect("db");
    let (applied, seconds) = catch_up_over_grpc(&runtime, journal.path(), &grpc_db);
    assert_eq!(applied, SALES, "every sale applied");
    println!(
        "catch-up over gRPC from a router journal: {applied} sales in {seconds:.2} s = {:.0} events/s",
        applied as f64 / seconds
    );
    println!("events: {} ({} sales, {} buyers, {} suppliers)", entries.len(), SALES, BUYERS, SUPPLIERS);

    // Baseline: one transaction (one fsync) per event, on the first 5,000 events.
    let baseline = Db::open(&dir.path().join("baseline.db")).expect("db");
    let sample = &entries[..5_000];
    let started = Instant::now();
    for entry in sample {
        baseline.with(|connection| ledger::apply(connection, std::slice::from_ref(entry))).expect("apply");
    }
    let per_event = sample.len() as f64 / started.elapsed().as_secs_f64();
    println!("baseline, one transaction per event: {per_event:.0} events/s");

    let db = Db::open(&dir.path().join("billing.db")).expect("db");
    let started = Instant::now();
    for batch in entries.chunks(1024) {
        db.with(|connection| ledger::apply(connection, batch)).expect("apply");
    }
    let elapsed = started.elapsed();
    println!(
        "catch-up, batches of 1,024: {} events in {:.2} s = {:.0} events/s",
        entries.len(),
        elapsed.as_secs_f64(),
        entries.len() as f64 / elapsed.as_secs_f64()
    );

    let as_of = "2026-12-01".parse().unwrap();
    let started = Instant::now();
    let outcome = db.with(|connection| run::run(connection, as_of, DunningPolicy::default(), Utc::now())).expect("run");
    println!(
        "monthly run over {SALES} sales: {} documents in {:.2} s",
        outcome.issued.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let reconciliation = db.with(|connection| reconcile::reconcile(connection)).expect("reconcile");
    println!(
        "reconciliation: ok={} ({} discrepancies) in {:.2} s",
        reconciliation.ok,
        reconciliation.discrepancies.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(reconciliation.ok, "{:?}", &reconciliation.discrepancies[..reconciliation.discrepancies.len().min(5)]);
}
