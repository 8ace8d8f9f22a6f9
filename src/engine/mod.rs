//! The router: one async function per use case (ping, post, direct post, bulk, balance,
//! admin changes), each driving the pure `domain` through the `store` ports and the
//! `buyers` client, and each owning its deadline.
//!
//! Deadlines (DESIGN §8.4): a decision gets `tmax_ms` from the moment the request arrives.
//! Buyer pings end at the bid deadline, deliveries at the decision deadline; nothing waits
//! on a buyer past them, so an answer never waits past `tmax_ms` plus scheduling slack.

mod answers;
mod configure;
mod decide;
pub mod memory;
mod outbox;
mod ping;
pub mod ports;
mod post;
mod returns;
mod shared;
mod snapshot;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use parking_lot::Mutex;

pub use answers::{LeadAnswer, PingAnswer};
pub use ports::Stores;
pub use post::PostInput;
pub use returns::{ReturnAmounts, ReturnInput, ReturnView};
pub use shared::OtherNodes;
pub use snapshot::RouterState;

use crate::buyers::BuyerClient;
use crate::clock::Clock;
use crate::domain::budget::{BalanceView, Funding, ReplayedSale};
use crate::domain::dedup::{DedupKeying, DedupSecret};
use crate::domain::geo::PostalTable;
use crate::domain::ledger::{BalanceToppedUp, Event, LedgerEvent};
use crate::domain::market::{Market, MarketError};
use crate::domain::model::{BillingMode, FieldError};
use crate::domain::money::Money;
use crate::domain::rotation::Rotation;
use crate::domain::trace::Trace;
use crate::telemetry;
use memory::idempotency::Idempotency;
use memory::outbox::Outbox;
use memory::returns::Returns;
use memory::sales::Sales;
use memory::traces::Traces;
use ports::idempotency::StoredAnswer;
use ports::ledger::{InternalRecord, JournalError, Location};
use ports::pings::PingContexts;
use ports::{Budget, BudgetError, ChangeId, Claims, ConfigLog, DedupClaims, KeyClaim, Ledger, PullLog, Unavailable};

/// Whose fault an error is decides its HTTP status (mapped once, in `api::error`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The supplier's or operator's input is wrong: 422 with field details.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// Unknown id, or another party's: 404, never revealing which.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("ping expired")]
    PingExpired,
    /// A business rule refuses the request as a whole (`return_window_closed`): 422 with
    /// the code.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// A state conflict: 409 with a code (`ping_already_posted`, `duplicate_external_id`...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Our storage cannot answer; retrying later can help: 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The same request (same `Idempotency-Key`) is still running elsewhere: 503, retry.
    #[error("a request with this Idempotency-Key is still running; retry later")]
    InProgress,
}

impl From<BudgetError> for EngineError {
    fn from(error: BudgetError) -> EngineError {
        EngineError::Unavailable(error.to_string())
    }
}

impl From<Unavailable> for EngineError {
    fn from(error: Unavailable) -> EngineError {
        EngineError::Unavailable(error.0)
    }
}

impl From<JournalError> for EngineError {
    fn from(error: JournalError) -> EngineError {
        EngineError::Unavailable(error.to_string())
    }
}

impl From<MarketError> for EngineError {
    fn from(error: MarketError) -> EngineError {
        match error {
            MarketError::Invalid { errors, .. } => EngineError::Invalid(errors),
            MarketError::Conflict(message) => EngineError::Conflict { code: "conflict", message },
            MarketError::NotFound(what) => EngineError::NotFound(what),
        }
    }
}

/// How long a request waits for another node's answer to the same `Idempotency-Key`.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything the router shares between requests.
pub struct Router {
    market: ArcSwap<Market>,
    /// Admin changes are rare and build a whole market; this lock orders them with each
    /// other and with their journal records. The hot path never takes it.
    market_writer: tokio::sync::Mutex<()>,
    postal: &'static PostalTable,
    clock: Arc<dyn Clock>,
    budget: Arc<dyn Budget>,
    buyers: BuyerClient,
    pings: Arc<dyn PingContexts>,
    dedup: Arc<dyn DedupClaims>,
    /// How dedup keys are made: the deployment's secret (see `with_dedup_keying`).
    dedup_keying: DedupKeying,
    idempotency: Idempotency,
    sales: Sales,
    traces: Traces,
    rotations: DashMap<String, Mutex<Rotation>>,
    top_up_references: DashMap<(String, String), ()>,
    /// Every sale, top-up and account change, on disk before it is acknowledged.
    journal: Arc<dyn Ledger>,
    pull: Arc<dyn PullLog>,
    claims: Arc<dyn Claims>,
    /// Admin changes in the order every node applies them, and how far this node has.
    config: Arc<dyn ConfigLog>,
    config_applied: tokio::sync::watch::Sender<ChangeId>,
    returns: Returns,
    /// Orders operators' return decisions with each other (never taken on the hot path).
    resolving: tokio::sync::Mutex<()>,
    outbox: Outbox,
    tie_turn: AtomicU64,
    /// Redis-backed claims and config on several nodes; `None` on one node.
    shared: Option<shared::Shared>,
}

