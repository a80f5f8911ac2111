//! The TOML configuration: parsing, validation and the error messages a user
//! sees. Every error names the file, the line and the key. Nothing here touches
//! the network or compiles plugins; `crate::server` turns a [`Config`] into
//! running sites.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::ftp::SessionSettings;
use crate::ops::NetList;
use crate::ops::ban::BanSettings;
use crate::ops::nat::{Host, PassiveConfig};
use crate::ops::proxy::ProxySettings;
use crate::ops::transfer_log::{Format as TransferLogFormat, Target as TransferLogTarget};
use crate::plugin::{AllowedHost, Grant, GrantMode, PluginLimits, PluginSource, PluginSpec};

/// A configuration error, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the whole file (e.g. it cannot be read).
    pub line: usize,
    /// Dotted key path (`site.main.auth.plugin`), empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration of one server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (errors found later, e.g. by a plugin compile, name it).
    pub file: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// Listeners where TLS starts with the first byte (implicit FTPS).
    pub implicit_tls_listen: Vec<SocketAddr>,
    /// `[server.tls]`: TLS for connections with no site yet, and for sites
    /// without their own.
    pub tls: Option<TlsConfig>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// After SIGTERM/SIGINT, how long running sessions may go on before they
    /// are closed with `421`.
    pub shutdown_grace: Duration,
    /// Where precompiled plugins are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub session: SessionSettings,
    /// Sites in name order.
    pub sites: Vec<SiteConfig>,
    /// The site a connection gets when nothing else selects one.
    pub default_site: Option<String>,
    /// `[server.admin] listen`: the admin HTTP listener, off when `None`.
    pub admin_listen: Option<SocketAddr>,
    /// `[server.ban]`.
    pub ban: BanSettings,
    /// `transfer_log` and `transfer_log_format`: for sites without their own.
    pub transfer_log: Option<TransferLogTarget>,
    /// The line of `server.transfer_log`, for errors opening it.
    pub transfer_log_line: usize,
    /// PROXY protocol on the general listeners.
    pub proxy: ProxySettings,
    /// Passive addresses (NAT) for sites without their own.
    pub passive: PassiveConfig,
}

/// One virtual site, ready to be built.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    pub name: String,
    pub banner: String,
    pub host_names: Vec<String>,
    /// Dedicated listeners: connections there always get this site.
    pub listen: Vec<SocketAddr>,
    /// Dedicated implicit-TLS listeners.
    pub implicit_tls_listen: Vec<SocketAddr>,
    /// That key's name, for errors.
    pub implicit_tls_key: String,
    /// The site's TLS: its own `[site.NAME.tls]`, else the server's.
    pub tls: Option<TlsConfig>,
    pub allow_user_at_site: bool,
    pub passive_ports: Option<RangeInclusive<u16>>,
    pub max_connections: Option<usize>,
    /// PROXY protocol on this site's dedicated listeners.
    pub proxy: ProxySettings,
    /// Bytes per second per user (shared by the user's sessions), if limited.
    pub upload_rate: Option<u64>,
    pub download_rate: Option<u64>,
    /// Passive addresses (NAT) for this site; empty: the server's.
    pub passive: PassiveConfig,
    /// The site's own transfer log; `None`: the server's.
    pub transfer_log: Option<TransferLogTarget>,
    /// Where `transfer_log` is written (key and line), for errors opening it.
    pub transfer_log_key: String,
    pub transfer_log_line: usize,
    pub auth: PluginSpec,
    pub storage: PluginSpec,
    /// Event handlers (`[[site.NAME.events]]`), in configuration order.
    pub events: Vec<EventConfig>,
    /// The file that defines the site and the line of its table, for errors
    /// found while building it.
    pub file: PathBuf,
    pub line: usize,
}

impl SiteConfig {
    /// Whether `other` configures the same site: where the site is written
    /// (its file and line) does not count, so a comment added above it is no
    /// change.
    pub fn configures_same(&self, other: &SiteConfig) -> bool {
        let mut other = other.clone();
        other.file.clone_from(&self.file);
        other.line = self.line;
        other.transfer_log_line = self.transfer_log_line;
        *self == other
    }
}

/// TLS settings (`[server.tls]`, `[site.NAME.tls]`). Two are equal when they
/// configure the same thing: where they are written (`origin`) does not count.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub certificate: PathBuf,
    /// PEM private key (may be the certificate's file).
    pub key: PathBuf,
    /// Refuse clear-text logins and clear-text data connections.
    pub required: bool,
    /// Data connections must resume their control connection's TLS session.
    pub require_session_reuse: bool,
    pub min_version: TlsVersion,
    /// Where these settings are written, for errors found when the files are read.
    pub origin: TlsOrigin,
}

/// The oldest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.certificate == other.certificate
            && self.key == other.key
            && self.required == other.required
            && self.require_session_reuse == other.require_session_reuse
            && self.min_version == other.min_version
    }
}

impl Eq for TlsConfig {}

/// The config file, keys and lines of a TLS block's file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOrigin {
    pub file: PathBuf,
    pub certificate_key: String,
    pub certificate_line: usize,
    pub key_key: String,
    pub key_line: usize,
}

/// One `[[site.NAME.events]]` table: an event plugin and its queue.
#[derive(Debug, Clone, PartialEq)]
pub struct EventConfig {
    pub plugin: PluginSpec,
    /// Events waiting for this handler at most; more are dropped (counted).
    pub queue: usize,
}

/// Reads and validates a configuration: one file, or a directory holding
/// `server.toml` (the `[server]` table, optionally sites too) and one
/// `NAME.toml` per site (the site's keys at top level; the file name is the
/// site name).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    if path.is_dir() {
        return load_dir(path);
    }
    let text = read(path)?;
    parse(path, &text)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })
}

/// Parses and validates configuration text; `path` names it in errors and anchors
/// relative paths (granted directories, plugin files, the cache directory).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = Locator { file: path, text };
    let raw: RawConfig = at.deserialize()?;
    let mut sites = Vec::new();
    for (name, site) in raw.site {
        sites.push(build_site(&at, name, site, "site.")?);
    }
    build(&at, raw.server, sites)
}

