//! The data transfer process: opening data connections (passive listeners with
//! the peer check, active connects) and moving bytes between a data connection
//! and storage.
//!
//! Storage and the socket run as two halves joined by a small channel, so a
//! storage read (possibly a plugin call) overlaps with the socket write of the
//! previous chunk, and the same for uploads. A transfer is one task the session
//! owns; aborting it drops both halves: an upload's writer is dropped without
//! `finish`, which keeps what was received.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{debug, info};

use super::ascii::{FromCrlf, ToCrlf};
use super::reply::{ErrorContext, Reply, ReplyCode, storage_error};
use crate::backend::{FileReader, FileWriter, StorageError};

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

async fn open(endpoint: DataEndpoint, ctx: &DataContext) -> Result<TcpStream, Reply> {
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
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Data(err.to_string())
    }
}

/// Runs one transfer to its final reply.
pub async fn run(endpoint: DataEndpoint, job: Job, ctx: DataContext) -> Reply {
    let mut stream = match open(endpoint, &ctx).await {
        Ok(stream) => stream,
        Err(reply) => return reply,
    };
    let started = Instant::now();
    let result = match job {
        Job::Send {
            source,
            ascii,
            skip,
        } => {
            let os_file = match (&source, ascii, skip) {
                (Source::File(reader), false, 0) => reader.os_file(),
                _ => None,
            };
            match os_file {
                Some((file, offset)) => send_os_file(&stream, &file, offset, &ctx).await,
                None => send(&mut stream, source, ascii, skip, &ctx).await,
            }
        }
        Job::Receive { writer, ascii } => receive(&mut stream, writer, ascii, &ctx).await,
    };
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

/// Aborts a helper task when the transfer is dropped (ABOR).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn write_timed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    limit: Duration,
) -> Result<(), Failure> {
    match timeout(limit, stream.write_all(data)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure::Data("data connection stalled".into())),
    }
}

async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    source: Source,
    ascii: bool,
    mut skip: u64,
    ctx: &DataContext,
) -> Result<(), Failure> {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, StorageError>>(QUEUE);
    let _reader_task = match source {
        Source::Bytes(bytes) => {
            // Listings are small and already in memory: no helper task.
            let _ = tx.send(Ok(Bytes::from(bytes))).await;
            drop(tx);
            None
        }
        Source::File(mut reader) => {
            // Most files by count fit in one chunk: read the start here and
            // only start the read-ahead task when there is more. A small file
            // then costs no task spawn and no cross-thread hand-off.
            let more = match reader.read(CHUNK).await {
                Ok(chunk) if chunk.is_empty() => false,
                Ok(chunk) => {
                    let short = chunk.len() < CHUNK;
                    let _ = tx.send(Ok(chunk)).await;
                    // A short first chunk usually means end of file: check
                    // here. The queue has room for both chunks.
                    !short
                        || match reader.read(CHUNK).await {
                            Ok(chunk) if chunk.is_empty() => false,
                            Ok(chunk) => {
                                let _ = tx.send(Ok(chunk)).await;
                                true
                            }
                            Err(err) => {
                                let _ = tx.send(Err(err)).await;
                                false
                            }
                        }
                }
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    false
                }
            };
            if more {
                Some(read_ahead(reader, tx))
            } else {
                drop(tx);
                None
            }
        }
    };
    let mut to_crlf = ToCrlf::default();
    let mut converted = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(Failure::Storage)?;
        let mut data: &[u8] = &chunk;
        if ascii {
            converted.clear();
            to_crlf.convert(&chunk, &mut converted);
            data = &converted;
        }
        if skip > 0 {
            let n = (skip as usize).min(data.len());
            data = &data[n..];
            skip -= n as u64;
        }
        if data.is_empty() {
            continue;
        }
        write_timed(stream, data, ctx.timeout).await?;
        ctx.progress.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    match timeout(ctx.timeout, stream.shutdown()).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure::Data("data connection stalled".into())),
    }
}

/// Largest single `sendfile` call (how long one call may hold the thread).
const SENDFILE_CHUNK: usize = 256 << 10;

