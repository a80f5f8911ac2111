//! libunftp as a benchmark peer for `bench/compare.sh`: serves a local directory on a
//! loopback port with one user whose password is compared in plain text (no hashing),
//! the libunftp counterpart of wasmftpd's trivial-auth run.
//!
//! ```text
//! unftp-peer --root DIR --port N --user U [--host 127.0.0.1] [--passive 44000-44999]
//!            [--no-nodelay]
//! ```
//! The password is read from the environment variable `UNFTP_PEER_PASS`.
//!
//! libunftp 0.24 has no option for TCP_NODELAY on the control connection, and without it
//! every reply that follows another unacknowledged one waits for the client's delayed
//! ACK (Nagle), which caps a session at a few dozen commands per second. So by default
//! this binary accepts connections itself, sets TCP_NODELAY, and hands each one to
//! [`libunftp::Server::service`]. `--no-nodelay` uses libunftp's own listener instead.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use libunftp::{Server, ServerBuilder};
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, DefaultUser, Principal};
use unftp_sbe_fs::Filesystem;

/// One user, password compared as plain text.
#[derive(Debug)]
struct OneUser {
    user: String,
    pass: String,
}

#[async_trait]
impl Authenticator for OneUser {
    async fn authenticate(&self, username: &str, creds: &Credentials) -> Result<Principal, AuthenticationError> {
        if username != self.user {
            return Err(AuthenticationError::BadUser);
        }
        match creds.password.as_deref() {
            Some(p) if p == self.pass => Ok(Principal { username: username.to_string() }),
            _ => Err(AuthenticationError::BadPassword),
        }
    }
}

struct Args {
    root: PathBuf,
    host: IpAddr,
    port: u16,
    user: String,
    pass: String,
    passive: std::ops::RangeInclusive<u16>,
    nodelay: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("unftp-peer: {msg}");
    eprintln!("usage: unftp-peer --root DIR --port N --user U [--host IP] [--passive LO-HI] [--no-nodelay]  (password in UNFTP_PEER_PASS)");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut root = None;
    let mut host: IpAddr = [127, 0, 0, 1].into();
    let mut port = None;
    let mut user = None;
    let mut passive = 44000..=44999;
    let mut nodelay = true;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--root" => root = Some(PathBuf::from(val())),
            "--host" => host = val().parse().unwrap_or_else(|_| usage("bad --host")),
            "--port" => port = Some(val().parse().unwrap_or_else(|_| usage("bad --port"))),
            "--user" => user = Some(val()),
            "--passive" => {
                let v = val();
                let (lo, hi) = v.split_once('-').unwrap_or_else(|| usage("--passive wants LO-HI"));
                let lo: u16 = lo.parse().unwrap_or_else(|_| usage("bad --passive"));
                let hi: u16 = hi.parse().unwrap_or_else(|_| usage("bad --passive"));
                passive = lo..=hi;
            }
            "--no-nodelay" => nodelay = false,
            "-h" | "--help" => usage("help"),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let pass = std::env::var("UNFTP_PEER_PASS").unwrap_or_else(|_| usage("UNFTP_PEER_PASS is not set"));
    Args {
        root: root.unwrap_or_else(|| usage("--root is required")),
        host,
        port: port.unwrap_or_else(|| usage("--port is required")),
        user: user.unwrap_or_else(|| usage("--user is required")),
        pass,
        passive,
        nodelay,
    }
}

fn server(args: &Args, auth: &Arc<OneUser>) -> Server<Filesystem, DefaultUser> {
    let root = args.root.clone();
    ServerBuilder::with_authenticator(
        Box::new(move || Filesystem::new(root.clone()).expect("open root")),
        auth.clone(),
    )
    .passive_ports(args.passive.clone())
    // No log output (the other servers run with logging off too).
    .logger(slog::Logger::root(slog::Discard, slog::o!()))
    .build()
    .unwrap_or_else(|e| {
        eprintln!("unftp-peer: {e}");
        std::process::exit(1)
    })
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    // Fail early on a bad root rather than on the first login.
    if let Err(e) = Filesystem::new(args.root.clone()) {
        eprintln!("unftp-peer: root {}: {e}", args.root.display());
        std::process::exit(1);
    }
    let auth = Arc::new(OneUser { user: args.user.clone(), pass: args.pass.clone() });
    let addr = SocketAddr::new(args.host, args.port);
    if !args.nodelay {
        eprintln!("unftp-peer: libunftp listener on {addr} (no TCP_NODELAY)");
        if let Err(e) = server(&args, &auth).listen(addr.to_string()).await {
            eprintln!("unftp-peer: {e}");
            std::process::exit(1);
        }
        return;
    }
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("unftp-peer: bind {addr}: {e}");
        std::process::exit(1)
    });
    eprintln!("unftp-peer: listening on {addr} (TCP_NODELAY on control connections)");
    let args = Arc::new(args);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("unftp-peer: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // `Server::service` takes the server by value; building one is a handful of
        // Arc clones.
        let srv = server(&args, &auth);
        tokio::spawn(async move {
            let _ = srv.service(stream).await;
        });
    }
}
