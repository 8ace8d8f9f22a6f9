//! The Redis budget with a real redis-server: two "nodes" (two connections, two adapters)
//! holding and settling concurrently for one buyer never overspend its balance or exceed a
//! cap; with Redis gone an operation fails fast and sells nothing. The same on a Redis
//! Cluster of three shards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use leadrouter::domain::budget::{Funding, HoldRequest};
use leadrouter::domain::caps::{Cap, Limit, Window};
use leadrouter::domain::model::BillingMode;
use leadrouter::domain::money::Money;
use leadrouter::store::redis_budget::RedisBudget;
use leadrouter::store::{Budget, BudgetError};

use crate::harness::{RedisCluster, RedisServer};

fn request<'a>(n: usize, price: &str, caps: &'a [Cap]) -> HoldRequest<'a> {
    HoldRequest {
        hold_id: format!("hold-{n}"),
        campaign_id: "c1",
        price: Money::parse(price).unwrap(),
        funding: Funding { mode: BillingMode::Prepaid, credit_limit: None },
        caps,
        tz: chrono_tz::Europe::Berlin,
        expires_at: Utc.with_ymd_and_hms(2026, 11, 25, 13, 0, 0).unwrap(),
    }
}

/// 64 concurrent hold-then-settle attempts spread over two nodes; answers how many settled.
async fn race(nodes: &[Arc<RedisBudget>], price: &'static str, caps: &'static [Cap]) -> usize {
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let buyer: Arc<str> = Arc::from("b1");
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let (node, buyer) = (Arc::clone(&nodes[n % nodes.len()]), Arc::clone(&buyer));
            tokio::spawn(async move {
                match node.try_hold(&buyer, now, request(n, price, caps)).await {
                    Ok(held) => node.settle(&held.handle).await.is_ok(),
                    Err(BudgetError::Refused(_)) => false,
                    Err(other) => panic!("unexpected: {other}"),
                }
            })
        })
        .collect();
    let mut settled = 0;
    for task in tasks {
        settled += usize::from(task.await.unwrap());
    }
    settled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_overspend_a_balance() {
    let redis = RedisServer::start().await;
    two_nodes_never_overspend(&redis.url(), "t1:").await;
}

async fn two_nodes_never_overspend(url: &str, prefix: &str) {
    let nodes = [
        Arc::new(RedisBudget::connect(url, prefix).await.unwrap()),
        Arc::new(RedisBudget::connect(url, prefix).await.unwrap()),
    ];
    assert_eq!(nodes[0].top_up("b1", Money::parse("100.00").unwrap()).await.unwrap(), Money::parse("100.00").unwrap());
    assert_eq!(race(&nodes, "10.00", &[]).await, 10, "exactly the balance's worth");
    let funding = Funding { mode: BillingMode::Prepaid, credit_limit: None };
    let view = nodes[1].balance("b1", Utc::now(), funding).await.unwrap();
    assert_eq!((view.balance, view.held), (Money::ZERO, Money::ZERO));
}

static DAILY_FIVE: [Cap; 1] = [Cap { name: "daily", window: Window::Day, limit: Limit::Count(5) }];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_exceed_a_cap() {
    let redis = RedisServer::start().await;
    two_nodes_never_exceed(&redis.url(), "t2:").await;
}

async fn two_nodes_never_exceed(url: &str, prefix: &str) {
    let nodes = [
        Arc::new(RedisBudget::connect(url, prefix).await.unwrap()),
        Arc::new(RedisBudget::connect(url, prefix).await.unwrap()),
    ];
    nodes[0].top_up("b1", Money::parse("1000.00").unwrap()).await.unwrap();
    assert_eq!(race(&nodes, "1.00", &DAILY_FIVE).await, 5);
    let funding = Funding { mode: BillingMode::Prepaid, credit_limit: None };
    assert_eq!(nodes[0].balance("b1", Utc::now(), funding).await.unwrap().balance, Money::parse("995.00").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_an_operation_fails_within_about_a_second() {
    let redis = RedisServer::start().await;
    let node = RedisBudget::connect(&redis.url(), "t3:").await.unwrap();
    node.top_up("b1", Money::parse("50.00").unwrap()).await.unwrap();
    let dir = redis.stop();
    let started = Instant::now();
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let refused = node.try_hold(&Arc::from("b1"), now, request(1, "10.00", &[])).await;
    assert!(matches!(refused, Err(BudgetError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_two_nodes_never_overspend_or_exceed_a_cap_and_fail_fast_without_it() {
    let _turn = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start(3).await;
    two_nodes_never_overspend(&cluster.url(), "t1:").await;
    two_nodes_never_exceed(&cluster.url(), "t2:").await;

    let node = RedisBudget::connect(&cluster.url(), "t3:").await.unwrap();
    node.top_up("b1", Money::parse("50.00").unwrap()).await.unwrap();
    let stopped = cluster.stop();
    let started = Instant::now();
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let refused = node.try_hold(&Arc::from("b1"), now, request(1, "10.00", &[])).await;
    assert!(matches!(refused, Err(BudgetError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
    drop(stopped);
}
