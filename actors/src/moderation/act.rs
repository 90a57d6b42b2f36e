//! Carrying out a moderation request, on a task of its own: checks first (the bot's
//! permissions, the moderator's, the hierarchy), then Discord, then the case and what
//! follows from it (reply, audit entry, mod-log embed, timers, escalation).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use protonn_storage::{AuditEntry, Case, GuildConfig, Timer, Timestamp, VersionedConfig};
use serde::{Deserialize, Serialize};
use twilight_http::request::AuditLogReason;
use twilight_model::channel::Message;
use twilight_model::channel::message::Embed;
use twilight_model::channel::message::embed::{EmbedField, EmbedFooter};
use twilight_model::channel::permission_overwrite::PermissionOverwriteType;
use twilight_model::guild::{Member, Permissions};
use twilight_model::http::permission_overwrite::{
    PermissionOverwrite, PermissionOverwriteType as HttpOverwriteType,
};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker};

use super::NAME;
use super::checks::{self, GuildRoles, Parties, Refusal};
use super::parse::{HISTORY_LEN, Request, show_duration};
use crate::feature::{Answer, Effect, Invocation};
use crate::guild::Io;
use crate::rest::RestError;

/// Discord's JSON error codes the answers tell apart.
const UNKNOWN_MEMBER: u64 = 10007;
const UNKNOWN_BAN: u64 = 10026;
/// Bulk delete takes only messages younger than this (Discord's rule); a minute is kept in
/// hand for clocks and the time the request takes.
const BULK_DELETE_AGE: Duration = Duration::from_secs(14 * 86_400 - 60);
/// Audit entry ids of cases are kept apart from config versions (both per guild).
const CASE_AUDIT_ID: u64 = 1 << 62;
/// Colour of the mod-log embeds.
const EMBED_COLOUR: u32 = 0xE6_7E_22;

/// What a temporary ban's timer carries.
#[derive(Debug, Serialize, Deserialize)]
struct UnbanLater {
    user: u64,
    case: u64,
}

/// The timer id of a user's temporary ban: one per user, so a new ban replaces it.
fn unban_timer(user: u64) -> String {
    format!("unban:{user}")
}

/// Who acts, with what, where.
struct Acting<'a> {
    io: &'a Io,
    config: &'a GuildConfig,
    guild: GuildRoles,
    moderator: u64,
    moderator_roles: Vec<u64>,
    moderator_permissions: Permissions,
    bot: u64,
    bot_roles: Vec<u64>,
    bot_permissions: Permissions,
    channel: Id<ChannelMarker>,
    /// The command's own message, which a purge leaves alone.
    command_message: Option<Id<MessageMarker>>,
}

/// Runs a moderation request and answers it.
pub(super) async fn run(
    io: Io,
    config: Arc<VersionedConfig>,
    invocation: Invocation,
    request: Request,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    let answer = match acting(&io, &config.config, &invocation).await {
        Ok(acting) => match act(&acting, request, None, &mut effects).await {
            Ok(text) => Answer::ok(text),
            Err(answer) => answer,
        },
        Err(answer) => answer,
    };
    effects.insert(0, Effect::Reply(answer));
    effects
}

/// Carries out an action the bot takes on its own (automod's), in `channel`: the bot is the
/// moderator, so only its own permissions and rank are checked, and a warning climbs the
/// escalation ladder as a moderator's would. The answer's text, or why nothing was done,
/// and the effects that follow (audit entries, mod-log embeds, timers, DMs).
pub(crate) async fn by_the_bot(
    io: Io,
    config: Arc<VersionedConfig>,
    channel: Id<ChannelMarker>,
    request: Request,
) -> (Result<String, Answer>, Vec<Effect>) {
    let mut effects = Vec::new();
    let (guild, bot, bot_roles) = match bot_side(&io).await {
        Ok(bot_side) => bot_side,
        Err(answer) => return (Err(answer), effects),
    };
    let bot_permissions = guild.permissions(bot, &bot_roles);
    let acting = Acting {
        io: &io,
        config: &config.config,
        guild,
        moderator: bot,
        moderator_roles: bot_roles.clone(),
        moderator_permissions: bot_permissions,
        bot,
        bot_roles,
        bot_permissions,
        channel,
        command_message: None,
    };
    let reason = match &request {
        Request::Warn { reason, .. }
        | Request::Timeout { reason, .. }
        | Request::Kick { reason, .. }
        | Request::Ban { reason, .. } => reason.clone(),
        _ => String::new(),
    };
    let acted = act(&acting, request, Some(reason), &mut effects).await;
    (acted, effects)
}

