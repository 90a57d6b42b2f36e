//! The guild's command usage: per day, by hour of day, top commands and the channels they
//! ran in, as charts, and every counter as CSV. Read from the usage counters the guild
//! actors flush (`protonn_actors::CommandUsage`); nothing here names a user.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_storage::{Plan, Timestamp, UsageCount, guild_plan};
use serde::Deserialize;

use super::charts::{Bar, columns, ranking};
use super::guild::{authorize, summary, tabs};
use super::guild_id;
use super::layout::{self, Audience, Nav};
use crate::session::Authed;
use crate::{AppState, WebError};

/// The periods offered, in days, as far back as the guild's plan reads
/// (`PlanLimits::analytics_history_days`); the default is the longest of them up to 30.
const PERIODS: [u32; 4] = [7, 30, 90, 365];
const DEFAULT_PERIOD: u32 = 30;
/// Commands and channels ranked at most.
const RANKED: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeriodQuery {
    days: Option<u32>,
}

impl PeriodQuery {
    /// The last `days` days, today included: `(first, last)`, within what `plan` reads.
    fn days(&self, today: u32, plan: Plan) -> Result<(u32, u32), WebError> {
        let history = plan.limits().analytics_history_days;
        let days = self
            .days
            .unwrap_or_else(|| DEFAULT_PERIOD.min(history).max(PERIODS[0]));
        if !PERIODS.contains(&days) {
            return Err(WebError::BadForm(format!(
                "the period must be 7, 30, 90 or 365 days, not {days}"
            )));
        }
        if days > history {
            return Err(WebError::BadForm(format!(
                "the {} plan shows the last {history} days of analytics; premium shows up to \
                 {} days",
                plan.name(),
                Plan::Premium.limits().analytics_history_days
            )));
        }
        Ok((today.saturating_sub(days - 1), today))
    }
}

/// The counters a page or a download shows: the guild's (if the user may manage it), of the
/// period asked for, within what the guild's plan reads.
struct Read {
    guild_id: u64,
    plan: Plan,
    days: (u32, u32),
    counts: Vec<UsageCount>,
}

impl Read {
    async fn of(
        state: &AppState,
        authed: &Authed,
        raw: &str,
        period: &PeriodQuery,
    ) -> Result<Self, WebError> {
        let guild_id = guild_id(raw)?;
        authorize(state, authed, guild_id).await?;
        let now = Timestamp::now();
        let plan = guild_plan(state.store.as_ref(), guild_id, now).await?;
        let days = period.days(now.day(), plan)?;
        let counts = state.store.usage(guild_id, days.0, days.1).await?;
        Ok(Self {
            guild_id,
            plan,
            days,
            counts,
        })
    }
}

/// What the charts show, summed from the hourly counters of a period.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    total: u64,
    /// Every day of the period, empty ones included: (day, runs).
    per_day: Vec<(u32, u64)>,
    /// Runs by UTC hour of day.
    per_hour: [u64; 24],
    /// Most run first (ties by name).
    commands: Vec<(String, u64)>,
    /// Busiest first (ties by id).
    channels: Vec<(u64, u64)>,
}

impl Report {
    fn of(counts: &[UsageCount], (first, last): (u32, u32)) -> Self {
        let mut per_day: Vec<(u32, u64)> = (first..=last).map(|day| (day, 0)).collect();
        let mut per_hour = [0; 24];
        let mut commands: HashMap<&str, u64> = HashMap::new();
        let mut channels: HashMap<u64, u64> = HashMap::new();
        let mut total = 0;
        for count in counts {
            let Some(slot) = count.day().checked_sub(first) else {
                continue;
            };
            let Some((_, day)) = per_day.get_mut(slot as usize) else {
                continue;
            };
            *day += count.count;
            per_hour[(count.hour % 24) as usize] += count.count;
            *commands.entry(&count.command).or_default() += count.count;
            *channels.entry(count.channel_id).or_default() += count.count;
            total += count.count;
        }
        let mut commands: Vec<(String, u64)> = commands
            .into_iter()
            .map(|(name, runs)| (name.to_owned(), runs))
            .collect();
        commands.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        commands.truncate(RANKED);
        let mut channels: Vec<(u64, u64)> = channels.into_iter().collect();
        channels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        channels.truncate(RANKED);
        Self {
            total,
            per_day,
            per_hour,
            commands,
            channels,
        }
    }
}

