//! `X-Leadrouter-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (DESIGN §5).
//!
//! Owns signing of every outbound body and the matching check a buyer (or our own tests)
//! runs on it. The shape follows Stripe's webhook signatures so buyers can reuse code they
//! already have: the timestamp is inside the MAC (a captured request cannot be replayed
//! later than the tolerance), and several `v1` values may appear (rotation of secrets).
//!
//! `verify` reads outside input: it is total (never panics, whatever the header), bounds
//! its work, and compares MACs in constant time (`hmac`'s `verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "x-leadrouter-signature";

/// A header is one line of a few hundred bytes; anything much longer is not ours, and
/// bounding it bounds the parsing work an attacker can cause.
const HEADER_LEN_MAX: usize = 4096;

/// At most this many `v1` candidates are tried: enough for a secret rotation or two,
/// few enough that a header cannot make us compute many MACs.
const V1_VALUES_MAX: usize = 8;

/// Length in bytes of an HMAC-SHA256 output.
const MAC_LEN: usize = 32;

/// Signs `body` at `unix_time`: the value for the `X-Leadrouter-Signature` header.
pub fn sign(secret: &[u8], unix_time: i64, body: &[u8]) -> String {
    let timestamp = unix_time.to_string();
    let mac = mac_of(secret, &timestamp, body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a header value against `body`; `tolerance_s` bounds the age of `t` (in both
/// directions: a timestamp from the future is as suspicious as a stale one).
///
/// Rationale: the MAC covers `t` exactly as written in the header, as the signer wrote it.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_unix: i64, tolerance_s: i64) -> bool {
    let Some(parsed) = parse_header(header) else {
        return false;
    };
    let Ok(tolerance_s) = u64::try_from(tolerance_s) else {
        return false;
    };
    if now_unix.abs_diff(parsed.unix_time) > tolerance_s {
        return false;
    }
    let mac = mac_of(secret, parsed.timestamp, body);
    // Every candidate is checked (no early exit) so timing says nothing about which matched.
    let mut any_match = false;
    for candidate in parsed.v1.iter().take(parsed.v1_len) {
        any_match |= mac.clone().verify_slice(candidate).is_ok();
    }
    any_match
}

struct ParsedHeader<'a> {
    /// The timestamp text as written: it is what the signer put into the MAC.
    timestamp: &'a str,
    unix_time: i64,
    v1: [[u8; MAC_LEN]; V1_VALUES_MAX],
    v1_len: usize,
}

/// Tolerant parse: parts in any order, whitespace around them, unknown schemes (`v0=`)
/// ignored, malformed `v1` values skipped. Exactly one `t` and at least one well-formed
/// `v1` are required.
fn parse_header(header: &str) -> Option<ParsedHeader<'_>> {
    if header.len() > HEADER_LEN_MAX {
        return None;
    }
    let mut timestamp = None;
    let mut v1 = [[0u8; MAC_LEN]; V1_VALUES_MAX];
    let mut v1_len = 0;
    for part in header.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return None; // two timestamps: ambiguous, refuse rather than guess
                }
                timestamp = Some(value.trim());
            }
            // A malformed value is skipped: its slot is reused by the next candidate.
            "v1" if v1_len < V1_VALUES_MAX && hex::decode_to_slice(value.trim(), &mut v1[v1_len]).is_ok() => {
                v1_len += 1;
            }
            _ => {}
        }
    }
    let timestamp = timestamp?;
    if v1_len == 0 || timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let unix_time = timestamp.parse::<i64>().ok()?;
    Some(ParsedHeader { timestamp, unix_time, v1, v1_len })
}