/// The bot's own permissions in the guild (its roles', by the node cache), or why they are
/// not known yet: what a feature checks before asking Discord for something that needs one.
pub(crate) async fn bot_permissions(io: &Io) -> Result<Permissions, Answer> {
    let (guild, bot, bot_roles) = bot_side(io).await?;
    Ok(guild.permissions(bot, &bot_roles))
}

/// The guild's roles, the bot's id and its roles.
async fn bot_side(io: &Io) -> Result<(GuildRoles, u64, Vec<u64>), Answer> {
    let guild = GuildRoles::from_cache(io.cache(), io.guild_id()).ok_or_else(|| {
        Answer::new(
            "error",
            "I do not know this server's roles yet; please try again in a moment.",
        )
    })?;
    let bot = io.bot_id().await.ok_or_else(|| {
        Answer::new(
            "error",
            "I am still connecting; please try again in a moment.",
        )
    })?;
    let bot_roles: Vec<u64> = match io.bot_roles() {
        Some(roles) => roles.into_iter().map(Id::get).collect(),
        None => member_roles(io, bot.get())
            .await?
            .ok_or_else(|| Answer::new("error", "I cannot find myself in this server."))?,
    };
    Ok((guild, bot.get(), bot_roles))
}

/// Who acts: the moderator as the invocation and the cache say, and the bot.
async fn acting<'a>(
    io: &'a Io,
    config: &'a GuildConfig,
    invocation: &Invocation,
) -> Result<Acting<'a>, Answer> {
    let (guild, bot, bot_roles) = bot_side(io).await?;
    let bot_permissions = invocation
        .bot_permissions
        .unwrap_or_else(|| guild.permissions(bot, &bot_roles));
    let moderator = invocation.author.get();
    let moderator_roles: Vec<u64> = invocation.author_roles.iter().map(|r| r.get()).collect();
    let mut moderator_permissions = invocation
        .author_permissions
        .unwrap_or_else(|| guild.permissions(moderator, &moderator_roles));
    // A staff role is the guild's own grant of every moderation permission.
    if moderator_roles
        .iter()
        .any(|role| config.staff_roles.contains(role))
    {
        moderator_permissions |= STAFF;
    }
    Ok(Acting {
        io,
        config,
        guild,
        moderator,
        moderator_roles,
        moderator_permissions,
        bot,
        bot_roles,
        bot_permissions,
        channel: invocation.channel_id,
        command_message: invocation.message_id,
    })
}

/// What a staff role grants.
const STAFF: Permissions = Permissions::MODERATE_MEMBERS
    .union(Permissions::KICK_MEMBERS)
    .union(Permissions::BAN_MEMBERS)
    .union(Permissions::MANAGE_MESSAGES)
    .union(Permissions::MANAGE_CHANNELS)
    .union(Permissions::MANAGE_ROLES);

/// The permissions (the moderator's, the bot's) and the verb of a request.
fn needs(request: &Request) -> (Permissions, Permissions, &'static str) {
    use Permissions as P;
    match request {
        Request::Warn { .. } => (P::MODERATE_MEMBERS, P::empty(), "warn"),
        Request::Timeout { .. } => (P::MODERATE_MEMBERS, P::MODERATE_MEMBERS, "time out"),
        Request::Kick { .. } => (P::KICK_MEMBERS, P::KICK_MEMBERS, "kick"),
        Request::Ban { .. } => (P::BAN_MEMBERS, P::BAN_MEMBERS, "ban"),
        Request::Unban { .. } => (P::BAN_MEMBERS, P::BAN_MEMBERS, "unban"),
        Request::Purge { .. } => (
            P::MANAGE_MESSAGES,
            P::MANAGE_MESSAGES | P::READ_MESSAGE_HISTORY,
            "delete messages",
        ),
        Request::Slowmode { .. } => (P::MANAGE_CHANNELS, P::MANAGE_CHANNELS, "set slowmode"),
        Request::Lock { .. } => (P::MANAGE_ROLES, P::MANAGE_ROLES, "lock channels"),
        Request::Unlock { .. } => (P::MANAGE_ROLES, P::MANAGE_ROLES, "unlock channels"),
        Request::Case { .. } | Request::Reason { .. } | Request::History { .. } => {
            (P::MODERATE_MEMBERS, P::empty(), "read cases")
        }
    }
}

