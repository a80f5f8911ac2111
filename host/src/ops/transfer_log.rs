//! The transfer log (`[server] transfer_log`, `transfer_log_format`): one line
//! per finished transfer and per file operation, as JSON lines or in the
//! classic xferlog format (wu-ftpd, vsftpd, ProFTPD) that log analysers read.
//!
//! Lines are formatted by the session and appended to a memory buffer; a
//! background thread writes them out (the same batched writer as the server
//! log, so no system call on a session's path). The file is reopened on
//! SIGHUP and reload, so logrotate can move it away; what was buffered before
//! goes to the old file. What is buffered at shutdown is written out.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::Serialize;
use tracing::{error, info};

use crate::log_writer::{BatchedWriter, FlushOnDrop};

/// `transfer_log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xferlog,
}

/// What happened (`action` in a JSON line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Upload,
    Download,
    Delete,
    Rename,
    Mkdir,
    Rmdir,
}

/// One line of the log.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub time: String,
    pub site: String,
    pub user: String,
    pub client_address: IpAddr,
    pub action: Action,
    /// The client's path (the user's view, `/` is the home).
    pub path: String,
    /// RNTO's new name.
    pub target: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
    pub ok: bool,
    /// TYPE I (xferlog's `b`) or A (`a`); not in JSON lines.
    #[serde(skip)]
    pub binary: bool,
}

impl Entry {
    /// An entry stamped now.
    pub fn now(
        site: &str,
        user: &str,
        client_address: IpAddr,
        action: Action,
        path: &str,
    ) -> Entry {
        Entry {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            site: site.to_string(),
            user: user.to_string(),
            client_address: client_address.to_canonical(),
            action,
            path: path.to_string(),
            target: None,
            bytes: 0,
            duration_ms: 0,
            ok: true,
            binary: true,
        }
    }

