//! Every builder's output must deserialize into the twilight-model type a
//! client uses for it, through twilight's own frame scanner for gateway
//! frames.

use serde::de::DeserializeSeed;
use serde_json::Value;
use twilight_model::application::interaction::InteractionData;
use twilight_model::application::interaction::application_command::CommandOptionValue;
use twilight_model::channel::Message;
use twilight_model::gateway::connection_info::BotConnectionInfo;
use twilight_model::gateway::event::{DispatchEvent, GatewayEvent, GatewayEventDeserializer};
use twilight_model::gateway::payload::incoming::{
    GuildCreate, GuildDelete, GuildUpdate, InteractionCreate, MemberAdd, MemberChunk, MemberRemove,
    MessageCreate, MessageDelete, MessageUpdate, PresenceUpdate, ReactionAdd, Ready, TypingStart,
};
use twilight_model::gateway::presence::Status;
use twilight_model::guild::Permissions;
use twilight_model::oauth::Application;
use twilight_model::user::CurrentUser;

use super::*;
use crate::config::SimConfig;

/// A session with every intent and the largest `large_threshold`.
const EVERYTHING: Wants = Wants {
    intents: Intents::all(),
    large_threshold: 250,
};

fn world() -> World {
    World::generate(&SimConfig {
        guilds: 8,
        shards: 2,
        ..SimConfig::default()
    })
}

/// Parses a frame the way twilight-gateway does.
fn parse_frame(frame: &str) -> GatewayEvent {
    let seed = GatewayEventDeserializer::from_json(frame).expect("op, t and s found");
    let mut json = serde_json::Deserializer::from_str(frame);
    seed.deserialize(&mut json).expect("frame deserializes")
}

fn dispatch_of(event: &str, d: &Value) -> DispatchEvent {
    match parse_frame(&dispatch(event, 7, &d.to_string())) {
        GatewayEvent::Dispatch(7, event) => event,
        other => panic!("expected dispatch 7, got {other:?}"),
    }
}

#[test]
fn control_frames_parse() {
    assert!(matches!(
        parse_frame(&hello(41_250)),
        GatewayEvent::Hello(h) if h.heartbeat_interval == 41_250
    ));
    assert!(matches!(
        parse_frame(&heartbeat_ack()),
        GatewayEvent::HeartbeatAck
    ));
    assert!(matches!(
        parse_frame(&invalid_session(false)),
        GatewayEvent::InvalidateSession(false)
    ));
}

#[test]
fn ready_deserializes() {
    let world = world();
    let d = ready(&world, 1, 2, "abc", "ws://127.0.0.1:1");
    let parsed: Ready = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.session_id, "abc");
    assert_eq!(parsed.resume_gateway_url, "ws://127.0.0.1:1");
    assert_eq!(parsed.guilds.len(), world.shard_guild_count(1));
    assert!(parsed.guilds.iter().all(|g| g.unavailable));
    assert_eq!(parsed.shard.map(|s| (s.number(), s.total())), Some((1, 2)));
    assert_eq!(parsed.user.id.get(), world.bot.user_id);
    assert!(parsed.user.bot);
    assert_eq!(parsed.version, 10);
    assert!(matches!(dispatch_of("READY", &d), DispatchEvent::Ready(_)));
}

#[test]
fn guild_create_deserializes_as_an_available_guild() {
    let world = world();
    let guild = &world.guilds()[3];
    let d = guild_create(&world, guild, EVERYTHING);
    let GuildCreate::Available(parsed) = serde_json::from_value(d.clone()).unwrap() else {
        panic!("guild parsed as unavailable");
    };
    assert_eq!(parsed.id.get(), guild.id);
    assert_eq!(parsed.owner_id.get(), guild.owner.id);
    assert_eq!(parsed.channels.len(), guild.channel_count as usize);
    assert!(
        parsed
            .channels
            .iter()
            .all(|c| c.guild_id.map(|g| g.get()) == Some(guild.id))
    );
    // Owner, members and the bot itself.
    assert_eq!(parsed.members.len(), guild.members.len() + 2);
    assert_eq!(parsed.member_count, Some(guild.members.len() as u64 + 2));
    let everyone = parsed.roles.iter().find(|r| r.name == "@everyone").unwrap();
    assert_eq!(
        everyone.id.get(),
        guild.id,
        "@everyone's id is the guild id"
    );
    assert!(everyone.permissions.contains(Permissions::SEND_MESSAGES));
    let bot_role = parsed.roles.iter().find(|r| r.managed).unwrap();
    assert_eq!(
        bot_role
            .tags
            .as_ref()
            .and_then(|t| t.bot_id)
            .map(|id| id.get()),
        Some(world.bot.user_id)
    );
    assert_eq!(parsed.unavailable, Some(false));
    assert!(matches!(
        dispatch_of("GUILD_CREATE", &d),
        DispatchEvent::GuildCreate(g) if matches!(*g, GuildCreate::Available(_))
    ));
}