impl Router {
    pub fn new(market: Market, postal: &'static PostalTable, clock: Arc<dyn Clock>, stores: Stores) -> Router {
        let Stores { budget, ledger: journal, pings, dedup, claims, config, pull } = stores;
        let router = Router {
            market: ArcSwap::from_pointee(market),
            market_writer: tokio::sync::Mutex::new(()),
            postal,
            clock,
            budget,
            buyers: BuyerClient::new(),
            pings,
            dedup,
            // A secret of this process alone until the server gives the deployment's.
            dedup_keying: DedupKeying::new(DedupSecret::from_bytes(rand::random())),
            idempotency: Idempotency::default(),
            sales: if journal.finds_sales() { Sales::default() } else { Sales::keeping(usize::MAX) },
            traces: Traces::default(),
            rotations: DashMap::new(),
            top_up_references: DashMap::new(),
            tie_turn: AtomicU64::new(0),
            pull,
            claims,
            config,
            config_applied: tokio::sync::watch::channel(ChangeId::default()).0,
            journal,
            returns: Returns::default(),
            resolving: tokio::sync::Mutex::new(()),
            outbox: Outbox::default(),
            shared: None,
        };
        router.publish_market_gauges();
        router
    }

    /// Makes dedup keys under the deployment's secret (kept in the data dir or shared by
    /// every node on a Redis), so that they match across restarts and nodes.
    pub fn with_dedup_keying(mut self, keying: DedupKeying) -> Router {
        self.dedup_keying = keying;
        self
    }

