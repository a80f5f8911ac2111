//! ftpbench: a small raw FTP client that measures an FTP server's throughput.
//!
//! Std only (no async runtime, no wasmtime) so it builds in seconds and adds no
//! client-side overhead worth measuring. Every test fails loudly on any reply it does
//! not expect, and checks what it downloads.
//!
//! Output: one machine-readable line per test on stdout,
//!   `result server=LABEL test=NAME unit=UNIT median=X runs=a,b,c,... ops=N`
//! where `ops` counts what the server did (bytes, files, logins, listings), so a
//! caller that measures the server's CPU can give it per operation.
//! progress and diagnostics on stderr. See `ftpbench --help`.

use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

macro_rules! fail {
    ($($t:tt)*) => { return Err(format!($($t)*)) };
}

const GIB: u64 = 1 << 30;
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Period of the content pattern: a prime, so blocks that are reordered, repeated or
/// dropped at any power-of-two boundary are detected.
const PATTERN_LEN: usize = 1_048_573;
/// Default buffer for reading data connections (--read-buf).
const READ_BUF: usize = 1 << 20;
/// Largest single write on an upload data connection.
const WRITE_CHUNK: usize = 1 << 20;
/// Names of the entries `prepare` creates in the LIST directory.
const LIST_PREFIX: &str = "entry-";

const HELP: &str = "\
ftpbench - raw FTP client benchmark (passive mode, binary type, TCP_NODELAY)

USAGE
  ftpbench prepare DIR [--big-size BYTES] [--list-entries N]
      Create DIR/big.bin (pattern content, default 1 GiB) and DIR/list10k/ with N
      (default 10000) empty files, for the server's root.
  ftpbench run [OPTIONS]
      Measure a server. Options (defaults in brackets):
        --host H [127.0.0.1]   --port P [21]   --user U [bench]   --pass P [bench]
        --label NAME [ftp]     label printed on result lines
        --runs N [5]           runs per test; the median is reported
        --tests LIST [retr,stor,small,login,list]   comma separated
        --retr-path PATH [/big.bin]      file to download (made by `prepare`)
        --no-warmup            skip the untimed passes before the timed RETR and STOR
                               runs (a RETR checking every byte, and an upload read
                               back and checked); sizes and small files are still
                               checked. For repeated invocations against one server.
        --no-pattern           do not verify the downloaded file's content against
                               the `prepare` pattern (size is still checked)
        --stor-size BYTES [1073741824]   upload size
        --stor-path PATH [WORK-DIR/ftpbench-stor-PID.bin]   upload target
        --keep-upload          leave the last timed upload on the server (no DELE
                               after it), so that a caller measuring the server's
                               CPU per upload does not count the DELE
        --work-dir PATH [/]    remote directory for uploads (files are deleted)
        --small-count N [1000] --small-size BYTES [4096]
        --login-clients N [8]  --login-secs S [5]
        --list-path PATH [/list10k]      --list-entries N [10000]
        --rcvbuf BYTES [0]     SO_RCVBUF for data connections (0: kernel autotuning,
                               up to net.ipv4.tcp_rmem's maximum, 32 MiB here)
        --read-buf BYTES [1048576]  read() size on data connections
        --epsv-only / --pasv-only        passive command (default: EPSV, PASV fallback)

OUTPUT
  result server=LABEL test=retr  unit=MB/s     median=X runs=...   (MB = 10^6 bytes)
  result server=LABEL test=stor  unit=MB/s     ...
  result server=LABEL test=small unit=files/s  ...   (one STOR+RETR+DELE = one file)
  result server=LABEL test=login unit=logins/s ...
  result server=LABEL test=list  unit=s        ...
  Each line ends with ops=N: bytes moved (retr, stor, warm-up passes included),
  files (small), logins (login, the untimed check login included), listings (list).
  Exit status 1 with `ftpbench: error: ...` on stderr on any failure.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("prepare") => prepare(&args[1..]),
        Some("run") => Opts::parse(&args[1..]).and_then(|o| run(&o)),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown subcommand {other:?} (try --help)")),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftpbench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Content pattern

/// Deterministic pseudo-random content with period PATTERN_LEN: byte at offset `o` of
/// any file we create or upload is `pattern[o % PATTERN_LEN]`.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new() -> Pattern {
        let mut v = Vec::with_capacity(PATTERN_LEN + 8);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while v.len() < PATTERN_LEN {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        v.truncate(PATTERN_LEN);
        Pattern(v)
    }

    /// The longest slice of pattern content starting at file offset `off`, at most `max`.
    fn at(&self, off: u64, max: usize) -> &[u8] {
        let start = (off % PATTERN_LEN as u64) as usize;
        let end = (start + max).min(PATTERN_LEN);
        &self.0[start..end]
    }

    fn fill(&self, off: u64, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let s = self.at(off + done as u64, out.len() - done);
            out[done..done + s.len()].copy_from_slice(s);
            done += s.len();
        }
    }

    /// Check that `data` is what belongs at file offset `off`.
    fn check(&self, off: u64, data: &[u8]) -> Res<()> {
        let mut done = 0;
        while done < data.len() {
            let s = self.at(off + done as u64, data.len() - done);
            if &data[done..done + s.len()] != s {
                let bad = data[done..]
                    .iter()
                    .zip(s)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                fail!(
                    "content mismatch at byte offset {}",
                    off + (done + bad) as u64
                );
            }
            done += s.len();
        }
        Ok(())
    }
}

