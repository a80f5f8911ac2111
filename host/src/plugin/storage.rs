//! [`StorageProvider`] on top of a storage plugin.
//!
//! Each session has its own instance, created on its first call and kept for
//! the session; right after instantiation the host opens the plugin's storage
//! `session` resource with the session's facts, and every operation is a
//! method of that resource. A plugin built for contract 0.1.0 has no session
//! resource: its free functions are called instead, and its whole-directory
//! listings are handed out in pages by the host. Calls into an instance are
//! serialized by an async mutex: a chunked
//! transfer and the control connection take turns. While a call runs, the
//! instance is moved out of its slot and only put back when the call returns
//! normally, so a call that traps, hits a limit, or whose future is dropped
//! half-way (ABOR, a closed connection) simply leaves the slot empty, and the
//! next call makes a fresh instance.
//!
//! File data takes one of two paths:
//! - stream: the plugin returns a `wasi:io` stream (from `read-via-stream` /
//!   `write-via-stream`); we take it out of the instance's resource table and
//!   pump it natively, without entering wasm again;
//! - chunks: the plugin returns a `reader`/`writer` resource and every chunk is
//!   a call into the instance.
//!
//! Listings are read through the plugin's `dir-lister` resource a page per
//! call, with the same orphan handling as chunked transfers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};
use wasmtime::Store;
use wasmtime::component::ResourceAny;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, StreamError};

use super::auth::wit_permissions;
use super::bindings::auth::wasmftpd::plugin::types as wit;
use super::bindings::storage::exports::wasmftpd::plugin::storage as api;
use super::bindings::storage::{StoragePlugin, StoragePluginPre};
use super::bindings::v01::storage::exports::wasmftpd::plugin::storage as api01;
use super::bindings::v01::storage::{
    StoragePlugin as StoragePlugin01, StoragePluginPre as StoragePluginPre01,
};
use super::engine::Loaded;
use super::file_io;
use super::instance::{CallDeadline, ContractVersion, HostState, PluginContext};
use crate::backend::{
    DirEntry, DirLister, EntryKind, ErrorKind, FileReader, FileWriter, Metadata, SessionFacts,
    Storage, StorageError, StorageProvider, StorageResult, VecLister, WriteMode,
};

pub(super) struct WasmStorageProvider {
    plugin: Arc<SitePlugin>,
}

/// A site's storage plugin, ready to instantiate.
struct SitePlugin {
    context: Arc<PluginContext>,
    pre: Pre,
}

enum Pre {
    V01(StoragePluginPre01<HostState>),
    V02(StoragePluginPre<HostState>),
}

impl WasmStorageProvider {
    pub fn new(loaded: Loaded) -> anyhow::Result<Self> {
        let pre = match loaded.context.version {
            ContractVersion::V01 => Pre::V01(StoragePluginPre01::new(loaded.pre)?),
            ContractVersion::V02 => Pre::V02(StoragePluginPre::new(loaded.pre)?),
        };
        Ok(WasmStorageProvider {
            plugin: Arc::new(SitePlugin {
                context: loaded.context,
                pre,
            }),
        })
    }
}

impl StorageProvider for WasmStorageProvider {
    fn open_session(&self, facts: &SessionFacts) -> Arc<dyn Storage> {
        Arc::new(WasmStorage {
            session: Arc::new(Session::new(self.plugin.clone(), wit_facts(facts))),
        })
    }
}

fn wit_facts(facts: &SessionFacts) -> wit::SessionFacts {
    wit::SessionFacts {
        site: facts.site.clone(),
        user: facts.user.clone(),
        home: facts.home.clone(),
        client_address: facts.client_ip.to_string(),
        tls: facts.tls,
        permissions: wit_permissions(facts.permissions),
        limits: wit::AccountLimits {
            quota_bytes: facts.limits.quota_bytes,
            quota_files: facts.limits.quota_files,
            upload_bytes_per_second: facts.limits.upload_bytes_per_second,
            download_bytes_per_second: facts.limits.download_bytes_per_second,
            max_sessions: facts.limits.max_sessions,
        },
        attributes: facts.attributes.clone(),
    }
}

