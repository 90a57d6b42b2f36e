//! Discord's two IDENTIFY rules: one IDENTIFY per bucket
//! (`shard_id % max_concurrency`) per 5 s window, and a budget of
//! `session_start_limit.total` IDENTIFYs per 24 h window. Both windows are
//! scaled by the clock. RESUME is never limited.
//!
//! A bucket's window starts at its last accepted IDENTIFY, as the
//! simulator receives it; rejected IDENTIFYs neither start a window nor
//! spend the budget. The 24 h window is fixed, counted from the simulator's
//! start, which is what `reset_after` reports.
//!
//! A grace absorbs the jitter between a client's queue releasing a shard
//! and its IDENTIFY arriving: twilight's `InMemoryQueue` on a busy 2-core
//! machine was measured arriving up to 75 ms "early" against the previous
//! arrival (4,925..4,997 ms apart) while releasing exactly 5 s apart.
//! The grace is capped at a tenth of the scaled window, so a client that
//! ignores the rule is always caught.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::{Clock, IDENTIFY_WINDOW, SESSION_START_WINDOW};

/// What the rules say about one IDENTIFY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted {
        bucket: u32,
    },
    /// Another IDENTIFY of this bucket was accepted less than a window ago.
    RateLimited {
        bucket: u32,
    },
    /// The 24 h budget is spent.
    Exhausted {
        bucket: u32,
    },
}

#[derive(Debug)]
struct State {
    /// Per bucket: when its last IDENTIFY was accepted.
    last: Vec<Option<Instant>>,
    /// Index of the 24 h window `used` counts in.
    day: u64,
    used: u32,
}

#[derive(Debug)]
pub(crate) struct IdentifyLimits {
    clock: Clock,
    window: Duration,
    grace: Duration,
    day: Duration,
    total: u32,
    state: Mutex<State>,
}

impl IdentifyLimits {
    pub(crate) fn new(clock: Clock, max_concurrency: u32, total: u32, grace: Duration) -> Self {
        let window = clock.scaled(IDENTIFY_WINDOW);
        Self {
            clock,
            window,
            grace: grace.min(window / 10),
            day: clock.scaled(SESSION_START_WINDOW),
            total,
            state: Mutex::new(State {
                last: vec![None; max_concurrency as usize],
                day: 0,
                used: 0,
            }),
        }
    }

    fn day_index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.clock.start());
        u64::try_from(elapsed.as_nanos() / self.day.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    fn roll(&self, state: &mut State, now: Instant) {
        let day = self.day_index(now);
        if day != state.day {
            state.day = day;
            state.used = 0;
        }
    }

    /// Checks an IDENTIFY of `shard` received at `now`, and if it is
    /// accepted, spends a session start and starts its bucket's window.
    pub(crate) fn check(&self, shard: u32, now: Instant) -> Verdict {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut state, now);
        let buckets = u32::try_from(state.last.len()).unwrap_or(u32::MAX);
        let bucket = shard % buckets;
        let slot = bucket as usize;
        if state.last[slot].is_some_and(|last| now + self.grace < last + self.window) {
            return Verdict::RateLimited { bucket };
        }
        if state.used >= self.total {
            return Verdict::Exhausted { bucket };
        }
        state.used += 1;
        state.last[slot] = Some(now);
        Verdict::Accepted { bucket }
    }

    /// `session_start_limit.remaining`.
    pub(crate) fn remaining(&self, now: Instant) -> u32 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut state, now);
        self.total.saturating_sub(state.used)
    }

    /// `session_start_limit.reset_after`: until the current window ends.
    pub(crate) fn reset_after(&self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.clock.start());
        let day_nanos = self.day.as_nanos().max(1);
        let into = elapsed.as_nanos() % day_nanos;
        Duration::from_nanos(u64::try_from(day_nanos - into).unwrap_or(u64::MAX))
    }

    /// The scaled identify window.
    #[cfg(test)]
    pub(crate) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn one_identify_per_bucket_per_window() {
        let limits = IdentifyLimits::new(Clock::new(1.0), 16, 1000, ms(100));
        let t0 = Instant::now();
        // Shards 0..16 fill the 16 buckets; 16 shares bucket 0 with 0.
        for shard in 0..16 {
            assert_eq!(limits.check(shard, t0), Verdict::Accepted { bucket: shard });
        }
        assert_eq!(
            limits.check(16, t0 + ms(4_899)),
            Verdict::RateLimited { bucket: 0 }
        );
        // Within the grace: accepted, and the window starts from here.
        assert_eq!(
            limits.check(16, t0 + ms(4_900)),
            Verdict::Accepted { bucket: 0 }
        );
        // The rejection did not move bucket 0's window: 5 s after the last
        // acceptance, not after the rejection.
        assert_eq!(
            limits.check(32, t0 + ms(9_799)),
            Verdict::RateLimited { bucket: 0 }
        );
        assert_eq!(
            limits.check(32, t0 + ms(9_800)),
            Verdict::Accepted { bucket: 0 }
        );
        assert_eq!(limits.remaining(t0 + ms(10_000)), 1000 - 18);
    }

    #[tokio::test(start_paused = true)]
    async fn time_scale_shrinks_the_windows() {
        let clock = Clock::new(0.01);
        // The 250 ms grace is capped at a tenth of the 50 ms window.
        let limits = IdentifyLimits::new(clock, 1, 2, ms(250));
        let t0 = clock.start();
        assert_eq!(limits.window(), ms(50));
        assert_eq!(limits.check(0, t0), Verdict::Accepted { bucket: 0 });
        assert_eq!(
            limits.check(1, t0 + ms(44)),
            Verdict::RateLimited { bucket: 0 }
        );
        assert_eq!(
            limits.check(1, t0 + ms(45)),
            Verdict::Accepted { bucket: 0 }
        );
        // Budget of two spent: the third is refused whatever the bucket.
        assert_eq!(limits.remaining(t0 + ms(100)), 0);
        assert_eq!(
            limits.check(0, t0 + ms(100)),
            Verdict::Exhausted { bucket: 0 }
        );
        // 24 h × 0.01 = 864 s; the budget comes back in the next window.
        let day = ms(864_000);
        assert_eq!(limits.reset_after(t0 + ms(100)), day - ms(100));
        assert_eq!(limits.remaining(t0 + day), 2);
        assert_eq!(limits.check(0, t0 + day), Verdict::Accepted { bucket: 0 });
    }
}
