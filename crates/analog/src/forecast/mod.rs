//! # Analog-ensemble forecasting from station time series
//!
//! The forecast for a station at issue time `t` and horizon `h` is built from the `k` past
//! hours whose weather looked most like the hours up to `t` (the *analogs*): what followed each
//! analog `h` hours later is one ensemble member. The model is built from hourly station
//! observations ([`parse_csv`] → [`Dataset`]), forecasts with [`ForecastModel::forecast`], and
//! is scored on a held-out period with [`ForecastModel::verify`].
//!
//! * **Variables** ([`Variable`]): `t2m` and `dewpoint` (°C), `humidity` (%), `u10` and `v10`
//!   (m/s, from wind speed and the direction the wind blows from), `msl` (hPa), `precip`
//!   (mm in the hour). All seven are both predictors and forecast variables.
//! * **State vector** at hour `t`: for each predictor, its values over the trailing window
//!   `t − W + 1 ..= t`, standardised with the training period's mean and standard deviation,
//!   stacked predictor by predictor (one block of `W` values each), followed by four calendar
//!   values (`cos`/`sin` of the hour of day, times `hour_weight`; `cos`/`sin` of the phase of
//!   the year, times `season_weight`). A window with any missing value has no state: it is
//!   skipped, never filled.
//! * **Similarity** ([`Similarity`]): `seed` is the Euclidean (L2) distance over the whole
//!   stacked vector, as a FAISS `IndexFlatL2` computes it; `anen` is the analog-ensemble
//!   metric of Delle Monache et al. (2013): per predictor block, the L2 distance over the
//!   window (already divided by the predictor's standard deviation by the standardisation),
//!   weighted and summed (see [`anen`]).
//! * **Members** ([`Members`]): the analogs' observed values `h` hours later, or (`delta`) the
//!   current value plus the analog's change over `h` hours.
//!
//! `docs/forecast.md` in the repository documents the CSV mapping, the statistics, the
//! verification scores and the model directory.

pub mod anen;
mod data;
mod ensemble;
mod index;
mod model;
mod persist;
mod state;
mod verify;

use std::fmt;
use std::str::FromStr;

pub use data::{
    parse_csv, wind_components, BadRow, DataError, Dataset, Observation, StationSeries,
    REQUIRED_COLUMNS,
};
pub use ensemble::{crps_ensemble, ensemble_stats, EnsembleStats};
pub use index::{
    IndexChoice, IndexInfo, IndexKind, IndexPlan, IndexPlanError, IndexRequest, IvfPqSettings,
    AUTO_FLAT_BELOW,
};
pub use model::{
    AnalogRef, BuildOptions, Forecast, ForecastModel, ForecastRequest, ModelPlan, VariableForecast,
    MAX_K,
};
pub use persist::{ModelFiles, StationEntry, StationFiles, LOADABLE_FORMAT, MANIFEST};
pub use state::Standardization;
pub use verify::{
    Climatology, IndexDifference, Scores, Skill, VerificationReport, VerificationRow, VerifyOptions,
};

/// Number of variables (and predictors).
pub const NVARS: usize = 7;

/// A forecast variable (and predictor), in SI-ish units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variable {
    /// 2 m air temperature, °C.
    T2m,
    /// Dew point, °C.
    Dewpoint,
    /// Relative humidity, %.
    Humidity,
    /// Eastward wind component, m/s.
    U10,
    /// Northward wind component, m/s.
    V10,
    /// Sea-level pressure, hPa.
    Msl,
    /// Precipitation in the past hour, mm.
    Precip,
}

impl Variable {
    /// All variables, in state-vector block order.
    pub const ALL: [Variable; NVARS] = [
        Variable::T2m,
        Variable::Dewpoint,
        Variable::Humidity,
        Variable::U10,
        Variable::V10,
        Variable::Msl,
        Variable::Precip,
    ];

