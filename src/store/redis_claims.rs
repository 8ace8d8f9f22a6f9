//! Claims that must hold across nodes, each one Redis key set only if absent: the first
//! answer to an `Idempotency-Key` (`{prefix}{i:<party>}:idem:<key>`, 24 hours), a
//! supplier's `external_id` (`{prefix}{i:<supplier>}:ext:<id>`, 24 hours), a top-up
//! reference (`{prefix}{b:<buyer>}:topup:<reference>`, kept) and the one return of a sale
//! (`{prefix}{b:<buyer>}:return:<sale>`, kept). The node-local stores
//! (`idempotency`) still order requests on one node; these make the claim global.
//!
//! Cluster slots: every command and the `BEGIN` script touch one key, so one slot: the
//! calling party's (`{i:<party>}`), the buyer's (`{b:<buyer>}`, beside its book), or a
//! counter's own (`{prefix}{n:<counter>}`, e.g. `{n:return_revision}`). The health probe
//! pings every primary of a cluster (`Shared::probe`).

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::redis::{RedisConnection, Shared};
use super::{Claims, KeyClaim, Unavailable};
use crate::engine::ports::idempotency::{KeptAnswer, IDEMPOTENCY_TTL_HOURS};

/// Takes the key for this body, or tells what holds it: another body, a request still
/// running, or its answer: `a` (a `KeptAnswer` as JSON), or `s` and `b` (status and HTTP
/// body) where a node from before typed answers kept it.
const BEGIN: &str = r"
local f = redis.call('HMGET', KEYS[1], 'h', 'a', 's', 'b')
if not f[1] then
  redis.call('HSET', KEYS[1], 'h', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'fresh'}
end
if f[1] ~= ARGV[1] then return {'conflict'} end
if f[2] then return {'answered', f[2]} end
if f[3] then return {'answered_http', f[3], f[4] or ''} end
return {'in_flight'}
";

const TTL_MS: u64 = IDEMPOTENCY_TTL_HOURS as u64 * 3_600_000;

pub struct RedisClaims {
    redis: Shared,
    prefix: String,
    begin: Script,
}

impl RedisClaims {
    pub fn on(connection: &RedisConnection, prefix: &str) -> RedisClaims {
        RedisClaims { redis: connection.manager.clone(), prefix: prefix.to_string(), begin: Script::new(BEGIN) }
    }

    fn answer_key(&self, party: &str, key: &str) -> String {
        format!("{}{{i:{party}}}:idem:{key}", self.prefix)
    }

    fn external_key(&self, supplier_id: &str, external_id: &str) -> String {
        format!("{}{{i:{supplier_id}}}:ext:{external_id}", self.prefix)
    }

    fn once_key(&self, buyer_id: &str, what: &str, id: &str) -> String {
        format!("{}{{b:{buyer_id}}}:{what}:{id}", self.prefix)
    }
}

#[async_trait]
impl Claims for RedisClaims {
    async fn begin_answer(&self, party: &str, key: &str, body_hash: [u8; 32]) -> Result<KeyClaim, Unavailable> {
        let reply: Vec<Vec<u8>> = self
            .begin
            .key(self.answer_key(party, key))
            .arg(hex::encode(body_hash))
            .arg(TTL_MS)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(match reply.as_slice() {
            [what] if what == b"fresh" => KeyClaim::Fresh,
            [what] if what == b"conflict" => KeyClaim::Conflict,
            [what, answer] if what == b"answered" => {
                KeyClaim::Answered(serde_json::from_slice(answer).map_err(|_| undecodable())?)
            }
            [what, status, body] if what == b"answered_http" => {
                let status = std::str::from_utf8(status).ok().and_then(|status| status.parse().ok());
                let answer = status.and_then(|status| KeptAnswer::from_http_form(status, body));
                KeyClaim::Answered(answer.ok_or_else(undecodable)?)
            }
            _ => KeyClaim::InFlight,
        })
    }

    async fn store_answer(
        &self,
        party: &str,
        key: &str,
        _body_hash: [u8; 32],
        answer: &KeptAnswer,
    ) -> Result<(), Unavailable> {
        // The body's hash was kept when the key was claimed (`begin_answer`).
        let answer = serde_json::to_vec(answer).map_err(|error| Unavailable(error.to_string()))?;
        let _: () = self.redis.clone().hset(self.answer_key(party, key), "a", answer).await.map_err(unavailable)?;
        Ok(())
    }

    async fn release_answer(&self, party: &str, key: &str) {
        if let Err(error) = self.redis.clone().del::<_, ()>(self.answer_key(party, key)).await {
            tracing::warn!(%error, "an idempotency claim was not released; it expires in 24 hours");
        }
    }

    async fn claim_external_id(
        &self,
        supplier_id: &str,
        external_id: &str,
        lead_id: &str,
    ) -> Result<Result<(), String>, Unavailable> {
        let key = self.external_key(supplier_id, external_id);
        let mut redis = self.redis.clone();
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(TTL_MS));
        let taken: Option<String> = redis.set_options(&key, lead_id, options).await.map_err(unavailable)?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let holder: Option<String> = redis.get(&key).await.map_err(unavailable)?;
        Ok(match holder {
            Some(holder) if holder != lead_id => Err(holder),
            _ => Ok(()),
        })
    }

    async fn claim_once(&self, buyer_id: &str, what: &'static str, id: &str) -> Result<bool, Unavailable> {
        let claimed: bool =
            self.redis.clone().set_nx(self.once_key(buyer_id, what, id), 1).await.map_err(unavailable)?;
        Ok(claimed)
    }

    async fn release_once(&self, buyer_id: &str, what: &'static str, id: &str) {
        if let Err(error) = self.redis.clone().del::<_, ()>(self.once_key(buyer_id, what, id)).await {
            tracing::error!(%error, what, "a claim was not given back after the step it guarded failed");
        }
    }

    async fn next_number(&self, counter: &'static str) -> Result<Option<u64>, Unavailable> {
        let key = format!("{}{{n:{counter}}}", self.prefix);
        self.redis.clone().incr(key, 1).await.map(Some).map_err(unavailable)
    }

    /// `PING` on one Redis; on a cluster, on every primary (`Shared::probe`).
    async fn probe(&self) -> Result<(), Unavailable> {
        self.redis.probe().await.map_err(unavailable)
    }
}

fn unavailable(error: redis::RedisError) -> Unavailable {
    Unavailable(error.to_string())
}

/// An answer record no node could have written: the request is not run on a guess.
fn undecodable() -> Unavailable {
    Unavailable("an idempotency record does not decode".into())
}
