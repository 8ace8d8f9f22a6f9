//! Async webhook delivery from the durable outbox (DESIGN §5): sold on assignment, retried
//! with backoff until a 2xx, dead-lettered after the budget, retried by an operator, and
//! still pending after a restart. The harness's retry policy is 4 attempts from 25 ms.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadrouter::clock::SystemClock;
use serde_json::{json, Value};

use crate::harness::*;

fn market(buyer_endpoint: &MockBuyer) -> Value {
    let mut campaign = fixed_campaign("c-async", "b1", "solar", "30.00", &buyer_endpoint.post_url());
    campaign["delivery"] = json!({"mode": "webhook_async", "url": buyer_endpoint.post_url(), "timeout_ms": 500});
    json!({
        "verticals": [vertical("solar", "bidding")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [campaign],
        "topups": [topup("b1", "300.00")],
    })
}

async fn deliveries(server: &TestServer, status: &str) -> Vec<Value> {
    let listed = server.admin("GET", &format!("/admin/v1/deliveries?status={status}"), None).await;
    assert_eq!(listed.status, 200, "{}", listed.json);
    listed.json["deliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_buyer_that_fails_three_times_gets_the_lead_on_the_fourth() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let endpoint = mock_buyer(move |_, _| match counted.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::Status(500),
        1 => Reply::Hang,
        2 => Reply::Json(503, json!({"accepted": false})),
        _ => Reply::Status(200),
    })
    .await;
    let server = start(market(&endpoint)).await;
    let started = Instant::now();
    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "sold on assignment, before any delivery: {}", sold.json);
    assert!(started.elapsed() < Duration::from_millis(400), "the supplier does not wait for the buyer");
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "270.00");

    eventually("the fourth attempt is accepted", || calls.load(Ordering::SeqCst) == 4).await;
    eventually("the outbox is empty", || server.running.router.deliveries().counts() == (0, 0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "no attempt after the 2xx");
    let bodies = endpoint.bodies("/post");
    let sale_id = &bodies[0]["sale_id"];
    assert!(sale_id.as_str().unwrap().starts_with("sal_"));
    assert!(bodies.iter().all(|b| &b["sale_id"] == sale_id && b["lead"]["email"] == "anna1@example.com"));
    assert_eq!(endpoint.bad_signatures.load(Ordering::SeqCst), 0, "every attempt is signed");
    assert!(deliveries(&server, "dead_letter").await.is_empty());
    let page = server.metrics().await;
    assert!(metric(&page, "leadrouter_deliveries_total", &[("mode", "webhook_async"), ("outcome", "failed")]) >= 3.0);
    assert!(
        metric(&page, "leadrouter_deliveries_total", &[("mode", "webhook_async"), ("outcome", "delivered")]) >= 1.0
    );
}

#[tokio::test]
async fn after_the_budget_a_delivery_is_dead_lettered_until_an_operator_retries_it() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let endpoint =
        mock_buyer(move |_, _| if flag.load(Ordering::SeqCst) { Reply::Status(202) } else { Reply::Status(503) }).await;
    let server = start(market(&endpoint)).await;
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");

    eventually("the delivery is dead-lettered", || server.running.router.deliveries().counts().1 == 1).await;
    let dead = deliveries(&server, "dead_letter").await;
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0]["attempts"].as_u64(), dead[0]["last_error"].as_str()), (Some(4), Some("http 503")));
    assert_eq!(dead[0]["kind"], "lead");
    assert!(dead[0].get("body").is_none(), "the admin list carries no lead data");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.count("/post"), 4, "a dead letter is not retried on its own");

    let id = dead[0]["id"].as_str().unwrap();
    healthy.store(true, Ordering::SeqCst);
    let retried = server.admin("POST", &format!("/admin/v1/deliveries/{id}/retry"), None).await;
    assert_eq!((retried.status, retried.json["status"].as_str()), (202, Some("pending")), "{}", retried.json);
    eventually("the retried delivery arrives", || endpoint.count("/post") == 5).await;
    eventually("nothing is left", || server.running.router.deliveries().counts() == (0, 0)).await;
    assert!(deliveries(&server, "dead_letter").await.is_empty());
    let again = server.admin("POST", &format!("/admin/v1/deliveries/{id}/retry"), None).await;
    assert_eq!(again.status, 404, "delivered and forgotten");
    assert_eq!(server.admin("GET", "/admin/v1/deliveries?status=lost", None).await.status, 422);
}

#[tokio::test]
async fn pending_deliveries_and_dead_letters_survive_a_restart() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let endpoint =
        mock_buyer(move |_, _| if flag.load(Ordering::SeqCst) { Reply::Status(200) } else { Reply::Status(500) }).await;
    let server = start(market(&endpoint)).await;
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");
    eventually("the first is dead-lettered", || server.running.router.deliveries().counts().1 == 1).await;
    for n in 2..5 {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
    // Stop while the three newer ones are still failing (their budget is not spent yet).
    let data = server.stop().await;
    let attempts_before = endpoint.count("/post");

    healthy.store(true, Ordering::SeqCst);
    let server = start_in(market(&endpoint), Arc::new(SystemClock), data).await;
    eventually("the pending deliveries arrive after the restart", || {
        let delivered: std::collections::HashSet<String> = endpoint
            .requests
            .lock()
            .iter()
            .skip(attempts_before)
            .map(|(_, body)| body["lead"]["email"].as_str().unwrap_or_default().to_string())
            .collect();
        (2..5).all(|n| delivered.contains(&format!("anna{n}@example.com")))
    })
    .await;
    eventually("only the dead letter is left", || server.running.router.deliveries().counts() == (0, 1)).await;
    let dead = deliveries(&server, "dead_letter").await;
    assert_eq!(dead.len(), 1, "the dead letter is still one after the restart");
    assert_eq!(dead[0]["attempts"], 4);
    let first_lead_after: usize = endpoint
        .requests
        .lock()
        .iter()
        .skip(attempts_before)
        .filter(|(_, body)| body["lead"]["email"] == "anna1@example.com")
        .count();
    assert_eq!(first_lead_after, 0, "dead letters wait for an operator, also after a restart");
    let data = server.stop().await;

    // Delivered ones stay delivered: a third start sends nothing new.
    let sent = endpoint.count("/post");
    let server = start_in(market(&endpoint), Arc::new(SystemClock), data).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.count("/post"), sent);
    assert_eq!(server.running.router.deliveries().counts(), (0, 1));
}
