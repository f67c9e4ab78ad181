//! The index file container: a versioned, checksummed file of named,
//! typed sections that can be read in place from a memory map.
//!
//! Every index type (and the forecaster's analog tables) is stored as one
//! such file. This module knows nothing about what the sections mean; it
//! guarantees that a parsed file is complete, uncorrupted, of a version this
//! build understands, and that every typed section can be borrowed as a
//! slice without copying.
//!
//! ```
//! use analog::format::{AlignedBytes, FileWriter, IndexFile};
//!
//! let mut writer = FileWriter::new("example")?;
//! writer.add_f32("vectors", &[1.0, 2.0, 3.0])?.add_i64("times", &[1_383_631_200])?;
//! let bytes = writer.to_bytes();
//!
//! // A memory map is page-aligned; bytes read into a Vec are copied into
//! // an aligned buffer first.
//! let file = IndexFile::parse(AlignedBytes::copy_from(&bytes))?;
//! assert_eq!(file.kind(), "example");
//! assert_eq!(file.f32s("vectors")?, &[1.0, 2.0, 3.0]);
//! assert_eq!(file.i64s("times")?, &[1_383_631_200]);
//!
//! // One flipped bit anywhere is caught by the checksum.
//! let mut corrupt = bytes.clone();
//! corrupt[100] ^= 1;
//! assert!(IndexFile::parse(AlignedBytes::copy_from(&corrupt)).is_err());
//! # Ok::<(), analog::format::FormatError>(())
//! ```
//!
//! ## Layout (version 1, all integers little-endian)
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic `SBXINDEX` |
//! | 8..12 | format version (`u32`) |
//! | 12..16 | number of sections `n` (`u32`) |
//! | 16..32 | kind: ASCII, NUL-padded (`"flat"`, `"ivfpq"`, `"analogs"`, …) |
//! | 32..40 | total file length in bytes (`u64`), trailer included |
//! | 40..64 | reserved, zero |
//! | 64..64+48n | section table, 48 bytes per section (below) |
//! | … | payloads, each starting on a 64-byte boundary, zero padding between |
//! | last 8 | CRC-32 (IEEE) of every byte before it (`u32`), then `SBXE` |
//!
//! A section table entry: name (24 bytes, ASCII, NUL-padded, unique in the
//! file), element type (`u32`: 1 = `u8`, 2 = `f32`, 3 = `u32`, 4 = `u64`,
//! 5 = `i64`), 4 reserved zero bytes, payload offset from the start of the
//! file (`u64`), payload length in bytes (`u64`).
//!
//! Readers refuse files whose version is newer than [`VERSION`]; a new
//! version is only needed when the layout above changes, not when an index
//! type adds a section.

use std::fmt;

use thiserror::Error;

/// The first eight bytes of every file.
pub const MAGIC: [u8; 8] = *b"SBXINDEX";

/// The container version this build writes and the newest it reads.
pub const VERSION: u32 = 1;

const HEADER_LEN: usize = 64;
const ENTRY_LEN: usize = 48;
const TRAILER_LEN: usize = 8;
const TRAILER_TAG: [u8; 4] = *b"SBXE";
const KIND_LEN: usize = 16;
const NAME_LEN: usize = 24;
const PAYLOAD_ALIGN: usize = 64;
/// More sections than any index type uses; bounds the table a crafted file
/// can make a reader walk.
const MAX_SECTIONS: usize = 4096;

/// The element type of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// Raw bytes (codes, UTF-8 JSON metadata, …).
    U8,
    /// 32-bit floats.
    F32,
    /// Unsigned 32-bit integers.
    U32,
    /// Unsigned 64-bit integers.
    U64,
    /// Signed 64-bit integers (e.g. unix times).
    I64,
}

impl ElementType {
    fn code(self) -> u32 {
        match self {
            Self::U8 => 1,
            Self::F32 => 2,
            Self::U32 => 3,
            Self::U64 => 4,
            Self::I64 => 5,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::U8,
            2 => Self::F32,
            3 => Self::U32,
            4 => Self::U64,
            5 => Self::I64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::F32 | Self::U32 => 4,
            Self::U64 | Self::I64 => 8,
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::U8 => "u8",
            Self::F32 => "f32",
            Self::U32 => "u32",
            Self::U64 => "u64",
            Self::I64 => "i64",
        })
    }
}

