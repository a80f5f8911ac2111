//! The server: builds sites from a [`Config`], opens the listeners, enforces the
//! connection limits and hands each accepted connection to the protocol
//! ([`crate::ftp::serve_connection`]). Stops cleanly on Ctrl-C / SIGTERM.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Config, SiteConfig};
use crate::ftp::{Connection, SessionSettings};
use crate::plugin::{PluginRuntime, RuntimeOptions};
use crate::site::{Site, SiteDirectory};

/// Everything `serve` needs: the config plus command-line overrides.
pub struct ServeOptions {
    pub config: Config,
    /// Replaces the config's `server.listen` when not empty.
    pub listen_override: Vec<SocketAddr>,
}

/// The sites of one configuration, ready to serve.
pub struct Registry {
    sites: HashMap<String, Arc<Site>>,
    default_site: Option<Arc<Site>>,
    /// Dedicated listener address → site name.
    dedicated: Vec<(SocketAddr, String)>,
}

impl Registry {
    pub fn site(&self, name: &str) -> Option<Arc<Site>> {
        self.sites.get(name).cloned()
    }
}

impl SiteDirectory for Registry {
    fn by_host(&self, name: &str) -> Option<Arc<Site>> {
        let name = name.trim_end_matches('.');
        self.sites
            .values()
            .find(|site| {
                site.name.eq_ignore_ascii_case(name)
                    || site.host_names.iter().any(|h| h.eq_ignore_ascii_case(name))
            })
            .cloned()
    }

    fn by_user_suffix(&self, name: &str) -> Option<Arc<Site>> {
        self.sites
            .get(name)
            .filter(|site| site.allow_user_at_site)
            .cloned()
    }
}

/// Compiles every site's plugins (on blocking threads: compiling is CPU work)
/// and builds the registry. Fails on the first site that cannot be built.
pub async fn build_registry(runtime: &PluginRuntime, config: &Config) -> anyhow::Result<Registry> {
    let mut sites = HashMap::new();
    let mut dedicated = Vec::new();
    for site_config in &config.sites {
        let site = build_site(runtime, config, site_config).await?;
        for addr in &site_config.listen {
            dedicated.push((*addr, site_config.name.clone()));
        }
        sites.insert(site_config.name.clone(), Arc::new(site));
    }
    let default_site = config.default_site.as_ref().and_then(|n| sites.get(n).cloned());
    Ok(Registry { sites, default_site, dedicated })
}

async fn build_site(runtime: &PluginRuntime, config: &Config, site: &SiteConfig) -> anyhow::Result<Site> {
    let context = |what: &str| {
        format!(
            "{}:{}: site `{}`: cannot load its {what} plugin",
            config.file.display(),
            site.line,
            site.name
        )
    };
    let (auth_rt, auth_spec) = (runtime.clone(), site.auth.clone());
    let auth = tokio::task::spawn_blocking(move || auth_rt.load_auth(auth_spec))
        .await?
        .with_context(|| context("auth"))?;
    let (storage_rt, storage_spec) = (runtime.clone(), site.storage.clone());
    let storage = tokio::task::spawn_blocking(move || storage_rt.load_storage(storage_spec))
        .await?
        .with_context(|| context("storage"))?;
    Ok(Site {
        name: site.name.clone(),
        host_names: site.host_names.clone(),
        allow_user_at_site: site.allow_user_at_site,
        banner: site.banner.clone(),
        auth,
        storage,
        passive_ports: site.passive_ports.clone(),
        max_connections: site.max_connections,
    })
}

/// Counts open connections, in total and per client address, and refuses
/// those over the limits.
struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    per_site: Mutex<HashMap<String, usize>>,
}

/// Holds one connection's place; dropping it gives the place back.
struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    site: Option<String>,
}

