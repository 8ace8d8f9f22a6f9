//! Integration docs for suppliers (DESIGN §5.2): `GET /v1/openapi.json`, the OpenAPI 3.1
//! document of the public API, derived from the handlers' `#[utoipa::path]` attributes and
//! the request and answer types themselves (so it cannot drift from them), built once;
//! and `GET /v1/supplier/spec`, what the calling supplier may send (`domain::supplier_spec`)
//! with an example request and answer per endpoint, as JSON or as a self-contained page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use ::http::header::{HeaderValue, ACCEPT, CACHE_CONTROL};
use ::http::HeaderMap;
use axum::extract::State;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use super::caller::Supplier;
use super::error::{ApiError, ErrorAnswer};
use super::http::{self, ApiResponse};
use super::public::{BulkAnswer, BulkRow, RowOutcome};
use super::{public, returns, AppState};
use crate::domain::money::Money;
use crate::domain::supplier_spec::{self, request_examples, FieldSpec, SupplierSpec, VerticalSpec};
use crate::engine::answers::{self, LeadAnswer, PingAnswer};

/// The public API (DESIGN §4 and §5.2). Every path is a handler's own `#[utoipa::path]`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "leadrouter public API",
        description = "Suppliers send leads and pings; buyers read balances, pull leads and return sales \
            (DESIGN §4). Money is always a decimal string, never a number. Refusals answer 4xx or 503 \
            with the `Error` JSON.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        public::ping,
        public::post,
        public::direct,
        public::bulk_leads,
        public::balance,
        public::pull_leads,
        returns::request,
        returns::bulk,
        returns::get,
        returns::list,
        returns::supplier_feed,
        openapi_json,
        supplier_spec,
    ),
    components(schemas(ErrorAnswer)),
    modifiers(&BearerKey),
    tags(
        (name = "supplier", description = "Lead portals: ping, post, direct and bulk posts, returns of their leads, their spec"),
        (name = "buyer", description = "Buyers: balance, pull, returns"),
        (name = "docs", description = "This document"),
    ),
)]
pub struct PublicApi;

/// The bearer scheme every keyed path names (`security(("api_key" = []))`).
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The supplier's or buyer's API key: `Authorization: Bearer <api_key>`."))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// The document as served: serialized once, on first request.
static OPENAPI_JSON: LazyLock<Bytes> = LazyLock::new(|| match PublicApi::openapi().to_json() {
    Ok(json) => Bytes::from(json),
    // Our own types: a failure here is a defect the tests catch; never a panic on a request.
    Err(error) => ApiError::new(500, "internal", format!("the OpenAPI document: {error}")).to_json(),
});

/// The OpenAPI 3.1 document of the public API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "docs",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)),
    security(()),
)]
pub async fn openapi_json() -> ApiResponse {
    let mut response = http::bytes_response(200, "application/json", OPENAPI_JSON.clone());
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

// ---------------------------------------------------------------------------------------
// The refusals the paths name

/// The refusals of keyed routes and of routes with a body, each described once.
fn refusals(statuses: &[u16]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    statuses.iter().map(|&status| (status.to_string(), refusal(refusal_meaning(status)))).collect()
}

/// A response carrying the `Error` JSON.
pub fn refusal(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build();
    ResponseBuilder::new().description(description).content("application/json", content).build().into()
}

fn refusal_meaning(status: u16) -> &'static str {
    match status {
        400 => "Malformed JSON, a field of the wrong type, or an unreadable Idempotency-Key",
        401 => "Missing or unknown API key",
        403 => "The key is not allowed here (another party's endpoint, an inactive supplier)",
        408 => "The body did not arrive in time",
        413 => "The body is over the limit (64 KiB; bulk CSV 16 MiB)",
        415 => "Wrong Content-Type",
        422 => "Validation failed: `details` names each field at fault",
        429 => "Rate limited",
        _ => "Overloaded, shutting down or unable to record; retry later",
    }
}

/// Refusals of every supplier route.
pub struct SupplierRefusals;
impl IntoResponses for SupplierRefusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        refusals(&[401, 403, 429, 503])
    }
}

/// Refusals of every buyer route.
pub struct BuyerRefusals;
impl IntoResponses for BuyerRefusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        refusals(&[401, 403, 503])
    }
}

/// Refusals of a JSON body.
pub struct JsonRefusals;
impl IntoResponses for JsonRefusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        refusals(&[400, 408, 413, 415, 422])
    }
}

/// Refusals of a CSV body (a bad header is a 422 `invalid_csv`; bad rows are answered per row).
pub struct CsvRefusals;
impl IntoResponses for CsvRefusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        refusals(&[408, 413, 415, 422])
    }
}

// ---------------------------------------------------------------------------------------
// The supplier's spec

/// `GET /v1/supplier/spec`: what this supplier may send.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpecAnswer {
    pub supplier_id: String,
    pub verticals: Vec<VerticalAnswer>,
}

