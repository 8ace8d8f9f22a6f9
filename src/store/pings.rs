//! Ping contexts between ping and post: the offers, the holds, and whether it was posted.
//!
//! A ping is posted at most once (DESIGN §8.6): `begin_post` moves it from `Open` to
//! `Posting` under the map's shard lock, so of two concurrent posts exactly one proceeds.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use dashmap::DashMap;

use super::{HoldHandle, Unavailable};
use crate::domain::market::Market;
pub use crate::engine::ports::pings::{NotStored, PingContext, PingContexts, PingError};

/// How long an expired or posted ping is remembered (as a small tombstone: its offers are
/// dropped at once), so a late post gets 410 or 409 instead of a misleading 404. At 1,000
/// pings a second that is ~1M tombstones of ~100 bytes.
pub const PING_GRACE_MINUTES: i64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingState {
    Open,
    Posting,
    Posted,
}

struct Entry {
    supplier_id: String,
    expires_at: DateTime<Utc>,
    state: PingState,
    /// The offers and holds, while the ping can still be posted; gone once it is posted or
    /// expired.
    context: Option<Box<PingContext>>,
}

#[derive(Default)]
pub struct Pings {
    by_id: DashMap<String, Entry>,
}

impl Pings {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// In this node's memory: nothing to fail, and a post gets the campaigns exactly as they
/// bid (the context holds them).
#[async_trait]
impl PingContexts for Pings {
    async fn put(&self, context: PingContext) -> Result<(), NotStored> {
        let ping_id = context.ping_id.clone();
        let entry = Entry {
            supplier_id: context.supplier_id.clone(),
            expires_at: context.expires_at,
            state: PingState::Open,
            context: Some(Box::new(context)),
        };
        self.by_id.insert(ping_id, entry);
        Ok(())
    }

    /// Another supplier's ping is `NotFound`: never reveal that it exists.
    async fn begin_post(
        &self,
        ping_id: &str,
        supplier_id: &str,
        now: DateTime<Utc>,
        _market: &Market,
    ) -> Result<Result<PingContext, PingError>, Unavailable> {
        let Some(mut entry) = self.by_id.get_mut(ping_id) else { return Ok(Err(PingError::NotFound)) };
        if entry.supplier_id != supplier_id {
            return Ok(Err(PingError::NotFound));
        }
        match entry.state {
            PingState::Posting | PingState::Posted => return Ok(Err(PingError::AlreadyPosted)),
            PingState::Open if now >= entry.expires_at => return Ok(Err(PingError::Expired)),
            PingState::Open => {}
        }
        let Some(context) = entry.context.as_deref().cloned() else { return Ok(Err(PingError::Expired)) };
        entry.state = PingState::Posting;
        Ok(Ok(context))
    }

    async fn reopen(&self, ping_id: &str) {
        if let Some(mut entry) = self.by_id.get_mut(ping_id) {
            if entry.state == PingState::Posting {
                entry.state = PingState::Open;
            }
        }
    }

    async fn finish_post(&self, ping_id: &str) {
        if let Some(mut entry) = self.by_id.get_mut(ping_id) {
            entry.state = PingState::Posted;
            entry.context = None;
        }
    }

    /// Turns expired pings into tombstones and forgets tombstones whose grace period is
    /// over.
    fn sweep(&self, now: DateTime<Utc>) -> Vec<HoldHandle> {
        let mut expired_holds = Vec::new();
        let grace = Duration::minutes(PING_GRACE_MINUTES);
        self.by_id.retain(|_, entry| {
            if entry.state == PingState::Open && entry.expires_at <= now {
                if let Some(context) = entry.context.take() {
                    expired_holds.extend(context.held.into_iter().map(|(_, hold)| hold));
                }
            }
            entry.expires_at + grace > now
        });
        expired_holds
    }
}
