use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use rust_decimal_macros::dec;

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn book(mode: BillingMode, interval: Interval) -> BuyerBook {
    BuyerBook {
        buyer_id: "buy_1".into(),
        mode,
        interval,
        zone: chrono_tz::Europe::Berlin,
        currency: "EUR".into(),
        billed_through: None,
        balance: Decimal::ZERO,
    }
}

fn sale(id: &str, sold_at: &str, amount: Decimal) -> OpenSale {
    OpenSale {
        sale_id: id.into(),
        lead_id: format!("led_{id}"),
        vertical: "solar".into(),
        campaign_id: "cmp_1".into(),
        currency: "EUR".into(),
        sold_at: at(sold_at),
        amount,
        returned: None,
        buyer_reference: None,
    }
}

fn credit(return_id: &str, of: &OpenSale, resolved_at: &str, document: Option<(&str, Period)>) -> OpenReturn {
    OpenReturn {
        return_id: return_id.into(),
        sale_id: of.sale_id.clone(),
        reason: "invalid_phone".into(),
        currency: "EUR".into(),
        sold_at: of.sold_at,
        resolved_at: at(resolved_at),
        amount: of.amount,
        sale_document: document.map(|(number, period)| (number.to_string(), period)),
        buyer_reference: of.buyer_reference.clone(),
    }
}

fn week(from: &str) -> Period {
    Interval::Weekly.period_of(day(from))
}

#[test]
fn a_weekly_invoice_has_one_line_per_sale_of_the_closed_week_only() {
    let sales = vec![
        sale("s1", "2026-11-02T09:00:00Z", dec!(38.50)),
        sale("s2", "2026-11-08T22:30:00Z", dec!(12.00)), // 23:30 Sunday in Berlin: same week
        sale("s3", "2026-11-08T23:30:00Z", dec!(20.00)), // 00:30 Monday in Berlin: next week
    ];
    let drafted = draft_buyer(&book(BillingMode::Invoice, Interval::Weekly), sales, vec![], vec![], day("2026-11-10"));
    assert_eq!(drafted.drafts.len(), 1);
    let invoice = &drafted.drafts[0];
    assert_eq!((invoice.kind, invoice.period), (DocumentKind::Invoice, week("2026-11-02")));
    let ids: Vec<_> = invoice.lines.iter().map(|line| line.sale_id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["s1", "s2"]);
    assert!(invoice.lines.iter().all(|line| line.kind == LineKind::Sale));
    assert_eq!(invoice.total(), dec!(50.50));
    assert_eq!(drafted.billed_through, day("2026-11-08"));
}

#[test]
fn nothing_is_drafted_for_an_open_period_and_an_internal_buyer_has_nothing_to_bill() {
    let sales = vec![sale("s1", "2026-11-02T09:00:00Z", dec!(38.50))];
    let open =
        draft_buyer(&book(BillingMode::Invoice, Interval::Weekly), sales.clone(), vec![], vec![], day("2026-11-08"));
    assert!(open.drafts.is_empty());
    let topped_up =
        vec![OpenTopUp { sequence: 1, at: at("2026-11-02T08:00:00Z"), amount: dec!(50), reference: "w".into() }];
    let internal = book(BillingMode::Internal, Interval::Weekly);
    assert!(draft_buyer(&internal, vec![], vec![], topped_up.clone(), day("2026-12-31")).drafts.is_empty());
    // A sale charged before the buyer became internal is still invoiced.
    let charged = draft_buyer(&internal, sales, vec![], vec![], day("2026-12-31"));
    assert_eq!(charged.drafts.len(), 1);
    assert_eq!(charged.drafts[0].kind, DocumentKind::Invoice);
    // Top-ups belong on statements only: an invoice buyer's week with only a top-up is empty.
    let invoice = book(BillingMode::Invoice, Interval::Weekly);
    assert!(draft_buyer(&invoice, vec![], vec![], topped_up, day("2026-12-31")).drafts.is_empty());
}

