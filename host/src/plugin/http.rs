//! Outbound HTTP for plugins: the `wasi:http` hooks every store gets.
//!
//! A plugin reaches exactly the origins its site section lists in
//! `allowed_hosts` (scheme, host, port; `*.domain` for any name under a
//! domain) and nothing else. We send requests ourselves rather than through
//! wasmtime-wasi-http's default sender, to keep these promises:
//!
//! - **Denied unless granted.** A request to any other origin fails inside the
//!   plugin with an error naming the origin, and the server logs it.
//! - **No DNS rebinding.** We resolve the name, check what it resolved to and
//!   connect to that very address. A name grant never reaches loopback,
//!   link-local (cloud metadata), unspecified, multicast or broadcast addresses
//!   (unless the name is `localhost`): a name whose DNS answer changes cannot
//!   point the plugin at the server's own host. Grant an IP literal to reach
//!   such an address on purpose.
//! - **Bounded.** Connecting, TLS and the response head must finish within the
//!   plugin's call deadline; after that each body frame must follow the previous
//!   within the plugin's `call_timeout`, and the body may not exceed the
//!   section's `max_response_size`.
//! - **HTTPS with the system's roots** (`rustls-native-certs`), HTTP/1.1.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::instance::CallDeadline;

/// One entry of `allowed_hosts`: an origin a plugin may send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    https: bool,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Ip(IpAddr),
    /// A host name, lower case, without a trailing dot.
    Name(String),
    /// `*.example.com`: any name ending in `.example.com` (not the domain
    /// itself), stored as `.example.com`.
    Subdomains(String),
}

impl AllowedHost {
    /// Parses `http://127.0.0.1:8333`, `https://auth.example.com` (port 443),
    /// `https://*.example.com`, `http://[::1]:8080`. Anything with a path,
    /// query, user or another scheme is refused, with the reason.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "`{text}` must start with http:// or https:// (like \"https://auth.example.com\")"
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(format!(
                "`{text}` must be only scheme, host and port (no path, query or user)"
            ));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) =
            split_host_port(rest).ok_or_else(|| format!("`{text}` has an invalid port"))?;
        let port = port.unwrap_or(default_port);
        let host = if let Some(ip) = parse_ip(host) {
            HostPattern::Ip(ip)
        } else {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            if let Some(domain) = name.strip_prefix("*.") {
                if !valid_name(domain) || !domain.contains('.') {
                    return Err(format!(
                        "`{text}`: a wildcard must cover a domain, like \"https://*.example.com\""
                    ));
                }
                HostPattern::Subdomains(format!(".{domain}"))
            } else if valid_name(&name) {
                HostPattern::Name(name)
            } else {
                return Err(format!(
                    "`{text}` has an invalid host name (the only wildcard is a leading `*.`)"
                ));
            }
        };
        Ok(AllowedHost { https, host, port })
    }

    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port != port {
            return false;
        }
        match &self.host {
            HostPattern::Ip(ip) => parse_ip(host) == Some(*ip),
            HostPattern::Name(name) => *name == normalize_name(host),
            HostPattern::Subdomains(suffix) => {
                let host = normalize_name(host);
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }

    /// Whether a name under this grant may resolve to `ip`.
    fn may_resolve_to(&self, host: &str, ip: IpAddr) -> bool {
        match self.host {
            HostPattern::Ip(_) => true,
            _ => normalize_name(host) == "localhost" || is_public_destination(ip),
        }
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match &self.host {
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            HostPattern::Ip(ip) => write!(f, "{scheme}://{ip}:{}", self.port),
            HostPattern::Name(name) => write!(f, "{scheme}://{name}:{}", self.port),
            HostPattern::Subdomains(suffix) => write!(f, "{scheme}://*{suffix}:{}", self.port),
        }
    }
}

fn normalize_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

/// `host:port`, `[v6]:port`, or either without a port.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let host = &text[..=end];
        return match &text[end + 1..] {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((text, None)),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Addresses a host name may lead to: not this machine, not link-local (cloud
/// metadata services live there), not unspecified, multicast or broadcast.
/// Private networks are allowed: an internal user directory is a normal
/// thing to grant.
fn is_public_destination(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0)
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || link_local)
        }
    }
}

/// A plugin section's outbound rules, shared by all its instances.
pub(super) struct OutboundPolicy {
    pub site: Arc<str>,
    pub plugin: Arc<str>,
    pub allowed: Vec<AllowedHost>,
    /// Largest response body, in bytes.
    pub max_response: u64,
    /// Longest wait for each response body frame: the plugin's call timeout.
    pub between_frames: Duration,
}

/// The hooks of one store: its section's policy and the store's call deadline.
pub(super) struct Outbound {
    policy: Arc<OutboundPolicy>,
    deadline: CallDeadline,
}

impl Outbound {
    pub fn new(policy: Arc<OutboundPolicy>, deadline: CallDeadline) -> Self {
        Outbound { policy, deadline }
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.policy.clone();
        let deadline = tokio::time::Instant::from_std(self.deadline.get());
        Box::new(async move { policy.send(request, options, deadline).await })
    }
}

