//! The `Budget` of several nodes: each buyer's book lives in one Redis key, changed by
//! compare-and-set, and a node sells a buyer's direct posts from a lease it took from that
//! book in advance, so invariant 2 holds across nodes without a round trip per sale.
//!
//! Rationale: the rules for money, caps and leases (DST-aware cap windows, holds that
//! settle into the windows they were counted in, leases counted in full until retired) live
//! once, in `domain::budget`. Re-writing them in Lua would be a second implementation to
//! keep equal. Instead a node reads the book, applies the domain rule, and writes the result
//! only if nobody wrote in between (a version in the same hash); a lost race reads again.
//! One key per buyer, with the buyer id as the hash tag, is Redis Cluster compatible, and
//! two buyers never contend.
//!
//! Leases (DESIGN §9, `domain::budget::lease`): a hold a request settles itself (a direct
//! post, a post's fallback) comes from this node's lease of the buyer (`NodeLeases`, in
//! memory). When the lease runs short, one grant (sized to about half a second of this
//! node's recent sales to that buyer, at most a quarter of what is left) extends it, while
//! the buyer's other requests on this node wait for it. A sale settled from a lease reaches
//! Redis with the ledger entry that records it (`redis_ledger`), which counts it against the
//! lease in the same step. A lease lives `LEASE_TTL` unless renewed; a node stops holding
//! from it well before (`LEASE_USABLE`), returns it once quiet (`QUIET`: longer than any
//! append can take), and on shutdown. Whoever finds an expired lease in a book (a dead
//! node's) retires it: it fences the lease in the ledger, reads what was sold from it, and
//! frees the rest. A ping's hold lives in the book itself: its post may come to any node.
//!
//! The book is kept in parts (`domain::budget::stored`): the hash `{b:<buyer>}:book` has
//! its version (`v`), its summary (`book`: balance, usage, leases, and what the open holds
//! add up to) and one field per open hold (`h:<hold id>`), and the sorted set
//! `{b:<buyer>}:expiry` orders the holds by when they expire (ms). A change reads the
//! summary, the holds due to expire and the holds it names, in one script, and writes the
//! summary and the hold fields that came or went in another. So a ping costs the same with
//! thousands of holds open as with none. A book written whole by an older version is read
//! whole and written back in parts.
//!
//! Expired holds are dropped by the next operation on the book (every rule expires first).
//!
//! Contention: a node runs one change of a buyer's book at a time (a local lock per
//! buyer), so compare-and-set races happen only between nodes, and a lost race backs off
//! for a random moment before it reads again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use dashmap::DashMap;
use rand::Rng;
use redis::Script;

use tokio::sync::oneshot;

use super::redis::{RedisConnection, Shared};
use super::redis_ledger::RedisLedger;
use super::{Budget, BudgetError, Held, HoldHandle};
use crate::clock::Clock;
use crate::domain::budget::lease::{CapStanding, LeaseRequest, LeaseUsage, NodeLeases};
use crate::domain::budget::{
    BalanceView, BookState, BuyerBook, Funding, HoldRequest, HoldScope, HoldState, ReplayedSale, Settled,
};
use crate::domain::caps::Cap;
use crate::domain::money::Money;

mod queued;

use queued::{OwnedHold, Queued, Turn};

/// Reads the book's version and summary, and the holds due to expire by ARGV[1] (ms, at
/// most ARGV[2] of them) and those named in ARGV[3..]. KEYS: the book, its expiry index.
const READ_BOOK: &str = r"
local head = redis.call('HMGET', KEYS[1], 'v', 'book')
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for i = 3, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
local holds = {}
if #ids > 0 then
  local fields = {}
  for i, id in ipairs(ids) do
    fields[i] = 'h:' .. id
  end
  holds = redis.call('HMGET', KEYS[1], unpack(fields))
end
return {head[1], head[2], holds}
";

/// Writes the new summary only if the version is still the one that was read, with the
/// holds that came (ARGV[4] of them, each as id, expiry in ms, record) and without those
/// that went (the rest of ARGV). KEYS: the book, its expiry index.
const COMPARE_AND_SET: &str = r"
local version = redis.call('HGET', KEYS[1], 'v')
if (version or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'book', ARGV[3])
local next = 5
for _ = 1, tonumber(ARGV[4]) do
  redis.call('HSET', KEYS[1], 'h:' .. ARGV[next], ARGV[next + 2])
  redis.call('ZADD', KEYS[2], ARGV[next + 1], ARGV[next])
  next = next + 3
