//! The buyer and supplier portal over HTTP (DESIGN §15), on a real server with a clock the
//! test sets: sign-in with an API key and its cookie, a buyer's balance, leads bought by
//! day and id with their CSV, returns, caps used and pause / resume; a supplier's leads
//! sent, sold rate, payouts per day, returns and spec; and that nobody reaches another
//! party's data, a form without its CSRF token changes nothing, and a rotated key ends
//! its sessions. (The browser test of the portal is in `tests/browser`.)

use bytes::Bytes;
use chrono::{DateTime, Utc};
use leadrouter::clock::ManualClock;
use serde_json::{json, Value};

use crate::console::{csrf_in, page, set_cookie, value_of};
use crate::harness::*;

const OTHER_SUPPLIER_KEY: &str = "supplier-key-bbbbbbbbbbbb";

/// Two buyers on one vertical: b1 pays more (so wins) until its daily cap of 3; b2 takes
/// the rest. Two suppliers.
fn market(sink: &MockBuyer) -> Value {
    let mut c1 = fixed_campaign("c1", "b1", "solar", "10.00", &sink.post_url());
    c1["caps"] = json!({"daily": 3});
    c1["return_window_days"] = json!(3);
    c1["returns_require_approval"] = json!(true);
    c1["filters"]["rules"] = json!([{"field": "roof_type", "op": "in", "value": ["tile"]}]);
    let mut c2 = fixed_campaign("c2", "b2", "solar", "8.00", &sink.post_url());
    c2["filters"]["rules"] = json!([{"field": "roof_type", "op": "in", "value": ["tile"]}]);
    json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY), supplier("s2", OTHER_SUPPLIER_KEY)],
        "buyers": [buyer("b1"), buyer("b2")],
        "campaigns": [c1, c2],
        "topups": [topup("b1", "1000.00"), topup("b2", "1000.00")],
    })
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an instant")
}

/// Signs in to the portal with `key` from a fresh sign-in form; answers the post's answer
/// and the session cookie's `name=value` when it set one.
async fn sign_in(server: &TestServer, key: &str) -> (Answer, Option<String>) {
    let form = server.send("GET", &format!("{}/portal/sign-in", server.base), &[], Bytes::new()).await;
    assert_eq!(form.status, 200);
    let bound = set_cookie(&form, "lr_portal_sign_in").expect("the form's cookie");
    let cookie = format!("lr_portal_sign_in={}", value_of(&bound));
    let body = format!("csrf={}&api_key={}", csrf_in(&page(&form)), key);
    let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let answer = server.send("POST", &format!("{}/portal/sign-in", server.base), &headers, body).await;
    let session = set_cookie(&answer, "lr_portal").map(|cookie| format!("lr_portal={}", value_of(&cookie)));
    (answer, session)
}

async fn signed_in(server: &TestServer, key: &str) -> String {
    let (answer, session) = sign_in(server, key).await;
    assert_eq!(answer.status, 303, "{}", page(&answer));
    session.expect("a session cookie")
}

async fn get(server: &TestServer, path: &str, session: &str) -> Answer {
    server.send("GET", &format!("{}{path}", server.base), &[("cookie", session)], Bytes::new()).await
}

/// Posts a form from `page_path` (its CSRF token) to `action`.
async fn post_form(server: &TestServer, session: &str, page_path: &str, action: &str, fields: &str) -> Answer {
    let csrf = csrf_in(&page(&get(server, page_path, session).await));
    let headers = [("cookie", session), ("content-type", "application/x-www-form-urlencoded")];
    let body = if fields.is_empty() { format!("csrf={csrf}") } else { format!("csrf={csrf}&{fields}") };
    server.send("POST", &format!("{}{action}", server.base), &headers, body).await
}

