//! Test fixtures: a site on the in-memory backends and a session driven
//! command by command without sockets.

use std::net::SocketAddr;
use std::sync::Arc;

use super::SessionSettings;
use super::reply::Reply;
use super::session::{self, Session, split_command};
use crate::backend::Permissions;
use crate::backend::memory::{MemoryAuth, MemoryFs};
use crate::config::{TlsConfig, TlsOrigin, TlsVersion};
use crate::site::{Site, SiteDirectory};
use crate::tls::SiteTls;

/// Finds the one test site by `ftp.example.test` or `@example`.
pub struct Directory(pub Arc<Site>);

impl SiteDirectory for Directory {
    fn by_host(&self, name: &str) -> Option<Arc<Site>> {
        name.eq_ignore_ascii_case("ftp.example.test")
            .then(|| self.0.clone())
    }

    fn by_user_suffix(&self, site: &str) -> Option<Arc<Site>> {
        (site == "example").then(|| self.0.clone())
    }
}

/// TLS settings with a fresh self-signed certificate for `localhost`.
pub fn test_tls(required: bool) -> Arc<SiteTls> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = crate::tls::self_signed(&["localhost".to_string()]).expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert).expect("write certificate");
    std::fs::write(&key_path, key).expect("write key");
    let settings = TlsConfig {
        certificate: cert_path,
        key: key_path,
        required,
        require_session_reuse: true,
        min_version: TlsVersion::V1_2,
        origin: TlsOrigin {
            file: dir.path().join("test.toml"),
            certificate_key: "server.tls.certificate".into(),
            certificate_line: 1,
            key_key: "server.tls.key".into(),
            key_line: 2,
        },
    };
    let loaded = crate::tls::load_certificate(&settings).expect("valid certificate");
    Arc::new(SiteTls::new(&settings, loaded).expect("TLS settings"))
}

/// A site `example` with user `alice` / `secret`, home `/home/alice`.
pub fn site(permissions: Permissions) -> (Arc<Site>, MemoryFs, Arc<MemoryAuth>) {
    site_with_tls(permissions, None)
}

pub fn site_with_tls(
    permissions: Permissions,
    tls: Option<Arc<SiteTls>>,
) -> (Arc<Site>, MemoryFs, Arc<MemoryAuth>) {
    let fs = MemoryFs::new();
    fs.mkdir_all("/home/alice");
    fs.mkdir_all("/home/bob");
    let auth = Arc::new(MemoryAuth::new().with_user("alice", "secret", "/home/alice", permissions));
    let site = Arc::new(Site {
        name: "example".into(),
        host_names: vec!["ftp.example.test".into()],
        allow_user_at_site: true,
        banner: "Welcome to example".into(),
        auth: auth.clone(),
        storage: Arc::new(fs.clone()),
        passive_ports: None,
        max_connections: None,
        sessions: Default::default(),
        ops: crate::site::SiteOps::detached("example"),
        tls,
        events: Default::default(),
    });
    (site, fs, auth)
}

pub fn test_settings() -> SessionSettings {
    SessionSettings {
        login_failure_delay: std::time::Duration::from_millis(1),
        passive_ports: 0..=0,
        ..SessionSettings::default()
    }
}

pub struct Harness {
    pub session: Session,
    pub fs: MemoryFs,
    pub auth: Arc<MemoryAuth>,
    permissions: Permissions,
}

impl Harness {
    fn build(
        preselect: bool,
        permissions: Permissions,
        tweak: impl FnOnce(&mut SessionSettings),
    ) -> Self {
        Self::build_with_tls(preselect, permissions, tweak, None)
    }

    fn build_with_tls(
        preselect: bool,
        permissions: Permissions,
        tweak: impl FnOnce(&mut SessionSettings),
        tls: Option<Arc<SiteTls>>,
    ) -> Self {
        let (site, fs, auth) = site_with_tls(permissions, tls);
        let mut settings = test_settings();
        tweak(&mut settings);
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("valid address");
        let local: SocketAddr = "127.0.0.1:21".parse().expect("valid address");
        let directory = Arc::new(Directory(site.clone()));
        let session = Session::new(
            Arc::new(settings),
            peer,
            local,
            preselect.then_some(site),
            directory,
            crate::ops::Ops::detached(),
            None,
        );
        Harness {
            session,
            fs,
            auth,
            permissions,
        }
    }

    /// Connected to the `example` site, not logged in.
    pub fn new() -> Self {
        Self::build(true, Permissions::all(), |_| {})
    }

    /// Connected to a site that offers TLS (and requires it if `required`),
    /// not logged in, control connection still in clear text.
    pub fn with_tls(required: bool) -> Self {
        Self::build_with_tls(true, Permissions::all(), |_| {}, Some(test_tls(required)))
    }

    /// Connected without a preselected site.
    pub fn without_site() -> Self {
        Self::build(false, Permissions::all(), |_| {})
    }

    pub fn logged_in() -> Self {
        Self::with_permissions(Permissions::all())
    }

    pub fn logged_in_with(tweak: impl FnOnce(&mut SessionSettings)) -> Self {
        let mut h = Self::build(true, Permissions::all(), tweak);
        h.login();
        h
    }

    pub fn with_permissions(permissions: Permissions) -> Self {
        let mut h = Self::build(true, permissions, |_| {});
        h.login();
        h
    }

    /// Puts the session in the state a successful `USER alice` / `PASS` leaves.
    fn login(&mut self) {
        let Some(site) = self.session.site.clone() else {
            return;
        };
        let account = crate::backend::Account {
            user: "alice".into(),
            home: "/home/alice".into(),
            permissions: self.permissions,
            ..Default::default()
        };
        let facts = crate::backend::SessionFacts::new(
            &site.name,
            &account,
            &account.home,
            self.session.client_ip(),
            false,
        );
        self.session.state = session::State::LoggedIn(Box::new(session::LoggedIn {
            home: account.home.clone(),
            storage: site.storage.open_session(&facts),
            account,
            cwd: "/".into(),
            rename_from: None,
            ticket: site.enter().expect("test sites have no session limit"),
        }));
    }

    /// Runs one command line and returns its reply.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        let (verb, arg) = split_command(line);
        session::dispatch(&mut self.session, &verb.to_ascii_uppercase(), arg).await
    }

    pub fn cwd(&self) -> String {
        self.session
            .logged_in()
            .map(|u| u.cwd.clone())
            .unwrap_or_default()
    }
}
