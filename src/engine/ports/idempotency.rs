//! `Idempotency-Key` records: how long they live, what is kept of a first answer, how a
//! request meets one.
//!
//! What is kept is the use case's own result (`KeptAnswer`): the result it gave, or the
//! refusal, as the engine states it. No HTTP status is stored: the API maps a kept answer
//! to HTTP exactly as it maps a fresh one, in one place.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::model::FieldError;

/// DESIGN §4: same key and body within 24 h → the first answer again.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

/// The first answer to a request with an `Idempotency-Key`, given again to its retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum KeptAnswer {
    /// The use case ran: its result, as the JSON of the use case's answer type.
    Done {
        #[serde(with = "json_text")]
        result: Bytes,
    },
    /// The use case refused the request; a retry of the same request is refused alike.
    Refused { refusal: Refusal },
}

/// Why a use case refused a request, in the terms a retry must be refused again. The
/// engine's errors that are not kept (storage unavailable, a request still running) have
/// no form here: a retry of those runs again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// The input breaks a rule of its fields.
    Invalid { details: Vec<FieldError> },
    /// An id that is unknown, or another party's (which is not said).
    NotFound { what: String },
    /// The ping this post refers to has expired.
    PingExpired,
    /// A business rule refuses the request as a whole.
    Refused { code: String, message: String },
    /// The request conflicts with the state (`ping_already_posted`...).
    Conflict { code: String, message: String },
}

impl KeptAnswer {
    /// A kept answer in the form stored before answers were typed (`status` and the HTTP
    /// body), as records of that form are still read from journals, checkpoints and Redis.
    /// A 400 (a body the API could not read) gives `None`: it is answered again by reading
    /// the same body, without a record.
    pub fn from_http_form(status: u16, body: &[u8]) -> Option<KeptAnswer> {
        if (200..300).contains(&status) {
            return Some(KeptAnswer::Done { result: Bytes::copy_from_slice(body) });
        }
        #[derive(Deserialize)]
        struct Envelope {
            error: ErrorBody,
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            details: Vec<FieldError>,
        }
        let ErrorBody { code, message, details } = serde_json::from_slice::<Envelope>(body).ok()?.error;
        let refusal = match status {
            404 => Refusal::NotFound { what: message.strip_suffix(" not found").unwrap_or("resource").to_string() },
            409 => Refusal::Conflict { code, message },
            410 => Refusal::PingExpired,
            422 if code == "validation_failed" => Refusal::Invalid { details },
            422 => Refusal::Refused { code, message },
            _ => return None,
        };
        Some(KeptAnswer::Refused { refusal })
    }
}

/// A result's JSON kept as a string: a journal or checkpoint line stays one JSON object
/// whatever the result holds, and the replayed bytes are the first answer's, unchanged.
mod json_text {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&String::from_utf8_lossy(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        Ok(Bytes::from(String::deserialize(deserializer)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Same key and same body: run or await `Record::answer`.
    Proceed,
    /// Same key, another body.
    Conflict,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_answer_survives_its_stored_form_unchanged() {
        let answers = [
            KeptAnswer::Done { result: Bytes::from_static(b"{\"lead_id\":\"l1\",\"status\":\"sold\"}\n") },
            KeptAnswer::Refused { refusal: Refusal::Invalid { details: vec![FieldError::new("reason", "required")] } },
            KeptAnswer::Refused { refusal: Refusal::NotFound { what: "sale".into() } },
            KeptAnswer::Refused { refusal: Refusal::PingExpired },
            KeptAnswer::Refused {
                refusal: Refusal::Refused { code: "return_window_closed".into(), message: "closed".into() },
            },
            KeptAnswer::Refused {
                refusal: Refusal::Conflict { code: "ping_already_posted".into(), message: "posted".into() },
            },
        ];
        for answer in answers {
            let stored = serde_json::to_string(&answer).expect("encodes");
            assert_eq!(serde_json::from_str::<KeptAnswer>(&stored).expect("decodes"), answer, "{stored}");
        }
    }

    #[test]
    fn answers_stored_with_their_http_status_read_as_the_use_case_gave_them() {
        let sold = b"{\"lead_id\":\"l1\"}\n";
        assert_eq!(KeptAnswer::from_http_form(200, sold), Some(KeptAnswer::Done { result: Bytes::from_static(sold) }));
        let error = |code: &str, message: &str, details: &str| {
            format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"{message}\",\"details\":{details}}}}}\n")
        };
        let cases = [
            (404, error("not_found", "sale not found", "[]"), Refusal::NotFound { what: "sale".into() }),
            (
                409,
                error("ping_already_posted", "posted", "[]"),
                Refusal::Conflict { code: "ping_already_posted".into(), message: "posted".into() },
            ),
            (410, error("ping_expired", "the ping expired; ping again", "[]"), Refusal::PingExpired),
            (
                422,
                error("validation_failed", "the request is not valid", "[{\"field\":\"zip\",\"message\":\"unknown\"}]"),
                Refusal::Invalid { details: vec![FieldError::new("zip", "unknown")] },
            ),
            (
                422,
                error("return_window_closed", "closed", "[]"),
                Refusal::Refused { code: "return_window_closed".into(), message: "closed".into() },
            ),
        ];
        for (status, body, refusal) in cases {
            assert_eq!(
                KeptAnswer::from_http_form(status, body.as_bytes()),
                Some(KeptAnswer::Refused { refusal }),
                "{status} {body}"
            );
        }
        assert_eq!(KeptAnswer::from_http_form(400, error("malformed_request", "bad", "[]").as_bytes()), None);
        assert_eq!(KeptAnswer::from_http_form(409, b"not json"), None);
    }
}
