//! The layers every service puts around its routes: request ids, a span per request, gzip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tower::ServiceBuilder;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{MakeSpan, TraceLayer};

/// How a service wants its common layers.
#[derive(Debug, Clone, Copy)]
pub struct CommonLayers {
    /// The level of the per-request span: INFO names the request in whatever a handler
    /// logs under a default filter; DEBUG costs nothing on a hot path when disabled.
    pub span_level: tracing::Level,
    /// Answers at most this long are not compressed (gzip does not pay on a few bytes).
    pub compress_above: u16,
}

/// Wraps `router` in the common layers: request ids (made here, or the caller's own,
/// echoed in the answer), the request span, and gzip for a client that sends
/// `Accept-Encoding: gzip` (the one encoding compiled in).
pub fn with_common_layers<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    layers: CommonLayers,
) -> axum::Router<S> {
    let compress = DefaultPredicate::new().and(SizeAbove::new(layers.compress_above));
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(RequestIds::default()))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(TraceLayer::new_for_http().make_span_with(RequestSpan(layers.span_level)))
            .layer(CompressionLayer::new().compress_when(compress)),
    )
}

/// Request ids: a random prefix per process and a counter, unique without a syscall or a
/// random draw per request.
#[derive(Clone)]
pub struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds { prefix: format!("{:08x}", rand::random::<u32>()).into(), next: Arc::default() }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = bytes::Bytes::from(format!("{}-{n}", self.prefix));
        http::HeaderValue::from_maybe_shared(id).ok().map(RequestId::new)
    }
}

/// The span of one request: method, path (never the query string) and request id.
#[derive(Clone, Copy)]
pub struct RequestSpan(pub tracing::Level);

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
        let (method, path) = (request.method(), request.uri().path());
        // The span macros take their level as a constant.
        if self.0 <= tracing::Level::INFO {
            tracing::info_span!("request", %method, path, id)
        } else {
            tracing::debug_span!("request", %method, path, id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_share_the_process_prefix() {
        let mut ids = RequestIds::default();
        let request = http::Request::new(());
        let made: Vec<String> = (0..1000)
            .map(|_| ids.make_request_id(&request).expect("an id").header_value().to_str().expect("ascii").to_string())
            .collect();
        let unique: std::collections::HashSet<_> = made.iter().collect();
        assert_eq!(unique.len(), made.len());
        let prefix = made[0].split('-').next().expect("a prefix");
        assert!(made.iter().all(|id| id.starts_with(prefix)));
        assert!(made.iter().all(|id| http::HeaderValue::from_str(id).is_ok()));
    }
}
