//! A party's own history in the ledger, as the portal shows it (DESIGN §15): which sales a
//! buyer's or a supplier's search matches, and a supplier's payouts per local day.
//!
//! Pure: the engine reads the ledger and feeds the events here. Searches name days in the
//! party's own time zone; a day is from its local midnight to the next (23 or 25 hours
//! across a DST change).

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::caps::{window_start, Window};
use super::ledger::{Event, SaleSettled};
use super::money::{Currency, Money};

/// Whose history: a search never matches another party's sales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Buyer(String),
    Supplier(String),
}

/// Sales are appended in about the order they were sold; concurrent sales may land this
/// far out of order, so a backwards scan stops only this far before the range.
const OUT_OF_ORDER_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// What a portal search asks for: the owner's sales, optionally within local days, of one
/// campaign or vertical, or one sale or lead by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSearch {
    pub owner: Owner,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    pub campaign_id: Option<String>,
    pub vertical: Option<String>,
    /// A sale id or a lead id.
    pub id: Option<String>,
}

impl SaleSearch {
    /// Everything of `owner`.
    pub fn of(owner: Owner) -> SaleSearch {
        SaleSearch { owner, from: None, until: None, campaign_id: None, vertical: None, id: None }
    }

    /// Only the local days `from..=to` in `tz` (either end open).
    pub fn within_days(mut self, from: Option<NaiveDate>, to: Option<NaiveDate>, tz: Tz) -> SaleSearch {
        self.from = from.map(|day| day_start(day, tz));
        self.until = to.and_then(|day| day.checked_add_days(Days::new(1))).map(|day| day_start(day, tz));
        self
    }

    pub fn matches(&self, sale: &SaleSettled) -> bool {
        let owned = match &self.owner {
            Owner::Buyer(id) => &sale.buyer_id == id,
            Owner::Supplier(id) => &sale.supplier_id == id,
        };
        owned
            && self.from.is_none_or(|from| sale.sold_at >= from)
            && self.until.is_none_or(|until| sale.sold_at < until)
            && self.campaign_id.as_ref().is_none_or(|campaign| &sale.campaign_id == campaign)
            && self.vertical.as_ref().is_none_or(|vertical| &sale.vertical == vertical)
            && self.id.as_ref().is_none_or(|id| &sale.sale_id == id || &sale.lead_id == id)
    }

    /// Whether a backwards scan that reached an event appended at `at` has passed every
    /// sale this search can match.
    pub fn passed(&self, at: DateTime<Utc>) -> bool {
        self.from.is_some_and(|from| at < from - OUT_OF_ORDER_MARGIN)
    }
}

/// The instant local day `day` starts in `tz` (its first instant, even when a DST change
/// skips midnight).
pub fn day_start(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    // Local noon always exists; the day's window holds it.
    let noon = day.and_hms_opt(12, 0, 0).unwrap_or_default();
    let noon = tz.from_local_datetime(&noon).earliest().map_or_else(|| noon.and_utc(), |at| at.with_timezone(&Utc));
    window_start(Window::Day, noon, tz)
}

/// The local day an instant falls on in `tz`.
pub fn local_day(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// One local day of a supplier's payouts: what its sold leads earned, and what approved
/// returns took back that day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayoutDay {
    pub sold: u32,
    pub earned: Money,
    pub returned: u32,
    pub reversed: Money,
}

impl PayoutDay {
    pub fn net(&self) -> Money {
        self.earned - self.reversed
    }
}

/// A supplier's payouts per local day and currency, from `since` on, summed from ledger
/// events in any order. Internal buyers' sales pay their supplier like any other (payouts do not depend
/// on who bought).
#[derive(Debug, Clone)]
pub struct Payouts {
    supplier_id: String,
    tz: Tz,
    since: DateTime<Utc>,
    days: BTreeMap<(NaiveDate, Currency), PayoutDay>,
}

impl Payouts {
    pub fn new(supplier_id: &str, tz: Tz, since: DateTime<Utc>) -> Payouts {
        Payouts { supplier_id: supplier_id.to_string(), tz, since, days: BTreeMap::new() }
    }

