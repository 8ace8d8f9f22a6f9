//! A campaign's `request` config (DESIGN §5.1): how we build the HTTP
//! request a buyer's own endpoint expects for pings and lead posts. Owns
//! the config types, their store-time compile (every template and every
//! format rule checked, all problems reported with their field paths) and
//! rendering one request for one lead. Pure: no I/O, no clock.

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::utf8_percent_encode;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json_path::JsonPath;

use super::template::{context_value, escape_json_string, Escape, TemplateSet, URL_COMPONENT};
pub use super::template::{RenderContext, RenderError, Stage, ValueMaps};
use crate::domain::model::FieldError;

/// Most fields one request may list. The largest real buyer forms have
/// about a hundred; the bound keeps compile and render cost predictable.
pub const MAX_FIELDS: usize = 200;
/// Most custom headers: real integrations send a handful.
pub const MAX_HEADERS: usize = 50;
/// Longest field name. Names are API keys or XML paths, never prose.
pub const MAX_NAME_BYTES: usize = 256;
/// Deepest `.`/`/` nesting of a field name. Real APIs nest three or four
/// levels; the bound also caps the recursion that writes the body.
pub const MAX_NAME_DEPTH: usize = 16;
/// Longest `timeout_ms`: a buyer slower than a minute holds a delivery
/// worker hostage; pings run far shorter.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Root element of `xml` bodies when `root` is not given.
pub const DEFAULT_XML_ROOT: &str = "lead";
/// Shown instead of a secret by [`RequestSpec::redacted`].
pub const REDACTED: &str = "***";

/// Headers the HTTP transport owns; a campaign setting them would clash.
const TRANSPORT_HEADERS: &[&str] = &["content-length", "host", "transfer-encoding", "connection"];
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=UTF-8";
const JSON_CONTENT_TYPE: &str = "application/json";
const XML_CONTENT_TYPE: &str = "application/xml; charset=UTF-8";
const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

// ---------------------------------------------------------------------------
// Config types

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Post,
    Put,
    Get,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Get => "GET",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Our own protocol (§5): the caller builds the body; always signed.
    #[default]
    Native,
    Json,
    Form,
    Xml,
    /// Fields go in the URL's query string; no body.
    Query,
    /// `body` is one template rendering the whole body.
    Template,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Json => "json",
            Format::Form => "form",
            Format::Xml => "xml",
            Format::Query => "query",
            Format::Template => "template",
        }
    }
}

/// One named value sent to the buyer; `value` is a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    pub value: String,
}

/// Header name → value template, in the order the campaign lists them
/// (some buyers' gateways care; a map type would sort them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header name to value template")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Headers(pairs))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// How we authenticate to the buyer. Every string but names and paths is a
/// template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Header {
        name: String,
        value: String,
    },
    Query {
        name: String,
        value: String,
    },
    /// Fetched by a form POST of `fields` to `url`, sent as a bearer token,
    /// cached until it expires and fetched again once after a 401.
    Token {
        url: String,
        #[serde(default)]
        fields: Vec<FieldSpec>,
        /// Dotted path to the token in the JSON answer (`access_token`).
        token_path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_in_path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_s: Option<u64>,
    },
}

impl Auth {
    /// The secrets the contract names: every password, token and
    /// header/query value, and token-flow fields named like secrets.
    fn secret_slots_mut(&mut self) -> Vec<&mut String> {
        match self {
            Auth::Bearer { token } => vec![token],
            Auth::Basic { password, .. } => vec![password],
            Auth::Header { value, .. } | Auth::Query { value, .. } => vec![value],
            Auth::Token { fields, .. } => fields
                .iter_mut()
                .filter(|field| {
                    let name = field.name.to_ascii_lowercase();
                    name.contains("secret") || name.contains("password")
                })
                .map(|field| &mut field.value)
                .collect(),
        }
    }
}

