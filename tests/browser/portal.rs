//! The buyer and supplier portal in a real browser (DESIGN §15), on the real binary: a
//! buyer signs in with its key (a wrong key refused), sees its balance and leads, searches
//! and exports them as CSV, returns one, pauses and resumes its campaign (a form without
//! its CSRF token refused), and another buyer reaches none of it; the supplier sees its
//! leads' outcomes, payouts, the return and its spec. Every page fits a phone.

use serde_json::Value;

use crate::console::sell;
use crate::console_operator::{admin_get, as_buyer, balance, money, returning_market};
use crate::harness::*;
use crate::router_pages::{ADMIN_TOKEN, BUYER_KEY, SUPPLIER_KEY};

const RIVAL_KEY: &str = "browser-rival-key-0123456789";

/// The console's market with returns, and a rival buyer whose cheaper campaign never wins.
fn market() -> String {
    format!(
        r#"{}
[[buyers]]
id = "rival"
name = "Rival"
api_key = "{RIVAL_KEY}"
webhook_secret = "browser-rival-secret-0123456789"
currency = "EUR"
timezone = "Europe/Berlin"
billing = {{ mode = "prepaid", interval = "monthly" }}

[[campaigns]]
id = "rival-solar"
buyer_id = "rival"
vertical = "solar"
pricing = {{ type = "fixed", price = "20.00" }}
filters = {{ countries = ["DE"] }}
delivery = {{ mode = "pull" }}
"#,
        returning_market()
    )
}

/// Signs in to the portal at `router` with `key`; ends on the portal's first page.
pub(crate) async fn portal_sign_in(browser: &Browser, router: &RouterProcess, key: &str, lands_on: &str) {
    browser.goto(&format!("{}/portal/sign-in", router.public_url())).await;
    browser.fill("API key", key).await;
    browser.loads(browser.click_button("Sign in")).await;
    browser.wait_for_text("h1", lands_on).await;
}

async fn open(browser: &Browser, router: &RouterProcess, path: &str, shows: &str) {
    browser.goto(&format!("{}{path}", router.public_url())).await;
    browser.wait_for_text("main", shows).await;
}

/// The text of each body row of the page's first table.
async fn rows(browser: &Browser) -> Vec<String> {
    let mut texts = Vec::new();
    for row in browser.find_all("main table tbody tr").await {
        texts.push(row.text().await.unwrap_or_default());
    }
    texts
}

