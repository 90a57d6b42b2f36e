//! The moderation side of the REST API: bans, member edits (timeouts), kicks, message
//! deletion (single and bulk) and DM channels, validated as Discord does and answering 403
//! `50013 Missing Permissions` when the bot lacks a permission, computed (for the bot and
//! for members) from the world's roles and the overwrites set at run time (channel edits and
//! overwrites are `channels`'s routes; their state is kept here). Each change sends the gateway events Discord sends (to the sessions whose intents
//! ask for them), so they are in the ledger with the REST calls.
//!
//! The world is generated and immutable; what moderation changes lives here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use serde_json::{Value, json};
use twilight_model::gateway::Intents;
use twilight_model::guild::Permissions;

use crate::payloads;
use crate::rest::{JsonReply, Outcome, RequestBody, json_error, json_response};
use crate::session::Event;
use crate::snowflake::unix_ms_of;
use crate::state::Shared;
use crate::world::Guild;

/// Messages kept per channel for `GET /channels/{id}/messages` (Discord returns at most 100).
const KEPT_PER_CHANNEL: usize = 200;
/// Messages kept per thread: a support thread's whole history is read page by page.
const KEPT_PER_THREAD: usize = 20_000;
/// Discord's `limit` of `GET /channels/{id}/messages`: 1 to 100, 50 by default.
const MESSAGES_LIMIT_MAX: usize = 100;
const MESSAGES_LIMIT_DEFAULT: usize = 50;
/// Discord's longest timeout and message-deletion window of a ban.
const TIMEOUT_MAX_MS: u64 = 28 * 86_400_000;
const BAN_DELETE_MAX_SECS: u64 = 7 * 86_400;
/// Bulk delete takes messages younger than this.
const BULK_DELETE_MAX_AGE_MS: u64 = 14 * 86_400_000;

/// What moderation changed in the world.
#[derive(Default)]
pub(crate) struct ModerationState {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (guild, user) → the ban's reason.
    bans: HashMap<(u64, u64), Option<String>>,
    /// Members kicked or banned: no longer members.
    departed: HashSet<(u64, u64)>,
    /// (guild, user) → `communication_disabled_until`.
    timeouts: HashMap<(u64, u64), String>,
    /// channel → rate_limit_per_user.
    slowmode: HashMap<u64, u64>,
    /// channel → its permission overwrites (Discord's JSON objects).
    overwrites: HashMap<u64, Vec<Value>>,
    /// channel → its latest messages, oldest first.
    messages: HashMap<u64, VecDeque<Stored>>,
    /// user → their DM channel with the bot.
    dm_channels: HashMap<u64, u64>,
    /// Channels (threads) that keep [`KEPT_PER_THREAD`] messages.
    long_channels: HashSet<u64>,
    /// guild → permissions taken from the bot there at run time (an admin editing its role).
    revoked: HashMap<u64, Permissions>,
}

#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) id: u64,
    pub(crate) author_id: u64,
    pub(crate) username: String,
    pub(crate) bot: bool,
    pub(crate) content: String,
    /// The message's action rows (a JSON array), `Null` without any.
    pub(crate) components: Value,
    /// Attachment objects.
    pub(crate) attachments: Vec<Value>,
    /// When it was last edited (Unix ms).
    pub(crate) edited_ms: Option<u64>,
}

