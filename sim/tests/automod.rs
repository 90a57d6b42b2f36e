//! Discord's native AutoMod: the rules' routes with Discord's caps and 50013 without Manage
//! Guild, their events, and keyword and mention-spam rules enforced on members' messages
//! (blocked, timed out, announced by AUTO_MODERATION_ACTION_EXECUTION), all in the ledger.

mod common;

use common::*;

use protonn_sim::SimHandle;
use serde_json::{Value, json};
use twilight_gateway::{ConfigBuilder, Event, Intents, Shard, ShardId};
use twilight_model::guild::Permissions;
use twilight_model::id::Id;

/// A twilight shard, READY, with the intents AutoMod's events need.
async fn connect(sim: &SimHandle) -> Shard {
    let intents = Intents::GUILDS
        | Intents::GUILD_MESSAGES
        | Intents::MESSAGE_CONTENT
        | Intents::GUILD_MEMBERS
        | Intents::AUTO_MODERATION_CONFIGURATION
        | Intents::AUTO_MODERATION_EXECUTION;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard = Shard::with_config(ShardId::new(0, 1), config);
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    shard
}

fn rules_path(guild: u64) -> String {
    format!("/guilds/{guild}/auto-moderation/rules")
}

fn keyword_rule(name: &str, keywords: Value, actions: Value) -> Value {
    json!({
        "name": name,
        "event_type": 1,
        "trigger_type": 1,
        "trigger_metadata": {"keyword_filter": keywords},
        "actions": actions,
        "enabled": true,
    })
}

fn block() -> Value {
    json!([{"type": 1}])
}

/// The dispatches of one event name the ledger holds.
fn dispatched(sim: &SimHandle, event: &str) -> usize {
    sim.ledger()
        .dispatches
        .iter()
        .filter(|d| d.event == event)
        .count()
}

#[tokio::test]
async fn rules_are_created_read_modified_and_deleted_through_twilight_with_their_events() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let mut shard = connect(&sim).await;
    let client = twilight_http::Client::builder()
        .token(TOKEN.to_owned())
        .proxy(sim.addr().to_string(), true)
        .ratelimiter(None)
        .build();
    let guild_id = Id::new(guild.id);

    let created = client
        .create_auto_moderation_rule(
            guild_id,
            "no scams",
            twilight_model::guild::auto_moderation::AutoModerationEventType::MessageSend,
        )
        .action_block_message()
        .action_send_alert_message(Id::new(guild.channel_ids[1]))
        .enabled(true)
        .with_keyword(&["scam*", "*coin"], &["free\\s+nitro"], &["scampi"])
        .await
        .expect("created")
        .model()
        .await
        .unwrap();
    assert_eq!(created.name, "no scams");
    assert!(created.enabled);
    assert_eq!(
        created.trigger_metadata.keyword_filter.as_deref(),
        Some(&["scam*".to_owned(), "*coin".to_owned()][..])
    );
    let event = until(&mut shard, |e| match e {
        Event::AutoModerationRuleCreate(rule) => Some(rule.id),
        _ => None,
    })
    .await;
    assert_eq!(event, created.id);

    let read = client
        .auto_moderation_rule(guild_id, created.id)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(read, created);
    let listed = client
        .auto_moderation_rules(guild_id)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(listed.as_slice(), std::slice::from_ref(&created));

    let renamed = client
        .update_auto_moderation_rule(guild_id, created.id)
        .name("no scams at all")
        .enabled(false)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.enabled),
        ("no scams at all", false)
    );
    assert_eq!(
        renamed.trigger_metadata, created.trigger_metadata,
        "what the change leaves out is kept"
    );
    let updated = until(&mut shard, |e| match e {
        Event::AutoModerationRuleUpdate(rule) => Some(rule.name.clone()),
        _ => None,
    })
    .await;
    assert_eq!(updated, "no scams at all");

    client
        .delete_auto_moderation_rule(guild_id, created.id)
        .await
        .unwrap();
    let deleted = until(&mut shard, |e| match e {
        Event::AutoModerationRuleDelete(rule) => Some(rule.id),
        _ => None,
    })
    .await;
    assert_eq!(deleted, created.id);
    assert!(sim.automod_rules(guild.id).is_empty());
    let (status, body) = bot_call(
        &sim,
        "GET",
        &format!("{}/{}", rules_path(guild.id), created.id),
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10066)));

    let routes: Vec<(String, u16)> = sim
        .ledger()
        .rest
        .iter()
        .map(|r| (r.route.clone(), r.status))
        .collect();
    for expected in [
        ("POST /guilds/{guild_id}/auto-moderation/rules", 200),
        (
            "GET /guilds/{guild_id}/auto-moderation/rules/{rule_id}",
            200,
        ),
        ("GET /guilds/{guild_id}/auto-moderation/rules", 200),
        (
            "PATCH /guilds/{guild_id}/auto-moderation/rules/{rule_id}",
            200,
        ),
        (
            "DELETE /guilds/{guild_id}/auto-moderation/rules/{rule_id}",
            204,
        ),
        (
            "GET /guilds/{guild_id}/auto-moderation/rules/{rule_id}",
            404,
        ),
    ] {
        assert!(
            routes.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} in the ledger"
        );
    }
}

