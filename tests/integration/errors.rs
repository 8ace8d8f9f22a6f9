//! Bad input gets a clear 4xx and changes nothing (DESIGN §8.5); ping lifecycle conflicts.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use leadrouter::clock::ManualClock;
use serde_json::{json, Value};

use crate::harness::*;

async fn solar_market(sink: &MockBuyer) -> Value {
    json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY), supplier("s2", OTHER_SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [fixed_campaign("c1", "b1", "solar", "38.00", &sink.post_url())],
        "topups": [topup("b1", "100.00")],
    })
}

fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], code, "{}", answer.json);
    assert!(answer.json["error"]["message"].is_string());
    assert!(answer.json["error"]["details"].is_array());
}

#[tokio::test]
async fn malformed_oversized_wrong_type_and_hostile_input_get_4xx_and_change_nothing() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(solar_market(&sink).await).await;
    let url = format!("{}/v1/leads", server.base);
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let json_headers = [("authorization", auth.as_str()), ("content-type", "application/json")];

    let malformed = server.send("POST", &url, &json_headers, "{\"vertical\": \"solar\",").await;
    assert_error(&malformed, 400, "malformed_json");
    let empty = server.send("POST", &url, &json_headers, "").await;
    assert_error(&empty, 400, "malformed_json");
    let trailing = server.send("POST", &url, &json_headers, "{} {}").await;
    assert_error(&trailing, 400, "malformed_json");
    let not_object = server.send("POST", &url, &json_headers, "[1,2,3]").await;
    assert_eq!(not_object.status, 400);

    let mut wrong_type = lead("solar", 1);
    wrong_type["zip"] = json!(80331);
    let answer = server.direct(&wrong_type).await;
    assert_error(&answer, 400, "invalid_type");
    assert_eq!(answer.json["error"]["details"][0]["field"], "zip");

    let oversized = format!("{{\"vertical\":\"solar\",\"first_name\":\"{}\"}}", "x".repeat(70 * 1024));
    assert_error(&server.send("POST", &url, &json_headers, oversized).await, 413, "body_too_large");

    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    assert_eq!(server.send("POST", &url, &json_headers, nested).await.status, 400);

    let text =
        server.send("POST", &url, &[("authorization", auth.as_str()), ("content-type", "text/plain")], "{}").await;
    assert_error(&text, 415, "unsupported_media_type");

    let mut invalid = lead("solar", 1);
    invalid["email"] = json!("not-an-email");
    invalid["phone"] = json!("12");
    invalid["zip"] = json!("00000");
    let answer = server.direct(&invalid).await;
    assert_error(&answer, 422, "validation_failed");
    let fields: Vec<&str> =
        answer.json["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    for field in ["email", "phone", "zip"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }

    let mut unknown_vertical = lead("solar", 1);
    unknown_vertical["vertical"] = json!("crypto");
    assert_error(&server.direct(&unknown_vertical).await, 422, "validation_failed");

    let mut hostile = lead("solar", 1);
    hostile["first_name"] = json!("'; DROP TABLE leads; --\u{0000}\u{202e}");
    hostile["fields"] = json!({"a": {"b": {"c": [1, {"d": null}]}}});
    let answer = server.direct(&hostile).await;
    assert!(answer.status == 422 || answer.status == 400, "{} {}", answer.status, answer.json);

    let pii_ping = server.ping(&json!({"vertical": "solar", "zip": "80331", "email": "a@b.de"})).await;
    assert_error(&pii_ping, 422, "validation_failed");
    assert_eq!(pii_ping.json["error"]["details"][0]["field"], "email");

    for body in ["\u{feff}{}", "null", "\"x\"", "{\"vertical\": null}", "{\"fields\": 7}"] {
        let answer = server.send("POST", &url, &json_headers, body).await;
        assert!((400..500).contains(&answer.status), "{body}: {}", answer.status);
    }

    // Nothing above sold, held or delivered anything.
    assert_eq!(sink.count("/post"), 0);
    let balance = server.balance(&buyer_key("b1")).await;
    assert_eq!((balance["balance"].as_str(), balance["held"].as_str()), (Some("100.00"), Some("0.00")));
    assert!(server.running.router.sales().is_empty());
    // And the server still sells.
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");
}

