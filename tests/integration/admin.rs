//! The admin API: configuration objects, top-ups, traces; changes apply at once and never
//! disturb an auction in flight.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

fn empty_market() -> serde_json::Value {
    json!({"verticals": [vertical("solar", "ping_post")], "suppliers": [supplier("s1", SUPPLIER_KEY)]})
}

#[tokio::test]
async fn objects_are_created_read_listed_validated_and_deleted() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(empty_market()).await;
    assert_eq!(server.direct(&lead("solar", 1)).await.json["reason"], "no_eligible_buyer");

    let created = server.admin("PUT", "/admin/v1/buyers/b1", Some(&buyer("b1"))).await;
    assert_eq!(created.status, 201, "{}", created.json);
    assert_eq!(server.admin("PUT", "/admin/v1/buyers/b1", Some(&buyer("b1"))).await.status, 200);
    let topped = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": "100.00", "reference": "wire-1"})))
        .await;
    assert_eq!(topped.status, 201, "{}", topped.json);
    assert_eq!(topped.json["available"], "100.00");
    let again = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": "100.00", "reference": "wire-1"})))
        .await;
    assert_eq!(again.status, 409, "a reference is booked once");
    let float = server
        .admin("POST", "/admin/v1/buyers/b1/topups", Some(&json!({"amount": 100.5, "reference": "wire-2"})))
        .await;
    assert_eq!(float.status, 400, "money is never a float: {}", float.json);

    let mut campaign = fixed_campaign("c1", "b1", "solar", "38.00", &sink.post_url());
    let put = server.admin("PUT", "/admin/v1/campaigns/c1", Some(&campaign)).await;
    assert_eq!(put.status, 201, "{}", put.json);
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold", "the change applies at once");

    campaign["pricing"]["price"] = json!("-1.00");
    campaign["filters"]["radius"] = json!({"zip": "99999", "km": 40});
    let invalid = server.admin("PUT", "/admin/v1/campaigns/c1", Some(&campaign)).await;
    assert_eq!(invalid.status, 422, "{}", invalid.json);
    assert_eq!(invalid.json["error"]["details"][0]["field"], "pricing.price");
    let orphan = server
        .admin(
            "PUT",
            "/admin/v1/campaigns/c2",
            Some(&fixed_campaign("c2", "nobody", "solar", "1.00", &sink.post_url())),
        )
        .await;
    assert_eq!(orphan.status, 422);
    assert_eq!(orphan.json["error"]["details"][0]["field"], "buyer_id");
    let mismatch = server
        .admin("PUT", "/admin/v1/campaigns/c3", Some(&fixed_campaign("c4", "b1", "solar", "1.00", &sink.post_url())))
        .await;
    assert_eq!(mismatch.status, 422);

    let got = server.admin("GET", "/admin/v1/campaigns/c1", None).await;
    assert_eq!(got.json["pricing"]["price"], "38.00", "the invalid PUT changed nothing");
    let listed = server.admin("GET", "/admin/v1/campaigns", None).await;
    assert_eq!(listed.json["campaigns"].as_array().unwrap().len(), 1);
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/nope", None).await.status, 404);
    assert_eq!(server.admin("DELETE", "/admin/v1/buyers/b1", None).await.status, 409, "campaigns first");
    assert_eq!(server.admin("DELETE", "/admin/v1/campaigns/c1", None).await.status, 204);
    assert_eq!(server.admin("DELETE", "/admin/v1/buyers/b1", None).await.status, 204);
    assert_eq!(server.admin("GET", "/admin/v1/buyers/b1", None).await.status, 404);
    assert_eq!(server.direct(&lead("solar", 2)).await.json["reason"], "no_eligible_buyer");
}

#[tokio::test]
async fn a_change_never_disturbs_an_auction_in_flight() {
    let slow = mock_buyer(|path, _| {
        if path == "/ping" {
            Reply::After(Duration::from_millis(100), Box::new(bid("42.00")))
        } else {
            accept()
        }
    })
    .await;
    let mut config = empty_market();
    config["buyers"] = json!([buyer("b1")]);
    config["campaigns"] = json!([dynamic_campaign("c1", "b1", "solar", &slow)]);
    config["topups"] = json!([topup("b1", "100.00")]);
    let server = Arc::new(start(config).await);
    let in_flight = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.ping(&ping_body("solar")).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut paused = dynamic_campaign("c1", "b1", "solar", &slow);
    paused["active"] = json!(false);
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/c1", Some(&paused)).await.status, 200);
    let ping = in_flight.await.unwrap();
    assert_eq!(ping.json["status"], "bid", "the auction finished on its own snapshot: {}", ping.json);
    let next = server.ping(&ping_body("solar")).await;
    assert_eq!(next.json["status"], "no_bid", "new auctions see the change");
}

#[tokio::test]
async fn traces_list_every_campaign_considered_with_its_reason() {
    let sink = mock_buyer(|_, _| accept()).await;
    let mut freising = fixed_campaign("c-freising", "b1", "solar", "55.00", &sink.post_url());
    freising["filters"]["radius"] = json!({"lat": 48.22, "lon": 11.70, "km": 3});
    let mut far = fixed_campaign("c-far", "b1", "solar", "50.00", &sink.post_url());
    far["filters"]["radius"] = json!({"zip": "20095", "km": 40});
    let mut closed = fixed_campaign("c-closed", "b1", "solar", "60.00", &sink.post_url());
    closed["schedule"] = json!({});
    let near = fixed_campaign("c-near", "b1", "solar", "30.00", &sink.post_url());
    let mut config = empty_market();
    config["buyers"] = json!([buyer("b1")]);
    config["campaigns"] = json!([freising, far, closed, near]);
    config["topups"] = json!([topup("b1", "100.00")]);
    let server = start(config).await;
    let sold = server.direct(&lead("solar", 1)).await;
    let trace = server.trace("leads", sold.json["lead_id"].as_str().unwrap()).await;
    let entries = trace["entries"].as_array().unwrap();
    let reason = |id: &str| {
        entries.iter().find(|e| e["campaign_id"] == id).map(|e| e["reason"].as_str().unwrap_or("").to_string())
    };
    assert!(reason("c-freising").unwrap().starts_with("radius"), "{trace}");
    assert!(reason("c-far").is_none(), "Hamburg is outside the lead's area: the index never considers it");
    assert_eq!(trace["outside_area"], 1, "{trace}");
    assert_eq!(reason("c-closed").unwrap(), "schedule_closed");
    assert!(entries.iter().any(|e| e["campaign_id"] == "c-near" && e["outcome"] == "sold"), "{trace}");
    assert_eq!(trace["status"], "sold");
    assert_eq!(server.admin("GET", "/admin/v1/pings/nope/trace", None).await.status, 404);
}
