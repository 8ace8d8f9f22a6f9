//! Requests in a buyer's own format (DESIGN §5.1), sent through the pooled client.
//!
//! The request arrives rendered (`domain::integration` built it); this module adds the
//! signature when asked, the bearer token of `auth.type = token` (fetched once, cached
//! until shortly before it expires, fetched again once after a 401: a second 401 with a
//! fresh token is the buyer's answer, not a loop), runs the call under its deadline and
//! hands back the status and the body, read within its bound for every status, since
//! answer rules may read a rejection's reason from a 4xx.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use tokio::time::Instant;

use super::client::{body_within, checked_uri, failure_of, BuyerClient, Failure, USER_AGENT_VALUE};
use super::h1::Bodies;
use super::signature::{self, SIGNATURE_HEADER};
use crate::domain::integration::request::{Method as RequestMethod, TokenFetch};
use crate::engine::ports::buyers::{Outbound, Reply};

/// A token endpoint answers a small JSON object; 16 KiB bounds a broken one.
const TOKEN_ANSWER_BYTES_MAX: usize = 16 * 1024;

/// A token is fetched again this long before it expires (at most a tenth of its life), so
/// a call never goes out with one that lapses on the way.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Cached bearer tokens, by token endpoint and the form posted to it.
#[derive(Default)]
pub struct Tokens {
    cached: DashMap<(String, String), Cached>,
}

/// A reply as it came, its body read within its bound.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Cached {
    token: String,
    /// `None`: kept until a 401.
    refresh_at: Option<Instant>,
}

impl BuyerClient {
    /// Sends `outbound` by `deadline` at the latest; the duration is the measured latency
    /// (zero when no call was made). The endpoint's breaker is consulted and fed: a reply
    /// below 500 counts as a healthy endpoint, whatever the answer rules make of it.
    pub async fn exchange(&self, outbound: Outbound, deadline: Instant) -> (Reply, Duration) {
        let started = Instant::now();
        let uri = match checked_uri(&outbound.url) {
            Ok(uri) => uri,
            Err(reason) => return (Reply::Error(reason.to_string()), Duration::ZERO),
        };
        if deadline <= started {
            return (Reply::Timeout, Duration::ZERO);
        }
        if !self.breakers.allow(&outbound.url, started.into_std()) {
            return (Reply::CircuitOpen, Duration::ZERO);
        }
        let reply = self.reply_by(&outbound, uri, deadline).await;
        let finished = Instant::now();
        let healthy = matches!(&reply, Reply::Answered { status, .. } if *status < 500);
        self.record(&outbound.url, healthy, finished);
        (reply, finished - started)
    }

    /// Sends an outbox message rendered in the buyer's format, as `exchange` does but
    /// outside the breakers: the outbox has its own backoff, and a buyer's slow CRM must not
    /// cost it its pings (as for native `deliver`).
    pub async fn deliver_request(&self, outbound: Outbound, deadline: Instant) -> Reply {
        match checked_uri(&outbound.url) {
            Ok(uri) => self.reply_by(&outbound, uri, deadline).await,
            Err(reason) => Reply::Error(reason.to_string()),
        }
    }

    /// The call (with its token) under `deadline`: the reply, or why there is none.
    async fn reply_by(&self, outbound: &Outbound, uri: Uri, deadline: Instant) -> Reply {
        match tokio::time::timeout_at(deadline, self.call_with_token(outbound, uri)).await {
            Err(_elapsed) => Reply::Timeout,
            Ok(Err(failure)) => Reply::Error(failure.reason().to_string()),
            Ok(Ok(Answer { status, headers, body })) => Reply::Answered { status: status.as_u16(), headers, body },
        }
    }

    async fn call_with_token(&self, outbound: &Outbound, uri: Uri) -> Result<Answer, Failure> {
        let Some(fetch) = &outbound.token else {
            return self.send(outbound, uri, None).await;
        };
        let token = self.token(fetch, false).await?;
        let answer = self.send(outbound, uri.clone(), Some(&token)).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let token = self.token(fetch, true).await?;
        self.send(outbound, uri, Some(&token)).await
    }

    /// The cached token for `fetch`, or a fresh one (`renew`: after a 401).
    async fn token(&self, fetch: &TokenFetch, renew: bool) -> Result<String, Failure> {
        let key = (fetch.url.clone(), fetch.form_body.clone());
        let now = Instant::now();
        if !renew {
            if let Some(cached) = self.tokens.cached.get(&key) {
                if cached.refresh_at.is_none_or(|at| now < at) {
                    return Ok(cached.token.clone());
                }
            }
        }
        let uri = checked_uri(&fetch.url).map_err(|_| Failure::Token)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, HeaderValue::from_str(&fetch.content_type).map_err(|_| Failure::BadHeader)?)
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
            .body(Full::new(Bytes::from(fetch.form_body.clone())))
            .map_err(|_| Failure::Token)?;
        let answer = self.read(request, TOKEN_ANSWER_BYTES_MAX).await?;
        if !answer.status.is_success() {
            return Err(Failure::Token);
        }
        let issued = fetch.read_token(&answer.body).map_err(|_| Failure::Token)?;
        let refresh_at = issued.expires_in_s.map(|seconds| {
            let life = Duration::from_secs(seconds);
            now + life - TOKEN_REFRESH_MARGIN.min(life / 10)
        });
        self.tokens.cached.insert(key, Cached { token: issued.token.clone(), refresh_at });
        Ok(issued.token)
    }

    async fn send(&self, outbound: &Outbound, uri: Uri, bearer: Option<&str>) -> Result<Answer, Failure> {
        let mut request = Request::builder()
            .method(method_of(outbound.method))
            .uri(uri)
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        for (name, value) in &outbound.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Failure::BadHeader)?;
            request = request.header(name, HeaderValue::from_str(value).map_err(|_| Failure::BadHeader)?);
        }
        if let Some(secret) = &outbound.signing_secret {
            request = request.header(SIGNATURE_HEADER, signature::sign(secret.as_bytes(), unix_now(), &outbound.body));
        }
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Failure::Token)?;
            request = request.header(AUTHORIZATION, value);
        }
        let request = request.body(Full::new(outbound.body.clone())).map_err(|_| Failure::BadHeader)?;
        self.read(request, outbound.answer_bytes_max).await
    }

    /// Sends `request` and reads the reply's body, whatever its status, within `max`.
    async fn read(&self, request: Request<Full<Bytes>>, max: usize) -> Result<Answer, Failure> {
        if request.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
            let read = self.plain.send(request, max, Bodies::All).await?;
            return Ok(Answer { status: read.status, headers: read.headers, body: read.body });
        }
        let response = self.http.request(request).await.map_err(failure_of)?;
        let (parts, body) = response.into_parts();
        Ok(Answer { status: parts.status, headers: parts.headers, body: body_within(body, max).await? })
    }
}

fn method_of(method: RequestMethod) -> Method {
    match method {
        RequestMethod::Post => Method::POST,
        RequestMethod::Put => Method::PUT,
        RequestMethod::Get => Method::GET,
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
}
