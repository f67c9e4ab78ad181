//! A deterministic synthetic station archive for measuring the forecaster at scale.
//!
//! [`SyntheticWeather`] produces hourly observations of any number of stations over any number
//! of years, in the station CSV's columns ([`CSV_HEADER`], a subset of the bundled file's with
//! the same names and units), hour by hour so a caller can stream them to a file. Everything
//! random comes from one seeded generator ([`SyntheticSpec::seed`]): the same spec gives the
//! same bytes on every platform.
//!
//! The weather is a toy, but has the structure the analog search depends on:
//!
//! * **Station climates**: stations are scattered over a mid-latitude region (28–48° N,
//!   120–72° W, about 4,200 × 2,200 km). The annual mean temperature falls with latitude
//!   (0.9 °C per degree) and elevation (6.5 °C per km; the western third is mountainous); the
//!   annual amplitude grows with latitude and distance from the coasts; the west is drier (a
//!   larger dew-point depression, a larger diurnal range, less rain).
//! * **Cycles**: an annual cosine (coldest about 20 January) and a diurnal one peaking at
//!   15:00 local solar time (damped under cloud), a semidiurnal pressure tide.
//! * **Regional anomalies**: AR(1) temperature and moisture anomalies on a 4 × 3 grid of
//!   nodes (a 60-hour and 48-hour memory), mixed into each station with Gaussian weights of
//!   800 km, so nearby stations share their anomalies; plus a short local AR(1) per station.
//! * **Moving pressure systems**: lows and highs (6–28 hPa, 600–1,400 km across, stronger in
//!   winter) appear at the western edge, drift east at 25–45 km/h, grow and decay over 3–7
//!   days. Sea-level pressure is their sum; the wind is the geostrophic wind of that field,
//!   slowed by friction and turned 25° towards low pressure, plus gusts; southerly flow warms.
//! * **Rain events**: starting more often under low pressure (stratiform, several hours) and
//!   on summer afternoons (convective, short and heavy); while it rains the air is saturated.
//! * **Consistency**: the dew point never exceeds the temperature, the relative humidity is
//!   computed from both (Magnus formula), every value is within the CSV parser's physical
//!   limits, and values are rounded like the bundled file (°F and mph to 0.01, inches to 0.01,
//!   hPa to 0.1, whole degrees).
//! * **Missing data**: each hour's row is missing with probability 0.3 %, and a multi-hour
//!   outage (2–36 hours) starts with probability 1/2,500 per hour: about 1 % of hours are
//!   missing in all. Pressure alone is `NA` in 0.4 % of the rows.

use std::f64::consts::TAU;
use std::fmt::Write as _;

use thiserror::Error;

use crate::rng::SplitMix64;

/// The columns [`SyntheticWeather::write_csv_row`] writes, in order: the station CSV's required
/// columns with the bundled file's names and units (°F, %, degrees, mph, inches, mb).
pub const CSV_HEADER: &str = "origin,time_hour,temp,dewp,humid,wind_dir,wind_speed,precip,pressure";

/// At most this many stations (codes are `ST0001`…).
pub const MAX_STATIONS: usize = 9_999;
/// At most this many years.
pub const MAX_YEARS: u32 = 200;

const SECONDS_PER_HOUR: i64 = 3600;
const DAYS_PER_YEAR: f64 = 365.2425;
/// The region stations are placed in (degrees).
const LAT_RANGE: (f64, f64) = (28.0, 48.0);
const LON_RANGE: (f64, f64) = (-120.0, -72.0);
/// Kilometres per degree of latitude, and of longitude at the region's middle latitude.
const KM_PER_DEG_LAT: f64 = 110.57;
const KM_PER_DEG_LON: f64 = 111.32 * 0.788;
/// The regional anomaly grid (columns × rows) and how far a node reaches (km).
const NODE_GRID: (usize, usize) = (4, 3);
const NODE_REACH_KM: f64 = 800.0;
/// Probability per hour that a row is missing alone, that an outage starts, and that the
/// pressure alone is missing.
const P_MISSING_HOUR: f64 = 0.003;
const P_OUTAGE: f64 = 1.0 / 2_500.0;
const OUTAGE_HOURS: (u32, u32) = (2, 36);
const P_PRESSURE_NA: f64 = 0.004;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Number of stations, `1..=MAX_STATIONS`.
    pub stations: usize,
    /// Number of years from `start` (calendar years: 1994-01-01 plus 30 years ends at
    /// 2024-01-01, exclusive), `1..=MAX_YEARS`.
    pub years: u32,
    /// Unix seconds of the first hour (UTC, on the hour).
    pub start: i64,
    /// Seed of the one random generator everything is drawn from.
    pub seed: u64,
}

/// A spec that cannot be generated; the message starts with the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyntheticError {
    /// `stations` is 0 or above [`MAX_STATIONS`].
    #[error("stations: {0} is not between 1 and {MAX_STATIONS}")]
    Stations(usize),
    /// `years` is 0 or above [`MAX_YEARS`].
    #[error("years: {0} is not between 1 and {MAX_YEARS}")]
    Years(u32),
    /// `start` is not on the hour, or the period does not fit the calendar.
    #[error("start: {0}")]
    Start(String),
}

