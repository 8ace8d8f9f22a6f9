//! The HTTP client: one keep-alive HTTP/1.1 connection (`hyper::client::conn::http1`) per
//! closed-loop worker (and per pull buyer), and a bounded pool of the same connections for
//! open-loop arrivals.
//!
//! Rationale: a bare connection has no pool bookkeeping on the path being measured, so the
//! client costs as little CPU as possible on a machine it shares with the server.
//! Every request has a deadline and a bounded answer; a failed or timed-out connection is
//! dropped and replaced on the next request (an HTTP/1.1 connection with a request half
//! done cannot be reused).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::target::Target;

/// A request not answered within this is a timeout: ten times any sane `tmax_ms`, so only
/// a stuck server or an overloaded machine hits it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers are small JSON; anything larger is read no further and counted as an error.
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Could not connect, or the connection broke mid-request.
    Transport,
    /// No answer within `REQUEST_TIMEOUT`.
    Timeout,
}

/// An HTTP answer: its status, its headers and its (bounded) body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request beyond the JSON posts and plain GETs of a run (the console's sign-in form and
/// pages): its method, path and query, headers of its own (a cookie), and a body with its
/// content type.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub uri: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
}

/// What every request carries, built once per run.
#[derive(Debug, Clone)]
pub struct Headers {
    pub host: HeaderValue,
    /// `None` for targets that need no key (the echo server).
    pub authorization: Option<HeaderValue>,
}

impl Headers {
    pub fn new(target: &Target, api_key: Option<&str>) -> anyhow::Result<Headers> {
        let authorization = match api_key {
            Some(key) => Some(HeaderValue::from_str(&format!("Bearer {key}"))?),
            None => None,
        };
        Ok(Headers { host: HeaderValue::from_str(&target.authority)?, authorization })
    }
}

/// One keep-alive connection, (re)opened on demand.
pub struct Connection {
    target: Arc<Target>,
    headers: Arc<Headers>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(target: Arc<Target>, headers: Arc<Headers>) -> Connection {
        Connection { target, headers, sender: None }
    }

    /// POSTs `body` as JSON to `path` and reads the answer, within `REQUEST_TIMEOUT`.
    pub async fn post(&mut self, path: &'static str, body: Bytes) -> Result<Reply, SendError> {
        let call = Call {
            method: Method::POST,
            uri: Uri::from_static(path),
            headers: Vec::new(),
            body,
            content_type: Some(HeaderValue::from_static("application/json")),
        };
        self.send(call, ANSWER_BYTES_MAX).await
    }

    /// GETs `uri` (path and query) and reads an answer of at most `answer_max` bytes (a
    /// larger one is a `Transport` error), within `REQUEST_TIMEOUT`.
    pub async fn get(&mut self, uri: Uri, answer_max: usize) -> Result<Reply, SendError> {
        let call = Call { method: Method::GET, uri, headers: Vec::new(), body: Bytes::new(), content_type: None };
        self.send(call, answer_max).await
    }

    /// Sends `call` and reads an answer of at most `answer_max` bytes, within
    /// `REQUEST_TIMEOUT`.
    pub async fn call(&mut self, call: Call, answer_max: usize) -> Result<Reply, SendError> {
        self.send(call, answer_max).await
    }

    async fn send(&mut self, call: Call, answer_max: usize) -> Result<Reply, SendError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send_unbounded(call, answer_max)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => {
                self.sender = None;
                Err(error)
            }
            Err(_elapsed) => {
                self.sender = None;
                Err(SendError::Timeout)
            }
        }
    }

    async fn send_unbounded(&mut self, call: Call, answer_max: usize) -> Result<Reply, SendError> {
        let Call { method, uri, headers: own, body, content_type } = call;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(HOST, self.headers.host.clone());
        if let Some(authorization) = &self.headers.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, content_type);
        }
        for (name, value) in own {
            headers.append(name, value);
        }
        let sender = self.ready_sender().await?;
        let response = sender.send_request(request).await.map_err(|_| SendError::Transport)?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, answer_max).collect().await.map_err(|_| SendError::Transport)?.to_bytes();
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    async fn ready_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, SendError> {
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        // The previous answer was read to its end, so `ready` resolves at once on a live
        // connection. A kept connection the server has just closed fails here, before
        // anything was sent: that is not an error of this request, so connect afresh once.
        if let Some(mut kept) = self.sender.take() {
            if kept.ready().await.is_ok() {
                return Ok(self.sender.insert(kept));
            }
        }
        let mut fresh = connect(&self.target).await?;
        fresh.ready().await.map_err(|_| SendError::Transport)?;
        Ok(self.sender.insert(fresh))
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, SendError> {
    let stream = TcpStream::connect(target.addr).await.map_err(|_| SendError::Transport)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| SendError::Transport)?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; either is normal here.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Checks once, before a run, that something answers on the target.
pub async fn probe(target: &Target) -> anyhow::Result<()> {
    TcpStream::connect(target.addr)
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", target.display))
}

/// At most `connections_max` connections, shared by open-loop arrivals: an arrival waits
/// for a free one (and that wait counts in its latency, as it would for a real client).
pub struct Pool {
    target: Arc<Target>,
    headers: Arc<Headers>,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// A connection taken from the pool; `give_back` returns it.
pub struct Lease {
    pub connection: Connection,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(target: Arc<Target>, headers: Arc<Headers>, connections_max: usize) -> Pool {
        Pool { target, headers, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(connections_max)) }
    }

    pub async fn take(&self) -> Lease {
        let permit = match Arc::clone(&self.permits).acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed; if it were, waiting forever would be wrong.
            Err(_) => unreachable!("the pool's semaphore is never closed"),
        };
        let reused = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = reused.unwrap_or_else(|| Connection::new(Arc::clone(&self.target), Arc::clone(&self.headers)));
        Lease { connection, _permit: permit }
    }

    pub fn give_back(&self, lease: Lease) {
        let Lease { connection, _permit } = lease;
        if connection.sender.is_some() {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(connection);
        }
    }
}
