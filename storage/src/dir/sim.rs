//! A simulated file system that can lose power.
//!
//! It keeps two states of everything: what the program sees (*live*) and what would survive a power
//! cut (*durable*). A file's writes become durable at its fsync; a directory's creates, renames and
//! removes at the fsync of that directory. [`SimDir::power_cut`] builds the disk a machine would find
//! after losing power now: everything durable, plus, for what was not yet synced, any subset of each
//! file's pending writes (so later writes may land while earlier ones are lost), some of them torn at
//! 512-byte sector boundaries, and a prefix of each directory's pending name changes. The old file
//! system then fails every call, as a machine without power would.
//!
//! [`SimDir::cut_after`] arms a cut at the n-th mutating call (write, fsync, truncate, create, rename,
//! remove): that call and every later one fail with an I/O error, so the program sees the cut at an
//! exact point of its work. Counters of every kind of call let a test report how many points it
//! explored.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Dir, DirFile, DirLock, FileBytes, OpenMode};

type Ino = usize;

const SECTOR: usize = 512;

#[derive(Debug, Clone)]
enum Write {
    At(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct FileNode {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Write>,
}

#[derive(Debug, Clone)]
enum NsOp {
    Link(OsString, Ino),
    Unlink(OsString),
    Rename(OsString, OsString),
}

#[derive(Debug, Clone, Default)]
struct DirNode {
    live: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
    pending: Vec<NsOp>,
}

#[derive(Debug, Clone)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// Counts of the calls a [`SimDir`] served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Positioned writes.
    pub writes: u64,
    /// File fsyncs.
    pub file_syncs: u64,
    /// Directory fsyncs.
    pub dir_syncs: u64,
    /// Renames.
    pub renames: u64,
    /// Removals (files and directory trees).
    pub removes: u64,
    /// Files and directories created.
    pub creates: u64,
    /// Truncations.
    pub truncates: u64,
}

impl SimStats {
    /// Mutating calls in all: the points where a cut can happen.
    pub fn mutations(&self) -> u64 {
        self.writes
            + self.file_syncs
            + self.dir_syncs
            + self.renames
            + self.removes
            + self.creates
            + self.truncates
    }
}

#[derive(Debug)]
struct State {
    nodes: Vec<Node>,
    locks: Vec<Ino>,
    dead: bool,
    cut_at: Option<u64>,
    fail_at: Option<u64>,
    kill_at: Option<u64>,
    /// Handles of an older generation belong to a killed process: all their calls fail.
    generation: u64,
    stats: SimStats,
}

/// The simulated file system; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct SimDir {
    state: Arc<Mutex<State>>,
    gen: u64,
}