type Acted<'a> = Pin<Box<dyn Future<Output = Result<String, Answer>> + Send + 'a>>;

/// Checks and carries out `request`; `escalation` is the reason of an action the bot takes
/// itself, climbing the ladder (it skips the moderator's checks). The answer's text, or why
/// nothing was done.
fn act<'a>(
    acting: &'a Acting<'a>,
    request: Request,
    escalation: Option<String>,
    effects: &'a mut Vec<Effect>,
) -> Acted<'a> {
    Box::pin(async move {
        let (moderator_needs, bot_needs, verb) = needs(&request);
        let missing = bot_needs - acting.bot_permissions;
        if !missing.is_empty() {
            return Err(Answer::new(
                "denied",
                format!(
                    "I need the {} permission to {verb}; nothing was changed.",
                    checks::names(missing)
                ),
            ));
        }
        if escalation.is_none() && !acting.moderator_permissions.contains(moderator_needs) {
            return Err(Answer::new(
                "denied",
                format!(
                    "You need the {} permission (or a staff role of this server) to {verb}.",
                    checks::names(moderator_needs - acting.moderator_permissions)
                ),
            ));
        }
        let escalated = escalation.is_some();
        match request {
            Request::Warn { user, reason } => {
                check_target(acting, user, verb, false, escalated, true).await?;
                let case = record(acting, "warn", Some(user), None, &reason, None, effects).await?;
                effects.extend(dm(acting, user, "warned", &reason, None));
                let mut text = format!("Case #{case}: <@{user}> was warned.{}", because(&reason));
                if let Some(step) = escalate(acting, user, effects).await? {
                    text.push(' ');
                    text.push_str(&step);
                }
                Ok(text)
            }
            Request::Timeout {
                user,
                duration,
                reason,
            } => {
                let reason = escalation.unwrap_or(reason);
                check_target(acting, user, verb, true, escalated, true).await?;
                let until = Timestamp::now().saturating_add(duration);
                let until = twilight_model::util::Timestamp::from_secs((until.0 / 1_000) as i64)
                    .map_err(|_| Answer::new("invalid", "That timeout ends too far away."))?;
                let request = acting
                    .io
                    .http()
                    .update_guild_member(acting.io.guild_id(), Id::new(user))
                    .communication_disabled_until(Some(until));
                let request = with_reason(request, &reason);
                discord(acting.io.send("update_member", request).await, verb)?;
                let case = record(
                    acting,
                    "timeout",
                    Some(user),
                    None,
                    &reason,
                    Some(duration),
                    effects,
                )
                .await?;
                effects.extend(dm(acting, user, "timed out", &reason, Some(duration)));
                Ok(format!(
                    "Case #{case}: <@{user}> was timed out for {}.{}",
                    show_duration(duration),
                    because(&reason)
                ))
            }
            Request::Kick { user, reason } => {
                let reason = escalation.unwrap_or(reason);
                check_target(acting, user, verb, false, escalated, true).await?;
                // Told before: once out, the member may share no server with the bot.
                dm_now(acting, dm(acting, user, "kicked", &reason, None)).await;
                let request = acting
                    .io
                    .http()
                    .remove_guild_member(acting.io.guild_id(), Id::new(user));
                let request = with_reason(request, &reason);
                discord(acting.io.send("remove_member", request).await, verb)?;
                let case = record(acting, "kick", Some(user), None, &reason, None, effects).await?;
                Ok(format!(
                    "Case #{case}: <@{user}> was kicked.{}",
                    because(&reason)
                ))
            }
            Request::Ban {
                user,
                duration,
                delete_messages,
                reason,
            } => {
                let reason = escalation.unwrap_or(reason);
                // A user who is not a member may be banned (keeps them out).
                check_target(acting, user, verb, false, escalated, false).await?;
                dm_now(acting, dm(acting, user, "banned", &reason, duration)).await;
                let request = acting
                    .io
                    .http()
                    .create_ban(acting.io.guild_id(), Id::new(user))
                    .delete_message_seconds(delete_messages.as_secs() as u32);
                let request = with_reason(request, &reason);
                discord(acting.io.send("create_ban", request).await, verb)?;
                let action = if duration.is_some() { "tempban" } else { "ban" };
                let case =
                    record(acting, action, Some(user), None, &reason, duration, effects).await?;
                match duration {
                    Some(duration) => effects.push(Effect::Timer(Timer {
                        guild_id: acting.io.guild_id().get(),
                        shard_id: acting.io.shard_id(),
                        id: unban_timer(user),
                        due: Timestamp::now().saturating_add(duration),
                        feature: NAME.to_owned(),
                        payload: serde_json::to_string(&UnbanLater { user, case })
                            .expect("a timer payload serialises"),
                        claimed_by: None,
                        claimed_until: Timestamp(0),
                        users: vec![user],
                        // The member's erasure must not leave them banned for good.
                        outlives_erasure: true,
                    })),
                    // A permanent ban ends any temporary one.
                    None => effects.push(Effect::CancelTimer {
                        id: unban_timer(user),
                    }),
                }
                let length = duration
                    .map(|d| format!(" for {}", show_duration(d)))
                    .unwrap_or_default();
                Ok(format!(
                    "Case #{case}: <@{user}> was banned{length}.{}",
                    because(&reason)
                ))
            }
            Request::Unban { user, reason } => {
                let request = acting
                    .io
                    .http()
                    .delete_ban(acting.io.guild_id(), Id::new(user));
                let request = with_reason(request, &reason);
                match acting.io.send("delete_ban", request).await {
                    Err(RestError::Status { status: 404, body })
                        if discord_code(&body) == Some(UNKNOWN_BAN) =>
                    {
                        return Err(Answer::new("invalid", format!("<@{user}> is not banned.")));
                    }
                    other => discord(other, verb)?,
                };
                effects.push(Effect::CancelTimer {
                    id: unban_timer(user),
                });
                let case =
                    record(acting, "unban", Some(user), None, &reason, None, effects).await?;
                Ok(format!(
                    "Case #{case}: <@{user}> was unbanned.{}",
                    because(&reason)
                ))
            }
            Request::Purge { count, user } => purge(acting, count, user, effects).await,
            Request::Slowmode {
                channel,
                interval,
                reason,
            } => {
                let channel = channel.map_or(acting.channel, Id::new);
                let request = acting
                    .io
                    .http()
                    .update_channel(channel)
                    .rate_limit_per_user(interval.as_secs() as u16);
                let request = with_reason(request, &reason);
                discord(acting.io.send("update_channel", request).await, verb)?;
                let case = record(
                    acting,
                    "slowmode",
                    None,
                    Some(channel),
                    &reason,
                    Some(interval),
                    effects,
                )
                .await?;
                Ok(if interval.is_zero() {
                    format!(
                        "Case #{case}: slowmode is off in <#{channel}>.{}",
                        because(&reason)
                    )
                } else {
                    format!(
                        "Case #{case}: members of <#{channel}> may post once every {}.{}",
                        show_duration(interval),
                        because(&reason)
                    )
                })
            }
            Request::Lock { channel, reason } => {
                lock(
                    acting,
                    channel.map_or(acting.channel, Id::new),
                    true,
                    &reason,
                    effects,
                )
                .await
            }
            Request::Unlock { channel, reason } => {
                lock(
                    acting,
                    channel.map_or(acting.channel, Id::new),
                    false,
                    &reason,
                    effects,
                )
                .await
            }
            Request::Case { number } => match stored_case(acting, number).await? {
                Some(case) => Ok(show_case(&case)),
                None => Err(Answer::new(
                    "invalid",
                    format!("There is no case #{number}."),
                )),
            },
            Request::Reason { number, reason } => {
                let guild_id = acting.io.guild_id().get();
                let changed = acting
                    .io
                    .store()
                    .set_case_reason(guild_id, number, &reason)
                    .await
                    .map_err(|_| store_unavailable())?;
                if !changed {
                    return Err(Answer::new(
                        "invalid",
                        format!("There is no case #{number}."),
                    ));
                }
                effects.push(audit(acting, "reason", number, None, &reason));
                Ok(format!("Case #{number}'s reason is now: {reason}"))
            }
            Request::History { user } => {
                let cases = acting
                    .io
                    .store()
                    .cases_about(acting.io.guild_id().get(), user, HISTORY_LEN)
                    .await
                    .map_err(|_| store_unavailable())?;
                if cases.is_empty() {
                    return Ok(format!("<@{user}> has no moderation cases."));
                }
                let lines: Vec<String> = cases.iter().map(case_line).collect();
                Ok(format!(
                    "Latest cases about <@{user}>:\n{}",
                    lines.join("\n")
                ))
            }
        }
    })
}

