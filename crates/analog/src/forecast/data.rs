//! Station observations: the CSV mapping, unit conversion, wind components and bad rows.
//!
//! Each station becomes an hourly grid from its first to its last observation; an hour with no
//! row, a missing (`NA`) value or a bad row is a gap (NaN), never a zero.

use std::collections::HashMap;
use std::io::Read;

use thiserror::Error;

use super::{Variable, NVARS};

/// Columns the station CSV must have (others, e.g. `year` or `visib`, are ignored).
pub const REQUIRED_COLUMNS: [&str; 9] = [
    "origin",
    "time_hour",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "precip",
    "pressure",
];

const MPH_TO_MS: f64 = 0.447_04;
const INCH_TO_MM: f64 = 25.4;
const SECONDS_PER_HOUR: i64 = 3600;
/// A station's grid may span at most this many hours (a century): a stray timestamp far from
/// the rest must not allocate gigabytes.
const MAX_SPAN_HOURS: i64 = 100 * 8766;

/// One hourly series per variable for one station, on a regular grid.
#[derive(Debug, Clone, PartialEq)]
pub struct StationSeries {
    /// Station code, e.g. `JFK`.
    pub station: String,
    /// Unix seconds of the first hour of the grid (UTC, on the hour).
    pub start: i64,
    /// `columns[v][i]` is variable `v` (in [`Variable::ALL`] order) at `start + 3600 i`;
    /// NaN is a gap.
    pub columns: [Vec<f32>; NVARS],
}

impl StationSeries {
    /// Hours in the grid.
    pub fn len(&self) -> usize {
        self.columns[0].len()
    }

    /// Whether the grid is empty.
    pub fn is_empty(&self) -> bool {
        self.columns[0].is_empty()
    }

    /// Unix seconds of grid hour `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.view().time(i)
    }

    /// The grid hour of unix time `t`, if `t` is on the hour and inside the grid.
    pub fn index_of(&self, t: i64) -> Option<usize> {
        self.view().index_of(t)
    }

    /// Variable `v` at grid hour `i` (NaN for a gap or outside the grid).
    pub fn value(&self, v: Variable, i: usize) -> f32 {
        self.view().value(v, i)
    }

    /// The series truncated to hours strictly before `t` (for training on a period).
    pub fn before(&self, t: i64) -> StationSeries {
        self.view().before(&self.station, t)
    }

    /// The series borrowed.
    pub(crate) fn view(&self) -> SeriesView<'_> {
        SeriesView {
            start: self.start,
            columns: std::array::from_fn(|v| self.columns[v].as_slice()),
        }
    }
}

/// A station's hourly grid, borrowed: from a [`StationSeries`] while building, or from the
/// memory-mapped series file of a loaded model. What the state vector and the members read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesView<'a> {
    /// Unix seconds of the first hour.
    pub start: i64,
    /// `columns[v][i]`: variable `v` at grid hour `i`; all the same length.
    pub columns: [&'a [f32]; NVARS],
}

impl SeriesView<'_> {
    /// Hours in the grid.
    pub fn len(&self) -> usize {
        self.columns[0].len()
    }

    /// Unix seconds of grid hour `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * SECONDS_PER_HOUR
    }

    /// The grid hour of unix time `t`, if `t` is on the hour and inside the grid.
    pub fn index_of(&self, t: i64) -> Option<usize> {
        let offset = t.checked_sub(self.start)?;
        if offset < 0 || offset % SECONDS_PER_HOUR != 0 {
            return None;
        }
        let i = usize::try_from(offset / SECONDS_PER_HOUR).ok()?;
        (i < self.len()).then_some(i)
    }

    /// Variable `v` at grid hour `i` (NaN for a gap or outside the grid).
    pub fn value(&self, v: Variable, i: usize) -> f32 {
        self.columns[v.index()].get(i).copied().unwrap_or(f32::NAN)
    }

    /// An owned copy truncated to hours strictly before `t`.
    pub fn before(&self, station: &str, t: i64) -> StationSeries {
        let keep = if t <= self.start {
            0
        } else {
            let hours = (t - self.start + SECONDS_PER_HOUR - 1) / SECONDS_PER_HOUR;
            usize::try_from(hours).unwrap_or(usize::MAX).min(self.len())
        };
        StationSeries {
            station: station.to_owned(),
            start: self.start,
            columns: std::array::from_fn(|v| self.columns[v][..keep].to_vec()),
        }
    }
}

/// A row that could not be used, with its 1-based line number in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number (the header is line 1).
    pub line: u64,
    /// What is wrong, naming the column.
    pub reason: String,
}

/// Parsed station data: one series per station (sorted by station code) and the rows that were
/// skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// One series per station, sorted by code.
    pub stations: Vec<StationSeries>,
    /// Rows that were skipped (their hour is a gap), in line order.
    pub bad_rows: Vec<BadRow>,
    /// Rows used.
    pub rows: u64,
}

