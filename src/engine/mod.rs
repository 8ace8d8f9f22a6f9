//! The engine: one async function per use case, each driving the pure `domain` through
//! the ports (`ports`, chosen once at start as one `Stores` bundle) and the `buyers`
//! client, and each owning its deadline. Use cases belong to services: `Auction` (ping,
//! post, direct, bulk; `ping.rs`, `post.rs`, `decide.rs`), `ReturnDesk` (`returns.rs`),
//! `Deliveries` (outbox and pull; `outbox.rs`), `Accounts` (balances, top-ups, admin
//! changes; `accounts.rs`, `configure.rs`) and `Retries` (requests with an
//! `Idempotency-Key`, run once; `retries.rs`). They share one `Core` (market, clock, stores);
//! the `Router` wires them and rebuilds their state at start (`snapshot.rs`, `shared.rs`).
//!
//! Deadlines (DESIGN §8.4): a decision gets `tmax_ms` from the moment the request arrives.
//! Buyer pings end at the bid deadline, deliveries at the decision deadline; nothing waits
//! on a buyer past them, so an answer never waits past `tmax_ms` plus scheduling slack.

mod accounts;
pub mod answers;
mod auction;
mod buyer_format;
mod configure;
mod core;
mod decide;
pub mod history;
pub mod memory;
pub mod native_body;
mod operators;
mod outbox;
mod ping;
pub mod ports;
mod post;
mod retries;
mod returns;
mod shared;
mod snapshot;
pub mod test_send;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use accounts::Accounts;
pub use answers::{LeadAnswer, PingAnswer};
pub use auction::Auction;
pub use configure::ChangeView;
pub use history::History;
pub use outbox::Deliveries;
pub use ports::Stores;
pub use post::PostInput;
pub use retries::{Answered, KeyedRequest, Retries};
pub use returns::{ReturnAmounts, ReturnDesk, ReturnInput, ReturnView};
pub use shared::OtherNodes;
pub use snapshot::RouterState;
pub use test_send::TestSends;

use self::core::Core;
use crate::clock::Clock;
use crate::domain::budget::ReplayedSale;
use crate::domain::dedup::{DedupKeying, DedupSecret};
use crate::domain::geo::PostalTable;
use crate::domain::ledger::{Event, LedgerEvent};
use crate::domain::market::{Market, MarketError};
use crate::domain::model::FieldError;
use memory::idempotency::Idempotency;
use memory::outcomes::LeadOutcomes;
use memory::returns::Returns;
use memory::sales::Sales;
use ports::idempotency::KeptAnswer;
use ports::ledger::{InternalRecord, JournalError, Location};
use ports::{BudgetError, BuyerCalls, ChangeId, Ledger, Unavailable};

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
    /// The task running the request ended without an answer (a bug): 500.
    #[error("the request could not be completed")]
    Interrupted,
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

/// How this process is deployed: what `Router::new` needs besides the market and stores.
pub struct Deployment {
    /// How buyers are called (`buyers::BuyerClient`).
    pub buyers: Arc<dyn BuyerCalls>,
    /// How dedup keys are made: the deployment's secret (kept in the data dir or shared by
    /// every node on a Redis), so that they match across restarts and nodes.
    pub dedup_keying: DedupKeying,
    /// The other nodes on one Redis; `None` on one node.
    pub other_nodes: Option<OtherNodes>,
}

impl Deployment {
    /// One process alone, calling buyers through `buyers`, with a dedup secret of its own
    /// (tools, tests, the checkpointer).
    pub fn alone(buyers: Arc<dyn BuyerCalls>) -> Deployment {
        let dedup_keying = DedupKeying::new(DedupSecret::from_bytes(rand::random()));
        Deployment { buyers, dedup_keying, other_nodes: None }
    }
}

/// The engine's services over the state they share. Each use case belongs to one service:
/// the auction (ping, post, direct, bulk), the return desk, deliveries (outbox and pull),
/// and accounts (balances, top-ups, admin changes). The router itself only wires them, and
/// rebuilds their state at start.
pub struct Router {
    core: Arc<Core>,
    auction: Arc<Auction>,
    returns: ReturnDesk,
    deliveries: Arc<Deliveries>,
    accounts: Arc<Accounts>,
    retries: Retries,
    test_sends: TestSends,
    history: History,
}

