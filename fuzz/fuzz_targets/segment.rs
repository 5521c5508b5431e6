//! The segment reader: any file is a segment whose every column reads back, or a typed error.
#![no_main]

use journeydb_storage::dir::{sim::SimDir, Dir, OpenMode};
use journeydb_storage::segment::Segment;
use journeydb_storage::{ColumnId, ColumnType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fs = SimDir::new();
    let path = std::path::Path::new("/fuzz.seg");
    let Ok(f) = fs.open(path, OpenMode::CreateNew) else {
        return;
    };
    if f.write_at(data, 0).is_err() {
        return;
    }
    if let Ok(seg) = Segment::open(&fs, path) {
        let ids: Vec<ColumnId> = seg.columns.iter().map(|c| c.id).collect();
        for id in ids {
            for ty in [
                ColumnType::Timestamp,
                ColumnType::Bigint,
                ColumnType::Double,
                ColumnType::Boolean,
                ColumnType::Varchar,
            ] {
                let _ = seg.presence(id, ty);
                let _ = seg.column(id, ty);
            }
        }
    }
});
