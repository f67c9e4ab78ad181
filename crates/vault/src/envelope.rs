//! Envelopes and wrapped data keys.
//!
//! Envelope bytes, version 1: `0x01 ‖ len(key id) (1 byte) ‖ key id ‖ nonce (12) ‖ ciphertext
//! ‖ tag (16)`. Wrapped data key bytes, version 1: `0x01 ‖ nonce (12) ‖ ciphertext (32) ‖ tag
//! (16)`; the master key id is stored beside them. Associated data is length-prefixed, so no
//! two owners share it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::keyring::{valid_key_id, Keyring, MasterKey, SecretKey, KEY_LEN};
use crate::VaultError;

/// AES-GCM's 96-bit nonce.
pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const VERSION: u8 = 1;

/// Where a sealed value lives: it opens only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub tenant_id: &'a str,
    pub record_id: &'a str,
    pub field: &'a str,
}

fn put(aad: &mut Vec<u8>, part: &str) {
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    aad.extend_from_slice(&len.to_be_bytes());
    aad.extend_from_slice(part.as_bytes());
}

fn envelope_aad(owner: &Owner<'_>, key_id: &str) -> Vec<u8> {
    let mut aad = b"signalbox envelope v1".to_vec();
    for part in [owner.tenant_id, owner.record_id, owner.field, key_id] {
        put(&mut aad, part);
    }
    aad
}

fn wrap_aad(tenant_id: &str, data_key_id: &str) -> Vec<u8> {
    let mut aad = b"signalbox data key v1".to_vec();
    put(&mut aad, tenant_id);
    put(&mut aad, data_key_id);
    aad
}

fn cipher(key: &SecretKey) -> Aes256Gcm {
    Aes256Gcm::new(key.expose().into())
}

