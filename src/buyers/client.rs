//! The pooled HTTP client for buyer pings and posts (DESIGN §5, invariant §8.4).
//!
//! Owns every outbound byte to a buyer: the keep-alive connection pools shared by all
//! auctions, the signature header, the deadline, the bounded read of the answer, and the
//! per-endpoint circuit breaker. Parsing lives in `answer` (pure), signing in `signature`,
//! the breaker state machine in `breaker`; this module only wires them around one client.
//!
//! Deadlines: the whole call (connect, send, read the body) runs under
//! `tokio::time::timeout_at(deadline)`. When it fires the call is dropped, so a late answer
//! is never seen and counts as a timeout; a hung or trickling buyer costs its auction at
//! most the deadline. Bodies are read incrementally through `http_body_util::Limited`, so a
//! huge answer is cut at the cap instead of buffered.
//!
//! Nothing here logs a request or answer body: lead bodies carry PII, and answers may echo
//! it. Error texts are fixed short strings.
//!
//! Endpoints are `https://` (rustls, the roots of `tls::BuyerTrust`; h2 when the buyer
//! offers it, else HTTP/1.1), through hyper's pooled client, or `http://`, through `h1`
//! (HTTP/1.1 connections the calls drive themselves, kept alive in a pool of their own). A failed handshake answers a fixed reason
//! (`tls: certificate not trusted`, ...) and counts against the endpoint like any failed
//! connect; the TLS handshake runs under the same deadline as the rest of the call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use tokio::time::Instant;

use super::breaker::{BreakerConfig, Breakers};
use super::h1::{Bodies, H1Pool};
use super::signature::{self, SIGNATURE_HEADER};
use super::tls::{self, BuyerTrust};
use crate::engine::ports::buyers::{BuyerCalls, Outbound, Reply};

/// A ping answer is one small JSON object (`{"bid":"38.00"}`); 16 KiB leaves room for
/// buyers that add tracking fields, and bounds what a broken buyer can make us buffer.
pub const PING_ANSWER_BYTES_MAX: usize = 16 * 1024;

/// A post answer is `{"accepted":..,"reason":..}` plus whatever a buyer's CRM adds; the
/// reason is cut to 200 chars anyway, so 64 KiB is generous and still bounded.
pub const POST_ANSWER_BYTES_MAX: usize = 64 * 1024;

/// TCP connect bound, below any sane post deadline. Pings are bounded tighter by their own
/// deadline; this only matters for a caller that passes a long one. The TLS handshake after
/// it has no bound of its own: the call's deadline covers it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Idle keep-alive connections are closed after this: buyers are pinged many times a
/// minute, so a warm connection saves a handshake per ping, while one unused for a minute
/// is likely to be closed by the buyer's load balancer anyway.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per buyer host: covers the pings in flight to one buyer at peak
/// without holding hundreds of sockets per host.
const POOL_IDLE_PER_HOST_MAX: usize = 32;

pub(super) const USER_AGENT_VALUE: &str = concat!("leadrouter/", env!("CARGO_PKG_VERSION"));

pub use crate::engine::ports::buyers::{BidAnswer, PingCall, PostAnswer};

/// Cheap to clone: clones share the connection pool and the breakers.
#[derive(Clone)]
pub struct BuyerClient {
    pub(super) http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Shared by clones so that every auction sees the same endpoint health.
    pub(super) breakers: Arc<Breakers>,
    /// Bearer tokens of `auth.type = token` buyers, shared by clones (`exchange`).
    pub(super) tokens: Arc<super::exchange::Tokens>,
    /// Plain `http://` connections, driven by the calls themselves (`h1`).
    pub(super) plain: Arc<H1Pool>,
}

/// Why a call produced no HTTP answer we could read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Connect,
    Transport,
    TooLarge,
    /// A rendered header that HTTP cannot carry.
    BadHeader,
    /// The token endpoint did not give a token.
    Token,
    /// The buyer's certificate chains to no root we trust (a private CA wants
    /// `--buyer-ca-file`).
    TlsUntrusted,
    /// The certificate is trusted but unusable: expired, not yet valid, another name, ...
    TlsCertificate,
    /// Any other failed handshake: no TLS on the port, no common version or cipher, ...
    Tls,
}

