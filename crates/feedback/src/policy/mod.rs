//! The policy ("constitutional") engine: seven principles, rules as data, an alignment score
//! and an explanation trace.
//!
//! # Principles and weights
//!
//! Seed 004's principles with its research weights: HARMLESS 3.0, PRIVACY 2.5, ALIGNED 2.5,
//! HONEST 2.0, TRANSPARENT 2.0, FAIR 1.5, HELPFUL 1.0 ([`PrincipleWeights::research`]). The
//! seed gives no production defaults; ours ([`PrincipleWeights::production`]) weigh what an
//! operator is liable for (PRIVACY 3.0, HARMLESS 3.0, FAIR 2.0) above noisy signals (HONEST 1.0,
//! where sarcasm fools sentiment; HELPFUL 0.5). Hybrid mode runs the research pipeline on risky
//! items and uses the research weights. Thresholds: research 0.8 (seed), hybrid 0.7 (the seed's
//! `SAFETY_THRESHOLD=0.7` of its hybrid setup), production 0.6 (checks run after the item was
//! accepted, so the threshold only decides what is flagged for review; a lower one keeps the
//! review queue to clear cases). See [`crate::routing::Mode`].
//!
//! # Rules
//!
//! Each principle is backed by [`Rule`]s (TOML, [`SHIPPED_RULES`] by default, per tenant in
//! [`crate::config::FeedbackConfig`]): an id, a principle, a [`RuleKind`] with parameters, a
//! [`Severity`] and a penalty in `(0, 1]`. A rule fires at most once per item, with evidence.
//!
//! # Formula
//!
//! For each principle `p` with weight `w_p`, the penalties `π_r` of its fired rules are summed;
//! if the sum exceeds 1 each is scaled by `1 / sum`, so the principle's loss
//! `loss_p = min(1, Σ π_r)` is at most 1. The scaled penalty of rule `r` is
//! `π'_r = π_r · min(1, 1 / Σ π)`. Then
//!
//! ```text
//! score_p   = 1 − loss_p
//! alignment = Σ_p w_p · score_p / Σ_p w_p            (over all seven principles)
//! contrib_r = w_p · π'_r / Σ_p w_p                   (for each fired rule r of principle p)
//! alignment = 1 − Σ_r contrib_r                      (exactly)
//! ```
//!
//! The counterfactual alignment of a fired rule is recomputed with every other fired rule
//! (so rescaling within its principle is redone), which can differ from
//! `alignment + contrib_r` when the principle's penalties were scaled.
//!
//! An item *passes* when `alignment ≥ threshold` and no fired rule is at or above the veto
//! severity (default `critical`). The veto exists because a weighted mean caps what one
//! principle can cost (HARMLESS at most 3.0 / 14.5 ≈ 0.21 of the research score), so a credible
//! threat alone could never fail the research threshold of 0.8.
//!
//! The trace never copies text: evidence is an entity type or lexicon category and a span.
//!
//! ```
//! use feedback::policy::{Policy, PolicyInput, PrincipleWeights, shipped_rules};
//! use feedback::toxicity::{ToxicityConfig, ToxicityMatcher};
//! let policy = Policy::new(shipped_rules().unwrap(), PrincipleWeights::research(), 0.8).unwrap();
//! let text = "Great app, 5 stars, but the support agent is an idiot";
//! let toxicity = ToxicityMatcher::new(&ToxicityConfig::default()).unwrap().scan(text);
//! let input = PolicyInput { text: Some(text), rating: Some(5), findings: &[], toxicity: &toxicity,
//!     sentiment: Some(sentiment::score(text)) };
//! let outcome = policy.evaluate(&input);
//! assert_eq!(outcome.trace[0].rule_id, "harmless.insult");
//! let sum: f64 = outcome.trace.iter().map(|f| f.contribution).sum();
//! assert!((1.0 - sum - outcome.alignment).abs() < 1e-12);
//! ```

mod rules;

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

