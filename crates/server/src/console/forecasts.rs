//! The forecasts page: pick a station, horizon, variable and issue time; see the ensemble as a
//! fan chart over every horizon, the analogs behind the picked horizon, and how this forecast
//! scored against what was observed; below, how the model is served (the diagnostics: search
//! times and statuses, slow requests, re-warming). Read scope, like the API's forecast routes, and the same
//! service: requests are parsed by [`ForecastService::parse_request`] and answered by the
//! loaded model.

use analog::forecast::{crps_ensemble, Forecast, ForecastRequest, Horizon, Variable};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use store::Scope;

use super::charts::{self, FanChart};
use super::{page, Chrome, ConsoleError, Section, Session};
use crate::forecasts::{self, ForecastService, RequestText};
use crate::problem::ApiError;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "forecasts",
    title: "Forecasts",
    path: "/console/forecasts",
    needs: Scope::Read,
};

/// What the picker shows when nothing is chosen: the seed's most asked-for configuration.
const DEFAULT_HORIZON: Horizon = Horizon::H24;
const DEFAULT_VARIABLE: Variable = Variable::T2m;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/forecasts", get(forecasts_page))
}

/// The picker's fields, as text: each is checked like the API's query parameter of that name.
#[derive(Deserialize, Default)]
struct PickerQuery {
    station: Option<String>,
    horizon: Option<String>,
    variable: Option<String>,
    at: Option<String>,
}

/// One option of a `<select>`.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// The picker as shown: its choices, the values entered and any error per field.
#[derive(Default)]
struct Picker {
    stations: Vec<Choice>,
    horizons: Vec<Choice>,
    variables: Vec<Choice>,
    at: String,
    /// The picked station's first and latest issue times, as a hint.
    at_range: String,
    station_error: Option<String>,
    horizon_error: Option<String>,
    variable_error: Option<String>,
    at_error: Option<String>,
}

/// One horizon's ensemble summary (the chart's data as a table).
struct HorizonRow {
    horizon: String,
    picked: bool,
    valid_at: String,
    p10: String,
    median: String,
    p90: String,
    mean: String,
    spread: String,
    observed: String,
    /// |median − observed|, when observed.
    median_error: String,
    /// CRPS of the ensemble against the observation, when observed.
    crps: String,
}

struct AnalogRow {
    rank: usize,
    time: String,
    distance: String,
}

/// The forecast drawn on the page.
struct Shown {
    chart: String,
    title: String,
    unit: String,
    issued_at: String,
    k: usize,
    similarity: String,
    member_kind: String,
    model_version: String,
    horizons: Vec<HorizonRow>,
    analogs: Vec<AnalogRow>,
    /// Whether any horizon has an observation to score against.
    any_observed: bool,
}

/// One horizon's search diagnostics.
struct SearchRow {
    horizon: String,
    searches: u64,
    p50: String,
    p99: String,
    grade: String,
    optimal: u64,
    suboptimal: u64,
    slow: u64,
    last_status: String,
    advice: String,
}

/// One station and horizon's index.
struct IndexRow {
    station: String,
    horizon: String,
    kind: &'static str,
    vectors: usize,
    dimension: usize,
    nlist_nprobe: String,
    m_nbits: String,
    shortlist: String,
    bytes: String,
    advice: String,
}

/// How the model is served: `/api/v1/forecast/diagnostics` in a table.
struct Serving {
    indexes: Vec<IndexRow>,
    /// The model's resident bytes and the budget.
    memory: String,
    searches: Vec<SearchRow>,
    cache: String,
    /// Slow requests kept, per severity, in the summary's words.
    slow_requests: String,
    slow_routes: String,
    slow_recommendations: Vec<&'static str>,
    rewarm: String,
}

#[derive(askama::Template)]
#[template(path = "console/forecasts.html")]
struct ForecastsPage {
    chrome: Chrome,
    /// Why there is nothing to show (no model loaded).
    unavailable: Option<String>,
    picker: Picker,
    shown: Option<Shown>,
    serving: Option<Serving>,
}

