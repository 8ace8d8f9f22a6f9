//! The template engine behind buyer requests: one minijinja environment per
//! campaign, our filters, escaping by output format, and the store-time
//! checks that refuse unknown variables and filters and PII in pings.
//!
//! Unknown filters are found by a lexical scan of the template's tags
//! (`scan_usages`), not by rendering: minijinja looks filters up only when
//! an expression runs, so a filter inside a branch the sample data never
//! takes would slip through a render check. The scan mirrors minijinja's
//! lexer for the parts that matter (tags, string literals, bracket depth,
//! raw blocks, comments) and only runs on templates minijinja has already
//! parsed. The environment holds nothing but the allowed filters and tests,
//! so anything the scan could miss still fails loudly at render. A check
//! render against a sample context then catches wrong argument counts on
//! the paths the sample takes. minijinja's `unstable_machinery` AST would be
//! exact, but has no semver promise; the scan keeps us on the stable API.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::format::StrftimeItems;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::domain::model::FieldError;

/// Largest template source accepted. Real bodies (SOAP envelopes, HubSpot
/// field arrays) are a few KiB; the bound keeps stored campaigns and the
/// store-time checks small.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// Fuel for one render (about one unit per instruction or per 64 bytes
/// made). A loop over a lead's fields costs a few hundred; the bound stops
/// a template like `{{ "x" * 1000000000 }}` from taking a delivery worker's
/// memory or time.
pub const RENDER_FUEL: u64 = 100_000;

/// Deepest nesting of custom lead fields handed to templates; deeper values
/// are passed as their JSON text. Custom fields are flat scalars by
/// contract, so this only guards the recursion.
const MAX_LEAD_DEPTH: usize = 16;

/// Characters left as they are by `urlencode`, query strings and URL
/// placeholders: RFC 3986 unreserved. Space becomes `%20`.
pub const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Which request a template belongs to: a ping sees only anonymous fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Ping,
    Post,
}

/// How a template's `{{ … }}` output is escaped; literal template text is
/// never touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Field values, headers: the format encoder (or nothing) escapes later.
    None,
    /// Inside a JSON string the author quoted: `"{{ lead.email }}"`.
    JsonString,
    /// XML text and attribute values.
    XmlText,
    /// URL pieces: percent-encoded so lead data cannot reshape the URL.
    UrlComponent,
}

impl Escape {
    fn tag(self) -> &'static str {
        match self {
            Escape::None => "none",
            Escape::JsonString => "json-string",
            Escape::XmlText => "xml-text",
            Escape::UrlComponent => "url-component",
        }
    }

    fn from_tag(tag: &str) -> Escape {
        match tag {
            "json-string" => Escape::JsonString,
            "xml-text" => Escape::XmlText,
            "url-component" => Escape::UrlComponent,
            _ => Escape::None,
        }
    }

    fn auto_escape(self) -> AutoEscape {
        match self {
            Escape::None => AutoEscape::None,
            other => AutoEscape::Custom(Cow::Borrowed(other.tag())),
        }
    }

    /// Escaping for a `template` body, chosen by its media type.
    pub fn for_content_type(content_type: &str) -> Escape {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence == "application/json" || essence == "text/json" || essence.ends_with("+json") {
            Escape::JsonString
        } else if essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml") {
            Escape::XmlText
        } else {
            Escape::None
        }
    }

    /// Applies this escaping to one piece of output.
    pub fn apply(self, text: &str) -> Cow<'_, str> {
        match self {
            Escape::None => Cow::Borrowed(text),
            Escape::JsonString => Cow::Owned(escape_json_string(text)),
            Escape::XmlText => Cow::Owned(escape_xml_text(text)),
            Escape::UrlComponent => Cow::Owned(utf8_percent_encode(text, URL_COMPONENT).to_string()),
        }
    }
}

/// The `value_maps` of a campaign: map name → (lead value → buyer value).
pub type ValueMaps = BTreeMap<String, BTreeMap<String, String>>;

/// A template failed while rendering one request; `field` is its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RenderError {
    pub field: String,
    pub message: String,
}

