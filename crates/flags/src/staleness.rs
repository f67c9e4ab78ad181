//! Stale flags: flags whose definition or usage says they can probably be removed from code
//! (see `docs/flags.md`, "Usage analytics and stale flags"). Pure: the last evaluation time and
//! "now" are inputs.

use crate::model::{Flag, FlagStatus, FlagType};

/// One reason a flag is reported as stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleReason {
    /// No evaluation counted for the window; `since_ms` is the last evaluation, or the flag's
    /// creation when it was never evaluated.
    NotEvaluated {
        /// Last evaluation, or creation (epoch milliseconds).
        since_ms: i64,
        /// Whether the flag was ever evaluated.
        ever_evaluated: bool,
    },
    /// The definition serves one outcome to everyone in the environment.
    FullyRolledOut {
        /// The variant everyone gets; `None` when it is the environment's `value` override,
        /// which has no variant.
        variant: Option<String>,
    },
    /// `expires_at` has passed: the flag serves its off variant to everyone.
    Expired {
        /// When it expired (epoch milliseconds).
        at_ms: i64,
    },
    /// The status is `completed` or `archived`: not served, still defined.
    Finished {
        /// The status.
        status: FlagStatus,
    },
}

/// What [`stale_reasons`] looks at besides the flag.
#[derive(Debug, Clone, Copy)]
pub struct StalenessInputs<'a> {
    /// The environment the flag is defined in (its override applies).
    pub environment: &'a str,
    /// When the flag was created (epoch milliseconds).
    pub created_at_ms: i64,
    /// When it was last evaluated, if it ever was (epoch milliseconds).
    pub last_evaluated_ms: Option<i64>,
    /// The window: not evaluated for this long counts as stale (milliseconds).
    pub window_ms: i64,
    /// Now (epoch milliseconds).
    pub now_ms: i64,
}

/// Every reason `flag` is stale, in a fixed order (not evaluated, fully rolled out, expired,
/// finished); empty when it is not. A flag with `track_events: false` is never reported as not
/// evaluated: its evaluations are not counted, so their absence says nothing. An `operational`
/// flag is never reported as fully rolled out, and an expired or finished one is reported as
/// that rather than as rolled out.
pub fn stale_reasons(flag: &Flag, inputs: &StalenessInputs<'_>) -> Vec<StaleReason> {
    let mut reasons = Vec::new();
    if flag.track_events {
        let since_ms = inputs.last_evaluated_ms.unwrap_or(inputs.created_at_ms);
        if inputs.now_ms.saturating_sub(since_ms) >= inputs.window_ms {
            reasons.push(StaleReason::NotEvaluated {
                since_ms,
                ever_evaluated: inputs.last_evaluated_ms.is_some(),
            });
        }
    }
    let expired_at = flag
        .expires_at
        .as_deref()
        .and_then(crate::parse_instant_ms)
        .filter(|at| inputs.now_ms >= *at);
    let finished = matches!(flag.status, FlagStatus::Completed | FlagStatus::Archived);
    // An operational flag is a long-lived switch: serving one value to everyone is its normal
    // state, not a finished rollout.
    if expired_at.is_none() && !finished && flag.flag_type != FlagType::Operational {
        if let Some(variant) = single_variant_served(flag, inputs.environment, inputs.now_ms) {
            reasons.push(StaleReason::FullyRolledOut {
                variant: Some(variant.to_owned()),
            });
        } else if serves_value_override(flag, inputs.environment, inputs.now_ms) {
            reasons.push(StaleReason::FullyRolledOut { variant: None });
        }
    }
    if let Some(at_ms) = expired_at {
        reasons.push(StaleReason::Expired { at_ms });
    }
    if finished {
        reasons.push(StaleReason::Finished {
            status: flag.status,
        });
    }
    reasons
}

/// Whether the flag is served at all in `environment` at `now_ms` (not killed, an `active` or
/// `deprecated` status, `enable_at` passed, not disabled in the environment).
fn served(flag: &Flag, environment: &str, now_ms: i64) -> bool {
    let env = flag.environments.get(environment);
    let enable_at_passed = flag
        .schedule
        .as_ref()
        .and_then(|s| s.enable_at.as_deref())
        .is_none_or(|at| crate::parse_instant_ms(at).is_some_and(|at| now_ms >= at));
    !flag.kill_switch
        && matches!(flag.status, FlagStatus::Active | FlagStatus::Deprecated)
        && env.and_then(|e| e.enabled) != Some(false)
        && enable_at_passed
}

/// Whether a served flag gives everyone in `environment` its override's `value`.
fn serves_value_override(flag: &Flag, environment: &str, now_ms: i64) -> bool {
    served(flag, environment, now_ms)
        && flag
            .environments
            .get(environment)
            .and_then(|e| e.value.as_ref())
            .is_some_and(|v| !v.is_null())
}