fn prepare(args: &[String]) -> Res<()> {
    let mut dir = None;
    let mut big_size = GIB;
    let mut entries = 10_000usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--big-size" => big_size = num(it.next(), a)?,
            "--list-entries" => entries = num(it.next(), a)?,
            s if !s.starts_with('-') && dir.is_none() => dir = Some(s.to_string()),
            s => fail!("prepare: unexpected argument {s:?}"),
        }
    }
    let dir = dir.ok_or("prepare: missing DIR")?;
    let dir = Path::new(&dir);
    let ioerr = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
    fs::create_dir_all(dir).map_err(|e| ioerr("create", dir, e))?;

    let big = dir.join("big.bin");
    let pat = Pattern::new();
    let mut f = io::BufWriter::with_capacity(
        WRITE_CHUNK,
        fs::File::create(&big).map_err(|e| ioerr("create", &big, e))?,
    );
    let mut off = 0u64;
    while off < big_size {
        let s = pat.at(off, (big_size - off).min(WRITE_CHUNK as u64) as usize);
        f.write_all(s).map_err(|e| ioerr("write", &big, e))?;
        off += s.len() as u64;
    }
    f.flush().map_err(|e| ioerr("write", &big, e))?;

    let list = dir.join("list10k");
    fs::create_dir_all(&list).map_err(|e| ioerr("create", &list, e))?;
    for i in 0..entries {
        let p = list.join(format!("{LIST_PREFIX}{i:05}"));
        fs::File::create(&p).map_err(|e| ioerr("create", &p, e))?;
    }
    eprintln!(
        "prepared {} ({} bytes) and {} ({} entries)",
        big.display(),
        big_size,
        list.display(),
        entries
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, PartialEq)]
enum Passive {
    EpsvThenPasv,
    EpsvOnly,
    PasvOnly,
}

struct Opts {
    addr: SocketAddr,
    user: String,
    pass: String,
    label: String,
    runs: usize,
    tests: Vec<String>,
    retr_path: String,
    pattern: bool,
    warmup: bool,
    stor_size: u64,
    /// Upload target; `None`: `work_dir/ftpbench-stor-PID.bin`.
    stor_path: Option<String>,
    /// Leave the last upload on the server instead of deleting it.
    keep_upload: bool,
    work_dir: String,
    small_count: usize,
    small_size: usize,
    login_clients: usize,
    login_secs: f64,
    list_path: String,
    list_entries: usize,
    rcvbuf: usize,
    read_buf: usize,
    passive: Passive,
}

fn num<T: std::str::FromStr>(v: Option<&String>, name: &str) -> Res<T> {
    let v = v.ok_or_else(|| format!("{name} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{name}: not a number: {v:?}"))
}

