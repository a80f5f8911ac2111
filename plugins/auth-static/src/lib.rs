//! `auth-static`: accounts listed in the plugin's own configuration.
//!
//! The site's `auth.config` table reaches us through `wasi:config/store`, flattened
//! by the host to string keys:
//!
//! | key | meaning |
//! |---|---|
//! | `users.<name>.password` | password hash: argon2id PHC (`$argon2id$…`), bcrypt (`$2b$`, `$2a$`, `$2y$`) or SHA-crypt (`$6$`, `$5$`) |
//! | `users.<name>.home` | home directory, an absolute virtual path (default `/`) |
//! | `users.<name>.permissions` | comma list of `read`, `write`, `append`, `delete`, `rename`, `make-dir`, `remove-dir`, `list`, `set-time`; or `all` (default) or `read-only` |
//! | `users.<name>.disabled` | `true` refuses the account with `disabled` |
//! | `users.<name>.limits.<limit>` | `quota_bytes`, `quota_files`, `upload_bytes_per_second`, `download_bytes_per_second` (numbers or sizes like `"10GiB"`), `max_sessions` |
//! | `users.<name>.attributes.<key>` | free-form text handed to the storage session (e.g. a per-user root) |
//! | `anonymous` | `true` lets `anonymous` and `ftp` in with any password, read-only |
//! | `anonymous_home` | home of anonymous sessions (default `/`) |
//!
//! Hashes are checked by the host (`wasmftpd:plugin/password`), natively and in
//! constant time. An unknown user costs the same check (against another
//! account's hash, result ignored) and a disabled one is checked before it is
//! refused, so neither the reply nor its timing tells which accounts exist. A password that is not one of the hash formats above is refused
//! (`unavailable`) so a plaintext password in a config never works by accident.
//! Passwords are never logged; configuration problems are reported on stderr,
//! which the host sends to its log.
//!
//! The host creates a fresh instance per login, so everything is read from the
//! config on each call: there is no state to keep.

wit_bindgen::generate!({
    path: "../../wit",
    world: "wasmftpd:plugin/auth-plugin@0.2.0",
    generate_all,
});

use exports::wasmftpd::plugin::auth::{Account, Credentials, Guest, Refusal, RefusalReason};
use plugin_common::Limits;
use wasi::config::store;
use wasmftpd::plugin::password::{self, HashError};
use wasmftpd::plugin::types::{AccountLimits, Permissions};

struct AuthStatic;

export!(AuthStatic);

/// Shown to the client when the account's configuration is unusable. Says what
/// to do without revealing anything about the account.
const MISCONFIGURED: &str = "account misconfigured; see the server log";

impl Guest for AuthStatic {
    fn login(credentials: Credentials) -> Result<Account, Refusal> {
        let user = credentials.user;
        if is_anonymous_name(&user) && config_flag("anonymous")? {
            return Ok(Account {
                user,
                home: config("anonymous_home")?.unwrap_or_else(|| "/".into()),
                permissions: Permissions::READ | Permissions::LIST_DIR,
                limits: no_limits(),
                attributes: Vec::new(),
            });
        }

        let key = |field: &str| format!("users.{user}.{field}");
        let Some(stored) = config(&key("password"))? else {
            // Unknown user: spend the time a wrong password takes, so the
            // answer's timing does not tell which accounts exist.
            let _ = verify(&credentials.password, &stand_in_hash()?);
            return Err(refuse(RefusalReason::BadCredentials));
        };
        match verify(&credentials.password, &stored) {
            Verdict::Match => {}
            Verdict::Mismatch => return Err(refuse(RefusalReason::BadCredentials)),
            Verdict::NotAHash => {
                eprintln!(
                    "error: users.{user}.password is not a password hash (argon2id, bcrypt or \
                     SHA-512 crypt); plaintext passwords are refused. Create a hash with \
                     `wasmftpd hash-password`."
                );
                return Err(Refusal {
                    reason: RefusalReason::Unavailable,
                    message: Some(
                        "account misconfigured: its password must be a hash made with \
                         `wasmftpd hash-password`"
                            .into(),
                    ),
                });
            }
            Verdict::Malformed(why) => {
                eprintln!("error: users.{user}.password is not a valid hash: {why}");
                return Err(unavailable());
            }
        }

        // Checked after the password so that only someone who knows it learns
        // that the account exists but is disabled.
        if config_flag(&key("disabled"))? {
            return Err(refuse(RefusalReason::Disabled));
        }

        let home = config(&key("home"))?.unwrap_or_else(|| "/".into());
        if !home.starts_with('/') {
            eprintln!("error: users.{user}.home must be an absolute virtual path");
            return Err(unavailable());
        }
        let permissions = match config(&key("permissions"))? {
            None => Permissions::all(),
            Some(list) => plugin_common::parse_permissions(list.split(','))
                .map(Permissions::from_bits_truncate)
                .map_err(|word| {
                    eprintln!("error: users.{user}.permissions: unknown permission `{word}`");
                    unavailable()
                })?,
        };
        let (limits, attributes) = limits_and_attributes(&user)?;
        Ok(Account {
            user,
            home,
            permissions,
            limits: AccountLimits {
                quota_bytes: limits.quota_bytes,
                quota_files: limits.quota_files,
                upload_bytes_per_second: limits.upload_bytes_per_second,
                download_bytes_per_second: limits.download_bytes_per_second,
                max_sessions: limits.max_sessions,
            },
            attributes,
        })
    }
}