impl Default for SimDir {
    fn default() -> Self {
        Self::new()
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss")
}

fn injected() -> io::Error {
    io::Error::other("simulated I/O error")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn names(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect()
}

/// Applies one name change to a directory map.
fn apply_ns(map: &mut BTreeMap<OsString, Ino>, op: &NsOp) {
    match op {
        NsOp::Link(n, ino) => {
            map.insert(n.clone(), *ino);
        }
        NsOp::Unlink(n) => {
            map.remove(n);
        }
        NsOp::Rename(from, to) => {
            if let Some(ino) = map.remove(from) {
                map.insert(to.clone(), ino);
            }
        }
    }
}

fn apply_write(bytes: &mut Vec<u8>, w: &Write) {
    match w {
        Write::At(off, data) => {
            let off = *off as usize;
            if bytes.len() < off + data.len() {
                bytes.resize(off + data.len(), 0);
            }
            if let Some(dst) = bytes.get_mut(off..off + data.len()) {
                dst.copy_from_slice(data);
            }
        }
        Write::SetLen(n) => bytes.resize(*n as usize, 0),
    }
}

/// A small deterministic generator (SplitMix64) for the choices of a power cut.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

impl State {
    fn node(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(ino)
    }

    fn dir_mut(&mut self, ino: Ino) -> Option<&mut DirNode> {
        match self.nodes.get_mut(ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Option<&mut FileNode> {
        match self.nodes.get_mut(ino) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }

    /// Resolves `path` through the live names.
    fn resolve(&self, path: &Path) -> Option<Ino> {
        let mut ino = 0;
        for n in names(path) {
            match self.node(ino)? {
                Node::Dir(d) => ino = *d.live.get(&n)?,
                Node::File(_) => return None,
            }
        }
        Some(ino)
    }

    /// The directory holding `path` and the last name of `path`.
    fn parent(&self, path: &Path) -> io::Result<(Ino, OsString)> {
        let mut ns = names(path);
        let last = ns.pop().ok_or_else(|| not_found(path))?;
        let parent: std::path::PathBuf = ns.iter().collect();
        let ino = self.resolve(&parent).ok_or_else(|| not_found(path))?;
        match self.node(ino) {
            Some(Node::Dir(_)) => Ok((ino, last)),
            _ => Err(not_found(path)),
        }
    }

    /// Counts a mutating call; fails it when the power is (or just went) out. `Ok(false)` means the
    /// call must fail with an injected I/O error (see [`SimDir::fail_at`]).
    fn mutate(&mut self, gen: u64, kind: fn(&mut SimStats) -> &mut u64) -> io::Result<bool> {
        self.alive(gen)?;
        let n = self.stats.mutations();
        if self.cut_at.is_some_and(|c| n >= c) {
            self.dead = true;
            return Err(dead());
        }
        if self.kill_at.is_some_and(|c| n >= c) {
            self.kill_at = None;
            self.generation += 1;
            return Err(dead());
        }
        *kind(&mut self.stats) += 1;
        if self.fail_at == Some(n) {
            self.fail_at = None;
            return Ok(false);
        }
        Ok(true)
    }

    fn alive(&self, gen: u64) -> io::Result<()> {
        if self.dead || gen < self.generation {
            Err(dead())
        } else {
            Ok(())
        }
    }

    fn link(&mut self, parent: Ino, name: OsString, node: Node) -> io::Result<Ino> {
        let ino = self.nodes.len();
        self.nodes.push(node);
        let d = self
            .dir_mut(parent)
            .ok_or_else(|| io::Error::other("not a directory"))?;
        d.live.insert(name.clone(), ino);
        d.pending.push(NsOp::Link(name, ino));
        Ok(ino)
    }

    fn unlink(&mut self, parent: Ino, name: &OsString) {
        if let Some(d) = self.dir_mut(parent) {
            d.live.remove(name);
            d.pending.push(NsOp::Unlink(name.clone()));
        }
    }
}

impl SimDir {
    /// An empty file system holding only the root directory.
    pub fn new() -> SimDir {
        SimDir {
            gen: 0,
            state: Arc::new(Mutex::new(State {
                nodes: vec![Node::Dir(DirNode::default())],
                locks: Vec::new(),
                dead: false,
                cut_at: None,
                fail_at: None,
                kill_at: None,
                generation: 0,
                stats: SimStats::default(),
            })),
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls served so far.
    pub fn stats(&self) -> SimStats {
        self.st().stats
    }

    /// Cuts the power at mutating call number `n` (counted from this file system's start): that call
    /// and all later ones fail.
    pub fn cut_after(&self, n: u64) {
        self.st().cut_at = Some(n);
    }

    /// Makes mutating call number `n` fail once with an I/O error, the power staying on. A failed
    /// write leaves half of its bytes; a failed file fsync drops the file's unsynced writes from
    /// what can ever become durable while the program keeps reading them (as Linux does after a
    /// writeback error).
    pub fn fail_at(&self, n: u64) {
        self.st().fail_at = Some(n);
    }

    /// True once the power is out, or this handle's process was killed.
    pub fn is_dead(&self) -> bool {
        self.st().alive(self.gen).is_err()
    }

    /// Kills the process at mutating call number `n`: that call and every later call through this
    /// handle (and files opened through it) fail, while the machine keeps running: the page cache
    /// keeps every write. [`SimDir::restarted`] is the handle of the next process.
    pub fn kill_at(&self, n: u64) {
        self.st().kill_at = Some(n);
    }

    /// The file system as a new process sees it after a kill: everything written so far, synced or
    /// not.
    pub fn restarted(&self) -> SimDir {
        let mut st = self.st();
        st.kill_at = None;
        let gen = st.generation;
        drop(st);
        SimDir {
            state: self.state.clone(),
            gen,
        }
    }

    /// Loses power now: this file system fails every later call, and the result is the disk as the
    /// next boot finds it, with the unsynced writes and name changes chosen by `seed` (see the module
    /// doc).
    pub fn power_cut(&self, seed: u64) -> SimDir {
        let mut st = self.st();
        st.dead = true;
        let mut rng = Rng(seed);
        let nodes = st
            .nodes
            .iter()
            .map(|n| match n {
                Node::File(f) => {
                    let mut bytes = f.durable.clone();
                    for w in &f.pending {
                        match rng.below(4) {
                            0 => {}
                            1 => match w {
                                // A torn write: some of its sectors reach the disk.
                                Write::At(off, data) => {
                                    for (i, chunk) in data.chunks(SECTOR).enumerate() {
                                        if rng.below(2) == 0 {
                                            let at = *off + (i * SECTOR) as u64;
                                            apply_write(&mut bytes, &Write::At(at, chunk.to_vec()));
                                        }
                                    }
                                }
                                Write::SetLen(_) => {}
                            },
                            _ => apply_write(&mut bytes, w),
                        }
                    }
                    Node::File(FileNode {
                        live: bytes.clone(),
                        durable: bytes,
                        pending: Vec::new(),
                    })
                }
                Node::Dir(d) => {
                    let mut map = d.durable.clone();
                    let keep = rng.below(d.pending.len() as u64 + 1) as usize;
                    for op in d.pending.iter().take(keep) {
                        apply_ns(&mut map, op);
                    }
                    Node::Dir(DirNode {
                        live: map.clone(),
                        durable: map,
                        pending: Vec::new(),
                    })
                }
            })
            .collect();
        SimDir {
            gen: 0,
            state: Arc::new(Mutex::new(State {
                nodes,
                locks: Vec::new(),
                dead: false,
                cut_at: None,
                fail_at: None,
                kill_at: None,
                generation: 0,
                stats: SimStats::default(),
            })),
        }
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    gen: u64,
    ino: Ino,
    writable: bool,
}

impl SimFile {
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DirFile for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only file",
            ));
        }
        let mut st = self.st();
        let go = st.mutate(self.gen, |s| &mut s.writes)?;
        let f = st
            .file_mut(self.ino)
            .ok_or_else(|| io::Error::other("not a file"))?;
        // An injected failure writes the first half (a short write that then failed).
        let data = if go {
            buf
        } else {
            buf.get(..buf.len() / 2).unwrap_or(&[])
        };
        let w = Write::At(offset, data.to_vec());
        apply_write(&mut f.live, &w);
        f.pending.push(w);
        if go {
            Ok(())
        } else {
            Err(injected())
        }
    }
    fn sync(&self) -> io::Result<()> {
        let mut st = self.st();
        let go = st.mutate(self.gen, |s| &mut s.file_syncs)?;
        let f = st
            .file_mut(self.ino)
            .ok_or_else(|| io::Error::other("not a file"))?;
        if !go {
            // fsyncgate: the kernel reports the error once and marks the dirty pages clean. The
            // program still reads the new bytes, but no later fsync will write them.
            f.pending.clear();
            return Err(injected());
        }
        // Only the writes still pending reach the disk (not ones an earlier failed fsync dropped).
        for w in std::mem::take(&mut f.pending) {
            apply_write(&mut f.durable, &w);
        }
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only file",
            ));
        }
        let mut st = self.st();
        if !st.mutate(self.gen, |s| &mut s.truncates)? {
            return Err(injected());
        }
        let f = st
            .file_mut(self.ino)
            .ok_or_else(|| io::Error::other("not a file"))?;
        let w = Write::SetLen(len);
        apply_write(&mut f.live, &w);
        f.pending.push(w);
        Ok(())
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    ino: Ino,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.locks.retain(|i| *i != self.ino);
    }
}

