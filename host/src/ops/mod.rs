//! Operations: what people who run the server for others need around the
//! protocol. Each part is plain Rust that neither speaks FTP nor sees wasmtime;
//! the server and the protocol call into it.
//!
//! - [`metrics`]: the Prometheus registry and every metric the server exports.
//! - [`admin`]: the admin HTTP listener (`/metrics`, `/health`, `/ready`).
//! - [`ban`]: the defender: scores per client address, bans, per-user lockout.
//! - [`proxy`]: PROXY protocol v1/v2 headers read at accept.
//! - [`transfer_log`]: one line per transfer or file operation (JSON or xferlog).
//! - [`rate`]: token buckets for bandwidth limits.
//! - [`nat`]: which passive address a client is told, per client network.
//!
//! [`Ops`] bundles the parts that live as long as the server (not one config
//! version); a reload updates their settings in place.

pub mod admin;
pub mod ban;
pub mod metrics;
pub mod nat;
pub mod proxy;
pub mod rate;
pub mod transfer_log;

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// The server-wide operations services, shared by the listeners and sessions.
pub struct Ops {
    pub metrics: Arc<metrics::Metrics>,
    pub defender: ban::Defender,
    pub transfer_log: transfer_log::TransferLog,
    pub rates: rate::UserRates,
}

impl Ops {
    /// Services with nothing configured: metrics counted but not served, no
    /// transfer log, the defender off. For tests and tools.
    pub fn detached() -> Arc<Ops> {
        Arc::new(Ops {
            metrics: Arc::new(metrics::Metrics::new()),
            defender: ban::Defender::new(ban::BanSettings::disabled()),
            transfer_log: transfer_log::TransferLog::disabled(),
            rates: rate::UserRates::default(),
        })
    }
}

/// A list of networks (`trusted_proxies`, the ban allow-list). IPv4 clients
/// seen through an IPv6 socket (`::ffff:a.b.c.d`) match IPv4 networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetList(Vec<IpNet>);

impl NetList {
    pub fn new(nets: Vec<IpNet>) -> Self {
        NetList(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_list_matches_mapped_v4() {
        let list = NetList::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(list.contains("10.1.2.3".parse().unwrap()));
        assert!(list.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(list.contains("fd12::1".parse().unwrap()));
        assert!(!list.contains("11.0.0.1".parse().unwrap()));
        assert!(!NetList::default().contains("10.0.0.1".parse().unwrap()));
    }
}
