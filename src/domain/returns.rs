//! Returns (DESIGN §4): a buyer sends back a bad lead; it is approved at once or waits for
//! an operator; an approval credits the buyer and reverses the supplier's payout.
//!
//! The rules, without storage: who may return what and until when, which reason codes
//! count, and how a pending return is resolved. The engine journals what these functions
//! decide; `ReturnResolved` is what the ledger stream carries.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{ReturnResolved, SaleSettled};
use super::model::{Campaign, FieldError};
use super::money::{Currency, Money};

/// A buyer's note says what was wrong with the lead; a short paragraph at most.
pub const NOTE_CHARS_MAX: usize = 1_000;
/// An operator's reason for a decision, shown to buyer and supplier.
pub const RESOLUTION_REASON_CHARS_MAX: usize = 500;

/// The return terms a sale was made under (the campaign's at the time of sale), so a later
/// change or deletion of the campaign does not change what the buyer bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnTerms {
    pub window_days: u32,
    pub require_approval: bool,
}

impl ReturnTerms {
    pub fn of(campaign: &Campaign) -> ReturnTerms {
        ReturnTerms { window_days: campaign.return_window_days, require_approval: campaign.returns_require_approval }
    }

    /// The last instant a return of a lead sold at `sold_at` is accepted: the window is a
    /// span of whole days from the sale (7 days = 168 hours), the same in every time zone.
    pub fn closes_at(&self, sold_at: DateTime<Utc>) -> DateTime<Utc> {
        sold_at + Duration::days(i64::from(self.window_days))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    Pending,
    Approved,
    Rejected,
}

impl ReturnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnStatus::Pending => "pending",
            ReturnStatus::Approved => "approved",
            ReturnStatus::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<ReturnStatus> {
        match text {
            "pending" => Some(ReturnStatus::Pending),
            "approved" => Some(ReturnStatus::Approved),
            "rejected" => Some(ReturnStatus::Rejected),
            _ => None,
        }
    }
}

/// One return of one sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadReturn {
    pub return_id: String,
    pub sale_id: String,
    pub lead_id: String,
    pub buyer_id: String,
    pub supplier_id: String,
    pub campaign_id: String,
    pub vertical: String,
    pub reason: String,
    pub note: Option<String>,
    pub status: ReturnStatus,
    pub requested_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The operator's words when deciding (always given for a rejection).
    pub resolution_reason: Option<String>,
    /// The sale's price and payout: what an approval gives back.
    pub price: Money,
    pub payout: Money,
    pub currency: Currency,
    pub internal: bool,
    pub sold_at: DateTime<Utc>,
    /// The buyer's own id of the lead, when its answer rules read one (DESIGN §5.1): what
    /// the buyer and the operator find it by in the buyer's systems. Absent in returns
    /// journaled before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_reference: Option<String>,
}

impl LeadReturn {
    /// What the buyer gets back when approved: the price it paid (internal buyers paid
    /// nothing, so get nothing).
    pub fn credit(&self) -> Money {
        if self.status == ReturnStatus::Approved && !self.internal {
            self.price
        } else {
            Money::ZERO
        }
    }

    pub fn payout_reversed(&self) -> Money {
        if self.status == ReturnStatus::Approved {
            self.payout
        } else {
            Money::ZERO
        }
    }

    /// The ledger event of a resolved return (None while pending).
    pub fn resolved_event(&self) -> Option<ReturnResolved> {
        let resolved_at = self.resolved_at?;
        if self.status == ReturnStatus::Pending {
            return None;
        }
        Some(ReturnResolved {
            return_id: self.return_id.clone(),
            sale_id: self.sale_id.clone(),
            buyer_id: self.buyer_id.clone(),
            supplier_id: self.supplier_id.clone(),
            approved: self.status == ReturnStatus::Approved,
            credit: self.credit(),
            payout_reversed: self.payout_reversed(),
            currency: self.currency,
            reason: self.reason.clone(),
            note: self.note.clone(),
            requested_at: self.requested_at,
            resolved_at,
            sold_at: self.sold_at,
            resolution_reason: self.resolution_reason.clone(),
            revision: 0,
        })
    }

    /// Rebuilds a resolved return at start from its ledger event and its sale (journaled
    /// before any return of it).
    /// This pending return as `event` resolved it.
    pub fn resolved_by(self, event: &ReturnResolved) -> LeadReturn {
        LeadReturn {
            status: if event.approved { ReturnStatus::Approved } else { ReturnStatus::Rejected },
            resolved_at: Some(event.resolved_at),
            resolution_reason: event.resolution_reason.clone(),
            reason: event.reason.clone(),
            note: event.note.clone(),
            ..self
        }
    }

