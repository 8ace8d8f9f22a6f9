//! The supplier's pages: its leads sent with their outcome and its sold rate per vertical,
//! its payouts per day, the returns of its leads with their reasons, and its spec (DESIGN
//! §5.2). Each reads only the signed-in supplier's own data; a supplier never sees a
//! buyer's price or reference.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, PreEscaped};

use super::{not_found, supplier_page, AppState, Signed};
use crate::api::error::ApiError;
use crate::api::session::Session;
use crate::api::web::form::field;
use crate::engine::memory::outcomes::Sent;
use crate::engine::ReturnView;

/// Recent leads the leads page lists at most.
const LEADS_SHOWN: usize = 200;
/// Returns the returns page lists, newest first.
const RETURNS_SHOWN: usize = 200;
/// Days the payouts page sums, today included.
const PAYOUT_DAYS: u64 = 31;

fn supplier_tz(state: &AppState, supplier_id: &str) -> Tz {
    let market = state.router.market();
    market.supplier(supplier_id).and_then(|supplier| supplier.billing.timezone.parse().ok()).unwrap_or(Tz::UTC)
}

fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

pub fn leads_page(state: &AppState, supplier_id: &str, session: &Session, query: Option<&str>) -> Response {
    let tz = supplier_tz(state, supplier_id);
    let pairs = crate::api::http::query_pairs(query).unwrap_or_default();
    let status = field(&pairs, "status").filter(|status| matches!(*status, "sold" | "rejected"));
    let id = field(&pairs, "id").map(str::trim).filter(|id| !id.is_empty());
    let history = state.router.history();
    let leads = history.lead_outcomes(supplier_id, LEADS_SHOWN, |lead| {
        status.is_none_or(|status| lead.status == status)
            && id.is_none_or(|id| lead.lead_id == id || lead.external_id.as_deref() == Some(id))
    });
    let today = state.router.clock().now().date_naive();
    let since = |days: u64| today.checked_sub_days(Days::new(days - 1)).unwrap_or(today);
    let periods = [
        ("Today", history.sent_since(supplier_id, today)),
        ("7 days", history.sent_since(supplier_id, since(7))),
        ("30 days", history.sent_since(supplier_id, since(30))),
    ];
    let verticals: std::collections::BTreeSet<&String> = periods.iter().flat_map(|(_, sent)| sent.keys()).collect();
    let body = html! {
        h1 { "Leads sent" }
        h2 { "Sold rate per vertical" }
        @if verticals.is_empty() {
            p { "No lead decided yet." }
        } @else {
            div.table-box {
                table {
                    thead {
                        tr {
                            th scope="col" { "Vertical" }
                            @for (period, _) in &periods { th scope="col" { (period) } }
                        }
                    }
                    tbody {
                        @for vertical in &verticals {
                            tr {
                                th scope="row" { (vertical) }
                                @for (_, sent) in &periods {
                                    td.num { (rate(sent.get(*vertical).copied().unwrap_or_default())) }
                                }
                            }
                        }
                    }
                }
            }
        }
        p.muted { "Days are UTC days. Counted by this node since it last started." }
        h2 { "Recent leads" }
        form.stacked method="get" action="/portal/leads" role="search" {
            label for="status-search" { "Outcome" }
            select id="status-search" name="status" {
                option value="" { "Any" }
                option value="sold" selected[status == Some("sold")] { "Sold" }
                option value="rejected" selected[status == Some("rejected")] { "Rejected" }
            }
            label for="id-search" { "Lead id or your external id" }
            input id="id-search" name="id" type="search" value=(id.unwrap_or_default());
            p { button type="submit" { "Show" } }
        }
        @if leads.is_empty() {
            p { "No lead matches." }
        } @else {
            div.table-box {
                table {
                    thead {
                        tr {
                            th scope="col" { "Decided" } th scope="col" { "Lead" } th scope="col" { "Your id" }
                            th scope="col" { "Vertical" } th scope="col" { "Outcome" } th scope="col" { "Payout" }
                        }
                    }
                    tbody {
                        @for lead in &leads {
                            tr {
                                td { (local(lead.at, tz)) }
                                td { code { (lead.lead_id) } }
                                td { (lead.external_id.as_deref().unwrap_or("")) }
                                td { (lead.vertical) }
                                td { (lead.status) @if let Some(reason) = lead.reason { " (" (reason) ")" } }
                                td.num { @if let Some((payout, currency)) = lead.payout { (payout) " " (currency) } }
                            }
                        }
                    }
                }
            }
        }
    };
    supplier_page("Leads sent", "/portal", session, StatusCode::OK, body)
}

