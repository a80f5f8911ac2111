//! The WebAssembly plugin runtime: loads auth, storage and event components and
//! implements the [`crate::backend`] traits on top of them. The only module that
//! imports wasmtime; nothing it exports mentions a wasmtime type.
//!
//! - One [`PluginRuntime`] per process owns the wasmtime engine (pooling
//!   allocator, epoch ticker) and the on-disk cache of compiled components.
//! - [`PluginRuntime::load_auth`] / [`PluginRuntime::load_storage`] /
//!   [`PluginRuntime::load_events`] compile a site's plugin once, check it
//!   implements the right world (contract 0.2.0, or 0.1.0 through an adapter),
//!   link it and keep an `InstancePre`. They are synchronous (compiling can
//!   take a while): call them from `spawn_blocking`.
//! - An authenticator instantiates its plugin for each login; a storage provider
//!   gives each session its own instance, created on the session's first call
//!   and opened with the session's facts; an event handler keeps one instance.
//! - Host imports: `wasi:http` limited to the section's `allowed_hosts`
//!   ([`http`]), `password` ([`password`]), `cache` ([`kv`]).
//! - Every call runs under a deadline and every instance under a memory limit. A
//!   plugin that traps or hits a limit fails that one call with `PluginFailed`;
//!   its instance is dropped and a fresh one is made on next use.
//!
//! See `docs/runtime.md` for the decisions behind the numbers.

mod auth;
mod bindings;
mod cache;
mod engine;
mod events;
mod file_io;
mod http;
mod instance;
mod kv;
mod log;
mod password;
mod storage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::backend::{Authenticator, EventHandler, StorageProvider};

pub use cache::CacheStats;
/// The largest `memory_limit` a plugin may have (one pooling-allocator slot).
pub use engine::MAX_PLUGIN_MEMORY;
pub use http::AllowedHost;

/// Process-wide runtime settings.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where compiled components are cached between runs; `None` compiles on
    /// every load.
    pub cache_dir: Option<PathBuf>,
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Embedded in the binary; config `builtin:NAME` (see [`builtin_names`]).
    Builtin(String),
    /// A component file on disk.
    File(PathBuf),
}

/// A directory the site grants a plugin: a WASI preopen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The directory on the host.
    pub host: PathBuf,
    /// The name the plugin sees it under (e.g. `/data`).
    pub guest: String,
    pub mode: GrantMode,
}

/// What a plugin may do under a granted directory (config `dirs` `mode`).
/// Enforced by the runtime whatever the plugin asks (see `file_io`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GrantMode {
    /// Read, list and examine; no change of any kind.
    ReadOnly,
    /// Everything.
    #[default]
    ReadWrite,
    /// Create, write, rename and remove; nothing can be read, listed or
    /// examined (a drop box).
    WriteOnly,
}

/// What one plugin instance may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Most linear memory an instance may grow to, in bytes.
    pub memory: u64,
    /// Longest a single call into the plugin may run.
    pub call_timeout: Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory: 64 << 20,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything needed to load one site's plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// The site's name, for logs.
    pub site: String,
    pub source: PluginSource,
    /// The plugin's configuration, readable through `wasi:config/store`. Nested
    /// TOML tables arrive flattened to dotted keys by the config loader.
    pub config: Vec<(String, String)>,
    /// Directories the plugin may see; nothing else of the host filesystem is
    /// reachable.
    pub grants: Vec<Grant>,
    pub limits: PluginLimits,
    /// Origins `wasi:http` may reach (config `allowed_hosts`); empty: none.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Largest outbound response body (config `max_response_size`).
    pub max_response_size: u64,
    /// Auth only (config `reuse_instances`): a finished login's instance serves
    /// later logins instead of a fresh one per login.
    pub reuse_instances: bool,
}

/// Default `max_response_size`: a user-directory answer or a webhook reply is
/// far smaller; a storage plugin streaming objects sets its own.
pub const DEFAULT_MAX_RESPONSE_SIZE: u64 = 16 << 20;

impl PluginSpec {
    /// A spec with the defaults for everything but where the plugin comes from.
    pub fn new(site: &str, source: PluginSource) -> Self {
        PluginSpec {
            site: site.to_string(),
            source,
            config: Vec::new(),
            grants: Vec::new(),
            limits: PluginLimits::default(),
            allowed_hosts: Vec::new(),
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            reuse_instances: false,
        }
    }
}

/// Loads plugins. Cheap to clone; one per process.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Arc<engine::PluginEngine>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("cache", &self.cache_stats())
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    pub fn new(opts: RuntimeOptions) -> anyhow::Result<Self> {
        Ok(PluginRuntime {
            engine: Arc::new(engine::PluginEngine::new(opts)?),
        })
    }

    /// Loads an auth plugin (world `auth-plugin`).
    pub fn load_auth(&self, spec: PluginSpec) -> anyhow::Result<Arc<dyn Authenticator>> {
        let what = describe(&spec);
        let loaded = self
            .engine
            .load(&spec, engine::World::Auth)
            .with_context(|| what.clone())?;
        let auth =
            auth::WasmAuthenticator::new(loaded, spec.reuse_instances).with_context(|| what)?;
        Ok(Arc::new(auth))
    }

    /// Loads a storage plugin (world `storage-plugin`).
    pub fn load_storage(&self, spec: PluginSpec) -> anyhow::Result<Arc<dyn StorageProvider>> {
        let what = describe(&spec);
        let loaded = self
            .engine
            .load(&spec, engine::World::Storage)
            .with_context(|| what.clone())?;
        let storage = storage::WasmStorageProvider::new(loaded).with_context(|| what)?;
        Ok(Arc::new(storage))
    }

    /// Loads an event plugin (world `event-plugin`).
    pub fn load_events(&self, spec: PluginSpec) -> anyhow::Result<Arc<dyn EventHandler>> {
        let what = describe(&spec);
        let loaded = self
            .engine
            .load(&spec, engine::World::Events)
            .with_context(|| what.clone())?;
        let events = events::WasmEventHandler::new(loaded).with_context(|| what)?;
        Ok(Arc::new(events))
    }

    /// How often the compiled-component cache was hit or missed so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.engine.cache_stats()
    }
}

/// Names accepted after `builtin:`.
pub fn builtin_names() -> &'static [&'static str] {
    engine::BUILTIN_NAMES
}

fn describe(spec: &PluginSpec) -> String {
    format!(
        "loading plugin {} for site {}",
        engine::plugin_name(&spec.source),
        spec.site
    )
}
