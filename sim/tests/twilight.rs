//! End to end with the real clients the bot uses: twilight-gateway shards
//! and twilight-http against a simulator on a loopback port.

mod common;

use common::*;

use std::time::Duration;

use protonn_sim::{GatewayEventKind, SimConfig, SimHandle};
use tokio::time::{Instant, timeout_at};
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};
use twilight_http::Client;
use twilight_http::error::ErrorType;
use twilight_model::application::interaction::InteractionData;
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};
use twilight_model::id::Id;

/// Two shards in two identify buckets, so both may identify at once.
fn small() -> SimConfig {
    SimConfig {
        guilds: 12,
        shards: 2,
        max_concurrency: 2,
        ..SimConfig::default()
    }
}

fn shard(sim: &SimHandle, id: u32, token: &str) -> Shard {
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
    let config = ConfigBuilder::new(token.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    Shard::with_config(ShardId::new(id, sim.config().shards), config)
}

fn http(sim: &SimHandle, token: &str) -> Client {
    Client::builder()
        .token(token.to_owned())
        .proxy(sim.rest_proxy(), true)
        .build()
}

#[tokio::test]
async fn identify_receive_and_resume_with_replay() {
    let sim = start(small()).await;
    let mut shard0 = shard(&sim, 0, TOKEN);
    let shard_guilds: Vec<_> = sim.guilds().into_iter().filter(|g| g.shard == 0).collect();

    let ready = until(&mut shard0, |e| match e {
        Event::Ready(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(ready.guilds.len(), shard_guilds.len());
    let mut created = 0;
    while created < shard_guilds.len() {
        let event = next(&mut shard0, Instant::now() + WAIT).await;
        if let Event::GuildCreate(guild) = event {
            assert!(matches!(*guild, GuildCreate::Available(_)));
            created += 1;
        }
    }

    let guild = &shard_guilds[0];
    let id = sim
        .send_message(guild.id, guild.channel_ids[0], guild.member_ids[0], "!ping")
        .unwrap();
    let message = until(&mut shard0, |e| match e {
        Event::MessageCreate(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(message.id.get(), id);
    assert_eq!(message.content, "!ping");

    // Close with a resumable code; twilight cannot reconnect before we poll
    // it, so these three are sequenced while the session is disconnected.
    assert!(sim.close_shard(0, 4000));
    let missed: Vec<u64> = (0..3)
        .map(|i| {
            sim.send_message(
                guild.id,
                guild.channel_ids[0],
                guild.owner_id,
                &format!("m{i}"),
            )
            .unwrap()
        })
        .collect();
    let mut replayed = Vec::new();
    until(&mut shard0, |e| match e {
        Event::MessageCreate(m) => {
            replayed.push(m.id.get());
            None
        }
        Event::Resumed => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(replayed, missed);

    let ledger = sim.ledger();
    let replays: Vec<u64> = ledger
        .dispatches
        .iter()
        .filter(|d| d.replayed)
        .filter_map(|d| d.entity_id)
        .collect();
    assert_eq!(replays, missed);
    assert!(
        ledger
            .gateway
            .iter()
            .any(|g| g.kind == GatewayEventKind::Resumed { replayed: 3 })
    );
    assert!(
        ledger
            .gateway
            .iter()
            .any(|g| g.kind == GatewayEventKind::ClosedByServer { code: 4000 })
    );
    // One session, nothing lost or duplicated: the events missed while
    // disconnected were written only by the replay, so every `s` from 1 on
    // was written exactly once.
    let seqs: Vec<u64> = ledger.dispatches.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.resumes), (1, 1));
    assert_eq!(stats.messages, 1 + 3);
    poll_until(|| sim.stats().ready_shards == 1).await;

    // A graceful client close (1000) drops the session on twilight's side.
    shard0.close(CloseFrame::NORMAL);
    until(&mut shard0, |e| {
        matches!(e, Event::GatewayClose(_)).then_some(())
    })
    .await;
    poll_until(|| sim.stats().ready_shards == 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn stale_session_gets_invalid_session_then_identifies() {
    let sim = start(small()).await;
    let intents = Intents::GUILDS;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .session(twilight_gateway::Session::new(5, "no-such-session".into()))
        .build();
    let mut shard1 = Shard::with_config(ShardId::new(1, 2), config);
    until(&mut shard1, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    let ledger = sim.ledger();
    let kinds: Vec<&GatewayEventKind> = ledger.gateway.iter().map(|g| &g.kind).collect();
    let invalid = kinds
        .iter()
        .position(|k| **k == GatewayEventKind::InvalidSession { resumable: false })
        .expect("op 9 recorded");
    let identified = kinds
        .iter()
        .position(|k| **k == GatewayEventKind::Identified)
        .expect("identify recorded");
    assert!(invalid < identified);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_bad_token_is_fatal_and_any_shard_count_is_accepted() {
    let sim = start(small()).await;
    let mut wrong = shard(&sim, 0, "not-the-token");
    let code = until(&mut wrong, |e| match e {
        Event::GatewayClose(frame) => Some(frame.as_ref().map(|f| f.code)),
        _ => None,
    })
    .await;
    assert_eq!(code, Some(4004));
    // Fatal: the stream ends instead of reconnecting.
    let end = timeout_at(
        Instant::now() + WAIT,
        wrong.next_event(EventTypeFlags::all()),
    )
    .await;
    assert!(matches!(end, Ok(None)));

    assert_eq!(sim.stats().identifies, 0);
    // Another shard count than `/gateway/bot`'s is no error: Discord
    // accepts any count that keeps each shard within 2,500 guilds.
    // (twilight cannot send an invalid pair; `gateway.rs` tests 4010.)
    let config = ConfigBuilder::new(TOKEN.to_owned(), Intents::GUILDS)
        .proxy_url(sim.gateway_url())
        .build();
    let mut other_total = Shard::with_config(ShardId::new(0, 3), config);
    let ready = until(&mut other_total, |e| match e {
        Event::Ready(ready) => Some(ready.shard),
        _ => None,
    })
    .await;
    assert_eq!(ready.map(|s| (s.number(), s.total())), Some((0, 3)));
    assert_eq!(sim.stats().identifies, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn rest_with_twilight_http() {
    let sim = start(small()).await;
    let client = http(&sim, TOKEN);

    let info = client
        .gateway()
        .authed()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(info.shards, 2);
    assert_eq!(info.url, sim.gateway_url());
    assert_eq!(info.session_start_limit.remaining, 1000);

    let me = client.current_user().await.unwrap().model().await.unwrap();
    assert!(me.bot);
    let app = client
        .current_user_application()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(app.id.get(), me.id.get());

    let guild = &sim.guilds()[0];
    let channel = Id::new(guild.channel_ids[1]);
    let sent = client
        .create_message(channel)
        .content("pong")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(sent.content, "pong");
    assert_eq!(sent.channel_id, channel);
    assert_eq!(sent.author.id, me.id);

    let unknown = client.create_message(Id::new(1)).content("x").await;
    match unknown.unwrap_err().kind() {
        ErrorType::Response { status, .. } => assert_eq!(status.get(), 404),
        other => panic!("unexpected error {other:?}"),
    }

    let wrong = http(&sim, "not-the-token");
    let denied = wrong.current_user().await.unwrap_err();
    assert!(
        matches!(denied.kind(), ErrorType::Unauthorized)
            || matches!(denied.kind(), ErrorType::Response { status, .. } if status.get() == 401),
        "{denied:?}"
    );

    let ledger = sim.ledger();
    let routes: Vec<(&str, u16)> = ledger
        .rest
        .iter()
        .map(|r| (r.route.as_str(), r.status))
        .collect();
    assert!(routes.contains(&("POST /channels/{channel_id}/messages", 200)));
    assert!(routes.contains(&("POST /channels/{channel_id}/messages", 404)));
    assert!(routes.contains(&("GET /users/@me", 401)));
    let stats = sim.stats();
    assert_eq!(stats.replies, 1);
    assert_eq!(stats.rest_requests, ledger.rest.len() as u64);
    sim.shutdown().await;
}

#[tokio::test]
async fn slash_command_round_trip() {
    let sim = start(small()).await;
    let guild = sim.guilds().into_iter().find(|g| g.shard == 1).unwrap();
    // No session yet: nothing can be delivered.
    assert!(
        sim.send_command_interaction(guild.id, guild.channel_ids[0], guild.owner_id, "ping", &[])
            .is_none()
    );
    let mut shard1 = shard(&sim, 1, TOKEN);
    until(&mut shard1, |e| matches!(e, Event::Ready(_)).then_some(())).await;

    let id = sim
        .send_command_interaction(
            guild.id,
            guild.channel_ids[0],
            guild.owner_id,
            "config",
            &[("key", "prefix")],
        )
        .unwrap();
    let interaction = until(&mut shard1, |e| match e {
        Event::InteractionCreate(i) => Some(i.clone()),
        _ => None,
    })
    .await;
    assert_eq!(interaction.id.get(), id);
    let Some(InteractionData::ApplicationCommand(data)) = &interaction.data else {
        panic!("expected a command");
    };
    assert_eq!(data.name, "config");

    let client = http(&sim, TOKEN);
    let api = client.interaction(interaction.application_id);
    let response = InteractionResponse {
        kind: InteractionResponseType::ChannelMessageWithSource,
        data: Some(InteractionResponseData {
            content: Some("prefix is !".into()),
            ..InteractionResponseData::default()
        }),
    };
    let first = api
        .create_response(interaction.id, &interaction.token, &response)
        .await
        .unwrap();
    assert_eq!(first.status().get(), 204);
    let second = api
        .create_response(interaction.id, &interaction.token, &response)
        .await
        .unwrap_err();
    match second.kind() {
        ErrorType::Response { status, body, .. } => {
            assert_eq!(status.get(), 400);
            let body: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(body["code"], 40060);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let followup = api
        .create_followup(&interaction.token)
        .content("more")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(followup.content, "more");
    let edited = api
        .update_response(&interaction.token)
        .content(Some("edited"))
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(edited.content, "edited");
    let stats = sim.stats();
    assert_eq!(stats.replies, 1);
    assert_eq!((stats.interactions, stats.interactions_in_time), (1, 1));
    let record = &sim.ledger().interactions[0];
    assert_eq!(record.id, id);
    assert_eq!(record.outcome, protonn_sim::InteractionOutcome::InTime);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_and_concurrent_senders_keep_sequence_order() {
    let sim = start(SimConfig {
        guilds: 20,
        shards: 2,
        messages_per_sec: 400.0,
        command_share: 0.5,
        ..SimConfig::default()
    })
    .await;
    let mut shard0 = shard(&sim, 0, TOKEN);
    until(&mut shard0, |e| matches!(e, Event::Ready(_)).then_some(())).await;

    // Four threads inject messages while background traffic runs.
    let guild = sim.guilds().into_iter().find(|g| g.shard == 0).unwrap();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let sim = sim.clone();
            let guild = guild.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    sim.send_message(
                        guild.id,
                        guild.channel_ids[0],
                        guild.owner_id,
                        &format!("t{t}-{i}"),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }

    let mut commands = 0;
    let mut messages = 0;
    let mut last_seq = 0;
    until(&mut shard0, |e| {
        if let Event::MessageCreate(m) = e {
            messages += 1;
            commands += usize::from(m.content.starts_with('!'));
            let guild = m.guild_id.unwrap().get();
            assert_eq!(sim.shard_of(guild), 0, "only connected shards get traffic");
        }
        (messages >= 400).then_some(())
    })
    .await;
    assert!(commands > 0, "some background messages are commands");

    let ledger = sim.ledger();
    for record in &ledger.dispatches {
        assert!(record.seq > last_seq, "written out of order");
        last_seq = record.seq;
    }
    // Shutdown with a live client: it is told to go away and the sim ends.
    let started = Instant::now();
    sim.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let close = until(&mut shard0, |e| match e {
        Event::GatewayClose(frame) => Some(frame.as_ref().map(|f| f.code)),
        _ => None,
    })
    .await;
    assert_eq!(close, Some(1001));
}

#[tokio::test]
async fn intents_gate_messages_and_content() {
    let sim = start(small()).await;
    let guild0 = sim.guilds().into_iter().find(|g| g.shard == 0).unwrap();
    let guild1 = sim.guilds().into_iter().find(|g| g.shard == 1).unwrap();

    // Shard 0 without MESSAGE_CONTENT: messages arrive with empty content.
    let config = ConfigBuilder::new(TOKEN.to_owned(), Intents::GUILDS | Intents::GUILD_MESSAGES)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard0 = Shard::with_config(ShardId::new(0, 2), config);
    until(&mut shard0, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    sim.send_message(guild0.id, guild0.channel_ids[0], guild0.owner_id, "secret")
        .unwrap();
    let message = until(&mut shard0, |e| match e {
        Event::MessageCreate(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(message.content, "");

    // Shard 1 without GUILD_MESSAGES: nothing to deliver.
    let config = ConfigBuilder::new(TOKEN.to_owned(), Intents::GUILDS)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard1 = Shard::with_config(ShardId::new(1, 2), config);
    until(&mut shard1, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    assert!(
        sim.send_message(guild1.id, guild1.channel_ids[0], guild1.owner_id, "x")
            .is_none()
    );
    sim.shutdown().await;
}

/// The handoff from DISCORD.md: one owner closes with 4000 and stops, a new
/// owner resumes with the exported session and gets what it missed.
#[tokio::test]
async fn session_handoff_between_owners() {
    let sim = start(small()).await;
    let guild = sim.guilds().into_iter().find(|g| g.shard == 1).unwrap();
    let mut old_owner = shard(&sim, 1, TOKEN);
    until(&mut old_owner, |e| {
        matches!(e, Event::Ready(_)).then_some(())
    })
    .await;
    old_owner.close(CloseFrame::RESUME);
    until(&mut old_owner, |e| {
        matches!(e, Event::GatewayClose(_)).then_some(())
    })
    .await;
    let session = old_owner.session().cloned().unwrap();
    let resume_url = old_owner.resume_url().unwrap().to_owned();
    drop(old_owner);
    poll_until(|| sim.stats().ready_shards == 0).await;

    let missed: Vec<u64> = (0..2)
        .map(|i| {
            sim.send_message(
                guild.id,
                guild.channel_ids[0],
                guild.member_ids[0],
                &format!("x{i}"),
            )
            .unwrap()
        })
        .collect();
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .session(session)
        .resume_url(resume_url)
        .build();
    let mut new_owner = Shard::with_config(ShardId::new(1, 2), config);
    let mut received = Vec::new();
    until(&mut new_owner, |e| match e {
        Event::MessageCreate(m) => {
            received.push(m.id.get());
            None
        }
        Event::Resumed => Some(()),
        Event::Ready(_) => panic!("identified instead of resuming"),
        _ => None,
    })
    .await;
    assert_eq!(received, missed);
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.resumes), (1, 1));
    sim.shutdown().await;
}
