//! Where the protocol reports to operations ([`crate::ops`]): commands and
//! their replies (metrics, the defender), transfers and file operations
//! (metrics, the transfer log). Kept out of the command files so each hook is
//! one call there.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tracing::warn;

use super::commands;
use super::dtp::{Job, Source};
use super::reply::{Reply, ReplyCode};
use super::session::Session;
use crate::ops::Ops;
use crate::ops::ban::Offence;
use crate::ops::metrics::{Direction, TransferResult};
use crate::ops::transfer_log::{Action, Entry};
use crate::site::Site;

/// Counts a command's reply (a transfer's `150` is not counted: its final
/// reply is, when the transfer ends); an unknown command before login counts
/// against the client's address, and may get it banned (the reply then closes).
pub fn command_done(session: &mut Session, verb: &str, reply: Reply) -> Reply {
    session.commands_seen = session.commands_seen.saturating_add(1);
    let index = commands::index(verb);
    if reply.code != ReplyCode::FileStatusOk {
        let code = reply.code.number();
        match &session.site {
            Some(site) => site.ops.metrics.command(index, code),
            None => session.ops.metrics.command("", verb, code),
        }
    }
    if index.is_none() && session.logged_in().is_none() {
        return abuse(session, Offence::InvalidCommand).unwrap_or(reply);
    }
    reply
}

/// A line that is not a command at all (too long, not UTF-8).
pub fn invalid_line(session: &mut Session, reply: Reply) -> Reply {
    session.commands_seen = session.commands_seen.saturating_add(1);
    if session.logged_in().is_none() {
        return abuse(session, Offence::InvalidCommand).unwrap_or(reply);
    }
    reply
}

/// Scores `offence`; the closing `421` when it banned the address.
pub fn abuse(session: &Session, offence: Offence) -> Option<Reply> {
    let ban = session.ops.defender.record(session.client_ip(), offence)?;
    session.ops.metrics.bans.inc();
    Some(banned_reply(ban))
}

pub fn banned_reply(ban: std::time::Duration) -> Reply {
    Reply::new(
        ReplyCode::ServiceNotAvailable,
        format!(
            "Too many failures from your address; banned for {} s",
            ban.as_secs()
        ),
    )
    .and_close()
}

/// At the end of a session: talking without ever trying to log in counts
/// against the address (a bare connect and close, like a health check, does not).
pub fn session_closed(session: &Session) {
    if !session.login_tried && session.commands_seen > 0 && session.logged_in().is_none() {
        let _ = abuse(session, Offence::NoLogin);
    }
}

/// A file operation finished (DELE, RNTO, MKD, RMD).
pub fn file_op(session: &Session, action: Action, path: &str, target: Option<&str>, ok: bool) {
    let Some(log) = session.ops.transfer_log.for_site(session.site_name()) else {
        return;
    };
    let user = session.logged_in().map_or("", |u| u.account.user.as_str());
    let mut entry = Entry::now(session.site_name(), user, session.client_ip(), action, path);
    entry.target = target;
    entry.ok = ok;
    log.write(&entry);
}

/// The bandwidth limit of a file transfer: the user's bucket for its
/// direction, shared by all of the user's sessions on the site. The site's
/// rate and the account's own (from its auth plugin) both apply: the lower.
pub fn rate_limit(session: &Session, job: &Job) -> crate::ops::rate::Limit {
    let site = session.site.as_ref()?;
    let account = &session.logged_in()?.account;
    let (direction, site_rate, account_rate) = match job {
        Job::Send {
            source: Source::File(_),
            ..
        } => (
            Direction::download,
            site.ops.download_rate,
            account.limits.download_bytes_per_second,
        ),
        Job::Send { .. } => return None,
        Job::Receive { .. } => (
            Direction::upload,
            site.ops.upload_rate,
            account.limits.upload_bytes_per_second,
        ),
    };
    let rate = match (site_rate, account_rate) {
        (Some(site_rate), Some(account_rate)) => site_rate.min(account_rate),
        (site_rate, account_rate) => site_rate.or(account_rate)?,
    };
    Some(
        session
            .ops
            .rates
            .bucket(&site.name, &account.user, direction, rate),
    )
}

/// One transfer's bookkeeping: counted (and, for files, logged) when it
/// ends, and as aborted when it is dropped before (ABOR, the client leaving).
pub struct TransferRecord {
    ops: Arc<Ops>,
    site: Arc<Site>,
    user: String,
    client: IpAddr,
    /// `None` for listings.
    direction: Option<Direction>,
    /// The transfer command's row in the command table.
    command: Option<usize>,
    path: String,
    binary: bool,
    started: Instant,
    progress: Arc<AtomicU64>,
    finished: bool,
}

impl TransferRecord {
    /// For a transfer of a logged-in session.
    pub fn start(
        session: &Session,
        job: &Job,
        what: &str,
        progress: &Arc<AtomicU64>,
    ) -> Option<TransferRecord> {
        let (direction, binary) = match job {
            Job::Send {
                source: Source::File(_),
                ascii,
                ..
            } => (Some(Direction::download), !ascii),
            Job::Send { .. } => (None, true),
            Job::Receive { ascii, .. } => (Some(Direction::upload), !ascii),
        };
        let site = session.site.clone()?;
        let user = session.logged_in()?.account.user.clone();
        let (verb, path) = what.split_once(' ').unwrap_or((what, ""));
        Some(TransferRecord {
            ops: session.ops.clone(),
            site,
            user,
            client: session.client_ip(),
            direction,
            command: commands::index(verb),
            path: path.to_string(),
            binary,
            started: Instant::now(),
            progress: progress.clone(),
            finished: false,
        })
    }

    /// Runs the transfer and records how it ended.
    pub async fn around(mut self, transfer: impl Future<Output = Reply>) -> Reply {
        let reply = transfer.await;
        let result = if reply.code == ReplyCode::ClosingDataConnection {
            TransferResult::ok
        } else {
            TransferResult::failed
        };
        self.site
            .ops
            .metrics
            .command(self.command, reply.code.number());
        self.finish(result);
        reply
    }

    fn finish(&mut self, result: TransferResult) {
        self.finished = true;
        let Some(direction) = self.direction else {
            return;
        };
        let took = self.started.elapsed();
        let bytes = self.progress.load(Ordering::Relaxed);
        self.site
            .ops
            .metrics
            .transfer(direction, result, bytes, took);
        if let Some(log) = self.ops.transfer_log.for_site(&self.site.name) {
            let action = match direction {
                Direction::upload => Action::Upload,
                Direction::download => Action::Download,
            };
            let mut entry =
                Entry::now(&self.site.name, &self.user, self.client, action, &self.path).took(took);
            entry.bytes = bytes;
            entry.ok = result == TransferResult::ok;
            entry.binary = self.binary;
            log.write(&entry);
        }
        if result == TransferResult::aborted {
            warn!(path = %self.path, bytes, "transfer aborted");
        }
    }
}

impl Drop for TransferRecord {
    fn drop(&mut self) {
        if !self.finished {
            // ABOR's reply for the transfer is 426.
            self.site.ops.metrics.command(self.command, 426);
            self.finish(TransferResult::aborted);
        }
    }
}
