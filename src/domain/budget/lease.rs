//! Budget leases (DESIGN §9): what a node takes from a buyer's shared book in advance, so
//! that it can hold and settle that buyer's sales without a round trip to Redis each time.
//!
//! The shared book counts a lease in full (its money against the balance or credit limit,
//! its units against the caps) until the lease is retired, and a node never holds past what
//! its lease allows, so settled + held + leased never exceeds the balance or a cap on any
//! number of nodes (invariant 2). What was sold from a lease is counted where the sale is
//! recorded, as `LeaseCharge` counters beside the ledger entry, in the same atomic step;
//! a lease is retired with those counters once no sale can be added to them any more. So
//! the lease of a node that died returns exactly what it did not sell: no sale is charged
//! twice or not at all.
//!
//! Two halves: `BuyerBook`'s side (grant, renew, retire, the balance view) for the shared
//! book, and `NodeLeases`, one node's leases of one buyer with the holds it took from them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::stored::WindowCode;
use super::Window;
use super::{spendable, BalanceView, BillingMode, BuyerBook, Funding, HoldRefusal, HoldRequest, Usage, WindowKey};
use crate::domain::caps::{window_start, Cap, Limit};
use crate::domain::money::Money;

/// What a node asks of a buyer's shared book: `units` more sales of one campaign at one
/// price, on top of what its lease `lease_id` already holds.
#[derive(Debug, Clone)]
pub struct LeaseRequest<'a> {
    pub lease_id: &'a str,
    pub node: &'a str,
    pub campaign_id: &'a str,
    pub price: Money,
    pub funding: Funding,
    pub caps: &'a [Cap],
    pub tz: Tz,
    pub units: u32,
    pub expires_at: DateTime<Utc>,
    /// The node asks to extend a lease it holds: if the book no longer has it (retired as
    /// expired), it is not opened again under the same id, whose sales are fenced off.
    pub extends: bool,
}

/// A lease as the shared book keeps it: money and, per cap window of a campaign, sales
/// and spend, reserved for one node until `expires_at` (renewed while the node uses it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub money: Money,
    /// Append-only while the lease lives: a sale's counters name windows by index.
    pub windows: Vec<LeasedWindow>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedWindow {
    pub campaign_id: String,
    pub(super) key: WindowKey,
    pub count: u32,
    pub spend: Money,
}

/// What one sale drew from its lease: carried with the sale to where it is recorded, whose
/// counters (`counters`) become the lease's `LeaseUsage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCharge {
    pub lease_id: String,
    pub charge: Money,
    /// The lease windows the sale counts in, by index, with what it spent in each.
    pub windows: Vec<(u32, Money)>,
}

/// What was sold from one lease: the sum of its sales' `LeaseCharge`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseUsage {
    pub charge: Money,
    pub windows: BTreeMap<usize, Usage>,
}

/// The counter that sums charged cents; `c<i>` and `s<i>` count sales and spent cents in
/// the lease's window `i`.
const CHARGE_COUNTER: &str = "m";

impl LeaseCharge {
    /// The increments this sale adds to its lease's counters (integer cents: exact).
    pub fn counters(&self) -> Vec<(String, i64)> {
        let mut counters = vec![(CHARGE_COUNTER.to_string(), self.charge.to_cents())];
        for (index, spend) in &self.windows {
            counters.push((format!("c{index}"), 1));
            counters.push((format!("s{index}"), spend.to_cents()));
        }
        counters
    }
}

impl LeaseUsage {
    /// Reads a lease's counters back; a name it does not know is an error, never ignored.
    pub fn from_counters<'a>(counters: impl IntoIterator<Item = (&'a str, i64)>) -> Result<LeaseUsage, String> {
        let mut usage = LeaseUsage::default();
        for (name, value) in counters {
            if name == CHARGE_COUNTER {
                usage.charge = Money::cents(value);
                continue;
            }
            let (kind, index) = name.split_at(name.len().min(1));
            let index: usize = index.parse().map_err(|_| format!("unknown lease counter {name:?}"))?;
            let window = usage.windows.entry(index).or_default();
            match kind {
                "c" => window.count = u32::try_from(value).map_err(|_| format!("lease counter {name} is {value}"))?,
                "s" => window.spend = Money::cents(value),
                _ => return Err(format!("unknown lease counter {name:?}")),
            }
        }
        Ok(usage)
    }

    /// Counts one more sale.
    pub fn add(&mut self, charge: &LeaseCharge) {
        self.charge += charge.charge;
        for (index, spend) in &charge.windows {
            let window = self.windows.entry(*index as usize).or_default();
            window.count += 1;
            window.spend += *spend;
        }
    }
}