/// The site files of a config directory, in name order.
pub fn site_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError {
        file: dir.to_path_buf(),
        line: 0,
        key: String::new(),
        message: format!("cannot read directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Editors' temporary files (.foo.swp, foo.toml~) are not site files.
            !name.starts_with('.') && name.ends_with(".toml") && name != SERVER_FILE && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The server settings file inside a config directory.
pub const SERVER_FILE: &str = "server.toml";

fn load_dir(dir: &Path) -> Result<Config, ConfigError> {
    let server_path = dir.join(SERVER_FILE);
    let server_text = if server_path.exists() {
        read(&server_path)?
    } else {
        String::new()
    };
    let at = Locator {
        file: &server_path,
        text: &server_text,
    };
    let raw: RawConfig = at.deserialize()?;
    let mut sites = Vec::new();
    for (name, site) in raw.site {
        sites.push(build_site(&at, name, site, "site.")?);
    }
    for file in site_files(dir)? {
        let text = read(&file)?;
        let site_at = Locator {
            file: &file,
            text: &text,
        };
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if sites.iter().any(|s: &SiteConfig| s.name == name) {
            return Err(site_at.error_at(None, "", &format!("site `{name}` is defined twice")));
        }
        let raw: Spanned<RawSite> = site_at.deserialize()?;
        sites.push(build_site(&site_at, name, raw, "")?);
    }
    sites.sort_by(|a, b| a.name.cmp(&b.name));
    build(&at, raw.server, sites)
}

fn build(
    at: &Locator,
    server: RawServer,
    mut sites: Vec<SiteConfig>,
) -> Result<Config, ConfigError> {
    let base = at.base();
    let server_tls = match server.tls {
        Some(raw) => Some(tls_config(at, "server.tls", raw)?),
        None => None,
    };
    for site in &mut sites {
        if site.tls.is_none() {
            site.tls = server_tls.clone();
        }
    }
    let defaults = SessionSettings::default();
    let session = SessionSettings {
        idle_timeout: server.idle_timeout.map_or(defaults.idle_timeout, |d| d.0),
        login_timeout: server.login_timeout.map_or(defaults.login_timeout, |d| d.0),
        data_timeout: server.data_timeout.map_or(defaults.data_timeout, |d| d.0),
        passive_keep: server.passive_keep.map_or(defaults.passive_keep, |d| d.0),
        passive_ports: server
            .passive_ports
            .map_or(defaults.passive_ports.clone(), |p| p.0),
        passive: Default::default(),
        allow_foreign_data: server.allow_foreign_data,
        max_line_length: server.max_line_length.unwrap_or(defaults.max_line_length),
        login_failure_delay: server
            .login_failure_delay
            .map_or(defaults.login_failure_delay, |d| d.0),
        max_login_failures: server
            .max_login_failures
            .unwrap_or(defaults.max_login_failures),
    };
    if session.login_timeout.is_zero() {
        return Err(at.error_at(None, "server.login_timeout", "must be more than zero"));
    }
    if session.max_line_length < 512 {
        return Err(at.error_at(
            None,
            "server.max_line_length",
            "must be at least 512 (RFC 959 lines)",
        ));
    }

    let default_site = match server.default_site {
        Some(name) => {
            if !sites.iter().any(|s| s.name == *name.get_ref()) {
                return Err(at.error_at(
                    Some(name.span()),
                    "server.default_site",
                    &format!("no site named `{}`", name.get_ref()),
                ));
            }
            Some(name.into_inner())
        }
        // One site needs no naming.
        None if sites.len() == 1 => Some(sites[0].name.clone()),
        None => None,
    };

    if let Some(site) = sites
        .iter()
        .find(|s| !s.implicit_tls_listen.is_empty() && s.tls.is_none())
    {
        return Err(ConfigError {
            file: site.file.clone(),
            line: site.line,
            key: site.implicit_tls_key.clone(),
            message:
                "implicit TLS needs a certificate: add a [tls] block to the site or [server.tls]"
                    .to_string(),
        });
    }
    let implicit_tls_listen = match server.implicit_tls_listen {
        Some(listen) => {
            let default_has_tls = default_site
                .as_ref()
                .and_then(|name| sites.iter().find(|s| s.name == *name))
                .is_some_and(|s| s.tls.is_some());
            if !listen.get_ref().is_empty() && server_tls.is_none() && !default_has_tls {
                return Err(at.error_at(
                    Some(listen.span()),
                    "server.implicit_tls_listen",
                    "implicit TLS needs a certificate: add [server.tls] (or a [tls] block to the default site)",
                ));
            }
            listen.into_inner()
        }
        None => Vec::new(),
    };

    let cache_dir = match server.cache_dir {
        Some(dir) if dir.as_os_str().is_empty() => None,
        Some(dir) => Some(base.join(dir)),
        None => default_cache_dir(),
    };

    let ban = ban_settings(at, server.ban)?;
    let transfer_log_line = server
        .transfer_log
        .as_ref()
        .map_or(0, |path| at.line_of(&path.span()));
    let transfer_log = transfer_log_target(
        at,
        base,
        "server.",
        server.transfer_log,
        server.transfer_log_format,
    )?;
    let proxy = proxy_settings(at, "server.", server.proxy_protocol, server.trusted_proxies)?;
    let refresh = server
        .passive_address_refresh
        .map_or(Duration::from_secs(60), |d| d.0);
    let passive = passive_config(
        at,
        "server.",
        server.passive_address,
        server.passive_address_overrides,
        refresh,
    )?;
    let sites = sites
        .into_iter()
        .map(|mut site| {
            site.passive.refresh = refresh;
            site
        })
        .collect();

    Ok(Config {
        file: at.file.to_path_buf(),
        listen: server.listen,
        implicit_tls_listen,
        tls: server_tls,
        max_connections: server.max_connections.unwrap_or(1000),
        max_connections_per_ip: server.max_connections_per_ip.unwrap_or(50),
        shutdown_grace: server
            .shutdown_grace
            .map_or(Duration::from_secs(30), |d| d.0),
        cache_dir,
        session,
        sites,
        default_site,
        admin_listen: server.admin.map(|a| a.listen),
        ban,
        transfer_log,
        transfer_log_line,
        proxy,
        passive,
    })
}

fn ban_settings(at: &Locator, raw: Option<RawBan>) -> Result<BanSettings, ConfigError> {
    let defaults = BanSettings::default();
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    let allow = net_list(at, "server.ban.allow", raw.allow)?;
    let positive = |d: Option<Spanned<HumanDuration>>, key: &str, default: Duration| match d {
        Some(d) if d.get_ref().0.is_zero() => {
            Err(at.error_at(Some(d.span()), key, "must be more than zero"))
        }
        Some(d) => Ok(d.into_inner().0),
        None => Ok(default),
    };
    let window = positive(raw.window, "server.ban.window", defaults.window)?;
    let ban_time = positive(raw.ban_time, "server.ban.ban_time", defaults.ban_time)?;
    let max_ban_time = positive(
        raw.max_ban_time,
        "server.ban.max_ban_time",
        defaults.max_ban_time.max(ban_time),
    )?;
    Ok(BanSettings {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        max_failures: raw.max_failures.unwrap_or(defaults.max_failures),
        window,
        ban_time,
        max_ban_time: max_ban_time.max(ban_time),
        allow,
        max_user_failures: raw.max_user_failures.unwrap_or(defaults.max_user_failures),
    })
}

/// CIDR networks; a bare address is a network of one.
fn net_list(at: &Locator, key: &str, raw: Vec<Spanned<String>>) -> Result<NetList, ConfigError> {
    let mut nets = Vec::new();
    for item in raw {
        nets.push(parse_net(item.get_ref()).ok_or_else(|| {
            at.error_at(
                Some(item.span()),
                key,
                &format!("`{}` is not a network like \"10.0.0.0/8\"", item.get_ref()),
            )
        })?);
    }
    Ok(NetList::new(nets))
}

fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

fn proxy_settings(
    at: &Locator,
    prefix: &str,
    enabled: Option<Spanned<bool>>,
    trusted: Vec<Spanned<String>>,
) -> Result<ProxySettings, ConfigError> {
    let trusted = net_list(at, &format!("{prefix}trusted_proxies"), trusted)?;
    let enabled_span = enabled.as_ref().map(|e| e.span());
    let enabled = enabled.is_some_and(|e| e.into_inner());
    if enabled && trusted.is_empty() {
        return Err(at.error_at(
            enabled_span,
            &format!("{prefix}proxy_protocol"),
            "name the proxies allowed to send PROXY headers in trusted_proxies",
        ));
    }
    Ok(ProxySettings { enabled, trusted })
}

fn passive_config(
    at: &Locator,
    prefix: &str,
    address: Option<Spanned<String>>,
    overrides: BTreeMap<String, Spanned<String>>,
    refresh: Duration,
) -> Result<PassiveConfig, ConfigError> {
    let default =
        match address {
            Some(a) => Some(Host::parse(a.get_ref()).map_err(|e| {
                at.error_at(Some(a.span()), &format!("{prefix}passive_address"), &e)
            })?),
            None => None,
        };
    let mut list = Vec::new();
    for (net, host) in overrides {
        let key = format!("{prefix}passive_address_overrides.{net}");
        let parsed_net = parse_net(&net).ok_or_else(|| {
            at.error_at(
                Some(host.span()),
                &key,
                &format!("`{net}` is not a client network like \"10.0.0.0/8\""),
            )
        })?;
        let parsed_host =
            Host::parse(host.get_ref()).map_err(|e| at.error_at(Some(host.span()), &key, &e))?;
        list.push((parsed_net, parsed_host));
    }
    Ok(PassiveConfig {
        default,
        overrides: list,
        refresh,
    })
}

/// `transfer_log` and `transfer_log_format` (in `[server]` or a site; `prefix`
/// names the table in errors). A path is relative to the file's directory.
fn transfer_log_target(
    at: &Locator,
    base: &Path,
    prefix: &str,
    path: Option<Spanned<PathBuf>>,
    format: Option<Spanned<String>>,
) -> Result<Option<TransferLogTarget>, ConfigError> {
    let format_key = format!("{prefix}transfer_log_format");
    let Some(path) = path else {
        return match format {
            None => Ok(None),
            Some(format) => Err(at.error_at(
                Some(format.span()),
                &format_key,
                "set transfer_log (the file) too",
            )),
        };
    };
    if path.get_ref().as_os_str().is_empty() {
        return Err(at.error_at(
            Some(path.span()),
            &format!("{prefix}transfer_log"),
            "name a file",
        ));
    }
    let format = match format.as_ref().map(|f| f.get_ref().as_str()) {
        None | Some("json") => TransferLogFormat::Json,
        Some("xferlog") => TransferLogFormat::Xferlog,
        Some(other) => {
            return Err(at.error_at(
                format.as_ref().map(|f| f.span()),
                &format_key,
                &format!("`{other}` is not \"json\" or \"xferlog\""),
            ));
        }
    };
    Ok(Some(TransferLogTarget {
        path: base.join(path.into_inner()),
        format,
    }))
}

/// "20MB/s", "512KiB/s" (the `/s` may be left out).
fn rate(at: &Locator, key: &str, raw: Option<Spanned<String>>) -> Result<Option<u64>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get_ref().trim();
    let amount = text.strip_suffix("/s").unwrap_or(text).trim();
    match amount.parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() > 0 => Ok(Some(size.as_u64())),
        _ => Err(at.error_at(
            Some(raw.span()),
            key,
            &format!("`{text}` is not a rate like \"20MB/s\" (more than zero)"),
        )),
    }
}