impl Failure {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Transport => "transport",
            Failure::TooLarge => "answer too large",
            Failure::BadHeader => "bad header",
            Failure::Token => "token fetch failed",
            Failure::TlsUntrusted => "tls: certificate not trusted",
            Failure::TlsCertificate => "tls: certificate invalid",
            Failure::Tls => "tls handshake failed",
        }
    }
}

/// Status and (for 2xx other than 204) the body, read within its cap.
type Exchange = Result<(StatusCode, Bytes), Failure>;

impl BuyerClient {
    pub fn new() -> BuyerClient {
        BuyerClient::with_breaker_config(BreakerConfig::default())
    }

    pub fn with_breaker_config(config: BreakerConfig) -> BuyerClient {
        BuyerClient::with(config, &BuyerTrust::public())
    }

    /// A client whose https calls trust `trust`'s roots (the public ones, plus a private CA
    /// of the operator's).
    pub fn with_trust(trust: &BuyerTrust) -> BuyerClient {
        BuyerClient::with(BreakerConfig::default(), trust)
    }

    fn with(config: BreakerConfig, trust: &BuyerTrust) -> BuyerClient {
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .build(connector(trust));
        BuyerClient { http, breakers: Arc::new(Breakers::new(config)), tokens: Arc::default(), plain: Arc::default() }
    }

    /// The endpoints' breakers (keyed by URL), for traces and metrics.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// POSTs a signed ping body to `url`; answers by `deadline` at the latest. The duration
    /// is the measured latency (zero when no call was made).
    pub async fn ping(&self, url: &str, secret: &str, body: Bytes, deadline: Instant) -> (BidAnswer, Duration) {
        let started = Instant::now();
        let uri = match self.admit(url, started, deadline) {
            Ok(uri) => uri,
            Err(answer) => return (answer, Duration::ZERO),
        };
        let call = self.call_native(uri, secret, body, PING_ANSWER_BYTES_MAX);
        let answer = match tokio::time::timeout_at(deadline, call).await {
            Err(_elapsed) => BidAnswer::Timeout,
            Ok(Err(failure)) => BidAnswer::Error(failure.reason().to_string()),
            Ok(Ok((status, body))) => BidAnswer::of_native(status.as_u16(), &body),
        };
        let finished = Instant::now();
        let healthy = matches!(answer, BidAnswer::Bid(_) | BidAnswer::NoBid);
        self.record(url, healthy, finished);
        (answer, finished - started)
    }

    /// POSTs a signed lead body to `url`; answers by `deadline` at the latest. Per the
    /// contract a non-2xx status rejects; `Timeout` and `Error` leave it unknown whether
    /// the buyer received the lead.
    pub async fn post(&self, url: &str, secret: &str, body: Bytes, deadline: Instant) -> (PostAnswer, Duration) {
        let started = Instant::now();
        let uri = match checked_uri(url) {
            Ok(uri) => uri,
            Err(reason) => return (PostAnswer::Error(reason.to_string()), Duration::ZERO),
        };
        if deadline <= started {
            return (PostAnswer::Timeout, Duration::ZERO);
        }
        if !self.breakers.allow(url, started.into_std()) {
            return (PostAnswer::CircuitOpen, Duration::ZERO);
        }
        let call = self.call_native(uri, secret, body, POST_ANSWER_BYTES_MAX);
        let (answer, healthy) = match tokio::time::timeout_at(deadline, call).await {
            Err(_elapsed) => (PostAnswer::Timeout, false),
            Ok(Err(Failure::TooLarge)) => (PostAnswer::Rejected(Failure::TooLarge.reason().to_string()), false),
            Ok(Err(failure)) => (PostAnswer::Error(failure.reason().to_string()), false),
            Ok(Ok((status, body))) => PostAnswer::of_native(status.as_u16(), &body),
        };
        let finished = Instant::now();
        self.record(url, healthy, finished);
        (answer, finished - started)
    }