    pub fn market(&self) -> Arc<Market> {
        self.market.load_full()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn idempotency(&self) -> &Idempotency {
        &self.idempotency
    }

    pub fn sales(&self) -> &Sales {
        &self.sales
    }

    pub fn trace(&self, id: &str) -> Option<Arc<Trace>> {
        self.traces.get(id)
    }

    /// Adds money to a buyer's balance once per `reference` (a bank transfer id, say), so an
    /// operator's retried call never credits twice.
    pub async fn top_up(&self, buyer_id: &str, amount: Money, reference: &str) -> Result<BalanceView, EngineError> {
        let market = self.market();
        let buyer = market.buyer(buyer_id).ok_or(EngineError::NotFound("buyer"))?;
        let mut errors = Vec::new();
        if amount.is_negative() || amount.is_zero() {
            errors.push(FieldError::new("amount", "must be positive"));
        } else if !amount.is_input_range() {
            errors.push(FieldError::new("amount", "at most 1000000000.00"));
        }
        if reference.trim().is_empty() || reference.len() > 128 {
            errors.push(FieldError::new("reference", "1 to 128 characters"));
        }
        if !errors.is_empty() {
            return Err(EngineError::Invalid(errors));
        }
        // Invoice buyers pay invoices and internal ones pay nothing: money topped up there
        // would land on no billing document.
        if buyer.billing.mode != BillingMode::Prepaid {
            return Err(EngineError::Refused {
                code: "buyer_not_prepaid",
                message: format!("buyer {buyer_id} is not prepaid: only prepaid buyers are topped up"),
            });
        }
        self.ensure_store()?;
        let booked = (buyer_id.to_string(), reference.to_string());
        let duplicate = || EngineError::Conflict {
            code: "duplicate_reference",
            message: "a top-up with this reference was already booked".into(),
        };
        if self.top_up_references.insert(booked.clone(), ()).is_some() {
            return Err(duplicate());
        }
        if let Err(error) = self.claim_once(buyer_id, "topup", reference, duplicate).await {
            self.top_up_references.remove(&booked);
            return Err(error);
        }
        let balance_after = match self.budget.top_up(buyer_id, amount).await {
            Ok(balance) => balance,
            Err(error) => {
                self.release_reference(&booked).await;
                return Err(error.into());
            }
        };
        let event = Event::BalanceToppedUp(BalanceToppedUp {
            buyer_id: buyer_id.to_string(),
            amount,
            reference: reference.to_string(),
            balance_after,
            currency: buyer.currency.clone(),
        });
        if let Err(error) = self.journal.append(event, self.clock.now()).await {
            // Not on disk, so not booked: take the money back out of memory too.
            let _ = self.budget.top_up(buyer_id, -amount).await;
            self.release_reference(&booked).await;
            return Err(error.into());
        }
        let funding = Funding::of(buyer);
        let view = self.budget.balance(buyer_id, self.clock.now(), funding).await?;
        metrics::gauge!(telemetry::BUYER_AVAILABLE_BALANCE, "buyer" => buyer_id.to_string())
            .set(view.available.as_f64_for_metrics());
        Ok(view)
    }

    async fn release_reference(&self, booked: &(String, String)) {
        self.top_up_references.remove(booked);
        self.claims.release_once(&booked.0, "topup", &booked.1).await;
    }

    pub async fn balance(&self, buyer_id: &str) -> Result<(BalanceView, String), EngineError> {
        let market = self.market();
        let buyer = market.buyer(buyer_id).ok_or(EngineError::NotFound("buyer"))?;
        let view = self.budget.balance(buyer_id, self.clock.now(), Funding::of(buyer)).await?;
        Ok((view, buyer.currency.clone()))
    }

    /// Releases the holds of expired pings and drops expired holds; run about once a second
    /// (holds are also purged lazily whenever their buyer's book is touched).
    pub async fn sweep_holds(&self) {
        let now = self.clock.now();
        for hold in self.pings.sweep(now) {
            let _ = self.budget.release(&hold).await;
        }
        let _ = self.budget.expire(now).await;
    }

    /// Forgets dedup keys and idempotency records past their windows (days, hours): a walk
    /// over every record, so it runs about once a minute, not on the request path.
    pub fn sweep_records(&self) {
        self.forget_closed_sales();
        let now = self.clock.now();
        let longest_dedup = self.market().campaigns().map(|c| c.campaign.dedup_days).max().unwrap_or(0);
        self.dedup.sweep(now, chrono::Duration::days(i64::from(longest_dedup)));
        self.idempotency.sweep(now);
    }

    /// Leads of the buyer's pull campaigns after `after` (DESIGN §4, `GET /v1/buyer/leads`).
    /// A cursor that acknowledges more than before is journaled first, so what a buyer
    /// has taken is never handed out again, also after a restart.
    pub async fn pull_leads(
        &self,
        buyer_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, serde_json::Value)>, EngineError> {
        // A cursor is a position this buyer was handed; one past the newest would
        // acknowledge leads not sold yet, which then would never be handed out.
        let beyond = || {
            EngineError::Invalid(vec![FieldError::new(
                "after",
                "beyond the newest lead: pass back the `next` of an earlier answer",
            )])
        };
        self.ensure_store()?;
        if after > self.pull.last_position(buyer_id).await? {
            return Err(beyond());
        }
        Ok(self.pull.fetch(buyer_id, after, limit).await?)
    }

    pub fn journal(&self) -> &Arc<dyn Ledger> {
        &self.journal
    }

    /// Rebuilds state from the journal at start: balances and cap usage, sales, top-up
    /// references. Runs before the listeners open.
    pub async fn replay(&self, events: &[LedgerEvent]) -> Result<(), EngineError> {
        let market = self.market();
        for event in events {
            match &event.event {
                Event::SaleSettled(sale) => {
                    let campaign = market.campaign(&sale.campaign_id);
                    let replayed = ReplayedSale {
                        campaign_id: &sale.campaign_id,
                        price: sale.price,
                        charged: !sale.internal,
                        caps: campaign.map_or(&[], |c| &c.caps),
                        tz: campaign.map_or(chrono_tz::UTC, |c| c.tz),
                        sold_at: sale.sold_at,
                    };
                    self.budget.replay_sale(&sale.buyer_id, replayed).await?;
                    let keys: Vec<_> =
                        sale.dedup_keys.iter().filter_map(|k| crate::domain::dedup::from_hex(k)).collect();
                    self.dedup.commit(&sale.buyer_id, &keys, sale.sold_at).await?;
                    self.sales.record(sale.clone());
                }
                Event::BalanceToppedUp(top_up) => {
                    self.budget.top_up(&top_up.buyer_id, top_up.amount).await?;
                    self.top_up_references.insert((top_up.buyer_id.clone(), top_up.reference.clone()), ());
                }
                Event::ReturnResolved(resolved) => self.replay_return(resolved).await?,
                Event::BuyerUpdated(_) | Event::SupplierUpdated(_) => {}
            }
        }
        Ok(())
    }

    /// Restores idempotency answers and external id claims younger than their 24 hours,
    /// pull leads, pending returns and the outbox (after `replay`: sales and resolved
    /// returns decide which of these records count).
    pub fn restore(&self, records: impl IntoIterator<Item = InternalRecord>) {
        let mut restoring = self.restoring();
        for record in records {
            restoring.take(record);
        }
        let orphans = restoring.finish();
        if !orphans.is_empty() {
            tracing::info!(records = orphans.len(), "records whose fact never reached the journal were dropped");
        }
    }

    /// `restore`, one record at a time (start-up streams them from disk).
    pub fn restoring(&self) -> Restoring<'_> {
        let horizon = self.clock.now() - chrono::Duration::hours(ports::idempotency::IDEMPOTENCY_TTL_HOURS);
        Restoring {
            router: self,
            horizon,
            outbox: outbox::OutboxReplay::starting_from(self.outbox.take_all()),
            awaiting: Vec::new(),
            replayed: std::collections::HashSet::new(),
        }
    }

