//! HTML escaping for the printable documents and notification bodies: the shared one of
//! `leadrouter-http`, so the router's pages and the worker's escape alike.

pub use leadrouter_http::html::escape;
