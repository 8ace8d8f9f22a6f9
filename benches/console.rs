//! The console's dashboard, served in-process (BENCHMARKS.md, "Console: dashboard page time
//! and live updates"): what `GET /console/live/dashboard` and `GET /console` cost the
//! router with a full window of activity samples, without the network.
//!
//! The dashboard renders from the activity samples of the last 11 minutes (one a second,
//! `telemetry::activity`). Before the server starts, this fills them: 660 samples, one a
//! second up to now, with a busy node's counts between them (100 pings, 60 bids, 50 leads,
//! 40 of them sold, 40 sales and 40 buyer requests of 5 ms a second, EUR revenue), so the
//! tiles and charts have values. Then a router starts (`server::start`, an empty market,
//! the system clock, whose own sampler goes on adding one sample a second), and the
//! console's routes are called through the ops listener's whole service
//! (`api::ops_service`, `tower::ServiceExt::oneshot`) with a signed-in session's cookie:
//!
//! - `ops/healthz`: `GET /healthz`, the service's floor (routing, layers, a tiny answer);
//! - `console/live`: `GET /console/live/dashboard`, what each open dashboard asks every 2 s;
//! - `console/page`: `GET /console`, the whole page (the frame and the live part);
//! - `activity/samples_since_11m`: `activity().samples_since(now - 11 min)` alone, the copy
//!   of the samples every live part starts with.
//!
//! The dashboard's own functions (`api::console::dashboard`) are private to the crate, so
//! the render is measured as served; the floor and the copy show how much of it is render.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use leadrouter::api::limits::AdmissionLimits;
use leadrouter::api::{ops_service, ApiService, AppState};
use leadrouter::clock::SystemClock;
use leadrouter::domain::money::{Currency, Money};
use leadrouter::server::{self, FileConfig, RunningServer, ServerOptions};
use leadrouter::telemetry::{self, activity::activity};
use tower::ServiceExt;

const ADMIN_TOKEN: &str = "bench-admin-token-0001";
/// The dashboard reads the last 11 minutes of samples.
const SAMPLES: i64 = 660;

/// 11 minutes of one-second samples of a busy node, up to now.
fn fill_samples() {
    // The process's recorder (with the dashboard's counting beside it), as a server
    // installs it; the counters below go through it as the engine's increments do.
    telemetry::prometheus();
    let now = Utc::now();
    for second in (1..=SAMPLES).rev() {
        metrics::counter!(telemetry::PINGS_TOTAL, "vertical" => "solar", "outcome" => "bid").increment(60);
        metrics::counter!(telemetry::PINGS_TOTAL, "vertical" => "solar", "outcome" => "no_bid").increment(40);
        metrics::counter!(telemetry::LEADS_TOTAL, "vertical" => "solar", "outcome" => "sold").increment(40);
        metrics::counter!(telemetry::LEADS_TOTAL, "vertical" => "solar", "outcome" => "rejected").increment(10);
        metrics::counter!(telemetry::SALES_TOTAL, "vertical" => "solar").increment(40);
        metrics::counter!(telemetry::BUYER_REQUESTS_TOTAL, "buyer" => "b1", "kind" => "post", "outcome" => "accepted")
            .increment(40);
        for _ in 0..40 {
            metrics::histogram!(telemetry::BUYER_REQUEST_DURATION_SECONDS, "buyer" => "b1", "kind" => "post")
                .record(0.005);
            telemetry::record_revenue(Currency::EUR, Money::cents(3_500));
        }
        activity().sample(now - chrono::Duration::seconds(second));
    }
}

fn request(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().method("GET").uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).expect("a request")
}

/// The value of cookie `name` among an answer's `Set-Cookie` headers.
fn set_cookie(headers: &axum::http::HeaderMap, name: &str) -> String {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next()?.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_string())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// Calls `service` and reads the whole answer; its status and length.
async fn call(service: &ApiService, request: Request<Body>) -> (StatusCode, usize) {
    let response = service.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let body = response.into_body().collect().await.expect("a body").to_bytes();
    (status, body.len())
}

/// Signs in with the admin token as the console's form does; the session's `Cookie`.
async fn sign_in(service: &ApiService) -> String {
    let form = service.clone().oneshot(request("/console/sign-in", None)).await.expect("the form");
    let token = set_cookie(form.headers(), "lr_console_sign_in");
    let body = format!("csrf={token}&name=&token={ADMIN_TOKEN}");
    let post = Request::builder()
        .method("POST")
        .uri("/console/sign-in")
        .header(header::COOKIE, format!("lr_console_sign_in={token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("a request");
    let answer = service.clone().oneshot(post).await.expect("signed in");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "the admin token signs in");
    format!("lr_console={}", set_cookie(answer.headers(), "lr_console"))
}

fn dashboard(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    fill_samples();
    let data = tempfile::tempdir().expect("a data dir");
    let options =
        ServerOptions::ephemeral(data.path().to_path_buf(), FileConfig::default(), Arc::new(SystemClock), ADMIN_TOKEN);
    let running: RunningServer = runtime.block_on(server::start(options)).expect("the router starts");
    let state =
        Arc::new(AppState::new(Arc::clone(&running.router), ADMIN_TOKEN.to_string(), AdmissionLimits::default()));
    let service = ops_service(state);
    let cookie = runtime.block_on(sign_in(&service));
    for path in ["/console/live/dashboard", "/console"] {
        let (status, bytes) = runtime.block_on(call(&service, request(path, Some(&cookie))));
        assert_eq!(status, StatusCode::OK, "{path}");
        eprintln!("{path}: {bytes} bytes, {} samples in the window", samples_in_window().len());
    }

    let mut group = c.benchmark_group("console");
    group.measurement_time(Duration::from_secs(5));
    // Each call is one `block_on` from this thread (a few µs, in the floor as in the rest).
    let cases = [
        ("ops/healthz", "/healthz", None),
        ("console/live", "/console/live/dashboard", Some(cookie.as_str())),
        ("console/page", "/console", Some(cookie.as_str())),
    ];
    for (name, path, cookie) in cases {
        group.bench_function(name, |b| b.iter(|| black_box(runtime.block_on(call(&service, request(path, cookie))))));
    }
    group.bench_function("activity/samples_since_11m", |b| b.iter(|| black_box(samples_in_window())));
    group.finish();
    runtime.block_on(running.shutdown());
}

fn samples_in_window() -> Vec<telemetry::activity::Sample> {
    activity().samples_since(Utc::now() - chrono::Duration::minutes(11))
}

criterion_group!(benches, dashboard);
criterion_main!(benches);
