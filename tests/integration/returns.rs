//! Returns (DESIGN §4): in and out of the window, with and without approval, bulk with bad
//! rows, one per sale, credits and payout reversals on the ledger, the supplier feed and
//! signed notifications, and all of it across a restart.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use leadrouter::clock::ManualClock;
use leadrouter::domain::ledger::{Event, ReturnResolved};
use serde_json::{json, Value};

use crate::harness::*;

/// solar: returns approved at once within 7 days; roofing: an operator decides, 3 days.
fn market(sink: &MockBuyer, notify: &MockBuyer) -> Value {
    let mut auto = fixed_campaign("c-auto", "b1", "solar", "40.00", &sink.post_url());
    auto["returns_require_approval"] = json!(false);
    auto["return_window_days"] = json!(7);
    let mut manual = fixed_campaign("c-manual", "b1", "roofing", "25.00", &sink.post_url());
    manual["returns_require_approval"] = json!(true);
    manual["return_window_days"] = json!(3);
    let mut b1 = buyer("b1");
    b1["notify_url"] = json!(format!("{}/buyer-notices", notify.url));
    let mut s1 = supplier("s1", SUPPLIER_KEY);
    s1["notify_url"] = json!(format!("{}/supplier-notices", notify.url));
    s1["webhook_secret"] = json!(WEBHOOK_SECRET);
    let mut roofing = vertical("roofing", "bidding");
    roofing["return_reasons"] = json!(["leak_not_real", "other"]);
    json!({
        "verticals": [vertical("solar", "bidding"), roofing],
        "suppliers": [s1, supplier("s2", OTHER_SUPPLIER_KEY)],
        "buyers": [b1, buyer("b2")],
        "campaigns": [auto, manual],
        "topups": [topup("b1", "1000.00")],
    })
}

fn start_of_test() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).single().unwrap()
}

