//! Ledger events to their protobuf form: money as decimal strings, times as RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat, Utc};

use super::proto;
use crate::domain::ledger::{Event, LedgerEvent};
use crate::domain::model::{BillingInterval, BillingMode, Buyer, Payout, Supplier};

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn interval(interval: BillingInterval) -> String {
    match interval {
        BillingInterval::Weekly => "weekly",
        BillingInterval::SemiMonthly => "semi_monthly",
        BillingInterval::Monthly => "monthly",
    }
    .to_string()
}

pub fn to_proto(event: &LedgerEvent) -> proto::LedgerEvent {
    use proto::ledger_event::Event as P;
    let body = match &event.event {
        Event::SaleSettled(sale) => P::SaleSettled(proto::SaleSettled {
            sale_id: sale.sale_id.clone(),
            lead_id: sale.lead_id.clone(),
            ping_id: sale.ping_id.clone().unwrap_or_default(),
            supplier_id: sale.supplier_id.clone(),
            buyer_id: sale.buyer_id.clone(),
            campaign_id: sale.campaign_id.clone(),
            vertical: sale.vertical.clone(),
            country: sale.country.clone(),
            model: sale.model.as_str().to_string(),
            price: sale.price.to_string(),
            payout: sale.payout.to_string(),
            currency: sale.currency.to_string(),
            sold_at: time(sale.sold_at),
            internal: sale.internal,
            buyer_reference: sale.buyer_reference.clone().unwrap_or_default(),
        }),
        Event::ReturnResolved(resolved) => P::ReturnResolved(proto::ReturnResolved {
            return_id: resolved.return_id.clone(),
            sale_id: resolved.sale_id.clone(),
            buyer_id: resolved.buyer_id.clone(),
            supplier_id: resolved.supplier_id.clone(),
            approved: resolved.approved,
            credit: resolved.credit.to_string(),
            payout_reversed: resolved.payout_reversed.to_string(),
            currency: resolved.currency.to_string(),
            reason: resolved.reason.clone(),
            note: resolved.note.clone().unwrap_or_default(),
            requested_at: time(resolved.requested_at),
            resolved_at: time(resolved.resolved_at),
            sold_at: time(resolved.sold_at),
        }),
        Event::BalanceToppedUp(top_up) => P::BalanceToppedUp(proto::BalanceToppedUp {
            buyer_id: top_up.buyer_id.clone(),
            amount: top_up.amount.to_string(),
            reference: top_up.reference.clone(),
            balance_after: top_up.balance_after.to_string(),
            currency: top_up.currency.to_string(),
        }),
        Event::BuyerUpdated(buyer) => P::BuyerUpdated(buyer_updated(buyer)),
        Event::SupplierUpdated(supplier) => P::SupplierUpdated(supplier_updated(supplier)),
    };
    proto::LedgerEvent { sequence: event.sequence, at: time(event.at), event: Some(body) }
}

fn buyer_updated(buyer: &Buyer) -> proto::BuyerUpdated {
    proto::BuyerUpdated {
        buyer_id: buyer.id.clone(),
        name: buyer.name.clone(),
        email: buyer.email.clone().unwrap_or_default(),
        currency: buyer.currency.clone(),
        timezone: buyer.timezone.clone(),
        billing_mode: match buyer.billing.mode {
            BillingMode::Prepaid => "prepaid",
            BillingMode::Invoice => "invoice",
            BillingMode::Internal => "internal",
        }
        .to_string(),
        billing_interval: interval(buyer.billing.interval),
        payment_terms_days: buyer.billing.payment_terms_days.unwrap_or(0),
        credit_limit: buyer.billing.credit_limit.map(|limit| limit.to_string()).unwrap_or_default(),
    }
}

fn supplier_updated(supplier: &Supplier) -> proto::SupplierUpdated {
    let (payout_type, payout_percent, payout_amount) = match &supplier.payout {
        Payout::Revshare { percent } => ("revshare", percent.normalize().to_string(), String::new()),
        Payout::Fixed { amount } => ("fixed", String::new(), amount.to_string()),
    };
    proto::SupplierUpdated {
        supplier_id: supplier.id.clone(),
        name: supplier.name.clone(),
        email: supplier.email.clone().unwrap_or_default(),
        payout_type: payout_type.to_string(),
        payout_percent,
        payout_amount,
        billing_interval: interval(supplier.billing.interval),
        billing_timezone: supplier.billing.timezone.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::{BalanceToppedUp, SaleSettled};
    use crate::domain::model::Model;
    use crate::domain::money::Money;
    use chrono::TimeZone;

    #[test]
    fn money_travels_as_decimal_strings_and_times_as_rfc3339() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let sale = LedgerEvent {
            sequence: 7,
            at,
            event: Event::from(SaleSettled {
                model: Model::PingTree,
                price: Money::cents(3850),
                payout: Money::cents(2310),
                dedup_keys: vec!["ab".into()],
                ..SaleSettled::example(at)
            }),
        };
        let proto = to_proto(&sale);
        assert_eq!(proto.sequence, 7);
        assert_eq!(proto.at, "2026-11-25T10:00:00.000000Z");
        let Some(proto::ledger_event::Event::SaleSettled(sold)) = proto.event else { panic!("a sale") };
        assert_eq!((sold.price.as_str(), sold.payout.as_str(), sold.model.as_str()), ("38.50", "23.10", "ping_tree"));
        assert_eq!(sold.ping_id, "");
        assert_eq!(sold.buyer_reference, "", "no reference travels as the empty string");

        let top_up = to_proto(&LedgerEvent {
            sequence: 8,
            at,
            event: Event::BalanceToppedUp(BalanceToppedUp {
                buyer_id: "b1".into(),
                amount: Money::cents(100_000),
                reference: "wire".into(),
                balance_after: Money::cents(100_050),
                currency: crate::domain::money::Currency::EUR,
            }),
        });
        let Some(proto::ledger_event::Event::BalanceToppedUp(top)) = top_up.event else { panic!("a top-up") };
        assert_eq!((top.amount.as_str(), top.balance_after.as_str()), ("1000.00", "1000.50"));
    }

    #[test]
    fn a_sale_carries_the_buyer_reference_in_field_15() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let sale = LedgerEvent {
            sequence: 9,
            at,
            event: Event::from(SaleSettled { buyer_reference: Some("CRM-0042".into()), ..SaleSettled::example(at) }),
        };
        let proto = to_proto(&sale);
        let Some(proto::ledger_event::Event::SaleSettled(sold)) = &proto.event else { panic!("a sale") };
        assert_eq!(sold.buyer_reference, "CRM-0042");
        // On the wire it is field 15 (tag 15 << 3 | length-delimited = 0x7a), after every
        // field a consumer built before it knows: those consumers skip it.
        let wire = prost::Message::encode_to_vec(sold);
        let tail = [&[0x7a, 8][..], b"CRM-0042"].concat();
        assert!(wire.ends_with(&tail), "{wire:02x?}");
    }
}