/// Validates one site; `prefix` is how its keys are named in errors
/// (`site.` in a single file, nothing in a site file of its own).
fn build_site(
    at: &Locator,
    name: String,
    site: Spanned<RawSite>,
    prefix: &str,
) -> Result<SiteConfig, ConfigError> {
    let name_span = site.span();
    let site = site.into_inner();
    let key = format!("{prefix}{name}");
    let key_of = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{key}.{k}")
        }
    };
    if !valid_site_name(&name) {
        return Err(at.error_at(
            Some(name_span),
            &key,
            "a site name uses letters, digits, `-`, `_` and `.` only",
        ));
    }
    let base = at.base();
    let auth = plugin_spec(
        at,
        base,
        &name,
        &key_of("auth"),
        site.auth,
        PluginRole::Auth,
    )?;
    let storage = plugin_spec(
        at,
        base,
        &name,
        &key_of("storage"),
        site.storage,
        PluginRole::Storage,
    )?;
    let key_prefix = key_of("");
    let proxy = proxy_settings(at, &key_prefix, site.proxy_protocol, site.trusted_proxies)?;
    if proxy.enabled && site.listen.is_empty() {
        return Err(at.error_at(
            Some(name_span.clone()),
            &key_of("proxy_protocol"),
            "applies to the site's own listeners: set listen too (or set it in [server])",
        ));
    }
    let upload_rate = rate(at, &key_of("upload_rate"), site.upload_rate)?;
    let download_rate = rate(at, &key_of("download_rate"), site.download_rate)?;
    let transfer_log_line = site
        .transfer_log
        .as_ref()
        .map_or(0, |path| at.line_of(&path.span()));
    let transfer_log = transfer_log_target(
        at,
        base,
        &key_prefix,
        site.transfer_log,
        site.transfer_log_format,
    )?;
    let passive = passive_config(
        at,
        &key_prefix,
        site.passive_address,
        site.passive_address_overrides,
        Duration::from_secs(60),
    )?;
    let tls = match site.tls {
        Some(raw) => Some(tls_config(at, &key_of("tls"), raw)?),
        None => None,
    };
    let mut events = Vec::new();
    for (i, raw) in site.events.into_iter().enumerate() {
        let key = format!("{}[{i}]", key_of("events"));
        let queue = match &raw.get_ref().queue {
            Some(q) if *q.get_ref() == 0 || *q.get_ref() > 1_000_000 => {
                return Err(at.error_at(
                    Some(q.span()),
                    &format!("{key}.queue"),
                    "must be between 1 and 1000000",
                ));
            }
            Some(q) => *q.get_ref(),
            None => crate::events::DEFAULT_QUEUE,
        };
        let plugin = plugin_spec(at, base, &name, &key, raw, PluginRole::Events)?;
        events.push(EventConfig { plugin, queue });
    }
    Ok(SiteConfig {
        proxy,
        upload_rate,
        download_rate,
        passive,
        transfer_log,
        transfer_log_key: key_of("transfer_log"),
        transfer_log_line,
        banner: site
            .banner
            .unwrap_or_else(|| format!("wasmftpd ready ({name})")),
        host_names: site.host_names,
        listen: site.listen,
        implicit_tls_listen: site.implicit_tls_listen,
        implicit_tls_key: key_of("implicit_tls_listen"),
        tls,
        allow_user_at_site: site.allow_user_at_site,
        passive_ports: site.passive_ports.map(|p| p.0),
        max_connections: site.max_connections,
        auth,
        storage,
        events,
        file: at.file.to_path_buf(),
        line: at.line_of(&name_span),
        name,
    })
}

