//! `test-limits`: a plugin that misbehaves on request, for the runtime's limit
//! tests. It exports `auth`, `storage` and `events`, so it loads as any kind.
//! Never embedded as a builtin.
//!
//! A user name (auth), path (storage) or the `behave` config key (events)
//! picks the behaviour:
//! - `loop` / `/loop`: spins forever (stopped by the call deadline);
//! - `alloc` / `/alloc`: allocates without bound (stopped by the memory limit);
//! - `trap` / `/trap`: panics, which traps;
//! - `/loop-mid-read`, `/alloc-mid-read`, `/trap-mid-read` (and `-mid-write`):
//!   a download (upload) that moves a few chunks, then misbehaves as above;
//! - `sleep` / `/sleep`: blocks in a host call (a clock wait) for an hour, so
//!   no wasm runs and only the host's own bound on the call can stop it;
//! - auth `http:<url>`: GETs the URL; a 2xx logs in, anything else (including
//!   a denied request) refuses with the error as the message;
//! - auth `many-attributes`: an account with more attributes than the host
//!   takes (a contract breach);
//! - anything else behaves. An account carries the attribute `logins`: how
//!   many logins this instance has served (1 in a fresh one). For storage, `stat` answers a file whose `size` is
//!   the number of calls this instance has served, so a test can see whether it
//!   talks to the same instance or a fresh one; `list-dir` lists the session's
//!   facts as names (`user=alice`, `attribute.root=x`, ...) in pages.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package wasmftpd:test-limits;

        world test-limits {
            include wasmftpd:plugin/auth-plugin@0.2.0;
            include wasmftpd:plugin/storage-plugin@0.2.0;
            include wasmftpd:plugin/event-plugin@0.2.0;
        }
    ",
    world: "wasmftpd:test-limits/test-limits",
    generate_all,
});

use std::cell::{Cell, RefCell};

use exports::wasmftpd::plugin::auth::{self, Account, Credentials, Refusal, RefusalReason};
use exports::wasmftpd::plugin::events::{self, Event};
use exports::wasmftpd::plugin::storage::{
    self, DirLister, GuestDirLister, GuestReader, GuestSession, GuestWriter, ReadSource, Reader,
    Session, WriteMode, WriteSink, Writer,
};
use wasmftpd::plugin::types::{
    AccountLimits, DirEntry, EntryKind, Error, ErrorCode, Metadata, Permissions, SessionFacts,
    Timestamp,
};

struct TestLimits;

