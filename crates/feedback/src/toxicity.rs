//! Toxicity and abuse from a lexicon with severities.
//!
//! The shipped lexicon ([`SHIPPED_LEXICON`], `data/toxicity.toml`) lists terms and phrases by
//! [`Category`] and [`Severity`]; identity attacks name the [`ProtectedAttribute`] they target.
//! A tenant adds and removes terms through [`ToxicityConfig`].
//!
//! # Matching
//!
//! Text and terms are both *folded* the same way, and one Aho-Corasick automaton finds every
//! folded term in the folded text:
//!
//! - letters are lower-cased;
//! - inside a word that has a letter, leetspeak digits become letters (`0→o 1→i 3→e 4→a 5→s
//!   7→t`), and `@ $ ! |` followed by a letter or digit become `a s i l` (`$hit`, `b!tch`);
//! - three or more single characters split by the same separator (`. - _ * ·` or a space)
//!   are joined (`i.d.i.o.t`, `i d i o t`);
//! - runs of white space become one space;
//! - runs of a repeated letter collapse to one letter that remembers its run length. A match
//!   is kept only if every letter of the text repeats at least as often as in the term, so
//!   `stuuupid` matches `stupid` and `asssss` matches `ass`, but `as` does not match `ass`.
//!
//! A match must start and end on a word boundary of the folded text; an inflection (`-s`,
//! `-es`, `-ed`, `-d`, `-ing`, `-in`, `-er`, `-ers`) may follow a term that ends in a letter.
//! Overlapping matches keep the earliest, then the longest, then the most severe.
//!
//! # Score
//!
//! `score = 1 − Π (1 − w(severity))` over all matches (a noisy-OR), with `w` = 0.1 (low),
//! 0.3 (medium), 0.6 (high), 0.9 (critical): in `[0, 1)`, 0 without matches, rising with every
//! further match and dominated by the most severe ones.
//!
//! ```
//! use feedback::toxicity::{Category, ToxicityConfig, ToxicityMatcher};
//! let matcher = ToxicityMatcher::new(&ToxicityConfig::default()).unwrap();
//! let report = matcher.scan("You are an 1d10t and I will f i n d you");
//! assert_eq!(report.matches[0].category, Category::Insult);
//! assert_eq!(&"You are an 1d10t and I will f i n d you"[report.matches[0].span.clone()], "1d10t");
//! assert!(report.score > 0.3);
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use crate::severity::Severity;

/// The shipped lexicon (TOML).
pub const SHIPPED_LEXICON: &str = include_str!("../data/toxicity.toml");

/// What kind of abuse a term is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Insults aimed at a person.
    Insult,
    /// Swearing not aimed at anyone in particular.
    Profanity,
    /// Threats of violence or damage.
    Threat,
    /// Harassment: telling someone to die, go away, shut up.
    Harassment,
    /// Slurs and attacks on a protected attribute (see [`ProtectedAttribute`]).
    IdentityAttack,
    /// Sexual content.
    Sexual,
    /// The writer may harm themselves.
    SelfHarm,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 7] = [
        Category::Insult,
        Category::Profanity,
        Category::Threat,
        Category::Harassment,
        Category::IdentityAttack,
        Category::Sexual,
        Category::SelfHarm,
    ];

    /// The name in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Insult => "insult",
            Category::Profanity => "profanity",
            Category::Threat => "threat",
            Category::Harassment => "harassment",
            Category::IdentityAttack => "identity_attack",
            Category::Sexual => "sexual",
            Category::SelfHarm => "self_harm",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protected attribute an identity attack targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectedAttribute {
    /// Race or colour.
    Race,
    /// Ethnic origin.
    Ethnicity,
    /// Nationality or national origin.
    Nationality,
    /// Religion or belief.
    Religion,
    /// Sex or gender.
    Gender,
    /// Gender identity.
    GenderIdentity,
    /// Sexual orientation.
    SexualOrientation,
    /// Disability.
    Disability,
    /// Age.
    Age,
}

/// One group of lexicon terms sharing a category and severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermGroup {
    /// What kind of abuse the terms are.
    pub category: Category,
    /// How bad they are.
    pub severity: Severity,
    /// For `identity_attack` (required there, refused elsewhere): the attribute targeted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<ProtectedAttribute>,
    /// Words or phrases.
    pub terms: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    groups: Vec<TermGroup>,
}

