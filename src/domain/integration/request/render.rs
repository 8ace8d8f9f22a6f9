//! Rendering one compiled request for one call: the fields' values written into the
//! body, URL and headers in the format's escaping, auth applied, and the token flow's fetch
//! made ready for the caller.

use super::compile::{
    has_http_scheme, BodyLayout, CompiledAuth, CompiledField, JsonMember, JsonNode, XmlElement, XmlNode,
};
use super::*;

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
pub(super) fn append_query(url: &str, pairs: &[(String, String)]) -> String {
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
pub(super) fn base64(bytes: &[u8]) -> String {
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
