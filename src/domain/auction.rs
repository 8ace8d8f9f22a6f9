//! Auction models (DESIGN §2): the order in which bids are offered the lead, and the price
//! each pays if it wins.
//!
//! Rationale for integer sort keys: a decision at 10,000 campaigns may order hundreds of
//! bids; comparing `Decimal`s and id strings dominated the decision time, so each bid's
//! amount is turned into whole cents once (amounts are validated to cents) and packed with
//! its tier and index into one `u128` (`Order`), which keeps the deterministic index order
//! among exact ties before the tie rotation. A decision orders only the head it needs
//! (`Ranking`, issue 17).

use std::sync::Arc;

use super::market::CompiledCampaign;
use super::model::{Model, PriceRule, Vertical};
use super::money::{Money, MONEY_SCALE};

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
///
/// Every bid is ordered; `Ranking` orders only as many as are asked for.
pub fn order_offers(vertical: &Vertical, bids: Vec<Bid>, rr_order: Option<&[usize]>, tie_turn: u64) -> Vec<Offer> {
    if vertical.model == Model::RoundRobin {
        return round_robin(vertical, bids, rr_order.unwrap_or(&[]));
    }
    let mut order = Order::new(vertical, bids.iter().map(|b| (cents_of(b.amount), b.tier())), tie_turn);
    let ranked = order.rank_next(usize::MAX, |i| bids[i].amount);
    let mut slots: Vec<Option<Bid>> = bids.into_iter().map(Some).collect();
    ranked.into_iter().filter_map(|(i, price)| slots[i].take().map(|bid| Offer { bid, price })).collect()
}

/// A standing or live bid that borrows its campaign from the market snapshot: what
/// eligibility hands the auction without touching a reference count.
///
/// Rationale (issue 17): the bid carries its sort inputs (whole cents, tier) so the
/// auction orders hundreds of bids without reading a campaign behind its `Arc`; a standing
/// bid's are compiled with the market (`Screens`), a live bid's are read once here.
#[derive(Debug, Clone, Copy)]
pub struct BidRef<'m> {
    pub campaign: &'m Arc<CompiledCampaign>,
    pub amount: Money,
    cents: i64,
    tier: u32,
}

impl<'m> BidRef<'m> {
    /// `campaign`'s bid of `amount`.
    pub fn new(campaign: &'m Arc<CompiledCampaign>, amount: Money) -> BidRef<'m> {
        BidRef { campaign, amount, cents: cents_of(amount), tier: campaign.campaign.tier }
    }

    /// A bid whose cents and tier are already known: `cents` must be `cents_of(amount)` and
    /// `tier` the campaign's (eligibility's screens keep both by slot).
    pub(crate) fn known(campaign: &'m Arc<CompiledCampaign>, amount: Money, cents: i64, tier: u32) -> BidRef<'m> {
        debug_assert_eq!(cents, cents_of(amount));
        debug_assert_eq!(tier, campaign.campaign.tier);
        BidRef { campaign, amount, cents, tier }
    }

    pub fn tier(&self) -> u32 {
        self.tier
    }

    /// The amount in whole cents, as the auction orders it.
    pub(crate) fn cents(&self) -> i64 {
        self.cents
    }
}

/// Offers beyond `max_winners` ordered up front: enough for the usual fallbacks (a buyer
/// already served, a budget or cap refusal, a rejected post) without ordering the rest.
pub const FALLBACKS: usize = 8;

/// The offers of one decision, ordered only as far as they are used: the first
/// `max_winners + FALLBACKS` (or more, to finish a run of exact ties) by partial selection,
/// the rest by `more` when a decision walks past them. Whatever is ordered is exactly the
/// head of what `order_offers` answers for the same bids and turn.
///
/// Rationale: at 10,000 campaigns a lead has hundreds of bids and sells to one; sorting
/// every bid and cloning every campaign's `Arc` into an offer cost more than eligibility.
pub struct Ranking<'m> {
    bids: Vec<BidRef<'m>>,
    /// The round-robin order, or the bids' keys still to order.
    order: Option<Order>,
    offers: Vec<Offer>,
}

impl<'m> Ranking<'m> {
    /// Orders the first `want` offers (at least one) of `bids` for `vertical.model`; see
    /// `order_offers` for the rules.
    pub fn new(
        vertical: &Vertical,
        bids: Vec<BidRef<'m>>,
        rr_order: Option<&[usize]>,
        tie_turn: u64,
        want: usize,
    ) -> Ranking<'m> {
        if vertical.model == Model::RoundRobin {
            let owned = bids.iter().map(|b| b.campaign.bid(b.amount)).collect();
            let offers = round_robin(vertical, owned, rr_order.unwrap_or(&[]));
            return Ranking { bids, order: None, offers };
        }
        let order = Order::new(vertical, bids.iter().map(|b| (b.cents(), b.tier())), tie_turn);
        let mut ranking = Ranking { bids, order: Some(order), offers: Vec::new() };
        ranking.rank(want.max(1));
        ranking
    }