/// A campaign's `request` config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default)]
    pub method: Method,
    /// Replaces `delivery.url` / `ping_url` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub format: Format,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldSpec>,
    /// Root element for `xml` (default `lead`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_maps: ValueMaps,
    #[serde(default = "sign_by_default")]
    pub sign: bool,
}

fn sign_by_default() -> bool {
    true
}

impl Default for RequestSpec {
    fn default() -> Self {
        Self {
            method: Method::default(),
            url: None,
            timeout_ms: None,
            format: Format::default(),
            fields: Vec::new(),
            root: None,
            body: None,
            content_type: None,
            headers: Headers::default(),
            auth: None,
            value_maps: ValueMaps::new(),
            sign: true,
        }
    }
}

impl RequestSpec {
    /// Every secret value, for scrubbing logs and stored attempts.
    pub fn secrets(&self) -> Vec<String> {
        let mut copy = self.auth.clone();
        copy.as_mut().map(|auth| auth.secret_slots_mut().into_iter().map(|s| s.clone()).collect()).unwrap_or_default()
    }

    /// Puts back, from `stored`, every secret this config sends as [`REDACTED`] (an
    /// operator who GETs a campaign and PUTs it back keeps its secrets). A slot with no
    /// stored counterpart (another auth type) stays as sent, and validation refuses it.
    pub fn keep_secrets_of(&mut self, stored: &RequestSpec) {
        let (Some(auth), Some(stored)) = (self.auth.as_mut(), stored.auth.as_ref()) else { return };
        let mut stored = stored.clone();
        if std::mem::discriminant(auth) != std::mem::discriminant(&stored) {
            return;
        }
        for (slot, kept) in auth.secret_slots_mut().into_iter().zip(stored.secret_slots_mut()) {
            if slot == REDACTED {
                slot.clone_from(kept);
            }
        }
    }

    /// This config with every secret replaced by [`REDACTED`], for showing.
    pub fn redacted(&self) -> RequestSpec {
        let mut copy = self.clone();
        if let Some(auth) = copy.auth.as_mut() {
            for slot in auth.secret_slots_mut() {
                *slot = REDACTED.to_owned();
            }
        }
        copy
    }

    /// Checks and compiles every template and format rule; the error lists
    /// every problem, each with its path under `path_prefix`
    /// (`delivery.request.fields[2].value`).
    pub fn compile(&self, path_prefix: &str, stage: Stage) -> Result<CompiledRequest, Vec<FieldError>> {
        let mut compiler = Compiler {
            prefix: path_prefix.to_owned(),
            templates: TemplateSet::new(stage, self.value_maps.clone()),
            errors: Vec::new(),
        };
        self.check_shape(&mut compiler);
        let fields = compiler.fields("fields", &self.fields);
        let body = self.body_layout(&mut compiler);
        let url = self.url.as_deref().map(|url| compiler.url("url", url));
        let headers = self.compile_headers(&mut compiler);
        let auth = self.auth.as_ref().map(|auth| compile_auth(auth, &mut compiler));
        if !compiler.errors.is_empty() {
            return Err(compiler.errors);
        }
        Ok(CompiledRequest {
            method: self.method,
            format: self.format,
            timeout_ms: self.timeout_ms,
            sign: self.sign || self.format == Format::Native,
            url_path: compiler.path("url"),
            templates: compiler.templates,
            url,
            fields,
            body,
            headers,
            auth,
        })
    }

    /// Bounds, and rules about which settings go together.
    fn check_shape(&self, c: &mut Compiler) {
        if self.fields.len() > MAX_FIELDS {
            c.error("fields", format!("at most {MAX_FIELDS} fields"));
        }
        if self.headers.0.len() > MAX_HEADERS {
            c.error("headers", format!("at most {MAX_HEADERS} headers"));
        }
        if matches!(self.timeout_ms, Some(ms) if ms == 0 || ms > MAX_TIMEOUT_MS) {
            c.error("timeout_ms", format!("must be between 1 and {MAX_TIMEOUT_MS}"));
        }
        self.check_format(c);
    }