pub(crate) async fn analytics(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(period): Query<PeriodQuery>,
) -> Result<Response, WebError> {
    let Read {
        guild_id,
        plan,
        days,
        counts,
    } = Read::of(&state, &authed, &raw, &period).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let report = Report::of(&counts, days);
    let channel_name = |id: u64| {
        summary
            .channels
            .iter()
            .find(|channel| channel.id == id)
            .map_or_else(|| format!("#{id}"), |channel| format!("#{}", channel.name))
    };
    let per_day: Vec<Bar> = report
        .per_day
        .iter()
        .map(|&(day, value)| Bar {
            label: layout::date(Timestamp::from_days(day)),
            value,
        })
        .collect();
    let per_hour: Vec<Bar> = (0..24)
        .map(|hour| Bar {
            label: format!("{hour:02}:00"),
            value: report.per_hour[hour],
        })
        .collect();
    let commands: Vec<Bar> = report
        .commands
        .iter()
        .map(|(name, value)| Bar {
            label: name.clone(),
            value: *value,
        })
        .collect();
    let channels: Vec<Bar> = report
        .channels
        .iter()
        .map(|&(id, value)| Bar {
            label: channel_name(id),
            value,
        })
        .collect();
    let shown = days.1 - days.0 + 1;
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Analytics",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Analytics"))
            h1 { "Analytics" }
            nav aria-label="Period" {
                @for days in PERIODS {
                    @if days == shown {
                        strong aria-current="true" { "Last " (days) " days" } " "
                    } @else if days <= plan.limits().analytics_history_days {
                        a href={ "?days=" (days) } { "Last " (days) " days" } " "
                    } @else {
                        span.muted { "Last " (days) " days (premium)" } " "
                    }
                }
            }
            p {
                strong { (report.total) } " commands run in the last " (shown) " days. "
                a href={ "/guilds/" (guild_id) "/analytics.csv?days=" (shown) } download { "Download CSV" }
            }
            p.muted {
                "Counts are per command, channel and hour; they never name who ran a command, "
                "and members who objected to analytics are not counted. Kept for a limited period."
            }
            (columns("Commands per day", &per_day, (per_day.len() / 6).max(1)))
            (columns("Commands by hour of day (UTC)", &per_hour, 3))
            (ranking("Top commands", &commands))
            (ranking("Most active channels", &channels))
        },
    )))
}

/// Every counter of the period, one line per hour, command and channel.
pub(crate) async fn analytics_csv(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(period): Query<PeriodQuery>,
) -> Result<Response, WebError> {
    let Read {
        guild_id,
        days,
        counts,
        ..
    } = Read::of(&state, &authed, &raw, &period).await?;
    let mut csv = String::from("hour_utc,command,channel_id,count\n");
    for count in &counts {
        let hour = Timestamp::from_days(0).saturating_add(std::time::Duration::from_secs(
            u64::from(count.hour) * 3_600,
        ));
        // Command names are the bot's own identifiers: no comma or quote to escape.
        csv.push_str(&format!(
            "{},{},{},{}\n",
            layout::iso_time(hour),
            count.command,
            count.channel_id,
            count.count
        ));
    }
    let filename = format!(
        "attachment; filename=\"usage-{guild_id}-{}-{}.csv\"",
        layout::date(Timestamp::from_days(days.0)),
        layout::date(Timestamp::from_days(days.1)),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        csv,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(hour: u32, command: &str, channel_id: u64, count: u64) -> UsageCount {
        UsageCount {
            guild_id: 1,
            hour,
            command: command.to_owned(),
            channel_id,
            count,
        }
    }

    #[test]
    fn a_report_sums_by_day_hour_command_and_channel() {
        let day = 20_000;
        let counts = [
            count(day * 24 + 9, "ping", 7, 3),
            count(day * 24 + 9, "help", 8, 1),
            count((day + 2) * 24 + 23, "ping", 8, 2),
            // Outside the period: ignored.
            count((day + 5) * 24, "ping", 7, 100),
        ];
        let report = Report::of(&counts, (day, day + 2));
        assert_eq!(report.total, 6);
        assert_eq!(report.per_day, [(day, 4), (day + 1, 0), (day + 2, 2)]);
        assert_eq!((report.per_hour[9], report.per_hour[23]), (4, 2));
        assert_eq!(
            report.commands,
            [("ping".to_owned(), 5), ("help".to_owned(), 1)]
        );
        assert_eq!(report.channels, [(7, 3), (8, 3)]);
    }

    #[test]
    fn only_the_offered_periods_within_the_plan_are_accepted() {
        let period = |days| PeriodQuery { days };
        assert_eq!(period(None).days(100, Plan::Premium).unwrap(), (71, 100));
        assert_eq!(period(None).days(100, Plan::Free).unwrap(), (94, 100));
        assert_eq!(
            period(Some(365)).days(400, Plan::Premium).unwrap(),
            (36, 400)
        );
        let err = period(Some(8)).days(100, Plan::Premium).unwrap_err();
        assert!(err.to_string().contains("7, 30, 90 or 365"), "{err}");
        let err = period(Some(30)).days(100, Plan::Free).unwrap_err();
        assert!(
            err.to_string().contains("free plan shows the last 7 days"),
            "{err}"
        );
    }
}
