//! Listing formats: `ls -l` lines for LIST and STAT, RFC 3659 facts for MLSD
//! and MLST, and the `YYYYMMDDHHMMSS` timestamps of MDTM/MFMT; and
//! [`ListingReader`], which turns a directory read in pages into those lines
//! as the data connection takes them.

use std::fmt::Write as _;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};

use crate::backend::{
    DirEntry, DirLister, EntryKind, FileReader, LIST_PAGE, Metadata, Permissions, StorageResult,
};

/// Directories up to this many entries are read whole and sent sorted by
/// name; a larger one is sent in the storage's order as it is read, so its
/// listing takes bounded memory whatever its size.
pub const SORTED_UP_TO: usize = 16_384;

/// The start of a listing, read before the transfer begins (so that "no such
/// directory" and "no files match" are answered before `150`), and whatever
/// is left to read.
pub struct ListingHead {
    /// Sorted by name when `rest` is `None`.
    pub entries: Vec<DirEntry>,
    /// The rest of a directory larger than [`SORTED_UP_TO`], and the wildcard
    /// its entries must match.
    pub rest: Option<(Box<dyn DirLister>, Option<glob::Pattern>)>,
}

impl ListingHead {
    /// Reads pages until the directory ends (then sorts) or the head is full.
    /// With a `pattern`, only matching entries count and are kept.
    pub async fn read(
        mut lister: Box<dyn DirLister>,
        pattern: Option<glob::Pattern>,
    ) -> StorageResult<ListingHead> {
        let mut entries = Vec::new();
        loop {
            let page = lister.next_page(LIST_PAGE).await?;
            if page.is_empty() {
                entries.sort_unstable_by(|a: &DirEntry, b| a.name.cmp(&b.name));
                return Ok(ListingHead {
                    entries,
                    rest: None,
                });
            }
            entries.extend(page.into_iter().filter(|e| matches(&pattern, e)));
            if entries.len() >= SORTED_UP_TO {
                return Ok(ListingHead {
                    entries,
                    rest: Some((lister, pattern)),
                });
            }
        }
    }

    /// A listing of one entry (LIST of a file).
    pub fn one(entry: DirEntry) -> Self {
        ListingHead {
            entries: vec![entry],
            rest: None,
        }
    }
}

/// Shell-style wildcard options for listing arguments: `*` never matches a
/// `/` or a leading `.`, as in a shell.
pub const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

fn matches(pattern: &Option<glob::Pattern>, entry: &DirEntry) -> bool {
    pattern
        .as_ref()
        .is_none_or(|p| p.matches_with(&entry.name, GLOB_OPTIONS))
}

/// How each entry of a listing is written.
#[derive(Debug, Clone)]
pub enum LineFormat {
    /// LIST: `ls -l` lines, dated relative to `now`.
    Long { now: DateTime<Utc> },
    /// MLSD: RFC 3659 facts.
    Mlsd {
        perms: Permissions,
        facts: MlstFacts,
    },
    /// NLST: names, each after `prefix` (a wildcard's directory part).
    Names { prefix: String },
}

impl LineFormat {
    pub fn write(&self, out: &mut String, entry: &DirEntry) {
        match self {
            LineFormat::Long { now } => list_line(out, &entry.name, &entry.metadata, *now),
            LineFormat::Mlsd { perms, facts } => {
                mlsd_line(out, &entry.name, &entry.metadata, *perms, *facts)
            }
            LineFormat::Names { prefix } => {
                // A name with a line break would read as two names.
                if !entry.name.chars().any(char::is_control) {
                    out.push_str(prefix);
                    out.push_str(&entry.name);
                    out.push_str("\r\n");
                }
            }
        }
    }
}

/// A listing as a byte source for the data connection: formats the head,
/// then reads and formats the rest a page at a time as the connection takes
/// the text (the data connection reads ahead of the socket, so the next page
/// is read while the previous one is sent).
pub struct ListingReader {
    pending: std::vec::IntoIter<DirEntry>,
    rest: Option<(Box<dyn DirLister>, Option<glob::Pattern>)>,
    format: LineFormat,
}

impl ListingReader {
    pub fn new(head: ListingHead, format: LineFormat) -> Self {
        ListingReader {
            pending: head.entries.into_iter(),
            rest: head.rest,
            format,
        }
    }
}

