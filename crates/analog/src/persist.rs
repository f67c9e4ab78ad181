//! Index files: [`FlatIndex`] and [`IvfPqIndex`] to and from the
//! [`format`](crate::format) container.
//!
//! Loading verifies the container (magic, version, checksum, section
//! table), then everything the search code relies on: the file's kind,
//! section sizes against the parameters, ids and codes in range, list
//! offsets monotone, values finite, and a flat index's padding zero. A file that fails any check is refused with an error
//! naming what is wrong; none can make a later search panic. The large
//! arrays (vectors, ids, codes) are then read in place from the caller's
//! buffer, e.g. a memory map, without copying.
//!
//! Sections of a `"flat"` file: `meta` (`u64`: dim, metric, len) and
//! `blocked` (`f32`, the transposed blocks the kernels read: the only copy
//! of the vectors). A `rows` section (a row-major copy, written before the
//! index kept one copy) is ignored. Of an `"ivfpq"` file: `meta` (`u64`: dim, metric, nlist, m, nbits,
//! nprobe, kmeans_iters, refine or 0, len), `centroids` (`f32`),
//! `codebook` (`f32`, `dim x 2^nbits`, transposed), `list_starts` (`u64`,
//! `nlist + 1` offsets), `ids` (`u32`, grouped by list), `codes` (`u8`,
//! `m` per vector in `ids` order) and, with `refine`, `vectors` (`f32`).

use crate::format::{FileWriter, FormatError};
use crate::ivfpq::{IvfPqIndex, IvfPqParams};
use crate::kernel::LANES;
use crate::pq::ProductQuantizer;
use crate::storage::{self, Section};
use crate::{check_rows, AnalogError, FlatIndex, Metric, MAX_VECTORS};

const FLAT_KIND: &str = "flat";
const IVFPQ_KIND: &str = "ivfpq";

/// Most padding blocks a flat file may carry past its last vector (this
/// build writes fewer than `kernel::BLOCK_GROUP`).
const MAX_PAD_BLOCKS: usize = 64;

fn malformed(what: String) -> AnalogError {
    AnalogError::Format(FormatError::Malformed(what))
}

fn metric_code(metric: Metric) -> u64 {
    match metric {
        Metric::InnerProduct => 0,
        Metric::L2 => 1,
    }
}

fn metric_from(code: u64) -> Result<Metric, AnalogError> {
    match code {
        0 => Ok(Metric::InnerProduct),
        1 => Ok(Metric::L2),
        other => Err(malformed(format!("unknown metric code {other}"))),
    }
}

fn to_usize(value: u64, what: &str) -> Result<usize, AnalogError> {
    usize::try_from(value)
        .map_err(|_| malformed(format!("{what} {value} does not fit this machine")))
}

/// `a * b`, or an error naming the section whose size it is.
fn size(a: usize, b: usize, what: &str) -> Result<usize, AnalogError> {
    a.checked_mul(b)
        .ok_or_else(|| malformed(format!("{what}: size {a} x {b} overflows")))
}

fn expect_len(found: usize, expected: usize, what: &str) -> Result<(), AnalogError> {
    if found == expected {
        Ok(())
    } else {
        Err(malformed(format!(
            "section {what} holds {found} values, expected {expected}"
        )))
    }
}

fn expect_finite(values: &[f32], what: &str) -> Result<(), AnalogError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(at) => Err(malformed(format!(
            "section {what} has a non-finite value at {at}"
        ))),
        None => Ok(()),
    }
}