/// Refuses acting on `user` as Discord would; `must_be_member` for actions on members only.
async fn check_target(
    acting: &Acting<'_>,
    user: u64,
    verb: &str,
    timeout: bool,
    escalated: bool,
    must_be_member: bool,
) -> Result<(), Answer> {
    let roles = match member_roles(acting.io, user).await? {
        Some(roles) => roles,
        None if must_be_member => {
            return Err(Answer::new(
                "invalid",
                format!("<@{user}> is not a member of this server; nothing was changed."),
            ));
        }
        None => Vec::new(),
    };
    let parties = Parties {
        moderator: (acting.moderator, &acting.moderator_roles),
        bot: (acting.bot, &acting.bot_roles),
        target: (user, &roles),
    };
    checks::may_act_on(&acting.guild, &parties, timeout, escalated).map_err(|refusal| {
        let text = match refusal {
            Refusal::Themselves => format!("You cannot {verb} yourself."),
            Refusal::TheBot => format!("I will not {verb} myself."),
            Refusal::Owner => format!("Nobody can {verb} the server owner."),
            Refusal::ModeratorRank => {
                format!("You can only {verb} members whose highest role is below yours.")
            }
            Refusal::BotRank => format!(
                "My highest role must be above <@{user}>'s highest role for me to {verb} them: \
                 move my role up in the server settings."
            ),
            Refusal::AdministratorTimeout => {
                "Members with the Administrator permission cannot be timed out.".to_owned()
            }
        };
        Answer::new("denied", text)
    })
}

