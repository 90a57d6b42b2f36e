//! Guild channels as a bot manages them: `POST /guilds/{id}/channels` (text channels and
//! categories, with a topic, a parent category and permission overwrites), `GET` and
//! `PATCH /channels/{id}` (name, topic, parent, slowmode, overwrites),
//! `PUT`/`DELETE /channels/{id}/permissions/{overwrite}` and `DELETE /channels/{id}`,
//! validated as Discord does, each followed by CHANNEL_CREATE, CHANNEL_UPDATE or
//! CHANNEL_DELETE (GUILDS intent). The overwrites decide who sees a channel and may post in
//! it (`moderation::member_permissions`).
//!
//! The generated channels are fixed: they can be edited but not deleted (the simulator
//! answers 50024, as for a channel type an action does not apply to). Only text channels
//! (0) and categories (4) are made; another type is refused with 50035.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use twilight_model::gateway::Intents;
use twilight_model::guild::Permissions;

use crate::moderation::{
    bot_permissions, channel, emit, invalid, json_object, missing_permissions, no_content,
    not_found,
};
use crate::payloads;
use crate::rest::{Outcome, RequestBody, json_error, json_response};
use crate::state::Shared;
use crate::world::Guild;

pub(crate) const GUILD_TEXT: u64 = 0;
pub(crate) const GUILD_CATEGORY: u64 = 4;
/// Discord's cap on a guild's channels (categories count, threads do not).
const GUILD_CHANNELS_MAX: usize = 500;
const NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=100;
const TOPIC_MAX_CHARS: usize = 1024;
const SLOWMODE_MAX_SECS: u64 = 21_600;

/// A channel made at run time.
#[derive(Clone, Debug)]
pub(crate) struct Made {
    pub(crate) id: u64,
    pub(crate) guild_id: u64,
    pub(crate) kind: u64,
    name: String,
    parent_id: Option<u64>,
    topic: Option<String>,
    position: usize,
}

/// The channels made at run time, and the names given to generated ones.
#[derive(Default)]
pub(crate) struct ChannelState {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    made: BTreeMap<u64, Made>,
    /// Generated channels renamed by the bot.
    renamed: HashMap<u64, String>,
}

impl ChannelState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: u64) -> Option<Made> {
        self.lock().made.get(&id).cloned()
    }

    pub(crate) fn guild_of(&self, id: u64) -> Option<u64> {
        self.lock().made.get(&id).map(|c| c.guild_id)
    }

    /// The guild's channels made at run time, oldest first.
    pub(crate) fn of_guild(&self, guild_id: u64) -> Vec<Made> {
        self.lock()
            .made
            .values()
            .filter(|c| c.guild_id == guild_id)
            .cloned()
            .collect()
    }

    fn is_category_of(&self, id: u64, guild_id: u64) -> bool {
        self.lock()
            .made
            .get(&id)
            .is_some_and(|c| c.guild_id == guild_id && c.kind == GUILD_CATEGORY)
    }
}

/// A guild channel (generated or made) as Discord answers and sends it.
pub(crate) fn channel_object(shared: &Shared, guild: &Guild, channel_id: u64) -> Value {
    let (name, kind, parent_id, topic, position) = match shared.channels.get(channel_id) {
        Some(made) => (
            made.name,
            made.kind,
            made.parent_id,
            made.topic,
            made.position,
        ),
        None => {
            let renamed = shared.channels.lock().renamed.get(&channel_id).cloned();
            let name = renamed
                .or_else(|| guild.channel_name(channel_id).map(String::from))
                .unwrap_or_default();
            let position = guild
                .channels()
                .position(|c| c.id == channel_id)
                .unwrap_or(0);
            (name, GUILD_TEXT, None, None, position)
        }
    };
    let mut channel = payloads::text_channel(guild.id, channel_id, &name, position);
    if let Value::Object(map) = &mut channel {
        map.insert("type".into(), json!(kind));
        map.insert(
            "parent_id".into(),
            parent_id.map_or(Value::Null, |id| json!(id.to_string())),
        );
        map.insert("topic".into(), topic.map_or(Value::Null, Value::String));
        map.insert(
            "rate_limit_per_user".into(),
            json!(shared.moderation.slowmode_of(channel_id)),
        );
        map.insert(
            "permission_overwrites".into(),
            Value::Array(shared.moderation.overwrites_of(channel_id)),
        );
        if kind == GUILD_CATEGORY {
            for key in ["topic", "last_message_id", "rate_limit_per_user", "nsfw"] {
                map.remove(key);
            }
        }
    }
    channel
}

