//! Every kind of payload the simulator sends, as a client receives it (raw
//! gateway frames and REST bodies), parsed with twilight-model and checked
//! for each field Discord documents as required (present; `null` where it
//! is nullable). The lists are Discord's documentation's, not twilight's:
//! twilight treats many of them as optional.

mod common;

use common::*;

use std::collections::HashMap;

use futures_util::{SinkExt as _, StreamExt as _};
use protonn_sim::{EventMix, EventWeights, GuildShape, SimConfig, SimHandle};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use twilight_model::channel::{Channel, Message};
use twilight_model::gateway::payload::incoming::{
    GuildCreate, GuildUpdate, InteractionCreate, MemberAdd, MemberChunk, MemberRemove,
    MessageDelete, MessageUpdate, PresenceUpdate, ReactionAdd, Ready, TypingStart,
};
use twilight_model::guild::{Emoji, Member, Role};
use twilight_model::oauth::Application;
use twilight_model::user::{CurrentUser, User};

const USER: &[&str] = &["id", "username", "discriminator", "global_name", "avatar"];
const MEMBER: &[&str] = &["roles", "joined_at", "deaf", "mute", "flags"];
const ROLE: &[&str] = &[
    "id",
    "name",
    "color",
    "colors",
    "hoist",
    "position",
    "permissions",
    "managed",
    "mentionable",
    "flags",
];
const CHANNEL: &[&str] = &["id", "type"];
const EMOJI: &[&str] = &["id", "name"];
const GUILD: &[&str] = &[
    "id",
    "name",
    "icon",
    "splash",
    "discovery_splash",
    "owner_id",
    "afk_channel_id",
    "afk_timeout",
    "verification_level",
    "default_message_notifications",
    "explicit_content_filter",
    "roles",
    "emojis",
    "features",
    "mfa_level",
    "application_id",
    "system_channel_id",
    "system_channel_flags",
    "rules_channel_id",
    "vanity_url_code",
    "description",
    "banner",
    "premium_tier",
    "preferred_locale",
    "public_updates_channel_id",
    "nsfw_level",
    "premium_progress_bar_enabled",
    "safety_alerts_channel_id",
];
/// What GUILD_CREATE adds to the guild object.
const GUILD_CREATE: &[&str] = &[
    "joined_at",
    "large",
    "member_count",
    "voice_states",
    "members",
    "channels",
    "threads",
    "presences",
    "stage_instances",
    "guild_scheduled_events",
    "soundboard_sounds",
];
const MESSAGE: &[&str] = &[
    "id",
    "channel_id",
    "author",
    "content",
    "timestamp",
    "edited_timestamp",
    "tts",
    "mention_everyone",
    "mentions",
    "mention_roles",
    "attachments",
    "embeds",
    "pinned",
    "type",
];
const INTERACTION: &[&str] = &[
    "id",
    "application_id",
    "type",
    "token",
    "version",
    "app_permissions",
    "entitlements",
    "authorizing_integration_owners",
    "attachment_size_limit",
];
const APPLICATION: &[&str] = &[
    "id",
    "name",
    "icon",
    "description",
    "bot_public",
    "bot_require_code_grant",
    "verify_key",
    "team",
];
const READY: &[&str] = &[
    "v",
    "user",
    "guilds",
    "session_id",
    "resume_gateway_url",
    "application",
];
const PRESENCE: &[&str] = &["user", "guild_id", "status", "activities", "client_status"];

/// `keys` of `object` that are missing, with where.
fn missing(object: &Value, keys: &[&str], at: &str, out: &mut Vec<String>) {
    for key in keys {
        if object.get(key).is_none() {
            out.push(format!("{at}.{key}"));
        }
    }
}

fn parses<T: DeserializeOwned>(value: &Value, what: &str) {
    if let Err(e) = serde_json::from_value::<T>(value.clone()) {
        panic!("{what} does not parse with twilight-model: {e}\n{value}");
    }
}

fn check_user(user: &Value, at: &str, out: &mut Vec<String>) {
    parses::<User>(user, at);
    missing(user, USER, at, out);
}

fn check_member(member: &Value, at: &str, out: &mut Vec<String>) {
    missing(member, MEMBER, at, out);
    if let Some(user) = member.get("user") {
        check_user(user, &format!("{at}.user"), out);
    }
}

fn check_message(message: &Value, at: &str, out: &mut Vec<String>) {
    parses::<Message>(message, at);
    missing(message, MESSAGE, at, out);
    check_user(&message["author"], &format!("{at}.author"), out);
    if let Some(member) = message.get("member") {
        check_member(member, &format!("{at}.member"), out);
    }
}

