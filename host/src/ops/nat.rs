//! Which address a PASV reply advertises, for servers behind NAT:
//! `passive_address` (an IP address or a DNS name), and
//! `passive_address_overrides` per client network, so clients inside the NAT
//! are told the internal address and clients outside the public one. A name
//! is resolved at start and re-resolved every `passive_address_refresh`
//! (a dynamic-DNS address changes under a running server).

use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ipnet::IpNet;
use tracing::{info, warn};

/// A configured passive address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, resolved to its first IPv4 address (PASV is IPv4 only).
    Name(String),
}

impl Host {
    /// An IP address, else a name (checked to look like a host name).
    pub fn parse(text: &str) -> Result<Host, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let valid = !text.is_empty()
            && text.len() <= 253
            && text.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if valid {
            Ok(Host::Name(text.to_string()))
        } else {
            Err(format!("`{text}` is neither an IP address nor a host name"))
        }
    }
}

/// The passive-address settings of the server or of one site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassiveConfig {
    pub default: Option<Host>,
    /// Client network → address; the most specific network wins.
    pub overrides: Vec<(IpNet, Host)>,
    pub refresh: Duration,
}

impl PassiveConfig {
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.overrides.is_empty()
    }
}

/// One address, kept current when it is a name.
#[derive(Debug)]
struct Slot {
    host: Host,
    current: RwLock<Option<IpAddr>>,
}

impl Slot {
    fn get(&self) -> Option<IpAddr> {
        *self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn resolve(&self) {
        let Host::Name(name) = &self.host else {
            return;
        };
        let lookup = tokio::net::lookup_host((name.as_str(), 0));
        let found = match tokio::time::timeout(Duration::from_secs(10), lookup).await {
            Ok(Ok(addrs)) => addrs
                .map(|a| a.ip())
                .find(IpAddr::is_ipv4)
                .ok_or_else(|| "no IPv4 address".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        match found {
            Ok(ip) => {
                let mut current = self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if *current != Some(ip) {
                    info!("passive_address {name} resolves to {ip}");
                    *current = Some(ip);
                }
            }
            // Keep the last good address.
            Err(e) => warn!("cannot resolve passive_address {name}: {e}"),
        }
    }
}

/// Passive addresses ready to answer PASV.
#[derive(Debug, Default)]
pub struct PassiveAddresses {
    default: Option<Slot>,
    overrides: Vec<(IpNet, Slot)>,
}

fn slot(host: &Host) -> Slot {
    let current = match host {
        Host::Ip(ip) => Some(*ip),
        Host::Name(_) => None,
    };
    Slot {
        host: host.clone(),
        current: RwLock::new(current),
    }
}

impl PassiveAddresses {
    /// One fixed address for everybody.
    pub fn fixed(ip: IpAddr) -> Arc<PassiveAddresses> {
        Arc::new(PassiveAddresses {
            default: Some(slot(&Host::Ip(ip))),
            overrides: Vec::new(),
        })
    }

    /// Resolves the names in `config` once, then every `config.refresh` for
    /// as long as the result is in use.
    pub async fn start(config: &PassiveConfig) -> Arc<PassiveAddresses> {
        let mut overrides: Vec<(IpNet, Slot)> = config
            .overrides
            .iter()
            .map(|(net, host)| (*net, slot(host)))
            .collect();
        // Most specific network first.
        overrides.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        let addresses = Arc::new(PassiveAddresses {
            default: config.default.as_ref().map(slot),
            overrides,
        });
        if addresses.slots().any(|s| matches!(s.host, Host::Name(_))) {
            addresses.resolve_all().await;
            let refresh = config.refresh.max(Duration::from_secs(1));
            tokio::spawn(keep_resolving(Arc::downgrade(&addresses), refresh));
        }
        addresses
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.default
            .iter()
            .chain(self.overrides.iter().map(|(_, slot)| slot))
    }

    async fn resolve_all(&self) {
        for slot in self.slots() {
            slot.resolve().await;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.overrides.is_empty()
    }

    /// The address to advertise to `client`, if one is configured (and, for
    /// a name, resolved).
    pub fn for_client(&self, client: IpAddr) -> Option<IpAddr> {
        let client = client.to_canonical();
        match self.overrides.iter().find(|(net, _)| net.contains(&client)) {
            Some((_, slot)) => slot.get(),
            None => self.default.as_ref().and_then(Slot::get),
        }
    }
}

async fn keep_resolving(addresses: Weak<PassiveAddresses>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(addresses) = addresses.upgrade() else {
            return;
        };
        addresses.resolve_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn overrides_by_client_network_most_specific_first() {
        let config = PassiveConfig {
            default: Some(Host::Ip(ip("203.0.113.5"))),
            overrides: vec![
                ("10.0.0.0/8".parse().unwrap(), Host::Ip(ip("10.1.2.3"))),
                ("10.9.0.0/16".parse().unwrap(), Host::Ip(ip("10.9.0.1"))),
            ],
            refresh: Duration::from_secs(60),
        };
        let nat = PassiveAddresses::start(&config).await;
        assert_eq!(nat.for_client(ip("198.51.100.1")), Some(ip("203.0.113.5")));
        assert_eq!(nat.for_client(ip("10.4.4.4")), Some(ip("10.1.2.3")));
        assert_eq!(nat.for_client(ip("::ffff:10.4.4.4")), Some(ip("10.1.2.3")));
        assert_eq!(nat.for_client(ip("10.9.8.7")), Some(ip("10.9.0.1")));
        let empty = PassiveAddresses::start(&PassiveConfig::default()).await;
        assert_eq!(empty.for_client(ip("10.4.4.4")), None);
    }

    #[tokio::test]
    async fn names_are_resolved() {
        let config = PassiveConfig {
            default: Some(Host::parse("localhost").unwrap()),
            overrides: vec![],
            refresh: Duration::from_secs(60),
        };
        let nat = PassiveAddresses::start(&config).await;
        assert_eq!(nat.for_client(ip("192.0.2.1")), Some(ip("127.0.0.1")));
    }

    #[test]
    fn host_parsing() {
        assert_eq!(Host::parse("10.0.0.1"), Ok(Host::Ip(ip("10.0.0.1"))));
        assert_eq!(
            Host::parse("ftp.example.com"),
            Ok(Host::Name("ftp.example.com".into()))
        );
        assert!(Host::parse("not a name").is_err());
        assert!(Host::parse("").is_err());
        assert!(Host::parse("-bad.example").is_err());
    }
}