/// One station's fixed climate.
#[derive(Debug, Clone, PartialEq)]
pub struct StationClimate {
    /// Station code (`ST0001`, …).
    pub code: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east (negative: west).
    pub longitude: f64,
    /// Metres above sea level.
    pub elevation_m: f64,
    /// Annual mean temperature, °C.
    pub mean_temp_c: f64,
    /// Half the difference between the warmest and the coldest time of year, °C.
    pub annual_amplitude_c: f64,
    /// Half the clear-sky diurnal range, °C.
    pub diurnal_amplitude_c: f64,
    /// Typical dew-point depression (temperature minus dew point), °C.
    pub dewpoint_depression_c: f64,
    /// 0 (humid) to 1 (arid).
    pub aridity: f64,
    /// Surface wind over geostrophic wind (friction).
    pub wind_factor: f64,
    /// Position on the region's plane, km east and north of its south-west corner.
    x_km: f64,
    y_km: f64,
}

/// One hour's observation at one station, in SI-ish units (the CSV row converts them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticRow {
    /// Index into [`SyntheticWeather::stations`].
    pub station: usize,
    /// Unix seconds.
    pub time: i64,
    /// Temperature, °C.
    pub temp_c: f64,
    /// Dew point, °C (≤ `temp_c`).
    pub dewpoint_c: f64,
    /// Relative humidity, %.
    pub humidity_pct: f64,
    /// Wind speed, m/s (0 is calm).
    pub wind_speed_ms: f64,
    /// Direction the wind blows from, degrees (0 when calm).
    pub wind_dir_deg: f64,
    /// Precipitation in the hour, mm.
    pub precip_mm: f64,
    /// Sea-level pressure, hPa; `None` is a missing reading.
    pub pressure_hpa: Option<f64>,
}

/// A regional anomaly node.
#[derive(Debug, Clone)]
struct Node {
    x_km: f64,
    y_km: f64,
    temp_anomaly: f64,
    moisture_anomaly: f64,
}

/// A moving low (negative amplitude) or high.
#[derive(Debug, Clone)]
struct PressureSystem {
    x_km: f64,
    y_km: f64,
    amplitude_hpa: f64,
    radius_km: f64,
    u_kmh: f64,
    v_kmh: f64,
    age_h: f64,
    life_h: f64,
}

/// Per-station weather memory.
#[derive(Debug, Clone, Default)]
struct StationState {
    temp_anomaly: f64,
    gust_u: f64,
    gust_v: f64,
    rain_hours_left: u32,
    rain_rate_mm: f64,
    outage_hours_left: u32,
}

/// The generator: call [`SyntheticWeather::next_hour`] until it returns `None`.
///
/// ```
/// use analog::forecast::synthetic::{SyntheticSpec, SyntheticWeather, CSV_HEADER};
/// let spec = SyntheticSpec { stations: 3, years: 1, start: 757_382_400, seed: 7 };
/// let mut weather = SyntheticWeather::new(spec)?;
/// let mut csv = format!("{CSV_HEADER}\n");
/// let mut rows = Vec::new();
/// while weather.next_hour(&mut rows).is_some() {
///     for row in &rows {
///         weather.write_csv_row(row, &mut csv);
///     }
/// }
/// let data = analog::forecast::parse_csv(csv.as_bytes()).unwrap();
/// assert_eq!(data.stations.len(), 3);
/// assert!(data.bad_rows.is_empty());
/// # Ok::<(), analog::forecast::synthetic::SyntheticError>(())
/// ```
pub struct SyntheticWeather {
    rng: SplitMix64,
    stations: Vec<StationClimate>,
    /// Per station: (node index, weight), weights with a unit sum of squares so the mixed
    /// anomaly keeps the nodes' variance.
    node_weights: Vec<Vec<(usize, f64)>>,
    nodes: Vec<Node>,
    systems: Vec<PressureSystem>,
    state: Vec<StationState>,
    start: i64,
    hours: u64,
    next: u64,
    /// `time_hour` of the current hour, shared by its rows.
    time_text: String,
}

impl std::fmt::Debug for SyntheticWeather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyntheticWeather")
            .field("stations", &self.stations.len())
            .field("start", &self.start)
            .field("hours", &self.hours)
            .field("next", &self.next)
            .field("systems", &self.systems.len())
            .finish_non_exhaustive()
    }
}

