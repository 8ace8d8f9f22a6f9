//! Plain `http://` HTTP/1.1 connections to buyers, driven by the calls that use them.
//!
//! hyper's pooled client runs every connection as a task of its own and, per request, a
//! second task that puts the connection back into its pool: a buyer's answer reaches the
//! auction through the connection's task, then the caller. Under load on few cores every
//! such hand-over is one more chance to wait for a thread, and a fan-out waits for the
//! slowest of its calls. Here a call owns its connection while it runs and polls it itself
//! (`Exchange`), so the answer wakes the auction's task directly, and a connection goes back
//! to the idle list as soon as its answer is read.
//!
//! - No head-of-line waiting: a call takes an idle connection to the same host, else opens
//!   one at once (TCP_NODELAY); it never waits for a busy one.
//! - Keep-alive: at most `IDLE_PER_HOST_MAX` idle connections per host, each kept at most
//!   `IDLE_TIMEOUT` (checked when taken, and all hosts swept now and then).
//! - An idle connection is polled once when taken (no waker needed): one the buyer closed
//!   meanwhile is dropped, not used. A request the connection refused before sending it
//!   (closed between that check and the send) is sent once more on a new connection;
//!   nothing sent is ever sent twice.
//!
//! `https://` keeps hyper's pooled client (TLS, and h2 when the buyer offers it by ALPN).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::{body_within, Failure, CONNECT_TIMEOUT};

/// Idle connections kept per buyer host (as hyper's pool was configured).
const IDLE_PER_HOST_MAX: usize = 32;

/// An idle connection unused this long is closed (buyers' load balancers close them
/// after about a minute anyway).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often putting a connection back also sweeps every host's stale ones, so a host no
/// longer called does not keep its sockets.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

type Connection = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    connection: Connection,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// What a call read: status, headers and (when asked for) the body within its bound.
pub(super) struct Read {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Which bodies a call reads.
#[derive(Clone, Copy)]
pub(super) enum Bodies {
    /// Only 2xx other than 204 (§5's native answers: other bodies mean nothing).
    Success,
    /// Every status's (answer rules may read a rejection's reason from a 4xx).
    All,
}

#[derive(Default)]
pub(super) struct H1Pool {
    idle: Mutex<Hosts>,
}

#[derive(Default)]
struct Hosts {
    by_host: HashMap<String, Vec<Idle>>,
    swept: Option<Instant>,
}

impl H1Pool {
    /// Sends `request` (an `http://` URI with a host) and reads the answer. No deadline
    /// here: the caller bounds the whole call, and dropping it drops the connection.
    pub(super) async fn send(
        &self,
        request: Request<Full<Bytes>>,
        max: usize,
        bodies: Bodies,
    ) -> Result<Read, Failure> {
        let (mut parts, body) = request.into_parts();
        let authority = parts.uri.authority().ok_or(Failure::Transport)?.clone();
        let key = authority.as_str().to_string();
        parts.headers.entry(HOST).or_insert(HeaderValue::from_str(authority.as_str()).map_err(|_| Failure::BadHeader)?);
        let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        parts.uri = Uri::builder().path_and_query(path).build().map_err(|_| Failure::Transport)?;
        let mut request = Request::from_parts(parts, body);
        if let Some(conn) = self.take(&key) {
            match exchange(conn, request, max, bodies).await {
                Outcome::Done(result, conn) => {
                    self.put(key, conn);
                    return result;
                }
                // Refused before a byte of it went out: once more on a new connection.
                Outcome::NotSent(again) => request = again,
            }
        }
        let conn = connect(&authority).await?;
        match exchange(conn, request, max, bodies).await {
            Outcome::Done(result, conn) => {
                self.put(key, conn);
                result
            }
            Outcome::NotSent(_) => Err(Failure::Transport),
        }
    }

