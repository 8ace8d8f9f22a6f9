//! Pull queues: how many leads one fetch may take.

/// At most this many leads per fetch: a page a buyer's CRM can take in one request.
pub const PULL_LIMIT_MAX: usize = 1_000;
