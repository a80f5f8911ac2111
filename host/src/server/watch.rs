//! What makes the server reload or stop: SIGHUP and changes to the config files,
//! plugin files or TLS certificate files (watched with `notify`, debounced), and
//! Ctrl-C / SIGTERM.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

use crate::config::Config;
use crate::plugin::PluginSource;

/// Editors save in bursts (write temp, rename, chmod); wait this long after the
/// last event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// A stream of reload reasons.
pub struct Triggers {
    events: mpsc::UnboundedReceiver<()>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    /// Kept alive for as long as we want events.
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Watches the config (a file, or a directory of site files) and every plugin
/// and certificate file it names. Watching the parent directories, not the files, survives
/// editors that save by renaming a new file over the old one.
pub fn reload_triggers(config_path: &Path, config: &Config) -> anyhow::Result<Triggers> {
    let (tx, events) = mpsc::unbounded_channel();
    let config_path = config_path.to_path_buf();
    let is_dir = config_path.is_dir();
    let mut plugin_files: HashSet<PathBuf> = config
        .sites
        .iter()
        .flat_map(|s| [&s.auth.source, &s.storage.source])
        .filter_map(|source| match source {
            PluginSource::File(path) => Some(absolute(path)),
            PluginSource::Builtin(_) => None,
        })
        .collect();
    // A renewed certificate is served after the reload its files trigger.
    let tls = config.sites.iter().filter_map(|s| s.tls.as_ref());
    for settings in tls.chain(config.tls.as_ref()) {
        plugin_files.insert(absolute(&settings.certificate));
        plugin_files.insert(absolute(&settings.key));
    }
    let config_file = absolute(&config_path);

    let relevant = {
        let plugin_files = plugin_files.clone();
        let config_file = config_file.clone();
        move |path: &Path| {
            let path = absolute(path);
            if plugin_files.contains(&path) {
                return true;
            }
            if is_dir {
                path.parent() == Some(config_file.as_path())
                    && path.extension().is_some_and(|e| e == "toml")
            } else {
                path == config_file
            }
        }
    };
    let handler = move |result: notify::Result<notify::Event>| {
        if let Ok(event) = result
            && !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| relevant(p))
        {
            let _ = tx.send(());
        }
    };

    let watcher = match notify::recommended_watcher(handler) {
        Ok(mut watcher) => {
            let mut dirs: HashSet<PathBuf> = plugin_files
                .iter()
                .filter_map(|p| p.parent().map(Path::to_path_buf))
                .collect();
            dirs.insert(if is_dir {
                config_file.clone()
            } else {
                config_file
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            });
            for dir in dirs {
                if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    warn!(
                        "cannot watch {} for changes (SIGHUP still reloads): {e}",
                        dir.display()
                    );
                }
            }
            Some(watcher)
        }
        Err(e) => {
            warn!("cannot watch the config for changes (SIGHUP still reloads): {e}");
            None
        }
    };

    Ok(Triggers {
        events,
        #[cfg(unix)]
        hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        _watcher: watcher,
    })
}

impl Triggers {
    /// Waits for the next reason to reload.
    pub async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        let hangup = async {
            match &mut self.hangup {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            Some(()) = hangup => Some("SIGHUP"),
            Some(()) = self.events.recv() => {
                // Swallow the rest of the burst.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.events.recv()).await {}
                Some("files changed")
            }
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