fn val(v: Option<&String>, name: &str) -> Res<String> {
    v.cloned().ok_or_else(|| format!("{name} needs a value"))
}

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let (mut host, mut port) = ("127.0.0.1".to_string(), 21u16);
        let mut o = Opts {
            addr: "127.0.0.1:21".parse().unwrap(),
            user: "bench".into(),
            pass: "bench".into(),
            label: "ftp".into(),
            runs: 5,
            tests: vec![],
            retr_path: "/big.bin".into(),
            pattern: true,
            warmup: true,
            stor_size: GIB,
            stor_path: None,
            keep_upload: false,
            work_dir: "/".into(),
            small_count: 1000,
            small_size: 4096,
            login_clients: 8,
            login_secs: 5.0,
            list_path: "/list10k".into(),
            list_entries: 10_000,
            rcvbuf: 0,
            read_buf: READ_BUF,
            passive: Passive::EpsvThenPasv,
        };
        let mut tests = "retr,stor,small,login,list".to_string();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--host" => host = val(it.next(), a)?,
                "--port" => port = num(it.next(), a)?,
                "--user" => o.user = val(it.next(), a)?,
                "--pass" => o.pass = val(it.next(), a)?,
                "--label" => o.label = val(it.next(), a)?,
                "--runs" => o.runs = num(it.next(), a)?,
                "--tests" => tests = val(it.next(), a)?,
                "--retr-path" => o.retr_path = val(it.next(), a)?,
                "--no-pattern" => o.pattern = false,
                "--no-warmup" => o.warmup = false,
                "--stor-size" => o.stor_size = num(it.next(), a)?,
                "--stor-path" => o.stor_path = Some(val(it.next(), a)?),
                "--keep-upload" => o.keep_upload = true,
                "--work-dir" => o.work_dir = val(it.next(), a)?,
                "--small-count" => o.small_count = num(it.next(), a)?,
                "--small-size" => o.small_size = num(it.next(), a)?,
                "--login-clients" => o.login_clients = num(it.next(), a)?,
                "--login-secs" => o.login_secs = num(it.next(), a)?,
                "--list-path" => o.list_path = val(it.next(), a)?,
                "--list-entries" => o.list_entries = num(it.next(), a)?,
                "--rcvbuf" => o.rcvbuf = num(it.next(), a)?,
                "--read-buf" => o.read_buf = num(it.next(), a)?,
                "--epsv-only" => o.passive = Passive::EpsvOnly,
                "--pasv-only" => o.passive = Passive::PasvOnly,
                _ => fail!("unknown option {a:?}; try --help"),
            }
        }
        o.addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {host}:{port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}:{port} resolves to nothing"))?;
        for t in tests.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !["retr", "stor", "small", "login", "list"].contains(&t) {
                fail!("unknown test {t:?}");
            }
            o.tests.push(t.to_string());
        }
        if o.runs == 0 || o.login_clients == 0 || o.login_secs <= 0.0 || o.read_buf == 0 {
            fail!("--runs, --login-clients, --login-secs and --read-buf must be positive");
        }
        Ok(o)
    }

    fn remote(&self, name: &str) -> String {
        format!("{}/{}", self.work_dir.trim_end_matches('/'), name)
    }
}

// ---------------------------------------------------------------------------
// Control connection

struct Reply {
    code: u16,
    text: String,
}

struct Ctrl {
    w: TcpStream,
    r: BufReader<TcpStream>,
    peer: IpAddr,
    passive: Passive,
    rcvbuf: usize,
}

impl Ctrl {
    fn connect(addr: SocketAddr, passive: Passive, rcvbuf: usize) -> Res<Ctrl> {
        let w = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        w.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        w.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        w.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let r = BufReader::with_capacity(8192, w.try_clone().map_err(|e| e.to_string())?);
        Ok(Ctrl {
            w,
            r,
            peer: addr.ip(),
            passive,
            rcvbuf,
        })
    }

