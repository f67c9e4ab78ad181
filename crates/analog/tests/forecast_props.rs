//! Property tests of the forecaster's algorithms against plain oracles.

use analog::forecast::anen::{naive_distance, AnEnIndex, Block};
use analog::forecast::{
    crps_ensemble, ensemble_stats, wind_components, BuildOptions, Dataset, ForecastError,
    ForecastModel, ForecastRequest, Horizon, Similarity, Standardization, StationSeries, Variable,
    NVARS,
};
use proptest::prelude::*;

/// The CRPS as its definition, `∫ (F(x) − 1{x ≥ y})² dx`, integrated exactly: both functions
/// are steps, so the integrand is constant between consecutive members and the observation.
fn crps_integral(members: &[f64], y: f64) -> f64 {
    let mut points: Vec<f64> = members.iter().copied().chain([y]).collect();
    points.sort_by(f64::total_cmp);
    let n = members.len() as f64;
    points
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            // On [a, b), F counts members ≤ a and the step is 1 when a ≥ y.
            let f = members.iter().filter(|m| **m <= a).count() as f64 / n;
            let h = if a >= y { 1.0 } else { 0.0 };
            (f - h) * (f - h) * (b - a)
        })
        .sum()
}

/// The estimator's two expectations summed pair by pair.
fn crps_pairs(members: &[f64], y: f64) -> f64 {
    let n = members.len() as f64;
    let e1 = members.iter().map(|x| (x - y).abs()).sum::<f64>() / n;
    let e2 = members
        .iter()
        .flat_map(|a| members.iter().map(move |b| (a - b).abs()))
        .sum::<f64>()
        / (n * n);
    e1 - 0.5 * e2
}

/// numpy's default percentile (linear, "type 7") written out independently.
fn numpy_quantile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = p * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn members() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec(-50.0f64..50.0, 1..40),
        // Many ties, as with precipitation.
        prop::collection::vec(prop_oneof![Just(0.0), Just(0.254), 0.0f64..5.0], 1..30),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn crps_estimator_matches_the_integral_and_the_pair_sum(m in members(), y in -60.0f64..60.0) {
        let got = crps_ensemble(&m, y).unwrap();
        let scale = 1.0 + m.iter().map(|x| x.abs()).fold(y.abs(), f64::max);
        prop_assert!((got - crps_integral(&m, y)).abs() < 1e-9 * scale, "{got} vs integral");
        prop_assert!((got - crps_pairs(&m, y)).abs() < 1e-9 * scale, "{got} vs pairs");
        prop_assert!(got >= 0.0);
    }

    #[test]
    fn ensemble_statistics_are_ordered_and_match_numpy(m in members()) {
        let s = ensemble_stats(&m).unwrap();
        let (min, max) = m.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
        prop_assert!(min <= s.mean && s.mean <= max);
        prop_assert!(s.p10 <= s.median && s.median <= s.p90);
        prop_assert!(min <= s.p10 && s.p90 <= max);
        prop_assert!(s.spread >= 0.0);
        for (got, p) in [(s.p10, 0.1), (s.median, 0.5), (s.p90, 0.9)] {
            let want = numpy_quantile(&m, p);
            prop_assert!((got - want).abs() < 1e-9 * (1.0 + want.abs()), "q({p}) {got} vs {want}");
        }
        let n = m.len() as f64;
        let mean = m.iter().sum::<f64>() / n;
        prop_assert!((s.mean - mean).abs() < 1e-9 * (1.0 + mean.abs()));
        if m.len() > 1 {
            let var = m.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            prop_assert!((s.spread - var.sqrt()).abs() < 1e-9 * (1.0 + var.sqrt()));
        } else {
            prop_assert_eq!(s.spread, 0.0);
        }
    }

    #[test]
    fn wind_components_point_downwind_with_the_speed(speed in 0.01f64..60.0, dir in 0.0f64..360.0) {
        let (u, v) = wind_components(Some(speed), Some(dir)).unwrap();
        prop_assert!(((u * u + v * v).sqrt() - speed).abs() < 1e-9 * speed.max(1.0));
        // The vector points where the wind goes: opposite to where it comes from.
        let from = (-u).atan2(-v).to_degrees().rem_euclid(360.0);
        let diff = (from - dir).rem_euclid(360.0);
        prop_assert!(diff.min(360.0 - diff) < 1e-6, "from {from} vs {dir}");
        prop_assert_eq!(wind_components(Some(0.0), Some(dir)), Some((0.0, 0.0)));
        prop_assert_eq!(wind_components(Some(speed), None), None);
        prop_assert_eq!(wind_components(None, Some(dir)), None);
    }
}

/// Blocks tiling a vector of `dim` values, with weights.
fn blocks_for(dim: usize) -> impl Strategy<Value = Vec<Block>> {
    prop::collection::vec((1usize..6, 0.0f32..3.0), 1..8).prop_map(move |parts| {
        let mut blocks = Vec::new();
        let mut start = 0;
        for (len, weight) in parts {
            if start >= dim {
                break;
            }
            let len = len.min(dim - start);
            blocks.push(Block { start, len, weight });
            start += len;
        }
        blocks
    })
}

