//! End-to-end latency at a steady rate: 16 tasks append 300-byte payloads at 5,000 messages/s
//! in total for 5 seconds while one consumer reads and acks batches.
//!
//! ```text
//! cargo run --release -p stream --example latency            # file log in a temporary dir
//! cargo run --release -p stream --example latency -- jetstream [nats://127.0.0.1:4222]
//! ```
//!
//! Prints percentiles of the append latency (call to return: the durability wait) and of the
//! delivery latency (append call to the consumer holding the message).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stream::{EventLog, FileLogOptions};

const TASKS: u64 = 16;
const RATE: u64 = 5_000;
const SECONDS: u64 = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir()?;
    let stream_name = format!("sbxlatency_{}", std::process::id());
    let log = match args.first().map(String::as_str) {
        Some("jetstream") => {
            let url = args.get(1).map_or("nats://127.0.0.1:4222", String::as_str);
            EventLog::connect_jetstream(url, &stream_name).await?
        }
        _ => EventLog::open_file(dir.path(), FileLogOptions::default()).await?,
    };
    let per_task = RATE * SECONDS / TASKS;
    let total = per_task * TASKS;
    let base = Arc::new(Instant::now());

    let mut consumer = log.consumer("latency").await?;
    let reader = {
        let base = Arc::clone(&base);
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total as usize);
            while (lat.len() as u64) < total {
                let batch = consumer.next_batch(1000).await.expect("next_batch");
                let now = base.elapsed().as_micros() as u64;
                for d in &batch {
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&d.payload[..8]);
                    lat.push(now.saturating_sub(u64::from_le_bytes(sent)));
                }
                let last = batch.last().map(|d| d.offset).expect("non-empty");
                consumer.ack(last).await.expect("ack");
            }
            lat
        })
    };

    let mut producers = Vec::new();
    for _ in 0..TASKS {
        let log = log.clone();
        let base = Arc::clone(&base);
        producers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * TASKS / RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut lat = Vec::new();
            for _ in 0..per_task {
                tick.tick().await;
                let sent = base.elapsed().as_micros() as u64;
                let mut p = sent.to_le_bytes().to_vec();
                p.resize(300, b'x');
                log.append(&[Bytes::from(p)]).await.expect("append");
                lat.push(base.elapsed().as_micros() as u64 - sent);
            }
            lat
        }));
    }
    let mut append = Vec::new();
    for p in producers {
        append.extend(p.await?);
    }
    let elapsed = base.elapsed();
    let delivery = reader.await?;
    println!(
        "{}: {} messages in {:.2}s ({:.0}/s)",
        log.kind(),
        append.len(),
        elapsed.as_secs_f64(),
        append.len() as f64 / elapsed.as_secs_f64()
    );
    report("append (call -> durable return)", append);
    report("delivery (append call -> consumer)", delivery);
    if let EventLog::JetStream(_) = log {
        let client =
            async_nats::connect(args.get(1).map_or("nats://127.0.0.1:4222", String::as_str))
                .await?;
        async_nats::jetstream::new(client)
            .delete_stream(&stream_name)
            .await?;
    }
    Ok(())
}

fn report(what: &str, mut micros: Vec<u64>) {
    micros.sort_unstable();
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "  {what}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}