    fn read_line(&mut self) -> Res<String> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => fail!("control connection closed by the server"),
            Ok(_) => Ok(line),
            Err(e) => fail!("control connection: {e}"),
        }
    }

    /// One reply, multi-line ones (`123-...` up to `123 ...`) included.
    fn read_reply(&mut self) -> Res<Reply> {
        let first = self.read_line()?;
        let b = first.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
            fail!("malformed reply line {:?}", first);
        }
        let code: u16 = first[..3].parse().unwrap();
        let mut text = first.clone();
        if b.get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let l = self.read_line()?;
                text.push_str(&l);
                if l.starts_with(&end) {
                    break;
                }
            }
        }
        Ok(Reply { code, text })
    }

    fn send(&mut self, cmd: &str) -> Res<()> {
        // One write per command: one segment on the wire.
        let mut b = Vec::with_capacity(cmd.len() + 2);
        b.extend_from_slice(cmd.as_bytes());
        b.extend_from_slice(b"\r\n");
        self.w
            .write_all(&b)
            .map_err(|e| format!("send {}: {e}", shown(cmd)))
    }

    fn expect(&mut self, what: &str, ok: &[u16]) -> Res<Reply> {
        let r = self.read_reply()?;
        if !ok.contains(&r.code) {
            fail!(
                "{}: expected {:?}, got: {}",
                shown(what),
                ok,
                r.text.trim_end()
            );
        }
        Ok(r)
    }

    fn cmd(&mut self, cmd: &str, ok: &[u16]) -> Res<Reply> {
        self.send(cmd)?;
        self.expect(cmd, ok)
    }

    fn login(&mut self, user: &str, pass: &str) -> Res<()> {
        self.expect("greeting", &[220])?;
        let r = self.cmd(&format!("USER {user}"), &[230, 331])?;
        if r.code == 331 {
            self.cmd(&format!("PASS {pass}"), &[230])?;
        }
        Ok(())
    }

    fn session(o: &Opts) -> Res<Ctrl> {
        let mut c = Ctrl::connect(o.addr, o.passive, o.rcvbuf)?;
        c.login(&o.user, &o.pass)?;
        c.cmd("TYPE I", &[200])?;
        Ok(c)
    }

    fn quit(mut self) -> Res<()> {
        self.cmd("QUIT", &[221])?;
        // Let the server close first (it keeps TIME_WAIT, not our ephemeral port).
        let mut b = [0u8; 256];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // A reset after QUIT is the server's business, not a failed login.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => fail!("waiting for close after QUIT: {e}"),
            }
        }
    }

    /// Open a passive data connection.
    fn data(&mut self) -> Res<TcpStream> {
        let port = match self.passive {
            Passive::EpsvThenPasv | Passive::EpsvOnly => {
                self.send("EPSV")?;
                let r = self.read_reply()?;
                match r.code {
                    229 => parse_epsv(&r.text)?,
                    500..=502 if self.passive == Passive::EpsvThenPasv => {
                        self.passive = Passive::PasvOnly;
                        return self.data();
                    }
                    _ => fail!("EPSV: expected [229], got: {}", r.text.trim_end()),
                }
            }
            Passive::PasvOnly => {
                let r = self.cmd("PASV", &[227])?;
                parse_pasv(&r.text)?
            }
        };
        // Connect to the control connection's peer: servers behind NAT may advertise
        // another address, and we only ever test loopback.
        let a = SocketAddr::new(self.peer, port);
        let s = TcpStream::connect_timeout(&a, IO_TIMEOUT)
            .map_err(|e| format!("data connect {a}: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        if self.rcvbuf > 0 {
            set_rcvbuf(&s, self.rcvbuf)?;
        }
        Ok(s)
    }

    /// RETR `path` into `buf` (reused), checking content against the pattern (starting
    /// at pattern offset `seed`) when given. Returns the number of bytes received.
    fn retr(&mut self, path: &str, buf: &mut [u8], check: Option<(&Pattern, u64)>) -> Res<u64> {
        let mut d = self.data()?;
        self.cmd(&format!("RETR {path}"), &[125, 150])?;
        let mut n = 0u64;
        loop {
            let k = match d.read(buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => fail!("RETR {path}: data connection after {n} bytes: {e}"),
            };
            if let Some((p, seed)) = check {
                p.check(seed + n, &buf[..k])
                    .map_err(|e| format!("RETR {path}: {e}"))?;
            }
            n += k as u64;
        }
        drop(d);
        self.expect(&format!("RETR {path} (completion)"), &[226, 250])?;
        Ok(n)
    }

    fn retr_vec(&mut self, path: &str) -> Res<Vec<u8>> {
        let mut d = self.data()?;
        self.cmd(&format!("RETR {path}"), &[125, 150])?;
        let mut v = Vec::new();
        d.read_to_end(&mut v)
            .map_err(|e| format!("RETR {path}: data connection: {e}"))?;
        drop(d);
        self.expect(&format!("RETR {path} (completion)"), &[226, 250])?;
        Ok(v)
    }

    /// STOR `size` bytes of pattern content (starting at pattern offset `seed`).
    fn stor_pattern(&mut self, path: &str, size: u64, pat: &Pattern, seed: u64) -> Res<()> {
        let mut d = self.data()?;
        self.cmd(&format!("STOR {path}"), &[125, 150])?;
        let mut off = 0u64;
        while off < size {
            let s = pat.at(seed + off, (size - off).min(WRITE_CHUNK as u64) as usize);
            d.write_all(s)
                .map_err(|e| format!("STOR {path}: data connection after {off} bytes: {e}"))?;
            off += s.len() as u64;
        }
        d.shutdown(Shutdown::Write)
            .map_err(|e| format!("STOR {path}: close: {e}"))?;
        drop(d);
        self.expect(&format!("STOR {path} (completion)"), &[226, 250])?;
        Ok(())
    }

    fn stor_bytes(&mut self, path: &str, data: &[u8]) -> Res<()> {
        let mut d = self.data()?;
        self.cmd(&format!("STOR {path}"), &[125, 150])?;
        d.write_all(data)
            .map_err(|e| format!("STOR {path}: data connection: {e}"))?;
        drop(d);
        self.expect(&format!("STOR {path} (completion)"), &[226, 250])?;
        Ok(())
    }

    fn size(&mut self, path: &str) -> Res<u64> {
        let r = self.cmd(&format!("SIZE {path}"), &[213])?;
        let t = r
            .text
            .lines()
            .last()
            .unwrap_or("")
            .get(4..)
            .unwrap_or("")
            .trim();
        t.parse()
            .map_err(|_| format!("SIZE {path}: unparsable reply {:?}", r.text.trim_end()))
    }
}

