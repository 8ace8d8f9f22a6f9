//! The operator's console over HTTP (DESIGN §15), on a real server: sign-in with the admin
//! token, cookie flags, CSRF on every form, the sign-in limit, sign-out, and the dashboard
//! counting sales made through the API. (Browser tests on the real binary are in
//! `tests/browser`.)

use bytes::Bytes;
use serde_json::json;

use crate::harness::*;

fn market(sink: &MockBuyer) -> serde_json::Value {
    json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [fixed_campaign("c1", "b1", "solar", "10.00", &sink.post_url())],
        "topups": [topup("b1", "1000.00")],
    })
}

/// The cookie `name` an answer sets, whole (`name=value; attributes`).
fn set_cookie(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn value_of(cookie: &str) -> &str {
    cookie.split(';').next().and_then(|pair| pair.split_once('=')).map_or("", |(_, value)| value)
}

fn page(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.raw).into_owned()
}

/// The hidden `csrf` field of the first form of a page.
fn csrf_in(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap_or_default().to_string()
}

/// Signs in with `token` from a fresh sign-in form; answers the sign-in post's answer and
/// the session cookie's `name=value` when it set one.
async fn sign_in(server: &TestServer, token: &str, extra: &[(&str, &str)]) -> (Answer, Option<String>) {
    let form = server.send("GET", &format!("{}/console/sign-in", server.ops), extra, Bytes::new()).await;
    assert_eq!(form.status, 200);
    let bound = set_cookie(&form, "lr_console_sign_in").expect("the form's cookie");
    let cookie = format!("lr_console_sign_in={}", value_of(&bound));
    let body = format!("csrf={}&token={}", csrf_in(&page(&form)), token);
    let mut headers = vec![("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    let answer = server.send("POST", &format!("{}/console/sign-in", server.ops), &headers, body).await;
    let session = set_cookie(&answer, "lr_console").map(|cookie| format!("lr_console={}", value_of(&cookie)));
    (answer, session)
}

async fn get(server: &TestServer, path: &str, cookie: &str) -> Answer {
    server.send("GET", &format!("{}{path}", server.ops), &[("cookie", cookie)], Bytes::new()).await
}

#[tokio::test]
async fn an_operator_signs_in_with_the_admin_token_and_a_wrong_token_is_refused() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let unsigned = server.send("GET", &format!("{}/console", server.ops), &[], Bytes::new()).await;
    assert_eq!(unsigned.status, 303);
    assert_eq!(unsigned.headers["location"], "/console/sign-in");

    let (wrong, session) = sign_in(&server, "not-the-token", &[]).await;
    assert_eq!(wrong.status, 401);
    assert!(session.is_none());
    assert!(page(&wrong).contains("did not match"));

    let (right, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    assert_eq!(right.status, 303);
    assert_eq!(right.headers["location"], "/console");
    let cookie = set_cookie(&right, "lr_console").expect("a session cookie");
    assert!(cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict") && cookie.contains("Path=/console"));
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let dashboard = get(&server, "/console", &session.expect("a session")).await;
    assert_eq!(dashboard.status, 200);
    let html = page(&dashboard);
    assert!(html.contains("<h1>Dashboard</h1>") && html.contains("admin-token"), "{html}");
    let policy = dashboard.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert_eq!(dashboard.headers["cache-control"], "no-store");

    // Behind a TLS proxy the cookie is Secure.
    let (over_tls, _) = sign_in(&server, ADMIN_TOKEN, &[("x-forwarded-proto", "https")]).await;
    assert!(set_cookie(&over_tls, "lr_console").expect("a session cookie").contains("; Secure"));
}

#[tokio::test]
async fn a_form_post_without_its_csrf_token_is_refused_and_sign_out_ends_the_session() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    let form = [("cookie", session.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let url = format!("{}/console/sign-out", server.ops);
    let forged = server.send("POST", &url, &form, "csrf=0000").await;
    assert_eq!(forged.status, 403);
    let missing = server.send("POST", &url, &form, "").await;
    assert_eq!(missing.status, 403);
    assert_eq!(get(&server, "/console", &session).await.status, 200, "still signed in");

    let csrf = csrf_in(&page(&get(&server, "/console", &session).await));
    let signed_out = server.send("POST", &url, &form, format!("csrf={csrf}")).await;
    assert_eq!(signed_out.status, 303);
    assert!(set_cookie(&signed_out, "lr_console").expect("the cookie removed").contains("Max-Age=0"));
    assert_eq!(get(&server, "/console", &session).await.status, 303, "the session ended");
    assert_eq!(get(&server, "/console/live/dashboard", &session).await.status, 401);

    // The sign-in form's token is bound to its cookie: without it, nobody signs in.
    let stray = server
        .send(
            "POST",
            &format!("{}/console/sign-in", server.ops),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("csrf=abc&token={ADMIN_TOKEN}"),
        )
        .await;
    assert_eq!(stray.status, 403);
    assert!(set_cookie(&stray, "lr_console").is_none());
}

#[tokio::test]
async fn five_failed_sign_ins_a_minute_make_the_address_wait_even_with_the_right_token() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    for _ in 0..5 {
        assert_eq!(sign_in(&server, "guess", &[]).await.0.status, 401);
    }
    let (limited, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    assert_eq!(limited.status, 429);
    assert!(session.is_none());
}

#[tokio::test]
async fn the_dashboard_counts_sales_made_through_the_api() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    // The counts are the process's, shared with other tests' servers: read, sell, read.
    let sales_since_start = |html: &str| -> u64 {
        let since = html.find("Since this node started").expect("the totals");
        let after = &html[since..];
        let tile = "Sales</div><div class=\"value\">";
        let start = after.find(tile).expect("a sales tile") + tile.len();
        after[start..].split('<').next().and_then(|n| n.parse().ok()).expect("a number")
    };
    let before = sales_since_start(&page(&get(&server, "/console/live/dashboard", &session).await));
    for n in 0..3 {
        assert_eq!(server.direct(&lead("solar", n)).await.json["status"], "sold");
    }
    let after = sales_since_start(&page(&get(&server, "/console/live/dashboard", &session).await));
    assert!(after >= before + 3, "{before} then {after}");
    let css = server.send("GET", &format!("{}/console/assets/console.css", server.ops), &[], Bytes::new()).await;
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
}
