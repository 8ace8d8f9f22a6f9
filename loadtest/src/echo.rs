//! `loadtest echo`: the baseline server. It reads each POST body and answers a fixed small
//! JSON, so a run against it measures the client, hyper and the loopback network alone:
//! the floor under any leadrouter figure taken on the same machine.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::serve::{self, json, Answer};

const OK_BODY: &str = r#"{"status":"ok"}"#;

#[derive(Debug, Default)]
pub struct Counts {
    pub answered: AtomicU64,
    pub refused: AtomicU64,
}

pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let counts = Arc::new(Counts::default());
    let served = Arc::clone(&counts);
    eprintln!("echo listening on {listen}");
    serve::serve(listen, move |request| answer(Arc::clone(&served), request)).await?;
    eprintln!(
        "echo stopped: answered {} refused {}",
        counts.answered.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Answers one request: read the body, then the fixed JSON.
pub async fn answer(counts: Arc<Counts>, request: Request<Incoming>) -> Answer {
    if request.method() != Method::POST {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        return json(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":{"code":"method_not_allowed"}}"#);
    }
    match serve::read_body(request).await {
        Some(_) => {
            counts.answered.fetch_add(1, Ordering::Relaxed);
            json(StatusCode::OK, OK_BODY)
        }
        None => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            json(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":{"code":"body_too_large"}}"#)
        }
    }
}