end
for i = next, #ARGV do
  redis.call('HDEL', KEYS[1], 'h:' .. ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return 1
";

/// The most holds due to expire one change reads (and drops). Any left over still count
/// against the balance and caps until a later change drops them.
const DUE_MAX: usize = 2_000;

/// The most queued holds one change applies: the read script unpacks one argument per
/// hold, and Lua's stack takes about 8,000.
const BATCH_MAX: usize = 256;

/// Lost races in a row before an operation gives up (each retry re-reads the book).
const ATTEMPTS_MAX: usize = 64;

/// How long a lease lives in the book unless its node renews it.
const LEASE_TTL: chrono::Duration = chrono::Duration::seconds(15);
/// How long after a grant or renewal the node still holds from a lease: the rest of the
/// TTL is margin for clocks that differ between nodes.
const LEASE_USABLE: chrono::Duration = chrono::Duration::seconds(10);
/// A lease in use is renewed when it would become unusable within this.
const RENEW_WITHIN: chrono::Duration = chrono::Duration::seconds(5);
/// A lease with no hold open and no sale for this long is returned. Longer than an append
/// may take (Redis's 3 s response timeout), so no sale of it is still on its way.
const QUIET: chrono::Duration = chrono::Duration::seconds(5);
/// A lease is replaced by a new one after this long, so the counters of old cap windows
/// do not pile up in one lease.
const LEASE_ROTATE: chrono::Duration = chrono::Duration::minutes(10);
/// The most sales one grant asks for.
const UNITS_MAX: u32 = 1_024;

pub struct RedisBudget {
    redis: Shared,
    prefix: String,
    clock: Arc<dyn Clock>,
    node: String,
    /// Direct holds come from leases (the default); off, every hold is a change of the book.
    leasing: AtomicBool,
    read_book: Script,
    compare_and_set: Script,
    /// One change of a buyer's book at a time on this node, and the holds waiting for the
    /// next (`queued`).
    turns: DashMap<String, Arc<Turn>>,
    leases: DashMap<Arc<str>, Arc<BuyerLeases>>,
}

/// A buyer's book in Redis: its hash and its expiry index (see the module's doc).
struct BookKeys {
    book: String,
    expiry: String,
}

/// A book as read, with its version and the holds it had at hand as stored.
struct ReadBook {
    version: u64,
    book: BuyerBook,
    holds: HashMap<String, HoldState>,
}

/// This node's leases of one buyer, and how fast it sells to that buyer.
#[derive(Default)]
struct BuyerLeases {
    leases: parking_lot::Mutex<NodeLeases>,
    rate: parking_lot::Mutex<Rate>,
    /// What the book had available, apart from leases, at the last grant (for the gauge).
    shared_available: parking_lot::Mutex<Money>,
}

/// Holds taken per second, in whole seconds: this one and the one before.
#[derive(Default)]
struct Rate {
    since: Option<Instant>,
    this_second: u32,
    last_second: u32,
}

impl Rate {
    fn note(&mut self, now: Instant) {
        match self.since {
            Some(since) if now.duration_since(since) < Duration::from_secs(1) => {}
            Some(since) => {
                let recent = now.duration_since(since) < Duration::from_secs(2);
                self.last_second = if recent { self.this_second } else { 0 };
                self.this_second = 0;
                self.since = Some(now);
            }
            None => self.since = Some(now),
        }
        self.this_second = self.this_second.saturating_add(1);
    }

    /// About half a second of sales.
    fn units(&self) -> u32 {
        (self.this_second.max(self.last_second) / 2).clamp(1, UNITS_MAX)
    }
}

impl RedisBudget {
    /// Connects to `url`; `prefix` keeps deployments sharing a Redis apart (`lr:`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        node: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisBudget, BudgetError> {
        Ok(RedisBudget::on(&RedisConnection::open(url).await.map_err(unavailable)?, prefix, node, clock))
    }

    /// The budget of node `node` (its leases carry the name) on `connection`.
    pub fn on(connection: &RedisConnection, prefix: &str, node: &str, clock: Arc<dyn Clock>) -> RedisBudget {
        RedisBudget {
            redis: connection.manager.clone(),
            prefix: prefix.to_string(),
            clock,
            node: node.to_string(),
            leasing: AtomicBool::new(true),
            read_book: Script::new(READ_BOOK),
            compare_and_set: Script::new(COMPARE_AND_SET),
            turns: DashMap::new(),
            leases: DashMap::new(),
        }
    }

    /// Turns leases off (every hold a change of the shared book) or on.
    pub fn with_leases(self, on: bool) -> RedisBudget {
        self.leasing.store(on, Ordering::Relaxed);
        self
    }

    /// The book's hash and its expiry index, in the buyer's slot.
    fn keys(&self, buyer_id: &str) -> BookKeys {
        BookKeys {
            book: format!("{}{{b:{buyer_id}}}:book", self.prefix),
            expiry: format!("{}{{b:{buyer_id}}}:expiry", self.prefix),
        }
    }

    fn turn(&self, buyer_id: &str) -> Arc<Turn> {
        match self.turns.get(buyer_id) {
            Some(turn) => Arc::clone(&turn),
            None => Arc::clone(&self.turns.entry(buyer_id.to_string()).or_default()),
        }
    }

    fn buyer(&self, buyer_id: &Arc<str>) -> Arc<BuyerLeases> {
        match self.leases.get(buyer_id) {
            Some(leases) => Arc::clone(&leases),
            None => Arc::clone(&self.leases.entry(Arc::clone(buyer_id)).or_default()),
        }
    }

    /// Applies `change` to the buyer's book atomically, under this node's lock of it, with
    /// the holds `named` at hand (the ones it settles or releases).
    async fn update<T>(
        &self,
        buyer_id: &str,
        now: DateTime<Utc>,
        named: &[&str],
        change: impl FnMut(&mut BuyerBook) -> (T, bool),
    ) -> Result<T, BudgetError> {
        let turn = self.turn(buyer_id);
        let _one_at_a_time = turn.changing.lock().await;
        self.update_locked(buyer_id, now, named, change).await
    }

    /// `update` for a caller that holds the buyer's lock. `change` answers its outcome and
    /// whether it changed the book; an unchanged book is not written. Leases found expired
    /// are retired first, in the same write.
    async fn update_locked<T>(
        &self,
        buyer_id: &str,
        now: DateTime<Utc>,
        named: &[&str],
        mut change: impl FnMut(&mut BuyerBook) -> (T, bool),
    ) -> Result<T, BudgetError> {
        let keys = self.keys(buyer_id);
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                // Another node wrote in between: let it finish before reading again.
                let pause = rand::thread_rng().gen_range(0..=(attempt as u64 * 200).min(5_000));
                tokio::time::sleep(Duration::from_micros(pause)).await;
            }
            let ReadBook { version, mut book, holds } = self.read(&keys, buyer_id, now, named).await?;
            let mut retired = false;
            for lease_id in book.expired_leases(now) {
                let sold = self.revoke(&lease_id).await?;
                retired |= book.retire_lease(&lease_id, &sold);
            }
            let (outcome, changed) = change(&mut book);
            if !changed && !retired {
                return Ok(outcome);
            }
            if self.write(&keys, version, &book, &holds).await? {
                return Ok(outcome);
            }
        }
        Err(BudgetError::Unavailable(format!("the book of {buyer_id} kept changing under {ATTEMPTS_MAX} attempts")))
    }

    /// The book as stored, with its version (0 and an empty book when there is none), and
    /// with at hand the holds due to expire by `now` and those `named`.
    async fn read(
        &self,
        keys: &BookKeys,
        buyer_id: &str,
        now: DateTime<Utc>,
        named: &[&str],
    ) -> Result<ReadBook, BudgetError> {
        let mut read = self.read_book.key(&keys.book);
        read.key(&keys.expiry).arg(now.timestamp_millis()).arg(DUE_MAX);
        for id in named {
            read.arg(*id);
        }
        let (version, summary, records): (Option<u64>, Option<String>, Vec<Option<String>>) =
            read.invoke_async(&mut self.redis.clone()).await.map_err(unavailable)?;
        let corrupt =
            |error: serde_json::Error| BudgetError::Unavailable(format!("corrupt book of {buyer_id}: {error}"));
        let mut holds = HashMap::with_capacity(records.len());
        for json in records.into_iter().flatten() {
            let record: HoldState = serde_json::from_str(&json).map_err(corrupt)?;
            holds.insert(record.id().to_string(), record);
        }
        let book = match summary {
            Some(json) => {
                BuyerBook::with_some_holds(serde_json::from_str(&json).map_err(corrupt)?, holds.values().cloned())
            }
            None => BuyerBook::default(),
        };
        Ok(ReadBook { version: version.unwrap_or(0), book, holds })
    }

    /// Writes `book` over version `version` of the stored one, which had `read` at hand:
    /// its summary, the holds that came or changed, and not those that went. Answers false
    /// when another node wrote in between.
    async fn write(
        &self,
        keys: &BookKeys,
        version: u64,
        book: &BuyerBook,
        read: &HashMap<String, HoldState>,
    ) -> Result<bool, BudgetError> {
        let encode = |error: serde_json::Error| BudgetError::Unavailable(error.to_string());
        let at_hand = book.hold_records();
        let came: Vec<&HoldState> = at_hand.iter().filter(|record| read.get(record.id()) != Some(*record)).collect();
        let kept: HashSet<&str> = at_hand.iter().map(HoldState::id).collect();
        let mut write = self.compare_and_set.key(&keys.book);
        write
            .key(&keys.expiry)
            .arg(version.to_string())
            .arg(version + 1)
            .arg(serde_json::to_string(&BookState::without_holds(book)).map_err(encode)?)
            .arg(came.len());
        for record in came {
            write
                .arg(record.id())
                .arg(record.expires_at().timestamp_millis())
                .arg(serde_json::to_string(record).map_err(encode)?);
        }
        for id in read.keys().filter(|id| !kept.contains(id.as_str())) {
            write.arg(id.as_str());
        }
        let written: i32 = write.invoke_async(&mut self.redis.clone()).await.map_err(unavailable)?;
        Ok(written == 1)
    }

    /// Fences a lease in the ledger and answers what was sold from it.
    async fn revoke(&self, lease_id: &str) -> Result<LeaseUsage, BudgetError> {
        RedisLedger::revoke_lease(&self.redis, &self.prefix, lease_id)
            .await
            .map_err(|error| BudgetError::Unavailable(error.to_string()))
    }

    /// A hold in the shared book itself (a ping's, or any with leases off). It is queued,
    /// and whoever has the buyer's lock next applies everything queued in one change
    /// (`queued`); a change another request ran may already have answered it.
    async fn hold_in_book(
        &self,
        buyer_id: &Arc<str>,
        now: DateTime<Utc>,
        request: HoldRequest<'_>,
    ) -> Result<Held, BudgetError> {
        let handle = HoldHandle { buyer_id: Arc::clone(buyer_id), hold_id: request.hold_id.clone() };
        let (answer, mut answered) = oneshot::channel();
        let turn = self.turn(buyer_id);
        turn.queued.lock().push(Queued { hold: OwnedHold::of(&request), now, answer });
        let outcome = {
            let _one_at_a_time = turn.changing.lock().await;
            // Batches from the front of the queue until this hold's has been applied: a
            // caller leaves the lock only once its own hold is answered.
            loop {
                match answered.try_recv() {
                    Ok(outcome) => break Some(outcome),
                    Err(oneshot::error::TryRecvError::Empty) => self.apply_queued(buyer_id, &turn).await,
                    Err(oneshot::error::TryRecvError::Closed) => break None,
                }
            }
        };
        match outcome {
            Some(outcome) => Ok(Held { handle, available: outcome?? }),
            // The change that took it was dropped on the way (its request cancelled).
            None => self.hold_again(buyer_id, now, request, handle).await,
        }
    }

    /// Applies the holds queued for the buyer (at most `BATCH_MAX`, from the front), in
    /// the order they came, in one change of its book, and answers each. The caller holds
    /// the buyer's lock. A hold whose request has gone is not applied; one that went while
    /// the change ran is released again.
    async fn apply_queued(&self, buyer_id: &str, turn: &Turn) {
        let mut batch: Vec<Queued> = {
            let mut queue = turn.queued.lock();
            let take = queue.len().min(BATCH_MAX);
            queue.drain(..take).collect()
        };
        batch.retain(|queued| !queued.answer.is_closed());
        let Some(now) = batch.iter().map(|queued| queued.now).max() else { return };
        // A new hold's id is fresh (`ids::hold_id`): the book has no hold of that id to read.
        let outcomes = self
            .update_locked(buyer_id, now, &[], |book| {
                let outcomes: Vec<_> =
                    batch.iter().map(|queued| book.try_hold(queued.now, queued.hold.request())).collect();
                let changed = outcomes.iter().any(Result::is_ok);
                (outcomes, changed)
            })
            .await;
        let mut unclaimed = Vec::new();
        match outcomes {
            Ok(outcomes) => {
                for (queued, outcome) in batch.into_iter().zip(outcomes) {
                    let held = outcome.is_ok();
                    if queued.answer.send(Ok(outcome)).is_err() && held {
                        unclaimed.push(queued.hold.hold_id);
                    }
                }
            }
            Err(error) => {
                for queued in batch {
                    let _ = queued.answer.send(Err(error.clone()));
                }
            }
        }
        if unclaimed.is_empty() {
            return;
        }
        let ids: Vec<&str> = unclaimed.iter().map(String::as_str).collect();
        let released = self
            .update_locked(buyer_id, now, &ids, |book| {
                let released = ids.iter().filter(|id| book.release(id)).count();
                ((), released > 0)
            })
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, buyer = %buyer_id, "holds of requests that went were not released; they will expire");
        }
    }

    /// A hold whose queued change was dropped on the way: if that change wrote it, it
    /// stands; if not, it is taken now, on its own.
    async fn hold_again(
        &self,
        buyer_id: &Arc<str>,
        now: DateTime<Utc>,
        request: HoldRequest<'_>,
        handle: HoldHandle,
    ) -> Result<Held, BudgetError> {
        let hold_id = handle.hold_id.clone();
        let available = self
            .update(buyer_id, now, &[&hold_id], |book| {
                if book.has_hold(&hold_id) {
                    return (Ok(book.view(now, request.funding).available), false);
                }
                let held = book.try_hold(now, request.clone());
                let changed = held.is_ok();
                (held, changed)
            })
            .await??;
        Ok(Held { handle, available })
    }

    /// A hold from this node's lease, extending the lease first when it runs short.
    async fn hold_from_lease(
        &self,
        buyer_id: &Arc<str>,
        now: DateTime<Utc>,
        request: HoldRequest<'_>,
    ) -> Result<Held, BudgetError> {
        let buyer = self.buyer(buyer_id);
        buyer.rate.lock().note(Instant::now());
        let handle = HoldHandle { buyer_id: Arc::clone(buyer_id), hold_id: request.hold_id.clone() };
        if let Some(held) = self.hold_locally(&buyer, now, &request, &handle) {
            return Ok(held);
        }
        // One grant at a time per buyer; whoever waited may find it already covered.
        let turn = self.turn(buyer_id);
        let _one_at_a_time = turn.changing.lock().await;
        for _ in 0..3 {
            if let Some(held) = self.hold_locally(&buyer, now, &request, &handle) {
                return Ok(held);
            }
            let (lease_id, extends) = match buyer.leases.lock().active(now) {
                Some((lease_id, opened_at)) if now - opened_at < LEASE_ROTATE => (lease_id.to_string(), true),
                _ => (crate::ids::new_id("lease"), false),
            };
            let ask = LeaseRequest {
                lease_id: &lease_id,
                node: &self.node,
                campaign_id: request.campaign_id,
                price: request.price,
                funding: request.funding,
                caps: request.caps,
                tz: request.tz,
                units: buyer.rate.lock().units(),
                expires_at: now + LEASE_TTL,
                extends,
            };
            let granted = self
                .update_locked(buyer_id, now, &[], |book| {
                    let granted = book.grant_lease(now, &ask);
                    let available = book.view(now, request.funding).available;
                    let changed = matches!(granted, Ok(Some(_)));
                    ((granted, available), changed)
                })
                .await?;
            match granted {
                (Ok(Some(lease)), available) => {
                    *buyer.shared_available.lock() = available;
                    buyer.leases.lock().adopt(&lease_id, lease, &ask, now, now + LEASE_USABLE);
                }
                (Ok(None), _) => buyer.leases.lock().close(&lease_id),
                (Err(refusal), _) => return Err(refusal.into()),
            }
        }
        self.hold_locally(&buyer, now, &request, &handle)
            .ok_or_else(|| BudgetError::Unavailable(format!("the lease of {buyer_id} could not be extended")))
    }

    fn hold_locally(
        &self,
        buyer: &BuyerLeases,
        now: DateTime<Utc>,
        request: &HoldRequest<'_>,
        handle: &HoldHandle,
    ) -> Option<Held> {
        let mut leases = buyer.leases.lock();
        leases.try_hold(now, request).ok()?;
        let available = *buyer.shared_available.lock() + leases.money_left();
        Some(Held { handle: handle.clone(), available })
    }

    /// Retires this node's lease: what it sold is charged, the rest is free again.
    async fn retire(&self, buyer_id: &str, lease_id: &str, now: DateTime<Utc>) -> Result<(), BudgetError> {
        let sold = self.revoke(lease_id).await?;
        self.update(buyer_id, now, &[], |book| ((), book.retire_lease(lease_id, &sold))).await
    }

    /// Renews the leases in use, returns the quiet ones, and retires expired leases of
    /// other nodes found in the books of this node's buyers.
    async fn keep_leases(&self, now: DateTime<Utc>) -> usize {
        let buyers: Vec<(Arc<str>, Arc<BuyerLeases>)> =
            self.leases.iter().map(|entry| (Arc::clone(entry.key()), Arc::clone(entry.value()))).collect();
        for (buyer_id, buyer) in &buyers {
            let renew = buyer.leases.lock().to_renew(now, RENEW_WITHIN).map(str::to_string);
            if let Some(lease_id) = renew {
                let renewed = self.update(buyer_id, now, &[], |book| {
                    let lease = book.renew_lease(&lease_id, now + LEASE_TTL);
                    let changed = lease.is_some();
                    (lease, changed)
                });
                match renewed.await {
                    Ok(Some(lease)) => buyer.leases.lock().renewed(&lease_id, lease, now + LEASE_USABLE),
                    Ok(None) => buyer.leases.lock().close(&lease_id),
                    Err(error) => tracing::warn!(%error, buyer = %buyer_id, "a lease was not renewed; it will expire"),
                }
            }
            let quiet = buyer.leases.lock().close_quiet(now, QUIET);
            for lease_id in quiet {
                match self.retire(buyer_id, &lease_id, now).await {
                    Ok(()) => buyer.leases.lock().forget(&lease_id),
                    Err(error) => {
                        tracing::warn!(%error, buyer = %buyer_id, "a quiet lease was not returned; it will expire")
                    }
                }
            }
            // A book with an expired lease in it (a dead node's) is retired on its next
            // change; a buyer this node sells to is looked at here too.
            if let Ok(read) = self.read(&self.keys(buyer_id), buyer_id, now, &[]).await {
                if !read.book.expired_leases(now).is_empty() {
                    let _ = self.update(buyer_id, now, &[], |_| ((), false)).await;
                }
            }
        }
        buyers.len()
    }
}

