//! Threads, as a support bot uses them: `POST /channels/{id}/threads` (public or private,
//! without a starter message), `POST /channels/{id}/messages/{id}/threads` (public, from a
//! message: the thread takes the message's id), thread members added, removed and listed, and archive, lock
//! and rename through `PATCH /channels/{thread}`, validated as Discord does, each followed by
//! the gateway event Discord sends (THREAD_CREATE, THREAD_MEMBERS_UPDATE, THREAD_UPDATE).
//! Messages in threads are kept like any channel's (`moderation.rs`), for longer.
//!
//! Who sees a private thread: its members and holders of Manage Threads (the guild's owner,
//! and the bot, invited with it). A thread has no overwrites: its parent's apply.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use serde_json::{Value, json};
use twilight_model::gateway::Intents;
use twilight_model::guild::Permissions;

use crate::moderation::{
    bot_permissions, emit, invalid, is_member, json_object, missing_permissions, no_content,
    not_found,
};
use crate::rest::{Outcome, RequestBody, json_error, json_response};
use crate::snowflake::{rfc3339, unix_ms_of};
use crate::state::Shared;
use crate::world::Guild;

/// Discord's cap on a guild's active (not archived) threads.
const ACTIVE_THREADS_MAX: usize = 1000;
/// The auto-archive durations Discord accepts, in minutes.
const AUTO_ARCHIVE_MINUTES: [u64; 4] = [60, 1440, 4320, 10_080];
const NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=100;
const PUBLIC_THREAD: u64 = 11;
const PRIVATE_THREAD: u64 = 12;
/// `member_count` stops counting at 50, as Discord's does.
const MEMBER_COUNT_CAP: usize = 50;

/// One thread made at run time.
#[derive(Clone, Debug)]
pub(crate) struct Thread {
    pub(crate) id: u64,
    pub(crate) guild_id: u64,
    pub(crate) parent_id: u64,
    pub(crate) owner_id: u64,
    pub(crate) name: String,
    pub(crate) private: bool,
    pub(crate) archived: bool,
    pub(crate) locked: bool,
    pub(crate) invitable: bool,
    auto_archive_minutes: u64,
    /// Unix ms of the last archive-state change (creation at first).
    archive_ms: u64,
    /// user → when they joined (Unix ms).
    pub(crate) members: BTreeMap<u64, u64>,
    message_count: u64,
}

impl Thread {
    /// The channel object Discord answers and sends for a thread.
    pub(crate) fn json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "type": if self.private { PRIVATE_THREAD } else { PUBLIC_THREAD },
            "guild_id": self.guild_id.to_string(),
            "parent_id": self.parent_id.to_string(),
            "owner_id": self.owner_id.to_string(),
            "name": self.name,
            "last_message_id": null,
            "rate_limit_per_user": 0,
            "flags": 0,
            "member_count": self.members.len().min(MEMBER_COUNT_CAP),
            "message_count": self.message_count,
            "total_message_sent": self.message_count,
            "thread_metadata": {
                "archived": self.archived,
                "auto_archive_duration": self.auto_archive_minutes,
                "archive_timestamp": rfc3339(self.archive_ms),
                "locked": self.locked,
                "invitable": self.invitable,
                "create_timestamp": rfc3339(unix_ms_of(self.id)),
            },
        })
    }

    /// Whether `user` of `guild` sees it: a public thread anyone does; a private one its
    /// members and the owner (Manage Threads).
    pub(crate) fn visible_to(&self, guild: &Guild, user: u64) -> bool {
        !self.private || self.members.contains_key(&user) || user == guild.owner.id
    }
}

/// The threads of every guild.
#[derive(Default)]
pub(crate) struct ThreadState {
    threads: Mutex<HashMap<u64, Thread>>,
}

impl ThreadState {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Thread>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: u64) -> Option<Thread> {
        self.lock().get(&id).cloned()
    }

    /// The guild's threads, oldest first.
    pub(crate) fn of_guild(&self, guild_id: u64) -> Vec<Thread> {
        let mut threads: Vec<Thread> = self
            .lock()
            .values()
            .filter(|t| t.guild_id == guild_id)
            .cloned()
            .collect();
        threads.sort_by_key(|t| t.id);
        threads
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.lock().contains_key(&id)
    }

    /// The parent channel of a thread; `None` for anything else.
    pub(crate) fn parent_of(&self, id: u64) -> Option<u64> {
        self.lock().get(&id).map(|t| t.parent_id)
    }

    pub(crate) fn guild_of(&self, id: u64) -> Option<u64> {
        self.lock().get(&id).map(|t| t.guild_id)
    }

    /// Counts a message posted in a thread; posting in an archived, unlocked thread
    /// unarchives it, as on Discord. The thread when its state changed.
    pub(crate) fn posted(&self, id: u64, now_ms: u64) -> Option<Thread> {
        let mut threads = self.lock();
        let thread = threads.get_mut(&id)?;
        thread.message_count += 1;
        if thread.archived && !thread.locked {
            thread.archived = false;
            thread.archive_ms = now_ms;
            return Some(thread.clone());
        }
        None
    }
}

