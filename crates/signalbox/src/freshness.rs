//! `signalbox loadtest --scenario weber-freshness`: how long after an ingest 2xx an updated
//! Weber profile is readable, while the server ingests a steady background load.
//!
//! Background posters send batches of unique events at `--rate` events/s in total, spread over
//! `--connections` connections. One probe connection repeatedly sends a single event for a probe
//! user and, once the 2xx arrives, reads that user's profile back-to-back until `review_count`
//! shows the event; the time from the 2xx to that read is one freshness sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// One HTTP/1.1 client connection (the load generators of `loadtest` share it).
pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub struct FreshnessPlan {
    pub base: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub connections: usize,
    pub duration: Duration,
    pub rate: u64,
    pub batch: usize,
}

/// Opens one connection to `base`'s authority, without Nagle's delay.
pub(crate) async fn connect(base: &Uri) -> anyhow::Result<Sender> {
    let authority = base
        .authority()
        .context("url: no host")?
        .as_str()
        .to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("url: cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(
    sender: &mut Sender,
    plan: &FreshnessPlan,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, Bytes)> {
    let authority = plan.base.authority().map(|a| a.as_str()).unwrap_or("");
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (k, v) in &plan.headers {
        req = req.header(k, v);
    }
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

pub async fn run(plan: FreshnessPlan) -> anyhow::Result<Value> {
    if plan.connections == 0 || plan.batch == 0 || plan.rate == 0 {
        bail!("connections, batch and rate must be positive");
    }
    let plan = Arc::new(plan);
    // Repeated runs against one server never reuse event ids.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + plan.duration;
    // Each poster sends one batch per tick; ticks are spaced so the posters together reach the
    // target rate.
    let per_poster = plan.rate as f64 / plan.connections as f64;
    let interval = Duration::from_secs_f64(plan.batch as f64 / per_poster);
    let mut posters = Vec::new();
    for p in 0..plan.connections {
        let (plan, sent, failed, run_id) =
            (plan.clone(), sent.clone(), failed.clone(), run_id.clone());
        posters.push(tokio::spawn(async move {
            let mut sender = connect(&plan.base).await?;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                // Events happen now, as in a live feed: mostly in time order per user, with the
                // occasional late one where two connections race within a millisecond.
                let now_ms = wall_clock_ms();
                let events: Vec<Value> = (0..plan.batch)
                    .map(|i| {
                        n += 1;
                        json!({"event_id": format!("{run_id}-p{p}-{n}"),
                               "user_id": format!("load-{}", (n * 7 + i as u64) % 50_000),
                               "timestamp": now_ms, "rating": n % 5 + 1})
                    })
                    .collect();
                let body = serde_json::to_vec(&events)?;
                match send(
                    &mut sender,
                    &plan,
                    Method::POST,
                    "/api/v1/interactions",
                    Some(body),
                )
                .await
                {
                    Ok((200, _)) => {
                        sent.fetch_add(plan.batch as u64, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }

    let mut probe = connect(&plan.base).await?;
    let mut samples = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut reads = 0u64;
    let mut i = 0u64;
    let started = Instant::now();
    while Instant::now() < deadline {
        let user = format!("probe-{run_id}-{}", i % 16);
        let want = i / 16 + 1;
        let body = serde_json::to_vec(&json!([{"event_id": format!("{run_id}-probe-{i}"),
            "user_id": user, "timestamp": wall_clock_ms(), "rating": i % 5 + 1}]))?;
        let (status, reply) = send(
            &mut probe,
            &plan,
            Method::POST,
            "/api/v1/interactions",
            Some(body),
        )
        .await?;
        if status != 200 {
            bail!(
                "probe ingest answered {status}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
        let acked = Instant::now();
        let path = format!("/api/v1/users/{user}/weber-profile");
        loop {
            let (status, reply) = send(&mut probe, &plan, Method::GET, &path, None).await?;
            reads += 1;
            if status == 200 {
                let profile: Value = serde_json::from_slice(&reply)?;
                if profile["review_count"].as_u64() >= Some(want) {
                    break;
                }
            } else if status != 404 {
                bail!(
                    "profile read answered {status}: {}",
                    String::from_utf8_lossy(&reply)
                );
            }
            if acked.elapsed() > Duration::from_secs(10) {
                bail!("probe event {i} not readable after 10 s");
            }
        }
        samples.record(u64::try_from(acked.elapsed().as_micros()).unwrap_or(u64::MAX))?;
        i += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for p in posters {
        p.await??;
    }
    let ms = |q: f64| samples.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({
        "background_events_per_s": sent.load(Ordering::Relaxed) as f64 / elapsed,
        "background_failed_requests": failed.load(Ordering::Relaxed),
        "probes": samples.len(),
        "profile_reads": reads,
        "freshness_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": samples.max() as f64 / 1000.0},
    }))
}

fn wall_clock_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
