//! The operator's console in a real browser (DESIGN §15), on the real binary: a wrong
//! token refused, sign-in with the admin token, the session cookie's flags, the dashboard
//! counting sales made through the API without a reload, and the dashboard at phone width.

use serde_json::Value;

use crate::harness::*;

use crate::router_pages::{ADMIN_TOKEN, MARKET, SUPPLIER_KEY};

/// The router pages' market, with money for its buyer (1000.00 EUR).
pub(crate) fn market() -> String {
    format!("{MARKET}\n[[topups]]\nbuyer_id = \"installer\"\namount = \"1000.00\"\nreference = \"opening\"\n")
}

/// Sells one lead (lead `n` of the test: its own email and phone) through the public API
/// as the supplier; answers the router's answer (`lead_id`, `status`, ...).
pub(crate) async fn sell(public_url: &str, n: u32) -> Value {
    let lead = serde_json::json!({
        "vertical": "solar", "first_name": "Anna", "last_name": "Muster",
        "email": format!("anna{n}@example.com"), "phone": format!("089 {:07}", 1_000_000 + n),
        "zip": "80331", "country": "DE", "fields": {"roof_type": "tile"}
    });
    let headers = [("authorization", &*format!("Bearer {SUPPLIER_KEY}")), ("content-type", "application/json")];
    let answer = http_request("POST", &format!("{public_url}/v1/leads"), &headers, &lead.to_string()).await;
    assert_eq!(answer.status, 200, "a direct post: {answer:?}");
    answer.json
}

/// The number in the dashboard's "Sales" tile of its first group (the last 5 minutes).
pub(crate) const RECENT_SALES: &str = "\
    const tiles = [...document.querySelectorAll('.tiles')][0].querySelectorAll('.tile');\
    const sales = [...tiles].find(t => t.querySelector('.label').textContent === 'Sales');\
    return sales ? Number(sales.querySelector('.value').textContent) : -1;";

#[tokio::test]
async fn an_operator_signs_in_and_the_dashboard_counts_api_sales_without_a_reload() {
    let router = RouterProcess::start_ready_with_config(&market(), ADMIN_TOKEN, &[]).await;
    let mut browser = Browser::start().await;

    browser.goto(&format!("{}/console", router.ops_url())).await;
    assert!(browser.url().await.ends_with("/console/sign-in"), "sent to sign in");
    browser.fill("Password or admin token", "not the token").await;
    browser.click_button("Sign in").await;
    assert!(browser.wait_for_text("p.notice", "did not match").await.contains("did not match"));

    browser.fill("Password or admin token", ADMIN_TOKEN).await;
    browser.click_button("Sign in").await;
    assert_eq!(browser.wait_for_text("h1", "Dashboard").await, "Dashboard");
    let cookie = browser.cookie("lr_console").await;
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"), "{cookie:?}");
    assert!(!cookie.secure, "plain http: {cookie:?}");
    let visible = browser.script("return document.cookie;").await;
    assert!(!visible.as_str().unwrap_or_default().contains("lr_console"), "not readable by scripts");

    // A marker the page keeps unless it is reloaded.
    browser.script("window.notReloaded = true; return null;").await;
    assert_eq!(browser.script(RECENT_SALES).await, 0);
    for n in 0..3 {
        assert_eq!(sell(&router.public_url(), n).await["status"], "sold");
    }
    browser
        .until("the dashboard shows the three sales", || async {
            (browser.script(RECENT_SALES).await.as_i64() == Some(3)).then_some(())
        })
        .await;
    assert_eq!(browser.script("return window.notReloaded === true;").await, true, "updated without a reload");

    browser.set_viewport(Viewport::PHONE).await;
    browser.goto(&format!("{}/console", router.ops_url())).await;
    browser.assert_fits_width().await;

    browser.close().await;
    router.terminate();
}
