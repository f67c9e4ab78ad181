//! The forecaster through its public API: parsing, states, forecasts, verification, files.

use analog::forecast::{
    format_time, parse_csv, BuildOptions, Dataset, ForecastError, ForecastModel, ForecastRequest,
    Horizon, IndexKind, Members, NoStateReason, Similarity, Standardization, StationSeries,
    Variable, VerifyOptions, MANIFEST, NVARS,
};
use analog::format::AlignedBytes;

const HEADER: &str = "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour";
/// 2013-01-01T00:00:00Z.
const JAN1: i64 = 1_356_998_400;

/// A fixed-seed generator (an LCG; quality is irrelevant here) for values in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One CSV row in the file's units (°F, mph, inches, millibars); `None` writes `NA`.
#[allow(clippy::too_many_arguments)]
fn row(
    station: &str,
    t: i64,
    temp_f: Option<f64>,
    dewp_f: f64,
    humid: f64,
    dir: Option<f64>,
    speed_mph: Option<f64>,
    precip_in: f64,
    pressure: Option<f64>,
) -> String {
    let na = |x: Option<f64>| x.map_or("NA".to_owned(), |v| v.to_string());
    format!(
        "{station},2013,1,1,0,{},{dewp_f},{humid},{},{},NA,{precip_in},{},10,{}",
        na(temp_f),
        na(dir),
        na(speed_mph),
        na(pressure),
        format_time(t)
    )
}

/// `days` of plausible hourly weather for each station: a diurnal and slow synoptic cycle plus
/// noise, so that analogs are informative but not exact.
fn synthetic_csv(stations: &[&str], days: i64, seed: u64) -> String {
    let mut rng = Lcg(seed);
    let mut lines = vec![HEADER.to_owned()];
    for (si, station) in stations.iter().enumerate() {
        for hour in 0..days * 24 {
            let t = JAN1 + hour * 3600;
            let diurnal = ((hour % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
            let synoptic = (hour as f64 / 97.0).sin();
            let temp = 40.0 + 10.0 * diurnal + 8.0 * synoptic + 2.0 * rng.next() + si as f64;
            let dewp = temp - 8.0 - 4.0 * rng.next();
            let humid = 50.0 + 30.0 * rng.next();
            let dir = (200.0 + 100.0 * synoptic + 40.0 * rng.next()).rem_euclid(360.0);
            let speed = 5.0 + 10.0 * rng.next();
            let precip = if rng.next() < 0.1 { 0.02 } else { 0.0 };
            let pressure = 1015.0 - 10.0 * synoptic + 2.0 * rng.next();
            lines.push(row(
                station,
                t,
                Some(temp),
                dewp,
                humid,
                Some(dir),
                Some(speed),
                precip,
                Some(pressure),
            ));
        }
    }
    lines.join("\n") + "\n"
}

fn dataset(text: &str) -> Dataset {
    parse_csv(text.as_bytes()).expect("valid CSV")
}

fn build(data: &Dataset, options: &BuildOptions) -> ForecastModel {
    ForecastModel::build(data, options, &mut |_, _| {}).expect("build")
}

fn request(station: &str, at: Option<i64>, horizon: Horizon) -> ForecastRequest {
    ForecastRequest {
        station: station.to_owned(),
        at,
        horizon,
        vars: Variable::ALL.to_vec(),
        k: 10,
        similarity: Similarity::AnEn,
    }
}

#[test]
fn the_model_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<ForecastModel>();
    let data = dataset(&synthetic_csv(&["JFK"], 30, 23));
    let model = std::sync::Arc::new(build(&data, &BuildOptions::default()));
    let at = JAN1 + 20 * 86_400;
    let alone = model.forecast(&request("JFK", Some(at), Horizon::H12)).ok();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let model = std::sync::Arc::clone(&model);
            std::thread::spawn(move || model.forecast(&request("JFK", Some(at), Horizon::H12)).ok())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), alone);
    }
    assert!(alone.is_some());
}

