//! The ledger of several nodes: one Redis Stream, whose entry ids are the gap-free ledger
//! sequences, written by a Lua script that takes the next sequence and appends in one step.
//! Every node mirrors the stream into memory and serves its gRPC `Subscribe` from the
//! mirror, so a subscriber on any node sees every sale, whichever node sold it.
//!
//! Durability: the script's reply is the acknowledgement; with Redis's AOF at
//! `appendfsync always` it is sent after the entry is on disk (deploy/README.md).
//! Keys share the hash tag `{ledger}`, so every key a script touches sits in one Cluster
//! slot.
//!
//! Appends are batched: concurrent appends of a node wait while one script call appends
//! everything that queued up behind it (as the journal shares one fsync among many
//! appends), so a busy node makes one round trip for many sales.
//!
//! Budget leases (DESIGN §9, `domain::budget::lease`): a sale sold from a lease carries a
//! `LeaseCharge`, which the same script adds to the lease's counters
//! (`{ledger}:lease:<id>`) as it appends the sale, unless the lease is fenced
//! (`{ledger}:lease:<id>:fence`): then that sale is refused and nothing is appended.
//! `revoke_lease` sets the fence and reads the counters in one step, so what a retired
//! lease sold is final, and a node that lost its lease cannot add to it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::event_mirror::EventMirror;
use super::journal::{InternalRecord, JournalError};
use super::redis::{RedisClient, RedisConnection, Shared};
use super::{EventLog, LogError};
use crate::domain::budget::lease::{LeaseCharge, LeaseUsage};
use crate::domain::ledger::{Event, LedgerEvent};

/// Appends a batch of entries under the next sequences, atomically. KEYS: the sequence,
/// the stream, then per lease named in the batch its fence and its counters. ARGV: the
/// number of entries, then per entry its JSON, its lease's number (0: none), the number of
/// counters, and the counters' names and increments. Answers each entry's sequence, or 0
/// for a sale whose lease is fenced (nothing of it is written). Each lease's fence is read
/// once and its counters incremented once per batch, by the batch's sums (integer cents,
/// exact in Lua's doubles far beyond any balance).
const APPEND: &str = r"
local sequence = tonumber(redis.call('GET', KEYS[1]) or '0')
local out = {}
local fenced = {}
local sums = {}
local a = 2
for e = 1, tonumber(ARGV[1]) do
  local entry, lease, counters = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if lease > 0 and fenced[lease] == nil then
    fenced[lease] = redis.call('EXISTS', KEYS[1 + 2 * lease]) == 1
    sums[lease] = {}
  end
  if lease > 0 and fenced[lease] then
    out[e] = 0
  else
    sequence = sequence + 1
    redis.call('XADD', KEYS[2], sequence .. '-1', 'e', entry)
    for c = 0, counters - 1 do
      local name = ARGV[a + 2 * c]
      sums[lease][name] = (sums[lease][name] or 0) + tonumber(ARGV[a + 2 * c + 1])
    end
    out[e] = sequence
  end
  a = a + 2 * counters
end
for lease, counters in pairs(sums) do
  for name, sum in pairs(counters) do
    redis.call('HINCRBY', KEYS[2 + 2 * lease], name, string.format('%d', sum))
  end
end
redis.call('SET', KEYS[1], sequence)
return out
";

/// Fences a lease and answers its counters: after this, no sale is added to them. The
/// fence and the counters are kept for `ARGV[1]` seconds, so a retirement may be repeated
/// (by another node, after a failure) and reads the same counters.
const REVOKE: &str = r"
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[2])
";

/// How long a retired lease's fence and counters are kept: far longer than any lease lives.
const FENCE_TTL_SECONDS: u64 = 7 * 24 * 3_600;

/// At most this many appends in one script call.
const APPEND_BATCH_MAX: usize = 256;

/// How many entries one mirror read takes.
const READ_BATCH: usize = 1024;

/// What a stream entry holds: the event and when it was journaled (its sequence is the id).
#[derive(Serialize, Deserialize)]
struct Entry {
    at: DateTime<Utc>,
    event: Event,
}

pub struct RedisLedger {
    redis: Shared,
    /// To the task that appends in batches (`append_batches`).
    appends: mpsc::Sender<Append>,
    stream_key: String,
    /// Internal records (idempotency answers, outbox messages, ...): no sequence, not on
    /// the ledger stream consumers read.
    internal_key: String,
    /// The node's copy of the stream.
    mirror: Arc<EventMirror>,
    /// Internal records carry the node that wrote them: outbox messages, pull leads and
    /// pending returns are the writing node's to restore after its restart.
    node: String,
}

