//! A tenant's feedback configuration (TOML), validated on load with path-named errors.
//!
//! Every section and field has a default, so an empty file is a valid configuration:
//!
//! ```toml
//! mode = "hybrid"            # research | production | hybrid
//! default_tier = "standard"  # realtime | priority | standard | batch
//! redaction = "tag"          # tag (<EMAIL_ADDRESS>) | pseudonym (<EMAIL_ADDRESS_3f2a…>, keyed)
//!
//! [pii]                      # the PII detector's settings (see `pii::PiiConfig`)
//! min_confidence = 0.5
//!
//! [toxicity]                 # lexicon changes (see `toxicity::ToxicityConfig`)
//! remove = ["hell"]
//!
//! [policy]
//! threshold = 0.8            # default: the mode's (research 0.8, hybrid 0.7, production 0.6)
//! veto = "critical"          # a fired rule at or above this fails the item; "none" disables
//! shipped_rules = true       # start from the shipped rule set
//! disable = ["harmless.profanity"]
//! [policy.weights]           # overrides of the mode's weights, by principle
//! HONEST = 1.0
//! [[policy.rules]]           # added rules; an id of a shipped rule replaces it
//! id = "aligned.competitor"
//! principle = "ALIGNED"
//! kind = "pattern"
//! severity = "low"
//! penalty = 0.2
//! params = { regex = '(?i)\bacme corp\b' }
//!
//! [hybrid]
//! full_check_tiers = ["realtime", "priority"]
//!
//! [privacy]                  # differentially private analytics (see `private_analytics`)
//! epsilon = 0.1              # default ε per query (default: research/hybrid 0.1, production 1.0)
//! contribution_cap = 5       # items per person counted in a query's window
//! regions = ["eu-west", "us-east"]  # public region groups; anything else is `other`
//! mechanism = "discrete_laplace"    # or "discrete_gaussian"
//! delta = 1e-6               # default δ per query, discrete_gaussian only
//!
//! [dual_write]               # forwarding to a legacy endpoint (see `forward::DualWriteConfig`)
//! enabled = false
//! ```
//!
//! The default mode is hybrid (full checks where risk or the tier calls for them, fast path
//! otherwise). Hybrid mode fully checks the realtime and priority tiers by default: those
//! items are answered or acted on within a second, before an asynchronous check could finish.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::forward::DualWriteConfig;
use crate::pii::PiiConfig;
use crate::policy::{Principle, RuleSpec};
use crate::private_analytics::Mechanism;
use crate::routing::{Mode, Tier};
use crate::toxicity::ToxicityConfig;

/// A refused configuration: the path of the fault (`policy.rules[3].penalty`) and what is
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Where the fault is, as a dotted path from the top of the file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// How PII is replaced in the stored, analysable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactionMode {
    /// By a type tag, `<EMAIL_ADDRESS>` (default).
    #[default]
    Tag,
    /// By a keyed pseudonym, consistent across a tenant's items; the key is passed per call
    /// (see [`crate::analysis::AnalyzeContext::pseudonym_key`]).
    Pseudonym,
}

/// A tenant's whole feedback configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    /// The processing mode (default hybrid).
    pub mode: ModeSetting,
    /// The tier of requests that name none (default standard).
    pub default_tier: TierSetting,
    /// How PII is replaced.
    pub redaction: RedactionMode,
    /// PII detection.
    pub pii: PiiConfig,
    /// Lexicon changes.
    pub toxicity: ToxicityConfig,
    /// The policy.
    pub policy: PolicyConfig,
    /// Hybrid routing.
    pub hybrid: HybridConfig,
    /// Differentially private analytics.
    pub privacy: PrivacyConfig,
    /// Forwarding accepted items to a legacy endpoint (dual-write during a migration).
    pub dual_write: DualWriteConfig,
}

/// The mode, defaulting to hybrid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModeSetting(pub Mode);

impl Default for ModeSetting {
    fn default() -> Self {
        ModeSetting(Mode::Hybrid)
    }
}

/// The default tier, defaulting to standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TierSetting(pub Tier);

impl Default for TierSetting {
    fn default() -> Self {
        TierSetting(Tier::Standard)
    }
}

/// The veto severity: a fired rule at or above it fails the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Veto {
    /// No veto: the score alone decides.
    None,
    /// Rules of severity low and above.
    Low,
    /// Medium and above.
    Medium,
    /// High and above.
    High,
    /// Critical only (default).
    Critical,
}

