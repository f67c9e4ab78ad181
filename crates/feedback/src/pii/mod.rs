//! Personal data in free text: what was found, where, and how sure we are.
//!
//! [`Detector`] finds personal data with hand-written scanners (no backtracking regexes on the
//! hot path) and validates every candidate before reporting it: e-mail structure, phone digit
//! counts per country, Luhn and issuer prefixes for payment cards, length per country and
//! mod-97 for IBANs, `std::net` parsing for IP addresses, the issuing rules of US SSNs and UK
//! National Insurance numbers. Tenants add their own patterns, an allow list and a deny list
//! ([`PiiConfig`]). [`redact`] replaces findings by a type tag or a keyed pseudonym, and
//! [`presidio_results`] / [`api_findings`] give the findings in Presidio's JSON shape or the
//! API's, with character offsets.
//!
//! Names of people and places need named-entity recognition (a statistical model), which is out
//! of scope here: such text is not detected.
//!
//! # Confidence
//!
//! | entity | reported when | confidence |
//! | --- | --- | --- |
//! | `EMAIL_ADDRESS` | local part, `@`, two or more domain labels, alphabetic TLD | 1.0 |
//! | `CREDIT_CARD` | 13–19 digits (compact, or groups split by one space or dash), issuer prefix and length of a known brand, Luhn | 1.0 |
//! | `IBAN_CODE` | country code, check digits, the country's length, compact or groups of 4, mod-97 = 1 | 1.0 |
//! | `PHONE_NUMBER` | `+CC` / `00CC` with a known country code and a valid national length | 0.85 |
//! | `PHONE_NUMBER` | national formats (NANP 3-3-4, trunk-`0` numbers of 10–12 digits in groups, Brazil `(AA) NNNNN-NNNN`, India `NNNNN NNNNN`) | 0.75 |
//! | `PHONE_NUMBER` | unformatted national numbers, only with a phone word nearby (`call`, `phone`, `mobile`, …) | 0.6 |
//! | `IP_ADDRESS` | IPv4 (four octets, not part of a longer dotted number, not after `version`/`build`) | 0.85 |
//! | `IP_ADDRESS` | IPv6 (full, compressed, IPv4-mapped; at least one decimal digit) | 0.9 |
//! | `US_SSN` | `AAA-GG-SSSS` with valid area, group and serial | 0.85 |
//! | `US_SSN` | `AAA GG SSSS` or `AAAGGSSSS`, only with an SSN word nearby (`ssn`, `social security`) | 0.75 |
//! | `UK_NINO` | two allowed prefix letters, 6 digits, suffix A–D, compact or spaced | 0.85 |
//! | deny list | exact value | 1.0 |
//! | tenant pattern | regex match | the tenant's confidence |
//!
//! A context word near a finding adds [`CONTEXT_BOOST`] (capped at 1.0): phone words for phone
//! numbers, `ssn`/`social security` for SSNs, `national insurance`/`nino` for UK NINOs, and the
//! tenant's words for its patterns. Overlapping findings are resolved by keeping the one with
//! the higher confidence, then the longer span, then the earlier start.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod card;
mod config;
mod detector;
mod email;
pub mod eval;
mod iban;
mod ip;
mod national_id;
mod phone;
mod redact;
mod scan;
mod view;

pub use config::{DenyEntry, PatternConfig, PiiConfig, PiiConfigError};
pub use detector::Detector;
pub use redact::{normalised_value, pseudonym, redact, Redaction};
pub use view::{api_findings, char_span, presidio_results, ApiFinding, PresidioResult};

/// Added to a finding's confidence (capped at 1.0) when a context word is near it.
pub const CONTEXT_BOOST: f32 = 0.1;

/// The kind of personal data a [`Finding`] is.
///
/// Names on the wire are Presidio's entity names, so pipelines built on Presidio's output can
/// switch without remapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    /// `EMAIL_ADDRESS`
    EmailAddress,
    /// `PHONE_NUMBER`: E.164 and common national formats.
    PhoneNumber,
    /// `CREDIT_CARD`: Luhn-checked payment card numbers.
    CreditCard,
    /// `IBAN_CODE`: mod-97-checked international bank account numbers.
    IbanCode,
    /// `IP_ADDRESS`: IPv4 and IPv6.
    IpAddress,
    /// `US_SSN`
    UsSsn,
    /// `UK_NINO`: UK National Insurance number.
    UkNino,
    /// A tenant-defined pattern, named by the tenant (upper case, `[A-Z0-9_]`).
    Custom(String),
}

impl EntityType {
    /// The built-in entity types, in the order of their names on the wire.
    pub const BUILT_IN: [EntityType; 7] = [
        EntityType::EmailAddress,
        EntityType::PhoneNumber,
        EntityType::CreditCard,
        EntityType::IbanCode,
        EntityType::IpAddress,
        EntityType::UsSsn,
        EntityType::UkNino,
    ];

    /// The Presidio entity name.
    pub fn as_str(&self) -> &str {
        match self {
            EntityType::EmailAddress => "EMAIL_ADDRESS",
            EntityType::PhoneNumber => "PHONE_NUMBER",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::IbanCode => "IBAN_CODE",
            EntityType::IpAddress => "IP_ADDRESS",
            EntityType::UsSsn => "US_SSN",
            EntityType::UkNino => "UK_NINO",
            EntityType::Custom(name) => name,
        }
    }

    /// The entity type with this wire name: a built-in one, or else [`EntityType::Custom`]
    /// (whose name [`Detector::new`] validates).
    ///
    /// ```
    /// use feedback::pii::EntityType;
    /// assert_eq!(EntityType::from_name("IBAN_CODE"), EntityType::IbanCode);
    /// assert_eq!(EntityType::from_name("ORDER_ID"), EntityType::Custom("ORDER_ID".into()));
    /// ```
    pub fn from_name(name: &str) -> EntityType {
        EntityType::BUILT_IN
            .iter()
            .find(|entity| entity.as_str() == name)
            .cloned()
            .unwrap_or_else(|| EntityType::Custom(name.to_owned()))
    }

    /// Whether this is one of the built-in recognisers' types.
    pub fn is_built_in(&self) -> bool {
        !matches!(self, EntityType::Custom(_))
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EntityType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EntityType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(EntityType::from_name(&name))
    }
}

/// One piece of personal data found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found.
    pub entity: EntityType,
    /// Byte range into the analysed text (always on `char` boundaries).
    pub span: Range<usize>,
    /// How sure the recogniser is, in `[0, 1]`.
    pub confidence: f32,
}

impl Finding {
    pub(crate) fn new(entity: EntityType, span: Range<usize>, confidence: f32) -> Finding {
        Finding {
            entity,
            span,
            confidence,
        }
    }
}
