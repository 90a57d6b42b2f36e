//! JSON builders for everything the simulator sends: gateway frames, dispatch
//! bodies and REST objects.
//!
//! Objects are complete as Discord documents them, nullable fields present as
//! `null`: twilight is lenient, other libraries are not, and the simulator
//! must not hide a client's reliance on a field Discord always sends.

use serde_json::{Value, json};
use twilight_model::gateway::Intents;
use twilight_model::guild::Permissions;

use crate::session::Wants;
use crate::snowflake::{rfc3339, unix_ms_of};
use crate::world::{Bot, Guild, World};

/// Gateway API version spoken.
pub(crate) const API_VERSION: u8 = 10;

/// Application flags: message content intent granted, and the command badge.
const APPLICATION_FLAGS: u64 = (1 << 18) | (1 << 23);

/// Every permission bit twilight knows; what an owner has.
pub(crate) fn all_permissions() -> u64 {
    Permissions::all().bits()
}

/// Close to Discord's default for @everyone in a new guild.
pub(crate) fn everyone_permissions() -> u64 {
    (Permissions::CREATE_INVITE
        | Permissions::ADD_REACTIONS
        | Permissions::STREAM
        | Permissions::VIEW_CHANNEL
        | Permissions::SEND_MESSAGES
        | Permissions::EMBED_LINKS
        | Permissions::ATTACH_FILES
        | Permissions::READ_MESSAGE_HISTORY
        | Permissions::MENTION_EVERYONE
        | Permissions::USE_EXTERNAL_EMOJIS
        | Permissions::CONNECT
        | Permissions::SPEAK
        | Permissions::USE_VAD
        | Permissions::CHANGE_NICKNAME
        | Permissions::USE_SLASH_COMMANDS
        | Permissions::SEND_MESSAGES_IN_THREADS)
        .bits()
}

fn moderator_permissions() -> u64 {
    (Permissions::KICK_MEMBERS
        | Permissions::BAN_MEMBERS
        | Permissions::MANAGE_MESSAGES
        | Permissions::MODERATE_MEMBERS
        | Permissions::MANAGE_NICKNAMES)
        .bits()
}

/// What a moderation bot is typically invited with: enough to act, not
/// administrator, so permission checks in the bot stay meaningful.
pub(crate) fn bot_permissions() -> u64 {
    everyone_permissions()
        | moderator_permissions()
        | (Permissions::MANAGE_ROLES
            | Permissions::MANAGE_GUILD
            | Permissions::MANAGE_THREADS
            | Permissions::MANAGE_CHANNELS
            | Permissions::CREATE_PUBLIC_THREADS
            | Permissions::CREATE_PRIVATE_THREADS)
            .bits()
}

// Gateway frames. The envelope is written by hand with `t`, `s` and `op`
// ahead of `d`: twilight finds them by scanning the text for the first
// `"t":`, `"s":` and `"op":`, so they must come before any nested object.

