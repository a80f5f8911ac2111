//! Helpers several commands share: data-connection setup checks, uploads,
//! directory listings and the TYPE A size computation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::backend::{DirEntry, ErrorKind, Event, EventKind, Metadata, Permissions, WriteMode};
use crate::ftp::dtp::{self, Job};
use crate::ftp::listing::{LineFormat, ListingHead, ListingReader};
use crate::ftp::path;
use crate::ftp::reply::{ErrorContext, Reply, ReplyCode, storage_error};
use crate::ftp::session::{HandlerResult, KeptListener, OrReply, Session, Target, TransferType};

/// Largest file whose TYPE A size SIZE computes by reading it.
pub const ASCII_SIZE_LIMIT: u64 = 16 * 1024 * 1024;

/// The metadata of a regular file, or `550` for a directory: SIZE and MDTM
/// answer for files only (clients use them to tell files from directories).
pub async fn file_metadata(target: &Target) -> Result<Metadata, Reply> {
    let meta = target.fs.stat(&target.storage).await.or_reply()?;
    if meta.is_dir() {
        return Err(Reply::new(
            ReplyCode::FileNotAvailable,
            "Not a regular file",
        ));
    }
    Ok(meta)
}

pub fn refuse_after_epsv_all(session: &Session) -> Result<(), Reply> {
    if session.epsv_all {
        return Err(Reply::new(
            ReplyCode::BadSequence,
            "Only EPSV is allowed after EPSV ALL",
        ));
    }
    Ok(())
}

pub fn cant_listen() -> Reply {
    Reply::new(
        ReplyCode::CantOpenDataConnection,
        "Can't open passive connection",
    )
}

/// A listener on the control connection's local address, in the site's
/// passive port range (or the server's): the session's kept one when it is
/// still usable, else a new one, which the session then keeps.
pub async fn passive_listener(session: &mut Session) -> Result<Arc<TcpListener>, Reply> {
    // A new PASV replaces the previous endpoint.
    session.clear_data_endpoint();
    let ports = session
        .site
        .as_ref()
        .and_then(|site| site.passive_ports.clone())
        .unwrap_or_else(|| session.settings.passive_ports.clone());
    if let Some(mut kept) = session.kept_listener.take() {
        let usable = Arc::strong_count(&kept.listener) == 1
            && kept.listener.local_addr().is_ok_and(|addr| {
                addr.ip() == session.local.ip() && dtp::in_passive_range(&ports, addr.port())
            });
        if usable {
            dtp::drain_pending(&kept.listener);
            kept.until = tokio::time::Instant::now() + session.settings.passive_keep;
            let listener = kept.listener.clone();
            session.kept_listener = Some(kept);
            return Ok(listener);
        }
    }
    let listener = Arc::new(
        dtp::listen(session.local.ip(), &ports)
            .await
            .map_err(|err| {
                tracing::warn!(%err, "no passive port available");
                cant_listen()
            })?,
    );
    if !session.settings.passive_keep.is_zero() {
        session.kept_listener = Some(KeptListener {
            listener: listener.clone(),
            until: tokio::time::Instant::now() + session.settings.passive_keep,
        });
    }
    Ok(listener)
}

/// RFC 2577: active data connections go only to the client itself and never
/// to a privileged port, unless the configuration allows it.
pub fn check_active_target(session: &Session, addr: SocketAddr) -> Result<(), Reply> {
    if session.settings.allow_foreign_data {
        return Ok(());
    }
    if !dtp::same_host(addr.ip(), session.peer.ip()) {
        return Err(Reply::new(
            ReplyCode::ParameterNotImplemented,
            "Data connections only to the client's own address",
        ));
    }
    if addr.port() < 1024 {
        return Err(Reply::new(
            ReplyCode::ParameterNotImplemented,
            "Data connections to ports below 1024 are refused",
        ));
    }
    Ok(())
}

/// How an upload treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// STOR: replace, or continue at a REST offset.
    Store,
    /// APPE: add to the end.
    Append,
}

