//! Index files: a loaded index answers exactly like the saved one; corrupt,
//! truncated, foreign and crafted-inconsistent files are refused with an
//! error, never a panic.

mod common;

use analog::format::{AlignedBytes, FileWriter, FormatError, IndexFile};
use analog::{AnalogError, FlatIndex, IvfPqIndex, IvfPqParams, Metric};
use proptest::prelude::*;

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![Just(Metric::InnerProduct), Just(Metric::L2)]
}

fn load_flat(bytes: &[u8]) -> Result<FlatIndex, AnalogError> {
    FlatIndex::from_file(AlignedBytes::copy_from(bytes))
}

fn load_ivf(bytes: &[u8]) -> Result<IvfPqIndex, AnalogError> {
    IvfPqIndex::from_file(AlignedBytes::copy_from(bytes))
}

fn ivf(dim: usize, n: usize, metric: Metric, refine: bool, seed: u64) -> IvfPqIndex {
    let data = common::values(seed, n * dim, 3.0);
    let mut params = IvfPqParams::new(4, dim.min(3), 4, 2).with_kmeans_iters(5);
    if refine {
        params = params.with_refine(3);
    }
    let mut index = IvfPqIndex::train(&data, dim, metric, params, seed).expect("valid");
    index.add(&data).expect("valid");
    index
}

