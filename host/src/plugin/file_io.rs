//! Our own host implementations of some `wasi:filesystem` calls, replacing
//! wasmtime-wasi's in the linker: the ones that move file bytes and list
//! directories (for speed), and the ones that enforce a grant's mode (see
//! [`Preopens`]):
//!
//! - `descriptor.read-via-stream`: the stream storage-fs hands us for RETR
//!   (and, when the plugin hands it over unread, the file and offset behind
//!   it, which the host then sends with `sendfile(2)`);
//! - `descriptor.write-via-stream`: the stream storage-fs hands us for STOR
//!   (and, when the plugin hands it over unwritten, the file and offset behind
//!   it, into which the host then `splice(2)`s the upload); each write is one
//!   positioned write, where wasmtime-wasi's splits it into 64 KiB pieces;
//! - `descriptor.read`: what storage-fs's chunked path reads with;
//! - `descriptor.read-directory` and its `directory-entry-stream`: what
//!   storage-fs lists directories with;
//! - `descriptor.stat-at` (answered from a listing, below);
//! - `preopens.get-directories`: the site's granted directories, opened once
//!   per site and shared by its instances, with their modes;
//! - `descriptor.open-at`, `metadata-hash-at`, `readlink-at`: wasmtime-wasi's,
//!   behind the write-only check.
//!
//! **Every replacement keeps wasmtime-wasi's checks** (file versus directory,
//! `FsPerms`) and adds the grant-mode check: wasmtime-wasi 48 knows read-only
//! and read-write grants and enforces read-only on every mutating call, which
//! we never replace; it has no write-only mode. A write-only grant is a
//! preopen whose `open_mode` lacks `READ`; under it nothing can be read, listed
//! or examined (`read`, `read-via-stream`, `read-directory`, `stat-at`,
//! `metadata-hash-at`, `readlink-at` answer `not-permitted`), and `open-at`
//! opens files for writing only. A file opened for writing only cannot be read
//! either (its `open_mode` lacks `READ`; the OS refuses too). docs/runtime.md
//! says how to re-audit this file when wasmtime is upgraded, and the tests
//! below pin the replaced names and signatures.
//!
//! wasmtime-wasi (48) reads at most 64 KiB per call into a freshly zeroed
//! buffer. Ours read up to [`MAX_READ`] straight into uninitialized capacity:
//! the stream path went from 70 % to ~95 % of a plain `std::fs` read loop
//! (see docs/benchmarks.md). Semantics are unchanged: positioned reads, an
//! empty result only at end of file, directories refused as before.
//!
//! wasmtime-wasi's `read-directory` `stat`s every entry just to learn its type,
//! and storage-fs then `stat`s each entry again for size and time: two `statx`
//! per entry, most of a 10,000-entry LIST. Ours takes the type from `getdents`
//! (`d_type`) and only `stat`s (without following symlinks, as before) where
//! the filesystem does not report it. Same entries, same types, same errors.
//!
//! A listing is almost always followed by a `stat-at` of every entry (that is
//! how a WASI guest learns sizes and times). So our entry stream also `stat`s
//! each entry as it hands it out, with a helper thread working ahead for a
//! large directory (see [`Listing`]), and our `stat-at` answers a no-follow
//! `stat-at` of the entry just handed out, on the listed descriptor, from that
//! result, once ("readdir-plus", as NFS does it). Anything else goes to
//! wasmtime-wasi's `stat-at`. The answer is the entry as it was a moment
//! earlier, which a guest cannot tell from a `stat` made then.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use rustix::io::Errno;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::filesystem::{Descriptor, Dir, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, HostDescriptor,
    MetadataHashValue, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};
use wasmtime_wasi::{FsPerms, OpenMode};

use super::instance::HostState;
use super::{Grant, GrantMode};

/// Largest single read, bounding what one guest call can make the host
/// allocate.
const MAX_READ: usize = 1 << 20;

/// The WASI interfaces whose functions we replace (wasmtime-wasi 48's).
const TYPES: &str = "wasi:filesystem/types@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// Every function we replace, for the test that checks wasmtime-wasi still
/// defines each under this name.
#[cfg(test)]
const REPLACED: &[(&str, &str)] = &[
    (TYPES, "[method]descriptor.read-via-stream"),
    (TYPES, "[method]descriptor.write-via-stream"),
    (TYPES, "[method]descriptor.read"),
    (TYPES, "[method]descriptor.read-directory"),
    (TYPES, "[method]directory-entry-stream.read-directory-entry"),
    (TYPES, "[method]descriptor.stat-at"),
    (TYPES, "[method]descriptor.open-at"),
    (TYPES, "[method]descriptor.metadata-hash-at"),
    (TYPES, "[method]descriptor.readlink-at"),
    (PREOPENS, "get-directories"),
];