    /// Settings that only make sense with some formats.
    fn check_format(&self, c: &mut Compiler) {
        let format = self.format.as_str();
        if self.method == Method::Get && self.format != Format::Query {
            c.error("method", format!("GET sends no body; use format query, not {format}"));
        }
        if self.format == Format::Native {
            if !self.fields.is_empty() {
                c.error("fields", "format native sends the native lead; fields need json, form, xml or query");
            }
            if !self.sign {
                c.error("sign", "native-protocol requests are always signed");
            }
        }
        if self.format == Format::Template {
            if self.body.is_none() {
                c.error("body", "format template needs a body");
            }
            if self.content_type.is_none() {
                c.error("content_type", "format template needs a content_type (it decides escaping)");
            }
        } else {
            if self.body.is_some() {
                c.error("body", format!("body is for format template, not {format}"));
            }
            if self.content_type.is_some() {
                c.error("content_type", format!("content_type is for format template, not {format}"));
            }
        }
        if let Some(root) = &self.root {
            if self.format != Format::Xml {
                c.error("root", format!("root is for format xml, not {format}"));
            } else if !is_xml_name(root) {
                c.error("root", format!("{root:?} is not an XML element name"));
            }
        }
    }

    fn body_layout(&self, c: &mut Compiler) -> BodyLayout {
        match self.format {
            Format::Native | Format::Query => BodyLayout::Empty,
            Format::Form => BodyLayout::Form,
            Format::Json => BodyLayout::Json(self.json_members(c)),
            Format::Xml => BodyLayout::Xml(self.xml_root(c)),
            Format::Template => {
                let source = self.body.as_deref().unwrap_or("");
                let escape = Escape::for_content_type(self.content_type.as_deref().unwrap_or(""));
                BodyLayout::Template {
                    path: c.template("body", source, escape),
                    content_type: self.content_type.clone().unwrap_or_default(),
                }
            }
        }
    }

    fn json_members(&self, c: &mut Compiler) -> Vec<JsonMember> {
        let mut members = Vec::new();
        for (index, field) in self.fields.iter().enumerate() {
            if field.name.is_empty() {
                continue; // reported by Compiler::fields
            }
            let at = format!("fields[{index}].name");
            let segments: Vec<&str> = field.name.split('.').collect();
            let result = check_name(&field.name, &segments, |s| !s.is_empty())
                .and_then(|()| insert_json(&mut members, &segments, index));
            if let Err(message) = result {
                c.error(&at, message);
            }
        }
        members
    }

    fn xml_root(&self, c: &mut Compiler) -> XmlElement {
        let mut root =
            XmlElement { name: self.root.clone().unwrap_or_else(|| DEFAULT_XML_ROOT.to_owned()), children: Vec::new() };
        for (index, field) in self.fields.iter().enumerate() {
            if field.name.is_empty() {
                continue; // reported by Compiler::fields
            }
            let at = format!("fields[{index}].name");
            let segments: Vec<&str> = field.name.split('/').collect();
            let result = check_name(&field.name, &segments, is_xml_name)
                .and_then(|()| insert_xml(&mut root.children, &segments, index));
            if let Err(message) = result {
                c.error(&at, message);
            }
        }
        root
    }

    fn compile_headers(&self, c: &mut Compiler) -> Vec<(String, String)> {
        let auth_header = match &self.auth {
            Some(Auth::Bearer { .. } | Auth::Basic { .. } | Auth::Token { .. }) => Some("authorization".to_owned()),
            Some(Auth::Header { name, .. }) => Some(name.to_ascii_lowercase()),
            _ => None,
        };
        let mut seen: Vec<String> = Vec::new();
        let mut headers = Vec::new();
        for (name, value) in &self.headers.0 {
            let at = format!("headers.{name}");
            let lower = name.to_ascii_lowercase();
            if let Some(problem) = header_name_problem(name) {
                c.error(&at, problem);
            } else if TRANSPORT_HEADERS.contains(&lower.as_str()) {
                c.error(&at, format!("{name} is set by the HTTP transport"));
            } else if seen.contains(&lower) {
                c.error(&at, format!("{name} is listed twice"));
            } else if auth_header.as_deref() == Some(lower.as_str()) {
                c.error(&at, format!("{name} is set by auth"));
            } else if lower == "content-type" && self.format == Format::Template {
                c.error(&at, "set content_type instead: it decides the body's escaping");
            }
            seen.push(lower);
            headers.push((name.clone(), c.template(&at, value, Escape::None)));
        }
        headers
    }
}

