//! Signed checkpoints: a tree size and root, signed with Ed25519, in the text format of C2SP
//! signed notes (`tlog-checkpoint`), so a witness can store and compare them as plain text:
//!
//! ```text
//! signalbox/audit/tn_0195…          origin: whose log this is
//! 1042                               tree size
//! 3q2+7w…=                           base64 of the root hash
//! at_ms 1767225600000                when it was signed (an extension line)
//!
//! — signalbox/audit/tn_0195… AAECAw…  key name, base64(key id ‖ signature)
//! ```
//!
//! The signature covers the body (the lines before the blank line). The key id is the first 4
//! bytes of SHA-256 of the 32-byte public key (C2SP derives it from the key name and key
//! instead; the note format is otherwise the same).
//!
//! ```
//! use audit::{Checkpoint, SignedCheckpoint};
//! let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let cp = Checkpoint { origin: "signalbox/audit/tn_1".into(), size: 3, root: [1; 32], at_ms: 5 };
//! let note = cp.sign(&key).unwrap().to_note();
//! let back = SignedCheckpoint::parse(&note).unwrap();
//! back.verify(&key.verifying_key()).unwrap();
//! assert_eq!(back.checkpoint, cp);
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The tree head a checkpoint vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Whose log: a unique name per log (signalbox uses `signalbox/audit/<tenant id>`); also
    /// the signing key's name in the note.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// When it was signed, Unix milliseconds.
    pub at_ms: i64,
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub key_name: String,
    pub key_id: [u8; 4],
    pub signature: [u8; 64],
}

/// A checkpoint with its signature lines (ours, and any witness cosignatures kept as read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signatures: Vec<NoteSignature>,
}

/// Why a checkpoint cannot be made, read or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the origin must be 1 to 255 printable characters without spaces")]
    BadOrigin,
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("no signature by key {0} on the checkpoint")]
    NoSignatureByKey(String),
    #[error("the checkpoint's signature does not verify (forged or altered)")]
    BadSignature,
}

/// The key id of an Ed25519 public key: the first 4 bytes of SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> [u8; 4] {
    let digest = Sha256::digest(key.as_bytes());
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.chars().all(|c| c.is_ascii_graphic() && c != '+')
}

const EM_DASH: &str = "\u{2014} ";

impl Checkpoint {
    /// The signed text: origin, size, base64 root and the `at_ms` extension line, each ending
    /// in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\nat_ms {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.at_ms
        )
    }

    /// Signs the body with `key`, named after the origin.
    pub fn sign(&self, key: &SigningKey) -> Result<SignedCheckpoint, CheckpointError> {
        if !valid_name(&self.origin) {
            return Err(CheckpointError::BadOrigin);
        }
        let signature = key.sign(self.body().as_bytes());
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            signatures: vec![NoteSignature {
                key_name: self.origin.clone(),
                key_id: key_id(&key.verifying_key()),
                signature: signature.to_bytes(),
            }],
        })
    }

    fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let mut lines = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed(
                "the body must end with a newline",
            ))?
            .split('\n');
        let origin = lines.next().unwrap_or_default();
        if !valid_name(origin) {
            return Err(CheckpointError::BadOrigin);
        }
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(CheckpointError::Malformed("line 2 must be the tree size"))?;
        let root = lines
            .next()
            .and_then(|s| B64.decode(s).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or(CheckpointError::Malformed(
                "line 3 must be the base64 of a 32-byte root",
            ))?;
        let mut at_ms = None;
        for line in lines {
            if let Some(value) = line.strip_prefix("at_ms ") {
                at_ms = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| CheckpointError::Malformed("at_ms must be an integer"))?,
                );
            }
        }
        let at_ms = at_ms.ok_or(CheckpointError::Malformed("the at_ms line is missing"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            at_ms,
        })
    }
}

impl SignedCheckpoint {
    /// The note text: body, a blank line, one `— name base64(key id ‖ signature)` line per
    /// signature.
    pub fn to_note(&self) -> String {
        let mut note = self.checkpoint.body();
        note.push('\n');
        for sig in &self.signatures {
            let mut blob = Vec::with_capacity(68);
            blob.extend_from_slice(&sig.key_id);
            blob.extend_from_slice(&sig.signature);
            note.push_str(EM_DASH);
            note.push_str(&sig.key_name);
            note.push(' ');
            note.push_str(&B64.encode(blob));
            note.push('\n');
        }
        note
    }

    /// Reads a note. Signatures are not checked here: see [`SignedCheckpoint::verify`].
    pub fn parse(note: &str) -> Result<SignedCheckpoint, CheckpointError> {
        let (body, sigs) = note.split_once("\n\n").ok_or(CheckpointError::Malformed(
            "no blank line before the signatures",
        ))?;
        let checkpoint = Checkpoint::parse_body(&format!("{body}\n"))?;
        let mut signatures = Vec::new();
        for line in sigs.lines().filter(|l| !l.is_empty()) {
            let rest = line
                .strip_prefix(EM_DASH)
                .ok_or(CheckpointError::Malformed(
                    "a signature line must start with '— '",
                ))?;
            let (name, blob) = rest.split_once(' ').ok_or(CheckpointError::Malformed(
                "a signature line is '— name signature'",
            ))?;
            let blob = B64
                .decode(blob)
                .map_err(|_| CheckpointError::Malformed("a signature is not base64"))?;
            // Other algorithms' signatures (a witness's) are kept only when they are ours in
            // shape; anything else is skipped, as note verifiers ignore unknown keys.
            let (Ok(key_id), Ok(signature)) = (
                <[u8; 4]>::try_from(blob.get(..4).unwrap_or_default()),
                <[u8; 64]>::try_from(blob.get(4..).unwrap_or_default()),
            ) else {
                continue;
            };
            signatures.push(NoteSignature {
                key_name: name.to_owned(),
                key_id,
                signature,
            });
        }
        if signatures.is_empty() {
            return Err(CheckpointError::Malformed("no signature line"));
        }
        Ok(SignedCheckpoint {
            checkpoint,
            signatures,
        })
    }

