//! The Redis ledger with a real redis-server: two nodes appending concurrently get one
//! gap-free sequence, and a gRPC subscriber on either node sees every event once, in order,
//! whichever node wrote it; the ledger survives a Redis restart (AOF, appendfsync always).
//! The same on a Redis Cluster of three shards, where the follower's blocking read on its
//! own connection stalls no other command.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use leadrouter::domain::ledger::{Event, SaleSettled};
use leadrouter::domain::model::Model;
use leadrouter::domain::money::Money;
use leadrouter::ledger::proto::ledger_stream_client::LedgerStreamClient;
use leadrouter::ledger::proto::SubscribeRequest;
use leadrouter::store::redis::RedisConnection;
use leadrouter::store::redis_ledger::RedisLedger;
use leadrouter::store::EventLog;
use redis::AsyncCommands;

use crate::harness::{RedisCluster, RedisServer};

fn sale(n: usize) -> Event {
    Event::from(SaleSettled {
        sale_id: format!("sal_{n:08}"),
        lead_id: format!("led_{n:08}"),
        ping_id: None,
        supplier_id: "s1".into(),
        buyer_id: "b1".into(),
        campaign_id: "c1".into(),
        vertical: "solar".into(),
        country: "DE".into(),
        model: Model::Bidding,
        price: Money::cents(3800),
        payout: Money::cents(2280),
        currency: leadrouter::domain::money::Currency::EUR,
        sold_at: Utc::now(),
        internal: false,
        dedup_keys: Vec::new(),
        return_terms: None,
        lease: None,
        buyer_reference: None,
    })
}