/// Every channel of a guild, generated then made, as `GET /guilds/{id}/channels` lists them.
pub(crate) fn guild_channels(shared: &Shared, guild: &Guild) -> Value {
    let generated = guild.channels().map(|c| c.id);
    let made = shared.channels.of_guild(guild.id).into_iter().map(|c| c.id);
    Value::Array(
        generated
            .chain(made)
            .map(|id| channel_object(shared, guild, id))
            .collect(),
    )
}

fn channel_event(shared: &Shared, guild: &Guild, name: &'static str, channel: &Value) {
    let id = channel["id"].as_str().and_then(|s| s.parse().ok());
    emit(shared, guild, name, Intents::GUILDS, id, channel);
}

/// One permission overwrite, checked: Discord's JSON object.
struct Overwrite {
    id: u64,
    kind: u64,
    allow: u64,
    deny: u64,
}

impl Overwrite {
    fn json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "type": self.kind,
            "allow": self.allow.to_string(),
            "deny": self.deny.to_string(),
        })
    }
}

/// A snowflake or permission set given as a string (Discord's form) or a number.
fn number(value: Option<&Value>) -> Option<Option<u64>> {
    match value {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => s.parse().ok().map(Some),
        Some(Value::Number(n)) => n.as_u64().map(Some),
        Some(_) => None,
    }
}

/// An overwrite's fields (`id` from the path for a PUT); `field` names it in the error.
fn overwrite_of(
    map: &Map<String, Value>,
    id: Option<u64>,
    field: &str,
) -> Result<Overwrite, Box<Outcome>> {
    let refuse = |key: &str, code: &str, message: &str| {
        let path = if field.is_empty() {
            key.to_owned()
        } else {
            format!("{field}.{key}")
        };
        Box::new(invalid(&path, code, message))
    };
    let id = match id {
        Some(id) => id,
        None => number(map.get("id"))
            .flatten()
            .ok_or_else(|| refuse("id", "NUMBER_TYPE_COERCE", "Value is not snowflake."))?,
    };
    let kind = map
        .get("type")
        .and_then(Value::as_u64)
        .filter(|&k| k <= 1)
        .ok_or_else(|| refuse("type", "BASE_TYPE_CHOICES", "Value must be one of (0, 1)."))?;
    let bits = |key: &str| {
        number(map.get(key))
            .map(Option::unwrap_or_default)
            .ok_or_else(|| {
                refuse(
                    key,
                    "BASE_TYPE_BAD_INT",
                    "Value is not a valid permission set.",
                )
            })
    };
    Ok(Overwrite {
        id,
        kind,
        allow: bits("allow")?,
        deny: bits("deny")?,
    })
}

/// A body's `permission_overwrites`, if given.
fn overwrites_of(map: &Map<String, Value>) -> Result<Option<Vec<Overwrite>>, Box<Outcome>> {
    let list = match map.get("permission_overwrites") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(Box::new(invalid(
                "permission_overwrites",
                "LIST_TYPE_CONVERT",
                "Only iterables may be used in a ListType",
            )));
        }
    };
    let mut checked = Vec::with_capacity(list.len());
    for (n, item) in list.iter().enumerate() {
        let field = format!("permission_overwrites.{n}");
        let Value::Object(item) = item else {
            return Err(Box::new(invalid(
                &field,
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            )));
        };
        checked.push(overwrite_of(item, None, &field)?);
    }
    Ok(Some(checked))
}

/// Whether the bot may set these overwrites where it holds `has`: Manage Roles, only
/// permissions it has itself, and Manage Roles itself only as an administrator.
fn may_set(has: Permissions, overwrites: &[Overwrite]) -> bool {
    let asked = overwrites.iter().fold(Permissions::empty(), |all, o| {
        all | Permissions::from_bits_truncate(o.allow | o.deny)
    });
    has.contains(Permissions::MANAGE_ROLES)
        && has.contains(asked)
        && (!asked.contains(Permissions::MANAGE_ROLES) || has.contains(Permissions::ADMINISTRATOR))
}

