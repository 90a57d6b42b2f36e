//! B7: storage on the embedded backend — cold guild config reads (p50/p99 over reads of
//! random guilds from a freshly reopened store) and batched audit rows/s, plus criterion
//! timings of single reads and durable saves.
//!
//! `cargo bench -p protonn-benches --bench storage`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use protonn_storage::{
    AuditEntry, AuditRepo, AuditWriter, EmbeddedStore, GuildConfig, GuildConfigRepo, Timestamp,
    WriterConfig,
};

const GUILDS: u64 = 10_000;
const BATCH: usize = 4_096;

fn entry(i: u64, at: Timestamp) -> AuditEntry {
    AuditEntry {
        guild_id: i % 1_000,
        at: at.saturating_add(Duration::from_millis(i)),
        id: i,
        actor_id: 80_000_000_000_000_000 + i % 5_000,
        target_id: Some(90_000_000_000_000_000 + i % 7_000),
        action: "member.ban".into(),
        details: "reason: spam in #general (automod rule 3)".into(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints the B7 figures criterion does not give: percentiles and rows/s of whole runs.
fn b7_report(runtime: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    {
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
    }
    // Reopened: nothing of it is in redb's cache (the OS page cache may still hold the file).
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut latencies = Vec::with_capacity(GUILDS as usize);
    runtime.block_on(async {
        for i in 0..GUILDS {
            let guild = (i * 7_919) % GUILDS;
            let start = Instant::now();
            store.load(guild).await.unwrap().unwrap();
            latencies.push(start.elapsed());
        }
    });
    latencies.sort();
    eprintln!(
        "B7 cold config read ({GUILDS} guilds, reopened store): p50 {:?} p99 {:?} max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );

    let now = Timestamp::now();
    let rows: u64 = 200_000;
    let entries: Vec<AuditEntry> = (0..rows).map(|i| entry(i, now)).collect();
    let start = Instant::now();
    runtime.block_on(async {
        for batch in entries.chunks(BATCH) {
            store.append_audit(batch).await.unwrap();
        }
    });
    let direct = rows as f64 / start.elapsed().as_secs_f64();

    let entries: Vec<AuditEntry> = (rows..2 * rows).map(|i| entry(i, now)).collect();
    let start = Instant::now();
    runtime.block_on(async {
        let (writer, task) = AuditWriter::spawn(Arc::new(store.clone()), WriterConfig::default());
        for entry in entries {
            // Write-behind as an actor uses it: no ack awaited per entry.
            writer.log(entry).await.unwrap();
        }
        writer.flush().await.unwrap();
        drop(writer);
        task.await.unwrap();
    });
    let through_writer = rows as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "B7 audit rows/s durable: append_audit in batches of {BATCH}: {direct:.0}; \
         through AuditWriter: {through_writer:.0}"
    );
}

fn embedded_storage(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    b7_report(&runtime);

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
    c.bench_function("config load (from disk)", |b| {
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

    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(BATCH as u64));
    let now = Timestamp::now();
    let mut next = 0_u64;
    group.bench_function("append_audit batch of 4096 (durable)", |b| {
        b.iter_batched(
            || {
                let batch: Vec<AuditEntry> =
                    (next..next + BATCH as u64).map(|i| entry(i, now)).collect();
                next += BATCH as u64;
                batch
            },
            |batch| runtime.block_on(store.append_audit(&batch)).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, embedded_storage);
criterion_main!(benches);
