//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, run by
//! `bench/fuzz.sh`) and for the tests that replay their seed corpus in the
//! normal suite. Each takes arbitrary bytes, must never panic on its own, and
//! panics (a finding) when the part of the server it drives breaks a promise:
//!
//! - [`line_reader`]: command lines come out of [`Control`] exactly as a plain reference
//!   model of the rules splits them (CR, LF or CRLF ends a line; Telnet `IAC`
//!   sequences removed; over-long lines reported and skipped), whatever way
//!   the bytes are cut into reads.
//! - [`path`]: a normalized path is absolute, has no `.`, `..` or empty
//!   segments, normalizes to itself, and its storage path stays in the home.
//! - [`config`]: any text either parses or gives an error naming a line of
//!   that text.
//! - [`session`]: a whole control connection on the in-memory backends (login
//!   included, so every command and its argument parsing is reached): every
//!   reply is well formed, the session ends, and nothing outside the
//!   account's home is created, changed or removed.
//! - [`proxy_header`]: a PROXY v1/v2 header read at accept from a real
//!   loopback connection: refused or accepted, never a panic, and when
//!   accepted exactly the header is consumed (what follows it is left for
//!   the FTP session).
//!
//! These drive the real code through its public API; nothing here is
//! compiled into a different shape for fuzzing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::backend::memory::{MemoryAuth, MemoryFs};
use crate::backend::{Account, EntryKind, Permissions, Storage};
use crate::ftp::SessionSettings;
use crate::ftp::control::{Control, Line};
use crate::ftp::path as ftp_path;
use crate::ftp::session::{self, Session};
use crate::site::{Site, SiteDirectory};

