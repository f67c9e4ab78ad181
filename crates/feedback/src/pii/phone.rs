//! Phone numbers: international (`+CC …`, `00CC …`) with the country's national length, and
//! national formats of the US/Canada (NANP), the UK, Germany, France, India, Australia, Brazil
//! and Japan.
//!
//! A candidate is the whole run of digit groups joined by one space, dash, dot or slash, with
//! optional parentheses around a group (`+44 (0)20 7946 0958`, `(555) 123-4567`). The whole run
//! is judged at once, so a 22-digit tracking number or a dotted version is never cut into a
//! phone-sized piece.

use super::scan::{
    after_iban_head, char_before, context_near, glued_left, glued_right, preceded_by, Digits,
};
use super::{EntityType, Finding, CONTEXT_BOOST};

pub(crate) const INTERNATIONAL_CONFIDENCE: f32 = 0.85;
pub(crate) const NATIONAL_CONFIDENCE: f32 = 0.75;
pub(crate) const UNFORMATTED_CONFIDENCE: f32 = 0.6;

/// Words that make a nearby number more likely a phone number.
const PHONE_WORDS: &[&str] = &[
    "phone",
    "telephone",
    "tel",
    "call",
    "mobile",
    "cell",
    "cellphone",
    "number",
    "contact",
    "reach",
    "whatsapp",
    "text",
    "sms",
    "fax",
    "ring",
    "landline",
    "hotline",
    "handy",
    "telefon",
    "telefone",
    "téléphone",
    "portable",
    "celular",
    "numéro",
    "número",
];
/// Words that must be near an unformatted national number for it to count (not `number` or
/// `contact`: "contact number" is common, "order number" too).
const UNFORMATTED_WORDS: &[&str] = &[
    "phone",
    "telephone",
    "tel",
    "call",
    "mobile",
    "cell",
    "cellphone",
    "reach",
    "whatsapp",
    "text",
    "sms",
    "fax",
    "ring",
    "landline",
    "hotline",
    "handy",
    "telefon",
    "telefone",
    "téléphone",
    "portable",
    "celular",
];
/// Words among the two before a number that make it an identifier of something else (also
/// used for SSN-shaped numbers).
pub(crate) const NOT_PHONE_WORDS: &[&str] = &[
    "order",
    "invoice",
    "tracking",
    "ref",
    "reference",
    "account",
    "acct",
    "ticket",
    "case",
    "sku",
    "id",
    "serial",
    "item",
    "po",
    "receipt",
    "booking",
    "confirmation",
    "transaction",
];
const CONTEXT_BEFORE: usize = 48;
const CONTEXT_AFTER: usize = 24;
const MAX_GROUPS: usize = 10;

#[derive(Clone, Copy)]
struct Token {
    end: usize,
    plus: bool,
    digits: Digits,
    groups: [u8; MAX_GROUPS],
    group_count: usize,
    /// Whether the first group is in parentheses.
    first_paren: bool,
    /// Whether a `(0)` group appears (trunk prefix shown inside an international number).
    zero_paren: bool,
    slash: bool,
    dot: bool,
    /// The separator before the last group.
    last_separator: u8,
    too_long: bool,
    /// The separator before each group (0 for none) and the byte end of each group.
    separators: [u8; MAX_GROUPS],
    ends: [usize; MAX_GROUPS],
}

impl Token {
    fn groups(&self) -> &[u8] {
        &self.groups[..self.group_count]
    }

    /// The token cut to its first `count` groups.
    fn prefix(&self, count: usize) -> Token {
        let mut token = *self;
        if count >= self.group_count || count == 0 {
            return token;
        }
        token.group_count = count;
        token
            .digits
            .truncate(self.groups[..count].iter().map(|&g| usize::from(g)).sum());
        token.end = self.ends[count - 1];
        token.last_separator = self.separators[count - 1];
        token.slash = self.separators[1..count].contains(&b'/');
        token.dot = self.separators[1..count].contains(&b'.');
        token.too_long = token.digits.len() > 15;
        token
    }
}

pub(crate) fn scan(text: &str, out: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let starts = b.is_ascii_digit()
            || (b == b'+' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
            || (b == b'('
                && bytes
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == b'+'));
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        if glued_left(text, start) {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        let Some(token) = parse(bytes, start) else {
            i += 1;
            continue;
        };
        i = token.end.max(start + 1);
        // The whole run first; then, when it is no phone number, shorter runs ending before a
        // space (`0678708594 5 stars`, two numbers in a row), never cut at a dash or a dot.
        let mut count = token.group_count;
        while count > 0 {
            let candidate = token.prefix(count);
            if let Some(confidence) = judge(text, start, &candidate) {
                out.push(Finding::new(
                    EntityType::PhoneNumber,
                    start..candidate.end,
                    confidence,
                ));
                i = candidate.end;
                break;
            }
            if token.separators[count - 1] != b' ' {
                break;
            }
            count -= 1;
        }
    }
}