impl SyntheticWeather {
    /// Places the stations and draws their climates; no hour is generated yet.
    ///
    /// # Errors
    /// [`SyntheticError`] naming the field at fault.
    pub fn new(spec: SyntheticSpec) -> Result<SyntheticWeather, SyntheticError> {
        if spec.stations == 0 || spec.stations > MAX_STATIONS {
            return Err(SyntheticError::Stations(spec.stations));
        }
        if spec.years == 0 || spec.years > MAX_YEARS {
            return Err(SyntheticError::Years(spec.years));
        }
        if spec.start.rem_euclid(SECONDS_PER_HOUR) != 0 {
            return Err(SyntheticError::Start(format!(
                "{} is not on the hour",
                super::format_time(spec.start)
            )));
        }
        let end = add_years(spec.start, spec.years).ok_or_else(|| {
            SyntheticError::Start(format!(
                "{} plus {} years is outside the supported calendar",
                spec.start, spec.years
            ))
        })?;
        // Both ends are on the hour and end > start, so this is a positive whole number.
        let hours = ((end - spec.start) / SECONDS_PER_HOUR) as u64;

        let mut rng = SplitMix64::new(spec.seed);
        let width = (LON_RANGE.1 - LON_RANGE.0) * KM_PER_DEG_LON;
        let stations: Vec<StationClimate> = (0..spec.stations)
            .map(|i| station_climate(&mut rng, i, width))
            .collect();
        let (cols, rows) = NODE_GRID;
        let height = (LAT_RANGE.1 - LAT_RANGE.0) * KM_PER_DEG_LAT;
        let nodes: Vec<Node> = (0..cols * rows)
            .map(|j| Node {
                x_km: (j % cols) as f64 * width / (cols - 1) as f64,
                y_km: (j / cols) as f64 * height / (rows - 1) as f64,
                temp_anomaly: 2.5 * gaussian(&mut rng),
                moisture_anomaly: 1.5 * gaussian(&mut rng),
            })
            .collect();
        let node_weights = stations
            .iter()
            .map(|s| {
                let raw: Vec<(usize, f64)> = nodes
                    .iter()
                    .enumerate()
                    .map(|(j, n)| {
                        let d2 = (s.x_km - n.x_km).powi(2) + (s.y_km - n.y_km).powi(2);
                        (j, (-d2 / (2.0 * NODE_REACH_KM * NODE_REACH_KM)).exp())
                    })
                    .filter(|(_, w)| *w > 1e-3)
                    .collect();
                let norm = raw.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
                raw.into_iter()
                    .map(|(j, w)| (j, if norm > 0.0 { w / norm } else { 0.0 }))
                    .collect()
            })
            .collect();
        let mut weather = SyntheticWeather {
            state: vec![StationState::default(); stations.len()],
            rng,
            stations,
            node_weights,
            nodes,
            systems: Vec::new(),
            start: spec.start,
            hours,
            next: 0,
            time_text: String::new(),
        };
        // Start with the systems a typical hour has, rather than an empty sky.
        for _ in 0..5 {
            weather.spawn_system(true);
        }
        Ok(weather)
    }

    /// The stations, in code order.
    pub fn stations(&self) -> &[StationClimate] {
        &self.stations
    }

    /// Hours in the whole period.
    pub fn hours(&self) -> u64 {
        self.hours
    }

    /// Hours generated so far.
    pub fn hours_done(&self) -> u64 {
        self.next
    }

    /// Advances one hour and replaces `rows` with that hour's observations (stations in a gap
    /// have none). Returns the hour's unix time, or `None` after the last hour.
    pub fn next_hour(&mut self, rows: &mut Vec<SyntheticRow>) -> Option<i64> {
        rows.clear();
        if self.next >= self.hours {
            return None;
        }
        // next < hours <= MAX_YEARS · 8,784, far inside i64.
        let time = self.start + self.next as i64 * SECONDS_PER_HOUR;
        self.next += 1;
        self.time_text.clear();
        write_time(time, &mut self.time_text);

        let days = time.div_euclid(86_400) as f64 + time.rem_euclid(86_400) as f64 / 86_400.0;
        let year_phase = (days / DAYS_PER_YEAR).rem_euclid(1.0);
        // -1 around 20 January, +1 around 21 July.
        let season = -(TAU * (year_phase - 20.0 / DAYS_PER_YEAR)).cos();
        let utc_hour = time.rem_euclid(86_400) as f64 / 3600.0;
        self.step_fields(season);

        for s in 0..self.stations.len() {
            if let Some(row) = self.observe(s, time, season, utc_hour) {
                rows.push(row);
            }
        }
        Some(time)
    }

    /// Appends one CSV line (with its newline) in [`CSV_HEADER`]'s columns. `row` must come
    /// from the latest [`SyntheticWeather::next_hour`] call (its time text is shared).
    pub fn write_csv_row(&self, row: &SyntheticRow, out: &mut String) {
        let code = self
            .stations
            .get(row.station)
            .map_or("?", |s| s.code.as_str());
        let temp_f = round_to(row.temp_c * 9.0 / 5.0 + 32.0, 100.0);
        // Rounding must not lift the dew point above the temperature.
        let dewp_f = round_to(row.dewpoint_c * 9.0 / 5.0 + 32.0, 100.0).min(temp_f);
        let _ = write!(
            out,
            "{code},{},{temp_f:.2},{dewp_f:.2},{:.2},{:.0},{:.2},{:.2},",
            self.time_text,
            row.humidity_pct,
            row.wind_dir_deg,
            row.wind_speed_ms / 0.447_04,
            row.precip_mm / 25.4,
        );
        match row.pressure_hpa {
            Some(p) => {
                let _ = writeln!(out, "{p:.1}");
            }
            None => out.push_str("NA\n"),
        }
    }