/// A vertical open to the supplier, with an example exchange per endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerticalAnswer {
    #[serde(flatten)]
    pub spec: VerticalSpec,
    pub examples: Examples,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Examples {
    pub ping: Example,
    pub post: Example,
    pub direct: Example,
    /// The request is the CSV text: a header with every column this vertical knows, one row.
    pub bulk: Example,
}

/// One request and the answer it could get.
#[derive(Debug, Serialize, ToSchema)]
pub struct Example {
    #[schema(example = "POST")]
    pub method: &'static str,
    #[schema(example = "/v1/ping")]
    pub path: &'static str,
    #[schema(example = "application/json")]
    pub content_type: &'static str,
    /// A JSON body, or the CSV text of a bulk request.
    #[schema(value_type = Value)]
    pub request: Value,
    #[schema(value_type = Value)]
    pub answer: Value,
}

/// What this supplier may send: the verticals open to it, their fields and examples.
/// JSON unless the client asks for `text/html`.
#[utoipa::path(
    get,
    path = "/v1/supplier/spec",
    tag = "supplier",
    responses(
        (status = 200, description = "What this supplier may send", content(
            (SpecAnswer = "application/json"),
            (String = "text/html"),
        )),
        SupplierRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn supplier_spec(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    headers: HeaderMap,
) -> Result<ApiResponse, ApiError> {
    let market = state.router.market();
    let spec = supplier_spec::supplier_spec(&market, &supplier_id, state.router.postal())
        .ok_or_else(ApiError::unauthorized)?;
    let answer = spec_answer(spec);
    if wants_html(&headers) {
        return Ok(http::bytes_response(200, "text/html; charset=utf-8", Bytes::from(render_html(&answer))));
    }
    Ok(http::json(200, &answer))
}

fn spec_answer(spec: SupplierSpec) -> SpecAnswer {
    let verticals = spec.verticals.into_iter().map(|spec| VerticalAnswer { examples: examples(&spec), spec }).collect();
    SpecAnswer { supplier_id: spec.supplier_id, verticals }
}

/// Ids of the examples: shaped like real ones, plainly not real.
const EXAMPLE_PING_ID: &str = "png_Example0000000000000";
const EXAMPLE_LEAD_ID: &str = "led_Example0000000000000";

/// The examples' answers are the engine's own answer types, serialized as a request would be.
fn examples(vertical: &VerticalSpec) -> Examples {
    let requests = request_examples(vertical);
    let payout = Money::parse("10.00").unwrap_or(Money::ZERO);
    let sold = LeadAnswer {
        lead_id: EXAMPLE_LEAD_ID.to_string(),
        status: answers::SOLD,
        payout: Some(payout),
        currency: Some(vertical.currency),
        reason: None,
    };
    let bid = PingAnswer {
        ping_id: EXAMPLE_PING_ID.to_string(),
        status: answers::BID,
        payout: Some(payout),
        currency: Some(vertical.currency),
        expires_at: Some(example_time() + chrono::Duration::seconds(vertical.ping_ttl_s as i64)),
        reason: None,
    };
    let bulk = BulkAnswer { results: vec![BulkRow { outcome: RowOutcome::Answered(sold.clone()), row: 1 }] };
    let post = json!({"ping_id": EXAMPLE_PING_ID, "lead": requests.lead});
    Examples {
        ping: exchange("/v1/ping", "application/json", requests.ping, to_json(&bid)),
        post: exchange("/v1/post", "application/json", post, to_json(&sold)),
        direct: exchange("/v1/leads", "application/json", requests.lead, to_json(&sold)),
        bulk: exchange("/v1/leads/bulk", "text/csv", Value::String(requests.bulk_csv), to_json(&bulk)),
    }
}

fn exchange(path: &'static str, content_type: &'static str, request: Value, answer: Value) -> Example {
    Example { method: "POST", path, content_type, request, answer }
}

/// The instant the examples are made at (a ping's `expires_at` counts from it).
fn example_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).single().unwrap_or_default()
}

fn to_json<T: Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).unwrap_or_default()
}

/// Whether the client asks for HTML over JSON: `text/html` listed with a quality above
/// zero and at least that of any JSON it also lists. `*/*` alone (curl) gets JSON.
fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let quality_of = |wanted: &str| {
        accept
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';');
                let media = parts.next()?.trim();
                media.eq_ignore_ascii_case(wanted).then(|| parts.find_map(quality).unwrap_or(1000))
            })
            .max()
    };
    match (quality_of("text/html"), quality_of("application/json")) {
        (Some(html), json) => html > 0 && json.is_none_or(|json| html >= json),
        (None, _) => false,
    }
}

/// A media range's `q` parameter in thousandths (`q=0.8` → 800), read without floats.
fn quality(parameter: &str) -> Option<u16> {
    let (name, value) = parameter.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    let (whole, fraction) = value.trim().split_once('.').unwrap_or((value.trim(), ""));
    let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
    let thousandths = whole.parse::<u16>().ok()?.checked_mul(1000)?.checked_add(digits.parse::<u16>().ok()?)?;
    Some(thousandths.min(1000))
}

