//! Times this crate's indexes on given vectors, for a side-by-side
//! comparison with FAISS (`bench/faiss_compare.py` runs both on the same
//! files and prints the ratios).
//!
//! ```text
//! cargo run --release -p analog --example versus -- \
//!     --base base.f32 --queries queries.f32 --dim 52 \
//!     [--k 10] [--rounds 5] [--seed 1] \
//!     [--ivf nlist=64,m=13,nbits=8,nprobe=16,shortlist=100] [--json out.json]
//! ```
//!
//! Files are raw little-endian `f32`, row-major. For each of flat inner
//! product, flat L2, IVF-PQ (L2) and IVF-PQ re-ranked (L2), it measures:
//! single-query k-NN latency on one thread (every query once per round;
//! p50 and p99 over all calls), batch throughput on two threads (the query
//! set split in two halves searched by `std::thread::scope`; median of the
//! rounds), and, for the IVF-PQ rows, recall@k against exact L2 search.
//! The library itself never spawns threads: this is how a caller
//! parallelises a batch.

use std::time::Instant;

use analog::{FlatIndex, IvfPqIndex, IvfPqParams, Metric, Neighbor};

struct Args {
    base: String,
    queries: String,
    dim: usize,
    k: usize,
    rounds: usize,
    seed: u64,
    nlist: usize,
    m: usize,
    nbits: u32,
    nprobe: usize,
    shortlist: usize,
    json: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        base: String::new(),
        queries: String::new(),
        dim: 0,
        k: 10,
        rounds: 5,
        seed: 1,
        nlist: 64,
        m: 13,
        nbits: 8,
        nprobe: 16,
        shortlist: 100,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, name: &str| -> Result<u64, String> {
        v.ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--base" => args.base = it.next().ok_or("--base needs a file")?,
            "--queries" => args.queries = it.next().ok_or("--queries needs a file")?,
            "--dim" => args.dim = num(it.next(), "--dim")? as usize,
            "--k" => args.k = num(it.next(), "--k")? as usize,
            "--rounds" => args.rounds = num(it.next(), "--rounds")?.max(1) as usize,
            "--seed" => args.seed = num(it.next(), "--seed")?,
            "--json" => args.json = Some(it.next().ok_or("--json needs a file")?),
            "--ivf" => {
                let spec = it.next().ok_or("--ivf needs key=value,...")?;
                for kv in spec.split(',') {
                    let (key, value) = kv.split_once('=').ok_or(format!("bad --ivf part {kv}"))?;
                    let value = num(Some(value.to_owned()), key)?;
                    match key {
                        "nlist" => args.nlist = value as usize,
                        "m" => args.m = value as usize,
                        "nbits" => args.nbits = value as u32,
                        "nprobe" => args.nprobe = value as usize,
                        "shortlist" => args.shortlist = value as usize,
                        _ => return Err(format!("unknown --ivf key {key}")),
                    }
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.base.is_empty() || args.queries.is_empty() || args.dim == 0 {
        return Err("--base, --queries and --dim are required".into());
    }
    Ok(args)
}

fn read_f32(path: &str, dim: usize) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() % (4 * dim) != 0 {
        return Err(format!(
            "{path}: {} bytes is not whole {dim}-d f32 vectors",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// One measured configuration.
struct Row {
    name: &'static str,
    single_p50_us: f64,
    single_p99_us: f64,
    batch_qps: f64,
    recall: Option<f64>,
}

/// Single-query latencies (µs) of `search` over every query, `rounds` times.
fn single<F>(queries: &[f32], dim: usize, rounds: usize, search: F) -> (f64, f64)
where
    F: Fn(&[f32]) -> Vec<Neighbor>,
{
    // One untimed pass warms caches and the allocator.
    for q in queries.chunks_exact(dim) {
        std::hint::black_box(search(q));
    }
    let mut times = Vec::with_capacity(rounds * queries.len() / dim);
    for _ in 0..rounds {
        for q in queries.chunks_exact(dim) {
            let t = Instant::now();
            std::hint::black_box(search(q));
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99))
}

/// Queries per second of `batch` over the query set split across two
/// threads; the median of `rounds` runs.
fn batch<F>(queries: &[f32], dim: usize, rounds: usize, batch: F) -> f64
where
    F: Fn(&[f32]) -> Vec<Vec<Neighbor>> + Sync,
{
    let nq = queries.len() / dim;
    let half = nq.div_ceil(2) * dim;
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds + 1 {
        let t = Instant::now();
        std::thread::scope(|s| {
            let (a, b) = queries.split_at(half.min(queries.len()));
            let batch = &batch;
            let other = s.spawn(move || std::hint::black_box(batch(b)));
            std::hint::black_box(batch(a));
            let _ = other.join();
        });
        rates.push(nq as f64 / t.elapsed().as_secs_f64());
    }
    rates.remove(0); // the first run warms up
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn recall(got: &[Vec<Neighbor>], truth: &[Vec<Neighbor>], k: usize) -> f64 {
    let mut hits = 0usize;
    for (g, t) in got.iter().zip(truth) {
        hits += g.iter().filter(|n| t.iter().any(|x| x.id == n.id)).count();
    }
    hits as f64 / (k * truth.len()).max(1) as f64
}

fn main() {
    if let Err(e) = run() {
        eprintln!("versus: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let (dim, k) = (a.dim, a.k);
    let base = read_f32(&a.base, dim)?;
    let queries = read_f32(&a.queries, dim)?;
    let err = |e: analog::AnalogError| e.to_string();
    let mut rows = Vec::new();

    let mut truth = Vec::new();
    for (name, metric) in [("flat_ip", Metric::InnerProduct), ("flat_l2", Metric::L2)] {
        let mut index = FlatIndex::new(dim, metric).map_err(err)?;
        index.add(&base).map_err(err)?;
        let (p50, p99) = single(&queries, dim, a.rounds, |q| {
            index.search(q, k).unwrap_or_default()
        });
        let qps = batch(&queries, dim, a.rounds, |qs| {
            index.search_batch(qs, k).unwrap_or_default()
        });
        if metric == Metric::L2 {
            truth = index.search_batch(&queries, k).map_err(err)?;
        }
        rows.push(Row {
            name,
            single_p50_us: p50,
            single_p99_us: p99,
            batch_qps: qps,
            recall: None,
        });
    }

    let params = IvfPqParams::new(a.nlist, a.m, a.nbits, a.nprobe).with_refine(1);
    let t = Instant::now();
    let mut ivf = IvfPqIndex::train(&base, dim, Metric::L2, params, a.seed).map_err(err)?;
    ivf.add(&base).map_err(err)?;
    let train_s = t.elapsed().as_secs_f64();
    let (nprobe, shortlist) = (a.nprobe, a.shortlist.max(k));
    let raw = |q: &[f32]| ivf.search(q, k, nprobe).unwrap_or_default();
    let refined = |q: &[f32]| {
        ivf.search_refined(q, k, nprobe, shortlist)
            .unwrap_or_default()
    };
    let raw_results = ivf.search_batch(&queries, k, nprobe).map_err(err)?;
    let refined_results = ivf
        .search_refined_batch(&queries, k, nprobe, shortlist)
        .map_err(err)?;
    let (p50, p99) = single(&queries, dim, a.rounds, raw);
    let qps = batch(&queries, dim, a.rounds, |qs| {
        ivf.search_batch(qs, k, nprobe).unwrap_or_default()
    });
    rows.push(Row {
        name: "ivfpq",
        single_p50_us: p50,
        single_p99_us: p99,
        batch_qps: qps,
        recall: Some(recall(&raw_results, &truth, k)),
    });
    let (p50, p99) = single(&queries, dim, a.rounds, refined);
    let qps = batch(&queries, dim, a.rounds, |qs| {
        ivf.search_refined_batch(qs, k, nprobe, shortlist)
            .unwrap_or_default()
    });
    rows.push(Row {
        name: "ivfpq_refine",
        single_p50_us: p50,
        single_p99_us: p99,
        batch_qps: qps,
        recall: Some(recall(&refined_results, &truth, k)),
    });

    println!(
        "analog ({}) n={} nq={} dim={dim} k={k}; ivf nlist={} m={} nbits={} nprobe={nprobe} shortlist={shortlist}, trained in {train_s:.2} s",
        analog::simd_level(),
        base.len() / dim,
        queries.len() / dim,
        a.nlist,
        a.m,
        a.nbits
    );
    println!(
        "{:<14} {:>10} {:>10} {:>12} {:>8}",
        "index", "p50 us", "p99 us", "batch q/s", "recall"
    );
    for r in &rows {
        let recall = r.recall.map_or("-".to_owned(), |x| format!("{x:.3}"));
        println!(
            "{:<14} {:>10.2} {:>10.2} {:>12.0} {:>8}",
            r.name, r.single_p50_us, r.single_p99_us, r.batch_qps, recall
        );
    }
    if let Some(path) = &a.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"index\":\"{}\",\"single_p50_us\":{:.3},\"single_p99_us\":{:.3},\"batch_qps\":{:.1},\"recall\":{}}}",
                    r.name,
                    r.single_p50_us,
                    r.single_p99_us,
                    r.batch_qps,
                    r.recall.map_or("null".to_owned(), |x| format!("{x:.4}"))
                )
            })
            .collect();
        let json = format!(
            "{{\"kernel\":\"{}\",\"n\":{},\"nq\":{},\"dim\":{dim},\"k\":{k},\"train_seconds\":{train_s:.3},\"rows\":[{}]}}\n",
            analog::simd_level(),
            base.len() / dim,
            queries.len() / dim,
            items.join(",")
        );
        std::fs::write(path, json).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}
