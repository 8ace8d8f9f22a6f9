//! Following the router's ledger stream (DESIGN §7) over gRPC: subscribe after the applied
//! cursor, apply what arrives in batches (each batch in one transaction with the cursor),
//! and reconnect with backoff when the router is away.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use leadrouter_types::{Currency, PingId};

use crate::domain::facts::{self, BillingMode, Entry, Fact, DEFAULT_PAYMENT_TERMS_DAYS};
use crate::domain::money;
use crate::store::{ledger, Db, StoreError};
use crate::telemetry;

pub mod proto {
    tonic::include_proto!("leadrouter.v1");
}

use proto::ledger_event::Event;
use proto::ledger_stream_client::LedgerStreamClient;

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("ledger address {0:?}: {1}")]
    Address(String, String),
    #[error("cannot reach the ledger: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("ledger stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("ledger event {sequence}: {field} is malformed")]
    Malformed { sequence: u64, field: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Payment terms beyond ten years are taken as ten years: the router does not bound them,
/// and a due date must stay a date.
const MAX_PAYMENT_TERMS_DAYS: u32 = 3_650;

impl ConsumeError {
    /// The metric label: `unreachable` heals by itself; `malformed` and `store` stall
    /// consumption until an operator looks (an event cannot be skipped without breaking
    /// exactly-once).
    pub fn kind(&self) -> &'static str {
        match self {
            ConsumeError::Address(..) | ConsumeError::Connect(_) | ConsumeError::Stream(_) => "unreachable",
            ConsumeError::Malformed { .. } => "malformed",
            ConsumeError::Store(_) => "store",
        }
    }
}

/// Most events applied in one transaction; more means fewer fsyncs while catching up.
const BATCH: usize = 1024;

