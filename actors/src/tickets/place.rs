//! Where a ticket lives on Discord, and the few steps that differ with it: a private thread
//! of the panel's channel, or a text channel of its own whose overwrites let in only the
//! opener, the staff roles and the bot. Opening it, letting someone in or out, renaming it,
//! and locking it after the close (a thread archived and locked; a channel kept, its members
//! no longer allowed to send) or unlocking it at a reopen. Everything else (numbering,
//! transcripts, timers, the audit) is the same for both (`act.rs`).

use protonn_storage::{Ticket, TicketPlace};
use twilight_model::channel::permission_overwrite::{
    PermissionOverwrite as ChannelOverwrite, PermissionOverwriteType,
};
use twilight_model::channel::{Channel, ChannelType};
use twilight_model::guild::Permissions;
use twilight_model::http::permission_overwrite::{
    PermissionOverwrite, PermissionOverwriteType as HttpOverwriteType,
};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, UserMarker};

use super::settings::Settings;
use crate::feature::Answer;
use crate::guild::Io;
use crate::rest::RestError;

/// What a person in a ticket channel may do (the opener, people added, the staff roles).
const IN_TICKET: Permissions = Permissions::VIEW_CHANNEL
    .union(Permissions::SEND_MESSAGES)
    .union(Permissions::READ_MESSAGE_HISTORY);
/// What the bot needs in the guild to make and manage ticket channels.
const CHANNEL_NEEDS: Permissions = Permissions::MANAGE_CHANNELS.union(Permissions::MANAGE_ROLES);

/// What the ticket is, in the bot's answers.
pub(super) fn noun(place: TicketPlace) -> &'static str {
    match place {
        TicketPlace::Thread => "thread",
        TicketPlace::Channel => "channel",
    }
}

/// Whether the bot may open tickets where the guild wants them; what it lacks otherwise.
/// Threads are judged by Discord (their permissions are the panel channel's).
pub(super) async fn check_bot(io: &Io, place: TicketPlace) -> Result<(), Answer> {
    if place == TicketPlace::Thread {
        return Ok(());
    }
    let has = crate::moderation::bot_permissions(io).await?;
    let missing = CHANNEL_NEEDS - has;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Answer::new(
        "denied",
        format!(
            "I need the {} permission to open ticket channels; ask an admin to grant it (nothing was opened).",
            crate::moderation::permission_names(missing)
        ),
    ))
}

/// Opens the ticket's thread or channel, named `name`, with the opener in it.
pub(super) async fn open(
    io: &Io,
    settings: &Settings,
    panel_channel: Id<ChannelMarker>,
    opener: Id<UserMarker>,
    name: &str,
) -> Result<Id<ChannelMarker>, String> {
    let created = match settings.place {
        TicketPlace::Thread => {
            let request = io
                .http()
                .create_thread(panel_channel, name, ChannelType::PrivateThread)
                .invitable(false);
            io.send("create_thread", request).await
        }
        TicketPlace::Channel => {
            let bot = io.bot_id().await.ok_or("I am still connecting")?;
            let overwrites = channel_overwrites(io, settings, opener, bot);
            let mut request = io
                .http()
                .create_guild_channel(io.guild_id(), name)
                .kind(ChannelType::GuildText)
                .permission_overwrites(&overwrites);
            if let Some(category) = settings.channel_category.and_then(Id::new_checked) {
                request = request.parent_id(category);
            }
            io.send("create_guild_channel", request).await
        }
    };
    let channel: Channel = created
        .and_then(|reply| reply.model())
        .map_err(|err| refusal(settings.place, &err))?;
    if settings.place == TicketPlace::Thread
        && let Err(err) = io
            .send(
                "add_thread_member",
                io.http().add_thread_member(channel.id, opener),
            )
            .await
    {
        tracing::warn!(guild_id = %io.guild_id(), error = %err, "opener not added to their ticket");
    }
    Ok(channel.id)
}

/// Discord's refusal, saying what the bot needs when it is a permission.
fn refusal(place: TicketPlace, err: &RestError) -> String {
    match (place, err) {
        (TicketPlace::Channel, RestError::Status { status: 403, .. }) => format!(
            "{err} (I need Manage Channels and Manage Roles, and to see the ticket category)"
        ),
        _ => err.to_string(),
    }
}

