//! Discord's native AutoMod: a guild's rules (`/guilds/{guild}/auto-moderation/rules`: list,
//! get, create, modify, delete), validated with Discord's caps and answering 50013 without
//! Manage Guild; their AUTO_MODERATION_RULE_CREATE/UPDATE/DELETE events (the
//! AUTO_MODERATION_CONFIGURATION intent); and their enforcement on members' messages: an
//! enabled keyword or mention-spam rule that matches runs its actions (a blocked message is
//! neither kept nor delivered, a timeout is a member update, an alert is a message kept in
//! the alert channel), each announced by AUTO_MODERATION_ACTION_EXECUTION (the
//! AUTO_MODERATION_EXECUTION intent; its content only with MESSAGE_CONTENT), all in the
//! ledger.
//!
//! Not simulated: the spam, keyword-preset and member-profile triggers are stored and
//! validated but never fire (Discord's judgement of them is not public); edits are not
//! screened; the alert message is kept, not dispatched.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value, json};
use twilight_model::gateway::Intents;
use twilight_model::guild::Permissions;

use crate::moderation::{
    Stored, bot_permissions, invalid, json_object, missing_permissions, no_content, not_found,
};
use crate::rest::{Outcome, RequestBody, json_response};
use crate::session::Event;
use crate::state::Shared;
use crate::world::Guild;

/// Trigger types (Discord's numbers).
const KEYWORD: u8 = 1;
const SPAM: u8 = 3;
const KEYWORD_PRESET: u8 = 4;
const MENTION_SPAM: u8 = 5;
const MEMBER_PROFILE: u8 = 6;
/// Event types: a message sent, a member's profile updated.
const MESSAGE_SEND: u8 = 1;
const MEMBER_UPDATE: u8 = 2;
/// Action types.
const BLOCK_MESSAGE: u8 = 1;
const SEND_ALERT_MESSAGE: u8 = 2;
const TIMEOUT: u8 = 3;
const BLOCK_MEMBER_INTERACTION: u8 = 4;

/// Discord's caps on a rule.
const NAME_MAX_CHARS: usize = 100;
const KEYWORDS_MAX: usize = 1_000;
const KEYWORD_MAX_CHARS: usize = 60;
const REGEX_MAX: usize = 10;
const REGEX_MAX_CHARS: usize = 260;
/// The allow list of a keyword (or member-profile) rule, and of a keyword-preset rule.
const ALLOW_LIST_MAX: usize = 100;
const PRESET_ALLOW_LIST_MAX: usize = 1_000;
const MENTION_TOTAL_LIMIT_MAX: u64 = 50;
const EXEMPT_ROLES_MAX: usize = 20;
const EXEMPT_CHANNELS_MAX: usize = 50;
const CUSTOM_MESSAGE_MAX_CHARS: usize = 150;
/// A timeout action's longest duration: 4 weeks.
const TIMEOUT_MAX_SECS: u64 = 2_419_200;
/// Compiled size a regex pattern may reach; Discord refuses patterns "too large" too.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Rules of one trigger type a guild may have.
fn rules_per_guild(trigger_type: u8) -> usize {
    if trigger_type == KEYWORD { 6 } else { 1 }
}

/// Every guild's rules, in creation order.
#[derive(Default)]
pub(crate) struct AutomodState {
    rules: Mutex<HashMap<u64, Vec<Rule>>>,
}

