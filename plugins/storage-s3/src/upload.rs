//! STOR and APPE: the bytes of an upload gathered into parts of `part_size`.
//!
//! A file that fits in one part is sent with one PutObject when it ends. A
//! larger one becomes a multipart upload: each full part is sent while the
//! next fills, so at most two parts are in memory (one filling, one on its
//! way). The object appears only when the upload is completed after the last
//! byte; an upload that fails or is dropped unfinished (the client went away,
//! ABOR) is aborted, so no partial object is ever seen, and an existing file
//! keeps its old content.

use std::rc::Rc;

use crate::http::{BodyWriter, InFlight, Transport};
use crate::s3::Client;
use crate::wasmftpd::plugin::types::{Error, ErrorCode};

pub struct Upload {
    client: Rc<Client>,
    key: String,
    part_size: usize,
    /// The part being filled.
    buffer: Vec<u8>,
    multipart: Option<Multipart>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Finished,
    Failed,
}

/// A multipart upload in progress.
struct Multipart {
    id: String,
    /// Part numbers and ETags of the parts S3 has.
    done: Vec<(u32, String)>,
    /// The part on its way.
    sending: Option<Part>,
    next_number: u32,
    /// The buffer of the last part sent, kept for the next one to fill.
    spare: Vec<u8>,
}

/// One UploadPart being sent while the next part fills.
struct Part {
    number: u32,
    data: Vec<u8>,
    written: usize,
    body: Option<BodyWriter>,
    response: Result<InFlight, Transport>,
}

impl Upload {
    /// A new object (STOR), replacing any old one when it completes.
    pub fn new(client: Rc<Client>, key: String, part_size: usize) -> Upload {
        Upload {
            client,
            key,
            part_size,
            buffer: Vec::new(),
            multipart: None,
            state: State::Open,
        }
    }

    /// An upload whose first bytes are `existing` (APPE to an object below
    /// S3's minimum part size: its content is sent again with the new bytes).
    pub fn starting_with(
        client: Rc<Client>,
        key: String,
        part_size: usize,
        existing: Vec<u8>,
    ) -> Upload {
        let mut upload = Upload::new(client, key, part_size);
        upload.buffer = existing;
        upload
    }

    /// An upload whose first parts S3 has already copied from the old object
    /// (APPE to a large object: `done` holds the UploadPartCopy results).
    pub fn after_copied_parts(
        client: Rc<Client>,
        key: String,
        part_size: usize,
        upload_id: String,
        done: Vec<(u32, String)>,
    ) -> Upload {
        let next_number = done.len() as u32 + 1;
        let mut upload = Upload::new(client, key, part_size);
        upload.multipart = Some(Multipart {
            id: upload_id,
            done,
            sending: None,
            next_number,
            spare: Vec::new(),
        });
        upload
    }

    pub fn write(&mut self, mut data: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        while !data.is_empty() {
            let take = (self.part_size - self.buffer.len()).min(data.len());
            self.grow_for(take);
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == self.part_size {
                let result = self.send_full_part();
                self.or_fail(result)?;
            }
        }
        if let Some(part) = self.multipart.as_mut().and_then(|m| m.sending.as_mut()) {
            part.push_some();
        }
        Ok(())
    }

