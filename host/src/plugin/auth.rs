//! [`Authenticator`] on top of an auth plugin. Each login gets a fresh instance
//! (~11 µs with the pooling allocator), so a plugin can keep no state between
//! logins and a failed call needs no clean-up: the instance is simply dropped.
//! A plugin built for contract 0.1.0 is called through its own bindings; its
//! accounts simply have no limits and no attributes.

use std::sync::Arc;

use async_trait::async_trait;
use wasmtime::Store;

use super::bindings::auth::exports::wasmftpd::plugin::auth as wit;
use super::bindings::auth::wasmftpd::plugin::types as wit_types;
use super::bindings::auth::{AuthPlugin, AuthPluginPre};
use super::bindings::v01::auth::exports::wasmftpd::plugin::auth as wit01;
use super::bindings::v01::auth::{AuthPlugin as AuthPlugin01, AuthPluginPre as AuthPluginPre01};
use super::engine::Loaded;
use super::instance::{ContractVersion, HostState, PluginContext};
use crate::backend::{Account, AccountLimits, AuthError, Authenticator, Credentials, Permissions};

/// At most this many attributes, each key and value at most this long, are
/// taken from an account; more is a plugin bug, reported as such.
pub(super) const MAX_ATTRIBUTES: usize = 64;
pub(super) const MAX_ATTRIBUTE_LEN: usize = 4096;

pub(super) struct WasmAuthenticator {
    context: Arc<PluginContext>,
    pre: Pre,
}

enum Pre {
    V01(AuthPluginPre01<HostState>),
    V02(AuthPluginPre<HostState>),
}

impl WasmAuthenticator {
    pub fn new(loaded: Loaded) -> anyhow::Result<Self> {
        let pre = match loaded.context.version {
            ContractVersion::V01 => Pre::V01(AuthPluginPre01::new(loaded.pre)?),
            ContractVersion::V02 => Pre::V02(AuthPluginPre::new(loaded.pre)?),
        };
        Ok(WasmAuthenticator {
            context: loaded.context,
            pre,
        })
    }

    async fn call(
        &self,
        store: &mut Store<HostState>,
        request: &wit::Credentials,
    ) -> wasmtime::Result<Result<Account, wit::Refusal>> {
        let context = &self.context;
        match &self.pre {
            Pre::V02(pre) => {
                context.arm(store);
                let plugin: AuthPlugin = pre.instantiate_async(&mut *store).await?;
                context.arm(store);
                let answer = plugin
                    .wasmftpd_plugin_auth()
                    .call_login(&mut *store, request)
                    .await?;
                Ok(answer.map(account))
            }
            Pre::V01(pre) => {
                context.arm(store);
                let plugin: AuthPlugin01 = pre.instantiate_async(&mut *store).await?;
                let request = wit01::Credentials {
                    user: request.user.clone(),
                    password: request.password.clone(),
                    client_address: request.client_address.clone(),
                    tls: request.tls,
                    site: request.site.clone(),
                };
                context.arm(store);
                let answer = plugin
                    .wasmftpd_plugin_auth()
                    .call_login(&mut *store, &request)
                    .await?;
                Ok(match answer {
                    Ok(a) => Ok(Account {
                        user: a.user,
                        home: a.home,
                        permissions: permissions(a.permissions),
                        ..Account::default()
                    }),
                    Err(r) => Err(wit::Refusal {
                        reason: match r.reason {
                            wit01::RefusalReason::BadCredentials => {
                                wit::RefusalReason::BadCredentials
                            }
                            wit01::RefusalReason::Disabled => wit::RefusalReason::Disabled,
                            wit01::RefusalReason::Unavailable => wit::RefusalReason::Unavailable,
                        },
                        message: r.message,
                    }),
                })
            }
        }
    }
}

#[async_trait]
impl Authenticator for WasmAuthenticator {
    async fn login(&self, credentials: &Credentials) -> Result<Account, AuthError> {
        let mut store = self.context.new_store().map_err(|e| {
            AuthError::PluginFailed(self.context.describe_failure("instantiate", e))
        })?;
        let request = wit::Credentials {
            user: credentials.user.clone(),
            password: credentials.password.clone(),
            client_address: credentials.client_ip.to_string(),
            tls: credentials.tls,
            site: credentials.site.clone(),
        };
        let deadline = store.data().deadline.clone();
        let result = self
            .context
            .bounded(&deadline, self.call(&mut store, &request))
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
            Ok(account) => check_attributes(account).map_err(|why| {
                AuthError::PluginFailed(
                    self.context.describe_failure("login", anyhow::anyhow!(why)),
                )
            }),
            Err(refusal) => Err(match refusal.reason {
                wit::RefusalReason::BadCredentials => AuthError::BadCredentials(refusal.message),
                wit::RefusalReason::Disabled => AuthError::Disabled(refusal.message),
                wit::RefusalReason::Unavailable => AuthError::Unavailable(refusal.message),
            }),
        }
    }
}

fn account(a: wit::Account) -> Account {
    Account {
        user: a.user,
        home: a.home,
        permissions: permissions(a.permissions),
        limits: AccountLimits {
            quota_bytes: a.limits.quota_bytes,
            quota_files: a.limits.quota_files,
            upload_bytes_per_second: a.limits.upload_bytes_per_second,
            download_bytes_per_second: a.limits.download_bytes_per_second,
            max_sessions: a.limits.max_sessions,
        },
        attributes: a.attributes,
    }
}

/// Attributes travel with every session; a plugin may not make them huge.
fn check_attributes(account: Account) -> Result<Account, String> {
    if account.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "returned {} attributes (at most {MAX_ATTRIBUTES})",
            account.attributes.len()
        ));
    }
    if let Some((key, _)) = account
        .attributes
        .iter()
        .find(|(k, v)| k.len() > MAX_ATTRIBUTE_LEN || v.len() > MAX_ATTRIBUTE_LEN)
    {
        return Err(format!(
            "returned attribute `{}` longer than {MAX_ATTRIBUTE_LEN} bytes",
            key.chars().take(64).collect::<String>()
        ));
    }
    Ok(account)
}

pub(super) fn permissions(wit: wit_types::Permissions) -> Permissions {
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

/// The reverse of [`permissions`], for the facts a storage session is told.
pub(super) fn wit_permissions(permissions: Permissions) -> wit_types::Permissions {
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
    .filter(|(_, p)| permissions.contains(*p))
    .fold(W::empty(), |all, (w, _)| all | w)
}