impl Dataset {
    /// The station with this code.
    pub fn station(&self, code: &str) -> Option<&StationSeries> {
        self.stations.iter().find(|s| s.station == code)
    }
}

/// Errors that stop parsing altogether (a bad row does not: it is listed in
/// [`Dataset::bad_rows`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// The header lacks a required column.
    #[error("the CSV header has no `{0}` column")]
    MissingColumn(&'static str),
    /// The CSV itself is malformed (e.g. a row with the wrong number of fields).
    #[error("line {line}: malformed CSV: {message}")]
    Malformed {
        /// 1-based line number.
        line: u64,
        /// The CSV reader's message.
        message: String,
    },
    /// No usable row.
    #[error("no usable rows ({bad} bad rows)")]
    Empty {
        /// How many rows were bad.
        bad: usize,
    },
    /// One station's observations span too long a period.
    #[error("station {station}: observations span {hours} hours, more than the {max} supported")]
    SpanTooLong {
        /// Station code.
        station: String,
        /// Hours between its first and last observation.
        hours: i64,
        /// The limit.
        max: i64,
    },
}

/// One parsed row in SI-ish units (see the module docs of [`crate::forecast`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Unix seconds, on the hour.
    pub time: i64,
    /// Values in [`Variable::ALL`] order; NaN is missing.
    pub values: [f32; NVARS],
}

/// Parses the station CSV (header + rows; see `docs/forecast.md` for the column mapping).
///
/// ```
/// let csv = "origin,time_hour,temp,dewp,humid,wind_dir,wind_speed,precip,pressure\n\
///            JFK,2013-01-01T06:00:00Z,50,32,50,270,10,0,1013\n\
///            JFK,2013-01-01T07:00:00Z,50,32,50,NA,1048.36,0,1013\n";
/// let data = analog::forecast::parse_csv(csv.as_bytes())?;
/// assert_eq!(data.stations[0].station, "JFK");
/// assert_eq!(data.bad_rows[0].line, 3);
/// # Ok::<(), analog::forecast::DataError>(())
/// ```
///
/// # Errors
/// [`DataError`] for a missing column, malformed CSV, or no usable rows.
pub fn parse_csv<R: Read>(input: R) -> Result<Dataset, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .has_headers(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| malformed(&e))?
        .iter()
        .map(str::trim)
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mut columns = [0usize; REQUIRED_COLUMNS.len()];
    for (slot, name) in columns.iter_mut().zip(REQUIRED_COLUMNS) {
        *slot = headers
            .iter()
            .position(|h| h == name)
            .ok_or(DataError::MissingColumn(name))?;
    }

    let mut by_station: HashMap<String, Vec<(u64, Observation)>> = HashMap::new();
    let mut bad_rows = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(malformed(&e)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        let field = |c: usize| record.get(columns[c]).unwrap_or("").trim();
        match parse_row(field) {
            Ok((station, obs)) => {
                by_station.entry(station).or_default().push((line, obs));
                rows += 1;
            }
            Err(reason) => bad_rows.push(BadRow { line, reason }),
        }
    }

    let mut stations = Vec::with_capacity(by_station.len());
    for (station, mut obs) in by_station {
        obs.sort_by_key(|(line, o)| (o.time, *line));
        let mut kept: Vec<(u64, Observation)> = Vec::with_capacity(obs.len());
        for (line, o) in obs {
            match kept.last() {
                Some((first, prev)) if prev.time == o.time => {
                    rows -= 1;
                    bad_rows.push(BadRow {
                        line,
                        reason: format!(
                            "time_hour: duplicate of line {first} (same station and hour)"
                        ),
                    });
                }
                _ => kept.push((line, o)),
            }
        }
        stations.push(grid(station, &kept)?);
    }
    if stations.is_empty() {
        return Err(DataError::Empty {
            bad: bad_rows.len(),
        });
    }
    stations.sort_by(|a, b| a.station.cmp(&b.station));
    bad_rows.sort_by_key(|b| b.line);
    Ok(Dataset {
        stations,
        bad_rows,
        rows,
    })
}

fn malformed(e: &csv::Error) -> DataError {
    DataError::Malformed {
        line: e.position().map_or(0, csv::Position::line),
        message: match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
            _ => e.to_string(),
        },
    }
}

fn grid(station: String, obs: &[(u64, Observation)]) -> Result<StationSeries, DataError> {
    let (Some((_, first)), Some((_, last))) = (obs.first(), obs.last()) else {
        return Err(DataError::Empty { bad: 0 });
    };
    let hours = (last.time - first.time) / SECONDS_PER_HOUR;
    if hours > MAX_SPAN_HOURS {
        return Err(DataError::SpanTooLong {
            station,
            hours,
            max: MAX_SPAN_HOURS,
        });
    }
    // hours <= MAX_SPAN_HOURS, so the length fits any usize.
    let len = hours as usize + 1;
    let mut columns: [Vec<f32>; NVARS] = std::array::from_fn(|_| vec![f32::NAN; len]);
    for (_, o) in obs {
        let i = ((o.time - first.time) / SECONDS_PER_HOUR) as usize;
        for (column, value) in columns.iter_mut().zip(o.values) {
            column[i] = value;
        }
    }
    Ok(StationSeries {
        station,
        start: first.time,
        columns,
    })
}