#[test]
fn an_invoice_buyers_credit_notes_do_not_touch_a_balance() {
    let invoiced = sale("s1", "2026-11-02T09:00:00Z", dec!(38.50));
    let credits = vec![credit("r1", &invoiced, "2026-11-05T09:00:00Z", Some(("INV-2026-000001", week("2026-11-02"))))];
    let drafted =
        draft_buyer(&book(BillingMode::Invoice, Interval::Weekly), vec![], credits, vec![], day("2026-11-09"));
    assert_eq!(drafted.drafts[0].kind, DocumentKind::CreditNote);
    assert_eq!(drafted.balance, Decimal::ZERO);
}

#[test]
fn a_late_sale_becomes_an_adjustment_on_the_next_document() {
    let mut billed = book(BillingMode::Invoice, Interval::Weekly);
    billed.billed_through = Some(day("2026-11-08"));
    let late = sale("late", "2026-11-04T10:00:00Z", dec!(9.99));
    // The next week is still open: the late sale waits.
    let waiting = draft_buyer(&billed, vec![late.clone()], vec![], vec![], day("2026-11-12"));
    assert!(waiting.drafts.is_empty());
    let next = draft_buyer(
        &billed,
        vec![late, sale("s4", "2026-11-10T10:00:00Z", dec!(1))],
        vec![],
        vec![],
        day("2026-11-16"),
    );
    assert_eq!(next.drafts.len(), 1);
    assert_eq!(next.drafts[0].period, week("2026-11-09"));
    let kinds: Vec<_> = next.drafts[0].lines.iter().map(|line| line.kind).collect();
    assert_eq!(kinds, [LineKind::Adjustment, LineKind::Sale]);
    assert_eq!(next.drafts[0].total(), dec!(10.99));
}

#[test]
fn a_return_of_an_invoiced_sale_gets_a_credit_note_and_one_before_invoicing_excludes_the_sale() {
    let invoiced = sale("s1", "2026-11-02T09:00:00Z", dec!(38.50));
    let returned_early = OpenSale {
        returned: Some(credit("r2", &sale("s2", "2026-11-03T09:00:00Z", dec!(12)), "2026-11-04T09:00:00Z", None)),
        ..sale("s2", "2026-11-03T09:00:00Z", dec!(12))
    };
    let mut billed = book(BillingMode::Invoice, Interval::Weekly);
    billed.billed_through = Some(day("2026-11-01"));
    let credits = vec![credit("r1", &invoiced, "2026-11-05T09:00:00Z", Some(("INV-2026-000001", week("2026-10-26"))))];
    let drafted = draft_buyer(&billed, vec![returned_early], credits, vec![], day("2026-11-09"));
    assert_eq!(drafted.drafts.len(), 2);
    let note = &drafted.drafts[0];
    assert_eq!(note.kind, DocumentKind::CreditNote);
    assert_eq!(note.refers_to.as_deref(), Some("INV-2026-000001"));
    assert_eq!(note.lines[0].refers_to.as_deref(), Some("INV-2026-000001"));
    assert_eq!(note.total(), dec!(-38.50));
    let invoice = &drafted.drafts[1];
    assert_eq!(invoice.lines[0].kind, LineKind::Excluded);
    assert_eq!(invoice.lines[0].return_id.as_deref(), Some("r2"));
    assert_eq!(invoice.total(), dec!(0));
}

