//! The seam between feedback items and custody of their original text: sealing at ingest,
//! opening for processing and clear-text reads, and data-key rotation. The original text is
//! stored only as this module's output.
//!
//! Until the custody service (per-tenant AES-256-GCM data keys wrapped by the keyring) is
//! available, this module carries a stand-in that encodes without encrypting, under the key id
//! [`STAND_IN_KEY_ID`]; it is replaced wholesale when custody is.

use base64::Engine as _;

/// The key id of the stand-in encoding.
pub const STAND_IN_KEY_ID: &str = "stand-in";

/// Why a text could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The stored envelope cannot be read, or its key is unknown or wrong.
    #[error("sealed text cannot be opened: {0}")]
    Open(String),
    /// Custody failed (storage, keyring).
    #[error("custody: {0}")]
    Custody(String),
}

/// A text sealed for storage: the data key's id and the envelope as base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedText {
    pub key_id: String,
    pub sealed: String,
}

/// The field name bound into every feedback text envelope.
pub const TEXT_FIELD: &str = "text";

/// Seals and opens feedback texts.
#[derive(Debug, Clone, Default)]
pub struct TextSealer {}

impl TextSealer {
    /// Seals `text` of `item_id` for `tenant_id` under the tenant's active data key.
    pub async fn seal(
        &self,
        _tenant_id: &str,
        _item_id: &str,
        text: &str,
    ) -> Result<SealedText, SealError> {
        Ok(SealedText {
            key_id: STAND_IN_KEY_ID.to_owned(),
            sealed: base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
        })
    }

    /// Opens what [`TextSealer::seal`] sealed.
    pub async fn open(
        &self,
        _tenant_id: &str,
        _item_id: &str,
        _key_id: &str,
        sealed: &str,
    ) -> Result<String, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|e| SealError::Open(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| SealError::Open(e.to_string()))
    }

    /// Makes a new data key the tenant's active one; returns its id.
    pub async fn rotate(&self, _tenant_id: &str) -> Result<String, SealError> {
        Ok(STAND_IN_KEY_ID.to_owned())
    }

    /// The tenant's active data key id.
    pub async fn active_key(&self, _tenant_id: &str) -> Result<String, SealError> {
        Ok(STAND_IN_KEY_ID.to_owned())
    }

    /// Retires a data key no item is sealed under any more.
    pub async fn retire(&self, _tenant_id: &str, _key_id: &str) -> Result<(), SealError> {
        Ok(())
    }
}
