//! One control connection: its state, and the loop that reads commands, runs
//! them through the command table and writes their replies, while at most one
//! data transfer runs beside it as a task the session owns.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tracing::{debug, info};

use super::commands::{self, Access};
use super::control::{Control, Line};
use super::dtp::{self, DataEndpoint, Job};
use super::listing::MlstFacts;
use super::path;
use super::reply::{ErrorContext, Reply, ReplyCode, storage_error};
use super::{Closing, SessionSettings};
use crate::backend::{Account, Permissions, Storage, StorageError};
use crate::server::limits::LoginWatch;
use crate::site::{Site, SiteDirectory, SiteTicket};
use crate::tls::{self, DataTls, SiteTls, TlsPolicy};

/// What a handler produces: `Ok` and `Err` are both sent to the client; `Err`
/// lets handlers bail out with `?`.
pub type HandlerResult = Result<Reply, Reply>;

/// Login progress (RFC 959's UNAUTH → INAUTH → AUTHED; RENAMING lives inside
/// [`LoggedIn`] because it keeps everything a logged-in session has).
pub enum State {
    /// UNAUTH: waiting for USER.
    NeedUser,
    /// INAUTH: USER given, waiting for PASS.
    NeedPass { user: String, site: Arc<Site> },
    /// AUTHED (and RENAMING while `rename_from` is set). Boxed: the account
    /// (limits, attributes) makes it much larger than the other states.
    LoggedIn(Box<LoggedIn>),
}

/// Everything that exists only after login.
pub struct LoggedIn {
    pub account: Account,
    /// The account's home, normalized; prefix of every storage path.
    pub home: String,
    pub storage: Arc<dyn Storage>,
    /// Client path of the working directory (`/` is the home).
    pub cwd: String,
    /// RENAMING: the storage path given to RNFR, consumed by RNTO.
    pub rename_from: Option<String>,
    /// This session's place under the site's `max_connections`.
    pub ticket: SiteTicket,
}

/// Representation type (RFC 959 section 3.1.1); only A(SCII) and I(mage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    Ascii,
    Image,
}

/// A data transfer running beside the control connection. It is polled by the
/// session's own task (in the same `select!` as the control connection) rather
/// than spawned: a small file's transfer then finishes without waking another
/// thread, which is most of the cost of a 4 KiB STOR or RETR. Large reads still
/// overlap storage and socket through `dtp`'s helper task.
pub struct RunningTransfer {
    pub handle: Pin<Box<dyn Future<Output = Reply> + Send>>,
    /// Bytes moved so far, for STAT.
    pub progress: Arc<AtomicU64>,
    /// The command and path, for STAT and logs.
    pub what: String,
    pub started: Instant,
}

/// A path argument resolved for one command.
pub struct Target {
    /// Normalized client path (`/` is the home).
    pub client: String,
    /// The same path in the storage's namespace.
    pub storage: String,
    pub fs: Arc<dyn Storage>,
}

/// The state of one control connection.
pub struct Session {
    pub settings: Arc<SessionSettings>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub sites: Arc<dyn SiteDirectory>,
    /// The site chosen when the connection was accepted; REIN returns to it.
    pub initial_site: Option<Arc<Site>>,
    /// The site this session talks to, once known.
    pub site: Option<Arc<Site>>,
    /// HOST picked the site, so `USER name@x` is a plain user name.
    pub host_selected: bool,
    pub state: State,
    pub transfer_type: TransferType,
    /// Where the next transfer's data connection comes from (PASV/EPSV/PORT/EPRT).
    pub data: Option<DataEndpoint>,
    /// After `EPSV ALL` only EPSV may set up data connections (RFC 2428 section 4).
    pub epsv_all: bool,
    /// Pending REST offset for the next RETR/STOR/APPE.
    pub rest: u64,
    /// Facts MLSD/MLST show (OPTS MLST).
    pub mlst_facts: MlstFacts,
    pub login_failures: u32,
    pub transfer: Option<RunningTransfer>,
    /// The last passive listener, kept for the next PASV/EPSV for a few
    /// seconds (see [`KeptListener`]).
    pub kept_listener: Option<KeptListener>,
    /// Metrics, transfer log, defender, bandwidth buckets.
    pub ops: Arc<crate::ops::Ops>,
    /// Commands received, and whether PASS was tried: a connection that
    /// talks but never tries to log in counts against its address.
    pub commands_seen: u32,
    pub login_tried: bool,
    /// `[server.tls]`, offered while no site is chosen.
    server_tls: Option<Arc<SiteTls>>,
    /// TLS state of this connection; changed only through its methods.
    security: Security,
    /// When the connection opened (or REIN logged it out): not logged in by
    /// this plus `login_timeout`, it is closed.
    pub login_clock: tokio::time::Instant,
    /// Tells the server's connection limits when the session logs in or
    /// out; until it logs in, a full server may close it to make room.
    pub login_watch: LoginWatch,
}

