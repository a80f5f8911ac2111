//! Connection counting: in total and per client address. A [`Slot`] holds one
//! connection's place and gives it back when dropped. (Sessions per site are
//! counted at login by the site itself: `Site::enter`.)
//!
//! Connections that have not logged in yet are also kept in a queue, oldest
//! first. When the server is full, a new connection does not get `421`: the
//! oldest of those is told to close ([`LoginWatch::must_make_room`]) and the
//! new one takes its place. So idle connections that never log in (slowloris)
//! cannot keep a real login out for `login_timeout` at a time, while logged-in
//! sessions are never closed for room. Only the total limit makes room this
//! way: an address over its own limit is refused as before.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

pub struct ConnectionLimits {
    /// Maxima are atomics so a reload can change them in place.
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections not logged in, by ticket (admission order, oldest first),
    /// each with the signal that closes it.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next_ticket: AtomicU64,
    /// Connections closed to make room, since the start.
    made_room: AtomicU64,
}

/// One connection's place; dropping it gives the place back.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

/// The session's side of its place: tells the limits when it logs in (it can
/// no longer be closed to make room) or out again (REIN), and hears when it
/// must close to make room.
pub struct LoginWatch {
    /// `None`: a session outside the server's limits (tests, tools).
    limits: Option<Arc<ConnectionLimits>>,
    /// Its place in the queue while not logged in.
    ticket: Option<u64>,
    close: Arc<Notify>,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            waiting: Mutex::new(BTreeMap::new()),
            next_ticket: AtomicU64::new(0),
            made_room: AtomicU64::new(0),
        })
    }

    pub fn set_maxima(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Connections closed so far to make room for new ones.
    pub fn made_room(&self) -> u64 {
        self.made_room.load(Ordering::Relaxed)
    }

    /// Takes a place for a connection from `ip`, or says why not (the text of
    /// the `421` reply). When the server is full, the oldest connection that
    /// has not logged in is told to close and this one is admitted: for the
    /// moments until it has closed, one more connection than the maximum is
    /// open.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<(Slot, LoginWatch), &'static str> {
        let full =
            self.total.fetch_add(1, Ordering::SeqCst) >= self.max_total.load(Ordering::Relaxed);
        // From here on, the slot's Drop undoes what was counted.
        let slot = Slot {
            limits: self.clone(),
            ip,
        };
        // The address's own limit first: a connection refused for it must
        // not close someone else's.
        let mut per_ip = lock(&self.per_ip);
        let count = per_ip.entry(ip).or_insert(0);
        *count += 1;
        let over_ip = *count > self.max_per_ip.load(Ordering::Relaxed);
        drop(per_ip);
        if over_ip {
            return Err("too many connections from your address");
        }
        if full && !self.make_room() {
            return Err("too many connections; try again later");
        }
        Ok((slot, LoginWatch::waiting(self.clone())))
    }

    /// Tells the oldest connection that has not logged in to close; false
    /// when every connection has logged in.
    fn make_room(&self) -> bool {
        let Some((_, close)) = lock(&self.waiting).pop_first() else {
            return false;
        };
        // A stored permit: the session sees it even if it is busy with a
        // command right now.
        close.notify_one();
        self.made_room.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::SeqCst);
        let mut per_ip = lock(&self.limits.per_ip);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl LoginWatch {
    /// For a session outside the server's limits: never told to make room.
    pub fn detached() -> Self {
        LoginWatch {
            limits: None,
            ticket: None,
            close: Arc::new(Notify::new()),
        }
    }

    /// A new connection, not logged in: last in the queue.
    fn waiting(limits: Arc<ConnectionLimits>) -> Self {
        let mut watch = LoginWatch {
            limits: Some(limits),
            ticket: None,
            close: Arc::new(Notify::new()),
        };
        watch.logged_out();
        watch
    }

    /// The session logged in: it is no longer closed to make room.
    pub fn logged_in(&mut self) {
        if let (Some(limits), Some(ticket)) = (&self.limits, self.ticket.take()) {
            lock(&limits.waiting).remove(&ticket);
        }
    }

    /// The session is (again) not logged in: it joins the queue at the end,
    /// as a new connection would (REIN also restarts its login timeout).
    pub fn logged_out(&mut self) {
        let Some(limits) = &self.limits else {
            return;
        };
        if self.ticket.is_some() {
            return;
        }
        // A fresh signal: a call to make room that came while the session
        // was logging in is not held against it later.
        self.close = Arc::new(Notify::new());
        let ticket = limits.next_ticket.fetch_add(1, Ordering::Relaxed);
        lock(&limits.waiting).insert(ticket, self.close.clone());
        self.ticket = Some(ticket);
    }

    /// Resolves when the server is full and this session, not logged in, is
    /// the oldest such: it should say so and close. Cancel-safe.
    pub async fn must_make_room(&self) {
        self.close.notified().await;
    }
}