impl Dir for SimDir {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DirFile>> {
        let mut st = self.st();
        st.alive(self.gen)?;
        let existing = st.resolve(path);
        let ino = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"))
            }
            (OpenMode::Truncate, Some(ino)) => {
                if !st.mutate(self.gen, |s| &mut s.truncates)? {
                    return Err(injected());
                }
                let f = st
                    .file_mut(ino)
                    .ok_or_else(|| io::Error::other("not a file"))?;
                f.live.clear();
                f.pending.push(Write::SetLen(0));
                ino
            }
            (OpenMode::CreateNew | OpenMode::Truncate, None) => {
                let (parent, name) = st.parent(path)?;
                if !st.mutate(self.gen, |s| &mut s.creates)? {
                    return Err(injected());
                }
                st.link(parent, name, Node::File(FileNode::default()))?
            }
            (OpenMode::Write | OpenMode::Read, Some(ino)) => match st.node(ino) {
                Some(Node::File(_)) => ino,
                _ => return Err(io::Error::other("not a file")),
            },
            (OpenMode::Write | OpenMode::Read, None) => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            gen: self.gen,
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.st();
        st.alive(self.gen)?;
        match st.resolve(path).and_then(|i| st.node(i)) {
            Some(Node::File(f)) => Ok(f.live.clone()),
            Some(Node::Dir(_)) => Err(io::Error::other("is a directory")),
            None => Err(not_found(path)),
        }
    }

    fn map(&self, path: &Path) -> io::Result<FileBytes> {
        self.read(path).map(|b| FileBytes::Heap(b.into()))
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.st();
        st.alive(self.gen).is_ok() && st.resolve(path).is_some()
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.st();
        st.alive(self.gen)?;
        match st.resolve(path).and_then(|i| st.node(i)) {
            Some(Node::Dir(d)) => Ok(d
                .live
                .keys()
                .map(|k| k.to_string_lossy().into_owned())
                .collect()),
            Some(Node::File(_)) => Err(io::Error::other("not a directory")),
            None => Err(not_found(path)),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        st.alive(self.gen)?;
        let mut ino = 0;
        for n in names(path) {
            let next = match st.node(ino) {
                Some(Node::Dir(d)) => d.live.get(&n).copied(),
                _ => return Err(io::Error::other("not a directory")),
            };
            ino = match next {
                Some(i) => i,
                None => {
                    if !st.mutate(self.gen, |s| &mut s.creates)? {
                        return Err(injected());
                    }
                    st.link(ino, n, Node::Dir(DirNode::default()))?
                }
            };
        }
        match st.node(ino) {
            Some(Node::Dir(_)) => Ok(()),
            _ => Err(io::Error::other("not a directory")),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.st();
        st.alive(self.gen)?;
        let (pf, nf) = st.parent(from)?;
        let (pt, nt) = st.parent(to)?;
        if pf != pt {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the simulation renames within one directory only",
            ));
        }
        let src = st.resolve(from).ok_or_else(|| not_found(from))?;
        if let Some(dst) = st.resolve(to) {
            match (st.node(src), st.node(dst)) {
                (Some(Node::File(_)), Some(Node::File(_))) => {}
                (Some(Node::Dir(_)), Some(Node::Dir(d))) if d.live.is_empty() => {}
                _ => return Err(io::Error::other("cannot replace the target")),
            }
        }
        if !st.mutate(self.gen, |s| &mut s.renames)? {
            return Err(injected());
        }
        let d = st.dir_mut(pf).ok_or_else(|| not_found(from))?;
        let op = NsOp::Rename(nf, nt);
        apply_ns(&mut d.live, &op);
        d.pending.push(op);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        st.alive(self.gen)?;
        let (parent, name) = st.parent(path)?;
        match st.resolve(path).and_then(|i| st.node(i)) {
            Some(Node::File(_)) => {}
            Some(Node::Dir(_)) => return Err(io::Error::other("is a directory")),
            None => return Err(not_found(path)),
        }
        if !st.mutate(self.gen, |s| &mut s.removes)? {
            return Err(injected());
        }
        st.unlink(parent, &name);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        st.alive(self.gen)?;
        let (parent, name) = st.parent(path)?;
        if st.resolve(path).is_none() {
            return Err(not_found(path));
        }
        if !st.mutate(self.gen, |s| &mut s.removes)? {
            return Err(injected());
        }
        st.unlink(parent, &name);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        st.alive(self.gen)?;
        let ino = st.resolve(path).ok_or_else(|| not_found(path))?;
        if !st.mutate(self.gen, |s| &mut s.dir_syncs)? {
            return Err(injected());
        }
        let d = st
            .dir_mut(ino)
            .ok_or_else(|| io::Error::other("not a directory"))?;
        d.durable = d.live.clone();
        d.pending.clear();
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Option<DirLock>> {
        let found = self.st().resolve(path);
        let ino = match found {
            Some(i) => i,
            None => {
                let f = self.open(path, OpenMode::CreateNew)?;
                drop(f);
                self.st().resolve(path).ok_or_else(|| not_found(path))?
            }
        };
        let mut st = self.st();
        st.alive(self.gen)?;
        if st.locks.contains(&ino) {
            return Ok(None);
        }
        st.locks.push(ino);
        Ok(Some(Box::new(SimLock {
            state: self.state.clone(),
            ino,
        })))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_survives_and_unsynced_names_may_not() {
        let fs = SimDir::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.sync().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        f.write_at(b" world", 5).unwrap();
        let g = fs.open(Path::new("/d/b"), OpenMode::CreateNew).unwrap();
        g.write_at(b"x", 0).unwrap();
        g.sync().unwrap();
        let mut saw_b = [false, false];
        let mut tails = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let after = fs.power_cut(seed);
            let a = after.read(Path::new("/d/a")).unwrap();
            assert_eq!(&a[..5], b"hello", "synced bytes always survive");
            tails.insert(a.len());
            saw_b[usize::from(after.exists(Path::new("/d/b")))] = true;
        }
        assert!(
            fs.read(Path::new("/d/a")).is_err(),
            "no power: every call fails"
        );
        assert_eq!(
            saw_b,
            [true, true],
            "an unsynced create may or may not survive"
        );
        assert!(tails.contains(&5) && tails.contains(&11));
    }

    #[test]
    fn cut_after_fails_that_call_and_every_later_one() {
        let fs = SimDir::new();
        fs.cut_after(2);
        let f = fs.open(Path::new("/a"), OpenMode::CreateNew).unwrap();
        f.write_at(b"1", 0).unwrap();
        assert!(f.sync().is_err());
        assert!(fs.is_dead());
        assert!(f.write_at(b"2", 1).is_err());
        assert_eq!(fs.stats().mutations(), 2);
    }

    #[test]
    fn renamed_directories_keep_their_children() {
        let fs = SimDir::new();
        fs.create_dir_all(Path::new("/p/.tmp/sub")).unwrap();
        let f = fs
            .open(Path::new("/p/.tmp/sub/x"), OpenMode::CreateNew)
            .unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync().unwrap();
        for d in ["/p/.tmp/sub", "/p/.tmp", "/p", "/"] {
            fs.sync_dir(Path::new(d)).unwrap();
        }
        fs.rename(Path::new("/p/.tmp"), Path::new("/p/db")).unwrap();
        fs.sync_dir(Path::new("/p")).unwrap();
        let after = fs.power_cut(7);
        assert_eq!(after.read(Path::new("/p/db/sub/x")).unwrap(), b"x");
        assert!(!after.exists(Path::new("/p/.tmp")));
    }
}
