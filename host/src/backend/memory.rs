//! In-memory backends for tests: [`MemoryAuth`] (plaintext users) and
//! [`MemoryFs`] (one shared tree, a [`StorageProvider`] and [`Storage`] at once).
//!
//! They honour every trait method and every error kind a real plugin can
//! return, and add knobs tests need: a capacity (for `NoSpace`), read-only
//! entries, injected failures per path, and a per-chunk read delay (for ABOR).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Account, AuthError, Authenticator, Credentials, DirEntry, DirLister, EntryKind, ErrorKind,
    FileReader, FileWriter, Metadata, Permissions, SessionFacts, Storage, StorageError,
    StorageProvider, StorageResult, VecLister, WriteMode,
};

struct MemoryUser {
    password: String,
    account: Account,
    disabled: bool,
}

/// Users with plaintext passwords.
#[derive(Default)]
pub struct MemoryAuth {
    users: Mutex<HashMap<String, MemoryUser>>,
    /// Returned by every login while set (to test `Unavailable`, `PluginFailed`).
    failure: Mutex<Option<AuthError>>,
}

impl MemoryAuth {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_user(
        self,
        name: &str,
        password: &str,
        home: &str,
        permissions: Permissions,
    ) -> Self {
        self.add_user(name, password, home, permissions);
        self
    }

    pub fn add_user(&self, name: &str, password: &str, home: &str, permissions: Permissions) {
        self.add_account(
            password,
            Account {
                user: name.to_string(),
                home: home.to_string(),
                permissions,
                ..Account::default()
            },
        );
    }

    /// Adds a user with every account field given (limits, attributes).
    pub fn add_account(&self, password: &str, account: Account) {
        let name = account.user.clone();
        lock(&self.users).insert(
            name,
            MemoryUser {
                password: password.to_string(),
                account,
                disabled: false,
            },
        );
    }

    pub fn disable(&self, name: &str) {
        if let Some(user) = lock(&self.users).get_mut(name) {
            user.disabled = true;
        }
    }

    pub fn fail_with(&self, failure: Option<AuthError>) {
        *lock(&self.failure) = failure;
    }
}

#[async_trait]
impl Authenticator for MemoryAuth {
    async fn login(&self, credentials: &Credentials) -> Result<Account, AuthError> {
        if let Some(failure) = lock(&self.failure).clone() {
            return Err(failure);
        }
        let users = lock(&self.users);
        match users.get(&credentials.user) {
            Some(user) if user.password == credentials.password => {
                if user.disabled {
                    Err(AuthError::Disabled(None))
                } else {
                    Ok(user.account.clone())
                }
            }
            _ => Err(AuthError::BadCredentials(None)),
        }
    }
}

/// A poisoned lock only means a test panicked elsewhere; keep going.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Node {
    Dir {
        modified: SystemTime,
    },
    File {
        data: Vec<u8>,
        modified: SystemTime,
        readonly: bool,
    },
}

impl Node {
    fn metadata(&self) -> Metadata {
        match self {
            Node::Dir { modified } => Metadata {
                kind: EntryKind::Directory,
                size: 0,
                modified: Some(*modified),
                readonly: false,
            },
            Node::File {
                data,
                modified,
                readonly,
            } => Metadata {
                kind: EntryKind::File,
                size: data.len() as u64,
                modified: Some(*modified),
                readonly: *readonly,
            },
        }
    }
}

struct Tree {
    /// Every entry by absolute path; `/` is always a directory.
    nodes: BTreeMap<String, Node>,
    /// Total file bytes allowed (`NoSpace` beyond).
    capacity: Option<u64>,
    /// Every operation on these paths fails with the given kind.
    failures: HashMap<String, ErrorKind>,
    /// Sleep before each chunk a reader returns.
    read_delay: Duration,
}

