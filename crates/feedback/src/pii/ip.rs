//! IP addresses: candidates found by their shape, confirmed by `std::net` parsing.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::scan::{char_before, glued_left, glued_right, preceding_word};
use super::{EntityType, Finding};

pub(crate) const V4_CONFIDENCE: f32 = 0.85;
pub(crate) const V6_CONFIDENCE: f32 = 0.9;

/// Words after which a dotted quad is a version, not an address.
const VERSION_WORDS: &[&str] = &[
    "version", "ver", "v", "build", "release", "firmware", "os", "kernel", "patch",
];

pub(crate) fn scan_v4(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        // The whole dotted run, so `1.2.3.4.5` is seen as one number.
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let mut end = i;
        while end > start && bytes[end - 1] == b'.' {
            end -= 1;
        }
        let candidate = &text[start..end];
        if candidate.bytes().filter(|&b| b == b'.').count() != 3
            || candidate.parse::<Ipv4Addr>().is_err()
            || char_before(text, start) == Some('.')
            || glued_left(text, start)
            || (glued_right(text, end) && !port_or_prefix(bytes, end))
        {
            continue;
        }
        let (word, _) = preceding_word(text, start);
        if VERSION_WORDS.iter().any(|w| w.eq_ignore_ascii_case(word)) {
            continue;
        }
        out.push(Finding::new(
            EntityType::IpAddress,
            start..end,
            V4_CONFIDENCE,
        ));
    }
}

/// `10.0.0.1:8080` and `10.0.0.0/24` are addresses followed by a port or a prefix length.
fn port_or_prefix(bytes: &[u8], end: usize) -> bool {
    matches!(bytes.get(end), Some(b':' | b'/'))
        && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
}

fn is_v6_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

pub(crate) fn scan_v6(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = bytes[from..].iter().position(|&b| b == b':') {
        let colon = from + offset;
        let mut start = colon;
        while start > 0 && is_v6_char(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = colon;
        while end < bytes.len() && is_v6_char(bytes[end]) {
            end += 1;
        }
        from = end.max(colon + 1);
        // A single leading colon belongs to the text (`addr:fe80::1`), a double one to `::1`.
        if bytes[start] == b':' && bytes.get(start + 1) != Some(&b':') {
            start += 1;
        }
        if let Some(end) = v6_end(text, start, end) {
            if !glued_left(text, start) {
                out.push(Finding::new(
                    EntityType::IpAddress,
                    start..end,
                    V6_CONFIDENCE,
                ));
            }
        }
    }
}

/// The end of an IPv6 address in `text[start..end]`, allowing for sentence punctuation
/// (`…fe80::1.` or `…2001:db8::1:`) glued to its end.
fn v6_end(text: &str, start: usize, end: usize) -> Option<usize> {
    let candidate = text.get(start..end)?;
    let colons = candidate.bytes().filter(|&b| b == b':').count();
    // At least one decimal digit: `face::add` or `dead::beef` are words more often than
    // addresses.
    if colons < 2 || !candidate.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut stop = end;
    for _ in 0..3 {
        if stop <= start {
            return None;
        }
        if text[start..stop].parse::<Ipv6Addr>().is_ok() && !glued_right(text, stop) {
            return Some(stop);
        }
        if !matches!(text.as_bytes()[stop - 1], b'.' | b':') {
            return None;
        }
        stop -= 1;
    }
    None
}
