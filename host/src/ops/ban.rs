//! The defender: stops password guessing and other abuse by client address.
//!
//! Failed logins, and protocol abuse (invalid commands before login, a
//! connection that talks but never tries to log in), each add one to the
//! address's score. An address that reaches `max_failures` within `window` is
//! banned for `ban_time`, doubled for each repeat offence up to
//! `max_ban_time`; a banned address gets `421` at connect, before any plugin
//! runs. Networks in `allow` are never banned.
//!
//! Separately, one account may fail `max_user_failures` times within
//! `window` (from any addresses) before it is locked for `ban_time`, so a
//! botnet cannot guess one password from many addresses. A locked account is
//! refused without asking the auth plugin.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::NetList;

/// `[server.ban]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BanSettings {
    pub enabled: bool,
    /// Score that bans an address within `window`.
    pub max_failures: u32,
    pub window: Duration,
    /// First ban; doubles on each repeat offence.
    pub ban_time: Duration,
    /// Longest ban; also how long a past offence is remembered.
    pub max_ban_time: Duration,
    /// Never banned.
    pub allow: NetList,
    /// Failed logins of one account within `window` that lock it (0: off).
    pub max_user_failures: u32,
}

impl Default for BanSettings {
    fn default() -> Self {
        BanSettings {
            enabled: true,
            max_failures: 10,
            window: Duration::from_secs(5 * 60),
            ban_time: Duration::from_secs(15 * 60),
            max_ban_time: Duration::from_secs(24 * 3600),
            allow: NetList::default(),
            max_user_failures: 50,
        }
    }
}

impl BanSettings {
    pub fn disabled() -> Self {
        BanSettings {
            enabled: false,
            ..Default::default()
        }
    }
}

/// What adds to an address's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    FailedLogin,
    /// Unknown command, over-long or non-UTF-8 line before login.
    InvalidCommand,
    /// The connection sent commands but never tried to log in.
    NoLogin,
}

/// Tracked addresses beyond which new ones are not scored (memory bound).
const MAX_TRACKED: usize = 100_000;
/// Table size that triggers a sweep of forgotten entries.
const SWEEP_AT: usize = 1024;

#[derive(Debug)]
struct Record {
    /// When each scored event happened, oldest first, within the window.
    events: VecDeque<Instant>,
    banned_until: Option<Instant>,
    /// Bans so far (for doubling), remembered for `max_ban_time`.
    offences: u32,
    last_ban_end: Option<Instant>,
}

impl Record {
    fn new() -> Self {
        Record {
            events: VecDeque::new(),
            banned_until: None,
            offences: 0,
            last_ban_end: None,
        }
    }

    fn forget_old(&mut self, now: Instant, settings: &BanSettings) {
        while self
            .events
            .front()
            .is_some_and(|&t| now.duration_since(t) >= settings.window)
        {
            self.events.pop_front();
        }
        if let Some(end) = self.last_ban_end
            && now.saturating_duration_since(end) >= settings.max_ban_time
            && self.banned_until.is_none_or(|until| until <= now)
        {
            self.offences = 0;
            self.last_ban_end = None;
        }
    }

    /// Nothing left worth remembering.
    fn is_empty(&self, now: Instant) -> bool {
        self.events.is_empty()
            && self.offences == 0
            && self.banned_until.is_none_or(|until| until <= now)
    }
}

#[derive(Default)]
struct Tables {
    hosts: HashMap<IpAddr, Record>,
    /// (site, user) → failures.
    users: HashMap<(String, String), Record>,
}