#[test]
fn message_create_deserializes() {
    let world = world();
    let guild = &world.guilds()[0];
    let author = Author::in_guild(guild, guild.members[0].id, "unused");
    let d = message(&MessageSpec {
        message_id: 1_234_567_890_123_456_789,
        channel_id: guild.channel_id(0),
        guild_id: Some(guild.id),
        author,
        member_roles: Some(&[]),
        content: "!ping",
        embeds: Value::Array(Vec::new()),
        webhook_id: None,
        application_id: None,
    });
    let parsed: MessageCreate = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.content, "!ping");
    assert_eq!(parsed.author.id.get(), guild.members[0].id);
    assert_eq!(parsed.author.name, guild.members[0].username);
    assert!(!parsed.author.bot);
    assert_eq!(parsed.guild_id.map(|g| g.get()), Some(guild.id));
    assert!(parsed.member.is_some());
    assert!(matches!(
        dispatch_of("MESSAGE_CREATE", &d),
        DispatchEvent::MessageCreate(_)
    ));
}

#[test]
fn unknown_author_gets_a_made_up_name() {
    let world = world();
    let guild = &world.guilds()[0];
    let author = Author::in_guild(guild, 42, "user42");
    assert_eq!((author.id, author.username), (42, "user42"));
}

#[test]
fn interaction_create_deserializes() {
    let world = world();
    let guild = &world.guilds()[1];
    let user = Author::in_guild(guild, guild.owner.id, "unused");
    let d = interaction_create(&InteractionSpec {
        interaction_id: 1_234_567_890_123_456_789,
        token: "tok",
        application_id: world.bot.application_id,
        guild,
        channel_id: guild.channel_id(0),
        user,
        command_id: 99_999_999_999,
        command: "config",
        options: &[("key", "prefix"), ("value", "?")],
    });
    let parsed: InteractionCreate = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.token, "tok");
    assert_eq!(parsed.guild_id.map(|g| g.get()), Some(guild.id));
    let member = parsed.member.as_ref().unwrap();
    assert_eq!(member.user.as_ref().unwrap().id.get(), guild.owner.id);
    assert!(
        member
            .permissions
            .unwrap()
            .contains(Permissions::ADMINISTRATOR)
    );
    let Some(InteractionData::ApplicationCommand(data)) = &parsed.data else {
        panic!("expected command data");
    };
    assert_eq!(data.name, "config");
    assert_eq!(data.options.len(), 2);
    assert_eq!(data.options[1].name, "value");
    assert!(matches!(&data.options[1].value, CommandOptionValue::String(v) if v == "?"));
    assert!(matches!(
        dispatch_of("INTERACTION_CREATE", &d),
        DispatchEvent::InteractionCreate(_)
    ));
}

#[test]
fn members_get_everyone_permissions_in_interactions() {
    let world = world();
    let guild = &world.guilds()[1];
    let user = Author::in_guild(guild, guild.members[0].id, "unused");
    let d = interaction_create(&InteractionSpec {
        interaction_id: 1,
        token: "t",
        application_id: world.bot.application_id,
        guild,
        channel_id: guild.channel_id(0),
        user,
        command_id: 2,
        command: "ping",
        options: &[],
    });
    let parsed: InteractionCreate = serde_json::from_value(d).unwrap();
    let permissions = parsed.member.as_ref().unwrap().permissions.unwrap();
    assert!(!permissions.contains(Permissions::ADMINISTRATOR));
    assert!(permissions.contains(Permissions::SEND_MESSAGES));
}

#[test]
fn resumed_parses() {
    assert!(matches!(
        dispatch_of("RESUMED", &resumed()),
        DispatchEvent::Resumed
    ));
}

#[test]
fn rest_objects_deserialize() {
    let world = world();
    let user: CurrentUser = serde_json::from_value(current_user(&world.bot)).unwrap();
    assert!(user.bot);
    assert_eq!(user.id.get(), world.bot.user_id);

    let app: Application = serde_json::from_value(application(&world.bot)).unwrap();
    assert_eq!(app.id.get(), world.bot.application_id);
    assert!(app.team.is_none());

    let info: BotConnectionInfo =
        serde_json::from_value(gateway_bot("ws://x", 4, 1000, 998, 5_000, 1)).unwrap();
    assert_eq!(info.shards, 4);
    assert_eq!(info.session_start_limit.remaining, 998);

    let guild = &world.guilds()[0];
    let reply = message(&MessageSpec {
        message_id: 1_234_567_890_123_456_789,
        channel_id: guild.channel_id(0),
        guild_id: Some(guild.id),
        author: Author {
            id: world.bot.user_id,
            username: &world.bot.username,
            joined_ms: guild.bot_joined_ms,
            bot: true,
        },
        member_roles: None,
        content: "pong",
        embeds: serde_json::json!([{"title": "hi", "type": "rich"}]),
        webhook_id: Some(world.bot.application_id),
        application_id: Some(world.bot.application_id),
    });
    let parsed: Message = serde_json::from_value(reply).unwrap();
    assert!(parsed.author.bot);
    assert!(parsed.member.is_none());
    assert_eq!(parsed.embeds.len(), 1);
}

