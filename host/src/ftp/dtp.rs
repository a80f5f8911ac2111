//! The data transfer process: opening data connections (passive listeners with
//! the peer check, active connects) and moving bytes between a data connection
//! ([`DataStream`], plain or TLS) and storage.
//!
//! Every transfer is one [`Flow`] (download, download with `sendfile`, upload) driven
//! by one loop, [`pump`], through which every byte count passes
//! ([`DataContext::passed`]): progress, and later rate limits and counters,
//! are written once there. Large files overlap storage and socket: the
//! storage end runs as a helper task joined by a small channel, so a storage
//! read (possibly a plugin call) overlaps with the socket write of the
//! previous chunk, and the same for uploads; small files stay inline, and so
//! do local files (`sendfile`, or reads on the sending thread over TLS). A
//! transfer is a future the session owns; aborting it drops both halves: an
//! upload's writer is dropped without `finish`, which keeps what was received.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{debug, info};

use super::Transport;
use super::ascii::{FromCrlf, ToCrlf};
use super::reply::{ErrorContext, Reply, ReplyCode, storage_error};
use super::splice::Pipe;
use crate::backend::{FileReader, FileWriter, StorageError};
use crate::tls::DataTls;

/// Bytes per storage call and per socket write.
pub const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the storage half and the socket half.
const QUEUE: usize = 4;

/// Where the next data connection comes from.
#[derive(Debug)]
pub enum DataEndpoint {
    /// PASV/EPSV: we listen, the client connects. Shared with the session,
    /// which keeps the listener for its next PASV/EPSV.
    Passive(Arc<TcpListener>),
    /// PORT/EPRT: we connect to the client.
    Active(SocketAddr),
}

/// What a transfer does once its data connection is open.
pub enum Job {
    /// RETR, and listings (already formatted bytes).
    Send {
        source: Source,
        /// TYPE A: convert LF to CRLF.
        ascii: bool,
        /// Bytes of (converted) output to skip: REST in TYPE A.
        skip: u64,
    },
    /// STOR, APPE, STOU.
    Receive {
        writer: Box<dyn FileWriter>,
        /// TYPE A: convert CRLF to LF.
        ascii: bool,
    },
}

pub enum Source {
    File(Box<dyn FileReader>),
    Bytes(Vec<u8>),
    /// A directory listing formatted while it is sent (LIST, MLSD, NLST): not
    /// a download (no bandwidth limit, no transfer-log entry, no sendfile).
    Listing(Box<dyn FileReader>),
}

/// What a transfer needs from its session.
pub struct DataContext {
    /// Passive connections must come from this address.
    pub control_peer: IpAddr,
    /// Active connections go out from this address.
    pub local_ip: IpAddr,
    /// Limit for opening the data connection and for each stalled read or write.
    pub timeout: Duration,
    pub progress: Arc<AtomicU64>,
    pub what: String,
    /// Bandwidth limit (the user's bucket for this direction), if any.
    pub limit: crate::ops::rate::Limit,
    /// PROT P: the control connection's TLS, which the data connection's
    /// handshake is checked against.
    pub tls: Option<Arc<DataTls>>,
    /// The data connection must resume the control connection's TLS session.
    pub require_session_reuse: bool,
    /// Told how the transfer ended (transfer events), if anyone listens.
    pub on_end: Option<TransferEnd>,
}

/// Reports how a transfer ended: bytes moved, how long it took, whether it
/// completed.
pub type TransferReport = Box<dyn FnOnce(u64, Duration, bool) + Send + Sync>;

/// Calls its report exactly once: when the transfer ends, or, if the transfer
/// is dropped before (ABOR, a lost session), on drop with `false`.
pub struct TransferEnd {
    report: Option<TransferReport>,
    progress: Arc<AtomicU64>,
    started: Instant,
}

impl TransferEnd {
    pub fn new(report: TransferReport, progress: Arc<AtomicU64>) -> Self {
        TransferEnd {
            report: Some(report),
            progress,
            started: Instant::now(),
        }
    }

    fn end(&mut self, ok: bool) {
        if let Some(report) = self.report.take() {
            report(
                self.progress.load(Ordering::Relaxed),
                self.started.elapsed(),
                ok,
            );
        }
    }
}