impl RenderError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// What one render knows: the template variables, plus the campaign's own
/// endpoint for when `request.url` is absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderContext {
    /// The lead as JSON (its stored shape). For a ping, everything but
    /// vertical, zip, country, state and fields is dropped before rendering.
    pub lead: serde_json::Value,
    pub sale_id: Option<String>,
    pub ping_id: Option<String>,
    /// What the ping's answer returned, for the post that follows.
    pub ping_token: Option<String>,
    /// Decimal string, e.g. "12.50".
    pub price: Option<String>,
    pub currency: Option<String>,
    pub campaign_id: String,
    pub buyer_id: String,
    pub supplier_id: String,
    /// RFC 3339; passed in so rendering never reads the clock.
    pub now: String,
    pub test: bool,
    /// `delivery.url` or `ping_url`, used when `request.url` is absent.
    pub endpoint_url: Option<String>,
}

/// A campaign's compiled templates, addressed by their field paths.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    env: Environment<'static>,
    stage: Stage,
    value_maps: Arc<ValueMaps>,
    /// Field path → template name (the name carries the escape mode).
    names: BTreeMap<String, String>,
}

impl TemplateSet {
    pub fn new(stage: Stage, value_maps: ValueMaps) -> Self {
        let value_maps = Arc::new(value_maps);
        Self { env: build_environment(Arc::clone(&value_maps)), stage, value_maps, names: BTreeMap::new() }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Compiles `source` under `path` and runs every store-time check,
    /// returning all problems found (each addressed to `path`).
    pub fn add(&mut self, path: &str, source: &str, escape: Escape) -> Result<(), Vec<FieldError>> {
        if source.len() > MAX_TEMPLATE_BYTES {
            let message = format!("template is {} bytes; the limit is {MAX_TEMPLATE_BYTES}", source.len());
            return Err(vec![FieldError::new(path, message)]);
        }
        let name = format!("{}:{path}", escape.tag());
        if let Err(err) = self.env.add_template_owned(name.clone(), source.to_owned()) {
            return Err(vec![FieldError::new(path, describe(&err))]);
        }
        let mut problems = self.variable_problems(&name);
        problems.extend(usage_problems(source, &self.value_maps));
        if problems.is_empty() {
            problems.extend(self.check_render(&name));
        }
        if problems.is_empty() {
            self.names.insert(path.to_owned(), name);
            return Ok(());
        }
        self.env.remove_template(&name);
        Err(problems.into_iter().map(|message| FieldError::new(path, message)).collect())
    }

    /// Renders the template stored under `path` with `vars` (see
    /// [`context_value`]).
    pub fn render(&self, path: &str, vars: &Value) -> Result<String, RenderError> {
        let name = self.names.get(path).ok_or_else(|| RenderError::new(path, "no template compiled for this field"))?;
        let template = self.env.get_template(name).map_err(|err| RenderError::new(path, describe(&err)))?;
        template.render(vars.clone()).map_err(|err| RenderError::new(path, describe(&err)))
    }

    fn variable_problems(&self, name: &str) -> Vec<String> {
        let Ok(template) = self.env.get_template(name) else {
            return vec!["template vanished after compiling".to_owned()];
        };
        let mut names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        names.sort();
        names.iter().filter_map(|variable| variable_problem(variable, self.stage)).collect()
    }

    /// Renders once against a sample lead and reports only errors that no
    /// real lead could fix (unknown names, wrong argument counts): type
    /// errors depend on the data and are left to render time.
    fn check_render(&self, name: &str) -> Option<String> {
        let template = self.env.get_template(name).ok()?;
        let err = template.render(sample_context(self.stage)).err()?;
        let structural = matches!(
            err.kind(),
            ErrorKind::UnknownFilter
                | ErrorKind::UnknownTest
                | ErrorKind::UnknownFunction
                | ErrorKind::UnknownMethod
                | ErrorKind::MissingArgument
                | ErrorKind::TooManyArguments
                | ErrorKind::OutOfFuel
        );
        structural.then(|| describe(&err))
    }
}

/// A minijinja error as one line, without our internal template names.
fn describe(err: &Error) -> String {
    let mut text = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if let Some(line) = err.line().filter(|line| *line > 0) {
        let _ = write!(text, " (line {line})");
    }
    text
}

// ---------------------------------------------------------------------------
// Environment and filters

/// Filters we implement; each is documented at its function.
const OWN_FILTERS: &[&str] =
    &["digits", "e164", "national", "upper", "lower", "default", "date", "map", "urlencode", "truncate"];
/// minijinja builtins worth having for field loops and small clean-ups.
const BUILTIN_FILTERS: &[&str] = &["trim", "replace", "join", "length", "items"];
const TESTS: &[&str] = &["defined", "undefined", "none"];

fn build_environment(value_maps: Arc<ValueMaps>) -> Environment<'static> {
    // `empty()`: no globals (no `range`, `namespace`), no filters but ours.
    let mut env = Environment::empty();
    // Chainable: a missing optional field (`lead.consent.ip` without
    // consent) renders empty instead of failing the delivery.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_auto_escape_callback(|name| Escape::from_tag(name.split(':').next().unwrap_or("")).auto_escape());
    env.set_formatter(format_output);
    env.add_filter("digits", digits);
    env.add_filter("e164", e164);
    env.add_filter("national", national);
    env.add_filter("upper", upper);
    env.add_filter("lower", lower);
    env.add_filter("default", default);
    env.add_filter("date", date);
    env.add_filter("urlencode", urlencode);
    env.add_filter("truncate", truncate);
    env.add_filter("map", move |value: &Value, map_name: &str| map_value(&value_maps, value, map_name));
    env.add_filter("trim", minijinja::filters::trim);
    env.add_filter("replace", minijinja::filters::replace);
    env.add_filter("join", minijinja::filters::join);
    env.add_filter("length", minijinja::filters::length);
    env.add_filter("items", minijinja::filters::items);
    env.add_test("defined", minijinja::tests::is_defined);
    env.add_test("undefined", minijinja::tests::is_undefined);
    env.add_test("none", minijinja::tests::is_none);
    env
}

