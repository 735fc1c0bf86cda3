//! File primitives: the one place native I/O errors become [`Error`]s, crash-safe replacement of
//! a file, and reading a versioned JSON document.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tasktrack_core::{Error, Result};

/// The schema version written into every task and job document (`"schema": 1`). A reader that
/// finds another version refuses the file rather than guessing.
pub const SCHEMA: u64 = 1;

/// Maps an I/O error on `path` onto the portable error: the ONE place this backend does so.
///
/// A local file system has no connection to lose, so everything is [`Error::Backend`] naming the
/// operation and the path (disk full, permission denied, ...). Unreadable *contents* are
/// [`Error::Corrupt`], raised by [`corrupt`].
pub fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::backend(format!("{what} {}: {e}", path.display()))
}

/// A record at `path` that cannot be understood.
pub fn corrupt(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::corrupt(path.display(), message)
}

/// Whether to fsync. Only [`Durability::Relaxed`] skips it; both survive SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync every file and directory before a change counts as done: survives power loss.
    Full,
    /// No fsync: survives a killed process (the page cache outlives it) but not a power loss or
    /// kernel crash, after which recent changes may be lost or the index may need a rebuild.
    Relaxed,
}

/// Reads `path`, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", path, e)),
    }
}

/// Parses a document written by [`to_document`]: checks its `schema` first, so an unknown
/// version is reported as such rather than as a confusing missing field.
pub fn from_document<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(path, format!("invalid JSON: {e}")))?;
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(corrupt(
                path,
                format!("unknown schema version {other} (this build reads {SCHEMA})"),
            ));
        }
        None => {
            return Err(corrupt(
                path,
                "no \"schema\" field: not a tasktrack document",
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| corrupt(path, format!("not a valid record: {e}")))
}

/// A record with `"schema": 1` added, pretty-printed for `cat` and `jq`.
pub fn to_document<T: Serialize>(path: &Path, record: &T) -> Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Doc<'a, T> {
        schema: u64,
        #[serde(flatten)]
        record: &'a T,
    }
    let mut bytes = serde_json::to_vec_pretty(&Doc {
        schema: SCHEMA,
        record,
    })
    .map_err(|e| Error::backend(format!("serializing {}: {e}", path.display())))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `bytes` to a fresh file in `scratch` and returns its path and handle, ready to be
/// synced ([`sync_parallel`]) and renamed over the real one. Renaming is atomic, so readers see
/// the old or the new file, never a part of one, even if this process is killed at any point.
pub fn write_scratch(scratch: &Path, bytes: &[u8]) -> Result<(PathBuf, File)> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = scratch.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_error("creating", &path, e))?;
    file.write_all(bytes)
        .map_err(|e| io_error("writing", &path, e))?;
    Ok((path, file))
}

/// fsyncs `files`, in parallel when there are several: concurrent fsyncs on one file system
/// share its journal commits, so a batch costs about one fsync instead of one per file.
pub fn sync_parallel(files: &[(&Path, &File)]) -> Result<()> {
    let sync =
        |(path, file): &(&Path, &File)| file.sync_data().map_err(|e| io_error("syncing", path, e));
    if files.len() <= 1 {
        return files.iter().try_for_each(sync);
    }
    // The first chunk runs on this thread: a journal and one file cost one extra thread only.
    let per_thread = files.len().div_ceil(16);
    let mut chunks = files.chunks(per_thread);
    let mine = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(sync)))
            .collect();
        mine.iter().try_for_each(sync)?;
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| Error::backend("an fsync thread panicked"))?
        })
    })
}