export!(TestLimits);

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn misbehave(what: &str) {
    match what {
        "loop" => {
            // `black_box` keeps the optimizer from proving the loop has no effect.
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("asked to trap"),
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
        _ => {}
    }
}

/// GETs `url`: the status, or why there is none.
fn get(url: &str) -> Result<u16, String> {
    wstd::runtime::block_on(async {
        let request = wstd::http::Request::get(url)
            .body(wstd::http::Body::empty())
            .map_err(|e| e.to_string())?;
        let response = wstd::http::Client::new()
            .send(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(response.status().as_u16())
    })
}

impl auth::Guest for TestLimits {
    fn login(credentials: Credentials) -> Result<Account, Refusal> {
        if let Some(url) = credentials.user.strip_prefix("http:") {
            match get(url) {
                Ok(status) if (200..300).contains(&status) => {}
                Ok(status) => {
                    return Err(Refusal {
                        reason: RefusalReason::BadCredentials,
                        message: Some(format!("status {status}")),
                    });
                }
                Err(why) => {
                    return Err(Refusal {
                        reason: RefusalReason::BadCredentials,
                        message: Some(why),
                    });
                }
            }
        } else {
            misbehave(&credentials.user);
        }
        let user = credentials.user;
        Ok(Account {
            user: user.clone(),
            home: "/".into(),
            permissions: Permissions::all(),
            limits: no_limits(),
            attributes: if user == "many-attributes" {
                // More than the host takes: a contract breach.
                (0..100).map(|i| (format!("a{i}"), String::new())).collect()
            } else {
                vec![
                    ("from".into(), "test-limits".into()),
                    ("logins".into(), count().to_string()),
                ]
            },
        })
    }
}

fn count() -> u64 {
    CALLS.with(|c| {
        c.set(c.get() + 1);
        c.get()
    })
}

fn file(size: u64) -> Metadata {
    Metadata {
        kind: EntryKind::File,
        size,
        modified: Some(Timestamp {
            seconds: 0,
            nanoseconds: 0,
        }),
        readonly: false,
    }
}

fn unsupported() -> Error {
    Error {
        code: ErrorCode::Unsupported,
        message: None,
    }
}

impl storage::Guest for TestLimits {
    type Reader = Zeroes;
    type Writer = Discard;
    type DirLister = Names;
    type Session = TestSession;

    fn open_session(facts: SessionFacts) -> Result<Session, Error> {
        if facts.user == "refuse-storage" {
            return Err(Error {
                code: ErrorCode::Unavailable,
                message: Some("no storage for you".into()),
            });
        }
        Ok(Session::new(TestSession { facts }))
    }
}

struct TestSession {
    facts: SessionFacts,
}

impl GuestSession for TestSession {
    fn stat(&self, path: String) -> Result<Metadata, Error> {
        let calls = count();
        misbehave(path.trim_start_matches('/'));
        Ok(file(calls))
    }

    fn list_dir(&self, _path: String) -> Result<DirLister, Error> {
        let calls = count();
        let facts = &self.facts;
        let mut names = vec![
            format!("calls={calls}"),
            format!("site={}", facts.site),
            format!("user={}", facts.user),
            format!("home={}", facts.home),
            format!("client={}", facts.client_address),
            format!("tls={}", facts.tls),
        ];
        if let Some(n) = facts.limits.max_sessions {
            names.push(format!("max_sessions={n}"));
        }
        if let Some(n) = facts.limits.quota_bytes {
            names.push(format!("quota_bytes={n}"));
        }
        for (k, v) in &facts.attributes {
            names.push(format!("attribute.{k}={v}"));
        }
        names.reverse();
        Ok(DirLister::new(Names(RefCell::new(names))))
    }

    fn open_read(&self, path: String, _offset: u64) -> Result<ReadSource, Error> {
        count();
        // `/loop-read`: opening works, every read spins (a transfer stuck in the plugin).
        let spin = path == "/loop-read";
        Ok(ReadSource::Chunks(Reader::new(Zeroes {
            spin,
            later: mid_transfer(&path, "-mid-read"),
            reads: Cell::new(0),
        })))
    }

    fn open_write(&self, path: String, _mode: WriteMode) -> Result<WriteSink, Error> {
        count();
        Ok(WriteSink::Chunks(Writer::new(Discard {
            later: mid_transfer(&path, "-mid-write"),
            writes: Cell::new(0),
        })))
    }

    fn make_dir(&self, _path: String) -> Result<(), Error> {
        count();
        Err(unsupported())
    }

    fn remove_dir(&self, _path: String) -> Result<(), Error> {
        count();
        Err(unsupported())
    }

    fn delete(&self, _path: String) -> Result<(), Error> {
        count();
        Err(unsupported())
    }

    fn rename(&self, _source: String, _target: String) -> Result<(), Error> {
        count();
        Err(unsupported())
    }

    fn set_modified(&self, _path: String, _time: Timestamp) -> Result<(), Error> {
        count();
        Err(unsupported())
    }
}

/// Names handed out two per page, so paging is exercised.
struct Names(RefCell<Vec<String>>);

impl GuestDirLister for Names {
    fn next_page(&self, max: u32) -> Result<Vec<DirEntry>, Error> {
        let mut names = self.0.borrow_mut();
        let mut page = Vec::new();
        while page.len() < max.min(2) as usize {
            let Some(name) = names.pop() else { break };
            page.push(DirEntry {
                name,
                metadata: file(0),
            });
        }
        Ok(page)
    }
}

/// `/trap-mid-read` -> `trap`: the misbehaviour a path asks for once a
/// transfer is under way (`loop`, `alloc`, `trap` before the suffix).
fn mid_transfer(path: &str, suffix: &str) -> Option<String> {
    let what = path.strip_prefix('/')?.strip_suffix(suffix)?;
    Some(what.to_string())
}

/// Chunks a transfer moves before a `-mid-` path misbehaves.
const GOOD_CHUNKS: u32 = 4;

/// Endless zeroes, or an endless loop when `spin`, or the `later`
/// misbehaviour after a few good chunks.
struct Zeroes {
    spin: bool,
    later: Option<String>,
    reads: Cell<u32>,
}

impl GuestReader for Zeroes {
    fn read(&self, max: u32) -> Result<Vec<u8>, Error> {
        if self.spin {
            misbehave("loop");
        }
        self.reads.set(self.reads.get() + 1);
        if let Some(what) = &self.later
            && self.reads.get() > GOOD_CHUNKS
        {
            misbehave(what);
        }
        Ok(vec![0; max.min(1 << 16) as usize])
    }
}

/// Discards what is written, or misbehaves (`later`) after a few chunks.
struct Discard {
    later: Option<String>,
    writes: Cell<u32>,
}

impl GuestWriter for Discard {
    fn write(&self, _data: Vec<u8>) -> Result<(), Error> {
        self.writes.set(self.writes.get() + 1);
        if let Some(what) = &self.later
            && self.writes.get() > GOOD_CHUNKS
        {
            misbehave(what);
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl events::Guest for TestLimits {
    fn handle(event: Event) -> Result<(), String> {
        let behave = wasi::config::store::get("behave").ok().flatten();
        misbehave(behave.as_deref().unwrap_or("ok"));
        if let Ok(Some(url)) = wasi::config::store::get("url") {
            let query = format!(
                "{url}?kind={:?}&path={}",
                event.kind,
                event.path.unwrap_or_default()
            );
            get(&query)?;
        }
        Ok(())
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
