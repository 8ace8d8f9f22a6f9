//! A campaign's `request` config (DESIGN §5.1): how we build the HTTP
//! request a buyer's own endpoint expects for pings and lead posts. Pure: no
//! I/O, no clock.
//!
//! - here: the config types as operators write them, and their secrets
//!   (listed, redacted for showing, kept across a PUT that sends `***`);
//! - `compile`: the store-time compile (every template and every format rule
//!   checked, all problems reported with their field paths);
//! - `render`: one request for one call, and the token flow's fetch.

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
}

mod compile;
mod render;

pub use compile::CompiledRequest;
pub use render::{IssuedToken, RenderedRequest, TokenError, TokenFetch};

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
