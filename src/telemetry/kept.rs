//! Metric handles kept per value of one owned label (a buyer id, a vertical name), so a hot
//! path increments a handle instead of building, hashing and looking up a key per call.
//!
//! Rationale (issue 17): a `counter!` with an owned label allocates the label's string and
//! the key's label list and looks the key up in the recorder's registry on every call,
//! about five allocations; a direct post made seven such calls and a ping fanned out to ten
//! buyers twenty-one. A handle feeds the same recorder, so `/metrics` and the dashboard
//! (`activity::Tee`) see the same increments. Handles are kept only once our recorder is
//! installed: one taken from the no-op recorder before that would drop every later
//! increment.

use std::sync::OnceLock;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram};

/// A metric of the owner: its name and up to two static label values ("" when unused).
pub type Key = (&'static str, &'static str, &'static str);

/// One kept handle.
#[derive(Clone)]
enum Handle {
    Counter(Counter),
    Histogram(Histogram),
    Gauge(Gauge),
}

/// The handles of one owner, found by a short scan: an owner has a handful of series.
type Handles = Vec<(Key, Handle)>;

/// Handles by owner (the value of the owned label).
pub struct Kept {
    owners: OnceLock<DashMap<Box<str>, Handles>>,
}

impl Kept {
    pub const fn new() -> Kept {
        Kept { owners: OnceLock::new() }
    }

    /// The counter `key` of `owner`; `register` makes it (with the macro) the first time.
    pub fn counter(&self, owner: &str, key: Key, register: impl FnOnce() -> Counter) -> Counter {
        match self.handle(owner, key, || Handle::Counter(register())) {
            Handle::Counter(counter) => counter,
            _ => mismatched(key, Counter::noop()),
        }
    }

    pub fn histogram(&self, owner: &str, key: Key, register: impl FnOnce() -> Histogram) -> Histogram {
        match self.handle(owner, key, || Handle::Histogram(register())) {
            Handle::Histogram(histogram) => histogram,
            _ => mismatched(key, Histogram::noop()),
        }
    }

    pub fn gauge(&self, owner: &str, key: Key, register: impl FnOnce() -> Gauge) -> Gauge {
        match self.handle(owner, key, || Handle::Gauge(register())) {
            Handle::Gauge(gauge) => gauge,
            _ => mismatched(key, Gauge::noop()),
        }
    }

    fn handle(&self, owner: &str, key: Key, register: impl FnOnce() -> Handle) -> Handle {
        if super::HANDLE.get().is_none() {
            return register();
        }
        let owners = self.owners.get_or_init(DashMap::new);
        let find = |handles: &Handles| handles.iter().find(|(k, _)| *k == key).map(|(_, handle)| handle.clone());
        // The read path takes a shard's read lock and clones one `Arc`; a write lock only
        // while a series is new.
        if let Some(found) = owners.get(owner).and_then(|handles| find(&handles)) {
            return found;
        }
        let mut handles = owners.entry(Box::from(owner)).or_default();
        if let Some(found) = find(&handles) {
            return found;
        }
        let handle = register();
        handles.push((key, handle.clone()));
        handle
    }
}

/// A key kept as another kind of metric: metric names are unique across kinds, so this is
/// a caller's mistake; it must not take the process down, and it counts nothing.
fn mismatched<T>(key: Key, noop: T) -> T {
    debug_assert!(false, "metric {key:?} kept as another kind");
    noop
}