pub(crate) fn hello(heartbeat_interval_ms: u64) -> String {
    format!(r#"{{"t":null,"s":null,"op":10,"d":{{"heartbeat_interval":{heartbeat_interval_ms}}}}}"#)
}

pub(crate) fn heartbeat_ack() -> String {
    r#"{"t":null,"s":null,"op":11,"d":null}"#.to_owned()
}

/// Op 1 from the server: Discord asks for a heartbeat now.
pub(crate) fn heartbeat_request() -> String {
    r#"{"t":null,"s":null,"op":1,"d":null}"#.to_owned()
}

/// RATE_LIMITED's `d`: an op 8 refused by its rate limit.
pub(crate) fn rate_limited(retry_after_s: f64, guild_id: u64, nonce: Option<&str>) -> Value {
    let mut meta = json!({"guild_id": id(guild_id)});
    if let Some(nonce) = nonce {
        meta["nonce"] = json!(nonce);
    }
    json!({"opcode": 8, "retry_after": retry_after_s, "meta": meta})
}

pub(crate) fn reconnect() -> String {
    r#"{"t":null,"s":null,"op":7,"d":null}"#.to_owned()
}

pub(crate) fn invalid_session(resumable: bool) -> String {
    format!(r#"{{"t":null,"s":null,"op":9,"d":{resumable}}}"#)
}

/// A dispatch (op 0); `d` is already serialized JSON.
pub(crate) fn dispatch(event: &str, seq: u64, d: &str) -> String {
    format!(r#"{{"t":"{event}","s":{seq},"op":0,"d":{d}}}"#)
}

fn id(value: u64) -> Value {
    Value::String(value.to_string())
}

/// A user object as embedded in messages and members.
pub(crate) fn user(user_id: u64, username: &str, bot: bool) -> Value {
    json!({
        "id": id(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": null,
        "avatar": null,
        "avatar_decoration_data": null,
        "banner": null,
        "accent_color": null,
        "public_flags": 0,
        "flags": 0,
        "bot": bot,
        "system": false,
    })
}

/// The bot as the current user (READY's `user`, `GET /users/@me`).
pub(crate) fn current_user(bot: &Bot) -> Value {
    let mut user = user(bot.user_id, &bot.username, true);
    let extra = json!({
        "mfa_enabled": false,
        "verified": true,
        "locale": "en-US",
        "premium_type": 0,
        "email": null,
    });
    merge(&mut user, extra);
    user
}

pub(crate) fn application(bot: &Bot) -> Value {
    json!({
        "id": id(bot.application_id),
        "name": "Protonn",
        "icon": null,
        "description": "Protonn moderation and community bot (simulated)",
        "rpc_origins": [],
        "bot_public": true,
        "bot_require_code_grant": false,
        "bot": user(bot.user_id, &bot.username, true),
        "terms_of_service_url": null,
        "privacy_policy_url": null,
        "owner": user(bot.owner_id, &bot.owner_username, false),
        "verify_key": "6b1ab2c5a5f04a4c5b5f2d3f0c6c0b9d0b1c9e1f7a3c2b1a0d9e8f7a6b5c4d3e",
        "team": null,
        "guild_id": null,
        "primary_sku_id": null,
        "slug": null,
        "cover_image": null,
        "flags": APPLICATION_FLAGS,
        "approximate_guild_count": 0,
        "approximate_user_install_count": 0,
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "event_webhooks_url": null,
        "event_webhooks_status": 1,
        "tags": [],
        "install_params": {"scopes": ["bot", "applications.commands"], "permissions": bot_permissions().to_string()},
        "integration_types_config": {"0": {}},
        "custom_install_url": null,
    })
}

pub(crate) fn ready(
    world: &World,
    shard: u32,
    shards: u32,
    session_id: &str,
    resume_gateway_url: &str,
) -> Value {
    let guilds: Vec<Value> = world
        .guilds_of_layout(shard, shards)
        .into_iter()
        .map(|g| json!({"id": id(g.id), "unavailable": true}))
        .collect();
    json!({
        "v": API_VERSION,
        "user": current_user(&world.bot),
        "user_settings": {},
        "guilds": guilds,
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["rotterdam", "frankfurt"],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": resume_gateway_url,
        "shard": [shard, shards],
        "application": {"id": id(world.bot.application_id), "flags": APPLICATION_FLAGS},
        "auth": {},
        "_trace": ["[\"protonn-sim\"]"],
    })
}

pub(crate) fn resumed() -> Value {
    json!({"_trace": ["[\"protonn-sim\"]"]})
}

fn role(role_id: u64, name: &str, permissions: u64, position: i64, managed: bool) -> Value {
    json!({
        "id": id(role_id),
        "name": name,
        "description": null,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": position,
        "permissions": permissions.to_string(),
        "managed": managed,
        "mentionable": false,
        "flags": 0,
    })
}

/// A full guild member (GUILD_CREATE `members`, interaction `member`).
fn member(user: Value, roles: &[u64], joined_ms: u64) -> Value {
    json!({
        "user": user,
        "nick": null,
        "avatar": null,
        "banner": null,
        "roles": roles.iter().map(|&r| id(r)).collect::<Vec<_>>(),
        "joined_at": rfc3339(joined_ms),
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
        "avatar_decoration_data": null,
    })
}

pub(crate) fn text_channel(guild_id: u64, channel_id: u64, name: &str, position: usize) -> Value {
    json!({
        "id": id(channel_id),
        "type": 0,
        "guild_id": id(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "topic": null,
        "nsfw": false,
        "last_message_id": null,
        "last_pin_timestamp": null,
        "rate_limit_per_user": 0,
        "parent_id": null,
        "flags": 0,
    })
}

/// Discord's default `large_threshold` (IDENTIFY accepts 50..=250).
pub(crate) const DEFAULT_LARGE_THRESHOLD: u32 = 50;

fn emoji(emoji_id: u64, name: &str) -> Value {
    json!({
        "id": id(emoji_id),
        "name": name,
        "roles": [],
        "user": null,
        "require_colons": true,
        "managed": false,
        "animated": false,
        "available": true,
    })
}

/// GUILD_CREATE as the session that asked for `wants` gets it. Discord
/// sends `members` as: without GUILD_PRESENCES only the bot (and members in
/// voice, of whom the simulator has none); with it, every member of a guild
/// of at most `large_threshold` members, or only the online ones of a larger
/// (`large`) guild, with their `presences`. The simulator's online members
/// are the stored ones (owner, `members_per_guild`, the bot); the virtual
/// members of a large guild are offline.
pub(crate) fn guild_create(world: &World, guild: &Guild, wants: Wants) -> Value {
    let bot = &world.bot;
    let mut guild_object = guild_object(world, guild);
    let channels: Vec<Value> = guild
        .channels()
        .enumerate()
        .map(|(position, c)| text_channel(guild.id, c.id, &c.name, position))
        .collect();
    let member_count = guild.member_count();
    let large = member_count > wants.large_threshold;
    let roles_of = |user_id: u64| {
        if user_id == guild.owner.id {
            vec![guild.moderator_role_id]
        } else {
            Vec::new()
        }
    };
    let mut members = Vec::new();
    let mut presences = Vec::new();
    if wants.intents.contains(Intents::GUILD_PRESENCES) {
        let online = std::iter::once(&guild.owner).chain(&guild.members);
        let listed: Vec<crate::world::User> = if large {
            online.cloned().collect()
        } else {
            guild.all_members().collect()
        };
        let online_ids: Vec<u64> = std::iter::once(&guild.owner)
            .chain(&guild.members)
            .map(|u| u.id)
            .chain(std::iter::once(bot.user_id))
            .collect();
        members.extend(
            listed
                .iter()
                .map(|u| member(user(u.id, &u.username, false), &roles_of(u.id), u.joined_ms)),
        );
        presences.extend(
            online_ids
                .iter()
                .map(|&user_id| presence(user_id, "online")),
        );
    }
    members.push(member(
        user(bot.user_id, &bot.username, true),
        &[guild.bot_role_id],
        guild.bot_joined_ms,
    ));
    // The fields GUILD_CREATE adds to the REST guild object.
    let gateway_extra = json!({
        "joined_at": rfc3339(guild.bot_joined_ms),
        "large": large,
        "unavailable": false,
        "member_count": member_count,
        "voice_states": [],
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": presences,
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "embedded_activities": [],
        "lazy": true,
    });
    merge(&mut guild_object, gateway_extra);
    guild_object
}

/// A presence as GUILD_CREATE lists it (no `guild_id`: the guild holds it).
fn presence(user_id: u64, status: &str) -> Value {
    json!({
        "user": {"id": id(user_id)},
        "status": status,
        "activities": [],
        "client_status": {"desktop": status},
    })
}

/// `GET /guilds/{guild}/members/{user}`: the member as GUILD_CREATE lists it (the owner
/// holds the Moderator role, the bot its managed role), or `None` for a non-member.
pub(crate) fn guild_member(world: &World, guild: &Guild, user_id: u64) -> Option<Value> {
    let bot = &world.bot;
    if user_id == bot.user_id {
        return Some(member(
            user(bot.user_id, &bot.username, true),
            &[guild.bot_role_id],
            guild.bot_joined_ms,
        ));
    }
    let found = guild.find_member(user_id)?;
    let roles: &[u64] = if user_id == guild.owner.id {
        &[guild.moderator_role_id]
    } else {
        &[]
    };
    Some(member(
        user(found.id, &found.username, false),
        roles,
        found.joined_ms,
    ))
}

/// The bot's own role, granting `permissions`; it carries tags naming the bot, as Discord's
/// does.
pub(crate) fn bot_role(world: &World, guild: &Guild, permissions: u64) -> Value {
    let bot = &world.bot;
    let mut role = role(guild.bot_role_id, &bot.username, permissions, 2, true);
    if let Value::Object(fields) = &mut role {
        fields.insert("tags".into(), json!({"bot_id": id(bot.user_id)}));
    }
    role
}

/// The REST guild object (GUILD_UPDATE's `d`, GUILD_CREATE's base).
pub(crate) fn guild_object(world: &World, guild: &Guild) -> Value {
    let roles = vec![
        role(guild.id, "@everyone", everyone_permissions(), 0, false),
        role(
            guild.moderator_role_id,
            "Moderator",
            moderator_permissions(),
            1,
            false,
        ),
        bot_role(world, guild, bot_permissions()),
    ];
    let mut roles = roles;
    roles.extend(
        guild
            .extra_roles()
            .zip(3..)
            .map(|(r, position)| role(r.id, &r.name, everyone_permissions(), position, false)),
    );
    let emojis: Vec<Value> = guild.emojis().map(|e| emoji(e.id, &e.name)).collect();
    let guild_object = json!({
        "id": id(guild.id),
        "name": guild.name,
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": id(guild.owner.id),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "roles": roles,
        "emojis": emojis,
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": id(guild.channel_id(0)),
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500_000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw": false,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
        "incidents_data": null,
    });
    guild_object
}

/// Who wrote a message or invoked an interaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Author<'a> {
    pub(crate) id: u64,
    pub(crate) username: &'a str,
    pub(crate) joined_ms: u64,
    pub(crate) bot: bool,
}

impl<'a> Author<'a> {
    /// A guild's user, or a stranger with a made-up name when the id is not
    /// one the world generated (tests may pick any author).
    pub(crate) fn in_guild(guild: &'a Guild, user_id: u64, fallback_name: &'a str) -> Self {
        match guild.user(user_id) {
            Some(u) => Self {
                id: u.id,
                username: &u.username,
                joined_ms: u.joined_ms,
                bot: false,
            },
            None => Self {
                id: user_id,
                username: fallback_name,
                joined_ms: guild.created_ms(),
                bot: false,
            },
        }
    }
}

/// A message object. `guild_id` (with `channel_type`) and `member` are the
/// gateway's MESSAGE_CREATE extras; REST message objects have neither.
pub(crate) struct MessageSpec<'a> {
    pub(crate) message_id: u64,
    pub(crate) channel_id: u64,
    pub(crate) guild_id: Option<u64>,
    pub(crate) author: Author<'a>,
    pub(crate) member_roles: Option<&'a [u64]>,
    pub(crate) content: &'a str,
    pub(crate) embeds: Value,
    pub(crate) webhook_id: Option<u64>,
    pub(crate) application_id: Option<u64>,
}

pub(crate) fn message(spec: &MessageSpec<'_>) -> Value {
    let mut message = json!({
        "id": id(spec.message_id),
        "channel_id": id(spec.channel_id),
        "author": user(spec.author.id, spec.author.username, spec.author.bot),
        "content": spec.content,
        "timestamp": rfc3339(unix_ms_of(spec.message_id)),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": spec.embeds,
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": [],
        "nonce": null,
    });
    if let Some(guild_id) = spec.guild_id {
        merge(
            &mut message,
            json!({"guild_id": id(guild_id), "channel_type": 0}),
        );
    }
    if let Some(roles) = spec.member_roles {
        merge(
            &mut message,
            json!({"member": author_member(roles, spec.author.joined_ms)}),
        );
    }
    if let Some(webhook_id) = spec.webhook_id {
        merge(&mut message, json!({"webhook_id": id(webhook_id)}));
    }
    if let Some(application_id) = spec.application_id {
        merge(&mut message, json!({"application_id": id(application_id)}));
    }
    message
}

#[cfg(test)]
pub(crate) struct InteractionSpec<'a> {
    pub(crate) interaction_id: u64,
    pub(crate) token: &'a str,
    pub(crate) application_id: u64,
    pub(crate) guild: &'a Guild,
    pub(crate) channel_id: u64,
    pub(crate) user: Author<'a>,
    pub(crate) command_id: u64,
    pub(crate) command: &'a str,
    pub(crate) options: &'a [(&'a str, &'a str)],
}

/// A slash command's interaction `data`, its options as strings.
pub(crate) fn command_data(
    command_id: u64,
    command: &str,
    options: &[(&str, &str)],
    guild_id: u64,
) -> Value {
    let options: Vec<Value> = options
        .iter()
        .map(|(name, value)| json!({"name": name, "type": 3, "value": value}))
        .collect();
    json!({
        "id": id(command_id),
        "name": command,
        "type": 1,
        "options": options,
        "guild_id": id(guild_id),
    })
}

#[cfg(test)]
pub(crate) fn interaction_create(spec: &InteractionSpec<'_>) -> Value {
    let data = command_data(spec.command_id, spec.command, spec.options, spec.guild.id);
    let base = InteractionBase {
        interaction_id: spec.interaction_id,
        token: spec.token,
        application_id: spec.application_id,
        guild: spec.guild,
        channel_id: spec.channel_id,
        thread: None,
        user: spec.user,
    };
    interaction_object(&base, 2, data, None)
}

/// A thread an interaction happened in: its parent channel, name and privacy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadRef<'a> {
    pub(crate) parent_id: u64,
    pub(crate) name: &'a str,
    pub(crate) private: bool,
}

/// What every interaction carries besides its data: who, where, and its token.
pub(crate) struct InteractionBase<'a> {
    pub(crate) interaction_id: u64,
    pub(crate) token: &'a str,
    pub(crate) application_id: u64,
    pub(crate) guild: &'a Guild,
    pub(crate) channel_id: u64,
    /// Set when the channel is a thread.
    pub(crate) thread: Option<ThreadRef<'a>>,
    pub(crate) user: Author<'a>,
}

