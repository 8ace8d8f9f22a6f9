//! `Idempotency-Key` records and `external_id` claims (DESIGN §4 "Retries are safe").
//!
//! The first request with a key runs; a concurrent or later one with the same key and body
//! waits for and receives the first answer; one with another body is a conflict. Records
//! live 24 hours.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use dashmap::DashMap;
use tokio::sync::OnceCell;

pub use crate::engine::ports::idempotency::{Begin, KeptAnswer, IDEMPOTENCY_TTL_HOURS};
use crate::engine::EngineError;

/// What the first request with a key came to: its kept answer, or an error that is not
/// kept (the record is forgotten and a retry runs again).
pub type Settled = Result<KeptAnswer, EngineError>;

pub struct Record {
    body_hash: [u8; 32],
    created_at: DateTime<Utc>,
    pub answer: OnceCell<Settled>,
}

/// An answered `Idempotency-Key` as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnswerState {
    /// The party: a supplier id, or `buyer/<id>`.
    pub supplier_id: String,
    pub key: String,
    pub body_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<KeptAnswer>,
    /// Status and body: how checkpoints kept an answer before answers were typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl AnswerState {
    fn kept(&self) -> Option<KeptAnswer> {
        match (&self.answer, self.status, &self.body) {
            (Some(answer), _, _) => Some(answer.clone()),
            (None, Some(status), Some(body)) => KeptAnswer::from_http_form(status, body.as_bytes()),
            _ => None,
        }
    }
}

/// An `external_id` claim as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExternalIdState {
    pub supplier_id: String,
    pub external_id: String,
    pub lead_id: String,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
pub struct Idempotency {
    records: DashMap<(String, String), Arc<Record>>,
    external_ids: DashMap<(String, String), (String, DateTime<Utc>)>,
}

impl Idempotency {
    /// Finds or creates the record of `(supplier, key)`.
    pub fn begin(&self, supplier_id: &str, key: &str, body_hash: [u8; 32], now: DateTime<Utc>) -> (Begin, Arc<Record>) {
        let ttl = Duration::hours(IDEMPOTENCY_TTL_HOURS);
        let slot = (supplier_id.to_string(), key.to_string());
        let mut entry = self
            .records
            .entry(slot)
            .or_insert_with(|| Arc::new(Record { body_hash, created_at: now, answer: OnceCell::new() }));
        if entry.created_at + ttl <= now {
            *entry = Arc::new(Record { body_hash, created_at: now, answer: OnceCell::new() });
        }
        let record = Arc::clone(&entry);
        let begin = if record.body_hash == body_hash { Begin::Proceed } else { Begin::Conflict };
        (begin, record)
    }

    /// Puts back a record read from the journal at start (answered before a restart).
    pub fn restore(
        &self,
        supplier_id: &str,
        key: &str,
        body_hash: [u8; 32],
        answer: KeptAnswer,
        created_at: DateTime<Utc>,
    ) {
        let record = Record { body_hash, created_at, answer: OnceCell::new_with(Some(Ok(answer))) };
        self.records.insert((supplier_id.to_string(), key.to_string()), Arc::new(record));
    }

    /// Puts back an external id claim read from the journal at start.
    pub fn restore_external_id(&self, supplier_id: &str, external_id: &str, lead_id: &str, at: DateTime<Utc>) {
        self.external_ids.insert((supplier_id.to_string(), external_id.to_string()), (lead_id.to_string(), at));
    }

    /// Forgets a record whose answer must not be replayed (overload, shutdown).
    pub fn forget(&self, supplier_id: &str, key: &str, record: &Arc<Record>) {
        self.records.remove_if(&(supplier_id.to_string(), key.to_string()), |_, r| Arc::ptr_eq(r, record));
    }

    /// Claims an external id for a lead; answers the lead id that already has it.
    pub fn claim_external_id(
        &self,
        supplier_id: &str,
        external_id: &str,
        lead_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let ttl = Duration::hours(IDEMPOTENCY_TTL_HOURS);
        let mut entry = self
            .external_ids
            .entry((supplier_id.to_string(), external_id.to_string()))
            .or_insert_with(|| (lead_id.to_string(), now));
        if entry.0 == lead_id {
            return Ok(());
        }
        if entry.1 + ttl <= now {
            *entry = (lead_id.to_string(), now);
            return Ok(());
        }
        Err(entry.0.clone())
    }

    /// The answered records and external id claims, for a checkpoint.
    pub fn export(&self) -> (Vec<AnswerState>, Vec<ExternalIdState>) {
        let answers = self
            .records
            .iter()
            .filter_map(|entry| {
                let answer = entry.answer.get()?.as_ref().ok()?;
                Some(AnswerState {
                    supplier_id: entry.key().0.clone(),
                    key: entry.key().1.clone(),
                    body_hash: hex::encode(entry.body_hash),
                    answer: Some(answer.clone()),
                    status: None,
                    body: None,
                    created_at: entry.created_at,
                })
            })
            .collect();
        let external_ids = self
            .external_ids
            .iter()
            .map(|entry| ExternalIdState {
                supplier_id: entry.key().0.clone(),
                external_id: entry.key().1.clone(),
                lead_id: entry.value().0.clone(),
                at: entry.value().1,
            })
            .collect();
        (answers, external_ids)
    }

    pub fn import(&self, answers: Vec<AnswerState>, external_ids: Vec<ExternalIdState>) {
        for answer in answers {
            let mut hash = [0u8; 32];
            let Some(kept) = answer.kept() else { continue };
            if hex::decode_to_slice(&answer.body_hash, &mut hash).is_ok() {
                self.restore(&answer.supplier_id, &answer.key, hash, kept, answer.created_at);
            }
        }
        for claim in external_ids {
            self.restore_external_id(&claim.supplier_id, &claim.external_id, &claim.lead_id, claim.at);
        }
    }

    pub fn sweep(&self, now: DateTime<Utc>) {
        let ttl = Duration::hours(IDEMPOTENCY_TTL_HOURS);
        self.records.retain(|_, record| record.created_at + ttl > now);
        self.external_ids.retain(|_, (_, at)| *at + ttl > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_of_either_form_restore_the_first_answer() {
        let now = chrono::Utc::now();
        let typed = KeptAnswer::Done { result: bytes::Bytes::from_static(b"{\"status\":\"sold\"}\n") };
        let checkpoint = |key: &str, answer: Option<KeptAnswer>, status: Option<u16>, body: Option<&str>| AnswerState {
            supplier_id: "s1".into(),
            key: key.into(),
            body_hash: hex::encode([3u8; 32]),
            answer,
            status,
            body: body.map(str::to_string),
            created_at: now,
        };
        let kept = Idempotency::default();
        kept.import(
            vec![
                checkpoint("typed", Some(typed.clone()), None, None),
                checkpoint("http", None, Some(200), Some("{\"status\":\"sold\"}\n")),
                checkpoint("unreadable", None, Some(400), Some("{}")),
            ],
            Vec::new(),
        );
        for key in ["typed", "http"] {
            let (begin, record) = kept.begin("s1", key, [3u8; 32], now);
            assert_eq!(begin, Begin::Proceed);
            assert_eq!(record.answer.get(), Some(&Ok(typed.clone())), "{key}");
        }
        let (_, record) = kept.begin("s1", "unreadable", [3u8; 32], now);
        assert!(!record.answer.initialized(), "an answer that does not read is run again");
        let (answers, _) = kept.export();
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(|state| state.answer == Some(typed.clone()) && state.status.is_none()));
    }
}
