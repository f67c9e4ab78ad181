//! API key secrets: how they are minted and how they are hashed for storage.
//!
//! Keys are 192 random bits, so a fast hash (SHA-256) is enough to make a stolen database
//! useless: there is nothing to brute-force. A slow password hash would only add latency to
//! every request.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Every key starts with this, so secret scanners and people can recognise one.
pub const KEY_PREFIX: &str = "sbx_";

/// How many characters of a key are kept in clear to tell keys apart (`sbx_` + 8 hex digits).
pub const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

/// A new secret: `sbx_` followed by 48 hex digits of randomness from `rng`.
pub fn mint(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 24];
    rng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The value stored for a secret and looked up on every request.
///
/// ```
/// let h = store::secret::hash("sbx_00");
/// assert_eq!(h.len(), 64);
/// assert_eq!(h, store::secret::hash("sbx_00"));
/// ```
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `s` has the shape of a key; lets callers reject garbage without a database round trip.
pub fn looks_like_key(s: &str) -> bool {
    s.len() == KEY_PREFIX.len() + 48
        && s.starts_with(KEY_PREFIX)
        && s[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_have_the_documented_shape_and_differ() {
        let mut rng = rand::thread_rng();
        let a = mint(&mut rng);
        let b = mint(&mut rng);
        assert!(looks_like_key(&a), "{a}");
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn hash_is_sha256_hex() {
        // Known vector: SHA-256("abc").
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_keys_are_recognised() {
        assert!(!looks_like_key(""));
        assert!(!looks_like_key("sbx_"));
        assert!(!looks_like_key(&format!("abc_{}", "0".repeat(48))));
        assert!(!looks_like_key(&format!("sbx_{}", "z".repeat(48))));
        assert!(looks_like_key(&format!("sbx_{}", "0a".repeat(24))));
    }
}