fn shaped_world() -> World {
    World::generate(&SimConfig {
        guilds: 8,
        shards: 2,
        channels_per_guild: 20,
        shape: crate::config::GuildShape {
            roles: 15,
            emojis: 10,
            large_share: 0.5,
            large_members: 2500,
        },
        ..SimConfig::default()
    })
}

#[test]
fn shaped_and_large_guild_create_deserializes() {
    let world = shaped_world();
    let large = world
        .guilds()
        .iter()
        .find(|g| g.large_members.is_some())
        .expect("a large guild");
    let small = world
        .guilds()
        .iter()
        .find(|g| g.large_members.is_none())
        .expect("a small guild");
    for guild in [large, small] {
        let d = guild_create(&world, guild, EVERYTHING);
        let GuildCreate::Available(parsed) = serde_json::from_value(d.clone()).unwrap() else {
            panic!("guild parsed as unavailable");
        };
        assert_eq!(parsed.channels.len(), 20);
        assert_eq!(parsed.roles.len(), 15);
        assert_eq!(parsed.emojis.len(), 10);
        // Only the stored members travel, whatever the count says.
        assert_eq!(parsed.members.len(), guild.members.len() + 2);
        assert!(matches!(
            dispatch_of("GUILD_CREATE", &d),
            DispatchEvent::GuildCreate(_)
        ));
        let mut ids: Vec<u64> = parsed.roles.iter().map(|r| r.id.get()).collect();
        ids.extend(parsed.emojis.iter().map(|e| e.id.get()));
        ids.extend(parsed.channels.iter().map(|c| c.id.get()));
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "ids are unique");
    }
    let parse = |g| match serde_json::from_value(guild_create(&world, g, EVERYTHING)).unwrap() {
        GuildCreate::Available(g) => g,
        GuildCreate::Unavailable(_) => panic!("unavailable"),
    };
    assert!(parse(large).large);
    assert_eq!(parse(large).member_count, Some(2500));
    assert!(!parse(small).large);
}

#[test]
fn guild_create_members_follow_presences_and_large_threshold() {
    let world = shaped_world();
    let large = world
        .guilds()
        .iter()
        .find(|g| g.large_members.is_some())
        .expect("a large guild");
    let small = world
        .guilds()
        .iter()
        .find(|g| g.large_members.is_none())
        .expect("a small guild");
    let parse = |g, wants| match serde_json::from_value(guild_create(&world, g, wants)).unwrap() {
        GuildCreate::Available(g) => g,
        GuildCreate::Unavailable(_) => panic!("unavailable"),
    };
    // Without GUILD_PRESENCES: the bot alone (no one is in voice).
    let plain = Wants {
        intents: Intents::GUILDS,
        large_threshold: 50,
    };
    for guild in [large, small] {
        let parsed = parse(guild, plain);
        assert_eq!(parsed.members.len(), 1);
        assert_eq!(parsed.members[0].user.id.get(), world.bot.user_id);
        assert!(parsed.presences.is_empty());
    }
    // With it: a large guild sends its online members only, with presences.
    let presences = Wants {
        intents: Intents::GUILDS | Intents::GUILD_PRESENCES,
        large_threshold: 50,
    };
    let parsed = parse(large, presences);
    assert!(parsed.large);
    assert_eq!(parsed.members.len(), large.members.len() + 2);
    assert_eq!(parsed.presences.len(), large.members.len() + 2);
    // `large_threshold` decides `large`: 7 members are large above 5, not at 50.
    let members = small.member_count();
    assert!(!parse(small, presences).large);
    let low = Wants {
        large_threshold: members - 1,
        ..presences
    };
    assert!(parse(small, low).large);
}

#[test]
fn guild_update_and_delete_deserialize() {
    let world = shaped_world();
    let guild = &world.guilds()[1];
    let d = guild_object(&world, guild);
    let parsed: GuildUpdate = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.id.get(), guild.id);
    assert_eq!(parsed.roles.len(), 15);
    assert!(matches!(
        dispatch_of("GUILD_UPDATE", &d),
        DispatchEvent::GuildUpdate(_)
    ));
    let d = guild_delete(guild.id);
    let parsed: GuildDelete = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.id.get(), guild.id);
    assert_eq!(parsed.unavailable, None, "a removal, not an outage");
    assert!(matches!(
        dispatch_of("GUILD_DELETE", &d),
        DispatchEvent::GuildDelete(_)
    ));
}

