//! Returns before and after invoicing, settlements taking payouts back, and the two bases
//! of the reports.

use serde_json::{json, Value};

use crate::harness::*;

fn row<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == key)
        .unwrap_or_else(|| panic!("no row {key} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_are_excluded_before_invoicing_credited_after_and_taken_back_from_the_supplier() {
    let router = Router::start(market(), "2026-10-30T08:00:00Z").await;
    let october = router.sell("solar", 1, "2026-10-30T10:00:00Z").await;
    let s1 = router.sell("solar", 2, "2026-11-02T10:00:00Z").await;
    let s2 = router.sell("solar", 3, "2026-11-03T10:00:00Z").await;
    // Returned before any invoice: the sale stays off the invoice, with a line saying why.
    let r0 = router.return_sale("inv", &october, "invalid_phone", "2026-11-03T12:00:00Z").await;

    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    let first = worker.run("2026-11-09").await;
    assert_eq!(issued(&first, "INV"), ["INV-2026-000001", "INV-2026-000002"], "one invoice per closed week: {first}");
    let october_invoice = worker.document("INV-2026-000001").await;
    assert_eq!(october_invoice["period"], json!({"from": "2026-10-26", "to": "2026-11-01"}));
    let excluded = &october_invoice["lines"][0];
    assert_eq!((excluded["kind"].as_str(), excluded["amount"].as_str()), (Some("excluded"), Some("0.00")));
    assert_eq!(
        (excluded["sale_id"].as_str(), excluded["return_id"].as_str()),
        (Some(october.as_str()), Some(r0.as_str()))
    );
    assert!(excluded["description"].as_str().unwrap().contains("invalid_phone"));
    assert_eq!((october_invoice["total"].as_str(), october_invoice["status"].as_str()), (Some("0.00"), Some("paid")));
    let invoice = worker.document("INV-2026-000002").await;
    assert_eq!(invoice["total"], "80.00");

    // Returned after invoicing: a credit note in the next run, referencing the invoice.
    let r1 = router.return_sale("inv", &s1, "no_intent", "2026-11-12T09:00:00Z").await;
    let s3 = router.sell("solar", 4, "2026-11-12T10:00:00Z").await;
    worker.caught_up(router.head().await).await;
    let second = worker.run("2026-11-16").await;
    assert_eq!(second["issued"], json!(["CN-2026-000001", "INV-2026-000003"]), "{second}");
    let note = worker.document("CN-2026-000001").await;
    assert_eq!((note["kind"].as_str(), note["refers_to"].as_str()), (Some("credit_note"), Some("INV-2026-000002")));
    assert_eq!(note["total"], "-40.00");
    assert_eq!(note["lines"].as_array().unwrap().len(), 1);
    let credit = &note["lines"][0];
    assert_eq!((credit["kind"].as_str(), credit["amount"].as_str()), (Some("return"), Some("-40.00")));
    assert_eq!((credit["sale_id"].as_str(), credit["return_id"].as_str()), (Some(s1.as_str()), Some(r1.as_str())));
    assert_eq!(credit["refers_to"], "INV-2026-000002");
    let credited = worker.document("INV-2026-000002").await;
    assert_eq!(
        (credited["total"].as_str(), credited["amount_due"].as_str()),
        (Some("80.00"), Some("40.00")),
        "{credited}"
    );
    let next = worker.document("INV-2026-000003").await;
    assert_eq!(next["lines"][0]["sale_id"], s3.as_str());

    // The settlement pays November's payouts and takes back the returned ones, each with a
    // negative line naming the sale and the period it was sold in.
    let december = worker.run("2026-12-01").await;
    let (october_number, november_number) = (issued(&first, "SS"), issued(&december, "SS"));
    assert_eq!((october_number.len(), november_number.len()), (1, 1), "October closed on 11-09, November on 12-01");
    let october_settlement = worker.document(&october_number[0]).await;
    assert_eq!(october_settlement["total"], "20.00");
    let november = worker.document(&november_number[0]).await;
    let reversals: Vec<&Value> =
        november["lines"].as_array().unwrap().iter().filter(|line| line["kind"] == "return").collect();
    assert_eq!(reversals.len(), 2);
    assert!(reversals.iter().all(|line| line["amount"] == "-20.00"));
    let of_october =
        reversals.iter().find(|line| line["sale_id"] == october.as_str()).expect("the October sale's reversal");
    assert!(of_october["description"].as_str().unwrap().contains("2026-10-01 to 2026-10-31"), "{of_october}");
    assert_eq!(of_october["refers_to"], october_number[0].as_str());
    // Payouts s1, s2, s3 (3 × 20.00) less two reversals.
    assert_eq!(november["total"], "20.00");
    let _ = s2;

    let reconciliation = worker.reconcile().await;
    assert_eq!(reconciliation["ok"], true, "{reconciliation}");
    assert_eq!(reconciliation["checked"]["returns_credited"], 2);
    assert_eq!(reconciliation["checked"]["reversals_settled"], 2);

    // Accrual books the October refund in October; booked, in November. Over both months
    // the totals agree; over November alone they differ by exactly that refund.
    let span = "from=2026-10-01&to=2026-11-30&group_by=month";
    let accrual = worker.get(&format!("/billing/v1/reports/revenue?{span}")).await.json;
    let booked = worker.get(&format!("/billing/v1/reports/revenue?{span}&basis=booked")).await.json;
    assert_eq!((accrual["basis"].as_str(), booked["basis"].as_str()), (Some("accrual"), Some("booked")));
    assert_eq!(row(&accrual, "2026-10")["net_revenue"], "0.00");
    assert_eq!(row(&booked, "2026-10")["net_revenue"], "40.00");
    assert_eq!(row(&accrual, "2026-11")["refunds"], "40.00");
    assert_eq!(row(&booked, "2026-11")["refunds"], "80.00");
    assert_eq!(accrual["totals"], booked["totals"]);
    assert_eq!(accrual["totals"]["net_revenue"], "80.00");
    assert_eq!(accrual["totals"]["payouts"], "40.00");
    assert_eq!(accrual["totals"]["margin"], "40.00");
    let november_only = "from=2026-11-01&to=2026-11-30";
    let accrual = worker.get(&format!("/billing/v1/reports/revenue?{november_only}")).await.json;
    let booked = worker.get(&format!("/billing/v1/reports/revenue?{november_only}&basis=booked")).await.json;
    assert_eq!(
        (accrual["totals"]["refunds"].as_str(), booked["totals"]["refunds"].as_str()),
        (Some("40.00"), Some("80.00"))
    );

    // Returns by reason, as JSON and CSV.
    let returns = worker.get(&format!("/billing/v1/reports/returns?{span}&group_by=reason")).await.json;
    assert_eq!(row(&returns, "invalid_phone")["returns"], 1);
    assert_eq!(row(&returns, "no_intent")["returns"], 1);
    assert_eq!(returns["totals"]["return_rate"], "0.5000");
    let csv = worker.get(&format!("/billing/v1/reports/returns?{span}&group_by=buyer&format=csv")).await;
    assert!(csv.content_type.starts_with("text/csv"));
    let mut lines = csv.text.lines();
    assert_eq!(lines.next(), Some("key,credits,rejected,return_rate,returns,sales"));
    assert_eq!(lines.next(), Some("inv,80.00,0,0.5000,2,4"));

    // Timeseries per week: leads and net revenue per lead.
    let weekly = worker.get("/billing/v1/reports/timeseries?from=2026-10-26&to=2026-11-15&group_by=week").await.json;
    assert_eq!(row(&weekly, "2026-W45")["leads"], 2);
    assert_eq!(row(&weekly, "2026-W45")["revenue_per_lead"], "20.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepaid_buyers_statements_close_on_the_routers_balance_across_a_credit_note() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    let returned = router.sell("roofing", 1, "2026-11-03T10:00:00Z").await;
    router.sell("roofing", 2, "2026-11-04T10:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    worker.run("2026-11-09").await;
    let first = worker.document("ST-2026-000001").await;
    assert_eq!((first["opening_balance"].as_str(), first["closing_balance"].as_str()), (Some("0.00"), Some("450.00")));

    let return_id = router.return_sale("pre", &returned, "duplicate", "2026-11-10T09:00:00Z").await;
    router.top_up("pre", "100.00", "wire-2", "2026-11-11T09:00:00Z").await;
    router.sell("roofing", 3, "2026-11-12T10:00:00Z").await;
    worker.caught_up(router.head().await).await;
    let run = worker.run("2026-11-16").await;
    assert_eq!(issued(&run, "CN"), ["CN-2026-000001"]);
    let note = worker.document("CN-2026-000001").await;
    assert_eq!((note["refers_to"].as_str(), note["total"].as_str()), (Some("ST-2026-000001"), Some("-25.00")));
    assert_eq!(note["lines"][0]["return_id"], return_id.as_str());
    let second = worker.document(&issued(&run, "ST")[0]).await;
    // 450.00 + the 25.00 credit, + 100.00 top-up − 25.00 sale.
    assert_eq!(
        (second["opening_balance"].as_str(), second["closing_balance"].as_str()),
        (Some("475.00"), Some("550.00"))
    );

    let answer = send("GET", &format!("{}/v1/buyer/balance", router.base), Some(&buyer_key("pre")), None).await;
    assert_eq!(answer.json["balance"], second["closing_balance"], "the statement closes on the router's balance");
    assert_eq!(worker.reconcile().await["ok"], true);
}
