//! A guild's own scheduled announcements: the list (with each one's next send, and those
//! past the plan named), a form that creates or edits one, pause/resume and delete. Every
//! change is a guild call (checked by the bot, stored, armed, audited).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use protonn_actors::{GuildRequest, GuildResponse, GuildSummary, ScheduleStatus};
use protonn_storage::{
    AnnounceSchedule, MINUTES_A_DAY, Plan, Repeat, SCHEDULE_MAX_EVERY_HOURS,
    SCHEDULE_MESSAGE_MAX_CHARS, Timestamp, WEEKDAYS, guild_plan,
};
use serde::Deserialize;

use super::guild::{authorize, summary, tabs, unexpected};
use super::layout::{self, Audience, Nav};
use super::{Form, guild_form, guild_form_with_long, guild_id, id_in_path, refusal, see_other};
use crate::crypto::random_token;
use crate::session::Authed;
use crate::{AppState, WebError};

/// The form's body: a message of Discord's length, percent-encoded, and the other fields.
pub(crate) const BODY_LIMIT: usize = 32 * 1024;
/// Channel types an announcement may go to: text and announcement.
const ANNOUNCE_CHANNEL_KINDS: [u8; 2] = [0, 5];

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    saved: Option<u64>,
    deleted: Option<u64>,
    paused: Option<u64>,
    resumed: Option<u64>,
    /// The schedule shown in the form, to edit.
    edit: Option<u64>,
}

/// The form's fields as typed (or as stored, to edit).
#[derive(Clone, Debug)]
struct Fields {
    schedule_id: Option<u64>,
    channel: String,
    message: String,
    /// `once`, `every_hours`, `daily` or `weekly`.
    kind: String,
    /// `2026-12-07 09:30` (UTC): a one-off's time, or an hourly repeat's first send.
    at: String,
    hours: String,
    /// `09:30` (UTC).
    time: String,
    weekday: String,
    paused: bool,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            schedule_id: None,
            channel: String::new(),
            message: String::new(),
            kind: "daily".to_owned(),
            at: String::new(),
            hours: "24".to_owned(),
            time: "09:00".to_owned(),
            weekday: "0".to_owned(),
            paused: false,
        }
    }
}

impl Fields {
    fn of(schedule: &AnnounceSchedule) -> Self {
        let mut fields = Self {
            schedule_id: Some(schedule.schedule_id),
            channel: schedule.channel_id.to_string(),
            message: schedule.message.clone(),
            paused: schedule.paused,
            ..Self::default()
        };
        match schedule.repeat {
            Repeat::Once { at } => {
                fields.kind = "once".into();
                fields.at = minute_text(at);
            }
            Repeat::EveryHours { hours, from } => {
                fields.kind = "every_hours".into();
                fields.hours = hours.to_string();
                fields.at = minute_text(from);
            }
            Repeat::Daily { minute } => {
                fields.kind = "daily".into();
                fields.time = clock(minute);
            }
            Repeat::Weekly { weekday, minute } => {
                fields.kind = "weekly".into();
                fields.weekday = weekday.to_string();
                fields.time = clock(minute);
            }
        }
        fields
    }

    fn from_form(form: &Form) -> Result<Self, WebError> {
        let text = |name| Ok::<_, WebError>(form.one(name)?.unwrap_or_default().trim().to_owned());
        let schedule_id = match text("schedule_id")?.as_str() {
            "" => None,
            raw => Some(
                raw.parse()
                    .map_err(|_| WebError::BadForm("the schedule is not a number".into()))?,
            ),
        };
        Ok(Self {
            schedule_id,
            channel: text("channel")?,
            message: text("message")?,
            kind: text("kind")?,
            at: text("at")?,
            hours: text("hours")?,
            time: text("time")?,
            weekday: text("weekday")?,
            paused: form.one("paused")?.is_some(),
        })
    }