    /// Sends what is left and makes the object appear.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.check_open()?;
        let result = self.complete();
        self.or_fail(result)?;
        self.state = State::Finished;
        Ok(())
    }

    fn complete(&mut self) -> Result<(), Error> {
        if self.multipart.is_none() {
            return self.client.put_object(&self.key, &self.buffer);
        }
        if !self.buffer.is_empty() {
            self.send_full_part()?;
        }
        let Some(multipart) = self.multipart.as_mut() else {
            return Ok(());
        };
        if let Some(part) = multipart.sending.take() {
            let (number, etag, _) = part.finish(&self.client, &self.key, &multipart.id)?;
            multipart.done.push((number, etag));
        }
        if multipart.done.is_empty() {
            // Nothing was ever sent (cannot happen: a multipart upload starts
            // with a full part or a copied one); keep S3 from refusing.
            return Err(io("upload has no parts"));
        }
        self.client
            .complete_multipart(&self.key, &multipart.id, &multipart.done)
    }

    /// Starts the multipart upload if needed, waits for the part still on
    /// its way, then sends the buffer as the next part.
    fn send_full_part(&mut self) -> Result<(), Error> {
        if self.multipart.is_none() {
            let id = self.client.create_multipart(&self.key)?;
            self.multipart = Some(Multipart {
                id,
                done: Vec::new(),
                sending: None,
                next_number: 1,
                spare: Vec::new(),
            });
        }
        let Some(multipart) = self.multipart.as_mut() else {
            return Ok(());
        };
        if let Some(part) = multipart.sending.take() {
            let (number, etag, data) = part.finish(&self.client, &self.key, &multipart.id)?;
            multipart.done.push((number, etag));
            multipart.spare = data;
        }
        let mut next_buffer = std::mem::take(&mut multipart.spare);
        next_buffer.clear();
        let data = std::mem::replace(&mut self.buffer, next_buffer);
        let number = multipart.next_number;
        multipart.next_number += 1;
        let mut part = Part::start(&self.client, &self.key, &multipart.id, number, data);
        part.push_some();
        multipart.sending = Some(part);
        Ok(())
    }

    /// Grows the buffer for `more` bytes, never past one part.
    fn grow_for(&mut self, more: usize) {
        let needed = self.buffer.len() + more;
        if needed > self.buffer.capacity() {
            let want = (self.buffer.capacity() * 2)
                .max(needed)
                .max(64 << 10)
                .min(self.part_size);
            self.buffer.reserve_exact(want - self.buffer.len());
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            State::Open => Ok(()),
            State::Finished => Err(io("upload already finished")),
            State::Failed => Err(io("upload already failed")),
        }
    }

    /// After a failure nothing more is accepted and the multipart upload
    /// (if any) is aborted now.
    fn or_fail(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        if result.is_err() {
            self.state = State::Failed;
            self.abort();
        }
        result
    }

    fn abort(&mut self) {
        self.buffer = Vec::new();
        if let Some(multipart) = self.multipart.take() {
            // A part whose bytes all went out may still be on its way: S3
            // would keep it (and the upload) if it landed after the abort,
            // so wait for its answer first. One cut off mid-body is dropped.
            if let Some(part) = multipart.sending {
                part.settle();
            }
            self.client.abort_multipart(&self.key, &multipart.id);
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Dropped before `finish`: an interrupted transfer. Nothing appears.
        if self.state == State::Open {
            self.abort();
        }
    }
}

impl Part {
    fn start(client: &Client, key: &str, upload_id: &str, number: u32, data: Vec<u8>) -> Part {
        let (body, response) = match client.start_part(key, upload_id, number, data.len() as u64) {
            Ok(started) => (started.body, Ok(started.response)),
            Err(e) => (None, Err(e)),
        };
        Part {
            number,
            data,
            written: 0,
            body,
            response,
        }
    }

    /// Hands the host what it takes now, without waiting.
    fn push_some(&mut self) {
        if let Some(body) = &mut self.body {
            match body.write_some(&self.data[self.written..]) {
                Ok(n) => self.written += n,
                // Seen again, and retried, in `finish`.
                Err(_) => self.body = None,
            }
        }
    }

    /// Waits for the answer of a part whose body was sent whole; drops
    /// (cancels) one that was not.
    fn settle(mut self) {
        if self.written == self.data.len()
            && let Some(body) = self.body.take()
            && body.finish().is_ok()
            && let Ok(response) = self.response
        {
            let _ = response.wait();
        }
    }

    /// Sends the rest, waits for the answer (retrying the whole part from
    /// memory if needed) and returns the part's number, its ETag and its
    /// buffer for reuse.
    fn finish(
        mut self,
        client: &Client,
        key: &str,
        upload_id: &str,
    ) -> Result<(u32, String, Vec<u8>), Error> {
        let mut first_try = self.response;
        match self.body.take() {
            Some(mut body) => {
                let sent = body
                    .write_all(&self.data[self.written..])
                    .and_then(|()| body.finish());
                if let Err(e) = sent {
                    first_try = Err(e);
                }
            }
            None if self.written < self.data.len() && first_try.is_ok() => {
                first_try = Err(Transport {
                    message: "part body broke off".into(),
                    retry: crate::http::Retry::MaybeSent,
                });
            }
            None => {}
        }
        let answer = first_try.and_then(InFlight::wait);
        let etag = client.finish_part(key, upload_id, self.number, answer, &self.data)?;
        Ok((self.number, etag, self.data))
    }
}

fn io(message: &str) -> Error {
    Error {
        code: ErrorCode::Io,
        message: Some(message.into()),
    }
}
