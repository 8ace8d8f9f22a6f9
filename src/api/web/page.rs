//! The page frame of the console and the portal, and the answers their pages share: the
//! layout (header, nav, sign-out form with its CSRF token), the HTML answer with its
//! security headers, and the embedded assets (served by each surface under its own path,
//! as the two listeners are two origins).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::api::session::Session;

pub const STYLESHEET: &str = include_str!("../../../assets/console/console.css");
pub const SCRIPT: &str = include_str!("../../../assets/console/console.js");

/// What frames the pages of one surface (the console, the buyer portal, the supplier
/// portal).
pub struct Frame {
    /// The surface's root path: the brand links there, its assets and sign-out are below.
    pub root: &'static str,
    /// After each page title: "leadrouter console", ...
    pub name: &'static str,
    /// The navigation: (path, label).
    pub nav: &'static [(&'static str, &'static str)],
}

/// A whole page: `title` in the header and `<title>`, `current` the nav entry to mark,
/// and the sign-out form when someone is signed in.
pub fn layout(frame: &Frame, title: &str, current: &str, session: Option<&Session>, body: Markup) -> Markup {
    let root = frame.root;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (frame.name) }
                link rel="stylesheet" href=(format!("{root}/assets/console.css"));
                script src=(format!("{root}/assets/console.js")) defer {}
            }
            body {
                header {
                    a.brand href=(root) { "leadrouter" }
                    @if let Some(session) = session {
                        nav aria-label=(frame.name) {
                            ul {
                                @for (path, label) in frame.nav {
                                    li {
                                        @if *path == current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form method="post" action=(format!("{root}/sign-out")) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            span.muted { (session.principal.to_string()) " " }
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// An HTML answer: never cached, never framed, scripts and styles only from us.
pub fn answer(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A 303 to `location` (after a form post, or to the sign-in page).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An embedded asset, cached for an hour.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
