//! Seed 003's "Custom Infrastructure Monitoring", sampled by a background task on an interval
//! (15 s by default), never on the request path:
//! - `system_cpu_usage_percent`, `system_memory_usage_percent` (gauges);
//! - `system_disk_usage_percent{mount_point}` and `system_disk_available_bytes{mount_point}`
//!   (gauges; the second is what a disk-full prediction extrapolates). Pseudo and virtual file
//!   systems (tmpfs, overlay, proc, …) are left out and at most
//!   [`HostMonitorConfig::max_mount_points`] mounts are shown, the first in path order;
//! - `system_network_io_bytes_total{direction}` (counter, `received` / `sent`): the growth of
//!   every interface's cumulative byte counts since the previous sample. The seed added the
//!   cumulative totals again on every loop; here a sample adds only what is new
//!   ([`NetworkTotals`]), and an interface whose count went down (reset) adds its new count;
//! - `database_connections_current{database}` (gauge): open connections (in use and idle) of
//!   the store's pools; `database` is the backend, `sqlite` or `postgres`;
//! - `database_queries_per_second{database}` (gauge): store calls completed since the previous
//!   sample divided by the seconds between the samples: a rate, where the seed reported the
//!   raw cumulative count;
//! - `cache_hit_rate_percent{cache_type}` (gauge, `memory` = the in-process layer, `redis` =
//!   the shared layer): hits over lookups of every read cache since the previous sample;
//!   left as it was when there was no lookup in between;
//! - `message_queue_depth{queue_name}` and `queue_size{queue_name,tenant_id="all"}` from the
//!   queues watched with [`crate::QueueMetrics::watch_depth`];
//! - `signalbox_desired_replicas{policy}`: the autoscaling signal (module `scaling`),
//!   evaluated with this sample's CPU usage (the host's, as this process sees it) and the
//!   pending jobs from [`crate::ScalingMetrics::watch_pending_jobs`].
//!
//! The seed's slow-query counter, re-counted every sample, is `database_slow_queries_total`
//! of the `database` module, which shows the store's own cumulative count.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use cache::CacheStats;
use store::StoreStats;

use crate::Metrics;

/// File system types that are not storage a disk-full alert should watch.
const PSEUDO_FILE_SYSTEMS: [&str; 30] = [
    "tmpfs",
    "devtmpfs",
    "overlay",
    "overlayfs",
    "aufs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "hugetlbfs",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "fusectl",
    "configfs",
    "ramfs",
    "efivarfs",
    "binfmt_misc",
    "rpc_pipefs",
    "nsfs",
    "squashfs",
    "fuse.lxcfs",
    "nfsd",
    "shm",
    "none",
];

