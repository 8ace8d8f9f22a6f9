//! Sending the outbox (DESIGN §5): async leads and return notifications, retried with
//! backoff until a 2xx, dead-lettered after the retry budget, revived by an operator.
//!
//! Each change of a message's state is journaled before memory follows, so a restart
//! resumes where the process stopped. Delivery is at least once: a message whose 2xx
//! arrived just before a crash, but whose `OutboxDelivered` record did not, is sent again
//! after the restart; buyers dedupe on `sale_id` (leads) or `return_id` and `type`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::core::Core;
use super::memory::outbox::Outbox;
use super::memory::outbox::{Attempt, Delivery, Due, Message, MessageKind, OutboxState, Recipient, Requires, Status};
use super::ports::ledger::InternalRecord;
use super::EngineError;
use crate::domain::model::FieldError;
use crate::domain::retry::{AfterFailure, RetryPolicy};
use crate::ids;
use crate::telemetry;

/// Deliveries in flight at once: enough to drain a backlog after a buyer's outage quickly,
/// few enough not to flood that buyer the moment it is back.
const SENDING_MAX: usize = 32;

/// When the outbox is empty the sender still looks again this often (a safety net; pushes
/// wake it at once).
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// An attempt without a campaign `timeout_ms` gets this long.
pub(super) const DELIVERY_TIMEOUT_DEFAULT_MS: u64 = 10_000;

/// Deliveries that outlive the request: the outbox (async leads, return notifications) and
/// the leads waiting for their pull buyer.
pub struct Deliveries {
    pub(super) core: Arc<Core>,
    pub(super) outbox: Outbox,
}

impl Deliveries {
    pub(super) fn new(core: Arc<Core>) -> Deliveries {
        Deliveries { core, outbox: Outbox::default() }
    }

    /// Leads of the buyer's pull campaigns after `after` (DESIGN §4, `GET /v1/buyer/leads`).
    /// A cursor that acknowledges more than before is journaled first, so what a buyer
    /// has taken is never handed out again, also after a restart.
    pub async fn pull_leads(
        &self,
        buyer_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, serde_json::Value)>, EngineError> {
        // A cursor is a position this buyer was handed; one past the newest would
        // acknowledge leads not sold yet, which then would never be handed out.
        let beyond = || {
            EngineError::Invalid(vec![FieldError::new(
                "after",
                "beyond the newest lead: pass back the `next` of an earlier answer",
            )])
        };
        self.core.ensure_store()?;
        if after > self.core.pull.last_position(buyer_id).await? {
            return Err(beyond());
        }
        Ok(self.core.pull.fetch(buyer_id, after, limit).await?)
    }

    /// Journals a new message; the caller pushes it to the outbox once the fact it announces
    /// is journaled too (`Requires`).
    pub(super) async fn queue_message(
        &self,
        kind: MessageKind,
        recipient: Recipient,
        url: &str,
        body: String,
        timeout_ms: u64,
        requires: Requires,
    ) -> Result<Message, EngineError> {
        let message = Message {
            id: ids::new_id("dlv"),
            kind,
            recipient,
            url: url.to_string(),
            body,
            timeout_ms,
            requires,
            created_at: self.core.clock.now(),
        };
        self.core.journal.append_internal(InternalRecord::OutboxQueued { message: message.clone() }).await?;
        Ok(message)
    }

    /// Makes journaled messages due now.
    /// Every sale passes here (most with nothing to send), so the gauge, which takes the
    /// outbox's lock, is only touched when something was pushed.
    pub(super) fn send_later(&self, messages: impl IntoIterator<Item = Message>) {
        let mut pushed = false;
        for message in messages {
            self.outbox.push(message, Instant::now());
            pushed = true;
        }
        if pushed {
            self.publish_outbox_gauge();
        }
    }

