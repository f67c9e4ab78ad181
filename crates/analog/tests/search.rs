//! Search against a plain f64 brute-force oracle, ties, `k`, batch search.

mod common;

use analog::{FlatIndex, Metric, Neighbor};
use common::{brute_force, exact, tol};
use proptest::prelude::*;

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![Just(Metric::InnerProduct), Just(Metric::L2)]
}

/// (dim, data with n rows, query, k, metric) with the given value strategy.
fn case<S: Strategy<Value = f32> + Clone>(
    value: S,
) -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, usize, Metric)> {
    (1usize..300, 1usize..=130, 1usize..20, metric()).prop_flat_map(move |(n, dim, k, m)| {
        (
            Just(dim),
            prop::collection::vec(value.clone(), n * dim),
            prop::collection::vec(value.clone(), dim),
            Just(k),
            Just(m),
        )
    })
}

fn build(dim: usize, metric: Metric, data: &[f32]) -> FlatIndex {
    let mut index = FlatIndex::new(dim, metric).expect("dim >= 1");
    index.add(data).expect("finite, whole rows");
    index
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Continuous values: scores within tolerance of the oracle's at each
    /// rank, and the same ids except where two exact scores are themselves
    /// within tolerance (a near-tie f32 rounding may legitimately reorder).
    #[test]
    fn matches_oracle((dim, data, query, k, m) in case(-10.0f32..10.0)) {
        let index = build(dim, m, &data);
        let got = index.search(&query, k).expect("valid query");
        let want = brute_force(m, &data, dim, &query);
        prop_assert_eq!(got.len(), k.min(want.len()));
        let mut seen = std::collections::HashSet::new();
        for (rank, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert!(seen.insert(g.id), "duplicate id {}", g.id);
            let (g_exact, g_scale) = exact(m, &query, &data[g.id as usize * dim..][..dim]);
            prop_assert!(
                (f64::from(g.score) - g_exact).abs() <= tol(g_scale),
                "rank {rank}: id {} score {} vs exact {g_exact}", g.id, g.score
            );
            prop_assert!(
                (f64::from(g.score) - w.score).abs() <= tol(w.scale) + tol(g_scale),
                "rank {rank}: score {} vs oracle {}", g.score, w.score
            );
            if g.id != w.id {
                prop_assert!(
                    (g_exact - w.score).abs() <= tol(w.scale) + tol(g_scale),
                    "rank {rank}: id {} (exact {g_exact}) where oracle has id {} ({})",
                    g.id, w.id, w.score
                );
            }
        }
    }

    /// Small integers: every f32 operation is exact (|sums| < 2^24), so
    /// scores and ids must match the oracle exactly, and the many ties must
    /// come out lower id first.
    #[test]
    fn exact_on_integers((dim, data, query, k, m) in case((-3i8..=3).prop_map(f32::from))) {
        let index = build(dim, m, &data);
        let got = index.search(&query, k).expect("valid query");
        let want: Vec<Neighbor> = brute_force(m, &data, dim, &query)
            .into_iter()
            .take(k)
            .map(|e| Neighbor { id: e.id, score: e.score as f32 })
            .collect();
        prop_assert_eq!(got, want);
    }

    /// Duplicated vectors (identical scores) come out in increasing id
    /// order, whatever the data.
    #[test]
    fn duplicates_lower_id_first(
        (dim, data, query, k, m) in case(-10.0f32..10.0),
        copies in 2usize..5,
    ) {
        // Rows r0, r1, ... become r0 x copies, r1 x copies, ...
        let mut dup = Vec::with_capacity(data.len() * copies);
        for row in data.chunks_exact(dim) {
            for _ in 0..copies {
                dup.extend_from_slice(row);
            }
        }
        let index = build(dim, m, &dup);
        let got = index.search(&query, index.len()).expect("valid query");
        prop_assert_eq!(got.len(), index.len());
        let mut by_row: Vec<Vec<u32>> = vec![Vec::new(); data.len() / dim];
        for n in &got {
            by_row[n.id as usize / copies].push(n.id);
        }
        for (row, ids) in by_row.iter().enumerate() {
            let first = (row * copies) as u32;
            let want: Vec<u32> = (first..first + copies as u32).collect();
            prop_assert_eq!(ids, &want, "row {}", row);
        }
        // A bounded top-k is a prefix of the full ranking (ties cut at k
        // keep the lower ids).
        let top = index.search(&query, k).expect("valid query");
        prop_assert_eq!(&top[..], &got[..k.min(got.len())]);
        // Copies score identically; and the overall order is sorted.
        for w in got.windows(2) {
            let ordered = match m {
                Metric::InnerProduct => w[0].score >= w[1].score,
                Metric::L2 => w[0].score <= w[1].score,
            };
            prop_assert!(ordered, "{:?} then {:?}", w[0], w[1]);
            if w[0].score == w[1].score {
                prop_assert!(w[0].id < w[1].id);
            }
        }
    }

    /// `search_batch` gives exactly what `search` gives, query by query.
    #[test]
    fn batch_equals_single(
        (dim, data, _query, k, m) in case(-10.0f32..10.0),
        nq in 0usize..8,
        seed in any::<u64>(),
    ) {
        let index = build(dim, m, &data);
        let queries = common::values(seed, nq * dim, 10.0);
        let batch = index.search_batch(&queries, k).expect("valid queries");
        prop_assert_eq!(batch.len(), nq);
        for (q, got) in queries.chunks_exact(dim).zip(&batch) {
            prop_assert_eq!(got, &index.search(q, k).expect("valid query"));
        }
    }
}