fn unavailable(error: redis::RedisError) -> BudgetError {
    BudgetError::Unavailable(error.to_string())
}

#[async_trait]
impl Budget for RedisBudget {
    async fn try_hold(
        &self,
        buyer_id: &Arc<str>,
        now: DateTime<Utc>,
        request: HoldRequest<'_>,
    ) -> Result<Held, BudgetError> {
        if request.scope == HoldScope::Ping || !self.leasing.load(Ordering::Relaxed) {
            return self.hold_in_book(buyer_id, now, request).await;
        }
        self.hold_from_lease(buyer_id, now, request).await
    }

    /// A hold from a lease settles in memory: the ledger counts the sale against the
    /// lease when it records it (`Settled::lease`). Others settle in the book.
    async fn settle(&self, hold: &HoldHandle) -> Result<Settled, BudgetError> {
        let now = self.clock.now();
        if let Some(buyer) = self.leases.get(&hold.buyer_id).map(|entry| Arc::clone(&entry)) {
            let mut leases = buyer.leases.lock();
            if let Some(charge) = leases.settle(&hold.hold_id, now) {
                let left = leases.money_left();
                return Ok(Settled { charged: charge.charge, balance_after: left, lease: Some(charge) });
            }
        }
        self.update(&hold.buyer_id, now, &[&hold.hold_id], |book| {
            let settled = book.settle(&hold.hold_id);
            let changed = settled.is_ok();
            (settled, changed)
        })
        .await?
        .map_err(|_| BudgetError::UnknownHold)
    }

