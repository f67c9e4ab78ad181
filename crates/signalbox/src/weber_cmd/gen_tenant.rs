//! `signalbox weber gen --purchases`: a simulated tenant from `lifetime::simulate`, written as
//! a reviews file (for `weber batch`) and a transactions file (for `weber predict`) for the same
//! customers, deterministic for a seed.

use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use super::Format;

/// `weber gen --purchases`: a simulated tenant, written as a reviews file and a transactions file
/// for the same customers.
pub struct Job<'a> {
    pub customers: usize,
    pub seed: u64,
    pub start_day: i32,
    pub days: u32,
    /// Exponent weight of sensitivity on dropout (0: Weber features carry no signal).
    pub dropout_effect: f64,
    pub reviews: &'a Path,
    pub format: Format,
    pub purchases: &'a Path,
}

/// A review of the simulated tenant: rating only, with the simulated sentiment `s` written as
/// the fractional rating `3 + 2 s`, which `weber batch` maps back to exactly `s` (`(r - 3) / 2`),
/// so the profiles it computes are the ones the simulation intended. (Text would go through
/// VADER, which only approximates a sentiment.)
#[derive(Serialize)]
struct RatedReview<'a> {
    rating: f64,
    user_id: &'a str,
    timestamp: i64,
    verified_purchase: bool,
}

#[derive(Serialize)]
struct PurchaseRow<'a> {
    customer_id: &'a str,
    date: String,
    amount: f64,
}

/// Upper bound on simulated customers (each is held in memory with its history).
pub const MAX_CUSTOMERS: usize = 5_000_000;

pub fn run(job: &Job<'_>) -> anyhow::Result<(usize, usize)> {
    if job.customers == 0 || job.customers > MAX_CUSTOMERS {
        anyhow::bail!("customers: must be between 1 and {MAX_CUSTOMERS}");
    }
    let mut params = lifetime::simulate::SimulationParams::default();
    params.weber.dropout_effect = job.dropout_effect;
    let mut rng = StdRng::seed_from_u64(job.seed);
    let customers = lifetime::simulate::simulate_customers(
        &mut rng,
        &params,
        job.customers,
        job.start_day,
        job.days,
    )
    .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))?;
    let mut purchase_count = 0usize;
    super::write_atomically(job.purchases, "purchases", |out| {
        let mut writer = csv::Writer::from_writer(out);
        for c in &customers {
            for p in &c.purchases {
                writer.serialize(PurchaseRow {
                    customer_id: &c.customer_id,
                    date: super::predict_input::format_day(p.day),
                    amount: p.amount,
                })?;
                purchase_count += 1;
            }
        }
        writer.flush()?;
        Ok(())
    })?;
    let mut review_count = 0usize;
    super::write_atomically(job.reviews, "FILE", |out| {
        let rows = customers.iter().flat_map(|c| {
            c.reviews.iter().map(|r| RatedReview {
                rating: (3.0 + 2.0 * r.sentiment).clamp(1.0, 5.0),
                user_id: &c.customer_id,
                timestamp: r.time_ms,
                verified_purchase: true,
            })
        });
        match job.format {
            Format::Jsonl => {
                for row in rows {
                    serde_json::to_writer(&mut *out, &row)?;
                    out.write_all(b"\n")?;
                    review_count += 1;
                }
            }
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                for row in rows {
                    writer.serialize(row)?;
                    review_count += 1;
                }
                writer.flush()?;
            }
        }
        Ok(())
    })?;
    Ok((purchase_count, review_count))
}