/// Must run after `wasmtime_wasi::p2::add_to_linker_async`, whose definitions
/// these replace.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap("[method]descriptor.read-via-stream", read_via_stream)?;
    types.func_wrap("[method]descriptor.write-via-stream", write_via_stream)?;
    types.func_wrap("[method]descriptor.read", read)?;
    // The entry stream is our own type, so its resource, its one method and
    // the function creating it are all replaced together.
    types.resource(
        "directory-entry-stream",
        ResourceType::host::<DirEntries>(),
        |mut store, rep| {
            let state = store.data_mut();
            if state.listing == Some(rep) {
                state.listing = None;
            }
            state.table().delete(Resource::<DirEntries>::new_own(rep))?;
            Ok(())
        },
    )?;
    types.func_wrap("[method]descriptor.read-directory", read_directory)?;
    types.func_wrap(
        "[method]directory-entry-stream.read-directory-entry",
        read_directory_entry,
    )?;
    types.func_wrap_async("[method]descriptor.stat-at", |store, args| {
        Box::new(stat_at(store, args))
    })?;
    types.func_wrap_async("[method]descriptor.open-at", |store, args| {
        Box::new(open_at(store, args))
    })?;
    types.func_wrap_async("[method]descriptor.metadata-hash-at", |store, args| {
        Box::new(metadata_hash_at(store, args))
    })?;
    types.func_wrap_async("[method]descriptor.readlink-at", |store, args| {
        Box::new(readlink_at(store, args))
    })?;
    let mut preopens = linker.instance(PREOPENS)?;
    preopens.func_wrap("get-directories", get_directories)?;
    linker.allow_shadowing(false);
    Ok(())
}

type Answer<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

/// A site's granted directories, each opened once when the plugin is loaded
/// and shared by every instance: a session costs no descriptor of its own
/// for them (10,000 sessions used to hold 10,000 copies of the same
/// directory). Safe to share: every call through a directory descriptor is
/// relative to it (`*at`), and listings open a fresh descriptor.
pub(super) struct Preopens(Vec<(Dir, String)>);

impl Preopens {
    pub fn open(grants: &[Grant]) -> anyhow::Result<Preopens> {
        use rustix::fs::{Mode, OFlags};
        let mut dirs = Vec::with_capacity(grants.len());
        for grant in grants {
            let fd = rustix::fs::open(
                &grant.host,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open granted directory {}: {e}",
                    grant.host.display()
                )
            })?;
            let (perms, open_mode) = match grant.mode {
                GrantMode::ReadOnly => (FsPerms::ReadOnly, OpenMode::READ),
                GrantMode::ReadWrite => (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE),
                // wasmtime-wasi lets everything but reading through; the
                // missing READ is what our replacements check.
                GrantMode::WriteOnly => (FsPerms::ReadWrite, OpenMode::WRITE),
            };
            // Blocking on the calling thread, as for every plugin file
            // operation (see instance.rs).
            let dir = Dir::new(std::fs::File::from(fd), perms, open_mode, true);
            dirs.push((dir, grant.guest.clone()));
        }
        Ok(Preopens(dirs))
    }
}

/// One granted directory as `get-directories` hands it out.
type Preopened = (Resource<Descriptor>, String);

fn get_directories(
    mut store: StoreContextMut<'_, HostState>,
    (): (),
) -> wasmtime::Result<(Vec<Preopened>,)> {
    let state = store.data_mut();
    let preopens = state.preopens.clone();
    let mut out = Vec::with_capacity(preopens.0.len());
    for (dir, guest) in &preopens.0 {
        out.push((
            state.table().push(Descriptor::Dir(dir.clone()))?,
            guest.clone(),
        ));
    }
    Ok((out,))
}

/// A directory under a write-only grant: nothing in it may be read, listed
/// or examined.
fn write_only(dir: &Dir) -> bool {
    !dir.open_mode.contains(OpenMode::READ)
}

/// The directory behind `fd` when it is write-only.
fn write_only_dir(state: &mut HostState, fd: &Resource<Descriptor>) -> wasmtime::Result<bool> {
    Ok(matches!(state.table().get(fd)?, Descriptor::Dir(d) if write_only(d)))
}

