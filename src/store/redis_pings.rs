//! Ping contexts shared by several nodes, so a post may land on another node than its
//! ping (DESIGN §9). One Redis hash per ping, `{prefix}{p:<ping>}:ping`, holds its
//! supplier, state (`open`, `posting`, `posted`), expiry and the context as JSON; it
//! lives until the ping's expiry plus the grace period for late posts.
//!
//! Cluster slot: every script and every (MULTI) pipeline names that one key only, so it
//! touches the ping's slot (`{p:<ping>}`); pings spread over the shards.
//!
//! A ping is posted at most once (DESIGN §8.6): `begin_post` checks and moves the state
//! from `open` to `posting` in one script, so of two posts on any nodes one proceeds.
//!
//! Offers are stored as campaign ids with amounts and resolved against the posting node's
//! market: that node has the same configuration (config changes are shared, see
//! `redis_config`). A campaign deleted between ping and post drops out of the offers, and
//! its hold is handed back to the engine to release.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};

use super::pings::{NotStored, PingContext, PingContexts, PingError, PING_GRACE_MINUTES};
use super::redis::{RedisConnection, Shared};
use super::{HoldHandle, Unavailable};
use crate::domain::auction::{Bid, Offer};
use crate::domain::geo::Point;
use crate::domain::lead::ValidPing;
use crate::domain::market::Market;
use crate::domain::model::Vertical;
use crate::domain::money::Money;

/// Claims an open, unexpired ping of this supplier for posting, or says why not.
const BEGIN_POST: &str = r"
local f = redis.call('HMGET', KEYS[1], 'supplier', 'state', 'expires', 'ctx')
if not f[1] or f[1] ~= ARGV[1] then return {'not_found'} end
if f[2] ~= 'open' then return {'posted'} end
if tonumber(ARGV[2]) >= tonumber(f[3]) or not f[4] then return {'expired'} end
redis.call('HSET', KEYS[1], 'state', 'posting')
return {'ok', f[4]}
";

/// Opens a ping again after a post that changed nothing.
const REOPEN: &str = r"
if redis.call('HGET', KEYS[1], 'state') == 'posting' then
  redis.call('HSET', KEYS[1], 'state', 'open')
end
return 1
";

/// The stored form: borrowed from the context when written (the ping path copies
/// nothing but the JSON), owned when read back.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    vertical: Cow<'a, Vertical>,
    ping: StoredPing<'a>,
    offers: Vec<StoredOffer<'a>>,
    /// (index into `offers`, buyer, hold)
    held: Vec<(usize, Cow<'a, str>, Cow<'a, str>)>,
    /// (campaign, token) carried from buyer-format ping answers to the post; absent in
    /// contexts written before tokens were carried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ping_tokens: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct StoredPing<'a> {
    vertical: Cow<'a, str>,
    zip: Cow<'a, str>,
    country: Cow<'a, str>,
    state: Option<Cow<'a, str>>,
    fields: Cow<'a, serde_json::Map<String, serde_json::Value>>,
    lat: f64,
    lon: f64,
}

#[derive(Serialize, Deserialize)]
struct StoredOffer<'a> {
    campaign_id: Cow<'a, str>,
    amount: Money,
    price: Money,
}

pub struct RedisPings {
    redis: Shared,
    prefix: String,
    begin_post: Script,
    reopen: Script,
}

impl RedisPings {
    pub fn on(connection: &RedisConnection, prefix: &str) -> RedisPings {
        RedisPings {
            redis: connection.manager.clone(),
            prefix: prefix.to_string(),
            begin_post: Script::new(BEGIN_POST),
            reopen: Script::new(REOPEN),
        }
    }

    fn key(&self, ping_id: &str) -> String {
        format!("{}{{p:{ping_id}}}:ping", self.prefix)
    }

    /// Writes the context under its ping's key, kept until its expiry plus the grace
    /// period.
    async fn store(&self, context: &PingContext) -> Result<(), Unavailable> {
        let ping = &context.ping;
        let stored = Stored {
            vertical: Cow::Borrowed(&*context.vertical),
            ping: StoredPing {
                vertical: Cow::Borrowed(ping.vertical()),
                zip: Cow::Borrowed(ping.zip()),
                country: Cow::Borrowed(ping.country()),
                state: ping.state().map(Cow::Borrowed),
                fields: Cow::Borrowed(ping.fields()),
                lat: ping.location().lat,
                lon: ping.location().lon,
            },
            offers: context
                .offers
                .iter()
                .map(|offer| StoredOffer {
                    campaign_id: Cow::Borrowed(offer.bid.campaign_id()),
                    amount: offer.bid.amount,
                    price: offer.price,
                })
                .collect(),
            held: context
                .held
                .iter()
                .map(|(index, hold)| (*index, Cow::Borrowed(&*hold.buyer_id), Cow::Borrowed(hold.hold_id.as_str())))
                .collect(),
            ping_tokens: context
                .ping_tokens
                .iter()
                .map(|(campaign, token)| (Cow::Borrowed(&**campaign), Cow::Borrowed(token.as_str())))
                .collect(),
            created_at: context.created_at,
            expires_at: context.expires_at,
        };
        let json = serde_json::to_string(&stored).map_err(|error| Unavailable(error.to_string()))?;
        let key = self.key(&context.ping_id);
        let kept_until = context.expires_at + Duration::minutes(PING_GRACE_MINUTES);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    ("supplier", context.supplier_id.as_str()),
                    ("state", "open"),
                    ("expires", &context.expires_at.timestamp_millis().to_string()),
                    ("ctx", &json),
                ],
            )
            .ignore()
            .pexpire_at(&key, kept_until.timestamp_millis())
            .ignore();
        pipe.query_async::<()>(&mut self.redis.clone()).await.map_err(unavailable)
    }
}

