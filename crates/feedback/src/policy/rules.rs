//! Policy rules: their data form ([`RuleSpec`], TOML), validation and compilation into
//! [`Rule`]s, and the check of each [`RuleKind`].

use std::collections::BTreeSet;
use std::ops::{Range, RangeInclusive};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{PolicyError, PolicyInput, Principle};
use crate::pii::EntityType;
use crate::severity::Severity;
use crate::toxicity::Category;

/// The shipped default rule set (TOML, `data/policy.toml`).
pub const SHIPPED_RULES: &str = include_str!("../../data/policy.toml");

/// Longest accepted regular expression source, in bytes.
const MAX_REGEX_BYTES: usize = 1_000;
/// Compiled size limit of a tenant regex (the `regex` crate's budget), so a tenant cannot make
/// matching slow or memory-hungry.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What a rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Unredacted PII of given entity types (see [`PiiParams`]).
    Pii,
    /// Lexicon matches of given categories at or above a severity (see [`LexiconParams`]).
    Lexicon,
    /// Threat phrases of the lexicon at or above a severity (see [`ThreatParams`]).
    Threat,
    /// A rating contradicting the text's sentiment (see [`MismatchParams`]).
    RatingSentimentMismatch,
    /// A tenant regular expression (see [`PatternParams`]).
    Pattern,
    /// Invisible characters and prompt-injection phrases (see [`HiddenTextParams`]).
    HiddenText,
    /// Spam signals (see [`SpamParams`]).
    Spam,
    /// Too little content (see [`LowInformationParams`]).
    LowInformation,
}

/// A rule as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique id: 1 to 64 bytes of `a-z 0-9 . _ -`.
    pub id: String,
    /// The principle the rule backs.
    pub principle: Principle,
    /// What it checks.
    pub kind: RuleKind,
    /// How bad a hit is.
    pub severity: Severity,
    /// What a hit costs its principle, in `(0, 1]`.
    pub penalty: f64,
    /// What the rule is for (documentation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The kind's parameters (each kind's `*Params` type; defaults where documented).
    #[serde(default = "empty_table")]
    pub params: toml::Value,
}

fn empty_table() -> toml::Value {
    toml::Value::Table(toml::Table::new())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// Parameters of a `pii` rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiParams {
    /// Presidio entity names (`EMAIL_ADDRESS`, a tenant pattern's name); empty: every type.
    #[serde(default)]
    pub entities: Vec<String>,
    /// Findings below this confidence are ignored (default 0).
    #[serde(default)]
    pub min_confidence: f32,
}

/// Parameters of a `lexicon` rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LexiconParams {
    /// The categories that count (at least one).
    pub categories: Vec<Category>,
    /// The least severity that counts (default `low`).
    #[serde(default = "low")]
    pub min_severity: Severity,
    /// The greatest severity that counts (default: no limit), so a milder rule need not
    /// fire again on what a stricter one covers.
    #[serde(default)]
    pub max_severity: Option<Severity>,
}

/// Parameters of a `threat` rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreatParams {
    /// The least severity that counts (default `low`).
    #[serde(default = "low")]
    pub min_severity: Severity,
    /// The greatest severity that counts (default: no limit).
    #[serde(default)]
    pub max_severity: Option<Severity>,
}

fn low() -> Severity {
    Severity::Low
}

/// Parameters of a `rating_sentiment_mismatch` rule: fires when
/// `rating ≥ high_rating` and `compound ≤ max_compound_for_high`, or when
/// `rating ≤ low_rating` and `compound ≥ min_compound_for_low`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MismatchParams {
    /// Ratings at or above this are high (default 4).
    #[serde(default = "four")]
    pub high_rating: u8,
    /// A high rating contradicts a VADER compound at or below this (default −0.5).
    #[serde(default = "minus_half")]
    pub max_compound_for_high: f64,
    /// Ratings at or below this are low (default 2).
    #[serde(default = "two")]
    pub low_rating: u8,
    /// A low rating contradicts a VADER compound at or above this (default 0.5).
    #[serde(default = "half")]
    pub min_compound_for_low: f64,
}

