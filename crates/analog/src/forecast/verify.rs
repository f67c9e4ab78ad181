//! Verification on a held-out period against persistence and climatology.
//!
//! The model is rebuilt from the observations before `holdout_from` only (standardisation,
//! analogs and climatology), so no analog, and no analog's outcome, comes from the held-out
//! period. Every hour in `[holdout_from, holdout_until)` with a state is an issue time; a case
//! is an issue time, horizon and variable whose value `h` hours later was observed. The three
//! forecasts are scored on the same cases:
//!
//! * **ensemble**: the mean of the `k` members for RMSE, MAE and bias (forecast − observed),
//!   all members for the CRPS ([`crps_ensemble`](super::crps_ensemble));
//! * **persistence**: the value at the issue time;
//! * **climatology**: a harmonic fit to the training period ([`Climatology`]).
//!
//! Persistence and climatology are single values, so their CRPS equals their MAE. Skill is
//! `1 − score / score_reference`, for RMSE and CRPS against each reference.

use serde::Serialize;

use super::model::{BuildOptions, ForecastModel};
use super::{
    crps_ensemble, format_time, ForecastError, Horizon, IndexPlan, Similarity, StationSeries,
    Variable, NVARS,
};

/// What to verify.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// First held-out hour (unix seconds); training uses only earlier observations.
    pub holdout_from: i64,
    /// End of the held-out issue times (exclusive); `None` is the end of the data.
    pub holdout_until: Option<i64>,
    /// Ensemble size.
    pub k: usize,
    /// Metrics to score.
    pub similarities: Vec<Similarity>,
    /// Index plans to score (each rebuilds the training model with that plan); empty: the
    /// model's own plan.
    pub indexes: Vec<IndexPlan>,
}

/// Scores of one forecast kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Mean of forecast − observed.
    pub bias: f64,
    /// Mean CRPS (equal to `mae` for the single-valued references).
    pub crps: f64,
}

/// Skill scores, `1 − score / reference` (`None` when the reference scored 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Skill {
    /// RMSE skill against persistence.
    pub rmse_vs_persistence: Option<f64>,
    /// RMSE skill against climatology.
    pub rmse_vs_climatology: Option<f64>,
    /// CRPS skill against persistence.
    pub crps_vs_persistence: Option<f64>,
    /// CRPS skill against climatology.
    pub crps_vs_climatology: Option<f64>,
}

/// Scores for one station (or `ALL`), horizon, variable and similarity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationRow {
    /// Station code, or `ALL` for every station pooled.
    pub station: String,
    /// Horizon, e.g. `24h`.
    pub horizon: String,
    /// Variable name.
    pub variable: String,
    /// Unit of the scores.
    pub unit: String,
    /// `seed` or `anen`.
    pub similarity: String,
    /// The index plan the training model was built with (e.g. `flat`, `seed`, `auto`).
    pub index: String,
    /// Number of cases.
    pub cases: u64,
    /// The analog ensemble.
    pub ensemble: Scores,
    /// Mean ensemble spread (sample standard deviation of the members).
    pub mean_spread: f64,
    /// Persistence.
    pub persistence: Scores,
    /// Climatology.
    pub climatology: Scores,
    /// The ensemble's skill.
    pub skill: Skill,
}

/// The result of [`ForecastModel::verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationReport {
    /// First held-out hour, RFC 3339.
    pub holdout_from: String,
    /// End of the held-out issue times, RFC 3339 (`None`: the end of the data).
    pub holdout_until: Option<String>,
    /// Ensemble size.
    pub k: usize,
    /// How analogs became members: `absolute` or `delta`.
    pub member_kind: String,
    /// Trailing window, hours.
    pub window: usize,
    /// Analogs available per station and horizon after the cut (`station`, `horizon`, count).
    pub training_analogs: Vec<(String, String, usize)>,
    /// How the climatology reference is made.
    pub climatology: String,
    /// Rows per station (then `ALL`), horizon, variable and similarity.
    pub rows: Vec<VerificationRow>,
}