    pub fn from_event(event: &ReturnResolved, sale: &SaleSettled) -> LeadReturn {
        LeadReturn {
            return_id: event.return_id.clone(),
            sale_id: event.sale_id.clone(),
            lead_id: sale.lead_id.clone(),
            buyer_id: event.buyer_id.clone(),
            supplier_id: event.supplier_id.clone(),
            campaign_id: sale.campaign_id.clone(),
            vertical: sale.vertical.clone(),
            reason: event.reason.clone(),
            note: event.note.clone(),
            status: if event.approved { ReturnStatus::Approved } else { ReturnStatus::Rejected },
            requested_at: event.requested_at,
            resolved_at: Some(event.resolved_at),
            resolution_reason: event.resolution_reason.clone(),
            price: sale.price,
            payout: sale.payout,
            currency: event.currency,
            internal: sale.internal,
            sold_at: event.sold_at,
            buyer_reference: sale.buyer_reference.clone(),
        }
    }
}

/// Why a return request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnRefusal {
    /// Field errors (unknown reason code, note too long): 422 with details.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    #[error("the return window closed at {closes_at}")]
    WindowClosed { closes_at: DateTime<Utc> },
}

/// Checks a buyer's request to return `sale` at `now`: the reason is one of the vertical's
/// codes, the note is short, and the sale's return window is still open.
pub fn check_request(
    sale: &SaleSettled,
    terms: ReturnTerms,
    reasons: &[String],
    reason: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), ReturnRefusal> {
    let mut errors = Vec::new();
    if !reasons.iter().any(|known| known == reason) {
        errors.push(FieldError::new("reason", format!("unknown reason code; one of: {}", reasons.join(", "))));
    }
    if note.is_some_and(|n| n.chars().count() > NOTE_CHARS_MAX) {
        errors.push(FieldError::new("note", format!("at most {NOTE_CHARS_MAX} characters")));
    }
    if !errors.is_empty() {
        return Err(ReturnRefusal::Invalid(errors));
    }
    let closes_at = terms.closes_at(sale.sold_at);
    if now > closes_at {
        return Err(ReturnRefusal::WindowClosed { closes_at });
    }
    Ok(())
}

