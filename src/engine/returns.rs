//! Returns (DESIGN §4): a buyer returns a sale, an operator approves or rejects it, the
//! supplier (and, on resolution, the buyer) is told through the outbox.
//!
//! Order of writes, so that a crash at any point leaves nothing half done: notifications
//! are journaled first (restored only if their return is), then the return itself, then
//! memory follows. An approval credits the budget before its `ReturnResolved` is journaled
//! and takes the credit back if the journal refuses, like a top-up.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::configure::ChangeLog;
use super::core::Core;
use super::memory::returns::{Claim, Stored};
use super::outbox::Deliveries;
use super::ports::ledger::InternalRecord;
use super::ports::outbox::{Message, MessageKind, Recipient, Requires};
use super::EngineError;
use crate::domain::changes::ReturnDecisionNote;
use crate::domain::ledger::SaleSettled as Sale;
use crate::domain::ledger::{Event, ReturnResolved};
use crate::domain::market::ConfigChange;
use crate::domain::model::DEFAULT_RETURN_REASONS;
use crate::domain::money::{Currency, Money};
use crate::domain::operator::Actor;
use crate::domain::returns::{self, LeadReturn, ResolveError, ReturnRefusal, ReturnStatus, ReturnTerms};
use crate::ids;
use crate::telemetry;

/// `POST /v1/returns` (and one row of the bulk CSV).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReturnRequest)]
pub struct ReturnInput {
    #[schema(example = "sal_Example0000000000000")]
    pub sale_id: String,
    /// A code from the vertical's `return_reasons`.
    #[schema(example = "invalid_phone")]
    pub reason: String,
    #[serde(default)]
    #[schema(nullable = false, max_length = 1000)]
    pub note: Option<String>,
}

/// Terms for a sale journaled before sales carried their own: the campaign's now, or, if
/// the campaign is gone, a week under an operator's eye.
const FALLBACK_TERMS: ReturnTerms = ReturnTerms { window_days: 7, require_approval: true };
/// Sales stay in memory this long past their return window, then only on disk.
const SALE_KEPT_AFTER_WINDOW: chrono::Duration = chrono::Duration::hours(1);

/// A return as one party sees it (API answers and notifications): the same facts, with
/// the money of that party only.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Return)]
pub struct ReturnView {
    pub return_id: String,
    pub sale_id: String,
    pub lead_id: String,
    pub status: ReturnStatus,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub note: Option<String>,
    #[serde(flatten)]
    pub amounts: ReturnAmounts,
    pub currency: Currency,
    pub sold_at: chrono::DateTime<chrono::Utc>,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resolution_reason: Option<String>,
    /// The buyer's own id of the lead, when its answer rules read one (DESIGN §5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub buyer_reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ReturnAmounts {
    /// What the buyer paid and gets back.
    Buyer { price: Money, credit: Money },
    /// What the supplier earned and gives back; never the buyer's price.
    Supplier { payout: Money, payout_reversed: Money },
}

impl ReturnView {
    pub fn for_buyer(r: &LeadReturn) -> ReturnView {
        ReturnView::of(r, ReturnAmounts::Buyer { price: r.price, credit: r.credit() })
    }

    /// A supplier sees neither the buyer's price nor the buyer's own id of the lead.
    pub fn for_supplier(r: &LeadReturn) -> ReturnView {
        let view =
            ReturnView::of(r, ReturnAmounts::Supplier { payout: r.payout, payout_reversed: r.payout_reversed() });
        ReturnView { buyer_reference: None, ..view }
    }

    fn of(r: &LeadReturn, amounts: ReturnAmounts) -> ReturnView {
        ReturnView {
            return_id: r.return_id.clone(),
            sale_id: r.sale_id.clone(),
            lead_id: r.lead_id.clone(),
            status: r.status,
            reason: r.reason.clone(),
            note: r.note.clone(),
            amounts,
            currency: r.currency,
            sold_at: r.sold_at,
            requested_at: r.requested_at,
            resolved_at: r.resolved_at,
            resolution_reason: r.resolution_reason.clone(),
            buyer_reference: r.buyer_reference.clone(),
        }
    }
}

