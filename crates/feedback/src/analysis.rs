//! The engine's entry point for the adapters: [`Analyzer`].
//!
//! [`Analyzer::from_config`] compiles a tenant's [`FeedbackConfig`] once (PII detector,
//! lexicon, rules); [`Analyzer::analyze`] then runs on every item, from any thread:
//!
//! 1. the fast path ([`Analyzer::quick_check`]): PII findings and the redacted text, toxicity,
//!    hidden characters, and the risk score;
//! 2. VADER sentiment of the text;
//! 3. the route for the tenant's mode, the item's tier and the queue depth;
//! 4. the full policy, if the route says so (or the caller forces it, as the asynchronous check
//!    of the fast path does).
//!
//! The policy sees the text as received: PII in it is a PRIVACY violation even though the
//! stored text is redacted.

use std::collections::BTreeSet;

use crate::config::{ConfigError, FeedbackConfig, RedactionMode};
use crate::item::FeedbackItem;
use crate::pii::Finding;
use crate::pii::{redact, Detector, Redaction};
use crate::policy::{compile_rules, parse_rules, Policy, PolicyInput, PolicyOutcome, Rule};
use crate::routing::{self, Checks, Mode, RiskSignals, Route, RouteInputs, Tier};
use crate::toxicity::{ToxicityMatcher, ToxicityReport};

/// Per-call inputs that are not part of the item.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnalyzeContext<'a> {
    /// The request's tier (default: the configuration's default tier).
    pub tier: Option<Tier>,
    /// Items waiting in the queues now (hybrid mode takes the fast path above 10,000).
    pub queue_depth: u64,
    /// The tenant's pseudonymisation key, for `redaction = "pseudonym"`. Without it the
    /// text is redacted by type tag (never left in clear).
    pub pseudonym_key: Option<&'a [u8]>,
    /// Run the full policy whatever the route (the asynchronous check of a fast-path item).
    pub force_full_checks: bool,
}

/// The fast path's result.
#[derive(Debug, Clone, PartialEq)]
pub struct QuickCheck {
    /// PII in the text (byte spans, sorted, non-overlapping).
    pub findings: Vec<Finding>,
    /// The text with PII replaced, if the item has a text.
    pub text_redacted: Option<String>,
    /// Toxicity of the text.
    pub toxicity: ToxicityReport,
    /// Whether zero-width characters or bidirectional controls are in the text.
    pub hidden_text: bool,
    /// The risk score in `[0, 1]`.
    pub risk: f64,
}

/// Everything the engine says about one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// PII in the text (byte spans, sorted, non-overlapping).
    pub findings: Vec<Finding>,
    /// The text with PII replaced, if the item has a text.
    pub text_redacted: Option<String>,
    /// VADER scores of the text, if it has one.
    pub sentiment: Option<sentiment::Scores>,
    /// Toxicity of the text.
    pub toxicity: ToxicityReport,
    /// The policy's verdict, if full checks ran.
    pub policy: Option<PolicyOutcome>,
    /// The risk score in `[0, 1]`.
    pub risk: f64,
    /// The routing decision.
    pub route: Route,
}

/// A tenant's compiled feedback engine. `Send + Sync`: build once, share across threads.
#[derive(Debug, Clone)]
pub struct Analyzer {
    mode: Mode,
    default_tier: Tier,
    full_check_tiers: Vec<Tier>,
    redaction: RedactionMode,
    detector: Detector,
    toxicity: ToxicityMatcher,
    policy: Policy,
}