/// A member's roles from Discord; `None` if the user is not a member.
async fn member_roles(io: &Io, user: u64) -> Result<Option<Vec<u64>>, Answer> {
    let Some(user_id) = Id::new_checked(user) else {
        return Ok(None);
    };
    match io
        .send(
            "guild_member",
            io.http().guild_member(io.guild_id(), user_id),
        )
        .await
    {
        Ok(reply) => {
            let member: Member = reply.model().map_err(|_| discord_unavailable())?;
            Ok(Some(member.roles.into_iter().map(Id::get).collect()))
        }
        Err(RestError::Status { status: 404, body })
            if discord_code(&body) == Some(UNKNOWN_MEMBER) =>
        {
            Ok(None)
        }
        Err(_) => Err(discord_unavailable()),
    }
}

/// Stores the case and adds its audit entry and mod-log embed to `effects`; its number.
async fn record(
    acting: &Acting<'_>,
    action: &str,
    target: Option<u64>,
    channel: Option<Id<ChannelMarker>>,
    reason: &str,
    duration: Option<Duration>,
    effects: &mut Vec<Effect>,
) -> Result<u64, Answer> {
    let mut case = Case {
        guild_id: acting.io.guild_id().get(),
        number: 0,
        action: action.to_owned(),
        moderator_id: acting.moderator,
        target_id: target,
        channel_id: channel.map(Id::get),
        reason: reason.to_owned(),
        duration_ms: duration.map(|d| d.as_millis() as u64),
        at: Timestamp::now(),
    };
    case.number = match acting.io.store().create_case(&case).await {
        Ok(number) => number,
        Err(err) => {
            tracing::error!(guild_id = case.guild_id, error = %err, "moderation case not stored");
            return Err(Answer::new(
                "error",
                format!(
                    "Done on Discord, but the case could not be recorded (storage unavailable): \
                     the {action} has no case number."
                ),
            ));
        }
    };
    effects.push(audit(acting, action, case.number, target, reason));
    if let Some(log) = acting.config.log_channel.and_then(Id::new_checked) {
        effects.push(Effect::Message {
            channel_id: log,
            content: String::new(),
            embed: Some(Box::new(case_embed(&case))),
        });
    }
    Ok(case.number)
}

fn audit(
    acting: &Acting<'_>,
    action: &str,
    case: u64,
    target: Option<u64>,
    reason: &str,
) -> Effect {
    Effect::Audit(AuditEntry {
        guild_id: acting.io.guild_id().get(),
        at: Timestamp::now(),
        id: CASE_AUDIT_ID | case,
        actor_id: acting.moderator,
        target_id: target,
        action: format!("moderation.{action}"),
        details: serde_json::json!({ "case": case, "reason": reason }).to_string(),
    })
}

