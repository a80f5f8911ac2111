//! The FTP protocol: the protocol interpreter (control connection) and the data
//! transfer process. Talks only to the [`crate::backend`] traits and
//! [`crate::site`]; never sees wasmtime.
//!
//! Module map:
//! - [`session`]: one connection's state and its command loop.
//! - [`commands`]: the command table and one file per FTP command.
//! - [`reply`]: reply codes, the wire format, the error → reply table.
//! - [`control`]: reading command lines, writing replies.
//! - [`dtp`]: data connections and transfers.
//! - [`events`]: what the protocol reports to operations (metrics, transfer
//!   log, the defender).
//! - [`splice`]: uploads moved socket -> pipe -> file in the kernel.
//! - [`path`]: client paths, normalization, confinement to the home.
//! - [`listing`]: LIST / MLSD / MLST formats and timestamps.
//! - [`ascii`]: TYPE A line-ending conversion.
//!
//! Design notes live in `docs/protocol.md`.

pub mod ascii;
pub mod commands;
pub mod control;
pub mod dtp;
pub mod events;
pub mod listing;
pub mod path;
pub mod reply;
pub mod session;
pub mod splice;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tracing::{Instrument, error, info, info_span};

use crate::site::{Site, SiteDirectory};
use crate::tls::SiteTls;
use control::Control;
use reply::{Reply, ReplyCode};
use session::Session;

/// Protocol settings shared by all sessions of a server.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// No command for this long closes the session with `421`.
    pub idle_timeout: Duration,
    /// A connection not logged in this long after connecting (or after REIN)
    /// is closed with `421`, however busy it keeps the control connection:
    /// idle or slow connections that never log in must not hold places.
    pub login_timeout: Duration,
    /// Limit for a data connection to open, and for a stalled transfer.
    pub data_timeout: Duration,
    /// How long an idle session keeps its passive listener for the next
    /// PASV/EPSV (zero: a new listener each time).
    pub passive_keep: Duration,
    /// Passive ports, unless the site has its own range.
    pub passive_ports: RangeInclusive<u16>,
    /// Addresses advertised in PASV replies (behind NAT), unless the site has
    /// its own; none configured: the control connection's local address.
    pub passive: Arc<crate::ops::nat::PassiveAddresses>,
    /// Allow PORT/EPRT to another host or a port below 1024 (FTP bounce, RFC 2577).
    pub allow_foreign_data: bool,
    /// Longest command line accepted; longer lines get `500` and are discarded.
    pub max_line_length: usize,
    /// Pause after each failed login, to slow down password guessing.
    pub login_failure_delay: Duration,
    /// Failed logins after which the connection is closed with `421`.
    pub max_login_failures: u32,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_timeout: Duration::from_secs(600),
            login_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(10),
            passive_keep: Duration::from_secs(2),
            passive_ports: 49152..=65534,
            passive: Default::default(),
            allow_foreign_data: false,
            max_line_length: 16384,
            login_failure_delay: Duration::from_secs(1),
            max_login_failures: 3,
        }
    }
}

/// A byte stream a control or data connection runs over: plain TCP, or TLS
/// over TCP. The protocol never needs to know which.
pub trait Transport: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Transport for T {}

/// An accepted control connection, handed over by the server.
pub struct Connection {
    pub stream: tokio::net::TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Preselected site (dedicated listener or default site); `None` means the
    /// client must pick one with HOST or `USER name@site` before login.
    pub site: Option<Arc<Site>>,
    pub sites: Arc<dyn SiteDirectory>,
    pub settings: Arc<SessionSettings>,
    /// Fires when the server's shutdown grace period is over.
    pub closing: Closing,
    /// Metrics, transfer log, defender, bandwidth buckets.
    pub ops: Arc<crate::ops::Ops>,
    /// `[server.tls]`: offered while no site is chosen.
    pub server_tls: Option<Arc<SiteTls>>,
    /// TLS from the first byte (implicit FTPS listener).
    pub implicit_tls: bool,
    /// Its place among the connections that have not logged in: closed
    /// first when the server is full.
    pub login_watch: crate::server::limits::LoginWatch,
}

