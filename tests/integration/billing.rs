//! The real router binary and the real billing worker binary together, on the system clock:
//! a lead sold over HTTP reaches the worker over gRPC, lands on an invoice and a supplier
//! settlement, and reconciles; the worker's metrics pass `promtool check metrics`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{Days, NaiveDate};
use serde_json::{json, Value};

use crate::durability::{spawn_binary, toml_of};
use crate::harness::*;
use crate::retries::promtool_check;

const BILLING_TOKEN: &str = "billing-token-0123456789abcdef";

/// The worker binary beside the router's in the target dir. `cargo test --workspace` (what
/// scripts/test.sh runs) builds it, because the billing crate has integration tests.
fn worker_binary() -> PathBuf {
    let router = PathBuf::from(env!("CARGO_BIN_EXE_leadrouter"));
    let worker = router.with_file_name(format!("leadrouter-billing{}", std::env::consts::EXE_SUFFIX));
    assert!(worker.exists(), "{} is missing: build the workspace (cargo build --workspace) first", worker.display());
    worker
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value, String) {
    let mut request =
        hyper::Request::builder().method(method).uri(url).header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = client().request(request.body(http_body_util::Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let raw = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&raw).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_on_the_real_router_is_invoiced_settled_and_reconciled_by_the_real_worker() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "verticals": [vertical("solar", "bidding")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [{
            "id": "b1", "name": "Buyer One", "email": "b1@buyers.example", "api_key": buyer_key("b1"),
            "webhook_secret": WEBHOOK_SECRET, "currency": "EUR", "timezone": "UTC",
            "billing": {"mode": "invoice", "interval": "weekly", "payment_terms_days": 10}
        }],
        "campaigns": [{
            "id": "c1", "buyer_id": "b1", "vertical": "solar", "pricing": {"type": "fixed", "price": "38.50"},
            "filters": {"countries": ["DE"]}, "delivery": {"mode": "pull"}
        }],
    });
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, toml_of(&config)).unwrap();
    let (public, ops, grpc) = (free_port(), free_port(), free_port());
    let _router = Killed(spawn_binary(&config_path, &dir.path().join("data"), public, ops, grpc));
    wait_ready(ops).await;

    let sold = call("POST", &format!("http://127.0.0.1:{public}/v1/leads"), SUPPLIER_KEY, Some(lead("solar", 1))).await;
    assert_eq!(sold.1["status"], "sold", "{}", sold.2);

    let ledger = format!("http://127.0.0.1:{grpc}");
    let db = dir.path().join("billing").join("billing.db");
    let port = free_port();
    let _worker = Killed(
        Command::new(worker_binary())
            .args(["--db", db.to_str().unwrap(), "--ledger", &ledger, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-token", BILLING_TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    // The router's ledger: two account events, then the sale.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let request =
            hyper::Request::get(format!("{base}/metrics")).body(http_body_util::Full::new(Bytes::new())).unwrap();
        let page = match client().request(request).await {
            Ok(response) => {
                let raw = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
                String::from_utf8_lossy(&raw).into_owned()
            }
            Err(_) => String::new(), // not listening yet
        };
        if metric(&page, "leadrouter_billing_ledger_applied_sequence", &[]) >= 3.0 {
            assert_eq!(metric(&page, "leadrouter_billing_ledger_lag", &[]), 0.0);
            promtool_check(&page);
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not apply the sale: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The worker registered with the router, so retention keeps what it has not applied.
    let consumers_url = format!("http://127.0.0.1:{ops}/admin/v1/ledger/consumers");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, consumers, text) = call("GET", &consumers_url, ADMIN_TOKEN, None).await;
        assert_eq!(status, 200, "{text}");
        let billing = consumers["consumers"].as_array().unwrap().iter().find(|c| c["name"] == "billing").cloned();
        if billing.as_ref().is_some_and(|c| c["sequence"].as_u64() >= Some(3)) {
            assert_eq!(consumers["first_retained_sequence"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "the worker never acknowledged what it applied: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Whenever this runs, 40 days after today every period of the sale has closed.
    let (_, document_list, _) = call("GET", &format!("{base}/billing/v1/documents"), BILLING_TOKEN, None).await;
    assert_eq!(document_list["documents"], json!([]));
    let today = chrono::Utc::now().date_naive();
    let as_of: NaiveDate = today.checked_add_days(Days::new(40)).unwrap();
    let (status, run, text) =
        call("POST", &format!("{base}/billing/v1/runs"), BILLING_TOKEN, Some(json!({"as_of": as_of.to_string()})))
            .await;
    assert_eq!(status, 200, "{text}");
    let issued: Vec<String> = serde_json::from_value(run["issued"].clone()).unwrap();
    let year = as_of.format("%Y");
    assert_eq!(issued, [format!("INV-{year}-000001"), format!("SS-{year}-000001")], "{run}");
    let (_, invoice, _) = call("GET", &format!("{base}/billing/v1/documents/{}", issued[0]), BILLING_TOKEN, None).await;
    assert_eq!((invoice["total"].as_str(), invoice["lines"].as_array().map(Vec::len)), (Some("38.50"), Some(1)));
    assert_eq!(invoice["due_date"], as_of.checked_add_days(Days::new(10)).unwrap().to_string());

    let output = Command::new(worker_binary())
        .args(["reconcile", "--db", db.to_str().unwrap(), "--ledger", &ledger])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((output.status.code(), report["ok"].clone()), (Some(0), json!(true)), "{report}");
}
