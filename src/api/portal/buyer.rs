//! The buyer's pages: balance and holds, the leads it bought (search by day, campaign or
//! id; CSV export), its returns (request and follow), and its campaigns with their caps
//! used in the current windows, to pause and resume. Each reads and changes only the
//! signed-in buyer's own data, through the same engine use cases as the JSON API.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};

use super::{buyer_page, not_found, AppState, Signed};
use crate::api::error::ApiError;
use crate::api::session::Session;
use crate::api::web::form::{field, input, notice, Outcome};
use crate::domain::budget::lease::CapStanding;
use crate::domain::caps::Limit;
use crate::domain::history::{Owner, SaleSearch};
use crate::domain::ledger::SaleSettled;
use crate::domain::model::{FieldError, Pricing, DEFAULT_RETURN_REASONS};
use crate::domain::operator::Actor;
use crate::engine::history::SalePage;
use crate::engine::{EngineError, ReturnInput};

/// Sales a page of the search shows.
const PAGE_SIZE: usize = 50;
/// Sales one CSV export holds at most.
const CSV_MAX: usize = 10_000;
/// Returns the returns page lists, newest first.
const RETURNS_SHOWN: usize = 200;

fn buyer_tz(state: &AppState, buyer_id: &str) -> Tz {
    let market = state.router.market();
    market.buyer(buyer_id).and_then(|buyer| buyer.timezone.parse().ok()).unwrap_or(Tz::UTC)
}

fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

pub async fn balance_page(state: &AppState, buyer_id: &str, session: &Session) -> Response {
    let market = state.router.market();
    let Some(buyer) = market.buyer(buyer_id) else {
        return not_found(&Signed::Buyer(buyer_id.into(), session.clone()));
    };
    let (status, body) = match state.router.accounts().balance(buyer_id).await {
        Ok((view, currency)) => (
            StatusCode::OK,
            html! {
                h1 { "Balance" }
                div.table-box {
                    table {
                        tbody {
                            tr { th scope="row" { "Balance" } td.num { (view.balance) " " (currency) } }
                            tr {
                                th scope="row" { "Held" }
                                td.num { (view.held) " " (currency) }
                            }
                            @if !view.leased.is_zero() {
                                tr { th scope="row" { "of which leased to nodes" } td.num { (view.leased) " " (currency) } }
                            }
                            tr { th scope="row" { "Available" } td.num { strong { (view.available) " " (currency) } } }
                        }
                    }
                }
                p.muted {
                    "Held money is reserved for bids waiting for their lead and for sales being delivered; "
                    "it is spent or released within seconds. "
                    "Billing: " (format!("{:?}", buyer.billing.mode).to_lowercase())
                    @if let Some(limit) = buyer.billing.credit_limit { ", credit limit " (limit) " " (currency) }
                    "."
                }
            },
        ),
        Err(error) => unavailable(error),
    };
    buyer_page("Balance", "/portal", session, status, body)
}

fn unavailable(error: EngineError) -> (StatusCode, Markup) {
    let error = ApiError::from(error);
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, html! { h1 { "Not available" } p.notice.bad role="alert" { (error.message) } })
}

/// A leads search as the form and the CSV link send it.
#[derive(Default)]
struct LeadsQuery {
    values: Vec<(String, String)>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    campaign: Option<String>,
    id: Option<String>,
    before: Option<u64>,
}

impl LeadsQuery {
    /// Reads the query string, with an error by its field's name for what does not read.
    fn read(query: Option<&str>) -> (LeadsQuery, Option<ApiError>) {
        let pairs = crate::api::http::query_pairs(query).unwrap_or_default();
        let text = |name: &str| field(&pairs, name).map(str::trim).filter(|value| !value.is_empty());
        let mut errors = Vec::new();
        let mut date = |name: &str| {
            text(name).and_then(|value| match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
                Ok(day) => Some(day),
                Err(_) => {
                    errors.push(FieldError::new(name, "a date as YYYY-MM-DD"));
                    None
                }
            })
        };
        let (from, to) = (date("from"), date("to"));
        if matches!((from, to), (Some(from), Some(to)) if to < from) {
            errors.push(FieldError::new("to", "on or after the first day"));
        }
        let before = text("before").and_then(|value| match value.parse::<u64>() {
            Ok(before) => Some(before),
            Err(_) => {
                errors.push(FieldError::new("before", "a page cursor from an earlier page"));
                None
            }
        });
        let values = ["from", "to", "campaign", "id"]
            .iter()
            .map(|name| (name.to_string(), text(name).unwrap_or_default().to_string()))
            .collect();
        let query = LeadsQuery {
            values,
            from,
            to,
            campaign: text("campaign").map(str::to_string),
            id: text("id").map(str::to_string),
            before,
        };
        let error = (!errors.is_empty()).then(|| ApiError::invalid(errors));
        (query, error)
    }

    fn search(&self, buyer_id: &str, tz: Tz) -> SaleSearch {
        let mut search = SaleSearch::of(Owner::Buyer(buyer_id.to_string())).within_days(self.from, self.to, tz);
        search.campaign_id = self.campaign.clone();
        search.id = self.id.clone();
        search
    }

    /// The search's own fields as a query string (without a page cursor).
    fn encoded(&self) -> String {
        let kept: Vec<&(String, String)> = self.values.iter().filter(|(_, value)| !value.is_empty()).collect();
        serde_urlencoded::to_string(kept).unwrap_or_default()
    }
}

