//! The server: builds the site registry from the config, opens the listeners,
//! enforces connection limits and hands each connection to the protocol
//! ([`crate::ftp::serve_connection`]). Reloads the config on SIGHUP and when its
//! files change, and stops gracefully on Ctrl-C / SIGTERM (running sessions
//! get `server.shutdown_grace`, then `421`).
//!
//! - [`registry`]: the sites of one config version, and how a reload builds the next.
//! - [`limits`]: connection counting.
//! - [`descriptors`]: the open file limit, and pacing `accept` when it is hit.
//! - [`watch`]: what triggers a reload.

pub mod descriptors;
pub mod limits;
pub mod registry;
pub mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::ftp::{Closing, Connection};
use crate::ops::Ops;
use crate::ops::admin::{AdminState, Readiness};
use crate::ops::metrics::{RefusedReason, ReloadResult};
use crate::ops::proxy::Origin;
use crate::ops::transfer_log;
use crate::plugin::{PluginRuntime, RuntimeOptions};
use limits::ConnectionLimits;
use registry::Registry;

/// Everything `serve` needs.
pub struct ServeOptions {
    /// The config file or directory (reloaded from here).
    pub config_path: PathBuf,
    /// Replaces the config's `server.listen` when not empty.
    pub listen_override: Vec<SocketAddr>,
}

/// Which site a listener serves: the default one (with HOST / user@site
/// selection), or one site only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ListenerKind {
    General,
    Dedicated(String),
}

/// One listener the config asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ListenerKey {
    addr: SocketAddr,
    kind: ListenerKind,
    /// TLS from the first byte (implicit FTPS).
    implicit_tls: bool,
}

/// The running server's state that outlives one config version.
struct Server {
    runtime: PluginRuntime,
    config_path: PathBuf,
    listen_override: Vec<SocketAddr>,
    registry: Arc<ArcSwap<Registry>>,
    config: Config,
    limits: Arc<ConnectionLimits>,
    listeners: HashMap<ListenerKey, JoinHandle<()>>,
    /// Fired at the end of the shutdown grace period.
    closing: tokio::sync::watch::Sender<bool>,
    /// What sessions watch for `closing` (handed to each connection).
    closing_signal: Closing,
    ops: Arc<Ops>,
    readiness: Arc<Readiness>,
    /// The admin HTTP listener and the address it serves.
    admin: Option<(SocketAddr, JoinHandle<()>)>,
    /// The open file limit in force (after raising it at start).
    file_limit: Option<u64>,
}

/// Longest wait for a PROXY header after accept.
const PROXY_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The transfer logs `config` asks for: the server's and the sites' own.
fn transfer_log_settings(config: &Config) -> transfer_log::Settings {
    transfer_log::Settings {
        server: config.transfer_log.clone(),
        sites: config
            .sites
            .iter()
            .filter_map(|site| Some((site.name.clone(), site.transfer_log.clone()?)))
            .collect(),
    }
}

/// (Re)opens the transfer logs for `config`; an error names the file, line
/// and key of the log that cannot be opened.
fn configure_transfer_log(log: &transfer_log::TransferLog, config: &Config) -> anyhow::Result<()> {
    log.configure(&transfer_log_settings(config)).map_err(|e| {
        let (file, line, key) = match e
            .site
            .as_deref()
            .and_then(|name| config.sites.iter().find(|site| site.name == name))
        {
            Some(site) => (
                site.file.as_path(),
                site.transfer_log_line,
                site.transfer_log_key.as_str(),
            ),
            None => (
                config.file.as_path(),
                config.transfer_log_line,
                "server.transfer_log",
            ),
        };
        let place = if line > 0 {
            format!("{}:{line}", file.display())
        } else {
            file.display().to_string()
        };
        anyhow::anyhow!("{place}: key `{key}`: {e}")
    })
}

/// Builds the operations services for `config`; fails naming the key when
/// a transfer log cannot be opened.
fn start_ops(config: &Config) -> anyhow::Result<Arc<Ops>> {
    let transfer_log = transfer_log::TransferLog::disabled();
    configure_transfer_log(&transfer_log, config)?;
    Ok(Arc::new(Ops {
        metrics: Arc::new(crate::ops::metrics::Metrics::new()),
        defender: crate::ops::ban::Defender::new(config.ban.clone()),
        transfer_log,
        rates: Default::default(),
    }))
}

fn warn_if_too_few_files(max_connections: usize, file_limit: Option<u64>) {
    if let Some(warning) =
        file_limit.and_then(|limit| descriptors::capacity_warning(max_connections, limit))
    {
        warn!("{warning}");
    }
}