fn charge_of(funding: Funding, price: Money) -> Money {
    match funding.mode {
        BillingMode::Internal => Money::ZERO,
        BillingMode::Prepaid | BillingMode::Invoice => price,
    }
}

fn times(amount: Money, units: u32) -> Money {
    Money::from_decimal(amount.amount() * Decimal::from(units))
}

/// How many whole `part`s fit in `whole` (`part` > 0).
fn fits(whole: Money, part: Money) -> u32 {
    (whole.amount() / part.amount()).floor().to_u32().unwrap_or(u32::MAX)
}

/// The distinct cap windows of a campaign at `now`.
fn window_keys(caps: &[Cap], now: DateTime<Utc>, tz: Tz) -> Vec<WindowKey> {
    let mut keys: Vec<WindowKey> = Vec::with_capacity(caps.len());
    for cap in caps {
        let key = WindowKey { window: cap.window, start: window_start(cap.window, now, tz) };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

impl BuyerBook {
    /// Grants a node up to `request.units` more sales (and at least one), extending its
    /// lease, or says which limit leaves not even one. A node gets at most a quarter of
    /// what is left, so other nodes are served too, and once little is left every lease is
    /// a single sale: the last euro is sold as if there were no leases. `None`: the lease
    /// to extend is gone (retired); the node must open another.
    pub fn grant_lease(
        &mut self,
        now: DateTime<Utc>,
        request: &LeaseRequest<'_>,
    ) -> Result<Option<Lease>, HoldRefusal> {
        self.expire(now);
        if request.extends && !self.leases.contains_key(request.lease_id) {
            return Ok(None);
        }
        let charge = charge_of(request.funding, request.price);
        self.check_money(request.funding, charge)?;
        let mut fit = u32::MAX;
        let limited = matches!(
            (request.funding.mode, request.funding.credit_limit),
            (BillingMode::Prepaid, _) | (BillingMode::Invoice, Some(_))
        );
        if limited && charge > Money::ZERO {
            fit = fit.min(fits(spendable(self.balance, request.funding, self.reserved()), charge));
        }
        let keys = window_keys(request.caps, now, request.tz);
        for cap in request.caps {
            let key = WindowKey { window: cap.window, start: window_start(cap.window, now, request.tz) };
            let used = self.used(request.campaign_id, key);
            let free = match cap.limit {
                Limit::Count(max) => max.saturating_sub(used.count),
                Limit::Spend(max) if request.price > Money::ZERO => {
                    if max - used.spend < request.price {
                        0
                    } else {
                        fits(max - used.spend, request.price)
                    }
                }
                Limit::Spend(max) => {
                    if used.spend <= max {
                        u32::MAX
                    } else {
                        0
                    }
                }
            };
            if free == 0 {
                return Err(HoldRefusal::CapReached(cap.name));
            }
            fit = fit.min(free);
        }
        let units = request.units.max(1).min((fit / 4).max(1));
        let lease = self.leases.entry(request.lease_id.to_string()).or_insert_with(|| Lease {
            node: request.node.to_string(),
            money: Money::ZERO,
            windows: Vec::new(),
            expires_at: request.expires_at,
        });
        lease.money += times(charge, units);
        for key in keys {
            let index = match lease.windows.iter().position(|w| w.campaign_id == request.campaign_id && w.key == key) {
                Some(index) => index,
                None => {
                    let window = LeasedWindow {
                        campaign_id: request.campaign_id.to_string(),
                        key,
                        count: 0,
                        spend: Money::ZERO,
                    };
                    lease.windows.push(window);
                    lease.windows.len() - 1
                }
            };
            let window = &mut lease.windows[index];
            window.count = window.count.saturating_add(units);
            window.spend += times(request.price, units);
        }
        lease.expires_at = lease.expires_at.max(request.expires_at);
        Ok(Some(lease.clone()))
    }

    /// Moves a lease's expiry to `expires_at`; answers it, or `None` when it is gone.
    pub fn renew_lease(&mut self, lease_id: &str, expires_at: DateTime<Utc>) -> Option<Lease> {
        let lease = self.leases.get_mut(lease_id)?;
        lease.expires_at = lease.expires_at.max(expires_at);
        Some(lease.clone())
    }

    /// Retires a lease with what was sold from it: the balance pays for those sales, the cap
    /// windows count them, and the rest is free again. A lease already retired is left
    /// alone (false), so a retirement may be repeated.
    pub fn retire_lease(&mut self, lease_id: &str, sold: &LeaseUsage) -> bool {
        let Some(lease) = self.leases.remove(lease_id) else { return false };
        self.balance -= sold.charge;
        for (index, usage) in &sold.windows {
            if let Some(window) = lease.windows.get(*index) {
                self.count_usage(&window.campaign_id, window.key, *usage);
            }
        }
        true
    }

    /// The leases whose node has not renewed them in time.
    pub fn expired_leases(&self, now: DateTime<Utc>) -> Vec<String> {
        self.leases.iter().filter(|(_, lease)| lease.expires_at <= now).map(|(id, _)| id.clone()).collect()
    }

    pub fn lease_ids(&self) -> Vec<String> {
        self.leases.keys().cloned().collect()
    }

    /// The balance with what was sold from live leases so far (`sold`, by lease id):
    /// `balance` counts those sales, `held` the holds and the leases' unsold rest, `leased`
    /// that rest alone.
    pub fn view_with_usage(
        &mut self,
        now: DateTime<Utc>,
        funding: Funding,
        sold: &BTreeMap<String, LeaseUsage>,
    ) -> BalanceView {
        self.expire(now);
        let mut balance = self.balance;
        let mut leased = Money::ZERO;
        for (id, lease) in &self.leases {
            let spent = sold.get(id).map_or(Money::ZERO, |usage| usage.charge);
            balance -= spent;
            leased += (lease.money - spent).max(Money::ZERO);
        }
        let held = self.held() + leased;
        BalanceView { balance, held, leased, available: spendable(balance, funding, held) }
    }

    /// How `campaign_id` stands against each of `caps` in the window containing `now`:
    /// what was sold (settled, and sold from live leases per `sold`) and what is reserved
    /// but not sold yet (holds, and the leases' unsold rest). Their sum is what the next
    /// hold is checked against.
    pub fn cap_standings(
        &self,
        campaign_id: &str,
        caps: &[Cap],
        tz: Tz,
        now: DateTime<Utc>,
        sold: &BTreeMap<String, LeaseUsage>,
    ) -> Vec<CapStanding> {
        caps.iter()
            .map(|cap| {
                let key = WindowKey { window: cap.window, start: window_start(cap.window, now, tz) };
                let mut standing = CapStanding {
                    cap: *cap,
                    sold: self.usage.get(campaign_id).and_then(|w| w.get(&key)).copied().unwrap_or_default(),
                    reserved: Usage::default(),
                };
                standing.reserved = self.holds.usage(campaign_id, &key);
                for (id, lease) in &self.leases {
                    let windows = lease.windows.iter().enumerate();
                    for (index, leased) in windows.filter(|(_, w)| w.campaign_id == campaign_id && w.key == key) {
                        let used =
                            sold.get(id).and_then(|usage| usage.windows.get(&index)).copied().unwrap_or_default();
                        standing.sold.count = standing.sold.count.saturating_add(used.count);
                        standing.sold.spend += used.spend;
                        standing.reserved.count =
                            standing.reserved.count.saturating_add(leased.count.saturating_sub(used.count));
                        standing.reserved.spend += (leased.spend - used.spend).max(Money::ZERO);
                    }
                }
                standing
            })
            .collect()
    }
}

/// How a campaign stands against one of its caps in the current window (the buyer portal's
/// "caps used today").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapStanding {
    pub cap: Cap,
    pub sold: Usage,
    pub reserved: Usage,
}

/// A lease as stored in a `BookState`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct LeaseState {
    id: String,
    node: String,
    money: Money,
    expires_at: DateTime<Utc>,
    windows: Vec<LeasedWindowState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LeasedWindowState {
    campaign: String,
    window: WindowCode,
    start: DateTime<Utc>,
    count: u32,
    spend: Money,
}

impl LeaseState {
    pub(super) fn of(id: &str, lease: &Lease) -> LeaseState {
        LeaseState {
            id: id.to_string(),
            node: lease.node.clone(),
            money: lease.money,
            expires_at: lease.expires_at,
            windows: lease
                .windows
                .iter()
                .map(|w| LeasedWindowState {
                    campaign: w.campaign_id.clone(),
                    window: w.key.window.into(),
                    start: w.key.start,
                    count: w.count,
                    spend: w.spend,
                })
                .collect(),
        }
    }

    pub(super) fn into_lease(self) -> (String, Lease) {
        let windows = self
            .windows
            .into_iter()
            .map(|w| LeasedWindow {
                campaign_id: w.campaign,
                key: WindowKey { window: Window::from(w.window), start: w.start },
                count: w.count,
                spend: w.spend,
            })
            .collect();
        (self.id, Lease { node: self.node, money: self.money, windows, expires_at: self.expires_at })
    }
}

// ------------------------------------------------------------------ one node's side

/// Why a node cannot hold from its leases: it must ask the shared book first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// No lease to hold from (none yet, or it is closing or past its use).
    NoLease,
    /// The lease has not enough money or units left for this hold.
    Exhausted,
}

