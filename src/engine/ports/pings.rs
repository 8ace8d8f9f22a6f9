//! The ping context port: what a ping left for its post (offers, holds), kept between the
//! two; a ping is posted at most once (DESIGN §8.6). `store::pings::Pings` on one node,
//! `store::redis_pings` on several.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{HoldHandle, Unavailable};
use crate::domain::auction::Offer;
use crate::domain::lead::ValidPing;
use crate::domain::market::Market;
use crate::domain::model::Vertical;

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
    /// What buyer-format pings' answers said to carry to the post (`ping.token`), by
    /// campaign id.
    pub ping_tokens: Vec<(Arc<str>, String)>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Holds whose campaign is gone from the market a post on another node sees: the
    /// post gives them back (always empty on one node, which keeps the campaign itself).
    pub orphaned: Vec<HoldHandle>,
}

/// A context the store could not keep, and why.
pub struct NotStored {
    pub error: Unavailable,
    pub context: PingContext,
}

/// Where ping contexts live between ping and post: in this node's memory (`Pings`), or in
/// Redis (`redis_pings::RedisPings`) so that a post may land on another node.
#[async_trait]
pub trait PingContexts: Send + Sync + 'static {
    /// Keeps the context until it expires (plus a grace period for late posts); a store
    /// that cannot hands it back, for the caller to release its holds.
    async fn put(&self, context: PingContext) -> Result<(), NotStored>;
    /// Claims the ping for posting, atomically: of two concurrent posts, on any nodes,
    /// exactly one gets the context. `market` resolves the offers' campaigns where the
    /// context was stored in another process.
    async fn begin_post(
        &self,
        ping_id: &str,
        supplier_id: &str,
        now: DateTime<Utc>,
        market: &Market,
    ) -> Result<Result<PingContext, PingError>, Unavailable>;
    /// Gives a ping back after a post that changed nothing (invalid lead, conflict).
    async fn reopen(&self, ping_id: &str);
    /// Marks the ping posted; its context is dropped.
    async fn finish_post(&self, ping_id: &str);
    /// Answers the holds of pings that expired unposted, for the caller to release (where
    /// holds do not expire by themselves).
    fn sweep(&self, now: DateTime<Utc>) -> Vec<HoldHandle>;
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
