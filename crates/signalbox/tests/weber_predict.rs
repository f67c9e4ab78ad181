//! `signalbox weber predict` as an operator runs it: real files in, real files out, and every
//! kind of bad input answered by one line naming the file, line and field (or a documented
//! result), never a NaN in an output.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{json_lines, run_err, run_ok, signalbox};

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn predict(&self, transactions: &Path, calibration_end: &str) -> std::process::Command {
        let mut cmd = signalbox(&self.path("data"));
        cmd.args(["weber", "predict", "--transactions"])
            .arg(transactions)
            .args(["--calibration-end", calibration_end, "--out"])
            .arg(self.path("out.jsonl"));
        cmd
    }
}

/// A small history with repeat purchases: customer k buys every (k % 7 + 3) days from day k % 5
/// of 2020 while k % 4 != 0 or the year's first half; fixed, so the fit is reproducible.
fn history(customers: usize) -> String {
    let mut out = String::from("customer_id,date,amount\n");
    for k in 0..customers {
        let gap = k % 7 + 3;
        let last = if k % 4 == 0 { 150 } else { 330 };
        let mut day = k % 5;
        while day <= last {
            let date = time::Date::from_ordinal_date(2020, (day + 1) as u16).unwrap();
            out.push_str(&format!(
                "c{k:04},{},{}.{:02}\n",
                date,
                10 + k % 30,
                (k * 7 + day) % 100
            ));
            day += gap + (k * day) % 11;
        }
    }
    out
}

fn assert_one_line_error(stderr: &str, wanted: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(wanted), "{wanted:?} not in {stderr}");
}

fn assert_no_nan(v: &Value, at: &str) {
    match v {
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{at}: {n}"),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, x)| assert_no_nan(x, &format!("{at}[{i}]"))),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, x)| assert_no_nan(x, &format!("{at}.{k}"))),
        _ => {}
    }
}

#[test]
fn bad_rows_fail_with_file_line_and_field() {
    let d = Dir::new();
    let cases = [
        (
            "negative.csv",
            "customer_id,date,amount\na,2020-01-01,5\na,2020-02-01,-5\n",
            "negative.csv:3: amount: must be a number >= 0",
        ),
        (
            "future.csv",
            "customer_id,date,amount\na,2020-01-01,5\nb,29990101,5\n",
            "future.csv:3: date: 29990101 is after today",
        ),
        (
            "baddate.csv",
            "customer_id,date,amount\na,2020-02-30,5\n",
            "baddate.csv:2: date: '2020-02-30' is not a date",
        ),
        (
            "noid.csv",
            "customer_id,date,amount\n,2020-01-01,5\n",
            "noid.csv:2: customer_id: must not be empty",
        ),
        (
            "nan.csv",
            "customer_id,date,amount\na,2020-01-01,NaN\n",
            "nan.csv:2: amount: must be a number >= 0",
        ),
        (
            "header.csv",
            "customer,date,amount\na,2020-01-01,5\n",
            "header.csv:1: the header has no `customer_id` column",
        ),
        (
            "ragged.csv",
            "customer_id,date,amount\na,2020-01-01\n",
            "ragged.csv:2: malformed CSV",
        ),
        ("empty.csv", "", "empty.csv: the file is empty"),
        (
            "header-only.csv",
            "customer_id,date,amount\n",
            "header-only.csv: no transactions after the header",
        ),
    ];
    for (name, text, wanted) in cases {
        let file = d.write(name, text);
        let (_, stderr) = run_err(&mut d.predict(&file, "2020-06-30"));
        assert_one_line_error(&stderr, wanted);
        assert!(!d.path("out.jsonl").exists(), "{name}: output written");
    }
}

#[test]
fn bad_flags_and_profiles_name_the_flag() {
    let d = Dir::new();
    let file = d.write("t.csv", &history(40));
    let (_, stderr) = run_err(&mut d.predict(&file, "2020-13-01"));
    assert_one_line_error(&stderr, "--calibration-end: '2020-13-01' is not a date");
    let (_, stderr) = run_err(&mut d.predict(&file, "2019-06-30"));
    assert_one_line_error(
        &stderr,
        "--calibration-end: 2019-06-30 is before the first purchase",
    );
    let (_, stderr) = run_err(
        d.predict(&file, "2020-06-30")
            .args(["--observation-end", "2020-03-01"]),
    );
    assert_one_line_error(
        &stderr,
        "--observation-end: 2020-03-01 is before --calibration-end",
    );
    let (_, stderr) = run_err(d.predict(&file, "2020-06-30").arg("--discount-rate=-1"));
    assert_one_line_error(&stderr, "--discount-rate: ");
    let profiles = d.write(
        "p.jsonl",
        "{\"user_id\":\"c0001\",\"weber_constant\":0.5,\"sensitivity_segment\":\"Moderately_Sensitive\",\"calculation_confidence\":0.8}\n{\"user_id\":\"c0002\",\"weber_constant\":\"high\"}\n",
    );
    let (_, stderr) = run_err(
        d.predict(&file, "2020-06-30")
            .arg("--weber-profiles")
            .arg(&profiles),
    );
    assert_one_line_error(&stderr, "p.jsonl:2: weber_constant: ");
}