/// One node's leases of one buyer: the newest takes new holds; older ones only see their
/// open holds settled or released before they are retired.
#[derive(Debug, Default)]
pub struct NodeLeases {
    leases: Vec<LocalLease>,
}

#[derive(Debug)]
struct LocalLease {
    id: String,
    granted: Lease,
    /// The funding and each campaign's caps the lease was granted under: a hold under
    /// other terms (an admin changed them) needs a lease granted under those.
    terms: Vec<Terms>,
    /// What the sales settled from it drew, window by window as `granted.windows`.
    used_charge: Money,
    used: Vec<Usage>,
    holds: HashMap<String, LocalHold>,
    opened_at: DateTime<Utc>,
    usable_until: DateTime<Utc>,
    last_active: DateTime<Utc>,
    closing: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Terms {
    campaign_id: String,
    funding: Funding,
    caps: Vec<Cap>,
}

#[derive(Debug)]
struct LocalHold {
    charge: Money,
    spend: Money,
    windows: Vec<usize>,
}

impl LocalLease {
    fn money_left(&self) -> Money {
        self.granted.money - self.used_charge - self.holds.values().map(|hold| hold.charge).sum::<Money>()
    }

    /// Sales and spend of window `index`, settled and held.
    fn window_used(&self, index: usize) -> Usage {
        let mut used = self.used.get(index).copied().unwrap_or_default();
        for hold in self.holds.values().filter(|hold| hold.windows.contains(&index)) {
            used.count += 1;
            used.spend += hold.spend;
        }
        used
    }
}

impl NodeLeases {
    /// Holds from the newest lease, or says what the shared book must grant first. Answers
    /// the money left in the lease after the hold. A lease granted under other funding or
    /// other caps of the campaign closes: what it holds was counted under the old terms.
    pub fn try_hold(&mut self, now: DateTime<Utc>, request: &HoldRequest<'_>) -> Result<Money, Shortfall> {
        let lease = match self.leases.last_mut() {
            Some(lease) if !lease.closing && now < lease.usable_until => lease,
            _ => return Err(Shortfall::NoLease),
        };
        match lease.terms.iter().find(|terms| terms.campaign_id == request.campaign_id) {
            Some(terms) if terms.funding != request.funding || terms.caps != request.caps => {
                lease.closing = true;
                return Err(Shortfall::NoLease);
            }
            Some(_) => {}
            None if lease.terms.iter().any(|terms| terms.funding != request.funding) => {
                lease.closing = true;
                return Err(Shortfall::NoLease);
            }
            None => return Err(Shortfall::Exhausted),
        }
        let charge = charge_of(request.funding, request.price);
        let left = lease.money_left();
        if charge > left {
            return Err(Shortfall::Exhausted);
        }
        let mut windows = Vec::with_capacity(request.caps.len());
        for key in window_keys(request.caps, now, request.tz) {
            let position =
                lease.granted.windows.iter().position(|w| w.campaign_id == request.campaign_id && w.key == key);
            let Some(index) = position else { return Err(Shortfall::Exhausted) };
            let (granted, used) = (&lease.granted.windows[index], lease.window_used(index));
            if used.count >= granted.count || used.spend + request.price > granted.spend {
                return Err(Shortfall::Exhausted);
            }
            windows.push(index);
        }
        lease.holds.insert(request.hold_id.clone(), LocalHold { charge, spend: request.price, windows });
        lease.last_active = now;
        Ok(left - charge)
    }

