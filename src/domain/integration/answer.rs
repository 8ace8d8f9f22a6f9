//! How a campaign reads a buyer's reply (DESIGN §5.1 `answer`): the stored
//! config ([`AnswerSpec`]), its compilation when the campaign is stored
//! ([`AnswerSpec::compile`], which refuses paths that do not parse), and the
//! reading of one reply to a post ([`CompiledAnswer::read_post`]) or a ping
//! ([`CompiledAnswer::read_ping`]).
//!
//! Reading rules where the contract is silent:
//! - A rule reads the body as JSON (`json`, RFC 9535 JSONPath), XML (`xml`,
//!   the subset in [`crate::xpath`]) or text (`regex`). A body that is not
//!   valid JSON / XML (UTF-8, leading BOM skipped) has nothing to find: json
//!   and xml conditions fail and extractions are absent. Each format is
//!   parsed at most once per reply, and only if a rule needs it.
//! - JSON values: strings as-is, numbers and booleans as their JSON text.
//!   `null` counts as absent (buyers send `"error": null` on success).
//!   Objects and arrays exist for a condition but have no text to extract.
//! - A regex runs on the body decoded as UTF-8 (invalid bytes replaced) with
//!   surrounding whitespace trimmed, so `$` means "end of the answer" even
//!   when a plain-text endpoint ends its line with a newline. Its value is
//!   the first capture group when the regex has one, else the whole match.
//!   A regex extraction therefore needs no capture group.
//! - A condition holds when any matched node (the first
//!   [`MAX_CONDITION_CANDIDATES`]) exists, or has a value equal to `equals`
//!   or one of `in`. Comparison is exact and case-sensitive, after trimming
//!   both sides. An extraction is the first matched node's value.
//! - Extracted text is trimmed; empty text is absent; text is cut to
//!   [`MAX_EXTRACTED_CHARS`].
//! - A post's `reason` is read only when it is rejected, its `reference`
//!   only when accepted. A ping's `token` is read only with a bid, its
//!   `reason` only without one. A ping needs the `accept` rule to hold to bid
//!   (so a non-2xx status is no bid by default); a spec without `bid` never
//!   bids.
//!
//! The body arrives already bounded by the caller; nothing here does I/O.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;
use std::iter;
use std::ops::RangeInclusive;
use std::str::FromStr;

use regex::{Regex, RegexBuilder};
use roxmltree::{Document, ParsingOptions};
use rust_decimal::Decimal;
use serde::de::{self, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json_path::JsonPath;

use super::xpath::XPath;
use crate::domain::model::FieldError;

/// Longest reason, reference or token kept, in characters. They land in
/// traces, on the sale and on the post as `ping.token`; a buyer that echoes
/// a whole HTML page must not bloat those records.
pub const MAX_EXTRACTED_CHARS: usize = 256;

/// Compiled-size limit for a campaign's regex, in bytes. Patterns are
/// written by campaign authors; this keeps one from costing the server
/// megabytes per campaign or slow matching (the `regex` default is 10 MiB).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Most XML nodes parsed from one reply: answers are a handful of elements,
/// and this keeps a hostile body from costing much memory.
pub const MAX_XML_NODES: u32 = 100_000;

/// Most matched nodes a condition looks at. Real answers match a few; the
/// bound keeps `//*`-style paths on large answers cheap.
pub const MAX_CONDITION_CANDIDATES: usize = 256;

/// Most decimal places in a bid: prices are in cents.
pub const MAX_BID_DECIMALS: usize = 2;

/// Longest bid text considered. No real price needs more, and it keeps
/// parsing well inside `Decimal`'s 28 digits.
pub const MAX_BID_CHARS: usize = 20;

const HTTP_STATUS_CODES: RangeInclusive<u16> = 100..=599;
const HTTP_STATUS_CLASSES: RangeInclusive<u8> = 1..=5;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A campaign's `answer` config: how to read a buyer's reply. Every part
/// omitted keeps its default (accept = any 2xx, nothing extracted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    #[serde(default)]
    pub accept: Accept,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Extract>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Extract>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<Extract>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_bid: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Extract>,
}

/// When a reply counts as accepted: every part must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    #[serde(default)]
    pub status: StatusRule,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Condition>,
}

/// Which HTTP statuses pass: a class (`"2xx"`, written as its hundreds
/// digit) or an explicit list of codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusRule {
    Class(u8),
    Codes(Vec<u16>),
}

/// A test on the reply: exactly one of `json`, `xml`, `regex`, and at most
/// one of `equals`, `in` (neither: the path must exist / the regex match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
}

/// A value read from the reply: exactly one of `json`, `xml`, `regex`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// An [`AnswerSpec`] whose paths and patterns are parsed, ready to read
/// replies.
#[derive(Debug, Clone)]
pub struct CompiledAnswer {
    status: StatusRule,
    accept: Option<CompiledCondition>,
    reason: Option<Probe>,
    reference: Option<Probe>,
    bid: Option<Probe>,
    no_bid: Option<CompiledCondition>,
    token: Option<Probe>,
}

