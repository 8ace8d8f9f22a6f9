//! Caps and schedules take their time from the injected clock, in the campaign's time zone,
//! across DST changes: tests move the clock instead of sleeping.

use chrono::{Duration, TimeZone, Utc};
use leadrouter::clock::ManualClock;
use serde_json::json;

use crate::harness::*;

fn capped_market(sink: &MockBuyer) -> serde_json::Value {
    let mut campaign = fixed_campaign("c1", "b1", "solar", "10.00", &sink.post_url());
    campaign["caps"] = json!({"daily": 2});
    campaign["schedule"] = json!({"sun": ["00:00-24:00"], "mon": ["08:00-18:00"]});
    json!({
        "verticals": [vertical("solar", "ping_post")],
        "suppliers": [supplier("s1", SUPPLIER_KEY)],
        "buyers": [buyer("b1")],
        "campaigns": [campaign],
        "topups": [topup("b1", "1000.00")],
    })
}

#[tokio::test]
async fn a_daily_cap_resets_at_local_midnight_on_the_25_hour_dst_day() {
    let sink = mock_buyer(|_, _| accept()).await;
    // Sunday 2026-10-25 in Berlin has 25 hours: 00:00 CEST is 22:00 UTC the day before,
    // and the next local midnight is 23:00 UTC on the 25th.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 10, 24, 22, 30, 0).unwrap());
    let server = start_manual(capped_market(&sink), clock.clone()).await;
    let mut n = 0;
    let mut sell = || {
        n += 1;
        lead("solar", n)
    };
    assert_eq!(server.direct(&sell()).await.json["status"], "sold");
    clock.set(Utc.with_ymd_and_hms(2026, 10, 25, 12, 0, 0).unwrap());
    assert_eq!(server.direct(&sell()).await.json["status"], "sold");
    clock.set(Utc.with_ymd_and_hms(2026, 10, 25, 22, 59, 0).unwrap());
    let capped = server.direct(&sell()).await;
    assert_eq!(capped.json["status"], "rejected", "still Sunday locally (23:59 CET): {}", capped.json);
    let trace = server.trace("leads", capped.json["lead_id"].as_str().unwrap()).await;
    assert!(
        trace["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "filtered" && e["reason"] == "cap_reached" && e["detail"] == "daily"),
        "{trace}"
    );

    // Monday 00:01 local: a new day, but the schedule opens at 08:00.
    clock.set(Utc.with_ymd_and_hms(2026, 10, 25, 23, 1, 0).unwrap());
    assert_eq!(server.direct(&sell()).await.json["status"], "rejected", "closed before 08:00");
    clock.advance(Duration::hours(8));
    assert_eq!(server.direct(&sell()).await.json["status"], "sold", "Monday 08:01 CET: open, new cap window");
}
