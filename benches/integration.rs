//! Buyer-format benchmarks (BENCHMARKS.md, "Buyer formats"): what speaking a buyer's own
//! format (DESIGN §5.1) costs per lead beside the native protocol of §5, with no network.
//!
//! One realistic lead (validated, as the engine holds it), one post per format:
//! - `post/native/*`: the §5 post body as `engine::decide::deliver` builds it (`json!` of
//!   sale, lead, ping ids, vertical, price, currency and the lead, then `to_string`), and
//!   `native_reply::parse_post` of `{"accepted":true}`;
//! - `post/{json,form,xml,query,template}/*`: the campaign's compiled `request` rendered
//!   as `engine::buyer_format::post_request` renders it (the lead to JSON with its id, the
//!   `RenderContext`, `CompiledRequest::render`), and the reply read by the campaign's
//!   `answer` rules (`Integration::read_post`): JSONPath, XPath or regex as the format's
//!   buyer would answer.
//!
//! Each is measured as `render`, `read` and `render_read` (both, one lead). `post/context`
//! is the lead-to-`RenderContext` step alone, which every templated render includes.
//!
//! Pings: `ping/native/*` (the §5 ping body as `engine::decide::ping_buyers` builds it,
//! `native_reply::parse_bid` of `{"bid":"38.07"}`) against `ping/json/*` and `ping/xml/*`
//! (a templated ping of the anonymous fields with `bid` and `token` rules).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use leadrouter::domain::geo::PostalTable;
use leadrouter::domain::integration::answer::AnswerSpec;
use leadrouter::domain::integration::request::{RenderContext, RequestSpec, Stage};
use leadrouter::domain::integration::Integration;
use leadrouter::domain::lead::{validate_lead, LeadInput, ValidLead, ValidPing};
use leadrouter::domain::model::Vertical;
use leadrouter::domain::money::Money;
use leadrouter::domain::native_reply::{parse_bid, parse_post};
use serde_json::{json, Value};

const SALE_ID: &str = "sal_7Hq2mZ9xWc4LbT1e";
const LEAD_ID: &str = "led_Kp3VtN8sQa6YdR2u";
const PING_ID: &str = "png_Fw5JcX1oLm9ZeB7k";
const BUYER_URL: &str = "https://buyer.example/api/leads";
const NOW: &str = "2026-12-02T10:00:00Z";

fn lead() -> ValidLead {
    let vertical: Vertical =
        serde_json::from_value(json!({"name": "solar", "model": "ping_post", "default_country": "DE"})).unwrap();
    let input: LeadInput = serde_json::from_value(json!({
        "vertical": "solar", "first_name": "Anna", "last_name": "Muster",
        "email": "anna.muster@example.com", "phone": "089 1234567",
        "zip": "80331", "country": "DE", "street": "Marienplatz 1", "city": "München",
        "fields": {"roof_type": "tile", "roof_area_m2": 42, "owner": true},
        "consent": {"tcpa": true, "ip": "203.0.113.7", "captured_at": "2026-11-25T10:00:00Z"}
    }))
    .unwrap();
    validate_lead(input, &vertical, PostalTable::bundled()).unwrap()
}

/// The post's `RenderContext`, built as `engine::buyer_format::post_request` builds it.
fn post_context(lead: &ValidLead, price: Money) -> RenderContext {
    let mut value = serde_json::to_value(lead).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("id".into(), LEAD_ID.into());
    }
    RenderContext {
        lead: value,
        sale_id: Some(SALE_ID.to_string()),
        ping_id: None,
        ping_token: None,
        price: Some(price.to_string()),
        currency: Some("EUR".to_string()),
        campaign_id: "cmp-solar-muc".to_string(),
        buyer_id: "b-solar-installer".to_string(),
        supplier_id: "s-portal".to_string(),
        now: NOW.to_string(),
        test: false,
        endpoint_url: Some(BUYER_URL.to_string()),
    }
}