/// One session's instance, and what is needed to replace it.
struct Session {
    plugin: Arc<SitePlugin>,
    /// Handed to every new instance's `open-session`.
    facts: wit::SessionFacts,
    slot: Mutex<Slot>,
    /// Guest resources (readers, writers) whose host handle was dropped outside
    /// a call, e.g. an aborted transfer. Released at the start of the next call,
    /// since releasing runs guest code and needs the instance.
    orphans: std::sync::Mutex<Vec<(u64, ResourceAny)>>,
}

struct Slot {
    live: Option<Live>,
    /// Incremented for every new instance, so a resource from a dropped instance
    /// is never used with its successor.
    generation: u64,
}

struct Live {
    store: Store<HostState>,
    api: Api,
    generation: u64,
}

/// The instance's exports, by contract version.
enum Api {
    V01(StoragePlugin01),
    V02 {
        plugin: StoragePlugin,
        /// The plugin's `session` resource for this session.
        session: ResourceAny,
    },
}

/// A call in progress: holds the session's lock and the instance taken out of
/// its slot. [`Call::finish`] puts the instance back if the call went well;
/// dropping a `Call` any other way discards the instance.
struct Call<'a> {
    slot: MutexGuard<'a, Slot>,
    live: Live,
    context: &'a PluginContext,
}

impl Session {
    fn new(plugin: Arc<SitePlugin>, facts: wit::SessionFacts) -> Self {
        Session {
            plugin,
            facts,
            slot: Mutex::new(Slot {
                live: None,
                generation: 0,
            }),
            orphans: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Starts a call: waits for the instance, creating it if needed, releases
    /// orphaned resources, and arms the call deadline.
    async fn begin(&self) -> StorageResult<Call<'_>> {
        let context = &*self.plugin.context;
        let mut slot = self.slot.lock().await;
        let live = match slot.live.take() {
            Some(live) => live,
            None => {
                slot.generation += 1;
                self.instantiate(slot.generation).await?
            }
        };
        let mut call = Call {
            slot,
            live,
            context,
        };
        let orphans = std::mem::take(&mut *lock(&self.orphans));
        for (generation, resource) in orphans {
            // Resources of an earlier instance died with it.
            if generation == call.live.generation {
                context.arm(&mut call.live.store);
                let dropped = resource.resource_drop_async(&mut call.live.store).await;
                if let Err(e) = dropped {
                    return Err(plugin_failed(context.describe_failure("drop resource", e)));
                }
            }
        }
        context.arm(&mut call.live.store);
        Ok(call)
    }

    /// A new instance, its storage session opened with this session's facts.
    async fn instantiate(&self, generation: u64) -> StorageResult<Live> {
        let context = &*self.plugin.context;
        let failed = |e: anyhow::Error| plugin_failed(context.describe_failure("instantiate", e));
        let mut store = context.new_store().map_err(failed)?;
        context.arm(&mut store);
        let deadline = store.data().deadline.clone();
        let api = match &self.plugin.pre {
            Pre::V01(pre) => {
                let plugin = context
                    .bounded(&deadline, pre.instantiate_async(&mut store))
                    .await
                    .map_err(|e| failed(e.into()))?;
                Api::V01(plugin)
            }
            Pre::V02(pre) => {
                let plugin = context
                    .bounded(&deadline, pre.instantiate_async(&mut store))
                    .await
                    .map_err(|e| failed(e.into()))?;
                context.arm(&mut store);
                let opened = context
                    .bounded(
                        &deadline,
                        plugin
                            .wasmftpd_plugin_storage()
                            .call_open_session(&mut store, &self.facts),
                    )
                    .await
                    .map_err(|e| plugin_failed(context.describe_failure("open-session", e)))?;
                // A refusal is an ordinary storage error; the next command
                // tries again with a fresh instance.
                let session = opened.map_err(storage_error)?;
                Api::V02 { plugin, session }
            }
        };
        Ok(Live {
            store,
            api,
            generation,
        })
    }

    /// Queues a guest resource whose host handle was dropped, and releases it
    /// soon in a task of its own: the plugin learns at once that a transfer
    /// was interrupted (storage-fs then removes an atomic upload's temporary
    /// file), also when the session ends right after (a vanished client).
    fn orphan(self: &Arc<Self>, generation: u64, resource: ResourceAny) {
        lock(&self.orphans).push((generation, resource));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let session = Arc::clone(self);
            runtime.spawn(async move { session.release_orphans().await });
        }
    }

