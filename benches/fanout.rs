//! Ping fan-out benchmarks (BENCHMARKS.md, "Hot path (issue 17): ping fan-out"): what the
//! router spends per ping on its side of the ten buyer calls, with buyers that answer at
//! once so that only our own work is timed.
//!
//! - `fanout/sign`: the `X-Leadrouter-Signature` of one native ping body (HMAC-SHA-256 over
//!   time and body), made once per buyer call (`buyers::client::signed_request`);
//! - `fanout/answer`: a native bid answer read into a `BidAnswer` (`BidAnswer::of_native`);
//! - `fanout/ping_all/10`: `BuyerClient::ping_all` to 10 buyers on loopback (in-process
//!   HTTP/1.1 servers, one per port, answering `{"bid":"38.07"}` at once), warm keep-alive
//!   connections, a 2-worker runtime as on the test machine: request render and sign,
//!   connection checkout, write, the answer's read and parse, the breakers, the join.
//!   It includes the loopback round trips and the servers' own work on the same cores;
//! - `fanout/hold/{0,3000}`: the winner's hold and its release on one buyer's book
//!   (`BuyerBook::try_hold`, `release`) with no other hold live and with 3,000, what one of
//!   the load test's ten buyers carries at 500 pings/s (a ping's hold lives `ping_ttl_s`,
//!   60 s): the profiles name `BuyerBook::reserved`, which sums every live hold per hold.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::Response;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use leadrouter::buyers::signature;
use leadrouter::buyers::{BidAnswer, BuyerClient, PingCall};
use leadrouter::domain::budget::{BuyerBook, Funding, HoldRequest, HoldScope};
use leadrouter::domain::model::BillingMode;
use leadrouter::domain::money::Money;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;

const SECRET: &str = "loadtest-webhook-secret-0001";
const BID: &[u8] = br#"{"bid":"38.07"}"#;

/// The native ping body as `engine::decide::ping_buyers` builds it for the load test's
/// leads.
fn ping_body() -> Bytes {
    Bytes::from(
        json!({
            "ping_id": "png_Fw5JcX1oLm9ZeB7k",
            "vertical": "solar",
            "zip": "80331",
            "country": "DE",
            "state": "BY",
            "fields": {"roof_type": "tile"},
            "tmax_ms": 995,
        })
        .to_string(),
    )
}

async fn buyer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ping", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BID))))
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    url
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let body = ping_body();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    group.bench_function("sign", |b| b.iter(|| black_box(signature::sign(SECRET.as_bytes(), now, black_box(&body)))));
    assert!(matches!(BidAnswer::of_native(200, BID), BidAnswer::Bid(_)));
    group.bench_function("answer", |b| b.iter(|| black_box(BidAnswer::of_native(200, black_box(BID)))));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let urls: Vec<String> = runtime.block_on(async { futures::future::join_all((0..10).map(|_| buyer())).await });
    let client = BuyerClient::new();
    let calls = || -> Vec<PingCall> {
        urls.iter().map(|url| PingCall { url: url.clone(), secret: SECRET.to_string(), body: body.clone() }).collect()
    };
    let fan_out = |client: &BuyerClient| {
        let answers = runtime.block_on(client.ping_all(calls(), Instant::now() + Duration::from_secs(1)));
        assert!(answers.iter().all(|(answer, _)| matches!(answer, BidAnswer::Bid(_))), "{answers:?}");
        answers
    };
    fan_out(&client);
    group.bench_function("ping_all/10", |b| b.iter(|| black_box(fan_out(&client))));

    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(60);
    let funding = Funding { mode: BillingMode::Prepaid, credit_limit: None };
    let price = Money::parse("38.07").unwrap();
    let request = |hold_id: String| HoldRequest {
        hold_id,
        campaign_id: "lt-campaign-01",
        price,
        funding,
        caps: &[],
        tz: chrono_tz::Europe::Berlin,
        expires_at,
        scope: HoldScope::Ping,
    };
    for live in [0, 3_000] {
        let mut book = BuyerBook::new(Money::parse("10000000").unwrap());
        let now = chrono::Utc::now();
        for n in 0..live {
            book.try_hold(now, request(format!("hold-{n}"))).unwrap();
        }
        group.bench_function(format!("hold/{live}"), |b| {
            b.iter(|| {
                black_box(book.try_hold(now, request("hold-bench".to_string())).unwrap());
                assert!(book.release("hold-bench"));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