impl AutomodState {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Rule>>> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A guild's rules as the REST API shows them.
    pub(crate) fn rules_of(&self, guild_id: u64) -> Vec<Value> {
        self.lock()
            .get(&guild_id)
            .map(|rules| rules.iter().map(Rule::json).collect())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct Rule {
    id: u64,
    guild_id: u64,
    name: String,
    creator_id: u64,
    event_type: u8,
    trigger_type: u8,
    metadata: Metadata,
    actions: Vec<Action>,
    enabled: bool,
    exempt_roles: Vec<u64>,
    exempt_channels: Vec<u64>,
}

#[derive(Clone, Default)]
struct Metadata {
    keyword_filter: Vec<String>,
    regex_patterns: Vec<String>,
    /// `regex_patterns` compiled (case-insensitive, as Discord matches).
    regexes: Vec<Regex>,
    allow_list: Vec<String>,
    presets: Vec<u8>,
    mention_total_limit: Option<u64>,
    mention_raid_protection_enabled: bool,
}

#[derive(Clone)]
struct Action {
    kind: u8,
    channel_id: Option<u64>,
    duration_seconds: Option<u64>,
    custom_message: Option<String>,
}

impl Action {
    fn json(&self) -> Value {
        let mut metadata = Map::new();
        if let Some(channel) = self.channel_id {
            metadata.insert("channel_id".into(), json!(channel.to_string()));
        }
        if let Some(secs) = self.duration_seconds {
            metadata.insert("duration_seconds".into(), json!(secs));
        }
        if let Some(message) = &self.custom_message {
            metadata.insert("custom_message".into(), json!(message));
        }
        json!({"type": self.kind, "metadata": metadata})
    }
}

impl Rule {
    /// The rule object, with the trigger metadata its trigger type has.
    fn json(&self) -> Value {
        let m = &self.metadata;
        let metadata = match self.trigger_type {
            KEYWORD | MEMBER_PROFILE => json!({
                "keyword_filter": m.keyword_filter,
                "regex_patterns": m.regex_patterns,
                "allow_list": m.allow_list,
            }),
            KEYWORD_PRESET => json!({"presets": m.presets, "allow_list": m.allow_list}),
            MENTION_SPAM => json!({
                "mention_total_limit": m.mention_total_limit.unwrap_or(0),
                "mention_raid_protection_enabled": m.mention_raid_protection_enabled,
            }),
            _ => json!({}),
        };
        let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>();
        json!({
            "id": self.id.to_string(),
            "guild_id": self.guild_id.to_string(),
            "name": self.name,
            "creator_id": self.creator_id.to_string(),
            "event_type": self.event_type,
            "trigger_type": self.trigger_type,
            "trigger_metadata": metadata,
            "actions": self.actions.iter().map(Action::json).collect::<Vec<_>>(),
            "enabled": self.enabled,
            "exempt_roles": ids(&self.exempt_roles),
            "exempt_channels": ids(&self.exempt_channels),
        })
    }
}

type Refusal = Box<Outcome>;

fn refuse(field: &str, code: &str, message: &str) -> Refusal {
    Box::new(invalid(field, code, message))
}

fn snowflake(value: &Value) -> Option<u64> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_u64())
}

/// A list of strings of at most `max` entries of 1 to `max_chars` characters.
fn strings(
    value: &Value,
    field: &str,
    max: usize,
    max_chars: usize,
) -> Result<Vec<String>, Refusal> {
    let Some(items) = value.as_array() else {
        return Err(refuse(field, "BASE_TYPE_ARRAY", "Must be an array."));
    };
    if items.len() > max {
        return Err(refuse(
            field,
            "BASE_TYPE_MAX_LENGTH",
            &format!("Must be {max} or fewer in length."),
        ));
    }
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(text) if (1..=max_chars).contains(&text.chars().count()) => Ok(text.to_owned()),
            _ => Err(refuse(
                field,
                "BASE_TYPE_BAD_LENGTH",
                &format!("Must be between 1 and {max_chars} in length."),
            )),
        })
        .collect()
}

fn snowflakes(value: &Value, field: &str, max: usize) -> Result<Vec<u64>, Refusal> {
    let items = value
        .as_array()
        .ok_or_else(|| refuse(field, "BASE_TYPE_ARRAY", "Must be an array."))?;
    if items.len() > max {
        return Err(refuse(
            field,
            "BASE_TYPE_MAX_LENGTH",
            &format!("Must be {max} or fewer in length."),
        ));
    }
    items
        .iter()
        .map(|item| {
            snowflake(item)
                .ok_or_else(|| refuse(field, "NUMBER_TYPE_COERCE", "Value is not snowflake."))
        })
        .collect()
}