async fn forecasts_page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<PickerQuery>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let chrome = session.chrome(SECTION.id, "Forecasts");
    let service = match forecasts::service(&state) {
        Ok(service) => service,
        Err(e) => {
            // The API answers 501 `forecast_model_missing`; the page says the same, in its frame.
            let status = e.kind.status();
            return page(
                status,
                &ForecastsPage {
                    chrome,
                    unavailable: Some(e.detail),
                    picker: Picker::default(),
                    shown: None,
                    serving: None,
                },
            );
        }
    };
    let mut picker = picker(&service, &query);
    let shown = match show(&service, &query) {
        Ok(shown) => Some(shown),
        Err(e) => {
            let Some(parameter) = e.extensions.get("parameter").and_then(|p| p.as_str()) else {
                return Err(ConsoleError::Api(e));
            };
            let slot = match parameter {
                "station" => &mut picker.station_error,
                "horizon" => &mut picker.horizon_error,
                "vars" => &mut picker.variable_error,
                "at" => &mut picker.at_error,
                _ => return Err(ConsoleError::Api(e)),
            };
            *slot = Some(e.detail);
            None
        }
    };
    let status = if shown.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    // After the picked forecast, so its search is counted.
    let serving = Some(serving(&service));
    page(
        status,
        &ForecastsPage {
            chrome,
            unavailable: None,
            picker,
            shown,
            serving,
        },
    )
}

/// The diagnostics, as the page shows them.
fn serving(service: &ForecastService) -> Serving {
    let d = service.diagnostics();
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"));
    let searches = d
        .horizons
        .iter()
        .map(|h| SearchRow {
            horizon: h.horizon.clone(),
            searches: h.stats.searches,
            p50: ms(h.stats.p50_ms),
            p99: ms(h.stats.p99_ms),
            grade: h.grade.unwrap_or("–").to_owned(),
            optimal: h.statuses.optimal,
            suboptimal: h.statuses.suboptimal,
            slow: h.statuses.slow,
            last_status: h
                .last_status
                .map_or_else(|| "–".to_owned(), |s| s.as_str().to_owned()),
            advice: if h.advice.is_empty() {
                "–".to_owned()
            } else {
                h.advice.join("; ")
            },
        })
        .collect();
    let c = &d.cache;
    let cache = if c.enabled {
        format!(
            "{} entries; {} hits, {} computed{}; {} warmed at start",
            c.entries,
            c.hits,
            c.misses,
            c.hit_rate
                .map(|r| format!(" (hit rate {:.1} %)", r * 100.0))
                .unwrap_or_default(),
            c.warmed
        )
    } else {
        "off".to_owned()
    };
    let s = &d.slow_requests;
    let slow_requests = if s.total_slow_requests == 0 {
        "none (a request of 1 s or more is recorded)".to_owned()
    } else {
        let sev = &s.severity_distribution;
        format!(
            "{} kept of {} since start: {} critical, {} high, {} medium, {} low",
            s.total_slow_requests,
            s.recorded_since_start,
            sev.critical,
            sev.high,
            sev.medium,
            sev.low
        )
    };
    let slow_routes = s
        .most_problematic_routes
        .iter()
        .map(|r| format!("{} ({})", r.route, r.count))
        .collect::<Vec<_>>()
        .join(", ");
    let r = &d.rewarm;
    let rewarm = match (r.interval_seconds, &r.last) {
        (None, _) => "off".to_owned(),
        (Some(every), None) => format!("every {every} s; no run yet"),
        (Some(every), Some(last)) => format!(
            "every {every} s; {} runs, the last at {} recomputed {} forecasts in {:.0} ms",
            r.runs, last.finished_at, last.warmed, last.took_ms
        ),
    };
    let pair = |a: Option<usize>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "–".to_owned(),
    };
    let indexes = d
        .model
        .indexes
        .iter()
        .map(|i| IndexRow {
            station: i.station.clone(),
            horizon: i.horizon.clone(),
            kind: i.kind,
            vectors: i.vectors,
            dimension: i.dimension,
            nlist_nprobe: pair(i.nlist, i.nprobe.map(|n| n.to_string())),
            m_nbits: pair(i.m, i.nbits.map(|n| n.to_string())),
            shortlist: i
                .shortlist
                .map_or_else(|| "–".to_owned(), |n| n.to_string()),
            bytes: forecasts::human_bytes(i.bytes),
            advice: if i.advice.is_empty() {
                "–".to_owned()
            } else {
                i.advice.join("; ")
            },
        })
        .collect();
    let memory = format!(
        "{} resident{}",
        forecasts::human_bytes(d.model.resident_bytes),
        d.model
            .memory_budget
            .map(|b| format!(" of a {} budget", forecasts::human_bytes(b)))
            .unwrap_or_else(|| ", no budget set".to_owned())
    );
    Serving {
        indexes,
        memory,
        searches,
        cache,
        slow_requests,
        slow_routes,
        slow_recommendations: s.recommendations.clone(),
        rewarm,
    }
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The picker's choices from the model, with the query's values (or the defaults) selected.
fn picker(service: &ForecastService, query: &PickerQuery) -> Picker {
    let model = service.model();
    let stations = model.stations();
    let station = given(&query.station)
        .or(stations.first().copied())
        .unwrap_or_default();
    let horizon = given(&query.horizon)
        .map(str::to_owned)
        .unwrap_or_else(|| DEFAULT_HORIZON.to_string());
    let variable = given(&query.variable)
        .map(str::to_owned)
        .unwrap_or_else(|| DEFAULT_VARIABLE.to_string());
    let range = model.issue_range(station);
    Picker {
        stations: stations
            .iter()
            .map(|s| Choice {
                value: (*s).to_owned(),
                label: (*s).to_owned(),
                selected: *s == station,
            })
            .collect(),
        horizons: Horizon::ALL
            .iter()
            .map(|h| Choice {
                value: h.to_string(),
                label: format!("{} hours ahead", h.hours()),
                selected: h.to_string() == horizon,
            })
            .collect(),
        variables: Variable::ALL
            .iter()
            .map(|v| Choice {
                value: v.to_string(),
                label: format!("{v} ({})", v.unit()),
                selected: v.to_string() == variable,
            })
            .collect(),
        // Empty means the latest time; the field shows that time so the default is visible.
        at: given(&query.at)
            .map(str::to_owned)
            .or_else(|| range.map(|(_, latest)| time_of(latest)))
            .unwrap_or_default(),
        at_range: range
            .map(|(first, latest)| format!("{} to {}", time_of(first), time_of(latest)))
            .unwrap_or_default(),
        ..Picker::default()
    }
}