    /// The offers ordered so far, in order.
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// Whether bids remain to be ordered after `offers`.
    pub fn has_more(&self) -> bool {
        self.order.as_ref().is_some_and(|o| o.ranked < o.keys.len())
    }

    /// Orders the next offers (as many again as are ordered, at least `FALLBACKS`); false
    /// when every offer was ordered already.
    pub fn more(&mut self) -> bool {
        if !self.has_more() {
            return false;
        }
        self.rank(self.offers.len().max(FALLBACKS));
        true
    }

    /// Every offer, in order.
    pub fn into_offers(mut self) -> Vec<Offer> {
        self.rank(usize::MAX);
        self.offers
    }

    fn rank(&mut self, want: usize) {
        let Some(order) = self.order.as_mut() else {
            return;
        };
        let bids = &self.bids;
        let ranked = order.rank_next(want, |i| bids[i].amount);
        self.offers
            .extend(ranked.into_iter().map(|(i, price)| Offer { bid: bids[i].campaign.bid(bids[i].amount), price }));
    }
}

/// The price-ordered models' order over bid indexes, as integer keys: sorting them sorts by
/// the model's `(amount, tier)` order with index order among exact ties, which is what the
/// tie rotation starts from.
///
/// Rationale: one `u128` per bid (the model's primary key in the high 64 bits, the
/// secondary in the next 32, the bid's index in the low 32) compares in one instruction
/// pair, and `select_nth_unstable` on it picks the head of the order without sorting the
/// tail. A run of exact ties is the same key without its index (`key >> 32`); a head is
/// always extended to the end of its last run, so rotating runs inside a head gives what
/// rotating them in the full order gives.
struct Order {
    /// `keys[..ranked]` in final order (ties rotated); `keys[ranked..]` not ordered yet.
    keys: Vec<u128>,
    ranked: usize,
    turn: u64,
    second_price: bool,
    reserve: Money,
}

impl Order {
    /// `bids`: each bid's amount in cents (`cents_of`) and tier, in bid index order.
    fn new(vertical: &Vertical, bids: impl ExactSizeIterator<Item = (i64, u32)>, turn: u64) -> Order {
        let tree = vertical.model == Model::PingTree;
        // One allocation and a plain loop: the keys of hundreds of bids were an eighth of a
        // decision as a `filter_map` collected into a growing `Vec` (issue 17).
        let mut keys: Vec<u128> = Vec::with_capacity(bids.len());
        let reserve = cents_of(vertical.reserve_price);
        // Amounts are kept to cents, so comparing cents compares amounts.
        for (i, (cents, tier)) in bids.enumerate() {
            if cents < if tree { cents_of(vertical.tier_floor(tier)) } else { reserve } {
                continue;
            }
            let (index, down) = (u128::from(i as u32), u128::from(descending(cents)));
            keys.push(if tree {
                u128::from(tier) << 96 | down << 32 | index
            } else {
                down << 64 | u128::from(tier) << 32 | index
            });
        }
        Order {
            keys,
            ranked: 0,
            turn,
            second_price: !tree && vertical.price_rule == PriceRule::SecondPrice && vertical.max_winners == 1,
            reserve: vertical.reserve_price,
        }
    }