/// Hide passwords in error messages.
fn shown(cmd: &str) -> String {
    if cmd.len() >= 5 && cmd[..5].eq_ignore_ascii_case("PASS ") {
        "PASS ****".into()
    } else {
        cmd.to_string()
    }
}

fn parse_epsv(text: &str) -> Res<u16> {
    // 229 Entering Extended Passive Mode (|||port|)
    let inner = text
        .find('(')
        .and_then(|a| text[a + 1..].find(')').map(|b| &text[a + 1..a + 1 + b]))
        .ok_or_else(|| format!("EPSV: unparsable reply {:?}", text.trim_end()))?;
    let delim = inner.chars().next().ok_or("EPSV: empty parentheses")?;
    let fields: Vec<&str> = inner.split(delim).collect();
    fields
        .get(3)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("EPSV: unparsable reply {:?}", text.trim_end()))
}

fn parse_pasv(text: &str) -> Res<u16> {
    // 227 Entering Passive Mode (h1,h2,h3,h4,p1,p2) -- parentheses are optional.
    let body = &text[3..];
    let start = body
        .find(|c: char| c.is_ascii_digit())
        .ok_or("PASV: no numbers in reply")?;
    let nums: Vec<u16> = body[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|s| !s.is_empty())
        .take(6)
        .filter_map(|s| s.parse().ok())
        .collect();
    if nums.len() != 6 || nums[4] > 255 || nums[5] > 255 {
        fail!("PASV: unparsable reply {:?}", text.trim_end());
    }
    Ok(nums[4] * 256 + nums[5])
}