/// An INTERACTION_CREATE of `kind` (2 command, 3 component, 5 modal submit) with its
/// `data`, and for components the message they belong to.
pub(crate) fn interaction_object(
    base: &InteractionBase<'_>,
    kind: u8,
    data: Value,
    message: Option<Value>,
) -> Value {
    let guild = base.guild;
    let is_owner = base.user.id == guild.owner.id;
    let (roles, permissions) = if is_owner {
        (vec![guild.moderator_role_id], all_permissions())
    } else {
        (Vec::new(), everyone_permissions())
    };
    let mut member = member(
        user(base.user.id, base.user.username, false),
        &roles,
        base.user.joined_ms,
    );
    merge(&mut member, json!({"permissions": permissions.to_string()}));
    let channel = match base.thread {
        Some(thread) => json!({
            "id": id(base.channel_id),
            "type": if thread.private { 12 } else { 11 },
            "guild_id": id(guild.id),
            "parent_id": id(thread.parent_id),
            "name": thread.name,
            "nsfw": false,
            "flags": 0,
            "permissions": permissions.to_string(),
        }),
        None => {
            let name = guild
                .channel_name(base.channel_id)
                .unwrap_or(std::borrow::Cow::Borrowed("unknown"));
            json!({
                "id": id(base.channel_id),
                "type": 0,
                "guild_id": id(guild.id),
                "name": name,
                "nsfw": false,
                "flags": 0,
                "permissions": permissions.to_string(),
            })
        }
    };
    let mut interaction = json!({
        "id": id(base.interaction_id),
        "application_id": id(base.application_id),
        "type": kind,
        "data": data,
        "guild": {"id": id(guild.id), "locale": "en-US", "features": []},
        "guild_id": id(guild.id),
        "channel": channel,
        "channel_id": id(base.channel_id),
        "member": member,
        "token": base.token,
        "version": 1,
        "app_permissions": bot_permissions().to_string(),
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": id(guild.id)},
        "context": 0,
        "attachment_size_limit": 10_485_760,
    });
    if let Some(message) = message {
        merge(&mut interaction, json!({"message": message}));
    }
    interaction
}

