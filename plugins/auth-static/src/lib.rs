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
//! | `anonymous` | `true` lets `anonymous` and `ftp` in with any password, read-only |
//! | `anonymous_home` | home of anonymous sessions (default `/`) |
//!
//! A password that is not one of the hash formats above is refused (`unavailable`)
//! so a plaintext password in a config never works by accident. Passwords are never
//! logged; configuration problems are reported on stderr, which the host sends to
//! its log.
//!
//! The host creates a fresh instance per login, so everything is read from the
//! config on each call: there is no state to keep.

wit_bindgen::generate!({
    path: "../../wit",
    world: "wasmftpd:plugin/auth-plugin",
    generate_all,
});

use exports::wasmftpd::plugin::auth::{Account, Credentials, Guest, Refusal, RefusalReason};
use wasi::config::store;
use wasmftpd::plugin::types::Permissions;

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
            });
        }

        let key = |field: &str| format!("users.{user}.{field}");
        let Some(stored) = config(&key("password"))? else {
            return Err(refuse(RefusalReason::BadCredentials));
        };
        match verify(credentials.password.as_bytes(), &stored) {
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
            Some(list) => parse_permissions(&list).map_err(|word| {
                eprintln!("error: users.{user}.permissions: unknown permission `{word}`");
                unavailable()
            })?,
        };
        Ok(Account {
            user,
            home,
            permissions,
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

fn parse_permissions(list: &str) -> Result<Permissions, String> {
    let mut permissions = Permissions::empty();
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        permissions |= match word {
            "all" => Permissions::all(),
            "read-only" => Permissions::READ | Permissions::LIST_DIR,
            "read" => Permissions::READ,
            "write" => Permissions::WRITE,
            "append" => Permissions::APPEND,
            "delete" => Permissions::DELETE,
            "rename" => Permissions::RENAME,
            "make-dir" => Permissions::MAKE_DIR,
            "remove-dir" => Permissions::REMOVE_DIR,
            "list" => Permissions::LIST_DIR,
            "set-time" => Permissions::SET_TIME,
            other => return Err(other.to_string()),
        };
    }
    Ok(permissions)
}

enum Verdict {
    Match,
    Mismatch,
    /// The stored value is not in any format we know (e.g. plaintext).
    NotAHash,
    /// It looks like a known format but cannot be parsed.
    Malformed(String),
}

fn verify(password: &[u8], stored: &str) -> Verdict {
    use argon2::PasswordVerifier as _;
    let stored = stored.trim();
    if stored.starts_with("$argon2") {
        match argon2::Argon2::default().verify_password(password, stored) {
            Ok(()) => Verdict::Match,
            Err(argon2::password_hash::Error::PasswordInvalid) => Verdict::Mismatch,
            Err(e) => Verdict::Malformed(e.to_string()),
        }
    } else if ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        match bcrypt::verify(password, stored) {
            Ok(true) => Verdict::Match,
            Ok(false) => Verdict::Mismatch,
            Err(e) => Verdict::Malformed(e.to_string()),
        }
    } else if stored.starts_with("$6$") || stored.starts_with("$5$") {
        use sha_crypt::PasswordVerifier as _;
        match sha_crypt::ShaCrypt::default().verify_password(password, stored) {
            Ok(()) => Verdict::Match,
            Err(sha_crypt::password_hash::Error::PasswordInvalid) => Verdict::Mismatch,
            Err(e) => Verdict::Malformed(e.to_string()),
        }
    } else {
        Verdict::NotAHash
    }
}
