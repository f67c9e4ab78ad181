//! Helpers shared by the scanners: token boundaries and context words.

use std::ops::Range;

pub(crate) fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at)?.chars().next_back()
}

pub(crate) fn char_after(text: &str, at: usize) -> Option<char> {
    text.get(at..)?.chars().next()
}

/// Whether the token starting at `start` is glued to a word or a number on its left: after a
/// letter or digit, after `-`, `_`, `/` or `\` that follow a letter or digit (`ORD-2024`), after
/// `.`, `,` or `:` that follow a digit (`1.2`, `1,234`), or after `@`.
pub(crate) fn glued_left(text: &str, start: usize) -> bool {
    let Some(c) = char_before(text, start) else {
        return false;
    };
    if c.is_alphanumeric() || c == '@' {
        return true;
    }
    let before = char_before(text, start - c.len_utf8());
    match c {
        '-' | '_' | '/' | '\\' => before.is_some_and(char::is_alphanumeric),
        '.' | ',' | ':' => before.is_some_and(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// Whether the token ending at `end` is glued to a word or a number on its right (the mirror
/// of [`glued_left`]).
pub(crate) fn glued_right(text: &str, end: usize) -> bool {
    let Some(c) = char_after(text, end) else {
        return false;
    };
    if c.is_alphanumeric() || c == '@' {
        return true;
    }
    let after = char_after(text, end + c.len_utf8());
    match c {
        '-' | '_' | '/' | '\\' => after.is_some_and(char::is_alphanumeric),
        '.' | ',' | ':' => after.is_some_and(|a| a.is_ascii_digit()),
        _ => false,
    }
}

/// Whether one of `words` (lower case) starts a word within `before` bytes before the span or
/// `after` bytes after it. ASCII letters compare case-insensitively.
pub(crate) fn context_near<W: AsRef<str>>(
    text: &str,
    span: &Range<usize>,
    words: &[W],
    before: usize,
    after: usize,
) -> bool {
    let mut lo = span.start.saturating_sub(before);
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = (span.end + after).min(text.len());
    while !text.is_char_boundary(hi) {
        hi += 1;
    }
    let left = &text.as_bytes()[lo..span.start];
    let right = &text.as_bytes()[span.end..hi];
    words.iter().any(|word| {
        let word = word.as_ref().as_bytes();
        contains_word(left, word) || contains_word(right, word)
    })
}

fn contains_word(hay: &[u8], word: &[u8]) -> bool {
    if word.is_empty() || hay.len() < word.len() {
        return false;
    }
    (0..=hay.len() - word.len()).any(|i| {
        hay[i..i + word.len()].eq_ignore_ascii_case(word)
            && (i == 0 || !hay[i - 1].is_ascii_alphanumeric())
    })
}

/// The ASCII word just before `start`, skipping spaces and `:`, `#`, `-` or `.`
/// (`version: 1.2.3.4` gives `version`, `No. 123` gives `No`), and where it starts; empty if
/// there is none.
pub(crate) fn preceding_word(text: &str, start: usize) -> (&str, usize) {
    let bytes = text.as_bytes();
    let mut end = start.min(bytes.len());
    while end > 0 && start - end < 4 && matches!(bytes[end - 1], b' ' | b':' | b'#' | b'-' | b'.') {
        end -= 1;
    }
    let mut begin = end;
    while begin > 0 && bytes[begin - 1].is_ascii_alphabetic() {
        begin -= 1;
    }
    // Only ASCII bytes were skipped, so both ends are char boundaries.
    (text.get(begin..end).unwrap_or(""), begin)
}

/// Whether one of `words` is among the `count` words before `start` (ASCII case-insensitive).
pub(crate) fn preceded_by(text: &str, start: usize, count: usize, words: &[&str]) -> bool {
    let mut at = start;
    for _ in 0..count {
        let (word, begin) = preceding_word(text, at);
        if word.is_empty() {
            return false;
        }
        if words.iter().any(|w| w.eq_ignore_ascii_case(word)) {
            return true;
        }
        at = begin;
    }
    false
}

/// Whether `start` follows the head of a grouped IBAN-like string (`NO88 0451 …`): digits there
/// belong to an account number (valid or not), not to a phone or card number.
pub(crate) fn after_iban_head(bytes: &[u8], start: usize) -> bool {
    start >= 5
        && bytes[start - 1] == b' '
        && bytes[start - 5].is_ascii_alphabetic()
        && bytes[start - 4].is_ascii_alphabetic()
        && bytes[start - 3].is_ascii_digit()
        && bytes[start - 2].is_ascii_digit()
        && (start == 5 || !bytes[start - 6].is_ascii_alphanumeric())
}

/// Digits of a token, kept on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Digits {
    buf: [u8; 24],
    len: usize,
}

impl Digits {
    pub(crate) fn new() -> Digits {
        Digits {
            buf: [0; 24],
            len: 0,
        }
    }

    /// Appends a digit value; false when full.
    pub(crate) fn push(&mut self, digit: u8) -> bool {
        if self.len == self.buf.len() {
            return false;
        }
        self.buf[self.len] = digit;
        self.len += 1;
        true
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// The number written by `digits` (values 0–9), saturating.
pub(crate) fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |n, &d| {
        n.saturating_mul(10).saturating_add(u32::from(d))
    })
}
