//! The steps every decision shares: gather offers (eligibility, standing bids, live pings),
//! hold the best ones, and sell (deliver, settle, fall back to the next offer).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::answers;
use super::auction::Auction;
use super::buyer_format;
use super::core::publish_available;
use super::native_body::PostBody;
use super::outbox::Payload;
use super::ports::buyers::{BidAnswer, PingCall, PostAnswer};
use super::ports::outbox::{Message, MessageKind, Recipient, Requires};
use super::ports::{BudgetError, HoldHandle};
use crate::domain::auction::{BidRef, Offer, Ranking, FALLBACKS};
use crate::domain::budget::lease::LeaseCharge;
use crate::domain::budget::{HoldRefusal, HoldRequest, HoldScope};
use crate::domain::dedup;
use crate::domain::eligibility::{self, Subject, Verdict};
use crate::domain::integration::Integration;
use crate::domain::lead::{ValidLead, ValidPing};
use crate::domain::ledger::Event;
use crate::domain::ledger::SaleSettled as Sale;
use crate::domain::market::{CompiledCampaign, Market};
use crate::domain::model::{DeliveryMode, Model, Pricing, Supplier, Vertical};
use crate::domain::money::Money;
use crate::domain::payout::supplier_payout;
use crate::domain::trace::{Outcome, Trace, TraceEntry};
use crate::engine::EngineError;
use crate::ids;
use crate::telemetry;

/// Below this much time left, no new delivery starts: it could not finish in time.
const DELIVERY_WINDOW_MIN: Duration = Duration::from_millis(5);

/// Holds outlive their ping by the longest possible post (`tmax_ms`) plus this, so a post
/// accepted just before expiry still finds its hold when it settles.
pub(super) const HOLD_GRACE: chrono::Duration = chrono::Duration::seconds(5);

/// One decision in progress: the snapshot it runs on, its deadline, and its trace.
pub(super) struct Decision {
    pub market: Arc<Market>,
    pub vertical: Arc<Vertical>,
    pub supplier: Arc<Supplier>,
    pub trace: Trace,
    pub deadline: Instant,
    pub started: Instant,
    /// What buyer-format pings' answers said to carry to the post (`ping.token`), by
    /// campaign id.
    pub ping_tokens: Vec<(Arc<str>, String)>,
}

impl Decision {
    /// The token `campaign`'s ping answer carried, if any.
    pub fn ping_token(&self, campaign: &str) -> Option<&str> {
        self.ping_tokens.iter().find(|(id, _)| &**id == campaign).map(|(_, token)| token.as_str())
    }
}

/// Why nothing sold, in order of precedence.
#[derive(Debug, Default)]
pub(super) struct Misses {
    pub eligible: usize,
    pub rejected: bool,
    pub duplicate: bool,
    pub out_of_time: bool,
}

impl Misses {
    pub fn reason(&self) -> &'static str {
        if self.out_of_time {
            answers::DEADLINE
        } else if self.rejected {
            answers::BUYER_REJECTED
        } else if self.duplicate {
            answers::DUPLICATE
        } else {
            answers::NO_ELIGIBLE_BUYER
        }
    }
}

/// The lead being sold and the ids it is sold under.
pub(super) struct Lot<'a> {
    pub lead: &'a ValidLead,
    pub lead_id: &'a str,
    pub ping_id: &'a str,
}

