//! Admission control: bounds on open connections (per listener and per client address), on
//! requests in flight (in all and per key, so one key holder cannot take every permit), on
//! bulk bodies being read at once, and a token bucket per supplier with a configured rate.
//! Beyond a bound the answer is 503 `overloaded` at once, never a queue.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::market::Party;

/// Requests decided at once before the server answers 503: far above what two cores can
/// usefully work on, low enough that memory stays bounded when buyers hang.
pub const IN_FLIGHT_MAX: usize = 8_192;
/// Bulk bodies (up to 16 MiB each) read at once: bounds the memory a flood of them takes.
pub const BULK_READS_MAX: usize = 16;
/// A bucket holds this many seconds of a supplier's rate, so short bursts pass.
const BURST_SECONDS: f64 = 2.0;

/// The bounds an operator can set (`--max-connections` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Open connections per listener.
    pub connections_max: usize,
    /// Open connections from one client address (a proxy in front counts as one).
    pub connections_per_address_max: usize,
    /// Requests in flight for one key (a supplier's, a buyer's, or no valid key at all).
    pub in_flight_per_key_max: usize,
    /// How long a client has, from the start of its request, to send the whole body.
    pub body_timeout: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            connections_max: 16_384,
            connections_per_address_max: 1_024,
            in_flight_per_key_max: IN_FLIGHT_MAX / 4,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Counts one listener's open connections, in all and by client address.
pub struct Connections {
    max: usize,
    per_address_max: usize,
    open: AtomicUsize,
    by_address: DashMap<IpAddr, usize>,
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    Listener,
    Address,
}

impl Crowded {
    pub fn as_str(self) -> &'static str {
        match self {
            Crowded::Listener => "listener",
            Crowded::Address => "address",
        }
    }
}

impl Connections {
    pub fn new(limits: &AdmissionLimits) -> Arc<Connections> {
        Arc::new(Connections {
            max: limits.connections_max,
            per_address_max: limits.connections_per_address_max,
            open: AtomicUsize::new(0),
            by_address: DashMap::new(),
        })
    }

    /// Counts a new connection from `address`, or says which bound it would break.
    pub fn open(self: &Arc<Self>, address: IpAddr) -> Result<OpenConnection, Crowded> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Crowded::Listener);
        }
        let mut count = self.by_address.entry(address).or_insert(0);
        if *count >= self.per_address_max {
            drop(count);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Crowded::Address);
        }
        *count += 1;
        Ok(OpenConnection { connections: Arc::clone(self), address })
    }

    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One counted connection; dropping it (the connection ended) gives its place back.
pub struct OpenConnection {
    connections: Arc<Connections>,
    address: IpAddr,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        // Removes the address's entry with its last connection, so the map stays as small
        // as the set of clients connected now.
        self.connections.by_address.remove_if_mut(&self.address, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

/// Permits for requests in flight: taken once the body is in (a slow body holds a
/// connection, never a permit), at most `per_key_max` of them by one key.
pub struct InFlight {
    total: Arc<Semaphore>,
    per_key_max: usize,
    by_key: Arc<DashMap<Party, usize>>,
    bulk_reads: Arc<Semaphore>,
}

impl InFlight {
    pub fn new(limits: &AdmissionLimits) -> InFlight {
        InFlight {
            total: Arc::new(Semaphore::new(IN_FLIGHT_MAX)),
            per_key_max: limits.in_flight_per_key_max,
            by_key: Arc::default(),
            bulk_reads: Arc::new(Semaphore::new(BULK_READS_MAX)),
        }
    }

    /// A permit for a request of `party`, or None when that party or the server is at its
    /// bound.
    pub fn admit(&self, party: &Party) -> Option<Admitted> {
        {
            let mut count = self.by_key.entry(party.clone()).or_insert(0);
            if *count >= self.per_key_max {
                return None;
            }
            *count += 1;
        }
        let counted = KeyCount { by_key: Arc::clone(&self.by_key), party: party.clone() };
        let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
        Some(Admitted { _permit: permit, _counted: counted })
    }

    /// A place to read one bulk body into memory, or None when enough are being read.
    pub fn bulk_read(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.bulk_reads).try_acquire_owned().ok()
    }

    pub fn available(&self) -> usize {
        self.total.available_permits()
    }
}

/// A request's permits; dropping it (the answer is written) gives them back.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _counted: KeyCount,
}

