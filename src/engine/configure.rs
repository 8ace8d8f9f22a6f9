//! Operators' changes to the market (admin API): checked, written to the `ConfigLog`, and
//! applied from that log in its order, on one node as on several.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, MutexGuard};

use super::accounts::Accounts;
use super::ports::Unavailable;
use super::EngineError;
use crate::domain::ledger::Event;
use crate::domain::market::{ConfigChange, Market};
use crate::telemetry;

/// How often the config log is read even without an announcement.
const CONFIG_POLL_EVERY: Duration = Duration::from_secs(1);

impl Accounts {
    /// Applies an operator's change: checked against the current market (a bad change is a
    /// 4xx and stored nowhere), written to the config log (journaled on one node, shared
    /// with every node on Redis), and applied before the answer, so the operator reads
    /// their own write at once. In-flight decisions keep the market they started with. A
    /// buyer's or supplier's new settings are also journaled as `BuyerUpdated` /
    /// `SupplierUpdated` for ledger consumers.
    pub async fn configure(&self, change: ConfigChange) -> Result<(), EngineError> {
        self.core.ensure_store()?;
        let change = {
            // Held from the check to the swap: this node's changes are checked against the
            // market the change before them made.
            let writer = self.market_writer.lock().await;
            let change = change.keeping_secrets(&self.core.market.load());
            self.core.market.load().apply(&change, self.core.postal)?;
            self.core.config.publish(&change).await?;
            self.apply_config_changes(&writer).await?;
            change
        };
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

    /// Applies every change of the config log as it is announced (or at least once a
    /// second): other nodes' changes, on several nodes.
    pub async fn follow_config(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
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
    /// all nodes keep the same market.
    async fn apply_config_changes(&self, _writer: &MutexGuard<'_, ()>) -> Result<(), Unavailable> {
        let after = *self.config_applied.borrow();
        let changes = self.core.config.after(after).await?;
        let Some((last, _)) = changes.last() else { return Ok(()) };
        let last = *last;
        let mut market: Arc<Market> = self.core.market.load_full();
        for (id, change) in &changes {
            match market.apply(change, self.core.postal) {
                Ok(next) => market = Arc::new(next),
                Err(error) => tracing::warn!(%error, change = %id, "a config change does not apply; skipped"),
            }
        }
        self.core.market.store(market);
        self.publish_market_gauges();
        self.config_applied.send_replace(last);
        self.core.config.applied(last);
        Ok(())
    }

    pub(super) fn publish_market_gauges(&self) {
        let live = self.core.market.load();
        metrics::gauge!(telemetry::CAMPAIGNS_ACTIVE).set(live.active_campaign_count() as f64);
        self.auction.forget_rotations(&live);
    }
}