/// Sells lead `n` from `supplier_key`; answers (status, lead id).
async fn send_lead(server: &TestServer, supplier_key: &str, n: u32, roof: &str) -> (String, String) {
    let mut lead = lead("solar", n);
    lead["fields"]["roof_type"] = json!(roof);
    lead["external_id"] = json!(format!("ext-{n}"));
    let answer = server.supplier("/v1/leads", supplier_key, &lead).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    (answer.json["status"].as_str().unwrap().to_string(), answer.json["lead_id"].as_str().unwrap().to_string())
}

fn sale_of(server: &TestServer, lead_id: &str) -> leadrouter::domain::ledger::SaleSettled {
    let sale = server.running.router.sales().all().into_iter().find(|sale| sale.lead_id == lead_id).expect("a sale");
    leadrouter::domain::ledger::SaleSettled::clone(&sale)
}

#[tokio::test]
async fn a_buyer_signs_in_with_its_key_and_sees_only_its_own_balance_and_leads() {
    let sink = mock_buyer(|_, _| accept()).await;
    let clock = ManualClock::new(at("2026-12-03T10:00:00Z"));
    let server = start_manual(market(&sink), clock.clone()).await;
    let mut leads = Vec::new();
    for n in 0..2 {
        leads.push(send_lead(&server, SUPPLIER_KEY, n, "tile").await);
    }
    clock.set(at("2026-12-04T10:00:00Z"));
    for n in 2..6 {
        leads.push(send_lead(&server, SUPPLIER_KEY, n, "tile").await);
    }
    assert!(leads.iter().all(|(status, _)| status == "sold"));
    let of = |buyer: &str| -> Vec<String> {
        leads.iter().map(|(_, id)| sale_of(&server, id)).filter(|s| s.buyer_id == buyer).map(|s| s.lead_id).collect()
    };
    let (b1_leads, b2_leads) = (of("b1"), of("b2"));
    assert_eq!((b1_leads.len(), b2_leads.len()), (5, 1), "b1's daily cap of 3 sent one lead to b2");

    let unsigned = get(&server, "/portal", "").await;
    assert_eq!((unsigned.status, unsigned.headers["location"].to_str().unwrap()), (303, "/portal/sign-in"));
    let (wrong, none) = sign_in(&server, "not-a-key").await;
    assert_eq!(wrong.status, 401);
    assert!(none.is_none() && page(&wrong).contains("did not match"));
    let (right, _) = sign_in(&server, &buyer_key("b1")).await;
    let cookie = set_cookie(&right, "lr_portal").expect("a session cookie");
    assert!(cookie.contains("Path=/portal") && cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict"));
    assert!(!cookie.contains("lr_console"), "the portal's cookie is its own: {cookie}");
    let session = signed_in(&server, &buyer_key("b1")).await;

    let balance = page(&get(&server, "/portal", &session).await);
    assert!(balance.contains("950.00 EUR") && balance.contains("buyer:b1"), "{balance}");

    let bought = page(&get(&server, "/portal/leads", &session).await);
    assert!(b1_leads.iter().all(|id| bought.contains(id.as_str())), "{bought}");
    assert!(!bought.contains(b2_leads[0].as_str()), "another buyer's lead is not listed");
    assert!(!bought.contains("anna") && !bought.contains("Muster"), "no lead PII");
    // Days are the buyer's (Berlin): the 4th holds three sales.
    let fourth = page(&get(&server, "/portal/leads?from=2026-12-04&to=2026-12-04", &session).await);
    assert_eq!(b1_leads.iter().filter(|id| fourth.contains(id.as_str())).count(), 3, "{fourth}");
    let by_id = page(&get(&server, &format!("/portal/leads?id={}", b1_leads[0]), &session).await);
    assert!(by_id.contains(b1_leads[0].as_str()) && !by_id.contains(b1_leads[1].as_str()));
    let sale_id = sale_of(&server, &b1_leads[1]).sale_id;
    let by_sale = page(&get(&server, &format!("/portal/leads?id={sale_id}"), &session).await);
    assert!(by_sale.contains(b1_leads[1].as_str()), "{by_sale}");
    let foreign = page(&get(&server, &format!("/portal/leads?id={}", b2_leads[0]), &session).await);
    assert!(foreign.contains("No lead bought matches"), "{foreign}");
    let b2_sale = sale_of(&server, &b2_leads[0]).sale_id;
    let foreign_sale = page(&get(&server, &format!("/portal/leads?id={b2_sale}"), &session).await);
    assert!(foreign_sale.contains("No lead bought matches"), "{foreign_sale}");
    let bad = get(&server, "/portal/leads?from=04.12.2026&to=2026-12-01", &session).await;
    assert_eq!(bad.status, 422);
    assert!(page(&bad).contains("id=\"from-search-error\"") && page(&bad).contains("aria-invalid=\"true\""));

    let csv = get(&server, "/portal/leads.csv?from=2026-12-03", &session).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(csv.headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let mut reader = csv::Reader::from_reader(&csv.raw[..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|row| row.expect("a CSV row")).collect();
    assert_eq!(rows.len(), 5);
    let header = reader.headers().expect("a header").clone();
    assert_eq!(&header[0], "sold_at");
    assert!(rows.iter().all(|row| b1_leads.contains(&row[2].to_string()) && &row[6] == "10.00" && &row[7] == "EUR"));

    // The other kind's pages do not exist for a buyer.
    for path in ["/portal/payouts", "/portal/spec"] {
        assert_eq!(get(&server, path, &session).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn a_buyer_sees_its_caps_used_today_and_pauses_and_resumes_only_its_own_campaign() {
    let sink = mock_buyer(|_, _| accept()).await;
    let clock = ManualClock::new(at("2026-12-04T10:00:00Z"));
    let server = start_manual(market(&sink), clock.clone()).await;
    for n in 0..2 {
        assert_eq!(send_lead(&server, SUPPLIER_KEY, n, "tile").await.0, "sold");
    }
    let session = signed_in(&server, &buyer_key("b1")).await;
    let campaigns = page(&get(&server, "/portal/campaigns", &session).await);
    assert!(campaigns.contains("id=\"campaign-c1\"") && !campaigns.contains("campaign-c2"), "{campaigns}");
    assert!(
        campaigns.contains(
            "<th scope=\"row\">daily</th><td class=\"num\">2</td><td class=\"num\">0</td><td class=\"num\">3</td>"
        ),
        "{campaigns}"
    );

    // Without its CSRF token the pause changes nothing.
    let forged = server
        .send(
            "POST",
            &format!("{}/portal/campaigns/c1/pause", server.base),
            &[("cookie", session.as_str()), ("content-type", "application/x-www-form-urlencoded")],
            "csrf=forged",
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c1", None).await.json["active"], true);

    let paused = post_form(&server, &session, "/portal/campaigns", "/portal/campaigns/c1/pause", "").await;
    assert_eq!(paused.status, 200, "{}", page(&paused));
    assert!(page(&paused).contains("Campaign c1 is paused"));
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c1", None).await.json["active"], false);
    let (_, lead_id) = send_lead(&server, SUPPLIER_KEY, 9, "tile").await;
    assert_eq!(sale_of(&server, &lead_id).buyer_id, "b2", "a paused campaign buys nothing");
    let changes = server.admin("GET", "/admin/v1/changes", None).await;
    assert_eq!(changes.json["changes"][0]["by"], "buyer:b1", "{}", changes.json);

    // Another buyer's campaign is not found, and stays as it was.
    let foreign = post_form(&server, &session, "/portal/campaigns", "/portal/campaigns/c2/pause", "").await;
    assert_eq!(foreign.status, 404);
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c2", None).await.json["active"], true);

    let resumed = post_form(&server, &session, "/portal/campaigns", "/portal/campaigns/c1/resume", "").await;
    assert_eq!(resumed.status, 200);
    assert_eq!(server.admin("GET", "/admin/v1/campaigns/c1", None).await.json["active"], true);

    // A rotated key ends the sessions it opened.
    let mut b1 = buyer("b1");
    b1["api_key"] = json!("buyer-key-b1-rotated-xxxxxxxx");
    assert_eq!(server.admin("PUT", "/admin/v1/buyers/b1", Some(&b1)).await.status, 200);
    assert_eq!(get(&server, "/portal", &session).await.status, 303);
    assert_eq!(sign_in(&server, &buyer_key("b1")).await.0.status, 401);
    signed_in(&server, "buyer-key-b1-rotated-xxxxxxxx").await;
}

#[tokio::test]
async fn a_buyer_returns_a_lead_in_the_portal_and_follows_it_to_its_credit() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    let (_, mine) = send_lead(&server, SUPPLIER_KEY, 1, "tile").await;
    let sale_id = sale_of(&server, &mine).sale_id;
    let session = signed_in(&server, &buyer_key("b1")).await;

    let bought = page(&get(&server, "/portal/leads", &session).await);
    assert!(bought.contains(&format!("/portal/returns?sale_id={sale_id}")), "{bought}");
    let form = page(&get(&server, &format!("/portal/returns?sale_id={sale_id}"), &session).await);
    assert!(form.contains(&format!("value=\"{sale_id}\"")), "the form names the sale");

    // A sale of another buyer is as unknown as none.
    let mut b2_sale = None;
    for n in 2..8 {
        let (_, lead_id) = send_lead(&server, SUPPLIER_KEY, n, "tile").await;
        let sale = sale_of(&server, &lead_id);
        if sale.buyer_id == "b2" {
            b2_sale = Some(sale.sale_id);
            break;
        }
    }
    let b2_sale = b2_sale.expect("b2 bought one once b1's cap was reached");
    let refused = post_form(
        &server,
        &session,
        "/portal/returns",
        "/portal/returns",
        &format!("sale_id={b2_sale}&reason=invalid_phone"),
    )
    .await;
    assert_eq!(refused.status, 422);
    assert!(page(&refused).contains("role=\"alert\""));
    assert!(server.running.router.returns().return_of_sale(&b2_sale).is_none());

    let requested = post_form(
        &server,
        &session,
        "/portal/returns",
        "/portal/returns",
        &format!("sale_id={sale_id}&reason=invalid_phone&note=disconnected"),
    )
    .await;
    assert_eq!(requested.status, 200, "{}", page(&requested));
    let html = page(&requested);
    assert!(html.contains("is pending") && html.contains("disconnected"), "{html}");
    let return_id = server.running.router.returns().return_of_sale(&sale_id).expect("a return").return_id;
    let again = post_form(
        &server,
        &session,
        "/portal/returns",
        "/portal/returns",
        &format!("sale_id={sale_id}&reason=invalid_phone"),
    )
    .await;
    assert_eq!(again.status, 422, "one return per sale");

    let approved = server.admin("POST", &format!("/admin/v1/returns/{return_id}/approve"), Some(&json!({}))).await;
    assert_eq!(approved.status, 200, "{}", approved.json);
    let followed = page(&get(&server, "/portal/returns", &session).await);
    assert!(
        followed.contains(&return_id) && followed.contains("approved") && followed.contains("10.00 EUR"),
        "{followed}"
    );
    let balance = page(&get(&server, "/portal", &session).await);
    let spent = server.running.router.sales().all().iter().filter(|s| s.buyer_id == "b1").count() as i64 - 1;
    assert!(balance.contains(&format!("{}.00 EUR", 1000 - 10 * spent)), "credited: {balance}");
}

#[tokio::test]
async fn a_supplier_sees_its_leads_outcomes_sold_rate_payouts_returns_and_spec_and_nothing_else() {
    let sink = mock_buyer(|_, _| accept()).await;
    let clock = ManualClock::new(at("2026-12-03T10:00:00Z"));
    let server = start_manual(market(&sink), clock.clone()).await;
    let (_, first) = send_lead(&server, SUPPLIER_KEY, 1, "tile").await;
    clock.set(at("2026-12-04T10:00:00Z"));
    let (_, second) = send_lead(&server, SUPPLIER_KEY, 2, "tile").await;
    let (status, rejected) = send_lead(&server, SUPPLIER_KEY, 3, "flat").await;
    assert_eq!(status, "rejected");
    let (_, others) = send_lead(&server, OTHER_SUPPLIER_KEY, 4, "tile").await;
    let sale = sale_of(&server, &first);
    let buyer_return = json!({"sale_id": sale.sale_id, "reason": "invalid_phone"});
    let requested = server.supplier("/v1/returns", &buyer_key("b1"), &buyer_return).await;
    let return_id = requested.json["return_id"].as_str().expect("a return").to_string();
    let approved = server.admin("POST", &format!("/admin/v1/returns/{return_id}/approve"), Some(&json!({}))).await;
    assert_eq!(approved.status, 200);

    let session = signed_in(&server, SUPPLIER_KEY).await;
    let sent = page(&get(&server, "/portal", &session).await);
    assert!(sent.contains(&first) && sent.contains(&second) && sent.contains(&rejected), "{sent}");
    assert!(!sent.contains(&others), "another supplier's lead is not listed");
    assert!(sent.contains("ext-3") && sent.contains("rejected (no_eligible_buyer)"), "{sent}");
    assert!(sent.contains("2 of 3 sold (66%)"), "the 30 days' sold rate: {sent}");
    assert!(sent.contains("1 of 2 sold (50%)"), "today's: {sent}");
    let only_rejected = page(&get(&server, "/portal/leads?status=rejected", &session).await);
    assert!(only_rejected.contains(&rejected) && !only_rejected.contains(&second));
    let by_external = page(&get(&server, "/portal/leads?id=ext-2", &session).await);
    assert!(by_external.contains(&second) && !by_external.contains(&rejected));

    let payouts = page(&get(&server, "/portal/payouts", &session).await);
    // A 50% revshare of 10.00 a sale; the return of the first was approved on the 4th.
    assert!(
        payouts.contains("<th scope=\"row\">2026-12-03</th><td class=\"num\">1</td><td class=\"num\">5.00 EUR</td>"),
        "{payouts}"
    );
    assert!(payouts.contains("<th scope=\"row\">2026-12-04</th><td class=\"num\">1</td><td class=\"num\">5.00 EUR</td><td class=\"num\">1</td><td class=\"num\">5.00 EUR</td><td class=\"num\">0.00 EUR</td>"), "{payouts}");
    assert!(payouts.contains("<strong>5.00 EUR</strong>"), "net over the period: {payouts}");
    assert!(payouts.contains("<th scope=\"row\">Total</th><td class=\"num\">2</td><td class=\"num\">10.00 EUR</td><td class=\"num\">1</td>"), "{payouts}");

    let returns = page(&get(&server, "/portal/returns", &session).await);
    assert!(returns.contains(&first) && returns.contains("invalid_phone") && returns.contains("approved"), "{returns}");
    let spec = page(&get(&server, "/portal/spec", &session).await);
    assert!(spec.contains("What s1 may send") && spec.contains("roof_type"), "{spec}");

    for path in ["/portal/campaigns", "/portal/leads.csv"] {
        assert_eq!(get(&server, path, &session).await.status, 404, "{path}");
    }
    let other = signed_in(&server, OTHER_SUPPLIER_KEY).await;
    let theirs = page(&get(&server, "/portal", &other).await);
    assert!(theirs.contains(&others) && !theirs.contains(&first), "{theirs}");
    assert!(page(&get(&server, "/portal/returns", &other).await).contains("No lead of yours was returned"));
}

#[tokio::test]
async fn five_failed_portal_sign_ins_a_minute_make_the_address_wait() {
    let sink = mock_buyer(|_, _| accept()).await;
    let server = start(market(&sink)).await;
    for _ in 0..5 {
        assert_eq!(sign_in(&server, "guess").await.0.status, 401);
    }
    let (limited, session) = sign_in(&server, &buyer_key("b1")).await;
    assert_eq!(limited.status, 429);
    assert!(session.is_none());
}
