//! One handler per endpoint of DESIGN §13: each reads its typed input (see `input`), does
//! its work on the database off the async threads, and answers JSON, CSV or HTML. Every
//! refusal is an `ApiError`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::input::{
    DocumentsQuery, JsonBody, NotificationsQuery, PaymentRequest, Query, ReportFormat, ReportParams, RunRequest,
    Segment,
};
use super::{render, AppState};
use crate::engine::{payments, reconcile, reports, run};
use crate::store::documents;
use crate::{notify, telemetry};

type Answer = Result<Response, ApiError>;

const JSON: &str = "application/json";
const CSV: &str = "text/csv; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// Prometheus' text exposition format.
const METRICS: &str = "text/plain; version=0.0.4";

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body.into()).into_response()
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    Ok(respond(status, JSON, body.to_string()))
}

pub async fn healthz() -> Answer {
    json_answer(StatusCode::OK, &json!({"status": "ok"}))
}

pub async fn metrics() -> Response {
    respond(StatusCode::OK, METRICS, telemetry::render())
}

/// Answers every path nothing else answers.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Answers a known path asked with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// `POST /billing/v1/runs`
pub async fn post_run(State(state): State<Arc<AppState>>, JsonBody(body): JsonBody<RunRequest>) -> Answer {
    let as_of = body.as_of(Utc::now())?;
    let policy = state.policy;
    let outcome = state.db.blocking(move |connection| run::run(connection, as_of, policy, Utc::now())).await?;
    telemetry::documents_issued(&outcome.issued);
    json_answer(StatusCode::OK, &json!(outcome))
}

/// `GET /billing/v1/documents`
pub async fn list_documents(State(state): State<Arc<AppState>>, Query(query): Query<DocumentsQuery>) -> Answer {
    let filter = query.filter()?;
    let limit = filter.limit;
    let page = state.db.blocking(move |connection| documents::list(connection, &filter)).await?;
    let next = (page.len() == limit).then(|| page.last().map(|(rowid, _)| rowid.to_string())).flatten();
    let documents: Vec<Value> = page.iter().map(|(_, document)| render::json(document)).collect();
    json_answer(StatusCode::OK, &json!({"documents": documents, "next": next}))
}

/// `GET /billing/v1/documents/{number}`, also with `.json`, `.csv` or `.html`.
pub async fn get_document(State(state): State<Arc<AppState>>, Segment(name): Segment) -> Answer {
    let (number, format) = match name.rsplit_once('.') {
        Some((number, "csv")) => (number.to_string(), "csv"),
        Some((number, "html")) => (number.to_string(), "html"),
        Some((number, "json")) => (number.to_string(), "json"),
        _ => (name, "json"),
    };
    let document = state.db.blocking(move |connection| documents::load(connection, &number)).await?;
    let document = document.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such document"))?;
    match format {
        "csv" => {
            let body = render::csv(&document).map_err(|_| ApiError::internal("rendering CSV failed"))?;
            Ok(respond(StatusCode::OK, CSV, body))
        }
        "html" => Ok(respond(StatusCode::OK, HTML, render::html(&document))),
        _ => json_answer(StatusCode::OK, &render::json(&document)),
    }
}

/// `POST /billing/v1/invoices/{number}/payments`
pub async fn post_payment(
    State(state): State<Arc<AppState>>,
    Segment(number): Segment,
    JsonBody(body): JsonBody<PaymentRequest>,
) -> Answer {
    let payment = body.payment()?;
    let invoice = state.db.blocking(move |connection| payments::record(connection, &number, &payment)).await?;
    json_answer(StatusCode::CREATED, &render::json(&invoice))
}

/// `GET /billing/v1/notifications`
pub async fn list_notifications(State(state): State<Arc<AppState>>, Query(query): Query<NotificationsQuery>) -> Answer {
    let page = query.page()?;
    let limit = page.limit;
    let notifications = state
        .db
        .blocking(move |connection| notify::list(connection, page.status.as_deref(), page.after, page.limit))
        .await?;
    let next = (notifications.len() == limit).then(|| notifications.last().map(|n| n.id.to_string())).flatten();
    json_answer(StatusCode::OK, &json!({"notifications": notifications, "next": next}))
}

/// `GET /billing/v1/reports/{name}`
pub async fn get_report(
    State(state): State<Arc<AppState>>,
    Segment(name): Segment,
    Query(params): Query<ReportParams>,
) -> Answer {
    let (query, format) = params.query(&name)?;
    let report = state.db.blocking(move |connection| reports::report(connection, &query)).await?;
    match format {
        ReportFormat::Json => json_answer(StatusCode::OK, &report.json),
        ReportFormat::Csv => {
            let body = report_csv(&report).map_err(|_| ApiError::internal("rendering CSV failed"))?;
            Ok(respond(StatusCode::OK, CSV, body))
        }
    }
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

/// `GET /billing/v1/reconciliation`
pub async fn get_reconciliation(State(state): State<Arc<AppState>>) -> Answer {
    let reconciliation = state.db.blocking(|connection| reconcile::reconcile(connection)).await?;
    json_answer(StatusCode::OK, &json!(reconciliation))
}
