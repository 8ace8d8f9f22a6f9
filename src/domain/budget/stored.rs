//! A buyer's book as stored outside the process, whole or in parts.
//!
//! Whole (`BookState::from(&book)`): a snapshot keeps each book with every open hold in it.
//!
//! In parts (`BookState::without_holds`, `HoldState`): the Redis adapter keeps a summary of
//! each book (balance, settled usage, leases, and what the open holds add up to) and every
//! open hold in a record of its own. A change of the book reads the summary and only the
//! holds it may touch: those due to expire, which it drops, and the one it settles or
//! releases (`BuyerBook::with_some_holds`). It writes the summary and only the records that
//! came or went.
//!
//! Rationale: a buyer answering pings carries thousands of open holds at once (each lives
//! until its post or for `ping_ttl_s`, 60 s by default). Stored whole, every ping on
//! several nodes read, parsed and wrote all of them, so a ping cost grew with the holds
//! open, and the longer each compare-and-set took, the more often nodes lost races to each
//! other. The rules need the holds' sums, not the holds, so the summary carries the sums;
//! a book built from a summary and some holds decides as the whole book would (property
//! test below).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::holds::Holds;
use super::lease::LeaseState;
use super::{BuyerBook, Hold, Usage, WindowKey};
use crate::domain::caps::Window;
use crate::domain::money::Money;

/// A book, whole or as a summary. The rules in `domain::budget` stay the only place money
/// and caps are checked, on one node or many: whoever stores a book only keeps this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookState {
    balance: Money,
    /// Every open hold, in a book stored whole. Absent from a summary: a binary that
    /// predates summaries then refuses the book instead of reading it as one without holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holds: Option<Vec<HoldState>>,
    usage: Vec<UsageState>,
    /// Absent from books written before leases, and when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    leases: Vec<LeaseState>,
    /// A summary's: what its open holds, stored apart, add up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held: Option<HeldState>,
}

/// One open hold, as stored in a whole book or in a record of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldState {
    id: String,
    campaign: String,
    charge: Money,
    spend: Money,
    expires_at: DateTime<Utc>,
    windows: Vec<(WindowCode, DateTime<Utc>)>,
}

