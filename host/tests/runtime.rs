//! The plugin runtime against real components: the builtins (`auth-static`,
//! `storage-fs`) and the misbehaving `test-limits` plugin built by `build.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wasmftpd::backend::{
    Account, AuthError, Authenticator, Credentials, EntryKind, ErrorKind, Permissions, Storage,
    WriteMode,
};
use wasmftpd::plugin::{
    Grant, GrantMode, PluginLimits, PluginRuntime, PluginSource, PluginSpec, RuntimeOptions,
    builtin_names,
};

// ---------------------------------------------------------------- helpers

/// A runtime whose compile cache is shared by all tests of this binary, so
/// each component is compiled once per build rather than once per test.
fn runtime() -> PluginRuntime {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    PluginRuntime::new(RuntimeOptions {
        cache_dir: Some(cache),
    })
    .expect("runtime")
}

fn spec(source: PluginSource, config: &[(&str, &str)], grants: Vec<Grant>) -> PluginSpec {
    PluginSpec {
        site: "test".into(),
        source,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        grants,
        limits: PluginLimits::default(),
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
    }
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
    provider.open_session(&account())
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
    assert_eq!(builtin_names(), &["auth-static", "storage-fs"]);
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
    assert!(text.contains("wasmftpd:plugin/storage@0.1.0"), "{text}");
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

#[test]
fn compiled_components_are_cached_on_disk() {
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
    let listing = storage.list_dir("/").await.expect("list");
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
    let mut again = storage.list_dir("/").await.expect("list again");
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
    let mut listing = storage.list_dir("/docs").await.expect("list");
    listing.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = listing
        .iter()
        .map(|e| (e.name.as_str(), e.metadata.size))
        .collect();
    assert_eq!(names, [("one.txt", 1), ("two.txt", 2)]);
    let root_listing = storage.list_dir("/").await.expect("list root");
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
    assert!(storage.list_dir("/").await.expect("list").is_empty());
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
    let storage = provider.open_session(&account());
    assert_eq!(read_all(&*storage, "/in-b", 0).await, b"b");
}

#[tokio::test]
async fn storage_fs_without_a_grant_is_unavailable() {
    let provider = runtime()
        .load_storage(spec(builtin("storage-fs"), &[], vec![]))
        .expect("load");
    let err = provider
        .open_session(&account())
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
        let listing = storage.list_dir("/").await.expect("list");
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
    let storage = provider.open_session(&account());
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
    let storage = provider.open_session(&account());
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
        provider.open_session(&account()),
        provider.open_session(&account()),
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
    let storage = provider.open_session(&account());
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
    let storage = provider.open_session(&account());
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
        let mut listing = storage.list_dir("/").await.expect("list");
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
        let storage = provider.open_session(&account());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let mut listing = storage.list_dir("/").await.expect("list");
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