/// A tenant's changes to the lexicon (`[toxicity]` of the feedback configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicityConfig {
    /// Start from the shipped lexicon (default `true`); `false` uses only `add`.
    #[serde(default = "yes")]
    pub shipped_lexicon: bool,
    /// Terms added (a term already listed takes the added group's category and severity).
    #[serde(default)]
    pub add: Vec<TermGroup>,
    /// Terms removed, as written in the lexicon (case-insensitive).
    #[serde(default)]
    pub remove: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for ToxicityConfig {
    fn default() -> Self {
        ToxicityConfig {
            shipped_lexicon: true,
            add: Vec::new(),
            remove: Vec::new(),
        }
    }
}

/// A refused lexicon or toxicity configuration, naming the path of the fault
/// (`add[2].terms[0]`, relative to the `[toxicity]` table or the lexicon file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LexiconError {
    /// Where the fault is.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Longest term, in bytes.
pub const MAX_TERM_BYTES: usize = 100;

/// One lexicon entry as matched.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    term: String,
    category: Category,
    severity: Severity,
    attribute: Option<ProtectedAttribute>,
    /// Run length of each byte of the folded term (see [`Folded`]).
    runs: Vec<u16>,
}

/// One lexicon term found in a text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToxicityMatch {
    /// The lexicon term (as listed, lower case), not the text's spelling of it.
    pub term: String,
    /// Its category.
    pub category: Category,
    /// Its severity.
    pub severity: Severity,
    /// For identity attacks: the attribute targeted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<ProtectedAttribute>,
    /// Byte range of the match in the scanned text (on `char` boundaries).
    pub span: Range<usize>,
}

/// The toxicity of one text.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ToxicityReport {
    /// Noisy-OR of the matches' severity weights, in `[0, 1)` (see the module docs).
    pub score: f64,
    /// The most severe match, if any.
    pub max_severity: Option<Severity>,
    /// Every match, by start.
    pub matches: Vec<ToxicityMatch>,
}

/// The weight of a severity in the toxicity score.
pub fn severity_weight(severity: Severity) -> f64 {
    match severity {
        Severity::Low => 0.1,
        Severity::Medium => 0.3,
        Severity::High => 0.6,
        Severity::Critical => 0.9,
    }
}

/// A compiled lexicon. Cheap to share between threads (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct ToxicityMatcher {
    automaton: Option<AhoCorasick>,
    entries: Vec<Entry>,
}

