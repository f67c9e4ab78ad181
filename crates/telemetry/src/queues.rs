//! The in-process queues' series (seed 003):
//! - `queue_size{queue_name,tenant_id}` (gauge): items waiting. signalbox's in-process
//!   queues (the flag exposure writer's, …) are shared by all tenants, so they report
//!   `tenant_id="all"` ([`ALL_TENANTS`]), a value no tenant has;
//! - `queue_processing_duration_seconds{queue_name,message_type}` (histogram): how long one
//!   item (or batch) took to process, with the Prometheus clients' default buckets as the seed
//!   (it names none);
//! - `message_queue_depth{queue_name}` (gauge, the seed's infrastructure monitor): the same
//!   depth without the tenant label.
//!
//! `queue_name` and `message_type` are fixed by the server (`&'static str`), so bounded.
//! The background job queues (module `jobs`) report `queue_size` per tenant, through the
//! tenant label guard, under their priority's name (`critical` … `bulk`).
//! A queue registers a depth reader with [`QueueMetrics::watch_depth`]; the host sampler reads
//! it on its interval, never on the request path. Queues in signalbox today:
//! `flag_exposures` (the flag exposure writer's bounded channel; processing = one store write
//! of a tenant's batch, `message_type="exposure_batch"`) and `weber_events` (the event
//! stream's unapplied messages, the same figure as `weber_stream_lag`; processing = one
//! applied batch, `message_type="interaction_batch"`).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Buckets;

/// The `tenant_id` of a queue shared by every tenant.
pub const ALL_TENANTS: &str = "all";

/// The Prometheus clients' default histogram buckets, in seconds.
pub const QUEUE_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

type DepthReader = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabels {
    queue_name: &'static str,
    tenant_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessingLabels {
    queue_name: &'static str,
    message_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue_name: &'static str,
}

/// The queue series; reach them through [`crate::Metrics::queues`].
pub struct QueueMetrics {
    size: Family<SizeLabels, Gauge>,
    processing: Family<ProcessingLabels, Histogram, Buckets>,
    depth: Family<QueueLabel, Gauge>,
    readers: RwLock<Vec<(&'static str, DepthReader)>>,
}

impl std::fmt::Debug for QueueMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.readers().iter().map(|(n, _)| *n).collect();
        f.debug_struct("QueueMetrics")
            .field("watched", &names)
            .finish()
    }
}

impl QueueMetrics {
    pub(crate) fn register(registry: &mut Registry) -> QueueMetrics {
        let m = QueueMetrics {
            size: Family::default(),
            processing: Family::new_with_constructor(Buckets(&QUEUE_BUCKETS)),
            depth: Family::default(),
            readers: RwLock::new(Vec::new()),
        };
        registry.register(
            "queue_size",
            "Number of items in queue (tenant_id=\"all\" for a queue shared by every tenant)",
            m.size.clone(),
        );
        registry.register(
            "queue_processing_duration_seconds",
            "Queue item processing duration",
            m.processing.clone(),
        );
        registry.register(
            "message_queue_depth",
            "Message queue depth, sampled",
            m.depth.clone(),
        );
        m
    }

    /// Lets the host sampler read `queue_name`'s depth; watching a name again replaces its
    /// reader.
    pub fn watch_depth(
        &self,
        queue_name: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        let mut readers = self.readers.write().unwrap_or_else(PoisonError::into_inner);
        readers.retain(|(name, _)| *name != queue_name);
        readers.push((queue_name, Arc::new(read)));
    }

    /// Records how long one item of `message_type` took to process.
    pub fn observe_processing(
        &self,
        queue_name: &'static str,
        message_type: &'static str,
        took: Duration,
    ) {
        self.processing
            .get_or_create(&ProcessingLabels {
                queue_name,
                message_type,
            })
            .observe(took.as_secs_f64());
    }

    /// Sets a shared queue's depth now: `queue_size{tenant_id="all"}` and
    /// `message_queue_depth` (the sampler does this for watched queues; a queue whose depth
    /// is only known asynchronously, like the event stream's lag, calls it itself).
    pub fn set_size(&self, queue_name: &'static str, size: u64) {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.depth
            .get_or_create(&QueueLabel { queue_name })
            .set(size);
        self.size
            .get_or_create(&SizeLabels {
                queue_name,
                tenant_id: ALL_TENANTS.to_owned(),
            })
            .set(size);
    }

    /// Sets one tenant's depth of a per-tenant queue (`tenant_label` already through the
    /// tenant guard) in `queue_size`.
    pub(crate) fn set_tenant_size(&self, queue_name: &'static str, tenant_label: &str, size: u64) {
        self.size
            .get_or_create(&SizeLabels {
                queue_name,
                tenant_id: tenant_label.to_owned(),
            })
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// Sets a queue's total depth in `message_queue_depth` only (a per-tenant queue reports
    /// its `queue_size` by tenant).
    pub(crate) fn set_depth(&self, queue_name: &'static str, size: u64) {
        self.depth
            .get_or_create(&QueueLabel { queue_name })
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// Reads every watched queue's depth.
    pub(crate) fn read_depths(&self) -> Vec<(&'static str, u64)> {
        self.readers()
            .into_iter()
            .map(|(name, read)| (name, read()))
            .collect()
    }

    fn readers(&self) -> Vec<(&'static str, DepthReader)> {
        self.readers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
