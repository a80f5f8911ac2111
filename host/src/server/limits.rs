//! Connection counting: in total and per client address. A [`Slot`] holds one
//! connection's place and gives it back when dropped. (Sessions per site are
//! counted at login by the site itself: `Site::enter`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct ConnectionLimits {
    /// Maxima are atomics so a reload can change them in place.
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place; dropping it gives the place back.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
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

    /// Takes a place for a connection from `ip`, or says why not (the text of
    /// the `421` reply).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        if self.total.fetch_add(1, Ordering::SeqCst) >= self.max_total.load(Ordering::Relaxed) {
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err("too many connections; try again later");
        }
        // From here on, the slot's Drop undoes what was counted.
        let slot = Slot {
            limits: self.clone(),
            ip,
        };
        let mut per_ip = lock(&self.per_ip);
        let count = per_ip.entry(ip).or_insert(0);
        *count += 1;
        if *count > self.max_per_ip.load(Ordering::Relaxed) {
            drop(per_ip);
            return Err("too many connections from your address");
        }
        Ok(slot)
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

/// A poisoned lock only means another connection panicked mid-update of a
/// counter; the counts are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_and_release() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = limits.acquire(a).unwrap();
        let _s2 = limits.acquire(a).unwrap();
        assert!(limits.acquire(a).is_err(), "third from the same address");
        let _s3 = limits.acquire(b).unwrap();
        assert!(limits.acquire(b).is_err(), "fourth in total");
        drop(s1);
        assert!(limits.acquire(a).is_ok(), "a place was given back");
    }
}
