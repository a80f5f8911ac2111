//! Plugin runtime figures, printed rather than asserted (numbers depend on the
//! machine and its load). Run with
//! `cargo bench -p wasmftpd --bench plugin` (add `-- --size-mib N` for a
//! smaller data file, `-- --only instantiation|data` for one part); results go
//! in docs/benchmarks.md, "Plugin runtime".
//!
//! - instantiation per session, for storage-fs and for a trivial auth plugin,
//!   and the resident memory an idle storage-fs session costs;
//! - auth-static logins with each password hash format;
//! - per-call overhead of a call that does nothing;
//! - a 1 GiB file written and read through storage-fs on both data paths,
//!   against plain `std::fs` on the same disk in the same run.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmftpd::backend::{
    Account, Credentials, Permissions, SessionFacts, Storage, StorageProvider, WriteMode,
};
use wasmftpd::plugin::{Grant, GrantMode, PluginRuntime, PluginSource, PluginSpec, RuntimeOptions};

/// The transfer size the protocol layer uses for each read and write.
const CHUNK: usize = 256 << 10;

/// Data-path measurements are repeated and the best kept.
const ROUNDS: usize = 5;

fn main() -> anyhow::Result<()> {
    let size_mib: u64 = match std::env::args().skip_while(|a| a != "--size-mib").nth(1) {
        Some(n) => n.parse()?,
        None => 1024,
    };
    // `--only instantiation|data` runs one part (e.g. under a profiler).
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-plugin-cache");
    let runtime = PluginRuntime::new(RuntimeOptions {
        cache_dir: Some(cache),
    })?;
    let dir = tempfile::tempdir_in(Path::new(env!("CARGO_TARGET_TMPDIR")))?;

    let storage_fs = |config: &[(&str, &str)]| {
        runtime.load_storage(spec(
            PluginSource::Builtin("storage-fs".into()),
            config,
            vec![Grant {
                host: dir.path().to_path_buf(),
                guest: "/data".into(),
                mode: GrantMode::ReadWrite,
            }],
        ))
    };
    let fs_stream = storage_fs(&[])?;
    let fs_chunks = storage_fs(&[("data_path", "chunks")])?;
    let limits = runtime.load_storage(spec(test_plugin(), &[], vec![]))?;
    let trivial_auth = runtime.load_auth(spec(test_plugin(), &[], vec![]))?;

    tokio.block_on(async {
        if run("instantiation") {
            println!("== instantiation (per session: new instance + first call)");
            let (per_session, rss) = sessions(&*fs_stream, "/").await;
            let steady = calls(&*fs_stream.open_session(&account()), "/").await;
            println!(
                "storage-fs: first call of a session {} (a later stat: {}), so instantiation ≈ {}",
                micros(per_session),
                micros(steady),
                micros(per_session.saturating_sub(steady))
            );
            println!(
                "storage-fs: resident memory per idle session {} KiB",
                rss >> 10
            );
            let (per_session, _) = sessions(&*limits, "/count").await;
            let steady = calls(&*limits.open_session(&account()), "/count").await;
            println!(
                "test-limits storage: first call {}, later call {}, instantiation ≈ {}",
                micros(per_session),
                micros(steady),
                micros(per_session.saturating_sub(steady))
            );
            let reused = churn(&*fs_stream, "/").await;
            println!(
                "storage-fs: short session in a reused slot (open, first call, close) {}",
                micros(reused)
            );
            let reused = churn(&*limits, "/count").await;
            println!(
                "test-limits storage: short session in a reused slot {}",
                micros(reused)
            );
            let n = 20_000;
            let started = Instant::now();
            for _ in 0..n {
                trivial_auth
                    .login(&credentials())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            println!(
                "trivial auth plugin: login (instance + call) {}",
                micros(started.elapsed() / n)
            );

            println!("\n== auth-static logins (password `correct horse`)");
            for (format, hash) in hashes() {
                let auth = runtime.load_auth(spec(
                    PluginSource::Builtin("auth-static".into()),
                    &[("users.bench.password", &hash)],
                    vec![],
                ))?;
                let mut credentials = credentials();
                credentials.password = "correct horse".into();
                let n = 20;
                let started = Instant::now();
                for _ in 0..n {
                    auth.login(&credentials)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                println!(
                    "{format:40} {:8.2} ms per login",
                    started.elapsed().as_secs_f64() * 1e3 / f64::from(n)
                );
            }

            println!("\n== per-call overhead (stat that does nothing, same instance)");
            println!("test-limits stat: {}", micros(steady));
        }
        if run("data") {
            println!("\n== {size_mib} MiB through storage-fs vs std::fs (GB/s, 10^9 bytes)");
            let bytes = size_mib << 20;
            let payload = Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            // Best of ROUNDS, each variant writing a fresh file and deleting it,
            // interleaved so that a busy neighbour hurts all of them alike.
            let mut best = [[Duration::MAX; 2]; 4];
            for _ in 0..ROUNDS {
                let path = dir.path().join("native.bin");
                let write = native_write(&path, &payload, bytes)?;
                let read = native_read(&path, CHUNK, false)?;
                let read_64k = native_read(&path, 64 << 10, true)?;
                std::fs::remove_file(&path)?;
                keep_best(&mut best[0], [write, read]);
                keep_best(&mut best[1], [write, read_64k]);
                for (i, provider) in [(2, &fs_stream), (3, &fs_chunks)] {
                    let storage = provider.open_session(&account());
                    let write = plugin_write(&*storage, &payload, bytes).await?;
                    let read = plugin_read(&*storage, bytes).await?;
                    storage.delete("/plugin.bin").await?;
                    keep_best(&mut best[i], [write, read]);
                }
            }
            let [native, native_64k, stream, chunks] = best;
            println!(
                "{:36} write {:6.2}  read {:6.2}",
                "std::fs (256 KiB buffer, reused)",
                gbps(bytes, native[0]),
                gbps(bytes, native[1])
            );
            println!(
                "{:36}              read {:6.2}",
                "std::fs (64 KiB, new buffer each)",
                gbps(bytes, native_64k[1])
            );
            for (name, [write, read]) in [
                ("storage-fs stream path", stream),
                ("storage-fs chunked path", chunks),
            ] {
                println!(
                    "{name:36} write {:6.2}  read {:6.2}   ({:.0} % / {:.0} % of native)",
                    gbps(bytes, write),
                    gbps(bytes, read),
                    100.0 * native[0].as_secs_f64() / write.as_secs_f64(),
                    100.0 * native[1].as_secs_f64() / read.as_secs_f64(),
                );
            }
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

fn spec(source: PluginSource, config: &[(&str, &str)], grants: Vec<Grant>) -> PluginSpec {
    PluginSpec {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        grants,
        ..PluginSpec::new("bench", source)
    }
}

fn test_plugin() -> PluginSource {
    PluginSource::File(Path::new(env!("WASMFTPD_TEST_PLUGINS")).join("test_limits.wasm"))
}

/// One hash per format auth-static accepts, with the usual cost settings.
fn hashes() -> Vec<(&'static str, String)> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand_core::OsRng);
    let argon = argon2::Argon2::default()
        .hash_password(b"correct horse", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default();
    vec![
        // `openssl passwd -6` (5,000 rounds, the default).
        ("SHA-512 crypt ($6$, 5000 rounds)", "$6$wasmftpdsalt$rDOd7q.V98t.X0Y5kwreL2gt6wHB0T.ZbPpHlwpDe71MqiXZn21H7naSY.CTyoXTDYCaecxrGQgXzMEkBJLLU0".into()),
        // python `bcrypt.hashpw(..., bcrypt.gensalt())` (cost 12, the default).
        ("bcrypt ($2b$, cost 12)", "$2b$12$bkkUgRECsA9gHztYuFJvPO.Sd25K6NM4HWU/hJIyGxmxKs6W7ppjC".into()),
        ("argon2id (m=19 MiB, t=2, p=1)", argon),
    ]
}

fn account() -> SessionFacts {
    let account = Account {
        user: "bench".into(),
        home: "/".into(),
        permissions: Permissions::all(),
        ..Account::default()
    };
    SessionFacts::new(
        "bench",
        &account,
        "/",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        false,
    )
}

fn credentials() -> Credentials {
    Credentials {
        user: "bench".into(),
        password: "x".into(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls: false,
        site: "bench".into(),
    }
}

/// Mean time of a session's first call (which instantiates), over many sessions.
/// Sessions are kept alive until the end, as idle sessions would be.
async fn sessions(provider: &dyn StorageProvider, path: &str) -> (Duration, u64) {
    let n = 5_000;
    let mut live: Vec<Arc<dyn Storage>> = Vec::with_capacity(n);
    // Warm up the pool's slots and caches first.
    for _ in 0..200 {
        let s = provider.open_session(&account());
        let _ = s.stat(path).await;
    }
    let rss_before = resident_bytes();
    let started = Instant::now();
    for _ in 0..n {
        let s = provider.open_session(&account());
        let _ = s.stat(path).await;
        live.push(s);
    }
    let took = started.elapsed() / n as u32;
    (took, resident_bytes().saturating_sub(rss_before) / n as u64)
}

/// This process's resident set size (Linux).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Mean time of a whole short session (open, first call, close), which reuses
/// the pool slot the previous session freed, as a server's churn does.
async fn churn(provider: &dyn StorageProvider, path: &str) -> Duration {
    let n = 20_000;
    for _ in 0..200 {
        let _ = provider.open_session(&account()).stat(path).await;
    }
    let started = Instant::now();
    for _ in 0..n {
        let _ = provider.open_session(&account()).stat(path).await;
    }
    started.elapsed() / n
}

/// Mean time of a call into an existing instance.
async fn calls(storage: &dyn Storage, path: &str) -> Duration {
    let n = 50_000;
    let _ = storage.stat(path).await;
    let started = Instant::now();
    for _ in 0..n {
        let _ = storage.stat(path).await;
    }
    started.elapsed() / n
}

fn native_write(path: &Path, payload: &[u8], bytes: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut file = std::fs::File::create(path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(payload.len() as u64) as usize;
        file.write_all(&payload[..n])?;
        left -= n as u64;
    }
    drop(file);
    Ok(started.elapsed())
}

/// Reads the file in `chunk`-sized reads, into one reused buffer or (as
/// wasmtime-wasi's file streams do) a fresh zeroed buffer per read.
fn native_read(path: &Path, chunk: usize, fresh: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; chunk];
    loop {
        if fresh {
            buf = vec![0u8; chunk];
        }
        if file.read(&mut buf)? == 0 {
            break;
        }
        std::hint::black_box(&buf);
    }
    Ok(started.elapsed())
}

fn keep_best(best: &mut [Duration; 2], new: [Duration; 2]) {
    for (b, n) in best.iter_mut().zip(new) {
        *b = (*b).min(n);
    }
}

async fn plugin_write(
    storage: &dyn Storage,
    payload: &Bytes,
    bytes: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut writer = storage
        .open_write("/plugin.bin", WriteMode::Truncate)
        .await?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(payload.len() as u64) as usize;
        writer.write(payload.slice(..n)).await?;
        left -= n as u64;
    }
    writer.finish().await?;
    Ok(started.elapsed())
}

async fn plugin_read(storage: &dyn Storage, bytes: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut reader = storage.open_read("/plugin.bin", 0).await?;
    let mut total = 0u64;
    loop {
        let chunk = reader.read(CHUNK).await?;
        if chunk.is_empty() {
            break;
        }
        total += chunk.len() as u64;
    }
    anyhow::ensure!(total == bytes, "read {total} bytes, expected {bytes}");
    Ok(started.elapsed())
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}
