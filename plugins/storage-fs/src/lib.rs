//! `storage-fs`: serves a directory the site grants (a WASI preopen) as `/`.
//!
//! Configuration (the site's `storage.config`, through `wasi:config/store`):
//!
//! | key | meaning |
//! |---|---|
//! | `root` | guest path of the preopen to serve (default: the first preopen) |
//! | `root_attribute` | the name of an account attribute (from the auth plugin) holding a directory, relative to `root`, that becomes the session's `/`: each user gets their own tree; created on first login; a session whose account lacks it is refused |
//! | `data_path` | `stream` (default): hand the host `wasi:io` streams from `read-via-stream`/`write-via-stream` so bytes move natively; `chunks`: move them through this plugin's `reader`/`writer` resources (portable path, kept for tests and benchmarks) |
//! | `atomic_uploads` | `true` (default): a new upload (STOR, STOU) is written to a temporary file `.wasmftpd-upload.<random>` beside its target and renamed into place only when complete, so nobody ever sees a partial file under the final name and an interrupted upload leaves the old file intact; `false`: write in place. APPE and REST+STOR always write in place (they continue a file) |
//!
//! Confinement comes from the runtime: every path is resolved relative to the
//! preopened descriptor, which refuses `..` escapes, absolute paths and symlinks
//! that lead outside. We check paths again anyway (cheap, and a clearer error).

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package wasmftpd:storage-fs;

        world storage-fs {
            include wasmftpd:plugin/storage-plugin@0.2.0;
            import wasi:filesystem/types@0.2.12;
            import wasi:filesystem/preopens@0.2.12;
        }
    ",
    world: "wasmftpd:storage-fs/storage-fs",
    generate_all,
});

use std::cell::Cell;
use std::rc::Rc;

use exports::wasmftpd::plugin::storage::{
    CommittedStream, DirLister, Guest, GuestDirLister, GuestReader, GuestSession, GuestWriter,
    ReadSource, Reader, Session, WriteMode, WriteSink, Writer,
};
use wasi::config::store;
use wasi::filesystem::preopens;
use wasi::filesystem::types::{
    Datetime, Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntryStream,
    ErrorCode as FsCode, NewTimestamp, OpenFlags, PathFlags,
};
use wasmftpd::plugin::types::{
    DirEntry, EntryKind, Error, ErrorCode, Metadata, SessionFacts, Timestamp,
};

struct StorageFs;

export!(StorageFs);

/// The served directory of one session, found from the config, the preopens
/// and (with `root_attribute`) the account.
struct Root {
    /// Shared with the writers of atomic uploads, which rename into it.
    dir: Rc<Descriptor>,
    chunks: bool,
    atomic_uploads: bool,
}

fn find_root(facts: &SessionFacts) -> Result<Root, Error> {
    let config = |key: &str| {
        store::get(key).map_err(|e| {
            let (store::Error::Upstream(m) | store::Error::Io(m)) = e;
            unavailable(&format!("cannot read config key {key}: {m}"))
        })
    };
    let wanted = config("root")?;
    let chunks = match config("data_path")?.as_deref() {
        None | Some("stream") => false,
        Some("chunks") => true,
        Some(other) => {
            eprintln!("error: data_path must be `stream` or `chunks`, not `{other}`");
            return Err(unavailable("storage misconfigured; see the server log"));
        }
    };
    let atomic_uploads = match config("atomic_uploads")?.as_deref().map(str::trim) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            eprintln!("error: atomic_uploads must be `true` or `false`, not `{other}`");
            return Err(unavailable("storage misconfigured; see the server log"));
        }
    };
    let mut preopens = preopens::get_directories();
    let index = match &wanted {
        Some(name) => preopens.iter().position(|(_, guest)| guest == name),
        None => (!preopens.is_empty()).then_some(0),
    };
    let Some(index) = index else {
        match wanted {
            Some(name) => {
                eprintln!("error: no granted directory is named `{name}` (config key root)")
            }
            None => eprintln!("error: the site grants this plugin no directory"),
        }
        return Err(unavailable("storage misconfigured; see the server log"));
    };
    let (mut dir, _) = preopens.swap_remove(index);
    if let Some(attribute) = config("root_attribute")? {
        let Some((_, sub)) = facts.attributes.iter().find(|(k, _)| *k == attribute) else {
            eprintln!(
                "error: account {} has no `{attribute}` attribute (config key root_attribute)",
                facts.user
            );
            return Err(error(
                ErrorCode::PermissionDenied,
                "this account has no storage root",
            ));
        };
        dir = user_root(&dir, sub)?;
    }
    Ok(Root {
        dir: Rc::new(dir),
        chunks,
        atomic_uploads,
    })
}

