//! Where recording bytes live.
//!
//! [`Backend`] is a small, object-store friendly abstraction over a tree of files addressed by
//! relative, `/`-separated paths. [`LocalBackend`] implements it on a local directory.
//!
//! # Mapping to an S3-compatible object store
//!
//! The trait is shaped so that an object-store backend can implement it without changing callers:
//!
//! | operation | local directory | object store |
//! |---|---|---|
//! | [`Backend::append`] | `O_APPEND` write | buffered parts of a multipart upload per file, or one object per range composed later (`UploadPartCopy` / compose); the returned offset is the logical file length before the append |
//! | [`Backend::sync`] | `fsync` of the file and of any newly created directories | flush buffered bytes as a part / object; durable once the store acknowledges |
//! | [`Backend::put_atomic`] | temp file, `fsync`, `rename`, `fsync` of the directory | a single `PutObject` (atomic by nature) |
//! | [`Backend::read`] / [`Backend::read_range`] | `read` / `pread` | `GetObject` / ranged `GetObject` |
//! | [`Backend::len`] | `stat` | `HeadObject` |
//! | [`Backend::truncate`] | `ftruncate` | rewrite the object from a ranged copy (recovery only, rare) |
//! | [`Backend::remove`] | `unlink` | `DeleteObject` |
//! | [`Backend::list_dirs`] | `readdir`, directories only | `ListObjectsV2` with delimiter `/` (common prefixes) |
//! | [`Backend::list_files`] | recursive `readdir` | `ListObjectsV2` without delimiter |
//! | [`Backend::remove_dir_all`] | recursive removal | list + `DeleteObjects` |
//!
//! Paths are validated by every operation: empty components, `.` and `..` components, absolute
//! paths, backslashes and control characters are rejected with [`io::ErrorKind::InvalidInput`].
//!
//! Errors (disk full, permission denied, missing files) are returned, never panicked on.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Storage of a tree of byte files addressed by relative `/`-separated paths.
///
/// Implementations must be safe to share between threads. A given file is appended to by one
/// writer at a time (the recording writer of its session); concurrent appends to the same file
/// are not supported.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Appends `bytes` to the file at `path`, creating the file and its parent folders if needed.
    /// Returns the offset at which the bytes start (the file length before the append).
    ///
    /// The bytes are not necessarily durable until [`Backend::sync`] returns. If the append
    /// fails, the implementation tries to leave the file at its previous length.
    fn append(&self, path: &str, bytes: &[u8]) -> io::Result<u64>;

    /// Makes everything appended to `path` so far durable, including the existence of the file
    /// itself (its directory entry).
    fn sync(&self, path: &str) -> io::Result<()>;

    /// Replaces the file at `path` with `bytes` atomically: readers see either the old or the
    /// new content, never a mix, and the new content is durable when this returns.
    fn put_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()>;

    /// Reads the whole file at `path`.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;

    /// Reads `len` bytes at `offset`. Fails with [`io::ErrorKind::UnexpectedEof`] if the file
    /// is shorter than `offset + len`.
    fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>>;

    /// The length of the file at `path`, or `None` if there is no such file.
    fn len(&self, path: &str) -> io::Result<Option<u64>>;

    /// Shortens the file at `path` to `len` bytes and makes that durable.
    fn truncate(&self, path: &str, len: u64) -> io::Result<()>;

    /// Removes the file at `path`. Removing a missing file is not an error.
    fn remove(&self, path: &str) -> io::Result<()>;

    /// Names of the immediate sub-folders of `prefix` (`""` for the root), sorted.
    /// A missing folder lists as empty.
    fn list_dirs(&self, prefix: &str) -> io::Result<Vec<String>>;

    /// Paths (relative to `prefix`, `/`-separated) of every file below `prefix`, sorted.
    /// A missing folder lists as empty.
    fn list_files(&self, prefix: &str) -> io::Result<Vec<String>>;

    /// Removes the folder `prefix` and everything below it. Removing a missing folder is not
    /// an error. `prefix` must not be empty.
    fn remove_dir_all(&self, prefix: &str) -> io::Result<()>;
}

