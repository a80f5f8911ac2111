//! Session tests: `serve_connection` over loopback TCP against the in-memory
//! backends, driven by a small raw FTP client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::test_support::{Directory, site, test_settings};
use super::{Closing, Connection, SessionSettings, serve_connection};
use crate::backend::Permissions;
use crate::backend::memory::MemoryFs;
use crate::site::Site;

/// A test server on a loopback port.
struct Server {
    addr: SocketAddr,
    fs: MemoryFs,
}

impl Server {
    async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut SessionSettings)) -> Server {
        Self::start_on("127.0.0.1:0", true, tweak)
            .await
            .expect("bind loopback")
    }

    async fn start_on(
        bind: &str,
        preselect: bool,
        tweak: impl FnOnce(&mut SessionSettings),
    ) -> Option<Server> {
        let (site, fs, _auth) = site(Permissions::all());
        let mut settings = test_settings();
        tweak(&mut settings);
        let settings = Arc::new(settings);
        let listener = TcpListener::bind(bind).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let directory = Arc::new(Directory(site.clone()));
        let preselected: Option<Arc<Site>> = preselect.then_some(site);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let local = stream.local_addr().expect("local addr");
                tokio::spawn(serve_connection(Connection {
                    stream,
                    peer,
                    local,
                    site: preselected.clone(),
                    sites: directory.clone(),
                    settings: settings.clone(),
                    closing: Closing::never(),
                    ops: crate::ops::Ops::detached(),
                    server_tls: None,
                    implicit_tls: false,
                    login_watch: crate::server::limits::LoginWatch::detached(),
                }));
            }
        });
        Some(Server { addr, fs })
    }

    async fn client(&self) -> Client {
        let mut client = Client::connect(self.addr).await;
        let (code, text) = client.reply().await;
        assert_eq!(code, 220, "{text}");
        client
    }

    async fn logged_in(&self) -> Client {
        let mut client = self.client().await;
        client.login().await;
        client
    }
}

/// A raw FTP client: sends lines, reads (multi-line) replies.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (read, writer) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer,
        }
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("send");
    }

    /// One reply: its code and all its text (lines joined with `\n`).
    async fn reply(&mut self) -> (u16, String) {
        let mut first = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut first))
            .await
            .expect("reply in time")
            .expect("read reply");
        assert!(n > 0, "connection closed while waiting for a reply");
        let code: u16 = first[..3].parse().expect("reply code");
        let mut text = first.trim_end().to_string();
        if first.as_bytes()[3] == b'-' {
            loop {
                let mut line = String::new();
                self.reader
                    .read_line(&mut line)
                    .await
                    .expect("read reply line");
                assert!(!line.is_empty(), "closed inside a multi-line reply");
                text.push('\n');
                text.push_str(line.trim_end());
                if line.starts_with(&format!("{code} ")) {
                    break;
                }
            }
        }
        (code, text)
    }

    async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(line).await;
        self.reply().await
    }

    async fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line).await;
        assert_eq!(got, code, "{line} -> {text}");
        text
    }

    async fn login(&mut self) {
        self.expect("USER alice", 331).await;
        self.expect("PASS secret", 230).await;
    }

    /// Whether the server closed the control connection.
    async fn closed(&mut self) -> bool {
        let mut buf = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    async fn pasv(&mut self) -> TcpStream {
        let text = self.expect("PASV", 227).await;
        let inner = &text[text.find('(').expect("(") + 1..text.find(')').expect(")")];
        let n: Vec<u16> = inner
            .split(',')
            .map(|x| x.parse().expect("number"))
            .collect();
        let addr = SocketAddr::from((
            [n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8],
            n[4] << 8 | n[5],
        ));
        TcpStream::connect(addr).await.expect("connect passive")
    }

    fn epsv_port(text: &str) -> u16 {
        let inner = &text[text.find("(|||").expect("(|||") + 4..];
        inner[..inner.find('|').expect("|")].parse().expect("port")
    }

    async fn epsv(&mut self, server: SocketAddr) -> TcpStream {
        let text = self.expect("EPSV", 229).await;
        TcpStream::connect(SocketAddr::new(server.ip(), Self::epsv_port(&text)))
            .await
            .expect("connect epsv")
    }

    /// Sends PORT (or EPRT) for a fresh listener and returns it.
    async fn active(&mut self, extended: bool) -> TcpListener {
        let ip = self.writer.local_addr().expect("local").ip();
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind active");
        let addr = listener.local_addr().expect("addr");
        let line = match (extended, addr) {
            (false, SocketAddr::V4(v4)) => {
                let [a, b, c, d] = v4.ip().octets();
                format!(
                    "PORT {a},{b},{c},{d},{},{}",
                    addr.port() >> 8,
                    addr.port() & 0xff
                )
            }
            (true, SocketAddr::V4(_)) => format!("EPRT |1|{}|{}|", addr.ip(), addr.port()),
            (_, SocketAddr::V6(_)) => format!("EPRT |2|{}|{}|", addr.ip(), addr.port()),
        };
        self.expect(&line, 200).await;
        listener
    }

    /// Runs a download on an already opened data connection.
    async fn download(&mut self, mut data: TcpStream, command: &str) -> Vec<u8> {
        self.expect(command, 150).await;
        let mut out = Vec::new();
        data.read_to_end(&mut out).await.expect("read data");
        let (code, text) = self.reply().await;
        assert_eq!(code, 226, "{command}: {text}");
        out
    }

    async fn upload(&mut self, mut data: TcpStream, command: &str, bytes: &[u8]) {
        self.expect(command, 150).await;
        data.write_all(bytes).await.expect("write data");
        data.shutdown().await.expect("shutdown");
        drop(data);
        let (code, text) = self.reply().await;
        assert_eq!(code, 226, "{command}: {text}");
    }

    async fn list(&mut self, command: &str) -> String {
        let data = self.pasv().await;
        String::from_utf8(self.download(data, command).await).expect("utf-8 listing")
    }
}