/// Validates a TLS block; `key` is how it is named in errors (`server.tls`).
fn tls_config(at: &Locator, key: &str, raw: RawTls) -> Result<TlsConfig, ConfigError> {
    let base = at.base();
    let file_key = |name: &str, path: &Spanned<String>| -> Result<PathBuf, ConfigError> {
        let file = base.join(path.get_ref());
        if !file.is_file() {
            return Err(at.error_at(
                Some(path.span()),
                &format!("{key}.{name}"),
                &format!("file {} not found", file.display()),
            ));
        }
        Ok(file)
    };
    let certificate = file_key("certificate", &raw.certificate)?;
    let private_key = file_key("key", &raw.key)?;
    let min_version = match raw.min_version {
        None => TlsVersion::V1_2,
        Some(v) => match v.get_ref().as_str() {
            "1.2" => TlsVersion::V1_2,
            "1.3" => TlsVersion::V1_3,
            other => {
                return Err(at.error_at(
                    Some(v.span()),
                    &format!("{key}.min_version"),
                    &format!("`{other}` is not a TLS version we accept: \"1.2\" or \"1.3\""),
                ));
            }
        },
    };
    Ok(TlsConfig {
        certificate,
        key: private_key,
        required: raw.required,
        require_session_reuse: raw.require_session_reuse.unwrap_or(true),
        min_version,
        origin: TlsOrigin {
            file: at.file.to_path_buf(),
            certificate_key: format!("{key}.certificate"),
            certificate_line: at.line_of(&raw.certificate.span()),
            key_key: format!("{key}.key"),
            key_line: at.line_of(&raw.key.span()),
        },
    })
}

/// Which section a plugin table is: some keys belong to one role only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PluginRole {
    Auth,
    Storage,
    Events,
}