    /// Releases the queued resources of the live instance (those of an
    /// instance that is gone died with it).
    async fn release_orphans(&self) {
        let mut slot = self.slot.lock().await;
        let orphans = std::mem::take(&mut *lock(&self.orphans));
        let Some(live) = slot.live.as_mut() else {
            return;
        };
        let context = &*self.plugin.context;
        for (generation, resource) in orphans {
            if generation != live.generation {
                continue;
            }
            context.arm(&mut live.store);
            let deadline = live.store.data().deadline.clone();
            let dropped = context
                .bounded(&deadline, resource.resource_drop_async(&mut live.store))
                .await;
            if let Err(e) = dropped {
                let e: anyhow::Error = e.into();
                context.record_call(live.store.data(), "drop resource", Some(&e));
                tracing::warn!("{}", context.describe_failure("drop resource", e));
                // The instance is unusable; the next call makes a new one.
                slot.live = None;
                return;
            }
        }
    }
}

impl Session {
    /// One `writer.write` call. `resource` becomes `None` once the guest's
    /// writer is gone (released after an error, or dead with its instance).
    async fn write_chunk(
        &self,
        generation: u64,
        resource: &mut Option<ResourceAny>,
        data: Bytes,
    ) -> StorageResult<()> {
        let Some(writer) = *resource else {
            return Err(StorageError::with_message(
                ErrorKind::Io,
                "upload already finished",
            ));
        };
        let call = self.begin().await?;
        let mut call = same_instance(call, generation, resource)?;
        let context = call.context;
        let deadline = call.deadline();
        let (store, api) = call.parts();
        let future = async {
            match api {
                Api::V02 { plugin, .. } => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .writer()
                        .call_write(&mut *store, writer, &data)
                        .await
                }
                Api::V01(plugin) => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .writer()
                        .call_write(&mut *store, writer, &data)
                        .await
                }
            }
        };
        let mut result = context.bounded(&deadline, future).await;
        if matches!(&result, Ok(Err(_))) {
            // The upload failed (a full disk, say): release the guest's writer
            // before the client hears of it, so what the plugin does about an
            // interrupted upload is done by then.
            *resource = None;
            let (store, _) = call.parts();
            if let Err(e) = writer.resource_drop_async(&mut *store).await {
                result = Err(e);
            }
        }
        call.finish("write", result)?.map_err(storage_error)
    }

    /// Releases an unfinished writer now: its destructor runs (storage-fs
    /// removes an atomic upload's temporary file) before the caller goes on.
    async fn release_writer(&self, generation: u64, writer: ResourceAny) {
        let Ok(call) = self.begin().await else {
            return;
        };
        let mut alive = Some(writer);
        let Ok(mut call) = same_instance(call, generation, &mut alive) else {
            return;
        };
        let context = call.context;
        let deadline = call.deadline();
        let (store, _) = call.parts();
        let dropped = context
            .bounded(&deadline, writer.resource_drop_async(&mut *store))
            .await;
        // A failure is logged and costs the instance, as for any call.
        let _ = call.finish("drop writer", dropped);
    }
}

impl Call<'_> {
    fn deadline(&self) -> CallDeadline {
        self.live.store.data().deadline.clone()
    }

    fn parts(&mut self) -> (&mut Store<HostState>, &Api) {
        (&mut self.live.store, &self.live.api)
    }

    fn generation(&self) -> u64 {
        self.live.generation
    }

    /// Ends the call: on success the instance goes back to its slot; on a trap
    /// or limit it is dropped here and the call fails with `PluginFailed`.
    fn finish<T>(mut self, what: &'static str, result: wasmtime::Result<T>) -> StorageResult<T> {
        match result {
            Ok(value) => {
                self.context.record_call(self.live.store.data(), what, None);
                self.slot.live = Some(self.live);
                Ok(value)
            }
            Err(e) => {
                let e: anyhow::Error = e.into();
                self.context
                    .record_call(self.live.store.data(), what, Some(&e));
                Err(plugin_failed(self.context.describe_failure(what, e)))
            }
        }
    }
}

/// A poisoned orphan list only means a panic elsewhere while pushing; the list
/// itself is still fine to use.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct WasmStorage {
    session: Arc<Session>,
}