/// A ticket channel's overwrites: hidden from @everyone, open to the opener, the staff
/// roles and the bot.
fn channel_overwrites(
    io: &Io,
    settings: &Settings,
    opener: Id<UserMarker>,
    bot: Id<UserMarker>,
) -> Vec<ChannelOverwrite> {
    let allow = |id, kind| ChannelOverwrite {
        allow: IN_TICKET,
        deny: Permissions::empty(),
        id,
        kind,
    };
    let mut overwrites = vec![
        ChannelOverwrite {
            allow: Permissions::empty(),
            deny: Permissions::VIEW_CHANNEL,
            id: io.guild_id().cast(),
            kind: PermissionOverwriteType::Role,
        },
        allow(opener.cast(), PermissionOverwriteType::Member),
        allow(bot.cast(), PermissionOverwriteType::Member),
    ];
    overwrites.extend(
        settings
            .staff_roles
            .iter()
            .filter_map(|&role| Id::new_checked(role))
            .map(|role| allow(role, PermissionOverwriteType::Role)),
    );
    overwrites
}

/// Lets `user` into the ticket (`add`) or out of it.
pub(super) async fn let_in_or_out(
    io: &Io,
    ticket: &Ticket,
    user: Id<UserMarker>,
    add: bool,
) -> Result<(), RestError> {
    let channel = Id::new(ticket.channel_id);
    let sent = match (ticket.place, add) {
        (TicketPlace::Thread, true) => {
            io.send(
                "add_thread_member",
                io.http().add_thread_member(channel, user),
            )
            .await
        }
        (TicketPlace::Thread, false) => {
            io.send(
                "remove_thread_member",
                io.http().remove_thread_member(channel, user),
            )
            .await
        }
        (TicketPlace::Channel, true) => {
            let overwrite = PermissionOverwrite {
                allow: Some(IN_TICKET),
                deny: None,
                id: user.cast(),
                kind: HttpOverwriteType::Member,
            };
            io.send(
                "update_permission",
                io.http().update_channel_permission(channel, &overwrite),
            )
            .await
        }
        (TicketPlace::Channel, false) => {
            io.send(
                "delete_permission",
                io.http().delete_channel_permission(channel).member(user),
            )
            .await
        }
    };
    sent.map(drop)
}

pub(super) async fn rename(io: &Io, ticket: &Ticket, name: &str) -> Result<(), RestError> {
    let channel = Id::new(ticket.channel_id);
    let sent = match ticket.place {
        TicketPlace::Thread => {
            io.send("update_thread", io.http().update_thread(channel).name(name))
                .await
        }
        TicketPlace::Channel => {
            io.send(
                "update_channel",
                io.http().update_channel(channel).name(name),
            )
            .await
        }
    };
    sent.map(drop)
}

/// After the close: a thread archived and locked; a channel kept (its transcript is in the
/// store, and staff may read it on Discord too) with its members no longer allowed to send.
/// A reopen (`locked: false`) undoes it.
pub(super) async fn set_locked(io: &Io, ticket: &Ticket, locked: bool) -> Result<(), RestError> {
    let channel = Id::<ChannelMarker>::new(ticket.channel_id);
    if ticket.place == TicketPlace::Thread {
        let request = io
            .http()
            .update_thread(channel)
            .archived(locked)
            .locked(locked);
        return io.send("update_thread", request).await.map(drop);
    }
    let current: Channel = io
        .send("channel", io.http().channel(channel))
        .await?
        .model()?;
    let bot = io.bot_id().await;
    let send = Permissions::SEND_MESSAGES;
    for overwrite in current.permission_overwrites.unwrap_or_default() {
        let member = overwrite.kind == PermissionOverwriteType::Member;
        if !member || Some(overwrite.id.cast()) == bot || overwrite.deny.contains(send) == locked {
            continue;
        }
        let (allow, deny) = if locked {
            (overwrite.allow - send, overwrite.deny | send)
        } else {
            (overwrite.allow | send, overwrite.deny - send)
        };
        let changed = PermissionOverwrite {
            allow: Some(allow),
            deny: Some(deny),
            id: overwrite.id,
            kind: HttpOverwriteType::Member,
        };
        io.send(
            "update_permission",
            io.http().update_channel_permission(channel, &changed),
        )
        .await?;
    }
    Ok(())
}
