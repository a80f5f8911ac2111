//! The plugin author's tools behind `wasmftpd plugin …`:
//!
//! - `test`: a conformance battery against one plugin through the same runtime
//!   the server uses (`storage` and `auth` batteries, printed by `report`);
//! - `inspect`: which world a component implements and what it imports
//!   (`inspect`);
//! - `bench`: size, compile, instantiation and per-call costs (`bench`).
//!
//! The command-line types live here so `cli.rs` only names the subcommand.

mod auth;
mod bench;
mod events;
mod inspect;
mod report;
mod storage;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::backend::EventHandler;
use crate::backend::{Account, Authenticator, Permissions, SessionFacts, StorageProvider};
use crate::plugin::{
    AllowedHost, Grant, GrantMode, PluginLimits, PluginRuntime, PluginSource, PluginSpec,
    RuntimeOptions,
};
use report::Report;

pub use auth::{Expectation, Expected};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Run the conformance battery against one plugin; prints one line per check
    /// and `N passed, N failed`, and exits 1 if any check failed.
    Test(TestArgs),
    /// Say which world a component implements, its WIT version and what it imports.
    Inspect {
        /// The component (`.wasm`).
        file: String,
        /// Also list the functions it uses from each import.
        #[arg(long)]
        functions: bool,
    },
    /// Measure a plugin: size, compile time, instantiation, logins or read throughput.
    Bench(BenchArgs),
}

/// Which plugin, and what the site would give it.
#[derive(Args, Clone)]
#[command(group(clap::ArgGroup::new("plugin").required(true).args(["storage", "auth", "events"])))]
pub struct PluginArgs {
    /// A storage plugin: a component file or `builtin:NAME`.
    #[arg(long, value_name = "FILE.wasm")]
    pub storage: Option<String>,
    /// An auth plugin: a component file or `builtin:NAME`.
    #[arg(long, value_name = "FILE.wasm")]
    pub auth: Option<String>,
    /// An event plugin: a component file or `builtin:NAME`.
    #[arg(long, value_name = "FILE.wasm")]
    pub events: Option<String>,
    /// A configuration value, as the site's flattened `config` table would give it (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    pub config: Vec<(String, String)>,
    /// Grant a directory: the plugin sees HOSTDIR as GUEST (repeatable). A storage
    /// plugin with no `--dir` gets a fresh temporary directory as `/`.
    #[arg(long = "dir", value_name = "GUEST=HOSTDIR", value_parser = key_value)]
    pub dirs: Vec<(String, String)>,
    /// Let the plugin send HTTP requests to ORIGIN (`http://127.0.0.1:8333`),
    /// as a site's `allowed_hosts` does (repeatable).
    #[arg(long = "allow-host", value_name = "ORIGIN", value_parser = allowed_host)]
    pub allow_hosts: Vec<AllowedHost>,
    /// Per-call deadline, as a site's `call_timeout` (the server's default, so passing here means passing there).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub call_timeout: Duration,
    /// Where compiled components are cached (default: the server's cache directory).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Auth: reuse warm instances across logins, as a site's `reuse_instances = true`.
    #[arg(long)]
    pub reuse_instances: bool,
}

#[derive(Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub plugin: PluginArgs,
    // Help text as an attribute: rustdoc would read `[@ADDRESS]` as a link.
    #[arg(
        long,
        value_name = "USER:PASSWORD=OUTCOME",
        help = "An auth expectation: USER:PASSWORD=ok|open|refused|disabled|unavailable[@ADDRESS] \
                (repeatable). `ok` also checks that a wrong or empty password is refused; `open` \
                means any password is accepted (anonymous-style)"
    )]
    pub expect: Vec<Expectation>,
    /// The client address logins come from, unless an expectation names one.
    #[arg(long, default_value = "127.0.0.1")]
    pub client: IpAddr,
    /// Log in as over a TLS-protected control connection.
    #[arg(long)]
    pub tls: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub plugin: PluginArgs,
    /// Auth: the credentials to log in with, USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub login: Option<String>,
    /// Auth: how many logins to time.
    #[arg(long, default_value_t = 200)]
    pub logins: u32,
    /// Storage: the size of the file to read, in MiB.
    #[arg(long, default_value_t = 64)]
    pub read_mib: u64,
}