impl OutboundPolicy {
    async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        deadline: tokio::time::Instant,
    ) -> SendResult {
        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let origin = format!("{}://{}:{port}", if https { "https" } else { "http" }, host);
        let Some(grant) = self
            .allowed
            .iter()
            .find(|grant| grant.matches(https, &host, port))
        else {
            let denied = self.deny(&origin, "not in this plugin's allowed_hosts");
            // Take the body the guest is writing (and drop it) before
            // answering: a guest that writes its whole body before reading the
            // response (most clients do) would otherwise see its write fail and
            // report a reset connection instead of this error.
            let drain = request.into_body().collect();
            let _ = tokio::time::timeout_at(deadline, drain).await;
            return Err(denied);
        };

        // Guest-set timeouts may shorten ours, never lengthen them.
        let connect_by = earliest(deadline, options.and_then(|o| o.connect_timeout));
        let head_by = earliest(deadline, options.and_then(|o| o.first_byte_timeout));
        let addresses = self
            .resolve(grant, &host, port, &origin, connect_by)
            .await?;
        let stream = connect(&addresses, connect_by).await?;
        let _ = stream.set_nodelay(true);

        let io: Box<dyn IoStream> = if https {
            let tls = tls_config().map_err(|why| Error::InternalError(Some(why)))?;
            let name = server_name(&host)?;
            let connector = tokio_rustls::TlsConnector::from(tls);
            match tokio::time::timeout_at(connect_by, connector.connect(name, stream)).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(e)) => return Err(Error::Tls(e)),
                Err(_) => return Err(Error::ConnectionTimeout),
            }
        } else {
            Box::new(stream)
        };
        let (mut sender, connection) = tokio::time::timeout_at(
            connect_by,
            hyper::client::conn::http1::handshake(TokioIo::new(io)),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
        let connection = tokio::spawn(connection);

        // On the wire the request line carries only the path.
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|e| Error::InternalError(Some(e.to_string())))?;

        let response = tokio::time::timeout_at(head_by, sender.send_request(request))
            .await
            .map_err(|_| Error::HttpResponseTimeout)??;
        if let Some(length) = content_length(response.headers())
            && length > self.max_response
        {
            tracing::warn!(site = %self.site, plugin = %self.plugin, %origin,
                "outbound response of {length} bytes refused: max_response_size is {}", self.max_response);
            return Err(Error::HttpResponseBodySize(Some(length)));
        }
        let between = options
            .and_then(|o| o.between_bytes_timeout)
            .map_or(self.between_frames, |t| t.min(self.between_frames));
        let response =
            response.map(|body| BoundedBody::new(body, self.max_response, between).boxed_unsync());
        let driver = async move {
            match connection.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Hyper(e)),
                Err(e) => Err(Error::InternalError(Some(e.to_string()))),
            }
        };
        Ok((response, Box::new(driver)))
    }

    fn deny(&self, origin: &str, why: &str) -> Error {
        tracing::warn!(site = %self.site, plugin = %self.plugin, %origin,
            "outbound request denied: {why}");
        Error::InternalError(Some(format!("request to {origin} denied: {why}")))
    }

    /// The addresses to connect to, checked against the grant.
    async fn resolve(
        &self,
        grant: &AllowedHost,
        host: &str,
        port: u16,
        origin: &str,
        by: tokio::time::Instant,
    ) -> Result<Vec<SocketAddr>, Error> {
        if let Some(ip) = parse_ip(host) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found: Vec<SocketAddr> =
            match tokio::time::timeout_at(by, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => {
                    return Err(Error::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    });
                }
                Err(_) => return Err(Error::DnsTimeout),
            };
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|addr| grant.may_resolve_to(host, addr.ip()))
            .collect();
        if allowed.is_empty() && !found.is_empty() {
            let ips: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
            return Err(self.deny(
                origin,
                &format!(
                    "the name resolved to {} (loopback, link-local or otherwise special \
                     addresses are reached only through an IP grant)",
                    ips.join(", ")
                ),
            ));
        }
        if allowed.is_empty() {
            return Err(Error::DnsError {
                rcode: Some("no addresses".into()),
                info_code: None,
            });
        }
        Ok(allowed)
    }
}

fn earliest(deadline: tokio::time::Instant, limit: Option<Duration>) -> tokio::time::Instant {
    match limit {
        Some(limit) => deadline.min(tokio::time::Instant::now() + limit),
        None => deadline,
    }
}

async fn connect(addresses: &[SocketAddr], by: tokio::time::Instant) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for address in addresses {
        match tokio::time::timeout_at(by, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    }
    Err(last)
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> IoStream for T {}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    if let Some(ip) = parse_ip(host) {
        return Ok(rustls::pki_types::ServerName::IpAddress(ip.into()));
    }
    rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| Error::DnsError {
        rcode: Some(e.to_string()),
        info_code: None,
    })
}

