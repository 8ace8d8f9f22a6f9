//! Duplicate detection keys: the same person (normalized phone or email) sold to the same
//! buyer within the campaign's `dedup_days` is a duplicate.
//!
//! Keys are HMAC-SHA-256 of buyer and normalized contact under a server secret, so the
//! dedup store (memory, journal, Redis) holds nothing that leads back to a phone number or
//! email address: a plain hash of a phone number is reversed by trying every number.
//! Keys written before the secret existed (plain SHA-256) are still looked up, never
//! written, for as long as a dedup window begun before the change can run.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A dedup key: opaque, fixed size, PII-free.
pub type DedupKey = [u8; 32];

/// The server secret dedup keys are made with: 32 bytes, the same on every node of a
/// deployment, kept when API keys or the admin token change.
#[derive(Clone, PartialEq, Eq)]
pub struct DedupSecret([u8; 32]);

impl std::fmt::Debug for DedupSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DedupSecret(***)")
    }
}

impl DedupSecret {
    pub const fn from_bytes(bytes: [u8; 32]) -> DedupSecret {
        DedupSecret(bytes)
    }

    /// 64 hex digits; None for anything else.
    pub fn from_hex(text: &str) -> Option<DedupSecret> {
        from_hex(text.trim()).map(DedupSecret)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Says which secret this is without revealing it: nodes sharing a Redis compare these.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.mac(b"leadrouter dedup secret fingerprint").finalize().into_bytes()[..16])
    }

    fn mac(&self, first: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(first);
        mac
    }
}

/// How keys are made: under the secret, and since when (if ever) plain keys of sales made
/// before the secret may still be in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupKeying {
    pub secret: DedupSecret,
    /// When the secret replaced plain keys on a store that already held sales; None on a
    /// store that never held a plain key.
    pub plain_until_then: Option<DateTime<Utc>>,
}

impl DedupKeying {
    pub fn new(secret: DedupSecret) -> DedupKeying {
        DedupKeying { secret, plain_until_then: None }
    }

    /// The keys under which a lead with these normalized contacts is remembered for a buyer.
    pub fn keys_for(&self, buyer_id: &str, contacts: &[String]) -> Vec<DedupKey> {
        contacts
            .iter()
            .map(|contact| {
                let mut mac = self.secret.mac(buyer_id.as_bytes());
                mac.update(&[0u8]);
                mac.update(contact.as_bytes());
                mac.finalize().into_bytes().into()
            })
            .collect()
    }

    /// The plain keys a sale made before the secret would have left, while a window of
    /// `window` begun before the change can still be running at `now`; else none.
    pub fn plain_keys_for(
        &self,
        buyer_id: &str,
        contacts: &[String],
        now: DateTime<Utc>,
        window: Duration,
    ) -> Vec<DedupKey> {
        match self.plain_until_then {
            Some(changed) if changed + window > now => plain_keys_for(buyer_id, contacts),
            _ => Vec::new(),
        }
    }
}

/// The keys of the first versions: SHA-256 of buyer and contact, with no secret.
fn plain_keys_for(buyer_id: &str, contacts: &[String]) -> Vec<DedupKey> {
    contacts
        .iter()
        .map(|contact| {
            let mut hasher = Sha256::new();
            hasher.update(buyer_id.as_bytes());
            hasher.update([0u8]);
            hasher.update(contact.as_bytes());
            hasher.finalize().into()
        })
        .collect()
}

/// A key as journaled: lowercase hex.
pub fn to_hex(key: &DedupKey) -> String {
    hex::encode(key)
}

/// A journaled key back; None for anything that is not 64 hex digits.
pub fn from_hex(text: &str) -> Option<DedupKey> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn keying(byte: u8) -> DedupKeying {
        DedupKeying::new(DedupSecret::from_bytes([byte; 32]))
    }

    #[test]
    fn keys_differ_by_buyer_contact_and_secret() {
        let phone = vec!["phone:+49891234567".to_string()];
        let a = keying(1).keys_for("b1", &phone);
        assert_ne!(a, keying(1).keys_for("b2", &phone));
        assert_ne!(a, keying(1).keys_for("b1", &["phone:+49891234568".into()]));
        assert_ne!(a, keying(2).keys_for("b1", &phone), "another secret, other keys");
        assert_eq!(a, keying(1).keys_for("b1", &phone));
        assert_eq!(from_hex(&to_hex(&a[0])), Some(a[0]));
        assert_eq!(from_hex("not hex"), None);
    }

    /// What a reader of the store could do with plain keys: try every number of a range.
    /// Under the secret the same search finds nothing.
    #[test]
    fn a_keyed_phone_number_is_not_found_by_trying_every_number() {
        let contact = |n: u32| format!("phone:+4989{n:07}");
        let stored = keying(7).keys_for("b1", &[contact(1_234_567)])[0];
        let plain = plain_keys_for("b1", &[contact(1_234_567)])[0];
        let search = |key: DedupKey| (1_230_000..1_240_000).find(|n| plain_keys_for("b1", &[contact(*n)])[0] == key);
        assert_eq!(search(plain), Some(1_234_567), "a plain key gives the number away");
        assert_eq!(search(stored), None);
    }

    #[test]
    fn plain_keys_are_looked_up_only_while_a_window_from_before_the_change_runs() {
        let changed = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let keying = DedupKeying { plain_until_then: Some(changed), ..keying(3) };
        let phone = vec!["phone:+49891234567".to_string()];
        let window = Duration::days(30);
        let during = keying.plain_keys_for("b1", &phone, changed + Duration::days(29), window);
        assert_eq!(during, plain_keys_for("b1", &phone));
        assert!(keying.plain_keys_for("b1", &phone, changed + Duration::days(30), window).is_empty());
        let fresh = DedupKeying { plain_until_then: None, ..keying };
        assert!(fresh.plain_keys_for("b1", &phone, changed, window).is_empty(), "a new store never had any");
    }

    #[test]
    fn a_fingerprint_tells_secrets_apart_without_showing_them() {
        let (one, two) = (DedupSecret::from_bytes([1; 32]), DedupSecret::from_bytes([2; 32]));
        assert_ne!(one.fingerprint(), two.fingerprint());
        assert!(!one.fingerprint().contains(&one.to_hex()[..8]));
        assert_eq!(DedupSecret::from_hex(&one.to_hex()), Some(one.clone()));
        assert_eq!(format!("{one:?}"), "DedupSecret(***)");
    }
}