/// The connection's security (RFC 2228, RFC 4217). Once the control
/// connection is secured it stays so: REIN and a new USER keep it.
#[derive(Default)]
struct Security {
    /// Set once the control connection runs over TLS; its data connections
    /// are checked against it.
    tls: Option<Arc<DataTls>>,
    /// PBSZ was given (RFC 4217 section 9: it comes before PROT).
    buffer_size_set: bool,
    /// PROT P: data connections use TLS too.
    protect_data: bool,
    /// Implicit FTPS: data connections are always protected.
    implicit: bool,
}

/// A passive listener kept after its transfer. A client moving many files
/// sends PASV/EPSV before each one; answering with the same port saves
/// opening, binding and closing a socket per transfer, a tenth of the server's
/// work for a 4 KiB file. An idle session gives the port back after the
/// `passive_keep` setting, so a passive range is not held by sessions that
/// stopped transferring.
pub struct KeptListener {
    pub listener: Arc<tokio::net::TcpListener>,
    /// Dropped when the session waits for a command past this instant.
    pub until: tokio::time::Instant,
}

impl Session {
    pub fn new(
        settings: Arc<SessionSettings>,
        peer: SocketAddr,
        local: SocketAddr,
        site: Option<Arc<Site>>,
        sites: Arc<dyn SiteDirectory>,
        ops: Arc<crate::ops::Ops>,
        server_tls: Option<Arc<SiteTls>>,
    ) -> Self {
        Session {
            settings,
            peer,
            local,
            sites,
            initial_site: site.clone(),
            site,
            host_selected: false,
            state: State::NeedUser,
            transfer_type: TransferType::Ascii,
            data: None,
            epsv_all: false,
            rest: 0,
            mlst_facts: MlstFacts::default(),
            login_failures: 0,
            transfer: None,
            kept_listener: None,
            ops,
            commands_seen: 0,
            login_tried: false,
            server_tls,
            security: Security::default(),
            login_clock: tokio::time::Instant::now(),
            login_watch: LoginWatch::detached(),
        }
    }

    /// The TLS this session offers: its site's, or the server's before a
    /// site is chosen. `None`: no FTPS here.
    pub fn tls_offered(&self) -> Option<Arc<SiteTls>> {
        match &self.site {
            Some(site) => site.tls.clone(),
            None => self.server_tls.clone(),
        }
    }

    /// What the current site's TLS settings demand.
    pub fn tls_policy(&self) -> TlsPolicy {
        self.tls_offered()
            .map(|tls| tls.policy())
            .unwrap_or_default()
    }

    /// Whether the control connection runs over TLS.
    pub fn is_secure(&self) -> bool {
        self.security.tls.is_some()
    }

    /// Whether data connections are protected (PROT P, or implicit FTPS).
    pub fn protects_data(&self) -> bool {
        self.security.protect_data
    }

