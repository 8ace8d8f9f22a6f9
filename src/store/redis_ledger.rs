//! The ledger of several nodes: one Redis Stream, whose entry ids are the gap-free ledger
//! sequences, written by a Lua script that takes the next sequence and appends in one step.
//! Every node mirrors the stream into memory and serves its gRPC `Subscribe` from the
//! mirror, so a subscriber on any node sees every sale, whichever node sold it.
//!
//! Durability: the script's reply is the acknowledgement; with Redis's AOF at
//! `appendfsync always` it is sent after the entry is on disk (deploy/README.md).
//! Keys share the hash tag `{ledger}`, so the script's two keys sit in one Cluster slot.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::event_mirror::EventMirror;
use super::journal::{InternalRecord, JournalError};
use super::redis::{RedisClient, RedisConnection, Shared};
use super::{EventLog, LogError};
use crate::domain::ledger::{Event, LedgerEvent};

/// Takes the next sequence and appends the entry under it, atomically.
const APPEND: &str = r"
local sequence = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], sequence .. '-1', 'e', ARGV[1])
return sequence
";

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
    append: Script,
    sequence_key: String,
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
        let ledger = RedisLedger {
            redis: connection.manager.clone(),
            append: Script::new(APPEND),
            sequence_key: format!("{prefix}{{ledger}}:sequence"),
            stream_key: format!("{prefix}{{ledger}}:stream"),
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

    /// Appends an event; answers it with its sequence once Redis has acknowledged it.
    pub async fn append(&self, event: Event, at: DateTime<Utc>) -> Result<LedgerEvent, LogError> {
        let entry =
            serde_json::to_string(&Entry { at, event }).map_err(|error| LogError::Unavailable(error.to_string()))?;
        let mut redis = self.redis.clone();
        let sequence: u64 = self
            .append
            .key(&self.sequence_key)
            .key(&self.stream_key)
            .arg(entry.as_str())
            .invoke_async(&mut redis)
            .await
            .map_err(unavailable)?;
        let Entry { at, event } =
            serde_json::from_str(&entry).map_err(|error| LogError::Unavailable(error.to_string()))?;
        Ok(LedgerEvent { sequence, at, event })
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
