//! The node's line under Discord's global REST limit (50 requests per second per bot,
//! whatever the process). Alone a node may use nearly all of it; in a cluster each node holds
//! a share the coordinator sets by demand.
//!
//! A place is given when a request is ready to leave (its bucket allows it), at the rate in
//! force then: a share that grows or shrinks applies at once to everything waiting, so a node
//! never keeps sending at a share it no longer holds, nor crawls at one it has outgrown.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, Notify};
use tokio::time::{Duration, Instant};

/// The slowest rate a line may have: one place in 1,000 s.
const SLOWEST: f64 = 0.001;

pub struct GlobalLine {
    /// Places per second, as `f64` bits.
    per_sec: AtomicU64,
    rate_changed: Notify,
    /// When the last place was given. Tokio's mutex is fair: places go in the order asked.
    last: Mutex<Option<Instant>>,
    /// Requests queued since the last [`GlobalLine::take_demand`].
    arrived: AtomicU64,
    /// Requests ready to leave, waiting for a place now.
    waiting: AtomicU64,
}

/// What a node asks of the global limit, for the coordinator to share it by.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Demand {
    /// Requests queued since the previous report.
    pub arrived: u64,
    /// Requests ready to leave and waiting for a place at the time of the report.
    pub waiting: u64,
}

impl GlobalLine {
    pub fn new(per_sec: f64) -> Self {
        Self {
            per_sec: AtomicU64::new(Self::checked(per_sec).to_bits()),
            rate_changed: Notify::new(),
            last: Mutex::new(None),
            arrived: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    /// No limit: for a process whose global limit is enforced elsewhere (tests, benches).
    pub fn unlimited() -> Self {
        Self::new(f64::INFINITY)
    }

    pub fn per_sec(&self) -> f64 {
        f64::from_bits(self.per_sec.load(Ordering::Relaxed))
    }

    /// Applies to the place being waited for and every one after it.
    pub fn set_rate(&self, per_sec: f64) {
        self.per_sec
            .store(Self::checked(per_sec).to_bits(), Ordering::Relaxed);
        self.rate_changed.notify_waiters();
    }

    fn checked(per_sec: f64) -> f64 {
        assert!(
            per_sec >= SLOWEST,
            "a global line of {per_sec}/s never moves"
        );
        per_sec
    }

    /// Counts a request queued for the line (the node's demand).
    pub(super) fn arrive(&self) {
        self.arrived.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests waiting for a place now.
    pub(super) fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The demand since the previous call.
    pub fn take_demand(&self) -> Demand {
        Demand {
            arrived: self.arrived.swap(0, Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// Waits for the next place: one interval after the previous place, or at once if the
    /// line was idle that long, so the node sends at most its rate plus one in any second.
    pub(super) async fn acquire(&self) {
        let _waiting = Waiting::new(&self.waiting);
        let mut last = self.last.lock().await;
        loop {
            // Listening before the rate is read: a change in between is not missed.
            let mut rate_changed = pin!(self.rate_changed.notified());
            rate_changed.as_mut().enable();
            let Some(at) = last.map(|last| last + Duration::from_secs_f64(1.0 / self.per_sec()))
            else {
                break;
            };
            if at <= Instant::now() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at) => break,
                () = rate_changed => {}
            }
        }
        *last = Some(Instant::now());
    }
}

/// Counts one waiter for as long as it waits, also if its request is dropped meanwhile.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn places_are_spaced_at_the_rate_in_force_when_given() {
        let line = GlobalLine::new(10.0);
        let start = Instant::now();
        for _ in 0..21 {
            line.acquire().await;
        }
        // One place at once, then one every 100 ms.
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        // Twenty requests wait at 1/s; the share grows to 100/s a second later: what waits
        // goes at the new rate, not at the one it was queued under.
        line.set_rate(1.0);
        let shared = Arc::new(line);
        let start = Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let line = Arc::clone(&shared);
                tokio::spawn(async move { line.acquire().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(
            shared.take_demand().waiting,
            19,
            "one place given in 1.5 s at 1/s"
        );
        shared.set_rate(100.0);
        for task in tasks {
            task.await.unwrap();
        }
        // The first at 1 s (1/s after the last place), the second at 1.5 s as the rate
        // changed, then 18 more 10 ms apart.
        assert_eq!(start.elapsed(), Duration::from_millis(1_680));

        // And a share that shrinks applies at once too.
        shared.set_rate(2.0);
        let start = Instant::now();
        for _ in 0..3 {
            shared.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1_500));
    }
}
