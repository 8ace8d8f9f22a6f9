//! Payments, overpayment, dunning over a simulated calendar, and refused input.

use serde_json::{json, Value};

use crate::harness::*;

async fn pay(worker: &Worker, number: &str, amount: &str, reference: &str) -> Answer {
    let body = json!({"amount": amount, "paid_at": "2026-11-20T10:00:00Z", "reference": reference});
    worker.post(&format!("/billing/v1/invoices/{number}/payments"), &body).await
}

fn dunned(run: &Value) -> Vec<(String, u64)> {
    run["dunned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["number"].as_str().unwrap().to_string(), d["tier"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_payments_add_up_overpayment_is_refused_and_dunning_follows_the_calendar() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    router.sell("solar", 1, "2026-11-02T09:00:00Z").await;
    router.sell("solar", 2, "2026-11-03T09:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    worker.run("2026-11-09").await;
    let number = "INV-2026-000001";
    assert_eq!(worker.document(number).await["due_date"], "2026-11-23");

    let partial = pay(&worker, number, "30.00", "wire 4711").await;
    assert_eq!(partial.status, 201, "{}", partial.text);
    assert_eq!((partial.json["amount_due"].as_str(), partial.json["status"].as_str()), (Some("50.00"), Some("open")));
    assert_eq!(
        partial.json["payments"],
        json!([{"amount": "30.00", "paid_at": "2026-11-20T10:00:00Z", "reference": "wire 4711"}])
    );
    let over = pay(&worker, number, "50.01", "wire 4712").await;
    assert_eq!((over.status, over.json["error"]["code"].as_str()), (422, Some("overpayment")), "{}", over.text);
    assert_eq!(over.json["error"]["details"][0]["field"], "amount");
    assert_eq!(worker.document(number).await["amount_due"], "50.00", "a refused payment changes nothing");
    // A reference names one payment: a retry is the first answer, another amount a conflict.
    let retried = pay(&worker, number, "30.00", "wire 4711").await;
    assert_eq!((retried.status, retried.json["amount_due"].as_str()), (201, Some("50.00")), "{}", retried.text);
    assert_eq!(retried.json["payments"].as_array().unwrap().len(), 1, "counted once");
    let reused = pay(&worker, number, "20.00", "wire 4711").await;
    assert_eq!((reused.status, reused.json["error"]["code"].as_str()), (409, Some("duplicate_reference")));
    assert_eq!(worker.document(number).await["amount_due"], "50.00");

    // The calendar: due 11-23; reminder one day after, formal notice fourteen days after.
    assert_eq!(dunned(&worker.run("2026-11-23").await), []);
    assert_eq!(worker.document(number).await["status"], "open");
    assert_eq!(dunned(&worker.run("2026-11-24").await), [(number.to_string(), 1)]);
    assert_eq!(worker.document(number).await["status"], "overdue");
    assert_eq!(dunned(&worker.run("2026-11-24").await), [], "each tier is recorded once");
    assert_eq!(dunned(&worker.run("2026-12-06").await), []);
    assert_eq!(dunned(&worker.run("2026-12-07").await), [(number.to_string(), 2)]);
    let dunning = worker.document(number).await["dunning"].clone();
    assert_eq!(dunning, json!([{"tier": 1, "date": "2026-11-24"}, {"tier": 2, "date": "2026-12-07"}]));

    let report = worker.get("/billing/v1/reports/payments?from=2026-11-01&to=2026-11-30").await.json;
    assert_eq!(report["totals"]["invoiced"], "80.00", "{report}");
    assert_eq!(report["totals"]["paid"], "30.00");
    assert_eq!(report["totals"]["overdue_tier2"], "50.00");
    assert_eq!(report["rows"][0]["key"], "inv");

    let rest = pay(&worker, number, "50.00", "wire 4713").await;
    assert_eq!((rest.json["amount_due"].as_str(), rest.json["status"].as_str()), (Some("0.00"), Some("paid")));
    assert_eq!(dunned(&worker.run("2027-01-31").await), []);
    let paid = worker.get("/billing/v1/reports/payments?from=2026-11-01&to=2026-11-30").await.json;
    assert_eq!(
        (paid["totals"]["paid"].as_str(), paid["totals"]["overdue_tier2"].as_str()),
        (Some("80.00"), Some("0.00"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dunning_tiers_are_configurable_down_to_the_due_date_itself() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    router.sell("solar", 1, "2026-11-02T09:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let tiers = ["--reminder-after-days", "0", "--notice-after-days", "3"];
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &tiers).await;
    worker.caught_up(router.head().await).await;
    worker.run("2026-11-09").await;
    let number = "INV-2026-000001";
    assert_eq!(dunned(&worker.run("2026-11-22").await), []);
    assert_eq!(dunned(&worker.run("2026-11-23").await), [(number.to_string(), 1)], "a reminder on the due date");
    assert_eq!(worker.document(number).await["status"], "open", "not overdue on the due date itself");
    assert_eq!(dunned(&worker.run("2026-11-25").await), []);
    assert_eq!(dunned(&worker.run("2026-11-26").await), [(number.to_string(), 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    router.sell("solar", 1, "2026-11-02T09:00:00Z").await;
    router.sell("roofing", 2, "2026-11-02T09:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    worker.run("2026-11-09").await;
    let payments = "/billing/v1/invoices/INV-2026-000001/payments";

    let anonymous = send("GET", &format!("{}/billing/v1/documents", worker.base), None, None).await;
    assert_eq!((anonymous.status, anonymous.json["error"]["code"].as_str()), (401, Some("unauthorized")));
    let wrong =
        send("POST", &format!("{}/billing/v1/runs", worker.base), Some("not-the-token-at-all"), Some("{}".into()))
            .await;
    assert_eq!(wrong.status, 401);
    let malformed =
        send("POST", &format!("{}{payments}", worker.base), Some(BILLING_TOKEN), Some("{\"amount\":".into())).await;
    assert_eq!((malformed.status, malformed.json["error"]["code"].as_str()), (400, Some("malformed_json")));
    let wrong_type = worker.post("/billing/v1/runs", &json!({"as_of": 20261130})).await;
    assert_eq!(wrong_type.status, 400);

    let refused = [
        (json!({"amount": "abc", "paid_at": "2026-11-20T10:00:00Z", "reference": "r"}), "amount"),
        (json!({"amount": "-5.00", "paid_at": "2026-11-20T10:00:00Z", "reference": "r"}), "amount"),
        (json!({"amount": "1.001", "paid_at": "2026-11-20T10:00:00Z", "reference": "r"}), "amount"),
        (json!({"amount": "1e3", "paid_at": "2026-11-20T10:00:00Z", "reference": "r"}), "amount"),
        (json!({"amount": "5.00", "paid_at": "yesterday", "reference": "r"}), "paid_at"),
        (json!({"amount": "5.00", "paid_at": "2026-11-20T10:00:00Z"}), "reference"),
    ];
    for (body, field) in refused {
        let answer = worker.post(payments, &body).await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.text);
        assert_eq!(answer.json["error"]["details"][0]["field"], field, "{body}");
    }
    for as_of in ["2026-13-01", "30.11.2026", "", "-262143-01-01", "+262142-12-31", "0001-01-01"] {
        let answer = worker.post("/billing/v1/runs", &json!({"as_of": as_of})).await;
        assert_eq!(
            (answer.status, answer.json["error"]["details"][0]["field"].as_str()),
            (422, Some("as_of")),
            "{as_of}"
        );
    }
    let bad_report = worker.get("/billing/v1/reports/revenue?from=2026-11-01&to=tomorrow").await;
    assert_eq!((bad_report.status, bad_report.json["error"]["details"][0]["field"].as_str()), (422, Some("to")));
    let bad_group = worker.get("/billing/v1/reports/timeseries?from=2026-11-01&to=2026-11-30&group_by=buyer").await;
    assert_eq!(bad_group.status, 422);
    assert_eq!(worker.get("/billing/v1/reports/profit?from=2026-11-01&to=2026-11-30").await.status, 404);
    assert_eq!(worker.get("/billing/v1/documents/NOPE-1").await.status, 404);
    assert_eq!(
        worker
            .post(
                "/billing/v1/invoices/INV-2026-999999/payments",
                &json!({"amount": "1.00", "paid_at": "2026-11-20T10:00:00Z", "reference": "r"})
            )
            .await
            .status,
        404
    );
    let statement = worker
        .post(
            "/billing/v1/invoices/ST-2026-000001/payments",
            &json!({"amount": "1.00", "paid_at": "2026-11-20T10:00:00Z", "reference": "r"}),
        )
        .await;
    assert_eq!(statement.status, 404, "a statement takes no payments");
    let huge = "x".repeat(100 * 1024);
    let too_large =
        worker.post(payments, &json!({"amount": "1.00", "paid_at": "2026-11-20T10:00:00Z", "reference": huge})).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(worker.get("/billing/v1/documents?kind=receipt").await.status, 422);
    // A run dated far ahead is a typo: it would issue documents and dunning for good.
    let typo = worker.post("/billing/v1/runs", &json!({"as_of": "9999-12-31"})).await;
    assert_eq!(
        (typo.status, typo.json["error"]["details"][0]["field"].as_str()),
        (422, Some("as_of")),
        "{}",
        typo.text
    );
    assert_eq!(worker.get("/billing/v1/documents?kind=invoice").await.json["documents"].as_array().unwrap().len(), 1);
    assert_eq!(worker.get("/billing/v1/documents?limit=0").await.status, 422);

    let invoice = worker.document("INV-2026-000001").await;
    assert_eq!((invoice["payments"].clone(), invoice["amount_due"].as_str()), (json!([]), Some("40.00")));
    assert_eq!(worker.reconcile().await["ok"], true);
    let open = send("GET", &format!("{}/healthz", worker.base), None, None).await;
    assert_eq!(open.status, 200, "health is open");
}
