//! The storage battery: one session of a storage plugin driven through every
//! operation of the contract, checking results byte for byte and errors against
//! the codes `wit/plugin.wit` documents.
//!
//! It talks only to the [`Storage`] trait, so it works for any backend (a
//! directory, a bucket, a database): fixtures are made through the plugin
//! itself, inside a fresh work directory that is removed at the end.

use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::report::{Outcome, Report};
use crate::backend::{
    DirEntry, EntryKind, ErrorKind, Storage, StorageError, StorageResult, WriteMode,
};

/// A whole listing, read page by page.
async fn list(s: &dyn Storage, path: &str) -> StorageResult<Vec<DirEntry>> {
    crate::backend::read_all(s.list_dir(path).await?).await
}

/// What a check body returns: `Err` is a failure with its reason.
type Check = Result<Outcome, String>;

/// Size of the "large" file; above any chunk size and any plugin buffer.
pub const LARGE: usize = 5 << 20;
/// What the kit asks for per read: the host's usual chunk.
const READ_CHUNK: usize = 64 << 10;

/// Runs the battery and records every check in `report`.
pub async fn run<W: std::io::Write>(storage: &dyn Storage, report: &mut Report<W>) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let b = Battery {
        s: storage,
        base: format!("/kit-{nanos}"),
    };
    let base = b.base.clone();
    let p = |rel: &str| format!("{base}/{rel}");

    macro_rules! check {
        ($name:expr, $body:expr) => {
            report.record($name, outcome($body.await))
        };
    }

    check!("stat /: is a directory", async {
        let m = b.s.stat("/").await.map_err(|e| describe(&e))?;
        want(
            m.kind == EntryKind::Directory,
            format!("kind is {:?}", m.kind),
        )
    });
    check!("make-dir: creates a directory", async {
        b.s.make_dir(&base).await.map_err(|e| describe(&e))?;
        b.expect_kind(&base, EntryKind::Directory).await
    });
    check!("make-dir: existing name -> already-exists", async {
        expect_err(b.s.make_dir(&base).await, &[ErrorKind::AlreadyExists])
    });
    check!("make-dir: missing parent -> not-found", async {
        expect_err(
            b.s.make_dir(&p("no-such-dir/child")).await,
            &[ErrorKind::NotFound],
        )
    });
    check!("stat: missing path -> not-found", async {
        expect_err(b.s.stat(&p("missing")).await, &[ErrorKind::NotFound])
    });

    check!("write+read: empty file", async {
        b.round_trip(&p("empty"), &[], 1).await
    });
    check!("write+read: small file", async {
        b.round_trip(&p("small.txt"), b"hello, world\n", 64 << 10)
            .await
    });
    check!("write+read: 300 KiB in 64 KiB chunks", async {
        b.round_trip(&p("multi.bin"), &pattern(300 << 10, 1), 64 << 10)
            .await
    });
    check!("write+read: 5 MiB in 256 KiB chunks", async {
        b.round_trip(&p("large.bin"), &pattern(LARGE, 2), 256 << 10)
            .await
    });
    check!(
        "stat: a file has its kind, size and a recent modified time",
        async {
            let m = b.s.stat(&p("small.txt")).await.map_err(|e| describe(&e))?;
            want(m.kind == EntryKind::File, format!("kind is {:?}", m.kind))?;
            want(m.size == 13, format!("size is {}, expected 13", m.size))?;
            match m.modified {
                None => Ok(Outcome::PassNote("backend reports no modified time".into())),
                Some(t) => {
                    let age = SystemTime::now()
                        .duration_since(t)
                        .unwrap_or(Duration::ZERO);
                    want(
                        age < Duration::from_secs(3600),
                        format!("modified {age:?} ago"),
                    )
                }
            }
        }
    );
    check!("stat: path under a file -> not-a-directory", async {
        // A flat object store may rightly answer not-found.
        expect_err(
            b.s.stat(&p("small.txt/x")).await,
            &[ErrorKind::NotADirectory, ErrorKind::NotFound],
        )
    });

    check!("read at an offset", async {
        let got = b.read_all(&p("small.txt"), 7).await?;
        same(&got, b"world\n")
    });
    check!("read at offset = size -> nothing", async {
        let got = b.read_all(&p("small.txt"), 13).await?;
        same(&got, b"")
    });
    check!("read past the end -> nothing", async {
        let got = b.read_all(&p("small.txt"), 1000).await?;
        same(&got, b"")
    });
    check!("read of 5 MiB at offset 3 MiB + 1", async {
        let got = b.read_all(&p("large.bin"), (3 << 20) + 1).await?;
        same(&got, &pattern(LARGE, 2)[(3 << 20) + 1..])
    });

    // An object store can continue a file only where it ends: `unsupported`
    // for any other offset is a correct answer (FTP `554`).
    let offsets_anywhere = Cell::new(true);
    check!("write at an offset keeps the rest", async {
        b.write_all(&p("offset.txt"), WriteMode::Truncate, b"0123456789", 64)
            .await?;
        match b.s.open_write(&p("offset.txt"), WriteMode::Offset(4)).await {
            Err(e) if e.kind == ErrorKind::Unsupported => {
                offsets_anywhere.set(false);
                same(&b.read_all(&p("offset.txt"), 0).await?, b"0123456789")?;
                return Ok(Outcome::PassNote(
                    "unsupported by this backend (it continues files only at their end)".into(),
                ));
            }
            Err(e) => return Err(format!("open-write: {}", describe(&e))),
            Ok(w) => drop(w),
        }
        b.write_all(&p("offset.txt"), WriteMode::Offset(4), b"ab", 64)
            .await?;
        same(&b.read_all(&p("offset.txt"), 0).await?, b"0123ab6789")
    });
    check!("write at an offset past the end extends the file", async {
        b.write_all(&p("offset.txt"), WriteMode::Offset(10), b"XY", 64)
            .await?;
        let expected: &[u8] = if offsets_anywhere.get() {
            b"0123ab6789XY"
        } else {
            b"0123456789XY"
        };
        same(&b.read_all(&p("offset.txt"), 0).await?, expected)
    });
    check!("write at an offset creates a missing file", async {
        b.write_all(&p("offset-new.txt"), WriteMode::Offset(0), b"new", 64)
            .await?;
        same(&b.read_all(&p("offset-new.txt"), 0).await?, b"new")
    });
    check!("append adds to the end", async {
        b.write_all(&p("append.txt"), WriteMode::Truncate, b"first\n", 64)
            .await?;
        b.write_all(&p("append.txt"), WriteMode::Append, b"second\n", 64)
            .await?;
        b.write_all(&p("append.txt"), WriteMode::Append, b"third\n", 3)
            .await?;
        same(
            &b.read_all(&p("append.txt"), 0).await?,
            b"first\nsecond\nthird\n",
        )
    });
    check!("append creates a missing file", async {
        b.write_all(&p("append-new.txt"), WriteMode::Append, b"x", 64)
            .await?;
        same(&b.read_all(&p("append-new.txt"), 0).await?, b"x")
    });
    check!("truncate replaces a longer file", async {
        b.write_all(&p("append.txt"), WriteMode::Truncate, b"short", 64)
            .await?;
        same(&b.read_all(&p("append.txt"), 0).await?, b"short")
    });
    check!(
        "interrupted write keeps what was written, or nothing (atomic uploads)",
        async {
            let mut w =
                b.s.open_write(&p("interrupted.bin"), WriteMode::Truncate)
                    .await
                    .map_err(|e| describe(&e))?;
            w.write(Bytes::from(pattern(100_000, 3)))
                .await
                .map_err(|e| describe(&e))?;
            drop(w);
            // A plugin with atomic uploads (storage-fs by default) only puts
            // a complete upload under its name; never a different content.
            match b.s.stat(&p("interrupted.bin")).await {
                Err(e) if e.kind == ErrorKind::NotFound => Ok(Outcome::Pass),
                _ => same(
                    &b.read_all(&p("interrupted.bin"), 0).await?,
                    &pattern(100_000, 3),
                ),
            }
        }
    );

    check!("list-dir: names, kinds and sizes", async {
        b.s.make_dir(&p("sub")).await.map_err(|e| describe(&e))?;
        let mut entries = list(b.s, &base).await.map_err(|e| describe(&e))?;
        entries.sort_by(|x, y| x.name.cmp(&y.name));
        // (An atomic plugin has no `interrupted.bin`, checked above.)
        let names: Vec<&str> = entries
            .iter()
            .map(|e| e.name.as_str())
            .filter(|name| *name != "interrupted.bin")
            .collect();
        let expected = [
            "append-new.txt",
            "append.txt",
            "empty",
            "large.bin",
            "multi.bin",
            "offset-new.txt",
            "offset.txt",
            "small.txt",
            "sub",
        ];
        want(names == expected, format!("names are {names:?}"))?;
        for e in &entries {
            let kind = if e.name == "sub" {
                EntryKind::Directory
            } else {
                EntryKind::File
            };
            want(
                e.metadata.kind == kind,
                format!("{} has kind {:?}", e.name, e.metadata.kind),
            )?;
        }
        let large = entries
            .iter()
            .find(|e| e.name == "large.bin")
            .map(|e| e.metadata.size);
        want(
            large == Some(LARGE as u64),
            format!("large.bin listed with size {large:?}"),
        )
    });
    check!("list-dir: empty directory -> no entries", async {
        let entries = list(b.s, &p("sub")).await.map_err(|e| describe(&e))?;
        want(entries.is_empty(), format!("{} entries", entries.len()))
    });
    check!("list-dir: a file -> not-a-directory", async {
        expect_err(
            list(b.s, &p("small.txt")).await,
            &[ErrorKind::NotADirectory],
        )
    });
    check!("list-dir: missing -> not-found", async {
        expect_err(list(b.s, &p("missing")).await, &[ErrorKind::NotFound])
    });
    check!("open-read: missing -> not-found", async {
        expect_err(
            b.s.open_read(&p("missing"), 0).await.map(drop),
            &[ErrorKind::NotFound],
        )
    });
    check!("open-read: a directory -> is-a-directory", async {
        expect_err(
            b.s.open_read(&p("sub"), 0).await.map(drop),
            &[ErrorKind::IsADirectory],
        )
    });
    check!("open-write: missing parent -> not-found", async {
        let r =
            b.s.open_write(&p("missing/file"), WriteMode::Truncate)
                .await
                .map(drop);
        expect_err(r, &[ErrorKind::NotFound])
    });
    check!("open-write: a directory -> is-a-directory", async {
        let r =
            b.s.open_write(&p("sub"), WriteMode::Truncate)
                .await
                .map(drop);
        expect_err(r, &[ErrorKind::IsADirectory])
    });

    const SPACES: &str = "a name with  spaces .txt";
    const UTF8: &str = "Grüße – 日本語 🎉.txt";
    const UTF8_DIR: &str = "répertoire ünïcode";
    check!(
        "names: spaces round-trip through write, stat, list and read",
        async { b.named_round_trip(&base, SPACES).await }
    );
    check!(
        "names: UTF-8 round-trips through write, stat, list and read",
        async { b.named_round_trip(&base, UTF8).await }
    );
    check!("names: UTF-8 directory with a file inside", async {
        let dir = p(UTF8_DIR);
        b.s.make_dir(&dir).await.map_err(|e| describe(&e))?;
        b.named_round_trip(&dir, UTF8).await
    });

    check!("rename: a file", async {
        b.s.rename(&p("multi.bin"), &p("renamed.bin"))
            .await
            .map_err(|e| describe(&e))?;
        expect_err(b.s.stat(&p("multi.bin")).await, &[ErrorKind::NotFound])?;
        same(
            &b.read_all(&p("renamed.bin"), 0).await?,
            &pattern(300 << 10, 1),
        )
    });
    // Where the directory ends up: `moved`, or still `sub` when the backend
    // refuses to rename a directory with files (an object store would copy
    // every object, one request each).
    let moved = RefCell::new(p("moved"));
    check!("rename: a directory with its contents", async {
        b.write_all(&p("sub/inner.txt"), WriteMode::Truncate, b"inner", 64)
            .await?;
        match b.s.rename(&p("sub"), &p("moved")).await {
            Err(e) if matches!(e.kind, ErrorKind::NotEmpty | ErrorKind::Unsupported) => {
                *moved.borrow_mut() = p("sub");
                same(&b.read_all(&p("sub/inner.txt"), 0).await?, b"inner")?;
                return Ok(Outcome::PassNote(format!(
                    "refused for a directory with files: {}",
                    describe(&e)
                )));
            }
            r => r.map_err(|e| describe(&e))?,
        }
        expect_err(b.s.stat(&p("sub")).await, &[ErrorKind::NotFound])?;
        same(&b.read_all(&p("moved/inner.txt"), 0).await?, b"inner")
    });
    check!(
        "rename: onto an existing file replaces it (or already-exists)",
        async {
            b.write_all(&p("old.txt"), WriteMode::Truncate, b"old", 64)
                .await?;
            b.write_all(&p("new.txt"), WriteMode::Truncate, b"new", 64)
                .await?;
            match b.s.rename(&p("new.txt"), &p("old.txt")).await {
                Ok(()) => {
                    expect_err(b.s.stat(&p("new.txt")).await, &[ErrorKind::NotFound])?;
                    same(&b.read_all(&p("old.txt"), 0).await?, b"new")
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists => {
                    same(&b.read_all(&p("old.txt"), 0).await?, b"old")?;
                    same(&b.read_all(&p("new.txt"), 0).await?, b"new")?;
                    Ok(Outcome::PassNote(
                        "backend refuses to replace: already-exists".into(),
                    ))
                }
                Err(e) => Err(format!("got {}", describe(&e))),
            }
        }
    );
    check!("rename: missing source -> not-found", async {
        expect_err(
            b.s.rename(&p("missing"), &p("elsewhere")).await,
            &[ErrorKind::NotFound],
        )
    });

    let moved = moved.into_inner();
    check!("remove-dir: non-empty -> not-empty", async {
        expect_err(b.s.remove_dir(&moved).await, &[ErrorKind::NotEmpty])
    });
    check!("remove-dir: a file -> not-a-directory", async {
        expect_err(
            b.s.remove_dir(&p("small.txt")).await,
            &[ErrorKind::NotADirectory],
        )
    });
    check!("remove-dir: missing -> not-found", async {
        expect_err(b.s.remove_dir(&p("missing")).await, &[ErrorKind::NotFound])
    });
    let inner = format!("{moved}/inner.txt");
    check!("delete: a file", async {
        b.s.delete(&inner).await.map_err(|e| describe(&e))?;
        gone(b.s.stat(&inner).await)
    });
    check!("remove-dir: an empty directory", async {
        b.s.remove_dir(&moved).await.map_err(|e| describe(&e))?;
        gone(b.s.stat(&moved).await)
    });
    check!("delete: missing -> not-found", async {
        expect_err(b.s.delete(&p("missing")).await, &[ErrorKind::NotFound])
    });
    check!("delete: a directory -> is-a-directory", async {
        expect_err(b.s.delete(&p(UTF8_DIR)).await, &[ErrorKind::IsADirectory])
    });

    check!("set-modified: stat then reports that time", async {
        let when = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        match b.s.set_modified(&p("small.txt"), when).await {
            Err(e) if e.kind == ErrorKind::Unsupported => {
                return Ok(Outcome::PassNote("unsupported by this backend".into()));
            }
            r => r.map_err(|e| describe(&e))?,
        }
        let m = b.s.stat(&p("small.txt")).await.map_err(|e| describe(&e))?;
        let secs = m
            .modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        want(
            secs == Some(1_000_000_000),
            format!("stat says {secs:?} seconds"),
        )
    });
    check!("set-modified: missing -> not-found", async {
        let r =
            b.s.set_modified(
                &p("missing"),
                UNIX_EPOCH + Duration::from_secs(1_000_000_000),
            )
            .await;
        expect_err(r, &[ErrorKind::NotFound, ErrorKind::Unsupported])
    });

    check!("cleanup: remove everything the battery made", async {
        b.remove_tree(&base).await
    });
}

