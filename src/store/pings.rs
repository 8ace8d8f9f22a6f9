//! Ping contexts between ping and post: the offers, the holds, and whether it was posted.
//!
//! A ping is posted at most once (DESIGN §8.6): `begin_post` moves it from `Open` to
//! `Posting` under the map's shard lock, so of two concurrent posts exactly one proceeds.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use dashmap::DashMap;

use super::HoldHandle;
use crate::domain::auction::Offer;
use crate::domain::lead::ValidPing;
use crate::domain::model::Vertical;

/// How long an expired or posted ping is remembered, so a late post gets 410 or 409
/// instead of a misleading 404.
pub const PING_GRACE_HOURS: i64 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingState {
    Open,
    Posting,
    Posted,
}

#[derive(Debug, Clone)]
pub struct PingContext {
    pub ping_id: String,
    pub supplier_id: String,
    /// The vertical as it was at ping time: an admin change never disturbs this auction.
    pub vertical: Arc<Vertical>,
    pub ping: ValidPing,
    /// Every offer in order; `held` points into it.
    pub offers: Vec<Offer>,
    pub held: Vec<(usize, HoldHandle)>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    #[error("unknown ping")]
    NotFound,
    #[error("ping expired")]
    Expired,
    #[error("ping already posted")]
    AlreadyPosted,
}

struct Entry {
    context: PingContext,
    state: PingState,
}

#[derive(Default)]
pub struct Pings {
    by_id: DashMap<String, Entry>,
}

impl Pings {
    pub fn put(&self, context: PingContext) {
        self.by_id.insert(context.ping_id.clone(), Entry { context, state: PingState::Open });
    }

    /// Claims the ping for posting. Another supplier's ping is `NotFound`: never reveal
    /// that it exists.
    pub fn begin_post(&self, ping_id: &str, supplier_id: &str, now: DateTime<Utc>) -> Result<PingContext, PingError> {
        let mut entry = self.by_id.get_mut(ping_id).ok_or(PingError::NotFound)?;
        if entry.context.supplier_id != supplier_id {
            return Err(PingError::NotFound);
        }
        match entry.state {
            PingState::Posting | PingState::Posted => return Err(PingError::AlreadyPosted),
            PingState::Open if now >= entry.context.expires_at => return Err(PingError::Expired),
            PingState::Open => {}
        }
        entry.state = PingState::Posting;
        Ok(entry.context.clone())
    }

    /// Gives a ping back after a post that changed nothing (invalid lead, conflict).
    pub fn reopen(&self, ping_id: &str) {
        if let Some(mut entry) = self.by_id.get_mut(ping_id) {
            if entry.state == PingState::Posting {
                entry.state = PingState::Open;
            }
        }
    }

    pub fn finish_post(&self, ping_id: &str) {
        if let Some(mut entry) = self.by_id.get_mut(ping_id) {
            entry.state = PingState::Posted;
        }
    }

    /// Forgets pings whose grace period is over; answers the holds of pings that expired
    /// unposted, for the caller to release.
    pub fn sweep(&self, now: DateTime<Utc>) -> Vec<HoldHandle> {
        let mut expired_holds = Vec::new();
        let grace = Duration::hours(PING_GRACE_HOURS);
        self.by_id.retain(|_, entry| {
            let keep = entry.context.expires_at + grace > now;
            if entry.state == PingState::Open && entry.context.expires_at <= now && !entry.context.held.is_empty() {
                expired_holds.extend(entry.context.held.drain(..).map(|(_, hold)| hold));
            }
            keep
        });
        expired_holds
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