impl Drop for TransferEnd {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// Opens a passive listener on `ip` with a port from `ports`, starting at a
/// random point so ports are hard to guess.
pub async fn listen(ip: IpAddr, ports: &RangeInclusive<u16>) -> io::Result<TcpListener> {
    let (start, end) = (*ports.start(), *ports.end());
    if start > end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty passive port range",
        ));
    }
    let span = u32::from(end - start) + 1;
    let first = random_u32() % span;
    let mut last_err = io::Error::new(io::ErrorKind::AddrInUse, "no free passive port");
    for i in 0..span {
        let port = start + ((first + i) % span) as u16;
        match bind_listener(SocketAddr::new(ip, port)) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_err = err,
        }
    }
    Err(last_err)
}

fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A port whose earlier data connections sit in TIME_WAIT is still free for
    // a listener; without this a busy session skips through many ports.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8)
}

/// Whether `port` belongs to the passive range; a range of just port 0 means
/// "any port the system picks", as in [`listen`].
pub fn in_passive_range(ports: &RangeInclusive<u16>, port: u16) -> bool {
    ports.contains(&port) || (*ports.start() == 0 && *ports.end() == 0)
}

/// Accepts and drops every connection already waiting on `listener`, so a
/// reused passive port starts empty: a connection the client made for an
/// earlier PASV/EPSV and then abandoned must not become the next transfer's
/// data connection. Asks the socket itself (non-blocking), not tokio's cached
/// readiness, which may not have seen the newest connection yet.
pub fn drain_pending(listener: &TcpListener) {
    let socket = socket2::SockRef::from(listener);
    while let Ok((stream, from)) = socket.accept() {
        debug!(?from, "dropped a stale connection to a reused passive port");
        drop(stream);
    }
}

fn random_u32() -> u32 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u32()
}

/// Compares addresses the way the kernel reports them on a dual-stack socket.
pub fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Opens the data connection, with TLS under PROT P.
async fn open(endpoint: DataEndpoint, ctx: &DataContext) -> Result<DataStream, Reply> {
    let tcp = connect(endpoint, ctx).await?;
    let Some(tls) = &ctx.tls else {
        return Ok(DataStream::Plain(tcp));
    };
    match timeout(ctx.timeout, tls.accept(tcp, ctx.require_session_reuse)).await {
        Ok(Ok(stream)) => Ok(DataStream::Secure(stream)),
        Ok(Err(err)) => {
            info!(what = %ctx.what, %err, "data connection refused");
            Err(Reply::new(
                ReplyCode::CantOpenDataConnection,
                format!("Can't open data connection: {err}"),
            ))
        }
        Err(_) => Err(Reply::new(
            ReplyCode::CantOpenDataConnection,
            "Can't open data connection: TLS handshake timed out",
        )),
    }
}

/// Accepts (PASV/EPSV) or makes (PORT/EPRT) the data connection's TCP connection.
async fn connect(endpoint: DataEndpoint, ctx: &DataContext) -> Result<TcpStream, Reply> {
    let cant_open = |why: &str| {
        Reply::new(
            ReplyCode::CantOpenDataConnection,
            format!("Can't open data connection: {why}"),
        )
    };
    match endpoint {
        DataEndpoint::Passive(listener) => {
            let accept = async {
                loop {
                    let (stream, from) = listener.accept().await?;
                    if same_host(from.ip(), ctx.control_peer) {
                        return Ok::<_, io::Error>(stream);
                    }
                    // Someone else raced the client to our port (data theft):
                    // drop them and keep waiting for the real client.
                    info!(%from, expected = %ctx.control_peer, "refused passive data connection from another host");
                }
            };
            match timeout(ctx.timeout, accept).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(err)) => Err(cant_open(&err.to_string())),
                Err(_) => Err(cant_open("timed out")),
            }
        }
        DataEndpoint::Active(addr) => {
            let connect = async {
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                // Leave from the control connection's address so the client
                // sees the data connection come from the server it talks to.
                let local = ctx.local_ip.to_canonical();
                if local.is_ipv4() == addr.is_ipv4() {
                    let _ = socket.bind(SocketAddr::new(local, 0));
                }
                socket.connect(addr).await
            };
            match timeout(ctx.timeout, connect).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(err)) => Err(cant_open(&err.to_string())),
                Err(_) => Err(cant_open("timed out")),
            }
        }
    }
}

/// Why a transfer stopped early.
enum Failure {
    /// The data connection failed or stalled.
    Data(String),
    Storage(StorageError),
}

impl Failure {
    fn reply(&self) -> Reply {
        match self {
            Failure::Data(why) => Reply::new(
                ReplyCode::TransferAborted,
                format!("Connection closed; transfer aborted: {why}"),
            ),
            Failure::Storage(err) => storage_error(err, ErrorContext::Transfer),
        }
    }