/// STOR and APPE: open the file for writing and start receiving.
pub async fn upload(session: &mut Session, arg: &str, kind: Upload) -> HandlerResult {
    session.require_data_endpoint()?;
    let offset = session.take_rest();
    let (needs, mode) = match kind {
        Upload::Append => (Permissions::APPEND, WriteMode::Append),
        Upload::Store if offset > 0 => (
            Permissions::WRITE | Permissions::APPEND,
            WriteMode::Offset(offset),
        ),
        Upload::Store => (Permissions::WRITE, WriteMode::Truncate),
    };
    let target = session.target(arg, needs)?;
    let context = match mode {
        WriteMode::Offset(_) => ErrorContext::Resume,
        _ => ErrorContext::Command,
    };
    let writer = target
        .fs
        .open_write(&target.storage, mode)
        .await
        .map_err(|err| storage_error(&err, context))?;
    let ascii = session.transfer_type == TransferType::Ascii;
    let verb = if kind == Upload::Append {
        "APPE"
    } else {
        "STOR"
    };
    let report = transfer_report(session, EventKind::Upload, &target.storage);
    session.start_transfer(
        Job::Receive { writer, ascii },
        format!("{verb} {}", target.client),
        "Ok to send data",
        report,
    )
}

/// Splits `ls`-style flags (`-a`, `-l`, `-la`, ...) off a LIST/NLST/STAT
/// argument: clients send them although FTP has none.
pub fn strip_list_flags(arg: &str) -> &str {
    let mut rest = arg.trim_start();
    while rest.starts_with('-') {
        match rest.split_once(' ') {
            Some((_, tail)) => rest = tail.trim_start(),
            None => return "",
        }
    }
    rest
}

/// What LIST, NLST and STAT show for their argument.
pub struct Listed {
    /// The path listed, as the client sees it (the directory, for a wildcard).
    pub client: String,
    /// The entries, or the first of a large directory's and a way to the rest.
    pub head: ListingHead,
    /// For a wildcard argument, its directory part as the client wrote it
    /// (`dir/` for `dir/*.txt`, empty for `*.txt`): NLST puts it before each
    /// name, so that `mget` can RETR the names as they are.
    pub glob_prefix: Option<String>,
}

/// The entries LIST, NLST and STAT show for `arg` (after `ls` flags): a
/// directory's entries, a file itself, or, when the last path segment has
/// shell wildcards (`*`, `?`, `[...]`) and no entry has that literal name, the
/// entries of its directory that match (a leading `.` must be matched
/// literally, as in a shell). No match is `550`, as `ls` fails.
pub async fn list_argument(session: &mut Session, arg: &str) -> Result<Listed, Reply> {
    let arg = strip_list_flags(arg);
    let target = session.target(arg, Permissions::LIST)?;
    if let Some((dir, pattern)) = split_wildcard(arg) {
        match target.fs.stat(&target.storage).await {
            Err(err) if err.kind == ErrorKind::NotFound => {
                let dir_target = session.target(dir, Permissions::LIST)?;
                let head = match listing(&dir_target, Some(pattern)).await? {
                    (true, head) if !head.entries.is_empty() => head,
                    _ => return Err(Reply::new(ReplyCode::FileNotAvailable, "No files found")),
                };
                return Ok(Listed {
                    client: dir_target.client,
                    head,
                    glob_prefix: Some(dir.to_string()),
                });
            }
            // The literal name exists (or the check failed): list it as is.
            _ => {}
        }
    }
    let (_, head) = listing(&target, None).await?;
    Ok(Listed {
        client: target.client,
        head,
        glob_prefix: None,
    })
}

/// `dir/pattern` split where the last segment has wildcards and the directory
/// part has none (only the last segment is expanded). `None` when there is
/// nothing to expand or the pattern is not a valid one.
fn split_wildcard(arg: &str) -> Option<(&str, glob::Pattern)> {
    let is_wild = |s: &str| s.contains(['*', '?', '[']);
    let (dir, last) = match arg.rfind('/') {
        Some(i) => (&arg[..=i], &arg[i + 1..]),
        None => ("", arg),
    };
    if !is_wild(last) || is_wild(dir) {
        return None;
    }
    Some((dir, glob::Pattern::new(last).ok()?))
}

/// What a listing of `target` contains: a directory's entries (the head of
/// them, for a large one; only those matching `pattern`), or the entry itself
/// when it names a file (then `false`).
pub async fn listing(
    target: &Target,
    pattern: Option<glob::Pattern>,
) -> Result<(bool, ListingHead), Reply> {
    let to_reply =
        |err| crate::ftp::reply::storage_error(&err, crate::ftp::reply::ErrorContext::Command);
    match target.fs.list_dir(&target.storage).await {
        Ok(lister) => Ok((
            true,
            ListingHead::read(lister, pattern).await.map_err(to_reply)?,
        )),
        Err(err) if err.kind == ErrorKind::NotADirectory => {
            let metadata: Metadata = target.fs.stat(&target.storage).await.or_reply()?;
            Ok((
                false,
                ListingHead::one(DirEntry {
                    name: path::file_name(&target.client).to_string(),
                    metadata,
                }),
            ))
        }
        Err(err) => Err(to_reply(err)),
    }
}