/// Why a file could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes do not start with [`MAGIC`].
    #[error("not a signalbox index file (wrong magic bytes)")]
    NotAnIndexFile,
    /// The file was written by a newer build.
    #[error("format version {found} is newer than this build supports ({supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// [`VERSION`].
        supported: u32,
    },
    /// The file is shorter (or longer) than its header says.
    #[error("file is truncated or padded: header says {expected} bytes, found {actual}")]
    Length {
        /// Length recorded in the header.
        expected: u64,
        /// Length of the buffer.
        actual: usize,
    },
    /// The checksum does not match the contents.
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x}): file is corrupt")]
    Checksum {
        /// CRC-32 stored in the trailer.
        stored: u32,
        /// CRC-32 of the contents.
        computed: u32,
    },
    /// The header or section table is inconsistent.
    #[error("malformed file: {0}")]
    Malformed(String),
    /// The buffer does not start on an 8-byte boundary.
    #[error(
        "buffer is not 8-byte aligned; copy it with AlignedBytes::copy_from or memory-map the file"
    )]
    Misaligned,
    /// This machine is big-endian; files are little-endian and read in place.
    #[error("index files can only be read on little-endian machines")]
    BigEndian,
    /// A kind or section name is empty, too long, or not ASCII.
    #[error("invalid {what} {name:?}: must be 1 to {max} ASCII characters without NUL")]
    InvalidName {
        /// `"kind"` or `"section name"`.
        what: &'static str,
        /// The name given.
        name: String,
        /// The longest allowed length.
        max: usize,
    },
    /// A section name was added twice.
    #[error("section {0:?} is written twice")]
    DuplicateSection(String),
    /// A section the reader needs is absent.
    #[error("section {0:?} is missing")]
    MissingSection(String),
    /// A section has another element type than the reader expects.
    #[error("section {name:?} holds {found}, expected {expected}")]
    WrongType {
        /// Section name.
        name: String,
        /// Type the reader asked for.
        expected: ElementType,
        /// Type in the file.
        found: ElementType,
    },
    /// The file has a different kind than the reader expects.
    #[error("file holds a {found:?} index, expected {expected:?}")]
    WrongKind {
        /// Kind the reader expects.
        expected: String,
        /// Kind in the file.
        found: String,
    },
}

struct PendingSection {
    name: String,
    element: ElementType,
    bytes: Vec<u8>,
}

/// Builds a file in memory; [`to_bytes`](Self::to_bytes) gives the
/// finished file, checksum included.
pub struct FileWriter {
    kind: String,
    sections: Vec<PendingSection>,
}

