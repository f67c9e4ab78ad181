//! The model on disk: `manifest.json` plus, per station, one series file and one analogs file
//! per horizon, each an [`crate::format`] container. The caller does the I/O: it writes the
//! bytes [`ForecastModel::to_files`] returns, and hands [`ForecastModel::load`] the bytes of
//! each file (typically a memory map).

use serde::{Deserialize, Serialize};

use super::model::{BuildOptions, ForecastModel, HorizonModel, StationModel};
use super::state::Standardization;
use super::{format_time, ForecastError, Horizon, StationSeries, Variable, NVARS};
use crate::format::{FileWriter, FormatError, IndexFile};

/// Name of the manifest within the model directory.
pub const MANIFEST: &str = "manifest.json";
/// The model format version this build writes and reads.
pub const LOADABLE_FORMAT: u32 = 1;
const FORMAT_NAME: &str = "signalbox-analog-model";
const SERIES_KIND: &str = "analog-series";
const ANALOGS_KIND: &str = "analogs";

/// A serialised model: the manifest text and the other files' names and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    /// Contents of [`MANIFEST`].
    pub manifest: String,
    /// `(file name, bytes)` for every other file.
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    format_version: u32,
    /// Content version ([`ForecastModel::version`]).
    version: String,
    build: BuildOptions,
    window_hours: usize,
    state_dim: usize,
    predictors: Vec<String>,
    horizons: Vec<String>,
    variables: Vec<ManifestVariable>,
    standardization: Vec<ManifestStandardization>,
    stations: Vec<ManifestStation>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestVariable {
    name: String,
    unit: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestStandardization {
    variable: String,
    mean: f64,
    std: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestStation {
    code: String,
    first_observation: String,
    last_observation: String,
    hours: usize,
    first_issue: Option<String>,
    last_issue: Option<String>,
    series_file: ManifestFile,
    horizon_files: Vec<ManifestHorizon>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestFile {
    name: String,
    crc32: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestHorizon {
    horizon: String,
    analogs: usize,
    file: ManifestFile,
}

fn series_name(code: &str) -> String {
    format!("{code}.series.sbx")
}

fn horizon_name(code: &str, h: Horizon) -> String {
    format!("{code}.{h}.sbx")
}

fn section(v: Variable, what: &str) -> String {
    format!("{what}.{}", v.name())
}

fn write_err(e: FormatError) -> ForecastError {
    ForecastError::Corrupt {
        file: "(writing)".to_owned(),
        message: e.to_string(),
    }
}

fn crc_of(bytes: &[u8]) -> Result<u32, ForecastError> {
    // Parsing our own output also checks it before it reaches the disk.
    IndexFile::parse(crate::format::AlignedBytes::copy_from(bytes))
        .map(|f| f.checksum())
        .map_err(write_err)
}

impl ForecastModel {
    /// The model as files: write each to the model directory, then the manifest last (a
    /// directory with a manifest is complete).
    ///
    /// # Errors
    /// [`ForecastError::Corrupt`] if a container cannot be written (a bug).
    pub fn to_files(&self) -> Result<ModelFiles, ForecastError> {
        let mut files = Vec::new();
        let mut stations = Vec::new();
        for s in &self.stations {
            let code = &s.series.station;
            let mut w = FileWriter::new(SERIES_KIND).map_err(write_err)?;
            w.add_i64("start", &[s.series.start]).map_err(write_err)?;
            for v in Variable::ALL {
                w.add_f32(&section(v, "obs"), &s.series.columns[v.index()])
                    .map_err(write_err)?;
            }
            let bytes = w.to_bytes();
            let series_file = ManifestFile {
                name: series_name(code),
                crc32: format!("{:08x}", crc_of(&bytes)?),
            };
            files.push((series_file.name.clone(), bytes));
            let mut horizon_files = Vec::new();
            for hm in &s.horizons {
                let mut w = FileWriter::new(ANALOGS_KIND).map_err(write_err)?;
                w.add_i64("times", &hm.times).map_err(write_err)?;
                w.add_f32("states", &hm.states).map_err(write_err)?;
                for v in Variable::ALL {
                    w.add_f32(&section(v, "target"), &hm.targets[v.index()])
                        .map_err(write_err)?;
                    w.add_f32(&section(v, "current"), &hm.current[v.index()])
                        .map_err(write_err)?;
                }
                let bytes = w.to_bytes();
                let file = ManifestFile {
                    name: horizon_name(code, hm.horizon),
                    crc32: format!("{:08x}", crc_of(&bytes)?),
                };
                files.push((file.name.clone(), bytes));
                horizon_files.push(ManifestHorizon {
                    horizon: hm.horizon.to_string(),
                    analogs: hm.times.len(),
                    file,
                });
            }
            stations.push(ManifestStation {
                code: code.clone(),
                first_observation: format_time(s.series.start),
                last_observation: format_time(s.series.time(s.series.len().saturating_sub(1))),
                hours: s.series.len(),
                first_issue: s.issue_range.map(|r| format_time(r.0)),
                last_issue: s.issue_range.map(|r| format_time(r.1)),
                series_file,
                horizon_files,
            });
        }
        let shape = self.options.shape();
        let manifest = Manifest {
            format: FORMAT_NAME.to_owned(),
            format_version: LOADABLE_FORMAT,
            version: self.version.clone(),
            build: self.options.clone(),
            window_hours: self.options.window,
            state_dim: shape.dim(),
            predictors: Variable::ALL.iter().map(|v| v.name().to_owned()).collect(),
            horizons: Horizon::ALL.iter().map(ToString::to_string).collect(),
            variables: Variable::ALL
                .iter()
                .map(|v| ManifestVariable {
                    name: v.name().to_owned(),
                    unit: v.unit().to_owned(),
                })
                .collect(),
            standardization: Variable::ALL
                .iter()
                .map(|v| ManifestStandardization {
                    variable: v.name().to_owned(),
                    mean: self.standardization.mean[v.index()],
                    std: self.standardization.std[v.index()],
                })
                .collect(),
            stations,
        };
        let manifest =
            serde_json::to_string_pretty(&manifest).map_err(|e| ForecastError::Corrupt {
                file: MANIFEST.to_owned(),
                message: e.to_string(),
            })?;
        Ok(ModelFiles { manifest, files })
    }

    /// Loads a model from its manifest text and a function that returns the bytes of a named
    /// file (8-byte aligned: a memory map, or [`crate::format::AlignedBytes`]). Every file is
    /// verified (container checksum, the checksum the manifest recorded, kinds, section types
    /// and lengths) and its contents copied into the model.
    ///
    /// # Errors
    /// [`ForecastError::Corrupt`] naming the file at fault.
    pub fn load<B: AsRef<[u8]>>(
        manifest: &str,
        open: &mut dyn FnMut(&str) -> Result<B, String>,
    ) -> Result<ForecastModel, ForecastError> {
        let bad_manifest = |message: String| ForecastError::Corrupt {
            file: MANIFEST.to_owned(),
            message,
        };
        let m: Manifest = serde_json::from_str(manifest)
            .map_err(|e| bad_manifest(format!("not a model manifest: {e}")))?;
        if m.format != FORMAT_NAME {
            return Err(bad_manifest(format!(
                "format {:?} is not {FORMAT_NAME:?}",
                m.format
            )));
        }
        if m.format_version != LOADABLE_FORMAT {
            return Err(bad_manifest(format!(
                "model format version {} is not supported (this build reads {LOADABLE_FORMAT})",
                m.format_version
            )));
        }
        let expected_predictors: Vec<String> =
            Variable::ALL.iter().map(|v| v.name().to_owned()).collect();
        if m.predictors != expected_predictors || m.standardization.len() != NVARS {
            return Err(bad_manifest(
                "predictors differ from this build's (t2m, dewpoint, humidity, u10, v10, msl, precip)"
                    .to_owned(),
            ));
        }
        let standardization = Standardization {
            mean: std::array::from_fn(|v| m.standardization[v].mean),
            std: std::array::from_fn(|v| m.standardization[v].std),
        };
        if standardization
            .std
            .iter()
            .chain(&standardization.mean)
            .any(|x| !x.is_finite())
            || standardization.std.iter().any(|s| *s <= 0.0)
        {
            return Err(bad_manifest(
                "standardization is not finite and positive".to_owned(),
            ));
        }
        let options = m.build;
        let shape = options.shape();
        let dim = shape.dim();
        if m.state_dim != dim {
            return Err(bad_manifest(format!(
                "state_dim {} does not match the build options ({dim})",
                m.state_dim
            )));
        }
        let blocks = shape.blocks(&options.predictor_weights);

        let mut stations = Vec::with_capacity(m.stations.len());
        for ms in &m.stations {
            let series = {
                let name = &ms.series_file.name;
                let file = open_file(open, &ms.series_file)?;
                let corrupt = corrupt_in(name);
                file.expect_kind(SERIES_KIND).map_err(&corrupt)?;
                let start = match file.i64s("start").map_err(&corrupt)? {
                    [start] => *start,
                    _ => return Err(corrupt_msg(name, "section \"start\" must hold one value")),
                };
                let mut columns: [Vec<f32>; NVARS] = std::array::from_fn(|_| Vec::new());
                for v in Variable::ALL {
                    columns[v.index()] = file.f32s(&section(v, "obs")).map_err(&corrupt)?.to_vec();
                }
                if columns.iter().any(|c| c.len() != columns[0].len()) {
                    return Err(corrupt_msg(name, "variables have different lengths"));
                }
                StationSeries {
                    station: ms.code.clone(),
                    start,
                    columns,
                }
            };
            let mut horizons = Vec::with_capacity(Horizon::ALL.len());
            for horizon in Horizon::ALL {
                let mh = ms
                    .horizon_files
                    .iter()
                    .find(|h| h.horizon == horizon.to_string())
                    .ok_or_else(|| {
                        bad_manifest(format!("station {}: no {horizon} analogs file", ms.code))
                    })?;
                let name = &mh.file.name;
                let file = open_file(open, &mh.file)?;
                let corrupt = corrupt_in(name);
                file.expect_kind(ANALOGS_KIND).map_err(&corrupt)?;
                let times = file.i64s("times").map_err(&corrupt)?.to_vec();
                let states = file.f32s("states").map_err(&corrupt)?.to_vec();
                if states.len() != times.len() * dim || !times.is_sorted() {
                    return Err(corrupt_msg(
                        name,
                        &format!(
                            "{} states of dimension {dim} do not match {} sorted times",
                            states.len() as f64 / dim as f64,
                            times.len()
                        ),
                    ));
                }
                let mut targets: [Vec<f32>; NVARS] = std::array::from_fn(|_| Vec::new());
                let mut current: [Vec<f32>; NVARS] = std::array::from_fn(|_| Vec::new());
                for v in Variable::ALL {
                    targets[v.index()] =
                        file.f32s(&section(v, "target")).map_err(&corrupt)?.to_vec();
                    current[v.index()] = file
                        .f32s(&section(v, "current"))
                        .map_err(&corrupt)?
                        .to_vec();
                }
                if targets
                    .iter()
                    .chain(&current)
                    .any(|c| c.len() != times.len())
                {
                    return Err(corrupt_msg(name, "targets do not match the times"));
                }
                horizons.push(
                    HorizonModel::new(horizon, dim, &blocks, times, states, targets, current)
                        .map_err(|e| corrupt_msg(name, &e.to_string()))?,
                );
            }
            let issue_range = match (&ms.first_issue, &ms.last_issue) {
                (Some(a), Some(b)) => Some((
                    super::parse_time(a).map_err(bad_manifest)?,
                    super::parse_time(b).map_err(bad_manifest)?,
                )),
                _ => None,
            };
            stations.push(StationModel {
                series,
                horizons,
                issue_range,
            });
        }
        let mut model = ForecastModel {
            options,
            standardization,
            stations,
            version: m.version,
        };
        let computed = model.content_version();
        if computed != model.version {
            return Err(bad_manifest(format!(
                "content version {} does not match the files ({computed}); rebuild the model",
                model.version
            )));
        }
        model.version = computed;
        Ok(model)
    }
}

fn corrupt_in(name: &str) -> impl Fn(FormatError) -> ForecastError + '_ {
    move |e| corrupt_msg(name, &e.to_string())
}

fn corrupt_msg(name: &str, message: &str) -> ForecastError {
    ForecastError::Corrupt {
        file: name.to_owned(),
        message: message.to_owned(),
    }
}

fn open_file<B: AsRef<[u8]>>(
    open: &mut dyn FnMut(&str) -> Result<B, String>,
    file: &ManifestFile,
) -> Result<IndexFile<B>, ForecastError> {
    if file.name.contains(['/', '\\']) || file.name.starts_with('.') {
        return Err(corrupt_msg(
            MANIFEST,
            &format!("file name {:?} is not a plain file name", file.name),
        ));
    }
    let bytes = open(&file.name).map_err(|e| corrupt_msg(&file.name, &e))?;
    let parsed = IndexFile::parse(bytes).map_err(|e| corrupt_msg(&file.name, &e.to_string()))?;
    let recorded = format!("{:08x}", parsed.checksum());
    if recorded != file.crc32 {
        return Err(corrupt_msg(
            &file.name,
            &format!(
                "checksum {recorded} differs from the {} in {MANIFEST}: the file was replaced",
                file.crc32
            ),
        ));
    }
    Ok(parsed)
}