pub(crate) fn gateway_bot(
    url: &str,
    shards: u32,
    total: u32,
    remaining: u32,
    reset_after_ms: u64,
    max_concurrency: u32,
) -> Value {
    json!({
        "url": url,
        "shards": shards,
        "session_start_limit": {
            "total": total,
            "remaining": remaining,
            "reset_after": reset_after_ms,
            "max_concurrency": max_concurrency,
        },
    })
}

// The event mix's dispatch bodies.

/// MESSAGE_UPDATE: Discord sends the whole edited message.
pub(crate) fn message_update(spec: &MessageSpec<'_>, edited_ms: u64) -> Value {
    let mut message = message(spec);
    merge(
        &mut message,
        json!({"edited_timestamp": rfc3339(edited_ms)}),
    );
    message
}

/// A MESSAGE_UPDATE from a REST message object: the gateway adds the guild id.
/// MESSAGE_UPDATE: the whole message with the fields MESSAGE_CREATE adds (the guild, the
/// author's partial member).
pub(crate) fn message_update_of(
    mut message: Value,
    guild_id: u64,
    roles: &[u64],
    joined_ms: u64,
) -> Value {
    merge(
        &mut message,
        json!({"guild_id": id(guild_id), "member": author_member(roles, joined_ms)}),
    );
    message
}

