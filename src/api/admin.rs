//! The ops listener's handlers: the admin API (DESIGN §6; `api::ops_service` puts it behind
//! the admin token) and `/metrics`, `/healthz` and `/readyz`, which need no token.

use std::sync::Arc;

use ::http::HeaderMap;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::caller::Acting;
use super::error::ApiError;
use super::http::{self, ApiResponse, Buffered};
use super::AppState;
use crate::domain::market::{ConfigChange, Market};
use crate::domain::model::{Buyer, Campaign, FieldError};
use crate::domain::money::Money;
use crate::domain::operator::Actor;
use crate::domain::returns::ReturnStatus;
use crate::engine::ports::outbox::Status;
use crate::engine::ports::returns::RETURNS_PAGE_MAX;
use crate::engine::test_send::{TestRequest, TestStage};
use crate::telemetry;

type Answer = Result<ApiResponse, ApiError>;
type Shared = State<Arc<AppState>>;

/// The admin API's routes, relative to `/admin/v1`.
pub fn routes() -> axum::Router<Arc<AppState>> {
    let mut routes = axum::Router::new()
        .route("/buyers/{id}/topups", post(top_up))
        .route("/returns", get(list_returns))
        .route("/returns/{id}", get(get_return))
        .route(
            "/returns/{id}/approve",
            post(|state: Shared, Path(id): Path<String>, acting: Acting, Buffered { headers, body }: Buffered| {
                resolve_return(state, id, true, acting, headers, body)
            }),
        )
        .route(
            "/returns/{id}/reject",
            post(|state: Shared, Path(id): Path<String>, acting: Acting, Buffered { headers, body }: Buffered| {
                resolve_return(state, id, false, acting, headers, body)
            }),
        )
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{id}", get(get_delivery))
        .route("/deliveries/{id}/retry", post(retry_delivery))
        .route("/journal/compact", post(compact))
        .route("/campaigns/{id}/test", post(test_send))
        .route("/ledger/consumers", get(consumers))
        .route("/ledger/consumers/{name}", delete(forget_consumer))
        .route("/operators", get(list_operators))
        .route("/operators/{name}", get(get_operator).put(put_operator).delete(delete_operator))
        .route("/changes", get(list_changes))
        .route(
            "/pings/{id}/trace",
            get(|state: Shared, Path(id): Path<String>| async move { trace(state, "ping", id) }),
        )
        .route(
            "/leads/{id}/trace",
            get(|state: Shared, Path(id): Path<String>| async move { trace(state, "lead", id) }),
        );
    for kind in Kind::ALL {
        routes = routes.route(kind.path(), get(move |State(state): Shared| async move { list(&state, kind) })).route(
            &format!("{}/{{id}}", kind.path()),
            get(move |State(state): Shared, Path(id): Path<String>| async move {
                found(&state.router.market(), kind, &id).ok_or_else(ApiError::not_found)
            })
            .put(move |state: Shared, Path(id): Path<String>, acting: Acting, Buffered { headers, body }: Buffered| {
                put_item(state, kind, id, acting, headers, body)
            })
            .delete(move |state: Shared, Path(id): Path<String>, acting: Acting| delete_item(state, kind, id, acting)),
        );
    }
    routes
}

pub async fn metrics() -> ApiResponse {
    http::bytes_response(200, "text/plain; version=0.0.4", Bytes::from(telemetry::render()))
}

pub async fn healthz() -> ApiResponse {
    http::json(200, &json!({"status": "ok"}))
}