impl ModerationState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a message with everything it carries.
    pub(crate) fn keep(&self, channel_id: u64, message: Stored) {
        let mut inner = self.lock();
        let bound = if inner.long_channels.contains(&channel_id) {
            KEPT_PER_THREAD
        } else {
            KEPT_PER_CHANNEL
        };
        let kept = inner.messages.entry(channel_id).or_default();
        kept.push_back(message);
        while kept.len() > bound {
            kept.pop_front();
        }
    }

    /// Every kept message of a channel, oldest first.
    pub(crate) fn messages_of(&self, channel_id: u64) -> Vec<Stored> {
        self.lock()
            .messages
            .get(&channel_id)
            .map(|kept| kept.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes a channel (a thread) keep its long history.
    pub(crate) fn keep_long(&self, channel_id: u64) {
        self.lock().long_channels.insert(channel_id);
    }

    /// A kept message of a channel.
    pub(crate) fn message(&self, channel_id: u64, message_id: u64) -> Option<Stored> {
        self.lock()
            .messages
            .get(&channel_id)?
            .iter()
            .find(|m| m.id == message_id)
            .cloned()
    }

    /// Changes a kept message in place; `false` if there is none.
    pub(crate) fn edit(
        &self,
        channel_id: u64,
        message_id: u64,
        change: impl FnOnce(&mut Stored),
    ) -> bool {
        let mut inner = self.lock();
        let Some(message) = inner
            .messages
            .get_mut(&channel_id)
            .and_then(|kept| kept.iter_mut().find(|m| m.id == message_id))
        else {
            return false;
        };
        change(message);
        true
    }

    /// Forgets a kept message; `false` if there was none.
    pub(crate) fn forget(&self, channel_id: u64, message_id: u64) -> bool {
        let mut inner = self.lock();
        let Some(kept) = inner.messages.get_mut(&channel_id) else {
            return false;
        };
        let before = kept.len();
        kept.retain(|m| m.id != message_id);
        kept.len() != before
    }

    /// Whether the user left the guild by a kick or a ban.
    pub(crate) fn departed(&self, guild_id: u64, user_id: u64) -> bool {
        self.lock().departed.contains(&(guild_id, user_id))
    }

    /// Takes `permissions` from the bot in a guild: its REST calls there are refused as
    /// Discord refuses them (the roles the gateway shows do not change).
    pub(crate) fn revoke_bot_permissions(&self, guild_id: u64, permissions: Permissions) {
        *self
            .lock()
            .revoked
            .entry(guild_id)
            .or_insert_with(Permissions::empty) |= permissions;
    }

    fn revoked(&self, guild_id: u64) -> Permissions {
        self.lock()
            .revoked
            .get(&guild_id)
            .copied()
            .unwrap_or_else(Permissions::empty)
    }

    pub(crate) fn is_dm_channel(&self, channel_id: u64) -> bool {
        self.lock().dm_channels.values().any(|&c| c == channel_id)
    }

    /// The DM channel the bot opened with `user_id`, if it did.
    pub(crate) fn dm_channel_of(&self, user_id: u64) -> Option<u64> {
        self.lock().dm_channels.get(&user_id).copied()
    }

    /// The DM channel with `user_id`: the one opened already, else `fresh`.
    pub(crate) fn open_dm(&self, user_id: u64, fresh: u64) -> u64 {
        *self.lock().dm_channels.entry(user_id).or_insert(fresh)
    }

    pub(crate) fn banned(&self, guild_id: u64) -> Vec<u64> {
        let mut users: Vec<u64> = self
            .lock()
            .bans
            .keys()
            .filter(|(guild, _)| *guild == guild_id)
            .map(|(_, user)| *user)
            .collect();
        users.sort_unstable();
        users
    }

    pub(crate) fn timeout_of(&self, guild_id: u64, user_id: u64) -> Option<String> {
        self.lock().timeouts.get(&(guild_id, user_id)).cloned()
    }

    pub(crate) fn slowmode_of(&self, channel_id: u64) -> u64 {
        self.lock().slowmode.get(&channel_id).copied().unwrap_or(0)
    }

    pub(crate) fn overwrites_of(&self, channel_id: u64) -> Vec<Value> {
        self.lock()
            .overwrites
            .get(&channel_id)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn set_slowmode(&self, channel_id: u64, secs: u64) {
        self.lock().slowmode.insert(channel_id, secs);
    }

    /// Sets the overwrite of its `id` in a channel, replacing the one it had.
    pub(crate) fn put_overwrite(&self, channel_id: u64, overwrite: Value) {
        let mut inner = self.lock();
        let list = inner.overwrites.entry(channel_id).or_default();
        list.retain(|o| o.get("id") != overwrite.get("id"));
        list.push(overwrite);
    }

    /// Replaces every overwrite of a channel.
    pub(crate) fn set_overwrites(&self, channel_id: u64, overwrites: Vec<Value>) {
        self.lock().overwrites.insert(channel_id, overwrites);
    }

    /// Removes the overwrite of `target`; `false` if the channel had none for it.
    pub(crate) fn remove_overwrite(&self, channel_id: u64, target: u64) -> bool {
        let target = Value::String(target.to_string());
        let mut inner = self.lock();
        let Some(list) = inner.overwrites.get_mut(&channel_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|o| o.get("id") != Some(&target));
        list.len() != before
    }

    /// Forgets everything kept of a deleted channel.
    pub(crate) fn forget_channel(&self, channel_id: u64) {
        let mut inner = self.lock();
        inner.overwrites.remove(&channel_id);
        inner.messages.remove(&channel_id);
        inner.slowmode.remove(&channel_id);
        inner.long_channels.remove(&channel_id);
    }

    pub(crate) fn message_exists(&self, channel_id: u64, message_id: u64) -> bool {
        self.lock()
            .messages
            .get(&channel_id)
            .is_some_and(|kept| kept.iter().any(|m| m.id == message_id))
    }
}

/// An admin edits the bot's role to grant `permissions` (of those it was invited with;
/// @everyone's stay): Discord refuses what the bot then lacks (50013) and sends
/// GUILD_ROLE_UPDATE, so the bot's view changes too. A later GUILD_CREATE (a new session)
/// shows the role as invited again.
pub(crate) fn edit_bot_role(shared: &Shared, guild: &Guild, permissions: Permissions) {
    let invited = Permissions::from_bits_truncate(payloads::bot_permissions());
    shared
        .moderation
        .lock()
        .revoked
        .insert(guild.id, invited - permissions);
    let role = payloads::bot_role(&shared.world, guild, (invited & permissions).bits());
    let d = json!({"guild_id": guild.id.to_string(), "role": role});
    emit(
        shared,
        guild,
        "GUILD_ROLE_UPDATE",
        Intents::GUILDS,
        None,
        &d,
    );
}

/// The bot's permissions in the guild, or in one of its channels with the overwrites of
/// @everyone, the bot's role and the bot applied in Discord's order.
pub(crate) fn bot_permissions(
    shared: &Shared,
    guild: &Guild,
    channel_id: Option<u64>,
) -> Permissions {
    let base = Permissions::from_bits_truncate(
        payloads::everyone_permissions() | payloads::bot_permissions(),
    ) - shared.moderation.revoked(guild.id);
    let roles = [guild.bot_role_id];
    in_channel(
        shared,
        guild,
        base,
        &roles,
        shared.world.bot.user_id,
        channel_id,
    )
}

/// A member's permissions (not the bot's) in the guild, or in one of its channels with its
/// overwrites applied: what decides whether they see a channel and may post in it. The owner
/// holds every permission.
pub(crate) fn member_permissions(
    shared: &Shared,
    guild: &Guild,
    user: u64,
    channel_id: Option<u64>,
) -> Permissions {
    if user == guild.owner.id {
        return Permissions::all();
    }
    let roles = guild.roles_of(user);
    let base = Permissions::from_bits_truncate(payloads::everyone_permissions());
    in_channel(shared, guild, base, &roles, user, channel_id)
}

/// `base` (the guild-wide permissions of a holder of `roles`) in a channel, as Discord
/// computes them: Administrator grants all; then the overwrites of @everyone, of the roles
/// together, and of the user; without View Channel nothing else counts.
fn in_channel(
    shared: &Shared,
    guild: &Guild,
    base: Permissions,
    roles: &[u64],
    user: u64,
    channel_id: Option<u64>,
) -> Permissions {
    let mut allowed = base;
    if allowed.contains(Permissions::ADMINISTRATOR) {
        return Permissions::all();
    }
    let Some(channel_id) = channel_id else {
        return allowed;
    };
    // A thread has no overwrites of its own: its parent's apply.
    let channel_id = shared.threads.parent_of(channel_id).unwrap_or(channel_id);
    let overwrites = shared.moderation.overwrites_of(channel_id);
    let bits = |o: &Value, key: &str| {
        Permissions::from_bits_truncate(
            o.get(key)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        )
    };
    let target = |o: &Value| {
        let id = o
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok());
        (id, o.get("type").and_then(Value::as_u64))
    };
    let everyone = overwrites
        .iter()
        .find(|o| target(o) == (Some(guild.id), Some(0)));
    if let Some(o) = everyone {
        allowed = (allowed - bits(o, "deny")) | bits(o, "allow");
    }
    let (mut role_allow, mut role_deny) = (Permissions::empty(), Permissions::empty());
    for o in &overwrites {
        if let (Some(id), Some(0)) = target(o)
            && id != guild.id
            && roles.contains(&id)
        {
            role_allow |= bits(o, "allow");
            role_deny |= bits(o, "deny");
        }
    }
    allowed = (allowed - role_deny) | role_allow;
    if let Some(o) = overwrites
        .iter()
        .find(|o| target(o) == (Some(user), Some(1)))
    {
        allowed = (allowed - bits(o, "deny")) | bits(o, "allow");
    }
    if !allowed.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::empty();
    }
    allowed
}

