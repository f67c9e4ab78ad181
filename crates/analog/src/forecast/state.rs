//! Standardisation and the state vector.

use serde::{Deserialize, Serialize};

use super::anen::Block;
use super::data::SeriesView;
use super::{StationSeries, Variable, NVARS};

/// Per-predictor mean and standard deviation from the training period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    /// Mean per variable, in [`Variable::ALL`] order.
    pub mean: [f64; NVARS],
    /// Standard deviation (population) per variable; a constant predictor gets 1 so that it
    /// standardises to 0 instead of dividing by zero.
    pub std: [f64; NVARS],
}

impl Standardization {
    /// Mean and standard deviation of every non-missing value of the series (all stations
    /// pooled, so one standardisation serves every station).
    ///
    /// ```
    /// use analog::forecast::{Standardization, StationSeries};
    /// let series = StationSeries {
    ///     station: "X".into(),
    ///     start: 0,
    ///     columns: std::array::from_fn(|v| if v == 0 { vec![1.0, 3.0, f32::NAN] } else { vec![2.0; 3] }),
    /// };
    /// let s = Standardization::fit(&[series]);
    /// assert_eq!((s.mean[0], s.std[0]), (2.0, 1.0));
    /// assert_eq!((s.mean[1], s.std[1]), (2.0, 1.0)); // constant: std falls back to 1
    /// ```
    pub fn fit(series: &[StationSeries]) -> Standardization {
        let mut mean = [0.0; NVARS];
        let mut std = [1.0; NVARS];
        for v in 0..NVARS {
            let (mut n, mut sum, mut sum_sq) = (0u64, 0.0f64, 0.0f64);
            for s in series {
                for &x in s.columns[v].iter().filter(|x| x.is_finite()) {
                    let x = f64::from(x);
                    n += 1;
                    sum += x;
                    sum_sq += x * x;
                }
            }
            if n > 0 {
                let m = sum / n as f64;
                mean[v] = m;
                let var = (sum_sq / n as f64 - m * m).max(0.0);
                if var.sqrt() > 1e-9 {
                    std[v] = var.sqrt();
                }
            }
        }
        Standardization { mean, std }
    }

    /// `(x − mean) / std` for variable `v`.
    pub fn apply(&self, v: usize, x: f32) -> f32 {
        ((f64::from(x) - self.mean[v]) / self.std[v]) as f32
    }
}

/// The shape of a state vector: window length and calendar weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StateShape {
    pub window: usize,
    pub hour_weight: f32,
    pub season_weight: f32,
}

/// Calendar components after the predictor blocks.
pub(crate) const CALENDAR_DIMS: usize = 4;
const SECONDS_PER_DAY: f64 = 86_400.0;
const DAYS_PER_YEAR: f64 = 365.2425;

impl StateShape {
    pub fn dim(&self) -> usize {
        NVARS * self.window + CALENDAR_DIMS
    }

    /// AnEn blocks: one per predictor (weighted) then the hour and season pairs (weight 1:
    /// their values already carry the calendar weights).
    pub fn blocks(&self, weights: &[f32; NVARS]) -> Vec<Block> {
        let w = self.window;
        let mut blocks: Vec<Block> = (0..NVARS)
            .map(|v| Block {
                start: v * w,
                len: w,
                weight: weights[v],
            })
            .collect();
        blocks.push(Block {
            start: NVARS * w,
            len: 2,
            weight: 1.0,
        });
        blocks.push(Block {
            start: NVARS * w + 2,
            len: 2,
            weight: 1.0,
        });
        blocks
    }

    /// Writes the state at grid hour `i` into `out` (`dim()` values), or says which value is
    /// missing: `Err(Some((variable, hour_index)))`, or `Err(None)` when the window starts
    /// before the grid.
    pub fn state(
        &self,
        series: SeriesView<'_>,
        stdz: &Standardization,
        i: usize,
        out: &mut [f32],
    ) -> Result<(), Option<(Variable, usize)>> {
        let w = self.window;
        if i + 1 < w || i >= series.len() {
            return Err(None);
        }
        let first = i + 1 - w;
        for v in Variable::ALL {
            let column = &series.columns[v.index()][first..=i];
            let block = &mut out[v.index() * w..(v.index() + 1) * w];
            for (j, (o, &x)) in block.iter_mut().zip(column).enumerate() {
                if !x.is_finite() {
                    return Err(Some((v, first + j)));
                }
                *o = stdz.apply(v.index(), x);
            }
        }
        let t = series.time(i) as f64;
        let hour = (t / 3600.0).rem_euclid(24.0) / 24.0 * std::f64::consts::TAU;
        let year = (t / SECONDS_PER_DAY / DAYS_PER_YEAR).rem_euclid(1.0) * std::f64::consts::TAU;
        let cal = &mut out[NVARS * w..];
        cal[0] = (hour.cos() * f64::from(self.hour_weight)) as f32;
        cal[1] = (hour.sin() * f64::from(self.hour_weight)) as f32;
        cal[2] = (year.cos() * f64::from(self.season_weight)) as f32;
        cal[3] = (year.sin() * f64::from(self.season_weight)) as f32;
        Ok(())
    }
}
