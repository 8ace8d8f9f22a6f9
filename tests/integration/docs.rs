//! Supplier integration docs (DESIGN §5.2): the OpenAPI document checked against the
//! official OpenAPI 3.1 schema and against what the real server answers, and a supplier's
//! spec as JSON and as a page.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::harness::*;

/// The official schema of OpenAPI 3.1 documents (see `tests/openapi/README.md`).
const OAS_31_SCHEMA: &str = include_str!("../openapi/oas-3.1-schema-2022-10-07.json");
/// Where the served document is registered for `$ref` resolution.
const DOC_URL: &str = "http://leadrouter.test/openapi.json";

/// Every operation of DESIGN §4, and §5.2's two.
const PUBLIC_OPERATIONS: [(&str, &str); 13] = [
    ("post", "/v1/ping"),
    ("post", "/v1/post"),
    ("post", "/v1/leads"),
    ("post", "/v1/leads/bulk"),
    ("get", "/v1/supplier/returns"),
    ("post", "/v1/returns"),
    ("post", "/v1/returns/bulk"),
    ("get", "/v1/returns/{id}"),
    ("get", "/v1/returns"),
    ("get", "/v1/buyer/leads"),
    ("get", "/v1/buyer/balance"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/supplier/spec"),
];

fn market(sink: &MockBuyer) -> Value {
    json!({
        "verticals": [
            {"name": "solar", "model": "ping_post", "tmax_ms": 1500, "default_country": "DE",
             "required_fields": ["fields.roof_type"]},
            {"name": "heat_pump", "model": "round_robin", "tmax_ms": 900, "default_country": "DE"},
            {"name": "closed", "model": "bidding", "default_country": "DE"},
        ],
        "suppliers": [supplier("s1", SUPPLIER_KEY), supplier("s2", OTHER_SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [
            {"id": "c1", "buyer_id": "b1", "vertical": "solar", "pricing": {"type": "fixed", "price": "38.00"},
             "filters": {"countries": ["DE"], "rules": [
                 {"field": "roof_type", "op": "in", "value": ["tile", "<script>alert(1)</script>"]},
                 {"field": "kwh", "op": "gte", "value": 3000}]},
             "delivery": {"mode": "webhook", "url": sink.post_url()}},
            // s2 may not sell heat pumps: only s1 sees this vertical.
            {"id": "c2", "buyer_id": "b1", "vertical": "heat_pump", "pricing": {"type": "fixed", "price": "20.00"},
             "filters": {"countries": ["DE"], "deny_suppliers": ["s2"]},
             "delivery": {"mode": "webhook", "url": sink.post_url()}},
            {"id": "c3", "buyer_id": "b1", "vertical": "closed", "active": false, "pricing": {"type": "fixed", "price": "5.00"},
             "delivery": {"mode": "pull"}},
        ],
        "topups": [topup("b1", "1000.00")],
    })
}

/// The served document, fetched without a key.
async fn document(server: &TestServer) -> Value {
    let answer = server.send("GET", &format!("{}/v1/openapi.json", server.base), &[], Bytes::new()).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert!(answer.headers["content-type"].to_str().unwrap().starts_with("application/json"));
    answer.json
}

/// A JSON Schema 2020-12 check of an instance against one schema of the document.
struct Schemas {
    schemas: boon::Schemas,
    compiler: boon::Compiler,
}

impl Schemas {
    fn of(document: &Value) -> Schemas {
        let mut compiler = boon::Compiler::new();
        // Schema objects of OpenAPI 3.1 are JSON Schema 2020-12.
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.add_resource(DOC_URL, document.clone()).unwrap();
        Schemas { schemas: boon::Schemas::new(), compiler }
    }

    fn check(&mut self, component: &str, instance: &Value) -> Result<(), String> {
        let location = format!("{DOC_URL}#/components/schemas/{component}");
        let index = self.compiler.compile(&location, &mut self.schemas).map_err(|e| format!("{e:#}"))?;
        self.schemas.validate(instance, index).map_err(|e| format!("{component}: {e:#}"))
    }

    fn assert(&mut self, component: &str, instance: &Value) {
        if let Err(error) = self.check(component, instance) {
            panic!("{error}\n{instance:#}");
        }
    }
}

/// The official OpenAPI 3.1 schema's verdict on a document.
fn oas_verdict(document: &Value) -> Result<(), String> {
    let schema: Value = serde_json::from_str(OAS_31_SCHEMA).unwrap();
    let url = schema["$id"].as_str().unwrap().to_string();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource(&url, schema).unwrap();
    let mut schemas = boon::Schemas::new();
    let index = compiler.compile(&url, &mut schemas).map_err(|e| format!("{e:#}"))?;
    schemas.validate(document, index).map_err(|e| format!("{e:#}"))
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1_and_documents_every_public_route() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    if let Err(error) = oas_verdict(&doc) {
        panic!("the official OpenAPI 3.1 schema refuses the document: {error}");
    }
    // The validator can say no: a document without its `info`, or with a response that
    // is not a Response Object, is refused.
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(oas_verdict(&broken).is_err());
    let mut broken = doc.clone();
    broken["paths"]["/v1/ping"]["post"]["responses"]["200"] = json!({"content": 7});
    assert!(oas_verdict(&broken).is_err());

    // Exactly the operations of §4 and §5.2, each with its key and its refusals.
    let documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    let mut expected: Vec<(String, String)> =
        PUBLIC_OPERATIONS.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let mut found = documented.clone();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    for (method, path) in &documented {
        let operation = &doc["paths"][path][method];
        let responses = operation["responses"].as_object().unwrap();
        if path == "/v1/openapi.json" {
            assert_eq!(operation["security"], json!([{}]), "no key for the document");
            continue;
        }
        assert_eq!(operation["security"], json!([{"api_key": []}]), "{method} {path}");
        for status in ["401", "403", "503"] {
            let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(schema, "#/components/schemas/Error", "{method} {path} {status}");
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");

    // Every documented operation is routed: without a key each answers 401 with the
    // documented error JSON (the document itself 200), never 404 or 405.
    let mut schemas = Schemas::of(&doc);
    for (method, path) in &documented {
        let url = format!("{}{}", server.base, path.replace("{id}", "ret_x"));
        let answer = server.send(&method.to_uppercase(), &url, &[], Bytes::new()).await;
        if path == "/v1/openapi.json" {
            assert_eq!(answer.status, 200);
            continue;
        }
        assert_eq!(answer.status, 401, "{method} {path}: {}", answer.json);
        schemas.assert("Error", &answer.json);
    }
}

#[tokio::test]
async fn real_answers_and_refusals_match_the_documents_schemas() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let doc = document(&server).await;
    let mut schemas = Schemas::of(&doc);
    let url = format!("{}/v1/leads", server.base);
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let json_headers = [("authorization", auth.as_str()), ("content-type", "application/json")];

    // Refusals: malformed JSON (400), a wrong type (400 with details), a missing field
    // (422 with details), a wrong content type (415), another party's endpoint (403).
    let malformed = server.send("POST", &url, &json_headers, "{\"vertical\":").await;
    assert_eq!(malformed.status, 400);
    schemas.assert("Error", &malformed.json);
    let wrong_type = server.direct(&json!({"vertical": "solar", "zip": 80331})).await;
    assert_eq!((wrong_type.status, wrong_type.json["error"]["details"][0]["field"].as_str()), (400, Some("zip")));
    schemas.assert("Error", &wrong_type.json);
    let invalid = server.direct(&json!({"vertical": "solar", "zip": "80331"})).await;
    assert_eq!(invalid.status, 422);
    assert!(invalid.json["error"]["details"].as_array().unwrap().len() > 1);
    schemas.assert("Error", &invalid.json);
    let text =
        server.send("POST", &url, &[("authorization", auth.as_str()), ("content-type", "text/plain")], "{}").await;
    assert_eq!(text.status, 415);
    schemas.assert("Error", &text.json);
    let forbidden = server.get("/v1/buyer/balance", SUPPLIER_KEY).await;
    assert_eq!(forbidden.status, 403);
    schemas.assert("Error", &forbidden.json);

    // Business answers.
    let ping =
        server.ping(&json!({"vertical": "solar", "zip": "80331", "fields": {"roof_type": "tile", "kwh": 4000}})).await;
    assert_eq!((ping.status, ping.json["status"].as_str()), (200, Some("bid")), "{}", ping.json);
    schemas.assert("PingAnswer", &ping.json);
    let no_bid = server.ping(&json!({"vertical": "solar", "zip": "80331", "fields": {"roof_type": "flat"}})).await;
    assert_eq!(no_bid.json["status"], "no_bid");
    schemas.assert("PingAnswer", &no_bid.json);
    let mut lead = lead("solar", 1);
    lead["fields"] = json!({"roof_type": "tile", "kwh": 4000});
    let sold = server.post(ping.json["ping_id"].as_str().unwrap(), &lead).await;
    assert_eq!(sold.json["status"], "sold", "{}", sold.json);
    schemas.assert("LeadAnswer", &sold.json);
    let repost = server.post(ping.json["ping_id"].as_str().unwrap(), &lead).await;
    assert_eq!(repost.status, 409);
    schemas.assert("Error", &repost.json);
    let csv = "vertical,first_name,last_name,email,phone,zip,fields.roof_type,fields.kwh\n\
               solar,Bo,Muster,bo@example.com,089 7654321,80331,tile,5000\nsolar,only,two\n";
    let bulk_headers = [("authorization", auth.as_str()), ("content-type", "text/csv")];
    let bulk = server.send("POST", &format!("{}/v1/leads/bulk", server.base), &bulk_headers, csv).await;
    assert_eq!(bulk.json["results"][0]["status"], "sold", "{}", bulk.json);
    assert_eq!(bulk.json["results"][1]["http_status"], 422, "{}", bulk.json);
    schemas.assert("BulkAnswer_LeadAnswer", &bulk.json);
    let balance = server.get("/v1/buyer/balance", &buyer_key("b1")).await;
    schemas.assert("BalanceAnswer", &balance.json);
    let returns = server.get("/v1/supplier/returns", SUPPLIER_KEY).await;
    schemas.assert("ReturnPage", &returns.json);
    let spec = server.get("/v1/supplier/spec", SUPPLIER_KEY).await;
    schemas.assert("SpecAnswer", &spec.json);

    // The schemas are not vacuous: money as a number, an unknown status or an error
    // without its details are refused.
    let mut float = sold.json.clone();
    float["payout"] = json!(38.5);
    assert!(schemas.check("LeadAnswer", &float).is_err());
    let mut status = ping.json.clone();
    status["status"] = json!("maybe");
    assert!(schemas.check("PingAnswer", &status).is_err());
    let mut bare = invalid.json.clone();
    bare["error"].as_object_mut().unwrap().remove("details");
    assert!(schemas.check("Error", &bare).is_err());
}

#[tokio::test]
async fn a_supplier_spec_lists_the_verticals_and_fields_open_to_that_supplier() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;

    let spec = server.get("/v1/supplier/spec", SUPPLIER_KEY).await;
    assert_eq!(spec.status, 200, "{}", spec.json);
    assert!(spec.headers["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(spec.json["supplier_id"], "s1");
    let verticals: Vec<&str> =
        spec.json["verticals"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(verticals, ["heat_pump", "solar"], "the inactive campaign opens nothing");
    let solar = &spec.json["verticals"][1];
    assert_eq!((solar["model"].as_str(), solar["tmax_ms"].as_u64()), (Some("ping_post"), Some(1500)));
    let field = |list: &str, name: &str| -> Value {
        solar[list].as_array().unwrap().iter().find(|f| f["name"] == name).cloned().unwrap_or(Value::Null)
    };
    let roof = field("required", "fields.roof_type");
    assert_eq!(roof["allowed"], json!(["<script>alert(1)</script>", "tile"]), "{solar:#}");
    assert_eq!(roof["in_ping"], true);
    assert_eq!(field("required", "email")["in_ping"], false);
    assert_eq!(field("optional", "country")["allowed"], json!(["DE"]));
    assert_eq!(field("optional", "fields.kwh")["buyer_rules"], json!([{"op": "gte", "value": 3000, "campaigns": 1}]));
    let examples = &solar["examples"];
    assert_eq!(examples["ping"]["path"], "/v1/ping");
    assert_eq!(examples["post"]["request"]["lead"]["fields"]["roof_type"], "<script>alert(1)</script>");
    assert_eq!(examples["direct"]["answer"]["status"], "sold");
    let header = examples["bulk"]["request"].as_str().unwrap().lines().next().unwrap();
    assert!(header.starts_with(
        "vertical,first_name,last_name,email,phone,zip,country,state,city,street,external_id,consent.tcpa"
    ));
    assert!(header.ends_with("fields.kwh,fields.roof_type"), "{header}");

    // s2 is denied by the heat pump campaign: it sees solar only.
    let other = server.get("/v1/supplier/spec", OTHER_SUPPLIER_KEY).await;
    assert_eq!(other.json["supplier_id"], "s2");
    let verticals: Vec<&str> =
        other.json["verticals"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(verticals, ["solar"]);

    let anonymous = server.send("GET", &format!("{}/v1/supplier/spec", server.base), &[], Bytes::new()).await;
    assert_eq!((anonymous.status, anonymous.json["error"]["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(server.get("/v1/supplier/spec", "no-such-key-0000000000").await.status, 401);
    assert_eq!(server.get("/v1/supplier/spec", &buyer_key("b1")).await.status, 403);
}

#[tokio::test]
async fn the_supplier_spec_as_html_is_one_escaped_page() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let url = format!("{}/v1/supplier/spec", server.base);
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = server.send("GET", &url, &[("authorization", &auth), ("accept", browser)], Bytes::new()).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let html = String::from_utf8(page.raw.to_vec()).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<h2>solar</h2>") && html.contains("<h2>heat_pump</h2>"), "{html}");
    assert!(!html.contains("<script"), "markup from the configuration is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("src=") && !html.contains("<link"), "no external asset");

    // curl's `*/*` and an explicit JSON preference get JSON.
    for accept in ["*/*", "application/json, text/html;q=0.5"] {
        let answer = server.send("GET", &url, &[("authorization", &auth), ("accept", accept)], Bytes::new()).await;
        assert_eq!(answer.json["supplier_id"], "s1", "{accept}");
    }
}

/// The spec's examples work against the real server: the ping bids, its post sells, the
/// direct post and the bulk CSV sell (each with a person of its own, so none is a duplicate).
#[tokio::test]
async fn the_spec_examples_are_accepted_by_the_real_server() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let spec = server.get("/v1/supplier/spec", SUPPLIER_KEY).await;
    let auth = format!("Bearer {SUPPLIER_KEY}");
    let csv_headers = [("authorization", auth.as_str()), ("content-type", "text/csv")];
    for (i, vertical) in spec.json["verticals"].as_array().unwrap().iter().enumerate() {
        let examples = &vertical["examples"];
        let name = vertical["name"].as_str().unwrap();
        // The examples' person, and one of this vertical's own per request.
        let (email, phone) = ("anna.muster@example.com", "+49 89 1234567");
        let person = |n: usize| (format!("p{i}{n}@example.com"), format!("+49 89 12345{i}{n}"));

        let ping = server.ping(&examples["ping"]["request"]).await;
        assert_eq!(ping.json["status"], "bid", "{name}: {}", ping.json);
        let mut lead = examples["post"]["request"]["lead"].clone();
        assert_eq!((lead["email"].as_str(), lead["phone"].as_str()), (Some(email), Some(phone)));
        (lead["email"], lead["phone"]) = (json!(person(0).0), json!(person(0).1));
        let post = server.post(ping.json["ping_id"].as_str().unwrap(), &lead).await;
        assert_eq!(post.json["status"], "sold", "{name}: {}", post.json);

        let mut direct = examples["direct"]["request"].clone();
        (direct["email"], direct["phone"]) = (json!(person(1).0), json!(person(1).1));
        let answer = server.direct(&direct).await;
        assert_eq!(answer.json["status"], "sold", "{name}: {}", answer.json);

        let (bulk_email, bulk_phone) = person(2);
        let csv = examples["bulk"]["request"].as_str().unwrap().replace(email, &bulk_email).replace(phone, &bulk_phone);
        let bulk = server.send("POST", &format!("{}/v1/leads/bulk", server.base), &csv_headers, csv).await;
        assert_eq!(bulk.json["results"][0]["status"], "sold", "{name}: {}", bulk.json);
    }
}
