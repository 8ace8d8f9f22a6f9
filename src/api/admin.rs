//! The ops listener: admin API (DESIGN §6) behind the admin token, plus `/metrics`,
//! `/healthz` and `/readyz`, which need no token.

use std::sync::Arc;
use std::time::Instant;

use ::http::{HeaderMap, Method};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::Request;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::http::{self, ApiResponse, BODY_LIMIT_BYTES};
use super::AppState;
use crate::domain::market::{ConfigChange, Market};
use crate::domain::model::FieldError;
use crate::domain::money::Money;
use crate::domain::returns::ReturnStatus;
use crate::store::outbox::Status;
use crate::store::returns::RETURNS_PAGE_MAX;
use crate::telemetry;

pub async fn route(
    state: &Arc<AppState>,
    request: Request<Incoming>,
    deadline: Instant,
) -> (&'static str, ApiResponse) {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            ("/metrics", http::bytes_response(200, "text/plain; version=0.0.4", Bytes::from(telemetry::render())))
        }
        (&Method::GET, ["healthz"]) => ("/healthz", http::json(200, &json!({"status": "ok"}))),
        (&Method::GET, ["readyz"]) => ready(state),
        (_, ["admin", "v1", ..]) => {
            if let Err(error) = authorize(state, &parts.headers) {
                return ("/admin", http::error(&error));
            }
            let body = match http::read_body(&parts.headers, body, BODY_LIMIT_BYTES, deadline).await {
                Ok(body) => body,
                Err(error) => return ("/admin", http::error(&error)),
            };
            let query = parts.uri.query();
            let (route, result) = admin(state, &parts.method, &segments[2..], query, &parts.headers, body).await;
            (route, result.unwrap_or_else(|e| http::error(&e)))
        }
        _ => ("unmatched", http::error(&ApiError::not_found())),
    }
}

fn ready(state: &AppState) -> (&'static str, ApiResponse) {
    if state.is_shutting_down() {
        ("/readyz", http::json(503, &json!({"status": "shutting_down"})))
    } else if let Some(problem) = state.router.store_problem() {
        ("/readyz", http::json(503, &json!({"status": problem})))
    } else {
        ("/readyz", http::json(200, &json!({"status": "ready"})))
    }
}