fn plugin_spec(
    at: &Locator,
    base: &Path,
    site: &str,
    key: &str,
    raw: Spanned<RawPlugin>,
    role: PluginRole,
) -> Result<PluginSpec, ConfigError> {
    let raw = raw.into_inner();
    let plugin_key = format!("{key}.plugin");
    if let Some(queue) = raw.queue.as_ref().filter(|_| role != PluginRole::Events) {
        return Err(at.error_at(
            Some(queue.span()),
            &format!("{key}.queue"),
            "only event handlers ([[events]] tables) have a queue",
        ));
    }
    if let Some(reuse) = raw
        .reuse_instances
        .as_ref()
        .filter(|_| role != PluginRole::Auth)
    {
        return Err(at.error_at(
            Some(reuse.span()),
            &format!("{key}.reuse_instances"),
            "only auth plugins reuse instances (storage gets one per session, events one per handler)",
        ));
    }
    let source = match raw.plugin.get_ref().strip_prefix("builtin:") {
        Some(name) => {
            if !crate::plugin::builtin_names().contains(&name) {
                return Err(at.error_at(
                    Some(raw.plugin.span()),
                    &plugin_key,
                    &format!(
                        "no builtin plugin `{name}` (builtins: {})",
                        crate::plugin::builtin_names().join(", ")
                    ),
                ));
            }
            PluginSource::Builtin(name.to_string())
        }
        None => {
            let file = base.join(raw.plugin.get_ref());
            if !file.is_file() {
                return Err(at.error_at(
                    Some(raw.plugin.span()),
                    &plugin_key,
                    &format!("plugin file {} not found", file.display()),
                ));
            }
            PluginSource::File(file)
        }
    };

    let mut grants = Vec::new();
    for (guest, grant) in raw.dirs {
        let span = grant.span();
        let RawGrant { path, mode } = grant.into_inner();
        let host = Spanned::new(span, path);
        let dir = base.join(host.get_ref());
        if !guest.starts_with('/') {
            return Err(at.error_at(
                Some(host.span()),
                &format!("{key}.dirs.{guest}"),
                "the guest path (the key) must be absolute, like \"/\" or \"/data\"",
            ));
        }
        if !dir.is_dir() {
            return Err(at.error_at(
                Some(host.span()),
                &format!("{key}.dirs.{guest}"),
                &format!("directory {} not found", dir.display()),
            ));
        }
        grants.push(Grant {
            host: dir,
            guest,
            mode: mode.unwrap_or_default(),
        });
    }

    let defaults = PluginLimits::default();
    let memory = match raw.memory_limit {
        Some(size)
            if size.get_ref().0 > crate::plugin::MAX_PLUGIN_MEMORY
                || size.get_ref().0 < 1 << 20 =>
        {
            return Err(at.error_at(
                Some(size.span()),
                &format!("{key}.memory_limit"),
                &format!(
                    "must be between 1MiB and {}MiB",
                    crate::plugin::MAX_PLUGIN_MEMORY >> 20
                ),
            ));
        }
        Some(size) => size.into_inner().0,
        None => defaults.memory,
    };
    let call_timeout = match raw.call_timeout {
        Some(d) if d.get_ref().0.is_zero() => {
            return Err(at.error_at(
                Some(d.span()),
                &format!("{key}.call_timeout"),
                "must be more than zero",
            ));
        }
        Some(d) => d.into_inner().0,
        None => defaults.call_timeout,
    };
    let mut allowed_hosts = Vec::new();
    for (i, entry) in raw.allowed_hosts.iter().enumerate() {
        let host = AllowedHost::parse(entry.get_ref()).map_err(|why| {
            at.error_at(
                Some(entry.span()),
                &format!("{key}.allowed_hosts[{i}]"),
                &why,
            )
        })?;
        allowed_hosts.push(host);
    }
    let max_response_size = match raw.max_response_size {
        Some(size) if size.get_ref().0 < 1024 => {
            return Err(at.error_at(
                Some(size.span()),
                &format!("{key}.max_response_size"),
                "must be at least 1KiB",
            ));
        }
        Some(size) => size.into_inner().0,
        None => crate::plugin::DEFAULT_MAX_RESPONSE_SIZE,
    };
    let mut config = flatten_table(&raw.config);
    for (name, variable) in &raw.config_env {
        let entry_key = format!("{key}.config_env.{name}");
        if config.iter().any(|(k, _)| k == name) {
            return Err(at.error_at(
                Some(variable.span()),
                &entry_key,
                &format!("`{name}` is also set in `config`; set it in one place"),
            ));
        }
        let value = std::env::var(variable.get_ref()).map_err(|_| {
            at.error_at(
                Some(variable.span()),
                &entry_key,
                &format!(
                    "environment variable `{}` is not set (or not UTF-8)",
                    variable.get_ref()
                ),
            )
        })?;
        config.push((name.clone(), value));
    }
    Ok(PluginSpec {
        site: site.to_string(),
        source,
        config,
        grants,
        limits: PluginLimits {
            memory,
            call_timeout,
        },
        allowed_hosts,
        max_response_size,
        reuse_instances: raw.reuse_instances.is_some_and(|r| r.into_inner()),
    })
}

/// Turns a plugin's `config` table into the flat string pairs `wasi:config/store`
/// serves: nested tables become dotted keys, arrays comma-joined text.
pub fn flatten_table(table: &toml::Table) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            toml::Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(scalar_text).collect();
                out.push((prefix.to_string(), parts.join(",")));
            }
            other => out.push((prefix.to_string(), scalar_text(other))),
        }
    }
    fn scalar_text(value: &toml::Value) -> String {
        match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut out = Vec::new();
    for (k, v) in table {
        walk(k, v, &mut out);
    }
    out
}

fn valid_site_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("wasmftpd"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("wasmftpd"))
}

/// Turns byte spans into line numbers for one file's text.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    /// Relative paths in a file are relative to its directory.
    fn base(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let deserializer =
            toml::Deserializer::parse(self.text).map_err(|e| self.toml_error(&e, ""))?;
        serde_path_to_error::deserialize(deserializer)
            .map_err(|e| self.toml_error(e.inner(), &e.path().to_string()))
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error_at(&self, span: Option<Range<usize>>, key: &str, message: &str) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: span.map_or(0, |s| self.line_of(&s)),
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn toml_error(&self, error: &toml::de::Error, path: &str) -> ConfigError {
        let span = error.span();
        // serde_path_to_error's path already ends with an unknown key's name.
        // `Spanned` adds a private segment to serde's path; users never see it.
        let key = path
            .split('.')
            .filter(|seg| !seg.is_empty() && *seg != "?" && !seg.starts_with("$__"))
            .collect::<Vec<_>>()
            .join(".");
        ConfigError {
            file: self.file.to_path_buf(),
            line: span.map_or(0, |s| self.line_of(&s)),
            key,
            message: error.message().trim().to_string(),
        }
    }
}