impl From<ReturnRefusal> for EngineError {
    fn from(refusal: ReturnRefusal) -> EngineError {
        match refusal {
            ReturnRefusal::Invalid(errors) => EngineError::Invalid(errors),
            ReturnRefusal::WindowClosed { closes_at } => EngineError::Refused {
                code: "return_window_closed",
                message: format!("the return window of this sale closed at {}", closes_at.to_rfc3339()),
            },
        }
    }
}

/// Returns of sales, requested by buyers and decided by operators.
pub struct ReturnDesk {
    pub(super) core: Arc<Core>,
    /// Where notifications are queued.
    deliveries: Arc<Deliveries>,
    /// Orders operators' return decisions with each other (never taken on the hot path).
    resolving: tokio::sync::Mutex<()>,
    /// Where operators' decisions are recorded with who made them.
    changes: Arc<ChangeLog>,
}

impl ReturnDesk {
    pub(super) fn new(core: Arc<Core>, deliveries: Arc<Deliveries>, changes: Arc<ChangeLog>) -> ReturnDesk {
        ReturnDesk { core, deliveries, resolving: tokio::sync::Mutex::new(()), changes }
    }

    /// A sale by id, wherever it is kept (the admin API and tests look sales up here).
    pub async fn sale(&self, sale_id: &str) -> Result<Option<Sale>, EngineError> {
        self.core.sale(sale_id).await
    }

    /// The next revision of a return (its place in the supplier feed): one counter for all
    /// nodes.
    async fn next_return_revision(&self) -> Result<u64, EngineError> {
        match self.core.claims.next_number("return_revision").await? {
            Some(number) => Ok(number),
            None => Ok(self.core.returns.next_revision()),
        }
    }

    /// A buyer returns one of its sales: pending until an operator decides, or approved at
    /// once when the sale's terms say so.
    pub async fn request_return(&self, buyer_id: &str, input: ReturnInput) -> Result<LeadReturn, EngineError> {
        // Another buyer's sale is as unknown as one that never existed.
        let sale = self.core.sale(&input.sale_id).await?.filter(|sale| sale.buyer_id == buyer_id);
        let sale = sale.ok_or(EngineError::NotFound("sale"))?;
        let market = self.core.market();
        let terms = self.return_terms(&market, &sale);
        let reasons = match market.vertical(&sale.vertical) {
            Some(vertical) => vertical.return_reasons(),
            None => DEFAULT_RETURN_REASONS.iter().map(|r| r.to_string()).collect(),
        };
        let now = self.core.clock.now();
        returns::check_request(&sale, terms, &reasons, &input.reason, input.note.as_deref(), now)?;
        let already =
            || EngineError::Conflict { code: "already_returned", message: "this sale already has a return".into() };
        if self.core.returns.claim(&sale.sale_id) == Claim::Taken {
            return Err(already());
        }
        // On several nodes the claim must hold on all of them.
        if let Err(error) = self.core.claim_once(buyer_id, "return", &sale.sale_id, already).await {
            self.core.returns.unclaim(&sale.sale_id);
            return Err(error);
        }
        let opened = returns::open(ids::new_id("ret"), &sale, terms, input.reason, input.note, now);
        let recorded = match opened.status {
            ReturnStatus::Pending => self.record_request(&opened).await,
            _ => self.record_resolution(&opened, true).await,
        };
        if recorded.is_err() {
            self.core.returns.unclaim(&sale.sale_id);
            self.core.claims.release_once(buyer_id, "return", &sale.sale_id).await;
        }
        recorded?;
        Ok(opened)
    }

    /// An operator approves or rejects a pending return (`reason` is required to reject).
    pub async fn resolve_return(
        &self,
        return_id: &str,
        approve: bool,
        reason: Option<String>,
        by: &Actor,
    ) -> Result<LeadReturn, EngineError> {
        // Decisions are rare; one at a time makes "approved twice" impossible.
        let _one_at_a_time = self.resolving.lock().await;
        let pending = self.core.returns.get(return_id).ok_or(EngineError::NotFound("return"))?.lead_return;
        let resolved =
            returns::resolve(&pending, approve, reason, self.core.clock.now()).map_err(|error| match error {
                ResolveError::NotPending(status) => EngineError::Conflict {
                    code: "return_already_resolved",
                    message: format!("the return is already {status}"),
                },
                ResolveError::Invalid(errors) => EngineError::Invalid(errors),
            })?;
        // On several nodes the same return may be decided on another node at this moment.
        let decided = || EngineError::Conflict {
            code: "return_already_resolved",
            message: "the return was already resolved on another node".into(),
        };
        self.core.claim_once(&pending.buyer_id, "resolved", return_id, decided).await?;
        if let Err(error) = self.record_resolution(&resolved, false).await {
            self.core.claims.release_once(&pending.buyer_id, "resolved", return_id).await;
            return Err(error);
        }
        let note = ReturnDecisionNote {
            return_id: return_id.to_string(),
            approved: approve,
            reason: resolved.resolution_reason.clone(),
        };
        self.changes.note(ConfigChange::ReturnDecision(Box::new(note)), by).await;
        Ok(resolved)
    }

