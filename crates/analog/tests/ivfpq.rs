//! IVF-PQ against oracles: PQ scores equal the metric on the reconstructed
//! vectors, probing every list and re-ranking everything is exact search,
//! training is deterministic, and re-ranking reaches high recall on
//! clustered data.

mod common;

use analog::{AnalogError, FlatIndex, IvfPqIndex, IvfPqParams, Metric, Neighbor, VectorIndex};
use common::{brute_force, exact, tol};
use proptest::prelude::*;

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![Just(Metric::InnerProduct), Just(Metric::L2)]
}

/// (dim, data, query, params, metric, seed): small enough for a debug build.
fn case() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, IvfPqParams, Metric, u64)> {
    (
        1usize..=20,
        20usize..120,
        1usize..=6,
        1u32..=4,
        metric(),
        any::<u64>(),
    )
        .prop_flat_map(|(dim, n, nlist, nbits, metric, seed)| {
            (
                Just(dim),
                prop::collection::vec(-5.0f32..5.0, n * dim),
                prop::collection::vec(-5.0f32..5.0, dim),
                (1usize..=dim).prop_map(move |m| {
                    IvfPqParams::new(nlist, m, nbits, nlist)
                        .with_kmeans_iters(8)
                        .with_refine(1)
                }),
                Just(metric),
                Just(seed),
            )
        })
}

fn build(dim: usize, data: &[f32], params: IvfPqParams, metric: Metric, seed: u64) -> IvfPqIndex {
    let mut index = IvfPqIndex::train(data, dim, metric, params, seed).expect("valid training");
    index.add(data).expect("valid vectors");
    index
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Probing every list, the PQ ranking is the exact ranking of the
    /// reconstructed vectors (centroid + decoded residual), scores within a
    /// tolerance for the table arithmetic.
    #[test]
    fn pq_scores_are_the_metric_on_reconstructions(
        (dim, data, query, params, m, seed) in case(),
        k in 1usize..15,
    ) {
        let index = build(dim, &data, params, m, seed);
        let recon: Vec<f32> = (0..index.len() as u32)
            .flat_map(|id| index.reconstruct(id).expect("stored id"))
            .collect();
        let got = index.search(&query, k, params.nlist).expect("valid query");
        let want = brute_force(m, &recon, dim, &query);
        prop_assert_eq!(got.len(), k.min(want.len()));
        // L2 tables sum |q-c|² + |w|² + 2c·w - 2q·w: the rounding scales
        // with those magnitudes, not with the (possibly tiny) distance.
        let q2: f64 = query.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let slack = |x: &[f32]| {
            let x2: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            8.0 * tol(q2 + x2)
        };
        for (rank, (g, w)) in got.iter().zip(&want).enumerate() {
            let x = &recon[g.id as usize * dim..][..dim];
            let (g_exact, _) = exact(m, &query, x);
            prop_assert!(
                (f64::from(g.score) - g_exact).abs() <= slack(x),
                "rank {rank}: id {} pq score {} vs reconstruction {g_exact}", g.id, g.score
            );
            let wx = &recon[w.id as usize * dim..][..dim];
            prop_assert!(
                (g_exact - w.score).abs() <= slack(x) + slack(wx),
                "rank {rank}: id {} ({g_exact}) where the oracle has id {} ({})",
                g.id, w.id, w.score
            );
        }
    }

    /// Probing every list with a shortlist of everything is exact search:
    /// same ids as the oracle (up to near-ties) and exact scores.
    #[test]
    fn full_probe_full_shortlist_is_exact(
        (dim, data, query, params, m, seed) in case(),
        k in 1usize..15,
    ) {
        let index = build(dim, &data, params, m, seed);
        let got = index
            .search_refined(&query, k, params.nlist, index.len())
            .expect("valid query");
        let want = brute_force(m, &data, dim, &query);
        prop_assert_eq!(got.len(), k.min(want.len()));
        for (rank, (g, w)) in got.iter().zip(&want).enumerate() {
            let (g_exact, g_scale) = exact(m, &query, &data[g.id as usize * dim..][..dim]);
            prop_assert!((f64::from(g.score) - g_exact).abs() <= tol(g_scale));
            if g.id != w.id {
                prop_assert!(
                    (g_exact - w.score).abs() <= tol(w.scale) + tol(g_scale),
                    "rank {rank}: id {} ({g_exact}) where oracle has id {} ({})",
                    g.id, w.id, w.score
                );
            }
        }
    }

    /// The same seed builds the same index; batch equals one by one.
    #[test]
    fn deterministic_and_batch_equals_single(
        (dim, data, _query, params, m, seed) in case(),
    ) {
        let a = build(dim, &data, params, m, seed);
        let b = build(dim, &data, params, m, seed);
        let queries = common::values(seed, 3 * dim, 5.0);
        let nprobe = params.nlist.div_ceil(2);
        let batch = a.search_batch(&queries, 5, nprobe).expect("valid");
        let refined = a.search_refined_batch(&queries, 5, nprobe, 10).expect("valid");
        for (i, q) in queries.chunks_exact(dim).enumerate() {
            // nprobe past nlist probes every list.
            prop_assert_eq!(
                a.search(q, 5, params.nlist + 3).expect("valid"),
                a.search(q, 5, params.nlist).expect("valid")
            );
            prop_assert_eq!(&batch[i], &b.search(q, 5, nprobe).expect("valid"));
            prop_assert_eq!(&refined[i], &b.search_refined(q, 5, nprobe, 10).expect("valid"));
        }
        prop_assert_eq!(a.list_sizes(), b.list_sizes());
    }
}