fn check_guild(guild: &Value, at: &str, out: &mut Vec<String>) {
    missing(guild, GUILD, at, out);
    for role in guild["roles"].as_array().unwrap() {
        parses::<Role>(role, "role");
        missing(role, ROLE, &format!("{at}.roles[]"), out);
    }
    for emoji in guild["emojis"].as_array().unwrap() {
        parses::<Emoji>(emoji, "emoji");
        missing(emoji, EMOJI, &format!("{at}.emojis[]"), out);
    }
}

fn world() -> SimConfig {
    SimConfig {
        guilds: 4,
        shards: 1,
        members_per_guild: 3,
        time_scale: 0.01,
        privileged_intents: vec![
            "GUILD_MEMBERS".to_owned(),
            "GUILD_PRESENCES".to_owned(),
            "MESSAGE_CONTENT".to_owned(),
        ],
        shape: GuildShape {
            emojis: 2,
            ..GuildShape::default()
        },
        mix: EventMix {
            events_per_sec: 200.0,
            weights: EventWeights {
                message_create: 1.0,
                message_update: 1.0,
                message_delete: 1.0,
                guild_member_add: 1.0,
                guild_member_remove: 1.0,
                message_reaction_add: 1.0,
                typing_start: 1.0,
                presence_update: 1.0,
                guild_update: 1.0,
                interaction_create: 1.0,
                guild_delete: 0.0,
            },
            ..EventMix::default()
        },
        ..SimConfig::default()
    }
}

/// One dispatch `d` of each event name seen, until `wanted` are all there.
async fn dispatches(sim: &SimHandle, wanted: &[&str]) -> HashMap<String, Value> {
    let url = format!("{}/?v=10&encoding=json", sim.gateway_url());
    let mut ws = connect_async(url).await.unwrap().0;
    let identify = json!({"op": 2, "d": {
        "token": TOKEN,
        "intents": (1 << 17) - 1,
        "shard": [0, 1],
        "properties": {"os": "linux", "browser": "objects", "device": "objects"},
    }});
    let mut seen = HashMap::new();
    let deadline = Instant::now() + WAIT;
    let mut asked_members = false;
    while !wanted.iter().all(|t| seen.contains_key(*t)) {
        let frame = match timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(frame))) => frame,
            other => panic!("no {wanted:?} in time (have {:?}): {other:?}", seen.keys()),
        };
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let payload: Value = serde_json::from_str(&text).unwrap();
        match (payload["op"].as_u64(), payload["t"].as_str()) {
            (Some(10), _) => {
                ws.send(WsMessage::Text(identify.to_string().into()))
                    .await
                    .unwrap();
            }
            (Some(0), Some(t)) => {
                if t == "GUILD_CREATE" && !asked_members {
                    asked_members = true;
                    let request = json!({"op": 8, "d": {
                        "guild_id": payload["d"]["id"], "query": "", "limit": 0,
                    }});
                    ws.send(WsMessage::Text(request.to_string().into()))
                        .await
                        .unwrap();
                }
                seen.entry(t.to_owned()).or_insert(payload["d"].clone());
            }
            _ => {}
        }
    }
    seen
}

