//! Lead endpoints of the public listener (DESIGN §4): ping, post, direct and bulk posts for
//! suppliers; balance and pull for buyers; and what the return endpoints share with them
//! (idempotent replay, detached engine work, bulk answers).

use std::future::Future;
use std::sync::Arc;

use ::http::HeaderMap;
use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::caller::{Buyer, Supplier};
use super::docs::{BuyerRefusals, CsvRefusals, JsonRefusals, SupplierRefusals};
use super::error::{ApiError, ErrorAnswer, ErrorBody};
use super::http::{self, ApiResponse, Buffered};
use super::{bulk, AppState};
use crate::domain::lead::{LeadInput, PingInput};
use crate::domain::money::{Currency, Money};
use crate::engine::ports::idempotency::KeptAnswer;
use crate::engine::ports::pull::PULL_LIMIT_MAX;
use crate::engine::{EngineError, KeyedRequest, LeadAnswer, PingAnswer, PostInput, Router};

/// Idempotency keys are opaque client strings; 255 printable characters is what the
/// common client libraries generate at most.
const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

pub(super) fn json_body(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    http::require_content_type(headers, "application/json")?;
    Ok(body)
}

/// Ping: offer a lead without personal data for a bid.
///
/// A bid holds the winning buyers' balance and caps until the post or `expires_at`.
#[utoipa::path(
    post,
    path = "/v1/ping",
    tag = "supplier",
    request_body = PingInput,
    responses(
        (status = 200, description = "`bid` with the payout, or `no_bid` with its reason", body = PingAnswer),
        JsonRefusals,
        SupplierRefusals,
    ),
    security(("api_key" = [])),
)]
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

/// Post: the full lead for an earlier ping.
///
/// The lead must match its ping (vertical, postal code).
#[utoipa::path(
    post,
    path = "/v1/post",
    tag = "supplier",
    request_body = PostInput,
    params(IdempotencyKey),
    responses(
        (status = 200, description = "`sold` with the payout, or `rejected` with its reason", body = LeadAnswer),
        (status = 404, description = "No such ping of this supplier", body = ErrorAnswer),
        (status = 409, description = "The ping was already posted, or the Idempotency-Key was used with another body", body = ErrorAnswer),
        (status = 410, description = "The ping expired; ping again", body = ErrorAnswer),
        JsonRefusals,
        SupplierRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn post(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    let body = json_body(&headers, body)?;
    let request = Request { route: "/v1/post", party: &supplier_id, headers: &headers, body: &body };
    once(&state, request, 200, |router, supplier_id, input: PostInput| async move {
        router.auction().post(&supplier_id, input).await
    })
    .await
}

/// Direct post: decide and deliver a lead in one call.
#[utoipa::path(
    post,
    path = "/v1/leads",
    tag = "supplier",
    request_body = LeadInput,
    params(IdempotencyKey),
    responses(
        (status = 200, description = "`sold` with the payout, or `rejected` with its reason", body = LeadAnswer),
        (status = 409, description = "The Idempotency-Key was used with another body, or the `external_id` was used before", body = ErrorAnswer),
        JsonRefusals,
        SupplierRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn direct(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    let body = json_body(&headers, body)?;
    let request = Request { route: "/v1/leads", party: &supplier_id, headers: &headers, body: &body };
    once(&state, request, 200, |router, supplier_id, input: LeadInput| async move {
        router.auction().direct(&supplier_id, input).await
    })
    .await
}

/// Bulk post: up to 10,000 leads as CSV, one result per row in order.
///
/// The header row names lead properties, `consent.<name>` and `fields.<name>`; a bad row
/// never blocks good rows.
#[utoipa::path(
    post,
    path = "/v1/leads/bulk",
    tag = "supplier",
    request_body(
        content = String,
        content_type = "text/csv",
        description = "A header row of lead field names, then one lead per row",
        example = "vertical,first_name,last_name,email,phone,zip,country,fields.roof_type\nsolar,Anna,Muster,anna@example.com,+49 89 1234567,80331,DE,tile\n",
    ),
    responses(
        (status = 200, description = "One result per row, as `POST /v1/leads` would answer it", body = BulkAnswer<LeadAnswer>),
        CsvRefusals,
        SupplierRefusals,
    ),
    security(("api_key" = [])),
)]
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

/// A bulk answer: one result per row, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkAnswer<T> {
    pub results: Vec<BulkRow<T>>,
}

/// One row's result, numbered from 1: what the single request would have answered, or its
/// refusal.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkRow<T> {
    #[serde(flatten)]
    pub outcome: RowOutcome<T>,
    pub row: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RowOutcome<T> {
    Answered(T),
    Refused(RowRefusal),
}

/// A refused row: the error JSON a single request would have got, and its HTTP status.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowRefusal {
    pub error: ErrorBody,
    pub http_status: u16,
}

pub(super) fn row_results<T: Serialize>(results: impl Iterator<Item = Result<T, ApiError>>) -> ApiResponse {
    let results = results
        .enumerate()
        .map(|(i, result)| {
            let outcome = match result {
                Ok(answer) => RowOutcome::Answered(answer),
                Err(error) => RowOutcome::Refused(RowRefusal { error: error.body(), http_status: error.status }),
            };
            BulkRow { outcome, row: i + 1 }
        })
        .collect();
    http::json(200, &BulkAnswer { results })
}

