//! Our own host implementations of the two WASI calls that move file bytes,
//! replacing wasmtime-wasi's in the linker:
//!
//! - `descriptor.read-via-stream`: the stream storage-fs hands us for RETR;
//! - `descriptor.read`: what storage-fs's chunked path reads with;
//! - `descriptor.read-directory` and its `directory-entry-stream`: what
//!   storage-fs lists directories with.
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

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustix::io::Errno;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{DescriptorType, DirectoryEntry, ErrorCode};
use wasmtime_wasi::p2::{DynInputStream, InputStream, Pollable, StreamError, StreamResult};

use super::instance::HostState;

/// Largest single read, bounding what one guest call can make the host
/// allocate.
const MAX_READ: usize = 1 << 20;

/// Must run after `wasmtime_wasi::p2::add_to_linker_async`, whose definitions
/// these replace.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance("wasi:filesystem/types@0.2.12")?;
    types.func_wrap("[method]descriptor.read-via-stream", read_via_stream)?;
    types.func_wrap("[method]descriptor.read", read)?;
    // The entry stream is our own type, so its resource, its one method and
    // the function creating it are all replaced together.
    types.resource(
        "directory-entry-stream",
        ResourceType::host::<DirEntries>(),
        |mut store, rep| {
            store
                .data_mut()
                .table()
                .delete(Resource::<DirEntries>::new_own(rep))?;
            Ok(())
        },
    )?;
    types.func_wrap("[method]descriptor.read-directory", read_directory)?;
    types.func_wrap(
        "[method]directory-entry-stream.read-directory-entry",
        read_directory_entry,
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

type Answer<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

fn read_via_stream(
    mut store: StoreContextMut<'_, HostState>,
    (fd, offset): (Resource<Descriptor>, u64),
) -> Answer<Resource<DynInputStream>> {
    let table = store.data_mut().table();
    let file = match table.get(&fd)? {
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(_) => return Ok((Err(ErrorCode::IsDirectory),)),
    };
    let stream = FileStream {
        file,
        position: offset,
        done: false,
        buffer: BytesMut::new(),
    };
    let stream: DynInputStream = Box::new(stream);
    Ok((Ok(table.push(stream)?),))
}

fn read(
    mut store: StoreContextMut<'_, HostState>,
    (fd, len, offset): (Resource<Descriptor>, u64, u64),
) -> Answer<(Vec<u8>, bool)> {
    let file = match store.data_mut().table().get(&fd)? {
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

/// A directory's entries, read in full by `read-directory` (as wasmtime-wasi
/// does) and handed out one per `read-directory-entry`.
struct DirEntries(std::vec::IntoIter<Result<DirectoryEntry, ErrorCode>>);

fn read_directory(
    mut store: StoreContextMut<'_, HostState>,
    (fd,): (Resource<Descriptor>,),
) -> Answer<Resource<DirEntries>> {
    let table = store.data_mut().table();
    let dir = match table.get(&fd)? {
        Descriptor::Dir(d) => d.dir.clone(),
        Descriptor::File(_) => return Ok((Err(ErrorCode::NotDirectory),)),
    };
    let entries = match list_entries(&dir) {
        Ok(entries) => entries,
        Err(e) => return Ok((Err(error_code(e)),)),
    };
    Ok((Ok(table.push(DirEntries(entries.into_iter()))?),))
}

fn read_directory_entry(
    mut store: StoreContextMut<'_, HostState>,
    (stream,): (Resource<DirEntries>,),
) -> Answer<Option<DirectoryEntry>> {
    let entries = store.data_mut().table().get_mut(&stream)?;
    Ok((entries.0.next().transpose(),))
}

/// All entries but `.` and `..`, with their types. A name that is not UTF-8
/// fails only its own entry (`illegal-byte-sequence`), like wasmtime-wasi's.
/// Blocking is fine here for the same reason as in [`read_at`].
fn list_entries(dir: &std::fs::File) -> Result<Vec<Result<DirectoryEntry, ErrorCode>>, Errno> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    // A fresh descriptor, so the listing starts at the beginning and does not
    // move the preopen's own position.
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::new(fd)? {
        // As in wasmtime-wasi, a failure is reported at its place in the
        // stream: a failed `getdents` ends it, a failed `stat` only its entry.
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                out.push(Err(error_code(e)));
                break;
            }
        };
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let file_type = match entry.file_type() {
            // The filesystem does not report types in its entries: ask.
            FileType::Unknown => {
                match rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => FileType::from_raw_mode(stat.st_mode),
                    Err(e) => {
                        out.push(Err(error_code(e)));
                        continue;
                    }
                }
            }
            known => known,
        };
        let type_ = match file_type {
            FileType::RegularFile => DescriptorType::RegularFile,
            FileType::Directory => DescriptorType::Directory,
            FileType::Symlink => DescriptorType::SymbolicLink,
            FileType::Fifo => DescriptorType::Fifo,
            FileType::Socket => DescriptorType::Socket,
            FileType::CharacterDevice => DescriptorType::CharacterDevice,
            FileType::BlockDevice => DescriptorType::BlockDevice,
            FileType::Unknown => DescriptorType::Unknown,
        };
        out.push(match std::str::from_utf8(name) {
            Ok(name) => Ok(DirectoryEntry {
                type_,
                name: name.to_string(),
            }),
            Err(_) => Err(ErrorCode::IllegalByteSequence),
        });
    }
    Ok(out)
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
