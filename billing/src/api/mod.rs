//! The worker's HTTP API (DESIGN §13): runs, documents, payments, notifications, reports
//! and reconciliation under `/billing/v1`, behind the admin token; `/metrics` and
//! `/healthz` are open. Errors use the shape of DESIGN §4.

pub mod render;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::domain::document::DocumentKind;
use crate::domain::dunning::DunningPolicy;
use crate::domain::money;
use crate::domain::report::{Basis, GroupBy, Span};
use crate::engine::payments::{self, NewPayment, PaymentError};
use crate::engine::reports::{self, ReportError, ReportQuery};
use crate::engine::{reconcile, run};
use crate::store::documents::{self, Filter};
use crate::store::{Db, StoreError};
use crate::{notify, telemetry};

/// Request bodies are small JSON objects.
const BODY_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub db: Db,
    pub token: String,
    pub policy: DunningPolicy,
}

/// An error answer: status, code, message and field details.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<(String, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Vec::new() }
    }

    fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: format!("{field}: {message}"),
            details: vec![(field.to_string(), message)],
        }
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let details: Vec<Value> =
            self.details.iter().map(|(field, message)| json!({"field": field, "message": message})).collect();
        let body = json!({"error": {"code": self.code, "message": self.message, "details": details}});
        respond(self.status, "application/json", body.to_string().into())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        tracing::error!(%error, "billing store");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the billing database failed; see the worker's log",
        )
    }
}

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> ApiError {
        match error {
            ReportError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            ReportError::Invalid { field, message } => ApiError::invalid(field, message),
            ReportError::Store(store) => store.into(),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> ApiError {
        match error {
            PaymentError::UnknownInvoice(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            PaymentError::Overpayment { .. } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "overpayment",
                message: error.to_string(),
                details: vec![("amount".into(), error.to_string())],
            },
            PaymentError::ReferenceReused { .. } => {
                ApiError::new(StatusCode::CONFLICT, "duplicate_reference", error.to_string())
            }
            PaymentError::Store(store) => store.into(),
        }
    }
}

type Answer = Result<Response<Full<Bytes>>, ApiError>;

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    Ok(respond(status, "application/json", body.to_string().into()))
}

pub async fn handle(state: Arc<AppState>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let answer = route(&state, request).await;
    Ok(answer.unwrap_or_else(ApiError::into_response))
}

async fn route(state: &AppState, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => return json_answer(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/metrics") => {
            return Ok(respond(StatusCode::OK, "text/plain; version=0.0.4", telemetry::render().into()))
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/billing/v1/") else { return Err(ApiError::not_found()) };
    authorize(state, &request)?;
    let query = query_of(&request);
    let segments: Vec<&str> = rest.split('/').collect();
    match (method, segments.as_slice()) {
        (Method::POST, ["runs"]) => post_run(state, request).await,
        (Method::GET, ["documents"]) => list_documents(state, &query).await,
        (Method::GET, ["documents", number]) => get_document(state, number).await,
        (Method::POST, ["invoices", number, "payments"]) => post_payment(state, number, request).await,
        (Method::GET, ["notifications"]) => list_notifications(state, &query).await,
        (Method::GET, ["reports", name]) => get_report(state, name, &query).await,
        (Method::GET, ["reconciliation"]) => {
            let reconciliation = state.db.blocking(|connection| reconcile::reconcile(connection)).await?;
            json_answer(StatusCode::OK, &json!(reconciliation))
        }
        (_, ["runs"] | ["documents"] | ["documents", _] | ["invoices", _, "payments"] | ["notifications"])
        | (_, ["reports", _] | ["reconciliation"]) => {
            Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here"))
        }
        _ => Err(ApiError::not_found()),
    }
}

fn authorize(state: &AppState, request: &Request<Incoming>) -> Result<(), ApiError> {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), state.token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or unknown admin token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_of(request: &Request<Incoming>) -> HashMap<String, String> {
    query_pairs(request.uri().query().unwrap_or(""))
}

/// A query string's parameters, names and values percent-decoded (a name given twice: the
/// last one wins).
pub fn query_pairs(query: &str) -> HashMap<String, String> {
    let mut pairs = HashMap::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.insert(decode(name), decode(value));
    }
    pairs
}