/// What a buyer's reply to a post says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostReading {
    pub accepted: bool,
    /// The buyer's own words on a rejection (trace only).
    pub reason: Option<String>,
    /// The buyer's lead id on an acceptance, kept with the sale.
    pub reference: Option<String>,
}

/// What a buyer's reply to a ping says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReading {
    /// The price offered; `None` is no bid.
    pub bid: Option<Decimal>,
    /// Carried to the post as `ping.token` when there is a bid.
    pub token: Option<String>,
    /// The buyer's own words when there is no bid (trace only).
    pub reason: Option<String>,
}

/// The query language of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Json,
    Xml,
    Regex,
}

/// A compiled `{json|xml|regex}`.
#[derive(Debug, Clone)]
enum Probe {
    Json(JsonPath),
    Xml(XPath),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct CompiledCondition {
    probe: Probe,
    expected: Expected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Exists,
    Equals(String),
    OneOf(Vec<String>),
}

/// One thing a probe found: text, or a node that exists but has none (a
/// JSON object/array, a regex group that did not take part in the match).
enum Found<'r> {
    Text(Cow<'r, str>),
    Opaque,
}

/// One reply body, parsed lazily and at most once per format.
struct Reply<'a> {
    body: &'a [u8],
    text: OnceCell<Cow<'a, str>>,
    json: OnceCell<Option<Value>>,
    xml: OnceCell<Option<Document<'a>>>,
}

impl AnswerSpec {
    /// Parses every path and pattern, reporting every problem with its full
    /// field path under `path_prefix` (e.g. `delivery.answer`).
    pub fn compile(&self, path_prefix: &str) -> Result<CompiledAnswer, Vec<FieldError>> {
        let field = |name: &str| field_path(path_prefix, name);
        let mut errors = Vec::new();
        check_status_rule(&self.accept.status, &field("accept.status"), &mut errors);
        let accept = compile_condition(self.accept.matcher.as_ref(), &field("accept.match"), &mut errors);
        let reason = compile_extract(self.reason.as_ref(), &field("reason"), &mut errors);
        let reference = compile_extract(self.reference.as_ref(), &field("reference"), &mut errors);
        let bid = compile_extract(self.bid.as_ref(), &field("bid"), &mut errors);
        let no_bid = compile_condition(self.no_bid.as_ref(), &field("no_bid"), &mut errors);
        let token = compile_extract(self.token.as_ref(), &field("token"), &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CompiledAnswer { status: self.accept.status.clone(), accept, reason, reference, bid, no_bid, token })
    }
}

impl CompiledAnswer {
    /// Reads a buyer's reply to a post. Never fails: whatever cannot be read
    /// is absent, and a failed `accept` part means rejected.
    pub fn read_post(&self, status: u16, body: &[u8]) -> PostReading {
        let reply = Reply::new(body);
        if self.accepts(status, &reply) {
            PostReading { accepted: true, reason: None, reference: extract(self.reference.as_ref(), &reply) }
        } else {
            PostReading { accepted: false, reason: extract(self.reason.as_ref(), &reply), reference: None }
        }
    }

    /// Reads a buyer's reply to a ping. A bid needs `accept` to hold,
    /// `no_bid` not to hold, and a price per [`parse_bid`].
    pub fn read_ping(&self, status: u16, body: &[u8]) -> PingReading {
        let reply = Reply::new(body);
        match self.bid_in(status, &reply) {
            Some(price) => PingReading { bid: Some(price), token: extract(self.token.as_ref(), &reply), reason: None },
            None => PingReading { bid: None, token: None, reason: extract(self.reason.as_ref(), &reply) },
        }
    }

    fn accepts(&self, status: u16, reply: &Reply<'_>) -> bool {
        self.status.allows(status) && self.accept.as_ref().is_none_or(|c| c.holds(reply))
    }

    fn bid_in(&self, status: u16, reply: &Reply<'_>) -> Option<Decimal> {
        if !self.accepts(status, reply) || self.no_bid.as_ref().is_some_and(|c| c.holds(reply)) {
            return None;
        }
        parse_bid(&self.bid.as_ref()?.first_text(reply)?)
    }
}

impl StatusRule {
    /// Whether `status` passes this rule.
    pub fn allows(&self, status: u16) -> bool {
        match self {
            StatusRule::Class(class) => status / 100 == u16::from(*class),
            StatusRule::Codes(codes) => codes.contains(&status),
        }
    }
}

impl Default for StatusRule {
    fn default() -> Self {
        StatusRule::Class(2)
    }
}

impl Serialize for StatusRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StatusRule::Class(class) => serializer.serialize_str(&format!("{class}xx")),
            StatusRule::Codes(codes) => codes.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for StatusRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StatusRuleVisitor)
    }
}

struct StatusRuleVisitor;

