//! Shared helpers of the benches: the journey dataset generator.
