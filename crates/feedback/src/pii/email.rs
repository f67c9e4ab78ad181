//! E-mail addresses, anchored on `@`.

use super::scan::{char_after, char_before};
use super::{EntityType, Finding};

pub(crate) const CONFIDENCE: f32 = 1.0;

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-') || is_intl_letter(c)
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-') || is_intl_letter(c)
}

/// Internationalised addresses (RFC 6531) may hold any letter or digit.
fn is_intl_letter(c: char) -> bool {
    !c.is_ascii() && c.is_alphanumeric()
}

pub(crate) fn scan(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = bytes[from..].iter().position(|&b| b == b'@') {
        let at = from + offset;
        from = at + 1;
        if let Some(span) = address_at(text, at) {
            from = span.end;
            out.push(Finding::new(EntityType::EmailAddress, span, CONFIDENCE));
        }
    }
}

fn address_at(text: &str, at: usize) -> Option<std::ops::Range<usize>> {
    // Local part: left of `@`, without leading dots.
    let mut start = at;
    while let Some(c) = char_before(text, start) {
        if !is_local_char(c) {
            break;
        }
        start -= c.len_utf8();
    }
    while text.as_bytes().get(start) == Some(&b'.') {
        start += 1;
    }
    let local = text.get(start..at)?;
    if local.is_empty() || local.len() > 64 || local.ends_with('.') || local.contains("..") {
        return None;
    }
    // Domain: right of `@`, without trailing dots or dashes (end of sentence).
    let mut end = at + 1;
    while let Some(c) = char_after(text, end) {
        if !is_domain_char(c) {
            break;
        }
        end += c.len_utf8();
    }
    while end > at + 1 && matches!(text.as_bytes()[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = text.get(at + 1..end)?;
    if domain.len() > 253 || char_after(text, end) == Some('@') {
        return None;
    }
    let mut labels = 0;
    let mut last = "";
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return None;
        }
        labels += 1;
        last = label;
    }
    let tld_ok = (last.chars().count() >= 2 && last.chars().all(char::is_alphabetic))
        || (last.len() > 4
            && last
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
    (labels >= 2 && tld_ok).then_some(start..end)
}