/// Writes `{{ … }}` output escaped for the template's format. `none` and
/// undefined print as nothing: an absent optional field is an empty value
/// to a buyer, never the word "none".
fn format_output(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let text = text_of(value);
    if value.is_safe() {
        return out.write_str(&text).map_err(Error::from);
    }
    let escape = match state.auto_escape() {
        AutoEscape::Custom(tag) => Escape::from_tag(tag),
        _ => Escape::None,
    };
    out.write_str(&escape.apply(&text)).map_err(Error::from)
}

/// The text a value stands for: empty for undefined and none, and
/// booleans as JSON spells them (minijinja prints Python's `True`).
pub fn text_of(value: &Value) -> Cow<'_, str> {
    if value.is_undefined() || value.is_none() {
        Cow::Borrowed("")
    } else if value.kind() == ValueKind::Bool {
        Cow::Borrowed(if value.is_true() { "true" } else { "false" })
    } else if let Some(text) = value.as_str() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(value.to_string())
    }
}

/// `digits`: only the ASCII digits 0-9.
fn digits(value: &Value) -> String {
    text_of(value).chars().filter(char::is_ascii_digit).collect()
}

/// `e164`: `+` and the digits, the form phones are stored in; empty stays
/// empty.
fn e164(value: &Value) -> String {
    let digits = digits(value);
    if digits.is_empty() {
        digits
    } else {
        format!("+{digits}")
    }
}

/// `national`: the digits after the country calling code. The code's
/// length comes from the number itself (ITU codes are prefix-free), so no
/// per-country table is needed. Input without `+` is taken as national.
fn national(value: &Value) -> String {
    let text = text_of(value);
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if !text.trim_start().starts_with('+') {
        return digits;
    }
    let code_len = calling_code_len(&digits);
    digits.get(code_len..).unwrap_or("").to_owned()
}

/// Length of the ITU-T E.164 country calling code that `digits` starts
/// with: 1 and 7 are one digit, the listed zones two, all others three.
fn calling_code_len(digits: &str) -> usize {
    const TWO_DIGIT: &[&str] = &[
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
        "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84",
        "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO_DIGIT.iter().any(|code| digits.starts_with(code)) {
        2
    } else {
        3
    }
}

fn upper(value: &Value) -> String {
    text_of(value).to_uppercase()
}

fn lower(value: &Value) -> String {
    text_of(value).to_lowercase()
}

