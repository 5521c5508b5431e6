//! journeydb-query: the journey SQL subset and its vectorized bitmap executor.
//!
//! Not built yet: see the query issue. The crate exists so the workspace layout of DESIGN.md §2 is final.
