//! One logged-in session's file operations, mapped onto S3.
//!
//! Directories are key prefixes. `MKD` writes a marker object (`dir/`) so an
//! empty directory exists; a directory also exists while any key lies under
//! it. Existence checks cost a request, so directories this session has seen
//! exist are remembered (another host deleting one meanwhile costs at most a
//! file stored into a directory that was just removed, which recreates it).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use crate::download::Download;
use crate::keys::{self, BadPath, Keys};
use crate::listing::{self, Lister, PAGE_KEYS};
use crate::s3::{Client, Head};
use crate::settings::{MAX_PART, MIN_PART, Settings};
use crate::upload::Upload;
use crate::wasmftpd::plugin::types::{EntryKind, Error, ErrorCode, Metadata};

/// Directories remembered per session, at most; then the memory starts over.
const KNOWN_DIRS: usize = 4096;
/// Size of each UploadPartCopy when an object is copied in parts.
const COPY_PART: u64 = 1 << 30;

pub struct S3Session {
    client: Rc<Client>,
    keys: Keys,
    /// The account's home: it exists even while nothing is stored in it.
    home: String,
    part_size: usize,
    read_size: u64,
    /// Prefixes of directories known to exist.
    known_dirs: RefCell<HashSet<String>>,
    /// Prefixes of directories known to have a marker object.
    marked_dirs: RefCell<HashSet<String>>,
}

impl S3Session {
    pub fn new(settings: &Settings, prefix: String, home: String) -> S3Session {
        S3Session {
            client: Rc::new(Client::new(settings)),
            keys: Keys::new(prefix),
            home,
            part_size: settings.part_size,
            read_size: settings.read_size,
            known_dirs: RefCell::new(HashSet::new()),
            marked_dirs: RefCell::new(HashSet::new()),
        }
    }

    pub fn stat(&self, path: &str) -> Result<Metadata, Error> {
        if self.always_there(path) {
            return Ok(listing::directory(None));
        }
        let key = self.object(path, ErrorCode::InvalidName)?;
        if let Some(head) = self.client.head(&key)? {
            return Ok(file_metadata(&head));
        }
        let prefix = self.dir_prefix(path)?;
        let page = self.client.list(&prefix, false, None, 1)?;
        match page.contents.first() {
            Some(first) => {
                self.remember(&prefix);
                // The marker, if there is one, sorts first and has a time.
                let modified = (first.key == prefix)
                    .then(|| {
                        first
                            .last_modified
                            .as_deref()
                            .and_then(crate::dates::from_iso8601)
                    })
                    .flatten()
                    .map(listing::timestamp);
                Ok(listing::directory(modified))
            }
            None => Err(code(ErrorCode::NotFound)),
        }
    }

    pub fn list_dir(&self, path: &str) -> Result<Lister, Error> {
        let prefix = self.dir_prefix(path)?;
        let first = self.client.list(&prefix, true, None, PAGE_KEYS)?;
        let empty = first.contents.is_empty() && first.common_prefixes.is_empty();
        if empty && !self.always_there(path) {
            let key = self.object(path, ErrorCode::InvalidName)?;
            return Err(match self.client.head(&key)? {
                Some(_) => code(ErrorCode::NotADirectory),
                None => code(ErrorCode::NotFound),
            });
        }
        self.remember(&prefix);
        Ok(Lister::new(self.client.clone(), prefix, first))
    }

    pub fn open_read(&self, path: &str, offset: u64) -> Result<Download, Error> {
        let key = self.object(path, ErrorCode::IsADirectory)?;
        match Download::open(self.client.clone(), key, offset, self.read_size) {
            Err(e) if e.code == ErrorCode::NotFound && self.dir_exists(path)? => {
                Err(code(ErrorCode::IsADirectory))
            }
            other => other,
        }
    }