fn small_number(value: &Value, field: &str, choices: &[u8]) -> Result<u8, Refusal> {
    value
        .as_u64()
        .and_then(|n| u8::try_from(n).ok())
        .filter(|n| choices.contains(n))
        .ok_or_else(|| {
            refuse(
                field,
                "BASE_TYPE_CHOICES",
                &format!("Value must be one of {choices:?}."),
            )
        })
}

fn compile(patterns: &[String]) -> Result<Vec<Regex>, Refusal> {
    patterns
        .iter()
        .map(|pattern| {
            RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|_| {
                    refuse(
                        "trigger_metadata.regex_patterns",
                        "AUTO_MODERATION_INVALID_REGEX",
                        &format!("Invalid or too large regex: {pattern}"),
                    )
                })
        })
        .collect()
}

/// Applies the trigger metadata a body sets to `metadata`, for a rule of `trigger_type`.
fn apply_metadata(
    metadata: &mut Metadata,
    body: &Map<String, Value>,
    trigger_type: u8,
) -> Result<(), Refusal> {
    let allow_max = if trigger_type == KEYWORD_PRESET {
        PRESET_ALLOW_LIST_MAX
    } else {
        ALLOW_LIST_MAX
    };
    for (key, value) in body.iter().filter(|(_, value)| !value.is_null()) {
        let field = format!("trigger_metadata.{key}");
        match key.as_str() {
            "keyword_filter" => {
                metadata.keyword_filter = strings(value, &field, KEYWORDS_MAX, KEYWORD_MAX_CHARS)?;
            }
            "regex_patterns" => {
                let patterns = strings(value, &field, REGEX_MAX, REGEX_MAX_CHARS)?;
                metadata.regexes = compile(&patterns)?;
                metadata.regex_patterns = patterns;
            }
            "allow_list" => {
                metadata.allow_list = strings(value, &field, allow_max, KEYWORD_MAX_CHARS)?;
            }
            "presets" => {
                let presets = value
                    .as_array()
                    .ok_or_else(|| refuse(&field, "BASE_TYPE_ARRAY", "Must be an array."))?;
                metadata.presets = presets
                    .iter()
                    .map(|p| small_number(p, &field, &[1, 2, 3]))
                    .collect::<Result<_, _>>()?;
            }
            "mention_total_limit" => {
                let limit = value
                    .as_u64()
                    .filter(|n| (1..=MENTION_TOTAL_LIMIT_MAX).contains(n))
                    .ok_or_else(|| {
                        refuse(
                            &field,
                            "NUMBER_TYPE_MAX",
                            "int value should be between 1 and 50.",
                        )
                    })?;
                metadata.mention_total_limit = Some(limit);
            }
            "mention_raid_protection_enabled" => {
                metadata.mention_raid_protection_enabled = value.as_bool().unwrap_or(false);
            }
            // Discord ignores fields it does not know.
            _ => {}
        }
    }
    if trigger_type == MENTION_SPAM && metadata.mention_total_limit.is_none() {
        return Err(refuse(
            "trigger_metadata.mention_total_limit",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        ));
    }
    if trigger_type == KEYWORD_PRESET && metadata.presets.is_empty() {
        return Err(refuse(
            "trigger_metadata.presets",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        ));
    }
    Ok(())
}

