//! Guild calls answered by guild actors, against a real embedded store and a node cache
//! filled as a GUILD_CREATE would (no Discord: nothing here needs REST).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonn_actors::rest::{GlobalLine, GuardLimits, InvalidRequestGuard, Rest, Transport};
use protonn_actors::{
    AUDIT_CONFIG_CHANGE, AUDIT_CONFIG_ROLLBACK, CallSource, Caller, CommandUsage,
    ConfigAuditDetails, DeadLetters, Delivery, EventObserver, GuildCall, GuildCallError,
    GuildCalls, GuildRequest, GuildResponse, GuildRouter, HandledEvent, LocalGuildCalls, Replies,
    RouterMsg, RuntimeConfig, Services,
};
use protonn_shard::{BotToken, EventSink, ExportedSession, Ledger, Receipt};
use protonn_storage::{
    AnnouncementRepo, AuditRepo, AutomodAction, AutomodConfig, AutomodRepo, AutomodRule,
    EmbeddedStore, GuildConfig, Timestamp, Trigger, VersionedConfig,
};
use ractor::ActorRef;
use twilight_cache_inmemory::{DefaultInMemoryCache, ResourceType};
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::{GuildCreate, MessageCreate};
use twilight_model::guild::Guild;

/// A guild id of shard 1 of 4: (id >> 22) % 4 == 1.
const GUILD: u64 = (1_000_001 << 22) | 5;
/// The node's shard count (GUILD is on shard 1 of them).
const SHARD_COUNT: u32 = 4;
const OWNER: u64 = 42;
const MEMBER: u64 = 43;
const MANAGER: u64 = 44;
const MOD_ROLE: u64 = GUILD + 1;
const STAFF_ROLE: u64 = GUILD + 2;
const TEXT: u64 = GUILD + 10;
const VOICE: u64 = GUILD + 11;

