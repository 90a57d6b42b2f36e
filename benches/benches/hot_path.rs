//! Criterion micro-benchmarks of the event path, one step at a time (B1 measures it whole):
//!
//! - decode: twilight's `parse` of a gateway frame with the bot's event types, as a shard
//!   does for every frame: a 1 KB MESSAGE_CREATE (deserialised), and a TYPING_START (not
//!   a type the bot handles: skipped after reading its `t`).
//! - route and handle: events handed to a `GuildRouter` (real services, embedded store) as a
//!   shard's forwarder does, until every guild actor has handled its event: one message to
//!   one resident actor, and a batch of 64 to 64 resident actors. The messages are not
//!   commands, so handling is the prefix check; no REST request is made.
//!
//! ```sh
//! cargo bench -p protonn-benches --bench hot_path
//! ```

#[path = "support/router.rs"]
mod router;

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use protonn_storage::EmbeddedStore;
use twilight_model::gateway::event::Event;

use router::{GUILD_BASE, message, message_json, route_and_wait, start_observed};

/// Guilds with a resident actor.
const GUILDS: u64 = 64;

fn frame(event: &str, d: &str) -> String {
    format!(r#"{{"op":0,"s":42,"t":"{event}","d":{d}}}"#)
}

fn decode(c: &mut Criterion) {
    let wanted = protonn_actors::event_types();
    let message = frame(
        "MESSAGE_CREATE",
        &message_json(GUILD_BASE, 1, &"x".repeat(1_000)),
    );
    let typing = frame(
        "TYPING_START",
        &format!(
            r#"{{"channel_id":"{}","guild_id":"{GUILD_BASE}","user_id":"3","timestamp":1}}"#,
            GUILD_BASE + 2
        ),
    );
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, text, handled) in [
        ("MESSAGE_CREATE of 1 KB", &message, true),
        ("TYPING_START, skipped", &typing, false),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || text.clone(),
                |text| {
                    let parsed = twilight_gateway::parse(text, wanted).expect("a valid frame");
                    assert_eq!(parsed.is_some(), handled);
                    parsed
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// One message to each of `guilds` (built outside the timing: a shard hands on events
/// already parsed).
fn messages(guilds: &[u64], next_id: &mut u64) -> Vec<Event> {
    guilds
        .iter()
        .map(|&guild| {
            *next_id += 1;
            message(guild, *next_id)
        })
        .collect()
}

fn route_and_handle(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (router, mut handled) = start_observed(&runtime, store);
    let guilds: Vec<u64> = (0..GUILDS).map(|i| GUILD_BASE + i * 8).collect();
    let mut next_id = 1_000;
    // Every actor spawned and its config read once: resident from here on.
    let first = messages(&guilds, &mut next_id);
    route_and_wait(&runtime, &router, &mut handled, first);

    let mut group = c.benchmark_group("route and handle");
    for (name, guilds) in [
        ("one message to a resident guild actor", &guilds[..1]),
        (
            "64 messages to 64 resident guild actors, one batch",
            &guilds[..],
        ),
    ] {
        group.throughput(Throughput::Elements(guilds.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || messages(guilds, &mut next_id),
                |events| route_and_wait(&runtime, &router, &mut handled, events),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    router.stop(None);
}

criterion_group!(benches, decode, route_and_handle);
criterion_main!(benches);