/// The ping's `RenderContext`, built as `engine::buyer_format::ping_request` builds it.
fn ping_context(ping: &ValidPing) -> RenderContext {
    RenderContext {
        lead: serde_json::to_value(ping).unwrap_or_default(),
        ping_id: Some(PING_ID.to_string()),
        campaign_id: "cmp-solar-muc".to_string(),
        buyer_id: "b-solar-installer".to_string(),
        supplier_id: "s-portal".to_string(),
        now: NOW.to_string(),
        endpoint_url: Some("https://buyer.example/api/ping".to_string()),
        ..RenderContext::default()
    }
}

fn integration(request: Value, answer: Value, stage: Stage) -> Integration {
    let request: RequestSpec = serde_json::from_value(request).unwrap();
    let answer: AnswerSpec = serde_json::from_value(answer).unwrap();
    let prefix = if stage == Stage::Ping { "pricing" } else { "delivery" };
    Integration::compile(Some(&request), Some(&answer), prefix, stage).unwrap().unwrap()
}

/// One templated post format: its integration and the reply its buyer gives.
struct Format {
    name: &'static str,
    integration: Integration,
    status: u16,
    reply: &'static [u8],
}

fn post_formats() -> Vec<Format> {
    vec![
        // A lead API with its own field names: 8 fields, dotted names nest, two filters.
        Format {
            name: "json",
            integration: integration(
                json!({"format": "json", "fields": [
                    {"name": "source.sale_id", "value": "{{ sale.id }}"},
                    {"name": "contact.first_name", "value": "{{ lead.first_name }}"},
                    {"name": "contact.last_name", "value": "{{ lead.last_name }}"},
                    {"name": "contact.email", "value": "{{ lead.email }}"},
                    {"name": "contact.phone", "value": "{{ lead.phone | digits }}"},
                    {"name": "address.zip", "value": "{{ lead.zip }}"},
                    {"name": "project.roof", "value": "{{ lead.fields.roof_type | upper }}"},
                    {"name": "price", "value": "{{ price }}"}
                ]}),
                json!({
                    "accept": {"match": {"json": "$.accepted", "equals": "true"}},
                    "reason": {"json": "$.reason"},
                    "reference": {"json": "$.id"}
                }),
                Stage::Post,
            ),
            status: 200,
            reply: br#"{"accepted":true,"id":"BUY-20261202-0012345"}"#,
        },
        // Salesforce web-to-lead: a form post answered with an HTML page.
        Format {
            name: "form",
            integration: integration(
                json!({
                    "url": "https://webto.salesforce.com/servlet/servlet.WebToLead?encoding=UTF-8",
                    "format": "form", "sign": false,
                    "fields": [
                        {"name": "oid", "value": "00D5g000004XyZa"},
                        {"name": "first_name", "value": "{{ lead.first_name }}"},
                        {"name": "last_name", "value": "{{ lead.last_name }}"},
                        {"name": "email", "value": "{{ lead.email }}"},
                        {"name": "phone", "value": "{{ lead.phone | national }}"},
                        {"name": "zip", "value": "{{ lead.zip }}"},
                        {"name": "lead_source", "value": "Leadrouter {{ lead.vertical }}"}
                    ]
                }),
                json!({"accept": {"match": {"regex": "(?i)thank you"}}}),
                Stage::Post,
            ),
            status: 200,
            reply: b"<html><head><title>Web-to-Lead</title></head><body>Thank you for your request.</body></html>",
        },
        // An XML API behind basic auth: nested element names, XPath answer rules.
        Format {
            name: "xml",
            integration: integration(
                json!({
                    "format": "xml", "root": "lead",
                    "auth": {"type": "basic", "username": "partner", "password": "s3cr3t"},
                    "fields": [
                        {"name": "contact/name/first", "value": "{{ lead.first_name }}"},
                        {"name": "contact/name/last", "value": "{{ lead.last_name }}"},
                        {"name": "contact/email", "value": "{{ lead.email }}"},
                        {"name": "contact/phone", "value": "{{ lead.phone | e164 }}"},
                        {"name": "address/zip", "value": "{{ lead.zip }}"},
                        {"name": "address/city", "value": "{{ lead.city }}"},
                        {"name": "price", "value": "{{ price }}"}
                    ]
                }),
                json!({
                    "accept": {"match": {"xml": "/response/status", "equals": "success"}},
                    "reason": {"xml": "/response/message/text()"},
                    "reference": {"xml": "//lead/@id"}
                }),
                Stage::Post,
            ),
            status: 200,
            reply: br#"<?xml version="1.0" encoding="UTF-8"?><response><status>success</status><lead id="A-991"/></response>"#,
        },
        // A GET endpoint: fields in the query string, a plain-text `OK|id` / `ERR|why` answer.
        Format {
            name: "query",
            integration: integration(
                json!({
                    "method": "GET", "format": "query",
                    "fields": [
                        {"name": "email", "value": "{{ lead.email }}"},
                        {"name": "zip", "value": "{{ lead.zip }}"},
                        {"name": "name", "value": "{{ lead.first_name }} {{ lead.last_name }}"},
                        {"name": "phone", "value": "{{ lead.phone | digits }}"},
                        {"name": "price", "value": "{{ price }}"}
                    ]
                }),
                json!({
                    "accept": {"match": {"regex": "^OK\\|"}},
                    "reason": {"regex": "^ERR\\|(.*)$"},
                    "reference": {"regex": "^OK\\|(\\w+)"}
                }),
                Stage::Post,
            ),
            status: 200,
            reply: b"OK|12345\n",
        },
        // HubSpot Forms v3: a free JSON body with an array of {name, value}, a loop over
        // the lead's custom fields.
        Format {
            name: "template",
            integration: integration(
                json!({
                    "url": "https://api.hsforms.com/submissions/v3/integration/submit/1234567/0b8a4c2e-guid",
                    "format": "template", "content_type": "application/json",
                    "body": r#"{"fields":[{"name":"email","value":"{{ lead.email }}"},{"name":"firstname","value":"{{ lead.first_name }}"},{"name":"lastname","value":"{{ lead.last_name }}"},{"name":"phone","value":"{{ lead.phone | e164 }}"},{"name":"zip","value":"{{ lead.zip }}"}{% for k, v in lead.fields | items %},{"name":"{{ k }}","value":"{{ v }}"}{% endfor %}],"context":{"pageName":"Solar quote {{ lead.city }}"}}"#
                }),
                json!({
                    "accept": {"match": {"json": "$.inlineMessage"}},
                    "reason": {"json": "$.errors[0].message"}
                }),
                Stage::Post,
            ),
            status: 200,
            reply: br#"{"inlineMessage":"Thanks for submitting the form."}"#,
        },
    ]
}

