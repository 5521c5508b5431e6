//! journeydb-server: the TCP server (native protocol and PostgreSQL wire).
//!
//! Not built yet: see the server/client issue.
