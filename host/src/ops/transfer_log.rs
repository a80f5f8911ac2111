//! The transfer log (`transfer_log`, `transfer_log_format` in `[server]` and
//! in `[site.NAME]`): one line per finished transfer and per file operation,
//! as JSON lines or in the classic xferlog format (wu-ftpd, vsftpd, ProFTPD)
//! that log analysers read. A site with a log of its own writes there; the
//! others write to the server's.
//!
//! Lines are formatted by the session and appended to a memory buffer; a
//! background thread per file writes them out (the same batched writer as the
//! server log, so no system call on a session's path). Files are reopened on
//! SIGHUP and reload, so logrotate can move them away; what was buffered
//! before goes to the old file. What is buffered at shutdown, or when a
//! reload stops using a file, is written out.

use std::collections::{BTreeMap, HashMap};
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

impl Action {
    /// The JSON name (`action`).
    fn name(self) -> &'static str {
        match self {
            Action::Upload => "upload",
            Action::Download => "download",
            Action::Delete => "delete",
            Action::Rename => "rename",
            Action::Mkdir => "mkdir",
            Action::Rmdir => "rmdir",
        }
    }
}

/// One line of the log. Borrows what it names: the session already has it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry<'a> {
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: DateTime<Utc>,
    pub site: &'a str,
    pub user: &'a str,
    pub client_address: IpAddr,
    pub action: Action,
    /// The client's path (the user's view, `/` is the home).
    pub path: &'a str,
    /// RNTO's new name.
    pub target: Option<&'a str>,
    pub bytes: u64,
    pub duration_ms: u64,
    pub ok: bool,
    /// TYPE I (xferlog's `b`) or A (`a`); not in JSON lines.
    #[serde(skip)]
    pub binary: bool,
}

/// `2026-12-02T10:11:12.345Z`.
fn rfc3339_millis<S: serde::Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl<'a> Entry<'a> {
    /// An entry stamped now.
    pub fn now(
        site: &'a str,
        user: &'a str,
        client_address: IpAddr,
        action: Action,
        path: &'a str,
    ) -> Entry<'a> {
        Entry {
            time: Utc::now(),
            site,
            user,
            client_address: client_address.to_canonical(),
            action,
            path,
            target: None,
            bytes: 0,
            duration_ms: 0,
            ok: true,
            binary: true,
        }
    }

    pub fn took(mut self, duration: Duration) -> Entry<'a> {
        self.duration_ms = duration.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// The JSON line, written out by hand: the same text serde_json makes
    /// of this struct (a unit test holds the two equal), at a third of the
    /// cost, since names and values rarely need escaping.
    fn json_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"time\":\"");
        push_rfc3339_millis(&mut out, &self.time);
        out.extend_from_slice(b"\",\"site\":");
        push_json_str(&mut out, self.site);
        out.extend_from_slice(b",\"user\":");
        push_json_str(&mut out, self.user);
        out.extend_from_slice(b",\"client_address\":\"");
        match self.client_address {
            // By hand: `Display` goes through the formatting machinery
            // (a third of the line's cost).
            IpAddr::V4(ip) => {
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    push_u64(&mut out, octet.into());
                }
            }
            IpAddr::V6(ip) => {
                use std::io::Write;
                let _ = write!(out, "{ip}");
            }
        }
        out.extend_from_slice(b"\",\"action\":\"");
        out.extend_from_slice(self.action.name().as_bytes());
        out.extend_from_slice(b"\",\"path\":");
        push_json_str(&mut out, self.path);
        out.extend_from_slice(b",\"target\":");
        match self.target {
            Some(target) => push_json_str(&mut out, target),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"bytes\":");
        push_u64(&mut out, self.bytes);
        out.extend_from_slice(b",\"duration_ms\":");
        push_u64(&mut out, self.duration_ms);
        out.extend_from_slice(if self.ok {
            b",\"ok\":true}\n"
        } else {
            b",\"ok\":false}\n"
        });
        out
    }

    /// `current-time transfer-time remote-host file-size filename
    /// transfer-type special-action direction access-mode username
    /// service-name authentication-method authenticated-user-id
    /// completion-status`. Renames and directory operations have no xferlog
    /// form (`None`); deletes use direction `d` as ProFTPD does.
    fn xferlog_line(&self) -> Option<Vec<u8>> {
        let direction = match self.action {
            Action::Upload => 'i',
            Action::Download => 'o',
            Action::Delete => 'd',
            Action::Rename | Action::Mkdir | Action::Rmdir => return None,
        };
        let time = self.time.with_timezone(&Local);
        let access = if matches!(self.user, "anonymous" | "ftp") {
            'a'
        } else {
            'r'
        };
        Some(
            format!(
                "{} {} {} {} {} {} _ {} {} {} ftp 0 * {}\n",
                time.format("%a %b %e %H:%M:%S %Y"),
                self.duration_ms.div_ceil(1000),
                self.client_address,
                self.bytes,
                field(self.path),
                if self.binary { 'b' } else { 'a' },
                direction,
                access,
                field(self.user),
                if self.ok { 'c' } else { 'i' },
            )
            .into_bytes(),
        )
    }
}

