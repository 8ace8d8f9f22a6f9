//! What the router's and the billing worker's HTTP services share, so that both answer
//! alike: request ids (`x-request-id`, a caller's own kept), one tracing span per request
//! (method and path, never the query or the body: no PII), gzip for a client that asks,
//! one way to read and check a bearer token, and one HTML escape.

pub mod auth;
pub mod html;
mod layers;

pub use layers::{with_common_layers, CommonLayers, RequestIds, RequestSpan};