/// After the grace period, how long sessions get to send their `421` and close.
const SESSION_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let config = crate::config::load(&options.config_path)?;
    let file_limit = descriptors::raise_limit();
    warn_if_too_few_files(config.max_connections, file_limit);
    let runtime = PluginRuntime::new(RuntimeOptions {
        cache_dir: config.cache_dir.clone(),
    })?;
    let ops = start_ops(&config)?;
    crate::ops::metrics::observe_plugins(ops.metrics.clone());
    let (registry, _) = registry::build(&runtime, &config, None, &ops.metrics).await?;
    info!(
        sites = registry.len(),
        "configuration loaded from {}",
        options.config_path.display()
    );
    let (closing, closing_signal) = Closing::new();
    let mut server = Server {
        closing,
        closing_signal,
        runtime,
        limits: ConnectionLimits::new(config.max_connections, config.max_connections_per_ip),
        registry: Arc::new(ArcSwap::from_pointee(registry)),
        config,
        config_path: options.config_path,
        listen_override: options.listen_override,
        listeners: HashMap::new(),
        ops,
        readiness: Arc::new(Readiness::default()),
        admin: None,
        file_limit,
    };
    // Install the SIGHUP handler before anyone can see a listener: a SIGHUP
    // that arrives earlier would otherwise kill the process (its default action).
    let mut triggers = watch::reload_triggers(&server.config_path, &server.config)?;
    server.sync_admin().await?;
    server.sync_listeners().await?;
    if server.listeners.is_empty() {
        anyhow::bail!(
            "{}: nothing to listen on: set server.listen or pass --listen",
            server.config_path.display()
        );
    }
    server.readiness.set_ready();

    loop {
        tokio::select! {
            _ = watch::shutdown_signal() => break,
            Some(why) = triggers.next() => {
                server.reload(why).await;
                // The new config may name other plugin files: watch those.
                triggers = watch::reload_triggers(&server.config_path, &server.config)?;
            }
        }
    }
    server.shut_down().await;
    Ok(())
}

impl Server {
    /// Stops accepting, lets running sessions and transfers go on for the
    /// grace period (a second signal cuts it short), then closes the rest with
    /// `421`.
    async fn shut_down(&mut self) {
        // Load balancers stop sending new clients from here on.
        self.readiness.set_draining();
        for (_, task) in self.listeners.drain() {
            task.abort();
            let _ = task.await;
        }
        let grace = self.config.shutdown_grace;
        let open = self.limits.open();
        if open > 0 {
            info!(
                "shutting down: not accepting; {open} sessions have {} to finish",
                humantime::format_duration(grace)
            );
            tokio::select! {
                _ = self.wait_for_sessions(grace) => {}
                _ = watch::shutdown_signal() => info!("second signal: not waiting any longer"),
            }
        }
        let open = self.limits.open();
        if open > 0 {
            info!("closing {open} sessions with 421");
            let _ = self.closing.send(true);
            // Each session writes its 421 and closes at its next step; a
            // session inside a plugin call waits for that call's deadline.
            self.wait_for_sessions(SESSION_CLOSE_WAIT).await;
        }
        self.ops.transfer_log.flush();
        info!("shut down");
    }