/// A JSON string: as it is when nothing in it needs escaping (the usual
/// case), else as serde_json escapes it.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `n` in `width` digits, zero-padded.
fn push_padded(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut n = n;
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// `2026-12-02T10:11:12.345Z`, as chrono's `to_rfc3339_opts(Millis, true)`
/// writes it for years 0 to 9999.
fn push_rfc3339_millis(out: &mut Vec<u8>, time: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = time.year();
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(time.to_rfc3339_opts(SecondsFormat::Millis, true).as_bytes());
        return;
    }
    push_padded(out, year as u32, 4);
    out.push(b'-');
    push_padded(out, time.month(), 2);
    out.push(b'-');
    push_padded(out, time.day(), 2);
    out.push(b'T');
    push_padded(out, time.hour(), 2);
    out.push(b':');
    push_padded(out, time.minute(), 2);
    out.push(b':');
    // A leap second's nanoseconds go past 10^9: chrono writes second 60.
    let nanos = time.nanosecond();
    push_padded(out, time.second() + nanos / 1_000_000_000, 2);
    out.push(b'.');
    push_padded(out, nanos % 1_000_000_000 / 1_000_000, 3);
    out.push(b'Z');
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

/// One open log file, shared by everyone configured to write to that path.
struct Sink {
    path: PathBuf,
    writer: BatchedWriter,
    _flush: FlushOnDrop,
}

/// Where one site's lines go: a file, and the format they are written in
/// there (two sites may share a file, each in its own format).
#[derive(Clone)]
pub struct SiteLog {
    sink: Arc<Sink>,
    format: Format,
}

impl SiteLog {
    /// Appends one entry (formatted here, written by the background thread).
    pub fn write(&self, entry: &Entry) {
        let line = match self.format {
            Format::Json => Some(entry.json_line()),
            Format::Xferlog => entry.xferlog_line(),
        };
        if let Some(line) = line {
            use std::io::Write;
            let _ = self.sink.writer.clone().write_all(&line);
        }
    }
}

/// A log file and its format, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub format: Format,
}

/// What the configuration asks for: the server's log (`[server]
/// transfer_log`) and each site's own (`[site.NAME] transfer_log`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub server: Option<Target>,
    pub sites: BTreeMap<String, Target>,
}

/// Which configured log a file belongs to, when it cannot be opened.
#[derive(Debug)]
pub struct OpenError {
    /// `None`: the server's log; else the site's.
    pub site: Option<String>,
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot open {}: {}", self.path.display(), self.error)
    }
}

#[derive(Default)]
struct Routes {
    server: Option<SiteLog>,
    sites: HashMap<String, SiteLog>,
}

