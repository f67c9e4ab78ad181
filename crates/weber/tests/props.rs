//! Property and edge-case tests.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weber::{
    constant_and_confidence, percentile_linear, profile, ratios, Engine, Interaction, ProfileState,
    SensitivitySegment, Update, WeberError, WeberParams,
};

fn params_strategy() -> impl Strategy<Value = WeberParams> {
    (
        prop_oneof![Just(100usize), 1usize..=12, Just(101usize), Just(150usize)],
        prop_oneof![Just(0.1f64), Just(0.05f64), Just(1.0f64)],
    )
        .prop_map(|(w, eps)| WeberParams::new(w, eps).expect("valid params"))
}

/// Events on the 1e-4 grid with a small key space, so repeated keys
/// (duplicates with possibly different sentiments) and late events are
/// common. The vector order is the arrival order.
fn events_strategy(max_len: usize) -> impl Strategy<Value = Vec<Interaction>> {
    prop::collection::vec((-10_000i32..=10_000, 0i64..40, 0u64..3), 0..max_len).prop_map(|v| {
        v.into_iter()
            .map(|(q, t, tb)| Interaction::new(f64::from(q) / 10_000.0, t, tb))
            .collect()
    })
}

fn by_key_first(events: &[Interaction]) -> Vec<Interaction> {
    let mut m = BTreeMap::new();
    for e in events {
        m.entry(e.key()).or_insert(*e);
    }
    m.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Batch profile == streaming replay for any arrival order, duplicates
    /// included. The driver keeps a de-duplicated store (first arrival wins)
    /// and rebuilds on NeedsRebuild, like a worker would.
    #[test]
    fn batch_equals_streaming_replay(events in events_strategy(260), params in params_strategy()) {
        let mut store: BTreeMap<(i64, u64), Interaction> = BTreeMap::new();
        let mut state = ProfileState::new();
        let mut arrived: Vec<Interaction> = Vec::new();
        for e in &events {
            arrived.push(*e);
            match state.apply(e, &params).expect("valid sentiment") {
                Update::Updated(p) => {
                    prop_assert!(!store.contains_key(&e.key()));
                    store.insert(e.key(), *e);
                    let hist: Vec<Interaction> = store.values().copied().collect();
                    prop_assert_eq!(&p, &profile(&hist, &params).expect("valid"));
                    prop_assert_eq!(&p, &profile(&arrived, &params).expect("valid"));
                }
                Update::Duplicate => {
                    prop_assert_eq!(state.newest_key(), Some(e.key()));
                }
                Update::NeedsRebuild => {
                    prop_assert!(state.newest_key().is_some_and(|k| e.key() < k));
                    store.entry(e.key()).or_insert(*e);
                    let hist: Vec<Interaction> = store.values().copied().collect();
                    state = ProfileState::rebuild(&hist, &params).expect("valid");
                }
            }
            prop_assert_eq!(state.events_seen(), store.len() as u64);
        }
        let batch = profile(&events, &params).expect("valid");
        prop_assert_eq!(Some(batch.clone()), state.profile(&params));
        // The store's view and the raw arrival order agree in batch too.
        prop_assert_eq!(batch, profile(&by_key_first(&events), &params).expect("valid"));
    }

    /// The audit's newest calculation is the last of the window's ratios, bit for bit, and its
    /// baseline is the mean of the window's earlier sentiments.
    #[test]
    fn newest_calculation_is_the_windows_last_ratio(events in events_strategy(260), params in params_strategy()) {
        let hist = by_key_first(&events);
        let state = ProfileState::rebuild(&hist, &params).expect("valid");
        let mut sorted = hist.clone();
        sorted.sort_by_key(Interaction::key);
        let start = sorted.len().saturating_sub(params.window());
        let window: Vec<f64> = sorted[start..].iter().map(|e| e.sentiment).collect();
        match state.newest_calculation(&params) {
            None => prop_assert!(window.is_empty()),
            Some(c) => {
                let r = ratios(&window, params.eps()).expect("valid");
                prop_assert_eq!(c.ratio, *r.last().expect("non-empty"));
                let q: Vec<f64> = window.iter().map(|s| (s * 10_000.0).round() / 10_000.0).collect();
                prop_assert_eq!(c.sentiment, *q.last().expect("non-empty"));
                let before = &q[..q.len() - 1];
                let mean = if before.is_empty() { c.sentiment } else { before.iter().sum::<f64>() / before.len() as f64 };
                prop_assert!((c.baseline - mean).abs() <= 1e-12, "{} vs {}", c.baseline, mean);
            }
        }
    }

    /// Ratios are finite and non-negative; ratio_0 is 0.
    #[test]
    fn ratios_non_negative(qs in prop::collection::vec(-10_000i32..=10_000, 0..300), eps in prop_oneof![Just(0.1f64), 1e-9f64..1e9]) {
        let s: Vec<f64> = qs.iter().map(|&q| f64::from(q) / 10_000.0).collect();
        let r = ratios(&s, eps).expect("valid");
        prop_assert_eq!(r.len(), s.len());
        prop_assert!(r.iter().all(|x| x.is_finite() && *x >= 0.0));
        if let Some(first) = r.first() {
            prop_assert_eq!(*first, 0.0);
        }
    }

    /// Constant, confidence and bias are finite; confidence in [0, 1];
    /// segment agrees with the constant; window_len = min(distinct, W).
    #[test]
    fn outputs_in_range(events in events_strategy(300), params in params_strategy()) {
        let p = profile(&events, &params).expect("valid");
        prop_assert!(p.weber_constant.is_finite() && p.weber_constant >= 0.0);
        prop_assert!((0.0..=1.0).contains(&p.calculation_confidence));
        prop_assert!(p.bias_ratio.is_none_or(|b| b.is_finite() && b > 0.0));
        prop_assert_eq!(p.sensitivity_segment, SensitivitySegment::from_constant(p.weber_constant));
        prop_assert_eq!(p.window_len, by_key_first(&events).len().min(params.window()));
    }

    /// constant_and_confidence accepts any finite non-negative ratios,
    /// including extreme magnitudes, and stays in range.
    #[test]
    fn constant_on_extreme_ratios(r in prop::collection::vec(prop_oneof![0.0f64..1e3, Just(0.0), Just(f64::MAX / 1e4), Just(f64::MIN_POSITIVE), 0.0f64..1e150], 0..250)) {
        let est = constant_and_confidence(&r, 0.1).expect("valid ratios");
        prop_assert!(!est.weber_constant.is_nan());
        prop_assert!((0.0..=1.0).contains(&est.calculation_confidence));
    }

    /// No panics on arbitrary f64 sentiments and keys, batch and streaming;
    /// invalid sentiments are errors and leave the state untouched.
    #[test]
    fn no_panics_on_extreme_inputs(
        raw in prop::collection::vec((any::<f64>(), any::<i64>(), any::<u64>()), 0..150),
        params in params_strategy(),
    ) {
        let events: Vec<Interaction> = raw.iter().map(|&(s, t, b)| Interaction::new(s, t, b)).collect();
        let any_invalid = events.iter().any(|e| !(-1.0..=1.0).contains(&e.sentiment));
        let res = profile(&events, &params);
        prop_assert_eq!(res.is_err(), any_invalid);
        if let Err(e) = res {
            let is_invalid_sentiment = matches!(e, WeberError::InvalidSentiment { .. });
            prop_assert!(is_invalid_sentiment);
        }
        let mut state = ProfileState::new();
        for e in &events {
            let before = state.clone();
            match state.apply(e, &params) {
                Err(_) => prop_assert_eq!(&state, &before),
                Ok(Update::NeedsRebuild) | Ok(Update::Duplicate) => prop_assert_eq!(&state, &before),
                Ok(Update::Updated(p)) => prop_assert!((0.0..=1.0).contains(&p.calculation_confidence)),
            }
        }
        let _ = ProfileState::rebuild(&events, &params);
        let _ = weber::bias_ratio(&raw.iter().map(|x| x.0).collect::<Vec<_>>(), 0.1);
    }

    /// percentile_linear equals a straightforward sort-based numpy "linear".
    #[test]
    fn percentile_matches_sorted_reference(v in prop::collection::vec(-1e6f64..1e6, 1..300), pct in 0.0f64..=100.0) {
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        let vi = (s.len() - 1) as f64 * (pct / 100.0);
        let expected = if vi >= (s.len() - 1) as f64 {
            s[s.len() - 1]
        } else {
            let lo = vi.floor() as usize;
            let g = vi - lo as f64;
            let (a, b) = (s[lo], s[lo + 1]);
            if g >= 0.5 { b - (b - a) * (1.0 - g) } else { a + (b - a) * g }
        };
        prop_assert_eq!(percentile_linear(&v, pct), Some(expected));
    }
}