/// The author's member in a message event: partial, no `user` (it is `author`).
fn author_member(roles: &[u64], joined_ms: u64) -> Value {
    let mut member = member(Value::Null, roles, joined_ms);
    if let Value::Object(map) = &mut member {
        map.remove("user");
    }
    member
}

/// An attachment as Discord's CDN serves it (a made-up size; no content behind the URL).
pub(crate) fn attachment(attachment_id: u64, channel_id: u64, filename: &str) -> Value {
    json!({
        "id": id(attachment_id),
        "filename": filename,
        "size": 1024,
        "url": format!("https://cdn.discordapp.com/attachments/{channel_id}/{attachment_id}/{filename}"),
        "proxy_url": format!("https://media.discordapp.net/attachments/{channel_id}/{attachment_id}/{filename}"),
        "content_type": null,
    })
}

pub(crate) fn message_delete(message_id: u64, channel_id: u64, guild_id: u64) -> Value {
    json!({"id": id(message_id), "channel_id": id(channel_id), "guild_id": id(guild_id)})
}

pub(crate) fn guild_member_add(
    guild_id: u64,
    user_id: u64,
    username: &str,
    joined_ms: u64,
) -> Value {
    let mut member = member(user(user_id, username, false), &[], joined_ms);
    merge(&mut member, json!({"guild_id": id(guild_id)}));
    member
}

