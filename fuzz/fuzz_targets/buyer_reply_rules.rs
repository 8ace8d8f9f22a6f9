//! A buyer's reply read by a campaign's answer rules (DESIGN §5.1):
//! `domain::integration::answer::CompiledAnswer::{read_post, read_ping}` over JSONPath,
//! XPath and regex rules. The first byte is the status's offset from 200 (so 200-455).
//!
//! Laws: never panics on any bytes; what is read is bounded (reason, reference and token at
//! most `MAX_EXTRACTED_CHARS` characters, never empty); a bid is above zero with at most
//! two decimals; a reference only on an accepted post, a token only with a bid.

#![no_main]

use std::sync::OnceLock;

use leadrouter::domain::integration::answer::{AnswerSpec, CompiledAnswer, MAX_EXTRACTED_CHARS};
use libfuzzer_sys::fuzz_target;

fn rules() -> &'static [CompiledAnswer] {
    static RULES: OnceLock<Vec<CompiledAnswer>> = OnceLock::new();
    RULES.get_or_init(|| {
        let specs = [
            r#"{"accept": {"match": {"json": "$.status", "equals": "ok"}}, "reason": {"json": "$.errors[0].message"},
                "reference": {"json": "$..id"}, "bid": {"json": "$.result.price"}, "token": {"json": "$.result.token"},
                "no_bid": {"json": "$.result.status", "in": ["no_coverage", "closed"]}}"#,
            r#"{"accept": {"status": [200, 201], "match": {"xml": "/response/status", "equals": "success"}},
                "reason": {"xml": "/response/message/text()"}, "reference": {"xml": "//lead/@id"},
                "bid": {"xml": "//price"}, "token": {"xml": "/response/*[2]"}}"#,
            r#"{"accept": {"match": {"regex": "^OK\\|"}}, "reason": {"regex": "^ERR\\|(.*)$"},
                "reference": {"regex": "^OK\\|(\\w+)"}, "bid": {"regex": "price=([0-9.]+)"}}"#,
        ];
        specs
            .iter()
            .map(|text| {
                let spec: AnswerSpec = serde_json::from_str(text).expect("a valid spec");
                spec.compile("answer").expect("compiles")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let status = 200 + u16::from(first);
    let bounded = |text: &Option<String>| {
        if let Some(text) = text {
            assert!(!text.is_empty() && text.chars().count() <= MAX_EXTRACTED_CHARS, "{text:?}");
        }
    };
    for rules in rules() {
        let post = rules.read_post(status, body);
        bounded(&post.reason);
        bounded(&post.reference);
        assert!(post.accepted || post.reference.is_none());
        let ping = rules.read_ping(status, body);
        bounded(&ping.token);
        bounded(&ping.reason);
        if let Some(bid) = ping.bid {
            assert!(bid > rust_decimal::Decimal::ZERO && bid.normalize().scale() <= 2, "{bid}");
        } else {
            assert!(ping.token.is_none());
        }
    }
});