pub(crate) fn missing_permissions() -> Outcome {
    Outcome::new(
        "",
        json_error(StatusCode::FORBIDDEN, "Missing Permissions", 50013),
    )
}

pub(crate) fn invalid(field: &str, code: &str, message: &str) -> Outcome {
    let reply = JsonReply {
        status: StatusCode::BAD_REQUEST,
        body: json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field: {"_errors": [{"code": code, "message": message}]}},
        }),
    };
    Outcome::new("", axum::response::IntoResponse::into_response(reply))
}

pub(crate) fn no_content() -> Outcome {
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Outcome::new("", response)
}

pub(crate) fn not_found(message: &str, code: u32) -> Outcome {
    Outcome::new("", json_error(StatusCode::NOT_FOUND, message, code))
}

/// The guild of a `/guilds/{id}/…` path while the bot is in it, and the user of its
/// fourth segment.
fn guild_and_user<'a>(
    shared: &'a Shared,
    segments: &[&str],
) -> Result<(&'a Guild, u64), Box<Outcome>> {
    let guild = segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| shared.world.guild(id))
        .filter(|guild| !shared.world.is_removed(guild))
        .ok_or_else(|| Box::new(not_found("Unknown Guild", 10004)))?;
    let user = segments
        .get(3)
        .and_then(|id| id.parse::<u64>().ok())
        .ok_or_else(|| Box::new(not_found("Unknown User", 10013)))?;
    Ok((guild, user))
}