#[tokio::test]
async fn discords_caps_are_refused_and_change_nothing() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let path = rules_path(guild.id);
    let long = "x".repeat(61);
    let refused = [
        (
            "1,001 keywords",
            keyword_rule(
                "r",
                json!((0..1_001).map(|n| format!("w{n}")).collect::<Vec<_>>()),
                block(),
            ),
        ),
        (
            "a keyword of 61 characters",
            keyword_rule("r", json!([long]), block()),
        ),
        ("no actions", keyword_rule("r", json!(["a"]), json!([]))),
        (
            "an alert without a channel",
            keyword_rule("r", json!(["a"]), json!([{"type": 2, "metadata": {}}])),
        ),
        (
            "a timeout over 4 weeks",
            keyword_rule(
                "r",
                json!(["a"]),
                json!([{"type": 3, "metadata": {"duration_seconds": 2_419_201}}]),
            ),
        ),
        (
            "11 regex patterns",
            json!({"name": "r", "event_type": 1, "trigger_type": 1, "actions": block(),
                   "trigger_metadata": {"regex_patterns": vec!["a"; 11]}}),
        ),
        (
            "a regex pattern of 261 characters",
            json!({"name": "r", "event_type": 1, "trigger_type": 1, "actions": block(),
                   "trigger_metadata": {"regex_patterns": ["a".repeat(261)]}}),
        ),
        (
            "an invalid regex",
            json!({"name": "r", "event_type": 1, "trigger_type": 1, "actions": block(),
                   "trigger_metadata": {"regex_patterns": ["(unclosed"]}}),
        ),
        (
            "101 allowed words",
            json!({"name": "r", "event_type": 1, "trigger_type": 1, "actions": block(),
                   "trigger_metadata": {"keyword_filter": ["a"], "allow_list": vec!["b"; 101]}}),
        ),
        (
            "a mention limit of 51",
            json!({"name": "r", "event_type": 1, "trigger_type": 5, "actions": block(),
                   "trigger_metadata": {"mention_total_limit": 51}}),
        ),
        (
            "a timeout on a spam rule",
            json!({"name": "r", "event_type": 1, "trigger_type": 3,
                   "actions": [{"type": 3, "metadata": {"duration_seconds": 60}}]}),
        ),
        (
            "an unknown trigger type",
            json!({"name": "r", "event_type": 1, "trigger_type": 2, "actions": block()}),
        ),
        (
            "a member-profile event for a keyword rule",
            json!({"name": "r", "event_type": 2, "trigger_type": 1, "actions": block()}),
        ),
        (
            "no name",
            json!({"event_type": 1, "trigger_type": 1, "actions": block()}),
        ),
    ];
    for (what, body) in refused {
        let (status, reply) = bot_call(&sim, "POST", &path, Some(body)).await;
        assert_eq!(
            (status, reply["code"].as_u64()),
            (400, Some(50035)),
            "{what}: {reply}"
        );
    }
    assert!(sim.automod_rules(guild.id).is_empty(), "nothing was made");

    let at_the_caps = keyword_rule(
        "caps",
        json!((0..1_000).map(|n| format!("{n:0>60}")).collect::<Vec<_>>()),
        json!([{"type": 3, "metadata": {"duration_seconds": 2_419_200}}]),
    );
    assert_eq!(
        bot_call(&sim, "POST", &path, Some(at_the_caps)).await.0,
        200
    );
    for n in 1..6 {
        let rule = keyword_rule(&format!("k{n}"), json!(["a"]), block());
        assert_eq!(bot_call(&sim, "POST", &path, Some(rule)).await.0, 200);
    }
    let (status, reply) = bot_call(
        &sim,
        "POST",
        &path,
        Some(keyword_rule("seventh", json!(["a"]), block())),
    )
    .await;
    assert_eq!((status, reply["code"].as_u64()), (400, Some(50035)));
    assert!(
        reply
            .to_string()
            .contains("AUTO_MODERATION_MAX_RULES_OF_TYPE_EXCEEDED"),
        "{reply}"
    );
    let mentions = json!({"name": "m", "event_type": 1, "trigger_type": 5, "actions": block(),
                          "trigger_metadata": {"mention_total_limit": 50}});
    assert_eq!(
        bot_call(&sim, "POST", &path, Some(mentions.clone()))
            .await
            .0,
        200
    );
    assert_eq!(
        bot_call(&sim, "POST", &path, Some(mentions)).await.0,
        400,
        "one mention-spam rule a guild"
    );
    assert_eq!(sim.automod_rules(guild.id).len(), 7);

    let first = sim.automod_rules(guild.id)[0].clone();
    let rule_path = format!("{path}/{}", first["id"].as_str().unwrap());
    let (status, _) = bot_call(&sim, "PATCH", &rule_path, Some(json!({"trigger_type": 5}))).await;
    assert_eq!(status, 400, "a rule's trigger type cannot change");
    let (status, _) = bot_call(
        &sim,
        "PATCH",
        &rule_path,
        Some(json!({"name": "renamed", "trigger_metadata": {"keyword_filter": [long]}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        sim.automod_rules(guild.id)[0],
        first,
        "a refused change changes nothing"
    );
}

#[tokio::test]
async fn without_manage_guild_the_rules_routes_answer_50013() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let path = rules_path(guild.id);
    let rule = keyword_rule("r", json!(["a"]), block());
    assert_eq!(
        bot_call(&sim, "POST", &path, Some(rule.clone())).await.0,
        200
    );
    let id = sim.automod_rules(guild.id)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.revoke_bot_permissions(guild.id, Permissions::MANAGE_GUILD);
    for (method, path, body) in [
        ("GET", path.clone(), None),
        ("POST", path.clone(), Some(rule)),
        ("GET", format!("{path}/{id}"), None),
        ("PATCH", format!("{path}/{id}"), Some(json!({"name": "x"}))),
        ("DELETE", format!("{path}/{id}"), None),
    ] {
        let (status, reply) = bot_call(&sim, method, &path, body).await;
        assert_eq!(
            (status, reply["code"].as_u64()),
            (403, Some(50013)),
            "{method} {path}"
        );
    }
    assert_eq!(sim.automod_rules(guild.id).len(), 1, "nothing changed");
    let other = sim.guilds()[1].id;
    assert_eq!(
        bot_call(&sim, "GET", &rules_path(other), None).await.0,
        200,
        "only that guild's permission was taken"
    );
}

#[tokio::test]
async fn a_matching_member_message_is_blocked_the_member_timed_out_and_the_execution_sent() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let (channel, alerts, exempt) = (
        guild.channel_ids[0],
        guild.channel_ids[1],
        guild.channel_ids[2],
    );
    let member = guild.member_ids[0];
    let mut shard = connect(&sim).await;
    let rule = json!({
        "name": "no scams",
        "event_type": 1,
        "trigger_type": 1,
        "trigger_metadata": {"keyword_filter": ["scam*"], "allow_list": ["scampi"]},
        "actions": [
            {"type": 1},
            {"type": 2, "metadata": {"channel_id": alerts.to_string()}},
            {"type": 3, "metadata": {"duration_seconds": 60}},
        ],
        "enabled": true,
        "exempt_channels": [exempt.to_string()],
    });
    let (status, created) = bot_call(&sim, "POST", &rules_path(guild.id), Some(rule)).await;
    assert_eq!(status, 200, "{created}");
    let before = dispatched(&sim, "MESSAGE_CREATE");

    assert_eq!(
        sim.send_message(guild.id, channel, member, "what a SCAMMER you are"),
        None,
        "blocked: not sent"
    );
    let executions: Vec<_> = {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(
                until(&mut shard, |e| match e {
                    Event::AutoModerationActionExecution(run) => Some(run.clone()),
                    _ => None,
                })
                .await,
            );
        }
        seen
    };
    for run in &executions {
        assert_eq!(run.rule_id.to_string(), created["id"].as_str().unwrap());
        assert_eq!(run.user_id.get(), member);
        assert_eq!(run.channel_id.map(Id::get), Some(channel));
        assert_eq!(run.message_id, None, "a blocked message has no id");
        assert_eq!(run.matched_keyword.as_deref(), Some("scam*"));
        assert_eq!(run.matched_content.as_deref(), Some("scammer"));
        assert_eq!(run.content, "what a SCAMMER you are");
    }
    let alert = executions
        .iter()
        .find_map(|run| run.alert_system_message_id)
        .expect("the alert's message");
    assert!(sim.message_exists(alerts, alert.get()));
    assert!(sim.timeout_of(guild.id, member).is_some(), "timed out");
    assert_eq!(
        dispatched(&sim, "MESSAGE_CREATE"),
        before,
        "no MESSAGE_CREATE"
    );
    assert_eq!(dispatched(&sim, "AUTO_MODERATION_ACTION_EXECUTION"), 3);

    for (what, channel, author, content) in [
        ("no keyword", channel, member, "a fine message"),
        ("a whole word only", channel, member, "pscam"),
        ("the allow list", channel, member, "scampi for dinner"),
        ("an exempt channel", exempt, member, "scam"),
        ("the owner", channel, guild.owner_id, "scam"),
    ] {
        assert!(
            sim.send_message(guild.id, channel, author, content)
                .is_some(),
            "{what}: delivered"
        );
    }
    assert_eq!(dispatched(&sim, "AUTO_MODERATION_ACTION_EXECUTION"), 3);
}