    /// POSTs a signed outbox message (an async lead, a notification) to `url`. Any 2xx
    /// delivers it; anything else is an error text for the retry log (never a body). The
    /// outbox has its own backoff, so the circuit breakers of live auctions are neither
    /// consulted nor fed: a buyer's slow CRM must not cost it its pings.
    pub async fn deliver(&self, url: &str, secret: &str, body: Bytes, deadline: Instant) -> Result<(), String> {
        let uri = checked_uri(url).map_err(str::to_string)?;
        let call = self.call_native(uri, secret, body, POST_ANSWER_BYTES_MAX);
        match tokio::time::timeout_at(deadline, call).await {
            Err(_elapsed) => Err("timeout".to_string()),
            Ok(Err(Failure::TooLarge)) => Ok(()),
            Ok(Err(failure)) => Err(failure.reason().to_string()),
            Ok(Ok((status, _))) if status.is_success() => Ok(()),
            Ok(Ok((status, _))) => Err(format!("http {}", status.as_u16())),
        }
    }

    /// Pings every call in parallel, all bounded by `deadline`; the answers come back in
    /// the order of `calls`.
    ///
    /// The calls run as one `FuturesUnordered` inside the caller's task under one deadline
    /// timer: no task per buyer and no timer per buyer, so a buyer's answer wakes the
    /// auction directly instead of through a spawned task and its join handle. A call still
    /// out at `deadline` is dropped (its late answer is never read) and answers `Timeout`,
    /// counted against its endpoint as `ping` would count it; dropping this future (the
    /// auction cancelled) drops every call still out.
    pub async fn ping_all(&self, calls: Vec<PingCall>, deadline: Instant) -> Vec<(BidAnswer, Duration)> {
        let started = Instant::now();
        let mut answers: Vec<Option<(BidAnswer, Duration)>> = vec![None; calls.len()];
        let mut urls: Vec<String> = Vec::with_capacity(calls.len());
        let mut out = FuturesUnordered::new();
        for (index, call) in calls.into_iter().enumerate() {
            let PingCall { url, secret, body } = call;
            match self.admit(&url, started, deadline) {
                Err(answer) => answers[index] = Some((answer, Duration::ZERO)),
                Ok(uri) => {
                    out.push(async move { (index, self.call_native(uri, &secret, body, PING_ANSWER_BYTES_MAX).await) })
                }
            }
            urls.push(url);
        }
        if !out.is_empty() {
            let timer = tokio::time::sleep_until(deadline);
            tokio::pin!(timer);
            loop {
                tokio::select! {
                    // Answers first: one that is ready when the timer fires still counts,
                    // as `timeout_at` polls its future before its timer.
                    biased;
                    next = out.next() => {
                        let Some((index, exchange)) = next else { break };
                        let answer = match exchange {
                            Err(failure) => BidAnswer::Error(failure.reason().to_string()),
                            Ok((status, body)) => BidAnswer::of_native(status.as_u16(), &body),
                        };
                        let finished = Instant::now();
                        self.record(&urls[index], matches!(answer, BidAnswer::Bid(_) | BidAnswer::NoBid), finished);
                        answers[index] = Some((answer, finished - started));
                    }
                    () = &mut timer => break,
                }
            }
        }
        drop(out);
        let finished = Instant::now();
        answers
            .into_iter()
            .zip(&urls)
            .map(|(answer, url)| {
                answer.unwrap_or_else(|| {
                    // Still out at the deadline: dropped above, a timeout of the buyer's.
                    self.record(url, false, finished);
                    (BidAnswer::Timeout, finished - started)
                })
            })
            .collect()
    }