impl Tree {
    fn used(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match n {
                Node::File { data, .. } => data.len() as u64,
                Node::Dir { .. } => 0,
            })
            .sum()
    }

    fn check(&self, path: &str) -> StorageResult<()> {
        let valid = path.starts_with('/')
            && (path == "/" || !path.ends_with('/'))
            && !path.chars().any(char::is_control)
            && path
                .split('/')
                .skip(1)
                .all(|s| path == "/" || !(s.is_empty() || s == "." || s == ".."));
        if !valid {
            return Err(StorageError::with_message(
                ErrorKind::InvalidName,
                path.to_string(),
            ));
        }
        if let Some(kind) = self.failures.get(path) {
            return Err(StorageError::new(*kind));
        }
        Ok(())
    }

    /// The parent of `path` must exist and be a directory.
    fn check_parent(&self, path: &str) -> StorageResult<()> {
        let parent = parent_of(path);
        match self.nodes.get(parent) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(Node::File { .. }) => Err(StorageError::new(ErrorKind::NotADirectory)),
            None => Err(StorageError::new(ErrorKind::NotFound)),
        }
    }

    fn children(&self, dir: &str) -> impl Iterator<Item = (&String, &Node)> {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        let start = prefix.len();
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(move |(k, _)| k.len() > start && !k[start..].contains('/'))
    }

    fn has_children(&self, dir: &str) -> bool {
        self.children(dir).next().is_some()
    }
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn not_found() -> StorageError {
    StorageError::new(ErrorKind::NotFound)
}

/// A shared in-memory file tree. Cloning shares the tree.
#[derive(Clone)]
pub struct MemoryFs {
    tree: Arc<Mutex<Tree>>,
    /// The facts of every session opened, oldest first, for tests to check.
    opened: Arc<Mutex<Vec<SessionFacts>>>,
}

impl Default for MemoryFs {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "/".to_string(),
            Node::Dir {
                modified: SystemTime::now(),
            },
        );
        MemoryFs {
            tree: Arc::new(Mutex::new(Tree {
                nodes,
                capacity: None,
                failures: HashMap::new(),
                read_delay: Duration::ZERO,
            })),
            opened: Arc::default(),
        }
    }
}

impl MemoryFs {
    pub fn new() -> Self {
        Self::default()
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        lock(&self.tree)
    }

    /// Creates `path` and its missing parents as directories.
    pub fn mkdir_all(&self, path: &str) {
        let mut tree = self.tree();
        let mut current = String::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            current.push('/');
            current.push_str(segment);
            tree.nodes.entry(current.clone()).or_insert(Node::Dir {
                modified: SystemTime::now(),
            });
        }
    }

    /// Creates or replaces a file (parents are created).
    pub fn put_file(&self, path: &str, data: &[u8]) {
        self.mkdir_all(parent_of(path));
        self.tree().nodes.insert(
            path.to_string(),
            Node::File {
                data: data.to_vec(),
                modified: SystemTime::now(),
                readonly: false,
            },
        );
    }

    /// A file's content, if it is a file.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        match self.tree().nodes.get(path) {
            Some(Node::File { data, .. }) => Some(data.clone()),
            _ => None,
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.tree().nodes.contains_key(path)
    }

    pub fn set_readonly(&self, path: &str) {
        if let Some(Node::File { readonly, .. }) = self.tree().nodes.get_mut(path) {
            *readonly = true;
        }
    }

    pub fn set_modified_time(&self, path: &str, time: SystemTime) {
        if let Some(Node::File { modified, .. } | Node::Dir { modified }) =
            self.tree().nodes.get_mut(path)
        {
            *modified = time;
        }
    }

    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.tree().capacity = capacity;
    }

    pub fn fail(&self, path: &str, kind: ErrorKind) {
        self.tree().failures.insert(path.to_string(), kind);
    }

    pub fn set_read_delay(&self, delay: Duration) {
        self.tree().read_delay = delay;
    }

    /// The facts of every session opened so far, oldest first.
    pub fn opened_sessions(&self) -> Vec<SessionFacts> {
        lock(&self.opened).clone()
    }
}

impl StorageProvider for MemoryFs {
    fn open_session(&self, facts: &SessionFacts) -> Arc<dyn Storage> {
        lock(&self.opened).push(facts.clone());
        Arc::new(self.clone())
    }
}

#[async_trait]
impl Storage for MemoryFs {
    async fn stat(&self, path: &str) -> StorageResult<Metadata> {
        let tree = self.tree();
        tree.check(path)?;
        tree.nodes
            .get(path)
            .map(Node::metadata)
            .ok_or_else(not_found)
    }

