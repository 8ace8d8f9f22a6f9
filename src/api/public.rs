//! Supplier and buyer endpoints of the public listener (DESIGN §4).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::{HeaderMap, Method};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::Request;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::http::{self, ApiResponse, BODY_LIMIT_BYTES, BULK_BODY_LIMIT_BYTES};
use super::{bulk, returns, AppState};
use crate::domain::lead::{LeadInput, PingInput};
use crate::domain::market::Party;
use crate::domain::model::FieldError;
use crate::engine::{EngineError, PostInput, Router};
use crate::store::idempotency::{Begin, StoredAnswer};
use crate::store::pull::PULL_LIMIT_MAX;

/// Idempotency keys are opaque client strings; 255 printable characters is what the
/// common client libraries generate at most.
const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// What a route reads before its handler runs.
#[derive(Clone, Copy)]
enum Reads {
    Nothing,
    Json,
    Bulk,
}

/// The route's name (for metrics) and what it reads, or None for a path we do not serve.
fn endpoint(method: &Method, path: &str) -> Option<Result<(&'static str, Reads), ApiError>> {
    let found = match (method, path) {
        (&Method::POST, "/v1/ping") => ("/v1/ping", Reads::Json),
        (&Method::POST, "/v1/post") => ("/v1/post", Reads::Json),
        (&Method::POST, "/v1/leads") => ("/v1/leads", Reads::Json),
        (&Method::POST, "/v1/leads/bulk") => ("/v1/leads/bulk", Reads::Bulk),
        (&Method::GET, "/v1/buyer/balance") => ("/v1/buyer/balance", Reads::Nothing),
        (&Method::GET, "/v1/buyer/leads") => ("/v1/buyer/leads", Reads::Nothing),
        (&Method::POST, "/v1/returns") => ("/v1/returns", Reads::Json),
        (&Method::POST, "/v1/returns/bulk") => ("/v1/returns/bulk", Reads::Bulk),
        (&Method::GET, "/v1/returns") => ("/v1/returns", Reads::Nothing),
        (&Method::GET, "/v1/supplier/returns") => ("/v1/supplier/returns", Reads::Nothing),
        (&Method::GET, _) if path.strip_prefix("/v1/returns/").is_some_and(|id| !id.contains('/')) => {
            ("/v1/returns/{id}", Reads::Nothing)
        }
        (
            _,
            "/v1/ping"
            | "/v1/post"
            | "/v1/leads"
            | "/v1/leads/bulk"
            | "/v1/buyer/balance"
            | "/v1/buyer/leads"
            | "/v1/returns"
            | "/v1/returns/bulk"
            | "/v1/supplier/returns",
        ) => return Some(Err(ApiError::method_not_allowed())),
        _ => return None,
    };
    Some(Ok(found))
}

