//! B11, automod's half: what automod adds to each MESSAGE_CREATE a guild actor handles. Like
//! the workflows bench (`workflows.rs`): resident guild actors of one `GuildRouter` (real
//! services, embedded store), each sent batches of 100 members' messages (a chat line with the
//! message id at its end, so no two are the same text) and timed until its actor handled all
//! of them:
//!
//! - a guild without automod rules (the baseline);
//! - a guild on premium with 25 rules no line breaks (12 keyword rules of 20 words, 4 regex
//!   rules of 2 patterns, invite links, 2 link deny lists, caps, emoji flood, zalgo, mention
//!   spam, new account, duplicate text: every message is counted for it);
//! - the same 25 with the last one replaced by a keyword rule that matches every line; its
//!   only action is `log` and the guild has no log channel, so no REST request is timed;
//! - the 25 that do not match and 50 workflows that do not match (B11's whole condition;
//!   the workflows bench's 50).
//!
//! No message-spam rule: one author sends every message of the flood, so any rate rule would
//! fire. The rules are compiled before timing (the first batch of each guild does it).
//!
//! ```sh
//! cargo bench -p protonn-benches --bench automod
//! ```

#[path = "support/router.rs"]
mod router;

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use protonn_storage::{
    AutomodAction, AutomodConfig, AutomodRule, EmbeddedStore, GuildConfig, GuildConfigRepo, Plan,
    PremiumRepo, PremiumSlot, Timestamp, Trigger, Workflow, WorkflowRepo,
};
use twilight_model::channel::Message;
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::MessageCreate;

use router::{GUILD_BASE, message_json, route_and_wait, start_observed};

/// Messages per timed batch.
const BATCH: u64 = 100;

fn rule(name: String, trigger: Trigger) -> AutomodRule {
    AutomodRule {
        name,
        trigger,
        actions: vec![AutomodAction::Delete, AutomodAction::Warn],
        shadow: false,
        exempt_roles: Vec::new(),
        exempt_channels: Vec::new(),
        native: false,
    }
}

fn keywords(n: usize) -> Trigger {
    Trigger::Keywords {
        words: (0..20)
            .map(|k| match k % 3 {
                0 => format!("badword{n}x{k}"),
                1 => format!("scam{n}x{k}*"),
                _ => format!("*coin{n}x{k}"),
            })
            .collect(),
    }
}

/// 25 rules no chat line of the bench breaks.
fn non_matching() -> Vec<AutomodRule> {
    let mut rules: Vec<AutomodRule> = (0..12)
        .map(|n| rule(format!("words {n}"), keywords(n)))
        .collect();
    rules.extend((0..4).map(|n| {
        rule(
            format!("patterns {n}"),
            Trigger::Regex {
                patterns: vec![
                    format!(r"\b\d{{3}}-\d{{4}}-{n}\b"),
                    format!(r"(?i)buy\s+now\s+{n}"),
                ],
            },
        )
    }));
    rules.push(rule("invites".into(), Trigger::InviteLinks));
    rules.extend((0..2).map(|n| {
        rule(
            format!("links {n}"),
            Trigger::Links {
                allow: Vec::new(),
                deny: (0..10).map(|d| format!("evil{n}x{d}.example")).collect(),
            },
        )
    }));
    rules.push(rule(
        "caps".into(),
        Trigger::Caps {
            percent: 80,
            min_letters: 10,
        },
    ));
    rules.push(rule("emojis".into(), Trigger::EmojiFlood { emojis: 5 }));
    rules.push(rule("zalgo".into(), Trigger::Zalgo { marks: 8 }));
    rules.push(rule(
        "mentions".into(),
        Trigger::MentionSpam { mentions: 5 },
    ));
    rules.push(rule(
        "new accounts".into(),
        Trigger::NewAccount { min_age_days: 30 },
    ));
    rules.push(rule(
        "duplicates".into(),
        Trigger::DuplicateText {
            repeats: 3,
            within_secs: 60,
        },
    ));
    assert_eq!(rules.len(), 25);
    rules
}

/// [`non_matching`] with its last rule replaced by one every chat line breaks; it only logs,
/// and the guild has no log channel: nothing leaves the node.
fn one_matches() -> Vec<AutomodRule> {
    let mut rules = non_matching();
    let last = rules.last_mut().expect("25 rules");
    *last = rule(
        "matches".into(),
        Trigger::Keywords {
            words: vec!["nothing to see".into()],
        },
    );
    last.actions = vec![AutomodAction::Log];
    rules
}

/// The workflows bench's 50 workflows no chat line matches.
fn workflows(guild_id: u64) -> Vec<Workflow> {
    (1..=50)
        .map(|id| {
            let trigger = if id <= 40 {
                format!(r#"{{"contains": "nomatch{id}"}}"#)
            } else {
                format!(r#"{{"regex": "^order #\\d+ ref {id}$"}}"#)
            };
            Workflow {
                guild_id,
                workflow_id: id,
                name: format!("w{id}"),
                created_by: None,
                enabled: true,
                definition: format!(
                    r#"{{"trigger": {{"message": {trigger}}}, "actions": [{{"send": {{"text": "order"}}}}]}}"#
                ),
                updated_at: Timestamp::now(),
            }
        })
        .collect()
}

/// A member's chat line, its id at the end (so duplicate text never fires).
fn message(guild: u64, id: u64) -> Event {
    let json = message_json(guild, id, &format!("hello there, nothing to see {id}"));
    let message: Message = serde_json::from_str(&json).expect("a valid MESSAGE_CREATE");
    Event::MessageCreate(Box::new(MessageCreate {
        channel_type: None,
        message,
    }))
}

fn batch(guild: u64, next_id: &mut u64) -> Vec<Event> {
    (0..BATCH)
        .map(|_| {
            *next_id += 1;
            message(guild, *next_id)
        })
        .collect()
}

async fn configure(store: &EmbeddedStore, guild_id: u64, rules: Vec<AutomodRule>) {
    let config = GuildConfig {
        automod: AutomodConfig { rules },
        ..GuildConfig::default()
    };
    store.save(guild_id, 0, &config).await.unwrap();
    let now = Timestamp::now();
    let slot = PremiumSlot {
        guild_id,
        user_id: 1,
        assigned_at: now,
        plan: Plan::Premium,
        until: now.saturating_add(Duration::from_secs(86_400)),
    };
    store.put_slot(&slot).await.unwrap();
}

fn per_message(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let [plain, rules, matching, with_workflows] = [0, 8, 16, 24].map(|i| GUILD_BASE + i);
    runtime.block_on(async {
        configure(&store, rules, non_matching()).await;
        configure(&store, matching, one_matches()).await;
        configure(&store, with_workflows, non_matching()).await;
        for workflow in workflows(with_workflows) {
            store.put_workflow(&workflow).await.unwrap();
        }
    });
    let (router, mut handled) = start_observed(&runtime, store);
    let mut next_id = 1_000;
    // Spawns each actor, reads its config and plan, compiles its rules and activates its
    // workflows; the sleep lets the activation's storage reads finish before any timing.
    for guild in [plain, rules, matching, with_workflows] {
        let first = batch(guild, &mut next_id);
        route_and_wait(&runtime, &router, &mut handled, first);
    }
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });

    let mut group = c.benchmark_group("B11 automod: MESSAGE_CREATE handled");
    group.throughput(Throughput::Elements(BATCH));
    for (name, guild) in [
        ("no automod rules", plain),
        ("25 rules, none matches", rules),
        ("25 rules, one matches", matching),
        ("25 rules and 50 workflows, none matches", with_workflows),
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