/// The guild and user of a `/guilds/{guild}/bans/{user}` route, once the bot may ban there.
fn ban_route<'a>(shared: &'a Shared, segments: &[&str]) -> Result<(&'a Guild, u64), Box<Outcome>> {
    let (guild, user) = guild_and_user(shared, segments)?;
    if !bot_permissions(shared, guild, None).contains(Permissions::BAN_MEMBERS) {
        return Err(Box::new(missing_permissions()));
    }
    Ok((guild, user))
}

/// The guild channel (or thread) of a `/channels/{id}/…` path.
pub(crate) fn channel<'a>(
    shared: &'a Shared,
    segments: &[&str],
) -> Result<(&'a Guild, u64), Box<Outcome>> {
    segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| shared.guild_of_channel(id).map(|guild| (guild, id)))
        .filter(|(guild, _)| !shared.world.is_removed(guild))
        .ok_or_else(|| Box::new(not_found("Unknown Channel", 10003)))
}

/// Whether `user` is a member now (generated, not kicked or banned).
pub(crate) fn is_member(shared: &Shared, guild: &Guild, user: u64) -> bool {
    guild.find_member(user).is_some() && !shared.moderation.departed(guild.id, user)
}

/// Discord's hierarchy for the bot acting on a member: never the owner, and only below
/// the bot's highest role (in the generated world only the owner holds a role above
/// @everyone, and it ranks below the bot's).
fn outranks(guild: &Guild, user: u64) -> bool {
    user != guild.owner.id
}

/// Sends an event of `guild` to the sessions whose intents include `intent`.
pub(crate) fn emit(
    shared: &Shared,
    guild: &Guild,
    name: &'static str,
    intent: Intents,
    entity: Option<u64>,
    d: &Value,
) {
    let d = d.to_string();
    shared
        .sessions
        .dispatch_with(guild.shard, Some(guild.id), |wants| {
            wants.intents.contains(intent).then(|| Event {
                name,
                guild_id: Some(guild.id),
                entity_id: entity,
                d: d.clone(),
            })
        });
}

