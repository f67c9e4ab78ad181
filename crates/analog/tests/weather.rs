//! IVF-PQ recall on real weather states: the state vectors the forecaster
//! itself searches (JFK, 24 h, from the bundled NYC 2013 data), read back
//! from the model file it writes; the last 10% in time are the queries.
//! Re-ranking a shortlist must reach recall@10 >= 0.95 against exact search.

use analog::forecast::anen::TILE;
use analog::forecast::{parse_csv, BuildOptions, ForecastModel};
use analog::format::{AlignedBytes, IndexFile};
use analog::{FlatIndex, IvfPqIndex, IvfPqParams, Metric};

/// The JFK 24 h analogs' state vectors (time order) and their dimension, read back from the
/// model files: the analog ids from `JFK.24h.sbx`, the states from the tiles of
/// `JFK.states.sbx`.
fn weather_states() -> (Vec<f32>, usize) {
    let csv = include_str!("../../../demo/nyc_weather_2013.csv");
    let data = parse_csv(csv.as_bytes()).expect("the bundled demo data parses");
    let model = ForecastModel::build(&data, &BuildOptions::default(), &mut |_, _| {})
        .expect("the demo model builds");
    let files = model.to_files().expect("the model serialises");
    let file = |name: &str| {
        let (_, bytes) = files
            .files
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("a file {name}"));
        IndexFile::parse(AlignedBytes::copy_from(bytes)).expect("a valid file")
    };
    let states = file("JFK.states.sbx");
    let count = states.u32s("hours").expect("hours").len();
    let tiles = states.f32s("tiles").expect("tiles");
    let dim = tiles.len() / count.div_ceil(TILE) / TILE;
    let horizon = file("JFK.24h.sbx");
    let mut rows = Vec::new();
    for &id in horizon.u32s("ids").expect("ids") {
        let id = id as usize;
        let tile = &tiles[(id / TILE) * dim * TILE..][..dim * TILE];
        rows.extend((0..dim).map(|j| tile[j * TILE + id % TILE]));
    }
    (rows, dim)
}

#[test]
fn refined_recall_on_weather_states() {
    let (vectors, dim) = weather_states();
    let n = vectors.len() / dim;
    assert!(n > 5_000, "{n} windows");
    let cut = n * 9 / 10;
    let (base, queries) = vectors.split_at(cut * dim);
    let mut flat = FlatIndex::new(dim, Metric::L2).expect("dim");
    flat.add(base).expect("finite");
    // Fewer k-means iterations and 6-bit codes keep this fast in a debug
    // build; re-ranking makes up for the coarser codes.
    let params = IvfPqParams::new(64, 5, 6, 8)
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
    eprintln!("JFK 24 h states, {n} x {dim}: recall@10 raw {raw:.3}, re-ranked {refined:.3}");
    assert!(
        refined >= 0.95,
        "recall@10 raw {raw:.3}, re-ranked {refined:.3}"
    );
    assert!(
        refined > raw,
        "re-ranking must help: raw {raw:.3}, re-ranked {refined:.3}"
    );
}
