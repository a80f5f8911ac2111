//! The site registry: every site of one configuration version, built and ready
//! to serve. A reload builds a new registry beside the running one (reusing the
//! sites that did not change) and the server swaps it in atomically; sessions
//! keep the `Arc<Site>` they started with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::config::{Config, SiteConfig};
use crate::events::{EventBus, HandlerSpec};
use crate::ftp::SessionSettings;
use crate::ops::metrics::Metrics;
use crate::ops::nat::PassiveAddresses;
use crate::ops::proxy::ProxySettings;
use crate::plugin::{PluginRuntime, PluginSource, PluginSpec};
use crate::site::{SessionCount, Site, SiteDirectory, SiteOps};
use crate::tls::{self, LoadedCertificate, SiteTls};

/// One built site and what it was built from, so a reload can tell whether it changed.
struct Entry {
    config: SiteConfig,
    /// Digest of the plugin files' bytes: replacing a `.wasm` changes the site.
    plugin_digest: [u8; 32],
    site: Arc<Site>,
}

/// The sites of one configuration version.
pub struct Registry {
    entries: HashMap<String, Entry>,
    default_site: Option<Arc<Site>>,
    /// Session settings of this version.
    pub settings: Arc<SessionSettings>,
    /// PROXY protocol on the general listeners.
    pub proxy: ProxySettings,
    /// `[server.tls]`: for connections that have no site yet.
    pub tls: Option<Arc<SiteTls>>,
}

/// What a reload did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl Registry {
    pub fn site(&self, name: &str) -> Option<Arc<Site>> {
        self.entries.get(name).map(|e| e.site.clone())
    }

    pub fn default_site(&self) -> Option<Arc<Site>> {
        self.default_site.clone()
    }

    /// PROXY protocol settings of a site's dedicated listeners.
    pub fn site_proxy(&self, name: &str) -> ProxySettings {
        self.entries
            .get(name)
            .map(|e| e.config.proxy.clone())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Dedicated listener addresses, their sites, and whether TLS starts with
    /// the first byte there (implicit FTPS).
    pub fn dedicated_listeners(&self) -> Vec<(SocketAddr, String, bool)> {
        let mut out: Vec<(SocketAddr, String, bool)> = self
            .entries
            .values()
            .flat_map(|e| {
                let plain = e.config.listen.iter().map(|a| (*a, false));
                let implicit = e.config.implicit_tls_listen.iter().map(|a| (*a, true));
                plain
                    .chain(implicit)
                    .map(|(a, tls)| (a, e.config.name.clone(), tls))
            })
            .collect();
        out.sort();
        out
    }
}

impl SiteDirectory for Registry {
    fn by_host(&self, name: &str) -> Option<Arc<Site>> {
        let name = name.trim_end_matches('.');
        self.entries
            .values()
            .find(|e| {
                e.site.name.eq_ignore_ascii_case(name)
                    || e.site
                        .host_names
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case(name))
            })
            .map(|e| e.site.clone())
    }

    fn by_user_suffix(&self, name: &str) -> Option<Arc<Site>> {
        self.entries
            .get(name)
            .filter(|e| e.site.allow_user_at_site)
            .map(|e| e.site.clone())
    }
}

