//! `signalbox weber gen`: a deterministic, realistic synthetic reviews file in the Amazon Reviews
//! 2023 shape, for benchmarks and tests.
//!
//! Each user has a mood (mostly positive, as real ratings are) and a volatility (how far a
//! review strays from the mood: the thing Weber profiles measure) and an activity level (a few
//! heavy reviewers, many light ones). Reviews are written in global time order, except that about
//! 2% arrive late, swapped with their predecessor, so readers must order by timestamp; a few
//! share a timestamp with the previous review of the same user.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::Format;

pub struct GenJob<'a> {
    pub users: usize,
    pub reviews: usize,
    pub seed: u64,
    pub output: &'a Path,
    pub format: Format,
}

/// Upper bounds keep a typo from filling the disk.
pub const MAX_USERS: usize = 50_000_000;
pub const MAX_REVIEWS: usize = 500_000_000;

struct User {
    id: String,
    mood: f64,
    volatility: f64,
}

/// What is kept per review until it is written: 24 bytes, so 10 million fit in memory.
struct Planned {
    time_ms: i64,
    user: u32,
    seed: u32,
}

#[derive(Serialize)]
struct Review<'a> {
    rating: f64,
    title: &'a str,
    text: &'a str,
    asin: &'a str,
    parent_asin: &'a str,
    user_id: &'a str,
    timestamp: i64,
    helpful_vote: u32,
    verified_purchase: bool,
}

const START_MS: i64 = 1_420_070_400_000; // 2015-01-01
const SPAN_MS: i64 = 8 * 365 * 24 * 3_600_000;