fn four() -> u8 {
    4
}
fn two() -> u8 {
    2
}
fn half() -> f64 {
    0.5
}
fn minus_half() -> f64 {
    -0.5
}

/// Parameters of a `pattern` rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternParams {
    /// The regular expression (Rust `regex` syntax, linear time).
    pub regex: String,
    /// Match case-insensitively (default false; `(?i)` works too).
    #[serde(default)]
    pub case_insensitive: bool,
}

/// Parameters of a `hidden_text` rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiddenTextParams {
    /// Zero-width characters (U+200B–U+200D outside emoji sequences, U+2060, U+180E, U+FEFF
    /// after the first character, U+00AD) count (default true).
    #[serde(default = "yes")]
    pub zero_width: bool,
    /// Bidirectional controls (U+200E, U+200F, U+061C, U+202A–U+202E, U+2066–U+2069) count
    /// (default true).
    #[serde(default = "yes")]
    pub bidi_controls: bool,
    /// Phrases aimed at a downstream language model, matched case-insensitively (default
    /// none).
    #[serde(default)]
    pub phrases: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Parameters of a `spam` rule; it fires when any condition holds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpamParams {
    /// More links than this (`http://`, `https://`, `www.`) (default 3).
    #[serde(default = "three")]
    pub max_urls: u32,
    /// A character repeated more often than this in a row, white space aside (default 10).
    #[serde(default = "ten")]
    pub max_repeated_chars: u32,
    /// A share of upper-case letters above this (default 0.7) ...
    #[serde(default = "caps")]
    pub max_caps_ratio: f64,
    /// ... among at least this many letters (default 20).
    #[serde(default = "twenty")]
    pub min_letters_for_caps: u32,
    /// A share of word trigrams repeating an earlier trigram above this (default 0.5) ...
    #[serde(default = "half")]
    pub max_repeated_trigram_ratio: f64,
    /// ... among at least this many words (default 9).
    #[serde(default = "nine")]
    pub min_words_for_repetition: u32,
}

fn three() -> u32 {
    3
}
fn ten() -> u32 {
    10
}
fn caps() -> f64 {
    0.7
}
fn twenty() -> u32 {
    20
}
fn nine() -> u32 {
    9
}

/// Parameters of a `low_information` rule: fires when the text has fewer than `min_words`
/// words (tokens with a letter) and the item has no rating (or `applies_with_rating`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowInformationParams {
    /// Fewest words of an informative text (default 3).
    #[serde(default = "three")]
    pub min_words: u32,
    /// Also fire when the item has a rating (default false: a rating is information).
    #[serde(default)]
    pub applies_with_rating: bool,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// The principle it backs.
    pub principle: Principle,
    /// How bad a hit is.
    pub severity: Severity,
    /// What a hit costs, in `(0, 1]`.
    pub penalty: f64,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    Pii {
        entities: Option<BTreeSet<EntityType>>,
        min_confidence: f32,
    },
    Lexicon {
        categories: Vec<Category>,
        severities: RangeInclusive<Severity>,
    },
    Threat {
        severities: RangeInclusive<Severity>,
    },
    Mismatch(MismatchParams),
    Pattern(Regex),
    HiddenText {
        zero_width: bool,
        bidi: bool,
        phrases: Option<AhoCorasick>,
    },
    Spam(SpamParams),
    LowInformation(LowInformationParams),
}

/// Where a rule found something: a span of the text and a label (an entity type, a lexicon
/// category, a character's code point), never the text itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// What is there.
    pub label: String,
    /// Byte range in the text.
    pub bytes: Range<usize>,
    /// Character range (Unicode scalar values) in the text.
    pub chars: Range<usize>,
}

impl Evidence {
    fn new(label: impl Into<String>, bytes: Range<usize>) -> Self {
        Evidence {
            label: label.into(),
            chars: 0..0,
            bytes,
        }
    }
}