    async fn release(&self, hold: &HoldHandle) -> Result<(), BudgetError> {
        if let Some(buyer) = self.leases.get(&hold.buyer_id).map(|entry| Arc::clone(&entry)) {
            if buyer.leases.lock().release(&hold.hold_id) {
                return Ok(());
            }
        }
        self.update(&hold.buyer_id, self.clock.now(), &[&hold.hold_id], |book| ((), book.release(&hold.hold_id))).await
    }

    /// Answers the balance after the top-up, with what live leases sold counted.
    async fn top_up(&self, buyer_id: &str, amount: Money) -> Result<Money, BudgetError> {
        let now = self.clock.now();
        let (balance, leases) = self
            .update(buyer_id, now, &[], |book| {
                book.top_up(amount);
                ((book.balance(), book.lease_ids()), true)
            })
            .await?;
        let sold = RedisLedger::lease_usage(&self.redis, &self.prefix, &leases)
            .await
            .map_err(|error| BudgetError::Unavailable(error.to_string()))?;
        Ok(balance - sold.iter().map(|usage| usage.charge).sum::<Money>())
    }

    /// The book with what live leases sold so far; expired leases are retired first.
    async fn balance(&self, buyer_id: &str, now: DateTime<Utc>, funding: Funding) -> Result<BalanceView, BudgetError> {
        let keys = self.keys(buyer_id);
        let mut book = self.read(&keys, buyer_id, now, &[]).await?.book;
        if !book.expired_leases(now).is_empty() {
            self.update(buyer_id, now, &[], |_| ((), false)).await?;
            book = self.read(&keys, buyer_id, now, &[]).await?.book;
        }
        let leases = book.lease_ids();
        let sold = RedisLedger::lease_usage(&self.redis, &self.prefix, &leases)
            .await
            .map_err(|error| BudgetError::Unavailable(error.to_string()))?;
        Ok(book.view_with_usage(now, funding, &leases.into_iter().zip(sold).collect()))
    }

