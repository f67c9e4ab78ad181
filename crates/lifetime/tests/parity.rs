//! Parity with the Python `lifetimes` package (acceptance 1): fixtures written by
//! `crates/lifetime/oracle/lifetimes_parity.py` (see the README beside the fixtures).
//!
//! Our summaries must equal lifetimes', our fitted parameters agree within 1e-3 relative, and
//! the per-customer values computed at lifetimes' parameters within 1e-6 (relative, or absolute
//! for values below 1).

use std::collections::HashMap;
use std::path::PathBuf;

use lifetime::special::{digamma, hyp2f1, ln_gamma};
use lifetime::{
    calibration_and_holdout, clv::customer_lifetime_value, fit_bgnbd, fit_gamma_gamma, parse_day,
    summarize, BgNbdParams, CustomerSummary, FitOptions, GammaGammaParams, Period, Purchase,
};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A header-indexed CSV without quoting (the fixtures have none).
struct Csv {
    header: HashMap<String, usize>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn load(name: &str) -> Csv {
        let text = fixture(name);
        let mut lines = text.lines();
        let header = lines
            .next()
            .expect("header")
            .split(',')
            .enumerate()
            .map(|(i, h)| (h.to_string(), i))
            .collect();
        let rows = lines
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        Csv { header, rows }
    }
    fn col(&self, name: &str) -> usize {
        *self
            .header
            .get(name)
            .unwrap_or_else(|| panic!("column {name}"))
    }
    fn f(&self, row: &[String], name: &str) -> f64 {
        row[self.col(name)]
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn close(ours: f64, theirs: f64, tol: f64) -> bool {
    let scale = theirs.abs().max(1.0);
    (ours - theirs).abs() <= tol * scale
}

fn rel(ours: f64, theirs: f64) -> f64 {
    (ours - theirs).abs() / theirs.abs().max(1e-300)
}

struct DataSet {
    expected: serde_json::Value,
    period: Period,
    purchases: Vec<Purchase>,
}

fn load(name: &str) -> DataSet {
    let expected: serde_json::Value =
        serde_json::from_str(&fixture(&format!("{name}_expected.json"))).unwrap();
    let period = match expected["period"].as_str() {
        Some("week") => Period::Week,
        _ => Period::Day,
    };
    let tx = Csv::load(&format!("{name}_transactions.csv"));
    let purchases = tx
        .rows
        .iter()
        .map(|r| Purchase {
            customer_id: r[tx.col("customer_id")].clone(),
            day: parse_day(&r[tx.col("date")]).unwrap(),
            amount: tx.f(r, "amount"),
        })
        .collect();
    DataSet {
        expected,
        period,
        purchases,
    }
}

fn day(v: &serde_json::Value) -> i32 {
    parse_day(v.as_str().unwrap()).unwrap()
}

fn check_summaries(name: &str) -> Vec<CustomerSummary> {
    let d = load(name);
    let ours = summarize(&d.purchases, day(&d.expected["observation_end"]), d.period).unwrap();
    let theirs = Csv::load(&format!("{name}_summary.csv"));
    assert_eq!(ours.len(), theirs.rows.len(), "{name}: number of customers");
    for (s, row) in ours.iter().zip(&theirs.rows) {
        assert_eq!(s.customer_id, row[0], "{name}: order of customers");
        assert_eq!(
            s.frequency,
            theirs.f(row, "frequency"),
            "{name} {}: frequency",
            s.customer_id
        );
        assert_eq!(
            s.recency,
            theirs.f(row, "recency"),
            "{name} {}: recency",
            s.customer_id
        );
        assert_eq!(s.t, theirs.f(row, "T"), "{name} {}: T", s.customer_id);
        assert!(
            close(s.monetary_value, theirs.f(row, "monetary_value"), 1e-9),
            "{name} {}: monetary",
            s.customer_id
        );
    }
    let ch = calibration_and_holdout(
        &d.purchases,
        day(&d.expected["calibration_end"]),
        day(&d.expected["observation_end"]),
        d.period,
    )
    .unwrap();
    let theirs = Csv::load(&format!("{name}_cal_holdout.csv"));
    assert_eq!(ch.len(), theirs.rows.len(), "{name}: calibration customers");
    for (c, row) in ch.iter().zip(&theirs.rows) {
        assert_eq!(c.calibration.customer_id, row[0]);
        let pairs = [
            (c.calibration.frequency, "frequency_cal"),
            (c.calibration.recency, "recency_cal"),
            (c.calibration.t, "T_cal"),
            (c.calibration.monetary_value, "monetary_value_cal"),
            (c.frequency_holdout, "frequency_holdout"),
            (c.monetary_value_holdout, "monetary_value_holdout"),
            (c.duration_holdout, "duration_holdout"),
        ];
        for (ours, col) in pairs {
            assert!(
                close(ours, theirs.f(row, col), 1e-9),
                "{name} {}: {col} {ours}",
                row[0]
            );
        }
    }
    ours
}

fn check_fits(name: &str, summaries: &[CustomerSummary]) {
    let d = load(name);
    let b = &d.expected["bgnbd"];
    let g = &d.expected["gamma_gamma"];
    let fit = fit_bgnbd(summaries, &FitOptions::default()).unwrap();
    let theirs = [
        b["r"].as_f64().unwrap(),
        b["alpha"].as_f64().unwrap(),
        b["a"].as_f64().unwrap(),
        b["b"].as_f64().unwrap(),
    ];
    let ours = [fit.params.r, fit.params.alpha, fit.params.a, fit.params.b];
    let max_rel = ours
        .iter()
        .zip(&theirs)
        .map(|(o, t)| rel(*o, *t))
        .fold(0.0, f64::max);
    let ll_theirs = b["log_likelihood"].as_f64().unwrap();
    println!(
        "{name} BG/NBD: ours {ours:?} ll {:.6}; lifetimes {theirs:?} ll {ll_theirs:.6}; max relative difference {max_rel:.3e}",
        fit.log_likelihood
    );
    assert!(
        max_rel < 1e-3,
        "{name}: BG/NBD parameters differ by {max_rel:e}"
    );
    // Ours is a maximum: never below lifetimes' log-likelihood beyond rounding.
    assert!(
        fit.log_likelihood >= ll_theirs - 1e-6 * ll_theirs.abs(),
        "{name}: log-likelihood"
    );

    let gg = fit_gamma_gamma(summaries, &FitOptions::default()).unwrap();
    let theirs = [
        g["p"].as_f64().unwrap(),
        g["q"].as_f64().unwrap(),
        g["v"].as_f64().unwrap(),
    ];
    let ours = [gg.params.p, gg.params.q, gg.params.v];
    let max_rel = ours
        .iter()
        .zip(&theirs)
        .map(|(o, t)| rel(*o, *t))
        .fold(0.0, f64::max);
    let ll_theirs = g["log_likelihood"].as_f64().unwrap();
    println!(
        "{name} Gamma-Gamma: ours {ours:?} ll {:.6}; lifetimes {theirs:?} ll {ll_theirs:.6}; max relative difference {max_rel:.3e}",
        gg.log_likelihood
    );
    assert_eq!(gg.customers as u64, g["customers"].as_u64().unwrap());
    assert!(
        max_rel < 1e-3,
        "{name}: Gamma-Gamma parameters differ by {max_rel:e}"
    );
    assert!(
        gg.log_likelihood >= ll_theirs - 1e-6 * ll_theirs.abs(),
        "{name}: GG log-likelihood"
    );
}

fn check_predictions(name: &str, summaries: &[CustomerSummary]) {
    let d = load(name);
    let b = &d.expected["bgnbd"];
    let g = &d.expected["gamma_gamma"];
    let bp = BgNbdParams {
        r: b["r"].as_f64().unwrap(),
        alpha: b["alpha"].as_f64().unwrap(),
        a: b["a"].as_f64().unwrap(),
        b: b["b"].as_f64().unwrap(),
    };
    let gp = GammaGammaParams {
        p: g["p"].as_f64().unwrap(),
        q: g["q"].as_f64().unwrap(),
        v: g["v"].as_f64().unwrap(),
    };
    let months = d.expected["clv_months"].as_u64().unwrap() as u32;
    let rate = d.expected["monthly_discount_rate"].as_f64().unwrap();
    let horizons: Vec<f64> = d.expected["horizons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_f64().unwrap())
        .collect();
    let theirs = Csv::load(&format!("{name}_predictions.csv"));
    assert_eq!(theirs.rows.len(), summaries.len());
    let mut worst = 0.0f64;
    for (s, row) in summaries.iter().zip(&theirs.rows) {
        assert_eq!(s.customer_id, row[0]);
        let mut pairs: Vec<(String, f64, f64)> = horizons
            .iter()
            .map(|h| {
                (
                    format!("expected_{h}"),
                    bp.expected_purchases(*h, s),
                    theirs.f(row, &format!("expected_{h}")),
                )
            })
            .collect();
        pairs.push(("p_alive".into(), bp.p_alive(s), theirs.f(row, "p_alive")));
        pairs.push((
            "expected_average_value".into(),
            gp.expected_average_value(s),
            theirs.f(row, "expected_average_value"),
        ));
        pairs.push((
            "clv".into(),
            customer_lifetime_value(&bp, &gp, s, months, rate, d.period),
            theirs.f(row, "clv"),
        ));
        for (what, ours, expected) in pairs {
            let diff = (ours - expected).abs() / expected.abs().max(1.0);
            worst = worst.max(diff);
            assert!(
                diff <= 1e-6,
                "{name} {}: {what} ours {ours} lifetimes {expected}",
                s.customer_id
            );
        }
    }
    println!(
        "{name}: per-customer values, worst relative (absolute below 1) difference {worst:.3e}"
    );
}

#[test]
fn synthetic_matches_lifetimes() {
    let s = check_summaries("synthetic");
    check_predictions("synthetic", &s);
    check_fits("synthetic", &s);
}

#[test]
fn cdnow_matches_lifetimes() {
    let s = check_summaries("cdnow");
    check_predictions("cdnow", &s);
    check_fits("cdnow", &s);
}

#[test]
fn special_functions_match_scipy() {
    let csv = Csv::load("special.csv");
    for row in &csv.rows {
        let (a, b, c, z) = (
            csv.f(row, "a"),
            csv.f(row, "b"),
            csv.f(row, "c"),
            csv.f(row, "z"),
        );
        let expected = csv.f(row, "value");
        let ours = match row[0].as_str() {
            "gammaln" => ln_gamma(a),
            "digamma" => digamma(a),
            "hyp2f1" => hyp2f1(a, b, c, z).unwrap(),
            other => panic!("unknown function {other}"),
        };
        assert!(
            (ours - expected).abs() <= 1e-12 * expected.abs().max(1.0),
            "{}({a}, {b}, {c}, {z}): ours {ours} scipy {expected}",
            row[0]
        );
    }
}
