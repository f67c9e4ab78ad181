//! A tenant's PII settings, as read from its TOML configuration.

use serde::{Deserialize, Serialize};

use super::EntityType;

/// A tenant's PII detection settings.
///
/// Every field has a default: all built-in entity types enabled, no tenant patterns, empty
/// allow and deny lists, minimum confidence 0.5.
///
/// ```
/// use feedback::pii::{Detector, PiiConfig};
///
/// let config: PiiConfig = toml::from_str(r#"
///     entities = ["EMAIL_ADDRESS", "PHONE_NUMBER"]
///     allow_list = ["support@example.com"]
///     deny_list = ["Project Falcon", { value = "ACME-7", entity = "CODENAME" }]
///
///     [[patterns]]
///     name = "ORDER_ID"
///     regex = 'ORD-\d{4}-\d{6}'
///     confidence = 0.9
/// "#).unwrap();
/// let detector = Detector::new(&config).unwrap();
/// let found = detector.detect("ORD-2024-558812: mail jo@example.org, not support@example.com");
/// let names: Vec<&str> = found.iter().map(|f| f.entity.as_str()).collect();
/// assert_eq!(names, ["ORDER_ID", "EMAIL_ADDRESS"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiiConfig {
    /// The built-in entity types to detect (Presidio names).
    pub entities: Vec<EntityType>,
    /// Tenant-defined patterns.
    pub patterns: Vec<PatternConfig>,
    /// Exact values never reported (e.g. the tenant's own support address).
    pub allow_list: Vec<String>,
    /// Exact values always reported.
    pub deny_list: Vec<DenyEntry>,
    /// Findings below this confidence are dropped.
    pub min_confidence: f32,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            entities: EntityType::BUILT_IN.to_vec(),
            patterns: Vec::new(),
            allow_list: Vec::new(),
            deny_list: Vec::new(),
            min_confidence: 0.5,
        }
    }
}

/// A tenant-defined pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Entity name reported for matches: upper case letters, digits and `_`, starting with a
    /// letter (a built-in name adds a pattern to that type).
    pub name: String,
    /// The regular expression (Rust `regex` syntax: no look-around or back-references, linear
    /// time).
    pub regex: String,
    /// Confidence of a match, in `[0, 1]`.
    pub confidence: f32,
    /// Words that raise the confidence by [`CONTEXT_BOOST`](super::CONTEXT_BOOST) when found
    /// within 48 bytes before or 24 after a match.
    #[serde(default)]
    pub context: Vec<String>,
}

/// A deny-list entry: a bare value (reported as `DENY_LIST`) or a value with an entity name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DenyEntry {
    /// A value reported as `DENY_LIST`.
    Value(String),
    /// A value reported under `entity` (default `DENY_LIST`).
    Named {
        /// The exact value.
        value: String,
        /// The entity name to report.
        #[serde(default)]
        entity: Option<String>,
    },
}

impl DenyEntry {
    /// The exact value.
    pub fn value(&self) -> &str {
        match self {
            DenyEntry::Value(value) | DenyEntry::Named { value, .. } => value,
        }
    }

    /// The entity name to report.
    pub fn entity_name(&self) -> &str {
        match self {
            DenyEntry::Named {
                entity: Some(name), ..
            } => name,
            _ => "DENY_LIST",
        }
    }
}

/// Why a [`PiiConfig`] was refused; `field` is the path of the offending setting within the
/// PII section (`patterns[2].regex`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PiiConfigError {
    /// An `entities` entry is not a built-in type.
    #[error("{field}: unknown entity type {name:?} (built-in types: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, US_SSN, UK_NINO)")]
    UnknownEntity {
        /// Path of the setting.
        field: String,
        /// The name given.
        name: String,
    },
    /// An entity name is not upper case letters, digits and `_` starting with a letter.
    #[error("{field}: invalid entity name {name:?} (upper case letters, digits and '_', starting with a letter)")]
    InvalidName {
        /// Path of the setting.
        field: String,
        /// The name given.
        name: String,
    },
    /// A pattern does not compile.
    #[error("{field}: invalid regex: {message}")]
    InvalidRegex {
        /// Path of the setting.
        field: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A pattern matches the empty string, which would report nothing useful everywhere.
    #[error("{field}: the regex matches the empty string")]
    EmptyMatch {
        /// Path of the setting.
        field: String,
    },
    /// A confidence outside `[0, 1]`.
    #[error("{field}: {value} is outside [0, 1]")]
    OutOfRange {
        /// Path of the setting.
        field: String,
        /// The value given.
        value: f32,
    },
    /// An empty value where one is needed.
    #[error("{field}: must not be empty")]
    Empty {
        /// Path of the setting.
        field: String,
    },
    /// The deny list's automaton could not be built.
    #[error("deny_list: {message}")]
    DenyList {
        /// The builder's message.
        message: String,
    },
}

pub(crate) fn valid_entity_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}
