//! journeydb-journey: customer journeys on journeydb.
//!
//! It owns the journey definition format (`def`: TOML, checked with line numbers), the compiler and
//! runner (`run`: one run advances every customer's state by set operations, folds the new rows in
//! with MIN, checks invariants on a Bernoulli sample and publishes by an atomic swap) and the funnel
//! report (`report`). It talks to the engine only through [`journeydb_client::Session`], so the same
//! code runs on an embedded database or against a server.
#![warn(missing_docs)]

pub mod def;
pub mod report;
pub mod run;
pub mod value;
