//! The flag definition format (docs/flags.md) as the OpenAPI document states it. The `flags`
//! crate owns the format and stays free of documentation concerns, so these types mirror its
//! `model.rs` for the document only. They state every rule about a single field (types, bounds,
//! patterns, unknown fields); the rules across fields (the default variant is one of the
//! variants, weights sum to 10,000, prerequisites form no cycle...) are the validation's, 422.
// Schema-only types: never built.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

/// What kind of flag this is.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum FlagTypeName {
    Boolean,
    Percentage,
    Multivariate,
    Targeting,
    Operational,
}

/// Lifecycle status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum FlagStatusName {
    Draft,
    Active,
    Completed,
    Archived,
    Deprecated,
}

/// One possible value of a flag.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagVariant {
    /// Unique within the flag.
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$")]
    key: String,
    /// The value served: booleans for boolean and operational flags, otherwise any JSON.
    #[schema(value_type = serde_json::Value)]
    value: Value,
    /// Share of the split in basis points; the weights of a split sum to 10,000.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10000)]
    weight_bp: u32,
    /// The control group of an experiment (at most one per flag).
    #[serde(default)]
    control: bool,
}

/// A leaf test on a context attribute.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagCondition {
    /// Attribute name; `targetingKey` is the context's targeting key.
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$")]
    attribute: String,
    /// `in`, `not_in`, `equals`, `not_equals`, `starts_with`, `ends_with`, `contains`, `regex`,
    /// `eq`, `gt`, `gte`, `lt`, `lte`, `before`, `after`, `semver_eq`, `semver_gt`,
    /// `semver_lt`, `is_set`, `is_not_set`.
    op: String,
    /// The literal of most operators.
    #[schema(value_type = Option<serde_json::Value>)]
    value: Option<Value>,
    /// The literals of `in` and `not_in`.
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    values: Option<Vec<Value>>,
    #[serde(default)]
    negate: bool,
    #[serde(default)]
    case_insensitive: bool,
}

/// True when every member is true.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllGroup {
    #[schema(no_recursion)]
    all: Vec<FlagRuleGroup>,
}

/// True when at least one member is true.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnyGroup {
    #[schema(no_recursion)]
    any: Vec<FlagRuleGroup>,
}

/// True when no member is true.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoneGroup {
    #[schema(no_recursion)]
    none: Vec<FlagRuleGroup>,
}

/// A condition tree: a condition, or `all` / `any` / `none` of sub-trees (at most 8 deep).
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum FlagRuleGroup {
    #[schema(no_recursion)]
    All(AllGroup),
    #[schema(no_recursion)]
    Any(AnyGroup),
    #[schema(no_recursion)]
    None(NoneGroup),
    Condition(FlagCondition),
}

/// When `when` holds, serve `variant`, or split the matching users by `split`: exactly one of
/// the two.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagRule {
    /// Unique within the flag.
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$")]
    id: String,
    #[schema(no_recursion)]
    when: FlagRuleGroup,
    /// The variant served to everyone the rule matches.
    variant: Option<String>,
    split: Option<FlagRuleSplit>,
}

/// A rollout and weighted split among the users a rule matches (same buckets as the flag's
/// own split). Users outside the rollout get the default variant; later rules are not tried.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagRuleSplit {
    /// Share of the matching users in the rollout, basis points (absent: 10,000).
    #[schema(minimum = 0, maximum = 10000)]
    rollout_bp: Option<u32>,
    /// The variants and their shares, summing to 10,000 (absent: the flag's own weights).
    #[schema(min_items = 1)]
    variants: Option<Vec<FlagSplitVariant>>,
}

/// One variant of a rule's split.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagSplitVariant {
    /// A key of one of the flag's variants.
    variant: String,
    #[schema(minimum = 0, maximum = 10000)]
    weight_bp: u32,
}

/// Another flag that must be in one of `variants` first.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagPrerequisite {
    flag: String,
    #[schema(value_type = Vec<String>)]
    variants: Vec<String>,
}

/// Settings that replace the flag's own in one environment.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagEnvironmentOverride {
    enabled: Option<bool>,
    #[schema(minimum = 0, maximum = 10000)]
    rollout_bp: Option<u32>,
    default_variant: Option<String>,
    /// Serve this variant to everyone in the environment, before tenant, tier, prerequisite and
    /// rule targeting (reason `STATIC`). At most one of `variant` and `value`.
    variant: Option<String>,
    /// Serve this value (no variant) to everyone in the environment, like `variant`; the same
    /// JSON type as the default variant's value.
    #[schema(value_type = Option<serde_json::Value>)]
    value: Option<Value>,
}

/// A linear ramp of the rollout between two instants.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagRamp {
    /// RFC 3339.
    start: String,
    /// RFC 3339, after `start`.
    end: String,
    #[schema(minimum = 0, maximum = 10000)]
    from_bp: u32,
    #[schema(minimum = 0, maximum = 10000)]
    to_bp: u32,
}

/// Scheduled changes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagSchedule {
    /// RFC 3339: disabled before.
    enable_at: Option<String>,
    ramp: Option<FlagRamp>,
}

/// A feature flag definition (docs/flags.md).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagDefinition {
    /// 1-128 characters of A-Z a-z 0-9 _ - .
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    key: String,
    #[schema(inline)]
    r#type: FlagTypeName,
    #[schema(inline)]
    status: FlagStatusName,
    /// Free text: up to 2000 characters; tabs and line breaks are the only control
    /// characters allowed.
    #[schema(
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    description: Option<String>,
    #[schema(min_items = 1)]
    variants: Vec<FlagVariant>,
    default_variant: String,
    off_variant: String,
    #[serde(default)]
    rules: Vec<FlagRule>,
    /// Share of bucketing keys in the rollout, basis points (absent: 10,000).
    #[schema(minimum = 0, maximum = 10000)]
    rollout_bp: Option<u32>,
    /// Context attribute to bucket by (absent: the targeting key).
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$")]
    bucket_by: Option<String>,
    #[serde(default)]
    kill_switch: bool,
    /// By environment name (1-64 characters of A-Z a-z 0-9 _ - .).
    #[serde(default)]
    environments: BTreeMap<String, FlagEnvironmentOverride>,
    #[serde(default)]
    prerequisites: Vec<FlagPrerequisite>,
    #[serde(default)]
    tags: Vec<String>,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$")]
    owner: Option<String>,
    /// RFC 3339: disabled from then on.
    expires_at: Option<String>,
    #[serde(default)]
    allowed_tenants: Vec<String>,
    #[serde(default)]
    required_tiers: Vec<String>,
    schedule: Option<FlagSchedule>,
    #[serde(default)]
    track_exposure: bool,
    /// Count the flag's evaluations for usage analytics and the stale-flag report [default:
    /// true].
    #[serde(default = "yes")]
    track_events: bool,
}

fn yes() -> bool {
    true
}
