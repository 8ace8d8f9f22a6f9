//! One decision's eligibility, kept compact: the candidates' slots, a `Reason`-sized
//! verdict per candidate, and the standing bids ready for the auction.
//!
//! Rationale (issue 17): a decision at 10,000 campaigns screens hundreds of candidates and
//! sells to one. Building a 64-byte `Verdict` per candidate and then a second list of bids
//! from them was more than a third of its time. `screen` writes each standing bid once,
//! with the cents and tier the auction sorts by (from `Screens`, so no campaign is read
//! behind its `Arc`), and keeps only a small `Screened` per candidate: the trace's entries
//! (every candidate with its verdict, as `check` would answer) are spelled out from those
//! only when a trace is built (`verdicts`).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Clocks, Price, Reason, Subject, Verdict};
use crate::domain::auction::BidRef;
use crate::domain::geo::Point;
use crate::domain::market::{CompiledCampaign, Market};
use crate::domain::model::Model;

/// What the screens made of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screened {
    /// A fixed price: the campaign bids it without a call (it is in `bids`).
    Standing,
    /// Dynamic pricing: the buyer must be pinged for a bid.
    Live,
    Filtered(Reason),
}

/// Every candidate of one decision and what eligibility made of it, in index order.
#[derive(Debug)]
pub struct Evaluation<'m> {
    campaigns: &'m [Arc<CompiledCampaign>],
    /// The fixed prices by slot (`Screens::prices`).
    prices: &'m [Option<Price>],
    /// The subject's location: the radius filters' detail in a trace.
    point: Point,
    /// Candidate slots (into `campaigns` and `screens`), and what each came to.
    slots: Vec<u32>,
    screened: Vec<Screened>,
    /// The standing bids, in candidate order.
    bids: Vec<BidRef<'m>>,
}

/// Runs every candidate of the market's index through the checks of `check`, in index
/// order: the standing bids go to the auction as they are found, dynamic prices are live
/// bidders for `model` (filtered as `no_standing_bid` in a bidding vertical). Candidates
/// come from the subject's vertical's own index, so no vertical is compared; the verdicts
/// are what `check` answers for each (the property tests hold them to it).
///
/// Rationale (issue 17): the checks read the vertical's `Screens` (flags, circles, bitsets
/// laid out by slot when the market is built) instead of each campaign's configuration
/// behind two pointers, and a schedule's zone is looked up once per zone per decision.
pub fn screen<'m>(market: &'m Market, subject: &Subject<'_>, model: Model, now: DateTime<Utc>) -> Evaluation<'m> {
    let Some(found) = market.candidate_slots(subject) else {
        return Evaluation {
            campaigns: &[],
            prices: &[],
            point: subject.location,
            slots: Vec::new(),
            screened: Vec::new(),
            bids: Vec::new(),
        };
    };
    let screens = found.screens;
    let campaigns = found.campaigns;
    let lead = screens.lead(subject);
    let mut clocks = Clocks { now, zones: Vec::new() };
    let mut screened = Vec::with_capacity(found.slots.len());
    let mut bids = Vec::with_capacity(found.slots.len());
    for &slot in &found.slots {
        let slot = slot as usize;
        let campaign = &campaigns[slot];
        debug_assert_eq!(campaign.campaign.vertical, subject.vertical);
        let verdict = match screens.check(slot, campaign, &lead, &mut clocks) {
            Err(reason) => Screened::Filtered(reason),
            Ok(()) => match screens.prices[slot] {
                Some(price) => {
                    bids.push(BidRef::known(campaign, price.amount, price.cents, price.tier));
                    Screened::Standing
                }
                None if model == Model::Bidding => Screened::Filtered(Reason::NoStandingBid),
                None => Screened::Live,
            },
        };
        screened.push(verdict);
    }
    Evaluation { campaigns, prices: &screens.prices, point: subject.location, slots: found.slots, screened, bids }
}

impl<'m> Evaluation<'m> {
    /// How many candidates were screened.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The standing bids, in candidate order.
    pub fn bids(&self) -> &[BidRef<'m>] {
        &self.bids
    }

    /// The standing bids, handed to the auction; `verdicts` still answers every candidate.
    pub fn take_bids(&mut self) -> Vec<BidRef<'m>> {
        std::mem::take(&mut self.bids)
    }

    /// The campaigns to ping for a bid, in candidate order.
    pub fn live(&self) -> impl Iterator<Item = &'m Arc<CompiledCampaign>> + '_ {
        let campaigns = self.campaigns;
        self.slots
            .iter()
            .zip(&self.screened)
            .filter(|(_, screened)| **screened == Screened::Live)
            .map(move |(&slot, _)| &campaigns[slot as usize])
    }

    /// Every candidate's verdict in index order, with the reason and detail `check` gives.
    pub fn verdicts(&self) -> impl Iterator<Item = Verdict<'m>> + '_ {
        let campaigns = self.campaigns;
        let prices = self.prices;
        let point = self.point;
        self.slots.iter().zip(&self.screened).map(move |(&slot, &screened)| {
            let slot = slot as usize;
            let campaign = &campaigns[slot];
            match screened {
                Screened::Filtered(reason) => Verdict::Filtered(campaign, reason.filtered(campaign, point)),
                Screened::Live => Verdict::Live(campaign),
                Screened::Standing => match prices[slot] {
                    Some(price) => Verdict::Standing(campaign, price.amount),
                    None => unreachable!("`screen` gives a standing verdict only to a fixed price"),
                },
            }
        })
    }
}
