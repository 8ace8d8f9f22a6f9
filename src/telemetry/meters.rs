//! The per-buyer, per-vertical and per-route metrics of the hot paths, through handles kept
//! per owner (`kept`): buyer requests, their latency and the available balance; leads,
//! pings and posts by outcome, sales and decision time; deliveries; HTTP request durations.

use std::time::Duration;

use super::kept::Kept;
use super::{
    BUYER_AVAILABLE_BALANCE, BUYER_REQUESTS_TOTAL, BUYER_REQUEST_DURATION_SECONDS, DECISION_DURATION_SECONDS,
    DELIVERIES_TOTAL, HTTP_REQUEST_DURATION_SECONDS, SALES_TOTAL,
};

static BY_BUYER: Kept = Kept::new();
static BY_VERTICAL: Kept = Kept::new();
static BY_ROUTE: Kept = Kept::new();
static BY_DELIVERY_MODE: Kept = Kept::new();

/// Counts one delivery of `mode` (`webhook`, `webhook_async`, `pull`) by its outcome.
pub fn delivery(mode: &'static str, outcome: &'static str) {
    let counter = BY_DELIVERY_MODE.counter(
        mode,
        (DELIVERIES_TOTAL, outcome, ""),
        || metrics::counter!(DELIVERIES_TOTAL, "mode" => mode, "outcome" => outcome),
    );
    counter.increment(1);
}

/// Records one HTTP request's duration by the route that answered it and its status.
pub fn http_request(route: &str, status: http::StatusCode, seconds: f64) {
    let histogram = match common_status(status) {
        Some(label) => BY_ROUTE.histogram(
            route,
            (HTTP_REQUEST_DURATION_SECONDS, label, ""),
            || metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route.to_string(), "status" => label),
        ),
        // Rare statuses are not kept: a client cannot grow the handles this way.
        None => metrics::histogram!(
            HTTP_REQUEST_DURATION_SECONDS,
            "route" => route.to_string(),
            "status" => status.as_str().to_string()
        ),
    };
    histogram.record(seconds);
}

/// The `status` label of the answers a route commonly gives, as a static string.
fn common_status(status: http::StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        404 => "404",
        409 => "409",
        422 => "422",
        429 => "429",
        503 => "503",
        _ => return None,
    })
}

/// Counts one call to a buyer's endpoint of `kind` (`ping`, `post`) and its latency.
pub fn buyer_request(buyer_id: &str, kind: &'static str, outcome: &'static str, latency: Duration) {
    let counter = BY_BUYER.counter(buyer_id, (BUYER_REQUESTS_TOTAL, kind, outcome), || {
        metrics::counter!(BUYER_REQUESTS_TOTAL, "buyer" => buyer_id.to_string(), "kind" => kind, "outcome" => outcome)
    });
    counter.increment(1);
    let histogram = BY_BUYER.histogram(
        buyer_id,
        (BUYER_REQUEST_DURATION_SECONDS, kind, ""),
        || metrics::histogram!(BUYER_REQUEST_DURATION_SECONDS, "buyer" => buyer_id.to_string(), "kind" => kind),
    );
    histogram.record(latency.as_secs_f64());
}

/// Sets a buyer's available balance gauge.
pub fn buyer_available(buyer_id: &str, available: f64) {
    let gauge = BY_BUYER.gauge(
        buyer_id,
        (BUYER_AVAILABLE_BALANCE, "", ""),
        || metrics::gauge!(BUYER_AVAILABLE_BALANCE, "buyer" => buyer_id.to_string()),
    );
    gauge.set(available);
}

/// Counts one ping, post or lead of `vertical` (`name` is one of `*_total{vertical,outcome}`).
pub fn decided(name: &'static str, vertical: &str, outcome: &'static str) {
    let counter = BY_VERTICAL.counter(
        vertical,
        (name, outcome, ""),
        || metrics::counter!(name, "vertical" => vertical.to_string(), "outcome" => outcome),
    );
    counter.increment(1);
}

/// Counts one settled sale of `vertical`.
pub fn sale(vertical: &str) {
    let counter = BY_VERTICAL.counter(
        vertical,
        (SALES_TOTAL, "", ""),
        || metrics::counter!(SALES_TOTAL, "vertical" => vertical.to_string()),
    );
    counter.increment(1);
}

