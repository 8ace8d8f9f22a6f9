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
pub(crate) fn set_cookie(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

pub(crate) fn value_of(cookie: &str) -> &str {
    cookie.split(';').next().and_then(|pair| pair.split_once('=')).map_or("", |(_, value)| value)
}

pub(crate) fn page(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.raw).into_owned()
}

/// The hidden `csrf` field of the first form of a page.
pub(crate) fn csrf_in(html: &str) -> String {
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

/// Posts a console form as the signed-in `session`, with its CSRF token from `page_path`.
async fn post_form(server: &TestServer, session: &str, page_path: &str, action: &str, fields: &str) -> Answer {
    let csrf = csrf_in(&page(&get(server, page_path, session).await));
    let headers = [("cookie", session), ("content-type", "application/x-www-form-urlencoded")];
    let body = if fields.is_empty() { format!("csrf={csrf}") } else { format!("csrf={csrf}&{fields}") };
    server.send("POST", &format!("{}{action}", server.ops), &headers, body).await
}

#[tokio::test]
async fn a_top_up_in_the_console_validates_as_the_admin_api_and_a_refused_one_changes_nothing() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    let buyers = page(&get(&server, "/console/buyers", &session).await);
    assert!(buyers.contains("1000.00 EUR"), "{buyers}");

    let refused = post_form(
        &server,
        &session,
        "/console/buyers",
        "/console/top-ups",
        "buyer_id=b1&amount=12.345&reference=wire-1",
    )
    .await;
    assert_eq!(refused.status, 422);
    let html = page(&refused);
    assert!(html.contains("id=\"amount-top-up\"") && html.contains("aria-invalid=\"true\""), "{html}");
    assert!(html.contains("class=\"field-error\" id=\"amount-top-up-error\""), "the error sits by its field: {html}");
    assert!(html.contains("value=\"wire-1\""), "the form keeps what was typed");
    let no_reference =
        post_form(&server, &session, "/console/buyers", "/console/top-ups", "buyer_id=b1&amount=5.00&reference=").await;
    assert_eq!(no_reference.status, 422);
    assert!(page(&no_reference).contains("id=\"reference-top-up-error\""));
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "1000.00", "nothing half-applied");

    let forged = server
        .send(
            "POST",
            &format!("{}/console/top-ups", server.ops),
            &[("cookie", session.as_str()), ("content-type", "application/x-www-form-urlencoded")],
            "csrf=forged&buyer_id=b1&amount=5.00&reference=wire-2",
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "1000.00");

    let done = post_form(
        &server,
        &session,
        "/console/buyers",
        "/console/top-ups",
        "buyer_id=b1&amount=25.50&reference=wire-3",
    )
    .await;
    assert_eq!(done.status, 200);
    assert!(page(&done).contains("Topped up 25.50"), "{}", page(&done));
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "1025.50");
}