/// Every search a caller can make gives identical answers on both.
fn assert_same_ivf(a: &IvfPqIndex, b: &IvfPqIndex, queries: &[f32]) {
    let dim = a.dim();
    assert_eq!(
        (a.len(), a.dim(), a.metric()),
        (b.len(), b.dim(), b.metric())
    );
    assert_eq!(a.params(), b.params());
    assert_eq!(a.list_sizes(), b.list_sizes());
    for q in queries.chunks_exact(dim) {
        for nprobe in [1, 2, 4] {
            assert_eq!(a.search(q, 7, nprobe), b.search(q, 7, nprobe));
            assert_eq!(
                a.search_refined(q, 5, nprobe, 15),
                b.search_refined(q, 5, nprobe, 15)
            );
        }
    }
    for id in [0, a.len() as u32 / 2, a.len() as u32 - 1] {
        assert_eq!(a.reconstruct(id), b.reconstruct(id));
        assert_eq!(a.vector(id), b.vector(id));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn flat_round_trip(
        dim in 1usize..40,
        n in 0usize..150,
        more in 0usize..40,
        m in metric(),
        seed in any::<u64>(),
    ) {
        let mut index = FlatIndex::new(dim, m).expect("dim >= 1");
        index.add(&common::values(seed, n * dim, 5.0)).expect("valid");
        let mut loaded = load_flat(&index.to_file_bytes().expect("writes")).expect("loads");
        prop_assert_eq!((loaded.len(), loaded.dim(), loaded.metric()), (n, dim, m));
        let queries = common::values(seed ^ 1, 4 * dim, 5.0);
        prop_assert_eq!(
            loaded.search_batch(&queries, 9).expect("valid"),
            index.search_batch(&queries, 9).expect("valid")
        );
        for id in 0..n as u32 {
            prop_assert_eq!(loaded.vector(id), index.vector(id));
        }
        // Adding to a loaded (borrowed) index copies it, then behaves the same.
        let extra = common::values(seed ^ 2, more * dim, 5.0);
        index.add(&extra).expect("valid");
        loaded.add(&extra).expect("valid");
        for q in queries.chunks_exact(dim) {
            prop_assert_eq!(loaded.search(q, 12).expect("valid"), index.search(q, 12).expect("valid"));
        }
        // And saving the grown copy round-trips again.
        let again = load_flat(&loaded.to_file_bytes().expect("writes")).expect("loads");
        prop_assert_eq!(
            again.search_batch(&queries, 9).expect("valid"),
            index.search_batch(&queries, 9).expect("valid")
        );
    }

    /// Any flipped byte or truncation is refused (the checksum or the
    /// header catches it), for both kinds.
    #[test]
    fn corrupt_or_truncated_files_are_refused(
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        keep in any::<prop::sample::Index>(),
        refine in any::<bool>(),
    ) {
        let mut flat = FlatIndex::new(5, Metric::L2).expect("dim");
        flat.add(&common::values(3, 50 * 5, 1.0)).expect("valid");
        let files = [
            flat.to_file_bytes().expect("writes"),
            ivf(6, 80, Metric::InnerProduct, refine, 4).to_file_bytes().expect("writes"),
        ];
        for (kind, bytes) in files.iter().enumerate() {
            let mut corrupt = bytes.clone();
            corrupt[at.index(bytes.len())] ^= flip;
            let truncated = &bytes[..keep.index(bytes.len())];
            for bad in [&corrupt[..], truncated] {
                let refused = if kind == 0 { load_flat(bad).is_err() } else { load_ivf(bad).is_err() };
                prop_assert!(refused);
            }
        }
    }
}

#[test]
fn ivfpq_round_trip() {
    for metric in [Metric::InnerProduct, Metric::L2] {
        for refine in [false, true] {
            let mut index = ivf(7, 120, metric, refine, 9);
            let mut loaded = load_ivf(&index.to_file_bytes().expect("writes")).expect("loads");
            let queries = common::values(10, 6 * 7, 3.0);
            assert_same_ivf(&index, &loaded, &queries);
            let extra = common::values(11, 30 * 7, 3.0);
            index.add(&extra).expect("valid");
            loaded.add(&extra).expect("valid");
            assert_same_ivf(&index, &loaded, &queries);
        }
    }
}

#[test]
fn foreign_kind_is_refused() {
    let mut flat = FlatIndex::new(3, Metric::L2).expect("dim");
    flat.add(&[1.0; 30]).expect("valid");
    let err = load_ivf(&flat.to_file_bytes().expect("writes")).unwrap_err();
    assert_eq!(
        err,
        AnalogError::Format(FormatError::WrongKind {
            expected: "ivfpq".into(),
            found: "flat".into()
        })
    );
    assert_eq!(
        err.to_string(),
        "index file: file holds a \"flat\" index, expected \"ivfpq\""
    );
    let ivf_bytes = ivf(4, 40, Metric::L2, false, 1)
        .to_file_bytes()
        .expect("writes");
    assert!(matches!(
        load_flat(&ivf_bytes),
        Err(AnalogError::Format(FormatError::WrongKind { .. }))
    ));
    assert_eq!(
        load_flat(b"definitely not an index file, just some text..........").unwrap_err(),
        AnalogError::Format(FormatError::NotAnIndexFile)
    );
}

/// The sections of an IVF-PQ file, to rewrite with a valid checksum after
/// changing one value: what a buggy or malicious writer could produce.
#[derive(Clone)]
struct IvfSections {
    meta: Vec<u64>,
    centroids: Vec<f32>,
    codebook: Vec<f32>,
    list_starts: Vec<u64>,
    ids: Vec<u32>,
    codes: Vec<u8>,
    vectors: Vec<f32>,
}

impl IvfSections {
    fn read(bytes: &[u8]) -> Self {
        let f = IndexFile::parse(AlignedBytes::copy_from(bytes)).expect("valid file");
        Self {
            meta: f.u64s("meta").expect("meta").to_vec(),
            centroids: f.f32s("centroids").expect("centroids").to_vec(),
            codebook: f.f32s("codebook").expect("codebook").to_vec(),
            list_starts: f.u64s("list_starts").expect("starts").to_vec(),
            ids: f.u32s("ids").expect("ids").to_vec(),
            codes: f.bytes("codes").expect("codes").to_vec(),
            vectors: f.f32s("vectors").expect("vectors").to_vec(),
        }
    }

    fn write(&self) -> Vec<u8> {
        let mut w = FileWriter::new("ivfpq").expect("kind");
        w.add_u64("meta", &self.meta)
            .and_then(|w| w.add_f32("centroids", &self.centroids))
            .and_then(|w| w.add_f32("codebook", &self.codebook))
            .and_then(|w| w.add_u64("list_starts", &self.list_starts))
            .and_then(|w| w.add_u32("ids", &self.ids))
            .and_then(|w| w.add_bytes("codes", &self.codes))
            .and_then(|w| w.add_f32("vectors", &self.vectors))
            .expect("valid sections");
        w.to_bytes()
    }
}

/// One changed value in one section, the checksum recomputed.
#[derive(Debug, Clone)]
enum Edit {
    Meta(prop::sample::Index, u64),
    Centroid(prop::sample::Index, f32),
    Start(prop::sample::Index, u64),
    Id(prop::sample::Index, u32),
    Code(prop::sample::Index, u8),
    Vector(prop::sample::Index, f32),
    DropLastCode,
}

fn edit() -> impl Strategy<Value = Edit> {
    let small_or_any = prop_oneof![0u64..300, any::<u64>()];
    prop_oneof![
        (any::<prop::sample::Index>(), small_or_any.clone()).prop_map(|(i, v)| Edit::Meta(i, v)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![Just(f32::NAN), -1e3f32..1e3]
        )
            .prop_map(|(i, v)| Edit::Centroid(i, v)),
        (any::<prop::sample::Index>(), small_or_any).prop_map(|(i, v)| Edit::Start(i, v)),
        (any::<prop::sample::Index>(), 0u32..300).prop_map(|(i, v)| Edit::Id(i, v)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, v)| Edit::Code(i, v)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![Just(f32::INFINITY), -1e3f32..1e3]
        )
            .prop_map(|(i, v)| Edit::Vector(i, v)),
        Just(Edit::DropLastCode),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// A file with a valid checksum but one changed value either loads into
    /// an index that searches without panicking, or is refused.
    #[test]
    fn crafted_ivfpq_files_never_panic(e in edit(), metric in metric()) {
        let index = ivf(6, 100, metric, true, 5);
        let mut s = IvfSections::read(&index.to_file_bytes().expect("writes"));
        match e {
            Edit::Meta(i, v) => { let at = i.index(s.meta.len()); s.meta[at] = v },
            Edit::Centroid(i, v) => { let at = i.index(s.centroids.len()); s.centroids[at] = v },
            Edit::Start(i, v) => { let at = i.index(s.list_starts.len()); s.list_starts[at] = v },
            Edit::Id(i, v) => { let at = i.index(s.ids.len()); s.ids[at] = v },
            Edit::Code(i, v) => { let at = i.index(s.codes.len()); s.codes[at] = v },
            Edit::Vector(i, v) => { let at = i.index(s.vectors.len()); s.vectors[at] = v },
            Edit::DropLastCode => { s.codes.pop(); }
        }
        if let Ok(loaded) = load_ivf(&s.write()) {
            let q = common::values(6, loaded.dim(), 3.0);
            for nprobe in [1, 8] {
                let _ = loaded.search(&q, 5, nprobe);
                let _ = loaded.search_refined(&q, 5, nprobe, 20);
            }
        }
    }
}

#[test]
fn crafted_inconsistencies_name_the_problem() {
    let index = ivf(6, 100, Metric::L2, true, 5);
    let good = IvfSections::read(&index.to_file_bytes().expect("writes"));
    let refused = |edit: &dyn Fn(&mut IvfSections)| {
        let mut s = good.clone();
        edit(&mut s);
        load_ivf(&s.write()).unwrap_err().to_string()
    };
    assert_eq!(
        refused(&|s| s.ids[3] = 100),
        "index file: malformed file: section ids: id 100 is out of range or repeated"
    );
    assert_eq!(
        refused(&|s| s.ids[3] = s.ids[4]),
        format!(
            "index file: malformed file: section ids: id {} is out of range or repeated",
            good.ids[4]
        )
    );
    assert_eq!(
        refused(&|s| s.codes[0] = 16),
        "index file: malformed file: section codes: code 16 is out of range for 16 code words"
    );
    assert_eq!(
        refused(&|s| s.list_starts[1] = 1_000),
        "index file: malformed file: section list_starts must rise from 0 to 100"
    );
    assert_eq!(
        refused(&|s| {
            s.codes.pop();
        }),
        "index file: malformed file: section codes holds 299 values, expected 300"
    );
    assert_eq!(
        refused(&|s| s.meta[0] = 7),
        "index file: malformed file: section centroids holds 24 values, expected 28"
    );
    assert_eq!(
        refused(&|s| s.meta[1] = 9),
        "index file: malformed file: unknown metric code 9"
    );
    assert_eq!(
        refused(&|s| s.meta[0] = u64::MAX),
        "index file: malformed file: centroids: size 4 x 18446744073709551615 overflows"
    );
    assert_eq!(
        refused(&|s| s.meta[3] = 9),
        "parameter m = 9 is out of range (expected 1 ..= the vector dimension)"
    );
    assert_eq!(
        refused(&|s| s.vectors[5] = f32::NAN),
        "index file: malformed file: section vectors has a non-finite value"
    );
    assert_eq!(
        refused(&|s| s.centroids[2] = f32::INFINITY),
        "index file: malformed file: section centroids has a non-finite value at 2"
    );

    // A flat file whose blocks hold a non-finite value, or non-zero padding.
    let mut flat = FlatIndex::new(2, Metric::InnerProduct).expect("dim");
    flat.add(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("valid");
    let f = IndexFile::parse(AlignedBytes::copy_from(
        &flat.to_file_bytes().expect("writes"),
    ))
    .expect("valid");
    let rewritten = |edit: &dyn Fn(&mut Vec<f32>)| {
        let mut blocked = f.f32s("blocked").expect("blocked").to_vec();
        edit(&mut blocked);
        let mut w = FileWriter::new("flat").expect("kind");
        w.add_u64("meta", f.u64s("meta").expect("meta"))
            .and_then(|w| w.add_f32("blocked", &blocked))
            .expect("valid");
        load_flat(&w.to_bytes()).unwrap_err().to_string()
    };
    assert_eq!(
        rewritten(&|b| b[1] = f32::NAN),
        "index file: malformed file: section blocked: vector 1, component 0 is not finite"
    );
    assert_eq!(
        rewritten(&|b| b[3] = 1.0),
        "index file: malformed file: section blocked: padding row 3, component 0 is not zero"
    );
}