    fn stalled() -> Self {
        Failure::Data("data connection stalled".into())
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Data(err.to_string())
    }
}

/// A data connection: plain TCP, or TLS over TCP (PROT P). Plain TCP keeps
/// its own type so a file can go out with `sendfile(2)`.
pub enum DataStream {
    Plain(TcpStream),
    Secure(Box<dyn Transport>),
}

impl AsyncRead for DataStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            DataStream::Secure(tls) => Pin::new(tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DataStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DataStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            DataStream::Secure(tls) => Pin::new(tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            DataStream::Secure(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            DataStream::Secure(tls) => Pin::new(tls).poll_shutdown(cx),
        }
    }
}

/// Runs one transfer to its final reply.
pub async fn run(endpoint: DataEndpoint, job: Job, mut ctx: DataContext) -> Reply {
    let stream = match open(endpoint, &ctx).await {
        Ok(stream) => stream,
        Err(reply) => return reply,
    };
    let started = Instant::now();
    let result = match job {
        Job::Send {
            source: Source::Bytes(bytes),
            ascii,
            skip,
        } => {
            let source = StorageReader::Memory(Some(Bytes::from(bytes)));
            pump(Download::new(stream, source, ascii, skip), &ctx).await
        }
        Job::Send {
            source: Source::Listing(reader),
            ascii,
            skip,
        } => {
            let source = StorageReader::Inline { reader, reads: 0 };
            pump(Download::new(stream, source, ascii, skip), &ctx).await
        }
        Job::Send {
            source: Source::File(reader),
            ascii,
            skip,
        } => {
            // Binary from the start of our own file stream: `sendfile` over
            // TCP, reads on this thread over TLS.
            let os_file = (!ascii && skip == 0).then(|| reader.os_file()).flatten();
            match (os_file, stream) {
                (Some((file, offset)), DataStream::Plain(tcp)) => {
                    let flow = SendFile {
                        tcp,
                        file,
                        offset,
                        _reader: reader,
                    };
                    pump(flow, &ctx).await
                }
                (Some((file, offset)), DataStream::Secure(tls)) => {
                    let flow = SecureFile {
                        tls,
                        file,
                        offset,
                        buf: vec![0; CHUNK],
                        _reader: reader,
                    };
                    pump(flow, &ctx).await
                }
                (_, stream) => {
                    let source = StorageReader::Inline { reader, reads: 0 };
                    pump(Download::new(stream, source, ascii, skip), &ctx).await
                }
            }
        }
        Job::Receive { writer, ascii } => {
            // Binary into an OS file over plain TCP: the kernel can move it.
            let os_file = (!ascii).then(|| writer.os_file()).flatten();
            match (os_file, stream) {
                (Some((file, offset)), DataStream::Plain(tcp)) => {
                    pump(SpliceUpload::new(tcp, writer, file, offset), &ctx).await
                }
                (_, stream) => pump(Upload::new(stream, writer, ascii), &ctx).await,
            }
        }
    };
    // Every transfer ends here: the place for transfer events.
    if let Some(mut on_end) = ctx.on_end.take() {
        on_end.end(result.is_ok());
    }
    let bytes = ctx.progress.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            info!(what = %ctx.what, bytes, secs, "transfer complete");
            Reply::new(ReplyCode::ClosingDataConnection, "Transfer complete")
        }
        Err(failure) => {
            let reply = failure.reply();
            info!(what = %ctx.what, bytes, secs, reply = %reply.lines.join(" "), "transfer failed");
            reply
        }
    }
}

impl DataContext {
    /// `n` bytes crossed the data connection. Every transfer's bytes pass
    /// here, whichever way they go and however they are moved (copied,
    /// `sendfile`): the place for progress (STAT), byte counters and rate
    /// limits, which may make the transfer wait here.
    async fn passed(&self, n: usize) -> Result<(), Failure> {
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(bucket) = &self.limit {
            // Sleeps off what went beyond the budget; for uploads TCP flow
            // control then holds the client back.
            let mut left = n;
            while left > 0 {
                left -= bucket.acquire(left).await.min(left);
            }
        }
        Ok(())
    }

    /// Most bytes one step may move: unbounded, or one grant of the
    /// bandwidth limit, so a limited transfer goes out in bounded pieces.
    fn piece(&self) -> usize {
        self.limit
            .as_ref()
            .map_or(usize::MAX, |bucket| bucket.max_grant())
    }
}