#[test]
fn k_larger_than_len_returns_all_sorted() {
    let index = build(1, Metric::L2, &[5.0, 1.0, 3.0]);
    let got = index.search(&[0.0], 100).expect("valid");
    let ids: Vec<u32> = got.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![1, 2, 0]);
    assert_eq!(got[0].score, 1.0);
}

#[test]
fn empty_index_returns_nothing() {
    let index = FlatIndex::new(4, Metric::InnerProduct).expect("dim >= 1");
    assert!(index.is_empty());
    assert_eq!(index.search(&[1.0; 4], 3).expect("valid"), vec![]);
    assert_eq!(
        index.search_batch(&[1.0; 8], 3).expect("valid"),
        vec![Vec::<Neighbor>::new(), Vec::new()]
    );
}

#[test]
fn ids_follow_insertion_across_adds_and_blocks() {
    // 600 rows crosses the 256-row scoring block twice; row i = [i].
    let mut index = FlatIndex::new(1, Metric::InnerProduct).expect("dim >= 1");
    let rows: Vec<f32> = (0..600).map(|i| i as f32).collect();
    index.add(&rows[..300]).expect("valid");
    index.add(&rows[300..]).expect("valid");
    assert_eq!(index.len(), 600);
    assert_eq!(index.vector(599), Some(vec![599.0f32]));
    assert_eq!(index.vector(600), None);
    let got = index.search(&[1.0], 3).expect("valid");
    let ids: Vec<u32> = got.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![599, 598, 597]);
    let got = index.search(&[-1.0], 2).expect("valid");
    assert_eq!(got[0], Neighbor { id: 0, score: 0.0 });
    assert_eq!(got[1].id, 1);
}

#[test]
fn batch_across_query_groups_equals_single() {
    // 70 queries span three 32-query groups; 700 rows span three blocks.
    const DIM: usize = 13;
    for metric in [Metric::InnerProduct, Metric::L2] {
        let index = build(DIM, metric, &common::values(3, 700 * DIM, 4.0));
        let queries = common::values(4, 70 * DIM, 4.0);
        let batch = index.search_batch(&queries, 7).expect("valid");
        assert_eq!(batch.len(), 70);
        for (q, got) in queries.chunks_exact(DIM).zip(&batch) {
            assert_eq!(got, &index.search(q, 7).expect("valid"), "{metric:?}");
        }
    }
}

/// The horizon search of the forecast model (`analog::forecast::HorizonIndex`).
mod horizon {
    use analog::forecast::anen::{euclidean_blocks, tile_rows, AnEnIndex, Block};
    use analog::forecast::{
        build_ivfpq, build_station_ivfpq, HorizonIndex, IndexChoice, IvfPqSettings, Similarity,
    };
    use proptest::prelude::*;

    const DIM: usize = 7;

    fn blocks() -> Vec<Block> {
        vec![
            Block {
                start: 0,
                len: 3,
                weight: 1.0,
            },
            Block {
                start: 3,
                len: 3,
                weight: 0.5,
            },
            Block {
                start: 6,
                len: 1,
                weight: 2.0,
            },
        ]
    }