impl RedisLedger {
    /// Connects, reads the stream so far into the mirror, and starts following it.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisLedger, LogError> {
        RedisLedger::on(&RedisConnection::open(url).await.map_err(unavailable)?, prefix).await
    }

    /// Reads the stream so far into the mirror over `connection`, and starts following it.
    pub async fn on(connection: &RedisConnection, prefix: &str) -> Result<RedisLedger, LogError> {
        let client = connection.client.clone();
        let keys = LedgerKeys::new(prefix);
        let (appends, queue) = mpsc::channel(APPEND_BATCH_MAX * 4);
        tokio::spawn(append_batches(connection.manager.clone(), keys.clone(), queue));
        let ledger = RedisLedger {
            redis: connection.manager.clone(),
            appends,
            stream_key: keys.stream.clone(),
            internal_key: format!("{prefix}{{ledger}}:internal"),
            mirror: Arc::new(EventMirror::new(Vec::new())),
            node: String::new(),
        };
        // Blocking reads get their own connection: on the shared one they would stall
        // every other command for up to the block time.
        let mut follower = client.connect().await.map_err(unavailable)?;
        while read_into(&mut follower, &ledger.stream_key, &ledger.mirror, None).await? > 0 {}
        tokio::spawn(follow(client, ledger.stream_key.clone(), Arc::clone(&ledger.mirror)));
        Ok(ledger)
    }

    /// Appends an event; answers it with its sequence once Redis has acknowledged it. A
    /// sale sold from a budget lease is counted against it in the same step, or refused
    /// when the lease was retired meanwhile (not sold: nothing is appended).
    pub async fn append(&self, event: Event, at: DateTime<Utc>) -> Result<LedgerEvent, LogError> {
        let lease = match &event {
            Event::SaleSettled(sale) => sale.lease.clone(),
            _ => None,
        };
        let entry = Entry { at, event };
        let json = serde_json::to_string(&entry).map_err(|error| LogError::Unavailable(error.to_string()))?;
        let (reply, answer) = oneshot::channel();
        let gone = || LogError::Unavailable("the ledger's append task stopped".into());
        self.appends.send(Append { json, lease, reply }).await.map_err(|_| gone())?;
        let sequence = answer.await.map_err(|_| gone())??;
        Ok(LedgerEvent { sequence, at: entry.at, event: entry.event })
    }

    /// Fences a budget lease and answers what was sold from it: final, since no sale can
    /// be added to a fenced lease. Repeating it answers the same.
    pub async fn revoke_lease(redis: &Shared, prefix: &str, lease_id: &str) -> Result<LeaseUsage, LogError> {
        let keys = LedgerKeys::new(prefix);
        let counters: Vec<(String, i64)> = Script::new(REVOKE)
            .key(keys.fence(lease_id))
            .key(keys.counters(lease_id))
            .arg(FENCE_TTL_SECONDS)
            .invoke_async(&mut redis.clone())
            .await
            .map_err(unavailable)?;
        usage_of(lease_id, &counters)
    }

    /// What was sold from each of these live leases so far (no fence: a read).
    pub async fn lease_usage(redis: &Shared, prefix: &str, lease_ids: &[String]) -> Result<Vec<LeaseUsage>, LogError> {
        if lease_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = LedgerKeys::new(prefix);
        let mut pipe = redis::pipe();
        for lease_id in lease_ids {
            pipe.hgetall(keys.counters(lease_id));
        }
        let counters: Vec<Vec<(String, i64)>> = pipe.query_async(&mut redis.clone()).await.map_err(unavailable)?;
        lease_ids.iter().zip(counters).map(|(lease_id, counters)| usage_of(lease_id, &counters)).collect()
    }
}

fn usage_of(lease_id: &str, counters: &[(String, i64)]) -> Result<LeaseUsage, LogError> {
    LeaseUsage::from_counters(counters.iter().map(|(name, value)| (name.as_str(), *value)))
        .map_err(|message| LogError::Unavailable(format!("lease {lease_id}: {message}")))
}

/// The ledger's keys, all under the hash tag `{ledger}` (one Cluster slot).
#[derive(Clone)]
struct LedgerKeys {
    prefix: String,
    sequence: String,
    stream: String,
}

