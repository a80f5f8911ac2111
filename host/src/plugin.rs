//! WebAssembly plugin runtime. Stub until the runtime lands.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Authenticator, StorageProvider};

pub struct RuntimeOptions {
    pub cache_dir: Option<PathBuf>,
}
#[derive(Clone)]
pub struct PluginRuntime;
impl PluginRuntime {
    pub fn new(_opts: RuntimeOptions) -> anyhow::Result<Self> {
        Ok(PluginRuntime)
    }
    pub fn load_auth(&self, _spec: PluginSpec) -> anyhow::Result<Arc<dyn Authenticator>> {
        anyhow::bail!("plugin runtime not built yet")
    }
    pub fn load_storage(&self, _spec: PluginSpec) -> anyhow::Result<Arc<dyn StorageProvider>> {
        anyhow::bail!("plugin runtime not built yet")
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    Builtin(String),
    File(PathBuf),
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub host: PathBuf,
    pub guest: String,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    pub memory: u64,
    pub call_timeout: Duration,
}
impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory: 64 << 20,
            call_timeout: Duration::from_secs(5),
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    pub site: String,
    pub source: PluginSource,
    pub config: Vec<(String, String)>,
    pub grants: Vec<Grant>,
    pub limits: PluginLimits,
}
pub fn builtin_names() -> &'static [&'static str] {
    &["auth-static", "storage-fs"]
}
