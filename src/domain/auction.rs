//! Auction models (DESIGN §2): the order in which bids are offered the lead, and the price
//! each pays if it wins.
//!
//! Rationale for integer sort keys: a decision at 10,000 campaigns may sort hundreds of
//! bids; comparing `Decimal`s and id strings dominated the decision time, so each bid's
//! amount is turned into whole cents once (amounts are validated to cents) and the sort is
//! stable over `(cents, tier)`, which keeps the deterministic index order among exact ties
//! before the tie rotation.

use std::cmp::Reverse;
use std::sync::Arc;

use super::market::CompiledCampaign;
use super::model::{Model, PriceRule, Vertical};
use super::money::Money;

/// A campaign's standing or live bid for one lead.
///
/// Rationale: one `Arc` to the compiled campaign (not its ids) keeps a bid at 24 bytes and
/// one reference count; a decision moves and sorts hundreds of them. A ping's post then
/// delivers under the campaign exactly as it was when it bid.
#[derive(Debug, Clone)]
pub struct Bid {
    pub campaign: Arc<CompiledCampaign>,
    pub amount: Money,
}

impl Bid {
    pub fn tier(&self) -> u32 {
        self.campaign.campaign.tier
    }

    pub fn campaign_id(&self) -> &Arc<str> {
        &self.campaign.id
    }

    pub fn buyer_id(&self) -> &Arc<str> {
        &self.campaign.buyer_id
    }
}

impl PartialEq for Bid {
    fn eq(&self, other: &Bid) -> bool {
        Arc::ptr_eq(&self.campaign, &other.campaign) && self.amount == other.amount
    }
}

/// A bid in the order it will be offered the lead, with the price it pays if it wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub bid: Bid,
    pub price: Money,
}

/// Orders bids into offers for `vertical.model`:
/// - ping_post, bidding: bids below the reserve dropped; amount desc, then tier asc, then
///   rotation among exact ties (`tie_turn` picks which tied bid goes first); price by
///   `price_rule` (second price only when `max_winners == 1`: max(next bid + 0.01,
///   reserve), never above the bid; a lone bid pays the reserve when one is set, else its
///   own amount).
/// - round_robin: `rr_order` (from `Rotation::next_order`, indexes into `bids`) decides;
///   each pays its own amount; bids below the reserve dropped.
/// - ping_tree: tier asc; within a tier amount desc with rotation on ties; bids below the
///   tier's floor dropped; each pays its own amount.
pub fn order_offers(vertical: &Vertical, bids: Vec<Bid>, rr_order: Option<&[usize]>, tie_turn: u64) -> Vec<Offer> {
    match vertical.model {
        Model::RoundRobin => round_robin(vertical, bids, rr_order.unwrap_or(&[])),
        Model::PingTree => {
            let mut bids: Vec<Bid> = bids.into_iter().filter(|b| b.amount >= vertical.tier_floor(b.tier())).collect();
            bids.sort_by_cached_key(|b| (b.tier(), Reverse(b.amount.to_cents())));
            rotate_ties(&mut bids, tie_turn);
            bids.into_iter().map(|bid| Offer { price: bid.amount, bid }).collect()
        }
        Model::PingPost | Model::Bidding => {
            let mut bids: Vec<Bid> = bids.into_iter().filter(|b| b.amount >= vertical.reserve_price).collect();
            bids.sort_by_cached_key(|b| (Reverse(b.amount.to_cents()), b.tier()));
            rotate_ties(&mut bids, tie_turn);
            let mut offers: Vec<Offer> = bids.into_iter().map(|bid| Offer { price: bid.amount, bid }).collect();
            if vertical.price_rule == PriceRule::SecondPrice && vertical.max_winners == 1 {
                for i in 0..offers.len() {
                    let next = offers.get(i + 1).map(|o| o.bid.amount);
                    offers[i].price = second_price_of(offers[i].bid.amount, next, vertical.reserve_price);
                }
            }
            offers
        }
    }
}