/// Calls a `session` method (0.2.0) or the same-named free function (0.1.0).
/// Both return the shared types, so callers need not care which it was.
macro_rules! call_op {
    ($call:expr, $method:ident ( $($arg:expr),* )) => {{
        let context = $call.context;
        let deadline = $call.deadline();
        let (store, api) = $call.parts();
        let future = async {
            match api {
                Api::V02 { plugin, session } => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .session()
                        .$method(&mut *store, *session, $($arg),*)
                        .await
                }
                Api::V01(plugin) => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .$method(&mut *store, $($arg),*)
                        .await
                }
            }
        };
        context.bounded(&deadline, future).await
    }};
}

#[async_trait]
impl Storage for WasmStorage {
    async fn stat(&self, path: &str) -> StorageResult<Metadata> {
        let mut call = self.session.begin().await?;
        let result = call_op!(call, call_stat(path));
        call.finish("stat", result)?
            .map(metadata)
            .map_err(storage_error)
    }

    async fn list_dir(&self, path: &str) -> StorageResult<Box<dyn DirLister>> {
        let mut call = self.session.begin().await?;
        let generation = call.generation();
        let context = call.context;
        let deadline = call.deadline();
        let (store, api) = call.parts();
        let future = async {
            match api {
                Api::V02 { plugin, session } => Ok(plugin
                    .wasmftpd_plugin_storage()
                    .session()
                    .call_list_dir(&mut *store, *session, path)
                    .await?
                    .map(Listing::Paged)),
                Api::V01(plugin) => Ok(plugin
                    .wasmftpd_plugin_storage()
                    .call_list_dir(&mut *store, path)
                    .await?
                    .map(Listing::Whole)),
            }
        };
        let result = context.bounded(&deadline, future).await;
        let listing = call.finish("list-dir", result)?.map_err(storage_error)?;
        Ok(match listing {
            Listing::Paged(resource) => Box::new(PagedLister {
                session: self.session.clone(),
                resource: Some(resource),
                generation,
            }),
            Listing::Whole(entries) => {
                Box::new(VecLister::new(entries.into_iter().map(dir_entry).collect()))
            }
        })
    }

    async fn open_read(&self, path: &str, offset: u64) -> StorageResult<Box<dyn FileReader>> {
        let mut call = self.session.begin().await?;
        let generation = call.generation();
        let context = call.context;
        let deadline = call.deadline();
        let (store, api) = call.parts();
        let future = async {
            let answer = match api {
                Api::V02 { plugin, session } => {
                    match plugin
                        .wasmftpd_plugin_storage()
                        .session()
                        .call_open_read(&mut *store, *session, path, offset)
                        .await?
                    {
                        Ok(api::ReadSource::Stream(stream)) => Ok(Ok(stream)),
                        Ok(api::ReadSource::Chunks(reader)) => Ok(Err(reader)),
                        Err(e) => Err(e),
                    }
                }
                Api::V01(plugin) => {
                    match plugin
                        .wasmftpd_plugin_storage()
                        .call_open_read(&mut *store, path, offset)
                        .await?
                    {
                        Ok(api01::ReadSource::Stream(stream)) => Ok(Ok(stream)),
                        Ok(api01::ReadSource::Chunks(reader)) => Ok(Err(reader)),
                        Err(e) => Err(e),
                    }
                }
            };
            // A stream is taken out of the table now: from here on the host
            // owns it and no longer needs the instance to move the bytes.
            Ok(match answer {
                Ok(Ok(stream)) => {
                    let os_file = file_io::take_os_file(store.data_mut(), stream.rep());
                    let stream = store.data_mut().table().delete(stream)?;
                    Ok(Source::Stream(stream, os_file))
                }
                Ok(Err(reader)) => Ok(Source::Chunks(reader)),
                Err(e) => Err(e),
            })
        };
        let result = context.bounded(&deadline, future).await;
        let source = call.finish("open-read", result)?.map_err(storage_error)?;
        Ok(match source {
            Source::Stream(stream, os_file) => Box::new(StreamReader { stream, os_file }),
            Source::Chunks(resource) => Box::new(ChunkReader {
                session: self.session.clone(),
                resource: Some(resource),
                generation,
            }),
        })
    }