/// One direction of a transfer, moved a piece at a time by [`pump`].
trait Flow {
    /// Moves the next piece over the data connection; how many bytes crossed
    /// it, 0 at the end.
    async fn step(&mut self, ctx: &DataContext) -> Result<usize, Failure>;
    /// After the last piece: completes the upload or closes the data
    /// connection cleanly.
    async fn finish(self, ctx: &DataContext) -> Result<(), Failure>;
    /// After a failure: keeps what can be kept and says what to report.
    async fn fail(self, failure: Failure) -> Failure;
}

/// The one transfer loop.
async fn pump<F: Flow>(mut flow: F, ctx: &DataContext) -> Result<(), Failure> {
    loop {
        let moved = match flow.step(ctx).await {
            Ok(0) => return flow.finish(ctx).await,
            Ok(n) => n,
            Err(failure) => return Err(flow.fail(failure).await),
        };
        if let Err(failure) = ctx.passed(moved).await {
            return Err(flow.fail(failure).await);
        }
    }
}

/// Ends a data connection the way the client can tell from a cut one: the
/// end of the data (and TLS `close_notify`), then the close.
async fn close(stream: &mut DataStream, limit: Duration) -> Result<(), Failure> {
    match timeout(limit, stream.shutdown()).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure::stalled()),
    }
}

/// RETR and listings: bytes from storage (or memory) to the data connection,
/// with TYPE A conversion and a REST skip in converted bytes.
struct Download {
    stream: DataStream,
    source: StorageReader,
    to_crlf: Option<ToCrlf>,
    skip: u64,
    /// What is left of the current chunk when a step moves less than a chunk
    /// (a bandwidth limit).
    pending: Bytes,
}

impl Download {
    fn new(stream: DataStream, source: StorageReader, ascii: bool, skip: u64) -> Self {
        Download {
            stream,
            source,
            to_crlf: ascii.then(ToCrlf::default),
            skip,
            pending: Bytes::new(),
        }
    }
}

impl Flow for Download {
    async fn step(&mut self, ctx: &DataContext) -> Result<usize, Failure> {
        while self.pending.is_empty() {
            let Some(chunk) = self.source.next().await? else {
                return Ok(0);
            };
            let mut data = match &mut self.to_crlf {
                Some(to_crlf) => {
                    let mut converted = Vec::with_capacity(chunk.len() + chunk.len() / 16);
                    to_crlf.convert(&chunk, &mut converted);
                    Bytes::from(converted)
                }
                None => chunk,
            };
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                data = data.slice(n..);
                self.skip -= n as u64;
            }
            self.pending = data;
        }
        let n = self.pending.len().min(ctx.piece());
        let piece = self.pending.split_to(n);
        match timeout(ctx.timeout, self.stream.write_all(&piece)).await {
            Ok(result) => result?,
            Err(_) => return Err(Failure::stalled()),
        }
        Ok(n)
    }

    async fn finish(mut self, ctx: &DataContext) -> Result<(), Failure> {
        close(&mut self.stream, ctx.timeout).await
    }

    async fn fail(self, failure: Failure) -> Failure {
        failure
    }
}

/// Largest single `sendfile` call (how long one call may hold the thread).
const SENDFILE_CHUNK: usize = 256 << 10;

/// RETR of an OS file over plain TCP from `offset` to its end with
/// `sendfile(2)`: the kernel moves the bytes from the page cache to the
/// socket without copying them through us (what vsftpd and pyftpdlib do).
/// Measured A/B, 5 interleaved rounds of a 1 GiB RETR: median 5,043 MB/s
/// against 3,773 for the read-ahead copy (docs/benchmarks.md). Only for
/// binary transfers of a file the storage plugin handed over as our own
/// unread file stream, so the bytes are exactly the ones the stream would
/// have given.
struct SendFile {
    tcp: TcpStream,
    file: Arc<std::fs::File>,
    offset: u64,
    /// The stream the file came from, kept open until the transfer ends.
    _reader: Box<dyn FileReader>,
}

impl Flow for SendFile {
    async fn step(&mut self, ctx: &DataContext) -> Result<usize, Failure> {
        let (tcp, file, offset) = (&self.tcp, &self.file, &mut self.offset);
        let count = SENDFILE_CHUNK.min(ctx.piece());
        let send = async {
            loop {
                tcp.writable().await?;
                match tcp.try_io(tokio::io::Interest::WRITABLE, || {
                    rustix::fs::sendfile(tcp, file.as_ref(), Some(&mut *offset), count)
                        .map_err(io::Error::from)
                }) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        };
        match timeout(ctx.timeout, send).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Failure::stalled()),
        }
    }

    async fn finish(self, ctx: &DataContext) -> Result<(), Failure> {
        close(&mut DataStream::Plain(self.tcp), ctx.timeout).await
    }

    async fn fail(self, failure: Failure) -> Failure {
        failure
    }
}

