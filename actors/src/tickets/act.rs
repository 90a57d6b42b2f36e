//! The tickets' actions, each on a task of its own: Discord first where Discord decides,
//! then the store, then the answer, the audit entry and the timers.

use std::collections::BTreeMap;

use protonn_storage::{AuditEntry, Ticket, Timer, Timestamp, TranscriptMessage};
use serde::{Deserialize, Serialize};
use twilight_model::channel::Message;
use twilight_model::channel::message::AllowedMentions;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker, UserMarker};

use super::notes::{self, Notes};
use super::parse::Request;
use super::place::{self, noun};
use super::settings::Settings;
use super::{NAME, panel_components, ticket_components};
use crate::feature::{Answer, Effect};
use crate::guild::Io;
use crate::metrics::{TICKET_FIRST_RESPONSE, TICKET_RESOLUTION, TICKETS_CLOSED, TICKETS_OPENED};

/// Audit entry ids of ticket actions: this bit, then the ticket's number and the action, so
/// a retried entry overwrites itself (moderation's cases use bit 62).
const TICKET_AUDIT_ID: u64 = 1 << 61;
/// Messages per `GET /channels/{id}/messages` page (Discord's most).
const PAGE: u16 = 100;
/// Discord's epoch, for a snowflake's time.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Who acts, and where.
pub(super) struct Actor {
    pub(super) user: Id<UserMarker>,
    pub(super) staff: bool,
    pub(super) channel_id: Id<ChannelMarker>,
    pub(super) settings: Settings,
    /// Edits and deletions noted in open tickets.
    pub(super) notes: Notes,
}

/// The payload of a ticket's timers: which ticket.
#[derive(Serialize, Deserialize)]
struct TicketTimer {
    number: u64,
}

/// Timer ids: `archive:<n>` locks a closed ticket's thread or channel, `idle:<n>` closes a
/// silent ticket.
const ARCHIVE: &str = "archive:";
const IDLE: &str = "idle:";

fn no_mentions() -> AllowedMentions {
    AllowedMentions::default()
}

fn store_unavailable() -> Answer {
    Answer::new(
        "error",
        "Tickets are unavailable right now; please try again shortly.",
    )
}

fn staff_only(what: &str) -> Answer {
    Answer::new(
        "denied",
        format!("Only staff (a staff role, Manage Server or Manage Threads) can {what}."),
    )
}

fn audit(
    io: &Io,
    actor: u64,
    target: Option<u64>,
    action: &str,
    number: u64,
    details: serde_json::Value,
) -> Effect {
    let code = match action {
        "open" => 1,
        "close" => 2,
        "claim" => 3,
        "add" => 4,
        "remove" => 5,
        "rename" => 6,
        "reopen" => 7,
        _ => 0,
    };
    let mut details = details;
    details["ticket"] = serde_json::json!(number);
    Effect::Audit(AuditEntry {
        guild_id: io.guild_id().get(),
        at: Timestamp::now(),
        id: TICKET_AUDIT_ID | (number << 4) | code,
        actor_id: actor,
        target_id: target,
        action: format!("ticket.{action}"),
        details: details.to_string(),
    })
}

fn timer(io: &Io, kind: &str, number: u64, due: Timestamp) -> Timer {
    Timer {
        guild_id: io.guild_id().get(),
        shard_id: io.shard_id(),
        id: format!("{kind}{number}"),
        due,
        feature: NAME.to_owned(),
        payload: serde_json::json!(TicketTimer { number }).to_string(),
        claimed_by: None,
        claimed_until: Timestamp(0),
        users: Vec::new(),
        outlives_erasure: false,
    }
}

/// The idle timer of a ticket whose last message was at `last`.
fn idle_timer(io: &Io, settings: &Settings, number: u64, last: Timestamp) -> Timer {
    timer(io, IDLE, number, last.saturating_add(settings.idle_close))
}

/// The ticket whose thread or channel is `channel_id`.
async fn ticket_of_channel(
    io: &Io,
    channel_id: Id<ChannelMarker>,
) -> Result<Option<Ticket>, Answer> {
    let tickets = io
        .store()
        .tickets(io.guild_id().get())
        .await
        .map_err(|_| store_unavailable())?;
    Ok(tickets
        .into_iter()
        .find(|ticket| ticket.channel_id == channel_id.get()))
}

