//! Buyer-format pings and the calls around them (DESIGN §5.1): a dynamic campaign's ping in
//! the buyer's own format with a token carried to the post, a HubSpot-style JSON
//! submission, the two-step token flow, and the deadline rules (§8.4) for templated buyers.
//! Real server, real buyer servers in the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::buyer_formats::FormatBuyer;
use crate::harness::*;

/// A ping-post market of one vertical whose campaigns are `campaigns`, each of its own
/// buyer with 100.00.
pub(crate) fn market(campaigns: Vec<Value>) -> Value {
    let mut market = crate::buyer_formats::market(campaigns);
    market["verticals"] = json!([vertical("solar", "ping_post")]);
    market
}

/// A dynamic campaign of buyer `b-<id>` whose ping goes to `ping_url` as `ping_request`
/// read by `ping_answer`, and whose post goes to `post_url` as `post_request`.
fn dynamic_of(id: &str, ping_url: &str, ping_request: Value, ping_answer: Value, post_url: &str) -> Value {
    json!({
        "id": id, "buyer_id": format!("b-{id}"), "vertical": "solar",
        "pricing": {"type": "dynamic", "ping_url": ping_url, "request": ping_request, "answer": ping_answer},
        "filters": {"countries": ["DE"]},
        "delivery": {"mode": "webhook", "url": post_url, "request": {
            "format": "json",
            "fields": [{"name": "quote_id", "value": "{{ ping.token }}"}, {"name": "email", "value": "{{ lead.email }}"},
                       {"name": "price", "value": "{{ price }}"}],
        }},
    })
}

/// A carrier's quote API: an XML ping answered `<quote id="…"><price>…</price></quote>` (or
/// `<status>DECLINED</status>`), and a JSON post that must name the quote.
fn quote_request() -> Value {
    json!({"format": "xml", "root": "quote_request", "fields": [
        {"name": "zip", "value": "{{ lead.zip }}"}, {"name": "roof", "value": "{{ lead.fields.roof_type | upper }}"},
        {"name": "source/ping", "value": "{{ ping.id }}"},
    ]})
}

fn quote_answer() -> Value {
    json!({
        "bid": {"xml": "//quote/price/text()"},
        "token": {"xml": "//quote/@id"},
        "no_bid": {"xml": "//status", "equals": "DECLINED"},
        "reason": {"xml": "//reason"},
    })
}

/// A dynamic campaign pinging `carrier`'s quote API and posting to it.
pub(crate) fn quote_campaign(id: &str, carrier: &FormatBuyer) -> Value {
    let url = &carrier.url;
    dynamic_of(id, &format!("{url}/quote"), quote_request(), quote_answer(), &format!("{url}/lead"))
}