fn compile_auth(auth: &Auth, c: &mut Compiler) -> CompiledAuth {
    match auth {
        Auth::Bearer { token } => CompiledAuth::Bearer(c.template("auth.token", token, Escape::None)),
        Auth::Basic { username, password } => CompiledAuth::Basic {
            username: c.template("auth.username", username, Escape::None),
            password: c.template("auth.password", password, Escape::None),
        },
        Auth::Header { name, value } => {
            if let Some(problem) = header_name_problem(name) {
                c.error("auth.name", problem);
            }
            CompiledAuth::Header { name: name.clone(), value: c.template("auth.value", value, Escape::None) }
        }
        Auth::Query { name, value } => {
            if name.is_empty() {
                c.error("auth.name", "must not be empty");
            }
            CompiledAuth::Query { name: name.clone(), value: c.template("auth.value", value, Escape::None) }
        }
        Auth::Token { url, fields, token_path, expires_in_path, ttl_s } => {
            if token_path.is_empty() {
                c.error("auth.token_path", "must not be empty");
            }
            for (field, path) in
                [("auth.token_path", Some(token_path)), ("auth.expires_in_path", expires_in_path.as_ref())]
            {
                if let Some(Err(error)) = path.filter(|p| p.starts_with('$')).map(|p| JsonPath::parse(p)) {
                    c.error(field, format!("not a JSONPath (RFC 9535): {error}"));
                }
            }
            CompiledAuth::Token {
                url: c.url("auth.url", url),
                fields: c.fields("auth.fields", fields),
                token_path: token_path.clone(),
                expires_in_path: expires_in_path.clone(),
                ttl_s: *ttl_s,
            }
        }
    }
}

/// Collects templates and errors while compiling one spec.
struct Compiler {
    prefix: String,
    templates: TemplateSet,
    errors: Vec<FieldError>,
}

impl Compiler {
    fn path(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}.{rest}", self.prefix)
        }
    }

    fn error(&mut self, rest: &str, message: impl Into<String>) {
        let path = self.path(rest);
        self.errors.push(FieldError::new(path, message));
    }

    /// Compiles one template; returns its path, which addresses it later.
    fn template(&mut self, rest: &str, source: &str, escape: Escape) -> String {
        let path = self.path(rest);
        if let Err(errors) = self.templates.add(&path, source, escape) {
            self.errors.extend(errors);
        }
        path
    }

    /// A URL template: the scheme must be literal, so lead data can never
    /// choose it, and placeholders are percent-encoded.
    fn url(&mut self, rest: &str, source: &str) -> String {
        if !has_http_scheme(source) {
            self.error(rest, "must start with http:// or https://");
        }
        self.template(rest, source, Escape::UrlComponent)
    }

    fn fields(&mut self, rest: &str, fields: &[FieldSpec]) -> Vec<CompiledField> {
        let mut compiled = Vec::with_capacity(fields.len());
        for (index, field) in fields.iter().enumerate() {
            if field.name.is_empty() {
                self.error(&format!("{rest}[{index}].name"), "must not be empty");
            }
            compiled.push(CompiledField {
                name: field.name.clone(),
                value: self.template(&format!("{rest}[{index}].value"), &field.value, Escape::None),
            });
        }
        compiled
    }
}