/// Answers one request of the public listener. The order is what keeps one client from
/// locking others out: an unknown key is refused before a byte of body is read; the body
/// is read by its deadline holding a connection but no permit; only then is a permit taken,
/// at most `--max-in-flight-per-key` of them by one key.
pub async fn route(
    state: &Arc<AppState>,
    request: Request<Incoming>,
    deadline: Instant,
) -> (&'static str, ApiResponse) {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().trim_end_matches('/');
    let (route, reads) = match endpoint(&parts.method, path) {
        None => return ("unmatched", http::error(&ApiError::not_found())),
        Some(Err(refusal)) => return ("method_not_allowed", http::error(&refusal)),
        Some(Ok(found)) => found,
    };
    let admitted = async {
        let party = party_key(state, &parts.headers)?;
        let (body, bulk) = match reads {
            Reads::Nothing => (Bytes::new(), None),
            Reads::Json => (http::read_body(&parts.headers, body, BODY_LIMIT_BYTES, deadline).await?, None),
            Reads::Bulk => {
                // Held until the answer: a bulk body stays in memory while its rows are sold.
                let bulk = state.in_flight.bulk_read().ok_or_else(overloaded)?;
                let deadline = deadline.max(Instant::now() + BULK_BODY_TIME);
                (http::read_body(&parts.headers, body, BULK_BODY_LIMIT_BYTES, deadline).await?, Some(bulk))
            }
        };
        let permit = state.in_flight.admit(&party).ok_or_else(overloaded)?;
        Ok::<_, ApiError>(((permit, bulk), body))
    };
    let (_permits, body) = match admitted.await {
        Ok(admitted) => admitted,
        Err(error) => return (route, http::error(&error)),
    };
    let (headers, query) = (&parts.headers, parts.uri.query());
    let result = match route {
        "/v1/ping" => ping(state, headers, body).await,
        "/v1/post" => post(state, headers, body).await,
        "/v1/leads" => direct(state, headers, body).await,
        "/v1/leads/bulk" => bulk_leads(state, headers, body).await,
        "/v1/buyer/balance" => balance(state, headers).await,
        "/v1/buyer/leads" => pull_leads(state, headers, query).await,
        "/v1/returns" if parts.method == Method::POST => returns::request(state, headers, body).await,
        "/v1/returns/bulk" => returns::bulk(state, headers, body).await,
        "/v1/returns" => returns::list(state, headers, query),
        "/v1/supplier/returns" => returns::supplier_feed(state, headers, query),
        _ => returns::get(state, headers, path.trim_start_matches("/v1/returns/")),
    };
    (route, result.unwrap_or_else(|e| http::error(&e)))
}

/// A bulk body of 16 MiB gets at least this long, however short `--body-timeout-ms` is.
const BULK_BODY_TIME: Duration = Duration::from_secs(60);

fn overloaded() -> ApiError {
    ApiError::unavailable("overloaded", "too many requests in flight; retry shortly")
}

/// Whose request this is, for the per-key bound: a supplier's id or `buyer/<id>`. A missing
/// or unknown key is answered 401 here, before its body is read.
fn party_key(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let key = http::bearer(headers).ok_or_else(ApiError::unauthorized)?;
    match state.router.market().party(key) {
        None => Err(ApiError::unauthorized()),
        Some(Party::Supplier(id)) => Ok(id.clone()),
        Some(Party::Buyer(id)) => Ok(format!("buyer/{id}")),
    }
}

/// Authenticates a supplier key and applies its rate limit.
pub(super) fn supplier(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let key = http::bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let market = state.router.market();
    let id = match market.party(key) {
        None => return Err(ApiError::unauthorized()),
        Some(Party::Buyer(_)) => {
            return Err(ApiError::forbidden("this endpoint is for suppliers; the key belongs to a buyer"))
        }
        Some(Party::Supplier(id)) => id,
    };
    let supplier = market.supplier(id).ok_or_else(ApiError::unauthorized)?;
    if !supplier.active {
        return Err(ApiError::forbidden("this supplier is not active"));
    }
    if let Some(rate) = supplier.rate_limit_per_s {
        if !state.rate_limits.allow(id, rate, std::time::Instant::now()) {
            return Err(ApiError::rate_limited());
        }
    }
    Ok(id.clone())
}

pub(super) fn buyer(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let key = http::bearer(headers).ok_or_else(ApiError::unauthorized)?;
    match state.router.market().party(key) {
        None => Err(ApiError::unauthorized()),
        Some(Party::Supplier(_)) => {
            Err(ApiError::forbidden("this endpoint is for buyers; the key belongs to a supplier"))
        }
        Some(Party::Buyer(id)) => Ok(id.clone()),
    }
}

pub(super) fn json_body(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    http::require_content_type(headers, "application/json")?;
    Ok(body)
}