    /// Moves the regional anomalies and the pressure systems on by one hour.
    fn step_fields(&mut self, season: f64) {
        let phi_t = (-1.0f64 / 60.0).exp();
        let phi_m = (-1.0f64 / 48.0).exp();
        for j in 0..self.nodes.len() {
            let (e1, e2) = (gaussian(&mut self.rng), gaussian(&mut self.rng));
            let n = &mut self.nodes[j];
            n.temp_anomaly = phi_t * n.temp_anomaly + (1.0 - phi_t * phi_t).sqrt() * 2.5 * e1;
            n.moisture_anomaly =
                phi_m * n.moisture_anomaly + (1.0 - phi_m * phi_m).sqrt() * 1.5 * e2;
        }
        for sys in &mut self.systems {
            sys.x_km += sys.u_kmh;
            sys.y_km += sys.v_kmh;
            sys.age_h += 1.0;
        }
        self.systems.retain(|s| s.age_h < s.life_h);
        // More (and, below, stronger) systems in winter.
        if self.rng.next_f64() < (1.0 / 30.0) * (1.0 - 0.3 * season) {
            self.spawn_system(false);
        }
    }

    /// A new low or high at the western edge, or anywhere (`anywhere`) at the start.
    fn spawn_system(&mut self, anywhere: bool) {
        let rng = &mut self.rng;
        let width = (LON_RANGE.1 - LON_RANGE.0) * KM_PER_DEG_LON;
        let height = (LAT_RANGE.1 - LAT_RANGE.0) * KM_PER_DEG_LAT;
        let low = rng.next_f64() < 0.5;
        let amplitude = if low {
            -uniform(rng, 8.0, 28.0)
        } else {
            uniform(rng, 6.0, 20.0)
        };
        let life = uniform(rng, 72.0, 168.0);
        let x = if anywhere {
            uniform(rng, -500.0, width)
        } else {
            uniform(rng, -900.0, 0.0)
        };
        self.systems.push(PressureSystem {
            x_km: x,
            y_km: uniform(rng, -600.0, height + 600.0),
            amplitude_hpa: amplitude,
            radius_km: uniform(rng, 600.0, 1400.0),
            u_kmh: uniform(rng, 25.0, 45.0),
            v_kmh: uniform(rng, -10.0, 10.0),
            age_h: if anywhere {
                uniform(rng, 0.0, life)
            } else {
                0.0
            },
            life_h: life,
        });
    }

