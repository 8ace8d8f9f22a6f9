//! What a request carries, read into typed values or refused with an `ApiError`: the
//! extractors for query strings (`Query`), JSON bodies (`JsonBody`) and path segments
//! (`Segment`), and the parameters and bodies of each endpoint with the refusals clients
//! rely on (field, code and message, DESIGN §4 and §13).
//!
//! The query and body structs hold each parameter as the text it came as
//! (`Option<String>`), and their methods turn them into the engine's types. A typed serde
//! field would refuse with serde's own words and no field name; these refusals name the
//! field and say what it takes, and they come in a fixed order when several are wrong.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use http::request::Parts;
use http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use crate::domain::document::DocumentKind;
use crate::domain::money;
use crate::domain::report::{Basis, GroupBy, Span};
use crate::engine::payments::NewPayment;
use crate::engine::reports::{self, ReportQuery};
use crate::engine::run;
use crate::store::documents::Filter;

/// Request bodies are small JSON objects (a run's date, one payment).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Page size of the lists when `limit` is absent or empty.
const LIMIT_DEFAULT: usize = 50;
const LIMIT_MAX: usize = 500;

/// A payment's reference is a bank or ledger reference, not a note. Counted in bytes.
const REFERENCE_BYTES_MAX: usize = 200;

// ------------------------------------------------------------------------- extractors

/// The query string read into `T` with [`parse_query`].
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// A query string read into `T`, a struct of `Option<String>` fields. Names and values are
/// percent-decoded (`+` is a space, a broken escape stays as it is, bytes that are not
/// UTF-8 become U+FFFD); names `T` does not know are ignored.
///
/// Rationale: a name given twice has always meant its last value, while a derived
/// `Deserialize` refuses a field given twice; so the pairs are first reduced to the last
/// value of each name, then read into `T`.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(malformed_query)?;
    let last: HashMap<String, String> = pairs.into_iter().collect();
    let text = serde_urlencoded::to_string(&last).map_err(malformed_query)?;
    serde_urlencoded::from_str(&text).map_err(malformed_query)
}

/// Only reachable with a `T` that has other fields than `Option<String>`.
fn malformed_query(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "malformed_query", format!("malformed query string: {error}"))
}

/// A JSON body read into `T`, refused in the order clients have always seen: a content
/// type other than JSON (415), a body over `BODY_LIMIT` (413), then malformed JSON or wrong
/// types (400). No content type at all is taken as JSON.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type =
            request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
        if !content_type.is_empty() && !content_type.starts_with("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json",
            ));
        }
        // `Bytes` reads at most what the router's `DefaultBodyLimit` allows (`BODY_LIMIT`).
        // A body that breaks off before its end is refused the same way, as it always was.
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is over 64 KiB"))?;
        serde_json::from_slice(&body).map(JsonBody).map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {error}"))
        })
    }
}

/// The one named segment of a route's path (`{number}`, `{name}`), percent-decoded. A
/// segment that is not UTF-8 once decoded names nothing: 404, like any unknown name.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Segment(segment)),
            Err(_) => Err(ApiError::not_found()),
        }
    }
}

// ------------------------------------------------------------------------- parameters

/// `after`: a cursor from a previous page (a row id), 0 when absent or empty.
pub fn cursor(after: Option<&str>) -> Result<i64, ApiError> {
    match after {
        None | Some("") => Ok(0),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("after", "is not a cursor from a previous page")),
    }
}

/// `limit`: 1 to 500, 50 when absent or empty.
pub fn limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit {
        None | Some("") => Ok(LIMIT_DEFAULT),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=LIMIT_MAX).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "is a number from 1 to 500")),
    }
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

/// `GET /billing/v1/documents?account=&kind=&from=&to=&after=&limit=`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DocumentsQuery {
    pub account: Option<String>,
    pub kind: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub after: Option<String>,
    pub limit: Option<String>,
}

impl DocumentsQuery {
    /// The store's filter. An empty `account`, `kind`, `after` or `limit` is as if absent;
    /// an empty `from` or `to` is not a date. Refusals in the order limit, kind, from, to,
    /// after.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        let limit = limit(self.limit.as_deref())?;
        Ok(Filter {
            account: self.account.clone().filter(|account| !account.is_empty()),
            kind: match self.kind.as_deref() {
                None | Some("") => None,
                Some(kind) => Some(DocumentKind::parse(kind).ok_or_else(|| {
                    ApiError::invalid("kind", "is one of invoice, statement, credit_note, supplier_settlement")
                })?),
            },
            from: self.from.as_deref().map(|text| date("from", text)).transpose()?,
            to: self.to.as_deref().map(|text| date("to", text)).transpose()?,
            after: cursor(self.after.as_deref())?,
            limit,
        })
    }
}

/// `GET /billing/v1/notifications?status=&after=&limit=`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NotificationsQuery {
    pub status: Option<String>,
    pub after: Option<String>,
    pub limit: Option<String>,
}