async fn ping(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Result<ApiResponse, ApiError> {
    let supplier_id = supplier(state, headers)?;
    let body = json_body(headers, body)?;
    let input: PingInput = http::parse_json(&body)?;
    let router = Arc::clone(&state.router);
    let answer = detached(async move { router.ping(&supplier_id, input).await }).await?;
    Ok(http::json(200, &answer))
}

async fn post(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Result<ApiResponse, ApiError> {
    let supplier_id = supplier(state, headers)?;
    let body = json_body(headers, body)?;
    once(state, "/v1/post", 200, &supplier_id, headers, body, |router, supplier_id, body| async move {
        let input: PostInput = http::parse_json(&body)?;
        Ok(router.post(&supplier_id, input).await?)
    })
    .await
}

async fn direct(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Result<ApiResponse, ApiError> {
    let supplier_id = supplier(state, headers)?;
    let body = json_body(headers, body)?;
    once(state, "/v1/leads", 200, &supplier_id, headers, body, |router, supplier_id, body| async move {
        let input: LeadInput = http::parse_json(&body)?;
        Ok(router.direct(&supplier_id, input).await?)
    })
    .await
}

async fn bulk_leads(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Result<ApiResponse, ApiError> {
    let supplier_id = supplier(state, headers)?;
    http::require_content_type(headers, "text/csv")?;
    let rows = bulk::parse(&body).map_err(|e| ApiError::new(422, "invalid_csv", e.to_string()))?;
    let router = Arc::clone(&state.router);
    let results = detached(async move { Ok::<_, EngineError>(router.bulk(&supplier_id, rows).await) }).await?;
    Ok(row_results(results.into_iter().map(|result| result.map_err(ApiError::from))))
}

/// A bulk answer: one result per row, in order, numbered from 1; a failed row carries the
/// error JSON a single request would have got and its `http_status`.
pub(super) fn row_results<T: Serialize>(results: impl Iterator<Item = Result<T, ApiError>>) -> ApiResponse {
    let rows: Vec<serde_json::Value> = results
        .enumerate()
        .map(|(i, result)| {
            let mut row = match result {
                Ok(answer) => serde_json::to_value(&answer).unwrap_or_default(),
                Err(error) => {
                    json!({"error": {"code": error.code, "message": error.message, "details": error.details}, "http_status": error.status})
                }
            };
            if let Some(object) = row.as_object_mut() {
                object.insert("row".into(), json!(i + 1));
            }
            row
        })
        .collect();
    http::json(200, &json!({ "results": rows }))
}

async fn balance(state: &Arc<AppState>, headers: &HeaderMap) -> Result<ApiResponse, ApiError> {
    let buyer_id = buyer(state, headers)?;
    let (view, currency) = state.router.balance(&buyer_id).await?;
    Ok(http::json(
        200,
        &json!({"balance": view.balance, "held": view.held, "available": view.available, "currency": currency}),
    ))
}

/// `GET /v1/buyer/leads?after=<cursor>&limit=<n>`: the leads of the buyer's pull
/// campaigns after its cursor, oldest first; `next` is the cursor to pass back.
async fn pull_leads(state: &Arc<AppState>, headers: &HeaderMap, query: Option<&str>) -> Result<ApiResponse, ApiError> {
    let buyer_id = buyer(state, headers)?;
    let mut after = 0u64;
    let mut limit = 100usize;
    let mut errors = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "after" => match value.parse() {
                Ok(cursor) => after = cursor,
                Err(_) => errors.push(FieldError::new("after", "a cursor from an earlier answer's `next`")),
            },
            "limit" => match value.parse() {
                Ok(n) if (1..=PULL_LIMIT_MAX).contains(&n) => limit = n,
                _ => errors.push(FieldError::new("limit", format!("between 1 and {PULL_LIMIT_MAX}"))),
            },
            _ => errors.push(FieldError::new(name.to_string(), "unknown parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let leads = state.router.pull_leads(&buyer_id, after, limit).await?;
    let next = leads.last().map_or(after, |(position, _)| *position);
    let leads: Vec<serde_json::Value> = leads
        .into_iter()
        .map(|(position, mut lead)| {
            if let Some(object) = lead.as_object_mut() {
                object.insert("cursor".into(), json!(position.to_string()));
            }
            lead
        })
        .collect();
    Ok(http::json(200, &json!({"leads": leads, "next": next.to_string()})))
}

/// Runs engine work in its own task: a client that hangs up must not cancel a sale
/// half-way (a buyer may already have the lead).
pub(super) async fn detached<T, F>(work: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, EngineError>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::new(500, "internal", "the request could not be completed")),
    }
}

/// `Idempotency-Key` handling: the first request with a key runs, later ones with the same
/// body get its answer, ones with another body get 409. Keys are per party: a supplier id,
/// or `buyer/<id>` (no id can contain `/`).
pub(super) async fn once<F, Fut, T>(
    state: &Arc<AppState>,
    route: &str,
    success: u16,
    party: &str,
    headers: &HeaderMap,
    body: Bytes,
    work: F,
) -> Result<ApiResponse, ApiError>
where
    F: FnOnce(Arc<Router>, String, Bytes) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Serialize,
{
    let router = Arc::clone(&state.router);
    let run = move |router: Arc<Router>, party: String, body: Bytes| async move {
        match work(router, party, body).await {
            Ok(answer) => match serde_json::to_vec(&answer) {
                Ok(mut json) => {
                    json.push(b'\n');
                    StoredAnswer { status: success, body: Bytes::from(json) }
                }
                Err(_) => StoredAnswer {
                    status: 500,
                    body: ApiError::new(500, "internal", "could not encode the answer").to_json(),
                },
            },
            Err(error) => StoredAnswer { status: error.status, body: error.to_json() },
        }
    };
    let Some(key) = headers.get("idempotency-key") else {
        let party = party.to_string();
        let answer = tokio::spawn(run(router, party, body))
            .await
            .map_err(|_| ApiError::new(500, "internal", "the request could not be completed"))?;
        return Ok(http::bytes_response(answer.status, "application/json", answer.body));
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX)
        .ok_or_else(|| {
            ApiError::new(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?
        .to_string();
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(&body);
    let body_hash: [u8; 32] = hasher.finalize().into();
    let (begin, record) = router.idempotency().begin(party, &key, body_hash, router.clock().now());
    if begin == Begin::Conflict {
        return Err(ApiError::new(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request body",
        ));
    }
    let replayed = record.answer.initialized();
    let owner = party.to_string();
    let task_record = Arc::clone(&record);
    let task_router = Arc::clone(&router);
    let task_key = key.clone();
    let answer = tokio::spawn(async move {
        task_record
            .answer
            .get_or_init(|| async move {
                // On several nodes another node may have (or be giving) the answer already.
                match task_router.shared_answer(&owner, &task_key, body_hash).await {
                    Ok(Some(answer)) => return answer,
                    Ok(None) => {}
                    Err(error) => {
                        let error = ApiError::from(error);
                        return StoredAnswer { status: error.status, body: error.to_json() };
                    }
                }
                let answer = run(Arc::clone(&task_router), owner.clone(), body).await;
                if replayable(answer.status) {
                    if let Err(error) = task_router.journal_answer(&owner, &task_key, body_hash, &answer).await {
                        // The sale itself is journaled; only a retry after a crash could miss
                        // this answer (and the external id still guards a resale).
                        tracing::warn!(%error, "idempotency record not journaled");
                    }
                } else {
                    task_router.release_answer(&owner, &task_key).await;
                }
                answer
            })
            .await
            .clone()
    })
    .await
    .map_err(|_| ApiError::new(500, "internal", "the request could not be completed"))?;
    if !replayable(answer.status) {
        router.idempotency().forget(party, &key, &record);
    }
    let mut response = http::bytes_response(answer.status, "application/json", answer.body);
    if replayed {
        response.headers_mut().insert("idempotent-replayed", ::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Answers a retry may be given again: not rate limiting, overload or our own failures.
fn replayable(status: u16) -> bool {
    status != 429 && status < 500
}
