//! `signalbox forecast generate`: a synthetic archive the forecaster builds from.

use std::process::{Command, Output};

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

#[test]
fn generate_writes_a_csv_that_builds_and_is_the_same_for_a_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("synthetic.csv");
    let generate = |out: &std::path::Path, seed: &str| {
        let o = run(signalbox()
            .args(["forecast", "generate", "--stations", "2", "--years", "1"])
            .args(["--start", "2001-03-01", "--seed", seed, "--out"])
            .arg(out));
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{stderr}");
        stderr
    };
    let stderr = generate(&csv, "4");
    assert!(
        stderr.contains("forecast generate: 2 stations, 8760 hours, "),
        "{stderr}"
    );
    assert!(!dir.path().join("synthetic.csv.partial").exists());
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert!(
        text.starts_with("origin,time_hour,temp,dewp,humid,wind_dir,wind_speed,precip,pressure\n"),
        "{}",
        &text[..100]
    );
    assert!(
        text.contains("ST0002,2001-03-01T00:00:00Z,")
            || text.contains("ST0002,2001-03-01T01:00:00Z,")
    );
    // Close to 2 × 8,760 rows: about 1 % of the hours are gaps.
    let rows = text.lines().count() - 1;
    assert!((17_000..17_520).contains(&rows), "{rows} rows");

    let again = dir.path().join("again.csv");
    generate(&again, "4");
    assert_eq!(std::fs::read(&again).expect("again"), text.as_bytes());
    generate(&again, "5");
    assert_ne!(std::fs::read(&again).expect("again"), text.as_bytes());

    let model = dir.path().join("model");
    let o = run(signalbox()
        .args(["forecast", "build", "--data"])
        .arg(&csv)
        .arg("--out")
        .arg(&model));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains(" 2 stations, 0 bad rows"), "{stderr}");

    // export-vectors: the 24h analogs' states, row-major little-endian f32.
    let vectors = dir.path().join("st1-24h.f32");
    let o = run(signalbox()
        .args(["forecast", "export-vectors", "--index"])
        .arg(&model)
        .args(["--station", "ST0001", "--horizon", "24h", "--json", "--out"])
        .arg(&vectors));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let (dim, count) = (doc["dim"].as_u64().unwrap(), doc["count"].as_u64().unwrap());
    assert_eq!(dim, 25, "{doc}");
    assert_eq!(doc["index"], "flat", "{doc}");
    assert!(doc["ivfpq"].is_null(), "{doc}");
    // A year of hours less gaps, their windows and the last 24 hours.
    assert!((8_000..8_760).contains(&count), "{doc}");
    let bytes = std::fs::read(&vectors).expect("vectors");
    assert_eq!(bytes.len() as u64, dim * count * 4);
    let first: Vec<f32> = bytes[..100]
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // Standardised values and the calendar pairs: finite, not all zero.
    assert!(first.iter().all(|x| x.is_finite()) && first.iter().any(|x| *x != 0.0));
    let o = run(signalbox()
        .args(["forecast", "export-vectors", "--index"])
        .arg(&model)
        .args(["--station", "NOPE", "--out"])
        .arg(&vectors));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("--station: "), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn generate_flags_are_checked_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x.csv");
    for (args, expected) in [
        (
            vec!["--stations", "0"],
            "--stations: 0 is not between 1 and 9999",
        ),
        (vec!["--years", "0"], "--years: 0 is not between 1 and 200"),
        (
            vec!["--start", "someday"],
            "--start: 'someday' is not an RFC 3339 time",
        ),
        (vec!["--start", "2001-03-01T00:30:00Z"], "--start: "),
    ] {
        let o = run(signalbox()
            .args(["forecast", "generate"])
            .args(&args)
            .arg("--out")
            .arg(&out));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(!out.exists());
    }
    let o = run(signalbox()
        .args([
            "forecast",
            "generate",
            "--stations",
            "1",
            "--years",
            "1",
            "--out",
        ])
        .arg(dir.path().join("no/such/dir/x.csv")));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("--out: cannot create"), "{stderr}");
}
