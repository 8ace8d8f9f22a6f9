//! Auction models: who is offered the lead first, and at what price. (STUB: helper fills in.)

use std::sync::Arc;

use super::model::{Model, Vertical};
use super::money::Money;

/// A campaign's standing or live bid for one lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    pub campaign_id: Arc<str>,
    pub buyer_id: Arc<str>,
    pub tier: u32,
    pub weight: u32,
    pub amount: Money,
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
pub fn order_offers(_vertical: &Vertical, _bids: Vec<Bid>, _rr_order: Option<&[usize]>, _tie_turn: u64) -> Vec<Offer> {
    let _ = Model::PingPost;
    todo!()
}
