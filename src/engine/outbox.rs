//! Sending the outbox (DESIGN §5): async leads and return notifications, retried with
//! backoff until a 2xx, dead-lettered after the retry budget, revived by an operator. A
//! lead rendered in its buyer's own format (§5.1) when it was sold goes out as rendered,
//! the same bytes on every attempt, and is delivered when the campaign's answer rules
//! accept the reply.
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
use super::ports::buyers::{Outbound, Reply};
use super::ports::ledger::InternalRecord;
use super::ports::outbox::BuyerRequest;
use super::EngineError;
use crate::domain::integration::answer::PostReading;
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

/// The most of a buyer's reply to an async lead that is read (as for its sync posts).
const DELIVERY_REPLY_BYTES_MAX: usize = 64 * 1024;

/// The error of a message whose recipient has no webhook secret to sign it with.
const NO_SECRET: &str = "recipient has no webhook secret (deleted?)";

/// What a new message sends: where, the body, and for a buyer's own format the rest of
/// the request rendered at sale time (`None`: a native message).
pub(super) struct Payload {
    pub url: String,
    pub body: String,
    pub request: Option<Box<BuyerRequest>>,
}

impl Payload {
    /// A native message: `body` POSTed as JSON to `url`, signed.
    pub(super) fn native(url: &str, body: String) -> Payload {
        Payload { url: url.to_string(), body, request: None }
    }
}

/// Why an attempt failed: the text the journal and the admin views keep, and whether it
/// quotes the buyer (a reason its answer rules read), which the log then leaves out.
struct Failed {
    error: String,
    quotes_buyer: bool,
}

impl Failed {
    fn ours(error: impl Into<String>) -> Failed {
        Failed { error: error.into(), quotes_buyer: false }
    }

    /// What the log may say: never the buyer's words (they may echo the lead).
    fn loggable(&self) -> &str {
        if self.quotes_buyer {
            "rejected by the answer rules"
        } else {
            &self.error
        }
    }
}

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
        payload: Payload,
        timeout_ms: u64,
        requires: Requires,
    ) -> Result<Message, EngineError> {
        let message = Message {
            id: ids::new_id("dlv"),
            kind,
            recipient,
            url: payload.url,
            body: payload.body,
            timeout_ms,
            requires,
            created_at: self.core.clock.now(),
            request: payload.request,
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
        let result = match &message.request {
            None => self.send_native(message, deadline).await,
            Some(request) => self.send_rendered(message, request, deadline).await,
        };
        match result {
            Ok(()) => self.delivered(message).await,
            Err(failed) => self.after_failure(&attempt, failed, policy).await,
        }
    }

    /// The recipient took the message: journaled as done, then forgotten.
    async fn delivered(&self, message: &Message) {
        let record = InternalRecord::OutboxDelivered { id: message.id.clone(), at: self.core.clock.now() };
        if let Err(error) = self.core.journal.append_internal(record).await {
            // Only costs a second delivery after a restart (at least once).
            tracing::warn!(%error, delivery = %message.id, "delivery not journaled as done");
        }
        self.outbox.delivered(&message.id);
        let mode = message.kind.mode();
        telemetry::meters::delivery(mode, "delivered");
        self.publish_outbox_gauge();
    }

    /// Records a failed attempt: due again after its backoff, or dead-lettered once the
    /// budget is spent.
    async fn after_failure(&self, attempt: &Attempt, failed: Failed, policy: RetryPolicy) {
        let message = &attempt.message;
        let mode = message.kind.mode();
        let logged = failed.loggable().to_string();
        let error = failed.error;
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
                telemetry::meters::delivery(mode, "failed");
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
                tracing::warn!(delivery = %message.id, mode, attempts = attempt.number, error = %logged, "delivery dead-lettered");
                self.outbox.dead_letter(&message.id, attempt.number, error, at);
                telemetry::meters::delivery(mode, "dead_letter");
                self.publish_outbox_gauge();
            }
        }
    }

    /// A native message: signed JSON POST, any 2xx delivers (DESIGN §5).
    async fn send_native(&self, message: &Message, deadline: Instant) -> Result<(), Failed> {
        let Some(secret) = self.signing_secret(&message.recipient) else {
            return Err(Failed::ours(NO_SECRET));
        };
        let body = Bytes::from(message.body.clone());
        self.core.buyers.deliver(&message.url, &secret, body, deadline).await.map_err(Failed::ours)
    }

    /// A request rendered in the buyer's format at sale time: the same bytes as every
    /// earlier attempt, delivered when the campaign's answer rules accept the reply.
    async fn send_rendered(&self, message: &Message, request: &BuyerRequest, deadline: Instant) -> Result<(), Failed> {
        // The buyer's secret of this moment, as for native messages: a rotation applies.
        let signing_secret = if request.sign {
            Some(self.signing_secret(&message.recipient).ok_or_else(|| Failed::ours(NO_SECRET))?)
        } else {
            None
        };
        let outbound = Outbound {
            method: request.method,
            url: message.url.clone(),
            headers: request.headers.clone(),
            body: Bytes::from(message.body.clone()),
            signing_secret,
            token: request.token.clone(),
            answer_bytes_max: DELIVERY_REPLY_BYTES_MAX,
        };
        match self.core.buyers.deliver_request(outbound, deadline).await {
            Reply::Answered { status, body, .. } => self.read_reply(&request.campaign_id, status, &body),
            Reply::Timeout => Err(Failed::ours("timeout")),
            Reply::Error(reason) => Err(Failed::ours(reason)),
            Reply::CircuitOpen => Err(Failed::ours("circuit_open")),
        }
    }

    /// Reads a reply by the campaign's answer rules as they are now (an operator may have
    /// mended them since the sale); once the campaign is gone, any 2xx delivers.
    fn read_reply(&self, campaign_id: &str, status: u16, body: &[u8]) -> Result<(), Failed> {
        let market = self.core.market();
        let reading = match market.campaign(campaign_id).and_then(|campaign| campaign.post_integration.as_ref()) {
            Some(integration) => integration.read_post(status, body),
            None => PostReading { accepted: (200..300).contains(&status), reason: None, reference: None },
        };
        match (reading.accepted, reading.reason) {
            (true, _) => Ok(()),
            (false, Some(reason)) => Err(Failed { error: format!("rejected: {reason}"), quotes_buyer: true }),
            (false, None) if (200..300).contains(&status) => Err(Failed::ours(format!("rejected (http {status})"))),
            (false, None) => Err(Failed::ours(format!("http {status}"))),
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
