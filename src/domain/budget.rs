//! One buyer's money and cap usage: balance, holds, and what was settled in each cap window.
//!
//! A bid reserves (holds) the price and one unit of every cap of its campaign until the lead
//! is posted or the hold expires; a post settles the hold. Every check counts settled *and*
//! held amounts, so settled + held never exceeds the balance, credit limit or cap
//! (DESIGN §8.2). The book is plain data; whoever owns it serializes access (one lock per
//! buyer in memory, one Lua script per buyer key in Redis).
//!
//! Rationale for holding caps per window start: a hold remembers the windows it was counted
//! in, and settles into those same windows, so a hold taken at 23:59 and posted at 00:01 can
//! never push yesterday's count past its cap nor today's past its own.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::caps::{window_start, Cap, Limit, Window};
use super::model::{BillingMode, Buyer};
use super::money::Money;

mod holds;
pub mod lease;
mod stored;

use holds::Holds;
use lease::Lease;
pub use stored::{BookState, HoldState};

/// How a buyer pays, as far as holding money is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funding {
    pub mode: BillingMode,
    pub credit_limit: Option<Money>,
}

impl Funding {
    pub fn of(buyer: &Buyer) -> Funding {
        Funding { mode: buyer.billing.mode, credit_limit: buyer.billing.credit_limit }
    }
}

/// Who ends a hold. A ping's hold waits for a post that may come minutes later to any
/// node, so it lives in the buyer's shared book; a hold that the same request settles or
/// releases (a direct post, or a post's fallback) may be taken from this node's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldScope {
    #[default]
    Request,
    Ping,
}

/// What a campaign asks the book to reserve for one lead.
#[derive(Debug, Clone)]
pub struct HoldRequest<'a> {
    pub hold_id: String,
    pub campaign_id: &'a str,
    pub price: Money,
    pub funding: Funding,
    pub caps: &'a [Cap],
    pub tz: Tz,
    pub expires_at: DateTime<Utc>,
    pub scope: HoldScope,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefusal {
    #[error("balance does not cover the price")]
    InsufficientBalance,
    #[error("credit limit reached")]
    CreditLimit,
    #[error("cap {0} reached")]
    CapReached(&'static str),
}

impl HoldRefusal {
    /// The bounded reason code used in traces and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            HoldRefusal::InsufficientBalance => "insufficient_balance",
            HoldRefusal::CreditLimit => "credit_limit",
            HoldRefusal::CapReached(_) => "cap_reached",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    #[error("hold not found (expired or already settled)")]
    UnknownHold,
}

#[derive(Debug, Clone, PartialEq)]
struct Hold {
    campaign_id: String,
    /// What the balance is reduced by on settle: the price, or zero for internal buyers.
    charge: Money,
    /// What spend caps count: the price, also for internal buyers.
    spend: Money,
    expires_at: DateTime<Utc>,
    windows: Vec<WindowKey>,
}

/// A cap window of one campaign, identified by the instant it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct WindowKey {
    window: Window,
    start: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub count: u32,
    pub spend: Money,
}

/// A sale read back from the journal, as a buyer's book counts it: the price (charged
/// unless the buyer is internal) and the cap windows of its campaign at `sold_at`.
#[derive(Debug, Clone, Copy)]
pub struct ReplayedSale<'a> {
    pub campaign_id: &'a str,
    pub price: Money,
    pub charged: bool,
    pub caps: &'a [Cap],
    pub tz: Tz,
    pub sold_at: DateTime<Utc>,
}

/// The outcome of a settled hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub charged: Money,
    pub balance_after: Money,
    /// Set when the hold was taken from a node's lease: what the sale draws from it, to be
    /// counted with the sale where the ledger records it (`lease`).
    pub lease: Option<lease::LeaseCharge>,
}

/// Balance as a buyer sees it (`GET /v1/buyer/balance`): `held` counts holds and the
/// unspent part of nodes' leases, of which `leased` is the latter; `available` is what no
/// one holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceView {
    pub balance: Money,
    pub held: Money,
    pub leased: Money,
    pub available: Money,
}

#[derive(Debug, Default, Clone)]
pub struct BuyerBook {
    /// Prepaid: money paid in minus money spent. Invoice: payments minus sales, so it goes
    /// negative as the buyer runs up what it owes.
    balance: Money,
    holds: Holds,
    /// Settled usage per campaign and cap window; old windows are pruned.
    usage: HashMap<String, HashMap<WindowKey, Usage>>,
    /// What nodes took in advance (several nodes on Redis), by lease id: counted in full
    /// against the balance and caps until retired with what was sold from them.
    leases: BTreeMap<String, Lease>,
    /// When `usage` is next pruned of old windows: at most hourly, as a hold needs no more.
    next_prune: Option<DateTime<Utc>>,
}

