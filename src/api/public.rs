//! Lead endpoints of the public listener (DESIGN §4): ping, post, direct and bulk posts for
//! suppliers; balance and pull for buyers; and what the return endpoints share with them
//! (idempotent replay, detached engine work, bulk answers).

use std::future::Future;
use std::sync::Arc;

use ::http::HeaderMap;
use axum::extract::{RawQuery, State};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::caller::{Buyer, Supplier};
use super::error::ApiError;
use super::http::{self, ApiResponse, Buffered};
use super::{bulk, AppState};
use crate::domain::lead::{LeadInput, PingInput};
use crate::engine::ports::idempotency::{Begin, StoredAnswer};
use crate::engine::ports::pull::PULL_LIMIT_MAX;
use crate::engine::{EngineError, PostInput, Router};

/// Idempotency keys are opaque client strings; 255 printable characters is what the
/// common client libraries generate at most.
const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

pub(super) fn json_body(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    http::require_content_type(headers, "application/json")?;
    Ok(body)
}

pub async fn ping(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    let body = json_body(&headers, body)?;
    let input: PingInput = http::parse_json(&body)?;
    let router = Arc::clone(&state.router);
    let answer = detached(async move { router.auction().ping(&supplier_id, input).await }).await?;
    Ok(http::json(200, &answer))
}

pub async fn post(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    let body = json_body(&headers, body)?;
    once(&state, "/v1/post", 200, &supplier_id, &headers, body, |router, supplier_id, body| async move {
        let input: PostInput = http::parse_json(&body)?;
        Ok(router.auction().post(&supplier_id, input).await?)
    })
    .await
}

pub async fn direct(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    let body = json_body(&headers, body)?;
    once(&state, "/v1/leads", 200, &supplier_id, &headers, body, |router, supplier_id, body| async move {
        let input: LeadInput = http::parse_json(&body)?;
        Ok(router.auction().direct(&supplier_id, input).await?)
    })
    .await
}

pub async fn bulk_leads(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    http::require_content_type(&headers, "text/csv")?;
    let rows = bulk::parse(&body).map_err(|e| ApiError::new(422, "invalid_csv", e.to_string()))?;
    let router = Arc::clone(&state.router);
    let results =
        detached(async move { Ok::<_, EngineError>(router.auction().bulk(&supplier_id, rows).await) }).await?;
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

pub async fn balance(State(state): State<Arc<AppState>>, Buyer(buyer_id): Buyer) -> Result<ApiResponse, ApiError> {
    let (view, currency) = state.router.accounts().balance(&buyer_id).await?;
    Ok(http::json(
        200,
        &json!({"balance": view.balance, "held": view.held, "available": view.available, "currency": currency}),
    ))
}

/// `GET /v1/buyer/leads?after=<cursor>&limit=<n>`: the leads of the buyer's pull
/// campaigns after its cursor, oldest first; `next` is the cursor to pass back.
pub async fn pull_leads(
    State(state): State<Arc<AppState>>,
    Buyer(buyer_id): Buyer,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    let query = http::list_query(query.as_deref(), &[], 100, PULL_LIMIT_MAX)?;
    let (after, limit) = (http::numeric_cursor(query.after.as_deref())?, query.limit);
    let leads = state.router.deliveries().pull_leads(&buyer_id, after, limit).await?;
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
        Err(_) => Err(incomplete()),
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
        stored(success, work(router, party, body).await)
    };
    let Some(key) = idempotency_key(headers)? else {
        let answer = tokio::spawn(run(router, party.to_string(), body)).await.map_err(|_| incomplete())?;
        return Ok(http::bytes_response(answer.status, "application/json", answer.body));
    };
    let body_hash = body_hash(route, &body);
    let (begin, record) = router.idempotency().begin(party, &key, body_hash, router.clock().now());
    if begin == Begin::Conflict {
        return Err(ApiError::new(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request body",
        ));
    }
    let replayed = record.answer.initialized();
    let (owner, task_record, task_key) = (party.to_string(), Arc::clone(&record), key.clone());
    let answer = tokio::spawn(async move {
        let first = async move {
            // On several nodes another node may have (or be giving) the answer already.
            match router.prior_answer(&owner, &task_key, body_hash).await {
                Ok(Some(answer)) => return answer,
                Ok(None) => {}
                Err(error) => return error_answer(ApiError::from(error)),
            }
            let answer = run(Arc::clone(&router), owner.clone(), body).await;
            keep_or_release(&router, &owner, &task_key, body_hash, &answer).await;
            answer
        };
        task_record.answer.get_or_init(|| first).await.clone()
    })
    .await
    .map_err(|_| incomplete())?;
    if !replayable(answer.status) {
        state.router.idempotency().forget(party, &key, &record);
    }
    let mut response = http::bytes_response(answer.status, "application/json", answer.body);
    if replayed {
        response.headers_mut().insert("idempotent-replayed", ::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The request's `Idempotency-Key`, if it has one: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(key) = headers.get("idempotency-key") else { return Ok(None) };
    let key = key.to_str().ok().filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX).ok_or_else(|| {
        ApiError::new(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    })?;
    Ok(Some(key.to_string()))
}

/// What identifies a request's body under its key: the route and the bytes.
fn body_hash(route: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().into()
}

/// The answer of a request's work, as it is kept for replays.
fn stored<T: Serialize>(success: u16, result: Result<T, ApiError>) -> StoredAnswer {
    match result {
        Ok(answer) => match serde_json::to_vec(&answer) {
            Ok(mut json) => {
                json.push(b'\n');
                StoredAnswer { status: success, body: Bytes::from(json) }
            }
            Err(_) => error_answer(ApiError::new(500, "internal", "could not encode the answer")),
        },
        Err(error) => error_answer(error),
    }
}

fn error_answer(error: ApiError) -> StoredAnswer {
    StoredAnswer { status: error.status, body: error.to_json() }
}

/// A replayable first answer is journaled (Redis on several nodes) so a retry after a
/// restart gets it too; any other lets the key be used again.
async fn keep_or_release(router: &Router, owner: &str, key: &str, body_hash: [u8; 32], answer: &StoredAnswer) {
    if !replayable(answer.status) {
        router.release_answer(owner, key).await;
    } else if let Err(error) = router.keep_answer(owner, key, body_hash, answer).await {
        // The sale itself is journaled; only a retry after a crash could miss this answer
        // (and the external id still guards a resale).
        tracing::warn!(%error, "idempotency record not journaled");
    }
}

fn incomplete() -> ApiError {
    ApiError::new(500, "internal", "the request could not be completed")
}

/// Answers a retry may be given again: not rate limiting, overload or our own failures.
fn replayable(status: u16) -> bool {
    status != 429 && status < 500
}
