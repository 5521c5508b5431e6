//! Native protocol frames and the Arrow IPC they carry: any bytes decode to a frame or a typed
//! error.
#![no_main]

use journeydb_client::protocol::{decode_frame, decode_ipc, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((kind, payload)) = data.split_first() {
        let _ = decode_frame(*kind, payload);
        let _ = decode_ipc(payload.to_vec());
    }
    let mut r = data;
    while read_frame(&mut r, 64 << 10).is_ok() {}
});
