//! Each error variant, with its message; failed adds leave the index as it was.

use analog::{AnalogError, FlatIndex, Metric};

fn index() -> FlatIndex {
    let mut index = FlatIndex::new(3, Metric::L2).expect("dim >= 1");
    index.add(&[1.0, 2.0, 3.0]).expect("valid");
    index
}

#[test]
fn zero_dimension() {
    let err = FlatIndex::new(0, Metric::InnerProduct).unwrap_err();
    assert_eq!(err, AnalogError::ZeroDimension);
    assert_eq!(err.to_string(), "vector dimension must be at least 1");
}

#[test]
fn ragged_add_and_batch() {
    let mut index = index();
    let err = index.add(&[1.0; 4]).unwrap_err();
    assert_eq!(err, AnalogError::Ragged { len: 4, dim: 3 });
    assert_eq!(
        err.to_string(),
        "4 values is not a whole number of 3-dimensional vectors"
    );
    assert_eq!(index.len(), 1);
    let err = index.search_batch(&[1.0; 5], 1).unwrap_err();
    assert_eq!(err, AnalogError::Ragged { len: 5, dim: 3 });
}

#[test]
fn query_dimension() {
    let err = index().search(&[1.0, 2.0], 1).unwrap_err();
    assert_eq!(err, AnalogError::QueryDimension { got: 2, dim: 3 });
    assert_eq!(
        err.to_string(),
        "query has 2 values but the index dimension is 3"
    );
}

#[test]
fn non_finite_add_query_and_batch() {
    let mut index = index();
    let err = index
        .add(&[0.0, 0.0, 0.0, 0.0, f32::INFINITY, 0.0])
        .unwrap_err();
    assert_eq!(
        err,
        AnalogError::NonFinite {
            vector: 1,
            component: 1,
            value: f32::INFINITY
        }
    );
    assert_eq!(err.to_string(), "vector 1, component 1 is not finite (inf)");
    // All-or-nothing: the valid first row was not added either.
    assert_eq!(index.len(), 1);

    let err = index.search(&[0.0, 0.0, f32::NAN], 1).unwrap_err();
    assert!(matches!(
        err,
        AnalogError::NonFinite { vector: 0, component: 2, value } if value.is_nan()
    ));
    assert_eq!(err.to_string(), "vector 0, component 2 is not finite (NaN)");

    let mut queries = vec![0.0f32; 9];
    queries[6] = f32::NEG_INFINITY;
    let err = index.search_batch(&queries, 1).unwrap_err();
    assert_eq!(
        err,
        AnalogError::NonFinite {
            vector: 2,
            component: 0,
            value: f32::NEG_INFINITY
        }
    );
}

#[test]
fn zero_k() {
    let index = index();
    let err = index.search(&[0.0; 3], 0).unwrap_err();
    assert_eq!(err, AnalogError::ZeroK);
    assert_eq!(err.to_string(), "k must be at least 1");
    assert_eq!(
        index.search_batch(&[0.0; 3], 0).unwrap_err(),
        AnalogError::ZeroK
    );
}
