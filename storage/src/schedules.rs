//! Guild admins' own scheduled announcements: a message to one of the guild's channels, once
//! or on a repeat (every N hours, daily or weekly at a UTC time). The rows are the schedules
//! as the admin wrote them; when each next falls due is a durable timer of the guild
//! (`Timer`), which the actors arm and re-arm. Nothing here names a user: who changed a
//! schedule is in the audit log.

use serde::{Deserialize, Serialize};

use crate::{Plan, StorageError, Timestamp};

/// Longest scheduled message: Discord's 2,000 characters.
pub const SCHEDULE_MESSAGE_MAX_CHARS: usize = 2_000;
/// Longest gap of a repeat every N hours: 30 days (a monthly notice is a weekly one skipped
/// three times; longer is rarely meant).
pub const SCHEDULE_MAX_EVERY_HOURS: u32 = 720;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;
const WEEK_MS: u64 = 7 * DAY_MS;
/// Minutes in a day: a time of day is a minute below this.
pub const MINUTES_A_DAY: u32 = 1_440;

/// One scheduled announcement of a guild.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceSchedule {
    pub guild_id: u64,
    /// Unique in the guild, from 1; the plan's limit keeps the lowest ids running.
    pub schedule_id: u64,
    pub channel_id: u64,
    pub message: String,
    pub repeat: Repeat,
    /// Paused by an admin: kept, not sent.
    pub paused: bool,
    pub updated_at: Timestamp,
}

/// When a schedule sends. Times are UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Repeat {
    /// Once, at `at`.
    Once { at: Timestamp },
    /// At `from`, then every `hours` hours.
    EveryHours { hours: u32, from: Timestamp },
    /// Every day, `minute` minutes after midnight.
    Daily { minute: u32 },
    /// Every week on `weekday` (0 is Monday), `minute` minutes after midnight.
    Weekly { weekday: u32, minute: u32 },
}

impl Repeat {
    /// The first time it sends strictly after `now`; `None` once a one-off has passed.
    pub fn next_after(self, now: Timestamp) -> Option<Timestamp> {
        let now = now.as_millis();
        let next = match self {
            Repeat::Once { at } => (at.0 > now).then_some(at.0)?,
            Repeat::EveryHours { hours, from } => {
                let period = u64::from(hours.max(1)) * HOUR_MS;
                if from.0 > now {
                    from.0
                } else {
                    from.0 + ((now - from.0) / period + 1) * period
                }
            }
            Repeat::Daily { minute } => {
                let today = now - now % DAY_MS + u64::from(minute) * MINUTE_MS;
                if today > now { today } else { today + DAY_MS }
            }
            Repeat::Weekly { weekday, minute } => {
                // 1970-01-01 was a Thursday (weekday 3).
                let day = now / DAY_MS;
                let today = (day + 3) % 7;
                let ahead = (u64::from(weekday) + 7 - today) % 7;
                let at = (day + ahead) * DAY_MS + u64::from(minute) * MINUTE_MS;
                if at > now { at } else { at + WEEK_MS }
            }
        };
        Some(Timestamp(next))
    }
}

/// Weekday names, Monday first (a [`Repeat::Weekly`]'s `weekday`).
pub const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The schedules past what `plan` allows: the highest ids beyond its count. Kept after a
/// downgrade, but not sent until the guild has the plan again or removes others.
/// `schedules` are by id, as the store answers them.
pub fn schedules_over_plan(schedules: &[AnnounceSchedule], plan: Plan) -> &[AnnounceSchedule] {
    let allowed = plan.limits().announcement_schedules as usize;
    &schedules[allowed.min(schedules.len())..]
}