    /// Makes the first answer to an `Idempotency-Key` durable before it is returned, so a
    /// retry after a crash still gets it.
    pub async fn keep_answer(
        &self,
        supplier_id: &str,
        key: &str,
        body_hash: [u8; 32],
        answer: &StoredAnswer,
    ) -> Result<(), EngineError> {
        Ok(self.claims.store_answer(supplier_id, key, body_hash, answer).await?)
    }

    /// The answer an `Idempotency-Key` already has elsewhere (on another node), if any.
    /// `Ok(None)` means this request runs (and `keep_answer` stores its answer).
    pub async fn prior_answer(
        &self,
        party: &str,
        key: &str,
        body_hash: [u8; 32],
    ) -> Result<Option<StoredAnswer>, EngineError> {
        self.ensure_store()?;
        let started = tokio::time::Instant::now();
        loop {
            match self.claims.begin_answer(party, key, body_hash).await? {
                KeyClaim::Fresh => return Ok(None),
                KeyClaim::Answered(answer) => return Ok(Some(answer)),
                KeyClaim::Conflict => {
                    return Err(EngineError::Conflict {
                        code: "idempotency_key_reused",
                        message: "this Idempotency-Key was used with another request body".into(),
                    })
                }
                KeyClaim::InFlight if started.elapsed() < IN_FLIGHT_WAIT => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                KeyClaim::InFlight => return Err(EngineError::InProgress),
            }
        }
    }

    /// Gives back an `Idempotency-Key` whose answer must not be replayed.
    pub async fn release_answer(&self, party: &str, key: &str) {
        self.claims.release_answer(party, key).await;
    }

    /// `Claims::claim_once`, `taken()` when it was taken before (on another node).
    async fn claim_once(
        &self,
        buyer_id: &str,
        what: &'static str,
        id: &str,
        taken: impl FnOnce() -> EngineError,
    ) -> Result<(), EngineError> {
        match self.claims.claim_once(buyer_id, what, id).await? {
            true => Ok(()),
            false => Err(taken()),
        }
    }

    /// The next revision of a return (its place in the supplier feed): one counter for all
    /// nodes.
    async fn next_return_revision(&self) -> Result<u64, EngineError> {
        match self.claims.next_number("return_revision").await? {
            Some(number) => Ok(number),
            None => Ok(self.returns.next_revision()),
        }
    }

    /// Journals `BuyerUpdated` / `SupplierUpdated` for every account whose billing-relevant
    /// settings differ from what the journal last said (or that it never saw), so a ledger
    /// consumer needs no other source (DESIGN §7).
    pub async fn journal_account_changes(&self, said: &AccountsSaid) -> Result<usize, EngineError> {
        let market = self.market();
        let now = self.clock.now();
        let mut appended = 0;
        for buyer in &market.config().buyers {
            if said.buyers.get(&buyer.id) != Some(buyer) {
                self.journal.append(Event::BuyerUpdated(buyer.clone()), now).await?;
                appended += 1;
            }
        }
        for supplier in &market.config().suppliers {
            if said.suppliers.get(&supplier.id) != Some(supplier) {
                self.journal.append(Event::SupplierUpdated(supplier.clone()), now).await?;
                appended += 1;
            }
        }
        Ok(appended)
    }

