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
    assert_eq!(index.vector(599), Some(&[599.0f32][..]));
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