/// Runs a `ticket` command (or the close button).
pub(super) async fn run(io: Io, actor: Actor, request: Request) -> Vec<Effect> {
    match act(&io, &actor, request).await {
        Ok(effects) => effects,
        Err(answer) => vec![Effect::Reply(answer)],
    }
}

async fn act(io: &Io, actor: &Actor, request: Request) -> Result<Vec<Effect>, Answer> {
    match request {
        Request::Panel => panel(io, actor).await,
        Request::Reopen { number } => reopen(io, actor, number).await,
        request => {
            let Some(ticket) = ticket_of_channel(io, actor.channel_id).await? else {
                return Err(Answer::new(
                    "invalid",
                    "This is not a ticket's thread or channel: use it in the ticket.",
                ));
            };
            match request {
                Request::Close { reason } => close(io, actor, ticket, reason).await,
                Request::Claim => claim(io, actor, ticket).await,
                Request::Add { user } => member(io, actor, ticket, user, true).await,
                Request::Remove { user } => member(io, actor, ticket, user, false).await,
                Request::Rename { name } => rename(io, actor, ticket, &name).await,
                Request::Panel | Request::Reopen { .. } => unreachable!("matched above"),
            }
        }
    }
}

async fn panel(io: &Io, actor: &Actor) -> Result<Vec<Effect>, Answer> {
    if !actor.staff {
        return Err(staff_only("post a ticket panel"));
    }
    place::check_bot(io, actor.settings.place).await?;
    let components = panel_components(&actor.settings.categories);
    let mentions = no_mentions();
    let request = io
        .http()
        .create_message(actor.channel_id)
        .content("Need help? Press the button to open a private ticket with the staff.")
        .components(&components)
        .allowed_mentions(Some(&mentions));
    let posted: Message = io
        .send("create_message", request)
        .await
        .and_then(|reply| reply.model())
        .map_err(|err| Answer::new("error", format!("The panel could not be posted: {err}.")))?;
    let details =
        serde_json::json!({"channel": actor.channel_id.get(), "message": posted.id.get()});
    Ok(vec![
        audit(io, actor.user.get(), None, "panel", 0, details),
        Effect::Reply(Answer::ok("Ticket panel posted.")),
    ])
}

/// Opens a ticket for the member who sent the topic modal: numbered by the store (which
/// also holds them to their open-ticket limit), then a private thread or channel with them
/// in it.
pub(super) async fn open(
    io: Io,
    actor: Actor,
    topic: String,
    category: Option<String>,
) -> Vec<Effect> {
    let place = actor.settings.place;
    if let Err(answer) = place::check_bot(&io, place).await {
        return vec![Effect::Reply(answer)];
    }
    let opened_at = Timestamp::now();
    let mut ticket = Ticket {
        guild_id: io.guild_id().get(),
        ticket_id: 0,
        opener_id: actor.user.get(),
        channel_id: 0,
        subject: topic,
        category,
        opened_at,
        closed_at: None,
        claimed_at: None,
        first_response_at: None,
        close_reason: None,
        place,
    };
    let max_open = actor.settings.max_open_per_member;
    let number = match io.store().open_ticket(&ticket, max_open).await {
        Ok(Some(number)) => number,
        Ok(None) => {
            let text = format!(
                "You have {max_open} open ticket(s) here already: close one before opening another."
            );
            return vec![Effect::Reply(Answer::new("denied", text))];
        }
        Err(_) => return vec![Effect::Reply(store_unavailable())],
    };
    ticket.ticket_id = number;
    let name = format!("ticket-{number}");
    let opened = place::open(&io, &actor.settings, actor.channel_id, actor.user, &name).await;
    let thread = match opened {
        Ok(thread) => thread,
        Err(err) => {
            // Closed at once, so it holds no place under the member's limit.
            ticket.closed_at = Some(Timestamp::now());
            ticket.close_reason = Some(format!("no {} could be opened", noun(place)));
            let _ = io.store().put_ticket(&ticket).await;
            let text = format!(
                "Discord did not open a {} for the ticket: {err}.",
                noun(place)
            );
            return vec![Effect::Reply(Answer::new("error", text))];
        }
    };
    ticket.channel_id = thread.get();
    actor.notes.track(ticket.channel_id);
    if io.store().put_ticket(&ticket).await.is_err() {
        return vec![Effect::Reply(store_unavailable())];
    }
    let category = ticket
        .category
        .as_ref()
        .map_or(String::new(), |c| format!(" ({c})"));
    let welcome = format!(
        "Ticket #{number}{category}: {}\n<@{}>, the staff will answer here. Press Close when you are done.",
        ticket.subject, actor.user
    );
    let components = ticket_components();
    let mentions = no_mentions();
    let first = io
        .http()
        .create_message(thread)
        .content(&welcome)
        .components(&components)
        .allowed_mentions(Some(&mentions));
    if let Err(err) = io.send("create_message", first).await {
        tracing::warn!(guild_id = %io.guild_id(), ticket = number, error = %err, "ticket's first message not posted");
    }
    metrics::counter!(TICKETS_OPENED).increment(1);
    let details = serde_json::json!({
        noun(place): thread.get(),
        "topic": ticket.subject,
        "category": ticket.category,
    });
    vec![
        Effect::Timer(idle_timer(&io, &actor.settings, number, opened_at)),
        audit(&io, actor.user.get(), None, "open", number, details),
        Effect::Reply(Answer::ok(format!("Ticket #{number} opened: <#{thread}>."))),
    ]
}

