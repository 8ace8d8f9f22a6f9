//! `POST /v1/ping`: decide on an anonymous lead, hold the winners, answer the offer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::answers;
use super::auction::Auction;
use super::decide::{Decision, Misses, HOLD_GRACE};
use super::ports::pings::{NotStored, PingContext};
use super::{count, EngineError, PingAnswer};
use crate::domain::budget::HoldScope;
use crate::domain::eligibility::Subject;
use crate::domain::lead::{validate_ping, PingInput};
use crate::domain::market::Market;
use crate::domain::model::{FieldError, Vertical};
use crate::domain::money::Money;
use crate::domain::payout::supplier_payout;
use crate::domain::trace::Trace;
use crate::ids;
use crate::telemetry;

/// Time kept back from `tmax_ms` to write the answer after the last buyer's bid.
const ANSWER_MARGIN: Duration = Duration::from_millis(5);

impl Auction {
    pub async fn ping(&self, supplier_id: &str, input: PingInput) -> Result<PingAnswer, EngineError> {
        let started = Instant::now();
        let now = self.core.clock.now();
        let market = self.core.market();
        let supplier = Arc::clone(market.supplier(supplier_id).ok_or(EngineError::NotFound("supplier"))?);
        let vertical = vertical_of(&market, input.vertical.as_deref())?;
        let ping = validate_ping(input, &vertical, self.core.postal).map_err(|errors| {
            count(telemetry::PINGS_TOTAL, &vertical, "invalid");
            EngineError::Invalid(errors)
        })?;
        self.core.ensure_store()?;
        let ping_id = ids::ping_id();
        let deadline = started + Duration::from_millis(vertical.tmax_ms);
        let mut d = Decision {
            trace: Trace::new(ping_id.clone(), "ping", vertical.name.clone(), vertical.model.as_str(), now),
            market: Arc::clone(&market),
            vertical: Arc::clone(&vertical),
            supplier,
            deadline,
            started,
            ping_tokens: Vec::new(),
        };
        let subject = Subject::of_ping(supplier_id, &ping);
        let mut misses = Misses::default();
        let bid_deadline = deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline);
        // Every offer, in order: a ping's context keeps them all for its post.
        let mut offers = self
            .gather_offers(&mut d, &market, &subject, (&ping_id, &ping), bid_deadline, now, &mut misses)
            .await
            .into_offers();

        let expires_at = now + chrono::Duration::seconds(vertical.ping_ttl_s as i64);
        let hold_expires_at = expires_at + chrono::Duration::milliseconds(vertical.tmax_ms as i64) + HOLD_GRACE;
        let mut taken = HashSet::new();
        let mut cursor = 0;
        let wanted = vertical.max_winners as usize;
        let held = self
            .hold_winners(&mut d, &mut offers, &mut cursor, &mut taken, wanted, now, hold_expires_at, HoldScope::Ping)
            .await?;
        let answer = if held.is_empty() {
            let reason = if misses.eligible == 0 { answers::NO_ELIGIBLE_BUYER } else { answers::NO_BIDS };
            PingAnswer {
                ping_id: ping_id.clone(),
                status: answers::NO_BID,
                payout: None,
                currency: None,
                expires_at: None,
                reason: Some(reason),
            }
        } else {
            let payout: Money = held.iter().map(|(i, _)| supplier_payout(&d.supplier.payout, offers[*i].price)).sum();
            let currency = held.first().map(|(i, _)| offers[*i].bid.campaign.currency);
            PingAnswer {
                ping_id: ping_id.clone(),
                status: answers::BID,
                payout: Some(payout),
                currency,
                expires_at: Some(expires_at),
                reason: None,
            }
        };
        if !held.is_empty() {
            // Stored before the offer is answered, so its post finds it on any node.
            let context = PingContext {
                ping_id,
                supplier_id: supplier_id.to_string(),
                vertical: Arc::clone(&vertical),
                ping,
                offers,
                held,
                ping_tokens: std::mem::take(&mut d.ping_tokens),
                created_at: now,
                expires_at,
                orphaned: Vec::new(),
            };
            if let Err(NotStored { error, context }) = self.core.pings.put(context).await {
                for (_, hold) in &context.held {
                    let _ = self.core.budget.release(hold).await;
                }
                return Err(error.into());
            }
        }
        count(telemetry::PINGS_TOTAL, &vertical, answer.status);
        telemetry::meters::decision_time(&vertical.name, vertical.model.as_str(), d.started.elapsed().as_secs_f64());
        d.trace.status = answer.status.to_string();
        d.trace.reason = answer.reason.map(str::to_string);
        self.traces.put(d.trace);
        Ok(answer)
    }
}

/// The vertical a lead or ping names; its absence or an unknown name is a 422.
pub(super) fn vertical_of(market: &Market, name: Option<&str>) -> Result<Arc<Vertical>, EngineError> {
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        return Err(EngineError::Invalid(vec![FieldError::new("vertical", "required")]));
    };
    market
        .vertical(name)
        .cloned()
        .ok_or_else(|| EngineError::Invalid(vec![FieldError::new("vertical", "unknown vertical")]))
}
