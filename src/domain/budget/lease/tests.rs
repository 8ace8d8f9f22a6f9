// Amounts in cents are grouped as euros_cents (`12_50` is 12.50).
#![allow(clippy::inconsistent_digit_grouping)]

use super::*;
use crate::domain::budget::HoldScope;
use chrono::TimeZone;
use proptest::prelude::*;

const BERLIN: Tz = chrono_tz::Europe::Berlin;

fn prepaid() -> Funding {
    Funding { mode: BillingMode::Prepaid, credit_limit: None }
}

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, hour, 0, 0).unwrap()
}

fn lease_request<'a>(id: &'a str, price: i64, caps: &'a [Cap], units: u32, now: DateTime<Utc>) -> LeaseRequest<'a> {
    LeaseRequest {
        lease_id: id,
        node: "n1",
        campaign_id: "c1",
        price: Money::cents(price),
        funding: prepaid(),
        caps,
        tz: BERLIN,
        units,
        expires_at: now + chrono::Duration::seconds(15),
        extends: false,
    }
}

fn hold<'a>(id: &str, price: i64, caps: &'a [Cap], now: DateTime<Utc>) -> HoldRequest<'a> {
    HoldRequest {
        hold_id: id.to_string(),
        campaign_id: "c1",
        price: Money::cents(price),
        funding: prepaid(),
        caps,
        tz: BERLIN,
        expires_at: now + chrono::Duration::seconds(5),
        scope: HoldScope::Request,
    }
}

#[test]
fn a_lease_counts_in_full_until_retired_with_what_it_sold() {
    let now = at(10);
    let mut book = BuyerBook::new(Money::cents(100_00));
    // A quarter of the 10 sales that fit.
    let lease = book.grant_lease(now, &lease_request("l1", 10_00, &[], 8, now)).unwrap().unwrap();
    assert_eq!(lease.money, Money::cents(20_00));
    assert_eq!(book.view(now, prepaid()).available, Money::cents(80_00));
    let sold = LeaseUsage { charge: Money::cents(10_00), windows: BTreeMap::new() };
    assert!(book.retire_lease("l1", &sold));
    assert!(!book.retire_lease("l1", &sold), "a second retirement changes nothing");
    let view = book.view(now, prepaid());
    assert_eq!((view.balance, view.available), (Money::cents(90_00), Money::cents(90_00)));
}

#[test]
fn when_little_is_left_every_lease_is_one_sale_and_the_last_one_is_sold() {
    let now = at(10);
    let mut book = BuyerBook::new(Money::cents(30_00));
    for (n, expected) in [(1, 10_00), (2, 10_00), (3, 10_00)] {
        let lease = book.grant_lease(now, &lease_request(&format!("l{n}"), 10_00, &[], 100, now)).unwrap().unwrap();
        assert_eq!(lease.money, Money::cents(expected), "lease {n}");
    }
    let refused = book.grant_lease(now, &lease_request("l4", 10_00, &[], 1, now));
    assert_eq!(refused, Err(HoldRefusal::InsufficientBalance));
}

#[test]
fn caps_are_leased_per_window_and_a_full_cap_refuses() {
    let now = at(10);
    let caps = [Cap { window: Window::Day, limit: Limit::Count(8), name: "daily" }];
    let mut book = BuyerBook::new(Money::cents(1_000_00));
    let lease = book.grant_lease(now, &lease_request("l1", 1_00, &caps, 100, now)).unwrap().unwrap();
    assert_eq!(lease.windows[0].count, 2, "a quarter of the 8 left today");
    let mut leases = NodeLeases::default();
    leases.adopt("l1", lease, &lease_request("l1", 1_00, &caps, 100, now), now, now + chrono::Duration::seconds(10));
    leases.try_hold(now, &hold("h1", 1_00, &caps, now)).unwrap();
    leases.try_hold(now, &hold("h2", 1_00, &caps, now)).unwrap();
    assert_eq!(leases.try_hold(now, &hold("h3", 1_00, &caps, now)), Err(Shortfall::Exhausted));
    // Tomorrow is another window: the lease has nothing for it.
    let tomorrow = now + chrono::Duration::days(1);
    leases.renewed("l1", book.renew_lease("l1", tomorrow).unwrap(), tomorrow + chrono::Duration::seconds(10));
    assert_eq!(leases.try_hold(tomorrow, &hold("h4", 1_00, &caps, tomorrow)), Err(Shortfall::Exhausted));
    // Another node takes the rest of today's cap, a quarter at a time, then is refused.
    let mut granted = 0;
    while let Ok(Some(lease)) = book.grant_lease(now, &lease_request("l2", 1_00, &caps, 100, now)) {
        granted = lease.windows[0].count;
    }
    assert_eq!(granted, 6);
    assert_eq!(book.grant_lease(now, &lease_request("l3", 1_00, &caps, 1, now)), Err(HoldRefusal::CapReached("daily")));
}

