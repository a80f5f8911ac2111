//! `auth-http`: asks an HTTP service whether a login is good.
//!
//! Each login POSTs `{"user", "password", "client_address", "tls", "site"}` as
//! JSON to `url`. The answer decides:
//!
//! | answer | login |
//! |---|---|
//! | `200` with a JSON account | logged in (or refused as `disabled` when it says `"disabled": true`) |
//! | `401`, `403` | refused: bad credentials (`530`) |
//! | anything else, no answer within `timeout`, a body that is not an account | refused: unavailable (`421`) |
//!
//! The account: `{"home": "/", "permissions": "all" | "read-only" | ["read", ...],
//! "disabled": false, "limits": {"quota_bytes": ..., "quota_files": ...,
//! "upload_bytes_per_second": ..., "download_bytes_per_second": ...,
//! "max_sessions": ...}, "attributes": {"key": "value"}}`; only `home` is
//! required (permissions default to `all`). Sizes may be numbers or text with
//! units (`"10GiB"`).
//!
//! Config (the site's `auth.config`):
//!
//! | key | meaning |
//! |---|---|
//! | `url` | where to POST (its origin must be in the section's `allowed_hosts`) |
//! | `timeout` | how long to wait for the answer (default `3s`; keep it below `call_timeout`) |
//! | `cache` | how long to remember an answer, keyed by user and a SHA-256 of site, user and password (default `0s`: never). Only good and bad-credential answers are kept, in the host's memory. Leave it off if the service's answer depends on the client address or TLS |
//! | `headers.<Name>` | extra request headers, such as `headers.Authorization = "Bearer ..."` |
//!
//! Problems are logged on stderr (which the host logs), never the password.

wit_bindgen::generate!({
    path: "../../wit",
    world: "wasmftpd:plugin/auth-plugin@0.2.0",
    generate_all,
});

use std::collections::BTreeMap;
use std::time::Duration;

use exports::wasmftpd::plugin::auth::{Account, Credentials, Guest, Refusal, RefusalReason};
use plugin_common::{LIMIT_NAMES, Limits};
use serde::{Deserialize, Serialize};
use wasi::config::store;
use wasmftpd::plugin::cache;
use wasmftpd::plugin::types::{AccountLimits, Permissions};

struct AuthHttp;

export!(AuthHttp);

/// What we send.
#[derive(Serialize)]
struct LoginRequest<'a> {
    user: &'a str,
    password: &'a str,
    client_address: &'a str,
    tls: bool,
    site: &'a str,
}

/// What a `200` carries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountAnswer {
    home: String,
    #[serde(default)]
    permissions: Option<PermissionsAnswer>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    limits: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PermissionsAnswer {
    Word(String),
    List(Vec<String>),
}

/// An answer worth remembering (`cache`), stored as JSON in the host's cache.
#[derive(Serialize, Deserialize)]
enum Cached {
    Account(serde_json::Value),
    BadCredentials,
}

struct Settings {
    url: String,
    timeout: Duration,
    cache: Duration,
    headers: Vec<(String, String)>,
}

impl Guest for AuthHttp {
    fn login(credentials: Credentials) -> Result<Account, Refusal> {
        let settings = settings()?;
        let key = (!settings.cache.is_zero()).then(|| cache_key(&credentials));
        if let Some(key) = &key
            && let Some(bytes) = cache::get(key)
            && let Ok(cached) = serde_json::from_slice::<Cached>(&bytes)
        {
            return decide(&credentials.user, cached);
        }
        let answer = ask(&settings, &credentials)?;
        if let Some(key) = &key
            && let Ok(bytes) = serde_json::to_vec(&answer)
        {
            let ttl = u32::try_from(settings.cache.as_millis()).unwrap_or(u32::MAX);
            cache::set(key, &bytes, ttl);
        }
        decide(&credentials.user, answer)
    }
}

fn settings() -> Result<Settings, Refusal> {
    let all = store::get_all().map_err(|e| {
        let (store::Error::Upstream(why) | store::Error::Io(why)) = e;
        misconfigured(&format!("reading the config: {why}"))
    })?;
    let get = |key: &str| all.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let url = get("url").ok_or_else(|| misconfigured("config key `url` is missing"))?;
    let duration = |key: &str, default: &str| {
        plugin_common::parse_duration(get(key).unwrap_or(default))
            .map_err(|why| misconfigured(&format!("config key `{key}`: {why}")))
    };
    Ok(Settings {
        url: url.to_string(),
        timeout: duration("timeout", "3s")?,
        cache: duration("cache", "0s")?,
        headers: all
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("headers.")?.to_string(), v.clone())))
            .collect(),
    })
}

