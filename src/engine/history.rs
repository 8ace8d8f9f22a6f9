//! A party's own history for the portal (DESIGN §15): a buyer's or supplier's sales
//! searched in the ledger, a supplier's payouts per day and its recent leads' outcomes, a
//! buyer's campaigns against their caps.
//!
//! Searches read the ledger backwards from the newest event (or a page's cursor) and stop
//! when the page is full, when they pass the search's first day, or after `SCAN_MAX`
//! events: a page costs at most that much reading however old the ledger is, and says
//! where the next page starts. Reading is blocking disk I/O on one node, so it runs on the
//! blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Days, NaiveDate};
use chrono_tz::Tz;

use super::core::Core;
use super::memory::outcomes::{LeadOutcome, Sent};
use super::ports::ledger::{EventLog, LogError};
use super::EngineError;
use crate::domain::budget::lease::CapStanding;
use crate::domain::history::{day_start, local_day, Payouts, SaleSearch};
use crate::domain::ledger::{Event, LedgerEvent, SaleSettled};
use crate::domain::model::Campaign;

/// Events read per step of a backwards scan.
const CHUNK: u64 = 4_096;
/// Events one page may read at most.
pub const SCAN_MAX: usize = 1_000_000;

/// One page of a sales search, newest first.
#[derive(Debug, Clone, Default)]
pub struct SalePage {
    pub sales: Vec<SaleSettled>,
    /// Where the next (older) page starts, as `before`; `None`: nothing older matches.
    pub next: Option<u64>,
}

/// A supplier's payouts per day, and whether the scan reached back to the first day (a
/// ledger larger than `SCAN_MAX` events over the period is summed only so far).
#[derive(Debug, Clone)]
pub struct PayoutReport {
    pub payouts: Payouts,
    pub first_day: NaiveDate,
    pub complete: bool,
}

/// A campaign of the buyer's, with how it stands against its caps now.
#[derive(Debug, Clone)]
pub struct CampaignStanding {
    pub campaign: Campaign,
    pub caps: Vec<CapStanding>,
}

pub struct History {
    core: Arc<Core>,
}

impl History {
    pub(super) fn new(core: Arc<Core>) -> History {
        History { core }
    }

    /// The sales `search` matches with a sequence below `before` (all when `None`), newest
    /// first, at most `limit`.
    pub async fn sales(&self, search: SaleSearch, before: Option<u64>, limit: usize) -> Result<SalePage, EngineError> {
        // A sale id is found without a scan.
        if let Some(id) = search.id.as_deref().filter(|id| id.starts_with("sal_")) {
            let sale = self.core.sale(id).await?.filter(|sale| search.matches(sale) && before.is_none());
            return Ok(SalePage { sales: sale.into_iter().collect(), next: None });
        }
        let log = Arc::clone(&self.core.journal).event_log();
        blocking(move || {
            let mut page = SalePage::default();
            let unfinished = scan_back(&*log, before, SCAN_MAX, |event| {
                if search.passed(event.at) {
                    return Step::Stop;
                }
                match &event.event {
                    Event::SaleSettled(sale) if search.matches(sale) => {
                        if page.sales.len() == limit {
                            page.next = Some(event.sequence + 1);
                            return Step::Stop;
                        }
                        page.sales.push(SaleSettled::clone(sale));
                        Step::Go
                    }
                    _ => Step::Go,
                }
            })?;
            page.next = page.next.or(unfinished);
            Ok(page)
        })
        .await
    }

    /// A supplier's payouts on each of the last `days` local days, today included.
    pub async fn payouts(&self, supplier_id: &str, days: u64) -> Result<PayoutReport, EngineError> {
        let market = self.core.market();
        let supplier = market.supplier(supplier_id).ok_or(EngineError::NotFound("supplier"))?;
        let tz: Tz = supplier.billing.timezone.parse().unwrap_or(Tz::UTC);
        let today = local_day(self.core.clock.now(), tz);
        let first_day = today.checked_sub_days(Days::new(days.saturating_sub(1))).unwrap_or(today);
        let mut payouts = Payouts::new(supplier_id, tz, day_start(first_day, tz));
        let log = Arc::clone(&self.core.journal).event_log();
        blocking(move || {
            let unfinished = scan_back(&*log, None, SCAN_MAX, |event| {
                if payouts.passed(event.at) {
                    return Step::Stop;
                }
                payouts.take(&event.event);
                Step::Go
            })?;
            Ok(PayoutReport { payouts, first_day, complete: unfinished.is_none() })
        })
        .await
    }

    /// The supplier's recent leads, newest first, at most `limit`, that `keep` keeps.
    pub fn lead_outcomes(
        &self,
        supplier_id: &str,
        limit: usize,
        keep: impl Fn(&LeadOutcome) -> bool,
    ) -> Vec<LeadOutcome> {
        self.core.outcomes.recent(supplier_id, limit, keep)
    }

    /// Per vertical, the supplier's leads sent and sold on UTC days `since..` (this node,
    /// since it started).
    pub fn sent_since(&self, supplier_id: &str, since: NaiveDate) -> BTreeMap<String, Sent> {
        self.core.outcomes.sent_since(supplier_id, since)
    }

    /// The buyer's campaigns, each with its caps' standing in their current windows.
    pub async fn campaigns(&self, buyer_id: &str) -> Result<Vec<CampaignStanding>, EngineError> {
        let market = self.core.market();
        let now = self.core.clock.now();
        let mut standings = Vec::new();
        for campaign in market.config().campaigns.iter().filter(|campaign| campaign.buyer_id == buyer_id) {
            let caps = match market.campaign(&campaign.id) {
                Some(compiled) => {
                    self.core.budget.cap_standings(buyer_id, &campaign.id, &compiled.caps, compiled.tz, now).await?
                }
                None => Vec::new(),
            };
            standings.push(CampaignStanding { campaign: campaign.clone(), caps });
        }
        Ok(standings)
    }
}

/// What a scan does after one event.
enum Step {
    Go,
    Stop,
}

/// Reads `log` backwards from below `before` (from the newest event when `None`), giving
/// `visit` each event newest first, until it says stop, the log's first retained event, or
/// `budget` events. Answers where an unfinished scan would go on (a page's `before`) when
/// it stopped for its budget.
fn scan_back(
    log: &dyn EventLog,
    before: Option<u64>,
    budget: usize,
    mut visit: impl FnMut(&LedgerEvent) -> Step,
) -> Result<Option<u64>, LogError> {
    let first = log.first_sequence().max(1);
    let last = log.last_sequence();
    // Inclusive: the newest sequence still to read.
    let mut upper = before.map_or(last, |before| before.saturating_sub(1).min(last));
    let mut read = 0;
    while upper >= first {
        if read >= budget {
            return Ok(Some(upper + 1));
        }
        let lower = upper.saturating_sub(CHUNK).max(first - 1);
        let events = log.read_after(lower, usize::try_from(upper - lower).unwrap_or(usize::MAX))?;
        for event in events.iter().rev().filter(|event| event.sequence <= upper) {
            read += 1;
            if let Step::Stop = visit(event) {
                return Ok(None);
            }
        }
        if events.is_empty() {
            break;
        }
        upper = lower;
    }
    Ok(None)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| EngineError::Unavailable(format!("ledger history: {error}")))?
        .map_err(|error| EngineError::Unavailable(error.to_string()))
}