/// Sends an OS file from `offset` to its end with `sendfile(2)`: the kernel
/// moves the bytes from the page cache to the socket without copying them
/// through us (what vsftpd and pyftpdlib do). Measured A/B, 5 interleaved
/// rounds of a 1 GiB RETR: median 5,043 MB/s against 3,773 for the read-ahead
/// copy (docs/benchmarks.md). Only for binary transfers of a file the storage
/// plugin handed over as our own unread file stream, so the bytes are exactly
/// the ones the stream would have given.
async fn send_os_file(
    stream: &TcpStream,
    file: &std::fs::File,
    mut offset: u64,
    ctx: &DataContext,
) -> Result<(), Failure> {
    loop {
        let wrote = match timeout(ctx.timeout, async {
            loop {
                stream.writable().await?;
                match stream.try_io(tokio::io::Interest::WRITABLE, || {
                    rustix::fs::sendfile(stream, file, Some(&mut offset), SENDFILE_CHUNK)
                        .map_err(io::Error::from)
                }) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        })
        .await
        {
            Ok(result) => result?,
            Err(_) => return Err(Failure::Data("data connection stalled".into())),
        };
        if wrote == 0 {
            break;
        }
        ctx.progress.fetch_add(wrote as u64, Ordering::Relaxed);
    }
    // As `send` ends: the end of the data, then the close.
    let shutdown = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    shutdown.map_err(Failure::from)
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

/// One read from the data connection into `buf`, counted in the progress.
async fn read_timed<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    ctx: &DataContext,
) -> Result<usize, Failure> {
    match timeout(ctx.timeout, stream.read_buf(buf)).await {
        Ok(Ok(n)) => {
            ctx.progress.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(Failure::Data("data connection stalled".into())),
    }
}

async fn receive<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut writer: Box<dyn FileWriter>,
    ascii: bool,
    ctx: &DataContext,
) -> Result<(), Failure> {
    let mut buf = BytesMut::with_capacity(CHUNK);
    if !ascii {
        // Receive up to one chunk first. An upload that ends within it (most
        // files by count) is written right here, without the writer task and
        // its cross-thread hand-off. What happens on a failure is unchanged:
        // what was received is written, the writer is not finished.
        let mut network = Ok(());
        let mut eof = false;
        while buf.len() < CHUNK {
            match read_timed(stream, &mut buf, ctx).await {
                Ok(0) => eof = true,
                Ok(_) => continue,
                Err(failure) => network = Err(failure),
            }
            break;
        }
        if eof || network.is_err() {
            if !buf.is_empty() {
                writer
                    .write(buf.split().freeze())
                    .await
                    .map_err(Failure::Storage)?;
            }
            network?;
            debug!(what = %ctx.what, "upload complete, finishing");
            return writer.finish().await.map_err(Failure::Storage);
        }
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let pool = BufferPool::default();
    let returned = pool.clone();
    // Not aborted on drop: chunks already received still reach storage when
    // the transfer is cut, then the writer is dropped without `finish`.
    let writer_task = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            // A clone is a reference count: once written, the buffer is ours
            // alone again and goes back to the receive loop.
            if let Err(err) = writer.write(chunk.clone()).await {
                return (writer, Err(err));
            }
            returned.put(chunk);
        }
        (writer, Ok(()))
    });
    let mut from_crlf = FromCrlf::default();
    if !buf.is_empty() {
        // The first chunk, read above.
        let _ = tx
            .send(std::mem::replace(&mut buf, pool.take()).freeze())
            .await;
    }
    let mut network: Result<(), Failure> = Ok(());
    loop {
        let n = match read_timed(stream, &mut buf, ctx).await {
            Ok(n) => n,
            Err(failure) => {
                network = Err(failure);
                break;
            }
        };
        let eof = n == 0;
        if ascii && (!buf.is_empty() || eof) {
            let mut out = Vec::with_capacity(buf.len() + 1);
            from_crlf.convert(&buf, &mut out);
            if eof {
                from_crlf.finish(&mut out);
            }
            buf.clear();
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                break;
            }
        } else if buf.len() >= CHUNK || (eof && !buf.is_empty()) {
            let chunk = std::mem::replace(&mut buf, pool.take()).freeze();
            if tx.send(chunk).await.is_err() {
                // The writer failed; its error is reported below.
                break;
            }
        }
        if eof {
            break;
        }
        if ascii && buf.capacity() - buf.len() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
    }
    drop(tx);
    let (writer, written) = match writer_task.await {
        Ok(result) => result,
        Err(err) => {
            return Err(Failure::Storage(StorageError::with_message(
                crate::backend::ErrorKind::Io,
                err.to_string(),
            )));
        }
    };
    written.map_err(Failure::Storage)?;
    network?;
    debug!(what = %ctx.what, "upload complete, finishing");
    writer.finish().await.map_err(Failure::Storage)
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
