//! `signalbox loadtest --scenario feedback-ingest`: the feedback tiers' latency under a steady
//! load (issue 17, acceptance 5).
//!
//! First the tenant's configuration is set to research mode (every item gets the full policy
//! checks; needs an admin key). Then for `--duration`:
//! - realtime posters send batches of `--batch` new items at `--rate` items/s in total over
//!   `--connections` connections, open loop (a batch per tick, whatever the answers take); each
//!   request's latency is one sample (the items are analysed inline, so it covers their
//!   processing);
//! - one poster per queued tier (priority, standard, batch) sends `--batch`-item batches at
//!   `--queued-rate` items/s each.
//!
//! Afterwards the run's queued items are read back (`GET /api/v1/feedback`, waiting until they
//! are processed or 70 s passed) and each one's time from accept (`received_at_ms`) to
//! processed (`processed_at_ms`) is a sample of its tier.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::freshness::{connect, Sender};

/// The configuration the run sets: full checks on every item.
const RESEARCH: &str = "mode = \"research\"\n";
/// How long queued items may take to be processed after the load stops (the batch tier's 60 s
/// budget and a margin).
const DRAIN: Duration = Duration::from_secs(70);
const QUEUED: [&str; 3] = ["priority", "standard", "batch"];

pub struct FeedbackLoadPlan {
    pub base: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub connections: usize,
    pub duration: Duration,
    /// Realtime items per second, all connections together.
    pub rate: u64,
    /// Items per second of each queued tier (0: none).
    pub queued_rate: u64,
    pub batch: usize,
}