/// RETR of an OS file over TLS, the same files as [`SendFile`]: each chunk is
/// read with `pread(2)` on this thread into one reused buffer and encrypted
/// from there. Without the read-ahead task and the blocking-pool hop of the
/// file stream a chunk crosses no thread: measured A/B (7 interleaved rounds,
/// 256 MiB RETR), server CPU per GiB 17 % lower with curl, 8 % with Python
/// (docs/benchmarks.md, "FTPS"). Like `sendfile` a read from the page cache
/// is short; one from a cold disk holds the thread for one chunk.
struct SecureFile {
    tls: Box<dyn Transport>,
    file: Arc<std::fs::File>,
    offset: u64,
    buf: Vec<u8>,
    /// The stream the file came from, kept open until the transfer ends.
    _reader: Box<dyn FileReader>,
}

impl Flow for SecureFile {
    async fn step(&mut self, ctx: &DataContext) -> Result<usize, Failure> {
        let want = self.buf.len().min(ctx.piece());
        let n = loop {
            match self.file.read_at(&mut self.buf[..want], self.offset) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Ok(0);
        }
        self.offset += n as u64;
        match timeout(ctx.timeout, self.tls.write_all(&self.buf[..n])).await {
            Ok(result) => result?,
            Err(_) => return Err(Failure::stalled()),
        }
        Ok(n)
    }

    async fn finish(self, ctx: &DataContext) -> Result<(), Failure> {
        close(&mut DataStream::Secure(self.tls), ctx.timeout).await
    }

    async fn fail(self, failure: Failure) -> Failure {
        failure
    }
}

/// STOR, APPE, STOU: bytes from the data connection to storage, gathered
/// into chunks, with TYPE A conversion.
struct Upload {
    stream: DataStream,
    sink: StorageWriter,
    from_crlf: Option<FromCrlf>,
    /// Received bytes not yet handed to storage.
    buf: BytesMut,
}

impl Upload {
    fn new(stream: DataStream, writer: Box<dyn FileWriter>, ascii: bool) -> Self {
        let sink = StorageWriter::new(writer);
        Upload {
            stream,
            buf: sink.pool.take(),
            sink,
            from_crlf: ascii.then(FromCrlf::default),
        }
    }

    /// The received bytes as storage gets them; `last` ends the conversion.
    fn chunk(&mut self, last: bool) -> Option<Bytes> {
        let chunk = match &mut self.from_crlf {
            Some(from_crlf) => {
                let mut out = Vec::with_capacity(self.buf.len() + 1);
                from_crlf.convert(&self.buf, &mut out);
                if last {
                    from_crlf.finish(&mut out);
                }
                self.buf.clear();
                Bytes::from(out)
            }
            None if last => self.buf.split().freeze(),
            None => std::mem::replace(&mut self.buf, self.sink.pool.take()).freeze(),
        };
        (!chunk.is_empty()).then_some(chunk)
    }
}

impl Flow for Upload {
    async fn step(&mut self, ctx: &DataContext) -> Result<usize, Failure> {
        // The buffer always has room here (it is handed on when full), so a
        // read of 0 bytes is the end of the data.
        let piece = ctx.piece();
        let read = async {
            if piece == usize::MAX {
                self.stream.read_buf(&mut self.buf).await
            } else {
                // Limited: one grant at most per read.
                let limited = (&mut self.stream).take(piece as u64);
                tokio::pin!(limited);
                limited.read_buf(&mut self.buf).await
            }
        };
        let n = match timeout(ctx.timeout, read).await {
            Ok(result) => result?,
            Err(_) => return Err(Failure::stalled()),
        };
        if self.buf.len() >= CHUNK
            && let Some(chunk) = self.chunk(false)
        {
            self.sink.put(chunk).await?;
        }
        Ok(n)
    }

    async fn finish(mut self, ctx: &DataContext) -> Result<(), Failure> {
        // Answer the client's TLS close_notify with ours; the upload itself
        // is complete either way.
        let _ = close(&mut self.stream, ctx.timeout).await;
        let rest = self.chunk(true);
        debug!(what = %ctx.what, "upload complete, finishing");
        self.sink.finish(rest).await
    }

    async fn fail(mut self, failure: Failure) -> Failure {
        let rest = self.chunk(true);
        self.sink.abandon(rest).await.unwrap_or(failure)
    }
}