    /// `append_at`: `None` to replace the file (STOR), `Some(None)` to add to
    /// its end (APPE), `Some(Some(n))` to continue at byte `n` (REST + STOR),
    /// which object storage can do only where the file ends.
    pub fn open_write(&self, path: &str, append_at: Option<Option<u64>>) -> Result<Upload, Error> {
        let key = self.object(path, ErrorCode::IsADirectory)?;
        let parent = keys::parent(path).unwrap_or("/");
        if !self.dir_exists(parent)? {
            return Err(code(ErrorCode::NotFound));
        }
        if self.client.any_under(&self.dir_prefix(path)?)? {
            return Err(code(ErrorCode::IsADirectory));
        }
        let Some(at) = append_at else {
            return Ok(Upload::new(self.client.clone(), key, self.part_size));
        };
        let existing = self.client.head(&key)?;
        let size = existing.as_ref().map_or(0, |h| h.size);
        if let Some(offset) = at
            && offset != size
        {
            return Err(Error {
                code: ErrorCode::Unsupported,
                message: Some(format!(
                    "object storage resumes an upload only where the file ends: REST {size}"
                )),
            });
        }
        let Some(head) = existing.filter(|h| h.size > 0) else {
            return Ok(Upload::new(self.client.clone(), key, self.part_size));
        };
        if head.size < MIN_PART {
            // Too small to be copied as a part: send it again with the new bytes.
            let old = self.read_whole(&key, &head)?;
            return Ok(Upload::starting_with(
                self.client.clone(),
                key,
                self.part_size,
                old,
            ));
        }
        let id = self.client.create_multipart(&key)?;
        match self.copy_parts(&key, &id, &key, &head, 1) {
            Ok(done) => Ok(Upload::after_copied_parts(
                self.client.clone(),
                key,
                self.part_size,
                id,
                done,
            )),
            Err(e) => {
                self.client.abort_multipart(&key, &id);
                Err(e)
            }
        }
    }

    pub fn make_dir(&self, path: &str) -> Result<(), Error> {
        if self.always_there(path) {
            return Err(code(ErrorCode::AlreadyExists));
        }
        let key = self.object(path, ErrorCode::AlreadyExists)?;
        let prefix = self.dir_prefix(path)?;
        if self.client.head(&key)?.is_some() || self.client.any_under(&prefix)? {
            return Err(code(ErrorCode::AlreadyExists));
        }
        if !self.dir_exists(keys::parent(path).unwrap_or("/"))? {
            return Err(code(ErrorCode::NotFound));
        }
        self.client.put_object(&prefix, &[])?;
        self.remember_marked(&prefix);
        Ok(())
    }

    pub fn remove_dir(&self, path: &str) -> Result<(), Error> {
        if self.always_there(path) {
            return Err(Error {
                code: ErrorCode::PermissionDenied,
                message: Some("the home directory cannot be removed".into()),
            });
        }
        let prefix = self.dir_prefix(path)?;
        let page = self.client.list(&prefix, false, None, 2)?;
        match page.contents.as_slice() {
            [] => {
                let key = self.object(path, ErrorCode::InvalidName)?;
                Err(match self.client.head(&key)? {
                    Some(_) => code(ErrorCode::NotADirectory),
                    None => code(ErrorCode::NotFound),
                })
            }
            [only] if only.key == prefix => {
                self.client.delete(&prefix)?;
                self.forget(&prefix);
                Ok(())
            }
            _ => Err(code(ErrorCode::NotEmpty)),
        }
    }

    pub fn delete(&self, path: &str) -> Result<(), Error> {
        let key = self.object(path, ErrorCode::IsADirectory)?;
        if self.client.head(&key)?.is_none() {
            return Err(match self.dir_exists(path)? {
                true => code(ErrorCode::IsADirectory),
                false => code(ErrorCode::NotFound),
            });
        }
        self.client.delete(&key)?;
        self.keep_parent(path)
    }

