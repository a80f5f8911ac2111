//! A plugin's stdout and stderr, sent to `tracing` one line at a time with the
//! site and plugin name, instead of the server's own stdio.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces, so a plugin cannot make the
/// host buffer without bound.
const MAX_LINE: usize = 4096;

#[derive(Clone, Copy)]
enum Which {
    Stdout,
    Stderr,
}

/// Handed to `WasiCtxBuilder` as the plugin's stdout or stderr.
pub(super) struct LogSink {
    site: Arc<str>,
    plugin: Arc<str>,
    which: Which,
}

impl LogSink {
    pub fn stdout(site: Arc<str>, plugin: Arc<str>) -> Self {
        LogSink {
            site,
            plugin,
            which: Which::Stdout,
        }
    }

    pub fn stderr(site: Arc<str>, plugin: Arc<str>) -> Self {
        LogSink {
            site,
            plugin,
            which: Which::Stderr,
        }
    }

    fn writer(&self) -> LineLogger {
        LineLogger {
            site: self.site.clone(),
            plugin: self.plugin.clone(),
            which: self.which,
            line: Vec::new(),
        }
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        // Our own stream rather than the default adapter over `async_stream`,
        // which would spawn a task per stream.
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Collects bytes into lines and logs each complete one.
struct LineLogger {
    site: Arc<str>,
    plugin: Arc<str>,
    which: Which,
    line: Vec<u8>,
}

impl LineLogger {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..end]);
            self.emit();
            bytes = &bytes[end + 1..];
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() >= MAX_LINE {
            self.emit();
        }
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        let (site, plugin) = (&*self.site, &*self.plugin);
        match self.which {
            Which::Stdout => tracing::info!(site, plugin, "plugin: {text}"),
            Which::Stderr => tracing::warn!(site, plugin, "plugin stderr: {text}"),
        }
        self.line.clear();
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