/// Deterministic bytes that are not all text.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("test timed out")
}

#[tokio::test]
async fn greeting_login_navigation_quit() {
    within(async {
        let server = Server::start().await;
        let mut c = Client::connect(server.addr).await;
        assert_eq!(c.reply().await, (220, "220 Welcome to example".to_string()));
        c.expect("PWD", 530).await;
        c.expect("SYST", 215).await;
        c.login().await;
        c.expect("PWD", 257).await;
        assert_eq!(c.expect("MKD dir", 257).await, "257 \"/dir\" created");
        c.expect("CWD dir", 250).await;
        assert_eq!(
            c.expect("PWD", 257).await,
            "257 \"/dir\" is the current directory"
        );
        c.expect("CDUP", 250).await;
        c.expect("RMD dir", 250).await;
        c.expect("BOGUS", 500).await;
        c.expect("QUIT", 221).await;
        assert!(c.closed().await);
        assert!(!server.fs.exists("/home/alice/dir"));
    })
    .await;
}

#[tokio::test]
async fn binary_round_trip_in_every_data_mode() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        c.expect("TYPE I", 200).await;
        let data = pattern(1_000_003);
        for mode in ["PASV", "EPSV", "PORT", "EPRT"] {
            let name = format!("f-{mode}");
            let stream = match mode {
                "PASV" => c.pasv().await,
                "EPSV" => c.epsv(server.addr).await,
                _ => {
                    let listener = c.active(mode == "EPRT").await;
                    c.expect(&format!("STOR {name}"), 150).await;
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    stream.write_all(&data).await.expect("write");
                    drop(stream);
                    assert_eq!(c.reply().await.0, 226);
                    let listener = c.active(mode == "EPRT").await;
                    c.expect(&format!("RETR {name}"), 150).await;
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    let mut back = Vec::new();
                    stream.read_to_end(&mut back).await.expect("read");
                    assert_eq!(c.reply().await.0, 226);
                    assert!(back == data, "{mode} download differs");
                    continue;
                }
            };
            c.upload(stream, &format!("STOR {name}"), &data).await;
            let stream = if mode == "PASV" {
                c.pasv().await
            } else {
                c.epsv(server.addr).await
            };
            let back = c.download(stream, &format!("RETR {name}")).await;
            assert!(back == data, "{mode} download differs");
        }
        assert_eq!(server.fs.file("/home/alice/f-EPRT").expect("stored"), data);
        assert_eq!(c.expect("SIZE f-PASV", 213).await, "213 1000003");
    })
    .await;
}