    async fn cap_standings(
        &self,
        buyer_id: &str,
        campaign_id: &str,
        caps: &[Cap],
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Vec<CapStanding>, BudgetError> {
        let book = self.read(&self.keys(buyer_id), buyer_id, now, &[]).await?.book;
        let leases = book.lease_ids();
        let sold = RedisLedger::lease_usage(&self.redis, &self.prefix, &leases)
            .await
            .map_err(|error| BudgetError::Unavailable(error.to_string()))?;
        Ok(book.cap_standings(campaign_id, caps, tz, now, &leases.into_iter().zip(sold).collect()))
    }

    async fn replay_sale(&self, buyer_id: &str, sale: ReplayedSale<'_>) -> Result<(), BudgetError> {
        self.update(buyer_id, self.clock.now(), &[], |book| {
            book.replay_sale(&sale);
            ((), true)
        })
        .await
    }

    /// Run about once a second: keeps this node's leases (see `keep_leases`).
    async fn expire(&self, now: DateTime<Utc>) -> Result<usize, BudgetError> {
        Ok(self.keep_leases(now).await)
    }

    /// Returns every lease of this node (called once no request runs any more).
    async fn close(&self) {
        let now = self.clock.now();
        let buyers: Vec<(Arc<str>, Arc<BuyerLeases>)> =
            self.leases.iter().map(|entry| (Arc::clone(entry.key()), Arc::clone(entry.value()))).collect();
        for (buyer_id, buyer) in buyers {
            let closing = buyer.leases.lock().close_all();
            for lease_id in closing {
                match self.retire(&buyer_id, &lease_id, now).await {
                    Ok(()) => buyer.leases.lock().forget(&lease_id),
                    Err(error) => {
                        tracing::warn!(%error, buyer = %buyer_id, "a lease was not returned at shutdown; it will expire")
                    }
                }
            }
        }
    }
}
