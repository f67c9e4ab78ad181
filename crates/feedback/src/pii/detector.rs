//! The detector: built-in scanners, tenant patterns, allow and deny lists, overlap resolution.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexBuilder};

use super::config::{valid_entity_name, PiiConfig, PiiConfigError};
use super::scan::{char_after, char_before, context_near};
use super::{card, email, iban, ip, national_id, phone, EntityType, Finding, CONTEXT_BOOST};

/// Compiled size limit of one tenant pattern: generous for real patterns, bounded for memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
const CONTEXT_BEFORE: usize = 48;
const CONTEXT_AFTER: usize = 24;

/// Finds personal data in text, per a tenant's [`PiiConfig`].
///
/// Built once per configuration (patterns compiled, lists indexed), then shared: `detect`
/// takes `&self` and the detector is `Send + Sync`.
///
/// ```
/// use feedback::pii::{Detector, EntityType};
///
/// let detector = Detector::default();
/// let text = "Card 4111 1111 1111 1111 declined, call me on +44 20 7946 0958";
/// let found = detector.detect(text);
/// assert_eq!(found[0].entity, EntityType::CreditCard);
/// assert_eq!(&text[found[0].span.clone()], "4111 1111 1111 1111");
/// assert_eq!(found[1].entity, EntityType::PhoneNumber);
/// assert_eq!(&text[found[1].span.clone()], "+44 20 7946 0958");
/// ```
#[derive(Debug, Clone)]
pub struct Detector {
    enabled: Enabled,
    patterns: Vec<Pattern>,
    allow: HashSet<String>,
    deny: Option<Deny>,
    min_confidence: f32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Enabled {
    email: bool,
    phone: bool,
    card: bool,
    iban: bool,
    ip: bool,
    ssn: bool,
    nino: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    entity: EntityType,
    regex: Regex,
    confidence: f32,
    context: Vec<String>,
}

#[derive(Debug, Clone)]
struct Deny {
    automaton: AhoCorasick,
    entities: Vec<EntityType>,
}

impl Default for Detector {
    /// Every built-in recogniser, no tenant settings, minimum confidence 0.5.
    fn default() -> Self {
        Detector {
            enabled: Enabled {
                email: true,
                phone: true,
                card: true,
                iban: true,
                ip: true,
                ssn: true,
                nino: true,
            },
            patterns: Vec::new(),
            allow: HashSet::new(),
            deny: None,
            min_confidence: PiiConfig::default().min_confidence,
        }
    }
}

impl Detector {
    /// Validates `config` and builds its detector; errors name the offending field.
    pub fn new(config: &PiiConfig) -> Result<Detector, PiiConfigError> {
        let mut enabled = Enabled::default();
        for (i, entity) in config.entities.iter().enumerate() {
            let flag = match entity {
                EntityType::EmailAddress => &mut enabled.email,
                EntityType::PhoneNumber => &mut enabled.phone,
                EntityType::CreditCard => &mut enabled.card,
                EntityType::IbanCode => &mut enabled.iban,
                EntityType::IpAddress => &mut enabled.ip,
                EntityType::UsSsn => &mut enabled.ssn,
                EntityType::UkNino => &mut enabled.nino,
                EntityType::Custom(name) => {
                    return Err(PiiConfigError::UnknownEntity {
                        field: format!("entities[{i}]"),
                        name: name.clone(),
                    })
                }
            };
            *flag = true;
        }
        check_confidence("min_confidence", config.min_confidence)?;

        let mut patterns = Vec::with_capacity(config.patterns.len());
        for (i, pattern) in config.patterns.iter().enumerate() {
            if !valid_entity_name(&pattern.name) {
                return Err(PiiConfigError::InvalidName {
                    field: format!("patterns[{i}].name"),
                    name: pattern.name.clone(),
                });
            }
            check_confidence(&format!("patterns[{i}].confidence"), pattern.confidence)?;
            let regex = RegexBuilder::new(&pattern.regex)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| PiiConfigError::InvalidRegex {
                    field: format!("patterns[{i}].regex"),
                    message: e.to_string(),
                })?;
            if regex.is_match("") {
                return Err(PiiConfigError::EmptyMatch {
                    field: format!("patterns[{i}].regex"),
                });
            }
            let mut context = Vec::with_capacity(pattern.context.len());
            for (j, word) in pattern.context.iter().enumerate() {
                if word.trim().is_empty() {
                    return Err(PiiConfigError::Empty {
                        field: format!("patterns[{i}].context[{j}]"),
                    });
                }
                context.push(word.to_lowercase());
            }
            patterns.push(Pattern {
                entity: EntityType::from_name(&pattern.name),
                regex,
                confidence: pattern.confidence,
                context,
            });
        }

