//! Tests for request configs: real buyer shapes per format, compile errors
//! with exact paths, hostile values, and round-trip properties.

use super::render::{append_query, base64};
use super::*;
use proptest::prelude::*;
use serde_json::json;

const PREFIX: &str = "delivery.request";
const HOSTILE: &str = "He said \"hi\" \\ <b>&amp;</b>\nline2\ttab ünïcødé 💡 'q' a+b=c&d %20";

fn spec(config: serde_json::Value) -> RequestSpec {
    serde_json::from_value(config).expect("valid request config")
}

fn lead() -> serde_json::Value {
    json!({
        "id": "lead_1", "vertical": "solar", "first_name": "Ada", "last_name": "Lovelace",
        "email": "ada@example.com", "phone": "+4989123456", "zip": "80331", "country": "DE",
        "state": "BY", "city": "München", "street": "Marienplatz 1",
        "fields": {"roof": "tile", "kwh": 4200, "owner": true},
    })
}

fn context(lead: serde_json::Value) -> RenderContext {
    RenderContext {
        lead,
        sale_id: Some("sale_1".into()),
        ping_id: Some("ping_1".into()),
        ping_token: Some("tok_1".into()),
        price: Some("12.50".into()),
        currency: Some("EUR".into()),
        campaign_id: "cmp_1".into(),
        buyer_id: "buy_1".into(),
        supplier_id: "sup_1".into(),
        now: "2024-05-01T12:00:00Z".into(),
        test: true,
        endpoint_url: Some("https://buyer.example/leads".into()),
    }
}

fn render(config: serde_json::Value, stage: Stage, lead: serde_json::Value) -> RenderedRequest {
    spec(config).compile(PREFIX, stage).expect("compiles").render(&context(lead)).expect("renders")
}

fn header<'a>(request: &'a RenderedRequest, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn body(request: &RenderedRequest) -> &str {
    std::str::from_utf8(&request.body).expect("utf-8 body")
}

/// `(path, message)` pairs of a refused config.
fn refusals(config: serde_json::Value, stage: Stage) -> Vec<(String, String)> {
    let errors = spec(config).compile(PREFIX, stage).expect_err("config is refused");
    errors.into_iter().map(|e| (e.field, e.message)).collect()
}

fn refused_paths(config: serde_json::Value, stage: Stage) -> Vec<String> {
    refusals(config, stage).into_iter().map(|(path, _)| path).collect()
}

fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().expect("utf-8").into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

fn salesforce() -> serde_json::Value {
    json!({
        "url": "https://webto.salesforce.com/servlet/servlet.WebToLead?encoding=UTF-8",
        "format": "form",
        "sign": false,
        "fields": [
            {"name": "oid", "value": "00D5g000004XyZa"},
            {"name": "first_name", "value": "{{ lead.first_name }}"},
            {"name": "last_name", "value": "{{ lead.last_name }}"},
            {"name": "email", "value": "{{ lead.email }}"},
            {"name": "phone", "value": "{{ lead.phone | national }}"},
            {"name": "zip", "value": "{{ lead.zip }}"},
            {"name": "lead_source", "value": "Leadrouter {{ lead.vertical }}"}
        ]
    })
}

#[test]
fn salesforce_web_to_lead_form_post() {
    let request = render(salesforce(), Stage::Post, lead());
    assert_eq!(request.method, Method::Post);
    assert_eq!(request.url, "https://webto.salesforce.com/servlet/servlet.WebToLead?encoding=UTF-8");
    assert_eq!(
        body(&request),
        "oid=00D5g000004XyZa&first_name=Ada&last_name=Lovelace&email=ada%40example.com\
         &phone=89123456&zip=80331&lead_source=Leadrouter+solar"
    );
    assert_eq!(header(&request, "content-type"), Some("application/x-www-form-urlencoded; charset=UTF-8"));
    assert!(!request.sign);
    assert_eq!(request.token_fetch, None);
}