pub async fn readyz(State(state): Shared) -> ApiResponse {
    if state.is_shutting_down() {
        http::json(503, &json!({"status": "shutting_down"}))
    } else if let Some(problem) = state.router.store_problem() {
        http::json(503, &json!({"status": problem}))
    } else {
        http::json(200, &json!({"status": "ready"}))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Suppliers,
    Buyers,
    Campaigns,
    Verticals,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Suppliers, Kind::Buyers, Kind::Campaigns, Kind::Verticals];

    /// The collection's path under `/admin/v1`.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Kind::Suppliers => "/suppliers",
            Kind::Buyers => "/buyers",
            Kind::Campaigns => "/campaigns",
            Kind::Verticals => "/verticals",
        }
    }

    /// The field that holds an object's id.
    pub(crate) fn id_field(self) -> &'static str {
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
        Kind::Buyers => {
            let buyers: Vec<_> = config.buyers.iter().map(Buyer::redacted).collect();
            http::json(200, &json!({ "buyers": buyers }))
        }
        Kind::Campaigns => {
            let campaigns: Vec<_> = config.campaigns.iter().map(Campaign::redacted).collect();
            http::json(200, &json!({ "campaigns": campaigns }))
        }
        Kind::Verticals => http::json(200, &json!({ "verticals": config.verticals })),
    }
}

async fn delete_item(State(state): Shared, kind: Kind, id: String, Acting(by): Acting) -> Answer {
    let change = match kind {
        Kind::Suppliers => ConfigChange::DeleteSupplier(id.clone()),
        Kind::Buyers => ConfigChange::DeleteBuyer(id.clone()),
        Kind::Campaigns => ConfigChange::DeleteCampaign(id.clone()),
        Kind::Verticals => ConfigChange::DeleteVertical(id.clone()),
    };
    state.router.accounts().configure(change, &by).await?;
    tracing::info!(kind = kind.path(), id, %by, "deleted");
    Ok(http::empty(204))
}

async fn put_item(
    State(state): Shared,
    kind: Kind,
    id: String,
    Acting(by): Acting,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let router = &state.router;
    http::require_content_type(&headers, "application/json")?;
    let object = with_path_id(&body, kind.id_field(), &id)?;
    let existed = put_object(router, kind, &id, object, &by).await?;
    let market = router.market();
    let mut response = found(&market, kind, &id).ok_or_else(ApiError::not_found)?;
    if !existed {
        *response.status_mut() = http::StatusCode::CREATED;
    }
    Ok(response)
}

/// Stores `object` as the `kind` named `id`, validated as every admin change is, made by
/// `by`; answers whether it existed before. (The admin API's PUT and the console's forms.)
pub(crate) async fn put_object(
    router: &crate::engine::Router,
    kind: Kind,
    id: &str,
    object: Value,
    by: &Actor,
) -> Result<bool, ApiError> {
    let existed = found(&router.market(), kind, id).is_some();
    let change = match kind {
        Kind::Suppliers => ConfigChange::PutSupplier(from_value(object)?),
        Kind::Buyers => ConfigChange::PutBuyer(from_value(object)?),
        Kind::Campaigns => ConfigChange::PutCampaign(from_value(object)?),
        Kind::Verticals => ConfigChange::PutVertical(from_value(object)?),
    };
    router.accounts().configure(change, by).await?;
    tracing::info!(kind = kind.path(), id, created = !existed, %by, "configured");
    Ok(existed)
}

/// The `kind` named `id` as the admin API shows it (secrets as `***`), as indented JSON in
/// its fields' order: what the console's editor starts from.
pub(crate) fn shown(market: &Market, kind: Kind, id: &str) -> Option<String> {
    match kind {
        Kind::Suppliers => market.supplier(id).and_then(|s| serde_json::to_string_pretty(&**s).ok()),
        Kind::Buyers => market.buyer(id).and_then(|b| serde_json::to_string_pretty(&b.redacted()).ok()),
        Kind::Campaigns => market.campaign(id).and_then(|c| serde_json::to_string_pretty(&c.campaign.redacted()).ok()),
        Kind::Verticals => market.vertical(id).and_then(|v| serde_json::to_string_pretty(&**v).ok()),
    }
}

