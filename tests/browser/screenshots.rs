//! Screenshots of the console's pages, for people to look at (a review, the docs): PNGs at
//! a desktop viewport (1280×800) and the dashboard at phone width, of a router with
//! something to show (sales, a pending return, a dead-lettered notification).
//!
//! Taken ONLY when the environment variable `LEADROUTER_SCREENSHOTS` names a directory:
//!
//! ```sh
//! LEADROUTER_SCREENSHOTS=/tmp/shots cargo test --test browser screenshots
//! ```
//!
//! Unset, the test returns at once (and passes): the usual test run takes none. One function
//! per surface (`console`), each given the same `Scene`; the buyer and supplier portal's
//! goes beside it (`portal`, files named `portal-*.png`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::console::{sell, RECENT_SALES};
use crate::console_operator::{admin_get, returning_market, sell_and_return, signed_in};
use crate::harness::*;
use crate::portal::portal_sign_in;
use crate::router_pages::{BUYER_KEY, SUPPLIER_KEY};

/// A router with something on every page, and a browser signed in to its console.
struct Scene {
    router: RouterProcess,
    browser: Browser,
    /// A lead sold, for its decision trace.
    lead_id: String,
}

/// The console's market with returns that wait for an operator, a supplier told of returns
/// at an address where nothing listens (with one attempt, its notifications are dead
/// letters at once), and an inactive webhook campaign to render a test send of.
fn scene_market() -> String {
    let payout = "payout = { type = \"revshare\", percent = \"60\" }\n";
    let market = returning_market();
    assert!(market.contains(payout), "router_pages::MARKET's supplier");
    let notified = format!(
        "{payout}notify_url = \"http://127.0.0.1:9/returns\"\nwebhook_secret = \"screenshot-webhook-secret-0123\"\n"
    );
    let webhook = r#"
[[campaigns]]
id = "installer-webhook"
buyer_id = "installer"
vertical = "solar"
active = false
pricing = { type = "fixed", price = "45.00" }
filters = { countries = ["DE"] }
delivery = { mode = "webhook", url = "http://127.0.0.1:9/leads" }
"#;
    format!("{}{webhook}", market.replacen(payout, &notified, 1))
}

impl Scene {
    async fn start() -> Scene {
        let (router, browser) = signed_in(&scene_market(), &["--outbox-attempts", "1"]).await;
        for n in 1..=3 {
            assert_eq!(sell(&router.public_url(), n).await["status"], "sold");
        }
        let (sale, _) = sell_and_return(&router, 4).await;
        let lead_id = sale["lead_id"].as_str().expect("a lead id").to_string();
        // The supplier's `return.requested`, tried once, is a dead letter.
        browser
            .until("a notification is dead-lettered", || async {
                let dead = admin_get(&router, "/admin/v1/deliveries?status=dead_letter").await;
                dead.json["deliveries"].as_array().is_some_and(|dead| !dead.is_empty()).then_some(())
            })
            .await;
        Scene { router, browser, lead_id }
    }

    /// Goes to `path` on the ops listener and waits until `main` shows `shows`.
    async fn open(&self, path: &str, shows: &str) {
        self.browser.goto(&format!("{}{path}", self.router.ops_url())).await;
        self.browser.wait_for_text("main", shows).await;
    }

    async fn shoot(&self, dir: &Path, name: &str) {
        let png = self.browser.screenshot(&dir.join(name)).await;
        assert!(png_size(&png).is_some(), "{name} is a PNG");
    }
}

#[tokio::test]
async fn screenshots_of_the_console_when_leadrouter_screenshots_names_a_directory() {
    let Some(dir) = std::env::var_os("LEADROUTER_SCREENSHOTS").filter(|dir| !dir.is_empty()).map(PathBuf::from) else {
        return;
    };
    let mut scene = Scene::start().await;
    console(&mut scene, &dir).await;
    portal(&mut scene, &dir).await;
    let Scene { router, browser, .. } = scene;
    browser.close().await;
    router.terminate();
}

