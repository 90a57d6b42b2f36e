//! The guild calls of scheduled announcements: list, save (create or edit), pause or resume,
//! delete. A change is checked first (nothing is stored when anything is wrong), then stored,
//! its timer armed or cancelled, then audited with the schedule before and after.

use metrics::counter;
use protonn_storage::{
    AnnounceSchedule, AuditEntry, Plan, Repeat, StorageError, Timestamp, schedules_over_plan,
};
use serde::Serialize;
use twilight_model::channel::Channel;
use twilight_model::id::Id;

use super::{send_timer, timer_id};
use crate::feature::{CallTask, Ctx, premium_allows};
use crate::guild::{Io, is_announceable};
use crate::metrics::AUDIT_FAILURES;
use crate::{GuildCall, GuildCallError, GuildRequest, GuildResponse, ScheduleStatus};

/// Audit actions of schedule changes.
pub(crate) const AUDIT_CREATE: &str = "announce_schedule.create";
pub(crate) const AUDIT_EDIT: &str = "announce_schedule.edit";
pub(crate) const AUDIT_PAUSE: &str = "announce_schedule.pause";
pub(crate) const AUDIT_RESUME: &str = "announce_schedule.resume";
pub(crate) const AUDIT_DELETE: &str = "announce_schedule.delete";

/// Audit entry ids of schedule changes: this bit and the schedule's id (apart from
/// workflows', which are the workflow's id, and tickets', bit 61).
const AUDIT_ID_BIT: u64 = 1 << 60;

/// What a schedule change's audit entry details.
#[derive(Serialize)]
struct AuditDetails<'a> {
    schedule_id: u64,
    before: Option<&'a AnnounceSchedule>,
    after: Option<&'a AnnounceSchedule>,
    source: &'static str,
    idempotency_key: Option<&'a str>,
}

pub(super) fn answer(ctx: &mut Ctx<'_>, call: &GuildCall) -> Option<CallTask> {
    let io = ctx.io.clone();
    let plan = ctx.plan;
    let call = call.clone();
    let task: CallTask = match call.request.clone() {
        GuildRequest::ListAnnounceSchedules => Box::pin(async move { list(&io, plan).await }),
        GuildRequest::SaveAnnounceSchedule {
            schedule_id,
            channel_id,
            message,
            repeat,
            paused,
        } => Box::pin(async move {
            let draft = Draft {
                schedule_id,
                channel_id,
                message,
                repeat,
                paused,
            };
            save(&io, plan, &call, draft).await
        }),
        GuildRequest::SetAnnounceSchedulePaused {
            schedule_id,
            paused,
        } => Box::pin(async move {
            let before = stored(&io, schedule_id).await?;
            let after = AnnounceSchedule {
                paused,
                updated_at: Timestamp::now(),
                ..before.clone()
            };
            put(&io, &after).await?;
            let action = if paused { AUDIT_PAUSE } else { AUDIT_RESUME };
            audit(&io, &call, schedule_id, Some(&before), Some(&after), action).await;
            Ok(GuildResponse::AnnounceSchedule(after))
        }),
        GuildRequest::DeleteAnnounceSchedule { schedule_id } => Box::pin(async move {
            let guild_id = io.guild_id().get();
            let Some(before) = find(&io, schedule_id).await? else {
                return Ok(GuildResponse::AnnounceScheduleDeleted { existed: false });
            };
            let existed = io
                .store()
                .delete_announce_schedule(guild_id, schedule_id)
                .await
                .map_err(refused)?;
            cancel(&io, schedule_id).await;
            audit(&io, &call, schedule_id, Some(&before), None, AUDIT_DELETE).await;
            Ok(GuildResponse::AnnounceScheduleDeleted { existed })
        }),
        _ => return None,
    };
    Some(task)
}

/// A schedule as the dashboard's form sends it.
struct Draft {
    schedule_id: Option<u64>,
    channel_id: u64,
    message: String,
    repeat: Repeat,
    paused: bool,
}

fn invalid(message: impl Into<String>) -> GuildCallError {
    GuildCallError::Invalid {
        message: message.into(),
    }
}

/// The store refused (its checks of a schedule's shape) or could not serve.
fn refused(err: StorageError) -> GuildCallError {
    match err {
        StorageError::Invalid(message) => invalid(message),
        other => GuildCallError::Unavailable {
            message: other.to_string(),
        },
    }
}

async fn list(io: &Io, plan: Plan) -> Result<GuildResponse, GuildCallError> {
    let guild_id = io.guild_id().get();
    let schedules = io
        .store()
        .announce_schedules(guild_id)
        .await
        .map_err(refused)?;
    let timers = io
        .store()
        .timers_of_guild(guild_id)
        .await
        .map_err(refused)?;
    let over = schedules_over_plan(&schedules, plan).len();
    let running = schedules.len() - over;
    let schedules = schedules
        .into_iter()
        .enumerate()
        .map(|(position, schedule)| {
            let id = timer_id(schedule.schedule_id);
            let next_send = timers.iter().find(|t| t.id == id).map(|t| t.due);
            ScheduleStatus {
                schedule,
                next_send,
                over_plan: position >= running,
            }
        })
        .collect();
    Ok(GuildResponse::AnnounceSchedules { schedules })
}