/// A body's `name`, if given: 1 to 100 characters.
fn name_of(map: &Map<String, Value>, required: bool) -> Result<Option<String>, Box<Outcome>> {
    match map.get("name") {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(name)) if NAME_CHARS.contains(&name.chars().count()) => {
            Ok(Some(name.clone()))
        }
        None | Some(Value::Null) => Err(Box::new(invalid(
            "name",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        ))),
        Some(_) => Err(Box::new(invalid(
            "name",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        ))),
    }
}

/// A body's `topic`, if given: at most 1,024 characters (`Some(None)` clears it).
fn topic_of(map: &Map<String, Value>) -> Result<Option<Option<String>>, Box<Outcome>> {
    match map.get("topic") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(topic)) if topic.chars().count() <= TOPIC_MAX_CHARS => {
            Ok(Some((!topic.is_empty()).then(|| topic.clone())))
        }
        Some(_) => Err(Box::new(invalid(
            "topic",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 1024 or fewer in length.",
        ))),
    }
}

/// A body's `parent_id`, if given: a category of the guild (`Some(None)` clears it).
fn parent_of(
    shared: &Shared,
    guild: &Guild,
    map: &Map<String, Value>,
) -> Result<Option<Option<u64>>, Box<Outcome>> {
    if !map.contains_key("parent_id") {
        return Ok(None);
    }
    match number(map.get("parent_id")) {
        Some(None) => Ok(Some(None)),
        Some(Some(id)) if shared.channels.is_category_of(id, guild.id) => Ok(Some(Some(id))),
        _ => Err(Box::new(invalid(
            "parent_id",
            "CHANNEL_PARENT_INVALID_TYPE",
            "Not a category of this guild.",
        ))),
    }
}

/// `POST /guilds/{guild}/channels`: `name` (1–100), `type` 0 or 4, `topic`, `parent_id` (a
/// category; not for a category), `permission_overwrites`. Needs Manage Channels, and Manage
/// Roles for overwrites; at most 500 channels per guild (30013).
pub(crate) fn create_channel(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let Some(guild) = segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| shared.world.guild(id))
        .filter(|guild| !shared.world.is_removed(guild))
    else {
        return not_found("Unknown Guild", 10004);
    };
    let map = match json_object(body) {
        Ok(map) => map,
        Err(outcome) => return *outcome,
    };
    let kind = match number(map.get("type")) {
        Some(None) => GUILD_TEXT,
        Some(Some(kind)) if kind == GUILD_TEXT || kind == GUILD_CATEGORY => kind,
        _ => return invalid("type", "BASE_TYPE_CHOICES", "Value must be one of (0, 4)."),
    };
    let checked = (|| {
        let name = name_of(map, true)?.unwrap_or_default();
        let topic = topic_of(map)?.flatten();
        let parent_id = parent_of(shared, guild, map)?.flatten();
        if kind == GUILD_CATEGORY && parent_id.is_some() {
            return Err(Box::new(invalid(
                "parent_id",
                "CHANNEL_PARENT_INVALID_TYPE",
                "A category cannot have a parent.",
            )));
        }
        let overwrites = overwrites_of(map)?.unwrap_or_default();
        Ok((name, topic, parent_id, overwrites))
    })();
    let (name, topic, parent_id, overwrites) = match checked {
        Ok(checked) => checked,
        Err(outcome) => return *outcome,
    };
    let has = bot_permissions(shared, guild, None);
    if !has.contains(Permissions::MANAGE_CHANNELS)
        || (!overwrites.is_empty() && !may_set(has, &overwrites))
    {
        return missing_permissions();
    }
    let made = Made {
        id: shared.new_message_id(),
        guild_id: guild.id,
        kind,
        name,
        parent_id,
        topic: topic.filter(|_| kind == GUILD_TEXT),
        position: 0,
    };
    let overwrites = overwrites.iter().map(Overwrite::json).collect();
    match make(shared, guild, made, overwrites) {
        Some(object) => Outcome::new("", json_response(StatusCode::CREATED, &object)),
        None => Outcome::new(
            "",
            json_error(
                StatusCode::BAD_REQUEST,
                "Maximum number of guild channels reached (500)",
                30013,
            ),
        ),
    }
}