struct Battery<'a> {
    s: &'a dyn Storage,
    base: String,
}

impl Battery<'_> {
    async fn write_all(
        &self,
        path: &str,
        mode: WriteMode,
        data: &[u8],
        chunk: usize,
    ) -> Result<(), String> {
        let mut w = self
            .s
            .open_write(path, mode)
            .await
            .map_err(|e| format!("open-write {path}: {}", describe(&e)))?;
        for piece in data.chunks(chunk.max(1)) {
            w.write(Bytes::copy_from_slice(piece))
                .await
                .map_err(|e| format!("write: {}", describe(&e)))?;
        }
        w.finish()
            .await
            .map_err(|e| format!("finish: {}", describe(&e)))
    }

    async fn read_all(&self, path: &str, offset: u64) -> Result<Vec<u8>, String> {
        let mut r = self
            .s
            .open_read(path, offset)
            .await
            .map_err(|e| format!("open-read {path}: {}", describe(&e)))?;
        let mut out = Vec::new();
        loop {
            let chunk = r
                .read(READ_CHUNK)
                .await
                .map_err(|e| format!("read: {}", describe(&e)))?;
            if chunk.is_empty() {
                return Ok(out);
            }
            if chunk.len() > READ_CHUNK {
                return Err(format!(
                    "read returned {} bytes, more than the {READ_CHUNK} asked for",
                    chunk.len()
                ));
            }
            out.extend_from_slice(&chunk);
            if out.len() > 2 * LARGE {
                return Err("read does not end (no empty chunk at end of file)".into());
            }
        }
    }

    async fn round_trip(&self, path: &str, data: &[u8], chunk: usize) -> Check {
        self.write_all(path, WriteMode::Truncate, data, chunk)
            .await?;
        let m = self
            .s
            .stat(path)
            .await
            .map_err(|e| format!("stat after write: {}", describe(&e)))?;
        want(
            m.size == data.len() as u64,
            format!("stat size {} after writing {}", m.size, data.len()),
        )?;
        same(&self.read_all(path, 0).await?, data)
    }

    async fn expect_kind(&self, path: &str, kind: EntryKind) -> Check {
        let m = self.s.stat(path).await.map_err(|e| describe(&e))?;
        want(
            m.kind == kind,
            format!("{path} has kind {:?}, expected {kind:?}", m.kind),
        )
    }

    /// Writes, stats, lists and reads back a file with an unusual name in `dir`.
    async fn named_round_trip(&self, dir: &str, name: &str) -> Check {
        let path = format!("{dir}/{name}");
        let data = name.as_bytes();
        self.round_trip(&path, data, 64).await?;
        let listed = list(self.s, dir).await.map_err(|e| describe(&e))?;
        want(
            listed.iter().any(|e| e.name == name),
            format!("{name:?} is not in the listing of {dir}"),
        )
    }

    /// Deletes a tree depth-first through the plugin.
    async fn remove_tree(&self, dir: &str) -> Check {
        let mut stack = vec![(dir.to_string(), false)];
        while let Some((path, listed)) = stack.pop() {
            if listed {
                self.s
                    .remove_dir(&path)
                    .await
                    .map_err(|e| format!("remove-dir {path}: {}", describe(&e)))?;
                continue;
            }
            stack.push((path.clone(), true));
            for e in list(self.s, &path)
                .await
                .map_err(|e| format!("list-dir {path}: {}", describe(&e)))?
            {
                let child = format!("{path}/{}", e.name);
                if e.metadata.kind == EntryKind::Directory {
                    stack.push((child, false));
                } else {
                    self.s
                        .delete(&child)
                        .await
                        .map_err(|e| format!("delete {child}: {}", describe(&e)))?;
                }
            }
        }
        gone(self.s.stat(&self.base).await)
    }
}