    /// Station `s` at this hour: advances its own memory, and returns its row unless it is
    /// in a gap.
    fn observe(&mut self, s: usize, time: i64, season: f64, utc_hour: f64) -> Option<SyntheticRow> {
        let c = &self.stations[s];
        let rng = &mut self.rng;
        let st = &mut self.state[s];

        // Pressure and its gradient (hPa, hPa/km) from the moving systems.
        let winter = 1.0 - 0.4 * season;
        let (mut anomaly, mut dp_dx, mut dp_dy) = (0.0, 0.0, 0.0);
        for sys in &self.systems {
            let envelope = (std::f64::consts::PI * sys.age_h / sys.life_h).sin();
            let (dx, dy) = (c.x_km - sys.x_km, c.y_km - sys.y_km);
            let r2 = sys.radius_km * sys.radius_km;
            let g =
                sys.amplitude_hpa * winter * envelope * (-(dx * dx + dy * dy) / (2.0 * r2)).exp();
            anomaly += g;
            dp_dx -= g * dx / r2;
            dp_dy -= g * dy / r2;
        }
        let local_solar = (utc_hour + c.longitude / 15.0).rem_euclid(24.0);
        let diurnal = (TAU * (local_solar - 15.0) / 24.0).cos();
        let continental = 3.0 * (-season) * (1.0 - c.aridity * 0.5);
        let tide = 0.6 * (2.0 * TAU * (local_solar - 10.0) / 24.0).cos();
        let pressure =
            (1016.0 + continental + anomaly + tide + 0.3 * gaussian(rng)).clamp(880.0, 1075.0);

        // Geostrophic wind (m/s): 1 hPa/km is 0.1 Pa/m; ρ = 1.2 kg/m³, f = 2Ω sin(lat).
        let f = 1.458e-4 * c.latitude.to_radians().sin();
        let scale = 0.1 / (1.2 * f);
        let (ug, vg) = (-scale * dp_dy, scale * dp_dx);
        // Friction: slower, turned 25° towards low pressure (anticlockwise here).
        let (sin_a, cos_a) = 25.0f64.to_radians().sin_cos();
        let mixing = c.wind_factor * (1.0 + 0.25 * diurnal);
        let phi_g = (-1.0f64 / 3.0).exp();
        st.gust_u = phi_g * st.gust_u + (1.0 - phi_g * phi_g).sqrt() * 1.2 * gaussian(rng);
        st.gust_v = phi_g * st.gust_v + (1.0 - phi_g * phi_g).sqrt() * 1.2 * gaussian(rng);
        let mut u = mixing * (ug * cos_a - vg * sin_a) + st.gust_u;
        let mut v = mixing * (ug * sin_a + vg * cos_a) + st.gust_v;
        let mut speed = (u * u + v * v).sqrt();
        if speed > 60.0 {
            (u, v) = (u * 60.0 / speed, v * 60.0 / speed);
            speed = 60.0;
        }

        // Rain: stratiform events under low pressure, convective ones on summer afternoons.
        let wet = 1.2 - c.aridity;
        if st.rain_hours_left == 0 {
            let low = (-anomaly / 8.0).max(0.0);
            let p_front = 0.002 * wet * (1.0 + low * low * 3.0);
            let p_shower = 0.012 * wet * season.max(0.0) * diurnal.max(0.0);
            let draw = rng.next_f64();
            if draw < p_front {
                st.rain_hours_left = 2 + rng.below(10) as u32;
                st.rain_rate_mm = 1.2 * exponential(rng);
            } else if draw < p_front + p_shower {
                st.rain_hours_left = 1 + rng.below(3) as u32;
                st.rain_rate_mm = 4.0 * exponential(rng);
            }
        }
        let raining = st.rain_hours_left > 0;
        let precip = if raining {
            st.rain_hours_left -= 1;
            (st.rain_rate_mm * uniform(rng, 0.3, 1.7)).min(150.0)
        } else {
            0.0
        };
        let cloud = if raining {
            1.0
        } else {
            (-anomaly / 15.0).clamp(0.0, 1.0)
        };

        // Temperature: climate, cycles, shared and local anomalies, warm southerly flow.
        let (mut regional_t, mut regional_m) = (0.0, 0.0);
        for &(j, w) in &self.node_weights[s] {
            regional_t += w * self.nodes[j].temp_anomaly;
            regional_m += w * self.nodes[j].moisture_anomaly;
        }
        let phi_l = (-1.0f64 / 8.0).exp();
        st.temp_anomaly =
            phi_l * st.temp_anomaly + (1.0 - phi_l * phi_l).sqrt() * 0.8 * gaussian(rng);
        let temp = (c.mean_temp_c
            + c.annual_amplitude_c * season
            + c.diurnal_amplitude_c * diurnal * (1.0 - 0.6 * cloud)
            + regional_t
            + st.temp_anomaly
            + 0.12 * vg.clamp(-20.0, 20.0))
        .clamp(-85.0, 55.0);
        let depression = if raining {
            uniform(rng, 0.1, 0.8)
        } else {
            (c.dewpoint_depression_c * (1.0 + 0.5 * diurnal) * (1.0 - 0.5 * cloud) + regional_m)
                .max(0.2)
        };
        let dewpoint = (temp - depression).max(-85.0);

        // Missing rows: isolated hours and multi-hour outages.
        if st.outage_hours_left > 0 {
            st.outage_hours_left -= 1;
            return None;
        }
        let draw = rng.next_f64();
        if draw < P_OUTAGE {
            let (lo, hi) = OUTAGE_HOURS;
            st.outage_hours_left = lo - 1 + rng.below((hi - lo + 1) as usize) as u32;
            return None;
        }
        if draw < P_OUTAGE + P_MISSING_HOUR {
            return None;
        }
        let pressure_hpa = if rng.next_f64() < P_PRESSURE_NA {
            None
        } else {
            Some(round_to(pressure, 10.0))
        };
        let speed_mph = round_to(speed / 0.447_04, 100.0);
        let (wind_speed_ms, wind_dir_deg) = if speed_mph < 1.0 {
            (0.0, 0.0)
        } else {
            // Meteorological: where the wind blows from; 0° is written as 360° (calm is 0).
            let dir = (-u).atan2(-v).to_degrees().rem_euclid(360.0).round();
            (speed_mph * 0.447_04, if dir == 0.0 { 360.0 } else { dir })
        };
        Some(SyntheticRow {
            station: s,
            time,
            temp_c: temp,
            dewpoint_c: dewpoint,
            humidity_pct: round_to(relative_humidity(temp, dewpoint), 100.0),
            wind_speed_ms,
            wind_dir_deg,
            precip_mm: precip,
            pressure_hpa,
        })
    }
}

