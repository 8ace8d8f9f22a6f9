//! A ping's hold in a buyer's book on Redis (BENCHMARKS.md, "Ping holds on several nodes"):
//! what several nodes pay per ping for the shared book, with 0, 1,000 and 3,000 other holds
//! open (3,000 is one of the load test's ten buyers at 500 pings/s, each hold living
//! `ping_ttl_s`, 60 s).
//!
//! - `redis_book/ping_hold_release/{0,1000,3000}`: `RedisBudget::try_hold` of a ping's hold
//!   and its `release`, each a read and a compare-and-set of the book, against a local
//!   `redis-server` (started here on a free port, without persistence, so that the figure is
//!   the adapter's and Redis's work and not the disk's), from a 2-worker runtime.
//!
//! Skipped, with a message, when `redis-server` is not on the PATH.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use leadrouter::clock::SystemClock;
use leadrouter::domain::budget::{Funding, HoldRequest, HoldScope};
use leadrouter::domain::model::BillingMode;
use leadrouter::domain::money::Money;
use leadrouter::store::redis_budget::RedisBudget;
use leadrouter::store::Budget;

/// A `redis-server` of this bench's own, stopped on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(n: usize, now: DateTime<Utc>) -> HoldRequest<'static> {
    HoldRequest {
        hold_id: format!("ping-hold-{n}"),
        campaign_id: "c1",
        price: Money::cents(3_807),
        funding: Funding { mode: BillingMode::Prepaid, credit_limit: None },
        caps: &[],
        tz: chrono_tz::Europe::Berlin,
        expires_at: now + chrono::Duration::hours(1),
        scope: HoldScope::Ping,
    }
}

fn book(c: &mut Criterion) {
    let Some(redis) = RedisServer::start() else {
        eprintln!("redis_book: no redis-server could be started (is it on the PATH?); skipped");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let buyer: Arc<str> = Arc::from("b1");
    let mut group = c.benchmark_group("redis_book");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for open in [0usize, 1_000, 3_000] {
        let budget = runtime
            .block_on(RedisBudget::connect(&redis.url(), &format!("bench{open}:"), "n1", Arc::new(SystemClock)))
            .unwrap();
        runtime.block_on(async {
            budget.top_up("b1", Money::cents(100_000_000_000)).await.unwrap();
            for n in 0..open {
                budget.try_hold(&buyer, Utc::now(), ping(n, Utc::now())).await.unwrap();
            }
        });
        let mut next = open;
        group.bench_with_input(BenchmarkId::new("ping_hold_release", open), &open, |b, _| {
            b.iter(|| {
                next += 1;
                runtime.block_on(async {
                    let held = budget.try_hold(&buyer, Utc::now(), ping(next, Utc::now())).await.unwrap();
                    budget.release(&held.handle).await.unwrap();
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, book);
criterion_main!(benches);