impl BuyerBook {
    pub fn new(balance: Money) -> BuyerBook {
        BuyerBook { balance, ..BuyerBook::default() }
    }

    pub fn balance(&self) -> Money {
        self.balance
    }

    pub fn held(&self) -> Money {
        self.holds.charge()
    }

    pub fn hold_count(&self) -> usize {
        self.holds.len()
    }

    /// Whether hold `hold_id` is open and at hand.
    pub fn has_hold(&self, hold_id: &str) -> bool {
        self.holds.contains(hold_id)
    }

    /// The balance as one node sees it; leases count in full (their sales are not known
    /// here: `view_with_usage` takes them into account).
    pub fn view(&mut self, now: DateTime<Utc>, funding: Funding) -> BalanceView {
        self.view_with_usage(now, funding, &BTreeMap::new())
    }

    /// What is held: the holds' charges and the leases' money.
    fn reserved(&self) -> Money {
        self.held() + self.leases.values().map(|lease| lease.money).sum::<Money>()
    }

    fn available(&self, funding: Funding, held: Money) -> Money {
        spendable(self.balance, funding, held)
    }

    pub fn top_up(&mut self, amount: Money) -> Money {
        self.balance += amount;
        self.balance
    }

    /// Reserves the price and a unit of each cap, or says which limit refuses. Answers what
    /// is available after the hold (for the balance gauge, without a second look).
    pub fn try_hold(&mut self, now: DateTime<Utc>, request: HoldRequest<'_>) -> Result<Money, HoldRefusal> {
        self.expire(now);
        let charge = match request.funding.mode {
            BillingMode::Internal => Money::ZERO,
            BillingMode::Prepaid | BillingMode::Invoice => request.price,
        };
        self.check_money(request.funding, charge)?;
        let windows = self.check_caps(now, &request)?;
        self.holds.insert(
            request.hold_id,
            Hold {
                campaign_id: request.campaign_id.to_string(),
                charge,
                spend: request.price,
                expires_at: request.expires_at,
                windows,
            },
        );
        let available = self.available(request.funding, self.reserved());
        // Invariant 2: a limited buyer never has more held than it may spend.
        debug_assert!(
            available >= Money::ZERO
                || matches!(request.funding.mode, BillingMode::Internal)
                || (request.funding.mode == BillingMode::Invoice && request.funding.credit_limit.is_none()),
            "a hold past what is available"
        );
        Ok(available)
    }

    fn check_money(&self, funding: Funding, charge: Money) -> Result<(), HoldRefusal> {
        let held = self.reserved();
        match (funding.mode, funding.credit_limit) {
            (BillingMode::Internal, _) | (BillingMode::Invoice, None) => Ok(()),
            (BillingMode::Prepaid, _) if self.balance - held < charge => Err(HoldRefusal::InsufficientBalance),
            (BillingMode::Invoice, Some(limit)) if self.balance + limit - held < charge => {
                Err(HoldRefusal::CreditLimit)
            }
            _ => Ok(()),
        }
    }

    fn check_caps(&self, now: DateTime<Utc>, request: &HoldRequest<'_>) -> Result<Vec<WindowKey>, HoldRefusal> {
        let mut windows = Vec::with_capacity(request.caps.len());
        for cap in request.caps {
            let key = WindowKey { window: cap.window, start: window_start(cap.window, now, request.tz) };
            let used = self.used(request.campaign_id, key);
            let fits = match cap.limit {
                Limit::Count(max) => used.count.saturating_add(1) <= max,
                Limit::Spend(max) => used.spend + request.price <= max,
            };
            if !fits {
                return Err(HoldRefusal::CapReached(cap.name));
            }
            if !windows.contains(&key) {
                windows.push(key);
            }
        }
        Ok(windows)
    }

    /// Settled plus held plus leased usage of one campaign in one window.
    fn used(&self, campaign_id: &str, key: WindowKey) -> Usage {
        let mut used = self.usage.get(campaign_id).and_then(|w| w.get(&key)).copied().unwrap_or_default();
        let held = self.holds.usage(campaign_id, &key);
        used.count += held.count;
        used.spend += held.spend;
        for lease in self.leases.values() {
            for leased in lease.windows.iter().filter(|w| w.campaign_id == campaign_id && w.key == key) {
                used.count = used.count.saturating_add(leased.count);
                used.spend += leased.spend;
            }
        }
        used
    }

    /// Counts `usage` in a cap window of a campaign, as settled.
    fn count_usage(&mut self, campaign_id: &str, key: WindowKey, usage: Usage) {
        let used = self.usage.entry(campaign_id.to_string()).or_default().entry(key).or_default();
        used.count = used.count.saturating_add(usage.count);
        used.spend += usage.spend;
    }

