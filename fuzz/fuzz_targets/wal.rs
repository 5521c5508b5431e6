//! WAL replay: any log file (either format version) yields its intact records (each a batch or a
//! typed error), drops a torn tail, or reports corruption; never a panic.
#![no_main]

use std::path::Path;

use journeydb_storage::dir::{sim::SimDir, Dir, OpenMode};
use journeydb_storage::wal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fs = SimDir::new();
    let dir = Path::new("/wal");
    if fs.create_dir_all(dir).is_err() {
        return;
    }
    let Ok(f) = fs.open(&wal::wal_path(dir, 1), OpenMode::CreateNew) else {
        return;
    };
    if f.write_at(data, 0).is_err() {
        return;
    }
    let _ = wal::read_wal(&fs, dir, 1);
});