#[test]
fn message_update_and_delete_deserialize() {
    let world = world();
    let guild = &world.guilds()[0];
    let author = Author::in_guild(guild, guild.members[0].id, "unused");
    let content = "x".repeat(1024);
    let d = message_update(
        &MessageSpec {
            message_id: 1_234_567_890_123_456_789,
            channel_id: guild.channel_id(0),
            guild_id: Some(guild.id),
            author,
            member_roles: Some(&[]),
            content: &content,
            embeds: Value::Array(Vec::new()),
            webhook_id: None,
            application_id: None,
        },
        1_700_000_000_000,
    );
    let parsed: MessageUpdate = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.content.len(), 1024);
    assert!(parsed.edited_timestamp.is_some());
    assert!(matches!(
        dispatch_of("MESSAGE_UPDATE", &d),
        DispatchEvent::MessageUpdate(_)
    ));
    let d = message_delete(1_234_567_890_123_456_789, guild.channel_id(0), guild.id);
    let parsed: MessageDelete = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.guild_id.map(|g| g.get()), Some(guild.id));
    assert!(matches!(
        dispatch_of("MESSAGE_DELETE", &d),
        DispatchEvent::MessageDelete(_)
    ));
}

#[test]
fn member_add_and_remove_deserialize() {
    let world = world();
    let guild = &world.guilds()[0];
    let d = guild_member_add(
        guild.id,
        1_234_567_890_123_456_789,
        "newcomer",
        1_700_000_000_000,
    );
    let parsed: MemberAdd = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.guild_id.get(), guild.id);
    assert_eq!(parsed.user.name, "newcomer");
    assert!(matches!(
        dispatch_of("GUILD_MEMBER_ADD", &d),
        DispatchEvent::MemberAdd(_)
    ));
    let d = guild_member_remove(guild.id, guild.members[0].id, &guild.members[0].username);
    let parsed: MemberRemove = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.user.id.get(), guild.members[0].id);
    assert!(matches!(
        dispatch_of("GUILD_MEMBER_REMOVE", &d),
        DispatchEvent::MemberRemove(_)
    ));
}

#[test]
fn reaction_typing_and_presence_deserialize() {
    let world = shaped_world();
    let guild = &world.guilds()[0];
    let author = Author::in_guild(guild, guild.members[0].id, "unused");
    let emoji = guild.emojis().next().unwrap();
    for custom in [Some((emoji.id, &*emoji.name)), None] {
        let d = message_reaction_add(&ReactionSpec {
            guild_id: guild.id,
            channel_id: guild.channel_id(1),
            message_id: 1_234_567_890_123_456_789,
            user: author,
            emoji: custom,
        });
        let parsed: ReactionAdd = serde_json::from_value(d.clone()).unwrap();
        assert_eq!(parsed.user_id.get(), author.id);
        assert!(matches!(
            dispatch_of("MESSAGE_REACTION_ADD", &d),
            DispatchEvent::ReactionAdd(_)
        ));
    }
    let d = typing_start(guild.id, guild.channel_id(0), author, 1_700_000_000);
    let parsed: TypingStart = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.user_id.get(), author.id);
    assert!(matches!(
        dispatch_of("TYPING_START", &d),
        DispatchEvent::TypingStart(_)
    ));
    let d = presence_update(guild.id, author.id, "dnd");
    let parsed: PresenceUpdate = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(parsed.status, Status::DoNotDisturb);
    assert!(matches!(
        dispatch_of("PRESENCE_UPDATE", &d),
        DispatchEvent::PresenceUpdate(_)
    ));
}

#[test]
fn member_chunk_deserializes_with_its_nonce() {
    let world = shaped_world();
    let guild = world
        .guilds()
        .iter()
        .find(|g| g.large_members.is_some())
        .unwrap();
    let members: Vec<_> = guild
        .all_members()
        .take(3)
        .map(|u| (u, Vec::new(), false))
        .collect();
    let d = guild_members_chunk(&ChunkSpec {
        guild_id: guild.id,
        members: &members,
        chunk_index: 1,
        chunk_count: 3,
        not_found: &[42],
        nonce: Some("abc"),
    });
    let parsed: MemberChunk = serde_json::from_value(d.clone()).unwrap();
    assert_eq!((parsed.chunk_index, parsed.chunk_count), (1, 3));
    assert_eq!(parsed.nonce.as_deref(), Some("abc"));
    assert_eq!(parsed.members.len(), 3);
    assert_eq!(parsed.not_found[0].get(), 42);
    assert!(matches!(
        dispatch_of("GUILD_MEMBERS_CHUNK", &d),
        DispatchEvent::MemberChunk(_)
    ));
}
