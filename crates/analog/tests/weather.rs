//! IVF-PQ recall on real weather states: the bundled NYC 2013 data, JFK,
//! z-scored temp, dewp, humid, u, v, pressure and precip over trailing
//! 6-hour windows without gaps (as `bench/faiss_compare.py` builds them);
//! the last 10% in time are the queries. Re-ranking a shortlist must reach
//! recall@10 >= 0.95 against exact search.

mod common;

use analog::{FlatIndex, IvfPqIndex, IvfPqParams, Metric};

const WINDOW: usize = 6;
const VARS: usize = 7;

/// Trailing-window state vectors of one station, in time order.
fn weather_vectors(station: &str) -> Vec<f32> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../demo/nyc_weather_2013.csv"
    );
    let text = std::fs::read_to_string(path).expect("the bundled demo data");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_matches('"') == name)
            .expect("column")
    };
    let (origin, time) = (col("origin"), col("time_hour"));
    let (temp, dewp, humid) = (col("temp"), col("dewp"), col("humid"));
    let (dir, speed, precip, pressure) = (
        col("wind_dir"),
        col("wind_speed"),
        col("precip"),
        col("pressure"),
    );
    let mut hours: Vec<(i64, [f64; VARS])> = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').map(|v| v.trim_matches('"')).collect();
        if f[origin] != station {
            continue;
        }
        let num = |i: usize| f[i].parse::<f64>().unwrap_or(f64::NAN);
        let mut wind = num(speed);
        if wind > 200.0 {
            wind = f64::NAN; // the one bogus 1048 mph reading
        }
        let (u, v) = if wind == 0.0 {
            (0.0, 0.0)
        } else {
            let rad = num(dir).to_radians();
            (-wind * rad.sin(), -wind * rad.cos())
        };
        // "2013-01-01T06:00:00Z": hours since the start of 2013 are enough
        // to find gaps (month lengths of 2013).
        let t = f[time];
        let month: usize = t[5..7].parse().expect("month");
        let day: i64 = t[8..10].parse().expect("day");
        let hour: i64 = t[11..13].parse().expect("hour");
        let year: i64 = t[..4].parse().expect("year");
        let days_before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][month - 1];
        let h = ((year - 2013) * 365 + days_before + day - 1) * 24 + hour;
        let x = [
            num(temp),
            num(dewp),
            num(humid),
            u,
            v,
            num(pressure),
            num(precip),
        ];
        hours.push((h, x));
    }
    hours.sort_by_key(|(h, _)| *h);
    let mut mean = [0.0f64; VARS];
    let mut sd = [0.0f64; VARS];
    for j in 0..VARS {
        let vals: Vec<f64> = hours
            .iter()
            .map(|(_, x)| x[j])
            .filter(|v| !v.is_nan())
            .collect();
        mean[j] = vals.iter().sum::<f64>() / vals.len() as f64;
        sd[j] =
            (vals.iter().map(|v| (v - mean[j]).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
    }
    let mut out = Vec::new();
    for end in WINDOW - 1..hours.len() {
        let w = &hours[end + 1 - WINDOW..=end];
        if w[WINDOW - 1].0 - w[0].0 != WINDOW as i64 - 1
            || w.iter().any(|(_, x)| x.iter().any(|v| v.is_nan()))
        {
            continue;
        }
        for (_, x) in w {
            out.extend((0..VARS).map(|j| ((x[j] - mean[j]) / sd[j]) as f32));
        }
    }
    out
}

#[test]
fn refined_recall_on_weather_states() {
    let dim = WINDOW * VARS;
    let vectors = weather_vectors("JFK");
    let n = vectors.len() / dim;
    assert!(n > 5_000, "{n} windows");
    let cut = n * 9 / 10;
    let (base, queries) = vectors.split_at(cut * dim);
    let mut flat = FlatIndex::new(dim, Metric::L2).expect("dim");
    flat.add(base).expect("finite");
    // Fewer k-means iterations and 6-bit codes keep this fast in a debug
    // build; re-ranking makes up for the coarser codes.
    let params = IvfPqParams::new(64, 14, 6, 8)
        .with_kmeans_iters(6)
        .with_refine(5);
    let mut ivf = IvfPqIndex::train(base, dim, Metric::L2, params, 2013).expect("valid");
    ivf.add(base).expect("finite");
    let truth = flat.search_batch(queries, 10).expect("valid");
    let recall = |got: Vec<Vec<analog::Neighbor>>| {
        let hits: usize = got
            .iter()
            .zip(&truth)
            .map(|(g, t)| g.iter().filter(|n| t.iter().any(|x| x.id == n.id)).count())
            .sum();
        hits as f64 / (10 * truth.len()) as f64
    };
    let raw = recall(ivf.search_batch(queries, 10, 8).expect("valid"));
    let refined = recall(ivf.search_refined_batch(queries, 10, 8, 50).expect("valid"));
    assert!(
        refined >= 0.95,
        "recall@10 raw {raw:.3}, re-ranked {refined:.3}"
    );
    assert!(
        refined > raw,
        "re-ranking must help: raw {raw:.3}, re-ranked {refined:.3}"
    );
}