#[async_trait]
impl FileReader for ListingReader {
    async fn read(&mut self, max: usize) -> StorageResult<Bytes> {
        let mut out = String::with_capacity(max.min(1 << 20) + 512);
        while out.len() < max {
            if let Some(entry) = self.pending.next() {
                self.format.write(&mut out, &entry);
                continue;
            }
            let Some((lister, pattern)) = &mut self.rest else {
                break;
            };
            let page = lister.next_page(LIST_PAGE).await?;
            if page.is_empty() {
                self.rest = None;
                break;
            }
            let kept: Vec<DirEntry> = page.into_iter().filter(|e| matches(pattern, e)).collect();
            self.pending = kept.into_iter();
        }
        Ok(Bytes::from(out))
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Names from storage go into line-based formats: a line break would forge
/// an entry, so control characters are shown as `?`.
fn display_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        name.into()
    }
}

/// One `ls -l` line (with CRLF), the format FileZilla, lftp, curl and Windows
/// clients parse: mode, links, owner, group, size, date, name. Dates within
/// six months show the time, older ones the year, like `ls`.
pub fn list_line(out: &mut String, name: &str, meta: &Metadata, now: DateTime<Utc>) {
    let mode = match (meta.kind, meta.readonly) {
        (EntryKind::Directory, false) => "drwxr-xr-x",
        (EntryKind::Directory, true) => "dr-xr-xr-x",
        (EntryKind::Symlink, _) => "lrwxrwxrwx",
        (_, false) => "-rw-r--r--",
        (_, true) => "-r--r--r--",
    };
    let modified: DateTime<Utc> = meta.modified.unwrap_or(SystemTime::UNIX_EPOCH).into();
    let month = MONTHS[modified.month0() as usize];
    let recent = (now - modified).num_days().abs() < 180;
    let _ = write!(
        out,
        "{mode} 1 ftp ftp {:>12} {month} {:>2} ",
        meta.size,
        modified.day()
    );
    if recent {
        let _ = write!(out, "{:02}:{:02}", modified.hour(), modified.minute());
    } else {
        let _ = write!(out, "{:>5}", modified.year());
    }
    let _ = write!(out, " {}\r\n", display_name(name));
}

/// Which facts MLSD/MLST show (OPTS MLST, RFC 3659 section 7.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlstFacts {
    pub kind: bool,
    pub size: bool,
    pub modify: bool,
    pub perm: bool,
}

impl Default for MlstFacts {
    fn default() -> Self {
        MlstFacts {
            kind: true,
            size: true,
            modify: true,
            perm: true,
        }
    }
}

impl MlstFacts {
    /// Parses `type;size;` (case-insensitive, unknown facts ignored).
    pub fn parse(list: &str) -> Self {
        let mut facts = MlstFacts {
            kind: false,
            size: false,
            modify: false,
            perm: false,
        };
        for fact in list.split(';').map(str::trim) {
            match fact.to_ascii_lowercase().as_str() {
                "type" => facts.kind = true,
                "size" => facts.size = true,
                "modify" => facts.modify = true,
                "perm" => facts.perm = true,
                _ => {}
            }
        }
        facts
    }

    /// The enabled facts as `type;size;` for the OPTS reply.
    pub fn enabled(&self) -> String {
        self.render(false)
    }

    /// The FEAT line's fact list: all supported facts, enabled ones starred.
    pub fn feat(&self) -> String {
        self.render(true)
    }

    fn render(&self, all: bool) -> String {
        let mut out = String::new();
        for (name, on) in [
            ("type", self.kind),
            ("size", self.size),
            ("modify", self.modify),
            ("perm", self.perm),
        ] {
            if on || all {
                out.push_str(name);
                if on && all {
                    out.push('*');
                }
                out.push(';');
            }
        }
        out
    }
}

/// The facts of one entry (`type=file;size=3;...;`), without the name.
pub fn mlsx_facts(out: &mut String, meta: &Metadata, perms: Permissions, facts: MlstFacts) {
    if facts.kind {
        let kind = match meta.kind {
            EntryKind::Directory => "dir",
            EntryKind::File => "file",
            EntryKind::Symlink => "OS.unix=symlink",
            EntryKind::Other => "OS.unix=other",
        };
        let _ = write!(out, "type={kind};");
    }
    if facts.size && !meta.is_dir() {
        let _ = write!(out, "size={};", meta.size);
    }
    if facts.modify
        && let Some(modified) = meta.modified
    {
        let _ = write!(out, "modify={};", format_timestamp(modified));
    }
    if facts.perm {
        let _ = write!(out, "perm={};", perm_fact(meta, perms));
    }
}

