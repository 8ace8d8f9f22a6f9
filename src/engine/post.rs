//! `POST /v1/post` (the full lead for an earlier ping), `POST /v1/leads` (direct post:
//! decide and deliver in one call) and `POST /v1/leads/bulk` (many direct posts).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use tokio::time::Instant;

use super::answers;
use super::auction::Auction;
use super::decide::{Decision, Lot, Misses, Sold, HOLD_GRACE};
use super::memory::outcomes::LeadOutcome;
use super::ping::vertical_of;
use super::ports::pings::{PingContext, PingError};
use super::{count, EngineError, LeadAnswer};
use crate::domain::budget::HoldScope;
use crate::domain::eligibility::Subject;
use crate::domain::lead::{validate_lead, LeadInput, ValidLead};
use crate::domain::market::Market;
use crate::domain::model::{FieldError, Supplier};
use crate::domain::money::Money;
use crate::domain::trace::Trace;
use crate::ids;
use crate::telemetry;

/// Rows of one bulk file decided at once: enough to hide buyer latency, few enough that
/// one supplier's file cannot crowd out live traffic.
pub const BULK_CONCURRENCY: usize = 16;

/// `POST /v1/post`: the full lead for an earlier ping.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = Post)]
pub struct PostInput {
    #[schema(required, nullable = false, example = "png_Example0000000000000")]
    pub ping_id: Option<String>,
    #[schema(required, nullable = false)]
    pub lead: Option<LeadInput>,
}

