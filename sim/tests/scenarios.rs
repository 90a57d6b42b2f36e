//! Scenarios at scale with the real twilight 0.18 shard: guild shapes,
//! large guilds answered to op 8, the weighted event mix and its intents.
//! The 100,000-guild measurement is `#[ignore]`d (see `sim/README.md`).

mod common;

use common::*;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use protonn_sim::{EventMix, EventWeights, GuildShape, SimConfig, SimHandle};
use tokio::time::Instant;
use twilight_gateway::{ConfigBuilder, Event, EventType, Intents, Message, Shard, ShardId};
use twilight_model::gateway::payload::outgoing::RequestGuildMembers;
use twilight_model::id::Id;

fn all_privileged() -> Vec<String> {
    ["GUILD_MEMBERS", "GUILD_PRESENCES", "MESSAGE_CONTENT"]
        .map(str::to_owned)
        .to_vec()
}

fn every_intent() -> Intents {
    Intents::GUILDS
        | Intents::GUILD_MEMBERS
        | Intents::GUILD_PRESENCES
        | Intents::GUILD_MESSAGES
        | Intents::GUILD_MESSAGE_REACTIONS
        | Intents::GUILD_MESSAGE_TYPING
        | Intents::MESSAGE_CONTENT
}

fn shard(sim: &SimHandle, id: u32, intents: Intents) -> Shard {
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    Shard::with_config(ShardId::new(id, sim.config().shards), config)
}

/// Large guilds (2,500 members; without GUILD_PRESENCES only the bot in
/// GUILD_CREATE) answer op 8 with three GUILD_MEMBERS_CHUNKs carrying every
/// member and the nonce. One request per guild: op 8 is rate limited per
/// guild (`gateway.rs` tests the RATE_LIMITED answer).
#[tokio::test]
async fn op_8_is_answered_with_member_chunks_and_the_nonce() {
    let sim = start(SimConfig {
        guilds: 6,
        shards: 1,
        privileged_intents: all_privileged(),
        shape: GuildShape {
            roles: 15,
            emojis: 10,
            large_share: 1.0,
            large_members: 2500,
        },
        channels_per_guild: 20,
        ..SimConfig::default()
    })
    .await;
    let mut shard = shard(&sim, 0, Intents::GUILDS | Intents::GUILD_MEMBERS);
    let deadline = Instant::now() + WAIT;
    let mut guild_ids = Vec::new();
    while guild_ids.len() < 2 {
        if let Event::GuildCreate(guild) = next(&mut shard, deadline).await {
            let twilight_model::gateway::payload::incoming::GuildCreate::Available(guild) = *guild
            else {
                panic!("unavailable guild");
            };
            assert!(guild.large);
            assert_eq!(guild.member_count, Some(2500));
            assert_eq!(guild.members.len(), 1, "the bot alone");
            assert_eq!(guild.roles.len(), 15);
            assert_eq!(guild.emojis.len(), 10);
            assert_eq!(guild.channels.len(), 20);
            guild_ids.push((guild.id, [guild.owner_id, guild.members[0].user.id]));
        }
    }
    let guild_id = guild_ids[0].0;
    let request = RequestGuildMembers::builder(guild_id)
        .nonce("chunk-test")
        .query("", None);
    shard.command(&request);
    let mut members = HashSet::new();
    let mut indices = Vec::new();
    while indices.len() < 3 {
        if let Event::MemberChunk(chunk) = next(&mut shard, deadline).await {
            assert_eq!(chunk.guild_id, guild_id);
            assert_eq!(chunk.chunk_count, 3);
            assert_eq!(chunk.nonce.as_deref(), Some("chunk-test"));
            indices.push(chunk.chunk_index);
            members.extend(chunk.members.iter().map(|m| m.user.id));
        }
    }
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(members.len(), 2500, "every member once");
    // By id, in another guild: two known (its owner, the bot), one unknown.
    let (other_guild, known) = guild_ids[1];
    let unknown = Id::new(12_345);
    let request = RequestGuildMembers::builder(other_guild)
        .nonce("by-id")
        .user_ids(vec![known[0], known[1], unknown])
        .unwrap();
    shard.command(&request);
    loop {
        if let Event::MemberChunk(chunk) = next(&mut shard, deadline).await {
            assert_eq!(chunk.nonce.as_deref(), Some("by-id"));
            assert_eq!(chunk.members.len(), 2);
            assert_eq!(chunk.not_found, [unknown]);
            break;
        }
    }
    sim.shutdown().await;
}

/// What a GUILD_CREATE said: `large`, `member_count`, and how many
/// `members` and `presences` it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    large: bool,
    member_count: u64,
    members: usize,
    presences: usize,
}