/// Closes a ticket: its messages copied into the transcript, the ticket stored closed, then
/// its thread or channel locked by a timer due now (after this answer is posted).
async fn close(
    io: &Io,
    actor: &Actor,
    mut ticket: Ticket,
    reason: String,
) -> Result<Vec<Effect>, Answer> {
    let number = ticket.ticket_id;
    if !actor.staff && actor.user.get() != ticket.opener_id {
        return Err(staff_only("close another member's ticket"));
    }
    if !ticket.is_open() {
        return Err(Answer::new(
            "conflict",
            format!("Ticket #{number} is already closed."),
        ));
    }
    let noted = actor.notes.take(ticket.channel_id);
    let (lines, answered) = match copy_transcript(io, &ticket, noted.clone()).await {
        Ok(copied) => copied,
        Err(answer) => {
            actor.notes.put_back(ticket.channel_id, noted);
            return Err(answer);
        }
    };
    let now = Timestamp::now();
    // Measured once: a reopened ticket keeps its first response.
    let first_response = ticket
        .first_response_at
        .is_none()
        .then(|| ticket.claimed_at.into_iter().chain(answered).min())
        .flatten();
    ticket.first_response_at = ticket.first_response_at.or(first_response);
    ticket.closed_at = Some(now);
    ticket.close_reason = (!reason.is_empty()).then(|| reason.clone());
    io.store()
        .put_ticket(&ticket)
        .await
        .map_err(|_| store_unavailable())?;
    metrics::counter!(TICKETS_CLOSED).increment(1);
    metrics::histogram!(TICKET_RESOLUTION).record(seconds(ticket.opened_at, now));
    if let Some(first) = first_response {
        metrics::histogram!(TICKET_FIRST_RESPONSE).record(seconds(ticket.opened_at, first));
    }
    let because = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    let locked = match ticket.place {
        protonn_storage::TicketPlace::Thread => "The thread is archived now.",
        protonn_storage::TicketPlace::Channel => "The channel is locked now.",
    };
    let details = serde_json::json!({"reason": reason, "transcript_lines": lines});
    Ok(vec![
        audit(
            io,
            actor.user.get(),
            Some(ticket.opener_id),
            "close",
            number,
            details,
        ),
        Effect::Reply(Answer::ok(format!(
            "Ticket #{number} closed by <@{}>{because}. {locked}",
            actor.user
        ))),
        Effect::Timer(timer(io, ARCHIVE, number, now)),
        Effect::CancelTimer {
            id: format!("{IDLE}{number}"),
        },
    ])
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.0.saturating_sub(from.0) as f64 / 1000.0
}

