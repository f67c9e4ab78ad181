//! One scaling rule (seed 002's `ScalingRule`) and its vote over a window of readings.

use serde::{Deserialize, Serialize};

/// What a rule watches (seed 002's `ScalingMetric`, less its catch-all `custom_metric`).
///
/// A reading is the value the rule's thresholds are compared with: CPU and memory utilisation
/// in percent averaged over the replicas, request rate per second, response time in
/// milliseconds, queue length and connection count as totals over the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Average CPU utilisation of the replicas, percent.
    CpuUtilization,
    /// Average memory utilisation of the replicas, percent.
    MemoryUtilization,
    /// Requests per second over the service.
    RequestRate,
    /// Response time, milliseconds.
    ResponseTime,
    /// Items waiting in the service's queues (for signalbox: pending jobs of every queue).
    QueueLength,
    /// Open connections over the service.
    ConnectionCount,
}

impl Metric {
    /// Every metric, in declaration order.
    pub const ALL: [Metric; 6] = [
        Metric::CpuUtilization,
        Metric::MemoryUtilization,
        Metric::RequestRate,
        Metric::ResponseTime,
        Metric::QueueLength,
        Metric::ConnectionCount,
    ];

    /// The seed's name (`cpu_utilization`, `queue_length`, …), also a bounded label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::CpuUtilization => "cpu_utilization",
            Metric::MemoryUtilization => "memory_utilization",
            Metric::RequestRate => "request_rate",
            Metric::ResponseTime => "response_time",
            Metric::QueueLength => "queue_length",
            Metric::ConnectionCount => "connection_count",
        }
    }
}

/// One sample of a metric: its value at `at_ms` (Unix milliseconds). A reading stands for the
/// metric from its time until the next reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// When it was taken, Unix milliseconds.
    pub at_ms: i64,
    /// The metric's value then.
    pub value: f64,
}

/// A rule's vote (seed 002: `up`, `down`, `stable`; plus `no_data` where the seed logged a
/// failed metric read and skipped the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// The metric stayed at or above `threshold_up` over the whole evaluation period.
    Up,
    /// The metric stayed at or below `threshold_down` over the whole evaluation period.
    Down,
    /// Neither held.
    Stable,
    /// The readings do not cover the evaluation period (too little history); counts for
    /// nothing.
    NoData,
}

/// A rule that is not self-consistent, naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The thresholds are not finite, or `threshold_down` is not below `threshold_up`.
    #[error("threshold_down must be a finite number below threshold_up")]
    Thresholds,
    /// `scale_step` is zero.
    #[error("scale_step must be at least 1")]
    Step,
    /// `min_replicas` is zero or above `max_replicas`.
    #[error("min_replicas must be at least 1 and at most max_replicas")]
    Bounds,
    /// A policy with no rule.
    #[error("rules: a policy needs at least one rule")]
    NoRules,
}

impl RuleError {
    /// The field at fault, for an error message that names it.
    pub fn field(&self) -> &'static str {
        match self {
            RuleError::Thresholds => "threshold_down",
            RuleError::Step => "scale_step",
            RuleError::Bounds => "min_replicas",
            RuleError::NoRules => "rules",
        }
    }
}

/// Seed 002's `ScalingRule`, periods in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingRule {
    /// What the rule watches.
    pub metric: Metric,
    /// At or above this over the whole evaluation period, the rule votes up.
    pub threshold_up: f64,
    /// At or below this over the whole evaluation period, the rule votes down.
    pub threshold_down: f64,
    /// How long a threshold must hold before the rule votes (seed: `evaluation_period`).
    pub evaluation_period_ms: u64,
    /// After a change of replica count, no other change for this long (the policy waits the
    /// shortest cooldown of its rules, as the seed does).
    pub cooldown_period_ms: u64,
    /// Replicas added or removed by one decision.
    pub scale_step: u32,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
}