/// Checks that `path` is a safe relative `/`-separated path.
///
/// `allow_empty` admits `""` (the root) for listing operations.
pub fn validate_path(path: &str, allow_empty: bool) -> io::Result<()> {
    let invalid = |reason: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid storage path {path:?}: {reason}"),
        ))
    };
    if path.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            invalid("empty path")
        };
    }
    if path.starts_with('/') {
        return invalid("absolute paths are not allowed");
    }
    if path.contains('\\') {
        return invalid("backslashes are not allowed");
    }
    if path.chars().any(char::is_control) {
        return invalid("control characters are not allowed");
    }
    for component in path.split('/') {
        match component {
            "" => return invalid("empty path component"),
            "." | ".." => return invalid("'.' and '..' components are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// Joins a folder and a relative path with `/` (an empty folder means the root).
pub fn join(dir: &str, path: &str) -> String {
    if dir.is_empty() {
        path.to_owned()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), path)
    }
}

/// A [`Backend`] on a local directory.
///
/// Durability: [`Backend::sync`] `fsync`s the file and every directory created since the last
/// sync, so a synced file survives a power loss together with its directory entries.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    /// Directories whose entries changed (new files or sub-directories) and still need an fsync.
    dirty_dirs: Mutex<HashSet<PathBuf>>,
}

