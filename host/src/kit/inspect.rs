//! `wasmftpd plugin inspect`: what a component is and what it could reach,
//! read from its type (wasmtime's `Component::component_type`) before anyone
//! grants it anything.
//!
//! The one place outside `crate::plugin` that touches wasmtime: it compiles the
//! component with a plain engine only to read its type, and never instantiates it.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Config, Engine};

/// The contract this server speaks: 0.2.0, and 0.1.0 through adapters.
const PACKAGE: &str = "wasmftpd:plugin";
const VERSIONS: [&str; 2] = ["0.2.0", "0.1.0"];

/// A human-readable description of the component in `bytes`.
pub fn describe(bytes: &[u8], with_functions: bool) -> anyhow::Result<String> {
    if bytes.get(..4) != Some(b"\0asm") {
        bail!("not WebAssembly (no `\\0asm` header)");
    }
    if bytes.get(6..8) == Some(&[0, 0]) {
        bail!(
            "a core WebAssembly module, not a component: wrap it with `wasm-tools component new`"
        );
    }
    let mut config = Config::new();
    config.concurrency_support(false);
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating an engine")?;
    let component = Component::new(&engine, bytes)
        .map_err(anyhow::Error::from)
        .context("compiling the component")?;
    let ty = component.component_type();

    let exports: Vec<(String, Vec<String>)> = ty
        .exports(&engine)
        .map(|(name, item)| (name.to_string(), functions(&engine, &item.ty)))
        .collect();
    let imports: Vec<(String, Vec<String>)> = ty
        .imports(&engine)
        .map(|(name, item)| (name.to_string(), functions(&engine, &item.ty)))
        .collect();

    let mut out = String::new();
    writeln!(
        out,
        "size:     {} bytes ({:.1} MiB)",
        bytes.len(),
        bytes.len() as f64 / (1 << 20) as f64
    )?;
    let worlds: Vec<(&str, &str)> = exports
        .iter()
        .filter_map(|(name, _)| {
            let (pkg, rest) = name.split_once('/')?;
            let (iface, version) = rest.split_once('@')?;
            (pkg == PACKAGE && matches!(iface, "auth" | "storage" | "events"))
                .then_some((iface, version))
        })
        .collect();
    match worlds.as_slice() {
        [] => writeln!(
            out,
            "world:    none: it exports none of {PACKAGE}/auth, /storage or /events, so it is not a plugin"
        )?,
        list => {
            for (iface, version) in list {
                let world = match *iface {
                    "auth" => "auth-plugin",
                    "storage" => "storage-plugin",
                    _ => "event-plugin",
                };
                let fit = if VERSIONS.contains(version) {
                    "this server speaks it".to_string()
                } else {
                    format!(
                        "this server speaks {} and will refuse it",
                        VERSIONS.join(" and ")
                    )
                };
                writeln!(
                    out,
                    "world:    {world} (exports {PACKAGE}/{iface}@{version})"
                )?;
                writeln!(out, "contract: {PACKAGE} {version} ({fit})")?;
            }
        }
    }
    writeln!(
        out,
        "imports:  what it could reach; the site's grants decide what it gets"
    )?;
    let width = imports
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    for (name, funcs) in &imports {
        writeln!(out, "  {name:width$}  {}", reach(name))?;
        if with_functions && !funcs.is_empty() {
            writeln!(out, "  {:width$}    uses: {}", "", funcs.join(", "))?;
        }
    }
    writeln!(out, "exports:")?;
    for (name, funcs) in &exports {
        let list = if funcs.is_empty() {
            String::new()
        } else {
            format!(": {}", funcs.join(", "))
        };
        writeln!(out, "  {name}{list}")?;
    }
    Ok(out)
}

/// The function names of an instance (interface) item, or of a bare function.
fn functions(engine: &Engine, item: &ComponentItem) -> Vec<String> {
    match item {
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
            .map(|(name, _)| name.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// What an import lets a plugin reach inside wasmftpd's sandbox.
fn reach(import: &str) -> &'static str {
    let iface = import.split('@').next().unwrap_or(import);
    match iface {
        "wasi:config/store" => "reads the plugin's `config` table of its site",
        "wasi:filesystem/preopens" => {
            "lists the directories the site grants in `dirs` (nothing else)"
        }
        "wasi:filesystem/types" => "files and directories inside the granted directories only",
        "wasi:io/streams" | "wasi:io/poll" | "wasi:io/error" => {
            "byte streams and waiting on them (no access by itself)"
        }
        "wasi:cli/stdout" | "wasi:cli/stderr" => {
            "writes to the server log, tagged with the site and plugin"
        }
        "wasi:cli/stdin" => "standard input: always empty",
        "wasi:cli/environment" => "environment variables and arguments: none are given",
        "wasi:cli/exit" => "exit: ends only its own instance (the call fails with 451)",
        i if i.starts_with("wasi:cli/terminal") => "terminal queries: there is no terminal",
        "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => "reads the time",
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
            "random numbers"
        }
        i if i.starts_with("wasi:sockets/") => {
            "network: the server grants plugins none (every socket call is refused)"
        }
        "wasmftpd:plugin/types" => "the contract's shared types (no functions)",
        "wasmftpd:plugin/password" => {
            "checks a password against a stored hash, natively (no access by itself)"
        }
        "wasmftpd:plugin/cache" => {
            "a key-value store shared by this plugin's instances on its site"
        }
        i if i.starts_with("wasi:http/") => {
            "outbound HTTP: only to the origins in the site's `allowed_hosts` (none by default)"
        }
        _ => "not provided by this server: the plugin will not load",
    }
}
