//! The S3 operations we use, one function each: URL building, signing,
//! bounded retries and the mapping of S3 answers to the contract's errors.
//!
//! Retries: an answer of 500, 502, 503 (SlowDown), 504 or 429, or no answer at
//! all, is tried again up to [`ATTEMPTS`] times with a short pause; after that
//! the operation fails as `unavailable` (FTP `450`). A request that may have
//! reached the server is repeated only when repeating it is harmless (every
//! request here except the two POSTs of multipart uploads).

use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::dates::{self, Instant};
use crate::http::{self, InFlight, Request, Response, Retry, Started, Transport};
use crate::settings::{Endpoint, Settings};
use crate::sign::{Signer, ToSign};
use crate::wasmftpd::plugin::types::{Error, ErrorCode};
use crate::xml::{self, ParseFailure};

/// Tries per request.
const ATTEMPTS: u32 = 3;
/// Largest XML answer we read (a 1,000-key listing is ~300 KiB).
const MAX_XML: usize = 8 << 20;

/// Everything but unreserved characters, for query values.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/`, for object keys in paths.
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// One bucket at one endpoint, with credentials.
pub struct Client {
    endpoint: Endpoint,
    bucket: String,
    path_style: bool,
    signer: Signer,
}

/// What HEAD tells about an object.
#[derive(Debug, Clone)]
pub struct Head {
    pub size: u64,
    pub etag: Option<String>,
    pub modified: Option<Instant>,
}