/// What the winner of a second-price auction pays.
fn second_price_of(bid: Money, next: Option<Money>, reserve: Money) -> Money {
    match next {
        Some(next) => bid.min((next + Money::cents(1)).max(reserve)),
        None if !reserve.is_zero() => bid.min(reserve),
        None => bid,
    }
}

fn round_robin(vertical: &Vertical, bids: Vec<Bid>, order: &[usize]) -> Vec<Offer> {
    let mut slots: Vec<Option<Bid>> = bids.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
        .filter(|bid| bid.amount >= vertical.reserve_price)
        .map(|bid| Offer { price: bid.amount, bid })
        .collect()
}

/// Rotates each run of exact ties (same amount, same tier) left by `turn`, so over
/// successive leads every tied campaign goes first in turn (DESIGN §2: never always the
/// same campaign).
fn rotate_ties(bids: &mut [Bid], turn: u64) {
    let mut start = 0;
    while start < bids.len() {
        let mut end = start + 1;
        while end < bids.len() && bids[end].amount == bids[start].amount && bids[end].tier() == bids[start].tier() {
            end += 1;
        }
        let len = end - start;
        if len > 1 {
            bids[start..end].rotate_left((turn % len as u64) as usize);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Model, PriceRule};
    use proptest::prelude::*;
    use serde_json::json;

    fn vertical(model: Model, rule: PriceRule, reserve: &str, max_winners: u32) -> Vertical {
        let mut v: Vertical = serde_json::from_value(json!({"name": "v", "model": model, "price_rule": rule,
            "reserve_price": reserve, "max_winners": max_winners, "tier_floors": {"1": "20.00", "2": "5.00"}}))
        .unwrap();
        v.model = model;
        v
    }

    fn bid(id: &str, amount: &str, tier: u32) -> Bid {
        Bid { campaign: CompiledCampaign::stub(id, tier), amount: amount.parse().unwrap() }
    }

    fn ids(offers: &[Offer]) -> Vec<&str> {
        offers.iter().map(|o| &*o.bid.campaign.id).collect()
    }

    fn prices(offers: &[Offer]) -> Vec<String> {
        offers.iter().map(|o| o.price.to_string()).collect()
    }

    #[test]
    fn first_price_orders_by_amount_then_tier_and_drops_bids_below_the_reserve() {
        let v = vertical(Model::PingPost, PriceRule::FirstPrice, "10.00", 1);
        let offers = order_offers(
            &v,
            vec![bid("a", "30.00", 2), bid("b", "45.00", 1), bid("c", "30.00", 1), bid("d", "9.99", 1)],
            None,
            0,
        );
        assert_eq!(ids(&offers), ["b", "c", "a"]);
        assert_eq!(prices(&offers), ["45.00", "30.00", "30.00"]);
    }

    #[test]
    fn second_price_pays_the_next_bid_plus_a_cent_within_reserve_and_bid() {
        let v = vertical(Model::PingPost, PriceRule::SecondPrice, "25.00", 1);
        let offers = order_offers(&v, vec![bid("a", "50.00", 1), bid("b", "31.40", 1), bid("c", "26.00", 1)], None, 0);
        assert_eq!(prices(&offers), ["31.41", "26.01", "25.00"], "the last pays the reserve");
        let offers = order_offers(&v, vec![bid("a", "40.00", 1), bid("b", "40.00", 1)], None, 0);
        assert_eq!(prices(&offers)[0], "40.00", "never above the bid");
        let offers = order_offers(&v, vec![bid("a", "40.00", 1), bid("b", "10.00", 1)], None, 0);
        assert_eq!(prices(&offers), ["25.00"], "10.00 is below the reserve; the lone bid pays the reserve");
        let no_reserve = vertical(Model::PingPost, PriceRule::SecondPrice, "0", 1);
        assert_eq!(prices(&order_offers(&no_reserve, vec![bid("a", "40.00", 1)], None, 0)), ["40.00"]);
        let shared = vertical(Model::Bidding, PriceRule::SecondPrice, "0", 2);
        let offers = order_offers(&shared, vec![bid("a", "40.00", 1), bid("b", "30.00", 1)], None, 0);
        assert_eq!(prices(&offers), ["40.00", "30.00"], "shared leads pay their own prices");
    }

    #[test]
    fn exact_ties_take_turns_first() {
        let v = vertical(Model::PingPost, PriceRule::FirstPrice, "0", 1);
        let bids = || vec![bid("a", "30.00", 1), bid("b", "30.00", 1), bid("c", "30.00", 1), bid("d", "50.00", 1)];
        let firsts: Vec<String> =
            (0..3).map(|turn| ids(&order_offers(&v, bids(), None, turn))[1].to_string()).collect();
        assert_eq!(firsts, ["a", "b", "c"]);
        assert!((0..3).all(|turn| ids(&order_offers(&v, bids(), None, turn))[0] == "d"));
    }

    #[test]
    fn ping_tree_walks_tiers_and_drops_offers_below_the_tier_floor() {
        let v = vertical(Model::PingTree, PriceRule::FirstPrice, "0", 1);
        let offers = order_offers(
            &v,
            vec![
                bid("t2-high", "19.00", 2),
                bid("t1-low", "21.00", 1),
                bid("t1-cheap", "15.00", 1),
                bid("t1-high", "30.00", 1),
            ],
            None,
            0,
        );
        assert_eq!(ids(&offers), ["t1-high", "t1-low", "t2-high"]);
        assert_eq!(prices(&offers), ["30.00", "21.00", "19.00"]);
    }

    #[test]
    fn round_robin_follows_the_rotation_and_ignores_prices() {
        let v = vertical(Model::RoundRobin, PriceRule::FirstPrice, "10.00", 1);
        let bids = vec![bid("a", "50.00", 1), bid("b", "20.00", 1), bid("c", "5.00", 1)];
        let offers = order_offers(&v, bids, Some(&[1, 2, 0, 7, 1]), 0);
        assert_eq!(ids(&offers), ["b", "a"], "c is below the reserve, 7 does not exist, 1 is not offered twice");
        assert_eq!(prices(&offers), ["20.00", "50.00"]);
    }

    fn bids() -> impl Strategy<Value = Vec<Bid>> {
        proptest::collection::vec((0i64..10_000, 1u32..4), 0..40).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (cents, tier))| Bid {
                    campaign: CompiledCampaign::stub(&format!("c{i}"), tier),
                    amount: Money::cents(cents),
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn auctions_offer_only_real_bids_in_order_and_never_charge_above_a_bid(
            bids in bids(), reserve in 0i64..5_000, second in any::<bool>(), turn in any::<u64>(), bidding in any::<bool>()
        ) {
            let rule = if second { PriceRule::SecondPrice } else { PriceRule::FirstPrice };
            let model = if bidding { Model::Bidding } else { Model::PingPost };
            let v = vertical(model, rule, &Money::cents(reserve).to_string(), 1);
            let offers = order_offers(&v, bids.clone(), None, turn);
            for offer in &offers {
                prop_assert!(bids.contains(&offer.bid));
                prop_assert!(offer.price <= offer.bid.amount);
                prop_assert!(offer.price >= v.reserve_price);
            }
            let expected = bids.iter().filter(|b| b.amount >= v.reserve_price).count();
            prop_assert_eq!(offers.len(), expected);
            for pair in offers.windows(2) {
                prop_assert!(pair[0].bid.amount >= pair[1].bid.amount);
                if pair[0].bid.amount == pair[1].bid.amount {
                    prop_assert!(pair[0].bid.tier() <= pair[1].bid.tier());
                }
            }
        }

        #[test]
        fn ping_trees_offer_tiers_in_order_above_their_floors(bids in bids(), turn in any::<u64>()) {
            let v = vertical(Model::PingTree, PriceRule::FirstPrice, "0", 1);
            let offers = order_offers(&v, bids, None, turn);
            for pair in offers.windows(2) {
                prop_assert!(pair[0].bid.tier() < pair[1].bid.tier()
                    || (pair[0].bid.tier() == pair[1].bid.tier() && pair[0].bid.amount >= pair[1].bid.amount));
            }
            prop_assert!(offers.iter().all(|o| o.price == o.bid.amount && o.price >= v.tier_floor(o.bid.tier())));
        }
    }
}