impl Auction {
    pub async fn post(&self, supplier_id: &str, input: PostInput) -> Result<LeadAnswer, EngineError> {
        let started = Instant::now();
        let now = self.core.clock.now();
        let Some(ping_id) = input.ping_id.filter(|id| !id.is_empty()) else {
            return Err(EngineError::Invalid(vec![FieldError::new("ping_id", "required")]));
        };
        let Some(lead_input) = input.lead else {
            return Err(EngineError::Invalid(vec![FieldError::new("lead", "required")]));
        };
        self.core.ensure_store()?;
        let market = self.core.market();
        let mut ctx =
            self.core.pings.begin_post(&ping_id, supplier_id, now, &market).await?.map_err(|error| match error {
                PingError::NotFound => EngineError::NotFound("ping"),
                PingError::Expired => EngineError::PingExpired,
                PingError::AlreadyPosted => EngineError::Conflict {
                    code: "ping_already_posted",
                    message: "this ping was already posted".into(),
                },
            })?;
        for hold in std::mem::take(&mut ctx.orphaned) {
            let _ = self.core.budget.release(&hold).await;
        }
        let prepared = self.prepare_post(&market, supplier_id, &ctx, lead_input, now).await;
        let (supplier, lead, lead_id) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                // Bad input changes nothing: the ping can still be posted.
                self.core.pings.reopen(&ping_id).await;
                count(telemetry::POSTS_TOTAL, &ctx.vertical, "invalid");
                count(telemetry::LEADS_TOTAL, &ctx.vertical, "invalid");
                return Err(error);
            }
        };

        let mut trace =
            Trace::new(lead_id.clone(), "lead", ctx.vertical.name.clone(), ctx.vertical.model.as_str(), now);
        if let Some(ping_trace) = self.traces.get(&ping_id) {
            trace.entries = ping_trace.entries.clone();
        }
        let mut d = Decision {
            market,
            vertical: Arc::clone(&ctx.vertical),
            supplier,
            trace,
            deadline: started + Duration::from_millis(ctx.vertical.tmax_ms),
            started,
            ping_tokens: std::mem::take(&mut ctx.ping_tokens),
        };
        let lot = Lot { lead: &lead, lead_id: &lead_id, ping_id: &ping_id };
        let cursor = ctx.held.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
        let hold_expires_at = now + chrono::Duration::milliseconds(ctx.vertical.tmax_ms as i64) + HOLD_GRACE;
        let mut misses = Misses { eligible: ctx.held.len(), ..Misses::default() };
        let sold = self.sell(&mut d, &lot, &mut ctx.offers, ctx.held, cursor, hold_expires_at, &mut misses).await;
        self.core.pings.finish_post(&ping_id).await;
        let answer = finish(&mut d, lead_id, sold?, &misses);
        // A post carries a whole lead: it counts as a lead too (`leads_total` is every
        // lead decided, however it came; `posts_total` the ones that came after a ping).
        count(telemetry::POSTS_TOTAL, &d.vertical, answer.status);
        count(telemetry::LEADS_TOTAL, &d.vertical, answer.status);
        self.record_outcome(supplier_id, &lead, &d.vertical.name, now, &answer);
        self.traces.put(d.trace);
        Ok(answer)
    }

    pub async fn direct(&self, supplier_id: &str, input: LeadInput) -> Result<LeadAnswer, EngineError> {
        let started = Instant::now();
        let now = self.core.clock.now();
        let market = self.core.market();
        let supplier = Arc::clone(market.supplier(supplier_id).ok_or(EngineError::NotFound("supplier"))?);
        let vertical = vertical_of(&market, input.vertical.as_deref())?;
        let lead = validate_lead(input, &vertical, self.core.postal).map_err(|errors| {
            count(telemetry::LEADS_TOTAL, &vertical, "invalid");
            EngineError::Invalid(errors)
        })?;
        self.core.ensure_store()?;
        let lead_id = ids::lead_id();
        self.claim_external_id(supplier_id, &lead, &lead_id, now).await?;
        let ping_id = ids::ping_id();
        let tmax = Duration::from_millis(vertical.tmax_ms);
        let mut d = Decision {
            trace: Trace::new(lead_id.clone(), "lead", vertical.name.clone(), vertical.model.as_str(), now),
            market,
            vertical: Arc::clone(&vertical),
            supplier,
            deadline: started + tmax,
            started,
            ping_tokens: Vec::new(),
        };
        // Live bids may take half the budget; delivery needs the rest.
        let bid_deadline = started + tmax / 2;
        let anonymous = lead.anonymized();
        let subject = Subject::of_lead(supplier_id, &lead);
        let mut misses = Misses::default();
        let market = Arc::clone(&d.market);
        let mut offers =
            self.gather_offers(&mut d, &market, &subject, (&ping_id, &anonymous), bid_deadline, now, &mut misses).await;

        let hold_expires_at = now + chrono::Duration::milliseconds(vertical.tmax_ms as i64) + HOLD_GRACE;
        let mut taken = HashSet::new();
        let mut cursor = 0;
        let wanted = vertical.max_winners as usize;
        let scope = HoldScope::Request;
        let batch = self
            .hold_winners(&mut d, &mut offers, &mut cursor, &mut taken, wanted, now, hold_expires_at, scope)
            .await?;
        let lot = Lot { lead: &lead, lead_id: &lead_id, ping_id: &ping_id };
        let sales = self.sell(&mut d, &lot, &mut offers, batch, cursor, hold_expires_at, &mut misses).await?;
        let answer = finish(&mut d, lead_id, sales, &misses);
        count(telemetry::LEADS_TOTAL, &vertical, answer.status);
        self.record_outcome(supplier_id, &lead, &vertical.name, now, &answer);
        telemetry::meters::decision_time(&vertical.name, vertical.model.as_str(), d.started.elapsed().as_secs_f64());
        self.traces.put(d.trace);
        Ok(answer)
    }

    /// Keeps what became of the lead for its supplier's portal.
    fn record_outcome(
        &self,
        supplier_id: &str,
        lead: &ValidLead,
        vertical: &str,
        at: chrono::DateTime<chrono::Utc>,
        answer: &LeadAnswer,
    ) {
        let outcome = LeadOutcome {
            lead_id: answer.lead_id.clone(),
            external_id: lead.external_id().map(str::to_string),
            vertical: vertical.to_string(),
            at,
            status: answer.status,
            reason: answer.reason,
            payout: answer.payout.zip(answer.currency),
        };
        self.core.outcomes.record(supplier_id, outcome);
    }

    /// Decides every row as `direct` would, in order; a bad row never blocks good ones.
    pub async fn bulk(
        &self,
        supplier_id: &str,
        rows: Vec<Result<LeadInput, Vec<FieldError>>>,
    ) -> Vec<Result<LeadAnswer, EngineError>> {
        futures::stream::iter(rows)
            .map(|row| async move {
                match row {
                    Ok(input) => self.direct(supplier_id, input).await,
                    Err(errors) => Err(EngineError::Invalid(errors)),
                }
            })
            .buffered(BULK_CONCURRENCY)
            .collect()
            .await
    }

    /// Everything a post checks before it may sell: the supplier, the lead, its match with
    /// the ping, and its external id.
    async fn prepare_post(
        &self,
        market: &Market,
        supplier_id: &str,
        ctx: &PingContext,
        input: LeadInput,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Arc<Supplier>, ValidLead, String), EngineError> {
        let supplier = Arc::clone(market.supplier(supplier_id).ok_or(EngineError::NotFound("supplier"))?);
        let lead = validate_lead(input, &ctx.vertical, self.core.postal).map_err(EngineError::Invalid)?;
        lead.matches_ping(&ctx.ping).map_err(EngineError::Invalid)?;
        let lead_id = ids::lead_id();
        self.claim_external_id(supplier_id, &lead, &lead_id, now).await?;
        Ok((supplier, lead, lead_id))
    }

    /// Claims the lead's external id for its supplier, durably: a retry after a crash still
    /// finds it taken.
    async fn claim_external_id(
        &self,
        supplier_id: &str,
        lead: &ValidLead,
        lead_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), EngineError> {
        let Some(external_id) = lead.external_id() else {
            return Ok(());
        };
        self.core.idempotency.claim_external_id(supplier_id, external_id, lead_id, now).map_err(|existing| {
            EngineError::Conflict {
                code: "duplicate_external_id",
                message: format!("external_id was already used for lead {existing}"),
            }
        })?;
        // Taken on every node at once, and kept for its 24 hours across restarts.
        self.core.claims.claim_external_id(supplier_id, external_id, lead_id).await?.map_err(|existing| {
            EngineError::Conflict {
                code: "duplicate_external_id",
                message: format!("external_id was already used for lead {existing}"),
            }
        })
    }
}

fn finish(d: &mut Decision, lead_id: String, sales: Vec<Sold>, misses: &Misses) -> LeadAnswer {
    let answer = match sales.first() {
        Some(first) => LeadAnswer {
            lead_id,
            status: answers::SOLD,
            payout: Some(sales.iter().map(|s| s.payout).sum::<Money>()),
            currency: Some(first.currency),
            reason: None,
        },
        None => LeadAnswer::rejected(lead_id, misses.reason()),
    };
    d.trace.status = answer.status.to_string();
    d.trace.reason = answer.reason.map(str::to_string);
    answer
}
