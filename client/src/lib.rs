//! journeydb-client: wire protocol types, the remote client, and the `Session` trait.
//!
//! Not built yet: see the server/client issue.