/// How far one index plan's ensemble CRPS strays from the flat (exact) plan's on the same
/// cases: the largest relative difference over every station (and `ALL`), horizon and
/// variable of one similarity ([`VerificationReport::index_differences`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexDifference {
    /// `seed` or `anen`.
    pub similarity: String,
    /// The plan compared with `flat`.
    pub index: String,
    /// Where the difference is largest: station (or `ALL`), horizon, variable.
    pub station: String,
    /// Horizon of the largest difference.
    pub horizon: String,
    /// Variable of the largest difference.
    pub variable: String,
    /// `|CRPS_index / CRPS_flat − 1|` there.
    pub relative_crps: f64,
    /// The CRPS skill (against climatology) there: flat, then the plan. The skill changes by
    /// `ΔCRPS / CRPS_climatology`.
    pub skill_vs_climatology: (Option<f64>, Option<f64>),
}

impl VerificationReport {
    /// Per similarity and per plan other than `flat`, the largest relative CRPS difference
    /// from the `flat` plan's rows (empty when `flat` was not scored).
    pub fn index_differences(&self) -> Vec<IndexDifference> {
        let flat = IndexPlan::all(super::IndexRequest::Flat).to_string();
        let mut out: Vec<IndexDifference> = Vec::new();
        for row in self.rows.iter().filter(|r| r.index != flat) {
            let Some(base) = self.rows.iter().find(|b| {
                b.index == flat
                    && b.station == row.station
                    && b.horizon == row.horizon
                    && b.variable == row.variable
                    && b.similarity == row.similarity
            }) else {
                continue;
            };
            let relative = if base.ensemble.crps > 0.0 {
                (row.ensemble.crps / base.ensemble.crps - 1.0).abs()
            } else if row.ensemble.crps == base.ensemble.crps {
                0.0
            } else {
                f64::INFINITY
            };
            let candidate = IndexDifference {
                similarity: row.similarity.clone(),
                index: row.index.clone(),
                station: row.station.clone(),
                horizon: row.horizon.clone(),
                variable: row.variable.clone(),
                relative_crps: relative,
                skill_vs_climatology: (
                    base.skill.crps_vs_climatology,
                    row.skill.crps_vs_climatology,
                ),
            };
            match out
                .iter_mut()
                .find(|d| d.similarity == row.similarity && d.index == row.index)
            {
                Some(d) if d.relative_crps < relative => *d = candidate,
                Some(_) => {}
                None => out.push(candidate),
            }
        }
        out
    }
}

/// Per station and variable, a least-squares fit of
/// `a₀ + annual harmonic + two diurnal harmonics + annual × diurnal interactions` (11 terms;
/// UTC hour of day, phase of the year) to the training observations: a climatology that can
/// be evaluated on days the training period did not cover (a one-year record has no November
/// before November). Values are clamped to what is physically possible. With fewer than 100
/// observations the fit falls back to the training mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Climatology {
    coefficients: [Vec<f64>; NVARS],
}

const TERMS: usize = 11;

fn climate_terms(t: i64) -> [f64; TERMS] {
    let t = t as f64;
    let day = (t / 3600.0).rem_euclid(24.0) / 24.0 * std::f64::consts::TAU;
    let year = (t / 86_400.0 / 365.2425).rem_euclid(1.0) * std::f64::consts::TAU;
    let (cy, sy) = (year.cos(), year.sin());
    let (cd, sd) = (day.cos(), day.sin());
    [
        1.0,
        cy,
        sy,
        cd,
        sd,
        (2.0 * day).cos(),
        (2.0 * day).sin(),
        cy * cd,
        cy * sd,
        sy * cd,
        sy * sd,
    ]
}

impl Climatology {
    /// Fits every variable of one station's series.
    pub fn fit(series: &StationSeries) -> Climatology {
        Climatology {
            coefficients: std::array::from_fn(|v| {
                let points = (0..series.len())
                    .map(|i| (series.time(i), series.columns[v][i]))
                    .filter(|(_, x)| x.is_finite())
                    .map(|(t, x)| (t, f64::from(x)));
                fit_harmonics(points)
            }),
        }
    }