fn prev_f64(x: f64) -> f64 {
    f64::from_bits(x.to_bits() - 1)
}

#[test]
fn segment_boundaries_are_exact() {
    use SensitivitySegment::*;
    assert_eq!(SensitivitySegment::from_constant(0.8), HighlySensitive);
    assert_eq!(
        SensitivitySegment::from_constant(prev_f64(0.8)),
        ModeratelySensitive
    );
    assert_eq!(SensitivitySegment::from_constant(0.4), ModeratelySensitive);
    assert_eq!(
        SensitivitySegment::from_constant(prev_f64(0.4)),
        LowSensitive
    );
    assert_eq!(SensitivitySegment::from_constant(0.2), LowSensitive);
    assert_eq!(
        SensitivitySegment::from_constant(prev_f64(0.2)),
        Insensitive
    );
    assert_eq!(SensitivitySegment::from_constant(0.0), Insensitive);
    assert_eq!(SensitivitySegment::from_constant(f64::NAN), Insensitive);
    assert_eq!(
        SensitivitySegment::from_constant(f64::INFINITY),
        HighlySensitive
    );
    for (seg, s) in [
        (HighlySensitive, "Highly_Sensitive"),
        (ModeratelySensitive, "Moderately_Sensitive"),
        (LowSensitive, "Low_Sensitive"),
        (Insensitive, "Insensitive"),
    ] {
        assert_eq!(seg.as_str(), s);
        assert_eq!(
            serde_json::to_string(&seg).expect("ser"),
            format!("\"{s}\"")
        );
        assert_eq!(
            serde_json::from_str::<SensitivitySegment>(&format!("\"{s}\"")).expect("de"),
            seg
        );
    }
}

