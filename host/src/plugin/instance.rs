//! One plugin instance's world: the store data every instance gets (WASI
//! context, resource table, outbound HTTP policy, config, shared cache, limits,
//! deadline), how a store is built from a site's grants and limits, and how a
//! failed call is described.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::PluginLimits;
use super::file_io::Preopens;
use super::http::{Outbound, OutboundPolicy};
use super::kv::SharedCache;
use super::log::LogSink;

/// Which contract a loaded plugin was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContractVersion {
    /// `wasmftpd:plugin@0.1.0`, run through the adapters in `auth`/`storage`.
    V01,
    /// `wasmftpd:plugin@0.2.0`.
    V02,
}

/// What a site's plugin needs to make instances, shared by all its instances.
pub(super) struct PluginContext {
    pub engine: Engine,
    pub site: Arc<str>,
    pub plugin: Arc<str>,
    pub version: ContractVersion,
    /// Shared rather than copied into every store: a session costs a pointer.
    pub config: Arc<WasiConfigVariables>,
    /// The granted directories, opened once for all instances.
    pub preopens: Arc<Preopens>,
    pub limits: PluginLimits,
    /// Which hosts `wasi:http` may reach, and how.
    pub outbound: Arc<OutboundPolicy>,
    /// The `cache` import's store, shared by all instances of this plugin.
    pub cache: Arc<SharedCache>,
    /// Handles in the server's metrics (see `call_metrics`).
    pub metrics: std::sync::OnceLock<Option<crate::ops::metrics::PluginCallMetrics>>,
}

/// The data of one store (one plugin instance).
pub(super) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    /// The `wasi:http` hooks: the allow-list check and our own sender.
    pub(super) outbound: Outbound,
    pub config: Arc<WasiConfigVariables>,
    /// What `get-directories` hands out (see `file_io`).
    pub(super) preopens: Arc<Preopens>,
    pub(super) cache: Arc<SharedCache>,
    limits: MemoryCap,
    /// When the call in progress must have returned.
    pub(super) deadline: CallDeadline,
    /// The newest live directory listing (a `directory-entry-stream`), whose
    /// prefetched metadata answers `stat-at` (see `file_io`).
    pub(super) listing: Option<u32>,
    /// The newest file stream made by `read-via-stream` (see `file_io`).
    pub(super) newest_file_stream: Option<super::file_io::FileStreamOrigin>,
    /// When the call in progress started (`wasmftpd_plugin_call_seconds`).
    call_started: Instant,
    /// Holds `wasmftpd_plugin_instances_live` up while the store lives.
    live: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl Drop for HostState {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            live.dec();
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl HostState {
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// When a store's call in progress must have returned. Shared by the epoch
/// check (wasm running), the host's own bound on the call ([`PluginContext::bounded`],
/// wasm blocked in a host call) and the outbound HTTP hooks; moved forward by
/// host imports whose time is not the plugin's (password verification).
#[derive(Clone, Debug, Default)]
pub(super) struct CallDeadline(Arc<AtomicU64>);

impl CallDeadline {
    /// Instants are kept as nanoseconds since the first use of any deadline.
    fn base() -> Instant {
        static BASE: OnceLock<Instant> = OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    pub fn set(&self, at: Instant) {
        let nanos = at.saturating_duration_since(Self::base()).as_nanos();
        self.0
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn get(&self) -> Instant {
        Self::base() + Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    /// Moves the deadline `by` later.
    pub fn extend(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(by, Ordering::Relaxed);
    }
}

/// Caps each linear memory of an instance. Trapping (rather than failing
/// `memory.grow`, which a guest may ignore or turn into a loop) ends a runaway
/// allocation at once with an error we recognise.
struct MemoryCap {
    bytes: usize,
}

#[derive(Debug)]
struct MemoryLimitExceeded(usize);

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "memory limit of {} MiB exceeded", self.0 >> 20)
    }
}

impl std::error::Error for MemoryLimitExceeded {}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded(self.bytes)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pool's per-table element limit.
        Ok(true)
    }
}

/// Returned by the epoch callback when a call overruns; recognised in
/// [`describe_failure`].
#[derive(Debug)]
struct DeadlineExceeded(Duration);

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call exceeded its deadline of {:?}", self.0)
    }
}

impl std::error::Error for DeadlineExceeded {}