impl ConnectionLimits {
    fn acquire(self: &Arc<Self>, ip: IpAddr, site: Option<&Site>) -> Result<Slot, &'static str> {
        if self.total.fetch_add(1, Ordering::SeqCst) >= self.max_total {
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err("too many connections; try again later");
        }
        // From here on, the slot's Drop undoes what was counted.
        let mut slot = Slot { limits: self.clone(), ip, site: None };
        {
            let mut per_ip = lock(&self.per_ip);
            let count = per_ip.entry(ip).or_insert(0);
            *count += 1;
            if *count > self.max_per_ip {
                return Err("too many connections from your address");
            }
        }
        if let Some(site) = site {
            let mut per_site = lock(&self.per_site);
            let count = per_site.entry(site.name.clone()).or_insert(0);
            *count += 1;
            slot.site = Some(site.name.clone());
            if site.max_connections.is_some_and(|max| *count > max) {
                return Err("too many connections to this site");
            }
        }
        Ok(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::SeqCst);
        let mut per_ip = lock(&self.limits.per_ip);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        if let Some(site) = &self.site {
            let mut per_site = lock(&self.limits.per_site);
            if let Some(count) = per_site.get_mut(site) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

/// A poisoned lock only means another connection panicked mid-update of a
/// counter; the counts are still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let config = options.config;
    let runtime = PluginRuntime::new(RuntimeOptions { cache_dir: config.cache_dir.clone() })?;
    let registry = Arc::new(build_registry(&runtime, &config).await?);
    info!(sites = registry.sites.len(), "configuration loaded from {}", config.file.display());

    let limits = Arc::new(ConnectionLimits {
        max_total: config.max_connections,
        max_per_ip: config.max_connections_per_ip,
        total: AtomicUsize::new(0),
        per_ip: Mutex::new(HashMap::new()),
        per_site: Mutex::new(HashMap::new()),
    });
    let settings = Arc::new(config.session.clone());

    // General listeners serve the default site (or HOST/user@site selection);
    // dedicated ones always serve their site.
    let general = if options.listen_override.is_empty() {
        config.listen.clone()
    } else {
        options.listen_override.clone()
    };
    let mut plan: Vec<(SocketAddr, Option<String>)> = general.into_iter().map(|a| (a, None)).collect();
    plan.extend(registry.dedicated.iter().map(|(a, s)| (*a, Some(s.clone()))));
    if plan.is_empty() {
        anyhow::bail!(
            "{}: nothing to listen on: set server.listen or pass --listen",
            config.file.display()
        );
    }

    let mut listeners = JoinSet::new();
    for (addr, site) in plan {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        match &site {
            Some(name) => info!("listening on {local} (site {name})"),
            None => info!("listening on {local}"),
        }
        listeners.spawn(accept_loop(
            listener,
            site,
            registry.clone(),
            limits.clone(),
            settings.clone(),
        ));
    }

    shutdown_signal().await;
    info!("shutting down");
    listeners.shutdown().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    dedicated_site: Option<String>,
    registry: Arc<Registry>,
    limits: Arc<ConnectionLimits>,
    settings: Arc<SessionSettings>,
) {
    let mut sessions = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment, keep serving.
                warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Reap finished sessions so the set does not grow without bound.
        while sessions.try_join_next().is_some() {}
        let site = match &dedicated_site {
            Some(name) => registry.site(name),
            None => registry.default_site.clone(),
        };
        let slot = match limits.acquire(peer.ip(), site.as_deref()) {
            Ok(slot) => slot,
            Err(why) => {
                sessions.spawn(refuse(stream, why));
                continue;
            }
        };
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(_) => continue,
        };
        let connection = Connection {
            stream,
            peer,
            local,
            site,
            sites: registry.clone(),
            settings: settings.clone(),
        };
        sessions.spawn(async move {
            let _slot = slot;
            crate::ftp::serve_connection(connection).await;
        });
    }
}

async fn refuse(mut stream: TcpStream, why: &str) {
    info!(peer = ?stream.peer_addr().ok(), "refused: {why}");
    let _ = stream.write_all(format!("421 {why}\r\n").as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