impl LedgerKeys {
    fn new(prefix: &str) -> LedgerKeys {
        LedgerKeys {
            prefix: prefix.to_string(),
            sequence: format!("{prefix}{{ledger}}:sequence"),
            stream: format!("{prefix}{{ledger}}:stream"),
        }
    }

    fn counters(&self, lease_id: &str) -> String {
        format!("{}{{ledger}}:lease:{lease_id}", self.prefix)
    }

    fn fence(&self, lease_id: &str) -> String {
        format!("{}{{ledger}}:lease:{lease_id}:fence", self.prefix)
    }
}

/// One append waiting for its batch.
struct Append {
    json: String,
    lease: Option<LeaseCharge>,
    reply: oneshot::Sender<Result<u64, LogError>>,
}

/// Appends whatever queued up while the previous batch was in Redis, in one script call,
/// until the ledger is dropped.
async fn append_batches(redis: Shared, keys: LedgerKeys, mut queue: mpsc::Receiver<Append>) {
    let script = Script::new(APPEND);
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < APPEND_BATCH_MAX {
            match queue.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        let mut invocation = script.key(&keys.sequence);
        invocation.key(&keys.stream);
        let mut leases: Vec<&str> = Vec::new();
        invocation.arg(batch.len());
        for append in &batch {
            invocation.arg(append.json.as_str());
            match &append.lease {
                None => {
                    invocation.arg(0).arg(0);
                }
                Some(charge) => {
                    let number = match leases.iter().position(|id| *id == charge.lease_id) {
                        Some(index) => index + 1,
                        None => {
                            leases.push(&charge.lease_id);
                            invocation.key(keys.fence(&charge.lease_id)).key(keys.counters(&charge.lease_id));
                            leases.len()
                        }
                    };
                    let counters = charge.counters();
                    invocation.arg(number).arg(counters.len());
                    for (name, increment) in counters {
                        invocation.arg(name).arg(increment);
                    }
                }
            }
        }
        let answered: Result<Vec<u64>, _> = invocation.invoke_async(&mut redis.clone()).await;
        match answered {
            Ok(sequences) if sequences.len() == batch.len() => {
                for (append, sequence) in batch.into_iter().zip(sequences) {
                    let answer = match sequence {
                        0 => Err(LogError::Unavailable(
                            "the sale's budget lease was retired before it was recorded".into(),
                        )),
                        sequence => Ok(sequence),
                    };
                    let _ = append.reply.send(answer);
                }
            }
            Ok(sequences) => {
                let message = format!("{} sequences for {} appends", sequences.len(), batch.len());
                for append in batch {
                    let _ = append.reply.send(Err(LogError::Unavailable(message.clone())));
                }
            }
            Err(error) => {
                // Whether Redis ran the script is unknown (a timeout): the caller answers
                // 503, never `sold`, as for a single append that failed.
                let message = error.to_string();
                for append in batch {
                    let _ = append.reply.send(Err(LogError::Unavailable(message.clone())));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl super::Ledger for RedisLedger {
    async fn append(&self, event: Event, at: DateTime<Utc>) -> Result<LedgerEvent, JournalError> {
        RedisLedger::append(self, event, at).await.map_err(|error| JournalError::Unavailable(error.to_string()))
    }

    async fn append_internal(&self, record: InternalRecord) -> Result<(), JournalError> {
        let json = serde_json::to_string(&record).map_err(|error| JournalError::Io(error.to_string()))?;
        let mut redis = self.redis.clone();
        let _: String = redis
            .xadd(&self.internal_key, "*", &[("r", json.as_str()), ("n", self.node.as_str())])
            .await
            .map_err(|error| JournalError::Unavailable(error.to_string()))?;
        Ok(())
    }

    /// Every append is acknowledged by Redis already; there is nothing to flush.
    async fn close(&self) {}

    fn event_log(self: Arc<Self>) -> Arc<dyn EventLog> {
        self
    }
}

impl RedisLedger {
    /// Names the node whose internal records this ledger writes.
    pub fn for_node(mut self, node: &str) -> RedisLedger {
        self.node = node.to_string();
        self
    }

    /// Every internal record with its writer, and the position after the last.
    pub async fn all_internal(&self) -> Result<(String, Vec<(String, InternalRecord)>), LogError> {
        const PAGE: usize = 10_000;
        let (mut after, mut records) = (String::new(), Vec::new());
        loop {
            let page = self.read_internal(&after, PAGE).await?;
            let full = page.len() == PAGE;
            for (position, node, record) in page {
                after = position;
                records.push((node, record));
            }
            if !full {
                return Ok((after, records));
            }
        }
    }

    async fn read_internal(&self, after: &str, max: usize) -> Result<Vec<(String, String, InternalRecord)>, LogError> {
        let start = if after.is_empty() { "-".to_string() } else { format!("({after}") };
        let page: redis::streams::StreamRangeReply =
            self.redis.clone().xrange_count(&self.internal_key, start, "+", max).await.map_err(unavailable)?;
        let mut records = Vec::with_capacity(page.ids.len());
        for entry in page.ids {
            let json: String = entry.get("r").unwrap_or_default();
            let node: String = entry.get("n").unwrap_or_default();
            match serde_json::from_str(&json) {
                Ok(record) => records.push((entry.id, node, record)),
                Err(error) => {
                    tracing::error!(%error, id = %entry.id, "an internal record does not decode; skipped")
                }
            }
        }
        Ok(records)
    }

    /// How many internal records the shared ledger holds.
    pub async fn internal_records(&self) -> Result<u64, LogError> {
        let mut redis = self.redis.clone();
        redis.xlen(&self.internal_key).await.map_err(unavailable)
    }
}

impl EventLog for RedisLedger {
    fn read_after(&self, after: u64, max: usize) -> Result<Vec<LedgerEvent>, LogError> {
        self.mirror.read_after(after, max)
    }

    fn last_sequence(&self) -> u64 {
        self.mirror.last_sequence()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.mirror.watch()
    }
}

/// Keeps the mirror up to date, reconnecting when Redis goes away.
async fn follow(client: RedisClient, key: String, mirror: Arc<EventMirror>) {
    loop {
        let mut connection = match client.connect().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, "ledger stream: cannot reach Redis; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            if Arc::strong_count(&mirror) == 1 {
                return; // the ledger was dropped
            }
            if let Err(error) = read_into(&mut connection, &key, &mirror, Some(1000)).await {
                tracing::warn!(%error, "ledger stream: read failed; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        }
    }
}

/// Reads the entries after the mirror's last into it; answers how many it took.
async fn read_into(
    connection: &mut Shared,
    key: &str,
    mirror: &EventMirror,
    block_ms: Option<usize>,
) -> Result<usize, LogError> {
    let last = mirror.last_sequence();
    let mut options = StreamReadOptions::default().count(READ_BATCH);
    if let Some(block) = block_ms {
        options = options.block(block);
    }
    let reply: Option<StreamReadReply> =
        connection.xread_options(&[key], &[format!("{last}-1")], &options).await.map_err(unavailable)?;
    let Some(reply) = reply else { return Ok(0) };
    let mut taken = Vec::new();
    for stream in reply.keys {
        for entry in stream.ids {
            let sequence =
                entry.id.split('-').next().and_then(|sequence| sequence.parse::<u64>().ok()).ok_or_else(|| {
                    LogError::Corrupt { sequence: last + 1, message: format!("entry id {}", entry.id) }
                })?;
            let json = match entry.map.get("e") {
                Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                _ => return Err(LogError::Corrupt { sequence, message: "entry without an event".into() }),
            };
            let Entry { at, event } = serde_json::from_str(&json)
                .map_err(|error| LogError::Corrupt { sequence, message: error.to_string() })?;
            if sequence != last + taken.len() as u64 + 1 {
                return Err(LogError::Corrupt {
                    sequence,
                    message: format!("expected {}", last + taken.len() as u64 + 1),
                });
            }
            taken.push(LedgerEvent { sequence, at, event });
        }
    }
    let count = taken.len();
    if count > 0 {
        mirror.extend(taken);
    }
    Ok(count)
}

fn unavailable(error: redis::RedisError) -> LogError {
    LogError::Unavailable(error.to_string())
}

#[async_trait::async_trait]
impl super::InternalFeed for RedisLedger {
    async fn internal_after(
        &self,
        after: &str,
        max: usize,
    ) -> Result<Vec<(String, String, InternalRecord)>, super::Unavailable> {
        self.read_internal(after, max).await.map_err(|error| super::Unavailable(error.to_string()))
    }
}
