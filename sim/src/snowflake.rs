//! Real Discord snowflakes: `ms since 2015 << 22 | worker << 17 | increment`.
//!
//! Real ones matter: a guild's shard is `(id >> 22) % shards`, so small
//! made-up ids would all land on shard 0.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// 2015-01-01T00:00:00Z, Discord's epoch, in Unix milliseconds.
pub(crate) const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The increment has 12 bits.
const MAX_INCREMENT: u64 = 0xFFF;

/// Builds a snowflake from a Unix-millisecond timestamp.
pub(crate) fn snowflake(unix_ms: u64, worker: u64, increment: u64) -> u64 {
    debug_assert!(worker < 32 && increment <= MAX_INCREMENT);
    ((unix_ms - DISCORD_EPOCH_MS) << 22) | (worker << 17) | increment
}

/// Unix milliseconds at which a snowflake was created.
pub(crate) fn unix_ms_of(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// Current Unix time in milliseconds.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(DISCORD_EPOCH_MS, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Hands out unique, increasing snowflakes for things created "now"
/// (messages, interactions).
#[derive(Debug)]
pub(crate) struct IdGenerator {
    worker: u64,
    /// (millisecond, last increment used in it). The millisecond may run
    /// ahead of the wall clock when more than 4096 ids are taken in one
    /// millisecond: uniqueness and order matter more than exact time.
    last: Mutex<(u64, u64)>,
}

impl IdGenerator {
    pub(crate) fn new(worker: u64) -> Self {
        Self {
            worker,
            last: Mutex::new((0, 0)),
        }
    }

    pub(crate) fn next(&self) -> u64 {
        let now = now_unix_ms();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (ms, increment) = if now > last.0 {
            (now, 0)
        } else if last.1 < MAX_INCREMENT {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last = (ms, increment);
        snowflake(ms, self.worker, increment)
    }
}

/// Formats Unix milliseconds as Discord does: `2020-01-01T00:00:00.000000+00:00`.
pub(crate) fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let micros = (unix_ms % 1000) * 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflake_round_trips_its_timestamp() {
        let ms = 1_600_000_000_123;
        let id = snowflake(ms, 3, 7);
        assert_eq!(unix_ms_of(id), ms);
        assert_eq!((id >> 17) & 0x1F, 3);
        assert_eq!(id & 0xFFF, 7);
    }

    #[test]
    fn generator_is_unique_and_increasing() {
        let ids = IdGenerator::new(1);
        let mut last = 0;
        for _ in 0..20_000 {
            let id = ids.next();
            assert!(id > last);
            last = id;
        }
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            rfc3339(DISCORD_EPOCH_MS),
            "2015-01-01T00:00:00.000000+00:00"
        );
        assert_eq!(
            rfc3339(1_582_934_400_250),
            "2020-02-29T00:00:00.250000+00:00"
        );
        let parsed: twilight_model::util::Timestamp = rfc3339(1_700_000_000_000).parse().unwrap();
        assert_eq!(parsed.as_micros(), 1_700_000_000_000_000);
    }
}
