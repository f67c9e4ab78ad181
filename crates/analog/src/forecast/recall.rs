//! How well each horizon's index finds the exact analogs: recall@k of the model's search
//! against an exact flat search over the same states, and the time of each.
//!
//! The queries are the model's own states, a deterministic sample spread over the stations
//! and the period; each search skips the analogs within `W + h` state ids of the query's (as
//! a forecast skips the hours near its issue time), the same range for both searches, so the
//! comparison is like for like. Time comes from the caller's clock (the crate has none).

use std::borrow::Cow;
use std::ops::Range;
use std::time::Duration;

use serde::Serialize;

use super::anen::AnEnIndex;
use super::index::{serialize_display, HorizonIndex, HorizonIndexError, IndexChoice, IndexKind};
use super::{ForecastError, ForecastModel, Horizon, Similarity};
use crate::IvfPqIndex;

/// One horizon's recall and search times, over all stations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HorizonRecall {
    /// Horizon (`"24h"` in JSON).
    #[serde(serialize_with = "serialize_display")]
    pub horizon: Horizon,
    /// Similarity searched with (`"seed"` or `"anen"`).
    #[serde(serialize_with = "serialize_display")]
    pub similarity: Similarity,
    /// The index kinds of this horizon across stations, each once, in [`IndexKind`] order.
    pub kinds: Vec<IndexKind>,
    /// Stations with analogs at this horizon.
    pub stations: usize,
    /// Queries searched.
    pub queries: usize,
    /// Neighbours compared per query.
    pub k: usize,
    /// Fraction of the exact `k` nearest that the index returned (1 for flat horizons).
    pub recall: f64,
    /// Median search time of the model's index, µs.
    pub index_us_p50: f64,
    /// 99th percentile search time of the model's index, µs.
    pub index_us_p99: f64,
    /// Median exact (flat) search time, µs.
    pub exact_us_p50: f64,
    /// 99th percentile exact (flat) search time, µs.
    pub exact_us_p99: f64,
}

/// One station's searchable horizon.
pub(crate) struct SearchedHorizon<'a> {
    pub horizon: Horizon,
    pub states: &'a AnEnIndex,
    pub ids: Cow<'a, [u32]>,
    pub choice: IndexChoice,
    pub ivfpq: Option<&'a IvfPqIndex>,
}

impl SearchedHorizon<'_> {
    fn index(&self) -> HorizonIndex<'_> {
        HorizonIndex {
            states: self.states,
            ids: &self.ids,
            choice: self.choice,
            ivfpq: self.ivfpq,
        }
    }
}

impl ForecastModel {
    /// Per horizon (in [`Horizon::ALL`] order, horizons without analogs left out): recall@k of
    /// the model's index against exact search for `queries` query states spread over the
    /// stations, and the p50/p99 time of both searches measured with `now` (a monotonic
    /// clock).
    ///
    /// # Errors
    /// [`ForecastError::KOutOfRange`] for `k == 0`; [`ForecastError::Corrupt`] when a
    /// horizon's IVF-PQ index does not match its states.
    pub fn index_recall(
        &self,
        queries: usize,
        k: usize,
        similarity: Similarity,
        now: &dyn Fn() -> Duration,
    ) -> Result<Vec<HorizonRecall>, ForecastError> {
        if k == 0 || k > super::MAX_K {
            return Err(ForecastError::KOutOfRange {
                k,
                max: super::MAX_K,
            });
        }
        let window = self.options.window;
        let searched = self.searched_horizons();
        let mut out = Vec::new();
        for horizon in Horizon::ALL {
            let stations: Vec<&SearchedHorizon> = searched
                .iter()
                .filter(|s| s.horizon == horizon && !s.ids.is_empty())
                .collect();
            if stations.is_empty() {
                continue;
            }
            let reach = u32::try_from(window).unwrap_or(u32::MAX) + horizon.hours();
            let mut kinds: Vec<IndexKind> = stations.iter().map(|s| s.choice.kind()).collect();
            kinds.sort_by_key(|k| *k as u8);
            kinds.dedup();
            let (mut found, mut wanted) = (0usize, 0usize);
            let (mut index_times, mut exact_times) = (Vec::new(), Vec::new());
            for j in 0..queries {
                let station = stations[j % stations.len()];
                let ids = &station.ids;
                // A fixed odd stride (golden ratio) spreads the queries over the period.
                let round = (j / stations.len()) as u64;
                let at = (round.wrapping_mul(0x9e37_79b9) % ids.len() as u64) as usize;
                let id = ids[at];
                let Some(query) = station.states.row(id) else {
                    continue;
                };
                let exclude: Range<u32> = id.saturating_sub(reach)..id.saturating_add(reach + 1);
                let index = station.index();
                let start = now();
                let exact = index.search_exact(&query, k, similarity, exclude.clone());
                let middle = now();
                let got = index
                    .search(&query, k, similarity, exclude)
                    .map_err(corrupt(horizon))?;
                let end = now();
                exact_times.push(middle.saturating_sub(start));
                index_times.push(end.saturating_sub(middle));
                wanted += exact.len();
                found += got
                    .iter()
                    .filter(|(g, _)| exact.iter().any(|(e, _)| e == g))
                    .count();
            }
            let (index_us_p50, index_us_p99) = percentiles(&mut index_times);
            let (exact_us_p50, exact_us_p99) = percentiles(&mut exact_times);
            out.push(HorizonRecall {
                horizon,
                similarity,
                kinds,
                stations: stations.len(),
                queries: exact_times.len(),
                k,
                recall: if wanted == 0 {
                    1.0
                } else {
                    found as f64 / wanted as f64
                },
                index_us_p50,
                index_us_p99,
                exact_us_p50,
                exact_us_p99,
            });
        }
        Ok(out)
    }