    /// Whether a ping to `url` goes out: the answer it gets instead when it does not (a bad
    /// URL, a deadline already passed, an open breaker), else its parsed URI.
    fn admit(&self, url: &str, now: Instant, deadline: Instant) -> Result<Uri, BidAnswer> {
        let uri = checked_uri(url).map_err(|reason| BidAnswer::Error(reason.to_string()))?;
        if deadline <= now {
            // Our lateness, not the buyer's: no call, and nothing held against the endpoint.
            return Err(BidAnswer::Timeout);
        }
        if !self.breakers.allow(url, now.into_std()) {
            return Err(BidAnswer::CircuitOpen);
        }
        Ok(uri)
    }

    pub(super) fn record(&self, url: &str, healthy: bool, now: Instant) {
        if healthy {
            self.breakers.record_success(url);
        } else {
            self.breakers.record_failure(url, now.into_std());
        }
    }

    /// Sends one signed POST and reads the answer within `answer_bytes_max`. Bodies of
    /// non-2xx and 204 answers are not read: they mean nothing under the contract.
    async fn call_native(&self, uri: Uri, secret: &str, body: Bytes, answer_bytes_max: usize) -> Exchange {
        let request = signed_request(uri, secret, body).map_err(|_| Failure::Transport)?;
        if request.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
            let read = self.plain.send(request, answer_bytes_max, Bodies::Success).await?;
            return Ok((read.status, read.body));
        }
        let response = self.http.request(request).await.map_err(failure_of)?;
        let status = response.status();
        if !status.is_success() || status == StatusCode::NO_CONTENT {
            return Ok((status, Bytes::new()));
        }
        Ok((status, body_within(response.into_body(), answer_bytes_max).await?))
    }
}

impl Default for BuyerClient {
    fn default() -> Self {
        BuyerClient::new()
    }
}

/// TCP (nodelay, connect bound) under TLS for `https://`; `http://` goes straight to TCP.
fn connector(trust: &BuyerTrust) -> HttpsConnector<HttpConnector> {
    let mut tcp = HttpConnector::new();
    // The TLS layer picks by scheme; left on, the TCP connector would refuse `https://`.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    HttpsConnectorBuilder::new()
        .with_tls_config(trust.client_config())
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(tcp)
}

/// Why a call failed before any answer: the handshake, the connection, or the exchange
/// after it.
pub(super) fn failure_of(error: hyper_util::client::legacy::Error) -> Failure {
    if let Some(failure) = tls::tls_failure(&error) {
        failure
    } else if error.is_connect() {
        Failure::Connect
    } else {
        Failure::Transport
    }
}

/// An answer's body, read within `max` bytes (past it the call is cut as too large).
pub(super) async fn body_within(body: hyper::body::Incoming, max: usize) -> Result<Bytes, Failure> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(Failure::TooLarge),
        Err(_) => Err(Failure::Transport),
    }
}

pub(super) fn checked_uri(url: &str) -> Result<Uri, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "bad url")?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err("bad url"),
    }
}

fn signed_request(uri: Uri, secret: &str, body: Bytes) -> Result<Request<Full<Bytes>>, http::Error> {
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    let signature = signature::sign(secret.as_bytes(), unix_now, &body);
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body))
}

#[async_trait::async_trait]
impl BuyerCalls for BuyerClient {
    async fn ping_all(&self, calls: Vec<PingCall>, deadline: Instant) -> Vec<(BidAnswer, Duration)> {
        BuyerClient::ping_all(self, calls, deadline).await
    }

    async fn post(&self, url: &str, secret: &str, body: Bytes, deadline: Instant) -> (PostAnswer, Duration) {
        BuyerClient::post(self, url, secret, body, deadline).await
    }

    async fn deliver(&self, url: &str, secret: &str, body: Bytes, deadline: Instant) -> Result<(), String> {
        BuyerClient::deliver(self, url, secret, body, deadline).await
    }

    async fn exchange(&self, outbound: Outbound, deadline: Instant) -> (Reply, Duration) {
        BuyerClient::exchange(self, outbound, deadline).await
    }

    async fn deliver_request(&self, outbound: Outbound, deadline: Instant) -> Reply {
        BuyerClient::deliver_request(self, outbound, deadline).await
    }
}