    async fn list_dir(&self, path: &str) -> StorageResult<Box<dyn DirLister>> {
        let tree = self.tree();
        tree.check(path)?;
        match tree.nodes.get(path) {
            Some(Node::Dir { .. }) => {}
            Some(Node::File { .. }) => return Err(StorageError::new(ErrorKind::NotADirectory)),
            None => return Err(not_found()),
        }
        let entries = tree
            .children(path)
            .map(|(key, node)| DirEntry {
                name: key[key.rfind('/').map_or(0, |i| i + 1)..].to_string(),
                metadata: node.metadata(),
            })
            .collect();
        Ok(Box::new(VecLister::new(entries)))
    }

    async fn open_read(&self, path: &str, offset: u64) -> StorageResult<Box<dyn FileReader>> {
        let tree = self.tree();
        tree.check(path)?;
        match tree.nodes.get(path) {
            Some(Node::File { .. }) => Ok(Box::new(MemoryReader {
                fs: self.clone(),
                path: path.to_string(),
                pos: offset,
                delay: tree.read_delay,
            })),
            Some(Node::Dir { .. }) => Err(StorageError::new(ErrorKind::IsADirectory)),
            None => Err(not_found()),
        }
    }

    async fn open_write(&self, path: &str, mode: WriteMode) -> StorageResult<Box<dyn FileWriter>> {
        let mut tree = self.tree();
        tree.check(path)?;
        tree.check_parent(path)?;
        let now = SystemTime::now();
        let node = tree.nodes.entry(path.to_string()).or_insert(Node::File {
            data: Vec::new(),
            modified: now,
            readonly: false,
        });
        let pos = match node {
            Node::Dir { .. } => return Err(StorageError::new(ErrorKind::IsADirectory)),
            Node::File { readonly: true, .. } => {
                return Err(StorageError::new(ErrorKind::PermissionDenied));
            }
            Node::File { data, modified, .. } => {
                *modified = now;
                match mode {
                    WriteMode::Truncate => {
                        data.clear();
                        0
                    }
                    WriteMode::Append => data.len() as u64,
                    WriteMode::Offset(offset) => offset,
                }
            }
        };
        Ok(Box::new(MemoryWriter {
            fs: self.clone(),
            path: path.to_string(),
            pos,
        }))
    }

    async fn make_dir(&self, path: &str) -> StorageResult<()> {
        let mut tree = self.tree();
        tree.check(path)?;
        tree.check_parent(path)?;
        if tree.nodes.contains_key(path) {
            return Err(StorageError::new(ErrorKind::AlreadyExists));
        }
        tree.nodes.insert(
            path.to_string(),
            Node::Dir {
                modified: SystemTime::now(),
            },
        );
        Ok(())
    }

    async fn remove_dir(&self, path: &str) -> StorageResult<()> {
        let mut tree = self.tree();
        tree.check(path)?;
        match tree.nodes.get(path) {
            Some(Node::Dir { .. }) if path == "/" => {
                Err(StorageError::new(ErrorKind::PermissionDenied))
            }
            Some(Node::Dir { .. }) if tree.has_children(path) => {
                Err(StorageError::new(ErrorKind::NotEmpty))
            }
            Some(Node::Dir { .. }) => {
                tree.nodes.remove(path);
                Ok(())
            }
            Some(Node::File { .. }) => Err(StorageError::new(ErrorKind::NotADirectory)),
            None => Err(not_found()),
        }
    }