fn has_http_scheme(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Length and depth bounds, then each segment against `valid`.
fn check_name(name: &str, segments: &[&str], valid: impl Fn(&str) -> bool) -> Result<(), String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("at most {MAX_NAME_BYTES} bytes"));
    }
    if segments.len() > MAX_NAME_DEPTH {
        return Err(format!("at most {MAX_NAME_DEPTH} levels of nesting"));
    }
    match segments.iter().find(|segment| !valid(segment)) {
        Some(&"") => Err(format!("{name:?} has an empty part")),
        Some(segment) => Err(format!("{segment:?} is not a valid name here")),
        None => Ok(()),
    }
}

/// RFC 9110 token characters.
fn header_name_problem(name: &str) -> Option<String> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    (!valid).then(|| format!("{name:?} is not a valid header name"))
}

/// XML 1.0 (5th ed.) `Name`, without `:`: prefixes would need namespace
/// declarations a field list cannot make (use format template for SOAP).
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_xml_name_start) && chars.all(is_xml_name_char)
}

fn is_xml_name_start(c: char) -> bool {
    c.is_ascii_alphabetic()
        || c == '_'
        || matches!(u32::from(c),
            0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF | 0x370..=0x37D | 0x37F..=0x1FFF
            | 0x200C..=0x200D | 0x2070..=0x218F | 0x2C00..=0x2FEF | 0x3001..=0xD7FF
            | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD | 0x10000..=0xEFFFF)
}

fn is_xml_name_char(c: char) -> bool {
    is_xml_name_start(c)
        || c.is_ascii_digit()
        || matches!(c, '-' | '.' | '\u{B7}')
        || matches!(u32::from(c), 0x300..=0x36F | 0x203F..=0x2040)
}

// ---------------------------------------------------------------------------
// Body layouts

#[derive(Debug, Clone)]
struct CompiledField {
    name: String,
    /// Path of the value template.
    value: String,
}

#[derive(Debug, Clone)]
enum BodyLayout {
    Empty,
    Json(Vec<JsonMember>),
    Form,
    Xml(XmlElement),
    Template { path: String, content_type: String },
}

/// A member of a JSON object; leaves point at a field by index.
#[derive(Debug, Clone)]
struct JsonMember {
    key: String,
    node: JsonNode,
}

#[derive(Debug, Clone)]
enum JsonNode {
    Value(usize),
    Object(Vec<JsonMember>),
}

/// Places field `index` at the dotted path `segments`: shared prefixes
/// share one object; a name may not be both a value and an object.
fn insert_json(members: &mut Vec<JsonMember>, segments: &[&str], index: usize) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        return Err("empty name".to_owned());
    };
    let position = members.iter().position(|member| member.key == *first);
    let position = match (position, rest.is_empty()) {
        (None, true) => {
            members.push(JsonMember { key: (*first).to_owned(), node: JsonNode::Value(index) });
            return Ok(());
        }
        (None, false) => {
            members.push(JsonMember { key: (*first).to_owned(), node: JsonNode::Object(Vec::new()) });
            members.len() - 1
        }
        (Some(position), _) => position,
    };
    match (&mut members[position].node, rest.is_empty()) {
        (JsonNode::Object(children), false) => insert_json(children, rest, index),
        (JsonNode::Value(_), false) => {
            Err(format!("`{first}` is already a value (an earlier field) and cannot also hold fields"))
        }
        (JsonNode::Object(_), true) => Err(format!("`{first}` already holds nested fields and cannot also be a value")),
        (JsonNode::Value(_), true) => Err(format!("`{first}` is listed twice")),
    }
}

#[derive(Debug, Clone)]
struct XmlElement {
    name: String,
    children: Vec<XmlNode>,
}

#[derive(Debug, Clone)]
enum XmlNode {
    /// A text element holding field `index`; repeats become siblings.
    Leaf {
        name: String,
        index: usize,
    },
    Element(XmlElement),
}

