//! `X-Leadrouter-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. (STUB)

pub const SIGNATURE_HEADER: &str = "x-leadrouter-signature";

pub fn sign(_secret: &[u8], _unix_time: i64, _body: &[u8]) -> String {
    todo!()
}

/// Checks a header value against `body`; `tolerance_s` bounds the age of `t`.
pub fn verify(_secret: &[u8], _header: &str, _body: &[u8], _now_unix: i64, _tolerance_s: i64) -> bool {
    todo!()
}