#[test]
fn small_windows_give_zero_constant_and_spec_examples() {
    let p = WeberParams::default();
    let e = |s: f64, t: i64| Interaction::new(s, t, 0);
    for n in 0..3 {
        let ev: Vec<_> = (0..n).map(|i| e(0.5 - i as f64, i)).collect();
        let pr = profile(&ev, &p).expect("valid");
        assert_eq!(pr.weber_constant, 0.0);
        assert_eq!(pr.calculation_confidence, 0.0);
        assert_eq!(pr.window_len, n as usize);
    }
    assert_eq!(profile(&[], &p).expect("valid").newest_time_ms, None);
    // Constant sequence: all ratios exactly 0, confidence 1, no bias sides.
    let ev: Vec<_> = (0..50).map(|i| e(0.3, i)).collect();
    let pr = profile(&ev, &p).expect("valid");
    assert_eq!(pr.weber_constant, 0.0);
    assert_eq!(pr.calculation_confidence, 1.0);
    assert_eq!(pr.bias_ratio, None);
    assert_eq!(pr.newest_time_ms, Some(49));
    // Hand-computed: s = [0, 1, 0]: baselines [0, 0, 0.5],
    // ratios [0, 1/0.1 = 10, 0.5/0.6]; p99 over n = 3 excludes the 10.
    let r = ratios(&[0.0, 1.0, 0.0], 0.1).expect("valid");
    assert_eq!(r, vec![0.0, 10.0, 0.5 / 0.6]);
    let est = constant_and_confidence(&r, 0.1).expect("valid");
    let kept_mean = (0.0 + 0.5 / 0.6) / 2.0;
    assert!((est.weber_constant - kept_mean).abs() < 1e-12);
    // bias = mean(drops) / mean(rises) = (0.5/0.6) / 10.
    let b = weber::bias_ratio(&[0.0, 1.0, 0.0], 0.1)
        .expect("valid")
        .expect("both sides");
    assert!((b - (0.5 / 0.6) / 10.0).abs() < 1e-12);
}