#[tokio::test]
async fn eprt_over_ipv6() {
    within(async {
        let Some(server) = Server::start_on("[::1]:0", true, |_| {}).await else {
            return; // no IPv6 loopback here
        };
        let mut c = server.logged_in().await;
        c.expect("TYPE I", 200).await;
        let listener = c.active(true).await;
        c.expect("STOR v6", 150).await;
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.write_all(b"over six").await.expect("write");
        drop(stream);
        assert_eq!(c.reply().await.0, 226);
        assert_eq!(
            server.fs.file("/home/alice/v6").expect("stored"),
            b"over six"
        );
        c.expect("PASV", 425).await;
        c.expect("EPSV 1", 522).await;
        let data = c.epsv(server.addr).await;
        assert_eq!(c.download(data, "RETR v6").await, b"over six");
    })
    .await;
}

#[tokio::test]
async fn type_a_converts_both_ways() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        c.expect("TYPE A", 200).await;
        let data = c.pasv().await;
        c.upload(data, "STOR t.txt", b"one\r\ntwo\r\nthree\r\n")
            .await;
        assert_eq!(
            server.fs.file("/home/alice/t.txt").expect("stored"),
            b"one\ntwo\nthree\n"
        );
        assert_eq!(c.expect("SIZE t.txt", 213).await, "213 17");
        let data = c.pasv().await;
        assert_eq!(
            c.download(data, "RETR t.txt").await,
            b"one\r\ntwo\r\nthree\r\n"
        );
        c.expect("REST 5", 350).await;
        let data = c.pasv().await;
        assert_eq!(c.download(data, "RETR t.txt").await, b"two\r\nthree\r\n");
        c.expect("TYPE I", 200).await;
        assert_eq!(c.expect("SIZE t.txt", 213).await, "213 14");
        let data = c.pasv().await;
        assert_eq!(c.download(data, "RETR t.txt").await, b"one\ntwo\nthree\n");
    })
    .await;
}

/// Sizes around one transfer chunk: small files are moved inline, larger ones
/// through the helper task; both must carry every byte.
#[tokio::test]
async fn transfers_at_chunk_boundaries() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        c.expect("TYPE I", 200).await;
        let chunk = super::dtp::CHUNK;
        for size in [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 7] {
            let whole = pattern(size);
            let data = c.pasv().await;
            c.upload(data, "STOR b", &whole).await;
            assert!(
                server.fs.file("/home/alice/b").expect("stored") == whole,
                "STOR {size}"
            );
            let data = c.pasv().await;
            assert!(c.download(data, "RETR b").await == whole, "RETR {size}");
        }
    })
    .await;
}

#[tokio::test]
async fn rest_resumes_download_and_upload() {
    within(async {
        let server = Server::start().await;
        let whole = pattern(300_000);
        server.fs.put_file("/home/alice/r", &whole);
        let mut c = server.logged_in().await;
        c.expect("TYPE I", 200).await;
        c.expect("REST 123456", 350).await;
        let data = c.pasv().await;
        assert!(c.download(data, "RETR r").await == whole[123_456..]);
        // The REST was used up: a plain RETR sends everything.
        let data = c.pasv().await;
        assert_eq!(c.download(data, "RETR r").await.len(), whole.len());

        server.fs.put_file("/home/alice/u", &whole[..1000]);
        c.expect("REST 1000", 350).await;
        let data = c.epsv(server.addr).await;
        c.upload(data, "STOR u", &whole[1000..]).await;
        assert!(server.fs.file("/home/alice/u").expect("stored") == whole);
        let data = c.pasv().await;
        c.upload(data, "APPE u", b"tail").await;
        assert!(
            server
                .fs
                .file("/home/alice/u")
                .expect("stored")
                .ends_with(b"tail")
        );
    })
    .await;
}