async fn find(io: &Io, schedule_id: u64) -> Result<Option<AnnounceSchedule>, GuildCallError> {
    let schedules = io
        .store()
        .announce_schedules(io.guild_id().get())
        .await
        .map_err(refused)?;
    Ok(schedules.into_iter().find(|s| s.schedule_id == schedule_id))
}

async fn stored(io: &Io, schedule_id: u64) -> Result<AnnounceSchedule, GuildCallError> {
    find(io, schedule_id)
        .await?
        .ok_or_else(|| invalid(format!("there is no scheduled announcement {schedule_id}")))
}

async fn save(
    io: &Io,
    plan: Plan,
    call: &GuildCall,
    draft: Draft,
) -> Result<GuildResponse, GuildCallError> {
    let now = Timestamp::now();
    if !channel_usable(io, draft.channel_id).await? {
        return Err(invalid(
            "the channel must be a text or announcement channel of this server",
        ));
    }
    if let Repeat::Once { at } = draft.repeat
        && at <= now
    {
        return Err(invalid("a one-off announcement is set for a time to come"));
    }
    let all = io
        .store()
        .announce_schedules(io.guild_id().get())
        .await
        .map_err(refused)?;
    let (schedule_id, before) = match draft.schedule_id {
        Some(id) => {
            let before = all.iter().find(|s| s.schedule_id == id).cloned();
            if before.is_none() {
                return Err(invalid(format!("there is no scheduled announcement {id}")));
            }
            (id, before)
        }
        None => {
            let allowed = plan.limits().announcement_schedules;
            if all.len() >= allowed as usize {
                return Err(invalid(format!(
                    "the {} plan allows {allowed} scheduled announcements{}",
                    plan.name(),
                    premium_allows(plan, Plan::Premium.limits().announcement_schedules)
                )));
            }
            (all.last().map_or(1, |s| s.schedule_id + 1), None)
        }
    };
    let schedule = AnnounceSchedule {
        guild_id: io.guild_id().get(),
        schedule_id,
        channel_id: draft.channel_id,
        message: draft.message.trim().to_owned(),
        repeat: draft.repeat,
        paused: draft.paused,
        updated_at: now,
    };
    put(io, &schedule).await?;
    let action = if before.is_some() {
        AUDIT_EDIT
    } else {
        AUDIT_CREATE
    };
    audit(
        io,
        call,
        schedule_id,
        before.as_ref(),
        Some(&schedule),
        action,
    )
    .await;
    Ok(GuildResponse::AnnounceSchedule(schedule))
}

/// Whether `channel_id` is a text or announcement channel of the guild: from the node cache
/// when it keeps channels, else from Discord (a save is rare; a typo'd channel must not
/// wait for its first send to be found out).
async fn channel_usable(io: &Io, channel_id: u64) -> Result<bool, GuildCallError> {
    let Some(channel) = Id::new_checked(channel_id) else {
        return Ok(false);
    };
    if io.keeps_channels() {
        return Ok(io.may_announce_in(channel));
    }
    let channels: Vec<Channel> = io
        .send("guild_channels", io.http().guild_channels(io.guild_id()))
        .await
        .and_then(|reply| reply.model())
        .map_err(|err| GuildCallError::Unavailable {
            message: format!("the server's channels cannot be read: {err}"),
        })?;
    Ok(channels
        .iter()
        .any(|c| c.id == channel && is_announceable(c.kind)))
}

/// Stores the schedule and arms its next send (none while paused or after a one-off).
async fn put(io: &Io, schedule: &AnnounceSchedule) -> Result<(), GuildCallError> {
    io.store()
        .put_announce_schedule(schedule)
        .await
        .map_err(refused)?;
    let next = (!schedule.paused)
        .then(|| schedule.repeat.next_after(Timestamp::now()))
        .flatten();
    match next {
        Some(due) => {
            let timer = send_timer(io, schedule.schedule_id, due);
            // Stored but not armed would never send: say so rather than answer saved.
            io.store().put_timer(&timer).await.map_err(refused)?;
        }
        None => cancel(io, schedule.schedule_id).await,
    }
    Ok(())
}

async fn cancel(io: &Io, schedule_id: u64) {
    let id = timer_id(schedule_id);
    if let Err(err) = io.store().cancel_timer(io.guild_id().get(), &id).await {
        // A timer left behind finds its schedule paused or gone when due, and ends.
        tracing::warn!(guild_id = %io.guild_id(), schedule_id, error = %err, "schedule timer not cancelled");
    }
}

async fn audit(
    io: &Io,
    call: &GuildCall,
    schedule_id: u64,
    before: Option<&AnnounceSchedule>,
    after: Option<&AnnounceSchedule>,
    action: &str,
) {
    let details = AuditDetails {
        schedule_id,
        before,
        after,
        source: call.caller.source.label(),
        idempotency_key: call.idempotency_key.as_deref(),
    };
    let entry = AuditEntry {
        guild_id: io.guild_id().get(),
        at: Timestamp::now(),
        id: AUDIT_ID_BIT | schedule_id,
        actor_id: call.caller.user_id.unwrap_or(0),
        target_id: None,
        action: action.to_owned(),
        details: serde_json::to_string(&details).expect("audit details serialise"),
    };
    if let Err(err) = io.store().append_audit(&[entry]).await {
        // The change is durable and live; only its record is missing, loudly.
        counter!(AUDIT_FAILURES).increment(1);
        tracing::error!(guild_id = %io.guild_id(), error = %err, "schedule change not audited");
    }
}
