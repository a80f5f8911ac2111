//! The control connection's byte level: splitting the stream into command
//! lines (CRLF or bare LF, Telnet IAC sequences removed, bounded length),
//! writing replies, and swapping the stream for a TLS one in place (AUTH TLS).
//!
//! One value owns the whole stream, so it can be handed to a TLS handshake and
//! replaced by the secured stream; the session never sees which it is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::Transport;
use super::reply::Reply;

/// Telnet "interpret as command" (RFC 854).
const IAC: u8 = 255;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// What the reader produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A command line without its terminator and Telnet sequences.
    Command(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
    /// The client closed the connection.
    Closed,
}

/// The control connection: reads command lines and writes replies over a
/// plain or TLS stream. `next_line` is cancel-safe: all state lives in the
/// struct, so a `select!` may drop a pending call and make it again.
pub struct Control {
    stream: Box<dyn Transport>,
    buf: Vec<u8>,
    max_len: usize,
    /// Set while skipping the rest of an over-long line.
    discarding: bool,
    /// The last line ended with CR: a LF right after it belongs to that line.
    after_cr: bool,
}

impl Control {
    pub fn new(stream: Box<dyn Transport>, max_len: usize) -> Self {
        Control {
            stream,
            buf: Vec::new(),
            max_len: max_len.max(16),
            discarding: false,
            after_cr: false,
        }
    }

    /// The next line. CR, LF and CRLF all end a line: Python's ftplib sends
    /// `ABOR\r\n` with MSG_OOB, so the LF arrives as urgent data after a read
    /// that stops at the urgent mark, and tokio does not wake us again until
    /// more data comes; waiting for that LF would hang the ABOR.
    pub async fn next_line(&mut self) -> io::Result<Line> {
        loop {
            if self.after_cr && !self.buf.is_empty() {
                self.after_cr = false;
                if self.buf[0] == b'\n' {
                    self.buf.drain(..1);
                }
            }
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                self.after_cr = self.buf[end] == b'\r';
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if self.buf.is_empty() && self.buf.capacity() > 8192 {
                    // Idle sessions are many: give back what a long line took.
                    self.buf.shrink_to(1024);
                }
                if std::mem::take(&mut self.discarding) || line.len() > self.max_len {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Command(strip_telnet(line)));
            }
            if self.buf.len() > self.max_len {
                // Keep memory bounded: forget what we have and skip to the next
                // line end.
                self.buf.clear();
                self.discarding = true;
            }
            // Read straight into the buffer, 1 KiB at a time: commands are short
            // and an idle session should hold little. The buffer stays below
            // max_len + 1 KiB.
            self.buf.reserve(1024);
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Ok(Line::Closed);
            }
        }
    }
}

/// Removes Telnet command sequences (RFC 854): `IAC IAC` is a literal 255,
/// `IAC WILL/WONT/DO/DONT x` is three bytes, any other `IAC x` two. Clients send
/// `IAC IP IAC DM` before `ABOR`.
fn strip_telnet(line: Vec<u8>) -> Vec<u8> {
    if !line.contains(&IAC) {
        return line;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] != IAC {
            out.push(line[i]);
            i += 1;
            continue;
        }
        match line.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            Some(&(WILL..=DONT)) => i += 3,
            _ => i += 2,
        }
    }
    out
}

impl Control {
    /// Sends a reply. A client that stops reading must not pin the session
    /// forever, so the write gives up after `limit`.
    pub async fn send(&mut self, reply: &Reply, limit: Duration) -> io::Result<()> {
        let write = async {
            self.stream.write_all(reply.to_wire().as_bytes()).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client does not read replies",
            )),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Hands the stream to `secure` (a TLS handshake) and goes on with the
    /// stream it returns. Whatever the client sent after the command that
    /// asked for this and we already read is dropped: it came in clear text,
    /// ahead of the handshake, and must never run as a command (RFC 4217
    /// section 4; otherwise an attacker could inject commands into the secured
    /// session). Returns what `secure` returned beside the stream, and how
    /// many bytes were dropped. When `secure` fails the connection is gone and
    /// so is this value's stream.
    pub async fn upgrade<F, Fut, T>(&mut self, secure: F) -> io::Result<(T, usize)>
    where
        F: FnOnce(Box<dyn Transport>) -> Fut,
        Fut: Future<Output = io::Result<(Box<dyn Transport>, T)>>,
    {
        // The LF of the command's own CRLF may still wait in the buffer.
        let own_lf = self.after_cr && self.buf.first() == Some(&b'\n');
        let dropped = self.buf.len() - usize::from(own_lf);
        self.buf.clear();
        self.discarding = false;
        self.after_cr = false;
        let plain = std::mem::replace(&mut self.stream, Box::new(Closed));
        let (secured, info) = secure(plain).await?;
        self.stream = secured;
        Ok((info, dropped))
    }
}