#[test]
fn a_fit_that_does_not_converge_is_a_clear_error() {
    // Clockwork customers who never leave: BG/NBD's dropout parameters run off to a bound.
    let d = Dir::new();
    let file = d.write("regular.csv", &history(120));
    let (_, stderr) = run_err(d.predict(&file, "2020-06-30").args(["--period", "week"]));
    assert_one_line_error(&stderr, "error: fit: ");
    assert!(!d.path("out.jsonl").exists());
}

#[test]
fn a_report_without_holdout_fails_before_writing_anything() {
    let d = Dir::new();
    let simulated = d.path("sim.csv");
    run_ok(
        signalbox(&d.path("data"))
            .args([
                "weber",
                "gen",
                "--customers",
                "300",
                "--seed",
                "5",
                "--purchases",
            ])
            .arg(&simulated)
            .args(["--start", "2020-01-01", "--days", "365"])
            .arg(d.path("sim-reviews.jsonl")),
    );
    let (_, stderr) = run_err(
        d.predict(&simulated, "2020-12-31")
            .arg("--report-out")
            .arg(d.path("report.json")),
    );
    assert_one_line_error(
        &stderr,
        "--report-out: no purchases after --calibration-end",
    );
    assert!(!d.path("out.jsonl").exists() && !d.path("report.json").exists());
    // Without --report-out the same split predicts, and no row has holdout actuals.
    run_ok(&mut d.predict(&simulated, "2020-12-31"));
    let rows = json_lines(&std::fs::read_to_string(d.path("out.jsonl")).unwrap());
    assert!(!rows.is_empty() && rows.iter().all(|r| r.get("holdout").is_none()));
}

#[test]
fn no_repeat_purchases_is_a_clear_error() {
    let d = Dir::new();
    // Everyone bought once (a degenerate history: nothing to learn the purchase rate from), with
    // zero amounts mixed in.
    let mut text = String::from("customer_id,date,amount\n");
    for k in 0..50 {
        text.push_str(&format!("c{k},2020-01-{:02},{}\n", k % 28 + 1, k % 3));
    }
    let file = d.write("once.csv", &text);
    let (_, stderr) = run_err(&mut d.predict(&file, "2020-03-01"));
    assert_one_line_error(&stderr, "repeat");
    assert!(!d.path("out.jsonl").exists());
}

