//! A virtual site as the protocol sees it: a name, a banner, its two backends and
//! its limits. Built from the config by `crate::server`; the protocol takes an
//! `Arc<Site>` once per connection and keeps it, so a reload never disturbs a
//! running session.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::{Authenticator, StorageProvider};
use crate::tls::SiteTls;

pub struct Site {
    /// The site's name (config `name`), passed to the auth plugin and used in logs.
    pub name: String,
    /// Host names that select this site with the RFC 7151 `HOST` command.
    pub host_names: Vec<String>,
    /// Whether `USER name@site` may select this site.
    pub allow_user_at_site: bool,
    /// First line of the `220` greeting.
    pub banner: String,
    pub auth: Arc<dyn Authenticator>,
    pub storage: Arc<dyn StorageProvider>,
    /// Overrides the server's passive port range for this site.
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// Most concurrent logged-in sessions on this site (`421` beyond).
    pub max_connections: Option<usize>,
    /// Logged-in sessions on this site now, shared by every version of the
    /// site a reload built (sessions finish on the version they started on).
    pub sessions: Arc<SessionCount>,
    /// Metrics handles, bandwidth limits, NAT, PROXY settings.
    pub ops: SiteOps,
    /// The site's TLS (its own settings, else the server's); `None`: no FTPS.
    pub tls: Option<Arc<SiteTls>>,
}

/// A site's operations settings (docs/operations.md).
pub struct SiteOps {
    pub metrics: crate::ops::metrics::SiteMetrics,
    /// Bytes per second per user and direction, shared by the user's sessions.
    pub upload_rate: Option<u64>,
    pub download_rate: Option<u64>,
    /// The site's own passive addresses (NAT), if any.
    pub passive: Option<Arc<crate::ops::nat::PassiveAddresses>>,
}

impl SiteOps {
    /// No limits, no NAT, metrics nobody reads (tests).
    pub fn detached(site: &str) -> SiteOps {
        SiteOps {
            metrics: crate::ops::metrics::SiteMetrics::detached(site),
            upload_rate: None,
            download_rate: None,
            passive: None,
        }
    }
}

/// How many sessions are logged in to a site.
#[derive(Debug, Default)]
pub struct SessionCount(AtomicUsize);

impl SessionCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A logged-in session's place on its site; dropping it gives the place back.
pub struct SiteTicket {
    site: Arc<Site>,
    /// Holds `wasmftpd_sessions_open` up once the login succeeded.
    open: Option<crate::ops::metrics::OpenSession>,
}

impl SiteTicket {
    /// The login succeeded: count the session as open (metrics).
    pub fn logged_in(&mut self) {
        if self.open.is_none() {
            self.open = Some(self.site.ops.metrics.session_opened());
        }
    }
}

impl Site {
    /// Takes a place for one logged-in session, or `None` when the site is at
    /// its `max_connections`. Sessions of older versions of the site count too.
    pub fn enter(self: &Arc<Self>) -> Option<SiteTicket> {
        let count = &self.sessions.0;
        let previous = count.fetch_add(1, Ordering::SeqCst);
        if self.max_connections.is_some_and(|max| previous >= max) {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(SiteTicket {
            site: self.clone(),
            open: None,
        })
    }
}

impl Drop for SiteTicket {
    fn drop(&mut self) {
        self.site.sessions.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Finds sites by `HOST` name or `user@site` suffix. Implemented by the server's
/// site registry; the protocol asks it at most once per connection (or REIN).
pub trait SiteDirectory: Send + Sync {
    /// The site a `HOST name` command selects, if any.
    fn by_host(&self, name: &str) -> Option<Arc<Site>>;
    /// The site a `USER name@site` selects, if it allows that.
    fn by_user_suffix(&self, site: &str) -> Option<Arc<Site>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{MemoryAuth, MemoryFs};

    #[test]
    fn enter_counts_sessions_up_to_the_limit() {
        let site = Arc::new(Site {
            name: "s".into(),
            host_names: vec![],
            allow_user_at_site: false,
            banner: String::new(),
            auth: Arc::new(MemoryAuth::new()),
            storage: Arc::new(MemoryFs::new()),
            passive_ports: None,
            max_connections: Some(2),
            sessions: Default::default(),
            ops: SiteOps::detached("s"),
            tls: None,
        });
        let first = site.enter().expect("room for one");
        let _second = site.enter().expect("room for two");
        assert!(site.enter().is_none(), "a third is over the limit");
        assert_eq!(site.sessions.get(), 2);
        drop(first);
        assert_eq!(site.sessions.get(), 1);
        assert!(site.enter().is_some(), "a place was given back");
    }
}