fn native_post_body(lead: &ValidLead, price: Money) -> String {
    json!({
        "sale_id": SALE_ID,
        "lead_id": LEAD_ID,
        "ping_id": "",
        "vertical": lead.vertical(),
        "price": price,
        "currency": "EUR",
        "lead": lead,
    })
    .to_string()
}

fn posts(c: &mut Criterion) {
    let lead = lead();
    let price: Money = "39.00".parse().unwrap();
    let accepted: &[u8] = br#"{"accepted":true}"#;
    let mut group = c.benchmark_group("post");

    let body = native_post_body(&lead, price);
    eprintln!("post/native: {} body bytes", body.len());
    assert_eq!(parse_post(accepted), leadrouter::domain::native_reply::PostVerdict::Accepted);
    group.bench_function("native/render", |b| b.iter(|| black_box(native_post_body(black_box(&lead), price))));
    group.bench_function("native/read", |b| b.iter(|| black_box(parse_post(black_box(accepted)))));
    group.bench_function("native/render_read", |b| {
        b.iter(|| {
            let body = native_post_body(black_box(&lead), price);
            black_box(body);
            black_box(parse_post(black_box(accepted)))
        })
    });
    group.bench_function("context", |b| b.iter(|| black_box(post_context(black_box(&lead), price))));

    for format in post_formats() {
        let Format { name, integration, status, reply } = format;
        let request = integration.request.as_ref().unwrap();
        // Check once that the request renders and the reply reads as intended.
        let rendered = request.render(&post_context(&lead, price)).unwrap();
        let reading = integration.read_post(status, reply);
        assert!(reading.accepted, "{name}: {reading:?}");
        eprintln!(
            "post/{name}: {} {} ({} body bytes), reference {:?}",
            rendered.method.as_str(),
            rendered.url,
            rendered.body.len(),
            reading.reference
        );
        group.bench_function(format!("{name}/render"), |b| {
            b.iter(|| black_box(request.render(&post_context(black_box(&lead), price)).unwrap()))
        });
        group.bench_function(format!("{name}/read"), |b| {
            b.iter(|| black_box(integration.read_post(status, black_box(reply))))
        });
        group.bench_function(format!("{name}/render_read"), |b| {
            b.iter(|| {
                black_box(request.render(&post_context(black_box(&lead), price)).unwrap());
                black_box(integration.read_post(status, black_box(reply)))
            })
        });
    }
    group.finish();
}

