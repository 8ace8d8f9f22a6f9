//! Test harness: the real router in-process (on ephemeral ports, with a clock the test
//! sets, so sales land on chosen dates), the real `leadrouter-billing` binary following
//! its gRPC ledger, and plain HTTP clients for both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use leadrouter::clock::ManualClock;
use leadrouter::server::{self, FileConfig, RunningServer, ServerOptions};
use leadrouter_billing::consume::proto::ledger_stream_client::LedgerStreamClient;
use leadrouter_billing::consume::proto::SubscribeRequest;
use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "router-admin-token-0123456789";
pub const BILLING_TOKEN: &str = "billing-admin-token-0123456789";
pub const SUPPLIER_KEY: &str = "supplier-key-aaaaaaaaaaaa";
pub const WORKER: &str = env!("CARGO_BIN_EXE_leadrouter-billing");

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub content_type: String,
}

pub async fn send(method: &str, url: &str, token: Option<&str>, body: Option<String>) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
    let response = client().request(request).await.expect("request");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let raw = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer { status, json, text, content_type }
}

// ------------------------------------------------------------------------ the router

pub struct Router {
    pub running: RunningServer,
    pub clock: ManualClock,
    /// Kept so the router's data dir lives as long as the router.
    _data: tempfile::TempDir,
    pub base: String,
    pub ops: String,
    pub grpc: String,
}

/// A lead that passes validation; `n` keeps leads apart for dedup.
pub fn lead(vertical: &str, n: u32) -> Value {
    json!({
        "vertical": vertical, "first_name": "Anna", "last_name": "Muster",
        "email": format!("anna{n}@example.com"), "phone": format!("089 {:07}", 1_000_000 + n),
        "zip": "80331", "country": "DE"
    })
}

pub fn buyer_key(id: &str) -> String {
    format!("buyer-key-{id}-xxxxxxxx")
}

/// Three buyers, one per vertical so each lead goes where the test wants it:
/// `inv` (invoice, weekly, 14 days) buys `solar` at 40.00, `pre` (prepaid, weekly) buys
/// `roofing` at 25.00, `house` (internal) buys `windows` at 10.00. One supplier, 50 %.
pub fn market() -> Value {
    let buyer = |id: &str, billing: Value| {
        json!({
            "id": id, "name": format!("Buyer {id}"), "email": format!("{id}@buyers.example"),
            "api_key": buyer_key(id), "webhook_secret": "webhook-secret-0123456789",
            "currency": "EUR", "timezone": "Europe/Berlin", "billing": billing
        })
    };
    let campaign = |id: &str, buyer: &str, vertical: &str, price: &str| {
        json!({
            "id": id, "buyer_id": buyer, "vertical": vertical,
            "pricing": {"type": "fixed", "price": price},
            "filters": {"countries": ["DE"]},
            "delivery": {"mode": "pull"},
            "return_window_days": 30, "returns_require_approval": false
        })
    };
    let vertical = |name: &str| json!({"name": name, "model": "bidding", "tmax_ms": 1500, "default_country": "DE"});
    json!({
        "verticals": [vertical("solar"), vertical("roofing"), vertical("windows")],
        "suppliers": [{
            "id": "sup", "name": "Supplier", "email": "sup@suppliers.example", "api_key": SUPPLIER_KEY,
            "payout": {"type": "revshare", "percent": "50"}, "billing": {"interval": "monthly", "timezone": "Europe/Berlin"}
        }],
        "buyers": [
            buyer("inv", json!({"mode": "invoice", "interval": "weekly", "payment_terms_days": 14})),
            buyer("pre", json!({"mode": "prepaid", "interval": "weekly"})),
            buyer("house", json!({"mode": "internal"})),
        ],
        "campaigns": [
            campaign("c-solar", "inv", "solar", "40.00"),
            campaign("c-roofing", "pre", "roofing", "25.00"),
            campaign("c-windows", "house", "windows", "10.00"),
        ],
        "topups": [{"buyer_id": "pre", "amount": "500.00", "reference": "opening-pre"}],
    })
}

pub fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("test timestamp")
}

impl Router {
    pub async fn start(config: Value, now: &str) -> Router {
        let clock = ManualClock::new(at(now));
        let data = tempfile::tempdir().expect("router data dir");
        let config: FileConfig = serde_json::from_value(config).expect("test config");
        let options = ServerOptions::ephemeral(data.path().to_path_buf(), config, Arc::new(clock.clone()), ADMIN_TOKEN);
        let running = server::start(options).await.expect("router starts");
        Router {
            base: format!("http://{}", running.public_addr),
            ops: format!("http://{}", running.ops_addr),
            grpc: format!("http://{}", running.grpc_addr),
            running,
            clock,
            _data: data,
        }
    }

    pub fn set_time(&self, now: &str) {
        self.clock.set(at(now));
    }