    async fn open_write(&self, path: &str, mode: WriteMode) -> StorageResult<Box<dyn FileWriter>> {
        let mut call = self.session.begin().await?;
        let generation = call.generation();
        let context = call.context;
        let deadline = call.deadline();
        let (store, api) = call.parts();
        let future = async {
            let answer = match api {
                Api::V02 { plugin, session } => {
                    let mode = match mode {
                        WriteMode::Truncate => api::WriteMode::Truncate,
                        WriteMode::Append => api::WriteMode::Append,
                        WriteMode::Offset(offset) => api::WriteMode::Offset(offset),
                    };
                    match plugin
                        .wasmftpd_plugin_storage()
                        .session()
                        .call_open_write(&mut *store, *session, path, mode)
                        .await?
                    {
                        Ok(api::WriteSink::Stream(stream)) => Ok(Ok((stream, None))),
                        Ok(api::WriteSink::Committed(sink)) => {
                            Ok(Ok((sink.stream, Some(sink.commit))))
                        }
                        Ok(api::WriteSink::Chunks(writer)) => Ok(Err(writer)),
                        Err(e) => Err(e),
                    }
                }
                Api::V01(plugin) => {
                    let mode = match mode {
                        WriteMode::Truncate => api01::WriteMode::Truncate,
                        WriteMode::Append => api01::WriteMode::Append,
                        WriteMode::Offset(offset) => api01::WriteMode::Offset(offset),
                    };
                    match plugin
                        .wasmftpd_plugin_storage()
                        .call_open_write(&mut *store, path, mode)
                        .await?
                    {
                        Ok(api01::WriteSink::Stream(stream)) => Ok(Ok((stream, None))),
                        Ok(api01::WriteSink::Chunks(writer)) => Ok(Err(writer)),
                        Err(e) => Err(e),
                    }
                }
            };
            Ok(match answer {
                Ok(Ok((stream, commit))) => {
                    let os_file = file_io::take_os_sink(store.data_mut(), stream.rep());
                    let stream = store.data_mut().table().delete(stream)?;
                    Ok(Sink::Stream(stream, os_file, commit))
                }
                Ok(Err(writer)) => Ok(Sink::Chunks(writer)),
                Err(e) => Err(e),
            })
        };
        let result = context.bounded(&deadline, future).await;
        let sink = call.finish("open-write", result)?.map_err(storage_error)?;
        Ok(match sink {
            Sink::Stream(stream, os_file, None) => Box::new(StreamWriter { stream, os_file }),
            Sink::Stream(stream, os_file, Some(commit)) => Box::new(CommittedStreamWriter {
                stream: StreamWriter { stream, os_file },
                commit: ChunkWriter {
                    session: self.session.clone(),
                    resource: Some(commit),
                    generation,
                },
            }),
            Sink::Chunks(resource) => Box::new(ChunkWriter {
                session: self.session.clone(),
                resource: Some(resource),
                generation,
            }),
        })
    }

    async fn make_dir(&self, path: &str) -> StorageResult<()> {
        let mut call = self.session.begin().await?;
        let result = call_op!(call, call_make_dir(path));
        call.finish("make-dir", result)?.map_err(storage_error)
    }

    async fn remove_dir(&self, path: &str) -> StorageResult<()> {
        let mut call = self.session.begin().await?;
        let result = call_op!(call, call_remove_dir(path));
        call.finish("remove-dir", result)?.map_err(storage_error)
    }

    async fn delete(&self, path: &str) -> StorageResult<()> {
        let mut call = self.session.begin().await?;
        let result = call_op!(call, call_delete(path));
        call.finish("delete", result)?.map_err(storage_error)
    }

    async fn rename(&self, from: &str, to: &str) -> StorageResult<()> {
        let mut call = self.session.begin().await?;
        let result = call_op!(call, call_rename(from, to));
        call.finish("rename", result)?.map_err(storage_error)
    }

    async fn set_modified(&self, path: &str, time: SystemTime) -> StorageResult<()> {
        let time = timestamp(time);
        let mut call = self.session.begin().await?;
        let result = call_op!(call, call_set_modified(path, time));
        call.finish("set-modified", result)?.map_err(storage_error)
    }
}

/// What `list-dir` gave: a lister resource (0.2.0) or every entry (0.1.0).
enum Listing {
    Paged(ResourceAny),
    Whole(Vec<wit::DirEntry>),
}

/// Reads a listing through the plugin's `dir-lister`, one call per page.
struct PagedLister {
    session: Arc<Session>,
    /// `None` once the listing ended (or its instance failed).
    resource: Option<ResourceAny>,
    generation: u64,
}