pub use rules::{
    compile_rules, has_hidden_characters, parse_rules, shipped_rules, Evidence, HiddenTextParams,
    LexiconParams, LowInformationParams, MismatchParams, PatternParams, PiiParams, Rule, RuleCheck,
    RuleKind, RuleSpec, SpamParams, ThreatParams, SHIPPED_RULES,
};

use crate::pii::Finding;
use crate::severity::Severity;
use crate::toxicity::ToxicityReport;

/// One of seed 004's seven constitutional principles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Principle {
    /// The feedback carries information.
    Helpful,
    /// No abuse, threats or sexual content.
    Harmless,
    /// The rating and the text agree.
    Honest,
    /// No unredacted personal data.
    Privacy,
    /// No hidden text or instructions aimed at downstream models.
    Transparent,
    /// No attacks on protected attributes.
    Fair,
    /// Genuine feedback, not spam or solicitation.
    Aligned,
}

impl Principle {
    /// All seven, in the seed's order.
    pub const ALL: [Principle; 7] = [
        Principle::Helpful,
        Principle::Harmless,
        Principle::Honest,
        Principle::Privacy,
        Principle::Transparent,
        Principle::Fair,
        Principle::Aligned,
    ];

    /// The seed's name (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Principle::Helpful => "HELPFUL",
            Principle::Harmless => "HARMLESS",
            Principle::Honest => "HONEST",
            Principle::Privacy => "PRIVACY",
            Principle::Transparent => "TRANSPARENT",
            Principle::Fair => "FAIR",
            Principle::Aligned => "ALIGNED",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Principle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A weight per principle (non-negative, not all zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrincipleWeights([f64; 7]);

impl PrincipleWeights {
    /// Seed 004's research weights.
    pub fn research() -> Self {
        Self::from_pairs(&[
            (Principle::Helpful, 1.0),
            (Principle::Harmless, 3.0),
            (Principle::Honest, 2.0),
            (Principle::Privacy, 2.5),
            (Principle::Transparent, 2.0),
            (Principle::Fair, 1.5),
            (Principle::Aligned, 2.5),
        ])
    }

    /// Our production weights (the seed has none): see the module docs.
    pub fn production() -> Self {
        Self::from_pairs(&[
            (Principle::Helpful, 0.5),
            (Principle::Harmless, 3.0),
            (Principle::Honest, 1.0),
            (Principle::Privacy, 3.0),
            (Principle::Transparent, 1.5),
            (Principle::Fair, 2.0),
            (Principle::Aligned, 2.0),
        ])
    }

    /// Hybrid mode's weights: the research ones (hybrid runs the research checks on risky
    /// items).
    pub fn hybrid() -> Self {
        Self::research()
    }

    fn from_pairs(pairs: &[(Principle, f64)]) -> Self {
        let mut w = [0.0; 7];
        for &(p, v) in pairs {
            w[p.index()] = v;
        }
        PrincipleWeights(w)
    }

    /// The weight of `principle`.
    pub fn get(&self, principle: Principle) -> f64 {
        self.0[principle.index()]
    }

    /// Sets the weight of `principle` (checked by [`Policy::new`]).
    pub fn set(&mut self, principle: Principle, weight: f64) {
        self.0[principle.index()] = weight;
    }

    /// The sum of all weights.
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }

    /// The first principle whose weight is not finite and non-negative, or an error when all
    /// are zero.
    pub fn check(&self) -> Result<(), (Option<Principle>, String)> {
        for p in Principle::ALL {
            let w = self.get(p);
            if !(w.is_finite() && w >= 0.0) {
                return Err((Some(p), format!("must be a finite number ≥ 0, got {w}")));
            }
        }
        if self.total() <= 0.0 {
            return Err((None, "at least one weight must be above 0".into()));
        }
        Ok(())
    }
}

/// A refused policy: the path of the fault (`rules[3].penalty`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// Where the fault is.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What the policy looks at for one item. The text is the item's text as received
/// (unredacted); `findings` are the PII detector's findings in it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// The item's text.
    pub text: Option<&'a str>,
    /// The item's rating.
    pub rating: Option<u8>,
    /// PII found in the text.
    pub findings: &'a [Finding],
    /// Toxicity of the text.
    pub toxicity: &'a ToxicityReport,
    /// VADER scores of the text (needed by `rating_sentiment_mismatch`).
    pub sentiment: Option<sentiment::Scores>,
}

