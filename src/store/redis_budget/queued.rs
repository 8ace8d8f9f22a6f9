//! Ping holds waiting for a change of their buyer's book on Redis.
//!
//! A node changes a buyer's book one change at a time, and each change waits for Redis to
//! write (and, with `appendfsync always`, to fsync) before the next starts. Holds that
//! arrive meanwhile queue here, and the next change applies all of them at once, in the
//! order they came: one read, one compare-and-set and one fsync for many pings, each hold
//! checked by the same rule as alone (`BuyerBook::try_hold`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::oneshot;

use crate::domain::budget::{Funding, HoldRefusal, HoldRequest, HoldScope};
use crate::domain::caps::Cap;
use crate::domain::money::Money;
use crate::engine::ports::BudgetError;

/// What a queued hold is answered: what is available after it, or why not.
pub(super) type Answer = Result<Result<Money, HoldRefusal>, BudgetError>;

/// A buyer's turn at its book on this node: one change at a time, and the holds waiting
/// for the next.
#[derive(Default)]
pub(super) struct Turn {
    pub(super) changing: tokio::sync::Mutex<()>,
    pub(super) queued: parking_lot::Mutex<Vec<Queued>>,
}

/// One hold waiting for the change that applies it, and where its answer goes.
pub(super) struct Queued {
    pub(super) hold: OwnedHold,
    pub(super) now: DateTime<Utc>,
    pub(super) answer: oneshot::Sender<Answer>,
}

/// A `HoldRequest` another request's change of the book can apply.
pub(super) struct OwnedHold {
    pub(super) hold_id: String,
    campaign_id: String,
    price: Money,
    funding: Funding,
    caps: Vec<Cap>,
    tz: Tz,
    expires_at: DateTime<Utc>,
    scope: HoldScope,
}

impl OwnedHold {
    pub(super) fn of(request: &HoldRequest<'_>) -> OwnedHold {
        OwnedHold {
            hold_id: request.hold_id.clone(),
            campaign_id: request.campaign_id.to_string(),
            price: request.price,
            funding: request.funding,
            caps: request.caps.to_vec(),
            tz: request.tz,
            expires_at: request.expires_at,
            scope: request.scope,
        }
    }

    pub(super) fn request(&self) -> HoldRequest<'_> {
        HoldRequest {
            hold_id: self.hold_id.clone(),
            campaign_id: &self.campaign_id,
            price: self.price,
            funding: self.funding,
            caps: &self.caps,
            tz: self.tz,
            expires_at: self.expires_at,
            scope: self.scope,
        }
    }
}
