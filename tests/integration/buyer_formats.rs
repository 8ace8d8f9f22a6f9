//! Buyers that speak their own formats (DESIGN §5.1): small HTTP servers in the test that
//! answer as the real systems do, a real server delivering to them through campaigns'
//! `delivery.request` / `delivery.answer`, and what a campaign that cannot be compiled is
//! answered when stored.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::harness::*;

/// One request as the buyer's server received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

type Answerer = dyn Fn(&Received) -> (u16, &'static str, String) + Send + Sync;

/// A buyer endpoint that records every request and answers `(status, content type, body)`
/// as its script says.
pub(crate) struct FormatBuyer {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FormatBuyer {
    pub async fn start(
        script: impl Fn(&Received) -> (u16, &'static str, String) + Send + Sync + 'static,
    ) -> FormatBuyer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Answerer> = Arc::new(script);
        let recorded = Arc::clone(&received);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (script, recorded) = (Arc::clone(&script), Arc::clone(&recorded));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (script, recorded) = (Arc::clone(&script), Arc::clone(&recorded));
                        async move { Ok::<_, Infallible>(reply(request, &*script, &recorded).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        FormatBuyer { url: format!("http://{addr}"), received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

async fn reply(
    request: Request<Incoming>,
    script: &Answerer,
    recorded: &Mutex<Vec<Received>>,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let target = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let received = Received { method, target, headers, body: String::from_utf8_lossy(&body).into_owned() };
    let (status, content_type, body) = script(&received);
    recorded.lock().push(received);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert("content-type", content_type.parse().unwrap());
    response
}

/// A market of one vertical whose campaigns are `campaigns`, each of its own buyer.
pub(crate) fn market(campaigns: Vec<Value>) -> Value {
    let buyers: Vec<Value> = campaigns.iter().map(|c| buyer(c["buyer_id"].as_str().unwrap())).collect();
    let topups: Vec<Value> = campaigns.iter().map(|c| topup(c["buyer_id"].as_str().unwrap(), "100.00")).collect();
    json!({
        "verticals": [vertical("solar", "bidding")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": buyers, "campaigns": campaigns, "topups": topups,
    })
}

fn campaign_of(id: &str, price: &str, url: &str, request: Value, answer: Value) -> Value {
    let mut campaign = fixed_campaign(id, &format!("b-{id}"), "solar", price, url);
    campaign["delivery"]["request"] = request;
    if !answer.is_null() {
        campaign["delivery"]["answer"] = answer;
    }
    campaign
}

#[tokio::test]
async fn a_salesforce_web_to_lead_form_post_sells_on_its_2xx() {
    let crm = FormatBuyer::start(|_| (200, "text/html", "<html><body>Thank you</body></html>".into())).await;
    let request = json!({
        "format": "form", "sign": false,
        "fields": [
            {"name": "oid", "value": "00D5g000004ABCD"},
            {"name": "first_name", "value": "{{ lead.first_name }}"},
            {"name": "last_name", "value": "{{ lead.last_name | upper }}"},
            {"name": "email", "value": "{{ lead.email }}"},
            {"name": "phone", "value": "{{ lead.phone | national }}"},
            {"name": "zip", "value": "{{ lead.zip }}"},
            {"name": "lead_source", "value": "leadrouter {{ campaign.id }}"},
        ],
    });
    let server = start(market(vec![campaign_of(
        "sf",
        "20.00",
        &format!("{}/servlet/WebToLead", crm.url),
        request,
        Value::Null,
    )]))
    .await;
    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    let received = crm.received();
    assert_eq!(received.len(), 1);
    let post = &received[0];
    assert_eq!((post.method.as_str(), post.target.as_str()), ("POST", "/servlet/WebToLead"));
    assert!(post.headers["content-type"].to_str().unwrap().starts_with("application/x-www-form-urlencoded"));
    assert!(post.headers.get("x-leadrouter-signature").is_none(), "sign: false");
    let form: Vec<(String, String)> = form_urlencoded::parse(post.body.as_bytes()).into_owned().collect();
    assert_eq!(
        form,
        [
            ("oid", "00D5g000004ABCD"),
            ("first_name", "Anna"),
            ("last_name", "MUSTER"),
            ("email", "anna1@example.com"),
            ("phone", "891000001"),
            ("zip", "80331"),
            ("lead_source", "leadrouter sf"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(post.body.contains("lead_source=leadrouter+sf"), "form spaces are +: {}", post.body);
}

#[tokio::test]
async fn an_xml_api_behind_basic_auth_accepts_rejects_duplicates_and_names_its_reference() {
    let api = FormatBuyer::start(|request| {
        let authorized =
            request.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic cGFydG5lcjpzM2NyM3Q="); // partner:s3cr3t
        if !authorized {
            return (401, "application/xml", "<response><status>denied</status></response>".into());
        }
        if request.body.contains("anna2@example.com") {
            let duplicate = "<response><status>duplicate</status><message>Lead exists</message></response>";
            return (200, "application/xml", duplicate.into());
        }
        (200, "application/xml", "<response><status>success</status><lead id=\"A-991\"/></response>".into())
    })
    .await;
    let request = json!({
        "format": "xml", "root": "lead",
        "auth": {"type": "basic", "username": "partner", "password": "s3cr3t"},
        "fields": [
            {"name": "contact/name/first", "value": "{{ lead.first_name }}"},
            {"name": "contact/name/last", "value": "{{ lead.last_name }}"},
            {"name": "contact/email", "value": "{{ lead.email }}"},
            {"name": "address/zip", "value": "{{ lead.zip }}"},
            {"name": "price", "value": "{{ price }}"},
        ],
    });
    let answer = json!({
        "accept": {"match": {"xml": "/response/status", "equals": "success"}},
        "reason": {"xml": "/response/message/text()"},
        "reference": {"xml": "//lead/@id"},
    });
    let server = start(market(vec![campaign_of("x", "30.00", &format!("{}/leads", api.url), request, answer)])).await;

    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    let trace = server.trace("leads", sold.json["lead_id"].as_str().unwrap()).await;
    let entries = trace["entries"].as_array().unwrap();
    let sale = entries.iter().find(|e| e["outcome"] == "sold").unwrap_or_else(|| panic!("{trace}"));
    assert_eq!(sale["buyer_reference"], "A-991", "the buyer's lead id, read by //lead/@id: {trace}");
    let sent = &api.received()[0];
    let document = roxmltree::Document::parse(&sent.body).expect("well-formed XML");
    let text = |path: &[&str]| {
        let mut node = document.root_element();
        for name in path {
            node = node.children().find(|n| n.has_tag_name(*name)).unwrap_or_else(|| panic!("{name} in {}", sent.body));
        }
        node.text().unwrap_or_default().to_string()
    };
    assert_eq!(document.root_element().tag_name().name(), "lead");
    assert_eq!(text(&["contact", "name", "first"]), "Anna");
    assert_eq!(text(&["contact", "email"]), "anna1@example.com");
    assert_eq!(text(&["address", "zip"]), "80331");
    assert_eq!(text(&["price"]), "30.00");
    assert!(sent.headers.get("x-leadrouter-signature").is_some(), "templated requests are signed by default");

    // Secrets are shown as *** and a PUT that sends them back keeps the stored ones.
    let shown = server.admin("GET", "/admin/v1/campaigns/x", None).await.json;
    assert_eq!(shown["delivery"]["request"]["auth"]["password"], "***", "{shown}");
    assert!(!shown.to_string().contains("s3cr3t"));
    assert_eq!(server.admin("PUT", "/admin/v1/campaigns/x", Some(&shown)).await.status, 200);
    let account = server.admin("GET", "/admin/v1/buyers/b-x", None).await.json;
    assert_eq!(account["webhook_secret"], "***", "{account}");
    assert_eq!(server.admin("PUT", "/admin/v1/buyers/b-x", Some(&account)).await.status, 200);
    let listed = server.admin("GET", "/admin/v1/campaigns", None).await.json;
    assert!(!listed.to_string().contains("s3cr3t") && !listed.to_string().contains(WEBHOOK_SECRET));
    let again = server.direct(&lead("solar", 3)).await;
    assert_eq!(again.json["status"], "sold", "the stored password still authenticates: {}", again.json);
    let signed = api.received().last().unwrap().clone();
    let header = signed.headers["x-leadrouter-signature"].to_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        leadrouter::buyers::signature::verify(WEBHOOK_SECRET.as_bytes(), header, signed.body.as_bytes(), now, 300),
        "signed with the stored webhook secret"
    );

    let duplicate = server.direct(&lead("solar", 2)).await;
    assert_eq!(duplicate.json["status"], "rejected", "{}", duplicate.json);
    assert_eq!(duplicate.json["reason"], "buyer_rejected", "the buyer's words stay in the trace");
    let trace = server.trace("leads", duplicate.json["lead_id"].as_str().unwrap()).await;
    assert!(trace.to_string().contains("Lead exists"), "{trace}");
}

#[tokio::test]
async fn a_get_endpoint_answering_ok_or_err_and_a_rejecting_winner_hands_the_lead_on() {
    let plain = FormatBuyer::start(|request| {
        if request.target.contains("zip=80331") && request.target.contains("email=anna1%40example.com") {
            (200, "text/plain", "ERR|bad zip\n".into())
        } else {
            (200, "text/plain", "OK|12345\n".into())
        }
    })
    .await;
    let fallback = FormatBuyer::start(|_| (201, "application/json", "{}".into())).await;
    let request = json!({
        "method": "GET", "format": "query",
        "fields": [{"name": "email", "value": "{{ lead.email }}"}, {"name": "zip", "value": "{{ lead.zip }}"},
                   {"name": "name", "value": "{{ lead.first_name }} {{ lead.last_name }}"}],
    });
    let answer = json!({
        "accept": {"match": {"regex": "^OK\\|"}},
        "reason": {"regex": "^ERR\\|(.*)$"},
        "reference": {"regex": "^OK\\|(\\w+)"},
    });
    let winner = campaign_of("g", "40.00", &format!("{}/api/lead", plain.url), request, answer);
    let second = campaign_of(
        "f",
        "10.00",
        &format!("{}/in", fallback.url),
        json!({"format": "json", "fields": [
        {"name": "contact.email", "value": "{{ lead.email }}"}]}),
        Value::Null,
    );
    let server = start(market(vec![winner, second])).await;

    let handed_on = server.direct(&lead("solar", 1)).await;
    assert_eq!(handed_on.json["status"], "sold", "{}", handed_on.json);
    assert_eq!(handed_on.json["payout"], "5.00", "sold to the 10.00 campaign after the 40.00 one said ERR");
    let get = &plain.received()[0];
    assert_eq!(get.method, "GET");
    assert!(get.target.starts_with("/api/lead?"), "{}", get.target);
    assert!(get.target.contains("name=Anna%20Muster"), "query spaces are %20: {}", get.target);
    assert!(get.body.is_empty());
    let json_post: Value = serde_json::from_str(&fallback.received()[0].body).unwrap();
    assert_eq!(json_post, json!({"contact": {"email": "anna1@example.com"}}));
    let trace = server.trace("leads", handed_on.json["lead_id"].as_str().unwrap()).await;
    assert!(trace.to_string().contains("bad zip"), "{trace}");

    let sold = server.direct(&lead("solar", 2)).await;
    assert_eq!((sold.json["status"].as_str(), sold.json["payout"].as_str()), (Some("sold"), Some("20.00")));
    let trace = server.trace("leads", sold.json["lead_id"].as_str().unwrap()).await;
    assert!(trace.to_string().contains("\"buyer_reference\":\"12345\""), "read by ^OK\\|(\\w+): {trace}");
}

#[tokio::test]
async fn a_campaign_whose_templates_or_paths_do_not_compile_is_refused_with_their_field_paths() {
    let server = start(market(vec![fixed_campaign("ok", "b-ok", "solar", "10.00", "http://127.0.0.1:9/post")])).await;
    let mut broken = fixed_campaign("bad", "b-ok", "solar", "10.00", "http://127.0.0.1:9/post");
    broken["delivery"]["request"] = json!({"format": "json", "fields": [
        {"name": "email", "value": "{{ lead.email }}"},
        {"name": "who", "value": "{{ lead.nickname }}"},
        {"name": "when", "value": "{{ now | fortnight }}"},
    ]});
    broken["delivery"]["answer"] = json!({"accept": {"match": {"json": "$.[oops"}}});
    let refused = server.admin("PUT", "/admin/v1/campaigns/bad", Some(&broken)).await;
    assert_eq!(refused.status, 422, "{}", refused.json);
    let fields: Vec<&str> =
        refused.json["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    for expected in
        ["delivery.request.fields[1].value", "delivery.request.fields[2].value", "delivery.answer.accept.match.json"]
    {
        assert!(fields.contains(&expected), "{expected} in {fields:?}");
    }
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/bad", None).await.status, 404, "nothing stored");
}

#[tokio::test]
async fn the_buyers_reference_follows_the_sale_into_its_return_for_the_buyer_and_the_operator_only() {
    let api = FormatBuyer::start(|request| {
        let body: Value = serde_json::from_str(&request.body).unwrap_or_default();
        (
            200,
            "application/json",
            json!({"id": format!("R-{}", body["email"].as_str().unwrap_or("?").len())}).to_string(),
        )
    })
    .await;
    let request = json!({"format": "json", "fields": [
        {"name": "sale", "value": "{{ sale.id }}"}, {"name": "email", "value": "{{ lead.email }}"}]});
    let answer = json!({"reference": {"json": "$.id"}});
    let server = start(market(vec![campaign_of("r", "30.00", &format!("{}/in", api.url), request, answer)])).await;
    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    let delivered: Value = serde_json::from_str(&api.received()[0].body).unwrap();
    let sale_id = delivered["sale"].as_str().unwrap();

    let key = buyer_key("b-r");
    let body = json!({"sale_id": sale_id, "reason": "other"});
    let opened = server.supplier("/v1/returns", &key, &body).await;
    assert_eq!(opened.status, 201, "{}", opened.json);
    assert_eq!(opened.json["buyer_reference"], "R-17", "the buyer's view: {}", opened.json);
    let return_id = opened.json["return_id"].as_str().unwrap();
    let operator = server.admin("GET", &format!("/admin/v1/returns/{return_id}"), None).await;
    assert_eq!(operator.json["buyer_reference"], "R-17", "{}", operator.json);
    let supplier = server.get("/v1/supplier/returns", SUPPLIER_KEY).await;
    let entry = &supplier.json["returns"][0];
    assert_eq!(entry["return_id"], return_id, "{}", supplier.json);
    assert!(entry.get("buyer_reference").is_none(), "not the supplier's business: {entry}");
}