#[tokio::test]
async fn abor_cuts_a_slow_download_while_control_stays_responsive() {
    within(async {
        let server = Server::start().await;
        server
            .fs
            .put_file("/home/alice/slow", &pattern(20 * super::dtp::CHUNK));
        server.fs.set_read_delay(Duration::from_millis(100));
        let mut c = server.logged_in().await;
        c.expect("TYPE I", 200).await;
        let mut data = c.pasv().await;
        c.expect("RETR slow", 150).await;
        let mut first = vec![0u8; 1000];
        data.read_exact(&mut first).await.expect("first bytes");
        c.expect("NOOP", 200).await;
        let status = c.expect("STAT", 211).await;
        assert!(
            status.contains("Transfer in progress: RETR /slow"),
            "{status}"
        );
        // Like Python's ftplib: ABOR with MSG_OOB, so the final LF is urgent data.
        socket2::SockRef::from(c.writer.as_ref())
            .send_out_of_band(b"ABOR\r\n")
            .expect("send ABOR");
        assert_eq!(c.reply().await.0, 426);
        assert_eq!(c.reply().await.0, 226);
        let mut rest = Vec::new();
        let _ = data.read_to_end(&mut rest).await;
        assert!(
            rest.len() + 1000 < 20 * super::dtp::CHUNK,
            "transfer was not cut"
        );
        c.expect("ABOR", 225).await;
        c.expect("PWD", 257).await;
    })
    .await;
}

#[tokio::test]
async fn quit_waits_for_the_running_upload() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        let mut data = c.pasv().await;
        c.expect("STOR q", 150).await;
        data.write_all(b"first ").await.expect("write");
        c.send("QUIT").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        data.write_all(b"second").await.expect("write");
        drop(data);
        assert_eq!(c.reply().await.0, 226);
        assert_eq!(c.reply().await.0, 221);
        assert_eq!(
            server.fs.file("/home/alice/q").expect("stored"),
            b"first second"
        );
    })
    .await;
}

#[tokio::test]
async fn client_vanishing_mid_upload_keeps_what_arrived() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        c.expect("TYPE I", 200).await;
        let mut data = c.pasv().await;
        c.expect("STOR partial", 150).await;
        data.write_all(&pattern(100_000)).await.expect("write");
        data.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(c);
        drop(data);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let kept = server.fs.file("/home/alice/partial").expect("partial file");
        assert!(kept.len() <= 100_000 && pattern(100_000).starts_with(&kept));
        // The server is still serving.
        let mut again = server.logged_in().await;
        again.expect("NOOP", 200).await;
    })
    .await;
}

#[tokio::test]
async fn rename_sequence() {
    within(async {
        let server = Server::start().await;
        server.fs.put_file("/home/alice/old", b"x");
        let mut c = server.logged_in().await;
        c.expect("RNTO new", 503).await;
        c.expect("RNFR old", 350).await;
        c.expect("RNTO new", 250).await;
        assert!(server.fs.exists("/home/alice/new") && !server.fs.exists("/home/alice/old"));
        c.expect("RNFR new", 350).await;
        c.expect("PWD", 257).await;
        c.expect("RNTO newer", 503).await;
    })
    .await;
}