pub(crate) fn body_object(body: &RequestBody) -> Option<&serde_json::Map<String, Value>> {
    match body {
        RequestBody::Json(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The body as a JSON object, or Discord's refusal of anything else.
pub(crate) fn json_object(
    body: &RequestBody,
) -> Result<&serde_json::Map<String, Value>, Box<Outcome>> {
    body_object(body).ok_or_else(|| {
        Box::new(invalid(
            "_root",
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        ))
    })
}

fn user_json(guild: &Guild, user: u64) -> Value {
    let name = guild
        .find_member(user)
        .map_or_else(|| format!("user{user}"), |u| u.username);
    payloads::user(user, &name, false)
}

/// `PUT /guilds/{guild}/bans/{user}`: bans (a member leaves the guild), optionally deleting
/// their messages of the last `delete_message_seconds` (at most 7 days).
pub(crate) fn create_ban(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let (guild, user) = match ban_route(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if !outranks(guild, user) {
        return missing_permissions();
    }
    let window = body_object(body)
        .and_then(|map| map.get("delete_message_seconds"))
        .map(|v| v.as_u64().filter(|&s| s <= BAN_DELETE_MAX_SECS));
    if let Some(None) = window {
        return invalid(
            "delete_message_seconds",
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 604800.",
        );
    }
    let member = is_member(shared, guild, user);
    {
        let mut inner = shared.moderation.lock();
        inner.bans.insert((guild.id, user), None);
        inner.departed.insert((guild.id, user));
    }
    let data = json!({"guild_id": guild.id.to_string(), "user": user_json(guild, user)});
    emit(
        shared,
        guild,
        "GUILD_BAN_ADD",
        Intents::GUILD_MODERATION,
        Some(user),
        &data,
    );
    if member {
        emit(
            shared,
            guild,
            "GUILD_MEMBER_REMOVE",
            Intents::GUILD_MEMBERS,
            Some(user),
            &data,
        );
    }
    no_content()
}

/// `DELETE /guilds/{guild}/bans/{user}`: lifts a ban; 404 `10026 Unknown Ban` if none.
pub(crate) fn delete_ban(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, user) = match ban_route(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if shared
        .moderation
        .lock()
        .bans
        .remove(&(guild.id, user))
        .is_none()
    {
        return not_found("Unknown Ban", 10026);
    }
    let data = json!({"guild_id": guild.id.to_string(), "user": user_json(guild, user)});
    emit(
        shared,
        guild,
        "GUILD_BAN_REMOVE",
        Intents::GUILD_MODERATION,
        Some(user),
        &data,
    );
    no_content()
}

/// `GET /guilds/{guild}/bans/{user}`.
pub(crate) fn get_ban(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, user) = match ban_route(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    match shared.moderation.lock().bans.get(&(guild.id, user)) {
        Some(reason) => Outcome::new(
            "",
            json_response(
                StatusCode::OK,
                &json!({"reason": reason, "user": user_json(guild, user)}),
            ),
        ),
        None => not_found("Unknown Ban", 10026),
    }
}

/// `PATCH /guilds/{guild}/members/{user}`: the timeout (`communication_disabled_until`, at
/// most 28 days ahead, `null` to lift it); other fields are not simulated.
pub(crate) fn update_member(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let (guild, user) = match guild_and_user(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if !is_member(shared, guild, user) {
        return not_found("Unknown Member", 10007);
    }
    let Some(until) = body_object(body).and_then(|map| map.get("communication_disabled_until"))
    else {
        return invalid(
            "_root",
            "DICT_TYPE_CONVERT",
            "communication_disabled_until is required here",
        );
    };
    if !bot_permissions(shared, guild, None).contains(Permissions::MODERATE_MEMBERS)
        || !outranks(guild, user)
    {
        return missing_permissions();
    }
    let until = match until {
        Value::Null => None,
        Value::String(text) => {
            let Ok(at) = twilight_model::util::Timestamp::parse(text) else {
                return invalid(
                    "communication_disabled_until",
                    "DATE_TIME_TYPE_PARSE",
                    "Could not parse the date.",
                );
            };
            let at_ms = u64::try_from(at.as_micros() / 1_000).unwrap_or(0);
            let now_ms = crate::snowflake::now_unix_ms();
            if at_ms > now_ms + TIMEOUT_MAX_MS {
                return invalid(
                    "communication_disabled_until",
                    "COMMUNICATION_DISABLED_UNTIL_TOO_LONG",
                    "Cannot time out a member for more than 28 days.",
                );
            }
            Some(text.clone())
        }
        _ => {
            return invalid(
                "communication_disabled_until",
                "DATE_TIME_TYPE_PARSE",
                "Could not parse the date.",
            );
        }
    };
    let member = time_out(shared, guild, user, until);
    Outcome::new("", json_response(StatusCode::OK, &member))
}

/// Sets (or with `None` lifts) a member's timeout and sends GUILD_MEMBER_UPDATE; the member
/// object.
pub(crate) fn time_out(shared: &Shared, guild: &Guild, user: u64, until: Option<String>) -> Value {
    {
        let mut inner = shared.moderation.lock();
        match &until {
            Some(until) => inner.timeouts.insert((guild.id, user), until.clone()),
            None => inner.timeouts.remove(&(guild.id, user)),
        };
    }
    let mut member = payloads::guild_member(&shared.world, guild, user).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut member {
        map.insert(
            "communication_disabled_until".into(),
            until.map_or(Value::Null, Value::String),
        );
        map.insert("guild_id".into(), json!(guild.id.to_string()));
    }
    emit(
        shared,
        guild,
        "GUILD_MEMBER_UPDATE",
        Intents::GUILD_MEMBERS,
        Some(user),
        &member,
    );
    member
}

/// `DELETE /guilds/{guild}/members/{user}`: a kick.
pub(crate) fn remove_member(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, user) = match guild_and_user(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if !is_member(shared, guild, user) {
        return not_found("Unknown Member", 10007);
    }
    if !bot_permissions(shared, guild, None).contains(Permissions::KICK_MEMBERS)
        || !outranks(guild, user)
    {
        return missing_permissions();
    }
    shared.moderation.lock().departed.insert((guild.id, user));
    let data = json!({"guild_id": guild.id.to_string(), "user": user_json(guild, user)});
    emit(
        shared,
        guild,
        "GUILD_MEMBER_REMOVE",
        Intents::GUILD_MEMBERS,
        Some(user),
        &data,
    );
    no_content()
}

/// A kept message as the REST API shows it (no guild id, as REST message objects have none).
pub(crate) fn message_json(guild: &Guild, channel_id: u64, m: &Stored) -> Value {
    stored_message_json(guild.bot_joined_ms, channel_id, m)
}

/// A kept message as Discord returns it; `joined_ms` is when its author joined the guild (0
/// in a DM).
fn stored_message_json(joined_ms: u64, channel_id: u64, m: &Stored) -> Value {
    let mut message = payloads::message(&payloads::MessageSpec {
        message_id: m.id,
        channel_id,
        guild_id: None,
        author: payloads::Author {
            id: m.author_id,
            username: &m.username,
            joined_ms,
            bot: m.bot,
        },
        member_roles: None,
        content: &m.content,
        embeds: Value::Array(Vec::new()),
        webhook_id: None,
        application_id: None,
    });
    if let Value::Object(map) = &mut message {
        if !m.components.is_null() {
            map.insert("components".into(), m.components.clone());
        }
        map.insert("attachments".into(), Value::Array(m.attachments.clone()));
        if let Some(edited) = m.edited_ms {
            map.insert(
                "edited_timestamp".into(),
                json!(crate::snowflake::rfc3339(edited)),
            );
        }
    }
    message
}

/// Which page of a channel's messages: Discord's `before`, `after` and `around` (one at
/// most) and `limit`.
#[derive(Debug, PartialEq, Eq)]
enum Page {
    Latest,
    Before(u64),
    After(u64),
    Around(u64),
}

/// Reads `GET /channels/{id}/messages`'s query as Discord validates it.
fn messages_query(query: Option<&str>) -> Result<(Page, usize), Box<Outcome>> {
    let mut page = Page::Latest;
    let mut limit = MESSAGES_LIMIT_DEFAULT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let snowflake = || {
            value.parse::<u64>().map_err(|_| {
                Box::new(invalid(
                    key,
                    "NUMBER_TYPE_COERCE",
                    &format!("Value \"{value}\" is not snowflake."),
                ))
            })
        };
        let anchor = match key {
            "limit" => {
                let Ok(n) = value.parse::<i64>() else {
                    return Err(Box::new(invalid(
                        "limit",
                        "NUMBER_TYPE_COERCE",
                        &format!("Value \"{value}\" is not int."),
                    )));
                };
                if n < 1 {
                    return Err(Box::new(invalid(
                        "limit",
                        "NUMBER_TYPE_MIN",
                        "int value should be greater than or equal to 1.",
                    )));
                }
                if n > MESSAGES_LIMIT_MAX as i64 {
                    return Err(Box::new(invalid(
                        "limit",
                        "NUMBER_TYPE_MAX",
                        "int value should be less than or equal to 100.",
                    )));
                }
                limit = n as usize;
                continue;
            }
            "before" => Page::Before(snowflake()?),
            "after" => Page::After(snowflake()?),
            "around" => Page::Around(snowflake()?),
            // Discord ignores parameters it does not know.
            _ => continue,
        };
        if page != Page::Latest {
            return Err(Box::new(invalid(
                "_root",
                "BASE_TYPE_CHOICES",
                "before, after and around are mutually exclusive.",
            )));
        }
        page = anchor;
    }
    Ok((page, limit))
}

/// The page of `kept` (oldest first) Discord answers, newest first: the newest `limit`, the
/// `limit` just before or around an id, or the `limit` just after one.
fn page_of(kept: &VecDeque<Stored>, page: &Page, limit: usize) -> Vec<Stored> {
    let newest_first = |range: std::ops::Range<usize>| -> Vec<Stored> {
        kept.range(range).rev().cloned().collect()
    };
    let len = kept.len();
    // Ids are snowflakes, so position is order.
    let first_not_before = |id: u64| kept.partition_point(|m| m.id < id);
    let first_after = |id: u64| kept.partition_point(|m| m.id <= id);
    match *page {
        Page::Latest => newest_first(len.saturating_sub(limit)..len),
        Page::Before(id) => {
            let end = first_not_before(id);
            newest_first(end.saturating_sub(limit)..end)
        }
        Page::After(id) => {
            let start = first_after(id);
            newest_first(start..(start + limit).min(len))
        }
        Page::Around(id) => {
            let middle = first_not_before(id);
            let start = middle.saturating_sub(limit / 2);
            newest_first(start..(start + limit).min(len))
        }
    }
}

/// `GET /channels/{channel}/messages?before|after|around=&limit=`: a page of at most 100,
/// newest first (also in threads, where the bot must see the thread).
pub(crate) fn channel_messages(shared: &Shared, segments: &[&str], query: Option<&str>) -> Outcome {
    let dm = segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|&id| shared.moderation.is_dm_channel(id));
    if let Some(channel_id) = dm {
        // A DM the bot opened: its own messages there, with no permission to check.
        let (page, limit) = match messages_query(query) {
            Ok(found) => found,
            Err(outcome) => return *outcome,
        };
        let messages: Vec<Value> = shared
            .moderation
            .lock()
            .messages
            .get(&channel_id)
            .map(|kept| page_of(kept, &page, limit))
            .unwrap_or_default()
            .iter()
            .map(|m| stored_message_json(0, channel_id, m))
            .collect();
        return Outcome::new("", json_response(StatusCode::OK, &Value::Array(messages)));
    }
    let (guild, channel_id) = match channel(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let (page, limit) = match messages_query(query) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let needs = Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY;
    if !bot_permissions(shared, guild, Some(channel_id)).contains(needs) {
        return missing_permissions();
    }
    let kept: Vec<Stored> = shared
        .moderation
        .lock()
        .messages
        .get(&channel_id)
        .map(|kept| page_of(kept, &page, limit))
        .unwrap_or_default();
    let messages: Vec<Value> = kept
        .iter()
        .map(|m| message_json(guild, channel_id, m))
        .collect();
    Outcome::new("", json_response(StatusCode::OK, &Value::Array(messages)))
}

/// `DELETE /channels/{channel}/messages/{message}`: another's message needs Manage Messages.
pub(crate) fn delete_message(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, channel_id) = match channel(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let Some(message_id) = segments.get(3).and_then(|id| id.parse::<u64>().ok()) else {
        return not_found("Unknown Message", 10008);
    };
    // Read before taking the lock: the permission check takes it to read the overwrites.
    let may_manage =
        bot_permissions(shared, guild, Some(channel_id)).contains(Permissions::MANAGE_MESSAGES);
    let mut inner = shared.moderation.lock();
    let Some(kept) = inner.messages.get_mut(&channel_id) else {
        return not_found("Unknown Message", 10008);
    };
    let Some(index) = kept.iter().position(|m| m.id == message_id) else {
        return not_found("Unknown Message", 10008);
    };
    let own = kept[index].author_id == shared.world.bot.user_id;
    if !own && !may_manage {
        return missing_permissions();
    }
    kept.remove(index);
    drop(inner);
    let data = json!({"id": message_id.to_string(), "channel_id": channel_id.to_string(), "guild_id": guild.id.to_string()});
    emit(
        shared,
        guild,
        "MESSAGE_DELETE",
        Intents::GUILD_MESSAGES,
        Some(message_id),
        &data,
    );
    no_content()
}

/// `POST /channels/{channel}/messages/bulk-delete`: 2 to 100 ids, none older than 14 days.
pub(crate) fn bulk_delete(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let (guild, channel_id) = match channel(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let ids: Option<Vec<u64>> = body_object(body)
        .and_then(|map| map.get("messages"))
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| {
                    id.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| id.as_u64())
                })
                .collect()
        });
    let Some(ids) = ids.filter(|ids: &Vec<u64>| (2..=100).contains(&ids.len())) else {
        return invalid(
            "messages",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 2 and 100 in length.",
        );
    };
    if !bot_permissions(shared, guild, Some(channel_id)).contains(Permissions::MANAGE_MESSAGES) {
        return missing_permissions();
    }
    let now = crate::snowflake::now_unix_ms();
    if ids
        .iter()
        .any(|&id| unix_ms_of(id) + BULK_DELETE_MAX_AGE_MS < now)
    {
        return Outcome::new(
            "",
            json_error(
                StatusCode::BAD_REQUEST,
                "You can only bulk delete messages that are under 14 days old.",
                50034,
            ),
        );
    }
    if let Some(kept) = shared.moderation.lock().messages.get_mut(&channel_id) {
        kept.retain(|m| !ids.contains(&m.id));
    }
    let data = json!({
        "ids": ids.iter().map(u64::to_string).collect::<Vec<_>>(),
        "channel_id": channel_id.to_string(),
        "guild_id": guild.id.to_string(),
    });
    emit(
        shared,
        guild,
        "MESSAGE_DELETE_BULK",
        Intents::GUILD_MESSAGES,
        None,
        &data,
    );
    no_content()
}

/// `POST /users/@me/channels`: the DM channel with `recipient_id` (made once per user).
pub(crate) fn create_dm(shared: &Shared, _: &[&str], body: &RequestBody) -> Outcome {
    let Some(recipient) = body_object(body)
        .and_then(|map| map.get("recipient_id"))
        .and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| v.as_u64())
        })
    else {
        return invalid(
            "recipient_id",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        );
    };
    // Made before taking the lock; kept only if the user has no DM channel yet.
    let channel_id = shared
        .moderation
        .open_dm(recipient, shared.new_message_id());
    let channel = json!({
        "id": channel_id.to_string(),
        "type": 1,
        "last_message_id": null,
        "flags": 0,
        "recipients": [payloads::user(recipient, &format!("user{recipient}"), false)],
    });
    Outcome::new("", json_response(StatusCode::OK, &channel))
}