    /// Counts `event` if it is one of this supplier's sales or approved returns since
    /// `since`. A return counts on the day it was approved.
    pub fn take(&mut self, event: &Event) {
        match event {
            Event::SaleSettled(sale) if sale.supplier_id == self.supplier_id && sale.sold_at >= self.since => {
                let day = self.days.entry((local_day(sale.sold_at, self.tz), sale.currency)).or_default();
                day.sold += 1;
                day.earned += sale.payout;
            }
            Event::ReturnResolved(resolved)
                if resolved.approved
                    && resolved.supplier_id == self.supplier_id
                    && resolved.resolved_at >= self.since =>
            {
                let day = self.days.entry((local_day(resolved.resolved_at, self.tz), resolved.currency)).or_default();
                day.returned += 1;
                day.reversed += resolved.payout_reversed;
            }
            _ => {}
        }
    }

    /// Whether a backwards scan that reached an event appended at `at` has passed every
    /// event this sums.
    pub fn passed(&self, at: DateTime<Utc>) -> bool {
        at < self.since - OUT_OF_ORDER_MARGIN
    }

    /// Newest day first.
    pub fn days(&self) -> impl Iterator<Item = (NaiveDate, Currency, &PayoutDay)> {
        self.days.iter().rev().map(|((day, currency), tally)| (*day, *currency, tally))
    }