impl<'de> Visitor<'de> for StatusRuleVisitor {
    type Value = StatusRule;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status class \"1xx\"..\"5xx\" or a non-empty list of HTTP status codes")
    }

    fn visit_str<E: de::Error>(self, class: &str) -> Result<StatusRule, E> {
        parse_status_class(class).map(StatusRule::Class).ok_or_else(|| E::invalid_value(Unexpected::Str(class), &self))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusRule, A::Error> {
        let mut codes = Vec::new();
        while let Some(code) = seq.next_element::<u16>()? {
            if !HTTP_STATUS_CODES.contains(&code) {
                return Err(de::Error::invalid_value(
                    Unexpected::Unsigned(code.into()),
                    &"an HTTP status code from 100 to 599",
                ));
            }
            codes.push(code);
        }
        if codes.is_empty() {
            return Err(de::Error::invalid_length(0, &self));
        }
        Ok(StatusRule::Codes(codes))
    }
}

/// `"2xx"` (any case) → 2.
fn parse_status_class(text: &str) -> Option<u8> {
    let (digit, rest) = text.split_at_checked(1)?;
    let class = digit.parse::<u8>().ok()?;
    (HTTP_STATUS_CLASSES.contains(&class) && rest.eq_ignore_ascii_case("xx")).then_some(class)
}

/// Re-checks a rule built in code rather than deserialized.
fn check_status_rule(rule: &StatusRule, field: &str, errors: &mut Vec<FieldError>) {
    let valid = match rule {
        StatusRule::Class(class) => HTTP_STATUS_CLASSES.contains(class),
        StatusRule::Codes(codes) => !codes.is_empty() && codes.iter().all(|code| HTTP_STATUS_CODES.contains(code)),
    };
    if !valid {
        errors.push(FieldError::new(
            field,
            "must be a class \"1xx\"..\"5xx\" or a non-empty list of codes from 100 to 599",
        ));
    }
}

fn field_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

impl Language {
    fn key(self) -> &'static str {
        match self {
            Language::Json => "json",
            Language::Xml => "xml",
            Language::Regex => "regex",
        }
    }
}

fn compile_condition(
    condition: Option<&Condition>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<CompiledCondition> {
    let condition = condition?;
    let sources =
        [(Language::Json, &condition.json), (Language::Xml, &condition.xml), (Language::Regex, &condition.regex)];
    let probe = compile_probe(sources, field, errors);
    let expected = compile_expected(condition, field, errors);
    Some(CompiledCondition { probe: probe?, expected: expected? })
}

fn compile_extract(extract: Option<&Extract>, field: &str, errors: &mut Vec<FieldError>) -> Option<Probe> {
    let extract = extract?;
    let sources = [(Language::Json, &extract.json), (Language::Xml, &extract.xml), (Language::Regex, &extract.regex)];
    compile_probe(sources, field, errors)
}

fn compile_expected(condition: &Condition, field: &str, errors: &mut Vec<FieldError>) -> Option<Expected> {
    match (&condition.equals, &condition.one_of) {
        (None, None) => Some(Expected::Exists),
        (Some(value), None) => Some(Expected::Equals(value.trim().to_owned())),
        (None, Some(values)) if values.is_empty() => {
            let message = "must list at least one value";
            errors.push(FieldError::new(format!("{field}.in"), message));
            None
        }
        (None, Some(values)) => Some(Expected::OneOf(values.iter().map(|value| value.trim().to_owned()).collect())),
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(field, "set at most one of `equals` and `in`"));
            None
        }
    }
}

fn compile_probe(
    sources: [(Language, &Option<String>); 3],
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Probe> {
    let given: Vec<(Language, &str)> = sources
        .into_iter()
        .filter_map(|(language, source)| source.as_deref().map(|source| (language, source)))
        .collect();
    match given.as_slice() {
        [(language, source)] => {
            let field = format!("{field}.{}", language.key());
            match compile_source(*language, source) {
                Ok(probe) => Some(probe),
                Err(message) => {
                    errors.push(FieldError::new(field, message));
                    None
                }
            }
        }
        [] => {
            errors.push(FieldError::new(field, "set one of `json`, `xml` or `regex`"));
            None
        }
        several => {
            let keys: Vec<&str> = several.iter().map(|(language, _)| language.key()).collect();
            let message = format!("set only one of `json`, `xml` or `regex` (found {})", keys.join(", "));
            errors.push(FieldError::new(field, message));
            None
        }
    }
}

fn compile_source(language: Language, source: &str) -> Result<Probe, String> {
    match language {
        Language::Json => JsonPath::parse(source)
            .map(Probe::Json)
            .map_err(|error| format!("not a valid JSONPath (RFC 9535): {error}")),
        Language::Xml => {
            XPath::parse(source).map(Probe::Xml).map_err(|error| format!("not a supported XPath: {error}"))
        }
        Language::Regex => compile_regex(source).map(Probe::Regex),
    }
}

fn compile_regex(source: &str) -> Result<Regex, String> {
    // An empty pattern matches every answer, which is never what was meant.
    if source.is_empty() {
        return Err("must not be empty".to_owned());
    }
    RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| format!("not a valid regex: {error}"))
}

