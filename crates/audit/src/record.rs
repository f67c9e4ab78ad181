//! The audit record and its canonical encoding.
//!
//! The encoding is what the Merkle leaf hashes, so it must be the same on every machine and in
//! every future release: a version byte, then each field in a fixed order, strings as a 4-byte
//! big-endian length and their UTF-8 bytes, integers as 8 bytes big-endian, the detail hash as
//! its 32 bytes. Length prefixes make it injective: no two different records encode alike, so a
//! changed field always changes the leaf hash.

use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The version byte that starts every canonical encoding. A new encoding gets a new version;
/// records keep the version they were written with.
pub const RECORD_VERSION: u8 = 1;

/// One entry of a tenant's audit log: who did what to which item, when, and the hash of a small
/// detail document (never the content itself, so erasing content keeps the log verifiable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub tenant_id: String,
    /// Position in the tenant's log, from 0 with no gaps: the Merkle leaf index.
    pub seq: u64,
    /// When the change happened, Unix milliseconds.
    pub at_ms: i64,
    /// The item the event is about (a feedback item id, a data key id, …).
    pub item_id: String,
    /// What happened: an [`Event`] name (`received`, `read_in_clear`, …).
    pub event: String,
    /// Who did it: an API key id, a worker id, `system`.
    pub actor: String,
    /// SHA-256 of the event's detail JSON ([`detail_hash`]).
    pub detail_hash: Hash,
}

impl AuditRecord {
    /// The canonical encoding (version 1), appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(RECORD_VERSION);
        put_str(out, &self.tenant_id);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at_ms.to_be_bytes());
        put_str(out, &self.item_id);
        put_str(out, &self.event);
        put_str(out, &self.actor);
        out.extend_from_slice(&self.detail_hash);
    }

    /// The canonical encoding (version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + 16
                + 32
                + 16
                + self.tenant_id.len()
                + self.item_id.len()
                + self.event.len()
                + self.actor.len(),
        );
        self.encode_into(&mut out);
        out
    }

    /// The RFC 6962 leaf hash of the canonical encoding: SHA-256(0x00 || encoding).
    ///
    /// Hashed field by field rather than through a buffer: the bytes hashed are exactly
    /// [`AuditRecord::encode`]'s, without an allocation per record during verification.
    pub fn leaf_hash(&self) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update([0x00, RECORD_VERSION]);
        hash_str(&mut hasher, &self.tenant_id);
        hasher.update(self.seq.to_be_bytes());
        hasher.update(self.at_ms.to_be_bytes());
        hash_str(&mut hasher, &self.item_id);
        hash_str(&mut hasher, &self.event);
        hash_str(&mut hasher, &self.actor);
        hasher.update(self.detail_hash);
        hasher.finalize().into()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Fields longer than 4 GiB cannot be stored anyway; saturating keeps this panic-free.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn hash_str(hasher: &mut Sha256, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    hasher.update(len.to_be_bytes());
    hasher.update(s.as_bytes());
}

/// SHA-256 of a detail document's JSON. `serde_json` writes object keys sorted, so equal
/// documents hash alike whatever order they were built in.
///
/// ```
/// let a = audit::detail_hash(&serde_json::json!({"tier": "batch", "risk": 0.2}));
/// let b = audit::detail_hash(&serde_json::json!({"risk": 0.2, "tier": "batch"}));
/// assert_eq!(a, b);
/// ```
pub fn detail_hash(detail: &serde_json::Value) -> Hash {
    Sha256::digest(detail.to_string().as_bytes()).into()
}

/// The events signalbox records. The log stores the name, so new events need no migration;
/// [`Event::Other`] carries names this release does not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    Received,
    Redacted,
    Scored,
    Routed,
    Processed,
    ReadInClear,
    Purged,
    KeyRotated,
    /// A data key was destroyed (crypto-shredding).
    KeyDestroyed,
    /// Another valid event name (see [`Event::from_str`](std::str::FromStr)).
    Other(String),
}

/// Why a text is not an event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event names are 1 to 64 characters of a-z, 0-9, '_' and '.', starting with a letter")]
pub struct ParseEventError;

