//! FTP protocol (PI and DTP). Stub until the protocol engine lands.
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub data_timeout: Duration,
    pub passive_ports: RangeInclusive<u16>,
    pub passive_address: Option<IpAddr>,
    pub allow_foreign_data: bool,
    pub max_line_length: usize,
    pub login_failure_delay: Duration,
    pub max_login_failures: u32,
}
impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_timeout: Duration::from_secs(600),
            data_timeout: Duration::from_secs(10),
            passive_ports: 49152..=65534,
            passive_address: None,
            allow_foreign_data: false,
            max_line_length: 16384,
            login_failure_delay: Duration::from_secs(1),
            max_login_failures: 3,
        }
    }
}
pub struct Connection {
    pub stream: tokio::net::TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub site: Option<Arc<crate::site::Site>>,
    pub sites: Arc<dyn crate::site::SiteDirectory>,
    pub settings: Arc<SessionSettings>,
}
pub async fn serve_connection(_conn: Connection) {}
