//! The simulator's clock: tokio time (so unit tests can pause it) and the
//! time scale that shrinks Discord's windows for fast tests.
//!
//! Every Discord time rule (the 5 s identify window, the 24 h session start
//! window, the 60 s gateway send window, session expiry) goes through
//! [`Clock::scaled`]; heartbeat intervals do not, they are configured
//! directly. Ledger timestamps are unscaled milliseconds since the simulator
//! started.

use std::time::Duration;

use tokio::time::Instant;

/// Discord's identify window: one IDENTIFY per bucket per 5 s.
pub(crate) const IDENTIFY_WINDOW: Duration = Duration::from_secs(5);
/// Discord's session start window for `session_start_limit`.
pub(crate) const SESSION_START_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Discord's gateway send window: 120 client payloads per 60 s.
pub(crate) const SEND_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
    scale: f64,
}

impl Clock {
    pub(crate) fn new(scale: f64) -> Self {
        Self {
            start: Instant::now(),
            scale,
        }
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::now()
    }

    pub(crate) fn start(&self) -> Instant {
        self.start
    }

    /// A Discord duration on this simulator's clock; never zero, so a
    /// window always exists.
    pub(crate) fn scaled(&self, discord: Duration) -> Duration {
        discord.mul_f64(self.scale).max(Duration::from_micros(100))
    }

    /// Milliseconds since the simulator started, for ledger records.
    pub(crate) fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.ms_at(self.now())
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
