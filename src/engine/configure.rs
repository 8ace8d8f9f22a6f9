//! Operators' changes to the market (admin API): checked, written to the `ConfigLog`, and
//! applied from that log in its order, on one node as on several. Every entry carries who
//! made it and when (`Actor`); top-ups and return decisions are recorded in the same log
//! beside the changes (they change no configuration), so that one list shows every admin
//! change (`Accounts::changes`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, MutexGuard};

use super::accounts::Accounts;
use super::auction::Auction;
use super::core::Core;
use super::ports::{ChangeId, Unavailable};
use super::EngineError;
use crate::domain::changes::{AdminChange, ChangeSummary};
use crate::domain::ledger::Event;
use crate::domain::market::{ConfigChange, Market};
use crate::domain::operator::Actor;
use crate::telemetry;

/// How often the config log is read even without an announcement.
const CONFIG_POLL_EVERY: Duration = Duration::from_secs(1);

/// The engine's side of the admin change log: what writes to it and applies it. Shared by
/// the services that make admin changes (accounts, the return desk).
pub(super) struct ChangeLog {
    core: Arc<Core>,
    /// Whose rotations an admin change may leave with campaigns that are gone.
    auction: Arc<Auction>,
    /// Admin changes are rare and build a whole market; this lock orders them with each
    /// other and with their journal records. The hot path never takes it.
    market_writer: tokio::sync::Mutex<()>,
    /// How far this node has applied the config log.
    config_applied: watch::Sender<ChangeId>,
}

impl ChangeLog {
    pub(super) fn new(core: Arc<Core>, auction: Arc<Auction>, config_applied: ChangeId) -> ChangeLog {
        ChangeLog {
            core,
            auction,
            market_writer: tokio::sync::Mutex::new(()),
            config_applied: watch::channel(config_applied).0,
        }
    }

    /// Checks `change` against the current market (a bad change is a 4xx and stored
    /// nowhere), writes it to the log with `by` and now, and applies it before answering.
    /// Answers the change as logged (secrets sent back as `***` replaced by the stored ones).
    async fn configure(&self, change: ConfigChange, by: &Actor) -> Result<ConfigChange, EngineError> {
        // Held from the check to the swap: this node's changes are checked against the
        // market the change before them made.
        let writer = self.market_writer.lock().await;
        let change = change.keeping_secrets(&self.core.market.load());
        if change.changes_market() {
            self.core.market.load().apply(&change, self.core.postal)?;
        }
        let entry = AdminChange::new(change, by.clone(), self.core.clock.now());
        self.core.config.publish(&entry).await?;
        self.apply_config_changes(&writer).await?;
        Ok(entry.change)
    }

    /// Records an admin act that changes no configuration (a top-up, a return decision),
    /// once it has been made. Should the log refuse, the act stands (it is on the ledger)
    /// and is missing from the list of changes: said in a warning, never failed.
    pub(super) async fn note(&self, change: ConfigChange, by: &Actor) {
        debug_assert!(!change.changes_market());
        let entry = AdminChange::new(change, by.clone(), self.core.clock.now());
        let writer = self.market_writer.lock().await;
        let noted = match self.core.config.publish(&entry).await {
            Ok(_) => self.apply_config_changes(&writer).await,
            Err(error) => Err(error),
        };
        if let Err(error) = noted {
            let shown = entry.summary();
            tracing::warn!(%error, kind = shown.kind, object = %shown.object, "an admin change could not be recorded in the change log");
        }
    }

    /// Applies every change of the config log as it is announced (or at least once a
    /// second): other nodes' changes, on several nodes.
    async fn follow(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut announced = self.core.config.announcements();
        let mut tick = tokio::time::interval(CONFIG_POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = announced.changed() => {}
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            let writer = self.market_writer.lock().await;
            if let Err(error) = self.apply_config_changes(&writer).await {
                tracing::warn!(%error, "config changes: cannot read the config log; retrying");
            }
        }
    }