/// What a fired rule found.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCheck {
    /// A description without excerpts.
    pub description: String,
    /// Spans (character offsets are filled in by the policy).
    pub evidence: Vec<Evidence>,
}

/// Parses and compiles a rule file (`[[rules]]`), naming the path of any fault
/// (`rules[3].penalty`).
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, PolicyError> {
    let de = toml::Deserializer::new(text);
    let file: RuleFile = serde_path_to_error::deserialize(de).map_err(|e| PolicyError {
        path: e.path().to_string(),
        message: e.inner().message().trim().to_owned(),
    })?;
    compile_rules(&file.rules, "rules")
}

/// The shipped rule set, compiled.
pub fn shipped_rules() -> Result<Vec<Rule>, PolicyError> {
    parse_rules(SHIPPED_RULES)
}

/// Validates and compiles rule specs; errors name `{prefix}[i].field`.
pub fn compile_rules(specs: &[RuleSpec], prefix: &str) -> Result<Vec<Rule>, PolicyError> {
    let mut ids = BTreeSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let at = format!("{prefix}[{i}]");
            let rule = Rule::compile(spec, &at)?;
            if !ids.insert(rule.id.clone()) {
                return Err(PolicyError {
                    path: format!("{at}.id"),
                    message: format!("duplicate rule id {:?}", rule.id),
                });
            }
            Ok(rule)
        })
        .collect()
}

fn params<T: DeserializeOwned>(value: &toml::Value, at: &str) -> Result<T, PolicyError> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let inner = e.path().to_string();
        PolicyError {
            path: if inner == "." {
                format!("{at}.params")
            } else {
                format!("{at}.params.{inner}")
            },
            message: e.inner().to_string(),
        }
    })
}

/// A Presidio entity name as an [`EntityType`]; other upper-case names are tenant patterns.
fn entity_type(name: &str) -> Option<EntityType> {
    Some(match name {
        "EMAIL_ADDRESS" => EntityType::EmailAddress,
        "PHONE_NUMBER" => EntityType::PhoneNumber,
        "CREDIT_CARD" => EntityType::CreditCard,
        "IBAN_CODE" => EntityType::IbanCode,
        "IP_ADDRESS" => EntityType::IpAddress,
        "US_SSN" => EntityType::UsSsn,
        "UK_NINO" => EntityType::UkNino,
        custom
            if !custom.is_empty()
                && custom
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
        {
            EntityType::Custom(custom.to_owned())
        }
        _ => return None,
    })
}