    /// The request the fields make; what is wrong with them, said plainly.
    fn request(&self, summary: &GuildSummary) -> Result<GuildRequest, String> {
        let channel_id: u64 = self.channel.parse().map_err(|_| "choose a channel")?;
        let usable = summary
            .channels
            .iter()
            .any(|c| c.id == channel_id && ANNOUNCE_CHANNEL_KINDS.contains(&c.kind));
        if !usable {
            return Err("the channel must be a text or announcement channel of this server".into());
        }
        let repeat = match self.kind.as_str() {
            "once" => Repeat::Once {
                at: parse_minute(&self.at)?,
            },
            "every_hours" => {
                let hours = self
                    .hours
                    .parse::<u32>()
                    .ok()
                    .filter(|h| (1..=SCHEDULE_MAX_EVERY_HOURS).contains(h))
                    .ok_or(format!(
                        "repeat every 1 to {SCHEDULE_MAX_EVERY_HOURS} hours"
                    ))?;
                let from = if self.at.is_empty() {
                    Timestamp::now()
                } else {
                    parse_minute(&self.at)?
                };
                Repeat::EveryHours { hours, from }
            }
            "daily" => Repeat::Daily {
                minute: parse_clock(&self.time)?,
            },
            "weekly" => Repeat::Weekly {
                weekday: self
                    .weekday
                    .parse()
                    .ok()
                    .filter(|d| *d < 7)
                    .ok_or("choose a weekday")?,
                minute: parse_clock(&self.time)?,
            },
            _ => return Err("choose when it is sent".into()),
        };
        Ok(GuildRequest::SaveAnnounceSchedule {
            schedule_id: self.schedule_id,
            channel_id,
            message: self.message.clone(),
            repeat,
            paused: self.paused,
        })
    }
}

/// `09:05` for minute 545.
fn clock(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// `HH:MM` as minutes after midnight.
fn parse_clock(text: &str) -> Result<u32, String> {
    let refused = || format!("a time of day is HH:MM (UTC), not `{text}`");
    let (h, m) = text.split_once(':').ok_or_else(refused)?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| refused())?,
        m.parse().map_err(|_| refused())?,
    );
    let minute = h * 60 + m;
    if m >= 60 || minute >= MINUTES_A_DAY {
        return Err(refused());
    }
    Ok(minute)
}

/// `2026-12-07 09:30` (or with a `T`), UTC.
fn parse_minute(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(&format!("{}:00Z", text.replacen(' ', "T", 1)))
        .ok_or_else(|| format!("a date and time is YYYY-MM-DD HH:MM (UTC), not `{text}`"))
}

/// A timestamp as the form's `at` field shows it.
fn minute_text(at: Timestamp) -> String {
    let shown = layout::time(at);
    shown.get(..16).unwrap_or(&shown).to_owned()
}

fn describe(repeat: Repeat) -> String {
    match repeat {
        Repeat::Once { at } => format!("once, {}", layout::time(at)),
        Repeat::EveryHours { hours: 1, from } => format!("every hour from {}", layout::time(from)),
        Repeat::EveryHours { hours, from } => {
            format!("every {hours} hours from {}", layout::time(from))
        }
        Repeat::Daily { minute } => format!("daily at {} UTC", clock(minute)),
        Repeat::Weekly { weekday, minute } => format!(
            "every {} at {} UTC",
            WEEKDAYS.get(weekday as usize).unwrap_or(&"?"),
            clock(minute)
        ),
    }
}

pub(crate) async fn announcements(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let notice = match q {
        ListQuery {
            saved: Some(id), ..
        } => Some(format!(
            "Scheduled announcement {id} saved. The bot sends it from now on."
        )),
        ListQuery {
            deleted: Some(id), ..
        } => Some(format!("Scheduled announcement {id} deleted.")),
        ListQuery {
            paused: Some(id), ..
        } => Some(format!(
            "Scheduled announcement {id} paused: it is kept and not sent."
        )),
        ListQuery {
            resumed: Some(id), ..
        } => Some(format!("Scheduled announcement {id} resumed.")),
        _ => None,
    };
    page(&state, &authed, guild_id, q.edit, None, notice, None).await
}

async fn page(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
    edit: Option<u64>,
    draft: Option<Fields>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let summary = summary(state, authed, guild_id).await?;
    let schedules = match state
        .call(
            authed.user_id,
            guild_id,
            GuildRequest::ListAnnounceSchedules,
            None,
        )
        .await?
    {
        GuildResponse::AnnounceSchedules { schedules } => schedules,
        _ => return Err(unexpected()),
    };
    let fields = match (draft, edit) {
        (Some(draft), _) => draft,
        (None, Some(id)) => schedules
            .iter()
            .find(|s| s.schedule.schedule_id == id)
            .map(|s| Fields::of(&s.schedule))
            .ok_or(WebError::NotFound)?,
        (None, None) => Fields::default(),
    };
    let plan = guild_plan(state.store.as_ref(), guild_id, Timestamp::now()).await?;
    let view = View {
        summary: &summary,
        schedules: &schedules,
        plan,
        fields: &fields,
    };
    Ok(render(authed, &view, notice, error))
}

