//! A lead's or ping's decision trace in the console: every campaign considered, in order,
//! and what happened to it (the admin API's `GET /admin/v1/{leads,pings}/{id}/trace`). Ids
//! only: a trace holds no lead data, and neither does this page's URL.

use maud::{html, Markup};

use crate::domain::trace::{Outcome, Trace};

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Filtered => "filtered",
        Outcome::Bid => "bid",
        Outcome::NoBid => "no bid",
        Outcome::Timeout => "timeout",
        Outcome::Error => "error",
        Outcome::Won => "won",
        Outcome::RejectedPost => "rejected the post",
        Outcome::Sold => "sold",
    }
}

/// The lookup form, and the trace of `id` when there is one.
pub fn page(id: &str, trace: Option<&Trace>) -> Markup {
    html! {
        h1 { "Decision trace" }
        form.stacked method="get" action="/console/trace" role="search" {
            label for="trace-id" { "Lead or ping id" }
            input id="trace-id" name="id" type="text" value=(id) placeholder="led_… or png_…" required;
            p { button type="submit" { "Show" } }
        }
        @if !id.is_empty() {
            @match trace {
                None => p.notice.bad role="alert" { "This node has no trace of " (id) ". A trace is kept by the node that decided, for a while." },
                Some(trace) => (entries(trace)),
            }
        }
    }
}

fn entries(trace: &Trace) -> Markup {
    html! {
        h2 { (trace.kind) " " (trace.id) }
        p {
            "Vertical " (trace.vertical) ", model " (trace.model) ", started "
            (trace.started_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) ". Status: " strong { (trace.status) }
            @if let Some(reason) = &trace.reason { " (" (reason) ")" }
            @if trace.outside_area > 0 { ". " (trace.outside_area) " campaigns were outside the lead's area." }
        }
        div.table-box {
            table {
                thead {
                    tr {
                        th scope="col" { "#" } th scope="col" { "Campaign" } th scope="col" { "Buyer" }
                        th scope="col" { "Outcome" } th scope="col" { "Reason" } th scope="col" { "Amount" }
                        th scope="col" { "Latency" } th scope="col" { "Buyer's reference" }
                    }
                }
                tbody {
                    @for (n, entry) in trace.entries.iter().enumerate() {
                        tr {
                            td { (n + 1) }
                            td { (entry.campaign_id) }
                            td { (entry.buyer_id) }
                            td { (outcome_name(entry.outcome)) }
                            td {
                                @if let Some(reason) = &entry.reason { (reason) }
                                @if let Some(detail) = &entry.detail { " (" (detail) ")" }
                            }
                            td { @if let Some(amount) = entry.amount { (amount) } }
                            td { @if let Some(ms) = entry.latency_ms { (ms) " ms" } }
                            td { @if let Some(reference) = &entry.buyer_reference { (reference) } }
                        }
                    }
                }
            }
        }
    }
}
