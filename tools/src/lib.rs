//! The library behind the `journeydb` command: the journey command line (sessions, definitions on
//! disk, printing runs) and the demo's synthetic CDP data. Journeys themselves live in
//! `journeydb-journey`.
#![warn(missing_docs)]

pub mod cli;
pub mod dashboard;
pub mod data;
pub mod journey;
pub mod transfer;

/// The demo's journey definition (`examples/journey.toml`).
pub const EXAMPLE_JOURNEY: &str = include_str!("../../examples/journey.toml");
