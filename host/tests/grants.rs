//! Grant modes enforced by the runtime, seen through a real plugin: storage-fs
//! (both its data paths) tries every operation on a read-only and a write-only
//! granted directory, and only the allowed ones reach the disk. Also: a
//! site's granted directory is opened once, not once per session.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use wasmftpd::backend::{
    Account, DirEntry, ErrorKind, Permissions, SessionFacts, Storage, StorageProvider, WriteMode,
    read_all,
};
use wasmftpd::plugin::{
    Grant, GrantMode, PluginLimits, PluginRuntime, PluginSource, PluginSpec, RuntimeOptions,
};

fn storage_fs(root: &Path, mode: GrantMode, data_path: &str) -> Arc<dyn StorageProvider> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    let runtime = PluginRuntime::new(RuntimeOptions {
        cache_dir: Some(cache),
    })
    .expect("runtime");
    runtime
        .load_storage(PluginSpec {
            site: "grants".into(),
            source: PluginSource::Builtin("storage-fs".into()),
            config: vec![("data_path".into(), data_path.into())],
            grants: vec![Grant {
                host: root.to_path_buf(),
                guest: "/srv".into(),
                mode,
            }],
            limits: PluginLimits::default(),
            ..PluginSpec::new("grants", PluginSource::Builtin("storage-fs".into()))
        })
        .expect("load storage-fs")
}

fn session(provider: &Arc<dyn StorageProvider>) -> Arc<dyn Storage> {
    let account = Account {
        user: "u".into(),
        home: "/".into(),
        permissions: Permissions::all(),
        ..Account::default()
    };
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    provider.open_session(&SessionFacts::new("grants", &account, "/", client, false))
}

/// A directory's whole listing.
async fn list(storage: &dyn Storage, path: &str) -> Result<Vec<DirEntry>, ErrorKind> {
    read_all(storage.list_dir(path).await.map_err(|e| e.kind)?)
        .await
        .map_err(|e| e.kind)
}

/// A root with a file `f` ("hello"), a directory `d` and a symlink `l` -> `f`.
fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("f"), b"hello").expect("write");
    std::fs::create_dir(dir.path().join("d")).expect("mkdir");
    std::os::unix::fs::symlink("f", dir.path().join("l")).expect("symlink");
    dir
}

async fn read(storage: &dyn Storage, path: &str) -> Result<Vec<u8>, ErrorKind> {
    let mut reader = storage.open_read(path, 0).await.map_err(|e| e.kind)?;
    let mut out = Vec::new();
    loop {
        let chunk = reader.read(1 << 16).await.map_err(|e| e.kind)?;
        if chunk.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
    }
}

async fn write(storage: &dyn Storage, path: &str, data: &[u8]) -> Result<(), ErrorKind> {
    let mut writer = storage
        .open_write(path, WriteMode::Truncate)
        .await
        .map_err(|e| e.kind)?;
    writer
        .write(Bytes::copy_from_slice(data))
        .await
        .map_err(|e| e.kind)?;
    writer.finish().await.map_err(|e| e.kind)
}

fn denied<T>(what: &str, result: Result<T, ErrorKind>) {
    assert_eq!(
        result.err(),
        Some(ErrorKind::PermissionDenied),
        "{what} was not refused"
    );
}

fn kind<T>(result: wasmftpd::backend::StorageResult<T>) -> Result<T, ErrorKind> {
    result.map_err(|e| e.kind)
}

#[tokio::test]
async fn read_only_grant_refuses_every_change() {
    for data_path in ["stream", "chunks"] {
        let dir = root();
        let storage = session(&storage_fs(dir.path(), GrantMode::ReadOnly, data_path));
        let s = &*storage;
        // Reading, listing and examining work.
        assert_eq!(read(s, "/f").await.expect("read"), b"hello");
        let mut names: Vec<String> = list(s, "/")
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["d", "f", "l"]);
        assert_eq!(kind(s.stat("/f").await).expect("stat").size, 5);
        // Every change is refused, and the disk shows none.
        denied("overwrite", write(s, "/f", b"changed").await);
        denied("create file", write(s, "/new", b"x").await);
        denied("create dir", kind(s.make_dir("/nd").await));
        denied("delete", kind(s.delete("/f").await));
        denied("remove dir", kind(s.remove_dir("/d").await));
        denied("rename", kind(s.rename("/f", "/g").await));
        denied(
            "set time",
            kind(
                s.set_modified("/f", std::time::SystemTime::UNIX_EPOCH)
                    .await,
            ),
        );
        let mut on_disk: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, ["d", "f", "l"], "{data_path}");
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"hello");
    }
}

#[tokio::test]
async fn write_only_grant_refuses_every_read() {
    for data_path in ["stream", "chunks"] {
        let dir = root();
        let storage = session(&storage_fs(dir.path(), GrantMode::WriteOnly, data_path));
        let s = &*storage;
        // Nothing can be read, listed or examined, including what this
        // session just wrote.
        denied("read", read(s, "/f").await);
        denied("read through a link", read(s, "/l").await);
        denied("list", kind(s.list_dir("/").await));
        denied("list a subdirectory", kind(s.list_dir("/d").await));
        denied("stat", kind(s.stat("/f").await));
        denied("stat a missing name", kind(s.stat("/nope").await));
        // Uploads, new directories, renames and deletes work.
        write(s, "/up", b"dropped").await.expect("upload");
        denied("read back an upload", read(s, "/up").await);
        kind(s.make_dir("/box").await).expect("mkdir");
        write(s, "/box/inner", b"deep").await.expect("upload below");
        kind(s.rename("/up", "/box/up").await).expect("rename");
        write(s, "/gone", b"x").await.expect("upload");
        kind(s.delete("/gone").await).expect("delete");
        assert_eq!(
            std::fs::read(dir.path().join("box/up")).unwrap(),
            b"dropped"
        );
        assert_eq!(
            std::fs::read(dir.path().join("box/inner")).unwrap(),
            b"deep"
        );
        assert!(!dir.path().join("gone").exists());
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"hello");
    }
}

#[tokio::test]
async fn read_write_grant_allows_both() {
    let dir = root();
    let storage = session(&storage_fs(dir.path(), GrantMode::ReadWrite, "stream"));
    write(&*storage, "/n", b"new").await.expect("write");
    assert_eq!(read(&*storage, "/n").await.expect("read"), b"new");
    assert_eq!(list(&*storage, "/").await.expect("list").len(), 4);
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc").count()
}

#[tokio::test]
async fn sessions_share_the_granted_directory() {
    let dir = root();
    let provider = storage_fs(dir.path(), GrantMode::ReadWrite, "stream");
    // Warm up: the first instance may open cache files and the like.
    let first = session(&provider);
    kind(first.stat("/f").await).expect("stat");
    let before = open_files();
    let mut sessions = Vec::new();
    for _ in 0..200 {
        let s = session(&provider);
        kind(s.stat("/f").await).expect("stat");
        sessions.push(s);
    }
    let grown = open_files().saturating_sub(before);
    assert!(
        grown < 20,
        "200 live sessions opened {grown} descriptors (one per session would be 200)"
    );
}
