//! A buyer's answer to a post: `domain::native_reply::parse_post`.
//!
//! Laws: never panics; the scanner agrees with serde_json about the body (exactly one
//! top-level `accepted`, `true` sells, `false` refuses with the sanitized `reason` or "no
//! reason given", anything else is invalid); a rejection's reason is never empty, at most
//! `REASON_CHARS_MAX` characters, has no control characters and is already sanitized. Pure:
//! a refusal leaves nothing behind.

#![no_main]

use leadrouter::domain::native_reply::{parse_post, sanitize_reason, PostVerdict, REASON_CHARS_MAX};
use leadrouter_fuzz::{members, top_level_members};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let verdict = parse_post(data);

    if let PostVerdict::Rejected(reason) = &verdict {
        assert!(!reason.is_empty());
        assert!(reason.chars().count() <= REASON_CHARS_MAX, "{reason:?}");
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        assert_eq!(&sanitize_reason(reason), reason, "sanitizing is idempotent");
    }

    if serde_json::from_slice::<IgnoredAny>(data).is_err() {
        assert_eq!(verdict, PostVerdict::Invalid);
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if !value.is_object() {
        assert_eq!(verdict, PostVerdict::Invalid);
        return;
    }
    let Some(top) = top_level_members(data) else {
        return;
    };
    let expected = match members(&top, "accepted")[..] {
        [Value::Bool(true)] => PostVerdict::Accepted,
        [Value::Bool(false)] => {
            let reason = match members(&top, "reason")[..] {
                [Value::String(reason)] => sanitize_reason(reason),
                _ => String::new(),
            };
            PostVerdict::Rejected(if reason.is_empty() { "no reason given".to_string() } else { reason })
        }
        _ => PostVerdict::Invalid,
    };
    assert_eq!(verdict, expected);
});