/// One request, before it is signed.
struct Call<'a> {
    method: &'static str,
    /// `None` for requests on the bucket itself (listings).
    key: Option<&'a str>,
    /// Unencoded names and values; a `None` value is a bare name (`?uploads`).
    query: Vec<(&'static str, Option<String>)>,
    /// Lower-case names; signed and sent.
    headers: Vec<(&'static str, String)>,
}

impl<'a> Call<'a> {
    fn new(method: &'static str, key: Option<&'a str>) -> Self {
        Call {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, Some(value.into())));
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn idempotent(&self) -> bool {
        self.method != "POST"
    }
}

impl Client {
    pub fn new(settings: &Settings) -> Client {
        Client {
            endpoint: settings.endpoint.clone(),
            bucket: settings.bucket.clone(),
            path_style: settings.path_style,
            signer: Signer::new(
                &settings.access_key_id,
                &settings.secret_access_key,
                settings.session_token.as_deref(),
                &settings.region,
            ),
        }
    }

    // ---- objects ----

    /// HEAD: `None` when there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<Head>, Error> {
        let response = self.send(&Call::new("HEAD", Some(key)), None)?;
        match response.status {
            200 => Ok(Some(Head {
                size: response
                    .header("content-length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
                etag: response.header("etag").map(str::to_string),
                modified: response
                    .header("last-modified")
                    .and_then(dates::from_http_date),
            })),
            404 => Ok(None),
            // HEAD answers carry no error document.
            status => Err(self.failure("HEAD", key, status, &xml::ErrorDoc::default())),
        }
    }

    /// Starts a GET of bytes `first..=last` (only of the same version, with
    /// `if_match`). The answer is collected with [`PendingGet::wait`].
    pub fn start_get(
        &self,
        key: &str,
        first: u64,
        last: u64,
        if_match: Option<&str>,
    ) -> PendingGet {
        let pending = self.start_get_once(key, first, last, if_match);
        PendingGet {
            key: key.to_string(),
            first,
            last,
            if_match: if_match.map(str::to_string),
            pending,
        }
    }

    fn start_get_once(
        &self,
        key: &str,
        first: u64,
        last: u64,
        if_match: Option<&str>,
    ) -> Result<InFlight, Transport> {
        let mut call = Call::new("GET", Some(key)).header("range", format!("bytes={first}-{last}"));
        if let Some(etag) = if_match {
            call = call.header("if-match", etag);
        }
        Ok(self.start(&call, None)?.response)
    }

    /// PutObject of a body held in memory.
    pub fn put_object(&self, key: &str, data: &[u8]) -> Result<(), Error> {
        let response = self.send(&Call::new("PUT", Some(key)), Some(data))?;
        self.expect_ok("PUT", key, response).map(drop)
    }

    /// DeleteObject (S3 answers 204 whether or not the key existed).
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        let response = self.send(&Call::new("DELETE", Some(key)), None)?;
        self.expect_ok("DELETE", key, response).map(drop)
    }

    /// CopyObject of a whole object (at most 5 GiB), only of the version
    /// with `if_match` when given.
    pub fn copy_object(&self, from: &str, to: &str, if_match: Option<&str>) -> Result<(), Error> {
        let mut call = Call::new("PUT", Some(to))
            .header("x-amz-copy-source", self.copy_source(from))
            .header("x-amz-metadata-directive", "COPY");
        if let Some(etag) = if_match {
            call = call.header("x-amz-copy-source-if-match", etag);
        }
        let response = self.send(&call, None)?;
        let body = self.expect_ok("COPY", to, response)?;
        self.parse::<xml::EtagResult>("COPY", to, &body).map(drop)
    }

    // ---- listings ----

    /// Starts one ListObjectsV2 page of keys starting with `prefix`: with
    /// `delimited`, grouped at the next `/` into common prefixes.
    pub fn start_list(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<&str>,
        max_keys: u32,
    ) -> PendingList {
        let request = ListRequest {
            prefix: prefix.to_string(),
            delimited,
            token: token.map(str::to_string),
            max_keys,
        };
        let pending = self.start(&request.call(), None).map(|s| s.response);
        PendingList { request, pending }
    }

    /// One page, waited for.
    pub fn list(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<xml::ListPage, Error> {
        self.start_list(prefix, delimited, token, max_keys)
            .wait(self)
    }

    /// Whether any key starts with `prefix`.
    pub fn any_under(&self, prefix: &str) -> Result<bool, Error> {
        let page = self.list(prefix, false, None, 1)?;
        Ok(!page.contents.is_empty() || !page.common_prefixes.is_empty())
    }

    // ---- multipart uploads ----

    pub fn create_multipart(&self, key: &str) -> Result<String, Error> {
        let mut call = Call::new("POST", Some(key));
        call.query.push(("uploads", None));
        let response = self.send(&call, None)?;
        let body = self.expect_ok("CreateMultipartUpload", key, response)?;
        Ok(self
            .parse::<xml::InitiateMultipartUploadResult>("CreateMultipartUpload", key, &body)?
            .upload_id)
    }

    /// Starts an UploadPart whose `len` bytes the caller writes through the
    /// returned body; see [`Client::finish_part`].
    pub fn start_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        len: u64,
    ) -> Result<Started, Transport> {
        self.start(&part_call(key, upload_id, number), Some(len))
    }

    /// The ETag of a part whose request has been sent; tries the upload
    /// again from `data` if that one got no good answer.
    pub fn finish_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        first_try: Result<Response, Transport>,
        data: &[u8],
    ) -> Result<String, Error> {
        let retry = match first_try {
            Ok(response) if !retryable_status(response.status) => {
                return self.part_etag(key, response);
            }
            Ok(response) => format!("answer {}", response.status),
            Err(e) => e.message,
        };
        log(&format!(
            "UploadPart {key} #{number}: {retry}; trying again"
        ));
        let response = self.send(&part_call(key, upload_id, number), Some(data))?;
        self.part_etag(key, response)
    }

    fn part_etag(&self, key: &str, response: Response) -> Result<String, Error> {
        let etag = response.header("etag").map(str::to_string);
        self.expect_ok("UploadPart", key, response)?;
        etag.ok_or_else(|| self.protocol("UploadPart", key, "answer without ETag"))
    }

    /// UploadPartCopy of bytes `first..=last` of `from` as part `number`.
    #[allow(clippy::too_many_arguments)]
    pub fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        from: &str,
        first: u64,
        last: u64,
        if_match: Option<&str>,
    ) -> Result<String, Error> {
        let mut call = part_call(key, upload_id, number)
            .header("x-amz-copy-source", self.copy_source(from))
            .header("x-amz-copy-source-range", format!("bytes={first}-{last}"));
        if let Some(etag) = if_match {
            call = call.header("x-amz-copy-source-if-match", etag);
        }
        let response = self.send(&call, None)?;
        let body = self.expect_ok("UploadPartCopy", key, response)?;
        Ok(self
            .parse::<xml::EtagResult>("UploadPartCopy", key, &body)?
            .etag)
    }

    pub fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), Error> {
        let call = Call::new("POST", Some(key)).query("uploadId", upload_id);
        let body = xml::complete_body(parts);
        let response = self.send(&call, Some(body.as_bytes()))?;
        let answer = self.expect_ok("CompleteMultipartUpload", key, response)?;
        self.parse::<xml::EtagResult>("CompleteMultipartUpload", key, &answer)
            .map(drop)
    }

    /// Best effort: a failure is logged (the bucket's lifecycle rules, or
    /// a later abort, clean up what stays).
    pub fn abort_multipart(&self, key: &str, upload_id: &str) {
        let call = Call::new("DELETE", Some(key)).query("uploadId", upload_id);
        match self.send(&call, None) {
            Ok(response) if matches!(response.status, 200 | 204 | 404) => {}
            Ok(response) => log(&format!(
                "AbortMultipartUpload {key}: answer {} (the upload's parts stay until aborted)",
                response.status
            )),
            Err(e) => log(&format!(
                "AbortMultipartUpload {key}: {} (the upload's parts stay until aborted)",
                e.message.as_deref().unwrap_or("failed")
            )),
        }
    }

    // ---- plumbing ----

    /// `x-amz-copy-source`: `/bucket/key`, the key encoded as in a path.
    fn copy_source(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, utf8_percent_encode(key, PATH))
    }

    /// Authority and path-with-query of a call.
    fn target(&self, call: &Call) -> (String, String) {
        let key = call.key.map(|k| utf8_percent_encode(k, PATH).to_string());
        let (authority, mut path) = if self.path_style {
            let path = match &key {
                Some(key) => format!("/{}/{key}", self.bucket),
                None => format!("/{}", self.bucket),
            };
            (self.endpoint.authority.clone(), path)
        } else {
            let path = format!("/{}", key.unwrap_or_default());
            (format!("{}.{}", self.bucket, self.endpoint.authority), path)
        };
        let mut query: Vec<String> = call
            .query
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}={}", utf8_percent_encode(value, QUERY)),
                None => name.to_string(),
            })
            .collect();
        query.sort();
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        (authority, path)
    }

    /// Signs and sends the head of a request.
    fn start(&self, call: &Call, body_len: Option<u64>) -> Result<Started, Transport> {
        let (authority, path) = self.target(call);
        let scheme = if self.endpoint.https { "https" } else { "http" };
        let url = format!("{scheme}://{authority}{path}");
        let to_sign: Vec<(&str, &str)> =
            call.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let signed = self
            .signer
            .sign(
                &ToSign {
                    method: call.method,
                    url: &url,
                    headers: &to_sign,
                    payload_sha256: None,
                },
                SystemTime::now(),
            )
            .map_err(|why| Transport {
                message: format!("signing: {why}"),
                retry: Retry::Never,
            })?;
        let mut headers: Vec<(String, String)> = call
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        headers.extend(signed);
        http::start(
            &Request {
                method: call.method,
                https: self.endpoint.https,
                authority: &authority,
                path_and_query: &path,
                headers: &headers,
            },
            body_len,
        )
    }

    /// Sends a request with retries; any final answer is returned, except
    /// that one still asking to retry becomes `unavailable`.
    fn send(&self, call: &Call, body: Option<&[u8]>) -> Result<Response, Error> {
        let what = format!("{} {}", call.method, call.key.unwrap_or("(bucket)"));
        let mut attempt = 1;
        loop {
            let result = self
                .start(call, body.map(|b| b.len() as u64))
                .and_then(|started| {
                    if let (Some(mut writer), Some(data)) = (started.body, body) {
                        writer.write_all(data)?;
                        writer.finish()?;
                    }
                    started.response.wait()
                });
            let (again, last) = match result {
                Ok(response) if !retryable_status(response.status) => return Ok(response),
                Ok(response) => (format!("answer {}", response.status), Ok(response)),
                Err(e)
                    if e.retry == Retry::Unsent
                        || (e.retry == Retry::MaybeSent && call.idempotent()) =>
                {
                    (e.message.clone(), Err(e))
                }
                Err(e) => return Err(self.transport_failure(&what, &e)),
            };
            if attempt >= ATTEMPTS {
                log(&format!("{what}: {again} (gave up after {ATTEMPTS} tries)"));
                return match last {
                    Ok(response) => Err(self.error_answer(&what, call.key, response)),
                    Err(e) => Err(self.transport_failure(&what, &e)),
                };
            }
            pause(attempt);
            attempt += 1;
        }
    }

    /// A 2xx answer's body; anything else becomes the matching error.
    fn expect_ok(&self, op: &str, key: &str, response: Response) -> Result<String, Error> {
        if (200..300).contains(&response.status) {
            return response
                .text(MAX_XML)
                .map_err(|e| self.transport_failure(&format!("{op} {key}"), &e));
        }
        Err(self.error_answer(op, Some(key), response))
    }

    fn error_answer(&self, op: &str, key: Option<&str>, response: Response) -> Error {
        let status = response.status;
        let doc = response
            .text(64 << 10)
            .map(|body| xml::parse_error(&body))
            .unwrap_or_default();
        self.failure(op, key.unwrap_or("(bucket)"), status, &doc)
    }

    fn parse<T: for<'de> serde::Deserialize<'de>>(
        &self,
        op: &str,
        key: &str,
        body: &str,
    ) -> Result<T, Error> {
        xml::parse::<T>(body).map_err(|failure| match failure {
            // S3 may answer 200 and still fail a copy or a completion.
            ParseFailure::S3Error(doc) => self.failure(op, key, 200, &doc),
            ParseFailure::Malformed(why) => self.protocol(op, key, &why),
        })
    }

    /// Maps an S3 error answer to the contract's error, logging what the
    /// operator needs to know. Clients see the S3 error code, nothing more.
    fn failure(&self, op: &str, key: &str, status: u16, doc: &xml::ErrorDoc) -> Error {
        let code = if doc.code.is_empty() {
            format!("HTTP {status}")
        } else {
            doc.code.clone()
        };
        let (ours, log_it) = match (status, code.as_str()) {
            (_, "NoSuchBucket") => (ErrorCode::Io, true),
            (404, _) | (_, "NoSuchKey") | (_, "NoSuchUpload") => (ErrorCode::NotFound, false),
            (403, _) | (_, "AccessDenied") => (ErrorCode::PermissionDenied, true),
            (_, "EntityTooLarge") | (_, "QuotaExceeded") => (ErrorCode::NoSpace, true),
            (_, "SlowDown") | (429, _) | (500..=599, _) => (ErrorCode::Unavailable, true),
            _ => (ErrorCode::Io, true),
        };
        if log_it {
            log(&format!(
                "{op} {key} in bucket {}: {status} {code} {}",
                self.bucket, doc.message
            ));
        }
        Error {
            code: ours,
            message: Some(format!("object store: {code}")),
        }
    }

    fn transport_failure(&self, what: &str, e: &Transport) -> Error {
        log(&format!("{what}: {}", e.message));
        Error {
            code: ErrorCode::Unavailable,
            message: Some("object store unreachable, try again later".into()),
        }
    }

    fn protocol(&self, op: &str, key: &str, why: &str) -> Error {
        log(&format!("{op} {key}: unexpected answer: {why}"));
        Error {
            code: ErrorCode::Io,
            message: Some("object store gave an unexpected answer".into()),
        }
    }
}