#[async_trait]
impl DirLister for PagedLister {
    async fn next_page(&mut self, max: usize) -> StorageResult<Vec<DirEntry>> {
        let Some(resource) = self.resource else {
            return Ok(Vec::new());
        };
        let call = self.session.begin().await?;
        let mut call = same_instance(call, self.generation, &mut self.resource)?;
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let context = call.context;
        let deadline = call.deadline();
        let (store, api) = call.parts();
        let future = async {
            let Api::V02 { plugin, .. } = api else {
                return Err(wasmtime::Error::msg("a 0.1.0 plugin has no dir-lister"));
            };
            let page = plugin
                .wasmftpd_plugin_storage()
                .dir_lister()
                .call_next_page(&mut *store, resource, max)
                .await?;
            Ok(page)
        };
        let mut result = context.bounded(&deadline, future).await;
        let ended = !matches!(&result, Ok(Ok(page)) if !page.is_empty());
        if ended {
            // The end (or an error, which also ends it): release the guest's
            // lister now rather than at drop.
            self.resource = None;
            if result.is_ok() {
                let (store, _) = call.parts();
                if let Err(e) = resource.resource_drop_async(&mut *store).await {
                    result = Err(e);
                }
            }
        }
        let page = call.finish("next-page", result)?.map_err(storage_error)?;
        if page.len() > max as usize {
            return Err(plugin_failed(format!(
                "plugin returned {} entries for a page of at most {max}",
                page.len()
            )));
        }
        Ok(page.into_iter().map(dir_entry).collect())
    }
}

impl Drop for PagedLister {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.session.orphan(self.generation, resource);
        }
    }
}

fn dir_entry(e: wit::DirEntry) -> DirEntry {
    DirEntry {
        name: e.name,
        metadata: metadata(e.metadata),
    }
}

enum Source {
    /// With the file and offset behind it when it is our own unread file
    /// stream (`file_io::take_os_file`).
    Stream(DynInputStream, Option<(Arc<std::fs::File>, u64)>),
    Chunks(ResourceAny),
}

enum Sink {
    /// With the file and offset behind it when it is our own unwritten file
    /// stream (`file_io::take_os_sink`), and the plugin's `commit` writer for
    /// a `committed` sink.
    Stream(
        DynOutputStream,
        Option<(Arc<std::fs::File>, u64)>,
        Option<ResourceAny>,
    ),
    Chunks(ResourceAny),
}

/// Reads a plugin's `wasi:io` input stream natively.
struct StreamReader {
    stream: DynInputStream,
    /// The file and offset the stream would read, for `sendfile`.
    os_file: Option<(Arc<std::fs::File>, u64)>,
}

#[async_trait]
impl FileReader for StreamReader {
    async fn read(&mut self, max: usize) -> StorageResult<Bytes> {
        // wasmtime-wasi file streams return at most 64 KiB per read; asking for
        // 0 would look like end of file to our caller.
        match self.stream.blocking_read(max.max(1)).await {
            Ok(bytes) => Ok(bytes),
            Err(StreamError::Closed) => Ok(Bytes::new()),
            Err(e) => Err(stream_error(e)),
        }
    }

    fn os_file(&self) -> Option<(Arc<std::fs::File>, u64)> {
        self.os_file.clone()
    }
}

/// Writes to a plugin's `wasi:io` output stream natively.
struct StreamWriter {
    stream: DynOutputStream,
    /// The file and offset the stream would write, for `splice`.
    os_file: Option<(Arc<std::fs::File>, u64)>,
}

#[async_trait]
impl FileWriter for StreamWriter {
    async fn write(&mut self, data: Bytes) -> StorageResult<()> {
        self.stream
            .blocking_write_and_flush(data)
            .await
            .map_err(stream_error)
    }

    fn os_file(&self) -> Option<(Arc<std::fs::File>, u64)> {
        self.os_file.clone()
    }

    async fn finish(self: Box<Self>) -> StorageResult<()> {
        // Every write was flushed already; dropping the stream closes it.
        Ok(())
    }
}

/// A `committed` sink: the bytes go to the stream natively; a complete upload
/// then closes the stream and calls the plugin's `commit.finish` (storage-fs
/// renames its temporary file into place). Dropped unfinished, the stream
/// closes first and the plugin's writer is released without `finish`.
struct CommittedStreamWriter {
    stream: StreamWriter,
    commit: ChunkWriter,
}

