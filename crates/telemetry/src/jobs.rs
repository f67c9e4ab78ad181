//! The background job series (`server::jobs`):
//! - `queue_size{queue_name,tenant_id}` (the `queues` module's gauge): jobs waiting (pending or
//!   retrying) per queue and tenant, `tenant_id` through the tenant guard; and
//!   `message_queue_depth{queue_name}`, the same summed over tenants;
//! - `queue_processing_duration_seconds{queue_name,message_type}`: one attempt's run time,
//!   `message_type` the handler's name (fixed by the server's handler registry, so bounded);
//! - `jobs_finished_total{queue_name,status}`: attempt outcomes recorded, `status` one of
//!   `success`, `retrying`, `dead`, `failed`, `cancelled`;
//! - `jobs_retries_total{queue_name}`: failed attempts that will run again;
//! - `jobs_dead_total{queue_name}`: jobs that used up their attempts (the dead-letter queue),
//!   including jobs whose worker was lost on their last attempt;
//! - `jobs_oldest_pending_age_seconds{queue_name}`: how long the oldest due job of the queue has
//!   waited, over every tenant (0 when none waits).
//!
//! `queue_name` is the job's priority (`critical`, `high`, `normal`, `low`, `bulk`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{QueueMetrics, TenantLabels};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue_name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    queue_name: &'static str,
    status: &'static str,
}

/// One row of a depth sample: a tenant's waiting jobs on one queue.
#[derive(Debug, Clone, Copy)]
pub struct JobDepthSample<'a> {
    /// The tenant (guarded before it becomes a label).
    pub tenant_id: &'a str,
    /// The queue (priority) name.
    pub queue_name: &'static str,
    /// Jobs due or waiting.
    pub pending: u64,
    /// Age of the tenant's oldest due job on the queue, if any.
    pub oldest_pending_age_ms: Option<i64>,
}

/// The job series; reach them through [`crate::Metrics::jobs`].
#[derive(Debug)]
pub struct JobMetrics {
    finished: Family<StatusLabels, Counter>,
    retries: Family<QueueLabel, Counter>,
    dead: Family<QueueLabel, Counter>,
    oldest: Family<QueueLabel, Gauge<f64, AtomicU64>>,
    /// The `queue_size` series set by the last sample, so the next one can zero those gone.
    sized: Mutex<HashSet<(&'static str, String)>>,
}

impl JobMetrics {
    pub(crate) fn register(registry: &mut Registry) -> JobMetrics {
        let m = JobMetrics {
            finished: Family::default(),
            retries: Family::default(),
            dead: Family::default(),
            oldest: Family::default(),
            sized: Mutex::new(HashSet::new()),
        };
        registry.register(
            "jobs_finished",
            "Job attempts recorded, by queue and the status they left the job in",
            m.finished.clone(),
        );
        registry.register(
            "jobs_retries",
            "Failed job attempts that will run again",
            m.retries.clone(),
        );
        registry.register(
            "jobs_dead",
            "Jobs that used up their attempts (the dead-letter queue)",
            m.dead.clone(),
        );
        registry.register(
            "jobs_oldest_pending_age_seconds",
            "Age of the oldest due job waiting on the queue",
            m.oldest.clone(),
        );
        m
    }
}

/// [`JobMetrics`] with the queue series and the process's tenant-label guard.
pub struct JobRecorder<'a> {
    pub(crate) metrics: &'a JobMetrics,
    pub(crate) queues: &'a QueueMetrics,
    pub(crate) tenants: &'a TenantLabels,
}