/// Reads the ticket page by page, newest first, appending each page to the transcript as
/// it comes (a long ticket is never held whole); the lines copied, and when the first
/// message by someone other than the opener and bots was written (the first response).
/// Messages deleted while the ticket was open, and the earlier texts of edited ones, come
/// from `noted`.
async fn copy_transcript(
    io: &Io,
    ticket: &Ticket,
    mut noted: BTreeMap<u64, TranscriptMessage>,
) -> Result<(usize, Option<Timestamp>), Answer> {
    let thread = Id::<ChannelMarker>::new(ticket.channel_id);
    let mut before: Option<Id<MessageMarker>> = None;
    let mut copied = 0;
    let mut answered: Option<Timestamp> = None;
    loop {
        let request = io.http().channel_messages(thread).limit(PAGE);
        let page: Vec<Message> = match before {
            Some(before) => io.send("channel_messages", request.before(before)).await,
            None => io.send("channel_messages", request).await,
        }
        .and_then(|reply| reply.model())
        .map_err(|err| {
            Answer::new(
                "error",
                format!("The ticket's messages could not be read, so it stays open: {err}."),
            )
        })?;
        let Some(oldest) = page.last() else {
            let deleted = append_deleted(io, ticket, noted).await?;
            return Ok((copied + deleted, answered));
        };
        // Pages come newest first: the last answer seen is the first.
        if let Some(answer) = page
            .iter()
            .rfind(|m| !m.author.bot && m.author.id.get() != ticket.opener_id)
        {
            answered = Some(snowflake_time(answer.id.get()));
        }
        before = Some(oldest.id);
        let lines: Vec<TranscriptMessage> = page
            .iter()
            .map(|message| {
                let mut line = notes::line(ticket.guild_id, message);
                line.ticket_id = ticket.ticket_id;
                if let Some(seen) = noted.remove(&line.message_id) {
                    line.earlier_texts = seen.earlier_texts;
                }
                line
            })
            .collect();
        io.store()
            .append_transcript(&lines)
            .await
            .map_err(|_| store_unavailable())?;
        copied += lines.len();
        if page.len() < usize::from(PAGE) {
            let deleted = append_deleted(io, ticket, noted).await?;
            return Ok((copied + deleted, answered));
        }
    }
}

/// The noted messages that were deleted, as they were last seen, into the transcript.
async fn append_deleted(
    io: &Io,
    ticket: &Ticket,
    noted: BTreeMap<u64, TranscriptMessage>,
) -> Result<usize, Answer> {
    let deleted: Vec<TranscriptMessage> = noted
        .into_values()
        .filter(|line| line.deleted_at.is_some())
        .map(|line| TranscriptMessage {
            ticket_id: ticket.ticket_id,
            ..line
        })
        .collect();
    if !deleted.is_empty() {
        io.store()
            .append_transcript(&deleted)
            .await
            .map_err(|_| store_unavailable())?;
    }
    Ok(deleted.len())
}

async fn claim(io: &Io, actor: &Actor, mut ticket: Ticket) -> Result<Vec<Effect>, Answer> {
    let number = ticket.ticket_id;
    if !actor.staff {
        return Err(staff_only("claim a ticket"));
    }
    if !ticket.is_open() {
        return Err(Answer::new(
            "conflict",
            format!("Ticket #{number} is closed."),
        ));
    }
    if ticket.claimed_at.is_some() {
        return Err(Answer::new(
            "conflict",
            format!("Ticket #{number} is claimed already (see the audit log for by whom)."),
        ));
    }
    let now = Timestamp::now();
    ticket.claimed_at = Some(now);
    io.store()
        .put_ticket(&ticket)
        .await
        .map_err(|_| store_unavailable())?;
    // The first response is measured at the close, with the messages.
    Ok(vec![
        audit(
            io,
            actor.user.get(),
            Some(ticket.opener_id),
            "claim",
            number,
            serde_json::json!({}),
        ),
        Effect::Reply(Answer::ok(format!(
            "Ticket #{number} claimed by <@{}>.",
            actor.user
        ))),
    ])
}