/// Follows the stream until `shutdown` turns true, reconnecting with backoff (250 ms
/// doubling to 10 s, reset by every applied batch).
pub async fn follow(db: Db, source: Source, mut shutdown: watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(250);
    loop {
        let session = tokio::select! {
            result = session(&db, &source, None, &mut delay) => result,
            _ = crate::stopped(&mut shutdown) => return,
        };
        match session {
            Ok(()) => tracing::info!("ledger stream ended; reconnecting"),
            Err(error) => {
                telemetry::ledger_error(error.kind());
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "ledger stream");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Applies everything the router has now: reads until the stream is quiet for `quiet`.
/// Answers the applied sequence.
pub async fn catch_up(db: &Db, source: &Source, quiet: Duration) -> Result<u64, ConsumeError> {
    let mut delay = Duration::ZERO;
    session(db, source, Some(quiet), &mut delay).await?;
    Ok(db.applied()?)
}

/// Where the ledger is, and the name this worker registers under there.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    /// Registered with the router so that its retention never removes what this worker has
    /// not applied (DESIGN §14); None subscribes without registering.
    pub consumer: Option<String>,
}

/// How often the applied position is acknowledged to the router while events flow.
const ACKNOWLEDGE_EVERY: Duration = Duration::from_secs(10);

async fn session(db: &Db, source: &Source, quiet: Option<Duration>, delay: &mut Duration) -> Result<(), ConsumeError> {
    let mut client = LedgerStreamClient::new(connect(&source.url).await?);
    let after = db.applied()?;
    let consumer = source.consumer.clone().unwrap_or_default();
    let request = proto::SubscribeRequest { after_sequence: after, consumer: consumer.clone() };
    let stream = client.subscribe(request).await?.into_inner();
    tracing::info!(after, consumer, "subscribed to the ledger");
    let mut batches = stream.ready_chunks(BATCH);
    let mut seen = after;
    // The first applied batch is acknowledged at once, later ones every ACKNOWLEDGE_EVERY.
    let mut acknowledged: Option<tokio::time::Instant> = None;
    loop {
        let next = match quiet {
            Some(quiet) => match tokio::time::timeout(quiet, batches.next()).await {
                Ok(next) => next,
                Err(_) => {
                    acknowledge(&mut client, source, db.applied()?).await;
                    return Ok(());
                }
            },
            None => batches.next().await,
        };
        let Some(batch) = next else { return Ok(()) };
        let mut entries = Vec::with_capacity(batch.len());
        for event in batch {
            let event = event?;
            seen = seen.max(event.sequence);
            entries.push(entry(event)?);
        }
        telemetry::ledger_seen(seen);
        let applied = db.blocking(move |connection| ledger::apply(connection, &entries)).await?;
        telemetry::ledger_applied(applied);
        *delay = Duration::from_millis(250);
        if acknowledged.is_none_or(|at| at.elapsed() >= ACKNOWLEDGE_EVERY) {
            acknowledge(&mut client, source, applied).await;
            acknowledged = Some(tokio::time::Instant::now());
        }
    }
}

/// Tells the router how far this worker has applied; a failure only delays retention.
async fn acknowledge(client: &mut LedgerStreamClient<Channel>, source: &Source, applied: u64) {
    let Some(consumer) = source.consumer.clone() else { return };
    let request = proto::AcknowledgeRequest { consumer, sequence: applied };
    if let Err(error) = client.acknowledge(request).await {
        tracing::warn!(%error, applied, "the router did not take the acknowledged position");
    }
}

async fn connect(url: &str) -> Result<Channel, ConsumeError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|error| ConsumeError::Address(url.to_string(), error.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    Ok(endpoint.connect().await?)
}

/// One proto event as a parsed ledger fact.
pub fn entry(event: proto::LedgerEvent) -> Result<Entry, ConsumeError> {
    let sequence = event.sequence;
    let malformed = |field| ConsumeError::Malformed { sequence, field };
    let amount = |text: &str, field| money::parse(text).ok_or(malformed(field));
    let instant = |text: &str, field| {
        DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc)).map_err(|_| malformed(field))
    };
    let currency = |text: &str| text.parse::<Currency>().map_err(|_| malformed("currency"));
    let at = instant(&event.at, "at")?;
    let fact = match event.event.ok_or(malformed("event"))? {
        Event::SaleSettled(sale) => Fact::Sale(facts::Sale {
            price: amount(&sale.price, "price")?,
            payout: amount(&sale.payout, "payout")?,
            sold_at: instant(&sale.sold_at, "sold_at")?,
            currency: currency(&sale.currency)?,
            sale_id: sale.sale_id.into(),
            lead_id: sale.lead_id.into(),
            ping_id: Some(sale.ping_id).filter(|id| !id.is_empty()).map(PingId::from),
            supplier_id: sale.supplier_id.into(),
            buyer_id: sale.buyer_id.into(),
            campaign_id: sale.campaign_id.into(),
            vertical: sale.vertical,
            country: sale.country,
            model: sale.model.parse().map_err(|_| malformed("model"))?,
            internal: sale.internal,
            // Empty is how the stream says "none" (and what routers before it send).
            buyer_reference: Some(sale.buyer_reference).filter(|reference| !reference.is_empty()),
        }),
        Event::ReturnResolved(ret) => Fact::Return(facts::Return {
            credit: amount(&ret.credit, "credit")?,
            payout_reversed: amount(&ret.payout_reversed, "payout_reversed")?,
            requested_at: instant(&ret.requested_at, "requested_at")?,
            resolved_at: instant(&ret.resolved_at, "resolved_at")?,
            sold_at: instant(&ret.sold_at, "sold_at")?,
            currency: currency(&ret.currency)?,
            return_id: ret.return_id.into(),
            sale_id: ret.sale_id.into(),
            buyer_id: ret.buyer_id.into(),
            supplier_id: ret.supplier_id.into(),
            approved: ret.approved,
            reason: ret.reason,
            note: ret.note,
        }),
        Event::BalanceToppedUp(topup) => Fact::TopUp(facts::TopUp {
            amount: amount(&topup.amount, "amount")?,
            balance_after: amount(&topup.balance_after, "balance_after")?,
            currency: currency(&topup.currency)?,
            buyer_id: topup.buyer_id.into(),
            reference: topup.reference,
        }),
        Event::BuyerUpdated(buyer) => Fact::Buyer(facts::Buyer {
            timezone: zone(&buyer.timezone).ok_or(malformed("timezone"))?,
            mode: BillingMode::parse(&buyer.billing_mode).ok_or(malformed("billing_mode"))?,
            interval: interval(&buyer.billing_interval).ok_or(malformed("billing_interval"))?,
            payment_terms_days: match buyer.payment_terms_days {
                0 => DEFAULT_PAYMENT_TERMS_DAYS,
                days => days.min(MAX_PAYMENT_TERMS_DAYS),
            },
            credit_limit: optional_amount(&buyer.credit_limit).map_err(|_| malformed("credit_limit"))?,
            email: Some(buyer.email).filter(|email| !email.is_empty()),
            currency: currency(&buyer.currency)?,
            buyer_id: buyer.buyer_id.into(),
            name: buyer.name,
        }),
        Event::SupplierUpdated(supplier) => Fact::Supplier(facts::Supplier {
            timezone: zone(&supplier.billing_timezone).ok_or(malformed("billing_timezone"))?,
            interval: interval(&supplier.billing_interval).ok_or(malformed("billing_interval"))?,
            email: Some(supplier.email).filter(|email| !email.is_empty()),
            supplier_id: supplier.supplier_id.into(),
            name: supplier.name,
        }),
    };
    Ok(Entry { sequence, at, fact })
}