/// The client TLS settings: the system's root certificates, loaded once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = format!(
                    "no system root certificates found for HTTPS ({} errors while loading)",
                    found.errors.len()
                );
                tracing::warn!("{why}");
                return Err(why);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

/// A response body with a size limit and a wait limit per frame.
struct BoundedBody<B = hyper::body::Incoming> {
    inner: B,
    remaining: u64,
    between: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Set while a consumer waits for the next frame. The timer starts when
    /// it starts waiting, not when the previous frame came: a plugin that
    /// reads slowly (a RETR to a slow client) must not time out a server that
    /// answers at once.
    waiting: bool,
}

impl<B> BoundedBody<B> {
    fn new(inner: B, max: u64, between: Duration) -> Self {
        BoundedBody {
            inner,
            remaining: max,
            between,
            timer: Box::pin(tokio::time::sleep(between)),
            waiting: false,
        }
    }
}

impl<B> Body for BoundedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    Error: From<B::Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if !self.waiting {
            self.waiting = true;
            let until = tokio::time::Instant::now() + self.between;
            self.timer.as_mut().reset(until);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(None))));
                    }
                    self.remaining -= len;
                }
                self.waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body whose frames arrive when the test sends them.
    struct Channel(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(Frame::data(data))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn body_timer_runs_only_while_someone_waits() {
        let (send, receive) = tokio::sync::mpsc::unbounded_channel();
        let between = Duration::from_secs(1);
        let mut body = BoundedBody::new(Channel(receive), 100, between);
        send.send(Bytes::from_static(b"one")).expect("send");
        send.send(Bytes::from_static(b"two")).expect("send");
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"one")));
        // The consumer is slow: much longer than `between` before it asks
        // again. The frame waiting for it is still handed out.
        tokio::time::sleep(between * 5).await;
        let second = body.frame().await.expect("a frame").expect("data");
        assert_eq!(second.into_data().ok(), Some(Bytes::from_static(b"two")));
        // Waiting itself is bounded.
        let started = tokio::time::Instant::now();
        let third = body.frame().await.expect("an answer");
        assert!(matches!(third, Err(Error::ConnectionReadTimeout)));
        assert_eq!(started.elapsed(), between);
        drop(send);
    }

    #[tokio::test(start_paused = true)]
    async fn body_size_is_bounded() {
        let (send, receive) = tokio::sync::mpsc::unbounded_channel();
        let mut body = BoundedBody::new(Channel(receive), 5, Duration::from_secs(1));
        send.send(Bytes::from_static(b"four")).expect("send");
        send.send(Bytes::from_static(b"more")).expect("send");
        assert!(body.frame().await.expect("a frame").is_ok());
        assert!(matches!(
            body.frame().await.expect("an answer"),
            Err(Error::HttpResponseBodySize(None))
        ));
    }

    fn grant(text: &str) -> AllowedHost {
        AllowedHost::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_origins_with_default_ports() {
        let g = grant("https://Auth.Example.com");
        assert!(g.matches(true, "auth.example.com", 443));
        assert!(g.matches(true, "AUTH.example.com.", 443));
        assert!(!g.matches(false, "auth.example.com", 443), "scheme counts");
        assert!(!g.matches(true, "auth.example.com", 8443), "port counts");
        assert!(!g.matches(true, "evil.example.com", 443));
        let g = grant("http://127.0.0.1:8333/");
        assert!(g.matches(false, "127.0.0.1", 8333));
        assert!(!g.matches(false, "127.0.0.1", 80));
        let g = grant("http://[::1]:8080");
        assert!(g.matches(false, "[::1]", 8080));
        assert_eq!(g.to_string(), "http://[::1]:8080");
    }

    #[test]
    fn wildcard_covers_subdomains_only() {
        let g = grant("https://*.example.com");
        assert!(g.matches(true, "a.example.com", 443));
        assert!(g.matches(true, "a.b.example.com", 443));
        assert!(!g.matches(true, "example.com", 443));
        assert!(!g.matches(true, "badexample.com", 443));
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for bad in [
            "auth.example.com",
            "ftp://x.example.com",
            "https://x.example.com/path",
            "https://user@x.example.com",
            "https://x.example.com:99999",
            "https://*",
            "https://*.com",
            "https://a.*.example.com",
            "https://",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn names_never_lead_to_this_machine() {
        let name = grant("https://auth.example.com");
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "0.0.0.0",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!name.may_resolve_to("auth.example.com", ip), "{ip}");
        }
        for ip in ["10.1.2.3", "192.168.0.10", "203.0.113.5", "2001:db8::5"] {
            assert!(
                name.may_resolve_to("auth.example.com", ip.parse().unwrap()),
                "{ip}"
            );
        }
        let local = grant("http://localhost:8080");
        assert!(local.may_resolve_to("localhost", "127.0.0.1".parse().unwrap()));
        let ip = grant("http://127.0.0.1:8080");
        assert!(ip.may_resolve_to("127.0.0.1", "127.0.0.1".parse().unwrap()));
    }
}