// ---- The raw shape of the file (serde) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    site: BTreeMap<String, Spanned<RawSite>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    listen: Vec<SocketAddr>,
    implicit_tls_listen: Option<Spanned<Vec<SocketAddr>>>,
    tls: Option<RawTls>,
    passive_ports: Option<PortRange>,
    passive_address: Option<Spanned<String>>,
    #[serde(default)]
    passive_address_overrides: BTreeMap<String, Spanned<String>>,
    passive_address_refresh: Option<HumanDuration>,
    admin: Option<RawAdmin>,
    ban: Option<RawBan>,
    transfer_log: Option<Spanned<PathBuf>>,
    transfer_log_format: Option<Spanned<String>>,
    proxy_protocol: Option<Spanned<bool>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    idle_timeout: Option<HumanDuration>,
    login_timeout: Option<HumanDuration>,
    data_timeout: Option<HumanDuration>,
    passive_keep: Option<HumanDuration>,
    login_failure_delay: Option<HumanDuration>,
    max_login_failures: Option<u32>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    shutdown_grace: Option<HumanDuration>,
    max_line_length: Option<usize>,
    #[serde(default)]
    allow_foreign_data: bool,
    cache_dir: Option<PathBuf>,
    default_site: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    banner: Option<String>,
    #[serde(default)]
    host_names: Vec<String>,
    #[serde(default)]
    listen: Vec<SocketAddr>,
    #[serde(default)]
    implicit_tls_listen: Vec<SocketAddr>,
    tls: Option<RawTls>,
    #[serde(default)]
    allow_user_at_site: bool,
    passive_ports: Option<PortRange>,
    max_connections: Option<usize>,
    proxy_protocol: Option<Spanned<bool>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    upload_rate: Option<Spanned<String>>,
    download_rate: Option<Spanned<String>>,
    passive_address: Option<Spanned<String>>,
    #[serde(default)]
    passive_address_overrides: BTreeMap<String, Spanned<String>>,
    transfer_log: Option<Spanned<PathBuf>>,
    transfer_log_format: Option<Spanned<String>>,
    auth: Spanned<RawPlugin>,
    storage: Spanned<RawPlugin>,
    #[serde(default)]
    events: Vec<Spanned<RawPlugin>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBan {
    enabled: Option<bool>,
    max_failures: Option<u32>,
    window: Option<Spanned<HumanDuration>>,
    ban_time: Option<Spanned<HumanDuration>>,
    max_ban_time: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    max_user_failures: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Spanned<String>,
    key: Spanned<String>,
    #[serde(default)]
    required: bool,
    require_session_reuse: Option<bool>,
    min_version: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    plugin: Spanned<String>,
    #[serde(default)]
    config: toml::Table,
    /// Config values taken from the server's environment, so that secrets
    /// stay out of the file: config key (key) -> variable name (value).
    #[serde(default)]
    config_env: BTreeMap<String, Spanned<String>>,
    /// Granted directories: guest path (key) → host directory, as a string
    /// (read-write) or `{ path = "...", mode = "..." }`.
    #[serde(default)]
    dirs: BTreeMap<String, Spanned<RawGrant>>,
    memory_limit: Option<Spanned<HumanSize>>,
    call_timeout: Option<Spanned<HumanDuration>>,
    /// Origins `wasi:http` may reach: `"https://auth.example.com"`.
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
    max_response_size: Option<Spanned<HumanSize>>,
    /// Event handlers only: how many events may wait.
    queue: Option<Spanned<usize>>,
    /// Auth only: keep warm instances between logins.
    reuse_instances: Option<Spanned<bool>>,
}

/// A `dirs` value: `"srv"` or `{ path = "srv", mode = "write-only" }`.
struct RawGrant {
    path: String,
    mode: Option<GrantMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrantTable {
    path: String,
    mode: Option<RawGrantMode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawGrantMode {
    ReadOnly,
    ReadWrite,
    WriteOnly,
}

impl<'de> Deserialize<'de> for RawGrant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawGrant;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a directory, or a table like { path = \"srv\", mode = \"read-only\" }")
            }

            fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<RawGrant, E> {
                Ok(RawGrant {
                    path: path.to_string(),
                    mode: None,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawGrant, A::Error> {
                let table =
                    RawGrantTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawGrant {
                    path: table.path,
                    mode: table.mode.map(|mode| match mode {
                        RawGrantMode::ReadOnly => GrantMode::ReadOnly,
                        RawGrantMode::ReadWrite => GrantMode::ReadWrite,
                        RawGrantMode::WriteOnly => GrantMode::WriteOnly,
                    }),
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// "30s", "10m", "1h 30m".
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!("`{text}` is not a duration like \"30s\" ({e})"))
            })
    }
}

/// "64MiB", "512KiB", "1GB".
struct HumanSize(u64);

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<bytesize::ByteSize>()
            .map(|s| HumanSize(s.as_u64()))
            .map_err(|e| {
                serde::de::Error::custom(format!("`{text}` is not a size like \"64MiB\" ({e})"))
            })
    }
}

/// "50000-50999".
struct PortRange(RangeInclusive<u16>);

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "`{text}` is not a port range like \"50000-50999\" (1024-65535, low <= high)"
            ))
        };
        let (low, high) = text.split_once('-').ok_or_else(bad)?;
        let low: u16 = low.trim().parse().map_err(|_| bad())?;
        let high: u16 = high.trim().parse().map_err(|_| bad())?;
        if low < 1024 || low > high {
            return Err(bad());
        }
        Ok(PortRange(low..=high))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/nonexistent/test.toml"), text)
    }

    const MINIMAL: &str = r#"
[server]
listen = ["127.0.0.1:2121"]
idle_timeout = "30s"