/// Duplicate vectors get identical codes and scores: lower id first, also
/// across lists scanned in any order.
#[test]
fn ties_lower_id_first() {
    let dim = 4;
    let base = common::values(5, 60 * dim, 3.0);
    let mut data = base.clone();
    data.extend_from_slice(&base); // ids i and i + 60 are equal
    for metric in [Metric::InnerProduct, Metric::L2] {
        let params = IvfPqParams::new(4, 2, 4, 4).with_kmeans_iters(10);
        let index = build(dim, &data, params, metric, 11);
        let got = index.search(&base[..dim], 120, 4).expect("valid");
        assert_eq!(got.len(), 120);
        for w in got.windows(2) {
            if w[0].score == w[1].score {
                assert!(w[0].id < w[1].id, "{metric:?}: {:?} then {:?}", w[0], w[1]);
            }
        }
        let pos = |id: u32| got.iter().position(|n| n.id == id).expect("present");
        for i in 0..60u32 {
            assert!(
                pos(i) < pos(i + 60),
                "{metric:?}: copy {} before {i}",
                i + 60
            );
        }
    }
}

/// Gaussian-like blobs: re-ranking a shortlist of 4k from 1/4 of the lists
/// finds at least 95% of the exact top 10.
#[test]
fn refined_recall_on_clustered_data() {
    let dim = 16;
    let centers = common::values(21, 20 * dim, 10.0);
    let noise = common::values(22, 2_000 * dim, 1.0);
    let data: Vec<f32> = noise
        .chunks_exact(dim)
        .enumerate()
        .flat_map(|(i, x)| {
            let c = &centers[(i % 20) * dim..][..dim];
            x.iter().zip(c).map(|(a, b)| a + b).collect::<Vec<_>>()
        })
        .collect();
    let queries: Vec<f32> = data[..50 * dim]
        .iter()
        .zip(common::values(23, 50 * dim, 0.5))
        .map(|(a, b)| a + b)
        .collect();
    for metric in [Metric::InnerProduct, Metric::L2] {
        let mut flat = FlatIndex::new(dim, metric).expect("dim");
        flat.add(&data).expect("valid");
        let params = IvfPqParams::new(16, 8, 6, 4)
            .with_kmeans_iters(10)
            .with_refine(4);
        let index = build(dim, &data, params, metric, 3);
        let (mut hits, mut total) = (0, 0);
        for q in queries.chunks_exact(dim) {
            let want: Vec<u32> = flat
                .search(q, 10)
                .expect("valid")
                .iter()
                .map(|n| n.id)
                .collect();
            let got = VectorIndex::search(&index, q, 10).expect("valid");
            hits += got.iter().filter(|n| want.contains(&n.id)).count();
            total += want.len();
        }
        let recall = hits as f64 / total as f64;
        assert!(recall >= 0.95, "{metric:?}: recall@10 {recall}");
    }
}