impl ScalingRule {
    /// Checks that the rule can be evaluated: finite thresholds with down below up, a step of
    /// at least one, `1 <= min_replicas <= max_replicas`.
    pub fn validate(&self) -> Result<(), RuleError> {
        if !(self.threshold_up.is_finite()
            && self.threshold_down.is_finite()
            && self.threshold_down < self.threshold_up)
        {
            return Err(RuleError::Thresholds);
        }
        if self.scale_step == 0 {
            return Err(RuleError::Step);
        }
        if self.min_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err(RuleError::Bounds);
        }
        Ok(())
    }

    /// The rule's vote at `now_ms` over `readings` (any order; readings after `now_ms` are
    /// ignored).
    ///
    /// The seed compares one metric value read at evaluation time with the thresholds and
    /// calls the period an "evaluation period" without using it. Here the threshold must
    /// **hold over the whole period** `[now - evaluation_period, now]`: a reading stands for
    /// the metric until the next one, so the readings that cover the period are the last one
    /// taken at or before its start and every one after it, and all of them must be at or
    /// above `threshold_up` (vote up) or at or below `threshold_down` (vote down). Without a
    /// reading at or before the start, the history is too short to say: [`Vote::NoData`].
    /// A non-finite reading satisfies neither threshold. With a period of zero, the latest
    /// reading alone decides (the seed's behaviour).
    ///
    /// ```
    /// use scaling::{Metric, Reading, ScalingPolicy, Vote};
    /// let policy = ScalingPolicy::signalbox();
    /// let queue = policy.rules().iter().find(|r| r.metric == Metric::QueueLength).unwrap();
    /// // 180 s evaluation period: a backlog of 3 minutes votes up, a spike of 1 minute does not.
    /// let held = [Reading { at_ms: 0, value: 150.0 }, Reading { at_ms: 120_000, value: 400.0 }];
    /// assert_eq!(queue.vote(&held, 180_000), Vote::Up);
    /// let spike = [Reading { at_ms: 0, value: 50.0 }, Reading { at_ms: 120_000, value: 400.0 }];
    /// assert_eq!(queue.vote(&spike, 180_000), Vote::Stable);
    /// assert_eq!(queue.vote(&spike[1..], 180_000), Vote::NoData);
    /// ```
    pub fn vote(&self, readings: &[Reading], now_ms: i64) -> Vote {
        let period = i64::try_from(self.evaluation_period_ms).unwrap_or(i64::MAX);
        let start = now_ms.saturating_sub(period);
        let mut anchor: Option<Reading> = None;
        let (mut all_up, mut all_down) = (true, true);
        for r in readings {
            if r.at_ms > now_ms {
                continue;
            }
            if r.at_ms <= start {
                if anchor.is_none_or(|a| r.at_ms >= a.at_ms) {
                    anchor = Some(*r);
                }
            } else {
                all_up &= r.value >= self.threshold_up;
                all_down &= r.value <= self.threshold_down;
            }
        }
        let Some(anchor) = anchor else {
            return Vote::NoData;
        };
        all_up &= anchor.value >= self.threshold_up;
        all_down &= anchor.value <= self.threshold_down;
        if all_up {
            Vote::Up
        } else if all_down {
            Vote::Down
        } else {
            Vote::Stable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(period_s: u64) -> ScalingRule {
        ScalingRule {
            metric: Metric::CpuUtilization,
            threshold_up: 70.0,
            threshold_down: 30.0,
            evaluation_period_ms: period_s * 1000,
            cooldown_period_ms: 600_000,
            scale_step: 2,
            min_replicas: 2,
            max_replicas: 20,
        }
    }

    fn r(at_s: i64, value: f64) -> Reading {
        Reading {
            at_ms: at_s * 1000,
            value,
        }
    }

    #[test]
    fn votes_over_the_whole_period() {
        let rule = rule(300);
        let cases: &[(&[Reading], i64, Vote)] = &[
            (&[r(0, 80.0), r(100, 90.0), r(200, 70.0)], 300, Vote::Up),
            (&[r(0, 80.0), r(100, 60.0), r(200, 90.0)], 300, Vote::Stable),
            (&[r(0, 10.0), r(150, 30.0)], 300, Vote::Down),
            (&[r(0, 10.0), r(150, 31.0)], 300, Vote::Stable),
            // The reading in force at the period's start is the last one at or before it.
            (&[r(-50, 10.0), r(0, 90.0), r(10, 95.0)], 300, Vote::Up),
            (&[r(-50, 10.0), r(1, 90.0)], 300, Vote::Stable),
            // Too little history.
            (&[r(1, 90.0), r(200, 95.0)], 300, Vote::NoData),
            (&[], 300, Vote::NoData),
            // Readings from the future are ignored, order does not matter.
            (&[r(400, 10.0), r(200, 90.0), r(0, 80.0)], 300, Vote::Up),
            (&[r(0, f64::NAN)], 300, Vote::Stable),
        ];
        for (readings, now_s, want) in cases {
            assert_eq!(rule.vote(readings, now_s * 1000), *want, "{readings:?}");
        }
    }

    #[test]
    fn a_zero_period_reads_the_latest_value() {
        let rule = rule(0);
        assert_eq!(rule.vote(&[r(0, 10.0), r(5, 75.0)], 5_000), Vote::Up);
        assert_eq!(rule.vote(&[r(0, 10.0), r(5, 75.0)], 4_999), Vote::Down);
    }

    #[test]
    fn validation_names_the_field() {
        let mut bad = rule(1);
        bad.threshold_down = 70.0;
        assert_eq!(bad.validate().map_err(|e| e.field()), Err("threshold_down"));
        let mut bad = rule(1);
        bad.threshold_up = f64::INFINITY;
        assert_eq!(bad.validate(), Err(RuleError::Thresholds));
        let mut bad = rule(1);
        bad.scale_step = 0;
        assert_eq!(bad.validate().map_err(|e| e.field()), Err("scale_step"));
        let mut bad = rule(1);
        bad.min_replicas = 21;
        assert_eq!(bad.validate().map_err(|e| e.field()), Err("min_replicas"));
        let mut bad = rule(1);
        bad.min_replicas = 0;
        assert_eq!(bad.validate(), Err(RuleError::Bounds));
        assert_eq!(rule(1).validate(), Ok(()));
    }
}
