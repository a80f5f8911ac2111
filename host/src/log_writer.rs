//! Where the server's log lines go: appended to a memory buffer by whoever
//! logs, and written to the real output by a background thread every
//! [`FLUSH_EVERY`].
//!
//! Why not a write per line, or tracing-appender's channel: a busy server logs
//! a few lines per session, and both of those cost a system call or a thread
//! wake-up per line, which on a 2-core machine was ~20 % of a login's cost
//! (trivial-auth logins ~11,400/s with tracing-appender, see docs/benchmarks.md).
//! Appending to a buffer costs a lock and a copy.
//!
//! Nothing is dropped: when the buffer reaches [`WRITE_THROUGH_AT`] (the
//! output is slower than the logging), the logging thread writes the buffer
//! out itself, which bounds memory and slows down the producers instead.
//! Order is kept: the buffer is only ever taken while holding the output.
//! [`FlushOnDrop`] writes what is left when the server exits.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Above this many buffered bytes the logging thread writes them out itself.
pub const WRITE_THROUGH_AT: usize = 4 << 20;

struct Shared {
    pending: Mutex<Vec<u8>>,
    output: Mutex<Box<dyn Write + Send>>,
    stop: AtomicBool,
}

/// Locks even when a thread panicked while holding the lock: a log buffer
/// is still a log buffer.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Writes everything buffered so far to the output.
    fn write_out(&self) {
        let mut output = lock(&self.output);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if !batch.is_empty() {
            // A log that cannot be written has nowhere to report that.
            let _ = output.write_all(&batch);
            let _ = output.flush();
        }
    }
}

/// The writer given to `tracing_subscriber` (it is a `MakeWriter`).
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Stops the background thread and writes out the rest when dropped.
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedWriter {
    /// Starts the background thread writing to `output`.
    pub fn new(output: impl Write + Send + 'static) -> (BatchedWriter, FlushOnDrop) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            output: Mutex::new(Box::new(output)),
            stop: AtomicBool::new(false),
        });
        let background = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wasmftpd-log".into())
            .spawn(move || {
                while !background.stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(FLUSH_EVERY);
                    background.write_out();
                }
            })
            .ok();
        (
            BatchedWriter {
                shared: shared.clone(),
            },
            FlushOnDrop { shared, thread },
        )
    }
}

impl BatchedWriter {
    /// Writes out everything buffered so far, now (at shutdown, or when a
    /// test wants to read the file).
    pub fn flush_now(&self) {
        self.shared.write_out();
    }

    /// Writes out what is buffered to the current output, then sends later
    /// lines to `output` (a log file reopened after rotation). Nothing is
    /// lost or reordered: both happen under the output lock.
    pub fn replace_output(&self, output: impl Write + Send + 'static) {
        let mut current = lock(&self.shared.output);
        let batch = std::mem::take(&mut *lock(&self.shared.pending));
        if !batch.is_empty() {
            let _ = current.write_all(&batch);
        }
        let _ = current.flush();
        *current = Box::new(output);
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.shared.write_out();
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let full = {
            let mut pending = lock(&self.shared.pending);
            pending.extend_from_slice(bytes);
            pending.len() >= WRITE_THROUGH_AT
        };
        if full {
            self.shared.write_out();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_within_the_flush_interval() {
        let output = Captured::default();
        let (mut writer, _guard) = BatchedWriter::new(output.clone());
        writer.write_all(b"one\n").unwrap();
        writer.write_all(b"two\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lock(&output.0).len() < 8 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(&*lock(&output.0), b"one\ntwo\n");
    }

    #[test]
    fn dropping_the_guard_writes_the_rest() {
        let output = Captured::default();
        let (mut writer, guard) = BatchedWriter::new(output.clone());
        writer.write_all(b"last words\n").unwrap();
        drop(guard);
        assert_eq!(&*lock(&output.0), b"last words\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_logging_thread() {
        let output = Captured::default();
        let (mut writer, guard) = BatchedWriter::new(output.clone());
        // Many threads at once, more than the buffer holds: every line
        // arrives whole and none is lost.
        let line = vec![b'x'; 1023];
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let mut writer = writer.clone();
                let line = &line;
                scope.spawn(move || {
                    for _ in 0..2048 {
                        let mut whole = line.clone();
                        whole.push(b'\n');
                        writer.write_all(&whole).unwrap();
                    }
                });
            }
        });
        writer.write_all(b"end\n").unwrap();
        drop(guard);
        let out = lock(&output.0);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 4 * 2048 + 2);
        assert!(lines[..4 * 2048].iter().all(|l| l.len() == 1023));
        assert_eq!(lines[4 * 2048], b"end");
    }
}