pub async fn leads_page(state: &AppState, buyer_id: &str, session: &Session, query: Option<String>) -> Response {
    let tz = buyer_tz(state, buyer_id);
    let campaigns = own_campaigns(state, buyer_id);
    let (query, outcome, page) = match LeadsQuery::read(query.as_deref()) {
        (query, None) => {
            let found = state.router.history().sales(query.search(buyer_id, tz), query.before, PAGE_SIZE).await;
            match found {
                Ok(page) => (query, Outcome::default(), Some(page)),
                Err(error) => (query, Outcome::refused(ApiError::from(error), Vec::new()), None),
            }
        }
        (query, Some(error)) => (query, Outcome::refused(error, Vec::new()), None),
    };
    let outcome = Outcome { values: query.values.clone(), ..outcome };
    let now = state.router.clock().now();
    let body = html! {
        h1 { "Leads bought" }
        (notice(&outcome))
        form.stacked method="get" action="/portal/leads" role="search" {
            (input(&outcome, "from", "From (first day)", "date", "search"))
            (input(&outcome, "to", "To (last day)", "date", "search"))
            label for="campaign-search" { "Campaign" }
            select id="campaign-search" name="campaign" {
                option value="" { "Any campaign" }
                @for campaign in &campaigns {
                    option value=(campaign) selected[outcome.value("campaign") == campaign] { (campaign) }
                }
            }
            (input(&outcome, "id", "Lead or sale id", "search", "search"))
            p { button type="submit" { "Search" } }
        }
        @if let Some(page) = &page {
            p {
                a href=(format!("/portal/leads.csv?{}", query.encoded())) download { "Export these as CSV" }
                span.muted { " (at most " (CSV_MAX) " sales; times in " (tz.name()) ")" }
            }
            (sales_table(state, page, tz, now))
            @if let Some(next) = page.next {
                p { a href=(with_before(&query, next)) { "Older sales" } }
            }
        }
    };
    buyer_page("Leads bought", "/portal/leads", session, outcome.status(), body)
}

fn with_before(query: &LeadsQuery, before: u64) -> String {
    let encoded = query.encoded();
    let joiner = if encoded.is_empty() { "" } else { "&" };
    format!("/portal/leads?{encoded}{joiner}before={before}")
}

