//! The Redis budget with a real redis-server: two "nodes" (two connections, two adapters,
//! each with its ledger) holding, settling and recording sales concurrently for one buyer
//! never overspend its balance or exceed a cap, with budget leases and without; a node that
//! dies holding a lease gives it back when it expires, with exactly what it sold charged;
//! with Redis gone an operation fails fast and sells nothing. The same on a Redis
//! Cluster of three shards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use leadrouter::clock::{Clock, ManualClock, SystemClock};
use leadrouter::domain::budget::lease::LeaseCharge;
use leadrouter::domain::budget::{Funding, HoldRequest, HoldScope};
use leadrouter::domain::caps::{Cap, Limit, Window};
use leadrouter::domain::ledger::{Event, SaleSettled};
use leadrouter::domain::model::{BillingMode, Model};
use leadrouter::domain::money::Money;
use leadrouter::store::redis_budget::RedisBudget;
use leadrouter::store::redis_ledger::RedisLedger;
use leadrouter::store::{Budget, BudgetError, Held, HoldHandle};
use tokio::task::JoinHandle;

use crate::harness::{RedisCluster, RedisServer};

fn request<'a>(n: usize, price: &str, caps: &'a [Cap], now: DateTime<Utc>) -> HoldRequest<'a> {
    HoldRequest {
        hold_id: format!("hold-{n}"),
        campaign_id: "c1",
        price: Money::parse(price).unwrap(),
        funding: prepaid(),
        caps,
        tz: chrono_tz::Europe::Berlin,
        expires_at: now + chrono::Duration::seconds(60),
        scope: HoldScope::Request,
    }
}

fn prepaid() -> Funding {
    Funding { mode: BillingMode::Prepaid, credit_limit: None }
}

/// One node: its budget and its ledger on one Redis.
struct Node {
    budget: Arc<RedisBudget>,
    ledger: Arc<RedisLedger>,
}

async fn node(url: &str, prefix: &str, leases: bool, clock: Arc<dyn Clock>) -> Node {
    let name = leadrouter::ids::new_id("node");
    let budget = RedisBudget::connect(url, prefix, &name, clock).await.unwrap().with_leases(leases);
    Node { budget: Arc::new(budget), ledger: Arc::new(RedisLedger::connect(url, prefix).await.unwrap()) }
}

/// Holds, settles and records one sale as the engine does: answers whether it sold.
async fn sell(node: &Node, n: usize, price: &str, caps: &[Cap], now: DateTime<Utc>) -> bool {
    let buyer: Arc<str> = Arc::from("b1");
    let held = match node.budget.try_hold(&buyer, now, request(n, price, caps, now)).await {
        Ok(held) => held,
        Err(BudgetError::Refused(_)) => return false,
        Err(other) => panic!("unexpected: {other}"),
    };
    let settled = node.budget.settle(&held.handle).await.unwrap();
    let sale = record(n, price, now, settled.lease);
    node.ledger.append(Event::from(sale), now).await.unwrap();
    true
}

/// The sale the engine records (`lease`: what it drew from a lease).
fn record(n: usize, price: &str, now: DateTime<Utc>, lease: Option<LeaseCharge>) -> SaleSettled {
    SaleSettled {
        sale_id: format!("sal_{n}"),
        lead_id: format!("led_{n}"),
        ping_id: None,
        supplier_id: "s1".into(),
        buyer_id: "b1".into(),
        campaign_id: "c1".into(),
        vertical: "solar".into(),
        country: "DE".into(),
        model: Model::Bidding,
        price: Money::parse(price).unwrap(),
        payout: Money::ZERO,
        currency: leadrouter::domain::money::Currency::EUR,
        sold_at: now,
        internal: false,
        dedup_keys: Vec::new(),
        return_terms: None,
        lease,
        buyer_reference: None,
    }
}

/// 64 concurrent sales spread over the nodes; answers how many sold.
async fn race(nodes: &[Arc<Node>], price: &'static str, caps: &'static [Cap], now: DateTime<Utc>) -> usize {
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let node = Arc::clone(&nodes[n % nodes.len()]);
            tokio::spawn(async move { sell(&node, n, price, caps, now).await })
        })
        .collect();
    let mut sold = 0;
    for task in tasks {
        sold += usize::from(task.await.unwrap());
    }
    sold
}

fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

