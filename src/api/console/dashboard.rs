//! The operator's dashboard (DESIGN §15): this node's pings, bids, sales, revenue, fill
//! rate, buyer latency and errors over the last five minutes and since it started, and the
//! last ten minutes as charts drawn as SVG on the server. The live part is a fragment the
//! page fetches again every two seconds (`/console/live/dashboard`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};
use rust_decimal::Decimal;

use crate::domain::money::Currency;
use crate::telemetry::activity::{Sample, Totals};

/// The tiles cover this span.
const RECENT: Duration = Duration::minutes(5);
/// The charts cover this span, in buckets of `BUCKET` seconds.
const CHARTED: Duration = Duration::minutes(10);
const BUCKET: i64 = 10;

/// The live part of the dashboard, from the samples of the last ten minutes (oldest first)
/// and the totals now.
pub fn live(now: DateTime<Utc>, samples: &[Sample], totals: Totals) -> Markup {
    let recent_start = samples.iter().find(|sample| sample.at >= now - RECENT);
    let recent = recent_start.map(|start| totals.since(&start.totals)).unwrap_or_default();
    let revenue = recent_start.map(|start| revenue_since(start, samples.last())).unwrap_or_default();
    let buckets = buckets(now, samples);
    html! {
        h2 { "Last 5 minutes" }
        div.tiles {
            (tile("Pings", recent.pings.to_string()))
            (tile("Bids", recent.bids.to_string()))
            (tile("Leads", recent.leads.to_string()))
            (tile("Sales", recent.sales.to_string()))
            @if revenue.is_empty() {
                (tile("Revenue", "0.00".to_string()))
            }
            @for (currency, amount) in &revenue {
                (tile(&format!("Revenue {currency}"), format!("{:.2}", amount)))
            }
            (tile("Fill rate", percent(recent.fill_rate_percent())))
            (tile("Buyer latency (mean)", millis(recent.mean_buyer_latency_ms())))
            (tile("Buyer errors and timeouts", recent.buyer_errors.to_string()))
        }
        h2 { "Last 10 minutes" }
        div.charts {
            (chart("Sales per 10 s", &buckets.iter().map(|b| b.sales as f64).collect::<Vec<_>>()))
            (chart("Pings per 10 s", &buckets.iter().map(|b| b.pings as f64).collect::<Vec<_>>()))
            (chart("Buyer latency, mean ms", &buckets.iter().map(|b| b.mean_buyer_latency_ms().unwrap_or(0) as f64).collect::<Vec<_>>()))
            (chart("Buyer errors per 10 s", &buckets.iter().map(|b| b.buyer_errors as f64).collect::<Vec<_>>()))
        }
        h2 { "Since this node started" }
        div.tiles {
            (tile("Pings", totals.pings.to_string()))
            (tile("Bids", totals.bids.to_string()))
            (tile("Leads", totals.leads.to_string()))
            (tile("Sales", totals.sales.to_string()))
            (tile("Fill rate", percent(totals.fill_rate_percent())))
            (tile("Buyer errors and timeouts", totals.buyer_errors.to_string()))
        }
        p.muted { "As of " (now.format("%Y-%m-%d %H:%M:%S UTC")) ". This node only; each node counts its own." }
    }
}

/// The whole dashboard page's body: the live part inside the element that refreshes it.
pub fn body(live_part: Markup) -> Markup {
    html! {
        h1 { "Dashboard" }
        div data-live="/console/live/dashboard" data-every="2" aria-live="polite" { (live_part) }
    }
}

fn tile(label: &str, value: String) -> Markup {
    html! {
        div.tile {
            div.label { (label) }
            div.value { (value) }
        }
    }
}

fn percent(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_string(), |value| format!("{value} %"))
}

fn millis(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_string(), |value| format!("{value} ms"))
}

/// Revenue between two samples, by currency (exact decimals).
fn revenue_since(start: &Sample, end: Option<&Sample>) -> BTreeMap<Currency, Decimal> {
    let Some(end) = end else { return BTreeMap::new() };
    end.revenue
        .iter()
        .map(|(currency, total)| (*currency, *total - start.revenue.get(currency).copied().unwrap_or_default()))
        .collect()
}

/// What happened in each `BUCKET` seconds of the last ten minutes, oldest first (a bucket
/// without samples at both ends counts nothing).
fn buckets(now: DateTime<Utc>, samples: &[Sample]) -> Vec<Totals> {
    let count = (CHARTED.num_seconds() / BUCKET) as usize;
    let start = now - CHARTED;
    let at = |time: DateTime<Utc>| samples.iter().rev().find(|sample| sample.at <= time).map(|sample| sample.totals);
    (0..count)
        .map(|n| {
            let from = start + Duration::seconds(BUCKET * n as i64);
            let to = from + Duration::seconds(BUCKET);
            match (at(from), at(to)) {
                (Some(from), Some(to)) => to.since(&from),
                _ => Totals::default(),
            }
        })
        .collect()
}

/// A line chart of `values` (oldest first), scaled to its largest value, with its caption
/// and the latest value for screen readers.
fn chart(caption: &str, values: &[f64]) -> Markup {
    let high = values.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let step = if values.len() > 1 { 100.0 / (values.len() - 1) as f64 } else { 0.0 };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(n, value)| format!("{:.2},{:.2}", n as f64 * step, 38.0 - value / high * 36.0))
        .collect();
    let latest = values.last().copied().unwrap_or(0.0);
    html! {
        figure {
            figcaption { (caption) ": latest " (latest) ", highest " (values.iter().copied().fold(0.0_f64, f64::max)) }
            svg.chart viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label=(caption) {
                line x1="0" y1="38" x2="100" y2="38" {}
                polyline points=(points.join(" ")) {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample(at: DateTime<Utc>, sales: u64, revenue: i64) -> Sample {
        let totals = Totals { sales, leads: sales * 2, leads_sold: sales, ..Totals::default() };
        Sample { at, totals, revenue: BTreeMap::from([(Currency::EUR, Decimal::new(revenue, 2))]) }
    }

    #[test]
    fn the_tiles_count_the_last_five_minutes_and_the_charts_ten_second_buckets() {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        // One sale of 10.00 a second for the last 10 minutes.
        let samples: Vec<Sample> = (0..=600)
            .map(|second| sample(now - Duration::seconds(600 - second), second as u64, second * 1_000))
            .collect();
        let totals = samples[samples.len() - 1].totals;
        let page = live(now, &samples, totals).into_string();
        assert!(page.contains("<div class=\"label\">Sales</div><div class=\"value\">300</div>"), "{page}");
        assert!(page.contains("Revenue EUR</div><div class=\"value\">3000.00"), "{page}");
        assert!(page.contains("50 %"), "fill rate: {page}");
        let buckets = buckets(now, &samples);
        assert_eq!(buckets.len(), 60);
        assert!(buckets.iter().all(|bucket| bucket.sales == 10), "{buckets:?}");
    }

    #[test]
    fn an_idle_node_shows_zeros_and_dashes() {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        let page = live(now, &[], Totals::default()).into_string();
        assert!(page.contains("–"), "{page}");
        assert!(page.contains("polyline"), "charts drawn even empty: {page}");
    }
}