#[test]
fn a_sale_settled_from_a_lease_carries_its_counters_and_they_read_back() {
    let now = at(10);
    let caps = [
        Cap { window: Window::Day, limit: Limit::Count(100), name: "daily" },
        Cap { window: Window::Day, limit: Limit::Spend(Money::cents(1_000_00)), name: "daily_spend" },
        Cap { window: Window::Month, limit: Limit::Count(1_000), name: "monthly" },
    ];
    let mut book = BuyerBook::new(Money::cents(1_000_00));
    let lease = book.grant_lease(now, &lease_request("l1", 12_50, &caps, 4, now)).unwrap().unwrap();
    assert_eq!(lease.windows.len(), 2, "one window per distinct day and month");
    let mut leases = NodeLeases::default();
    leases.adopt("l1", lease, &lease_request("l1", 12_50, &caps, 4, now), now, now + chrono::Duration::seconds(10));
    leases.try_hold(now, &hold("h1", 12_50, &caps, now)).unwrap();
    let charge = leases.settle("h1", now).unwrap();
    assert_eq!(charge.windows, vec![(0, Money::cents(12_50)), (1, Money::cents(12_50))]);
    let counters = charge.counters();
    let usage = LeaseUsage::from_counters(counters.iter().map(|(name, value)| (name.as_str(), *value))).unwrap();
    assert_eq!(usage.charge, Money::cents(12_50));
    assert_eq!(usage.windows[&1], Usage { count: 1, spend: Money::cents(12_50) });
    assert!(LeaseUsage::from_counters([("x1", 1)]).is_err());
    assert!(LeaseUsage::from_counters([("c", 1)]).is_err());
    assert!(book.retire_lease("l1", &usage));
    assert_eq!(book.view(now, prepaid()).balance, Money::cents(987_50));
}

#[test]
fn a_view_counts_live_sales_in_the_balance_and_the_unsold_rest_as_held() {
    let now = at(10);
    let mut book = BuyerBook::new(Money::cents(100_00));
    book.grant_lease(now, &lease_request("l1", 10_00, &[], 2, now)).unwrap().unwrap();
    let sold = BTreeMap::from([("l1".to_string(), LeaseUsage { charge: Money::cents(10_00), ..Default::default() })]);
    let view = book.view_with_usage(now, prepaid(), &sold);
    assert_eq!(view.balance, Money::cents(90_00));
    assert_eq!(view.leased, Money::cents(10_00));
    assert_eq!(view.held, Money::cents(10_00));
    assert_eq!(view.available, Money::cents(80_00));
}

#[test]
fn a_lease_past_its_use_holds_nothing_and_quiet_leases_close() {
    let now = at(10);
    let mut book = BuyerBook::new(Money::cents(100_00));
    let mut leases = NodeLeases::default();
    let ask = lease_request("l1", 1_00, &[], 4, now);
    leases.adopt("l1", book.grant_lease(now, &ask).unwrap().unwrap(), &ask, now, now);
    assert_eq!(leases.try_hold(now, &hold("h1", 1_00, &[], now)), Err(Shortfall::NoLease));
    let until = now + chrono::Duration::seconds(10);
    leases.renewed("l1", book.renew_lease("l1", until).unwrap(), until);
    leases.try_hold(now, &hold("h1", 1_00, &[], now)).unwrap();
    let later = now + chrono::Duration::seconds(6);
    assert!(leases.close_quiet(later, chrono::Duration::seconds(5)).is_empty(), "a hold is open");
    assert!(leases.settle("h1", now).is_some());
    assert_eq!(leases.close_quiet(later, chrono::Duration::seconds(5)), vec!["l1".to_string()]);
    assert_eq!(leases.try_hold(later, &hold("h2", 1_00, &[], later)), Err(Shortfall::NoLease));
    assert!(book.expired_leases(now + chrono::Duration::seconds(15)).contains(&"l1".to_string()));
}

