//! `loadtest mock-buyer`: a buyer endpoint that answers leadrouter's pings with a random
//! bid and its posts with accept or reject (DESIGN §5), after a configurable delay. With
//! `--reference` an acceptance also names the buyer's own lead id,
//! `{"accepted":true,"id":"mb-<n>"}`, for campaigns whose answer rules read a reference
//! (DESIGN §5.1); the native reading ignores the extra member.
//!
//! The delay runs from the moment the request arrived (its head was read) and ends on a
//! precise timer (`crate::timer`), not on tokio's 1 ms tick: `--latency-ms 5` answers 5 ms
//! after arrival plus the wake-up latency (tens of µs), never sooner, so a benchmark can
//! tell what the caller adds over the buyer's own latency.
//!
//! It accepts the `X-Leadrouter-Signature` header without checking it: verifying costs the
//! buyer, not leadrouter, and would only add noise to what is measured. It prints nothing
//! per request (printing would be the bottleneck) and reports its counts when stopped.
//!
//! Decisions (`Behaviour::ping`, `Behaviour::post`) are pure functions of the flags and the
//! random source, so tests check them without a socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::{Method, StatusCode};

use crate::cents::{format_cents, BidRange};
use crate::rng::Rng;
use crate::serve::{self, json, Answer};
use crate::timer::Timer;

/// What the flags ask of the buyer, checked once at start.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub bids: BidRange,
    pub failure_ppm: u32,
    pub reject_ppm: u32,
    /// Accepted posts carry `"id":"mb-<n>"` (n counts acceptances from 1).
    pub reference: bool,
}

/// The answer to one ping, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingAnswer {
    Bid { cents: u64 },
    Failure,
}

/// The answer to one post, before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostAnswer {
    Accepted,
    Rejected,
    Failure,
}

impl Behaviour {
    /// How long to wait before answering: the latency plus a uniform jitter.
    pub fn delay(&self, rng: &Rng) -> Duration {
        let jitter = if self.jitter_ms == 0 { 0 } else { rng.in_range(0, self.jitter_ms) };
        Duration::from_millis(self.latency_ms.saturating_add(jitter))
    }

    pub fn ping(&self, rng: &Rng) -> PingAnswer {
        if rng.chance_ppm(self.failure_ppm) {
            return PingAnswer::Failure;
        }
        PingAnswer::Bid { cents: self.bids.draw(rng) }
    }

    /// Failure applies to posts as to pings (an endpoint that fails, fails both), then
    /// the reject rate to what is left.
    pub fn post(&self, rng: &Rng) -> PostAnswer {
        if rng.chance_ppm(self.failure_ppm) {
            PostAnswer::Failure
        } else if rng.chance_ppm(self.reject_ppm) {
            PostAnswer::Rejected
        } else {
            PostAnswer::Accepted
        }
    }
}

