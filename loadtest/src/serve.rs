//! The accept loop both test servers (mock buyer, echo) share: HTTP/1.1 with keep-alive,
//! one task per connection, bounded request bodies, and a stop on Ctrl-C or SIGTERM.
//!
//! Rationale: the echo server is the baseline for "HTTP alone on this machine", so it must
//! run exactly the hyper setup the mock buyer runs, with nothing else in the way.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// A request body larger than this is refused (413): a lead with custom fields is a few
/// KiB; leadrouter's own limit is 64 KiB, so its posts always fit.
pub const BODY_BYTES_MAX: usize = 256 * 1024;
/// A client gets this long to send its headers, so a stuck peer cannot pin a task.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After a signal, open connections get this long to finish their request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Accept errors (e.g. out of file descriptors) back off this long instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub type Answer = Response<Full<Bytes>>;

/// A JSON answer with `status`.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// Reads the whole body, at most `BODY_BYTES_MAX`; `None` when it is too large or broken.
pub async fn read_body(request: Request<Incoming>) -> Option<(hyper::http::request::Parts, Bytes)> {
    let (parts, body) = request.into_parts();
    let collected = Limited::new(body, BODY_BYTES_MAX).collect().await.ok()?;
    Some((parts, collected.to_bytes()))
}

/// Binds `listen` and serves `handle` on every connection until Ctrl-C or SIGTERM.
pub async fn serve<H, F>(listen: SocketAddr, handle: H) -> anyhow::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    serve_on(listener, handle, shutdown_signal()).await;
    Ok(())
}

/// Serves `handle` on `listener` until `stop` resolves, then drains briefly. Tests pass
/// their own `stop` and an ephemeral port.
pub async fn serve_on<H, F>(listener: TcpListener, handle: H, stop: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let handle = handle.clone();
                let service = service_fn(move |request| {
                    let answer = handle(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