/// STOR (binary, plain TCP) into an OS file the storage plugin handed over as
/// our own unwritten file stream. The start of the upload is received here;
/// an upload that ends within one chunk (most by count) is written through
/// the storage writer like any other. A larger one has that chunk written
/// through the writer and the rest moved socket -> pipe -> file with
/// `splice(2)` (ftp/splice.rs), never copied through our memory, at the
/// offsets the writer's stream would have written them to.
///
/// One pipe, filled from the socket and emptied into the file by this task:
/// measured on a quiet machine against two pipes with a blocking thread
/// emptying one while the other fills, it took 23-40 % less CPU per GiB and
/// moved more in four of six client runs (docs/benchmarks.md, "Issue 15"):
/// the hand-offs cost more than the overlap gained. Emptying a pipe is a
/// page-cache write of at most one pipe's worth, as any inline file write.
/// The writer is finished at the end as usual; after a failure (or ABOR) what
/// was received is still written and the writer is released unfinished.
struct SpliceUpload {
    tcp: TcpStream,
    writer: Box<dyn FileWriter>,
    file: Arc<std::fs::File>,
    /// Where the next received byte goes in `file`.
    offset: u64,
    /// The start of the upload, until it outgrows one chunk.
    head: BytesMut,
    /// Made when the upload outgrows `head`; empty between steps.
    pipe: Option<Pipe>,
    /// Whether the upload outgrew `head` (then all further bytes are spliced).
    splicing: bool,
}

impl SpliceUpload {
    fn new(
        tcp: TcpStream,
        writer: Box<dyn FileWriter>,
        file: Arc<std::fs::File>,
        offset: u64,
    ) -> Self {
        SpliceUpload {
            tcp,
            writer,
            file,
            offset,
            head: BytesMut::with_capacity(CHUNK),
            pipe: None,
            splicing: false,
        }
    }

    /// Writes what `head` holds through the writer.
    async fn write_head(&mut self) -> Result<(), Failure> {
        if self.head.is_empty() {
            return Ok(());
        }
        let head = self.head.split().freeze();
        self.offset += head.len() as u64;
        self.writer.write(head).await.map_err(Failure::Storage)
    }
}

impl Flow for SpliceUpload {
    async fn step(&mut self, ctx: &DataContext) -> Result<usize, Failure> {
        // A bandwidth limit bounds each step to one grant.
        let piece = ctx.piece();
        if !self.splicing {
            let room = (CHUNK - self.head.len()).min(piece) as u64;
            let mut limited = (&mut self.tcp).take(room);
            let n = match timeout(ctx.timeout, limited.read_buf(&mut self.head)).await {
                Ok(result) => result?,
                Err(_) => return Err(Failure::stalled()),
            };
            if self.head.len() >= CHUNK {
                self.write_head().await?;
                self.splicing = true;
            }
            return Ok(n);
        }
        let pipe = match self.pipe.take() {
            Some(pipe) => pipe,
            None => {
                Pipe::new().map_err(|e| Failure::Storage(file_error("cannot create a pipe", e)))?
            }
        };
        let pipe = &*self.pipe.insert(pipe);
        let tcp = &self.tcp;
        let fill = async {
            loop {
                tcp.readable().await?;
                match tcp.try_io(tokio::io::Interest::READABLE, || {
                    pipe.fill_from(tcp.as_fd(), piece)
                }) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        };
        let n = match timeout(ctx.timeout, fill).await {
            Ok(Ok(n)) => n,
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => return Err(Failure::stalled()),
        };
        if n == 0 {
            return Ok(0);
        }
        let mut offset = self.offset;
        pipe.drain_into(self.file.as_fd(), &mut offset, n)
            .map_err(|e| Failure::Storage(file_error("write", e)))?;
        self.offset += n as u64;
        Ok(n)
    }

    async fn finish(mut self, ctx: &DataContext) -> Result<(), Failure> {
        if let Err(failure) = self.write_head().await {
            self.writer.abandon().await;
            return Err(failure);
        }
        debug!(what = %ctx.what, spliced = self.splicing, "upload complete, finishing");
        self.writer.finish().await.map_err(Failure::Storage)
    }

    async fn fail(mut self, failure: Failure) -> Failure {
        // Keep what was received; then the writer is released unfinished,
        // before the client hears of the failure.
        let failure = match self.write_head().await {
            Ok(()) => failure,
            Err(storage) => storage,
        };
        self.writer.abandon().await;
        failure
    }
}

/// A file system error of a spliced upload, as storage reports its own: a full
/// disk or quota is `NoSpace`.
fn file_error(what: &str, err: io::Error) -> StorageError {
    let kind = match err.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            crate::backend::ErrorKind::NoSpace
        }
        _ => crate::backend::ErrorKind::Io,
    };
    StorageError::with_message(kind, format!("{what}: {err}"))
}