impl fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileWriter")
            .field("kind", &self.kind)
            .field(
                "sections",
                &self.sections.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl FileWriter {
    /// A writer for a file of the given kind (1 to 16 ASCII characters).
    ///
    /// # Errors
    /// [`FormatError::InvalidName`] for an empty, long or non-ASCII kind.
    pub fn new(kind: &str) -> Result<Self, FormatError> {
        check_name("kind", kind, KIND_LEN)?;
        Ok(Self {
            kind: kind.to_owned(),
            sections: Vec::new(),
        })
    }

    /// Adds a section of `f32` values.
    ///
    /// # Errors
    /// [`FormatError::InvalidName`], [`FormatError::DuplicateSection`].
    pub fn add_f32(&mut self, name: &str, data: &[f32]) -> Result<&mut Self, FormatError> {
        self.push(name, ElementType::F32, le_bytes(data, |v| v.to_le_bytes()))
    }

    /// Adds a section of `u32` values.
    ///
    /// # Errors
    /// [`FormatError::InvalidName`], [`FormatError::DuplicateSection`].
    pub fn add_u32(&mut self, name: &str, data: &[u32]) -> Result<&mut Self, FormatError> {
        self.push(name, ElementType::U32, le_bytes(data, |v| v.to_le_bytes()))
    }

    /// Adds a section of `u64` values.
    ///
    /// # Errors
    /// [`FormatError::InvalidName`], [`FormatError::DuplicateSection`].
    pub fn add_u64(&mut self, name: &str, data: &[u64]) -> Result<&mut Self, FormatError> {
        self.push(name, ElementType::U64, le_bytes(data, |v| v.to_le_bytes()))
    }

    /// Adds a section of `i64` values.
    ///
    /// # Errors
    /// [`FormatError::InvalidName`], [`FormatError::DuplicateSection`].
    pub fn add_i64(&mut self, name: &str, data: &[i64]) -> Result<&mut Self, FormatError> {
        self.push(name, ElementType::I64, le_bytes(data, |v| v.to_le_bytes()))
    }

    /// Adds a section of raw bytes (codes, UTF-8 metadata, …).
    ///
    /// # Errors
    /// [`FormatError::InvalidName`], [`FormatError::DuplicateSection`].
    pub fn add_bytes(&mut self, name: &str, data: &[u8]) -> Result<&mut Self, FormatError> {
        self.push(name, ElementType::U8, data.to_vec())
    }

    fn push(
        &mut self,
        name: &str,
        element: ElementType,
        bytes: Vec<u8>,
    ) -> Result<&mut Self, FormatError> {
        check_name("section name", name, NAME_LEN)?;
        if self.sections.iter().any(|s| s.name == name) {
            return Err(FormatError::DuplicateSection(name.to_owned()));
        }
        self.sections.push(PendingSection {
            name: name.to_owned(),
            element,
            bytes,
        });
        Ok(self)
    }

    /// The finished file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let table_end = HEADER_LEN + ENTRY_LEN * self.sections.len();
        let mut offsets = Vec::with_capacity(self.sections.len());
        let mut end = table_end;
        for section in &self.sections {
            let offset = end.next_multiple_of(PAYLOAD_ALIGN);
            offsets.push(offset);
            end = offset + section.bytes.len();
        }
        let total = end.next_multiple_of(8) + TRAILER_LEN;

        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // The section count fits: a Vec of sections this large could not be built.
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        out.extend_from_slice(&padded::<KIND_LEN>(&self.kind));
        out.extend_from_slice(&(total as u64).to_le_bytes());
        out.resize(HEADER_LEN, 0);
        for (section, &offset) in self.sections.iter().zip(&offsets) {
            out.extend_from_slice(&padded::<NAME_LEN>(&section.name));
            out.extend_from_slice(&section.element.code().to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(section.bytes.len() as u64).to_le_bytes());
        }
        for (section, &offset) in self.sections.iter().zip(&offsets) {
            out.resize(offset, 0);
            out.extend_from_slice(&section.bytes);
        }
        out.resize(total - TRAILER_LEN, 0);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&TRAILER_TAG);
        out
    }
}

fn le_bytes<T: Copy, const N: usize>(data: &[T], to_le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    data.iter().flat_map(|&v| to_le(v)).collect()
}

fn padded<const N: usize>(name: &str) -> [u8; N] {
    let mut out = [0u8; N];
    out[..name.len()].copy_from_slice(name.as_bytes());
    out
}

fn check_name(what: &'static str, name: &str, max: usize) -> Result<(), FormatError> {
    let ok = !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii() && b != 0);
    if ok {
        Ok(())
    } else {
        Err(FormatError::InvalidName {
            what,
            name: name.to_owned(),
            max,
        })
    }
}

#[derive(Debug, Clone)]
struct SectionEntry {
    name: String,
    element: ElementType,
    offset: usize,
    len: usize,
}

/// A parsed and verified file over a byte buffer. Typed accessors borrow
/// the buffer; nothing is copied.
pub struct IndexFile<B: AsRef<[u8]>> {
    bytes: B,
    kind: String,
    sections: Vec<SectionEntry>,
    checksum: u32,
}

impl<B: AsRef<[u8]>> fmt::Debug for IndexFile<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexFile")
            .field("kind", &self.kind)
            .field("len", &self.bytes.as_ref().len())
            .field(
                "sections",
                &self.sections.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("checksum", &format_args!("{:08x}", self.checksum))
            .finish()
    }
}

