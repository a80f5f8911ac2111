//! A virtual site as the protocol sees it: a name, a banner, its backends, its
//! event handlers and its limits. Built from the config by `crate::server`; the
//! protocol takes an `Arc<Site>` once per connection and keeps it, so a reload
//! never disturbs a running session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::backend::{Authenticator, Event, EventKind, StorageProvider};
use crate::events::EventBus;
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
    /// Where the site's events go (nowhere when it has no event handlers).
    pub events: EventBus,
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

/// How many sessions are logged in to a site, in all and per account (for
/// accounts' `max_sessions`).
#[derive(Debug, Default)]
pub struct SessionCount {
    total: AtomicUsize,
    users: Mutex<HashMap<String, u32>>,
}

impl SessionCount {
    pub fn get(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Sessions of `user` logged in now.
    pub fn of_user(&self, user: &str) -> u32 {
        self.users().get(user).copied().unwrap_or(0)
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // The map stays consistent even if a holder panicked.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A logged-in session's place on its site; dropping it gives the place back
/// (and, once [`SiteTicket::claim_user`] succeeded, its account's place, and
/// reports the logout).
pub struct SiteTicket {
    site: Arc<Site>,
    /// Holds `wasmftpd_sessions_open` up once the login succeeded.
    open: Option<crate::ops::metrics::OpenSession>,
    /// The account counted for `max_sessions`, and where it logged in from.
    user: Option<(String, IpAddr)>,
}

impl Site {
    /// Takes a place for one logged-in session, or `None` when the site is at
    /// its `max_connections`. Sessions of older versions of the site count too.
    pub fn enter(self: &Arc<Self>) -> Option<SiteTicket> {
        let count = &self.sessions.total;
        let previous = count.fetch_add(1, Ordering::SeqCst);
        if self.max_connections.is_some_and(|max| previous >= max) {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(SiteTicket {
            site: self.clone(),
            open: None,
            user: None,
        })
    }
}

impl SiteTicket {
    /// The login succeeded: count the session as open (metrics).
    pub fn logged_in(&mut self) {
        if self.open.is_none() {
            self.open = Some(self.site.ops.metrics.session_opened());
        }
    }

    /// Counts this session for `user`, unless the account already has
    /// `max_sessions` logged in on this site (then `false`).
    pub fn claim_user(&mut self, user: &str, client_ip: IpAddr, max_sessions: Option<u32>) -> bool {
        let mut users = self.site.sessions.users();
        let count = users.entry(user.to_string()).or_insert(0);
        if max_sessions.is_some_and(|max| *count >= max) {
            if *count == 0 {
                users.remove(user);
            }
            return false;
        }
        *count += 1;
        self.user = Some((user.to_string(), client_ip));
        true
    }
}

impl Drop for SiteTicket {
    fn drop(&mut self) {
        self.site.sessions.total.fetch_sub(1, Ordering::SeqCst);
        let Some((user, client_ip)) = self.user.take() else {
            return;
        };
        {
            let mut users = self.site.sessions.users();
            if let Some(count) = users.get_mut(&user) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    users.remove(&user);
                }
            }
        }
        let site = &self.site;
        site.events.emit(|| Event {
            kind: EventKind::Logout,
            site: site.name.clone(),
            user,
            client_ip,
            path: None,
            target: None,
            size: None,
            duration: None,
            ok: true,
            time: SystemTime::now(),
        });
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
            events: EventBus::default(),
        });
        let first = site.enter().expect("room for one");
        let _second = site.enter().expect("room for two");
        assert!(site.enter().is_none(), "a third is over the limit");
        assert_eq!(site.sessions.get(), 2);
        drop(first);
        assert_eq!(site.sessions.get(), 1);
        assert!(site.enter().is_some(), "a place was given back");
    }

    #[test]
    fn accounts_are_counted_up_to_their_max_sessions() {
        let site = Arc::new(Site {
            name: "s".into(),
            host_names: vec![],
            allow_user_at_site: false,
            banner: String::new(),
            auth: Arc::new(MemoryAuth::new()),
            storage: Arc::new(MemoryFs::new()),
            passive_ports: None,
            max_connections: None,
            sessions: Default::default(),
            ops: SiteOps::detached("s"),
            tls: None,
            events: EventBus::default(),
        });
        let ip = "127.0.0.1".parse().unwrap();
        let mut first = site.enter().unwrap();
        assert!(first.claim_user("ann", ip, Some(2)));
        let mut second = site.enter().unwrap();
        assert!(second.claim_user("ann", ip, Some(2)));
        let mut third = site.enter().unwrap();
        assert!(!third.claim_user("ann", ip, Some(2)), "ann is at her limit");
        assert!(third.claim_user("bob", ip, Some(2)), "bob is not");
        assert_eq!(site.sessions.of_user("ann"), 2);
        drop(first);
        assert_eq!(site.sessions.of_user("ann"), 1);
        let mut again = site.enter().unwrap();
        assert!(
            again.claim_user("ann", ip, Some(2)),
            "a place was given back"
        );
        drop((second, third, again));
        assert_eq!(
            site.sessions.of_user("ann") + site.sessions.of_user("bob"),
            0
        );
        assert_eq!(site.sessions.get(), 0);
    }
}
