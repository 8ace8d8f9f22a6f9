//! DESIGN §14 retention: whole segments go once they are older than `--retain-days` and
//! every return window, covered by a checkpoint, hold no waiting pull lead, and every
//! registered consumer has read them; the stream never skips what went; a node starts from
//! what is left. Time is a `ManualClock` moved 400 days at a go.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use leadrouter::clock::ManualClock;
use leadrouter::ledger::proto::{ledger_stream_client::LedgerStreamClient, AcknowledgeRequest, SubscribeRequest};
use leadrouter::store::journal::{segments, verify, JournalOptions};
use serde_json::{json, Value};

use crate::harness::*;

const SMALL: JournalOptions = JournalOptions { segment_bytes: 4_096 };

/// Storage's pull market (one pull buyer at 10.00) with returns for `window_days` and
/// 100,000.00 topped up.
fn market(window_days: u32) -> Value {
    let mut market = crate::storage::pull_market();
    market["campaigns"][0]["return_window_days"] = json!(window_days);
    market["topups"] = json!([topup("b1", "100000.00")]);
    market
}

fn journal_dir(server: &TestServer) -> std::path::PathBuf {
    server.data.path().join("journal")
}

fn segment_numbers(journal: &Path) -> Vec<u64> {
    segments::list(journal).unwrap().iter().map(|s| s.number).collect()
}