/// Draws station `i`'s place and climate.
fn station_climate(rng: &mut SplitMix64, i: usize, width_km: f64) -> StationClimate {
    let latitude = uniform(rng, LAT_RANGE.0, LAT_RANGE.1);
    let longitude = uniform(rng, LON_RANGE.0, LON_RANGE.1);
    let x_km = (longitude - LON_RANGE.0) * KM_PER_DEG_LON;
    let y_km = (latitude - LAT_RANGE.0) * KM_PER_DEG_LAT;
    // Mountains in the west, plains and coast in the east.
    let elevation_m = if longitude < -105.0 {
        uniform(rng, 300.0, 2500.0)
    } else {
        300.0 * rng.next_f64().powi(2)
    };
    let west = x_km / width_km;
    // Distance from the nearer coast, 0 at a coast and 1 in the middle.
    let continentality = 1.0 - (2.0 * west - 1.0).abs();
    let aridity = if longitude < -100.0 {
        uniform(rng, 0.5, 1.0)
    } else {
        uniform(rng, 0.0, 0.4)
    };
    StationClimate {
        code: format!("ST{:04}", i + 1),
        latitude,
        longitude,
        elevation_m,
        mean_temp_c: 24.0 - 0.9 * (latitude - LAT_RANGE.0) - 6.5 * elevation_m / 1000.0
            + 0.7 * gaussian(rng),
        annual_amplitude_c: 4.0 + 0.3 * (latitude - LAT_RANGE.0) + 5.0 * continentality,
        diurnal_amplitude_c: 3.0 + 4.0 * aridity,
        dewpoint_depression_c: 4.0 + 8.0 * aridity,
        aridity,
        wind_factor: uniform(rng, 0.4, 0.7),
        x_km,
        y_km,
    }
}

/// Relative humidity (%) from temperature and dew point (°C), Magnus formula
/// (Alduchov and Eskridge 1996 coefficients), at most 100.
fn relative_humidity(temp_c: f64, dewpoint_c: f64) -> f64 {
    let e = |t: f64| (17.625 * t / (243.04 + t)).exp();
    (100.0 * e(dewpoint_c) / e(temp_c)).clamp(0.0, 100.0)
}

fn round_to(x: f64, per_unit: f64) -> f64 {
    (x * per_unit).round() / per_unit
}

fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.next_f64()
}

/// Standard normal (Box–Muller; one of the pair is used, so each call is independent of the
/// call order's parity).
fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = 1.0 - rng.next_f64(); // (0, 1]: ln is finite
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// Exponential with mean 1.
fn exponential(rng: &mut SplitMix64) -> f64 {
    -(1.0 - rng.next_f64()).ln()
}

/// `start` plus `years` calendar years (29 February maps to 1 March), or `None` outside
/// the calendar.
fn add_years(start: i64, years: u32) -> Option<i64> {
    let days = start.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let y2 = y.checked_add(i64::from(years))?;
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let (m2, d2) = if m == 2 && d == 29 && !leap(y2) {
        (3, 1)
    } else {
        (m, d)
    };
    days_from_civil(y2, m2, d2)
        .checked_mul(86_400)?
        .checked_add(start.rem_euclid(86_400))
}

/// Appends `YYYY-MM-DDTHH:00:00Z`.
fn write_time(t: i64, out: &mut String) {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let hour = t.rem_euclid(86_400) / 3600;
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{hour:02}:00:00Z");
}