/// After a warning: the ladder's step for the member's warnings in its window, taken by the
/// bot; its answer, if a step applied.
async fn escalate(
    acting: &Acting<'_>,
    user: u64,
    effects: &mut Vec<Effect>,
) -> Result<Option<String>, Answer> {
    let ladder = &acting.config.moderation.escalation;
    if ladder.is_empty() {
        return Ok(None);
    }
    let cases = acting
        .io
        .store()
        .cases_about(acting.io.guild_id().get(), user, 1_000)
        .await
        .map_err(|_| store_unavailable())?;
    let now = Timestamp::now();
    let step = ladder.iter().rev().find(|step| {
        let since = now.saturating_sub(Duration::from_secs(u64::from(step.within_days) * 86_400));
        let warns = cases
            .iter()
            .filter(|case| case.action == "warn" && case.at >= since)
            .count();
        warns == step.warns as usize
    });
    let Some(step) = step else {
        return Ok(None);
    };
    let reason = format!(
        "Escalation: {} warnings within {} days.",
        step.warns, step.within_days
    );
    let duration = step.duration_secs.map(Duration::from_secs);
    let request = match (step.action.as_str(), duration) {
        ("timeout", Some(duration)) => Request::Timeout {
            user,
            duration,
            reason: reason.clone(),
        },
        ("kick", _) => Request::Kick {
            user,
            reason: reason.clone(),
        },
        ("ban", duration) => Request::Ban {
            user,
            duration,
            delete_messages: Duration::ZERO,
            reason: reason.clone(),
        },
        _ => return Ok(None),
    };
    match act(acting, request, Some(reason), effects).await {
        Ok(text) => Ok(Some(text)),
        Err(answer) => Ok(Some(format!(
            "The escalation was not taken: {}",
            answer.text
        ))),
    }
}

async fn purge(
    acting: &Acting<'_>,
    count: u8,
    user: Option<u64>,
    effects: &mut Vec<Effect>,
) -> Result<String, Answer> {
    let channel = acting.channel;
    let io = acting.io;
    let messages: Vec<Message> = io
        .send(
            "channel_messages",
            io.http().channel_messages(channel).limit(100),
        )
        .await
        .and_then(|reply| reply.model())
        .map_err(|err| discord_error(&err, "read the channel's messages"))?;
    let oldest = Timestamp::now().saturating_sub(BULK_DELETE_AGE).0;
    let ids: Vec<Id<MessageMarker>> = messages
        .iter()
        .filter(|message| Some(message.id) != acting.command_message)
        .filter(|message| user.is_none_or(|user| message.author.id.get() == user))
        .filter(|message| snowflake_ms(message.id.get()) > oldest)
        .take(usize::from(count))
        .map(|message| message.id)
        .collect();
    match ids.as_slice() {
        [] => {
            return Err(Answer::new(
                "invalid",
                "No messages younger than 14 days to delete here.",
            ));
        }
        [one] => discord(
            io.send("delete_message", io.http().delete_message(channel, *one))
                .await,
            "delete messages",
        )?,
        many => discord(
            io.send("delete_messages", io.http().delete_messages(channel, many))
                .await,
            "delete messages",
        )?,
    };
    let reason = format!("{} messages", ids.len());
    let case = record(acting, "purge", user, Some(channel), &reason, None, effects).await?;
    Ok(format!(
        "Case #{case}: deleted {} messages in <#{channel}>.",
        ids.len()
    ))
}

/// Denies (or gives back) @everyone's Send Messages in the channel, keeping the rest of its
/// overwrite.
async fn lock(
    acting: &Acting<'_>,
    channel: Id<ChannelMarker>,
    locking: bool,
    reason: &str,
    effects: &mut Vec<Effect>,
) -> Result<String, Answer> {
    let io = acting.io;
    let verb = if locking { "lock" } else { "unlock" };
    let current: twilight_model::channel::Channel = io
        .send("get_channel", io.http().channel(channel))
        .await
        .and_then(|reply| reply.model())
        .map_err(|err| discord_error(&err, verb))?;
    let everyone = io.guild_id().cast();
    let (allow, deny) = current
        .permission_overwrites
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.kind == PermissionOverwriteType::Role && o.id == everyone)
        .map_or((Permissions::empty(), Permissions::empty()), |o| {
            (o.allow, o.deny)
        });
    let send = Permissions::SEND_MESSAGES;
    if locking == deny.contains(send) {
        let state = if locking {
            "already locked"
        } else {
            "not locked"
        };
        return Err(Answer::new("invalid", format!("<#{channel}> is {state}.")));
    }
    let (allow, deny) = if locking {
        (allow - send, deny | send)
    } else {
        (allow, deny - send)
    };
    let overwrite = PermissionOverwrite {
        allow: Some(allow),
        deny: Some(deny),
        id: everyone,
        kind: HttpOverwriteType::Role,
    };
    let request = io.http().update_channel_permission(channel, &overwrite);
    let request = with_reason(request, reason);
    discord(io.send("update_permission", request).await, verb)?;
    let case = record(acting, verb, None, Some(channel), reason, None, effects).await?;
    Ok(format!(
        "Case #{case}: <#{channel}> is {verb}ed.{}",
        because(reason)
    ))
}