pub fn run(job: &GenJob<'_>) -> anyhow::Result<()> {
    if job.users == 0 || job.users > MAX_USERS {
        anyhow::bail!("users: must be between 1 and {MAX_USERS}");
    }
    if job.reviews == 0 || job.reviews > MAX_REVIEWS {
        anyhow::bail!("reviews: must be between 1 and {MAX_REVIEWS}");
    }
    let mut rng = StdRng::seed_from_u64(job.seed);
    let users: Vec<User> = (0..job.users)
        .map(|_| User {
            id: random_id(&mut rng, 28),
            mood: (rng.gen::<f64>() * 1.4 - 0.5).clamp(-0.6, 0.8),
            volatility: 0.05 + rng.gen::<f64>().powi(2) * 0.8,
        })
        .collect();
    // Pareto-like activity: weight = u^-0.8, then cumulative for sampling.
    let mut cumulative = Vec::with_capacity(users.len());
    let mut total = 0.0;
    for _ in &users {
        total += rng.gen::<f64>().max(1e-6).powf(-0.8);
        cumulative.push(total);
    }
    let mut plan: Vec<Planned> = (0..job.reviews)
        .map(|_| {
            let pick = rng.gen::<f64>() * total;
            let user = cumulative
                .partition_point(|c| *c < pick)
                .min(users.len() - 1);
            Planned {
                time_ms: START_MS + rng.gen_range(0..SPAN_MS),
                user: user as u32,
                seed: rng.gen(),
            }
        })
        .collect();
    plan.sort_unstable_by_key(|p| (p.time_ms, p.user));
    for i in 1..plan.len() {
        let r: f64 = rng.gen();
        if r < 0.02 {
            plan.swap(i - 1, i); // a late arrival
        } else if r < 0.03 && plan[i - 1].user == plan[i].user {
            plan[i].time_ms = plan[i - 1].time_ms; // same-millisecond pair
        }
    }

    let file = std::fs::File::create(job.output)
        .with_context(|| format!("FILE: cannot create {}", job.output.display()))?;
    let progress =
        ProgressBar::with_draw_target(Some(plan.len() as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("writing {bar:40} {pos}/{len} reviews eta {eta}")
    {
        progress.set_style(style);
    }
    let out = BufWriter::with_capacity(1 << 20, file);
    let mut sink = match job.format {
        Format::Jsonl => Sink::Jsonl(out),
        Format::Csv => Sink::Csv(Box::new(csv::Writer::from_writer(out))),
    };
    let mut text = String::with_capacity(256);
    for (i, p) in plan.iter().enumerate() {
        let user = &users[p.user as usize];
        let mut r = StdRng::seed_from_u64(u64::from(p.seed) ^ job.seed.rotate_left(17));
        let feeling = (user.mood + user.volatility * normal(&mut r)).clamp(-1.0, 1.0);
        let rating = (3.0 + 2.0 * feeling).round().clamp(1.0, 5.0);
        text.clear();
        write_text(&mut r, feeling, &mut text);
        let asin = format!("B0{}", random_id(&mut r, 8));
        let review = Review {
            rating,
            title: title_for(&mut r, rating),
            text: &text,
            asin: &asin,
            parent_asin: &asin,
            user_id: &user.id,
            timestamp: p.time_ms,
            helpful_vote: (r.gen::<f64>().powi(6) * 40.0) as u32,
            verified_purchase: r.gen_bool(0.8),
        };
        sink.write(&review)
            .with_context(|| format!("FILE: write to {} failed", job.output.display()))?;
        if i % 4096 == 0 {
            progress.set_position(i as u64);
        }
    }
    sink.finish()
        .with_context(|| format!("FILE: write to {} failed", job.output.display()))?;
    progress.finish_and_clear();
    Ok(())
}

/// Where reviews go: JSON lines, or CSV with the same columns. (The Amazon files' `images`
/// list is left out: nothing reads it and it does not fit a CSV cell.)
enum Sink {
    Jsonl(BufWriter<std::fs::File>),
    Csv(Box<csv::Writer<BufWriter<std::fs::File>>>),
}

impl Sink {
    fn write(&mut self, r: &Review<'_>) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(out) => {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
            Sink::Csv(out) => out.serialize(r)?,
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        let file = match self {
            Sink::Jsonl(out) => out.into_inner().map_err(|e| e.into_error())?,
            Sink::Csv(out) => out
                .into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?
                .into_inner()
                .map_err(|e| e.into_error())?,
        };
        file.sync_all()?;
        Ok(())
    }
}

fn normal(r: &mut StdRng) -> f64 {
    // Box-Muller; good enough for synthetic moods.
    let u1: f64 = r.gen::<f64>().max(1e-12);
    let u2: f64 = r.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn random_id(r: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..len)
        .map(|_| ALPHABET[r.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn title_for(r: &mut StdRng, rating: f64) -> &'static str {
    const TITLES: [&[&str]; 5] = [
        &[
            "Terrible",
            "Waste of money",
            "Do not buy",
            "Broke immediately",
        ],
        &["Disappointed", "Not great", "Meh", "Could be better"],
        &["It's okay", "Average", "Does the job", "Fine for the price"],
        &["Good value", "Pretty good", "Happy with it", "Works well"],
        &[
            "Five Stars",
            "Love it!",
            "Excellent",
            "Best purchase this year",
        ],
    ];
    let bank = TITLES[(rating as usize).clamp(1, 5) - 1];
    bank[r.gen_range(0..bank.len())]
}

fn write_text(r: &mut StdRng, feeling: f64, out: &mut String) {
    const STRONG_POS: &[&str] = &[
        "love it",
        "works perfectly",
        "excellent quality",
        "absolutely amazing",
        "great value",
    ];
    const MILD_POS: &[&str] = &[
        "pretty good",
        "does what it says",
        "nice enough",
        "happy with it",
        "decent build",
    ];
    const NEUTRAL: &[&str] = &[
        "arrived on tuesday",
        "it is a charger",
        "as described",
        "the box was blue",
        "standard size",
    ];
    const MILD_NEG: &[&str] = &[
        "a bit flimsy",
        "not what I expected",
        "slow shipping",
        "kind of disappointing",
        "meh",
    ];
    const STRONG_NEG: &[&str] = &[
        "broke after a week",
        "terrible quality",
        "complete waste of money",
        "awful",
        "worst purchase ever",
    ];
    let bank = match feeling {
        f if f > 0.6 => STRONG_POS,
        f if f > 0.15 => MILD_POS,
        f if f > -0.15 => NEUTRAL,
        f if f > -0.6 => MILD_NEG,
        _ => STRONG_NEG,
    };
    let sentences = r.gen_range(1..=3);
    for i in 0..sentences {
        if i > 0 {
            out.push(' ');
        }
        if r.gen_bool(0.15) {
            out.push_str(["really ", "extremely ", "very ", "somewhat "][r.gen_range(0..4)]);
        }
        let phrase = bank[r.gen_range(0..bank.len())];
        if r.gen_bool(0.08) {
            out.push_str(&phrase.to_uppercase());
        } else {
            out.push_str(phrase);
        }
        if r.gen_bool(0.1) {
            out.push_str(", but ");
            let other = if feeling > 0.0 { MILD_NEG } else { MILD_POS };
            out.push_str(other[r.gen_range(0..other.len())]);
        }
        out.push_str(match r.gen_range(0..10) {
            0 => "!!",
            1 => "!",
            2 if feeling >= 0.0 => " :)",
            3 if feeling < 0.0 => " :(",
            _ => ".",
        });
    }
}