/// Reads the `actions` array for a rule of `trigger_type` in `guild`.
fn actions(
    shared: &Shared,
    guild: &Guild,
    value: &Value,
    trigger_type: u8,
) -> Result<Vec<Action>, Refusal> {
    let items = value
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| {
            refuse(
                "actions",
                "BASE_TYPE_MIN_LENGTH",
                "Must be 1 or more in length.",
            )
        })?;
    let mut actions = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let field = format!("actions.{n}");
        let kind = small_number(
            item.get("type").unwrap_or(&Value::Null),
            &format!("{field}.type"),
            &[
                BLOCK_MESSAGE,
                SEND_ALERT_MESSAGE,
                TIMEOUT,
                BLOCK_MEMBER_INTERACTION,
            ],
        )?;
        let metadata = item.get("metadata").cloned().unwrap_or(Value::Null);
        let mut action = Action {
            kind,
            channel_id: None,
            duration_seconds: None,
            custom_message: None,
        };
        match kind {
            BLOCK_MESSAGE => {
                if let Some(message) = metadata.get("custom_message").and_then(Value::as_str) {
                    if message.chars().count() > CUSTOM_MESSAGE_MAX_CHARS {
                        return Err(refuse(
                            &format!("{field}.metadata.custom_message"),
                            "BASE_TYPE_MAX_LENGTH",
                            "Must be 150 or fewer in length.",
                        ));
                    }
                    action.custom_message = Some(message.to_owned());
                }
            }
            SEND_ALERT_MESSAGE => {
                let channel = metadata
                    .get("channel_id")
                    .and_then(snowflake)
                    .filter(|&channel| shared.has_channel(guild, channel))
                    .ok_or_else(|| {
                        refuse(
                            &format!("{field}.metadata.channel_id"),
                            "CHANNEL_INVALID",
                            "An alert needs a channel of this guild.",
                        )
                    })?;
                action.channel_id = Some(channel);
            }
            TIMEOUT => {
                if ![KEYWORD, MENTION_SPAM].contains(&trigger_type) {
                    return Err(refuse(
                        &format!("{field}.type"),
                        "AUTO_MODERATION_ACTION_INVALID_FOR_TRIGGER",
                        "A timeout is only for keyword and mention spam rules.",
                    ));
                }
                if !bot_permissions(shared, guild, None).contains(Permissions::MODERATE_MEMBERS) {
                    return Err(Box::new(missing_permissions()));
                }
                let secs = metadata
                    .get("duration_seconds")
                    .and_then(Value::as_u64)
                    .filter(|&secs| secs <= TIMEOUT_MAX_SECS)
                    .ok_or_else(|| {
                        refuse(
                            &format!("{field}.metadata.duration_seconds"),
                            "NUMBER_TYPE_MAX",
                            "int value should be less than or equal to 2419200.",
                        )
                    })?;
                action.duration_seconds = Some(secs);
            }
            _ => {
                if trigger_type != MEMBER_PROFILE {
                    return Err(refuse(
                        &format!("{field}.type"),
                        "AUTO_MODERATION_ACTION_INVALID_FOR_TRIGGER",
                        "Blocking member interactions is only for member profile rules.",
                    ));
                }
            }
        }
        actions.push(action);
    }
    Ok(actions)
}

/// Applies a create or modify body to `rule` (a fresh one for a create).
fn apply(
    shared: &Shared,
    guild: &Guild,
    rule: &mut Rule,
    body: &Map<String, Value>,
    creating: bool,
) -> Result<(), Refusal> {
    // An optional field sent as `null` is one not sent (twilight sends them so).
    let body: Map<String, Value> = body
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let body = &body;
    if creating {
        for field in ["name", "event_type", "trigger_type", "actions"] {
            if !body.contains_key(field) {
                return Err(refuse(
                    field,
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                ));
            }
        }
        rule.trigger_type = small_number(
            &body["trigger_type"],
            "trigger_type",
            &[KEYWORD, SPAM, KEYWORD_PRESET, MENTION_SPAM, MEMBER_PROFILE],
        )?;
    } else if body.contains_key("trigger_type") {
        return Err(refuse(
            "trigger_type",
            "AUTO_MODERATION_TRIGGER_TYPE_IMMUTABLE",
            "A rule's trigger type cannot change.",
        ));
    }
    if let Some(name) = body.get("name") {
        match name.as_str() {
            Some(name) if (1..=NAME_MAX_CHARS).contains(&name.chars().count()) => {
                rule.name = name.to_owned();
            }
            _ => {
                return Err(refuse(
                    "name",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                ));
            }
        }
    }
    if let Some(event_type) = body.get("event_type") {
        let wanted = if rule.trigger_type == MEMBER_PROFILE {
            MEMBER_UPDATE
        } else {
            MESSAGE_SEND
        };
        rule.event_type = small_number(event_type, "event_type", &[wanted])?;
    }
    match body.get("trigger_metadata") {
        Some(Value::Object(metadata)) => {
            apply_metadata(&mut rule.metadata, metadata, rule.trigger_type)?;
        }
        None if creating => {
            apply_metadata(&mut rule.metadata, &Map::new(), rule.trigger_type)?;
        }
        None => {}
        Some(_) => {
            return Err(refuse(
                "trigger_metadata",
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            ));
        }
    }
    if let Some(value) = body.get("actions") {
        rule.actions = actions(shared, guild, value, rule.trigger_type)?;
    }
    if let Some(enabled) = body.get("enabled") {
        rule.enabled = enabled.as_bool().ok_or_else(|| {
            refuse(
                "enabled",
                "BASE_TYPE_BOOLEAN",
                "Must be either true or false.",
            )
        })?;
    }
    if let Some(value) = body.get("exempt_roles") {
        rule.exempt_roles = snowflakes(value, "exempt_roles", EXEMPT_ROLES_MAX)?;
    }
    if let Some(value) = body.get("exempt_channels") {
        rule.exempt_channels = snowflakes(value, "exempt_channels", EXEMPT_CHANNELS_MAX)?;
    }
    Ok(())
}