/// The GUILD_CREATEs a twilight shard with `intents` and `large_threshold`
/// gets, by guild id.
async fn guild_creates(
    sim: &SimHandle,
    intents: Intents,
    large_threshold: u64,
) -> HashMap<u64, Sent> {
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .large_threshold(large_threshold)
        .build();
    let mut shard = Shard::with_config(ShardId::new(0, 1), config);
    let deadline = Instant::now() + WAIT;
    let mut seen = HashMap::new();
    while seen.len() < sim.guilds().len() {
        if let Event::GuildCreate(guild) = next(&mut shard, deadline).await {
            let twilight_model::gateway::payload::incoming::GuildCreate::Available(guild) = *guild
            else {
                panic!("unavailable guild");
            };
            let sent = Sent {
                large: guild.large,
                member_count: guild.member_count.unwrap(),
                members: guild.members.len(),
                presences: guild.presences.len(),
            };
            seen.insert(guild.id.get(), sent);
        }
    }
    seen
}

/// IDENTIFY's `large_threshold` decides `large`, and GUILD_PRESENCES what
/// `members` holds: the bot alone without it; with it every member of a
/// guild up to the threshold, only the online ones of a larger one.
#[tokio::test]
async fn large_threshold_decides_large_and_the_members_sent() {
    let sim = start(SimConfig {
        guilds: 6,
        shards: 1,
        members_per_guild: 100,
        // A 5 ms identify window: the sessions below follow each other.
        time_scale: 0.001,
        privileged_intents: all_privileged(),
        shape: GuildShape {
            large_share: 0.5,
            large_members: 300,
            ..GuildShape::default()
        },
        ..SimConfig::default()
    })
    .await;
    let presences = Intents::GUILDS | Intents::GUILD_PRESENCES;
    let at_50 = guild_creates(&sim, presences, 50).await;
    let at_250 = guild_creates(&sim, presences, 250).await;
    let plain = guild_creates(&sim, Intents::GUILDS, 250).await;
    // Stored members: the owner, 100 and the bot, all online; a large
    // guild's other 198 are offline.
    let online = 102;
    let mut counts = Vec::new();
    for (id, sent) in &at_50 {
        counts.push(sent.member_count);
        assert!(sent.large, "more than 50 members: {sent:?}");
        assert_eq!((sent.members, sent.presences), (online, online));
        let at_250 = at_250[id];
        assert_eq!(at_250.large, sent.member_count > 250, "{at_250:?}");
        assert_eq!(
            at_250.members, online,
            "only online members of a large guild"
        );
        assert_eq!((plain[id].members, plain[id].presences), (1, 0));
    }
    counts.sort_unstable();
    counts.dedup();
    assert_eq!(counts, [102, 300], "both kinds of guild present");
    sim.shutdown().await;
}

const MIX_KINDS: [EventType; 11] = [
    EventType::MessageCreate,
    EventType::MessageUpdate,
    EventType::MessageDelete,
    EventType::MemberAdd,
    EventType::MemberRemove,
    EventType::ReactionAdd,
    EventType::TypingStart,
    EventType::PresenceUpdate,
    EventType::GuildUpdate,
    EventType::InteractionCreate,
    EventType::GuildDelete,
];

fn mixed(weights: EventWeights) -> SimConfig {
    SimConfig {
        guilds: 400,
        shards: 2,
        max_concurrency: 2,
        privileged_intents: all_privileged(),
        shape: GuildShape {
            roles: 15,
            emojis: 10,
            ..GuildShape::default()
        },
        mix: EventMix {
            events_per_sec: 2000.0,
            content_bytes: 1024,
            weights,
            ..EventMix::default()
        },
        ..SimConfig::default()
    }
}

/// A twilight shard with every intent sees every kind of the mix, each
/// parsed by twilight, and exactly what the ledger says it was sent.
#[tokio::test]
async fn a_twilight_shard_receives_every_event_of_the_mix() {
    let weights = EventWeights {
        guild_delete: 0.2,
        ..EventWeights {
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
        }
    };
    let sim = start(mixed(weights)).await;
    let mut shards = [
        shard(&sim, 0, every_intent()),
        shard(&sim, 1, every_intent()),
    ];
    let deadline = Instant::now() + WAIT;
    let mut seen: HashMap<EventType, u64> = HashMap::new();
    let mut deleted = HashSet::new();
    while !MIX_KINDS.iter().all(|k| seen.contains_key(k)) {
        for shard in &mut shards {
            let event = next(shard, deadline).await;
            if let Event::GuildDelete(delete) = &event {
                assert!(deleted.insert(delete.id), "a guild is removed once");
                assert_eq!(delete.unavailable, None);
            }
            if let Some(guild_id) = event.guild_id() {
                let removed_earlier =
                    deleted.contains(&guild_id) && !matches!(event, Event::GuildDelete(_));
                assert!(!removed_earlier, "no event from a removed guild");
            }
            *seen.entry(event.kind()).or_default() += 1;
        }
    }
    let ledger = sim.ledger();
    let mut sent: HashMap<&str, u64> = HashMap::new();
    for record in &ledger.dispatches {
        *sent.entry(record.event.as_str()).or_default() += 1;
    }
    for name in [
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "GUILD_MEMBER_ADD",
        "PRESENCE_UPDATE",
        "INTERACTION_CREATE",
    ] {
        assert!(
            sent.get(name).copied().unwrap_or(0) > 0,
            "{name} in the ledger"
        );
    }
    sim.shutdown().await;
}