fn set_rcvbuf(s: &TcpStream, bytes: usize) -> Res<()> {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn setsockopt(
            fd: i32,
            level: i32,
            name: i32,
            val: *const core::ffi::c_void,
            len: u32,
        ) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_RCVBUF: i32 = 8;
    let v: i32 = bytes.try_into().map_err(|_| "--rcvbuf too large")?;
    // SAFETY: valid fd owned by `s`, pointer to a live i32 of the stated length.
    let rc = unsafe {
        setsockopt(
            s.as_raw_fd(),
            SOL_SOCKET,
            SO_RCVBUF,
            (&v as *const i32).cast(),
            4,
        )
    };
    if rc != 0 {
        fail!("setsockopt(SO_RCVBUF): {}", io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tests

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn report(o: &Opts, test: &str, unit: &str, runs: &[f64], ops: u64) {
    let fmt = |x: f64| {
        if unit == "s" {
            format!("{x:.4}")
        } else {
            format!("{x:.1}")
        }
    };
    let list: Vec<String> = runs.iter().map(|&x| fmt(x)).collect();
    println!(
        "result server={} test={} unit={} median={} runs={} ops={ops}",
        o.label,
        test,
        unit,
        fmt(median(runs)),
        list.join(",")
    );
}

fn run(o: &Opts) -> Res<()> {
    let pat = Pattern::new();
    for t in &o.tests {
        let (unit, result) = match t.as_str() {
            "retr" => ("MB/s", test_retr(o, &pat)),
            "stor" => ("MB/s", test_stor(o, &pat)),
            "small" => ("files/s", test_small(o, &pat)),
            "login" => ("logins/s", test_login(o)),
            "list" => ("s", test_list(o)),
            _ => unreachable!(),
        };
        let (runs, ops) = result.map_err(|e| format!("{t} test: {e}"))?;
        report(o, t, unit, &runs, ops);
    }
    Ok(())
}

fn progress(o: &Opts, test: &str, i: usize, v: f64, unit: &str) {
    eprintln!(
        "[{}] {test} run {}/{}: {v:.4} {unit}",
        o.label,
        i + 1,
        o.runs
    );
}

/// A test's per-run figures and the operations the server did for them.
type Measured = Res<(Vec<f64>, u64)>;

fn test_retr(o: &Opts, pat: &Pattern) -> Measured {
    let mut c = Ctrl::session(o)?;
    let size = c.size(&o.retr_path)?;
    if size == 0 {
        fail!("RETR test: {} is empty", o.retr_path);
    }
    let mut buf = vec![0u8; o.read_buf];
    let mut ops = 0;
    if o.pattern && o.warmup {
        // One untimed pass checking every byte; the timed runs check the size.
        let n = c.retr(&o.retr_path, &mut buf, Some((pat, 0)))?;
        if n != size {
            fail!("RETR {}: got {n} bytes, SIZE said {size}", o.retr_path);
        }
        eprintln!(
            "[{}] retr: content of {} verified ({size} bytes)",
            o.label, o.retr_path
        );
        ops += n;
    }
    let mut out = vec![];
    for i in 0..o.runs {
        let t = Instant::now();
        let n = c.retr(&o.retr_path, &mut buf, None)?;
        let secs = t.elapsed().as_secs_f64();
        if n != size {
            fail!("RETR {}: got {n} bytes, expected {size}", o.retr_path);
        }
        ops += n;
        let mbps = n as f64 / 1e6 / secs;
        progress(o, "retr", i, mbps, "MB/s");
        out.push(mbps);
    }
    c.quit()?;
    Ok((out, ops))
}

fn test_stor(o: &Opts, pat: &Pattern) -> Measured {
    let mut c = Ctrl::session(o)?;
    let path = match &o.stor_path {
        Some(path) => path.clone(),
        None => o.remote(&format!("ftpbench-stor-{}.bin", std::process::id())),
    };
    // Untimed warm-up upload, read back and checked byte for byte. (The first upload
    // into a fresh tmpfs is often much slower: the kernel is still finding pages.)
    let mut ops = 0;
    if o.warmup {
        let mut buf = vec![0u8; o.read_buf];
        c.stor_pattern(&path, o.stor_size, pat, 7919)?;
        let n = c.retr(&path, &mut buf, Some((pat, 7919)))?;
        if n != o.stor_size {
            fail!(
                "RETR {path} after STOR: got {n} bytes, sent {}",
                o.stor_size
            );
        }
        c.cmd(&format!("DELE {path}"), &[250])?;
        eprintln!("[{}] stor: content of a warm-up upload verified", o.label);
        ops += 2 * o.stor_size;
    }
    let mut out = vec![];
    for i in 0..o.runs {
        let t = Instant::now();
        c.stor_pattern(&path, o.stor_size, pat, i as u64)?;
        let secs = t.elapsed().as_secs_f64();
        let got = c.size(&path)?;
        if got != o.stor_size {
            fail!(
                "STOR {path}: server holds {got} bytes, sent {}",
                o.stor_size
            );
        }
        if !(o.keep_upload && i + 1 == o.runs) {
            c.cmd(&format!("DELE {path}"), &[250])?;
        }
        ops += o.stor_size;
        let mbps = o.stor_size as f64 / 1e6 / secs;
        progress(o, "stor", i, mbps, "MB/s");
        out.push(mbps);
    }
    c.quit()?;
    Ok((out, ops))
}

/// FNV-1a, 64 bit: a cheap checksum to report per-file mismatches compactly.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn test_small(o: &Opts, pat: &Pattern) -> Measured {
    let mut c = Ctrl::session(o)?;
    let mut content = vec![0u8; o.small_size];
    let mut out = vec![];
    for r in 0..o.runs {
        let t = Instant::now();
        for i in 0..o.small_count {
            let path = o.remote(&format!("ftpbench-small-{}-{r}-{i}", std::process::id()));
            // Different content per file, so a server returning the wrong file is caught.
            pat.fill((r * o.small_count + i) as u64 * 4099, &mut content);
            c.stor_bytes(&path, &content)?;
            let got = c.retr_vec(&path)?;
            if got.len() != content.len() || fnv1a(&got) != fnv1a(&content) {
                fail!(
                    "RETR {path}: got {} bytes (fnv1a {:016x}), stored {} bytes (fnv1a {:016x})",
                    got.len(),
                    fnv1a(&got),
                    content.len(),
                    fnv1a(&content)
                );
            }
            c.cmd(&format!("DELE {path}"), &[250])?;
        }
        let rate = o.small_count as f64 / t.elapsed().as_secs_f64();
        progress(o, "small", r, rate, "files/s");
        out.push(rate);
    }
    c.quit()?;
    Ok((out, (o.small_count * o.runs) as u64))
}

fn login_once(o: &Opts) -> Res<()> {
    let mut c = Ctrl::connect(o.addr, o.passive, 0)?;
    c.login(&o.user, &o.pass)?;
    c.quit()
}

fn test_login(o: &Opts) -> Measured {
    // One untimed login first: a wrong password fails here with a clear message.
    login_once(o)?;
    let mut out = vec![];
    let mut ops = 1;
    for r in 0..o.runs {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs_f64(o.login_secs);
        let t = Instant::now();
        let counts: Vec<Res<u64>> = thread::scope(|s| {
            let hs: Vec<_> = (0..o.login_clients)
                .map(|_| {
                    let stop = stop.clone();
                    s.spawn(move || -> Res<u64> {
                        let mut n = 0;
                        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                            if let Err(e) = login_once(o) {
                                stop.store(true, Ordering::Relaxed);
                                return Err(format!("login #{} of a client: {e}", n + 1));
                            }
                            n += 1;
                        }
                        Ok(n)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("client thread panicked".into()))
                })
                .collect()
        });
        let secs = t.elapsed().as_secs_f64();
        let mut total = 0;
        for c in counts {
            total += c?;
        }
        ops += total;
        let rate = total as f64 / secs;
        progress(o, "login", r, rate, "logins/s");
        out.push(rate);
    }
    Ok((out, ops))
}

fn test_list(o: &Opts) -> Measured {
    let mut c = Ctrl::session(o)?;
    let mut out = vec![];
    for r in 0..o.runs {
        let t = Instant::now();
        let mut d = c.data()?;
        c.cmd(&format!("LIST {}", o.list_path), &[125, 150])?;
        let mut v = Vec::with_capacity(1 << 20);
        d.read_to_end(&mut v)
            .map_err(|e| format!("LIST: data connection: {e}"))?;
        drop(d);
        c.expect("LIST (completion)", &[226, 250])?;
        let secs = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&v);
        let names = text
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .last()
                    .is_some_and(|n| n.starts_with(LIST_PREFIX))
            })
            .count();
        if names != o.list_entries {
            fail!(
                "LIST {}: {names} entries named {LIST_PREFIX}*, expected {}",
                o.list_path,
                o.list_entries
            );
        }
        progress(o, "list", r, secs, "s");
        out.push(secs);
    }
    c.quit()?;
    Ok((out, o.runs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies() {
        assert_eq!(
            parse_epsv("229 Entering Extended Passive Mode (|||40001|)\r\n").unwrap(),
            40001
        );
        assert_eq!(parse_epsv("229 ok (!!!123!)").unwrap(), 123);
        assert_eq!(
            parse_pasv("227 Entering Passive Mode (127,0,0,1,156,65).\r\n").unwrap(),
            156 * 256 + 65
        );
        assert_eq!(parse_pasv("227 =127,0,0,1,1,2").unwrap(), 258);
        assert!(parse_pasv("227 nothing").is_err());
    }

    #[test]
    fn pattern_checks() {
        let p = Pattern::new();
        let mut b = vec![0u8; 3 * PATTERN_LEN / 2];
        p.fill(17, &mut b);
        p.check(17, &b).unwrap();
        b[PATTERN_LEN] ^= 1;
        assert!(
            p.check(17, &b)
                .unwrap_err()
                .contains(&format!("{}", 17 + PATTERN_LEN))
        );
        assert!(p.check(18, &b[..10]).is_err());
    }
}
