//! The things a site plugs into the protocol: an [`Authenticator`] that turns
//! credentials into an [`Account`], a [`StorageProvider`] that opens a
//! [`Storage`] per logged-in session (told the session's [`SessionFacts`]), and
//! [`EventHandler`]s that hear what happened. The protocol only ever sees these
//! traits; `crate::plugin` implements them with WebAssembly components and
//! [`memory`] implements them in memory for tests.
//!
//! Paths handed to [`Storage`] are absolute, normalized virtual paths (`/a/b`),
//! already confined to the account's home by the protocol.

pub mod memory;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

bitflags::bitflags! {
    /// What an account may do (mirrors the WIT `permissions` flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Permissions: u32 {
        /// RETR, SIZE, MDTM.
        const READ = 1 << 0;
        /// STOR, STOU.
        const WRITE = 1 << 1;
        /// APPE, and STOR after REST.
        const APPEND = 1 << 2;
        /// DELE.
        const DELETE = 1 << 3;
        /// RNFR/RNTO.
        const RENAME = 1 << 4;
        /// MKD.
        const MAKE_DIR = 1 << 5;
        /// RMD.
        const REMOVE_DIR = 1 << 6;
        /// LIST, NLST, MLSD, MLST, STAT with a path.
        const LIST = 1 << 7;
        /// MFMT.
        const SET_TIME = 1 << 8;
    }
}

/// What a client presented at login.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub client_ip: IpAddr,
    pub tls: bool,
    pub site: String,
}

/// Limits of one account (mirrors the WIT `account-limits`); `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountLimits {
    /// Most bytes the account may store: enforced by the storage plugin (552).
    pub quota_bytes: Option<u64>,
    /// Most files the account may store: enforced by the storage plugin (552).
    pub quota_files: Option<u64>,
    /// Upload bandwidth of all the account's sessions together, bytes/s:
    /// enforced by the host's data connections (`LoggedIn::account.limits`).
    pub upload_bytes_per_second: Option<u64>,
    /// Download (and listing) bandwidth, bytes/s: enforced by the host.
    pub download_bytes_per_second: Option<u64>,
    /// Sessions of this account logged in at once on a site: enforced at login
    /// by the host (`421`).
    pub max_sessions: Option<u32>,
}

/// A logged-in account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// Name shown in listings and logs.
    pub user: String,
    /// Absolute virtual path the session starts in and cannot leave.
    pub home: String,
    pub permissions: Permissions,
    pub limits: AccountLimits,
    /// Free-form facts from the auth plugin, handed to the storage session.
    pub attributes: Vec<(String, String)>,
}

/// What a storage session is told when it is opened: who logged in, where
/// from, and what the auth plugin said about the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    pub site: String,
    pub user: String,
    /// The account's home as the protocol uses it (normalized).
    pub home: String,
    pub client_ip: IpAddr,
    /// Whether the control connection was protected by TLS at login.
    pub tls: bool,
    pub permissions: Permissions,
    pub limits: AccountLimits,
    pub attributes: Vec<(String, String)>,
}

impl SessionFacts {
    pub fn new(site: &str, account: &Account, home: &str, client_ip: IpAddr, tls: bool) -> Self {
        SessionFacts {
            site: site.to_string(),
            user: account.user.clone(),
            home: home.to_string(),
            client_ip,
            tls,
            permissions: account.permissions,
            limits: account.limits,
            attributes: account.attributes.clone(),
        }
    }
}

/// Why a login failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong password (`530`).
    #[error("login incorrect")]
    BadCredentials(Option<String>),
    /// Account may not log in (`530`).
    #[error("account disabled")]
    Disabled(Option<String>),
    /// User store unreachable (`421`, connection closed).
    #[error("authentication service unavailable")]
    Unavailable(Option<String>),
    /// The plugin trapped, ran out of time or memory (`451`).
    #[error("authentication plugin failed: {0}")]
    PluginFailed(String),
}

/// Turns credentials into an account. One per site, shared by all its sessions.
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn login(&self, credentials: &Credentials) -> Result<Account, AuthError>;
}

/// The closed set of storage failures (mirrors the WIT `error-code`), plus
/// [`ErrorKind::PluginFailed`] for a plugin that trapped or hit a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    PermissionDenied,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    NotEmpty,
    InvalidName,
    NoSpace,
    Unsupported,
    Unavailable,
    Io,
    /// The plugin trapped, exceeded its deadline or its memory (`451`).
    PluginFailed,
}

/// A storage failure with an optional message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
pub struct StorageError {
    pub kind: ErrorKind,
    pub message: Option<String>,
}

impl StorageError {
    pub fn new(kind: ErrorKind) -> Self {
        StorageError {
            kind,
            message: None,
        }
    }

    pub fn with_message(kind: ErrorKind, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            message: Some(message.into()),
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: EntryKind,
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// The backend refuses writes to this entry whatever the account may do.
    pub readonly: bool,
}

impl Metadata {
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// A single path segment.
    pub name: String,
    pub metadata: Metadata,
}

/// Where an upload's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create or truncate (STOR).
    Truncate,
    /// Create or append (APPE).
    Append,
    /// Keep existing content, write from this offset (REST + STOR).
    Offset(u64),
}

/// A directory being listed, a page at a time, so that a directory of any size
/// is listed in bounded memory.
#[async_trait]
pub trait DirLister: Send {
    /// Up to `max` more entries (without `.` and `..`, in any order); an empty
    /// page means the listing is complete.
    async fn next_page(&mut self, max: usize) -> StorageResult<Vec<DirEntry>>;
}