struct Setup {
    calls: LocalGuildCalls,
    router: ActorRef<RouterMsg>,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

fn guild_json() -> serde_json::Value {
    let role = |id: u64, name: &str, permissions: u64, position: i64, color: u32| {
        serde_json::json!({
            "id": id.to_string(), "name": name, "color": color,
            "colors": {"primary_color": color}, "hoist": false, "managed": false,
            "mentionable": false, "permissions": permissions.to_string(),
            "position": position, "flags": 0
        })
    };
    let member = |id: u64, roles: &[u64]| {
        serde_json::json!({
            "user": {"id": id.to_string(), "username": format!("user{id}"), "discriminator": "0",
                     "avatar": null, "global_name": null},
            "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
            "joined_at": "2024-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
            "flags": 0
        })
    };
    let channel = |id: u64, name: &str, kind: u8, position: i32| {
        serde_json::json!({
            "id": id.to_string(), "type": kind, "guild_id": GUILD.to_string(), "name": name,
            "position": position, "permission_overwrites": []
        })
    };
    serde_json::json!({
        "id": GUILD.to_string(), "name": "Test Guild", "icon": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "owner_id": OWNER.to_string(), "member_count": 3,
        "afk_timeout": 60, "default_message_notifications": 0, "explicit_content_filter": 0,
        "features": [], "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US",
        "premium_progress_bar_enabled": false, "premium_tier": 0, "system_channel_flags": 0,
        "verification_level": 0, "emojis": [], "stickers": [],
        "roles": [
            // @everyone: view channels and send messages.
            role(GUILD, "@everyone", 1024 | 2048, 0, 0),
            // Manage Server (32).
            role(MOD_ROLE, "Moderator", 32, 2, 0x3498db),
            role(STAFF_ROLE, "Helpers", 0, 1, 0x2ecc71),
        ],
        "members": [member(OWNER, &[]), member(MEMBER, &[STAFF_ROLE]), member(MANAGER, &[MOD_ROLE])],
        "channels": [channel(VOICE, "voice", 2, 1), channel(TEXT, "general", 0, 0)],
    })
}

async fn setup() -> Setup {
    setup_observed(None).await
}

async fn setup_observed(observer: Option<Arc<dyn EventObserver>>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let resources =
        ResourceType::GUILD | ResourceType::ROLE | ResourceType::CHANNEL | ResourceType::MEMBER;
    let cache = Arc::new(
        DefaultInMemoryCache::builder()
            .resource_types(resources)
            .build(),
    );
    let guild: Guild = serde_json::from_value(guild_json()).unwrap();
    cache.update(&Event::GuildCreate(Box::new(GuildCreate::Available(guild))));
    let services = Services {
        store: Arc::clone(&store) as _,
        departures: Default::default(),
        // Never used: the cache holds the channels and members these tests ask about.
        replies: Replies::new(Rest::new(
            Arc::new(Transport::new(
                &BotToken::new(""),
                Some("127.0.0.1:9"),
                Duration::from_secs(1),
            )),
            Arc::new(GlobalLine::unlimited()),
            Arc::new(InvalidRequestGuard::new(GuardLimits::default())),
        )),
        cache,
        own_roles: Default::default(),
        runtime: RuntimeConfig {
            cache_resources: resources,
            ..RuntimeConfig::default()
        },
        dead_letters: Arc::new(DeadLetters::default()),
        observer,
        node_name: "node-a".to_owned(),
        shard_count: protonn_actors::ShardCount::new(SHARD_COUNT),
        usage: CommandUsage::new(&(Arc::clone(&store) as _)),
        tasks: Default::default(),
    };
    let router = GuildRouter::start(services).await.unwrap();
    Setup {
        calls: LocalGuildCalls::new(router.clone()),
        router,
        store,
        _dir: dir,
    }
}

fn call(guild_id: u64, request: GuildRequest) -> GuildCall {
    GuildCall {
        guild_id,
        caller: Caller {
            user_id: Some(OWNER),
            source: CallSource::Dashboard,
        },
        idempotency_key: None,
        deadline: Duration::from_secs(5),
        request,
    }
}

fn change(prefix: &str, expected_version: u64) -> GuildRequest {
    GuildRequest::ChangeConfig {
        config: GuildConfig {
            prefix: prefix.to_owned(),
            ..GuildConfig::default()
        },
        expected_version,
    }
}

fn config_of(response: GuildResponse) -> VersionedConfig {
    match response {
        GuildResponse::Config(config) => config,
        other => panic!("not a config: {other:?}"),
    }
}

async fn audit(store: &EmbeddedStore) -> Vec<protonn_storage::AuditEntry> {
    store
        .list_audit(GUILD, Timestamp(0), Timestamp(u64::MAX), 100)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_config_change_is_versioned_durable_audited_and_conflicts_say_so() {
    let Setup { calls, store, .. } = &setup().await;

    let first = config_of(
        calls
            .call(call(GUILD, GuildRequest::ReadConfig))
            .await
            .unwrap(),
    );
    assert_eq!(first.version, 0, "defaults before any save");
    assert_eq!(first.config, GuildConfig::default());

    let saved = config_of(calls.call(call(GUILD, change("$", 0))).await.unwrap());
    assert_eq!((saved.version, saved.config.prefix.as_str()), (1, "$"));
    let read = config_of(
        calls
            .call(call(GUILD, GuildRequest::ReadConfig))
            .await
            .unwrap(),
    );
    assert_eq!(read, saved, "live at once");
    assert_eq!(
        protonn_storage::GuildConfigRepo::load(store.as_ref(), GUILD)
            .await
            .unwrap(),
        Some(saved.clone()),
        "durable"
    );

    let stale = calls.call(call(GUILD, change("%", 0))).await;
    assert_eq!(stale, Err(GuildCallError::Conflict { current: 1 }));

    let entries = audit(store).await;
    assert_eq!(
        entries.len(),
        1,
        "one entry per applied change: {entries:?}"
    );
    assert_eq!(entries[0].action, AUDIT_CONFIG_CHANGE);
    assert_eq!(entries[0].actor_id, OWNER);
    let details: ConfigAuditDetails = serde_json::from_str(&entries[0].details).unwrap();
    assert_eq!(details.source, CallSource::Dashboard);
    assert_eq!(details.before.version, 0);
    assert_eq!(details.before.config.prefix, "!");
    assert_eq!(details.after, saved);
}

#[tokio::test]
async fn the_announcement_opt_in_names_a_text_channel_of_the_guild_and_is_audited() {
    let Setup { calls, store, .. } = &setup().await;
    let opt_in = GuildRequest::ChangeConfig {
        config: GuildConfig {
            announce_channel: Some(TEXT),
            ..GuildConfig::default()
        },
        expected_version: 0,
    };
    let saved = config_of(calls.call(call(GUILD, opt_in)).await.unwrap());
    assert_eq!(saved.config.announce_channel, Some(TEXT));
    let entries = audit(store).await;
    let details: ConfigAuditDetails = serde_json::from_str(&entries[0].details).unwrap();
    assert_eq!(
        details.before.config.announce_channel, None,
        "off by default"
    );
    assert_eq!(details.after.config.announce_channel, Some(TEXT));
    // Indexed under the guild's shard (1 of 4), and out of it once withdrawn.
    assert_eq!(
        store.announce_opt_ins(1).await.unwrap(),
        vec![(GUILD, TEXT)]
    );
    let opt_out = GuildRequest::ChangeConfig {
        config: GuildConfig::default(),
        expected_version: 1,
    };
    calls.call(call(GUILD, opt_out)).await.unwrap();
    assert!(store.announce_opt_ins(1).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let Setup { calls, store, .. } = &setup().await;
    for (config, needle) in [
        (
            GuildConfig {
                prefix: "much too long".to_owned(),
                ..GuildConfig::default()
            },
            "prefix",
        ),
        (
            GuildConfig {
                locale: "klingon".to_owned(),
                ..GuildConfig::default()
            },
            "locale",
        ),
        (
            GuildConfig {
                staff_roles: vec![0],
                ..GuildConfig::default()
            },
            "role",
        ),
        (
            GuildConfig {
                announce_channel: Some(VOICE),
                ..GuildConfig::default()
            },
            "announcement channel",
        ),
        (
            GuildConfig {
                announce_channel: Some(GUILD + 99),
                ..GuildConfig::default()
            },
            "announcement channel",
        ),
    ] {
        let refused = calls
            .call(call(
                GUILD,
                GuildRequest::ChangeConfig {
                    config,
                    expected_version: 0,
                },
            ))
            .await;
        match refused {
            Err(GuildCallError::Invalid { message }) => {
                assert!(message.to_lowercase().contains(needle), "{message}")
            }
            other => panic!("not refused as invalid: {other:?}"),
        }
    }
    let rollback = calls
        .call(call(
            GUILD,
            GuildRequest::RollbackConfig {
                to_version: 7,
                expected_version: 0,
            },
        ))
        .await;
    assert!(
        matches!(&rollback, Err(GuildCallError::Invalid { message }) if message.contains("version 7")),
        "{rollback:?}"
    );
    let mut long_key = call(GUILD, change("$", 0));
    long_key.idempotency_key = Some("k".repeat(129));
    assert!(matches!(
        calls.call(long_key).await,
        Err(GuildCallError::Invalid { .. })
    ));
    let read = config_of(
        calls
            .call(call(GUILD, GuildRequest::ReadConfig))
            .await
            .unwrap(),
    );
    assert_eq!(read.version, 0, "nothing was saved");
    assert!(audit(store).await.is_empty());

    assert_eq!(
        calls.call(call(0, GuildRequest::ReadConfig)).await,
        Err(GuildCallError::UnknownGuild)
    );
    assert_eq!(
        calls.call(call(GUILD + 100, GuildRequest::Summary)).await,
        Err(GuildCallError::BotNotInGuild)
    );
}

#[tokio::test]
async fn a_retried_change_with_its_idempotency_key_is_applied_once() {
    let setup = setup().await;
    let Setup { calls, store, .. } = &setup;
    let mut first = call(GUILD, change("$", 0));
    first.idempotency_key = Some("form-1".to_owned());
    let answer = calls.call(first.clone()).await.unwrap();
    let again = calls.call(first.clone()).await.unwrap();
    assert_eq!(again, answer, "the first answer, not a conflict");
    assert_eq!(audit(store).await.len(), 1, "applied once");

    // A fresh actor (as after a passivation or a shard move) finds the key in the audit log.
    setup
        .router
        .stop_children_and_wait(None, Some(Duration::from_secs(5)))
        .await;
    let after_restart = calls.call(first.clone()).await.unwrap();
    assert_eq!(config_of(after_restart).version, 1);
    assert_eq!(audit(store).await.len(), 1, "still applied once");

    // Another key is another change: it conflicts, as a stale form should.
    let mut other = first;
    other.idempotency_key = Some("form-2".to_owned());
    assert_eq!(
        calls.call(other).await,
        Err(GuildCallError::Conflict { current: 1 })
    );
}

#[tokio::test]
async fn history_lists_versions_and_rollback_saves_an_old_one_as_new() {
    let Setup { calls, store, .. } = &setup().await;
    for (prefix, expected) in [("$", 0), ("%", 1), ("&", 2)] {
        calls
            .call(call(GUILD, change(prefix, expected)))
            .await
            .unwrap();
    }
    let GuildResponse::History { versions } = calls
        .call(call(GUILD, GuildRequest::ConfigHistory))
        .await
        .unwrap()
    else {
        panic!("not a history")
    };
    let listed: Vec<(u64, &str)> = versions
        .iter()
        .map(|v| (v.version, v.config.prefix.as_str()))
        .collect();
    assert_eq!(listed, [(3, "&"), (2, "%"), (1, "$")], "newest first");

    let stale = GuildRequest::RollbackConfig {
        to_version: 1,
        expected_version: 2,
    };
    assert_eq!(
        calls.call(call(GUILD, stale)).await,
        Err(GuildCallError::Conflict { current: 3 })
    );
    let rolled = GuildRequest::RollbackConfig {
        to_version: 1,
        expected_version: 3,
    };
    let rolled = config_of(calls.call(call(GUILD, rolled)).await.unwrap());
    assert_eq!((rolled.version, rolled.config.prefix.as_str()), (4, "$"));
    let entries = audit(store).await;
    let last = entries.last().unwrap();
    assert_eq!(last.action, AUDIT_CONFIG_ROLLBACK);
    let details: ConfigAuditDetails = serde_json::from_str(&last.details).unwrap();
    assert_eq!(details.before.config.prefix, "&");
    assert_eq!(details.after, rolled);
}

#[tokio::test]
async fn the_summary_is_the_cached_guild_sorted_with_its_shard_and_node() {
    let Setup { calls, .. } = &setup().await;
    let GuildResponse::Summary(summary) = calls
        .call(call(GUILD, GuildRequest::Summary))
        .await
        .unwrap()
    else {
        panic!("not a summary")
    };
    assert_eq!(summary.name, "Test Guild");
    assert_eq!(
        summary.icon.as_deref(),
        Some("a1b2c3d4e5f60718293a4b5c6d7e8f90")
    );
    assert_eq!(summary.owner_id, OWNER);
    assert_eq!(summary.member_count, Some(3));
    let channels: Vec<(u64, u8, i32)> = summary
        .channels
        .iter()
        .map(|c| (c.id, c.kind, c.position))
        .collect();
    assert_eq!(channels, [(TEXT, 0, 0), (VOICE, 2, 1)]);
    let roles: Vec<(u64, u32, i64)> = summary
        .roles
        .iter()
        .map(|r| (r.id, r.color, r.position))
        .collect();
    assert_eq!(
        roles,
        [
            (MOD_ROLE, 0x3498db, 2),
            (STAFF_ROLE, 0x2ecc71, 1),
            (GUILD, 0, 0)
        ],
        "highest first"
    );
    assert_eq!((summary.shard_id, summary.node.as_str()), (1, "node-a"));
}

#[tokio::test]
async fn member_permissions_follow_discord_and_the_staff_roles() {
    let Setup { calls, .. } = &setup().await;
    let access = |user_id| {
        let calls = calls.clone();
        async move {
            match calls
                .call(call(GUILD, GuildRequest::MemberPermissions { user_id }))
                .await
                .unwrap()
            {
                GuildResponse::Permissions(access) => access,
                other => panic!("not permissions: {other:?}"),
            }
        }
    };
    let owner = access(OWNER).await;
    assert!(owner.is_owner && owner.can_manage);
    let manager = access(MANAGER).await;
    assert!(manager.can_manage && !manager.is_owner);
    assert_eq!(manager.permissions, 32 | 1024 | 2048);
    let member = access(MEMBER).await;
    assert!(!member.can_manage && !member.is_staff, "{member:?}");

    // Granting the Helpers role dashboard access makes its members staff.
    let staff = GuildRequest::ChangeConfig {
        config: GuildConfig {
            staff_roles: vec![STAFF_ROLE],
            ..GuildConfig::default()
        },
        expected_version: 0,
    };
    calls.call(call(GUILD, staff)).await.unwrap();
    let member = access(MEMBER).await;
    assert!(member.is_staff && member.can_manage, "{member:?}");
    assert_eq!(member.permissions, 1024 | 2048);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_outlives_its_deadline_times_out() {
    let Setup { calls, .. } = &setup().await;
    let mut zero = call(GUILD, GuildRequest::ReadConfig);
    zero.deadline = Duration::ZERO;
    assert_eq!(calls.call(zero).await, Err(GuildCallError::TimedOut));
}

/// A member's message in the text channel.
fn message(id: u64, content: &str) -> Event {
    let message = serde_json::json!({
        "id": id.to_string(), "channel_id": TEXT.to_string(), "guild_id": GUILD.to_string(),
        "author": {"id": MEMBER.to_string(), "username": "member", "discriminator": "0",
                   "avatar": null, "global_name": null, "bot": false},
        "content": content, "timestamp": "2024-01-01T00:00:00.000000+00:00",
        "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
        "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0
    });
    Event::MessageCreate(Box::new(MessageCreate {
        channel_type: None,
        message: serde_json::from_value(message).unwrap(),
    }))
}

async fn route(router: &ActorRef<RouterMsg>, events: Vec<Event>) {
    route_tracked(router, events, None).await;
}

/// Routes one shard batch; returns once its events are in their guild's mailbox.
async fn route_tracked(router: &ActorRef<RouterMsg>, events: Vec<Event>, receipt: Option<Receipt>) {
    let delivery = Delivery {
        shard_count: SHARD_COUNT,
        replayed: false,
        events,
        receipt,
    };
    ractor::call_t!(router, |reply| RouterMsg::Route(delivery, reply), 5_000).unwrap();
}

/// The messages automod's shadow rules hit, once `count` are stored (within a deadline).
async fn hit_messages(store: &EmbeddedStore, count: usize) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let hits = store.automod_hits(GUILD, None, 100).await.unwrap();
        if hits.len() >= count || tokio::time::Instant::now() > deadline {
            let mut ids: Vec<u64> = hits.iter().map(|hit| hit.message_id).collect();
            ids.sort_unstable();
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_saved_automod_rule_applies_from_the_next_message_and_none_goes_unchecked() {
    let setup = setup().await;
    let invite = "join discord.gg/abc";
    route(&setup.router, vec![message(1, invite)]).await;
    let rules = AutomodConfig {
        rules: vec![AutomodRule {
            name: "invites".into(),
            trigger: Trigger::InviteLinks,
            actions: vec![AutomodAction::Delete],
            shadow: true,
            exempt_roles: Vec::new(),
            exempt_channels: Vec::new(),
            native: false,
        }],
    };
    let config = GuildConfig {
        automod: rules,
        ..GuildConfig::default()
    };
    let request = GuildRequest::ChangeConfig {
        config,
        expected_version: 0,
    };
    setup.calls.call(call(GUILD, request)).await.unwrap();
    // Routed right after the save's answer: the rule is compiled and in force already.
    route(&setup.router, vec![message(2, invite)]).await;
    let tested = GuildRequest::AutomodTest {
        content: invite.into(),
    };
    match setup.calls.call(call(GUILD, tested)).await.unwrap() {
        GuildResponse::AutomodTest { matches } => {
            assert_eq!(matches.len(), 1, "{matches:?}");
            assert_eq!(matches[0].rule, "invites");
        }
        other => panic!("not a test's answer: {other:?}"),
    }
    // The config is loaded again (the shard came back from another node): the first message
    // after waits for its rules, and is checked by them.
    let reload = RouterMsg::ShardAdopted {
        shard_id: 1,
        shard_count: SHARD_COUNT,
    };
    setup.router.cast(reload).unwrap();
    route(&setup.router, vec![message(3, invite), message(4, "hello")]).await;
    assert_eq!(
        hit_messages(&setup.store, 2).await,
        [2, 3],
        "the message before the rule was not hit, each one after it was"
    );
}

/// The node's fence, as the guild actors read it through a receipt: open until closed.
struct Gate(AtomicBool);

impl EventSink for Gate {
    fn deliver(
        &self,
        _shard: twilight_model::gateway::ShardId,
        _events: Vec<Event>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }

    fn may_run(&self, _shard_id: u32) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Records the messages handled; while message 1 is handled, waits until the test has
/// queued the rest, then closes the gate (the node freezes with them in the mailbox and
/// wakes fenced).
struct FenceDuringFirst {
    gate: Arc<Gate>,
    queued: Mutex<std::sync::mpsc::Receiver<()>>,
    handled: Mutex<Vec<u64>>,
}

impl EventObserver for FenceDuringFirst {
    fn handled(&self, _guild_id: u64, _shard_id: u32, event: HandledEvent) {
        let HandledEvent::Message(id) = event else {
            return;
        };
        self.handled.lock().unwrap().push(id);
        if id == 1 {
            // Off the worker's queue: the router must go on routing meanwhile.
            tokio::task::block_in_place(|| {
                let _ = self
                    .queued
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10));
            });
            self.gate.0.store(false, Ordering::SeqCst);
        }
    }
}

fn session_at(sequence: u64) -> Option<ExportedSession> {
    Some(ExportedSession {
        shard_id: 1,
        session_id: "session".into(),
        sequence,
        resume_url: None,
    })
}

// Two workers: the guild actor blocks in place while it handles message 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_queued_before_the_fence_and_handled_after_it_is_refused_and_resumed_from() {
    let gate = Arc::new(Gate(AtomicBool::new(true)));
    let (queued, waiting) = std::sync::mpsc::channel();
    let observer = Arc::new(FenceDuringFirst {
        gate: Arc::clone(&gate),
        queued: Mutex::new(waiting),
        handled: Mutex::default(),
    });
    let setup = setup_observed(Some(Arc::clone(&observer) as _)).await;
    let ledger = Arc::new(Ledger::new(1, Arc::clone(&gate) as _, session_at(0)));
    // Sequences 1, then 2 and 3: all three queued while the node holds its lease.
    let first = ledger.issue(session_at(1));
    route_tracked(&setup.router, vec![message(1, "hello")], Some(first)).await;
    let second = ledger.issue(session_at(3));
    route_tracked(
        &setup.router,
        vec![message(2, "hello"), message(3, "hello")],
        Some(second),
    )
    .await;
    queued.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), ledger.all_settled())
        .await
        .expect("every batch settles");

    assert_eq!(
        *observer.handled.lock().unwrap(),
        [1],
        "2 and 3 were refused"
    );
    assert!(ledger.refused());
    assert_eq!(
        ledger.checkpoint().map(|c| c.sequence),
        Some(1),
        "the next owner resumes after 1, so it handles 2 and 3"
    );
}