/// Compares digests, so the comparison time does not depend on how much of the token matched.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = http::bearer(headers).ok_or_else(ApiError::unauthorized)?;
    if Sha256::digest(token.as_bytes()) == Sha256::digest(state.admin_token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

async fn admin(
    state: &Arc<AppState>,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> (&'static str, Result<ApiResponse, ApiError>) {
    match (method, rest) {
        (&Method::POST, ["buyers", id, "topups"]) => {
            ("/admin/v1/buyers/{id}/topups", top_up(state, id, headers, body).await)
        }
        (&Method::POST, ["returns", id, "approve"]) => {
            ("/admin/v1/returns/{id}/approve", resolve_return(state, id, true, headers, body).await)
        }
        (&Method::POST, ["returns", id, "reject"]) => {
            ("/admin/v1/returns/{id}/reject", resolve_return(state, id, false, headers, body).await)
        }
        (&Method::GET, ["returns"]) => ("/admin/v1/returns", list_returns(state, query)),
        (&Method::GET, ["returns", id]) => ("/admin/v1/returns/{id}", get_return(state, id)),
        (&Method::GET, ["deliveries"]) => ("/admin/v1/deliveries", list_deliveries(state, query)),
        (&Method::GET, ["deliveries", id]) => ("/admin/v1/deliveries/{id}", get_delivery(state, id)),
        (&Method::POST, ["deliveries", id, "retry"]) => {
            ("/admin/v1/deliveries/{id}/retry", retry_delivery(state, id).await)
        }
        (_, ["returns" | "deliveries", ..]) => ("unmatched", Err(ApiError::method_not_allowed())),
        (&Method::POST, ["journal", "compact"]) => ("/admin/v1/journal/compact", compact(state, query).await),
        (&Method::GET, ["ledger", "consumers"]) => ("/admin/v1/ledger/consumers", consumers(state)),
        (&Method::DELETE, ["ledger", "consumers", name]) => {
            ("/admin/v1/ledger/consumers/{name}", forget_consumer(state, name).await)
        }
        (_, ["journal" | "ledger", ..]) => ("unmatched", Err(ApiError::method_not_allowed())),
        (&Method::GET, ["pings", id, "trace"]) => ("/admin/v1/pings/{id}/trace", trace(state, "ping", id)),
        (&Method::GET, ["leads", id, "trace"]) => ("/admin/v1/leads/{id}/trace", trace(state, "lead", id)),
        (_, [kind]) => match Kind::parse(kind) {
            Some(kind) if method == Method::GET => (kind.list_route(), Ok(list(state, kind))),
            Some(kind) => (kind.list_route(), Err(ApiError::method_not_allowed())),
            None => ("unmatched", Err(ApiError::not_found())),
        },
        (_, [kind, id]) => match Kind::parse(kind) {
            Some(kind) => (kind.item_route(), item(state, kind, method, id, headers, body).await),
            None => ("unmatched", Err(ApiError::not_found())),
        },
        _ => ("unmatched", Err(ApiError::not_found())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Suppliers,
    Buyers,
    Campaigns,
    Verticals,
}

impl Kind {
    fn parse(segment: &str) -> Option<Kind> {
        match segment {
            "suppliers" => Some(Kind::Suppliers),
            "buyers" => Some(Kind::Buyers),
            "campaigns" => Some(Kind::Campaigns),
            "verticals" => Some(Kind::Verticals),
            _ => None,
        }
    }

    fn list_route(self) -> &'static str {
        match self {
            Kind::Suppliers => "/admin/v1/suppliers",
            Kind::Buyers => "/admin/v1/buyers",
            Kind::Campaigns => "/admin/v1/campaigns",
            Kind::Verticals => "/admin/v1/verticals",
        }
    }

    fn item_route(self) -> &'static str {
        match self {
            Kind::Suppliers => "/admin/v1/suppliers/{id}",
            Kind::Buyers => "/admin/v1/buyers/{id}",
            Kind::Campaigns => "/admin/v1/campaigns/{id}",
            Kind::Verticals => "/admin/v1/verticals/{id}",
        }
    }

    /// The field that holds an object's id.
    fn id_field(self) -> &'static str {
        match self {
            Kind::Verticals => "name",
            _ => "id",
        }
    }
}

fn list(state: &AppState, kind: Kind) -> ApiResponse {
    let market = state.router.market();
    let config = market.config();
    match kind {
        Kind::Suppliers => http::json(200, &json!({ "suppliers": config.suppliers })),
        Kind::Buyers => http::json(200, &json!({ "buyers": config.buyers })),
        Kind::Campaigns => http::json(200, &json!({ "campaigns": config.campaigns })),
        Kind::Verticals => http::json(200, &json!({ "verticals": config.verticals })),
    }
}

async fn item(
    state: &Arc<AppState>,
    kind: Kind,
    method: &Method,
    id: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    let router = &state.router;
    match *method {
        Method::GET => {
            let market = router.market();
            found(&market, kind, id).ok_or_else(ApiError::not_found)
        }
        Method::DELETE => {
            let change = match kind {
                Kind::Suppliers => ConfigChange::DeleteSupplier(id.to_string()),
                Kind::Buyers => ConfigChange::DeleteBuyer(id.to_string()),
                Kind::Campaigns => ConfigChange::DeleteCampaign(id.to_string()),
                Kind::Verticals => ConfigChange::DeleteVertical(id.to_string()),
            };
            router.configure(change).await?;
            tracing::info!(kind = kind.list_route(), id, "deleted");
            Ok(http::empty(204))
        }
        Method::PUT => {
            http::require_content_type(headers, "application/json")?;
            let object = with_path_id(&body, kind.id_field(), id)?;
            let existed = found(&router.market(), kind, id).is_some();
            let change = match kind {
                Kind::Suppliers => ConfigChange::PutSupplier(from_value(object)?),
                Kind::Buyers => ConfigChange::PutBuyer(from_value(object)?),
                Kind::Campaigns => ConfigChange::PutCampaign(from_value(object)?),
                Kind::Verticals => ConfigChange::PutVertical(from_value(object)?),
            };
            router.configure(change).await?;
            tracing::info!(kind = kind.list_route(), id, created = !existed, "configured");
            let market = router.market();
            let mut response = found(&market, kind, id).ok_or_else(ApiError::not_found)?;
            if !existed {
                *response.status_mut() = http::StatusCode::CREATED;
            }
            Ok(response)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn found(market: &Market, kind: Kind, id: &str) -> Option<ApiResponse> {
    match kind {
        Kind::Suppliers => market.supplier(id).map(|s| http::json(200, &**s)),
        Kind::Buyers => market.buyer(id).map(|b| http::json(200, &**b)),
        Kind::Campaigns => market.campaign(id).map(|c| http::json(200, &c.campaign)),
        Kind::Verticals => market.vertical(id).map(|v| http::json(200, &**v)),
    }
}

/// The object of a PUT, with its id taken from the path when the body has none; a body id
/// that differs from the path is a 422.
fn with_path_id(body: &[u8], id_field: &str, id: &str) -> Result<Value, ApiError> {
    let mut object: Value = http::parse_json(body)?;
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::new(400, "invalid_type", "the body must be a JSON object"));
    };
    match map.get(id_field) {
        None => {
            map.insert(id_field.to_string(), Value::String(id.to_string()));
        }
        Some(Value::String(body_id)) if body_id == id => {}
        Some(_) => return Err(ApiError::invalid(vec![FieldError::new(id_field, "must equal the id in the path")])),
    }
    Ok(object)
}

fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    let text = value.to_string();
    http::parse_json(text.as_bytes())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    amount: Money,
    reference: String,
}

#[derive(Serialize)]
struct TopUpAnswer {
    buyer_id: String,
    amount: Money,
    reference: String,
    balance: Money,
    held: Money,
    available: Money,
}

async fn top_up(
    state: &Arc<AppState>,
    buyer_id: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    http::require_content_type(headers, "application/json")?;
    let request: TopUp = http::parse_json(&body)?;
    let view = state.router.top_up(buyer_id, request.amount, &request.reference).await?;
    tracing::info!(buyer = buyer_id, amount = %request.amount, "balance topped up");
    Ok(http::json(
        201,
        &TopUpAnswer {
            buyer_id: buyer_id.to_string(),
            amount: request.amount,
            reference: request.reference,
            balance: view.balance,
            held: view.held,
            available: view.available,
        },
    ))
}

fn retention(state: &AppState) -> Result<Arc<crate::retention::Retention>, ApiError> {
    state.retention.clone().ok_or_else(|| {
        ApiError::new(
            409,
            "not_embedded",
            "this node keeps its ledger on Redis: retention applies to embedded journals",
        )
    })
}

/// `POST /admin/v1/journal/compact[?dry_run=true]`: retention now (DESIGN §14).
async fn compact(state: &AppState, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let retention = retention(state)?;
    let dry_run = match query.unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("dry_run=")) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid(vec![FieldError::new("dry_run", "must be true or false")])),
    };
    let report = tokio::task::spawn_blocking(move || retention.compact(dry_run))
        .await
        .map_err(|e| ApiError::unavailable("storage_unavailable", e.to_string()))?
        .map_err(|e| ApiError::unavailable("storage_unavailable", e.to_string()))?;
    Ok(http::json(200, &report))
}