/// Opens (creating it if needed) a relative directory under the served root
/// for one user's session.
fn user_root(root: &Descriptor, sub: &str) -> Result<Descriptor, Error> {
    let bad = |s: &str| s.is_empty() || s == "." || s == ".." || s.contains('\0');
    let segments: Vec<&str> = sub.trim_matches('/').split('/').collect();
    if sub.starts_with('/') || segments.iter().any(|s| bad(s)) {
        eprintln!("error: per-user root `{sub}` must be a relative path without `..`");
        return Err(unavailable("storage misconfigured; see the server log"));
    }
    let mut path = String::new();
    for segment in segments {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(segment);
        match root.create_directory_at(&path) {
            Ok(()) | Err(FsCode::Exist) => {}
            Err(e) => return Err(fs_error(e)),
        }
    }
    root.open_at(
        PathFlags::empty(),
        &path,
        OpenFlags::DIRECTORY,
        DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
    )
    .map_err(fs_error)
}

/// Turns an absolute virtual path into one relative to the root (`.` for `/`).
/// The host has normalized it already; anything odd is refused, not repaired.
fn relative(path: &str) -> Result<&str, Error> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(error(ErrorCode::InvalidName, "path must be absolute"));
    };
    if rest.is_empty() {
        return Ok(".");
    }
    let bad = |s: &str| s.is_empty() || s == "." || s == ".." || s.contains('\0');
    if rest.split('/').any(bad) {
        return Err(error(ErrorCode::InvalidName, "path is not normalized"));
    }
    Ok(rest)
}

fn error(code: ErrorCode, message: &str) -> Error {
    Error {
        code,
        message: Some(message.into()),
    }
}

fn unavailable(message: &str) -> Error {
    error(ErrorCode::Unavailable, message)
}

/// Maps a WASI filesystem error to ours. Only `io` carries a message, since the
/// other codes already say everything a client should see.
fn fs_error(code: FsCode) -> Error {
    let ours = match code {
        FsCode::NoEntry => ErrorCode::NotFound,
        FsCode::Access | FsCode::NotPermitted | FsCode::ReadOnly => ErrorCode::PermissionDenied,
        FsCode::Exist => ErrorCode::AlreadyExists,
        FsCode::NotDirectory => ErrorCode::NotADirectory,
        FsCode::IsDirectory => ErrorCode::IsADirectory,
        FsCode::NotEmpty => ErrorCode::NotEmpty,
        FsCode::NameTooLong | FsCode::IllegalByteSequence | FsCode::Invalid => {
            ErrorCode::InvalidName
        }
        FsCode::InsufficientSpace | FsCode::Quota | FsCode::FileTooLarge => ErrorCode::NoSpace,
        FsCode::Unsupported => ErrorCode::Unsupported,
        FsCode::Busy | FsCode::WouldBlock | FsCode::Interrupted | FsCode::TextFileBusy => {
            ErrorCode::Unavailable
        }
        other => {
            return Error {
                code: ErrorCode::Io,
                message: Some(format!("{other:?}")),
            };
        }
    };
    Error {
        code: ours,
        message: None,
    }
}

