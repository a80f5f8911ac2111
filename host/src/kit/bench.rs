//! `wasmftpd plugin bench`: the figures `docs/benchmarks.md` records per
//! plugin: component size, cold compile time, cached load time, instantiation,
//! and time per login (auth) or the throughput of a large read (storage).
//! Measured through the same runtime and traits the server uses.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{BenchArgs, Kind, Loaded, async_runtime, kit_facts};
use crate::backend::Credentials;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let name = args
        .plugin
        .storage
        .clone()
        .or(args.plugin.auth.clone())
        .unwrap_or_default();
    let size = match name.strip_prefix("builtin:") {
        Some(_) => "embedded".to_string(),
        None => {
            let bytes = std::fs::metadata(&name)
                .with_context(|| format!("reading {name}"))?
                .len();
            format!("{bytes} bytes ({:.1} MiB)", bytes as f64 / (1 << 20) as f64)
        }
    };
    println!("plugin:             {name}");
    println!("component size:     {size}");

    let cold = Loaded::new(&args.plugin, false)?;
    println!("cold compile:       {}", ms(cold.load_time));
    drop(cold);

    // A private cache, so the second load is a hit whatever the user's cache holds.
    let cache = super::fresh_temp_dir()?;
    let mut cached_args = args.plugin.clone();
    cached_args.cache_dir = Some(cache.clone());
    drop(Loaded::new(&cached_args, true)?);
    let plugin = Loaded::new(&cached_args, true)?;
    let _ = std::fs::remove_dir_all(&cache);
    println!("cached load:        {}", ms(plugin.load_time));

    let tokio = async_runtime()?;
    match &plugin.kind {
        Kind::Events(_) => {
            println!(
                "(no further figures for event plugins: `plugin test --events` times each event)"
            );
        }
        Kind::Auth(auth) => {
            let Some((user, password)) = args.login.as_deref().and_then(|l| l.split_once(':'))
            else {
                bail!("auth bench needs --login USER:PASSWORD (an account that logs in)");
            };
            let credentials = Credentials {
                user: user.into(),
                password: password.into(),
                client_ip: "127.0.0.1".parse().context("loopback")?,
                tls: false,
                site: "bench".into(),
            };
            tokio.block_on(async {
                // The first login pays for lazily initialised state; time the rest.
                auth.login(&credentials)
                    .await
                    .map_err(|e| anyhow::anyhow!("login failed: {e}"))?;
                let n = args.logins.max(1);
                let started = Instant::now();
                for _ in 0..n {
                    auth.login(&credentials)
                        .await
                        .map_err(|e| anyhow::anyhow!("login failed: {e}"))?;
                }
                let each = started.elapsed() / n;
                // An empty user is refused before any hashing by the example
                // plugins: this is the cost of a fresh instance plus one call.
                let empty = Credentials {
                    user: String::new(),
                    password: String::new(),
                    ..credentials.clone()
                };
                let started = Instant::now();
                for _ in 0..n {
                    let _ = auth.login(&empty).await;
                }
                let bare = started.elapsed() / n;
                println!("instantiate + refuse an empty user: {}", ms(bare));
                println!(
                    "login (instantiate + check): {} each, {:.0}/s on one core",
                    ms(each),
                    1.0 / each.as_secs_f64()
                );
                anyhow::Ok(())
            })?;
        }
        Kind::Storage(provider) => {
            let root = plugin
                .grants
                .iter()
                .find(|g| g.guest == "/")
                .map(|g| g.host.clone())
                .context("storage bench needs the plugin's `/` on a directory it writes the test file to")?;
            let len = args.read_mib << 20;
            write_file(&root.join("bench-read.bin"), len)?;
            tokio.block_on(async {
                // Instantiation: a new session's first call minus a warm call.
                let sessions = 20u32;
                let mut first = Duration::ZERO;
                for _ in 0..sessions {
                    let session = provider.open_session(&kit_facts());
                    let started = Instant::now();
                    session
                        .stat("/")
                        .await
                        .map_err(|e| anyhow::anyhow!("stat: {e}"))?;
                    first += started.elapsed();
                }
                let session = provider.open_session(&kit_facts());
                session
                    .stat("/")
                    .await
                    .map_err(|e| anyhow::anyhow!("stat: {e}"))?;
                let started = Instant::now();
                for _ in 0..sessions {
                    session
                        .stat("/")
                        .await
                        .map_err(|e| anyhow::anyhow!("stat: {e}"))?;
                }
                let warm = started.elapsed() / sessions;
                let first = first / sessions;
                println!(
                    "first call of a session: {} (instantiation ~{}, a warm stat {})",
                    ms(first),
                    ms(first.saturating_sub(warm)),
                    ms(warm)
                );

                let mut best = Duration::MAX;
                for _ in 0..3 {
                    let started = Instant::now();
                    let mut reader = session
                        .open_read("/bench-read.bin", 0)
                        .await
                        .map_err(|e| anyhow::anyhow!("open-read: {e}"))?;
                    let mut total = 0u64;
                    loop {
                        let chunk = reader
                            .read(256 << 10)
                            .await
                            .map_err(|e| anyhow::anyhow!("read: {e}"))?;
                        if chunk.is_empty() {
                            break;
                        }
                        total += chunk.len() as u64;
                    }
                    if total != len {
                        bail!("read {total} bytes of {len}");
                    }
                    best = best.min(started.elapsed());
                }
                println!(
                    "read {} MiB (256 KiB chunks, best of 3): {}, {:.0} MB/s",
                    args.read_mib,
                    ms(best),
                    len as f64 / best.as_secs_f64() / 1e6
                );
                anyhow::Ok(())
            })?;
            let _ = std::fs::remove_file(root.join("bench-read.bin"));
        }
    }
    Ok(())
}

fn write_file(path: &std::path::Path, len: u64) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let block = super::storage::pattern(1 << 20, 7);
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}