impl Router {
    pub fn new(
        market: Market,
        postal: &'static PostalTable,
        clock: Arc<dyn Clock>,
        stores: Stores,
        deployment: Deployment,
    ) -> Router {
        let Stores { budget, ledger: journal, pings, dedup, claims, config, pull } = stores;
        let (shared, config_applied) = match deployment.other_nodes {
            Some(nodes) => (Some(shared::Shared::new(nodes.internal, nodes.node)), nodes.config_applied),
            None => (None, ChangeId::default()),
        };
        let core = Arc::new(Core {
            market: ArcSwap::from_pointee(market),
            postal,
            clock,
            budget,
            buyers: deployment.buyers,
            pings,
            dedup,
            dedup_keying: deployment.dedup_keying,
            idempotency: Idempotency::default(),
            sales: if journal.finds_sales() { Sales::default() } else { Sales::keeping(usize::MAX) },
            returns: Returns::default(),
            outcomes: LeadOutcomes::default(),
            journal,
            pull,
            claims,
            config,
            shared,
        });
        let deliveries = Arc::new(Deliveries::new(Arc::clone(&core)));
        let auction = Arc::new(Auction::new(Arc::clone(&core), Arc::clone(&deliveries)));
        let changes = Arc::new(configure::ChangeLog::new(Arc::clone(&core), Arc::clone(&auction), config_applied));
        let returns = ReturnDesk::new(Arc::clone(&core), Arc::clone(&deliveries), Arc::clone(&changes));
        let accounts = Arc::new(Accounts::new(Arc::clone(&core), changes));
        accounts.publish_market_gauges();
        let retries = Retries::new(Arc::clone(&core));
        let test_sends = TestSends::new(Arc::clone(&core));
        let history = History::new(Arc::clone(&core));
        Router { core, auction, returns, deliveries, accounts, retries, test_sends, history }
    }

    /// Pings, posts, direct and bulk posts.
    pub fn auction(&self) -> &Auction {
        &self.auction
    }

    /// Buyers' returns and operators' decisions on them.
    pub fn returns(&self) -> &ReturnDesk {
        &self.returns
    }

    /// The outbox and pull deliveries.
    pub fn deliveries(&self) -> &Arc<Deliveries> {
        &self.deliveries
    }

    /// Balances, top-ups and admin changes.
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    /// Requests with an `Idempotency-Key`, run once.
    pub fn retries(&self) -> &Retries {
        &self.retries
    }

    /// Buyers' and suppliers' own history (the portal).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Operators' test sends of campaigns' buyer calls.
    pub fn test_sends(&self) -> &TestSends {
        &self.test_sends
    }

    pub fn market(&self) -> Arc<Market> {
        self.core.market()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.core.clock
    }