#[tokio::test]
async fn wildcards_in_the_last_segment_of_list_nlst_and_stat() {
    within(async {
        let server = Server::start().await;
        for name in [
            "a.txt",
            "b.txt",
            "c.log",
            ".hidden.txt",
            "lit[1].txt",
            "lit1.txt",
        ] {
            server.fs.put_file(&format!("/home/alice/{name}"), b"x");
        }
        server.fs.mkdir_all("/home/alice/dir");
        server.fs.put_file("/home/alice/dir/x.txt", b"xx");
        let mut c = server.logged_in().await;
        // Sorted; a leading dot must be matched literally, as in a shell.
        assert_eq!(
            c.list("NLST *.txt").await,
            "a.txt\r\nb.txt\r\nlit1.txt\r\nlit[1].txt\r\n"
        );
        assert_eq!(c.list("NLST .*").await, ".hidden.txt\r\n");
        // The directory part comes back as written, so the names work in RETR.
        assert_eq!(c.list("NLST dir/*.txt").await, "dir/x.txt\r\n");
        assert_eq!(c.list("NLST /dir/?.txt").await, "/dir/x.txt\r\n");
        assert_eq!(c.list("NLST [ab].txt").await, "a.txt\r\nb.txt\r\n");
        // An existing literal name wins over its reading as a pattern.
        assert_eq!(c.list("NLST lit[1].txt").await, "lit[1].txt\r\n");
        let list = c.list("LIST -l *.log").await;
        assert_eq!(list.lines().count(), 1, "{list}");
        assert!(list.ends_with(" c.log\r\n"), "{list}");
        let stat = c.expect("STAT *.txt", 213).await;
        assert!(
            stat.contains(" a.txt\n") && stat.contains(" b.txt\n"),
            "{stat}"
        );
        assert!(!stat.contains("c.log"), "{stat}");
        // No match is an error, as `ls` makes it; so is a wildcard directory part.
        let _data = c.pasv().await;
        c.expect("NLST *.zip", 550).await;
        let _data = c.pasv().await;
        c.expect("NLST d*/x.txt", 550).await;
    })
    .await;
}

#[tokio::test]
async fn listings_with_utf8_names() {
    within(async {
        let server = Server::start().await;
        server.fs.put_file("/home/alice/größe.txt", b"12345");
        server.fs.mkdir_all("/home/alice/日本");
        let mut c = server.logged_in().await;
        c.expect("OPTS UTF8 ON", 200).await;
        let mlsd = c.list("MLSD").await;
        let mut lines: Vec<&str> = mlsd.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), 2, "{mlsd}");
        assert!(
            lines[0].starts_with("type=dir;") && lines[0].ends_with("; 日本"),
            "{mlsd}"
        );
        assert!(
            lines[1].starts_with("type=file;size=5;modify=")
                && lines[1].ends_with(";perm=rwadf; größe.txt")
        );
        assert!(mlsd.ends_with("\r\n"));
        let list = c.list("LIST -la").await;
        assert!(
            list.contains("-rw-r--r-- 1 ftp ftp            5 ") && list.contains(" größe.txt\r\n"),
            "{list}"
        );
        assert!(list.starts_with('d') || list.contains("\r\nd"));
        assert_eq!(c.list("NLST").await, "größe.txt\r\n日本\r\n");
        assert_eq!(c.list("NLST größe.txt").await, "größe.txt\r\n");
        c.expect("CWD 日本", 250).await;
        assert_eq!(
            c.expect("PWD", 257).await,
            "257 \"/日本\" is the current directory"
        );
        let mlst = c.expect("MLST /größe.txt", 250).await;
        assert!(mlst.contains("\n type=file;size=5;"), "{mlst}");
    })
    .await;
}

#[tokio::test]
async fn epsv_all_and_bounce_refusal() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        c.expect("PORT 127,0,0,1,0,22", 504).await;
        c.expect("PORT 192,0,2,1,200,10", 504).await;
        c.expect("EPRT |1|192.0.2.1|51210|", 504).await;
        c.expect("EPSV ALL", 200).await;
        c.expect("PASV", 503).await;
        c.expect("PORT 127,0,0,1,200,10", 503).await;
        let data = c.epsv(server.addr).await;
        assert_eq!(c.download(data, "LIST").await, b"");
    })
    .await;
}