/// `default(x)`: `x` when the value is undefined, none or the empty string
/// (lead data uses "" for "not given" as often as it omits the field).
fn default(value: &Value, fallback: Option<Value>) -> Value {
    if value.is_undefined() || value.is_none() || value.as_str() == Some("") {
        fallback.unwrap_or_else(|| Value::from(""))
    } else {
        value.clone()
    }
}

/// `date(fmt)`: reformats an RFC 3339 timestamp (or `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM:SS` taken as UTC) with chrono's strftime. Empty input
/// stays empty; anything else unparseable is a render error rather than a
/// garbled date sent to the buyer.
fn date(value: &Value, format: &str) -> Result<String, Error> {
    let text = text_of(value);
    if text.is_empty() {
        return Ok(String::new());
    }
    let instant = parse_instant(&text).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("date: {text:?} is not an RFC 3339 timestamp or YYYY-MM-DD date"),
        )
    })?;
    let items = StrftimeItems::new(format)
        .parse()
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("date: bad format {format:?}")))?;
    let mut out = String::new();
    write!(out, "{}", instant.format_with_items(items.iter()))
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("date: cannot format with {format:?}")))?;
    Ok(out)
}

fn parse_instant(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant);
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        return Some(naive.and_utc().fixed_offset());
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().fixed_offset())
}

/// `urlencode`: percent-encoding, space as `%20`. Marked safe so a URL
/// placeholder does not encode it twice; its output holds no character
/// that JSON or XML would need escaped.
fn urlencode(value: &Value) -> Value {
    Value::from_safe_string(utf8_percent_encode(&text_of(value), URL_COMPONENT).to_string())
}

/// `truncate(n)`: at most `n` characters (not bytes), no ellipsis: buyers
/// use it for hard field-length limits.
fn truncate(value: &Value, length: usize) -> String {
    text_of(value).chars().take(length).collect()
}

/// `map(name)`: the value's entry in `value_maps[name]`; a value the map
/// does not list passes through unchanged, so a new lead value degrades to
/// itself instead of failing the sale.
fn map_value(value_maps: &ValueMaps, value: &Value, map_name: &str) -> Result<Value, Error> {
    let map = value_maps
        .get(map_name)
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, format!("map: no value map named {map_name:?}")))?;
    Ok(match map.get(text_of(value).as_ref()) {
        Some(mapped) => Value::from(mapped.as_str()),
        None => value.clone(),
    })
}

// ---------------------------------------------------------------------------
// Escaping