    pub fn took(mut self, duration: Duration) -> Entry {
        self.duration_ms = duration.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    fn json_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// `current-time transfer-time remote-host file-size filename
    /// transfer-type special-action direction access-mode username
    /// service-name authentication-method authenticated-user-id
    /// completion-status`. Renames and directory operations have no xferlog
    /// form (`None`); deletes use direction `d` as ProFTPD does.
    fn xferlog_line(&self) -> Option<String> {
        let direction = match self.action {
            Action::Upload => 'i',
            Action::Download => 'o',
            Action::Delete => 'd',
            Action::Rename | Action::Mkdir | Action::Rmdir => return None,
        };
        let time = DateTime::parse_from_rfc3339(&self.time)
            .map(|t| t.with_timezone(&Local))
            .unwrap_or_else(|_| Local::now());
        let access = if matches!(self.user.as_str(), "anonymous" | "ftp") {
            'a'
        } else {
            'r'
        };
        Some(format!(
            "{} {} {} {} {} {} _ {} {} {} ftp 0 * {}\n",
            time.format("%a %b %e %H:%M:%S %Y"),
            self.duration_ms.div_ceil(1000),
            self.client_address,
            self.bytes,
            field(&self.path),
            if self.binary { 'b' } else { 'a' },
            direction,
            access,
            field(&self.user),
            if self.ok { 'c' } else { 'i' },
        ))
    }
}

/// xferlog fields are separated by spaces: whitespace in a name becomes `_`
/// (as ProFTPD does), control characters too.
fn field(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

struct Sink {
    path: PathBuf,
    format: Format,
    writer: BatchedWriter,
    _flush: FlushOnDrop,
}

/// The server's transfer log (possibly none). Cheap to call when off.
pub struct TransferLog {
    sink: RwLock<Option<Arc<Sink>>>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl TransferLog {
    pub fn disabled() -> TransferLog {
        TransferLog {
            sink: RwLock::new(None),
        }
    }

    /// Starts logging to `path`, or fails naming it.
    pub fn to_file(path: &Path, format: Format) -> io::Result<TransferLog> {
        let log = TransferLog::disabled();
        log.configure(Some((path, format)))?;
        Ok(log)
    }

    fn current(&self) -> Option<Arc<Sink>> {
        self.sink
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn enabled(&self) -> bool {
        self.current().is_some()
    }

    /// Applies the (reloaded) setting: the same file is reopened (log
    /// rotation); another file or format starts a new sink, and the old one
    /// writes out what it holds. On error the running log stays as it was.
    pub fn configure(&self, target: Option<(&Path, Format)>) -> io::Result<()> {
        let current = self.current();
        match (target, current) {
            (None, None) => Ok(()),
            (Some((path, format)), Some(sink)) if sink.path == path && sink.format == format => {
                let file = open(path)?;
                sink.writer.replace_output(file);
                info!("transfer log {} reopened", path.display());
                Ok(())
            }
            (target, _) => {
                let new = match target {
                    Some((path, format)) => {
                        let file = open(path)?;
                        let (writer, flush) = BatchedWriter::new(file);
                        Some(Arc::new(Sink {
                            path: path.to_path_buf(),
                            format,
                            writer,
                            _flush: flush,
                        }))
                    }
                    None => None,
                };
                let old = std::mem::replace(
                    &mut *self
                        .sink
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()),
                    new,
                );
                if let Some(old) = old {
                    old.writer.flush_now();
                }
                Ok(())
            }
        }
    }

    /// Reopens the current file (SIGHUP), reporting a failure in the log.
    pub fn reopen(&self) {
        if let Some(sink) = self.current()
            && let Err(e) = self.configure(Some((&sink.path, sink.format)))
        {
            error!("cannot reopen transfer log {}: {e}", sink.path.display());
        }
    }

    /// Appends one entry (formatted here, written by the background thread).
    pub fn write(&self, entry: &Entry) {
        let Some(sink) = self.current() else {
            return;
        };
        let line = match sink.format {
            Format::Json => Some(entry.json_line()),
            Format::Xferlog => entry.xferlog_line(),
        };
        if let Some(line) = line {
            use std::io::Write;
            let _ = sink.writer.clone().write_all(line.as_bytes());
        }
    }

    /// Writes out everything buffered, now (shutdown).
    pub fn flush(&self) {
        if let Some(sink) = self.current() {
            sink.writer.flush_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: Action) -> Entry {
        Entry {
            time: "2026-12-02T10:11:12.345Z".into(),
            site: "main".into(),
            user: "demo".into(),
            client_address: "::ffff:192.0.2.7".parse().unwrap(),
            action,
            path: "/dir/a file.txt".into(),
            target: None,
            bytes: 4096,
            duration_ms: 1500,
            ok: true,
            binary: true,
        }
        .clone()
    }

    #[test]
    fn json_line_has_the_documented_fields() {
        let mut e = entry(Action::Rename);
        e.client_address = e.client_address.to_canonical();
        e.target = Some("/b".into());
        let value: serde_json::Value = serde_json::from_str(e.json_line().trim_end()).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "time",
            "site",
            "user",
            "client_address",
            "action",
            "path",
            "target",
            "bytes",
            "duration_ms",
            "ok",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        assert_eq!(value["action"], "rename");
        assert_eq!(value["client_address"], "192.0.2.7");
        assert_eq!(value["target"], "/b");
        assert_eq!(value["bytes"], 4096);
        assert_eq!(value["ok"], true);
    }

    #[test]
    fn xferlog_line_has_fourteen_fields() {
        let line = entry(Action::Download).xferlog_line().unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        // The date is five fields (`Wed Dec  2 10:11:12 2026`).
        assert_eq!(fields.len(), 18, "{line}");
        assert_eq!(
            &fields[5..],
            [
                "2",
                "::ffff:192.0.2.7",
                "4096",
                "/dir/a_file.txt",
                "b",
                "_",
                "o",
                "r",
                "demo",
                "ftp",
                "0",
                "*",
                "c"
            ]
        );
        assert!(entry(Action::Mkdir).xferlog_line().is_none());
        assert_eq!(
            entry(Action::Delete)
                .xferlog_line()
                .unwrap()
                .split_whitespace()
                .nth(11),
            Some("d")
        );
    }

    #[test]
    fn reopen_after_rename_writes_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xfer.log");
        let log = TransferLog::to_file(&path, Format::Json).unwrap();
        log.write(&entry(Action::Upload));
        let rotated = dir.path().join("xfer.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.write(&entry(Action::Download));
        log.flush();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1, "{old}");
        assert!(old.contains("\"upload\""));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("\"download\""));
    }

    #[test]
    fn nothing_is_lost_when_the_log_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xfer.log");
        let log = TransferLog::to_file(&path, Format::Xferlog).unwrap();
        for _ in 0..1000 {
            log.write(&entry(Action::Download));
        }
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1000);
    }

    #[test]
    fn a_path_that_cannot_be_opened_is_an_error_and_keeps_the_old_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xfer.log");
        let log = TransferLog::to_file(&path, Format::Json).unwrap();
        let bad = dir.path().join("no-such-dir").join("x.log");
        assert!(log.configure(Some((&bad, Format::Json))).is_err());
        log.write(&entry(Action::Mkdir));
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
