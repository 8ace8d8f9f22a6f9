//! Dedup claims: a lead's contact keys are claimed for a buyer before delivery and marked
//! sold on success, so two concurrent copies of one lead cannot both sell to one buyer.

use chrono::{DateTime, Duration, Utc};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::domain::dedup::DedupKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// A delivery with this key is in flight.
    Pending,
    Sold(DateTime<Utc>),
}

#[derive(Default)]
pub struct Dedup {
    keys: DashMap<DedupKey, Mark>,
}

impl Dedup {
    /// Claims all keys, or none if any was sold within `window` or is pending, or any of
    /// `plain` (keys from before the dedup secret, looked up but never taken) was sold
    /// within `window`.
    pub fn claim(&self, keys: &[DedupKey], plain: &[DedupKey], now: DateTime<Utc>, window: Duration) -> bool {
        let sold_within = |key: &DedupKey| {
            self.keys.get(key).is_some_and(|mark| matches!(*mark, Mark::Sold(at) if at + window > now))
        };
        if plain.iter().any(sold_within) {
            return false;
        }
        for (i, key) in keys.iter().enumerate() {
            let free = match self.keys.entry(*key) {
                Entry::Vacant(vacant) => {
                    vacant.insert(Mark::Pending);
                    true
                }
                Entry::Occupied(mut occupied) => match *occupied.get() {
                    Mark::Sold(at) if at + window <= now => {
                        occupied.insert(Mark::Pending);
                        true
                    }
                    _ => false,
                },
            };
            if !free {
                self.release(&keys[..i]);
                return false;
            }
        }
        true
    }

    pub fn commit(&self, keys: &[DedupKey], now: DateTime<Utc>) {
        for key in keys {
            self.keys.insert(*key, Mark::Sold(now));
        }
    }

    pub fn release(&self, keys: &[DedupKey]) {
        for key in keys {
            self.keys.remove_if(key, |_, mark| *mark == Mark::Pending);
        }
    }

    /// The keys marked sold, for a checkpoint (keys in flight belong to no sale yet).
    pub fn export_sold(&self) -> Vec<(DedupKey, DateTime<Utc>)> {
        self.keys
            .iter()
            .filter_map(|entry| match entry.value() {
                Mark::Sold(at) => Some((*entry.key(), *at)),
                Mark::Pending => None,
            })
            .collect()
    }

    pub fn import_sold(&self, keys: Vec<(DedupKey, DateTime<Utc>)>) {
        for (key, at) in keys {
            self.keys.insert(key, Mark::Sold(at));
        }
    }

    /// Forgets sales older than the longest dedup window in use.
    pub fn sweep(&self, now: DateTime<Utc>, longest: Duration) {
        self.keys.retain(|_, mark| match mark {
            Mark::Pending => true,
            Mark::Sold(at) => *at + longest > now,
        });
    }
}

#[async_trait::async_trait]
impl super::DedupClaims for Dedup {
    async fn claim(
        &self,
        _buyer_id: &str,
        keys: &[DedupKey],
        plain: &[DedupKey],
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<bool, super::Unavailable> {
        Ok(Dedup::claim(self, keys, plain, now, window))
    }

    async fn commit(&self, _buyer_id: &str, keys: &[DedupKey], now: DateTime<Utc>) -> Result<(), super::Unavailable> {
        Dedup::commit(self, keys, now);
        Ok(())
    }

    async fn release(&self, _buyer_id: &str, keys: &[DedupKey]) {
        Dedup::release(self, keys);
    }

    fn sweep(&self, now: DateTime<Utc>, longest: Duration) {
        Dedup::sweep(self, now, longest);
    }

    fn export(&self) -> Vec<(DedupKey, DateTime<Utc>)> {
        self.export_sold()
    }

    fn import(&self, keys: Vec<(DedupKey, DateTime<Utc>)>) {
        self.import_sold(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_key_is_claimed_once_until_its_window_passes() {
        let dedup = Dedup::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let keys = [[1u8; 32], [2u8; 32]];
        assert!(dedup.claim(&keys, &[], now, Duration::days(30)));
        assert!(!dedup.claim(&keys[1..], &[], now, Duration::days(30)), "pending blocks");
        dedup.commit(&keys, now);
        assert!(!dedup.claim(&keys[..1], &[], now + Duration::days(29), Duration::days(30)));
        assert!(dedup.claim(&keys[..1], &[], now + Duration::days(30), Duration::days(30)));
    }

    #[test]
    fn a_failed_claim_leaves_nothing_behind() {
        let dedup = Dedup::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        assert!(dedup.claim(&[[2u8; 32]], &[], now, Duration::days(1)));
        assert!(!dedup.claim(&[[1u8; 32], [2u8; 32]], &[], now, Duration::days(1)));
        assert!(dedup.claim(&[[1u8; 32]], &[], now, Duration::days(1)), "key 1 was rolled back");
    }

    #[test]
    fn plain_keys_block_within_their_window_and_are_never_taken() {
        let dedup = Dedup::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let (keyed, plain) = ([1u8; 32], [9u8; 32]);
        dedup.import_sold(vec![(plain, now)]);
        assert!(!dedup.claim(&[keyed], &[plain], now + Duration::days(29), Duration::days(30)));
        assert!(dedup.claim(&[keyed], &[plain], now + Duration::days(30), Duration::days(30)));
        dedup.commit(&[keyed], now + Duration::days(30));
        let sold: Vec<DedupKey> = dedup.export_sold().into_iter().map(|(key, _)| key).collect();
        assert!(sold.contains(&keyed));
        assert_eq!(dedup.keys.get(&plain).map(|m| *m), Some(Mark::Sold(now)), "looked up, not taken");
    }
}
