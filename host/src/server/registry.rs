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
use crate::ftp::SessionSettings;
use crate::ops::metrics::Metrics;
use crate::ops::nat::PassiveAddresses;
use crate::ops::proxy::ProxySettings;
use crate::plugin::{PluginRuntime, PluginSource, PluginSpec};
use crate::site::{SessionCount, Site, SiteDirectory, SiteOps};

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

    /// Dedicated listener addresses and their sites.
    pub fn dedicated_listeners(&self) -> Vec<(SocketAddr, String)> {
        let mut out: Vec<(SocketAddr, String)> = self
            .entries
            .values()
            .flat_map(|e| e.config.listen.iter().map(|a| (*a, e.config.name.clone())))
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
    for site_config in &config.sites {
        let plugin_digest = digest_plugins(site_config)?;
        let old = previous.and_then(|p| p.entries.get(&site_config.name));
        let site = match old {
            Some(old)
                if old.config.configures_same(site_config)
                    && old.plugin_digest == plugin_digest =>
            {
                old.site.clone()
            }
            Some(old) => {
                changes.changed.push(site_config.name.clone());
                // The new version goes on counting the old one's sessions, so
                // an edit never lets a site exceed its max_connections.
                let sessions = old.site.sessions.clone();
                Arc::new(build_site(runtime, site_config, sessions, metrics).await?)
            }
            None => {
                changes.added.push(site_config.name.clone());
                Arc::new(build_site(runtime, site_config, Default::default(), metrics).await?)
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
    let mut settings = config.session.clone();
    settings.passive = PassiveAddresses::start(&config.passive).await;
    let registry = Registry {
        entries,
        default_site,
        settings: Arc::new(settings),
        proxy: config.proxy.clone(),
    };
    Ok((registry, changes))
}

fn digest_plugins(site: &SiteConfig) -> anyhow::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    for spec in [&site.auth, &site.storage] {
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
) -> anyhow::Result<Site> {
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
    })
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
