//! # feedback: the feedback engine's domain
//!
//! A pure library (no I/O, no clock, no randomness: times and keys are passed in) for seed 004's
//! enterprise feedback processing:
//!
//! - [`pii`]: detection of personal data (email, phone numbers, payment cards, IBAN, IP
//!   addresses, US SSN, UK National Insurance numbers, tenant-defined patterns, per-tenant allow
//!   and deny lists) with validation (Luhn, mod-97, country lengths), redaction by type tag or
//!   keyed pseudonym, findings as Presidio-compatible or API JSON with character offsets, and
//!   precision/recall against a labelled corpus ([`pii::eval`]). Names and places need named
//!   entity recognition, which is out of scope.
//!
//! Storage, HTTP, jobs and metrics live in the adapter crates (`store`, `server`, `telemetry`).
#![forbid(unsafe_code)]

pub mod pii;