impl Auction {
    /// Runs every candidate through eligibility, collects standing bids and live bids (until
    /// `bid_deadline`), and ranks them for the vertical's model: the first
    /// `max_winners + FALLBACKS` offers in order, the rest when a decision walks past them.
    /// `market` is `d.market`, borrowed for the bids.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn gather_offers<'m>(
        &self,
        d: &mut Decision,
        market: &'m Market,
        subject: &Subject<'_>,
        ping: (&str, &ValidPing),
        bid_deadline: Instant,
        now: DateTime<Utc>,
        misses: &mut Misses,
    ) -> Ranking<'m> {
        let mut evaluation = eligibility::screen(market, subject, d.vertical.model, now);
        d.trace.outside_area = market.campaign_count(&d.vertical.name).saturating_sub(evaluation.len());
        // Room too for what a sale adds after the verdicts (won, sold, a rejected post), so
        // that the trace is not moved to a larger allocation on the way.
        d.trace.entries.reserve(evaluation.len() + 3);
        // Every candidate with its verdict, in index order; live bidders get theirs when
        // they answer their ping.
        for verdict in evaluation.verdicts() {
            match verdict {
                Verdict::Filtered(campaign, filtered) => {
                    let entry = filter(&mut d.trace, campaign, filtered.code);
                    entry.distance_km(filtered.distance_km());
                    if let Some(field) = filtered.field() {
                        entry.detail(field.to_string());
                    }
                }
                Verdict::Standing(campaign, price) => {
                    d.trace.push(&campaign.id, &campaign.buyer_id, Outcome::Bid).amount(price);
                }
                Verdict::Live(_) => {}
            }
        }
        let live: Vec<&'m Arc<CompiledCampaign>> = evaluation.live().collect();
        let mut bids = evaluation.take_bids();
        misses.eligible = bids.len() + live.len();
        if !live.is_empty() {
            bids.extend(self.ping_buyers(d, &live, ping, bid_deadline).await);
        }
        let rr_order = (d.vertical.model == Model::RoundRobin).then(|| {
            let eligible: Vec<(&str, u32)> =
                bids.iter().map(|b| (&*b.campaign.id, b.campaign.campaign.weight)).collect();
            let rotation = self.rotations.entry(d.vertical.name.clone()).or_default();
            let order = rotation.lock().next_order(&eligible);
            order
        });
        let want = d.vertical.max_winners as usize + FALLBACKS;
        Ranking::new(&d.vertical, bids, rr_order.as_deref(), self.next_tie_turn(), want)
    }

    async fn ping_buyers<'m>(
        &self,
        d: &mut Decision,
        live: &[&'m Arc<CompiledCampaign>],
        ping: (&str, &ValidPing),
        bid_deadline: Instant,
    ) -> Vec<BidRef<'m>> {
        let (ping_id, valid) = ping;
        let tmax_ms = bid_deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
        let body = Bytes::from(
            json!({
                "ping_id": ping_id,
                "vertical": valid.vertical(),
                "zip": valid.zip(),
                "country": valid.country(),
                "state": valid.state(),
                "fields": valid.fields(),
                "tmax_ms": tmax_ms,
            })
            .to_string(),
        );
        let facts = buyer_format::PingFacts {
            ping: valid,
            ping_id,
            supplier_id: &d.supplier.id,
            now: self.core.clock.now(),
            test: false,
        };
        let outcomes = self.ping_all(live, &facts, body, bid_deadline).await;
        let mut bids = Vec::new();
        for (&campaign, (outcome, latency)) in live.iter().zip(outcomes) {
            let buyer_format::PingOutcome { answer, token, reason } = outcome;
            let label = match &answer {
                BidAnswer::Bid(_) => "bid",
                BidAnswer::NoBid => "no_bid",
                BidAnswer::Timeout => "timeout",
                BidAnswer::Error(_) => "error",
                BidAnswer::CircuitOpen => {
                    filter(&mut d.trace, campaign, "circuit_open");
                    continue;
                }
            };
            telemetry::meters::buyer_request(&campaign.buyer_id, "ping", label, latency);
            let entry = match answer {
                BidAnswer::Bid(amount) => match min_price(campaign) {
                    Some(min) if amount < min => d
                        .trace
                        .push(&campaign.id, &campaign.buyer_id, Outcome::NoBid)
                        .amount(amount)
                        .reason("below_min_price"),
                    _ => {
                        bids.push(BidRef::new(campaign, amount));
                        if let Some(token) = token {
                            d.ping_tokens.push((Arc::clone(&campaign.id), token));
                        }
                        d.trace.push(&campaign.id, &campaign.buyer_id, Outcome::Bid).amount(amount)
                    }
                },
                BidAnswer::NoBid => {
                    let entry = d.trace.push(&campaign.id, &campaign.buyer_id, Outcome::NoBid);
                    match reason {
                        Some(reason) => entry.reason(reason),
                        None => entry,
                    }
                }
                BidAnswer::Timeout => d.trace.push(&campaign.id, &campaign.buyer_id, Outcome::Timeout),
                BidAnswer::Error(reason) => {
                    d.trace.push(&campaign.id, &campaign.buyer_id, Outcome::Error).reason(reason)
                }
                BidAnswer::CircuitOpen => continue,
            };
            entry.latency(latency);
        }
        bids
    }

    /// Pings every live campaign at once, all by `bid_deadline`: native pings through the
    /// port's fan-out, buyer-format ones (DESIGN §5.1) each rendered and exchanged beside
    /// them. The outcomes come back in the order of `live`.
    async fn ping_all(
        &self,
        live: &[&Arc<CompiledCampaign>],
        facts: &buyer_format::PingFacts<'_>,
        native: Bytes,
        bid_deadline: Instant,
    ) -> Vec<(buyer_format::PingOutcome, Duration)> {
        let mut calls = Vec::new();
        let mut exchanges = Vec::new();
        for campaign in live {
            let url = ping_url(campaign);
            match &campaign.ping_integration {
                None => calls.push(PingCall {
                    url: url.to_string(),
                    secret: campaign.webhook_secret.to_string(),
                    body: native.clone(),
                }),
                Some(integration) => {
                    let request = buyer_format::ping_request(integration, campaign, facts, url, native.clone());
                    let deadline = buyer_format::call_deadline(integration, bid_deadline);
                    exchanges.push(async move {
                        match request {
                            Ok(outbound) => {
                                let (reply, latency) = self.core.buyers.exchange(outbound, deadline).await;
                                (buyer_format::ping_answer(integration, reply), latency)
                            }
                            Err(reason) => (native_outcome(BidAnswer::Error(reason)), Duration::ZERO),
                        }
                    });
                }
            }
        }
        let (native_answers, formatted) =
            tokio::join!(self.core.buyers.ping_all(calls, bid_deadline), futures::future::join_all(exchanges));
        let mut native_answers = native_answers.into_iter();
        let mut formatted = formatted.into_iter();
        live.iter()
            .filter_map(|campaign| match campaign.ping_integration {
                None => native_answers.next().map(|(answer, latency)| (native_outcome(answer), latency)),
                Some(_) => formatted.next(),
            })
            .collect()
    }

    /// Holds the next offer, from `cursor` on, whose buyer has nothing yet for this lead.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hold_next(
        &self,
        d: &mut Decision,
        offers: &mut impl OfferList,
        cursor: &mut usize,
        taken: &HashSet<Arc<str>>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        scope: HoldScope,
    ) -> Result<Option<(usize, HoldHandle)>, EngineError> {
        while let Some(offer) = offers.get(*cursor) {
            let index = *cursor;
            *cursor += 1;
            if taken.contains(offer.bid.buyer_id()) {
                continue;
            }
            let campaign = &offer.bid.campaign;
            let request = HoldRequest {
                hold_id: ids::hold_id(),
                campaign_id: &campaign.id,
                price: offer.price,
                funding: campaign.funding,
                caps: &campaign.caps,
                tz: campaign.tz,
                expires_at,
                scope,
            };
            match self.core.budget.try_hold(&campaign.buyer_id, now, request).await {
                Ok(held) => {
                    publish_available(&campaign.buyer_id, held.available);
                    return Ok(Some((index, held.handle)));
                }
                Err(BudgetError::Refused(refusal)) => {
                    let entry = filter(&mut d.trace, campaign, refusal.code());
                    if let HoldRefusal::CapReached(cap) = refusal {
                        entry.detail(cap);
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(None)
    }

    /// Holds offers from `cursor` on until `wanted` distinct buyers hold one or the offers
    /// run out. On a storage error it gives back what it held: nothing sells unrecorded.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hold_winners(
        &self,
        d: &mut Decision,
        offers: &mut impl OfferList,
        cursor: &mut usize,
        taken: &mut HashSet<Arc<str>>,
        wanted: usize,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        scope: HoldScope,
    ) -> Result<Vec<(usize, HoldHandle)>, EngineError> {
        let mut held = Vec::new();
        while held.len() < wanted {
            match self.hold_next(d, offers, cursor, taken, now, expires_at, scope).await {
                Ok(Some((index, hold))) => {
                    taken.insert(Arc::clone(&hold.buyer_id));
                    held.push((index, hold));
                }
                Ok(None) => break,
                Err(error) => {
                    self.release_all(held.into_iter().map(|(_, hold)| hold)).await;
                    return Err(error);
                }
            }
        }
        Ok(held)
    }

    /// Releases holds that will not be used (best effort: they also expire by themselves).
    pub(super) async fn release_all(&self, holds: impl IntoIterator<Item = HoldHandle>) {
        for hold in holds {
            if let Err(error) = self.core.budget.release(&hold).await {
                tracing::warn!(%error, "hold release failed; it will expire");
            }
        }
    }

    /// Delivers the lead to the held offers, settles each acceptance, and replaces each
    /// refusal with the next offer while time remains, until `wanted` buyers bought it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sell(
        &self,
        d: &mut Decision,
        lot: &Lot<'_>,
        offers: &mut impl OfferList,
        mut batch: Vec<(usize, HoldHandle)>,
        mut cursor: usize,
        hold_expires_at: DateTime<Utc>,
        misses: &mut Misses,
    ) -> Result<Vec<Sold>, EngineError> {
        let wanted = d.vertical.max_winners as usize;
        let mut sales: Vec<Sold> = Vec::new();
        let mut taken: HashSet<Arc<str>> = batch.iter().map(|(_, hold)| Arc::clone(&hold.buyer_id)).collect();
        loop {
            let attempts = self.claim_dedup(d, lot, offers.ordered(), batch, misses).await?;
            let ordered = offers.ordered();
            let deliveries = attempts.iter().map(|attempt| self.deliver(d, lot, &ordered[attempt.index], attempt));
            let answers: Result<Vec<_>, EngineError> =
                futures::future::join_all(deliveries).await.into_iter().collect();
            let answers = match answers {
                Ok(answers) => answers,
                Err(error) => {
                    // Our storage failed, not the buyer: nothing of this batch sells, and the
                    // request fails as a whole (503), never as a rejection.
                    for attempt in attempts {
                        self.core.dedup.release(&attempt.campaign.buyer_id, &attempt.dedup_keys).await;
                        self.release_all([attempt.hold]).await;
                    }
                    return Err(error);
                }
            };
            for (attempt, (answer, queued)) in attempts.into_iter().zip(answers) {
                let campaign = &attempt.campaign;
                match answer {
                    PostAnswer::Accepted { buyer_reference } => {
                        let offer = &offers.ordered()[attempt.index];
                        sales.push(self.settle(d, lot, offer, attempt, buyer_reference).await?);
                        // Journaled before the sale; due once the sale is journaled too.
                        self.deliveries.send_later(queued);
                    }
                    refusal => {
                        let reason = match refusal {
                            PostAnswer::Rejected(reason) => reason,
                            PostAnswer::Timeout => "timeout".to_string(),
                            PostAnswer::Error(reason) => reason,
                            PostAnswer::CircuitOpen => "circuit_open".to_string(),
                            PostAnswer::Accepted { .. } => String::new(),
                        };
                        d.trace.push(&campaign.id, &campaign.buyer_id, Outcome::RejectedPost).reason(reason);
                        self.core.dedup.release(&campaign.buyer_id, &attempt.dedup_keys).await;
                        self.release_all([attempt.hold]).await;
                        misses.rejected = true;
                    }
                }
            }
            if sales.len() >= wanted || offers.get(cursor).is_none() {
                break;
            }
            if Instant::now() + DELIVERY_WINDOW_MIN >= d.deadline {
                misses.out_of_time = true;
                break;
            }
            let now = self.core.clock.now();
            let wanted_more = wanted - sales.len();
            let scope = HoldScope::Request;
            batch =
                self.hold_winners(d, offers, &mut cursor, &mut taken, wanted_more, now, hold_expires_at, scope).await?;
            if batch.is_empty() {
                break;
            }
        }
        Ok(sales)
    }

    /// Claims the lead's dedup keys for each held buyer; a duplicate gives its hold back.
    async fn claim_dedup(
        &self,
        d: &mut Decision,
        lot: &Lot<'_>,
        offers: &[Offer],
        batch: Vec<(usize, HoldHandle)>,
        misses: &mut Misses,
    ) -> Result<Vec<Attempt>, EngineError> {
        let now = self.core.clock.now();
        let contacts = lot.lead.dedup_keys();
        let mut attempts: Vec<Attempt> = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter();
        while let Some((index, hold)) = batch.next() {
            let campaign = Arc::clone(&offers[index].bid.campaign);
            let days = campaign.campaign.dedup_days;
            let window = chrono::Duration::days(i64::from(days));
            let (keys, plain) = if days == 0 {
                (Vec::new(), Vec::new())
            } else {
                let keying = &self.core.dedup_keying;
                (
                    keying.keys_for(&campaign.buyer_id, &contacts),
                    keying.plain_keys_for(&campaign.buyer_id, &contacts, now, window),
                )
            };
            let claimed = if keys.is_empty() {
                Ok(true)
            } else {
                self.core.dedup.claim(&campaign.buyer_id, &keys, &plain, now, window).await
            };
            match claimed {
                Ok(true) => {}
                Ok(false) => {
                    filter(&mut d.trace, &campaign, "duplicate");
                    self.release_all([hold]).await;
                    misses.duplicate = true;
                    continue;
                }
                Err(error) => {
                    // A duplicate cannot be ruled out: give back everything this batch
                    // holds and sell nothing.
                    self.release_all(std::iter::once(hold).chain(batch.map(|(_, hold)| hold))).await;
                    for attempt in attempts {
                        self.core.dedup.release(&attempt.campaign.buyer_id, &attempt.dedup_keys).await;
                        self.release_all([attempt.hold]).await;
                    }
                    return Err(error.into());
                }
            }
            d.trace.push(&campaign.id, &campaign.buyer_id, Outcome::Won).amount(offers[index].price);
            attempts.push(Attempt { index, hold, campaign, dedup_keys: keys, sale_id: ids::sale_id() });
        }
        Ok(attempts)
    }

    /// Delivers the lead by the campaign's mode. An async delivery answers `Accepted` with
    /// the journaled outbox message, to be sent once the sale is journaled. `Err` is our
    /// storage failing (a pull lead or outbox message not journaled), never the buyer's.
    async fn deliver(
        &self,
        d: &Decision,
        lot: &Lot<'_>,
        offer: &Offer,
        attempt: &Attempt,
    ) -> Result<(PostAnswer, Option<Message>), EngineError> {
        let campaign = &attempt.campaign;
        let delivery = &campaign.campaign.delivery;
        let body = PostBody {
            sale_id: &attempt.sale_id,
            lead_id: lot.lead_id,
            ping_id: lot.ping_id,
            vertical: &d.vertical.name,
            price: offer.price,
            currency: campaign.currency,
            lead: lot.lead,
        };
        let url = match (delivery.mode, &delivery.url) {
            (DeliveryMode::Webhook, Some(url)) => url,
            (DeliveryMode::Pull, _) => {
                return Ok((self.queue_for_pull(campaign, &attempt.sale_id, body.to_value()).await?, None))
            }
            (DeliveryMode::WebhookAsync, Some(url)) => {
                let facts = self.sale_facts(d, lot, offer, attempt);
                return self.queue_async(campaign, url, &facts, &body).await;
            }
            (DeliveryMode::Webhook | DeliveryMode::WebhookAsync, None) => {
                return Ok((PostAnswer::Error("no delivery url".into()), None))
            }
        };
        let deadline = match delivery.timeout_ms {
            Some(ms) => d.deadline.min(Instant::now() + Duration::from_millis(ms)),
            None => d.deadline,
        };
        let (answer, latency) = match &campaign.post_integration {
            Some(integration) => {
                let facts = self.sale_facts(d, lot, offer, attempt);
                let native = native_body(integration, &body);
                match buyer_format::post_request(integration, campaign, &facts, url, native) {
                    Ok(outbound) => {
                        let deadline = buyer_format::call_deadline(integration, deadline);
                        let (reply, latency) = self.core.buyers.exchange(outbound, deadline).await;
                        (buyer_format::post_answer(integration, reply), latency)
                    }
                    Err(reason) => (PostAnswer::Error(reason), Duration::ZERO),
                }
            }
            None => self.core.buyers.post(url, &campaign.webhook_secret, body.to_bytes(), deadline).await,
        };
        let outcome = match &answer {
            PostAnswer::Accepted { .. } => "accepted",
            PostAnswer::Rejected(_) => "rejected",
            PostAnswer::Timeout => "timeout",
            PostAnswer::Error(_) | PostAnswer::CircuitOpen => "error",
        };
        telemetry::meters::buyer_request(&campaign.buyer_id, "post", outcome, latency);
        telemetry::meters::delivery("webhook", outcome);
        Ok((answer, None))
    }

    /// What a buyer-format request is rendered from: this lead sold in this attempt, now.
    fn sale_facts<'a>(
        &self,
        d: &'a Decision,
        lot: &Lot<'a>,
        offer: &Offer,
        attempt: &'a Attempt,
    ) -> buyer_format::SaleFacts<'a> {
        buyer_format::SaleFacts {
            lead: lot.lead,
            lead_id: lot.lead_id,
            ping_id: lot.ping_id,
            ping_token: d.ping_token(&attempt.campaign.id),
            sale_id: &attempt.sale_id,
            supplier_id: &d.supplier.id,
            price: offer.price,
            now: self.core.clock.now(),
            test: false,
        }
    }

    /// Sold on assignment: the lead goes to the durable outbox, journaled before the sale
    /// (and restored only if the sale made it to the journal too). A campaign with a
    /// buyer format has its request rendered here, once: every attempt sends these bytes,
    /// whatever the lead's campaign says by then. A request that does not render is not
    /// sold to this campaign (as a sync post that does not render), and nothing is queued.
    async fn queue_async(
        &self,
        campaign: &CompiledCampaign,
        url: &str,
        facts: &buyer_format::SaleFacts<'_>,
        body: &PostBody<'_>,
    ) -> Result<(PostAnswer, Option<Message>), EngineError> {
        let payload = match &campaign.post_integration {
            None => Payload::native(url, body.to_text()),
            Some(integration) => {
                let rendered =
                    buyer_format::post_request(integration, campaign, facts, url, native_body(integration, body))
                        .and_then(|outbound| buyer_format::queued(campaign, outbound));
                match rendered {
                    Ok(payload) => payload,
                    Err(reason) => return Ok((PostAnswer::Error(reason), None)),
                }
            }
        };
        let timeout_ms = campaign
            .post_integration
            .as_ref()
            .and_then(|integration| integration.request.as_ref()?.timeout_ms())
            .or(campaign.campaign.delivery.timeout_ms)
            .unwrap_or(super::outbox::DELIVERY_TIMEOUT_DEFAULT_MS);
        let recipient = Recipient::Buyer(campaign.buyer_id.to_string());
        let requires = Requires::Sale(facts.sale_id.to_string());
        let message =
            self.deliveries.queue_message(MessageKind::Lead, recipient, payload, timeout_ms, requires).await?;
        telemetry::meters::delivery("webhook_async", "queued");
        // Sold before the buyer answers: no reference can be known at sale time.
        Ok((PostAnswer::Accepted { buyer_reference: None }, Some(message)))
    }

    /// Sold on assignment: the lead waits for its buyer's next fetch. Journaled first, so
    /// a sale that is answered is never a lead the buyer cannot fetch.
    async fn queue_for_pull(
        &self,
        campaign: &CompiledCampaign,
        sale_id: &str,
        body: serde_json::Value,
    ) -> Result<PostAnswer, EngineError> {
        self.core.pull.push(&campaign.buyer_id, sale_id, body).await?;
        telemetry::meters::delivery("pull", "queued");
        // The buyer is never called, so there is no answer to read a reference from.
        Ok(PostAnswer::Accepted { buyer_reference: None })
    }

    /// Settles an accepted delivery: the hold is paid, and the sale is journaled (on disk)
    /// before anyone hears `sold` (DESIGN §8.3). `buyer_reference` is what the delivery's
    /// answer said the buyer calls the lead (`PostAnswer::Accepted`); the sale, its ledger
    /// event and the trace's `sold` entry keep it.
    async fn settle(
        &self,
        d: &mut Decision,
        lot: &Lot<'_>,
        offer: &Offer,
        attempt: Attempt,
        buyer_reference: Option<String>,
    ) -> Result<Sold, EngineError> {
        let campaign = &attempt.campaign;
        let now = self.core.clock.now();
        let lease = match self.settle_hold(&attempt.hold).await {
            Ok(lease) => lease,
            Err(error) => {
                // The buyer accepted the lead: the sale stands. This cannot happen while holds
                // outlive their posts (HOLD_GRACE); if it does, an operator must see it.
                tracing::error!(%error, sale_id = %attempt.sale_id, buyer = %campaign.buyer_id, "sale settled without its hold");
                None
            }
        };
        // A settle moves the price from held to charged: what is available does not change,
        // so the gauge the hold set stays right.
        let sale = Sale {
            sale_id: attempt.sale_id.clone(),
            lead_id: lot.lead_id.to_string(),
            ping_id: Some(lot.ping_id.to_string()),
            supplier_id: d.supplier.id.clone(),
            buyer_id: campaign.buyer_id.to_string(),
            campaign_id: campaign.id.to_string(),
            vertical: d.vertical.name.clone(),
            country: lot.lead.country().to_string(),
            model: d.vertical.model,
            price: offer.price,
            payout: supplier_payout(&d.supplier.payout, offer.price),
            currency: campaign.currency,
            sold_at: now,
            internal: campaign.funding.mode == crate::domain::model::BillingMode::Internal,
            dedup_keys: attempt.dedup_keys.iter().map(dedup::to_hex).collect(),
            return_terms: Some(crate::domain::returns::ReturnTerms::of(&campaign.campaign)),
            buyer_reference,
            lease,
        };
        // The dedup keys are marked sold while the sale is journaled: on a shared store
        // that is two round trips at once instead of one after the other.
        // The sale goes to the journal shared and comes back with its sequence: the journal's
        // tail in memory and the recent sales keep the same record, not copies (issue 17).
        let (committed, appended) = tokio::join!(
            self.core.dedup.commit(&campaign.buyer_id, &attempt.dedup_keys, now),
            self.core.journal.append(Event::from(sale), now)
        );
        if let Err(error) = committed {
            // The buyer accepted the lead: the sale stands; its keys stay claimed (pending)
            // until they expire, which still blocks a copy of the lead meanwhile.
            tracing::error!(%error, sale_id = %attempt.sale_id, "dedup keys of a sale not marked sold");
        }
        let sale = match appended {
            // Sequences start at 1: a sale the ledger acknowledged has its place in it.
            Ok(recorded) => {
                debug_assert!(recorded.sequence > 0, "a settled sale without a ledger sequence");
                match recorded.event {
                    Event::SaleSettled(sale) => sale,
                    other => unreachable!("the ledger answered a sale with {other:?}"),
                }
            }
            Err(error) => {
                // The buyer has the lead but we could not record the sale: never answer
                // `sold` for what is not on disk. An operator must reconcile this one by hand.
                tracing::error!(%error, sale_id = %attempt.sale_id, buyer = %campaign.buyer_id, "sale accepted by the buyer but not journaled");
                return Err(error.into());
            }
        };
        d.trace
            .push(&campaign.id, &campaign.buyer_id, Outcome::Sold)
            .amount(offer.price)
            .buyer_reference(sale.buyer_reference.as_deref());
        telemetry::meters::sale(&d.vertical.name);
        telemetry::record_revenue(sale.currency, sale.price);
        let sold = Sold { payout: sale.payout, currency: sale.currency };
        // The recent sales keep the sale itself: the answer needs only its payout.
        self.core.sales.record(sale);
        Ok(sold)
    }

    /// Settles a hold, retrying a store that does not answer for a moment: the buyer has
    /// the lead, so the charge must land. Answers what the sale draws from a node's lease,
    /// when the hold came from one: the ledger counts it with the sale.
    async fn settle_hold(&self, hold: &HoldHandle) -> Result<Option<LeaseCharge>, BudgetError> {
        let mut pause = Duration::from_millis(5);
        for _ in 0..5 {
            match self.core.budget.settle(hold).await {
                Err(BudgetError::Unavailable(_)) => tokio::time::sleep(pause).await,
                other => return other.map(|settled| settled.lease),
            }
            pause *= 4;
        }
        self.core.budget.settle(hold).await.map(|settled| settled.lease)
    }
}