#[test]
fn parsing_converts_units_and_derives_wind_components() {
    let text = format!(
        "{HEADER}\n{}\n{}\n",
        row(
            "JFK",
            JAN1,
            Some(50.0),
            32.0,
            55.5,
            Some(90.0),
            Some(10.0),
            0.1,
            Some(1013.2)
        ),
        row(
            "JFK",
            JAN1 + 3600,
            Some(212.0 / 2.0),
            14.0,
            20.0,
            None,
            Some(0.0),
            0.0,
            None
        ),
    );
    let data = dataset(&text);
    assert!(data.bad_rows.is_empty(), "{:?}", data.bad_rows);
    let s = data.station("JFK").expect("station");
    assert_eq!((s.start, s.len()), (JAN1, 2));
    let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-4;
    assert!(close(s.value(Variable::T2m, 0), 10.0));
    assert!(close(s.value(Variable::Dewpoint, 0), 0.0));
    assert!(close(s.value(Variable::Humidity, 0), 55.5));
    // From the east (90°) at 10 mph: blowing west, u = -4.4704 m/s, v = 0.
    assert!(close(s.value(Variable::U10, 0), -4.4704));
    assert!(close(s.value(Variable::V10, 0), 0.0));
    assert!(close(s.value(Variable::Msl, 0), 1013.2));
    assert!(close(s.value(Variable::Precip, 0), 2.54));
    // Calm with no direction is (0, 0); missing pressure stays missing.
    assert!(close(s.value(Variable::T2m, 1), (106.0 - 32.0) * 5.0 / 9.0));
    assert_eq!(
        (s.value(Variable::U10, 1), s.value(Variable::V10, 1)),
        (0.0, 0.0)
    );
    assert!(s.value(Variable::Msl, 1).is_nan());
}

#[test]
fn bad_rows_are_listed_with_line_numbers_and_become_gaps() {
    let good = |h: i64| {
        row(
            "EWR",
            JAN1 + h * 3600,
            Some(40.0),
            30.0,
            60.0,
            Some(180.0),
            Some(5.0),
            0.0,
            Some(1010.0),
        )
    };
    let lines = [
        HEADER.to_owned(),
        good(0),                                     // line 2
        good(1).replace(",5,NA,", ",1048.36,NA,"),   // line 3: impossible wind
        good(2).replace(",40,", ",warm,"),           // line 4: not a number
        good(3).replace("T03:00:00Z", "T03:30:00Z"), // line 5: not on the hour
        good(4).replacen("EWR", "E W R", 1),         // line 6: bad station code
        good(0),                                     // line 7: duplicate of line 2
        good(5).replace(",180,5,", ",NA,5,"), // line 8: moving wind, no direction: a gap, not a bad row
        good(6).replace(",60,", ",101.5,"),   // line 9: humidity over 100
    ];
    let data = dataset(&(lines.join("\n") + "\n"));
    let got: Vec<(u64, &str)> = data
        .bad_rows
        .iter()
        .map(|b| (b.line, b.reason.split(':').next().unwrap_or("")))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "wind_speed"),
            (4, "temp"),
            (5, "time_hour"),
            (6, "origin"),
            (7, "time_hour"),
            (9, "humid"),
        ]
    );
    assert!(data.bad_rows[0].reason.contains("physically impossible"));
    assert!(data.bad_rows[4].reason.contains("duplicate of line 2"));
    let s = data.station("EWR").expect("station");
    assert_eq!(data.rows, 2);
    // Hours 1-4 and 6 are gaps; hour 5 has everything but the wind.
    for h in [1, 2, 3, 4, 6] {
        assert!(s.value(Variable::T2m, h).is_nan(), "hour {h}");
    }
    assert!(s.value(Variable::T2m, 5).is_finite());
    assert!(s.value(Variable::U10, 5).is_nan() && s.value(Variable::V10, 5).is_nan());
}

#[test]
fn fatal_csv_problems_name_the_column_or_line() {
    let missing =
        parse_csv("origin,time_hour,temp\nJFK,2013-01-01T00:00:00Z,1\n".as_bytes()).unwrap_err();
    assert_eq!(missing.to_string(), "the CSV header has no `dewp` column");
    let ragged = format!("{HEADER}\nJFK,1,2\n");
    let err = parse_csv(ragged.as_bytes()).unwrap_err();
    assert!(
        err.to_string().starts_with("line 2: malformed CSV"),
        "{err}"
    );
    let empty = parse_csv(HEADER.as_bytes()).unwrap_err();
    assert!(empty.to_string().contains("no usable rows"), "{empty}");
}