#[test]
fn parameter_and_input_errors() {
    let data = common::values(1, 300 * 6, 1.0);
    let train = |params: IvfPqParams, n: usize| {
        IvfPqIndex::train(&data[..n * 6], 6, Metric::L2, params, 0).map(|_| ())
    };
    let bad = |name: &'static str, value: usize, expected: &'static str| {
        Err(AnalogError::InvalidParameter {
            name,
            value,
            expected,
        })
    };
    assert_eq!(
        train(IvfPqParams::new(0, 2, 4, 1), 300),
        bad("nlist", 0, "1 ..= 2^32 - 1")
    );
    assert_eq!(
        train(IvfPqParams::new(4, 0, 4, 1), 300),
        bad("m", 0, "1 ..= the vector dimension")
    );
    assert_eq!(
        train(IvfPqParams::new(4, 7, 4, 1), 300),
        bad("m", 7, "1 ..= the vector dimension")
    );
    assert_eq!(
        train(IvfPqParams::new(4, 2, 0, 1), 300),
        bad("nbits", 0, "1 ..= 8")
    );
    assert_eq!(
        train(IvfPqParams::new(4, 2, 9, 1), 300),
        bad("nbits", 9, "1 ..= 8")
    );
    assert_eq!(
        train(IvfPqParams::new(4, 2, 4, 0), 300),
        bad("nprobe", 0, "at least 1")
    );
    assert_eq!(
        train(IvfPqParams::new(4, 2, 4, 1).with_refine(0), 300),
        bad("refine", 0, "at least 1")
    );
    let err = train(IvfPqParams::new(4, 2, 8, 1), 200).unwrap_err();
    assert_eq!(
        err,
        AnalogError::TooFewTrainingVectors {
            got: 200,
            needed: 256
        }
    );
    assert_eq!(
        err.to_string(),
        "training needs at least 256 vectors (nlist and 2^nbits), got 200"
    );
    assert_eq!(
        train(IvfPqParams::new(50, 2, 4, 1), 40).unwrap_err(),
        AnalogError::TooFewTrainingVectors {
            got: 40,
            needed: 50
        }
    );
    assert_eq!(
        IvfPqIndex::train(&data, 0, Metric::L2, IvfPqParams::new(4, 2, 4, 1), 0).unwrap_err(),
        AnalogError::ZeroDimension
    );
    assert_eq!(
        IvfPqIndex::train(&data[..7], 6, Metric::L2, IvfPqParams::new(1, 1, 1, 1), 0).unwrap_err(),
        AnalogError::Ragged { len: 7, dim: 6 }
    );

    let mut index =
        IvfPqIndex::train(&data, 6, Metric::L2, IvfPqParams::new(4, 2, 4, 1), 0).expect("valid");
    let mut nan = data[..12].to_vec();
    nan[8] = f32::NAN;
    assert!(matches!(
        index.add(&nan),
        Err(AnalogError::NonFinite {
            vector: 1,
            component: 2,
            ..
        })
    ));
    assert!(index.is_empty());
    index.add(&data).expect("valid");
    let q = &data[..6];
    assert_eq!(
        index.search(q, 3, 0).unwrap_err(),
        bad("nprobe", 0, "at least 1").unwrap_err()
    );
    assert_eq!(index.search(q, 0, 1).unwrap_err(), AnalogError::ZeroK);
    assert_eq!(
        index.search(&q[..5], 1, 1).unwrap_err(),
        AnalogError::QueryDimension { got: 5, dim: 6 }
    );
    let err = index.search_refined(q, 3, 2, 10).unwrap_err();
    assert_eq!(err, AnalogError::NoRawVectors);
    assert_eq!(
        err.to_string(),
        "this IVF-PQ index keeps no raw vectors to re-rank: build it with refine"
    );
    assert_eq!(index.vector(0), None);
}

#[test]
fn seed_configs_and_uneven_sub_vectors() {
    // 52 dimensions with m = 8: sub-vectors of 6 and 7 values.
    let dim = 52;
    let data = common::values(9, 600 * dim, 2.0);
    let params = IvfPqParams::new(8, 8, 8, 4)
        .with_kmeans_iters(4)
        .with_refine(10);
    let index = build(dim, &data, params, Metric::InnerProduct, 1);
    assert_eq!(index.len(), 600);
    assert_eq!(index.list_sizes().iter().sum::<usize>(), 600);
    assert_eq!(index.vector(599), Some(&data[599 * dim..]));
    let hits = VectorIndex::search(&index, &data[..dim], 10).expect("valid");
    assert_eq!(hits.len(), 10);
    // Refined scores are exact inner products.
    for Neighbor { id, score } in hits {
        let (want, scale) = exact(
            Metric::InnerProduct,
            &data[..dim],
            &data[id as usize * dim..][..dim],
        );
        assert!((f64::from(score) - want).abs() <= tol(scale));
    }
}

/// Indexes over the same quantizers (a station's horizons, trained once, loaded from separate
/// files) share their lookup tables; other quantizers do not; results are unchanged.
#[test]
fn same_quantizers_share_their_tables() {
    use analog::forecast::anen::{euclidean_blocks, AnEnIndex};
    use analog::forecast::{build_station_ivfpq, IvfPqSettings};
    let dim = 6;
    let data: Vec<f32> = (0..900u32)
        .flat_map(|i| (0..6u32).map(move |j| ((i * 7 + j * 13) % 17) as f32 - 8.0))
        .collect();
    let states = AnEnIndex::new(dim, &euclidean_blocks(dim), &data).expect("finite");
    let (a, b): (Vec<u32>, Vec<u32>) = ((0..850).collect(), (0..900).step_by(2).collect());
    let settings = IvfPqSettings {
        nlist: 8,
        m: 3,
        nbits: 4,
        nprobe: 4,
        shortlist: 20,
    };
    let built = build_station_ivfpq(&states, &[(&a, settings), (&b, settings)], 5).expect("built");
    let load = |i: &IvfPqIndex| {
        IvfPqIndex::from_file(analog::format::AlignedBytes::copy_from(
            &i.to_file_bytes().expect("bytes"),
        ))
        .expect("loads")
    };
    let (first, mut second) = (load(&built[0]), load(&built[1]));
    let query = &data[..dim];
    let before = second.search(query, 10, 4).expect("search");
    assert!(second.search_bytes() > 0);
    assert!(second.share_quantizers(&first));
    assert_eq!(second.search(query, 10, 4).expect("search"), before);
    let other = build_station_ivfpq(&states, &[(&b, settings)], 6).expect("built");
    let mut other = load(&other[0]);
    assert!(!other.share_quantizers(&first));
}