/// Starts sending a listing over the data connection.
pub fn send_listing(
    session: &mut Session,
    head: ListingHead,
    format: LineFormat,
    what: String,
) -> HandlerResult {
    session.start_transfer(
        Job::Send {
            source: dtp::Source::Listing(Box::new(ListingReader::new(head, format))),
            ascii: false,
            skip: 0,
        },
        what,
        "Here comes the directory listing",
        None,
    )
}

/// `ls -l` lines for STAT over the control connection: the head of the
/// listing only, so a huge directory cannot make one reply unbounded.
pub fn long_listing(head: &ListingHead) -> Vec<String> {
    let format = LineFormat::Long {
        now: chrono::Utc::now(),
    };
    let mut out = String::with_capacity(head.entries.len() * 64);
    for entry in &head.entries {
        format.write(&mut out, entry);
    }
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    if head.rest.is_some() {
        lines.push(format!(
            "(only the first {} entries are shown; use LIST for all)",
            head.entries.len()
        ));
    }
    lines
}

/// A report that turns a transfer's end into an upload or download event
/// (`path` is the storage path), or `None` when the site has no event handlers.
pub fn transfer_report(
    session: &Session,
    kind: EventKind,
    path: &str,
) -> Option<dtp::TransferReport> {
    let (Some(site), Some(user)) = (&session.site, session.logged_in()) else {
        return None;
    };
    if site.events.is_empty() {
        return None;
    }
    let events = site.events.clone();
    let (site, user) = (site.name.clone(), user.account.user.clone());
    let (client_ip, path) = (session.client_ip(), path.to_string());
    Some(Box::new(move |bytes, duration, ok| {
        events.emit(|| Event {
            kind,
            site,
            user,
            client_ip,
            path: Some(path),
            target: None,
            size: Some(bytes),
            duration: Some(duration),
            ok,
            time: std::time::SystemTime::now(),
        });
    }))
}

/// Reports a file operation to the site's event handlers, if it has any.
/// `path` and `target` are storage paths: what names the file in the backend.
pub fn file_event(session: &Session, kind: EventKind, path: &str, target: Option<&str>, ok: bool) {
    let (Some(site), Some(user)) = (&session.site, session.logged_in()) else {
        return;
    };
    site.events.emit(|| Event {
        kind,
        site: site.name.clone(),
        user: user.account.user.clone(),
        client_ip: session.client_ip(),
        path: Some(path.to_string()),
        target: target.map(str::to_string),
        size: None,
        duration: None,
        ok,
        time: std::time::SystemTime::now(),
    });
}

/// Reads a file through the LF → CRLF conversion to count what RETR would
/// send. The control connection waits meanwhile, so the work is bounded three
/// ways: files over [`ASCII_SIZE_LIMIT`] are refused without reading (as
/// ProFTPD does), reading stops once the plugin has given more bytes than the
/// file's size (a reader that never ends, or a file growing under us), and the
/// whole count must finish within `time_limit`. Each bound answers `550`, and
/// TYPE I's SIZE is always available.
pub async fn ascii_size(target: &Target, size: u64, time_limit: Duration) -> Result<u64, Reply> {
    let refused = |why: &str| {
        Reply::new(
            ReplyCode::FileNotAvailable,
            format!("SIZE not allowed in ASCII mode {why}; use TYPE I"),
        )
    };
    if size > ASCII_SIZE_LIMIT {
        return Err(refused(&format!(
            "for files over {} MiB",
            ASCII_SIZE_LIMIT >> 20
        )));
    }
    let count = async {
        let mut reader = target.fs.open_read(&target.storage, 0).await.or_reply()?;
        let mut converter = crate::ftp::ascii::ToCrlf::default();
        let mut read = 0u64;
        let mut total = 0u64;
        loop {
            let chunk = reader.read(dtp::CHUNK).await.or_reply()?;
            if chunk.is_empty() {
                return Ok(total);
            }
            read += chunk.len() as u64;
            if read > size {
                return Err(refused("for a file that changes while it is read"));
            }
            total += chunk.len() as u64 + converter.extra(&chunk);
        }
    };
    tokio::time::timeout(time_limit, count)
        .await
        .unwrap_or_else(|_| Err(refused("for a file that takes this long to read")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_flags() {
        assert_eq!(strip_list_flags("-la"), "");
        assert_eq!(strip_list_flags("-a -l dir"), "dir");
        assert_eq!(strip_list_flags("dir name"), "dir name");
        assert_eq!(strip_list_flags(""), "");
    }
}