/// A sealed value's bytes, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Seals `plaintext` for `owner` under data key `key_id`, with a fresh `nonce` (never reuse
/// one with the same key: draw it from the OS generator).
pub fn seal(
    key_id: &str,
    key: &SecretKey,
    owner: &Owner<'_>,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Sealed, VaultError> {
    if !valid_key_id(key_id) {
        return Err(VaultError::Malformed("the key id is not valid"));
    }
    let aad = envelope_aad(owner, key_id);
    let ciphertext = cipher(key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Malformed("the value is too long to seal"))?;
    let mut out = Vec::with_capacity(2 + key_id.len() + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(Sealed(out))
}

/// A parsed envelope: read the key id, fetch that key, then [`Envelope::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    key_id: &'a str,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Splits envelope bytes, checking their shape (not their authenticity).
    pub fn parse(bytes: &'a [u8]) -> Result<Envelope<'a>, VaultError> {
        let (&version, rest) = bytes.split_first().ok_or(VaultError::Malformed("empty"))?;
        if version != VERSION {
            return Err(VaultError::Malformed("unknown envelope version"));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or(VaultError::Malformed("truncated"))?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(VaultError::Malformed("truncated"));
        }
        let (key_id, rest) = rest.split_at(id_len);
        let key_id = std::str::from_utf8(key_id)
            .ok()
            .filter(|id| valid_key_id(id))
            .ok_or(VaultError::Malformed("the key id is not valid"))?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Ok(Envelope {
            key_id,
            nonce,
            ciphertext,
        })
    }

    /// The data key it was sealed with.
    pub fn key_id(&self) -> &'a str {
        self.key_id
    }

    /// Opens it with `key` for `owner`.
    pub fn open(&self, key: &SecretKey, owner: &Owner<'_>) -> Result<Vec<u8>, VaultError> {
        let aad = envelope_aad(owner, self.key_id);
        cipher(key)
            .decrypt(
                Nonce::from_slice(self.nonce),
                Payload {
                    msg: self.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::AuthenticationFailed)
    }
}

/// Wraps a tenant's data key under `master` with a fresh `nonce`.
pub fn wrap_data_key(
    master: &MasterKey,
    tenant_id: &str,
    data_key_id: &str,
    data_key: &SecretKey,
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let aad = wrap_aad(tenant_id, data_key_id);
    // Encrypting 32 bytes cannot exceed AES-GCM's length limit.
    let ciphertext = cipher(&master.key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: data_key.expose(),
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Unwraps a data key wrapped by master key `master_key_id`.
pub fn unwrap_data_key(
    keyring: &Keyring,
    master_key_id: &str,
    tenant_id: &str,
    data_key_id: &str,
    wrapped: &[u8],
) -> Result<SecretKey, VaultError> {
    let master = keyring
        .get(master_key_id)
        .ok_or_else(|| VaultError::UnknownKey {
            key_id: master_key_id.to_owned(),
        })?;
    let (&version, rest) = wrapped
        .split_first()
        .ok_or(VaultError::Malformed("empty wrapped key"))?;
    if version != VERSION || rest.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
        return Err(VaultError::Malformed("not a wrapped data key"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let aad = wrap_aad(tenant_id, data_key_id);
    let bytes = cipher(&master.key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::AuthenticationFailed)?;
    let bytes: [u8; KEY_LEN] = bytes
        .try_into()
        .map_err(|_| VaultError::Malformed("a wrapped key of the wrong length"))?;
    Ok(SecretKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OWNER: Owner<'static> = Owner {
        tenant_id: "tn_1",
        record_id: "fb_1",
        field: "text",
    };

    fn ring() -> Keyring {
        Keyring::new(vec![
            MasterKey {
                id: "m2".into(),
                key: SecretKey::from_bytes([2; 32]),
                active: true,
            },
            MasterKey {
                id: "m1".into(),
                key: SecretKey::from_bytes([1; 32]),
                active: false,
            },
        ])
        .unwrap()
    }

    #[test]
    fn swapping_ciphertexts_between_rows_or_fields_fails() {
        let key = SecretKey::from_bytes([9; 32]);
        let a = seal("dk1", &key, &OWNER, b"alpha", [1; 12]).unwrap();
        for other in [
            Owner {
                record_id: "fb_2",
                ..OWNER
            },
            Owner {
                tenant_id: "tn_2",
                ..OWNER
            },
            Owner {
                field: "note",
                ..OWNER
            },
            // Length prefixes: moving a character between fields is another owner.
            Owner {
                tenant_id: "tn_1f",
                record_id: "b_1",
                field: "text",
            },
        ] {
            let envelope = Envelope::parse(a.as_bytes()).unwrap();
            assert_eq!(
                envelope.open(&key, &other),
                Err(VaultError::AuthenticationFailed)
            );
        }
        let envelope = Envelope::parse(a.as_bytes()).unwrap();
        assert_eq!(envelope.open(&key, &OWNER).unwrap(), b"alpha");
    }

    #[test]
    fn wrong_key_tampering_and_malformed_bytes_are_told_apart() {
        let key = SecretKey::from_bytes([9; 32]);
        let sealed = seal("dk1", &key, &OWNER, b"secret text", [3; 12]).unwrap();
        let envelope = Envelope::parse(sealed.as_bytes()).unwrap();
        assert_eq!(
            envelope.open(&SecretKey::from_bytes([8; 32]), &OWNER),
            Err(VaultError::AuthenticationFailed)
        );
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            Envelope::parse(&bytes).unwrap().open(&key, &OWNER),
            Err(VaultError::AuthenticationFailed)
        );
        // Relabelling the key id is caught too (it is associated data).
        let mut relabelled = sealed.into_bytes();
        relabelled[4] = b'2';
        assert_eq!(
            Envelope::parse(&relabelled).unwrap().open(&key, &OWNER),
            Err(VaultError::AuthenticationFailed)
        );
        for bad in [
            &[][..],
            &[2, 0][..],
            &[1, 3, b'd', b'k'][..],
            &[1, 0, 0][..],
        ] {
            assert!(matches!(
                Envelope::parse(bad),
                Err(VaultError::Malformed(_))
            ));
        }
    }

    #[test]
    fn data_keys_wrap_and_unwrap_bound_to_tenant_and_id() {
        let ring = ring();
        let dk = SecretKey::from_bytes([5; 32]);
        let wrapped = wrap_data_key(ring.active(), "tn_1", "dk1", &dk, [4; 12]);
        assert_eq!(
            unwrap_data_key(&ring, "m2", "tn_1", "dk1", &wrapped).unwrap(),
            dk
        );
        assert_eq!(
            unwrap_data_key(&ring, "m1", "tn_1", "dk1", &wrapped),
            Err(VaultError::AuthenticationFailed)
        );
        assert_eq!(
            unwrap_data_key(&ring, "m3", "tn_1", "dk1", &wrapped),
            Err(VaultError::UnknownKey {
                key_id: "m3".into()
            })
        );
        assert_eq!(
            unwrap_data_key(&ring, "m2", "tn_2", "dk1", &wrapped),
            Err(VaultError::AuthenticationFailed)
        );
        assert_eq!(
            unwrap_data_key(&ring, "m2", "tn_1", "dk2", &wrapped),
            Err(VaultError::AuthenticationFailed)
        );
        assert!(matches!(
            unwrap_data_key(&ring, "m2", "tn_1", "dk1", &wrapped[..20]),
            Err(VaultError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(text in ".*", key in any::<[u8; 32]>(), nonce in any::<[u8; 12]>(),
                                record in "[a-z0-9_]{1,20}", flip in any::<prop::sample::Index>()) {
            let key = SecretKey::from_bytes(key);
            let owner = Owner { record_id: &record, ..OWNER };
            let sealed = seal("dk-7", &key, &owner, text.as_bytes(), nonce).unwrap();
            let envelope = Envelope::parse(sealed.as_bytes()).unwrap();
            prop_assert_eq!(envelope.open(&key, &owner).unwrap(), text.as_bytes());
            // Any flipped byte: an error, never other plaintext.
            let mut bad = sealed.into_bytes();
            let i = flip.index(bad.len());
            bad[i] ^= 0x40;
            let opened = Envelope::parse(&bad).and_then(|e| e.open(&key, &owner));
            prop_assert!(opened.is_err());
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = Envelope::parse(&bytes);
        }
    }
}
