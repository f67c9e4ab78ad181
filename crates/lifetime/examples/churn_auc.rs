//! Holdout accuracy and churn AUCs (timing-only vs Weber-enhanced) on a simulated history.
//!
//! ```text
//! cargo run --release -p lifetime --example churn_auc -- [CUSTOMERS] [SEED] [DROPOUT_EFFECT] [R] [ALPHA] [A] [B] [ACQUISITION_FRACTION]
//! ```
//!
//! Simulates `CUSTOMERS` (default 5000) customers over 540 days with
//! [`SimulationParams::default`] except the parameters given, profiles their reviews with
//! the Weber engine's default parameters, fits with a 90-day holdout (`Split::Explicit`,
//! calibration end = day 450) and prints the evaluation.

use std::collections::HashMap;

use lifetime::churn::WeberFeatures;
use lifetime::model::{fit_model, ModelSettings, Split};
use lifetime::simulate::{simulate_customers, SimulatedCustomer, SimulationParams};
use rand::rngs::StdRng;
use rand::SeedableRng;

const START: i32 = 19_000;
const DAYS: u32 = 540;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: f64| -> f64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let n = arg(0, 5000.0) as usize;
    let seed = arg(1, 1.0) as u64;
    let mut params = SimulationParams::default();
    params.weber.dropout_effect = arg(2, params.weber.dropout_effect);
    params.process.r = arg(3, params.process.r);
    params.process.alpha = arg(4, params.process.alpha);
    params.process.a = arg(5, params.process.a);
    params.process.b = arg(6, params.process.b);
    params.process.acquisition_fraction = arg(7, params.process.acquisition_fraction);

    let mut rng = StdRng::seed_from_u64(seed);
    let customers = match simulate_customers(&mut rng, &params, n, START, DAYS) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let purchases: Vec<_> = customers
        .iter()
        .flat_map(SimulatedCustomer::purchases_for_summary)
        .collect();
    let weber_params = weber::WeberParams::default();
    let weber: HashMap<String, WeberFeatures> = customers
        .iter()
        .filter(|c| !c.reviews.is_empty())
        .filter_map(|c| {
            let p = weber::profile(&c.interactions(), &weber_params).ok()?;
            Some((c.customer_id.clone(), WeberFeatures::from(&p)))
        })
        .collect();
    let split = Split::Explicit {
        calibration_end: START + 449,
        observation_end: START + DAYS as i32 - 1,
    };
    let model = match fit_model(&purchases, &weber, split, &ModelSettings::default()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!(
        "customers {n}, seed {seed}, dropout_effect {}, purchases {}",
        params.weber.dropout_effect,
        purchases.len()
    );
    let b = &model.bgnbd.params;
    println!(
        "bgnbd r {:.4} alpha {:.4} a {:.4} b {:.4}",
        b.r, b.alpha, b.a, b.b
    );
    println!("{}", model.weber_model_status);
    if let Some(e) = &model.evaluation {
        println!(
            "holdout: {} customers, MAE {:.4}, actual {} predicted {:.1}",
            e.customers, e.mae_purchases, e.actual_total, e.predicted_total
        );
        let show = |a: Option<f64>| a.map_or("n/a".to_owned(), |v| format!("{v:.4}"));
        println!(
            "churn AUC ({}-day window) on {} held-out customers ({} churned): timing {}, weber-enhanced {}",
            e.churn_window_days,
            e.auc_customers,
            e.auc_churned,
            show(e.auc_timing),
            show(e.auc_weber)
        );
    }
    for (name, share) in model.weber_features_importance() {
        println!("  importance {name}: {share:.3}");
    }
}
