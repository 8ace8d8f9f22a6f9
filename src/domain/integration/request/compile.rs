//! Store-time compile of a request config: every template, name and format rule checked,
//! every problem reported with its field path, and the layout of the body (JSON and XML
//! trees of the fields) worked out once, so rendering only fills in values.

use super::*;

impl RequestSpec {
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

pub(super) fn compile_auth(auth: &Auth, c: &mut Compiler) -> CompiledAuth {
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
pub(super) struct Compiler {
    pub(super) prefix: String,
    pub(super) templates: TemplateSet,
    pub(super) errors: Vec<FieldError>,
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

pub(super) fn has_http_scheme(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Length and depth bounds, then each segment against `valid`.
pub(super) fn check_name(name: &str, segments: &[&str], valid: impl Fn(&str) -> bool) -> Result<(), String> {
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
pub(super) fn header_name_problem(name: &str) -> Option<String> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    (!valid).then(|| format!("{name:?} is not a valid header name"))
}

/// XML 1.0 (5th ed.) `Name`, without `:`: prefixes would need namespace
/// declarations a field list cannot make (use format template for SOAP).
pub(super) fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_xml_name_start) && chars.all(is_xml_name_char)
}

pub(super) fn is_xml_name_start(c: char) -> bool {
    c.is_ascii_alphabetic()
        || c == '_'
        || matches!(u32::from(c),
            0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF | 0x370..=0x37D | 0x37F..=0x1FFF
            | 0x200C..=0x200D | 0x2070..=0x218F | 0x2C00..=0x2FEF | 0x3001..=0xD7FF
            | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD | 0x10000..=0xEFFFF)
}

pub(super) fn is_xml_name_char(c: char) -> bool {
    is_xml_name_start(c)
        || c.is_ascii_digit()
        || matches!(c, '-' | '.' | '\u{B7}')
        || matches!(u32::from(c), 0x300..=0x36F | 0x203F..=0x2040)
}

// ---------------------------------------------------------------------------
// Body layouts

#[derive(Debug, Clone)]
pub(super) struct CompiledField {
    pub(super) name: String,
    /// Path of the value template.
    pub(super) value: String,
}

#[derive(Debug, Clone)]
pub(super) enum BodyLayout {
    Empty,
    Json(Vec<JsonMember>),
    Form,
    Xml(XmlElement),
    Template { path: String, content_type: String },
}

/// A member of a JSON object; leaves point at a field by index.
#[derive(Debug, Clone)]
pub(super) struct JsonMember {
    pub(super) key: String,
    pub(super) node: JsonNode,
}

#[derive(Debug, Clone)]
pub(super) enum JsonNode {
    Value(usize),
    Object(Vec<JsonMember>),
}

/// Places field `index` at the dotted path `segments`: shared prefixes
/// share one object; a name may not be both a value and an object.
pub(super) fn insert_json(members: &mut Vec<JsonMember>, segments: &[&str], index: usize) -> Result<(), String> {
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
pub(super) struct XmlElement {
    pub(super) name: String,
    pub(super) children: Vec<XmlNode>,
}

#[derive(Debug, Clone)]
pub(super) enum XmlNode {
    /// A text element holding field `index`; repeats become siblings.
    Leaf {
        name: String,
        index: usize,
    },
    Element(XmlElement),
}

/// Places field `index` at the `/` path `segments`: elements sharing a
/// prefix are one element, in order of first appearance.
pub(super) fn insert_xml(children: &mut Vec<XmlNode>, segments: &[&str], index: usize) -> Result<(), String> {
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
pub(super) enum CompiledAuth {
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
    pub(super) method: Method,
    pub(super) format: Format,
    pub(super) timeout_ms: Option<u64>,
    pub(super) sign: bool,
    pub(super) templates: TemplateSet,
    /// Path errors about the URL are reported under.
    pub(super) url_path: String,
    pub(super) url: Option<String>,
    pub(super) fields: Vec<CompiledField>,
    pub(super) body: BodyLayout,
    pub(super) headers: Vec<(String, String)>,
    pub(super) auth: Option<CompiledAuth>,
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
}