    pub fn buyer_return(&self, buyer_id: &str, return_id: &str) -> Result<LeadReturn, EngineError> {
        self.core
            .returns
            .get(return_id)
            .map(|stored| stored.lead_return)
            .filter(|r| r.buyer_id == buyer_id)
            .ok_or(EngineError::NotFound("return"))
    }

    pub fn buyer_returns(&self, buyer_id: &str, status: Option<ReturnStatus>, after: u64, limit: usize) -> Vec<Stored> {
        self.core.returns.of_buyer(buyer_id, status, after, limit)
    }

    pub fn supplier_returns(&self, supplier_id: &str, after: u64, limit: usize) -> Vec<Stored> {
        self.core.returns.of_supplier(supplier_id, after, limit)
    }

    pub fn returns_with_status(&self, status: ReturnStatus, after: u64, limit: usize) -> Vec<Stored> {
        self.core.returns.with_status(status, after, limit)
    }

    /// The return of a sale, if it has one.
    pub fn return_of_sale(&self, sale_id: &str) -> Option<LeadReturn> {
        self.core.returns.of_sale(sale_id).map(|stored| stored.lead_return)
    }

    pub fn any_return(&self, return_id: &str) -> Option<LeadReturn> {
        self.core.returns.get(return_id).map(|stored| stored.lead_return)
    }

    /// Journals a pending return (and the supplier's `return.requested` before it).
    async fn record_request(&self, pending: &LeadReturn) -> Result<(), EngineError> {
        let messages = self.notify(pending, "return.requested", Requires::Return(pending.return_id.clone())).await?;
        let revision = self.next_return_revision().await?;
        let record = InternalRecord::ReturnRequested { lead_return: Box::new(pending.clone()), revision };
        self.core.journal.append_internal(record).await?;
        self.core.returns.put(pending.clone(), revision);
        metrics::counter!(telemetry::RETURNS_TOTAL, "status" => "pending").increment(1);
        self.deliveries.send_later(messages);
        Ok(())
    }

    /// Journals a resolution as the ledger's `ReturnResolved`, crediting the buyer when it
    /// is an approval. `fresh`: the return is new (approved on request), so the supplier
    /// also hears that it was requested.
    async fn record_resolution(&self, resolved: &LeadReturn, fresh: bool) -> Result<(), EngineError> {
        let mut event = resolved.resolved_event().ok_or(EngineError::Unavailable("return not resolved".into()))?;
        let requires = Requires::ResolvedReturn(resolved.return_id.clone());
        let mut messages = Vec::new();
        if fresh {
            messages.extend(self.notify(resolved, "return.requested", requires.clone()).await?);
        }
        messages.extend(self.notify(resolved, "return.resolved", requires).await?);
        let credit = event.credit;
        if !credit.is_zero() {
            self.core.budget.top_up(&resolved.buyer_id, credit).await?;
        }
        event.revision = match self.next_return_revision().await {
            Ok(revision) => revision,
            Err(error) => {
                if !credit.is_zero() {
                    let _ = self.core.budget.top_up(&resolved.buyer_id, -credit).await;
                }
                return Err(error);
            }
        };
        if let Err(error) = self.core.journal.append(Event::ReturnResolved(event.clone()), self.core.clock.now()).await
        {
            if !credit.is_zero() {
                // Not on disk, so not booked: take the credit back out of memory too.
                let _ = self.core.budget.top_up(&resolved.buyer_id, -credit).await;
            }
            return Err(error.into());
        }
        self.core.returns.put(resolved.clone(), event.revision);
        if let Some(campaign) = self.core.market().campaign(&resolved.campaign_id) {
            self.core.publish_balance(&resolved.buyer_id, campaign.funding).await;
        }
        metrics::counter!(telemetry::RETURNS_TOTAL, "status" => resolved.status.as_str()).increment(1);
        self.deliveries.send_later(messages);
        Ok(())
    }