    /// Orders at least `want` more bids (fewer only when fewer are left), up to the end of
    /// a run of ties, and answers them in order as (bid index, price).
    fn rank_next(&mut self, want: usize, amount_of: impl Fn(usize) -> Money) -> Vec<(usize, Money)> {
        let start = self.ranked;
        let rest = &mut self.keys[start..];
        let len = head_of(rest, want);
        rotate_runs(&mut rest[..len], self.turn);
        self.ranked = start + len;
        let index = |key: u128| (key as u32) as usize;
        let head = &self.keys[start..self.ranked];
        let mut ranked: Vec<(usize, Money)> = head.iter().map(|&k| (index(k), amount_of(index(k)))).collect();
        if self.second_price {
            // The next bid after the head: the best of the rest, whatever its place in its run.
            let after = self.keys[self.ranked..].iter().min().map(|&k| amount_of(index(k)));
            for i in 0..ranked.len() {
                let next = ranked.get(i + 1).map(|&(_, amount)| amount).or(after);
                ranked[i].1 = second_price_of(ranked[i].1, next, self.reserve);
            }
        }
        ranked
    }
}

/// `money.to_cents()`, without the rescale when the amount is already kept to cents (as
/// every parsed amount is): the rescale was a quarter of a decision's time (issue 17).
pub(crate) fn cents_of(money: Money) -> i64 {
    let amount = money.amount();
    if amount.scale() == MONEY_SCALE {
        if let Ok(cents) = i64::try_from(amount.mantissa()) {
            return cents;
        }
    }
    money.to_cents()
}

/// `cents` mapped to a `u64` that orders the other way round (highest amount first).
fn descending(cents: i64) -> u64 {
    !((cents as u64) ^ (1 << 63))
}

/// Puts the `want` smallest keys, and the rest of the last one's run of ties, sorted at the
/// front of `keys`; answers how many that is.
fn head_of(keys: &mut [u128], want: usize) -> usize {
    if want >= keys.len() {
        keys.sort_unstable();
        return keys.len();
    }
    if want == 0 {
        return 0;
    }
    if want <= SMALL_HEAD {
        smallest_first(keys, want);
    } else {
        keys.select_nth_unstable(want - 1);
    }
    let run = keys[want - 1] >> 32;
    let mut end = want;
    for i in want..keys.len() {
        if keys[i] >> 32 == run {
            keys.swap(i, end);
            end += 1;
        }
    }
    keys[..end].sort_unstable();
    end
}

/// Up to this many keys, `head_of` keeps the smallest in one pass instead of
/// `select_nth_unstable`.
const SMALL_HEAD: usize = 32;

/// Puts the `want` smallest keys sorted at the front of `keys` in one pass: after the first
/// few, a key rarely beats the largest kept, so the pass is one predictable compare per key.
///
/// Rationale (issue 17): a decision wants `max_winners + FALLBACKS` (usually 9) of hundreds
/// of bids; introselect partitioned the whole slice several times for them.
fn smallest_first(keys: &mut [u128], want: usize) {
    let (head, rest) = keys.split_at_mut(want);
    head.sort_unstable();
    let last = want - 1;
    for key in rest.iter_mut() {
        if *key < head[last] {
            let new = std::mem::replace(key, head[last]);
            let mut i = last;
            while i > 0 && head[i - 1] > new {
                head[i] = head[i - 1];
                i -= 1;
            }
            head[i] = new;
        }
    }
}

