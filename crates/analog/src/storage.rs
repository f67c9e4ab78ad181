//! Arrays an index owns or borrows in place from a loaded index file.
//!
//! A loaded index keeps the parsed file behind an `Arc` and re-borrows its
//! sections on each access (a lookup in a short section table), so a memory
//! map handed in by the caller is read in place and never copied. Mutating
//! a borrowed array (adding vectors to a loaded index) copies it first.

use std::sync::Arc;

use crate::format::{FormatError, IndexFile};

/// Any byte buffer a caller hands in: a memory map, an `AlignedBytes`, ….
pub(crate) struct SharedBytes(Box<dyn AsRef<[u8]> + Send + Sync>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

/// A parsed, verified file shared by the arrays that borrow from it.
pub(crate) type SharedFile = Arc<IndexFile<SharedBytes>>;

/// Parses and verifies `bytes` as an index file of `kind`.
pub(crate) fn open<B>(bytes: B, kind: &str) -> Result<SharedFile, FormatError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let file = IndexFile::parse(SharedBytes(Box::new(bytes)))?;
    file.expect_kind(kind)?;
    Ok(Arc::new(file))
}

/// An element type with a typed section accessor.
pub(crate) trait Element: Copy + Send + Sync + 'static {
    fn section<'a>(file: &'a IndexFile<SharedBytes>, name: &str)
        -> Result<&'a [Self], FormatError>;
}

impl Element for f32 {
    fn section<'a>(
        file: &'a IndexFile<SharedBytes>,
        name: &str,
    ) -> Result<&'a [Self], FormatError> {
        file.f32s(name)
    }
}

impl Element for u32 {
    fn section<'a>(
        file: &'a IndexFile<SharedBytes>,
        name: &str,
    ) -> Result<&'a [Self], FormatError> {
        file.u32s(name)
    }
}

impl Element for u8 {
    fn section<'a>(
        file: &'a IndexFile<SharedBytes>,
        name: &str,
    ) -> Result<&'a [Self], FormatError> {
        file.bytes(name)
    }
}

/// An array owned in memory, or a section of a shared file.
#[derive(Clone)]
pub(crate) struct Section<T: Element> {
    owned: Vec<T>,
    /// Where the array starts in `owned` (for alignment).
    start: usize,
    /// When set, the array is this section of the file and `owned` is
    /// unused.
    file: Option<(SharedFile, &'static str)>,
}

impl<T: Element> Section<T> {
    pub(crate) fn owned(values: Vec<T>) -> Self {
        Self::owned_from(values, 0)
    }

    /// `values[start..]`, owned.
    pub(crate) fn owned_from(values: Vec<T>, start: usize) -> Self {
        Self {
            owned: values,
            start,
            file: None,
        }
    }

    /// Section `name` of `file`, which the caller has already read (and
    /// validated) through [`Element::section`].
    pub(crate) fn borrowed(file: &SharedFile, name: &'static str) -> Self {
        Self {
            owned: Vec::new(),
            start: 0,
            file: Some((Arc::clone(file), name)),
        }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        match &self.file {
            // Loading read this section successfully and the file is
            // immutable, so the lookup cannot fail here; an empty slice is
            // a harmless fallback rather than a panic path.
            Some((file, name)) => T::section(file, name).unwrap_or(&[]),
            None => self.owned.get(self.start..).unwrap_or(&[]),
        }
    }

    /// The array as an owned `Vec`, copying it out of the file (or from
    /// its aligned start) first.
    pub(crate) fn to_mut(&mut self) -> &mut Vec<T> {
        if self.file.is_some() || self.start != 0 {
            self.owned = self.as_slice().to_vec();
            self.file = None;
            self.start = 0;
        }
        &mut self.owned
    }
}