/// Places field `index` at the `/` path `segments`: elements sharing a
/// prefix are one element, in order of first appearance.
fn insert_xml(children: &mut Vec<XmlNode>, segments: &[&str], index: usize) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        return Err("empty name".to_owned());
    };
    let is_leaf = |node: &XmlNode| matches!(node, XmlNode::Leaf { name, .. } if name == first);
    let is_element = |node: &XmlNode| matches!(node, XmlNode::Element(e) if e.name == *first);
    if rest.is_empty() {
        if children.iter().any(is_element) {
            return Err(format!("<{first}> already holds nested fields and cannot also hold text"));
        }
        children.push(XmlNode::Leaf { name: (*first).to_owned(), index });
        return Ok(());
    }
    if children.iter().any(is_leaf) {
        return Err(format!("<{first}> already holds text and cannot also hold fields"));
    }
    let position = match children.iter().position(is_element) {
        Some(position) => position,
        None => {
            children.push(XmlNode::Element(XmlElement { name: (*first).to_owned(), children: Vec::new() }));
            children.len() - 1
        }
    };
    match &mut children[position] {
        XmlNode::Element(element) => insert_xml(&mut element.children, rest, index),
        XmlNode::Leaf { .. } => Err(format!("<{first}> already holds text")),
    }
}

// ---------------------------------------------------------------------------
// Compiled request and rendering

#[derive(Debug, Clone)]
enum CompiledAuth {
    Bearer(String),
    Basic {
        username: String,
        password: String,
    },
    Header {
        name: String,
        value: String,
    },
    Query {
        name: String,
        value: String,
    },
    Token {
        url: String,
        fields: Vec<CompiledField>,
        token_path: String,
        expires_in_path: Option<String>,
        ttl_s: Option<u64>,
    },
}

/// A `request` config checked and compiled when the campaign is stored;
/// renders one request per lead.
#[derive(Debug, Clone)]
pub struct CompiledRequest {
    method: Method,
    format: Format,
    timeout_ms: Option<u64>,
    sign: bool,
    templates: TemplateSet,
    /// Path errors about the URL are reported under.
    url_path: String,
    url: Option<String>,
    fields: Vec<CompiledField>,
    body: BodyLayout,
    headers: Vec<(String, String)>,
    auth: Option<CompiledAuth>,
}

/// One request ready to send (but for a token auth's bearer header, which
/// the caller adds after fetching or reusing the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRequest {
    pub method: Method,
    /// Query fields and query auth applied, percent-encoded.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Empty for `native` (the caller writes the native body) and `query`.
    pub body: Vec<u8>,
    pub format: Format,
    pub sign: bool,
    pub timeout_ms: Option<u64>,
    pub token_fetch: Option<TokenFetch>,
}

/// What the caller needs to get a token for `auth.type = token`: POST
/// `form_body` to `url` as a form, then [`TokenFetch::read_token`]. Serialized
/// with an async delivery rendered at sale time (the outbox journals it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFetch {
    pub url: String,
    pub content_type: String,
    pub form_body: String,
    pub token_path: String,
    pub expires_in_path: Option<String>,
    pub ttl_s: Option<u64>,
}

/// A token read from the token endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    /// From `expires_in_path`, else `ttl_s`; `None`: keep until a 401.
    pub expires_in_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token endpoint did not answer JSON")]
    NotJson,
    #[error("no string token at `{0}` in the token endpoint's answer")]
    MissingToken(String),
    #[error("the token holds characters a header cannot carry")]
    BadToken,
}

impl TokenFetch {
    /// Reads the token (and its lifetime) from the endpoint's JSON answer.
    pub fn read_token(&self, response_body: &[u8]) -> Result<IssuedToken, TokenError> {
        let answer: serde_json::Value = serde_json::from_slice(response_body).map_err(|_| TokenError::NotJson)?;
        let token = json_at(&answer, &self.token_path)
            .and_then(serde_json::Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| TokenError::MissingToken(self.token_path.clone()))?;
        if token.chars().any(char::is_control) {
            return Err(TokenError::BadToken);
        }
        let expires_in_s = self
            .expires_in_path
            .as_deref()
            .and_then(|path| json_at(&answer, path))
            .and_then(|value| value.as_u64().or_else(|| value.as_str()?.trim().parse().ok()))
            .or(self.ttl_s);
        Ok(IssuedToken { token: token.to_owned(), expires_in_s })
    }
}

