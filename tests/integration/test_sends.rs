//! Test sends (DESIGN §5.1 `POST /admin/v1/campaigns/{id}/test`): what a campaign sends its
//! buyer, rendered with a sample or given lead, sent to a real buyer server in the test and
//! read by the campaign's rules, with secrets hidden and nothing held, sold or charged.

use serde_json::{json, Value};

use crate::buyer_formats::FormatBuyer;
use crate::buyer_pings::{market, quote_api, quote_campaign};
use crate::harness::*;

/// An XML API behind basic auth with a query key: `<ok ref="…"/>` for leads marked test.
async fn xml_api() -> FormatBuyer {
    FormatBuyer::start(|request| {
        if request.body.contains("<test>true</test>") {
            (201, "text/xml", r#"<ok ref="T-1"/>"#.into())
        } else {
            (422, "text/xml", "<error>live lead in a test</error>".into())
        }
    })
    .await
}

fn xml_campaign(url: &str) -> Value {
    let mut campaign = fixed_campaign("x", "b-x", "solar", "25.00", url);
    campaign["delivery"]["request"] = json!({
        "format": "xml",
        "fields": [{"name": "contact/email", "value": "{{ lead.email }}"}, {"name": "test", "value": "{{ test }}"},
                   {"name": "price", "value": "{{ price }}"}],
        "auth": {"type": "basic", "username": "partner", "password": "s3cr3t"},
        "headers": {"X-Source": "leadrouter"},
    });
    campaign["delivery"]["answer"] = json!({"reference": {"xml": "//ok/@ref"}, "reason": {"xml": "//error"}});
    campaign
}

async fn balance_and_held(server: &TestServer, buyer: &str) -> (Value, Value) {
    let balance = server.balance(&buyer_key(buyer)).await;
    (balance["balance"].clone(), balance["held"].clone())
}

#[tokio::test]
async fn a_test_post_is_sent_marked_read_by_the_rules_and_sells_nothing() {
    let api = xml_api().await;
    let server = start(market(vec![xml_campaign(&format!("{}/leads", api.url))])).await;
    let before = balance_and_held(&server, "b-x").await;

    let body = json!({"stage": "post", "lead": lead("solar", 7)});
    let tested = server.admin("POST", "/admin/v1/campaigns/x/test", Some(&body)).await;
    assert_eq!(tested.status, 200, "{}", tested.json);
    let request = &tested.json["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], format!("{}/leads", api.url));
    assert_eq!(request["headers"]["Authorization"], "***");
    assert_eq!(request["headers"]["X-Source"], "leadrouter");
    assert_eq!(request["headers"]["X-Leadrouter-Test"], "1");
    let shown = request["body"].as_str().unwrap();
    assert!(shown.contains("<email>anna7@example.com</email>") && shown.contains("<price>25.00</price>"), "{shown}");
    assert!(!tested.json.to_string().contains("s3cr3t"));
    assert_eq!(tested.json["response"]["status"], 201);
    assert_eq!(tested.json["response"]["body"], r#"<ok ref="T-1"/>"#);
    assert!(tested.json["response"]["duration_ms"].is_u64());
    assert_eq!(tested.json["outcome"], json!({"result": "accepted", "reference": "T-1"}));

    let received = api.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].headers["x-leadrouter-test"], "1");
    assert_eq!(received[0].headers["authorization"], "Basic cGFydG5lcjpzM2NyM3Q=", "the buyer gets the real password");
    assert_eq!(balance_and_held(&server, "b-x").await, before, "nothing held or charged");
}

#[tokio::test]
async fn send_false_renders_only_and_calls_nobody() {
    let api = xml_api().await;
    let mut campaign = xml_campaign(&format!("{}/leads", api.url));
    campaign["delivery"]["request"]["auth"] = json!({"type": "query", "name": "key", "value": "k secret/1-x"});
    let server = start(market(vec![campaign])).await;
    let tested = server.admin("POST", "/admin/v1/campaigns/x/test?send=false", Some(&json!({"stage": "post"}))).await;
    assert_eq!(tested.status, 200, "{}", tested.json);
    assert!(tested.json["request"]["body"].as_str().unwrap().contains("<test>true</test>"));
    assert_eq!(tested.json["request"]["url"], format!("{}/leads?key=***", api.url), "the query secret hidden");
    assert!(!tested.json.to_string().contains("secret"), "{}", tested.json);
    assert_eq!(tested.json["response"], Value::Null);
    assert!(api.received().is_empty(), "nothing sent");
}

#[tokio::test]
async fn a_test_ping_with_a_sample_lead_reads_the_bid_and_token() {
    let carrier = quote_api("18.25", false).await;
    let campaign = quote_campaign("q", &carrier);
    let server = start(market(vec![campaign])).await;
    let tested = server.admin("POST", "/admin/v1/campaigns/q/test", Some(&json!({"stage": "ping"}))).await;
    assert_eq!(tested.status, 200, "{}", tested.json);
    assert_eq!(tested.json["outcome"], json!({"result": "bid", "price": "18.25", "token": "Q-77"}));
    let sent = &carrier.received()[0];
    assert!(sent.body.contains("<zip>"), "rendered from the sample lead: {}", sent.body);
    assert_eq!(sent.headers["x-leadrouter-test"], "1");
    assert_eq!(balance_and_held(&server, "b-q").await.1, "0.00", "a test bid holds nothing");
}

#[tokio::test]
async fn what_cannot_be_tried_is_named() {
    let sink = FormatBuyer::start(|_| (200, "application/json", r#"{"accepted":true}"#.into())).await;
    let server = start(market(vec![fixed_campaign("f", "b-f", "solar", "10.00", &format!("{}/in", sink.url))])).await;
    let cases = [
        ("f", json!({"stage": "ping"}), 422, "stage"),
        ("f", json!({"stage": "post", "lead": {"vertical": "solar", "zip": "80331"}}), 422, "lead.first_name"),
        ("f", json!({"stage": "sideways"}), 400, ""),
        ("nope", json!({"stage": "post"}), 404, ""),
    ];
    for (campaign, body, status, field) in cases {
        let path = format!("/admin/v1/campaigns/{campaign}/test");
        let answer = server.admin("POST", &path, Some(&body)).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.json);
        if !field.is_empty() {
            let fields: Vec<&str> = answer.json["error"]["details"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|d| d["field"].as_str())
                .collect();
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
    }
    assert!(sink.received().is_empty());

    // A native campaign is tried in §5's protocol, signed.
    let tested = server.admin("POST", "/admin/v1/campaigns/f/test", Some(&json!({"stage": "post"}))).await;
    assert_eq!(tested.json["outcome"], json!({"result": "accepted"}), "{}", tested.json);
    let post: Value = serde_json::from_str(&sink.received()[0].body).unwrap();
    assert_eq!((post["price"].as_str(), post["test"].as_bool()), (Some("10.00"), Some(true)));
    assert!(sink.received()[0].headers.get("x-leadrouter-signature").is_some());
}