fn sales_table(state: &AppState, page: &SalePage, tz: Tz, now: DateTime<Utc>) -> Markup {
    html! {
        @if page.sales.is_empty() {
            p { "No lead bought matches." }
        } @else {
            div.table-box {
                table {
                    thead {
                        tr {
                            th scope="col" { "Sold" } th scope="col" { "Lead" } th scope="col" { "Sale" }
                            th scope="col" { "Campaign" } th scope="col" { "Vertical" } th scope="col" { "Price" }
                            th scope="col" { "Your reference" } th scope="col" { "Return" }
                        }
                    }
                    tbody {
                        @for sale in &page.sales {
                            tr {
                                td { (local(sale.sold_at, tz)) }
                                td { code { (sale.lead_id) } }
                                td { code { (sale.sale_id) } }
                                td { (sale.campaign_id) }
                                td { (sale.vertical) }
                                td.num { (sale.price) " " (sale.currency) }
                                td { (sale.buyer_reference.as_deref().unwrap_or("")) }
                                td { (return_cell(state, sale, now)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The sale's return's status, or a link to request one while its window is open.
fn return_cell(state: &AppState, sale: &SaleSettled, now: DateTime<Utc>) -> Markup {
    if let Some(lead_return) = state.router.returns().return_of_sale(&sale.sale_id) {
        return html! { (lead_return.status.as_str()) };
    }
    let open =
        sale.return_terms.is_none_or(|terms| now < sale.sold_at + chrono::Duration::days(terms.window_days.into()));
    html! {
        @if open {
            a href=(format!("/portal/returns?sale_id={}", sale.sale_id)) { "Return…" }
        } @else {
            span.muted { "window closed" }
        }
    }
}

fn own_campaigns(state: &AppState, buyer_id: &str) -> Vec<String> {
    let market = state.router.market();
    market.config().campaigns.iter().filter(|c| c.buyer_id == buyer_id).map(|c| c.id.clone()).collect()
}

pub async fn leads_csv(state: &AppState, buyer_id: &str, session: &Session, query: Option<String>) -> Response {
    let tz = buyer_tz(state, buyer_id);
    let query = match LeadsQuery::read(query.as_deref()) {
        (query, None) => query,
        // The search page shows what does not read.
        (_, Some(_)) => return leads_page(state, buyer_id, session, query).await,
    };
    let page = match state.router.history().sales(query.search(buyer_id, tz), query.before, CSV_MAX).await {
        Ok(page) => page,
        Err(error) => {
            let (status, body) = unavailable(error);
            return buyer_page("Leads bought", "/portal/leads", session, status, body);
        }
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = [
        "sold_at",
        "sale_id",
        "lead_id",
        "campaign_id",
        "vertical",
        "country",
        "price",
        "currency",
        "buyer_reference",
        "return_status",
    ];
    let mut rows = vec![writer.write_record(header)];
    for sale in &page.sales {
        let return_status = state.router.returns().return_of_sale(&sale.sale_id).map(|r| r.status.as_str());
        rows.push(writer.write_record([
            sale.sold_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).as_str(),
            &sale.sale_id,
            &sale.lead_id,
            &sale.campaign_id,
            &sale.vertical,
            &sale.country,
            &sale.price.to_string(),
            sale.currency.as_str(),
            sale.buyer_reference.as_deref().unwrap_or(""),
            return_status.unwrap_or(""),
        ]));
    }
    let body = match (rows.into_iter().collect::<Result<Vec<()>, _>>(), writer.into_inner()) {
        (Ok(_), Ok(body)) => body,
        _ => return (StatusCode::INTERNAL_SERVER_ERROR, "the CSV could not be written").into_response(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"leads-bought.csv\""));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // More matched than one export holds: the header says where the next would start.
    if let Some(next) = page.next.filter(|_| page.sales.len() == CSV_MAX) {
        if let Ok(next) = HeaderValue::from_str(&next.to_string()) {
            headers.insert("x-next-before", next);
        }
    }
    response
}

pub fn returns_page(state: &AppState, buyer_id: &str, session: &Session, query: Option<&str>) -> Response {
    let pairs = crate::api::http::query_pairs(query).unwrap_or_default();
    let sale_id = field(&pairs, "sale_id").unwrap_or_default().trim().to_string();
    let outcome = Outcome { values: vec![("sale_id".to_string(), sale_id)], ..Outcome::default() };
    returns_answer(state, buyer_id, session, &outcome)
}

fn returns_answer(state: &AppState, buyer_id: &str, session: &Session, outcome: &Outcome) -> Response {
    let tz = buyer_tz(state, buyer_id);
    let all = state.router.returns().buyer_returns(buyer_id, None, 0, usize::MAX);
    let shown: Vec<_> = all.iter().rev().take(RETURNS_SHOWN).map(|stored| &stored.lead_return).collect();
    let reasons = return_reasons(state, buyer_id);
    let body = html! {
        h1 { "Returns" }
        (notice(outcome))
        h2 { "Return a lead" }
        form.stacked method="post" action="/portal/returns" {
            input type="hidden" name="csrf" value=(session.csrf);
            (input(outcome, "sale_id", "Sale id", "text", "return"))
            label for="reason-return" { "Reason" }
            select id="reason-return" name="reason" {
                @for reason in &reasons {
                    option value=(reason) selected[outcome.value("reason") == reason] { (reason) }
                }
            }
            @if let Some(error) = outcome.error("reason") {
                p.field-error { (error) }
            }
            (input(outcome, "note", "Note (optional)", "text", "return"))
            p { button type="submit" { "Request the return" } }
        }
        h2 { "Your returns" }
        @if shown.is_empty() {
            p { "You have not returned a lead." }
        } @else {
            div.table-box {
                table {
                    thead {
                        tr {
                            th scope="col" { "Requested" } th scope="col" { "Return" } th scope="col" { "Sale" }
                            th scope="col" { "Reason" } th scope="col" { "Status" } th scope="col" { "Decision" }
                            th scope="col" { "Credit" }
                        }
                    }
                    tbody {
                        @for lead_return in &shown {
                            tr {
                                td { (local(lead_return.requested_at, tz)) }
                                td { code { (lead_return.return_id) } }
                                td { code { (lead_return.sale_id) } }
                                td { (lead_return.reason) @if let Some(note) = &lead_return.note { br; span.muted { (note) } } }
                                td { (lead_return.status.as_str()) }
                                td { (lead_return.resolution_reason.as_deref().unwrap_or("")) }
                                td.num { (lead_return.credit()) " " (lead_return.currency) }
                            }
                        }
                    }
                }
            }
        }
    };
    buyer_page("Returns", "/portal/returns", session, outcome.status(), body)
}

/// The reasons the buyer's verticals take (the defaults where a vertical names none).
fn return_reasons(state: &AppState, buyer_id: &str) -> Vec<String> {
    let market = state.router.market();
    let mut reasons: Vec<String> = Vec::new();
    for campaign in market.config().campaigns.iter().filter(|c| c.buyer_id == buyer_id) {
        let of_vertical = match market.vertical(&campaign.vertical) {
            Some(vertical) => vertical.return_reasons(),
            None => DEFAULT_RETURN_REASONS.iter().map(|r| r.to_string()).collect(),
        };
        for reason in of_vertical {
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
    }
    reasons
}

pub async fn request_return(
    state: &AppState,
    buyer_id: &str,
    session: &Session,
    form: &[(String, String)],
) -> Response {
    let text = |name: &str| field(form, name).unwrap_or_default().trim().to_string();
    let values: Vec<(String, String)> =
        ["sale_id", "reason", "note"].iter().map(|n| (n.to_string(), text(n))).collect();
    let note = Some(text("note")).filter(|note| !note.is_empty());
    let input = ReturnInput { sale_id: text("sale_id"), reason: text("reason"), note };
    let outcome = match state.router.returns().request_return(buyer_id, input).await {
        Ok(lead_return) => Outcome::done(format!(
            "Return {} of sale {} is {}.",
            lead_return.return_id,
            lead_return.sale_id,
            lead_return.status.as_str()
        )),
        Err(error) => Outcome::refused(ApiError::from(error), values),
    };
    returns_answer(state, buyer_id, session, &outcome)
}

pub async fn campaigns_page(state: &AppState, buyer_id: &str, session: &Session, outcome: Option<Outcome>) -> Response {
    let outcome = outcome.unwrap_or_default();
    let (status, body) = match state.router.history().campaigns(buyer_id).await {
        Ok(campaigns) => (
            outcome.status(),
            html! {
                h1 { "Campaigns" }
                (notice(&outcome))
                @if campaigns.is_empty() {
                    p { "You have no campaign." }
                }
                @for standing in &campaigns {
                    @let campaign = &standing.campaign;
                    section.tile aria-labelledby=(format!("campaign-{}", campaign.id)) {
                        h2 id=(format!("campaign-{}", campaign.id)) { (campaign.id) }
                        p {
                            (campaign.vertical) ", "
                            @match &campaign.pricing {
                                Pricing::Fixed { price } => { "fixed price " (price) }
                                Pricing::Dynamic { min_price, .. } => {
                                    "your bid per lead"
                                    @if let Some(min) = min_price { " (at least " (min) ")" }
                                }
                            }
                            ", " strong { @if campaign.active { "running" } @else { "paused" } } "."
                        }
                        (caps_table(&standing.caps))
                        @let action = if campaign.active { "pause" } else { "resume" };
                        form method="post" action=(format!("/portal/campaigns/{}/{action}", campaign.id)) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { @if campaign.active { "Pause" } @else { "Resume" } }
                        }
                    }
                }
            },
        ),
        Err(error) => unavailable(error),
    };
    buyer_page("Campaigns", "/portal/campaigns", session, status, body)
}

fn caps_table(caps: &[CapStanding]) -> Markup {
    html! {
        @if caps.is_empty() {
            p.muted { "No caps." }
        } @else {
            div.table-box {
                table {
                    thead { tr { th scope="col" { "Cap" } th scope="col" { "Sold" } th scope="col" { "Reserved" } th scope="col" { "Limit" } } }
                    tbody {
                        @for standing in caps {
                            tr {
                                th scope="row" { (standing.cap.name) }
                                @match standing.cap.limit {
                                    Limit::Count(max) => {
                                        td.num { (standing.sold.count) }
                                        td.num { (standing.reserved.count) }
                                        td.num { (max) }
                                    }
                                    Limit::Spend(max) => {
                                        td.num { (standing.sold.spend) }
                                        td.num { (standing.reserved.spend) }
                                        td.num { (max) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn set_campaign(
    state: &AppState,
    buyer_id: &str,
    session: &Session,
    campaign_id: &str,
    active: bool,
) -> Response {
    let by = Actor::Buyer(buyer_id.to_string());
    let outcome = match state.router.accounts().set_campaign_active(buyer_id, campaign_id, active, &by).await {
        Ok(()) => Outcome::done(format!("Campaign {campaign_id} is {}.", if active { "running" } else { "paused" })),
        Err(EngineError::NotFound(_)) => return not_found(&Signed::Buyer(buyer_id.into(), session.clone())),
        Err(error) => Outcome::refused(ApiError::from(error), Vec::new()),
    };
    campaigns_page(state, buyer_id, session, Some(outcome)).await
}