/// Rewrites an existing scratch file (a recycled inode) with `bytes`; `None` if it is gone.
///
/// Written over in place, and cut only if the old content was longer: truncating to zero first
/// would free the file's blocks and allocate them again on every write (with the `discard`
/// mount option a synchronous discard each time), and ext4 starts writing back a file truncated
/// to zero as soon as it is closed (`auto_da_alloc`). A reader racing with the rewrite sees a
/// mix of two records at worst, which does not parse or names another task: as before, a
/// corrupt read that `get` retries.
pub fn rewrite_scratch(path: &Path, bytes: &[u8]) -> Result<Option<File>> {
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("opening", path, e)),
    };
    let old_len = file
        .metadata()
        .map_err(|e| io_error("reading the metadata of", path, e))?
        .len();
    file.write_all(bytes)
        .map_err(|e| io_error("writing", path, e))?;
    let new_len = bytes.len() as u64;
    if old_len > new_len {
        file.set_len(new_len)
            .map_err(|e| io_error("truncating", path, e))?;
    }
    Ok(Some(file))
}

/// Atomically swaps the files at `scratch` and `target` (Linux `renameat2(RENAME_EXCHANGE)`):
/// `target` gets the new content and `scratch` the old inode, to be rewritten by a later change.
/// Creating a fresh inode per write and freeing the old one is what costs most CPU on ext4 (its
/// allocator scans past recently freed inodes). `false` when `target` does not exist yet or the
/// system cannot exchange: then [`rename`].
#[cfg(target_os = "linux")]
pub fn exchange(scratch: &Path, target: &Path) -> Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, scratch, CWD, target, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(io_error("exchanging onto", target, e.into())),
    }
}

/// Elsewhere, writes always [`rename`].
#[cfg(not(target_os = "linux"))]
pub fn exchange(_scratch: &Path, _target: &Path) -> Result<bool> {
    Ok(false)
}

/// Renames a scratch file over `target`.
pub fn rename(from: &Path, target: &Path) -> Result<()> {
    fs::rename(from, target).map_err(|e| io_error("renaming onto", target, e))
}

/// Removes `path`; a missing file is fine (the change is already there).
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", path, e)),
    }
}

/// Makes renames and removals in `dir` durable (a rename lives in the directory, not the file).
pub fn sync_dir(dir: &Path, durability: Durability) -> Result<()> {
    if durability == Durability::Relaxed || cfg!(windows) {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

/// [`sync_dir`] on each of `dirs`, in parallel.
pub fn sync_dirs(dirs: &[&Path], durability: Durability) -> Result<()> {
    match dirs {
        [] => Ok(()),
        [one] => sync_dir(one, durability),
        many => std::thread::scope(|scope| {
            let handles: Vec<_> = many
                .iter()
                .map(|d| scope.spawn(move || sync_dir(d, durability)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| Error::backend("an fsync thread panicked"))?
            })
        }),
    }
}

/// Makes everything written to the file system holding `dir` durable (Linux `syncfs`), before a
/// journal snapshot drops the records that could restore the task files. Elsewhere every
/// transaction fsyncs its task files itself, so there is nothing to do.
pub fn sync_filesystem(dir: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let handle = File::open(dir).map_err(|e| io_error("opening", dir, e))?;
        rustix::fs::syncfs(&handle)
            .map_err(|e| io_error("syncing the file system of", dir, e.into()))?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io_error("creating directory", dir, e))
}

/// Removes every scratch file in `scratch`: called only under the job lock after a writer died.
/// Live processes may lose recycled files this way; they fall back to fresh ones.
pub fn clear_scratch(scratch: &Path) -> Result<()> {
    let entries = match fs::read_dir(scratch) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("listing", scratch, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", scratch, e))?;
        remove(&entry.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

    use super::*;

    /// A recycled file rewritten in place holds exactly the new bytes, longer or shorter.
    #[test]
    fn a_rewritten_scratch_file_holds_exactly_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = write_scratch(dir.path(), b"0123456789").unwrap();
        drop(file);
        for content in [
            &b"abc"[..],
            b"",
            b"a much longer record than before",
            b"xyz",
        ] {
            let file = rewrite_scratch(&path, content).unwrap();
            assert!(file.is_some());
            assert_eq!(fs::read(&path).unwrap(), content);
        }
        assert!(
            rewrite_scratch(&dir.path().join("gone"), b"x")
                .unwrap()
                .is_none()
        );
    }
}