fn outcome(check: Check) -> Outcome {
    check.unwrap_or_else(Outcome::Fail)
}

fn want(ok: bool, otherwise: String) -> Check {
    if ok {
        Ok(Outcome::Pass)
    } else {
        Err(otherwise)
    }
}

fn same(got: &[u8], expected: &[u8]) -> Check {
    if got == expected {
        return Ok(Outcome::Pass);
    }
    let first = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    Err(format!(
        "read {} bytes, expected {}; first difference at byte {first}",
        got.len(),
        expected.len()
    ))
}

/// Passes (without a note) when what `result` looked up is not found.
fn gone<T>(result: StorageResult<T>) -> Check {
    expect_err(result, &[ErrorKind::NotFound])
        .map(|_| Outcome::Pass)
        .map_err(|e| format!("still there after removal: {e}"))
}

/// Passes when `result` is one of the `allowed` errors, naming the reply it becomes.
fn expect_err<T>(result: StorageResult<T>, allowed: &[ErrorKind]) -> Check {
    let names = allowed
        .iter()
        .map(|k| code_name(*k))
        .collect::<Vec<_>>()
        .join(" or ");
    match result {
        Ok(_) => Err(format!("succeeded, expected {names}")),
        Err(e) if allowed.contains(&e.kind) => Ok(Outcome::PassNote(format!(
            "{} -> {}",
            code_name(e.kind),
            reply_code(e.kind)
        ))),
        Err(e) => Err(format!("got {}, expected {names}", describe(&e))),
    }
}