fn metadata(stat: &DescriptorStat) -> Metadata {
    let kind = match stat.type_ {
        DescriptorType::RegularFile => EntryKind::File,
        DescriptorType::Directory => EntryKind::Directory,
        DescriptorType::SymbolicLink => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    Metadata {
        kind,
        size: stat.size,
        modified: stat.data_modification_timestamp.map(|t| Timestamp {
            // Seconds since 1970 fit an i64 for the next 292 billion years.
            seconds: i64::try_from(t.seconds).unwrap_or(i64::MAX),
            nanoseconds: t.nanoseconds,
        }),
        // WASI p2 does not expose permission bits; the preopen's own rights
        // are enforced on write anyway.
        readonly: false,
    }
}

impl Guest for StorageFs {
    type Reader = ChunkReader;
    type Writer = ChunkWriter;
    type DirLister = FsLister;
    type Session = Root;

    fn open_session(facts: SessionFacts) -> Result<Session, Error> {
        Ok(Session::new(find_root(&facts)?))
    }
}

impl GuestSession for Root {
    fn stat(&self, path: String) -> Result<Metadata, Error> {
        let rel = relative(&path)?;
        let stat = self
            .dir
            .stat_at(PathFlags::SYMLINK_FOLLOW, rel)
            .map_err(fs_error)?;
        Ok(metadata(&stat))
    }

    fn list_dir(&self, path: String) -> Result<DirLister, Error> {
        let rel = relative(&path)?;
        let dir = self
            .dir
            .open_at(
                PathFlags::SYMLINK_FOLLOW,
                rel,
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            )
            .map_err(fs_error)?;
        let entries = dir.read_directory().map_err(fs_error)?;
        Ok(DirLister::new(FsLister { dir, entries }))
    }

    fn open_read(&self, path: String, offset: u64) -> Result<ReadSource, Error> {
        let rel = relative(&path)?;
        let file = self
            .dir
            .open_at(
                PathFlags::SYMLINK_FOLLOW,
                rel,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .map_err(fs_error)?;
        match file.get_type().map_err(fs_error)? {
            DescriptorType::RegularFile => {}
            DescriptorType::Directory => return Err(fs_error(FsCode::IsDirectory)),
            _ => return Err(error(ErrorCode::PermissionDenied, "not a regular file")),
        }
        if self.chunks {
            Ok(ReadSource::Chunks(Reader::new(ChunkReader {
                file,
                position: Cell::new(offset),
            })))
        } else {
            // The stream keeps the file open after `file` is dropped here.
            Ok(ReadSource::Stream(
                file.read_via_stream(offset).map_err(fs_error)?,
            ))
        }
    }

    fn open_write(&self, path: String, mode: WriteMode) -> Result<WriteSink, Error> {
        let rel = relative(&path)?;
        if self.atomic_uploads && matches!(mode, WriteMode::Truncate) {
            return self.open_atomic(rel);
        }
        let open = match mode {
            WriteMode::Truncate => OpenFlags::CREATE | OpenFlags::TRUNCATE,
            WriteMode::Append | WriteMode::Offset(_) => OpenFlags::CREATE,
        };
        let file = self
            .dir
            .open_at(PathFlags::SYMLINK_FOLLOW, rel, open, DescriptorFlags::WRITE)
            .map_err(fs_error)?;
        if file.get_type().map_err(fs_error)? != DescriptorType::RegularFile {
            return Err(error(ErrorCode::PermissionDenied, "not a regular file"));
        }
        if self.chunks {
            let position = match mode {
                WriteMode::Truncate => 0,
                WriteMode::Offset(offset) => offset,
                // One writer per file is the FTP norm, so the size at open
                // is where appending starts.
                WriteMode::Append => file.stat().map_err(fs_error)?.size,
            };
            return Ok(WriteSink::Chunks(Writer::new(ChunkWriter {
                file,
                position: Cell::new(position),
                commit: None,
            })));
        }
        let stream = match mode {
            WriteMode::Truncate => file.write_via_stream(0),
            WriteMode::Offset(offset) => file.write_via_stream(offset),
            WriteMode::Append => file.append_via_stream(),
        };
        Ok(WriteSink::Stream(stream.map_err(fs_error)?))
    }

    fn make_dir(&self, path: String) -> Result<(), Error> {
        let rel = relative(&path)?;
        self.dir.create_directory_at(rel).map_err(fs_error)
    }

    fn remove_dir(&self, path: String) -> Result<(), Error> {
        let rel = relative(&path)?;
        self.dir.remove_directory_at(rel).map_err(fs_error)
    }

    fn delete(&self, path: String) -> Result<(), Error> {
        let rel = relative(&path)?;
        self.dir.unlink_file_at(rel).map_err(fs_error)
    }

    fn rename(&self, source: String, target: String) -> Result<(), Error> {
        let (from, to) = (relative(&source)?, relative(&target)?);
        self.dir.rename_at(from, &self.dir, to).map_err(fs_error)
    }

    fn set_modified(&self, path: String, time: Timestamp) -> Result<(), Error> {
        let rel = relative(&path)?;
        let Ok(seconds) = u64::try_from(time.seconds) else {
            return Err(error(
                ErrorCode::Unsupported,
                "times before 1970 are not supported",
            ));
        };
        let mtime = NewTimestamp::Timestamp(Datetime {
            seconds,
            nanoseconds: time.nanoseconds,
        });
        self.dir
            .set_times_at(
                PathFlags::SYMLINK_FOLLOW,
                rel,
                NewTimestamp::NoChange,
                mtime,
            )
            .map_err(fs_error)
    }
}

/// Prefix of the temporary files of atomic uploads.
const UPLOAD_PREFIX: &str = ".wasmftpd-upload.";

impl Root {
    /// An upload written to a temporary file beside `rel` and renamed onto it
    /// by `finish`: a `committed` stream (the host writes the file natively,
    /// then calls `finish`), or the chunk path when `chunks` is set.
    fn open_atomic(&self, rel: &str) -> Result<WriteSink, Error> {
        // Refuse now what the rename would refuse after the whole upload.
        match self.dir.stat_at(PathFlags::SYMLINK_FOLLOW, rel) {
            Ok(stat) if stat.type_ == DescriptorType::Directory => {
                return Err(fs_error(FsCode::IsDirectory));
            }
            Ok(stat) if stat.type_ != DescriptorType::RegularFile => {
                return Err(error(ErrorCode::PermissionDenied, "not a regular file"));
            }
            // Missing (the usual case), or not examinable (a write-only grant).
            _ => {}
        }
        let parent = match rel.rfind('/') {
            Some(slash) => &rel[..=slash],
            None => "",
        };
        let mut attempts = 0;
        let (temp, file) = loop {
            let temp = format!("{parent}{UPLOAD_PREFIX}{:016x}", random_u64());
            match self.dir.open_at(
                PathFlags::empty(),
                &temp,
                OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                DescriptorFlags::WRITE,
            ) {
                Ok(file) => break (temp, file),
                Err(FsCode::Exist) if attempts < 8 => attempts += 1,
                Err(e) => return Err(fs_error(e)),
            }
        };
        let commit = Commit {
            dir: Rc::clone(&self.dir),
            temp,
            target: rel.to_string(),
            done: Cell::new(false),
        };
        if self.chunks {
            return Ok(WriteSink::Chunks(Writer::new(ChunkWriter {
                file,
                position: Cell::new(0),
                commit: Some(commit),
            })));
        }
        // If the stream cannot be made, `commit` is dropped unfinished and
        // removes the temporary file.
        let stream = file.write_via_stream(0).map_err(fs_error)?;
        Ok(WriteSink::Committed(CommittedStream {
            stream,
            // `write` is never called on a committed sink's writer; `finish`
            // renames, the destructor of an unfinished one removes.
            commit: Writer::new(ChunkWriter {
                file,
                position: Cell::new(0),
                commit: Some(commit),
            }),
        }))
    }
}

/// A random number without a crate: std seeds each `RandomState` from the
/// platform's randomness (`wasi:random`).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// Where a complete atomic upload goes, and whether it got there.
struct Commit {
    dir: Rc<Descriptor>,
    temp: String,
    target: String,
    /// Set once renamed (or given up), so the drop leaves the file alone.
    done: Cell<bool>,
}

impl Commit {
    fn rename(&self) -> Result<(), Error> {
        self.done.set(true);
        let renamed = self
            .dir
            .rename_at(&self.temp, &self.dir, &self.target)
            .map_err(fs_error);
        if renamed.is_err() {
            let _ = self.dir.unlink_file_at(&self.temp);
        }
        renamed
    }
}

impl Drop for Commit {
    /// The host dropped the writer without `finish`: the upload was
    /// interrupted, and its temporary file is removed (the target, if it
    /// existed, is untouched). An instance that dies (a trap, a limit) runs
    /// no destructor: its temporary file stays, under its dot-name.
    fn drop(&mut self) {
        if !self.done.get() {
            let _ = self.dir.unlink_file_at(&self.temp);
        }
    }
}

/// A directory being listed, a page per call.
struct FsLister {
    dir: Descriptor,
    entries: DirectoryEntryStream,
}

impl GuestDirLister for FsLister {
    fn next_page(&self, max: u32) -> Result<Vec<DirEntry>, Error> {
        let mut page = Vec::with_capacity(max.min(4096) as usize);
        while page.len() < max as usize {
            let Some(entry) = self.entries.read_directory_entry().map_err(fs_error)? else {
                break;
            };
            // Show what a symlink points to when that is reachable (as `ls -l`
            // users expect of an FTP listing); a link that dangles or leads
            // outside the root is listed as a link.
            let stat = if entry.type_ == DescriptorType::SymbolicLink {
                self.dir
                    .stat_at(PathFlags::SYMLINK_FOLLOW, &entry.name)
                    .or_else(|_| self.dir.stat_at(PathFlags::empty(), &entry.name))
            } else {
                self.dir.stat_at(PathFlags::empty(), &entry.name)
            };
            match stat {
                Ok(stat) => page.push(DirEntry {
                    name: entry.name,
                    metadata: metadata(&stat),
                }),
                // Removed between readdir and stat: it is simply gone.
                Err(FsCode::NoEntry) => {}
                Err(e) => return Err(fs_error(e)),
            }
        }
        Ok(page)
    }
}

/// Largest chunk we hand back, whatever the host asks: bounds this instance's
/// memory use per call.
const MAX_CHUNK: u32 = 4 << 20;

/// The portable read path: each `read` is one positioned `descriptor.read`.
struct ChunkReader {
    file: Descriptor,
    /// A `Cell` because resource methods take `&self`.
    position: Cell<u64>,
}

impl GuestReader for ChunkReader {
    fn read(&self, max: u32) -> Result<Vec<u8>, Error> {
        let position = self.position.get();
        let (data, _eof) = self
            .file
            .read(u64::from(max.min(MAX_CHUNK)), position)
            .map_err(fs_error)?;
        self.position.set(position + data.len() as u64);
        Ok(data)
    }
}

/// The portable write path: each `write` is one positioned `descriptor.write`.
struct ChunkWriter {
    file: Descriptor,
    /// A `Cell` because resource methods take `&self`.
    position: Cell<u64>,
    /// For an atomic upload: the rename that `finish` does.
    commit: Option<Commit>,
}

impl GuestWriter for ChunkWriter {
    fn write(&self, data: Vec<u8>) -> Result<(), Error> {
        let mut rest = &data[..];
        while !rest.is_empty() {
            let position = self.position.get();
            let n = self.file.write(rest, position).map_err(fs_error)?;
            if n == 0 {
                return Err(error(ErrorCode::Io, "short write"));
            }
            self.position.set(position + n);
            rest = &rest[usize::try_from(n).unwrap_or(rest.len()).min(rest.len())..];
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), Error> {
        // Durability is the filesystem's business (no fsync per upload, as
        // other FTP servers do); every write has reached the file already.
        match &self.commit {
            Some(commit) => commit.rename(),
            None => Ok(()),
        }
    }
}
