//! LIST, NLST, MLSD: a directory read as ListObjectsV2 pages (delimiter `/`,
//! 1,000 keys each), handed to the host as it asks. The next page is asked
//! for as soon as one arrives, so S3 works while the host formats.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::dates;
use crate::keys::Keys;
use crate::s3::{Client, PendingList};
use crate::wasmftpd::plugin::types::{DirEntry, EntryKind, Error, Metadata, Timestamp};
use crate::xml::ListPage;

/// Keys per ListObjectsV2 page (S3's maximum).
pub const PAGE_KEYS: u32 = 1000;

pub struct Lister {
    client: Rc<Client>,
    prefix: String,
    entries: VecDeque<DirEntry>,
    next: Option<PendingList>,
}

impl Lister {
    /// Starts from the first page, which the caller fetched (to report a
    /// missing directory before any entry).
    pub fn new(client: Rc<Client>, prefix: String, first: ListPage) -> Lister {
        let mut lister = Lister {
            client,
            prefix,
            entries: VecDeque::new(),
            next: None,
        };
        lister.take(first);
        lister
    }

    pub fn next_page(&mut self, max: u32) -> Result<Vec<DirEntry>, Error> {
        while self.entries.is_empty() {
            let Some(pending) = self.next.take() else {
                return Ok(Vec::new());
            };
            let page = pending.wait(&self.client)?;
            self.take(page);
        }
        let n = (max.max(1) as usize).min(self.entries.len());
        Ok(self.entries.drain(..n).collect())
    }

    fn take(&mut self, page: ListPage) {
        if page.is_truncated
            && let Some(token) = &page.next_continuation_token
        {
            self.next = Some(
                self.client
                    .start_list(&self.prefix, true, Some(token), PAGE_KEYS),
            );
        }
        self.entries.extend(entries(&self.prefix, page));
    }
}

/// The entries of one page: objects are files, common prefixes directories.
pub fn entries(prefix: &str, page: ListPage) -> impl Iterator<Item = DirEntry> {
    let prefix = prefix.to_string();
    let files: Vec<DirEntry> = page
        .contents
        .into_iter()
        .filter_map(|object| {
            let name = Keys::name_in(&prefix, &object.key)?;
            // A key ending in `/` inside the listing is another tool's
            // directory marker; it shows as a common prefix too.
            if object.key.ends_with('/') {
                return None;
            }
            Some(DirEntry {
                name: name.to_string(),
                metadata: Metadata {
                    kind: EntryKind::File,
                    size: object.size,
                    modified: object
                        .last_modified
                        .as_deref()
                        .and_then(dates::from_iso8601)
                        .map(timestamp),
                    readonly: false,
                },
            })
        })
        .collect();
    let dirs: Vec<DirEntry> = page
        .common_prefixes
        .into_iter()
        .filter_map(|p| {
            Some(DirEntry {
                name: Keys::name_in(&prefix, &p.prefix)?.to_string(),
                metadata: directory(None),
            })
        })
        .collect();
    files.into_iter().chain(dirs)
}

pub fn directory(modified: Option<Timestamp>) -> Metadata {
    Metadata {
        kind: EntryKind::Directory,
        size: 0,
        modified,
        readonly: false,
    }
}

pub fn timestamp((seconds, nanoseconds): dates::Instant) -> Timestamp {
    Timestamp {
        seconds,
        nanoseconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    #[test]
    fn files_dirs_and_the_marker() {
        let page: ListPage = parse(
            "<ListBucketResult><IsTruncated>false</IsTruncated>\
             <Contents><Key>u/d/</Key><Size>0</Size></Contents>\
             <Contents><Key>u/d/a.txt</Key><Size>5</Size>\
               <LastModified>1970-01-01T00:00:10.000Z</LastModified></Contents>\
             <CommonPrefixes><Prefix>u/d/sub/</Prefix></CommonPrefixes>\
             <CommonPrefixes><Prefix>u/d//</Prefix></CommonPrefixes>\
             </ListBucketResult>",
        )
        .unwrap();
        let all: Vec<DirEntry> = entries("u/d/", page).collect();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].name, "a.txt");
        assert_eq!(all[0].metadata.size, 5);
        assert_eq!(all[0].metadata.modified.map(|t| t.seconds), Some(10));
        assert_eq!(all[1].name, "sub");
        assert_eq!(all[1].metadata.kind, EntryKind::Directory);
    }
}