impl Rule {
    fn compile(spec: &RuleSpec, at: &str) -> Result<Rule, PolicyError> {
        let err = |field: &str, message: String| PolicyError {
            path: format!("{at}.{field}"),
            message,
        };
        if spec.id.is_empty()
            || spec.id.len() > 64
            || !spec.id.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
        {
            return Err(err("id", "1 to 64 bytes of a-z, 0-9, '.', '_', '-'".into()));
        }
        if !(spec.penalty > 0.0 && spec.penalty <= 1.0) {
            return Err(err(
                "penalty",
                format!("must be within (0, 1], got {}", spec.penalty),
            ));
        }
        let check = match spec.kind {
            RuleKind::Pii => {
                let p: PiiParams = params(&spec.params, at)?;
                let mut entities = BTreeSet::new();
                for (j, name) in p.entities.iter().enumerate() {
                    let entity = entity_type(name).ok_or_else(|| {
                        err(
                            &format!("params.entities[{j}]"),
                            format!(
                                "{name:?} is not an entity name (upper case, e.g. EMAIL_ADDRESS)"
                            ),
                        )
                    })?;
                    entities.insert(entity);
                }
                if !(0.0..=1.0).contains(&p.min_confidence) {
                    return Err(err(
                        "params.min_confidence",
                        format!("must be within 0..1, got {}", p.min_confidence),
                    ));
                }
                Check::Pii {
                    entities: (!entities.is_empty()).then_some(entities),
                    min_confidence: p.min_confidence,
                }
            }
            RuleKind::Lexicon => {
                let p: LexiconParams = params(&spec.params, at)?;
                if p.categories.is_empty() {
                    return Err(err(
                        "params.categories",
                        "name at least one category".into(),
                    ));
                }
                Check::Lexicon {
                    categories: p.categories,
                    severities: severity_range(p.min_severity, p.max_severity, &err)?,
                }
            }
            RuleKind::Threat => {
                let p: ThreatParams = params(&spec.params, at)?;
                Check::Threat {
                    severities: severity_range(p.min_severity, p.max_severity, &err)?,
                }
            }
            RuleKind::RatingSentimentMismatch => {
                let p: MismatchParams = params(&spec.params, at)?;
                for (field, rating) in
                    [("high_rating", p.high_rating), ("low_rating", p.low_rating)]
                {
                    if !(1..=5).contains(&rating) {
                        return Err(err(
                            &format!("params.{field}"),
                            format!("must be 1..5, got {rating}"),
                        ));
                    }
                }
                for (field, c) in [
                    ("max_compound_for_high", p.max_compound_for_high),
                    ("min_compound_for_low", p.min_compound_for_low),
                ] {
                    if !(-1.0..=1.0).contains(&c) {
                        return Err(err(
                            &format!("params.{field}"),
                            format!("must be within -1..1, got {c}"),
                        ));
                    }
                }
                Check::Mismatch(p)
            }
            RuleKind::Pattern => {
                let p: PatternParams = params(&spec.params, at)?;
                if p.regex.len() > MAX_REGEX_BYTES {
                    return Err(err(
                        "params.regex",
                        format!("longer than {MAX_REGEX_BYTES} bytes"),
                    ));
                }
                let regex = RegexBuilder::new(&p.regex)
                    .case_insensitive(p.case_insensitive)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| err("params.regex", e.to_string()))?;
                if regex.is_match("") {
                    return Err(err(
                        "params.regex",
                        "matches the empty text, so it would fire on every item".into(),
                    ));
                }
                Check::Pattern(regex)
            }
            RuleKind::HiddenText => {
                let p: HiddenTextParams = params(&spec.params, at)?;
                if let Some(j) = p.phrases.iter().position(|s| s.trim().is_empty()) {
                    return Err(err(
                        &format!("params.phrases[{j}]"),
                        "must not be blank".into(),
                    ));
                }
                if !p.zero_width && !p.bidi_controls && p.phrases.is_empty() {
                    return Err(err(
                        "params",
                        "checks nothing: enable zero_width or bidi_controls, or list phrases"
                            .into(),
                    ));
                }
                let phrases = if p.phrases.is_empty() {
                    None
                } else {
                    Some(
                        AhoCorasickBuilder::new()
                            .ascii_case_insensitive(true)
                            .match_kind(MatchKind::LeftmostLongest)
                            .build(&p.phrases)
                            .map_err(|e| err("params.phrases", e.to_string()))?,
                    )
                };
                Check::HiddenText {
                    zero_width: p.zero_width,
                    bidi: p.bidi_controls,
                    phrases,
                }
            }
            RuleKind::Spam => {
                let p: SpamParams = params(&spec.params, at)?;
                for (field, ratio) in [
                    ("max_caps_ratio", p.max_caps_ratio),
                    ("max_repeated_trigram_ratio", p.max_repeated_trigram_ratio),
                ] {
                    if !(0.0..=1.0).contains(&ratio) {
                        return Err(err(
                            &format!("params.{field}"),
                            format!("must be within 0..1, got {ratio}"),
                        ));
                    }
                }
                Check::Spam(p)
            }
            RuleKind::LowInformation => Check::LowInformation(params(&spec.params, at)?),
        };
        Ok(Rule {
            id: spec.id.clone(),
            principle: spec.principle,
            severity: spec.severity,
            penalty: spec.penalty,
            check,
        })
    }

    /// The rule's kind.
    pub fn kind(&self) -> RuleKind {
        match self.check {
            Check::Pii { .. } => RuleKind::Pii,
            Check::Lexicon { .. } => RuleKind::Lexicon,
            Check::Threat { .. } => RuleKind::Threat,
            Check::Mismatch(_) => RuleKind::RatingSentimentMismatch,
            Check::Pattern(_) => RuleKind::Pattern,
            Check::HiddenText { .. } => RuleKind::HiddenText,
            Check::Spam(_) => RuleKind::Spam,
            Check::LowInformation(_) => RuleKind::LowInformation,
        }
    }

    /// Runs the rule on one item: what it found, or `None` when it does not fire.
    pub fn check(&self, input: &PolicyInput<'_>) -> Option<RuleCheck> {
        let text = input.text.unwrap_or("");
        match &self.check {
            Check::Pii {
                entities,
                min_confidence,
            } => {
                let hits: Vec<_> = input
                    .findings
                    .iter()
                    .filter(|f| f.confidence >= *min_confidence)
                    .filter(|f| entities.as_ref().is_none_or(|set| set.contains(&f.entity)))
                    .collect();
                if hits.is_empty() {
                    return None;
                }
                let mut counts: Vec<(&str, usize)> = Vec::new();
                for f in &hits {
                    match counts
                        .iter_mut()
                        .find(|(name, _)| *name == f.entity.as_str())
                    {
                        Some((_, n)) => *n += 1,
                        None => counts.push((f.entity.as_str(), 1)),
                    }
                }
                Some(RuleCheck {
                    description: format!("unredacted personal data: {}", count_list(&counts)),
                    evidence: hits
                        .iter()
                        .map(|f| Evidence::new(f.entity.as_str(), f.span.clone()))
                        .collect(),
                })
            }
            Check::Lexicon {
                categories,
                severities,
            } => lexicon_check(input, |m| {
                categories.contains(&m.category) && severities.contains(&m.severity)
            }),
            Check::Threat { severities } => lexicon_check(input, |m| {
                m.category == Category::Threat && severities.contains(&m.severity)
            }),
            Check::Mismatch(p) => {
                let rating = input.rating?;
                let compound = input.sentiment?.compound;
                let contradicts = (rating >= p.high_rating && compound <= p.max_compound_for_high)
                    || (rating <= p.low_rating && compound >= p.min_compound_for_low);
                contradicts.then(|| RuleCheck {
                    description: format!(
                        "rating {rating} contradicts the text's sentiment (VADER compound {compound:+.4})"
                    ),
                    evidence: vec![Evidence::new("text", 0..text.len())],
                })
            }
            Check::Pattern(regex) => {
                let evidence: Vec<Evidence> = regex
                    .find_iter(text)
                    .filter(|m| !m.is_empty())
                    .take(super::MAX_EVIDENCE)
                    .map(|m| Evidence::new("pattern", m.range()))
                    .collect();
                (!evidence.is_empty()).then(|| RuleCheck {
                    description: format!("the rule's pattern matched {} time(s)", evidence.len()),
                    evidence,
                })
            }
            Check::HiddenText {
                zero_width,
                bidi,
                phrases,
            } => hidden_text(text, *zero_width, *bidi, phrases.as_ref()),
            Check::Spam(p) => spam(text, p),
            Check::LowInformation(p) => {
                if input.rating.is_some() && !p.applies_with_rating {
                    return None;
                }
                let words = text
                    .split(|c: char| !c.is_alphanumeric() && c != '\'')
                    .filter(|w| w.chars().any(char::is_alphabetic))
                    .count();
                (words < p.min_words as usize).then(|| RuleCheck {
                    description: format!(
                        "{words} word(s), fewer than {} and {}",
                        p.min_words,
                        if input.rating.is_some() {
                            "a rating"
                        } else {
                            "no rating"
                        }
                    ),
                    evidence: if text.is_empty() {
                        Vec::new()
                    } else {
                        vec![Evidence::new("text", 0..text.len())]
                    },
                })
            }
        }
    }
}