    /// Checks that `key` signed this checkpoint's body.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let id = key_id(key);
        let sig = self
            .signatures
            .iter()
            .find(|s| s.key_id == id)
            .ok_or_else(|| CheckpointError::NoSignatureByKey(hex::encode(id)))?;
        key.verify(
            self.checkpoint.body().as_bytes(),
            &Signature::from_bytes(&sig.signature),
        )
        .map_err(|_| CheckpointError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "signalbox/audit/tn_1".into(),
            size: 1042,
            root: [0xab; 32],
            at_ms: 1_767_225_600_000,
        }
    }

    #[test]
    fn the_note_has_the_signed_note_shape() {
        let note = checkpoint().sign(&key(1)).unwrap().to_note();
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines[0], "signalbox/audit/tn_1");
        assert_eq!(lines[1], "1042");
        assert_eq!(B64.decode(lines[2]).unwrap(), vec![0xab; 32]);
        assert_eq!(lines[3], "at_ms 1767225600000");
        assert_eq!(lines[4], "");
        assert!(lines[5].starts_with("\u{2014} signalbox/audit/tn_1 "));
        assert!(note.ends_with('\n'));
    }

    #[test]
    fn another_key_or_an_altered_body_is_rejected() {
        let signed = checkpoint().sign(&key(1)).unwrap();
        assert_eq!(
            signed.verify(&key(2).verifying_key()),
            Err(CheckpointError::NoSignatureByKey(hex::encode(key_id(
                &key(2).verifying_key()
            ))))
        );
        for edit in [
            |c: &mut Checkpoint| c.size += 1,
            |c: &mut Checkpoint| c.root[31] ^= 1,
            |c: &mut Checkpoint| c.at_ms -= 1,
            |c: &mut Checkpoint| c.origin.push('x'),
        ] {
            let mut forged = signed.clone();
            edit(&mut forged.checkpoint);
            let reparsed = SignedCheckpoint::parse(&forged.to_note()).unwrap();
            assert_eq!(
                reparsed.verify(&key(1).verifying_key()),
                Err(CheckpointError::BadSignature)
            );
        }
        // A signature made by another key but carrying our key id.
        let mut forged = signed.clone();
        forged.signatures[0].signature =
            checkpoint().sign(&key(3)).unwrap().signatures[0].signature;
        assert_eq!(
            forged.verify(&key(1).verifying_key()),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn cosignatures_are_kept_and_ours_is_found_among_them() {
        let mut signed = checkpoint().sign(&key(1)).unwrap();
        let witness = checkpoint().sign(&key(9)).unwrap().signatures.remove(0);
        signed.signatures.insert(
            0,
            NoteSignature {
                key_name: "witness.example".into(),
                ..witness
            },
        );
        let back = SignedCheckpoint::parse(&signed.to_note()).unwrap();
        assert_eq!(back.signatures.len(), 2);
        back.verify(&key(1).verifying_key()).unwrap();
        back.verify(&key(9).verifying_key()).unwrap();
    }

    #[test]
    fn malformed_notes_are_errors() {
        let good = checkpoint().sign(&key(1)).unwrap().to_note();
        for bad in [
            String::new(),
            good.replace("\n\n", "\n"),
            good.replace("1042", "-3"),
            good.replace("1042", "12x"),
            good.replace("at_ms 1767225600000", "at_ms soon"),
            good.replace("at_ms 1767225600000\n", ""),
            good.replace("\u{2014} ", "- "),
            good.lines().take(5).collect::<Vec<_>>().join("\n") + "\n",
        ] {
            assert!(SignedCheckpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Checkpoint {
                origin: "has space".into(),
                ..checkpoint()
            }
            .sign(&key(1)),
            Err(CheckpointError::BadOrigin)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC*") {
            let _ = SignedCheckpoint::parse(&text);
        }

        #[test]
        fn round_trip(size in any::<u64>(), root in any::<[u8; 32]>(), at in any::<i64>(), seed in any::<[u8; 32]>()) {
            let key = SigningKey::from_bytes(&seed);
            let cp = Checkpoint { origin: "o/x".into(), size, root, at_ms: at };
            let back = SignedCheckpoint::parse(&cp.sign(&key).unwrap().to_note()).unwrap();
            prop_assert!(back.verify(&key.verifying_key()).is_ok());
            prop_assert_eq!(back.checkpoint, cp);
        }

        /// Flipping any one byte of a note either fails to parse or fails to verify (or, when it
        /// lands in a witness-ignorable place, leaves the checkpoint itself unchanged).
        #[test]
        fn any_flipped_byte_is_caught(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let key = key(4);
            let note = checkpoint().sign(&key).unwrap().to_note().into_bytes();
            let mut bad = note.clone();
            let i = pos.index(bad.len());
            bad[i] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(bad) {
                if let Ok(parsed) = SignedCheckpoint::parse(&text) {
                    let verified = parsed.verify(&key.verifying_key()).is_ok();
                    prop_assert!(!verified || parsed.checkpoint == checkpoint());
                }
            }
        }
    }
}
