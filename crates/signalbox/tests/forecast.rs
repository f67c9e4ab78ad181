//! `signalbox forecast build/run/verify` as an operator uses them, on a slice of the bundled
//! NYC 2013 station data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn signalbox() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    for var in ["SIGNALBOX_CONFIG", "SIGNALBOX_DATA_DIR", "DATABASE_URL"] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run signalbox")
}

fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = run(cmd);
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    (String::from_utf8(out.stdout).expect("utf-8 stdout"), stderr)
}

fn run_err(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

/// The header and the January–February rows of EWR and JFK (about 2,800 rows).
fn slice_csv() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/nyc_weather_2013.csv");
    let text = std::fs::read_to_string(&path).expect("bundled data");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let mut out = vec![header.to_owned()];
    out.extend(
        lines
            .filter(|l| l.starts_with("EWR,") || l.starts_with("JFK,"))
            .filter(|l| l.contains(",2013-01-") || l.contains(",2013-02-"))
            .map(str::to_owned),
    );
    out.join("\n") + "\n"
}

/// Writes `csv` and builds a model from it; returns the model directory.
fn build_model(dir: &Path, csv: &str) -> (PathBuf, String) {
    let data = dir.join("stations.csv");
    std::fs::write(&data, csv).expect("write csv");
    let model = dir.join("model");
    let (_, stderr) = run_ok(
        signalbox()
            .args(["forecast", "build", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&model),
    );
    (model, stderr)
}

#[test]
fn build_then_run_then_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, stderr) = build_model(dir.path(), &slice_csv());
    // The slice keeps the data set's one bad row: EWR's 1048.36 mph wind on 12 February.
    assert!(stderr.contains("2 stations, 1 bad rows"), "{stderr}");
    assert!(
        stderr.contains("stations.csv: line 1011: wind_speed: 468.66 m/s is physically impossible"),
        "{stderr}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&model)
        .expect("model dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "EWR.12h.sbx",
            "EWR.24h.sbx",
            "EWR.48h.sbx",
            "EWR.6h.sbx",
            "EWR.series.sbx",
            "EWR.states.sbx",
            "JFK.12h.sbx",
            "JFK.24h.sbx",
            "JFK.48h.sbx",
            "JFK.6h.sbx",
            "JFK.series.sbx",
            "JFK.states.sbx",
            "manifest.json",
        ]
    );

    let (stdout, _) = run_ok(
        signalbox()
            .args(["forecast", "run", "--index"])
            .arg(&model)
            .args([
                "--station",
                "JFK",
                "--at",
                "2013-02-10T06:00:00Z",
                "--horizon",
                "24h",
                "--vars",
                "t2m,u10,v10,msl,precip",
                "--json",
            ]),
    );
    let f: Value = serde_json::from_str(&stdout).expect("run --json");
    assert_eq!(f["station"], "JFK");
    assert_eq!(f["issued_at"], "2013-02-10T06:00:00Z");
    assert_eq!(f["valid_at"], "2013-02-11T06:00:00Z");
    assert_eq!(f["horizon"], "24h");
    assert_eq!(f["k"], 10);
    assert_eq!(f["similarity"], "anen");
    let vars = f["variables"].as_array().expect("variables");
    let names: Vec<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["t2m", "u10", "v10", "msl", "precip"]);
    for v in vars {
        assert_eq!(v["members"].as_array().map(Vec::len), Some(10));
        let (p10, median, p90) = (
            v["p10"].as_f64().expect("p10"),
            v["median"].as_f64().expect("median"),
            v["p90"].as_f64().expect("p90"),
        );
        assert!(p10 <= median && median <= p90, "{v}");
        assert!(v["spread"].as_f64().is_some() && v["observed"].as_f64().is_some());
    }
    assert_eq!(vars[0]["unit"], "°C");
    let analogs = f["analogs"].as_array().expect("analogs");
    assert_eq!(analogs.len(), 10);
    assert!(analogs[0]["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    // The same forecast as a table, with the seed metric and the "fast" ensemble.
    let (table, _) = run_ok(
        signalbox()
            .args(["forecast", "run", "--index"])
            .arg(&model)
            .args([
                "--station",
                "EWR",
                "--horizon",
                "6h",
                "--similarity",
                "seed",
                "--mode",
                "fast",
            ]),
    );
    assert!(table.contains("k=5 seed analogs"), "{table}");
    assert!(table.contains("index: flat over "), "{table}");
    assert!(table.lines().any(|l| l.starts_with("t2m ")), "{table}");

    let (stdout, _) = run_ok(
        signalbox()
            .args(["forecast", "verify", "--index"])
            .arg(&model)
            .args(["--holdout-from", "2013-02-15", "--json"]),
    );
    let report: Value = serde_json::from_str(&stdout).expect("verify --json");
    assert_eq!(report["holdout_from"], "2013-02-15T00:00:00Z");
    let rows = report["rows"].as_array().expect("rows");
    // (2 stations + ALL) x 4 horizons x 7 variables x 2 similarities.
    assert_eq!(rows.len(), 3 * 4 * 7 * 2);
    for row in rows {
        for kind in ["ensemble", "persistence", "climatology"] {
            for score in ["rmse", "mae", "bias", "crps"] {
                assert!(row[kind][score].is_f64(), "{kind}.{score} in {row}");
            }
        }
        assert!(row["skill"]["crps_vs_climatology"].is_f64(), "{row}");
        assert!(row["cases"].as_u64().is_some_and(|n| n > 0));
    }
    let (table, _) = run_ok(
        signalbox()
            .args(["forecast", "verify", "--index"])
            .arg(&model)
            .args(["--holdout-from", "2013-02-15", "--similarity", "anen"]),
    );
    assert!(table.contains("== ALL =="), "{table}");
    assert!(!table.contains(" seed "), "{table}");
}

#[test]
fn bad_rows_are_reported_with_line_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines: Vec<String> = slice_csv().lines().map(str::to_owned).collect();
    // Line 11 gets the 1048 mph wind, line 21 a time that is not on the hour.
    let mut fields: Vec<String> = lines[10].split(',').map(str::to_owned).collect();
    fields[9] = "1048.36".to_owned();
    lines[10] = fields.join(",");
    lines[20] = lines[20].replace(":00:00Z", ":30:00Z");
    let (_, stderr) = build_model(dir.path(), &(lines.join("\n") + "\n"));
    assert!(
        stderr.contains("stations.csv: line 11: wind_speed: 468.66 m/s is physically impossible"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stations.csv: line 21: time_hour:")
            && stderr.contains("is not on the hour"),
        "{stderr}"
    );
    assert!(stderr.contains("line 1011: wind_speed"), "{stderr}");
    assert!(stderr.contains("3 bad rows"), "{stderr}");

    // A row with the wrong number of fields stops the build, naming the line.
    lines[30] = "JFK,2013,1".to_owned();
    let data = dir.path().join("broken.csv");
    std::fs::write(&data, lines.join("\n") + "\n").expect("write");
    let err = run_err(
        signalbox()
            .args(["forecast", "build", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join("broken-model")),
    );
    assert!(err.contains("broken.csv: line 31: malformed CSV"), "{err}");
    assert!(!dir.path().join("broken-model").exists());
}

#[test]
fn a_corrupt_model_file_is_refused_by_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, _) = build_model(dir.path(), &slice_csv());
    let file = model.join("JFK.24h.sbx");
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).expect("write");
    let err = run_err(
        signalbox()
            .args(["forecast", "run", "--index"])
            .arg(&model)
            .args(["--station", "EWR"]),
    );
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // `serve` refuses it at load, before it listens, with the same message.
    let err = run_err(
        signalbox()
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--forecast-index"])
            .arg(&model),
    );
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains(&file.display().to_string()), "{err}");
    assert!(last.contains("checksum mismatch"), "{err}");
    assert!(!err.contains("listening"), "{err}");

    let err = run_err(
        signalbox()
            .args(["forecast", "verify", "--index"])
            .arg(dir.path())
            .args(["--holdout-from", "2013-02-15"]),
    );
    assert!(
        err.contains("manifest.json") && err.contains("--index"),
        "{err}"
    );
}