async fn sell(server: &TestServer, from: u32, to: u32) {
    for n in from..to {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
}

/// Waits until the checkpoint covers every sealed segment.
async fn checkpointed(server: &TestServer) {
    let journal = journal_dir(server);
    eventually("every sealed segment is checkpointed", || {
        let newest = segments::list(&journal).unwrap().last().unwrap().number;
        leadrouter::checkpoints::load(&journal).ok().flatten().is_some_and(|c| c.segment == newest)
            && std::fs::read(journal.join("retention")).is_ok_and(|facts| {
                serde_json::from_slice::<Value>(&facts).is_ok_and(|f| f["checkpoint_segment"] == newest)
            })
    })
    .await;
}

async fn compact(server: &TestServer, dry_run: bool) -> Value {
    let answer = server.admin("POST", &format!("/admin/v1/journal/compact?dry_run={dry_run}"), None).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    answer.json
}

async fn ledger(server: &TestServer) -> LedgerStreamClient<tonic::transport::Channel> {
    LedgerStreamClient::connect(format!("http://{}", server.running.grpc_addr)).await.unwrap()
}

/// Every sequence the stream replays after `after`, up to the newest.
async fn replayed(server: &TestServer, after: u64) -> Result<Vec<u64>, tonic::Status> {
    let last = server.running.router.journal().clone().event_log().last_sequence();
    let request = SubscribeRequest { after_sequence: after, ..Default::default() };
    let mut stream = ledger(server).await.subscribe(request).await?.into_inner();
    let mut sequences = Vec::new();
    while sequences.last().is_none_or(|s| *s < last) {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await.expect("in time");
        sequences.push(next?.expect("the stream goes on").sequence);
    }
    Ok(sequences)
}

async fn acknowledge(server: &TestServer, consumer: &str, sequence: u64) -> u64 {
    let request = AcknowledgeRequest { consumer: consumer.into(), sequence };
    ledger(server).await.acknowledge(request).await.unwrap().into_inner().first_retained_sequence
}

/// Takes every waiting lead of b1 and acknowledges them; answers how many there were.
async fn pull_everything(server: &TestServer) -> usize {
    let key = format!("Bearer {}", buyer_key("b1"));
    let (mut cursor, mut taken) = (0u64, 0);
    loop {
        let url = format!("{}/v1/buyer/leads?limit=1000&after={cursor}", server.base);
        let page = server.send("GET", &url, &[("authorization", &key)], "").await;
        let leads = page.json["leads"].as_array().unwrap().len();
        if leads == 0 {
            return taken;
        }
        taken += leads;
        cursor = page.json["next"].as_str().unwrap().parse().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_what_is_old_read_and_returned_past_and_the_stream_never_skips_it() {
    let start = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    // A 450-day return window outlasts the 400 days of retention.
    let server = start_with_journal(market(450), Arc::new(clock.clone()), tempfile::tempdir().unwrap(), SMALL).await;
    sell(&server, 0, 80).await;
    assert_eq!(pull_everything(&server).await, 80);
    // The billing worker has applied the first 30 events.
    assert_eq!(acknowledge(&server, "billing", 30).await, 1);
    sell(&server, 80, 100).await;
    assert_eq!(pull_everything(&server).await, 20, "taking the last page acknowledges the rest");
    sell(&server, 100, 120).await;
    pull_everything(&server).await;
    checkpointed(&server).await;
    let journal = journal_dir(&server);
    let before = segment_numbers(&journal);
    assert!(before.len() > 8, "small segments: {before:?}");

    let young = compact(&server, false).await;
    assert_eq!(young["removed_segments"], json!([]), "{young}");
    assert_eq!(young["kept"]["reason"], "too_recent", "{young}");

    clock.advance(Duration::days(401));
    let windowed = compact(&server, false).await;
    assert_eq!(windowed["kept"]["reason"], "too_recent", "the return window still runs: {windowed}");

    clock.advance(Duration::days(60));
    let dry = compact(&server, true).await;
    assert_eq!(dry["kept"]["reason"], "consumer_behind", "{dry}");
    assert_eq!(dry["kept"]["consumer"], "billing");
    assert_eq!(segment_numbers(&journal), before, "a dry run removes nothing");

    let held = compact(&server, false).await;
    assert_eq!((&held["removed_segments"], &held["kept"]), (&dry["removed_segments"], &dry["kept"]));
    let first_retained = held["first_retained_sequence"].as_u64().unwrap();
    assert!(first_retained > 1 && first_retained <= 31, "the segment holding sequence 31 stays: {held}");
    assert!(held["removed_bytes"].as_u64().unwrap() > 0);
    let removed: Vec<u64> = serde_json::from_value(held["removed_segments"].clone()).unwrap();
    assert_eq!(segment_numbers(&journal), before[removed.len()..], "the oldest went, in order");

    // Gap-free: asking for what went is an error, never a silent jump.
    let gone = replayed(&server, 0).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::OutOfRange, "{gone:?}");
    let rest = replayed(&server, first_retained - 1).await.unwrap();
    assert_eq!(rest.first(), Some(&first_retained));
    assert!(rest.windows(2).all(|w| w[1] == w[0] + 1), "in order, gap-free");

    // Once the consumer has read everything, every covered segment goes.
    let last = *rest.last().unwrap();
    assert_eq!(acknowledge(&server, "billing", last).await, first_retained);
    let all = compact(&server, false).await;
    // What stays is the tail no checkpoint covers yet (the acknowledgment of the last pull
    // page is journaled there, so the checkpoint still counts those leads as waiting).
    let reason = all["kept"]["reason"].as_str().unwrap();
    assert!(["not_checkpointed", "pull_leads_waiting"].contains(&reason), "{all}");
    let tail = segment_numbers(&journal);
    assert!(tail[0] > before[removed.len()] + 10, "the consumer held many more: {tail:?} {all}");
    let consumers = server.admin("GET", "/admin/v1/ledger/consumers", None).await.json;
    assert_eq!(consumers["consumers"][0]["name"], "billing");
    assert_eq!(consumers["consumers"][0]["sequence"], last);
    assert_eq!(consumers["first_retained_sequence"], all["first_retained_sequence"]);
    assert_eq!(server.admin("DELETE", "/admin/v1/ledger/consumers/billing", None).await.status, 204);
    assert_eq!(server.admin("DELETE", "/admin/v1/ledger/consumers/billing", None).await.status, 404);

    // A start on what is left: same balance, still selling, and verify finds it whole.
    let balance = server.balance(&buyer_key("b1")).await;
    let data = server.stop().await;
    let report = verify::verify(&data.path().join("journal"), 0, u64::MAX).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    let server = start_with_journal(market(450), Arc::new(clock.clone()), data, SMALL).await;
    assert_eq!(server.balance(&buyer_key("b1")).await, balance);
    sell(&server, 120, 121).await;
    assert_eq!(pull_everything(&server).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pull_leads_hold_their_segments_until_the_buyer_takes_them() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap());
    let server = start_with_journal(market(7), Arc::new(clock.clone()), tempfile::tempdir().unwrap(), SMALL).await;
    sell(&server, 0, 60).await;
    checkpointed(&server).await;
    clock.advance(Duration::days(401));
    let held = compact(&server, false).await;
    assert_eq!(held["kept"]["reason"], "pull_leads_waiting", "{held}");
    assert_eq!(held["removed_segments"], json!([]));

    // The buyer takes them; once a checkpoint knows, their segments go, and the leads
    // stay readable (a buyer re-reads a page from its old cursor).
    assert_eq!(pull_everything(&server).await, 60);
    sell(&server, 60, 100).await;
    checkpointed(&server).await;
    // The node compacts after each checkpoint by itself; asking again finds it done.
    let freed = compact(&server, false).await;
    let first = freed["first_retained_sequence"].as_u64().unwrap();
    assert!(first > 60, "the segments of the 60 taken leads went: {freed}");
    assert!(segment_numbers(&journal_dir(&server))[0] > 1);
    // The 40 new leads were sold today: too recent, and waiting.
    assert_eq!(freed["kept"]["reason"], "too_recent", "{freed}");
    assert_eq!(pull_everything(&server).await, 40);
}

fn leadrouter(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_compact_refuses_a_served_data_dir_and_compacts_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, crate::durability::toml_of(&market(7))).unwrap();
    let data = dir.path().join("data");
    let (public, ops, grpc) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}"), "--admin-token", ADMIN_TOKEN])
        .args(["--journal-segment-bytes", "4096", "--checkpoint-every-ms", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(ops).await;
    let base = format!("http://127.0.0.1:{public}");
    for n in 0..60 {
        let (status, answer) = crate::storage::post_keyed(&base, &format!("k{n}"), &lead("solar", n)).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("sold")));
    }
    // The buyer takes those leads; 30 more wait in newer segments.
    let fetch = |after: u64| async move {
        crate::storage::get(public, &format!("/v1/buyer/leads?limit=1000&after={after}"), &buyer_key("b1")).await
    };
    let next: u64 = fetch(0).await["next"].as_str().unwrap().parse().unwrap();
    assert_eq!(fetch(next).await["leads"], json!([]), "acknowledged");
    for n in 60..90 {
        let (status, answer) = crate::storage::post_keyed(&base, &format!("k{n}"), &lead("solar", n)).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("sold")));
    }
    let journal = data.join("journal");
    eventually("a checkpoint covers several segments", || {
        leadrouter::checkpoints::load(&journal).ok().flatten().is_some_and(|c| c.segment > 10)
    })
    .await;

    let second = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another leadrouter is serving"), "{second:?}");
    let (code, text) = leadrouter(&data, &["journal", "compact"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("POST /admin/v1/journal/compact"), "{text}");

    // kill -9: the kernel drops the lock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    // The billing worker has read nothing yet: that holds everything.
    std::fs::write(journal.join("consumers"), r#"{"billing": {"sequence": 0, "at": "2026-12-01T00:00:00Z"}}"#).unwrap();
    let as_of = (Utc::now() + Duration::days(401)).to_rfc3339();
    let (code, text) = leadrouter(&data, &["journal", "compact", "--as-of", &as_of]);
    assert_eq!(code, Some(0), "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["kept"]["reason"], "consumer_behind", "{report}");
    std::fs::remove_file(journal.join("consumers")).unwrap();

    let before = segment_numbers(&journal);
    let (code, text) = leadrouter(&data, &["journal", "compact", "--dry-run", "--as-of", &as_of]);
    assert_eq!(code, Some(0), "{text}");
    let dry: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(segment_numbers(&journal), before);
    let (_, text) = leadrouter(&data, &["journal", "compact", "--as-of", &as_of]);
    let done: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(done["removed_segments"], dry["removed_segments"]);
    let removed = done["removed_segments"].as_array().unwrap().len();
    assert!(removed > 2, "{done}");
    assert_eq!(segment_numbers(&journal), before[removed..]);
    let (code, text) = leadrouter(&data, &["journal", "verify"]);
    assert_eq!(code, Some(0), "{text}");

    // And it starts from what is left, with every sale charged.
    let (public, ops, grpc) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}"), "--admin-token", ADMIN_TOKEN])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(ops).await;
    let balance = crate::storage::get(public, "/v1/buyer/balance", &buyer_key("b1")).await;
    assert_eq!(balance["balance"], "99100.00");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_subscribes_past_the_newest_event_is_streamed_and_noted_at_the_newest() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap());
    let server = start_with_journal(market(30), Arc::new(clock), tempfile::tempdir().unwrap(), SMALL).await;
    sell(&server, 0, 3).await;
    let last = server.running.router.journal().clone().event_log().last_sequence();
    let request = SubscribeRequest { after_sequence: last + 5, consumer: "billing".into() };
    let stream = ledger(&server).await.subscribe(request).await;
    assert!(stream.is_ok(), "the stream opens: {:?}", stream.err());
    let consumers = server.admin("GET", "/admin/v1/ledger/consumers", None).await.json;
    assert_eq!(consumers["consumers"][0]["name"], "billing", "{consumers}");
    assert_eq!(consumers["consumers"][0]["sequence"], last, "noted at what there is: {consumers}");
    let request = SubscribeRequest { after_sequence: 0, consumer: "not a name!".into() };
    let refused = ledger(&server).await.subscribe(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}