#[tokio::test]
async fn a_buyer_uses_the_portal_and_another_buyer_reaches_none_of_it() {
    let market = market();
    let (router, mut browser) =
        tokio::join!(RouterProcess::start_ready_with_config(&market, ADMIN_TOKEN, &[]), Browser::start());
    let mut lead_ids = Vec::new();
    for n in 1..=3 {
        let sold = sell(&router.public_url(), n).await;
        assert_eq!(sold["status"], "sold", "{sold}");
        lead_ids.push(sold["lead_id"].as_str().expect("a lead id").to_string());
    }

    browser.goto(&format!("{}/portal", router.public_url())).await;
    assert!(browser.url().await.ends_with("/portal/sign-in"), "sent to sign in");
    browser.fill("API key", "not-a-key").await;
    browser.loads(browser.click_button("Sign in")).await;
    assert!(browser.wait_for_text("p.notice", "did not match").await.contains("did not match"));
    assert_eq!(browser.status().await, 401);
    portal_sign_in(&browser, &router, BUYER_KEY, "Balance").await;
    let cookie = browser.cookie("lr_portal").await;
    assert!(cookie.http_only && cookie.same_site.as_deref() == Some("Strict"), "{cookie:?}");

    // Balance: what the API tells the buyer.
    let api_balance = balance(&router).await;
    assert_eq!(api_balance.to_string(), "886.00", "three sales at 38.00");
    assert!(browser.text("main table").await.contains("886.00 EUR"));

    // Leads bought, then one found by its id.
    browser.loads(browser.click("nav a[href='/portal/leads']")).await;
    browser.wait_for_text("h1", "Leads bought").await;
    let listed = rows(&browser).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(lead_ids.iter().all(|id| listed.iter().any(|row| row.contains(id.as_str()))), "{listed:?}");
    browser.fill("Lead or sale id", &lead_ids[1]).await;
    browser.loads(browser.click_button("Search")).await;
    let found = rows(&browser).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(lead_ids[1].as_str()));
    assert!(!browser.url().await.contains("anna"), "no PII in the URL");

    // The CSV export of every lead bought, as the browser fetches it with its session.
    open(&browser, &router, "/portal/leads", "Export these as CSV").await;
    let csv = browser.script("return fetch('/portal/leads.csv').then(answer => answer.text());").await;
    let csv = csv.as_str().expect("the CSV").to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three sales: {csv}");
    assert!(lines[0].starts_with("sold_at,sale_id,lead_id"), "{csv}");
    assert!(lead_ids.iter().all(|id| csv.contains(id.as_str())));

    // A return, asked for from the lead's row.
    browser.loads(browser.click("main table tbody tr a[href^='/portal/returns?sale_id=']")).await;
    browser.wait_for_text("h1", "Returns").await;
    browser.select("Reason", "invalid_phone").await;
    browser.fill("Note (optional)", "the number is disconnected").await;
    browser.loads(browser.click_button("Request the return")).await;
    let notice = browser.wait_for_text("p.notice", "is pending").await;
    let return_id = notice.split_whitespace().nth(1).expect("the return's id").to_string();
    let followed = as_buyer(&router, "GET", &format!("/v1/returns/{return_id}"), None).await;
    assert_eq!(followed.json["status"], "pending", "{followed:?}");
    assert!(rows(&browser).await.iter().any(|row| row.contains(&return_id) && row.contains("pending")));

    // Pause and resume the campaign; a pause without its CSRF token changes nothing.
    open(&browser, &router, "/portal/campaigns", "installer-solar").await;
    browser.script("document.querySelector(\"main form input[name='csrf']\").remove(); return null;").await;
    browser.loads(browser.click_button("Pause")).await;
    assert!(browser.wait_for_text("main", "Nothing was changed").await.contains("Refused"));
    assert_eq!(browser.status().await, 403);
    assert_eq!(admin_get(&router, "/admin/v1/campaigns/installer-solar").await.json["active"], true);
    open(&browser, &router, "/portal/campaigns", "installer-solar").await;
    browser.loads(browser.click_button("Pause")).await;
    browser.wait_for_text("p.notice", "is paused").await;
    assert_eq!(admin_get(&router, "/admin/v1/campaigns/installer-solar").await.json["active"], false);
    let changes = admin_get(&router, "/admin/v1/changes").await;
    assert_eq!(changes.json["changes"][0]["by"], "buyer:installer", "{:?}", changes.json);
    browser.loads(browser.click_button("Resume")).await;
    browser.wait_for_text("p.notice", "is running").await;
    assert_eq!(admin_get(&router, "/admin/v1/campaigns/installer-solar").await.json["active"], true);

    browser.set_viewport(Viewport::PHONE).await;
    for (path, shows) in [
        ("/portal", "Balance"),
        ("/portal/leads", "Leads bought"),
        ("/portal/returns", "Your returns"),
        ("/portal/campaigns", "installer-solar"),
    ] {
        open(&browser, &router, path, shows).await;
        browser.assert_fits_width().await;
    }
    browser.set_viewport(Viewport::DESKTOP).await;

    // Signed out, then in as the rival: none of the installer's data, nor its campaign.
    open(&browser, &router, "/portal", "Balance").await;
    browser.loads(browser.click_button("Sign out")).await;
    assert!(browser.url().await.ends_with("/portal/sign-in"));
    portal_sign_in(&browser, &router, RIVAL_KEY, "Balance").await;
    assert!(browser.text("main table").await.contains("0.00 EUR"));
    open(&browser, &router, "/portal/leads", "Leads bought").await;
    assert!(browser.text("main").await.contains("No lead bought matches"));
    let source: Value = browser.script("return document.documentElement.outerHTML;").await;
    assert!(lead_ids.iter().all(|id| !source.as_str().unwrap_or_default().contains(id.as_str())));
    open(&browser, &router, &format!("/portal/leads?id={}", lead_ids[0]), "Leads bought").await;
    assert!(browser.text("main").await.contains("No lead bought matches"));
    open(&browser, &router, "/portal/returns", "Your returns").await;
    assert!(!browser.text("main").await.contains(&return_id));
    open(&browser, &router, "/portal/campaigns", "rival-solar").await;
    assert!(!browser.text("main").await.contains("installer-solar"));
    // The installer's campaign, by a form the rival makes itself: not found, unchanged.
    let forged = "const form = document.querySelector('main form'); \
                  form.action = '/portal/campaigns/installer-solar/pause'; form.submit(); return null;";
    browser
        .loads(async {
            browser.script(forged).await;
        })
        .await;
    assert_eq!(browser.status().await, 404);
    assert_eq!(admin_get(&router, "/admin/v1/campaigns/installer-solar").await.json["active"], true);
    open(&browser, &router, "/portal/payouts", "Not found").await;

    browser.close().await;
    router.terminate();
}

