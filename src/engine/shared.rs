//! Several nodes on one Redis (DESIGN §9): what the router does differently when its state
//! is shared. Admin changes go through the shared config log and every node applies that
//! log in the same order; claims (idempotency keys, external ids, top-up references) are
//! taken in Redis; and a node whose Redis does not answer refuses to sell (503) rather
//! than sell what it cannot record, until Redis answers again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EngineError, Router};
use crate::domain::ledger::{Event, LedgerEvent};
use crate::domain::market::{ConfigChange, Market};
use crate::domain::returns::LeadReturn;
use crate::store::idempotency::StoredAnswer;
use crate::store::journal::InternalRecord;
use crate::store::pings::PingContexts;
use crate::store::{ChangeId, Claims, ConfigLog, DedupClaims, InternalFeed, KeyClaim, PullLog, Unavailable};

/// How often the health of the shared store is probed, and how often the config log is
/// read even without an announcement.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// A probe not answered within this long has failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed probes in a row before the node goes unready: one slow fsync is not an outage.
const PROBE_FAILURES_MAX: u32 = 2;
const CONFIG_POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a request waits for another node's answer to the same `Idempotency-Key`.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);
/// How often other nodes' internal records (pending returns) are read.
const INTERNAL_POLL_EVERY: Duration = Duration::from_millis(100);

/// The shared adapters a router uses on several nodes.
pub struct SharedStores {
    pub dedup: Arc<dyn DedupClaims>,
    pub pings: Arc<dyn PingContexts>,
    pub claims: Arc<dyn Claims>,
    pub config: Arc<dyn ConfigLog>,
    pub pull: Arc<dyn PullLog>,
    /// Every node's internal records, to take in what other nodes recorded.
    pub internal: Arc<dyn InternalFeed>,
    /// This node's name on the shared stores (its internal records carry it).
    pub node: String,
    /// The position in `config` the starting market already includes.
    pub config_applied: ChangeId,
}

pub(super) struct Shared {
    pub(super) claims: Arc<dyn Claims>,
    config: Arc<dyn ConfigLog>,
    pub(super) pull: Arc<dyn PullLog>,
    internal: Arc<dyn InternalFeed>,
    internal_read: tokio::sync::Mutex<String>,
    node: String,
    applied: watch::Sender<ChangeId>,
    healthy: AtomicBool,
    /// The last ledger sequence taken into `sales` and `returns` at start.
    mirrored: AtomicU64,
}

impl Router {
    /// Switches the router to shared state (call before it serves).
    pub fn with_shared(mut self, stores: SharedStores) -> Router {
        self.dedup = stores.dedup;
        self.pings = stores.pings;
        self.sales = crate::store::sales::Sales::keeping(usize::MAX);
        self.shared = Some(Shared {
            claims: stores.claims,
            config: stores.config,
            pull: stores.pull,
            internal: stores.internal,
            internal_read: tokio::sync::Mutex::new(String::new()),
            node: stores.node,
            applied: watch::channel(stores.config_applied).0,
            healthy: AtomicBool::new(true),
            mirrored: AtomicU64::new(0),
        });
        self
    }

    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// What keeps the node from selling, if anything: its journal failed for good
    /// (`storage_failed`) or the shared store does not answer (`redis_unavailable`).
    /// `/readyz` reports it.
    pub fn store_problem(&self) -> Option<&'static str> {
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

    /// Probes the shared store until `stopped`; a node goes unready when two probes in a
    /// row fail (refused at once, or not answered within a second) and ready again when one
    /// succeeds.
    pub async fn watch_store(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(shared) = &self.shared else { return };
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            let answered = matches!(tokio::time::timeout(PROBE_TIMEOUT, shared.claims.probe()).await, Ok(Ok(())));
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

    /// Applies every shared admin change as it is announced (or at least once a second).
    pub async fn follow_config(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(shared) = &self.shared else { return };
        let mut announced = shared.config.announcements();
        let mut tick = tokio::time::interval(CONFIG_POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = announced.changed() => {}
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            if let Err(error) = self.apply_shared_changes().await {
                tracing::warn!(%error, "config changes: cannot read the shared log; retrying");
            }
        }
    }

    /// Reads the shared config log past what this node applied and applies it in order.
    /// A change that no longer applies (a concurrent change on another node removed what
    /// it needs) is skipped on every node alike, so all nodes keep the same market.
    async fn apply_shared_changes(&self) -> Result<(), Unavailable> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let _writer = self.market_writer.lock().await;
        let after = *shared.applied.borrow();
        let changes = shared.config.after(after).await?;
        let Some((last, _)) = changes.last() else { return Ok(()) };
        let last = *last;
        let mut market: Arc<Market> = self.market.load_full();
        for (id, change) in &changes {
            match market.apply(change, self.postal) {
                Ok(next) => market = Arc::new(next),
                Err(error) => tracing::warn!(%error, change = %id, "a shared config change does not apply; skipped"),
            }
        }
        self.market.store(market);
        self.publish_market_gauges();
        shared.applied.send_replace(last);
        Ok(())
    }