/// `open-at`: under a write-only grant only for writing (no `READ`, no
/// directory); otherwise wasmtime-wasi's, which enforces read-only grants.
async fn open_at(
    mut store: StoreContextMut<'_, HostState>,
    (fd, path_flags, path, open_flags, flags): (
        Resource<Descriptor>,
        PathFlags,
        String,
        OpenFlags,
        DescriptorFlags,
    ),
) -> Answer<Resource<Descriptor>> {
    if write_only_dir(store.data_mut(), &fd)?
        && (flags.contains(DescriptorFlags::READ)
            || !flags.contains(DescriptorFlags::WRITE)
            || open_flags.contains(OpenFlags::DIRECTORY))
    {
        return Ok((Err(ErrorCode::NotPermitted),));
    }
    let mut view = store.data_mut().filesystem();
    match HostDescriptor::open_at(&mut view, fd, path_flags, path, open_flags, flags).await {
        Ok(file) => Ok((Ok(file),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// `metadata-hash-at`: tells whether a name exists, so not under write-only.
async fn metadata_hash_at(
    mut store: StoreContextMut<'_, HostState>,
    (fd, flags, path): (Resource<Descriptor>, PathFlags, String),
) -> Answer<MetadataHashValue> {
    if write_only_dir(store.data_mut(), &fd)? {
        return Ok((Err(ErrorCode::NotPermitted),));
    }
    let mut view = store.data_mut().filesystem();
    match HostDescriptor::metadata_hash_at(&mut view, fd, flags, path).await {
        Ok(hash) => Ok((Ok(hash),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// `readlink-at`: reads a link's target, so not under write-only.
async fn readlink_at(
    mut store: StoreContextMut<'_, HostState>,
    (fd, path): (Resource<Descriptor>, String),
) -> Answer<String> {
    if write_only_dir(store.data_mut(), &fd)? {
        return Ok((Err(ErrorCode::NotPermitted),));
    }
    let mut view = store.data_mut().filesystem();
    match HostDescriptor::readlink_at(&mut view, fd, path).await {
        Ok(target) => Ok((Ok(target),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

fn read_via_stream(
    mut store: StoreContextMut<'_, HostState>,
    (fd, offset): (Resource<Descriptor>, u64),
) -> Answer<Resource<DynInputStream>> {
    let table = store.data_mut().table();
    let file = match table.get(&fd)? {
        Descriptor::File(f) if !f.open_mode.contains(OpenMode::READ) => {
            return Ok((Err(ErrorCode::NotPermitted),));
        }
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(_) => return Ok((Err(ErrorCode::IsDirectory),)),
    };
    let untouched = Arc::new(AtomicBool::new(true));
    let stream = FileStream {
        file: file.clone(),
        position: offset,
        done: false,
        buffer: BytesMut::new(),
        untouched: untouched.clone(),
    };
    let stream: DynInputStream = Box::new(stream);
    let stream = table.push(stream)?;
    store.data_mut().newest_file_stream = Some(FileStreamOrigin {
        rep: stream.rep(),
        writes: false,
        file: Arc::downgrade(&file),
        offset,
        untouched,
    });
    Ok((Ok(stream),))
}

fn write_via_stream(
    mut store: StoreContextMut<'_, HostState>,
    (fd, offset): (Resource<Descriptor>, u64),
) -> Answer<Resource<DynOutputStream>> {
    let table = store.data_mut().table();
    let file = match table.get(&fd)? {
        // The check wasmtime-wasi's own makes: a descriptor from a read-only
        // grant gives no output stream.
        Descriptor::File(f) if f.perms.write_not_permitted() => {
            return Ok((Err(ErrorCode::NotPermitted),));
        }
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(_) => return Ok((Err(ErrorCode::IsDirectory),)),
    };
    let untouched = Arc::new(AtomicBool::new(true));
    let sink = FileSink {
        file: file.clone(),
        position: offset,
        closed: false,
        untouched: untouched.clone(),
    };
    let sink: DynOutputStream = Box::new(sink);
    let sink = table.push(sink)?;
    store.data_mut().newest_file_stream = Some(FileStreamOrigin {
        rep: sink.rep(),
        writes: true,
        file: Arc::downgrade(&file),
        offset,
        untouched,
    });
    Ok((Ok(sink),))
}

/// Where the newest `read-via-stream` or `write-via-stream` stream of a store
/// reads from or writes to, so the host can move that file's bytes itself
/// (`sendfile(2)`, `splice(2)`) when the plugin hands the stream over unused
/// (see [`take_os_file`], [`take_os_sink`]).
pub(super) struct FileStreamOrigin {
    rep: u32,
    /// An output stream (`write-via-stream`), else an input stream.
    writes: bool,
    /// Weak: the record must not keep a file open (or its space allocated
    /// after a DELE) once the plugin has dropped the stream.
    file: std::sync::Weak<std::fs::File>,
    offset: u64,
    /// Cleared by the stream's first read or write and by its drop: after
    /// either, the file and offset no longer describe what the stream would
    /// give or take.
    untouched: Arc<AtomicBool>,
}

/// The file and offset behind the input stream the guest returned as resource
/// `rep`, if it is our own file stream and nothing was read from it. Clears
/// the record either way: it only ever describes the stream just handed over.
pub(super) fn take_os_file(state: &mut HostState, rep: u32) -> Option<(Arc<std::fs::File>, u64)> {
    take_origin(state, rep, false)
}

/// The file and offset behind the output stream the guest returned as
/// resource `rep`, if it is our own file stream and nothing was written to
/// it. Clears the record either way.
pub(super) fn take_os_sink(state: &mut HostState, rep: u32) -> Option<(Arc<std::fs::File>, u64)> {
    take_origin(state, rep, true)
}

fn take_origin(state: &mut HostState, rep: u32, writes: bool) -> Option<(Arc<std::fs::File>, u64)> {
    let origin = state.newest_file_stream.take()?;
    // A live stream keeps its rep, and an untouched one is live: an equal rep
    // (of the same kind of stream) is that very stream.
    if origin.rep != rep || origin.writes != writes || !origin.untouched.load(Ordering::Acquire) {
        return None;
    }
    Some((origin.file.upgrade()?, origin.offset))
}

fn read(
    mut store: StoreContextMut<'_, HostState>,
    (fd, len, offset): (Resource<Descriptor>, u64, u64),
) -> Answer<(Vec<u8>, bool)> {
    let file = match store.data_mut().table().get(&fd)? {
        Descriptor::File(f) if !f.open_mode.contains(OpenMode::READ) => {
            return Ok((Err(ErrorCode::NotPermitted),));
        }
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(_) => return Ok((Err(ErrorCode::BadDescriptor),)),
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_READ);
    Ok((match read_at(&file, len, offset) {
        Ok(data) => {
            let eof = data.is_empty();
            Ok((data, eof))
        }
        Err(e) => Err(error_code(e)),
    },))
}

/// One positioned read into uninitialized capacity (no zeroing). Blocking is
/// fine: plugins' file operations run on the calling thread by design
/// (`allow_blocking_current_thread`).
fn read_at(file: &std::fs::File, len: usize, offset: u64) -> Result<Vec<u8>, Errno> {
    let mut buffer = Vec::with_capacity(len);
    loop {
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buffer), offset) {
            Ok(_) => return Ok(buffer),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A directory being listed, read a block of entries at a time: `getdents`
/// for the names, then a no-follow `statx` of each (the `stat`s are most of a
/// large listing's time). Blocks are made ahead of the guest by a helper
/// thread, at most [`WINDOW`] blocks ahead, and dropped once handed out, so a
/// directory of any size is listed in bounded memory.
///
/// Whoever needs a block makes it: the guest's thread makes the first ones
/// itself (a small directory costs no thread), and makes the block it needs if
/// the helper has not claimed it yet; it waits only for a block the helper is
/// already making. Names are read under a lock (which also numbers the
/// blocks), the `stat`s outside it, so the helper and the guest's thread
/// `stat` different blocks at once and both cores work.
struct Listing {
    dir: Arc<std::fs::File>,
    state: Mutex<ListingState>,
    /// Signalled when a block is published or handed out, and on abandon.
    changed: Condvar,
    /// Set when the guest drops the stream: the helper stops.
    abandoned: AtomicBool,
}

struct ListingState {
    /// The directory's remaining names; `None` once read to the end (or a
    /// failed `getdents`).
    names: Option<rustix::fs::Dir>,
    /// The number the next block made will have.
    next_block: usize,
    /// Blocks made and not handed out yet, by number.
    published: BTreeMap<usize, Arc<Block>>,
    /// How many blocks there are, once the names are read to the end.
    blocks: Option<usize>,
    /// The number of the block the guest is on (for the helper's window).
    consumed: usize,
    helper_started: bool,
}

/// Entries are read and `stat`ed this many at a time.
const BLOCK: usize = 256;

/// How many blocks the helper may make ahead of the guest.
const WINDOW: usize = 8;

/// Once the guest's thread has made this many blocks itself, a helper thread
/// is started; below it one would cost more than it saves.
const BLOCKS_BEFORE_HELPER: usize = 2;

struct Block {
    raw: Vec<RawEntry>,
    stats: Vec<Result<rustix::fs::Statx, Errno>>,
}

/// What `getdents` gave, before names are checked and types completed.
enum RawEntry {
    Entry(CString, rustix::fs::FileType),
    /// `getdents` failed here; the stream ends with this error.
    Failed(Errno),
}

/// Helper threads running now, across all sessions. They are only useful up
/// to the number of cores; beyond that a listing is done by its own thread.
static HELPERS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`HELPERS`] slots; dropping it gives the slot back.
struct HelperSlot;

impl HelperSlot {
    fn take() -> bool {
        // Asking is not free (it reads cgroup files), so ask once.
        static CORES: OnceLock<usize> = OnceLock::new();
        let cores =
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if HELPERS.fetch_add(1, Ordering::Relaxed) < cores {
            true
        } else {
            HELPERS.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

impl Drop for HelperSlot {
    fn drop(&mut self) {
        HELPERS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Listing {
    /// Opens the directory for listing; nothing is read yet. Blocking is fine
    /// here for the same reason as in [`read_at`].
    fn open(dir: Arc<std::fs::File>) -> Result<Arc<Listing>, Errno> {
        use rustix::fs::{Mode, OFlags};
        // A fresh descriptor, so the listing starts at the beginning and does
        // not move the preopen's own position.
        let fd = rustix::fs::openat(
            &*dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let names = rustix::fs::Dir::new(fd)?;
        Ok(Arc::new(Listing {
            dir,
            state: Mutex::new(ListingState {
                names: Some(names),
                next_block: 0,
                published: BTreeMap::new(),
                blocks: None,
                consumed: 0,
                helper_started: false,
            }),
            changed: Condvar::new(),
            abandoned: AtomicBool::new(false),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ListingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next block: reads up to [`BLOCK`] names (all but `.` and
    /// `..`, in `getdents` order; a failed `getdents` ends the names), `stat`s
    /// them and publishes the block. `false` when there was nothing to read.
    fn make_block(&self) -> bool {
        let (number, raw) = {
            let mut state = self.state();
            let Some(names) = state.names.as_mut() else {
                return false;
            };
            let mut raw = Vec::with_capacity(BLOCK);
            let mut ended = false;
            while raw.len() < BLOCK {
                match names.next() {
                    Some(Ok(entry)) => {
                        let name = entry.file_name();
                        if name.to_bytes() != b"." && name.to_bytes() != b".." {
                            raw.push(RawEntry::Entry(name.to_owned(), entry.file_type()));
                        }
                    }
                    Some(Err(e)) => {
                        raw.push(RawEntry::Failed(e));
                        ended = true;
                        break;
                    }
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            let number = state.next_block;
            state.next_block += 1;
            if ended {
                state.names = None;
                state.blocks = Some(number + 1);
            }
            (number, raw)
        };
        let stats = raw.iter().map(|entry| self.stat(entry)).collect();
        self.state()
            .published
            .insert(number, Arc::new(Block { raw, stats }));
        self.changed.notify_all();
        true
    }

    fn stat(&self, raw: &RawEntry) -> Result<rustix::fs::Statx, Errno> {
        match raw {
            RawEntry::Entry(name, _) => rustix::fs::statx(
                &*self.dir,
                name.as_c_str(),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::BASIC_STATS | rustix::fs::StatxFlags::BTIME,
            ),
            RawEntry::Failed(e) => Err(*e),
        }
    }

    /// Block `number`, made by whichever thread gets to it first; `None`
    /// past the last block. Called by the guest's thread, in order.
    fn take_block(self: &Arc<Self>, number: usize) -> Option<Arc<Block>> {
        loop {
            let mut state = self.state();
            state.consumed = number;
            if let Some(block) = state.published.remove(&number) {
                let start_helper = number + 1 >= BLOCKS_BEFORE_HELPER
                    && state.names.is_some()
                    && !state.helper_started;
                if start_helper {
                    state.helper_started = true;
                }
                drop(state);
                // The helper may be waiting for room in its window.
                self.changed.notify_all();
                if start_helper {
                    Listing::start_helper(self);
                }
                return Some(block);
            }
            if state.blocks.is_some_and(|blocks| number >= blocks) {
                return None;
            }
            if number >= state.next_block {
                // Nobody has claimed it: make it here.
                drop(state);
                if !self.make_block() {
                    // Read to the end meanwhile: look again.
                    continue;
                }
                continue;
            }
            // The helper is making it.
            let _unused = self
                .changed
                .wait_timeout(state, std::time::Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn start_helper(listing: &Arc<Listing>) {
        if !HelperSlot::take() {
            return;
        }
        let helper = listing.clone();
        let work = move || {
            let _slot = HelperSlot;
            while !helper.abandoned.load(Ordering::Relaxed) {
                {
                    let state = helper.state();
                    if state.next_block >= state.consumed + WINDOW {
                        let _unused = helper
                            .changed
                            .wait_timeout(state, std::time::Duration::from_millis(100))
                            .unwrap_or_else(|e| e.into_inner());
                        continue;
                    }
                }
                if !helper.make_block() {
                    break;
                }
            }
        };
        // Without a thread the guest's thread does all the work: slower, the
        // same result.
        if std::thread::Builder::new()
            .name("wasmftpd-list".into())
            .spawn(work)
            .is_err()
        {
            drop(HelperSlot);
        }
    }
}

/// The guest's `directory-entry-stream`: a [`Listing`] handed out one entry
/// per `read-directory-entry`.
struct DirEntries {
    listing: Arc<Listing>,
    /// The block being handed out, and its number.
    block: Option<(usize, Arc<Block>)>,
    /// Index of the next entry to hand out, in the whole listing.
    next: usize,
    /// The entry handed out last and its metadata, until a `stat-at` of it
    /// takes it.
    last: Option<(CString, DescriptorStat)>,
    /// Set after a failed `getdents`: the stream has ended.
    failed: bool,
}

impl DirEntries {
    /// Entry `k` and its `stat`, taking the next block when `k` starts one.
    fn entry(&mut self, k: usize) -> Option<(&RawEntry, Result<rustix::fs::Statx, Errno>)> {
        let number = k / BLOCK;
        if self.block.as_ref().is_none_or(|(n, _)| *n != number) {
            // Dropping the previous block here keeps memory bounded.
            self.block = None;
            self.block = Some((number, self.listing.take_block(number)?));
        }
        let (_, block) = self.block.as_ref()?;
        let i = k % BLOCK;
        Some((block.raw.get(i)?, *block.stats.get(i)?))
    }
}

impl Drop for DirEntries {
    fn drop(&mut self) {
        self.listing.abandoned.store(true, Ordering::Relaxed);
        self.listing.changed.notify_all();
    }
}

fn read_directory(
    mut store: StoreContextMut<'_, HostState>,
    (fd,): (Resource<Descriptor>,),
) -> Answer<Resource<DirEntries>> {
    let state = store.data_mut();
    let dir = match state.table().get(&fd)? {
        Descriptor::Dir(d) if write_only(d) => return Ok((Err(ErrorCode::NotPermitted),)),
        Descriptor::Dir(d) => d.dir.clone(),
        Descriptor::File(_) => return Ok((Err(ErrorCode::NotDirectory),)),
    };
    let listing = match Listing::open(dir) {
        Ok(listing) => listing,
        Err(e) => return Ok((Err(error_code(e)),)),
    };
    let stream = state.table().push(DirEntries {
        listing,
        block: None,
        next: 0,
        last: None,
        failed: false,
    })?;
    // Only the newest listing answers `stat-at`: guests list one directory
    // at a time, and this keeps the lookup a single check.
    state.listing = Some(stream.rep());
    Ok((Ok(stream),))
}

/// The next entry: its type from `getdents`, or from its `stat` where the
/// filesystem does not report types. As in wasmtime-wasi, a failed
/// `getdents` ends the stream with its error, while a failed `stat` or a name
/// that is not UTF-8 (`illegal-byte-sequence`) fails only its own entry.
fn read_directory_entry(
    mut store: StoreContextMut<'_, HostState>,
    (stream,): (Resource<DirEntries>,),
) -> Answer<Option<DirectoryEntry>> {
    use rustix::fs::FileType;
    let entries = store.data_mut().table().get_mut(&stream)?;
    entries.last = None;
    if entries.failed {
        return Ok((Ok(None),));
    }
    let k = entries.next;
    let (name, file_type, stat) = match entries.entry(k) {
        None => return Ok((Ok(None),)),
        Some((RawEntry::Failed(e), _)) => {
            let e = *e;
            entries.failed = true;
            return Ok((Err(error_code(e)),));
        }
        Some((RawEntry::Entry(name, file_type), stat)) => (name.clone(), *file_type, stat),
    };
    entries.next += 1;
    let file_type = match (file_type, &stat) {
        (FileType::Unknown, Ok(stat)) => FileType::from_raw_mode(stat.stx_mode.into()),
        (FileType::Unknown, Err(e)) => return Ok((Err(error_code(*e)),)),
        (known, _) => known,
    };
    let Ok(utf8) = name.clone().into_string() else {
        return Ok((Err(ErrorCode::IllegalByteSequence),));
    };
    if let Ok(stat) = &stat {
        entries.last = Some((name, descriptor_stat(stat)));
    }
    Ok((Ok(Some(DirectoryEntry {
        type_: descriptor_type(file_type),
        name: utf8,
    })),))
}

/// `stat-at`, answered from the live listing of `fd` when it can be (see the
/// module comment), else by wasmtime-wasi's own implementation.
async fn stat_at(
    mut store: StoreContextMut<'_, HostState>,
    (fd, flags, path): (Resource<Descriptor>, PathFlags, String),
) -> Answer<DescriptorStat> {
    if write_only_dir(store.data_mut(), &fd)? {
        return Ok((Err(ErrorCode::NotPermitted),));
    }
    if !flags.contains(PathFlags::SYMLINK_FOLLOW)
        && let Some(stat) = listed_stat(store.data_mut(), &fd, &path)?
    {
        return Ok((Ok(stat),));
    }
    let mut view = store.data_mut().filesystem();
    match HostDescriptor::stat_at(&mut view, fd, flags, path).await {
        Ok(stat) => Ok((Ok(stat),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// The metadata of `path` if it names the entry the newest listing of `fd`
/// handed out last (and no `stat-at` took it yet).
fn listed_stat(
    state: &mut HostState,
    fd: &Resource<Descriptor>,
    path: &str,
) -> wasmtime::Result<Option<DescriptorStat>> {
    let Some(stream) = state.listing else {
        return Ok(None);
    };
    let dir = match state.table().get(fd)? {
        Descriptor::Dir(d) => d.dir.clone(),
        Descriptor::File(_) => return Ok(None),
    };
    // The destructor clears `listing`, so the stream is there; if it ever is
    // not, this is only a missed shortcut, never a failed call.
    let Ok(entries) = state
        .table()
        .get_mut(&Resource::<DirEntries>::new_borrow(stream))
    else {
        return Ok(None);
    };
    let Some((name, _)) = &entries.last else {
        return Ok(None);
    };
    let same_entry = Arc::ptr_eq(&entries.listing.dir, &dir) && name.as_bytes() == path.as_bytes();
    Ok(if same_entry {
        entries.last.take().map(|(_, stat)| stat)
    } else {
        None
    })
}

fn descriptor_type(file_type: rustix::fs::FileType) -> DescriptorType {
    use rustix::fs::FileType;
    match file_type {
        FileType::RegularFile => DescriptorType::RegularFile,
        FileType::Directory => DescriptorType::Directory,
        FileType::Symlink => DescriptorType::SymbolicLink,
        FileType::Fifo => DescriptorType::Fifo,
        FileType::Socket => DescriptorType::Socket,
        FileType::CharacterDevice => DescriptorType::CharacterDevice,
        FileType::BlockDevice => DescriptorType::BlockDevice,
        FileType::Unknown => DescriptorType::Unknown,
    }
}

/// The same figures wasmtime-wasi's `stat-at` gives (it takes the status-change
/// time from the birth time; so do we).
fn descriptor_stat(stat: &rustix::fs::Statx) -> DescriptorStat {
    use rustix::fs::StatxFlags;
    let time = |t: &rustix::fs::StatxTimestamp| {
        // Times before 1970 have no `datetime`, as in wasmtime-wasi.
        u64::try_from(t.tv_sec).ok().map(|seconds| Datetime {
            seconds,
            nanoseconds: t.tv_nsec,
        })
    };
    let has = |flag: StatxFlags| stat.stx_mask & flag.bits() != 0;
    DescriptorStat {
        type_: descriptor_type(rustix::fs::FileType::from_raw_mode(stat.stx_mode.into())),
        link_count: stat.stx_nlink.into(),
        size: stat.stx_size,
        data_access_timestamp: has(StatxFlags::ATIME)
            .then(|| time(&stat.stx_atime))
            .flatten(),
        data_modification_timestamp: has(StatxFlags::MTIME)
            .then(|| time(&stat.stx_mtime))
            .flatten(),
        status_change_timestamp: has(StatxFlags::BTIME)
            .then(|| time(&stat.stx_btime))
            .flatten(),
    }
}

/// The errors `pread`, `openat`, `getdents` and `stat` can give, as WASI
/// names them.
fn error_code(e: Errno) -> ErrorCode {
    match e {
        Errno::ACCESS => ErrorCode::Access,
        Errno::NOENT => ErrorCode::NoEntry,
        Errno::NOTDIR => ErrorCode::NotDirectory,
        Errno::BADF => ErrorCode::BadDescriptor,
        Errno::ISDIR => ErrorCode::IsDirectory,
        Errno::INVAL => ErrorCode::Invalid,
        Errno::OVERFLOW => ErrorCode::Overflow,
        Errno::SPIPE => ErrorCode::InvalidSeek,
        Errno::AGAIN => ErrorCode::WouldBlock,
        Errno::NOMEM => ErrorCode::InsufficientMemory,
        _ => ErrorCode::Io,
    }
}

/// A file read as a `wasi:io` input stream. Regular files are always ready, so
/// `read` reads synchronously and never returns an empty chunk before the end.
struct FileStream {
    file: Arc<std::fs::File>,
    position: u64,
    done: bool,
    /// Chunks are split off this buffer. Once the consumer has dropped them,
    /// `reserve` reuses the same allocation, so a transfer does not allocate
    /// (and fault in) a fresh buffer per read.
    buffer: BytesMut,
    /// Shared with [`FileStreamOrigin`]; cleared by the first read and on drop.
    untouched: Arc<AtomicBool>,
}

impl Drop for FileStream {
    fn drop(&mut self) {
        self.untouched.store(false, Ordering::Release);
    }
}

impl FileStream {
    fn read_chunk(&mut self, size: usize) -> Result<Bytes, Errno> {
        self.buffer.reserve(size);
        let spare = &mut self.buffer.spare_capacity_mut()[..size];
        let n = loop {
            match rustix::io::pread(&*self.file, &mut *spare, self.position) {
                Ok((filled, _)) => break filled.len(),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        };
        // SAFETY: `buffer` was empty (every earlier chunk was split off) and
        // `pread` initialized the first `n` bytes of its spare capacity.
        unsafe { self.buffer.set_len(n) };
        Ok(self.buffer.split().freeze())
    }
}

#[async_trait::async_trait]
impl Pollable for FileStream {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl InputStream for FileStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.untouched.store(false, Ordering::Release);
        if self.done {
            return Err(StreamError::Closed);
        }
        if size == 0 {
            return Ok(Bytes::new());
        }
        match self.read_chunk(size.min(MAX_READ)) {
            Ok(data) if data.is_empty() => {
                self.done = true;
                Err(StreamError::Closed)
            }
            Ok(data) => {
                self.position += data.len() as u64;
                Ok(data)
            }
            Err(e) => {
                self.done = true;
                Err(StreamError::LastOperationFailed(
                    std::io::Error::from(e).into(),
                ))
            }
        }
    }
}

/// Largest write a file output stream accepts at once ([`FileSink`]'s
/// `check-write`), bounding what one guest call can hand the host.
const MAX_WRITE: usize = 1 << 20;

/// A file written as a `wasi:io` output stream. Regular files are always
/// ready, so each write is made right away, whole, at the stream's position
/// (blocking the calling thread, as plugins' file operations do by design).
struct FileSink {
    file: Arc<std::fs::File>,
    position: u64,
    /// After a failed write the stream is closed, as wasmtime-wasi's is.
    closed: bool,
    /// Shared with [`FileStreamOrigin`]; cleared by the first write and on drop.
    untouched: Arc<AtomicBool>,
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.untouched.store(false, Ordering::Release);
    }
}

impl FileSink {
    fn write_all(&mut self, mut data: &[u8]) -> Result<(), Errno> {
        while !data.is_empty() {
            match rustix::io::pwrite(&*self.file, data, self.position) {
                Ok(0) => return Err(Errno::IO),
                Ok(n) => {
                    data = &data[n..];
                    self.position += n as u64;
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for FileSink {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for FileSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.untouched.store(false, Ordering::Release);
        if self.closed {
            return Err(StreamError::Closed);
        }
        self.write_all(&bytes).map_err(|e| {
            self.closed = true;
            StreamError::LastOperationFailed(std::io::Error::from(e).into())
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Every write went to the file already.
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(MAX_WRITE)
    }

    /// What the host's upload path calls per chunk: one positioned write of
    /// the whole chunk.
    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
    use wasmtime_wasi::p2::FsResult;
    use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
    use wasmtime_wasi::p2::bindings::filesystem::types::{
        DirectoryEntryStream, HostDirectoryEntryStream,
    };

    /// wasmtime-wasi still defines every function we replace under the same
    /// name, interface version included: defining one again without
    /// shadowing must fail. After an upgrade that renamed or re-versioned
    /// one, our version would silently stop replacing it (and its grant
    /// check with it); this test fails first. See docs/runtime.md.
    #[test]
    fn wasmtime_wasi_defines_every_replaced_function() {
        let engine = wasmtime::Engine::default();
        for (interface, name) in REPLACED {
            let mut linker = Linker::<HostState>::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
            let mut instance = linker.instance(interface).expect("instance");
            let defined_again =
                instance.func_wrap(name, |_: StoreContextMut<'_, HostState>, (): ()| Ok(()));
            assert!(
                defined_again.is_err(),
                "wasmtime-wasi no longer defines {interface}#{name}: re-audit file_io.rs"
            );
        }
    }

    /// Type-checked, never run: compiles only while wasmtime-wasi's own
    /// versions of the replaced functions take and return what ours do, so a
    /// changed WIT signature breaks this test build at the function to
    /// re-audit.
    #[expect(dead_code, reason = "only type-checked")]
    async fn replaced_signatures_match(view: &mut WasiFilesystemCtxView<'_>, fd: u32, stream: u32) {
        let d = || Resource::<Descriptor>::new_borrow(fd);
        let none = PathFlags::empty;
        let _: FsResult<Resource<DynInputStream>> = HostDescriptor::read_via_stream(view, d(), 0);
        let _: FsResult<Resource<DynOutputStream>> = HostDescriptor::write_via_stream(view, d(), 0);
        let _: FsResult<(Vec<u8>, bool)> = HostDescriptor::read(view, d(), 0, 0).await;
        let _: FsResult<Resource<DirectoryEntryStream>> =
            HostDescriptor::read_directory(view, d()).await;
        let _: FsResult<Option<DirectoryEntry>> =
            HostDirectoryEntryStream::read_directory_entry(view, Resource::new_borrow(stream))
                .await;
        let _: FsResult<DescriptorStat> =
            HostDescriptor::stat_at(view, d(), none(), String::new()).await;
        let _: FsResult<Resource<Descriptor>> = HostDescriptor::open_at(
            view,
            d(),
            none(),
            String::new(),
            OpenFlags::empty(),
            DescriptorFlags::empty(),
        )
        .await;
        let _: FsResult<MetadataHashValue> =
            HostDescriptor::metadata_hash_at(view, d(), none(), String::new()).await;
        let _: FsResult<String> = HostDescriptor::readlink_at(view, d(), String::new()).await;
        let _: wasmtime::Result<Vec<(Resource<Descriptor>, String)>> = view.get_directories();
    }
}