pub(crate) fn guild_member_remove(guild_id: u64, user_id: u64, username: &str) -> Value {
    json!({"guild_id": id(guild_id), "user": user(user_id, username, false)})
}

/// A reaction with one of the guild's emojis, or a unicode one.
pub(crate) struct ReactionSpec<'a> {
    pub(crate) guild_id: u64,
    pub(crate) channel_id: u64,
    pub(crate) message_id: u64,
    pub(crate) user: Author<'a>,
    /// `(id, name)` of a custom emoji; `None` for a unicode one.
    pub(crate) emoji: Option<(u64, &'a str)>,
}

pub(crate) fn message_reaction_add(spec: &ReactionSpec<'_>) -> Value {
    let emoji = match spec.emoji {
        Some((emoji_id, name)) => json!({"id": id(emoji_id), "name": name, "animated": false}),
        None => json!({"id": null, "name": "\u{1f44d}"}),
    };
    json!({
        "user_id": id(spec.user.id),
        "channel_id": id(spec.channel_id),
        "message_id": id(spec.message_id),
        "guild_id": id(spec.guild_id),
        "member": member(user(spec.user.id, spec.user.username, spec.user.bot), &[], spec.user.joined_ms),
        "message_author_id": null,
        "emoji": emoji,
        "burst": false,
        "burst_colors": [],
        "type": 0,
    })
}