fn thread_archived() -> Outcome {
    Outcome::new(
        "",
        json_error(
            StatusCode::BAD_REQUEST,
            "Thread is archived",
            THREAD_ARCHIVED,
        ),
    )
}

/// Discord's code for acting on an archived thread.
const THREAD_ARCHIVED: u32 = 50083;

pub(crate) fn wrong_channel_type() -> Outcome {
    Outcome::new(
        "",
        json_error(
            StatusCode::BAD_REQUEST,
            "Cannot execute action on this channel type",
            50024,
        ),
    )
}

fn thread_event(shared: &Shared, guild: &Guild, name: &'static str, thread: &Value) {
    let id = thread["id"].as_str().and_then(|s| s.parse().ok());
    emit(shared, guild, name, Intents::GUILDS, id, thread);
}

/// Whether a message to `thread` may be posted: not into a locked, archived one.
pub(crate) fn check_postable(thread: &Thread) -> Result<(), Box<Outcome>> {
    if thread.archived && thread.locked {
        return Err(Box::new(thread_archived()));
    }
    Ok(())
}

/// After a message was posted in a thread: counts it, and announces an unarchive.
pub(crate) fn after_post(shared: &Shared, guild: &Guild, thread_id: u64) {
    if let Some(thread) = shared
        .threads
        .posted(thread_id, crate::snowflake::now_unix_ms())
    {
        thread_event(shared, guild, "THREAD_UPDATE", &thread.json());
    }
}

/// `POST /channels/{channel}/threads` without a message: `name` (1–100), `type` 11 or 12
/// (12 by default, as Discord's), `auto_archive_duration`, `invitable` (private only).
/// Needs Create Private (or Public) Threads in the parent; at most 1,000 active threads
/// per guild.
pub(crate) fn create_thread(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let Some((guild, parent_id)) = segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| shared.world.guild_of_channel(id).map(|g| (g, id)))
        .filter(|(guild, _)| !shared.world.is_removed(guild))
    else {
        // A thread cannot hold threads; anything else is unknown.
        let in_thread = segments
            .get(1)
            .and_then(|id| id.parse::<u64>().ok())
            .is_some_and(|id| shared.threads.contains(id));
        return if in_thread {
            wrong_channel_type()
        } else {
            not_found("Unknown Channel", 10003)
        };
    };
    let (map, name) = match named_body(body) {
        Ok(named) => named,
        Err(outcome) => return *outcome,
    };
    let kind = match map.get("type") {
        None | Some(Value::Null) => PRIVATE_THREAD,
        Some(value) => match value.as_u64() {
            Some(kind @ (PUBLIC_THREAD | PRIVATE_THREAD)) => kind,
            _ => {
                return invalid(
                    "type",
                    "BASE_TYPE_CHOICES",
                    "Value must be one of (11, 12).",
                );
            }
        },
    };
    let auto_archive_minutes = match auto_archive(map) {
        Ok(minutes) => minutes.unwrap_or(1440),
        Err(outcome) => return *outcome,
    };
    let invitable = match map.get("invitable") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return invalid(
                "invitable",
                "BASE_TYPE_BOOLEAN",
                "Must be either true or false.",
            );
        }
    };
    let private = kind == PRIVATE_THREAD;
    let id = shared.new_message_id();
    let opening = Opening {
        id,
        parent_id,
        name,
        private,
        auto_archive_minutes,
        invitable,
    };
    open(shared, guild, opening)
}