impl LocalBackend {
    /// A backend rooted at `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(LocalBackend {
            root,
            dirty_dirs: Mutex::new(HashSet::new()),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str, allow_empty: bool) -> io::Result<PathBuf> {
        validate_path(path, allow_empty)?;
        let mut full = self.root.clone();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            full.push(component);
        }
        Ok(full)
    }

    /// Creates the parent folders of `full` and remembers every directory whose entries changed.
    fn create_parents(&self, full: &Path) -> io::Result<()> {
        let Some(parent) = full.parent() else {
            return Ok(());
        };
        let mut missing = Vec::new();
        let mut cursor = parent;
        while !cursor.exists() && cursor.starts_with(&self.root) && cursor != self.root {
            missing.push(cursor.to_path_buf());
            match cursor.parent() {
                Some(p) => cursor = p,
                None => break,
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(parent)?;
        let mut dirty = self.lock_dirty();
        for dir in missing {
            if let Some(p) = dir.parent() {
                dirty.insert(p.to_path_buf());
            }
        }
        Ok(())
    }

    fn lock_dirty(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        // A poisoned lock only means another thread panicked while inserting into the set; the
        // set itself is still usable (at worst it holds an extra directory to fsync).
        self.dirty_dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn mark_dirty(&self, dir: &Path) {
        self.lock_dirty().insert(dir.to_path_buf());
    }

    /// Fsyncs every pending directory (parents before children does not matter for fsync).
    fn sync_dirty_dirs(&self) -> io::Result<()> {
        let dirs: Vec<PathBuf> = self.lock_dirty().iter().cloned().collect();
        for dir in &dirs {
            sync_dir(dir)?;
        }
        let mut dirty = self.lock_dirty();
        for dir in &dirs {
            dirty.remove(dir);
        }
        Ok(())
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

fn not_found_is_ok(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Backend for LocalBackend {
    fn append(&self, path: &str, bytes: &[u8]) -> io::Result<u64> {
        let full = self.resolve(path, false)?;
        self.create_parents(&full)?;
        let existed = full.exists();
        let mut file = OpenOptions::new().create(true).append(true).open(&full)?;
        if !existed {
            if let Some(parent) = full.parent() {
                self.mark_dirty(parent);
            }
        }
        let offset = file.seek(SeekFrom::End(0))?;
        if let Err(e) = file.write_all(bytes) {
            // Best effort: do not leave a partial range behind (for example on ENOSPC).
            let _ = file.set_len(offset);
            return Err(e);
        }
        Ok(offset)
    }

    fn sync(&self, path: &str) -> io::Result<()> {
        let full = self.resolve(path, false)?;
        File::open(&full)?.sync_all()?;
        self.sync_dirty_dirs()
    }

    fn put_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let full = self.resolve(path, false)?;
        self.create_parents(&full)?;
        let parent = full
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?
            .to_path_buf();
        let file_name = full
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_string_lossy()
            .into_owned();
        let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &full)?;
            sync_dir(&parent)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        self.sync_dirty_dirs()
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        fs::read(self.resolve(path, false)?)
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let full = self.resolve(path, false)?;
        let mut file = File::open(full)?;
        let file_len = file.metadata()?.len();
        let end = offset.checked_add(len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "range end overflows u64")
        })?;
        if end > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("range {offset}..{end} is past the end of the file ({file_len} bytes)"),
            ));
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn len(&self, path: &str) -> io::Result<Option<u64>> {
        let full = self.resolve(path, false)?;
        match fs::metadata(full) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn truncate(&self, path: &str, len: u64) -> io::Result<()> {
        let full = self.resolve(path, false)?;
        let file = OpenOptions::new().write(true).open(full)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        let full = self.resolve(path, false)?;
        not_found_is_ok(fs::remove_file(&full))?;
        if let Some(parent) = full.parent() {
            if parent.exists() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn list_dirs(&self, prefix: &str) -> io::Result<Vec<String>> {
        let full = self.resolve(prefix, true)?;
        let entries = match fs::read_dir(&full) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                if let Some(name) = entry.file_name().to_str() {
                    out.push(name.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn list_files(&self, prefix: &str) -> io::Result<Vec<String>> {
        let full = self.resolve(prefix, true)?;
        let mut out = Vec::new();
        let mut stack = vec![(full, String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    // Names that are not UTF-8 cannot be addressed through this API; report
                    // them with a lossy name so that callers still see that something is there.
                    out.push(join(&rel, &entry.file_name().to_string_lossy()));
                    continue;
                };
                let rel_name = join(&rel, &name);
                let ty = entry.file_type()?;
                if ty.is_dir() {
                    stack.push((entry.path(), rel_name));
                } else {
                    out.push(rel_name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove_dir_all(&self, prefix: &str) -> io::Result<()> {
        let full = self.resolve(prefix, false)?;
        not_found_is_ok(fs::remove_dir_all(&full))?;
        if let Some(parent) = full.parent() {
            if parent.exists() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a\\b",
            "a//b",
            "./a",
            "a/",
            "a\nb",
        ] {
            assert!(validate_path(bad, false).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "2026/11/22/x/video/000001.m4s", "a.b/c..d"] {
            assert!(validate_path(good, false).is_ok(), "{good:?} rejected");
        }
        assert!(validate_path("", true).is_ok());
    }

    #[test]
    fn append_read_truncate_list() {
        let tmp = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(tmp.path()).unwrap();
        assert_eq!(b.append("x/y/f.bin", b"hello").unwrap(), 0);
        assert_eq!(b.append("x/y/f.bin", b" world").unwrap(), 5);
        b.sync("x/y/f.bin").unwrap();
        assert_eq!(b.read("x/y/f.bin").unwrap(), b"hello world");
        assert_eq!(b.read_range("x/y/f.bin", 6, 5).unwrap(), b"world");
        assert_eq!(
            b.read_range("x/y/f.bin", 6, 6).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(b.len("x/y/f.bin").unwrap(), Some(11));
        assert_eq!(b.len("x/nope").unwrap(), None);
        b.truncate("x/y/f.bin", 5).unwrap();
        assert_eq!(b.read("x/y/f.bin").unwrap(), b"hello");
        b.put_atomic("x/m.json", b"{}").unwrap();
        b.put_atomic("x/m.json", b"{1}").unwrap();
        assert_eq!(b.read("x/m.json").unwrap(), b"{1}");
        assert_eq!(b.list_dirs("").unwrap(), vec!["x"]);
        assert_eq!(b.list_dirs("x").unwrap(), vec!["y"]);
        assert_eq!(b.list_files("x").unwrap(), vec!["m.json", "y/f.bin"]);
        b.remove("x/m.json").unwrap();
        b.remove("x/m.json").unwrap();
        b.remove_dir_all("x").unwrap();
        assert!(b.list_dirs("").unwrap().is_empty());
        assert!(b.append("../escape", b"x").is_err());
        assert!(b.remove_dir_all("").is_err());
    }
}