impl<B: AsRef<[u8]>> IndexFile<B> {
    /// Verifies `bytes` (magic, version, length, checksum, section table)
    /// and indexes its sections.
    ///
    /// The buffer must start on an 8-byte boundary: memory maps do;
    /// for bytes read into a `Vec`, use [`AlignedBytes::copy_from`].
    ///
    /// # Errors
    /// [`FormatError::NotAnIndexFile`], [`FormatError::UnsupportedVersion`],
    /// [`FormatError::Length`], [`FormatError::Checksum`],
    /// [`FormatError::Malformed`], [`FormatError::Misaligned`],
    /// [`FormatError::BigEndian`].
    pub fn parse(bytes: B) -> Result<Self, FormatError> {
        let (kind, sections, checksum) = parse_layout(bytes.as_ref())?;
        Ok(Self {
            bytes,
            kind,
            sections,
            checksum,
        })
    }

    /// The file's kind, as given to [`FileWriter::new`].
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Fails with [`FormatError::WrongKind`] unless the file is of `kind`.
    ///
    /// # Errors
    /// [`FormatError::WrongKind`].
    pub fn expect_kind(&self, kind: &str) -> Result<(), FormatError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(FormatError::WrongKind {
                expected: kind.to_owned(),
                found: self.kind.clone(),
            })
        }
    }

    /// Whether the file has a section called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name)
    }

    /// Section names in file order.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|s| s.name.as_str())
    }

    /// The CRC-32 of the file's contents: changes whenever the contents do,
    /// so it can tag cached results with the file they came from.
    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> B {
        self.bytes
    }

    /// A section of `f32` values.
    ///
    /// # Errors
    /// [`FormatError::MissingSection`], [`FormatError::WrongType`].
    pub fn f32s(&self, name: &str) -> Result<&[f32], FormatError> {
        Ok(bytemuck::cast_slice(self.payload(name, ElementType::F32)?))
    }

    /// A section of `u32` values.
    ///
    /// # Errors
    /// [`FormatError::MissingSection`], [`FormatError::WrongType`].
    pub fn u32s(&self, name: &str) -> Result<&[u32], FormatError> {
        Ok(bytemuck::cast_slice(self.payload(name, ElementType::U32)?))
    }

    /// A section of `u64` values.
    ///
    /// # Errors
    /// [`FormatError::MissingSection`], [`FormatError::WrongType`].
    pub fn u64s(&self, name: &str) -> Result<&[u64], FormatError> {
        Ok(bytemuck::cast_slice(self.payload(name, ElementType::U64)?))
    }

    /// A section of `i64` values.
    ///
    /// # Errors
    /// [`FormatError::MissingSection`], [`FormatError::WrongType`].
    pub fn i64s(&self, name: &str) -> Result<&[i64], FormatError> {
        Ok(bytemuck::cast_slice(self.payload(name, ElementType::I64)?))
    }

    /// A section of raw bytes.
    ///
    /// # Errors
    /// [`FormatError::MissingSection`], [`FormatError::WrongType`].
    pub fn bytes(&self, name: &str) -> Result<&[u8], FormatError> {
        self.payload(name, ElementType::U8)
    }

    fn payload(&self, name: &str, expected: ElementType) -> Result<&[u8], FormatError> {
        let entry = self
            .sections
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| FormatError::MissingSection(name.to_owned()))?;
        if entry.element != expected {
            return Err(FormatError::WrongType {
                name: name.to_owned(),
                expected,
                found: entry.element,
            });
        }
        // `parse` checked the range, the alignment and the length's
        // multiple, so the slice exists and casts without panicking.
        Ok(&self.bytes.as_ref()[entry.offset..entry.offset + entry.len])
    }
}

fn malformed(what: impl Into<String>) -> FormatError {
    FormatError::Malformed(what.into())
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn read_name(field: &[u8], what: &str) -> Result<String, FormatError> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let (name, padding) = field.split_at(end);
    if name.is_empty() || !name.is_ascii() || padding.iter().any(|&b| b != 0) {
        return Err(malformed(format!("invalid {what}")));
    }
    // ASCII checked above, so this cannot fail.
    String::from_utf8(name.to_vec()).map_err(|_| malformed(format!("invalid {what}")))
}

