//! On-disk cache of compiled components, so a restart (or a reload that keeps a
//! plugin) does not compile again: 49 ms for a small Rust component but seconds
//! for Python or JavaScript ones, and 10–25× more in a debug build.
//!
//! An entry is named by sha256 of the component's bytes plus a digest of
//! `Engine::precompile_compatibility_hash()` (wasmtime version, target, engine
//! settings), so a different binary or engine configuration never loads an
//! artifact it cannot run. Entries are written to a temporary file and renamed,
//! so a reader never sees half a file, even with several servers sharing the
//! directory.
//!
//! Loading an artifact runs native code from the cache directory: it must be
//! writable only by the server's user, like the binary itself.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Cache effectiveness, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from a cached artifact.
    pub hits: u64,
    /// Loads that compiled (and, with a cache directory, stored the result).
    pub misses: u64,
}

pub(super) struct ComponentCache {
    dir: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> anyhow::Result<Self> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("creating the plugin cache directory {}", dir.display())
            })?;
        }
        Ok(ComponentCache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The component for `bytes`, from the cache when possible.
    pub fn component(&self, engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
        let Some(dir) = &self.dir else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(Component::new(engine, bytes)?);
        };
        let path = dir.join(entry_name(engine, bytes));
        if path.is_file() {
            // SAFETY: the file is an artifact this code wrote with
            // `precompile_component` for an engine with the same compatibility
            // hash (it is in the name); see the module docs on who may write
            // the directory. wasmtime still checks the header and version.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %anyhow::Error::from(e),
                    "ignoring unusable cached plugin artifact"
                ),
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) = write_atomically(&path, &compiled) {
            // A read-only or full disk costs a recompile next time, nothing more.
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled plugin");
        }
        // SAFETY: `compiled` was produced just now by this engine.
        Ok(unsafe { Component::deserialize(engine, &compiled) }?)
    }
}

fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let content = Sha256::digest(bytes);
    let mut compat = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut compat);
    let compat = compat.0.finalize();
    format!("{}-{}.cwasm", hex(&content), hex(&compat[..8]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `Hash` output into sha256, which (unlike `DefaultHasher`) is the same
/// in every build, so the digest is stable across restarts.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile_in(dir)?;
    temp.1.write_all(data)?;
    temp.1.sync_all()?;
    std::fs::rename(&temp.0, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp.0);
    })
}

/// A new file beside the target with a name no other writer uses.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".tmp-{}-{n}.cwasm", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}
