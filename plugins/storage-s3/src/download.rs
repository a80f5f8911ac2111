//! RETR: an object read as a run of ranged GETs of `read_size` bytes each.
//!
//! Each GET is bounded (so the host's `max_response_size` never cuts a large
//! download), the next one is sent while the current one is still being read
//! (so the pause between them is hidden), and every GET after the first asks
//! for the same version (`If-Match` with the first answer's ETag): a file
//! overwritten during a download fails the transfer instead of mixing two
//! versions.

use std::rc::Rc;

use crate::http::BodyReader;
use crate::s3::{Client, PendingGet};
use crate::wasmftpd::plugin::types::{Error, ErrorCode};

pub struct Download {
    client: Rc<Client>,
    key: String,
    read_size: u64,
    etag: Option<String>,
    /// The object's size, once an answer said it.
    total: Option<u64>,
    /// The first byte not yet asked for.
    next: u64,
    /// Bytes to throw away before the first byte the client wants (only
    /// when a server ignores `Range` and sends the whole object).
    skip: u64,
    current: Option<Window>,
    ahead: Option<PendingGet>,
    /// A window came back short or empty: nothing follows.
    ended: bool,
}

/// One GET's body, and how many bytes of it are still to come.
struct Window {
    body: BodyReader,
    remaining: u64,
}

impl Download {
    /// Sends the first GET and waits for its answer, so that a missing
    /// object is reported now (as `not-found`), not at the first read.
    pub fn open(
        client: Rc<Client>,
        key: String,
        offset: u64,
        read_size: u64,
    ) -> Result<Download, Error> {
        let mut download = Download {
            client,
            key,
            read_size,
            etag: None,
            total: None,
            next: offset,
            skip: 0,
            current: None,
            ahead: None,
            ended: false,
        };
        let first = download.request(offset);
        download.accept(first, offset)?;
        Ok(download)
    }

    /// The next bytes, at most `max`; empty at the end of the object.
    pub fn read(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        loop {
            if self.current.is_none() {
                if !self.open_next_window()? {
                    return Ok(Vec::new());
                }
                continue;
            }
            self.read_ahead();
            let Some(window) = &mut self.current else {
                continue;
            };
            let want = max.min(usize::try_from(window.remaining).unwrap_or(usize::MAX));
            let chunk = if want == 0 {
                None
            } else {
                window
                    .body
                    .read(want)
                    .map_err(|e| broken(&self.key, &e.message))?
            };
            let Some(mut data) = chunk else {
                if window.remaining > 0 {
                    return Err(broken(&self.key, "answer shorter than announced"));
                }
                self.current = None;
                continue;
            };
            window.remaining = window.remaining.saturating_sub(data.len() as u64);
            if self.skip > 0 {
                let drop = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                data.drain(..drop);
                self.skip -= drop as u64;
                if data.is_empty() {
                    continue;
                }
            }
            return Ok(data);
        }
    }

    /// Moves to the GET read ahead (or sends one); false at the end.
    fn open_next_window(&mut self) -> Result<bool, Error> {
        let pending = match self.ahead.take() {
            Some(pending) => pending,
            None if self.has_more() => {
                let first = self.next;
                self.request(first)
            }
            None => return Ok(false),
        };
        let start = pending.first();
        self.accept(pending, start)?;
        Ok(self.current.is_some())
    }

    /// Sends the next GET once the current one is nearly read.
    fn read_ahead(&mut self) {
        let nearly_done = self
            .current
            .as_ref()
            .is_some_and(|w| w.remaining <= self.read_size / 4);
        if self.ahead.is_none() && nearly_done && self.has_more() {
            let first = self.next;
            self.ahead = Some(self.request(first));
        }
    }

    fn has_more(&self) -> bool {
        !self.ended && self.total.is_none_or(|total| self.next < total)
    }

    /// Sends a GET of the window starting at `first`, advancing `next`.
    fn request(&mut self, first: u64) -> PendingGet {
        let mut last = first.saturating_add(self.read_size - 1);
        if let Some(total) = self.total {
            last = last.min(total.saturating_sub(1));
        }
        self.next = last.saturating_add(1);
        self.client
            .start_get(&self.key, first, last, self.etag.as_deref())
    }

    /// Takes a GET's answer as the current window.
    fn accept(&mut self, pending: PendingGet, first: u64) -> Result<(), Error> {
        let asked = pending.len();
        let Some((response, total)) = pending.wait(&self.client)? else {
            // 416: the range starts at or past the end.
            self.ended = true;
            self.current = None;
            return Ok(());
        };
        if self.etag.is_none() {
            self.etag = response.header("etag").map(str::to_string);
        }
        let length: u64 = response
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if response.status == 200 {
            // The whole object, whatever we asked: skip to where we are.
            self.total = Some(length);
            self.skip = first;
            self.next = length;
        } else if let Some(total) = total {
            self.total = Some(total);
        }
        if length < asked {
            self.ended = true;
        }
        self.current = Some(Window {
            body: response.into_body(),
            remaining: length,
        });
        Ok(())
    }
}

fn broken(key: &str, why: &str) -> Error {
    crate::s3::log(&format!("GET {key}: {why}"));
    Error {
        code: ErrorCode::Io,
        message: Some("download from the object store broke off".into()),
    }
}
