//! Redis dedup claims with a real redis-server: copies of one lead delivered to one buyer
//! from two nodes at once are claimed once; a released claim frees the keys; a sold mark
//! blocks for the window and not after; a claim takes all of a lead's keys or none.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use leadrouter::domain::dedup::{DedupKey, DedupKeying, DedupSecret};
use leadrouter::store::redis_dedup::{RedisDedup, SecretError};
use leadrouter::store::DedupClaims;

use crate::harness::{RedisCluster, RedisServer};

fn keying(byte: u8) -> DedupKeying {
    DedupKeying::new(DedupSecret::from_bytes([byte; 32]))
}

fn keys_for(buyer_id: &str, contacts: &[String]) -> Vec<DedupKey> {
    keying(1).keys_for(buyer_id, contacts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_lead_is_claimed_once_across_nodes_and_blocked_for_its_window() {
    let redis = RedisServer::start().await;
    one_lead_is_claimed_once(&redis.url(), "d1:").await;
}

async fn one_lead_is_claimed_once(url: &str, prefix: &str) {
    let nodes = [
        Arc::new(RedisDedup::connect(url, prefix).await.unwrap()),
        Arc::new(RedisDedup::connect(url, prefix).await.unwrap()),
    ];
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let keys = keys_for("b1", &["anna@example.com".to_string(), "+498912345678".to_string()]);
    let window = Duration::days(30);

    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let (node, keys) = (Arc::clone(&nodes[n % 2]), keys.clone());
            tokio::spawn(async move { node.claim("b1", &keys, &[], now, window).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1, "one delivery of the lead per buyer at a time");

    // Released: free again. Sold: blocked within the window, free after it.
    nodes[0].release("b1", &keys).await;
    assert!(nodes[1].claim("b1", &keys, &[], now, window).await.unwrap());
    nodes[1].commit("b1", &keys, now).await.unwrap();
    nodes[0].release("b1", &keys).await; // a sold mark is not given back
    assert!(!nodes[0].claim("b1", &keys, &[], now + Duration::days(29), window).await.unwrap());
    assert!(nodes[0].claim("b1", &keys, &[], now + Duration::days(31), window).await.unwrap());

    // Another buyer's keys for the same contact are its own.
    let other = keys_for("b2", &["anna@example.com".to_string()]);
    assert!(nodes[1].claim("b2", &other, &[], now, window).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_takes_all_keys_or_none() {
    let redis = RedisServer::start().await;
    all_keys_or_none(&redis.url(), "d2:").await;
}

async fn all_keys_or_none(url: &str, prefix: &str) {
    let node = RedisDedup::connect(url, prefix).await.unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let phone = keys_for("b1", &["+498912345678".to_string()]);
    let both = keys_for("b1", &["anna@example.com".to_string(), "+498912345678".to_string()]);
    assert!(node.claim("b1", &phone, &[], now, Duration::days(30)).await.unwrap());
    assert!(!node.claim("b1", &both, &[], now, Duration::days(30)).await.unwrap(), "the phone is in flight");
    let email = keys_for("b1", &["anna@example.com".to_string()]);
    assert!(node.claim("b1", &email, &[], now, Duration::days(30)).await.unwrap(), "the refused claim took nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_a_claim_is_an_error_not_a_yes() {
    let redis = RedisServer::start().await;
    let node = RedisDedup::connect(&redis.url(), "d3:").await.unwrap();
    let _dir = redis.stop();
    let keys = keys_for("b1", &["anna@example.com".to_string()]);
    assert!(node.claim("b1", &keys, &[], Utc::now(), Duration::days(30)).await.is_err());
}

/// Keys from before the dedup secret block a sale within their window and are never taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_keys_are_looked_up_and_left_alone() {
    let redis = RedisServer::start().await;
    plain_keys_are_left_alone(&redis.url(), "d4:").await;
}

async fn plain_keys_are_left_alone(url: &str, prefix: &str) {
    let node = RedisDedup::connect(url, prefix).await.unwrap();
    let sold = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let contacts = ["+498912345678".to_string()];
    let plain = keying(9).keys_for("b1", &contacts);
    node.commit("b1", &plain, sold).await.unwrap();
    let keys = keys_for("b1", &contacts);
    let window = Duration::days(30);
    assert!(!node.claim("b1", &keys, &plain, sold + Duration::days(29), window).await.unwrap());
    assert!(node.claim("b1", &keys, &plain, sold + Duration::days(31), window).await.unwrap());
    node.release("b1", &keys).await;
    assert!(!node.claim("b1", &plain, &[], sold + Duration::days(29), window).await.unwrap(), "still sold");
}

/// Nodes on one Redis must make the same keys: the first sets the secret's fingerprint
/// (never the secret), a node with another secret is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_agree_on_one_dedup_secret_and_redis_holds_no_secret() {
    let redis = RedisServer::start().await;
    let now = Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap();
    let first = RedisDedup::connect(&redis.url(), "d5:").await.unwrap();
    let agreed = first.agree_on_secret(&keying(1), true, now).await.unwrap();
    assert_eq!(agreed.plain_until_then, Some(now), "a Redis with a ledger may hold plain keys");
    let second = RedisDedup::connect(&redis.url(), "d5:").await.unwrap();
    let later = second.agree_on_secret(&keying(1), false, now + Duration::days(3)).await.unwrap();
    assert_eq!(later, agreed, "the first node's facts are everyone's");
    let stranger = second.agree_on_secret(&keying(2), false, now).await.unwrap_err();
    assert!(matches!(stranger, SecretError::Differs), "{stranger}");
    assert!(stranger.to_string().contains("--dedup-secret"));
    let mut connection = ::redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let stored: String = ::redis::cmd("GET").arg("d5:dedup-secret").query_async(&mut connection).await.unwrap();
    assert!(!stored.contains(&keying(1).secret.to_hex()), "{stored}");
    let fresh = RedisDedup::connect(&redis.url(), "d6:").await.unwrap();
    assert_eq!(fresh.agree_on_secret(&keying(1), false, now).await.unwrap().plain_until_then, None);
}

/// A claim's keys, its commit (a pipeline) and its release name one buyer's keys only, so
/// they run on a Redis Cluster as on one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_claims_commits_and_releases_work_as_on_one_redis() {
    let _turn = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start(3).await;
    one_lead_is_claimed_once(&cluster.url(), "d1:").await;
    all_keys_or_none(&cluster.url(), "d2:").await;
    plain_keys_are_left_alone(&cluster.url(), "d4:").await;
    let node = RedisDedup::connect(&cluster.url(), "d5:").await.unwrap();
    let now = Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap();
    assert_eq!(node.agree_on_secret(&keying(1), false, now).await.unwrap().plain_until_then, None);
    assert!(matches!(node.agree_on_secret(&keying(2), false, now).await, Err(SecretError::Differs)));
}