#[tokio::test]
async fn mention_spam_and_regex_rules_fire_and_a_disabled_rule_does_not() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    let _shard = connect(&sim).await;
    let path = rules_path(guild.id);
    let mentions = json!({"name": "mentions", "event_type": 1, "trigger_type": 5,
                          "actions": block(), "enabled": true,
                          "trigger_metadata": {"mention_total_limit": 2}});
    let regex = json!({"name": "nitro", "event_type": 1, "trigger_type": 1,
                       "actions": block(), "enabled": true,
                       "trigger_metadata": {"regex_patterns": ["free\\s+nitro"]}});
    let off = json!({"name": "off", "event_type": 1, "trigger_type": 1,
                     "actions": block(), "enabled": false,
                     "trigger_metadata": {"keyword_filter": ["hello"]}});
    for rule in [mentions, regex, off] {
        assert_eq!(bot_call(&sim, "POST", &path, Some(rule)).await.0, 200);
    }
    assert!(
        sim.send_message(guild.id, channel, member, "<@1> <@2> <@1>")
            .is_some(),
        "two people mentioned: at the limit"
    );
    assert!(
        sim.send_message(guild.id, channel, member, "<@1> <@2> <@&3>")
            .is_none(),
        "three: over it"
    );
    assert!(
        sim.send_message(guild.id, channel, member, "get FREE   nitro now")
            .is_none()
    );
    assert!(
        sim.send_message(guild.id, channel, member, "hello")
            .is_some(),
        "a disabled rule does not fire"
    );
}