/// `GET /admin/v1/ledger/consumers`: who holds retention back, and how far each has read.
fn consumers(state: &AppState) -> Result<ApiResponse, ApiError> {
    let retention = retention(state)?;
    let log = Arc::clone(state.router.journal()).event_log();
    let consumers: Vec<Value> = retention
        .consumers()
        .list()
        .into_iter()
        .map(|(name, at)| json!({"name": name, "sequence": at.sequence, "at": at.at}))
        .collect();
    Ok(http::json(
        200,
        &json!({
            "consumers": consumers,
            "first_retained_sequence": log.first_sequence(),
            "last_sequence": log.last_sequence(),
        }),
    ))
}

/// `DELETE /admin/v1/ledger/consumers/{name}`: a consumer that is gone stops holding
/// retention back.
async fn forget_consumer(state: &AppState, name: &str) -> Result<ApiResponse, ApiError> {
    let retention = retention(state)?;
    let name = name.to_string();
    let forgotten = tokio::task::spawn_blocking(move || retention.consumers().forget(&name))
        .await
        .map_err(|e| ApiError::unavailable("storage_unavailable", e.to_string()))?
        .map_err(|e| ApiError::unavailable("storage_unavailable", e.to_string()))?;
    if forgotten {
        Ok(http::empty(204))
    } else {
        Err(ApiError::not_found())
    }
}

