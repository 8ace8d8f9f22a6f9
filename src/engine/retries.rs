//! Retries are safe (DESIGN §4): a request sent with an `Idempotency-Key` runs once, and
//! every retry of it (same party, key and body, within 24 hours, on any node, across
//! restarts) gets the first answer again; the same key with another body is a conflict.
//!
//! The first answer is kept as the use case gave it (`KeptAnswer`: its result, or its
//! refusal), never as HTTP: the API maps a replayed answer exactly as it maps a fresh one.
//! Answers a retry must not be given again (storage away, a request still running
//! elsewhere, a task that did not finish) are not kept: the key is let go and a retry runs.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;

use super::core::Core;
use super::memory::idempotency::{Begin, KeptAnswer, Settled};
use super::ports::idempotency::Refusal;
use super::ports::KeyClaim;
use super::EngineError;

/// How long a request waits for another node's answer to the same `Idempotency-Key`.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request sent with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRequest {
    /// Whose key it is: a supplier id, or `buyer/<id>` (no id contains `/`).
    pub party: String,
    pub key: String,
    /// What identifies the request under its key: its route and body, hashed.
    pub request_hash: [u8; 32],
}

/// What a keyed request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub answer: KeptAnswer,
    /// True when this is the first request's answer given again.
    pub replayed: bool,
}

/// Runs keyed requests once and keeps their answers.
pub struct Retries {
    core: Arc<Core>,
}

impl Retries {
    pub(super) fn new(core: Arc<Core>) -> Retries {
        Retries { core }
    }

    /// Answers `request`: with the first answer to its key if it has one (or is being
    /// given one), else by running `work` in a task of its own (a client that hangs up
    /// does not cancel a sale half-way) and keeping what it answers.
    pub async fn answer_once<T, W>(&self, request: KeyedRequest, work: W) -> Result<Answered, EngineError>
    where
        T: Serialize + Send + 'static,
        W: Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        let KeyedRequest { party, key, request_hash } = request;
        let (begin, record) = self.core.idempotency.begin(&party, &key, request_hash, self.core.clock.now());
        if begin == Begin::Conflict {
            return Err(key_reused());
        }
        let replayed = record.answer.initialized();
        let (core, task_record, owner, task_key) =
            (Arc::clone(&self.core), Arc::clone(&record), party.clone(), key.clone());
        let settled = tokio::spawn(async move {
            let first = async move {
                let request = KeyedRequest { party: owner, key: task_key, request_hash };
                // On several nodes another node may have (or be giving) the answer already.
                if let Some(prior) = prior_answer(&core, &request).await? {
                    return Ok(prior);
                }
                let settled = kept(work.await);
                keep_or_release(&core, &request, &settled).await;
                settled
            };
            task_record.answer.get_or_init(|| first).await.clone()
        })
        .await
        .unwrap_or(Err(EngineError::Interrupted));
        match settled {
            Ok(answer) => Ok(Answered { answer, replayed }),
            Err(error) => {
                self.core.idempotency.forget(&party, &key, &record);
                Err(error)
            }
        }
    }
}

/// What a use case's result comes to: a kept answer, or an error that is not kept.
fn kept<T: Serialize>(result: Result<T, EngineError>) -> Settled {
    let refusal = match result {
        Ok(answer) => return done(&answer),
        Err(EngineError::Invalid(details)) => Refusal::Invalid { details },
        Err(EngineError::NotFound(what)) => Refusal::NotFound { what: what.to_string() },
        Err(EngineError::PingExpired) => Refusal::PingExpired,
        Err(EngineError::Refused { code, message }) => Refusal::Refused { code: code.to_string(), message },
        Err(EngineError::Conflict { code, message }) => Refusal::Conflict { code: code.to_string(), message },
        Err(error @ (EngineError::Unavailable(_) | EngineError::InProgress | EngineError::Interrupted)) => {
            return Err(error)
        }
    };
    Ok(KeptAnswer::Refused { refusal })
}

/// A result as it is answered and kept: its JSON, with the trailing newline every answer
/// has.
fn done<T: Serialize>(answer: &T) -> Settled {
    let mut json = serde_json::to_vec(answer).map_err(|_| EngineError::Interrupted)?;
    json.push(b'\n');
    Ok(KeptAnswer::Done { result: bytes::Bytes::from(json) })
}

/// The answer the key already has elsewhere (another node), if any; `None` means this
/// request runs.
async fn prior_answer(core: &Core, request: &KeyedRequest) -> Result<Option<KeptAnswer>, EngineError> {
    core.ensure_store()?;
    let started = tokio::time::Instant::now();
    loop {
        match core.claims.begin_answer(&request.party, &request.key, request.request_hash).await? {
            KeyClaim::Fresh => return Ok(None),
            KeyClaim::Answered(answer) => return Ok(Some(answer)),
            // Another node ran this key with another body: that is this request's answer.
            KeyClaim::Conflict => {
                let (code, message) = key_reused_words();
                let refusal = Refusal::Conflict { code: code.to_string(), message };
                return Ok(Some(KeptAnswer::Refused { refusal }));
            }
            KeyClaim::InFlight if started.elapsed() < IN_FLIGHT_WAIT => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            KeyClaim::InFlight => return Err(EngineError::InProgress),
        }
    }
}

/// A kept answer is made durable (journal, or Redis on several nodes) before it is given,
/// so a retry after a restart gets it too; a key whose answer is not kept is let go.
async fn keep_or_release(core: &Core, request: &KeyedRequest, settled: &Settled) {
    let KeyedRequest { party, key, request_hash } = request;
    match settled {
        Ok(answer) => {
            if let Err(error) = core.claims.store_answer(party, key, *request_hash, answer).await {
                // The sale itself is journaled; only a retry after a crash could miss this
                // answer (and the external id still guards a resale).
                tracing::warn!(%error, "idempotency record not kept");
            }
        }
        Err(_) => core.claims.release_answer(party, key).await,
    }
}

fn key_reused() -> EngineError {
    let (code, message) = key_reused_words();
    EngineError::Conflict { code, message }
}

fn key_reused_words() -> (&'static str, String) {
    ("idempotency_key_reused", "this Idempotency-Key was used with another request body".into())
}
