//! Guild admins' own scheduled announcements (a feature of the guild actor): the dashboard
//! lists, creates, edits, pauses and deletes them through guild calls (`schedules/calls.rs`);
//! each schedule that is not paused has one durable timer, `announce:<id>`, due at its next
//! send. When it falls due on the node that owns the guild, the timer is claimed, replaced by
//! the schedule's next send (or completed after a one-off), and only then is the message
//! posted, in the background REST lane: a crash in between misses one send rather than
//! repeating it, and a handoff or restart never sends one twice.
//!
//! The plan's `announcement_schedules` counts: past it (a downgrade), the highest ids are
//! kept, listed as over the plan, and their sends skipped until the guild has the plan
//! again or removes others.

mod calls;

use metrics::counter;
use protonn_storage::{AnnounceSchedule, Plan, Timer, Timestamp, schedules_over_plan};
use twilight_model::channel::message::AllowedMentions;
use twilight_model::id::Id;

use crate::GuildCall;
use crate::feature::{CallTask, Ctx, Effect, Feature};
use crate::guild::Io;
use crate::metrics::SCHEDULED_ANNOUNCEMENTS;
use crate::rest::RestError;

/// The feature's name: its timers' `feature`.
const NAME: &str = "announce_schedules";
/// Timer ids: this and the schedule's id.
const TIMER_PREFIX: &str = "announce:";

/// Values of the `outcome` label of [`SCHEDULED_ANNOUNCEMENTS`].
pub(crate) const SEND_OUTCOMES: [&str; 6] = [
    "sent",
    "over_plan",
    "channel_gone",
    "missing_permission",
    "discord_error",
    "not_sent",
];

pub(crate) struct Schedules;

impl Feature for Schedules {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_call(&self, ctx: &mut Ctx<'_>, call: &GuildCall) -> Option<CallTask> {
        calls::answer(ctx, call)
    }

    fn on_timer(&self, ctx: &mut Ctx<'_>, timer: Timer) -> Vec<Effect> {
        let (io, plan) = (ctx.io.clone(), ctx.plan);
        vec![Effect::task(async move {
            fire(&io, plan, &timer).await;
            Vec::new()
        })]
    }
}

fn timer_id(schedule_id: u64) -> String {
    format!("{TIMER_PREFIX}{schedule_id}")
}

/// The timer of a schedule's send at `due`.
fn send_timer(io: &Io, schedule_id: u64, due: Timestamp) -> Timer {
    Timer {
        guild_id: io.guild_id().get(),
        shard_id: io.shard_id(),
        id: timer_id(schedule_id),
        due,
        feature: NAME.to_owned(),
        payload: String::new(),
        // A guild's schedule names nobody.
        users: Vec::new(),
        outlives_erasure: false,
        claimed_by: None,
        claimed_until: Timestamp(0),
    }
}

/// A schedule's timer fell due: claims it, arms the next send, then posts the message.
async fn fire(io: &Io, plan: Plan, timer: &Timer) {
    let guild_id = io.guild_id().get();
    let Some(schedule_id) = timer
        .id
        .strip_prefix(TIMER_PREFIX)
        .and_then(|id| id.parse::<u64>().ok())
    else {
        tracing::error!(guild_id, timer = %timer.id, "unreadable schedule timer dropped");
        let _ = io.store().cancel_timer(guild_id, &timer.id).await;
        return;
    };
    if !io.claim_timer(timer).await {
        return;
    }
    let schedules = match io.store().announce_schedules(guild_id).await {
        Ok(schedules) => schedules,
        Err(err) => {
            // The claim lapses and the next poll tries again.
            tracing::warn!(guild_id, error = %err, "scheduled announcement not sent yet: schedules unreadable");
            return;
        }
    };
    let Some(schedule) = schedules.iter().find(|s| s.schedule_id == schedule_id) else {
        // Deleted meanwhile.
        complete(io, timer).await;
        return;
    };
    if schedule.paused {
        complete(io, timer).await;
        return;
    }
    // The next send replaces this timer before this one is posted: a crash in between
    // misses one send rather than repeating it.
    match schedule.repeat.next_after(Timestamp::now()) {
        Some(due) => {
            if let Err(err) = io
                .store()
                .put_timer(&send_timer(io, schedule_id, due))
                .await
            {
                tracing::warn!(guild_id, error = %err, "next scheduled send not stored; retried when the claim lapses");
                return;
            }
        }
        None => complete(io, timer).await,
    }
    let over_plan = schedules_over_plan(&schedules, plan)
        .iter()
        .any(|s| s.schedule_id == schedule_id);
    let outcome = if over_plan {
        "over_plan"
    } else {
        post(io, schedule).await
    };
    counter!(SCHEDULED_ANNOUNCEMENTS, "outcome" => outcome).increment(1);
}

/// Posts the schedule's message, pinging nobody; the outcome label.
async fn post(io: &Io, schedule: &AnnounceSchedule) -> &'static str {
    let Some(channel) = Id::new_checked(schedule.channel_id) else {
        return "channel_gone";
    };
    if !io.may_announce_in(channel) {
        return "channel_gone";
    }
    if io.may_not_send(channel) {
        return "missing_permission";
    }
    let nobody = AllowedMentions::default();
    let request = io
        .http()
        .create_message(channel)
        .content(&schedule.message)
        .allowed_mentions(Some(&nobody));
    match io.send_background("create_message", request).await {
        Ok(_) => "sent",
        Err(RestError::Status { status: 404, .. }) => "channel_gone",
        Err(RestError::Status { status: 403, .. }) => "missing_permission",
        Err(err @ (RestError::Timeout | RestError::QueueFull | RestError::HeldBack(_))) => {
            tracing::warn!(guild_id = schedule.guild_id, error = %err, "scheduled announcement not sent in its turn");
            "not_sent"
        }
        Err(err) => {
            tracing::warn!(guild_id = schedule.guild_id, error = %err, "scheduled announcement refused");
            "discord_error"
        }
    }
}

async fn complete(io: &Io, timer: &Timer) {
    if let Err(err) = io
        .store()
        .complete_timer(timer.guild_id, &timer.id, &io.claimant())
        .await
    {
        tracing::warn!(guild_id = timer.guild_id, error = %err, "schedule timer not completed; its claim will lapse");
    }
}