impl ToxicityMatcher {
    /// Compiles the shipped lexicon (unless disabled) with the tenant's changes.
    pub fn new(config: &ToxicityConfig) -> Result<ToxicityMatcher, LexiconError> {
        let mut groups: Vec<(String, TermGroup)> = Vec::new();
        if config.shipped_lexicon {
            let file: LexiconFile = toml::from_str(SHIPPED_LEXICON).map_err(|e| LexiconError {
                path: "shipped lexicon".into(),
                message: e.message().to_owned(),
            })?;
            groups.extend(
                file.groups
                    .into_iter()
                    .enumerate()
                    .map(|(i, g)| (format!("shipped lexicon groups[{i}]"), g)),
            );
        }
        groups.extend(
            config
                .add
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("add[{i}]"), g.clone())),
        );
        let removed: BTreeSet<String> = config
            .remove
            .iter()
            .map(|t| t.trim().to_lowercase())
            .collect();
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen_removed = BTreeSet::new();
        for (path, group) in &groups {
            match (group.category, group.attribute) {
                (Category::IdentityAttack, None) => {
                    return Err(LexiconError {
                        path: format!("{path}.attribute"),
                        message: "identity_attack terms must name the protected attribute".into(),
                    })
                }
                (c, Some(_)) if c != Category::IdentityAttack => {
                    return Err(LexiconError {
                        path: format!("{path}.attribute"),
                        message: "only identity_attack terms have an attribute".into(),
                    })
                }
                _ => {}
            }
            for (j, term) in group.terms.iter().enumerate() {
                let at = || format!("{path}.terms[{j}]");
                let term = term.trim().to_lowercase();
                if term.len() > MAX_TERM_BYTES {
                    return Err(LexiconError {
                        path: at(),
                        message: format!("longer than {MAX_TERM_BYTES} bytes"),
                    });
                }
                let folded = Folded::new(&term);
                if !folded.text.chars().any(char::is_alphanumeric) {
                    return Err(LexiconError {
                        path: at(),
                        message: "must contain a letter or digit".into(),
                    });
                }
                if removed.contains(&term) {
                    seen_removed.insert(term);
                    continue;
                }
                let entry = Entry {
                    term,
                    category: group.category,
                    severity: group.severity,
                    attribute: group.attribute,
                    runs: folded.runs.clone(),
                };
                // A later listing (a tenant's addition) replaces an earlier one.
                match entries.iter().position(|e| e.term == entry.term) {
                    Some(k) => entries[k] = entry,
                    None => entries.push(entry),
                }
            }
        }
        if let Some((i, t)) = config
            .remove
            .iter()
            .enumerate()
            .find(|(_, t)| !seen_removed.contains(&t.trim().to_lowercase()))
        {
            return Err(LexiconError {
                path: format!("remove[{i}]"),
                message: format!("{t:?} is not in the lexicon"),
            });
        }
        let patterns: Vec<String> = entries.iter().map(|e| Folded::new(&e.term).text).collect();
        let automaton = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| LexiconError {
                        path: "terms".into(),
                        message: e.to_string(),
                    })?,
            )
        };
        Ok(ToxicityMatcher { automaton, entries })
    }

    /// How many terms the lexicon holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the lexicon is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds every lexicon term in `text` and scores it. Never panics.
    pub fn scan(&self, text: &str) -> ToxicityReport {
        let Some(automaton) = &self.automaton else {
            return ToxicityReport::default();
        };
        let folded = Folded::new(text);
        let bytes = folded.text.as_bytes();
        // (start, end, entry) in folded bytes.
        let mut candidates: Vec<(usize, usize, usize)> = Vec::new();
        for m in automaton.find_overlapping_iter(folded.text.as_str()) {
            let entry = &self.entries[m.pattern().as_usize()];
            let (start, mut end) = (m.start(), m.end());
            if start > 0 && is_word_byte(bytes, start - 1, &folded.text) {
                continue;
            }
            if end < bytes.len() && is_word_byte(bytes, end, &folded.text) {
                match inflection_end(&folded.text, end, entry) {
                    Some(e) => end = e,
                    None => continue,
                }
            }
            let runs_ok = entry
                .runs
                .iter()
                .enumerate()
                .all(|(k, &r)| folded.runs.get(m.start() + k).is_some_and(|&t| t >= r));
            if runs_ok {
                candidates.push((start, end, m.pattern().as_usize()));
            }
        }
        candidates.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.1.cmp(&a.1))
                .then(self.entries[b.2].severity.cmp(&self.entries[a.2].severity))
        });
        let mut report = ToxicityReport::default();
        let mut covered_to = 0usize;
        let mut keep_product = 1.0f64;
        for (start, end, idx) in candidates {
            if start < covered_to {
                continue;
            }
            covered_to = end;
            let entry = &self.entries[idx];
            keep_product *= 1.0 - severity_weight(entry.severity);
            report.max_severity = report.max_severity.max(Some(entry.severity));
            report.matches.push(ToxicityMatch {
                term: entry.term.clone(),
                category: entry.category,
                severity: entry.severity,
                attribute: entry.attribute,
                span: folded.original_span(start, end),
            });
        }
        report.score = 1.0 - keep_product;
        report
    }
}

const INFLECTIONS: [&str; 8] = ["ers", "ing", "es", "ed", "er", "in", "s", "d"];

/// Where a term followed by an inflection ends, if the inflection ends on a word boundary.
fn inflection_end(folded: &str, end: usize, entry: &Entry) -> Option<usize> {
    if !entry.term.ends_with(|c: char| c.is_alphabetic()) {
        return None;
    }
    let rest = folded.get(end..)?;
    INFLECTIONS.iter().find_map(|suffix| {
        let after = rest.strip_prefix(suffix)?;
        (!after.starts_with(|c: char| c.is_alphanumeric())).then_some(end + suffix.len())
    })
}

