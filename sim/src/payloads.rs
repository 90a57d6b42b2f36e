//! JSON builders for everything the simulator sends: gateway frames, dispatch
//! bodies and REST objects.
//!
//! Objects are complete as Discord documents them, nullable fields present as
//! `null`: twilight is lenient, other libraries are not, and the simulator
//! must not hide a client's reliance on a field Discord always sends.

use serde_json::{Value, json};
use twilight_model::guild::Permissions;

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
        | (Permissions::MANAGE_ROLES | Permissions::MANAGE_THREADS).bits()
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
        .guilds_of_shard(shard)
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

fn text_channel(guild_id: u64, channel_id: u64, name: &str, position: usize) -> Value {
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

/// Discord's default `large_threshold`: above it GUILD_CREATE would omit
/// offline members.
const LARGE_THRESHOLD: usize = 250;

pub(crate) fn guild_create(world: &World, guild: &Guild) -> Value {
    let bot = &world.bot;
    let roles = vec![
        role(guild.id, "@everyone", everyone_permissions(), 0, false),
        role(
            guild.moderator_role_id,
            "Moderator",
            moderator_permissions(),
            1,
            false,
        ),
        role(guild.bot_role_id, &bot.username, bot_permissions(), 2, true),
    ];
    // The bot's own role carries tags naming it, as Discord does.
    let mut roles = roles;
    if let Some(Value::Object(bot_role)) = roles.get_mut(2) {
        bot_role.insert("tags".into(), json!({"bot_id": id(bot.user_id)}));
    }
    let channels: Vec<Value> = guild
        .channels
        .iter()
        .enumerate()
        .map(|(position, c)| text_channel(guild.id, c.id, &c.name, position))
        .collect();
    let mut members = Vec::with_capacity(guild.members.len() + 2);
    members.push(member(
        user(guild.owner.id, &guild.owner.username, false),
        &[guild.moderator_role_id],
        guild.owner.joined_ms,
    ));
    members.extend(
        guild
            .members
            .iter()
            .map(|u| member(user(u.id, &u.username, false), &[], u.joined_ms)),
    );
    members.push(member(
        user(bot.user_id, &bot.username, true),
        &[guild.bot_role_id],
        guild.bot_joined_ms,
    ));
    let member_count = members.len();
    let mut guild_object = json!({
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
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": guild.channels.first().map(|c| id(c.id)),
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
    // The fields GUILD_CREATE adds to the REST guild object.
    let gateway_extra = json!({
        "joined_at": rfc3339(guild.bot_joined_ms),
        "large": member_count > LARGE_THRESHOLD,
        "unavailable": false,
        "member_count": member_count,
        "voice_states": [],
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "embedded_activities": [],
        "lazy": true,
    });
    merge(&mut guild_object, gateway_extra);
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
        // MESSAGE_CREATE's member is partial: no `user` (it is `author`).
        let mut member = member(Value::Null, roles, spec.author.joined_ms);
        if let Value::Object(map) = &mut member {
            map.remove("user");
        }
        merge(&mut message, json!({"member": member}));
    }
    if let Some(webhook_id) = spec.webhook_id {
        merge(&mut message, json!({"webhook_id": id(webhook_id)}));
    }
    if let Some(application_id) = spec.application_id {
        merge(&mut message, json!({"application_id": id(application_id)}));
    }
    message
}

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

pub(crate) fn interaction_create(spec: &InteractionSpec<'_>) -> Value {
    let guild = spec.guild;
    let is_owner = spec.user.id == guild.owner.id;
    let (roles, permissions) = if is_owner {
        (vec![guild.moderator_role_id], all_permissions())
    } else {
        (Vec::new(), everyone_permissions())
    };
    let mut member = member(
        user(spec.user.id, spec.user.username, false),
        &roles,
        spec.user.joined_ms,
    );
    merge(&mut member, json!({"permissions": permissions.to_string()}));
    let channel_name = guild
        .channels
        .iter()
        .find(|c| c.id == spec.channel_id)
        .map_or("unknown", |c| c.name.as_str());
    let options: Vec<Value> = spec
        .options
        .iter()
        .map(|(name, value)| json!({"name": name, "type": 3, "value": value}))
        .collect();
    json!({
        "id": id(spec.interaction_id),
        "application_id": id(spec.application_id),
        "type": 2,
        "data": {
            "id": id(spec.command_id),
            "name": spec.command,
            "type": 1,
            "options": options,
            "guild_id": id(guild.id),
        },
        "guild": {"id": id(guild.id), "locale": "en-US", "features": []},
        "guild_id": id(guild.id),
        "channel": {
            "id": id(spec.channel_id),
            "type": 0,
            "guild_id": id(guild.id),
            "name": channel_name,
            "nsfw": false,
            "flags": 0,
            "permissions": permissions.to_string(),
        },
        "channel_id": id(spec.channel_id),
        "member": member,
        "token": spec.token,
        "version": 1,
        "app_permissions": bot_permissions().to_string(),
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": id(guild.id)},
        "context": 0,
        "attachment_size_limit": 10_485_760,
    })
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

/// Adds `extra`'s fields to the object `base`.
fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(base), Value::Object(extra)) = (base, extra) {
        base.extend(extra);
    }
}

#[cfg(test)]
mod tests;