#[test]
fn bad_flags_get_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, _) = build_model(dir.path(), &slice_csv());
    let check = |args: &[&str], says: &str| {
        let err = run_err(
            signalbox()
                .args(["forecast", "run", "--index"])
                .arg(&model)
                .args(args),
        );
        assert!(err.contains(says), "{args:?}: expected {says:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    };
    check(
        &["--station", "XYZ"],
        "error: --station: unknown station 'XYZ' (known: EWR, JFK)",
    );
    check(
        &["--station", "JFK", "--horizon", "3h"],
        "--horizon: unknown horizon '3h' (expected one of 6h, 12h, 24h, 48h)",
    );
    check(
        &["--station", "JFK", "--vars", "t2m,wind"],
        "--vars: unknown variable 'wind'",
    );
    check(
        &["--station", "JFK", "--vars", ","],
        "--vars: at least one variable",
    );
    check(
        &["--station", "JFK", "--at", "yesterday"],
        "--at: 'yesterday' is not an RFC 3339 time",
    );
    check(
        &["--station", "JFK", "--at", "2014-06-01T00:00:00Z"],
        "--at: no state at 2014-06-01T00:00:00Z: outside the data",
    );
    check(
        &["--station", "JFK", "--at", "2013-02-01T00:30:00Z"],
        "--at: no state at 2013-02-01T00:30:00Z: issue times are whole hours",
    );
    check(
        &["--station", "JFK", "--k", "0"],
        "--k: must be between 1 and 100, got 0",
    );
    check(
        &["--station", "JFK", "--k", "ten"],
        "--k: 'ten' is not a whole number",
    );
    check(
        &["--station", "JFK", "--mode", "turbo"],
        "--mode: unknown mode 'turbo'",
    );
    check(
        &["--station", "JFK", "--similarity", "cosine"],
        "--similarity: unknown similarity 'cosine'",
    );
    let err = run_err(
        signalbox()
            .args(["forecast", "verify", "--index"])
            .arg(&model)
            .args(["--holdout-from", "2012-01-01"]),
    );
    assert!(
        err.contains("--holdout-from: 2012-01-01T00:00:00Z leaves less than a week"),
        "{err}"
    );
    let err = run_err(
        signalbox()
            .args(["forecast", "verify", "--index"])
            .arg(&model)
            .args([
                "--holdout-from",
                "2013-02-15",
                "--index-plans",
                "flat,exact",
            ]),
    );
    assert!(err.contains("--index-plans: index plan: 'exact'"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let data = dir.path().join("stations.csv");
    for (flag, value, says) in [
        ("--index", "24h=fast", "--index: index plan: '24h=fast'"),
        ("--index", "3h=flat", "--index: index plan: '3h=flat'"),
        (
            "--memory-budget",
            "2 parsecs",
            "--memory-budget: '2 parsecs' is not a byte size",
        ),
        (
            "--memory-budget",
            "1kB",
            "--memory-budget: the model needs about",
        ),
    ] {
        let err = run_err(
            signalbox()
                .args(["forecast", "build", "--data"])
                .arg(&data)
                .arg("--out")
                .arg(dir.path().join("other"))
                .args([flag, value]),
        );
        assert!(
            err.contains(says),
            "{flag} {value}: expected {says:?} in {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{flag} {value}: {err}");
    }
}