    pub fn rename(&self, source: &str, target: &str) -> Result<(), Error> {
        if self.always_there(source) {
            return Err(code(ErrorCode::PermissionDenied));
        }
        let from = self.object(source, ErrorCode::PermissionDenied)?;
        let to = self.object(target, ErrorCode::AlreadyExists)?;
        if !self.dir_exists(keys::parent(target).unwrap_or("/"))? {
            return Err(code(ErrorCode::NotFound));
        }
        if let Some(head) = self.client.head(&from)? {
            if self.client.any_under(&self.dir_prefix(target)?)? {
                return Err(Error {
                    code: ErrorCode::AlreadyExists,
                    message: Some("a directory has that name".into()),
                });
            }
            self.copy(&from, &to, &head)?;
            self.client.delete(&from)?;
            return self.keep_parent(source);
        }
        self.rename_dir(source, target, &to)
    }

    /// A directory moves only while it is empty: its marker is copied.
    /// Moving a full one would copy every object under it, one request each,
    /// and could stop half-way; FTP clients get a clear refusal instead.
    fn rename_dir(&self, source: &str, target: &str, target_key: &str) -> Result<(), Error> {
        let from = self.dir_prefix(source)?;
        let page = self.client.list(&from, false, None, 2)?;
        match page.contents.as_slice() {
            [] => Err(code(ErrorCode::NotFound)),
            [only] if only.key == from => {
                let to = self.dir_prefix(target)?;
                if self.client.head(target_key)?.is_some() || self.client.any_under(&to)? {
                    return Err(code(ErrorCode::AlreadyExists));
                }
                self.client.put_object(&to, &[])?;
                self.client.delete(&from)?;
                self.forget(&from);
                self.remember_marked(&to);
                Ok(())
            }
            _ => Err(Error {
                code: ErrorCode::NotEmpty,
                message: Some(
                    "object storage cannot rename a directory that has files; \
                     move the files one by one"
                        .into(),
                ),
            }),
        }
    }

    /// Copies an object: one CopyObject up to 5 GiB, a multipart copy above.
    fn copy(&self, from: &str, to: &str, head: &Head) -> Result<(), Error> {
        if head.size <= MAX_PART {
            return self.client.copy_object(from, to, head.etag.as_deref());
        }
        let id = self.client.create_multipart(to)?;
        let result = self
            .copy_parts(to, &id, from, head, 1)
            .and_then(|done| self.client.complete_multipart(to, &id, &done));
        if result.is_err() {
            self.client.abort_multipart(to, &id);
        }
        result
    }

    /// UploadPartCopy of all of `from` into upload `id`, as parts of about
    /// [`COPY_PART`] numbered from `first_number`. S3 copies inside the
    /// store, but each part takes as long as copying its bytes there: large
    /// copies need a generous `call_timeout` (docs/scaling.md).
    fn copy_parts(
        &self,
        key: &str,
        id: &str,
        from: &str,
        head: &Head,
        first_number: u32,
    ) -> Result<Vec<(u32, String)>, Error> {
        let mut done = Vec::new();
        for (number, (first, last)) in (first_number..).zip(copy_ranges(head.size)) {
            let etag = self.client.upload_part_copy(
                key,
                id,
                number,
                from,
                first,
                last,
                head.etag.as_deref(),
            )?;
            done.push((number, etag));
        }
        Ok(done)
    }

    /// The whole content of a small object (below one part).
    fn read_whole(&self, key: &str, head: &Head) -> Result<Vec<u8>, Error> {
        let mut download = Download::open(self.client.clone(), key.to_string(), 0, MIN_PART)?;
        let mut data = Vec::with_capacity(head.size as usize);
        loop {
            let chunk = download.read(1 << 20)?;
            if chunk.is_empty() {
                return Ok(data);
            }
            data.extend_from_slice(&chunk);
            if data.len() as u64 > MIN_PART {
                return Err(code(ErrorCode::Io));
            }
        }
    }

