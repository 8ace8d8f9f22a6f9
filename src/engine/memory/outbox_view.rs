//! What an operator is shown of an outbox message rendered in its buyer's own format
//! (DESIGN §5.1) by the admin API's deliveries: how it is sent, never what it carries.
//!
//! The body is left out, as for native messages (it holds the lead). The URL keeps its
//! query's names but not their values (a `query` format puts the lead there, a `query`
//! auth its key) nor any user info. A header's value is shown only when it is literal in
//! the campaign's config (what the campaign's own view shows), never for a header that
//! authenticates; the token endpoint's form shows every field's name and, as `***`, the
//! values of those the contract counts as secrets.

use serde::Serialize;

use crate::domain::integration::request::{Headers, Method, TokenFetch, REDACTED};
use crate::engine::ports::outbox::BuyerRequest;

/// Headers never shown, whatever the campaign's config says of them.
const ALWAYS_UNSHOWN: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Words that make a header name look like a credential (`X-Api-Key`, `X-Auth-Token`):
/// shown as `***` even when the campaign wrote it as a literal header instead of an auth.
const SECRET_WORDS: &[&str] = &["auth", "key", "password", "secret", "token"];

/// How a rendered message is sent, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestShown {
    pub campaign_id: String,
    pub method: Method,
    pub headers: Headers,
    pub signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenShown>,
}

/// The token endpoint a message's bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenShown {
    pub url: String,
    /// The form posted to it, field by field.
    pub fields: Headers,
}

impl RequestShown {
    pub fn of(request: &BuyerRequest) -> RequestShown {
        let headers = request
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if header_unshown(name, &request.unshown_headers) { REDACTED } else { value };
                (name.clone(), shown.to_string())
            })
            .collect();
        RequestShown {
            campaign_id: request.campaign_id.clone(),
            method: request.method,
            headers: Headers(headers),
            signed: request.sign,
            token: request.token.as_ref().map(TokenShown::of),
        }
    }
}

impl TokenShown {
    fn of(fetch: &TokenFetch) -> TokenShown {
        let fields = form_urlencoded::parse(fetch.form_body.as_bytes())
            .map(|(name, value)| {
                let lowered = name.to_ascii_lowercase();
                let secret = lowered.contains("secret") || lowered.contains("password");
                let shown = if secret { REDACTED.to_string() } else { value.into_owned() };
                (name.into_owned(), shown)
            })
            .collect();
        TokenShown { url: url_shown(&fetch.url), fields: Headers(fields) }
    }
}

fn header_unshown(name: &str, unshown: &[String]) -> bool {
    let lowered = name.to_ascii_lowercase();
    unshown.iter().any(|hidden| hidden.eq_ignore_ascii_case(name))
        || ALWAYS_UNSHOWN.contains(&lowered.as_str())
        || SECRET_WORDS.iter().any(|word| lowered.contains(word))
}

/// `url` without its query's values, user info and fragment (`http://h/p?a=***&b=***`).
pub fn url_shown(url: &str) -> String {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let (base, query) = match without_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (without_fragment, None),
    };
    let base = without_user_info(base);
    let Some(query) = query else { return base };
    let pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            // A bare item may be a value itself.
            None => REDACTED.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// `http://user:pass@host/p` → `http://***@host/p`.
fn without_user_info(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else { return base.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{REDACTED}@{host}{path}"),
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> BuyerRequest {
        BuyerRequest {
            campaign_id: "c1".into(),
            method: Method::Post,
            headers: vec![
                ("Content-Type".into(), "application/xml".into()),
                ("Authorization".into(), "Basic cGFydG5lcjpzM2NyM3Q=".into()),
                ("X-Partner".into(), "p-77".into()),
                ("X-Lead-Email".into(), "anna@example.com".into()),
                ("X-Api-Key".into(), "literal-key".into()),
                ("X-Sig".into(), "from-auth".into()),
            ],
            sign: true,
            token: Some(TokenFetch {
                url: "http://auth.example/token?tenant=t-1".into(),
                content_type: "application/x-www-form-urlencoded".into(),
                form_body: "grant_type=client_credentials&client_id=app&client_secret=s3cr3t".into(),
                token_path: "access_token".into(),
                expires_in_path: None,
                ttl_s: None,
            }),
            unshown_headers: vec!["x-lead-email".into(), "X-SIG".into()],
        }
    }

    #[test]
    fn secrets_and_lead_data_are_shown_as_stars_literal_headers_as_they_are() {
        let shown = serde_json::to_value(RequestShown::of(&request())).unwrap();
        let headers = &shown["headers"];
        assert_eq!(headers["Content-Type"], "application/xml");
        assert_eq!(headers["X-Partner"], "p-77", "a literal header, as the campaign's view shows it");
        for hidden in ["Authorization", "X-Lead-Email", "X-Api-Key", "X-Sig"] {
            assert_eq!(headers[hidden], REDACTED, "{hidden}");
        }
        assert_eq!(shown["token"]["fields"]["client_id"], "app");
        assert_eq!(shown["token"]["fields"]["client_secret"], REDACTED);
        assert_eq!(shown["token"]["url"], "http://auth.example/token?tenant=***");
        let text = shown.to_string();
        for secret in ["s3cr3t", "cGFydG5lcjpzM2NyM3Q", "anna@example.com", "literal-key", "from-auth"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn a_url_keeps_its_query_names_but_not_their_values() {
        assert_eq!(url_shown("http://h:81/api/lead"), "http://h:81/api/lead");
        assert_eq!(
            url_shown("http://h/api/lead?email=anna%40example.com&api_key=k#frag"),
            "http://h/api/lead?email=***&api_key=***"
        );
        assert_eq!(url_shown("http://h/p?anna@example.com&"), "http://h/p?***");
        assert_eq!(url_shown("http://user:pw@h/p?a=1"), "http://***@h/p?a=***");
        assert_eq!(url_shown("http://h/p/a@b"), "http://h/p/a@b", "an @ in the path is no user info");
    }
}
