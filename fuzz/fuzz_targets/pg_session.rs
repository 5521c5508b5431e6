//! A PostgreSQL session (after startup) driven by arbitrary bytes as client messages: every
//! message is answered or ends the session, never a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    journeydb_server::pg::fuzz_session(common::engine(), data);
});