/// Sequences a gRPC subscriber on a node's mirror receives, until `count` arrived.
async fn subscribe(log: Arc<RedisLedger>, after: u64, count: usize) -> Vec<(u64, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clock = std::sync::Arc::new(leadrouter::clock::SystemClock);
    let service = leadrouter::ledger::LedgerService::new(log, None, clock, stopped.clone());
    let server = tokio::spawn(leadrouter::ledger::serve(listener, service, stopped));
    let mut client = LedgerStreamClient::connect(url).await.unwrap();
    let mut stream =
        client.subscribe(SubscribeRequest { after_sequence: after, ..Default::default() }).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while seen.len() < count {
        let event =
            tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("in time").unwrap().unwrap();
        let Some(leadrouter::ledger::proto::ledger_event::Event::SaleSettled(sale)) = event.event else {
            panic!("a sale")
        };
        seen.push((event.sequence, sale.sale_id));
    }
    drop(stream);
    let _ = stop.send(true);
    let _ = server.await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_gap_free_ledger_served_by_either() {
    let redis = RedisServer::start().await;
    two_nodes_share_one_gap_free_ledger(&redis.url(), "l1:").await;
}

async fn two_nodes_share_one_gap_free_ledger(url: &str, prefix: &str) {
    let nodes = [
        Arc::new(RedisLedger::connect(url, prefix).await.unwrap()),
        Arc::new(RedisLedger::connect(url, prefix).await.unwrap()),
    ];
    let tasks: Vec<_> = (0..400)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            tokio::spawn(async move { node.append(sale(n), Utc::now()).await.unwrap().sequence })
        })
        .collect();
    let mut sequences = Vec::new();
    for task in tasks {
        sequences.push(task.await.unwrap());
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=400).collect::<Vec<u64>>(), "one gap-free sequence across both nodes");

    // A subscriber on node B sees all 400, including node A's, in order.
    let seen = subscribe(Arc::clone(&nodes[1]), 0, 400).await;
    assert_eq!(seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=400).collect::<Vec<u64>>());
    let mut ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400, "every sale once");
    // Resuming after 350 on node A gives exactly the rest.
    let rest = subscribe(Arc::clone(&nodes[0]), 350, 50).await;
    assert_eq!(rest.first().map(|(s, _)| *s), Some(351));
    assert_eq!(rest.last().map(|(s, _)| *s), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acknowledged_event_survives_a_redis_restart() {
    let redis = RedisServer::start().await;
    let port = redis.port;
    let node = RedisLedger::connect(&redis.url(), "l2:").await.unwrap();
    for n in 0..20 {
        node.append(sale(n), Utc::now()).await.unwrap();
    }
    let dir = redis.stop();
    assert!(node.append(sale(99), Utc::now()).await.is_err(), "no acknowledgement without Redis");
    let redis = RedisServer::start_on(port, dir).await;
    let again = RedisLedger::connect(&redis.url(), "l2:").await.unwrap();
    assert_eq!(again.last_sequence(), 20, "all 20 acknowledged events are back");
    assert_eq!(again.append(sale(20), Utc::now()).await.unwrap().sequence, 21);
    // The node that lived through the outage catches up by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.last_sequence() < 21 {
        assert!(std::time::Instant::now() < deadline, "the old node's mirror did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_port_writes_events_and_internal_records_to_redis() {
    let redis = RedisServer::start().await;
    let (shared, port) = the_engine_port_writes_events_and_internal_records(&redis.url(), "l3:").await;
    assert_eq!(shared.read_after(0, 10).unwrap().len(), 1, "internal records take no ledger sequence");
    let _dir = redis.stop();
    assert!(port.append(sale(2), Utc::now()).await.is_err(), "nothing is acknowledged without Redis");
}

async fn the_engine_port_writes_events_and_internal_records(
    url: &str,
    prefix: &str,
) -> (Arc<RedisLedger>, Arc<dyn leadrouter::store::Ledger>) {
    use leadrouter::store::journal::InternalRecord;
    use leadrouter::store::Ledger;
    let shared = Arc::new(RedisLedger::connect(url, prefix).await.unwrap());
    let port: Arc<dyn Ledger> = Arc::clone(&shared) as Arc<dyn Ledger>;
    let appended = port.append(sale(1), Utc::now()).await.unwrap();
    assert_eq!(appended.sequence, 1);
    port.append_internal(InternalRecord::ExternalId {
        supplier_id: "s1".into(),
        external_id: "ext-1".into(),
        lead_id: "led_1".into(),
        at: Utc::now(),
    })
    .await
    .unwrap();
    assert_eq!(shared.internal_records().await.unwrap(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shared.last_sequence() < 1 {
        assert!(std::time::Instant::now() < deadline, "the mirror did not see the event");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (shared, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_the_ledger_is_gap_free_stalls_nothing_and_survives_a_restart() {
    let _turn = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start(3).await;
    let url = cluster.url();
    two_nodes_share_one_gap_free_ledger(&url, "l1:").await;
    let (shared, _) = the_engine_port_writes_events_and_internal_records(&url, "l3:").await;
    assert_eq!(shared.read_after(0, 10).unwrap().len(), 1, "internal records take no ledger sequence");

    // A blocking read waits on a connection of its own: a command on the shared connection
    // to the same shard (the same slot, even) is answered at once meanwhile.
    let connection = RedisConnection::open(&url).await.unwrap();
    let mut dedicated = connection.client.connect().await.unwrap();
    let blocked = tokio::spawn(async move {
        let options = redis::streams::StreamReadOptions::default().block(2_000);
        let reply: Option<redis::streams::StreamReadReply> =
            dedicated.xread_options(&["l9:{ledger}:idle"], &["$"], &options).await.unwrap();
        reply.is_none()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let at = std::time::Instant::now();
    let mut shared_connection = connection.manager.clone();
    let _: Option<String> = shared_connection.get("l9:{ledger}:sequence").await.unwrap();
    assert!(at.elapsed() < Duration::from_millis(1_000), "the shared connection waited {:?}", at.elapsed());
    assert!(!blocked.is_finished(), "the blocking read was still waiting");
    assert!(blocked.await.unwrap(), "nothing arrived on the idle stream");

    // Every shard killed and started again: the acknowledged events are all back.
    let node = RedisLedger::connect(&url, "l1:").await.unwrap();
    assert_eq!(node.last_sequence(), 400);
    let stopped = cluster.stop();
    assert!(node.append(sale(999), Utc::now()).await.is_err(), "no acknowledgement without Redis");
    let cluster = RedisCluster::restart(stopped).await;
    let again = RedisLedger::connect(&cluster.url(), "l1:").await.unwrap();
    assert_eq!(again.last_sequence(), 400, "all 400 acknowledged events are back");
    assert_eq!(again.append(sale(400), Utc::now()).await.unwrap().sequence, 401);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.last_sequence() < 401 {
        assert!(std::time::Instant::now() < deadline, "the old node's mirror did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