[site.main]
[site.main.auth]
plugin = "builtin:auth-static"
[site.main.auth.config.users.demo]
password = "$6$x$y"
permissions = ["read", "list"]
[site.main.storage]
plugin = "builtin:storage-fs"
memory_limit = "32MiB"
"#;

    #[test]
    fn passive_keep_can_be_set_or_turned_off() {
        let text = MINIMAL.replace("[server]", "[server]\npassive_keep = \"0s\"");
        assert_eq!(
            parse_str(&text).expect("valid").session.passive_keep,
            Duration::ZERO
        );
        let text = MINIMAL.replace("[server]", "[server]\npassive_keep = \"750ms\"");
        assert_eq!(
            parse_str(&text).expect("valid").session.passive_keep,
            Duration::from_millis(750)
        );
        let text = MINIMAL.replace("[server]", "[server]\npassive_keep = \"soon\"");
        assert_eq!(
            parse_str(&text).expect_err("bad").key,
            "server.passive_keep"
        );
    }

    #[test]
    fn a_site_that_only_moved_in_its_file_configures_the_same() {
        let before = parse_str(MINIMAL).expect("valid");
        let moved = parse_str(&format!("# a comment\n\n{MINIMAL}")).expect("valid");
        let (a, b) = (&before.sites[0], &moved.sites[0]);
        assert_ne!(a.line, b.line);
        assert!(a.configures_same(b));
        let edited = parse_str(&MINIMAL.replace("[site.main]", "[site.main]\nbanner = \"hi\""))
            .expect("valid");
        assert!(!a.configures_same(&edited.sites[0]));
    }

    #[test]
    fn a_site_may_have_its_own_transfer_log() {
        let config = parse_str(&MINIMAL.replace(
            "[site.main]",
            "[site.main]\ntransfer_log = \"logs/main.xferlog\"\ntransfer_log_format = \"xferlog\"",
        ))
        .expect("valid");
        assert_eq!(config.transfer_log, None);
        let site = &config.sites[0];
        assert_eq!(
            site.transfer_log,
            Some(TransferLogTarget {
                path: PathBuf::from("/nonexistent/logs/main.xferlog"),
                format: TransferLogFormat::Xferlog,
            })
        );
        assert_eq!(
            (site.transfer_log_key.as_str(), site.transfer_log_line),
            ("site.main.transfer_log", 7)
        );
        // Where the key is written does not make the site another one.
        let moved = parse_str(&format!(
            "# moved\n{}",
            MINIMAL.replace("[site.main]", "[site.main]\ntransfer_log = \"logs/main.xferlog\"\ntransfer_log_format = \"xferlog\"")
        ))
        .expect("valid");
        assert!(site.configures_same(&moved.sites[0]));

        let err = parse_str(&MINIMAL.replace(
            "[site.main]",
            "[site.main]\ntransfer_log = \"x.log\"\ntransfer_log_format = \"csv\"",
        ))
        .expect_err("bad format");
        assert_eq!(
            (err.key.as_str(), err.line),
            ("site.main.transfer_log_format", 8)
        );
        let err = parse_str(
            &MINIMAL.replace("[site.main]", "[site.main]\ntransfer_log_format = \"json\""),
        )
        .expect_err("no file");
        assert_eq!(
            (err.key.as_str(), err.line),
            ("site.main.transfer_log_format", 7)
        );
        let err = parse_str(&MINIMAL.replace("[server]", "[server]\ntransfer_log = \"\""))
            .expect_err("empty");
        assert_eq!((err.key.as_str(), err.line), ("server.transfer_log", 3));
    }

    #[test]
    fn login_timeout_defaults_to_a_minute_and_is_checked() {
        assert_eq!(
            parse_str(MINIMAL).expect("valid").session.login_timeout,
            Duration::from_secs(60)
        );
        let text = MINIMAL.replace("[server]", "[server]\nlogin_timeout = \"15s\"");
        assert_eq!(
            parse_str(&text).expect("valid").session.login_timeout,
            Duration::from_secs(15)
        );
        let text = MINIMAL.replace("[server]", "[server]\nlogin_timeout = \"0s\"");
        assert_eq!(
            parse_str(&text).expect_err("zero").key,
            "server.login_timeout"
        );
        let text = MINIMAL.replace("[server]", "[server]\nlogin_timeout = \"never\"");
        let err = parse_str(&text).expect_err("not a duration");
        assert_eq!((err.key.as_str(), err.line), ("server.login_timeout", 3));
    }

    #[test]
    fn config_env_fills_config_keys_from_the_environment() {
        // PATH is set wherever tests run; the test does not change the
        // environment (other tests run in parallel).
        let path = std::env::var("PATH").expect("PATH is set");
        let text = MINIMAL.replace(
            "memory_limit = \"32MiB\"",
            "memory_limit = \"32MiB\"\n[site.main.storage.config_env]\nsecret = \"PATH\"",
        );
        let config = parse_str(&text).expect("valid");
        assert!(
            config.sites[0]
                .storage
                .config
                .contains(&("secret".into(), path))
        );

        let unset = text.replace("\"PATH\"", "\"WASMFTPD_TEST_SURELY_UNSET_4711\"");
        let err = parse_str(&unset).expect_err("unset variable");
        assert_eq!(err.key, "site.main.storage.config_env.secret");
        assert!(
            err.message.contains("WASMFTPD_TEST_SURELY_UNSET_4711"),
            "{err:?}"
        );
        assert_eq!(err.line, 16, "the line of the entry");

        let twice = text.replace(
            "[site.main.storage.config_env]",
            "[site.main.storage.config]\nsecret = \"in the file\"\n[site.main.storage.config_env]",
        );
        let err = parse_str(&twice).expect_err("set twice");
        assert!(err.message.contains("also set in `config`"), "{err:?}");
    }

    #[test]
    fn minimal_config_parses_with_units() {
        let config = parse_str(MINIMAL).expect("valid");
        assert_eq!(config.listen, vec!["127.0.0.1:2121".parse().unwrap()]);
        assert_eq!(config.session.idle_timeout, Duration::from_secs(30));
        assert_eq!(config.session.passive_keep, Duration::from_secs(2));
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert_eq!(config.default_site.as_deref(), Some("main"));
        let site = &config.sites[0];
        assert_eq!(site.storage.limits.memory, 32 * 1024 * 1024);
        assert!(site.auth.config.contains(&(
            "users.demo.permissions".to_string(),
            "read,list".to_string()
        )));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = MINIMAL.replace(
            "idle_timeout = \"30s\"",
            "idle_timeout = \"30s\"\nbogus = 1",
        );
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert_eq!(err.key, "server.bogus", "{err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with("/nonexistent/test.toml:5: key `server.bogus`"),
            "{shown}"
        );
    }

    #[test]
    fn bad_duration_is_reported_with_its_key() {
        let text = MINIMAL.replace("\"30s\"", "\"thirty\"");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "server.idle_timeout");
        assert_eq!(err.line, 4);
        assert!(err.message.contains("thirty"), "{err}");
    }

    #[test]
    fn unknown_builtin_is_rejected() {
        let text = MINIMAL.replace("builtin:storage-fs", "builtin:nope");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "site.main.storage.plugin");
        assert!(err.message.contains("no builtin plugin `nope`"), "{err}");
    }

    #[test]
    fn missing_granted_directory_is_rejected() {
        let text = format!("{MINIMAL}[site.main.storage.dirs]\n\"/\" = \"no-such-dir\"\n");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "site.main.storage.dirs./");
        assert!(err.message.contains("not found"), "{err}");
    }

    #[test]
    fn granted_directories_take_a_mode() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display();
        let text = format!(
            "{MINIMAL}[site.main.storage.dirs]\n\"/\" = \"{root}\"\n\
             \"/in\" = {{ path = \"{root}\", mode = \"write-only\" }}\n\
             \"/pub\" = {{ path = \"{root}\", mode = \"read-only\" }}\n\
             \"/rw\" = {{ path = \"{root}\" }}\n"
        );
        let config = parse_str(&text).expect("valid");
        let modes: Vec<(&str, GrantMode)> = config.sites[0]
            .storage
            .grants
            .iter()
            .map(|g| (g.guest.as_str(), g.mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("/", GrantMode::ReadWrite),
                ("/in", GrantMode::WriteOnly),
                ("/pub", GrantMode::ReadOnly),
                ("/rw", GrantMode::ReadWrite),
            ]
        );
        let bad = format!(
            "{MINIMAL}[site.main.storage.dirs]\n\"/\" = {{ path = \"{root}\", mode = \"rw\" }}\n"
        );
        let err = parse_str(&bad).expect_err("unknown mode");
        assert_eq!(
            (err.key.as_str(), err.line),
            ("site.main.storage.dirs./.mode", 16),
            "{err}"
        );
        assert!(err.message.contains("read-only"), "{err}");
        let bad = format!(
            "{MINIMAL}[site.main.storage.dirs]\n\"/\" = {{ path = \"{root}\", mod = \"read-only\" }}\n"
        );
        let err = parse_str(&bad).expect_err("unknown key");
        assert!(err.key.starts_with("site.main.storage.dirs./"), "{err}");
        assert!(err.message.contains("mod"), "{err}");
    }

    #[test]
    fn bad_toml_syntax_has_a_line() {
        let err = parse_str("[server\nlisten = 1").unwrap_err();
        assert_eq!(err.line, 1, "{err}");
    }

    #[test]
    fn default_site_must_exist() {
        let text = MINIMAL.replace("[server]", "[server]\ndefault_site = \"other\"");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "server.default_site");
    }

    #[test]
    fn passive_range_is_checked() {
        let text = MINIMAL.replace("[server]", "[server]\npassive_ports = \"60000-50000\"");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "server.passive_ports");
    }

    #[test]
    fn flatten_nests_and_joins() {
        let table: toml::Table =
            toml::from_str("a = 1\nb = true\n[c.d]\ne = [\"x\", \"y\"]").unwrap();
        let flat = flatten_table(&table);
        assert_eq!(
            flat,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "true".to_string()),
                ("c.d.e".to_string(), "x,y".to_string()),
            ]
        );
    }

    const SITE_FILE: &str = r#"
