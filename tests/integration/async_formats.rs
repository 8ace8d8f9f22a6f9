//! Async deliveries in a buyer's own format (DESIGN §5.1 through §5's outbox): the request
//! is rendered once, when the lead is sold, and every attempt sends those bytes, whatever
//! the campaign says by then; the answer rules decide what delivers; a refused message is
//! retried and dead-lettered, shown to operators without its secrets; and a message still
//! pending when the process is killed (`kill -9`) goes out after the restart, unchanged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use leadrouter::buyers::signature;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::durability::{metrics_once_outbox_empty, spawn_binary, toml_of};
use crate::harness::*;

/// One request as the buyer's server received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// What the script answers: status, content type, body.
type Answered = (u16, &'static str, String);
type Script = dyn Fn(&Received, usize) -> Answered + Send + Sync;

/// A buyer endpoint that records every request as it arrives (raw bytes), then answers as
/// its script says (given how many earlier requests had the same path), once its gate is
/// open: a test holds an attempt at the buyer while it changes the campaign.
pub(crate) struct FormatSink {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    gate: Arc<watch::Sender<bool>>,
}

impl FormatSink {
    pub(crate) async fn start(script: impl Fn(&Received, usize) -> Answered + Send + Sync + 'static) -> FormatSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let gate = Arc::new(watch::channel(true).0);
        let script: Arc<Script> = Arc::new(script);
        let (recorded, opened) = (Arc::clone(&received), Arc::clone(&gate));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (script, recorded, opened) = (Arc::clone(&script), Arc::clone(&recorded), Arc::clone(&opened));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (script, recorded, gate) = (Arc::clone(&script), Arc::clone(&recorded), opened.subscribe());
                        async move { Ok::<_, Infallible>(answer(request, &*script, &recorded, gate).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        FormatSink { url: format!("http://{addr}"), received, gate }
    }

    /// Requests to `path`, in the order they arrived.
    pub(crate) fn received(&self, path: &str) -> Vec<Received> {
        self.received.lock().iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Answers wait (after being recorded) until the gate opens again.
    fn hold(&self) {
        self.gate.send_replace(false);
    }

    fn release(&self) {
        self.gate.send_replace(true);
    }
}

async fn answer(
    request: Request<Incoming>,
    script: &Script,
    recorded: &Mutex<Vec<Received>>,
    mut gate: watch::Receiver<bool>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let received = Received { path, headers, body };
    let earlier = {
        let mut recorded = recorded.lock();
        let earlier = recorded.iter().filter(|r| r.path == received.path).count();
        recorded.push(received.clone());
        earlier
    };
    let _ = gate.wait_for(|open| *open).await;
    let (status, content_type, body) = script(&received, earlier);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert("content-type", content_type.parse().unwrap());
    response
}

/// One vertical, one supplier, and `campaign` with its buyer.
fn market(campaign: Value) -> Value {
    let buyer_id = campaign["buyer_id"].as_str().unwrap().to_string();
    json!({
        "verticals": [vertical("solar", "bidding")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer(&buyer_id)],
        "campaigns": [campaign],
        "topups": [topup(&buyer_id, "1000.00")],
    })
}

fn async_campaign(id: &str, url: &str, request: Value, answer: Value) -> Value {
    let mut campaign = fixed_campaign(id, &format!("b-{id}"), "solar", "20.00", url);
    campaign["delivery"] = json!({"mode": "webhook_async", "url": url, "request": request});
    if !answer.is_null() {
        campaign["delivery"]["answer"] = answer;
    }
    campaign
}

/// A form that maps the lead's roof through a value map and stamps the render time.
fn roof_form(roof_label: &str) -> Value {
    json!({
        "format": "form",
        "fields": [
            {"name": "sale", "value": "{{ sale.id }}"},
            {"name": "email", "value": "{{ lead.email }}"},
            {"name": "roof", "value": "{{ lead.fields.roof_type | map('roof') }}"},
            {"name": "rendered_at", "value": "{{ now }}"},
        ],
        "value_maps": {"roof": {"tile": roof_label}},
    })
}

fn assert_signed(received: &Received) {
    let header = received.header(signature::SIGNATURE_HEADER).expect("templated requests are signed by default");
    let now = chrono::Utc::now().timestamp();
    assert!(signature::verify(WEBHOOK_SECRET.as_bytes(), header, &received.body, now, 300), "signed over these bytes");
}

#[tokio::test]
async fn an_async_form_buyer_gets_the_bytes_rendered_at_sale_time_on_every_attempt() {
    let crm = FormatSink::start(|_, earlier| match earlier {
        0 | 1 => (500, "text/plain", "ERR|busy".into()),
        _ => (200, "text/plain", "OK|4711".into()),
    })
    .await;
    let answer = json!({"accept": {"match": {"regex": "^OK\\|"}}, "reason": {"regex": "^ERR\\|(.*)$"}});
    let url = format!("{}/leads", crm.url);
    let campaign = async_campaign("af", &url, roof_form("TILE_ROOF"), answer.clone());
    let server = start(market(campaign.clone())).await;
    crm.hold();
    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "sold on assignment: {}", sold.json);
    eventually("the first attempt reaches the buyer", || crm.received("/leads").len() == 1).await;

    // While the first attempt is out, the operator changes the value map and the template.
    let mut changed = campaign.clone();
    changed["delivery"]["request"] = roof_form("CHANGED_ROOF");
    changed["delivery"]["request"]["fields"][1]["value"] = json!("{{ lead.email | upper }}");
    let put = server.admin("PUT", "/admin/v1/campaigns/af", Some(&changed)).await;
    assert_eq!(put.status, 200, "{}", put.json);
    tokio::time::sleep(Duration::from_millis(1_100)).await; // `now` renders whole seconds
    crm.release();

    eventually("the third attempt is accepted", || crm.received("/leads").len() == 3).await;
    eventually("the outbox is empty", || server.running.router.deliveries().counts() == (0, 0)).await;
    let attempts = crm.received("/leads");
    assert!(attempts.iter().all(|a| a.body == attempts[0].body), "byte-identical attempts: {attempts:?}");
    let form: Vec<(String, String)> = form_urlencoded::parse(&attempts[0].body).into_owned().collect();
    assert_eq!(form[1], ("email".to_string(), "anna1@example.com".to_string()), "the template of the sale");
    assert_eq!(form[2], ("roof".to_string(), "TILE_ROOF".to_string()), "the value map of the sale");
    assert!(form[0].1.starts_with("sal_"), "{form:?}");
    for attempt in &attempts {
        assert_eq!(attempt.header("content-type"), Some("application/x-www-form-urlencoded; charset=UTF-8"));
        assert_signed(attempt);
    }

    // A lead sold now renders with the change: a re-render would have sent other bytes.
    assert_eq!(server.direct(&lead("solar", 2)).await.json["status"], "sold");
    eventually("the new lead is delivered", || server.running.router.deliveries().counts() == (0, 0)).await;
    let fresh = crm.received("/leads").last().unwrap().text();
    assert!(fresh.contains("roof=CHANGED_ROOF") && fresh.contains("ANNA2%40EXAMPLE.COM"), "{fresh}");
}

#[tokio::test]
async fn an_async_buyer_whose_answer_rules_refuse_is_dead_lettered_and_shown_without_secrets() {
    let api = FormatSink::start(|request, _| match request.path.as_str() {
        "/token" => (200, "application/json", json!({"access_token": "tok-9f8e", "expires_in": 3600}).to_string()),
        _ => (200, "application/json", json!({"status": "error", "message": "Duplicate lead"}).to_string()),
    })
    .await;
    let request = json!({
        "format": "template", "content_type": "application/json",
        "body": "{\"email\": \"{{ lead.email }}\", \"sale\": \"{{ sale.id }}\", \"at\": \"{{ now }}\"}",
        "headers": {"X-Partner": "p-77", "X-Lead-Email": "{{ lead.email }}"},
        "auth": {"type": "token", "url": format!("{}/token", api.url), "token_path": "access_token",
                 "expires_in_path": "expires_in",
                 "fields": [{"name": "client_id", "value": "app-1"}, {"name": "client_secret", "value": "s3cr3t-client"}]},
    });
    let answer = json!({
        "accept": {"match": {"json": "$.status", "equals": "ok"}},
        "reason": {"json": "$.message"},
    });
    let url = format!("{}/leads?source=lr&partner_key=pk-secret", api.url);
    let server = start(market(async_campaign("at", &url, request, answer))).await;
    let sold = server.direct(&lead("solar", 1)).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);

    eventually("the delivery is dead-lettered", || server.running.router.deliveries().counts() == (0, 1)).await;
    let attempts = api.received("/leads");
    assert_eq!(attempts.len(), 4, "the harness's budget: 4 attempts");
    assert!(attempts.iter().all(|a| a.body == attempts[0].body), "the same bytes on every attempt");
    for attempt in &attempts {
        assert_eq!(attempt.header("authorization"), Some("Bearer tok-9f8e"));
        assert_eq!(attempt.header("x-lead-email"), Some("anna1@example.com"));
    }
    assert_eq!(api.received("/token").len(), 1, "the token is fetched once and kept");
    let body: Value = serde_json::from_slice(&attempts[0].body).expect("JSON as the template wrote it");
    assert_eq!(body["email"], "anna1@example.com");

    let listed = server.admin("GET", "/admin/v1/deliveries?status=dead_letter", None).await;
    assert_eq!(listed.status, 200, "{}", listed.json);
    let dead = &listed.json["deliveries"][0];
    assert_eq!((dead["attempts"].as_u64(), dead["last_error"].as_str()), (Some(4), Some("rejected: Duplicate lead")));
    let id = dead["id"].as_str().unwrap();
    let one = server.admin("GET", &format!("/admin/v1/deliveries/{id}"), None).await;
    assert_eq!(&one.json, dead, "one delivery shows as the list does");
    assert_eq!(dead["url"].as_str().unwrap(), format!("{}/leads?source=***&partner_key=***", api.url));
    let shown = &dead["request"];
    assert_eq!((shown["campaign_id"].as_str(), shown["method"].as_str()), (Some("at"), Some("POST")));
    assert_eq!(shown["headers"]["X-Partner"], "p-77", "a literal header is shown");
    assert_eq!(shown["headers"]["X-Lead-Email"], "***", "a templated one may carry the lead");
    assert_eq!(shown["headers"]["Content-Type"], "application/json");
    assert_eq!(shown["token"]["fields"]["client_id"], "app-1");
    assert_eq!(shown["token"]["fields"]["client_secret"], "***");
    assert!(dead.get("body").is_none(), "no body, as for native messages");
    let text = listed.json.to_string();
    for hidden in ["s3cr3t-client", "tok-9f8e", "pk-secret", "anna1@example.com", WEBHOOK_SECRET] {
        assert!(!text.contains(hidden), "{hidden} shown: {text}");
    }
}

#[tokio::test]
async fn a_request_that_does_not_render_at_sale_time_does_not_sell_to_its_campaign_and_queues_nothing() {
    let api = FormatSink::start(|_, _| (200, "text/plain", "OK".into())).await;
    let url = format!("{}/leads", api.url);
    // A basic-auth user rendered from the lead: one with a `:` cannot be sent.
    let request = json!({"format": "json", "fields": [{"name": "email", "value": "{{ lead.email }}"}],
                         "auth": {"type": "basic", "username": "{{ lead.fields.roof_type }}", "password": "pw-1"}});
    let picky = async_campaign("ap", &url, request, Value::Null);
    let mut fallback = fixed_campaign("fb", "b-fb", "solar", "10.00", &format!("{}/fallback", api.url));
    fallback["delivery"]["mode"] = json!("webhook_async");
    let server = start(json!({
        "verticals": [vertical("solar", "bidding")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b-ap"), buyer("b-fb")],
        "campaigns": [picky, fallback],
        "topups": [topup("b-ap", "100.00"), topup("b-fb", "100.00")],
    }))
    .await;
    let mut unsendable = lead("solar", 1);
    unsendable["fields"]["roof_type"] = json!("tile:slate");
    let sold = server.direct(&unsendable).await;
    assert_eq!(
        (sold.json["status"].as_str(), sold.json["payout"].as_str()),
        (Some("sold"), Some("5.00")),
        "{}",
        sold.json
    );
    let trace = server.trace("leads", sold.json["lead_id"].as_str().unwrap()).await;
    let refused = trace["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["campaign_id"] == "ap" && e["outcome"] == "rejected_post");
    let refused = refused.unwrap_or_else(|| panic!("the 20.00 campaign is passed over: {trace}"));
    assert!(refused["reason"].as_str().unwrap().starts_with("render"), "{refused}");
    assert_eq!(server.balance(&buyer_key("b-ap")).await["balance"], "100.00", "not charged");
    eventually("the fallback's lead is delivered", || api.received("/fallback").len() == 1).await;
    eventually("and nothing else waits", || server.running.router.deliveries().counts() == (0, 0)).await;
    assert!(api.received("/leads").is_empty(), "nothing was queued for the campaign that could not render");
}

/// Posts `lead` to a server's public listener at `base` and hands back its JSON answer.
async fn post_lead(base: &str, lead: &Value) -> Value {
    let request = hyper::Request::post(format!("{base}/v1/leads"))
        .header("authorization", format!("Bearer {SUPPLIER_KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(lead.to_string())))
        .unwrap();
    let response = client().request(request).await.expect("the server answers");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap_or_default()
}

/// The text of `<name>` in an XML body (the tests' own bodies, flat and unescaped).
fn element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_templated_async_deliveries_pending_sends_the_same_bytes_after_the_restart() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let api = FormatSink::start(move |_, _| match flag.load(Ordering::SeqCst) {
        true => (200, "application/xml", "<ok/>".into()),
        false => (503, "text/plain", "down".into()),
    })
    .await;
    let request = |roof: &str| {
        json!({
            "format": "xml", "root": "lead",
            "auth": {"type": "header", "name": "X-Api-Key", "value": "k-123"},
            "fields": [
                {"name": "sale", "value": "{{ sale.id }}"},
                {"name": "email", "value": "{{ lead.email }}"},
                {"name": "roof", "value": "{{ lead.fields.roof_type | map('roof') }}"},
                {"name": "at", "value": "{{ now }}"},
            ],
            "value_maps": {"roof": {"tile": roof}},
        })
    };
    let answer = json!({"accept": {"match": {"xml": "/ok"}}});
    let url = format!("{}/leads", api.url);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    let write_config = |roof: &str| {
        let config = market(async_campaign("ax", &url, request(roof), answer.clone()));
        std::fs::write(&config_path, toml_of(&config)).unwrap();
    };
    write_config("TILE_ROOF");
    let data = dir.path().join("data");
    let (public, ops) = (free_port(), free_port());
    let mut child = spawn_binary(&config_path, &data, public, ops, free_port());
    wait_ready(ops).await;
    let mut sales = Vec::new();
    for n in 1..=3 {
        let sold = post_lead(&format!("http://127.0.0.1:{public}"), &lead("solar", n)).await;
        assert_eq!(sold["status"], "sold", "{sold}");
    }
    eventually("each lead was offered and refused", || {
        let sent: std::collections::HashSet<String> =
            api.received("/leads").iter().filter_map(|r| element(&r.text(), "sale")).collect();
        sent.len() == 3
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let before = api.received("/leads");
    for attempt in &before {
        let sale = element(&attempt.text(), "sale").unwrap();
        if !sales.contains(&sale) {
            sales.push(sale);
        }
    }

    // A restart renders from the file's config: a re-render would map the roof otherwise.
    write_config("CHANGED_ROOF");
    healthy.store(true, Ordering::SeqCst);
    let (public, ops) = (free_port(), free_port());
    let mut child = spawn_binary(&config_path, &data, public, ops, free_port());
    wait_ready(ops).await;
    eventually("every pending lead reaches the buyer after the restart", || {
        let after = api.received("/leads");
        sales.iter().all(|sale| after[before.len()..].iter().any(|r| element(&r.text(), "sale").as_ref() == Some(sale)))
    })
    .await;
    let after = api.received("/leads");
    for attempt in &after[before.len()..] {
        let sale = element(&attempt.text(), "sale").unwrap();
        let first = before.iter().find(|r| element(&r.text(), "sale") == Some(sale.clone())).unwrap();
        assert_eq!(attempt.body, first.body, "the bytes rendered at sale time, after kill -9 and restart");
        assert_eq!(attempt.header("x-api-key"), Some("k-123"));
        assert_eq!(element(&attempt.text(), "roof").as_deref(), Some("TILE_ROOF"));
    }
    let fresh = post_lead(&format!("http://127.0.0.1:{public}"), &lead("solar", 9)).await;
    assert_eq!(fresh["status"], "sold", "{fresh}");
    eventually("the new lead is delivered", || {
        api.received("/leads").iter().any(|r| element(&r.text(), "roof").as_deref() == Some("CHANGED_ROOF"))
    })
    .await;
    let page = metrics_once_outbox_empty(ops).await;
    assert_eq!(metric(&page, "leadrouter_outbox_pending", &[]), 0.0, "nothing left pending");
    child.kill().unwrap();
    child.wait().unwrap();
}
