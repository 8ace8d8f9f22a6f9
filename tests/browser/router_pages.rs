//! The real router binary's pages, as a browser gets them: the ops listener's health, the
//! public API's OpenAPI document, and a supplier's spec page (DESIGN §5.2).

use serde_json::Value;

use crate::harness::*;

pub(crate) const ADMIN_TOKEN: &str = "browser-admin-token-0123456789";
pub(crate) const SUPPLIER_KEY: &str = "browser-supplier-key-0123456789";
/// The buyer's key in `MARKET`.
pub(crate) const BUYER_KEY: &str = "browser-buyer-key-0123456789";

/// One vertical, a supplier and a buyer whose campaign takes the supplier's leads (by
/// pull). The console's tests add a top-up to it.
pub(crate) const MARKET: &str = r#"
[[verticals]]
name = "solar"
model = "ping_post"
tmax_ms = 300
default_country = "DE"
required_fields = ["roof_type"]

[[suppliers]]
id = "solarportal"
name = "Solarportal"
api_key = "browser-supplier-key-0123456789"
payout = { type = "revshare", percent = "60" }

[[buyers]]
id = "installer"
name = "Installer"
api_key = "browser-buyer-key-0123456789"
webhook_secret = "browser-webhook-secret-0123456789"
currency = "EUR"
timezone = "Europe/Berlin"
billing = { mode = "prepaid", interval = "monthly" }

[[campaigns]]
id = "installer-solar"
buyer_id = "installer"
vertical = "solar"
pricing = { type = "fixed", price = "38.00" }
filters = { countries = ["DE"], rules = [{ field = "roof_type", op = "in", value = ["tile", "flat"] }] }
delivery = { mode = "pull" }
"#;

#[tokio::test]
async fn the_router_serves_its_pages_to_a_real_browser() {
    let router = RouterProcess::start_ready_with_config(MARKET, ADMIN_TOKEN, &[]).await;
    let browser = Browser::start().await;

    // JSON pages: Chromium shows them as text, read back as JSON.
    browser.goto(&format!("{}/healthz", router.ops_url())).await;
    assert_eq!(browser.json().await, serde_json::json!({"status": "ok"}));
    browser.goto(&format!("{}/v1/openapi.json", router.public_url())).await;
    let openapi = browser.json().await;
    assert!(openapi["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")), "{openapi}");
    assert!(openapi["paths"].get("/v1/leads").is_some());

    // The spec page needs the supplier's key, which the browser now sends with each request.
    browser.send_headers(&[("Authorization", &format!("Bearer {SUPPLIER_KEY}"))]).await;
    browser.goto(&format!("{}/v1/supplier/spec", router.public_url())).await;
    assert_eq!(browser.title().await, "Supplier spec: solarportal");
    assert_eq!(browser.text("h1").await, "What solarportal may send");
    assert_eq!(browser.text("section h2").await, "solar");
    let required = browser.text("section table").await;
    assert!(required.contains("roof_type"), "{required}");
    // Its link to the API document leads there.
    browser.click("a[href='/v1/openapi.json']").await;
    let openapi: Value = browser.json().await;
    assert!(openapi["paths"].get("/v1/supplier/spec").is_some());
    // And back (through the WebDriver client itself, for what the harness has no helper).
    browser.client().back().await.unwrap();
    assert_eq!(browser.wait_for_text("h1", "What").await, "What solarportal may send");

    browser.close().await;
    router.terminate();
}
