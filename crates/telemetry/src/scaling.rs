//! The autoscaling signal: `signalbox_desired_replicas{policy}` (gauge), the replica count
//! [`scaling::ScalingPolicy::desired_replicas`] asks for, with signalbox's own policy
//! ([`scaling::ScalingPolicy::signalbox`]: CPU 70/30 %, pending jobs 100/10, 2 to 20 replicas).
//!
//! The host sampler ([`crate::HostMonitor::sample`]) evaluates it on every sample with the CPU
//! usage it just read and the pending-job count from the reader registered with
//! [`ScalingMetrics::watch_pending_jobs`] (the job runtime registers one: pending jobs of every
//! queue and tenant); [`ScalingMetrics::evaluate`] does the same with readings passed in. The
//! readings are kept for the longest evaluation period of the policy (a rule votes only when
//! its threshold held over its whole period, so the gauge moves only after that much history).
//! Each process sees its own CPU and the shared queue; with several replicas alike, its CPU
//! stands for their average. The current count is what [`ScalingMetrics::set_replicas`] last
//! said (1 until then); a change of it starts the policy's cooldown.
//!
//! `policy` is fixed by the server (`&'static str`), so the label is bounded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use ::scaling::{
    Decision, Metric, MetricWindow, Reading, ScalingInput, ScalingPolicy, DEFAULT_TOLERANCE,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `policy` label of signalbox's own policy.
pub const SIGNALBOX_POLICY: &str = "signalbox";

type PendingReader = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: &'static str,
}

struct State {
    cpu: VecDeque<Reading>,
    pending: VecDeque<Reading>,
    replicas: u32,
    last_scaled_at_ms: Option<i64>,
}

/// The scaling series; reach them through [`crate::Metrics::scaling`].
pub struct ScalingMetrics {
    desired: Family<PolicyLabel, Gauge>,
    policy: ScalingPolicy,
    pending_reader: Mutex<Option<PendingReader>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for ScalingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalingMetrics")
            .field("policy", &SIGNALBOX_POLICY)
            .finish()
    }
}

impl ScalingMetrics {
    pub(crate) fn register(registry: &mut Registry) -> ScalingMetrics {
        let m = ScalingMetrics {
            desired: Family::default(),
            policy: ScalingPolicy::signalbox(),
            pending_reader: Mutex::new(None),
            state: Mutex::new(State {
                cpu: VecDeque::new(),
                pending: VecDeque::new(),
                replicas: 1,
                last_scaled_at_ms: None,
            }),
        };
        registry.register(
            "signalbox_desired_replicas",
            "Replicas the scaling policy asks for (seed 002's rules with the Kubernetes HPA formula)",
            m.desired.clone(),
        );
        m
    }

    /// Sets the gauge for `policy` directly.
    pub fn set_desired(&self, policy: &'static str, replicas: u32) {
        self.desired
            .get_or_create(&PolicyLabel { policy })
            .set(i64::from(replicas));
    }

    /// Lets the host sampler read the number of pending jobs (all queues, all tenants); `None`
    /// from the reader means "unknown now" and adds no reading.
    pub fn watch_pending_jobs(&self, read: impl Fn() -> Option<u64> + Send + Sync + 'static) {
        *self
            .pending_reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(read));
    }

    /// The replica count running now, as far as this process knows; a change starts the
    /// cooldown at the next evaluation.
    pub fn set_replicas(&self, replicas: u32) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.replicas = replicas;
    }

    pub(crate) fn read_pending(&self) -> Option<u64> {
        let reader = self
            .pending_reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        reader.and_then(|read| read())
    }

    /// Adds the readings taken at `now_ms` (Unix milliseconds; `None` for one not available),
    /// drops those no rule needs any more, evaluates the policy and sets
    /// `signalbox_desired_replicas{policy="signalbox"}`. Returns the decision.
    pub fn evaluate(
        &self,
        now_ms: i64,
        cpu_percent: Option<f64>,
        pending_jobs: Option<u64>,
    ) -> Decision {
        let keep_ms = self
            .policy
            .rules()
            .iter()
            .map(|r| r.evaluation_period_ms)
            .max()
            .unwrap_or(0);
        let horizon = now_ms.saturating_sub(i64::try_from(keep_ms).unwrap_or(i64::MAX));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        for (queue, value) in [
            (&mut state.cpu, cpu_percent),
            (&mut state.pending, pending_jobs.map(|n| n as f64)),
        ] {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                queue.push_back(Reading {
                    at_ms: now_ms,
                    value,
                });
            }
            // Keep the last reading at or before the horizon: it covers the period's start.
            while queue.len() > 1 && queue[1].at_ms <= horizon {
                queue.pop_front();
            }
        }
        let (cpu, pending) = (state.cpu.make_contiguous(), state.pending.make_contiguous());
        let windows = [
            MetricWindow {
                metric: Metric::CpuUtilization,
                readings: cpu,
            },
            MetricWindow {
                metric: Metric::QueueLength,
                readings: pending,
            },
        ];
        let decision = self.policy.desired_replicas(
            &ScalingInput {
                current_replicas: state.replicas,
                now_ms,
                last_scaled_at_ms: state.last_scaled_at_ms,
                windows: &windows,
            },
            DEFAULT_TOLERANCE,
        );
        self.set_desired(SIGNALBOX_POLICY, decision.desired_replicas);
        decision
    }

    /// Records that the replica count changed at `at_ms` (the cooldown counts from there).
    pub fn scaled_at(&self, at_ms: i64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last_scaled_at_ms = Some(at_ms);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Metrics, MetricsConfig};

    fn gauge(metrics: &Metrics) -> Option<f64> {
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(r#"signalbox_desired_replicas{policy="signalbox"} "#))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn the_gauge_follows_held_readings() {
        let metrics = Metrics::new(MetricsConfig::default());
        let scaling = metrics.scaling();
        scaling.set_replicas(4);
        // One reading is no history: the count stays.
        assert_eq!(
            scaling.evaluate(0, Some(90.0), Some(500)).desired_replicas,
            4
        );
        assert_eq!(gauge(&metrics), Some(4.0));
        // The queue held above 100 for its 3-minute period (CPU not yet 5 minutes): up, by the
        // HPA formula's ceil(4 * 500 / 100) = 20.
        for t in 1..=12 {
            scaling.evaluate(t * 15_000, Some(90.0), Some(500));
        }
        assert_eq!(gauge(&metrics), Some(20.0));
        // Readings older than the longest period are dropped, keeping the one that covers it.
        let state = scaling.state.lock().unwrap();
        assert!(state.cpu.len() <= 21, "{}", state.cpu.len());
        drop(state);
        // Idle for 5 minutes, from 4 replicas: down one step (the queue's), not to the minimum.
        let start = 1_000_000;
        for t in 0..=20 {
            scaling.evaluate(start + t * 15_000, Some(5.0), Some(0));
        }
        assert_eq!(gauge(&metrics), Some(3.0));
        // Within the cooldown after a change, nothing moves.
        scaling.scaled_at(start + 300_000);
        let d = scaling.evaluate(start + 301_000, Some(5.0), Some(0));
        assert_eq!(d.desired_replicas, 4);
        assert_eq!(scaling.read_pending(), None);
        scaling.watch_pending_jobs(|| Some(7));
        assert_eq!(scaling.read_pending(), Some(7));
    }
}