    /// Secures the control connection: the TLS handshake on `control`, after
    /// the `234` to AUTH TLS or, for implicit FTPS, before anything else.
    /// Clear-text bytes the client sent ahead of its handshake are dropped.
    /// When the client names a site (SNI) before choosing one, that selects
    /// it as HOST would. An error means the connection is unusable.
    pub async fn start_tls(
        &mut self,
        control: &mut Control,
        implicit: bool,
    ) -> std::io::Result<()> {
        let fallback = self
            .tls_offered()
            .ok_or_else(|| std::io::Error::other("TLS is not configured here"))?;
        let sites = self.sites.clone();
        let limit = self.settings.idle_timeout;
        let (secured, dropped) = control
            .upgrade(|plain| async move {
                tokio::time::timeout(limit, tls::accept_control(plain, &fallback, sites.as_ref()))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })?
            })
            .await?;
        if dropped > 0 {
            info!(peer = %self.peer, dropped, "dropped clear-text bytes sent ahead of the TLS handshake");
        }
        if let Some(site) = secured.site
            && matches!(self.state, State::NeedUser)
            && !self.host_selected
        {
            self.select_site(site);
        }
        info!(peer = %self.peer, tls = %secured.summary, site = self.site.as_ref().map(|s| s.name.as_str()).unwrap_or(""), "control connection secured");
        self.security.tls = Some(secured.data);
        if implicit {
            self.security.implicit = true;
            self.security.buffer_size_set = true;
            self.security.protect_data = true;
        }
        Ok(())
    }

    /// PBSZ (RFC 4217 section 9): only after AUTH TLS.
    pub fn set_protection_buffer(&mut self) -> Result<(), Reply> {
        if !self.is_secure() {
            return Err(Reply::new(ReplyCode::BadSequence, "Use AUTH TLS first"));
        }
        self.security.buffer_size_set = true;
        Ok(())
    }

    /// PROT P (`private`) or C (RFC 4217 section 9): after PBSZ; clear data
    /// connections are refused where the site requires TLS and on implicit
    /// FTPS.
    pub fn set_data_protection(&mut self, private: bool) -> Result<(), Reply> {
        if !self.is_secure() {
            return Err(Reply::new(ReplyCode::BadSequence, "Use AUTH TLS first"));
        }
        if !self.security.buffer_size_set {
            return Err(Reply::new(ReplyCode::BadSequence, "Use PBSZ 0 first"));
        }
        if !private && (self.security.implicit || self.tls_policy().required) {
            return Err(Reply::new(
                ReplyCode::PolicyDenied,
                "Data connections must be protected here",
            ));
        }
        self.security.protect_data = private;
        Ok(())
    }

    /// Refuses a clear-text login where `site` requires TLS.
    pub fn check_login_security(&self, site: &Site) -> Result<(), Reply> {
        let required = site.tls.as_ref().is_some_and(|tls| tls.policy().required);
        if required && !self.is_secure() {
            return Err(Reply::new(
                ReplyCode::NotLoggedIn,
                "This site requires TLS: use AUTH TLS before logging in",
            ));
        }
        Ok(())
    }

    /// REIN: back to the state right after connecting (RFC 959 section
    /// 4.1.1), including the site (RFC 7151 section 3.3). What belongs to the
    /// connection stays: the failed-login count and its security (a secured
    /// connection is never turned back to clear text).
    pub fn reinitialize(&mut self) {
        self.state = State::NeedUser;
        self.site = self.initial_site.clone();
        self.host_selected = false;
        self.transfer_type = TransferType::Ascii;
        self.data = None;
        self.epsv_all = false;
        self.rest = 0;
        self.mlst_facts = MlstFacts::default();
        self.kept_listener = None;
        self.login_clock = tokio::time::Instant::now();
        self.login_watch.logged_out();
    }

    /// HOST (RFC 7151) chose `site`: a later `USER name@x` is a plain name.
    pub fn select_site(&mut self, site: Arc<Site>) {
        self.site = Some(site);
        self.host_selected = true;
    }

    /// USER was accepted: PASS comes next.
    pub fn expect_password(&mut self, user: String, site: Arc<Site>) {
        self.state = State::NeedPass { user, site };
    }

    /// PASS was accepted on `site`.
    pub fn log_in(&mut self, site: Arc<Site>, user: LoggedIn) {
        self.site = Some(site);
        self.state = State::LoggedIn(Box::new(user));
        self.login_watch.logged_in();
    }

    /// PASV/EPSV/PORT/EPRT: where the next transfer's data connection comes from.
    pub fn set_data_endpoint(&mut self, endpoint: DataEndpoint) {
        self.data = Some(endpoint);
    }

    /// Forgets a prepared data connection (ABOR, a new PASV).
    pub fn clear_data_endpoint(&mut self) {
        self.data = None;
    }

    /// REST: the next RETR/STOR/APPE starts at `offset`.
    pub fn set_rest(&mut self, offset: u64) {
        self.rest = offset;
    }

    /// The pending REST offset, used up by the transfer command asking.
    pub fn take_rest(&mut self) -> u64 {
        std::mem::take(&mut self.rest)
    }

    pub fn set_transfer_type(&mut self, kind: TransferType) {
        self.transfer_type = kind;
    }

    /// `EPSV ALL`: from now on only EPSV sets up data connections.
    pub fn set_epsv_all(&mut self) {
        self.epsv_all = true;
    }

    pub fn set_mlst_facts(&mut self, facts: MlstFacts) {
        self.mlst_facts = facts;
    }

    /// The address a PASV reply advertises to this client: the site's or the
    /// server's passive address for the client's network, else the address
    /// the client reached us on.
    pub fn passive_address(&self) -> IpAddr {
        let client = self.client_ip();
        self.site
            .as_ref()
            .and_then(|site| site.ops.passive.as_ref())
            .and_then(|nat| nat.for_client(client))
            .or_else(|| self.settings.passive.for_client(client))
            .unwrap_or(self.local.ip())
    }

    /// The site's name for metrics and logs (empty before one is chosen).
    pub fn site_name(&self) -> &str {
        self.site.as_ref().map_or("", |s| s.name.as_str())
    }

    /// When a session that is not logged in gets closed.
    fn login_deadline(&self) -> Option<tokio::time::Instant> {
        self.logged_in()
            .is_none()
            .then(|| self.login_clock + self.settings.login_timeout)
    }

    pub fn logged_in(&self) -> Option<&LoggedIn> {
        match &self.state {
            State::LoggedIn(user) => Some(user.as_ref()),
            _ => None,
        }
    }

    pub fn logged_in_mut(&mut self) -> Option<&mut LoggedIn> {
        match &mut self.state {
            State::LoggedIn(user) => Some(user.as_mut()),
            _ => None,
        }
    }

    /// The logged-in part, or `530` (the command table already checks login, so
    /// this only guards against a table mistake).
    pub fn user(&self) -> Result<&LoggedIn, Reply> {
        self.logged_in().ok_or_else(not_logged_in)
    }

    pub fn user_mut(&mut self) -> Result<&mut LoggedIn, Reply> {
        self.logged_in_mut().ok_or_else(not_logged_in)
    }

    /// Checks `needs` against the account, then resolves `arg` against the
    /// working directory: the only way commands get a storage path.
    pub fn target(&self, arg: &str, needs: Permissions) -> Result<Target, Reply> {
        let user = self.user()?;
        if !user.account.permissions.contains(needs) {
            return Err(permission_denied());
        }
        let client = path::resolve(&user.cwd, arg)
            .map_err(|_| Reply::new(ReplyCode::FileNameNotAllowed, "File name not allowed"))?;
        let storage = path::to_storage(&user.home, &client);
        Ok(Target {
            client,
            storage,
            fs: user.storage.clone(),
        })
    }

    pub fn has_permission(&self, needs: Permissions) -> bool {
        self.logged_in()
            .is_some_and(|u| u.account.permissions.contains(needs))
    }

    /// Refuses a transfer command early when no data connection was set up,
    /// or when it would be in clear text where the site requires TLS, so STOR
    /// never truncates a file it then cannot fill.
    pub fn require_data_endpoint(&self) -> Result<(), Reply> {
        if self.data.is_none() {
            return Err(Reply::new(
                ReplyCode::CantOpenDataConnection,
                "Use PORT, EPRT, PASV or EPSV first",
            ));
        }
        if !self.protects_data() && self.tls_policy().required {
            return Err(Reply::new(
                ReplyCode::DataProtectionRequired,
                "Data connections must be protected here: use PBSZ 0 and PROT P",
            ));
        }
        Ok(())
    }

    /// Starts `job` on the prepared data connection and returns the `150`
    /// preliminary reply; the final reply comes from the task when it ends.
    /// `report`, if any, is told how the transfer ended (see `dtp::TransferEnd`).
    pub fn start_transfer(
        &mut self,
        job: Job,
        what: String,
        preliminary: &str,
        report: Option<dtp::TransferReport>,
    ) -> HandlerResult {
        let endpoint = self.data.take().ok_or_else(|| {
            Reply::new(
                ReplyCode::CantOpenDataConnection,
                "Use PORT, EPRT, PASV or EPSV first",
            )
        })?;
        let progress = Arc::new(AtomicU64::new(0));
        let ctx = dtp::DataContext {
            control_peer: self.peer.ip(),
            local_ip: self.local.ip(),
            timeout: self.settings.data_timeout,
            progress: progress.clone(),
            what: what.clone(),
            limit: super::events::rate_limit(self, &job),
            tls: self
                .security
                .tls
                .clone()
                .filter(|_| self.security.protect_data),
            require_session_reuse: self.tls_policy().require_session_reuse,
            on_end: report.map(|report| dtp::TransferEnd::new(report, progress.clone())),
        };
        let record = super::events::TransferRecord::start(self, &job, &what, &progress);
        let run = dtp::run(endpoint, job, ctx);
        let handle: Pin<Box<dyn Future<Output = Reply> + Send>> = match record {
            Some(record) => Box::pin(record.around(run)),
            None => Box::pin(run),
        };
        self.transfer = Some(RunningTransfer {
            handle,
            progress,
            what,
            started: Instant::now(),
        });
        Ok(Reply::new(ReplyCode::FileStatusOk, preliminary))
    }

    /// Waits for the running transfer, if any, and returns its final reply.
    pub async fn finish_transfer(&mut self) -> Option<Reply> {
        let transfer = self.transfer.take()?;
        Some(transfer.handle.await)
    }

    /// Cuts the running transfer. Returns whether one was still running.
    pub async fn abort_transfer(&mut self) -> Option<Result<Reply, ()>> {
        let mut transfer = self.transfer.take()?;
        // One poll: a transfer that has already ended gives its own reply.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(reply) = transfer.handle.as_mut().poll(&mut cx) {
            return Some(Ok(reply));
        }
        // Dropping the future closes its sockets and drops its writer (what was
        // received stays) before we report the abort.
        drop(transfer.handle);
        info!(what = %transfer.what, bytes = transfer.progress.load(Ordering::Relaxed), "transfer aborted");
        Some(Err(()))
    }

    pub fn storage_error(&self, err: &StorageError) -> Reply {
        storage_error(err, ErrorContext::Command)
    }

    pub fn client_ip(&self) -> IpAddr {
        self.peer.ip()
    }
}