#[test]
fn a_lease_granted_under_other_caps_or_funding_closes_and_a_retired_one_is_not_reopened() {
    let now = at(10);
    let daily = [Cap { window: Window::Day, limit: Limit::Count(8), name: "daily" }];
    let mut book = BuyerBook::new(Money::cents(100_00));
    let mut leases = NodeLeases::default();
    let ask = lease_request("l1", 1_00, &daily, 4, now);
    leases.adopt("l1", book.grant_lease(now, &ask).unwrap().unwrap(), &ask, now, now + chrono::Duration::seconds(10));
    leases.try_hold(now, &hold("h1", 1_00, &daily, now)).unwrap();
    // An admin lowers the cap: the lease, granted under the old one, takes no more holds.
    let lowered = [Cap { window: Window::Day, limit: Limit::Count(1), name: "daily" }];
    assert_eq!(leases.try_hold(now, &hold("h2", 1_00, &lowered, now)), Err(Shortfall::NoLease));
    assert!(leases.active(now).is_none());
    // The shared book still counts the old lease, so the lowered cap is full already.
    let ask = lease_request("l2", 1_00, &lowered, 4, now);
    assert_eq!(book.grant_lease(now, &ask), Err(HoldRefusal::CapReached("daily")));
    // A lease retired meanwhile is not extended under its old id.
    assert!(book.retire_lease("l1", &LeaseUsage::default()));
    let mut again = lease_request("l1", 1_00, &daily, 4, now);
    again.extends = true;
    assert_eq!(book.grant_lease(now, &again), Ok(None));
    // Another funding closes a lease too.
    let ask = lease_request("l3", 1_00, &[], 4, now);
    leases.adopt("l3", book.grant_lease(now, &ask).unwrap().unwrap(), &ask, now, now + chrono::Duration::seconds(10));
    let mut invoiced = hold("h3", 1_00, &[], now);
    invoiced.funding = Funding { mode: BillingMode::Invoice, credit_limit: Some(Money::cents(50_00)) };
    assert_eq!(leases.try_hold(now, &invoiced), Err(Shortfall::NoLease));
}

#[test]
fn a_book_with_leases_survives_its_stored_form() {
    let now = at(10);
    let caps = [Cap { window: Window::Day, limit: Limit::Count(8), name: "daily" }];
    let mut book = BuyerBook::new(Money::cents(100_00));
    book.grant_lease(now, &lease_request("l1", 1_00, &caps, 2, now)).unwrap().unwrap();
    let json = serde_json::to_string(&super::super::BookState::from(&book)).unwrap();
    let mut restored = BuyerBook::from(serde_json::from_str::<super::super::BookState>(&json).unwrap());
    assert_eq!(restored.lease_ids(), vec!["l1".to_string()]);
    assert_eq!(restored.view(now, prepaid()).available, Money::cents(98_00));
    let old = r#"{"balance":"5.00","holds":[],"usage":[]}"#;
    let old = BuyerBook::from(serde_json::from_str::<super::super::BookState>(old).unwrap());
    assert!(old.lease_ids().is_empty(), "books written before leases read as books without them");
}

// --------------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum Op {
    /// A node holds a sale at a price, asking the shared book for `units` more when short.
    Hold {
        node: usize,
        cents: i64,
        units: u32,
    },
    Settle {
        node: usize,
        which: usize,
    },
    Release {
        node: usize,
        which: usize,
    },
    /// A ping's hold, straight in the shared book.
    PingHold {
        cents: i64,
    },
    /// A node retires its quiet leases.
    Retire {
        node: usize,
    },
    /// A node dies: its leases and holds are gone from its memory.
    Crash {
        node: usize,
    },
    Advance {
        seconds: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 1i64..3_000, 1u32..20).prop_map(|(node, cents, units)| Op::Hold { node, cents, units }),
        5 => (0usize..3, 0usize..8).prop_map(|(node, which)| Op::Settle { node, which }),
        1 => (0usize..3, 0usize..8).prop_map(|(node, which)| Op::Release { node, which }),
        1 => (1i64..3_000).prop_map(|cents| Op::PingHold { cents }),
        1 => (0usize..3).prop_map(|node| Op::Retire { node }),
        1 => (0usize..3).prop_map(|node| Op::Crash { node }),
        2 => (0i64..7_200).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