/// A temporary ban fell due: lift it once. The timer is claimed first, so another node that
/// also thinks it owns the guild (a handoff in flight) does not lift it too; a claim lapses
/// after the runtime's lease, so a node that died mid-way leaves it to the next owner.
pub(super) async fn expire(io: Io, config: Arc<VersionedConfig>, timer: Timer) -> Vec<Effect> {
    let Ok(later) = serde_json::from_str::<UnbanLater>(&timer.payload) else {
        tracing::error!(guild_id = timer.guild_id, timer = %timer.id, "unreadable timer dropped");
        let _ = io.store().cancel_timer(timer.guild_id, &timer.id).await;
        return Vec::new();
    };
    if !io.claim_timer(&timer).await {
        return Vec::new();
    }
    let reason = format!("Temporary ban (case #{}) ended.", later.case);
    let request = io.http().delete_ban(io.guild_id(), Id::new(later.user));
    let request = with_reason(request, &reason);
    let lifted = match io.send("delete_ban", request).await {
        Ok(_) => true,
        // Lifted already (by a moderator, or by this node before it crashed).
        Err(RestError::Status { status: 404, body })
            if discord_code(&body) == Some(UNKNOWN_BAN) =>
        {
            false
        }
        Err(err) => {
            // The claim lapses and the next poll tries again.
            tracing::warn!(guild_id = timer.guild_id, error = %err, "temporary ban not lifted yet");
            return Vec::new();
        }
    };
    let mut effects = Vec::new();
    if lifted && let Some(bot) = io.bot_id().await {
        let acting = Acting {
            io: &io,
            config: &config.config,
            guild: GuildRoles::default(),
            moderator: bot.get(),
            moderator_roles: Vec::new(),
            moderator_permissions: Permissions::empty(),
            bot: bot.get(),
            bot_roles: Vec::new(),
            bot_permissions: Permissions::empty(),
            channel: Id::new(1),
            command_message: None,
        };
        // The member was erased meanwhile (the timer no longer names them): the case of the
        // lift must not name them again.
        let erased = timer.outlives_erasure && !timer.users.contains(&later.user);
        let target = if erased {
            protonn_storage::privacy::ERASED_USER
        } else {
            later.user
        };
        let _ = record(
            &acting,
            "unban",
            Some(target),
            None,
            &reason,
            None,
            &mut effects,
        )
        .await;
    }
    match io
        .store()
        .complete_timer(timer.guild_id, &timer.id, &io.claimant())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(guild_id = timer.guild_id, timer = %timer.id, "timer claim lost before completion")
        }
        Err(err) => {
            tracing::warn!(guild_id = timer.guild_id, error = %err, "timer not completed; its claim will lapse")
        }
    }
    effects
}

async fn stored_case(acting: &Acting<'_>, number: u64) -> Result<Option<Case>, Answer> {
    acting
        .io
        .store()
        .case(acting.io.guild_id().get(), number)
        .await
        .map_err(|_| store_unavailable())
}

/// The DM telling the member what was done, if the guild wants one.
fn dm(
    acting: &Acting<'_>,
    user: u64,
    what: &str,
    reason: &str,
    duration: Option<Duration>,
) -> Option<Effect> {
    if !acting.config.moderation.dm_members {
        return None;
    }
    let name = acting
        .io
        .cache()
        .guild(acting.io.guild_id())
        .map(|guild| guild.name().to_owned())
        .unwrap_or_default();
    let length = duration
        .map(|d| format!(" for {}", show_duration(d)))
        .unwrap_or_default();
    let content = format!("You were {what} in **{name}**{length}.{}", because(reason));
    Some(Effect::DirectMessage {
        user_id: Id::new(user),
        content,
    })
}

