//! Recommendation strategy per Weber segment and churn interventions per risk level.
//!
//! A [`RecommendationTable`] holds, for each of the four sensitivity segments, a `strategy` name
//! (stored as `recommendation_strategy` per customer) and an ordered list of recommendations
//! (`action`, `channel`, `rationale`; the first is the most important, so a response's
//! `priority` is the 1-based position), and for each [`RiskLevel`] an ordered list of churn
//! interventions of the same shape.
//!
//! The table is configuration, not code: [`RecommendationTable::from_toml_str`] loads a tenant's
//! own file (same shape as the default below) and validates it, every error naming the path of
//! the bad field (`segments.Insensitive.recommendations[1].channel: ...`). Rules: `strategy` and
//! `channel` are snake_case (`[a-z0-9_]`, starting with a letter) of at most 50 characters
//! (the `recommendation_strategy` column is `VARCHAR(50)` in the seed); `action` is non-empty and
//! at most 200 characters; `rationale` at most 500; every list has at least one entry; unknown
//! keys are errors (a typo must not silently drop a setting).
//!
//! The seed named no concrete table; ours follows its intent (Highly_Sensitive customers react
//! to relative change, so reassure and keep things stable; Insensitive customers barely notice
//! it, so upsell).
//!
//! ## The default table, in full
//!
//! [`RecommendationTable::default`] is this file, embedded at build time:
//!
#![doc = concat!("```toml\n", include_str!("recommendations.toml"), "```")]

use serde::{Deserialize, Serialize};
use weber::SensitivitySegment;

use crate::churn::RiskLevel;

/// The default table's TOML source (see the module docs).
pub const DEFAULT_TABLE_TOML: &str = include_str!("recommendations.toml");

/// Longest `strategy` or `channel`.
pub const MAX_NAME_LEN: usize = 50;
/// Longest `action`.
pub const MAX_ACTION_LEN: usize = 200;
/// Longest `rationale`.
pub const MAX_RATIONALE_LEN: usize = 500;

/// One recommended action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommendation {
    /// What to do, for a person to read.
    pub action: String,
    /// Where (snake_case: `email`, `in_app`, `web`, `support`, ...).
    pub channel: String,
    /// Why, shown when the caller asks for the rationale.
    pub rationale: String,
}

/// The plan for one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentPlan {
    /// Strategy name (snake_case, at most 50 characters).
    pub strategy: String,
    /// Recommendations, most important first.
    pub recommendations: Vec<Recommendation>,
}

/// A plan per segment (keys are the segments' wire names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentPlans {
    /// Highly_Sensitive.
    #[serde(rename = "Highly_Sensitive")]
    pub highly_sensitive: SegmentPlan,
    /// Moderately_Sensitive.
    #[serde(rename = "Moderately_Sensitive")]
    pub moderately_sensitive: SegmentPlan,
    /// Low_Sensitive.
    #[serde(rename = "Low_Sensitive")]
    pub low_sensitive: SegmentPlan,
    /// Insensitive.
    #[serde(rename = "Insensitive")]
    pub insensitive: SegmentPlan,
}

/// Churn interventions per risk level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interventions {
    /// For `low` risk.
    pub low: Vec<Recommendation>,
    /// For `medium` risk.
    pub medium: Vec<Recommendation>,
    /// For `high` risk.
    pub high: Vec<Recommendation>,
}

/// The whole table (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationTable {
    /// Plans per segment.
    pub segments: SegmentPlans,
    /// Interventions per risk level.
    pub interventions: Interventions,
}

/// A table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecommendationError {
    /// Not TOML of the expected shape.
    #[error("recommendation table: {0}")]
    Parse(String),
    /// A field breaks a rule.
    #[error("{path}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `segments.Insensitive.recommendations[1].channel`.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Default for RecommendationTable {
    /// The documented default table (the module docs show it in full).
    fn default() -> Self {
        // The embedded default is validated by a unit test, so this cannot fail; the fallback
        // only exists to keep `default()` panic-free whatever happens.
        Self::from_toml_str(DEFAULT_TABLE_TOML).unwrap_or_else(|_| Self::minimal())
    }
}