#[tokio::test]
async fn the_returns_queue_approves_and_rejects_with_a_reason() {
    let sink = mock_buyer(|_, _| accept()).await;
    let mut config = market(&sink);
    config["campaigns"][0]["returns_require_approval"] = json!(true);
    config["campaigns"][0]["return_window_days"] = json!(3);
    let server = start(config).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    let mut returns = Vec::new();
    for n in 0..2 {
        let sold = server.direct(&lead("solar", n)).await;
        assert_eq!(sold.json["status"], "sold");
        let lead_id = sold.json["lead_id"].as_str().unwrap().to_string();
        let sale = server.running.router.sales().all().into_iter().find(|s| s.lead_id == lead_id).expect("a sale");
        let body = json!({"sale_id": sale.sale_id, "reason": "invalid_phone"});
        let requested = server.supplier("/v1/returns", &buyer_key("b1"), &body).await;
        assert_eq!(requested.status, 201, "{}", requested.json);
        returns.push(requested.json["return_id"].as_str().unwrap().to_string());
    }
    let queue = page(&get(&server, "/console/returns", &session).await);
    assert!(returns.iter().all(|id| queue.contains(id.as_str())), "{queue}");

    let reject = format!("/console/returns/{}/reject", returns[0]);
    let without_reason = post_form(&server, &session, "/console/returns", &reject, "reason=").await;
    assert_eq!(without_reason.status, 422, "{}", page(&without_reason));
    assert!(page(&without_reason).contains("aria-invalid=\"true\""));
    let rejected = post_form(&server, &session, "/console/returns", &reject, "reason=the+phone+answers").await;
    assert_eq!(rejected.status, 200, "{}", page(&rejected));
    let approve = format!("/console/returns/{}/approve", returns[1]);
    assert_eq!(post_form(&server, &session, "/console/returns", &approve, "").await.status, 200);

    let first = server.admin("GET", &format!("/admin/v1/returns/{}", returns[0]), None).await;
    assert_eq!(
        (first.json["status"].as_str(), first.json["resolution_reason"].as_str()),
        (Some("rejected"), Some("the phone answers"))
    );
    let second = server.admin("GET", &format!("/admin/v1/returns/{}", returns[1]), None).await;
    assert_eq!(second.json["status"], "approved");
    assert!(page(&get(&server, "/console/returns", &session).await).contains("No return is waiting"));
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "990.00", "the approved return is credited");
}

#[tokio::test]
async fn a_leads_trace_is_found_by_its_id_and_an_unknown_one_is_a_404() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    let sold = server.direct(&lead("solar", 7)).await;
    let lead_id = sold.json["lead_id"].as_str().expect("a lead id");
    let found = get(&server, &format!("/console/trace?id={lead_id}"), &session).await;
    assert_eq!(found.status, 200);
    let html = page(&found);
    assert!(html.contains(lead_id) && html.contains("<td>c1</td>") && html.contains("<td>sold</td>"), "{html}");
    assert!(!html.contains("anna7@example.com") && !html.contains("Muster"), "no lead data on the page");
    let unknown = get(&server, "/console/trace?id=led_unknown", &session).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(get(&server, "/console/trace", &session).await.status, 200, "the lookup form");
}

#[tokio::test]
async fn a_dead_letter_is_listed_and_retried_from_the_console() {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&healthy);
    let endpoint = mock_buyer(move |_, _| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(202)
        } else {
            Reply::Status(503)
        }
    })
    .await;
    let mut config = market(&endpoint);
    config["campaigns"][0]["delivery"] =
        json!({"mode": "webhook_async", "url": endpoint.post_url(), "timeout_ms": 500});
    let server = start(config).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    assert_eq!(server.direct(&lead("solar", 1)).await.json["status"], "sold");
    eventually("the delivery is dead-lettered", || server.running.router.deliveries().counts().1 == 1).await;
    let listed = page(&get(&server, "/console/deliveries", &session).await);
    assert!(listed.contains("Dead letters (1)") && listed.contains("http 503"), "{listed}");
    assert!(!listed.contains("anna1@example.com"), "no lead data");
    let id = server.running.router.deliveries().list(leadrouter::engine::ports::outbox::Status::DeadLetter, None, 10)
        [0]
    .id
    .clone();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let retried =
        post_form(&server, &session, "/console/deliveries", &format!("/console/deliveries/{id}/retry"), "").await;
    assert_eq!(retried.status, 200, "{}", page(&retried));
    assert!(page(&retried).contains("queued again"));
    eventually("the retried delivery arrives", || endpoint.count("/post") == 5).await;
    let again =
        post_form(&server, &session, "/console/deliveries", &format!("/console/deliveries/{id}/retry"), "").await;
    assert_eq!(again.status, 422, "no longer a dead letter: {}", page(&again));
}

