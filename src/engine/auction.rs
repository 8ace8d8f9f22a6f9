//! The auction: pings, posts, direct and bulk posts (`ping.rs`, `post.rs`) and the steps
//! their decisions share (`decide.rs`), with what only they keep: the round-robin
//! rotations, the tie-break turn and the decision traces.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;

use super::core::Core;
use super::memory::traces::Traces;
use super::outbox::Deliveries;
use crate::domain::market::Market;
use crate::domain::rotation::Rotation;
use crate::domain::trace::Trace;

pub struct Auction {
    pub(super) core: Arc<Core>,
    /// Where async deliveries are queued.
    pub(super) deliveries: Arc<Deliveries>,
    pub(super) traces: Traces,
    pub(super) rotations: DashMap<String, Mutex<Rotation>>,
    tie_turn: AtomicU64,
}

impl Auction {
    pub(super) fn new(core: Arc<Core>, deliveries: Arc<Deliveries>) -> Auction {
        Auction { core, deliveries, traces: Traces::default(), rotations: DashMap::new(), tie_turn: AtomicU64::new(0) }
    }

    /// The decision trace of a lead or ping, while it is kept.
    pub fn trace(&self, id: &str) -> Option<Arc<Trace>> {
        self.traces.get(id)
    }

    pub(super) fn next_tie_turn(&self) -> u64 {
        self.tie_turn.fetch_add(1, Ordering::Relaxed)
    }

    /// Drops from the rotations the campaigns and verticals `live` no longer has.
    pub(super) fn forget_rotations(&self, live: &Market) {
        self.rotations.retain(|vertical, rotation| {
            rotation.lock().retain(|id| live.campaign(id).is_some_and(|c| &c.campaign.vertical == vertical));
            live.vertical(vertical).is_some()
        });
    }
}
