//! Admin changes shared by several nodes: every change is appended to one Redis Stream,
//! `{prefix}{config}:changes`. Each node applies the stream in order over the same config
//! file, so all nodes build the same market. Every node waits on the stream on a dedicated
//! connection of its own (`XREAD BLOCK` after the last entry it saw), which wakes it within
//! milliseconds of a change, on one Redis as on a cluster; a node that missed a change
//! (reconnecting) reads the stream on its next wake or tick (every second), so no change is
//! lost.
//!
//! An entry holds the change (`c`, JSON), who made it (`by`) and when (`at`, RFC 3339);
//! entries written before actors were recorded have neither, and read as `unknown`, at
//! their id's time. The stream is never trimmed: it is the whole list of changes.
//!
//! Cluster slot: one key, so one slot, `{config}`'s.

use std::time::Duration;

use async_trait::async_trait;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::watch;

use super::redis::{RedisClient, RedisConnection, Shared};
use super::{ChangeId, ConfigLog, Unavailable};
use crate::domain::changes::{AdminChange, ChangeSummary};
use crate::domain::market::ConfigChange;
use crate::domain::operator::Actor;

/// How long one blocking read waits for a change before it asks again (well inside the
/// connection's response timeout).
const BLOCK_MS: usize = 1_000;

pub struct RedisConfig {
    redis: Shared,
    stream_key: String,
    announced: watch::Receiver<u64>,
}

impl RedisConfig {
    /// Connects and starts listening for changes.
    pub fn on(connection: &RedisConnection, prefix: &str) -> RedisConfig {
        let stream_key = format!("{prefix}{{config}}:changes");
        let (announce, announced) = watch::channel(0);
        tokio::spawn(listen(connection.client.clone(), stream_key.clone(), announce));
        RedisConfig { redis: connection.manager.clone(), stream_key, announced }
    }
}

#[async_trait]
impl ConfigLog for RedisConfig {
    async fn publish(&self, change: &AdminChange) -> Result<ChangeId, Unavailable> {
        let json = serde_json::to_string(&change.change).map_err(|error| Unavailable(error.to_string()))?;
        let by = change.by.to_string();
        let mut fields = vec![("c", json), ("by", by)];
        if let Some(at) = change.at {
            fields.push(("at", at.to_rfc3339()));
        }
        let mut redis = self.redis.clone();
        let id: String = redis.xadd(&self.stream_key, "*", &fields).await.map_err(unavailable)?;
        // Every node's listener wakes on the new entry.
        ChangeId::parse(&id).ok_or_else(|| Unavailable(format!("odd stream id {id}")))
    }

    async fn after(&self, after: ChangeId) -> Result<Vec<(ChangeId, AdminChange)>, Unavailable> {
        let mut redis = self.redis.clone();
        let reply: StreamRangeReply =
            redis.xrange(&self.stream_key, format!("({after}"), "+").await.map_err(unavailable)?;
        reply.ids.iter().map(entry_of).collect()
    }

    async fn history(
        &self,
        before: Option<ChangeId>,
        limit: usize,
    ) -> Result<Vec<(ChangeId, ChangeSummary)>, Unavailable> {
        let mut redis = self.redis.clone();
        let end = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
        let reply: StreamRangeReply =
            redis.xrevrange_count(&self.stream_key, end, "-", limit).await.map_err(unavailable)?;
        reply.ids.iter().map(|entry| entry_of(entry).map(|(id, change)| (id, change.summary()))).collect()
    }

    fn announcements(&self) -> watch::Receiver<u64> {
        self.announced.clone()
    }
}

/// One entry of the stream: its change, who made it, and when (the id's time for entries
/// written before it was kept).
fn entry_of(entry: &redis::streams::StreamId) -> Result<(ChangeId, AdminChange), Unavailable> {
    let id = ChangeId::parse(&entry.id).ok_or_else(|| Unavailable(format!("odd stream id {}", entry.id)))?;
    let json: Option<String> = entry.get("c");
    let change = json
        .and_then(|json| serde_json::from_str::<ConfigChange>(&json).ok())
        .ok_or_else(|| Unavailable(format!("config change {id} does not decode")))?;
    let by = entry.get::<String>("by").map_or(Actor::Unknown, |by| Actor::parse(&by));
    let at = entry
        .get::<String>("at")
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok())
        .map(|at| at.with_timezone(&chrono::Utc))
        .or_else(|| i64::try_from(id.0).ok().and_then(chrono::DateTime::from_timestamp_millis));
    Ok((id, AdminChange { change, by, at }))
}

/// Bumps `announce` on every new entry of the stream, and on every (re)connection, when
/// an entry may have been missed.
async fn listen(client: RedisClient, key: String, announce: watch::Sender<u64>) {
    loop {
        if announce.is_closed() {
            return;
        }
        match client.connect().await {
            Ok(mut connection) => match last_entry(&mut connection, &key).await {
                Ok(mut last) => {
                    announce.send_modify(|count| *count += 1);
                    loop {
                        match next_entry(&mut connection, &key, &last).await {
                            Ok(Some(id)) => {
                                last = id;
                                announce.send_modify(|count| *count += 1);
                            }
                            Ok(None) => {}
                            Err(error) => {
                                tracing::warn!(%error, "config changes: read failed; reconnecting");
                                break;
                            }
                        }
                        if announce.is_closed() {
                            return;
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "config changes: cannot read the stream; retrying"),
            },
            Err(error) => tracing::warn!(%error, "config changes: cannot reach Redis; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The id of the stream's last entry (`0-0` while it has none).
async fn last_entry(connection: &mut Shared, key: &str) -> redis::RedisResult<String> {
    let reply: StreamRangeReply = connection.xrevrange_count(key, "+", "-", 1).await?;
    Ok(reply.ids.into_iter().next().map_or_else(|| "0-0".to_string(), |entry| entry.id))
}

/// Waits (at most `BLOCK_MS`) for entries after `after`; answers the last one's id.
async fn next_entry(connection: &mut Shared, key: &str, after: &str) -> redis::RedisResult<Option<String>> {
    let options = StreamReadOptions::default().count(128).block(BLOCK_MS);
    let reply: Option<StreamReadReply> = connection.xread_options(&[key], &[after], &options).await?;
    Ok(reply.and_then(|reply| reply.keys.into_iter().flat_map(|stream| stream.ids).next_back()).map(|entry| entry.id))
}

fn unavailable(error: redis::RedisError) -> Unavailable {
    Unavailable(error.to_string())
}