/// Adds a channel to the guild, last, and sends CHANNEL_CREATE: the channel object, or
/// `None` when the guild has 500 channels already.
fn make(shared: &Shared, guild: &Guild, mut made: Made, overwrites: Vec<Value>) -> Option<Value> {
    let id = made.id;
    {
        let mut inner = shared.channels.lock();
        let count = guild.channel_count as usize
            + inner
                .made
                .values()
                .filter(|c| c.guild_id == guild.id)
                .count();
        if count >= GUILD_CHANNELS_MAX {
            return None;
        }
        made.position = count;
        inner.made.insert(id, made);
    }
    shared.moderation.set_overwrites(id, overwrites);
    // A ticket's history is read whole, as a thread's is.
    shared.moderation.keep_long(id);
    let object = channel_object(shared, guild, id);
    channel_event(shared, guild, "CHANNEL_CREATE", &object);
    Some(object)
}

/// A category an admin made in the Discord client (no permission of the bot needed); its
/// id, `None` when the guild has 500 channels already.
pub(crate) fn admin_makes_category(shared: &Shared, guild: &Guild, name: &str) -> Option<u64> {
    let made = Made {
        id: shared.new_message_id(),
        guild_id: guild.id,
        kind: GUILD_CATEGORY,
        name: name.to_owned(),
        parent_id: None,
        topic: None,
        position: 0,
    };
    let id = made.id;
    make(shared, guild, made, Vec::new()).map(|_| id)
}

/// `GET /channels/{channel}`.
pub(crate) fn get_channel(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, channel_id) = match channel(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if shared.threads.contains(channel_id) {
        return crate::threads::get_thread(shared, guild, channel_id);
    }
    if !bot_permissions(shared, guild, Some(channel_id)).contains(Permissions::VIEW_CHANNEL) {
        return missing_permissions();
    }
    Outcome::new(
        "",
        json_response(StatusCode::OK, &channel_object(shared, guild, channel_id)),
    )
}

/// `PATCH /channels/{channel}`: `name`, `topic`, `parent_id`, `rate_limit_per_user` (0 to
/// 21600 s) and `permission_overwrites` (all of them, replaced); needs Manage Channels, and
/// Manage Roles for overwrites. Nothing changes unless all of it is valid.
pub(crate) fn update_channel(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let (guild, channel_id) = match channel(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if shared.threads.contains(channel_id) {
        return crate::threads::update_thread(shared, guild, channel_id, body);
    }
    let has = bot_permissions(shared, guild, Some(channel_id));
    if !has.contains(Permissions::MANAGE_CHANNELS) {
        return missing_permissions();
    }
    let map = match json_object(body) {
        Ok(map) => map,
        Err(outcome) => return *outcome,
    };
    let kind = shared
        .channels
        .get(channel_id)
        .map_or(GUILD_TEXT, |c| c.kind);
    let checked = (|| {
        let slowmode = match map.get("rate_limit_per_user") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|&s| s <= SLOWMODE_MAX_SECS)
                    .ok_or_else(|| {
                        Box::new(invalid(
                            "rate_limit_per_user",
                            "NUMBER_TYPE_MAX",
                            "int value should be less than or equal to 21600.",
                        ))
                    })?,
            ),
        };
        let parent = parent_of(shared, guild, map)?;
        if kind == GUILD_CATEGORY && parent.is_some_and(|p| p.is_some()) {
            return Err(Box::new(invalid(
                "parent_id",
                "CHANNEL_PARENT_INVALID_TYPE",
                "A category cannot have a parent.",
            )));
        }
        Ok((
            name_of(map, false)?,
            topic_of(map)?,
            parent,
            slowmode,
            overwrites_of(map)?,
        ))
    })();
    let (name, topic, parent, slowmode, overwrites) = match checked {
        Ok(checked) => checked,
        Err(outcome) => return *outcome,
    };
    if overwrites
        .as_ref()
        .is_some_and(|overwrites| !may_set(has, overwrites))
    {
        return missing_permissions();
    }
    {
        let mut inner = shared.channels.lock();
        match inner.made.get_mut(&channel_id) {
            Some(made) => {
                if let Some(name) = name {
                    made.name = name;
                }
                if let Some(topic) = topic.filter(|_| made.kind == GUILD_TEXT) {
                    made.topic = topic;
                }
                if let Some(parent) = parent {
                    made.parent_id = parent;
                }
            }
            // Generated channels take a new name only.
            None => {
                if let Some(name) = name {
                    inner.renamed.insert(channel_id, name);
                }
            }
        }
    }
    if let Some(secs) = slowmode {
        shared.moderation.set_slowmode(channel_id, secs);
    }
    if let Some(overwrites) = overwrites {
        shared
            .moderation
            .set_overwrites(channel_id, overwrites.iter().map(Overwrite::json).collect());
    }
    let object = channel_object(shared, guild, channel_id);
    channel_event(shared, guild, "CHANNEL_UPDATE", &object);
    Outcome::new("", json_response(StatusCode::OK, &object))
}

