//! Report arithmetic over ledger facts (DESIGN §13): revenue, returns and timeseries.
//!
//! Dates are UTC calendar dates. A sale counts in the span of its `sold_at`. A return counts
//! by `basis`: `accrual` books it in the period the lead was sold in (so a month's margin
//! does not move when a lead is returned later), `booked` in the period it was resolved.
//! Over a span that contains both the sale and the return both bases agree.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::money;
use super::period::{month_key, week_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    Accrual,
    Booked,
}

impl Basis {
    pub fn parse(text: &str) -> Option<Basis> {
        match text {
            "accrual" => Some(Basis::Accrual),
            "booked" => Some(Basis::Booked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Buyer,
    Supplier,
    Vertical,
    Country,
    Week,
    Month,
    Reason,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<GroupBy> {
        match text {
            "buyer" => Some(GroupBy::Buyer),
            "supplier" => Some(GroupBy::Supplier),
            "vertical" => Some(GroupBy::Vertical),
            "country" => Some(GroupBy::Country),
            "week" => Some(GroupBy::Week),
            "month" => Some(GroupBy::Month),
            "reason" => Some(GroupBy::Reason),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Buyer => "buyer",
            GroupBy::Supplier => "supplier",
            GroupBy::Vertical => "vertical",
            GroupBy::Country => "country",
            GroupBy::Week => "week",
            GroupBy::Month => "month",
            GroupBy::Reason => "reason",
        }
    }
}

/// A sale as reports see it.
#[derive(Debug, Clone)]
pub struct SaleFact {
    pub buyer_id: String,
    pub supplier_id: String,
    pub vertical: String,
    pub country: String,
    pub sold_on: NaiveDate,
    pub price: Decimal,
    pub payout: Decimal,
    pub internal: bool,
}

/// A resolved return as reports see it, with its sale's attributes.
#[derive(Debug, Clone)]
pub struct ReturnFact {
    pub sale: SaleFact,
    pub reason: String,
    pub approved: bool,
    pub credit: Decimal,
    pub payout_reversed: Decimal,
    pub resolved_on: NaiveDate,
}

impl ReturnFact {
    fn booked_on(&self, basis: Basis) -> NaiveDate {
        match basis {
            Basis::Accrual => self.sale.sold_on,
            Basis::Booked => self.resolved_on,
        }
    }
}

/// Inclusive date span of a report.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Span {
    fn contains(self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }
}

fn key_of(sale: &SaleFact, date: NaiveDate, group_by: GroupBy, reason: Option<&str>) -> String {
    match group_by {
        GroupBy::Buyer => sale.buyer_id.clone(),
        GroupBy::Supplier => sale.supplier_id.clone(),
        GroupBy::Vertical => sale.vertical.clone(),
        GroupBy::Country => sale.country.clone(),
        GroupBy::Week => week_key(date),
        GroupBy::Month => month_key(date),
        GroupBy::Reason => reason.unwrap_or("").to_string(),
    }
}

/// Revenue measures of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revenue {
    pub sales: u64,
    pub revenue: Decimal,
    pub returns: u64,
    pub refunds: Decimal,
    pub payouts: Decimal,
    pub internal_sales: u64,
    pub internal_value: Decimal,
}

impl Revenue {
    pub fn net_revenue(&self) -> Decimal {
        self.revenue - self.refunds
    }

    pub fn margin(&self) -> Decimal {
        self.net_revenue() - self.payouts
    }

    fn add(&mut self, other: &Revenue) {
        self.sales += other.sales;
        self.revenue += other.revenue;
        self.returns += other.returns;
        self.refunds += other.refunds;
        self.payouts += other.payouts;
        self.internal_sales += other.internal_sales;
        self.internal_value += other.internal_value;
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sales": self.sales,
            "revenue": money::format(self.revenue),
            "returns": self.returns,
            "refunds": money::format(self.refunds),
            "net_revenue": money::format(self.net_revenue()),
            "payouts": money::format(self.payouts),
            "margin": money::format(self.margin()),
            "internal_sales": self.internal_sales,
            "internal_value": money::format(self.internal_value),
        })
    }
}

