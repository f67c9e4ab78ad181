//! The model on disk (format 2): `manifest.json` plus, per station, a series file, a states
//! file and one analog-ids file per horizon, each an [`crate::format`] container. The caller
//! does the I/O: it writes the bytes [`ModelPlan::build_station`] (or
//! [`ForecastModel::to_files`]) returns, and hands [`ForecastModel::load`] the bytes of each
//! file (typically a memory map, which the loaded model then reads in place).

use serde::{Deserialize, Serialize};

use super::data::SeriesView;
use super::model::{
    BuildOptions, ForecastModel, HorizonModel, ModelPlan, StationModel, StationStates, StoredSeries,
};
use super::state::Standardization;
use super::{format_time, ForecastError, Horizon, IndexChoice, StationSeries, Variable, NVARS};
use crate::forecast::anen::{AnEnIndex, Block, TILE};
use crate::format::{FileWriter, FormatError, IndexFile};
use crate::storage::{self, Section, SharedFile};
use crate::IvfPqIndex;

/// Name of the manifest within the model directory.
pub const MANIFEST: &str = "manifest.json";
/// The model format version this build writes and reads.
pub const LOADABLE_FORMAT: u32 = 2;
const FORMAT_NAME: &str = "signalbox-analog-model";
const SERIES_KIND: &str = "analog-series";
const STATES_KIND: &str = "analog-states";
const ANALOGS_KIND: &str = "analogs";
/// Section names of the observations, in [`Variable::ALL`] order (static: a loaded model keeps
/// borrowing the sections by name).
const OBS_SECTIONS: [&str; NVARS] = [
    "obs.t2m",
    "obs.dewpoint",
    "obs.humidity",
    "obs.u10",
    "obs.v10",
    "obs.msl",
    "obs.precip",
];

/// A serialised model: the manifest text and the other files' names and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    /// Contents of [`MANIFEST`].
    pub manifest: String,
    /// `(file name, bytes)` for every other file.
    pub files: Vec<(String, Vec<u8>)>,
}

/// One station built by [`ModelPlan::build_station`]: its files, to be written before the
/// manifest, and its manifest entry.
#[derive(Debug)]
pub struct StationFiles {
    /// `(file name, bytes)` of the station's files.
    pub files: Vec<(String, Vec<u8>)>,
    /// The station's manifest entry, for [`ModelPlan::manifest`].
    pub entry: StationEntry,
}

/// A station's entry in the manifest (its files, their checksums, its analog counts).
#[derive(Debug, Clone)]
pub struct StationEntry(ManifestStation);

impl StationEntry {
    /// The station code.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// Analogs per horizon, in [`Horizon::ALL`] order.
    pub fn analog_counts(&self) -> Vec<(Horizon, usize)> {
        Horizon::ALL
            .iter()
            .zip(&self.0.horizon_files)
            .map(|(h, m)| (*h, m.analogs))
            .collect()
    }
}

