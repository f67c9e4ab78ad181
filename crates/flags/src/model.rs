//! The flag definition format: what an admin writes, imports and exports (see `docs/flags.md`).
//!
//! These types are plain data; [`crate::FlagSet::compile`] validates them and prepares them for
//! evaluation. Literals whose syntax matters (operators, regexes, dates, versions) are kept as
//! strings here so that a bad one is reported with its field path instead of a serde error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of flag this is; it constrains the variants and settings validation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    /// On/off, variant values are booleans.
    Boolean,
    /// A gradual rollout: needs a `rollout` percentage or a ramp.
    Percentage,
    /// Two or more variants split by weight (experiments).
    Multivariate,
    /// Variants chosen by targeting rules: needs at least one rule.
    Targeting,
    /// A long-lived operational switch (kill switch, maintenance mode); values are booleans.
    Operational,
}

/// Lifecycle status. Only `active` and `deprecated` flags serve their variants; the others serve
/// the off variant with reason `DISABLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagStatus {
    /// Being written; not served.
    Draft,
    /// Served.
    Active,
    /// The experiment or rollout is over; not served.
    Completed,
    /// Kept for history; not served.
    Archived,
    /// Still served, scheduled for removal.
    Deprecated,
}

/// One possible value of a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Name of the variant, unique within the flag.
    pub key: String,
    /// The value served (any JSON value).
    pub value: serde_json::Value,
    /// Share of the split in basis points (10,000 = 100 %); 0 or absent when the flag has no split.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_bp: u32,
    /// Whether this is the control group of an experiment (at most one per flag).
    #[serde(default, skip_serializing_if = "is_false")]
    pub control: bool,
}

/// One leaf test on a context attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Attribute name; `targetingKey` is the context's targeting key.
    pub attribute: String,
    /// Operator name, e.g. `in`, `gte`, `semver_gt` (see `docs/flags.md`).
    pub op: String,
    /// Single literal (most operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// List literal (`in`, `not_in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<serde_json::Value>>,
    /// Inverts the result.
    #[serde(default, skip_serializing_if = "is_false")]
    pub negate: bool,
    /// Compares strings ignoring case.
    #[serde(default, skip_serializing_if = "is_false")]
    pub case_insensitive: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A tree of conditions: a leaf, or `all` / `any` / `none` of sub-groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RuleGroup {
    /// True when every member is true (true when empty).
    All {
        /// Members.
        all: Vec<RuleGroup>,
    },
    /// True when at least one member is true (false when empty).
    Any {
        /// Members.
        any: Vec<RuleGroup>,
    },
    /// True when no member is true (true when empty).
    None {
        /// Members.
        none: Vec<RuleGroup>,
    },
    /// A single condition.
    Condition(Condition),
}

/// A targeting rule: when `when` holds, serve `variant`, or split the matching users by `split`.
/// Exactly one of `variant` and `split` is given (validation refuses both and neither).
///
/// Build rules from JSON (`serde_json::from_value`) rather than with a struct literal: the
/// format grows fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Identifier reported in the evaluation as the rule that matched.
    pub id: String,
    /// The condition tree.
    pub when: RuleGroup,
    /// Variant served to everyone the rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// A percentage rollout and weighted split among the users the rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<RuleSplit>,
}

/// The rollout and split of a rule: a share `rollout_bp` of the matching users (by the flag's
/// published rollout bucket) gets a variant chosen by `variants`' weights (by the flag's split
/// bucket); the others get the default variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSplit {
    /// Share of the matching bucketing keys in the rollout, basis points; absent means 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_bp: Option<u32>,
    /// The weighted variants, laid out in this order; absent means the flag's own weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<SplitVariant>>,
}

/// One variant of a rule's split and its share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitVariant {
    /// Key of one of the flag's variants.
    pub variant: String,
    /// Share in basis points; the shares of a split sum to 10,000.
    pub weight_bp: u32,
}

/// Another flag that must evaluate to one of `variants` before this flag is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prerequisite {
    /// Key of the prerequisite flag (in the same flag set).
    pub flag: String,
    /// Acceptable variants of it.
    pub variants: Vec<String>,
}

/// Per-environment settings that replace the flag's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentOverride {
    /// `false` disables the flag in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Replaces the rollout percentage (basis points) and any ramp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_bp: Option<u32>,
    /// Replaces the default variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_variant: Option<String>,
    /// Serves this variant to everyone in the environment, before tenant, tier, prerequisite
    /// and rule targeting (reason `STATIC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Serves this value (no variant) to everyone in the environment, like `variant`; of the
    /// same JSON type as the default variant's value. `null` is the same as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// A linear ramp of the rollout percentage between two instants (RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Start instant (RFC 3339); before it the rollout is `from_bp`.
    pub start: String,
    /// End instant (RFC 3339); from it on the rollout is `to_bp`.
    pub end: String,
    /// Rollout at the start, basis points.
    pub from_bp: u32,
    /// Rollout at the end, basis points.
    pub to_bp: u32,
}

/// Scheduled changes, evaluated against the `now` given to the evaluator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The flag is disabled before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_at: Option<String>,
    /// A rollout ramp; replaces `rollout_bp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

/// A feature flag definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// Unique key (`[A-Za-z0-9_.-]+`).
    pub key: String,
    /// Flag type.
    #[serde(rename = "type")]
    pub flag_type: FlagType,
    /// Lifecycle status.
    pub status: FlagStatus,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The possible values.
    pub variants: Vec<Variant>,
    /// Served when enabled and nothing else decides (and outside the rollout).
    pub default_variant: String,
    /// Served when the flag is disabled (kill switch, status, expiry, restrictions, prerequisites).
    pub off_variant: String,
    /// Targeting rules, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Share of bucketing keys that get the split (or the default variant when there is no
    /// split), basis points; absent means 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_bp: Option<u32>,
    /// Context attribute to bucket by; absent means the targeting key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
    /// `true` disables the flag everywhere, before anything else is looked at.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kill_switch: bool,
    /// Per-environment overrides, by environment name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, EnvironmentOverride>,
    /// Flags that must be in given variants first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<Prerequisite>,
    /// Free labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Owning person or team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// After this instant (RFC 3339) the flag is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When non-empty, only these tenants (context attribute `tenant`) get the flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tenants: Vec<String>,
    /// When non-empty, only these subscription tiers (context attribute `tier`) get the flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_tiers: Vec<String>,
    /// Scheduled changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Record who was served which variant (an exposure) on every evaluation, for experiment
    /// analysis. The evaluator only reports the setting; serving records the exposure.
    #[serde(default, skip_serializing_if = "is_false")]
    pub track_exposure: bool,
    /// Count the flag's evaluations for usage analytics (per variant and hour, and the last
    /// evaluation time that the stale-flag report reads). On unless `false`; left out when on,
    /// so definitions written before the field read back unchanged.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub track_events: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Defaults are left out when serialising, so a definition reads back as it was written.
fn is_zero(n: &u32) -> bool {
    *n == 0
}