/// Sends a DM before going on: a kicked or banned member may share no server with the bot
/// afterwards, and Discord refuses DMs then.
async fn dm_now(acting: &Acting<'_>, dm: Option<Effect>) {
    if let Some(Effect::DirectMessage { user_id, content }) = dm {
        crate::guild::direct_message(acting.io, user_id, content).await;
    }
}

fn with_reason<'a, R: AuditLogReason<'a>>(request: R, reason: &'a str) -> R {
    if reason.is_empty() {
        request
    } else {
        request.reason(reason)
    }
}

fn because(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" Reason: {reason}")
    }
}

/// Discord's answer to an action, as a refusal the moderator understands.
fn discord<T>(outcome: Result<T, RestError>, verb: &str) -> Result<(), Answer> {
    outcome.map(|_| ()).map_err(|err| discord_error(&err, verb))
}

fn discord_error(err: &RestError, verb: &str) -> Answer {
    match err {
        RestError::Status { status: 403, .. } => Answer::new(
            "denied",
            format!("Discord refused to let me {verb}: I am missing a permission there."),
        ),
        RestError::Status { status: 404, .. } => {
            Answer::new("invalid", "Discord does not know that member or channel.")
        }
        RestError::Status { status, .. } if *status < 500 => Answer::new(
            "invalid",
            format!("Discord refused to {verb} ({status}); nothing was recorded."),
        ),
        _ => discord_unavailable(),
    }
}

fn discord_unavailable() -> Answer {
    Answer::new(
        "error",
        "Discord did not answer in time; nothing was recorded. Please try again.",
    )
}

fn store_unavailable() -> Answer {
    Answer::new(
        "error",
        "The case store is unavailable right now; please try again shortly.",
    )
}

/// The `code` of a Discord JSON error body.
fn discord_code(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("code")?
        .as_u64()
}

/// When a snowflake was made, in Unix milliseconds.
pub(crate) fn snowflake_ms(id: u64) -> u64 {
    (id >> 22) + 1_420_070_400_000
}

fn subject(case: &Case) -> String {
    match (case.target_id, case.channel_id) {
        (Some(user), _) => format!("<@{user}>"),
        (None, Some(channel)) => format!("<#{channel}>"),
        (None, None) => "-".to_owned(),
    }
}

fn case_line(case: &Case) -> String {
    let length = case
        .duration_ms
        .map(|ms| format!(" ({})", show_duration(Duration::from_millis(ms))))
        .unwrap_or_default();
    let reason = if case.reason.is_empty() {
        "no reason given"
    } else {
        &case.reason
    };
    format!(
        "#{} {}{length} <t:{}:d>: {reason}",
        case.number,
        case.action,
        case.at.0 / 1_000
    )
}

fn show_case(case: &Case) -> String {
    format!(
        "Case #{}: {} of {} by <@{}> <t:{}:f>{}.{}",
        case.number,
        case.action,
        subject(case),
        case.moderator_id,
        case.at.0 / 1_000,
        case.duration_ms
            .map(|ms| format!(" for {}", show_duration(Duration::from_millis(ms))))
            .unwrap_or_default(),
        because(&case.reason)
    )
}

/// The mod-log's embed of a case.
fn case_embed(case: &Case) -> Embed {
    let mut fields = vec![
        EmbedField {
            inline: true,
            name: "Member".to_owned(),
            value: subject(case),
        },
        EmbedField {
            inline: true,
            name: "Moderator".to_owned(),
            value: format!("<@{}>", case.moderator_id),
        },
    ];
    if let Some(ms) = case.duration_ms {
        fields.push(EmbedField {
            inline: true,
            name: "Duration".to_owned(),
            value: show_duration(Duration::from_millis(ms)),
        });
    }
    fields.push(EmbedField {
        inline: false,
        name: "Reason".to_owned(),
        value: if case.reason.is_empty() {
            "No reason given".to_owned()
        } else {
            case.reason.clone()
        },
    });
    Embed {
        author: None,
        color: Some(EMBED_COLOUR),
        description: None,
        fields,
        flags: None,
        footer: Some(EmbedFooter {
            icon_url: None,
            proxy_icon_url: None,
            text: format!("Case #{}", case.number),
        }),
        image: None,
        kind: "rich".to_owned(),
        provider: None,
        thumbnail: None,
        timestamp: twilight_model::util::Timestamp::from_secs((case.at.0 / 1_000) as i64).ok(),
        title: Some(format!("Case #{}: {}", case.number, case.action)),
        url: None,
        video: None,
    }
}