        let mut allow = HashSet::with_capacity(config.allow_list.len());
        for (i, value) in config.allow_list.iter().enumerate() {
            if value.is_empty() {
                return Err(PiiConfigError::Empty {
                    field: format!("allow_list[{i}]"),
                });
            }
            allow.insert(value.clone());
        }

        let deny = if config.deny_list.is_empty() {
            None
        } else {
            let mut entities = Vec::with_capacity(config.deny_list.len());
            for (i, entry) in config.deny_list.iter().enumerate() {
                if entry.value().is_empty() {
                    return Err(PiiConfigError::Empty {
                        field: format!("deny_list[{i}]"),
                    });
                }
                let name = entry.entity_name();
                if !valid_entity_name(name) {
                    return Err(PiiConfigError::InvalidName {
                        field: format!("deny_list[{i}].entity"),
                        name: name.to_owned(),
                    });
                }
                entities.push(EntityType::from_name(name));
            }
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(config.deny_list.iter().map(|entry| entry.value()))
                .map_err(|e| PiiConfigError::DenyList {
                    message: e.to_string(),
                })?;
            Some(Deny {
                automaton,
                entities,
            })
        };

        Ok(Detector {
            enabled,
            patterns,
            allow,
            deny,
            min_confidence: config.min_confidence,
        })
    }

    /// The findings in `text`: sorted by start, non-overlapping, spans on `char` boundaries.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.detect_into(text, &mut findings);
        findings
    }

    /// [`Detector::detect`] into a caller's buffer (cleared first), to reuse its allocation.
    pub fn detect_into(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        let on = self.enabled;
        if on.email {
            email::scan(text, out);
        }
        if on.card {
            card::scan(text, out);
        }
        if on.iban {
            iban::scan(text, out);
        }
        if on.ip {
            ip::scan_v4(text, out);
            ip::scan_v6(text, out);
        }
        if on.ssn {
            national_id::scan_ssn(text, out);
        }
        if on.nino {
            national_id::scan_nino(text, out);
        }
        if on.phone {
            phone::scan(text, out);
        }
        for pattern in &self.patterns {
            for m in pattern.regex.find_iter(text) {
                if m.is_empty() {
                    continue;
                }
                let span = m.range();
                let mut confidence = pattern.confidence;
                if !pattern.context.is_empty()
                    && context_near(text, &span, &pattern.context, CONTEXT_BEFORE, CONTEXT_AFTER)
                {
                    confidence += CONTEXT_BOOST;
                }
                out.push(Finding::new(pattern.entity.clone(), span, confidence));
            }
        }
        out.retain_mut(|finding| {
            finding.confidence = finding.confidence.min(1.0);
            finding.confidence >= self.min_confidence
                && !self.allow.contains(&text[finding.span.clone()])
        });
        // Deny-listed values are reported whatever the allow list and minimum confidence say.
        if let Some(deny) = &self.deny {
            for m in deny.automaton.find_overlapping_iter(text) {
                let span = m.range();
                if whole_words(text, &span) {
                    let entity = deny.entities[m.pattern().as_usize()].clone();
                    out.push(Finding::new(entity, span, 1.0));
                }
            }
        }
        resolve_overlaps(out);
    }
}

/// A deny-list value matches only as whole words: `Falcon` is not found in `Falconry`.
fn whole_words(text: &str, span: &std::ops::Range<usize>) -> bool {
    let value = &text[span.clone()];
    let edge = |inner: Option<char>, outer: Option<char>| {
        !(inner.is_some_and(char::is_alphanumeric) && outer.is_some_and(char::is_alphanumeric))
    };
    edge(value.chars().next(), char_before(text, span.start))
        && edge(value.chars().next_back(), char_after(text, span.end))
}

fn check_confidence(field: &str, value: f32) -> Result<(), PiiConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(PiiConfigError::OutOfRange {
            field: field.to_owned(),
            value,
        })
    }
}

/// Keeps non-overlapping findings, preferring the higher confidence, then the longer span,
/// then the earlier start; the result is sorted by start.
fn resolve_overlaps(findings: &mut Vec<Finding>) {
    if findings.len() > 1 {
        findings.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(b.span.len().cmp(&a.span.len()))
                .then(a.span.start.cmp(&b.span.start))
        });
        let mut kept = 0;
        for i in 0..findings.len() {
            let span = &findings[i].span;
            let overlaps = findings[..kept]
                .iter()
                .any(|k| k.span.start < span.end && span.start < k.span.end);
            if !overlaps {
                findings.swap(kept, i);
                kept += 1;
            }
        }
        findings.truncate(kept);
    }
    findings.sort_by_key(|finding| finding.span.start);
}