/// Rotates each run of exact ties (same key but the index) left by `turn`, so over
/// successive leads every tied campaign goes first in turn (DESIGN §2: never always the
/// same campaign).
fn rotate_runs(keys: &mut [u128], turn: u64) {
    let mut start = 0;
    while start < keys.len() {
        let run = keys[start] >> 32;
        let mut end = start + 1;
        while end < keys.len() && keys[end] >> 32 == run {
            end += 1;
        }
        let len = end - start;
        if len > 1 {
            keys[start..end].rotate_left((turn % len as u64) as usize);
        }
        start = end;
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

    /// The auction as it was before `Order`: a stable sort of every bid, then the tie
    /// rotation. The property tests hold `order_offers` and `Ranking` to it.
    fn order_offers_by_sort(vertical: &Vertical, bids: Vec<Bid>, tie_turn: u64) -> Vec<Offer> {
        use std::cmp::Reverse;
        fn rotate_ties(bids: &mut [Bid], turn: u64) {
            let mut start = 0;
            while start < bids.len() {
                let mut end = start + 1;
                while end < bids.len()
                    && bids[end].amount == bids[start].amount
                    && bids[end].tier() == bids[start].tier()
                {
                    end += 1;
                }
                let len = end - start;
                if len > 1 {
                    bids[start..end].rotate_left((turn % len as u64) as usize);
                }
                start = end;
            }
        }
        match vertical.model {
            Model::RoundRobin => unreachable!("not ordered by price"),
            Model::PingTree => {
                let mut bids: Vec<Bid> =
                    bids.into_iter().filter(|b| b.amount >= vertical.tier_floor(b.tier())).collect();
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

    /// Bids with few distinct amounts and tiers, so runs of exact ties are common.
    fn tied_bids() -> impl Strategy<Value = Vec<Bid>> {
        proptest::collection::vec((0i64..12, 1u32..4), 0..200).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (step, tier))| Bid {
                    campaign: CompiledCampaign::stub(&format!("c{i}"), tier),
                    amount: Money::cents(1_000 + step * 250),
                })
                .collect()
        })
    }

    fn model_of(pick: u8) -> Model {
        match pick % 3 {
            0 => Model::PingPost,
            1 => Model::Bidding,
            _ => Model::PingTree,
        }
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

        #[test]
        fn a_head_is_the_smallest_keys_sorted_with_their_last_run(
            runs in proptest::collection::vec(0u128..6, 0..300), want in 0usize..80,
        ) {
            // Keys as `Order` makes them: a few distinct runs, a unique index in the low bits.
            let mut keys: Vec<u128> = runs.iter().enumerate().map(|(i, run)| run << 32 | i as u128).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            let len = head_of(&mut keys, want);
            prop_assert!(len >= want.min(sorted.len()));
            prop_assert_eq!(&keys[..len], &sorted[..len]);
            if len > 0 && len < sorted.len() {
                prop_assert!(sorted[len] >> 32 != sorted[len - 1] >> 32, "a run of ties cut short");
            }
            let mut all = keys.clone();
            all.sort_unstable();
            prop_assert_eq!(all, sorted);
        }

        #[test]
        fn partial_selection_is_the_head_of_a_full_sort(
            bids in prop_oneof![bids(), tied_bids()], reserve in 0i64..3_000, second in any::<bool>(),
            turn in any::<u64>(), pick in any::<u8>(), want in 1usize..60, steps in 0usize..4, winners in 1u32..3,
        ) {
            let rule = if second { PriceRule::SecondPrice } else { PriceRule::FirstPrice };
            let v = vertical(model_of(pick), rule, &Money::cents(reserve).to_string(), winners);
            let expected = order_offers_by_sort(&v, bids.clone(), turn);
            prop_assert_eq!(&order_offers(&v, bids.clone(), None, turn), &expected);
            let refs: Vec<BidRef<'_>> = bids.iter().map(|b| BidRef::new(&b.campaign, b.amount)).collect();
            let mut ranking = Ranking::new(&v, refs.clone(), None, turn, want);
            prop_assert!(ranking.offers().len() >= want.min(expected.len()));
            prop_assert_eq!(ranking.offers(), &expected[..ranking.offers().len()]);
            for _ in 0..steps {
                let before = ranking.offers().len();
                let more = ranking.more();
                prop_assert_eq!(more, before < expected.len());
                prop_assert_eq!(ranking.offers(), &expected[..ranking.offers().len()]);
            }
            prop_assert_eq!(ranking.has_more(), ranking.offers().len() < expected.len());
            prop_assert_eq!(Ranking::new(&v, refs, None, turn, want).into_offers(), expected);
        }
    }
}
