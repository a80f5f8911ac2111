//! A small HTTP client over raw `wasi:http`: the host sends the request (to
//! the origins the site allows) and hands back a future response, so several
//! requests can be in flight while we keep working. Everything here is
//! synchronous; waiting blocks on a `wasi:io` pollable.
//!
//! `wasi:http` resources are children of others (a body stream of its body,
//! a body of its request or response) and must be dropped before their
//! parents: the structs below hold them as `Option`s and drop them in order.

use crate::wasi::http::outgoing_handler;
use crate::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method,
    OutgoingBody, OutgoingRequest, Scheme,
};
use crate::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Why no HTTP answer came: connection refused, timeout, denied by the
/// host's `allowed_hosts`, a broken body.
#[derive(Debug, Clone)]
pub struct Transport {
    pub message: String,
    /// Whether trying again may help, and whether the server may have acted.
    pub retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request never reached the server (no connection): always safe.
    Unsent,
    /// It may have reached it: safe only for idempotent requests.
    MaybeSent,
    /// Trying again gives the same answer (denied by the host, a bad request).
    Never,
}

impl Transport {
    fn never(message: String) -> Transport {
        Transport {
            message,
            retry: Retry::Never,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn transport(what: &str, code: &ErrorCode) -> Transport {
    let retry = match code {
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTimeout => Retry::Unsent,
        // What the host says when `allowed_hosts` denies the origin, and
        // requests it cannot even build.
        ErrorCode::InternalError(_)
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::HttpRequestDenied
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpResponseBodySize(_) => Retry::Never,
        _ => Retry::MaybeSent,
    };
    Transport {
        message: format!("{what}: {code:?}"),
        retry,
    }
}

fn stream_error(what: &str, e: StreamError) -> Transport {
    match e {
        StreamError::Closed => Transport {
            message: format!("{what}: stream closed"),
            retry: Retry::MaybeSent,
        },
        StreamError::LastOperationFailed(err) => {
            match crate::wasi::http::types::http_error_code(&err) {
                Some(code) => transport(what, &code),
                None => Transport {
                    message: format!("{what}: {}", err.to_debug_string()),
                    retry: Retry::MaybeSent,
                },
            }
        }
    }
}

/// The request line and headers.
pub struct Request<'a> {
    pub method: &'a str,
    pub https: bool,
    pub authority: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a [(String, String)],
}

/// A request on its way: its body (if it has one) still to be written.
pub struct Started {
    pub body: Option<BodyWriter>,
    pub response: InFlight,
}

/// Sends the request head. With `body_len`, the caller writes exactly that
/// many bytes through `Started::body` and then finishes it.
pub fn start(request: &Request, body_len: Option<u64>) -> Result<Started, Transport> {
    let mut entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
        .collect();
    if let Some(len) = body_len {
        entries.push(("content-length".into(), len.to_string().into_bytes()));
    }
    let fields = Fields::from_list(&entries)
        .map_err(|e| Transport::never(format!("request headers refused: {e:?}")))?;
    let outgoing = OutgoingRequest::new(fields);
    let method = match request.method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    };
    let scheme = if request.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let refused = |what: &str| Transport::never(format!("request {what} refused by the host"));
    outgoing
        .set_method(&method)
        .map_err(|()| refused("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    outgoing
        .set_authority(Some(request.authority))
        .map_err(|()| refused("authority"))?;
    outgoing
        .set_path_with_query(Some(request.path_and_query))
        .map_err(|()| refused("path"))?;
    let body = match body_len {
        Some(_) => {
            let body = outgoing.body().map_err(|()| refused("body"))?;
            let stream = body.write().map_err(|()| refused("body stream"))?;
            Some(BodyWriter {
                stream: Some(stream),
                body: Some(body),
            })
        }
        None => None,
    };
    let future =
        outgoing_handler::handle(outgoing, None).map_err(|code| transport("sending", &code))?;
    Ok(Started {
        body,
        response: InFlight { future },
    })
}

/// The body of a request being sent.
pub struct BodyWriter {
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

impl BodyWriter {
    /// Writes what the host takes now without waiting; returns how much.
    pub fn write_some(&mut self, data: &[u8]) -> Result<usize, Transport> {
        let Some(stream) = &self.stream else {
            return Err(Transport::never("body already finished".into()));
        };
        let mut done = 0;
        while done < data.len() {
            let room = stream
                .check_write()
                .map_err(|e| stream_error("sending the body", e))?;
            if room == 0 {
                break;
            }
            let n = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(data.len() - done);
            stream
                .write(&data[done..done + n])
                .map_err(|e| stream_error("sending the body", e))?;
            done += n;
        }
        Ok(done)
    }

    /// Writes all of `data`, waiting for the host to take it.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), Transport> {
        let mut done = 0;
        while done < data.len() {
            done += self.write_some(&data[done..])?;
            if done < data.len()
                && let Some(stream) = &self.stream
            {
                stream.subscribe().block();
            }
        }
        Ok(())
    }

    /// Ends the body; the request then completes. (No flush: the host closes
    /// the stream itself once `content-length` bytes are in, and `finish`
    /// checks that the count is right.)
    pub fn finish(mut self) -> Result<(), Transport> {
        self.stream.take();
        match self.body.take() {
            Some(body) => {
                OutgoingBody::finish(body, None).map_err(|c| transport("ending the body", &c))
            }
            None => Ok(()),
        }
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        // Dropping the body without `finish` tells the host the request was
        // not completed, so the server never sees a short body as whole.
        self.stream.take();
        self.body.take();
    }
}

/// A response that may not have arrived yet.
pub struct InFlight {
    future: FutureIncomingResponse,
}

impl InFlight {
    /// Waits for the status line and headers.
    pub fn wait(self) -> Result<Response, Transport> {
        let result = loop {
            if let Some(result) = self.future.get() {
                break result;
            }
            self.future.subscribe().block();
        };
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => return Err(transport("no answer", &code)),
            Err(()) => return Err(Transport::never("response taken twice".into())),
        };
        let status = response.status();
        let headers = response.headers().entries();
        Ok(Response {
            status,
            headers,
            body: BodyReader::new(response),
        })
    }
}

/// Status, headers and a body still to be read.
pub struct Response {
    pub status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: BodyReader,
}

impl Response {
    /// A header's value, when it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The whole body as text, refusing more than `limit` bytes.
    pub fn text(mut self, limit: usize) -> Result<String, Transport> {
        let mut all = Vec::new();
        while let Some(chunk) = self.body.read(64 << 10)? {
            all.extend_from_slice(&chunk);
            if all.len() > limit {
                return Err(Transport::never(format!(
                    "answer larger than {limit} bytes"
                )));
            }
        }
        Ok(String::from_utf8_lossy(&all).into_owned())
    }

    pub fn into_body(self) -> BodyReader {
        self.body
    }
}

/// A response body being read.
pub struct BodyReader {
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    response: Option<IncomingResponse>,
}

impl BodyReader {
    fn new(response: IncomingResponse) -> BodyReader {
        let body = response.consume().ok();
        let stream = body.as_ref().and_then(|b| b.stream().ok());
        BodyReader {
            stream,
            body,
            response: Some(response),
        }
    }

    /// Up to `max` bytes: waits for the first, then takes what has already
    /// arrived. `None` at the end of the body.
    pub fn read(&mut self, max: usize) -> Result<Option<Vec<u8>>, Transport> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        let max = max.max(1);
        let mut data = loop {
            match stream.blocking_read(max as u64) {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => break data,
                Err(StreamError::Closed) => {
                    self.stream.take();
                    return Ok(None);
                }
                Err(e) => return Err(stream_error("reading the answer", e)),
            }
        };
        while data.len() < max {
            match stream.read((max - data.len()) as u64) {
                Ok(more) if more.is_empty() => break,
                Ok(more) => data.extend_from_slice(&more),
                // The end (or a failure) shows again on the next call.
                Err(_) => break,
            }
        }
        Ok(Some(data))
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        self.stream.take();
        self.body.take();
        self.response.take();
    }
}