    async fn delete(&self, path: &str) -> StorageResult<()> {
        let mut tree = self.tree();
        tree.check(path)?;
        match tree.nodes.get(path) {
            Some(Node::File { readonly: true, .. }) => {
                Err(StorageError::new(ErrorKind::PermissionDenied))
            }
            Some(Node::File { .. }) => {
                tree.nodes.remove(path);
                Ok(())
            }
            Some(Node::Dir { .. }) => Err(StorageError::new(ErrorKind::IsADirectory)),
            None => Err(not_found()),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> StorageResult<()> {
        let mut tree = self.tree();
        tree.check(from)?;
        tree.check(to)?;
        tree.check_parent(to)?;
        if from == "/" || to.starts_with(&format!("{from}/")) {
            return Err(StorageError::with_message(
                ErrorKind::InvalidName,
                "cannot move a directory into itself",
            ));
        }
        let from_is_dir = match tree.nodes.get(from) {
            Some(Node::File { readonly: true, .. }) => {
                return Err(StorageError::new(ErrorKind::PermissionDenied));
            }
            Some(node) => matches!(node, Node::Dir { .. }),
            None => return Err(not_found()),
        };
        if from == to {
            return Ok(());
        }
        match tree.nodes.get(to) {
            Some(Node::Dir { .. }) => return Err(StorageError::new(ErrorKind::AlreadyExists)),
            Some(Node::File { .. }) if from_is_dir => {
                return Err(StorageError::new(ErrorKind::NotADirectory));
            }
            _ => {}
        }
        let prefix = format!("{from}/");
        let moved: Vec<String> = tree
            .nodes
            .range(from.to_string()..)
            .take_while(|(k, _)| k.starts_with(from))
            .filter(|(k, _)| *k == from || k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for old in moved {
            if let Some(node) = tree.nodes.remove(&old) {
                tree.nodes
                    .insert(format!("{to}{}", &old[from.len()..]), node);
            }
        }
        Ok(())
    }

    async fn set_modified(&self, path: &str, time: SystemTime) -> StorageResult<()> {
        let mut tree = self.tree();
        tree.check(path)?;
        match tree.nodes.get_mut(path) {
            Some(Node::File { modified, .. } | Node::Dir { modified }) => {
                *modified = time;
                Ok(())
            }
            None => Err(not_found()),
        }
    }
}

struct MemoryReader {
    fs: MemoryFs,
    path: String,
    pos: u64,
    delay: Duration,
}

#[async_trait]
impl FileReader for MemoryReader {
    async fn read(&mut self, max: usize) -> StorageResult<Bytes> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let tree = self.fs.tree();
        let Some(Node::File { data, .. }) = tree.nodes.get(&self.path) else {
            return Err(not_found());
        };
        let start = usize::try_from(self.pos)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(max).min(data.len());
        self.pos = end as u64;
        Ok(Bytes::copy_from_slice(&data[start..end]))
    }
}

struct MemoryWriter {
    fs: MemoryFs,
    path: String,
    pos: u64,
}

#[async_trait]
impl FileWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        let mut tree = self.fs.tree();
        let used = tree.used();
        let capacity = tree.capacity;
        let Some(Node::File { data, modified, .. }) = tree.nodes.get_mut(&self.path) else {
            return Err(not_found());
        };
        let start = usize::try_from(self.pos).map_err(|_| StorageError::new(ErrorKind::NoSpace))?;
        let end = start + chunk.len();
        let growth = end.saturating_sub(data.len()) as u64;
        if capacity.is_some_and(|cap| used + growth > cap) {
            return Err(StorageError::new(ErrorKind::NoSpace));
        }
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(&chunk);
        *modified = SystemTime::now();
        self.pos = end as u64;
        Ok(())
    }

    async fn finish(self: Box<Self>) -> StorageResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn names(lister: Box<dyn DirLister>) -> Vec<String> {
        let mut entries = crate::backend::read_all(lister).await.unwrap();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.into_iter().map(|e| e.name).collect()
    }

    #[tokio::test]
    async fn tree_operations() {
        let fs = MemoryFs::new();
        fs.put_file("/a/b.txt", b"hello");
        fs.mkdir_all("/a/c/d");
        fs.put_file("/ab", b"x");
        assert_eq!(names(fs.list_dir("/").await.unwrap()).await, ["a", "ab"]);
        assert_eq!(
            names(fs.list_dir("/a").await.unwrap()).await,
            ["b.txt", "c"]
        );
        assert_eq!(
            fs.list_dir("/a/b.txt").await.err().map(|e| e.kind),
            Some(ErrorKind::NotADirectory)
        );
        assert_eq!(
            fs.stat("/nope").await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            fs.stat("/a/../b").await.unwrap_err().kind,
            ErrorKind::InvalidName
        );
        assert_eq!(
            fs.make_dir("/a").await.unwrap_err().kind,
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            fs.make_dir("/x/y").await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            fs.make_dir("/ab/y").await.unwrap_err().kind,
            ErrorKind::NotADirectory
        );
        assert_eq!(
            fs.remove_dir("/a").await.unwrap_err().kind,
            ErrorKind::NotEmpty
        );
        assert_eq!(
            fs.remove_dir("/ab").await.unwrap_err().kind,
            ErrorKind::NotADirectory
        );
        assert_eq!(
            fs.delete("/a").await.unwrap_err().kind,
            ErrorKind::IsADirectory
        );
        fs.rename("/a", "/z").await.unwrap();
        assert_eq!(fs.file("/z/b.txt").unwrap(), b"hello");
        assert!(fs.exists("/z/c/d"));
        assert!(!fs.exists("/a"));
        assert_eq!(
            fs.rename("/z", "/z/c/e").await.unwrap_err().kind,
            ErrorKind::InvalidName
        );
        fs.remove_dir("/z/c/d").await.unwrap();
        fs.delete("/z/b.txt").await.unwrap();
        assert_eq!(names(fs.list_dir("/z").await.unwrap()).await, ["c"]);
    }

