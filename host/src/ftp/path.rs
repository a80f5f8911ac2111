//! Paths: turning a client's path argument into a normalized path, and that
//! into a storage path.
//!
//! The client sees a chroot-like tree: `/` is the account's home. A client path
//! is absolute, normalized (no `.`, `..` or empty segments) and can never name
//! anything above `/`, because `..` at the root stays at the root. The storage
//! path is the home joined with the client path, so every storage call stays
//! inside the home by construction.

/// Why a path argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Contains NUL or another control character (`553`).
    InvalidName,
}

/// Resolves `arg` against the client's working directory `cwd` (itself a
/// normalized client path) into a normalized client path.
pub fn resolve(cwd: &str, arg: &str) -> Result<String, PathError> {
    if arg.chars().any(char::is_control) {
        return Err(PathError::InvalidName);
    }
    let mut segments: Vec<&str> = Vec::new();
    if !arg.starts_with('/') {
        segments.extend(cwd.split('/').filter(|s| !s.is_empty()));
    }
    for segment in arg.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    Ok(join_segments(&segments))
}

fn join_segments(segments: &[&str]) -> String {
    if segments.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
    out
}

/// Normalizes an account's home the same way (a home is trusted, but may be
/// written loosely, e.g. with a trailing slash).
pub fn normalize_home(home: &str) -> String {
    resolve("/", home).unwrap_or_else(|_| "/".to_string())
}

/// The storage path for a client path under `home`.
pub fn to_storage(home: &str, client: &str) -> String {
    match (home, client) {
        ("/", _) => client.to_string(),
        (_, "/") => home.to_string(),
        _ => format!("{home}{client}"),
    }
}

/// The client path of a storage path under `home` (the inverse of
/// [`to_storage`]).
pub fn to_client(home: &str, storage: &str) -> String {
    if home == "/" {
        return storage.to_string();
    }
    match storage.strip_prefix(home) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => storage.to_string(),
    }
}

/// The last segment of a normalized path (`""` for the root).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// The parent of a normalized path (the root is its own parent).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Joins a directory and a single name.
pub fn child(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_client_inverts_to_storage() {
        for (home, client) in [("/", "/a/b"), ("/home/u", "/"), ("/home/u", "/x/y")] {
            assert_eq!(to_client(home, &to_storage(home, client)), client);
        }
        assert_eq!(to_client("/home/u", "/home/uv"), "/home/uv");
    }

    #[test]
    fn relative_and_absolute() {
        assert_eq!(resolve("/", "a/b").unwrap(), "/a/b");
        assert_eq!(resolve("/x", "a").unwrap(), "/x/a");
        assert_eq!(resolve("/x", "/a").unwrap(), "/a");
        assert_eq!(resolve("/x/y", "").unwrap(), "/x/y");
    }

    #[test]
    fn dots_and_slashes() {
        assert_eq!(resolve("/", "a//b/./c/").unwrap(), "/a/b/c");
        assert_eq!(resolve("/a/b", "..").unwrap(), "/a");
        assert_eq!(resolve("/a/b", "../../c").unwrap(), "/c");
        assert_eq!(resolve("/", "...").unwrap(), "/...");
    }

    #[test]
    fn escapes_stay_at_root() {
        assert_eq!(resolve("/", "..").unwrap(), "/");
        assert_eq!(resolve("/a", "../../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(resolve("/", "/../..//../x").unwrap(), "/x");
        assert_eq!(
            to_storage("/home/bob", &resolve("/", "../alice").unwrap()),
            "/home/bob/alice"
        );
        assert_eq!(
            to_storage("/home/bob", &resolve("/", "..").unwrap()),
            "/home/bob"
        );
    }

    #[test]
    fn control_characters_refused() {
        assert_eq!(resolve("/", "a\0b"), Err(PathError::InvalidName));
        assert_eq!(resolve("/", "a\nb"), Err(PathError::InvalidName));
        assert_eq!(resolve("/", "a\u{7f}"), Err(PathError::InvalidName));
        assert_eq!(resolve("/", "ünïcode ok").unwrap(), "/ünïcode ok");
    }

    #[test]
    fn storage_mapping() {
        assert_eq!(to_storage("/", "/a"), "/a");
        assert_eq!(to_storage("/h", "/"), "/h");
        assert_eq!(to_storage("/h", "/a/b"), "/h/a/b");
        assert_eq!(normalize_home("/h/"), "/h");
        assert_eq!(normalize_home(""), "/");
    }

    #[test]
    fn helpers() {
        assert_eq!(file_name("/a/b"), "b");
        assert_eq!(file_name("/"), "");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(child("/", "x"), "/x");
        assert_eq!(child("/a", "x"), "/a/x");
    }
}
