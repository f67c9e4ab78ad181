//! # flags: feature flags and experiments
//!
//! A pure library (no I/O, no clock, no global randomness: "now" and seeds are inputs) for the
//! feature-flag and experiment engine of seed 002: the flag model, its validation and
//! evaluation with deterministic bucketing ([`FlagSet`], [`bucket()`]; specified in
//! `docs/flags.md`), the experiment lifecycle and analysis ([`experiment`]) and the statistics
//! behind it ([`stats`]). Serving (OFREP, the admin API) and storage belong to the adapter
//! crates.

#![warn(missing_docs)]

pub mod bucket;
pub mod context;
pub mod eval;
pub mod experiment;
pub mod guard;
pub mod model;
pub mod staleness;
pub mod stats;

pub use bucket::{bucket, murmur3_x86_32, variant_index, BUCKETS};
pub use context::{
    AttributeValue, ContextError, EvaluationContext, MAX_CONTEXT_DEPTH, MAX_TARGETING_KEY_BYTES,
    TARGETING_KEY,
};
pub use eval::{
    is_valid_flag_key, parse_instant_ms, DisabledBy, ErrorCode, Evaluation, FlagSet, LoadError,
    Reason, ValidationError,
};
pub use model::{
    Condition, EnvironmentOverride, Flag, FlagStatus, FlagType, Prerequisite, Ramp, Rule,
    RuleGroup, RuleSplit, Schedule, SplitVariant, Variant,
};
pub use staleness::{single_variant_served, stale_reasons, StaleReason, StalenessInputs};