#[tokio::test]
async fn authentication_and_routing_errors() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(solar_market(&sink).await).await;
    let url = format!("{}/v1/ping", server.base);
    let body = ping_body("solar").to_string();
    let missing = server.send("POST", &url, &[("content-type", "application/json")], body.clone()).await;
    assert_error(&missing, 401, "unauthorized");
    let unknown = server
        .send("POST", &url, &[("authorization", "Bearer nope"), ("content-type", "application/json")], body.clone())
        .await;
    assert_error(&unknown, 401, "unauthorized");
    let buyer_auth = format!("Bearer {}", buyer_key("b1"));
    let wrong_party =
        server.send("POST", &url, &[("authorization", &buyer_auth), ("content-type", "application/json")], body).await;
    assert_error(&wrong_party, 403, "forbidden");
    let supplier_auth = format!("Bearer {SUPPLIER_KEY}");
    let balance = server
        .send("GET", &format!("{}/v1/buyer/balance", server.base), &[("authorization", &supplier_auth)], "")
        .await;
    assert_error(&balance, 403, "forbidden");
    assert_error(&server.send("GET", &url, &[], "").await, 405, "method_not_allowed");
    assert_error(&server.send("GET", &format!("{}/v2/nothing", server.base), &[], "").await, 404, "not_found");
    let admin =
        server.send("GET", &format!("{}/admin/v1/buyers", server.ops), &[("authorization", "Bearer wrong")], "").await;
    assert_error(&admin, 401, "unauthorized");
}

#[tokio::test]
async fn pings_expire_are_posted_once_and_belong_to_their_supplier() {
    let sink = mock_buyer(|_, _| accept()).await;
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap());
    let server = start_manual(solar_market(&sink).await, clock.clone()).await;

    let ping = server.ping(&ping_body("solar")).await;
    assert_eq!(ping.json["status"], "bid");
    assert_eq!(ping.json["expires_at"], "2026-11-25T10:01:00.000Z");
    let ping_id = ping.json["ping_id"].as_str().unwrap().to_string();
    assert_eq!(server.balance(&buyer_key("b1")).await["held"], "38.00", "a bid holds the price");

    let other =
        server.supplier("/v1/post", OTHER_SUPPLIER_KEY, &json!({"ping_id": ping_id, "lead": lead("solar", 1)})).await;
    assert_error(&other, 404, "not_found");
    let unknown = server.post("png_doesnotexist", &lead("solar", 1)).await;
    assert_error(&unknown, 404, "not_found");
    let mut elsewhere = lead("solar", 1);
    elsewhere["zip"] = json!("20095");
    assert_error(&server.post(&ping_id, &elsewhere).await, 422, "validation_failed");

    // Bad posts changed nothing: the ping still sells, exactly once.
    let sold = server.post(&ping_id, &lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    assert_error(&server.post(&ping_id, &lead("solar", 1)).await, 409, "ping_already_posted");
    assert_eq!(sink.count("/post"), 1);

    let late = server.ping(&ping_body("solar")).await;
    assert_eq!(server.balance(&buyer_key("b1")).await["held"], "38.00");
    clock.advance(Duration::seconds(61));
    assert_error(&server.post(late.json["ping_id"].as_str().unwrap(), &lead("solar", 2)).await, 410, "ping_expired");
    clock.advance(Duration::seconds(10));
    assert_eq!(server.balance(&buyer_key("b1")).await["held"], "0.00", "expiry releases the hold");
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "62.00");
}

