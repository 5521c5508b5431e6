//! An import as a stream of table-typed batches: files read, converted, bad rows set aside (to a
//! rejects file when asked), progress reported. Whoever consumes the stream commits it (a storage
//! bulk load, embedded, or a client's load through a server), so an import is one commit.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use crate::convert::{Converter, Reject};
use crate::read::{read_files, Piece, ReadOptions};
use crate::{IoError, Result};

/// How far an import has come.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Files finished.
    pub files_done: usize,
    /// Files in the import.
    pub files: usize,
    /// Rows converted so far.
    pub rows: u64,
    /// Rows rejected so far.
    pub rejected: u64,
    /// Bytes of input read (finished files whole, the current one so far).
    pub bytes_read: u64,
    /// Bytes of all the input files.
    pub bytes: u64,
    /// Time since the import began.
    pub elapsed: Duration,
}

/// A progress callback.
pub type OnProgress = Box<dyn FnMut(&Progress) + Send>;

/// The converted batches of an import; see the module documentation.
pub struct Batches<P> {
    pieces: P,
    conv: Converter,
    rejects: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    progress: Progress,
    sizes: Vec<(PathBuf, u64)>,
    current: Option<PathBuf>,
    started: Instant,
    on_progress: Option<OnProgress>,
    /// An error ended the stream.
    failed: bool,
}

impl Batches<Box<dyn Iterator<Item = Result<Piece>> + Send>> {
    /// An import of `files` read with `read` and converted by `conv`. With `rejects`, rejected
    /// rows are written there (CSV: where, column, reason).
    pub fn new(
        files: Vec<PathBuf>,
        read: ReadOptions,
        conv: Converter,
        rejects: Option<PathBuf>,
    ) -> Result<Self> {
        let sizes: Vec<(PathBuf, u64)> = files
            .iter()
            .map(|f| {
                (
                    f.clone(),
                    std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
                )
            })
            .collect();
        let pieces: Box<dyn Iterator<Item = Result<Piece>> + Send> =
            Box::new(read_files(files, read));
        Batches::over(pieces, sizes, conv, rejects)
    }
}

impl<P: Iterator<Item = Result<Piece>>> Batches<P> {
    /// An import of already-opened pieces (`sizes`: each file and its size, for progress).
    pub fn over(
        pieces: P,
        sizes: Vec<(PathBuf, u64)>,
        conv: Converter,
        rejects: Option<PathBuf>,
    ) -> Result<Self> {
        let rejects = match rejects {
            Some(p) => {
                let f = std::fs::File::create(&p).map_err(|source| IoError::File {
                    path: p.clone(),
                    source,
                })?;
                let mut w = std::io::BufWriter::new(f);
                writeln!(w, "at,column,reason").map_err(|source| IoError::File {
                    path: p.clone(),
                    source,
                })?;
                Some((p, w))
            }
            None => None,
        };
        Ok(Batches {
            pieces,
            conv,
            rejects,
            progress: Progress {
                files: sizes.len(),
                bytes: sizes.iter().map(|(_, s)| s).sum(),
                ..Progress::default()
            },
            sizes,
            current: None,
            started: Instant::now(),
            on_progress: None,
            failed: false,
        })
    }

    /// Calls `f` after every batch.
    pub fn on_progress(mut self, f: OnProgress) -> Self {
        self.on_progress = Some(f);
        self
    }

    /// The progress so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    fn size_of(&self, f: &PathBuf) -> u64 {
        self.sizes
            .iter()
            .find(|(p, _)| p == f)
            .map_or(0, |(_, s)| *s)
    }

    fn write_rejects(&mut self, rejects: &[Reject]) -> Result<()> {
        let Some((path, w)) = &mut self.rejects else {
            return Ok(());
        };
        for r in rejects {
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            writeln!(w, "{},{},{}", q(&r.at), q(&r.column), q(&r.reason)).map_err(|source| {
                IoError::File {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<RecordBatch>> {
        let Some(piece) = self.pieces.next().transpose()? else {
            if let Some((path, w)) = &mut self.rejects {
                w.flush().map_err(|source| IoError::File {
                    path: path.clone(),
                    source,
                })?;
            }
            if self.current.take().is_some() {
                self.progress.files_done += 1;
            }
            return Ok(None);
        };
        if self.current.as_ref() != Some(&piece.file)
            && self.current.replace(piece.file.clone()).is_some()
        {
            self.progress.files_done += 1;
        }
        let done_bytes: u64 = self
            .sizes
            .iter()
            .take(self.progress.files_done)
            .map(|(_, s)| s)
            .sum();
        let (batch, rejects) = self.conv.convert(&piece)?;
        self.write_rejects(&rejects)?;
        self.progress.rows += batch.num_rows() as u64;
        self.progress.rejected = self.conv.rejected();
        self.progress.bytes_read = done_bytes + piece.bytes_read.min(self.size_of(&piece.file));
        self.progress.elapsed = self.started.elapsed();
        if let Some(f) = &mut self.on_progress {
            f(&self.progress);
        }
        Ok(Some(batch))
    }
}

impl<P: Iterator<Item = Result<Piece>>> Iterator for Batches<P> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        if self.failed {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.failed = true;
        }
        r.transpose()
    }
}