async fn member(
    io: &Io,
    actor: &Actor,
    ticket: Ticket,
    user: u64,
    add: bool,
) -> Result<Vec<Effect>, Answer> {
    let number = ticket.ticket_id;
    let verb = if add {
        "add people to"
    } else {
        "remove people from"
    };
    if !actor.staff {
        return Err(staff_only(&format!("{verb} a ticket")));
    }
    if !ticket.is_open() {
        return Err(Answer::new(
            "conflict",
            format!("Ticket #{number} is closed."),
        ));
    }
    if !add && user == ticket.opener_id {
        return Err(Answer::new(
            "invalid",
            "The ticket's opener stays in it: close the ticket instead.",
        ));
    }
    match place::let_in_or_out(io, &ticket, Id::new(user), add).await {
        Ok(()) => {}
        Err(crate::rest::RestError::Status { status: 404, .. }) => {
            let text = if add {
                format!("<@{user}> is not a member of this server.")
            } else {
                format!("<@{user}> is not in ticket #{number}.")
            };
            return Err(Answer::new("invalid", text));
        }
        Err(err) => return Err(Answer::new("error", format!("Discord refused: {err}."))),
    }
    let (action, text) = if add {
        ("add", format!("<@{user}> added to ticket #{number}."))
    } else {
        (
            "remove",
            format!("<@{user}> removed from ticket #{number}."),
        )
    };
    Ok(vec![
        audit(
            io,
            actor.user.get(),
            Some(user),
            action,
            number,
            serde_json::json!({}),
        ),
        Effect::Reply(Answer::ok(text)),
    ])
}

async fn rename(io: &Io, actor: &Actor, ticket: Ticket, name: &str) -> Result<Vec<Effect>, Answer> {
    let number = ticket.ticket_id;
    if !actor.staff {
        return Err(staff_only("rename a ticket"));
    }
    if !ticket.is_open() {
        return Err(Answer::new(
            "conflict",
            format!("Ticket #{number} is closed."),
        ));
    }
    let full = format!("ticket-{number}-{name}");
    place::rename(io, &ticket, &full)
        .await
        .map_err(|err| Answer::new("error", format!("Discord refused the name: {err}.")))?;
    Ok(vec![
        audit(
            io,
            actor.user.get(),
            None,
            "rename",
            number,
            serde_json::json!({"name": full}),
        ),
        Effect::Reply(Answer::ok(format!("Ticket #{number} is now `{full}`."))),
    ])
}

async fn reopen(io: &Io, actor: &Actor, number: u64) -> Result<Vec<Effect>, Answer> {
    if !actor.staff {
        return Err(staff_only("reopen a ticket"));
    }
    let guild_id = io.guild_id().get();
    let Some(mut ticket) = io
        .store()
        .ticket(guild_id, number)
        .await
        .map_err(|_| store_unavailable())?
    else {
        return Err(Answer::new(
            "invalid",
            format!("There is no ticket #{number}."),
        ));
    };
    if ticket.is_open() {
        return Err(Answer::new(
            "conflict",
            format!("Ticket #{number} is open."),
        ));
    }
    place::set_locked(io, &ticket, false).await.map_err(|err| {
        Answer::new(
            "error",
            format!("Discord did not reopen the {}: {err}.", noun(ticket.place)),
        )
    })?;
    ticket.closed_at = None;
    ticket.close_reason = None;
    actor.notes.track(ticket.channel_id);
    io.store()
        .put_ticket(&ticket)
        .await
        .map_err(|_| store_unavailable())?;
    Ok(vec![
        // A close whose archive timer has not fired yet must not lock the reopened thread.
        Effect::CancelTimer {
            id: format!("{ARCHIVE}{number}"),
        },
        Effect::Timer(idle_timer(io, &actor.settings, number, Timestamp::now())),
        audit(
            io,
            actor.user.get(),
            Some(ticket.opener_id),
            "reopen",
            number,
            serde_json::json!({}),
        ),
        Effect::Reply(Answer::ok(format!(
            "Ticket #{number} reopened: <#{}>.",
            ticket.channel_id
        ))),
    ])
}