    /// Turns a hold into a sale of its lease; `None` when no lease of this node holds it.
    pub fn settle(&mut self, hold_id: &str, now: DateTime<Utc>) -> Option<LeaseCharge> {
        let lease = self.leases.iter_mut().find(|lease| lease.holds.contains_key(hold_id))?;
        let hold = lease.holds.remove(hold_id)?;
        lease.used_charge += hold.charge;
        let mut windows = Vec::with_capacity(hold.windows.len());
        for index in hold.windows {
            if lease.used.len() <= index {
                lease.used.resize(index + 1, Usage::default());
            }
            lease.used[index].count += 1;
            lease.used[index].spend += hold.spend;
            windows.push((index as u32, hold.spend));
        }
        lease.last_active = now;
        Some(LeaseCharge { lease_id: lease.id.clone(), charge: hold.charge, windows })
    }

    /// Gives a hold back to its lease; false when no lease of this node holds it.
    pub fn release(&mut self, hold_id: &str) -> bool {
        self.leases.iter_mut().any(|lease| lease.holds.remove(hold_id).is_some())
    }

    /// Takes what the shared book granted for `request` under `lease_id`. A new lease
    /// becomes the one new holds come from; the one before it closes.
    pub fn adopt(
        &mut self,
        lease_id: &str,
        granted: Lease,
        request: &LeaseRequest<'_>,
        now: DateTime<Utc>,
        usable_until: DateTime<Utc>,
    ) {
        let terms = Terms {
            campaign_id: request.campaign_id.to_string(),
            funding: request.funding,
            caps: request.caps.to_vec(),
        };
        if let Some(lease) = self.leases.iter_mut().find(|lease| lease.id == lease_id) {
            lease.granted = granted;
            lease.usable_until = lease.usable_until.max(usable_until);
            lease.terms.retain(|known| known.campaign_id != terms.campaign_id);
            lease.terms.push(terms);
            return;
        }
        for lease in &mut self.leases {
            lease.closing = true;
        }
        self.leases.push(LocalLease {
            id: lease_id.to_string(),
            granted,
            terms: vec![terms],
            used_charge: Money::ZERO,
            used: Vec::new(),
            holds: HashMap::new(),
            opened_at: now,
            usable_until,
            last_active: now,
            closing: false,
        });
    }