#[async_trait]
impl FileWriter for CommittedStreamWriter {
    async fn write(&mut self, data: Bytes) -> StorageResult<()> {
        self.stream.write(data).await
    }

    fn os_file(&self) -> Option<(Arc<std::fs::File>, u64)> {
        self.stream.os_file()
    }

    async fn finish(self: Box<Self>) -> StorageResult<()> {
        let Self { stream, commit } = *self;
        drop(stream);
        Box::new(commit).finish().await
    }

    async fn abandon(self: Box<Self>) {
        let Self { stream, commit } = *self;
        drop(stream);
        Box::new(commit).abandon().await
    }
}

/// Reads through the plugin's `reader` resource, one call per chunk.
struct ChunkReader {
    session: Arc<Session>,
    /// `None` once released (end of file or failure).
    resource: Option<ResourceAny>,
    generation: u64,
}

#[async_trait]
impl FileReader for ChunkReader {
    async fn read(&mut self, max: usize) -> StorageResult<Bytes> {
        let Some(resource) = self.resource else {
            return Ok(Bytes::new());
        };
        let call = self.session.begin().await?;
        let mut call = same_instance(call, self.generation, &mut self.resource)?;
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let context = call.context;
        let deadline = call.deadline();
        let (store, api) = call.parts();
        let future = async {
            match api {
                Api::V02 { plugin, .. } => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .reader()
                        .call_read(&mut *store, resource, max)
                        .await
                }
                Api::V01(plugin) => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .reader()
                        .call_read(&mut *store, resource, max)
                        .await
                }
            }
        };
        let mut result = context.bounded(&deadline, future).await;
        if matches!(&result, Ok(Ok(data)) if data.is_empty()) {
            // End of file: release the guest's reader now rather than at drop.
            self.resource = None;
            let (store, _) = call.parts();
            if let Err(e) = resource.resource_drop_async(&mut *store).await {
                result = Err(e);
            }
        }
        let data = call.finish("read", result)?.map_err(storage_error)?;
        Ok(Bytes::from(data))
    }
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.session.orphan(self.generation, resource);
        }
    }
}

/// Writes through the plugin's `writer` resource, one call per chunk.
struct ChunkWriter {
    session: Arc<Session>,
    resource: Option<ResourceAny>,
    generation: u64,
}

#[async_trait]
impl FileWriter for ChunkWriter {
    async fn write(&mut self, data: Bytes) -> StorageResult<()> {
        let Some(resource) = self.resource else {
            return Err(StorageError::with_message(
                ErrorKind::Io,
                "upload already finished",
            ));
        };
        // The call runs as a task of its own, so that aborting the transfer
        // (ABOR, a vanished client) never cancels it half-way: that would cost
        // the instance, and the plugin would never see its writer dropped
        // (storage-fs would keep an atomic upload's temporary file).
        let session = Arc::clone(&self.session);
        let generation = self.generation;
        let call = tokio::spawn(async move {
            let mut resource = Some(resource);
            let result = session.write_chunk(generation, &mut resource, data).await;
            (result, resource.is_some())
        });
        let (result, alive) = call
            .await
            .map_err(|e| plugin_failed(format!("upload call failed: {e}")))?;
        if !alive {
            self.resource = None;
        }
        result
    }

    async fn finish(mut self: Box<Self>) -> StorageResult<()> {
        let Some(resource) = self.resource else {
            return Ok(());
        };
        let call = self.session.begin().await?;
        let mut call = same_instance(call, self.generation, &mut self.resource)?;
        self.resource = None;
        let context = call.context;
        let deadline = call.deadline();
        let (store, api) = call.parts();
        let future = async {
            let result = match api {
                Api::V02 { plugin, .. } => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .writer()
                        .call_finish(&mut *store, resource)
                        .await
                }
                Api::V01(plugin) => {
                    plugin
                        .wasmftpd_plugin_storage()
                        .writer()
                        .call_finish(&mut *store, resource)
                        .await
                }
            }?;
            resource.resource_drop_async(&mut *store).await?;
            Ok(result)
        };
        let result = context.bounded(&deadline, future).await;
        call.finish("finish", result)?.map_err(storage_error)
    }

    async fn abandon(mut self: Box<Self>) {
        let Some(resource) = self.resource.take() else {
            return;
        };
        // A task of its own, as `write`: an ABOR that drops the transfer now
        // never cancels the release half-way.
        let session = Arc::clone(&self.session);
        let generation = self.generation;
        let _ =
            tokio::spawn(async move { session.release_writer(generation, resource).await }).await;
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.session.orphan(self.generation, resource);
        }
    }
}