#[tokio::test]
async fn a_supplier_sees_its_leads_payouts_returns_and_spec_in_the_portal() {
    let market = market();
    let (router, mut browser) =
        tokio::join!(RouterProcess::start_ready_with_config(&market, ADMIN_TOKEN, &[]), Browser::start());
    let (sale, return_id) = crate::console_operator::sell_and_return(&router, 1).await;
    for n in 2..=3 {
        assert_eq!(sell(&router.public_url(), n).await["status"], "sold");
    }
    // The supplier's 60% of 38.00.
    let payout = money(&serde_json::json!("22.80"));

    portal_sign_in(&browser, &router, SUPPLIER_KEY, "Leads sent").await;
    let main = browser.text("main").await;
    assert!(main.contains("3 of 3 sold (100%)"), "{main}");
    assert!(main.contains(sale["lead_id"].as_str().unwrap()), "{main}");

    browser.loads(browser.click("nav a[href='/portal/payouts']")).await;
    browser.wait_for_text("h1", "Payouts").await;
    let today = rows(&browser).await;
    assert_eq!(today.len(), 1, "{today:?}");
    let earned = format!("{} EUR", payout * rust_decimal::Decimal::from(3));
    assert!(today[0].contains(&earned), "{today:?} holds {earned}");
    assert!(!browser.text("main").await.contains("38.00"), "never the buyer's price");

    browser.loads(browser.click("nav a[href='/portal/returns']")).await;
    let returns = rows(&browser).await;
    assert!(returns.iter().any(|row| row.contains("invalid_phone") && row.contains("pending")), "{returns:?}");
    assert!(returns.iter().any(|row| row.contains(sale["lead_id"].as_str().unwrap())), "{returns:?}");
    let answer = admin_get(&router, &format!("/admin/v1/returns/{return_id}")).await;
    assert_eq!(answer.json["lead_id"], sale["lead_id"], "the row is that return's");

    browser.loads(browser.click("nav a[href='/portal/spec']")).await;
    assert_eq!(browser.wait_for_text("h1", "What solarportal").await, "What solarportal may send");
    assert!(browser.text("main").await.contains("roof_type"));

    browser.set_viewport(Viewport::PHONE).await;
    for (path, shows) in [
        ("/portal", "Leads sent"),
        ("/portal/payouts", "Payouts"),
        ("/portal/returns", "Returns of your leads"),
        ("/portal/spec", "roof_type"),
    ] {
        open(&browser, &router, path, shows).await;
        browser.assert_fits_width().await;
    }
    open(&browser, &router, "/portal/campaigns", "Not found").await;
    assert_eq!(browser.status().await, 404);

    browser.close().await;
    router.terminate();
}