/// `POST /channels/{channel}/messages/{message}/threads`: a public thread on a message of the
/// channel (Unknown Message otherwise), one per message (160004), with the message's id;
/// `name` (1–100) and `auto_archive_duration` as for a thread without a message.
pub(crate) fn create_thread_from_message(
    shared: &Shared,
    segments: &[&str],
    body: &RequestBody,
) -> Outcome {
    let number = |i: usize| segments.get(i).and_then(|id| id.parse::<u64>().ok());
    let (Some(parent_id), Some(message_id)) = (number(1), number(3)) else {
        return not_found("Unknown Channel", 10003);
    };
    let Some(guild) = shared
        .world
        .guild_of_channel(parent_id)
        .filter(|guild| !shared.world.is_removed(guild))
    else {
        return if shared.threads.contains(parent_id) {
            wrong_channel_type()
        } else {
            not_found("Unknown Channel", 10003)
        };
    };
    if !shared.moderation.message_exists(parent_id, message_id) {
        return not_found("Unknown Message", 10008);
    }
    if shared.threads.contains(message_id) {
        return invalid_request(
            "A thread has already been created for this message",
            160_004,
        );
    }
    let (map, name) = match named_body(body) {
        Ok(named) => named,
        Err(outcome) => return *outcome,
    };
    let auto_archive_minutes = match auto_archive(map) {
        Ok(minutes) => minutes.unwrap_or(1440),
        Err(outcome) => return *outcome,
    };
    let opening = Opening {
        id: message_id,
        parent_id,
        name,
        private: false,
        auto_archive_minutes,
        invitable: true,
    };
    open(shared, guild, opening)
}

fn invalid_request(message: &str, code: u32) -> Outcome {
    Outcome::new("", json_error(StatusCode::BAD_REQUEST, message, code))
}

/// A thread about to be made, checked.
struct Opening<'a> {
    id: u64,
    parent_id: u64,
    name: &'a str,
    private: bool,
    auto_archive_minutes: u64,
    invitable: bool,
}

/// Makes a thread: the bot's permission in the parent, the guild's cap on active threads,
/// then THREAD_CREATE and the thread as Discord answers it.
fn open(shared: &Shared, guild: &Guild, opening: Opening<'_>) -> Outcome {
    let Opening {
        id,
        parent_id,
        name,
        private,
        auto_archive_minutes,
        invitable,
    } = opening;
    let needs = Permissions::VIEW_CHANNEL
        | if private {
            Permissions::CREATE_PRIVATE_THREADS
        } else {
            Permissions::CREATE_PUBLIC_THREADS
        };
    if !bot_permissions(shared, guild, Some(parent_id)).contains(needs) {
        return missing_permissions();
    }
    let bot = shared.world.bot.user_id;
    let now_ms = crate::snowflake::now_unix_ms();
    let thread = Thread {
        id,
        guild_id: guild.id,
        parent_id,
        owner_id: bot,
        name: name.to_owned(),
        private,
        archived: false,
        locked: false,
        invitable: !private || invitable,
        auto_archive_minutes,
        archive_ms: now_ms,
        members: BTreeMap::from([(bot, now_ms)]),
        message_count: 0,
    };
    {
        let mut threads = shared.threads.lock();
        let active = threads
            .values()
            .filter(|t| t.guild_id == guild.id && !t.archived)
            .count();
        if active >= ACTIVE_THREADS_MAX {
            return invalid_request("Maximum number of active threads reached", 160_006);
        }
        threads.insert(id, thread.clone());
    }
    shared.moderation.keep_long(id);
    let mut body = thread.json();
    let mut event = body.clone();
    if let Value::Object(map) = &mut event {
        map.insert("newly_created".into(), json!(true));
        map.insert("member".into(), thread_member(id, bot, now_ms, None));
    }
    thread_event(shared, guild, "THREAD_CREATE", &event);
    if let Value::Object(map) = &mut body {
        map.insert("member".into(), thread_member(id, bot, now_ms, None));
    }
    Outcome::new("", json_response(StatusCode::CREATED, &body))
}

/// A thread member object; with the guild member when Discord includes it.
fn thread_member(thread_id: u64, user_id: u64, joined_ms: u64, member: Option<Value>) -> Value {
    let mut object = json!({
        "id": thread_id.to_string(),
        "user_id": user_id.to_string(),
        "join_timestamp": rfc3339(joined_ms),
        "flags": 0,
    });
    if let (Some(member), Value::Object(map)) = (member, &mut object) {
        map.insert("member".into(), member);
    }
    object
}

/// The thread of a `/channels/{thread}/…` path, with its guild.
fn thread_of<'a>(
    shared: &'a Shared,
    segments: &[&str],
) -> Result<(&'a Guild, Thread), Box<Outcome>> {
    let thread = segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| shared.threads.get(id));
    let Some(thread) = thread else {
        let is_channel = segments
            .get(1)
            .and_then(|id| id.parse::<u64>().ok())
            .is_some_and(|id| shared.world.guild_of_channel(id).is_some());
        return Err(Box::new(if is_channel {
            wrong_channel_type()
        } else {
            not_found("Unknown Channel", 10003)
        }));
    };
    let guild = shared
        .world
        .guild(thread.guild_id)
        .filter(|guild| !shared.world.is_removed(guild))
        .ok_or_else(|| Box::new(not_found("Unknown Channel", 10003)))?;
    Ok((guild, thread))
}