/// The guild of a `/guilds/{guild}/auto-moderation/rules[/{rule}]` path, once the bot may
/// manage it.
fn guild_route<'a>(shared: &'a Shared, segments: &[&str]) -> Result<&'a Guild, Refusal> {
    let guild = segments
        .get(1)
        .and_then(|id| id.parse::<u64>().ok())
        .and_then(|id| shared.world.guild(id))
        .filter(|guild| !shared.world.is_removed(guild))
        .ok_or_else(|| Box::new(not_found("Unknown Guild", 10004)))?;
    if !bot_permissions(shared, guild, None).contains(Permissions::MANAGE_GUILD) {
        return Err(Box::new(missing_permissions()));
    }
    Ok(guild)
}

fn unknown_rule() -> Outcome {
    not_found("Unknown auto moderation rule", 10066)
}

fn rule_id(segments: &[&str]) -> Option<u64> {
    segments.get(4).and_then(|id| id.parse().ok())
}

fn emit_rule(shared: &Shared, guild: &Guild, name: &'static str, rule: &Value) {
    crate::moderation::emit(
        shared,
        guild,
        name,
        Intents::AUTO_MODERATION_CONFIGURATION,
        None,
        rule,
    );
}

fn ok(value: &Value) -> Outcome {
    Outcome::new("", json_response(StatusCode::OK, value))
}

/// `GET /guilds/{guild}/auto-moderation/rules`.
pub(crate) fn list_rules(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    match guild_route(shared, segments) {
        Ok(guild) => ok(&Value::Array(shared.automod.rules_of(guild.id))),
        Err(outcome) => *outcome,
    }
}

/// `GET /guilds/{guild}/auto-moderation/rules/{rule}`.
pub(crate) fn get_rule(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let guild = match guild_route(shared, segments) {
        Ok(guild) => guild,
        Err(outcome) => return *outcome,
    };
    let id = rule_id(segments);
    let found = shared
        .automod
        .lock()
        .get(&guild.id)
        .and_then(|rules| rules.iter().find(|r| Some(r.id) == id).map(Rule::json));
    found.map_or_else(unknown_rule, |rule| ok(&rule))
}

