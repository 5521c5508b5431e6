//! The library behind the `journeydb` command: the journey runner (definitions, runs, reports).
#![warn(missing_docs)]

pub mod journey;
