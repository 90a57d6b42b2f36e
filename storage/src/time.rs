//! Time as the storage layer sees it: a caller-supplied instant, so retention is testable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). Writes carry the time of the event they record and
/// sweeps take "now" from the caller, so tests move time by passing a later value.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;

impl Timestamp {
    /// `2024-04-12T10:18:47.635628Z` (or `+00:00`) as a timestamp; other offsets are refused
    /// (Paddle and operators give UTC).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let text = text
            .strip_suffix('Z')
            .or_else(|| text.strip_suffix("+00:00"))?;
        let (date, time) = text.split_once('T')?;
        let mut date = date.split('-');
        let year: i64 = date.next()?.parse().ok()?;
        let month: i64 = date.next()?.parse().ok()?;
        let day: i64 = date.next()?.parse().ok()?;
        let (clock, fraction) = match time.split_once('.') {
            Some((clock, fraction)) => (clock, fraction),
            None => (time, ""),
        };
        let mut clock = clock.split(':');
        let hour: i64 = clock.next()?.parse().ok()?;
        let minute: i64 = clock.next()?.parse().ok()?;
        let second: i64 = clock.next()?.parse().ok()?;
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
            || !fraction.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000 + millis;
        u64::try_from(ms).ok().map(Timestamp)
    }

    /// The wall clock now.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn from_days(days: u32) -> Self {
        Self(u64::from(days) * DAY_MS)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole days since the epoch.
    pub fn day(self) -> u32 {
        u32::try_from(self.0 / DAY_MS).unwrap_or(u32::MAX)
    }

    /// Whole hours since the epoch: the bucket of the usage counters.
    pub fn hour(self) -> u32 {
        u32::try_from(self.0 / HOUR_MS).unwrap_or(u32::MAX)
    }

    pub fn saturating_add(self, by: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    pub fn saturating_sub(self, by: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Time left from `self` until `later`, zero if `later` has passed.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// How long each kind of record is kept (the privacy policy's numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Audit log entries, counted from the action they record.
    pub audit: Duration,
    /// Support tickets and their transcripts, counted from the opening of the ticket.
    pub tickets: Duration,
    /// Accounts, counted from their last activity.
    pub inactive_accounts: Duration,
    /// The log of data-subject requests, counted from the request: long enough to show
    /// each was answered.
    pub privacy_requests: Duration,
    /// A prepared data export, downloadable once until this long after it was prepared.
    pub exports: Duration,
    /// Command usage counters, counted from the end of their day.
    pub usage: Duration,
    /// Processed payment-provider webhook events (their id, type, outcome and the user they
    /// were about; the body goes at processing), counted from their receipt: the trail of
    /// what changed a subscription, kept like the other administrative logs.
    pub billing_inbox: Duration,
    /// Moderation cases, counted from the action they record.
    pub cases: Duration,
    /// Workflows' kept variables (the server's and its members'), counted from their last
    /// change.
    pub workflow_variables: Duration,
    /// Traces of workflow runs, counted from the run: long enough to debug last week's runs.
    pub workflow_runs: Duration,
    /// Operators' announcement campaigns and their delivery records (to guilds and by DM),
    /// counted from the campaign's creation: a record of what the service sent, an
    /// administrative log.
    pub campaigns: Duration,
}

impl Retention {
    pub const POLICY: Retention = Retention {
        audit: days(365),
        tickets: days(3 * 365),
        inactive_accounts: days(2 * 365),
        privacy_requests: days(3 * 365),
        exports: Duration::from_secs(48 * 3_600),
        // The policy names no period: a year of analytics is enough to compare seasons.
        usage: days(365),
        // "Administrative and security logs retained for 1 year".
        billing_inbox: days(365),
        cases: days(365),
        // The policy names no period: a counter or a member's score unchanged for a year is
        // stale; a trace is for debugging recent runs.
        workflow_variables: days(365),
        workflow_runs: days(7),
        // "Administrative and security logs retained for 1 year".
        campaigns: days(365),
    };
}

impl Default for Retention {
    fn default() -> Self {
        Self::POLICY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_arithmetic() {
        let t = Timestamp::from_days(20_000);
        assert_eq!(t.day(), 20_000);
        assert_eq!(t.saturating_add(days(1)).day(), 20_001);
        assert_eq!(t.saturating_sub(days(1)).day(), 19_999);
        assert_eq!(t.until(t.saturating_add(days(2))), days(2));
        assert_eq!(t.until(Timestamp(0)), Duration::ZERO);
        assert!(Timestamp::now() > Timestamp::from_days(19_000));
    }
}