    /// An operator's change on a shared node: checked against this node's market (so a bad
    /// change is a 4xx and stored nowhere), published to the shared log, and applied here
    /// before the answer, so the operator reads their own write on this node at once.
    pub(super) async fn configure_shared(&self, change: &ConfigChange) -> Result<(), EngineError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        self.ensure_store()?;
        {
            let _writer = self.market_writer.lock().await;
            self.market.load().apply(change, self.postal)?;
        }
        shared.config.publish(change).await?;
        self.apply_shared_changes().await?;
        Ok(())
    }

    /// On several nodes: the answer an `Idempotency-Key` already has on some node, if any.
    /// `Ok(None)` means this request runs (and `journal_answer` stores its answer).
    pub async fn shared_answer(
        &self,
        party: &str,
        key: &str,
        body_hash: [u8; 32],
    ) -> Result<Option<StoredAnswer>, EngineError> {
        let Some(shared) = &self.shared else { return Ok(None) };
        self.ensure_store()?;
        let started = tokio::time::Instant::now();
        loop {
            match shared.claims.begin_answer(party, key, body_hash).await? {
                KeyClaim::Fresh => return Ok(None),
                KeyClaim::Answered(answer) => return Ok(Some(answer)),
                KeyClaim::Conflict => {
                    return Err(EngineError::Conflict {
                        code: "idempotency_key_reused",
                        message: "this Idempotency-Key was used with another request body".into(),
                    })
                }
                KeyClaim::InFlight if started.elapsed() < IN_FLIGHT_WAIT => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                KeyClaim::InFlight => return Err(EngineError::InProgress),
            }
        }
    }

    /// Gives back a shared `Idempotency-Key` whose answer must not be replayed.
    pub async fn release_answer(&self, party: &str, key: &str) {
        if let Some(shared) = &self.shared {
            shared.claims.release_answer(party, key).await;
        }
    }

    /// Claims an external id on every node at once; `Err` names the lead that has it.
    pub(super) async fn claim_shared_external_id(
        &self,
        supplier_id: &str,
        external_id: &str,
        lead_id: &str,
    ) -> Result<(), EngineError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        shared.claims.claim_external_id(supplier_id, external_id, lead_id).await?.map_err(|existing| {
            EngineError::Conflict {
                code: "duplicate_external_id",
                message: format!("external_id was already used for lead {existing}"),
            }
        })
    }
    /// `Claims::claim_once` on several nodes, `taken()` when another node had it; always
    /// granted on one node (the caller's in-memory claim is the whole claim there).
    pub(super) async fn claim_shared_once(
        &self,
        buyer_id: &str,
        what: &'static str,
        id: &str,
        taken: impl FnOnce() -> EngineError,
    ) -> Result<(), EngineError> {
        match &self.shared {
            Some(shared) if !shared.claims.claim_once(buyer_id, what, id).await? => Err(taken()),
            _ => Ok(()),
        }
    }

    pub(super) async fn release_shared_once(&self, buyer_id: &str, what: &'static str, id: &str) {
        if let Some(shared) = &self.shared {
            shared.claims.release_once(buyer_id, what, id).await;
        }
    }
}

impl Router {
    /// On several nodes: keeps this node's view of sales and resolved returns up to date
    /// from the shared ledger stream, whichever node wrote them, so a buyer may return a
    /// lead through any node.
    pub async fn follow_ledger(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(shared) = &self.shared else { return };
        const BATCH: usize = 4_096;
        let log = Arc::clone(&self.journal).event_log();
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
        if let (Some(shared), Some(last)) = (&self.shared, events.last()) {
            shared.mirrored.store(last.sequence, Ordering::Relaxed);
        }
    }

    fn mirror(&self, event: &LedgerEvent) {
        match &event.event {
            Event::SaleSettled(sale) => self.sales.record(sale.clone()),
            Event::ReturnResolved(resolved) => {
                if let Some(sale) = self.sales.get(&resolved.sale_id) {
                    self.returns.put(LeadReturn::from_event(resolved, &sale), resolved.revision);
                }
            }
            _ => {}
        }
    }
    /// On several nodes: takes in the pending returns other nodes record, so an operator
    /// may approve or reject a return through any node.
    pub async fn follow_internal(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let Some(shared) = &self.shared else { return };
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
        if let Some(shared) = &self.shared {
            *shared.internal_read.lock().await = position;
        }
    }

    /// What another node's internal record means here: its pending returns are shared;
    /// its outbox stays its own to send (and to restore after its restart).
    pub fn take_in(&self, record: &InternalRecord) {
        if let InternalRecord::ReturnRequested { lead_return, revision } = record {
            self.returns.put((**lead_return).clone(), *revision);
        }
    }

    /// The next revision of a return (its place in the supplier feed): one counter for all
    /// nodes when shared.
    pub(super) async fn next_return_revision(&self) -> Result<u64, EngineError> {
        match &self.shared {
            Some(shared) => Ok(shared.claims.next_number("return_revision").await?),
            None => Ok(self.returns.next_revision()),
        }
    }
}
