//! End-to-end tests of `BuyerClient` against real tiny HTTP servers on 127.0.0.1:0.
//!
//! The test server checks every request's signature with `signature::verify` (401 if it
//! fails, so a signing bug shows up as `Error("http 401")`), then behaves by path.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

use super::breaker::FAILURES_TO_OPEN;
use super::signature::{self, SIGNATURE_HEADER};
use super::{BidAnswer, BreakerState, BuyerClient, PingCall, PostAnswer};
use crate::domain::money::Money;

const SECRET: &str = "whsec_test_secret";
const BODY: &[u8] = br#"{"ping_id":"p1","zip":"10001","tmax_ms":300}"#;

/// Deadlines must hold to within this (generous on a shared 2-core machine).
const SLACK: Duration = Duration::from_millis(100);

struct TestServer {
    base: String,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(true).await
    }

    /// `keep_alive: false`: the server closes every connection after one answer.
    async fn start_with(keep_alive: bool) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (requests_seen, connections_seen) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections_seen.fetch_add(1, Ordering::SeqCst);
                let requests_seen = requests_seen.clone();
                let service = service_fn(move |request| {
                    requests_seen.fetch_add(1, Ordering::SeqCst);
                    respond(request)
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { base, requests, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

type TestBody = BoxBody<Bytes, Infallible>;

async fn respond(request: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    let Ok(body) = body else {
        return Ok(reply(StatusCode::BAD_REQUEST, ""));
    };
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let signed = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| signature::verify(SECRET.as_bytes(), value, &body, unix_now, 60));
    let well_formed = headers.get("content-type").map(|v| v.as_bytes()) == Some(b"application/json")
        && headers.get("user-agent").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("leadrouter/"));
    if !signed {
        return Ok(reply(StatusCode::UNAUTHORIZED, ""));
    }
    if !well_formed {
        return Ok(reply(StatusCode::BAD_REQUEST, ""));
    }
    let ok = |text: &'static str| Ok(reply(StatusCode::OK, text));
    match path.as_str() {
        "/bid-string" => ok(r#"{"bid":"38.00"}"#),
        "/bid-number" => ok(r#"{"bid": 38.5, "ttl_s": 60}"#),
        "/bid-null" => ok(r#"{"bid":null}"#),
        "/no-content" => Ok(reply(StatusCode::NO_CONTENT, "")),
        "/server-error" => Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, "oops")),
        "/garbage" => ok("<html>not json"),
        "/negative" => ok(r#"{"bid":"-5.00"}"#),
        "/huge" => {
            let huge = Bytes::from(vec![b' '; 10 * 1024 * 1024]);
            Ok(Response::new(Full::new(huge).boxed()))
        }
        "/trickle" => Ok(Response::new(Trickle::new().boxed())),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            ok("{}")
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ok(r#"{"bid":"38.00"}"#)
        }
        "/accept" => ok(r#"{"accepted":true}"#),
        "/reject" => ok(r#"{"accepted":false,"reason":"duplicate\r\nlead"}"#),
        _ => Ok(reply(StatusCode::NOT_FOUND, "")),
    }
}

fn reply(status: StatusCode, text: &'static str) -> Response<TestBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *response.status_mut() = status;
    response
}

/// A 200 body that sends one space every 20 ms, forever.
struct Trickle {
    next: Pin<Box<Sleep>>,
}

impl Trickle {
    const EVERY: Duration = Duration::from_millis(20);

    fn new() -> Trickle {
        Trickle { next: Box::pin(tokio::time::sleep(Trickle::EVERY)) }
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        ready!(self.next.as_mut().poll(cx));
        self.next.as_mut().reset(Instant::now() + Trickle::EVERY);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }
}

fn deadline_in(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

async fn ping(client: &BuyerClient, url: &str) -> BidAnswer {
    let (answer, _latency) = client.ping(url, SECRET, Bytes::from_static(BODY), deadline_in(2_000)).await;
    answer
}

#[tokio::test]
async fn ping_answers_are_read_per_contract() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    let money = |text| BidAnswer::Bid(Money::parse(text).unwrap());
    let cases = [
        ("bid-string", money("38.00")),
        ("bid-number", money("38.50")),
        ("bid-null", BidAnswer::NoBid),
        ("no-content", BidAnswer::NoBid),
        ("server-error", BidAnswer::Error("http 500".into())),
        ("garbage", BidAnswer::Error("invalid json".into())),
        ("negative", BidAnswer::Error("negative bid".into())),
        ("huge", BidAnswer::Error("answer too large".into())),
    ];
    for (path, expected) in cases {
        assert_eq!(ping(&client, &server.url(path)).await, expected, "{path}");
    }
}

#[tokio::test]
async fn signature_is_checked_by_the_buyer() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    let (answer, _) =
        client.ping(&server.url("bid-string"), "wrong secret", Bytes::from_static(BODY), deadline_in(2_000)).await;
    assert_eq!(answer, BidAnswer::Error("http 401".into()));
}

#[tokio::test]
async fn hung_and_trickling_buyers_time_out_by_the_deadline() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    for path in ["hang", "trickle"] {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let (answer, latency) = client.ping(&server.url(path), SECRET, Bytes::from_static(BODY), deadline).await;
        assert_eq!(answer, BidAnswer::Timeout, "{path}");
        assert!(Instant::now() < deadline + SLACK, "{path} overran the deadline");
        assert!(latency >= Duration::from_millis(290), "{path}: {latency:?}");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let (answer, _) = client.post(&server.url("hang"), SECRET, Bytes::from_static(BODY), deadline).await;
    assert_eq!(answer, PostAnswer::Timeout);
    assert!(Instant::now() < deadline + SLACK);
}

#[tokio::test]
async fn past_deadline_makes_no_call() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    let (answer, latency) =
        client.ping(&server.url("bid-string"), SECRET, Bytes::from_static(BODY), Instant::now()).await;
    assert_eq!((answer, latency), (BidAnswer::Timeout, Duration::ZERO));
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn transport_and_url_errors() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ping", closed.local_addr().unwrap());
    drop(closed);
    let client = BuyerClient::new();
    assert_eq!(ping(&client, &url).await, BidAnswer::Error("connect".into()));
    assert_eq!(ping(&client, "not a url").await, BidAnswer::Error("bad url".into()));
    assert_eq!(ping(&client, "ftp://x/y").await, BidAnswer::Error("bad url".into()));
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    for _ in 0..3 {
        assert!(matches!(ping(&client, &server.url("bid-string")).await, BidAnswer::Bid(_)));
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn post_answers_are_read_per_contract() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    let post = |path: &'static str| {
        let client = client.clone();
        let url = server.url(path);
        async move {
            let (answer, _) = client.post(&url, SECRET, Bytes::from_static(BODY), deadline_in(2_000)).await;
            answer
        }
    };
    let rejected = |reason: &str| PostAnswer::Rejected(reason.to_string());
    assert_eq!(post("accept").await, PostAnswer::Accepted { buyer_reference: None });
    assert_eq!(post("reject").await, rejected("duplicatelead"));
    assert_eq!(post("server-error").await, rejected("http 500"));
    assert_eq!(post("bid-string").await, rejected("invalid answer"));
    assert_eq!(post("no-content").await, rejected("invalid answer"));
    assert_eq!(post("huge").await, rejected("answer too large"));
}

#[tokio::test]
async fn breaker_opens_after_failures_and_stops_calling() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    let url = server.url("server-error");
    for _ in 0..FAILURES_TO_OPEN {
        assert_eq!(ping(&client, &url).await, BidAnswer::Error("http 500".into()));
    }
    assert_eq!(client.breakers().state(&url), BreakerState::Open);
    assert_eq!(ping(&client, &url).await, BidAnswer::CircuitOpen);
    assert_eq!(server.requests(), FAILURES_TO_OPEN as usize);
    // Other endpoints of the same host are unaffected; no-bids count as healthy.
    for _ in 0..FAILURES_TO_OPEN + 1 {
        assert_eq!(ping(&client, &server.url("no-content")).await, BidAnswer::NoBid);
    }
    assert_eq!(client.breakers().state(&server.url("no-content")), BreakerState::Closed);
}

#[tokio::test]
async fn ping_all_runs_in_parallel_and_keeps_order() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    let call =
        |path: &str| PingCall { url: server.url(path), secret: SECRET.to_string(), body: Bytes::from_static(BODY) };
    let calls = vec![call("hang"), call("bid-string"), call("hang"), call("no-content"), call("trickle")];
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let answers: Vec<BidAnswer> =
        client.ping_all(calls, deadline).await.into_iter().map(|(answer, _)| answer).collect();
    assert!(Instant::now() < deadline + SLACK, "fan-out overran the deadline");
    assert_eq!(
        answers,
        vec![
            BidAnswer::Timeout,
            BidAnswer::Bid(Money::parse("38").unwrap()),
            BidAnswer::Timeout,
            BidAnswer::NoBid,
            BidAnswer::Timeout,
        ]
    );
    assert!(client.ping_all(Vec::new(), deadline).await.is_empty());
}

#[tokio::test]
async fn a_connection_the_buyer_closed_is_not_used_again() {
    let server = TestServer::start_with(false).await;
    let client = BuyerClient::new();
    for _ in 0..3 {
        assert!(matches!(ping(&client, &server.url("bid-string")).await, BidAnswer::Bid(_)));
        // Let the buyer's close arrive before the next call takes the idle connection.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn unread_and_cut_bodies_do_not_spoil_the_next_call() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    for path in ["server-error", "huge", "garbage", "bid-string"] {
        let expected_bid = path == "bid-string";
        let answer = ping(&client, &server.url(path)).await;
        assert_eq!(matches!(answer, BidAnswer::Bid(_)), expected_bid, "{path}: {answer:?}");
        assert!(matches!(ping(&client, &server.url("bid-string")).await, BidAnswer::Bid(_)), "after {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_one_busy_host_do_not_wait_for_each_other() {
    let server = TestServer::start().await;
    let client = BuyerClient::new();
    // Warm one connection, so the fan-out finds a pool that is too small for it.
    assert!(matches!(ping(&client, &server.url("bid-string")).await, BidAnswer::Bid(_)));
    let calls: Vec<PingCall> = (0..6)
        .map(|_| PingCall { url: server.url("slow"), secret: SECRET.to_string(), body: Bytes::from_static(BODY) })
        .collect();
    let started = Instant::now();
    let answers = client.ping_all(calls, started + Duration::from_millis(1_000)).await;
    assert!(answers.iter().all(|(answer, _)| matches!(answer, BidAnswer::Bid(_))), "{answers:?}");
    // Six 100 ms answers in parallel, not one after another on the warm connection.
    assert!(started.elapsed() < Duration::from_millis(400), "{:?}", started.elapsed());
    assert!(server.connections.load(Ordering::SeqCst) >= 6);
}
