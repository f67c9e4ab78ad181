//! `model::fit_model` end to end on simulated histories.

use std::collections::HashMap;

use lifetime::churn::{RiskLevel, WeberFeatures};
use lifetime::model::{fit_model, ChurnModelKind, FittedModel, ModelSettings, Split};
use lifetime::simulate::{simulate_customers, SimulatedCustomer, SimulationParams};
use lifetime::summary::{CustomerSummary, Purchase};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const START: i32 = 19_000;
const DAYS: u32 = 540;

fn simulate(seed: u64, n: usize, dropout_effect: f64) -> Vec<SimulatedCustomer> {
    let mut params = SimulationParams::default();
    params.weber.dropout_effect = dropout_effect;
    simulate_with(seed, n, params)
}

fn simulate_with(seed: u64, n: usize, params: SimulationParams) -> Vec<SimulatedCustomer> {
    let mut rng = StdRng::seed_from_u64(seed);
    simulate_customers(&mut rng, &params, n, START, DAYS).unwrap_or_default()
}

fn purchases(customers: &[SimulatedCustomer]) -> Vec<Purchase> {
    customers
        .iter()
        .flat_map(SimulatedCustomer::purchases_for_summary)
        .collect()
}

fn weber(customers: &[SimulatedCustomer]) -> HashMap<String, WeberFeatures> {
    let params = weber::WeberParams::default();
    customers
        .iter()
        .filter(|c| !c.reviews.is_empty())
        .filter_map(|c| {
            let p = weber::profile(&c.interactions(), &params).ok()?;
            Some((c.customer_id.clone(), WeberFeatures::from(&p)))
        })
        .collect()
}

fn fit(customers: &[SimulatedCustomer], split: Split) -> FittedModel {
    match fit_model(
        &purchases(customers),
        &weber(customers),
        split,
        &ModelSettings::default(),
    ) {
        Ok(m) => m,
        Err(e) => panic!("fit_model: {e}"),
    }
}

const EXPLICIT: Split = Split::Explicit {
    calibration_end: START + 449,
    observation_end: START + DAYS as i32 - 1,
};

#[test]
fn with_a_strong_weber_effect_the_enhanced_model_beats_timing_only() {
    // Frequent buyers (a purchase every 15 days on average) whose per-purchase dropout is
    // mostly set by the segment (a concentrated Beta(5, 60), effect 10: about 0.07 for
    // Insensitive, 0.55 for Highly_Sensitive): the regime where knowing the segment says the
    // most about who has just left.
    let mut params = SimulationParams::default();
    params.process.r = 4.0;
    params.process.alpha = 60.0;
    params.process.a = 5.0;
    params.process.b = 60.0;
    params.process.acquisition_fraction = 0.8;
    params.weber.dropout_effect = 10.0;
    let customers = simulate_with(3, 6_000, params);
    let model = fit(&customers, EXPLICIT);
    let evaluation = model.evaluation.clone();
    let Some(e) = evaluation else {
        panic!("no evaluation: {}", model.weber_model_status)
    };
    let (Some(timing), Some(enhanced)) = (e.auc_timing, e.auc_weber) else {
        panic!("missing AUCs: {e:?} ({})", model.weber_model_status)
    };
    eprintln!(
        "AUC timing {timing:.4}, weber-enhanced {enhanced:.4} on {} customers ({} churned); MAE {:.4}",
        e.auc_customers, e.auc_churned, e.mae_purchases
    );
    assert!(
        enhanced > timing,
        "timing {timing:.4} vs enhanced {enhanced:.4}"
    );
    assert!(!model.weber_features_importance().is_empty());
}

#[test]
fn the_same_history_gives_the_same_model() {
    let customers = simulate(3, 1_000, 2.0);
    let a = fit(&customers, EXPLICIT);
    let b = fit(&customers, EXPLICIT);
    assert_eq!(a, b);
    let json = serde_json::to_string(&a).unwrap_or_default();
    let back: Result<FittedModel, _> = serde_json::from_str(&json);
    assert!(back.is_ok_and(|m| m.bgnbd == a.bgnbd && m.logistic == a.logistic));
}

#[test]
fn evaluation_tracks_the_holdout() {
    let customers = simulate(5, 1_500, 2.0);
    let model = fit(&customers, EXPLICIT);
    let Some(e) = model.evaluation else {
        panic!("no evaluation")
    };
    assert_eq!(e.customers, model.summaries.len());
    assert!(e.mae_purchases.is_finite() && e.mae_purchases >= 0.0);
    let last = e.weekly_tracking.last().map(|w| w.actual_cumulative);
    assert_eq!(last, Some(e.actual_total));
    assert!(e
        .weekly_tracking
        .windows(2)
        .all(|w| w[0].actual_cumulative <= w[1].actual_cumulative
            && w[0].predicted_cumulative <= w[1].predicted_cumulative + 1e-9));
    // Predicted and actual totals are of the same order on data from the model's own process.
    assert!(e.predicted_total > 0.5 * e.actual_total && e.predicted_total < 2.0 * e.actual_total);
}