struct View<'a> {
    summary: &'a GuildSummary,
    schedules: &'a [ScheduleStatus],
    plan: Plan,
    fields: &'a Fields,
}

fn render(
    authed: &Authed,
    view: &View<'_>,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let summary = view.summary;
    let guild_id = summary.guild_id;
    let base = format!("/guilds/{guild_id}/announcements");
    let channel_name = |id: u64| {
        summary
            .channels
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| format!("channel {id}"), |c| format!("#{}", c.name))
    };
    let over: Vec<&ScheduleStatus> = view.schedules.iter().filter(|s| s.over_plan).collect();
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    layout::user_page(layout::page(
        "Scheduled announcements",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Announcements"))
            h1 { "Scheduled announcements" }
            @if let Some(notice) = &notice { p.notice role="status" id="notice" { (notice) } }
            @if let Some(error) = &error { p.error role="alert" id="error" { (error) } }
            @if !over.is_empty() {
                p.error role="alert" id="over-plan" {
                    "The " (view.plan.name()) " plan sends " (view.plan.limits().announcement_schedules)
                    " scheduled announcements; these are kept but not sent until the server has premium again or you delete others: "
                    @for (n, s) in over.iter().enumerate() { @if n > 0 { ", " } strong { "#" (s.schedule.schedule_id) } }
                    "."
                }
            }
            @if view.schedules.is_empty() {
                p id="no-schedules" { "No scheduled announcement yet." }
            } @else {
                table id="schedules" {
                    thead { tr { th { "#" } th { "Channel" } th { "When" } th { "Status" } th { "Message" } th { "" } } }
                    tbody {
                        @for s in view.schedules {
                            @let id = s.schedule.schedule_id;
                            tr id={ "schedule-" (id) } {
                                td { (id) }
                                td { (channel_name(s.schedule.channel_id)) }
                                td { (describe(s.schedule.repeat)) }
                                td.status { (status(s)) }
                                td { (s.schedule.message.chars().take(80).collect::<String>()) }
                                td {
                                    a href={ (base) "?edit=" (id) } id={ "edit-" (id) } { "Edit" } " "
                                    form.inline method="post" action={ (base) "/" (id) "/paused" } {
                                        input type="hidden" name="csrf" value=(authed.csrf());
                                        input type="hidden" name="idempotency_key" value=(random_token());
                                        @if s.schedule.paused {
                                            input type="hidden" name="paused" value="false";
                                            button type="submit" id={ "resume-" (id) } { "Resume" }
                                        } @else {
                                            input type="hidden" name="paused" value="true";
                                            button type="submit" id={ "pause-" (id) } { "Pause" }
                                        }
                                    }
                                    " "
                                    form.inline method="post" action={ (base) "/" (id) "/delete" } {
                                        input type="hidden" name="csrf" value=(authed.csrf());
                                        input type="hidden" name="idempotency_key" value=(random_token());
                                        button type="submit" id={ "delete-" (id) } { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (schedule_form(authed, view, &base))
        },
    ))
}

fn status(s: &ScheduleStatus) -> String {
    if s.over_plan {
        "over the plan: not sent".to_owned()
    } else if s.schedule.paused {
        "paused".to_owned()
    } else {
        match s.next_send {
            Some(at) => format!("next {}", layout::time(at)),
            None => "done".to_owned(),
        }
    }
}

fn schedule_form(authed: &Authed, view: &View<'_>, base: &str) -> Markup {
    let fields = view.fields;
    let kinds = [
        ("once", "Once"),
        ("every_hours", "Every N hours"),
        ("daily", "Daily"),
        ("weekly", "Weekly"),
    ];
    html! {
        h2 { @if let Some(id) = fields.schedule_id { "Edit scheduled announcement " (id) } @else { "New scheduled announcement" } }
        form.card method="post" action=(base) id="schedule-form" {
            input type="hidden" name="csrf" value=(authed.csrf());
            input type="hidden" name="idempotency_key" value=(random_token());
            input type="hidden" name="schedule_id" value=[fields.schedule_id];
            label for="channel" { "Channel" }
            select id="channel" name="channel" required {
                option value="" { "Choose a channel" }
                @for c in view.summary.channels.iter().filter(|c| ANNOUNCE_CHANNEL_KINDS.contains(&c.kind)) {
                    option value=(c.id) selected[fields.channel == c.id.to_string()] { "#" (c.name) }
                }
            }
            label for="message" { "Message" }
            textarea id="message" name="message" rows="5" maxlength=(SCHEDULE_MESSAGE_MAX_CHARS) required { (fields.message) }
            label for="kind" { "When" }
            select id="kind" name="kind" {
                @for (value, label) in kinds {
                    option value=(value) selected[fields.kind == value] { (label) }
                }
            }
            label for="at" { "Date and time, UTC (once; or the first send every N hours, empty: from now)" }
            input type="text" id="at" name="at" placeholder="2026-12-24 18:00" value=(fields.at);
            label for="hours" { "Every how many hours (every N hours)" }
            input type="number" id="hours" name="hours" min="1" max=(SCHEDULE_MAX_EVERY_HOURS) value=(fields.hours);
            label for="time" { "Time of day, UTC (daily, weekly)" }
            input type="text" id="time" name="time" placeholder="09:00" value=(fields.time);
            label for="weekday" { "Weekday (weekly)" }
            select id="weekday" name="weekday" {
                @for (n, day) in WEEKDAYS.iter().enumerate() {
                    option value=(n) selected[fields.weekday == n.to_string()] { (day) }
                }
            }
            label { input type="checkbox" name="paused" value="on" checked[fields.paused]; " Paused (kept, not sent)" }
            p.muted { "Your plan sets how many scheduled announcements the server may have; mentions in the message ping nobody." }
            p { button type="submit" id="save" { "Save" } }
        }
    }
}

pub(crate) async fn save_announcement(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let long = [("message", SCHEDULE_MESSAGE_MAX_CHARS)];
    let (form, guild_id) = guild_form_with_long(&state, &authed, &raw, body, &long).await?;
    let fields = Fields::from_form(&form)?;
    let summary = summary(&state, &authed, guild_id).await?;
    let reason = match fields.request(&summary) {
        Ok(request) => match state
            .call(authed.user_id, guild_id, request, form.idempotency_key()?)
            .await
        {
            Ok(GuildResponse::AnnounceSchedule(saved)) => {
                return Ok(see_other(&format!(
                    "/guilds/{guild_id}/announcements?saved={}",
                    saved.schedule_id
                )));
            }
            Ok(_) => return Err(unexpected()),
            Err(WebError::BadForm(reason)) => reason,
            Err(err) => return Err(err),
        },
        Err(reason) => reason,
    };
    let error = format!("Not saved: {reason}.");
    refusal(
        page(
            &state,
            &authed,
            guild_id,
            None,
            Some(fields),
            None,
            Some(error),
        )
        .await,
    )
}

pub(crate) async fn set_announcement_paused(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, raw_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (form, guild_id) = guild_form(&state, &authed, &raw, body).await?;
    let schedule_id = id_in_path(&raw_id)?;
    let paused = form.flag("paused")?;
    let request = GuildRequest::SetAnnounceSchedulePaused {
        schedule_id,
        paused,
    };
    match state
        .call(authed.user_id, guild_id, request, form.idempotency_key()?)
        .await
    {
        Ok(GuildResponse::AnnounceSchedule(_)) => {
            let done = if paused { "paused" } else { "resumed" };
            Ok(see_other(&format!(
                "/guilds/{guild_id}/announcements?{done}={schedule_id}"
            )))
        }
        Ok(_) => Err(unexpected()),
        Err(WebError::BadForm(reason)) => {
            let error = format!("Nothing was changed: {reason}.");
            refusal(page(&state, &authed, guild_id, None, None, None, Some(error)).await)
        }
        Err(err) => Err(err),
    }
}

pub(crate) async fn delete_announcement(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, raw_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (form, guild_id) = guild_form(&state, &authed, &raw, body).await?;
    let schedule_id = id_in_path(&raw_id)?;
    let request = GuildRequest::DeleteAnnounceSchedule { schedule_id };
    match state
        .call(authed.user_id, guild_id, request, form.idempotency_key()?)
        .await?
    {
        GuildResponse::AnnounceScheduleDeleted { .. } => Ok(see_other(&format!(
            "/guilds/{guild_id}/announcements?deleted={schedule_id}"
        ))),
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_typed_in_the_form_read_as_utc() {
        assert_eq!(parse_clock("09:30"), Ok(570));
        assert_eq!(parse_clock("23:59"), Ok(1_439));
        for bad in ["24:00", "9", "09:60", "nine:00"] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
        let at = parse_minute("2026-12-07 10:30").unwrap();
        assert_eq!(at, Timestamp(1_796_639_400_000));
        assert_eq!(parse_minute("2026-12-07T10:30"), Ok(at));
        assert_eq!(minute_text(at), "2026-12-07 10:30");
        assert!(parse_minute("tomorrow").is_err());
    }
}