fn misconfigured(why: &str) -> Refusal {
    eprintln!("error: {why}");
    Refusal {
        reason: RefusalReason::Unavailable,
        message: Some("authentication misconfigured; see the server log".into()),
    }
}

fn unavailable() -> Refusal {
    Refusal {
        reason: RefusalReason::Unavailable,
        message: Some("authentication service unavailable, try again later".into()),
    }
}

/// `auth-http:v1:<user>:<sha256(site NUL user NUL password)>`.
fn cache_key(credentials: &Credentials) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for part in [&credentials.site, &credentials.user, &credentials.password] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("auth-http:v1:{}:{hex}", credentials.user)
}

/// POSTs the credentials and sorts the answer.
fn ask(settings: &Settings, credentials: &Credentials) -> Result<Cached, Refusal> {
    let body = serde_json::to_vec(&LoginRequest {
        user: &credentials.user,
        password: &credentials.password,
        client_address: &credentials.client_address,
        tls: credentials.tls,
        site: &credentials.site,
    })
    .map_err(|e| misconfigured(&format!("encoding the request: {e}")))?;
    let (status, body) = wstd::runtime::block_on(post(settings, body)).map_err(|why| {
        eprintln!("error: POST {}: {why}", settings.url);
        unavailable()
    })?;
    match status {
        200 => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(value) => Ok(Cached::Account(value)),
            Err(e) => {
                eprintln!(
                    "error: POST {} answered 200 without JSON: {e}",
                    settings.url
                );
                Err(unavailable())
            }
        },
        401 | 403 => Ok(Cached::BadCredentials),
        other => {
            eprintln!("error: POST {} answered {other}", settings.url);
            Err(unavailable())
        }
    }
}

async fn post(settings: &Settings, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    use wstd::http::{Body, Client, Request};
    // A Content-Length rather than a chunked body: simple services expect it.
    let mut request = Request::post(&settings.url)
        .header("content-type", "application/json")
        .header("content-length", body.len());
    for (name, value) in &settings.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Body::from(body)).map_err(|e| e.to_string())?;
    let mut client = Client::new();
    client.set_connect_timeout(settings.timeout);
    client.set_first_byte_timeout(settings.timeout);
    client.set_between_bytes_timeout(settings.timeout);
    let response = client.send(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .contents()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_vec();
    Ok((status, body))
}

/// Turns an answer into the account (or refusal) the host gets.
fn decide(user: &str, answer: Cached) -> Result<Account, Refusal> {
    let value = match answer {
        Cached::BadCredentials => {
            return Err(Refusal {
                reason: RefusalReason::BadCredentials,
                message: None,
            });
        }
        Cached::Account(value) => value,
    };
    let account: AccountAnswer = serde_json::from_value(value).map_err(|e| {
        eprintln!("error: the service's account for {user} is not usable: {e}");
        unavailable()
    })?;
    if account.disabled {
        return Err(Refusal {
            reason: RefusalReason::Disabled,
            message: None,
        });
    }
    if !account.home.starts_with('/') {
        eprintln!("error: the service's home for {user} is not an absolute path");
        return Err(unavailable());
    }
    let permissions = match &account.permissions {
        None => Ok(plugin_common::permission::ALL),
        Some(PermissionsAnswer::Word(word)) => plugin_common::parse_permissions([word.as_str()]),
        Some(PermissionsAnswer::List(words)) => {
            plugin_common::parse_permissions(words.iter().map(String::as_str))
        }
    }
    .map_err(|word| {
        eprintln!("error: the service's permissions for {user} name `{word}`, unknown");
        unavailable()
    })?;
    let mut limits = Limits::default();
    for (name, value) in &account.limits {
        let text = match value {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        limits.set(name, &text).map_err(|why| {
            eprintln!(
                "error: the service's limits for {user}: {why} (known: {})",
                LIMIT_NAMES.join(", ")
            );
            unavailable()
        })?;
    }
    Ok(Account {
        user: user.to_string(),
        home: account.home,
        permissions: Permissions::from_bits_truncate(permissions),
        limits: AccountLimits {
            quota_bytes: limits.quota_bytes,
            quota_files: limits.quota_files,
            upload_bytes_per_second: limits.upload_bytes_per_second,
            download_bytes_per_second: limits.download_bytes_per_second,
            max_sessions: limits.max_sessions,
        },
        attributes: account.attributes.into_iter().collect(),
    })
}