/// Revenue by group, and the totals.
pub fn revenue(
    sales: &[SaleFact],
    returns: &[ReturnFact],
    span: Span,
    group_by: GroupBy,
    basis: Basis,
) -> (BTreeMap<String, Revenue>, Revenue) {
    let mut rows: BTreeMap<String, Revenue> = BTreeMap::new();
    for sale in sales.iter().filter(|sale| span.contains(sale.sold_on)) {
        let row = rows.entry(key_of(sale, sale.sold_on, group_by, None)).or_default();
        if sale.internal {
            row.internal_sales += 1;
            row.internal_value += sale.price;
        } else {
            row.sales += 1;
            row.revenue += sale.price;
        }
        row.payouts += sale.payout;
    }
    for ret in returns.iter().filter(|ret| ret.approved) {
        let date = ret.booked_on(basis);
        if !span.contains(date) {
            continue;
        }
        let row = rows.entry(key_of(&ret.sale, date, group_by, Some(&ret.reason))).or_default();
        row.returns += 1;
        row.refunds += ret.credit;
        row.payouts -= ret.payout_reversed;
    }
    let mut totals = Revenue::default();
    rows.values().for_each(|row| totals.add(row));
    (rows, totals)
}

/// Return measures of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Returns {
    pub sales: u64,
    pub approved: u64,
    pub rejected: u64,
    pub credits: Decimal,
}

impl Returns {
    /// Approved returns per billable sale, four places.
    pub fn rate(&self) -> Decimal {
        if self.sales == 0 {
            return Decimal::ZERO;
        }
        (Decimal::from(self.approved) / Decimal::from(self.sales)).round_dp(4)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sales": self.sales,
            "returns": self.approved,
            "rejected": self.rejected,
            "credits": money::format(self.credits),
            "return_rate": format!("{:.4}", self.rate()),
        })
    }
}

/// Returns by reason or buyer (or any other grouping), and the totals. For a grouping by
/// reason, each reason's rate is over all billable sales of the span.
pub fn returns(
    sales: &[SaleFact],
    returns: &[ReturnFact],
    span: Span,
    group_by: GroupBy,
    basis: Basis,
) -> (BTreeMap<String, Returns>, Returns) {
    let mut rows: BTreeMap<String, Returns> = BTreeMap::new();
    let mut totals = Returns::default();
    for sale in sales.iter().filter(|sale| !sale.internal && span.contains(sale.sold_on)) {
        totals.sales += 1;
        if group_by != GroupBy::Reason {
            rows.entry(key_of(sale, sale.sold_on, group_by, None)).or_default().sales += 1;
        }
    }
    for ret in returns.iter().filter(|ret| !ret.sale.internal) {
        let date = ret.booked_on(basis);
        if !span.contains(date) {
            continue;
        }
        let row = rows.entry(key_of(&ret.sale, date, group_by, Some(&ret.reason))).or_default();
        for measures in [row, &mut totals] {
            if ret.approved {
                measures.approved += 1;
                measures.credits += ret.credit;
            } else {
                measures.rejected += 1;
            }
        }
    }
    if group_by == GroupBy::Reason {
        rows.values_mut().for_each(|row| row.sales = totals.sales);
    }
    (rows, totals)
}