#[tokio::test]
async fn passive_connection_from_another_address_is_refused() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        let text = c.expect("EPSV", 229).await;
        let port = Client::epsv_port(&text);
        // On Linux all of 127/8 is loopback, so 127.0.0.2 is "another host".
        let socket = TcpSocket::new_v4().expect("socket");
        if socket.bind("127.0.0.2:0".parse().expect("addr")).is_err() {
            return;
        }
        let mut intruder = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("connect");
        server.fs.put_file("/home/alice/secret", b"top secret");
        c.expect("RETR secret", 150).await;
        let mut stolen = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_millis(300),
            intruder.read_to_end(&mut stolen),
        )
        .await;
        assert!(stolen.is_empty(), "intruder got data");
        let mut real = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("connect");
        let mut got = Vec::new();
        real.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"top secret");
        assert_eq!(c.reply().await.0, 226);
    })
    .await;
}

#[tokio::test]
async fn data_connection_timeout() {
    within(async {
        let server = Server::start_with(|s| s.data_timeout = Duration::from_millis(200)).await;
        server.fs.put_file("/home/alice/f", b"x");
        let mut c = server.logged_in().await;
        c.expect("PASV", 227).await;
        c.expect("RETR f", 150).await;
        assert_eq!(c.reply().await.0, 425);
        c.expect("NOOP", 200).await;
    })
    .await;
}

#[tokio::test]
async fn over_long_line_is_refused_and_discarded() {
    within(async {
        let server = Server::start_with(|s| s.max_line_length = 64).await;
        let mut c = server.client().await;
        c.send(&format!("USER {}", "x".repeat(100_000))).await;
        assert_eq!(c.reply().await.0, 500);
        c.expect("NOOP", 200).await;
        c.login().await;
    })
    .await;
}

#[tokio::test]
async fn passive_port_is_kept_between_transfers_then_released() {
    within(async {
        let server = Server::start_with(|s| s.passive_keep = Duration::from_millis(300)).await;
        let mut c = server.logged_in().await;
        c.expect("TYPE I", 200).await;
        let text = c.expect("EPSV", 229).await;
        let port = Client::epsv_port(&text);
        let data = TcpStream::connect((server.addr.ip(), port))
            .await
            .expect("connect");
        c.upload(data, "STOR kept", b"first").await;
        // The next EPSV answers with the same port, and it works.
        let text = c.expect("EPSV", 229).await;
        assert_eq!(Client::epsv_port(&text), port);
        let data = TcpStream::connect((server.addr.ip(), port))
            .await
            .expect("connect");
        assert_eq!(c.download(data, "RETR kept").await, b"first");
        // Idle past passive_keep: the port is given back.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(TcpStream::connect((server.addr.ip(), port)).await.is_err());
        c.expect("NOOP", 200).await;
    })
    .await;
}