    /// Per currency, the sum of the days.
    pub fn totals(&self) -> BTreeMap<Currency, PayoutDay> {
        let mut totals: BTreeMap<Currency, PayoutDay> = BTreeMap::new();
        for ((_, currency), day) in &self.days {
            let sum = totals.entry(*currency).or_default();
            sum.sold += day.sold;
            sum.earned += day.earned;
            sum.returned += day.returned;
            sum.reversed += day.reversed;
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::ReturnResolved;
    use chrono::Duration;
    use proptest::prelude::*;

    fn berlin() -> Tz {
        "Europe/Berlin".parse().unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn sale(sold_at: DateTime<Utc>) -> SaleSettled {
        SaleSettled::example(sold_at)
    }

    #[test]
    fn a_search_matches_only_its_owners_sales() {
        let sale = sale(at("2026-12-04T10:00:00Z"));
        assert!(SaleSearch::of(Owner::Buyer(sale.buyer_id.clone())).matches(&sale));
        assert!(SaleSearch::of(Owner::Supplier(sale.supplier_id.clone())).matches(&sale));
        assert!(!SaleSearch::of(Owner::Buyer("other".into())).matches(&sale));
        // A buyer id that happens to be a supplier's id matches nothing of that supplier.
        assert!(!SaleSearch::of(Owner::Buyer(sale.supplier_id.clone())).matches(&sale));
    }

    #[test]
    fn a_search_by_id_finds_the_sale_by_its_sale_or_lead_id() {
        let sale = sale(at("2026-12-04T10:00:00Z"));
        let mut search = SaleSearch::of(Owner::Buyer(sale.buyer_id.clone()));
        search.id = Some(sale.lead_id.clone());
        assert!(search.matches(&sale));
        search.id = Some(sale.sale_id.clone());
        assert!(search.matches(&sale));
        search.id = Some("sal_other".into());
        assert!(!search.matches(&sale));
    }

    #[test]
    fn local_days_are_the_buyers_own_across_the_dst_change() {
        // 2026-10-25 in Berlin has 25 hours: 22:00Z the day before to 23:00Z.
        let day = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        let search = SaleSearch::of(Owner::Buyer("b1".into())).within_days(Some(day), Some(day), berlin());
        assert_eq!(search.from, Some(at("2026-10-24T22:00:00Z")));
        assert_eq!(search.until, Some(at("2026-10-25T23:00:00Z")));
        let mut sale = sale(at("2026-10-24T21:59:59Z"));
        sale.buyer_id = "b1".into();
        assert!(!search.matches(&sale));
        sale.sold_at = at("2026-10-24T22:00:00Z");
        assert!(search.matches(&sale));
        sale.sold_at = at("2026-10-25T22:59:59Z");
        assert!(search.matches(&sale), "the 25th hour of the day");
        sale.sold_at = at("2026-10-25T23:00:00Z");
        assert!(!search.matches(&sale));
        // Spring forward: 23 hours.
        let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        assert_eq!(day_start(day, berlin()), at("2026-03-28T23:00:00Z"));
        assert_eq!(day_start(day.succ_opt().unwrap(), berlin()), at("2026-03-29T22:00:00Z"));
    }

    #[test]
    fn a_day_that_skips_midnight_starts_at_its_first_instant() {
        // Chile's spring forward skips 00:00-01:00 local time.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = day_start(day, santiago);
        assert_eq!(start.with_timezone(&santiago).date_naive(), day);
        assert_eq!(local_day(start - Duration::seconds(1), santiago), day.pred_opt().unwrap());
    }

    #[test]
    fn a_scan_passes_the_range_only_well_before_its_start() {
        let mut search = SaleSearch::of(Owner::Buyer("b1".into()));
        assert!(!search.passed(at("2000-01-01T00:00:00Z")), "no start: the scan goes on");
        search.from = Some(at("2026-12-04T00:00:00Z"));
        assert!(!search.passed(at("2026-12-03T23:56:00Z")), "within the margin");
        assert!(search.passed(at("2026-12-03T23:54:59Z")));
    }

    fn approved_return(supplier_id: &str, resolved_at: DateTime<Utc>, reversed: Money) -> Event {
        Event::ReturnResolved(ReturnResolved {
            return_id: "ret_1".into(),
            sale_id: "sal_1".into(),
            buyer_id: "b1".into(),
            supplier_id: supplier_id.into(),
            approved: true,
            credit: Money::cents(3800),
            payout_reversed: reversed,
            currency: crate::domain::money::Currency::EUR,
            reason: "invalid_phone".into(),
            note: None,
            requested_at: resolved_at,
            resolved_at,
            sold_at: resolved_at - Duration::days(1),
            resolution_reason: None,
            revision: 1,
        })
    }

    #[test]
    fn payouts_count_sales_on_their_local_day_and_approved_returns_on_theirs() {
        let example = sale(at("2026-12-03T23:30:00Z"));
        let supplier = example.supplier_id.clone();
        let mut payouts = Payouts::new(&supplier, berlin(), at("2026-12-01T00:00:00Z"));
        payouts.take(&Event::from(example.clone()));
        payouts.take(&Event::from(sale(at("2026-12-04T10:00:00Z"))));
        payouts.take(&Event::from(sale(at("2026-11-30T10:00:00Z"))));
        let mut others = sale(at("2026-12-04T10:00:00Z"));
        others.supplier_id = "someone-else".into();
        payouts.take(&Event::from(others));
        payouts.take(&approved_return(&supplier, at("2026-12-04T12:00:00Z"), Money::cents(2280)));
        payouts.take(&approved_return("someone-else", at("2026-12-04T12:00:00Z"), Money::cents(2280)));

        let days: Vec<_> = payouts.days().map(|(day, _, tally)| (day.to_string(), *tally)).collect();
        let earned = example.payout;
        assert_eq!(days.len(), 1, "23:30Z on the 3rd is the 4th in Berlin: {days:?}");
        assert_eq!(days[0].0, "2026-12-04");
        assert_eq!(days[0].1.sold, 2);
        assert_eq!(days[0].1.earned, earned + earned);
        assert_eq!(days[0].1.returned, 1);
        assert_eq!(days[0].1.net(), earned + earned - Money::cents(2280));
        assert_eq!(payouts.totals()[&crate::domain::money::Currency::EUR], days[0].1);
    }

    proptest! {
        /// Whatever order the events come in, the total is every own sale's payout since
        /// the start, less every own approved return's reversal.
        #[test]
        fn payouts_sum_in_any_order(minutes in proptest::collection::vec(0i64..60 * 24 * 20, 1..40), seed in any::<u64>()) {
            let since = at("2026-12-01T00:00:00Z");
            let base = at("2026-11-25T00:00:00Z");
            let mut events: Vec<Event> = minutes.iter().map(|m| Event::from(sale(base + Duration::minutes(*m)))).collect();
            let supplier = sale(base).supplier_id;
            let expected: Money = minutes.iter().filter(|m| base + Duration::minutes(**m) >= since).map(|_| sale(base).payout).sum();
            let mut rotated = events.clone();
            rotated.rotate_left((seed as usize) % events.len());
            let mut forwards = Payouts::new(&supplier, berlin(), since);
            let mut shuffled = Payouts::new(&supplier, berlin(), since);
            events.iter().for_each(|event| forwards.take(event));
            rotated.iter().for_each(|event| shuffled.take(event));
            events.clear();
            let total = forwards.totals().values().map(|day| day.earned).sum::<Money>();
            prop_assert_eq!(total, expected);
            prop_assert_eq!(forwards.totals(), shuffled.totals());
            prop_assert_eq!(forwards.days().count(), shuffled.days().count());
        }
    }
}