    /// Sells one lead at `now`; answers the sale id.
    pub async fn sell(&self, vertical: &str, n: u32, now: &str) -> String {
        self.set_time(now);
        let answer =
            send("POST", &format!("{}/v1/leads", self.base), Some(SUPPLIER_KEY), Some(lead(vertical, n).to_string()))
                .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.json["status"], "sold", "{}", answer.text);
        let lead_id = answer.json["lead_id"].as_str().expect("lead id").to_string();
        self.sale_of(&lead_id).await
    }

    /// The sale id of a sold lead, from the router's sales.
    async fn sale_of(&self, lead_id: &str) -> String {
        let sale = self.running.router.sales().all().into_iter().find(|sale| sale.lead_id == lead_id);
        sale.unwrap_or_else(|| panic!("lead {lead_id} has no sale")).sale_id.clone()
    }

    /// A buyer returns a sale at `now` (approved at once by the test market).
    pub async fn return_sale(&self, buyer: &str, sale_id: &str, reason: &str, now: &str) -> String {
        self.set_time(now);
        let body = json!({"sale_id": sale_id, "reason": reason}).to_string();
        let answer = send("POST", &format!("{}/v1/returns", self.base), Some(&buyer_key(buyer)), Some(body)).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.json["return_id"].as_str().expect("return id").to_string()
    }

    pub async fn top_up(&self, buyer: &str, amount: &str, reference: &str, now: &str) {
        self.set_time(now);
        let body = json!({"amount": amount, "reference": reference}).to_string();
        let answer =
            send("POST", &format!("{}/admin/v1/buyers/{buyer}/topups", self.ops), Some(ADMIN_TOKEN), Some(body)).await;
        assert!(answer.status < 300, "{}", answer.text);
    }

    /// The router's last ledger sequence, read from its gRPC stream.
    pub async fn head(&self) -> u64 {
        let mut client = LedgerStreamClient::connect(self.grpc.clone()).await.expect("ledger connects");
        let mut stream = client
            .subscribe(SubscribeRequest { after_sequence: 0, ..Default::default() })
            .await
            .expect("subscribe")
            .into_inner();
        let mut head = 0;
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
            head = event.expect("ledger event").sequence;
        }
        head
    }
}

// ------------------------------------------------------------------------ the worker

/// A free loopback port (a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Worker {
    pub child: Child,
    pub base: String,
    pub db: PathBuf,
}

impl Worker {
    /// Starts `leadrouter-billing serve` on `db`, following `ledger`; waits for /healthz.
    pub async fn start(db: &Path, ledger: &str, extra: &[&str]) -> Worker {
        let port = free_port();
        let child = Command::new(WORKER)
            .args(["serve", "--db"])
            .arg(db)
            .args(["--ledger", ledger, "--listen", &format!("127.0.0.1:{port}"), "--admin-token", BILLING_TOKEN])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("worker starts");
        let worker = Worker { child, base: format!("http://127.0.0.1:{port}"), db: db.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let request = Request::get(format!("{}/healthz", worker.base)).body(Full::new(Bytes::new())).unwrap();
            if matches!(client().request(request).await, Ok(r) if r.status() == 200) {
                return worker;
            }
            assert!(Instant::now() < deadline, "the worker did not come up");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        send("GET", &format!("{}{path}", self.base), Some(BILLING_TOKEN), None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        send("POST", &format!("{}{path}", self.base), Some(BILLING_TOKEN), Some(body.to_string())).await
    }

    /// `leadrouter_billing_ledger_applied_sequence` from /metrics.
    pub async fn applied(&self) -> u64 {
        let page = send("GET", &format!("{}/metrics", self.base), None, None).await.text;
        metric(&page, "leadrouter_billing_ledger_applied_sequence") as u64
    }

    /// Waits (at most 30 s) until the worker has applied `sequence`.
    pub async fn caught_up(&self, sequence: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.applied().await < sequence {
            assert!(Instant::now() < deadline, "the worker did not catch up to {sequence}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs billing on `as_of` through the API.
    pub async fn run(&self, as_of: &str) -> Value {
        let answer = self.post("/billing/v1/runs", &json!({"as_of": as_of})).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json
    }

    pub async fn document(&self, number: &str) -> Value {
        let answer = self.get(&format!("/billing/v1/documents/{number}")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json
    }

    pub async fn reconcile(&self) -> Value {
        let answer = self.get("/billing/v1/reconciliation").await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the CLI (`run`, `reconcile`) on a database; answers exit code and stdout JSON.
pub fn cli(args: &[&str], db: &Path, ledger: &str) -> (i32, Value) {
    let output = Command::new(WORKER)
        .args(args)
        .arg("--db")
        .arg(db)
        .args(["--ledger", ledger])
        .env("RUST_LOG", "warn")
        .output()
        .expect("worker CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("CLI printed no JSON: {stdout} / {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap_or(-1), json)
}

pub fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The numbers a run issued, of one kind prefix (`INV`, `ST`, `CN`, `SS`).
pub fn issued(run: &Value, prefix: &str) -> Vec<String> {
    run["issued"]
        .as_array()
        .expect("issued")
        .iter()
        .filter_map(Value::as_str)
        .filter(|number| number.starts_with(prefix))
        .map(str::to_string)
        .collect()
}