/// `POST /guilds/{guild}/auto-moderation/rules`: at most 6 keyword rules and one of each
/// other trigger type per guild.
pub(crate) fn create_rule(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let guild = match guild_route(shared, segments) {
        Ok(guild) => guild,
        Err(outcome) => return *outcome,
    };
    let map = match json_object(body) {
        Ok(map) => map,
        Err(outcome) => return *outcome,
    };
    let mut rule = Rule {
        id: 0,
        guild_id: guild.id,
        name: String::new(),
        creator_id: shared.world.bot.user_id,
        event_type: MESSAGE_SEND,
        trigger_type: KEYWORD,
        metadata: Metadata::default(),
        actions: Vec::new(),
        enabled: false,
        exempt_roles: Vec::new(),
        exempt_channels: Vec::new(),
    };
    if let Err(outcome) = apply(shared, guild, &mut rule, map, true) {
        return *outcome;
    }
    // Made before taking the lock, as ids are.
    rule.id = shared.new_message_id();
    let json = {
        let mut all = shared.automod.lock();
        let rules = all.entry(guild.id).or_default();
        let cap = rules_per_guild(rule.trigger_type);
        if rules
            .iter()
            .filter(|r| r.trigger_type == rule.trigger_type)
            .count()
            >= cap
        {
            return invalid(
                "trigger_type",
                "AUTO_MODERATION_MAX_RULES_OF_TYPE_EXCEEDED",
                &format!("Maximum number of rules of this type reached ({cap})."),
            );
        }
        let json = rule.json();
        rules.push(rule);
        json
    };
    emit_rule(shared, guild, "AUTO_MODERATION_RULE_CREATE", &json);
    ok(&json)
}

/// `PATCH /guilds/{guild}/auto-moderation/rules/{rule}`: any field but the trigger type.
pub(crate) fn modify_rule(shared: &Shared, segments: &[&str], body: &RequestBody) -> Outcome {
    let guild = match guild_route(shared, segments) {
        Ok(guild) => guild,
        Err(outcome) => return *outcome,
    };
    let map = match json_object(body) {
        Ok(map) => map,
        Err(outcome) => return *outcome,
    };
    let id = rule_id(segments);
    let Some(mut rule) = shared
        .automod
        .lock()
        .get(&guild.id)
        .and_then(|rules| rules.iter().find(|r| Some(r.id) == id).cloned())
    else {
        return unknown_rule();
    };
    if let Err(outcome) = apply(shared, guild, &mut rule, map, false) {
        return *outcome;
    }
    let json = rule.json();
    {
        let mut all = shared.automod.lock();
        let Some(stored) = all
            .get_mut(&guild.id)
            .and_then(|rules| rules.iter_mut().find(|r| r.id == rule.id))
        else {
            // Deleted meanwhile.
            return unknown_rule();
        };
        *stored = rule;
    }
    emit_rule(shared, guild, "AUTO_MODERATION_RULE_UPDATE", &json);
    ok(&json)
}

/// `DELETE /guilds/{guild}/auto-moderation/rules/{rule}`.
pub(crate) fn delete_rule(shared: &Shared, segments: &[&str], _: &RequestBody) -> Outcome {
    let guild = match guild_route(shared, segments) {
        Ok(guild) => guild,
        Err(outcome) => return *outcome,
    };
    let id = rule_id(segments);
    let removed = {
        let mut all = shared.automod.lock();
        all.get_mut(&guild.id).and_then(|rules| {
            let index = rules.iter().position(|r| Some(r.id) == id)?;
            Some(rules.remove(index))
        })
    };
    let Some(rule) = removed else {
        return unknown_rule();
    };
    emit_rule(shared, guild, "AUTO_MODERATION_RULE_DELETE", &rule.json());
    no_content()
}

/// What a rule matched in a message: the keyword (or pattern) and the text it matched.
struct Matched {
    keyword: String,
    content: String,
}

