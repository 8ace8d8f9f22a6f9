//! DESIGN §8.2: under any concurrency, settled + held never exceeds a buyer's balance and a
//! cap is never exceeded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;

use crate::harness::*;

fn money(value: &serde_json::Value) -> Decimal {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_pings_and_posts_never_overspend_or_exceed_a_cap() {
    // Slow deliveries keep holds outstanding while other requests compete for the money.
    let sink = mock_buyer(|_, _| Reply::After(Duration::from_millis(15), Box::new(accept()))).await;
    let mut capped = fixed_campaign("c-capped", "capped", "solar", "7.00", &sink.post_url());
    capped["caps"] = json!({"daily": 10});
    let mut broke = fixed_campaign("c-broke", "broke", "solar", "9.00", &sink.post_url());
    broke["tier"] = json!(2);
    let mut solar = vertical("solar", "ping_post");
    solar["tmax_ms"] = json!(2000);
    let server = Arc::new(
        start(json!({
            "verticals": [solar],
            "suppliers": [supplier("s1", SUPPLIER_KEY)],
            "buyers": [buyer("capped"), buyer("broke")],
            "campaigns": [capped, broke],
            "topups": [topup("capped", "1000.00"), topup("broke", "50.00")],
        }))
        .await,
    );

    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (server, running) = (Arc::clone(&server), Arc::clone(&running));
        tokio::spawn(async move {
            let mut samples = 0;
            while running.load(Ordering::SeqCst) {
                for buyer_id in ["capped", "broke"] {
                    let view = server.balance(&buyer_key(buyer_id)).await;
                    assert!(money(&view["available"]) >= Decimal::ZERO, "{buyer_id} overspent: {view}");
                    assert!(money(&view["held"]) <= money(&view["balance"]), "{buyer_id}: {view}");
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            samples
        })
    };

    let mut tasks = Vec::new();
    for n in 0..64u32 {
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                let ping = server.ping(&ping_body("solar")).await;
                assert_eq!(ping.status, 200, "{}", ping.json);
                if ping.json["status"] == "bid" {
                    let post = server.post(ping.json["ping_id"].as_str().unwrap(), &lead("solar", n)).await;
                    assert_eq!(post.status, 200, "{}", post.json);
                }
            } else {
                let direct = server.direct(&lead("solar", n)).await;
                assert_eq!(direct.status, 200, "{}", direct.json);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    running.store(false, Ordering::SeqCst);
    assert!(sampler.await.unwrap() > 0);

    let sales = server.running.router.sales().all();
    let capped_sales = sales.iter().filter(|s| s.buyer_id == "capped").count();
    let broke_sales = sales.iter().filter(|s| s.buyer_id == "broke").count();
    assert!(capped_sales <= 10, "daily cap exceeded: {capped_sales}");
    assert!(broke_sales <= 5, "50.00 buys at most five 9.00 leads: {broke_sales}");
    assert!(capped_sales + broke_sales > 0);
    let broke = server.balance(&buyer_key("broke")).await;
    assert_eq!(money(&broke["balance"]), Decimal::new(5000, 2) - Decimal::from(9 * broke_sales as i64));
    assert_eq!(broke["held"], "0.00");
    assert_eq!(sink.count("/post"), capped_sales + broke_sales, "every delivery settled, none lost");
}
