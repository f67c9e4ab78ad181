//! The on-disk format of segment files and a sequential record reader.
//!
//! A segment is a 16-byte header followed by records, all little-endian:
//!
//! ```text
//! header: magic "SBXLOG" (6) | format version u16 | base offset u64
//! record: payload len u32 | crc32 u32 | offset u64 | payload (len bytes)
//! ```
//!
//! The CRC (IEEE, `crc32fast`) covers the length, the offset and the payload, so a damaged
//! length or offset is caught as surely as a damaged payload.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 6] = *b"SBXLOG";
/// Format version written into new segments; the only one this build reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Size of the segment header.
pub(crate) const HEADER_LEN: u64 = 16;
/// Size of a record's fixed part (len, crc, offset).
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// No record payload is ever larger than this, whatever the options say; a length field
/// above it is damage, not data.
pub(crate) const MAX_RECORD_PAYLOAD: usize = 64 * 1024 * 1024;

/// How much a reader fetches from the file at once.
const READ_CHUNK: usize = 256 * 1024;

/// Encodes a segment header.
pub(crate) fn encode_header(base: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..6].copy_from_slice(&SEGMENT_MAGIC);
    h[6..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&base.to_le_bytes());
    h
}

/// Why a segment header was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short,
    /// All zero: a file created but whose header never reached the disk.
    Zeroed,
    /// The magic does not match.
    Magic,
    /// A format version this build does not read.
    Version(u16),
}