    /// Sends due messages until `stopped`; runs as one task for the life of the server.
    /// On stop, attempts still out are abandoned: their messages stay pending in the
    /// journal and are sent again after the restart (at least once).
    pub async fn run_outbox(self: Arc<Self>, policy: RetryPolicy, mut stopped: watch::Receiver<bool>) {
        let sending = Arc::new(Semaphore::new(SENDING_MAX));
        let mut attempts = JoinSet::new();
        self.publish_outbox_gauge();
        while !*stopped.borrow() {
            while attempts.try_join_next().is_some() {}
            let free = sending.available_permits().max(1);
            match self.outbox.take_due(Instant::now(), free) {
                Due::Ready(due) => {
                    for attempt in due {
                        let Ok(permit) = Arc::clone(&sending).acquire_owned().await else { return };
                        let router = Arc::clone(&self);
                        attempts.spawn(async move {
                            router.attempt(attempt, policy).await;
                            drop(permit);
                        });
                    }
                }
                Due::Until(next) => {
                    let wake_at = next.unwrap_or_else(|| Instant::now() + IDLE_RECHECK);
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake_at) => {}
                        _ = self.outbox.changed() => {}
                        _ = stopped.changed() => {}
                    }
                }
            }
        }
        attempts.shutdown().await;
    }

    async fn attempt(&self, attempt: Attempt, policy: RetryPolicy) {
        let message = &attempt.message;
        let deadline = Instant::now() + Duration::from_millis(message.timeout_ms);
        let result = match self.signing_secret(&message.recipient) {
            Some(secret) => {
                self.core.buyers.deliver(&message.url, &secret, Bytes::from(message.body.clone()), deadline).await
            }
            None => Err("recipient has no webhook secret (deleted?)".to_string()),
        };
        let mode = message.kind.mode();
        let error = match result {
            Ok(()) => {
                let record = InternalRecord::OutboxDelivered { id: message.id.clone(), at: self.core.clock.now() };
                if let Err(error) = self.core.journal.append_internal(record).await {
                    // Only costs a second delivery after a restart (at least once).
                    tracing::warn!(%error, delivery = %message.id, "delivery not journaled as done");
                }
                self.outbox.delivered(&message.id);
                metrics::counter!(telemetry::DELIVERIES_TOTAL, "mode" => mode, "outcome" => "delivered").increment(1);
                self.publish_outbox_gauge();
                return;
            }
            Err(error) => error,
        };
        let jitter: f64 = rand::thread_rng().gen();
        match policy.after_failure(attempt.number, jitter) {
            AfterFailure::RetryIn(delay) => {
                let record = InternalRecord::OutboxFailed {
                    id: message.id.clone(),
                    attempts: attempt.number,
                    error: error.clone(),
                };
                if let Err(journal_error) = self.core.journal.append_internal(record).await {
                    tracing::warn!(error = %journal_error, delivery = %message.id, "failed attempt not journaled");
                }
                self.outbox.failed(&message.id, attempt.number, error, Instant::now() + delay);
                metrics::counter!(telemetry::DELIVERIES_TOTAL, "mode" => mode, "outcome" => "failed").increment(1);
            }
            AfterFailure::DeadLetter => {
                let at = self.core.clock.now();
                let record = InternalRecord::OutboxDeadLettered {
                    id: message.id.clone(),
                    attempts: attempt.number,
                    error: error.clone(),
                    at,
                };
                if let Err(journal_error) = self.core.journal.append_internal(record).await {
                    tracing::warn!(error = %journal_error, delivery = %message.id, "dead letter not journaled");
                }
                tracing::warn!(delivery = %message.id, mode, attempts = attempt.number, %error, "delivery dead-lettered");
                self.outbox.dead_letter(&message.id, attempt.number, error, at);
                metrics::counter!(telemetry::DELIVERIES_TOTAL, "mode" => mode, "outcome" => "dead_letter").increment(1);
                self.publish_outbox_gauge();
            }
        }
    }

    fn signing_secret(&self, recipient: &Recipient) -> Option<String> {
        let market = self.core.market();
        match recipient {
            Recipient::Buyer(id) => market.buyer(id).map(|buyer| buyer.webhook_secret.clone()),
            Recipient::Supplier(id) => market.supplier(id).and_then(|supplier| supplier.webhook_secret.clone()),
        }
    }

    /// An operator retries a dead letter: due now with a fresh retry budget.
    pub async fn retry(&self, id: &str) -> Result<Delivery, EngineError> {
        if self.outbox.get(id).is_none() {
            return Err(EngineError::NotFound("delivery"));
        }
        if !self.outbox.is_dead(id) {
            return Err(EngineError::Conflict {
                code: "not_dead_lettered",
                message: "only a dead-lettered delivery can be retried; this one is still being tried".into(),
            });
        }
        let record = InternalRecord::OutboxRevived { id: id.to_string(), at: self.core.clock.now() };
        self.core.journal.append_internal(record).await?;
        self.outbox.revive(id, Instant::now());
        self.publish_outbox_gauge();
        self.outbox.get(id).ok_or(EngineError::NotFound("delivery"))
    }

    pub fn list(&self, status: Status, after: Option<&str>, limit: usize) -> Vec<Delivery> {
        self.outbox.list(status, after, limit)
    }

    /// (pending, dead-lettered) messages in the outbox.
    pub fn counts(&self) -> (usize, usize) {
        (self.outbox.pending(), self.outbox.dead())
    }

    pub fn get(&self, id: &str) -> Option<Delivery> {
        self.outbox.get(id)
    }

    fn publish_outbox_gauge(&self) {
        metrics::gauge!(telemetry::OUTBOX_PENDING).set(self.outbox.pending() as f64);
    }
}

