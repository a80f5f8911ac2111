//! The wasmtime engine and what is shared by every plugin of the process: the
//! engine configuration (pooling allocator, epochs), the linker with the host
//! interfaces plugins may import, and loading (compile or cache hit, world
//! check, pre-linking).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
};
use wasmtime_wasi_config::WasiConfigVariables;

use super::cache::{CacheStats, ComponentCache};
use super::http::OutboundPolicy;
use super::instance::{ContractVersion, HostState, PluginContext};
use super::{PluginSource, PluginSpec, RuntimeOptions};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}
pub(super) use generated::BUILTIN_NAMES;

/// Component instances the pool holds at once. Each logged-in session keeps one
/// storage instance, and logins in flight one auth instance each: 10,000 idle
/// sessions is the design target, plus headroom for logins.
const POOL_INSTANCES: u32 = 10_500;

/// Replaces [`POOL_INSTANCES`] (for profiling: valgrind cannot reserve the
/// address space of the full pool; bench/ops-instructions.sh sets it).
const POOL_VARIABLE: &str = "WASMFTPD_PLUGIN_POOL";

fn pool_instances() -> anyhow::Result<u32> {
    match std::env::var(POOL_VARIABLE) {
        Err(_) => Ok(POOL_INSTANCES),
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(n) if n >= 4 => Ok(n),
            _ => bail!(
                "environment variable {POOL_VARIABLE}: `{text}` is not a number of instances (4 or more)"
            ),
        },
    }
}

/// Largest linear memory any plugin may have; a site's `limits.memory` above this
/// is refused at load. Also the virtual address space reserved per memory slot:
/// 10,500 slots × (512 MiB + 2 × 32 MiB guards) ≈ 5.6 TiB of the 128 TiB a
/// process has. (The 4 GiB default would make 42 TiB, and a test process that
/// creates several runtimes would run out of address space.)
pub const MAX_PLUGIN_MEMORY: u64 = 512 << 20;

/// How often the epoch advances: the granularity of call deadlines, and how
/// often a long call yields to the tokio scheduler.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which world a plugin must implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum World {
    Auth,
    Storage,
    Events,
}

impl World {
    /// The interface the world exports, in each contract version that has
    /// it, newest first.
    fn exports(self) -> &'static [(&'static str, ContractVersion)] {
        use ContractVersion::{V01, V02};
        match self {
            World::Auth => &[
                ("wasmftpd:plugin/auth@0.2.0", V02),
                ("wasmftpd:plugin/auth@0.1.0", V01),
            ],
            World::Storage => &[
                ("wasmftpd:plugin/storage@0.2.0", V02),
                ("wasmftpd:plugin/storage@0.1.0", V01),
            ],
            World::Events => &[("wasmftpd:plugin/events@0.2.0", V02)],
        }
    }

    fn kind(self) -> &'static str {
        match self {
            World::Auth => "an auth plugin",
            World::Storage => "a storage plugin",
            World::Events => "an event plugin",
        }
    }
}

/// A compiled, checked and linked plugin, ready to instantiate.
pub(super) struct Loaded {
    pub context: Arc<PluginContext>,
    pub pre: InstancePre<HostState>,
}

pub(super) struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
}

impl PluginEngine {
    pub fn new(opts: RuntimeOptions) -> anyhow::Result<Self> {
        let instances = pool_instances()?;
        let engine = Engine::new(&engine_config(instances))
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("creating the plugin engine (pool of {instances} instances)")
            })?;
        start_epoch_ticker(engine.weak())?;
        let linker = host_linker(&engine)?;
        let cache = ComponentCache::new(opts.cache_dir)?;
        Ok(PluginEngine {
            engine,
            linker,
            cache,
        })
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn load(&self, spec: &PluginSpec, world: World) -> anyhow::Result<Loaded> {
        if spec.limits.memory > MAX_PLUGIN_MEMORY {
            bail!(
                "memory limit {} MiB is above the runtime's maximum of {} MiB",
                spec.limits.memory >> 20,
                MAX_PLUGIN_MEMORY >> 20
            );
        }
        for grant in &spec.grants {
            if !grant.host.is_dir() {
                bail!("granted directory {} does not exist", grant.host.display());
            }
        }

        let bytes = match &spec.source {
            PluginSource::Builtin(name) => builtin(name)?.to_vec(),
            PluginSource::File(path) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            }
        };
        check_is_component(&bytes)?;
        let component = self.cache.component(&self.engine, &bytes)?;

        let Some(&(_, version)) = world
            .exports()
            .iter()
            .find(|(name, _)| component.get_export_index(None, name).is_some())
        else {
            let names: Vec<String> = world
                .exports()
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            bail!(
                "the component exports none of {}, so it is not {} this server can run",
                names.join(", "),
                world.kind()
            );
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            anyhow!(
                "the component needs something the host does not provide \
                 (plugins may import WASI 0.2, wasi:config/store, wasi:http and \
                 wasmftpd:plugin's password and cache): {}",
                anyhow::Error::from(e)
            )
        })?;

        let site: Arc<str> = spec.site.as_str().into();
        let plugin: Arc<str> = plugin_name(&spec.source).into();
        let outbound = OutboundPolicy {
            site: site.clone(),
            plugin: plugin.clone(),
            allowed: spec.allowed_hosts.clone(),
            max_response: spec.max_response_size,
            between_frames: spec.limits.call_timeout,
        };
        let context = PluginContext {
            engine: self.engine.clone(),
            site,
            plugin,
            version,
            config: Arc::new(spec.config.iter().cloned().collect::<WasiConfigVariables>()),
            preopens: Arc::new(super::file_io::Preopens::open(&spec.grants)?),
            limits: spec.limits,
            outbound: Arc::new(outbound),
            cache: Arc::default(),
            metrics: Default::default(),
        };
        Ok(Loaded {
            context: Arc::new(context),
            pre,
        })
    }
}