    /// The most recently used idle connection to `host` that is still open.
    fn take(&self, host: &str) -> Option<Box<Conn>> {
        let now = Instant::now();
        loop {
            let Idle { mut conn, since } = self.idle.lock().by_host.get_mut(host)?.pop()?;
            if now.duration_since(since) < IDLE_TIMEOUT && conn.is_open() {
                return Some(conn);
            }
        }
    }

    fn put(&self, host: String, conn: Option<Box<Conn>>) {
        let Some(mut conn) = conn else { return };
        if !conn.is_open() {
            return;
        }
        let now = Instant::now();
        let mut hosts = self.idle.lock();
        if hosts.swept.is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY) {
            hosts.swept = Some(now);
            hosts.by_host.retain(|_, idle| {
                idle.retain(|entry| now.duration_since(entry.since) < IDLE_TIMEOUT);
                !idle.is_empty()
            });
        }
        let idle = hosts.by_host.entry(host).or_default();
        if idle.len() < IDLE_PER_HOST_MAX {
            idle.push(Idle { conn, since: now });
        }
    }
}

impl Conn {
    /// Polls the connection once without a waker: whatever the buyer did while it sat idle
    /// (closed it, sent garbage) ends it here. Open means it can take a request.
    fn is_open(&mut self) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.connection).poll(&mut cx) {
            Poll::Ready(_) => false,
            Poll::Pending => !self.sender.is_closed(),
        }
    }
}

/// A new connection (boxed: it moves between the pool and the calls whole).
async fn connect(authority: &http::uri::Authority) -> Result<Box<Conn>, Failure> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Failure::Connect)?
        .map_err(|_| Failure::Connect)?;
    stream.set_nodelay(true).map_err(|_| Failure::Connect)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|_| Failure::Connect)?;
    Ok(Box::new(Conn { sender, connection }))
}

enum Outcome {
    /// The call's result, and the connection when it can take another request.
    Done(Result<Read, Failure>, Option<Box<Conn>>),
    /// The connection refused the request before sending any of it.
    NotSent(Request<Full<Bytes>>),
}

/// One request on `conn`, polling the connection from this task while it runs.
async fn exchange(mut conn: Box<Conn>, request: Request<Full<Bytes>>, max: usize, bodies: Bodies) -> Outcome {
    let Conn { sender, connection } = &mut *conn;
    let mut connection_done = false;
    let result = {
        let call = async {
            if std::future::poll_fn(|cx| sender.poll_ready(cx)).await.is_err() {
                return Err(Some(request));
            }
            let response = sender.try_send_request(request).await.map_err(|mut error| error.take_message())?;
            let (parts, body) = response.into_parts();
            let read_body = match bodies {
                Bodies::All => true,
                Bodies::Success => parts.status.is_success() && parts.status != StatusCode::NO_CONTENT,
            };
            let body = if read_body { body_within(body, max).await } else { Ok(Bytes::new()) };
            Ok::<_, Option<Request<Full<Bytes>>>>(body.map(|body| Read {
                status: parts.status,
                headers: parts.headers,
                body,
            }))
        };
        tokio::pin!(call);
        std::future::poll_fn(|cx| {
            // The connection first (it reads the answer, or takes the request just
            // queued), then the call; twice, so a request queued by the call goes out in
            // this same poll instead of after a wake-up of our own.
            for _ in 0..2 {
                if !connection_done && Pin::new(&mut *connection).poll(cx).is_ready() {
                    connection_done = true;
                }
                if let Poll::Ready(result) = call.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
            }
            Poll::Pending
        })
        .await
    };
    match result {
        Err(Some(request)) => Outcome::NotSent(request),
        Err(None) => Outcome::Done(Err(Failure::Transport), None),
        Ok(Err(failure)) => Outcome::Done(Err(failure), None),
        Ok(Ok(read)) => {
            let reusable = !connection_done && !conn.sender.is_closed();
            Outcome::Done(Ok(read), reusable.then_some(conn))
        }
    }
}