/// Parses one row given a column accessor (indices into [`REQUIRED_COLUMNS`]).
fn parse_row<'a>(field: impl Fn(usize) -> &'a str) -> Result<(String, Observation), String> {
    let station = field(0);
    if station.is_empty()
        || station.len() > 16
        || !station
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "origin: '{station}' is not a station code (1-16 letters, digits, '_' or '-')"
        ));
    }
    let time = parse_hour(field(1)).map_err(|e| format!("time_hour: {e}"))?;
    let number = |c: usize| -> Result<Option<f64>, String> {
        let raw = field(c);
        if raw.is_empty() || raw == "NA" {
            return Ok(None);
        }
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(format!("{}: '{raw}' is not a number", REQUIRED_COLUMNS[c])),
        }
    };
    let temp_f = number(2)?;
    let dewp_f = number(3)?;
    let humid = number(4)?;
    let wind_dir = number(5)?;
    let wind_mph = number(6)?;
    let precip_in = number(7)?;
    let pressure = number(8)?;

    let t2m = temp_f.map(fahrenheit_to_celsius);
    let dewpoint = dewp_f.map(fahrenheit_to_celsius);
    let speed = wind_mph.map(|v| v * MPH_TO_MS);
    let precip = precip_in.map(|v| v * INCH_TO_MM);
    check_range("temp", t2m, -90.0, 60.0, "°C")?;
    check_range("dewp", dewpoint, -90.0, 60.0, "°C")?;
    check_range("humid", humid, 0.0, 100.0, "%")?;
    check_range("wind_dir", wind_dir, 0.0, 360.0, "degrees")?;
    check_range("wind_speed", speed, 0.0, 110.0, "m/s")?;
    check_range("precip", precip, 0.0, 400.0, "mm")?;
    check_range("pressure", pressure, 850.0, 1090.0, "hPa")?;
    let (u10, v10) = match wind_components(speed, wind_dir) {
        Some((u, v)) => (Some(u), Some(v)),
        None => (None, None),
    };
    let mut values = [f32::NAN; NVARS];
    for (v, value) in [
        (Variable::T2m, t2m),
        (Variable::Dewpoint, dewpoint),
        (Variable::Humidity, humid),
        (Variable::U10, u10),
        (Variable::V10, v10),
        (Variable::Msl, pressure),
        (Variable::Precip, precip),
    ] {
        values[v.index()] = value.map_or(f32::NAN, |x| x as f32);
    }
    Ok((station.to_owned(), Observation { time, values }))
}

fn fahrenheit_to_celsius(f: f64) -> f64 {
    (f - 32.0) * 5.0 / 9.0
}

fn check_range(
    column: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
    unit: &str,
) -> Result<(), String> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(format!(
            "{column}: {v:.2} {unit} is physically impossible (allowed {min} to {max} {unit})"
        )),
        _ => Ok(()),
    }
}

/// Wind components in m/s from speed (m/s) and the direction the wind blows *from* (degrees,
/// meteorological convention): `u = -speed·sin(dir)`, `v = -speed·cos(dir)`. Calm (speed 0)
/// is `(0, 0)` whatever the direction; a moving wind without a direction is unknown (`None`).
///
/// ```
/// use analog::forecast::wind_components;
/// // A westerly (from 270°) blows towards the east: u > 0.
/// let (u, v) = wind_components(Some(10.0), Some(270.0)).unwrap();
/// assert!((u - 10.0).abs() < 1e-9 && v.abs() < 1e-9);
/// assert_eq!(wind_components(Some(0.0), None), Some((0.0, 0.0)));
/// assert_eq!(wind_components(Some(3.0), None), None);
/// ```
pub fn wind_components(speed: Option<f64>, direction_deg: Option<f64>) -> Option<(f64, f64)> {
    if speed == Some(0.0) {
        return Some((0.0, 0.0));
    }
    match (speed, direction_deg) {
        (Some(s), Some(d)) => {
            let r = d.to_radians();
            Some((-s * r.sin(), -s * r.cos()))
        }
        _ => None,
    }
}

/// Parses an RFC 3339 time on the hour into unix seconds.
fn parse_hour(raw: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("'{raw}' is not an RFC 3339 time (e.g. 2013-01-01T06:00:00Z)"))?;
    let secs = t.unix_timestamp();
    if secs % SECONDS_PER_HOUR != 0 || t.nanosecond() != 0 {
        return Err(format!("'{raw}' is not on the hour"));
    }
    Ok(secs)
}