    /// After the last file of a directory that has no marker is removed,
    /// writes one, so the directory stays as FTP users expect.
    fn keep_parent(&self, path: &str) -> Result<(), Error> {
        let parent = keys::parent(path).unwrap_or("/");
        if self.always_there(parent) {
            return Ok(());
        }
        let prefix = self.dir_prefix(parent)?;
        if self.marked_dirs.borrow().contains(&prefix) {
            return Ok(());
        }
        let page = self.client.list(&prefix, false, None, 1)?;
        match page.contents.first() {
            None => self.client.put_object(&prefix, &[])?,
            // The marker sorts first under its prefix.
            Some(first) if first.key == prefix => {}
            Some(_) => return Ok(()),
        }
        remember_in(&self.marked_dirs, &prefix);
        Ok(())
    }

    fn dir_exists(&self, path: &str) -> Result<bool, Error> {
        if self.always_there(path) {
            return Ok(true);
        }
        let prefix = self.dir_prefix(path)?;
        if self.known_dirs.borrow().contains(&prefix) {
            return Ok(true);
        }
        let exists = self.client.any_under(&prefix)?;
        if exists {
            self.remember(&prefix);
        }
        Ok(exists)
    }

    /// `/` and the home always exist, stored or not.
    fn always_there(&self, path: &str) -> bool {
        path == "/" || path == self.home
    }

    fn remember(&self, prefix: &str) {
        remember_in(&self.known_dirs, prefix);
    }

    /// Marks a directory as written by us: it exists and has its marker.
    fn remember_marked(&self, prefix: &str) {
        remember_in(&self.known_dirs, prefix);
        remember_in(&self.marked_dirs, prefix);
    }

    fn forget(&self, prefix: &str) {
        self.known_dirs.borrow_mut().remove(prefix);
        self.marked_dirs.borrow_mut().remove(prefix);
    }

    /// The key of a file path; `/` gets `at_root`.
    fn object(&self, path: &str, at_root: ErrorCode) -> Result<String, Error> {
        self.keys.object(path).map_err(|bad| bad_path(bad, at_root))
    }

    fn dir_prefix(&self, path: &str) -> Result<String, Error> {
        self.keys
            .dir(path)
            .map_err(|bad| bad_path(bad, ErrorCode::InvalidName))
    }
}

/// Byte ranges (inclusive) of about [`COPY_PART`] covering `size` bytes,
/// all of the same length but the last, none below S3's part minimum when
/// `size` is at least that.
pub fn copy_ranges(size: u64) -> Vec<(u64, u64)> {
    if size == 0 {
        return Vec::new();
    }
    let count = size.div_ceil(COPY_PART);
    let each = size.div_ceil(count);
    (0..count)
        .map(|i| (i * each, ((i + 1) * each).min(size) - 1))
        .collect()
}

fn remember_in(set: &RefCell<HashSet<String>>, prefix: &str) {
    let mut set = set.borrow_mut();
    if set.len() >= KNOWN_DIRS {
        set.clear();
    }
    set.insert(prefix.to_string());
}

fn file_metadata(head: &Head) -> Metadata {
    Metadata {
        kind: EntryKind::File,
        size: head.size,
        modified: head.modified.map(listing::timestamp),
        readonly: false,
    }
}

fn bad_path(bad: BadPath, at_root: ErrorCode) -> Error {
    match bad {
        BadPath::Root => code(at_root),
        BadPath::Invalid(why) => Error {
            code: ErrorCode::InvalidName,
            message: Some(why.into()),
        },
    }
}

fn code(code: ErrorCode) -> Error {
    Error {
        code,
        message: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_cover_the_object() {
        assert!(copy_ranges(0).is_empty());
        assert_eq!(copy_ranges(5 << 20), vec![(0, (5 << 20) - 1)]);
        let size = (5u64 << 30) + 7;
        let ranges = copy_ranges(size);
        assert_eq!(ranges.len(), 6);
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges.last().unwrap().1, size - 1);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0, "contiguous");
        }
        assert!(
            ranges
                .iter()
                .all(|(a, b)| b - a < COPY_PART && b - a + 1 >= MIN_PART)
        );
    }
}
