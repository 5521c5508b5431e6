//! The file system as the storage engine sees it: the [`Dir`] trait, with the real disk
//! ([`DiskDir`]) and a simulated one ([`sim::SimDir`]) that can lose power at any step, and the
//! file-system steps of a commit (directory fsync, atomic replacement of small files).
//!
//! Every file the engine touches goes through a `Dir`, so tests run the production code path on the
//! simulated backend and see exactly what a power cut leaves on disk.

mod faults;
pub mod sim;

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Result, StorageError};

/// How [`Dir::open`] opens a file. Every mode opens for reading too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file; fail if the name exists.
    CreateNew,
    /// Create the file, or empty it if it exists.
    Truncate,
    /// Open an existing file for writing.
    Write,
    /// Open an existing file, read-only.
    Read,
}

/// An open file: positioned writes, fsync and truncation. Shared between threads (a group-commit
/// leader fsyncs a file another thread appends to).
pub trait DirFile: Send + Sync + std::fmt::Debug {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (`fdatasync`: data and the size needed to read it).
    fn sync(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The read-only bytes of a whole file: a memory map on disk, a copy in the simulation.
#[derive(Debug)]
pub enum FileBytes {
    /// A read-only memory map.
    Map(Mmap),
    /// Bytes held in memory.
    Heap(Arc<[u8]>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Map(m) => m,
            FileBytes::Heap(b) => b,
        }
    }
}

/// A held lock on a database directory; dropping it releases the lock.
pub type DirLock = Box<dyn Any + Send + Sync>;

/// The file-system operations of the storage engine, on absolute (or process-relative) paths.
pub trait Dir: Send + Sync + std::fmt::Debug {
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DirFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Maps a whole file read-only. The file must never change while mapped (segments are
    /// immutable once written; the key dictionary is mapped only while it is opened).
    fn map(&self, path: &Path) -> io::Result<FileBytes>;
    /// True when `path` names a file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// The names in directory `path`, in no particular order.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Creates directory `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to` (both in the same directory), replacing a file or an empty directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the names created, renamed and removed in directory `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes the exclusive lock file `path` (created if missing); `None` when another holder has it.
    fn lock(&self, path: &Path) -> io::Result<Option<DirLock>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskDir;

#[derive(Debug)]
struct DiskFile {
    file: File,
    /// The file's kind, naming its fail points (see `faults`).
    kind: &'static str,
}

impl DirFile for DiskFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        faults::around("write", self.kind, || self.file.write_all_at(buf, offset))
    }
    fn sync(&self) -> io::Result<()> {
        faults::around("sync", self.kind, || self.file.sync_data())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        faults::around("truncate", self.kind, || self.file.set_len(len))
    }
}

impl Dir for DiskDir {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DirFile>> {
        let mut o = OpenOptions::new();
        o.read(true);
        match mode {
            OpenMode::CreateNew => o.write(true).create_new(true),
            OpenMode::Truncate => o.write(true).create(true).truncate(true),
            OpenMode::Write => o.write(true),
            OpenMode::Read => &mut o,
        };
        let kind = faults::kind(path);
        let file = if mode == OpenMode::Read {
            o.open(path)?
        } else {
            faults::around("create", kind, || o.open(path))?
        };
        Ok(Arc::new(DiskFile { file, kind }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    #[allow(unsafe_code)]
    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        // SAFETY: the engine maps segment files, which are immutable once written: it never
        // writes, truncates or renames one after its commit, and deletes it only when no kept
        // version names it (unlinking keeps an existing mapping valid on POSIX). It also maps the
        // key dictionary while opening it, under the database's lock: nothing writes the file
        // then, and the torn tail it cuts off is never read after the cut (`KeyDict::open_mode`
        // drops the map before returning). Every byte read through the map is bounds-checked and
        // checksummed before it is decoded.
        unsafe { Mmap::map(&file) }.map(FileBytes::Map)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        faults::around("rename", faults::kind(to), || std::fs::rename(from, to))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        faults::around("remove", faults::kind(path), || std::fs::remove_file(path))
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        faults::around("remove", faults::kind(path), || {
            std::fs::remove_dir_all(path)
        })
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        faults::around("syncdir", "dir", || File::open(path)?.sync_all())
    }
    fn lock(&self, path: &Path) -> io::Result<Option<DirLock>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(Box::new(f))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The parent of `path`, `.` for a bare name.
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory, so the names created, renamed or removed in it are durable.
pub fn sync_dir(fs: &dyn Dir, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))
}

/// Reads a whole file.
pub fn read(fs: &dyn Dir, path: &Path) -> Result<Vec<u8>> {
    fs.read(path).map_err(|e| StorageError::io(path, e))
}

/// Opens a file.
pub fn open(fs: &dyn Dir, path: &Path, mode: OpenMode) -> Result<Arc<dyn DirFile>> {
    fs.open(path, mode).map_err(|e| StorageError::io(path, e))
}

/// The names in directory `dir`.
pub fn list(fs: &dyn Dir, dir: &Path) -> Result<Vec<String>> {
    fs.list(dir).map_err(|e| StorageError::io(dir, e))
}

/// Creates a file holding `bytes` and fsyncs it (not its directory).
pub fn write_new(fs: &dyn Dir, path: &Path, bytes: &[u8]) -> Result<Arc<dyn DirFile>> {
    let f = open(fs, path, OpenMode::Truncate)?;
    f.write_at(bytes, 0)
        .and_then(|_| f.sync())
        .map_err(|e| StorageError::io(path, e))?;
    Ok(f)
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(fs: &dyn Dir, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_new(fs, &tmp, bytes)?;
    fs.rename(&tmp, path)
        .map_err(|e| StorageError::io(path, e))?;
    sync_dir(fs, &parent_of(path))
}

/// Removes a file; a file that is already gone is not an error.
pub fn remove_file(fs: &dyn Dir, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::io(path, e)),
        _ => Ok(()),
    }
}