async fn send(
    sender: &mut Sender,
    plan: &FeedbackLoadPlan,
    method: Method,
    path: &str,
    body: Option<(&'static str, Vec<u8>)>,
) -> anyhow::Result<(u16, Bytes)> {
    let authority = plan.base.authority().map(|a| a.as_str()).unwrap_or("");
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (k, v) in &plan.headers {
        req = req.header(k, v);
    }
    let body = match body {
        Some((content_type, bytes)) => {
            req = req.header(http::header::CONTENT_TYPE, content_type);
            bytes
        }
        None => Vec::new(),
    };
    let req = req.body(Full::new(Bytes::from(body)))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Review texts with some personal data and the odd complaint, so PII, toxicity and the policy
/// rules have work to do.
const TEXTS: [&str; 6] = [
    "Great app, the new dashboard is fast and clear. Thanks!",
    "Checkout failed twice, call me at +44 20 7946 0958 or mail jane.doe@example.com.",
    "The export is broken again and support never answers. Very disappointing.",
    "Love it. Rating it low by mistake earlier, sorry about that.",
    "My card 4111 1111 1111 1111 was charged twice for order 88412, please refund.",
    "Search results are useless and the app crashes on every start, awful update.",
];

fn items(run_id: &str, poster: &str, n: &mut u64, batch: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..batch)
        .map(|_| {
            *n += 1;
            json!({
                "id": format!("{run_id}-{poster}-{n}"),
                "user_id": format!("load-{}", *n % 5_000),
                "type": "review",
                "rating": *n % 5 + 1,
                "text": TEXTS[(*n % TEXTS.len() as u64) as usize],
                "region": "eu",
            })
        })
        .collect();
    serde_json::to_vec(&items).unwrap_or_default()
}

/// Posts batches of `tier` items every `interval` until `deadline`, recording each request's
/// latency in `samples` (microseconds).
#[allow(clippy::too_many_arguments)]
async fn poster(
    plan: Arc<FeedbackLoadPlan>,
    run_id: String,
    name: String,
    tier: &'static str,
    interval: Duration,
    deadline: Instant,
    samples: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    counts: Arc<(AtomicU64, AtomicU64)>,
) -> anyhow::Result<()> {
    let mut sender = connect(&plan.base).await?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let path = format!("/api/v1/feedback?tier={tier}");
    let mut n = 0u64;
    while Instant::now() < deadline {
        tick.tick().await;
        let body = items(&run_id, &name, &mut n, plan.batch);
        let began = Instant::now();
        let answer = send(
            &mut sender,
            &plan,
            Method::POST,
            &path,
            Some(("application/json", body)),
        )
        .await;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        match answer {
            Ok((200, _)) => {
                counts.0.fetch_add(plan.batch as u64, Ordering::Relaxed);
                if let Ok(mut h) = samples.lock() {
                    let _ = h.record(micros);
                }
            }
            Ok((status, reply)) => {
                counts.1.fetch_add(1, Ordering::Relaxed);
                if counts.1.load(Ordering::Relaxed) <= 3 {
                    eprintln!(
                        "loadtest: {tier} post answered {status}: {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
            }
            Err(e) => {
                counts.1.fetch_add(1, Ordering::Relaxed);
                // The connection is gone: a new one for the next batch.
                eprintln!("loadtest: {tier} post failed: {e:#}");
                sender = connect(&plan.base).await?;
            }
        }
    }
    Ok(())
}

fn quantiles(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let q = |q: f64| h.value_at_quantile(q) as f64 / scale;
    json!({"count": h.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": h.max() as f64 / scale})
}

pub async fn run(plan: FeedbackLoadPlan) -> anyhow::Result<Value> {
    if plan.connections == 0 || plan.batch == 0 || plan.rate == 0 {
        bail!("connections, batch and rate must be positive");
    }
    let plan = Arc::new(plan);
    let mut admin = connect(&plan.base).await?;
    let (status, reply) = send(
        &mut admin,
        &plan,
        Method::PUT,
        "/api/v1/feedback/config",
        Some(("application/toml", RESEARCH.as_bytes().to_vec())),
    )
    .await?;
    if status != 200 {
        bail!(
            "setting research mode answered {status} (the key needs the admin scope): {}",
            String::from_utf8_lossy(&reply)
        );
    }
    let run_id = format!("fl{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let started_ms = wall_clock_ms();
    let deadline = Instant::now() + plan.duration;
    let realtime = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new(3)?));
    let realtime_counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let queued_counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let per_poster = plan.rate as f64 / plan.connections as f64;
    let interval = Duration::from_secs_f64(plan.batch as f64 / per_poster);
    let mut tasks = Vec::new();
    for p in 0..plan.connections {
        tasks.push(tokio::spawn(poster(
            plan.clone(),
            run_id.clone(),
            format!("rt{p}"),
            "realtime",
            interval,
            deadline,
            realtime.clone(),
            realtime_counts.clone(),
        )));
    }
    let started = Instant::now();
    if plan.queued_rate > 0 {
        let interval = Duration::from_secs_f64(plan.batch as f64 / plan.queued_rate as f64);
        for tier in QUEUED {
            tasks.push(tokio::spawn(poster(
                plan.clone(),
                run_id.clone(),
                tier.to_owned(),
                tier,
                interval,
                deadline,
                Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new(3)?)),
                queued_counts.clone(),
            )));
        }
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();

    // The queued items: accept to processed, per tier.
    let mut per_tier: BTreeMap<&str, hdrhistogram::Histogram<u64>> = BTreeMap::new();
    let mut unprocessed = 0u64;
    let drain_deadline = Instant::now() + DRAIN;
    if plan.queued_rate > 0 {
        loop {
            per_tier.clear();
            unprocessed = 0;
            let mut cursor: Option<String> = None;
            loop {
                let mut path =
                    format!("/api/v1/feedback?limit=500&type=review&from_ms={started_ms}");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let (status, reply) = send(&mut admin, &plan, Method::GET, &path, None).await?;
                if status != 200 {
                    bail!(
                        "listing items answered {status}: {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
                let page: Value = serde_json::from_slice(&reply)?;
                for item in page["items"].as_array().into_iter().flatten() {
                    let tier = item["tier"].as_str().unwrap_or("");
                    let Some(tier) = QUEUED.into_iter().find(|t| *t == tier) else {
                        continue;
                    };
                    if !item["id"].as_str().unwrap_or("").starts_with(&run_id) {
                        continue;
                    }
                    match (
                        item["received_at_ms"].as_i64(),
                        item["processed_at_ms"].as_i64(),
                    ) {
                        (Some(received), Some(processed)) => {
                            let h = match per_tier.entry(tier) {
                                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                                std::collections::btree_map::Entry::Vacant(e) => {
                                    e.insert(hdrhistogram::Histogram::<u64>::new(3)?)
                                }
                            };
                            let _ = h.record(u64::try_from(processed - received).unwrap_or(0));
                        }
                        _ => unprocessed += 1,
                    }
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            if unprocessed == 0 || Instant::now() > drain_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let realtime = realtime
        .lock()
        .map_err(|_| anyhow::anyhow!("a poster panicked"))?;
    Ok(json!({
        "mode": "research",
        "items_per_request": plan.batch,
        "realtime_items_per_s": realtime_counts.0.load(Ordering::Relaxed) as f64 / elapsed,
        "realtime_failed_requests": realtime_counts.1.load(Ordering::Relaxed),
        "realtime_request_ms": quantiles(&realtime, 1000.0),
        "queued_items_per_s_per_tier": plan.queued_rate,
        "queued_accepted": queued_counts.0.load(Ordering::Relaxed),
        "queued_failed_requests": queued_counts.1.load(Ordering::Relaxed),
        "queued_unprocessed_after_drain": unprocessed,
        "accept_to_processed_ms": per_tier
            .iter()
            .map(|(tier, h)| (tier.to_string(), quantiles(h, 1.0)))
            .collect::<serde_json::Map<_, _>>(),
    }))
}

fn wall_clock_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
