//! B7 seed: guild config reads and durable versioned writes on the embedded backend.
//!
//! `cargo bench -p protonn-benches --bench storage`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use protonn_storage::{EmbeddedStore, GuildConfig, GuildConfigRepo};

const GUILDS: u64 = 10_000;

fn embedded_guild_config(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let config = GuildConfig {
        prefix: "?".into(),
        ..GuildConfig::default()
    };
    runtime.block_on(async {
        for guild in 0..GUILDS {
            store.save(guild, 0, &config).await.unwrap();
        }
    });

    let mut guild = 0;
    c.bench_function("config load (cold path, from disk)", |b| {
        b.iter(|| {
            guild = (guild + 7919) % GUILDS;
            runtime.block_on(store.load(guild)).unwrap()
        })
    });

    let mut version = 1;
    c.bench_function("config save (durable, one fsync)", |b| {
        b.iter_batched(
            || {
                version += 1;
                version - 1
            },
            |expected| runtime.block_on(store.save(0, expected, &config)).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, embedded_guild_config);
criterion_main!(benches);