// ---------------------------------------------------------------------------------------
// The page

/// The spec as one self-contained page: inline style, no script, no external asset; every
/// configured or computed text escaped.
fn render_html(answer: &SpecAnswer) -> String {
    let mut page = String::with_capacity(16 * 1024);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(page, "<title>Supplier spec: {}</title>", escape(&answer.supplier_id));
    page.push_str(STYLE);
    page.push_str("</head><body>");
    page.push_str(&render_body(answer));
    page.push_str("</body></html>\n");
    page
}

/// The supplier's spec as HTML to put in a page (the portal's spec page): escaped, tables
/// in `table-box` wrappers that scroll on their own on a narrow screen.
pub(crate) fn spec_html(state: &AppState, supplier_id: &str) -> Option<String> {
    let spec = supplier_spec::supplier_spec(&state.router.market(), supplier_id, state.router.postal())?;
    Some(render_body(&spec_answer(spec)))
}

fn render_body(answer: &SpecAnswer) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let _ = write!(page, "<h1>What {} may send</h1>", escape(&answer.supplier_id));
    page.push_str("<p>Send <code>Authorization: Bearer &lt;api_key&gt;</code>. Money is a decimal string. ");
    page.push_str("The full API: <a href=\"/v1/openapi.json\">/v1/openapi.json</a>.</p>");
    if answer.verticals.is_empty() {
        page.push_str("<p>No vertical is open to you yet.</p>");
    }
    for vertical in &answer.verticals {
        render_vertical(&mut page, vertical);
    }
    page
}

const STYLE: &str = "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.3em .6em;\
text-align:left;vertical-align:top}pre{background:#f5f5f5;padding:.6em;overflow-x:auto}\
.table-box{overflow-x:auto}</style>";

fn render_vertical(page: &mut String, vertical: &VerticalAnswer) {
    let spec = &vertical.spec;
    let _ = write!(
        page,
        "<section><h2>{}</h2><p>Model <code>{}</code>, deadline {} ms, a ping's bid stands {} s, payouts in {}.</p>",
        escape(&spec.name),
        escape(spec.model.as_str()),
        spec.tmax_ms,
        spec.ping_ttl_s,
        escape(spec.currency.as_str()),
    );
    render_fields(page, "Required fields", &spec.required);
    render_fields(page, "Optional fields", &spec.optional);
    page.push_str("<h3>Examples</h3>");
    let examples = &vertical.examples;
    for example in [&examples.ping, &examples.post, &examples.direct, &examples.bulk] {
        render_example(page, example);
    }
    page.push_str("</section>");
}

fn render_fields(page: &mut String, title: &str, fields: &[FieldSpec]) {
    let _ =
        write!(page, "<h3>{title}</h3><div class=\"table-box\"><table><tr><th>field</th><th>type</th><th>in ping</th>");
    page.push_str("<th>allowed</th><th>buyer rules</th><th>example</th><th>note</th></tr>");
    for field in fields {
        let allowed = field.allowed.as_ref().map(|values| json_list(values)).unwrap_or_default();
        let rules: Vec<String> = field
            .buyer_rules
            .iter()
            .map(|rule| {
                let value = rule.value.as_ref().map(Value::to_string).unwrap_or_default();
                format!("{} {value} ({} campaigns)", rule.op, rule.campaigns)
            })
            .collect();
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&field.name),
            escape(&kind_name(field)),
            if field.in_ping { "yes" } else { "no" },
            escape(&allowed),
            escape(&rules.join("; ")),
            escape(&field.example.to_string()),
            escape(field.note.as_deref().unwrap_or("")),
        );
    }
    page.push_str("</table></div>");
}

fn kind_name(field: &FieldSpec) -> String {
    serde_json::to_value(field.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn json_list(values: &[Value]) -> String {
    values.iter().map(Value::to_string).collect::<Vec<_>>().join(", ")
}

fn render_example(page: &mut String, example: &Example) {
    let request = match &example.request {
        Value::String(csv) => csv.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let answer = serde_json::to_string_pretty(&example.answer).unwrap_or_default();
    let _ = write!(
        page,
        "<h4>{} {}</h4><p>Content-Type: <code>{}</code></p><pre>{}</pre><p>Answer:</p><pre>{}</pre>",
        example.method,
        example.path,
        example.content_type,
        escape(&request),
        escape(&answer),
    );
}

// Text as HTML: the escape both services share.
use leadrouter_http::html::escape;

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn html_only_when_asked_for_over_json() {
        assert!(wants_html(&accept("text/html")));
        assert!(wants_html(&accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("text/html;q=0.5, application/json")));
        assert!(!wants_html(&accept("text/html;q=0")));
        assert!(!wants_html(&HeaderMap::new()));
        assert_eq!(quality("q=0.8"), Some(800));
        assert_eq!(quality("q=1"), Some(1000));
        assert_eq!(quality("q=x"), None);
    }

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(escape("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc: Value = serde_json::from_slice(&OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["components"]["schemas"]["Error"].is_object(), "{}", doc["components"]);
    }
}