fn is_word_byte(bytes: &[u8], i: usize, text: &str) -> bool {
    if bytes[i].is_ascii() {
        return bytes[i].is_ascii_alphanumeric();
    }
    // A non-ASCII byte: look at the whole character it belongs to.
    let mut start = i;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    text[start..]
        .chars()
        .next()
        .is_some_and(char::is_alphanumeric)
}

/// A folded text (see the module docs) with, per folded byte, the original byte range of the
/// character it came from and the run length of its letter.
struct Folded {
    text: String,
    starts: Vec<usize>,
    ends: Vec<usize>,
    runs: Vec<u16>,
}

const SEPARATORS: [char; 6] = ['.', '-', '_', '*', ' ', '·'];

fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '@' => 'a',
        '$' => 's',
        '!' => 'i',
        '|' => 'l',
        _ => return None,
    })
}

fn is_leet_symbol(c: char) -> bool {
    matches!(c, '@' | '$' | '!' | '|')
}

impl Folded {
    fn new(original: &str) -> Folded {
        let chars: Vec<(usize, char)> = original.char_indices().collect();
        let n = chars.len();
        // Words: maximal runs of alphanumerics and leet symbols followed by an alphanumeric.
        let wordish = |i: usize| -> bool {
            let c = chars[i].1;
            c.is_alphanumeric()
                || (is_leet_symbol(c)
                    && chars.get(i + 1).is_some_and(|&(_, d)| d.is_alphanumeric()))
        };
        let mut mapped: Vec<Option<char>> = vec![None; n];
        let mut i = 0;
        let mut words: Vec<(usize, usize)> = Vec::new();
        while i < n {
            if !wordish(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && wordish(i) {
                i += 1;
            }
            words.push((start, i));
            let has_letter = chars[start..i].iter().any(|(_, c)| c.is_alphabetic());
            for k in start..i {
                let c = chars[k].1;
                mapped[k] = if c.is_alphabetic() {
                    Some(c)
                } else if has_letter {
                    leet(c).or(Some(c))
                } else {
                    Some(c)
                };
            }
        }
        // Single characters split by one repeated separator: drop the separators.
        let mut skip = vec![false; n];
        let mut w = 0;
        while w < words.len() {
            let mut last = w;
            let sep = words[w].1;
            let single = |k: usize| words[k].1 - words[k].0 == 1;
            if single(w) && sep < n && SEPARATORS.contains(&chars[sep].1) {
                let sep_char = chars[sep].1;
                while last + 1 < words.len()
                    && single(last + 1)
                    && words[last + 1].0 == words[last].1 + 1
                    && chars[words[last].1].1 == sep_char
                {
                    last += 1;
                }
                if last - w >= 2 {
                    for k in w..last {
                        skip[words[k].1] = true;
                    }
                }
            }
            w = last + 1;
        }
        let mut folded = Folded {
            text: String::with_capacity(original.len()),
            starts: Vec::with_capacity(original.len()),
            ends: Vec::with_capacity(original.len()),
            runs: Vec::with_capacity(original.len()),
        };
        let mut last_char: Option<(char, usize)> = None; // (char, its first folded byte)
        for k in 0..n {
            let (at, c) = chars[k];
            let end = at + c.len_utf8();
            if skip[k] {
                if let Some(e) = folded.ends.last_mut() {
                    *e = end;
                }
                continue;
            }
            let out = match mapped[k] {
                Some(m) => m,
                None if c.is_whitespace() => ' ',
                None if c == '\u{2019}' || c == '\u{2018}' => '\'',
                None => c,
            };
            if out == ' ' && folded.text.ends_with(' ') {
                if let Some(e) = folded.ends.last_mut() {
                    *e = end;
                }
                continue;
            }
            for lower in out.to_lowercase() {
                if let Some((prev, first)) = last_char {
                    if prev == lower && lower.is_alphabetic() && mapped[k].is_some() {
                        for b in first..folded.text.len() {
                            folded.runs[b] = folded.runs[b].saturating_add(1);
                            folded.ends[b] = end;
                        }
                        continue;
                    }
                }
                let first = folded.text.len();
                folded.text.push(lower);
                for _ in 0..lower.len_utf8() {
                    folded.starts.push(at);
                    folded.ends.push(end);
                    folded.runs.push(1);
                }
                last_char = Some((lower, first));
            }
            if mapped[k].is_none() {
                // Only letters within one word collapse.
                last_char = None;
            }
        }
        folded
    }

    /// The original byte range of folded bytes `start..end` (`start < end`).
    fn original_span(&self, start: usize, end: usize) -> Range<usize> {
        self.starts[start]..self.ends[end - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> ToxicityMatcher {
        ToxicityMatcher::new(&ToxicityConfig::default()).unwrap()
    }

    fn terms(text: &str) -> Vec<String> {
        matcher()
            .scan(text)
            .matches
            .into_iter()
            .map(|m| m.term)
            .collect()
    }

    #[test]
    fn shipped_lexicon_loads_and_is_useful() {
        assert!(matcher().len() >= 300, "{}", matcher().len());
    }

    #[test]
    fn word_boundaries_and_case() {
        assert_eq!(terms("You IDIOT."), ["idiot"]);
        assert!(terms("classic assessment of the Scunthorpe hello").is_empty());
        assert!(terms("as I said").is_empty());
        assert!(terms("the burndown chart").is_empty());
    }

    #[test]
    fn de_obfuscation() {
        assert_eq!(terms("what an 1d10t"), ["idiot"]);
        assert_eq!(terms("$hit happens"), ["shit"]);
        assert_eq!(terms("i.d.i.o.t"), ["idiot"]);
        assert_eq!(terms("you i d i o t!"), ["idiot"]);
        assert_eq!(terms("stuuuuupid"), ["stupid"]);
        assert_eq!(terms("asssss"), ["ass"]);
        assert_eq!(terms("I   will\tfind   you"), ["i will find you"]);
        assert_eq!(terms("idiots everywhere"), ["idiot"]);
    }

    #[test]
    fn spans_point_into_the_original() {
        let text = "héllo, you ȷerk... no: you Ｍ0R0N!!!";
        let report = matcher().scan("héllo, you m0r0n!!!");
        assert_eq!(report.matches.len(), 1);
        assert_eq!(
            &"héllo, you m0r0n!!!"[report.matches[0].span.clone()],
            "m0r0n"
        );
        // Any text, including odd Unicode, scans without panicking.
        let _ = matcher().scan(text);
    }

    #[test]
    fn longest_overlapping_match_wins() {
        let r = matcher().scan("I will kill you");
        assert_eq!(r.matches.len(), 1);
        assert_eq!(r.matches[0].term, "i will kill you");
        assert_eq!(r.matches[0].severity, Severity::Critical);
    }

    #[test]
    fn score_is_a_noisy_or() {
        let r = matcher().scan("idiot, you moron");
        assert!((r.score - (1.0 - 0.7 * 0.7)).abs() < 1e-12);
        assert_eq!(matcher().scan("lovely product").score, 0.0);
    }

    #[test]
    fn tenants_add_and_remove_terms() {
        let config: ToxicityConfig = toml::from_str(
            r#"
            remove = ["Hell"]
            [[add]]
            category = "insult"
            severity = "high"
            terms = ["blockhead"]
            "#,
        )
        .unwrap();
        let m = ToxicityMatcher::new(&config).unwrap();
        assert!(m.scan("what the hell").matches.is_empty());
        assert_eq!(m.scan("blockhead").matches[0].severity, Severity::High);
    }

    #[test]
    fn bad_configs_name_the_path() {
        let bad = |text: &str| {
            let config: ToxicityConfig = toml::from_str(text).unwrap();
            ToxicityMatcher::new(&config).unwrap_err().path
        };
        assert_eq!(bad(r#"remove = ["nonexistentterm"]"#), "remove[0]");
        assert_eq!(
            bad("[[add]]\ncategory = \"identity_attack\"\nseverity = \"high\"\nterms = [\"x1\"]"),
            "add[0].attribute"
        );
        assert_eq!(
            bad("[[add]]\ncategory = \"insult\"\nseverity = \"high\"\nterms = [\"ok\", \"...\"]"),
            "add[0].terms[1]"
        );
    }
}
