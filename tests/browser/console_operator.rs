//! What an operator does in the console (DESIGN §15), in a real browser on the real binary,
//! each step checked twice: on the page the action leads to, and behind it, through the
//! admin API (with the admin token) or the public API (with the buyer's key). A campaign
//! made in the config editor and two refused with field errors; a top-up and refused
//! amounts; the returns queue, one approved and one rejected with a reason; a lead's
//! decision trace and an unknown id; a form without its CSRF token refused, and sign-out
//! ending the session; the pages at phone width, and the admin changes naming who made them.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::console::{market, sell};
use crate::harness::*;
use crate::router_pages::{ADMIN_TOKEN, BUYER_KEY};

/// The label of the config editor's text area.
const SETTINGS: &str = "Settings (JSON, as the admin API takes them; secrets shown as *** are kept)";
/// The label of the top-up form's reference.
const REFERENCE: &str = "Reference (e.g. the bank transfer's)";

// ------------------------------------------------------------------------ helpers

/// The console's market (`console::market`, 1000.00 EUR for the buyer) whose campaign takes
/// returns for a week, each waiting for an operator's decision.
pub(crate) fn returning_market() -> String {
    let pull = "delivery = { mode = \"pull\" }\n";
    let market = market();
    assert!(market.contains(pull), "router_pages::MARKET's campaign delivers by pull");
    market.replacen(pull, &format!("{pull}return_window_days = 7\nreturns_require_approval = true\n"), 1)
}

/// Signs in to the router's console with the admin token; ends on the dashboard.
pub(crate) async fn sign_in(browser: &Browser, router: &RouterProcess) {
    browser.goto(&format!("{}/console/sign-in", router.ops_url())).await;
    browser.fill("Password or admin token", ADMIN_TOKEN).await;
    browser.click_button("Sign in").await;
    browser.wait_for_text("h1", "Dashboard").await;
}

/// A router on `config` (with `more` flags), ready, and a browser signed in to its console
/// with the admin token (both start at once).
pub(crate) async fn signed_in(config: &str, more: &[&str]) -> (RouterProcess, Browser) {
    let (router, browser) =
        tokio::join!(RouterProcess::start_ready_with_config(config, ADMIN_TOKEN, more), Browser::start());
    sign_in(&browser, &router).await;
    (router, browser)
}

/// `GET` of the admin API (`path` on the ops listener) with the admin token.
pub(crate) async fn admin_get(router: &RouterProcess, path: &str) -> HttpAnswer {
    let token = format!("Bearer {ADMIN_TOKEN}");
    http_request("GET", &format!("{}{path}", router.ops_url()), &[("authorization", &token)], "").await
}

