//! Decision benchmarks (BENCHMARKS.md):
//! - `decision/{100,1000,10000}`: eligibility (index + every check) and the auction for one
//!   Munich lead against N fixed-price campaigns spread over Germany;
//! - `decision/per_campaign_10000`: the decision as it was before issue 17 (the index,
//!   `check` on each candidate's configuration, an owned `Bid` per bid, every bid ordered);
//! - `decision/full_scan_10000`: the same decision checking all 10,000 campaigns without
//!   the index: the baseline the index is measured against;
//! - `eligibility/candidates_10000`, `eligibility/screen_10000`,
//!   `eligibility/evaluate_10000`: the index lookup alone, then the lookup and every check
//!   (the standing bids and a compact verdict per candidate, what a decision runs), then
//!   the same with every verdict spelled out as a trace needs it, for the same lead at
//!   10,000 campaigns;
//! - `auction/select_323`: the 323 standing bids of that lead ranked as a decision ranks
//!   them (the first `max_winners + FALLBACKS` by partial selection), beside
//!   `auction/order_all_323`: every bid made an owned `Bid` and ordered (`order_offers`);
//! - `lead_json/parse_validate`: a lead body from bytes to a `ValidLead`;
//! - `engine/direct_10000`: a whole direct post in-process (validation, decision, hold,
//!   settle, sale journaled with fsync) with pull delivery, so no network is measured.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use leadrouter::buyers::BuyerClient;
use leadrouter::clock::ManualClock;
use leadrouter::domain::auction::{order_offers, BidRef, Ranking, FALLBACKS};
use leadrouter::domain::eligibility::{check, evaluate, screen, Subject};
use leadrouter::domain::geo::PostalTable;
use leadrouter::domain::lead::{validate_lead, LeadInput};
use leadrouter::domain::market::{Market, MarketConfig};
use leadrouter::domain::model::{Buyer, Campaign, Supplier, Vertical};
use leadrouter::engine::{Deployment, Router};
use leadrouter::store::journal::Journal;
use serde_json::json;

const POSTAL_CSV: &str = include_str!("../assets/geo/postal-centroids.csv");

/// German postal codes, evenly spread over the table.
fn german_zips(count: usize) -> Vec<String> {
    let all: Vec<&str> =
        POSTAL_CSV.lines().filter(|l| l.starts_with("DE,")).filter_map(|l| l.split(',').nth(1)).collect();
    (0..count).map(|i| all[i * all.len() / count].to_string()).collect()
}

/// N fixed-price campaigns of 100 buyers: 70% radius (25–60 km), 20% postal prefixes,
/// 10% whole states; prices 20.00–59.99.
fn market(campaigns: usize) -> Market {
    let buyers: Vec<Buyer> = (0..100)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("b{i}"), "name": format!("Buyer {i}"), "api_key": format!("bench-buyer-key-{i:04}"),
                "webhook_secret": "bench-webhook-secret-0000", "currency": "EUR", "timezone": "Europe/Berlin",
                "billing": {"mode": "prepaid"}
            }))
            .unwrap()
        })
        .collect();
    let zips = german_zips(campaigns);
    let states = ["BY", "BW", "NW", "HE", "NI", "SN", "BE", "HH"];
    let campaigns: Vec<Campaign> = (0..campaigns)
        .map(|i| {
            let filters = match i % 10 {
                0..=6 => json!({"countries": ["DE"], "radius": {"zip": zips[i], "km": 25 + (i % 36)}}),
                7 | 8 => json!({"countries": ["DE"], "zips": [format!("{}*", &zips[i][..2])]}),
                _ => json!({"countries": ["DE"], "states": [states[i % states.len()]]}),
            };
            serde_json::from_value(json!({
                "id": format!("c{i:05}"), "buyer_id": format!("b{}", i % 100), "vertical": "solar",
                "pricing": {"type": "fixed", "price": format!("{}.{:02}", 20 + i % 40, i % 100)},
                "filters": filters,
                "caps": {"daily": 1000},
                "delivery": {"mode": "pull"}
            }))
            .unwrap()
        })
        .collect();
    let vertical: Vertical =
        serde_json::from_value(json!({"name": "solar", "model": "ping_post", "default_country": "DE"})).unwrap();
    let supplier: Supplier = serde_json::from_value(json!({
        "id": "s1", "name": "Portal", "api_key": "bench-supplier-key-0000", "payout": {"type": "revshare", "percent": "60"}
    }))
    .unwrap();
    let config = MarketConfig {
        verticals: vec![vertical],
        suppliers: vec![supplier],
        buyers,
        campaigns,
        ..MarketConfig::default()
    };
    Market::build(config, PostalTable::bundled()).expect("bench market")
}

fn lead_json(n: u64) -> String {
    json!({
        "vertical": "solar", "first_name": "Anna", "last_name": "Muster",
        "email": format!("anna{n}@example.com"), "phone": format!("089 {:07}", 1_000_000 + n % 8_000_000),
        "zip": "80331", "country": "DE", "street": "Marienplatz 1", "city": "München",
        "fields": {"roof_type": "tile", "roof_area_m2": 42, "owner": true},
        "consent": {"tcpa": true, "ip": "203.0.113.7", "captured_at": "2026-11-25T10:00:00Z"}
    })
    .to_string()
}