fn severity_range(
    min: Severity,
    max: Option<Severity>,
    err: &dyn Fn(&str, String) -> PolicyError,
) -> Result<RangeInclusive<Severity>, PolicyError> {
    let max = max.unwrap_or(Severity::Critical);
    if max < min {
        return Err(err(
            "params.max_severity",
            format!("{max} is below min_severity {min}"),
        ));
    }
    Ok(min..=max)
}

fn count_list(counts: &[(&str, usize)]) -> String {
    counts
        .iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn lexicon_check(
    input: &PolicyInput<'_>,
    counts: impl Fn(&crate::toxicity::ToxicityMatch) -> bool,
) -> Option<RuleCheck> {
    let hits: Vec<_> = input
        .toxicity
        .matches
        .iter()
        .filter(|m| counts(m))
        .collect();
    let max = hits.iter().map(|m| m.severity).max()?;
    let mut per_category: Vec<(&str, usize)> = Vec::new();
    for m in &hits {
        match per_category
            .iter_mut()
            .find(|(name, _)| *name == m.category.as_str())
        {
            Some((_, n)) => *n += 1,
            None => per_category.push((m.category.as_str(), 1)),
        }
    }
    let attributes: BTreeSet<String> = hits
        .iter()
        .filter_map(|m| m.attribute)
        .filter_map(|a| {
            serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .collect();
    let mut description = format!(
        "lexicon terms: {} (most severe: {max})",
        count_list(&per_category)
    );
    if !attributes.is_empty() {
        description.push_str(&format!(
            "; protected attributes: {}",
            attributes.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Some(RuleCheck {
        description,
        evidence: hits
            .iter()
            .map(|m| Evidence::new(format!("{}/{}", m.category, m.severity), m.span.clone()))
            .collect(),
    })
}

fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{180E}' | '\u{FEFF}' | '\u{00AD}'
    )
}

fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Pictographs and their modifiers, between which U+200D (zero-width joiner) legitimately
/// builds emoji sequences.
fn is_emoji_part(c: char) -> bool {
    matches!(c, '\u{2600}'..='\u{27BF}' | '\u{FE0F}' | '\u{1F000}'..='\u{1FAFF}')
}

/// Whether `text` has zero-width characters (outside emoji sequences and a leading byte-order
/// mark) or bidirectional controls: the quick signal of the risk score.
pub fn has_hidden_characters(text: &str) -> bool {
    hidden_text(text, true, true, None).is_some()
}

fn hidden_text(
    text: &str,
    zero_width: bool,
    bidi: bool,
    phrases: Option<&AhoCorasick>,
) -> Option<RuleCheck> {
    let mut evidence = Vec::new();
    let (mut invisible, mut controls, mut injections) = (0usize, 0usize, 0usize);
    if zero_width || bidi {
        let mut prev: Option<char> = None;
        let mut iter = text.char_indices().peekable();
        while let Some((at, c)) = iter.next() {
            let next = iter.peek().map(|&(_, n)| n);
            let hidden = if zero_width && is_zero_width(c) {
                let emoji_joiner = c == '\u{200D}'
                    && prev.is_some_and(is_emoji_part)
                    && next.is_some_and(is_emoji_part);
                let byte_order_mark = c == '\u{FEFF}' && at == 0;
                !(emoji_joiner || byte_order_mark)
            } else {
                false
            };
            if hidden {
                invisible += 1;
            }
            let control = bidi && is_bidi_control(c);
            if control {
                controls += 1;
            }
            if (hidden || control) && evidence.len() < super::MAX_EVIDENCE {
                evidence.push(Evidence::new(
                    format!("U+{:04X}", c as u32),
                    at..at + c.len_utf8(),
                ));
            }
            prev = Some(c);
        }
    }
    if let Some(automaton) = phrases {
        for m in automaton.find_iter(text) {
            let (start, end) = (m.start(), m.end());
            let bounded = !text[..start].ends_with(|c: char| c.is_alphanumeric())
                && !text[end..].starts_with(|c: char| c.is_alphanumeric());
            if bounded {
                injections += 1;
                if evidence.len() < super::MAX_EVIDENCE {
                    evidence.push(Evidence::new("instruction phrase", start..end));
                }
            }
        }
    }
    if invisible + controls + injections == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if invisible > 0 {
        parts.push(format!("{invisible} zero-width character(s)"));
    }
    if controls > 0 {
        parts.push(format!("{controls} bidirectional control(s)"));
    }
    if injections > 0 {
        parts.push(format!(
            "{injections} instruction phrase(s) aimed at a model"
        ));
    }
    Some(RuleCheck {
        description: format!("hidden text: {}", parts.join(", ")),
        evidence,
    })
}

fn spam(text: &str, p: &SpamParams) -> Option<RuleCheck> {
    let mut reasons = Vec::new();
    let mut evidence = Vec::new();
    // Links.
    let lower = text.to_ascii_lowercase();
    let mut urls: Vec<Range<usize>> = Vec::new();
    for marker in ["https://", "http://", "www."] {
        for (at, _) in lower.match_indices(marker) {
            // `https://www.` counts once.
            if marker == "www." && lower[..at].ends_with("://") {
                continue;
            }
            let end = text[at..]
                .find(char::is_whitespace)
                .map_or(text.len(), |n| at + n);
            urls.push(at..end);
        }
    }
    if urls.len() > p.max_urls as usize {
        reasons.push(format!("{} links (more than {})", urls.len(), p.max_urls));
        urls.sort_by_key(|r| r.start);
        evidence.extend(urls.into_iter().map(|r| Evidence::new("link", r)));
    }
    // Repeated characters.
    let mut longest: (usize, Range<usize>) = (0, 0..0);
    let mut run: (Option<char>, usize, usize) = (None, 0, 0); // (char, count, start)
    for (at, c) in text.char_indices() {
        if run.0 == Some(c) {
            run.1 += 1;
        } else {
            run = (Some(c), 1, at);
        }
        if !c.is_whitespace() && run.1 > longest.0 {
            longest = (run.1, run.2..at + c.len_utf8());
        }
    }
    if longest.0 > p.max_repeated_chars as usize {
        reasons.push(format!(
            "a character repeated {} times in a row (more than {})",
            longest.0, p.max_repeated_chars
        ));
        evidence.push(Evidence::new("repeated character", longest.1));
    }
    // Shouting.
    let (mut letters, mut upper) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        if c.is_uppercase() {
            upper += 1;
        }
    }
    if letters >= p.min_letters_for_caps as usize && letters > 0 {
        let ratio = upper as f64 / letters as f64;
        if ratio > p.max_caps_ratio {
            reasons.push(format!(
                "{:.0}% of {letters} letters in capitals (more than {:.0}%)",
                ratio * 100.0,
                p.max_caps_ratio * 100.0
            ));
            evidence.push(Evidence::new("capitals", 0..text.len()));
        }
    }
    // Repeated text: word trigrams seen before.
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.len() >= p.min_words_for_repetition as usize && words.len() >= 3 {
        let trigrams: Vec<_> = words.windows(3).collect();
        let mut seen = BTreeSet::new();
        let repeats = trigrams.iter().filter(|t| !seen.insert(**t)).count();
        let ratio = repeats as f64 / trigrams.len() as f64;
        if ratio > p.max_repeated_trigram_ratio {
            reasons.push(format!(
                "{:.0}% of word trigrams repeated (more than {:.0}%)",
                ratio * 100.0,
                p.max_repeated_trigram_ratio * 100.0
            ));
            evidence.push(Evidence::new("repeated text", 0..text.len()));
        }
    }
    (!reasons.is_empty()).then(|| RuleCheck {
        description: format!("spam signals: {}", reasons.join("; ")),
        evidence,
    })
}