impl Event {
    /// The name stored in the log.
    pub fn as_str(&self) -> &str {
        match self {
            Event::Received => "received",
            Event::Redacted => "redacted",
            Event::Scored => "scored",
            Event::Routed => "routed",
            Event::Processed => "processed",
            Event::ReadInClear => "read_in_clear",
            Event::Purged => "purged",
            Event::KeyRotated => "key_rotated",
            Event::KeyDestroyed => "key_destroyed",
            Event::Other(name) => name,
        }
    }

    /// Whether `name` is a valid event name.
    pub fn valid_name(name: &str) -> bool {
        (1..=64).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    }
}

impl std::str::FromStr for Event {
    type Err = ParseEventError;
    fn from_str(s: &str) -> Result<Event, ParseEventError> {
        Ok(match s {
            "received" => Event::Received,
            "redacted" => Event::Redacted,
            "scored" => Event::Scored,
            "routed" => Event::Routed,
            "processed" => Event::Processed,
            "read_in_clear" => Event::ReadInClear,
            "purged" => Event::Purged,
            "key_rotated" => Event::KeyRotated,
            "key_destroyed" => Event::KeyDestroyed,
            other if Event::valid_name(other) => Event::Other(other.to_owned()),
            _ => return Err(ParseEventError),
        })
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> AuditRecord {
        AuditRecord {
            tenant_id: "tn_1".into(),
            seq: 7,
            at_ms: 1_700_000_000_123,
            item_id: "fb_9".into(),
            event: "scored".into(),
            actor: "worker".into(),
            detail_hash: [9; 32],
        }
    }

    #[test]
    fn the_encoding_is_pinned() {
        // A change to the encoding would orphan every stored leaf hash: this pins version 1.
        let bytes = record().encode();
        let mut expected = vec![1u8, 0, 0, 0, 4];
        expected.extend_from_slice(b"tn_1");
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 4]);
        expected.extend_from_slice(b"fb_9");
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"scored");
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"worker");
        expected.extend_from_slice(&[9; 32]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn events_round_trip_and_reject_bad_names() {
        for event in [
            Event::Received,
            Event::Redacted,
            Event::Scored,
            Event::Routed,
            Event::Processed,
            Event::ReadInClear,
            Event::Purged,
            Event::KeyRotated,
            Event::KeyDestroyed,
            Event::Other("exported".into()),
        ] {
            assert_eq!(event.as_str().parse::<Event>(), Ok(event.clone()));
        }
        for bad in ["", "Received", "1st", "a b", "é", &"x".repeat(65)] {
            assert_eq!(bad.parse::<Event>(), Err(ParseEventError), "{bad:?}");
        }
    }

    proptest! {
        /// The streamed leaf hash is SHA-256(0x00 || encode()), and any change to any field
        /// changes it (the encoding is injective).
        #[test]
        fn leaf_hash_is_the_hash_of_the_encoding_and_every_field_counts(
            tenant in "[a-z_0-9]{0,12}", item in ".{0,12}", event in "[a-z]{1,12}",
            actor in ".{0,12}", seq in any::<u64>(), at in any::<i64>(), d in any::<[u8; 32]>(),
            which in 0usize..7,
        ) {
            let r = AuditRecord { tenant_id: tenant, seq, at_ms: at, item_id: item, event, actor, detail_hash: d };
            let mut prefixed = vec![0u8];
            prefixed.extend(r.encode());
            let expected: Hash = Sha256::digest(&prefixed).into();
            prop_assert_eq!(r.leaf_hash(), expected);
            let mut changed = r.clone();
            match which {
                0 => changed.tenant_id.push('x'),
                1 => changed.seq = changed.seq.wrapping_add(1),
                2 => changed.at_ms = changed.at_ms.wrapping_add(1),
                3 => changed.item_id.push('x'),
                4 => changed.event.push('x'),
                5 => changed.actor.push('x'),
                _ => changed.detail_hash[0] ^= 1,
            }
            prop_assert_ne!(changed.leaf_hash(), r.leaf_hash());
        }

        /// Moving a byte between adjacent strings changes the encoding.
        #[test]
        fn boundaries_between_fields_count(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            let mut x = record();
            x.item_id = a.clone();
            x.event = b.clone();
            let mut y = record();
            y.item_id = format!("{a}{}", &b[..1]);
            y.event = b[1..].to_owned();
            prop_assert_ne!(x.encode(), y.encode());
        }
    }
}