/// The world of the property: one shared book, three nodes, and the ledger's counters.
struct World {
    book: BuyerBook,
    nodes: Vec<(NodeLeases, Vec<String>, u32)>,
    /// What the ledger counted per lease, and the sales it recorded (price, Berlin day).
    counted: BTreeMap<String, LeaseUsage>,
    sales: Vec<(Money, DateTime<Utc>)>,
    pings: Vec<String>,
    now: DateTime<Utc>,
}

const TTL: i64 = 15;

impl World {
    fn hold(&mut self, node: usize, cents: i64, units: u32, caps: &[Cap], n: usize) {
        let id = format!("h{n}");
        let request = hold(&id, cents, caps, self.now);
        let now = self.now;
        let (leases, open, counter) = &mut self.nodes[node];
        if leases.try_hold(now, &request).is_ok() {
            open.push(id);
            return;
        }
        for _ in 0..2 {
            let (lease_id, extends) = match leases.active(now) {
                Some((lease_id, _)) => (lease_id.to_string(), true),
                None => {
                    *counter += 1;
                    (format!("n{node}.{counter}"), false)
                }
            };
            let mut ask = lease_request(&lease_id, cents, caps, units, now);
            ask.expires_at = now + chrono::Duration::seconds(TTL);
            ask.extends = extends;
            match self.book.grant_lease(now, &ask) {
                Ok(Some(lease)) => {
                    leases.adopt(&lease_id, lease, &ask, now, now + chrono::Duration::seconds(TTL - 5));
                    if leases.try_hold(now, &request).is_ok() {
                        open.push(id);
                    }
                    return;
                }
                Ok(None) => leases.close(&lease_id),
                Err(_) => return,
            }
        }
    }

    /// Retires a lease as a node does: with what the ledger counted for it.
    fn retire(&mut self, lease_id: &str) {
        let sold = self.counted.get(lease_id).cloned().unwrap_or_default();
        self.book.retire_lease(lease_id, &sold);
    }
}

proptest! {
    /// DESIGN §8.2 with leases, for any interleaving of three nodes holding, settling,
    /// releasing, retiring and dying, ping holds in the shared book, and time passing
    /// (across Berlin's DST changes): what the ledger recorded never exceeds the money paid
    /// in nor a day's cap, the shared view never shows less than nothing available, and
    /// once every lease is retired the balance is exactly what was paid in minus the sales.
    #[test]
    fn leases_on_three_nodes_never_overspend_nor_exceed_a_cap(
        ops in proptest::collection::vec(op(), 1..150),
        start in 0i64..31_536_000,
    ) {
        let caps = [Cap { window: Window::Day, limit: Limit::Count(12), name: "daily" }];
        let paid_in = Money::cents(200_00);
        let mut world = World {
            book: BuyerBook::new(paid_in),
            nodes: (0..3).map(|_| (NodeLeases::default(), Vec::new(), 0)).collect(),
            counted: BTreeMap::new(),
            sales: Vec::new(),
            pings: Vec::new(),
            now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(start),
        };
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Hold { node, cents, units } => world.hold(node, cents, units, &caps, n),
                Op::Settle { node, which } if which < world.nodes[node].1.len() => {
                    let id = world.nodes[node].1.remove(which);
                    let now = world.now;
                    if let Some(charge) = world.nodes[node].0.settle(&id, now) {
                        // The ledger records the sale with its counters, unless the lease
                        // was retired meanwhile (fenced): then the sale is refused.
                        if world.book.lease_ids().contains(&charge.lease_id) {
                            world.counted.entry(charge.lease_id.clone()).or_default().add(&charge);
                            world.sales.push((charge.charge, now));
                        }
                    }
                }
                Op::Release { node, which } if which < world.nodes[node].1.len() => {
                    let id = world.nodes[node].1.remove(which);
                    world.nodes[node].0.release(&id);
                }
                Op::PingHold { cents } => {
                    let id = format!("p{n}");
                    let mut request = hold(&id, cents, &caps, world.now);
                    request.scope = HoldScope::Ping;
                    request.expires_at = world.now + chrono::Duration::seconds(60);
                    if world.book.try_hold(world.now, request).is_ok() {
                        world.pings.push(id);
                    }
                }
                Op::Retire { node } => {
                    let quiet = world.nodes[node].0.close_quiet(world.now, chrono::Duration::seconds(5));
                    for lease_id in quiet {
                        world.retire(&lease_id);
                        world.nodes[node].0.forget(&lease_id);
                    }
                }
                Op::Crash { node } => world.nodes[node] = (NodeLeases::default(), Vec::new(), world.nodes[node].2),
                Op::Advance { seconds } => {
                    world.now += chrono::Duration::seconds(seconds);
                    // Any node retires the leases whose node did not renew them.
                    for lease_id in world.book.expired_leases(world.now) {
                        world.retire(&lease_id);
                    }
                }
                _ => {}
            }
            // Pings settle straight away in this model: one more recorded sale each.
            for id in std::mem::take(&mut world.pings) {
                if let Ok(settled) = world.book.settle(&id) {
                    world.sales.push((settled.charged, world.now));
                }
            }
            let spent: Money = world.sales.iter().map(|(price, _)| *price).sum();
            prop_assert!(spent <= paid_in, "sold {} of {}", spent, paid_in);
            let mut per_day: BTreeMap<DateTime<Utc>, u32> = BTreeMap::new();
            for (_, at) in &world.sales {
                *per_day.entry(window_start(Window::Day, *at, BERLIN)).or_default() += 1;
            }
            prop_assert!(per_day.values().all(|&count| count <= 12), "{:?}", per_day);
            let view = world.book.view_with_usage(world.now, prepaid(), &world.counted);
            prop_assert!(view.available >= Money::ZERO, "available {}", view.available);
            prop_assert_eq!(view.balance, paid_in - spent);
        }
        for lease_id in world.book.lease_ids() {
            world.retire(&lease_id);
        }
        let spent: Money = world.sales.iter().map(|(price, _)| *price).sum();
        prop_assert_eq!(world.book.view(world.now, prepaid()).balance, paid_in - spent);
    }
}