fn anen_case() -> impl Strategy<Value = (usize, Vec<Block>, Vec<f32>, Vec<f32>)> {
    (1usize..30, 0usize..70).prop_flat_map(|(dim, rows)| {
        (
            Just(dim),
            blocks_for(dim),
            prop::collection::vec(-4.0f32..4.0, dim * rows),
            prop::collection::vec(-4.0f32..4.0, dim),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn anen_kernel_matches_the_naive_distance((dim, blocks, rows, query) in anen_case()) {
        let index = AnEnIndex::new(dim, &blocks, &rows).unwrap();
        let simd = index.scores(&query);
        let portable = index.scores_portable(&query);
        prop_assert_eq!(simd.len(), rows.len() / dim);
        for (id, row) in rows.chunks_exact(dim).enumerate() {
            let want = naive_distance(&query, row, &blocks);
            let tol = 1e-4 * (1.0 + want);
            prop_assert!((f64::from(simd[id]) - want).abs() < tol, "simd row {id}: {} vs {want}", simd[id]);
            prop_assert!((f64::from(portable[id]) - want).abs() < tol, "portable row {id}");
        }
    }

    #[test]
    fn anen_search_returns_the_k_nearest_allowed_rows(
        (dim, blocks, rows, query) in anen_case(),
        k in 1usize..12,
        banned in 0usize..5,
    ) {
        let index = AnEnIndex::new(dim, &blocks, &rows).unwrap();
        let hits = index.search(&query, k, |id| id as usize % 5 != banned);
        let scores = index.scores(&query);
        let mut want: Vec<(f32, u32)> = scores
            .iter()
            .enumerate()
            .filter(|(id, _)| id % 5 != banned)
            .map(|(id, s)| (*s, id as u32))
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        want.truncate(k);
        let got: Vec<(f32, u32)> = hits.iter().map(|n| (n.score, n.id)).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn anen_index_refuses_bad_blocks_and_rows() {
    let block = |start, len, weight| Block { start, len, weight };
    assert!(AnEnIndex::new(4, &[block(2, 3, 1.0)], &[0.0; 4]).is_err());
    assert!(AnEnIndex::new(4, &[block(0, 0, 1.0)], &[0.0; 4]).is_err());
    assert!(AnEnIndex::new(4, &[block(0, 4, -1.0)], &[0.0; 4]).is_err());
    assert!(AnEnIndex::new(4, &[block(0, 4, f32::NAN)], &[0.0; 4]).is_err());
    let err = AnEnIndex::new(4, &[block(0, 4, 1.0)], &[0.0; 5]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rows: 5 values is not whole 4-dimensional rows"
    );
    let err = AnEnIndex::new(2, &[block(0, 2, 1.0)], &[0.0, 0.0, 1.0, f32::INFINITY]).unwrap_err();
    assert_eq!(err.to_string(), "rows: row 1, component 1 is not finite");
    let empty = AnEnIndex::new(2, &[block(0, 2, 1.0)], &[]).unwrap();
    assert!(empty.is_empty() && empty.search(&[0.0, 0.0], 3, |_| true).is_empty());
}

#[test]
fn crps_matches_properscoring() {
    let fixture = include_str!("../fixtures/crps_properscoring.jsonl");
    let mut cases = 0;
    for line in fixture.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let members: Vec<f64> = case["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        let y = case["observation"].as_f64().unwrap();
        let want = case["crps"].as_f64().unwrap();
        let got = crps_ensemble(&members, y).unwrap();
        assert!(
            (got - want).abs() < 1e-9 * (1.0 + want),
            "{members:?} y={y}: {got} vs properscoring {want}"
        );
        cases += 1;
    }
    assert_eq!(cases, 45);
}

#[test]
fn empty_or_nan_ensembles_have_no_statistics() {
    assert_eq!(ensemble_stats(&[]), None);
    assert_eq!(ensemble_stats(&[1.0, f64::NAN]), None);
    assert_eq!(crps_ensemble(&[], 1.0), None);
    assert_eq!(crps_ensemble(&[1.0], f64::NAN), None);
}

/// Standardised state at grid hour `i` computed plainly (the documented layout: predictor
/// blocks of `window` values, then hour and season pairs), or `None` for an incomplete window.
fn naive_state(
    series: &StationSeries,
    stdz: &Standardization,
    options: &BuildOptions,
    i: usize,
) -> Option<Vec<f32>> {
    let w = options.window;
    if i + 1 < w {
        return None;
    }
    let mut state = Vec::new();
    for v in 0..NVARS {
        for j in i + 1 - w..=i {
            let x = series.columns[v][j];
            if !x.is_finite() {
                return None;
            }
            state.push(((f64::from(x) - stdz.mean[v]) / stdz.std[v]) as f32);
        }
    }
    let t = series.time(i) as f64;
    let hour = (t / 3600.0).rem_euclid(24.0) / 24.0 * std::f64::consts::TAU;
    let year = (t / 86_400.0 / 365.2425).rem_euclid(1.0) * std::f64::consts::TAU;
    let hw = f64::from(options.hour_weight);
    let sw = f64::from(options.season_weight);
    state.extend([
        (hour.cos() * hw) as f32,
        (hour.sin() * hw) as f32,
        (year.cos() * sw) as f32,
        (year.sin() * sw) as f32,
    ]);
    Some(state)
}

/// A station of `hours` hourly values (a random walk per variable, in plausible units) with
/// missing values where `gaps` says so.
fn station_case() -> impl Strategy<Value = StationSeries> {
    (
        60usize..220,
        any::<u64>(),
        prop::collection::vec(0usize..400, 0..6),
    )
        .prop_map(|(hours, seed, gaps)| {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            };
            let mut columns: [Vec<f32>; NVARS] = std::array::from_fn(|_| Vec::new());
            for (v, column) in columns.iter_mut().enumerate() {
                let mut x = 10.0 * v as f64;
                for _ in 0..hours {
                    x += next() * 3.0;
                    column.push(x as f32);
                }
            }
            for g in gaps {
                let (v, i) = (g % NVARS, g % hours);
                columns[v][i] = f32::NAN;
            }
            StationSeries {
                station: "P".to_owned(),
                // 2013-01-01T00:00:00Z.
                start: 1_356_998_400,
                columns,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The model's flat search over the station's shared state tiles, restricted to the
    /// horizon's analogs and outside the excluded hours, returns the analogs a plain
    /// computation finds: states recomputed from the series, distances in `f64`, sorted.
    #[test]
    fn flat_search_over_shared_tiles_matches_a_naive_computation(
        series in station_case(),
        at_fraction in 0.0f64..1.0,
        k in 1usize..15,
        horizon in prop::sample::select(Horizon::ALL.to_vec()),
        seed_similarity in any::<bool>(),
        window in 1usize..4,
    ) {
        let options = BuildOptions { window, ..BuildOptions::default() };
        let data = Dataset { stations: vec![series.clone()], bad_rows: Vec::new(), rows: 0 };
        let model = ForecastModel::build(&data, &options, &mut |_, _| {}).unwrap();
        let stdz = model.standardization().clone();
        let i = ((series.len() - 1) as f64 * at_fraction) as usize;
        let Some(query) = naive_state(&series, &stdz, &options, i) else {
            return Ok(());
        };
        let dim = query.len();
        let blocks: Vec<Block> = if seed_similarity {
            vec![Block { start: 0, len: dim, weight: 1.0 }]
        } else {
            let w = window;
            let mut b: Vec<Block> = (0..NVARS).map(|v| Block { start: v * w, len: w, weight: 1.0 }).collect();
            b.push(Block { start: NVARS * w, len: 2, weight: 1.0 });
            b.push(Block { start: NVARS * w + 2, len: 2, weight: 1.0 });
            b
        };
        let h = horizon.hours() as usize;
        let guard = window + h;
        let mut want: Vec<(f64, usize)> = (0..series.len())
            .filter(|&j| j + guard <= i || j >= i + guard)
            .filter(|&j| j + h < series.len()
                && Variable::ALL.iter().all(|v| series.value(*v, j + h).is_finite()))
            .filter_map(|j| naive_state(&series, &stdz, &options, j)
                .map(|s| (naive_distance(&query, &s, &blocks), j)))
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        want.truncate(k);
        let request = ForecastRequest {
            station: "P".to_owned(),
            at: Some(series.time(i)),
            horizon,
            vars: vec![Variable::T2m],
            k,
            similarity: if seed_similarity { Similarity::Seed } else { Similarity::AnEn },
        };
        match model.forecast(&request) {
            Ok(f) => {
                prop_assert_eq!(f.analogs.len(), want.len());
                for (got, (distance, j)) in f.analogs.iter().zip(&want) {
                    // Same distance at every rank (f32 vs f64 may swap near-ties, so the
                    // analog itself is checked by its own distance below).
                    prop_assert!((got.distance - distance).abs() < 1e-3 * (1.0 + distance),
                        "rank distance {} vs {distance} (naive hour {j})", got.distance);
                    let t = analog::forecast::parse_time(&got.time).unwrap();
                    let g = series.index_of(t).unwrap();
                    let own = naive_distance(&query, &naive_state(&series, &stdz, &options, g).unwrap(), &blocks);
                    prop_assert!((got.distance - own).abs() < 1e-3 * (1.0 + own));
                    prop_assert!(g + guard <= i || g >= i + guard, "analog hour {g} is excluded");
                }
            }
            Err(ForecastError::NoAnalogs { .. }) => prop_assert!(want.is_empty()),
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
    }
}
