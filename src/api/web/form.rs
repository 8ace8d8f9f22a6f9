//! What the console's and the portal's forms share: reading a posted form (small, percent-
//! decoded), its fields, and the `Outcome` of a form to show again: a notice above it and
//! each field's error next to its field; the sign-in form's token, bound to a cookie as
//! there is no session yet. Also who is asking: over TLS or not, from where.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use crate::api::error::ApiError;
use crate::api::session::{cookie_value, Sessions};

/// Forms are small: anything larger is refused unread.
const FORM_MAX_BYTES: usize = 64 * 1024;

/// What a form posted, and what the engine said of it, to show again.
#[derive(Default)]
pub struct Outcome {
    /// A sentence for everyone (success or a refusal without a field).
    pub notice: Option<(bool, String)>,
    /// The refusal's field errors, by field.
    pub errors: Vec<(String, String)>,
    /// The form's values, to fill it in again.
    pub values: Vec<(String, String)>,
}

impl Outcome {
    pub fn done(message: impl Into<String>) -> Outcome {
        Outcome { notice: Some((true, message.into())), ..Outcome::default() }
    }

    /// A refusal: its field errors next to the fields, its message above the form.
    pub fn refused(error: ApiError, values: Vec<(String, String)>) -> Outcome {
        let errors = error.details.iter().map(|detail| (detail.field.clone(), detail.message.clone())).collect();
        Outcome { notice: Some((false, error.message)), errors, values }
    }

    /// 200 when it went through, 422 when it was refused.
    pub fn status(&self) -> axum::http::StatusCode {
        match &self.notice {
            Some((true, _)) | None => axum::http::StatusCode::OK,
            Some((false, _)) => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|(name, _)| name == field).map(|(_, message)| message.as_str())
    }

    pub fn value(&self, field: &str) -> &str {
        self.values.iter().find(|(name, _)| name == field).map_or("", |(_, value)| value.as_str())
    }
}

/// A labelled input with its error (if any) announced and tied to it.
pub fn input(outcome: &Outcome, name: &str, label: &str, kind: &str, id_suffix: &str) -> Markup {
    let id = format!("{name}-{id_suffix}");
    let error_id = format!("{id}-error");
    let error = outcome.error(name);
    html! {
        label for=(id) { (label) }
        input id=(id) name=(name) type=(kind) value=(outcome.value(name))
            aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| error_id.as_str())];
        @if let Some(error) = error {
            p.field-error id=(error_id) { (error) }
        }
    }
}

/// The outcome's sentence above a form: a status when it went through, an alert when not.
pub fn notice(outcome: &Outcome) -> Markup {
    html! {
        @if let Some((good, message)) = &outcome.notice {
            p.notice.good[*good].bad[!*good] role=(if *good { "status" } else { "alert" }) { (message) }
        }
    }
}

/// Whether the browser reached us over TLS (through a proxy that says so).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()).is_some_and(|proto| proto == "https")
}

pub fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(address)| address.ip())
}

/// A form body's fields, percent-decoded; `None` when it is too large or unreadable.
pub async fn read_form(request: Request) -> Option<Vec<(String, String)>> {
    let body: Body = request.into_body();
    let bytes = axum::body::to_bytes(body, FORM_MAX_BYTES).await.ok()?;
    serde_urlencoded::from_bytes(&bytes).ok()
}

pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// A sign-in form's token lives this long in its cookie.
const SIGN_IN_TOKEN_MAX_AGE_S: u32 = 600;

/// A fresh token for a sign-in form, and the `Set-Cookie` value that binds it to this
/// browser (cookie `cookie`, for `path`).
pub fn sign_in_token(cookie: &str, path: &str, secure: bool) -> (String, String) {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let secure = if secure { "; Secure" } else { "" };
    let set =
        format!("{cookie}={token}; Path={path}; Max-Age={SIGN_IN_TOKEN_MAX_AGE_S}; HttpOnly; SameSite=Strict{secure}");
    (token, set)
}

/// Whether a posted sign-in form carries the token its cookie bound (constant time).
pub fn sign_in_token_matches(headers: &HeaderMap, cookie: &str, form: &[(String, String)]) -> bool {
    matches!((cookie_value(headers, cookie), field(form, "csrf")), (Some(bound), Some(given))
        if leadrouter_http::auth::token_matches(given, bound))
}

/// The `Set-Cookie` value that removes a sign-in form's cookie once it was used.
pub fn sign_in_token_spent(cookie: &str, path: &str) -> String {
    format!("{cookie}=; Path={path}; Max-Age=0")
}

/// Adds `Set-Cookie` headers to an answer.
pub fn set_cookies(response: &mut Response, cookies: impl IntoIterator<Item = String>) {
    for cookie in cookies {
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
}

/// Why a sign-in post is refused before its credential is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInRefusal {
    /// Too many failed sign-ins from this address lately.
    TooMany,
    Unreadable,
    /// The form's token is not the one its cookie bound (expired, or not our form).
    Expired,
}

impl SignInRefusal {
    pub fn status(self) -> StatusCode {
        match self {
            SignInRefusal::TooMany => StatusCode::TOO_MANY_REQUESTS,
            SignInRefusal::Unreadable => StatusCode::BAD_REQUEST,
            SignInRefusal::Expired => StatusCode::FORBIDDEN,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            SignInRefusal::TooMany => "Too many failed sign-ins: wait a minute.",
            SignInRefusal::Unreadable => "The form could not be read.",
            SignInRefusal::Expired => "The form expired: sign in again.",
        }
    }
}

/// The checks a sign-in post passes before its credential is looked at: the address's
/// failures, a readable form, the form's cookie-bound token (cookie `cookie`). Answers the
/// form's fields.
pub async fn checked_sign_in(
    sessions: &Sessions,
    cookie: &str,
    request: Request,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(String, String)>, SignInRefusal> {
    if !sessions.may_try(client_address(&request), now) {
        return Err(SignInRefusal::TooMany);
    }
    let headers = request.headers().clone();
    let form = read_form(request).await.ok_or(SignInRefusal::Unreadable)?;
    match sign_in_token_matches(&headers, cookie, &form) {
        true => Ok(form),
        false => Err(SignInRefusal::Expired),
    }
}