#[tokio::test]
async fn passive_keep_zero_opens_a_new_port_each_time() {
    within(async {
        let server = Server::start_with(|s| s.passive_keep = Duration::ZERO).await;
        let mut c = server.logged_in().await;
        let text = c.expect("EPSV", 229).await;
        let first = Client::epsv_port(&text);
        let data = TcpStream::connect((server.addr.ip(), first))
            .await
            .expect("connect");
        c.download(data, "LIST").await;
        // The first listener is closed once its transfer is over.
        assert!(TcpStream::connect((server.addr.ip(), first)).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn kept_passive_port_does_not_extend_the_idle_timeout() {
    within(async {
        let server = Server::start_with(|s| {
            s.idle_timeout = Duration::from_millis(400);
            s.passive_keep = Duration::from_millis(100);
        })
        .await;
        let mut c = server.logged_in().await;
        c.expect("EPSV", 229).await;
        let waited = std::time::Instant::now();
        assert_eq!(c.reply().await.0, 421);
        assert!(
            waited.elapsed() < Duration::from_millis(1500),
            "{:?}",
            waited.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn idle_timeout_closes_with_421() {
    within(async {
        let server = Server::start_with(|s| s.idle_timeout = Duration::from_millis(200)).await;
        let mut c = server.logged_in().await;
        let (code, _) = c.reply().await;
        assert_eq!(code, 421);
        assert!(c.closed().await);
    })
    .await;
}

#[tokio::test]
async fn failed_logins_are_limited() {
    within(async {
        let server = Server::start_with(|s| s.max_login_failures = 2).await;
        let mut c = server.client().await;
        c.expect("USER alice", 331).await;
        c.expect("PASS wrong", 530).await;
        c.expect("USER alice", 331).await;
        c.expect("PASS wrong", 421).await;
        assert!(c.closed().await);
    })
    .await;
}

#[tokio::test]
async fn host_or_user_at_site_when_no_site_is_preselected() {
    within(async {
        let server = Server::start_on("127.0.0.1:0", false, |_| {})
            .await
            .expect("server");
        let mut c = Client::connect(server.addr).await;
        assert_eq!(c.reply().await, (220, "220 wasmftpd ready".to_string()));
        c.expect("USER alice", 530).await;
        c.expect("HOST unknown.test", 504).await;
        assert_eq!(
            c.expect("HOST ftp.example.test", 220).await,
            "220 Welcome to example"
        );
        c.login().await;
        c.expect("REIN", 220).await;
        c.expect("PWD", 530).await;
        c.expect("USER alice@example", 331).await;
        c.expect("PASS secret", 230).await;
    })
    .await;
}

#[tokio::test]
async fn telnet_sequences_and_bare_lf() {
    within(async {
        let server = Server::start().await;
        let mut c = server.logged_in().await;
        c.writer
            .write_all(b"\xff\xf4\xff\xf2NOOP\n")
            .await
            .expect("write");
        assert_eq!(c.reply().await.0, 200);
    })
    .await;
}

#[tokio::test]
async fn a_full_disk_in_the_middle_of_a_large_upload_is_552() {
    within(async {
        let server = Server::start().await;
        server.fs.set_capacity(Some(100_000));
        let mut c = server.logged_in().await;
        let mut data = c.pasv().await;
        c.expect("STOR big", 150).await;
        // Many chunks: the writer task meets the full disk, and the error it
        // reports is the one the client sees.
        let sender = tokio::spawn(async move {
            let _ = data.write_all(&vec![b'x'; 4 << 20]).await;
        });
        let (code, text) = c.reply().await;
        assert_eq!(code, 552, "{text}");
        assert!(text.starts_with("552 No space left"), "{text}");
        let _ = sender.await;
        c.expect("NOOP", 200).await;
    })
    .await;
}

#[tokio::test]
async fn storage_errors_map_to_replies() {
    within(async {
        let server = Server::start().await;
        server.fs.set_capacity(Some(10));
        let mut c = server.logged_in().await;
        let data = c.pasv().await;
        c.expect("STOR big", 150).await;
        let mut data = data;
        let _ = data.write_all(&[b'x'; 100]).await;
        drop(data);
        assert_eq!(c.reply().await.0, 552);
        server.fs.fail(
            "/home/alice/broken",
            crate::backend::ErrorKind::PluginFailed,
        );
        c.expect("MKD broken", 451).await;
        c.expect("MKD a\u{1}b", 553).await;
    })
    .await;
}

#[tokio::test]
async fn login_timeout_closes_connections_that_never_log_in() {
    within(async {
        let server = Server::start_with(|s| s.login_timeout = Duration::from_millis(300)).await;
        // Idle, and busy with commands that are not a login: both are cut.
        let mut idle = server.client().await;
        let mut busy = server.client().await;
        let mut user = server.logged_in().await;
        let started = std::time::Instant::now();
        loop {
            let (code, text) = busy.cmd("NOOP").await;
            if code == 421 {
                assert!(text.contains("Login timeout"), "{text}");
                break;
            }
            assert_eq!(code, 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(busy.closed().await);
        assert_eq!(idle.reply().await.0, 421);
        assert!(idle.closed().await);
        // The logged-in session is past the login deadline and still served.
        user.expect("PWD", 257).await;
        // REIN starts the clock again.
        user.expect("REIN", 220).await;
        assert_eq!(user.reply().await.0, 421);
    })
    .await;
}