/// Percent-decoding of a query component (`+` is a space).
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

/// Reads a JSON body of at most `BODY_LIMIT` bytes into `T`.
async fn body_json<T: for<'de> Deserialize<'de>>(request: Request<Incoming>) -> Result<T, ApiError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if !content_type.is_empty() && !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
        ));
    }
    let body = match Limited::new(request.into_body(), BODY_LIMIT).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is over 64 KiB"))
        }
    };
    serde_json::from_slice(&body)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {error}")))
}

/// A calendar date between 1970 and 9999 (chrono takes years far beyond, which no billing
/// period has any business with).
pub fn date(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    let date: NaiveDate =
        text.parse().map_err(|_| ApiError::invalid(field, format!("{text:?} is not a calendar date (YYYY-MM-DD)")))?;
    if !(1970..=9999).contains(&date.year()) {
        return Err(ApiError::invalid(field, format!("{text:?} is outside the years 1970 to 9999")));
    }
    Ok(date)
}

#[derive(Deserialize)]
struct RunRequest {
    as_of: Option<String>,
}

async fn post_run(state: &AppState, request: Request<Incoming>) -> Answer {
    let body: RunRequest = body_json(request).await?;
    let as_of = date("as_of", body.as_of.as_deref().ok_or_else(|| ApiError::invalid("as_of", "is required"))?)?;
    if let Err(message) = run::check_as_of(as_of, Utc::now()) {
        return Err(ApiError::invalid("as_of", message));
    }
    let policy = state.policy;
    let outcome = state.db.blocking(move |connection| run::run(connection, as_of, policy, Utc::now())).await?;
    telemetry::documents_issued(&outcome.issued);
    json_answer(StatusCode::OK, &json!(outcome))
}

async fn list_documents(state: &AppState, query: &HashMap<String, String>) -> Answer {
    let limit = limit(query)?;
    let filter = Filter {
        account: query.get("account").filter(|a| !a.is_empty()).cloned(),
        kind: match query.get("kind").map(String::as_str) {
            None | Some("") => None,
            Some(kind) => Some(DocumentKind::parse(kind).ok_or_else(|| {
                ApiError::invalid("kind", "is one of invoice, statement, credit_note, supplier_settlement")
            })?),
        },
        from: query.get("from").map(|text| date("from", text)).transpose()?,
        to: query.get("to").map(|text| date("to", text)).transpose()?,
        after: cursor(query)?,
        limit,
    };
    let page = state.db.blocking(move |connection| documents::list(connection, &filter)).await?;
    let next = (page.len() == limit).then(|| page.last().map(|(rowid, _)| rowid.to_string())).flatten();
    let documents: Vec<Value> = page.iter().map(|(_, document)| render::json(document)).collect();
    json_answer(StatusCode::OK, &json!({"documents": documents, "next": next}))
}

/// `after`: a cursor from a previous page (a row id), 0 when absent or empty.
pub fn cursor(query: &HashMap<String, String>) -> Result<i64, ApiError> {
    match query.get("after").map(String::as_str) {
        None | Some("") => Ok(0),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("after", "is not a cursor from a previous page")),
    }
}

/// `limit`: 1 to 500, 50 when absent or empty.
pub fn limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit").map(String::as_str) {
        None | Some("") => Ok(50),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "is a number from 1 to 500")),
    }
}

async fn get_document(state: &AppState, name: &str) -> Answer {
    let (number, format) = match name.rsplit_once('.') {
        Some((number, "csv")) => (number.to_string(), "csv"),
        Some((number, "html")) => (number.to_string(), "html"),
        Some((number, "json")) => (number.to_string(), "json"),
        _ => (name.to_string(), "json"),
    };
    let document = state.db.blocking(move |connection| documents::load(connection, &number)).await?;
    let document = document.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such document"))?;
    match format {
        "csv" => {
            let body = render::csv(&document)
                .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "rendering CSV failed"))?;
            Ok(respond(StatusCode::OK, "text/csv; charset=utf-8", body.into()))
        }
        "html" => Ok(respond(StatusCode::OK, "text/html; charset=utf-8", render::html(&document).into())),
        _ => json_answer(StatusCode::OK, &render::json(&document)),
    }
}

