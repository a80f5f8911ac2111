//! `events-webhook`: POSTs each event as JSON to a URL.
//!
//! Body: `{"event": "login" | "login-failed" | "logout" | "upload" |
//! "download" | "delete" | "rename" | "mkdir" | "rmdir", "site", "user",
//! "client_address", "path", "target", "size", "duration_ms", "ok", "time"}`,
//! every key present (`null` where it does not apply), `time` in RFC 3339 UTC.
//!
//! A `2xx` answer delivers the event. A connection failure, a timeout, `429`
//! or a `5xx` is retried with doubling waits (100 ms, 200 ms, ...) while the
//! next attempt still fits in `budget`; any other answer fails the event at
//! once, and so does a request the host refused (the URL's origin is not in
//! `allowed_hosts`: asking again cannot change that). A failed event is
//! logged by the host and dropped.
//!
//! Config (the event table's `config`):
//!
//! | key | meaning |
//! |---|---|
//! | `url` | where to POST (its origin must be in the table's `allowed_hosts`) |
//! | `timeout` | per attempt (default `1s`) |
//! | `budget` | all attempts of one event together (default `4s`; keep it below the table's `call_timeout`, default `5s`) |
//! | `retries` | most attempts after the first (default `3`) |
//! | `headers.<Name>` | extra request headers, such as `headers.Authorization = "Bearer ..."` |

wit_bindgen::generate!({
    path: "../../wit",
    world: "wasmftpd:plugin/event-plugin@0.2.0",
    generate_all,
});

use std::time::{Duration, Instant, UNIX_EPOCH};

use exports::wasmftpd::plugin::events::{Event, EventKind, Guest};
use serde::Serialize;
use wasi::config::store;

struct EventsWebhook;

export!(EventsWebhook);

#[derive(Serialize)]
struct Body<'a> {
    event: &'static str,
    site: &'a str,
    user: &'a str,
    client_address: &'a str,
    path: Option<&'a str>,
    target: Option<&'a str>,
    size: Option<u64>,
    duration_ms: Option<u64>,
    ok: bool,
    time: String,
}

struct Settings {
    url: String,
    timeout: Duration,
    budget: Duration,
    retries: u32,
    headers: Vec<(String, String)>,
}

impl Guest for EventsWebhook {
    fn handle(event: Event) -> Result<(), String> {
        let started = Instant::now();
        let settings = settings()?;
        let body = serde_json::to_vec(&body(&event)).map_err(|e| e.to_string())?;
        let mut wait = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let failure = match wstd::runtime::block_on(post(&settings, body.clone())) {
                Ok(status) if (200..300).contains(&status) => return Ok(()),
                Ok(status) if status == 429 || status >= 500 => format!("answered {status}"),
                Ok(status) => return Err(format!("POST {} answered {status}", settings.url)),
                Err(Failure::Final(why)) => {
                    return Err(format!("POST {}: {why} (not retried)", settings.url));
                }
                Err(Failure::Transient(why)) => why,
            };
            attempt += 1;
            let next_end = started.elapsed() + wait + settings.timeout;
            if attempt > settings.retries || next_end > settings.budget {
                return Err(format!(
                    "POST {} failed after {attempt} attempt(s): {failure}",
                    settings.url
                ));
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
    }
}

fn body(event: &Event) -> Body<'_> {
    let time = UNIX_EPOCH
        + Duration::new(
            u64::try_from(event.time.seconds).unwrap_or(0),
            event.time.nanoseconds.min(999_999_999),
        );
    Body {
        event: match event.kind {
            EventKind::Login => "login",
            EventKind::LoginFailed => "login-failed",
            EventKind::Logout => "logout",
            EventKind::Upload => "upload",
            EventKind::Download => "download",
            EventKind::Delete => "delete",
            EventKind::Rename => "rename",
            EventKind::Mkdir => "mkdir",
            EventKind::Rmdir => "rmdir",
        },
        site: &event.site,
        user: &event.user,
        client_address: &event.client_address,
        path: event.path.as_deref(),
        target: event.target.as_deref(),
        size: event.size,
        duration_ms: event.duration_ms,
        ok: event.ok,
        time: humantime::format_rfc3339_millis(time).to_string(),
    }
}

fn settings() -> Result<Settings, String> {
    let all = store::get_all().map_err(|e| {
        let (store::Error::Upstream(why) | store::Error::Io(why)) = e;
        format!("reading the config: {why}")
    })?;
    let get = |key: &str| all.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let duration = |key: &str, default: &str| {
        plugin_common::parse_duration(get(key).unwrap_or(default))
            .map_err(|why| format!("config key `{key}`: {why}"))
    };
    Ok(Settings {
        url: get("url").ok_or("config key `url` is missing")?.to_string(),
        timeout: duration("timeout", "1s")?,
        budget: duration("budget", "4s")?,
        retries: match get("retries") {
            None => 3,
            Some(n) => n
                .trim()
                .parse()
                .map_err(|_| format!("config key `retries`: `{n}` is not a number"))?,
        },
        headers: all
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("headers.")?.to_string(), v.clone())))
            .collect(),
    })
}

/// Why an attempt failed.
enum Failure {
    /// Another attempt may succeed (connection refused, timeout, reset).
    Transient(String),
    /// Another attempt would fail the same way: the host refused the request.
    Final(String),
}

/// Sorts a failed request. The host refuses a request to an origin outside
/// `allowed_hosts` with `internal-error("request to ORIGIN denied: ...")`
/// (the standard `HTTP-request-denied` carries no text to name the origin),
/// and another host may use the standard code: both are final.
fn failure(error: wstd::http::Error) -> Failure {
    use wstd::http::ErrorCode;
    match error.downcast_ref::<ErrorCode>() {
        Some(ErrorCode::HttpRequestDenied) => Failure::Final("request denied by the host".into()),
        Some(ErrorCode::InternalError(Some(why)))
            if why.starts_with("request to ") && why.contains(" denied: ") =>
        {
            Failure::Final(why.clone())
        }
        _ => Failure::Transient(format!("{error:?}")),
    }
}

async fn post(settings: &Settings, body: Vec<u8>) -> Result<u16, Failure> {
    use wstd::http::{Body, Client, Request};
    // A Content-Length rather than a chunked body: simple services expect it.
    let mut request = Request::post(&settings.url)
        .header("content-type", "application/json")
        .header("content-length", body.len());
    for (name, value) in &settings.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Body::from(body))
        .map_err(|e| Failure::Final(e.to_string()))?;
    let mut client = Client::new();
    client.set_connect_timeout(settings.timeout);
    client.set_first_byte_timeout(settings.timeout);
    client.set_between_bytes_timeout(settings.timeout);
    let mut response = client.send(request).await.map_err(failure)?;
    // Read the answer so the connection ends cleanly; its content is ignored.
    let _ = response.body_mut().contents().await;
    Ok(response.status().as_u16())
}
