//! Duplicate detection keys: the same person (normalized phone or email) sold to the same
//! buyer within the campaign's `dedup_days` is a duplicate.
//!
//! Keys are SHA-256 digests of buyer and normalized contact, so the dedup store (memory or
//! Redis) never holds a phone number or email address in clear.

use sha2::{Digest, Sha256};

/// A dedup key: opaque, fixed size, PII-free.
pub type DedupKey = [u8; 32];

/// The keys under which a lead with these normalized contacts is remembered for a buyer.
pub fn keys_for(buyer_id: &str, contacts: &[String]) -> Vec<DedupKey> {
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

    #[test]
    fn keys_differ_by_buyer_and_contact() {
        let a = keys_for("b1", &["phone:+49891234567".into()]);
        let b = keys_for("b2", &["phone:+49891234567".into()]);
        let c = keys_for("b1", &["phone:+49891234568".into()]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, keys_for("b1", &["phone:+49891234567".into()]));
        assert_eq!(from_hex(&to_hex(&a[0])), Some(a[0]));
        assert_eq!(from_hex("not hex"), None);
    }
}
