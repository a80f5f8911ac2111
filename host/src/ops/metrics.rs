//! Every metric the server exports, in one Prometheus registry per server
//! (never a global one: each test builds its own). Names and labels are an
//! interface dashboards rely on (issue 13, docs/operations.md).
//!
//! Hot paths never look a label set up by name: a site takes its handles once
//! when it is built ([`SiteMetrics`]), and a handle is an atomic behind an
//! `Arc`. Per-command counters (verb and reply class vary) are taken on their
//! first use into a table per site indexed by the command's row, so later
//! commands cost an index and an atomic add; plugin calls likewise keep their
//! handles per plugin ([`PluginCallMetrics`]).

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`]'s output (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

/// How a login ended (`wasmftpd_logins_total{result}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LoginResult {
    ok,
    bad_credentials,
    disabled,
    unavailable,
    banned,
}

impl LoginResult {
    const ALL: [LoginResult; 5] = [
        LoginResult::ok,
        LoginResult::bad_credentials,
        LoginResult::disabled,
        LoginResult::unavailable,
        LoginResult::banned,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub site: String,
    pub result: LoginResult,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Direction {
    upload,
    download,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TransferResult {
    ok,
    failed,
    aborted,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferLabels {
    pub site: String,
    pub direction: Direction,
    pub result: TransferResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub site: String,
    pub direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub site: String,
    pub verb: String,
    /// `2xx`, `4xx`, ...
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCallLabels {
    pub site: String,
    pub plugin: String,
    pub function: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FaultKind {
    trap,
    timeout,
    memory,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginFaultLabels {
    pub site: String,
    pub plugin: String,
    pub kind: FaultKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub site: String,
    pub plugin: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    ok,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RefusedReason {
    banned,
    too_many,
    proxy,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: RefusedReason,
}

/// Why a PROXY header was refused.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ProxyFailure {
    /// The connection came from an address outside `trusted_proxies`.
    untrusted,
    /// No header, or bytes that are not one.
    garbled,
    /// The header did not arrive in time.
    timeout,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyFailureLabels {
    pub reason: ProxyFailure,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn transfer_seconds() -> Histogram {
    // 1 ms .. ~9 min.
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

fn call_seconds() -> Histogram {
    // 10 µs .. ~2.6 s.
    Histogram::new(exponential_buckets(0.00001, 4.0, 10))
}

/// The metrics the plugin runtime reports into: the plugin runtime is shared
/// by the whole process and knows nothing of the server, so the server
/// installs its metrics here once at start (tools and tests never do, and
/// their plugin calls are simply not counted).
static PLUGIN_METRICS: std::sync::OnceLock<std::sync::Arc<Metrics>> = std::sync::OnceLock::new();

/// Makes plugin calls count into `metrics` (the first call wins).
pub fn observe_plugins(metrics: std::sync::Arc<Metrics>) {
    let _ = PLUGIN_METRICS.set(metrics);
}

/// Where plugin calls are counted, if anywhere.
pub fn plugin_metrics() -> Option<&'static Metrics> {
    PLUGIN_METRICS.get().map(|m| &**m)
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    pub connections_open: Gauge,
    pub connections_refused: Family<RefusedLabels, Counter>,
    pub sessions_open: Family<SiteLabels, Gauge>,
    pub sessions: Family<SiteLabels, Counter>,
    pub logins: Family<LoginLabels, Counter>,
    pub commands: Family<CommandLabels, Counter>,
    pub transfers: Family<TransferLabels, Counter>,
    pub transfer_bytes: Family<DirectionLabels, Counter>,
    pub transfer_seconds: HistogramFamily<DirectionLabels>,
    pub plugin_call_seconds: HistogramFamily<PluginCallLabels>,
    pub plugin_faults: Family<PluginFaultLabels, Counter>,
    pub plugin_instances: Family<PluginLabels, Gauge>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub bans_active: Gauge,
    pub bans: Counter,
    pub proxy_header_failures: Family<ProxyFailureLabels, Counter>,
    /// Tokio tasks alive, sampled at each scrape: a count that only grows
    /// under a steady load is a leak (issue 14's vanishing-client test).
    pub tasks_alive: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wasmftpd");
        let m = Metrics {
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            sessions_open: Family::default(),
            sessions: Family::default(),
            logins: Family::default(),
            commands: Family::default(),
            transfers: Family::default(),
            transfer_bytes: Family::default(),
            transfer_seconds: Family::new_with_constructor(transfer_seconds),
            plugin_call_seconds: Family::new_with_constructor(call_seconds),
            plugin_faults: Family::default(),
            plugin_instances: Family::default(),
            reloads: Family::default(),
            bans_active: Gauge::default(),
            bans: Counter::default(),
            proxy_header_failures: Family::default(),
            tasks_alive: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "Control connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept, by reason",
            m.connections_refused.clone(),
        );
        r.register(
            "sessions_open",
            "Logged-in sessions open now",
            m.sessions_open.clone(),
        );
        r.register("sessions", "Logged-in sessions started", m.sessions.clone());
        r.register("logins", "Login attempts by result", m.logins.clone());
        r.register(
            "commands",
            "Commands by verb and reply class",
            m.commands.clone(),
        );
        r.register(
            "transfers",
            "Finished transfers by direction and result",
            m.transfers.clone(),
        );
        r.register(
            "transfer_bytes",
            "Bytes moved on data connections",
            m.transfer_bytes.clone(),
        );
        r.register(
            "transfer_seconds",
            "Duration of transfers",
            m.transfer_seconds.clone(),
        );
        r.register(
            "plugin_call_seconds",
            "Duration of plugin calls",
            m.plugin_call_seconds.clone(),
        );
        r.register(
            "plugin_faults",
            "Plugin calls that trapped, timed out or ran out of memory",
            m.plugin_faults.clone(),
        );
        r.register(
            "plugin_instances_live",
            "Plugin instances alive now",
            m.plugin_instances.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        r.register(
            "bans_active",
            "Client addresses banned now",
            m.bans_active.clone(),
        );
        r.register("bans", "Bans imposed", m.bans.clone());
        r.register(
            "proxy_header_failures",
            "Connections refused for a missing, garbled or untrusted PROXY header",
            m.proxy_header_failures.clone(),
        );
        r.register(
            "runtime_tasks_alive",
            "Async tasks alive in the server's runtime (sampled when scraped)",
            m.tasks_alive.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Handles for one site, taken once when the site is built.
    pub fn site(&self, site: &str) -> SiteMetrics {
        let label = SiteLabels {
            site: site.to_string(),
        };
        let direction = |direction| DirectionLabels {
            site: site.to_string(),
            direction,
        };
        let transfers = |direction, result| {
            self.transfers.get_or_create_owned(&TransferLabels {
                site: site.to_string(),
                direction,
                result,
            })
        };
        SiteMetrics {
            name: site.to_string(),
            commands: Arc::new(CommandCounters::new(site, &self.commands)),
            sessions_open: self.sessions_open.get_or_create_owned(&label),
            sessions: self.sessions.get_or_create_owned(&label),
            logins: LoginResult::ALL.map(|result| {
                self.logins.get_or_create_owned(&LoginLabels {
                    site: site.to_string(),
                    result,
                })
            }),
            transfers: [
                [
                    transfers(Direction::upload, TransferResult::ok),
                    transfers(Direction::upload, TransferResult::failed),
                    transfers(Direction::upload, TransferResult::aborted),
                ],
                [
                    transfers(Direction::download, TransferResult::ok),
                    transfers(Direction::download, TransferResult::failed),
                    transfers(Direction::download, TransferResult::aborted),
                ],
            ],
            bytes: [
                self.transfer_bytes
                    .get_or_create_owned(&direction(Direction::upload)),
                self.transfer_bytes
                    .get_or_create_owned(&direction(Direction::download)),
            ],
            seconds: [
                self.transfer_seconds
                    .get_or_create_owned(&direction(Direction::upload)),
                self.transfer_seconds
                    .get_or_create_owned(&direction(Direction::download)),
            ],
        }
    }

    /// Counts one command's reply (for connections without a site; a site's
    /// sessions count through [`SiteMetrics::command`]).
    pub fn command(&self, site: &str, verb: &str, code: u16) {
        let index = crate::ftp::commands::index(verb);
        self.commands
            .get_or_create(&CommandLabels {
                site: site.to_string(),
                verb: verb_label(index).to_string(),
                class: CLASSES[class_of(code)],
            })
            .inc();
    }

    pub fn reload(&self, result: ReloadResult) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub fn refused(&self, reason: RefusedReason) {
        self.connections_refused
            .get_or_create(&RefusedLabels { reason })
            .inc();
    }

    pub fn proxy_failure(&self, reason: ProxyFailure) {
        self.proxy_header_failures
            .get_or_create(&ProxyFailureLabels { reason })
            .inc();
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A reply code's class, as an index into [`CLASSES`].
fn class_of(code: u16) -> usize {
    match code / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    }
}

/// The `verb` label of a command row. Unknown verbs are counted as one label
/// value: a client must not be able to create a series per garbage word.
fn verb_label(index: Option<usize>) -> &'static str {
    index.map_or("unknown", |i| crate::ftp::commands::COMMANDS[i].verb)
}

/// One site's command counters, taken from the family on first use: a
/// series appears once a command got a reply of its class, as before.
#[derive(Debug)]
struct CommandCounters {
    site: String,
    family: Family<CommandLabels, Counter>,
    /// [row (the last: unknown verbs)][class]
    slots: Box<[[OnceLock<Counter>; 5]]>,
}

impl CommandCounters {
    fn new(site: &str, family: &Family<CommandLabels, Counter>) -> Self {
        CommandCounters {
            site: site.to_string(),
            family: family.clone(),
            slots: (0..=crate::ftp::commands::COMMANDS.len())
                .map(|_| Default::default())
                .collect(),
        }
    }

    fn inc(&self, index: Option<usize>, code: u16) {
        let row = index.unwrap_or(self.slots.len() - 1);
        let class = class_of(code);
        self.slots[row][class]
            .get_or_init(|| {
                self.family.get_or_create_owned(&CommandLabels {
                    site: self.site.clone(),
                    verb: verb_label(index).to_string(),
                    class: CLASSES[class],
                })
            })
            .inc();
    }
}

/// One plugin's call metrics (`plugin_call_seconds`, `plugin_faults_total`),
/// with the handles kept per function name, so a call costs no allocation
/// and no hash of the label set.
pub struct PluginCallMetrics {
    metrics: &'static Metrics,
    site: String,
    plugin: String,
    calls: RwLock<Vec<(&'static str, Histogram)>>,
    /// `plugin_instances_live` for this plugin.
    pub live: Gauge,
}

impl PluginCallMetrics {
    pub fn new(metrics: &'static Metrics, site: &str, plugin: &str) -> PluginCallMetrics {
        PluginCallMetrics {
            metrics,
            site: site.to_string(),
            plugin: plugin.to_string(),
            calls: RwLock::default(),
            live: metrics.plugin_instances.get_or_create_owned(&PluginLabels {
                site: site.to_string(),
                plugin: plugin.to_string(),
            }),
        }
    }

    fn histogram(&self, function: &'static str) -> Histogram {
        let read = |calls: &[(&'static str, Histogram)]| {
            calls
                .iter()
                .find(|(f, _)| *f == function)
                .map(|(_, h)| h.clone())
        };
        if let Some(h) = read(&self.calls.read().unwrap_or_else(|p| p.into_inner())) {
            return h;
        }
        let mut calls = self.calls.write().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = read(&calls) {
            return h;
        }
        let h = self
            .metrics
            .plugin_call_seconds
            .get_or_create_owned(&PluginCallLabels {
                site: self.site.clone(),
                plugin: self.plugin.clone(),
                function: function.to_string(),
            });
        calls.push((function, h.clone()));
        h
    }

    /// Times one plugin call and counts its fault, if any.
    pub fn call(&self, function: &'static str, took: Duration, fault: Option<FaultKind>) {
        self.histogram(function).observe(took.as_secs_f64());
        if let Some(kind) = fault {
            self.metrics
                .plugin_faults
                .get_or_create(&PluginFaultLabels {
                    site: self.site.clone(),
                    plugin: self.plugin.clone(),
                    kind,
                })
                .inc();
        }
    }
}

/// One site's metric handles: counting through them is an atomic add.
#[derive(Clone, Debug)]
pub struct SiteMetrics {
    pub name: String,
    commands: Arc<CommandCounters>,
    pub sessions_open: Gauge,
    pub sessions: Counter,
    logins: [Counter; 5],
    /// [direction][result]
    transfers: [[Counter; 3]; 2],
    bytes: [Counter; 2],
    seconds: [Histogram; 2],
}

impl SiteMetrics {
    /// Handles that count into a registry nobody reads (tests, tools).
    pub fn detached(site: &str) -> SiteMetrics {
        Metrics::new().site(site)
    }

    pub fn login(&self, result: LoginResult) {
        self.logins[result as usize].inc();
    }

    /// Counts one command's reply; `index` is the verb's row in the command
    /// table (`None`: not a command).
    pub fn command(&self, index: Option<usize>, code: u16) {
        self.commands.inc(index, code);
    }

    pub fn transfer(
        &self,
        direction: Direction,
        result: TransferResult,
        bytes: u64,
        took: Duration,
    ) {
        let d = direction as usize;
        self.transfers[d][result as usize].inc();
        self.bytes[d].inc_by(bytes);
        self.seconds[d].observe(took.as_secs_f64());
    }

    /// Marks a logged-in session open until the guard is dropped.
    pub fn session_opened(&self) -> OpenSession {
        self.sessions.inc();
        self.sessions_open.inc();
        OpenSession(self.sessions_open.clone())
    }
}

/// Holds a site's `sessions_open` up by one.
#[derive(Debug)]
pub struct OpenSession(Gauge);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn names_and_labels_are_the_documented_ones() {
        // Plugin call metrics count into a server's metrics for the whole run.
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let site = metrics.site("main");
        site.login(LoginResult::ok);
        site.login(LoginResult::bad_credentials);
        site.login(LoginResult::bad_credentials);
        {
            let _open = site.session_opened();
            let text = metrics.encode();
            assert_eq!(
                line_value(&text, r#"wasmftpd_sessions_open{site="main"}"#),
                Some(1.0)
            );
        }
        site.transfer(
            Direction::download,
            TransferResult::ok,
            4096,
            Duration::from_millis(3),
        );
        let retr = crate::ftp::commands::index("RETR");
        assert!(retr.is_some());
        site.command(retr, 226);
        site.command(crate::ftp::commands::index("XYZZY"), 500);
        metrics.command("main", "RETR", 226);
        metrics.command("", "NOOP", 200);
        metrics.reload(ReloadResult::ok);
        let plugin = PluginCallMetrics::new(metrics, "main", "auth");
        plugin.call("login", Duration::from_micros(40), Some(FaultKind::trap));
        plugin.call("login", Duration::from_micros(40), None);
        plugin.live.inc();
        metrics.proxy_failure(ProxyFailure::untrusted);
        let text = metrics.encode();
        for (series, value) in [
            (r#"wasmftpd_sessions_open{site="main"}"#, 0.0),
            (r#"wasmftpd_sessions_total{site="main"}"#, 1.0),
            (r#"wasmftpd_logins_total{site="main",result="ok"}"#, 1.0),
            (
                r#"wasmftpd_logins_total{site="main",result="bad_credentials"}"#,
                2.0,
            ),
            (r#"wasmftpd_logins_total{site="main",result="banned"}"#, 0.0),
            (
                r#"wasmftpd_transfers_total{site="main",direction="download",result="ok"}"#,
                1.0,
            ),
            (
                r#"wasmftpd_transfer_bytes_total{site="main",direction="download"}"#,
                4096.0,
            ),
            (
                r#"wasmftpd_transfer_seconds_count{site="main",direction="download"}"#,
                1.0,
            ),
            (
                r#"wasmftpd_commands_total{site="main",verb="RETR",class="2xx"}"#,
                2.0,
            ),
            (
                r#"wasmftpd_commands_total{site="",verb="NOOP",class="2xx"}"#,
                1.0,
            ),
            (
                r#"wasmftpd_commands_total{site="main",verb="unknown",class="5xx"}"#,
                1.0,
            ),
            (r#"wasmftpd_reloads_total{result="ok"}"#, 1.0),
            (
                r#"wasmftpd_plugin_call_seconds_count{site="main",plugin="auth",function="login"}"#,
                2.0,
            ),
            (
                r#"wasmftpd_plugin_instances_live{site="main",plugin="auth"}"#,
                1.0,
            ),
            (
                r#"wasmftpd_plugin_faults_total{site="main",plugin="auth",kind="trap"}"#,
                1.0,
            ),
            (
                r#"wasmftpd_proxy_header_failures_total{reason="untrusted"}"#,
                1.0,
            ),
            ("wasmftpd_bans_active", 0.0),
        ] {
            assert_eq!(
                line_value(&text, series),
                Some(value),
                "{series} in\n{text}"
            );
        }
        assert!(text.contains("# TYPE wasmftpd_plugin_call_seconds histogram"));
        // Only series that counted something are exported.
        assert!(!text.contains(r#"verb="RETR",class="1xx""#), "{text}");
        assert!(!text.contains(r#"verb="STOR""#), "{text}");
    }

    #[test]
    fn a_rebuilt_site_counts_into_the_same_series() {
        let metrics = Metrics::new();
        let dele = crate::ftp::commands::index("DELE");
        for _ in 0..2 {
            let site = metrics.site("s");
            site.login(LoginResult::ok);
            site.command(dele, 250);
        }
        metrics.command("s", "DELE", 250);
        let text = metrics.encode();
        assert_eq!(
            line_value(&text, r#"wasmftpd_logins_total{site="s",result="ok"}"#),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"wasmftpd_commands_total{site="s",verb="DELE",class="2xx"}"#
            ),
            Some(3.0)
        );
    }
}