    /// Waits until no session is left, at most `limit`.
    async fn wait_for_sessions(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        // Polling is enough: this runs once, at shutdown.
        while self.limits.open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Loads the config again; on any error the running version stays.
    async fn reload(&mut self, why: &str) {
        let started = Instant::now();
        let config = match crate::config::load(&self.config_path) {
            Ok(config) => config,
            Err(e) => {
                error!("reload ({why}) failed, keeping the running configuration: {e}");
                self.ops.metrics.reload(ReloadResult::failed);
                return;
            }
        };
        let current = self.registry.load_full();
        let built =
            registry::build(&self.runtime, &config, Some(&current), &self.ops.metrics).await;
        let (registry, changes) = match built {
            Ok(built) => built,
            Err(e) => {
                error!("reload ({why}) failed, keeping the running configuration: {e:#}");
                self.ops.metrics.reload(ReloadResult::failed);
                return;
            }
        };
        if let Err(e) = configure_transfer_log(&self.ops.transfer_log, &config) {
            error!("reload ({why}) failed, keeping the running configuration: {e}");
            self.ops.metrics.reload(ReloadResult::failed);
            return;
        }
        self.ops.defender.set_settings(config.ban.clone());
        self.ops.metrics.reload(ReloadResult::ok);
        if config.cache_dir != self.config.cache_dir {
            warn!("server.cache_dir changed: it takes effect at the next start");
        }
        if config.max_connections != self.config.max_connections {
            warn_if_too_few_files(config.max_connections, self.file_limit);
        }
        self.limits
            .set_maxima(config.max_connections, config.max_connections_per_ip);
        self.registry.store(Arc::new(registry));
        self.config = config;
        if let Err(e) = self.sync_listeners().await {
            error!("reload ({why}): {e:#}");
        }
        if let Err(e) = self.sync_admin().await {
            error!("reload ({why}): {e:#}");
        }
        let elapsed = started.elapsed();
        if changes.is_empty() {
            info!(
                "reload ({why}): no site changed ({} ms)",
                elapsed.as_millis()
            );
        } else {
            info!(
                "reload ({why}): added {:?}, changed {:?}, removed {:?} in {} ms",
                changes.added,
                changes.changed,
                changes.removed,
                elapsed.as_millis()
            );
        }
    }

    /// Opens, moves or closes the admin HTTP listener to match the config.
    async fn sync_admin(&mut self) -> anyhow::Result<()> {
        let wanted = self.config.admin_listen;
        if self.admin.as_ref().map(|(addr, _)| *addr) == wanted {
            return Ok(());
        }
        if let Some((addr, task)) = self.admin.take() {
            task.abort();
            let _ = task.await;
            info!("admin HTTP on {addr} closed");
        }
        let Some(addr) = wanted else {
            return Ok(());
        };
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "{}: key `server.admin.listen`: cannot listen on {addr}",
                self.config.file.display()
            )
        })?;
        let local = listener.local_addr()?;
        // Not "listening on": that phrase announces FTP listeners.
        info!("admin HTTP on http://{local} (/metrics, /health, /ready)");
        let state = Arc::new(AdminState {
            ops: self.ops.clone(),
            readiness: self.readiness.clone(),
        });
        let task = tokio::spawn(crate::ops::admin::serve(listener, state));
        self.admin = Some((addr, task));
        Ok(())
    }

    /// Opens the listeners the current config wants and closes the others.
    /// A listener that cannot be opened is reported; the rest still open.
    async fn sync_listeners(&mut self) -> anyhow::Result<()> {
        let general = if self.listen_override.is_empty() {
            self.config.listen.clone()
        } else {
            self.listen_override.clone()
        };
        let key = |addr, kind, implicit_tls| ListenerKey {
            addr,
            kind,
            implicit_tls,
        };
        let mut wanted: Vec<ListenerKey> = general
            .into_iter()
            .map(|a| key(a, ListenerKind::General, false))
            .collect();
        wanted.extend(
            self.config
                .implicit_tls_listen
                .iter()
                .map(|a| key(*a, ListenerKind::General, true)),
        );
        wanted.extend(
            self.registry
                .load()
                .dedicated_listeners()
                .into_iter()
                .map(|(a, s, tls)| key(a, ListenerKind::Dedicated(s), tls)),
        );

        let stale: Vec<_> = self
            .listeners
            .keys()
            .filter(|key| !wanted.contains(key))
            .cloned()
            .collect();
        for key in stale {
            if let Some(task) = self.listeners.remove(&key) {
                task.abort();
                // Wait until the socket is really closed so the address can be reused.
                let _ = task.await;
                info!("stopped listening on {} ({:?})", key.addr, key.kind);
            }
        }

        let mut failures = Vec::new();
        for key in wanted {
            if self.listeners.contains_key(&key) {
                continue;
            }
            match TcpListener::bind(key.addr).await {
                Ok(listener) => {
                    let local = listener.local_addr()?;
                    let tls = if key.implicit_tls {
                        ", implicit TLS"
                    } else {
                        ""
                    };
                    match &key.kind {
                        ListenerKind::General => info!("listening on {local}{tls}"),
                        ListenerKind::Dedicated(site) => {
                            info!("listening on {local} (site {site}{tls})")
                        }
                    }
                    let task = tokio::spawn(accept_loop(
                        listener,
                        key.clone(),
                        self.registry.clone(),
                        self.limits.clone(),
                        self.closing_signal.clone(),
                        self.ops.clone(),
                    ));
                    self.listeners.insert(key, task);
                }
                Err(e) => failures.push(format!("cannot listen on {}: {e}", key.addr)),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!(failures.join("; "))).context("some listeners did not open")
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    key: ListenerKey,
    registry: Arc<ArcSwap<Registry>>,
    limits: Arc<ConnectionLimits>,
    closing: Closing,
    ops: Arc<Ops>,
) {
    let mut backoff = descriptors::AcceptBackoff::default();
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(pair) => {
                backoff.succeeded();
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: pause (the pending
                // connection waits in the backlog), keep serving, and say so
                // once per interval rather than once per try.
                let after = backoff.failed(&e, Instant::now());
                if let Some(line) = after.log {
                    warn!("{line}");
                }
                tokio::time::sleep(after.pause).await;
                continue;
            }
        };
        // Each connection takes the registry version current at its start.
        let registry = registry.load_full();
        let (site, proxy) = match &key.kind {
            ListenerKind::General => (registry.default_site(), registry.proxy.clone()),
            ListenerKind::Dedicated(name) => (registry.site(name), registry.site_proxy(name)),
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let admission = Admission {
            local,
            implicit_tls: key.implicit_tls,
            server_tls: registry.tls.clone(),
            site,
            registry,
            limits: limits.clone(),
            ops: ops.clone(),
            closing: closing.clone(),
        };
        if !proxy.enabled {
            if let Some(connection) = admission.admit(stream, peer) {
                // Sessions are not owned by the listener: closing a listener
                // on reload must not end the sessions it accepted.
                tokio::spawn(connection.serve());
            }
            continue;
        }
        // The header comes after accept: wait for it in the connection's own
        // task, never in the accept loop.
        let ops = ops.clone();
        tokio::spawn(async move {
            let client =
                match crate::ops::proxy::accept(&mut stream, peer, &proxy, PROXY_HEADER_TIMEOUT)
                    .await
                {
                    Ok(Origin::Client { source, .. }) => source,
                    Ok(Origin::Proxy) => peer,
                    Err(refused) => {
                        info!(%peer, reason = ?refused.reason, "refused: {}", refused.detail);
                        ops.metrics.proxy_failure(refused.reason);
                        ops.metrics.refused(RefusedReason::proxy);
                        return;
                    }
                };
            if let Some(connection) = admission.admit(stream, client) {
                connection.serve().await;
            }
        });
    }
}

/// What deciding on one accepted connection needs.
struct Admission {
    closing: Closing,
    local: SocketAddr,
    /// TLS from the first byte (implicit FTPS listener).
    implicit_tls: bool,
    /// `[server.tls]`, for sessions without a site yet.
    server_tls: Option<Arc<crate::tls::SiteTls>>,
    site: Option<Arc<crate::site::Site>>,
    registry: Arc<Registry>,
    limits: Arc<ConnectionLimits>,
    ops: Arc<Ops>,
}

/// An admitted connection and the places it holds.
struct Admitted {
    connection: Connection,
    _slot: limits::Slot,
    _open: OpenConnection,
}

/// Holds `wasmftpd_connections_open` up by one.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Admission {
    /// Banned addresses and connections over the limits get `421` and are
    /// closed, before any plugin runs. `client` is the peer, or the address
    /// a trusted proxy named.
    fn admit(self, stream: TcpStream, client: SocketAddr) -> Option<Admitted> {
        if let Some(left) = self.ops.defender.banned(client.ip()) {
            self.ops.metrics.refused(RefusedReason::banned);
            let why = format!("banned for another {} s", left.as_secs().max(1));
            tokio::spawn(refuse(stream, client, why));
            return None;
        }
        let (slot, login_watch) = match self.limits.acquire(client.ip()) {
            Ok(place) => place,
            Err(why) => {
                self.ops.metrics.refused(RefusedReason::too_many);
                tokio::spawn(refuse(stream, client, why.to_string()));
                return None;
            }
        };
        self.ops.metrics.connections_open.inc();
        let open = OpenConnection(self.ops.metrics.connections_open.clone());
        Some(Admitted {
            connection: Connection {
                stream,
                peer: client,
                local: self.local,
                site: self.site,
                settings: self.registry.settings.clone(),
                sites: self.registry,
                ops: self.ops,
                closing: self.closing,
                server_tls: self.server_tls,
                implicit_tls: self.implicit_tls,
                login_watch,
            },
            _slot: slot,
            _open: open,
        })
    }
}

impl Admitted {
    async fn serve(self) {
        let Admitted {
            connection,
            _slot,
            _open,
        } = self;
        crate::ftp::serve_connection(connection).await;
    }
}

async fn refuse(mut stream: TcpStream, client: SocketAddr, why: String) {
    info!(peer = %client, "refused: {why}");
    let _ = stream.write_all(format!("421 {why}\r\n").as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Validates a config and compiles its plugins (`wasmftpd check`).
pub async fn check(config: &Config) -> anyhow::Result<usize> {
    let runtime = PluginRuntime::new(RuntimeOptions {
        cache_dir: config.cache_dir.clone(),
    })?;
    let metrics = crate::ops::metrics::Metrics::new();
    let (registry, _) = registry::build(&runtime, config, None, &metrics).await?;
    Ok(registry.len())
}
