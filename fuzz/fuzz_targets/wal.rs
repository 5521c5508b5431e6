//! WAL replay: any log file yields its intact records (each a batch or a typed error), drops a
//! torn tail, or reports corruption; never a panic.
#![no_main]

use journeydb_storage::{log, wal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.wal");
    if let Ok(records) = log::read_records(path, data) {
        for (offset, payload) in records.payloads {
            let _ = wal::decode_batch(path, payload, offset);
        }
    }
});
