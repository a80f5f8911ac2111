//! File descriptors, the resource an FTP server runs out of first: raising the
//! process's soft limit at start, saying when `max_connections` cannot fit in
//! it, and pacing `accept` when the limit is hit anyway.
//!
//! Each connection holds its control socket; a logged-in session that touched
//! storage also holds its plugin's granted directory, and a transfer adds a
//! data socket (and a passive listener) and the open file. Without a pause, a
//! listener whose `accept` fails with `EMFILE` is immediately ready again, so
//! the accept loop spins and logs one line per try.

use std::io;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Descriptors a session may hold at once while it transfers: control and
/// data sockets, a passive listener, the file, the granted directory.
pub const PER_SESSION: u64 = 4;

/// Descriptors kept for the rest of the process: listeners, the log file,
/// plugin cache files, the config watcher, the runtime.
pub const RESERVED: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limit in
/// force afterwards (`None` if it cannot be read).
pub fn raise_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else {
        // No soft limit at all: nothing to raise.
        return None;
    };
    let Some(hard) = hard else {
        return Some(soft);
    };
    if soft >= hard {
        return Some(soft);
    }
    let raised = rustix::process::Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            info!("open file limit raised from {soft} to {hard}");
            Some(hard)
        }
        Err(e) => {
            warn!("cannot raise the open file limit from {soft} to {hard}: {e}");
            Some(soft)
        }
    }
}

/// The warning to log when `max_connections` sessions, each transferring,
/// would not fit in `limit` descriptors.
pub fn capacity_warning(max_connections: usize, limit: u64) -> Option<String> {
    let needed = (max_connections as u64)
        .saturating_mul(PER_SESSION)
        .saturating_add(RESERVED);
    if needed <= limit {
        return None;
    }
    let fits = limit.saturating_sub(RESERVED) / PER_SESSION;
    Some(format!(
        "server.max_connections = {max_connections} needs up to {needed} open files \
         ({PER_SESSION} per transferring session + {RESERVED}), but the limit is {limit}: \
         about {fits} sessions fit. Raise the limit (ulimit -n, LimitNOFILE=) or lower \
         max_connections"
    ))
}

/// Whether an `accept` error means the process or system is out of
/// descriptors (or socket memory), so trying again at once cannot succeed.
pub fn is_exhaustion(err: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

/// Paces an accept loop after failures: doubling pauses while resources are
/// exhausted (from 5 ms up to half a second), and one log line per
/// [`LOG_EVERY`] that counts the failures in between.
pub struct AcceptBackoff {
    pause: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

/// At most one log line about failing accepts per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// What the accept loop does after a failed `accept`.
#[derive(Debug, PartialEq, Eq)]
pub struct AfterFailure {
    /// Wait this long before the next `accept`.
    pub pause: Duration,
    /// Log this line (it counts the failures not logged since the last one).
    pub log: Option<String>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            pause: FIRST_PAUSE,
            last_log: None,
            unlogged: 0,
        }
    }
}

impl AcceptBackoff {
    /// A connection was accepted: the next exhaustion starts small again.
    pub fn succeeded(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// An `accept` failed at `now`.
    pub fn failed(&mut self, err: &io::Error, now: Instant) -> AfterFailure {
        self.unlogged += 1;
        let log = match self.last_log {
            Some(at) if now.duration_since(at) < LOG_EVERY => None,
            _ => {
                self.last_log = Some(now);
                let count = std::mem::take(&mut self.unlogged);
                let hint = if is_exhaustion(err) {
                    "; out of open files: pausing accepts"
                } else {
                    ""
                };
                Some(format!(
                    "accept failed: {err} ({count} failure{} since the last report){hint}",
                    if count == 1 { "" } else { "s" }
                ))
            }
        };
        let pause = if is_exhaustion(err) {
            let pause = self.pause;
            self.pause = (self.pause * 2).min(LONGEST_PAUSE);
            pause
        } else {
            // A connection that died in the backlog (ECONNABORTED and the
            // like) says nothing about the next one.
            Duration::ZERO
        };
        AfterFailure { pause, log }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error())
    }

    #[test]
    fn exhaustion_backs_off_and_logs_once_per_interval() {
        let mut backoff = AcceptBackoff::default();
        let start = Instant::now();
        let first = backoff.failed(&emfile(), start);
        assert_eq!(first.pause, Duration::from_millis(5));
        assert!(
            first
                .log
                .as_deref()
                .is_some_and(|l| l.contains("1 failure since"))
        );
        let mut pauses = vec![];
        for i in 1..1000 {
            let after = backoff.failed(&emfile(), start + Duration::from_millis(i));
            assert_eq!(after.log, None, "logged again within the interval");
            pauses.push(after.pause);
        }
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(*pauses.last().unwrap(), LONGEST_PAUSE);
        let later = backoff.failed(&emfile(), start + LOG_EVERY + Duration::from_secs(1));
        let line = later.log.expect("a report after the interval");
        assert!(line.contains("1000 failures since"), "{line}");
        backoff.succeeded();
        let again = backoff.failed(&emfile(), start + 3 * LOG_EVERY);
        assert_eq!(again.pause, Duration::from_millis(5));
    }

    #[test]
    fn other_errors_do_not_pause() {
        let mut backoff = AcceptBackoff::default();
        let aborted = io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error());
        assert_eq!(
            backoff.failed(&aborted, Instant::now()).pause,
            Duration::ZERO
        );
        assert!(!is_exhaustion(&aborted));
        assert!(is_exhaustion(&emfile()));
    }

    #[test]
    fn capacity() {
        assert_eq!(capacity_warning(1000, 20_000), None);
        let warning = capacity_warning(10_000, 20_000).expect("does not fit");
        assert!(warning.contains("about 4984 sessions fit"), "{warning}");
    }

    #[test]
    fn raising_keeps_or_raises_the_soft_limit() {
        use rustix::process::{Resource, getrlimit};
        let before = getrlimit(Resource::Nofile);
        let now = raise_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(now, after.current);
        assert_eq!(after.current, before.maximum.or(before.current));
    }
}
