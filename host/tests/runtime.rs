//! The plugin runtime against real components: the builtins (`auth-static`,
//! `storage-fs`) and the misbehaving `test-limits` plugin built by `build.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wasmftpd::backend::{
    Account, AuthError, Authenticator, Credentials, DirEntry, EntryKind, ErrorKind, Permissions,
    SessionFacts, Storage, WriteMode,
};
use wasmftpd::plugin::{
    Grant, GrantMode, PluginLimits, PluginRuntime, PluginSource, PluginSpec, RuntimeOptions,
    builtin_names,
};

// ---------------------------------------------------------------- helpers

/// One runtime for the tests of this binary (as a server has one), whose
/// compile cache on disk is shared across builds, so each component is
/// compiled once per build rather than once per test. (Each runtime reserves
/// a pool of 10,500 instance slots; many at once exhaust the address map.)
fn runtime() -> PluginRuntime {
    static RUNTIME: std::sync::OnceLock<PluginRuntime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
            PluginRuntime::new(RuntimeOptions {
                cache_dir: Some(cache),
            })
            .expect("runtime")
        })
        .clone()
}

fn spec(source: PluginSource, config: &[(&str, &str)], grants: Vec<Grant>) -> PluginSpec {
    PluginSpec {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        grants,
        ..PluginSpec::new("test", source)
    }
}

fn builtin(name: &str) -> PluginSource {
    PluginSource::Builtin(name.into())
}

fn test_plugin(file: &str) -> PluginSource {
    PluginSource::File(Path::new(env!("WASMFTPD_TEST_PLUGINS")).join(file))
}