thread_local! {
    /// One runtime per fuzzing thread, reused for every input.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

// ---- Command lines ----

/// Feeds `data[2..]` through [`Control::next_line`] in reads whose sizes come from
/// `data[1]`, with the line limit from `data[0]`, and checks every line
/// against [`reference_lines`].
pub fn line_reader(data: &[u8]) {
    let [limit, cut, input @ ..] = data else {
        return;
    };
    let max_len = 16 + usize::from(*limit) * 4;
    // Read sizes 1..=16 cycling from the seed, so CR and LF land on every
    // side of a read boundary.
    let sizes: Vec<usize> = (0..8)
        .map(|i| 1 + usize::from(cut.rotate_left(i) & 15))
        .collect();
    let got = read_all_lines(input, &sizes, max_len);
    let expected = reference_lines(input, max_len);
    assert_eq!(
        got, expected,
        "line reader and model disagree (max_len {max_len})"
    );
}

/// Every line [`Control`] gives for `input` read in pieces of `sizes`
/// (cycled), up to and including `Closed`.
pub fn read_all_lines(input: &[u8], sizes: &[usize], max_len: usize) -> Vec<Line> {
    let source = Pieces {
        data: input.to_vec(),
        at: 0,
        sizes: sizes.to_vec(),
        turn: 0,
    };
    let mut reader = Control::new(Box::new(source), max_len);
    block_on(async {
        let mut lines = Vec::new();
        loop {
            let line = reader
                .next_line()
                .await
                .expect("in-memory reads do not fail");
            let closed = line == Line::Closed;
            lines.push(line);
            if closed {
                return lines;
            }
        }
    })
}

/// The line rules written as plainly as possible, over the whole input at
/// once: a line ends at CR, LF or CRLF (a LF right after a CR belongs to that
/// CR); a line longer than `max_len` is `TooLong`; otherwise its Telnet
/// sequences are removed (`IAC IAC` is a literal 255, `IAC WILL|WONT|DO|DONT
/// x` three bytes, any other `IAC x` two). Bytes after the last line end
/// never make a line. Ends with `Closed`.
pub fn reference_lines(input: &[u8], max_len: usize) -> Vec<Line> {
    const IAC: u8 = 255;
    let mut lines = Vec::new();
    let mut current = Vec::new();
    let mut previous_was_cr = false;
    for &byte in input {
        if byte == b'\n' && previous_was_cr {
            previous_was_cr = false;
            continue;
        }
        previous_was_cr = byte == b'\r';
        if byte != b'\r' && byte != b'\n' {
            current.push(byte);
            continue;
        }
        let line = std::mem::take(&mut current);
        if line.len() > max_len {
            lines.push(Line::TooLong);
            continue;
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < line.len() {
            if line[i] != IAC {
                out.push(line[i]);
                i += 1;
            } else if line.get(i + 1) == Some(&IAC) {
                out.push(IAC);
                i += 2;
            } else if matches!(line.get(i + 1), Some(251..=254)) {
                i += 3;
            } else {
                i += 2;
            }
        }
        lines.push(Line::Command(out));
    }
    lines.push(Line::Closed);
    lines
}

/// An in-memory stream that hands out its bytes in reads of the given sizes
/// (and swallows what is written to it).
struct Pieces {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        let size = me
            .sizes
            .get(me.turn % me.sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        me.turn += 1;
        let end = (me.at + size).min(me.data.len());
        let n = (end - me.at).min(buf.remaining());
        buf.put_slice(&me.data[me.at..me.at + n]);
        me.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pieces {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// ---- Paths ----

/// Splits the input at the first `\n` into a working directory (normalized
/// first, as a session's always is) and an argument, resolves, and checks the
/// normalization and confinement promises.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (cwd, arg) = text.split_once('\n').unwrap_or(("/", text));
    let Ok(cwd) = ftp_path::resolve("/", cwd) else {
        return;
    };
    check_path(&cwd, arg);
}

/// The promises of [`ftp_path::resolve`] for one working directory and
/// argument (shared with the property tests).
pub fn check_path(cwd: &str, arg: &str) {
    let resolved = ftp_path::resolve(cwd, arg);
    if arg.chars().any(char::is_control) {
        assert!(resolved.is_err(), "control character accepted in {arg:?}");
        return;
    }
    let Ok(p) = resolved else {
        panic!("{arg:?} refused without a control character");
    };
    assert!(is_normalized(&p), "{cwd:?} + {arg:?} gave {p:?}");
    assert_eq!(
        ftp_path::resolve("/", &p).as_deref(),
        Ok(p.as_str()),
        "not idempotent"
    );
    assert_eq!(
        ftp_path::resolve("/elsewhere", &p).as_deref(),
        Ok(p.as_str()),
        "an absolute result does not depend on the working directory"
    );
    if p != "/" {
        assert_eq!(
            ftp_path::child(ftp_path::parent(&p), ftp_path::file_name(&p)),
            p,
            "parent + name"
        );
    }
    for home in ["/", "/home/alice"] {
        let storage = ftp_path::to_storage(home, &p);
        assert!(is_normalized(&storage), "storage path {storage:?}");
        let inside = home == "/"
            || storage == home
            || storage
                .strip_prefix(home)
                .is_some_and(|rest| rest.starts_with('/'));
        assert!(inside, "{p:?} left home {home:?} as {storage:?}");
    }
}

/// Absolute, and no empty, `.` or `..` segment (the root is just `/`).
fn is_normalized(p: &str) -> bool {
    p == "/"
        || (p.starts_with('/')
            && p[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."))
}

// ---- PROXY protocol headers ----

/// Sends `data` over a loopback connection to [`crate::ops::proxy::accept`]
/// (from a trusted address) and checks that an accepted header was consumed
/// exactly: what remains readable is what followed it.
pub fn proxy_header(data: &[u8]) {
    use crate::ops::proxy::{ProxySettings, accept};
    block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback listener");
        let addr = listener.local_addr().expect("address");
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut stream, peer) = listener.accept().await.expect("accept");
        client.write_all(data).await.expect("send");
        client.shutdown().await.expect("shutdown");
        let settings = ProxySettings {
            enabled: true,
            trusted: crate::ops::NetList::new(vec!["127.0.0.0/8".parse().expect("net")]),
        };
        // A short limit: an incomplete header waits for the rest until then.
        let result = accept(&mut stream, peer, &settings, Duration::from_millis(20)).await;
        if result.is_ok() {
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.expect("read the rest");
            assert!(
                rest.len() < data.len(),
                "an accepted header consumed nothing"
            );
            assert!(data.ends_with(&rest), "the header consumed the wrong bytes");
            let header = &data[..data.len() - rest.len()];
            assert!(
                header.starts_with(b"PROXY ") || header.starts_with(b"\r\n\r\n\0\r\nQUIT\n"),
                "accepted something that is no PROXY header: {header:?}"
            );
        }
    });
}

// ---- Configuration ----

/// Parses the input as a config file; an error must name a line of it (or
/// none) and this file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/nonexistent/fuzz/wasmftpd.toml");
    if let Err(err) = crate::config::parse(file, text) {
        assert_eq!(err.file, file);
        let lines = text.split('\n').count();
        assert!(
            err.line <= lines,
            "error on line {} of {lines}: {err}",
            err.line
        );
        assert!(!err.message.is_empty(), "empty error message: {err:?}");
        let _ = err.to_string();
    }
}

// ---- Whole sessions ----

/// A site on the in-memory backends: user `alice` (password `secret`, home
/// `/home/alice`) with every permission, and files of other users that she
/// must never reach.
struct OneSite(Arc<Site>);

impl SiteDirectory for OneSite {
    fn by_host(&self, name: &str) -> Option<Arc<Site>> {
        (name == "ftp.example.test").then(|| self.0.clone())
    }

    fn by_user_suffix(&self, site: &str) -> Option<Arc<Site>> {
        (site == "example").then(|| self.0.clone())
    }
}

fn fixture() -> Arc<Site> {
    let fs = MemoryFs::new();
    fs.mkdir_all("/home/alice/docs");
    fs.put_file("/home/alice/a.txt", b"one\ntwo\r\nthree\n");
    fs.put_file("/home/alice/docs/b.bin", &[0, 255, 10, 13, 10]);
    fs.mkdir_all("/home/bob");
    fs.put_file("/home/bob/secret", b"bob's");
    fs.put_file("/top", b"root file");
    let auth = MemoryAuth::new().with_user("alice", "secret", "/home/alice", Permissions::all());
    Arc::new(Site {
        name: "example".into(),
        host_names: vec!["ftp.example.test".into()],
        allow_user_at_site: true,
        banner: "fuzz".into(),
        auth: Arc::new(auth),
        storage: Arc::new(fs.clone()),
        passive_ports: None,
        max_connections: None,
        sessions: Default::default(),
        ops: crate::site::SiteOps::detached("example"),
        tls: None,
        events: Default::default(),
    })
}

/// The facts of a session that sees the whole tree (for the checks).
fn whole_tree_facts(account: &Account) -> crate::backend::SessionFacts {
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    crate::backend::SessionFacts::new("example", account, "/", client, false)
}

/// Every path in the tree with its content (`None` for a directory).
async fn snapshot(storage: &dyn Storage) -> Tree {
    let mut out = BTreeMap::new();
    let mut pending = vec!["/".to_string()];
    while let Some(dir) = pending.pop() {
        let Ok(lister) = storage.list_dir(&dir).await else {
            continue;
        };
        let Ok(entries) = crate::backend::read_all(lister).await else {
            continue;
        };
        for entry in entries {
            let p = ftp_path::child(&dir, &entry.name);
            if entry.metadata.kind == EntryKind::Directory {
                pending.push(p.clone());
                out.insert(p, None);
            } else {
                let mut content = Vec::new();
                if let Ok(mut reader) = storage.open_read(&p, 0).await {
                    while let Ok(chunk) = reader.read(1 << 16).await {
                        if chunk.is_empty() {
                            break;
                        }
                        content.extend_from_slice(&chunk);
                    }
                }
                out.insert(p, Some(content));
            }
        }
    }
    out
}

/// Runs one control connection whose client sends `data[1..]` (after logging
/// in when `data[0]` is even) and then closes its side.
pub fn session(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut client_bytes = Vec::new();
    if mode % 2 == 0 {
        client_bytes.extend_from_slice(b"USER alice\r\nPASS secret\r\n");
    }
    client_bytes.extend_from_slice(input);
    block_on(run_session(client_bytes));
}

async fn run_session(client_bytes: Vec<u8>) {
    let site = fixture();
    let account = Account {
        user: "check".into(),
        home: "/".into(),
        permissions: Permissions::all(),
        ..Account::default()
    };
    let whole_tree = site.storage.open_session(&whole_tree_facts(&account));
    let before = snapshot(&*whole_tree).await;

    let settings = SessionSettings {
        // Short waits so an input that opens a data connection nobody uses
        // costs milliseconds; the logic is the same.
        idle_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_millis(2),
        passive_keep: Duration::from_millis(2),
        // Any free port on loopback; nobody connects to it.
        passive_ports: 0..=0,
        max_line_length: 512,
        login_failure_delay: Duration::ZERO,
        max_login_failures: 3,
        ..SessionSettings::default()
    };
    // The client sits at a documentation address (RFC 5737): PORT/EPRT may
    // only name it, and nothing answers there, so no data ever leaves.
    let peer: SocketAddr = "192.0.2.1:40000".parse().expect("valid address");
    let local: SocketAddr = "127.0.0.1:21".parse().expect("valid address");
    let (client, server) = tokio::io::duplex(1 << 16);
    let session = Session::new(
        Arc::new(settings),
        peer,
        local,
        Some(site.clone()),
        Arc::new(OneSite(site.clone())),
        crate::ops::Ops::detached(),
        None,
    );
    let control = Control::new(Box::new(server), 512);

    let (mut client_read, mut client_write) = tokio::io::split(client);
    let send = async move {
        let _ = client_write.write_all(&client_bytes).await;
        let _ = client_write.shutdown().await;
    };
    let receive = async move {
        let mut replies = Vec::new();
        let _ = client_read.read_to_end(&mut replies).await;
        replies
    };
    let serve = session::run(session, control, crate::ftp::Closing::never());
    let all = async { tokio::join!(serve, send, receive).2 };
    let replies = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the session ended");
    check_replies(&replies);

    let after = snapshot(&*whole_tree).await;
    assert_eq!(
        outside_home(&before),
        outside_home(&after),
        "a session changed files outside its home"
    );
}

type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// The part of a tree outside alice's home.
fn outside_home(tree: &Tree) -> Tree {
    tree.iter()
        .filter(|(p, _)| *p != "/home/alice" && !p.starts_with("/home/alice/"))
        .map(|(p, c)| (p.clone(), c.clone()))
        .collect()
}

/// Replies are CRLF lines; each reply starts `ddd-` (more lines follow) or
/// `ddd ` with a code from 100 to 599, and a multi-line reply ends with the
/// same code and a space.
pub fn check_replies(wire: &[u8]) {
    let text = String::from_utf8_lossy(wire);
    assert!(
        wire.is_empty() || text.ends_with("\r\n"),
        "reply not ended by CRLF: {text:?}"
    );
    let mut open: Option<&str> = None;
    for line in text.split_terminator("\r\n") {
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "bare CR or LF in {line:?}"
        );
        let code = line.get(..3);
        let separator = line.as_bytes().get(3).copied();
        let numeric = code.is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit()));
        match open {
            None => {
                let code = code
                    .filter(|_| numeric)
                    .unwrap_or_else(|| panic!("no reply code: {line:?}"));
                assert!(("100".."600").contains(&code), "reply code {code}");
                match separator {
                    Some(b'-') => open = Some(code),
                    Some(b' ') => {}
                    _ => panic!("reply code not followed by ' ' or '-': {line:?}"),
                }
            }
            Some(first) => {
                if numeric && code == Some(first) && separator == Some(b' ') {
                    open = None;
                }
            }
        }
    }
    assert!(open.is_none(), "multi-line reply never ended: {text:?}");
}

#[cfg(test)]
mod tests;