/// `GET /v1/buyer/balance`: what the buyer has, what its open bids hold, and the rest.
/// On several nodes `held` also counts what nodes leased in advance and have not sold yet
/// (DESIGN §9), which `leased` shows on its own (always 0.00 on one node).
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceAnswer {
    pub balance: Money,
    pub held: Money,
    pub available: Money,
    pub currency: Currency,
    pub leased: Money,
}

/// `GET /v1/buyer/leads`: the leads after the cursor, oldest first; `next` is the cursor to
/// pass back (the same one when there are none).
#[derive(Debug, Serialize, ToSchema)]
pub struct PullPage {
    /// Each lead as a webhook delivery carries it (DESIGN §5: `sale_id`, `lead_id`,
    /// `ping_id`, `vertical`, `price`, `currency`, `lead`), with its `cursor`.
    #[schema(value_type = Vec<Object>)]
    pub leads: Vec<serde_json::Value>,
    #[schema(example = "42")]
    pub next: String,
}

/// The buyer's balance, what its open bids hold, and what is available.
#[utoipa::path(
    get,
    path = "/v1/buyer/balance",
    tag = "buyer",
    responses((status = 200, description = "The balance", body = BalanceAnswer), BuyerRefusals),
    security(("api_key" = [])),
)]
pub async fn balance(State(state): State<Arc<AppState>>, Buyer(buyer_id): Buyer) -> Result<ApiResponse, ApiError> {
    let (view, currency) = state.router.accounts().balance(&buyer_id).await?;
    let answer = BalanceAnswer {
        balance: view.balance,
        held: view.held,
        available: view.available,
        currency,
        leased: view.leased,
    };
    Ok(http::json(200, &answer))
}

/// The leads of the buyer's pull campaigns after its cursor, oldest first.
///
/// `next` is the cursor to pass back as `after`; passing it acknowledges what came before.
#[utoipa::path(
    get,
    path = "/v1/buyer/leads",
    tag = "buyer",
    params(Page),
    responses(
        (status = 200, description = "The leads after the cursor", body = PullPage),
        (status = 422, description = "An unknown parameter, a limit out of range, or a cursor beyond the newest lead", body = ErrorAnswer),
        BuyerRefusals,
    ),
    security(("api_key" = [])),
)]
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
    Ok(http::json(200, &PullPage { leads, next: next.to_string() }))
}

/// The `Idempotency-Key` header of the retry-safe posts.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters: the same key and body within 24 h get the first
    /// answer again, never a second sale.
    #[param(rename = "Idempotency-Key")]
    pub key: Option<String>,
}

/// A page of a list: `after` a cursor from an earlier answer's `next`, at most `limit`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    pub after: Option<String>,
    /// 1 to the endpoint's maximum; 100 when absent.
    pub limit: Option<u32>,
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
        Err(_) => Err(EngineError::Interrupted.into()),
    }
}

/// Runs a request that may carry an `Idempotency-Key` (DESIGN §4 "Retries are safe"): its
/// JSON body is read as `I`, then with a key the engine's `Retries` runs `work` (given the
/// router, the party and the input) once and
/// gives retries the first answer, and without one `work` runs detached. Either answer
/// becomes HTTP here: a result with the `success` status, a refusal through `ApiError`.
pub(super) async fn once<I, T, W>(
    state: &AppState,
    request: Request<'_>,
    success: u16,
    work: impl FnOnce(Arc<Router>, String, I) -> W,
) -> Result<ApiResponse, ApiError>
where
    I: DeserializeOwned,
    T: Serialize + Send + 'static,
    W: Future<Output = Result<T, EngineError>> + Send + 'static,
{
    let Request { route, party, headers, body } = request;
    let key = idempotency_key(headers)?;
    let input: I = http::parse_json(body)?;
    let work = work(Arc::clone(&state.router), party.to_string(), input);
    let Some(key) = key else {
        return Ok(http::json(success, &detached(work).await?));
    };
    let keyed = KeyedRequest { party: party.to_string(), key, request_hash: request_hash(route, body) };
    let answered = state.router.retries().answer_once(keyed, work).await?;
    let mut response = match answered.answer {
        KeptAnswer::Done { result } => http::bytes_response(success, "application/json", result),
        KeptAnswer::Refused { refusal } => ApiError::from(refusal).into_response(),
    };
    if answered.replayed {
        response.headers_mut().insert("idempotent-replayed", ::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A request `once` answers: its route, who sent it (a supplier id, or `buyer/<id>`: keys
/// are per party), its headers and its JSON body.
pub(super) struct Request<'a> {
    pub route: &'static str,
    pub party: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The request's `Idempotency-Key`, if it has one: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(key) = headers.get("idempotency-key") else { return Ok(None) };
    let key = key.to_str().ok().filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX).ok_or_else(|| {
        ApiError::new(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    })?;
    Ok(Some(key.to_string()))
}

/// What identifies a request under its key: the route and the body's bytes.
fn request_hash(route: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().into()
}