/// The value at `path`: a JSONPath (`$.data.access_token`, RFC 9535) naming exactly one
/// value, or the shorthand of a dotted path (`data.token`, `tokens.0`).
fn json_at<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if path.starts_with('$') {
        return JsonPath::parse(path).ok()?.query(value).exactly_one().ok();
    }
    path.split('.').try_fold(value, |value, key| match value {
        serde_json::Value::Object(map) => map.get(key),
        serde_json::Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    })
}

impl CompiledRequest {
    pub fn method(&self) -> Method {
        self.method
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn timeout_ms(&self) -> Option<u64> {
        self.timeout_ms
    }

    pub fn sign(&self) -> bool {
        self.sign
    }

    pub fn stage(&self) -> Stage {
        self.templates.stage()
    }

    /// Renders the request for one lead. Never panics on lead data; a
    /// template that fails names its field path.
    pub fn render(&self, context: &RenderContext) -> Result<RenderedRequest, RenderError> {
        let vars = context_value(context, self.templates.stage());
        let values = self.render_all(&self.fields, &vars)?;
        let mut query = Vec::new();
        if self.format == Format::Query {
            query.extend(self.fields.iter().map(|f| f.name.clone()).zip(values.iter().cloned()));
        }
        let (body, content_type) = self.render_body(&values, &vars)?;
        let mut headers = Vec::new();
        let user_sets_type = self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if let Some(content_type) = content_type.filter(|_| !user_sets_type) {
            headers.push(("Content-Type".to_owned(), content_type));
        }
        for (name, path) in &self.headers {
            headers.push((name.clone(), header_value(&self.templates.render(path, &vars)?)));
        }
        let token_fetch = self.apply_auth(&vars, &mut headers, &mut query)?;
        let base = self.render_url(&vars, context)?;
        Ok(RenderedRequest {
            method: self.method,
            url: append_query(&base, &query),
            headers,
            body,
            format: self.format,
            sign: self.sign,
            timeout_ms: self.timeout_ms,
            token_fetch,
        })
    }

    fn render_all(&self, fields: &[CompiledField], vars: &minijinja::Value) -> Result<Vec<String>, RenderError> {
        fields.iter().map(|field| self.templates.render(&field.value, vars)).collect()
    }

    /// The body and the content type it needs.
    fn render_body(
        &self,
        values: &[String],
        vars: &minijinja::Value,
    ) -> Result<(Vec<u8>, Option<String>), RenderError> {
        Ok(match &self.body {
            BodyLayout::Empty => (Vec::new(), None),
            BodyLayout::Form => {
                let pairs = self.fields.iter().map(|f| f.name.as_str()).zip(values.iter());
                let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
                (body.into_bytes(), Some(FORM_CONTENT_TYPE.to_owned()))
            }
            BodyLayout::Json(members) => {
                let mut body = String::new();
                write_json_object(members, values, &mut body);
                (body.into_bytes(), Some(JSON_CONTENT_TYPE.to_owned()))
            }
            BodyLayout::Xml(root) => {
                let mut body = XML_DECLARATION.to_owned();
                write_xml_element(root, values, &mut body);
                (body.into_bytes(), Some(XML_CONTENT_TYPE.to_owned()))
            }
            BodyLayout::Template { path, content_type } => {
                let body = self.templates.render(path, vars)?;
                (body.into_bytes(), Some(content_type.clone()))
            }
        })
    }

    fn render_url(&self, vars: &minijinja::Value, context: &RenderContext) -> Result<String, RenderError> {
        let url = match &self.url {
            Some(path) => self.templates.render(path, vars)?,
            None => context.endpoint_url.clone().ok_or_else(|| {
                RenderError::new(&self.url_path, "no url: neither request.url nor the campaign's url is set")
            })?,
        };
        if !has_http_scheme(&url) || url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(RenderError::new(&self.url_path, format!("{url:?} is not an http(s) URL")));
        }
        Ok(url)
    }

