//! A service's rules together (seed 002's `ServiceScalingConfig.scaling_rules`), the seed's
//! vote, and the combined decision with the HPA formula.

use serde::Serialize;

use crate::hpa::hpa_desired;
use crate::rule::{Metric, Reading, RuleError, ScalingRule, Vote};

const SECOND: u64 = 1000;

/// The readings of one metric, for the rules that watch it.
#[derive(Debug, Clone, Copy)]
pub struct MetricWindow<'a> {
    /// Which metric.
    pub metric: Metric,
    /// Its readings, any order; enough to cover the longest evaluation period of its rules.
    pub readings: &'a [Reading],
}

/// What a decision is taken on. Time is passed in (Unix milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct ScalingInput<'a> {
    /// Replicas running now.
    pub current_replicas: u32,
    /// Now.
    pub now_ms: i64,
    /// When the replica count last changed, if it did: the cooldown counts from there.
    pub last_scaled_at_ms: Option<i64>,
    /// The readings; a rule whose metric has no window votes [`Vote::NoData`].
    pub windows: &'a [MetricWindow<'a>],
}

/// Which way a decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More replicas.
    Up,
    /// Fewer replicas.
    Down,
    /// As many as now.
    Stable,
}

/// Why a decision went the way it did (seed 002's `reason` values, plus the bounds and the
/// HPA's hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The current count is outside the policy's bounds: it goes to the nearest bound, at
    /// once (cooldown or not).
    OutOfBounds,
    /// A change happened less than the policy's cooldown ago.
    CooldownPeriod {
        /// How long until a change is allowed again.
        remaining_ms: u64,
    },
    /// At least one rule voted up.
    MetricThresholdsExceeded,
    /// More rules voted down than up.
    MetricThresholdsLow,
    /// Neither.
    ThresholdsNotMet,
    /// The rules voted down, but the HPA formula says the load needs the current count
    /// (another metric is near its target): no change.
    HeldByLoad,
}

/// One rule's part in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RuleVote {
    /// The rule's metric.
    pub metric: Metric,
    /// Its vote.
    pub vote: Vote,
    /// The latest reading at or before now, if any.
    pub latest: Option<f64>,
}

/// A scaling decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Which way.
    pub direction: Direction,
    /// The count it started from.
    pub current_replicas: u32,
    /// The count it asks for, always within the policy's bounds.
    pub desired_replicas: u32,
    /// Why.
    pub reason: Reason,
    /// Each rule's vote, in the policy's rule order (empty when the bounds or the cooldown
    /// decided before any rule was read).
    pub votes: Vec<RuleVote>,
}

/// A service's scaling rules. Its bounds are the loosest of its rules' (the seed scales up to
/// the largest `max_replicas` and down to the smallest `min_replicas`); its cooldown is the
/// shortest of its rules' (as the seed's `min_cooldown`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingPolicy {
    rules: Vec<ScalingRule>,
}