impl Veto {
    /// The least severity that vetoes, if any.
    pub fn severity(self) -> Option<crate::Severity> {
        use crate::Severity;
        match self {
            Veto::None => None,
            Veto::Low => Some(Severity::Low),
            Veto::Medium => Some(Severity::Medium),
            Veto::High => Some(Severity::High),
            Veto::Critical => Some(Severity::Critical),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The pass threshold in `[0, 1]` (default: the mode's).
    pub threshold: Option<f64>,
    /// The veto severity (default critical).
    pub veto: Veto,
    /// Start from the shipped rules (default true).
    pub shipped_rules: bool,
    /// Ids of shipped rules to leave out.
    pub disable: Vec<String>,
    /// Weight overrides by principle (default: the mode's weights).
    pub weights: BTreeMap<Principle, f64>,
    /// Added rules; one with a shipped rule's id replaces it.
    pub rules: Vec<RuleSpec>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            threshold: None,
            veto: Veto::Critical,
            shipped_rules: true,
            disable: Vec::new(),
            weights: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

/// `[hybrid]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HybridConfig {
    /// Tiers whose items always get full checks in hybrid mode (unless the queue is backed up).
    pub full_check_tiers: Vec<Tier>,
}

impl Default for HybridConfig {
    fn default() -> Self {
        HybridConfig {
            full_check_tiers: vec![Tier::Realtime, Tier::Priority],
        }
    }
}

/// Most regions a tenant may declare for `group_by = region`.
pub const MAX_PRIVACY_REGIONS: usize = 64;
/// Largest contribution cap.
pub const MAX_CONTRIBUTION_CAP: u32 = 1_000;

/// `[privacy]`: the tenant's differentially private analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The default ε per query (default: the mode's, research and hybrid 0.1, production 1.0).
    pub epsilon: Option<f64>,
    /// How many items of one person a query counts (the earliest in its window; default 5).
    pub contribution_cap: u32,
    /// The public region groups (labels as sent in items' `region`); others group as `other`.
    pub regions: Vec<String>,
    /// The default mechanism (default discrete Laplace).
    pub mechanism: Mechanism,
    /// The default δ per query of the discrete Gaussian mechanism (default 10⁻⁶).
    pub delta: Option<f64>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            epsilon: None,
            contribution_cap: 5,
            regions: Vec::new(),
            mechanism: Mechanism::DiscreteLaplace,
            delta: None,
        }
    }
}

impl PrivacyConfig {
    /// Checks the bounds of every field; the error names the path (`privacy.regions[2]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |path: String, message: String| ConfigError { path, message };
        if let Some(e) = self.epsilon {
            crate::private_analytics::query_epsilon(e, "epsilon")
                .map_err(|e| err("privacy.epsilon".into(), e.message))?;
        }
        if let Some(d) = self.delta {
            crate::private_analytics::query_delta(d, "delta")
                .map_err(|e| err("privacy.delta".into(), e.message))?;
        }
        if !(1..=MAX_CONTRIBUTION_CAP).contains(&self.contribution_cap) {
            return Err(err(
                "privacy.contribution_cap".into(),
                format!("must be in 1..={MAX_CONTRIBUTION_CAP}"),
            ));
        }
        if self.regions.len() > MAX_PRIVACY_REGIONS {
            return Err(err(
                "privacy.regions".into(),
                format!("at most {MAX_PRIVACY_REGIONS} regions"),
            ));
        }
        for (i, region) in self.regions.iter().enumerate() {
            let path = format!("privacy.regions[{i}]");
            if region.is_empty() || region.len() > crate::item::MAX_REGION_BYTES {
                return Err(err(
                    path,
                    format!("must be 1 to {} bytes", crate::item::MAX_REGION_BYTES),
                ));
            }
            if region == "other" {
                return Err(err(
                    path,
                    "`other` is the group of undeclared regions".into(),
                ));
            }
            if self.regions[..i].contains(region) {
                return Err(err(path, format!("{region:?} is declared twice")));
            }
        }
        Ok(())
    }
}

impl FeedbackConfig {
    /// Parses a configuration file's text (structure and types, and the `[dual_write]`
    /// section's values: build an [`Analyzer`](crate::analysis::Analyzer) to validate
    /// everything).
    pub fn parse(text: &str) -> Result<FeedbackConfig, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: FeedbackConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError {
                // serde_path_to_error writes `?` for a map key it could not read (an unknown
                // principle among the weights): the map's path names the fault well enough.
                path: e.path().to_string().replace(".?", ""),
                message: e.inner().message().trim().to_owned(),
            })?;
        config.dual_write.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Analyzer;

    fn privacy_error(toml: &str) -> ConfigError {
        let config = FeedbackConfig::parse(toml).unwrap_or_else(|e| panic!("{e}"));
        Analyzer::from_config(&config).map(|_| ()).unwrap_err()
    }

    #[test]
    fn the_privacy_section_is_validated_with_its_path() {
        let config = FeedbackConfig::parse("").unwrap();
        assert_eq!(config.privacy, PrivacyConfig::default());
        assert_eq!(config.privacy.contribution_cap, 5);
        assert_eq!(
            privacy_error("[privacy]\nepsilon = 0.0").path,
            "privacy.epsilon"
        );
        assert_eq!(
            privacy_error("[privacy]\ndelta = 0.5").path,
            "privacy.delta"
        );
        assert_eq!(
            privacy_error("[privacy]\ncontribution_cap = 0").path,
            "privacy.contribution_cap"
        );
        assert_eq!(
            privacy_error("[privacy]\nregions = [\"eu\", \"eu\"]").path,
            "privacy.regions[1]"
        );
        assert_eq!(
            privacy_error("[privacy]\nregions = [\"other\"]").path,
            "privacy.regions[0]"
        );
        let e = FeedbackConfig::parse("[privacy]\nmechanism = \"gauss\"").unwrap_err();
        assert_eq!(e.path, "privacy.mechanism");
    }
}