impl CompiledCondition {
    fn holds(&self, reply: &Reply<'_>) -> bool {
        let mut found = self.probe.found(reply).take(MAX_CONDITION_CANDIDATES);
        match &self.expected {
            Expected::Exists => found.next().is_some(),
            Expected::Equals(wanted) => found.any(|f| f.text() == Some(wanted.as_str())),
            Expected::OneOf(wanted) => found.any(|f| f.text().is_some_and(|text| wanted.iter().any(|w| w == text))),
        }
    }
}

impl Probe {
    /// Everything the probe finds, in document order; a regex finds at most
    /// one thing (its first match).
    fn found<'r>(&'r self, reply: &'r Reply<'_>) -> Box<dyn Iterator<Item = Found<'r>> + 'r> {
        match self {
            Probe::Json(path) => match reply.json() {
                Some(value) => Box::new(path.query(value).all().into_iter().filter_map(json_found)),
                None => Box::new(iter::empty()),
            },
            Probe::Xml(path) => match reply.xml() {
                Some(doc) => {
                    Box::new(path.select(doc).into_iter().map(|node| Found::Text(Cow::Owned(node.string_value()))))
                }
                None => Box::new(iter::empty()),
            },
            Probe::Regex(regex) => Box::new(regex_found(regex, reply.text()).into_iter()),
        }
    }

    /// The first found value, trimmed, if it has non-empty text.
    fn first_text(&self, reply: &Reply<'_>) -> Option<String> {
        let found = self.found(reply).next()?;
        let text = found.text()?;
        (!text.is_empty()).then(|| text.to_owned())
    }
}

fn extract(probe: Option<&Probe>, reply: &Reply<'_>) -> Option<String> {
    probe?.first_text(reply).map(|text| bounded(&text))
}

impl Found<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            Found::Text(text) => Some(text.trim()),
            Found::Opaque => None,
        }
    }
}

fn json_found(value: &Value) -> Option<Found<'_>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(Found::Text(Cow::Borrowed(text))),
        Value::Bool(flag) => Some(Found::Text(Cow::Borrowed(if *flag { "true" } else { "false" }))),
        Value::Number(number) => Some(Found::Text(Cow::Owned(number.to_string()))),
        Value::Array(_) | Value::Object(_) => Some(Found::Opaque),
    }
}

fn regex_found<'t>(regex: &Regex, text: &'t str) -> Option<Found<'t>> {
    let captures = regex.captures(text)?;
    let group = if regex.captures_len() > 1 { 1 } else { 0 };
    Some(match captures.get(group) {
        Some(value) => Found::Text(Cow::Borrowed(value.as_str())),
        None => Found::Opaque,
    })
}

/// `text` cut to [`MAX_EXTRACTED_CHARS`] characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_EXTRACTED_CHARS) {
        Some((cut, _)) => text[..cut].trim_end().to_owned(),
        None => text.to_owned(),
    }
}

/// A bid is plain decimal text, `digits[.d[d]]`, greater than zero; signs,
/// exponents, separators, currency symbols and more than
/// [`MAX_BID_DECIMALS`] places are no bid rather than a guess.
pub fn parse_bid(text: &str) -> Option<Decimal> {
    if text.len() > MAX_BID_CHARS {
        return None;
    }
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let (units, cents) = match text.split_once('.') {
        Some((units, cents)) => (units, Some(cents)),
        None => (text, None),
    };
    let well_formed =
        all_digits(units) && cents.is_none_or(|cents| all_digits(cents) && cents.len() <= MAX_BID_DECIMALS);
    if !well_formed {
        return None;
    }
    Decimal::from_str(text).ok().filter(|price| *price > Decimal::ZERO)
}

impl<'a> Reply<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self {
            body: body.strip_prefix(UTF8_BOM).unwrap_or(body),
            text: OnceCell::new(),
            json: OnceCell::new(),
            xml: OnceCell::new(),
        }
    }

    fn text(&self) -> &str {
        self.text.get_or_init(|| String::from_utf8_lossy(self.body)).trim()
    }

    fn json(&self) -> Option<&Value> {
        self.json.get_or_init(|| serde_json::from_slice(self.body).ok()).as_ref()
    }

    fn xml(&self) -> Option<&Document<'a>> {
        self.xml.get_or_init(|| parse_xml(self.body)).as_ref()
    }
}

