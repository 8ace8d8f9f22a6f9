//! Return endpoints of the public listener (DESIGN §4): buyers request, bulk-request, get
//! and list their returns; suppliers read the returns of their leads as a feed.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::caller::{Buyer, Supplier};
use super::docs::{BuyerRefusals, CsvRefusals, JsonRefusals, SupplierRefusals};
use super::error::{ApiError, ErrorAnswer};
use super::http::{self, ApiResponse, Buffered};
use super::public::{detached, json_body, once, row_results, BulkAnswer, IdempotencyKey, Page, Request};
use super::{bulk, AppState};
use crate::domain::model::FieldError;
use crate::domain::returns::ReturnStatus;
use crate::engine::ports::returns::{Stored, RETURNS_PAGE_MAX};
use crate::engine::{EngineError, ReturnInput, ReturnView};

const PAGE_DEFAULT: usize = 100;

/// Return a sale: 201 with the return, `pending` or (without operator approval) `approved`.
#[utoipa::path(
    post,
    path = "/v1/returns",
    tag = "buyer",
    request_body = ReturnInput,
    params(IdempotencyKey),
    responses(
        (status = 201, description = "The return", body = ReturnView),
        (status = 404, description = "Not this buyer's sale", body = ErrorAnswer),
        (status = 409, description = "The sale was already returned, or the Idempotency-Key was used with another body", body = ErrorAnswer),
        JsonRefusals,
        BuyerRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn request(
    State(state): State<Arc<AppState>>,
    Buyer(buyer_id): Buyer,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    let body = json_body(&headers, body)?;
    let party = format!("buyer/{buyer_id}");
    let request = Request { route: "/v1/returns", party: &party, headers: &headers, body: &body };
    once(&state, request, 201, |router, _, input: ReturnInput| async move {
        let opened = router.returns().request_return(&buyer_id, input).await?;
        Ok(ReturnView::for_buyer(&opened))
    })
    .await
}

/// Return sales in bulk: CSV `sale_id,reason,note`, one result per row in order.
#[utoipa::path(
    post,
    path = "/v1/returns/bulk",
    tag = "buyer",
    request_body(
        content = String,
        content_type = "text/csv",
        description = "Header `sale_id,reason,note` (`note` may be left out), one return per row",
        example = "sale_id,reason,note\nsal_Example0000000000000,invalid_phone,dead number\n",
    ),
    responses(
        (status = 200, description = "One result per row, as `POST /v1/returns` would answer it", body = BulkAnswer<ReturnRow>),
        CsvRefusals,
        BuyerRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn bulk(
    State(state): State<Arc<AppState>>,
    Buyer(buyer_id): Buyer,
    Buffered { headers, body }: Buffered,
) -> Result<ApiResponse, ApiError> {
    http::require_content_type(&headers, "text/csv")?;
    let rows = bulk::parse_returns(&body).map_err(|e| ApiError::new(422, "invalid_csv", e.to_string()))?;
    let router = Arc::clone(&state.router);
    let results = detached(async move {
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            results.push(match row {
                Ok(input) => router.returns().request_return(&buyer_id, input).await.map(|r| ReturnView::for_buyer(&r)),
                Err(errors) => Err(EngineError::Invalid(errors)),
            });
        }
        Ok::<_, EngineError>(results)
    })
    .await?;
    Ok(row_results(
        results
            .into_iter()
            .map(|result| result.map(|view| ReturnRow { view, http_status: 201 }).map_err(ApiError::from)),
    ))
}

/// One of the buyer's returns; another buyer's is unknown (404).
#[utoipa::path(
    get,
    path = "/v1/returns/{id}",
    tag = "buyer",
    params(("id" = String, Path, description = "The return's id (`ret_...`)")),
    responses(
        (status = 200, description = "The return", body = ReturnView),
        (status = 404, description = "No such return of this buyer", body = ErrorAnswer),
        BuyerRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Buyer(buyer_id): Buyer,
    Path(return_id): Path<String>,
) -> Result<ApiResponse, ApiError> {
    let found = state.router.returns().buyer_return(&buyer_id, &return_id)?;
    Ok(http::json(200, &ReturnView::for_buyer(&found)))
}

/// The buyer's returns in the order they were requested.
///
/// `next` is the cursor to pass back as `after`.
#[utoipa::path(
    get,
    path = "/v1/returns",
    tag = "buyer",
    params(Page, ("status" = Option<ReturnStatus>, Query, description = "Only returns in this status")),
    responses(
        (status = 200, description = "A page of returns", body = ReturnPage),
        (status = 422, description = "An unknown parameter, status or cursor, or a limit out of range", body = ErrorAnswer),
        BuyerRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Buyer(buyer_id): Buyer,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    let query = http::list_query(query.as_deref(), &["status"], PAGE_DEFAULT, RETURNS_PAGE_MAX)?;
    let after = http::numeric_cursor(query.after.as_deref())?;
    let status = status_filter(&query)?;
    let page = state.router.returns().buyer_returns(&buyer_id, status, after, query.limit);
    let next = page.last().map_or(after, |stored| stored.created);
    let returns = page
        .iter()
        .map(|stored| ReturnEntry::new(ReturnView::for_buyer(&stored.lead_return), stored.created))
        .collect();
    Ok(http::json(200, &ReturnPage { returns, next: next.to_string() }))
}

/// The returns of the supplier's leads in the order they last changed.
///
/// A return shows again when it is resolved; `next` is the cursor to pass back as `after`.
#[utoipa::path(
    get,
    path = "/v1/supplier/returns",
    tag = "supplier",
    params(Page),
    responses(
        (status = 200, description = "A page of returns", body = ReturnPage),
        (status = 422, description = "An unknown parameter or cursor, or a limit out of range", body = ErrorAnswer),
        SupplierRefusals,
    ),
    security(("api_key" = [])),
)]
pub async fn supplier_feed(
    State(state): State<Arc<AppState>>,
    Supplier(supplier_id): Supplier,
    RawQuery(query): RawQuery,
) -> Result<ApiResponse, ApiError> {
    let query = http::list_query(query.as_deref(), &[], PAGE_DEFAULT, RETURNS_PAGE_MAX)?;
    let after = http::numeric_cursor(query.after.as_deref())?;
    let page: Vec<Stored> = state.router.returns().supplier_returns(&supplier_id, after, query.limit);
    let next = page.last().map_or(after, |stored| stored.revision);
    let returns = page
        .iter()
        .map(|stored| ReturnEntry::new(ReturnView::for_supplier(&stored.lead_return), stored.revision))
        .collect();
    Ok(http::json(200, &ReturnPage { returns, next: next.to_string() }))
}

pub fn status_filter(query: &http::ListQuery) -> Result<Option<ReturnStatus>, ApiError> {
    match query.filter("status") {
        None | Some("") => Ok(None),
        Some(value) => ReturnStatus::parse(value)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(vec![FieldError::new("status", "one of pending, approved, rejected")])),
    }
}

/// A page of returns; `next` is the cursor to pass back as `after`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnPage {
    pub returns: Vec<ReturnEntry>,
    #[schema(example = "42")]
    pub next: String,
}

/// A return in a page, with the cursor that lists what comes after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnEntry {
    #[serde(flatten)]
    pub view: ReturnView,
    pub cursor: String,
}

impl ReturnEntry {
    fn new(view: ReturnView, cursor: u64) -> ReturnEntry {
        ReturnEntry { view, cursor: cursor.to_string() }
    }
}

/// A bulk row's return, with the status its single request would have had.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnRow {
    #[serde(flatten)]
    pub view: ReturnView,
    pub http_status: u16,
}