/// The offers a decision walks in order: all of them (a ping's post), or a `Ranking` that
/// orders more when the walk reaches the end of what it ordered.
pub(super) trait OfferList {
    /// The offer at `index`, ordering more first if needed; None past the last.
    fn get(&mut self, index: usize) -> Option<&Offer>;
    /// The offers ordered so far: every index `get` answered is in it.
    fn ordered(&self) -> &[Offer];
}

impl OfferList for Vec<Offer> {
    fn get(&mut self, index: usize) -> Option<&Offer> {
        self.as_slice().get(index)
    }

    fn ordered(&self) -> &[Offer] {
        self
    }
}

impl OfferList for Ranking<'_> {
    fn get(&mut self, index: usize) -> Option<&Offer> {
        while index >= self.offers().len() && self.more() {}
        self.offers().get(index)
    }

    fn ordered(&self) -> &[Offer] {
        self.offers()
    }
}

/// What the answer to a lead needs of each sale made (the sale itself goes to the journal
/// and the recent sales).
#[derive(Debug, Clone, Copy)]
pub(super) struct Sold {
    pub payout: Money,
    pub currency: crate::domain::money::Currency,
}

/// One delivery about to happen: the held offer, its claimed dedup keys, its sale id.
pub(super) struct Attempt {
    index: usize,
    hold: HoldHandle,
    campaign: Arc<CompiledCampaign>,
    dedup_keys: Vec<dedup::DedupKey>,
    sale_id: String,
}

/// §5's post body, serialized only when the campaign's calls send it (a template renders
/// its own).
fn native_body(integration: &Integration, body: &PostBody<'_>) -> Bytes {
    if integration.sends_native_body() {
        body.to_bytes()
    } else {
        Bytes::new()
    }
}

fn native_outcome(answer: BidAnswer) -> buyer_format::PingOutcome {
    buyer_format::PingOutcome { answer, token: None, reason: None }
}

fn ping_url(campaign: &CompiledCampaign) -> &str {
    match &campaign.campaign.pricing {
        Pricing::Dynamic { ping_url, .. } => ping_url,
        Pricing::Fixed { .. } => "",
    }
}

fn min_price(campaign: &CompiledCampaign) -> Option<Money> {
    match &campaign.campaign.pricing {
        Pricing::Dynamic { min_price, .. } => *min_price,
        Pricing::Fixed { .. } => None,
    }
}

fn filter<'t>(trace: &'t mut Trace, campaign: &CompiledCampaign, code: &'static str) -> &'t mut TraceEntry {
    metrics::counter!(telemetry::FILTERED_TOTAL, "reason" => code).increment(1);
    trace.push(&campaign.id, &campaign.buyer_id, Outcome::Filtered).reason(code)
}