fn parse(bytes: &[u8], start: usize) -> Option<Token> {
    let mut token = Token {
        end: start,
        plus: false,
        digits: Digits::new(),
        groups: [0; MAX_GROUPS],
        group_count: 0,
        first_paren: false,
        zero_paren: false,
        slash: false,
        dot: false,
        last_separator: 0,
        too_long: false,
        separators: [0; MAX_GROUPS],
        ends: [0; MAX_GROUPS],
    };
    let mut i = start;
    if bytes[i] == b'+' {
        token.plus = true;
        i += 1;
    }
    let mut separator = 0u8;
    loop {
        let paren = bytes.get(i) == Some(&b'(');
        let group_start = if paren { i + 1 } else { i };
        let mut j = group_start;
        if paren && bytes.get(j) == Some(&b'+') && token.group_count == 0 && !token.plus {
            token.plus = true;
            j += 1;
        }
        let digits_start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            if !token.digits.push(bytes[j] - b'0') {
                token.too_long = true;
            }
            j += 1;
        }
        let len = j - digits_start;
        if len == 0 || (paren && bytes.get(j) != Some(&b')')) {
            // Not a group: the token ends before it (or there is no token at all).
            break;
        }
        if paren {
            j += 1;
            if token.group_count == 0 {
                token.first_paren = true;
            }
            if len == 1 && bytes[digits_start] == b'0' {
                token.zero_paren = true;
            }
        }
        if token.group_count == MAX_GROUPS {
            token.too_long = true;
        } else {
            token.groups[token.group_count] = u8::try_from(len).unwrap_or(u8::MAX);
            token.separators[token.group_count] = separator;
            token.ends[token.group_count] = j;
            token.group_count += 1;
        }
        token.last_separator = separator;
        match separator {
            b'/' => token.slash = true,
            b'.' => token.dot = true,
            _ => {}
        }
        token.end = j;
        i = j;
        // What joins the next group: one separator, or nothing after a closing parenthesis
        // (`(0)20`) or before an opening one (`+44(0)20`).
        let next = bytes.get(i).copied();
        let after = bytes.get(i + 1).copied();
        let group_follows = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_digit() || b == b'(');
        if matches!(next, Some(b' ' | b'-' | b'.' | b'/')) && group_follows(after) {
            separator = next.unwrap_or(b' ');
            i += 1;
        } else if (paren && next.is_some_and(|b| b.is_ascii_digit())) || next == Some(b'(') {
            separator = 0;
        } else {
            break;
        }
    }
    (token.group_count > 0).then_some(token)
}

