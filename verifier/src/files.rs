//! Writing files so that a crash leaves either the old content or the complete new one:
//! bundles, exported proofs, and (in the node) keys, records and credentials.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

/// A file could not be written: the file, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {source}", file = file.display())]
pub struct FileError {
    /// The file at fault.
    pub file: PathBuf,
    /// The operating system's reason.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// `source`, which happened to `file`.
    pub fn at(file: &Path, source: std::io::Error) -> Self {
        Self {
            file: file.to_path_buf(),
            source,
        }
    }
}

/// Runs `write` on a temporary file beside `path`, syncs it and renames it over `path`,
/// so that `path` holds either its old content or the complete new one.
pub fn write_atomically<E: From<FileError>>(
    path: &Path,
    write: impl FnOnce(&File) -> Result<(), E>,
) -> Result<(), E> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| FileError::at(&tmp, e))?;
        write(&file)?;
        file.sync_all().map_err(|e| FileError::at(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| FileError::at(path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FileError::at(dir, e).into())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomically`] of `bytes`.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomically(path, |mut file| {
        file.write_all(bytes).map_err(|e| FileError::at(path, e))
    })
}