#[test]
fn without_weber_profiles_the_model_is_timing_only_and_says_so() {
    let customers = simulate(8, 800, 2.0);
    let model = match fit_model(
        &purchases(&customers),
        &HashMap::new(),
        EXPLICIT,
        &ModelSettings::default(),
    ) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    assert!(model.logistic.is_none());
    assert!(
        model.weber_model_status.starts_with("timing only"),
        "{}",
        model.weber_model_status
    );
    let prediction = model.predict(&model.summaries[0], None);
    assert_eq!(prediction.model, ChurnModelKind::Timing);
    let total: f64 = prediction.risk_factors.iter().map(|f| f.contribution).sum();
    assert!((total - prediction.churn_risk).abs() < 1e-9);
    assert!(model.weber_features_importance().is_empty());
}

#[test]
fn serving_split_predicts_as_of_the_observation_end() {
    let customers = simulate(13, 1_500, 4.0);
    let end = START + DAYS as i32 - 1;
    let model = fit(
        &customers,
        Split::Serving {
            observation_end: end,
        },
    );
    assert_eq!(model.as_of_day, end);
    assert!(model.evaluation.is_some());
    let w = weber(&customers);
    for (id, p) in model.predict_all(&w) {
        assert_eq!(
            p.model == ChurnModelKind::WeberEnhanced,
            model.logistic.is_some() && w.contains_key(&id)
        );
        assert_eq!(p.risk_level, RiskLevel::of(p.churn_risk));
    }
}

fn any_summary() -> impl Strategy<Value = CustomerSummary> {
    let num = prop_oneof![prop::num::f64::ANY, 0.0..1_000.0f64, Just(0.0),];
    (num.clone(), num.clone(), num.clone(), num).prop_map(
        |(frequency, recency, t, monetary_value)| CustomerSummary {
            customer_id: "x".into(),
            frequency,
            recency,
            t,
            monetary_value,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn predictions_are_finite_for_any_summary(s in any_summary(), c in 0.0..3.0f64, with_weber: bool) {
        static MODEL: std::sync::OnceLock<FittedModel> = std::sync::OnceLock::new();
        let model = MODEL.get_or_init(|| fit(&simulate(21, 1_200, 4.0), EXPLICIT));
        let w = WeberFeatures {
            weber_constant: c,
            bias_ratio: Some(c),
            segment: weber::SensitivitySegment::from_constant(c),
            confidence: 0.5,
        };
        let p = model.predict(&s, with_weber.then_some(&w));
        let numbers = [p.expected_purchases, p.p_alive, p.expected_average_value, p.clv,
            p.clv_interval[0], p.clv_interval[1], p.churn_risk_timing, p.churn_risk];
        prop_assert!(numbers.iter().all(|v| v.is_finite()), "{:?}", p);
        prop_assert!((0.0..=1.0).contains(&p.churn_risk) && (0.0..=1.0).contains(&p.p_alive));
        prop_assert!(p.clv_interval[0] <= p.clv && p.clv <= p.clv_interval[1]);
        prop_assert_eq!(p.risk_level, RiskLevel::of(p.churn_risk));
        prop_assert!(p.risk_factors.iter().all(|f| f.value.is_finite() && f.contribution.is_finite()));
    }
}

#[test]
fn bad_splits_and_settings_are_errors_naming_the_field() {
    let customers = simulate(2, 300, 2.0);
    let p = purchases(&customers);
    let none = HashMap::new();
    let backwards = Split::Explicit {
        calibration_end: START + 100,
        observation_end: START + 99,
    };
    assert!(matches!(
        fit_model(&p, &none, backwards, &ModelSettings::default()),
        Err(lifetime::LifetimeError::CalibrationAfterObservation { .. })
    ));
    let settings = ModelSettings {
        churn_horizon_days: 0,
        ..ModelSettings::default()
    };
    assert!(matches!(
        fit_model(&p, &none, EXPLICIT, &settings),
        Err(lifetime::LifetimeError::Invalid { field, .. }) if field == "churn_horizon_days"
    ));
    let settings = ModelSettings {
        monthly_discount_rate: f64::NAN,
        ..ModelSettings::default()
    };
    assert!(matches!(
        fit_model(&p, &none, EXPLICIT, &settings),
        Err(lifetime::LifetimeError::Invalid { field, .. }) if field == "monthly_discount_rate"
    ));
    // No holdout: a model without evaluation, timing only.
    let end = START + DAYS as i32 - 1;
    let no_holdout = Split::Explicit {
        calibration_end: end,
        observation_end: end,
    };
    match fit_model(
        &p,
        &weber(&customers),
        no_holdout,
        &ModelSettings::default(),
    ) {
        Ok(m) => {
            assert!(m.evaluation.is_none() && m.logistic.is_none());
            assert!(
                m.weber_model_status.contains("no holdout"),
                "{}",
                m.weber_model_status
            );
        }
        Err(e) => panic!("{e}"),
    }
    // An empty history is a fit error, not a panic.
    assert!(fit_model(&[], &none, EXPLICIT, &ModelSettings::default()).is_err());
    // A short history in serving mode: timing only, and it says why.
    let short: Vec<Purchase> = p.iter().filter(|x| x.day < START + 60).cloned().collect();
    if let Ok(m) = fit_model(
        &short,
        &none,
        Split::Serving {
            observation_end: START + 60,
        },
        &ModelSettings::default(),
    ) {
        assert!(
            m.weber_model_status.starts_with("timing only"),
            "{}",
            m.weber_model_status
        );
        assert!(m.evaluation.is_none());
    }
}