fn part_call<'a>(key: &'a str, upload_id: &str, number: u32) -> Call<'a> {
    Call::new("PUT", Some(key))
        .query("partNumber", number.to_string())
        .query("uploadId", upload_id)
}

fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// 100 ms, then 400 ms: short enough to fit the plugin's call deadline.
fn pause(attempt: u32) {
    std::thread::sleep(Duration::from_millis(100 * 4u64.pow(attempt - 1)));
}

/// Problems go to stderr, which the host logs under the site and plugin.
pub fn log(message: &str) {
    eprintln!("storage-s3: {message}");
}

/// A ranged GET on its way.
pub struct PendingGet {
    key: String,
    first: u64,
    last: u64,
    if_match: Option<String>,
    pending: Result<InFlight, Transport>,
}

impl PendingGet {
    /// The first byte asked for.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// How many bytes were asked for.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The answer: 206 (or 200) with the body to read, `None` for 416 (the
    /// range starts at or past the end). Errors are mapped.
    pub fn wait(self, client: &Client) -> Result<Option<(Response, Option<u64>)>, Error> {
        let what = format!("GET {}", self.key);
        let mut pending = self.pending;
        let mut attempt = 1;
        let response = loop {
            let (again, last) = match pending.and_then(InFlight::wait) {
                Ok(r) if !retryable_status(r.status) => break r,
                Ok(r) => (format!("answer {}", r.status), Ok(r)),
                Err(e) if e.retry != Retry::Never => (e.message.clone(), Err(e)),
                Err(e) => return Err(client.transport_failure(&what, &e)),
            };
            if attempt >= ATTEMPTS {
                log(&format!("{what}: {again} (gave up after {ATTEMPTS} tries)"));
                return match last {
                    Ok(response) => Err(client.error_answer("GET", Some(&self.key), response)),
                    Err(e) => Err(client.transport_failure(&what, &e)),
                };
            }
            pause(attempt);
            attempt += 1;
            pending =
                client.start_get_once(&self.key, self.first, self.last, self.if_match.as_deref());
        };
        match response.status {
            200 | 206 => {
                let total = response
                    .header("content-range")
                    .and_then(total_from_content_range);
                Ok(Some((response, total)))
            }
            416 => Ok(None),
            412 => {
                log(&format!(
                    "GET {}: the object changed during the download",
                    self.key
                ));
                Err(Error {
                    code: ErrorCode::Io,
                    message: Some("the file changed during the download".into()),
                })
            }
            _ => Err(client.error_answer("GET", Some(&self.key), response)),
        }
    }
}