/// Answers pings with a quote (or a decline when `declines`), and posts with `{"ok":true}`
/// when they carry the quote id it gave.
pub(crate) async fn quote_api(price: &'static str, declines: bool) -> FormatBuyer {
    FormatBuyer::start(move |request| {
        if request.target.starts_with("/quote") {
            if declines {
                return (
                    200,
                    "text/xml",
                    "<r><status>DECLINED</status><reason>no installers there</reason></r>".into(),
                );
            }
            (200, "text/xml", format!(r#"<?xml version="1.0"?><quote id="Q-77"><price>{price}</price></quote>"#))
        } else {
            let body: Value = serde_json::from_str(&request.body).unwrap_or_default();
            let known = body["quote_id"] == "Q-77";
            (if known { 200 } else { 400 }, "application/json", json!({"ok": known}).to_string())
        }
    })
    .await
}

#[tokio::test]
async fn a_custom_format_ping_bids_by_its_rules_and_carries_its_token_to_the_post() {
    let carrier = quote_api("31.50", false).await;
    let declining = quote_api("99.00", true).await;
    let campaigns = vec![quote_campaign("q", &carrier), quote_campaign("d", &declining)];
    let server = start(market(campaigns)).await;

    let ping = server.ping(&ping_body("solar")).await;
    assert_eq!((ping.status, ping.json["status"].as_str()), (200, Some("bid")), "{}", ping.json);
    let ping_id = ping.json["ping_id"].as_str().unwrap().to_string();
    let sent = &carrier.received()[0];
    assert_eq!(sent.headers["content-type"], "application/xml; charset=UTF-8");
    assert!(sent.headers.get("x-leadrouter-signature").is_some(), "templated pings are signed by default");
    assert_eq!(
        sent.body,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><quote_request><zip>80331</zip><roof>TILE</roof>\
             <source><ping>{ping_id}</ping></source></quote_request>"
        )
    );
    let trace = server.trace("pings", &ping_id).await;
    let entries = trace["entries"].as_array().unwrap();
    let declined = entries.iter().find(|e| e["campaign_id"] == "d").unwrap();
    assert_eq!(
        (declined["outcome"].as_str(), declined["reason"].as_str()),
        (Some("no_bid"), Some("no installers there"))
    );
    let bid = entries.iter().find(|e| e["campaign_id"] == "q").unwrap();
    assert_eq!((bid["outcome"].as_str(), bid["amount"].as_str()), (Some("bid"), Some("31.50")), "{trace}");

    let post = server.post(&ping_id, &lead("solar", 1)).await;
    assert_eq!(post.json["status"], "sold", "the post named the quote: {}", post.json);
    let lead_post: Value = serde_json::from_str(&carrier.received()[1].body).unwrap();
    assert_eq!(lead_post, json!({"quote_id": "Q-77", "email": "anna1@example.com", "price": "31.50"}));
    assert_eq!(declining.received().len(), 1, "no post to the buyer that declined");

    // A direct post pings the same way and carries the token within one request.
    let direct = server.direct(&lead("solar", 2)).await;
    assert_eq!(direct.json["status"], "sold", "{}", direct.json);
    let lead_post: Value = serde_json::from_str(&carrier.received()[3].body).unwrap();
    assert_eq!(lead_post["quote_id"], "Q-77");
}

#[tokio::test]
async fn a_ping_template_that_names_contact_details_is_refused_when_stored() {
    let server = start(market(vec![fixed_campaign("ok", "b-ok", "solar", "10.00", "http://127.0.0.1:9/post")])).await;
    let request = json!({"format": "json", "fields": [
        {"name": "zip", "value": "{{ lead.zip }}"}, {"name": "email", "value": "{{ lead.email }}"}]});
    let campaign = dynamic_of("p", "http://127.0.0.1:9/ping", request, json!({}), "http://127.0.0.1:9/post");
    let refused = server.admin("PUT", "/admin/v1/campaigns/p", Some(&campaign)).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    assert_eq!(refused.json["error"]["details"][0]["field"], "pricing.request.fields[1].value", "{}", refused.json);
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/p", None).await.status, 404, "nothing stored");
}

/// HubSpot's Forms API v3: a JSON body of `{"fields":[{"name","value"}…]}`, answered 200
/// `{"inlineMessage":…}` or 400 with an `errors` array.
fn hubspot_request(url: &str) -> Value {
    json!({
        "url": url, "format": "template", "content_type": "application/json",
        "body": r#"{"fields":[{"name":"email","value":"{{ lead.email }}"},{"name":"firstname","value":"{{ lead.first_name }}"},{"name":"lastname","value":"{{ lead.last_name }}"},{"name":"phone","value":"{{ lead.phone | e164 }}"}],"context":{"pageName":"{{ campaign.id }}"}}"#,
    })
}

#[tokio::test]
async fn a_hubspot_forms_v3_submission_sells_and_its_error_array_rejects_to_the_next_offer() {
    let hubspot = FormatBuyer::start(|request| {
        let body: Value = serde_json::from_str(&request.body).unwrap_or_default();
        let email = body["fields"][0]["value"].as_str().unwrap_or_default().to_string();
        if email.starts_with("anna1@") {
            let error = json!({"status": "error", "message": "The request is not valid", "errors": [
                {"message": "Error in 'fields.email'. Invalid email address", "errorType": "INVALID_EMAIL"}]});
            (400, "application/json", error.to_string())
        } else {
            (200, "application/json", json!({"inlineMessage": "Thanks for submitting the form."}).to_string())
        }
    })
    .await;
    let fallback = FormatBuyer::start(|_| (200, "application/json", "{}".into())).await;
    let url = format!("{}/submissions/v3/integration/submit/1234567/form-guid", hubspot.url);
    let mut winner = fixed_campaign("hs", "b-hs", "solar", "30.00", "http://127.0.0.1:9/unused");
    winner["delivery"]["request"] = hubspot_request(&url);
    winner["delivery"]["answer"] = json!({"reason": {"json": "$.errors[0].message"}});
    let mut second = fixed_campaign("f", "b-f", "solar", "10.00", &format!("{}/in", fallback.url));
    second["delivery"]["request"] =
        json!({"format": "form", "fields": [{"name": "email", "value": "{{ lead.email }}"}]});
    let server = start(market(vec![winner, second])).await;

    let handed_on = server.direct(&lead("solar", 1)).await;
    assert_eq!((handed_on.json["status"].as_str(), handed_on.json["payout"].as_str()), (Some("sold"), Some("5.00")));
    let trace = server.trace("leads", handed_on.json["lead_id"].as_str().unwrap()).await;
    let rejected = trace["entries"].as_array().unwrap().iter().find(|e| e["outcome"] == "rejected_post").unwrap();
    assert_eq!(rejected["reason"], "Error in 'fields.email'. Invalid email address", "{trace}");

    let sold = server.direct(&lead("solar", 2)).await;
    assert_eq!((sold.json["status"].as_str(), sold.json["payout"].as_str()), (Some("sold"), Some("15.00")));
    let submission: Value = serde_json::from_str(&hubspot.received()[1].body).unwrap();
    assert_eq!(
        submission,
        json!({"fields": [
            {"name": "email", "value": "anna2@example.com"}, {"name": "firstname", "value": "Anna"},
            {"name": "lastname", "value": "Muster"}, {"name": "phone", "value": "+49891000002"}],
            "context": {"pageName": "hs"}})
    );
}

/// An OAuth-style lead API: `POST /oauth/token` (form `client_id`, `client_secret`) gives
/// `{"access_token":"tok-N","expires_in":3600}`; `POST /leads` takes only the newest
/// token while `revoke_all` is off, and no token at all once it is on.
struct TokenApi {
    buyer: FormatBuyer,
    fetched: Arc<AtomicUsize>,
    revoke_all: Arc<std::sync::atomic::AtomicBool>,
}

async fn token_api() -> TokenApi {
    let fetched = Arc::new(AtomicUsize::new(0));
    let revoke_all = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (issued, revoked) = (Arc::clone(&fetched), Arc::clone(&revoke_all));
    let buyer = FormatBuyer::start(move |request| {
        if request.target == "/oauth/token" {
            let form: Vec<(String, String)> = form_urlencoded::parse(request.body.as_bytes()).into_owned().collect();
            if !form.contains(&("client_secret".into(), "hunter2".into())) {
                return (401, "application/json", "{}".into());
            }
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            return (
                200,
                "application/json",
                json!({"access_token": format!("tok-{n}"), "expires_in": 3600}).to_string(),
            );
        }
        let newest = format!("Bearer tok-{}", issued.load(Ordering::SeqCst));
        let presented = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if revoked.load(Ordering::SeqCst) || presented != newest {
            return (401, "application/json", json!({"error": "invalid_token"}).to_string());
        }
        (201, "application/json", json!({"id": format!("L-{}", request.body.len())}).to_string())
    })
    .await;
    TokenApi { buyer, fetched, revoke_all }
}

#[tokio::test]
async fn the_two_step_token_flow_fetches_once_reuses_and_refreshes_once_after_a_401() {
    let api = token_api().await;
    let mut campaign = fixed_campaign("t", "b-t", "solar", "20.00", &format!("{}/leads", api.buyer.url));
    campaign["delivery"]["request"] = json!({
        "format": "json", "fields": [{"name": "email", "value": "{{ lead.email }}"}],
        "auth": {"type": "token", "url": format!("{}/oauth/token", api.buyer.url),
                 "fields": [{"name": "client_id", "value": "leadrouter"}, {"name": "client_secret", "value": "hunter2"}],
                 "token_path": "$.access_token", "expires_in_path": "$.expires_in"},
    });
    campaign["delivery"]["answer"] = json!({"reference": {"json": "$.id"}});
    let server = start(market(vec![campaign])).await;

    for n in 1..=2 {
        let sold = server.direct(&lead("solar", n)).await;
        let trace = server.trace("leads", sold.json["lead_id"].as_str().unwrap_or_default()).await;
        assert_eq!(sold.json["status"], "sold", "{trace} {:?}", api.buyer.received());
    }
    assert_eq!(api.fetched.load(Ordering::SeqCst), 1, "the token is cached between sales");

    // The buyer rotates its token behind our back: the next post gets a 401, fetches a
    // fresh token once and is sold on the retry.
    api.fetched.fetch_add(1, Ordering::SeqCst);
    let sold = server.direct(&lead("solar", 3)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    assert_eq!(api.fetched.load(Ordering::SeqCst), 3, "exactly one fetch after the 401");
    let posts = api.buyer.received().into_iter().filter(|r| r.target == "/leads").count();
    assert_eq!(posts, 4, "two sales, a 401 and its one retry");

    // A 401 even with a fresh token rejects: one refresh, no loop.
    api.revoke_all.store(true, Ordering::SeqCst);
    let refused = server.direct(&lead("solar", 4)).await;
    assert_eq!(refused.json["status"], "rejected", "{}", refused.json);
    assert_eq!(api.fetched.load(Ordering::SeqCst), 4);
    let posts = api.buyer.received().into_iter().filter(|r| r.target == "/leads").count();
    assert_eq!(posts, 6);
    let balance = server.balance(&buyer_key("b-t")).await;
    assert_eq!(balance["balance"], "40.00", "two sales of 20.00 from 100.00: {balance}");
    let secret_seen = api.buyer.received().iter().any(|r| r.target == "/leads" && r.body.contains("hunter2"));
    assert!(!secret_seen, "the client secret goes to the token endpoint only");
}

/// Accepts connections and never answers.
async fn hanging_buyer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    url
}

#[tokio::test]
async fn templated_buyers_that_hang_are_cut_at_the_deadline_like_native_ones() {
    let hanging = hanging_buyer().await;
    let responsive = quote_api("12.00", false).await;
    let tmax = Duration::from_millis(1500);
    let slack = Duration::from_secs(1);
    let mut campaigns = vec![
        dynamic_of("h", &format!("{hanging}/quote"), quote_request(), quote_answer(), &format!("{hanging}/lead")),
        quote_campaign("r", &responsive),
    ];
    // A fixed campaign that posts in a format to the hanging endpoint, and pays most.
    let mut stuck = fixed_campaign("x", "b-x", "solar", "90.00", &format!("{hanging}/lead"));
    stuck["delivery"]["request"] =
        json!({"format": "form", "fields": [{"name": "email", "value": "{{ lead.email }}"}]});
    campaigns.push(stuck);
    let server = start(market(campaigns)).await;

    let started = Instant::now();
    let ping = server.ping(&ping_body("solar")).await;
    assert!(started.elapsed() < tmax + slack, "ping answered in {:?}", started.elapsed());
    assert_eq!(ping.json["status"], "bid", "{}", ping.json);
    let trace = server.trace("pings", ping.json["ping_id"].as_str().unwrap()).await;
    let hung = trace["entries"].as_array().unwrap().iter().find(|e| e["campaign_id"] == "h").unwrap();
    assert_eq!(hung["outcome"], "timeout", "{trace}");

    let started = Instant::now();
    let direct = server.direct(&lead("solar", 1)).await;
    assert!(started.elapsed() < tmax + slack, "direct post answered in {:?}", started.elapsed());
    assert!(matches!(direct.json["status"].as_str(), Some("sold" | "rejected")), "{}", direct.json);
}
