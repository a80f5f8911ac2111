//! The plugin's configuration (the site's `storage.config` table, read through
//! `wasi:config/store`) and where a session's files live in the bucket.

/// Smallest part S3 accepts in a multipart upload, except for the last one.
pub const MIN_PART: u64 = 5 << 20;
/// Largest part (and largest single CopyObject source) S3 accepts.
pub const MAX_PART: u64 = 5 << 30;

/// Every key the plugin reads; anything else in the table is a mistake.
const KNOWN_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "bucket",
    "prefix",
    "prefix_attribute",
    "path_style",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "part_size",
    "read_size",
];

/// How to reach the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// `host` or `host:port`, as it goes into the URL and the `Host` header.
    pub authority: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: Endpoint,
    pub region: String,
    pub bucket: String,
    /// Where the site's files start in the bucket; may hold `{user}`.
    pub prefix: String,
    /// An account attribute whose value is appended to `prefix` per session.
    pub prefix_attribute: Option<String>,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Bytes per uploaded part; a file smaller than this is one PutObject.
    pub part_size: usize,
    /// Bytes per ranged GET of a download.
    pub read_size: u64,
}

impl Settings {
    /// Reads the flat key/value pairs the host serves. The error names the key.
    pub fn parse(pairs: &[(String, String)]) -> Result<Settings, String> {
        for (key, _) in pairs {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "unknown config key `{key}` (known: {})",
                    KNOWN_KEYS.join(", ")
                ));
            }
        }
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
        let required = |key: &str| {
            get(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("config key `{key}` is missing"))
        };
        let endpoint = parse_endpoint(required("endpoint")?)?;
        let bucket = required("bucket")?.to_string();
        if !valid_bucket(&bucket) {
            return Err(format!(
                "config key `bucket`: `{bucket}` is not a valid bucket name"
            ));
        }
        let path_style = match get("path_style") {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(format!(
                    "config key `path_style` must be true or false, not `{other}`"
                ));
            }
        };
        let part_size = size(get("part_size"), "part_size", 8 << 20)?;
        if !(MIN_PART..=MAX_PART).contains(&part_size) {
            return Err("config key `part_size` must be between 5MiB and 5GiB".into());
        }
        let read_size = size(get("read_size"), "read_size", 8 << 20)?;
        if !(64 << 10..=1 << 30).contains(&read_size) {
            return Err("config key `read_size` must be between 64KiB and 1GiB".into());
        }
        let prefix = get("prefix").unwrap_or("").to_string();
        // Check the template once with a harmless user, so a typo shows at
        // the first login rather than as odd keys.
        root_prefix(&prefix, "user", None).map_err(|why| format!("config key `prefix`: {why}"))?;
        Ok(Settings {
            endpoint,
            region: get("region").unwrap_or("us-east-1").to_string(),
            bucket,
            prefix,
            prefix_attribute: get("prefix_attribute")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            path_style,
            access_key_id: required("access_key_id")?.to_string(),
            secret_access_key: required("secret_access_key")?.to_string(),
            session_token: get("session_token")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            part_size: usize::try_from(part_size).map_err(|_| "part_size too large")?,
            read_size,
        })
    }

    /// The session's key prefix: `prefix` with `{user}` filled in, then the
    /// value of `prefix_attribute` from the account, if configured. Empty, or
    /// ending in `/`.
    pub fn session_prefix(
        &self,
        user: &str,
        attributes: &[(String, String)],
    ) -> Result<String, String> {
        let extra = match &self.prefix_attribute {
            None => None,
            Some(name) => Some(
                attributes
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| {
                        format!("account `{user}` has no `{name}` attribute (prefix_attribute)")
                    })?,
            ),
        };
        root_prefix(&self.prefix, user, extra)
    }
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "config key `endpoint`: `{text}` must start with http:// or https://"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "config key `endpoint`: `{text}` must be only scheme, host and port \
             (like \"https://s3.eu-west-1.amazonaws.com\")"
        ));
    }
    Ok(Endpoint {
        https,
        authority: authority.to_ascii_lowercase(),
    })
}

