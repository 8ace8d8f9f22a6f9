//! Auction models. (TEMPORARY local version)

use std::sync::Arc;

use super::model::{Model, PriceRule, Vertical};
use super::money::Money;

#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    pub campaign_id: Arc<str>,
    pub buyer_id: Arc<str>,
    pub tier: u32,
    pub weight: u32,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub bid: Bid,
    pub price: Money,
}

pub fn order_offers(vertical: &Vertical, bids: Vec<Bid>, rr_order: Option<&[usize]>, tie_turn: u64) -> Vec<Offer> {
    match vertical.model {
        Model::RoundRobin => {
            let order = rr_order.unwrap_or(&[]);
            order
                .iter()
                .filter_map(|&i| bids.get(i))
                .filter(|b| b.amount >= vertical.reserve_price)
                .map(|b| Offer { bid: b.clone(), price: b.amount })
                .collect()
        }
        Model::PingTree => {
            let mut bids: Vec<Bid> = bids.into_iter().filter(|b| b.amount >= vertical.tier_floor(b.tier)).collect();
            bids.sort_by(|a, b| {
                a.tier.cmp(&b.tier).then(b.amount.cmp(&a.amount)).then(a.campaign_id.cmp(&b.campaign_id))
            });
            rotate_ties(&mut bids, tie_turn);
            bids.into_iter().map(|b| Offer { price: b.amount, bid: b }).collect()
        }
        Model::PingPost | Model::Bidding => {
            let mut bids: Vec<Bid> = bids.into_iter().filter(|b| b.amount >= vertical.reserve_price).collect();
            bids.sort_by(|a, b| {
                b.amount.cmp(&a.amount).then(a.tier.cmp(&b.tier)).then(a.campaign_id.cmp(&b.campaign_id))
            });
            rotate_ties(&mut bids, tie_turn);
            let second = vertical.price_rule == PriceRule::SecondPrice && vertical.max_winners == 1;
            (0..bids.len())
                .map(|i| {
                    let bid = bids[i].clone();
                    let price = if !second {
                        bid.amount
                    } else {
                        match bids.get(i + 1) {
                            Some(next) => bid.amount.min((next.amount + Money::cents(1)).max(vertical.reserve_price)),
                            None if !vertical.reserve_price.is_zero() => vertical.reserve_price.min(bid.amount),
                            None => bid.amount,
                        }
                    };
                    Offer { bid, price }
                })
                .collect()
        }
    }
}

fn rotate_ties(bids: &mut [Bid], turn: u64) {
    let mut start = 0;
    while start < bids.len() {
        let mut end = start + 1;
        while end < bids.len() && bids[end].amount == bids[start].amount && bids[end].tier == bids[start].tier {
            end += 1;
        }
        let len = end - start;
        if len > 1 {
            bids[start..end].rotate_left((turn % len as u64) as usize);
        }
        start = end;
    }
}