impl ScalingPolicy {
    /// A policy of `rules`, each validated ([`ScalingRule::validate`]); at least one rule.
    pub fn new(rules: Vec<ScalingRule>) -> Result<ScalingPolicy, RuleError> {
        if rules.is_empty() {
            return Err(RuleError::NoRules);
        }
        for rule in &rules {
            rule.validate()?;
        }
        Ok(ScalingPolicy { rules })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[ScalingRule] {
        &self.rules
    }

    /// Fewest replicas: the smallest `min_replicas` of the rules.
    pub fn min_replicas(&self) -> u32 {
        self.rules.iter().map(|r| r.min_replicas).min().unwrap_or(1)
    }

    /// Most replicas: the largest `max_replicas` of the rules.
    pub fn max_replicas(&self) -> u32 {
        self.rules.iter().map(|r| r.max_replicas).max().unwrap_or(1)
    }

    /// The wait after a change: the shortest `cooldown_period_ms` of the rules.
    pub fn cooldown_ms(&self) -> u64 {
        self.rules
            .iter()
            .map(|r| r.cooldown_period_ms)
            .min()
            .unwrap_or(0)
    }

    /// signalbox's own policy, what `deploy/kubernetes/` sets its autoscalers to: seed 002's
    /// API gateway CPU rule (70 % up / 30 % down, over 5 minutes, 10-minute cooldown, 2
    /// replicas a step) and its analytics service's queue rule (100 pending jobs up / 10 down,
    /// over 3 minutes, 5-minute cooldown, 1 replica a step), between 2 replicas (so one can be
    /// drained while the other serves) and 20.
    pub fn signalbox() -> ScalingPolicy {
        ScalingPolicy {
            rules: vec![
                rule(Metric::CpuUtilization, 70.0, 30.0, 300, 600, 2, 2, 20),
                rule(Metric::QueueLength, 100.0, 10.0, 180, 300, 1, 2, 20),
            ],
        }
    }

    /// Seed 002's `api-gateway`: CPU 70/30 % (5 min, cooldown 10 min, step 2) and request rate
    /// 1000/200 per second (3 min, cooldown 5 min, step 3), 3 to 50 replicas.
    pub fn api_gateway() -> ScalingPolicy {
        ScalingPolicy {
            rules: vec![
                rule(Metric::CpuUtilization, 70.0, 30.0, 300, 600, 2, 3, 50),
                rule(Metric::RequestRate, 1000.0, 200.0, 180, 300, 3, 3, 50),
            ],
        }
    }

    /// Seed 002's `user-service`: CPU 75/25 % and memory 80/30 % (5 min, cooldown 10 min, steps
    /// 2 and 1), 2 to 30 replicas.
    pub fn user_service() -> ScalingPolicy {
        ScalingPolicy {
            rules: vec![
                rule(Metric::CpuUtilization, 75.0, 25.0, 300, 600, 2, 2, 30),
                rule(Metric::MemoryUtilization, 80.0, 30.0, 300, 600, 1, 2, 30),
            ],
        }
    }

    /// Seed 002's `analytics-service`: queue length 100/10 (3 min, cooldown 5 min) and CPU
    /// 80/20 % (5 min, cooldown 10 min), step 1, 1 to 20 replicas.
    pub fn analytics_service() -> ScalingPolicy {
        ScalingPolicy {
            rules: vec![
                rule(Metric::QueueLength, 100.0, 10.0, 180, 300, 1, 1, 20),
                rule(Metric::CpuUtilization, 80.0, 20.0, 300, 600, 1, 1, 20),
            ],
        }
    }

    /// Seed 002's vote, alone (`_evaluate_service_scaling`), in this order:
    ///
    /// 1. a count outside the bounds goes to the nearest bound ([`Reason::OutOfBounds`]; the
    ///    seed had no such case);
    /// 2. within the cooldown since the last change, nothing changes;
    /// 3. each rule votes ([`ScalingRule::vote`]: its threshold held over its evaluation
    ///    period);
    /// 4. any up vote, below the maximum: up by the largest `scale_step` of the rules voting
    ///    up, capped at the maximum;
    /// 5. otherwise, more down votes than up votes, above the minimum: down by the smallest
    ///    `scale_step` of the rules voting down, floored at the minimum;
    /// 6. otherwise stable.
    ///
    /// (The seed took the step from the rules whose threshold the *last evaluated* metric
    /// value crossed, a leaked loop variable; here it is the rules that voted.)
    pub fn decide(&self, input: &ScalingInput<'_>) -> Decision {
        let current = input.current_replicas;
        let (min, max) = (self.min_replicas(), self.max_replicas());
        let stable = |reason, votes| Decision {
            direction: Direction::Stable,
            current_replicas: current,
            desired_replicas: current,
            reason,
            votes,
        };
        if current < min || current > max {
            let desired = current.clamp(min, max);
            return Decision {
                direction: if desired > current {
                    Direction::Up
                } else {
                    Direction::Down
                },
                current_replicas: current,
                desired_replicas: desired,
                reason: Reason::OutOfBounds,
                votes: Vec::new(),
            };
        }
        if let Some(last) = input.last_scaled_at_ms {
            let since = input.now_ms.saturating_sub(last);
            let cooldown = self.cooldown_ms();
            let since = u64::try_from(since).unwrap_or(0);
            if since < cooldown {
                return stable(
                    Reason::CooldownPeriod {
                        remaining_ms: cooldown - since,
                    },
                    Vec::new(),
                );
            }
        }
        let votes: Vec<RuleVote> = self
            .rules
            .iter()
            .map(|rule| {
                let readings = window(input, rule.metric);
                RuleVote {
                    metric: rule.metric,
                    vote: rule.vote(readings, input.now_ms),
                    latest: latest(readings, input.now_ms),
                }
            })
            .collect();
        let step_of = |want: Vote| {
            self.rules
                .iter()
                .zip(&votes)
                .filter(move |(_, v)| v.vote == want)
                .map(|(r, _)| r.scale_step)
        };
        let ups = step_of(Vote::Up).count();
        let downs = step_of(Vote::Down).count();
        if ups > 0 && current < max {
            let step = step_of(Vote::Up).max().unwrap_or(1);
            return Decision {
                direction: Direction::Up,
                current_replicas: current,
                desired_replicas: current.saturating_add(step).min(max),
                reason: Reason::MetricThresholdsExceeded,
                votes,
            };
        }
        if downs > ups && current > min {
            let step = step_of(Vote::Down).min().unwrap_or(1);
            return Decision {
                direction: Direction::Down,
                current_replicas: current,
                desired_replicas: current.saturating_sub(step).max(min),
                reason: Reason::MetricThresholdsLow,
                votes,
            };
        }
        stable(Reason::ThresholdsNotMet, votes)
    }

    /// The HPA formula's recommendation at the latest readings: for each rule with a reading,
    /// [`hpa_desired`] with the rule's `threshold_up` as the target (the level the autoscaler
    /// aims at, as `deploy/kubernetes/` sets it), and the largest of them (as the HPA does
    /// with several metrics). `None` when no rule has a reading.
    pub fn hpa_recommendation(&self, input: &ScalingInput<'_>, tolerance: f64) -> Option<u32> {
        self.rules
            .iter()
            .filter_map(|rule| {
                let value = latest(window(input, rule.metric), input.now_ms)?;
                Some(hpa_desired(
                    input.current_replicas,
                    value,
                    rule.threshold_up,
                    tolerance,
                    self.min_replicas(),
                    self.max_replicas(),
                ))
            })
            .max()
    }

    /// How many replicas to run: the seed's rules decide **whether and when** (thresholds
    /// held over their evaluation periods, the cooldown, the bounds: [`ScalingPolicy::decide`]),
    /// the HPA formula decides **how far** ([`ScalingPolicy::hpa_recommendation`], with
    /// `tolerance`, [`crate::DEFAULT_TOLERANCE`] as Kubernetes):
    ///
    /// - up: the larger of the seed's step and the formula's count, capped at the maximum, so
    ///   a surge well past the target is met in one decision rather than a step per cooldown;
    /// - down: the larger of the seed's step down and the formula's count, so never more than
    ///   the seed's step at once and never below what the load needs; when that is not below
    ///   the current count, nothing changes ([`Reason::HeldByLoad`]);
    /// - stable, cooldown and out of bounds: as the seed's decision.
    ///
    /// The result is always within `[min_replicas, max_replicas]`.
    ///
    /// ```
    /// use scaling::{Metric, MetricWindow, Reading, ScalingInput, ScalingPolicy, DEFAULT_TOLERANCE};
    /// let policy = ScalingPolicy::signalbox();
    /// let cpu = [Reading { at_ms: 0, value: 50.0 }];
    /// let queue = [Reading { at_ms: 0, value: 1_000.0 }, Reading { at_ms: 200_000, value: 1_000.0 }];
    /// let windows = [
    ///     MetricWindow { metric: Metric::CpuUtilization, readings: &cpu },
    ///     MetricWindow { metric: Metric::QueueLength, readings: &queue },
    /// ];
    /// let input = ScalingInput { current_replicas: 2, now_ms: 300_000, last_scaled_at_ms: None, windows: &windows };
    /// // The queue held above 100 for 3 minutes: up; ten times the target: ceil(2 * 10) = 20.
    /// assert_eq!(policy.decide(&input).desired_replicas, 3);
    /// assert_eq!(policy.desired_replicas(&input, DEFAULT_TOLERANCE).desired_replicas, 20);
    /// ```
    pub fn desired_replicas(&self, input: &ScalingInput<'_>, tolerance: f64) -> Decision {
        let mut decision = self.decide(input);
        if decision.reason != Reason::MetricThresholdsExceeded
            && decision.reason != Reason::MetricThresholdsLow
        {
            return decision;
        }
        let current = input.current_replicas;
        let hpa = self.hpa_recommendation(input, tolerance).unwrap_or(current);
        match decision.direction {
            Direction::Up => {
                decision.desired_replicas =
                    decision.desired_replicas.max(hpa).min(self.max_replicas());
            }
            Direction::Down => {
                let desired = decision.desired_replicas.max(hpa);
                if desired >= current {
                    decision.direction = Direction::Stable;
                    decision.desired_replicas = current;
                    decision.reason = Reason::HeldByLoad;
                } else {
                    decision.desired_replicas = desired;
                }
            }
            Direction::Stable => {}
        }
        decision
    }
}

#[allow(clippy::too_many_arguments)]
fn rule(
    metric: Metric,
    up: f64,
    down: f64,
    evaluation_s: u64,
    cooldown_s: u64,
    step: u32,
    min: u32,
    max: u32,
) -> ScalingRule {
    ScalingRule {
        metric,
        threshold_up: up,
        threshold_down: down,
        evaluation_period_ms: evaluation_s * SECOND,
        cooldown_period_ms: cooldown_s * SECOND,
        scale_step: step,
        min_replicas: min,
        max_replicas: max,
    }
}

fn window<'a>(input: &ScalingInput<'a>, metric: Metric) -> &'a [Reading] {
    input
        .windows
        .iter()
        .find(|w| w.metric == metric)
        .map_or(&[], |w| w.readings)
}

