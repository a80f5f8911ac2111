//! [`Authenticator`] on top of an auth plugin. By default each login gets a
//! fresh instance (~11 µs with the pooling allocator), so a plugin keeps no
//! state between logins and a failed call needs no clean-up: the instance is
//! simply dropped. A site may instead let finished logins hand their instance
//! to later ones (`reuse_instances`, [`WarmInstances`]): for an interpreter
//! inside a component (CPython, SpiderMonkey) a fresh instance costs
//! milliseconds of page faults and start-up code per login.
//! A plugin built for contract 0.1.0 is called through its own bindings; its
//! accounts simply have no limits and no attributes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Present when the site reuses instances.
    warm: Option<WarmInstances>,
}

enum Pre {
    V01(AuthPluginPre01<HostState>),
    V02(AuthPluginPre<HostState>),
}

/// An instantiated plugin, ready for `login`.
enum Instance {
    V01(AuthPlugin01),
    V02(AuthPlugin),
}

/// A store with its instance, between logins.
struct Warm {
    store: Store<HostState>,
    instance: Instance,
    logins: u32,
    idle_since: Instant,
}

/// Instances whose last login ended normally (an account or a refusal; a
/// trap, overrun or memory fault discards the instance), kept for later
/// logins of the same site. Bounded three ways so a site's warm instances
/// cannot pile up: at most [`WarmInstances::max_idle`] wait at once, each
/// serves at most [`MAX_LOGINS_PER_INSTANCE`] logins (whatever a plugin lets
/// grow between logins is dropped now and then), and one idle for
/// [`MAX_IDLE`] is dropped at the next login or return.
struct WarmInstances {
    idle: Mutex<Vec<Warm>>,
    max_idle: usize,
}

const MAX_LOGINS_PER_INSTANCE: u32 = 1_000;
const MAX_IDLE: Duration = Duration::from_secs(60);

impl WarmInstances {
    fn new() -> Self {
        // Logins in flight at once are bounded by the cores (the hash work
        // runs one per core): twice that many covers the ones between calls.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        WarmInstances {
            idle: Mutex::new(Vec::new()),
            max_idle: 2 * cores,
        }
    }

    /// The most recently used idle instance, if any.
    fn take(&self) -> Option<Warm> {
        let (warm, stale) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let stale = Self::drop_stale(&mut idle);
            (idle.pop(), stale)
        };
        // Stores are dropped outside the lock: freeing an instance takes time.
        drop(stale);
        warm
    }

    /// Keeps `warm` (whose `idle_since` is now) for a later login, if it may serve more.
    fn give_back(&self, mut warm: Warm) {
        warm.logins += 1;
        if warm.logins >= MAX_LOGINS_PER_INSTANCE {
            return;
        }
        let unwanted = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut unwanted = Self::drop_stale(&mut idle);
            if idle.len() < self.max_idle {
                idle.push(warm);
            } else {
                unwanted.push(warm);
            }
            unwanted
        };
        // Stores are dropped outside the lock: freeing an instance takes time.
        drop(unwanted);
    }

    /// Removes (and returns, to be dropped) instances idle for too long; the
    /// oldest are at the front.
    fn drop_stale(idle: &mut Vec<Warm>) -> Vec<Warm> {
        let fresh = idle
            .iter()
            .position(|w| w.idle_since.elapsed() < MAX_IDLE)
            .unwrap_or(idle.len());
        idle.drain(..fresh).collect()
    }
}

impl WasmAuthenticator {
    pub fn new(loaded: Loaded, reuse_instances: bool) -> anyhow::Result<Self> {
        let pre = match loaded.context.version {
            ContractVersion::V01 => Pre::V01(AuthPluginPre01::new(loaded.pre)?),
            ContractVersion::V02 => Pre::V02(AuthPluginPre::new(loaded.pre)?),
        };
        Ok(WasmAuthenticator {
            context: loaded.context,
            pre,
            warm: reuse_instances.then(WarmInstances::new),
        })
    }

    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        self.context.arm(store);
        Ok(match &self.pre {
            Pre::V02(pre) => Instance::V02(pre.instantiate_async(&mut *store).await?),
            Pre::V01(pre) => Instance::V01(pre.instantiate_async(&mut *store).await?),
        })
    }

    async fn call(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
        request: &wit::Credentials,
    ) -> wasmtime::Result<Result<Account, wit::Refusal>> {
        self.context.arm(store);
        match instance {
            Instance::V02(plugin) => {
                let answer = plugin
                    .wasmftpd_plugin_auth()
                    .call_login(&mut *store, request)
                    .await?;
                Ok(answer.map(account))
            }
            Instance::V01(plugin) => {
                let request = wit01::Credentials {
                    user: request.user.clone(),
                    password: request.password.clone(),
                    client_address: request.client_address.clone(),
                    tls: request.tls,
                    site: request.site.clone(),
                };
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
        // A warm instance if the site reuses them and one is idle, else a new
        // store, instantiated inside the bounded call.
        let (mut store, warm) = match self.warm.as_ref().and_then(WarmInstances::take) {
            Some(warm) => (warm.store, Some((warm.instance, warm.logins))),
            None => {
                let store = self.context.new_store().map_err(|e| {
                    AuthError::PluginFailed(self.context.describe_failure("instantiate", e))
                })?;
                (store, None)
            }
        };
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
            .bounded(&deadline, async {
                let (instance, logins) = match warm {
                    Some(warm) => warm,
                    None => (self.instantiate(&mut store).await?, 0),
                };
                let answer = self.call(&mut store, &instance, &request).await?;
                Ok((instance, logins, answer))
            })
            .await;
        let (instance, logins, answer) = match result {
            Ok(done) => {
                self.context.record_call(store.data(), "login", None);
                done
            }
            Err(e) => {
                let e: anyhow::Error = e.into();
                self.context.record_call(store.data(), "login", Some(&e));
                return Err(AuthError::PluginFailed(
                    self.context.describe_failure("login", e),
                ));
            }
        };
        let outcome = match answer {
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
        };
        // An account that breaks the contract costs the instance, as a trap
        // does (and as the log line says).
        let broke_contract = matches!(outcome, Err(AuthError::PluginFailed(_)));
        if let (Some(warm), false) = (&self.warm, broke_contract) {
            warm.give_back(Warm {
                store,
                instance,
                logins,
                idle_since: Instant::now(),
            });
        }
        outcome
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