#[async_trait]
impl PingContexts for RedisPings {
    async fn put(&self, context: PingContext) -> Result<(), NotStored> {
        match self.store(&context).await {
            Ok(()) => Ok(()),
            Err(error) => Err(NotStored { error, context }),
        }
    }

    async fn begin_post(
        &self,
        ping_id: &str,
        supplier_id: &str,
        now: DateTime<Utc>,
        market: &Market,
    ) -> Result<Result<PingContext, PingError>, Unavailable> {
        let reply: Vec<String> = self
            .begin_post
            .key(self.key(ping_id))
            .arg(supplier_id)
            .arg(now.timestamp_millis())
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        let json = match reply.first().map(String::as_str) {
            Some("ok") => reply.get(1).cloned().unwrap_or_default(),
            Some("posted") => return Ok(Err(PingError::AlreadyPosted)),
            Some("expired") => return Ok(Err(PingError::Expired)),
            _ => return Ok(Err(PingError::NotFound)),
        };
        let stored: Stored = match serde_json::from_str(&json) {
            Ok(stored) => stored,
            Err(error) => {
                // Written by a node of another version, say: not a sale to guess at.
                tracing::error!(%error, "a stored ping context does not decode");
                return Ok(Err(PingError::Expired));
            }
        };
        Ok(Ok(resolve(stored, ping_id, supplier_id, market)))
    }

    async fn reopen(&self, ping_id: &str) {
        let reopened: Result<i32, _> = self.reopen.key(self.key(ping_id)).invoke_async(&mut self.redis.clone()).await;
        if let Err(error) = reopened {
            // The ping stays `posting` and expires; its holds expire with it.
            tracing::warn!(%error, "could not reopen a ping after a post that changed nothing");
        }
    }

    async fn finish_post(&self, ping_id: &str) {
        let key = self.key(ping_id);
        let mut pipe = redis::pipe();
        pipe.atomic().hset(&key, "state", "posted").ignore().hdel(&key, "ctx").ignore();
        if let Err(error) = pipe.query_async::<()>(&mut self.redis.clone()).await {
            // It stays `posting`, which refuses further posts just the same.
            tracing::warn!(%error, "could not mark a ping posted");
        }
    }

    /// Holds expire in their buyer's book by themselves (`RedisBudget`).
    fn sweep(&self, _now: DateTime<Utc>) -> Vec<HoldHandle> {
        Vec::new()
    }
}

/// The context with its offers' campaigns taken from `market`; offers whose campaign is
/// gone are dropped (their holds become `orphaned`) and the hold indexes follow.
fn resolve(stored: Stored, ping_id: &str, supplier_id: &str, market: &Market) -> PingContext {
    let mut new_index = Vec::with_capacity(stored.offers.len());
    let mut offers = Vec::with_capacity(stored.offers.len());
    for offer in stored.offers {
        match market.campaign(&offer.campaign_id) {
            Some(campaign) => {
                new_index.push(Some(offers.len()));
                offers.push(Offer {
                    bid: Bid { campaign: Arc::clone(campaign), amount: offer.amount },
                    price: offer.price,
                });
            }
            None => new_index.push(None),
        }
    }
    let mut held = Vec::new();
    let mut orphaned = Vec::new();
    for (index, buyer_id, hold_id) in stored.held {
        let hold = HoldHandle { buyer_id: Arc::from(&*buyer_id), hold_id: hold_id.into_owned() };
        match new_index.get(index).copied().flatten() {
            Some(index) => held.push((index, hold)),
            None => orphaned.push(hold),
        }
    }
    let ping = stored.ping;
    PingContext {
        ping_id: ping_id.to_string(),
        supplier_id: supplier_id.to_string(),
        vertical: Arc::new(stored.vertical.into_owned()),
        ping: ValidPing::restore(
            ping.vertical.into_owned(),
            ping.zip.into_owned(),
            ping.country.into_owned(),
            ping.state.map(Cow::into_owned),
            ping.fields.into_owned(),
            Point { lat: ping.lat, lon: ping.lon },
        ),
        offers,
        held,
        ping_tokens: stored
            .ping_tokens
            .into_iter()
            .map(|(campaign, token)| (Arc::from(&*campaign), token.into_owned()))
            .collect(),
        created_at: stored.created_at,
        expires_at: stored.expires_at,
        orphaned,
    }
}

fn unavailable(error: redis::RedisError) -> Unavailable {
    Unavailable(error.to_string())
}
