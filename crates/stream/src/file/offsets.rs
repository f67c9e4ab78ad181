//! Consumer offset files: `consumers/<name>.offset`, one per durable consumer.
//!
//! ```text
//! magic "SBXACK" (6) | version u16 | acked offset u64 | crc32 u32 of the first 16 bytes
//! ```
//!
//! Written whole to a temporary file, fsync'd, renamed over the old one and the directory
//! fsync'd, so a crash leaves either the old or the new offset, never a mix.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StreamError;

const MAGIC: [u8; 6] = *b"SBXACK";
const VERSION: u16 = 1;
const FILE_LEN: usize = 20;
const SUFFIX: &str = ".offset";
const TMP_SUFFIX: &str = ".offset.tmp";

/// The directory holding the offset files.
pub(crate) fn consumers_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("consumers")
}

fn path_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{SUFFIX}"))
}

fn encode(acked: u64) -> [u8; FILE_LEN] {
    let mut b = [0u8; FILE_LEN];
    b[..6].copy_from_slice(&MAGIC);
    b[6..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&acked.to_le_bytes());
    let crc = crc32fast::hash(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(path: &Path, bytes: &[u8]) -> Result<u64, StreamError> {
    let corrupt = |reason: &str| StreamError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason: reason.to_owned(),
    };
    if bytes.len() != FILE_LEN {
        return Err(corrupt("consumer offset file has the wrong length"));
    }
    if bytes[..6] != MAGIC {
        return Err(StreamError::ForeignFile {
            path: path.to_owned(),
            reason: "bad magic in consumer offset file".to_owned(),
        });
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(StreamError::ForeignFile {
            path: path.to_owned(),
            reason: format!("consumer offset file format version {version} is not supported"),
        });
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32fast::hash(&bytes[..16]) != crc {
        return Err(corrupt("consumer offset file checksum mismatch"));
    }
    let mut o = [0u8; 8];
    o.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_le_bytes(o))
}

/// Creates the directory if needed, removes temporary files a crash left behind and reads
/// every consumer's acked offset.
pub(crate) fn load_all(dir: &Path) -> Result<HashMap<String, u64>, StreamError> {
    if !dir.exists() {
        super::create_private_dir_all(dir)
            .map_err(|e| StreamError::io(format!("creating {}", dir.display()), e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    let mut out = HashMap::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StreamError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StreamError::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if file_name.ends_with(TMP_SUFFIX) {
            // An interrupted write: the rename never happened, so the old file is current.
            fs::remove_file(&path)
                .map_err(|e| StreamError::io(format!("removing {}", path.display()), e))?;
            continue;
        }
        let Some(name) = file_name.strip_suffix(SUFFIX) else {
            continue;
        };
        if crate::validate_name(name).is_err() {
            continue;
        }
        let bytes = fs::read(&path)
            .map_err(|e| StreamError::io(format!("reading {}", path.display()), e))?;
        out.insert(name.to_owned(), decode(&path, &bytes)?);
    }
    Ok(out)
}

/// Durably records `acked` for `name`.
pub(crate) fn store(dir: &Path, name: &str, acked: u64) -> Result<(), StreamError> {
    let path = path_for(dir, name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let write = || -> std::io::Result<()> {
        let mut f = super::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&encode(acked))?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| StreamError::io(format!("writing {}", path.display()), e))?;
    sync_dir(dir)
}

/// fsyncs a directory, making renames, creations and deletions in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StreamError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StreamError::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_load_round_trip() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = consumers_dir(tmp.path());
        assert!(load_all(&dir).expect("empty").is_empty());
        store(&dir, "worker", 41).expect("store");
        store(&dir, "worker", 42).expect("store again");
        store(&dir, "other-1", 7).expect("store other");
        fs::write(dir.join("crashed.offset.tmp"), b"half").expect("tmp");
        let all = load_all(&dir).expect("load");
        assert_eq!(all.get("worker"), Some(&42));
        assert_eq!(all.get("other-1"), Some(&7));
        assert!(!dir.join("crashed.offset.tmp").exists());
    }

    #[test]
    fn damaged_offset_file_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = consumers_dir(tmp.path());
        load_all(&dir).expect("create");
        store(&dir, "w", 5).expect("store");
        let p = path_for(&dir, "w");
        let mut bytes = fs::read(&p).expect("read");
        bytes[9] ^= 1;
        fs::write(&p, &bytes).expect("write");
        let err = load_all(&dir).expect_err("must fail");
        assert!(matches!(err, StreamError::Corrupt { .. }), "{err}");
    }
}
