//! End-to-end tests of journeydb live in `tests/tests/`; this library is empty.