/// The policy of a tenant and mode: compiled rules, weights, threshold and veto.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    weights: PrincipleWeights,
    threshold: f64,
    veto: Option<Severity>,
}

/// The score of one principle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrincipleScore {
    /// The principle.
    pub principle: Principle,
    /// Its weight.
    pub weight: f64,
    /// `1 − loss`, in `[0, 1]`.
    pub score: f64,
}

/// A fired rule in the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiredRule {
    /// The rule's id.
    pub rule_id: String,
    /// Its principle.
    pub principle: Principle,
    /// Its kind.
    pub kind: RuleKind,
    /// Its severity.
    pub severity: Severity,
    /// Its penalty as configured.
    pub penalty: f64,
    /// Its penalty after scaling within the principle.
    pub scaled_penalty: f64,
    /// How much it lowered the alignment: `w_p · scaled_penalty / Σ w`.
    pub contribution: f64,
    /// The alignment had it not fired (recomputed).
    pub counterfactual_alignment: f64,
    /// What it found, without excerpts of the text.
    pub description: String,
    /// Where (at most [`MAX_EVIDENCE`] spans).
    pub evidence: Vec<Evidence>,
}

/// Most evidence spans kept per fired rule.
pub const MAX_EVIDENCE: usize = 16;

/// How many fired rules of a principle and severity (for
/// `constitutional_violations_total{principle,severity}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ViolationCount {
    /// The principle.
    pub principle: Principle,
    /// The severity.
    pub severity: Severity,
    /// How many rules fired.
    pub count: u32,
}

/// The verdict of the policy on one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyOutcome {
    /// The weighted alignment score in `[0, 1]`.
    pub alignment: f64,
    /// The mode's threshold.
    pub threshold: f64,
    /// `alignment ≥ threshold` and no veto.
    pub passed: bool,
    /// The fired rule at or above the veto severity that failed the item, if any.
    pub vetoed_by: Option<String>,
    /// Every principle's score, in the seed's order.
    pub principles: Vec<PrincipleScore>,
    /// Every fired rule, in rule order.
    pub trace: Vec<FiredRule>,
    /// Fired rules by principle and severity.
    pub violations: Vec<ViolationCount>,
}

impl Policy {
    /// A policy from compiled rules, weights and a threshold in `[0, 1]`, vetoing items with
    /// a fired `critical` rule.
    pub fn new(
        rules: Vec<Rule>,
        weights: PrincipleWeights,
        threshold: f64,
    ) -> Result<Policy, PolicyError> {
        if let Err((p, message)) = weights.check() {
            return Err(PolicyError {
                path: p.map_or_else(|| "weights".into(), |p| format!("weights.{p}")),
                message,
            });
        }
        if !(0.0..=1.0).contains(&threshold) {
            return Err(PolicyError {
                path: "threshold".into(),
                message: format!("must be within 0..1, got {threshold}"),
            });
        }
        Ok(Policy {
            rules,
            weights,
            threshold,
            veto: Some(Severity::Critical),
        })
    }