#[tokio::test]
async fn a_test_send_shows_the_rendered_request_and_the_answer_and_sells_nothing() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    let form = page(&get(&server, "/console/test-send", &session).await);
    assert!(form.contains("<option value=\"c1\""), "{form}");
    let sent = post_form(
        &server,
        &session,
        "/console/test-send",
        "/console/test-send",
        "campaign=c1&stage=post&send=true&lead=",
    )
    .await;
    assert_eq!(sent.status, 200, "{}", page(&sent));
    let html = page(&sent);
    assert!(html.contains("POST") && html.contains(&sink.post_url()), "the rendered request: {html}");
    assert!(html.contains("&quot;accepted&quot;"), "what the answer rules read: {html}");
    assert_eq!(sink.count("/post"), 1, "sent once");
    assert_eq!(server.balance(&buyer_key("b1")).await["balance"], "1000.00", "nothing charged");
    let bad_lead = post_form(
        &server,
        &session,
        "/console/test-send",
        "/console/test-send",
        "campaign=c1&stage=post&send=false&lead=%7Bnot",
    )
    .await;
    assert_eq!(bad_lead.status, 422);
    assert!(page(&bad_lead).contains("id=\"lead-test-error\""));
    let unknown =
        post_form(&server, &session, "/console/test-send", "/console/test-send", "campaign=nope&stage=post&send=false")
            .await;
    assert_eq!(unknown.status, 422, "{}", page(&unknown));
    assert_eq!(sink.count("/post"), 1, "nothing more sent");
}

/// A form field's value, percent-encoded.
fn encoded(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)]).unwrap_or_default().trim_start_matches("v=").to_string()
}

#[tokio::test]
async fn a_campaign_is_created_in_the_console_and_one_refused_with_its_field_errors_stores_nothing() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let (_, session) = sign_in(&server, ADMIN_TOKEN, &[]).await;
    let session = session.expect("a session");
    let list = page(&get(&server, "/console/config/campaigns", &session).await);
    assert!(list.contains("href=\"/console/config/campaigns/c1\""), "{list}");

    let good = json!({"buyer_id": "b1", "vertical": "solar", "pricing": {"type": "fixed", "price": "12.00"},
        "filters": {"countries": ["DE"]}, "delivery": {"mode": "webhook", "url": sink.post_url()}});
    let fields = format!("id=c2&object={}", encoded(&good.to_string()));
    let created =
        post_form(&server, &session, "/console/config/campaigns/new", "/console/config/campaigns/new", &fields).await;
    assert_eq!(created.status, 200, "{}", page(&created));
    assert!(page(&created).contains("Created c2."));
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c2", None).await.json["pricing"]["price"], "12.00");

    let mut bad = good.clone();
    bad["pricing"]["price"] = json!("-5.00");
    bad["buyer_id"] = json!("nobody");
    let fields = format!("id=c3&object={}", encoded(&bad.to_string()));
    let refused =
        post_form(&server, &session, "/console/config/campaigns/new", "/console/config/campaigns/new", &fields).await;
    assert_eq!(refused.status, 422, "{}", page(&refused));
    let html = page(&refused);
    assert!(html.contains("id=\"object-errors\"") && html.contains("aria-invalid=\"true\""), "{html}");
    let api = server.admin("PUT", "/admin/v1/campaigns/c3", Some(&bad)).await;
    assert_eq!(api.status, 422);
    for detail in api.json["error"]["details"].as_array().expect("field errors") {
        let field = detail["field"].as_str().unwrap();
        assert!(html.contains(&format!("<code>{field}</code>")), "the admin API's error on {field} is shown: {html}");
    }
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c3", None).await.status, 404, "nothing stored");

    // Editing keeps the stored webhook secret of a buyer shown as ***.
    let editor = page(&get(&server, "/console/config/buyers/b1", &session).await);
    assert!(editor.contains("***") && !editor.contains(WEBHOOK_SECRET), "secrets are not shown");
    let start = editor.find("<textarea").unwrap();
    let text = editor[start..].split_once('>').unwrap().1.split("</textarea>").next().unwrap();
    let mut object: serde_json::Value = serde_json::from_str(&text.replace("&quot;", "\"")).expect("the shown JSON");
    object["name"] = json!("Buyer One");
    let fields = format!("object={}", encoded(&object.to_string()));
    let saved = post_form(&server, &session, "/console/config/buyers/b1", "/console/config/buyers/b1", &fields).await;
    assert_eq!(saved.status, 200, "{}", page(&saved));
    assert_eq!(server.running.router.market().buyer("b1").unwrap().webhook_secret, WEBHOOK_SECRET);
    assert_eq!(server.running.router.market().buyer("b1").unwrap().name, "Buyer One");
}

