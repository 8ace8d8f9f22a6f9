//! DESIGN §8.3: once a supplier hears `sold`, the sale is on disk, also across a restart and
//! a `kill -9`; state is rebuilt from the journal.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use leadrouter::clock::SystemClock;
use leadrouter::domain::ledger::Event;
use leadrouter::engine::ports::ledger::InternalRecord;
use leadrouter::ledger::proto::{self, ledger_stream_client::LedgerStreamClient, SubscribeRequest};
use leadrouter::store::journal::Journal;
use leadrouter::store::EventLog;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::harness::*;

fn market(sink: &MockBuyer) -> serde_json::Value {
    let mut capped = fixed_campaign("c1", "b1", "solar", "10.00", &sink.post_url());
    capped["caps"] = json!({"daily": 3});
    json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [capped],
        "topups": [topup("b1", "100.00")],
    })
}

#[tokio::test]
async fn a_restart_rebuilds_balances_caps_and_sales_from_the_journal() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    for n in 0..2 {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
    let topped = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": "5.00", "reference": "wire-7"})))
        .await;
    assert_eq!(topped.status, 201);
    let data = server.stop().await;

    let server = start_in(market(&sink), Arc::new(SystemClock), data).await;
    let replay = server.running.replay.expect("an embedded start says what it replayed");
    assert_eq!(replay.events, 0, "a clean stop checkpointed everything: nothing to replay");
    assert_eq!(replay.checkpoint_sequence, 6, "buyer, supplier, opening top-up, two sales, top-up");
    let balance = server.balance(&buyer_key("b1")).await;
    assert_eq!(balance["balance"], "85.00", "100 opening (booked once) + 5 top-up - 2 x 10 sold");
    assert_eq!(server.running.router.sales().len(), 2);
    let again = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": "5.00", "reference": "wire-7"})))
        .await;
    assert_eq!(again.status, 409, "a reference is booked once, across restarts");
    let duplicate = server.direct(&lead("solar", 1)).await;
    assert_eq!(duplicate.json["reason"], "duplicate", "dedup keys survive the restart: {}", duplicate.json);
    assert_eq!(server.direct(&lead("solar", 2)).await.json["status"], "sold");
    let capped = server.direct(&lead("solar", 3)).await;
    assert_eq!(capped.json["status"], "rejected", "the daily cap of 3 counts the sales before the restart");

    let journal = server.running.router.journal();
    let events = journal.read_after(0, 100).unwrap();
    assert!(events.windows(2).all(|w| w[1].sequence == w[0].sequence + 1), "gap-free");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e.event {
            Event::SaleSettled(_) => "sale",
            Event::BalanceToppedUp(_) => "topup",
            Event::BuyerUpdated(_) => "buyer",
            Event::SupplierUpdated(_) => "supplier",
            Event::ReturnResolved(_) => "return",
        })
        .collect();
    assert_eq!(
        kinds,
        ["buyer", "supplier", "topup", "sale", "sale", "topup", "sale"],
        "accounts are journaled once, not per start"
    );

    // A second clean stop checkpoints on top of the first; the state is whole again.
    let data = server.stop().await;
    let server = start_in(market(&sink), Arc::new(SystemClock), data).await;
    assert_eq!(server.running.replay.map(|r| (r.events, r.checkpoint_sequence)), Some((0, 7)));
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "75.00");
    assert_eq!(server.running.router.sales().len(), 3);
    assert_eq!(server.direct(&lead("solar", 4)).await.json["status"], "rejected", "the cap still counts 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_direct_posts_loses_no_sale_answered_sold() {
    let sink = mock_buyer(|_, _| accept()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config_value = market(&sink);
    config_value["campaigns"][0]["caps"] = json!({});
    config_value["topups"] = json!([topup("b1", "1000000.00")]);
    let toml = toml_of(&config_value);
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, toml).unwrap();
    let (public, ops) = (free_port(), free_port());
    let mut child = spawn_binary(&config_path, &dir.path().join("data"), public, ops, free_port());
    let base = format!("http://127.0.0.1:{public}");
    wait_ready(ops).await;

    // Eight clients post as fast as they can; the process is killed under them.
    let sold: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
    let clients = post_until_killed(&base, 8, &sold);
    eventually("50 leads are sold", || sold.lock().len() >= 50).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();
    for client in clients {
        let _ = client.await;
    }
    let answered_sold: Vec<String> = sold.lock().clone();
    assert!(answered_sold.len() > 20, "the load ran: {} sold", answered_sold.len());

    let (journal, recovery) = Journal::open(&dir.path().join("data").join("journal")).unwrap();
    let events = journal.read_after(0, usize::MAX).unwrap();
    assert_eq!(events.len() as u64, recovery.last_sequence);
    assert!(events.iter().enumerate().all(|(i, e)| e.sequence == i as u64 + 1), "gap-free after the crash");
    let mut journaled = HashSet::new();
    for event in &events {
        if let Event::SaleSettled(sale) = &event.event {
            assert!(journaled.insert(sale.lead_id.clone()), "lead {} sold twice", sale.lead_id);
        }
    }
    for lead_id in &answered_sold {
        assert!(journaled.contains(lead_id), "{lead_id} was answered sold but is not in the journal");
    }
    drop(journal);

    // And as a ledger consumer sees it: the restarted binary's gRPC stream from sequence 0.
    let (public, ops, grpc) = (free_port(), free_port(), free_port());
    let mut child = spawn_binary(&config_path, &dir.path().join("data"), public, ops, grpc);
    wait_ready(ops).await;
    let mut client = LedgerStreamClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap();
    let mut stream =
        client.subscribe(SubscribeRequest { after_sequence: 0, ..Default::default() }).await.unwrap().into_inner();
    let mut streamed_sales = HashSet::new();
    let mut sequence = 0;
    while sequence < recovery.last_sequence {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        let event = next.expect("the stream keeps up").expect("a healthy stream").expect("more events");
        assert_eq!(event.sequence, sequence + 1, "gap-free and strictly increasing on the stream");
        sequence = event.sequence;
        if let Some(proto::ledger_event::Event::SaleSettled(sale)) = event.event {
            assert!(streamed_sales.insert(sale.lead_id.clone()), "lead {} streamed twice", sale.lead_id);
        }
    }
    for lead_id in &answered_sold {
        assert!(streamed_sales.contains(lead_id), "{lead_id} was answered sold but is not on the stream");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The real binary on the given ports, with its data under `data`.
pub(crate) fn spawn_binary(
    config: &std::path::Path,
    data: &std::path::Path,
    public: u16,
    ops: u16,
    grpc: u16,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{public}"), "--ops-listen", &format!("127.0.0.1:{ops}")])
        .args(["--admin-token", ADMIN_TOKEN, "--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `workers` clients posting distinct leads directly as fast as they can, until the server
/// goes away; the lead ids answered `sold` are collected in `sold`.
fn post_until_killed(base: &str, workers: u32, sold: &Arc<parking_lot::Mutex<Vec<String>>>) -> Vec<JoinHandle<()>> {
    (0..workers)
        .map(|worker| {
            let (sold, base) = (Arc::clone(sold), base.to_string());
            tokio::spawn(async move {
                let http = client();
                for n in 0..10_000u32 {
                    let body = lead("solar", worker * 100_000 + n).to_string();
                    let request = hyper::Request::post(format!("{base}/v1/leads"))
                        .header("authorization", format!("Bearer {SUPPLIER_KEY}"))
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                        .unwrap();
                    let Ok(response) = http.request(request).await else { break };
                    let Ok(body) = http_body_util::BodyExt::collect(response.into_body()).await else { break };
                    let answer: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
                    if answer["status"] == "sold" {
                        sold.lock().push(answer["lead_id"].as_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect()
}

/// The metrics page once `leadrouter_outbox_pending` reads 0, or after 5 s (the caller
/// asserts what it expects).
pub(crate) async fn metrics_once_outbox_empty(ops: u16) -> String {
    let mut page = metrics_of(ops).await;
    for _ in 0..100 {
        if metric(&page, "leadrouter_outbox_pending", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        page = metrics_of(ops).await;
    }
    page
}

/// The `/metrics` page of a server on `ops`.
pub(crate) async fn metrics_of(ops: u16) -> String {
    let request = hyper::Request::get(format!("http://127.0.0.1:{ops}/metrics"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The config as TOML, as an operator would write it.
pub(crate) fn toml_of(config: &serde_json::Value) -> String {
    let value: toml::Value = serde_json::from_value(config.clone()).expect("config as TOML");
    toml::to_string(&value).expect("TOML text")
}

#[tokio::test]
async fn retries_after_a_restart_get_the_first_answer_and_never_a_second_sale() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let mut first = lead("solar", 1);
    first["external_id"] = json!("portal-0001");
    let answer = keyed(&server, first.clone()).await;
    assert_eq!(answer.json["status"], "sold");
    let data = server.stop().await;

    let server = start_in(market(&sink), Arc::new(SystemClock), data).await;
    let replay = keyed(&server, first.clone()).await;
    assert_eq!(replay.json, answer.json, "the same answer after the restart");
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(keyed(&server, lead("solar", 2)).await.status, 409, "same key, other body");
    let mut again = lead("solar", 3);
    again["external_id"] = json!("portal-0001");
    let duplicate = server.direct(&again).await;
    assert_eq!(duplicate.json["error"]["code"], "duplicate_external_id", "{}", duplicate.json);
    assert_eq!(sink.count("/post"), 1, "one sale, whatever the retries");
}

#[tokio::test]
async fn answers_journaled_with_their_http_status_are_still_replayed_after_an_upgrade() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let data = server.stop().await;
    // Journals written before answers were typed kept each as its HTTP status and body.
    let (sold, refused) = (lead("solar", 1).to_string(), lead("solar", 2).to_string());
    let sold_answer = "{\"lead_id\":\"lead_from_before\",\"status\":\"sold\",\"price\":\"10.00\"}\n";
    let refused_answer =
        "{\"error\":{\"code\":\"validation_failed\",\"message\":\"the request is not valid\",\"details\":[{\"field\":\"zip\",\"message\":\"unknown\"}]}}\n";
    let (journal, _) = Journal::open(&data.path().join("journal")).unwrap();
    for (key, body, status, answer) in
        [("k-sold", &sold, 200, sold_answer), ("k-refused", &refused, 422, refused_answer)]
    {
        let record = InternalRecord::Idempotency {
            supplier_id: "s1".into(),
            key: key.into(),
            body_hash: hex::encode(request_hash("/v1/leads", body.as_bytes())),
            status,
            body: answer.into(),
            created_at: chrono::Utc::now(),
        };
        journal.append_internal(record).await.unwrap();
    }
    journal.close().await;
    drop(journal);

    let server = start_in(market(&sink), Arc::new(SystemClock), data).await;
    let replay = keyed_as(&server, "k-sold", sold.clone()).await;
    assert_eq!((replay.status, &replay.raw[..]), (200, sold_answer.as_bytes()), "the first answer, byte for byte");
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    let replay = keyed_as(&server, "k-refused", refused).await;
    assert_eq!((replay.status, &replay.raw[..]), (422, refused_answer.as_bytes()));
    assert_eq!(keyed_as(&server, "k-sold", lead("solar", 3).to_string()).await.status, 409, "same key, other body");
    assert_eq!(sink.count("/post"), 0, "nothing was sold again");

    // Kept again in the typed form, they survive the next restart as well.
    let data = server.stop().await;
    let server = start_in(market(&sink), Arc::new(SystemClock), data).await;
    assert_eq!(keyed_as(&server, "k-sold", sold).await.raw, sold_answer.as_bytes());
}

/// What identifies a request under its `Idempotency-Key`: SHA-256 of its route, a NUL and its body.
fn request_hash(route: &str, body: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().into()
}

async fn keyed(server: &TestServer, body: serde_json::Value) -> Answer {
    keyed_as(server, "k-1", body.to_string()).await
}

async fn keyed_as(server: &TestServer, key: &str, body: String) -> Answer {
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let url = format!("{}/v1/leads", server.base);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", key)];
    server.send("POST", &url, &headers, body).await
}

#[tokio::test]
async fn pull_buyers_fetch_their_leads_by_cursor_also_after_a_restart() {
    let sink = mock_buyer(|_, _| accept()).await;
    let mut pull = fixed_campaign("c1", "b1", "solar", "10.00", &sink.post_url());
    pull["delivery"] = json!({"mode": "pull"});
    let config = json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1"), buyer("b2")],
        "campaigns": [pull],
        "topups": [topup("b1", "100.00")],
    });
    let server = start(config.clone()).await;
    let mut sold = Vec::new();
    for n in 0..3 {
        let answer = server.direct(&lead("solar", n)).await;
        assert_eq!(answer.json["status"], "sold", "pull is sold on assignment: {}", answer.json);
        sold.push(answer.json["lead_id"].as_str().unwrap().to_string());
    }
    let page = fetch(&server, buyer_key("b1"), "?limit=2").await;
    assert_eq!(page.status, 200, "{}", page.json);
    let leads = page.json["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 2);
    assert_eq!(leads[0]["lead_id"], sold[0].as_str());
    assert_eq!(leads[0]["lead"]["email"], "anna0@example.com", "the buyer gets the full lead");
    assert_eq!(leads[0]["price"], "10.00");
    assert_eq!(page.json["next"], "2");
    let rest = fetch(&server, buyer_key("b1"), "?after=2").await;
    assert_eq!(rest.json["leads"].as_array().unwrap().len(), 1);
    assert_eq!(rest.json["leads"][0]["lead_id"], sold[2].as_str());
    assert_eq!(fetch(&server, buyer_key("b2"), "").await.json["leads"].as_array().unwrap().len(), 0, "only its own");
    assert_eq!(fetch(&server, buyer_key("b1"), "?limit=0").await.status, 422);
    assert_eq!(fetch(&server, buyer_key("b1"), "?after=x").await.status, 422);
    assert_eq!(fetch(&server, SUPPLIER_KEY.to_string(), "").await.status, 403);
    assert_eq!(sink.count("/post"), 0, "pull leads are not pushed");

    let data = server.stop().await;
    let server = start_in(config, Arc::new(SystemClock), data).await;
    let from_zero = fetch(&server, buyer_key("b1"), "").await;
    let handed_out: Vec<&str> =
        from_zero.json["leads"].as_array().unwrap().iter().map(|l| l["lead_id"].as_str().unwrap()).collect();
    assert_eq!(handed_out, [sold[2].as_str()], "acknowledged before the restart: never handed out again");
    let after_restart = fetch(&server, buyer_key("b1"), "?after=2").await;
    assert_eq!(after_restart.json["leads"][0]["lead_id"], sold[2].as_str(), "not lost across the restart");
    assert_eq!(fetch(&server, buyer_key("b1"), "?after=3").await.json["leads"].as_array().unwrap().len(), 0);
    assert_eq!(server.direct(&lead("solar", 9)).await.json["status"], "sold");
    assert_eq!(fetch(&server, buyer_key("b1"), "?after=3").await.json["leads"][0]["cursor"], "4", "positions continue");
}

async fn fetch(server: &TestServer, key: String, query: &str) -> Answer {
    let url = format!("{}/v1/buyer/leads{query}", server.base);
    let auth = format!("Bearer {key}");
    server.send("GET", &url, &[("authorization", &auth)], "").await
}

#[tokio::test]
async fn admin_changes_outlive_a_restart_over_the_config_file() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let mut repriced = fixed_campaign("c1", "b1", "solar", "12.00", &sink.post_url());
    repriced["caps"] = json!({"daily": 3});
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/c1", Some(&repriced)).await.status, 200);
    let mut renamed = buyer("b1");
    renamed["name"] = json!("Sonnenstrom GmbH");
    assert_eq!(server.admin("PUT", "/admin/v1/buyers/b1", Some(&renamed)).await.status, 200);
    assert_eq!(
        server.admin("PUT", "/admin/v1/verticals/roofing", Some(&vertical("roofing", "bidding"))).await.status,
        201
    );
    let short_lived = fixed_campaign("c-roof", "b1", "roofing", "5.00", &sink.post_url());
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/c-roof", Some(&short_lived)).await.status, 201);
    assert_eq!(server.admin("DELETE", "/admin/v1/campaigns/c-roof", None).await.status, 204);
    let refused = server.admin("DELETE", "/admin/v1/buyers/b1", None).await;
    assert_eq!(refused.status, 409, "a refused change is not journaled either");
    let data = server.stop().await;

    let server = start_in(market(&sink), Arc::new(SystemClock), data).await;
    let c1 = server.admin("GET", "/admin/v1/campaigns/c1", None).await;
    assert_eq!(c1.json["pricing"]["price"], "12.00", "the operator's price, not the file's 10.00");
    assert_eq!(server.admin("GET", "/admin/v1/buyers/b1", None).await.json["name"], "Sonnenstrom GmbH");
    assert_eq!(server.admin("GET", "/admin/v1/verticals/roofing", None).await.status, 200);
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c-roof", None).await.status, 404, "deleted stays deleted");
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "88.00", "sold at the operator's price");
    let events = server.running.router.journal().read_after(0, 100).unwrap();
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::BuyerUpdated(b) => Some(b.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["b1", "Sonnenstrom GmbH"], "the restart does not put the file's buyer back on the ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_async_delivery_of_a_lead_answered_sold() {
    let (endpoint, healthy) = buyer_down_until_healed().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config_value = market(&endpoint);
    config_value["campaigns"][0]["caps"] = json!({});
    config_value["campaigns"][0]["delivery"] = json!({"mode": "webhook_async", "url": endpoint.post_url()});
    config_value["topups"] = json!([topup("b1", "1000000.00")]);
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, toml_of(&config_value)).unwrap();
    let data = dir.path().join("data");
    let spawn = |public: u16, ops: u16| spawn_binary(&config_path, &data, public, ops, free_port());
    let (public, ops) = (free_port(), free_port());
    let mut child = spawn(public, ops);
    wait_ready(ops).await;
    let sold: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
    let clients = post_until_killed(&format!("http://127.0.0.1:{public}"), 4, &sold);
    // Kill once the load is well under way (however slow this machine is today).
    eventually("50 leads are sold", || sold.lock().len() >= 50).await;
    // A process of its own: its gauge is exactly its outbox (the buyer refuses everything).
    let waiting = metric(&metrics_of(ops).await, "leadrouter_outbox_pending", &[]);
    assert!(waiting >= 1.0, "sold leads wait in the outbox while the buyer refuses: {waiting}");
    child.kill().unwrap();
    child.wait().unwrap();
    for client in clients {
        let _ = client.await;
    }
    let answered_sold: Vec<String> = sold.lock().clone();

    let refused_before_the_crash = endpoint.requests.lock().len();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let (public, ops) = (free_port(), free_port());
    let mut child = spawn(public, ops);
    wait_ready(ops).await;
    let delivered = || -> HashSet<String> {
        let requests = endpoint.requests.lock();
        // Only what arrived after the restart counts: before it, the endpoint answered 503.
        requests
            .iter()
            .skip(refused_before_the_crash)
            .filter_map(|(_, body)| body["lead_id"].as_str().map(str::to_string))
            .collect()
    };
    eventually("every lead answered sold reaches its buyer after the crash", || {
        let delivered = delivered();
        answered_sold.iter().all(|lead_id| delivered.contains(lead_id))
    })
    .await;
    let page = metrics_once_outbox_empty(ops).await;
    assert_eq!(metric(&page, "leadrouter_outbox_pending", &[]), 0.0, "the gauge empties with the outbox");
    let delivered =
        metric(&page, "leadrouter_deliveries_total", &[("mode", "webhook_async"), ("outcome", "delivered")]);
    assert!(delivered >= answered_sold.len() as f64, "{delivered} delivered for {} sold", answered_sold.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