async fn never_overspend(url: &str, prefix: &str, leases: bool) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let nodes = [
        Arc::new(node(url, prefix, leases, Arc::clone(&clock)).await),
        Arc::new(node(url, prefix, leases, Arc::clone(&clock)).await),
    ];
    let now = Utc::now();
    let topped = nodes[0].budget.top_up("b1", Money::parse("100.00").unwrap()).await.unwrap();
    assert_eq!(topped, Money::parse("100.00").unwrap());
    assert_eq!(race(&nodes, "10.00", &[], now).await, 10, "exactly the balance's worth");
    let view = nodes[1].budget.balance("b1", now, prepaid()).await.unwrap();
    assert_eq!((view.balance, view.available), (Money::ZERO, Money::ZERO), "{view:?}");
    for node in &nodes {
        node.budget.close().await;
    }
    let view = nodes[1].budget.balance("b1", now, prepaid()).await.unwrap();
    assert_eq!((view.balance, view.held, view.leased), (Money::ZERO, Money::ZERO, Money::ZERO), "{view:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_overspend_a_balance_from_their_leases() {
    let redis = RedisServer::start().await;
    never_overspend(&redis.url(), "t1:", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_overspend_a_balance_without_leases() {
    let redis = RedisServer::start().await;
    never_overspend(&redis.url(), "t1b:", false).await;
}

static DAILY_FIVE: [Cap; 1] = [Cap { name: "daily", window: Window::Day, limit: Limit::Count(5) }];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_exceed_a_cap() {
    let redis = RedisServer::start().await;
    never_exceed(&redis.url(), "t2:").await;
}

async fn never_exceed(url: &str, prefix: &str) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let nodes = [
        Arc::new(node(url, prefix, true, Arc::clone(&clock)).await),
        Arc::new(node(url, prefix, true, Arc::clone(&clock)).await),
    ];
    nodes[0].budget.top_up("b1", Money::parse("1000.00").unwrap()).await.unwrap();
    let now = Utc::now();
    assert_eq!(race(&nodes, "1.00", &DAILY_FIVE, now).await, 5);
    for node in &nodes {
        node.budget.close().await;
    }
    let view = nodes[0].budget.balance("b1", now, prepaid()).await.unwrap();
    assert_eq!(view.balance, Money::parse("995.00").unwrap());
    // The five are settled in today's window: a node that asks again is refused.
    assert!(!sell(&nodes[1], 100, "1.00", &DAILY_FIVE, now).await);
}

/// A node dies (its memory gone) holding a lease it sold part of: the lease expires, the
/// next node to touch the book retires it with exactly the sales recorded, the rest is sold
/// by the other node, and a sale the dead node recorded after its lease was retired is
/// refused by the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_lease_returns_after_expiry_with_exactly_its_sales_charged() {
    let redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(noon()));
    let shared: Arc<dyn Clock> = Arc::clone(&clock) as _;
    let (dying, survivor) =
        (node(&redis.url(), "t4:", true, Arc::clone(&shared)).await, node(&redis.url(), "t4:", true, shared).await);
    survivor.budget.top_up("b1", Money::parse("100.00").unwrap()).await.unwrap();
    assert!(sell(&dying, 1, "10.00", &[], noon()).await);
    // A hold the dying node settled but never recorded: the ledger never counted it.
    let held = dying.budget.try_hold(&Arc::from("b1"), noon(), request(2, "10.00", &[], noon())).await.unwrap();
    let unrecorded = dying.budget.settle(&held.handle).await.unwrap();
    let view = survivor.budget.balance("b1", noon(), prepaid()).await.unwrap();
    assert_eq!(view.balance, Money::parse("90.00").unwrap(), "the recorded sale counts at once: {view:?}");
    assert!(view.leased > Money::ZERO, "the dying node's lease shows: {view:?}");
    drop(dying.budget);
    // Past the lease's expiry, the survivor sells the rest: exactly nine more.
    let later = noon() + chrono::Duration::seconds(20);
    clock.set(later);
    let mut sold = 0;
    for n in 10..30 {
        sold += usize::from(sell(&survivor, n, "10.00", &[], later).await);
    }
    assert_eq!(sold, 9);
    assert!(unrecorded.lease.is_some(), "a hold from a lease");
    let sale = record(999, "10.00", later, unrecorded.lease);
    assert!(dying.ledger.append(Event::from(sale), later).await.is_err(), "a retired lease takes no sale");
    survivor.budget.close().await;
    let view = survivor.budget.balance("b1", later, prepaid()).await.unwrap();
    assert_eq!((view.balance, view.held), (Money::ZERO, Money::ZERO), "{view:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_an_operation_fails_within_about_a_second() {
    let redis = RedisServer::start().await;
    let budget = RedisBudget::connect(&redis.url(), "t3:", "n1", Arc::new(SystemClock)).await.unwrap();
    budget.top_up("b1", Money::parse("50.00").unwrap()).await.unwrap();
    let dir = redis.stop();
    let started = Instant::now();
    let refused = budget.try_hold(&Arc::from("b1"), noon(), request(1, "10.00", &[], noon())).await;
    assert!(matches!(refused, Err(BudgetError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_two_nodes_never_overspend_or_exceed_a_cap_and_fail_fast_without_it() {
    let _turn = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start(3).await;
    never_overspend(&cluster.url(), "t1:", true).await;
    never_overspend(&cluster.url(), "t1b:", false).await;
    never_exceed(&cluster.url(), "t2:").await;

    let budget = RedisBudget::connect(&cluster.url(), "t3:", "n1", Arc::new(SystemClock)).await.unwrap();
    budget.top_up("b1", Money::parse("50.00").unwrap()).await.unwrap();
    let stopped = cluster.stop();
    let started = Instant::now();
    let refused = budget.try_hold(&Arc::from("b1"), noon(), request(1, "10.00", &[], noon())).await;
    assert!(matches!(refused, Err(BudgetError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
    drop(stopped);
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

fn ping(n: usize, now: DateTime<Utc>) -> HoldRequest<'static> {
    HoldRequest { scope: HoldScope::Ping, ..request(n, "1.00", &DAILY_MANY, now) }
}

static DAILY_MANY: [Cap; 1] = [Cap { name: "daily", window: Window::Day, limit: Limit::Count(100_000) }];

/// One node on a clock stopped at noon, with buyer b1 topped up with `balance`.
async fn ping_node(url: &str, prefix: &str, balance: &str) -> Arc<Node> {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(noon()));
    let node = Arc::new(node(url, prefix, true, clock).await);
    node.budget.top_up("b1", Money::parse(balance).unwrap()).await.unwrap();
    node
}

/// Ping `n`'s hold for b1 on `node`, in a task of its own, answering `n` and the outcome.
fn spawn_ping(node: &Arc<Node>, n: usize) -> JoinHandle<(usize, Result<Held, BudgetError>)> {
    let node = Arc::clone(node);
    tokio::spawn(async move { (n, node.budget.try_hold(&Arc::from("b1"), noon(), ping(n, noon())).await) })
}

/// Ping holds live in the shared book, one field each beside a summary that does not grow
/// with them: a ping's change reads and writes the summary and its own hold, however many
/// are open. A settle on another node finds its hold; expired holds leave with the next
/// changes, at most `DUE_MAX` (2,000) a change, and count until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_ping_holds_are_kept_apart_from_a_summary_that_does_not_grow() {
    let redis = RedisServer::start().await;
    let clock = Arc::new(ManualClock::new(noon()));
    let shared: Arc<dyn Clock> = Arc::clone(&clock) as _;
    let nodes = [
        Arc::new(node(&redis.url(), "t5:", true, Arc::clone(&shared)).await),
        Arc::new(node(&redis.url(), "t5:", true, shared).await),
    ];
    let mut redis_cli = connect(&redis.url()).await;
    let summary_len = |mut redis_cli: redis::aio::MultiplexedConnection| async move {
        redis::cmd("HSTRLEN").arg("t5:{b:b1}:book").arg("book").query_async::<usize>(&mut redis_cli).await.unwrap()
    };
    let buyer: Arc<str> = Arc::from("b1");
    nodes[0].budget.top_up("b1", Money::parse("10000.00").unwrap()).await.unwrap();
    nodes[0].budget.try_hold(&buyer, noon(), ping(0, noon())).await.unwrap();
    let with_one = summary_len(redis_cli.clone()).await;

    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (node, buyer) = (Arc::clone(&nodes[task % 2]), Arc::clone(&buyer));
            tokio::spawn(async move {
                for n in (1..3_000).filter(|n| n % 8 == task) {
                    node.budget.try_hold(&buyer, noon(), ping(n, noon())).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let with_3000 = summary_len(redis_cli.clone()).await;
    assert!(with_3000 <= with_one + 16, "the summary grew from {with_one} to {with_3000} bytes");
    let fields: usize = redis::cmd("HLEN").arg("t5:{b:b1}:book").query_async(&mut redis_cli).await.unwrap();
    let indexed: usize = redis::cmd("ZCARD").arg("t5:{b:b1}:expiry").query_async(&mut redis_cli).await.unwrap();
    assert_eq!((fields, indexed), (3_000 + 2, 3_000), "a field per hold, beside the version and the summary");
    let view = nodes[1].budget.balance("b1", noon(), prepaid()).await.unwrap();
    assert_eq!((view.held, view.available), (Money::parse("3000.00").unwrap(), Money::parse("7000.00").unwrap()));

    let posted = HoldHandle { buyer_id: Arc::clone(&buyer), hold_id: "hold-17".into() };
    let settled = nodes[1].budget.settle(&posted).await.unwrap();
    assert_eq!(settled.balance_after, Money::parse("9999.00").unwrap());
    assert!(matches!(nodes[0].budget.settle(&posted).await, Err(BudgetError::UnknownHold)), "settled once");
    let kept: bool =
        redis::cmd("HEXISTS").arg("t5:{b:b1}:book").arg("h:hold-17").query_async(&mut redis_cli).await.unwrap();
    assert!(!kept, "a settled hold's field goes");

    // A minute on, all 2,999 have expired: the next hold drops 2,000 of them, the one after
    // the rest; a view counts none of them meanwhile.
    let later = noon() + chrono::Duration::seconds(61);
    clock.set(later);
    nodes[0].budget.try_hold(&buyer, later, ping(5_000, later)).await.unwrap();
    let indexed: usize = redis::cmd("ZCARD").arg("t5:{b:b1}:expiry").query_async(&mut redis_cli).await.unwrap();
    assert_eq!(indexed, 999 + 1);
    let view = nodes[1].budget.balance("b1", later, prepaid()).await.unwrap();
    assert_eq!((view.balance, view.held), (Money::parse("9999.00").unwrap(), Money::parse("1.00").unwrap()));
    nodes[1].budget.try_hold(&buyer, later, ping(5_001, later)).await.unwrap();
    let fields: usize = redis::cmd("HLEN").arg("t5:{b:b1}:book").query_async(&mut redis_cli).await.unwrap();
    assert_eq!(fields, 2 + 2, "only the two open holds are left");
}

/// A book an older version wrote whole (its holds inside the summary) is read whole, and
/// the first change writes it back in parts, with every open hold in its own field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_an_older_version_wrote_whole_is_read_whole_and_written_back_in_parts() {
    let redis = RedisServer::start().await;
    let mut redis_cli = connect(&redis.url()).await;
    let whole = r#"{"balance":"100.00","usage":[],"holds":[
        {"id":"hold-1","campaign":"c1","charge":"30.00","spend":"30.00","expires_at":"2026-11-25T12:01:00Z","windows":[["day","2026-11-24T23:00:00Z"]]},
        {"id":"hold-2","campaign":"c1","charge":"20.00","spend":"20.00","expires_at":"2026-11-25T12:01:00Z","windows":[["day","2026-11-24T23:00:00Z"]]}]}"#;
    let _: () = redis::cmd("HSET")
        .arg("t6:{b:b1}:book")
        .arg("v")
        .arg("7")
        .arg("book")
        .arg(whole)
        .query_async(&mut redis_cli)
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(noon()));
    let budget = node(&redis.url(), "t6:", true, clock).await.budget;
    assert_eq!(budget.balance("b1", noon(), prepaid()).await.unwrap().available, Money::parse("50.00").unwrap());

    let handle = |id: &str| HoldHandle { buyer_id: Arc::from("b1"), hold_id: id.to_string() };
    assert_eq!(budget.settle(&handle("hold-1")).await.unwrap().balance_after, Money::parse("70.00").unwrap());
    let (version, summary): (String, String) =
        redis::cmd("HMGET").arg("t6:{b:b1}:book").arg("v").arg("book").query_async(&mut redis_cli).await.unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(version, "8");
    assert!(summary.get("holds").is_none(), "written back in parts: {summary}");
    assert_eq!((summary["held"]["count"].as_u64(), summary["held"]["charge"].as_str()), (Some(1), Some("20.00")));
    let expires: Option<i64> =
        redis::cmd("ZSCORE").arg("t6:{b:b1}:expiry").arg("hold-2").query_async(&mut redis_cli).await.unwrap();
    assert_eq!(expires, Some((noon() + chrono::Duration::minutes(1)).timestamp_millis()));

    budget.release(&handle("hold-2")).await.unwrap();
    assert_eq!(budget.balance("b1", noon(), prepaid()).await.unwrap().available, Money::parse("70.00").unwrap());
    let fields: usize = redis::cmd("HLEN").arg("t6:{b:b1}:book").query_async(&mut redis_cli).await.unwrap();
    assert_eq!(fields, 2, "the version and the summary");
}

/// Pings for one buyer that arrive together on one node are held a batch per change of the
/// book, at most 256 a batch: exactly the balance's worth is held, each ping gets its own
/// answer, and the book was written fewer times than holds were taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pings_queued_for_one_buyer_are_held_in_batches_without_overspending() {
    let redis = RedisServer::start().await;
    let node = ping_node(&redis.url(), "t7:", "500.00").await;
    let tasks: Vec<_> = (0..800).map(|n| spawn_ping(&node, n)).collect();
    let (mut held, mut refused) = (0, 0);
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await.expect("every ping is answered").unwrap().1 {
            Ok(_) => held += 1,
            Err(BudgetError::Refused(_)) => refused += 1,
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!((held, refused), (500, 300));
    let view = node.budget.balance("b1", noon(), prepaid()).await.unwrap();
    assert_eq!((view.held, view.available), (Money::parse("500.00").unwrap(), Money::ZERO));
    let mut redis_cli = connect(&redis.url()).await;
    let (version, fields): (u64, usize) = redis::pipe()
        .cmd("HGET")
        .arg("t7:{b:b1}:book")
        .arg("v")
        .cmd("HLEN")
        .arg("t7:{b:b1}:book")
        .query_async(&mut redis_cli)
        .await
        .unwrap();
    assert_eq!(fields, 2 + 500, "a field for each hold answered yes");
    assert!(version < 1 + 500, "one write for the top-up and fewer than one per hold, got version {version}");
}

/// Pings whose requests are dropped while queued or while their batch is written never
/// leave the book above its balance, every ping still waiting gets its answer, and every
/// hold answered yes is in the book.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pings_cancelled_in_the_queue_never_overspend_and_the_rest_are_answered() {
    let redis = RedisServer::start().await;
    let node = ping_node(&redis.url(), "t8:", "30.00").await;
    let tasks: Vec<_> = (0..120).map(|n| spawn_ping(&node, n)).collect();
    // Every third request goes away at once, wherever it is.
    for task in tasks.iter().step_by(3) {
        task.abort();
    }
    let mut answered_yes = Vec::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await.expect("every ping is answered") {
            Ok((n, Ok(_))) => answered_yes.push(n),
            Ok((_, Err(BudgetError::Refused(_)))) => {}
            Ok((_, Err(other))) => panic!("unexpected: {other}"),
            Err(aborted) => assert!(aborted.is_cancelled()),
        }
    }
    let view = node.budget.balance("b1", noon(), prepaid()).await.unwrap();
    assert!(view.available >= Money::ZERO && view.held <= Money::parse("30.00").unwrap(), "{view:?}");
    assert!(view.held >= Money::cents(100 * answered_yes.len() as i64), "{view:?} {answered_yes:?}");
    let mut redis_cli = connect(&redis.url()).await;
    for n in answered_yes {
        let kept: bool = redis::cmd("HEXISTS")
            .arg("t8:{b:b1}:book")
            .arg(format!("h:hold-{n}"))
            .query_async(&mut redis_cli)
            .await
            .unwrap();
        assert!(kept, "hold-{n} was answered yes");
    }
}

/// The request whose change was applying a batch goes away while Redis is paused: the
/// pings in that batch are not left without an answer. One whose hold was not written
/// takes it on its own once Redis answers again, and only the holds answered yes are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ping_whose_batch_was_dropped_takes_its_hold_on_its_own() {
    let redis = RedisServer::start().await;
    let node = ping_node(&redis.url(), "t9:", "10.00").await;
    let hold = |n: usize| spawn_ping(&node, n);
    let mut redis_cli = connect(&redis.url()).await;
    let settle = Duration::from_millis(200);
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1_500).arg("ALL").query_async(&mut redis_cli).await.unwrap();
    // First applies a batch of its own and waits on Redis; second and third queue behind
    // it, then second takes both of theirs in a batch and waits too.
    let first = hold(1);
    tokio::time::sleep(settle).await;
    let (second, third) = (hold(2), hold(3));
    tokio::time::sleep(settle).await;
    first.abort();
    tokio::time::sleep(settle).await;
    second.abort();
    let (_, third) = tokio::time::timeout(Duration::from_secs(30), third).await.expect("answered").unwrap();
    assert!(third.is_ok(), "{third:?}");
    assert!(first.await.unwrap_err().is_cancelled() && second.await.unwrap_err().is_cancelled());
    let view = node.budget.balance("b1", noon(), prepaid()).await.unwrap();
    assert_eq!(view.held, Money::parse("1.00").unwrap(), "only the third's hold: {view:?}");
    let kept: bool =
        redis::cmd("HEXISTS").arg("t9:{b:b1}:book").arg("h:hold-3").query_async(&mut redis_cli).await.unwrap();
    assert!(kept);
}