fn is_snake_case(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn invalid(path: String, reason: &str) -> RecommendationError {
    RecommendationError::Invalid {
        path,
        reason: reason.to_owned(),
    }
}

fn check_list(path: &str, list: &[Recommendation]) -> Result<(), RecommendationError> {
    if list.is_empty() {
        return Err(invalid(path.to_owned(), "needs at least one entry"));
    }
    for (i, r) in list.iter().enumerate() {
        let at = |field: &str| format!("{path}[{i}].{field}");
        if r.action.trim().is_empty() {
            return Err(invalid(at("action"), "must not be empty"));
        }
        if r.action.chars().count() > MAX_ACTION_LEN {
            return Err(invalid(at("action"), "longer than 200 characters"));
        }
        if !is_snake_case(&r.channel) || r.channel.len() > MAX_NAME_LEN {
            return Err(invalid(
                at("channel"),
                "must be snake_case ([a-z0-9_], starting with a letter) of at most 50 characters",
            ));
        }
        if r.rationale.chars().count() > MAX_RATIONALE_LEN {
            return Err(invalid(at("rationale"), "longer than 500 characters"));
        }
    }
    Ok(())
}

impl RecommendationTable {
    /// Parses and validates a table.
    ///
    /// ```
    /// use lifetime::recommend::{RecommendationTable, DEFAULT_TABLE_TOML};
    /// let table = RecommendationTable::from_toml_str(DEFAULT_TABLE_TOML)?;
    /// assert_eq!(table, RecommendationTable::default());
    ///
    /// let bad = DEFAULT_TABLE_TOML.replace("\"premium_upsell\"", "\"Premium Upsell\"");
    /// let err = RecommendationTable::from_toml_str(&bad).unwrap_err();
    /// assert!(err.to_string().starts_with("segments.Insensitive.strategy:"));
    /// # Ok::<(), lifetime::recommend::RecommendationError>(())
    /// ```
    ///
    /// # Errors
    /// [`RecommendationError::Parse`] for TOML or shape errors (toml's message names the key and
    /// line), [`RecommendationError::Invalid`] for rule violations.
    pub fn from_toml_str(source: &str) -> Result<Self, RecommendationError> {
        let table: Self =
            toml::from_str(source).map_err(|e| RecommendationError::Parse(e.to_string()))?;
        table.validate()?;
        Ok(table)
    }

    /// Checks the rules of the module docs.
    ///
    /// # Errors
    /// The first [`RecommendationError::Invalid`] found, naming the field's path.
    pub fn validate(&self) -> Result<(), RecommendationError> {
        for seg in SensitivitySegment::ALL {
            let plan = self.plan(seg);
            let path = format!("segments.{}", seg.as_str());
            if !is_snake_case(&plan.strategy) || plan.strategy.len() > MAX_NAME_LEN {
                return Err(invalid(
                    format!("{path}.strategy"),
                    "must be snake_case ([a-z0-9_], starting with a letter) of at most 50 characters",
                ));
            }
            check_list(&format!("{path}.recommendations"), &plan.recommendations)?;
        }
        for level in RiskLevel::ALL {
            check_list(
                &format!("interventions.{}", level.as_str()),
                self.interventions(level),
            )?;
        }
        Ok(())
    }

    fn plan(&self, segment: SensitivitySegment) -> &SegmentPlan {
        match segment {
            SensitivitySegment::HighlySensitive => &self.segments.highly_sensitive,
            SensitivitySegment::ModeratelySensitive => &self.segments.moderately_sensitive,
            SensitivitySegment::LowSensitive => &self.segments.low_sensitive,
            SensitivitySegment::Insensitive => &self.segments.insensitive,
        }
    }

    /// The plan (strategy and recommendations) of a segment.
    ///
    /// ```
    /// use lifetime::recommend::RecommendationTable;
    /// use weber::SensitivitySegment;
    /// let table = RecommendationTable::default();
    /// assert_eq!(
    ///     table.for_segment(SensitivitySegment::HighlySensitive).strategy,
    ///     "stability_reassurance"
    /// );
    /// ```
    #[must_use]
    pub fn for_segment(&self, segment: SensitivitySegment) -> &SegmentPlan {
        self.plan(segment)
    }

    /// The interventions for a churn risk level, most important first.
    #[must_use]
    pub fn interventions(&self, level: RiskLevel) -> &[Recommendation] {
        match level {
            RiskLevel::Low => &self.interventions.low,
            RiskLevel::Medium => &self.interventions.medium,
            RiskLevel::High => &self.interventions.high,
        }
    }

    /// A valid one-line-per-list table, only used if the embedded default were ever broken.
    fn minimal() -> Self {
        let one = |action: &str| {
            vec![Recommendation {
                action: action.to_owned(),
                channel: "email".to_owned(),
                rationale: String::new(),
            }]
        };
        let plan = |strategy: &str| SegmentPlan {
            strategy: strategy.to_owned(),
            recommendations: one("Send personalised product suggestions"),
        };
        Self {
            segments: SegmentPlans {
                highly_sensitive: plan("stability_reassurance"),
                moderately_sensitive: plan("value_messaging"),
                low_sensitive: plan("balanced_engagement"),
                insensitive: plan("premium_upsell"),
            },
            interventions: Interventions {
                low: one("Keep the regular engagement cadence"),
                medium: one("Send a personalised reminder"),
                high: one("Offer a win-back incentive"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_valid_and_has_the_documented_strategies() {
        let table = RecommendationTable::from_toml_str(DEFAULT_TABLE_TOML);
        assert!(table.is_ok(), "{table:?}");
        let table = RecommendationTable::default();
        let strategies: Vec<&str> = SensitivitySegment::ALL
            .iter()
            .map(|s| table.for_segment(*s).strategy.as_str())
            .collect();
        assert_eq!(
            strategies,
            [
                "stability_reassurance",
                "value_messaging",
                "balanced_engagement",
                "premium_upsell"
            ]
        );
        assert!(RiskLevel::ALL
            .iter()
            .all(|l| !table.interventions(*l).is_empty()));
        // The fallback is valid too.
        assert!(RecommendationTable::minimal().validate().is_ok());
    }

    fn check(edit: impl FnOnce(&mut RecommendationTable), path: &str) {
        let mut table = RecommendationTable::default();
        edit(&mut table);
        match table.validate() {
            Err(RecommendationError::Invalid { path: got, .. }) => assert_eq!(got, path),
            other => panic!("expected an error at {path}, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_path() {
        check(
            |t| t.segments.low_sensitive.strategy = "x".repeat(51),
            "segments.Low_Sensitive.strategy",
        );
        check(
            |t| t.segments.insensitive.recommendations[1].channel = "In App".into(),
            "segments.Insensitive.recommendations[1].channel",
        );
        check(
            |t| t.segments.highly_sensitive.recommendations[0].action = " ".into(),
            "segments.Highly_Sensitive.recommendations[0].action",
        );
        check(|t| t.interventions.high.clear(), "interventions.high");
        check(
            |t| t.interventions.medium[0].rationale = "r".repeat(501),
            "interventions.medium[0].rationale",
        );
    }

    #[test]
    fn unknown_keys_and_missing_segments_are_parse_errors() {
        let typo = DEFAULT_TABLE_TOML.replace("channel = \"web\"", "chanel = \"web\"");
        assert!(matches!(
            RecommendationTable::from_toml_str(&typo),
            Err(RecommendationError::Parse(m)) if m.contains("chanel")
        ));
        assert!(matches!(
            RecommendationTable::from_toml_str("[interventions]\nlow = []\n"),
            Err(RecommendationError::Parse(_))
        ));
    }
}
