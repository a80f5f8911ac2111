//! Bandwidth limits: a token bucket per user and direction, shared by all of
//! that user's sessions on a site, so opening more connections does not buy
//! more bandwidth. The data path asks the bucket before each chunk it moves
//! and sleeps off what it took beyond the budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

// tokio's clock, so tests with paused time see the bucket refill.
use tokio::time::Instant;

use super::metrics::Direction;

/// How long a burst may run ahead of the rate.
const BURST: Duration = Duration::from_millis(50);
/// Smallest grant, so tiny rates still move whole TCP segments.
const MIN_GRANT: u64 = 16 << 10;

/// Bytes per second, with a small burst.
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes that may go now; negative while a taker owes time.
    tokens: f64,
    last: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TokenBucket {
    /// `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> TokenBucket {
        TokenBucket {
            rate: rate.max(1),
            state: Mutex::new(State {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The most one call hands out: what the rate allows in one burst.
    pub fn max_grant(&self) -> usize {
        let burst = (self.rate as f64 * BURST.as_secs_f64()) as u64;
        burst.max(MIN_GRANT).try_into().unwrap_or(usize::MAX)
    }

    fn burst(&self) -> f64 {
        self.max_grant() as f64
    }

    /// Takes `want` bytes (at most [`Self::max_grant`]) and says how long the
    /// caller must wait before moving them.
    fn take_at(&self, want: usize, now: Instant) -> (usize, Duration) {
        let n = want.min(self.max_grant()).max(1);
        let mut state = lock(&self.state);
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.last = state.last.max(now);
        state.tokens = (state.tokens + elapsed * self.rate as f64).min(self.burst());
        state.tokens -= n as f64;
        let wait = if state.tokens < 0.0 {
            Duration::from_secs_f64(-state.tokens / self.rate as f64)
        } else {
            Duration::ZERO
        };
        (n, wait)
    }

    /// Waits until `want` bytes (or the largest grant, if less) may move;
    /// returns how many.
    pub async fn acquire(&self, want: usize) -> usize {
        let (n, wait) = self.take_at(want, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        n
    }
}

/// Limits of one transfer: the user's bucket for its direction, if any.
pub type Limit = Option<Arc<TokenBucket>>;

/// The buckets of every user with a limit, by (site, user, direction). A
/// bucket lives as long as a session holds it.
#[derive(Default)]
pub struct UserRates {
    buckets: Mutex<HashMap<(String, String, Direction), Weak<TokenBucket>>>,
}

impl UserRates {
    /// The bucket `user` on `site` shares for `direction` at `rate` bytes/s.
    /// A different rate than the live bucket's (a reload, a changed account)
    /// starts a new bucket for sessions from now on.
    pub fn bucket(
        &self,
        site: &str,
        user: &str,
        direction: Direction,
        rate: u64,
    ) -> Arc<TokenBucket> {
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= 1024 {
            buckets.retain(|_, weak| weak.strong_count() > 0);
        }
        let key = (site.to_string(), user.to_string(), direction);
        if let Some(bucket) = buckets.get(&key).and_then(Weak::upgrade)
            && bucket.rate() == rate.max(1)
        {
            return bucket;
        }
        let bucket = Arc::new(TokenBucket::new(rate));
        buckets.insert(key, Arc::downgrade(&bucket));
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated time: how long moving `total` bytes takes, in steps of `chunk`.
    fn simulate(bucket: &TokenBucket, total: usize, chunk: usize, start: Instant) -> Duration {
        let mut now = start;
        let mut moved = 0;
        while moved < total {
            let (n, wait) = bucket.take_at(chunk, now);
            now += wait;
            moved += n;
        }
        now - start
    }

    #[test]
    fn rate_is_kept_over_many_chunks() {
        let bucket = TokenBucket::new(20_000_000);
        let took = simulate(&bucket, 40_000_000, 256 << 10, Instant::now());
        let rate = 40_000_000.0 / took.as_secs_f64();
        assert!((19_000_000.0..21_000_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn grants_are_bounded_by_the_burst() {
        let bucket = TokenBucket::new(1_000_000);
        assert_eq!(bucket.max_grant(), 50_000);
        let (n, _) = bucket.take_at(1 << 20, Instant::now());
        assert_eq!(n, 50_000);
        let slow = TokenBucket::new(1000);
        assert_eq!(slow.max_grant(), 16 << 10);
    }

    #[test]
    fn idle_time_does_not_build_a_large_burst() {
        let bucket = TokenBucket::new(1_000_000);
        let start = Instant::now() + Duration::from_secs(60);
        // After a minute idle only one burst (50 ms) is free.
        let took = simulate(&bucket, 1_050_000, 50_000, start);
        assert!(took >= Duration::from_millis(990), "{took:?}");
    }

    #[test]
    fn sessions_of_one_user_share_a_bucket() {
        let rates = UserRates::default();
        let a = rates.bucket("s", "u", Direction::download, 100);
        let b = rates.bucket("s", "u", Direction::download, 100);
        assert!(Arc::ptr_eq(&a, &b));
        let up = rates.bucket("s", "u", Direction::upload, 100);
        assert!(!Arc::ptr_eq(&a, &up));
        let other = rates.bucket("s", "v", Direction::download, 100);
        assert!(!Arc::ptr_eq(&a, &other));
        let changed = rates.bucket("s", "u", Direction::download, 200);
        assert!(!Arc::ptr_eq(&a, &changed));
        drop((a, b, up, other, changed));
        let fresh = rates.bucket("s", "u", Direction::download, 100);
        assert_eq!(Arc::strong_count(&fresh), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn two_takers_share_the_rate() {
        let bucket = Arc::new(TokenBucket::new(1_000_000));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let bucket = bucket.clone();
            tasks.push(tokio::spawn(async move {
                let mut moved = 0;
                while moved < 1_000_000 {
                    moved += bucket.acquire(64 << 10).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let took = start.elapsed();
        // 2 MB at 1 MB/s.
        assert!(
            (Duration::from_millis(1900)..Duration::from_millis(2100)).contains(&took),
            "{took:?}"
        );
    }
}