#[derive(Deserialize)]
struct PaymentRequest {
    amount: Option<String>,
    paid_at: Option<String>,
    reference: Option<String>,
}

async fn post_payment(state: &AppState, number: &str, request: Request<Incoming>) -> Answer {
    let body: PaymentRequest = body_json(request).await?;
    let payment = new_payment(body)?;
    let number = number.to_string();
    let invoice = state.db.blocking(move |connection| payments::record(connection, &number, &payment)).await?;
    json_answer(StatusCode::CREATED, &render::json(&invoice))
}

fn new_payment(body: PaymentRequest) -> Result<NewPayment, ApiError> {
    let amount = body.amount.ok_or_else(|| ApiError::invalid("amount", "is required"))?;
    let amount =
        money::parse(&amount).ok_or_else(|| ApiError::invalid("amount", "is not a decimal amount like \"120.50\""))?;
    if amount <= rust_decimal::Decimal::ZERO {
        return Err(ApiError::invalid("amount", "must be more than zero"));
    }
    if amount.normalize().scale() > 2 {
        return Err(ApiError::invalid("amount", "has more than two decimal places"));
    }
    let paid_at = body.paid_at.ok_or_else(|| ApiError::invalid("paid_at", "is required"))?;
    let paid_at = DateTime::parse_from_rfc3339(&paid_at)
        .map_err(|_| ApiError::invalid("paid_at", "is not an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    let reference = body.reference.unwrap_or_default();
    if reference.trim().is_empty() || reference.len() > 200 {
        return Err(ApiError::invalid("reference", "is required, at most 200 characters"));
    }
    Ok(NewPayment { amount, paid_at, reference })
}

async fn list_notifications(state: &AppState, query: &HashMap<String, String>) -> Answer {
    let status = query.get("status").filter(|status| !status.is_empty()).cloned();
    let (after, limit) = (cursor(query)?, limit(query)?);
    let page = state.db.blocking(move |connection| notify::list(connection, status.as_deref(), after, limit)).await?;
    let next = (page.len() == limit).then(|| page.last().map(|n| n.id.to_string())).flatten();
    json_answer(StatusCode::OK, &json!({"notifications": page, "next": next}))
}

async fn get_report(state: &AppState, name: &str, query: &HashMap<String, String>) -> Answer {
    let required = |field: &'static str| -> Result<NaiveDate, ApiError> {
        let text =
            query.get(field).filter(|text| !text.is_empty()).ok_or_else(|| ApiError::invalid(field, "is required"))?;
        Ok(reports::parse_date(field, text)?)
    };
    let report = ReportQuery {
        name: name.to_string(),
        span: Span { from: required("from")?, to: required("to")? },
        group_by: match query.get("group_by").map(String::as_str) {
            None | Some("") => None,
            Some(text) => Some(
                GroupBy::parse(text)
                    .ok_or_else(|| ApiError::invalid("group_by", format!("{text:?} is not a grouping")))?,
            ),
        },
        basis: match query.get("basis").map(String::as_str) {
            None | Some("") => Basis::Accrual,
            Some(text) => Basis::parse(text).ok_or_else(|| ApiError::invalid("basis", "is accrual or booked"))?,
        },
        currency: query.get("currency").filter(|c| !c.is_empty()).cloned(),
    };
    let csv = match query.get("format").map(String::as_str) {
        None | Some("") | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format", "is json or csv")),
    };
    let report = state.db.blocking(move |connection| reports::report(connection, &report)).await?;
    if !csv {
        return json_answer(StatusCode::OK, &report.json);
    }
    let body = report_csv(&report)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "rendering CSV failed"))?;
    Ok(respond(StatusCode::OK, "text/csv; charset=utf-8", body.into()))
}

fn report_csv(report: &reports::Report) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&report.columns)?;
    for row in &report.rows {
        let cells = report.columns.iter().map(|column| match row.get(column) {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        });
        writer.write_record(cells)?;
    }
    writer.into_inner().map_err(|error| error.into_error().into())
}

/// Serves the API until `stopped` turns true, then drains open connections.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut stopped: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let state = Arc::clone(&state);
                let service = service_fn(move |request| handle(Arc::clone(&state), request));
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = crate::stopped(&mut stopped) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

#[cfg(test)]
mod tests;