/// RFC 3659 section 7.5.5: what this account may do with the entry.
fn perm_fact(meta: &Metadata, perms: Permissions) -> String {
    let mut out = String::new();
    let writable = !meta.readonly;
    let mut add = |c: char, ok: bool| {
        if ok {
            out.push(c);
        }
    };
    if meta.is_dir() {
        add('e', true);
        add('l', perms.contains(Permissions::LIST));
        add('c', writable && perms.contains(Permissions::WRITE));
        add('m', writable && perms.contains(Permissions::MAKE_DIR));
        add('p', writable && perms.contains(Permissions::DELETE));
        add('d', writable && perms.contains(Permissions::REMOVE_DIR));
        add('f', writable && perms.contains(Permissions::RENAME));
    } else {
        add('r', perms.contains(Permissions::READ));
        add('w', writable && perms.contains(Permissions::WRITE));
        add('a', writable && perms.contains(Permissions::APPEND));
        add('d', writable && perms.contains(Permissions::DELETE));
        add('f', writable && perms.contains(Permissions::RENAME));
    }
    out
}

/// One MLSD line: facts, a space, the name, CRLF.
pub fn mlsd_line(
    out: &mut String,
    name: &str,
    meta: &Metadata,
    perms: Permissions,
    facts: MlstFacts,
) {
    mlsx_facts(out, meta, perms, facts);
    let _ = write!(out, " {}\r\n", display_name(name));
}

/// `YYYYMMDDHHMMSS` in UTC (RFC 3659 section 2.3).
pub fn format_timestamp(time: SystemTime) -> String {
    let t: DateTime<Utc> = time.into();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses `YYYYMMDDHHMMSS[.sss]` (UTC).
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    let mut time: SystemTime = Utc.from_utc_datetime(&naive).into();
    if let Some(fraction) = fraction {
        if fraction.is_empty()
            || fraction.len() > 9
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
        time += std::time::Duration::from_nanos(u64::from(nanos));
    }
    Some(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn meta(kind: EntryKind, size: u64, secs: u64) -> Metadata {
        Metadata {
            kind,
            size,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            readonly: false,
        }
    }

    #[test]
    fn ls_lines() {
        // 2021-01-02 03:04:05 UTC
        let t = 1_609_556_645;
        let now: DateTime<Utc> = (SystemTime::UNIX_EPOCH + Duration::from_secs(t + 3600)).into();
        let mut out = String::new();
        list_line(&mut out, "a.txt", &meta(EntryKind::File, 42, t), now);
        assert_eq!(
            out,
            "-rw-r--r-- 1 ftp ftp           42 Jan  2 03:04 a.txt\r\n"
        );
        out.clear();
        let later: DateTime<Utc> =
            (SystemTime::UNIX_EPOCH + Duration::from_secs(t + 400 * 86400)).into();
        list_line(&mut out, "d", &meta(EntryKind::Directory, 0, t), later);
        assert_eq!(out, "drwxr-xr-x 1 ftp ftp            0 Jan  2  2021 d\r\n");
        out.clear();
        list_line(&mut out, "bad\nname", &meta(EntryKind::File, 1, t), now);
        assert!(out.ends_with(" bad?name\r\n"));
    }

    #[test]
    fn mlsd_facts() {
        let mut out = String::new();
        mlsd_line(
            &mut out,
            "ü.txt",
            &meta(EntryKind::File, 3, 1_609_556_645),
            Permissions::all(),
            MlstFacts::default(),
        );
        assert_eq!(
            out,
            "type=file;size=3;modify=20210102030405;perm=rwadf; ü.txt\r\n"
        );
        out.clear();
        mlsd_line(
            &mut out,
            "d",
            &meta(EntryKind::Directory, 0, 0),
            Permissions::LIST,
            MlstFacts::parse("type;perm;"),
        );
        assert_eq!(out, "type=dir;perm=el; d\r\n");
    }

    #[test]
    fn facts_option() {
        let facts = MlstFacts::parse("Type;SIZE;bogus;");
        assert_eq!(facts.enabled(), "type;size;");
        assert_eq!(facts.feat(), "type*;size*;modify;perm;");
        assert_eq!(MlstFacts::parse("").enabled(), "");
    }

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_609_556_645);
        assert_eq!(format_timestamp(t), "20210102030405");
        assert_eq!(parse_timestamp("20210102030405"), Some(t));
        assert_eq!(
            parse_timestamp("20210102030405.5"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(parse_timestamp("2021010203040"), None);
        assert_eq!(parse_timestamp("20211302030405"), None);
        assert_eq!(parse_timestamp("2021010203040x"), None);
    }
}
