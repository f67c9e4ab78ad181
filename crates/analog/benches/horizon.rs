//! One horizon's analog search at scale: 30 years of hourly states of one station (263 k
//! states of 7 predictors × 3 hours + 4 calendar values), flat vs IVF-PQ vs IVF-PQ with exact
//! re-ranking, for both similarities, with the forecast's exclusion of analogs near the issue
//! time.
//!
//! The states come from a synthetic weather series (annual and diurnal cycles, a shared
//! synoptic AR(1) signal, per-variable AR(1) anomalies, intermittent rain), standardised and
//! stacked exactly as the model does (hour weight 10, season weight 1).
//!
//! `cargo bench -p analog --bench horizon` runs the Criterion groups;
//! `cargo bench -p analog --bench horizon -- tune` instead sweeps IVF-PQ settings and prints
//! recall@10 against the exact search and the mean search time of each (how the automatic
//! settings of `IvfPqSettings::auto` were chosen).

use std::hint::black_box;
use std::time::Instant;

use analog::forecast::anen::{AnEnIndex, Block};
use analog::forecast::{
    build_ivfpq, HorizonIndex, IndexChoice, IvfPqSettings, Similarity, AUTO_FLAT_BELOW,
};
use criterion::{criterion_group, Criterion};

const YEARS: usize = 30;
const HOURS: usize = YEARS * 8766;
const WINDOW: usize = 3;
const PREDICTORS: usize = 7;
const DIM: usize = PREDICTORS * WINDOW + 4;
const HOUR_WEIGHT: f64 = 10.0;
const SEASON_WEIGHT: f64 = 1.0;
/// The horizon's exclusion half-width, `W + h` for 24 h.
const EXCLUDE: u32 = (WINDOW + 24) as u32;
const K: usize = 10;

/// SplitMix64 with Box–Muller normals.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Hourly series of the 7 variables (t2m, dewpoint, humidity, u10, v10, msl, precip).
fn weather(hours: usize, seed: u64) -> Vec<[f64; PREDICTORS]> {
    let mut rng = Rng(seed);
    let (mut synoptic, mut front) = (0.0f64, 0.0f64);
    let mut anomaly = [0.0f64; PREDICTORS];
    let mut out = Vec::with_capacity(hours);
    for t in 0..hours {
        let day = (t as f64 / 24.0).rem_euclid(1.0) * std::f64::consts::TAU;
        let year = (t as f64 / 8766.0).rem_euclid(1.0) * std::f64::consts::TAU;
        synoptic = 0.995 * synoptic + 0.1 * rng.normal();
        front = 0.97 * front + 0.24 * rng.normal();
        for a in &mut anomaly {
            *a = 0.95 * *a + 0.31 * rng.normal();
        }
        let season = -year.cos();
        let diurnal = -(day - 0.6).cos();
        let t2m = 12.0 + 11.0 * season + 4.0 * diurnal + 3.0 * synoptic + 1.5 * anomaly[0];
        let dew = t2m - 6.0 - 2.0 * diurnal + 2.0 * front + 1.5 * anomaly[1];
        let humidity = (100.0 - 5.0 * (t2m - dew) + 5.0 * anomaly[2]).clamp(5.0, 100.0);
        let u10 = 3.0 + 2.5 * front + 2.0 * anomaly[3];
        let v10 = 1.0 - 2.0 * synoptic + 2.0 * anomaly[4];
        let msl = 1015.0 - 8.0 * synoptic - 4.0 * front + 2.0 * anomaly[5];
        let wet = front + 0.5 * anomaly[6] - 1.2;
        let precip = if wet > 0.0 { 4.0 * wet * wet } else { 0.0 };
        out.push([t2m, dew, humidity, u10, v10, msl, precip]);
    }
    out
}