/// Aborts a helper task when the transfer is dropped (ABOR).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The storage end of a download. Most files by count fit in a chunk or two:
/// those are read right here, without a task or a cross-thread hand-off;
/// after that a read-ahead task reads the next chunks while the socket sends.
enum StorageReader {
    /// Already in memory (listings).
    Memory(Option<Bytes>),
    /// Read inline; `reads` so far.
    Inline {
        reader: Box<dyn FileReader>,
        reads: u8,
    },
    Ahead {
        rx: mpsc::Receiver<Result<Bytes, StorageError>>,
        _task: AbortOnDrop<()>,
    },
    Done,
}

impl StorageReader {
    /// The next chunk; `None` at the end.
    async fn next(&mut self) -> Result<Option<Bytes>, Failure> {
        match self {
            StorageReader::Memory(bytes) => Ok(bytes.take()),
            StorageReader::Inline { reader, reads } => {
                let chunk = reader.read(CHUNK).await.map_err(Failure::Storage)?;
                *reads += 1;
                if chunk.is_empty() {
                    *self = StorageReader::Done;
                    return Ok(None);
                }
                // A short first chunk usually means the end of the file: the
                // next read (inline too) checks. A full one means more.
                if chunk.len() == CHUNK || *reads >= 2 {
                    let StorageReader::Inline { reader, .. } =
                        std::mem::replace(self, StorageReader::Done)
                    else {
                        return Ok(Some(chunk));
                    };
                    let (tx, rx) = mpsc::channel(QUEUE);
                    *self = StorageReader::Ahead {
                        rx,
                        _task: read_ahead(reader, tx),
                    };
                }
                Ok(Some(chunk))
            }
            StorageReader::Ahead { rx, .. } => match rx.recv().await {
                Some(Ok(chunk)) => Ok(Some(chunk)),
                Some(Err(err)) => Err(Failure::Storage(err)),
                None => Ok(None),
            },
            StorageReader::Done => Ok(None),
        }
    }
}

/// Reads the rest of a file into the queue while the socket half sends.
fn read_ahead(
    mut reader: Box<dyn FileReader>,
    tx: mpsc::Sender<Result<Bytes, StorageError>>,
) -> AbortOnDrop<()> {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            match reader.read(CHUNK).await {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    break;
                }
            }
        }
    }))
}

/// The storage end of an upload. An upload that fits in one chunk (most by
/// count) is written right here, without a task or a cross-thread hand-off;
/// a larger one goes to a writer task that writes each chunk while the next
/// one arrives. After a failure what was received is written and the file is
/// not finished; ABOR drops the transfer, and the writer task still writes
/// what was queued (it is not aborted) before dropping the writer.
struct StorageWriter {
    state: Writer,
    /// Chunk buffers written by the task come back here.
    pool: BufferPool,
}

type WriterTask = tokio::task::JoinHandle<(Box<dyn FileWriter>, Result<(), StorageError>)>;

enum Writer {
    Inline(Box<dyn FileWriter>),
    Behind {
        tx: mpsc::Sender<Bytes>,
        task: WriterTask,
    },
    /// The writer task ended early with a storage error, already reported.
    Failed,
}

impl StorageWriter {
    fn new(writer: Box<dyn FileWriter>) -> Self {
        StorageWriter {
            state: Writer::Inline(writer),
            pool: BufferPool::default(),
        }
    }