fn time_of(unix_seconds: i64) -> String {
    crate::rfc3339_ms(unix_seconds.saturating_mul(1000))
}

/// The picked forecast, and the same request at every other horizon for the fan.
fn show(service: &ForecastService, query: &PickerQuery) -> Result<Shown, ApiError> {
    let station = given(&query.station)
        .map(str::to_owned)
        .or_else(|| service.model().stations().first().map(|s| (*s).to_owned()));
    let horizon = given(&query.horizon)
        .map(str::to_owned)
        .unwrap_or_else(|| DEFAULT_HORIZON.to_string());
    let variable = given(&query.variable)
        .map(str::to_owned)
        .unwrap_or_else(|| DEFAULT_VARIABLE.to_string());
    // One variable: a comma would let the field ask for several.
    if variable.contains(',') {
        return Err(ApiError::invalid_parameter(
            "vars",
            format!("variable must be one variable name (got '{variable}')"),
        ));
    }
    let request = service.parse_request(&RequestText {
        station: station.as_deref(),
        horizon: Some(&horizon),
        vars: Some(&variable),
        at: given(&query.at),
        ..RequestText::default()
    })?;
    let picked = service.forecast(&request).map_err(forecasts::problem)?;
    // Every horizon from the same issue time: the picked one's answer fixes that time (the
    // latest, when none was given).
    let issued = analog::forecast::parse_time(&picked.issued_at).ok();
    let all: Vec<(Horizon, Option<Forecast>)> = Horizon::ALL
        .iter()
        .map(|&h| {
            if h == request.horizon {
                return (h, Some(picked.clone()));
            }
            let other = ForecastRequest {
                horizon: h,
                at: issued.or(request.at),
                ..request.clone()
            };
            // A horizon the data cannot answer at this time is left out of the fan.
            (h, service.forecast(&other).ok())
        })
        .collect();
    Ok(shown(service, &request, &picked, &all))
}