/// Runs `wasmftpd plugin …`.
pub fn run(command: PluginCommand) -> ExitCode {
    let result = match command {
        PluginCommand::Test(args) => test(args),
        PluginCommand::Inspect { file, functions } => inspect(&file, functions).map(|()| true),
        PluginCommand::Bench(args) => bench::run(args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the battery; `Ok(false)` when a check failed.
fn test(args: TestArgs) -> anyhow::Result<bool> {
    let tokio = async_runtime()?;
    let mut report = Report::new(std::io::stdout().lock());
    let plugin = Loaded::new(&args.plugin, true)?;
    report.info(&format!("{} ({})", plugin.name, plugin.describe_grants()));
    match &plugin.kind {
        Kind::Storage(provider) => {
            if !args.expect.is_empty() {
                bail!("--expect is for auth plugins");
            }
            let session = provider.open_session(&kit_facts());
            tokio.block_on(storage::run(session.as_ref(), &mut report));
        }
        Kind::Auth(authenticator) => {
            let settings = auth::AuthSettings {
                expectations: args.expect,
                client: args.client,
                tls: args.tls,
                site: "kit".into(),
            };
            tokio.block_on(auth::run(authenticator.as_ref(), &settings, &mut report));
        }
        Kind::Events(handler) => {
            if !args.expect.is_empty() {
                bail!("--expect is for auth plugins");
            }
            let timeout = args.plugin.call_timeout;
            tokio.block_on(events::run(handler.as_ref(), timeout, &mut report));
        }
    }
    let (_, failed) = report.finish();
    Ok(failed == 0)
}

fn inspect(file: &str, functions: bool) -> anyhow::Result<()> {
    let bytes = match file.strip_prefix("builtin:") {
        Some(_) => bail!("inspect a file; builtins are described in docs/configuration.md"),
        None => std::fs::read(file).with_context(|| format!("reading {file}"))?,
    };
    print!("{}", inspect::describe(&bytes, functions)?);
    Ok(())
}

/// The session a storage battery runs as: user `kit`, everything allowed,
/// home `/`, from 127.0.0.1, no limits or attributes.
fn kit_facts() -> SessionFacts {
    let account = Account {
        user: "kit".into(),
        home: "/".into(),
        permissions: Permissions::all(),
        ..Account::default()
    };
    SessionFacts::new("kit", &account, "/", IpAddr::from([127, 0, 0, 1]), false)
}

/// A loaded plugin and what it was given; removes its temporary directory on drop.
struct Loaded {
    name: String,
    kind: Kind,
    grants: Vec<Grant>,
    temp_dir: Option<PathBuf>,
    /// How long loading (compiling, or a cache hit) took.
    load_time: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum World {
    Storage,
    Auth,
    Events,
}

enum Kind {
    Storage(Arc<dyn StorageProvider>),
    Auth(Arc<dyn Authenticator>),
    Events(Arc<dyn EventHandler>),
}

impl Loaded {
    /// Loads the plugin `args` names. `cache`: false compiles from scratch.
    fn new(args: &PluginArgs, cache: bool) -> anyhow::Result<Self> {
        let (name, world) = match (&args.storage, &args.auth, &args.events) {
            (Some(s), None, None) => (s.clone(), World::Storage),
            (None, Some(a), None) => (a.clone(), World::Auth),
            (None, None, Some(e)) => (e.clone(), World::Events),
            _ => bail!("name exactly one of --storage, --auth and --events"),
        };
        let is_storage = world == World::Storage;
        let source = match name.strip_prefix("builtin:") {
            Some(builtin) => PluginSource::Builtin(builtin.into()),
            None => PluginSource::File(PathBuf::from(&name)),
        };
        let mut grants = Vec::new();
        for (guest, host) in &args.dirs {
            let host =
                std::path::absolute(host).with_context(|| format!("--dir {guest}={host}"))?;
            grants.push(Grant {
                host,
                guest: guest.clone(),
                mode: GrantMode::ReadWrite,
            });
        }
        let mut temp_dir = None;
        if grants.is_empty() && is_storage {
            let dir = fresh_temp_dir()?;
            grants.push(Grant {
                host: dir.clone(),
                guest: "/".into(),
                mode: GrantMode::ReadWrite,
            });
            temp_dir = Some(dir);
        }
        let spec = PluginSpec {
            config: args.config.clone(),
            grants: grants.clone(),
            allowed_hosts: args.allow_hosts.clone(),
            limits: PluginLimits {
                call_timeout: args.call_timeout,
                ..PluginLimits::default()
            },
            reuse_instances: args.reuse_instances,
            ..PluginSpec::new("kit", source)
        };
        let cache_dir = if cache {
            args.cache_dir.clone().or_else(default_cache_dir)
        } else {
            None
        };
        let runtime = PluginRuntime::new(RuntimeOptions { cache_dir })?;
        let started = Instant::now();
        let kind = match world {
            World::Storage => Kind::Storage(runtime.load_storage(spec)?),
            World::Auth => Kind::Auth(runtime.load_auth(spec)?),
            World::Events => Kind::Events(runtime.load_events(spec)?),
        };
        Ok(Loaded {
            name,
            kind,
            grants,
            temp_dir,
            load_time: started.elapsed(),
        })
    }

    fn describe_grants(&self) -> String {
        if self.grants.is_empty() {
            return "no directories granted".into();
        }
        let list: Vec<String> = self
            .grants
            .iter()
            .map(|g| {
                let temp = if Some(&g.host) == self.temp_dir.as_ref() {
                    " (fresh temporary directory)"
                } else {
                    ""
                };
                format!("{} = {}{temp}", g.guest, g.host.display())
            })
            .collect();
        format!("grants {}", list.join(", "))
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn fresh_temp_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("wasmftpd-kit-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The server's default cache location (`$XDG_CACHE_HOME/wasmftpd` or
/// `~/.cache/wasmftpd`), so the kit and the server share compiled plugins.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("wasmftpd"))
}

fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("`{text}`: expected KEY=VALUE")),
    }
}

fn allowed_host(text: &str) -> Result<AllowedHost, String> {
    AllowedHost::parse(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(key_value("a.b=c=d"), Ok(("a.b".into(), "c=d".into())));
        assert_eq!(key_value("k="), Ok(("k".into(), String::new())));
        assert!(key_value("=v").is_err());
        assert!(key_value("novalue").is_err());
    }
}