/// The variant a served flag gives everyone in `environment`, when its definition leaves no
/// other outcome: the environment's `variant` override, or no targeting (rules,
/// prerequisites, tenant or tier restrictions), no ramp, and either no split (the default
/// variant), a rollout of 0 (the default variant), or a split of one variant at 10,000 basis
/// points under a full rollout. `None` for a flag that is not served (kill switch, status,
/// schedule, environment disabled): those answer `DISABLED`.
pub fn single_variant_served<'a>(
    flag: &'a Flag,
    environment: &str,
    now_ms: i64,
) -> Option<&'a str> {
    if !served(flag, environment, now_ms) {
        return None;
    }
    let env = flag.environments.get(environment);
    // The override comes before every kind of targeting (docs/flags.md, evaluation order).
    if let Some(variant) = env.and_then(|e| e.variant.as_deref()) {
        return Some(variant);
    }
    if env
        .and_then(|e| e.value.as_ref())
        .is_some_and(|v| !v.is_null())
    {
        return None;
    }
    let targeted = !flag.rules.is_empty()
        || !flag.prerequisites.is_empty()
        || !flag.allowed_tenants.is_empty()
        || !flag.required_tiers.is_empty();
    if targeted {
        return None;
    }
    let default = env
        .and_then(|e| e.default_variant.as_deref())
        .unwrap_or(&flag.default_variant);
    let split: Vec<&str> = flag
        .variants
        .iter()
        .filter(|v| v.weight_bp > 0)
        .map(|v| v.key.as_str())
        .collect();
    if split.is_empty() {
        return Some(default);
    }
    let rollout = match env.and_then(|e| e.rollout_bp) {
        Some(bp) => bp,
        // A ramp moves the rollout over time: not a settled state.
        None if flag.schedule.as_ref().is_some_and(|s| s.ramp.is_some()) => return None,
        None => flag.rollout_bp.unwrap_or(10_000),
    };
    match (rollout, split.as_slice()) {
        (0, _) => Some(default),
        (10_000.., [only]) => Some(*only),
        (_, [only]) if *only == default => Some(default),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400_000;

    fn flag(extra: serde_json::Value) -> Flag {
        let mut v = json!({
            "key": "f", "type": "multivariate", "status": "active",
            "variants": [{"key": "a", "value": "a", "weight_bp": 5000},
                         {"key": "b", "value": "b", "weight_bp": 5000}],
            "default_variant": "a", "off_variant": "a"
        });
        if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                base.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).expect("a valid flag")
    }

    fn inputs(last: Option<i64>) -> StalenessInputs<'static> {
        StalenessInputs {
            environment: "production",
            created_at_ms: 0,
            last_evaluated_ms: last,
            window_ms: 30 * DAY,
            now_ms: 40 * DAY,
        }
    }

    #[test]
    fn a_split_flag_evaluated_recently_is_not_stale() {
        assert_eq!(
            stale_reasons(&flag(json!({})), &inputs(Some(39 * DAY))),
            vec![]
        );
    }

    #[test]
    fn never_evaluated_counts_from_creation_and_untracked_flags_are_not_judged() {
        assert_eq!(
            stale_reasons(&flag(json!({})), &inputs(None)),
            vec![StaleReason::NotEvaluated {
                since_ms: 0,
                ever_evaluated: false
            }]
        );
        let young = StalenessInputs {
            created_at_ms: 20 * DAY,
            ..inputs(None)
        };
        assert_eq!(stale_reasons(&flag(json!({})), &young), vec![]);
        let untracked = flag(json!({"track_events": false}));
        assert_eq!(stale_reasons(&untracked, &inputs(None)), vec![]);
    }

    #[test]
    fn one_variant_for_everyone_is_fully_rolled_out() {
        let cases = [
            (
                json!({"variants": [{"key": "a", "value": 1}, {"key": "b", "value": 2}]}),
                Some("a"),
            ),
            (
                json!({"variants": [{"key": "a", "value": 1}, {"key": "b", "value": 2, "weight_bp": 10000}]}),
                Some("b"),
            ),
            (
                json!({"variants": [{"key": "a", "value": 1}, {"key": "b", "value": 2, "weight_bp": 10000}],
                       "rollout_bp": 4000}),
                None,
            ),
            (json!({"rollout_bp": 0}), Some("a")),
            (
                json!({"environments": {"production": {"rollout_bp": 0, "default_variant": "b"}}}),
                Some("b"),
            ),
            (json!({}), None),
            (
                json!({"variants": [{"key": "a", "value": 1}, {"key": "b", "value": 2}],
                       "rules": [{"id": "r", "when": {"attribute": "x", "op": "eq", "value": 1}, "variant": "b"}]}),
                None,
            ),
            (
                json!({"variants": [{"key": "a", "value": 1}], "kill_switch": true}),
                None,
            ),
            (
                json!({"environments": {"production": {"variant": "b"}}}),
                Some("b"),
            ),
            (json!({"environments": {"staging": {"variant": "b"}}}), None),
            (
                json!({"environments": {"production": {"value": "z"}}}),
                None,
            ),
            (
                json!({"variants": [{"key": "a", "value": 1}],
                       "environments": {"production": {"enabled": false}}}),
                None,
            ),
        ];
        for (extra, expected) in cases {
            let f = flag(extra.clone());
            assert_eq!(
                single_variant_served(&f, "production", 40 * DAY),
                expected,
                "{extra}"
            );
        }
    }

    #[test]
    fn expired_and_finished_flags_are_reported_as_such_not_as_rolled_out() {
        let expired = flag(json!({"variants": [{"key": "a", "value": 1}],
                                  "expires_at": "1970-01-02T00:00:00Z"}));
        assert_eq!(
            stale_reasons(&expired, &inputs(Some(39 * DAY))),
            vec![StaleReason::Expired { at_ms: DAY }]
        );
        let fixed = flag(json!({"environments": {"production": {"value": "z"}}}));
        assert_eq!(
            stale_reasons(&fixed, &inputs(Some(39 * DAY))),
            vec![StaleReason::FullyRolledOut { variant: None }]
        );
        let switch = flag(json!({"type": "operational",
                                 "variants": [{"key": "a", "value": true}, {"key": "b", "value": false}]}));
        assert_eq!(stale_reasons(&switch, &inputs(Some(39 * DAY))), vec![]);
        let archived = flag(json!({"status": "archived"}));
        assert_eq!(
            stale_reasons(&archived, &inputs(Some(39 * DAY))),
            vec![StaleReason::Finished {
                status: FlagStatus::Archived
            }]
        );
    }
}