    /// The name used on the command line, in JSON and in file sections.
    pub fn name(self) -> &'static str {
        match self {
            Variable::T2m => "t2m",
            Variable::Dewpoint => "dewpoint",
            Variable::Humidity => "humidity",
            Variable::U10 => "u10",
            Variable::V10 => "v10",
            Variable::Msl => "msl",
            Variable::Precip => "precip",
        }
    }

    /// The unit of values of this variable.
    pub fn unit(self) -> &'static str {
        match self {
            Variable::T2m | Variable::Dewpoint => "°C",
            Variable::Humidity => "%",
            Variable::U10 | Variable::V10 => "m/s",
            Variable::Msl => "hPa",
            Variable::Precip => "mm",
        }
    }

    /// Position in [`Variable::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Keeps a derived value physically possible (no negative rain, humidity within 0–100 %).
    pub(crate) fn clamp(self, x: f64) -> f64 {
        match self {
            Variable::Precip => x.max(0.0),
            Variable::Humidity => x.clamp(0.0, 100.0),
            _ => x,
        }
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{given}' (expected one of {expected})")]
pub struct UnknownName {
    /// What was being named ("variable", "horizon", …).
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The accepted names, comma-separated.
    pub expected: &'static str,
}

impl FromStr for Variable {
    type Err = UnknownName;

    /// ```
    /// use analog::forecast::Variable;
    /// assert_eq!("u10".parse::<Variable>(), Ok(Variable::U10));
    /// assert!("wind".parse::<Variable>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variable::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownName {
                what: "variable",
                given: s.to_owned(),
                expected: "t2m, dewpoint, humidity, u10, v10, msl, precip",
            })
    }
}

/// Parses a comma-separated variable list (`t2m,u10`), keeping the given order and dropping
/// repeats.
///
/// ```
/// use analog::forecast::{parse_variables, Variable};
/// assert_eq!(parse_variables("t2m, u10,t2m"), Ok(vec![Variable::T2m, Variable::U10]));
/// ```
///
/// # Errors
/// [`UnknownName`] for the first name that is not a variable.
pub fn parse_variables(list: &str) -> Result<Vec<Variable>, UnknownName> {
    let mut vars = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let v: Variable = name.parse()?;
        if !vars.contains(&v) {
            vars.push(v);
        }
    }
    Ok(vars)
}

/// A forecast horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Horizon {
    /// 6 hours ahead.
    H6,
    /// 12 hours ahead.
    H12,
    /// 24 hours ahead.
    H24,
    /// 48 hours ahead.
    H48,
}

impl Horizon {
    /// All horizons, shortest first.
    pub const ALL: [Horizon; 4] = [Horizon::H6, Horizon::H12, Horizon::H24, Horizon::H48];

    /// Hours ahead.
    pub fn hours(self) -> u32 {
        match self {
            Horizon::H6 => 6,
            Horizon::H12 => 12,
            Horizon::H24 => 24,
            Horizon::H48 => 48,
        }
    }

    /// Seconds ahead.
    pub fn seconds(self) -> i64 {
        i64::from(self.hours()) * 3600
    }

    /// Position in [`Horizon::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Horizon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}h", self.hours())
    }
}

impl FromStr for Horizon {
    type Err = UnknownName;

    /// ```
    /// use analog::forecast::Horizon;
    /// assert_eq!("24h".parse::<Horizon>().map(|h| h.hours()), Ok(24));
    /// assert!("3h".parse::<Horizon>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Horizon::ALL
            .into_iter()
            .find(|h| h.to_string() == s)
            .ok_or_else(|| UnknownName {
                what: "horizon",
                given: s.to_owned(),
                expected: "6h, 12h, 24h, 48h",
            })
    }
}

/// How analogs are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Similarity {
    /// Euclidean distance over the stacked standardised state vector, through the search index
    /// (exact flat L2 today; the seed system's FAISS approach).
    Seed,
    /// The analog-ensemble metric of Delle Monache et al. (2013), by exact brute force.
    AnEn,
}

impl Similarity {
    /// Both metrics.
    pub const ALL: [Similarity; 2] = [Similarity::Seed, Similarity::AnEn];

    /// `"seed"` or `"anen"`.
    pub fn name(self) -> &'static str {
        match self {
            Similarity::Seed => "seed",
            Similarity::AnEn => "anen",
        }
    }
}

impl fmt::Display for Similarity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Similarity {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Similarity::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownName {
                what: "similarity",
                given: s.to_owned(),
                expected: "seed, anen",
            })
    }
}