/// The inside of a JSON string literal (no quotes).
pub fn escape_json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// XML text, also safe in attribute values. Characters XML 1.0 cannot
/// carry at all, even as references, become U+FFFD. Line breaks and tabs
/// are written as references because parsers fold literal ones (`\r` in
/// text, all three in attributes).
pub fn escape_xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// XML 1.0 `Char`.
pub fn is_xml_char(c: char) -> bool {
    matches!(u32::from(c), 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

// ---------------------------------------------------------------------------
// Variables

/// Lead fields a template may name as `lead.<field>`: the lead's own properties
/// (`domain::lead::LEAD_PROPERTIES`) and its `id`.
fn is_lead_field(path: &str) -> bool {
    path == "id" || crate::domain::lead::LEAD_PROPERTIES.contains(&path)
}
/// What a ping carries of the lead (besides `fields`).
const PING_LEAD_FIELDS: &[&str] = &["vertical", "zip", "country", "state"];
/// Named by the contract: a ping template naming these is refused.
const PII_FIELDS: &[&str] = &["email", "phone", "first_name", "last_name", "street"];
const CONSENT_FIELDS: &[&str] = &["tcpa", "certificate_url", "ip", "captured_at"];
const OTHER_VARIABLES: &[&str] =
    &["sale.id", "ping.id", "ping.token", "price", "currency", "campaign.id", "buyer.id", "supplier.id", "now", "test"];
/// Only known once a ping has been answered and a sale made.
const POST_ONLY_VARIABLES: &[&str] = &["sale.id", "ping.token"];

/// Why a template may not name `variable` (a dotted path as minijinja's
/// `undeclared_variables(true)` reports it), or `None` if it may.
fn variable_problem(variable: &str, stage: Stage) -> Option<String> {
    if let Some(path) = variable.strip_prefix("lead.") {
        return lead_problem(path, stage);
    }
    if !OTHER_VARIABLES.contains(&variable) {
        return Some(format!("unknown variable `{variable}`"));
    }
    (stage == Stage::Ping && POST_ONLY_VARIABLES.contains(&variable))
        .then(|| format!("`{variable}` is not known when pinging"))
}

fn lead_problem(path: &str, stage: Stage) -> Option<String> {
    if path == "fields" || path.starts_with("fields.") {
        return None;
    }
    let known = is_lead_field(path) || path.strip_prefix("consent.").is_some_and(|key| CONSENT_FIELDS.contains(&key));
    if !known {
        return Some(format!("unknown variable `lead.{path}`"));
    }
    if stage == Stage::Post {
        return None;
    }
    if PII_FIELDS.contains(&path) {
        return Some(format!(
            "`lead.{path}` is personal data; a ping template may name only lead.vertical, \
             lead.zip, lead.country, lead.state and lead.fields"
        ));
    }
    (!PING_LEAD_FIELDS.contains(&path)).then(|| format!("`lead.{path}` is not sent in a ping"))
}

/// The variables a template renders with. For a ping the lead is cut down
/// to its anonymous fields here too, so PII cannot reach a ping template by
/// any path the store-time check did not foresee.
pub fn context_value(context: &RenderContext, stage: Stage) -> Value {
    let mut root = BTreeMap::new();
    root.insert("lead".to_owned(), lead_value(&context.lead, stage));
    let ids =
        [("sale", "id", &context.sale_id), ("ping", "id", &context.ping_id), ("ping", "token", &context.ping_token)];
    let mut objects: BTreeMap<&str, BTreeMap<String, Value>> = BTreeMap::new();
    for (object, key, value) in ids {
        let entry = objects.entry(object).or_default();
        if let Some(value) = value {
            entry.insert(key.to_owned(), Value::from(value.as_str()));
        }
    }
    for (object, value) in
        [("campaign", &context.campaign_id), ("buyer", &context.buyer_id), ("supplier", &context.supplier_id)]
    {
        let entry = objects.entry(object).or_default();
        entry.insert("id".to_owned(), Value::from(value.as_str()));
    }
    for (name, fields) in objects {
        root.insert(name.to_owned(), Value::from(fields));
    }
    for (name, value) in [("price", &context.price), ("currency", &context.currency)] {
        if let Some(value) = value {
            root.insert(name.to_owned(), Value::from(value.as_str()));
        }
    }
    root.insert("now".to_owned(), Value::from(context.now.as_str()));
    root.insert("test".to_owned(), Value::from(context.test));
    Value::from(root)
}

fn lead_value(lead: &serde_json::Value, stage: Stage) -> Value {
    let Some(object) = lead.as_object() else {
        return Value::from(BTreeMap::<String, Value>::new());
    };
    let fields: BTreeMap<String, Value> = object
        .iter()
        .filter(|(key, value)| {
            !value.is_null()
                && (stage == Stage::Post || key.as_str() == "fields" || PING_LEAD_FIELDS.contains(&key.as_str()))
        })
        .map(|(key, value)| (key.clone(), json_value(value, 0)))
        .collect();
    Value::from(fields)
}

fn json_value(value: &serde_json::Value, depth: usize) -> Value {
    use serde_json::Value as Json;
    if depth > MAX_LEAD_DEPTH {
        return Value::from(value.to_string());
    }
    match value {
        Json::Null => Value::from(()),
        Json::Bool(flag) => Value::from(*flag),
        Json::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(int), _) => Value::from(int),
            (None, Some(int)) => Value::from(int),
            _ => Value::from(number.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(text) => Value::from(text.as_str()),
        Json::Array(items) => Value::from(items.iter().map(|item| json_value(item, depth + 1)).collect::<Vec<_>>()),
        Json::Object(map) => Value::from(
            map.iter().map(|(key, item)| (key.clone(), json_value(item, depth + 1))).collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// A plausible lead for the store-time check render.
fn sample_context(stage: Stage) -> Value {
    let lead = serde_json::json!({
        "id": "lead_sample", "vertical": "solar", "first_name": "Ada", "last_name": "Lovelace",
        "email": "ada@example.com", "phone": "+4989123456", "zip": "80331", "country": "DE",
        "state": "BY", "city": "München", "street": "Marienplatz 1", "external_id": "ext-1",
        "fields": {},
        "consent": {"tcpa": true, "certificate_url": "https://cert.example/1",
                    "ip": "192.0.2.1", "captured_at": "2024-05-01T12:00:00Z"},
    });
    let context = RenderContext {
        lead,
        sale_id: Some("sale_sample".into()),
        ping_id: Some("ping_sample".into()),
        ping_token: Some("token_sample".into()),
        price: Some("12.50".into()),
        currency: Some("EUR".into()),
        campaign_id: "cmp_sample".into(),
        buyer_id: "buy_sample".into(),
        supplier_id: "sup_sample".into(),
        now: "2024-05-01T12:00:00Z".into(),
        test: true,
        endpoint_url: None,
    };
    context_value(&context, stage)
}

// ---------------------------------------------------------------------------
// Lexical scan for filters and tests

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageKind {
    Filter,
    Test,
}

/// A filter or test a template applies, with its first argument when that
/// is a string literal (`map("roof")`, `date("%Y")`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Usage {
    kind: UsageKind,
    name: String,
    literal_arg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(char),
    Number,
}

/// Problems with the filters and tests `source` uses.
fn usage_problems(source: &str, value_maps: &ValueMaps) -> Vec<String> {
    let usages = match scan_usages(source) {
        Ok(usages) => usages,
        Err(problem) => return vec![problem],
    };
    usages.iter().filter_map(|usage| usage_problem(usage, value_maps)).collect()
}

fn usage_problem(usage: &Usage, value_maps: &ValueMaps) -> Option<String> {
    let name = usage.name.as_str();
    if usage.kind == UsageKind::Test {
        return (!TESTS.contains(&name)).then(|| format!("unknown test `{name}`"));
    }
    if !OWN_FILTERS.contains(&name) && !BUILTIN_FILTERS.contains(&name) {
        return Some(format!("unknown filter `{name}`"));
    }
    match (name, usage.literal_arg.as_deref()) {
        ("map", None) => Some("map needs the value map's name as a quoted literal".to_owned()),
        ("map", Some(map)) if !value_maps.contains_key(map) => {
            Some(format!("map: no value map named {map:?} in value_maps"))
        }
        ("date", Some(format)) if StrftimeItems::new(format).parse().is_err() => {
            Some(format!("date: bad format {format:?}"))
        }
        _ => None,
    }
}

/// Every filter and test applied in `source`'s tags. Refuses method calls
/// (minijinja resolves them only at render, and we offer none) and
/// `autoescape` blocks (escaping follows the content type, not the author).
fn scan_usages(source: &str) -> Result<Vec<Usage>, String> {
    let mut usages = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        rest = match after.chars().next() {
            Some('#') => after.find("#}").map_or("", |end| &after[end + 2..]),
            Some('%') => {
                let tag = &after[1..];
                match raw_block_len(tag) {
                    Some(len) => &tag[len..],
                    None => {
                        let (tokens, tail) = lex_tag(tag, "%}");
                        inspect_tag(&tokens, true, &mut usages)?;
                        tail
                    }
                }
            }
            Some('{') => {
                let (tokens, tail) = lex_tag(&after[1..], "}}");
                inspect_tag(&tokens, false, &mut usages)?;
                tail
            }
            _ => after,
        };
    }
    Ok(usages)
}

fn inspect_tag(tokens: &[Token], is_block: bool, usages: &mut Vec<Usage>) -> Result<(), String> {
    if is_block {
        match tokens.first() {
            Some(Token::Ident(word)) if word == "autoescape" => {
                return Err("autoescape blocks are not allowed: escaping follows the content type".to_owned());
            }
            Some(Token::Ident(word)) if word == "filter" => {
                push_usage(tokens, 1, UsageKind::Filter, usages);
            }
            _ => {}
        }
    }
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('|') => push_usage(tokens, i + 1, UsageKind::Filter, usages),
            Token::Ident(word) if word == "is" && i > 0 && tokens[i - 1] != Token::Punct('.') => {
                let skip_not = matches!(tokens.get(i + 1), Some(Token::Ident(w)) if w == "not");
                push_usage(tokens, i + 1 + usize::from(skip_not), UsageKind::Test, usages);
            }
            Token::Punct('.') => {
                if let (Some(Token::Ident(name)), Some(Token::Punct('('))) = (tokens.get(i + 1), tokens.get(i + 2)) {
                    return Err(format!("method calls are not supported (`.{name}(…)`)"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records the filter or test named at `tokens[at]`, if any.
fn push_usage(tokens: &[Token], at: usize, kind: UsageKind, usages: &mut Vec<Usage>) {
    let Some(Token::Ident(name)) = tokens.get(at) else {
        return;
    };
    let literal_arg = match (tokens.get(at + 1), tokens.get(at + 2)) {
        (Some(Token::Punct('(')), Some(Token::Str(arg))) => Some(arg.clone()),
        _ => None,
    };
    usages.push(Usage { kind, name: name.clone(), literal_arg });
}

/// Tokens of one tag (after its opening delimiter) and the text after its
/// closing one. Like minijinja, a closer only counts outside brackets.
fn lex_tag<'a>(tag: &'a str, closer: &str) -> (Vec<Token>, &'a str) {
    let mut tokens = Vec::new();
    let mut depth = 0i32;
    let mut at = 0;
    while let Some(c) = tag[at..].chars().next() {
        let rest = &tag[at..];
        if depth <= 0 {
            if let Some(tail) = rest.strip_prefix(closer) {
                return (tokens, tail);
            }
            let trimmed = rest.strip_prefix('-').or_else(|| rest.strip_prefix('+'));
            if let Some(tail) = trimmed.and_then(|r| r.strip_prefix(closer)) {
                return (tokens, tail);
            }
        }
        let (token, len) = lex_token(rest, c);
        match token {
            Some(Token::Punct('(' | '[' | '{')) => depth += 1,
            Some(Token::Punct(')' | ']' | '}')) => depth -= 1,
            _ => {}
        }
        tokens.extend(token);
        at += len.max(c.len_utf8());
    }
    (tokens, "")
}

/// The token `rest` starts with (its first char is `c`) and its length.
fn lex_token(rest: &str, c: char) -> (Option<Token>, usize) {
    let word_len = |s: &str| s.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).unwrap_or(s.len());
    match c {
        c if c.is_whitespace() => (None, c.len_utf8()),
        '"' | '\'' => {
            let (text, len) = lex_string(rest, c);
            (Some(Token::Str(text)), len)
        }
        c if c.is_ascii_alphabetic() || c == '_' => {
            let len = word_len(rest);
            (Some(Token::Ident(rest[..len].to_owned())), len)
        }
        c if c.is_ascii_digit() => (Some(Token::Number), word_len(rest)),
        c => (Some(Token::Punct(c)), c.len_utf8()),
    }
}

/// A quoted string literal: its (unescaped) text and length with quotes.
fn lex_string(rest: &str, quote: char) -> (String, usize) {
    let mut text = String::new();
    let mut escaped = false;
    for (i, c) in rest.char_indices().skip(1) {
        if escaped {
            text.push(match c {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            });
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return (text, i + 1);
        } else {
            text.push(c);
        }
    }
    (text, rest.len())
}

/// If `tag` (text after `{%`) opens a raw block, the length through its
/// `{% endraw %}`: raw content is text, not tags.
fn raw_block_len(tag: &str) -> Option<usize> {
    let open_len = basic_tag_len(tag, "raw")?;
    let mut at = open_len;
    while let Some(found) = tag[at..].find("{%") {
        let inner = at + found + 2;
        if let Some(len) = basic_tag_len(&tag[inner..], "endraw") {
            return Some(inner + len);
        }
        at = inner;
    }
    Some(tag.len())
}

/// Length of `[-+]? ws word ws [-+]? %}` at the start of `text`.
fn basic_tag_len(text: &str, word: &str) -> Option<usize> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let body = body.trim_start().strip_prefix(word)?;
    let tail = body.trim_start();
    let tail = tail.strip_prefix(['-', '+']).unwrap_or(tail);
    let tail = tail.strip_prefix("%}")?;
    Some(text.len() - tail.len())
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