/// One page of the notification outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPage {
    /// Any status when `None`.
    pub status: Option<String>,
    pub after: i64,
    pub limit: usize,
}

impl NotificationsQuery {
    /// The page asked for; refusals in the order after, limit.
    pub fn page(&self) -> Result<NotificationPage, ApiError> {
        Ok(NotificationPage {
            status: self.status.clone().filter(|status| !status.is_empty()),
            after: cursor(self.after.as_deref())?,
            limit: limit(self.limit.as_deref())?,
        })
    }
}

/// `GET /billing/v1/reports/{name}?from=&to=&group_by=&basis=&currency=&format=`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReportParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Option<String>,
    pub basis: Option<String>,
    pub currency: Option<String>,
    pub format: Option<String>,
}

/// How a report is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
}

impl ReportParams {
    /// The engine's query for report `name`, and the format to answer in. Refusals in the
    /// order from, to, group_by, basis, format; whether `name` is a report, and whether it
    /// groups that way, is the engine's to say.
    pub fn query(&self, name: &str) -> Result<(ReportQuery, ReportFormat), ApiError> {
        let required = |field: &'static str, text: &Option<String>| -> Result<NaiveDate, ApiError> {
            let text = text.as_deref().filter(|text| !text.is_empty());
            let text = text.ok_or_else(|| ApiError::invalid(field, "is required"))?;
            Ok(reports::parse_date(field, text)?)
        };
        let query = ReportQuery {
            name: name.to_string(),
            span: Span { from: required("from", &self.from)?, to: required("to", &self.to)? },
            group_by: match self.group_by.as_deref() {
                None | Some("") => None,
                Some(text) => Some(
                    GroupBy::parse(text)
                        .ok_or_else(|| ApiError::invalid("group_by", format!("{text:?} is not a grouping")))?,
                ),
            },
            basis: match self.basis.as_deref() {
                None | Some("") => Basis::Accrual,
                Some(text) => Basis::parse(text).ok_or_else(|| ApiError::invalid("basis", "is accrual or booked"))?,
            },
            currency: self.currency.clone().filter(|currency| !currency.is_empty()),
        };
        let format = match self.format.as_deref() {
            None | Some("") | Some("json") => ReportFormat::Json,
            Some("csv") => ReportFormat::Csv,
            Some(_) => return Err(ApiError::invalid("format", "is json or csv")),
        };
        Ok((query, format))
    }
}

// ------------------------------------------------------------------------- bodies

/// `POST /billing/v1/runs` `{"as_of": "2026-11-30"}`
#[derive(Debug, Deserialize)]
pub struct RunRequest {
    pub as_of: Option<String>,
}

impl RunRequest {
    /// The run's date: required, a calendar date, and not far after `now` (a typo there
    /// would issue documents and dunning for good).
    pub fn as_of(&self, now: DateTime<Utc>) -> Result<NaiveDate, ApiError> {
        let text = self.as_of.as_deref().ok_or_else(|| ApiError::invalid("as_of", "is required"))?;
        let as_of = date("as_of", text)?;
        run::check_as_of(as_of, now).map_err(|message| ApiError::invalid("as_of", message))?;
        Ok(as_of)
    }
}

/// `POST /billing/v1/invoices/{number}/payments` `{"amount", "paid_at", "reference"}`
#[derive(Debug, Deserialize)]
pub struct PaymentRequest {
    pub amount: Option<String>,
    pub paid_at: Option<String>,
    pub reference: Option<String>,
}

impl PaymentRequest {
    /// The payment to record; refusals in the order amount, paid_at, reference.
    pub fn payment(self) -> Result<NewPayment, ApiError> {
        let amount = self.amount.ok_or_else(|| ApiError::invalid("amount", "is required"))?;
        let amount = money::parse(&amount)
            .ok_or_else(|| ApiError::invalid("amount", "is not a decimal amount like \"120.50\""))?;
        if amount <= rust_decimal::Decimal::ZERO {
            return Err(ApiError::invalid("amount", "must be more than zero"));
        }
        if amount.normalize().scale() > 2 {
            return Err(ApiError::invalid("amount", "has more than two decimal places"));
        }
        let paid_at = self.paid_at.ok_or_else(|| ApiError::invalid("paid_at", "is required"))?;
        let paid_at = DateTime::parse_from_rfc3339(&paid_at)
            .map_err(|_| ApiError::invalid("paid_at", "is not an RFC 3339 timestamp"))?
            .with_timezone(&Utc);
        let reference = self.reference.unwrap_or_default();
        if reference.trim().is_empty() || reference.len() > REFERENCE_BYTES_MAX {
            return Err(ApiError::invalid("reference", "is required, at most 200 characters"));
        }
        Ok(NewPayment { amount, paid_at, reference })
    }
}
