//! One index searched from 8 threads at once matches a single-threaded run.

mod common;

use analog::{FlatIndex, IvfPqIndex, IvfPqParams, Metric, VectorIndex};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn indexes_are_send_and_sync() {
    assert_send_sync::<FlatIndex>();
    assert_send_sync::<IvfPqIndex>();
    assert_send_sync::<Box<dyn VectorIndex>>();
}

#[test]
fn ivfpq_searched_from_threads_matches_single_thread() {
    const DIM: usize = 12;
    let data = common::values(5, 1_000 * DIM, 3.0);
    let params = IvfPqParams::new(8, 4, 5, 3)
        .with_kmeans_iters(5)
        .with_refine(4);
    let mut index = IvfPqIndex::train(&data, DIM, Metric::L2, params, 3).expect("valid");
    index.add(&data).expect("valid");
    let queries = common::values(6, 32 * DIM, 3.0);
    let want: Vec<_> = queries
        .chunks_exact(DIM)
        .map(|q| VectorIndex::search(&index, q, 10).expect("valid"))
        .collect();
    let index = &index;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let queries = &queries;
                s.spawn(move || {
                    queries
                        .chunks_exact(DIM)
                        .map(|q| VectorIndex::search(index, q, 10).expect("valid"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().expect("search thread panicked"), want);
        }
    });
}

#[test]
fn eight_threads_match_single_thread() {
    const DIM: usize = 52;
    for metric in [Metric::InnerProduct, Metric::L2] {
        let mut index = FlatIndex::new(DIM, metric).expect("dim >= 1");
        index
            .add(&common::values(1, 2_000 * DIM, 5.0))
            .expect("finite");
        let queries = common::values(2, 64 * DIM, 5.0);
        let want: Vec<_> = queries
            .chunks_exact(DIM)
            .map(|q| index.search(q, 10).expect("valid"))
            .collect();
        let index = &index;
        let results: Vec<Vec<_>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let queries = &queries;
                    s.spawn(move || {
                        // Each thread walks the queries from a different start.
                        let nq = queries.len() / DIM;
                        let mut out = vec![Vec::new(); nq];
                        for i in 0..nq {
                            let j = (i + t * 7) % nq;
                            out[j] = index.search(&queries[j * DIM..][..DIM], 10).expect("valid");
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("search thread panicked"))
                .collect()
        });
        assert_eq!(results.len(), 8);
        for got in results {
            assert_eq!(got, want, "{metric:?}");
        }
    }
}