pub(crate) fn typing_start(guild_id: u64, channel_id: u64, user: Author<'_>, unix_s: u64) -> Value {
    json!({
        "channel_id": id(channel_id),
        "guild_id": id(guild_id),
        "user_id": id(user.id),
        "timestamp": unix_s,
        "member": member(user_object(user), &[], user.joined_ms),
    })
}

fn user_object(author: Author<'_>) -> Value {
    user(author.id, author.username, author.bot)
}

pub(crate) fn presence_update(guild_id: u64, user_id: u64, status: &str) -> Value {
    json!({
        "user": {"id": id(user_id)},
        "guild_id": id(guild_id),
        "status": status,
        "activities": [],
        "client_status": {"desktop": status},
    })
}

/// GUILD_DELETE for a guild the bot was removed from (no `unavailable`:
/// Discord omits it then; `true` means an outage).
pub(crate) fn guild_delete(guild_id: u64) -> Value {
    json!({"id": id(guild_id)})
}

/// One GUILD_MEMBERS_CHUNK; `members` are `(user, roles)` of the guild.
pub(crate) struct ChunkSpec<'a> {
    pub(crate) guild_id: u64,
    pub(crate) members: &'a [(crate::world::User, Vec<u64>, bool)],
    pub(crate) chunk_index: u32,
    pub(crate) chunk_count: u32,
    pub(crate) not_found: &'a [u64],
    pub(crate) nonce: Option<&'a str>,
}

pub(crate) fn guild_members_chunk(spec: &ChunkSpec<'_>) -> Value {
    let members: Vec<Value> = spec
        .members
        .iter()
        .map(|(u, roles, bot)| member(user(u.id, &u.username, *bot), roles, u.joined_ms))
        .collect();
    let mut chunk = json!({
        "guild_id": id(spec.guild_id),
        "members": members,
        "chunk_index": spec.chunk_index,
        "chunk_count": spec.chunk_count,
        "not_found": spec.not_found.iter().map(|&u| id(u)).collect::<Vec<_>>(),
    });
    if let Some(nonce) = spec.nonce {
        merge(&mut chunk, json!({"nonce": nonce}));
    }
    chunk
}

/// Adds `extra`'s fields to the object `base`.
fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(base), Value::Object(extra)) = (base, extra) {
        base.extend(extra);
    }
}

#[cfg(test)]
mod tests;
