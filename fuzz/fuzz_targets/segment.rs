//! The segment reader: any file is a segment whose every column reads back, or a typed error.
#![no_main]

use journeydb_storage::segment::Segment;
use journeydb_storage::{ColumnId, ColumnType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("journeydb-fuzz-seg-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(seg) = Segment::open(&path) {
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