fn mac_of(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long keys are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"ping_id":"p1","zip":"10001"}"#;
    const NOW: i64 = 1_700_000_000;

    /// The expected value, computed here independently of `sign`.
    fn expected_hex(secret: &[u8], t: &str, body: &[u8]) -> String {
        let mut payload = Vec::new();
        payload.extend_from_slice(t.as_bytes());
        payload.push(b'.');
        payload.extend_from_slice(body);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(&payload);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn sign_matches_independent_hmac() {
        let header = sign(SECRET, NOW, BODY);
        let expected = format!("t={NOW},v1={}", expected_hex(SECRET, "1700000000", BODY));
        assert_eq!(header, expected);
        assert!(verify(SECRET, &header, BODY, NOW, 300));
    }

    #[test]
    fn known_vector() {
        // Computed outside Rust: python3 hmac.new(b"key", b"0.The quick brown fox jumps
        // over the lazy dog", sha256). Catches any change to the "<t>.<body>" layout.
        let header = sign(b"key", 0, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(header, "t=0,v1=8511f28f7a1949f0c42772b447d68b2daf760f5f0439a20a17e3b4e7cd395763");
    }

    #[test]
    fn tampered_body_or_wrong_secret_fails() {
        let header = sign(SECRET, NOW, BODY);
        assert!(!verify(SECRET, &header, b"{\"ping_id\":\"p2\"}", NOW, 300));
        assert!(!verify(b"other", &header, BODY, NOW, 300));
    }

    #[test]
    fn stale_or_future_timestamp_fails() {
        let header = sign(SECRET, NOW, BODY);
        assert!(verify(SECRET, &header, BODY, NOW + 300, 300));
        assert!(!verify(SECRET, &header, BODY, NOW + 301, 300));
        assert!(!verify(SECRET, &header, BODY, NOW - 301, 300));
        assert!(!verify(SECRET, &header, BODY, NOW, -1));
    }

    #[test]
    fn tolerant_of_order_spaces_other_schemes_and_several_v1() {
        let good = expected_hex(SECRET, "1700000000", BODY);
        let bad = "00".repeat(32);
        let headers = [
            format!("v1={good},t={NOW}"),
            format!(" t = {NOW} , v0=abc, v1={bad}, v1 = {good} "),
            format!("t={NOW},v1=nothex,v1={good}"),
        ];
        for header in headers {
            assert!(verify(SECRET, &header, BODY, NOW, 300), "{header}");
        }
    }

    #[test]
    fn garbage_headers_fail() {
        let good = expected_hex(SECRET, "1700000000", BODY);
        let headers = [
            String::new(),
            "garbage".to_string(),
            format!("t={NOW}"),
            format!("v1={good}"),
            format!("t={NOW},t={NOW},v1={good}"),
            format!("t=-{NOW},v1={good}"),
            format!("t=+{NOW},v1={good}"),
            format!("t=99999999999999999999999,v1={good}"),
            format!("t={NOW},v1={}", &good[..62]),
            format!("t={NOW},v1={good}00"),
        ];
        for header in headers {
            assert!(!verify(SECRET, &header, BODY, NOW, 300), "{header}");
        }
    }

    proptest! {
        #[test]
        fn verify_never_panics_on_arbitrary_headers(header in ".{0,300}", now in any::<i64>(),
                                                     tolerance in any::<i64>()) {
            let _ = verify(SECRET, &header, BODY, now, tolerance);
        }

        #[test]
        fn verify_never_panics_on_header_like_input(
            parts in proptest::collection::vec("(t|v1|v0| t|x)=[0-9a-f+\\- ]{0,70}", 0..12),
            now in any::<i64>()) {
            let header = parts.join(",");
            let _ = verify(SECRET, &header, BODY, now, 300);
        }

        #[test]
        fn sign_then_verify_round_trips(secret in proptest::collection::vec(any::<u8>(), 0..100),
                                        body in proptest::collection::vec(any::<u8>(), 0..300),
                                        t in 0i64..4_000_000_000) {
            let header = sign(&secret, t, &body);
            prop_assert!(verify(&secret, &header, &body, t, 0));
        }
    }
}