banner = "hello"
host_names = ["files.example"]
[auth]
plugin = "builtin:auth-static"
[storage]
plugin = "builtin:storage-fs"
"#;

    #[test]
    fn a_directory_holds_a_server_file_and_site_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("server.toml"),
            "[server]\nlisten = [\"127.0.0.1:0\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("alpha.toml"), SITE_FILE).unwrap();
        std::fs::write(dir.path().join("beta.toml"), SITE_FILE).unwrap();
        std::fs::write(dir.path().join(".beta.toml.swp"), "junk").unwrap();
        let config = load(dir.path()).expect("valid directory");
        let names: Vec<&str> = config.sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(config.sites[0].file, dir.path().join("alpha.toml"));
        assert_eq!(config.sites[1].host_names, ["files.example"]);
        assert_eq!(config.default_site, None, "two sites and no default_site");
    }

    #[test]
    fn an_error_in_a_site_file_names_that_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("alpha.toml"),
            SITE_FILE.replace("banner", "baner"),
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err();
        assert_eq!(err.file, dir.path().join("alpha.toml"));
        assert_eq!(err.key, "baner");
        assert_eq!(err.line, 2);
    }

    #[test]
    fn plugin_limits_are_bounded() {
        let text = MINIMAL.replace("\"32MiB\"", "\"4GiB\"");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "site.main.storage.memory_limit");
        assert_eq!(err.line, 14, "{err}");
        let text = MINIMAL.replace("memory_limit = \"32MiB\"", "call_timeout = \"0s\"");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "site.main.storage.call_timeout");
    }
    #[test]
    fn only_auth_plugins_reuse_instances() {
        assert!(
            !parse_str(MINIMAL).expect("valid").sites[0]
                .auth
                .reuse_instances
        );
        let text = MINIMAL.replace(
            "plugin = \"builtin:auth-static\"",
            "plugin = \"builtin:auth-static\"\nreuse_instances = true",
        );
        assert!(
            parse_str(&text).expect("valid").sites[0]
                .auth
                .reuse_instances
        );
        let text = MINIMAL.replace("memory_limit = \"32MiB\"", "reuse_instances = true");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.key, "site.main.storage.reuse_instances");
        assert_eq!(err.line, 14, "{err}");
        assert!(err.to_string().contains("only auth plugins"), "{err}");
    }
}
