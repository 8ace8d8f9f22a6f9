//! Admin changes shared by several nodes: every change is appended to one Redis Stream,
//! `{prefix}{config}:changes`, and announced on the pub/sub channel `{prefix}config`.
//! Each node applies the stream in order over the same config file, so all nodes build
//! the same market; the announcement wakes them within milliseconds, and a node that
//! missed one (reconnecting) reads the stream on its next wake or tick, so no change is
//! lost.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use tokio::sync::watch;

use super::redis::RedisConnection;
use super::{ChangeId, ConfigLog, Unavailable};
use crate::domain::market::ConfigChange;

pub struct RedisConfig {
    redis: ConnectionManager,
    stream_key: String,
    channel: String,
    announced: watch::Receiver<u64>,
}

impl RedisConfig {
    /// Connects and starts listening for announcements.
    pub fn on(connection: &RedisConnection, prefix: &str) -> RedisConfig {
        let channel = format!("{prefix}config");
        let (announce, announced) = watch::channel(0);
        tokio::spawn(listen(connection.client.clone(), channel.clone(), announce));
        let redis = connection.manager.clone();
        RedisConfig { redis, stream_key: format!("{prefix}{{config}}:changes"), channel, announced }
    }
}

#[async_trait]
impl ConfigLog for RedisConfig {
    async fn publish(&self, change: &ConfigChange) -> Result<ChangeId, Unavailable> {
        let json = serde_json::to_string(change).map_err(|error| Unavailable(error.to_string()))?;
        let mut redis = self.redis.clone();
        let id: String = redis.xadd(&self.stream_key, "*", &[("c", json.as_str())]).await.map_err(unavailable)?;
        let id = ChangeId::parse(&id).ok_or_else(|| Unavailable(format!("odd stream id {id}")))?;
        // Nodes that miss this still read the stream on their next tick.
        if let Err(error) = redis.publish::<_, _, ()>(&self.channel, id.to_string()).await {
            tracing::warn!(%error, "config change stored but not announced; nodes pick it up within a second");
        }
        Ok(id)
    }

    async fn after(&self, after: ChangeId) -> Result<Vec<(ChangeId, ConfigChange)>, Unavailable> {
        let mut redis = self.redis.clone();
        let reply: StreamRangeReply =
            redis.xrange(&self.stream_key, format!("({after}"), "+").await.map_err(unavailable)?;
        let mut changes = Vec::with_capacity(reply.ids.len());
        for entry in reply.ids {
            let id = ChangeId::parse(&entry.id).ok_or_else(|| Unavailable(format!("odd stream id {}", entry.id)))?;
            let json: Option<String> = entry.get("c");
            let change = json
                .and_then(|json| serde_json::from_str::<ConfigChange>(&json).ok())
                .ok_or_else(|| Unavailable(format!("config change {id} does not decode")))?;
            changes.push((id, change));
        }
        Ok(changes)
    }

    fn announcements(&self) -> watch::Receiver<u64> {
        self.announced.clone()
    }
}

/// Bumps `announce` on every message on the channel and on every (re)subscription, when a
/// message may have been missed.
async fn listen(client: redis::Client, channel: String, announce: watch::Sender<u64>) {
    loop {
        if announce.is_closed() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    announce.send_modify(|count| *count += 1);
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        announce.send_modify(|count| *count += 1);
                        if announce.is_closed() {
                            return;
                        }
                    }
                }
                tracing::warn!("config announcements: subscription lost; resubscribing");
            }
            Err(error) => tracing::warn!(%error, "config announcements: cannot reach Redis; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn unavailable(error: redis::RedisError) -> Unavailable {
    Unavailable(error.to_string())
}