impl PluginContext {
    /// A fresh store with this plugin's capabilities and limits.
    pub fn new_store(&self) -> anyhow::Result<Store<HostState>> {
        let mut wasi = WasiCtxBuilder::new();
        // Lets file operations run on the calling thread instead of a
        // `spawn_blocking` round trip each (2.5–4.6× faster, measured). The
        // preopens (file_io::Preopens) are made with the same setting.
        wasi.allow_blocking_current_thread(true);
        wasi.stdout(LogSink::stdout(self.site.clone(), self.plugin.clone()));
        wasi.stderr(LogSink::stderr(self.site.clone(), self.plugin.clone()));
        // No network: no socket may be opened, no name resolved.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        // No preopens here: `get-directories` is ours and serves the site's
        // shared ones with their modes.

        let memory = usize::try_from(self.limits.memory).unwrap_or(usize::MAX);
        let deadline = CallDeadline::default();
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: Outbound::new(self.outbound.clone(), deadline.clone()),
            config: self.config.clone(),
            preopens: self.preopens.clone(),
            cache: self.cache.clone(),
            limits: MemoryCap { bytes: memory },
            deadline,
            listing: None,
            newest_file_stream: None,
            call_started: Instant::now(),
            live: self.call_metrics().map(|m| {
                m.live.inc();
                m.live.clone()
            }),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let timeout = self.limits.call_timeout;
        // Checked on every epoch tick while wasm runs: past the deadline the call
        // traps; before it, the call yields so one long call never holds a
        // tokio worker for more than a tick.
        store.epoch_deadline_callback(move |store| {
            if Instant::now() >= store.data().deadline.get() {
                Err(wasmtime::Error::new(DeadlineExceeded(timeout)))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// Starts the clock for one call (or instantiation) into this store.
    pub fn arm(&self, store: &mut Store<HostState>) {
        let now = Instant::now();
        store.data().deadline.set(now + self.limits.call_timeout);
        store.data_mut().call_started = now;
        store.set_epoch_deadline(1);
    }

    /// Counts one finished call (its duration, and its fault if it failed)
    /// in the server's metrics.
    pub fn record_call(
        &self,
        state: &HostState,
        what: &'static str,
        error: Option<&anyhow::Error>,
    ) {
        let Some(metrics) = self.call_metrics() else {
            return;
        };
        use crate::ops::metrics::FaultKind;
        let fault = error.map(|error| {
            if error.downcast_ref::<DeadlineExceeded>().is_some() {
                FaultKind::timeout
            } else if error.downcast_ref::<MemoryLimitExceeded>().is_some() {
                FaultKind::memory
            } else {
                FaultKind::trap
            }
        });
        metrics.call(what, state.call_started.elapsed(), fault);
    }

    /// This plugin's handles in the server's metrics (taken on first use),
    /// if the server installed any.
    fn call_metrics(&self) -> Option<&crate::ops::metrics::PluginCallMetrics> {
        self.metrics
            .get_or_init(|| {
                crate::ops::metrics::plugin_metrics().map(|m| {
                    crate::ops::metrics::PluginCallMetrics::new(m, &self.site, &self.plugin)
                })
            })
            .as_ref()
    }

    /// Bounds a call from outside wasm too: a plugin blocked in a host call
    /// (waiting on a clock or a stream) runs no wasm, so the epoch deadline
    /// alone would not stop it. The future is dropped a few ticks after the
    /// store's deadline (which host imports may move); the caller then
    /// discards the instance. A call that completes at its first poll (most
    /// do) never registers a timer.
    pub async fn bounded<T>(
        &self,
        deadline: &CallDeadline,
        call: impl std::future::Future<Output = wasmtime::Result<T>>,
    ) -> wasmtime::Result<T> {
        let grace = super::engine::EPOCH_TICK * 5;
        let mut call = std::pin::pin!(call);
        loop {
            let until = tokio::time::Instant::from_std(deadline.get() + grace);
            match tokio::time::timeout_at(until, &mut call).await {
                Ok(result) => return result,
                Err(_) if Instant::now() >= deadline.get() + grace => {
                    return Err(wasmtime::Error::new(DeadlineExceeded(
                        self.limits.call_timeout,
                    )));
                }
                // The deadline moved while we waited: wait for the new one.
                Err(_) => {}
            }
        }
    }

    /// Logs a failed call and returns the message for the client's reply.
    pub fn describe_failure(&self, what: &str, error: impl Into<anyhow::Error>) -> String {
        let error = error.into();
        let summary = if error.downcast_ref::<DeadlineExceeded>().is_some() {
            format!("exceeded its {:?} deadline", self.limits.call_timeout)
        } else if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
            format!("ran out of memory ({limit})")
        } else if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
            format!("trapped: {trap}")
        } else {
            format!("failed: {}", error.root_cause())
        };
        tracing::warn!(
            site = %self.site,
            plugin = %self.plugin,
            call = what,
            "plugin {summary}; its instance is discarded"
        );
        tracing::debug!(site = %self.site, plugin = %self.plugin, "plugin failure detail: {error:?}");
        format!("plugin {summary}")
    }
}