pub fn not_logged_in() -> Reply {
    Reply::new(ReplyCode::NotLoggedIn, "Please login with USER and PASS")
}

pub fn permission_denied() -> Reply {
    Reply::new(ReplyCode::FileNotAvailable, "Permission denied")
}

/// Extension for `?` on storage results inside handlers.
pub trait OrReply<T> {
    fn or_reply(self) -> Result<T, Reply>;
}

impl<T> OrReply<T> for Result<T, StorageError> {
    fn or_reply(self) -> Result<T, Reply> {
        self.map_err(|err| storage_error(&err, ErrorContext::Command))
    }
}

enum Event {
    Line(std::io::Result<Line>),
    TransferDone(Reply),
    Idle,
    /// Not logged in within `login_timeout`.
    LoginTimeout,
    /// Not logged in, and the server is full: this connection makes room.
    MakeRoom,
    /// The kept passive listener's time is up.
    ListenerExpired,
    /// The server's shutdown grace period is over.
    ServerClosing,
}

/// Runs the session until QUIT, a closing reply, idle timeout, disconnect or
/// the server closing it.
pub async fn run(mut session: Session, mut control: Control, mut closing: Closing) {
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let event = match session.transfer.as_mut() {
            Some(transfer) => tokio::select! {
                line = control.next_line() => Event::Line(line),
                done = &mut transfer.handle => Event::TransferDone(done),
                _ = closing.fired() => Event::ServerClosing,
            },
            None => {
                let idle_at = idle_since + session.settings.idle_timeout;
                // Whichever comes first: the kept listener's end (only
                // releases it), the login deadline, the idle timeout.
                let login_at = session.login_deadline();
                let listener_at = session.kept_listener.as_ref().map(|kept| kept.until);
                let wake_at = [Some(idle_at), login_at, listener_at]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(idle_at);
                tokio::select! {
                    line = control.next_line() => Event::Line(line),
                    _ = tokio::time::sleep_until(wake_at) => {
                        if listener_at == Some(wake_at) {
                            Event::ListenerExpired
                        } else if login_at == Some(wake_at) {
                            Event::LoginTimeout
                        } else {
                            Event::Idle
                        }
                    }
                    _ = closing.fired() => Event::ServerClosing,
                    _ = session.login_watch.must_make_room(), if session.logged_in().is_none() => {
                        Event::MakeRoom
                    }
                }
            }
        };
        let reply = match event {
            Event::TransferDone(reply) => {
                session.transfer = None;
                if let Some(kept) = &mut session.kept_listener {
                    kept.until = tokio::time::Instant::now() + session.settings.passive_keep;
                }
                reply
            }
            Event::ListenerExpired => {
                session.kept_listener = None;
                continue;
            }
            Event::ServerClosing => {
                info!(peer = %session.peer, "closed at server shutdown");
                Reply::new(ReplyCode::ServiceNotAvailable, "Server shutting down").and_close()
            }
            Event::LoginTimeout => {
                info!(peer = %session.peer, "login timeout");
                Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Login timeout, closing control connection",
                )
                .and_close()
            }
            Event::MakeRoom => {
                info!(peer = %session.peer, "closed to make room: server full, not logged in");
                Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Server full: closing the oldest connection that has not logged in",
                )
                .and_close()
            }
            Event::Idle => {
                info!(peer = %session.peer, "idle timeout");
                Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Timeout, closing control connection",
                )
                .and_close()
            }
            Event::Line(Err(err)) => {
                debug!(peer = %session.peer, %err, "control connection error");
                break;
            }
            Event::Line(Ok(Line::Closed)) => break,
            Event::Line(Ok(Line::TooLong)) => super::events::invalid_line(
                &mut session,
                Reply::new(ReplyCode::SyntaxError, "Command line too long"),
            ),
            Event::Line(Ok(Line::Command(bytes))) => {
                match execute(&mut session, &mut control, &bytes).await {
                    Some(reply) => reply,
                    None => break,
                }
            }
        };
        if control
            .send(&reply, session.settings.idle_timeout)
            .await
            .is_err()
            || reply.closes()
        {
            break;
        }
        if reply.starts_tls()
            && let Err(err) = session.start_tls(&mut control, false).await
        {
            info!(peer = %session.peer, %err, "TLS handshake failed");
            break;
        }
        idle_since = tokio::time::Instant::now();
    }
    // The client is gone: nobody would read a running transfer's reply.
    drop(session.transfer.take());
    control.shutdown().await;
    super::events::session_closed(&session);
    let user = session
        .logged_in()
        .map(|u| u.account.user.clone())
        .unwrap_or_default();
    info!(peer = %session.peer, user, "session closed");
}