/// Whether `keyword` occurs in `lower` (lowercased) as Discord matches keywords: a plain
/// keyword (or phrase) is a whole word, `*word` ends a word, `word*` starts one and
/// `*word*` is anywhere in one.
fn keyword_in(keyword: &str, lower: &str) -> Option<String> {
    let (any_start, rest) = keyword
        .strip_prefix('*')
        .map_or((false, keyword), |rest| (true, rest));
    let (any_end, core) = rest
        .strip_suffix('*')
        .map_or((false, rest), |core| (true, core));
    let core = core.to_lowercase();
    if core.is_empty() {
        return None;
    }
    let word_char = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    lower.match_indices(&core).find_map(|(start, found)| {
        let end = start + found.len();
        let starts_word = any_start || !word_char(lower[..start].chars().next_back());
        let ends_word = any_end || !word_char(lower[end..].chars().next());
        (starts_word && ends_word).then(|| {
            // The whole word the wildcards reach into.
            let from = lower[..start]
                .rfind(|c: char| !c.is_alphanumeric())
                .map_or(0, |i| {
                    i + lower[i..].chars().next().map_or(1, char::len_utf8)
                });
            let to = lower[end..]
                .find(|c: char| !c.is_alphanumeric())
                .map_or(lower.len(), |i| end + i);
            let (from, to) = if any_start || any_end {
                (
                    if any_start { from } else { start },
                    if any_end { to } else { end },
                )
            } else {
                (start, end)
            };
            lower[from..to].to_owned()
        })
    })
}

impl Rule {
    /// What this rule matches in a member's message, if it is enabled and fires on one.
    fn matches(&self, content: &str) -> Option<Matched> {
        let m = &self.metadata;
        match self.trigger_type {
            KEYWORD => {
                let lower = content.to_lowercase();
                let allowed = |text: &str| {
                    m.allow_list
                        .iter()
                        .any(|allowed| keyword_in(allowed, text).is_some())
                };
                m.keyword_filter
                    .iter()
                    .find_map(|keyword| {
                        keyword_in(keyword, &lower).map(|content| Matched {
                            keyword: keyword.clone(),
                            content,
                        })
                    })
                    .or_else(|| {
                        m.regex_patterns
                            .iter()
                            .zip(&m.regexes)
                            .find_map(|(pattern, regex)| {
                                regex.find(content).map(|found| Matched {
                                    keyword: pattern.clone(),
                                    content: found.as_str().to_owned(),
                                })
                            })
                    })
                    .filter(|matched| !allowed(&matched.content))
            }
            MENTION_SPAM => {
                let limit = m.mention_total_limit.unwrap_or(u64::MAX);
                let mut mentioned: Vec<&str> = content
                    .match_indices("<@")
                    .filter_map(|(at, _)| content[at..].find('>').map(|end| &content[at..at + end]))
                    .collect();
                mentioned.sort_unstable();
                mentioned.dedup();
                (mentioned.len() as u64 > limit).then(|| Matched {
                    keyword: String::new(),
                    content: String::new(),
                })
            }
            _ => None,
        }
    }
}

/// A member's message about to be sent: runs the guild's enabled rules on it and their
/// actions; `true` if a rule blocked it (nothing kept, nothing delivered). The guild's
/// owner, and anyone exempt by a role or the channel, is not screened.
pub(crate) fn screen(
    shared: &Shared,
    guild: &Guild,
    channel_id: u64,
    author_id: u64,
    message_id: u64,
    content: &str,
) -> bool {
    if author_id == guild.owner.id {
        return false;
    }
    let rules: Vec<Rule> = match shared.automod.lock().get(&guild.id) {
        Some(rules) => rules.iter().filter(|r| r.enabled).cloned().collect(),
        None => return false,
    };
    if rules.is_empty() {
        return false;
    }
    let parent = shared.threads.parent_of(channel_id).unwrap_or(channel_id);
    let roles = guild.roles_of(author_id);
    let fired: Vec<(Rule, Matched)> = rules
        .into_iter()
        .filter(|rule| {
            !rule.exempt_channels.contains(&parent)
                && !roles.iter().any(|role| rule.exempt_roles.contains(role))
        })
        .filter_map(|rule| rule.matches(content).map(|matched| (rule, matched)))
        .collect();
    let blocked = fired
        .iter()
        .any(|(rule, _)| rule.actions.iter().any(|a| a.kind == BLOCK_MESSAGE));
    let message_id = (!blocked).then_some(message_id);
    for (rule, matched) in &fired {
        for action in &rule.actions {
            let alert_id = action
                .channel_id
                .filter(|_| action.kind == SEND_ALERT_MESSAGE)
                .map(|alert_channel| {
                    let id = shared.new_message_id();
                    let username = guild
                        .find_member(author_id)
                        .map_or_else(|| format!("user{author_id}"), |u| u.username);
                    shared.moderation.keep(
                        alert_channel,
                        Stored {
                            id,
                            author_id,
                            username,
                            bot: false,
                            content: String::new(),
                            components: Value::Null,
                            attachments: Vec::new(),
                            edited_ms: None,
                        },
                    );
                    id
                });
            if let Some(secs) = action.duration_seconds.filter(|_| action.kind == TIMEOUT) {
                let until = crate::snowflake::now_unix_ms() + secs * 1_000;
                crate::moderation::time_out(
                    shared,
                    guild,
                    author_id,
                    Some(crate::snowflake::rfc3339(until)),
                );
            }
            let executed = Executed {
                rule,
                action,
                channel_id,
                user_id: author_id,
                message_id,
                alert_id,
                content,
                matched,
            };
            execution(shared, guild, &executed);
        }
    }
    blocked
}