#[test]
fn predictions_params_and_report_are_complete_and_finite() {
    let d = Dir::new();
    let simulated = d.path("sim.csv");
    run_ok(
        signalbox(&d.path("data"))
            .args([
                "weber",
                "gen",
                "--customers",
                "300",
                "--seed",
                "5",
                "--purchases",
            ])
            .arg(&simulated)
            .args(["--start", "2020-01-01", "--days", "365"])
            .arg(d.path("sim-reviews.jsonl")),
    );
    // One-purchase customers, zero amounts and customers first seen in the holdout are mixed
    // into a simulated history.
    let mut text = std::fs::read_to_string(&simulated).unwrap();
    text.push_str(
        "once,2020-03-03,12.00\nfree,2020-02-01,0\nfree,2020-02-20,0\nlate,2020-10-01,9\n",
    );
    let file = d.write("t.csv", &text);
    let calibration_customers = {
        let mut first: std::collections::HashMap<&str, &str> = Default::default();
        for line in text.lines().skip(1) {
            let mut cells = line.split(',');
            let (id, date) = (cells.next().unwrap(), cells.next().unwrap());
            let e = first.entry(id).or_insert(date);
            if date < *e {
                *e = date;
            }
        }
        first.values().filter(|d| **d <= "2020-09-30").count()
    };
    run_ok(
        d.predict(&file, "2020-09-30")
            .args(["--period", "week", "--params-out"])
            .arg(d.path("params.json"))
            .arg("--report-out")
            .arg(d.path("report.json")),
    );
    let rows = json_lines(&std::fs::read_to_string(d.path("out.jsonl")).unwrap());
    // Customers first seen by the calibration end (so `once` and `free`, not `late`).
    assert_eq!(rows.len(), calibration_customers);
    assert!(!rows.iter().any(|r| r["customer_id"] == "late"));
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["customer_id"].as_str().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by customer_id");
    for row in &rows {
        assert_no_nan(row, row["customer_id"].as_str().unwrap());
        for field in [
            "frequency",
            "recency",
            "T",
            "monetary_value",
            "expected_purchases",
            "p_alive",
            "expected_average_value",
            "clv",
            "churn_risk",
        ] {
            assert!(row[field].is_number(), "{field} in {row}");
        }
        let p_alive = row["p_alive"].as_f64().unwrap();
        let risk = row["churn_risk"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&p_alive) && (0.0..=1.0).contains(&risk),
            "{row}"
        );
        assert!(row["clv"].as_f64().unwrap() >= 0.0, "{row}");
        let level = row["risk_level"].as_str().unwrap();
        let expected = if risk < 0.3 {
            "low"
        } else if risk < 0.6 {
            "medium"
        } else {
            "high"
        };
        assert_eq!(level, expected, "{row}");
        assert!(row["holdout"]["frequency"].is_number(), "{row}");
    }
    let once = rows.iter().find(|r| r["customer_id"] == "once").unwrap();
    assert_eq!(once["frequency"], 0.0);
    assert_eq!(once["monetary_value"], 0.0);

    let params: Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("params.json")).unwrap()).unwrap();
    assert_no_nan(&params, "params");
    for key in ["r", "alpha", "a", "b"] {
        assert!(params["bgnbd"][key].as_f64().unwrap() > 0.0, "{params}");
    }
    for key in ["p", "q", "v"] {
        assert!(
            params["gamma_gamma"][key].as_f64().unwrap() > 0.0,
            "{params}"
        );
    }
    assert!(params["log_likelihood"].as_f64().unwrap() < 0.0, "{params}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("report.json")).unwrap()).unwrap();
    assert_no_nan(&report, "report");
    assert_eq!(report["customers"], calibration_customers);
    assert!(report["mae_purchases"].as_f64().unwrap() >= 0.0);
    let tracking = report["weekly_tracking"].as_array().unwrap();
    assert!(!tracking.is_empty());
    // Holdout actuals in the report agree with the per-customer rows.
    let actual: f64 = rows
        .iter()
        .map(|r| r["holdout"]["frequency"].as_f64().unwrap())
        .sum();
    assert!((report["actual_total"].as_f64().unwrap() - actual).abs() < 1e-9);
}

#[test]
fn simulated_tenant_feeds_batch_and_the_weber_enhanced_model() {
    let d = Dir::new();
    let reviews = d.path("reviews.jsonl");
    let purchases = d.path("purchases.csv");
    run_ok(
        signalbox(&d.path("data"))
            .args([
                "weber",
                "gen",
                "--customers",
                "600",
                "--seed",
                "3",
                "--purchases",
            ])
            .arg(&purchases)
            .args(["--start", "2023-01-01", "--days", "540"])
            .arg(&reviews),
    );
    let profiles = d.path("profiles.jsonl");
    run_ok(
        signalbox(&d.path("data"))
            .args(["weber", "batch"])
            .arg(&reviews)
            .arg("--out")
            .arg(&profiles),
    );
    run_ok(
        d.predict(&purchases, "2024-03-31")
            .arg("--weber-profiles")
            .arg(&profiles)
            .arg("--report-out")
            .arg(d.path("report.json")),
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("report.json")).unwrap()).unwrap();
    assert_no_nan(&report, "report");
    let timing = report["auc_timing"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&timing), "{report}");
    let rows = json_lines(&std::fs::read_to_string(d.path("out.jsonl")).unwrap());
    assert!(
        rows.iter().any(|r| r["churn_model"] == "weber_enhanced"),
        "no enhanced row"
    );
    // The same seed gives the same files.
    let again = d.path("purchases2.csv");
    run_ok(
        signalbox(&d.path("data"))
            .args([
                "weber",
                "gen",
                "--customers",
                "600",
                "--seed",
                "3",
                "--purchases",
            ])
            .arg(&again)
            .args(["--start", "2023-01-01", "--days", "540"])
            .arg(d.path("reviews2.jsonl")),
    );
    assert_eq!(
        std::fs::read(&purchases).unwrap(),
        std::fs::read(&again).unwrap()
    );
}
