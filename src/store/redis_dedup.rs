//! Dedup claims shared by several nodes: each contact key of a buyer is one Redis key
//! (`{prefix}{b:<buyer>}:dedup:<hex>`, in the buyer's Cluster slot), holding `pending`
//! while a delivery is in flight or the sale's time in milliseconds once sold. A claim
//! checks and takes all of a lead's keys in one script, so two nodes delivering copies of
//! one lead to one buyer cannot both sell it.
//!
//! Cluster slot: a claim, its commit (one pipeline) and its release only ever name keys of
//! one buyer, so they touch the buyer's slot (`{b:<buyer>}`) only. The secret's fingerprint
//! (`{prefix}dedup-secret`) is one key on its own.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::Script;

use super::redis::{RedisConnection, Shared};
use super::{DedupClaims, Unavailable};
use crate::domain::dedup::{to_hex, DedupKey, DedupKeying};

/// All keys free (never sold, or sold longer ago than the window, and not in flight):
/// mark the first ARGV[4] of them in flight (the rest are keys from before the dedup
/// secret, looked up but never taken). Else change nothing.
const CLAIM: &str = r"
for _, key in ipairs(KEYS) do
  local mark = redis.call('GET', key)
  if mark then
    if mark == 'pending' then return 0 end
    if tonumber(mark) + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return 0 end
  end
end
for i = 1, tonumber(ARGV[4]) do
  redis.call('SET', KEYS[i], 'pending', 'PX', ARGV[3])
end
return 1
";

/// Gives back keys still in flight (a sold mark stays).
const RELEASE: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == 'pending' then redis.call('DEL', key) end
end
return 1
";

/// A claim whose node died mid-delivery frees itself after this long (deliveries end
/// within a vertical's `tmax_ms`, at most seconds).
const PENDING_TTL: Duration = Duration::from_secs(120);

/// How long a sold mark is kept: the longest dedup window a campaign may set (3,650 days).
const SOLD_TTL: Duration = Duration::from_secs(3_650 * 24 * 3_600);

pub struct RedisDedup {
    redis: Shared,
    prefix: String,
    claim: Script,
    release: Script,
}

impl RedisDedup {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisDedup, Unavailable> {
        Ok(RedisDedup::on(&RedisConnection::open(url).await.map_err(unavailable)?, prefix))
    }

    pub fn on(connection: &RedisConnection, prefix: &str) -> RedisDedup {
        let redis = connection.manager.clone();
        RedisDedup { redis, prefix: prefix.to_string(), claim: Script::new(CLAIM), release: Script::new(RELEASE) }
    }

    fn keys(&self, buyer_id: &str, keys: &[DedupKey]) -> Vec<String> {
        keys.iter().map(|key| format!("{}{{b:{buyer_id}}}:dedup:{}", self.prefix, to_hex(key))).collect()
    }
}

/// What Redis holds of the deployment's dedup secret: its fingerprint, never the secret
/// (a reader of Redis must not be able to make keys), and whether plain keys of sales made
/// before it may still be in a window.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedSecret {
    fingerprint: String,
    #[serde(default)]
    plain_keys_until: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("redis: {0}")]
    Unavailable(String),
    #[error("the dedup secret in Redis ({0}) is damaged; set it again with a node that has the secret")]
    Damaged(String),
    #[error(
        "this node's dedup secret is not the one the other nodes on this Redis use: give every node \
         the same --dedup-secret (LEADROUTER_DEDUP_SECRET), or copy the first node's <data-dir>/dedup-secret"
    )]
    Differs,
}

impl RedisDedup {
    /// Checks that this node makes keys under the same secret as every other node on this
    /// Redis (the first node to ask sets the fingerprint), and answers the shared keying.
    /// `had_history` says whether the Redis held a ledger before any secret (an upgrade).
    pub async fn agree_on_secret(
        &self,
        keying: &DedupKeying,
        had_history: bool,
        now: DateTime<Utc>,
    ) -> Result<DedupKeying, SecretError> {
        let key = format!("{}dedup-secret", self.prefix);
        let mine = SharedSecret {
            fingerprint: keying.secret.fingerprint(),
            plain_keys_until: if had_history { keying.plain_until_then.or(Some(now)) } else { None },
        };
        let value = serde_json::to_string(&mine).map_err(|e| SecretError::Damaged(e.to_string()))?;
        let mut redis = self.redis.clone();
        let unavailable = |e: redis::RedisError| SecretError::Unavailable(e.to_string());
        let _: Option<String> =
            redis::cmd("SET").arg(&key).arg(&value).arg("NX").query_async(&mut redis).await.map_err(unavailable)?;
        let stored: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await.map_err(unavailable)?;
        let stored = stored.ok_or_else(|| SecretError::Damaged(format!("{key} vanished")))?;
        let shared: SharedSecret =
            serde_json::from_str(&stored).map_err(|e| SecretError::Damaged(format!("{key}: {e}")))?;
        if shared.fingerprint != mine.fingerprint {
            return Err(SecretError::Differs);
        }
        Ok(DedupKeying { secret: keying.secret.clone(), plain_until_then: shared.plain_keys_until })
    }
}

fn unavailable(error: redis::RedisError) -> Unavailable {
    Unavailable(error.to_string())
}

#[async_trait]
impl DedupClaims for RedisDedup {
    async fn claim(
        &self,
        buyer_id: &str,
        keys: &[DedupKey],
        plain: &[DedupKey],
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<bool, Unavailable> {
        let mut invocation = self.claim.prepare_invoke();
        for key in self.keys(buyer_id, keys).into_iter().chain(self.keys(buyer_id, plain)) {
            invocation.key(key);
        }
        invocation.arg(now.timestamp_millis()).arg(window.num_milliseconds()).arg(PENDING_TTL.as_millis() as u64);
        invocation.arg(keys.len());
        let claimed: i32 = invocation.invoke_async(&mut self.redis.clone()).await.map_err(unavailable)?;
        Ok(claimed == 1)
    }

    async fn commit(&self, buyer_id: &str, keys: &[DedupKey], now: DateTime<Utc>) -> Result<(), Unavailable> {
        let mut pipe = redis::pipe();
        for key in self.keys(buyer_id, keys) {
            pipe.cmd("SET").arg(key).arg(now.timestamp_millis()).arg("PX").arg(SOLD_TTL.as_millis() as u64).ignore();
        }
        pipe.query_async::<()>(&mut self.redis.clone()).await.map_err(unavailable)
    }

    async fn release(&self, buyer_id: &str, keys: &[DedupKey]) {
        let mut invocation = self.release.prepare_invoke();
        for key in self.keys(buyer_id, keys) {
            invocation.key(key);
        }
        if let Err(error) = invocation.invoke_async::<i32>(&mut self.redis.clone()).await {
            // The claim frees itself after PENDING_TTL.
            tracing::warn!(%error, "dedup release failed; the claim expires by itself");
        }
    }

    fn sweep(&self, _now: DateTime<Utc>, _longest: chrono::Duration) {}
}