#[test]
fn the_buyers_documents_show_its_reference_for_the_lead_and_the_suppliers_settlement_does_not() {
    let referenced = |id: &str, sold_at: &str| OpenSale {
        buyer_reference: Some(format!("CRM-{id}")),
        ..sale(id, sold_at, dec!(38.50))
    };
    let (invoiced, returned) = (referenced("s1", "2026-10-27T09:00:00Z"), referenced("s3", "2026-11-03T09:00:00Z"));
    let early = credit("r3", &returned, "2026-11-04T09:00:00Z", None);
    let sales = vec![
        referenced("s2", "2026-11-02T09:00:00Z"),
        sale("s4", "2026-11-04T09:00:00Z", dec!(12.00)),
        OpenSale { returned: Some(early), ..returned.clone() },
    ];
    let credits = vec![credit("r1", &invoiced, "2026-11-05T09:00:00Z", Some(("INV-2026-000001", week("2026-10-26"))))];
    let mut billed = book(BillingMode::Invoice, Interval::Weekly);
    billed.billed_through = Some(day("2026-11-01"));
    let drafted = draft_buyer(&billed, sales.clone(), credits, vec![], day("2026-11-09"));
    let [note, invoice] = drafted.drafts.as_slice() else { panic!("a credit note and an invoice: {drafted:?}") };
    assert_eq!(note.lines[0].buyer_reference.as_deref(), Some("CRM-s1"), "a credit names the lead as the buyer does");
    let shown: Vec<(LineKind, Option<&str>)> =
        invoice.lines.iter().map(|line| (line.kind, line.buyer_reference.as_deref())).collect();
    let expected = [(LineKind::Sale, Some("CRM-s2")), (LineKind::Excluded, Some("CRM-s3")), (LineKind::Sale, None)];
    assert_eq!(shown, expected, "in order of sale; none where the buyer named none");

    let settled = draft_supplier("sup_1", Interval::Weekly, chrono_tz::UTC, None, sales, vec![], day("2026-11-09"));
    assert!(settled.drafts.iter().flat_map(|draft| &draft.lines).all(|line| line.buyer_reference.is_none()));
}

#[test]
fn a_statement_carries_its_balance_and_credit_notes_raise_the_next_opening() {
    let prepaid = book(BillingMode::Prepaid, Interval::Weekly);
    let topups =
        vec![OpenTopUp { sequence: 3, at: at("2026-11-02T08:00:00Z"), amount: dec!(100), reference: "wire-1".into() }];
    let sales = vec![sale("s1", "2026-11-02T09:00:00Z", dec!(10)), sale("s2", "2026-11-03T09:00:00Z", dec!(15.25))];
    let first = draft_buyer(&prepaid, sales.clone(), vec![], topups, day("2026-11-09"));
    let statement = &first.drafts[0];
    assert_eq!(statement.kind, DocumentKind::Statement);
    assert_eq!((statement.opening_balance, statement.closing_balance), (Some(dec!(0)), Some(dec!(74.75))));
    assert_eq!(statement.total(), dec!(25.25));

    let after = BuyerBook { billed_through: Some(first.billed_through), balance: first.balance, ..prepaid };
    let credits = vec![credit("r1", &sales[0], "2026-11-10T09:00:00Z", Some(("ST-2026-000001", statement.period)))];
    let second =
        draft_buyer(&after, vec![sale("s3", "2026-11-11T09:00:00Z", dec!(4.75))], credits, vec![], day("2026-11-16"));
    assert_eq!(second.drafts[0].kind, DocumentKind::CreditNote);
    let next = &second.drafts[1];
    assert_eq!((next.opening_balance, next.closing_balance), (Some(dec!(84.75)), Some(dec!(80.00))));
}

#[test]
fn a_settlement_pays_payouts_and_takes_back_returned_ones_with_negative_lines() {
    let zone = chrono_tz::UTC;
    let sold = sale("s1", "2026-10-30T09:00:00Z", dec!(22.80));
    let reversal = credit(
        "r1",
        &sold,
        "2026-11-03T09:00:00Z",
        Some(("SS-2026-000001", Interval::Monthly.period_of(day("2026-10-30")))),
    );
    let drafted = draft_supplier(
        "sup_1",
        Interval::Monthly,
        zone,
        Some(day("2026-10-31")),
        vec![sale("s2", "2026-11-05T09:00:00Z", dec!(10))],
        vec![reversal],
        day("2026-12-01"),
    );
    assert_eq!(drafted.drafts.len(), 1);
    let settlement = &drafted.drafts[0];
    assert_eq!(settlement.kind, DocumentKind::SupplierSettlement);
    assert_eq!(settlement.lines[1].kind, LineKind::Return);
    assert_eq!(settlement.lines[1].amount, dec!(-22.80));
    assert_eq!(settlement.lines[1].refers_to.as_deref(), Some("SS-2026-000001"));
    assert!(settlement.lines[1].description.contains("2026-10-01 to 2026-10-31"));
    assert_eq!(settlement.total(), dec!(-12.80));
}

#[test]
fn numbers_are_per_series_and_year() {
    assert_eq!(number(DocumentKind::Invoice, 2026, 1), "INV-2026-000001");
    assert_eq!(number(DocumentKind::SupplierSettlement, 2027, 42), "SS-2027-000042");
}