    /// Turns a hold into a sale: the balance pays, the cap windows count it.
    pub fn settle(&mut self, hold_id: &str) -> Result<Settled, SettleError> {
        let hold = self.holds.remove(hold_id).ok_or(SettleError::UnknownHold)?;
        self.balance -= hold.charge;
        let windows = self.usage.entry(hold.campaign_id).or_default();
        for key in hold.windows {
            let used = windows.entry(key).or_default();
            used.count += 1;
            used.spend += hold.spend;
        }
        Ok(Settled { charged: hold.charge, balance_after: self.balance, lease: None })
    }

    /// Books a sale read back from the journal: the balance pays and the cap windows of
    /// `sold_at` count it, as `settle` did when it happened.
    pub fn replay_sale(&mut self, sale: &ReplayedSale<'_>) {
        if sale.charged {
            self.balance -= sale.price;
        }
        let windows = self.usage.entry(sale.campaign_id.to_string()).or_default();
        let mut counted = Vec::with_capacity(sale.caps.len());
        for cap in sale.caps {
            let key = WindowKey { window: cap.window, start: window_start(cap.window, sale.sold_at, sale.tz) };
            if !counted.contains(&key) {
                counted.push(key);
                let used = windows.entry(key).or_default();
                used.count += 1;
                used.spend += sale.price;
            }
        }
    }

    /// Gives a hold back; releasing an unknown hold is a no-op (it may have expired).
    pub fn release(&mut self, hold_id: &str) -> bool {
        self.holds.remove(hold_id).is_some()
    }

    /// Drops expired holds and cap windows that ended long ago.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        self.holds.expire(now);
        if self.next_prune.is_some_and(|next| now < next) {
            return;
        }
        self.next_prune = Some(now + chrono::Duration::hours(1));
        // A month window is at most 31 days plus a DST hour; keep 40 days of history.
        let horizon = now - chrono::Duration::days(40);
        for windows in self.usage.values_mut() {
            windows.retain(|key, _| key.start > horizon);
        }
        self.usage.retain(|_, windows| !windows.is_empty());
    }
}

