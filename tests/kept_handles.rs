//! Metric handles taken before our recorder is installed are not kept (`telemetry::kept`):
//! one taken from the no-op recorder would swallow every later increment. A test binary of
//! its own, because the recorder is process-wide and the other binaries install it early.

use leadrouter::telemetry::{self, meters};

fn series(page: &str, prefix: &str) -> Option<f64> {
    page.lines().find(|line| line.starts_with(prefix)).and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[test]
fn handles_from_before_the_recorder_are_not_kept() {
    // Before the recorder: these go to the no-op recorder and must leave nothing kept.
    meters::sale("kept-v1");
    meters::delivery("kept_mode", "accepted");
    meters::http_request("/kept/route", http::StatusCode::OK, 0.001);

    let handle = telemetry::prometheus();
    meters::sale("kept-v1");
    meters::sale("kept-v1");
    meters::delivery("kept_mode", "accepted");
    meters::http_request("/kept/route", http::StatusCode::OK, 0.002);
    let page = handle.render();

    // Only the increments after the install count, and every one of them does.
    let sales = format!("{}{{vertical=\"kept-v1\"}} ", telemetry::SALES_TOTAL);
    assert_eq!(series(&page, &sales), Some(2.0), "{page}");
    let deliveries = format!("{}{{mode=\"kept_mode\",outcome=\"accepted\"}} ", telemetry::DELIVERIES_TOTAL);
    assert_eq!(series(&page, &deliveries), Some(1.0), "{page}");
    let requests =
        format!("{}_count{{route=\"/kept/route\",status=\"200\"}} ", telemetry::HTTP_REQUEST_DURATION_SECONDS);
    assert_eq!(series(&page, &requests), Some(1.0), "{page}");
}