/// S3's rules, loosely: 3-63 characters of lower-case letters, digits, `.`
/// and `-` (older buckets may also have `_` and upper case).
fn valid_bucket(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `prefix` with `{user}` replaced, then `extra` appended, as a key prefix.
fn root_prefix(template: &str, user: &str, extra: Option<&str>) -> Result<String, String> {
    let mut text = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        text.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after
            .find('}')
            .ok_or("`{` without `}` (the only placeholder is `{user}`)")?;
        match &after[..=end] {
            "{user}" => {
                if !valid_segment(user) {
                    return Err(format!(
                        "user name `{user}` cannot be part of an object key"
                    ));
                }
                text.push_str(user);
            }
            other => return Err(format!("unknown placeholder `{other}` (known: `{{user}}`)")),
        }
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if let Some(extra) = extra {
        text.push('/');
        text.push_str(extra);
    }
    let segments: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(bad) = segments.iter().find(|s| !valid_segment(s)) {
        return Err(format!("`{bad}` cannot be part of an object key prefix"));
    }
    let mut prefix = segments.join("/");
    if !prefix.is_empty() {
        prefix.push('/');
    }
    Ok(prefix)
}

/// A path segment we are willing to put into a key: no `.`/`..`, no control
/// characters, no backslash (some tools treat it as a separator).
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains('/')
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
}

/// A byte count: a number with an optional unit (`8MiB`, `16 MiB`, `5GB`).
fn size(text: Option<&str>, key: &str, default: u64) -> Result<u64, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    let bad = || format!("config key `{key}`: `{text}` is not a size like \"8MiB\"");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn minimal() -> Vec<(String, String)> {
        pairs(&[
            ("endpoint", "http://127.0.0.1:8333"),
            ("bucket", "files"),
            ("access_key_id", "AK"),
            ("secret_access_key", "SK"),
        ])
    }

    #[test]
    fn defaults() {
        let s = Settings::parse(&minimal()).unwrap();
        assert_eq!(
            s.endpoint,
            Endpoint {
                https: false,
                authority: "127.0.0.1:8333".into()
            }
        );
        assert_eq!(s.region, "us-east-1");
        assert!(s.path_style);
        assert_eq!(s.part_size, 8 << 20);
        assert_eq!(s.read_size, 8 << 20);
        assert_eq!(s.session_prefix("alice", &[]).unwrap(), "");
    }

    #[test]
    fn names_the_bad_key() {
        let mut p = minimal();
        p.push(("bucekt".into(), "x".into()));
        assert!(Settings::parse(&p).unwrap_err().contains("`bucekt`"));
        let p: Vec<_> = minimal()
            .into_iter()
            .filter(|(k, _)| k != "secret_access_key")
            .collect();
        assert!(
            Settings::parse(&p)
                .unwrap_err()
                .contains("`secret_access_key` is missing")
        );
        for (key, value) in [
            ("endpoint", "s3.example.com"),
            ("endpoint", "https://s3.example.com/path"),
            ("path_style", "yes"),
            ("part_size", "1MiB"),
            ("part_size", "8 parsecs"),
            ("read_size", "1KiB"),
            ("bucket", "a/b"),
            ("prefix", "{nobody}/"),
            ("prefix", "a/../b"),
        ] {
            let mut p: Vec<_> = minimal().into_iter().filter(|(k, _)| k != key).collect();
            p.push((key.into(), value.into()));
            let err = Settings::parse(&p).unwrap_err();
            assert!(err.contains(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn sizes_with_units() {
        let mut p = minimal();
        p.push(("part_size".into(), "16 MiB".into()));
        p.push(("read_size".into(), "1MiB".into()));
        let s = Settings::parse(&p).unwrap();
        assert_eq!(s.part_size, 16 << 20);
        assert_eq!(s.read_size, 1 << 20);
    }

    #[test]
    fn prefix_per_user_and_attribute() {
        let mut p = minimal();
        p.push(("prefix".into(), "/ftp/{user}".into()));
        let s = Settings::parse(&p).unwrap();
        assert_eq!(s.session_prefix("alice", &[]).unwrap(), "ftp/alice/");
        assert!(s.session_prefix("..", &[]).is_err());
        assert!(s.session_prefix("a/b", &[]).is_err());

        let mut p = minimal();
        p.push(("prefix".into(), "tenants".into()));
        p.push(("prefix_attribute".into(), "s3_prefix".into()));
        let s = Settings::parse(&p).unwrap();
        let attrs = vec![("s3_prefix".to_string(), "acme/ftp/".to_string())];
        assert_eq!(
            s.session_prefix("bob", &attrs).unwrap(),
            "tenants/acme/ftp/"
        );
        assert!(
            s.session_prefix("bob", &[])
                .unwrap_err()
                .contains("no `s3_prefix` attribute")
        );
        let evil = vec![("s3_prefix".to_string(), "../other".to_string())];
        assert!(s.session_prefix("bob", &evil).is_err());
    }
}