/// A call of the public API as the buyer (with its key), with a JSON body when given.
pub(crate) async fn as_buyer(router: &RouterProcess, method: &str, path: &str, body: Option<Value>) -> HttpAnswer {
    let key = format!("Bearer {BUYER_KEY}");
    let mut headers = vec![("authorization", key.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    http_request(method, &format!("{}{path}", router.public_url()), &headers, &body).await
}

/// The buyer's balance as `GET /v1/buyer/balance` tells the buyer.
pub(crate) async fn balance(router: &RouterProcess) -> Decimal {
    let answer = as_buyer(router, "GET", "/v1/buyer/balance", None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    money(&answer.json["balance"])
}

/// A decimal string of the API ("38.00").
pub(crate) fn money(value: &Value) -> Decimal {
    value.as_str().and_then(|text| Decimal::from_str(text).ok()).unwrap_or_else(|| panic!("not money: {value}"))
}

/// An amount written as the API writes it.
fn euros(amount: &str) -> Decimal {
    Decimal::from_str(amount).expect("an amount")
}

/// Sells lead `n` (`console::sell`) and has the buyer ask to return it (`POST
/// /v1/returns`, the sale's id from pulling `GET /v1/buyer/leads`); answers the sale as the
/// buyer pulled it (`sale_id`, `lead_id`, `price`, ...) and the pending return's id.
pub(crate) async fn sell_and_return(router: &RouterProcess, n: u32) -> (Value, String) {
    let sold = sell(&router.public_url(), n).await;
    assert_eq!(sold["status"], "sold", "{sold}");
    let pulled = as_buyer(router, "GET", "/v1/buyer/leads", None).await;
    assert_eq!(pulled.status, 200, "{pulled:?}");
    let leads = pulled.json["leads"].as_array().cloned().unwrap_or_default();
    let sale = leads.into_iter().find(|lead| lead["lead_id"] == sold["lead_id"]);
    let sale = sale.unwrap_or_else(|| panic!("the buyer pulls {}: {}", sold["lead_id"], pulled.json));
    let asked = json!({"sale_id": sale["sale_id"], "reason": "invalid_phone"});
    let asked = as_buyer(router, "POST", "/v1/returns", Some(asked)).await;
    assert_eq!((asked.status, asked.json["status"].as_str()), (201, Some("pending")), "{asked:?}");
    let return_id = asked.json["return_id"].as_str().expect("a return id").to_string();
    (sale, return_id)
}

/// Types a new campaign into the config editor (`id`, its settings as JSON) and saves it;
/// the page that answers is shown.
pub(crate) async fn save_new_campaign(browser: &Browser, router: &RouterProcess, id: &str, settings: &Value) {
    browser.goto(&format!("{}/console/config/campaigns/new", router.ops_url())).await;
    assert_eq!(browser.text("h1").await, "New: Campaigns");
    browser.fill("Id (id)", id).await;
    browser.fill(SETTINGS, &serde_json::to_string_pretty(settings).unwrap()).await;
    browser.loads(browser.click_button("Save")).await;
}

/// Tops the buyer up on the buyers page (`amount` as typed); the page that answers is shown.
pub(crate) async fn top_up(browser: &Browser, router: &RouterProcess, amount: &str, reference: &str) {
    browser.goto(&format!("{}/console/buyers", router.ops_url())).await;
    browser.select("Buyer", "Installer (installer)").await;
    browser.fill("Amount", amount).await;
    browser.fill(REFERENCE, reference).await;
    browser.loads(browser.click_button("Top up")).await;
}

/// The buyer's row of the balances table, as shown.
async fn balance_row(browser: &Browser) -> String {
    browser.text("main table tbody tr").await
}

/// The rows of the page's (first) table, each as its cells' texts.
async fn table_rows(browser: &Browser) -> Vec<Vec<String>> {
    let rows = browser
        .script(
            "return [...document.querySelectorAll('main table tbody tr')]\
             .map(row => [...row.cells].map(cell => cell.textContent.trim()));",
        )
        .await;
    serde_json::from_value(rows).expect("rows of cells")
}

/// The ids of the returns the returns queue shows, in its order.
async fn queued_returns(browser: &Browser) -> Vec<String> {
    let ids = browser.script("return [...document.querySelectorAll('main section h2')].map(h => h.id);").await;
    let ids: Vec<String> = serde_json::from_value(ids).expect("heading ids");
    ids.iter().map(|id| id.trim_start_matches("return-").to_string()).collect()
}

/// The admin changes of `kind` (`put_campaign`, `top_up`, ...) made with the admin token
/// (as the console signed in with it records them; the config file's opening top-up is
/// `config-file`'s), as `GET /admin/v1/changes` lists them.
async fn changes_of(router: &RouterProcess, kind: &str) -> Vec<Value> {
    let changes = admin_get(router, "/admin/v1/changes").await;
    assert_eq!(changes.status, 200, "{changes:?}");
    let all = changes.json["changes"].as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|change| change["kind"] == kind && change["by"] == "admin-token").collect()
}

/// A property of the first element matching `css` (an input's `value`: what it holds now).
async fn property(browser: &Browser, css: &str, name: &str) -> Option<String> {
    let element = browser.find(css).await;
    element.prop(name).await.unwrap_or_else(|error| panic!("{css}'s {name}: {error}"))
}

/// An attribute of the first element matching `css`.
async fn attribute(browser: &Browser, css: &str, name: &str) -> Option<String> {
    let element = browser.find(css).await;
    element.attr(name).await.unwrap_or_else(|error| panic!("{css}'s {name}: {error}"))
}

/// The page shown is a refusal: `status`, its sentence as an alert.
async fn assert_refused(browser: &Browser, status: u16) {
    assert_eq!(browser.status().await, status, "on {}", browser.url().await);
    assert_eq!(attribute(browser, "p.notice.bad", "role").await.as_deref(), Some("alert"));
}

// ------------------------------------------------------------------------ tests

#[tokio::test]
async fn a_campaign_made_in_the_config_editor_is_stored_and_one_refused_shows_its_field_errors_and_stores_nothing() {
    let (router, browser) = signed_in(&market(), &[]).await;
    let id = "installer-flat-roofs";
    let stored = format!("/admin/v1/campaigns/{id}");
    let mut settings = json!({
        "buyer_id": "installer", "vertical": "wind", "pricing": {"type": "fixed", "price": "41.50"},
        "filters": {"countries": ["DE"]}, "delivery": {"mode": "pull"},
    });

    // A vertical the router does not have: the error by its field, beside the editor, and
    // what was typed kept to mend.
    save_new_campaign(&browser, &router, id, &settings).await;
    assert_eq!(browser.wait_for_text("#object-errors", "vertical").await, "vertical: unknown vertical");
    assert_refused(&browser, 422).await;
    assert_eq!(attribute(&browser, "#object-json", "aria-invalid").await.as_deref(), Some("true"));
    assert_eq!(attribute(&browser, "#object-json", "aria-describedby").await.as_deref(), Some("object-errors"));
    let kept = property(&browser, "#object-json", "value").await.unwrap_or_default();
    assert_eq!(serde_json::from_str::<Value>(&kept).ok(), Some(settings.clone()), "the editor keeps what was typed");
    assert_eq!(property(&browser, "#object-id", "value").await.as_deref(), Some(id));
    assert_eq!(admin_get(&router, &stored).await.status, 404, "nothing stored");

    // A price below zero: its path inside the object.
    settings["vertical"] = json!("solar");
    settings["pricing"]["price"] = json!("-5.00");
    save_new_campaign(&browser, &router, id, &settings).await;
    assert_eq!(browser.text("#object-errors").await, "pricing.price: must not be negative");
    assert_refused(&browser, 422).await;
    assert_eq!(admin_get(&router, &stored).await.status, 404, "nothing stored");
    let listed = admin_get(&router, "/admin/v1/campaigns").await;
    assert_eq!(listed.json["campaigns"].as_array().map(Vec::len), Some(1), "{listed:?}");
    assert!(changes_of(&router, "put_campaign").await.is_empty(), "no change recorded");

    // Mended: created, and the editor now shows the campaign as stored.
    settings["pricing"]["price"] = json!("41.50");
    save_new_campaign(&browser, &router, id, &settings).await;
    assert_eq!(browser.text("p.notice").await, format!("Created {id}."));
    assert_eq!(browser.status().await, 200);
    assert_eq!(browser.text("h1").await, format!("Campaigns: {id}"));
    assert!(browser.find_all("#object-errors").await.is_empty());
    let answer = admin_get(&router, &stored).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let campaign = &answer.json;
    assert_eq!(
        (&campaign["id"], &campaign["buyer_id"], &campaign["vertical"]),
        (&json!(id), &json!("installer"), &json!("solar"))
    );
    assert_eq!(campaign["pricing"], json!({"type": "fixed", "price": "41.50"}));
    assert_eq!(campaign["delivery"]["mode"], "pull");
    assert_eq!(changes_of(&router, "put_campaign").await.len(), 1);
    let shown = property(&browser, "#object-json", "value").await.unwrap_or_default();
    assert_eq!(serde_json::from_str::<Value>(&shown).ok().as_ref(), Some(campaign), "the editor shows it as stored");
    // And the list of campaigns has it.
    browser.goto(&format!("{}/console/config/campaigns", router.ops_url())).await;
    browser.click(&format!("main a[href='/console/config/campaigns/{id}']")).await;
    assert_eq!(browser.wait_for_text("h1", id).await, format!("Campaigns: {id}"));

    browser.close().await;
    router.terminate();
}

#[tokio::test]
async fn a_top_up_on_the_buyers_page_shows_the_balance_the_buyer_sees_and_a_bad_amount_changes_nothing() {
    let (router, browser) = signed_in(&market(), &[]).await;
    assert_eq!(balance(&router).await, euros("1000.00"));

    top_up(&browser, &router, "25.50", "transfer 4711").await;
    assert_eq!(browser.text("p.notice.good").await, "Topped up 25.50: the balance is 1025.50.");
    assert_eq!(browser.status().await, 200);
    let row = balance_row(&browser).await;
    assert!(row.contains("1025.50 EUR"), "{row}");
    assert_eq!(balance(&router).await, euros("1025.50"), "the buyer sees it too");
    // A reload of the answer posts the form again: the same reference is refused.
    browser.loads(async { browser.client().refresh().await.expect("a reload") }).await;
    assert!(browser.text("p.notice.bad").await.contains("already booked"), "booked once");
    assert_eq!(balance(&router).await, euros("1025.50"), "booked once");

    for (amount, error) in [("-5", "must be positive"), ("abc", "")] {
        top_up(&browser, &router, amount, "transfer 4712").await;
        assert_refused(&browser, 422).await;
        let shown = browser.text("#amount-top-up-error").await;
        assert!(shown.contains(error) && !shown.is_empty(), "{amount:?}: {shown}");
        assert_eq!(attribute(&browser, "#amount-top-up", "aria-invalid").await.as_deref(), Some("true"));
        let described = attribute(&browser, "#amount-top-up", "aria-describedby").await;
        assert_eq!(described.as_deref(), Some("amount-top-up-error"), "the error is tied to the field");
        assert_eq!(property(&browser, "#amount-top-up", "value").await.as_deref(), Some(amount), "kept to mend");
        let row = balance_row(&browser).await;
        assert!(row.contains("1025.50 EUR"), "{amount:?}: {row}");
        assert_eq!(balance(&router).await, euros("1025.50"), "{amount:?} changed nothing");
    }
    assert_eq!(changes_of(&router, "top_up").await.len(), 1, "one top-up recorded");

    browser.close().await;
    router.terminate();
}

#[tokio::test]
async fn the_returns_queue_approves_one_return_and_rejects_another_with_a_reason() {
    let (router, browser) = signed_in(&returning_market(), &[]).await;
    let (approved_sale, approved) = sell_and_return(&router, 1).await;
    let (_, rejected) = sell_and_return(&router, 2).await;
    let before = balance(&router).await;

    browser.goto(&format!("{}/console/returns", router.ops_url())).await;
    assert_eq!(browser.text("h1").await, "Returns to decide");
    assert_eq!(queued_returns(&browser).await, [approved.as_str(), rejected.as_str()], "oldest first");
    let tile = browser.text(&format!("section[aria-labelledby='return-{approved}']")).await;
    assert!(tile.contains(approved_sale["sale_id"].as_str().unwrap()) && tile.contains("invalid_phone"), "{tile}");

    // Approve the first.
    let approve = format!("form[action='/console/returns/{approved}/approve'] button");
    browser.loads(browser.click(&approve)).await;
    assert_eq!(browser.text("p.notice.good").await, format!("Return {approved} approved."));
    assert_eq!(browser.status().await, 200);
    assert_eq!(queued_returns(&browser).await, [rejected.as_str()]);

    // A rejection needs a reason: refused without one, the error beside this return's field.
    browser.loads(browser.click_button("Reject")).await;
    assert_refused(&browser, 422).await;
    let error = browser.text(&format!("#reason-{rejected}-error")).await;
    assert!(!error.is_empty());
    assert_eq!(admin_get(&router, &format!("/admin/v1/returns/{rejected}")).await.json["status"], "pending");

    // Rejected with a typed reason.
    let reason = "The phone number reaches the person who asked";
    browser.fill("Reason for rejecting", reason).await;
    browser.loads(browser.click_button("Reject")).await;
    assert_eq!(browser.text("p.notice.good").await, format!("Return {rejected} rejected."));
    assert!(queued_returns(&browser).await.is_empty());
    browser.goto(&format!("{}/console/returns", router.ops_url())).await;
    assert_eq!(browser.text("main p").await, "No return is waiting for a decision.");

    // What the router did.
    let first = admin_get(&router, &format!("/admin/v1/returns/{approved}")).await;
    assert_eq!(first.json["status"], "approved", "{first:?}");
    let second = admin_get(&router, &format!("/admin/v1/returns/{rejected}")).await;
    assert_eq!((&second.json["status"], &second.json["resolution_reason"]), (&json!("rejected"), &json!(reason)));
    assert_eq!(balance(&router).await, before + money(&approved_sale["price"]), "the approved price back");
    let decisions = changes_of(&router, "return_decision").await;
    assert_eq!(decisions.len(), 2, "{decisions:?}");

    browser.close().await;
    router.terminate();
}

#[tokio::test]
async fn a_leads_decision_trace_shows_each_campaign_and_the_outcome_and_an_unknown_id_is_not_found() {
    let (router, browser) = signed_in(&market(), &[]).await;
    let sold = sell(&router.public_url(), 1).await;
    assert_eq!(sold["status"], "sold", "{sold}");
    let lead_id = sold["lead_id"].as_str().expect("a lead id");

    browser.goto(&format!("{}/console/trace", router.ops_url())).await;
    browser.fill("Lead or ping id", lead_id).await;
    browser.loads(browser.click_button("Show")).await;
    assert_eq!(browser.text("main h2").await, format!("lead {lead_id}"));
    assert_eq!(browser.status().await, 200);
    let summary = browser.text("main h2 + p").await;
    assert!(summary.contains("Vertical solar") && summary.contains("Status: sold"), "{summary}");
    let rows = table_rows(&browser).await;
    assert!(
        rows.iter().any(|row| row[1] == "installer-solar" && row[2] == "installer" && row[3] == "sold"),
        "{rows:?}"
    );

    // The same trace as the admin API's.
    let trace = admin_get(&router, &format!("/admin/v1/leads/{lead_id}/trace")).await;
    assert_eq!((trace.status, &trace.json["status"]), (200, &json!("sold")), "{trace:?}");
    let entries = trace.json["entries"].as_array().cloned().unwrap_or_default();
    let campaigns: Vec<&str> = entries.iter().filter_map(|entry| entry["campaign_id"].as_str()).collect();
    let shown: Vec<&str> = rows.iter().map(|row| row[1].as_str()).collect();
    assert_eq!(shown, campaigns, "every campaign considered, in order");
    let outcomes: Vec<String> =
        entries.iter().map(|entry| entry["outcome"].as_str().unwrap_or_default().replace('_', " ")).collect();
    let shown: Vec<String> = rows.iter().map(|row| row[3].replace("rejected the post", "rejected post")).collect();
    assert_eq!(shown, outcomes);

    // An id the router never saw.
    let unknown = "led_NoSuchLead000000000";
    browser.fill("Lead or ping id", unknown).await;
    browser.loads(browser.click_button("Show")).await;
    assert_eq!(browser.status().await, 404);
    let notice = browser.text("p.notice.bad").await;
    assert!(notice.starts_with(&format!("This node has no trace of {unknown}.")), "{notice}");
    assert!(browser.find_all("main table").await.is_empty());
    assert_eq!(admin_get(&router, &format!("/admin/v1/leads/{unknown}/trace")).await.status, 404);

    browser.close().await;
    router.terminate();
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_after_sign_out_the_old_cookie_opens_nothing() {
    let (router, browser) = signed_in(&market(), &[]).await;
    let buyers = format!("{}/console/buyers", router.ops_url());
    let token_field = "form[action='/console/top-ups'] input[name=csrf]";

    // The top-up form, its token taken out by a script (as a forged form has none).
    browser.goto(&buyers).await;
    let csrf = property(&browser, token_field, "value").await.expect("the form's token");
    browser.script(&format!("document.querySelector(\"{token_field}\").remove(); return null;")).await;
    browser.fill("Amount", "5.00").await;
    browser.fill(REFERENCE, "forged").await;
    browser.loads(browser.click_button("Top up")).await;
    assert_eq!(browser.text("h1").await, "Refused");
    assert!(browser.text("p.notice.bad").await.contains("Nothing was changed"));
    assert_refused(&browser, 403).await;
    assert_eq!(balance(&router).await, euros("1000.00"), "nothing changed");

    // A token, but not this session's.
    browser.goto(&buyers).await;
    browser
        .script(&format!("document.querySelector(\"{token_field}\").value = '{}'; return null;", "0".repeat(64)))
        .await;
    browser.fill("Amount", "5.00").await;
    browser.fill(REFERENCE, "forged").await;
    browser.loads(browser.click_button("Top up")).await;
    assert_eq!(browser.text("h1").await, "Refused");
    assert_eq!(browser.status().await, 403);
    assert_eq!(balance(&router).await, euros("1000.00"), "nothing changed");
    assert!(changes_of(&router, "top_up").await.is_empty());
    browser.goto(&buyers).await;
    assert!(balance_row(&browser).await.contains("1000.00 EUR"));

    // Sign-out: back to sign-in, the cookie gone, the console closed.
    let session = browser.cookie("lr_console").await.value;
    browser.loads(browser.click_button("Sign out")).await;
    assert!(browser.url().await.ends_with("/console/sign-in"), "{}", browser.url().await);
    assert_eq!(browser.text("h1").await, "Sign in");
    assert!(browser.cookies().await.iter().all(|cookie| cookie.name != "lr_console"), "the cookie is removed");
    browser.goto(&format!("{}/console", router.ops_url())).await;
    assert!(browser.url().await.ends_with("/console/sign-in"), "{}", browser.url().await);

    // The old cookie, sent again (with its form's token), opens nothing and changes nothing.
    let cookie = format!("lr_console={session}");
    let page = http_request("GET", &buyers, &[("cookie", &cookie)], "").await;
    assert_eq!(
        (page.status, page.headers.get("location").map(|l| l.to_str().unwrap())),
        (303, Some("/console/sign-in"))
    );
    let form = format!("csrf={csrf}&buyer_id=installer&amount=5.00&reference=replayed");
    let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let post = http_request("POST", &format!("{}/console/top-ups", router.ops_url()), &headers, &form).await;
    assert_eq!(
        (post.status, post.headers.get("location").map(|l| l.to_str().unwrap())),
        (303, Some("/console/sign-in"))
    );
    assert_eq!(balance(&router).await, euros("1000.00"), "nothing changed");

    browser.close().await;
    router.terminate();
}

#[tokio::test]
async fn the_operators_pages_fit_a_phone_and_the_admin_changes_name_who_made_them() {
    let (router, mut browser) = signed_in(&returning_market(), &[]).await;
    let id = "installer-phone";
    // For leads from Austria: the sale below goes to the campaign of the config file.
    let settings = json!({
        "buyer_id": "installer", "vertical": "solar", "pricing": {"type": "fixed", "price": "12.00"},
        "filters": {"countries": ["AT"]}, "delivery": {"mode": "pull"},
    });
    save_new_campaign(&browser, &router, id, &settings).await;
    assert_eq!(browser.text("p.notice").await, format!("Created {id}."));
    top_up(&browser, &router, "12.00", "phone check").await;
    assert!(browser.text("p.notice").await.starts_with("Topped up 12.00"));
    let (sale, return_id) = sell_and_return(&router, 1).await;

    browser.set_viewport(Viewport::PHONE).await;
    let ops = router.ops_url();
    let lead_id = sale["lead_id"].as_str().unwrap();
    let pages = [
        (format!("{ops}/console/buyers"), "Balances".to_string()),
        (format!("{ops}/console/returns"), return_id),
        (format!("{ops}/console/trace?id={lead_id}"), "installer-solar".to_string()),
        (format!("{ops}/console/config/campaigns/{id}"), id.to_string()),
        (format!("{ops}/console/changes"), "admin-token".to_string()),
    ];
    for (url, shows) in &pages {
        browser.goto(url).await;
        browser.wait_for_text("main", shows).await;
        browser.assert_fits_width().await;
    }

    // The changes page (shown last) lists the campaign and the top-up with who made them.
    // Rows: when, who, what, object, summary.
    let rows = table_rows(&browser).await;
    let made = |kind: &str, object: &str, summary: &str| {
        let found = rows.iter().find(|row| row[2] == kind && row[3] == object && row[4].contains(summary));
        found.unwrap_or_else(|| panic!("no {kind} of {object} ({summary}) in {rows:?}")).clone()
    };
    assert_eq!(made("put_campaign", &format!("campaign {id}"), "fixed 12.00")[1], "admin-token");
    assert_eq!(made("top_up", "buyer installer", "12.00 EUR, reference \"phone check\"")[1], "admin-token");
    // As the admin API lists them.
    for (kind, object) in [("put_campaign", format!("campaign {id}")), ("top_up", "buyer installer".to_string())] {
        let changes = changes_of(&router, kind).await;
        assert!(
            changes.iter().any(|change| change["object"] == object && change["by"] == "admin-token"),
            "{changes:?}"
        );
    }

    browser.close().await;
    router.terminate();
}
