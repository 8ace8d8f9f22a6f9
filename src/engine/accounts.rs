//! Accounts and admin: buyers' balances and top-ups, operators' changes to the market and
//! the list of changes (`configure.rs`), operator accounts and their sign-in
//! (`operators.rs`), and the account facts the ledger carries for its consumers.

use std::sync::Arc;

use dashmap::DashMap;

use super::configure::ChangeLog;
use super::core::{publish_available, Core};
use super::{AccountsSaid, EngineError};
use crate::domain::budget::{BalanceView, Funding};
use crate::domain::changes::TopUpNote;
use crate::domain::ledger::{BalanceToppedUp, Event};
use crate::domain::market::ConfigChange;
use crate::domain::model::{BillingMode, FieldError};
use crate::domain::money::{Currency, Money};
use crate::domain::operator::Actor;

pub struct Accounts {
    pub(super) core: Arc<Core>,
    /// The admin change log: changes checked, logged and applied; acts recorded.
    pub(super) changes: Arc<ChangeLog>,
    /// Top-up references booked, per buyer: a retried top-up never credits twice.
    top_up_references: DashMap<(String, String), ()>,
    /// Operators' sign-ins verified at once (each costs ~19 MiB and tens of milliseconds):
    /// a flood of them waits here rather than taking the machine's memory.
    pub(super) verifying: tokio::sync::Semaphore,
}

impl Accounts {
    pub(super) fn new(core: Arc<Core>, changes: Arc<ChangeLog>) -> Accounts {
        Accounts {
            core,
            changes,
            top_up_references: DashMap::new(),
            verifying: tokio::sync::Semaphore::new(super::operators::VERIFYING_AT_ONCE),
        }
    }

    /// Adds money to a buyer's balance once per `reference` (a bank transfer id, say), so an
    /// operator's retried call never credits twice. Recorded in the change log as made by
    /// `by`.
    pub async fn top_up(
        &self,
        buyer_id: &str,
        amount: Money,
        reference: &str,
        by: &Actor,
    ) -> Result<BalanceView, EngineError> {
        let market = self.core.market();
        let buyer = market.buyer(buyer_id).ok_or(EngineError::NotFound("buyer"))?;
        let currency = market.currency_of(buyer_id).ok_or(EngineError::NotFound("buyer"))?;
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
        self.core.ensure_store()?;
        let booked = (buyer_id.to_string(), reference.to_string());
        let duplicate = || EngineError::Conflict {
            code: "duplicate_reference",
            message: "a top-up with this reference was already booked".into(),
        };
        if self.top_up_references.insert(booked.clone(), ()).is_some() {
            return Err(duplicate());
        }
        if let Err(error) = self.core.claim_once(buyer_id, "topup", reference, duplicate).await {
            self.top_up_references.remove(&booked);
            return Err(error);
        }
        let balance_after = match self.core.budget.top_up(buyer_id, amount).await {
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
            currency,
        });
        if let Err(error) = self.core.journal.append(event, self.core.clock.now()).await {
            // Not on disk, so not booked: take the money back out of memory too.
            let _ = self.core.budget.top_up(buyer_id, -amount).await;
            self.release_reference(&booked).await;
            return Err(error.into());
        }
        let note = TopUpNote {
            buyer_id: buyer_id.to_string(),
            amount,
            currency: currency.to_string(),
            reference: reference.to_string(),
        };
        self.changes.note(ConfigChange::TopUp(Box::new(note)), by).await;
        let view = self.core.budget.balance(buyer_id, self.core.clock.now(), Funding::of(buyer)).await?;
        publish_available(buyer_id, view.available);
        Ok(view)
    }

    async fn release_reference(&self, booked: &(String, String)) {
        self.top_up_references.remove(booked);
        self.core.claims.release_once(&booked.0, "topup", &booked.1).await;
    }

    pub async fn balance(&self, buyer_id: &str) -> Result<(BalanceView, Currency), EngineError> {
        let market = self.core.market();
        let buyer = market.buyer(buyer_id).ok_or(EngineError::NotFound("buyer"))?;
        let currency = market.currency_of(buyer_id).ok_or(EngineError::NotFound("buyer"))?;
        let view = self.core.budget.balance(buyer_id, self.core.clock.now(), Funding::of(buyer)).await?;
        Ok((view, currency))
    }

    /// Journals `BuyerUpdated` / `SupplierUpdated` for every account whose billing-relevant
    /// settings differ from what the journal last said (or that it never saw), so a ledger
    /// consumer needs no other source (DESIGN §7).
    pub async fn journal_account_changes(&self, said: &AccountsSaid) -> Result<usize, EngineError> {
        let market = self.core.market();
        let now = self.core.clock.now();
        let mut appended = 0;
        for buyer in &market.config().buyers {
            if said.buyers.get(&buyer.id) != Some(buyer) {
                self.core.journal.append(Event::BuyerUpdated(buyer.clone()), now).await?;
                appended += 1;
            }
        }
        for supplier in &market.config().suppliers {
            if said.suppliers.get(&supplier.id) != Some(supplier) {
                self.core.journal.append(Event::SupplierUpdated(supplier.clone()), now).await?;
                appended += 1;
            }
        }
        Ok(appended)
    }

    /// Puts back a top-up read from the ledger at start, with its reference.
    pub(super) async fn replay_top_up(&self, top_up: &BalanceToppedUp) -> Result<(), EngineError> {
        self.core.budget.top_up(&top_up.buyer_id, top_up.amount).await?;
        self.top_up_references.insert((top_up.buyer_id.clone(), top_up.reference.clone()), ());
        Ok(())
    }

    /// The references booked, for a checkpoint.
    pub(super) fn export_references(&self) -> Vec<(String, String)> {
        self.top_up_references.iter().map(|entry| entry.key().clone()).collect()
    }

    pub(super) fn import_references(&self, references: Vec<(String, String)>) {
        for reference in references {
            self.top_up_references.insert(reference, ());
        }
    }
}