/// Tells sessions that the server is going away: once it fires, each session
/// replies `421` to whatever it was waiting for and closes.
#[derive(Clone)]
pub struct Closing(tokio::sync::watch::Receiver<bool>);

impl Closing {
    /// The sender closes sessions with `send(true)`.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Closing) {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        (sender, Closing(receiver))
    }

    /// A signal that never fires (tests, tools).
    pub fn never() -> Closing {
        Closing::new().1
    }

    /// Resolves once the server closes sessions. Cancel-safe.
    pub async fn fired(&mut self) {
        if self.0.wait_for(|closing| *closing).await.is_err() {
            // The sender is gone without firing: nobody will close us.
            std::future::pending::<()>().await;
        }
    }
}

/// Greets the client (`220` + the site's banner) and runs the session until it
/// ends. Never panics: a panic in the session is caught here and logged, and
/// whatever the caller holds beside this future (its connection slot) is
/// released as usual. Run in the caller's task rather than a task of its own:
/// a second task per connection was a measurable part of a login's cost.
pub async fn serve_connection(conn: Connection) {
    let peer = conn.peer;
    // Every log line of the session carries its id (`session{id=7}:`), so a
    // reply's cause can be found in the log.
    let span = info_span!(
        "session",
        id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed)
    );
    let session = std::pin::pin!(serve(conn));
    if CatchPanic(session).instrument(span).await.is_err() {
        error!(%peer, "session task failed: it panicked");
    }
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// Polls a future, turning a panic inside it into `Err` instead of unwinding
/// through the caller.
struct CatchPanic<F>(F);

impl<F: Future + Unpin> Future for CatchPanic<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        // After a panic the future is never polled again: this poll returns
        // `Ready` and the caller drops it.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

async fn serve(conn: Connection) {
    // Without TCP_NODELAY each reply after a data transfer waits for the
    // delayed ACK (~40 ms) before it leaves.
    let _ = conn.stream.set_nodelay(true);
    // Clients (Python's ftplib among them) send ABOR with MSG_OOB. Without
    // SO_OOBINLINE the kernel removes the urgent byte, the final LF, from the
    // stream and ABOR merges with the next command (RFC 6093 asks for this).
    let _ = socket2::SockRef::from(&conn.stream).set_out_of_band_inline(true);
    info!(peer = %conn.peer, site = conn.site.as_ref().map(|s| s.name.as_str()).unwrap_or(""), "session opened");
    let mut control = Control::new(Box::new(conn.stream), conn.settings.max_line_length);
    let mut session = Session::new(
        conn.settings,
        conn.peer,
        conn.local,
        conn.site,
        conn.sites,
        conn.ops,
        conn.server_tls,
    );
    session.login_watch = conn.login_watch;
    if conn.implicit_tls {
        // Implicit FTPS: the handshake comes first, even the greeting is
        // encrypted; the name the client asked for may pick the site.
        if let Err(err) = session.start_tls(&mut control, true).await {
            info!(peer = %session.peer, %err, "TLS handshake failed");
            return;
        }
    }
    if control
        .send(
            &greeting(session.site.as_deref()),
            session.settings.idle_timeout,
        )
        .await
        .is_err()
    {
        return;
    }
    session::run(session, control, conn.closing).await;
}

/// The `220` greeting (also the reply to HOST and REIN): the site's banner,
/// one reply line per banner line.
pub fn greeting(site: Option<&Site>) -> Reply {
    let lines: Vec<String> = match site {
        Some(site) if !site.banner.trim().is_empty() => {
            site.banner.lines().map(str::to_string).collect()
        }
        _ => vec!["wasmftpd ready".to_string()],
    };
    Reply::multi(ReplyCode::ServiceReady, lines)
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod catch_panic_tests {
    use super::CatchPanic;

    #[tokio::test]
    async fn a_panicking_session_is_contained() {
        let fine = std::pin::pin!(async { 7 });
        assert_eq!(CatchPanic(fine).await, Ok(7));
        let boom = std::pin::pin!(async {
            tokio::task::yield_now().await;
            panic!("session bug");
        });
        let result: Result<(), ()> = CatchPanic(boom).await;
        assert_eq!(result, Err(()));
    }
}