/// The `kind` named `id` as the admin API answers it.
fn found(market: &Market, kind: Kind, id: &str) -> Option<ApiResponse> {
    match kind {
        Kind::Suppliers => market.supplier(id).map(|s| http::json(200, &**s)),
        Kind::Buyers => market.buyer(id).map(|b| http::json(200, &b.redacted())),
        Kind::Campaigns => market.campaign(id).map(|c| http::json(200, &c.campaign.redacted())),
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
    leased: Money,
}

async fn top_up(
    State(state): Shared,
    Path(buyer_id): Path<String>,
    Acting(by): Acting,
    Buffered { headers, body }: Buffered,
) -> Answer {
    http::require_content_type(&headers, "application/json")?;
    let request: TopUp = http::parse_json(&body)?;
    let view = state.router.accounts().top_up(&buyer_id, request.amount, &request.reference, &by).await?;
    tracing::info!(buyer = buyer_id, amount = %request.amount, %by, "balance topped up");
    Ok(http::json(
        201,
        &TopUpAnswer {
            buyer_id,
            amount: request.amount,
            reference: request.reference,
            balance: view.balance,
            held: view.held,
            available: view.available,
            leased: view.leased,
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
async fn compact(State(state): Shared, RawQuery(query): RawQuery) -> Answer {
    let retention = retention(&state)?;
    let dry_run = flag(query.as_deref(), "dry_run", false)?;
    let report = tokio::task::spawn_blocking(move || retention.compact(dry_run))
        .await
        .map_err(|e| ApiError::unavailable("storage_unavailable", e.to_string()))?
        .map_err(|e| ApiError::unavailable("storage_unavailable", e.to_string()))?;
    Ok(http::json(200, &report))
}

/// A `true`/`false` query parameter, `default` when absent.
fn flag(query: Option<&str>, name: &str, default: bool) -> Result<bool, ApiError> {
    let pairs = http::query_pairs(query)?;
    match pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ApiError::invalid(vec![FieldError::new(name, "must be true or false")])),
    }
}

/// `POST /admin/v1/campaigns/{id}/test[?send=false]` (DESIGN §5.1): renders the
/// campaign's ping or post with a sample (or the given) lead and, unless `send=false`,
/// sends it and reads the answer. Nothing is held, sold, journaled or charged.
async fn test_send(
    State(state): Shared,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    Buffered { headers, body }: Buffered,
) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        stage: TestStage,
        #[serde(default)]
        lead: Option<Value>,
    }
    let send = flag(query.as_deref(), "send", true)?;
    http::require_content_type(&headers, "application/json")?;
    let Body { stage, lead } = http::parse_json(&body)?;
    let report = state.router.test_sends().run(&id, TestRequest { stage, lead, send }).await?;
    tracing::info!(campaign = id, ?stage, send, "campaign test send");
    Ok(http::json(200, &report))
}

/// `GET /admin/v1/ledger/consumers`: who holds retention back, and how far each has read.
async fn consumers(State(state): Shared) -> Answer {
    let retention = retention(&state)?;
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
async fn forget_consumer(State(state): Shared, Path(name): Path<String>) -> Answer {
    let retention = retention(&state)?;
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

fn trace(State(state): Shared, kind: &str, id: String) -> Answer {
    match state.router.auction().trace(&id) {
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
    State(state): Shared,
    return_id: String,
    approve: bool,
    Acting(by): Acting,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let resolution: Resolution = if body.is_empty() && approve {
        Resolution::default()
    } else {
        http::require_content_type(&headers, "application/json")?;
        http::parse_json(&body)?
    };
    let resolved = state.router.returns().resolve_return(&return_id, approve, resolution.reason, &by).await?;
    tracing::info!(return_id, status = resolved.status.as_str(), %by, "return resolved");
    Ok(http::json(200, &resolved))
}

async fn list_returns(State(state): Shared, RawQuery(query): RawQuery) -> Answer {
    let query = http::list_query(query.as_deref(), &["status"], 100, RETURNS_PAGE_MAX)?;
    let after = http::numeric_cursor(query.after.as_deref())?;
    let status = super::returns::status_filter(&query)?.unwrap_or(ReturnStatus::Pending);
    let page = state.router.returns().returns_with_status(status, after, query.limit);
    let next = page.last().map_or(after, |stored| stored.created);
    let returns: Vec<_> = page.into_iter().map(|stored| stored.lead_return).collect();
    Ok(http::json(200, &json!({"returns": returns, "next": next.to_string()})))
}

async fn get_return(State(state): Shared, Path(return_id): Path<String>) -> Answer {
    let found = state.router.returns().any_return(&return_id).ok_or_else(ApiError::not_found)?;
    Ok(http::json(200, &found))
}

/// `GET /admin/v1/deliveries?status=dead_letter|pending`: outbox deliveries (dead letters
/// when no status is given), oldest first, without their bodies.
async fn list_deliveries(State(state): Shared, RawQuery(query): RawQuery) -> Answer {
    let query = http::list_query(query.as_deref(), &["status"], 100, 1_000)?;
    let status = match query.filter("status") {
        None | Some("") => Status::DeadLetter,
        Some(value) => Status::parse(value)
            .ok_or_else(|| ApiError::invalid(vec![FieldError::new("status", "one of pending, dead_letter")]))?,
    };
    let page = state.router.deliveries().list(status, query.after.as_deref(), query.limit);
    let next = page.last().map(|delivery| delivery.id.clone());
    Ok(http::json(200, &json!({"deliveries": page, "next": next})))
}

async fn get_delivery(State(state): Shared, Path(id): Path<String>) -> Answer {
    let found = state.router.deliveries().get(&id).ok_or_else(ApiError::not_found)?;
    Ok(http::json(200, &found))
}

async fn retry_delivery(State(state): Shared, Path(id): Path<String>) -> Answer {
    let revived = state.router.deliveries().retry(&id).await?;
    tracing::info!(delivery = id, "dead letter retried by an operator");
    Ok(http::json(202, &revived))
}

/// `GET /admin/v1/operators`: every operator account by name, with when it was added and
/// when its password was last set; never a hash.
async fn list_operators(State(state): Shared) -> ApiResponse {
    http::json(200, &json!({ "operators": state.router.accounts().operators() }))
}

async fn get_operator(State(state): Shared, Path(name): Path<String>) -> Answer {
    let found = state.router.accounts().operator(&name).ok_or_else(ApiError::not_found)?;
    Ok(http::json(200, &found))
}

/// `PUT /admin/v1/operators/{name}` `{"password_hash": "$argon2id$..."}`: adds an operator
/// (201) or replaces its password hash (200); the answer is the operator without its hash.
/// The hash is made where the password is typed (`leadrouter operator add`): the server
/// never sees a password.
async fn put_operator(
    State(state): Shared,
    Path(name): Path<String>,
    Acting(by): Acting,
    Buffered { headers, body }: Buffered,
) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        name: Option<String>,
        password_hash: String,
    }
    http::require_content_type(&headers, "application/json")?;
    let request: Body = http::parse_json(&body)?;
    if request.name.as_ref().is_some_and(|body_name| *body_name != name) {
        return Err(ApiError::invalid(vec![FieldError::new("name", "must equal the name in the path")]));
    }
    let (operator, created) = state.router.accounts().put_operator(&name, &request.password_hash, &by).await?;
    tracing::info!(operator = %operator.name, created, %by, "operator set");
    Ok(http::json(if created { 201 } else { 200 }, &operator))
}

async fn delete_operator(State(state): Shared, Path(name): Path<String>, Acting(by): Acting) -> Answer {
    state.router.accounts().remove_operator(&name, &by).await?;
    tracing::info!(operator = name, %by, "operator removed");
    Ok(http::empty(204))
}

/// `GET /admin/v1/changes?limit=&before=`: every admin change, newest first (`before`: the
/// `next` of the page before), each with who made it and when, its kind, object and a
/// summary without secrets. `next` is absent on the last page.
async fn list_changes(State(state): Shared, RawQuery(query): RawQuery) -> Answer {
    let query = http::list_query(query.as_deref(), &["before"], 50, 1_000)?;
    if query.after.is_some() {
        return Err(ApiError::invalid(vec![FieldError::new("after", "unknown parameter: pages go by before")]));
    }
    let before = query.filter("before").filter(|before| !before.is_empty());
    let page = state.router.accounts().changes(before, query.limit).await?;
    let next = page.last().filter(|_| page.len() == query.limit).map(|change| change.id.clone());
    Ok(http::json(200, &json!({"changes": page, "next": next})))
}