fn decision(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    let table = PostalTable::bundled();
    let input: LeadInput = serde_json::from_str(&lead_json(1)).unwrap();
    let mut group = c.benchmark_group("decision");
    for size in [100, 1_000, 10_000] {
        let market = market(size);
        let vertical = Arc::clone(market.vertical("solar").unwrap());
        let lead = validate_lead(input.clone(), &vertical, table).unwrap();
        let subject = Subject::of_lead("s1", &lead);
        let evaluation = screen(&market, &subject, vertical.model, now);
        let standing = evaluation.bids().len();
        eprintln!("decision/{size}: {} candidates of {size} campaigns, {standing} eligible bids", evaluation.len());
        let mut turn = 0u64;
        let want = vertical.max_winners as usize + FALLBACKS;
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                turn += 1;
                let bids = screen(&market, &subject, vertical.model, now).take_bids();
                black_box(Ranking::new(&vertical, bids, None, turn, want))
            })
        });
        if size == 10_000 {
            // Baseline in the same run, the decision as it was before issue 17: the index,
            // then `check` on each candidate's configuration, an owned `Bid` per standing
            // bid, and every bid ordered.
            group.bench_function("per_campaign_10000", |b| {
                b.iter(|| {
                    turn += 1;
                    let bids = market
                        .candidates(&subject)
                        .into_iter()
                        .filter(|c| check(c, &subject, now).is_ok())
                        .filter_map(|c| c.campaign.fixed_price().map(|price| c.bid(price)))
                        .collect();
                    black_box(order_offers(&vertical, bids, None, turn))
                })
            });
            // Baseline in the same run: the same decision scanning every campaign (no index).
            group.bench_function("full_scan_10000", |b| {
                b.iter(|| {
                    turn += 1;
                    let bids = market
                        .campaigns()
                        .filter(|c| check(c, &subject, now).is_ok())
                        .filter_map(|c| c.campaign.fixed_price().map(|price| c.bid(price)))
                        .collect();
                    black_box(order_offers(&vertical, bids, None, turn))
                })
            });
        }
    }
    group.finish();
}

/// The parts of `decision/10000` on their own: the index lookup, the checks, the auction.
fn decision_parts(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    let table = PostalTable::bundled();
    let input: LeadInput = serde_json::from_str(&lead_json(1)).unwrap();
    let market = market(10_000);
    let vertical = Arc::clone(market.vertical("solar").unwrap());
    let lead = validate_lead(input, &vertical, table).unwrap();
    let subject = Subject::of_lead("s1", &lead);
    let mut group = c.benchmark_group("eligibility");
    group.bench_function("candidates_10000", |b| b.iter(|| black_box(market.candidates(black_box(&subject)))));
    group.bench_function("screen_10000", |b| {
        b.iter(|| black_box(screen(&market, black_box(&subject), vertical.model, now)))
    });
    group.bench_function("evaluate_10000", |b| {
        b.iter(|| black_box(evaluate(&market, black_box(&subject), vertical.model, now)))
    });
    group.finish();

    let bids: Vec<BidRef<'_>> = screen(&market, &subject, vertical.model, now).take_bids();
    let want = vertical.max_winners as usize + FALLBACKS;
    let mut group = c.benchmark_group("auction");
    let mut turn = 0u64;
    group.bench_function(format!("select_{}", bids.len()), |b| {
        b.iter(|| {
            turn += 1;
            black_box(Ranking::new(&vertical, bids.clone(), None, turn, want))
        })
    });
    group.bench_function(format!("order_all_{}", bids.len()), |b| {
        b.iter(|| {
            turn += 1;
            let owned = bids.iter().map(|b| b.campaign.bid(b.amount)).collect();
            black_box(order_offers(&vertical, owned, None, turn))
        })
    });
    group.finish();
}

fn lead_json_parse(c: &mut Criterion) {
    let market = market(100);
    let vertical = Arc::clone(market.vertical("solar").unwrap());
    let body = lead_json(1);
    let table = PostalTable::bundled();
    c.bench_function("lead_json/parse_validate", |b| {
        b.iter(|| {
            let input: LeadInput = serde_json::from_slice(black_box(body.as_bytes())).unwrap();
            black_box(validate_lead(input, &vertical, table).unwrap())
        })
    });
}

fn engine_direct(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap());
    let data = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(data.path()).unwrap();
    let clock: Arc<dyn leadrouter::clock::Clock> = Arc::new(clock);
    let stores = leadrouter::store::embedded(Arc::new(journal), Arc::clone(&clock));
    let router = Router::new(
        market(10_000),
        PostalTable::bundled(),
        clock,
        stores,
        Deployment::alone(Arc::new(BuyerClient::new())),
    );
    runtime.block_on(async {
        for i in 0..100 {
            router
                .accounts()
                .top_up(
                    &format!("b{i}"),
                    "100000000.00".parse().unwrap(),
                    "bench",
                    &leadrouter::domain::operator::Actor::AdminToken,
                )
                .await
                .unwrap();
        }
    });
    let mut n = 0u64;
    c.bench_function("engine/direct_10000", |b| {
        b.iter(|| {
            n += 1;
            let input: LeadInput = serde_json::from_str(&lead_json(n)).unwrap();
            let answer = runtime.block_on(router.auction().direct("s1", input)).unwrap();
            black_box(answer)
        })
    });
}

criterion_group!(benches, decision, decision_parts, lead_json_parse, engine_direct);
criterion_main!(benches);