fn shown(
    service: &ForecastService,
    request: &ForecastRequest,
    picked: &Forecast,
    all: &[(Horizon, Option<Forecast>)],
) -> Shown {
    let var = picked.variables.first();
    let name = var.map_or_else(String::new, |v| v.name.clone());
    let unit = var.map_or_else(String::new, |v| v.unit.clone());
    let of = |f: &Option<Forecast>| f.as_ref().and_then(|f| f.variables.first().cloned());
    let x: Vec<f64> = all.iter().map(|(h, _)| f64::from(h.hours())).collect();
    let series = |pick: fn(&analog::forecast::VariableForecast) -> f64| -> Vec<f64> {
        all.iter()
            .map(|(_, f)| of(f).map_or(f64::NAN, |v| pick(&v)))
            .collect()
    };
    let p10 = series(|v| v.p10);
    let p50 = series(|v| v.median);
    let p90 = series(|v| v.p90);
    let k = all
        .iter()
        .filter_map(|(_, f)| of(f).map(|v| v.members.len()))
        .max()
        .unwrap_or(0);
    let members: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            all.iter()
                .map(|(_, f)| {
                    of(f)
                        .and_then(|v| v.members.get(i).copied())
                        .unwrap_or(f64::NAN)
                })
                .collect()
        })
        .collect();
    let member_refs: Vec<&[f64]> = members.iter().map(Vec::as_slice).collect();
    let observed: Vec<Option<f64>> = all
        .iter()
        .map(|(_, f)| of(f).and_then(|v| v.observed))
        .collect();
    let title = format!(
        "{name} at {} from {}: ensemble by hours ahead",
        picked.station, picked.issued_at
    );
    let y_label = format!("{name} ({unit})");
    let chart = charts::fan_chart(&FanChart {
        title: &title,
        x_label: "hours ahead",
        y_label: &y_label,
        x: &x,
        p10: &p10,
        p50: &p50,
        p90: &p90,
        members: &member_refs,
        observed: Some(&observed),
        x_format: |h| format!("+{h:.0} h"),
    });
    let number = |v: f64| format!("{v:.2}");
    let horizons = all
        .iter()
        .map(|(h, f)| {
            let v = of(f);
            let cell = |pick: fn(&analog::forecast::VariableForecast) -> f64| {
                v.as_ref()
                    .map_or_else(|| "–".to_owned(), |v| number(pick(v)))
            };
            let observed = v.as_ref().and_then(|v| v.observed);
            HorizonRow {
                horizon: h.to_string(),
                picked: *h == request.horizon,
                valid_at: f
                    .as_ref()
                    .map_or_else(|| "no forecast".to_owned(), |f| f.valid_at.clone()),
                p10: cell(|v| v.p10),
                median: cell(|v| v.median),
                p90: cell(|v| v.p90),
                mean: cell(|v| v.mean),
                spread: cell(|v| v.spread),
                observed: observed.map_or_else(|| "–".to_owned(), number),
                median_error: match (&v, observed) {
                    (Some(v), Some(o)) => number((v.median - o).abs()),
                    _ => "–".to_owned(),
                },
                crps: match (&v, observed) {
                    (Some(v), Some(o)) => {
                        crps_ensemble(&v.members, o).map_or_else(|| "–".to_owned(), number)
                    }
                    _ => "–".to_owned(),
                },
            }
        })
        .collect::<Vec<_>>();
    Shown {
        chart,
        title,
        unit,
        issued_at: picked.issued_at.clone(),
        k: picked.k,
        similarity: picked.similarity.clone(),
        member_kind: picked.member_kind.clone(),
        model_version: service.version().to_owned(),
        any_observed: observed.iter().any(Option::is_some),
        horizons,
        analogs: picked
            .analogs
            .iter()
            .enumerate()
            .map(|(i, a)| AnalogRow {
                rank: i + 1,
                time: a.time.clone(),
                distance: format!("{:.3}", a.distance),
            })
            .collect(),
    }
}
