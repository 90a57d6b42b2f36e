//! B11: what workflows add to each MESSAGE_CREATE a guild actor handles. Three resident guild
//! actors of one `GuildRouter` (real services, embedded store), each sent batches of 100
//! messages (the hot-path bench's 1 KB-free chat line, not a command) and timed until its
//! actor handled all of them:
//!
//! - a guild without workflows (the baseline);
//! - a guild with 50 enabled workflows that do not match (40 `contains`, 10 `regex` message
//!   triggers);
//! - the same 50 and one that matches (a condition, a template rendered into a variable and
//!   an increment: the runner's work; it sends nothing, so no REST request is timed).
//!
//! The workflows are loaded before timing (the first message of each guild activates them).
//! The observer sees a message when its handling starts, so a batch is timed to the start of
//! its last message: 99 of the 100 are measured whole.
//!
//! ```sh
//! cargo bench -p protonn-benches --bench workflows
//! ```

#[path = "support/router.rs"]
mod router;

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use protonn_storage::{EmbeddedStore, Timestamp, Workflow, WorkflowRepo};
use twilight_model::gateway::event::Event;

use router::{GUILD_BASE, message, route_and_wait, start_observed};

/// Messages per timed batch.
const BATCH: u64 = 100;

fn workflow(guild_id: u64, workflow_id: u64, definition: String) -> Workflow {
    Workflow {
        guild_id,
        workflow_id,
        name: format!("w{workflow_id}"),
        created_by: None,
        enabled: true,
        definition,
        updated_at: Timestamp::now(),
    }
}

/// 50 workflows no chat line matches.
fn non_matching(guild_id: u64) -> Vec<Workflow> {
    (1..=50)
        .map(|id| {
            let trigger = if id <= 40 {
                format!(r#"{{"contains": "nomatch{id}"}}"#)
            } else {
                format!(r#"{{"regex": "^order #\\d+ ref {id}$"}}"#)
            };
            let definition = format!(
                r#"{{"trigger": {{"message": {trigger}}}, "actions": [{{"send": {{"text": "order {{args.1}}"}}}}]}}"#
            );
            workflow(guild_id, id, definition)
        })
        .collect()
}

fn matching(guild_id: u64) -> Workflow {
    workflow(
        guild_id,
        51,
        r#"{"trigger": {"message": {"contains": "hello"}},
            "conditions": [{"not": {"has_role": 1}}],
            "actions": [{"set_var": {"name": "said", "value": "{user.name} said {message.content}"}},
                        {"increment_var": {"name": "count"}}]}"#
            .to_owned(),
    )
}

fn batch(guild: u64, next_id: &mut u64) -> Vec<Event> {
    (0..BATCH)
        .map(|_| {
            *next_id += 1;
            message(guild, *next_id)
        })
        .collect()
}

fn per_message(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let [plain, fifty, one_matches] = [0, 8, 16].map(|i| GUILD_BASE + i);
    runtime.block_on(async {
        for guild in [fifty, one_matches] {
            for workflow in non_matching(guild) {
                store.put_workflow(&workflow).await.unwrap();
            }
        }
        store.put_workflow(&matching(one_matches)).await.unwrap();
    });
    let (router, mut handled) = start_observed(&runtime, store);
    let mut next_id = 1_000;
    // Spawns each actor, reads its config and activates its workflows; the sleep lets the
    // activation's storage read finish before anything is timed.
    for guild in [plain, fifty, one_matches] {
        let first = batch(guild, &mut next_id);
        route_and_wait(&runtime, &router, &mut handled, first);
    }
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });

    let mut group = c.benchmark_group("B11 MESSAGE_CREATE handled");
    group.throughput(Throughput::Elements(BATCH));
    for (name, guild) in [
        ("no workflows", plain),
        ("50 workflows, none matches", fifty),
        ("50 workflows and one that matches", one_matches),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || batch(guild, &mut next_id),
                |events| route_and_wait(&runtime, &router, &mut handled, events),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    router.stop(None);
}

criterion_group!(benches, per_message);
criterion_main!(benches);