    /// A full chunk, with more to come: hands it to the writer task (started
    /// on the first one).
    async fn put(&mut self, chunk: Bytes) -> Result<(), Failure> {
        if let Writer::Inline(_) = self.state {
            let Writer::Inline(writer) = std::mem::replace(&mut self.state, Writer::Failed) else {
                return Ok(());
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            let task = tokio::spawn(write_behind(writer, rx, self.pool.clone()));
            self.state = Writer::Behind { tx, task };
        }
        let Writer::Behind { tx, .. } = &self.state else {
            return Err(Failure::Storage(task_failed("writer already failed")));
        };
        if tx.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The task stopped at a storage error: report that one.
        let Writer::Behind { task, .. } = std::mem::replace(&mut self.state, Writer::Failed) else {
            return Err(Failure::Storage(task_failed("writer already failed")));
        };
        let (writer, result) = join(task).await;
        if let Some(writer) = writer {
            writer.abandon().await;
        }
        Err(Failure::Storage(
            result
                .err()
                .unwrap_or_else(|| task_failed("writer stopped")),
        ))
    }

    /// All received: writes `rest` and completes the file.
    async fn finish(self, rest: Option<Bytes>) -> Result<(), Failure> {
        let writer = self.flush(rest).await?;
        writer.finish().await.map_err(Failure::Storage)
    }

    /// The transfer failed: writes what was received without completing the
    /// file. Returns a storage error to report instead of the failure.
    async fn abandon(self, rest: Option<Bytes>) -> Option<Failure> {
        if let Writer::Failed = self.state {
            // The writer's own error is the failure being reported.
            return None;
        }
        match self.flush(rest).await {
            Ok(writer) => {
                writer.abandon().await;
                None
            }
            Err(failure) => Some(failure),
        }
    }

    /// Writes `rest` after everything queued and hands back the writer.
    async fn flush(self, rest: Option<Bytes>) -> Result<Box<dyn FileWriter>, Failure> {
        match self.state {
            Writer::Inline(mut writer) => {
                if let Some(rest) = rest
                    && let Err(e) = writer.write(rest).await
                {
                    writer.abandon().await;
                    return Err(Failure::Storage(e));
                }
                Ok(writer)
            }
            Writer::Behind { tx, task } => {
                if let Some(rest) = rest {
                    // A failed send means the task stopped; its error comes below.
                    let _ = tx.send(rest).await;
                }
                drop(tx);
                let (writer, result) = join(task).await;
                if let Err(e) = result {
                    if let Some(writer) = writer {
                        writer.abandon().await;
                    }
                    return Err(Failure::Storage(e));
                }
                writer.ok_or_else(|| Failure::Storage(task_failed("writer task failed")))
            }
            Writer::Failed => Err(Failure::Storage(task_failed("writer already failed"))),
        }
    }
}

/// Writes queued chunks until the queue closes or a write fails.
async fn write_behind(
    mut writer: Box<dyn FileWriter>,
    mut rx: mpsc::Receiver<Bytes>,
    pool: BufferPool,
) -> (Box<dyn FileWriter>, Result<(), StorageError>) {
    while let Some(chunk) = rx.recv().await {
        // A clone is a reference count: once written, the buffer is ours
        // alone again and goes back to the receive loop.
        if let Err(err) = writer.write(chunk.clone()).await {
            return (writer, Err(err));
        }
        pool.put(chunk);
    }
    (writer, Ok(()))
}

/// The writer task's result; a panicked task is a storage failure.
async fn join(task: WriterTask) -> (Option<Box<dyn FileWriter>>, Result<(), StorageError>) {
    match task.await {
        Ok((writer, result)) => (Some(writer), result),
        Err(err) => (None, Err(task_failed(&err.to_string()))),
    }
}

fn task_failed(why: &str) -> StorageError {
    StorageError::with_message(crate::backend::ErrorKind::Io, why.to_string())
}

/// Receive buffers written to storage come back here for the next chunks: a
/// fresh 256 KiB buffer per chunk cost page faults on every use and the
/// allocator's trimming (`madvise`) on every free, ~5–8 % of a large STOR.
#[derive(Clone, Default)]
struct BufferPool(Arc<std::sync::Mutex<Vec<BytesMut>>>);

impl BufferPool {
    /// An empty buffer with room for a chunk.
    fn take(&self) -> BytesMut {
        let reused = self.0.lock().ok().and_then(|mut free| free.pop());
        reused.unwrap_or_else(|| BytesMut::with_capacity(CHUNK))
    }

    /// Keeps `chunk`'s buffer if nothing else refers to it any more.
    fn put(&self, chunk: Bytes) {
        if let Ok(mut buf) = chunk.try_into_mut()
            && buf.capacity() >= CHUNK
            && let Ok(mut free) = self.0.lock()
            && free.len() <= QUEUE
        {
            buf.clear();
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listen_uses_the_range() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let range = 40000..=40100;
        let listener = listen(ip, &range).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(range.contains(&port));
    }

    #[tokio::test]
    async fn listen_single_port_busy_fails() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let first = listen(ip, &(0..=0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        assert!(listen(ip, &(port..=port)).await.is_err());
        #[expect(clippy::reversed_empty_ranges, reason = "testing an empty range")]
        let empty = 5..=4;
        assert!(listen(ip, &empty).await.is_err());
    }

    #[test]
    fn mapped_addresses_match() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(same_host(v4, mapped));
        assert!(!same_host(v4, "127.0.0.2".parse().unwrap()));
    }
}