/// Runs on increasing dates over random sales: each sale lands on exactly one document once
/// its period has closed, and the documents add up to the sales to the cent.
fn runs_bill_every_sale_once(sold: Vec<(u32, u32)>, runs: Vec<u32>, interval: Interval) -> Result<(), TestCaseError> {
    let start = chrono_tz::America::New_York.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap().with_timezone(&Utc);
    let mut open: Vec<OpenSale> = sold
        .iter()
        .enumerate()
        .map(|(i, (minutes, cents))| OpenSale {
            sold_at: start + chrono::Duration::minutes(i64::from(*minutes)),
            amount: Decimal::new(i64::from(*cents), 2),
            ..sale(&format!("s{i}"), "2026-01-01T00:00:00Z", dec!(0))
        })
        .collect();
    let mut billed = BuyerBook { zone: chrono_tz::America::New_York, ..book(BillingMode::Invoice, interval) };
    let mut billed_ids = Vec::new();
    let mut billed_total = Decimal::ZERO;
    let mut as_of = day("2026-01-01");
    for step in runs {
        as_of = as_of + chrono::Days::new(step.into());
        let drafted = draft_buyer(&billed, open.clone(), vec![], vec![], as_of);
        for draft in &drafted.drafts {
            prop_assert!(draft.period.to < as_of);
            billed_total += draft.total();
            billed_ids.extend(draft.lines.iter().filter_map(|line| line.sale_id.clone()));
        }
        open.retain(|sale| !billed_ids.contains(&sale.sale_id));
        prop_assert!(drafted.billed_through >= billed.billed_through.unwrap_or(NaiveDate::MIN));
        billed = BuyerBook { billed_through: Some(drafted.billed_through), ..billed };
        // Whatever is still open was sold after the last closed day.
        for sale in &open {
            prop_assert!(local_date(sale.sold_at, billed.zone) > drafted.billed_through);
        }
    }
    let mut unique = billed_ids.clone();
    unique.sort();
    unique.dedup();
    prop_assert_eq!(unique.len(), billed_ids.len());
    let expected: Decimal = sold
        .iter()
        .enumerate()
        .filter(|(i, _)| billed_ids.contains(&format!("s{i}")))
        .map(|(_, (_, cents))| Decimal::new(i64::from(*cents), 2))
        .sum();
    prop_assert_eq!(billed_total, expected);
    Ok(())
}

proptest! {
    #[test]
    fn every_sale_is_billed_once_whatever_the_run_dates(
        sold in proptest::collection::vec((0u32..200_000, 1u32..100_000), 0..60),
        runs in proptest::collection::vec(0u32..40, 1..12),
        interval in prop_oneof![Just(Interval::Weekly), Just(Interval::SemiMonthly), Just(Interval::Monthly)],
    ) {
        runs_bill_every_sale_once(sold, runs, interval)?;
    }
}

#[test]
fn a_sale_keeps_its_currency_when_the_buyer_changes_currency() {
    let mut book = book(BillingMode::Invoice, Interval::Weekly);
    book.currency = "USD".into();
    let eur = sale("s1", "2026-11-02T09:00:00Z", dec!(38.50));
    let usd = OpenSale { currency: "USD".into(), ..sale("s2", "2026-11-03T09:00:00Z", dec!(41.00)) };
    let drafted = draft_buyer(&book, vec![eur.clone(), usd], vec![], vec![], day("2026-11-09"));
    let currencies: Vec<(&str, Decimal)> = drafted.drafts.iter().map(|d| (d.currency.as_str(), d.total())).collect();
    assert_eq!(currencies, [("EUR", dec!(38.50)), ("USD", dec!(41.00))]);
    let credits = vec![credit("r1", &eur, "2026-11-10T09:00:00Z", Some(("INV-2026-000001", week("2026-11-02"))))];
    let note = draft_buyer(
        &BuyerBook { billed_through: Some(drafted.billed_through), ..book },
        vec![],
        credits,
        vec![],
        day("2026-11-11"),
    );
    assert_eq!(note.drafts[0].currency, "EUR");
}