fn parse_layout(bytes: &[u8]) -> Result<(String, Vec<SectionEntry>, u32), FormatError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotAnIndexFile);
    }
    if cfg!(target_endian = "big") {
        return Err(FormatError::BigEndian);
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(FormatError::Length {
            expected: (HEADER_LEN + TRAILER_LEN) as u64,
            actual: bytes.len(),
        });
    }
    let version = read_u32(bytes, 8);
    if version == 0 || version > VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let expected = read_u64(bytes, 32);
    if expected != bytes.len() as u64 {
        return Err(FormatError::Length {
            expected,
            actual: bytes.len(),
        });
    }
    let body_end = bytes.len() - TRAILER_LEN;
    if bytes[body_end + 4..] != TRAILER_TAG {
        return Err(malformed("trailer tag missing"));
    }
    let stored = read_u32(bytes, body_end);
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    // Only now is the content trusted to be what a writer produced; the
    // checks below still guard against a crafted file with a valid CRC.
    if bytes.as_ptr().align_offset(8) != 0 {
        return Err(FormatError::Misaligned);
    }
    let kind = read_name(&bytes[16..16 + KIND_LEN], "kind")?;
    let count = read_u32(bytes, 12) as usize;
    if count > MAX_SECTIONS {
        return Err(malformed(format!(
            "{count} sections (at most {MAX_SECTIONS})"
        )));
    }
    let table_end = HEADER_LEN + count * ENTRY_LEN;
    if table_end > body_end {
        return Err(malformed("section table runs past the end of the file"));
    }
    let mut sections: Vec<SectionEntry> = Vec::with_capacity(count);
    for i in 0..count {
        let entry = &bytes[HEADER_LEN + i * ENTRY_LEN..][..ENTRY_LEN];
        let name = read_name(&entry[..NAME_LEN], "section name")?;
        let element = ElementType::from_code(read_u32(entry, NAME_LEN))
            .ok_or_else(|| malformed(format!("section {name:?} has an unknown element type")))?;
        let offset = read_u64(entry, NAME_LEN + 8);
        let len = read_u64(entry, NAME_LEN + 16);
        let in_bounds = offset >= table_end as u64
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= body_end as u64);
        if !in_bounds {
            return Err(malformed(format!("section {name:?} lies outside the file")));
        }
        // In bounds of a buffer that exists, so both fit in usize.
        let (offset, len) = (offset as usize, len as usize);
        if offset % element.size().max(8) != 0 || len % element.size() != 0 {
            return Err(malformed(format!("section {name:?} is misaligned")));
        }
        if sections.iter().any(|s| s.name == name) {
            return Err(malformed(format!("section {name:?} appears twice")));
        }
        sections.push(SectionEntry {
            name,
            element,
            offset,
            len,
        });
    }
    Ok((kind, sections, stored))
}

/// An owned byte buffer that starts on an 8-byte boundary, for files read
/// into memory rather than mapped.
#[derive(Clone)]
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBytes")
            .field("len", &self.len)
            .finish()
    }
}