fn native_ping_body(ping: &ValidPing) -> String {
    json!({
        "ping_id": PING_ID,
        "vertical": ping.vertical(),
        "zip": ping.zip(),
        "country": ping.country(),
        "state": ping.state(),
        "fields": ping.fields(),
        "tmax_ms": 987,
    })
    .to_string()
}

fn pings(c: &mut Criterion) {
    let ping = lead().anonymized();
    let bid: &[u8] = br#"{"bid":"38.07"}"#;
    let mut group = c.benchmark_group("ping");

    eprintln!("ping/native: {} body bytes", native_ping_body(&ping).len());
    assert!(matches!(parse_bid(bid), Ok(Some(_))));
    group.bench_function("native/render", |b| b.iter(|| black_box(native_ping_body(black_box(&ping)))));
    group.bench_function("native/read", |b| b.iter(|| black_box(parse_bid(black_box(bid)))));
    group.bench_function("native/render_read", |b| {
        b.iter(|| {
            black_box(native_ping_body(black_box(&ping)));
            black_box(parse_bid(black_box(bid)))
        })
    });

    let formats = [
        (
            "json",
            integration(
                json!({"format": "json", "fields": [
                    {"name": "request.id", "value": "{{ ping.id }}"},
                    {"name": "location.zip", "value": "{{ lead.zip }}"},
                    {"name": "location.state", "value": "{{ lead.state }}"},
                    {"name": "project.roof", "value": "{{ lead.fields.roof_type | upper }}"},
                    {"name": "project.area", "value": "{{ lead.fields.roof_area_m2 }}"}
                ]}),
                json!({"bid": {"json": "$.quote.price"}, "token": {"json": "$.quote.id"},
                       "no_bid": {"json": "$.status", "equals": "declined"}}),
                Stage::Ping,
            ),
            &br#"{"status":"quoted","quote":{"id":"Q-77","price":"31.50"}}"#[..],
        ),
        (
            "xml",
            integration(
                json!({"format": "xml", "root": "quote_request", "fields": [
                    {"name": "zip", "value": "{{ lead.zip }}"},
                    {"name": "roof", "value": "{{ lead.fields.roof_type | upper }}"},
                    {"name": "source/ping", "value": "{{ ping.id }}"}
                ]}),
                json!({"bid": {"xml": "//quote/price/text()"}, "token": {"xml": "//quote/@id"},
                       "no_bid": {"xml": "//status", "equals": "DECLINED"}, "reason": {"xml": "//reason"}}),
                Stage::Ping,
            ),
            &br#"<?xml version="1.0"?><quote id="Q-77"><price>31.50</price></quote>"#[..],
        ),
    ];
    for (name, integration, reply) in formats {
        let request = integration.request.as_ref().unwrap();
        let rendered = request.render(&ping_context(&ping)).unwrap();
        let reading = integration.read_ping(200, reply);
        assert!(reading.bid.is_some() && reading.token.is_some(), "{name}: {reading:?}");
        eprintln!("ping/{name}: {} body bytes, {reading:?}", rendered.body.len());
        group.bench_function(format!("{name}/render"), |b| {
            b.iter(|| black_box(request.render(&ping_context(black_box(&ping))).unwrap()))
        });
        group.bench_function(format!("{name}/read"), |b| {
            b.iter(|| black_box(integration.read_ping(200, black_box(reply))))
        });
        group.bench_function(format!("{name}/render_read"), |b| {
            b.iter(|| {
                black_box(request.render(&ping_context(black_box(&ping))).unwrap());
                black_box(integration.read_ping(200, black_box(reply)))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = posts, pings
}
criterion_main!(benches);
