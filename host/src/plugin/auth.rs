//! [`Authenticator`] on top of an auth plugin. Each login gets a fresh instance
//! (~11 µs with the pooling allocator), so a plugin can keep no state between
//! logins and a failed call needs no clean-up: the instance is simply dropped.

use std::sync::Arc;

use async_trait::async_trait;

use super::bindings::auth::exports::wasmftpd::plugin::auth as wit;
use super::bindings::auth::wasmftpd::plugin::types as wit_types;
use super::bindings::auth::{AuthPlugin, AuthPluginPre};
use super::engine::Loaded;
use super::instance::{HostState, PluginContext};
use crate::backend::{Account, AuthError, Authenticator, Credentials, Permissions};

pub(super) struct WasmAuthenticator {
    context: Arc<PluginContext>,
    pre: AuthPluginPre<HostState>,
}

impl WasmAuthenticator {
    pub fn new(loaded: Loaded) -> anyhow::Result<Self> {
        Ok(WasmAuthenticator {
            context: loaded.context,
            pre: AuthPluginPre::new(loaded.pre)?,
        })
    }
}

#[async_trait]
impl Authenticator for WasmAuthenticator {
    async fn login(&self, credentials: &Credentials) -> Result<Account, AuthError> {
        let failed =
            |e: wasmtime::Error| AuthError::PluginFailed(self.context.describe_failure("login", e));
        let mut store = self.context.new_store().map_err(|e| {
            AuthError::PluginFailed(self.context.describe_failure("instantiate", e))
        })?;
        self.context.arm(&mut store);
        let plugin: AuthPlugin = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(failed)?;
        let request = wit::Credentials {
            user: credentials.user.clone(),
            password: credentials.password.clone(),
            client_address: credentials.client_ip.to_string(),
            tls: credentials.tls,
            site: credentials.site.clone(),
        };
        self.context.arm(&mut store);
        let result = plugin
            .wasmftpd_plugin_auth()
            .call_login(&mut store, &request)
            .await;
        let answer = match result {
            Ok(answer) => {
                self.context.record_call(store.data(), "login", None);
                answer
            }
            Err(e) => {
                let e: anyhow::Error = e.into();
                self.context.record_call(store.data(), "login", Some(&e));
                return Err(AuthError::PluginFailed(
                    self.context.describe_failure("login", e),
                ));
            }
        };
        match answer {
            Ok(account) => Ok(Account {
                user: account.user,
                home: account.home,
                permissions: permissions(account.permissions),
            }),
            Err(refusal) => Err(match refusal.reason {
                wit::RefusalReason::BadCredentials => AuthError::BadCredentials(refusal.message),
                wit::RefusalReason::Disabled => AuthError::Disabled(refusal.message),
                wit::RefusalReason::Unavailable => AuthError::Unavailable(refusal.message),
            }),
        }
    }
}

fn permissions(wit: wit_types::Permissions) -> Permissions {
    use wit_types::Permissions as W;
    [
        (W::READ, Permissions::READ),
        (W::WRITE, Permissions::WRITE),
        (W::APPEND, Permissions::APPEND),
        (W::DELETE, Permissions::DELETE),
        (W::RENAME, Permissions::RENAME),
        (W::MAKE_DIR, Permissions::MAKE_DIR),
        (W::REMOVE_DIR, Permissions::REMOVE_DIR),
        (W::LIST_DIR, Permissions::LIST),
        (W::SET_TIME, Permissions::SET_TIME),
    ]
    .into_iter()
    .filter(|(w, _)| wit.contains(*w))
    .fold(Permissions::empty(), |all, (_, p)| all | p)
}
