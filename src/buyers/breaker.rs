//! Circuit breaker per buyer endpoint. (STUB: helper fills in.)

use std::time::Instant;

#[derive(Debug, Default)]
pub struct Breakers {}

impl Breakers {
    /// Whether a call to `endpoint` may go out now (closed, or half-open and this is the
    /// probe).
    pub fn allow(&self, _endpoint: &str, _now: Instant) -> bool {
        todo!()
    }
    pub fn record_success(&self, _endpoint: &str) {
        todo!()
    }
    pub fn record_failure(&self, _endpoint: &str, _now: Instant) {
        todo!()
    }
}