    fn next_tie_turn(&self) -> u64 {
        self.tie_turn.fetch_add(1, Ordering::Relaxed)
    }
}

/// What the ledger last said of each account, gathered while it is replayed.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct AccountsSaid {
    buyers: std::collections::HashMap<String, crate::domain::model::Buyer>,
    suppliers: std::collections::HashMap<String, crate::domain::model::Supplier>,
}

impl AccountsSaid {
    pub fn note(&mut self, event: &LedgerEvent) {
        match &event.event {
            Event::BuyerUpdated(buyer) => {
                self.buyers.insert(buyer.id.clone(), buyer.clone());
            }
            Event::SupplierUpdated(supplier) => {
                self.suppliers.insert(supplier.id.clone(), supplier.clone());
            }
            _ => {}
        }
    }
}

/// Internal records being restored at start, in journal order.
pub struct Restoring<'a> {
    router: &'a Router,
    horizon: chrono::DateTime<chrono::Utc>,
    outbox: outbox::OutboxReplay,
    awaiting: Vec<(Location, InternalRecord)>,
    /// The sales of the replay in progress, which announced facts are checked against.
    replayed: std::collections::HashSet<String>,
}

impl Restoring<'_> {
    /// Counts `sale_ids` as journaled (the sales a replay went through).
    pub fn knowing_sales(mut self, sale_ids: std::collections::HashSet<String>) -> Self {
        self.replayed = sale_ids;
        self
    }

    /// Takes a record read back without its place (several nodes: no pull leads there).
    pub fn take(&mut self, record: InternalRecord) {
        self.take_at(Location::default(), record);
    }

    /// Takes a record read back from `location`.
    pub fn take_at(&mut self, location: Location, record: InternalRecord) {
        let router = self.router;
        match record {
            InternalRecord::Idempotency { supplier_id, key, body_hash, status, body, created_at } => {
                let mut hash = [0u8; 32];
                if created_at > self.horizon && hex::decode_to_slice(&body_hash, &mut hash).is_ok() {
                    let answer = StoredAnswer { status, body: bytes::Bytes::from(body) };
                    router.idempotency.restore(&supplier_id, &key, hash, answer, created_at);
                }
            }
            InternalRecord::ExternalId { supplier_id, external_id, lead_id, at } if at > self.horizon => {
                router.idempotency.restore_external_id(&supplier_id, &external_id, &lead_id, at);
            }
            InternalRecord::ExternalId { .. } => {}
            InternalRecord::PullAcknowledged { buyer_id, through } => {
                router.pull.restore_acknowledged(&buyer_id, through)
            }
            InternalRecord::PullLead { buyer_id, sale_id, position, .. }
                if self.replayed.contains(&sale_id) || router.sales.contains(&sale_id) =>
            {
                router.pull.restore_lead(&buyer_id, position, location);
            }
            pull @ InternalRecord::PullLead { .. } => self.awaiting.push((location, pull)),
            InternalRecord::ReturnRequested { lead_return, revision } => router.returns.put(*lead_return, revision),
            InternalRecord::ConfigChanged { .. } => {}
            outbox @ (InternalRecord::OutboxQueued { .. }
            | InternalRecord::OutboxFailed { .. }
            | InternalRecord::OutboxDelivered { .. }
            | InternalRecord::OutboxDeadLettered { .. }
            | InternalRecord::OutboxRevived { .. }) => {
                let waiting = router.replay_outbox_record(&mut self.outbox, outbox, &self.replayed);
                self.awaiting.extend(waiting.map(|record| (location, record)));
            }
        }
    }

    /// Completes the restore; answers the records whose fact was not journaled (a pull
    /// lead or a message announced just before its sale): a checkpoint carries them to
    /// the segments that follow, a start that has read everything drops them.
    pub fn finish(self) -> Vec<(Location, InternalRecord)> {
        self.router.restore_outbox(self.outbox);
        self.awaiting
    }
}

/// Counts one ping, post or lead (`*_total{vertical,outcome}`).
fn count(name: &'static str, vertical: &crate::domain::model::Vertical, outcome: &'static str) {
    metrics::counter!(name, "vertical" => vertical.name.clone(), "outcome" => outcome).increment(1);
}
