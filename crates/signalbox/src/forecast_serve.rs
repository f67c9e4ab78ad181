//! Loading the forecast model for `serve`: an operator's model directory, or the demo model
//! built from the bundled data on first start.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use analog::forecast::BuildOptions;
use anyhow::Context;
use server::forecasts::{ForecastService, ForecastSettings};

/// The bundled demo data: hourly 2013 observations at EWR, JFK and LGA (CC0; see
/// `demo/README.md`).
pub const DEMO_CSV: &str = include_str!("../../../demo/nyc_weather_2013.csv");

/// Ensemble size the warmed forecasts use (seed 001's default).
const DEFAULT_K: usize = 10;

/// Loads (and for the demo model, first builds) the model in `dir`, wraps it for serving and
/// warms the popular configurations.
///
/// An operator's directory that is missing or corrupt is an error naming the file. The demo
/// directory is derived data, so if it cannot be read (say, written by an older build) it is
/// rebuilt instead.
pub fn open_for_serving(
    dir: &Path,
    is_demo: bool,
    settings: &ForecastSettings,
) -> anyhow::Result<ForecastService> {
    let started = Instant::now();
    let model = if is_demo {
        let existing = dir
            .join(analog::forecast::MANIFEST)
            .exists()
            .then(|| crate::forecast_cmd::load_model(dir));
        match existing {
            // A model built by an older release with other defaults is rebuilt, so the demo
            // always shows what this build does.
            Some(Ok(model)) if model.options() == &BuildOptions::default() => model,
            other => {
                match other {
                    Some(Err(e)) => {
                        tracing::warn!(dir = %dir.display(), error = format!("{e:#}"), "the demo forecast model cannot be read; rebuilding it")
                    }
                    Some(Ok(_)) => {
                        tracing::info!(dir = %dir.display(), "the demo forecast model was built with other settings; rebuilding it")
                    }
                    None => {}
                }
                tracing::info!(dir = %dir.display(), "building the demo forecast model from the bundled 2013 NYC data");
                crate::forecast_cmd::build_model_dir(
                    DEMO_CSV,
                    dir,
                    &BuildOptions::default(),
                    &mut |_, _| {},
                )
                .context("forecast: building the demo model")?;
                crate::forecast_cmd::load_model(dir)?
            }
        }
    } else {
        crate::forecast_cmd::load_model(dir)?
    };
    let service = ForecastService::new(Arc::new(model), settings);
    // Before warming, which would page the whole model in.
    service.check_memory_budget().map_err(|e| {
        anyhow::anyhow!(
            "--forecast-memory-budget: the model in {}: {e}",
            dir.display()
        )
    })?;
    let warmed = service.warm(DEFAULT_K);
    tracing::info!(
        dir = %dir.display(),
        version = service.version(),
        stations = service.model().stations().join(","),
        warmed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "forecast model ready"
    );
    Ok(service)
}