/// A new return of `sale`: pending, or approved at once when the sale's terms do not ask
/// for an operator.
pub fn open(
    return_id: String,
    sale: &SaleSettled,
    terms: ReturnTerms,
    reason: String,
    note: Option<String>,
    now: DateTime<Utc>,
) -> LeadReturn {
    let immediate = !terms.require_approval;
    LeadReturn {
        return_id,
        sale_id: sale.sale_id.clone(),
        lead_id: sale.lead_id.clone(),
        buyer_id: sale.buyer_id.clone(),
        supplier_id: sale.supplier_id.clone(),
        campaign_id: sale.campaign_id.clone(),
        vertical: sale.vertical.clone(),
        reason,
        note: note.filter(|n| !n.trim().is_empty()),
        status: if immediate { ReturnStatus::Approved } else { ReturnStatus::Pending },
        requested_at: now,
        resolved_at: immediate.then_some(now),
        resolution_reason: None,
        price: sale.price,
        payout: sale.payout,
        currency: sale.currency,
        internal: sale.internal,
        sold_at: sale.sold_at,
        buyer_reference: sale.buyer_reference.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the return is already {0}")]
    NotPending(&'static str),
    #[error("invalid: {0:?}")]
    Invalid(Vec<FieldError>),
}

/// An operator's decision on a pending return. A rejection must say why (the buyer and
/// the supplier are told); an approval may.
pub fn resolve(
    pending: &LeadReturn,
    approve: bool,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<LeadReturn, ResolveError> {
    if pending.status != ReturnStatus::Pending {
        return Err(ResolveError::NotPending(pending.status.as_str()));
    }
    let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    match &reason {
        None if !approve => {
            return Err(ResolveError::Invalid(vec![FieldError::new("reason", "required when rejecting")]));
        }
        Some(r) if r.chars().count() > RESOLUTION_REASON_CHARS_MAX => {
            return Err(ResolveError::Invalid(vec![FieldError::new(
                "reason",
                format!("at most {RESOLUTION_REASON_CHARS_MAX} characters"),
            )]));
        }
        _ => {}
    }
    let mut resolved = pending.clone();
    resolved.status = if approve { ReturnStatus::Approved } else { ReturnStatus::Rejected };
    resolved.resolved_at = Some(now);
    resolved.resolution_reason = reason;
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn sale(sold_at: DateTime<Utc>, internal: bool) -> SaleSettled {
        SaleSettled { internal, ..SaleSettled::example(sold_at) }
    }

    fn reasons() -> Vec<String> {
        crate::domain::model::DEFAULT_RETURN_REASONS.iter().map(|r| r.to_string()).collect()
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).single().unwrap()
    }

    const WEEK: ReturnTerms = ReturnTerms { window_days: 7, require_approval: true };

    #[test]
    fn the_window_is_whole_days_from_the_sale_inclusive_of_its_last_instant() {
        let sold = sale(at(1, 10), false);
        assert_eq!(check_request(&sold, WEEK, &reasons(), "invalid_phone", None, at(8, 10)), Ok(()));
        let late = check_request(&sold, WEEK, &reasons(), "invalid_phone", None, at(8, 10) + Duration::seconds(1));
        assert_eq!(late, Err(ReturnRefusal::WindowClosed { closes_at: at(8, 10) }));
        let none = ReturnTerms { window_days: 0, require_approval: false };
        assert!(check_request(&sold, none, &reasons(), "other", None, at(1, 11)).is_err(), "0 days: no returns");
    }

    #[test]
    fn unknown_reasons_and_long_notes_are_field_errors() {
        let sold = sale(at(1, 10), false);
        let long = "x".repeat(NOTE_CHARS_MAX + 1);
        let Err(ReturnRefusal::Invalid(errors)) =
            check_request(&sold, WEEK, &reasons(), "didnt_like_it", Some(&long), at(2, 0))
        else {
            panic!("expected field errors");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["reason", "note"]);
    }

    #[test]
    fn without_approval_a_return_is_approved_at_once_and_credits_the_price() {
        let sold = sale(at(1, 10), false);
        let terms = ReturnTerms { window_days: 7, require_approval: false };
        let opened = open("ret_1".into(), &sold, terms, "invalid_phone".into(), Some("  ".into()), at(2, 9));
        assert_eq!(opened.status, ReturnStatus::Approved);
        assert_eq!(opened.note, None, "a blank note is no note");
        let event = opened.resolved_event().unwrap();
        assert_eq!((event.credit, event.payout_reversed), (Money::cents(3800), Money::cents(2280)));
        assert_eq!((event.sold_at, event.requested_at, event.resolved_at), (at(1, 10), at(2, 9), at(2, 9)));
    }

    #[test]
    fn a_rejection_needs_a_reason_and_credits_nothing() {
        let sold = sale(at(1, 10), false);
        let pending = open("ret_1".into(), &sold, WEEK, "no_intent".into(), None, at(2, 9));
        assert_eq!(pending.status, ReturnStatus::Pending);
        assert!(pending.resolved_event().is_none());
        assert!(matches!(resolve(&pending, false, Some(" ".into()), at(3, 0)), Err(ResolveError::Invalid(_))));
        let rejected = resolve(&pending, false, Some("the consumer confirmed interest".into()), at(3, 0)).unwrap();
        let event = rejected.resolved_event().unwrap();
        assert!(!event.approved);
        assert_eq!((event.credit, event.payout_reversed), (Money::ZERO, Money::ZERO));
        assert_eq!(event.resolution_reason.as_deref(), Some("the consumer confirmed interest"));
        assert_eq!(resolve(&rejected, true, None, at(4, 0)), Err(ResolveError::NotPending("rejected")));
    }

    #[test]
    fn internal_buyers_get_no_credit_but_the_payout_is_reversed() {
        let sold = sale(at(1, 10), true);
        let pending = open("ret_1".into(), &sold, WEEK, "other".into(), None, at(2, 9));
        let approved = resolve(&pending, true, None, at(3, 0)).unwrap();
        assert_eq!((approved.credit(), approved.payout_reversed()), (Money::ZERO, Money::cents(2280)));
    }

    #[test]
    fn a_resolved_return_survives_its_ledger_event() {
        let sold = sale(at(1, 10), false);
        let pending = open("ret_1".into(), &sold, WEEK, "other".into(), Some("wrong number".into()), at(2, 9));
        let approved = resolve(&pending, true, Some("confirmed".into()), at(3, 0)).unwrap();
        let event = approved.resolved_event().unwrap();
        assert_eq!(LeadReturn::from_event(&event, &sold), approved);
    }

    proptest! {
        /// For every sale time, window and request time: accepted exactly while
        /// `now <= sold_at + days`, whatever the reason's validity otherwise.
        #[test]
        fn the_window_law(sold_min in 0i64..1_000_000, days in 0u32..90, offset_min in -10i64..200_000) {
            let sold_at = at(1, 0) + Duration::minutes(sold_min);
            let now = sold_at + Duration::minutes(offset_min);
            let terms = ReturnTerms { window_days: days, require_approval: true };
            let verdict = check_request(&sale(sold_at, false), terms, &reasons(), "other", None, now);
            let open = now <= sold_at + Duration::days(i64::from(days));
            prop_assert_eq!(verdict.is_ok(), open);
        }
    }
}