    /// Reads the config log past what this node applied and applies it in order (the
    /// caller holds the market writer). A change that no longer applies (a concurrent
    /// change on another node removed what it needs) is skipped on every node alike, so
    /// all nodes keep the same market. Entries that change no configuration build no market.
    async fn apply_config_changes(&self, _writer: &MutexGuard<'_, ()>) -> Result<(), Unavailable> {
        let after = *self.config_applied.borrow();
        let changes = self.core.config.after(after).await?;
        let Some((last, _)) = changes.last() else { return Ok(()) };
        let last = *last;
        let mut market: Arc<Market> = self.core.market.load_full();
        let mut changed = false;
        for (id, entry) in changes.iter().filter(|(_, entry)| entry.change.changes_market()) {
            match market.apply(&entry.change, self.core.postal) {
                Ok(next) => {
                    market = Arc::new(next);
                    changed = true;
                }
                Err(error) => tracing::warn!(%error, change = %id, "a config change does not apply; skipped"),
            }
        }
        if changed {
            self.core.market.store(market);
            self.publish_market_gauges();
        }
        self.config_applied.send_replace(last);
        self.core.config.applied(last);
        Ok(())
    }

    pub(super) fn publish_market_gauges(&self) {
        let live = self.core.market.load();
        metrics::gauge!(telemetry::CAMPAIGNS_ACTIVE).set(live.active_campaign_count() as f64);
        self.auction.forget_rotations(&live);
    }

    /// The list of changes: at most `limit` before `before`, newest first.
    async fn history(
        &self,
        before: Option<ChangeId>,
        limit: usize,
    ) -> Result<Vec<(ChangeId, ChangeSummary)>, EngineError> {
        Ok(self.core.config.history(before, limit).await?)
    }
}

impl Accounts {
    /// Applies an operator's change: checked against the current market (a bad change is a
    /// 4xx and stored nowhere), written to the config log with who made it (journaled on
    /// one node, shared with every node on Redis), and applied before the answer, so the
    /// operator reads their own write at once. In-flight decisions keep the market they
    /// started with. A buyer's or supplier's new settings are also journaled as
    /// `BuyerUpdated` / `SupplierUpdated` for ledger consumers.
    pub async fn configure(&self, change: ConfigChange, by: &Actor) -> Result<(), EngineError> {
        self.core.ensure_store()?;
        let change = self.changes.configure(change, by).await?;
        let account = match change {
            ConfigChange::PutBuyer(buyer) => Event::BuyerUpdated(*buyer),
            ConfigChange::PutSupplier(supplier) => Event::SupplierUpdated(*supplier),
            _ => return Ok(()),
        };
        // Should this fail, the next start journals the account again (it differs from what
        // the ledger last said): consumers see it late, never never.
        self.core.journal.append(account, self.core.clock.now()).await?;
        Ok(())
    }

    /// A buyer pauses (`active` false) or resumes one of its own campaigns: the same admin
    /// change an operator would make, journaled as the buyer's. Another buyer's campaign is
    /// not found.
    pub async fn set_campaign_active(
        &self,
        buyer_id: &str,
        campaign_id: &str,
        active: bool,
        by: &Actor,
    ) -> Result<(), EngineError> {
        let market = self.core.market();
        let campaign = market.config().campaigns.iter().find(|c| c.id == campaign_id && c.buyer_id == buyer_id);
        let mut campaign = campaign.cloned().ok_or(EngineError::NotFound("campaign"))?;
        if campaign.active == active {
            return Ok(());
        }
        campaign.active = active;
        self.configure(ConfigChange::PutCampaign(Box::new(campaign)), by).await
    }

    /// Applies every change of the config log as it is announced (or at least once a
    /// second): other nodes' changes, on several nodes.
    pub async fn follow_config(self: Arc<Self>, stopped: watch::Receiver<bool>) {
        Arc::clone(&self.changes).follow(stopped).await
    }

    /// Every admin change, newest first: at most `limit` made before the change `before`
    /// (an id from an earlier page; from the newest without it), each with its id, who made
    /// it and when, its kind, object and a summary without secrets.
    pub async fn changes(&self, before: Option<&str>, limit: usize) -> Result<Vec<ChangeView>, EngineError> {
        let before = match before {
            None => None,
            Some(text) => Some(ChangeId::parse(text).ok_or_else(|| {
                EngineError::Invalid(vec![crate::domain::model::FieldError::new(
                    "before",
                    "an id from the list of changes",
                )])
            })?),
        };
        let page = self.changes.history(before, limit).await?;
        Ok(page.into_iter().map(|(id, summary)| ChangeView { id: id.to_string(), summary }).collect())
    }

    pub(super) fn publish_market_gauges(&self) {
        self.changes.publish_market_gauges();
    }
}

/// An entry of the list of changes, with its id.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChangeView {
    pub id: String,
    #[serde(flatten)]
    pub summary: ChangeSummary,
}