/// The defender; shared by every listener and session of a server.
pub struct Defender {
    settings: ArcSwap<BanSettings>,
    tables: Mutex<Tables>,
    /// When the last ban or account lock imposed so far ends, in nanoseconds
    /// since `epoch`: until then a lookup is needed; after it nothing is
    /// banned, and the check at every connect and login costs no lock.
    bans_end: AtomicU64,
    epoch: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Defender {
    pub fn new(settings: BanSettings) -> Defender {
        Defender {
            settings: ArcSwap::from_pointee(settings),
            tables: Mutex::new(Tables::default()),
            bans_end: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// New settings from a reload; running bans keep their end.
    pub fn set_settings(&self, settings: BanSettings) {
        self.settings.store(std::sync::Arc::new(settings));
    }

    fn settings(&self) -> arc_swap::Guard<std::sync::Arc<BanSettings>> {
        self.settings.load()
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Called with the tables locked whenever a ban or lock is imposed.
    fn note_ban_until(&self, until: Instant) {
        self.bans_end
            .fetch_max(self.nanos(until), Ordering::Relaxed);
    }

    /// Whether any ban or account lock may still run at `now`.
    fn any_ban_at(&self, now: Instant) -> bool {
        self.nanos(now) < self.bans_end.load(Ordering::Relaxed)
    }

    /// How long `ip` stays banned, if it is.
    pub fn banned(&self, ip: IpAddr) -> Option<Duration> {
        self.banned_at(ip.to_canonical(), Instant::now())
    }

    fn banned_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if !self.any_ban_at(now) {
            return None;
        }
        let settings = self.settings();
        if !settings.enabled || settings.allow.contains(ip) {
            return None;
        }
        let tables = lock(&self.tables);
        let until = tables.hosts.get(&ip)?.banned_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Scores one offence by `ip`. Returns the ban's length when this
    /// offence banned the address.
    pub fn record(&self, ip: IpAddr, offence: Offence) -> Option<Duration> {
        self.record_at(ip.to_canonical(), offence, Instant::now())
    }

    fn record_at(&self, ip: IpAddr, offence: Offence, now: Instant) -> Option<Duration> {
        let settings = self.settings();
        if !settings.enabled || settings.max_failures == 0 || settings.allow.contains(ip) {
            return None;
        }
        let mut tables = lock(&self.tables);
        if tables.hosts.len() >= SWEEP_AT && !tables.hosts.contains_key(&ip) {
            sweep(&mut tables.hosts, now, &settings);
            if tables.hosts.len() >= MAX_TRACKED {
                warn!(client = %ip, "defender: too many addresses tracked; not scoring this one");
                return None;
            }
        }
        let record = tables.hosts.entry(ip).or_insert_with(Record::new);
        record.forget_old(now, &settings);
        if record.banned_until.is_some_and(|until| until > now) {
            return None;
        }
        record.events.push_back(now);
        if record.events.len() < settings.max_failures as usize {
            return None;
        }
        record.events.clear();
        let doubling = record.offences.min(30);
        let length = settings
            .ban_time
            .saturating_mul(1u32 << doubling)
            .min(settings.max_ban_time.max(settings.ban_time));
        record.offences += 1;
        record.banned_until = Some(now + length);
        record.last_ban_end = Some(now + length);
        self.note_ban_until(now + length);
        warn!(
            client = %ip,
            seconds = length.as_secs(),
            offence = ?offence,
            repeat = record.offences,
            "banned: {} offences within {}s",
            settings.max_failures,
            settings.window.as_secs()
        );
        Some(length)
    }

    /// Whether the account is locked after too many failed logins.
    pub fn user_locked(&self, site: &str, user: &str) -> bool {
        self.user_locked_at(site, user, Instant::now())
    }

    fn user_locked_at(&self, site: &str, user: &str, now: Instant) -> bool {
        if !self.any_ban_at(now) {
            return false;
        }
        let settings = self.settings();
        if !settings.enabled || settings.max_user_failures == 0 {
            return false;
        }
        let tables = lock(&self.tables);
        tables
            .users
            .get(&(site.to_string(), user.to_string()))
            .and_then(|r| r.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Counts a failed login of `user` on `site` (from any address).
    pub fn record_user_failure(&self, site: &str, user: &str) {
        self.record_user_failure_at(site, user, Instant::now())
    }

    fn record_user_failure_at(&self, site: &str, user: &str, now: Instant) {
        let settings = self.settings();
        if !settings.enabled || settings.max_user_failures == 0 {
            return;
        }
        let mut tables = lock(&self.tables);
        let key = (site.to_string(), user.to_string());
        if tables.users.len() >= SWEEP_AT && !tables.users.contains_key(&key) {
            sweep(&mut tables.users, now, &settings);
            if tables.users.len() >= MAX_TRACKED {
                return;
            }
        }
        let record = tables.users.entry(key).or_insert_with(Record::new);
        record.forget_old(now, &settings);
        if record.banned_until.is_some_and(|until| until > now) {
            return;
        }
        record.events.push_back(now);
        if record.events.len() >= settings.max_user_failures as usize {
            record.events.clear();
            record.banned_until = Some(now + settings.ban_time);
            self.note_ban_until(now + settings.ban_time);
            warn!(
                site,
                user,
                seconds = settings.ban_time.as_secs(),
                "account locked: {} failed logins within {}s",
                settings.max_user_failures,
                settings.window.as_secs()
            );
        }
    }

    /// Addresses banned now (for `wasmftpd_bans_active`).
    pub fn active_bans(&self) -> usize {
        let now = Instant::now();
        let tables = lock(&self.tables);
        tables
            .hosts
            .values()
            .filter(|r| r.banned_until.is_some_and(|until| until > now))
            .count()
    }
}

fn sweep<K: std::fmt::Debug>(table: &mut HashMap<K, Record>, now: Instant, settings: &BanSettings) {
    table.retain(|key, record| {
        record.forget_old(now, settings);
        if record.banned_until.is_some_and(|until| until <= now) {
            record.banned_until = None;
            info!(?key, "ban expired");
        }
        !record.is_empty(now)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BanSettings {
        BanSettings {
            enabled: true,
            max_failures: 3,
            window: Duration::from_secs(60),
            ban_time: Duration::from_secs(10),
            max_ban_time: Duration::from_secs(35),
            allow: NetList::new(vec!["10.0.0.0/8".parse().unwrap()]),
            max_user_failures: 4,
        }
    }

    const IP: &str = "192.0.2.1";

    #[test]
    fn failures_within_the_window_ban_then_the_ban_ends() {
        let d = Defender::new(settings());
        let ip: IpAddr = IP.parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(d.record_at(ip, Offence::FailedLogin, t0), None);
        assert_eq!(d.record_at(ip, Offence::InvalidCommand, t0), None);
        assert_eq!(d.banned_at(ip, t0), None);
        assert_eq!(
            d.record_at(ip, Offence::FailedLogin, t0),
            Some(Duration::from_secs(10))
        );
        assert!(d.banned_at(ip, t0 + Duration::from_secs(9)).is_some());
        assert_eq!(d.banned_at(ip, t0 + Duration::from_secs(10)), None);
        assert_eq!(d.active_bans(), 1);
        // Past the last ban's end, checks take no lock.
        assert!(d.any_ban_at(t0 + Duration::from_secs(9)));
        assert!(!d.any_ban_at(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let d = Defender::new(settings());
        let ip: IpAddr = IP.parse().unwrap();
        let t0 = Instant::now();
        d.record_at(ip, Offence::FailedLogin, t0);
        d.record_at(ip, Offence::FailedLogin, t0);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(d.record_at(ip, Offence::FailedLogin, later), None);
        assert_eq!(d.banned_at(ip, later), None);
    }

    #[test]
    fn repeat_offences_double_the_ban_up_to_the_cap() {
        let d = Defender::new(settings());
        let ip: IpAddr = IP.parse().unwrap();
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let mut ban = None;
            for _ in 0..3 {
                ban = d.record_at(ip, Offence::FailedLogin, now);
            }
            let ban = ban.expect("banned");
            lengths.push(ban.as_secs());
            now += ban;
        }
        assert_eq!(lengths, [10, 20, 35, 35]);
    }

    #[test]
    fn allow_listed_and_disabled_are_never_banned() {
        let d = Defender::new(settings());
        let t0 = Instant::now();
        let allowed: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(
                d.record_at(allowed.to_canonical(), Offence::FailedLogin, t0),
                None
            );
        }
        assert_eq!(d.banned_at(allowed.to_canonical(), t0), None);

        let off = Defender::new(BanSettings::disabled());
        let ip: IpAddr = IP.parse().unwrap();
        for _ in 0..20 {
            assert_eq!(off.record_at(ip, Offence::FailedLogin, t0), None);
        }
    }

    #[test]
    fn a_ban_ends_when_the_address_is_allow_listed_by_a_reload() {
        let d = Defender::new(settings());
        let ip: IpAddr = IP.parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            d.record_at(ip, Offence::FailedLogin, t0);
        }
        assert!(d.banned_at(ip, t0).is_some());
        d.set_settings(BanSettings {
            allow: NetList::new(vec!["192.0.2.0/24".parse().unwrap()]),
            ..settings()
        });
        assert_eq!(d.banned_at(ip, t0), None);
    }

    #[test]
    fn one_account_is_locked_after_failures_from_many_addresses() {
        let d = Defender::new(settings());
        let t0 = Instant::now();
        for _ in 0..3 {
            d.record_user_failure_at("main", "alice", t0);
        }
        assert!(!d.user_locked_at("main", "alice", t0));
        assert!(!d.any_ban_at(t0));
        d.record_user_failure_at("main", "alice", t0);
        assert!(d.user_locked_at("main", "alice", t0));
        assert!(d.any_ban_at(t0));
        assert!(!d.user_locked_at("other", "alice", t0), "per site");
        assert!(!d.user_locked_at("main", "bob", t0));
        assert!(!d.user_locked_at("main", "alice", t0 + Duration::from_secs(10)));
    }

    #[test]
    fn sweeping_forgets_quiet_addresses() {
        let d = Defender::new(settings());
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0xC000_0000u32 + i));
            d.record_at(ip, Offence::NoLogin, t0);
        }
        assert_eq!(lock(&d.tables).hosts.len(), SWEEP_AT);
        let later = t0 + Duration::from_secs(61);
        d.record_at("198.51.100.1".parse().unwrap(), Offence::NoLogin, later);
        assert_eq!(lock(&d.tables).hosts.len(), 1);
    }
}
