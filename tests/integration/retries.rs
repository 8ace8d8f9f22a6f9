//! Safe retries (Idempotency-Key, external_id), duplicates, bulk CSV, and metrics.

use std::sync::Arc;

use serde_json::json;

use crate::harness::*;

async fn solar(sink: &MockBuyer) -> TestServer {
    start(json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1"), buyer("b2")],
        "campaigns": [
            fixed_campaign("c1", "b1", "solar", "38.00", &sink.post_url()),
            fixed_campaign("c2", "b2", "solar", "30.00", &sink.post_url()),
        ],
        "topups": [topup("b1", "1000.00"), topup("b2", "1000.00")],
    }))
    .await
}

async fn keyed(server: &TestServer, key: &str, body: &serde_json::Value) -> Answer {
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let url = format!("{}/v1/leads", server.base);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", key)];
    server.send("POST", &url, &headers, body.to_string()).await
}

#[tokio::test]
async fn a_retried_request_gets_the_first_answer_and_never_a_second_sale() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = Arc::new(solar(&sink).await);
    let body = lead("solar", 1);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (server, body) = (Arc::clone(&server), body.clone());
        tasks.push(tokio::spawn(async move { keyed(&server, "retry-1", &body).await.json }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0]["status"], "sold");
    assert_eq!(sink.count("/post"), 1);
    let replay = keyed(&server, "retry-1", &body).await;
    assert_eq!(replay.json, answers[0]);
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    let conflict = keyed(&server, "retry-1", &lead("solar", 2)).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.json["error"]["code"], "idempotency_key_reused");
    assert_eq!(sink.count("/post"), 1);

    // A refusal is kept like a sale: the retry gets it again, marked as replayed.
    let mut unknown_zip = lead("solar", 3);
    unknown_zip["zip"] = json!("00000");
    let refused = keyed(&server, "retry-2", &unknown_zip).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    let replay = keyed(&server, "retry-2", &unknown_zip).await;
    assert_eq!((replay.status, &replay.raw), (422, &refused.raw));
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");

    // A body that cannot be read is refused before its key is looked at, and takes none:
    // the corrected request runs under the same key.
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let headers =
        [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", "retry-3")];
    let malformed = server.send("POST", &format!("{}/v1/leads", server.base), &headers, "{\"vertical\":").await;
    assert_eq!(malformed.status, 400, "{}", malformed.json);
    assert_eq!(keyed(&server, "retry-3", &lead("solar", 4)).await.json["status"], "sold");
    assert_eq!(sink.count("/post"), 2);
}

#[tokio::test]
async fn external_ids_are_unique_per_supplier_and_duplicates_do_not_resell() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = solar(&sink).await;
    let mut first = lead("solar", 1);
    first["external_id"] = json!("portal-0001");
    assert_eq!(server.direct(&first).await.json["status"], "sold");
    let again = server.direct(&first).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json["error"]["code"], "duplicate_external_id");

    // The same person again (new external id): b1 already has them, so b2 buys.
    let mut same_person = lead("solar", 1);
    same_person["external_id"] = json!("portal-0002");
    let resold = server.direct(&same_person).await;
    assert_eq!(resold.json["status"], "sold", "{}", resold.json);
    assert_eq!(resold.json["payout"], "15.00", "b2's price, b1 is filtered as a duplicate");
    let third = server.direct(&lead("solar", 1)).await;
    assert_eq!(third.json["status"], "rejected");
    assert_eq!(third.json["reason"], "duplicate");
}

#[tokio::test]
async fn bulk_csv_answers_every_row_in_order_and_bad_rows_do_not_block_good_ones() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = solar(&sink).await;
    let csv = "vertical,first_name,last_name,email,phone,zip,fields.roof_type\n\
               solar,Anna,Muster,anna@example.com,089 1000001,80331,tile\n\
               solar,Bob,Muster,not-an-email,089 1000002,80331,tile\n\
               solar,Carl,Muster,carl@example.com,089 1000003\n\
               solar,Dora,Muster,dora@example.com,089 1000004,80331,flat\n";
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let url = format!("{}/v1/leads/bulk", server.base);
    let answer = server.send("POST", &url, &[("authorization", &auth), ("content-type", "text/csv")], csv).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let results = answer.json["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let rows: Vec<(u64, &str)> = results
        .iter()
        .map(|r| {
            (r["row"].as_u64().unwrap(), r["status"].as_str().unwrap_or_else(|| r["error"]["code"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(rows, vec![(1, "sold"), (2, "validation_failed"), (3, "validation_failed"), (4, "sold")]);
    let json_body =
        server.send("POST", &url, &[("authorization", &auth), ("content-type", "application/json")], "{}").await;
    assert_eq!(json_body.status, 415);
}

#[tokio::test]
async fn metrics_move_with_traffic_and_keep_to_the_contract() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = solar(&sink).await;
    let before = server.metrics().await;
    let sold_before = metric(&before, "leadrouter_sales_total", &[("vertical", "solar")]);
    server.direct(&lead("solar", 1)).await;
    server.ping(&ping_body("solar")).await;
    let page = server.metrics().await;
    assert!(metric(&page, "leadrouter_sales_total", &[("vertical", "solar")]) >= sold_before + 1.0);
    assert!(metric(&page, "leadrouter_leads_total", &[("vertical", "solar"), ("outcome", "sold")]) >= 1.0);
    assert!(metric(&page, "leadrouter_pings_total", &[("vertical", "solar"), ("outcome", "bid")]) >= 1.0);
    assert!(
        metric(&page, "leadrouter_buyer_requests_total", &[("buyer", "b1"), ("kind", "post"), ("outcome", "accepted")])
            >= 1.0
    );
    assert!(metric(&page, "leadrouter_revenue_total", &[("currency", "EUR")]) >= 38.0);
    assert!(
        metric(&page, "leadrouter_decision_duration_seconds_count", &[("vertical", "solar"), ("model", "ping_post")])
            >= 1.0
    );
    assert!(
        metric(&page, "leadrouter_http_request_duration_seconds_count", &[("route", "/v1/leads"), ("status", "200")])
            >= 1.0
    );
    assert!(page.contains("leadrouter_buyer_available_balance{buyer=\"b1\"}"));
    assert!(page.contains("leadrouter_campaigns_active"));
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains("led_") && !line.contains("png_") && !line.contains("sal_"),
            "unbounded id in a label: {line}"
        );
        assert!(!line.contains("campaign="), "campaign ids are not labels: {line}");
    }
    promtool_check(&page);
}

/// `promtool check metrics` when promtool is installed (scripts/test.sh installs it).
pub(crate) fn promtool_check(page: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(std::env::var("CI").is_err(), "promtool must be installed in CI");
        eprintln!("promtool not installed; skipping the lint");
        return;
    };
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}
