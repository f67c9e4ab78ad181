//! Payment card numbers: 13–19 digits, compact or in groups split by one space or dash (the
//! same separator throughout, first group of 4), a known issuer prefix for the length, Luhn.

use super::scan::{after_iban_head, char_before, glued_left, glued_right, number, Digits};
use super::{EntityType, Finding};

pub(crate) const CONFIDENCE: f32 = 1.0;

pub(crate) fn scan(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        // Part of a word or a longer number (`visa13`, `ORD-2024`), an international phone
        // number (`+4915…`) or an account number (`NO88 0451 …`): skip its digits only, so
        // that a card right after it is still seen.
        if glued_left(text, start)
            || char_before(text, start) == Some('+')
            || after_iban_head(bytes, start)
        {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        let (end, digits, groups_ok) = token(bytes, start);
        i = end.max(start + 1);
        if groups_ok
            && (13..=19).contains(&digits.len())
            && !glued_right(text, end)
            && known_issuer(digits.as_slice())
            && luhn(digits.as_slice())
        {
            out.push(Finding::new(EntityType::CreditCard, start..end, CONFIDENCE));
        }
    }
}

/// The digit token at `start`: its end, its digits, and whether its grouping is a card's.
fn token(bytes: &[u8], start: usize) -> (usize, Digits, bool) {
    let mut digits = Digits::new();
    let mut separator = None;
    let mut groups = 0usize;
    let mut group_ok = true;
    let mut i = start;
    let mut end;
    loop {
        let group_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            if !digits.push(bytes[i] - b'0') {
                // Far longer than a card: consume the rest of the run and give up.
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                return (i, digits, false);
            }
            i += 1;
        }
        let len = i - group_start;
        groups += 1;
        end = i;
        // Groups after the first: 3 to 6 digits, the last one 1 to 6.
        if groups == 1 {
            group_ok &= len >= 3;
        } else {
            group_ok &= (1..=6).contains(&len);
        }
        let next = bytes.get(i).copied();
        let continues = matches!(next, Some(b' ' | b'-'))
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            && separator.is_none_or(|s| Some(s) == next);
        if !continues {
            break;
        }
        separator = next;
        i += 1;
    }
    // A grouped number starts with a group of 4 (Amex, Visa, Mastercard, Discover, …), except
    // 14-digit Diners cards printed 4-6-4, which still start with 4.
    if groups > 1 {
        let first_len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        group_ok &= first_len == 4;
    }
    (end, digits, group_ok)
}

fn known_issuer(digits: &[u8]) -> bool {
    let len = digits.len();
    let prefix = |n: usize| number(&digits[..n.min(len)]);
    let p1 = prefix(1);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    // Visa
    (p1 == 4 && matches!(len, 13 | 16 | 19))
        // Mastercard, including the 2-series
        || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16)
        // American Express
        || (matches!(p2, 34 | 37) && len == 15)
        // Discover
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6))
            && (16..=19).contains(&len))
        // Diners Club International
        || (((300..=305).contains(&p3) || p3 == 309 || matches!(p2, 36 | 38 | 39))
            && (14..=19).contains(&len))
        // JCB
        || ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
        // UnionPay
        || (p2 == 62 && (16..=19).contains(&len))
        // Maestro
        || ((p2 == 50 || (56..=69).contains(&p2)) && (13..=19).contains(&len))
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(s: &str) -> Vec<u8> {
        s.bytes().map(|b| b - b'0').collect()
    }

    #[test]
    fn luhn_accepts_test_cards_and_rejects_a_changed_digit() {
        assert!(luhn(&digits("4111111111111111")));
        assert!(luhn(&digits("378282246310005")));
        assert!(!luhn(&digits("4111111111111112")));
    }

    #[test]
    fn issuers_by_prefix_and_length() {
        assert!(known_issuer(&digits("2221000000000009")));
        assert!(known_issuer(&digits("378282246310005")));
        assert!(!known_issuer(&digits("37828224631000")));
        assert!(!known_issuer(&digits("1111111111111117")));
    }
}
