//! # scaling: how many replicas to run
//!
//! A pure library (no I/O, no clock: readings and times are passed in, times in Unix
//! milliseconds) for signalbox's autoscaling signal:
//!
//! - [`ScalingRule`]: seed 002's rule (metric, up and down thresholds, evaluation period,
//!   cooldown, step, min and max replicas) and its [`Vote`] over a window of [`Reading`]s, the
//!   threshold held over the whole evaluation period;
//! - [`ScalingPolicy`]: a service's rules, the seed's three presets and signalbox's own
//!   ([`ScalingPolicy::signalbox`]: CPU 70/30 %, queue depth 100/10), the seed's vote
//!   ([`ScalingPolicy::decide`]: any up vote scales up by the largest step, down only when down
//!   votes outnumber up votes by the smallest step, nothing within the cooldown);
//! - [`hpa_desired`]: the Kubernetes HorizontalPodAutoscaler's formula,
//!   `ceil(current * metric / target)` with its 10 % tolerance and min/max clamp;
//! - [`ScalingPolicy::desired_replicas`]: both together: the rules decide whether and when,
//!   the formula how far.
//!
//! In a Kubernetes cluster the HorizontalPodAutoscaler of `deploy/kubernetes/` does the
//! scaling with the same targets and bounds; this crate gives the same decision as a metric
//! (`signalbox_desired_replicas`) for dashboards, alerts and deployments without an HPA.
//!
//! ```
//! use scaling::{hpa_desired, ScalingPolicy, DEFAULT_TOLERANCE};
//! let policy = ScalingPolicy::signalbox();
//! assert_eq!((policy.min_replicas(), policy.max_replicas()), (2, 20));
//! // 3 replicas at 140 % of the 70 % CPU target: ceil(3 * 1.4) = 5.
//! assert_eq!(hpa_desired(3, 98.0, 70.0, DEFAULT_TOLERANCE, 2, 20), 5);
//! ```

#![warn(missing_docs)]

mod hpa;
mod policy;
mod rule;

pub use hpa::{hpa_desired, DEFAULT_TOLERANCE};
pub use policy::{
    Decision, Direction, MetricWindow, Reason, RuleVote, ScalingInput, ScalingPolicy,
};
pub use rule::{Metric, Reading, RuleError, ScalingRule, Vote};