/// The body of an accepted post: `{"accepted":true}`, or with the buyer's reference
/// `{"accepted":true,"id":"mb-7"}`.
pub fn accepted_body(reference: Option<u64>) -> bytes::Bytes {
    match reference {
        None => bytes::Bytes::from_static(br#"{"accepted":true}"#),
        Some(n) => bytes::Bytes::from(format!(r#"{{"accepted":true,"id":"mb-{n}"}}"#)),
    }
}

/// The bid body, `{"bid":"38.07"}`.
pub fn bid_body(cents: u64) -> String {
    format!(r#"{{"bid":"{}"}}"#, format_cents(cents))
}

#[derive(Debug, Default)]
struct Counts {
    pings: AtomicU64,
    bids: AtomicU64,
    posts: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    failures: AtomicU64,
    unknown: AtomicU64,
}

impl Counts {
    fn report(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "mock-buyer stopped: pings {} bids {} posts {} accepted {} rejected {} failures(500) {} other {}",
            n(&self.pings),
            n(&self.bids),
            n(&self.posts),
            n(&self.accepted),
            n(&self.rejected),
            n(&self.failures),
            n(&self.unknown)
        )
    }
}

struct Buyer {
    behaviour: Behaviour,
    rng: Rng,
    counts: Counts,
    timer: Timer,
}

pub async fn run(listen: SocketAddr, behaviour: Behaviour, seed: u64) -> anyhow::Result<()> {
    let timer = Timer::start().context("starting the timer thread")?;
    let buyer = Arc::new(Buyer { behaviour, rng: Rng::new(seed), counts: Counts::default(), timer });
    let served = Arc::clone(&buyer);
    eprintln!("mock-buyer listening on {listen} ({:?})", buyer.behaviour);
    serve::serve(listen, move |request| answer(Arc::clone(&served), request)).await?;
    eprintln!("{}", buyer.counts.report());
    Ok(())
}

/// Serves as `run` does, on `listener` until `stop` resolves (tests: an ephemeral port).
#[cfg(test)]
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    behaviour: Behaviour,
    seed: u64,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let timer = Timer::start().context("starting the timer thread")?;
    let buyer = Arc::new(Buyer { behaviour, rng: Rng::new(seed), counts: Counts::default(), timer });
    serve::serve_on(listener, move |request| answer(Arc::clone(&buyer), request), stop).await;
    Ok(())
}

async fn answer(buyer: Arc<Buyer>, request: hyper::Request<hyper::body::Incoming>) -> Answer {
    let arrived = Instant::now();
    let counts = &buyer.counts;
    let route = (request.method() == Method::POST).then(|| request.uri().path().to_string());
    let Some((_parts, _body)) = serve::read_body(request).await else {
        counts.unknown.fetch_add(1, Ordering::Relaxed);
        return json(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"body too large"}"#);
    };
    let delay = buyer.behaviour.delay(&buyer.rng);
    if !delay.is_zero() {
        buyer.timer.sleep_until(arrived + delay).await;
    }
    match route.as_deref() {
        Some("/ping") => {
            counts.pings.fetch_add(1, Ordering::Relaxed);
            match buyer.behaviour.ping(&buyer.rng) {
                PingAnswer::Bid { cents } => {
                    counts.bids.fetch_add(1, Ordering::Relaxed);
                    json(StatusCode::OK, bid_body(cents))
                }
                PingAnswer::Failure => failure(counts),
            }
        }
        Some("/post") => {
            counts.posts.fetch_add(1, Ordering::Relaxed);
            match buyer.behaviour.post(&buyer.rng) {
                PostAnswer::Accepted => {
                    let n = counts.accepted.fetch_add(1, Ordering::Relaxed) + 1;
                    json(StatusCode::OK, accepted_body(buyer.behaviour.reference.then_some(n)))
                }
                PostAnswer::Rejected => {
                    counts.rejected.fetch_add(1, Ordering::Relaxed);
                    json(StatusCode::OK, r#"{"accepted":false,"reason":"test"}"#)
                }
                PostAnswer::Failure => failure(counts),
            }
        }
        _ => {
            counts.unknown.fetch_add(1, Ordering::Relaxed);
            json(StatusCode::NOT_FOUND, r#"{"error":"POST /ping or POST /post"}"#)
        }
    }
}

fn failure(counts: &Counts) -> Answer {
    counts.failures.fetch_add(1, Ordering::Relaxed);
    json(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"mock failure"}"#)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cents::parse_cents;
    use crate::rng::PPM;

    fn behaviour(failure_ppm: u32, reject_ppm: u32) -> Behaviour {
        Behaviour {
            latency_ms: 5,
            jitter_ms: 3,
            bids: BidRange::parse("20.00", "60.00").expect("valid"),
            failure_ppm,
            reject_ppm,
            reference: false,
        }
    }

    #[test]
    fn bids_are_decimal_strings_within_the_range() {
        let b = behaviour(0, 0);
        let rng = Rng::new(9);
        for _ in 0..1_000 {
            let PingAnswer::Bid { cents } = b.ping(&rng) else { panic!("no failures configured") };
            assert!((2000..=6000).contains(&cents));
            let body = bid_body(cents);
            let value: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
            let text = value["bid"].as_str().expect("bid is a string");
            assert_eq!(parse_cents(text).ok(), Some(cents));
        }
    }

    #[test]
    fn accepted_posts_name_a_reference_only_when_asked() {
        assert_eq!(&accepted_body(None)[..], br#"{"accepted":true}"#);
        let value: serde_json::Value = serde_json::from_slice(&accepted_body(Some(7))).expect("valid JSON");
        assert_eq!(value, serde_json::json!({"accepted": true, "id": "mb-7"}));
    }

    #[test]
    fn rates_of_zero_and_one_are_exact() {
        let rng = Rng::new(3);
        let healthy = behaviour(0, 0);
        assert!((0..500).all(|_| healthy.post(&rng) == PostAnswer::Accepted));
        let rejecting = behaviour(0, PPM);
        assert!((0..500).all(|_| rejecting.post(&rng) == PostAnswer::Rejected));
        let failing = behaviour(PPM, 0);
        assert!((0..500).all(|_| failing.ping(&rng) == PingAnswer::Failure));
        assert!((0..500).all(|_| failing.post(&rng) == PostAnswer::Failure));
    }

    #[test]
    fn delay_is_latency_plus_bounded_jitter() {
        let b = behaviour(0, 0);
        let rng = Rng::new(4);
        for _ in 0..200 {
            let d = b.delay(&rng);
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(8), "{d:?}");
        }
        let none = Behaviour { latency_ms: 0, jitter_ms: 0, ..b };
        assert!(none.delay(&rng).is_zero());
    }
}

#[cfg(test)]
mod server_tests {
    use super::*;
    use crate::client::{Connection, Headers};
    use crate::target::Target;
    use tokio::net::TcpListener;

    fn behaviour(latency_ms: u64) -> Behaviour {
        Behaviour {
            latency_ms,
            jitter_ms: 0,
            bids: BidRange::parse("20.00", "60.00").expect("valid"),
            failure_ppm: 0,
            reject_ppm: 0,
            reference: false,
        }
    }

    /// A mock buyer on an ephemeral port and a connection to it; the buyer stops when the
    /// sender is dropped.
    async fn start(behaviour: Behaviour) -> (Arc<Buyer>, Connection, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let timer = Timer::start().expect("timer thread");
        let buyer = Arc::new(Buyer { behaviour, rng: Rng::new(5), counts: Counts::default(), timer });
        let served = Arc::clone(&buyer);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve::serve_on(listener, move |r| answer(Arc::clone(&served), r), async {
            let _ = stopped.await;
        }));
        let target = Arc::new(Target { addr, authority: addr.to_string(), display: format!("http://{addr}") });
        let headers = Arc::new(Headers::new(&target, None).expect("headers"));
        (buyer, Connection::new(target, headers), stop)
    }

    #[tokio::test]
    async fn answers_pings_with_bids_and_posts_with_acceptance() {
        let (buyer, mut connection, stop) = start(behaviour(0)).await;

        let ping = connection.post("/ping", bytes::Bytes::from_static(b"{}")).await.expect("answered");
        assert_eq!(ping.status, 200);
        let value: serde_json::Value = serde_json::from_slice(&ping.body).expect("JSON");
        let bid = crate::cents::parse_cents(value["bid"].as_str().expect("bid string")).expect("decimal");
        assert!((2000..=6000).contains(&bid));

        let post = connection.post("/post", bytes::Bytes::from_static(b"{}")).await.expect("answered");
        assert_eq!((post.status, &post.body[..]), (200, &br#"{"accepted":true}"#[..]));
        let other = connection.post("/v1/leads", bytes::Bytes::new()).await.expect("answered");
        assert_eq!(other.status, 404);
        assert_eq!(buyer.counts.pings.load(Ordering::Relaxed), 1);
        assert_eq!(buyer.counts.accepted.load(Ordering::Relaxed), 1);
        drop(stop);
    }

    #[tokio::test]
    async fn with_reference_accepted_posts_count_their_ids() {
        let (buyer, mut connection, stop) = start(Behaviour { reference: true, ..behaviour(0) }).await;
        for n in 1..=2 {
            let post = connection.post("/post", bytes::Bytes::from_static(b"{}")).await.expect("answered");
            let expected = format!(r#"{{"accepted":true,"id":"mb-{n}"}}"#);
            assert_eq!((post.status, &post.body[..]), (200, expected.as_bytes()));
        }
        assert_eq!(buyer.counts.accepted.load(Ordering::Relaxed), 2);
        drop(stop);
    }

    /// A 5 ms buyer is never early, and in the median not grossly late as the client sees
    /// it (loopback HTTP included). How close to 5 ms it comes is measured by
    /// `loadtest/ping-fanout.sh` (BENCHMARKS.md), not asserted: a busy 2-core machine
    /// running a debug build is late by a millisecond now and then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_5_ms_latency_answers_after_5_ms_and_not_much_later() {
        let (buyer, mut connection, stop) = start(behaviour(5)).await;
        let latency = Duration::from_millis(5);
        let mut answered = Vec::new();
        for _ in 0..50 {
            let sent = Instant::now();
            let ping = connection.post("/ping", bytes::Bytes::from_static(b"{}")).await.expect("answered");
            let took = sent.elapsed();
            assert_eq!(ping.status, 200);
            assert!(took >= latency, "answered after {took:?}, before its 5 ms latency");
            answered.push(took);
        }
        answered.sort();
        let median = answered[answered.len() / 2];
        // Generous: a busy 2-core machine adds milliseconds; a latency applied twice or per
        // byte would not stay under this.
        assert!(median < Duration::from_millis(25), "median {median:?} (all: {answered:?})");
        assert_eq!(buyer.counts.pings.load(Ordering::Relaxed), 50);
        drop(stop);
    }
}