/// What a buyer with `balance` may still spend while `held` is held.
fn spendable(balance: Money, funding: Funding, held: Money) -> Money {
    match (funding.mode, funding.credit_limit) {
        (BillingMode::Invoice, Some(limit)) => balance + limit - held,
        _ => balance - held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(super) fn prepaid() -> Funding {
        Funding { mode: BillingMode::Prepaid, credit_limit: None }
    }

    pub(super) fn request<'a>(id: &str, price: &str, caps: &'a [Cap], expires_at: DateTime<Utc>) -> HoldRequest<'a> {
        HoldRequest {
            hold_id: id.to_string(),
            campaign_id: "c1",
            price: Money::parse(price).unwrap(),
            funding: prepaid(),
            caps,
            tz: chrono_tz::Europe::Berlin,
            expires_at,
            scope: HoldScope::Request,
        }
    }

    #[test]
    fn holds_count_against_the_balance_until_released() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let later = now + chrono::Duration::seconds(60);
        let mut book = BuyerBook::new(Money::parse("100.00").unwrap());
        book.try_hold(now, request("h1", "60.00", &[], later)).unwrap();
        assert_eq!(book.try_hold(now, request("h2", "60.00", &[], later)), Err(HoldRefusal::InsufficientBalance));
        assert!(book.release("h1"));
        book.try_hold(now, request("h2", "60.00", &[], later)).unwrap();
        let settled = book.settle("h2").unwrap();
        assert_eq!(settled.balance_after, Money::parse("40.00").unwrap());
        assert_eq!(book.settle("h2"), Err(SettleError::UnknownHold));
    }

    #[test]
    fn expired_holds_free_the_balance() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let mut book = BuyerBook::new(Money::parse("50.00").unwrap());
        book.try_hold(now, request("h1", "50.00", &[], now + chrono::Duration::seconds(60))).unwrap();
        let view = book.view(now, prepaid());
        assert_eq!(view.available, Money::ZERO);
        let view = book.view(now + chrono::Duration::seconds(60), prepaid());
        assert_eq!(view.available, Money::parse("50.00").unwrap());
    }

    #[test]
    fn internal_buyers_are_never_charged_but_caps_count() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let caps = [Cap { window: Window::Day, limit: Limit::Count(1), name: "daily" }];
        let mut book = BuyerBook::new(Money::ZERO);
        let mut req = request("h1", "38.00", &caps, now + chrono::Duration::seconds(60));
        req.funding = Funding { mode: BillingMode::Internal, credit_limit: None };
        book.try_hold(now, req.clone()).unwrap();
        assert_eq!(book.settle("h1").unwrap().charged, Money::ZERO);
        req.hold_id = "h2".into();
        assert_eq!(book.try_hold(now, req), Err(HoldRefusal::CapReached("daily")));
    }

    #[test]
    fn a_replayed_sale_counts_like_a_settled_one() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let caps = [Cap { window: Window::Day, limit: Limit::Count(1), name: "daily" }];
        let mut book = BuyerBook::new(Money::parse("100.00").unwrap());
        book.replay_sale(&ReplayedSale {
            campaign_id: "c1",
            price: Money::parse("38.00").unwrap(),
            charged: true,
            caps: &caps,
            tz: chrono_tz::Europe::Berlin,
            sold_at: now,
        });
        assert_eq!(book.balance(), Money::parse("62.00").unwrap());
        let refused = book.try_hold(now, request("h1", "1.00", &caps, now + chrono::Duration::seconds(60)));
        assert_eq!(refused, Err(HoldRefusal::CapReached("daily")), "the replayed sale used today's cap");
    }

    #[test]
    fn invoice_buyers_stay_under_their_credit_limit() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let funding = Funding { mode: BillingMode::Invoice, credit_limit: Some(Money::parse("100.00").unwrap()) };
        let mut book = BuyerBook::new(Money::ZERO);
        for i in 0..2 {
            let mut req = request(&format!("h{i}"), "50.00", &[], now + chrono::Duration::seconds(60));
            req.funding = funding;
            book.try_hold(now, req).unwrap();
            book.settle(&format!("h{i}")).unwrap();
        }
        let mut req = request("h3", "0.01", &[], now + chrono::Duration::seconds(60));
        req.funding = funding;
        assert_eq!(book.try_hold(now, req), Err(HoldRefusal::CreditLimit));
        assert_eq!(book.view(now, funding).available, Money::ZERO);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        #[derive(Debug, Clone)]
        enum Op {
            Hold { cents: i64 },
            Settle(usize),
            Release(usize),
            Advance { minutes: i64 },
            TopUp { cents: i64 },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (1i64..5_000).prop_map(|cents| Op::Hold { cents }),
                3 => (0usize..16).prop_map(Op::Settle),
                1 => (0usize..16).prop_map(Op::Release),
                2 => (0i64..600).prop_map(|minutes| Op::Advance { minutes }),
                1 => (1i64..3_000).prop_map(|cents| Op::TopUp { cents }),
            ]
        }

        proptest! {
            /// DESIGN §8.2 for any sequence of holds, settles, releases, expiries and
            /// top-ups: available never goes below zero, money is conserved, and no local
            /// day (Europe/Berlin, across DST) settles more leads than the daily cap.
            #[test]
            fn no_sequence_overspends_or_exceeds_a_cap(ops in proptest::collection::vec(op(), 1..120), start_minute in 0i64..525_600) {
                let caps = [Cap { window: Window::Day, limit: Limit::Count(3), name: "daily" },
                            Cap { window: Window::Month, limit: Limit::Spend(Money::cents(20_000)), name: "monthly_spend" }];
                let mut now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(start_minute);
                let mut book = BuyerBook::new(Money::cents(10_000));
                let mut paid_in = Money::cents(10_000);
                let mut spent = Money::ZERO;
                let mut open: Vec<(String, Money, DateTime<Utc>)> = Vec::new();
                let mut settled_per_day: HashMap<DateTime<Utc>, u32> = HashMap::new();
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Hold { cents } => {
                            let id = format!("h{n}");
                            let req = HoldRequest { hold_id: id.clone(), campaign_id: "c1", price: Money::cents(cents), funding: prepaid(), caps: &caps, tz: chrono_tz::Europe::Berlin, expires_at: now + chrono::Duration::minutes(90), scope: HoldScope::Request };
                            if book.try_hold(now, req).is_ok() {
                                open.push((id, Money::cents(cents), now));
                            }
                        }
                        Op::Settle(i) if i < open.len() => {
                            let (id, price, held_at) = open.remove(i);
                            if book.settle(&id).is_ok() {
                                spent += price;
                                *settled_per_day.entry(window_start(Window::Day, held_at, chrono_tz::Europe::Berlin)).or_default() += 1;
                            }
                        }
                        Op::Release(i) if i < open.len() => {
                            let (id, _, _) = open.remove(i);
                            book.release(&id);
                        }
                        Op::Advance { minutes } => now += chrono::Duration::minutes(minutes),
                        Op::TopUp { cents } => {
                            book.top_up(Money::cents(cents));
                            paid_in += Money::cents(cents);
                        }
                        _ => {}
                    }
                    let view = book.view(now, prepaid());
                    prop_assert!(view.available >= Money::ZERO, "available {} after {:?}", view.available, n);
                    prop_assert_eq!(view.balance, paid_in - spent);
                    prop_assert!(settled_per_day.values().all(|&count| count <= 3), "{:?}", settled_per_day);
                }
            }
        }
    }
}