fn trace(state: &AppState, kind: &str, id: &str) -> Result<ApiResponse, ApiError> {
    match state.router.trace(id) {
        Some(trace) if trace.kind == kind => Ok(http::json(200, &*trace)),
        _ => Err(ApiError::not_found()),
    }
}

/// The body of approve (optional) and reject (required): the operator's reason.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Resolution {
    #[serde(default)]
    reason: Option<String>,
}

async fn resolve_return(
    state: &Arc<AppState>,
    return_id: &str,
    approve: bool,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    let resolution: Resolution = if body.is_empty() && approve {
        Resolution::default()
    } else {
        http::require_content_type(headers, "application/json")?;
        http::parse_json(&body)?
    };
    let resolved = state.router.resolve_return(return_id, approve, resolution.reason).await?;
    tracing::info!(return_id, status = resolved.status.as_str(), "return resolved");
    Ok(http::json(200, &resolved))
}

fn list_returns(state: &AppState, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let query = http::list_query(query, &["status"], 100, RETURNS_PAGE_MAX)?;
    let after = http::numeric_cursor(query.after)?;
    let status = super::returns::status_filter(&query.filters)?.unwrap_or(ReturnStatus::Pending);
    let page = state.router.returns_with_status(status, after, query.limit);
    let next = page.last().map_or(after, |stored| stored.created);
    let returns: Vec<_> = page.into_iter().map(|stored| stored.lead_return).collect();
    Ok(http::json(200, &json!({"returns": returns, "next": next.to_string()})))
}

fn get_return(state: &AppState, return_id: &str) -> Result<ApiResponse, ApiError> {
    let found = state.router.any_return(return_id).ok_or_else(ApiError::not_found)?;
    Ok(http::json(200, &found))
}

/// `GET /admin/v1/deliveries?status=dead_letter|pending`: outbox deliveries (dead letters
/// when no status is given), oldest first, without their bodies.
fn list_deliveries(state: &AppState, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let query = http::list_query(query, &["status"], 100, 1_000)?;
    let status = match query.filters.first() {
        None | Some((_, "")) => Status::DeadLetter,
        Some((_, value)) => Status::parse(value)
            .ok_or_else(|| ApiError::invalid(vec![FieldError::new("status", "one of pending, dead_letter")]))?,
    };
    let page = state.router.deliveries(status, query.after, query.limit);
    let next = page.last().map(|delivery| delivery.id.clone());
    Ok(http::json(200, &json!({"deliveries": page, "next": next})))
}

fn get_delivery(state: &AppState, id: &str) -> Result<ApiResponse, ApiError> {
    let found = state.router.delivery(id).ok_or_else(ApiError::not_found)?;
    Ok(http::json(200, &found))
}

async fn retry_delivery(state: &AppState, id: &str) -> Result<ApiResponse, ApiError> {
    let revived = state.router.retry_delivery(id).await?;
    tracing::info!(delivery = id, "dead letter retried by an operator");
    Ok(http::json(202, &revived))
}