/// A time zone; empty means UTC (the default of DESIGN §13.1).
fn zone(text: &str) -> Option<chrono_tz::Tz> {
    if text.is_empty() {
        return Some(chrono_tz::UTC);
    }
    text.parse().ok()
}

/// A billing interval; empty means monthly (the default of DESIGN §13.1).
fn interval(text: &str) -> Option<crate::domain::period::Interval> {
    if text.is_empty() {
        return Some(crate::domain::period::Interval::Monthly);
    }
    text.parse().ok()
}

fn optional_amount(text: &str) -> Result<Option<Decimal>, ()> {
    if text.is_empty() {
        return Ok(None);
    }
    money::parse(text).map(Some).ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadrouter_types::Model;

    fn sale(model: &str, price: &str) -> proto::LedgerEvent {
        proto::LedgerEvent {
            sequence: 7,
            at: "2026-12-03T10:00:00Z".into(),
            event: Some(Event::SaleSettled(proto::SaleSettled {
                sale_id: "sale_1".into(),
                lead_id: "lead_1".into(),
                supplier_id: "s1".into(),
                buyer_id: "b1".into(),
                campaign_id: "c1".into(),
                vertical: "solar".into(),
                country: "US".into(),
                model: model.into(),
                price: price.into(),
                payout: "22.80".into(),
                currency: "USD".into(),
                sold_at: "2026-12-03T10:00:00Z".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_sale_reads_into_exact_types_and_a_field_that_does_not_is_named() {
        let Fact::Sale(read) = entry(sale("ping_tree", "38.50")).unwrap().fact else { panic!("a sale") };
        assert_eq!((read.model, read.price, read.currency), (Model::PingTree, Decimal::new(3850, 2), Currency::USD));
        assert_eq!((read.sale_id.as_str(), read.buyer_id.as_str(), read.ping_id), ("sale_1", "b1", None));
        let refused = |model, price| match entry(sale(model, price)) {
            Err(ConsumeError::Malformed { sequence: 7, field }) => field,
            other => panic!("malformed, got {other:?}"),
        };
        assert_eq!(refused("PingTree", "38.50"), "model");
        assert_eq!(refused("ping_tree", "38.5e1"), "price");
        assert_eq!(refused("ping_tree", "1_0.00"), "price");
        let mut lowercase = sale("ping_tree", "38.50");
        if let Some(Event::SaleSettled(sale)) = &mut lowercase.event {
            sale.currency = "usd".into();
        }
        assert!(matches!(entry(lowercase), Err(ConsumeError::Malformed { field: "currency", .. })));
    }

    #[test]
    fn a_sale_reads_its_buyer_reference_and_an_empty_one_as_none() {
        let Fact::Sale(without) = entry(sale("bidding", "38.50")).unwrap().fact else { panic!("a sale") };
        assert_eq!(without.buyer_reference, None, "an empty field is no reference");
        let mut referenced = sale("bidding", "38.50");
        if let Some(Event::SaleSettled(sale)) = &mut referenced.event {
            sale.buyer_reference = "CRM-0042".into();
        }
        let Fact::Sale(with) = entry(referenced).unwrap().fact else { panic!("a sale") };
        assert_eq!(with.buyer_reference.as_deref(), Some("CRM-0042"));
    }
}