/// The name a plugin goes by in logs.
pub(super) fn plugin_name(source: &PluginSource) -> String {
    match source {
        PluginSource::Builtin(name) => format!("builtin:{name}"),
        PluginSource::File(path) => path.display().to_string(),
    }
}

fn builtin(name: &str) -> anyhow::Result<&'static [u8]> {
    generated::BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| {
            anyhow!(
                "there is no builtin plugin `{name}` (builtins: {})",
                BUILTIN_NAMES.join(", ")
            )
        })
}

/// Gives a clear error for the common mistakes: not WebAssembly at all, or a core
/// module (e.g. built for `wasm32-wasip1`) instead of a component.
fn check_is_component(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.get(..4) != Some(MAGIC) {
        bail!("the file is not a WebAssembly component (no `\\0asm` header)");
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    match bytes.get(6..8) {
        Some([1, 0]) => Ok(()),
        Some([0, 0]) => bail!(
            "the file is a core WebAssembly module, not a component; build it for \
             wasm32-wasip2 or wrap it with `wasm-tools component new`"
        ),
        _ => bail!("the file is not a WebAssembly component (unknown layer)"),
    }
}

fn engine_config(instances: u32) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        // A Rust component instantiates 3 core modules (its code plus two
        // small shims) and has one memory and 2 tables; C and JS components
        // with the preview1 adapter have a few more.
        .total_core_instances(4 * instances)
        .total_memories(instances + instances / 4)
        .total_tables(4 * instances)
        // Every store that has made an async call keeps its fiber stack, and a
        // session's store lives as long as the session.
        .total_stacks(instances)
        .max_memory_size(MAX_PLUGIN_MEMORY as usize);
    // Keep the pages a plugin dirtied resident when its slot is freed and
    // reset them with memset (finding them with PAGEMAP_SCAN where the kernel
    // has it) rather than madvise: the next instance in the slot then takes no
    // page faults. Halves the cost of a short session (measured 31 → 12 µs).
    // Covers a Rust guest's 1 MiB stack, data and first heap pages.
    pool.linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(128 << 10)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // The component-model-async feature (on by default) makes every call
        // cost ~0.9 µs instead of ~0.25 µs; our worlds do not use async ABI.
        .concurrency_support(false)
        .epoch_interruption(true)
        .memory_reservation(MAX_PLUGIN_MEMORY)
        // Plugin code is small and shallow; small stacks keep 10,000 idle
        // sessions cheap. The fiber stack must exceed the wasm stack limit.
        .max_wasm_stack(512 << 10)
        .async_stack_size(1 << 20);
    config
}

/// The host side of every import a plugin may have: WASI 0.2 (with sockets
/// and environment withheld by each store's `WasiCtx`), `wasi:http` (each
/// request checked by the store's `Outbound` hooks), `wasi:config/store`, our
/// `password` and `cache` interfaces, and our `types` interfaces of both
/// contract versions, which have no functions.
fn host_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    use super::bindings::auth::wasmftpd::plugin::{cache, password};
    use wasmtime::component::HasSelf;
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    super::file_io::add_to_linker(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |state: &mut HostState| {
        wasmtime_wasi_config::WasiConfig::from(&*state.config)
    })?;
    password::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)?;
    cache::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)?;
    linker.instance("wasmftpd:plugin/types@0.1.0")?;
    linker.instance("wasmftpd:plugin/types@0.2.0")?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
/// Without it no deadline ever fires, so failing to start it fails the runtime.
fn start_epoch_ticker(engine: EngineWeak) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .context("starting the epoch ticker thread")?;
    Ok(())
}
