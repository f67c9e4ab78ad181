//! # flags: feature flags and experiments
//!
//! A pure library (no I/O, no clock, no global randomness: "now" and seeds are inputs) for the
//! feature-flag and experiment engine of seed 002. The HTTP layer (OFREP, the admin API, the
//! change stream) lives in `server`; flag configurations are stored by `store`.

#![warn(missing_docs)]

pub mod bucket;
pub mod context;
pub mod eval;
pub mod model;

pub use bucket::{bucket, murmur3_x86_32, variant_index, BUCKETS};
pub use context::{AttributeValue, EvaluationContext, TARGETING_KEY};
pub use eval::{
    parse_instant_ms, DisabledBy, ErrorCode, Evaluation, FlagSet, LoadError, Reason,
    ValidationError,
};
pub use model::{
    Condition, EnvironmentOverride, Flag, FlagStatus, FlagType, Prerequisite, Ramp, Rule,
    RuleGroup, Schedule, Variant,
};