/// The operator's console: `console-*.png`.
async fn console(scene: &mut Scene, dir: &Path) {
    scene.browser.set_viewport(Viewport::DESKTOP).await;
    scene.open("/console", "Last 5 minutes").await;
    let browser = &scene.browser;
    browser
        .until("the dashboard counts the sales", || async {
            (browser.script(RECENT_SALES).await.as_i64() >= Some(4)).then_some(())
        })
        .await;
    // Sales count live; revenue comes from the once-a-second samples, so may lag a second.
    browser.wait_for_text("main", "Revenue EUR").await;
    scene.shoot(dir, "console-dashboard.png").await;

    scene.open("/console/buyers", "Balances").await;
    scene.shoot(dir, "console-buyers.png").await;
    scene.open("/console/returns", "Return ret_").await;
    scene.shoot(dir, "console-returns.png").await;
    scene.open("/console/config/campaigns/installer-solar", "installer-solar").await;
    scene.shoot(dir, "console-campaign-editor.png").await;
    let trace = format!("/console/trace?id={}", scene.lead_id);
    scene.open(&trace, "Status: sold").await;
    scene.shoot(dir, "console-trace.png").await;

    // A test send, rendered only (nothing listens at the campaign's URL).
    scene.open("/console/test-send", "Run the test").await;
    let browser = &scene.browser;
    browser.select("Campaign", "installer-webhook").await;
    browser.select("Send it", "no, only render it").await;
    browser.loads(browser.click_button("Run the test")).await;
    browser.wait_for_text("main", "Request").await;
    scene.shoot(dir, "console-test-send.png").await;

    scene.open("/console/changes", "config-file").await;
    scene.shoot(dir, "console-changes.png").await;
    scene.open("/console/deliveries", "Dead letters (").await;
    let dead: Value = scene.browser.script("return document.querySelectorAll('main table').length;").await;
    assert!(dead.as_u64() >= Some(1), "a dead letter is listed");
    scene.shoot(dir, "console-deliveries.png").await;

    scene.browser.set_viewport(Viewport::PHONE).await;
    scene.open("/console", "Last 5 minutes").await;
    scene.shoot(dir, "console-dashboard-phone.png").await;
    scene.browser.set_viewport(Viewport::DESKTOP).await;
}

/// The buyer and supplier portal: `portal-*.png`.
async fn portal(scene: &mut Scene, dir: &Path) {
    let public = scene.router.public_url();
    let browser = &scene.browser;
    portal_sign_in(browser, &scene.router, BUYER_KEY, "Balance").await;
    scene.shoot(dir, "portal-buyer-balance.png").await;
    for (path, shows, name) in [
        ("/portal/leads", "Export these as CSV", "portal-buyer-leads.png"),
        ("/portal/returns", "Your returns", "portal-buyer-returns.png"),
        ("/portal/campaigns", "installer-solar", "portal-buyer-campaigns.png"),
    ] {
        scene.browser.goto(&format!("{public}{path}")).await;
        scene.browser.wait_for_text("main", shows).await;
        scene.shoot(dir, name).await;
    }
    scene.browser.loads(scene.browser.click_button("Sign out")).await;
    portal_sign_in(&scene.browser, &scene.router, SUPPLIER_KEY, "Leads sent").await;
    scene.shoot(dir, "portal-supplier-leads.png").await;
    for (path, shows, name) in [
        ("/portal/payouts", "Net", "portal-supplier-payouts.png"),
        ("/portal/spec", "roof_type", "portal-supplier-spec.png"),
    ] {
        scene.browser.goto(&format!("{public}{path}")).await;
        scene.browser.wait_for_text("main", shows).await;
        scene.shoot(dir, name).await;
    }
    scene.browser.set_viewport(Viewport::PHONE).await;
    scene.browser.goto(&format!("{public}/portal/payouts")).await;
    scene.browser.wait_for_text("main", "Net").await;
    scene.shoot(dir, "portal-supplier-payouts-phone.png").await;
    scene.browser.set_viewport(Viewport::DESKTOP).await;
}