fn credentials(user: &str, password: &str) -> Credentials {
    Credentials {
        user: user.into(),
        password: password.into(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls: false,
        site: "test".into(),
    }
}

fn account() -> Account {
    Account {
        user: "u".into(),
        home: "/".into(),
        permissions: Permissions::all(),
        ..Account::default()
    }
}

/// The facts of a session of [`account`] from 127.0.0.1.
fn facts() -> SessionFacts {
    SessionFacts::new(
        "test",
        &account(),
        "/",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        false,
    )
}

/// A whole listing, read page by page.
async fn list(storage: &dyn Storage, path: &str) -> Vec<DirEntry> {
    let lister = storage.list_dir(path).await.expect("list");
    wasmftpd::backend::read_all(lister)
        .await
        .expect("list pages")
}

/// Hashes made by real tools for the password `correct horse`:
/// `openssl passwd -6 -salt wasmftpdsalt 'correct horse'` and python `bcrypt`.
const SHA512_CRYPT: &str = "$6$wasmftpdsalt$rDOd7q.V98t.X0Y5kwreL2gt6wHB0T.ZbPpHlwpDe71MqiXZn21H7naSY.CTyoXTDYCaecxrGQgXzMEkBJLLU0";
const BCRYPT_2B: &str = "$2b$04$J8BPkdfYHRVX39UCwuICcuApwua1HQArE/AUGeQeOCWHxWcUWYppe";
const BCRYPT_2A: &str = "$2a$04$RZDtDBVcwpiURmMhyUW6HeOFmqr2IJfk9NJ.47BLbC2LQRm03bFpu";

/// An argon2id PHC string, as `wasmftpd hash-password` makes them.
fn argon2id(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

fn static_auth(config: &[(&str, &str)]) -> Arc<dyn Authenticator> {
    runtime()
        .load_auth(spec(builtin("auth-static"), config, vec![]))
        .expect("load auth-static")
}

/// storage-fs serving `root` (as its only preopen) with the given config.
fn fs_storage(root: &Path, config: &[(&str, &str)]) -> Arc<dyn Storage> {
    let grants = vec![Grant {
        host: root.to_path_buf(),
        guest: "/data".into(),
        mode: GrantMode::ReadWrite,
    }];
    let provider = runtime()
        .load_storage(spec(builtin("storage-fs"), config, grants))
        .expect("load storage-fs");
    provider.open_session(&facts())
}

async fn read_all(storage: &dyn Storage, path: &str, offset: u64) -> Vec<u8> {
    let mut reader = storage.open_read(path, offset).await.expect("open_read");
    let mut out = Vec::new();
    loop {
        let chunk = reader.read(256 << 10).await.expect("read");
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

async fn write_all(storage: &dyn Storage, path: &str, mode: WriteMode, data: &[u8]) {
    let mut writer = storage.open_write(path, mode).await.expect("open_write");
    for chunk in data.chunks(100_000) {
        writer
            .write(bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    writer.finish().await.expect("finish");
}

fn kind<T>(result: wasmftpd::backend::StorageResult<T>) -> ErrorKind {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind,
    }
}

fn limits_spec(timeout: Duration) -> PluginSpec {
    let mut spec = spec(test_plugin("test_limits.wasm"), &[], vec![]);
    spec.limits = PluginLimits {
        memory: 32 << 20,
        call_timeout: timeout,
    };
    spec
}

// ---------------------------------------------------------------- loading

#[test]
fn the_runtime_can_move_to_a_blocking_task() {
    // Callers load plugins with `spawn_blocking(move || runtime.load_*(spec))`.
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<PluginRuntime>();
    send_sync_static::<PluginSpec>();
}

#[test]
fn builtins_are_listed() {
    assert_eq!(
        builtin_names(),
        &[
            "auth-static",
            "auth-http",
            "storage-fs",
            "storage-s3",
            "events-webhook"
        ]
    );
}

#[test]
fn unknown_builtin_names_the_known_ones() {
    let err = runtime()
        .load_auth(spec(builtin("nope"), &[], vec![]))
        .err()
        .expect("must fail");
    let text = format!("{err:#}");
    assert!(
        text.contains("no builtin plugin `nope`") && text.contains("auth-static"),
        "{text}"
    );
}

#[test]
fn wrong_world_names_the_missing_export() {
    let err = runtime()
        .load_storage(spec(builtin("auth-static"), &[], vec![]))
        .err()
        .expect("auth-static is not a storage plugin");
    let text = format!("{err:#}");
    assert!(
        text.contains("`wasmftpd:plugin/storage@0.2.0`, `wasmftpd:plugin/storage@0.1.0`"),
        "{text}"
    );
    // And the other way round.
    let err = runtime()
        .load_auth(spec(builtin("storage-fs"), &[], vec![]))
        .err()
        .expect("fails");
    assert!(format!("{err:#}").contains("wasmftpd:plugin/auth@0.1.0"));
}

#[test]
fn a_core_module_or_garbage_is_not_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The smallest valid core module: magic + version 1, layer 0.
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").expect("write");
    let err = runtime()
        .load_auth(spec(PluginSource::File(module), &[], vec![]))
        .err()
        .expect("e");
    assert!(
        format!("{err:#}").contains("core WebAssembly module, not a component"),
        "{err:#}"
    );

    let text = dir.path().join("plugin.wasm");
    std::fs::write(&text, b"#!/bin/sh\necho hi\n").expect("write");
    let err = runtime()
        .load_auth(spec(PluginSource::File(text), &[], vec![]))
        .err()
        .expect("e");
    assert!(
        format!("{err:#}").contains("not a WebAssembly component"),
        "{err:#}"
    );

    let missing = dir.path().join("missing.wasm");
    let err = runtime()
        .load_auth(spec(PluginSource::File(missing), &[], vec![]))
        .err()
        .expect("e");
    assert!(format!("{err:#}").contains("missing.wasm"), "{err:#}");
}

#[test]
fn memory_limit_above_the_pool_is_refused() {
    let mut spec = spec(builtin("auth-static"), &[], vec![]);
    spec.limits.memory = 8 << 30;
    let err = runtime().load_auth(spec).err().expect("must fail");
    assert!(format!("{err:#}").contains("memory limit"), "{err:#}");
}

/// Tests that make runtimes of their own take turns: each runtime reserves a
/// pool of instance slots (thousands of mappings), and the process has a
/// bounded number of mappings.
fn own_runtime_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let _turn = own_runtime_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || RuntimeOptions {
        cache_dir: Some(dir.path().to_path_buf()),
    };

    let first = PluginRuntime::new(options()).expect("runtime");
    let started = Instant::now();
    first
        .load_auth(spec(builtin("auth-static"), &[], vec![]))
        .expect("load");
    let cold = started.elapsed();
    assert_eq!(
        (first.cache_stats().hits, first.cache_stats().misses),
        (0, 1)
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1, "one artifact, no temporary files left");
    assert!(entries[0].file_name().to_string_lossy().ends_with(".cwasm"));
    drop(first);

    // A new runtime (as after a restart) finds it.
    let second = PluginRuntime::new(options()).expect("runtime");
    let started = Instant::now();
    second
        .load_auth(spec(builtin("auth-static"), &[], vec![]))
        .expect("load");
    let warm = started.elapsed();
    assert_eq!(
        (second.cache_stats().hits, second.cache_stats().misses),
        (1, 0)
    );
    assert!(
        warm < cold,
        "cache hit ({warm:?}) should beat compiling ({cold:?})"
    );
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let _turn = own_runtime_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || RuntimeOptions {
        cache_dir: Some(dir.path().to_path_buf()),
    };
    PluginRuntime::new(options())
        .expect("runtime")
        .load_auth(spec(builtin("auth-static"), &[], vec![]))
        .expect("load");
    for entry in std::fs::read_dir(dir.path()).expect("ls").flatten() {
        std::fs::write(entry.path(), b"garbage").expect("corrupt");
    }
    let runtime = PluginRuntime::new(options()).expect("runtime");
    runtime
        .load_auth(spec(builtin("auth-static"), &[], vec![]))
        .expect("load recompiles");
    assert_eq!(runtime.cache_stats().misses, 1);
}

// ---------------------------------------------------------------- auth-static

#[tokio::test]
async fn auth_static_accepts_each_hash_format() {
    let argon = argon2id("correct horse");
    let auth = static_auth(&[
        ("users.argon.password", &argon),
        ("users.sha.password", SHA512_CRYPT),
        ("users.bcrypt.password", BCRYPT_2B),
        ("users.bcrypt2a.password", BCRYPT_2A),
    ]);
    for user in ["argon", "sha", "bcrypt", "bcrypt2a"] {
        let account = auth.login(&credentials(user, "correct horse")).await;
        let account = account.unwrap_or_else(|e| panic!("{user}: {e:?}"));
        assert_eq!(account.user, user);
        assert_eq!(account.home, "/");
        assert_eq!(account.permissions, Permissions::all());

        let refused = auth.login(&credentials(user, "battery staple")).await;
        assert!(
            matches!(refused, Err(AuthError::BadCredentials(_))),
            "{user}: {refused:?}"
        );
    }
    let unknown = auth.login(&credentials("nobody", "correct horse")).await;
    assert!(
        matches!(unknown, Err(AuthError::BadCredentials(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn auth_static_refuses_plaintext_passwords() {
    let auth = static_auth(&[("users.alice.password", "correct horse")]);
    // Even the "right" password: a plaintext entry never works.
    match auth.login(&credentials("alice", "correct horse")).await {
        Err(AuthError::Unavailable(Some(message))) => {
            assert!(message.contains("wasmftpd hash-password"), "{message}");
            assert!(!message.contains("correct horse"));
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn auth_static_home_permissions_and_disabled() {
    let auth = static_auth(&[
        ("users.bob.password", SHA512_CRYPT),
        ("users.bob.home", "/home/bob"),
        ("users.bob.permissions", "read, list,write"),
        ("users.ro.password", SHA512_CRYPT),
        ("users.ro.permissions", "read-only"),
        ("users.off.password", SHA512_CRYPT),
        ("users.off.disabled", "true"),
        ("users.bad.password", SHA512_CRYPT),
        ("users.bad.permissions", "read,fly"),
    ]);
    let bob = auth
        .login(&credentials("bob", "correct horse"))
        .await
        .expect("bob");
    assert_eq!(bob.home, "/home/bob");
    assert_eq!(
        bob.permissions,
        Permissions::READ | Permissions::LIST | Permissions::WRITE
    );

    let ro = auth
        .login(&credentials("ro", "correct horse"))
        .await
        .expect("ro");
    assert_eq!(ro.permissions, Permissions::READ | Permissions::LIST);

    let off = auth.login(&credentials("off", "correct horse")).await;
    assert!(matches!(off, Err(AuthError::Disabled(_))), "{off:?}");
    // A wrong password does not reveal that the account is disabled.
    let off = auth.login(&credentials("off", "guess")).await;
    assert!(matches!(off, Err(AuthError::BadCredentials(_))), "{off:?}");

    let bad = auth.login(&credentials("bad", "correct horse")).await;
    assert!(matches!(bad, Err(AuthError::Unavailable(_))), "{bad:?}");
}

#[tokio::test]
async fn auth_static_anonymous_is_read_only_and_off_by_default() {
    let closed = static_auth(&[]);
    let refused = closed
        .login(&credentials("anonymous", "me@example.com"))
        .await;
    assert!(
        matches!(refused, Err(AuthError::BadCredentials(_))),
        "{refused:?}"
    );

    let open = static_auth(&[("anonymous", "true"), ("anonymous_home", "/pub")]);
    for user in ["anonymous", "ftp"] {
        let account = open
            .login(&credentials(user, "whatever"))
            .await
            .expect(user);
        assert_eq!(account.home, "/pub");
        assert_eq!(account.permissions, Permissions::READ | Permissions::LIST);
    }
}

// ---------------------------------------------------------------- storage-fs

async fn storage_round_trip(config: &[(&str, &str)]) {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = fs_storage(root.path(), config);

    // 1 MiB of varied bytes, written in 100 kB pieces, read in 256 KiB reads.
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    write_all(&*storage, "/a.bin", WriteMode::Truncate, &data).await;
    assert_eq!(
        std::fs::read(root.path().join("a.bin")).expect("host file"),
        data
    );
    assert_eq!(read_all(&*storage, "/a.bin", 0).await, data);
    assert_eq!(read_all(&*storage, "/a.bin", 1000).await, &data[1000..]);
    assert!(
        read_all(&*storage, "/a.bin", 5 << 20).await.is_empty(),
        "offset past the end"
    );

    // Truncate replaces, append adds, offset overwrites in place (REST + STOR).
    write_all(&*storage, "/a.bin", WriteMode::Truncate, b"hello world").await;
    write_all(&*storage, "/a.bin", WriteMode::Append, b"!!").await;
    write_all(&*storage, "/a.bin", WriteMode::Offset(6), b"WORLD").await;
    assert_eq!(read_all(&*storage, "/a.bin", 0).await, b"hello WORLD!!");
    write_all(&*storage, "/new.txt", WriteMode::Offset(0), b"fresh").await;
    assert_eq!(read_all(&*storage, "/new.txt", 2).await, b"esh");

    let meta = storage.stat("/a.bin").await.expect("stat");
    assert_eq!((meta.kind, meta.size), (EntryKind::File, 13));
    assert!(meta.modified.is_some());
    assert!(storage.stat("/").await.expect("stat root").is_dir());
}

#[tokio::test]
async fn storage_fs_round_trips_through_streams() {
    storage_round_trip(&[]).await;
}

#[tokio::test]
async fn storage_fs_round_trips_through_chunks() {
    storage_round_trip(&[("data_path", "chunks")]).await;
}

#[tokio::test]
async fn stream_chunks_stay_valid_while_held() {
    // The host's file stream reuses its buffer once chunks are dropped; chunks
    // still held (e.g. queued on a socket) must never be overwritten.
    let root = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.path().join("big"), &data).expect("write");
    let storage = fs_storage(root.path(), &[]);
    let mut reader = storage.open_read("/big", 0).await.expect("open");
    let mut held = Vec::new();
    loop {
        let chunk = reader.read(100_000).await.expect("read");
        if chunk.is_empty() {
            break;
        }
        held.push(chunk);
    }
    assert!(held.len() >= 30, "reads are capped at the requested size");
    assert_eq!(held.concat(), data);
}

/// Listings take entry types from the directory itself (our own
/// `read-directory`): every kind, and more entries than one `getdents` reads.
/// Sizes and times come from the `stat`s our entry stream makes ahead of the
/// guest (on a helper thread for a directory this large): each must match the
/// entry's own.
#[tokio::test]
async fn storage_fs_lists_every_kind_of_entry() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("file"), b"abc").expect("write");
    std::os::unix::fs::symlink("file", dir.join("to-file")).expect("symlink");
    std::os::unix::fs::symlink("missing", dir.join("dangling")).expect("symlink");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    for i in 0..1500u64 {
        let file = std::fs::File::create(dir.join(format!("many-{i:04}"))).expect("create");
        file.set_len(i % 17).expect("set_len");
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000 + i * 3600);
        file.set_modified(when).expect("set_modified");
    }
    let storage = fs_storage(dir, &[]);
    let listing = list(&*storage, "/").await;
    assert_eq!(listing.len(), 5 + 1500);
    for i in 0..1500u64 {
        let name = format!("many-{i:04}");
        let entry = listing.iter().find(|e| e.name == name).expect("listed");
        assert_eq!(entry.metadata.kind, EntryKind::File, "{name}");
        assert_eq!(entry.metadata.size, i % 17, "{name}");
        assert_eq!(
            entry.metadata.modified,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000 + i * 3600)),
            "{name}"
        );
    }
    // A second listing of the same directory agrees with the first.
    let mut again = list(&*storage, "/").await;
    let mut first = listing.clone();
    first.sort_by(|a, b| a.name.cmp(&b.name));
    again.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(first, again);
    let kind_of = |name: &str| {
        let entry = listing.iter().find(|e| e.name == name).expect(name);
        (entry.metadata.kind, entry.metadata.size)
    };
    assert_eq!(kind_of("sub").0, EntryKind::Directory);
    assert_eq!(kind_of("file"), (EntryKind::File, 3));
    // A link that resolves shows its target; a dangling one shows the link.
    assert_eq!(kind_of("to-file"), (EntryKind::File, 3));
    assert_eq!(kind_of("dangling").0, EntryKind::Symlink);
    assert_eq!(kind_of("fifo").0, EntryKind::Other);
    assert!(listing.iter().all(|e| e.name != "." && e.name != ".."));
}

#[tokio::test]
async fn storage_fs_directories_listing_rename_and_errors() {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = fs_storage(root.path(), &[]);

    storage.make_dir("/docs").await.expect("mkdir");
    write_all(&*storage, "/docs/one.txt", WriteMode::Truncate, b"1").await;
    write_all(&*storage, "/docs/two.txt", WriteMode::Truncate, b"22").await;
    let mut listing = list(&*storage, "/docs").await;
    listing.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = listing
        .iter()
        .map(|e| (e.name.as_str(), e.metadata.size))
        .collect();
    assert_eq!(names, [("one.txt", 1), ("two.txt", 2)]);
    let root_listing = list(&*storage, "/").await;
    assert_eq!(root_listing.len(), 1);
    assert_eq!(root_listing[0].metadata.kind, EntryKind::Directory);

    storage
        .rename("/docs/one.txt", "/docs/uno.txt")
        .await
        .expect("rename");
    assert_eq!(read_all(&*storage, "/docs/uno.txt", 0).await, b"1");
    let gone = storage
        .stat("/docs/one.txt")
        .await
        .expect_err("renamed away");
    assert_eq!(gone.kind, ErrorKind::NotFound);

    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    storage
        .set_modified("/docs/uno.txt", when)
        .await
        .expect("set_modified");
    assert_eq!(
        storage.stat("/docs/uno.txt").await.expect("stat").modified,
        Some(when)
    );

    assert_eq!(kind(storage.stat("/nope").await), ErrorKind::NotFound);
    assert_eq!(kind(storage.list_dir("/nope").await), ErrorKind::NotFound);
    assert_eq!(
        kind(storage.open_read("/nope", 0).await.map(|_| ())),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(storage.open_read("/docs", 0).await.map(|_| ())),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        kind(storage.list_dir("/docs/uno.txt").await),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        kind(storage.make_dir("/docs").await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(kind(storage.remove_dir("/docs").await), ErrorKind::NotEmpty);
    assert_eq!(
        kind(
            storage
                .open_write("/missing/x", WriteMode::Truncate)
                .await
                .map(|_| ())
        ),
        ErrorKind::NotFound
    );
    assert_eq!(kind(storage.delete("/docs").await), ErrorKind::IsADirectory);

    storage.delete("/docs/uno.txt").await.expect("delete");
    storage.delete("/docs/two.txt").await.expect("delete");
    storage.remove_dir("/docs").await.expect("rmdir");
    assert!(list(&*storage, "/").await.is_empty());
}

#[tokio::test]
async fn storage_fs_serves_the_preopen_named_by_root() {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    std::fs::write(b.path().join("in-b"), b"b").expect("write");
    let grants = vec![
        Grant {
            host: a.path().into(),
            guest: "/a".into(),
            mode: GrantMode::ReadWrite,
        },
        Grant {
            host: b.path().into(),
            guest: "/b".into(),
            mode: GrantMode::ReadWrite,
        },
    ];
    let provider = runtime()
        .load_storage(spec(builtin("storage-fs"), &[("root", "/b")], grants))
        .expect("load");
    let storage = provider.open_session(&facts());
    assert_eq!(read_all(&*storage, "/in-b", 0).await, b"b");
}

#[tokio::test]
async fn storage_fs_without_a_grant_is_unavailable() {
    let provider = runtime()
        .load_storage(spec(builtin("storage-fs"), &[], vec![]))
        .expect("load");
    let err = provider
        .open_session(&facts())
        .stat("/")
        .await
        .expect_err("no root");
    assert_eq!(err.kind, ErrorKind::Unavailable);
}

// ---------------------------------------------------------------- confinement

/// A root with a secret beside it (outside) and symlinks inside pointing out.
struct Jail {
    _dir: tempfile::TempDir,
    root: PathBuf,
    secret: PathBuf,
}

fn jail() -> Jail {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).expect("root");
    std::fs::create_dir_all(&outside).expect("outside");
    let secret = outside.join("secret");
    std::fs::write(&secret, b"top secret").expect("secret");
    std::os::unix::fs::symlink(&secret, root.join("link-file")).expect("symlink");
    std::os::unix::fs::symlink(&outside, root.join("link-dir")).expect("symlink");
    std::os::unix::fs::symlink("../outside/secret", root.join("link-relative")).expect("symlink");
    Jail {
        _dir: dir,
        root,
        secret,
    }
}

#[tokio::test]
async fn storage_fs_cannot_leave_its_root() {
    for config in [&[][..], &[("data_path", "chunks")][..]] {
        let jail = jail();
        let storage = fs_storage(&jail.root, config);
        let secret = jail.secret.to_str().expect("utf-8 path");

        // `..` and absolute host paths, given straight to the plugin (the
        // protocol would never pass them).
        for path in [
            "/../outside/secret",
            "/link-dir/../../outside/secret",
            secret,
        ] {
            assert!(storage.open_read(path, 0).await.is_err(), "read {path}");
            assert!(storage.stat(path).await.is_err(), "stat {path}");
            assert!(
                storage.open_write(path, WriteMode::Truncate).await.is_err(),
                "write {path}"
            );
            assert!(storage.delete(path).await.is_err(), "delete {path}");
        }
        // Symlinks inside the root that lead out.
        for path in ["/link-file", "/link-relative", "/link-dir/secret"] {
            assert!(storage.open_read(path, 0).await.is_err(), "read {path}");
            assert!(
                storage.open_write(path, WriteMode::Append).await.is_err(),
                "write {path}"
            );
            assert!(
                storage
                    .set_modified(path, SystemTime::UNIX_EPOCH)
                    .await
                    .is_err(),
                "{path}"
            );
        }
        assert!(storage.list_dir("/link-dir").await.is_err());
        assert!(storage.rename("/link-dir/secret", "/stolen").await.is_err());
        assert!(storage.stat("/stolen").await.is_err());
        // The listing shows the links as links, not what they point to.
        let listing = list(&*storage, "/").await;
        assert!(
            listing
                .iter()
                .all(|e| e.metadata.kind == EntryKind::Symlink),
            "{listing:?}"
        );

        assert_eq!(std::fs::read(&jail.secret).expect("secret"), b"top secret");
        assert!(
            std::fs::metadata(&jail.secret)
                .expect("meta")
                .modified()
                .expect("mtime")
                > SystemTime::UNIX_EPOCH + Duration::from_secs(1)
        );
    }
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline() {
    let provider = runtime()
        .load_storage(limits_spec(Duration::from_millis(200)))
        .expect("load");
    let storage = provider.open_session(&facts());
    let started = Instant::now();
    let err = storage.stat("/loop").await.expect_err("must be stopped");
    let took = started.elapsed();
    assert_eq!(err.kind, ErrorKind::PluginFailed);
    assert!(
        err.message.as_deref().unwrap_or("").contains("deadline"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_runaway_allocation_hits_the_memory_limit() {
    let provider = runtime()
        .load_storage(limits_spec(Duration::from_secs(5)))
        .expect("load");
    let storage = provider.open_session(&facts());
    let err = storage.stat("/alloc").await.expect_err("must trap");
    assert_eq!(err.kind, ErrorKind::PluginFailed);
    assert!(
        err.message.as_deref().unwrap_or("").contains("memory"),
        "{err}"
    );
}

#[tokio::test]
async fn after_a_trap_the_session_gets_a_fresh_instance_and_others_never_notice() {
    let provider = runtime()
        .load_storage(limits_spec(Duration::from_millis(300)))
        .expect("load");
    let (one, two) = (
        provider.open_session(&facts()),
        provider.open_session(&facts()),
    );
    // test-limits answers `stat` with the number of calls its instance served.
    let calls = async |s: &Arc<dyn Storage>| s.stat("/count").await.expect("stat").size;
    assert_eq!(calls(&one).await, 1);
    assert_eq!(calls(&one).await, 2);
    assert_eq!(calls(&two).await, 1);

    for bad in ["/trap", "/loop", "/alloc"] {
        let err = one.stat(bad).await.expect_err(bad);
        assert_eq!(err.kind, ErrorKind::PluginFailed, "{bad}");
        // Next call: a fresh instance, working.
        assert_eq!(calls(&one).await, 1, "after {bad}");
    }
    // The other session kept its instance throughout.
    assert_eq!(calls(&two).await, 2);
}

#[tokio::test]
async fn a_call_abandoned_midway_discards_the_instance() {
    let provider = runtime()
        .load_storage(limits_spec(Duration::from_secs(5)))
        .expect("load");
    let storage = provider.open_session(&facts());
    assert_eq!(storage.stat("/count").await.expect("stat").size, 1);
    // As when ABOR drops a transfer: the call's future is dropped while the
    // plugin is still running (it yields every epoch tick).
    let abandoned = tokio::time::timeout(Duration::from_millis(100), storage.stat("/loop")).await;
    assert!(abandoned.is_err(), "the loop cannot finish");
    let started = Instant::now();
    assert_eq!(
        storage.stat("/count").await.expect("stat").size,
        1,
        "fresh instance"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_chunked_transfer_fails_with_its_instance() {
    let provider = runtime()
        .load_storage(limits_spec(Duration::from_millis(200)))
        .expect("load");
    let storage = provider.open_session(&facts());
    let mut reader = storage.open_read("/loop-read", 0).await.expect("open");
    let err = reader.read(1024).await.expect_err("read spins");
    assert_eq!(err.kind, ErrorKind::PluginFailed);
    // The reader's instance is gone, so the reader stays failed, but the
    // session goes on with a new instance.
    assert_eq!(storage.stat("/count").await.expect("stat").size, 1);
    let mut healthy = storage.open_read("/zeroes", 0).await.expect("open");
    assert_eq!(healthy.read(1000).await.expect("read").len(), 1000);
    drop(healthy); // released at the start of the next call
    assert_eq!(storage.stat("/count").await.expect("stat").size, 3);
}

#[tokio::test]
async fn an_auth_plugin_that_fails_costs_one_login() {
    let mut spec = limits_spec(Duration::from_millis(200));
    spec.limits.memory = 32 << 20;
    let auth = runtime().load_auth(spec).expect("load");
    for bad in ["loop", "alloc", "trap"] {
        let result = auth.login(&credentials(bad, "x")).await;
        assert!(
            matches!(result, Err(AuthError::PluginFailed(_))),
            "{bad}: {result:?}"
        );
        let good = auth
            .login(&credentials("someone", "x"))
            .await
            .expect("next login works");
        assert_eq!(good.user, "someone");
    }
}

/// How many logins the instance that answered has served (test-limits'
/// `logins` attribute).
fn instance_logins(account: &wasmftpd::backend::Account) -> u32 {
    account
        .attributes
        .iter()
        .find(|(k, _)| k == "logins")
        .and_then(|(_, v)| v.parse().ok())
        .expect("test-limits returns `logins`")
}

#[tokio::test]
async fn auth_instances_are_fresh_per_login_unless_the_site_reuses_them() {
    let fresh = runtime()
        .load_auth(limits_spec(Duration::from_millis(500)))
        .expect("load");
    for _ in 0..3 {
        let account = fresh.login(&credentials("a", "x")).await.expect("login");
        assert_eq!(instance_logins(&account), 1);
    }

    let mut spec = limits_spec(Duration::from_millis(500));
    spec.reuse_instances = true;
    let warm = runtime().load_auth(spec).expect("load");
    for n in 1..=3 {
        let account = warm.login(&credentials("a", "x")).await.expect("login");
        assert_eq!(
            instance_logins(&account),
            n,
            "one warm instance serves login {n}"
        );
    }
    // A failed login's instance is discarded, never handed on: the next login
    // gets a fresh one, and so does each after another failure, including an
    // account that breaks the contract.
    for bad in ["trap", "loop", "alloc", "many-attributes"] {
        let result = warm.login(&credentials(bad, "x")).await;
        assert!(
            matches!(result, Err(AuthError::PluginFailed(_))),
            "{bad}: {result:?}"
        );
        let account = warm.login(&credentials("a", "x")).await.expect("login");
        assert_eq!(instance_logins(&account), 1, "after {bad}");
    }

    // An instance retires after 1,000 logins, so whatever a plugin lets grow
    // between logins is dropped now and then.
    let mut last = 1;
    for _ in 0..1_000 {
        let account = warm.login(&credentials("a", "x")).await.expect("login");
        let n = instance_logins(&account);
        if n == 1 {
            break;
        }
        last = n;
    }
    assert_eq!(last, 1_000, "the instance served exactly 1,000 logins");
}

/// Listings are read in blocks of 256 entries and a helper starts at 512:
/// sizes on and around those boundaries list every entry exactly once, with
/// its own size.
#[tokio::test]
async fn storage_fs_lists_directories_of_every_size_around_the_block_boundaries() {
    for count in [0usize, 1, 255, 256, 257, 511, 512, 513, 768] {
        let root = tempfile::tempdir().expect("tempdir");
        for i in 0..count {
            std::fs::write(root.path().join(format!("f{i:04}")), vec![b'x'; i % 5]).expect("write");
        }
        let storage = fs_storage(root.path(), &[]);
        let mut listing = list(&*storage, "/").await;
        listing.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(listing.len(), count, "{count} entries");
        for (i, entry) in listing.iter().enumerate() {
            assert_eq!(entry.name, format!("f{i:04}"));
            assert_eq!(
                entry.metadata.size,
                (i % 5) as u64,
                "{count}: {}",
                entry.name
            );
        }
    }
}

/// A storage-fs download on the stream path names the file and offset behind
/// its stream, for `sendfile`: the file read from that offset gives exactly
/// what the stream gives. The chunked path names none.
#[tokio::test]
async fn stream_reads_name_their_file_for_sendfile() {
    use std::io::Read;
    let root = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join("f.bin"), &data).expect("write");

    let storage = fs_storage(root.path(), &[]);
    for offset in [0u64, 12_345, 300_000, 400_000] {
        let reader = storage
            .open_read("/f.bin", offset)
            .await
            .expect("open_read");
        let (file, at) = reader.os_file().expect("stream path names its file");
        assert_eq!(at, offset);
        let mut from_file = Vec::new();
        let mut file = &*file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(at)).expect("seek");
        file.read_to_end(&mut from_file).expect("read file");
        assert_eq!(from_file, read_all(&*storage, "/f.bin", offset).await);
    }

    let chunked = fs_storage(root.path(), &[("data_path", "chunks")]);
    let reader = chunked.open_read("/f.bin", 0).await.expect("open_read");
    assert!(reader.os_file().is_none());
}

/// Many sessions listing large directories at once: more listings than
/// helper threads (capped at the core count), so some run with a helper and
/// some without; every listing is complete and right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_large_listings_are_all_complete() {
    let root = tempfile::tempdir().expect("tempdir");
    for i in 0..2000usize {
        std::fs::write(root.path().join(format!("e{i:05}")), vec![b'y'; i % 7]).expect("write");
    }
    let provider = runtime()
        .load_storage(spec(
            builtin("storage-fs"),
            &[],
            vec![Grant {
                host: root.path().to_path_buf(),
                guest: "/data".into(),
                mode: GrantMode::ReadWrite,
            }],
        ))
        .expect("load storage-fs");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let storage = provider.open_session(&facts());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let mut listing = list(&*storage, "/").await;
                listing.sort_by(|a, b| a.name.cmp(&b.name));
                assert_eq!(listing.len(), 2000);
                for (i, entry) in listing.iter().enumerate() {
                    assert_eq!(entry.name, format!("e{i:05}"));
                    assert_eq!(entry.metadata.size, (i % 7) as u64);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("listing task");
    }
}

// ---------------------------------------------------------------- contract 0.2

/// The plugins built for contract 0.1.0, kept as built (see the README there).
fn fixture_01(file: &str) -> PluginSource {
    PluginSource::File(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/plugin-0.1.0")
            .join(file),
    )
}

#[tokio::test]
async fn plugins_built_for_0_1_0_still_work() {
    let auth = runtime()
        .load_auth(spec(
            fixture_01("auth_static.wasm"),
            &[
                ("users.ann.password", SHA512_CRYPT),
                ("users.ann.home", "/ann"),
                ("users.ann.permissions", "read,list"),
            ],
            vec![],
        ))
        .expect("load 0.1.0 auth-static");
    let account = auth
        .login(&credentials("ann", "correct horse"))
        .await
        .expect("login");
    assert_eq!(account.home, "/ann");
    assert_eq!(account.permissions, Permissions::READ | Permissions::LIST);
    assert_eq!(
        account.attributes,
        vec![],
        "0.1.0 accounts have no attributes"
    );
    assert!(matches!(
        auth.login(&credentials("ann", "wrong")).await,
        Err(AuthError::BadCredentials(_))
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    let grants = vec![Grant {
        host: dir.path().to_path_buf(),
        guest: "/data".into(),
        mode: GrantMode::ReadWrite,
    }];
    let provider = runtime()
        .load_storage(spec(fixture_01("storage_fs.wasm"), &[], grants))
        .expect("load 0.1.0 storage-fs");
    let storage = provider.open_session(&facts());
    write_all(&*storage, "/a.txt", WriteMode::Truncate, b"hello").await;
    storage.make_dir("/sub").await.expect("mkdir");
    for i in 0..2500 {
        std::fs::write(dir.path().join(format!("sub/f{i}")), b"x").expect("write");
    }
    assert_eq!(read_all(&*storage, "/a.txt", 1).await, b"ello");
    let names: Vec<String> = list(&*storage, "/")
        .await
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // The host pages a 0.1.0 plugin's whole listing itself.
    let mut lister = storage.list_dir("/sub").await.expect("list");
    let first = lister.next_page(1000).await.expect("page");
    assert_eq!(first.len(), 1000);
    assert_eq!(
        wasmftpd::backend::read_all(lister)
            .await
            .expect("rest")
            .len(),
        1500
    );
}

#[tokio::test]
async fn storage_sessions_are_told_the_facts() {
    let provider = runtime()
        .load_storage(limits_spec(Duration::from_secs(5)))
        .expect("load");
    let account = Account {
        user: "ann".into(),
        home: "/home/ann".into(),
        permissions: Permissions::READ | Permissions::LIST,
        limits: wasmftpd::backend::AccountLimits {
            max_sessions: Some(3),
            quota_bytes: Some(1 << 20),
            ..Default::default()
        },
        attributes: vec![("root".into(), "ann-root".into())],
    };
    let facts = SessionFacts::new(
        "site-a",
        &account,
        "/home/ann",
        "2001:db8::7".parse().expect("ip"),
        true,
    );
    let storage = provider.open_session(&facts);
    // test-limits lists its facts, two names per page.
    let mut names: Vec<String> = list(&*storage, "/")
        .await
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    for want in [
        "attribute.root=ann-root",
        "client=2001:db8::7",
        "home=/home/ann",
        "max_sessions=3",
        "quota_bytes=1048576",
        "site=site-a",
        "tls=true",
        "user=ann",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    // A fresh instance after a trap is opened again with the same facts.
    assert_eq!(kind(storage.stat("/trap").await), ErrorKind::PluginFailed);
    let names: Vec<String> = list(&*storage, "/")
        .await
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"user=ann".to_string()), "{names:?}");
    assert!(
        names.contains(&"calls=1".to_string()),
        "a new instance: {names:?}"
    );
}

#[tokio::test]
async fn a_refused_storage_session_is_an_ordinary_error() {
    let provider = runtime()
        .load_storage(limits_spec(Duration::from_secs(5)))
        .expect("load");
    let account = Account {
        user: "refuse-storage".into(),
        home: "/".into(),
        ..Account::default()
    };
    let facts = SessionFacts::new("s", &account, "/", IpAddr::V4(Ipv4Addr::LOCALHOST), false);
    let storage = provider.open_session(&facts);
    let err = storage.stat("/x").await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(err.message.as_deref(), Some("no storage for you"));
}

#[tokio::test]
async fn a_plugin_blocked_in_a_host_call_is_stopped_at_its_deadline() {
    let timeout = Duration::from_millis(300);
    let provider = runtime().load_storage(limits_spec(timeout)).expect("load");
    let storage = provider.open_session(&facts());
    let started = Instant::now();
    let err = storage.stat("/sleep").await.expect_err("stopped");
    assert_eq!(err.kind, ErrorKind::PluginFailed);
    assert!(
        started.elapsed() < timeout * 4,
        "took {:?}",
        started.elapsed()
    );
    // And the session goes on with a fresh instance.
    assert_eq!(storage.stat("/ok").await.expect("stat").size, 1);
}

#[tokio::test]
async fn auth_static_returns_limits_and_attributes() {
    let auth = static_auth(&[
        ("users.ann.password", SHA512_CRYPT),
        ("users.ann.limits.max_sessions", "2"),
        ("users.ann.limits.quota_bytes", "10MiB"),
        ("users.ann.limits.download_bytes_per_second", "1048576"),
        ("users.ann.attributes.root", "ann"),
        ("users.ann.attributes.team", "blue"),
        ("users.bob.password", SHA512_CRYPT),
        ("users.bob.limits.speed", "9"),
    ]);
    let account = auth
        .login(&credentials("ann", "correct horse"))
        .await
        .expect("login");
    assert_eq!(account.limits.max_sessions, Some(2));
    assert_eq!(account.limits.quota_bytes, Some(10 << 20));
    assert_eq!(account.limits.download_bytes_per_second, Some(1 << 20));
    assert_eq!(account.limits.upload_bytes_per_second, None);
    let mut attributes = account.attributes.clone();
    attributes.sort();
    assert_eq!(
        attributes,
        vec![
            ("root".to_string(), "ann".to_string()),
            ("team".to_string(), "blue".to_string())
        ]
    );
    // A limit the plugin does not know is a configuration error, not a login.
    assert!(matches!(
        auth.login(&credentials("bob", "correct horse")).await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn storage_fs_gives_each_user_the_root_named_by_an_attribute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grants = vec![Grant {
        host: dir.path().to_path_buf(),
        guest: "/data".into(),
        mode: GrantMode::ReadWrite,
    }];
    let provider = runtime()
        .load_storage(spec(
            builtin("storage-fs"),
            &[("root_attribute", "root")],
            grants,
        ))
        .expect("load");
    let session = |user: &str, root: Option<&str>| {
        let account = Account {
            user: user.into(),
            home: "/".into(),
            permissions: Permissions::all(),
            attributes: root
                .map(|r| vec![("root".to_string(), r.to_string())])
                .unwrap_or_default(),
            ..Account::default()
        };
        provider.open_session(&SessionFacts::new(
            "s",
            &account,
            "/",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            false,
        ))
    };
    let ann = session("ann", Some("users/ann"));
    let bob = session("bob", Some("users/bob"));
    write_all(&*ann, "/mine.txt", WriteMode::Truncate, b"ann's").await;
    write_all(&*bob, "/mine.txt", WriteMode::Truncate, b"bob's").await;
    assert_eq!(
        std::fs::read(dir.path().join("users/ann/mine.txt")).expect("ann"),
        b"ann's"
    );
    assert_eq!(
        std::fs::read(dir.path().join("users/bob/mine.txt")).expect("bob"),
        b"bob's"
    );
    assert_eq!(list(&*ann, "/").await.len(), 1, "ann sees only her tree");

    let escape = session("eve", Some("../outside"));
    assert_eq!(kind(escape.stat("/").await), ErrorKind::Unavailable);
    let none = session("nobody", None);
    assert_eq!(kind(none.stat("/").await), ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn storage_fs_lists_a_large_directory_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..5000 {
        std::fs::write(dir.path().join(format!("f{i:05}")), i.to_string()).expect("write");
    }
    let storage = fs_storage(dir.path(), &[]);
    let mut lister = storage.list_dir("/").await.expect("list");
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = lister.next_page(700).await.expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 700);
        for entry in page {
            let i: u64 = entry.name[1..].parse().expect("name");
            assert_eq!(entry.metadata.size, i.to_string().len() as u64);
            assert!(seen.insert(entry.name), "each entry once");
        }
    }
    assert_eq!(seen.len(), 5000);
    // A listing dropped half-way releases the plugin's lister at the next call.
    let mut lister = storage.list_dir("/").await.expect("list");
    assert_eq!(lister.next_page(10).await.expect("page").len(), 10);
    drop(lister);
    assert_eq!(list(&*storage, "/").await.len(), 5000);
}

/// A one-request-at-a-time HTTP server on 127.0.0.1 answering every request
/// with `status` and a `Content-Length` of `length` (sending `length` bytes).
async fn http_server(
    status: u16,
    length: usize,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&vec![b'x'; length]).await;
        }
    });
    (address, hits)
}

fn http_auth(allowed: &[&str], max_response: Option<u64>) -> Arc<dyn Authenticator> {
    let mut spec = limits_spec(Duration::from_secs(5));
    spec.allowed_hosts = allowed
        .iter()
        .map(|a| wasmftpd::plugin::AllowedHost::parse(a).expect("grant"))
        .collect();
    if let Some(max) = max_response {
        spec.max_response_size = max;
    }
    runtime().load_auth(spec).expect("load")
}

#[tokio::test]
async fn outbound_http_reaches_only_allowed_hosts() {
    let (address, hits) = http_server(200, 2).await;
    let url = format!("http://{address}/check");
    let allowed = format!("http://{address}");

    let auth = http_auth(&[&allowed], None);
    let account = auth
        .login(&credentials(&format!("http:{url}"), "x"))
        .await
        .expect("the allowed host answered 200");
    assert_eq!(
        account.attributes[0],
        ("from".to_string(), "test-limits".to_string())
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Not granted: the plugin gets an error naming the origin; nothing is sent.
    for grants in [vec![], vec!["http://127.0.0.2:9".to_string()]] {
        let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
        let auth = http_auth(&grants, None);
        let refused = auth.login(&credentials(&format!("http:{url}"), "x")).await;
        match refused {
            Err(AuthError::BadCredentials(Some(message))) => {
                assert!(message.contains("denied"), "{message}");
                assert!(message.contains(&format!("http://{address}")), "{message}");
            }
            other => panic!("expected a denial, got {other:?}"),
        }
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "denied requests never left"
    );
}

#[tokio::test]
async fn outbound_responses_over_the_size_limit_fail() {
    let (address, _) = http_server(200, 64 * 1024).await;
    let auth = http_auth(&[&format!("http://{address}")], Some(4096));
    let refused = auth
        .login(&credentials(&format!("http:http://{address}/big"), "x"))
        .await;
    match refused {
        Err(AuthError::BadCredentials(Some(message))) => {
            assert!(message.to_lowercase().contains("size"), "{message}")
        }
        other => panic!("expected a size error, got {other:?}"),
    }
}

#[tokio::test]
async fn event_plugins_deliver_and_fail_alone() {
    use wasmftpd::backend::{Event, EventKind};
    let event = Event {
        kind: EventKind::Upload,
        site: "s".into(),
        user: "ann".into(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        path: Some("/ann/f.txt".into()),
        target: None,
        size: Some(5),
        duration: Some(Duration::from_millis(7)),
        ok: true,
        time: SystemTime::now(),
    };
    let handler = |behave: &str, timeout: Duration| {
        let mut spec = spec(
            test_plugin("test_limits.wasm"),
            &[("behave", behave)],
            vec![],
        );
        spec.limits.call_timeout = timeout;
        runtime().load_events(spec).expect("load events")
    };
    handler("ok", Duration::from_secs(5))
        .handle(&event)
        .await
        .expect("delivered");
    let trapping = handler("trap", Duration::from_secs(5));
    let why = trapping.handle(&event).await.expect_err("trapped");
    assert!(why.contains("trapped"), "{why}");
    let started = Instant::now();
    let hanging = handler("sleep", Duration::from_millis(200));
    let why = hanging.handle(&event).await.expect_err("stopped");
    assert!(why.contains("deadline"), "{why}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // An event handler for auth or storage is refused at load, and the
    // other way round.
    let err = runtime()
        .load_events(spec(builtin("auth-static"), &[], vec![]))
        .err()
        .expect("not an event plugin");
    assert!(
        format!("{err:#}").contains("wasmftpd:plugin/events@0.2.0"),
        "{err:#}"
    );
}

/// Opens `path` for a new upload whose writer names its OS file (the splice
/// path), writes `head-` through the writer and `spliced` straight into the
/// file after it, as the data connection does; the upload is left unfinished.
async fn head_then_spliced(
    storage: &dyn Storage,
    path: &str,
) -> Box<dyn wasmftpd::backend::FileWriter> {
    use std::os::unix::fs::FileExt;
    let mut writer = storage
        .open_write(path, WriteMode::Truncate)
        .await
        .expect("open_write");
    let (file, at) = writer.os_file().expect("the writer names its file");
    assert_eq!(at, 0);
    writer
        .write(bytes::Bytes::from_static(b"head-"))
        .await
        .expect("write");
    file.write_all_at(b"spliced", at + 5).expect("write at");
    writer
}

/// A storage-fs upload on the stream path names the file and offset behind
/// its stream, for `splice`: bytes written first through the writer land from
/// that offset on, bytes put into the file after them stay, and `finish`
/// completes the upload as usual. A REST offset is named as given; the
/// chunked path names none.
#[tokio::test]
async fn stream_writes_name_their_file_for_splice() {
    use std::os::unix::fs::FileExt;
    let root = tempfile::tempdir().expect("tempdir");
    // Uploads written in place (atomic ones: the next test).
    let storage = fs_storage(root.path(), &[("atomic_uploads", "false")]);

    let writer = head_then_spliced(&*storage, "/up.bin").await;
    writer.finish().await.expect("finish");
    assert_eq!(
        std::fs::read(root.path().join("up.bin")).expect("read"),
        b"head-spliced"
    );

    let writer = storage
        .open_write("/up.bin", WriteMode::Offset(5))
        .await
        .expect("open_write at offset");
    let (file, at) = writer.os_file().expect("names its file");
    assert_eq!(at, 5);
    file.write_all_at(b"SPLICED", at).expect("write at");
    writer.finish().await.expect("finish");
    assert_eq!(
        std::fs::read(root.path().join("up.bin")).expect("read"),
        b"head-SPLICED"
    );

    let chunked = fs_storage(root.path(), &[("data_path", "chunks")]);
    let writer = chunked
        .open_write("/other.bin", WriteMode::Truncate)
        .await
        .expect("open_write");
    assert!(writer.os_file().is_none());
}

/// Names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// An atomic upload (storage-fs's default) keeps the native fast path: its
/// `committed` sink names the temporary file for `splice`, nothing appears
/// under the final name until `finish`, which renames it into place. Dropped
/// without `finish`, the temporary file goes and the old content stays.
#[tokio::test]
async fn atomic_uploads_stream_and_commit_on_finish() {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = fs_storage(root.path(), &[]);

    let writer = head_then_spliced(&*storage, "/up.bin").await;
    let during = names_in(root.path());
    assert_eq!(during.len(), 1, "{during:?}");
    assert!(during[0].starts_with(".wasmftpd-upload."), "{during:?}");
    writer.finish().await.expect("finish");
    assert_eq!(names_in(root.path()), ["up.bin"]);
    assert_eq!(
        std::fs::read(root.path().join("up.bin")).expect("read"),
        b"head-spliced"
    );

    // Interrupted: dropped without `finish`.
    let mut writer = storage
        .open_write("/up.bin", WriteMode::Truncate)
        .await
        .expect("open_write again");
    writer
        .write(bytes::Bytes::from_static(b"partial"))
        .await
        .expect("write");
    drop(writer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while names_in(root.path()).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "temporary file left: {:?}",
            names_in(root.path())
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(names_in(root.path()), ["up.bin"]);
    assert_eq!(
        std::fs::read(root.path().join("up.bin")).expect("read"),
        b"head-spliced"
    );
}