/// An authorized GET (or POST with `body`) and its JSON.
async fn rest(sim: &SimHandle, method: &str, path: &str, body: &str) -> Value {
    let mut stream = TcpStream::connect(sim.addr()).await.unwrap();
    let head = format!(
        "{method} /api/v10{path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\
         authorization: Bot {TOKEN}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        sim.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn every_payload_has_every_documented_required_field() {
    let sim = start(world()).await;
    let wanted = [
        "READY",
        "GUILD_CREATE",
        "GUILD_MEMBERS_CHUNK",
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_REMOVE",
        "MESSAGE_REACTION_ADD",
        "TYPING_START",
        "PRESENCE_UPDATE",
        "GUILD_UPDATE",
        "INTERACTION_CREATE",
    ];
    let seen = dispatches(&sim, &wanted).await;
    let mut out = Vec::new();

    let ready = &seen["READY"];
    parses::<Ready>(ready, "READY");
    missing(ready, READY, "READY", &mut out);
    check_user(&ready["user"], "READY.user", &mut out);
    missing(
        &ready["application"],
        &["id", "flags"],
        "READY.application",
        &mut out,
    );

    let create = &seen["GUILD_CREATE"];
    parses::<GuildCreate>(create, "GUILD_CREATE");
    check_guild(create, "GUILD_CREATE", &mut out);
    missing(create, GUILD_CREATE, "GUILD_CREATE", &mut out);
    for channel in create["channels"].as_array().unwrap() {
        parses::<Channel>(channel, "channel");
        missing(channel, CHANNEL, "GUILD_CREATE.channels[]", &mut out);
    }
    for member in create["members"].as_array().unwrap() {
        parses::<Member>(member, "member");
        check_member(member, "GUILD_CREATE.members[]", &mut out);
    }
    for presence in create["presences"].as_array().unwrap() {
        missing(
            presence,
            &["user", "status", "activities", "client_status"],
            "GUILD_CREATE.presences[]",
            &mut out,
        );
    }

    let update = &seen["GUILD_UPDATE"];
    parses::<GuildUpdate>(update, "GUILD_UPDATE");
    check_guild(update, "GUILD_UPDATE", &mut out);

    let chunk = &seen["GUILD_MEMBERS_CHUNK"];
    parses::<MemberChunk>(chunk, "GUILD_MEMBERS_CHUNK");
    missing(
        chunk,
        &["guild_id", "members", "chunk_index", "chunk_count"],
        "GUILD_MEMBERS_CHUNK",
        &mut out,
    );
    for member in chunk["members"].as_array().unwrap() {
        check_member(member, "GUILD_MEMBERS_CHUNK.members[]", &mut out);
    }

    check_message(&seen["MESSAGE_CREATE"], "MESSAGE_CREATE", &mut out);
    parses::<MessageUpdate>(&seen["MESSAGE_UPDATE"], "MESSAGE_UPDATE");
    check_message(&seen["MESSAGE_UPDATE"], "MESSAGE_UPDATE", &mut out);
    parses::<MessageDelete>(&seen["MESSAGE_DELETE"], "MESSAGE_DELETE");
    missing(
        &seen["MESSAGE_DELETE"],
        &["id", "channel_id"],
        "MESSAGE_DELETE",
        &mut out,
    );

    let add = &seen["GUILD_MEMBER_ADD"];
    parses::<MemberAdd>(add, "GUILD_MEMBER_ADD");
    check_member(add, "GUILD_MEMBER_ADD", &mut out);
    missing(add, &["guild_id", "user"], "GUILD_MEMBER_ADD", &mut out);
    let remove = &seen["GUILD_MEMBER_REMOVE"];
    parses::<MemberRemove>(remove, "GUILD_MEMBER_REMOVE");
    missing(
        remove,
        &["guild_id", "user"],
        "GUILD_MEMBER_REMOVE",
        &mut out,
    );
    check_user(&remove["user"], "GUILD_MEMBER_REMOVE.user", &mut out);

    let reaction = &seen["MESSAGE_REACTION_ADD"];
    parses::<ReactionAdd>(reaction, "MESSAGE_REACTION_ADD");
    missing(
        reaction,
        &[
            "user_id",
            "channel_id",
            "message_id",
            "emoji",
            "burst",
            "type",
        ],
        "MESSAGE_REACTION_ADD",
        &mut out,
    );
    let typing = &seen["TYPING_START"];
    parses::<TypingStart>(typing, "TYPING_START");
    missing(
        typing,
        &["channel_id", "user_id", "timestamp"],
        "TYPING_START",
        &mut out,
    );
    let presence = &seen["PRESENCE_UPDATE"];
    parses::<PresenceUpdate>(presence, "PRESENCE_UPDATE");
    missing(presence, PRESENCE, "PRESENCE_UPDATE", &mut out);

    let interaction = &seen["INTERACTION_CREATE"];
    parses::<InteractionCreate>(interaction, "INTERACTION_CREATE");
    missing(interaction, INTERACTION, "INTERACTION_CREATE", &mut out);
    check_member(
        &interaction["member"],
        "INTERACTION_CREATE.member",
        &mut out,
    );

    // REST objects.
    let me = rest(&sim, "GET", "/users/@me", "").await;
    parses::<CurrentUser>(&me, "GET /users/@me");
    missing(&me, USER, "GET /users/@me", &mut out);
    let application = rest(&sim, "GET", "/applications/@me", "").await;
    parses::<Application>(&application, "GET /applications/@me");
    missing(&application, APPLICATION, "GET /applications/@me", &mut out);
    let channel = sim.guilds()[0].channel_ids[0];
    let posted = rest(
        &sim,
        "POST",
        &format!("/channels/{channel}/messages"),
        r#"{"content":"objects"}"#,
    )
    .await;
    check_message(&posted, "POST /channels/{id}/messages", &mut out);

    assert!(out.is_empty(), "missing documented fields: {out:#?}");
    sim.shutdown().await;
}