/// What a summary's open holds add up to: their number, their charges, and their count and
/// spend in each cap window of each campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HeldState {
    count: usize,
    charge: Money,
    usage: Vec<UsageState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UsageState {
    campaign: String,
    window: WindowCode,
    start: DateTime<Utc>,
    count: u32,
    spend: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WindowCode {
    Hour,
    Day,
    Week,
    Month,
}

impl From<Window> for WindowCode {
    fn from(window: Window) -> WindowCode {
        match window {
            Window::Hour => WindowCode::Hour,
            Window::Day => WindowCode::Day,
            Window::Week => WindowCode::Week,
            Window::Month => WindowCode::Month,
        }
    }
}

impl From<WindowCode> for Window {
    fn from(code: WindowCode) -> Window {
        match code {
            WindowCode::Hour => Window::Hour,
            WindowCode::Day => Window::Day,
            WindowCode::Week => Window::Week,
            WindowCode::Month => Window::Month,
        }
    }
}

impl HoldState {
    fn of(id: &str, hold: &Hold) -> HoldState {
        HoldState {
            id: id.to_string(),
            campaign: hold.campaign_id.clone(),
            charge: hold.charge,
            spend: hold.spend,
            expires_at: hold.expires_at,
            windows: hold.windows.iter().map(|key| (key.window.into(), key.start)).collect(),
        }
    }

    fn into_hold(self) -> (String, Hold) {
        let windows = self.windows.into_iter().map(|(window, start)| WindowKey { window: window.into(), start });
        let hold = Hold {
            campaign_id: self.campaign,
            charge: self.charge,
            spend: self.spend,
            expires_at: self.expires_at,
            windows: windows.collect(),
        };
        (self.id, hold)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
}

/// Usage per campaign and window, in a stable order.
fn usage_states(usage: &HashMap<String, HashMap<WindowKey, Usage>>) -> Vec<UsageState> {
    let mut states: Vec<UsageState> = usage
        .iter()
        .flat_map(|(campaign, windows)| {
            windows.iter().map(move |(key, used)| UsageState {
                campaign: campaign.clone(),
                window: key.window.into(),
                start: key.start,
                count: used.count,
                spend: used.spend,
            })
        })
        .collect();
    states.sort_by(|a, b| (&a.campaign, a.start, a.window as u8).cmp(&(&b.campaign, b.start, b.window as u8)));
    states
}

fn usage_map(states: Vec<UsageState>) -> HashMap<String, HashMap<WindowKey, Usage>> {
    let mut usage: HashMap<String, HashMap<WindowKey, Usage>> = HashMap::new();
    for used in states {
        let key = WindowKey { window: used.window.into(), start: used.start };
        usage.entry(used.campaign).or_default().insert(key, Usage { count: used.count, spend: used.spend });
    }
    usage
}

impl From<&BuyerBook> for BookState {
    /// The whole book.
    fn from(book: &BuyerBook) -> BookState {
        let mut holds = book.hold_records();
        holds.sort_by(|a, b| a.id.cmp(&b.id));
        BookState { holds: Some(holds), ..BookState::bare(book) }
    }
}

impl BookState {
    /// The book's summary: all but its open holds, which are stored apart
    /// (`BuyerBook::hold_records`), and what they add up to.
    pub fn without_holds(book: &BuyerBook) -> BookState {
        let (count, charge, usage) = book.holds.totals();
        BookState { held: Some(HeldState { count, charge, usage: usage_states(usage) }), ..BookState::bare(book) }
    }

    /// The book without its holds and without their sums.
    fn bare(book: &BuyerBook) -> BookState {
        BookState {
            balance: book.balance,
            holds: None,
            usage: usage_states(&book.usage),
            leases: book.leases.iter().map(|(id, lease)| LeaseState::of(id, lease)).collect(),
            held: None,
        }
    }
}

impl From<BookState> for BuyerBook {
    fn from(state: BookState) -> BuyerBook {
        BuyerBook::with_some_holds(state, Vec::new())
    }
}

impl BuyerBook {
    /// A book from a summary and some of its open holds: at least those due to expire by
    /// the time it is used, and the ones it is to settle or release (an unknown one cannot
    /// be). The holds left out still count, through the summary's sums. A whole book's state
    /// (as snapshots and books written before summaries keep it) is read whole, and
    /// `holds` are not needed.
    pub fn with_some_holds(state: BookState, holds: impl IntoIterator<Item = HoldState>) -> BuyerBook {
        let mut book = BuyerBook::new(state.balance);
        book.usage = usage_map(state.usage);
        book.leases = state.leases.into_iter().map(LeaseState::into_lease).collect();
        match (state.holds, state.held) {
            (Some(whole), _) => {
                for record in whole {
                    let (id, hold) = record.into_hold();
                    book.holds.insert(id, hold);
                }
            }
            (None, Some(held)) => {
                book.holds = Holds::with_totals(held.count, held.charge, usage_map(held.usage));
                for record in holds {
                    let (id, hold) = record.into_hold();
                    book.holds.load(id, hold);
                }
            }
            (None, None) => {}
        }
        book
    }

    /// The open holds this book has at hand, each as stored on its own: all of them,
    /// unless the book was built from a summary and some holds.
    pub fn hold_records(&self) -> Vec<HoldState> {
        self.holds.iter().map(|(id, hold)| HoldState::of(id, hold)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::budget::tests::{prepaid, request};
    use crate::domain::budget::HoldRefusal;
    use crate::domain::caps::{Cap, Limit};
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn a_book_survives_its_stored_form_with_holds_and_cap_windows() {
        let caps = [Cap { name: "daily", window: Window::Day, limit: Limit::Count(2) }];
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let later = now + chrono::Duration::minutes(5);
        let mut book = BuyerBook::new(Money::parse("100.00").unwrap());
        book.try_hold(now, request("h1", "10.00", &caps, later)).unwrap();
        book.settle("h1").unwrap();
        book.try_hold(now, request("h2", "10.00", &caps, later)).unwrap();
        let json = serde_json::to_string(&BookState::from(&book)).unwrap();
        let mut restored = BuyerBook::from(serde_json::from_str::<BookState>(&json).unwrap());
        assert_eq!(BookState::from(&restored), BookState::from(&book));
        // The settled sale and the open hold both count against the daily cap of 2.
        assert_eq!(restored.try_hold(now, request("h3", "1.00", &caps, later)), Err(HoldRefusal::CapReached("daily")));
        assert_eq!(restored.settle("h2").unwrap().balance_after, Money::parse("80.00").unwrap());
    }

    #[test]
    fn a_book_stored_whole_before_summaries_is_still_read_whole() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let stored = r#"{"balance":"100.00","holds":[{"id":"h1","campaign":"c1","charge":"30.00","spend":"30.00",
            "expires_at":"2026-11-25T12:05:00Z","windows":[["day","2026-11-24T23:00:00Z"]]}],"usage":[]}"#;
        let mut book = BuyerBook::from(serde_json::from_str::<BookState>(stored).unwrap());
        assert_eq!(book.view(now, prepaid()).available, Money::parse("70.00").unwrap());
        let records = book.hold_records();
        assert_eq!(records.len(), 1, "the hold is at hand, to be stored apart");
        assert_eq!(book.settle("h1").unwrap().balance_after, Money::parse("70.00").unwrap());
    }

    #[test]
    fn a_summary_has_no_holds_list_so_older_binaries_refuse_it() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut book = BuyerBook::new(Money::parse("100.00").unwrap());
        book.try_hold(now, request("h1", "10.00", &[], now + chrono::Duration::minutes(1))).unwrap();
        let json = serde_json::to_value(BookState::without_holds(&book)).unwrap();
        assert!(json.get("holds").is_none(), "{json}");
        /// `BookState` as binaries before summaries read it: `holds` is required.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct BeforeSummaries {
            balance: Money,
            holds: Vec<serde_json::Value>,
            usage: Vec<serde_json::Value>,
        }
        let whole = serde_json::to_value(BookState::from(&book)).unwrap();
        assert!(serde_json::from_value::<BeforeSummaries>(whole).is_ok(), "an older binary reads a whole book");
        assert!(serde_json::from_value::<BeforeSummaries>(json.clone()).is_err(), "an older binary refuses a summary");
        assert_eq!(json["held"]["count"], 1);
        assert_eq!(json["held"]["charge"], "10.00");
    }

    #[test]
    fn holds_due_but_not_read_still_count_until_a_later_change_reads_them() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut book = BuyerBook::new(Money::parse("100.00").unwrap());
        for id in ["h1", "h2"] {
            book.try_hold(now, request(id, "40.00", &[], now + chrono::Duration::minutes(1))).unwrap();
        }
        let summary = BookState::without_holds(&book);
        let records = book.hold_records();
        let later = now + chrono::Duration::minutes(2);
        let h1: Vec<HoldState> = records.iter().filter(|r| r.id() == "h1").cloned().collect();
        let mut partly = BuyerBook::with_some_holds(summary.clone(), h1);
        assert_eq!(partly.view(later, prepaid()).available, Money::parse("60.00").unwrap(), "h2 still counts");
        let mut fully = BuyerBook::with_some_holds(summary, records);
        assert_eq!(fully.view(later, prepaid()).available, Money::parse("100.00").unwrap());
    }

    /// The holds' records as a store keeps them beside a summary: by id.
    #[derive(Default)]
    struct Store {
        summary: String,
        records: HashMap<String, String>,
    }

    impl Store {
        /// Reads the book as the Redis adapter does: the summary, the holds due by `now`,
        /// and the holds named.
        fn read(&self, now: DateTime<Utc>, named: &[&str]) -> (BuyerBook, HashMap<String, HoldState>) {
            let summary: BookState = serde_json::from_str(&self.summary).unwrap();
            let loaded: HashMap<String, HoldState> = self
                .records
                .iter()
                .map(|(id, json)| (id.clone(), serde_json::from_str::<HoldState>(json).unwrap()))
                .filter(|(id, record)| record.expires_at() <= now || named.contains(&id.as_str()))
                .collect();
            (BuyerBook::with_some_holds(summary, loaded.values().cloned()), loaded)
        }

        /// Writes it back: the summary, the records that came or changed, and not the ones
        /// that went.
        fn write(&mut self, book: &BuyerBook, loaded: &HashMap<String, HoldState>) {
            self.summary = serde_json::to_string(&BookState::without_holds(book)).unwrap();
            let at_hand = book.hold_records();
            for record in &at_hand {
                if loaded.get(record.id()) != Some(record) {
                    self.records.insert(record.id().to_string(), serde_json::to_string(record).unwrap());
                }
            }
            for id in loaded.keys() {
                if !at_hand.iter().any(|record| record.id() == id) {
                    self.records.remove(id);
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Hold { cents: i64, lives_s: i64 },
        Settle(usize),
        Release(usize),
        Advance { seconds: i64 },
        TopUp { cents: i64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (1i64..3_000, 1i64..120).prop_map(|(cents, lives_s)| Op::Hold { cents, lives_s }),
            2 => (0usize..24).prop_map(Op::Settle),
            1 => (0usize..24).prop_map(Op::Release),
            2 => (0i64..90).prop_map(|seconds| Op::Advance { seconds }),
            1 => (1i64..3_000).prop_map(|cents| Op::TopUp { cents }),
        ]
    }

    proptest! {
        /// A book kept as a summary and records, of which each change reads only the due
        /// and the named holds, answers every hold, settle and release as a book kept whole
        /// does (both keep a change only when it changed the book, as the Redis adapter
        /// does), shows the same balance, and keeps a record for exactly the open holds.
        #[test]
        fn a_book_in_parts_decides_as_the_whole_book(ops in proptest::collection::vec(op(), 1..150)) {
            let caps = [Cap { window: Window::Hour, limit: Limit::Count(6), name: "hourly" },
                        Cap { window: Window::Day, limit: Limit::Spend(Money::cents(40_000)), name: "daily_spend" }];
            // Across the spring DST change in Berlin.
            let mut now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
            let mut whole = BuyerBook::new(Money::cents(20_000));
            let mut store = Store::default();
            store.write(&whole, &HashMap::new());
            let mut ids: Vec<String> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                let mut trial = whole.clone();
                match op {
                    Op::Hold { cents, lives_s } => {
                        let id = format!("h{n}");
                        let price = Money::cents(cents).to_string();
                        let expires_at = now + chrono::Duration::seconds(lives_s);
                        let (mut parts, loaded) = store.read(now, &[&id]);
                        let in_parts = parts.try_hold(now, request(&id, &price, &caps, expires_at));
                        prop_assert_eq!(trial.try_hold(now, request(&id, &price, &caps, expires_at)), in_parts.clone());
                        if in_parts.is_ok() {
                            store.write(&parts, &loaded);
                            whole = trial;
                            ids.push(id);
                        }
                    }
                    Op::Settle(i) if i < ids.len() => {
                        let id = ids.remove(i);
                        let (mut parts, loaded) = store.read(now, &[&id]);
                        let in_parts = parts.settle(&id);
                        prop_assert_eq!(trial.settle(&id), in_parts.clone());
                        if in_parts.is_ok() {
                            store.write(&parts, &loaded);
                            whole = trial;
                        }
                    }
                    Op::Release(i) if i < ids.len() => {
                        let id = ids.remove(i);
                        let (mut parts, loaded) = store.read(now, &[&id]);
                        let released = parts.release(&id);
                        prop_assert_eq!(trial.release(&id), released);
                        if released {
                            store.write(&parts, &loaded);
                            whole = trial;
                        }
                    }
                    Op::Advance { seconds } => now += chrono::Duration::seconds(seconds),
                    Op::TopUp { cents } => {
                        let (mut parts, loaded) = store.read(now, &[]);
                        parts.top_up(Money::cents(cents));
                        whole.top_up(Money::cents(cents));
                        store.write(&parts, &loaded);
                    }
                    _ => {}
                }
                let (parts, _) = store.read(now, &[]);
                prop_assert_eq!(parts.hold_count(), whole.hold_count());
                prop_assert_eq!(parts.clone().view(now, prepaid()), whole.clone().view(now, prepaid()));
                let mut open: Vec<&String> = whole.holds.iter().map(|(id, _)| id).collect();
                let mut kept: Vec<&String> = store.records.keys().collect();
                open.sort();
                kept.sort();
                prop_assert_eq!(open, kept, "records of open holds, and only of them, are kept");
            }
        }
    }
}
