//! Pull queues shared by several nodes: one Redis Stream per buyer,
//! `{prefix}{b:<buyer>}:pull`, whose entry ids are the buyer's positions (`<position>-1`),
//! taken by `INCR {prefix}{b:<buyer>}:pull:position` in the same script as the append. A
//! position is therefore visible exactly when all smaller ones are, so a buyer's cursor
//! never skips a lead sold on another node. Fetching after a cursor trims everything up to
//! it: what a buyer acknowledged is never handed out again, on any node.
//!
//! Cluster slot: the queue and its position counter share the buyer's hash tag, so the
//! script's two keys sit in the buyer's slot (`{b:<buyer>}`), beside its book.

use async_trait::async_trait;
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Script};
use serde_json::Value;

use super::pull::PULL_LIMIT_MAX;
use super::redis::{RedisConnection, Shared};
use super::{PullLog, Unavailable};

/// Takes the buyer's next position and appends the lead under it, atomically.
const PUSH: &str = r"
local position = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], position .. '-1', 'l', ARGV[1])
return position
";

pub struct RedisPull {
    redis: Shared,
    prefix: String,
    push: Script,
}

impl RedisPull {
    pub fn on(connection: &RedisConnection, prefix: &str) -> RedisPull {
        RedisPull { redis: connection.manager.clone(), prefix: prefix.to_string(), push: Script::new(PUSH) }
    }

    fn stream_key(&self, buyer_id: &str) -> String {
        format!("{}{{b:{buyer_id}}}:pull", self.prefix)
    }
}

#[async_trait]
impl PullLog for RedisPull {
    async fn push(&self, buyer_id: &str, _sale_id: &str, lead: Value) -> Result<u64, Unavailable> {
        let stream = self.stream_key(buyer_id);
        self.push
            .key(format!("{stream}:position"))
            .key(stream)
            .arg(lead.to_string())
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)
    }

    async fn fetch(&self, buyer_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, Value)>, Unavailable> {
        let stream = self.stream_key(buyer_id);
        let mut redis = self.redis.clone();
        if after > 0 {
            let threshold = format!("{}-0", after.saturating_add(1));
            let _: u64 = redis::cmd("XTRIM")
                .arg(&stream)
                .arg("MINID")
                .arg(threshold)
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
        }
        let count = limit.clamp(1, PULL_LIMIT_MAX);
        let reply: StreamRangeReply =
            redis.xrange_count(&stream, format!("({after}-1"), "+", count).await.map_err(unavailable)?;
        let mut leads = Vec::with_capacity(reply.ids.len());
        for entry in reply.ids {
            let position = entry.id.split('-').next().and_then(|p| p.parse::<u64>().ok());
            let lead = entry.get::<String>("l").and_then(|json| serde_json::from_str::<Value>(&json).ok());
            match (position, lead) {
                (Some(position), Some(lead)) => leads.push((position, lead)),
                _ => return Err(Unavailable(format!("pull entry {} of buyer {buyer_id} does not decode", entry.id))),
            }
        }
        Ok(leads)
    }

    async fn last_position(&self, buyer_id: &str) -> Result<u64, Unavailable> {
        let key = format!("{}:position", self.stream_key(buyer_id));
        let position: Option<u64> = self.redis.clone().get(key).await.map_err(unavailable)?;
        Ok(position.unwrap_or(0))
    }
}

fn unavailable(error: redis::RedisError) -> Unavailable {
    Unavailable(error.to_string())
}