    /// Changes the veto severity (`None`: the score alone decides).
    pub fn with_veto(mut self, veto: Option<Severity>) -> Policy {
        self.veto = veto;
        self
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The weights.
    pub fn weights(&self) -> &PrincipleWeights {
        &self.weights
    }

    /// The threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Runs every rule on `input` and scores the result (see the module docs).
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> PolicyOutcome {
        let text = input.text.unwrap_or("");
        let mut fired: Vec<(usize, RuleCheck)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(check) = rule.check(input) {
                fired.push((i, check));
            }
        }
        let principles_of: Vec<Principle> = fired
            .iter()
            .map(|(i, _)| self.rules[*i].principle)
            .collect();
        let penalties: Vec<f64> = fired.iter().map(|(i, _)| self.rules[*i].penalty).collect();
        let total_weight = self.weights.total();
        let (alignment, scores, scaled) = self.score(&principles_of, &penalties, None);
        let mut trace = Vec::with_capacity(fired.len());
        let mut vetoed_by = None;
        let mut violations: Vec<ViolationCount> = Vec::new();
        let mut offsets = CharOffsets::new(text);
        for (k, (i, check)) in fired.into_iter().enumerate() {
            let rule = &self.rules[i];
            let (counterfactual, _, _) = self.score(&principles_of, &penalties, Some(k));
            if vetoed_by.is_none() && self.veto.is_some_and(|v| rule.severity >= v) {
                vetoed_by = Some(rule.id.clone());
            }
            match violations
                .iter_mut()
                .find(|v| v.principle == rule.principle && v.severity == rule.severity)
            {
                Some(v) => v.count += 1,
                None => violations.push(ViolationCount {
                    principle: rule.principle,
                    severity: rule.severity,
                    count: 1,
                }),
            }
            let mut evidence = check.evidence;
            evidence.truncate(MAX_EVIDENCE);
            for e in &mut evidence {
                e.chars = offsets.chars(&e.bytes);
            }
            trace.push(FiredRule {
                rule_id: rule.id.clone(),
                principle: rule.principle,
                kind: rule.kind(),
                severity: rule.severity,
                penalty: rule.penalty,
                scaled_penalty: scaled[k],
                contribution: self.weights.get(rule.principle) * scaled[k] / total_weight,
                counterfactual_alignment: counterfactual,
                description: check.description,
                evidence,
            });
        }
        violations.sort_by_key(|v| (v.principle, v.severity));
        PolicyOutcome {
            alignment,
            threshold: self.threshold,
            passed: alignment >= self.threshold && vetoed_by.is_none(),
            vetoed_by,
            principles: Principle::ALL
                .iter()
                .map(|&p| PrincipleScore {
                    principle: p,
                    weight: self.weights.get(p),
                    score: scores[p.index()],
                })
                .collect(),
            trace,
            violations,
        }
    }

    /// Alignment, per-principle scores and scaled penalties of the fired rules (`principles`
    /// and `penalties` side by side), leaving out fired rule `without` if given.
    fn score(
        &self,
        principles: &[Principle],
        penalties: &[f64],
        without: Option<usize>,
    ) -> (f64, [f64; 7], Vec<f64>) {
        let mut sums = [0.0f64; 7];
        for (k, (p, penalty)) in principles.iter().zip(penalties).enumerate() {
            if Some(k) != without {
                sums[p.index()] += penalty;
            }
        }
        let scale: [f64; 7] = sums.map(|s| if s > 1.0 { 1.0 / s } else { 1.0 });
        let scaled: Vec<f64> = principles
            .iter()
            .zip(penalties)
            .enumerate()
            .map(|(k, (p, penalty))| {
                if Some(k) == without {
                    0.0
                } else {
                    penalty * scale[p.index()]
                }
            })
            .collect();
        let scores = sums.map(|s| 1.0 - s.min(1.0));
        let total = self.weights.total();
        let alignment = Principle::ALL
            .iter()
            .map(|&p| self.weights.get(p) * scores[p.index()])
            .sum::<f64>()
            / total;
        (alignment.clamp(0.0, 1.0), scores, scaled)
    }
}

/// Byte to character offsets for ascending or arbitrary byte positions of one text.
struct CharOffsets<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharOffsets<'a> {
    fn new(text: &'a str) -> Self {
        CharOffsets {
            text,
            byte: 0,
            chars: 0,
        }
    }

    fn char_at(&mut self, byte: usize) -> usize {
        let byte = byte.min(self.text.len());
        if byte < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        let piece = self.text.get(self.byte..byte).unwrap_or("");
        self.chars += piece.chars().count();
        self.byte = byte;
        self.chars
    }

    fn chars(&mut self, bytes: &Range<usize>) -> Range<usize> {
        let start = self.char_at(bytes.start);
        let end = self.char_at(bytes.end);
        start..end
    }
}