fn hubspot() -> serde_json::Value {
    json!({
        "url": "https://api.hsforms.com/submissions/v3/integration/submit/1234567/0b8a4c2e-guid",
        "format": "template",
        "content_type": "application/json",
        "body": r#"{"fields":[{"name":"email","value":"{{ lead.email }}"},{"name":"firstname","value":"{{ lead.first_name }}"},{"name":"lastname","value":"{{ lead.last_name }}"},{"name":"zip","value":"{{ lead.zip }}"}{% for k, v in lead.fields | items %},{"name":"{{ k }}","value":"{{ v }}"}{% endfor %}],"context":{"pageName":"Solar quote {{ lead.city }}"}}"#
    })
}

#[test]
fn hubspot_forms_v3_template_body() {
    let mut hostile = lead();
    hostile["first_name"] = json!(HOSTILE);
    let request = render(hubspot(), Stage::Post, hostile);
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert!(request.sign, "templated requests are signed by default");
    let parsed: serde_json::Value = serde_json::from_slice(&request.body).expect("valid JSON");
    assert_eq!(parsed["fields"][0], json!({"name": "email", "value": "ada@example.com"}));
    assert_eq!(parsed["fields"][1]["value"], json!(HOSTILE));
    assert_eq!(parsed["fields"][4], json!({"name": "kwh", "value": "4200"}));
    assert_eq!(parsed["fields"].as_array().map(Vec::len), Some(7));
    assert_eq!(parsed["context"]["pageName"], json!("Solar quote München"));
}

fn xml_api() -> serde_json::Value {
    json!({
        "url": "https://api.buyer.example/v2/leads",
        "format": "xml",
        "root": "Lead",
        "auth": {"type": "basic", "username": "leadrouter", "password": "s3cret:pw"},
        "fields": [
            {"name": "contact/name/first", "value": "{{ lead.first_name }}"},
            {"name": "contact/name/last", "value": "{{ lead.last_name }}"},
            {"name": "address/zip", "value": "{{ lead.zip }}"},
            {"name": "contact/email", "value": "{{ lead.email }}"},
            {"name": "price", "value": "{{ price }}"}
        ]
    })
}

#[test]
fn xml_api_with_basic_auth_and_nested_names() {
    let request = render(xml_api(), Stage::Post, lead());
    assert_eq!(
        body(&request),
        r#"<?xml version="1.0" encoding="UTF-8"?><Lead><contact><name><first>Ada</first><last>Lovelace</last></name><email>ada@example.com</email></contact><address><zip>80331</zip></address><price>12.50</price></Lead>"#
    );
    assert_eq!(header(&request, "content-type"), Some("application/xml; charset=UTF-8"));
    // base64("leadrouter:s3cret:pw")
    assert_eq!(header(&request, "authorization"), Some("Basic bGVhZHJvdXRlcjpzM2NyZXQ6cHc="));
}

#[test]
fn get_endpoint_with_query_format_and_query_auth() {
    // Parsed from text: a `serde_json::Value` map would already have sorted
    // the headers.
    let config = r#"{
        "method": "GET",
        "url": "https://buyer.example/api/lead/{{ lead.vertical }}?v=2#top",
        "format": "query",
        "auth": {"type": "query", "name": "api key", "value": "k&y=1"},
        "headers": {"X-Trace": "{{ sale.id }}", "Accept": "application/json"},
        "fields": [
            {"name": "zip", "value": "{{ lead.zip }}"},
            {"name": "name", "value": "{{ lead.first_name }} {{ lead.last_name }}"},
            {"name": "price", "value": "{{ price }}"}
        ]
    }"#;
    let config: RequestSpec = serde_json::from_str(config).expect("valid config");
    let compiled = config.compile(PREFIX, Stage::Post).expect("compiles");
    let request = compiled.render(&context(lead())).expect("renders");
    assert_eq!(request.method, Method::Get);
    assert_eq!(
        request.url,
        "https://buyer.example/api/lead/solar?v=2&zip=80331&name=Ada%20Lovelace&price=12.50&api%20key=k%26y%3D1#top"
    );
    assert!(request.body.is_empty());
    assert_eq!(header(&request, "content-type"), None);
    let names: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["X-Trace", "Accept"], "headers keep the campaign's order");
}