/// `bytes 0-9/443` -> 443 (`*` when the size is unknown -> `None`).
fn total_from_content_range(value: &str) -> Option<u64> {
    value.rsplit_once('/')?.1.trim().parse().ok()
}

struct ListRequest {
    prefix: String,
    delimited: bool,
    token: Option<String>,
    max_keys: u32,
}

impl ListRequest {
    fn call(&self) -> Call<'static> {
        let mut call = Call::new("GET", None)
            .query("list-type", "2")
            .query("prefix", self.prefix.clone())
            .query("max-keys", self.max_keys.to_string())
            .query("encoding-type", "url");
        if self.delimited {
            call = call.query("delimiter", "/");
        }
        if let Some(token) = &self.token {
            call = call.query("continuation-token", token.clone());
        }
        call
    }
}

/// A ListObjectsV2 page on its way.
pub struct PendingList {
    request: ListRequest,
    pending: Result<InFlight, Transport>,
}

impl PendingList {
    pub fn wait(self, client: &Client) -> Result<xml::ListPage, Error> {
        let what = format!("LIST {}", self.request.prefix);
        let response = match self.pending.and_then(InFlight::wait) {
            Ok(r) if !retryable_status(r.status) => r,
            // Anything else: the retrying path, from the start.
            _ => client.send(&self.request.call(), None)?,
        };
        let body = client.expect_ok("LIST", &self.request.prefix, response)?;
        let page: xml::ListPage = client.parse("LIST", &what, &body)?;
        Ok(page.decode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(path_style: bool) -> Client {
        let settings = Settings::parse(&[
            ("endpoint".into(), "https://s3.example.com".into()),
            ("bucket".into(), "files".into()),
            ("access_key_id".into(), "AK".into()),
            ("secret_access_key".into(), "SK".into()),
            ("path_style".into(), path_style.to_string()),
        ])
        .unwrap();
        Client::new(&settings)
    }

    #[test]
    fn urls_in_both_styles() {
        let call = Call::new("GET", Some("d/Grüße a+b.txt"));
        assert_eq!(
            client(true).target(&call),
            (
                "s3.example.com".into(),
                "/files/d/Gr%C3%BC%C3%9Fe%20a%2Bb.txt".into()
            )
        );
        assert_eq!(
            client(false).target(&call),
            (
                "files.s3.example.com".into(),
                "/d/Gr%C3%BC%C3%9Fe%20a%2Bb.txt".into()
            )
        );
    }

    #[test]
    fn queries_are_encoded_and_sorted() {
        let request = ListRequest {
            prefix: "u/my dir/".into(),
            delimited: true,
            token: Some("a+b/c=".into()),
            max_keys: 1000,
        };
        let (_, path) = client(true).target(&request.call());
        assert_eq!(
            path,
            "/files?continuation-token=a%2Bb%2Fc%3D&delimiter=%2F&encoding-type=url\
             &list-type=2&max-keys=1000&prefix=u%2Fmy%20dir%2F"
        );
        let mut create = Call::new("POST", Some("k"));
        create.query.push(("uploads", None));
        assert_eq!(client(true).target(&create).1, "/files/k?uploads");
    }

    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(client(true).copy_source("a b/ü"), "/files/a%20b/%C3%BC");
    }

    #[test]
    fn content_range_total() {
        assert_eq!(total_from_content_range("bytes 0-9/443"), Some(443));
        assert_eq!(total_from_content_range("bytes 0-9/*"), None);
    }

    #[test]
    fn s3_errors_map_to_contract_codes() {
        let c = client(true);
        let doc = |code: &str| xml::ErrorDoc {
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(
            c.failure("GET", "k", 404, &doc("NoSuchKey")).code,
            ErrorCode::NotFound
        );
        assert_eq!(
            c.failure("GET", "k", 403, &doc("AccessDenied")).code,
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            c.failure("GET", "k", 503, &doc("SlowDown")).code,
            ErrorCode::Unavailable
        );
        assert_eq!(
            c.failure("GET", "k", 500, &doc("")).code,
            ErrorCode::Unavailable
        );
        assert_eq!(
            c.failure("GET", "k", 404, &doc("NoSuchBucket")).code,
            ErrorCode::Io
        );
        assert_eq!(
            c.failure("PUT", "k", 400, &doc("EntityTooLarge")).code,
            ErrorCode::NoSpace
        );
        assert_eq!(
            c.failure("PUT", "k", 400, &doc("InvalidArgument"))
                .message
                .as_deref(),
            Some("object store: InvalidArgument")
        );
    }
}