/// Stands in for a stream that was handed to a TLS handshake that failed.
struct Closed;

impl AsyncRead for Closed {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Closed {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(input: &'static [u8], max: usize) -> Control {
        Control::new(Box::new(tokio::io::join(input, tokio::io::sink())), max)
    }

    fn cmd(s: &str) -> Line {
        Line::Command(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn crlf_and_bare_lf() {
        let mut r = reader(b"USER a\r\nPASS b\nNOOP", 100);
        assert_eq!(r.next_line().await.unwrap(), cmd("USER a"));
        assert_eq!(r.next_line().await.unwrap(), cmd("PASS b"));
        // An unterminated last line is dropped at EOF.
        assert_eq!(r.next_line().await.unwrap(), Line::Closed);
    }

    #[tokio::test]
    async fn cr_alone_ends_a_line() {
        let mut r = reader(b"ABOR\rSTAT\r\nNOOP\r\r\nPWD\n", 100);
        assert_eq!(r.next_line().await.unwrap(), cmd("ABOR"));
        assert_eq!(r.next_line().await.unwrap(), cmd("STAT"));
        assert_eq!(r.next_line().await.unwrap(), cmd("NOOP"));
        assert_eq!(r.next_line().await.unwrap(), cmd(""));
        assert_eq!(r.next_line().await.unwrap(), cmd("PWD"));
    }

    #[tokio::test]
    async fn crlf_split_across_reads() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = Control::new(Box::new(server), 100);
        client.write_all(b"ABOR\r").await.unwrap();
        assert_eq!(r.next_line().await.unwrap(), cmd("ABOR"));
        client.write_all(b"\nNOOP\r\n").await.unwrap();
        assert_eq!(r.next_line().await.unwrap(), cmd("NOOP"));
    }

    #[tokio::test]
    async fn too_long_is_discarded() {
        let mut input = vec![b'A'; 10_000];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let input: &'static [u8] = Box::leak(input.into_boxed_slice());
        let mut r = reader(input, 100);
        assert_eq!(r.next_line().await.unwrap(), Line::TooLong);
        assert!(r.buf.capacity() < 10_000);
        assert_eq!(r.next_line().await.unwrap(), cmd("NOOP"));
    }

    #[tokio::test]
    async fn slightly_too_long_in_one_read() {
        let mut r = reader(b"0123456789012345678901234\r\nNOOP\r\n", 20);
        assert_eq!(r.next_line().await.unwrap(), Line::TooLong);
        assert_eq!(r.next_line().await.unwrap(), cmd("NOOP"));
    }

    #[tokio::test]
    async fn telnet_sequences_removed() {
        let mut r = reader(b"\xff\xf4\xff\xf2ABOR\r\nA\xff\xffB\xff\xfb\x01C\r\n", 100);
        assert_eq!(r.next_line().await.unwrap(), cmd("ABOR"));
        assert_eq!(
            r.next_line().await.unwrap(),
            Line::Command(b"A\xffBC".to_vec())
        );
    }

    #[tokio::test]
    async fn upgrade_drops_clear_text_sent_ahead() {
        let (mut client, server) = tokio::io::duplex(256);
        let mut control = Control::new(Box::new(server), 100);
        // A client (or a man in the middle) pipelines a command behind AUTH.
        client
            .write_all(b"AUTH TLS\r\nDELE important\r\n")
            .await
            .unwrap();
        assert_eq!(control.next_line().await.unwrap(), cmd("AUTH TLS"));
        let (secured_client, secured_server) = tokio::io::duplex(256);
        let ((), dropped) = control
            .upgrade(
                |_plain| async move { Ok((Box::new(secured_server) as Box<dyn Transport>, ())) },
            )
            .await
            .unwrap();
        assert_eq!(dropped, b"DELE important\r\n".len());
        let mut secured_client = secured_client;
        secured_client.write_all(b"NOOP\r\n").await.unwrap();
        assert_eq!(control.next_line().await.unwrap(), cmd("NOOP"));
        control
            .send(
                &Reply::new(super::super::reply::ReplyCode::CommandOk, "ok"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        let mut seen = [0u8; 8];
        secured_client.read_exact(&mut seen).await.unwrap();
        assert_eq!(&seen, b"200 ok\r\n");
    }

    #[tokio::test]
    async fn failed_upgrade_leaves_a_closed_connection() {
        let mut control = reader(b"AUTH TLS\r\n", 100);
        assert_eq!(control.next_line().await.unwrap(), cmd("AUTH TLS"));
        let result = control
            .upgrade(|_plain| async {
                Err::<(Box<dyn Transport>, ()), _>(io::Error::other("handshake failed"))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(control.next_line().await.unwrap(), Line::Closed);
    }
}