/// Records how long a decision of `vertical` under `model` took.
pub fn decision_time(vertical: &str, model: &'static str, seconds: f64) {
    let histogram = BY_VERTICAL.histogram(
        vertical,
        (DECISION_DURATION_SECONDS, model, ""),
        || metrics::histogram!(DECISION_DURATION_SECONDS, "vertical" => vertical.to_string(), "model" => model),
    );
    histogram.record(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(page: &str, prefix: &str) -> Option<f64> {
        page.lines().find(|line| line.starts_with(prefix)).and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }

    /// Kept handles count every call into the same series the macros would, label by label.
    #[test]
    fn kept_handles_count_into_the_same_series_as_the_macros() {
        let handle = crate::telemetry::prometheus();
        for outcome in ["bid", "bid", "no_bid", "bid"] {
            buyer_request("meters-b1", "ping", outcome, Duration::from_millis(5));
        }
        buyer_request("meters-b1", "post", "accepted", Duration::from_millis(20));
        buyer_request("meters-b2", "ping", "bid", Duration::from_millis(5));
        buyer_available("meters-b1", 12.5);
        buyer_available("meters-b1", 7.25);
        for outcome in ["sold", "rejected", "sold"] {
            decided(crate::telemetry::LEADS_TOTAL, "meters-v1", outcome);
        }
        decided(crate::telemetry::PINGS_TOTAL, "meters-v1", "bid");
        sale("meters-v1");
        sale("meters-v1");
        decision_time("meters-v1", "bidding", 0.002);
        delivery("meters_mode", "accepted");
        delivery("meters_mode", "accepted");
        delivery("meters_mode", "timeout");
        http_request("/meters/route", http::StatusCode::OK, 0.001);
        http_request("/meters/route", http::StatusCode::OK, 0.002);
        http_request("/meters/route", http::StatusCode::IM_A_TEAPOT, 0.003);
        let page = handle.render();
        let requests = |buyer: &str, kind: &str, outcome: &str| {
            let prefix = format!("{BUYER_REQUESTS_TOTAL}{{buyer=\"{buyer}\",kind=\"{kind}\",outcome=\"{outcome}\"}} ");
            series(&page, &prefix)
        };
        assert_eq!(requests("meters-b1", "ping", "bid"), Some(3.0), "{page}");
        assert_eq!(requests("meters-b1", "ping", "no_bid"), Some(1.0));
        assert_eq!(requests("meters-b1", "post", "accepted"), Some(1.0));
        assert_eq!(requests("meters-b2", "ping", "bid"), Some(1.0));
        let pings = format!("{BUYER_REQUEST_DURATION_SECONDS}_count{{buyer=\"meters-b1\",kind=\"ping\"}} ");
        assert_eq!(series(&page, &pings), Some(4.0), "{page}");
        let balance = format!("{BUYER_AVAILABLE_BALANCE}{{buyer=\"meters-b1\"}} ");
        assert_eq!(series(&page, &balance), Some(7.25), "{page}");
        let leads = |outcome: &str| {
            series(
                &page,
                &format!("{}{{vertical=\"meters-v1\",outcome=\"{outcome}\"}} ", crate::telemetry::LEADS_TOTAL),
            )
        };
        assert_eq!((leads("sold"), leads("rejected")), (Some(2.0), Some(1.0)), "{page}");
        let pings = format!("{}{{vertical=\"meters-v1\",outcome=\"bid\"}} ", crate::telemetry::PINGS_TOTAL);
        assert_eq!(series(&page, &pings), Some(1.0));
        assert_eq!(series(&page, &format!("{SALES_TOTAL}{{vertical=\"meters-v1\"}} ")), Some(2.0));
        let decisions = format!("{DECISION_DURATION_SECONDS}_count{{vertical=\"meters-v1\",model=\"bidding\"}} ");
        assert_eq!(series(&page, &decisions), Some(1.0), "{page}");
        let route = |status: &str| {
            series(
                &page,
                &format!("{HTTP_REQUEST_DURATION_SECONDS}_count{{route=\"/meters/route\",status=\"{status}\"}} "),
            )
        };
        assert_eq!((route("200"), route("418")), (Some(2.0), Some(1.0)), "{page}");
        let deliveries = |outcome: &str| {
            series(&page, &format!("{DELIVERIES_TOTAL}{{mode=\"meters_mode\",outcome=\"{outcome}\"}} "))
        };
        assert_eq!((deliveries("accepted"), deliveries("timeout")), (Some(2.0), Some(1.0)), "{page}");
    }
}