fn latest(readings: &[Reading], now_ms: i64) -> Option<f64> {
    readings
        .iter()
        .filter(|r| r.at_ms <= now_ms)
        .max_by_key(|r| r.at_ms)
        .map(|r| r.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_TOLERANCE;

    fn held(value: f64, from_ms: i64) -> Vec<Reading> {
        vec![Reading {
            at_ms: from_ms,
            value,
        }]
    }

    fn input<'a>(
        current: u32,
        now_ms: i64,
        last: Option<i64>,
        windows: &'a [MetricWindow<'a>],
    ) -> ScalingInput<'a> {
        ScalingInput {
            current_replicas: current,
            now_ms,
            last_scaled_at_ms: last,
            windows,
        }
    }

    #[test]
    fn the_presets_are_valid_and_match_the_seed() {
        for (policy, min, max, cooldown) in [
            (ScalingPolicy::signalbox(), 2, 20, 300_000),
            (ScalingPolicy::api_gateway(), 3, 50, 300_000),
            (ScalingPolicy::user_service(), 2, 30, 600_000),
            (ScalingPolicy::analytics_service(), 1, 20, 300_000),
        ] {
            let again = ScalingPolicy::new(policy.rules().to_vec()).unwrap();
            assert_eq!(again, policy);
            assert_eq!(
                (
                    policy.min_replicas(),
                    policy.max_replicas(),
                    policy.cooldown_ms()
                ),
                (min, max, cooldown)
            );
        }
        assert_eq!(ScalingPolicy::new(vec![]), Err(RuleError::NoRules));
    }

    #[test]
    fn seed_vote_table() {
        let p = ScalingPolicy::signalbox();
        let now = 1_000_000;
        let start = now - 300_000;
        // (cpu, queue, current, last scaled, want desired, want reason)
        type Case = (f64, f64, u32, Option<i64>, u32, Reason);
        let cases: &[Case] = &[
            (80.0, 50.0, 4, None, 6, Reason::MetricThresholdsExceeded),
            (50.0, 150.0, 4, None, 5, Reason::MetricThresholdsExceeded),
            // Both up: the largest step (CPU's 2).
            (80.0, 150.0, 4, None, 6, Reason::MetricThresholdsExceeded),
            (80.0, 150.0, 19, None, 20, Reason::MetricThresholdsExceeded),
            (80.0, 150.0, 20, None, 20, Reason::ThresholdsNotMet),
            // One up and one down: up wins.
            (80.0, 5.0, 4, None, 6, Reason::MetricThresholdsExceeded),
            // Both down: the smallest step (queue's 1).
            (10.0, 5.0, 4, None, 3, Reason::MetricThresholdsLow),
            // Only CPU down: its step.
            (10.0, 50.0, 4, None, 2, Reason::MetricThresholdsLow),
            (10.0, 5.0, 2, None, 2, Reason::ThresholdsNotMet),
            (50.0, 50.0, 4, None, 4, Reason::ThresholdsNotMet),
            // The cooldown is the shortest of the rules' (5 minutes).
            (
                80.0,
                150.0,
                4,
                Some(now - 299_000),
                4,
                Reason::CooldownPeriod { remaining_ms: 1000 },
            ),
            (
                80.0,
                150.0,
                4,
                Some(now - 300_000),
                6,
                Reason::MetricThresholdsExceeded,
            ),
            // Out of bounds beats the cooldown.
            (50.0, 50.0, 1, Some(now), 2, Reason::OutOfBounds),
            (50.0, 50.0, 25, Some(now), 20, Reason::OutOfBounds),
        ];
        for &(cpu, queue, current, last, want, reason) in cases {
            let (c, q) = (held(cpu, start), held(queue, start));
            let windows = [
                MetricWindow {
                    metric: Metric::CpuUtilization,
                    readings: &c,
                },
                MetricWindow {
                    metric: Metric::QueueLength,
                    readings: &q,
                },
            ];
            let d = p.decide(&input(current, now, last, &windows));
            assert_eq!(
                (d.desired_replicas, d.reason),
                (want, reason),
                "cpu {cpu} queue {queue} current {current} last {last:?}"
            );
        }
    }

    #[test]
    fn missing_metrics_count_for_nothing() {
        let p = ScalingPolicy::signalbox();
        let d = p.desired_replicas(&input(4, 1_000_000, None, &[]), DEFAULT_TOLERANCE);
        assert_eq!(d.desired_replicas, 4);
        assert_eq!(d.reason, Reason::ThresholdsNotMet);
        assert!(d
            .votes
            .iter()
            .all(|v| v.vote == Vote::NoData && v.latest.is_none()));
    }

    #[test]
    fn the_formula_sets_how_far() {
        let p = ScalingPolicy::signalbox();
        let now = 1_000_000;
        let start = now - 300_000;
        // (cpu, queue, current, want)
        let cases = [
            // CPU 140 % of target: ceil(4 * 2) = 8, more than the seed's step.
            (140.0, 50.0, 4, 8),
            // Barely over: the seed's step (2) is more than the formula's ceil(4 * 72/70) = 5.
            (72.0, 50.0, 4, 6),
            // Down: one step at most.
            (10.0, 5.0, 10, 9),
            // CPU voted down, but the queue is within 10 % of its target: held.
            (10.0, 95.0, 10, 10),
        ];
        for (cpu, queue, current, want) in cases {
            let (c, q) = (held(cpu, start), held(queue, start));
            let windows = [
                MetricWindow {
                    metric: Metric::CpuUtilization,
                    readings: &c,
                },
                MetricWindow {
                    metric: Metric::QueueLength,
                    readings: &q,
                },
            ];
            let d = p.desired_replicas(&input(current, now, None, &windows), DEFAULT_TOLERANCE);
            assert_eq!(d.desired_replicas, want, "cpu {cpu} queue {queue}");
        }
        // CPU voted down over its period, but the latest CPU reading is at the target:
        // the formula holds the count.
        let c = vec![
            Reading {
                at_ms: start,
                value: 20.0,
            },
            Reading {
                at_ms: now,
                value: 20.0,
            },
        ];
        let q = vec![
            Reading {
                at_ms: start,
                value: 5.0,
            },
            Reading {
                at_ms: now - 1,
                value: 100.0,
            },
        ];
        let windows = [
            MetricWindow {
                metric: Metric::CpuUtilization,
                readings: &c,
            },
            MetricWindow {
                metric: Metric::QueueLength,
                readings: &q,
            },
        ];
        let d = p.desired_replicas(&input(10, now, None, &windows), DEFAULT_TOLERANCE);
        assert_eq!(
            p.decide(&input(10, now, None, &windows)).direction,
            Direction::Down
        );
        assert_eq!((d.desired_replicas, d.reason), (10, Reason::HeldByLoad));
    }
}