impl AlignedBytes {
    /// An aligned copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self {
            words,
            len: bytes.len(),
        }
    }
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = FileWriter::new("flat").expect("valid kind");
        w.add_f32("vectors", &[1.5, -2.0, f32::MAX])
            .and_then(|w| w.add_u32("ids", &[7, 8]))
            .and_then(|w| w.add_u64("counts", &[u64::MAX]))
            .and_then(|w| w.add_i64("times", &[-1, 1_383_631_200]))
            .and_then(|w| w.add_bytes("meta", br#"{"dim":3}"#))
            .and_then(|w| w.add_f32("empty", &[]))
            .expect("valid sections");
        w.to_bytes()
    }

    fn parse(bytes: &[u8]) -> Result<IndexFile<AlignedBytes>, FormatError> {
        IndexFile::parse(AlignedBytes::copy_from(bytes))
    }

    #[test]
    fn round_trip_every_type() {
        let file = parse(&sample()).expect("valid file");
        assert_eq!(file.kind(), "flat");
        assert_eq!(file.f32s("vectors"), Ok(&[1.5, -2.0, f32::MAX][..]));
        assert_eq!(file.u32s("ids"), Ok(&[7, 8][..]));
        assert_eq!(file.u64s("counts"), Ok(&[u64::MAX][..]));
        assert_eq!(file.i64s("times"), Ok(&[-1, 1_383_631_200][..]));
        assert_eq!(file.bytes("meta"), Ok(&br#"{"dim":3}"#[..]));
        assert_eq!(file.f32s("empty"), Ok(&[][..]));
        assert_eq!(
            file.section_names().collect::<Vec<_>>(),
            ["vectors", "ids", "counts", "times", "meta", "empty"]
        );
        assert!(file.has("ids") && !file.has("nope"));
        assert_eq!(file.expect_kind("flat"), Ok(()));
    }

    #[test]
    fn payloads_are_64_byte_aligned_and_length_is_recorded() {
        let bytes = sample();
        let file = parse(&bytes).expect("valid file");
        for s in &file.sections {
            assert_eq!(s.offset % 64, 0, "{}", s.name);
        }
        assert_eq!(read_u64(&bytes, 32), bytes.len() as u64);
        assert_eq!(bytes.len() % 8, 0);
    }

    #[test]
    fn readers_name_what_is_wrong() {
        let file = parse(&sample()).expect("valid file");
        assert_eq!(
            file.f32s("missing"),
            Err(FormatError::MissingSection("missing".into()))
        );
        assert_eq!(
            file.u32s("vectors"),
            Err(FormatError::WrongType {
                name: "vectors".into(),
                expected: ElementType::U32,
                found: ElementType::F32
            })
        );
        let err = file.expect_kind("ivfpq").unwrap_err();
        assert_eq!(
            err.to_string(),
            "file holds a \"flat\" index, expected \"ivfpq\""
        );
    }

    #[test]
    fn foreign_truncated_and_corrupt_files_are_refused() {
        let bytes = sample();
        assert_eq!(
            parse(b"PK\x03\x04 a zip file").unwrap_err(),
            FormatError::NotAnIndexFile
        );
        assert_eq!(parse(b"").unwrap_err(), FormatError::NotAnIndexFile);
        assert!(matches!(
            parse(&bytes[..bytes.len() - 1]),
            Err(FormatError::Length { .. })
        ));
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 3] ^= 0x40;
        assert!(matches!(parse(&flipped), Err(FormatError::Checksum { .. })));
        let mut newer = bytes.clone();
        newer[8] = 2;
        assert_eq!(
            parse(&newer).unwrap_err(),
            FormatError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
    }

    /// Re-seals a modified file with a valid checksum, as a crafted file would.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let body_end = bytes.len() - TRAILER_LEN;
        let crc = crc32fast::hash(&bytes[..body_end]);
        bytes[body_end..body_end + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn crafted_tables_with_valid_checksums_are_refused() {
        let bytes = sample();
        let entry = HEADER_LEN; // the first section's table entry
        let mut past_end = bytes.clone();
        past_end[entry + 40..entry + 48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&reseal(past_end)),
            Err(FormatError::Malformed(_))
        ));
        let mut odd = bytes.clone();
        odd[entry + 32] += 1;
        assert!(matches!(
            parse(&reseal(odd)),
            Err(FormatError::Malformed(_))
        ));
        let mut kind = bytes.clone();
        kind[24] = b'x'; // bytes after the kind's NUL must be NUL
        assert!(matches!(
            parse(&reseal(kind)),
            Err(FormatError::Malformed(_))
        ));
        let mut count = bytes.clone();
        count[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&reseal(count)),
            Err(FormatError::Malformed(_))
        ));
    }

    #[test]
    fn misaligned_buffers_are_refused_not_miscast() {
        let bytes = sample();
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        // One byte past an 8-aligned start is never 8-aligned.
        let aligned = AlignedBytes::copy_from(&shifted);
        let view = &aligned.as_ref()[1..];
        assert_eq!(IndexFile::parse(view).unwrap_err(), FormatError::Misaligned);
    }

    #[test]
    fn writer_validates_names() {
        assert!(FileWriter::new("").is_err());
        assert!(FileWriter::new("seventeen-chars-x").is_err());
        assert!(FileWriter::new("nul\0").is_err());
        let mut w = FileWriter::new("k").expect("valid kind");
        assert!(w.add_u32(&"n".repeat(25), &[]).is_err());
        w.add_u32("a", &[1]).expect("first");
        assert_eq!(
            w.add_u32("a", &[2]).err(),
            Some(FormatError::DuplicateSection("a".into()))
        );
    }
}