impl Analyzer {
    /// Validates and compiles `config`; errors name the path of the fault.
    pub fn from_config(config: &FeedbackConfig) -> Result<Analyzer, ConfigError> {
        let mode = config.mode.0;
        config.privacy.validate()?;
        let detector = Detector::new(&config.pii).map_err(|e| prefixed("pii", &e.to_string()))?;
        let toxicity = ToxicityMatcher::new(&config.toxicity).map_err(|e| ConfigError {
            path: format!("toxicity.{}", e.path),
            message: e.message,
        })?;
        let policy_config = &config.policy;
        let shipped: Vec<Rule> = if policy_config.shipped_rules {
            parse_rules(crate::policy::SHIPPED_RULES).map_err(|e| ConfigError {
                path: format!("shipped rules: {}", e.path),
                message: e.message,
            })?
        } else {
            Vec::new()
        };
        let shipped_ids: BTreeSet<&str> = shipped.iter().map(|r| r.id.as_str()).collect();
        for (i, id) in policy_config.disable.iter().enumerate() {
            if !shipped_ids.contains(id.as_str()) {
                return Err(ConfigError {
                    path: format!("policy.disable[{i}]"),
                    message: format!("no shipped rule has the id {id:?}"),
                });
            }
        }
        let added =
            compile_rules(&policy_config.rules, "policy.rules").map_err(|e| ConfigError {
                path: e.path,
                message: e.message,
            })?;
        let added_ids: BTreeSet<String> = added.iter().map(|r| r.id.clone()).collect();
        let mut rules: Vec<Rule> = shipped
            .into_iter()
            .filter(|r| !policy_config.disable.contains(&r.id) && !added_ids.contains(&r.id))
            .collect();
        rules.extend(added);
        let mut weights = mode.weights();
        for (&principle, &w) in &policy_config.weights {
            weights.set(principle, w);
        }
        let threshold = policy_config.threshold.unwrap_or(mode.settings().threshold);
        let policy = Policy::new(rules, weights, threshold)
            .map_err(|e| prefixed("policy", &e.to_string()))?
            .with_veto(policy_config.veto.severity());
        Ok(Analyzer {
            mode,
            default_tier: config.default_tier.0,
            full_check_tiers: config.hybrid.full_check_tiers.clone(),
            redaction: config.redaction,
            detector,
            toxicity,
            policy,
        })
    }

    /// The tenant's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The tier of requests that name none.
    pub fn default_tier(&self) -> Tier {
        self.default_tier
    }

    /// The compiled policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The fast path: PII (and the redacted text), toxicity, hidden characters and risk.
    pub fn quick_check(&self, item: &FeedbackItem, ctx: &AnalyzeContext<'_>) -> QuickCheck {
        let Some(text) = item.text.as_deref() else {
            let risk = routing::risk_score(&RiskSignals {
                rating: item.rating,
                ..RiskSignals::default()
            });
            return QuickCheck {
                findings: Vec::new(),
                text_redacted: None,
                toxicity: ToxicityReport::default(),
                hidden_text: false,
                risk,
            };
        };
        let findings = self.detector.detect(text);
        let text_redacted = if findings.is_empty() {
            text.to_owned()
        } else {
            let redaction = match (self.redaction, ctx.pseudonym_key) {
                (RedactionMode::Pseudonym, Some(key)) => Redaction::Pseudonym { key: key.to_vec() },
                _ => Redaction::Tag,
            };
            redact(text, &findings, &redaction)
        };
        let toxicity = self.toxicity.scan(text);
        let hidden_text = crate::policy::has_hidden_characters(text);
        let risk = routing::risk_score(&RiskSignals {
            pii_found: !findings.is_empty(),
            toxicity_score: toxicity.score,
            max_severity: toxicity.max_severity,
            hidden_text,
            rating: item.rating,
            text_chars: text.chars().count(),
        });
        QuickCheck {
            findings,
            text_redacted: Some(text_redacted),
            toxicity,
            hidden_text,
            risk,
        }
    }

    /// Analyses one item: the fast path, sentiment, the route, and the policy when the route
    /// (or `ctx.force_full_checks`) calls for full checks.
    pub fn analyze(&self, item: &FeedbackItem, ctx: &AnalyzeContext<'_>) -> Analysis {
        let quick = self.quick_check(item, ctx);
        let sentiment = item.text.as_deref().map(sentiment::score);
        let tier = ctx.tier.unwrap_or(self.default_tier);
        let route = routing::route(
            self.mode,
            &RouteInputs {
                risk: quick.risk,
                tier,
                queue_depth: ctx.queue_depth,
                tier_demands_full: self.full_check_tiers.contains(&tier),
            },
        );
        let policy = (route.checks == Checks::Full || ctx.force_full_checks).then(|| {
            self.policy.evaluate(&PolicyInput {
                text: item.text.as_deref(),
                rating: item.rating,
                findings: &quick.findings,
                toxicity: &quick.toxicity,
                sentiment,
            })
        });
        Analysis {
            findings: quick.findings,
            text_redacted: quick.text_redacted,
            sentiment,
            toxicity: quick.toxicity,
            policy,
            risk: quick.risk,
            route,
        }
    }
}

fn prefixed(section: &str, error: &str) -> ConfigError {
    // The section's errors read "path: message"; the path is relative to the section.
    match error.split_once(": ") {
        Some((path, message)) => ConfigError {
            path: format!("{section}.{path}"),
            message: message.to_owned(),
        },
        None => ConfigError {
            path: section.to_owned(),
            message: error.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyzer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Analyzer>();
    }
}