    #[tokio::test]
    async fn reads_and_writes() {
        let fs = MemoryFs::new();
        let mut w = fs.open_write("/f", WriteMode::Truncate).await.unwrap();
        w.write(Bytes::from_static(b"hello ")).await.unwrap();
        w.write(Bytes::from_static(b"world")).await.unwrap();
        w.finish().await.unwrap();
        let mut w = fs.open_write("/f", WriteMode::Append).await.unwrap();
        w.write(Bytes::from_static(b"!")).await.unwrap();
        drop(w);
        let mut w = fs.open_write("/f", WriteMode::Offset(6)).await.unwrap();
        w.write(Bytes::from_static(b"W")).await.unwrap();
        assert_eq!(fs.file("/f").unwrap(), b"hello World!");
        let mut r = fs.open_read("/f", 6).await.unwrap();
        assert_eq!(r.read(3).await.unwrap(), "Wor");
        assert_eq!(r.read(100).await.unwrap(), "ld!");
        assert!(r.read(100).await.unwrap().is_empty());
        assert_eq!(
            fs.open_read("/", 0).await.err().unwrap().kind,
            ErrorKind::IsADirectory
        );
        assert_eq!(
            fs.open_write("/", WriteMode::Truncate)
                .await
                .err()
                .unwrap()
                .kind,
            ErrorKind::IsADirectory
        );
    }

    #[tokio::test]
    async fn limits_and_injected_failures() {
        let fs = MemoryFs::new();
        fs.set_capacity(Some(4));
        let mut w = fs.open_write("/f", WriteMode::Truncate).await.unwrap();
        w.write(Bytes::from_static(b"1234")).await.unwrap();
        assert_eq!(
            w.write(Bytes::from_static(b"5")).await.unwrap_err().kind,
            ErrorKind::NoSpace
        );
        fs.set_readonly("/f");
        assert_eq!(
            fs.delete("/f").await.unwrap_err().kind,
            ErrorKind::PermissionDenied
        );
        assert!(fs.stat("/f").await.unwrap().readonly);
        fs.fail("/g", ErrorKind::PluginFailed);
        assert_eq!(
            fs.stat("/g").await.unwrap_err().kind,
            ErrorKind::PluginFailed
        );
    }

    #[tokio::test]
    async fn auth() {
        let auth = MemoryAuth::new().with_user("bob", "pw", "/home/bob", Permissions::all());
        let creds = |user: &str, password: &str| Credentials {
            user: user.into(),
            password: password.into(),
            client_ip: "127.0.0.1".parse().unwrap(),
            tls: false,
            site: "s".into(),
        };
        assert_eq!(
            auth.login(&creds("bob", "pw")).await.unwrap().home,
            "/home/bob"
        );
        assert!(matches!(
            auth.login(&creds("bob", "no")).await,
            Err(AuthError::BadCredentials(_))
        ));
        assert!(matches!(
            auth.login(&creds("eve", "pw")).await,
            Err(AuthError::BadCredentials(_))
        ));
        auth.disable("bob");
        assert!(matches!(
            auth.login(&creds("bob", "pw")).await,
            Err(AuthError::Disabled(_))
        ));
        auth.fail_with(Some(AuthError::Unavailable(None)));
        assert!(matches!(
            auth.login(&creds("bob", "pw")).await,
            Err(AuthError::Unavailable(_))
        ));
    }
}