    /// (rows, horizon ids as a mask, query, k, exclusion range) with `n` rows of small
    /// integers (many exact ties).
    /// Rows, horizon mask, query, k, (exclusion start, width).
    type Case = (Vec<f32>, Vec<bool>, Vec<f32>, usize, (u32, u32));

    fn case() -> impl Strategy<Value = Case> {
        (64usize..400).prop_flat_map(|n| {
            (
                prop::collection::vec((-3i8..=3).prop_map(f32::from), n * DIM),
                prop::collection::vec(prop::bool::weighted(0.8), n),
                prop::collection::vec((-3i8..=3).prop_map(f32::from), DIM),
                1usize..30,
                (0..n as u32, 0u32..80),
            )
        })
    }

    fn settings(nlist: usize, shortlist: usize) -> IvfPqSettings {
        IvfPqSettings {
            nlist,
            m: 3,
            nbits: 4,
            nprobe: nlist,
            shortlist,
        }
    }

    fn horizon_ids(mask: &[bool]) -> Vec<u32> {
        (0u32..)
            .zip(mask)
            .filter(|(_, &m)| m)
            .map(|(i, _)| i)
            .collect()
    }

    fn similarities() -> [Similarity; 2] {
        [Similarity::Seed, Similarity::AnEn]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Probing every list with a shortlist of every vector re-scores everything exactly,
        /// so the result is the flat result, bit for bit.
        #[test]
        fn full_rerank_equals_flat((rows, mask, query, k, (lo, width)) in case()) {
            let states = AnEnIndex::new(DIM, &blocks(), &rows).expect("finite rows");
            let ids = horizon_ids(&mask);
            prop_assume!(ids.len() >= 16);
            let s = settings(4, ids.len());
            let ivf = build_ivfpq(&states, &ids, &s, 7).expect("trainable");
            let flat = HorizonIndex { states: &states, ids: &ids, choice: IndexChoice::Flat, ivfpq: None };
            let rerank = HorizonIndex { choice: IndexChoice::IvfpqRerank(s), ivfpq: Some(&ivf), ..flat };
            for similarity in similarities() {
                let exclude = lo..lo.saturating_add(width);
                let want = flat.search(&query, k, similarity, exclude.clone()).expect("flat");
                let got = rerank.search(&query, k, similarity, exclude).expect("rerank");
                prop_assert_eq!(got, want);
            }
        }

        /// Whatever the index, no excluded or non-horizon id comes back, results are sorted
        /// nearest first with ties by lower id, and there are `k` of them when the horizon
        /// has that many outside the exclusion.
        #[test]
        fn exclusion_and_order((rows, mask, query, k, (lo, width)) in case(), nprobe in 1usize..5) {
            let states = AnEnIndex::new(DIM, &blocks(), &rows).expect("finite rows");
            let ids = horizon_ids(&mask);
            prop_assume!(ids.len() >= 16);
            let s = IvfPqSettings { nprobe, ..settings(4, 20) };
            let ivf = build_ivfpq(&states, &ids, &s, 3).expect("trainable");
            let exclude = lo..lo.saturating_add(width);
            let allowed = ids.iter().filter(|id| !exclude.contains(id)).count();
            for choice in [IndexChoice::Flat, IndexChoice::Ivfpq(s), IndexChoice::IvfpqRerank(s)] {
                let index = HorizonIndex { states: &states, ids: &ids, choice, ivfpq: Some(&ivf) };
                for similarity in similarities() {
                    let got = index.search(&query, k, similarity, exclude.clone()).expect("search");
                    for (id, d) in &got {
                        prop_assert!(!exclude.contains(&(*id as u32)), "{choice:?} returned excluded {id}");
                        prop_assert!(ids.contains(&(*id as u32)), "{id} is not in the horizon");
                        prop_assert!(d.is_finite() && *d >= 0.0);
                    }
                    for pair in got.windows(2) {
                        prop_assert!(
                            pair[0].1 < pair[1].1 || (pair[0].1 == pair[1].1 && pair[0].0 < pair[1].0),
                            "{choice:?} {similarity}: {:?} before {:?}", pair[0], pair[1]
                        );
                    }
                    if choice == IndexChoice::Flat || nprobe >= s.nlist {
                        prop_assert_eq!(got.len(), k.min(allowed));
                    }
                }
            }
        }
    }