/// Entries handed out a page at a time from a list already in memory (the
/// in-memory backend, and 0.1.0 plugins, which return whole listings).
pub struct VecLister(std::vec::IntoIter<DirEntry>);

impl VecLister {
    pub fn new(entries: Vec<DirEntry>) -> Self {
        VecLister(entries.into_iter())
    }
}

#[async_trait]
impl DirLister for VecLister {
    async fn next_page(&mut self, max: usize) -> StorageResult<Vec<DirEntry>> {
        Ok(self.0.by_ref().take(max.max(1)).collect())
    }
}

/// Reads a listing to its end. For callers that need every entry at once
/// (STAT over the control connection, the conformance kit); transfers stream.
pub async fn read_all(mut lister: Box<dyn DirLister>) -> StorageResult<Vec<DirEntry>> {
    let mut entries = Vec::new();
    loop {
        let page = lister.next_page(LIST_PAGE).await?;
        if page.is_empty() {
            return Ok(entries);
        }
        entries.extend(page);
    }
}

/// Entries asked for per [`DirLister::next_page`] call by the protocol.
pub const LIST_PAGE: usize = 1024;

/// A file open for reading.
#[async_trait]
pub trait FileReader: Send {
    /// Up to `max` bytes; empty means end of file.
    async fn read(&mut self, max: usize) -> StorageResult<Bytes>;

    /// When this reader's bytes are exactly an OS file's from an offset to
    /// its end, and nothing has been read through it: that file and offset,
    /// so the data connection can send it with `sendfile(2)` instead.
    fn os_file(&self) -> Option<(Arc<std::fs::File>, u64)> {
        None
    }
}

/// A file open for writing.
#[async_trait]
pub trait FileWriter: Send {
    async fn write(&mut self, data: Bytes) -> StorageResult<()>;
    /// When this writer's bytes go to an OS file from an offset on, and
    /// nothing has been written through it yet: that file and offset, so the
    /// data connection can `splice(2)` the bytes into it instead. Writes
    /// through `write` still land where they would have (a caller may write
    /// the first bytes with `write`, then splice after them); `finish` is
    /// still called at the end.
    fn os_file(&self) -> Option<(Arc<std::fs::File>, u64)> {
        None
    }
    /// Completes an upload. A writer dropped without `finish` was interrupted;
    /// what was written stays.
    async fn finish(self: Box<Self>) -> StorageResult<()>;
    /// Ends an interrupted upload: as dropping the writer, but returns once
    /// the storage has dealt with it (storage-fs has removed an atomic
    /// upload's temporary file), so the client hears of the failure after.
    async fn abandon(self: Box<Self>) {}
}

/// One session's view of a site's files. Methods take `&self` so a running
/// transfer and the control connection can share it.
#[async_trait]
pub trait Storage: Send + Sync {
    async fn stat(&self, path: &str) -> StorageResult<Metadata>;
    /// Starts listing a directory; `NotADirectory` for a file.
    async fn list_dir(&self, path: &str) -> StorageResult<Box<dyn DirLister>>;
    async fn open_read(&self, path: &str, offset: u64) -> StorageResult<Box<dyn FileReader>>;
    async fn open_write(&self, path: &str, mode: WriteMode) -> StorageResult<Box<dyn FileWriter>>;
    async fn make_dir(&self, path: &str) -> StorageResult<()>;
    async fn remove_dir(&self, path: &str) -> StorageResult<()>;
    async fn delete(&self, path: &str) -> StorageResult<()>;
    async fn rename(&self, from: &str, to: &str) -> StorageResult<()>;
    async fn set_modified(&self, path: &str, time: SystemTime) -> StorageResult<()>;
}

/// Opens a [`Storage`] for each logged-in session of a site.
pub trait StorageProvider: Send + Sync {
    /// Cheap: a plugin instance is created (and told `facts`) lazily, on the
    /// session's first storage call.
    fn open_session(&self, facts: &SessionFacts) -> Arc<dyn Storage>;
}

/// Which kind of thing an [`Event`] reports (mirrors the WIT `event-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Login,
    LoginFailed,
    Logout,
    Upload,
    Download,
    Delete,
    Rename,
    Mkdir,
    Rmdir,
}

impl EventKind {
    /// The name event plugins and webhooks see (`login-failed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Login => "login",
            EventKind::LoginFailed => "login-failed",
            EventKind::Logout => "logout",
            EventKind::Upload => "upload",
            EventKind::Download => "download",
            EventKind::Delete => "delete",
            EventKind::Rename => "rename",
            EventKind::Mkdir => "mkdir",
            EventKind::Rmdir => "rmdir",
        }
    }
}

/// Something that happened on a site, for event plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub site: String,
    /// The account; for `LoginFailed` the USER argument.
    pub user: String,
    pub client_ip: IpAddr,
    /// The storage path acted on (the source of a rename).
    pub path: Option<String>,
    /// The new path of a rename.
    pub target: Option<String>,
    /// Bytes moved by an upload or download.
    pub size: Option<u64>,
    /// How long an upload or download took.
    pub duration: Option<Duration>,
    pub ok: bool,
    pub time: SystemTime,
}

/// Receives events, one at a time, off the protocol's path (see
/// `crate::events`, which queues them per site).
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// Handles one event; an error is logged and the event dropped.
    async fn handle(&self, event: &Event) -> Result<(), String>;
}
