//! Bearer tokens (`Authorization: Bearer <token>`, RFC 6750): read one way and compared in
//! constant time, by every service.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The request's bearer token: the scheme in any case (RFC 9110 §11.1), the token without
/// surrounding blanks; `None` without one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Whether `given` is `expected`. Digests are compared in constant time, so neither the
/// time taken nor the token's length tells how much of a guess matched.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.as_slice().ct_eq(expected.as_slice()).into()
}

/// Whether the request carries `expected` as its bearer token.
pub fn holds_token(headers: &HeaderMap, expected: &str) -> bool {
    bearer(headers).is_some_and(|given| token_matches(given, expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).expect("a header value"));
        headers
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        let token = "admin-token-0123456789";
        for accepted in
            ["Bearer admin-token-0123456789", "bearer admin-token-0123456789", "BEARER  admin-token-0123456789 "]
        {
            assert!(holds_token(&with(accepted), token), "{accepted:?}");
        }
        for refused in [
            "Bearer admin-token-012345678",
            "Bearer admin-token-01234567890",
            "Bearer Admin-token-0123456789",
            "Basic admin-token-0123456789",
            "admin-token-0123456789",
            "Bearer ",
            "Bearer",
            "",
        ] {
            assert!(!holds_token(&with(refused), token), "{refused:?}");
        }
        assert!(!holds_token(&HeaderMap::new(), token));
    }

    proptest! {
        #[test]
        fn a_token_matches_itself_and_nothing_else(a in "[ -~]{0,64}", b in "[ -~]{0,64}") {
            prop_assert!(token_matches(&a, &a));
            prop_assert_eq!(token_matches(&a, &b), a == b);
        }
    }
}