fn describe(e: &StorageError) -> String {
    match &e.message {
        Some(m) => format!("{} ({m})", code_name(e.kind)),
        None => code_name(e.kind).to_string(),
    }
}

/// The WIT name of an error code.
pub fn code_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not-found",
        ErrorKind::PermissionDenied => "permission-denied",
        ErrorKind::AlreadyExists => "already-exists",
        ErrorKind::NotADirectory => "not-a-directory",
        ErrorKind::IsADirectory => "is-a-directory",
        ErrorKind::NotEmpty => "not-empty",
        ErrorKind::InvalidName => "invalid-name",
        ErrorKind::NoSpace => "no-space",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Io => "io",
        ErrorKind::PluginFailed => "plugin failed (trap, deadline or memory limit)",
    }
}

/// The FTP reply an error becomes outside a transfer, as `wit/plugin.wit` documents.
pub fn reply_code(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::AlreadyExists
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::NotEmpty => 550,
        ErrorKind::InvalidName => 553,
        ErrorKind::NoSpace => 452,
        ErrorKind::Unsupported => 502,
        ErrorKind::Unavailable => 450,
        ErrorKind::Io | ErrorKind::PluginFailed => 451,
    }
}

/// Deterministic bytes that differ per `seed` and never repeat with a short period,
/// so a misplaced chunk shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_seeded() {
        assert_eq!(pattern(1000, 1), pattern(1000, 1));
        assert_ne!(pattern(1000, 1), pattern(1000, 2));
        assert_eq!(pattern(13, 1).len(), 13);
    }

    #[test]
    fn expect_err_names_the_reply() {
        let e: StorageResult<()> = Err(StorageError::new(ErrorKind::NotEmpty));
        match expect_err(e, &[ErrorKind::NotEmpty]) {
            Ok(Outcome::PassNote(n)) => assert_eq!(n, "not-empty -> 550"),
            _ => panic!("expected a pass"),
        }
        assert!(expect_err(Ok(()), &[ErrorKind::NotFound]).is_err());
    }
}
