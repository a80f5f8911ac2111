//! Parsing shared by the builtin plugins, so that a permission list, a size or
//! a duration means the same in `auth-static`'s TOML, `auth-http`'s JSON and
//! the event plugins' config. No WIT here: each plugin maps the plain values
//! to its own generated types.

use std::time::Duration;

/// Permission bits in the order of the WIT `permissions` flags (`read` is bit
/// 0 ... `set-time` bit 8), so a plugin converts with `from_bits_truncate`.
pub mod permission {
    pub const READ: u16 = 1 << 0;
    pub const WRITE: u16 = 1 << 1;
    pub const APPEND: u16 = 1 << 2;
    pub const DELETE: u16 = 1 << 3;
    pub const RENAME: u16 = 1 << 4;
    pub const MAKE_DIR: u16 = 1 << 5;
    pub const REMOVE_DIR: u16 = 1 << 6;
    pub const LIST: u16 = 1 << 7;
    pub const SET_TIME: u16 = 1 << 8;
    pub const ALL: u16 = (1 << 9) - 1;
    pub const READ_ONLY: u16 = READ | LIST;
}

/// Permission words: `read`, `write`, `append`, `delete`, `rename`,
/// `make-dir`, `remove-dir`, `list`, `set-time`, or the shorthands `all` and
/// `read-only`. An unknown word is returned as the error.
pub fn parse_permissions<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<u16, String> {
    use permission::*;
    let mut bits = 0;
    for word in words.into_iter().map(str::trim).filter(|w| !w.is_empty()) {
        bits |= match word {
            "all" => ALL,
            "read-only" => READ_ONLY,
            "read" => READ,
            "write" => WRITE,
            "append" => APPEND,
            "delete" => DELETE,
            "rename" => RENAME,
            "make-dir" => MAKE_DIR,
            "remove-dir" => REMOVE_DIR,
            "list" => LIST,
            "set-time" => SET_TIME,
            other => return Err(other.to_string()),
        };
    }
    Ok(bits)
}

/// A byte count: a plain number, or a number with a unit (`10GiB`, `512 MiB`,
/// `1GB`, `64KiB`, `100B`), as in the server's config.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(format!("`{text}` is not a size like \"10GiB\"")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like \"10GiB\""))?;
    let bytes = value * factor as f64;
    if !(0.0..1.8e19).contains(&bytes) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// "3s", "500ms", "1m 30s".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like \"3s\" ({e})"))
}

/// An account's limits (the WIT `account-limits`), read by name from a
/// plugin's config (`auth-static`) or a JSON object (`auth-http`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
    pub upload_bytes_per_second: Option<u64>,
    pub download_bytes_per_second: Option<u64>,
    pub max_sessions: Option<u32>,
}

/// The limit names, as config keys and JSON fields.
pub const LIMIT_NAMES: [&str; 5] = [
    "quota_bytes",
    "quota_files",
    "upload_bytes_per_second",
    "download_bytes_per_second",
    "max_sessions",
];

impl Limits {
    /// Sets the limit `name` from its text (sizes may carry units); an
    /// unknown name or a bad value is an error naming it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let bad = |why: String| format!("limits.{name}: {why}");
        match name {
            "quota_bytes" => self.quota_bytes = Some(parse_size(value).map_err(bad)?),
            "upload_bytes_per_second" => {
                self.upload_bytes_per_second = Some(parse_size(value).map_err(bad)?)
            }
            "download_bytes_per_second" => {
                self.download_bytes_per_second = Some(parse_size(value).map_err(bad)?)
            }
            "quota_files" => {
                self.quota_files = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("`{value}` is not a number")))?,
                )
            }
            "max_sessions" => {
                self.max_sessions = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("`{value}` is not a number")))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown limit `{other}` (known: {})",
                    LIMIT_NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn permissions_and_limits() {
        use permission::*;
        assert_eq!(parse_permissions(["read", "list"]), Ok(READ | LIST));
        assert_eq!(parse_permissions("all".split(',')), Ok(ALL));
        assert_eq!(parse_permissions(["fly"]), Err("fly".into()));
        let mut limits = Limits::default();
        limits.set("quota_bytes", "1MiB").unwrap();
        limits.set("max_sessions", "2").unwrap();
        assert_eq!(limits.quota_bytes, Some(1 << 20));
        assert_eq!(limits.max_sessions, Some(2));
        assert!(limits.set("max_sessions", "two").is_err());
        assert!(limits.set("speed", "1").is_err());
    }
}