/// The number of hours whose window is complete and whose outcome `h` later is complete,
/// counted directly from the series.
fn oracle_analog_count(s: &StationSeries, window: usize, h: usize) -> usize {
    (0..s.len())
        .filter(|&i| i + 1 >= window && i + h < s.len())
        .filter(|&i| {
            (i + 1 - window..=i).all(|j| Variable::ALL.iter().all(|v| s.value(*v, j).is_finite()))
                && Variable::ALL.iter().all(|v| s.value(*v, i + h).is_finite())
        })
        .count()
}

#[test]
fn windows_with_gaps_are_skipped_never_zero_filled() {
    let mut text = synthetic_csv(&["LGA"], 20, 3);
    // Remove pressure at hour 100 and the whole row at hour 200.
    let t100 = format_time(JAN1 + 100 * 3600);
    let t200 = format_time(JAN1 + 200 * 3600);
    text = text
        .lines()
        .filter(|l| !l.ends_with(&t200))
        .map(|l| {
            if l.ends_with(&t100) {
                let mut f: Vec<&str> = l.split(',').collect();
                f[12] = "NA";
                f.join(",")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let data = dataset(&text);
    let options = BuildOptions {
        window: 4,
        ..BuildOptions::default()
    };
    let model = build(&data, &options);
    let series = data.station("LGA").expect("station");
    for (station, horizon, n) in model.analog_counts() {
        assert_eq!(station, "LGA");
        let want = oracle_analog_count(series, 4, horizon.hours() as usize);
        assert_eq!(n, want, "{horizon}");
    }
    // Every window containing hour 100 has no state; the next one does.
    for i in 100..104 {
        let err = model
            .forecast(&request("LGA", Some(JAN1 + i * 3600), Horizon::H6))
            .unwrap_err();
        match err {
            ForecastError::NoState { reason, detail, .. } => {
                assert_eq!(reason, NoStateReason::Gap);
                assert!(
                    detail.contains("msl is missing at 2013-01-05T04:00:00Z"),
                    "{detail}"
                );
            }
            other => panic!("hour {i}: {other}"),
        }
    }
    assert!(model
        .forecast(&request("LGA", Some(JAN1 + 104 * 3600), Horizon::H6))
        .is_ok());
}

#[test]
fn standardization_matches_a_plain_computation() {
    let data = dataset(&synthetic_csv(&["A", "B"], 10, 5));
    let s = Standardization::fit(&data.stations);
    for v in 0..NVARS {
        let values: Vec<f64> = data
            .stations
            .iter()
            .flat_map(|st| st.columns[v].iter())
            .filter(|x| x.is_finite())
            .map(|x| f64::from(*x))
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(
            (s.mean[v] - mean).abs() < 1e-9 * mean.abs().max(1.0),
            "mean {v}"
        );
        assert!(
            (s.std[v] - var.sqrt()).abs() < 1e-6 * var.sqrt().max(1.0),
            "std {v}"
        );
    }
}

#[test]
fn forecasts_report_statistics_analogs_and_the_observation() {
    let data = dataset(&synthetic_csv(&["JFK"], 60, 7));
    let model = build(&data, &BuildOptions::default());
    let at = JAN1 + 40 * 24 * 3600 + 6 * 3600;
    for similarity in Similarity::ALL {
        let mut req = request("JFK", Some(at), Horizon::H24);
        req.similarity = similarity;
        req.vars = vec![Variable::Msl, Variable::T2m];
        let f = model.forecast(&req).expect("forecast");
        assert_eq!(f.issued_at, "2013-02-10T06:00:00Z");
        assert_eq!(f.valid_at, "2013-02-11T06:00:00Z");
        assert_eq!((f.k, f.analogs.len()), (10, 10));
        assert_eq!(f.similarity, similarity.name());
        let names: Vec<&str> = f.variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["msl", "t2m"]);
        for v in &f.variables {
            assert_eq!(v.members.len(), 10);
            assert!(v.p10 <= v.median && v.median <= v.p90, "{v:?}");
            assert!(v.observed.is_some());
        }
        assert!(f.analogs.windows(2).all(|w| w[0].distance <= w[1].distance));
        // No analog shares an hour with the forecast's window or outcome.
        let guard = (model.options().window as i64 + 24) * 3600;
        for a in &f.analogs {
            let t = analog::forecast::parse_time(&a.time).expect("rfc 3339");
            assert!((t - at).abs() >= guard, "{} too close", a.time);
        }
    }
    // The latest state is the default issue time.
    let latest = model
        .forecast(&request("JFK", None, Horizon::H6))
        .expect("latest");
    let (_, last) = model.issue_range("JFK").expect("range");
    assert_eq!(latest.issued_at, format_time(last));
    assert!(latest.variables.iter().all(|v| v.observed.is_none()));
}

#[test]
fn delta_members_add_the_analogs_change_to_the_current_value() {
    let data = dataset(&synthetic_csv(&["JFK"], 40, 9));
    let at = JAN1 + 30 * 24 * 3600;
    let absolute = build(
        &data,
        &BuildOptions {
            members: Members::Absolute,
            ..BuildOptions::default()
        },
    );
    let delta = build(
        &data,
        &BuildOptions {
            members: Members::Delta,
            ..BuildOptions::default()
        },
    );
    let mut req = request("JFK", Some(at), Horizon::H12);
    req.vars = vec![Variable::T2m];
    let a = absolute.forecast(&req).expect("absolute");
    let d = delta.forecast(&req).expect("delta");
    assert_eq!(a.analogs, d.analogs, "same analogs either way");
    let series = data.station("JFK").expect("station");
    let now = f64::from(series.value(Variable::T2m, series.index_of(at).expect("hour")));
    for (analog, (abs_member, delta_member)) in a
        .analogs
        .iter()
        .zip(a.variables[0].members.iter().zip(&d.variables[0].members))
    {
        let t = analog::forecast::parse_time(&analog.time).expect("time");
        let then = f64::from(series.value(Variable::T2m, series.index_of(t).expect("hour")));
        let want = now + abs_member - then;
        assert!(
            (delta_member - want).abs() < 2e-3,
            "{delta_member} vs {want}"
        );
    }
}

#[test]
fn request_errors_name_the_field() {
    let data = dataset(&synthetic_csv(&["EWR", "JFK"], 10, 1));
    let options = BuildOptions {
        window: 3,
        ..BuildOptions::default()
    };
    let model = build(&data, &options);
    let check = |req: ForecastRequest, prefix: &str| {
        let err = model.forecast(&req).unwrap_err().to_string();
        assert!(err.starts_with(prefix), "{err}");
        err
    };
    let err = check(
        request("XYZ", None, Horizon::H6),
        "station: unknown station 'XYZ'",
    );
    assert!(err.ends_with("(known: EWR, JFK)"), "{err}");
    let mut r = request("JFK", None, Horizon::H6);
    r.k = 0;
    check(r.clone(), "k: must be between 1 and 100, got 0");
    r.k = 101;
    check(r, "k: must be between 1 and 100, got 101");
    let mut r = request("JFK", None, Horizon::H6);
    r.vars.clear();
    check(r, "vars: at least one variable");
    check(
        request("JFK", Some(JAN1 - 3600 * 24), Horizon::H6),
        "at: no state at 2012-12-31T00:00:00Z: outside the data",
    );
    check(
        request("JFK", Some(JAN1 + 5 * 86400 + 60), Horizon::H6),
        "at: no state at 2013-01-06T00:01:00Z: issue times are whole hours",
    );
    // The first hours have no complete window yet.
    check(
        request("JFK", Some(JAN1), Horizon::H6),
        "at: no state at 2013-01-01T00:00:00Z: outside the data",
    );
}

#[test]
fn verification_uses_no_analog_from_the_holdout() {
    // 30 days of training weather, then 20 days whose temperature is 30 °C warmer and repeats
    // exactly every day. Analogs from the holdout would forecast it almost perfectly; analogs
    // from training cannot, since nothing there was anywhere near as warm.
    let mut rng = Lcg(11);
    let mut lines = vec![HEADER.to_owned()];
    for hour in 0..50 * 24 {
        let t = JAN1 + hour * 3600;
        let holdout = hour >= 30 * 24;
        let diurnal = ((hour % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
        let temp = if holdout {
            95.0 + 10.0 * diurnal
        } else {
            40.0 + 10.0 * diurnal + 4.0 * rng.next()
        };
        lines.push(row(
            "JFK",
            t,
            Some(temp),
            30.0,
            50.0,
            Some(180.0),
            Some(5.0),
            0.0,
            Some(1015.0),
        ));
    }
    let data = dataset(&(lines.join("\n") + "\n"));
    let options = BuildOptions {
        members: Members::Absolute,
        ..BuildOptions::default()
    };
    let model = build(&data, &options);
    let report = model
        .verify(
            &VerifyOptions {
                holdout_from: JAN1 + 30 * 24 * 3600,
                holdout_until: None,
                k: 5,
                similarities: Similarity::ALL.to_vec(),
                indexes: Vec::new(),
            },
            &mut |_, _| {},
        )
        .expect("verify");
    let t2m: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.station == "JFK" && r.variable == "t2m")
        .collect();
    assert_eq!(t2m.len(), 8, "4 horizons x 2 similarities");
    for r in t2m {
        // The holdout is ~20-35 °C warmer than anything in training; with holdout analogs the
        // error would be near zero (checked below).
        assert!(r.ensemble.rmse > 15.0, "{r:?}");
        assert!(r.ensemble.bias < -15.0, "{r:?}");
    }
    // Sanity check that the test can fail: with the holdout in the analogs, a forecast inside
    // it is close to perfect.
    let inside = model
        .forecast(&ForecastRequest {
            station: "JFK".into(),
            at: Some(JAN1 + 40 * 24 * 3600),
            horizon: Horizon::H24,
            vars: vec![Variable::T2m],
            k: 5,
            similarity: Similarity::AnEn,
        })
        .expect("forecast");
    let v = &inside.variables[0];
    let observed = v.observed.expect("observed");
    assert!((v.mean - observed).abs() < 1.0, "{v:?}");
}

#[test]
fn verification_reports_every_station_horizon_variable_and_similarity() {
    let data = dataset(&synthetic_csv(&["EWR", "JFK"], 50, 13));
    let model = build(&data, &BuildOptions::default());
    let report = model
        .verify(
            &VerifyOptions {
                holdout_from: JAN1 + 40 * 24 * 3600,
                holdout_until: Some(JAN1 + 45 * 24 * 3600),
                k: 10,
                similarities: Similarity::ALL.to_vec(),
                indexes: Vec::new(),
            },
            &mut |_, _| {},
        )
        .expect("verify");
    // (2 stations + ALL) x 4 horizons x 7 variables x 2 similarities.
    assert_eq!(report.rows.len(), 3 * 4 * 7 * 2);
    for r in &report.rows {
        assert!(r.cases > 0);
        // Deterministic references: CRPS is the MAE.
        assert!((r.persistence.crps - r.persistence.mae).abs() < 1e-9);
        assert!((r.climatology.crps - r.climatology.mae).abs() < 1e-9);
        assert!(r.ensemble.rmse >= r.ensemble.mae - 1e-9);
        let skill = r.skill.rmse_vs_persistence.expect("nonzero reference");
        assert!((skill - (1.0 - r.ensemble.rmse / r.persistence.rmse)).abs() < 1e-12);
    }
    let pooled: u64 = report
        .rows
        .iter()
        .filter(|r| {
            r.station == "ALL" && r.variable == "t2m" && r.horizon == "6h" && r.similarity == "seed"
        })
        .map(|r| r.cases)
        .sum();
    let per_station: u64 = report
        .rows
        .iter()
        .filter(|r| {
            r.station != "ALL" && r.variable == "t2m" && r.horizon == "6h" && r.similarity == "seed"
        })
        .map(|r| r.cases)
        .sum();
    assert_eq!(pooled, per_station);
    // Issue times are the 5 held-out days (minus none: the data goes on past them).
    assert_eq!(per_station, 2 * 5 * 24);

    let err = model
        .verify(
            &VerifyOptions {
                holdout_from: JAN1 + 3600,
                holdout_until: None,
                k: 10,
                similarities: vec![Similarity::Seed],
                indexes: Vec::new(),
            },
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(err.to_string().starts_with("holdout_from:"), "{err}");
}

fn files_of(model: &ForecastModel) -> (String, Vec<(String, Vec<u8>)>) {
    let files = model.to_files().expect("serialise");
    (files.manifest, files.files)
}

fn load(manifest: &str, files: &[(String, Vec<u8>)]) -> Result<ForecastModel, ForecastError> {
    ForecastModel::load(manifest, &mut |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| AlignedBytes::copy_from(b))
            .ok_or_else(|| "no such file".to_owned())
    })
}

#[test]
fn saved_models_load_and_forecast_identically() {
    let data = dataset(&synthetic_csv(&["EWR", "LGA"], 30, 17));
    let model = build(&data, &BuildOptions::default());
    let (manifest, files) = files_of(&model);
    assert_eq!(
        files.len(),
        2 * 6,
        "a series file, a states file and 4 horizon files per station"
    );
    let loaded = load(&manifest, &files).expect("load");
    assert_eq!(loaded.version(), model.version());
    assert_eq!(loaded.stations(), model.stations());
    assert_eq!(loaded.analog_counts(), model.analog_counts());
    for station in ["EWR", "LGA"] {
        assert_eq!(loaded.issue_range(station), model.issue_range(station));
        for horizon in Horizon::ALL {
            for similarity in Similarity::ALL {
                let mut req = request(station, Some(JAN1 + 20 * 86400), horizon);
                req.similarity = similarity;
                let want = model.forecast(&req).expect("the built model forecasts");
                assert_eq!(
                    loaded.forecast(&req).expect("the loaded model forecasts"),
                    want
                );
            }
        }
    }
    let manifest_json: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(manifest_json["format_version"], 2);
    for station in manifest_json["stations"].as_array().expect("stations") {
        for horizon in station["horizon_files"].as_array().expect("horizons") {
            // The demo-sized data resolves `auto` to exact search everywhere.
            assert_eq!(horizon["index"]["kind"], "flat", "{horizon}");
        }
    }
    assert_eq!(loaded.indexes(), model.indexes());
    assert_eq!(loaded.resident_bytes(), model.resident_bytes());
    assert_eq!(manifest_json["window_hours"], model.options().window);

    // Other data, another version.
    let other = build(
        &dataset(&synthetic_csv(&["EWR", "LGA"], 30, 18)),
        &BuildOptions::default(),
    );
    assert_ne!(other.version(), model.version());
}

#[test]
fn ivfpq_horizons_are_saved_loaded_and_answer_identically() {
    let data = dataset(&synthetic_csv(&["EWR", "LGA"], 30, 21));
    let options = BuildOptions {
        index: "seed".parse().expect("plan"),
        ..BuildOptions::default()
    };
    let model = build(&data, &options);
    let kinds: Vec<(String, Horizon, IndexKind)> = model
        .indexes()
        .into_iter()
        .map(|i| (i.station, i.horizon, i.kind))
        .collect();
    for station in ["EWR", "LGA"] {
        for (horizon, kind) in [
            (Horizon::H6, IndexKind::Flat),
            (Horizon::H12, IndexKind::Flat),
            (Horizon::H24, IndexKind::Ivfpq),
            (Horizon::H48, IndexKind::Ivfpq),
        ] {
            assert!(
                kinds.contains(&(station.to_owned(), horizon, kind)),
                "{station} {horizon}: {kinds:?}"
            );
        }
    }
    let (manifest, files) = files_of(&model);
    assert!(files.iter().any(|(n, _)| n == "EWR.24h.ivfpq.sbx"));
    assert!(!files.iter().any(|(n, _)| n == "EWR.6h.ivfpq.sbx"));
    let manifest_json: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    let h24 = &manifest_json["stations"][0]["horizon_files"][2];
    assert_eq!(h24["index"]["kind"], "ivfpq", "{h24}");
    assert_eq!(h24["index"]["nlist"], 64, "{h24}");
    assert_eq!(h24["ivfpq_file"]["name"], "EWR.24h.ivfpq.sbx", "{h24}");

    let loaded = load(&manifest, &files).expect("load");
    assert_eq!(loaded.version(), model.version());
    assert_eq!(loaded.indexes(), model.indexes());
    assert_eq!(loaded.resident_bytes(), model.resident_bytes());
    for station in ["EWR", "LGA"] {
        for horizon in Horizon::ALL {
            for similarity in Similarity::ALL {
                for day in [12, 20, 29] {
                    let mut req = request(station, Some(JAN1 + day * 86400), horizon);
                    req.similarity = similarity;
                    let want = model.forecast(&req).expect("the built model forecasts");
                    assert_eq!(loaded.forecast(&req).expect("loaded"), want);
                }
            }
        }
    }
    // Another plan is another model version (the cache keys on it).
    assert_ne!(
        build(&data, &BuildOptions::default()).version(),
        model.version()
    );

    // A corrupt IVF-PQ file is refused by name.
    let mut flipped = files.clone();
    let target = flipped
        .iter_mut()
        .find(|(n, _)| n == "LGA.48h.ivfpq.sbx")
        .expect("file");
    let middle = target.1.len() / 2;
    target.1[middle] ^= 0x10;
    match load(&manifest, &flipped) {
        Err(ForecastError::Corrupt { file, message }) => {
            assert_eq!(file, "LGA.48h.ivfpq.sbx");
            assert!(message.contains("checksum mismatch"), "{message}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a corrupt IVF-PQ file was accepted"),
    }
}

#[test]
fn corrupt_replaced_or_missing_files_are_refused_by_name() {
    let data = dataset(&synthetic_csv(&["EWR", "LGA"], 20, 19));
    let model = build(&data, &BuildOptions::default());
    let (manifest, files) = files_of(&model);
    let expect_corrupt =
        |files: &[(String, Vec<u8>)], manifest: &str, file: &str, says: &str| match load(
            manifest, files,
        ) {
            Err(ForecastError::Corrupt { file: f, message }) => {
                assert_eq!(f, file);
                assert!(message.contains(says), "{message}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a bad {file} was accepted"),
        };

    let mut flipped = files.clone();
    let target = flipped
        .iter_mut()
        .find(|(n, _)| n == "LGA.24h.sbx")
        .expect("file");
    let middle = target.1.len() / 2;
    target.1[middle] ^= 0x40;
    expect_corrupt(&flipped, &manifest, "LGA.24h.sbx", "checksum mismatch");

    // Another valid analogs file (the 24 h ids as the 6 h ones). Horizon files hold only state
    // ids, so the same horizon of two stations with the same gaps is byte-identical (and
    // interchangeable); another horizon's differs.
    let mut swapped = files.clone();
    let other = swapped
        .iter()
        .find(|(n, _)| n == "LGA.24h.sbx")
        .expect("file")
        .1
        .clone();
    swapped
        .iter_mut()
        .find(|(n, _)| n == "LGA.6h.sbx")
        .expect("file")
        .1 = other;
    expect_corrupt(&swapped, &manifest, "LGA.6h.sbx", "the file was replaced");

    let missing: Vec<_> = files
        .iter()
        .filter(|(n, _)| n != "EWR.series.sbx")
        .cloned()
        .collect();
    expect_corrupt(&missing, &manifest, "EWR.series.sbx", "no such file");

    let mut foreign = files.clone();
    foreign[0].1 = b"not an index at all, just text".repeat(4);
    let name = foreign[0].0.clone();
    expect_corrupt(&foreign, &manifest, &name, "not a signalbox index file");

    let mut truncated = files.clone();
    let target = truncated
        .iter_mut()
        .find(|(n, _)| n == "EWR.states.sbx")
        .expect("file");
    target.1.truncate(target.1.len() * 2 / 3);
    expect_corrupt(&truncated, &manifest, "EWR.states.sbx", "");
    assert!(load(&manifest, &truncated)
        .unwrap_err()
        .to_string()
        .starts_with("EWR.states.sbx: "));

    let mut flipped_states = files.clone();
    let target = flipped_states
        .iter_mut()
        .find(|(n, _)| n == "LGA.states.sbx")
        .expect("file");
    let at = target.1.len() - 100;
    target.1[at] ^= 0x01;
    expect_corrupt(
        &flipped_states,
        &manifest,
        "LGA.states.sbx",
        "checksum mismatch",
    );

    // A states file from another station is a valid container of the right kind: the
    // manifest's checksum refuses it.
    let mut swapped_states = files.clone();
    let lga = swapped_states
        .iter()
        .find(|(n, _)| n == "LGA.states.sbx")
        .expect("file")
        .1
        .clone();
    swapped_states
        .iter_mut()
        .find(|(n, _)| n == "EWR.states.sbx")
        .expect("file")
        .1 = lga;
    expect_corrupt(
        &swapped_states,
        &manifest,
        "EWR.states.sbx",
        "the file was replaced",
    );

    // A model written by an older build (format 1) is refused with advice to rebuild.
    let old = manifest.replacen("\"format_version\": 2", "\"format_version\": 1", 1);
    assert_ne!(old, manifest);
    expect_corrupt(
        &files,
        &old,
        MANIFEST,
        "model format version 1 is not supported",
    );
    expect_corrupt(
        &files,
        &old,
        MANIFEST,
        "rebuild the model with `signalbox forecast build`",
    );

    expect_corrupt(&files, "{\"format\": 3}", MANIFEST, "not a model manifest");
    let tampered = manifest.replacen("\"version\": \"anen-", "\"version\": \"anen-0", 1);
    expect_corrupt(&files, &tampered, MANIFEST, "does not match the files");
}

/// Acceptance: on the bundled data, the seed preset (IVF-PQ at 24 h and 48 h) verifies within
/// 1 % of exact search: the pooled (`ALL`) ensemble CRPS of every horizon, variable and
/// similarity. The holdout is November 2013 only (the documented verification runs to the end
/// of December): one month keeps this affordable in a debug build, and the release command
/// `forecast verify --holdout-from 2013-11-01 --index-plans flat,seed` gives the full figure.
#[test]
fn the_seed_preset_verifies_within_one_percent_of_exact_search() {
    let csv = include_str!("../../../demo/nyc_weather_2013.csv");
    let model = build(&dataset(csv), &BuildOptions::default());
    let report = model
        .verify(
            &VerifyOptions {
                holdout_from: analog::forecast::parse_time("2013-11-01").expect("date"),
                holdout_until: Some(analog::forecast::parse_time("2013-12-01").expect("date")),
                k: 10,
                similarities: Similarity::ALL.to_vec(),
                indexes: vec!["flat".parse().expect("plan"), "seed".parse().expect("plan")],
            },
            &mut |_, _| {},
        )
        .expect("verify");
    let mut worst = (0.0f64, String::new());
    let mut compared = 0;
    for row in report
        .rows
        .iter()
        .filter(|r| r.station == "ALL" && r.index == "seed")
    {
        let flat = report
            .rows
            .iter()
            .find(|f| {
                f.station == "ALL"
                    && f.index == "flat"
                    && f.horizon == row.horizon
                    && f.variable == row.variable
                    && f.similarity == row.similarity
            })
            .expect("a flat row for every seed row");
        assert_eq!(flat.cases, row.cases, "the same cases");
        let relative = (row.ensemble.crps / flat.ensemble.crps - 1.0).abs();
        let place = format!("{} {} {}", row.similarity, row.horizon, row.variable);
        if relative >= worst.0 {
            worst = (relative, place.clone());
        }
        assert!(
            relative < 0.01,
            "{place}: CRPS {:.4} (seed preset) vs {:.4} (flat): {:.2} %",
            row.ensemble.crps,
            flat.ensemble.crps,
            relative * 100.0
        );
        compared += 1;
    }
    assert_eq!(compared, 2 * Horizon::ALL.len() * NVARS);
    eprintln!(
        "seed preset vs flat, pooled CRPS over November 2013: at most {:.3} % apart ({})",
        worst.0 * 100.0,
        worst.1
    );
    // The text output's summary finds the same kind of figure (over stations too).
    let differences = report.index_differences();
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert!(differences.iter().all(|d| d.index == "seed"));
}