/// The bot may manage members of a thread: it sees it, may send in threads, and for a
/// private one is a member or holds Manage Threads.
fn bot_may_manage(shared: &Shared, guild: &Guild, thread: &Thread) -> bool {
    let has = bot_permissions(shared, guild, Some(thread.id));
    has.contains(Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES_IN_THREADS)
        && (!thread.private
            || thread.members.contains_key(&shared.world.bot.user_id)
            || has.contains(Permissions::MANAGE_THREADS))
}

fn members_update(shared: &Shared, guild: &Guild, thread_id: u64, user: u64, added: Option<Value>) {
    let Some(thread) = shared.threads.get(thread_id) else {
        return;
    };
    let mut d = json!({
        "id": thread_id.to_string(),
        "guild_id": guild.id.to_string(),
        "member_count": thread.members.len().min(MEMBER_COUNT_CAP),
    });
    if let Value::Object(map) = &mut d {
        match added {
            Some(member) => map.insert("added_members".into(), json!([member])),
            None => map.insert("removed_member_ids".into(), json!([user.to_string()])),
        };
    }
    // Other users' thread membership needs GUILD_MEMBERS; the bot's own comes with GUILDS.
    let intent = if user == shared.world.bot.user_id {
        Intents::GUILDS
    } else {
        Intents::GUILD_MEMBERS
    };
    emit(
        shared,
        guild,
        "THREAD_MEMBERS_UPDATE",
        intent,
        Some(thread_id),
        &d,
    );
}

/// `PUT /channels/{thread}/thread-members/{user}`: adds a guild member (204; again, nothing
/// changes). Not into an archived thread (50083).
pub(crate) fn add_member(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, thread) = match thread_of(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let Some(user) = segments.get(3).and_then(|id| id.parse::<u64>().ok()) else {
        return not_found("Unknown User", 10013);
    };
    if thread.archived {
        return thread_archived();
    }
    if !bot_may_manage(shared, guild, &thread) {
        return missing_permissions();
    }
    if user != shared.world.bot.user_id && !is_member(shared, guild, user) {
        return not_found("Unknown Member", 10007);
    }
    let now_ms = crate::snowflake::now_unix_ms();
    let added = {
        let mut threads = shared.threads.lock();
        let Some(stored) = threads.get_mut(&thread.id) else {
            return not_found("Unknown Channel", 10003);
        };
        stored.members.insert(user, now_ms).is_none()
    };
    if added {
        let member = crate::payloads::guild_member(&shared.world, guild, user);
        let object = thread_member(thread.id, user, now_ms, member);
        members_update(shared, guild, thread.id, user, Some(object));
    }
    no_content()
}

/// `DELETE /channels/{thread}/thread-members/{user}`: removes a member (404 `10007` if not
/// one). Not from an archived thread; another's removal from a private thread needs
/// Manage Threads unless the bot made the thread.
pub(crate) fn remove_member(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, thread) = match thread_of(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let Some(user) = segments.get(3).and_then(|id| id.parse::<u64>().ok()) else {
        return not_found("Unknown User", 10013);
    };
    if thread.archived {
        return thread_archived();
    }
    let bot = shared.world.bot.user_id;
    let may = bot_may_manage(shared, guild, &thread)
        && (user == bot
            || thread.owner_id == bot
            || bot_permissions(shared, guild, Some(thread.id))
                .contains(Permissions::MANAGE_THREADS));
    if !may {
        return missing_permissions();
    }
    let removed = shared
        .threads
        .lock()
        .get_mut(&thread.id)
        .is_some_and(|t| t.members.remove(&user).is_some());
    if !removed {
        return not_found("Unknown Member", 10007);
    }
    members_update(shared, guild, thread.id, user, None);
    no_content()
}

/// `GET /channels/{thread}/thread-members`: every member, as thread member objects.
pub(crate) fn list_members(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let (guild, thread) = match thread_of(shared, segments) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    if !bot_may_manage(shared, guild, &thread) {
        return missing_permissions();
    }
    let members: Vec<Value> = thread
        .members
        .iter()
        .map(|(&user, &joined)| thread_member(thread.id, user, joined, None))
        .collect();
    Outcome::new("", json_response(StatusCode::OK, &Value::Array(members)))
}