/// Parses and runs one command line. `None` means the control connection
/// failed while writing an earlier reply.
async fn execute(session: &mut Session, control: &mut Control, bytes: &[u8]) -> Option<Reply> {
    let Ok(line) = std::str::from_utf8(bytes) else {
        let reply = Reply::new(ReplyCode::ArgumentError, "Command line is not valid UTF-8");
        return Some(super::events::invalid_line(session, reply));
    };
    let (verb, arg) = split_command(line);
    let verb = verb.to_ascii_uppercase();
    if verb == "PASS" {
        debug!(peer = %session.peer, "> PASS ****");
    } else {
        debug!(peer = %session.peer, "> {verb} {arg}");
    }
    if let Some(command) = commands::lookup(&verb)
        && !command.during_transfer
        && let Some(reply) = session.finish_transfer().await
        && control
            .send(&reply, session.settings.idle_timeout)
            .await
            .is_err()
    {
        return None;
    }
    let reply = dispatch(session, &verb, arg).await;
    let reply = super::events::command_done(session, &verb, reply);
    debug!(peer = %session.peer, "< {}", reply.code.number());
    Some(reply)
}

/// Runs one command through the table: login check, argument check, the
/// RENAMING rule, then the handler. Does not wait for a running transfer.
pub async fn dispatch(session: &mut Session, verb: &str, arg: &str) -> Reply {
    let command = commands::lookup(verb);
    if command.is_none_or(|c| c.verb != "RNTO")
        && let Some(user) = session.logged_in_mut()
    {
        // Any command but RNTO ends RENAMING.
        user.rename_from = None;
    }
    let Some(command) = command else {
        return Reply::new(
            ReplyCode::SyntaxError,
            format!("Unknown command {}", verb.escape_debug()),
        );
    };
    if command.access == Access::LoggedIn && session.logged_in().is_none() {
        return not_logged_in();
    }
    if command.needs_arg && arg.trim().is_empty() {
        return Reply::new(
            ReplyCode::ArgumentError,
            format!("{verb} needs an argument"),
        );
    }
    (command.handler)(session, arg)
        .await
        .unwrap_or_else(|reply| reply)
}

/// Splits `VERB arg`: the argument is everything after the first space, kept
/// as-is because file names may start or end with spaces.
pub fn split_command(line: &str) -> (&str, &str) {
    match line.split_once(' ') {
        Some((verb, arg)) => (verb, arg),
        None => (line, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        assert_eq!(split_command("RETR  a b "), ("RETR", " a b "));
        assert_eq!(split_command("PWD"), ("PWD", ""));
    }
}