#[tokio::test]
async fn concurrent_posts_of_one_ping_sell_once() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = Arc::new(start(solar_market(&sink).await).await);
    let ping = server.ping(&ping_body("solar")).await;
    let ping_id = ping.json["ping_id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (server, ping_id) = (Arc::clone(&server), ping_id.clone());
        tasks.push(tokio::spawn(async move { server.post(&ping_id, &lead("solar", 1)).await.status }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(sink.count("/post"), 1);
}

#[tokio::test]
async fn a_supplier_over_its_rate_limit_gets_429() {
    let sink = mock_buyer(|_, _| accept()).await;
    let mut config = solar_market(&sink).await;
    config["suppliers"][0]["rate_limit_per_s"] = json!(1);
    let server = start(config).await;
    let statuses: Vec<u16> = futures_statuses(&server, 4).await;
    assert_eq!(&statuses[..2], &[200, 200], "a burst of two seconds' worth passes");
    assert_eq!(statuses[3], 429);
    let limited = server.ping(&ping_body("solar")).await;
    assert_error(&limited, 429, "rate_limited");
}

async fn futures_statuses(server: &TestServer, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(server.ping(&ping_body("solar")).await.status);
    }
    statuses
}

/// What both listeners' HTTP layers add around the routes: request ids, JSON 404 and 405
/// answers on the ops listener too, trailing slashes, percent-decoded queries, gzip when
/// asked for.
#[tokio::test]
async fn the_http_layers_add_request_ids_trim_slashes_decode_queries_and_compress_when_asked() {
    let sink = mock_buyer(|_, _| accept()).await;
    let mut market = solar_market(&sink).await;
    let campaigns: Vec<Value> =
        (0..10).map(|i| fixed_campaign(&format!("c{i}"), "b1", "solar", "38.00", &sink.post_url())).collect();
    market["campaigns"] = json!(campaigns);
    let server = start(market).await;
    let buyer_auth = format!("Bearer {}", buyer_key("b1"));
    let admin_auth = format!("Bearer {ADMIN_TOKEN}");

    let balance =
        server.send("GET", &format!("{}/v1/buyer/balance/", server.base), &[("authorization", &buyer_auth)], "").await;
    assert_eq!(balance.status, 200, "a trailing slash names the same resource: {}", balance.json);
    let first = balance.headers["x-request-id"].to_str().unwrap().to_string();
    let again =
        server.send("GET", &format!("{}/v1/buyer/balance", server.base), &[("authorization", &buyer_auth)], "").await;
    let second = again.headers["x-request-id"].to_str().unwrap();
    assert!(!first.is_empty() && first != second, "each answer has its own id: {first} {second}");
    let own = server
        .send(
            "GET",
            &format!("{}/v1/buyer/balance", server.base),
            &[("authorization", &buyer_auth), ("x-request-id", "trace-42")],
            "",
        )
        .await;
    assert_eq!(own.headers["x-request-id"], "trace-42", "a client's own id is kept");
    let refused = server.send("GET", &format!("{}/v1/buyer/balance", server.base), &[], "").await;
    assert_error(&refused, 401, "unauthorized");
    assert!(refused.headers.contains_key("x-request-id"), "refusals have ids too");

    let returns = format!("{}/v1/returns?limit=%31%30&status=%70ending", server.base);
    let decoded = server.send("GET", &returns, &[("authorization", &buyer_auth)], "").await;
    assert_eq!(decoded.status, 200, "percent-encoded names and values are decoded: {}", decoded.json);
    let typo =
        server.send("GET", &format!("{}/v1/returns?limt=10", server.base), &[("authorization", &buyer_auth)], "").await;
    assert_error(&typo, 422, "validation_failed");
    assert_eq!(typo.json["error"]["details"][0]["field"], "limt");

    let unknown = server.send("GET", &format!("{}/admin/v1/nothing", server.ops), &[], "").await;
    assert_error(&unknown, 401, "unauthorized");
    let unknown =
        server.send("GET", &format!("{}/admin/v1/nothing", server.ops), &[("authorization", &admin_auth)], "").await;
    assert_error(&unknown, 404, "not_found");
    let wrong_method = server
        .send("POST", &format!("{}/admin/v1/buyers/b1", server.ops), &[("authorization", &admin_auth)], "{}")
        .await;
    assert_error(&wrong_method, 405, "method_not_allowed");
    assert_error(&server.send("DELETE", &format!("{}/healthz", server.ops), &[], "").await, 405, "method_not_allowed");

    let campaigns = format!("{}/admin/v1/campaigns", server.ops);
    let plain = server.send("GET", &campaigns, &[("authorization", &admin_auth)], "").await;
    assert!(plain.raw.len() > 1024, "big enough to compress: {} bytes", plain.raw.len());
    assert!(!plain.headers.contains_key("content-encoding"), "not compressed unless asked");
    let gzipped =
        server.send("GET", &campaigns, &[("authorization", &admin_auth), ("accept-encoding", "gzip")], "").await;
    assert_eq!(gzipped.headers["content-encoding"], "gzip");
    assert!(gzipped.raw.len() < plain.raw.len());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzipped.raw[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain.raw, "the same answer, compressed");
}
