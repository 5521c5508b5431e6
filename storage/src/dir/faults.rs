//! Fail points of the real file system ([`super::DiskDir`]), compiled in only with the
//! `failpoints` feature (the fault tests turn it on; the binaries never do).
//!
//! Every write, fsync, truncation, file creation, rename, delete and directory fsync evaluates a
//! point before and one after the call, named `OP.KIND.WHEN`:
//! - `OP`: `create`, `write`, `sync`, `truncate`, `rename`, `remove`, `syncdir`;
//! - `KIND`: the file involved: `wal`, `keys` (the key dictionary), `segment`, `manifest`,
//!   `current` (`CURRENT` and its temporary), `dir` (a directory fsync), `other`;
//! - `WHEN`: `before` (the call has not happened) or `after` (it has, and its result is dropped).
//!
//! A point configured (with `fail::cfg` or the `FAILPOINTS` variable) as `return` fails the call
//! with EIO, `return(enospc)` with ENOSPC, and `return(kill)` SIGKILLs the process on the spot: the
//! page cache keeps what was written, as after a crash of the process. `storage/tests/failpoints.rs`
//! trips each point in turn.

use std::io;
use std::path::Path;

/// The kind of file `path` is, by its name and directory.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn kind(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("CURRENT") {
        return "current";
    }
    if name.starts_with("keys") {
        return "keys";
    }
    let dir = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match dir {
        "wal" => "wal",
        "seg" => "segment",
        "manifest" => "manifest",
        _ => "other",
    }
}

/// Evaluates point `op.kind.when`.
#[cfg(feature = "failpoints")]
pub(crate) fn point(op: &str, kind: &str, when: &str) -> io::Result<()> {
    let name = format!("{op}.{kind}.{when}");
    fail::eval(&name, |arg| match arg.as_deref() {
        Some("kill") => kill_self(),
        Some("enospc") => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        _ => Err(io::Error::from_raw_os_error(libc::EIO)),
    })
    .unwrap_or(Ok(()))
}

/// Without the feature a point is nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn point(_op: &str, _kind: &str, _when: &str) -> io::Result<()> {
    Ok(())
}

/// SIGKILLs this process (through kill(1), which needs no unsafe code), and aborts if that fails.
#[cfg(feature = "failpoints")]
fn kill_self() -> ! {
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(std::process::id().to_string())
        .status();
    // The signal is delivered before kill(1) returns; should it not be, end the process anyway.
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::process::abort()
}

/// Runs `call` between the points `op.kind.before` and `op.kind.after`.
#[inline]
pub(crate) fn around<T>(
    op: &str,
    kind: &str,
    call: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    point(op, kind, "before")?;
    let out = call()?;
    point(op, kind, "after")?;
    Ok(out)
}