/// The first two fields, read before the rest so that another format version is refused by
/// its number rather than by whatever field it lacks.
#[derive(Debug, Deserialize)]
struct ManifestHeader {
    format: String,
    format_version: u32,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestStation {
    code: String,
    first_observation: String,
    last_observation: String,
    hours: usize,
    first_issue: Option<String>,
    last_issue: Option<String>,
    /// States (hours with a complete window).
    states: usize,
    series_file: ManifestFile,
    states_file: ManifestFile,
    horizon_files: Vec<ManifestHorizon>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestFile {
    name: String,
    crc32: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestHorizon {
    horizon: String,
    analogs: usize,
    /// The index resolved for this station and horizon.
    index: IndexChoice,
    file: ManifestFile,
    /// The IVF-PQ index file, for an IVF-PQ choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ivfpq_file: Option<ManifestFile>,
}

fn series_name(code: &str) -> String {
    format!("{code}.series.sbx")
}

fn states_name(code: &str) -> String {
    format!("{code}.states.sbx")
}

fn horizon_name(code: &str, h: Horizon) -> String {
    format!("{code}.{h}.sbx")
}

fn ivfpq_name(code: &str, h: Horizon) -> String {
    format!("{code}.{h}.ivfpq.sbx")
}

fn write_err(e: FormatError) -> ForecastError {
    ForecastError::Corrupt {
        file: "(writing)".to_owned(),
        message: e.to_string(),
    }
}

fn crc_of(bytes: &[u8]) -> Result<u32, ForecastError> {
    // Parsing our own output also checks it before it reaches the disk.
    crate::format::IndexFile::parse(crate::format::AlignedBytes::copy_from(bytes))
        .map(|f| f.checksum())
        .map_err(write_err)
}

fn file_entry(name: String, bytes: &[u8]) -> Result<ManifestFile, ForecastError> {
    Ok(ManifestFile {
        name,
        crc32: format!("{:08x}", crc_of(bytes)?),
    })
}

impl StationModel {
    /// The station's files and manifest entry.
    fn to_files(&self) -> Result<StationFiles, ForecastError> {
        let code = &self.code;
        let series = self.series.view();
        let mut files = Vec::with_capacity(2 + Horizon::ALL.len());

        let mut w = FileWriter::new(SERIES_KIND).map_err(write_err)?;
        w.add_i64("start", &[series.start]).map_err(write_err)?;
        for v in Variable::ALL {
            w.add_f32(OBS_SECTIONS[v.index()], series.columns[v.index()])
                .map_err(write_err)?;
        }
        let bytes = w.to_bytes();
        let series_file = file_entry(series_name(code), &bytes)?;
        files.push((series_file.name.clone(), bytes));

        let mut w = FileWriter::new(STATES_KIND).map_err(write_err)?;
        w.add_u32("hours", self.states.hours.as_slice())
            .map_err(write_err)?;
        w.add_f32("tiles", self.states.anen.tiles())
            .map_err(write_err)?;
        let bytes = w.to_bytes();
        let states_file = file_entry(states_name(code), &bytes)?;
        files.push((states_file.name.clone(), bytes));

        let mut horizon_files = Vec::with_capacity(Horizon::ALL.len());
        for hm in &self.horizons {
            let mut w = FileWriter::new(ANALOGS_KIND).map_err(write_err)?;
            w.add_u32("ids", hm.ids.as_slice()).map_err(write_err)?;
            let bytes = w.to_bytes();
            let file = file_entry(horizon_name(code, hm.horizon), &bytes)?;
            files.push((file.name.clone(), bytes));
            let ivfpq_file = match &hm.ivfpq {
                Some(index) => {
                    // Without raw vectors: re-ranking reads the station's tiles.
                    let bytes = index.to_file_bytes().map_err(|e| ForecastError::Corrupt {
                        file: "(writing)".to_owned(),
                        message: e.to_string(),
                    })?;
                    let entry = file_entry(ivfpq_name(code, hm.horizon), &bytes)?;
                    files.push((entry.name.clone(), bytes));
                    Some(entry)
                }
                None => None,
            };
            horizon_files.push(ManifestHorizon {
                horizon: hm.horizon.to_string(),
                analogs: hm.len(),
                index: hm.choice,
                file,
                ivfpq_file,
            });
        }
        let issue_range = self.issue_range();
        let entry = ManifestStation {
            code: code.clone(),
            first_observation: format_time(series.start),
            last_observation: format_time(series.time(series.len().saturating_sub(1))),
            hours: series.len(),
            first_issue: issue_range.map(|r| format_time(r.0)),
            last_issue: issue_range.map(|r| format_time(r.1)),
            states: self.states.len,
            series_file,
            states_file,
            horizon_files,
        };
        Ok(StationFiles {
            files,
            entry: StationEntry(entry),
        })
    }
}

fn manifest_text(
    options: &BuildOptions,
    standardization: &Standardization,
    version: &str,
    stations: Vec<ManifestStation>,
) -> Result<String, ForecastError> {
    let manifest = Manifest {
        format: FORMAT_NAME.to_owned(),
        format_version: LOADABLE_FORMAT,
        version: version.to_owned(),
        build: options.clone(),
        window_hours: options.window,
        state_dim: options.shape().dim(),
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
                mean: standardization.mean[v.index()],
                std: standardization.std[v.index()],
            })
            .collect(),
        stations,
    };
    serde_json::to_string_pretty(&manifest).map_err(|e| ForecastError::Corrupt {
        file: MANIFEST.to_owned(),
        message: e.to_string(),
    })
}

impl ModelPlan {
    /// Builds one station (its states and analog ids) and serialises it: write the files,
    /// keep the entry for [`manifest`](Self::manifest), drop the rest. Pure; stations may be
    /// built in any order, concurrently. `progress(done, total)` is called per step.
    ///
    /// # Errors
    /// [`ForecastError::InvalidOption`] for a station the plan does not know or that is too
    /// long; [`ForecastError::Corrupt`] if a container cannot be written (a bug).
    pub fn build_station(
        &self,
        series: StationSeries,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<StationFiles, ForecastError> {
        self.station_model(series, progress)?.to_files()
    }

    /// The manifest for the stations' entries (in any order; every planned station exactly
    /// once). Write it after every station's files: a directory with a manifest is complete.
    ///
    /// # Errors
    /// [`ForecastError::InvalidOption`] when a planned station is missing or one is extra.
    pub fn manifest(&self, entries: Vec<StationEntry>) -> Result<String, ForecastError> {
        let mut by_code: Vec<Option<ManifestStation>> = vec![None; self.stations.len()];
        for StationEntry(entry) in entries {
            let slot = self
                .stations
                .iter()
                .position(|planned| planned.code == entry.code)
                .and_then(|i| by_code.get_mut(i))
                .filter(|slot| slot.is_none())
                .ok_or_else(|| ForecastError::InvalidOption {
                    field: "station",
                    message: format!("{} is not a planned station or came twice", entry.code),
                })?;
            *slot = Some(entry);
        }
        let stations = by_code
            .into_iter()
            .zip(&self.stations)
            .map(|(entry, planned)| {
                entry.ok_or_else(|| ForecastError::InvalidOption {
                    field: "station",
                    message: format!("{} was planned but not built", planned.code),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        manifest_text(
            &self.options,
            &self.standardization,
            &self.version,
            stations,
        )
    }
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
            let built = s.to_files()?;
            files.extend(built.files);
            stations.push(built.entry.0);
        }
        let manifest = manifest_text(
            &self.options,
            &self.standardization,
            &self.version,
            stations,
        )?;
        Ok(ModelFiles { manifest, files })
    }

    /// Loads a model from its manifest text and a function that returns the bytes of a named
    /// file (8-byte aligned: a memory map, or [`crate::format::AlignedBytes`]). Every file is
    /// verified (container checksum, the checksum the manifest recorded, kinds, section types,
    /// lengths, and that every id and hour is in range), then **read in place**: the model
    /// keeps the buffers alive and borrows its series, states and analog ids from them, so
    /// nothing large is copied. The buffers must not change while the model lives.
    ///
    /// # Errors
    /// [`ForecastError::Corrupt`] naming the file at fault; a manifest of another format
    /// version (e.g. 1) is refused with advice to rebuild.
    pub fn load<B>(
        manifest: &str,
        open: &mut dyn FnMut(&str) -> Result<B, String>,
    ) -> Result<ForecastModel, ForecastError>
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let bad_manifest = |message: String| ForecastError::Corrupt {
            file: MANIFEST.to_owned(),
            message,
        };
        let header: ManifestHeader = serde_json::from_str(manifest)
            .map_err(|e| bad_manifest(format!("not a model manifest: {e}")))?;
        if header.format != FORMAT_NAME {
            return Err(bad_manifest(format!(
                "format {:?} is not {FORMAT_NAME:?}",
                header.format
            )));
        }
        if header.format_version != LOADABLE_FORMAT {
            return Err(bad_manifest(format!(
                "model format version {} is not supported (this build reads version \
                 {LOADABLE_FORMAT}); rebuild the model with `signalbox forecast build`",
                header.format_version
            )));
        }
        let m: Manifest = serde_json::from_str(manifest)
            .map_err(|e| bad_manifest(format!("not a model manifest: {e}")))?;
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
        options.check().map_err(|e| bad_manifest(e.to_string()))?;
        let dim = options.shape().dim();
        let blocks = options.shape().blocks(&options.predictor_weights);
        if m.state_dim != dim {
            return Err(bad_manifest(format!(
                "state_dim {} does not match the build options ({dim})",
                m.state_dim
            )));
        }

        let mut stations = Vec::with_capacity(m.stations.len());
        for ms in &m.stations {
            let series = load_series(open, &ms.series_file)?;
            let states = load_states(open, &ms.states_file, dim, &blocks, series.view())?;
            let mut horizons = Vec::with_capacity(Horizon::ALL.len());
            for horizon in Horizon::ALL {
                let mh = ms
                    .horizon_files
                    .iter()
                    .find(|h| h.horizon == horizon.to_string())
                    .ok_or_else(|| {
                        bad_manifest(format!("station {}: no {horizon} analogs file", ms.code))
                    })?;
                let ids = load_ids(open, &mh.file, horizon, &states, series.view())?;
                let ivfpq = match (mh.index.ivfpq(), &mh.ivfpq_file) {
                    (None, _) => None,
                    (Some(_), None) => {
                        return Err(bad_manifest(format!(
                            "station {} {horizon}: the index is {} but there is no IVF-PQ file",
                            ms.code,
                            mh.index.kind()
                        )))
                    }
                    (Some(_), Some(entry)) => {
                        Some(load_ivfpq(open, entry, ids.as_slice().len(), dim)?)
                    }
                };
                horizons.push(HorizonModel {
                    horizon,
                    ids,
                    choice: mh.index,
                    ivfpq,
                });
            }
            share_quantizers(&mut horizons);
            stations.push(StationModel {
                code: ms.code.clone(),
                series,
                states,
                horizons,
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

/// A station's IVF-PQ horizons trained once (the build shares equal settings' training) hold
/// their lookup tables once after a load, as after the build.
fn share_quantizers(horizons: &mut [HorizonModel]) {
    for i in 1..horizons.len() {
        let (done, rest) = horizons.split_at_mut(i);
        if let Some(index) = rest[0].ivfpq.as_mut() {
            for earlier in done.iter().filter_map(|h| h.ivfpq.as_ref()) {
                if index.share_quantizers(earlier) {
                    break;
                }
            }
        }
    }
}

fn load_series<B>(
    open: &mut dyn FnMut(&str) -> Result<B, String>,
    entry: &ManifestFile,
) -> Result<StoredSeries, ForecastError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let name = entry.name.as_str();
    let file = open_file(open, entry, SERIES_KIND)?;
    let corrupt = corrupt_in(name);
    let start = match file.i64s("start").map_err(&corrupt)? {
        [start] => *start,
        _ => return Err(corrupt_msg(name, "section \"start\" must hold one value")),
    };
    let mut len = None;
    for section in OBS_SECTIONS {
        let n = file.f32s(section).map_err(&corrupt)?.len();
        if *len.get_or_insert(n) != n {
            return Err(corrupt_msg(name, "variables have different lengths"));
        }
    }
    if u32::try_from(len.unwrap_or(0)).is_err() {
        return Err(corrupt_msg(
            name,
            "more hours than a 32-bit hour index holds",
        ));
    }
    Ok(StoredSeries {
        start,
        columns: OBS_SECTIONS.map(|section| Section::borrowed(&file, section)),
    })
}

fn load_states<B>(
    open: &mut dyn FnMut(&str) -> Result<B, String>,
    entry: &ManifestFile,
    dim: usize,
    blocks: &[Block],
    series: SeriesView<'_>,
) -> Result<StationStates, ForecastError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let name = entry.name.as_str();
    let file = open_file(open, entry, STATES_KIND)?;
    let corrupt = corrupt_in(name);
    let hours = file.u32s("hours").map_err(&corrupt)?;
    let tiles = file.f32s("tiles").map_err(&corrupt)?;
    let len = hours.len();
    if !hours.windows(2).all(|w| w[0] < w[1])
        || hours.last().is_some_and(|h| *h as usize >= series.len())
    {
        return Err(corrupt_msg(
            name,
            &format!(
                "state hours are not ascending within the series' {} hours",
                series.len()
            ),
        ));
    }
    if tiles.len() != len.div_ceil(TILE) * dim * TILE {
        return Err(corrupt_msg(
            name,
            &format!(
                "{} tile values do not hold {len} states of dimension {dim}",
                tiles.len()
            ),
        ));
    }
    // Checks the tiles (length, finite values) and reads them in place from now on.
    let anen = AnEnIndex::from_file_section(&file, "tiles", dim, len, blocks)
        .map_err(|e| corrupt_msg(name, &e.to_string()))?;
    Ok(StationStates {
        len,
        hours: Section::borrowed(&file, "hours"),
        anen,
    })
}

/// Opens an IVF-PQ file (checked against the manifest's checksum), read in place.
fn load_ivfpq<B>(
    open: &mut dyn FnMut(&str) -> Result<B, String>,
    entry: &ManifestFile,
    vectors: usize,
    dim: usize,
) -> Result<IvfPqIndex, ForecastError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let name = entry.name.as_str();
    check_name(entry)?;
    let bytes = open(name).map_err(|e| corrupt_msg(name, &e))?;
    let parsed = IndexFile::parse(bytes).map_err(|e| corrupt_msg(name, &e.to_string()))?;
    check_recorded(entry, parsed.checksum())?;
    let index = IvfPqIndex::from_file(parsed.into_inner())
        .map_err(|e| corrupt_msg(name, &e.to_string()))?;
    if index.len() != vectors || index.dim() != dim {
        return Err(corrupt_msg(
            name,
            &format!(
                "the IVF-PQ index holds {} vectors of {} values, the horizon {vectors} of {dim}",
                index.len(),
                index.dim()
            ),
        ));
    }
    Ok(index)
}

fn load_ids<B>(
    open: &mut dyn FnMut(&str) -> Result<B, String>,
    entry: &ManifestFile,
    horizon: Horizon,
    states: &StationStates,
    series: SeriesView<'_>,
) -> Result<Section<u32>, ForecastError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let name = entry.name.as_str();
    let file = open_file(open, entry, ANALOGS_KIND)?;
    let ids = file.u32s("ids").map_err(corrupt_in(name))?;
    let hours = states.hours.as_slice();
    let h = horizon.hours() as usize;
    let in_range = |id: u32| {
        hours
            .get(id as usize)
            .is_some_and(|hour| *hour as usize + h < series.len())
    };
    if !ids.windows(2).all(|w| w[0] < w[1]) || !ids.iter().all(|id| in_range(*id)) {
        return Err(corrupt_msg(
            name,
            &format!(
                "analog ids are not ascending state ids with an outcome {horizon} later \
                 within the series"
            ),
        ));
    }
    Ok(Section::borrowed(&file, "ids"))
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

/// Opens, verifies (container, kind, the checksum the manifest recorded) and shares a file.
fn open_file<B>(
    open: &mut dyn FnMut(&str) -> Result<B, String>,
    file: &ManifestFile,
    kind: &str,
) -> Result<SharedFile, ForecastError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    check_name(file)?;
    let bytes = open(&file.name).map_err(|e| corrupt_msg(&file.name, &e))?;
    let parsed = storage::open(bytes, kind).map_err(|e| corrupt_msg(&file.name, &e.to_string()))?;
    check_recorded(file, parsed.checksum())?;
    Ok(parsed)
}

fn check_name(file: &ManifestFile) -> Result<(), ForecastError> {
    if file.name.contains(['/', '\\']) || file.name.starts_with('.') {
        return Err(corrupt_msg(
            MANIFEST,
            &format!("file name {:?} is not a plain file name", file.name),
        ));
    }
    Ok(())
}

/// Refuses a file whose checksum is not the one the manifest recorded.
fn check_recorded(file: &ManifestFile, checksum: u32) -> Result<(), ForecastError> {
    let recorded = format!("{checksum:08x}");
    if recorded != file.crc32 {
        return Err(corrupt_msg(
            &file.name,
            &format!(
                "checksum {recorded} differs from the {} in {MANIFEST}: the file was replaced",
                file.crc32
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_sections_are_named_after_the_variables() {
        for v in Variable::ALL {
            assert_eq!(OBS_SECTIONS[v.index()], format!("obs.{}", v.name()));
        }
    }
}