    /// The climatological value of `v` at unix time `t` (NaN if the training period had none).
    pub fn predict(&self, v: Variable, t: i64) -> f64 {
        let c = &self.coefficients[v.index()];
        if c.is_empty() {
            return f64::NAN;
        }
        let terms = climate_terms(t);
        v.clamp(c.iter().zip(terms).map(|(a, b)| a * b).sum())
    }
}

/// Least squares by the normal equations (11 × 11, f64, partial pivoting); falls back to the
/// mean for short records or a singular system.
fn fit_harmonics(points: impl Iterator<Item = (i64, f64)>) -> Vec<f64> {
    let mut ata = [[0.0f64; TERMS]; TERMS];
    let mut atb = [0.0f64; TERMS];
    let (mut n, mut sum) = (0usize, 0.0f64);
    for (t, y) in points {
        let x = climate_terms(t);
        for r in 0..TERMS {
            for c in 0..TERMS {
                ata[r][c] += x[r] * x[c];
            }
            atb[r] += x[r] * y;
        }
        n += 1;
        sum += y;
    }
    if n == 0 {
        return Vec::new();
    }
    let mean_only = || {
        let mut c = vec![0.0; TERMS];
        c[0] = sum / n as f64;
        c
    };
    if n < 100 {
        return mean_only();
    }
    solve(ata, atb).unwrap_or_else(mean_only)
}