/// Builds the registry for `config`. Sites whose config and plugin files are
/// unchanged from `previous` are reused as they are (no recompile); the others
/// are compiled (on blocking threads). Fails, changing nothing, on the first
/// site that cannot be built.
pub async fn build(
    runtime: &PluginRuntime,
    config: &Config,
    previous: Option<&Registry>,
    metrics: &Metrics,
) -> anyhow::Result<(Registry, Changes)> {
    let mut entries = HashMap::new();
    let mut changes = Changes::default();
    // Certificates are read again on every reload; sites (and the server)
    // whose TLS settings did not change get them only once everything else
    // was built, so a failed reload swaps nothing.
    let mut renewed: Vec<(String, Arc<SiteTls>, LoadedCertificate)> = Vec::new();
    let server_tls = match &config.tls {
        Some(settings) => {
            let certificate = tls::load_certificate(settings)?;
            match previous.and_then(|p| p.tls.as_ref()) {
                Some(old) if old.built_from(settings) => {
                    renewed.push(("[server.tls]".into(), old.clone(), certificate));
                    Some(old.clone())
                }
                _ => Some(Arc::new(SiteTls::new(settings, certificate)?)),
            }
        }
        None => None,
    };
    for site_config in &config.sites {
        let plugin_digest = digest_plugins(site_config)?;
        let certificate = match &site_config.tls {
            Some(settings) => Some(tls::load_certificate(settings)?),
            None => None,
        };
        let old = previous.and_then(|p| p.entries.get(&site_config.name));
        let site = match old {
            Some(old)
                if old.config.configures_same(site_config)
                    && old.plugin_digest == plugin_digest =>
            {
                if let (Some(tls), Some(certificate)) = (&old.site.tls, certificate) {
                    renewed.push((
                        format!("site {}", site_config.name),
                        tls.clone(),
                        certificate,
                    ));
                }
                old.site.clone()
            }
            Some(old) => {
                changes.changed.push(site_config.name.clone());
                // The new version goes on counting the old one's sessions, so
                // an edit never lets a site exceed its max_connections.
                let sessions = old.site.sessions.clone();
                Arc::new(build_site(runtime, site_config, sessions, metrics, certificate).await?)
            }
            None => {
                changes.added.push(site_config.name.clone());
                Arc::new(
                    build_site(
                        runtime,
                        site_config,
                        Default::default(),
                        metrics,
                        certificate,
                    )
                    .await?,
                )
            }
        };
        entries.insert(
            site_config.name.clone(),
            Entry {
                config: site_config.clone(),
                plugin_digest,
                site,
            },
        );
    }
    if let Some(previous) = previous {
        changes.removed = previous
            .entries
            .keys()
            .filter(|name| !entries.contains_key(*name))
            .cloned()
            .collect();
    }
    changes.added.sort();
    changes.changed.sort();
    changes.removed.sort();
    let default_site = config
        .default_site
        .as_ref()
        .and_then(|n| entries.get(n).map(|e| e.site.clone()));
    for (whose, tls, certificate) in renewed {
        if tls.replace_certificate(certificate) {
            tracing::info!(
                "{whose}: new certificate from {} served from now on",
                tls.certificate_file().display()
            );
        }
    }
    let mut settings = config.session.clone();
    settings.passive = PassiveAddresses::start(&config.passive).await;
    let registry = Registry {
        entries,
        default_site,
        settings: Arc::new(settings),
        proxy: config.proxy.clone(),
        tls: server_tls,
    };
    Ok((registry, changes))
}

fn digest_plugins(site: &SiteConfig) -> anyhow::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let handlers = site.events.iter().map(|e| &e.plugin);
    for spec in [&site.auth, &site.storage].into_iter().chain(handlers) {
        if let PluginSource::File(path) = &spec.source {
            let bytes = std::fs::read(path).with_context(|| {
                format!(
                    "{}:{}: site `{}`: cannot read plugin {}",
                    site.file.display(),
                    site.line,
                    site.name,
                    path.display()
                )
            })?;
            hasher.update(Sha256::digest(&bytes));
        }
    }
    Ok(hasher.finalize().into())
}

async fn build_site(
    runtime: &PluginRuntime,
    site: &SiteConfig,
    sessions: Arc<SessionCount>,
    metrics: &Metrics,
    certificate: Option<LoadedCertificate>,
) -> anyhow::Result<Site> {
    let tls = match (&site.tls, certificate) {
        (Some(settings), Some(certificate)) => Some(Arc::new(SiteTls::new(settings, certificate)?)),
        _ => None,
    };
    let auth = load(
        runtime,
        site,
        "auth",
        site.auth.clone(),
        PluginRuntime::load_auth,
    )
    .await?;
    let storage = load(
        runtime,
        site,
        "storage",
        site.storage.clone(),
        PluginRuntime::load_storage,
    )
    .await?;
    let mut handlers = Vec::new();
    for (i, event) in site.events.iter().enumerate() {
        let handler = load(
            runtime,
            site,
            &format!("event (events[{i}])"),
            event.plugin.clone(),
            PluginRuntime::load_events,
        )
        .await?;
        handlers.push(HandlerSpec {
            name: plugin_label(&event.plugin.source),
            handler,
            queue: event.queue,
        });
    }
    Ok(Site {
        name: site.name.clone(),
        host_names: site.host_names.clone(),
        allow_user_at_site: site.allow_user_at_site,
        banner: site.banner.clone(),
        auth,
        storage,
        passive_ports: site.passive_ports.clone(),
        max_connections: site.max_connections,
        sessions,
        ops: SiteOps {
            metrics: metrics.site(&site.name),
            upload_rate: site.upload_rate,
            download_rate: site.download_rate,
            passive: if site.passive.is_empty() {
                None
            } else {
                Some(PassiveAddresses::start(&site.passive).await)
            },
        },
        tls,
        events: EventBus::start(&site.name, handlers),
    })
}

fn plugin_label(source: &PluginSource) -> String {
    match source {
        PluginSource::Builtin(name) => format!("builtin:{name}"),
        PluginSource::File(path) => path.display().to_string(),
    }
}

/// Compiles one plugin on a blocking thread (compiling is CPU work) and names
/// the site's file and line when it fails.
async fn load<T: Send + 'static>(
    runtime: &PluginRuntime,
    site: &SiteConfig,
    what: &str,
    spec: PluginSpec,
    loader: fn(&PluginRuntime, PluginSpec) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || loader(&runtime, spec))
        .await?
        .with_context(|| {
            format!(
                "{}:{}: site `{}`: cannot load its {what} plugin",
                site.file.display(),
                site.line,
                site.name
            )
        })
}