#[test]
fn cap_standings_split_what_was_sold_from_what_is_reserved_across_settlements_holds_and_leases() {
    let now = at(10);
    let caps = [
        Cap { window: Window::Day, limit: Limit::Count(100), name: "daily" },
        Cap { window: Window::Month, limit: Limit::Spend(Money::cents(1_000_00)), name: "monthly_spend" },
    ];
    let mut book = BuyerBook::new(Money::cents(1_000_00));
    // Two settled sales, one open hold.
    for id in ["h1", "h2", "h3"] {
        book.try_hold(now, hold(id, 10_00, &caps, now)).unwrap();
    }
    book.settle("h1").unwrap();
    book.settle("h2").unwrap();
    // A node's lease of 4 sales, one of them sold so far.
    let lease = book.grant_lease(now, &lease_request("l1", 10_00, &caps, 4, now)).unwrap().unwrap();
    let leased = lease.windows[0].count;
    let sold = BTreeMap::from([(
        "l1".to_string(),
        LeaseUsage {
            charge: Money::cents(10_00),
            windows: BTreeMap::from([
                (0, Usage { count: 1, spend: Money::cents(10_00) }),
                (1, Usage { count: 1, spend: Money::cents(10_00) }),
            ]),
        },
    )]);
    let standings = book.cap_standings("c1", &caps, BERLIN, now, &sold);
    assert_eq!(standings.len(), 2);
    assert_eq!(standings[0].cap.name, "daily");
    assert_eq!(standings[0].sold, Usage { count: 3, spend: Money::cents(30_00) });
    assert_eq!(standings[0].reserved.count, 1 + leased - 1, "the hold and the lease's unsold rest");
    assert_eq!(standings[1].sold.spend, Money::cents(30_00));
    // Another campaign and tomorrow stand at nothing.
    assert!(book.cap_standings("c2", &caps, BERLIN, now, &sold).iter().all(|s| s.sold == Usage::default()));
    let tomorrow = now + chrono::Duration::days(1);
    let standings = book.cap_standings("c1", &caps, BERLIN, tomorrow, &sold);
    assert_eq!(standings[0].sold, Usage::default());
    assert_eq!(standings[1].sold.spend, Money::cents(30_00), "the month goes on");
}
