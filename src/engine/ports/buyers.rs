//! The buyers port: the engine's calls to buyers' endpoints (pings and posts of live
//! auctions, deliveries of the outbox) and what each call can answer. `buyers::BuyerClient`
//! is the adapter (signing, deadlines, answer parsing, circuit breakers).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use crate::domain::integration::request::{Method, TokenFetch};
use crate::domain::money::Money;
use crate::domain::native_reply::{self, PostVerdict};

/// What a buyer's ping answer came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidAnswer {
    Bid(Money),
    NoBid,
    Timeout,
    /// The call failed or the answer made no sense; the text says why (never buyer data).
    Error(String),
    /// The endpoint's circuit breaker is open: no call was made.
    CircuitOpen,
}

/// What a buyer's answer to a lead came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostAnswer {
    /// The buyer took the lead. `buyer_reference` is the buyer's own id for it, kept with
    /// the sale (DESIGN §5.1 `reference`); `None` until answer rules read one (the native
    /// protocol has none, and pull and async deliveries are sold before any answer).
    Accepted {
        buyer_reference: Option<String>,
    },
    Rejected(String),
    Timeout,
    Error(String),
    CircuitOpen,
}

impl BidAnswer {
    /// A native ping answer (§5): 204 or `{"bid": null}` is no bid, a 2xx `{"bid": …}` a
    /// bid, any other status an error.
    pub fn of_native(status: u16, body: &[u8]) -> BidAnswer {
        if status == 204 {
            return BidAnswer::NoBid;
        }
        if !(200..300).contains(&status) {
            return BidAnswer::Error(format!("http {status}"));
        }
        match native_reply::parse_bid(body) {
            Ok(Some(bid)) => BidAnswer::Bid(bid),
            Ok(None) => BidAnswer::NoBid,
            Err(reason) => BidAnswer::Error(reason.to_string()),
        }
    }
}

impl PostAnswer {
    /// A native post answer (§5): a 2xx `{"accepted": true}` sells, anything else
    /// rejects. The flag says whether the endpoint counts as healthy for its breaker: a
    /// well-formed rejection does, a 5xx or a body off the contract does not.
    pub fn of_native(status: u16, body: &[u8]) -> (PostAnswer, bool) {
        if !(200..300).contains(&status) {
            return (PostAnswer::Rejected(format!("http {status}")), false);
        }
        match native_reply::parse_post(body) {
            // The native protocol carries no buyer reference; answer rules (DESIGN §5.1)
            // read one (`engine::buyer_format`).
            PostVerdict::Accepted => (PostAnswer::Accepted { buyer_reference: None }, true),
            PostVerdict::Rejected(reason) => (PostAnswer::Rejected(reason), true),
            PostVerdict::Invalid => (PostAnswer::Rejected("invalid answer".into()), false),
        }
    }
}

/// One ping of a fan-out (`ping_all`).
#[derive(Debug, Clone)]
pub struct PingCall {
    pub url: String,
    pub secret: String,
    pub body: Bytes,
}

/// A request in the buyer's own format (DESIGN §5.1), rendered and ready to send.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Signed with this secret (§5's header) unless the campaign said `"sign": false`.
    pub signing_secret: Option<String>,
    /// `auth.type = token`: a bearer token fetched (or reused) first, fetched again once
    /// after a 401.
    pub token: Option<TokenFetch>,
    /// The most of the reply that is read; the rest cuts the call as an error.
    pub answer_bytes_max: usize,
}

/// What came back from an `Outbound` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The buyer answered: any status, with its headers (for test sends) and the body read
    /// within its bound.
    Answered {
        status: u16,
        headers: http::HeaderMap,
        body: Bytes,
    },
    Timeout,
    /// No answer could be read; the text says why (never buyer data).
    Error(String),
    /// The endpoint's circuit breaker is open: no call was made.
    CircuitOpen,
}

/// Signed calls to buyers, each answered by its deadline at the latest.
#[async_trait]
pub trait BuyerCalls: Send + Sync + 'static {
    /// Pings every call in parallel, all bounded by `deadline`; the answers (with each
    /// call's latency, zero when none was made) come back in the order of `calls`.
    async fn ping_all(&self, calls: Vec<PingCall>, deadline: Instant) -> Vec<(BidAnswer, Duration)>;

    /// Posts a lead. A non-2xx status rejects; `Timeout` and `Error` leave it unknown
    /// whether the buyer received the lead.
    async fn post(&self, url: &str, secret: &str, body: Bytes, deadline: Instant) -> (PostAnswer, Duration);

    /// Sends an outbox message: any 2xx delivers it; an error text for the retry log
    /// otherwise (never a body).
    async fn deliver(&self, url: &str, secret: &str, body: Bytes, deadline: Instant) -> Result<(), String>;

    /// Sends one request in the buyer's own format and hands back the reply as it came
    /// (the campaign's answer rules read it). Live auctions' calls: the endpoint's breaker
    /// is consulted and fed.
    async fn exchange(&self, outbound: Outbound, deadline: Instant) -> (Reply, Duration);

    /// Sends an outbox message rendered in the buyer's own format (an async lead) and hands
    /// back the reply as it came, as `exchange` does; but as for `deliver`, the breakers of
    /// live auctions are neither consulted nor fed (the outbox has its own backoff).
    async fn deliver_request(&self, outbound: Outbound, deadline: Instant) -> Reply;
}

/// Buyer calls for a router that only replays the journal (the checkpointer, tools): it
/// never sells, so it calls nobody, and a call made by mistake fails instead of reaching
/// a buyer.
pub struct NoBuyerCalls;

const NOT_CALLED: &str = "this router replays only; it calls no buyer";

#[async_trait]
impl BuyerCalls for NoBuyerCalls {
    async fn ping_all(&self, calls: Vec<PingCall>, _deadline: Instant) -> Vec<(BidAnswer, Duration)> {
        calls.iter().map(|_| (BidAnswer::Error(NOT_CALLED.into()), Duration::ZERO)).collect()
    }

    async fn post(&self, _url: &str, _secret: &str, _body: Bytes, _deadline: Instant) -> (PostAnswer, Duration) {
        (PostAnswer::Error(NOT_CALLED.into()), Duration::ZERO)
    }

    async fn deliver(&self, _url: &str, _secret: &str, _body: Bytes, _deadline: Instant) -> Result<(), String> {
        Err(NOT_CALLED.into())
    }

    async fn exchange(&self, _outbound: Outbound, _deadline: Instant) -> (Reply, Duration) {
        (Reply::Error(NOT_CALLED.into()), Duration::ZERO)
    }

    async fn deliver_request(&self, _outbound: Outbound, _deadline: Instant) -> Reply {
        Reply::Error(NOT_CALLED.into())
    }
}