fn solve(mut a: [[f64; TERMS]; TERMS], mut b: [f64; TERMS]) -> Option<Vec<f64>> {
    for col in 0..TERMS {
        let pivot = (col..TERMS).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; TERMS];
    for row in (0..TERMS).rev() {
        let s: f64 = (row + 1..TERMS).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: u64,
    err: f64,
    sq: f64,
    abs: f64,
    crps: f64,
}

impl Sums {
    fn add(&mut self, forecast: f64, observed: f64, crps: f64) {
        let e = forecast - observed;
        self.n += 1;
        self.err += e;
        self.sq += e * e;
        self.abs += e.abs();
        self.crps += crps;
    }

    fn merge(&mut self, o: &Sums) {
        self.n += o.n;
        self.err += o.err;
        self.sq += o.sq;
        self.abs += o.abs;
        self.crps += o.crps;
    }

    fn scores(&self) -> Scores {
        let n = self.n.max(1) as f64;
        Scores {
            rmse: (self.sq / n).sqrt(),
            mae: self.abs / n,
            bias: self.err / n,
            crps: self.crps / n,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    ensemble: Sums,
    spread: f64,
    persistence: Sums,
    climatology: Sums,
}

impl Cell {
    fn merge(&mut self, o: &Cell) {
        self.ensemble.merge(&o.ensemble);
        self.spread += o.spread;
        self.persistence.merge(&o.persistence);
        self.climatology.merge(&o.climatology);
    }
}

fn skill(score: f64, reference: f64) -> Option<f64> {
    (reference > 0.0).then(|| 1.0 - score / reference)
}

impl ForecastModel {
    /// The model and climatologies rebuilt from observations before `from` only.
    fn training_model(
        &self,
        from: i64,
        index: IndexPlan,
    ) -> Result<(ForecastModel, Vec<Climatology>), ForecastError> {
        let training: Vec<StationSeries> = self
            .stations
            .iter()
            .map(|s| s.series.view().before(&s.code, from))
            .collect();
        if training.iter().all(|s| s.len() < 24 * 7) {
            return Err(ForecastError::InvalidOption {
                field: "holdout_from",
                message: format!(
                    "{} leaves less than a week of training data",
                    format_time(from)
                ),
            });
        }
        let climatologies = training.iter().map(Climatology::fit).collect();
        let options = BuildOptions {
            index,
            ..self.options.clone()
        };
        let trained = ForecastModel::build_from_series(training, &options, &mut |_, _| {})?;
        Ok((trained, climatologies))
    }

    /// Scores the analog ensemble, persistence and climatology on the held-out period (see the
    /// module docs of `verify`). `progress(done, total)` is called per station and horizon.
    ///
    /// # Errors
    /// [`ForecastError::KOutOfRange`], [`ForecastError::InvalidOption`] when the period leaves
    /// no training data or no held-out hours.
    pub fn verify(
        &self,
        options: &VerifyOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<VerificationReport, ForecastError> {
        if options.k == 0 || options.k > super::MAX_K {
            return Err(ForecastError::KOutOfRange {
                k: options.k,
                max: super::MAX_K,
            });
        }
        if options.similarities.is_empty() {
            return Err(ForecastError::InvalidOption {
                field: "similarity",
                message: "at least one similarity is required".to_owned(),
            });
        }
        let from = options.holdout_from;
        let until = options.holdout_until.unwrap_or(i64::MAX);
        if until <= from {
            return Err(ForecastError::InvalidOption {
                field: "holdout_until",
                message: "must be after holdout_from".to_owned(),
            });
        }
        let plans = if options.indexes.is_empty() {
            vec![self.options.index]
        } else {
            options.indexes.clone()
        };
        let mut trained_models = Vec::with_capacity(plans.len());
        for plan in &plans {
            trained_models.push(self.training_model(from, *plan)?);
        }
        // Every (index plan, similarity) pair scores the same cases.
        let scorers: Vec<(usize, Similarity)> = (0..plans.len())
            .flat_map(|p| options.similarities.iter().map(move |s| (p, *s)))
            .collect();
        let nscorers = scorers.len();
        let total = self.stations.len() * Horizon::ALL.len();
        let mut done = 0;
        // cells[station][horizon][variable][scorer]
        let mut cells = vec![
            vec![vec![vec![Cell::default(); nscorers]; NVARS]; Horizon::ALL.len()];
            self.stations.len()
        ];
        let mut any_case = false;
        for (si, station) in self.stations.iter().enumerate() {
            let series = station.series.view();
            let issue: Vec<usize> = (0..series.len())
                .filter(|i| (from..until).contains(&series.time(*i)))
                .collect();
            for horizon in Horizon::ALL {
                let h = horizon.hours() as usize;
                for &i in &issue {
                    let Some(j) = Some(i + h).filter(|j| *j < series.len()) else {
                        continue;
                    };
                    let observed: [f32; NVARS] = std::array::from_fn(|v| series.columns[v][j]);
                    if observed.iter().all(|x| !x.is_finite()) {
                        continue;
                    }
                    // The standardisation does not depend on the plan: one query serves all.
                    let Ok(query) = trained_models[0].0.state_at(series, i) else {
                        continue;
                    };
                    for (mi, &(p, sim)) in scorers.iter().enumerate() {
                        let (trained, climatologies) = &trained_models[p];
                        let model = &trained.stations[si];
                        let clim = &climatologies[si];
                        let neighbors =
                            trained.neighbors(model, horizon, &query, options.k, sim, 0..0)?;
                        if neighbors.is_empty() {
                            continue;
                        }
                        for v in Variable::ALL {
                            let y = f64::from(observed[v.index()]);
                            if !y.is_finite() {
                                continue;
                            }
                            let now = series.value(v, i);
                            let members: Vec<f64> = neighbors
                                .iter()
                                .map(|(id, _)| trained.member(model, horizon, *id, v, now))
                                .collect();
                            let Some(stats) = super::ensemble_stats(&members) else {
                                continue;
                            };
                            let crps = crps_ensemble(&members, y).unwrap_or(f64::NAN);
                            let cell = &mut cells[si][horizon.index()][v.index()][mi];
                            cell.ensemble.add(stats.mean, y, crps);
                            cell.spread += stats.spread;
                            let p = f64::from(now);
                            cell.persistence.add(p, y, (p - y).abs());
                            let c = clim.predict(v, series.time(j));
                            cell.climatology.add(c, y, (c - y).abs());
                            any_case = true;
                        }
                    }
                }
                done += 1;
                progress(done, total);
            }
        }
        if !any_case {
            return Err(ForecastError::InvalidOption {
                field: "holdout_from",
                message: format!("no held-out hour from {} has a state", format_time(from)),
            });
        }

        let mut rows = Vec::new();
        let mut push = |station: &str, horizon: Horizon, v: Variable, mi: usize, cell: &Cell| {
            if cell.ensemble.n == 0 {
                return;
            }
            let ensemble = cell.ensemble.scores();
            let persistence = cell.persistence.scores();
            let climatology = cell.climatology.scores();
            rows.push(VerificationRow {
                station: station.to_owned(),
                horizon: horizon.to_string(),
                variable: v.name().to_owned(),
                unit: v.unit().to_owned(),
                similarity: scorers[mi].1.to_string(),
                index: plans[scorers[mi].0].to_string(),
                cases: cell.ensemble.n,
                ensemble,
                mean_spread: cell.spread / cell.ensemble.n as f64,
                persistence,
                climatology,
                skill: Skill {
                    rmse_vs_persistence: skill(ensemble.rmse, persistence.rmse),
                    rmse_vs_climatology: skill(ensemble.rmse, climatology.rmse),
                    crps_vs_persistence: skill(ensemble.crps, persistence.crps),
                    crps_vs_climatology: skill(ensemble.crps, climatology.crps),
                },
            });
        };
        for (station, station_cells) in self.stations.iter().zip(&cells) {
            for horizon in Horizon::ALL {
                for v in Variable::ALL {
                    let by_similarity = &station_cells[horizon.index()][v.index()];
                    for (mi, cell) in by_similarity.iter().enumerate() {
                        push(&station.code, horizon, v, mi, cell);
                    }
                }
            }
        }
        for horizon in Horizon::ALL {
            for v in Variable::ALL {
                for mi in 0..nscorers {
                    let mut pooled = Cell::default();
                    for station_cells in &cells {
                        pooled.merge(&station_cells[horizon.index()][v.index()][mi]);
                    }
                    push("ALL", horizon, v, mi, &pooled);
                }
            }
        }

        Ok(VerificationReport {
            holdout_from: format_time(from),
            holdout_until: options.holdout_until.map(format_time),
            k: options.k,
            member_kind: self.options.members.name().to_owned(),
            window: self.options.window,
            training_analogs: trained_models[0]
                .0
                .analog_counts()
                .into_iter()
                .map(|(s, h, n)| (s, h.to_string(), n))
                .collect(),
            climatology: "training-period harmonic fit per station and variable: mean, annual \
                          harmonic, two diurnal harmonics (UTC hour) and their interactions"
                .to_owned(),
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{BuildOptions, Standardization};

    fn series(hours: usize) -> StationSeries {
        StationSeries {
            station: "T".to_owned(),
            start: 1_356_998_400,
            columns: std::array::from_fn(|v| {
                (0..hours)
                    .map(|i| (i as f32 * 0.37 + v as f32).sin() * 5.0 + i as f32 * 0.01)
                    .collect()
            }),
        }
    }

    #[test]
    fn training_uses_only_hours_before_the_holdout() {
        let full = series(24 * 40);
        let model = ForecastModel::build_from_series(
            vec![full.clone()],
            &BuildOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
        let from = full.time(24 * 30);
        let (trained, _) = model.training_model(from, IndexPlan::default()).unwrap();
        let before = full.before(from);
        assert_eq!(before.len(), 24 * 30);
        assert_eq!(trained.standardization, Standardization::fit(&[before]));
        assert_ne!(trained.standardization, model.standardization);
        let station = &trained.stations[0];
        let hours = station.states.hours.as_slice();
        for h in &station.horizons {
            let last = *h.ids.as_slice().last().unwrap() as usize;
            let time = station.series.view().time(hours[last] as usize);
            assert!(
                time + h.horizon.seconds() < from,
                "{} analog outcome after the cut",
                h.horizon
            );
        }
    }

    #[test]
    fn climatology_fits_a_harmonic_signal_exactly() {
        let mut s = series(24 * 200);
        let want = |t: i64| {
            let x = climate_terms(t);
            10.0 + 3.0 * x[1] - 2.0 * x[2] + 4.0 * x[3] + 0.5 * x[6] + 0.7 * x[9]
        };
        for i in 0..s.len() {
            s.columns[Variable::T2m.index()][i] = want(s.time(i)) as f32;
        }
        let c = Climatology::fit(&s);
        // Extrapolated 100 days past the data, the fit still reproduces the signal.
        for t in [s.time(0), s.time(s.len() - 1) + 100 * 86_400] {
            assert!((c.predict(Variable::T2m, t) - want(t)).abs() < 1e-3);
        }
    }
}