    /// The lease new holds come from while it is usable, with when it was opened.
    pub fn active(&self, now: DateTime<Utc>) -> Option<(&str, DateTime<Utc>)> {
        let lease = self.leases.last().filter(|lease| !lease.closing && now < lease.usable_until)?;
        Some((lease.id.as_str(), lease.opened_at))
    }

    /// Takes a renewal of `lease_id` from the shared book (same grant, later expiry).
    pub fn renewed(&mut self, lease_id: &str, granted: Lease, usable_until: DateTime<Utc>) {
        if let Some(lease) = self.leases.iter_mut().find(|lease| lease.id == lease_id) {
            lease.granted = granted;
            lease.usable_until = lease.usable_until.max(usable_until);
        }
    }

    /// Stops holding from `lease_id` (the shared book no longer has it).
    pub fn close(&mut self, lease_id: &str) {
        for lease in self.leases.iter_mut().filter(|lease| lease.id == lease_id) {
            lease.closing = true;
        }
    }

    /// The active lease when it is in use but its use ends within `within`: renew it.
    pub fn to_renew(&self, now: DateTime<Utc>, within: chrono::Duration) -> Option<&str> {
        let lease = self.leases.last().filter(|lease| !lease.closing)?;
        let in_use = !lease.holds.is_empty() || now - lease.last_active < within;
        (in_use && lease.usable_until - now < within).then_some(lease.id.as_str())
    }

    /// Closes the leases that have had no hold open and no sale for `quiet` (and the older
    /// ones once their holds are done) and answers them, to be retired: by then no sale of
    /// theirs can still be on its way to the ledger.
    pub fn close_quiet(&mut self, now: DateTime<Utc>, quiet: chrono::Duration) -> Vec<String> {
        let mut closed = Vec::new();
        for lease in &mut self.leases {
            if lease.holds.is_empty() && now - lease.last_active >= quiet {
                lease.closing = true;
                closed.push(lease.id.clone());
            }
        }
        closed
    }

    /// Closes every lease without open holds (a node stopping), answering them.
    pub fn close_all(&mut self) -> Vec<String> {
        let mut closed = Vec::new();
        for lease in &mut self.leases {
            if lease.holds.is_empty() {
                lease.closing = true;
                closed.push(lease.id.clone());
            }
        }
        closed
    }

    /// Forgets a retired lease.
    pub fn forget(&mut self, lease_id: &str) {
        self.leases.retain(|lease| lease.id != lease_id);
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Money left in the leases (granted, not yet settled or held).
    pub fn money_left(&self) -> Money {
        self.leases.iter().filter(|lease| !lease.closing).map(LocalLease::money_left).sum()
    }
}

#[cfg(test)]
mod tests;