/// (year, month, day) of a day number since 1970-01-01 (Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day number since 1970-01-01 of a civil date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{parse_csv, Variable};

    /// 1994-01-01T00:00:00Z.
    const START_1994: i64 = 757_382_400;

    fn spec(stations: usize, years: u32, seed: u64) -> SyntheticSpec {
        SyntheticSpec {
            stations,
            years,
            start: START_1994,
            seed,
        }
    }

    /// The whole archive as CSV text, and every row.
    fn generate(spec: SyntheticSpec) -> (SyntheticWeather, String, Vec<SyntheticRow>) {
        let mut weather = SyntheticWeather::new(spec).unwrap();
        let mut csv = format!("{CSV_HEADER}\n");
        let mut rows = Vec::new();
        let mut all = Vec::new();
        while weather.next_hour(&mut rows).is_some() {
            for row in &rows {
                weather.write_csv_row(row, &mut csv);
            }
            all.extend_from_slice(&rows);
        }
        (weather, csv, all)
    }

    fn mean(xs: impl Iterator<Item = f64>) -> f64 {
        let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        s / n.max(1) as f64
    }

    fn correlation(a: &[f64], b: &[f64]) -> f64 {
        let (ma, mb) = (mean(a.iter().copied()), mean(b.iter().copied()));
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn calendar_helpers_agree_with_the_time_crate() {
        for days in [
            -800_000i64,
            -1,
            0,
            59,
            365,
            10_957,
            11_016,
            19_000,
            2_000_000,
        ] {
            let date = time::Date::from_julian_day(2_440_588 + days as i32).unwrap();
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                (y, m, d),
                (
                    i64::from(date.year()),
                    u8::from(date.month()) as u32,
                    u32::from(date.day())
                )
            );
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let mut s = String::new();
        write_time(1_383_631_200, &mut s);
        assert_eq!(s, "2013-11-05T06:00:00Z");
        // 1994-01-01 + 30 years = 2024-01-01; 2000-02-29 + 1 year = 2001-03-01.
        assert_eq!(add_years(START_1994, 30), Some(1_704_067_200));
        assert_eq!(add_years(951_782_400, 1), Some(983_404_800));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let err = |s| SyntheticWeather::new(s).unwrap_err().to_string();
        assert_eq!(err(spec(0, 1, 1)), "stations: 0 is not between 1 and 9999");
        assert_eq!(
            err(spec(10_000, 1, 1)),
            "stations: 10000 is not between 1 and 9999"
        );
        assert_eq!(err(spec(1, 0, 1)), "years: 0 is not between 1 and 200");
        let mut off = spec(1, 1, 1);
        off.start += 60;
        assert!(err(off).starts_with("start: "), "{}", err(off));
        off.start = i64::MAX - 7200 - (i64::MAX % 3600);
        assert!(err(off).starts_with("start: "), "{}", err(off));
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_weather() {
        let short = |seed| {
            let mut s = spec(4, 1, seed);
            s.start = 1_700_000_000 - 1_700_000_000 % 3600;
            generate(s).1
        };
        let a = short(11);
        assert_eq!(a, short(11));
        assert_ne!(a, short(12));
        assert!(a.starts_with("origin,time_hour,temp,dewp,humid,wind_dir,wind_speed,precip,pressure\nST0001,2023-11-14T22:00:00Z,"), "{}", &a[..200]);
    }

    /// Every row is one the station CSV parser accepts, and the parsed series hold the
    /// generated values; the dew point never exceeds the temperature.
    #[test]
    fn the_parser_accepts_every_row_within_its_limits() {
        let (weather, csv, rows) = generate(spec(6, 2, 3));
        let data = parse_csv(csv.as_bytes()).unwrap();
        assert!(
            data.bad_rows.is_empty(),
            "{:?}",
            &data.bad_rows[..data.bad_rows.len().min(5)]
        );
        assert_eq!(data.rows, rows.len() as u64);
        assert_eq!(data.stations.len(), 6);
        let codes: Vec<&str> = weather.stations().iter().map(|s| s.code.as_str()).collect();
        assert_eq!(
            codes,
            ["ST0001", "ST0002", "ST0003", "ST0004", "ST0005", "ST0006"]
        );
        for r in &rows {
            assert!(r.dewpoint_c <= r.temp_c, "{r:?}");
            assert!((-85.0..=55.0).contains(&r.temp_c), "{r:?}");
            assert!((0.0..=100.0).contains(&r.humidity_pct), "{r:?}");
            assert!((0.0..=60.0).contains(&r.wind_speed_ms), "{r:?}");
            assert!((0.0..=360.0).contains(&r.wind_dir_deg), "{r:?}");
            assert!((0.0..=150.0).contains(&r.precip_mm), "{r:?}");
            if let Some(p) = r.pressure_hpa {
                assert!((880.0..=1075.0).contains(&p), "{r:?}");
            }
        }
        for series in &data.stations {
            let t = &series.columns[Variable::T2m.index()];
            let td = &series.columns[Variable::Dewpoint.index()];
            for (a, b) in t.iter().zip(td) {
                assert!((a.is_nan() && b.is_nan()) || b <= a, "{b} > {a}");
            }
        }
        // A sample row survives the round trip (°F, mph and inches back to SI).
        let r = rows[1234];
        let series = &data.stations[r.station];
        let i = series.index_of(r.time).unwrap();
        assert!((f64::from(series.value(Variable::T2m, i)) - r.temp_c).abs() < 0.01);
        assert!((f64::from(series.value(Variable::Precip, i)) - r.precip_mm).abs() < 0.13);
    }

    #[test]
    fn about_one_percent_of_hours_are_missing_with_multi_hour_gaps() {
        let (weather, _, rows) = generate(spec(10, 3, 5));
        let expected = weather.hours() as usize * 10;
        let missing = 1.0 - rows.len() as f64 / expected as f64;
        assert!((0.005..0.02).contains(&missing), "missing {missing}");
        // The longest gap of some station is several hours long.
        let mut longest = 0;
        for s in 0..10 {
            let times: Vec<i64> = rows
                .iter()
                .filter(|r| r.station == s)
                .map(|r| r.time)
                .collect();
            for w in times.windows(2) {
                longest = longest.max((w[1] - w[0]) / 3600 - 1);
            }
        }
        assert!(longest >= 6, "longest gap {longest} h");
        let no_pressure = rows.iter().filter(|r| r.pressure_hpa.is_none()).count();
        let share = no_pressure as f64 / rows.len() as f64;
        assert!((0.001..0.01).contains(&share), "pressure NA {share}");
    }

    /// Cycles, climates, shared anomalies, pressure, wind and rain have plausible sizes.
    #[test]
    fn statistics_are_plausible() {
        let (weather, _, rows) = generate(spec(8, 3, 9));
        let stations = weather.stations();
        let month = |t: i64| civil_from_days(t.div_euclid(86_400)).1;
        for (s, c) in stations.iter().enumerate() {
            let of = |m: u32| {
                mean(
                    rows.iter()
                        .filter(|r| r.station == s && month(r.time) == m)
                        .map(|r| r.temp_c),
                )
            };
            assert!(
                of(7) - of(1) > 6.0,
                "{}: July {} vs January {}",
                c.code,
                of(7),
                of(1)
            );
            let local = |r: &SyntheticRow| {
                ((r.time.rem_euclid(86_400) as f64 / 3600.0) + c.longitude / 15.0).rem_euclid(24.0)
            };
            let at = |lo: f64, hi: f64| {
                mean(
                    rows.iter()
                        .filter(|r| r.station == s && (lo..hi).contains(&local(r)))
                        .map(|r| r.temp_c),
                )
            };
            assert!(
                at(14.0, 16.0) - at(4.0, 6.0) > 3.0,
                "{}: no diurnal cycle",
                c.code
            );
        }
        // A colder climate further north (same elevation class: compare the fit's sign).
        let north_cold = correlation(
            &stations.iter().map(|c| c.latitude).collect::<Vec<_>>(),
            &stations
                .iter()
                .map(|c| c.mean_temp_c + 6.5 * c.elevation_m / 1000.0)
                .collect::<Vec<_>>(),
        );
        assert!(north_cold < -0.8, "{north_cold}");

        // Daily-mean temperature anomalies: the nearest pair shares more than the farthest.
        let hours = weather.hours() as usize;
        let mut series = vec![vec![f64::NAN; hours]; stations.len()];
        for r in &rows {
            series[r.station][((r.time - START_1994) / 3600) as usize] = r.temp_c;
        }
        let anomalies: Vec<Vec<f64>> = series
            .iter()
            .map(|x| {
                let days = hours / 24;
                let daily: Vec<f64> = (0..days)
                    .map(|d| {
                        mean(
                            x[d * 24..d * 24 + 24]
                                .iter()
                                .copied()
                                .filter(|v| !v.is_nan()),
                        )
                    })
                    .collect();
                // Remove a 31-day running mean: what is left is weather, not season.
                (0..days)
                    .map(|d| {
                        let lo = d.saturating_sub(15);
                        let hi = (d + 16).min(days);
                        daily[d] - mean(daily[lo..hi].iter().copied())
                    })
                    .collect()
            })
            .collect();
        let dist = |a: &StationClimate, b: &StationClimate| {
            ((a.x_km - b.x_km).powi(2) + (a.y_km - b.y_km).powi(2)).sqrt()
        };
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for a in 0..stations.len() {
            for b in a + 1..stations.len() {
                pairs.push((dist(&stations[a], &stations[b]), a, b));
            }
        }
        pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
        let corr = |&(_, a, b): &(f64, usize, usize)| correlation(&anomalies[a], &anomalies[b]);
        let (near, far) = (corr(&pairs[0]), corr(&pairs[pairs.len() - 1]));
        assert!(near > far + 0.2, "nearest {near} vs farthest {far}");
        assert!(near > 0.4, "nearest pair correlation {near}");

        // Hour-to-hour persistence.
        let t0 = &series[0];
        let (a, b): (Vec<f64>, Vec<f64>) = t0
            .windows(2)
            .filter(|w| !w[0].is_nan() && !w[1].is_nan())
            .map(|w| (w[0], w[1]))
            .unzip();
        assert!(correlation(&a, &b) > 0.9);

        let pressures: Vec<f64> = rows.iter().filter_map(|r| r.pressure_hpa).collect();
        let pm = mean(pressures.iter().copied());
        let psd = mean(pressures.iter().map(|p| (p - pm).powi(2))).sqrt();
        assert!(
            (1005.0..1022.0).contains(&pm) && (3.0..15.0).contains(&psd),
            "pressure {pm} ± {psd}"
        );
        let wind = mean(rows.iter().map(|r| r.wind_speed_ms));
        assert!((1.5..9.0).contains(&wind), "mean wind {wind} m/s");
        let wet = rows.iter().filter(|r| r.precip_mm > 0.0).count() as f64 / rows.len() as f64;
        assert!((0.02..0.2).contains(&wet), "wet hours {wet}");
        // Rain comes with low pressure.
        let p_wet = mean(
            rows.iter()
                .filter(|r| r.precip_mm > 0.0)
                .filter_map(|r| r.pressure_hpa),
        );
        assert!(p_wet < pm - 2.0, "pressure when wet {p_wet} vs {pm}");
        // The pressure field keeps the air moving: calm hours are rare.
        let calm =
            rows.iter().filter(|r| r.wind_speed_ms == 0.0).count() as f64 / rows.len() as f64;
        assert!(calm < 0.2, "calm {calm}");
        let humid = mean(rows.iter().map(|r| r.humidity_pct));
        assert!((40.0..90.0).contains(&humid), "humidity {humid}");
    }
}