/// Row-major states as the model stacks them (standardised windows, then calendar).
fn states(hours: usize, seed: u64) -> Vec<f32> {
    let series = weather(hours, seed);
    let n = series.len() as f64;
    let mut mean = [0.0f64; PREDICTORS];
    let mut std = [0.0f64; PREDICTORS];
    for v in 0..PREDICTORS {
        mean[v] = series.iter().map(|x| x[v]).sum::<f64>() / n;
        std[v] = (series.iter().map(|x| (x[v] - mean[v]).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-9);
    }
    let mut rows = Vec::with_capacity((hours - WINDOW + 1) * DIM);
    for t in WINDOW - 1..hours {
        for v in 0..PREDICTORS {
            for x in &series[t + 1 - WINDOW..=t] {
                rows.push(((x[v] - mean[v]) / std[v]) as f32);
            }
        }
        let day = (t as f64 / 24.0).rem_euclid(1.0) * std::f64::consts::TAU;
        let year = (t as f64 / 8766.0).rem_euclid(1.0) * std::f64::consts::TAU;
        rows.extend([
            (day.cos() * HOUR_WEIGHT) as f32,
            (day.sin() * HOUR_WEIGHT) as f32,
            (year.cos() * SEASON_WEIGHT) as f32,
            (year.sin() * SEASON_WEIGHT) as f32,
        ]);
    }
    rows
}

fn blocks() -> Vec<Block> {
    let mut blocks: Vec<Block> = (0..PREDICTORS)
        .map(|p| Block {
            start: p * WINDOW,
            len: WINDOW,
            weight: 1.0,
        })
        .collect();
    for start in [PREDICTORS * WINDOW, PREDICTORS * WINDOW + 2] {
        blocks.push(Block {
            start,
            len: 2,
            weight: 1.0,
        });
    }
    blocks
}

struct Setup {
    states: AnEnIndex,
    /// The 24 h horizon: every state but the last 24 hours'.
    ids: Vec<u32>,
    /// Query state ids, evenly spread.
    queries: Vec<u32>,
}

fn setup(queries: usize) -> Setup {
    let rows = states(HOURS, 2013);
    let states = AnEnIndex::new(DIM, &blocks(), &rows).expect("finite states");
    let n = states.len() as u32;
    let ids: Vec<u32> = (0..n - 24).collect();
    let queries = (0..queries as u32)
        .map(|i| (u64::from(i) * 7919 * 31 % u64::from(n)) as u32)
        .collect();
    Setup {
        states,
        ids,
        queries,
    }
}

fn exclusion(id: u32) -> std::ops::Range<u32> {
    id.saturating_sub(EXCLUDE)..id + EXCLUDE + 1
}

/// Sweeps settings: recall@10 vs exact and mean µs per search, both similarities.
fn tune() {
    let setup = setup(300);
    let flat = HorizonIndex {
        states: &setup.states,
        ids: &setup.ids,
        choice: IndexChoice::Flat,
        ivfpq: None,
    };
    let mut exact = Vec::new();
    for similarity in [Similarity::Seed, Similarity::AnEn] {
        let start = Instant::now();
        let truth: Vec<Vec<usize>> = setup
            .queries
            .iter()
            .map(|&q| {
                let query = setup.states.row(q).expect("query id");
                flat.search(&query, K, similarity, exclusion(q))
                    .expect("flat")
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect()
            })
            .collect();
        println!(
            "flat {similarity}: {:.1} µs/search over {} states",
            start.elapsed().as_secs_f64() * 1e6 / setup.queries.len() as f64,
            setup.ids.len()
        );
        exact.push((similarity, truth));
    }
    let auto = IvfPqSettings::auto(setup.ids.len());
    println!(
        "auto at {} vectors: {auto:?} (flat below {AUTO_FLAT_BELOW})",
        setup.ids.len()
    );
    let arg = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.split(',')
                .filter_map(|x| x.parse::<usize>().ok())
                .collect::<Vec<_>>()
        })
    };
    let nlists = arg("TUNE_NLIST").unwrap_or(vec![256, 512, 1024]);
    let ms = arg("TUNE_M").unwrap_or(vec![13]);
    let nprobes = arg("TUNE_NPROBE").unwrap_or(vec![8, 16, 32, 64]);
    let shortlists = arg("TUNE_SHORTLIST").unwrap_or(vec![64, 128, 256]);
    for &nlist in &nlists {
        for &m in &ms {
            let settings = IvfPqSettings {
                nlist,
                m,
                nbits: 8,
                nprobe: 8,
                shortlist: 64,
            };
            let start = Instant::now();
            let ivf = build_ivfpq(&setup.states, &setup.ids, &settings, 1).expect("trainable");
            println!(
                "nlist {nlist} m {m}: built in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            for &nprobe in nprobes.iter().filter(|&&p| p <= nlist) {
                for &shortlist in &shortlists {
                    let s = IvfPqSettings {
                        nprobe,
                        shortlist,
                        ..settings
                    };
                    for choice in [IndexChoice::Ivfpq(s), IndexChoice::IvfpqRerank(s)] {
                        for (similarity, truth) in &exact {
                            // ivfpq under anen is the ivfpq-rerank path, and under seed it does
                            // not depend on the shortlist.
                            if choice.kind() == analog::forecast::IndexKind::Ivfpq
                                && (*similarity == Similarity::AnEn || shortlist != shortlists[0])
                            {
                                continue;
                            }
                            let index = HorizonIndex {
                                choice,
                                ivfpq: Some(&ivf),
                                ..flat
                            };
                            let start = Instant::now();
                            let mut hits = 0usize;
                            for (&q, want) in setup.queries.iter().zip(truth) {
                                let query = setup.states.row(q).expect("query id");
                                let got = index
                                    .search(&query, K, *similarity, exclusion(q))
                                    .expect("search");
                                hits += got.iter().filter(|(id, _)| want.contains(id)).count();
                            }
                            let micros =
                                start.elapsed().as_secs_f64() * 1e6 / setup.queries.len() as f64;
                            println!(
                                "  {:<12} {similarity:<4} nprobe {nprobe:>3} shortlist {shortlist:>4}: recall@10 {:.3}  {micros:>7.1} µs",
                                choice.kind().to_string(),
                                hits as f64 / (K * setup.queries.len()) as f64
                            );
                        }
                    }
                }
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let setup = setup(64);
    let settings = IvfPqSettings::auto(setup.ids.len());
    let ivf = build_ivfpq(&setup.states, &setup.ids, &settings, 1).expect("trainable");
    let mut g = c.benchmark_group(format!("horizon_{}x{DIM}", setup.ids.len()));
    g.sample_size(20);
    for similarity in [Similarity::Seed, Similarity::AnEn] {
        for choice in [
            IndexChoice::Flat,
            IndexChoice::Ivfpq(settings),
            IndexChoice::IvfpqRerank(settings),
        ] {
            let index = HorizonIndex {
                states: &setup.states,
                ids: &setup.ids,
                choice,
                ivfpq: Some(&ivf),
            };
            let queries: Vec<(Vec<f32>, u32)> = setup
                .queries
                .iter()
                .map(|&q| (setup.states.row(q).expect("query id"), q))
                .collect();
            let mut next = 0usize;
            g.bench_function(format!("{}_{similarity}", choice.kind()), |b| {
                b.iter(|| {
                    let (query, id) = &queries[next % queries.len()];
                    next += 1;
                    black_box(
                        index
                            .search(black_box(query), K, similarity, exclusion(*id))
                            .expect("search"),
                    )
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if std::env::args().any(|a| a == "tune") {
        tune();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