type GaugeF64 = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MountLabel {
    mount_point: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabel {
    database: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheTypeLabel {
    cache_type: &'static str,
}

/// The sampled gauges and counters, registered with the rest.
#[derive(Debug)]
pub(crate) struct HostMetrics {
    cpu: GaugeF64,
    memory: GaugeF64,
    disk_usage: Family<MountLabel, GaugeF64>,
    disk_available: Family<MountLabel, Gauge>,
    network: Family<DirectionLabel, Counter>,
    db_connections: Family<DatabaseLabel, Gauge>,
    db_rate: Family<DatabaseLabel, GaugeF64>,
    cache_hit_rate: Family<CacheTypeLabel, GaugeF64>,
}

impl HostMetrics {
    pub(crate) fn register(registry: &mut Registry) -> HostMetrics {
        let m = HostMetrics {
            cpu: GaugeF64::default(),
            memory: GaugeF64::default(),
            disk_usage: Family::default(),
            disk_available: Family::default(),
            network: Family::default(),
            db_connections: Family::default(),
            db_rate: Family::default(),
            cache_hit_rate: Family::default(),
        };
        registry.register(
            "system_cpu_usage_percent",
            "CPU usage percentage, all cores, over the last sample interval",
            m.cpu.clone(),
        );
        registry.register(
            "system_memory_usage_percent",
            "Memory usage percentage",
            m.memory.clone(),
        );
        registry.register(
            "system_disk_usage_percent",
            "Disk usage percentage",
            m.disk_usage.clone(),
        );
        registry.register(
            "system_disk_available_bytes",
            "Disk space available to unprivileged users, in bytes",
            m.disk_available.clone(),
        );
        registry.register(
            "system_network_io_bytes",
            "Network I/O bytes of every interface (received, sent)",
            m.network.clone(),
        );
        registry.register(
            "database_connections_current",
            "Open database connections (in use and idle) of the store's pools",
            m.db_connections.clone(),
        );
        registry.register(
            "database_queries_per_second",
            "Store calls per second over the last sample interval",
            m.db_rate.clone(),
        );
        registry.register(
            "cache_hit_rate_percent",
            "Read-cache hits over lookups since the previous sample, percent (memory = in-process layer, redis = shared layer)",
            m.cache_hit_rate.clone(),
        );
        m
    }
}

/// Settings of the host sampler.
#[derive(Debug, Clone)]
pub struct HostMonitorConfig {
    /// Time between samples (15 s by default).
    pub interval: Duration,
    /// Most mount points shown (16 by default).
    pub max_mount_points: usize,
}

impl Default for HostMonitorConfig {
    fn default() -> Self {
        HostMonitorConfig {
            interval: Duration::from_secs(15),
            max_mount_points: 16,
        }
    }
}

/// Cumulative per-interface byte counts turned into a counter that grows only by what is new.
///
/// ```
/// let mut totals = telemetry::NetworkTotals::default();
/// assert_eq!(totals.advance([("eth0", 1_000, 500)]), (1_000, 500));
/// // The same cumulative counts again add nothing (the seed added them again).
/// assert_eq!(totals.advance([("eth0", 1_000, 500)]), (0, 0));
/// assert_eq!(totals.advance([("eth0", 1_300, 900)]), (300, 400));
/// ```
#[derive(Debug, Default, Clone)]
pub struct NetworkTotals {
    last: HashMap<String, (u64, u64)>,
}

impl NetworkTotals {
    /// Takes each interface's cumulative (received, sent) bytes and returns the bytes
    /// received and sent since the previous call. An interface seen for the first time adds
    /// its whole count (its traffic so far is new to the counter); one whose count went down
    /// was reset and adds its new count; one that disappeared is forgotten.
    pub fn advance<'a>(
        &mut self,
        readings: impl IntoIterator<Item = (&'a str, u64, u64)>,
    ) -> (u64, u64) {
        let mut next = HashMap::with_capacity(self.last.len());
        let (mut received, mut sent) = (0u64, 0u64);
        for (name, rx, tx) in readings {
            let (last_rx, last_tx) = self.last.get(name).copied().unwrap_or((0, 0));
            let grow = |now: u64, before: u64| if now >= before { now - before } else { now };
            received = received.saturating_add(grow(rx, last_rx));
            sent = sent.saturating_add(grow(tx, last_tx));
            next.insert(name.to_owned(), (rx, tx));
        }
        self.last = next;
        (received, sent)
    }
}

/// What one sample reads from the application (the host's own readings come from the OS).
#[derive(Debug, Clone)]
pub struct HostInputs {
    /// When the readings were taken.
    pub at: Instant,
    pub store: Option<StoreStats>,
    pub caches: Vec<CacheStats>,
    /// Depth of each watched queue.
    pub queues: Vec<(&'static str, u64)>,
}

impl HostInputs {
    /// Reads what `metrics` watches: the store, the read caches and the queues.
    pub fn read(metrics: &Metrics, at: Instant) -> HostInputs {
        HostInputs {
            at,
            store: metrics.database().reader().map(|read| read()),
            caches: metrics
                .caches()
                .readers()
                .into_iter()
                .map(|(_, read)| read())
                .collect(),
            queues: metrics.queues().read_depths(),
        }
    }
}

struct State {
    /// `None` where the platform is not supported (those series are then not shown).
    system: Option<sysinfo::System>,
    disks: Option<sysinfo::Disks>,
    networks: Option<sysinfo::Networks>,
    network_totals: NetworkTotals,
    cpu_primed: bool,
    mounts: BTreeSet<String>,
    /// (when, store calls so far) at the previous sample.
    queries: Option<(Instant, u64)>,
    /// (hits, misses) of each layer so far at the previous sample.
    cache_counts: Option<[(u64, u64); 2]>,
}

/// Samples the host and the application's infrastructure gauges into a [`Metrics`]; see the
/// module docs for the series. Run [`HostMonitor::sample`] every
/// [`HostMonitor::interval`] from a background task.
pub struct HostMonitor {
    config: HostMonitorConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for HostMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMonitor")
            .field("config", &self.config)
            .finish()
    }
}

impl HostMonitor {
    pub fn new(config: HostMonitorConfig) -> HostMonitor {
        HostMonitor {
            config,
            state: Mutex::new(State {
                system: sysinfo::System::new().ok(),
                disks: sysinfo::Disks::new().ok(),
                networks: sysinfo::Networks::new().ok(),
                network_totals: NetworkTotals::default(),
                cpu_primed: false,
                mounts: BTreeSet::new(),
                queries: None,
                cache_counts: None,
            }),
        }
    }

    /// Time between samples.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Takes one sample of everything: the host (CPU, memory, disks, network) and what
    /// `metrics` watches (store, caches, queues). It reads `/proc` and file-system stats, so
    /// call it from a blocking-friendly task, not a request.
    ///
    /// It also evaluates the autoscaling signal (module `scaling`) with the CPU usage just
    /// read and the pending jobs the job runtime reports.
    pub fn sample(&self, metrics: &Metrics) {
        let cpu = self.sample_host(metrics);
        self.record(metrics, &HostInputs::read(metrics, Instant::now()));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let scaling = metrics.scaling();
        scaling.evaluate(now_ms, cpu, scaling.read_pending());
    }

    /// Records the application part of a sample from `inputs` (rates are over the time since
    /// the previous call's `inputs.at`).
    pub fn record(&self, metrics: &Metrics, inputs: &HostInputs) {
        let host = &metrics.host;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = &inputs.store {
            let database = stats.backend.as_str();
            let label = DatabaseLabel { database };
            let open: i64 = stats
                .pools
                .iter()
                .map(|p| i64::from(p.in_use) + i64::from(p.idle))
                .sum();
            host.db_connections.get_or_create(&label).set(open);
            let calls: u64 = stats.queries.iter().map(|q| q.durations.count).sum();
            if let Some((before, calls_before)) = state.queries {
                let seconds = inputs.at.saturating_duration_since(before).as_secs_f64();
                if seconds > 0.0 {
                    // Fewer calls than before means a new store: count from zero.
                    let new = calls.checked_sub(calls_before).unwrap_or(calls);
                    host.db_rate.get_or_create(&label).set(new as f64 / seconds);
                }
            }
            state.queries = Some((inputs.at, calls));
        }
        if !inputs.caches.is_empty() {
            let mut now = [(0u64, 0u64); 2];
            for c in &inputs.caches {
                for (i, layer) in [&c.l1, &c.l2].into_iter().enumerate() {
                    now[i].0 = now[i].0.saturating_add(layer.hits);
                    now[i].1 = now[i].1.saturating_add(layer.misses);
                }
            }
            let before = state.cache_counts.unwrap_or_default();
            for (i, cache_type) in ["memory", "redis"].into_iter().enumerate() {
                let hits = now[i].0.checked_sub(before[i].0).unwrap_or(now[i].0);
                let misses = now[i].1.checked_sub(before[i].1).unwrap_or(now[i].1);
                let lookups = hits.saturating_add(misses);
                if lookups > 0 {
                    host.cache_hit_rate
                        .get_or_create(&CacheTypeLabel { cache_type })
                        .set(hits as f64 * 100.0 / lookups as f64);
                }
            }
            state.cache_counts = Some(now);
        }
        for (queue_name, depth) in &inputs.queues {
            metrics.queues().set_size(queue_name, *depth);
        }
    }

    /// Samples the host's own readings; returns the CPU usage in percent, once primed.
    fn sample_host(&self, metrics: &Metrics) -> Option<f64> {
        let host = &metrics.host;
        let mut cpu = None;
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        if let Some(system) = state.system.as_mut() {
            system.refresh_cpu_usage();
            // CPU usage is measured between two refreshes: the first one only primes it.
            if state.cpu_primed {
                let usage = f64::from(system.global_cpu_usage());
                host.cpu.set(usage);
                cpu = Some(usage);
            }
            state.cpu_primed = true;
            system.refresh_memory();
            let total = system.total_memory();
            if total > 0 {
                let used = system.used_memory();
                host.memory.set(used as f64 * 100.0 / total as f64);
            }
        }
        if let Some(disks) = state.disks.as_mut() {
            disks.refresh(true);
            let mut listed: Vec<(String, u64, u64)> = disks
                .iter()
                .filter(|d| {
                    let fs = d.file_system().to_string_lossy();
                    d.total_space() > 0 && !PSEUDO_FILE_SYSTEMS.contains(&fs.as_ref())
                })
                .map(|d| {
                    (
                        d.mount_point().to_string_lossy().into_owned(),
                        d.total_space(),
                        d.available_space(),
                    )
                })
                .collect();
            listed.sort();
            listed.dedup_by(|a, b| a.0 == b.0);
            let mut seen: BTreeSet<String> = BTreeSet::new();
            for (mount_point, total, available) in
                listed.into_iter().take(self.config.max_mount_points)
            {
                let label = MountLabel {
                    mount_point: crate::tenant_scrape::escape(&mount_point).into_owned(),
                };
                let used = total.saturating_sub(available);
                host.disk_usage
                    .get_or_create(&label)
                    .set(used as f64 * 100.0 / total as f64);
                host.disk_available
                    .get_or_create(&label)
                    .set(i64::try_from(available).unwrap_or(i64::MAX));
                seen.insert(label.mount_point);
            }
            // A mount that went away stops being shown.
            for gone in state.mounts.difference(&seen) {
                let label = MountLabel {
                    mount_point: gone.clone(),
                };
                host.disk_usage.remove(&label);
                host.disk_available.remove(&label);
            }
            state.mounts = seen;
        }
        if let Some(networks) = state.networks.as_mut() {
            networks.refresh(true);
            let readings: Vec<(String, u64, u64)> = networks
                .iter()
                .map(|(name, data)| {
                    (
                        name.to_string_lossy().into_owned(),
                        data.total_received(),
                        data.total_transmitted(),
                    )
                })
                .collect();
            let (received, sent) = state
                .network_totals
                .advance(readings.iter().map(|(n, rx, tx)| (n.as_str(), *rx, *tx)));
            host.network
                .get_or_create(&DirectionLabel {
                    direction: "received",
                })
                .inc_by(received);
            host.network
                .get_or_create(&DirectionLabel { direction: "sent" })
                .inc_by(sent);
        }
        cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{parse, total};
    use crate::MetricsConfig;

    fn store_stats(calls: u64, in_use: u32, idle: u32) -> StoreStats {
        let durations = store::HistogramSnapshot {
            count: calls,
            sum_seconds: 0.0,
            buckets: Vec::new(),
        };
        StoreStats {
            backend: store::Backend::Postgres,
            queries: vec![store::QueryStats {
                operation: "select",
                table: "tenants",
                durations,
                slow: 0,
            }],
            pools: vec![store::PoolStats {
                role: store::PoolRole::Primary,
                in_use,
                idle,
                max: 10,
                acquire_wait: store::HistogramSnapshot {
                    count: 0,
                    sum_seconds: 0.0,
                    buckets: Vec::new(),
                },
                acquire_timeouts: 0,
            }],
            replica_reads: 0,
            replica_fallbacks: 0,
            slow_query_threshold: Duration::from_secs(1),
        }
    }

    fn caches(l1: (u64, u64), l2: (u64, u64)) -> Vec<CacheStats> {
        vec![CacheStats {
            l1: cache::LayerStats {
                hits: l1.0,
                misses: l1.1,
                ..Default::default()
            },
            l2: cache::LayerStats {
                hits: l2.0,
                misses: l2.1,
                ..Default::default()
            },
            ..Default::default()
        }]
    }

    #[test]
    fn the_query_rate_is_a_rate_and_hit_rates_cover_the_interval() {
        let metrics = Metrics::new(MetricsConfig::default());
        let monitor = HostMonitor::new(HostMonitorConfig::default());
        let t0 = Instant::now();
        let at = |secs| HostInputs {
            at: t0 + Duration::from_secs(secs),
            store: None,
            caches: Vec::new(),
            queues: Vec::new(),
        };
        monitor.record(
            &metrics,
            &HostInputs {
                store: Some(store_stats(1_000, 2, 3)),
                caches: caches((90, 10), (0, 0)),
                ..at(0)
            },
        );
        let exp = parse(&metrics.encode());
        assert_eq!(
            total(&exp, "database_queries_per_second", &[]),
            None,
            "no rate from one sample"
        );
        assert_eq!(
            total(
                &exp,
                "database_connections_current",
                &[("database", "postgres")]
            ),
            Some(5.0)
        );
        assert_eq!(
            total(&exp, "cache_hit_rate_percent", &[("cache_type", "memory")]),
            Some(90.0)
        );
        monitor.record(
            &metrics,
            &HostInputs {
                store: Some(store_stats(1_300, 1, 1)),
                // 10 more lookups, 5 hits: the interval's rate is 50 %, the lifetime's 86 %.
                caches: caches((95, 15), (3, 1)),
                queues: vec![("flag_exposures", 7)],
                ..at(10)
            },
        );
        let exp = parse(&metrics.encode());
        // 300 calls in 10 s: 30 per second, not the cumulative 1,300 the seed reported.
        assert_eq!(
            total(
                &exp,
                "database_queries_per_second",
                &[("database", "postgres")]
            ),
            Some(30.0)
        );
        assert_eq!(total(&exp, "database_connections_current", &[]), Some(2.0));
        assert_eq!(
            total(&exp, "cache_hit_rate_percent", &[("cache_type", "memory")]),
            Some(50.0)
        );
        assert_eq!(
            total(&exp, "cache_hit_rate_percent", &[("cache_type", "redis")]),
            Some(75.0)
        );
        assert_eq!(
            total(
                &exp,
                "message_queue_depth",
                &[("queue_name", "flag_exposures")]
            ),
            Some(7.0)
        );
        assert_eq!(
            total(
                &exp,
                "queue_size",
                &[("queue_name", "flag_exposures"), ("tenant_id", "all")]
            ),
            Some(7.0)
        );
        // No calls in the next interval: the rate drops to 0 rather than holding.
        monitor.record(
            &metrics,
            &HostInputs {
                store: Some(store_stats(1_300, 0, 2)),
                ..at(25)
            },
        );
        let exp = parse(&metrics.encode());
        assert_eq!(total(&exp, "database_queries_per_second", &[]), Some(0.0));
    }

    #[test]
    fn network_bytes_are_added_once() {
        let mut totals = NetworkTotals::default();
        assert_eq!(
            totals.advance([("lo", 100, 100), ("eth0", 1_000, 10)]),
            (1_100, 110)
        );
        assert_eq!(
            totals.advance([("lo", 100, 100), ("eth0", 1_000, 10)]),
            (0, 0)
        );
        assert_eq!(
            totals.advance([("lo", 150, 120), ("eth0", 1_000, 10)]),
            (50, 20)
        );
        // eth0 was reset (its count went down): its new count is new traffic.
        assert_eq!(totals.advance([("lo", 150, 120), ("eth0", 40, 4)]), (40, 4));
        // An interface that went away and came back counts from its new total.
        assert_eq!(totals.advance([("lo", 150, 120)]), (0, 0));
        assert_eq!(totals.advance([("lo", 150, 120), ("eth0", 60, 6)]), (60, 6));
    }

    #[test]
    fn host_samples_never_exceed_the_interfaces_totals() {
        let metrics = Metrics::new(MetricsConfig::default());
        let monitor = HostMonitor::new(HostMonitorConfig {
            interval: Duration::from_secs(15),
            max_mount_points: 3,
        });
        for _ in 0..3 {
            monitor.sample(&metrics);
        }
        let exp = parse(&metrics.encode());
        // Read the cumulative totals after the samples: the counter, which started with the
        // process, can be at most that (the seed's loop would show three times as much).
        let networks = sysinfo::Networks::new_with_refreshed_list().expect("networks on Linux");
        let received: u64 = networks.values().map(|d| d.total_received()).sum();
        let counted = total(
            &exp,
            "system_network_io_bytes",
            &[("direction", "received")],
        );
        assert!(
            counted.is_some_and(|c| c <= received as f64),
            "{counted:?} > {received}"
        );
        let mounts: Vec<String> = metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("system_disk_usage_percent{"))
            .map(str::to_owned)
            .collect();
        assert!(mounts.len() <= 3, "{mounts:#?}");
        for line in &mounts {
            for pseudo in [
                "mount_point=\"/proc\"",
                "mount_point=\"/sys\"",
                "mount_point=\"/dev/shm\"",
            ] {
                assert!(!line.contains(pseudo), "{line}");
            }
        }
        let memory = total(&exp, "system_memory_usage_percent", &[]);
        assert!(memory.is_some_and(|m| m > 0.0 && m <= 100.0), "{memory:?}");
        let cpu = total(&exp, "system_cpu_usage_percent", &[]);
        assert!(cpu.is_some_and(|c| (0.0..=100.0).contains(&c)), "{cpu:?}");
    }
}
