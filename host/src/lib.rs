//! wasmftpd: an FTP server whose authentication and storage are WebAssembly components.
//!
//! Module map:
//! - [`backend`]: the plain Rust traits the protocol talks to (authenticator, storage)
//!   and an in-memory implementation for tests.
//! - [`ftp`]: the FTP protocol: control connection (PI), data connections (DTP),
//!   one file per command, replies, paths and listings. Never sees wasmtime.
//! - [`plugin`]: the WebAssembly plugin runtime; the only module that runs plugins
//!   (`kit`'s `inspect` also reads component types with wasmtime, never instantiating).
//!   Implements the [`backend`] traits on top of components.
//! - [`config`]: the TOML configuration and its validation.
//! - [`site`]: a virtual site (its backends and limits) as the protocol sees it.
//! - [`events`]: queues a site's events to its event handlers, off the protocol's path.
//! - [`server`]: listeners, connection limits, shutdown.
//! - [`tls`]: TLS for control and data connections (rustls); certificates,
//!   per-connection session state, the data-connection session-reuse check.
//! - [`cli`]: the command line.
//! - [`log_writer`]: where log lines go (buffered, written by a background thread).
//! - [`ops`]: metrics and the admin listener, the transfer log, the defender (bans),
//!   PROXY protocol, bandwidth limits, passive addresses behind NAT.
//! - [`fuzzing`]: entry points for the fuzz targets in `fuzz/` and their checks.
//! - [`kit`]: the plugin author's tools (`wasmftpd plugin test|inspect|bench`): the
//!   conformance batteries every plugin must pass, through [`plugin`]'s public API.

pub mod backend;
pub mod cli;
pub mod config;
pub mod events;
pub mod ftp;
pub mod fuzzing;
pub mod kit;
pub mod log_writer;
pub mod ops;
pub mod plugin;
pub mod server;
pub mod site;
pub mod tls;