/// A chunked transfer belongs to the instance that opened it. If that instance
/// failed since, the transfer fails too (its guest state is gone).
fn same_instance<'a>(
    call: Call<'a>,
    generation: u64,
    resource: &mut Option<ResourceAny>,
) -> StorageResult<Call<'a>> {
    if call.generation() == generation {
        return Ok(call);
    }
    // The resource died with its instance: nothing to release.
    *resource = None;
    call.finish("transfer", Ok(()))?;
    Err(plugin_failed(
        "plugin instance serving this transfer failed earlier".into(),
    ))
}

fn plugin_failed(message: String) -> StorageError {
    StorageError::with_message(ErrorKind::PluginFailed, message)
}

fn storage_error(e: wit::Error) -> StorageError {
    let kind = match e.code {
        wit::ErrorCode::NotFound => ErrorKind::NotFound,
        wit::ErrorCode::PermissionDenied => ErrorKind::PermissionDenied,
        wit::ErrorCode::AlreadyExists => ErrorKind::AlreadyExists,
        wit::ErrorCode::NotADirectory => ErrorKind::NotADirectory,
        wit::ErrorCode::IsADirectory => ErrorKind::IsADirectory,
        wit::ErrorCode::NotEmpty => ErrorKind::NotEmpty,
        wit::ErrorCode::InvalidName => ErrorKind::InvalidName,
        wit::ErrorCode::NoSpace => ErrorKind::NoSpace,
        wit::ErrorCode::Unsupported => ErrorKind::Unsupported,
        wit::ErrorCode::Unavailable => ErrorKind::Unavailable,
        wit::ErrorCode::Io => ErrorKind::Io,
    };
    StorageError {
        kind,
        message: e.message,
    }
}

/// Errors of a natively pumped stream: the file system's own (a full disk is
/// `NoSpace`), or a trap, which only a broken stream implementation raises.
fn stream_error(e: StreamError) -> StorageError {
    match e {
        StreamError::Closed => StorageError::with_message(ErrorKind::Io, "stream closed"),
        StreamError::LastOperationFailed(e) => {
            let e = anyhow::Error::from(e);
            let kind = match e.downcast_ref::<std::io::Error>().map(std::io::Error::kind) {
                Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) => {
                    ErrorKind::NoSpace
                }
                _ => ErrorKind::Io,
            };
            StorageError::with_message(kind, e.to_string())
        }
        StreamError::Trap(e) => plugin_failed(format!("stream failed: {}", anyhow::Error::from(e))),
    }
}

fn metadata(m: wit::Metadata) -> Metadata {
    Metadata {
        kind: match m.kind {
            wit::EntryKind::File => EntryKind::File,
            wit::EntryKind::Directory => EntryKind::Directory,
            wit::EntryKind::Symlink => EntryKind::Symlink,
            wit::EntryKind::Other => EntryKind::Other,
        },
        size: m.size,
        modified: m.modified.and_then(system_time),
        readonly: m.readonly,
    }
}

/// A plugin's timestamp as a `SystemTime`; `None` when it is out of range.
fn system_time(t: wit::Timestamp) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::from(t.nanoseconds.min(999_999_999)));
    if t.seconds >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(t.seconds.unsigned_abs()))?
            .checked_add(nanos)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.seconds.unsigned_abs()))?
            .checked_add(nanos)
    }
}

fn timestamp(time: SystemTime) -> wit::Timestamp {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => wit::Timestamp {
            seconds: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            nanoseconds: after.subsec_nanos(),
        },
        Err(before) => {
            // Round down to whole seconds before 1970, then add the nanoseconds.
            let before = before.duration();
            let whole = before.as_secs() + u64::from(before.subsec_nanos() > 0);
            let nanos = (1_000_000_000 - before.subsec_nanos()) % 1_000_000_000;
            wit::Timestamp {
                seconds: -i64::try_from(whole).unwrap_or(i64::MAX),
                nanoseconds: nanos,
            }
        }
    }
}