impl FlatIndex {
    /// The index as an index file (kind `"flat"`), for
    /// [`from_file`](Self::from_file).
    ///
    /// # Errors
    /// [`AnalogError::Format`] only if the container refuses a section,
    /// which the fixed section names here never cause.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, AnalogError> {
        let mut writer = FileWriter::new(FLAT_KIND)?;
        writer
            .add_u64(
                "meta",
                &[self.dim as u64, metric_code(self.metric), self.len as u64],
            )?
            .add_f32("blocked", self.blocked.as_slice())?;
        Ok(writer.to_bytes())
    }

    /// Loads an index written by [`to_file_bytes`](Self::to_file_bytes)
    /// from a buffer that starts 8-byte aligned: a memory map (the
    /// vectors are then read in place, never copied) or
    /// [`AlignedBytes`](crate::format::AlignedBytes). The loaded index
    /// answers every search exactly as the saved one did.
    ///
    /// ```
    /// use analog::{format::AlignedBytes, FlatIndex, Metric};
    ///
    /// let mut index = FlatIndex::new(2, Metric::L2)?;
    /// index.add(&[0.0, 1.0, 2.0, 3.0])?;
    /// let bytes = index.to_file_bytes()?;
    /// let loaded = FlatIndex::from_file(AlignedBytes::copy_from(&bytes))?;
    /// assert_eq!(loaded.search(&[2.0, 2.0], 2)?, index.search(&[2.0, 2.0], 2)?);
    /// # Ok::<(), analog::AnalogError>(())
    /// ```
    ///
    /// # Errors
    /// [`AnalogError::Format`]: not an index file, a corrupt or truncated
    /// one, another kind of index, or sections inconsistent with each
    /// other.
    pub fn from_file<B>(bytes: B) -> Result<Self, AnalogError>
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let file = storage::open(bytes, FLAT_KIND)?;
        let &[dim, metric, len] = file.u64s("meta")? else {
            return Err(malformed("section meta must hold 3 values".into()));
        };
        let dim = to_usize(dim, "dim")?;
        if dim == 0 {
            return Err(malformed("dim is 0".into()));
        }
        let metric = metric_from(metric)?;
        let len = to_usize(len, "len")?;
        if len > MAX_VECTORS {
            return Err(malformed(format!("{len} vectors exceed the u32 id space")));
        }
        let blocked = file.f32s("blocked")?;
        check_blocked(blocked, dim, len)?;
        Ok(Self::from_parts(
            dim,
            metric,
            len,
            Section::borrowed(&file, "blocked"),
        ))
    }
}

/// The blocks must be whole blocks covering `len` rows (plus a little
/// padding), finite, and zero in the padding.
fn check_blocked(blocked: &[f32], dim: usize, len: usize) -> Result<(), AnalogError> {
    let block = size(dim, LANES, "blocked")?;
    let (blocks, rest) = (blocked.len() / block, blocked.len() % block);
    let needed = len.div_ceil(LANES);
    if rest != 0 || blocks < needed || blocks > needed + MAX_PAD_BLOCKS {
        return Err(malformed(format!(
            "section blocked holds {} values, not {needed} to {} blocks of {block}",
            blocked.len(),
            needed + MAX_PAD_BLOCKS
        )));
    }
    for (b, values) in blocked.chunks_exact(block).enumerate() {
        for (d, lanes) in values.chunks_exact(LANES).enumerate() {
            for (lane, &v) in lanes.iter().enumerate() {
                let id = b * LANES + lane;
                if id < len && !v.is_finite() {
                    return Err(malformed(format!(
                        "section blocked: vector {id}, component {d} is not finite"
                    )));
                }
                if id >= len && v.to_bits() != 0 {
                    return Err(malformed(format!(
                        "section blocked: padding row {id}, component {d} is not zero"
                    )));
                }
            }
        }
    }
    Ok(())
}