/// A session without GUILD_MEMBERS, GUILD_PRESENCES, reactions or typing
/// is sent none of those: the ledger holds only what its intents allow.
#[tokio::test]
async fn the_mix_respects_the_session_intents() {
    let sim = start(mixed(EventWeights::benchmark())).await;
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES;
    let mut shards = [shard(&sim, 0, intents), shard(&sim, 1, intents)];
    let deadline = Instant::now() + WAIT;
    let mut messages = 0;
    while messages < 200 {
        for shard in &mut shards {
            if matches!(next(shard, deadline).await, Event::MessageCreate(_)) {
                messages += 1;
            }
        }
    }
    let allowed = [
        "READY",
        "GUILD_CREATE",
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "GUILD_UPDATE",
        "INTERACTION_CREATE",
    ];
    let ledger = sim.ledger();
    assert!(
        ledger
            .dispatches
            .iter()
            .all(|d| allowed.contains(&d.event.as_str())),
        "an event beyond the intents was sent"
    );
    sim.shutdown().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The simulator's own ceiling: 100,000 guilds (20 channels, 15 roles,
/// 10 emojis, 5 members) on 64 shards, the B1 mix with 1 KB messages as
/// fast as it can make them, drained by 64 twilight shards reading raw
/// messages (no event parsing). Run with
/// `cargo test --release -p protonn-sim --test scenarios -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, ~1 min in release"]
async fn ceiling_100k_guilds_64_shards() {
    let shards = 64;
    let config = SimConfig {
        guilds: 100_000,
        shards,
        // A large bot's concurrency: 16 shards identify per 5 s window.
        max_concurrency: 16,
        channels_per_guild: 20,
        // Bounds the replay buffers: 64 sessions of up to 16 MiB each
        // would otherwise hold 1 GiB of GUILD_CREATEs.
        replay_events: 200,
        members_per_guild: 5,
        // A small list; counters stay exact.
        ledger_capacity: 1000,
        privileged_intents: all_privileged(),
        shape: GuildShape {
            roles: 15,
            emojis: 10,
            ..GuildShape::default()
        },
        mix: EventMix {
            events_per_sec: std::env::var("SIM_RATE")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(50_000.0),
            content_bytes: 1024,
            weights: EventWeights::benchmark(),
            ..EventMix::default()
        },
        ..SimConfig::default()
    };
    let rss_start = rss_kib();
    let started = std::time::Instant::now();
    let sim = start(config).await;
    let world_ms = started.elapsed().as_millis();
    let rss_world = rss_kib();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for id in 0..shards {
        let mut shard = shard(&sim, id, every_intent());
        let received = std::sync::Arc::clone(&received);
        tasks.push(tokio::spawn(async move {
            while let Some(message) = futures_util::StreamExt::next(&mut shard).await {
                if let Ok(Message::Text(_)) = message {
                    received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim.stats().ready_shards < shards {
        assert!(Instant::now() < deadline, "shards not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_ms = started.elapsed().as_millis();
    // The burst of 100,000 GUILD_CREATEs is in the ledger's counter once
    // READY is; give the writers a moment, then measure the mix alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_ready = rss_kib();
    let window = Duration::from_secs(20);
    let (d0, r0) = (
        sim.stats().dispatches,
        received.load(std::sync::atomic::Ordering::Relaxed),
    );
    let t0 = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let (d1, r1) = (
        sim.stats().dispatches,
        received.load(std::sync::atomic::Ordering::Relaxed),
    );
    let rss_mix = rss_kib();
    println!(
        "world generated in {world_ms} ms; 64 shards ready after {ready_ms} ms\n\
         dispatches written: {:.0}/s; frames read by the shards: {:.0}/s\n\
         RSS KiB: before {rss_start}, world {rss_world}, after the GUILD_CREATE burst {rss_ready}, \
         after {window:?} of mix {rss_mix}",
        (d1 - d0) as f64 / secs,
        (r1 - r0) as f64 / secs,
    );
    for task in tasks {
        task.abort();
    }
    sim.shutdown().await;
}