fn judge(text: &str, start: usize, token: &Token) -> Option<f32> {
    let digits = token.digits.as_slice();
    let n = digits.len();
    if token.too_long || !(7..=15).contains(&n) {
        return None;
    }
    if glued_right(text, token.end)
        || char_before(text, start).is_some_and(|c| "#$€£¥№+*=".contains(c))
    {
        return None;
    }
    // Digits of an IBAN-like account number, valid or not: `NO88 0451 4852 633`.
    if after_iban_head(text.as_bytes(), start) {
        return None;
    }
    let span = start..token.end;
    let groups = token.groups();
    let formatted = groups.len() > 1;
    let boost = || {
        if context_near(text, &span, PHONE_WORDS, CONTEXT_BEFORE, CONTEXT_AFTER) {
            CONTEXT_BOOST
        } else {
            0.0
        }
    };

    // International: `+CC …` or `00CC …`.
    if token.plus || (digits.starts_with(&[0, 0]) && digits.get(2).is_some_and(|&d| d != 0)) {
        let international = if token.plus { digits } else { &digits[2..] };
        if token.slash || !international_valid(international, token.zero_paren) {
            return None;
        }
        return Some(INTERNATIONAL_CONFIDENCE + boost());
    }

    // `Serial number 0574-6833-7295`, `order no. 0123 456 789`.
    if preceded_by(text, start, 2, NOT_PHONE_WORDS) {
        return None;
    }

    if !formatted {
        let plausible = (n == 10 || n == 11) && digits[0] == 0 && digits[1] != 0
            || n == 10 && nanp_valid(digits)
            || n == 11 && digits[0] == 1 && nanp_valid(&digits[1..])
            || n == 10 && digits[0] >= 6;
        let context = context_near(
            text,
            &span,
            UNFORMATTED_WORDS,
            CONTEXT_BEFORE,
            CONTEXT_AFTER,
        );
        return (plausible && context).then_some(UNFORMATTED_CONFIDENCE);
    }

    // A slash only in German `0171/1234567`.
    if token.slash && !(groups.len() == 2 && digits[0] == 0 && groups[1] >= 5) {
        return None;
    }
    // Four dotted groups of up to three digits read as an IP address, not a phone number.
    if token.dot && groups.len() == 4 && groups.iter().all(|&g| g <= 3) {
        return None;
    }
    let nanp = (groups == [3, 3, 4] && nanp_valid(digits))
        || (groups == [1, 3, 3, 4] && digits[0] == 1 && nanp_valid(&digits[1..]));
    let nanp = nanp && (!token.first_paren || groups[0] == 3);
    // UK, DE, FR, AU, JP, IN landlines, BR with the trunk 0: `0` then the area code.
    let trunk = digits[0] == 0
        && digits[1] != 0
        && (10..=12).contains(&n)
        && (2..=6).contains(&groups[0])
        && groups[1..].iter().all(|&g| (2..=8).contains(&g));
    // Brazil: `(11) 91234-5678`, `(21) 3456-7890`, `11 91234-5678`.
    let mobile = groups.len() == 3 && groups[1..] == [5, 4] && digits[2] == 9;
    let landline = groups.len() == 3 && groups[1..] == [4, 4];
    let brazil = groups[0] == 2
        && digits[0] != 0
        && digits[1] != 0
        && (token.first_paren && (mobile || landline) || mobile && token.last_separator == b'-');
    // India: mobile numbers `98765 43210`.
    let india = groups == [5, 5] && digits[0] >= 6 && !token.first_paren;
    (nanp || trunk || brazil || india).then(|| NATIONAL_CONFIDENCE + boost())
}

/// Area code and exchange of a 10-digit NANP number: neither starts with 0 or 1, and the area
/// code is not an N11 service code.
fn nanp_valid(digits: &[u8]) -> bool {
    digits.len() == 10 && digits[0] >= 2 && digits[3] >= 2 && !(digits[1] == 1 && digits[2] == 1)
}

/// Country code (ITU-T E.164 assignments) and the national number's length.
fn international_valid(digits: &[u8], zero_paren: bool) -> bool {
    let Some(cc_len) = country_code_len(digits) else {
        return false;
    };
    let mut national = &digits[cc_len..];
    if zero_paren && national.first() == Some(&0) {
        national = &national[1..];
    }
    let cc = super::scan::number(&digits[..cc_len]);
    let (min, max) = national_length(cc);
    let len = national.len();
    national.first().is_some_and(|&d| d != 0)
        && (min..=max).contains(&len)
        && cc_len + len <= 15
        && (cc != 1 || nanp_valid(national))
}

fn country_code_len(digits: &[u8]) -> Option<usize> {
    const TWO: &[u8] = &[
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
        56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
    ];
    // Two-digit prefixes of the three-digit codes.
    const THREE: &[u8] = &[
        21, 22, 23, 24, 25, 26, 29, 35, 37, 38, 42, 50, 59, 67, 68, 69, 85, 88, 96, 97, 99,
    ];
    let first = *digits.first()?;
    if first == 1 || first == 7 {
        return Some(1);
    }
    let two = first * 10 + *digits.get(1)?;
    if TWO.contains(&two) {
        Some(2)
    } else if THREE.contains(&two) && digits.len() > 3 {
        Some(3)
    } else {
        None
    }
}

/// The national significant number's length range per country code (ITU-T E.164 national
/// numbering plans); other codes: 6 to 12 digits.
fn national_length(cc: u32) -> (usize, usize) {
    match cc {
        1 | 7 | 30 | 52 | 90 | 91 => (10, 10),
        27 | 31 | 33 | 34 | 40 | 41 | 48 | 61 | 351 => (9, 9),
        20 => (9, 10),
        32 | 36 => (8, 9),
        39 => (6, 11),
        43 => (4, 13),
        44 => (9, 10),
        45 | 47 | 65 | 852 => (8, 8),
        46 => (7, 13),
        49 => (6, 13),
        55 => (10, 11),
        62 => (8, 12),
        63 | 64 => (8, 10),
        81 => (9, 10),
        82 => (8, 10),
        86 => (10, 11),
        234 => (8, 10),
        353 => (7, 9),
        971 => (8, 9),
        _ => (6, 12),
    }
}