/// The server's transfer logs (possibly none): the server's, and the sites'
/// own. Cheap to ask when off.
pub struct TransferLog {
    routes: RwLock<Routes>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl TransferLog {
    pub fn disabled() -> TransferLog {
        TransferLog {
            routes: RwLock::new(Routes::default()),
        }
    }

    /// Starts logging everything to `path`, or fails naming it.
    pub fn to_file(path: &Path, format: Format) -> io::Result<TransferLog> {
        let log = TransferLog::disabled();
        log.configure(&Settings {
            server: Some(Target {
                path: path.to_path_buf(),
                format,
            }),
            sites: BTreeMap::new(),
        })
        .map_err(|e| e.error)?;
        Ok(log)
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where `site`'s lines go: its own log, else the server's, else nowhere.
    /// Sessions still open on a site that a reload removed write to the
    /// server's log.
    pub fn for_site(&self, site: &str) -> Option<SiteLog> {
        let routes = self.routes();
        routes.sites.get(site).or(routes.server.as_ref()).cloned()
    }

    /// Applies the (reloaded) settings. A file already open is reopened (log
    /// rotation moved it away, or not: either way the same path); a new path
    /// gets its own writer; a file nobody writes to any longer is written out
    /// and closed. Every file is opened before anything changes, so on error
    /// the running logs stay as they were.
    pub fn configure(&self, settings: &Settings) -> Result<(), OpenError> {
        let wanted = settings.server.iter().map(|target| (None, target)).chain(
            settings
                .sites
                .iter()
                .map(|(site, target)| (Some(site), target)),
        );
        let mut files: HashMap<&Path, File> = HashMap::new();
        for (site, target) in wanted {
            if files.contains_key(target.path.as_path()) {
                continue;
            }
            let file = open(&target.path).map_err(|error| OpenError {
                site: site.cloned(),
                path: target.path.clone(),
                error,
            })?;
            files.insert(&target.path, file);
        }
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut open_now: HashMap<PathBuf, Arc<Sink>> = HashMap::new();
        for log in routes.server.iter().chain(routes.sites.values()) {
            open_now
                .entry(log.sink.path.clone())
                .or_insert_with(|| log.sink.clone());
        }
        let mut sinks: HashMap<&Path, Arc<Sink>> = HashMap::new();
        for (path, file) in files {
            let sink = match open_now.remove(path) {
                Some(sink) => {
                    sink.writer.replace_output(file);
                    info!("transfer log {} reopened", path.display());
                    sink
                }
                None => {
                    let (writer, flush) = BatchedWriter::new(file);
                    Arc::new(Sink {
                        path: path.to_path_buf(),
                        writer,
                        _flush: flush,
                    })
                }
            };
            sinks.insert(path, sink);
        }
        let route = |target: &Target| SiteLog {
            sink: sinks[target.path.as_path()].clone(),
            format: target.format,
        };
        *routes = Routes {
            server: settings.server.as_ref().map(route),
            sites: settings
                .sites
                .iter()
                .map(|(site, target)| (site.clone(), route(target)))
                .collect(),
        };
        drop(routes);
        // Files nobody writes to any longer: out with what they hold now
        // (a writer that took one just before keeps it alive, and its drop
        // writes out the rest).
        for (_, sink) in open_now {
            sink.writer.flush_now();
        }
        Ok(())
    }

    /// Reopens every file (SIGHUP), reporting a failure in the log.
    pub fn reopen(&self) {
        let settings = {
            let routes = self.routes();
            let target = |log: &SiteLog| Target {
                path: log.sink.path.clone(),
                format: log.format,
            };
            Settings {
                server: routes.server.as_ref().map(target),
                sites: routes
                    .sites
                    .iter()
                    .map(|(site, log)| (site.clone(), target(log)))
                    .collect(),
            }
        };
        if let Err(e) = self.configure(&settings) {
            error!("cannot reopen transfer log: {e}");
        }
    }

    /// Writes out everything buffered, now (shutdown).
    pub fn flush(&self) {
        let routes = self.routes();
        for log in routes.server.iter().chain(routes.sites.values()) {
            log.sink.writer.flush_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: Action) -> Entry<'static> {
        Entry {
            time: "2026-12-02T10:11:12.345Z".parse().unwrap(),
            site: "main",
            user: "demo",
            client_address: "::ffff:192.0.2.7".parse().unwrap(),
            action,
            path: "/dir/a file.txt",
            target: None,
            bytes: 4096,
            duration_ms: 1500,
            ok: true,
            binary: true,
        }
        .clone()
    }

    fn write(log: &TransferLog, site: &str, action: Action) {
        let mut e = entry(action);
        e.site = site;
        log.for_site(site).expect("a log for the site").write(&e);
    }

    fn target(path: &Path, format: Format) -> Target {
        Target {
            path: path.to_path_buf(),
            format,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_site_writes_to_its_own_file_or_the_servers() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.log");
        let a = dir.path().join("a.log");
        let shared = dir.path().join("shared.log");
        let log = TransferLog::disabled();
        assert!(log.for_site("a").is_none());
        log.configure(&Settings {
            server: Some(target(&server, Format::Json)),
            sites: [
                ("a".to_string(), target(&a, Format::Json)),
                ("b".to_string(), target(&shared, Format::Json)),
                ("c".to_string(), target(&shared, Format::Xferlog)),
            ]
            .into(),
        })
        .unwrap();
        for site in ["a", "b", "c", "other"] {
            write(&log, site, Action::Download);
        }
        log.flush();
        assert_eq!(lines(&a).len(), 1);
        assert!(lines(&a)[0].contains(r#""site":"a""#));
        let shared_lines = lines(&shared);
        assert_eq!(shared_lines.len(), 2, "{shared_lines:?}");
        assert!(shared_lines[0].contains(r#""site":"b""#));
        // c writes xferlog lines into the same file.
        assert!(shared_lines[1].ends_with(" c"), "{shared_lines:?}");
        assert_eq!(lines(&server).len(), 1);
        assert!(lines(&server)[0].contains(r#""site":"other""#));
    }

    #[test]
    fn a_reload_moves_a_site_and_closes_what_nobody_uses() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.log");
        let old = dir.path().join("old.log");
        let new = dir.path().join("new.log");
        let log = TransferLog::disabled();
        let settings = |site: &Path| Settings {
            server: Some(target(&server, Format::Json)),
            sites: [("a".to_string(), target(site, Format::Json))].into(),
        };
        log.configure(&settings(&old)).unwrap();
        // A writer taken before the reload keeps writing to the old file,
        // and nothing it writes is lost when the old file is closed.
        let before = log.for_site("a").unwrap();
        for _ in 0..100 {
            write(&log, "a", Action::Upload);
        }
        log.configure(&settings(&new)).unwrap();
        before.write(&entry(Action::Delete));
        drop(before);
        write(&log, "a", Action::Download);
        // The site is removed: its lines go to the server's log.
        log.configure(&Settings {
            server: Some(target(&server, Format::Json)),
            sites: BTreeMap::new(),
        })
        .unwrap();
        write(&log, "a", Action::Mkdir);
        log.flush();
        assert_eq!(lines(&old).len(), 101);
        assert_eq!(lines(&new).len(), 1);
        assert!(lines(&new)[0].contains("download"));
        assert_eq!(lines(&server).len(), 1);
        assert!(lines(&server)[0].contains("mkdir"));
        // Turning every log off is a reload too.
        log.configure(&Settings::default()).unwrap();
        assert!(log.for_site("a").is_none());
    }

    #[test]
    fn json_line_has_the_documented_fields() {
        let mut e = entry(Action::Rename);
        e.client_address = e.client_address.to_canonical();
        e.target = Some("/b");
        let value: serde_json::Value = serde_json::from_slice(&e.json_line()).unwrap();
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
        assert_eq!(value["time"], "2026-12-02T10:11:12.345Z");
        assert_eq!(value["action"], "rename");
        assert_eq!(value["client_address"], "192.0.2.7");
        assert_eq!(value["target"], "/b");
        assert_eq!(value["bytes"], 4096);
        assert_eq!(value["ok"], true);
    }

    #[test]
    fn json_line_is_what_serde_json_makes() {
        let mut times = vec![
            Utc::now(),
            "2026-01-02T03:04:05Z".parse().unwrap(),
            "2026-12-31T23:59:59.999999Z".parse().unwrap(),
            "0099-01-01T00:00:00.5Z".parse().unwrap(),
        ];
        // A leap second.
        times.push(
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_milli_opt(23, 59, 59, 1_250)
                .unwrap()
                .and_utc(),
        );
        let names = [
            "/plain.bin",
            "/a \"quoted\" \\ name",
            "/tab\there\nnewline\u{1}",
            "/\u{e9}t\u{e9} \u{1f600}",
            "",
        ];
        for (i, time) in times.into_iter().enumerate() {
            for (j, name) in names.iter().enumerate() {
                let mut e = entry(Action::Upload);
                e.time = time;
                e.path = name;
                e.user = names[(j + 1) % names.len()];
                e.target = (i % 2 == 0).then_some(*name);
                e.ok = j % 2 == 0;
                e.bytes = u64::MAX >> (i * 7);
                e.duration_ms = j as u64;
                e.client_address = ["192.0.2.7", "2001:db8::1", "0.0.0.0", "255.10.100.1"][j % 4]
                    .parse()
                    .unwrap();
                let mut expected = serde_json::to_vec(&e).unwrap();
                expected.push(b'\n');
                assert_eq!(
                    String::from_utf8(e.json_line()).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
        for action in [
            Action::Upload,
            Action::Download,
            Action::Delete,
            Action::Rename,
            Action::Mkdir,
            Action::Rmdir,
        ] {
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::Value::from(action.name())
            );
        }
    }

    #[test]
    fn xferlog_line_has_fourteen_fields() {
        let line = String::from_utf8(entry(Action::Download).xferlog_line().unwrap()).unwrap();
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
        let delete = String::from_utf8(entry(Action::Delete).xferlog_line().unwrap()).unwrap();
        assert_eq!(delete.split_whitespace().nth(11), Some("d"));
    }

    #[test]
    fn reopen_after_rename_writes_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xfer.log");
        let log = TransferLog::to_file(&path, Format::Json).unwrap();
        write(&log, "main", Action::Upload);
        let rotated = dir.path().join("xfer.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        write(&log, "main", Action::Download);
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
            write(&log, "main", Action::Download);
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
        let error = log
            .configure(&Settings {
                server: Some(target(&path, Format::Json)),
                sites: [("s".to_string(), target(&bad, Format::Json))].into(),
            })
            .unwrap_err();
        assert_eq!(error.site.as_deref(), Some("s"));
        assert_eq!(error.path, bad);
        write(&log, "s", Action::Mkdir);
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