/// A message's state as the journal leaves it.
struct Replayed {
    message: Message,
    attempts: u32,
    last_error: Option<String>,
    dead_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The outbox as the journal's records leave it, taken in one record at a time.
#[derive(Default)]
pub(super) struct OutboxReplay {
    messages: std::collections::HashMap<String, Replayed>,
}

impl OutboxReplay {
    /// Starts from the messages a checkpoint held, so the tail's records (a delivery, a
    /// failure, a dead letter) apply to them as to the tail's own.
    pub(super) fn starting_from(held: Vec<OutboxState>) -> OutboxReplay {
        let messages = held
            .into_iter()
            .map(|held| {
                let replayed = Replayed {
                    message: held.message,
                    attempts: held.attempts,
                    last_error: held.last_error,
                    dead_since: held.dead_since,
                };
                (replayed.message.id.clone(), replayed)
            })
            .collect();
        OutboxReplay { messages }
    }
}

impl Deliveries {
    /// Takes in one of the journal's records for the outbox (after sales and returns are
    /// back). A message whose fact is not journaled (yet) is handed back: the fact may
    /// follow in a later segment, or it never reached the disk.
    pub(super) fn replay_outbox_record(
        &self,
        replay: &mut OutboxReplay,
        record: InternalRecord,
        replayed: &HashSet<String>,
    ) -> Option<InternalRecord> {
        let messages = &mut replay.messages;
        match record {
            InternalRecord::OutboxQueued { message } if self.fact_journaled(&message.requires, replayed) => {
                let id = message.id.clone();
                messages.insert(id, Replayed { message, attempts: 0, last_error: None, dead_since: None });
            }
            queued @ InternalRecord::OutboxQueued { .. } => return Some(queued),
            InternalRecord::OutboxFailed { id, attempts, error } => {
                if let Some(replayed) = messages.get_mut(&id) {
                    replayed.attempts = attempts;
                    replayed.last_error = Some(error);
                }
            }
            InternalRecord::OutboxDelivered { id, .. } => {
                messages.remove(&id);
            }
            InternalRecord::OutboxDeadLettered { id, attempts, error, at } => {
                if let Some(replayed) = messages.get_mut(&id) {
                    replayed.attempts = attempts;
                    replayed.last_error = Some(error);
                    replayed.dead_since = Some(at);
                }
            }
            InternalRecord::OutboxRevived { id, .. } => {
                if let Some(replayed) = messages.get_mut(&id) {
                    replayed.attempts = 0;
                    replayed.dead_since = None;
                }
            }
            _ => {}
        }
        None
    }

    /// Rebuilds the outbox: undelivered messages are due at once, dead letters stay dead.
    pub(super) fn restore_outbox(&self, replay: OutboxReplay) {
        let messages = replay.messages;
        let now = Instant::now();
        for replayed in messages.into_values() {
            match replayed.dead_since {
                Some(at) => self.outbox.restore_dead(replayed.message, replayed.attempts, replayed.last_error, at),
                None => self.outbox.restore(replayed.message, replayed.attempts, replayed.last_error, now),
            }
        }
        self.publish_outbox_gauge();
    }

    /// Whether the fact a message announces is journaled; `replayed` holds the sales of
    /// the replay in progress (memory keeps only the most recent sales).
    fn fact_journaled(&self, requires: &Requires, replayed: &HashSet<String>) -> bool {
        match requires {
            Requires::Sale(sale_id) => replayed.contains(sale_id) || self.core.sales.contains(sale_id),
            Requires::Return(return_id) => self.core.returns.get(return_id).is_some(),
            Requires::ResolvedReturn(return_id) => self
                .core
                .returns
                .get(return_id)
                .is_some_and(|stored| stored.lead_return.status != crate::domain::returns::ReturnStatus::Pending),
        }
    }
}
