//! The harness on pages the test serves itself: a sign-in form typed into by its labels,
//! the session cookie's flags (DESIGN §15: HttpOnly, SameSite=Strict), the phone-width
//! check, and screenshots.

use std::collections::HashMap;

use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, Html};
use axum::routing::get;

use crate::harness::*;

/// `<head>` of a page that reads well on a phone.
const HEAD: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
    <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign in</title>\
    <style>body{font-family:sans-serif;margin:1em}label{display:block;margin:.5em 0}</style></head>";

fn sign_in_page() -> Html<String> {
    Html(format!(
        "{HEAD}<body><main><h1>Sign in</h1><form method=\"post\" action=\"/sign-in\">\
         <label for=\"name\">Name</label><input id=\"name\" name=\"name\" value=\"placeholder\">\
         <label>Buyer's key <input name=\"key\" type=\"password\"></label>\
         <select name=\"role\" aria-label=\"Role\"><option>buyer</option><option>supplier</option></select>\
         <button type=\"submit\">Sign in</button></form></main></body></html>"
    ))
}

/// Signs in whoever the form names: two cookies, the session's with the flags a session
/// cookie needs and a plain one, and a greeting.
async fn sign_in(body: String) -> (AppendHeaders<[(axum::http::HeaderName, &'static str); 2]>, Html<String>) {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).expect("a form");
    let greeting = format!("Signed in as {} ({}, key of {} characters)", form["name"], form["role"], form["key"].len());
    let cookies = AppendHeaders([
        (SET_COOKIE, "portal_session=s3cr3t; Path=/; HttpOnly; SameSite=Strict"),
        (SET_COOKIE, "theme=dark; Path=/"),
    ]);
    (cookies, Html(format!("{HEAD}<body><p id=\"greeting\">{}</p></body></html>", escape(&greeting))))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[tokio::test]
async fn a_form_is_typed_into_by_its_labels_and_the_session_cookie_keeps_its_flags() {
    let site = TestSite::start(
        axum::Router::new()
            .route("/", get(|| async { sign_in_page() }))
            .route("/sign-in", axum::routing::post(sign_in)),
    )
    .await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/", site.url)).await;
    assert_eq!(browser.title().await, "Sign in");

    browser.fill("Name", "Ada <Lovelace>").await;
    browser.fill("Buyer's key", "0123456789").await;
    browser.select("Role", "supplier").await;
    browser.click_button("Sign in").await;
    let greeting = browser.wait_for_text("#greeting", "Signed in").await;
    assert_eq!(greeting, "Signed in as Ada <Lovelace> (supplier, key of 10 characters)");

    let session = browser.cookie("portal_session").await;
    assert_eq!(session.value, "s3cr3t");
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
    assert!(!session.secure, "plain http: {session:?}");
    assert_eq!(session.path.as_deref(), Some("/"));
    let theme = browser.cookie("theme").await;
    assert!(!theme.http_only, "{theme:?}");
    // What the browser reports as the default (Lax) or nothing; never Strict.
    assert_ne!(theme.same_site.as_deref(), Some("Strict"), "{theme:?}");
    // Scripts in the page never see an HttpOnly cookie.
    assert_eq!(browser.script("return document.cookie;").await, "theme=dark");

    browser.close().await;
}

#[tokio::test]
async fn the_phone_check_tells_a_page_that_fits_from_one_that_scrolls_sideways_and_screenshots_are_pngs() {
    let wide = format!("{HEAD}<body><table><tr><td style=\"min-width:600px\">wide</td></tr></table></body></html>");
    let unscaled = "<!DOCTYPE html><html><head><title>old</title></head><body><p>no viewport</p></body></html>";
    let site = TestSite::start(
        axum::Router::new()
            .route("/", get(|| async { sign_in_page() }))
            .route("/wide", get(move || async move { Html(wide) }))
            .route("/unscaled", get(move || async move { Html(unscaled) })),
    )
    .await;
    let shots = tempfile::tempdir().unwrap();
    let mut browser = Browser::start().await;

    browser.goto(&format!("{}/", site.url)).await;
    assert_eq!(browser.widths().await.1, 1280, "the desktop viewport");
    let desktop = browser.screenshot(&shots.path().join("console/sign-in.png")).await;
    assert_eq!(png_size(&desktop), Some((1280, 800)));
    assert_eq!(std::fs::read(shots.path().join("console/sign-in.png")).unwrap(), desktop);

    browser.set_viewport(Viewport::PHONE).await;
    browser.goto(&format!("{}/", site.url)).await;
    browser.assert_fits_width().await;
    let phone = browser.screenshot(&shots.path().join("console/sign-in-phone.png")).await;
    assert_eq!(png_size(&phone), Some((390, 844)));

    // A phone widens the layout to content wider than its screen.
    browser.goto(&format!("{}/wide", site.url)).await;
    let problem = browser.fits_width().await.expect_err("a 600 px table does not fit");
    assert!(problem.contains("scrolls sideways on a 390 px wide screen"), "{problem}");
    // Without a viewport meta tag a phone lays the page out 980 px wide and shrinks it.
    browser.goto(&format!("{}/unscaled", site.url)).await;
    let problem = browser.fits_width().await.expect_err("no viewport meta tag");
    assert!(problem.contains("no <meta name=\"viewport\"") && problem.contains("980 px"), "{problem}");

    // At a desktop's width the wide page fits.
    browser.set_viewport(Viewport::DESKTOP).await;
    browser.goto(&format!("{}/wide", site.url)).await;
    browser.assert_fits_width().await;

    browser.close().await;
}
