//! Redaction: findings replaced by a type tag or a keyed, consistent pseudonym.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{EntityType, Finding};

/// Hex digits of the HMAC kept in a pseudonym: 48 bits, so two different values of one type
/// collide with probability about n²/2⁴⁹ (under 2·10⁻³ for a million distinct values).
const PSEUDONYM_HEX: usize = 12;

/// How [`redact`] replaces a finding.
#[derive(Clone, PartialEq, Eq)]
pub enum Redaction {
    /// `<EMAIL_ADDRESS>`, as Presidio's anonymizer's default `replace` operator writes it.
    Tag,
    /// `<EMAIL_ADDRESS_3f2a9c1b04d7>`: the first 12 hex digits of HMAC-SHA256 under the
    /// tenant's `key` over the entity name, a zero byte and the normalised value
    /// ([`normalised_value`]). The same value gives the same pseudonym in every item of a
    /// tenant, so analyses can still count and join; another tenant's key gives another one.
    Pseudonym {
        /// The tenant's pseudonymisation key (secret; at least 32 random bytes advised).
        key: Vec<u8>,
    },
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Redaction::Tag => f.write_str("Tag"),
            // Never print the key.
            Redaction::Pseudonym { .. } => f.write_str("Pseudonym { key: <redacted> }"),
        }
    }
}

/// `text` with every finding replaced per `redaction`.
///
/// `findings` should be [`Detector::detect`](super::Detector::detect)'s output (sorted,
/// non-overlapping). Any other list is still handled without panicking: findings out of
/// range or off `char` boundaries are skipped, and overlapping ones are merged into one
/// replacement (named after the first), so no part of a finding survives.
///
/// ```
/// use feedback::pii::{redact, Detector, Redaction};
///
/// let text = "Mail me at Jo.Doe@Example.com or jo.doe@example.com";
/// let findings = Detector::default().detect(text);
/// assert_eq!(redact(text, &findings, &Redaction::Tag), "Mail me at <EMAIL_ADDRESS> or <EMAIL_ADDRESS>");
/// let key = Redaction::Pseudonym { key: b"tenant-a key".to_vec() };
/// let out = redact(text, &findings, &key);
/// // One address (e-mail is compared in lower case), one pseudonym.
/// let tags: Vec<&str> = out.split(' ').filter(|w| w.starts_with('<')).collect();
/// assert_eq!(tags.len(), 2);
/// assert_eq!(tags[0], tags[1]);
/// ```
pub fn redact(text: &str, findings: &[Finding], redaction: &Redaction) -> String {
    if !findings
        .windows(2)
        .all(|w| w[0].span.start <= w[1].span.start)
    {
        let mut sorted = findings.to_vec();
        sorted.sort_by_key(|finding| finding.span.start);
        return redact(text, &sorted, redaction);
    }
    let mac = match redaction {
        Redaction::Tag => None,
        Redaction::Pseudonym { key } => Hmac::<Sha256>::new_from_slice(key).ok(),
    };
    let mut out = String::with_capacity(text.len() + 16 * findings.len());
    let mut written = 0;
    // The replacement being built: its finding and its (possibly merged) end.
    let mut pending: Option<(&Finding, usize)> = None;
    for finding in findings {
        let span = &finding.span;
        if span.start >= span.end
            || span.end > text.len()
            || !text.is_char_boundary(span.start)
            || !text.is_char_boundary(span.end)
        {
            continue;
        }
        match pending {
            Some((first, end)) if span.start < end => pending = Some((first, end.max(span.end))),
            _ => {
                if let Some((first, end)) = pending.replace((finding, span.end)) {
                    flush(text, &mut out, &mut written, first, end, mac.as_ref());
                }
            }
        }
    }
    if let Some((first, end)) = pending {
        flush(text, &mut out, &mut written, first, end, mac.as_ref());
    }
    out.push_str(&text[written..]);
    out
}

fn flush(
    text: &str,
    out: &mut String,
    written: &mut usize,
    finding: &Finding,
    end: usize,
    mac: Option<&Hmac<Sha256>>,
) {
    out.push_str(&text[*written..finding.span.start]);
    let name = finding.entity.as_str();
    match mac {
        None => {
            out.push('<');
            out.push_str(name);
            out.push('>');
        }
        Some(mac) => {
            let value = &text[finding.span.clone()];
            out.push('<');
            out.push_str(name);
            out.push('_');
            push_pseudonym(out, mac.clone(), &finding.entity, value);
            out.push('>');
        }
    }
    *written = end;
}

fn push_pseudonym(out: &mut String, mut mac: Hmac<Sha256>, entity: &EntityType, value: &str) {
    mac.update(entity.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(normalised_value(entity, value).as_bytes());
    let digest = mac.finalize().into_bytes();
    for byte in digest.iter().take(PSEUDONYM_HEX / 2) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
}

/// The pseudonym of `value` as `entity` under `key`: the hex part of what [`redact`] writes
/// for [`Redaction::Pseudonym`].
///
/// ```
/// use feedback::pii::{pseudonym, EntityType};
/// let a = pseudonym(b"key-a", &EntityType::CreditCard, "4111 1111 1111 1111");
/// assert_eq!(a, pseudonym(b"key-a", &EntityType::CreditCard, "4111-1111-1111-1111"));
/// assert_ne!(a, pseudonym(b"key-b", &EntityType::CreditCard, "4111 1111 1111 1111"));
/// ```
pub fn pseudonym(key: &[u8], entity: &EntityType, value: &str) -> String {
    let mut out = String::with_capacity(PSEUDONYM_HEX);
    if let Ok(mac) = Hmac::<Sha256>::new_from_slice(key) {
        push_pseudonym(&mut out, mac, entity, value);
    }
    out
}

/// The form of a value that pseudonyms are computed over, so that one value written in
/// different ways gets one pseudonym: lower case for e-mail addresses; digits only for phone
/// numbers and cards; upper-case letters and digits for IBANs, SSNs and UK NINOs; the
/// canonical text form for IP addresses (`2001:DB8:0:0::1` → `2001:db8::1`); the value as is
/// for tenant patterns and deny-list entries.
pub fn normalised_value<'a>(entity: &EntityType, value: &'a str) -> Cow<'a, str> {
    match entity {
        EntityType::EmailAddress => Cow::Owned(value.to_lowercase()),
        EntityType::PhoneNumber | EntityType::CreditCard => {
            Cow::Owned(value.chars().filter(char::is_ascii_digit).collect())
        }
        EntityType::IbanCode | EntityType::UsSsn | EntityType::UkNino => Cow::Owned(
            value
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        ),
        EntityType::IpAddress => match value.parse::<IpAddr>() {
            Ok(ip) => Cow::Owned(ip.to_string()),
            Err(_) => Cow::Borrowed(value),
        },
        EntityType::Custom(_) => Cow::Borrowed(value),
    }
}
