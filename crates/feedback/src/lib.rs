//! # feedback: the feedback engine's domain
//!
//! A pure library (no I/O, no clock, no randomness except a random source passed in: times and keys are passed in) for seed 004's
//! enterprise feedback processing:
//!
//! - [`pii`]: detection of personal data (email, phone numbers, payment cards, IBAN, IP
//!   addresses, US SSN, UK National Insurance numbers, tenant-defined patterns, per-tenant allow
//!   and deny lists) with validation (Luhn, mod-97, country lengths), redaction by type tag or
//!   keyed pseudonym, findings as Presidio-compatible or API JSON with character offsets, and
//!   precision/recall against a labelled corpus ([`pii::eval`]). Names and places need named
//!   entity recognition, which is out of scope.
//! - [`item`]: the feedback item and its validation, naming every failing field.
//! - [`toxicity`]: abuse from a lexicon with categories and severities, matched through light
//!   de-obfuscation.
//! - [`policy`]: the seven principles, rules as data, the alignment score and its explanation
//!   trace.
//! - [`routing`]: seed 004's processing tiers and modes, the risk score and the routing
//!   decision.
//! - [`migration`]: the staged traffic shift from a legacy system: plan, state machine and the
//!   health judgement of a monitoring window.
//! - [`config`] and [`analysis`]: a tenant's configuration (TOML) and the [`analysis::Analyzer`]
//!   the adapters call per item.
//! - [`private_analytics`]: differentially private aggregate queries over feedback (per-person
//!   contribution cap, public group keys, declared sensitivities, noisy release with accuracy).
//! - [`forward`]: dual-write to a legacy endpoint: `[dual_write]` settings, the forwarded
//!   JSON, and what the endpoint's answers mean.
//!
//! Storage, HTTP, jobs and metrics live in the adapter crates (`store`, `server`, `telemetry`).
#![forbid(unsafe_code)]

pub mod analysis;
pub mod config;
pub mod forward;
pub mod import;
pub mod item;
pub mod migration;
pub mod pii;
pub mod policy;
pub mod private_analytics;
pub mod routing;
mod severity;
pub mod toxicity;

pub use severity::{ParseSeverityError, Severity};
