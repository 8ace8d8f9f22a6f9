//! `Idempotency-Key` records: how long they live, what is stored, how a request meets one.

/// DESIGN §4: same key and body within 24 h → the first answer again.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

/// A stored answer: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: bytes::Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Same key and same body: run or await `Record::answer`.
    Proceed,
    /// Same key, another body.
    Conflict,
}