impl Drop for LoginWatch {
    fn drop(&mut self) {
        self.logged_in();
    }
}

/// A poisoned lock only means another connection panicked mid-update of a
/// counter; the counts are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn told_to_close(watch: &LoginWatch) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), watch.must_make_room())
                .await
                .is_ok()
        })
    }

    #[test]
    fn limits_count_and_release() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let (s1, mut w1) = limits.acquire(a).unwrap();
        let (_s2, mut w2) = limits.acquire(a).unwrap();
        assert!(limits.acquire(a).is_err(), "third from the same address");
        let (_s3, mut w3) = limits.acquire(b).unwrap();
        // All logged in: nobody can be closed for room.
        w1.logged_in();
        w2.logged_in();
        w3.logged_in();
        assert_eq!(
            limits.acquire(b).err(),
            Some("too many connections; try again later"),
            "fourth in total"
        );
        assert_eq!(limits.open(), 3);
        drop((s1, w1));
        assert!(limits.acquire(a).is_ok(), "a place was given back");
        assert_eq!(limits.made_room(), 0);
    }

    #[test]
    fn a_full_server_closes_the_oldest_connection_not_logged_in() {
        let limits = ConnectionLimits::new(3, 10);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (_s1, mut w1) = limits.acquire(ip).unwrap();
        let (s2, w2) = limits.acquire(ip).unwrap();
        let (s3, w3) = limits.acquire(ip).unwrap();
        // The oldest has logged in: the next oldest (2) makes room for 4.
        w1.logged_in();
        let (s4, w4) = limits.acquire(ip).expect("room made");
        assert!(told_to_close(&w2));
        assert!(!told_to_close(&w3) && !told_to_close(&w4) && !told_to_close(&w1));
        assert_eq!(limits.made_room(), 1);
        assert_eq!(limits.open(), 4, "until the closed one has gone");
        drop((s2, w2));
        // Next in line: 3.
        let (_s5, _w5) = limits.acquire(ip).unwrap();
        assert!(told_to_close(&w3));
        assert!(!told_to_close(&w4));
        drop((s3, w3));
        // Back under the maximum: admitted without closing anyone.
        drop((s4, w4));
        let (_s6, w6) = limits.acquire(ip).unwrap();
        assert!(!told_to_close(&w6));
        assert_eq!(limits.made_room(), 2);
    }

    #[test]
    fn logged_in_sessions_are_never_closed_for_room() {
        let limits = ConnectionLimits::new(2, 10);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (_s1, mut w1) = limits.acquire(ip).unwrap();
        let (_s2, mut w2) = limits.acquire(ip).unwrap();
        w1.logged_in();
        w2.logged_in();
        assert!(limits.acquire(ip).is_err());
        assert!(!told_to_close(&w1) && !told_to_close(&w2));
        // REIN: 2 is not logged in again and can make room; a call to make
        // room from before does not count against it.
        w2.logged_out();
        assert!(!told_to_close(&w2));
        let (_s3, _w3) = limits.acquire(ip).unwrap();
        assert!(told_to_close(&w2));
    }

    #[test]
    fn an_address_over_its_own_limit_closes_nobody() {
        let limits = ConnectionLimits::new(2, 1);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let (_s1, w1) = limits.acquire(a).unwrap();
        let (_s2, w2) = limits.acquire(b).unwrap();
        assert_eq!(
            limits.acquire(a).err(),
            Some("too many connections from your address")
        );
        assert!(!told_to_close(&w1) && !told_to_close(&w2));
        assert_eq!(limits.open(), 2);
    }

    #[test]
    fn closed_connections_leave_the_queue() {
        let limits = ConnectionLimits::new(1, 10);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (s1, w1) = limits.acquire(ip).unwrap();
        drop((s1, w1));
        let (_s2, mut w2) = limits.acquire(ip).unwrap();
        w2.logged_in();
        assert!(limits.acquire(ip).is_err(), "nothing left to close");
        assert_eq!(limits.made_room(), 0);
    }
}