    /// The states of one station's analogs at `horizon`, row-major (`count × dim` values), and
    /// the dimension: exactly the vectors that horizon's index searches, for comparing with
    /// other search libraries on the same data.
    ///
    /// # Errors
    /// [`ForecastError::UnknownStation`].
    pub fn horizon_vectors(
        &self,
        station: &str,
        horizon: Horizon,
    ) -> Result<(usize, Vec<f32>), ForecastError> {
        let s = self.station(station)?;
        let hm = &s.horizons[horizon.index()];
        Ok((
            s.states.anen.dim(),
            s.states.anen.gather_rows(hm.ids.as_slice()),
        ))
    }

    /// Every station's horizons as searches see them: the station's state tiles, the
    /// horizon's ids, its index choice and IVF-PQ index.
    pub(crate) fn searched_horizons(&self) -> Vec<SearchedHorizon<'_>> {
        self.stations
            .iter()
            .flat_map(|s| {
                s.horizons.iter().map(move |hm| SearchedHorizon {
                    horizon: hm.horizon,
                    states: &s.states.anen,
                    ids: Cow::Borrowed(hm.ids.as_slice()),
                    choice: hm.choice,
                    ivfpq: hm.ivfpq.as_ref(),
                })
            })
            .collect()
    }
}

fn corrupt(horizon: Horizon) -> impl Fn(HorizonIndexError) -> ForecastError {
    move |e| ForecastError::Corrupt {
        file: format!("{horizon} index"),
        message: e.to_string(),
    }
}

/// Median and 99th percentile (nearest rank) in µs; zeros for no samples.
fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    if times.is_empty() {
        return (0.0, 0.0);
    }
    times.sort_unstable();
    let rank = |p: f64| {
        let at = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
        times[at].as_secs_f64() * 1e6
    };
    (rank(0.5), rank(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut times: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(percentiles(&mut times), (50.0, 99.0));
        assert_eq!(percentiles(&mut []), (0.0, 0.0));
        assert_eq!(percentiles(&mut [Duration::from_micros(7)]), (7.0, 7.0));
    }

    /// Flat horizons find exactly the exact analogs; the clock is the caller's (here a counter
    /// advancing 1 µs per reading, so every search "takes" 1 µs).
    #[test]
    fn flat_model_has_full_recall_with_the_callers_clock() {
        let data = super::super::parse_csv(
            include_str!("../../../../demo/nyc_weather_2013.csv").as_bytes(),
        )
        .expect("bundled data");
        let model =
            ForecastModel::build(&data, &Default::default(), &mut |_, _| {}).expect("build");
        let ticks = std::cell::Cell::new(0u64);
        let now = || {
            ticks.set(ticks.get() + 1);
            Duration::from_micros(ticks.get())
        };
        for similarity in Similarity::ALL {
            let rows = model
                .index_recall(30, 10, similarity, &now)
                .expect("recall");
            assert_eq!(rows.len(), 4);
            for (row, horizon) in rows.iter().zip(Horizon::ALL) {
                assert_eq!(row.horizon, horizon);
                assert_eq!(row.kinds, vec![IndexKind::Flat]);
                assert_eq!((row.queries, row.k, row.stations), (30, 10, 3));
                assert_eq!(row.recall, 1.0);
                assert_eq!((row.index_us_p50, row.exact_us_p99), (1.0, 1.0));
            }
        }
        assert!(model.index_recall(5, 0, Similarity::Seed, &now).is_err());
    }

    /// The exported vectors are the horizon's analogs' states, in id order.
    #[test]
    fn horizon_vectors_are_the_analog_states() {
        let data = super::super::parse_csv(
            include_str!("../../../../demo/nyc_weather_2013.csv").as_bytes(),
        )
        .expect("bundled data");
        let model =
            ForecastModel::build(&data, &Default::default(), &mut |_, _| {}).expect("build");
        let counts = model.analog_counts();
        for horizon in [Horizon::ALL[0], Horizon::ALL[3]] {
            let (dim, rows) = model.horizon_vectors("JFK", horizon).expect("station");
            assert_eq!(dim, model.options().window * 7 + 4);
            let expected = counts
                .iter()
                .find(|(s, h, _)| s == "JFK" && *h == horizon)
                .map(|(_, _, n)| *n)
                .expect("count");
            assert_eq!(rows.len(), expected * dim);
            let s = model.station("JFK").expect("station");
            let hm = &s.horizons[horizon.index()];
            let first = hm.ids.as_slice()[0];
            assert_eq!(
                &rows[..dim],
                s.states.anen.row(first).expect("row").as_slice()
            );
        }
        assert!(model.horizon_vectors("XXX", Horizon::ALL[0]).is_err());
    }
}
