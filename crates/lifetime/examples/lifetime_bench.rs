//! Timing helper for `scripts/bench/lifetime_vs_lifetimes.sh` (the criterion bench
//! `benches/fit.rs` is the regression benchmark; this prints figures for the comparison).
//!
//! ```text
//! cargo run --release -p lifetime --example lifetime_bench -- write N SEED FILE.csv
//! cargo run --release -p lifetime --example lifetime_bench -- fit FILE.csv REPEATS
//! cargo run --release -p lifetime --example lifetime_bench -- score FILE.csv N REPEATS
//! ```
//! `write` simulates N customer summaries (customer_id,frequency,recency,T,monetary_value);
//! `fit` fits BG/NBD and Gamma-Gamma REPEATS times and prints the median seconds and the
//! log-likelihoods as JSON; `score` times expected purchases (30 days), P(alive) and 12-month
//! CLV for N customers (FILE's summaries repeated) at the parameters fitted on FILE.

use std::io::Write;
use std::time::Instant;

use lifetime::{
    customer_lifetime_value, fit_bgnbd, fit_gamma_gamma, CustomerSummary, FitOptions, Period,
};

#[path = "support/simulated.rs"]
mod simulated;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn read(path: &str) -> Result<Vec<CustomerSummary>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let num = |k: usize| -> Result<f64, String> {
                f.get(k)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{path} line {}: bad field {k}", i + 2))
            };
            Ok(CustomerSummary {
                customer_id: f.first().unwrap_or(&"").to_string(),
                frequency: num(1)?,
                recency: num(2)?,
                t: num(3)?,
                monetary_value: num(4)?,
            })
        })
        .collect()
}

fn run(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| "missing argument (see the example's doc)".to_string())
    };
    let int = |i: usize| -> Result<usize, String> {
        arg(i)?.parse().map_err(|e| format!("argument {i}: {e}"))
    };
    match arg(1)?.as_str() {
        "write" => {
            let data = simulated::simulated_summaries(int(2)?, int(3)? as u64);
            let path = arg(4)?;
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&path).map_err(|e| format!("{path}: {e}"))?,
            );
            let mut write = || -> std::io::Result<()> {
                writeln!(out, "customer_id,frequency,recency,T,monetary_value")?;
                for s in &data {
                    writeln!(
                        out,
                        "{},{},{},{},{}",
                        s.customer_id, s.frequency, s.recency, s.t, s.monetary_value
                    )?;
                }
                out.flush()
            };
            write().map_err(|e| format!("{path}: {e}"))
        }
        "fit" => {
            let data = read(&arg(2)?)?;
            let repeats = int(3)?.max(1);
            let (mut bg_times, mut gg_times) = (Vec::new(), Vec::new());
            let mut last = None;
            for _ in 0..repeats {
                let start = Instant::now();
                let bg = fit_bgnbd(&data, &FitOptions::default()).map_err(|e| e.to_string())?;
                bg_times.push(start.elapsed().as_secs_f64());
                let start = Instant::now();
                let gg =
                    fit_gamma_gamma(&data, &FitOptions::default()).map_err(|e| e.to_string())?;
                gg_times.push(start.elapsed().as_secs_f64());
                last = Some((bg, gg));
            }
            let Some((bg, gg)) = last else {
                return Err("no run".into());
            };
            println!(
                "{{\"customers\": {}, \"bgnbd_seconds\": {:.6}, \"gamma_gamma_seconds\": {:.6}, \"bgnbd_log_likelihood\": {:.6}, \"gamma_gamma_log_likelihood\": {:.6}, \"bgnbd\": [{}, {}, {}, {}], \"gamma_gamma\": [{}, {}, {}], \"iterations\": {}}}",
                data.len(),
                median(bg_times),
                median(gg_times),
                bg.log_likelihood,
                gg.log_likelihood,
                bg.params.r,
                bg.params.alpha,
                bg.params.a,
                bg.params.b,
                gg.params.p,
                gg.params.q,
                gg.params.v,
                bg.iterations
            );
            Ok(())
        }
        "score" => {
            // The summaries of FILE repeated up to N customers, at the parameters fitted on FILE.
            let fit_data = read(&arg(2)?)?;
            let n = int(3)?;
            let repeats = int(4)?.max(1);
            let bg = fit_bgnbd(&fit_data, &FitOptions::default()).map_err(|e| e.to_string())?;
            let gg =
                fit_gamma_gamma(&fit_data, &FitOptions::default()).map_err(|e| e.to_string())?;
            let data: Vec<&CustomerSummary> = fit_data.iter().cycle().take(n).collect();
            let mut times = Vec::new();
            let mut checksum = 0.0;
            for _ in 0..repeats {
                checksum = 0.0;
                let start = Instant::now();
                for s in &data {
                    checksum += bg.params.expected_purchases(30.0, s)
                        + bg.params.p_alive(s)
                        + customer_lifetime_value(&bg.params, &gg.params, s, 12, 0.01, Period::Day);
                }
                times.push(start.elapsed().as_secs_f64());
            }
            println!(
                "{{\"customers\": {n}, \"score_seconds\": {:.6}, \"checksum\": {checksum:.6}}}",
                median(times)
            );
            Ok(())
        }
        other => Err(format!("unknown command {other}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = run(&args) {
        eprintln!("lifetime_bench: {e}");
        std::process::exit(2);
    }
}
