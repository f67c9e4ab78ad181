//! Master keys.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Length of every key: AES-256.
pub const KEY_LEN: usize = 32;

/// 32 secret bytes. `Debug` prints `<redacted>`, so a key cannot reach a log through a struct
/// that holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Wraps fresh key bytes (the caller draws them from the OS generator).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey(bytes)
    }

    /// The key bytes, for the cipher.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Base64, for a keyring file.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    fn from_base64(text: &str) -> Option<SecretKey> {
        let bytes = B64.decode(text.trim()).ok()?;
        <[u8; KEY_LEN]>::try_from(bytes.as_slice())
            .ok()
            .map(SecretKey)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A master key: wraps tenants' data keys; never encrypts content itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub id: String,
    pub key: SecretKey,
    /// The key new data keys are wrapped with; exactly one per keyring.
    pub active: bool,
}

/// Whether `id` can name a key: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The master keys: the active one wraps new data keys, the others still unwrap what they
/// wrapped until `signalbox keyring rewrap` has moved everything to the active one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

/// Why a keyring was refused; names the key and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring: not valid TOML: {0}")]
    Toml(String),
    #[error("keyring: keys[{index}].{field}: {reason}")]
    Field {
        index: usize,
        field: &'static str,
        reason: &'static str,
    },
    #[error("keyring: no keys")]
    Empty,
    #[error("keyring: key id '{0}' appears twice")]
    DuplicateId(String),
    #[error("keyring: exactly one key must be active; {0} are")]
    Active(usize),
    #[error("master key from the environment: expected ID:BASE64 (a key id, a colon, the base64 of 32 bytes){0}")]
    Env(&'static str),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    keys: Vec<KeyEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    secret: String,
    #[serde(default)]
    active: bool,
}

impl Keyring {
    /// A keyring of `keys`, validated: at least one, unique valid ids, exactly one active.
    pub fn new(keys: Vec<MasterKey>) -> Result<Keyring, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        for (index, key) in keys.iter().enumerate() {
            if !valid_key_id(&key.id) {
                return Err(KeyringError::Field {
                    index,
                    field: "id",
                    reason: "use 1 to 64 of A-Z a-z 0-9 . _ -",
                });
            }
            if keys[..index].iter().any(|k| k.id == key.id) {
                return Err(KeyringError::DuplicateId(key.id.clone()));
            }
        }
        let active = keys.iter().filter(|k| k.active).count();
        if active != 1 {
            return Err(KeyringError::Active(active));
        }
        Ok(Keyring { keys })
    }

    /// Reads the TOML form:
    ///
    /// ```toml
    /// [[keys]]
    /// id = "k2026-12"
    /// secret = "<base64 of 32 bytes>"
    /// active = true
    /// ```
    pub fn from_toml(text: &str) -> Result<Keyring, KeyringError> {
        let file: KeyringFile =
            toml::from_str(text).map_err(|e| KeyringError::Toml(e.message().to_owned()))?;
        let keys = file
            .keys
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let key = SecretKey::from_base64(&entry.secret).ok_or(KeyringError::Field {
                    index,
                    field: "secret",
                    reason: "must be the base64 of exactly 32 bytes",
                })?;
                Ok(MasterKey {
                    id: entry.id,
                    key,
                    active: entry.active,
                })
            })
            .collect::<Result<Vec<_>, KeyringError>>()?;
        Keyring::new(keys)
    }

    /// Reads the environment form: `ID:BASE64`, or several separated by commas, the first
    /// active (`new:…,old:…` while a rotation rewraps).
    pub fn from_env_value(value: &str) -> Result<Keyring, KeyringError> {
        let keys = value
            .split(',')
            .enumerate()
            .map(|(index, part)| {
                let (id, secret) = part
                    .trim()
                    .split_once(':')
                    .ok_or(KeyringError::Env(": no colon"))?;
                let key = SecretKey::from_base64(secret).ok_or(KeyringError::Env(
                    ": the secret is not the base64 of 32 bytes",
                ))?;
                Ok(MasterKey {
                    id: id.to_owned(),
                    key,
                    active: index == 0,
                })
            })
            .collect::<Result<Vec<_>, KeyringError>>()?;
        Keyring::new(keys)
    }

    /// The TOML form, for writing a generated keyring.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# signalbox master keys. Keep this file secret (mode 0600) and backed up: without it\n\
             # nothing encrypted with these keys can be read. Exactly one key is active.\n",
        );
        for key in &self.keys {
            out.push_str(&format!(
                "\n[[keys]]\nid = \"{}\"\nsecret = \"{}\"\nactive = {}\n",
                key.id,
                key.key.to_base64(),
                key.active
            ));
        }
        out
    }

    /// The key new data keys are wrapped with.
    pub fn active(&self) -> &MasterKey {
        // `new` guarantees exactly one; the fallback is unreachable but keeps this panic-free.
        self.keys.iter().find(|k| k.active).unwrap_or(&self.keys[0])
    }

    /// A key by id.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Every key, active or not.
    pub fn keys(&self) -> &[MasterKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(byte: u8) -> String {
        B64.encode([byte; 32])
    }

    #[test]
    fn toml_keyring_is_read_and_validated() {
        let text = format!(
            "[[keys]]\nid = \"k1\"\nsecret = \"{}\"\n\n[[keys]]\nid = \"k2\"\nsecret = \"{}\"\nactive = true\n",
            b64(1),
            b64(2)
        );
        let ring = Keyring::from_toml(&text).unwrap();
        assert_eq!(ring.active().id, "k2");
        assert_eq!(ring.get("k1").unwrap().key.expose(), &[1; 32]);
        assert_eq!(Keyring::from_toml(&ring.to_toml()).unwrap(), ring);

        let cases = [
            (text.replace("active = true", ""), KeyringError::Active(0)),
            (
                text.replacen("\nsecret", "\nactive = true\nsecret", 1),
                KeyringError::Active(2),
            ),
            (
                text.replace("\"k1\"", "\"k2\""),
                KeyringError::DuplicateId("k2".into()),
            ),
            (
                text.replace(&b64(1), &B64.encode([1; 16])),
                KeyringError::Field {
                    index: 0,
                    field: "secret",
                    reason: "must be the base64 of exactly 32 bytes",
                },
            ),
            (
                text.replace("\"k1\"", "\"k 1\""),
                KeyringError::Field {
                    index: 0,
                    field: "id",
                    reason: "use 1 to 64 of A-Z a-z 0-9 . _ -",
                },
            ),
            ("keys = []".to_owned(), KeyringError::Empty),
        ];
        for (bad, expected) in cases {
            assert_eq!(Keyring::from_toml(&bad), Err(expected), "{bad}");
        }
        assert!(matches!(
            Keyring::from_toml("[[keys]]\nid = 1"),
            Err(KeyringError::Toml(_))
        ));
    }

    #[test]
    fn environment_form() {
        let ring = Keyring::from_env_value(&format!("new:{},old:{}", b64(5), b64(6))).unwrap();
        assert_eq!(ring.active().id, "new");
        assert_eq!(ring.keys().len(), 2);
        assert!(Keyring::from_env_value("nocolon").is_err());
        assert!(Keyring::from_env_value("k:short").is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let ring = Keyring::from_env_value(&format!("k1:{}", b64(0xab))).unwrap();
        let shown = format!("{ring:?} {:?}", ring.active());
        assert!(shown.contains("k1") && shown.contains("<redacted>"));
        assert!(!shown.contains(&b64(0xab)) && !shown.contains("171"));
    }
}