    /// Adds auth headers or query pairs; for token auth, what to fetch.
    fn apply_auth(
        &self,
        vars: &minijinja::Value,
        headers: &mut Vec<(String, String)>,
        query: &mut Vec<(String, String)>,
    ) -> Result<Option<TokenFetch>, RenderError> {
        let render = |path: &String| self.templates.render(path, vars);
        match &self.auth {
            None => {}
            Some(CompiledAuth::Bearer(token)) => {
                headers.push(("Authorization".to_owned(), header_value(&format!("Bearer {}", render(token)?))));
            }
            Some(CompiledAuth::Basic { username, password }) => {
                let user = render(username)?;
                if user.contains(':') {
                    return Err(RenderError::new(username, "a basic-auth username cannot contain ':'"));
                }
                let credentials = base64(format!("{user}:{}", render(password)?).as_bytes());
                headers.push(("Authorization".to_owned(), format!("Basic {credentials}")));
            }
            Some(CompiledAuth::Header { name, value }) => {
                headers.push((name.clone(), header_value(&render(value)?)));
            }
            Some(CompiledAuth::Query { name, value }) => query.push((name.clone(), render(value)?)),
            Some(CompiledAuth::Token { url, fields, token_path, expires_in_path, ttl_s }) => {
                let values = self.render_all(fields, vars)?;
                let pairs = fields.iter().map(|f| f.name.as_str()).zip(values.iter());
                return Ok(Some(TokenFetch {
                    url: render(url)?,
                    content_type: FORM_CONTENT_TYPE.to_owned(),
                    form_body: form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish(),
                    token_path: token_path.clone(),
                    expires_in_path: expires_in_path.clone(),
                    ttl_s: *ttl_s,
                }));
            }
        }
        Ok(None)
    }
}

/// A header value cannot carry line breaks (they would inject headers) or
/// other controls; they become spaces.
fn header_value(value: &str) -> String {
    value.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }).collect::<String>().trim().to_owned()
}

fn write_json_object(members: &[JsonMember], values: &[String], out: &mut String) {
    out.push('{');
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&escape_json_string(&member.key));
        out.push_str("\":");
        match &member.node {
            JsonNode::Value(index) => {
                out.push('"');
                out.push_str(&escape_json_string(values.get(*index).map_or("", String::as_str)));
                out.push('"');
            }
            JsonNode::Object(children) => write_json_object(children, values, out),
        }
    }
    out.push('}');
}

fn write_xml_element(element: &XmlElement, values: &[String], out: &mut String) {
    out.push('<');
    out.push_str(&element.name);
    out.push('>');
    for child in &element.children {
        match child {
            XmlNode::Leaf { name, index } => {
                let text = values.get(*index).map_or("", String::as_str);
                out.push_str(&format!("<{name}>{}</{name}>", Escape::XmlText.apply(text)));
            }
            XmlNode::Element(inner) => write_xml_element(inner, values, out),
        }
    }
    out.push_str("</");
    out.push_str(&element.name);
    out.push('>');
}

/// `url` with `pairs` appended to its query (before any fragment), names
/// and values percent-encoded with space as `%20`.
fn append_query(url: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return url.to_owned();
    }
    let (base, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let separator = match base.find('?') {
        None => "?",
        Some(_) if base.ends_with('?') || base.ends_with('&') => "",
        Some(_) => "&",
    };
    let query: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            format!("{}={}", utf8_percent_encode(name, URL_COMPONENT), utf8_percent_encode(value, URL_COMPONENT))
        })
        .collect();
    format!("{base}{separator}{}{fragment}", query.join("&"))
}

/// Standard base64 with padding, for basic auth (one use does not earn a
/// dependency).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let triple = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (triple >> (18 - 6 * i)) & 0x3F;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