/// `PUT /channels/{channel}/permissions/{overwrite}`: needs Manage Roles, and the bot may
/// only allow or deny permissions it has itself.
pub(crate) fn put_overwrite(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let (guild, channel_id, target) = match overwrite_route(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let map = match json_object(body) {
        Ok(map) => map,
        Err(outcome) => return *outcome,
    };
    let overwrite = match overwrite_of(map, Some(target), "") {
        Ok(overwrite) => overwrite,
        Err(outcome) => return *outcome,
    };
    let has = bot_permissions(shared, guild, Some(channel_id));
    if !may_set(has, std::slice::from_ref(&overwrite)) {
        return missing_permissions();
    }
    shared
        .moderation
        .put_overwrite(channel_id, overwrite.json());
    let object = channel_object(shared, guild, channel_id);
    channel_event(shared, guild, "CHANNEL_UPDATE", &object);
    no_content()
}

/// `DELETE /channels/{channel}/permissions/{overwrite}`: needs Manage Roles; 404 `10009` if
/// the channel has no overwrite for it.
pub(crate) fn delete_overwrite(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, channel_id, target) = match overwrite_route(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if !bot_permissions(shared, guild, Some(channel_id)).contains(Permissions::MANAGE_ROLES) {
        return missing_permissions();
    }
    if !shared.moderation.remove_overwrite(channel_id, target) {
        return not_found("Unknown Overwrite", 10009);
    }
    let object = channel_object(shared, guild, channel_id);
    channel_event(shared, guild, "CHANNEL_UPDATE", &object);
    no_content()
}

/// The channel and overwrite target of a `/channels/{id}/permissions/{target}` path; not of
/// a thread (its parent's overwrites apply).
fn overwrite_route<'a>(
    shared: &'a Shared,
    segments: &[&str],
) -> Result<(&'a Guild, u64, u64), Box<Outcome>> {
    let (guild, channel_id) = channel(shared, segments)?;
    if shared.threads.contains(channel_id) {
        return Err(Box::new(crate::threads::wrong_channel_type()));
    }
    let target = segments
        .get(3)
        .and_then(|id| id.parse::<u64>().ok())
        .ok_or_else(|| Box::new(not_found("Unknown Overwrite", 10009)))?;
    Ok((guild, channel_id, target))
}

/// `DELETE /channels/{channel}`: a channel made at run time (the generated ones are fixed),
/// with Manage Channels; its messages and overwrites are gone, the channels of a deleted
/// category are left without one. Answers the channel as it was.
pub(crate) fn delete_channel(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, channel_id) = match channel(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if shared.channels.get(channel_id).is_none() {
        return crate::threads::wrong_channel_type();
    }
    if !bot_permissions(shared, guild, Some(channel_id)).contains(Permissions::MANAGE_CHANNELS) {
        return missing_permissions();
    }
    let object = channel_object(shared, guild, channel_id);
    let orphans: Vec<u64> = {
        let mut inner = shared.channels.lock();
        inner.made.remove(&channel_id);
        inner
            .made
            .values_mut()
            .filter(|c| c.parent_id == Some(channel_id))
            .map(|c| {
                c.parent_id = None;
                c.id
            })
            .collect()
    };
    shared.moderation.forget_channel(channel_id);
    channel_event(shared, guild, "CHANNEL_DELETE", &object);
    for orphan in orphans {
        let object = channel_object(shared, guild, orphan);
        channel_event(shared, guild, "CHANNEL_UPDATE", &object);
    }
    Outcome::new("", json_response(StatusCode::OK, &object))
}
