//! Personal data in free text: what was found, where, and how sure we are.

use std::fmt;
use std::ops::Range;

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
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