fn is_anonymous_name(user: &str) -> bool {
    user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp")
}

fn refuse(reason: RefusalReason) -> Refusal {
    Refusal {
        reason,
        message: None,
    }
}

fn unavailable() -> Refusal {
    Refusal {
        reason: RefusalReason::Unavailable,
        message: Some(MISCONFIGURED.into()),
    }
}

/// One config value; a failing config store makes the login `unavailable`.
fn config(key: &str) -> Result<Option<String>, Refusal> {
    store::get(key).map_err(|e| {
        let why = match e {
            store::Error::Upstream(m) | store::Error::Io(m) => m,
        };
        eprintln!("error: reading config key {key}: {why}");
        unavailable()
    })
}

/// A boolean config value: only `true` (any case) is true, so a typo fails closed
/// for `anonymous` and open for `disabled`, which the config check should catch.
fn config_flag(key: &str) -> Result<bool, Refusal> {
    Ok(config(key)?.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")))
}

/// `users.<user>.limits.<name>` and `users.<user>.attributes.<key>`. The
/// config store has no prefix lookup, so this reads all of it: fine for the
/// user lists a config file holds (a large directory belongs in `auth-http`
/// or a plugin of its own). An unknown limit name is a configuration error.
fn limits_and_attributes(user: &str) -> Result<(Limits, Vec<(String, String)>), Refusal> {
    let limits_prefix = format!("users.{user}.limits.");
    let attributes_prefix = format!("users.{user}.attributes.");
    let all = store::get_all().map_err(|e| {
        let (store::Error::Upstream(why) | store::Error::Io(why)) = e;
        eprintln!("error: reading the config: {why}");
        unavailable()
    })?;
    let mut limits = Limits::default();
    let mut attributes = Vec::new();
    for (key, value) in all {
        if let Some(name) = key.strip_prefix(&limits_prefix) {
            limits.set(name, &value).map_err(|why| {
                eprintln!("error: users.{user}.limits: {why}");
                unavailable()
            })?;
        } else if let Some(name) = key.strip_prefix(&attributes_prefix) {
            attributes.push((name.to_string(), value));
        }
    }
    Ok((limits, attributes))
}

/// A hash of the kind and cost this site's accounts use: the first
/// configured account's own (the result is ignored, so which one does not
/// matter), or, with no accounts, one made by `wasmftpd hash-password` (its
/// password was random and is not kept).
fn stand_in_hash() -> Result<String, Refusal> {
    const DEFAULT_COST: &str = "$argon2id$v=19$m=19456,t=2,p=1$vU4oCMc/IPMhOuCGO4351g$MqA4q8jgKXQ+DW6TL7f0I/0FF1r2RtHwrEJjX8AA7GY";
    let all = store::get_all().map_err(|e| {
        let (store::Error::Upstream(why) | store::Error::Io(why)) = e;
        eprintln!("error: reading the config: {why}");
        unavailable()
    })?;
    let first = all
        .into_iter()
        .filter(|(key, _)| key.starts_with("users.") && key.ends_with(".password"))
        .min_by(|a, b| a.0.cmp(&b.0));
    Ok(first.map_or_else(|| DEFAULT_COST.to_string(), |(_, hash)| hash))
}

enum Verdict {
    Match,
    Mismatch,
    /// The stored value is not in any format we know (e.g. plaintext).
    NotAHash,
    /// It looks like a known format but cannot be parsed.
    Malformed(String),
}

fn verify(password: &str, stored: &str) -> Verdict {
    match password::verify(stored.trim(), password) {
        Ok(true) => Verdict::Match,
        Ok(false) => Verdict::Mismatch,
        Err(HashError::UnknownFormat) => Verdict::NotAHash,
        Err(HashError::Malformed(why) | HashError::TooCostly(why)) => Verdict::Malformed(why),
    }
}

fn no_limits() -> AccountLimits {
    AccountLimits {
        quota_bytes: None,
        quota_files: None,
        upload_bytes_per_second: None,
        download_bytes_per_second: None,
        max_sessions: None,
    }
}