fn ping_config() -> serde_json::Value {
    json!({
        "url": "https://buyer.example/ping",
        "format": "json",
        "timeout_ms": 1500,
        "value_maps": {"roof": {"tile": "TILE_ROOF", "flat": "FLAT_ROOF"}},
        "headers": {"X-Api-Key": "pk_live_123"},
        "fields": [
            {"name": "zip", "value": "{{ lead.zip }}"},
            {"name": "property.roof", "value": "{{ lead.fields.roof | map('roof') }}"},
            {"name": "property.kwh", "value": "{{ lead.fields.kwh }}"},
            {"name": "property.owner", "value": "{{ lead.fields.owner }}"},
            {"name": "meta.test", "value": "{{ test }}"},
            {"name": "meta.ping", "value": "{{ ping.id }}"}
        ]
    })
}

#[test]
fn ping_with_custom_json_fields() {
    let request = render(ping_config(), Stage::Ping, lead());
    assert_eq!(
        body(&request),
        r#"{"zip":"80331","property":{"roof":"TILE_ROOF","kwh":"4200","owner":"true"},"meta":{"test":"true","ping":"ping_1"}}"#
    );
    assert_eq!(request.timeout_ms, Some(1500));
    assert_eq!(header(&request, "x-api-key"), Some("pk_live_123"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
}

fn token_config() -> serde_json::Value {
    json!({
        "url": "https://api.buyer.example/leads",
        "format": "json",
        "fields": [{"name": "email", "value": "{{ lead.email }}"}],
        "auth": {
            "type": "token",
            "url": "https://auth.buyer.example/oauth/token",
            "fields": [
                {"name": "grant_type", "value": "client_credentials"},
                {"name": "client_id", "value": "leadrouter {{ campaign.id }}"},
                {"name": "client_secret", "value": "cs_9f/+="}
            ],
            "token_path": "data.access_token",
            "expires_in_path": "data.expires_in"
        }
    })
}

#[test]
fn token_auth_renders_the_fetch_for_the_caller() {
    let request = render(token_config(), Stage::Post, lead());
    assert_eq!(header(&request, "authorization"), None, "the caller adds the bearer token");
    let fetch = request.token_fetch.expect("token fetch");
    assert_eq!(fetch.url, "https://auth.buyer.example/oauth/token");
    assert_eq!(
        fetch.form_body,
        "grant_type=client_credentials&client_id=leadrouter+cmp_1&client_secret=cs_9f%2F%2B%3D"
    );
    assert_eq!(fetch.content_type, "application/x-www-form-urlencoded; charset=UTF-8");
    let issued = fetch.read_token(br#"{"data":{"access_token":"eyJabc","expires_in":"3600"}}"#).expect("token");
    assert_eq!(issued, IssuedToken { token: "eyJabc".into(), expires_in_s: Some(3600) });
    assert_eq!(fetch.read_token(b"<html>"), Err(TokenError::NotJson));
    assert_eq!(fetch.read_token(br#"{"data":{}}"#), Err(TokenError::MissingToken("data.access_token".into())));
    assert_eq!(fetch.read_token(br#"{"data":{"access_token":"a\r\nX: y"}}"#), Err(TokenError::BadToken));
}

#[test]
fn token_paths_are_json_paths_checked_when_stored() {
    let mut config = token_config();
    config["auth"]["token_path"] = json!("$.data.access_token");
    config["auth"]["expires_in_path"] = json!("$['data']['expires_in']");
    let fetch = render(config.clone(), Stage::Post, lead()).token_fetch.expect("token fetch");
    let issued = fetch.read_token(br#"{"data":{"access_token":"eyJabc","expires_in":60}}"#).expect("token");
    assert_eq!(issued, IssuedToken { token: "eyJabc".into(), expires_in_s: Some(60) });
    let two = fetch.read_token(br#"{"data":[{"access_token":"a"}]}"#);
    assert!(two.is_err(), "a path that names no single string gives no token");

    config["auth"]["token_path"] = json!("$.data[");
    let errors = spec(config).compile(PREFIX, Stage::Post).expect_err("refused");
    assert_eq!(errors[0].field, "delivery.request.auth.token_path");
}

#[test]
fn secrets_are_listed_and_redacted() {
    assert_eq!(spec(token_config()).secrets(), ["cs_9f/+="]);
    assert_eq!(spec(xml_api()).secrets(), ["s3cret:pw"]);
    let redacted = spec(xml_api()).redacted();
    assert_eq!(redacted.auth, Some(Auth::Basic { username: "leadrouter".into(), password: REDACTED.into() }));
    let bearer = spec(json!({"auth": {"type": "bearer", "token": "t0k"}}));
    assert_eq!(bearer.secrets(), ["t0k"]);
}

#[test]
fn bearer_and_header_auth_and_native_format() {
    let config = json!({"auth": {"type": "bearer", "token": "t0k_{{ buyer.id }}"}});
    let request = render(config, Stage::Post, lead());
    assert_eq!(request.format, Format::Native);
    assert_eq!(request.url, "https://buyer.example/leads", "falls back to the campaign's url");
    assert!(request.sign && request.body.is_empty());
    assert_eq!(header(&request, "authorization"), Some("Bearer t0k_buy_1"));
    let config = json!({"format": "json", "auth": {"type": "header", "name": "X-Key", "value": "k"}});
    assert_eq!(header(&render(config, Stage::Post, lead()), "x-key"), Some("k"));
}

#[test]
fn config_defaults_and_unknown_keys() {
    let parsed = spec(json!({}));
    assert_eq!(parsed, RequestSpec::default());
    assert_eq!((parsed.method, parsed.format, parsed.sign), (Method::Post, Format::Native, true));
    assert!(serde_json::from_value::<RequestSpec>(json!({"formatt": "json"})).is_err());
    let auth_typo = json!({"auth": {"type": "bearer", "token": "t", "tokn": "x"}});
    assert!(serde_json::from_value::<RequestSpec>(auth_typo).is_err());
    assert!(serde_json::from_value::<RequestSpec>(json!({"fields": [{"name": "a", "value": "b", "x": 1}]})).is_err());
    let round_trip = serde_json::to_value(spec(ping_config())).expect("serializes");
    assert_eq!(spec(round_trip.clone()), spec(ping_config()));
    assert_eq!(round_trip["headers"], json!({"X-Api-Key": "pk_live_123"}));
}

#[test]
fn compile_errors_carry_exact_paths() {
    let config = json!({
        "format": "json",
        "headers": {"X-Api-Key": "{{ buyer.id | rot13 }}"},
        "fields": [
            {"name": "contact", "value": "{{ lead.zip }}"},
            {"name": "contact.email", "value": "{{ lead.email }}"},
            {"name": "zip", "value": "{{ lead.zipcode }}"},
            {"name": "city", "value": "{{ lead.city "}
        ]
    });
    assert_eq!(
        refusals(config, Stage::Post),
        [
            ("delivery.request.fields[2].value".to_owned(), "unknown variable `lead.zipcode`".to_owned()),
            (
                "delivery.request.fields[3].value".to_owned(),
                "syntax error: unexpected end of input, expected end of variable block (line 1)".to_owned()
            ),
            (
                "delivery.request.fields[1].name".to_owned(),
                "`contact` is already a value (an earlier field) and cannot also hold fields".to_owned()
            ),
            ("delivery.request.headers.X-Api-Key".to_owned(), "unknown filter `rot13`".to_owned()),
        ]
    );
}

#[test]
fn ping_templates_naming_pii_are_refused_with_their_paths() {
    let mut config = ping_config();
    config["fields"][2]["value"] = json!("{{ lead.email }}");
    config["headers"]["X-Phone"] = json!("{{ lead.phone | digits }}");
    let refused = refusals(config, Stage::Ping);
    let paths: Vec<&str> = refused.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["delivery.request.fields[2].value", "delivery.request.headers.X-Phone"]);
    assert!(refused.iter().all(|(_, m)| m.contains("personal data")));
    // The same config is fine for a post.
    assert!(spec(ping_config()).compile(PREFIX, Stage::Post).is_ok());
}

#[test]
fn clashing_and_invalid_names_are_refused() {
    let json_clash = json!({"format": "json", "fields": [
        {"name": "a.b", "value": "1"}, {"name": "a", "value": "2"}, {"name": "x", "value": "3"},
        {"name": "x", "value": "4"}, {"name": "y..z", "value": "5"}, {"name": "", "value": "6"}]});
    assert_eq!(
        refused_paths(json_clash, Stage::Post),
        [
            "delivery.request.fields[5].name",
            "delivery.request.fields[1].name",
            "delivery.request.fields[3].name",
            "delivery.request.fields[4].name"
        ]
    );
    let xml_clash = json!({"format": "xml", "fields": [
        {"name": "a/b", "value": "1"}, {"name": "a", "value": "2"}, {"name": "1x", "value": "3"},
        {"name": "soap:Body", "value": "4"}, {"name": "c/d", "value": "5"}, {"name": "c/d/e", "value": "6"}]});
    assert_eq!(
        refused_paths(xml_clash, Stage::Post),
        [
            "delivery.request.fields[1].name",
            "delivery.request.fields[2].name",
            "delivery.request.fields[3].name",
            "delivery.request.fields[5].name"
        ]
    );
    let deep = "a.".repeat(MAX_NAME_DEPTH) + "z";
    assert_eq!(
        refused_paths(json!({"format": "json", "fields": [{"name": deep, "value": "1"}]}), Stage::Post),
        ["delivery.request.fields[0].name"]
    );
}

#[test]
fn format_nonsense_is_refused() {
    let cases = [
        (json!({"format": "template", "content_type": "text/plain"}), "delivery.request.body"),
        (json!({"format": "template", "body": "x"}), "delivery.request.content_type"),
        (json!({"format": "json", "body": "x"}), "delivery.request.body"),
        (json!({"format": "form", "content_type": "text/plain"}), "delivery.request.content_type"),
        (json!({"method": "GET", "format": "json"}), "delivery.request.method"),
        (json!({"method": "GET"}), "delivery.request.method"),
        (json!({"format": "json", "root": "lead"}), "delivery.request.root"),
        (json!({"format": "xml", "root": "my lead"}), "delivery.request.root"),
        (json!({"sign": false}), "delivery.request.sign"),
        (json!({"fields": [{"name": "a", "value": "b"}]}), "delivery.request.fields"),
        (json!({"timeout_ms": 0}), "delivery.request.timeout_ms"),
        (json!({"timeout_ms": MAX_TIMEOUT_MS + 1}), "delivery.request.timeout_ms"),
        (json!({"url": "ftp://buyer.example/x"}), "delivery.request.url"),
        (json!({"url": "{{ lead.fields.host }}/x"}), "delivery.request.url"),
        (json!({"headers": {"Bad Name": "x"}}), "delivery.request.headers.Bad Name"),
        (json!({"headers": {"Host": "x"}}), "delivery.request.headers.Host"),
        (json!({"headers": {"X-A": "1", "x-a": "2"}}), "delivery.request.headers.x-a"),
        (
            json!({"headers": {"Authorization": "x"}, "auth": {"type": "bearer", "token": "t"}}),
            "delivery.request.headers.Authorization",
        ),
        (
            json!({"format": "template", "body": "x", "content_type": "text/plain", "headers": {"Content-Type": "a/b"}}),
            "delivery.request.headers.Content-Type",
        ),
        (json!({"auth": {"type": "header", "name": "X Key", "value": "v"}}), "delivery.request.auth.name"),
        (
            json!({"auth": {"type": "token", "url": "https://a.example", "token_path": ""}}),
            "delivery.request.auth.token_path",
        ),
        (
            json!({"auth": {"type": "token", "url": "https://a.example", "token_path": "t", "fields": [{"name": "x", "value": "{{ nope }}"}]}}),
            "delivery.request.auth.fields[0].value",
        ),
        (
            json!({"auth": {"type": "basic", "username": "u", "password": "{{ lead.id | nope }}"}}),
            "delivery.request.auth.password",
        ),
    ];
    for (config, path) in cases {
        let described = config.to_string();
        assert_eq!(refused_paths(config, Stage::Post), [path], "{described}");
    }
    let too_many: Vec<_> = (0..=MAX_FIELDS).map(|i| json!({"name": format!("f{i}"), "value": "x"})).collect();
    assert_eq!(refused_paths(json!({"format": "form", "fields": too_many}), Stage::Post), ["delivery.request.fields"]);
}

#[test]
fn a_custom_content_type_header_replaces_the_default() {
    let config = json!({"format": "json", "headers": {"content-type": "application/vnd.buyer+json"},
                        "fields": [{"name": "a", "value": "b"}]});
    let request = render(config, Stage::Post, lead());
    let types: Vec<_> = request.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-type")).collect();
    assert_eq!(types.len(), 1);
    assert_eq!(header(&request, "content-type"), Some("application/vnd.buyer+json"));
}

#[test]
fn render_errors_name_the_template() {
    let config = json!({"format": "json", "fields": [{"name": "dob", "value": "{{ lead.fields.dob | date('%Y') }}"}]});
    let compiled = spec(config).compile(PREFIX, Stage::Post).expect("compiles");
    let mut odd = lead();
    odd["fields"]["dob"] = json!("last tuesday");
    let err = compiled.render(&context(odd)).expect_err("bad date");
    assert_eq!(err.field, "delivery.request.fields[0].value");
    let mut no_url = context(lead());
    no_url.endpoint_url = None;
    let err = compiled.render(&no_url).expect_err("no url");
    assert_eq!(err.field, "delivery.request.url");
    let basic = spec(xml_api()).compile(PREFIX, Stage::Post).expect("compiles");
    let mut colon = xml_api();
    colon["auth"]["username"] = json!("{{ lead.city }}");
    let mut odd = lead();
    odd["city"] = json!("a:b");
    let err = spec(colon).compile(PREFIX, Stage::Post).expect("compiles").render(&context(odd)).expect_err("colon");
    assert_eq!(err.field, "delivery.request.auth.username");
    assert!(basic.render(&context(lead())).is_ok());
}

#[test]
fn header_values_cannot_inject_headers() {
    let config = json!({"format": "json", "headers": {"X-Name": "{{ lead.first_name }}"}});
    let mut odd = lead();
    odd["first_name"] = json!("Ada\r\nX-Admin: 1");
    let request = render(config, Stage::Post, odd);
    assert_eq!(header(&request, "x-name"), Some("Ada  X-Admin: 1"));
}

#[test]
fn hostile_values_survive_every_format() {
    let mut odd = lead();
    odd["first_name"] = json!(HOSTILE);
    let field = |format: &str, name: &str| json!({"format": format, "fields": [{"name": name, "value": "{{ lead.first_name }}"}]});

    let json_body = render(field("json", "contact.first"), Stage::Post, odd.clone());
    let parsed: serde_json::Value = serde_json::from_slice(&json_body.body).expect("json");
    assert_eq!(parsed["contact"]["first"], json!(HOSTILE));

    let xml_body = render(field("xml", "contact/first"), Stage::Post, odd.clone());
    let doc = roxmltree::Document::parse(body(&xml_body)).expect("xml");
    let first = doc.descendants().find(|n| n.has_tag_name("first")).expect("first");
    assert_eq!(first.text(), Some(HOSTILE));

    let form_body = render(field("form", "first name"), Stage::Post, odd.clone());
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&form_body.body).into_owned().collect();
    assert_eq!(pairs, [("first name".to_owned(), HOSTILE.to_owned())]);

    let query = render(field("query", "first"), Stage::Post, odd.clone());
    assert!(!query.url.contains(' ') && !query.url.contains('+'));
    assert_eq!(query_pairs(&query.url), [("first".to_owned(), HOSTILE.to_owned())]);

    let xml_template = json!({"format": "template", "content_type": "text/xml; charset=utf-8",
        "body": "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><Lead name=\"{{ lead.first_name }}\">{{ lead.first_name }}</Lead></soap:Body></soap:Envelope>"});
    let soap = render(xml_template, Stage::Post, odd.clone());
    let doc = roxmltree::Document::parse(body(&soap)).expect("xml");
    let node = doc.descendants().find(|n| n.has_tag_name("Lead")).expect("Lead");
    assert_eq!(node.text(), Some(HOSTILE));
    assert_eq!(node.attribute("name"), Some(HOSTILE));

    let plain = json!({"format": "template", "content_type": "text/plain", "body": "{{ lead.first_name }}"});
    assert_eq!(body(&render(plain, Stage::Post, odd)), HOSTILE);
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    let vectors = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in vectors {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}

#[test]
fn query_pairs_join_existing_queries() {
    let pairs = [("a".to_owned(), "1 2".to_owned())];
    assert_eq!(append_query("https://x.example/p", &pairs), "https://x.example/p?a=1%202");
    assert_eq!(append_query("https://x.example/p?", &pairs), "https://x.example/p?a=1%202");
    assert_eq!(append_query("https://x.example/p?b=2#f", &pairs), "https://x.example/p?b=2&a=1%202#f");
}

fn roundtrip_configs() -> [RequestSpec; 5] {
    let fields = json!([
        {"name": "contact.first", "value": "{{ lead.first_name }}"},
        {"name": "contact.last", "value": "{{ lead.last_name }}"},
        {"name": "city", "value": "{{ lead.city }}"},
        {"name": "note", "value": "{{ lead.fields.note }}"}
    ]);
    let xml_fields = json!([
        {"name": "contact/first", "value": "{{ lead.first_name }}"},
        {"name": "contact/last", "value": "{{ lead.last_name }}"},
        {"name": "city", "value": "{{ lead.city }}"},
        {"name": "note", "value": "{{ lead.fields.note }}"}
    ]);
    [
        spec(json!({"format": "json", "fields": fields})),
        spec(json!({"format": "xml", "fields": xml_fields})),
        spec(json!({"format": "template", "content_type": "application/json",
            "body": r#"{"first":"{{ lead.first_name }}","last":"{{ lead.last_name }}","city":"{{ lead.city }}","note":"{{ lead.fields.note }}"}"#})),
        spec(json!({"format": "form", "fields": fields})),
        spec(json!({"format": "query", "url": "https://buyer.example/in?src=lr", "fields": fields})),
    ]
}

/// The pairs a form body or a URL's query string decodes to.
fn decoded_pairs(encoded: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded.as_bytes()).into_owned().collect()
}

fn xml_expected(text: &str) -> String {
    text.chars().map(|c| if super::super::template::is_xml_char(c) { c } else { '\u{FFFD}' }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_lead_strings_render_and_parse_back(
        first in any::<String>(), last in any::<String>(), city in "\\PC*", note in any::<String>()
    ) {
        let mut odd = lead();
        odd["first_name"] = json!(first);
        odd["last_name"] = json!(last);
        odd["city"] = json!(city);
        odd["fields"]["note"] = json!(note);
        let ctx = context(odd);
        let [json_spec, xml_spec, template_spec, form_spec, query_spec] = roundtrip_configs();
        let expected_pairs = |prefix: &[(&str, &str)]| -> Vec<(String, String)> {
            let fields = [("contact.first", &first), ("contact.last", &last), ("city", &city), ("note", &note)];
            prefix.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                .chain(fields.iter().map(|(k, v)| (k.to_string(), v.to_string()))).collect()
        };

        let rendered = form_spec.compile(PREFIX, Stage::Post).expect("compiles").render(&ctx).expect("renders");
        prop_assert_eq!(decoded_pairs(std::str::from_utf8(&rendered.body).expect("ascii")), expected_pairs(&[]));

        let rendered = query_spec.compile(PREFIX, Stage::Post).expect("compiles").render(&ctx).expect("renders");
        let (_, query) = rendered.url.split_once('?').expect("a query");
        prop_assert!(!query.contains(['#', ' ']), "one query, no fragment: {}", query);
        prop_assert_eq!(decoded_pairs(query), expected_pairs(&[("src", "lr")]));

        let rendered = json_spec.compile(PREFIX, Stage::Post).expect("compiles").render(&ctx).expect("renders");
        let parsed: serde_json::Value = serde_json::from_slice(&rendered.body).expect("valid json");
        prop_assert_eq!(&parsed["contact"]["first"], &json!(first));
        prop_assert_eq!(&parsed["contact"]["last"], &json!(last));
        prop_assert_eq!(&parsed["note"], &json!(note));

        let rendered = template_spec.compile(PREFIX, Stage::Post).expect("compiles").render(&ctx).expect("renders");
        let parsed: serde_json::Value = serde_json::from_slice(&rendered.body).expect("valid json");
        prop_assert_eq!(parsed, json!({"first": first, "last": last, "city": city, "note": note}));

        let rendered = xml_spec.compile(PREFIX, Stage::Post).expect("compiles").render(&ctx).expect("renders");
        let text = String::from_utf8(rendered.body).expect("utf-8");
        let doc = roxmltree::Document::parse(&text).expect("valid xml");
        let text_of = |tag: &str| doc.descendants().find(|n| n.has_tag_name(tag)).and_then(|n| n.text()).unwrap_or("").to_owned();
        prop_assert_eq!(text_of("first"), xml_expected(&first));
        prop_assert_eq!(text_of("last"), xml_expected(&last));
        prop_assert_eq!(text_of("city"), xml_expected(&city));
        prop_assert_eq!(text_of("note"), xml_expected(&note));
    }

    #[test]
    fn any_lead_values_never_panic_any_filter(value in any::<String>(), n in 0usize..50) {
        let mut odd = lead();
        odd["phone"] = json!(value.clone());
        odd["fields"]["x"] = json!(value);
        let source = format!(
            "{{{{ lead.phone | digits }}}}{{{{ lead.phone | e164 }}}}{{{{ lead.phone | national }}}}\
             {{{{ lead.fields.x | upper | lower | truncate({n}) | urlencode }}}}{{{{ lead.fields.x | map('m') | default('d') }}}}"
        );
        let config = json!({"format": "query", "value_maps": {"m": {"a": "b"}}, "fields": [
            {"name": "v", "value": source},
            {"name": "d", "value": "{{ lead.fields.x | date('%Y') }}"}
        ]});
        // `date` may refuse the value; everything else must render.
        let result = spec(config).compile(PREFIX, Stage::Post).expect("compiles").render(&context(odd));
        if let Err(err) = result {
            prop_assert_eq!(err.field, "delivery.request.fields[1].value");
        }
    }
}