    /// Deterministic pseudo-random rows.
    fn rows(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n * DIM)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn shortlist_distances_are_bit_identical_to_the_scan() {
        let data = rows(300, 1);
        let states = AnEnIndex::new(DIM, &blocks(), &data).expect("finite");
        let query = &data[5 * DIM..6 * DIM];
        let ids: Vec<u32> = vec![299, 0, 17, 16, 15, 128, 5];
        for b in [blocks(), euclidean_blocks(DIM).to_vec()] {
            let all = states.scores_with_blocks(query, &b);
            let some = states.distances(query, &ids, &b);
            for (id, d) in ids.iter().zip(&some) {
                assert_eq!(d.to_bits(), all[*id as usize].to_bits(), "id {id}");
            }
        }
        assert_eq!(states.distances(query, &[5], &blocks()), vec![0.0]);
    }

    #[test]
    fn tiles_round_trip_and_euclidean_blocks_are_l2() {
        let data = rows(37, 2);
        let built = AnEnIndex::new(DIM, &blocks(), &data).expect("finite");
        let tiled =
            AnEnIndex::from_tiles(DIM, 37, &blocks(), tile_rows(DIM, &data)).expect("tiles");
        let query = &data[..DIM];
        assert_eq!(built.scores(query), tiled.scores(query));
        assert_eq!(tiled.tiles(), built.tiles());
        assert_eq!(tiled.row(36).as_deref(), Some(&data[36 * DIM..]));
        assert_eq!(tiled.row(37), None);
        let l2 = tiled.scores_with_blocks(query, &euclidean_blocks(DIM));
        for (r, d) in data.chunks_exact(DIM).zip(l2) {
            let want: f32 = r
                .iter()
                .zip(query)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt();
            assert!((d - want).abs() <= 1e-5 * want.max(1.0), "{d} vs {want}");
        }
        assert!(AnEnIndex::from_tiles(DIM, 49, &blocks(), tile_rows(DIM, &data)).is_err());
        let mut bad = tile_rows(DIM, &data);
        bad[3] = f32::NAN;
        assert!(AnEnIndex::from_tiles(DIM, 37, &blocks(), bad).is_err());
    }

    /// One shared training filled per horizon gives the same searches as separate builds with
    /// the same seed.
    #[test]
    fn shared_training_equals_separate_builds() {
        let data = rows(700, 3);
        let states = AnEnIndex::new(DIM, &blocks(), &data).expect("finite");
        let all: Vec<u32> = (0..700).collect();
        let h1: Vec<u32> = (0..690).collect();
        let h2: Vec<u32> = (0..700).filter(|i| i % 3 != 0).collect();
        let s = IvfPqSettings {
            nprobe: 2,
            ..settings(8, 40)
        };
        let other = IvfPqSettings { nlist: 4, ..s };
        let built = build_station_ivfpq(&states, &[(&h1, s), (&h2, other), (&all, s)], 11)
            .expect("trainable");
        assert_eq!(built.len(), 3);
        assert_eq!(built[0].len(), h1.len());
        assert_eq!(built[1].len(), h2.len());
        assert_eq!(built[1].params().nlist, 4);
        // The shared training is on all states: building the full horizon alone is the same.
        let alone = build_ivfpq(&states, &all, &s, 11).expect("trainable");
        let query = &data[10 * DIM..11 * DIM];
        assert_eq!(
            built[2].search(query, 10, 2).expect("search"),
            alone.search(query, 10, 2).expect("search")
        );
        let horizon = HorizonIndex {
            states: &states,
            ids: &h1,
            choice: IndexChoice::IvfpqRerank(s),
            ivfpq: Some(&built[0]),
        };
        let got = horizon
            .search(query, 5, Similarity::Seed, 0..0)
            .expect("search");
        assert_eq!(got[0], (10, 0.0));
        // An index that does not match the horizon is refused.
        let wrong = HorizonIndex {
            ids: &h2,
            ..horizon
        };
        assert!(wrong.search(query, 5, Similarity::Seed, 0..0).is_err());
        let missing = HorizonIndex {
            ivfpq: None,
            ..horizon
        };
        assert!(missing.search(query, 5, Similarity::AnEn, 0..0).is_err());
    }
}
