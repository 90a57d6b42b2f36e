//! Carrying out a run's Discord calls, in order, on a task of their own, within what is left
//! of the run's deadline; each call's result goes into the run's trace.

use metrics::counter;
use tokio::sync::watch;
use tokio::time::Instant;
use twilight_http::request::channel::reaction::RequestReactionType;
use twilight_model::channel::ChannelType;
use twilight_model::channel::message::AllowedMentions;
use twilight_model::channel::message::component::{ButtonStyle, Component};
use twilight_model::channel::message::embed::Embed;
use twilight_model::id::Id;

use super::model::{Button, COMPONENT_PREFIX};
use super::run::{Call, Limit, Outcome, Trace, TraceStep, clip};
use crate::components::{button, row};
use crate::guild::{Io, direct_message};
use crate::metrics::WORKFLOW_LIMITS_HIT;

/// How far the guild's changes to kept variables are stored, and the last change a run could
/// have read.
pub(super) struct Durable {
    pub(super) stored: watch::Receiver<u64>,
    pub(super) seen: u64,
}

/// Sends `calls` one after the other (a reaction goes after the message it follows), stopping
/// at the first failure or when `deadline` passes; notes each result in `trace`. Nothing is
/// sent before every kept value the run could have read is stored (at once when none waits),
/// so what members see never rests on a value a crash could lose; if they are not stored by
/// the deadline, nothing is sent.
pub(super) async fn execute(
    io: &Io,
    calls: Vec<Call>,
    deadline: Instant,
    trace: &mut Trace,
    mut durable: Durable,
) {
    let seen = durable.seen;
    // The value's guard (not `Send`) goes with this statement.
    let stored = matches!(
        tokio::time::timeout_at(deadline, durable.stored.wait_for(|s| *s >= seen)).await,
        Ok(Ok(_))
    );
    if !stored {
        let reason = "the server's kept variables were not stored in time; nothing was sent";
        note(trace, "discord", reason.to_owned());
        overrule(trace, Outcome::Failed(reason.to_owned()));
        return;
    }
    for call in calls {
        if Instant::now() >= deadline {
            counter!(WORKFLOW_LIMITS_HIT, "limit" => Limit::Deadline.label()).increment(1);
            note(trace, "discord", "stopped: limit deadline reached".into());
            overrule(trace, Outcome::Limit(Limit::Deadline));
            return;
        }
        let what = describe(&call);
        match send(io, call).await {
            Ok(()) => note(trace, "discord", format!("{what}: done")),
            Err(reason) => {
                note(trace, "discord", format!("{what}: {reason}"));
                overrule(trace, Outcome::Failed(format!("{what}: {reason}")));
                return;
            }
        }
    }
}

/// A failure while sending becomes the run's outcome, unless the run had already stopped on
/// a limit or a failure of its own (the first reason is the one an admin needs).
fn overrule(trace: &mut Trace, outcome: Outcome) {
    if !matches!(trace.outcome, Outcome::Limit(_) | Outcome::Failed(_)) {
        trace.outcome = outcome;
    }
}

fn note(trace: &mut Trace, at: &str, detail: String) {
    trace.steps.push(TraceStep {
        at: at.to_owned(),
        detail: clip(detail),
    });
}

fn describe(call: &Call) -> &'static str {
    match call {
        Call::Send { .. } => "send",
        Call::Embed { .. } => "embed",
        Call::Reply { .. } => "reply",
        Call::Dm { .. } => "dm",
        Call::AddRole { .. } => "add_role",
        Call::RemoveRole { .. } => "remove_role",
        Call::Timeout { .. } => "timeout",
        Call::DeleteMessage { .. } => "delete_message",
        Call::React { .. } => "react",
        Call::CreateThread { .. } => "create_thread",
    }
}

