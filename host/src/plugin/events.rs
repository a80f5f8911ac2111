//! [`EventHandler`] on top of an event plugin. One instance is kept and reused
//! for the plugin's events, which arrive one at a time from the site's queue
//! (`crate::events`); a call that traps, overruns its deadline or blocks
//! costs that event and the instance, and the next event gets a fresh one.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use tokio::sync::Mutex;
use wasmtime::Store;

use super::bindings::auth::wasmftpd::plugin::types as wit;
use super::bindings::events::exports::wasmftpd::plugin::events as api;
use super::bindings::events::{EventPlugin, EventPluginPre};
use super::engine::Loaded;
use super::instance::{HostState, PluginContext};
use crate::backend::{Event, EventHandler, EventKind};

pub(super) struct WasmEventHandler {
    context: Arc<PluginContext>,
    pre: EventPluginPre<HostState>,
    live: Mutex<Option<(Store<HostState>, EventPlugin)>>,
}

impl WasmEventHandler {
    pub fn new(loaded: Loaded) -> anyhow::Result<Self> {
        Ok(WasmEventHandler {
            pre: EventPluginPre::new(loaded.pre)?,
            context: loaded.context,
            live: Mutex::new(None),
        })
    }

    async fn instantiate(&self) -> Result<(Store<HostState>, EventPlugin), String> {
        let context = &self.context;
        let mut store = context
            .new_store()
            .map_err(|e| context.describe_failure("instantiate", e))?;
        context.arm(&mut store);
        let deadline = store.data().deadline.clone();
        let plugin = context
            .bounded(&deadline, self.pre.instantiate_async(&mut store))
            .await
            .map_err(|e| context.describe_failure("instantiate", e))?;
        Ok((store, plugin))
    }
}

#[async_trait]
impl EventHandler for WasmEventHandler {
    async fn handle(&self, event: &Event) -> Result<(), String> {
        let mut slot = self.live.lock().await;
        let (mut store, plugin) = match slot.take() {
            Some(live) => live,
            None => self.instantiate().await?,
        };
        let event = wit_event(event);
        self.context.arm(&mut store);
        let deadline = store.data().deadline.clone();
        let result = self
            .context
            .bounded(
                &deadline,
                plugin
                    .wasmftpd_plugin_events()
                    .call_handle(&mut store, &event),
            )
            .await;
        match result {
            Ok(answer) => {
                *slot = Some((store, plugin));
                answer
            }
            // The instance is dropped with `store`; the next event makes a new one.
            Err(e) => Err(self.context.describe_failure("handle", e)),
        }
    }
}

fn wit_event(event: &Event) -> api::Event {
    let since_epoch = event.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    api::Event {
        kind: match event.kind {
            EventKind::Login => api::EventKind::Login,
            EventKind::LoginFailed => api::EventKind::LoginFailed,
            EventKind::Logout => api::EventKind::Logout,
            EventKind::Upload => api::EventKind::Upload,
            EventKind::Download => api::EventKind::Download,
            EventKind::Delete => api::EventKind::Delete,
            EventKind::Rename => api::EventKind::Rename,
            EventKind::Mkdir => api::EventKind::Mkdir,
            EventKind::Rmdir => api::EventKind::Rmdir,
        },
        site: event.site.clone(),
        user: event.user.clone(),
        client_address: event.client_ip.to_string(),
        path: event.path.clone(),
        target: event.target.clone(),
        size: event.size,
        duration_ms: event
            .duration
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ok: event.ok,
        time: wit::Timestamp {
            seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
            nanoseconds: since_epoch.subsec_nanos(),
        },
    }
}