impl IvfPqIndex {
    /// The index as an index file (kind `"ivfpq"`), for
    /// [`from_file`](Self::from_file).
    ///
    /// # Errors
    /// [`AnalogError::Format`] only if the container refuses a section,
    /// which the fixed section names here never cause.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, AnalogError> {
        let p = self.params;
        let meta = [
            self.dim as u64,
            metric_code(self.metric),
            p.nlist as u64,
            p.m as u64,
            u64::from(p.nbits),
            p.nprobe as u64,
            p.kmeans_iters as u64,
            p.refine.map_or(0, |r| r as u64),
            self.len as u64,
        ];
        let starts: Vec<u64> = self.list_starts.iter().map(|&s| s as u64).collect();
        let mut writer = FileWriter::new(IVFPQ_KIND)?;
        writer
            .add_u64("meta", &meta)?
            .add_f32("centroids", &self.centroids)?
            .add_f32("codebook", self.pq.codebook_t())?
            .add_u64("list_starts", &starts)?
            .add_u32("ids", self.ids.as_slice())?
            .add_bytes("codes", self.codes.as_slice())?;
        if let Some(vectors) = &self.vectors {
            writer.add_f32("vectors", vectors.as_slice())?;
        }
        Ok(writer.to_bytes())
    }

    /// Loads an index written by [`to_file_bytes`](Self::to_file_bytes)
    /// from a buffer that starts 8-byte aligned (a memory map, or
    /// [`AlignedBytes`](crate::format::AlignedBytes)). Ids, codes and raw
    /// vectors are read in place; the small quantizer tables are rebuilt.
    /// The loaded index answers every search exactly as the saved one did.
    ///
    /// # Errors
    /// [`AnalogError::Format`] for a file that is not a valid `"ivfpq"`
    /// index (see the module docs), [`AnalogError::InvalidParameter`] for
    /// stored parameters out of range.
    pub fn from_file<B>(bytes: B) -> Result<Self, AnalogError>
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let file = storage::open(bytes, IVFPQ_KIND)?;
        let &[dim, metric, nlist, m, nbits, nprobe, iters, refine, len] = file.u64s("meta")? else {
            return Err(malformed("section meta must hold 9 values".into()));
        };
        let dim = to_usize(dim, "dim")?;
        if dim == 0 {
            return Err(malformed("dim is 0".into()));
        }
        let metric = metric_from(metric)?;
        let params = IvfPqParams {
            nlist: to_usize(nlist, "nlist")?,
            m: to_usize(m, "m")?,
            nbits: u32::try_from(nbits).map_err(|_| malformed(format!("nbits {nbits}")))?,
            nprobe: to_usize(nprobe, "nprobe")?,
            kmeans_iters: to_usize(iters, "kmeans_iters")?,
            refine: match refine {
                0 => None,
                r => Some(to_usize(r, "refine")?),
            },
        };
        params.validate(dim)?;
        let len = to_usize(len, "len")?;
        if len > MAX_VECTORS {
            return Err(malformed(format!("{len} vectors exceed the u32 id space")));
        }
        let (nlist, m, ksub) = (params.nlist, params.m, params.ksub());

        let centroids = file.f32s("centroids")?;
        expect_len(centroids.len(), size(nlist, dim, "centroids")?, "centroids")?;
        expect_finite(centroids, "centroids")?;
        let codebook = file.f32s("codebook")?;
        expect_len(codebook.len(), size(dim, ksub, "codebook")?, "codebook")?;
        expect_finite(codebook, "codebook")?;

        let starts = file.u64s("list_starts")?;
        expect_len(starts.len(), nlist + 1, "list_starts")?;
        if starts.first() != Some(&0)
            || starts.last() != Some(&(len as u64))
            || starts.windows(2).any(|w| w[0] > w[1])
        {
            return Err(malformed(format!(
                "section list_starts must rise from 0 to {len}"
            )));
        }
        let ids = file.u32s("ids")?;
        expect_len(ids.len(), len, "ids")?;
        let mut seen = vec![false; len];
        for &id in ids {
            match seen.get_mut(id as usize) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(malformed(format!(
                        "section ids: id {id} is out of range or repeated"
                    )))
                }
            }
        }
        let codes = file.bytes("codes")?;
        expect_len(codes.len(), size(len, m, "codes")?, "codes")?;
        if let Some(&bad) = codes.iter().find(|&&c| usize::from(c) >= ksub) {
            return Err(malformed(format!(
                "section codes: code {bad} is out of range for {ksub} code words"
            )));
        }
        let vectors = match params.refine {
            Some(_) => {
                let raw = file.f32s("vectors")?;
                expect_len(raw.len(), size(len, dim, "vectors")?, "vectors")?;
                check_rows(raw, dim)
                    .map_err(|_| malformed("section vectors has a non-finite value".into()))?;
                Some(Section::borrowed(&file, "vectors"))
            }
            None => None,
        };

        let pq = ProductQuantizer::from_parts(dim, m, ksub, codebook.to_vec());
        let mut index = Self::from_trained(dim, metric, params, centroids.to_vec(), pq)?;
        // `starts` rises to `len`, which fits a usize.
        index.list_starts = starts.iter().map(|&s| s as usize).collect();
        index.ids = Section::borrowed(&file, "ids");
        index.codes = Section::borrowed(&file, "codes");
        index.vectors = vectors;
        index.len = len;
        Ok(index)
    }
}