struct KeyCount {
    by_key: Arc<DashMap<Party, usize>>,
    party: Party,
}

impl Drop for KeyCount {
    fn drop(&mut self) {
        self.by_key.remove_if_mut(&self.party, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

#[derive(Default)]
pub struct RateLimits {
    buckets: DashMap<String, Bucket>,
}

struct Bucket {
    tokens: f64,
    rate_per_s: f64,
    refilled_at: Instant,
}

impl RateLimits {
    /// Takes one token from the supplier's bucket; false when it is empty.
    pub fn allow(&self, supplier_id: &str, rate_per_s: u32, now: Instant) -> bool {
        let rate = f64::from(rate_per_s);
        let capacity = rate * BURST_SECONDS;
        let mut bucket = self.buckets.entry(supplier_id.to_string()).or_insert_with(|| Bucket {
            tokens: capacity,
            rate_per_s: rate,
            refilled_at: now,
        });
        if bucket.rate_per_s != rate {
            bucket.rate_per_s = rate;
            bucket.tokens = bucket.tokens.min(capacity);
        }
        let elapsed = now.saturating_duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limits = RateLimits::default();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| limits.allow("s1", 10, start)).count();
        assert_eq!(allowed, 20, "two seconds of burst");
        assert!(!limits.allow("s1", 10, start));
        assert!(limits.allow("s1", 10, start + Duration::from_millis(100)));
        assert!(limits.allow("s2", 10, start), "buckets are per supplier");
    }

    fn limits(connections_max: usize, per_address: usize, per_key: usize) -> AdmissionLimits {
        AdmissionLimits {
            connections_max,
            connections_per_address_max: per_address,
            in_flight_per_key_max: per_key,
            ..AdmissionLimits::default()
        }
    }

    #[test]
    fn connections_are_bounded_per_address_and_per_listener_and_given_back() {
        let connections = Connections::new(&limits(5, 3, 1));
        let (a, b) = (IpAddr::from(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::from(Ipv4Addr::new(10, 0, 0, 2)));
        let from_a: Vec<_> = (0..3).map(|_| connections.open(a).unwrap()).collect();
        assert_eq!(connections.open(a).err(), Some(Crowded::Address));
        let from_b: Vec<_> = (0..2).map(|_| connections.open(b).unwrap()).collect();
        assert_eq!(connections.open(b).err(), Some(Crowded::Listener));
        assert_eq!(connections.open_count(), 5, "refusals are not counted");
        drop(from_a);
        assert_eq!(connections.open_count(), 2);
        assert!(connections.by_address.get(&a).is_none(), "no entry for an address with no connection");
        let again: Vec<_> = (0..3).map(|_| connections.open(a).unwrap()).collect();
        drop((again, from_b));
        assert_eq!(connections.open_count(), 0);
        assert!(connections.by_address.is_empty());
    }

    #[test]
    fn one_key_takes_at_most_its_share_and_others_still_get_in() {
        let in_flight = InFlight::new(&limits(1, 1, 3));
        let (s1, s2) = (Party::Supplier("s1".into()), Party::Supplier("s2".into()));
        let held: Vec<_> = (0..3).map(|_| in_flight.admit(&s1).unwrap()).collect();
        assert!(in_flight.admit(&s1).is_none(), "s1 is at its share");
        assert!(in_flight.admit(&Party::Buyer("s1".into())).is_some(), "a buyer of the same id is another key");
        let other = in_flight.admit(&s2).expect("another key gets in");
        assert_eq!(in_flight.available(), IN_FLIGHT_MAX - 4);
        drop(held);
        assert!(in_flight.admit(&s1).is_some(), "given back");
        drop(other);
        assert_eq!(in_flight.available(), IN_FLIGHT_MAX);
        assert!(in_flight.by_key.is_empty());
    }
}
