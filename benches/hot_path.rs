//! The direct post's hot functions, as the profile of issue 17 named them (BENCHMARKS.md,
//! "Hot path (issue 17): direct posts"): the phone number's E.164 normalization (the
//! largest item of our own code in the profile), the lead's parse and validation, the
//! buyer's native post body (the `serde_json::Value` it was built as before, and the direct
//! serialization that replaced it), its signature, the sale's journal record, a copy of
//! the sale (two of the four per sale are gone), and one metric increment with owned and
//! with static labels. Run: `cargo bench --bench hot_path`.
//!
//! Before criterion's timings it prints each function's allocations per call, counted by a
//! wrapper around mimalloc (the binary's allocator) installed in this bench.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;

use leadrouter::domain::geo::PostalTable;
use leadrouter::domain::lead::{validate_lead, LeadInput, ValidLead};
use leadrouter::domain::ledger::{Event, LedgerEvent, SaleSettled};
use leadrouter::domain::model::{Model, Vertical};
use leadrouter::domain::money::{Currency, Money};
use leadrouter::domain::phone::normalize_e164;
use leadrouter::engine::native_body::PostBody;
use leadrouter::store::journal::frame::BatchBuilder;

/// mimalloc, counting allocations (alloc, alloc_zeroed and realloc each count one).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to mimalloc.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from mimalloc with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from mimalloc with this layout.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Prints the allocations one call of `f` makes (the mean of 1,000 calls).
fn allocations_of<T>(name: &str, mut f: impl FnMut() -> T) {
    let calls = 1_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..calls {
        black_box(f());
    }
    let made = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("allocations per call: {name}: {:.1}", made as f64 / f64::from(calls));
}

/// A lead as `loadtest run --mix direct` sends it.
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

fn vertical() -> Vertical {
    serde_json::from_value(json!({"name": "solar", "model": "bidding", "default_country": "DE"})).unwrap()
}

fn lead(vertical: &Vertical) -> ValidLead {
    let input: LeadInput = serde_json::from_str(&lead_json(1)).unwrap();
    validate_lead(input, vertical, PostalTable::bundled()).unwrap()
}

fn sale() -> SaleSettled {
    SaleSettled {
        sale_id: "sal_0123456789abcdefghij".into(),
        lead_id: "led_0123456789abcdefghij".into(),
        ping_id: Some("png_0123456789abcdefghij".into()),
        supplier_id: "loadtest-portal".into(),
        buyer_id: "lt-buyer-01".into(),
        campaign_id: "lt-campaign-01".into(),
        vertical: "solar".into(),
        country: "DE".into(),
        model: Model::Bidding,
        price: Money::cents(3100),
        payout: Money::cents(1860),
        currency: Currency::EUR,
        sold_at: Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap(),
        internal: false,
        dedup_keys: vec![format!("{:064x}", 1), format!("{:064x}", 2)],
        return_terms: None,
        lease: None,
        buyer_reference: None,
    }
}

fn lead_path(c: &mut Criterion) {
    let vertical = vertical();
    let table = PostalTable::bundled();
    let body = lead_json(1);
    allocations_of("hot/phone_normalize_e164", || normalize_e164("089 1000001", "DE").unwrap());
    allocations_of("hot/lead_parse_validate", || {
        let input: LeadInput = serde_json::from_slice(body.as_bytes()).unwrap();
        validate_lead(input, &vertical, table).unwrap()
    });
    c.bench_function("hot/phone_normalize_e164", |b| {
        b.iter(|| black_box(normalize_e164(black_box("089 1000001"), black_box("DE")).unwrap()))
    });
    c.bench_function("hot/lead_parse_validate", |b| {
        b.iter(|| {
            let input: LeadInput = serde_json::from_slice(black_box(body.as_bytes())).unwrap();
            black_box(validate_lead(input, &vertical, table).unwrap())
        })
    });
}

fn buyer_post(c: &mut Criterion) {
    let vertical = vertical();
    let lead = lead(&vertical);
    let body = PostBody {
        sale_id: "sal_0123456789abcdefghij",
        lead_id: "led_0123456789abcdefghij",
        ping_id: "png_0123456789abcdefghij",
        vertical: "solar",
        price: Money::cents(3100),
        currency: Currency::EUR,
        lead: &lead,
    };
    let as_value = || {
        let value = json!({
            "sale_id": body.sale_id, "lead_id": body.lead_id, "ping_id": body.ping_id,
            "vertical": body.vertical, "price": body.price, "currency": body.currency, "lead": body.lead,
        });
        bytes::Bytes::from(value.to_string())
    };
    allocations_of("hot/post_body_as_json_value (before)", as_value);
    allocations_of("hot/post_body_serialized (after)", || body.to_bytes());
    c.bench_function("hot/post_body_as_json_value (before)", |b| b.iter(|| black_box(as_value())));
    c.bench_function("hot/post_body_serialized (after)", |b| b.iter(|| black_box(black_box(&body).to_bytes())));
    let bytes = body.to_bytes();
    c.bench_function("hot/post_body_sign", |b| {
        b.iter(|| {
            black_box(leadrouter::buyers::signature::sign(b"loadtest-webhook-secret-0001", 1_764_842_400, &bytes))
        })
    });
}

fn sale_record(c: &mut Criterion) {
    let sale = sale();
    allocations_of("hot/sale_clone", || sale.clone());
    c.bench_function("hot/sale_clone", |b| b.iter(|| black_box(black_box(&sale).clone())));
    let event = LedgerEvent { sequence: 1, at: sale.sold_at, event: Event::from(sale.clone()) };
    let mut buffer = Vec::with_capacity(1 << 16);
    c.bench_function("hot/journal_encode_sale", |b| {
        b.iter(|| {
            buffer.clear();
            let mut batch = BatchBuilder::new(&mut buffer);
            batch.push_ledger(black_box(&event)).unwrap();
            black_box(batch.finish())
        })
    });
}

fn metric_labels(c: &mut Criterion) {
    let _ = leadrouter::telemetry::prometheus();
    let buyer = String::from("lt-buyer-01");
    allocations_of("hot/counter_owned_labels", || {
        metrics::counter!(leadrouter::telemetry::BUYER_REQUESTS_TOTAL, "buyer" => buyer.to_string(), "kind" => "post", "outcome" => "accepted").increment(1)
    });
    allocations_of("hot/counter_static_labels", || {
        metrics::counter!(leadrouter::telemetry::DELIVERIES_TOTAL, "mode" => "webhook", "outcome" => "accepted")
            .increment(1)
    });
    c.bench_function("hot/counter_owned_labels", |b| {
        b.iter(|| {
            metrics::counter!(leadrouter::telemetry::BUYER_REQUESTS_TOTAL, "buyer" => black_box(&buyer).to_string(), "kind" => "post", "outcome" => "accepted").increment(1)
        })
    });
    c.bench_function("hot/counter_static_labels", |b| {
        b.iter(|| {
            metrics::counter!(leadrouter::telemetry::DELIVERIES_TOTAL, "mode" => "webhook", "outcome" => "accepted")
                .increment(1)
        })
    });
}

criterion_group!(benches, lead_path, buyer_post, sale_record, metric_labels);
criterion_main!(benches);