#[tokio::test]
async fn an_operator_signs_in_with_a_password_and_the_history_says_who_changed_what() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let hash = leadrouter::domain::operator::PasswordHash::create("correct horse battery", [7; 16]).expect("a hash");
    let added =
        server.admin("PUT", "/admin/v1/operators/alice", Some(&json!({"password_hash": hash.as_stored()}))).await;
    assert_eq!(added.status, 201, "{}", added.json);

    let sign_in_as = |name: &'static str, password: &'static str| {
        let server = &server;
        async move {
            let form = server.send("GET", &format!("{}/console/sign-in", server.ops), &[], Bytes::new()).await;
            let bound = set_cookie(&form, "lr_console_sign_in").expect("the form's cookie");
            let cookie = format!("lr_console_sign_in={}", value_of(&bound));
            let body = format!("csrf={}&name={name}&token={}", csrf_in(&page(&form)), encoded(password));
            let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
            let answer = server.send("POST", &format!("{}/console/sign-in", server.ops), &headers, body).await;
            let session = set_cookie(&answer, "lr_console").map(|cookie| format!("lr_console={}", value_of(&cookie)));
            (answer.status, session)
        }
    };
    assert_eq!(sign_in_as("alice", "wrong password!").await, (401, None));
    assert_eq!(sign_in_as("mallory", "correct horse battery").await, (401, None), "an unknown name");
    let (status, session) = sign_in_as("alice", "correct horse battery").await;
    assert_eq!(status, 303);
    let session = session.expect("a session");
    assert!(page(&get(&server, "/console", &session).await).contains("operator:alice"));

    let topped = post_form(
        &server,
        &session,
        "/console/buyers",
        "/console/top-ups",
        "buyer_id=b1&amount=10.00&reference=wire-9",
    )
    .await;
    assert_eq!(topped.status, 200, "{}", page(&topped));
    let history = page(&get(&server, "/console/changes", &session).await);
    let row = history.split("<tr>").find(|row| row.contains("top_up")).expect("the top-up in the history");
    assert!(row.contains("operator:alice"), "{row}");
    let added_row = history.split("<tr>").find(|row| row.contains("put_operator")).expect("the operator's creation");
    assert!(added_row.contains("admin-token") && !history.contains("argon2"), "{added_row}");

    // A new password ends the sessions signed in with the old one; removal ends them too.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let rehash = leadrouter::domain::operator::PasswordHash::create("another horse battery", [8; 16]).expect("a hash");
    let replaced =
        server.admin("PUT", "/admin/v1/operators/alice", Some(&json!({"password_hash": rehash.as_stored()}))).await;
    assert_eq!(replaced.status, 200, "{}", replaced.json);
    assert_eq!(get(&server, "/console", &session).await.status, 303, "signed out by the new password");
    let (status, session) = sign_in_as("alice", "another horse battery").await;
    assert_eq!(status, 303);
    let session = session.expect("a session");
    assert_eq!(get(&server, "/console", &session).await.status, 200);
    assert_eq!(server.admin("DELETE", "/admin/v1/operators/alice", None).await.status, 204);
    assert_eq!(get(&server, "/console", &session).await.status, 303, "signed out by the removal");
}
