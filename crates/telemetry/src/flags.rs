//! The flag engine's series:
//! - `flag_evaluations_total{reason}`: flag evaluations answered (single and bulk alike), by
//!   OFREP reason (`STATIC`, `DEFAULT`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `ERROR`).
//!
//! Labels are bounded by construction: six reasons. The counters are created up front, so
//! counting is one atomic add with no label lookup on the evaluation path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The OFREP reasons, in the order of [`FlagMetrics`]' counters.
pub const REASONS: [&str; 6] = [
    "STATIC",
    "DEFAULT",
    "TARGETING_MATCH",
    "SPLIT",
    "DISABLED",
    "ERROR",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The flag series; reach them through [`crate::Metrics::flags`].
#[derive(Debug)]
pub struct FlagMetrics {
    evaluations: [Counter; 6],
}

impl FlagMetrics {
    pub(crate) fn register(registry: &mut Registry) -> FlagMetrics {
        let family = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "flag_evaluations",
            "Flag evaluations answered over OFREP, by reason",
            family.clone(),
        );
        FlagMetrics {
            evaluations: REASONS
                .map(|reason| family.get_or_create(&ReasonLabels { reason }).clone()),
        }
    }

    /// Counts one evaluation with OFREP reason `reason` (an unknown reason counts as `ERROR`).
    pub fn count_evaluation(&self, reason: &str) {
        let i = REASONS.iter().position(|r| *r == reason).unwrap_or(5);
        if let Some(counter) = self.evaluations.get(i) {
            counter.inc();
        }
    }
}
