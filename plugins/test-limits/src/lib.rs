//! `test-limits`: a plugin that misbehaves on request, for the runtime's limit
//! tests. It exports both `auth` and `storage`, so it loads as either kind.
//! Never embedded as a builtin.
//!
//! A user name (auth) or path (storage) picks the behaviour:
//! - `loop` / `/loop`: spins forever (stopped by the call deadline);
//! - `alloc` / `/alloc`: allocates without bound (stopped by the memory limit);
//! - `trap` / `/trap`: panics, which traps;
//! - anything else behaves. For storage, `stat` answers a file whose `size` is
//!   the number of calls this instance has served, so a test can see whether it
//!   talks to the same instance or a fresh one.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package wasmftpd:test-limits;

        world test-limits {
            include wasmftpd:plugin/auth-plugin@0.1.0;
            include wasmftpd:plugin/storage-plugin@0.1.0;
        }
    ",
    world: "wasmftpd:test-limits/test-limits",
    generate_all,
});

use std::cell::Cell;

use exports::wasmftpd::plugin::auth::{self, Account, Credentials, Refusal};
use exports::wasmftpd::plugin::storage::{
    self, GuestReader, GuestWriter, ReadSource, Reader, WriteMode, WriteSink, Writer,
};
use wasmftpd::plugin::types::{
    DirEntry, EntryKind, Error, ErrorCode, Metadata, Permissions, Timestamp,
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
        _ => {}
    }
}

impl auth::Guest for TestLimits {
    fn login(credentials: Credentials) -> Result<Account, Refusal> {
        misbehave(&credentials.user);
        Ok(Account {
            user: credentials.user,
            home: "/".into(),
            permissions: Permissions::all(),
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

impl storage::Guest for TestLimits {
    type Reader = Zeroes;
    type Writer = Discard;

    fn stat(path: String) -> Result<Metadata, Error> {
        let calls = count();
        misbehave(path.trim_start_matches('/'));
        Ok(file(calls))
    }

    fn list_dir(_path: String) -> Result<Vec<DirEntry>, Error> {
        let calls = count();
        Ok(vec![DirEntry {
            name: "calls".into(),
            metadata: file(calls),
        }])
    }

    fn open_read(path: String, _offset: u64) -> Result<ReadSource, Error> {
        count();
        // `/loop-read`: opening works, every read spins (a transfer stuck in the plugin).
        let spin = path == "/loop-read";
        Ok(ReadSource::Chunks(Reader::new(Zeroes { spin })))
    }

    fn open_write(_path: String, _mode: WriteMode) -> Result<WriteSink, Error> {
        count();
        Ok(WriteSink::Chunks(Writer::new(Discard)))
    }

    fn make_dir(_path: String) -> Result<(), Error> {
        count();
        Err(Error {
            code: ErrorCode::Unsupported,
            message: None,
        })
    }

    fn remove_dir(_path: String) -> Result<(), Error> {
        count();
        Err(Error {
            code: ErrorCode::Unsupported,
            message: None,
        })
    }

    fn delete(_path: String) -> Result<(), Error> {
        count();
        Err(Error {
            code: ErrorCode::Unsupported,
            message: None,
        })
    }

    fn rename(_source: String, _target: String) -> Result<(), Error> {
        count();
        Err(Error {
            code: ErrorCode::Unsupported,
            message: None,
        })
    }

    fn set_modified(_path: String, _time: Timestamp) -> Result<(), Error> {
        count();
        Err(Error {
            code: ErrorCode::Unsupported,
            message: None,
        })
    }
}

/// Endless zeroes, or an endless loop when `spin`.
struct Zeroes {
    spin: bool,
}

impl GuestReader for Zeroes {
    fn read(&self, max: u32) -> Result<Vec<u8>, Error> {
        if self.spin {
            misbehave("loop");
        }
        Ok(vec![0; max.min(1 << 16) as usize])
    }
}

struct Discard;

impl GuestWriter for Discard {
    fn write(&self, _data: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }

    fn finish(&self) -> Result<(), Error> {
        Ok(())
    }
}