    /// Journals the notifications of `event` (`return.requested` to the supplier;
    /// `return.resolved` to the supplier and the buyer) for whoever has a `notify_url`.
    async fn notify(&self, r: &LeadReturn, event: &str, requires: Requires) -> Result<Vec<Message>, EngineError> {
        let market = self.core.market();
        let mut messages = Vec::new();
        if let Some(supplier) = market.supplier(&r.supplier_id) {
            if let (Some(url), Some(_)) = (&supplier.notify_url, &supplier.webhook_secret) {
                let body = serde_json::json!({"type": event, "return": ReturnView::for_supplier(r)}).to_string();
                let recipient = Recipient::Supplier(supplier.id.clone());
                messages.push(self.queue_notification(recipient, url, body, requires.clone()).await?);
            }
        }
        if event == "return.resolved" {
            if let Some(url) = market.buyer(&r.buyer_id).and_then(|buyer| buyer.notify_url.clone()) {
                let body = serde_json::json!({"type": event, "return": ReturnView::for_buyer(r)}).to_string();
                let recipient = Recipient::Buyer(r.buyer_id.clone());
                messages.push(self.queue_notification(recipient, &url, body, requires).await?);
            }
        }
        Ok(messages)
    }

    async fn queue_notification(
        &self,
        recipient: Recipient,
        url: &str,
        body: String,
        requires: Requires,
    ) -> Result<Message, EngineError> {
        let timeout_ms = super::outbox::DELIVERY_TIMEOUT_DEFAULT_MS;
        let payload = super::outbox::Payload::native(url, body);
        self.deliveries.queue_message(MessageKind::Notification, recipient, payload, timeout_ms, requires).await
    }

    /// The return terms a sale was made with (the campaign's today for sales journaled
    /// before terms were).
    fn return_terms(&self, market: &crate::domain::market::Market, sale: &Sale) -> ReturnTerms {
        sale.return_terms
            .or_else(|| market.campaign(&sale.campaign_id).map(|c| ReturnTerms::of(&c.campaign)))
            .unwrap_or(FALLBACK_TERMS)
    }

    /// Forgets sales whose return window closed more than `SALE_KEPT_AFTER_WINDOW` ago (a
    /// late return still gets `return_window_closed`, from the sale on disk).
    pub(super) fn forget_closed_sales(&self) -> usize {
        if !self.core.journal.finds_sales() {
            // Then memory is where sales are looked up (several nodes: a mirror of the
            // shared ledger).
            return 0;
        }
        let market = self.core.market();
        let horizon = self.core.clock.now() - SALE_KEPT_AFTER_WINDOW;
        self.core.sales.retain(|sale| self.return_terms(&market, sale).closes_at(sale.sold_at) > horizon)
    }

    /// Puts back a resolved return read from the ledger at start, with its credit.
    pub(super) async fn replay_return(&self, event: &ReturnResolved) -> Result<(), EngineError> {
        if !event.credit.is_zero() {
            self.core.budget.top_up(&event.buyer_id, event.credit).await?;
        }
        let sale = match self.core.sales.get(&event.sale_id) {
            Some(sale) => Some(sale),
            None => self
                .core
                .journal
                .find_sale(&event.sale_id)
                .map_err(|e| EngineError::Unavailable(e.to_string()))?
                .map(Arc::new),
        };
        // A return pending for longer than retention kept its sale's segment still knows
        // the sale's terms itself.
        let pending = || self.core.returns.get(&event.return_id).map(|stored| stored.lead_return.resolved_by(event));
        match sale {
            Some(sale) => self.core.returns.put(LeadReturn::from_event(event, &sale), event.revision),
            None if let Some(resolved) = pending() => self.core.returns.put(resolved, event.revision),
            // Cannot happen (a return is only taken for a journaled sale); the credit stands.
            None => {
                tracing::error!(return_id = %event.return_id, sale_id = %event.sale_id, "a return's sale is not in the journal")
            }
        }
        Ok(())
    }
}