    /// The postal table leads are located with.
    pub fn postal(&self) -> &'static PostalTable {
        self.core.postal
    }

    pub fn sales(&self) -> &Sales {
        &self.core.sales
    }

    pub fn journal(&self) -> &Arc<dyn Ledger> {
        &self.core.journal
    }

    /// Gives back the budget this node took in advance (leases on Redis); at shutdown.
    pub async fn close_budget(&self) {
        self.core.budget.close().await;
    }

    /// Releases the holds of expired pings and drops expired holds; run about once a second
    /// (holds are also purged lazily whenever their buyer's book is touched).
    pub async fn sweep_holds(&self) {
        let now = self.core.clock.now();
        for hold in self.core.pings.sweep(now) {
            let _ = self.core.budget.release(&hold).await;
        }
        let _ = self.core.budget.expire(now).await;
    }

    /// Forgets dedup keys and idempotency records past their windows (days, hours): a walk
    /// over every record, so it runs about once a minute, not on the request path.
    pub fn sweep_records(&self) {
        self.returns.forget_closed_sales();
        let now = self.core.clock.now();
        let longest_dedup = self.market().campaigns().map(|c| c.campaign.dedup_days).max().unwrap_or(0);
        self.core.dedup.sweep(now, chrono::Duration::days(i64::from(longest_dedup)));
        self.core.idempotency.sweep(now);
    }

    /// Rebuilds state from the journal at start: balances and cap usage, sales, top-up
    /// references. Runs before the listeners open.
    pub async fn replay(&self, events: &[LedgerEvent]) -> Result<(), EngineError> {
        let market = self.market();
        let core = &self.core;
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
                    core.budget.replay_sale(&sale.buyer_id, replayed).await?;
                    let keys: Vec<_> =
                        sale.dedup_keys.iter().filter_map(|k| crate::domain::dedup::from_hex(k)).collect();
                    core.dedup.commit(&sale.buyer_id, &keys, sale.sold_at).await?;
                    core.sales.record(Arc::clone(sale));
                }
                Event::BalanceToppedUp(top_up) => self.accounts.replay_top_up(top_up).await?,
                Event::ReturnResolved(resolved) => self.returns.replay_return(resolved).await?,
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
        let horizon = self.core.clock.now() - chrono::Duration::hours(ports::idempotency::IDEMPOTENCY_TTL_HOURS);
        Restoring {
            router: self,
            horizon,
            outbox: outbox::OutboxReplay::starting_from(self.deliveries.outbox.take_all()),
            awaiting: Vec::new(),
            replayed: std::collections::HashSet::new(),
        }
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

    /// Puts back a first answer journaled less than 24 hours ago.
    fn restore_answer(
        &self,
        party: &str,
        key: &str,
        body_hash: &str,
        answer: KeptAnswer,
        created_at: chrono::DateTime<chrono::Utc>,
    ) {
        let mut hash = [0u8; 32];
        if created_at > self.horizon && hex::decode_to_slice(body_hash, &mut hash).is_ok() {
            self.router.core.idempotency.restore(party, key, hash, answer, created_at);
        }
    }

    /// Takes a record read back without its place (several nodes: no pull leads there).
    pub fn take(&mut self, record: InternalRecord) {
        self.take_at(Location::default(), record);
    }

    /// Takes a record read back from `location`.
    pub fn take_at(&mut self, location: Location, record: InternalRecord) {
        let router = self.router;
        match record {
            InternalRecord::Answer { party, key, body_hash, answer, created_at } => {
                self.restore_answer(&party, &key, &body_hash, answer, created_at)
            }
            InternalRecord::Idempotency { supplier_id, key, body_hash, status, body, created_at } => {
                if let Some(answer) = KeptAnswer::from_http_form(status, body.as_bytes()) {
                    self.restore_answer(&supplier_id, &key, &body_hash, answer, created_at)
                }
            }
            InternalRecord::ExternalId { supplier_id, external_id, lead_id, at } if at > self.horizon => {
                router.core.idempotency.restore_external_id(&supplier_id, &external_id, &lead_id, at);
            }
            InternalRecord::ExternalId { .. } => {}
            InternalRecord::PullAcknowledged { buyer_id, through } => {
                router.core.pull.restore_acknowledged(&buyer_id, through)
            }
            InternalRecord::PullLead { buyer_id, sale_id, position, .. }
                if self.replayed.contains(&sale_id) || router.core.sales.contains(&sale_id) =>
            {
                router.core.pull.restore_lead(&buyer_id, position, location);
            }
            pull @ InternalRecord::PullLead { .. } => self.awaiting.push((location, pull)),
            InternalRecord::ReturnRequested { lead_return, revision } => {
                router.core.returns.put(*lead_return, revision)
            }
            InternalRecord::ConfigChanged { .. } => {}
            outbox @ (InternalRecord::OutboxQueued { .. }
            | InternalRecord::OutboxFailed { .. }
            | InternalRecord::OutboxDelivered { .. }
            | InternalRecord::OutboxDeadLettered { .. }
            | InternalRecord::OutboxRevived { .. }) => {
                let waiting = router.deliveries.replay_outbox_record(&mut self.outbox, outbox, &self.replayed);
                self.awaiting.extend(waiting.map(|record| (location, record)));
            }
        }
    }

    /// Completes the restore; answers the records whose fact was not journaled (a pull
    /// lead or a message announced just before its sale): a checkpoint carries them to
    /// the segments that follow, a start that has read everything drops them.
    pub fn finish(self) -> Vec<(Location, InternalRecord)> {
        self.router.deliveries.restore_outbox(self.outbox);
        self.awaiting
    }
}

/// Counts one ping, post or lead (`*_total{vertical,outcome}`).
fn count(name: &'static str, vertical: &crate::domain::model::Vertical, outcome: &'static str) {
    crate::telemetry::meters::decided(name, &vertical.name, outcome);
}