async fn sell(server: &TestServer, vertical: &str, n: u32) -> String {
    let sold = server.direct(&lead(vertical, n)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    let sale = server.running.router.sales().all().into_iter().find(|s| s.lead_id == sold.json["lead_id"]);
    sale.expect("the sale is recorded").sale_id.clone()
}

async fn request_return(server: &TestServer, key: &str, body: &Value) -> Answer {
    server.supplier("/v1/returns", key, body).await
}

fn resolved_events(server: &TestServer) -> Vec<ReturnResolved> {
    let events = server.running.router.journal().read_after(0, 10_000).unwrap();
    events
        .into_iter()
        .filter_map(|e| match e.event {
            Event::ReturnResolved(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn returns_in_and_out_of_the_window_with_and_without_approval() {
    let sink = mock_buyer(|_, _| accept()).await;
    let notify = mock_buyer(|_, _| Reply::Status(204)).await;
    let clock = ManualClock::new(start_of_test());
    let server = start_manual(market(&sink, &notify), clock.clone()).await;
    let b1 = buyer_key("b1");
    let solar = [sell(&server, "solar", 1).await, sell(&server, "solar", 2).await];
    let roofing = [sell(&server, "roofing", 3).await, sell(&server, "roofing", 4).await];
    let sold_at = start_of_test();
    assert_eq!(server.balance(&b1).await["balance"], "870.00", "1000 - 2 x 40 - 2 x 25");

    // Immediate approval: credited at once.
    clock.advance(Duration::days(6));
    let approved =
        request_return(&server, &b1, &json!({"sale_id": solar[0], "reason": "invalid_phone", "note": "dead line"}))
            .await;
    assert_eq!(approved.status, 201, "{}", approved.json);
    assert_eq!((approved.json["status"].as_str(), approved.json["credit"].as_str()), (Some("approved"), Some("40.00")));
    assert_eq!(server.balance(&b1).await["balance"], "910.00");
    let again = request_return(&server, &b1, &json!({"sale_id": solar[0], "reason": "other"})).await;
    assert_eq!((again.status, again.json["error"]["code"].as_str()), (409, Some("already_returned")));

    // Refusals change nothing.
    let unknown_reason = request_return(&server, &b1, &json!({"sale_id": solar[1], "reason": "changed_mind"})).await;
    assert_eq!(unknown_reason.status, 422);
    assert_eq!(unknown_reason.json["error"]["details"][0]["field"], "reason");
    let roofing_code_on_solar =
        request_return(&server, &b1, &json!({"sale_id": solar[1], "reason": "leak_not_real"})).await;
    assert_eq!(roofing_code_on_solar.status, 422, "reason codes are per vertical");
    let not_yours = request_return(&server, &buyer_key("b2"), &json!({"sale_id": solar[1], "reason": "other"})).await;
    assert_eq!(not_yours.status, 404, "another buyer's sale does not exist for b2");
    let no_such = request_return(&server, &b1, &json!({"sale_id": "sal_nope", "reason": "other"})).await;
    assert_eq!(no_such.status, 404);
    let supplier_key = request_return(&server, SUPPLIER_KEY, &json!({"sale_id": solar[1], "reason": "other"})).await;
    assert_eq!(supplier_key.status, 403);
    clock.advance(Duration::days(1) + Duration::seconds(1));
    let late = request_return(&server, &b1, &json!({"sale_id": solar[1], "reason": "other"})).await;
    assert_eq!(
        (late.status, late.json["error"]["code"].as_str()),
        (422, Some("return_window_closed")),
        "{}",
        late.json
    );
    assert_eq!(server.balance(&b1).await["balance"], "910.00");

    // Approval required: roofing's 3 days are over too, so go back in time for a fresh pair.
    let late_roof = request_return(&server, &b1, &json!({"sale_id": roofing[0], "reason": "other"})).await;
    assert_eq!(late_roof.json["error"]["code"], "return_window_closed");
    clock.set(sold_at + Duration::days(2));
    let pending = request_return(&server, &b1, &json!({"sale_id": roofing[0], "reason": "leak_not_real"})).await;
    assert_eq!((pending.status, pending.json["status"].as_str()), (201, Some("pending")), "{}", pending.json);
    let to_reject = pending.json["return_id"].as_str().unwrap().to_string();
    let pending = request_return(&server, &b1, &json!({"sale_id": roofing[1], "reason": "other"})).await;
    let to_approve = pending.json["return_id"].as_str().unwrap().to_string();
    assert_eq!(server.balance(&b1).await["balance"], "910.00", "nothing credited while pending");
    let queue = server.admin("GET", "/admin/v1/returns?status=pending", None).await;
    assert_eq!(queue.json["returns"].as_array().unwrap().len(), 2, "{}", queue.json);

    let no_reason = server.admin("POST", &format!("/admin/v1/returns/{to_reject}/reject"), Some(&json!({}))).await;
    assert_eq!(no_reason.status, 422, "a rejection says why");
    let rejected = server
        .admin(
            "POST",
            &format!("/admin/v1/returns/{to_reject}/reject"),
            Some(&json!({"reason": "roof inspected, leak confirmed"})),
        )
        .await;
    assert_eq!((rejected.status, rejected.json["status"].as_str()), (200, Some("rejected")), "{}", rejected.json);
    let approve_rejected = server.admin("POST", &format!("/admin/v1/returns/{to_reject}/approve"), None).await;
    assert_eq!(approve_rejected.status, 409);
    clock.advance(Duration::days(30));
    let approved_late = server.admin("POST", &format!("/admin/v1/returns/{to_approve}/approve"), None).await;
    assert_eq!(approved_late.status, 200, "the window binds the buyer's request, not the operator");
    assert_eq!(server.balance(&b1).await["balance"], "935.00", "only the approved roofing return is credited");
    assert_eq!(server.admin("POST", "/admin/v1/returns/ret_nope/approve", None).await.status, 404);
    // The operator's decisions are in the list of changes (returns approved at once are not
    // an operator's).
    let changes = server.admin("GET", "/admin/v1/changes?limit=2", None).await.json;
    let decisions: Vec<(&str, &str, &str)> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["object"].as_str().unwrap(), c["summary"].as_str().unwrap(), c["by"].as_str().unwrap()))
        .collect();
    let (approved_object, rejected_object) = (format!("return {to_approve}"), format!("return {to_reject}"));
    assert_eq!(
        decisions,
        [
            (approved_object.as_str(), "approved", "admin-token"),
            (rejected_object.as_str(), "rejected: \"roof inspected, leak confirmed\"", "admin-token"),
        ]
    );

    // The buyer's views.
    let own = server.get(&format!("/v1/returns/{to_reject}"), &b1).await;
    assert_eq!(own.json["resolution_reason"], "roof inspected, leak confirmed");
    assert_eq!(server.get(&format!("/v1/returns/{to_reject}"), &buyer_key("b2")).await.status, 404);
    let listed = server.get("/v1/returns?status=approved", &b1).await;
    let ids: Vec<&str> =
        listed.json["returns"].as_array().unwrap().iter().map(|r| r["sale_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [solar[0].as_str(), roofing[1].as_str()]);
    let page = server.get("/v1/returns?limit=1", &b1).await;
    let next = page.json["next"].as_str().unwrap().to_string();
    let rest = server.get(&format!("/v1/returns?after={next}"), &b1).await;
    assert_eq!(
        (page.json["returns"].as_array().unwrap().len(), rest.json["returns"].as_array().unwrap().len()),
        (1, 2)
    );
    assert_eq!(server.get("/v1/returns?status=lost", &b1).await.status, 422);

    // The ledger: one ReturnResolved per decision, booked against the original sale time.
    let events = resolved_events(&server);
    assert_eq!(events.len(), 3);
    let credits: Vec<(bool, String, String)> =
        events.iter().map(|e| (e.approved, e.credit.to_string(), e.payout_reversed.to_string())).collect();
    assert_eq!(
        credits,
        [
            (true, "40.00".into(), "20.00".into()),
            (false, "0.00".into(), "0.00".into()),
            (true, "25.00".into(), "12.50".into())
        ],
        "revshare 50%: the supplier's payout is reversed with the credit"
    );
    assert!(events.iter().all(|e| e.sold_at == sold_at), "refunds are booked against the period of the sale");
    assert_eq!(events[0].requested_at, events[0].resolved_at, "approved on request");
    assert_eq!(events[2].resolved_at, sold_at + Duration::days(32), "resolved at the operator's time");

    // The supplier hears of every request and decision, signed; the buyer of decisions.
    let supplier_feed = server.get("/v1/supplier/returns", SUPPLIER_KEY).await;
    let feed = supplier_feed.json["returns"].as_array().unwrap();
    assert_eq!(feed.len(), 3, "{}", supplier_feed.json);
    assert!(feed.iter().all(|r| r.get("price").is_none() && r.get("buyer_id").is_none()), "no buyer data");
    assert_eq!(server.get("/v1/supplier/returns", OTHER_SUPPLIER_KEY).await.json["returns"], json!([]));
    eventually("notifications are delivered", || notify.requests.lock().len() == 9).await;
    let supplier_notices: Vec<(String, String)> = notify
        .bodies("/supplier-notices")
        .iter()
        .map(|n| (n["type"].as_str().unwrap().into(), n["return"]["status"].as_str().unwrap().into()))
        .collect();
    assert_eq!(supplier_notices.len(), 6, "requested + resolved for each of 3 returns: {supplier_notices:?}");
    assert_eq!(supplier_notices.iter().filter(|(t, _)| t == "return.requested").count(), 3);
    let buyer_notices = notify.bodies("/buyer-notices");
    assert_eq!(buyer_notices.len(), 3, "b1 hears of each decision, the immediate one included");
    assert!(buyer_notices.iter().all(|n| n["type"] == "return.resolved"));
    let rejection = buyer_notices.iter().find(|n| n["return"]["status"] == "rejected").expect("the rejection");
    assert_eq!(rejection["return"]["resolution_reason"], "roof inspected, leak confirmed");
    assert_eq!(notify.bad_signatures.load(std::sync::atomic::Ordering::SeqCst), 0, "every notification is signed");
    // Metrics are process-wide and other tests run alongside: at least this test's counts.
    let page = server.metrics().await;
    assert!(metric(&page, "leadrouter_returns_total", &[("status", "approved")]) >= 2.0);
    assert!(metric(&page, "leadrouter_returns_total", &[("status", "rejected")]) >= 1.0);
    assert!(metric(&page, "leadrouter_deliveries_total", &[("mode", "notification"), ("outcome", "delivered")]) >= 9.0);
}

#[tokio::test]
async fn bulk_returns_take_the_good_rows_and_report_each_bad_one() {
    let sink = mock_buyer(|_, _| accept()).await;
    let notify = mock_buyer(|_, _| Reply::Status(204)).await;
    let server = start(market(&sink, &notify)).await;
    let b1 = buyer_key("b1");
    let sales = [sell(&server, "solar", 1).await, sell(&server, "roofing", 2).await, sell(&server, "solar", 3).await];
    let csv = format!(
        "sale_id,reason,note\n{a},invalid_phone,\"line dead, twice\"\nsal_unknown,other,\n{b},changed_mind,\n{a},other,again\n{c},duplicate\n{b},leak_not_real,x\n",
        a = sales[0],
        b = sales[1],
        c = sales[2]
    );
    let auth = format!("Bearer {b1}");
    let url = format!("{}/v1/returns/bulk", server.base);
    let answer = server.send("POST", &url, &[("authorization", &auth), ("content-type", "text/csv")], csv).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let rows = answer.json["results"].as_array().unwrap();
    let outcomes: Vec<(u64, u64)> =
        rows.iter().map(|r| (r["row"].as_u64().unwrap(), r["http_status"].as_u64().unwrap())).collect();
    assert_eq!(outcomes, [(1, 201), (2, 404), (3, 422), (4, 409), (5, 422), (6, 201)], "{}", answer.json);
    assert_eq!(rows[0]["status"], "approved");
    assert_eq!(rows[0]["note"], "line dead, twice");
    assert_eq!(rows[2]["error"]["details"][0]["field"], "reason");
    assert_eq!(rows[5]["status"], "pending");
    assert_eq!(server.balance(&b1).await["balance"], "935.00", "1000 - 40 - 25 - 40 + 40 (row 1)");

    let bad_header =
        server.send("POST", &url, &[("authorization", &auth), ("content-type", "text/csv")], "sale,why\nx,y\n").await;
    assert_eq!(bad_header.status, 422);
    let not_csv =
        server.send("POST", &url, &[("authorization", &auth), ("content-type", "application/json")], "{}").await;
    assert_eq!(not_csv.status, 415);
}

#[tokio::test]
async fn a_retried_return_with_its_idempotency_key_gets_the_first_answer() {
    let sink = mock_buyer(|_, _| accept()).await;
    let notify = mock_buyer(|_, _| Reply::Status(204)).await;
    let server = start(market(&sink, &notify)).await;
    let b1 = buyer_key("b1");
    let sale = sell(&server, "solar", 1).await;
    let auth = format!("Bearer {b1}");
    let url = format!("{}/v1/returns", server.base);
    let body = json!({"sale_id": sale, "reason": "other"}).to_string();
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", "r-1")];
    let first = server.send("POST", &url, &headers, body.clone()).await;
    let retry = server.send("POST", &url, &headers, body).await;
    assert_eq!((first.status, retry.status), (201, 201));
    assert_eq!(first.json, retry.json, "the first answer again, not a 409");
    assert_eq!(retry.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(server.balance(&b1).await["balance"], "1000.00", "credited once");
}

#[tokio::test]
async fn returns_and_their_credits_survive_a_restart() {
    let sink = mock_buyer(|_, _| accept()).await;
    let notify = mock_buyer(|_, _| Reply::Status(204)).await;
    let clock = ManualClock::new(start_of_test());
    let server = start_manual(market(&sink, &notify), clock.clone()).await;
    let b1 = buyer_key("b1");
    let solar = sell(&server, "solar", 1).await;
    let roofing = [sell(&server, "roofing", 2).await, sell(&server, "roofing", 3).await];
    assert_eq!(request_return(&server, &b1, &json!({"sale_id": solar, "reason": "other"})).await.status, 201);
    let pending = request_return(&server, &b1, &json!({"sale_id": roofing[0], "reason": "other"})).await;
    let pending_id = pending.json["return_id"].as_str().unwrap().to_string();
    let feed = server.get("/v1/supplier/returns", SUPPLIER_KEY).await;
    let cursor = feed.json["next"].as_str().unwrap().to_string();
    assert_eq!(server.balance(&b1).await["balance"], "950.00", "1000 - 40 - 2 x 25 + 40");
    let data = server.stop().await;

    let server = start_in(market(&sink, &notify), Arc::new(clock.clone()), data).await;
    assert_eq!(server.balance(&b1).await["balance"], "950.00", "the credit is replayed once");
    assert_eq!(server.get(&format!("/v1/returns/{pending_id}"), &b1).await.json["status"], "pending");
    let again = request_return(&server, &b1, &json!({"sale_id": solar, "reason": "other"})).await;
    assert_eq!(again.status, 409, "one return per sale, across restarts");
    let approved = server.admin("POST", &format!("/admin/v1/returns/{pending_id}/approve"), None).await;
    assert_eq!(approved.status, 200, "{}", approved.json);
    assert_eq!(server.balance(&b1).await["balance"], "975.00");
    let later = server.get(&format!("/v1/supplier/returns?after={cursor}"), SUPPLIER_KEY).await;
    let changed: Vec<&str> =
        later.json["returns"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(changed, ["approved"], "the old cursor still works and shows only the change: {}", later.json);
    let third = request_return(&server, &b1, &json!({"sale_id": roofing[1], "reason": "other"})).await;
    assert_eq!((third.status, third.json["status"].as_str()), (201, Some("pending")));
    let data = server.stop().await;

    let server = start_in(market(&sink, &notify), Arc::new(clock), data).await;
    assert_eq!(server.balance(&b1).await["balance"], "975.00");
    assert_eq!(server.get("/v1/returns", &b1).await.json["returns"].as_array().unwrap().len(), 3);
    assert_eq!(resolved_events(&server).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_returns_and_decisions_credit_once() {
    let sink = mock_buyer(|_, _| accept()).await;
    let notify = mock_buyer(|_, _| Reply::Status(204)).await;
    let server = Arc::new(start(market(&sink, &notify)).await);
    let b1 = buyer_key("b1");
    let solar = sell(&server, "solar", 1).await;
    let roofing = sell(&server, "roofing", 2).await;
    let returns = (0..32).map(|_| {
        let (server, key, sale) = (Arc::clone(&server), b1.clone(), solar.clone());
        tokio::spawn(
            async move { request_return(&server, &key, &json!({"sale_id": sale, "reason": "other"})).await.status },
        )
    });
    let mut statuses: Vec<u16> = futures::future::join_all(returns).await.into_iter().map(Result::unwrap).collect();
    statuses.sort_unstable();
    assert_eq!((statuses[0], statuses[1], statuses[31]), (201, 409, 409), "{statuses:?}");

    let pending = request_return(&server, &b1, &json!({"sale_id": roofing, "reason": "other"})).await;
    let id = pending.json["return_id"].as_str().unwrap().to_string();
    let decisions = (0..16).map(|_| {
        let (server, path) = (Arc::clone(&server), format!("/admin/v1/returns/{id}/approve"));
        tokio::spawn(async move { server.admin("POST", &path, None).await.status })
    });
    let mut statuses: Vec<u16> = futures::future::join_all(decisions).await.into_iter().map(Result::unwrap).collect();
    statuses.sort_unstable();
    assert_eq!((statuses[0], statuses[1], statuses[15]), (200, 409, 409), "{statuses:?}");
    assert_eq!(server.balance(&b1).await["balance"], "1000.00", "each sale credited exactly once");
    assert_eq!(resolved_events(&server).len(), 2);
}

#[tokio::test]
async fn sales_past_their_window_leave_memory_and_late_returns_are_answered_from_disk() {
    let (sink, notify) = (mock_buyer(|_, _| accept()).await, mock_buyer(|_, _| accept()).await);
    let clock = ManualClock::new(start_of_test());
    let small = leadrouter::store::journal::JournalOptions { segment_bytes: 4_096 };
    let data = tempfile::tempdir().unwrap();
    let server = start_with_journal(market(&sink, &notify), Arc::new(clock.clone()), data, small).await;
    let mut sold = Vec::new();
    for n in 0..30 {
        sold.push(sell(&server, "roofing", n).await);
    }
    let fresh = sell(&server, "solar", 100).await;
    // Roofing's window is 3 days, solar's 7: after 4 days only the solar sale stays.
    clock.advance(Duration::days(4));
    server.running.router.sweep_records();
    assert_eq!(server.running.router.sales().len(), 1, "only the sale inside its window is in memory");
    for (sale_id, which) in [(&sold[0], "in a sealed segment"), (&sold[29], "in the segment being written")] {
        let late = request_return(&server, &buyer_key("b1"), &json!({"sale_id": sale_id, "reason": "other"})).await;
        assert_eq!(late.status, 422, "{which}: {}", late.json);
        assert_eq!(late.json["error"]["code"], "return_window_closed", "{which}: {}", late.json);
    }
    let foreign = request_return(&server, &buyer_key("b2"), &json!({"sale_id": sold[3], "reason": "other"})).await;
    assert_eq!(foreign.status, 404, "another buyer's sale stays unknown, also from disk");
    let unknown =
        request_return(&server, &buyer_key("b1"), &json!({"sale_id": "sal_doesnotexist000000", "reason": "other"}))
            .await;
    assert_eq!(unknown.status, 404);
    let in_window = request_return(&server, &buyer_key("b1"), &json!({"sale_id": fresh, "reason": "other"})).await;
    assert_eq!(in_window.status, 201, "{}", in_window.json);

    // After a restart the sidecars answer for the sealed segments, and memory holds only
    // what is inside its window.
    let data = server.stop().await;
    let journal_dir = data.path().join("journal");
    let sidecars = std::fs::read_dir(&journal_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sales"))
        .count();
    assert!(sidecars >= 3, "every sealed segment has a sale index: {sidecars}");
    let server = start_with_journal(market(&sink, &notify), Arc::new(clock.clone()), data, small).await;
    assert_eq!(server.running.router.sales().len(), 1);
    let late = request_return(&server, &buyer_key("b1"), &json!({"sale_id": sold[10], "reason": "other"})).await;
    assert_eq!(late.json["error"]["code"], "return_window_closed", "{}", late.json);
}