/// One action a rule ran on a message.
struct Executed<'a> {
    rule: &'a Rule,
    action: &'a Action,
    channel_id: u64,
    user_id: u64,
    /// `None` when the message was blocked.
    message_id: Option<u64>,
    alert_id: Option<u64>,
    content: &'a str,
    matched: &'a Matched,
}

/// AUTO_MODERATION_ACTION_EXECUTION for one action: to sessions with the
/// AUTO_MODERATION_EXECUTION intent, the content only to those with MESSAGE_CONTENT. A
/// blocked message has no id.
fn execution(shared: &Shared, guild: &Guild, executed: &Executed<'_>) {
    let Executed {
        rule,
        action,
        matched,
        ..
    } = executed;
    let d = json!({
        "guild_id": guild.id.to_string(),
        "action": action.json(),
        "rule_id": rule.id.to_string(),
        "rule_trigger_type": rule.trigger_type,
        "user_id": executed.user_id.to_string(),
        "channel_id": executed.channel_id.to_string(),
        "message_id": executed.message_id.map(|id| id.to_string()),
        "alert_system_message_id": executed.alert_id.map(|id| id.to_string()),
        "content": executed.content,
        "matched_keyword": (!matched.keyword.is_empty()).then_some(&matched.keyword),
        "matched_content": matched.content,
    });
    let blank = {
        let mut d = d.clone();
        d["content"] = json!("");
        d["matched_content"] = json!("");
        d.to_string()
    };
    let full = d.to_string();
    shared
        .sessions
        .dispatch_with(guild.shard, Some(guild.id), |wants| {
            wants
                .intents
                .contains(Intents::AUTO_MODERATION_EXECUTION)
                .then(|| Event {
                    name: "AUTO_MODERATION_ACTION_EXECUTION",
                    guild_id: Some(guild.id),
                    entity_id: Some(rule.id),
                    d: if wants.intents.contains(Intents::MESSAGE_CONTENT) {
                        full.clone()
                    } else {
                        blank.clone()
                    },
                })
        });
}

#[cfg(test)]
mod tests {
    use super::keyword_in;

    #[test]
    fn keywords_match_as_discord_matches_them() {
        assert_eq!(keyword_in("cat", "a cat here").as_deref(), Some("cat"));
        assert_eq!(keyword_in("cat", "catch this"), None, "a whole word");
        assert_eq!(keyword_in("cat*", "catch this").as_deref(), Some("catch"));
        assert_eq!(keyword_in("*cat", "a bobcat").as_deref(), Some("bobcat"));
        assert_eq!(keyword_in("*cat", "catch"), None);
        assert_eq!(keyword_in("*cat*", "location").as_deref(), Some("location"));
        assert_eq!(
            keyword_in("Bad Word", "a bad word!").as_deref(),
            Some("bad word")
        );
        assert_eq!(keyword_in("*", "anything"), None);
    }
}