/// Net revenue per billable lead, two places.
pub fn revenue_per_lead(measures: &Revenue) -> Decimal {
    if measures.sales == 0 {
        return Decimal::ZERO;
    }
    (measures.net_revenue() / Decimal::from(measures.sales)).round_dp(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn sale(buyer: &str, sold_on: &str, price: Decimal) -> SaleFact {
        SaleFact {
            buyer_id: buyer.into(),
            supplier_id: "sup".into(),
            vertical: "solar".into(),
            country: "DE".into(),
            sold_on: day(sold_on),
            price,
            payout: price * dec!(0.6),
            internal: false,
        }
    }

    fn returned(sale: &SaleFact, resolved_on: &str) -> ReturnFact {
        ReturnFact {
            sale: sale.clone(),
            reason: "invalid_phone".into(),
            approved: true,
            credit: sale.price,
            payout_reversed: sale.payout,
            resolved_on: day(resolved_on),
        }
    }

    #[test]
    fn accrual_books_a_refund_in_the_month_of_the_sale_and_booked_in_the_month_of_the_return() {
        let october = sale("b1", "2026-10-30", dec!(40.00));
        let refund = returned(&october, "2026-11-03");
        let span = Span { from: day("2026-10-01"), to: day("2026-11-30") };
        let (accrual, accrual_totals) = revenue(
            std::slice::from_ref(&october),
            std::slice::from_ref(&refund),
            span,
            GroupBy::Month,
            Basis::Accrual,
        );
        let (booked, booked_totals) = revenue(&[october], &[refund], span, GroupBy::Month, Basis::Booked);
        assert_eq!(accrual["2026-10"].net_revenue(), dec!(0));
        assert!(!accrual.contains_key("2026-11"));
        assert_eq!(booked["2026-10"].net_revenue(), dec!(40.00));
        assert_eq!(booked["2026-11"].net_revenue(), dec!(-40.00));
        assert_eq!(accrual_totals, booked_totals);
        assert_eq!(accrual_totals.margin(), dec!(0));
    }

    #[test]
    fn internal_sales_are_reported_as_non_billable() {
        let mut inside = sale("house", "2026-11-02", dec!(25.00));
        inside.internal = true;
        let span = Span { from: day("2026-11-01"), to: day("2026-11-30") };
        let (rows, totals) =
            revenue(&[inside, sale("b1", "2026-11-02", dec!(10))], &[], span, GroupBy::Buyer, Basis::Accrual);
        assert_eq!((rows["house"].sales, rows["house"].internal_sales, rows["house"].revenue), (0, 1, dec!(0)));
        assert_eq!((totals.revenue, totals.internal_value), (dec!(10), dec!(25.00)));
    }

    #[test]
    fn return_rates_by_reason_are_over_all_sales() {
        let sales: Vec<SaleFact> = (1..=4).map(|d| sale("b1", &format!("2026-11-0{d}"), dec!(10))).collect();
        let mut rejected = returned(&sales[1], "2026-11-05");
        rejected.approved = false;
        let span = Span { from: day("2026-11-01"), to: day("2026-11-30") };
        let (rows, totals) =
            returns(&sales, &[returned(&sales[0], "2026-11-05"), rejected], span, GroupBy::Reason, Basis::Accrual);
        assert_eq!(rows["invalid_phone"].rate(), dec!(0.25));
        assert_eq!((totals.approved, totals.rejected, totals.sales), (1, 1, 4));
    }

    proptest! {
        #[test]
        fn both_bases_agree_over_a_span_holding_sales_and_returns(
            sold in proptest::collection::vec((0u32..60, 1u32..10_000, proptest::option::of(0u32..90)), 0..40)
        ) {
            let start = day("2026-09-01");
            let mut sales = Vec::new();
            let mut rets = Vec::new();
            for (offset, cents, returned_after) in sold {
                let sold_on = start + chrono::Days::new(offset.into());
                let s = SaleFact { sold_on, price: Decimal::new(cents.into(), 2), ..sale("b", "2026-09-01", dec!(0)) };
                if let Some(after) = returned_after {
                    rets.push(ReturnFact { resolved_on: sold_on + chrono::Days::new(after.into()), ..returned(&s, "2026-09-01") });
                }
                sales.push(s);
            }
            let span = Span { from: start, to: start + chrono::Days::new(200) };
            let (_, accrual) = revenue(&sales, &rets, span, GroupBy::Week, Basis::Accrual);
            let (_, booked) = revenue(&sales, &rets, span, GroupBy::Week, Basis::Booked);
            prop_assert_eq!(accrual, booked);
        }
    }
}
