//! Invoices, statements, internal buyers, settlements, reruns, CSV and HTML.

use serde_json::{json, Value};

use crate::harness::*;

fn lines_of(document: &Value) -> Vec<Value> {
    document["lines"].as_array().expect("lines").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_invoice_a_statement_and_a_settlement_each_explain_every_sale_once() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    // Week of 2026-11-02 in Berlin: three solar sales for the invoice buyer, the last at
    // 23:30 on Sunday local time; a fourth at 00:30 on Monday belongs to the next week.
    let mut week_one = Vec::new();
    for (n, when) in [(1, "2026-11-02T09:00:00Z"), (2, "2026-11-04T12:00:00Z"), (3, "2026-11-08T22:30:00Z")] {
        week_one.push(router.sell("solar", n, when).await);
    }
    let week_two = router.sell("solar", 4, "2026-11-08T23:30:00Z").await;
    let roofing = [
        router.sell("roofing", 5, "2026-11-03T10:00:00Z").await,
        router.sell("roofing", 6, "2026-11-05T10:00:00Z").await,
    ];
    let internal = router.sell("windows", 7, "2026-11-03T11:00:00Z").await;

    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;

    let first = worker.run("2026-11-09").await;
    assert_eq!(first["as_of"], "2026-11-09");
    assert_eq!(first["issued"], json!(["INV-2026-000001", "ST-2026-000001"]), "{first}");

    let invoice = worker.document("INV-2026-000001").await;
    assert_eq!(invoice["kind"], "invoice");
    assert_eq!((invoice["account_id"].as_str(), invoice["account_kind"].as_str()), (Some("inv"), Some("buyer")));
    assert_eq!(invoice["period"], json!({"from": "2026-11-02", "to": "2026-11-08"}));
    assert_eq!(
        (invoice["issue_date"].as_str(), invoice["due_date"].as_str()),
        (Some("2026-11-09"), Some("2026-11-23"))
    );
    assert_eq!((invoice["total"].as_str(), invoice["amount_due"].as_str()), (Some("120.00"), Some("120.00")));
    assert_eq!(invoice["status"], "open");
    assert_eq!(invoice["currency"], "EUR");
    let lines = lines_of(&invoice);
    let sale_ids: Vec<&str> = lines.iter().map(|line| line["sale_id"].as_str().unwrap()).collect();
    assert_eq!(sale_ids, week_one.iter().map(String::as_str).collect::<Vec<_>>(), "one line per sale, in order");
    for line in &lines {
        assert_eq!((line["kind"].as_str(), line["amount"].as_str()), (Some("sale"), Some("40.00")));
        assert_eq!((line["vertical"].as_str(), line["campaign_id"].as_str()), (Some("solar"), Some("c-solar")));
        assert!(line["lead_id"].as_str().unwrap().starts_with("led_"));
        assert!(line["sold_at"].as_str().is_some());
    }
    assert!(!sale_ids.contains(&week_two.as_str()), "Monday 00:30 in Berlin is the next week");

    let statement = worker.document("ST-2026-000001").await;
    assert_eq!((statement["kind"].as_str(), statement["account_id"].as_str()), (Some("statement"), Some("pre")));
    assert_eq!(statement["opening_balance"], "0.00");
    assert_eq!(statement["closing_balance"], "450.00");
    assert_eq!(statement["total"], "50.00");
    assert!(statement.get("due_date").is_none() && statement.get("status").is_none(), "nothing is due on a statement");
    let kinds: Vec<String> =
        lines_of(&statement).iter().map(|line| line["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["topup", "sale", "sale"]);
    let statement_sales: Vec<String> =
        lines_of(&statement).iter().filter_map(|line| line["sale_id"].as_str().map(str::to_string)).collect();
    assert_eq!(statement_sales, roofing);

    // Running again issues nothing, through the API and through the CLI on the same database.
    assert_eq!(worker.run("2026-11-09").await["issued"], json!([]));
    let (code, rerun) = cli(&["run", "--as-of", "2026-11-09"], &worker.db, &router.grpc);
    assert_eq!((code, rerun["issued"].clone()), (0, json!([])), "{rerun}");

    // The internal buyer's sale is on no document, and no document names that buyer.
    let house = worker.get("/billing/v1/documents?account=house").await;
    assert_eq!(house.json["documents"], json!([]));

    // The month closes: the next week's invoice and the supplier's settlement.
    let december = worker.run("2026-12-01").await;
    assert_eq!(december["issued"], json!(["INV-2026-000002", "SS-2026-000001"]), "{december}");
    let second = worker.document("INV-2026-000002").await;
    assert_eq!(lines_of(&second).len(), 1);
    assert_eq!(second["lines"][0]["sale_id"], week_two.as_str());
    let settlement = worker.document("SS-2026-000001").await;
    assert_eq!(
        (settlement["account_kind"].as_str(), settlement["account_id"].as_str()),
        (Some("supplier"), Some("sup"))
    );
    assert_eq!(settlement["period"], json!({"from": "2026-11-01", "to": "2026-11-30"}));
    // 50 % of 4 × 40.00 + 2 × 25.00 + 10.00: the internal sale's lead is paid for too.
    assert_eq!(settlement["total"], "110.00");
    assert_eq!(lines_of(&settlement).len(), 7);
    assert!(lines_of(&settlement).iter().any(|line| line["sale_id"] == internal.as_str()));

    let reconciliation = worker.reconcile().await;
    assert_eq!(reconciliation["ok"], true, "{reconciliation}");
    assert_eq!(reconciliation["checked"]["sales"], 7);
    assert_eq!(reconciliation["checked"]["sales_billed"], 6);
    assert_eq!(reconciliation["checked"]["sales_internal"], 1);
    let (code, printed) = cli(&["reconcile"], &worker.db, &router.grpc);
    assert_eq!((code, printed["ok"].clone()), (0, json!(true)), "{printed}");

    // Lists filter by account, kind and issue date.
    let invoices = worker.get("/billing/v1/documents?kind=invoice&account=inv").await;
    assert_eq!(invoices.json["documents"].as_array().unwrap().len(), 2);
    let november = worker.get("/billing/v1/documents?from=2026-11-01&to=2026-11-30").await;
    assert_eq!(november.json["documents"].as_array().unwrap().len(), 2);
    let paged = worker.get("/billing/v1/documents?limit=3").await;
    assert_eq!(paged.json["documents"].as_array().unwrap().len(), 3);
    let next = paged.json["next"].as_str().expect("a next page");
    let rest = worker.get(&format!("/billing/v1/documents?limit=3&after={next}")).await;
    assert_eq!(rest.json["documents"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_renders_as_csv_and_as_a_printable_page() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    let sales =
        [router.sell("solar", 1, "2026-11-02T09:00:00Z").await, router.sell("solar", 2, "2026-11-03T09:00:00Z").await];
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    worker.run("2026-11-09").await;

    let csv = worker.get("/billing/v1/documents/INV-2026-000001.csv").await;
    assert_eq!(csv.status, 200);
    assert!(csv.content_type.starts_with("text/csv"), "{}", csv.content_type);
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header[..4], ["number", "kind", "sale_id", "lead_id"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    for (row, sale) in rows.iter().zip(&sales) {
        assert_eq!((&row[0], &row[1], &row[2], &row[9]), ("INV-2026-000001", "sale", sale.as_str(), "40.00"));
    }

    let html = worker.get("/billing/v1/documents/INV-2026-000001.html").await;
    assert_eq!(html.status, 200);
    assert!(html.content_type.starts_with("text/html"));
    assert!(html.text.contains("<h1>Invoice INV-2026-000001</h1>"), "{}", html.text);
    assert!(html.text.contains("80.00 EUR") && html.text.contains(&sales[0]) && html.text.contains("2026-11-23"));

    let missing = worker.get("/billing/v1/documents/INV-2026-999999.html").await;
    assert_eq!((missing.status, missing.json["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_lists_each_discrepancy_with_its_ids_and_the_cli_exits_1() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    let tampered = router.sell("solar", 1, "2026-11-02T09:00:00Z").await;
    let unlinked = router.sell("solar", 2, "2026-11-03T09:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("billing.db");
    let mut worker = Worker::start(&db, &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;
    worker.run("2026-11-09").await;
    assert_eq!(worker.reconcile().await["ok"], true);
    worker.kill9();

    // Damage the worker's copy of the ledger behind its back: one sale's price changes and
    // another loses the mark of the document that billed it. Issued documents themselves
    // cannot be edited: the database refuses.
    let connection = rusqlite::Connection::open(&db).unwrap();
    connection.execute("UPDATE sales SET price = '41.00' WHERE sale_id = ?1", [&tampered]).unwrap();
    connection.execute("UPDATE sales SET buyer_doc = 'INV-2026-000009' WHERE sale_id = ?1", [&unlinked]).unwrap();
    let edit = connection.execute("UPDATE lines SET amount = '1.00' WHERE number = 'INV-2026-000001'", []);
    assert!(edit.unwrap_err().to_string().contains("immutable"));
    assert!(connection.execute("DELETE FROM documents WHERE number = 'INV-2026-000001'", []).is_err());
    // A top-up of the invoice buyer, as a ledger from before the router refused them holds.
    connection
        .execute(
            "INSERT INTO topups (sequence, buyer_id, amount, reference, balance_after, currency, at)
             VALUES (999999, 'inv', '50.00', 'wire-1', '50.00', 'EUR', '2026-11-04T10:00:00Z')",
            [],
        )
        .unwrap();
    drop(connection);

    // Without the ledger nothing is proven: exit 2 and ok false, with the reason.
    let (code, unread) = cli(&["reconcile"], &db, "http://127.0.0.1:1");
    assert_eq!((code, unread["ok"].clone()), (2, json!(false)), "{unread}");
    assert!(unread["error"].as_str().unwrap().contains("could not read the ledger"), "{unread}");
    let (code, unread) = cli(&["reconcile"], &db, "not a url");
    assert_eq!((code, unread["ok"].clone()), (2, json!(false)), "{unread}");
    let (code, report) = cli(&["reconcile", "--offline"], &db, "http://127.0.0.1:1");
    assert_eq!((code, report["ok"].clone()), (1, json!(false)), "{report}");
    let found: Vec<(String, Vec<String>)> = report["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].as_str().unwrap().to_string(), serde_json::from_value(d["ids"].clone()).unwrap()))
        .collect();
    assert!(
        found.contains(&("line_amount_mismatch".into(), vec!["INV-2026-000001".into(), tampered.clone()])),
        "{found:?}"
    );
    assert!(
        found.contains(&("sale_document_mismatch".into(), vec![unlinked.clone(), "INV-2026-000009".into()])),
        "{found:?}"
    );
    assert!(found.iter().any(|(kind, ids)| kind == "account_total_mismatch" && ids == &["inv", "EUR"]), "{found:?}");
    assert!(found.contains(&("topup_unplaced".into(), vec!["999999".into(), "inv".into()])), "{found:?}");
    assert!(report["discrepancies"].as_array().unwrap().iter().all(|d| !d["message"].as_str().unwrap().is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_through_the_api_and_the_cli_issue_each_document_once() {
    let router = Router::start(market(), "2026-11-02T08:00:00Z").await;
    for n in 1..=6 {
        router.sell(["solar", "roofing"][n as usize % 2], n, &format!("2026-11-{:02}T10:00:00Z", 2 + 3 * n)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;

    // The CLIs skip catching up (their ledger address refuses at once), so all six runs
    // start within milliseconds of each other.
    let clis: Vec<_> = (0..3)
        .map(|_| {
            let db = worker.db.clone();
            tokio::task::spawn_blocking(move || cli(&["run", "--as-of", "2026-12-01"], &db, "http://127.0.0.1:1"))
        })
        .collect();
    let body = json!({"as_of": "2026-12-01"});
    let apis: Vec<_> = (0..3).map(|_| worker.post("/billing/v1/runs", &body)).collect();
    let mut issued: Vec<String> = Vec::new();
    for answer in futures::future::join_all(apis).await {
        assert_eq!(answer.status, 200, "{}", answer.text);
        issued.extend(serde_json::from_value::<Vec<String>>(answer.json["issued"].clone()).unwrap());
    }
    for cli_run in clis {
        let (code, run) = cli_run.await.unwrap();
        assert_eq!(code, 0, "{run}");
        issued.extend(serde_json::from_value::<Vec<String>>(run["issued"].clone()).unwrap());
    }
    issued.sort();
    let mut unique = issued.clone();
    unique.dedup();
    assert_eq!(issued, unique, "no document issued twice");
    // Weeks 45, 46 and 47 for the invoice buyer and the prepaid buyer, and one settlement.
    assert_eq!(issued.iter().filter(|n| n.starts_with("INV-")).count(), 3, "{issued:?}");
    assert_eq!(issued.iter().filter(|n| n.starts_with("ST-")).count(), 3, "{issued:?}");
    assert_eq!(issued.iter().filter(|n| n.starts_with("SS-")).count(), 1, "{issued:?}");
    assert_eq!(worker.reconcile().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semi_monthly_buyer_in_new_york_is_billed_by_its_own_calendar() {
    let mut config = market();
    config["buyers"][0]["timezone"] = json!("America/New_York");
    config["buyers"][0]["billing"] = json!({"mode": "invoice", "interval": "semi_monthly", "payment_terms_days": 30});
    let router = Router::start(config, "2026-11-14T08:00:00Z").await;
    // 22:00 on the 15th in New York is 03:00 on the 16th in UTC: the first half.
    let first_half = router.sell("solar", 1, "2026-11-16T03:00:00Z").await;
    // 20:00 on the 30th in New York is 01:00 on 1 December in UTC: the second half.
    let second_half = router.sell("solar", 2, "2026-12-01T01:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(&dir.path().join("billing.db"), &router.grpc, &[]).await;
    worker.caught_up(router.head().await).await;

    let first = worker.run("2026-11-16").await;
    assert_eq!(issued(&first, "INV"), ["INV-2026-000001"], "{first}");
    let invoice = worker.document("INV-2026-000001").await;
    assert_eq!(invoice["period"], json!({"from": "2026-11-01", "to": "2026-11-15"}));
    assert_eq!(invoice["lines"][0]["sale_id"], first_half.as_str());
    assert_eq!(invoice["due_date"], "2026-12-16");

    assert!(issued(&worker.run("2026-11-30").await, "INV").is_empty(), "the second half ends on the 30th");
    let second = worker.run("2026-12-01").await;
    let number = &issued(&second, "INV")[0];
    let invoice = worker.document(number).await;
    assert_eq!(invoice["period"], json!({"from": "2026-11-16", "to": "2026-11-30"}));
    assert_eq!(invoice["lines"][0]["sale_id"], second_half.as_str());
    assert_eq!(worker.reconcile().await["ok"], true);
}
