//! Virtual paths to object keys. A file `/a/b.txt` is the object
//! `PREFIX/a/b.txt`; a directory `/a` is every key starting `PREFIX/a/`, and
//! an empty one exists because of its marker object `PREFIX/a/` (what MKD
//! writes, as the S3 console and rclone do).

/// S3 refuses longer keys.
const MAX_KEY: usize = 1024;

/// Why a path has no key.
#[derive(Debug, PartialEq, Eq)]
pub enum BadPath {
    /// `/` (or the account's home, for operations that need a file).
    Root,
    /// Not absolute, not normalized, or too long for a key.
    Invalid(&'static str),
}

/// One session's mapping.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Empty, or ending in `/`.
    prefix: String,
}

impl Keys {
    pub fn new(prefix: String) -> Keys {
        debug_assert!(prefix.is_empty() || prefix.ends_with('/'));
        Keys { prefix }
    }

    /// The object key of a file path.
    pub fn object(&self, path: &str) -> Result<String, BadPath> {
        let rel = relative(path)?;
        if rel.is_empty() {
            return Err(BadPath::Root);
        }
        let key = format!("{}{rel}", self.prefix);
        if key.len() > MAX_KEY {
            return Err(BadPath::Invalid("name too long for an object key"));
        }
        Ok(key)
    }

    /// The prefix every key inside directory `path` starts with (also the
    /// key of its marker, except for `/`, which has none).
    pub fn dir(&self, path: &str) -> Result<String, BadPath> {
        let rel = relative(path)?;
        if rel.is_empty() {
            return Ok(self.prefix.clone());
        }
        let key = format!("{}{rel}/", self.prefix);
        if key.len() > MAX_KEY {
            return Err(BadPath::Invalid("name too long for an object key"));
        }
        Ok(key)
    }

    /// The name a listed key or common prefix has inside the directory whose
    /// keys start with `dir`: `None` for the directory's own marker and for
    /// names the FTP side could never address (empty, `.`/`..`, control
    /// characters; these come only from objects other tools wrote).
    pub fn name_in<'k>(dir: &str, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(dir)?;
        let name = rest.strip_suffix('/').unwrap_or(rest);
        let usable = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.chars().any(char::is_control);
        usable.then_some(name)
    }
}

/// The parent directory of a path (`/a/b` -> `/a`, `/a` -> `/`), `None` for `/`.
pub fn parent(path: &str) -> Option<&str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let cut = trimmed.rfind('/')?;
    if trimmed.is_empty() {
        return None;
    }
    Some(if cut == 0 { "/" } else { &trimmed[..cut] })
}

/// The path without its leading `/`; the host normalized it already, so
/// anything odd is refused rather than repaired.
fn relative(path: &str) -> Result<&str, BadPath> {
    let rest = path
        .strip_prefix('/')
        .ok_or(BadPath::Invalid("path must be absolute"))?;
    if rest.is_empty() {
        return Ok(rest);
    }
    let bad = |s: &str| s.is_empty() || s == "." || s == ".." || s.chars().any(char::is_control);
    if rest.split('/').any(bad) {
        return Err(BadPath::Invalid("path is not normalized"));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_dirs() {
        let k = Keys::new("ftp/alice/".into());
        assert_eq!(k.object("/a/b.txt").unwrap(), "ftp/alice/a/b.txt");
        assert_eq!(k.dir("/a").unwrap(), "ftp/alice/a/");
        assert_eq!(k.dir("/").unwrap(), "ftp/alice/");
        assert_eq!(k.object("/"), Err(BadPath::Root));
        let bare = Keys::new(String::new());
        assert_eq!(bare.object("/x").unwrap(), "x");
        assert_eq!(bare.dir("/").unwrap(), "");
        assert_eq!(bare.dir("/Grüße dir").unwrap(), "Grüße dir/");
    }

    #[test]
    fn refuses_what_the_host_never_sends() {
        let k = Keys::new(String::new());
        for bad in ["a", "/a//b", "/a/../b", "/./a", "/a/", "/a\nb"] {
            assert!(matches!(k.object(bad), Err(BadPath::Invalid(_))), "{bad:?}");
        }
        let long = format!("/{}", "x".repeat(1100));
        assert!(matches!(k.object(&long), Err(BadPath::Invalid(_))));
    }

    #[test]
    fn names_inside_a_directory() {
        assert_eq!(Keys::name_in("p/d/", "p/d/f.txt"), Some("f.txt"));
        assert_eq!(Keys::name_in("p/d/", "p/d/sub/"), Some("sub"));
        assert_eq!(Keys::name_in("p/d/", "p/d/"), None, "the marker itself");
        assert_eq!(Keys::name_in("p/d/", "p/d//"), None);
        assert_eq!(Keys::name_in("p/d/", "p/d/../"), None);
        assert_eq!(Keys::name_in("p/d/", "p/d/a\rb"), None);
        assert_eq!(Keys::name_in("", "top"), Some("top"));
        assert_eq!(Keys::name_in("p/d/", "q/x"), None);
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
    }
}
