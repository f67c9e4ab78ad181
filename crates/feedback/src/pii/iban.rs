//! IBANs: country code, two check digits, the country's length, compact or in groups of 4
//! split by single spaces, and the ISO 13616 mod-97 check.

use super::scan::{glued_left, glued_right};
use super::{EntityType, Finding};

pub(crate) const CONFIDENCE: f32 = 1.0;

/// IBAN length per country (ISO 13616 registry).
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

fn length_of(country: [u8; 2]) -> Option<usize> {
    LENGTHS
        .iter()
        .find(|(code, _)| **code == country)
        .map(|&(_, len)| len)
}

pub(crate) fn scan(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let head = &bytes[i..i + 4];
        if !(head[0].is_ascii_alphabetic()
            && head[1].is_ascii_alphabetic()
            && head[2].is_ascii_digit()
            && head[3].is_ascii_digit())
        {
            i += 1;
            continue;
        }
        if let Some(end) =
            iban_at(bytes, i).filter(|&end| !glued_left(text, i) && !glued_right(text, end))
        {
            out.push(Finding::new(EntityType::IbanCode, i..end, CONFIDENCE));
            i = end;
        } else {
            i += 1;
        }
    }
}

/// The end of a valid IBAN starting at `start`, if there is one.
fn iban_at(bytes: &[u8], start: usize) -> Option<usize> {
    let country = [
        bytes[start].to_ascii_uppercase(),
        bytes[start + 1].to_ascii_uppercase(),
    ];
    let len = length_of(country)?;
    let grouped = bytes.get(start + 4) == Some(&b' ');
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut i = start;
    while n < len {
        if grouped && n > 0 && n % 4 == 0 {
            if bytes.get(i) != Some(&b' ') {
                return None;
            }
            i += 1;
        }
        let c = *bytes.get(i)?;
        if !c.is_ascii_alphanumeric() {
            return None;
        }
        chars[n] = c.to_ascii_uppercase();
        n += 1;
        i += 1;
    }
    // The number must end here, not run on into more letters or digits.
    if bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    mod97(&chars[..len]).then_some(i)
}

/// ISO 7064 mod 97-10 over the rearranged IBAN (BBAN, then country and check digits), with
/// letters as 10–35: valid when the remainder is 1.
pub(crate) fn mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 || !iban[2].is_ascii_digit() || !iban[3].is_ascii_digit() {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mod97_of_known_ibans() {
        assert!(mod97(b"DE89370400440532013000"));
        assert!(mod97(b"GB82WEST12345698765432"));
        assert!(!mod97(b"DE89370400440532013001"));
    }
}