/// `GET /channels/{thread}`, answered by `moderation::get_channel` for threads.
pub(crate) fn get_thread(shared: &Shared, guild: &Guild, thread_id: u64) -> Outcome {
    match shared.threads.get(thread_id) {
        Some(thread) if bot_may_manage(shared, guild, &thread) => {
            Outcome::new("", json_response(StatusCode::OK, &thread.json()))
        }
        Some(_) => missing_permissions(),
        None => not_found("Unknown Channel", 10003),
    }
}

/// `PATCH /channels/{thread}`, answered by `moderation::update_channel` for threads:
/// `name`, `archived`, `locked`, `invitable`, `auto_archive_duration`. An archived thread
/// takes only a change that unarchives it (50083); locking, and changing `invitable`,
/// need Manage Threads.
pub(crate) fn update_thread(
    shared: &Shared,
    guild: &Guild,
    thread_id: u64,
    body: &RequestBody,
) -> Outcome {
    let Some(thread) = shared.threads.get(thread_id) else {
        return not_found("Unknown Channel", 10003);
    };
    let map = match json_object(body) {
        Ok(map) => map,
        Err(outcome) => return *outcome,
    };
    let flag = |key: &str| -> Result<Option<bool>, Box<Outcome>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Box::new(invalid(
                key,
                "BASE_TYPE_BOOLEAN",
                "Must be either true or false.",
            ))),
        }
    };
    let (archived, locked, invitable) = match (flag("archived"), flag("locked"), flag("invitable"))
    {
        (Ok(a), Ok(l), Ok(i)) => (a, l, i),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return *e,
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if NAME_CHARS.contains(&name.chars().count()) => Some(name),
        Some(_) => {
            return invalid(
                "name",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            );
        }
    };
    let auto_archive = match auto_archive(map) {
        Ok(minutes) => minutes,
        Err(outcome) => return *outcome,
    };
    if thread.archived && archived != Some(false) {
        return thread_archived();
    }
    let has = bot_permissions(shared, guild, Some(thread_id));
    let manages = has.contains(Permissions::MANAGE_THREADS);
    let owns = thread.owner_id == shared.world.bot.user_id;
    if !bot_may_manage(shared, guild, &thread)
        || ((locked.is_some() || invitable.is_some()) && !manages)
        || ((name.is_some() || archived.is_some() || auto_archive.is_some()) && !owns && !manages)
    {
        return missing_permissions();
    }
    let now_ms = crate::snowflake::now_unix_ms();
    let updated = {
        let mut threads = shared.threads.lock();
        let Some(stored) = threads.get_mut(&thread_id) else {
            return not_found("Unknown Channel", 10003);
        };
        if let Some(name) = name {
            stored.name = name.clone();
        }
        if let Some(archived) = archived.filter(|&a| a != stored.archived) {
            stored.archived = archived;
            stored.archive_ms = now_ms;
        }
        if let Some(locked) = locked {
            stored.locked = locked;
        }
        if let Some(invitable) = invitable.filter(|_| stored.private) {
            stored.invitable = invitable;
        }
        if let Some(minutes) = auto_archive {
            stored.auto_archive_minutes = minutes;
        }
        stored.clone()
    };
    let object = updated.json();
    thread_event(shared, guild, "THREAD_UPDATE", &object);
    Outcome::new("", json_response(StatusCode::OK, &object))
}

/// A new thread's body: a JSON object with a `name` of Discord's length.
fn named_body(body: &RequestBody) -> Result<(&serde_json::Map<String, Value>, &str), Box<Outcome>> {
    let map = json_object(body)?;
    let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
    if !NAME_CHARS.contains(&name.chars().count()) {
        return Err(Box::new(invalid(
            "name",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        )));
    }
    Ok((map, name))
}

/// A body's `auto_archive_duration` in minutes, if given; one Discord does not offer is
/// refused as Discord refuses it.
fn auto_archive(map: &serde_json::Map<String, Value>) -> Result<Option<u64>, Box<Outcome>> {
    match map.get("auto_archive_duration") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64().filter(|m| AUTO_ARCHIVE_MINUTES.contains(m)) {
            Some(minutes) => Ok(Some(minutes)),
            None => Err(Box::new(invalid(
                "auto_archive_duration",
                "BASE_TYPE_CHOICES",
                "Value must be one of (60, 1440, 4320, 10080).",
            ))),
        },
    }
}