/// "3 of 4 sold (75%)".
fn rate(sent: Sent) -> Markup {
    html! {
        @if sent.sent == 0 {
            span.muted { "none sent" }
        } @else {
            (sent.sold) " of " (sent.sent) " sold (" (sent.sold * 100 / sent.sent) "%)"
        }
    }
}

pub async fn payouts_page(state: &AppState, supplier_id: &str, session: &Session) -> Response {
    let (status, body) = match state.router.history().payouts(supplier_id, PAYOUT_DAYS).await {
        Ok(report) => (
            StatusCode::OK,
            html! {
                h1 { "Payouts" }
                p { "What your sold leads earned each day since " (report.first_day) ", less what approved returns took back." }
                @if !report.complete {
                    p.notice.bad role="status" { "The ledger is too large to sum the whole period at once: the oldest days may be missing." }
                }
                @let totals = report.payouts.totals();
                @if totals.is_empty() {
                    p { "No payout in this period." }
                } @else {
                    div.table-box {
                        table {
                            thead {
                                tr {
                                    th scope="col" { "Day" } th scope="col" { "Leads sold" } th scope="col" { "Earned" }
                                    th scope="col" { "Returned" } th scope="col" { "Given back" } th scope="col" { "Net" }
                                }
                            }
                            tbody {
                                @for (day, currency, tally) in report.payouts.days() {
                                    tr {
                                        th scope="row" { (day) }
                                        td.num { (tally.sold) }
                                        td.num { (tally.earned) " " (currency) }
                                        td.num { (tally.returned) }
                                        td.num { (tally.reversed) " " (currency) }
                                        td.num { (tally.net()) " " (currency) }
                                    }
                                }
                            }
                            tfoot {
                                @for (currency, total) in &totals {
                                    tr {
                                        th scope="row" { "Total" }
                                        td.num { (total.sold) }
                                        td.num { (total.earned) " " (currency) }
                                        td.num { (total.returned) }
                                        td.num { (total.reversed) " " (currency) }
                                        td.num { strong { (total.net()) " " (currency) } }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ),
        Err(error) => {
            let error = ApiError::from(error);
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            (status, html! { h1 { "Payouts" } p.notice.bad role="alert" { (error.message) } })
        }
    };
    supplier_page("Payouts", "/portal/payouts", session, status, body)
}

pub fn returns_page(state: &AppState, supplier_id: &str, session: &Session) -> Response {
    let tz = supplier_tz(state, supplier_id);
    let all = state.router.returns().supplier_returns(supplier_id, 0, usize::MAX);
    let shown: Vec<ReturnView> =
        all.iter().rev().take(RETURNS_SHOWN).map(|stored| ReturnView::for_supplier(&stored.lead_return)).collect();
    let body = html! {
        h1 { "Returns of your leads" }
        @if shown.is_empty() {
            p { "No lead of yours was returned." }
        } @else {
            div.table-box {
                table {
                    thead {
                        tr {
                            th scope="col" { "Requested" } th scope="col" { "Lead" } th scope="col" { "Reason" }
                            th scope="col" { "Status" } th scope="col" { "Decision" } th scope="col" { "Payout given back" }
                        }
                    }
                    tbody {
                        @for view in &shown {
                            tr {
                                td { (local(view.requested_at, tz)) }
                                td { code { (view.lead_id) } }
                                td { (view.reason) @if let Some(note) = &view.note { br; span.muted { (note) } } }
                                td { (view.status.as_str()) }
                                td { (view.resolution_reason.as_deref().unwrap_or("")) }
                                td.num {
                                    @if let crate::engine::ReturnAmounts::Supplier { payout_reversed, .. } = &view.amounts {
                                        (payout_reversed) " " (view.currency)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    supplier_page("Returns", "/portal/returns", session, StatusCode::OK, body)
}

pub fn spec_page(state: &AppState, supplier_id: &str, session: &Session) -> Response {
    match crate::api::docs::spec_html(state, supplier_id) {
        // Rendered and escaped by the spec's own renderer (the same as `/v1/supplier/spec`).
        Some(spec) => supplier_page("Spec", "/portal/spec", session, StatusCode::OK, html! { (PreEscaped(spec)) }),
        None => not_found(&Signed::Supplier(supplier_id.into(), session.clone())),
    }
}