impl JobRecorder<'_> {
    /// Records one attempt of `handler` on `queue_name` that took `took` and left its job
    /// `status` (`success`, `retrying`, `dead`, `failed` or `cancelled`).
    pub fn finished(
        &self,
        queue_name: &'static str,
        handler: &'static str,
        status: &'static str,
        took: Duration,
    ) {
        self.queues.observe_processing(queue_name, handler, took);
        self.metrics
            .finished
            .get_or_create(&StatusLabels { queue_name, status })
            .inc();
        match status {
            "retrying" => {
                self.metrics
                    .retries
                    .get_or_create(&QueueLabel { queue_name })
                    .inc();
            }
            "dead" => {
                self.metrics
                    .dead
                    .get_or_create(&QueueLabel { queue_name })
                    .inc();
            }
            _ => {}
        }
    }

    /// Creates the counters of `queues` at zero, so an alert on their increase sees the first
    /// dead job rather than a series that starts at one.
    pub fn init_queues(&self, queues: &[&'static str]) {
        for &queue_name in queues {
            let queue = QueueLabel { queue_name };
            let _ = self.metrics.dead.get_or_create(&queue);
            let _ = self.metrics.retries.get_or_create(&queue);
            let _ = self.metrics.oldest.get_or_create(&queue);
        }
    }

    /// Counts `dead` jobs of `queue_name` whose worker was lost on their last attempt.
    pub fn lost(&self, queue_name: &'static str, dead: u64) {
        if dead > 0 {
            self.metrics
                .dead
                .get_or_create(&QueueLabel { queue_name })
                .inc_by(dead);
        }
    }

    /// Replaces the depth gauges with a sample of every tenant's waiting jobs. Every queue in
    /// `queues` gets its series (0 when nothing waits), so alerts see a value rather than none.
    pub fn set_depths(&self, queues: &[&'static str], rows: &[JobDepthSample<'_>]) {
        let mut sizes: HashMap<(&'static str, String), u64> = HashMap::new();
        let mut totals: HashMap<&'static str, u64> = queues.iter().map(|q| (*q, 0)).collect();
        let mut oldest: HashMap<&'static str, i64> = queues.iter().map(|q| (*q, 0)).collect();
        for row in rows {
            let label = self.tenants.label(row.tenant_id).to_owned();
            *sizes.entry((row.queue_name, label)).or_default() += row.pending;
            *totals.entry(row.queue_name).or_default() += row.pending;
            let age = oldest.entry(row.queue_name).or_default();
            *age = (*age).max(row.oldest_pending_age_ms.unwrap_or(0));
        }
        let mut sized = self
            .metrics
            .sized
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in sized.iter().filter(|k| !sizes.contains_key(*k)) {
            self.queues.set_tenant_size(gone.0, &gone.1, 0);
        }
        for ((queue, label), size) in &sizes {
            self.queues.set_tenant_size(queue, label, *size);
        }
        *sized = sizes.into_keys().collect();
        for (queue, total) in totals {
            self.queues.set_depth(queue, total);
        }
        for (queue_name, age_ms) in oldest {
            self.metrics
                .oldest
                .get_or_create(&QueueLabel { queue_name })
                .set(age_ms.max(0) as f64 / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{parse, samples, total, OpenMetricsValue};
    use crate::{JobDepthSample, Metrics, MetricsConfig};
    use std::time::Duration;

    const QUEUES: [&str; 5] = ["critical", "high", "normal", "low", "bulk"];

    #[test]
    fn job_series_are_exposed_and_depths_replace() {
        let m = Metrics::new(MetricsConfig {
            tenant_label_limit: 1,
            ..MetricsConfig::default()
        });
        let jobs = m.jobs();
        jobs.init_queues(&QUEUES);
        let exp = parse(&m.encode());
        assert_eq!(
            total(&exp, "jobs_dead", &[("queue_name", "critical")]),
            Some(0.0)
        );
        jobs.finished("normal", "jobs.noop", "success", Duration::from_millis(3));
        jobs.finished(
            "normal",
            "jobs.canary",
            "retrying",
            Duration::from_millis(3),
        );
        jobs.finished("bulk", "jobs.canary", "dead", Duration::from_millis(3));
        jobs.lost("bulk", 2);
        jobs.lost("high", 0);
        let sample = |tenant_id, queue_name, pending, age| JobDepthSample {
            tenant_id,
            queue_name,
            pending,
            oldest_pending_age_ms: age,
        };
        jobs.set_depths(
            &QUEUES,
            &[
                sample("tn_a", "normal", 3, Some(4_000)),
                sample("tn_b", "normal", 2, Some(9_000)),
                sample("tn_c", "normal", 1, None),
            ],
        );
        let exp = parse(&m.encode());
        let normal = [("queue_name", "normal")];
        assert_eq!(
            total(
                &exp,
                "jobs_finished",
                &[("queue_name", "normal"), ("status", "success")]
            ),
            Some(1.0)
        );
        assert_eq!(total(&exp, "jobs_retries", &normal), Some(1.0));
        assert_eq!(
            total(&exp, "jobs_dead", &[("queue_name", "bulk")]),
            Some(3.0)
        );
        assert_eq!(
            total(&exp, "jobs_dead", &[("queue_name", "high")]),
            Some(0.0)
        );
        assert_eq!(
            total(
                &exp,
                "queue_size",
                &[("queue_name", "normal"), ("tenant_id", "tn_a")]
            ),
            Some(3.0)
        );
        // Past the label limit, tenants are folded into `other`.
        assert_eq!(
            total(
                &exp,
                "queue_size",
                &[("queue_name", "normal"), ("tenant_id", "other")]
            ),
            Some(3.0)
        );
        assert_eq!(total(&exp, "message_queue_depth", &normal), Some(6.0));
        assert_eq!(
            total(&exp, "jobs_oldest_pending_age_seconds", &normal),
            Some(9.0)
        );
        assert_eq!(
            total(
                &exp,
                "jobs_oldest_pending_age_seconds",
                &[("queue_name", "critical")]
            ),
            Some(0.0)
        );
        let processing = samples(
            &exp,
            "queue_processing_duration_seconds",
            &[("queue_name", "normal"), ("message_type", "jobs.noop")],
        );
        assert!(
            matches!(processing.as_slice(), [OpenMetricsValue::Histogram(_)]),
            "{processing:?}"
        );
        // A later sample without tn_a zeroes its series instead of leaving the old depth.
        jobs.set_depths(&QUEUES, &[]);
        let exp = parse(&m.encode());
        assert_eq!(
            total(
                &exp,
                "queue_size",
                &[("queue_name", "normal"), ("tenant_id", "tn_a")]
            ),
            Some(0.0)
        );
        assert_eq!(
            total(&exp, "jobs_oldest_pending_age_seconds", &normal),
            Some(0.0)
        );
    }
}
