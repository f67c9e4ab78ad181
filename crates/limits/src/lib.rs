//! # limits: rate limiting
//!
//! A pure library (no I/O, no clock: time is `now_ns`, monotonic nanoseconds passed in) for
//! the rate limiting of seed 002: five admission algorithms with exact, documented guarantees
//! ([`algo`]), a sharded keyed limiter in bounded memory with expiry of idle keys
//! ([`KeyedLimiter`]), and the rule policy read from TOML ([`Config`], [`Policy`]) with scopes,
//! tier overrides, path patterns, methods, endpoint costs and throttle actions. The format and
//! the guarantees are specified in `docs/limits.md`. Serving (headers, 429) and the shared Redis
//! backend belong to the adapter crates.

#![warn(missing_docs)]

pub mod algo;
pub mod config;
pub mod glob;
pub mod keyed;
pub mod policy;

pub use algo::{
    Algorithm, AnyAlgorithm, Decision, FixedWindow, Gcra, ParamError, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket, NEVER,
};
pub use config::{
    ActionConfig, AlgorithmKind, Config, ConfigError, CostConfig, FailurePolicy, RuleConfig, Scope,
    Tier, TierOverride, DEFAULT_TOML,
};
pub use glob::{Glob, GlobError};
pub use keyed::KeyedLimiter;
pub use policy::{Check, Outcome, Policy, RequestFacts, RuleStatus, Verdict};
