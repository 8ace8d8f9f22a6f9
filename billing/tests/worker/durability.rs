//! The worker killed with SIGKILL while the ledger flows, late events on closed periods,
//! and runs on a database whose ledger is away.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_applies_nothing_twice_and_misses_nothing() {
    let router = Arc::new(Router::start(market(), "2026-11-02T08:00:00Z").await);
    let selling = Arc::new(AtomicBool::new(true));
    let sold = Arc::new(AtomicU32::new(0));
    let seller = {
        let (router, selling, sold) = (Arc::clone(&router), Arc::clone(&selling), Arc::clone(&sold));
        tokio::spawn(async move {
            let mut n = 0u32;
            while selling.load(Ordering::Relaxed) {
                n += 1;
                let vertical = ["solar", "roofing", "windows"][n as usize % 3];
                let day = 2 + n % 5;
                let sale = router.sell(vertical, n, &format!("2026-11-{day:02}T10:00:00Z")).await;
                if n.is_multiple_of(7) && vertical == "solar" {
                    router.return_sale("inv", &sale, "other", &format!("2026-11-{day:02}T11:00:00Z")).await;
                }
                if n.is_multiple_of(10) {
                    router.top_up("pre", "500.00", &format!("wire-{n}"), &format!("2026-11-{day:02}T12:00:00Z")).await;
                }
                sold.store(n, Ordering::Relaxed);
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("billing.db");
    let mut kills = 0;
    let mut applied_at_kill = Vec::new();
    while kills < 4 {
        let mut worker = Worker::start(&db, &router.grpc, &[]).await;
        // Let it apply some of the flow (more each time), then kill it without warning.
        let before = worker.applied().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while worker.applied().await <= before {
            assert!(std::time::Instant::now() < deadline, "the worker applied nothing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50 + 50 * kills)).await;
        applied_at_kill.push(worker.applied().await);
        worker.kill9();
        kills += 1;
    }
    selling.store(false, Ordering::Relaxed);
    seller.await.unwrap();
    assert!(sold.load(Ordering::Relaxed) > 20, "the router sold while the worker was killed");

    let worker = Worker::start(&db, &router.grpc, &[]).await;
    let head = router.head().await;
    worker.caught_up(head).await;
    assert_eq!(worker.applied().await, head);
    assert!(
        applied_at_kill.iter().any(|applied| *applied > 0 && *applied < head),
        "killed mid-stream: {applied_at_kill:?} of {head}"
    );

    // Every sale and return of the router, once.
    let sales = router.running.router.sales().all();
    let revenue = worker.get("/billing/v1/reports/revenue?from=2026-11-01&to=2026-11-30").await.json;
    let counted = revenue["totals"]["sales"].as_u64().unwrap() + revenue["totals"]["internal_sales"].as_u64().unwrap();
    assert_eq!(counted, sales.len() as u64, "{revenue}");
    let run = worker.run("2026-12-01").await;
    assert!(!run["issued"].as_array().unwrap().is_empty());
    let reconciliation = worker.reconcile().await;
    assert_eq!(reconciliation["ok"], true, "{reconciliation}");
    assert_eq!(reconciliation["checked"]["sales"], sales.len());
    assert_eq!(reconciliation["checked"]["sales_waiting"], 0);
    let (code, printed) = cli(&["reconcile"], &db, &router.grpc);
    assert_eq!((code, printed["ok"].clone()), (0, json!(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_for_a_closed_period_becomes_an_adjustment_on_the_next_document() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    let on_time = router.sell("solar", 1, "2026-11-03T10:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("billing.db");
    let mut worker = Worker::start(&db, &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    worker.kill9();

    // Sold on Sunday, but the worker is down: the run closes the week without it. The
    // CLI works on what the database holds when the ledger cannot be reached.
    let late = router.sell("solar", 2, "2026-11-08T20:00:00Z").await;
    let (code, run) = cli(&["run", "--as-of", "2026-11-09"], &db, "http://127.0.0.1:1");
    assert_eq!((code, issued(&run, "INV")), (0, vec!["INV-2026-000001".to_string()]), "{run}");

    let worker = Worker::start(&db, &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    let closed = worker.document("INV-2026-000001").await;
    assert_eq!(closed["lines"].as_array().unwrap().len(), 1, "an issued invoice is never edited");
    assert_eq!(closed["lines"][0]["sale_id"], on_time.as_str());
    let waiting = worker.reconcile().await;
    assert_eq!(
        (waiting["ok"].clone(), waiting["checked"]["sales_waiting"].clone()),
        (json!(true), json!(1)),
        "{waiting}"
    );
    assert_eq!(worker.run("2026-11-09").await["issued"], json!([]), "the late sale waits for the next document");

    let next_week = router.sell("solar", 3, "2026-11-10T10:00:00Z").await;
    worker.caught_up(router.head().await).await;
    let run = worker.run("2026-11-16").await;
    assert_eq!(issued(&run, "INV"), ["INV-2026-000002"]);
    let next = worker.document("INV-2026-000002").await;
    assert_eq!(next["period"], json!({"from": "2026-11-09", "to": "2026-11-15"}));
    let lines = next["lines"].as_array().unwrap();
    assert_eq!((lines[0]["kind"].as_str(), lines[0]["sale_id"].as_str()), (Some("adjustment"), Some(late.as_str())));
    assert_eq!(lines[0]["amount"], "40.00");
    assert_eq!((lines[1]["kind"].as_str(), lines[1]["sale_id"].as_str()), (Some("sale"), Some(next_week.as_str())));
    assert_eq!(next["total"], "80.00");
    assert_eq!(worker.reconcile().await["ok"], true);
}