/// Decodes a segment header, returning its base offset.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    let Some(h) = bytes.get(..HEADER_LEN as usize) else {
        return Err(HeaderError::Short);
    };
    if h.iter().all(|&b| b == 0) {
        return Err(HeaderError::Zeroed);
    }
    if h[..6] != SEGMENT_MAGIC {
        return Err(HeaderError::Magic);
    }
    let version = u16::from_le_bytes([h[6], h[7]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(le_u64(&h[8..16]))
}

/// Bytes a record with this payload occupies.
pub(crate) fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

fn record_crc(len: u32, offset: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&offset.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one encoded record to `buf`. The caller has checked the payload against
/// [`MAX_RECORD_PAYLOAD`], so the length fits a `u32`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, offset, payload).to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The result of decoding the start of a byte slice as a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole, valid record occupying `len` bytes.
    Record {
        offset: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// The slice ends inside the record; `needed` bytes would complete it.
    Incomplete { needed: usize },
    /// The bytes are not a valid record.
    Bad(&'static str),
}

/// Decodes the record at the start of `buf`.
pub(crate) fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return Decoded::Incomplete {
            needed: RECORD_HEADER_LEN,
        };
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let payload_len = len as usize;
    if payload_len > MAX_RECORD_PAYLOAD {
        return Decoded::Bad("record length field is out of range");
    }
    let total = record_len(payload_len);
    let Some(record) = buf.get(..total) else {
        return Decoded::Incomplete { needed: total };
    };
    let crc = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    let offset = le_u64(&record[8..16]);
    let payload = &record[RECORD_HEADER_LEN..];
    if record_crc(len, offset, payload) != crc {
        return Decoded::Bad("record checksum mismatch");
    }
    Decoded::Record {
        offset,
        payload,
        len: total,
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// One step of [`RecordReader::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// A valid record starting at file position `pos`.
    Record {
        pos: u64,
        offset: u64,
        payload: &'a [u8],
    },
    /// No further whole record: the file ends at a record boundary (`trailing == 0`) or
    /// inside a record (`trailing` bytes of it are present).
    End { pos: u64, trailing: u64 },
    /// The bytes at `pos` are not a valid record.
    Bad { pos: u64, reason: &'static str },
}

/// Reads records one after another from a file with positioned reads, so the file handle has
/// no cursor and the reader never trusts bytes past the end it observed.
#[derive(Debug, Default)]
pub(crate) struct RecordReader {
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
    /// File position of the next record.
    pos: u64,
}

impl RecordReader {
    /// Positions the reader at `pos`, discarding buffered bytes (they may end in a partial
    /// record that has since been completed).
    pub(crate) fn seek(&mut self, pos: u64) {
        self.buf.clear();
        self.buf_start = pos;
        self.pos = pos;
    }

    /// File position of the next record.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the next record.
    pub(crate) fn next(&mut self, file: &File) -> std::io::Result<Step<'_>> {
        let mut refilled = false;
        loop {
            // `pos` never leaves the buffered range: `seek` and `fill` set both together and
            // a record only advances `pos` by bytes it decoded from the buffer.
            let start = usize::try_from(self.pos - self.buf_start).unwrap_or(usize::MAX);
            let avail = self.buf.get(start..).unwrap_or(&[]);
            let (needed, have) = match decode_record(avail) {
                Decoded::Record { offset, len, .. } => {
                    let pos = self.pos;
                    self.pos += len as u64;
                    let payload = &self.buf[start + RECORD_HEADER_LEN..start + len];
                    return Ok(Step::Record {
                        pos,
                        offset,
                        payload,
                    });
                }
                Decoded::Bad(reason) => {
                    return Ok(Step::Bad {
                        pos: self.pos,
                        reason,
                    })
                }
                Decoded::Incomplete { needed } => (needed, avail.len() as u64),
            };
            if refilled {
                return Ok(Step::End {
                    pos: self.pos,
                    trailing: have,
                });
            }
            let file_len = file.metadata()?.len();
            let remaining = file_len.saturating_sub(self.pos);
            if remaining < needed as u64 {
                // The file ends inside this record: do not allocate for a length field that
                // may be garbage.
                return Ok(Step::End {
                    pos: self.pos,
                    trailing: remaining,
                });
            }
            let want =
                usize::try_from(remaining).map_or(READ_CHUNK, |r| needed.max(READ_CHUNK).min(r));
            self.fill(file, want)?;
            refilled = true;
        }
    }

    /// Replaces the buffer with up to `want` bytes read at the current position.
    fn fill(&mut self, file: &File, want: usize) -> std::io::Result<()> {
        self.buf.clear();
        self.buf.resize(want, 0);
        self.buf_start = self.pos;
        let mut got = 0;
        while got < want {
            match file.read_at(&mut self.buf[got..], self.pos + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.truncate(got);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn image(payloads: &[Vec<u8>], base: u64) -> (Vec<u8>, Vec<u64>) {
        let mut buf = encode_header(base).to_vec();
        let mut ends = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut buf, base + i as u64, p);
            ends.push(buf.len() as u64);
        }
        (buf, ends)
    }

    /// Records read (offset, payload), where reading stopped, and why if not at the end.
    type ReadAll = (Vec<(u64, Vec<u8>)>, u64, Option<&'static str>);

    fn read_all(bytes: &[u8]) -> ReadAll {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(bytes).expect("write");
        let mut r = RecordReader::default();
        r.seek(HEADER_LEN);
        let mut out = Vec::new();
        loop {
            match r.next(&f).expect("read") {
                Step::Record {
                    offset, payload, ..
                } => out.push((offset, payload.to_vec())),
                Step::End { pos, .. } => return (out, pos, None),
                Step::Bad { pos, reason } => return (out, pos, Some(reason)),
            }
        }
    }

    #[test]
    fn header_round_trip_and_rejections() {
        assert_eq!(decode_header(&encode_header(42)), Ok(42));
        assert_eq!(decode_header(&[0u8; 10]), Err(HeaderError::Short));
        assert_eq!(decode_header(&[0u8; 16]), Err(HeaderError::Zeroed));
        assert_eq!(
            decode_header(b"PK\x03\x04 zip file...."),
            Err(HeaderError::Magic)
        );
        let mut h = encode_header(1);
        h[6] = 9;
        assert_eq!(decode_header(&h), Err(HeaderError::Version(9)));
    }

    #[test]
    fn flipped_bit_anywhere_in_a_record_is_caught() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, b"hello world");
        for i in 0..buf.len() {
            let mut damaged = buf.clone();
            damaged[i] ^= 0x10;
            assert!(
                !matches!(decode_record(&damaged), Decoded::Record { offset: 7, payload, .. } if payload == b"hello world"),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
            base in 1u64..1_000_000,
        ) {
            let (bytes, ends) = image(&payloads, base);
            let (records, end, bad) = read_all(&bytes);
            prop_assert_eq!(bad, None);
            prop_assert_eq!(end, *ends.last().unwrap_or(&HEADER_LEN));
            prop_assert_eq!(records.len(), payloads.len());
            for (i, (off, p)) in records.iter().enumerate() {
                prop_assert_eq!(*off, base + i as u64);
                prop_assert_eq!(p, &payloads[i]);
            }
        }

        /// Cutting the image anywhere, then optionally appending garbage, leaves exactly the
        /// records that ended before the cut readable, and the reader stops at the cut's record
        /// boundary.
        #[test]
        fn torn_tail_keeps_exactly_the_whole_records(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..40),
            cut_frac in 0.0f64..1.0,
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let (bytes, ends) = image(&payloads, 1);
            let cut = HEADER_LEN + ((bytes.len() as u64 - HEADER_LEN) as f64 * cut_frac) as u64;
            let mut torn = bytes[..cut as usize].to_vec();
            torn.extend_from_slice(&garbage);
            // Records are intact up to where the torn image first differs from the original,
            // not only up to the cut: garbage can repeat the bytes it replaced (zeros after
            // zeros), which completes the cut record exactly.
            let intact = torn.iter().zip(&bytes).take_while(|(a, b)| a == b).count() as u64;
            let whole = ends.iter().filter(|&&e| e <= intact).count();
            let (records, end, _) = read_all(&torn);
            let boundary = if whole == 0 { HEADER_LEN } else { ends[whole - 1] };
            prop_assert_eq!(records.len(), whole);
            prop_assert_eq!(end, boundary);
            for (i, (off, p)) in records.iter().enumerate() {
                prop_assert_eq!(*off, 1 + i as u64);
                prop_assert_eq!(p, &payloads[i]);
            }
        }
    }
}