#[test]
fn invalid_inputs_are_rejected() {
    let p = WeberParams::default();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0001, -1.5] {
        let ev = [Interaction::new(0.1, 0, 0), Interaction::new(bad, 1, 0)];
        assert!(matches!(
            profile(&ev, &p),
            Err(WeberError::InvalidSentiment { index: 1, .. })
        ));
        assert!(weber::quantize(bad).is_err());
    }
    assert_eq!(weber::quantize(-1.0), Ok(-10_000));
    assert_eq!(weber::quantize(0.12345), Ok(1235));
    assert!(WeberParams::new(0, 0.1).is_err());
    assert!(WeberParams::new(weber::MAX_WINDOW + 1, 0.1).is_err());
    for eps in [0.0, -0.1, f64::NAN, f64::INFINITY, 1e-12, 1e12] {
        assert!(WeberParams::new(100, eps).is_err(), "eps {eps}");
        assert!(ratios(&[0.1], eps).is_err());
    }
    assert!(constant_and_confidence(&[0.1, f64::NAN, 0.2], 0.1).is_err());
    assert!(constant_and_confidence(&[0.1, -0.1, 0.2], 0.1).is_err());
    assert!(serde_json::from_str::<WeberParams>(r#"{"window":0,"eps":0.1}"#).is_err());
    assert_eq!(
        serde_json::from_str::<WeberParams>(r#"{"window":100,"eps":0.1}"#).expect("valid"),
        p
    );
    assert_eq!(percentile_linear(&[], 50.0), None);
    assert_eq!(percentile_linear(&[1.0, f64::NAN], 50.0), None);
    assert_eq!(percentile_linear(&[1.0], 101.0), None);
    let mut eng = Engine::new(p);
    assert!(eng.profile_quantized(&[0, 10_001], None).is_err());
}

#[test]
fn streaming_contract_and_memory_bound() {
    let params = WeberParams::default();
    let mut st = ProfileState::new();
    assert!(st.is_empty());
    let ev = |i: i64| Interaction::new(((i * 37) % 200 - 100) as f64 / 100.0, i * 10, 0);
    for i in 0..1000 {
        assert!(matches!(st.apply(&ev(i), &params), Ok(Update::Updated(_))));
    }
    assert_eq!(st.len(), 100);
    assert_eq!(st.events_seen(), 1000);
    assert_eq!(st.apply(&ev(999), &params), Ok(Update::Duplicate));
    assert_eq!(st.apply(&ev(5), &params), Ok(Update::NeedsRebuild));
    assert_eq!(
        st.apply(&Interaction::new(0.0, 9989, 7), &params),
        Ok(Update::NeedsRebuild)
    );
    // Memory: <= 512 bytes per user at W = 100 (measured: 248).
    let bytes = st.footprint_bytes();
    eprintln!(
        "ProfileState footprint at W=100: {} (size_of) + {} (heap) = {bytes} bytes",
        std::mem::size_of::<ProfileState>(),
        st.heap_bytes()
    );
    assert!(bytes <= 512, "footprint {bytes}");
    assert_eq!(bytes, 248);
    let hist: Vec<_> = (0..1000).map(ev).collect();
    let rebuilt = ProfileState::rebuild(&hist, &params).expect("valid");
    assert_eq!(rebuilt.profile(&params), st.profile(&params));
    assert!(rebuilt.footprint_bytes() <= 512);
    // A larger window than retained needs a rebuild; a smaller one works.
    let big = WeberParams::new(200, 0.1).expect("valid");
    assert_eq!(st.profile(&big), None);
    assert_eq!(st.apply(&ev(1000), &big), Ok(Update::NeedsRebuild));
    let small = WeberParams::new(10, 0.1).expect("valid");
    let Ok(Update::Updated(p)) = st.apply(&ev(1000), &small) else {
        panic!("expected Updated");
    };
    let hist: Vec<_> = (0..=1000).map(ev).collect();
    assert_eq!(p, profile(&hist, &small).expect("valid"));
    // apply_with gives the same result as apply.
    let mut a = ProfileState::new();
    let mut b = ProfileState::new();
    let mut eng = Engine::new(params);
    for i in 0..150 {
        assert_eq!(a.apply(&ev(i), &params), b.apply_with(&ev(i), &mut eng));
    }
}

#[test]
fn batch_helpers_agree() {
    let params = WeberParams::default();
    let users: Vec<Vec<Interaction>> = (0..20)
        .map(|u| {
            (0..(u * 13 % 170))
                .map(|i| Interaction::new(((i * u) % 21 - 10) as f64 / 10.0, i as i64, 0))
                .collect()
        })
        .collect();
    let out = weber::profiles_batch(users.iter().map(Vec::as_slice), &params);
    let mut eng = Engine::new(params);
    for (u, r) in users.iter().zip(out) {
        let single = profile(u, &params).expect("valid");
        assert_eq!(r.expect("valid"), single);
        let q: Vec<i16> = u
            .iter()
            .map(|e| weber::quantize(e.sentiment).expect("valid"))
            .collect();
        let fast = eng
            .profile_quantized(&q, u.last().map(|e| e.time_ms))
            .expect("valid");
        assert_eq!(fast, single);
    }
}
