//! Several nodes on one Redis (DESIGN §9): what the router does differently when its state
//! is shared. Admin changes go through the shared config log and every node applies that
//! log in the same order; claims (idempotency keys, external ids, top-up references) are
//! taken in Redis; and a node whose Redis does not answer refuses to sell (503) rather
//! than sell what it cannot record, until Redis answers again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::core::Core;
use super::ports::ledger::InternalRecord;
use super::ports::{ChangeId, InternalFeed};
use super::{EngineError, Router};
use crate::domain::ledger::{Event, LedgerEvent};
use crate::domain::returns::LeadReturn;

/// How often the health of the shared store is probed, and how often the config log is
/// read even without an announcement.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// A probe not answered within this long has failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed probes in a row before the node goes unready: one slow fsync is not an outage.
const PROBE_FAILURES_MAX: u32 = 2;
/// How often other nodes' internal records (pending returns) are read.
const INTERNAL_POLL_EVERY: Duration = Duration::from_millis(100);

/// What a node needs to work beside the other nodes on one Redis (its stores, Redis's
/// adapters, are chosen apart from this).
pub struct OtherNodes {
    /// Every node's internal records, to take in what other nodes recorded.
    pub internal: Arc<dyn InternalFeed>,
    /// This node's name on the shared stores (its internal records carry it).
    pub node: String,
    /// The position in the config log the starting market already includes.
    pub config_applied: ChangeId,
}

pub(super) struct Shared {
    internal: Arc<dyn InternalFeed>,
    internal_read: tokio::sync::Mutex<String>,
    node: String,
    healthy: AtomicBool,
    /// The last ledger sequence taken into `sales` and `returns` at start.
    mirrored: AtomicU64,
}

impl Core {
    /// What keeps the node from selling, if anything: its journal failed for good
    /// (`storage_failed`) or the shared store does not answer (`redis_unavailable`).
    pub(super) fn store_problem(&self) -> Option<&'static str> {
        if self.journal.failure().is_some() {
            Some("storage_failed")
        } else if self.shared.as_ref().is_some_and(|shared| !shared.healthy.load(Ordering::Relaxed)) {
            Some("redis_unavailable")
        } else {
            None
        }
    }

    /// Refuses work that would need storage while it is known to be away, so a request
    /// fails in microseconds instead of waiting for a timeout.
    pub(super) fn ensure_store(&self) -> Result<(), EngineError> {
        match self.store_problem() {
            None => Ok(()),
            Some("storage_failed") => Err(EngineError::Unavailable("the journal cannot be written".into())),
            Some(_) => Err(EngineError::Unavailable("shared store (Redis) unreachable".into())),
        }
    }
}

impl Shared {
    pub(super) fn new(internal: Arc<dyn InternalFeed>, node: String) -> Shared {
        Shared {
            internal,
            internal_read: tokio::sync::Mutex::new(String::new()),
            node,
            healthy: AtomicBool::new(true),
            mirrored: AtomicU64::new(0),
        }
    }
}

impl Router {
    /// What keeps the node from selling, if anything: its journal failed for good
    /// (`storage_failed`) or the shared store does not answer (`redis_unavailable`).
    /// `/readyz` reports it.
    pub fn store_problem(&self) -> Option<&'static str> {
        self.core.store_problem()
    }

    /// Probes the shared store until `stopped`; a node goes unready when two probes in a
    /// row fail (refused at once, or not answered within a second) and ready again when one
    /// succeeds.
    pub async fn watch_store(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(shared) = &self.core.shared else { return };
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            let answered = matches!(tokio::time::timeout(PROBE_TIMEOUT, self.core.claims.probe()).await, Ok(Ok(())));
            failures = if answered { 0 } else { failures + 1 };
            let healthy = failures < PROBE_FAILURES_MAX;
            let was = shared.healthy.swap(healthy, Ordering::Relaxed);
            if was != healthy {
                if healthy {
                    tracing::info!("Redis answers again; selling resumes");
                } else {
                    tracing::warn!("Redis does not answer; refusing to sell until it does");
                }
            }
        }
    }
}

impl Router {
    /// On several nodes: keeps this node's view of sales and resolved returns up to date
    /// from the shared ledger stream, whichever node wrote them, so a buyer may return a
    /// lead through any node.
    pub async fn follow_ledger(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(shared) = &self.core.shared else { return };
        const BATCH: usize = 4_096;
        let log = Arc::clone(&self.core.journal).event_log();
        let mut appended = log.watch();
        let mut seen = shared.mirrored.load(Ordering::Relaxed);
        loop {
            let batch = match log.read_after(seen, BATCH) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%error, "the ledger mirror cannot be read");
                    Vec::new()
                }
            };
            for event in &batch {
                seen = event.sequence;
                self.mirror(event);
            }
            if batch.len() < BATCH {
                tokio::select! {
                    _ = appended.changed() => {}
                    _ = stopped.changed() => return,
                }
            }
        }
    }

    /// The sales and resolved returns of the shared ledger so far, before the node serves.
    pub fn mirror_history(&self, events: &[LedgerEvent]) {
        for event in events {
            self.mirror(event);
        }
        if let (Some(shared), Some(last)) = (&self.core.shared, events.last()) {
            shared.mirrored.store(last.sequence, Ordering::Relaxed);
        }
    }

    fn mirror(&self, event: &LedgerEvent) {
        match &event.event {
            Event::SaleSettled(sale) => self.core.sales.record(Arc::clone(sale)),
            Event::ReturnResolved(resolved) => {
                if let Some(sale) = self.core.sales.get(&resolved.sale_id) {
                    self.core.returns.put(LeadReturn::from_event(resolved, &sale), resolved.revision);
                }
            }
            _ => {}
        }
    }
    /// On several nodes: takes in the pending returns other nodes record, so an operator
    /// may approve or reject a return through any node.
    pub async fn follow_internal(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(shared) = &self.core.shared else { return };
        let mut tick = tokio::time::interval(INTERNAL_POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            let mut read = shared.internal_read.lock().await;
            match shared.internal.internal_after(&read, 4_096).await {
                Ok(records) => {
                    for (position, node, record) in records {
                        *read = position;
                        if node != shared.node {
                            self.take_in(&record);
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, "internal records of other nodes: read failed; retrying"),
            }
        }
    }

    /// Where `follow_internal` goes on: after what the start has read.
    pub async fn internal_read_through(&self, position: String) {
        if let Some(shared) = &self.core.shared {
            *shared.internal_read.lock().await = position;
        }
    }

    /// What another node's internal record means here: its pending returns are shared;
    /// its outbox stays its own to send (and to restore after its restart).
    pub fn take_in(&self, record: &InternalRecord) {
        if let InternalRecord::ReturnRequested { lead_return, revision } = record {
            self.core.returns.put((**lead_return).clone(), *revision);
        }
    }
}
