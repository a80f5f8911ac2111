//! A virtual site as the protocol sees it: a name, a banner, its two backends and
//! its limits. Built from the config by `crate::server`; the protocol takes an
//! `Arc<Site>` once per connection and keeps it, so a reload never disturbs a
//! running session.

use std::ops::RangeInclusive;
use std::sync::Arc;

use crate::backend::{Authenticator, StorageProvider};

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
    /// Most concurrent sessions on this site (`421` beyond).
    pub max_connections: Option<usize>,
}

/// Finds sites by `HOST` name or `user@site` suffix. Implemented by the server's
/// site registry; the protocol asks it at most once per connection (or REIN).
pub trait SiteDirectory: Send + Sync {
    /// The site a `HOST name` command selects, if any.
    fn by_host(&self, name: &str) -> Option<Arc<Site>>;
    /// The site a `USER name@site` selects, if it allows that.
    fn by_user_suffix(&self, site: &str) -> Option<Arc<Site>>;
}
