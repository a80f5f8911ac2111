//! `storage-s3`: serves a prefix of an S3 bucket (AWS S3, MinIO, Ceph RGW,
//! Garage, SeaweedFS, ...) through outbound `wasi:http`, signing requests
//! with AWS Signature Version 4 here in the guest. It keeps no state between
//! sessions, so any number of servers can serve the same bucket.
//!
//! Configuration (the site's `storage.config`, through `wasi:config/store`):
//!
//! | key | meaning |
//! |---|---|
//! | `endpoint` | `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:8333`; the site lists it in `allowed_hosts` |
//! | `region` | signing region (default `us-east-1`) |
//! | `bucket` | the bucket |
//! | `prefix` | where the site's files start in the bucket (default: the top); `{user}` becomes the account's name, giving each user a tree |
//! | `prefix_attribute` | an account attribute (from the auth plugin) appended to `prefix` per session; an account without it is refused |
//! | `path_style` | `true` (default): `endpoint/bucket/key`; `false`: `bucket.endpoint/key` |
//! | `access_key_id`, `secret_access_key`, `session_token` | credentials; keep the secret out of the TOML with the site's `config_env` |
//! | `part_size` | bytes per part of a multipart upload (default `8MiB`, 5MiB-5GiB); at most two parts are in memory |
//! | `read_size` | bytes per ranged GET of a download (default `8MiB`; keep it below the site's `max_response_size`) |
//!
//! How FTP maps onto S3 is described in each module: `session` (directories,
//! rename, append), `upload` (STOR), `download` (RETR), `listing` (LIST).

wit_bindgen::generate!({
    path: "../../wit",
    world: "wasmftpd:plugin/storage-plugin@0.2.0",
    generate_all,
});

mod dates;
mod download;
mod http;
mod keys;
mod listing;
mod s3;
mod session;
mod settings;
mod sign;
mod upload;
mod xml;

use std::cell::RefCell;

use exports::wasmftpd::plugin::storage::{
    DirLister, Guest, GuestDirLister, GuestReader, GuestSession, GuestWriter, ReadSource, Reader,
    Session, WriteMode, WriteSink, Writer,
};
use wasi::config::store;
use wasmftpd::plugin::types::{DirEntry, Error, ErrorCode, Metadata, SessionFacts, Timestamp};

struct StorageS3;

export!(StorageS3);

impl Guest for StorageS3 {
    type Session = session::S3Session;
    type Reader = S3Reader;
    type Writer = S3Writer;
    type DirLister = S3Lister;

    fn open_session(facts: SessionFacts) -> Result<Session, Error> {
        let pairs = store::get_all().map_err(|e| {
            let (store::Error::Upstream(why) | store::Error::Io(why)) = e;
            misconfigured(&format!("reading the config: {why}"))
        })?;
        let settings = settings::Settings::parse(&pairs).map_err(|why| misconfigured(&why))?;
        let prefix = settings
            .session_prefix(&facts.user, &facts.attributes)
            .map_err(|why| {
                s3::log(&why);
                Error {
                    code: ErrorCode::PermissionDenied,
                    message: Some("this account has no storage".into()),
                }
            })?;
        Ok(Session::new(session::S3Session::new(
            &settings, prefix, facts.home,
        )))
    }
}

fn misconfigured(why: &str) -> Error {
    s3::log(&format!("error: {why}"));
    Error {
        code: ErrorCode::Io,
        message: Some("storage misconfigured; see the server log".into()),
    }
}

impl GuestSession for session::S3Session {
    fn stat(&self, path: String) -> Result<Metadata, Error> {
        session::S3Session::stat(self, &path)
    }

    fn list_dir(&self, path: String) -> Result<DirLister, Error> {
        let lister = session::S3Session::list_dir(self, &path)?;
        Ok(DirLister::new(S3Lister(RefCell::new(lister))))
    }

    fn open_read(&self, path: String, offset: u64) -> Result<ReadSource, Error> {
        let download = session::S3Session::open_read(self, &path, offset)?;
        Ok(ReadSource::Chunks(Reader::new(S3Reader(RefCell::new(
            download,
        )))))
    }

    fn open_write(&self, path: String, mode: WriteMode) -> Result<WriteSink, Error> {
        let append_at = match mode {
            WriteMode::Truncate => None,
            WriteMode::Append => Some(None),
            WriteMode::Offset(n) => Some(Some(n)),
        };
        let upload = session::S3Session::open_write(self, &path, append_at)?;
        Ok(WriteSink::Chunks(Writer::new(S3Writer(RefCell::new(
            upload,
        )))))
    }

    fn make_dir(&self, path: String) -> Result<(), Error> {
        session::S3Session::make_dir(self, &path)
    }

    fn remove_dir(&self, path: String) -> Result<(), Error> {
        session::S3Session::remove_dir(self, &path)
    }

    fn delete(&self, path: String) -> Result<(), Error> {
        session::S3Session::delete(self, &path)
    }

    fn rename(&self, source: String, target: String) -> Result<(), Error> {
        session::S3Session::rename(self, &source, &target)
    }

    fn set_modified(&self, _path: String, _time: Timestamp) -> Result<(), Error> {
        Err(Error {
            code: ErrorCode::Unsupported,
            message: Some("object storage keeps its own modification times".into()),
        })
    }
}

/// A download, read in chunks by the host (resource methods take `&self`).
struct S3Reader(RefCell<download::Download>);

impl GuestReader for S3Reader {
    fn read(&self, max: u32) -> Result<Vec<u8>, Error> {
        // Bounds this instance's memory per call, whatever the host asks.
        let max = (max as usize).clamp(1, 4 << 20);
        self.0.borrow_mut().read(max)
    }
}

/// An upload, written in chunks by the host.
struct S3Writer(RefCell<upload::Upload>);

impl GuestWriter for S3Writer {
    fn write(&self, data: Vec<u8>) -> Result<(), Error> {
        self.0.borrow_mut().write(&data)
    }

    fn finish(&self) -> Result<(), Error> {
        self.0.borrow_mut().finish()
    }
}

struct S3Lister(RefCell<listing::Lister>);

impl GuestDirLister for S3Lister {
    fn next_page(&self, max: u32) -> Result<Vec<DirEntry>, Error> {
        self.0.borrow_mut().next_page(max)
    }
}
