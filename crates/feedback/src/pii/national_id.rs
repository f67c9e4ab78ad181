//! National identifiers: US Social Security numbers and UK National Insurance numbers.

use super::phone::NOT_PHONE_WORDS;
use super::scan::{char_before, context_near, glued_left, glued_right, number, preceded_by};
use super::{EntityType, Finding, CONTEXT_BOOST};

pub(crate) const SSN_DASHED_CONFIDENCE: f32 = 0.85;
pub(crate) const SSN_UNDASHED_CONFIDENCE: f32 = 0.75;
pub(crate) const NINO_CONFIDENCE: f32 = 0.85;

const SSN_WORDS: &[&str] = &[
    "ssn",
    "social security",
    "ss#",
    "ss #",
    "ss no",
    "ss number",
];
const NINO_WORDS: &[&str] = &["national insurance", "nino", "ni number", "ni no", "ni #"];
const CONTEXT_WINDOW: usize = 48;

pub(crate) fn scan_ssn(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let Some((end, digits, separator)) = ssn_shape(bytes, start) else {
            continue;
        };
        if glued_left(text, start) || glued_right(text, end) || !ssn_valid(&digits) {
            continue;
        }
        let span = start..end;
        let context = context_near(text, &span, SSN_WORDS, CONTEXT_WINDOW, 16);
        // `Order #554239730` near an SSN word is still an order number.
        let identifier =
            char_before(text, start) == Some('#') || preceded_by(text, start, 2, NOT_PHONE_WORDS);
        let confidence = match (separator, context && !identifier) {
            (Some(b'-'), false) => SSN_DASHED_CONFIDENCE,
            (Some(b'-'), true) => SSN_DASHED_CONFIDENCE + CONTEXT_BOOST,
            (_, true) => SSN_UNDASHED_CONFIDENCE,
            (_, false) => continue,
        };
        i = end;
        out.push(Finding::new(EntityType::UsSsn, span, confidence));
    }
}

/// `AAA-GG-SSSS`, `AAA GG SSSS` or `AAAGGSSSS` at `start`: end, the 9 digits, the separator.
fn ssn_shape(bytes: &[u8], start: usize) -> Option<(usize, [u8; 9], Option<u8>)> {
    let digit = |i: usize| {
        bytes
            .get(i)
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
    };
    let mut digits = [0u8; 9];
    let separator = match bytes.get(start + 3) {
        Some(&s @ (b'-' | b' ')) => Some(s),
        _ => None,
    };
    let positions: [usize; 9] = if separator.is_some() {
        [0, 1, 2, 4, 5, 7, 8, 9, 10]
    } else {
        [0, 1, 2, 3, 4, 5, 6, 7, 8]
    };
    for (k, &p) in positions.iter().enumerate() {
        digits[k] = digit(start + p)?;
    }
    if let Some(s) = separator {
        if bytes.get(start + 6) != Some(&s) {
            return None;
        }
    }
    let end = start + positions[8] + 1;
    if digit(end).is_some() {
        return None;
    }
    Some((end, digits, separator))
}

/// Never-issued areas (000, 666, 900–999), group 00 and serial 0000 are not SSNs.
fn ssn_valid(digits: &[u8; 9]) -> bool {
    let area = number(&digits[..3]);
    let group = number(&digits[3..5]);
    let serial = number(&digits[5..]);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

pub(crate) fn scan_nino(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 9 <= bytes.len() {
        let (a, b) = (
            bytes[i].to_ascii_uppercase(),
            bytes[i + 1].to_ascii_uppercase(),
        );
        if !a.is_ascii_uppercase() || !b.is_ascii_uppercase() || !nino_prefix(a, b) {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let Some(end) = nino_end(bytes, start) else {
            continue;
        };
        if glued_left(text, start) || glued_right(text, end) {
            continue;
        }
        let span = start..end;
        let mut confidence = NINO_CONFIDENCE;
        if context_near(text, &span, NINO_WORDS, CONTEXT_WINDOW, 16) {
            confidence += CONTEXT_BOOST;
        }
        i = end;
        out.push(Finding::new(EntityType::UkNino, span, confidence));
    }
}

/// HMRC's rules for the two prefix letters.
fn nino_prefix(a: u8, b: u8) -> bool {
    !matches!(a, b'D' | b'F' | b'I' | b'Q' | b'U' | b'V')
        && !matches!(b, b'D' | b'F' | b'I' | b'O' | b'Q' | b'U' | b'V')
        && !matches!(
            [a, b],
            [b'B', b'G']
                | [b'G', b'B']
                | [b'K', b'N']
                | [b'N', b'K']
                | [b'N', b'T']
                | [b'T', b'N']
                | [b'Z', b'Z']
        )
}

/// `AB123456C`, `AB 12 34 56 C`, `AB 123456 C` and mixes of these: the end, if valid.
fn nino_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 2;
    let skip_space = |i: &mut usize| {
        if bytes.get(*i) == Some(&b' ') {
            *i += 1;
        }
    };
    skip_space(&mut i);
    let mut digits = 0;
    let mut spaced = None;
    while digits < 6 {
        if digits > 0 && digits % 2 == 0 && bytes.get(i) == Some(&b' ') {
            // Spaced pairs: all or nothing.
            if spaced == Some(false) {
                return None;
            }
            spaced = Some(true);
            i += 1;
        } else if digits > 0 && digits % 2 == 0 {
            if spaced == Some(true) {
                return None;
            }
            spaced = Some(false);
        }
        if !bytes.get(i)?.is_ascii_digit() {
            return None;
        }
        digits += 1;
        i += 1;
    }
    skip_space(&mut i);
    let suffix = bytes.get(i)?.to_ascii_uppercase();
    matches!(suffix, b'A'..=b'D').then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nino_shapes() {
        assert_eq!(nino_end(b"AB123456C", 0), Some(9));
        assert_eq!(nino_end(b"AB 12 34 56 C", 0), Some(13));
        assert_eq!(nino_end(b"AB 12 3456 C", 0), None);
        assert_eq!(nino_end(b"AB123456E", 0), None);
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_valid(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert!(!ssn_valid(&[6, 6, 6, 4, 5, 6, 7, 8, 9]));
        assert!(!ssn_valid(&[9, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert!(!ssn_valid(&[1, 2, 3, 0, 0, 6, 7, 8, 9]));
        assert!(!ssn_valid(&[1, 2, 3, 4, 5, 0, 0, 0, 0]));
    }
}