async fn send(io: &Io, call: Call) -> Result<(), String> {
    let http = io.http();
    let guild = io.guild_id();
    let no_pings = AllowedMentions::default();
    let result = match call {
        Call::Send {
            channel,
            content,
            buttons,
        } => {
            let channel = Id::new(channel);
            if io.may_not_send(channel) {
                return Err("the bot may not post in that channel".into());
            }
            let components = components(&buttons);
            let mut request = http
                .create_message(channel)
                .allowed_mentions(Some(&no_pings))
                .content(&content);
            if !components.is_empty() {
                request = request.components(&components);
            }
            io.send("create_message", request).await
        }
        Call::Embed {
            channel,
            title,
            description,
        } => {
            let channel = Id::new(channel);
            if io.may_not_send(channel) {
                return Err("the bot may not post in that channel".into());
            }
            let embed = embed(title, description);
            let request = http
                .create_message(channel)
                .allowed_mentions(Some(&no_pings))
                .embeds(std::slice::from_ref(&embed));
            io.send("create_message", request).await
        }
        Call::Reply {
            channel,
            message,
            content,
        } => {
            let request = http
                .create_message(Id::new(channel))
                .allowed_mentions(Some(&no_pings))
                .reply(Id::new(message))
                .content(&content);
            io.send("create_message", request).await
        }
        Call::Dm { user, content } => {
            // A member who refuses DMs is their choice, not the run's failure.
            direct_message(io, Id::new(user), content).await;
            return Ok(());
        }
        Call::AddRole { user, role } => {
            let request = http.add_guild_member_role(guild, Id::new(user), Id::new(role));
            io.send("add_member_role", request).await
        }
        Call::RemoveRole { user, role } => {
            let request = http.remove_guild_member_role(guild, Id::new(user), Id::new(role));
            io.send("remove_member_role", request).await
        }
        Call::Timeout { user, minutes } => {
            let until = protonn_storage::Timestamp::now()
                .saturating_add(std::time::Duration::from_secs(u64::from(minutes) * 60));
            let until = twilight_model::util::Timestamp::from_secs((until.0 / 1_000) as i64)
                .map_err(|_| "that timeout ends too far away".to_owned())?;
            let request = http
                .update_guild_member(guild, Id::new(user))
                .communication_disabled_until(Some(until));
            io.send("update_member", request).await
        }
        Call::DeleteMessage { channel, message } => {
            let request = http.delete_message(Id::new(channel), Id::new(message));
            io.send("delete_message", request).await
        }
        Call::React {
            channel,
            message,
            emoji,
        } => {
            let emoji = RequestReactionType::Unicode { name: &emoji };
            let request = http.create_reaction(Id::new(channel), Id::new(message), &emoji);
            io.send("create_reaction", request).await
        }
        Call::CreateThread {
            channel,
            name,
            message: None,
        } => {
            let request = http.create_thread(Id::new(channel), &name, ChannelType::PublicThread);
            io.send("create_thread", request).await
        }
        Call::CreateThread {
            channel,
            name,
            message: Some(message),
        } => {
            let request =
                http.create_thread_from_message(Id::new(channel), Id::new(message), &name);
            io.send("create_thread_from_message", request).await
        }
    };
    result.map(drop).map_err(|err| err.to_string())
}

/// A message's rows of workflow buttons, their custom ids `wf:<id>`.
fn components(buttons: &[Vec<Button>]) -> Vec<Component> {
    buttons
        .iter()
        .map(|buttons| {
            row(buttons
                .iter()
                .map(|b| {
                    let custom_id = format!("{COMPONENT_PREFIX}{}", b.id);
                    button(&custom_id, &b.label, ButtonStyle::Primary)
                })
                .collect())
        })
        .collect()
}

fn embed(title: String, description: String) -> Embed {
    Embed {
        author: None,
        color: None,
        description: (!description.is_empty()).then_some(description),
        fields: Vec::new(),
        flags: None,
        footer: None,
        image: None,
        kind: "rich".to_owned(),
        provider: None,
        thumbnail: None,
        timestamp: None,
        title: (!title.is_empty()).then_some(title),
        url: None,
        video: None,
    }
}