/// How an analog becomes an ensemble member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Members {
    /// The analog's observed value `h` hours after its time.
    Absolute,
    /// The current value plus the analog's change over `h` hours (clamped to what is
    /// physically possible).
    Delta,
}

impl Members {
    /// `"absolute"` or `"delta"`.
    pub fn name(self) -> &'static str {
        match self {
            Members::Absolute => "absolute",
            Members::Delta => "delta",
        }
    }
}

impl FromStr for Members {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Members::Absolute, Members::Delta]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownName {
                what: "members",
                given: s.to_owned(),
                expected: "absolute, delta",
            })
    }
}

/// The seed's named ensemble sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// k = 5.
    Fast,
    /// k = 10.
    Default,
    /// k = 20.
    Accurate,
}

impl Mode {
    /// The ensemble size.
    pub fn k(self) -> usize {
        match self {
            Mode::Fast => 5,
            Mode::Default => 10,
            Mode::Accurate => 20,
        }
    }
}

impl FromStr for Mode {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fast" => Ok(Mode::Fast),
            "default" => Ok(Mode::Default),
            "accurate" => Ok(Mode::Accurate),
            _ => Err(UnknownName {
                what: "mode",
                given: s.to_owned(),
                expected: "fast, default, accurate",
            }),
        }
    }
}

/// Why there is no state vector at a requested time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStateReason {
    /// The time is before the station's first or after its last observation.
    OutsideData,
    /// The trailing window holds a missing value.
    Gap,
    /// The time is not on the hour.
    NotOnTheHour,
}

/// Errors from forecasting, verifying, or loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForecastError {
    /// The station is not in the model.
    #[error("station: unknown station '{station}' (known: {})", known.join(", "))]
    UnknownStation {
        /// The station asked for.
        station: String,
        /// The model's stations.
        known: Vec<String>,
    },
    /// No state vector at the requested time.
    #[error("at: no state at {at}: {detail}")]
    NoState {
        /// The requested time, RFC 3339.
        at: String,
        /// Which kind of problem.
        reason: NoStateReason,
        /// What exactly (the data range, or the missing value).
        detail: String,
    },
    /// `k` outside `1..=max`.
    #[error("k: must be between 1 and {max}, got {k}")]
    KOutOfRange {
        /// The requested k.
        k: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The variable list was empty.
    #[error("vars: at least one variable is required")]
    NoVariables,
    /// The model has no analog for this station and horizon.
    #[error("station {station}: no historical states with a known outcome {horizon} later")]
    NoAnalogs {
        /// Station.
        station: String,
        /// Horizon.
        horizon: Horizon,
    },
    /// Bad build or verification options.
    #[error("{field}: {message}")]
    InvalidOption {
        /// The option at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A model file is corrupt, foreign or inconsistent.
    #[error("{file}: {message}")]
    Corrupt {
        /// The file (name within the model directory).
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The search index failed (a bug, or data the index refuses).
    #[error("search: {0}")]
    Search(#[from] crate::AnalogError),
}

/// Unix seconds as RFC 3339 UTC (`2013-11-05T06:00:00Z`).
///
/// ```
/// assert_eq!(analog::forecast::format_time(1_383_631_200), "2013-11-05T06:00:00Z");
/// ```
pub fn format_time(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix_seconds}"))
}

/// Parses an RFC 3339 time (`2013-11-05T06:00:00Z`) or a date (`2013-11-01`, meaning its
/// midnight UTC) into unix seconds.
///
/// ```
/// use analog::forecast::parse_time;
/// assert_eq!(parse_time("2013-11-05T06:00:00Z"), Ok(1_383_631_200));
/// assert_eq!(parse_time("2013-11-01"), parse_time("2013-11-01T00:00:00Z"));
/// assert!(parse_time("yesterday").is_err());
/// ```
///
/// # Errors
/// A message naming the expected forms.
pub fn parse_time(raw: &str) -> Result<i64, String> {
    let rfc = time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(raw, &rfc) {
        return Ok(t.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(raw, &date_format)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| {
            format!("'{raw}' is not an RFC 3339 time (2013-11-05T06:00:00Z) or a date (2013-11-01)")
        })
}
