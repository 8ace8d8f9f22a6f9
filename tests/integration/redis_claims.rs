//! Idempotency answers kept in a real redis-server: the first request with a key runs, a
//! second node sees it running and then gets its answer, another body is a conflict, a
//! released key runs again, and answers kept by nodes from before typed answers (HTTP
//! status and body) still read as the answer they were.

use bytes::Bytes;
use leadrouter::domain::model::FieldError;
use leadrouter::engine::ports::idempotency::{KeptAnswer, Refusal};
use leadrouter::store::redis::RedisConnection;
use leadrouter::store::redis_claims::RedisClaims;
use leadrouter::store::{Claims, KeyClaim};

use crate::harness::{RedisCluster, RedisServer};

#[tokio::test]
async fn a_key_is_answered_once_across_nodes_and_in_either_stored_form() {
    let redis = RedisServer::start().await;
    answered_once(&redis.url()).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_key_is_answered_once_and_the_probe_sees_every_shard() {
    let _turn = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start(3).await;
    answered_once(&cluster.url()).await;
    let connection = RedisConnection::open(&cluster.url()).await.unwrap();
    let claims = RedisClaims::on(&connection, "t2:");
    claims.probe().await.unwrap();
    let mut shards = cluster.shards;
    let gone = shards.pop().unwrap();
    drop(gone.stop());
    assert!(claims.probe().await.is_err(), "one shard away fails the probe");
    assert!(claims.probe().await.is_err(), "and keeps failing it");
}

async fn answered_once(url: &str) {
    let connection = RedisConnection::open(url).await.unwrap();
    let nodes = [RedisClaims::on(&connection, "t1:"), RedisClaims::on(&connection, "t1:")];
    let (hash, other) = ([7u8; 32], [8u8; 32]);

    assert_eq!(nodes[0].begin_answer("s1", "k-1", hash).await.unwrap(), KeyClaim::Fresh);
    assert_eq!(nodes[1].begin_answer("s1", "k-1", hash).await.unwrap(), KeyClaim::InFlight);
    assert_eq!(nodes[1].begin_answer("s1", "k-1", other).await.unwrap(), KeyClaim::Conflict);
    let refused =
        KeptAnswer::Refused { refusal: Refusal::Invalid { details: vec![FieldError::new("zip", "unknown")] } };
    nodes[0].store_answer("s1", "k-1", hash, &refused).await.unwrap();
    assert_eq!(nodes[1].begin_answer("s1", "k-1", hash).await.unwrap(), KeyClaim::Answered(refused));
    assert_eq!(nodes[1].begin_answer("s2", "k-1", other).await.unwrap(), KeyClaim::Fresh, "keys are per party");

    assert_eq!(nodes[0].begin_answer("s1", "k-2", hash).await.unwrap(), KeyClaim::Fresh);
    nodes[0].release_answer("s1", "k-2").await;
    assert_eq!(nodes[1].begin_answer("s1", "k-2", other).await.unwrap(), KeyClaim::Fresh, "a released key runs again");

    // A node from before typed answers kept the status and the HTTP body.
    let body = "{\"lead_id\":\"l1\",\"status\":\"sold\"}\n";
    let mut raw = connection.manager.clone();
    let fields = [("h", hex::encode(hash)), ("s", "200".to_string()), ("b", body.to_string())];
    let _: () = redis::AsyncCommands::hset_multiple(&mut raw, "t1:{i:s1}:idem:k-3", &fields).await.unwrap();
    assert_eq!(
        nodes[0].begin_answer("s1", "k-3", hash).await.unwrap(),
        KeyClaim::Answered(KeptAnswer::Done { result: Bytes::from(body) })
    );
    let fields = [("h", hex::encode(hash)), ("s", "200x".to_string())];
    let _: () = redis::AsyncCommands::hset_multiple(&mut raw, "t1:{i:s1}:idem:k-4", &fields).await.unwrap();
    assert!(nodes[0].begin_answer("s1", "k-4", hash).await.is_err(), "a record that does not decode runs nothing");
}
