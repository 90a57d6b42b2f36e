//! Discord's validation of what a client sends, in its close codes, against
//! the real twilight 0.18 shard: what twilight does after each.

mod common;

use common::*;

use std::time::Duration;

use protonn_sim::{GatewayEventKind, SimConfig, SimHandle};
use tokio::time::{Instant, timeout_at};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};

fn base() -> SimConfig {
    SimConfig {
        shards: 2,
        guilds: 12,
        time_scale: 0.01,
        ..SimConfig::default()
    }
}

fn builder(sim: &SimHandle, intents: Intents) -> ConfigBuilder {
    ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .queue(InMemoryQueue::new(
            0,
            1000,
            Duration::from_secs(86_400),
            1000,
        ))
}

fn shard(sim: &SimHandle, builder: ConfigBuilder) -> Shard {
    Shard::with_config(ShardId::new(0, sim.config().shards), builder.build())
}

async fn close_code(shard: &mut Shard) -> Option<u16> {
    until(shard, |e| match e {
        Event::GatewayClose(frame) => Some(frame.as_ref().map(|f| f.code)),
        _ => None,
    })
    .await
}

async fn ended(shard: &mut Shard) -> bool {
    let deadline = Instant::now() + WAIT;
    matches!(
        timeout_at(deadline, shard.next_event(EventTypeFlags::all())).await,
        Ok(None)
    )
}

fn server_closes(sim: &SimHandle, code: u16) -> usize {
    sim.ledger()
        .gateway
        .iter()
        .filter(|g| g.kind == GatewayEventKind::ClosedByServer { code })
        .count()
}

/// 4011, 4013 and 4014 are fatal in twilight: the shard stops for good,
/// and no session start is spent.
#[tokio::test]
async fn sharding_and_intent_errors_are_fatal() {
    let cases = [
        // Six guilds per shard over a cap of five.
        (
            SimConfig {
                max_guilds_per_shard: 5,
                ..base()
            },
            Intents::GUILDS,
            4011,
        ),
        (base(), Intents::from_bits_retain(1 << 30), 4013),
        // GUILD_MEMBERS is privileged and not enabled by default.
        (base(), Intents::GUILDS | Intents::GUILD_MEMBERS, 4014),
    ];
    for (config, intents, code) in cases {
        let sim = start(config).await;
        let mut shard = shard(&sim, builder(&sim, intents));
        assert_eq!(close_code(&mut shard).await, Some(code));
        assert!(ended(&mut shard).await, "{code} is fatal");
        let stats = sim.stats();
        assert_eq!((stats.identifies, stats.identifies_rejected), (0, 0));
        assert!(sim.ledger().identifies.is_empty());
        sim.shutdown().await;
    }
    // Enabled privileged intents are allowed.
    let sim = start(SimConfig {
        privileged_intents: vec!["GUILD_MEMBERS".into(), "MESSAGE_CONTENT".into()],
        ..base()
    })
    .await;
    let intents = Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::MESSAGE_CONTENT;
    let mut shard = shard(&sim, builder(&sim, intents));
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    sim.shutdown().await;
}

/// A payload over 4,096 bytes is closed with 4002; twilight resumes.
#[tokio::test]
async fn oversized_payload_is_a_decode_error_and_twilight_resumes() {
    let sim = start(base()).await;
    let mut shard = shard(&sim, builder(&sim, Intents::GUILDS));
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    let name = "x".repeat(5000);
    shard.send(format!(
        r#"{{"op":3,"d":{{"since":null,"activities":[{{"name":"{name}","type":0}}],"status":"online","afk":false}}}}"#
    ));
    assert_eq!(close_code(&mut shard).await, Some(4002));
    until(&mut shard, |e| matches!(e, Event::Resumed).then_some(())).await;
    assert_eq!(server_closes(&sim, 4002), 1);
    sim.shutdown().await;
}

/// More than 120 payloads in 60 s is closed with 4008 when the client's
/// own limiter is off; twilight resumes.
#[tokio::test]
async fn send_limit_closes_with_4008_when_the_client_limiter_is_off() {
    let sim = start(SimConfig {
        // A 60 s window: the burst below is far inside it.
        time_scale: 1.0,
        ..base()
    })
    .await;
    let mut shard = shard(
        &sim,
        builder(&sim, Intents::GUILDS).ratelimit_messages(false),
    );
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    let presence = r#"{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}"#;
    for _ in 0..121 {
        shard.send(presence.to_owned());
    }
    assert_eq!(close_code(&mut shard).await, Some(4008));
    until(&mut shard, |e| matches!(e, Event::Resumed).then_some(())).await;
    assert_eq!(server_closes(&sim, 4008), 1);
    sim.shutdown().await;
}

/// A client that stops heartbeating is dropped with 4000, a close Discord
/// documents as one to reconnect and resume from: the session stays, and
/// twilight resumes it without a new IDENTIFY.
#[tokio::test]
async fn missed_heartbeats_close_the_connection_resumably() {
    let sim = start(SimConfig {
        heartbeat_interval_ms: 200,
        ..base()
    })
    .await;
    let mut shard = shard(&sim, builder(&sim, Intents::GUILDS));
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    // Not polling the shard: it sends no heartbeat.
    let deadline = Instant::now() + WAIT;
    while server_closes(&sim, 4000) == 0 {
        assert!(Instant::now() < deadline, "no 4000 in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(close_code(&mut shard).await, Some(4000));
    until(&mut shard, |e| matches!(e, Event::Resumed).then_some(())).await;
    let ledger = sim.ledger();
    assert!(
        !ledger
            .gateway
            .iter()
            .any(|g| matches!(g.kind, GatewayEventKind::InvalidSession { .. }))
    );
    assert_eq!(sim.stats().resumes, 1);
    assert_eq!(sim.stats().identifies, 1);
    sim.shutdown().await;
}