/// One of the tickets' timers fell due: claimed first, so acted on once across nodes.
pub(super) async fn on_timer(
    io: Io,
    timer: Timer,
    settings: Settings,
    notes: Notes,
) -> Vec<Effect> {
    let Ok(later) = serde_json::from_str::<TicketTimer>(&timer.payload) else {
        tracing::error!(guild_id = timer.guild_id, timer = %timer.id, "unreadable timer dropped");
        let _ = io.store().cancel_timer(timer.guild_id, &timer.id).await;
        return Vec::new();
    };
    if !io.claim_timer(&timer).await {
        return Vec::new();
    }
    let ticket = match io.store().ticket(timer.guild_id, later.number).await {
        Ok(ticket) => ticket,
        // The claim lapses and the next poll tries again.
        Err(_) => return Vec::new(),
    };
    let outcome = if timer.id.starts_with(IDLE) {
        close_if_idle(&io, &timer, ticket, settings, notes).await
    } else {
        archive(&io, ticket).await.map(|()| Vec::new())
    };
    let Some(effects) = outcome else {
        return Vec::new();
    };
    if let Err(err) = io
        .store()
        .complete_timer(timer.guild_id, &timer.id, &io.claimant())
        .await
    {
        tracing::warn!(guild_id = timer.guild_id, error = %err, "timer not completed; its claim will lapse");
    }
    effects
}

/// A closed ticket's thread or channel is locked; a ticket reopened meanwhile is left
/// alone. `None` when Discord did not do it (the claim lapses and it is tried again).
async fn archive(io: &Io, ticket: Option<Ticket>) -> Option<()> {
    let Some(ticket) = ticket.filter(|t| !t.is_open()) else {
        return Some(());
    };
    match place::set_locked(io, &ticket, true).await {
        Ok(()) => Some(()),
        Err(err) => {
            tracing::warn!(guild_id = %io.guild_id(), ticket = ticket.ticket_id, error = %err, "ticket not locked yet");
            None
        }
    }
}

/// Closes an open ticket whose last message is older than the idle period, as the bot; a
/// ticket with newer talk gets its timer moved to then. `None` to try again later.
async fn close_if_idle(
    io: &Io,
    timer: &Timer,
    ticket: Option<Ticket>,
    settings: Settings,
    notes: Notes,
) -> Option<Vec<Effect>> {
    let Some(ticket) = ticket.filter(Ticket::is_open) else {
        return Some(Vec::new());
    };
    let thread = Id::<ChannelMarker>::new(ticket.channel_id);
    let last: Vec<Message> = io
        .send(
            "channel_messages",
            io.http().channel_messages(thread).limit(1),
        )
        .await
        .and_then(|reply| reply.model())
        .ok()?;
    let last_at = last
        .first()
        .map_or(ticket.opened_at, |m| snowflake_time(m.id.get()))
        .max(ticket.opened_at);
    let moved = idle_timer(io, &settings, ticket.ticket_id, last_at);
    if moved.due > Timestamp::now() {
        // Replacing the timer also drops this claim: nothing to complete.
        io.store().put_timer(&moved).await.ok()?;
        return None;
    }
    let bot = io.bot_id().await?;
    let reason = format!(
        "no message for {}",
        crate::moderation::show_duration(settings.idle_close)
    );
    let actor = Actor {
        user: bot,
        staff: true,
        channel_id: thread,
        settings,
        notes,
    };
    let effects = match close(io, &actor, ticket, reason).await {
        Ok(effects) => effects,
        Err(answer) => {
            tracing::warn!(guild_id = timer.guild_id, answer = %answer.text, "idle ticket not closed yet");
            return None;
        }
    };
    // No one asked: the answer goes to the thread.
    Some(
        effects
            .into_iter()
            .map(|effect| match effect {
                Effect::Reply(answer) => Effect::Message {
                    channel_id: thread,
                    content: answer.text,
                    embed: None,
                },
                other => other,
            })
            .collect(),
    )
}

pub(super) fn snowflake_time(id: u64) -> Timestamp {
    Timestamp((id >> 22) + DISCORD_EPOCH_MS)
}