fn parse_xml(body: &[u8]) -> Option<Document<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    let options = ParsingOptions { nodes_limit: MAX_XML_NODES, ..ParsingOptions::default() };
    Document::parse_with_options(text, options).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const PREFIX: &str = "delivery.answer";

    fn spec(config: Value) -> AnswerSpec {
        serde_json::from_value(config).unwrap()
    }

    fn compiled(config: Value) -> CompiledAnswer {
        spec(config).compile(PREFIX).unwrap()
    }

    fn compile_errors(config: Value) -> Vec<FieldError> {
        spec(config).compile(PREFIX).unwrap_err()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn price(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn hubspot() -> Value {
        json!({"reason": {"json": "$.errors[0].message"}})
    }

    fn xml_api() -> Value {
        json!({
            "accept": {"match": {"xml": "/response/status", "equals": "success"}},
            "reference": {"xml": "//lead/@id"},
            "reason": {"xml": "/response/message/text()"}
        })
    }

    fn plain_text() -> Value {
        json!({
            "accept": {"match": {"regex": r"^OK\|"}},
            "reference": {"regex": r"^OK\|(\w+)"},
            "reason": {"regex": r"^ERR\|(.*)$"}
        })
    }

    fn custom_ping() -> Value {
        json!({
            "bid": {"json": "$.result.price"},
            "token": {"json": "$.result.token"},
            "no_bid": {"json": "$.result.status", "equals": "no_coverage"},
            "reason": {"json": "$.result.status"}
        })
    }

    #[test]
    fn hubspot_success_is_accepted_on_2xx() {
        let reading = compiled(hubspot()).read_post(200, br#"{"inlineMessage":"Thanks","redirectUri":null}"#);
        assert_eq!(reading, PostReading { accepted: true, reason: None, reference: None });
    }

    #[test]
    fn hubspot_rejection_reason_comes_from_the_first_error() {
        let body = br#"{"status":"error","message":"The request is not valid","errors":[{"message":"Error in 'fields.email'. Invalid email address","errorType":"INVALID_EMAIL"}]}"#;
        let reading = compiled(hubspot()).read_post(400, body);
        assert!(!reading.accepted);
        assert_eq!(reading.reason.as_deref(), Some("Error in 'fields.email'. Invalid email address"));
        assert_eq!(reading.reference, None);
    }

    #[test]
    fn xml_success_is_accepted_with_its_reference() {
        let body = br#"<response><status>success</status><lead id="A-991"/></response>"#;
        let reading = compiled(xml_api()).read_post(200, body);
        assert!(reading.accepted);
        assert_eq!(reading.reference.as_deref(), Some("A-991"));
        assert_eq!(reading.reason, None);
    }

    #[test]
    fn xml_duplicate_is_rejected_with_the_buyer_message() {
        let body = br#"<response><status>duplicate</status><message>Lead exists</message></response>"#;
        let reading = compiled(xml_api()).read_post(200, body);
        assert!(!reading.accepted);
        assert_eq!(reading.reason.as_deref(), Some("Lead exists"));
        assert_eq!(reading.reference, None);
    }

    #[test]
    fn plain_text_ok_is_accepted_with_its_reference() {
        let reading = compiled(plain_text()).read_post(200, b"OK|12345");
        assert!(reading.accepted);
        assert_eq!(reading.reference.as_deref(), Some("12345"));
    }

    #[test]
    fn plain_text_err_is_rejected_with_its_reason() {
        let reading = compiled(plain_text()).read_post(200, b"ERR|bad zip");
        assert!(!reading.accepted);
        assert_eq!(reading.reason.as_deref(), Some("bad zip"));
    }

    #[test]
    fn plain_text_trailing_newline_still_ends_the_answer() {
        let reading = compiled(plain_text()).read_post(200, b"ERR|bad zip\r\n");
        assert_eq!(reading.reason.as_deref(), Some("bad zip"));
        let reading = compiled(plain_text()).read_post(200, b"\nOK|77\n");
        assert_eq!(reading.reference.as_deref(), Some("77"));
    }

    #[test]
    fn custom_ping_bid_and_token_are_read() {
        let reading = compiled(custom_ping()).read_ping(200, br#"{"result":{"price":"12.50","token":"tk-77"}}"#);
        assert_eq!(reading, PingReading { bid: Some(price("12.50")), token: Some("tk-77".to_owned()), reason: None });
    }

    #[test]
    fn custom_ping_no_coverage_is_no_bid() {
        let reading = compiled(custom_ping()).read_ping(200, br#"{"result":{"status":"no_coverage"}}"#);
        assert_eq!(reading, PingReading { bid: None, token: None, reason: Some("no_coverage".to_owned()) });
    }

    #[test]
    fn no_bid_that_holds_wins_over_a_price() {
        let body = br#"{"result":{"status":"no_coverage","price":"9.00","token":"t"}}"#;
        let reading = compiled(custom_ping()).read_ping(200, body);
        assert_eq!(reading.bid, None);
        assert_eq!(reading.token, None);
        let body = br#"{"result":{"status":"ok","price":"9.00","token":"t"}}"#;
        assert_eq!(compiled(custom_ping()).read_ping(200, body).bid, Some(price("9")));
    }

    #[test]
    fn non_2xx_ping_is_no_bid_even_with_a_price() {
        let body = br#"{"result":{"price":"12.50","token":"tk-77"}}"#;
        let reading = compiled(custom_ping()).read_ping(503, body);
        assert_eq!(reading.bid, None);
        assert_eq!(reading.token, None);
    }

    #[test]
    fn salesforce_html_is_read_by_status_only() {
        let answer = compiled(json!({}));
        let html = b"<html><body>Thank you<br></body></html>";
        assert!(answer.read_post(200, html).accepted);
        assert!(!answer.read_post(500, html).accepted);
        assert!(!answer.read_post(302, html).accepted);
        assert_eq!(answer.read_ping(200, html).bid, None);
    }

    #[test]
    fn spec_without_bid_rule_never_bids() {
        let reading = compiled(json!({})).read_ping(200, br#"{"price":"5.00"}"#);
        assert_eq!(reading.bid, None);
    }

    #[test]
    fn status_list_and_class_rules() {
        let listed = compiled(json!({"accept": {"status": [200, 201]}}));
        assert!(listed.read_post(201, b"").accepted);
        assert!(!listed.read_post(202, b"").accepted);
        let class = compiled(json!({"accept": {"status": "4XX"}}));
        assert!(class.read_post(409, b"").accepted);
        assert!(!class.read_post(200, b"").accepted);
    }

    #[test]
    fn status_rule_rejects_malformed_values() {
        for bad in [json!("2xy"), json!("6xx"), json!("xx"), json!([]), json!([99]), json!([600]), json!(200)] {
            let config = json!({"accept": {"status": bad.clone()}});
            assert!(serde_json::from_value::<AnswerSpec>(config).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_rule_built_in_code_is_checked_at_compile() {
        let mut answer = AnswerSpec::default();
        answer.accept.status = StatusRule::Codes(vec![]);
        let errors = answer.compile(PREFIX).unwrap_err();
        assert_eq!(fields(&errors), vec!["delivery.answer.accept.status"]);
    }

    #[test]
    fn omitted_parts_keep_their_defaults_and_round_trip() {
        let answer = spec(json!({}));
        assert_eq!(answer.accept.status, StatusRule::Class(2));
        assert_eq!(answer, AnswerSpec::default());
        let written = serde_json::to_value(spec(xml_api())).unwrap();
        assert_eq!(written["accept"]["status"], json!("2xx"));
        assert_eq!(written["accept"]["match"]["equals"], json!("success"));
        assert_eq!(spec(written), spec(xml_api()));
        let listed = serde_json::to_value(spec(json!({"accept": {"status": [204]}}))).unwrap();
        assert_eq!(listed["accept"]["status"], json!([204]));
    }

    #[test]
    fn unknown_fields_are_refused() {
        for bad in [
            json!({"acept": {}}),
            json!({"accept": {"mtch": {"json": "$.a"}}}),
            json!({"reason": {"json": "$.a", "equals": "x"}}),
            json!({"no_bid": {"json": "$.a", "equal": "x"}}),
        ] {
            assert!(serde_json::from_value::<AnswerSpec>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_paths_and_patterns_are_all_reported_with_field_paths() {
        let errors = compile_errors(json!({
            "accept": {"match": {"json": "$.["}},
            "reason": {"regex": "(unclosed"},
            "reference": {"xml": "lead/@id"},
            "bid": {"json": "$.price"},
            "token": {"xml": "//a[0]"},
            "no_bid": {"regex": ""}
        }));
        assert_eq!(
            fields(&errors),
            vec![
                "delivery.answer.accept.match.json",
                "delivery.answer.reason.regex",
                "delivery.answer.reference.xml",
                "delivery.answer.no_bid.regex",
                "delivery.answer.token.xml",
            ]
        );
        assert!(errors[0].message.starts_with("not a valid JSONPath"));
        assert!(errors[1].message.starts_with("not a valid regex"));
        assert!(errors[2].message.contains("absolute"));
        assert_eq!(errors[3].message, "must not be empty");
        assert!(errors[4].message.contains("positions start at 1"));
    }

    #[test]
    fn zero_or_several_languages_are_refused() {
        let errors = compile_errors(json!({
            "bid": {},
            "no_bid": {"json": "$.a", "regex": "a"}
        }));
        assert_eq!(fields(&errors), vec!["delivery.answer.bid", "delivery.answer.no_bid"]);
        assert_eq!(errors[0].message, "set one of `json`, `xml` or `regex`");
        assert!(errors[1].message.contains("found json, regex"));
    }

    #[test]
    fn equals_with_in_and_empty_in_are_refused() {
        let errors = compile_errors(json!({
            "accept": {"match": {"json": "$.a", "equals": "x", "in": ["x"]}},
            "no_bid": {"json": "$.b", "in": []}
        }));
        assert_eq!(fields(&errors), vec!["delivery.answer.accept.match", "delivery.answer.no_bid.in"]);
    }

    #[test]
    fn oversized_regex_is_refused() {
        let errors = compile_errors(json!({"reason": {"regex": r"\w{5000}"}}));
        assert_eq!(fields(&errors), vec!["delivery.answer.reason.regex"]);
    }

    #[test]
    fn empty_prefix_gives_bare_field_paths() {
        let errors = spec(json!({"reason": {"json": "nope"}})).compile("").unwrap_err();
        assert_eq!(fields(&errors), vec!["reason.json"]);
    }

    #[test]
    fn non_json_body_fails_json_rules_without_error() {
        let answer = compiled(json!({
            "accept": {"match": {"json": "$.ok"}},
            "reason": {"json": "$.message"},
            "bid": {"json": "$.price"}
        }));
        for body in [&b"<html>oops</html>"[..], b"", b"\xff\xfe{", b"{\"ok\": tru"] {
            assert_eq!(answer.read_post(200, body), PostReading { accepted: false, reason: None, reference: None });
            assert_eq!(answer.read_ping(200, body).bid, None);
        }
    }

    #[test]
    fn non_xml_body_fails_xml_rules_without_error() {
        let answer = compiled(xml_api());
        for body in [&b"{\"status\":\"success\"}"[..], b"<response><status>success", b"\xff<a/>"] {
            assert!(!answer.read_post(200, body).accepted);
        }
    }

    #[test]
    fn in_condition_accepts_any_listed_value() {
        let answer = compiled(json!({"accept": {"match": {"json": "$.status", "in": ["ok", "queued"]}}}));
        assert!(answer.read_post(200, br#"{"status":"queued"}"#).accepted);
        assert!(answer.read_post(200, br#"{"status":" ok "}"#).accepted);
        assert!(!answer.read_post(200, br#"{"status":"OK"}"#).accepted);
    }

    #[test]
    fn condition_holds_when_any_matched_node_has_the_value() {
        let answer = compiled(json!({
            "accept": {"match": {"json": "$.errors[*].errorType", "equals": "DUPLICATE"}}
        }));
        let body = br#"{"errors":[{"errorType":"INVALID_EMAIL"},{"errorType":"DUPLICATE"}]}"#;
        assert!(answer.read_post(200, body).accepted);
    }

    #[test]
    fn json_scalars_null_and_structures() {
        let answer = compiled(json!({
            "accept": {"match": {"json": "$.ok"}},
            "reference": {"json": "$.id"}
        }));
        assert_eq!(answer.read_post(200, br#"{"ok":true,"id":12345}"#).reference.as_deref(), Some("12345"));
        assert_eq!(answer.read_post(200, br#"{"ok":{},"id":false}"#).reference.as_deref(), Some("false"));
        assert!(answer.read_post(200, br#"{"ok":[],"id":{"n":1}}"#).reference.is_none());
        assert!(!answer.read_post(200, br#"{"ok":null,"id":"x"}"#).accepted);
        let equals_true = compiled(json!({"accept": {"match": {"json": "$.ok", "equals": "true"}}}));
        assert!(equals_true.read_post(200, br#"{"ok":true}"#).accepted);
        assert!(!equals_true.read_post(200, br#"{"ok":"yes"}"#).accepted);
    }

    #[test]
    fn extracted_text_is_trimmed_bounded_and_never_empty() {
        let answer = compiled(json!({"reason": {"json": "$.m"}}));
        let long = format!("  {}  ", "é".repeat(MAX_EXTRACTED_CHARS + 40));
        let body = serde_json::to_vec(&json!({"m": long})).unwrap();
        let reason = answer.read_post(400, &body).reason.unwrap();
        assert_eq!(reason.chars().count(), MAX_EXTRACTED_CHARS);
        assert!(reason.starts_with('é'));
        assert_eq!(answer.read_post(400, br#"{"m":"   "}"#).reason, None);
        assert_eq!(answer.read_post(400, br#"{"m":"  no  "}"#).reason.as_deref(), Some("no"));
    }

    #[test]
    fn regex_value_is_first_group_or_whole_match() {
        let whole = compiled(json!({"reference": {"regex": r"\d+"}}));
        assert_eq!(whole.read_post(200, b"id 42 ok").reference.as_deref(), Some("42"));
        let optional = compiled(json!({
            "accept": {"match": {"regex": "ok(-(\\d+))?"}},
            "reference": {"regex": "ok(?:-(\\d+))?"}
        }));
        let reading = optional.read_post(200, b"ok");
        assert!(reading.accepted);
        assert_eq!(reading.reference, None);
        let equals_group = compiled(json!({"accept": {"match": {"regex": r"^(\w+)\|", "equals": "OK"}}}));
        assert!(equals_group.read_post(200, b"OK|1").accepted);
        assert!(!equals_group.read_post(200, b"ERR|1").accepted);
    }

    #[test]
    fn xml_rules_match_local_names_and_skip_bom() {
        let answer = compiled(json!({
            "accept": {"match": {"xml": "/Envelope/Body/Result/Code", "equals": "0"}},
            "reference": {"xml": "//Result/@leadId"}
        }));
        let body = "\u{feff}<soap:Envelope xmlns:soap=\"urn:s\"><soap:Body><r:Result xmlns:r=\"urn:r\" leadId=\"L-1\"><r:Code>0</r:Code></r:Result></soap:Body></soap:Envelope>";
        let reading = answer.read_post(200, body.as_bytes());
        assert!(reading.accepted);
        assert_eq!(reading.reference.as_deref(), Some("L-1"));
    }

    #[test]
    fn json_with_bom_is_read() {
        let answer = compiled(json!({"reference": {"json": "$.id"}}));
        let reading = answer.read_post(200, b"\xEF\xBB\xBF{\"id\":\"b-1\"}");
        assert_eq!(reading.reference.as_deref(), Some("b-1"));
    }

    #[test]
    fn bid_must_be_a_positive_price_in_cents() {
        for (text, expected) in [
            ("12.50", Some("12.50")),
            ("12.5", Some("12.5")),
            ("7", Some("7")),
            ("0.01", Some("0.01")),
            ("0", None),
            ("0.00", None),
            ("-3", None),
            ("+3", None),
            ("12.505", None),
            ("12.", None),
            (".5", None),
            ("1e3", None),
            ("1,000.00", None),
            ("$5", None),
            ("abc", None),
            ("", None),
            ("123456789012345678901", None),
        ] {
            assert_eq!(parse_bid(text), expected.map(price), "{text:?}");
        }
    }

    #[test]
    fn json_number_bids_are_read_from_their_text() {
        let answer = compiled(json!({"bid": {"json": "$.price"}}));
        assert_eq!(answer.read_ping(200, br#"{"price":12.5}"#).bid, Some(price("12.5")));
        assert_eq!(answer.read_ping(200, br#"{"price":3}"#).bid, Some(price("3")));
        assert_eq!(answer.read_ping(200, br#"{"price":1.234}"#).bid, None);
        assert_eq!(answer.read_ping(200, br#"{"price":"n/a"}"#).bid, None);
    }

    #[test]
    fn regex_and_xml_bids() {
        let text = compiled(json!({"bid": {"regex": r"price=([0-9.]+)"}, "token": {"regex": r"tk=(\S+)"}}));
        let reading = text.read_ping(200, b"price=4.25 tk=abc");
        assert_eq!(reading.bid, Some(price("4.25")));
        assert_eq!(reading.token.as_deref(), Some("abc"));
        let xml = compiled(json!({"bid": {"xml": "/bid/@amount"}}));
        assert_eq!(xml.read_ping(200, br#"<bid amount=" 2.00 "/>"#).bid, Some(price("2.00")));
    }

    fn fixed_specs() -> Vec<CompiledAnswer> {
        let mixed = json!({
            "accept": {"status": [200, 202], "match": {"regex": "(?i)accepted|ok"}},
            "reason": {"xml": "//*"},
            "reference": {"json": "$..id"},
            "bid": {"xml": "//price/text()"},
            "no_bid": {"json": "$.*", "in": ["none", "0"]},
            "token": {"regex": "(.*)"}
        });
        [hubspot(), xml_api(), plain_text(), custom_ping(), json!({}), mixed].into_iter().map(compiled).collect()
    }

    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            "[{}\\[\\]\":,a-z0-9.<>/= |@_-]{0,160}".prop_map(String::into_bytes),
            (any::<String>(), any::<String>()).prop_map(|(price, status)| {
                serde_json::to_vec(&json!({"result": {"price": price, "status": status, "token": price}}))
                    .unwrap_or_default()
            }),
            ("[0-9.]{0,8}", "[a-z]{0,8}").prop_map(|(price, word)| {
                format!("<response><status>{word}</status><price>{price}</price><lead id=\"{word}\"/></response>")
                    .into_bytes()
            }),
        ]
    }

    proptest! {
        #[test]
        fn reading_never_panics_and_respects_bounds(status in any::<u16>(), body in bodies()) {
            for answer in fixed_specs() {
                let post = answer.read_post(status, &body);
                prop_assert!(!post.accepted || answer.status.allows(status));
                prop_assert!(post.reason.is_none() || !post.accepted);
                prop_assert!(post.reference.is_none() || post.accepted);
                for text in post.reason.iter().chain(post.reference.iter()) {
                    prop_assert!(text.chars().count() <= MAX_EXTRACTED_CHARS);
                    prop_assert!(!text.is_empty());
                }
                let ping = answer.read_ping(status, &body);
                if let Some(bid) = ping.bid {
                    prop_assert!(bid > Decimal::ZERO);
                    prop_assert!(bid.scale() <= 2);
                    prop_assert!(answer.status.allows(status));
                } else {
                    prop_assert!(ping.token.is_none());
                }
            }
        }
    }
}