/// The store's checks of a schedule's shape; the actors check the rest (a channel of the
/// guild, a one-off in the future, the plan).
pub(crate) fn check_schedule(schedule: &AnnounceSchedule) -> Result<(), StorageError> {
    let invalid = |message: &str| Err(StorageError::Invalid(message.to_owned()));
    if schedule.schedule_id == 0 || schedule.channel_id == 0 {
        return invalid("a schedule has an id and a channel");
    }
    let chars = schedule.message.trim().chars().count();
    if chars == 0 || chars > SCHEDULE_MESSAGE_MAX_CHARS {
        return Err(StorageError::Invalid(format!(
            "a scheduled message has 1 to {SCHEDULE_MESSAGE_MAX_CHARS} characters"
        )));
    }
    match schedule.repeat {
        Repeat::EveryHours { hours, .. } if !(1..=SCHEDULE_MAX_EVERY_HOURS).contains(&hours) => {
            Err(StorageError::Invalid(format!(
                "a schedule repeats every 1 to {SCHEDULE_MAX_EVERY_HOURS} hours"
            )))
        }
        Repeat::Daily { minute } | Repeat::Weekly { minute, .. } if minute >= MINUTES_A_DAY => {
            invalid("a time of day is 00:00 to 23:59")
        }
        Repeat::Weekly { weekday, .. } if weekday > 6 => {
            invalid("a weekday is 0 (Monday) to 6 (Sunday)")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 (a Monday) at 10:30 UTC.
    const MONDAY_1030: u64 = 1_796_639_400_000;

    #[test]
    fn the_anchor_is_the_monday_it_claims() {
        assert_eq!(
            Timestamp::parse_rfc3339("2026-12-07T10:30:00Z"),
            Some(Timestamp(MONDAY_1030))
        );
        assert_eq!((MONDAY_1030 / DAY_MS + 3) % 7, 0, "a Monday");
    }

    #[test]
    fn each_repeat_sends_next_strictly_after_now() {
        let now = Timestamp(MONDAY_1030);
        let at = |ms: u64| Some(Timestamp(ms));
        assert_eq!(
            Repeat::Daily { minute: 9 * 60 }.next_after(now),
            at(MONDAY_1030 + DAY_MS - 90 * MINUTE_MS)
        );
        assert_eq!(
            Repeat::Daily { minute: 630 }.next_after(now),
            at(MONDAY_1030 + DAY_MS),
            "due this very minute: the next is tomorrow's"
        );
        assert_eq!(
            Repeat::Weekly {
                weekday: 2,
                minute: 630
            }
            .next_after(now),
            at(MONDAY_1030 + 2 * DAY_MS)
        );
        assert_eq!(
            Repeat::Weekly {
                weekday: 0,
                minute: 600
            }
            .next_after(now),
            at(MONDAY_1030 + WEEK_MS - 30 * MINUTE_MS)
        );
        let from = Timestamp(MONDAY_1030 - 90 * MINUTE_MS);
        assert_eq!(
            Repeat::EveryHours { hours: 1, from }.next_after(now),
            at(MONDAY_1030 + 30 * MINUTE_MS)
        );
        assert_eq!(
            Repeat::EveryHours {
                hours: 2,
                from: Timestamp(MONDAY_1030 + 5)
            }
            .next_after(now),
            at(MONDAY_1030 + 5)
        );
        assert_eq!(
            Repeat::Once {
                at: Timestamp(MONDAY_1030 + 1)
            }
            .next_after(now),
            at(MONDAY_1030 + 1)
        );
        assert_eq!(Repeat::Once { at: now }.next_after(now), None);
    }

    #[test]
    fn the_plan_keeps_the_lowest_ids_running() {
        let schedule = |schedule_id| AnnounceSchedule {
            guild_id: 1,
            schedule_id,
            channel_id: 2,
            message: "hi".into(),
            repeat: Repeat::Daily { minute: 0 },
            paused: false,
            updated_at: Timestamp(0),
        };
        let all: Vec<_> = (1..=3).map(schedule).collect();
        let over: Vec<u64> = schedules_over_plan(&all, Plan::Free)
            .iter()
            .map(|s| s.schedule_id)
            .collect();
        assert_eq!(over, [2, 3]);
        assert!(schedules_over_plan(&all, Plan::Premium).is_empty());
    }

    #[test]
    fn a_malformed_schedule_is_refused() {
        let good = AnnounceSchedule {
            guild_id: 1,
            schedule_id: 1,
            channel_id: 2,
            message: "hi".into(),
            repeat: Repeat::Daily { minute: 0 },
            paused: false,
            updated_at: Timestamp(0),
        };
        assert!(check_schedule(&good).is_ok());
        for repeat in [
            Repeat::Daily { minute: 1440 },
            Repeat::Weekly {
                weekday: 7,
                minute: 0,
            },
            Repeat::EveryHours {
                hours: 0,
                from: Timestamp(0),
            },
            Repeat::EveryHours {
                hours: 721,
                from: Timestamp(0),
            },
        ] {
            assert!(
                check_schedule(&AnnounceSchedule {
                    repeat,
                    ..good.clone()
                })
                .is_err()
            );
        }
        let long = "x".repeat(SCHEDULE_MESSAGE_MAX_CHARS + 1);
        for message in ["  ", long.as_str()] {
            let schedule = AnnounceSchedule {
                message: message.into(),
                ..good.clone()
            };
            assert!(check_schedule(&schedule).is_err());
        }
    }
}
