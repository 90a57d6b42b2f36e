//! Automod through the simulator: member messages that break a guild's rules are reported
//! in shadow mode and acted on once enforced (a deleted message, a case through moderation);
//! rules over the limits are refused and change nothing. And the dashboard's moderation
//! pages in Chromium, as an admin clicks through them.

use std::time::Duration;

use crate::dashboard::{SignedIn, browser_installed};

use protonn_actors::{
    CallSource, Caller, GuildCall, GuildCallError, GuildRequest, GuildResponse, NativeRuleStatus,
    NativeSync,
};
use protonn_sim::SimHandle;
use protonn_storage::{AutomodAction, AutomodConfig, AutomodRule, GuildConfig, Trigger};
use protonn_tests::*;
use serde_json::json;
use twilight_model::guild::Permissions;

fn call(guild_id: u64, request: GuildRequest) -> GuildCall {
    GuildCall {
        guild_id,
        caller: Caller {
            user_id: None,
            source: CallSource::Dashboard,
        },
        idempotency_key: None,
        deadline: Duration::from_secs(10),
        request,
    }
}

pub(crate) fn rule(name: &str, trigger: Trigger, actions: Vec<AutomodAction>) -> AutomodRule {
    AutomodRule {
        name: name.to_owned(),
        trigger,
        actions,
        shadow: false,
        exempt_roles: Vec::new(),
        exempt_channels: Vec::new(),
        native: false,
    }
}

/// Replaces the guild's config with `change` applied to it, as the dashboard does.
pub(crate) async fn configure(
    node: &protonn_cluster::Node,
    guild_id: u64,
    change: impl FnOnce(&mut GuildConfig),
) -> Result<(), GuildCallError> {
    let calls = node.guild_calls();
    let Ok(GuildResponse::Config(current)) =
        calls.call(call(guild_id, GuildRequest::ReadConfig)).await
    else {
        panic!("the config could not be read")
    };
    let mut config = current.config;
    change(&mut config);
    let request = GuildRequest::ChangeConfig {
        config,
        expected_version: current.version,
    };
    calls.call(call(guild_id, request)).await.map(drop)
}

/// The bot's messages in `channel` (text), in order.
fn said_in(sim: &SimHandle, channel: u64) -> Vec<String> {
    sim.ledger()
        .rest
        .iter()
        .filter(|r| r.path == format!("/channels/{channel}/messages") && r.status == 200)
        .filter_map(|r| r.body.as_ref()?["content"].as_str().map(str::to_owned))
        .collect()
}

fn deletes(sim: &SimHandle) -> usize {
    sim.ledger()
        .rest
        .iter()
        .filter(|r| {
            r.route == "DELETE /channels/{channel_id}/messages/{message_id}" && r.status == 204
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spam_is_only_reported_in_shadow_mode_then_acted_on_once_enforced() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let (channel, log) = (guild.channel_ids[0], guild.channel_ids[1]);
    let spammer = guild.member_ids[0];
    let flood = |shadow| {
        let mut flood = rule(
            "flood",
            Trigger::MessageSpam {
                messages: 4,
                within_secs: 60,
            },
            vec![
                AutomodAction::Delete,
                AutomodAction::Timeout { secs: 600 },
                AutomodAction::Log,
            ],
        );
        flood.shadow = shadow;
        AutomodConfig { rules: vec![flood] }
    };
    configure(node, guild.id, |config| {
        config.log_channel = Some(log);
        config.automod = flood(true);
    })
    .await
    .unwrap();

    for n in 0..4 {
        sim.send_message(guild.id, channel, spammer, &format!("buy now {n}"))
            .unwrap();
    }
    wait_until("the shadow hit is in the mod-log", || async {
        said_in(sim, log)
            .iter()
            .any(|line| line.contains("shadow mode"))
    })
    .await;
    let lines = said_in(sim, log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("rule `flood` would have done delete, timeout 10m, log")
            && lines[0].contains("4 messages within 1m"),
        "{}",
        lines[0]
    );
    assert_eq!(deletes(sim), 0, "shadow mode deletes nothing");
    assert_eq!(sim.timeout_of(guild.id, spammer), None);
    // The dashboard lists the would-be hit (stored on a task: wait for it).
    let calls = node.guild_calls();
    let hits = || async {
        let request = GuildRequest::AutomodHits {
            before: None,
            limit: 10,
        };
        match calls.call(call(guild.id, request)).await {
            Ok(GuildResponse::AutomodHits { hits }) => hits,
            other => panic!("{other:?}"),
        }
    };
    wait_until("the shadow hit is stored", || async {
        !hits().await.is_empty()
    })
    .await;
    let stored = hits().await;
    assert_eq!(
        (
            stored[0].rule.as_str(),
            stored[0].user_id,
            stored[0].actions.as_str()
        ),
        ("flood", spammer, "delete, timeout 10m, log")
    );

    configure(node, guild.id, |config| config.automod = flood(false))
        .await
        .unwrap();
    let mut sent = Vec::new();
    for n in 0..4 {
        sent.push(
            sim.send_message(guild.id, channel, spammer, &format!("buy now {n}"))
                .unwrap(),
        );
    }
    wait_until("the spammer is timed out", || async {
        sim.timeout_of(guild.id, spammer).is_some()
    })
    .await;
    wait_until("the enforcement is in the mod-log", || async {
        said_in(sim, log)
            .iter()
            .any(|line| line.starts_with("Automod rule `flood`"))
    })
    .await;
    assert!(
        !sim.message_exists(channel, sent[3]),
        "the fourth message is deleted"
    );
    assert!(sim.message_exists(channel, sent[2]), "the ones before stay");
    assert_eq!(deletes(sim), 1);
    let line = said_in(sim, log)
        .into_iter()
        .find(|line| line.starts_with("Automod rule `flood`"))
        .unwrap();
    assert!(
        line.contains("deleted the message") && line.contains("was timed out for 10m"),
        "{line}"
    );
    // The timeout is moderation's case, by the bot, with the rule as its reason.
    let calls = node.guild_calls();
    let request = GuildRequest::Cases {
        target_id: Some(spammer),
        before: None,
        limit: 10,
    };
    let Ok(GuildResponse::Cases { cases }) = calls.call(call(guild.id, request)).await else {
        panic!("no cases")
    };
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].action, "timeout");
    let moderator = cases[0].moderator_id;
    assert!(
        moderator != guild.owner_id && !guild.member_ids.contains(&moderator),
        "the bot is the moderator"
    );
    assert!(
        cases[0]
            .reason
            .starts_with("Automod rule `flood`: 4 messages"),
        "{}",
        cases[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_content_rule_deletes_what_breaks_it_and_spares_the_rest() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let (channel, exempt) = (guild.channel_ids[0], guild.channel_ids[1]);
    let member = guild.member_ids[0];
    // Eight rules: more than the free plan's five.
    give_premium(node.store().as_ref(), guild.id, guild.owner_id).await;
    let delete = || vec![AutomodAction::Delete];
    let mut invites = rule("invites", Trigger::InviteLinks, delete());
    invites.exempt_channels = vec![exempt];
    let rules = vec![
        invites,
        rule(
            "words",
            Trigger::Keywords {
                words: vec!["scam*".into(), "free nitro".into()],
            },
            delete(),
        ),
        rule(
            "phones",
            Trigger::Regex {
                patterns: vec![r"\b\d{3}-\d{4}\b".into()],
            },
            delete(),
        ),
        rule(
            "links",
            Trigger::Links {
                allow: Vec::new(),
                deny: vec!["evil.example".into()],
            },
            delete(),
        ),
        rule(
            "caps",
            Trigger::Caps {
                percent: 80,
                min_letters: 10,
            },
            delete(),
        ),
        rule("emojis", Trigger::EmojiFlood { emojis: 5 }, delete()),
        rule("zalgo", Trigger::Zalgo { marks: 8 }, delete()),
        rule(
            "copies",
            Trigger::DuplicateText {
                repeats: 3,
                within_secs: 60,
            },
            delete(),
        ),
    ];
    configure(node, guild.id, |config| {
        config.automod = AutomodConfig { rules };
    })
    .await
    .unwrap();

    let mut spared = Vec::new();
    let send = |channel, text: &str| sim.send_message(guild.id, channel, member, text).unwrap();
    for (innocent, breaking) in [
        ("our discord is lovely", "join discord.gg/abc123"),
        ("a scarf", "total SCAMMERS here"),
        ("get nitro", "get free  nitro"),
        ("call 5551234", "call 555-1234"),
        (
            "see https://good.example/a",
            "see https://www.evil.example/a",
        ),
        ("Hello There Everyone", "STOP SHOUTING AT ME"),
        ("nice 😀", "😀😀😀😀😀"),
        (
            "café",
            "z\u{0300}\u{0301}\u{0302}\u{0303}a\u{0304}\u{0305}\u{0306}\u{0307}\u{0308}",
        ),
    ] {
        spared.push(send(channel, innocent));
        let broken = send(channel, breaking);
        wait_until(&format!("{breaking:?} is deleted"), || async {
            !sim.message_exists(channel, broken)
        })
        .await;
    }
    // The same text three times: the third is a duplicate.
    spared.push(send(channel, "same"));
    spared.push(send(channel, "SAME"));
    let third = send(channel, "same");
    wait_until("the third copy is deleted", || async {
        !sim.message_exists(channel, third)
    })
    .await;
    // An invite in the exempt channel stays (handled before the keyword that follows it).
    let kept = send(exempt, "join discord.gg/abc123");
    let last = send(exempt, "a scam");
    wait_until("the keyword in the exempt channel is deleted", || async {
        !sim.message_exists(exempt, last)
    })
    .await;
    assert!(
        sim.message_exists(exempt, kept),
        "exempt from the invite rule"
    );
    // An edit is checked like a new message: a spared message edited into a scam goes.
    // Edits are not messages sent: editing one twice to the same text makes no copies.
    let edited = spared.pop().expect("a spared message");
    assert!(sim.edit_message(guild.id, channel, edited, "fresh text"));
    assert!(sim.edit_message(guild.id, channel, edited, "fresh text"));
    let fresh = send(channel, "fresh text");
    assert!(sim.edit_message(guild.id, channel, edited, "scam inside"));
    wait_until("the message edited into a scam is deleted", || async {
        !sim.message_exists(channel, edited)
    })
    .await;
    assert!(
        sim.message_exists(channel, fresh),
        "edits do not count as copies of a text"
    );
    for (n, message) in spared.iter().enumerate() {
        assert!(
            sim.message_exists(channel, *message),
            "message {n} was spared"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_a_message_shows_which_rule_would_fire_and_acts_on_nothing() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let words = rule(
        "words",
        Trigger::Keywords {
            words: vec!["scam*".into()],
        },
        vec![AutomodAction::Delete, AutomodAction::Ban],
    );
    configure(node, guild.id, |config| {
        config.automod = AutomodConfig { rules: vec![words] };
    })
    .await
    .unwrap();
    let calls = node.guild_calls();
    let test = |content: &str| {
        call(
            guild.id,
            GuildRequest::AutomodTest {
                content: content.to_owned(),
            },
        )
    };
    let Ok(GuildResponse::AutomodTest { matches }) = calls.call(test("big SCAMMER here")).await
    else {
        panic!("no answer")
    };
    assert_eq!(matches.len(), 1);
    assert_eq!(
        (
            matches[0].rule.as_str(),
            matches[0].why.as_str(),
            matches[0].actions.as_str()
        ),
        ("words", "the keyword `scam*`", "delete, ban")
    );
    let Ok(GuildResponse::AutomodTest { matches }) = calls.call(test("all fine")).await else {
        panic!("no answer")
    };
    assert!(matches.is_empty());
    let too_long = calls.call(test(&"x".repeat(2_001))).await;
    assert!(
        matches!(too_long, Err(GuildCallError::Invalid { .. })),
        "{too_long:?}"
    );
    // Nothing happened on Discord.
    assert!(sim.bans(guild.id).is_empty());
    assert_eq!(deletes(sim), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_over_the_limits_are_refused_with_the_reason_and_change_nothing() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let too_many = (0..51)
        .map(|n| {
            rule(
                &format!("r{n}"),
                Trigger::InviteLinks,
                vec![AutomodAction::Log],
            )
        })
        .collect();
    let refused = configure(node, guild.id, |config| {
        config.automod = AutomodConfig { rules: too_many };
    })
    .await;
    assert!(
        matches!(&refused, Err(GuildCallError::Invalid { message }) if message.contains("at most 50 automod rules")),
        "{refused:?}"
    );
    let huge = rule(
        "huge",
        Trigger::Regex {
            patterns: vec![r"\w{200}\w{200}\w{200}".into()],
        },
        vec![AutomodAction::Delete],
    );
    let refused = configure(node, guild.id, |config| {
        config.automod = AutomodConfig { rules: vec![huge] };
    })
    .await;
    assert!(
        matches!(&refused, Err(GuildCallError::Invalid { message }) if message.contains("too large once compiled")),
        "{refused:?}"
    );

    // The same through `config set`, in Discord.
    let owner = guild.owner_id;
    sim.send_message(
        guild.id,
        channel,
        owner,
        r#"!config set automod {"rules":[{"name":"x","trigger":{"kind":"regex","patterns":["(unclosed"]},"actions":[{"kind":"delete"}]}]}"#,
    )
    .unwrap();
    let answer = reply_in(sim, channel, 0).await;
    assert!(
        answer.contains("is not a valid regular expression"),
        "{answer}"
    );
    sim.send_message(guild.id, channel, owner, "!config get automod")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 1).await,
        r#"`automod` is `{"rules":[]}`."#
    );
    // Nothing was set: an invite stays.
    let invite = sim
        .send_message(guild.id, channel, guild.member_ids[0], "discord.gg/abc")
        .unwrap();
    sim.send_message(guild.id, channel, owner, "!ping").unwrap();
    assert_eq!(reply_in(sim, channel, 2).await, "pong");
    assert!(sim.message_exists(channel, invite));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reads_cases_and_tunes_automod_in_the_dashboard() {
    if !browser_installed() {
        return;
    }
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    sim.send_message(
        guild.id,
        channel,
        guild.owner_id,
        &format!("!warn <@{member}> spamming links"),
    )
    .unwrap();
    assert!(reply_in(sim, channel, 0).await.starts_with("Case #1:"));

    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());

    // Cases: the list, filtered by the member, then the case's page.
    browser.go(&format!("{origin}/guilds/{}", guild.id)).await;
    browser
        .click(&format!("a[href=\"/guilds/{}/cases\"]", guild.id))
        .await;
    browser.wait_for("Moderation cases").await;
    browser.wait_for("spamming links").await;
    browser.fill("#member", &member.to_string()).await;
    browser.click("#filter").await;
    browser.wait_for("All cases").await;
    browser.screenshot("cases").await;
    browser
        .click(&format!("a[href=\"/guilds/{}/cases/1\"]", guild.id))
        .await;
    browser.wait_for("Case #1").await;
    browser.wait_for("Every case about this member").await;
    browser.screenshot("case").await;

    // The mod-log settings: the escalation ladder and DMs, live for the bot at once.
    browser
        .go(&format!("{origin}/guilds/{}/settings", guild.id))
        .await;
    browser.wait_for("Escalation ladder").await;
    browser
        .fill("#escalation", "2/7d timeout 1h, 3/7d kick")
        .await;
    browser.click("#dm_members").await;
    browser.click("#save").await;
    browser.wait_for("Saved as version 1").await;
    browser.screenshot("moderation-settings").await;
    sim.send_message(guild.id, channel, guild.owner_id, "!config get escalation")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 1).await,
        "`escalation` is `2/7d timeout 1h, 3/7d kick`."
    );
    sim.send_message(guild.id, channel, guild.owner_id, "!config get dm_members")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 2).await, "`dm_members` is `on`.");
    browser
        .go(&format!("{origin}/guilds/{}/settings", guild.id))
        .await;
    browser.fill("#escalation", "2/7d explode").await;
    browser.click("#save").await;
    browser.wait_for("Give steps such as").await;
    sim.send_message(guild.id, channel, guild.owner_id, "!config get escalation")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 3).await,
        "`escalation` is `2/7d timeout 1h, 3/7d kick`.",
        "a refused ladder changes nothing"
    );

    // Automod: a rule in shadow mode, saved from the editor.
    browser.go(&format!("{origin}/guilds/{}", guild.id)).await;
    browser
        .click(&format!("a[href=\"/guilds/{}/automod\"]", guild.id))
        .await;
    browser.wait_for("Test a message").await;
    let rules = r#"{"rules":[{"name":"invites","trigger":{"kind":"invite_links"},"actions":[{"kind":"delete"},{"kind":"warn"}],"shadow":true}]}"#;
    browser.fill("#rules", rules).await;
    browser.click("#save-rules").await;
    browser.wait_for("Saved as version 2").await;
    // Testing a message shows the rule that would fire, and why.
    browser.fill("#content", "come to discord.gg/raid").await;
    browser.click("#test").await;
    browser.wait_for("an invite link (discord.gg/raid)").await;
    browser.wait_for("shadow mode: reports only").await;
    browser.screenshot("automod-test").await;
    // A member's invite is only reported; the hit shows on the page.
    let invite = sim
        .send_message(guild.id, channel, member, "join discord.gg/raid")
        .unwrap();
    let page = format!("{origin}/guilds/{}/automod", guild.id);
    wait_until("the shadow hit is listed", || async {
        browser.go(&page).await;
        browser.source().await.contains("id=\"hits\"")
    })
    .await;
    assert!(browser.source().await.contains("delete, warn"));
    assert!(
        sim.message_exists(channel, invite),
        "shadow mode deletes nothing"
    );
    browser.screenshot("automod-hits").await;
    // A rule the bot refuses is not saved, and the page says why.
    browser
        .fill(
            "#rules",
            r#"{"rules":[{"name":"bad","trigger":{"kind":"regex","patterns":["(unclosed"]},"actions":[{"kind":"delete"}]}]}"#,
        )
        .await;
    browser.click("#save-rules").await;
    browser.wait_for("is not a valid regular expression").await;
    browser.wait_for("Nothing was saved").await;
    browser.screenshot("automod-refused").await;

    visit.close().await;
}

/// The guild's AutoMod rules on the simulated Discord, once they are `count`.
async fn discord_rules(sim: &SimHandle, guild_id: u64, count: usize) -> Vec<serde_json::Value> {
    wait_until("Discord has the rules", || async {
        sim.automod_rules(guild_id).len() == count
    })
    .await;
    sim.automod_rules(guild_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_rule_runs_in_discords_automod_and_the_bot_takes_its_other_actions() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let (channel, log) = (guild.channel_ids[0], guild.channel_ids[1]);
    let member = guild.member_ids[0];
    let mut words = rule(
        "words",
        Trigger::Keywords {
            words: vec!["scam*".into()],
        },
        vec![
            AutomodAction::Delete,
            AutomodAction::Warn,
            AutomodAction::Log,
        ],
    );
    words.native = true;
    let mut mentions = rule(
        "mentions",
        Trigger::MentionSpam { mentions: 3 },
        vec![AutomodAction::Delete],
    );
    mentions.native = true;
    configure(node, guild.id, |config| {
        config.log_channel = Some(log);
        config.automod = AutomodConfig {
            rules: vec![words, mentions],
        };
    })
    .await
    .unwrap();
    let pushed = discord_rules(sim, guild.id, 2).await;
    let keyword_rule = pushed.iter().find(|r| r["name"] == "words").unwrap();
    assert_eq!(
        keyword_rule["trigger_metadata"]["keyword_filter"],
        json!(["scam*"])
    );
    assert_eq!(
        keyword_rule["actions"],
        json!([{"type": 1, "metadata": {}}])
    );
    assert_eq!(keyword_rule["enabled"], json!(true));
    let mention_rule = pushed.iter().find(|r| r["name"] == "mentions").unwrap();
    assert_eq!(
        mention_rule["trigger_metadata"]["mention_total_limit"],
        json!(2),
        "ours fire at 3 mentions, Discord's past 2"
    );

    assert_eq!(
        sim.send_message(guild.id, channel, member, "what a scammer"),
        None,
        "Discord blocked it"
    );
    let calls = node.guild_calls();
    let cases = || async {
        let request = GuildRequest::Cases {
            target_id: Some(member),
            before: None,
            limit: 10,
        };
        match calls.call(call(guild.id, request)).await {
            Ok(GuildResponse::Cases { cases }) => cases,
            other => panic!("{other:?}"),
        }
    };
    wait_until("the bot warned the member", || async {
        !cases().await.is_empty()
    })
    .await;
    let warned = cases().await;
    assert_eq!(warned.len(), 1, "one execution acted on: {warned:?}");
    assert_eq!(warned[0].action, "warn");
    assert!(
        warned[0]
            .reason
            .starts_with("Automod rule `words`: Discord's AutoMod matched the keyword `scam*`"),
        "{}",
        warned[0].reason
    );
    wait_until("the mod-log has it", || async {
        said_in(sim, log)
            .iter()
            .any(|line| line.starts_with("Automod rule `words`"))
    })
    .await;
    let line = said_in(sim, log)
        .into_iter()
        .find(|line| line.starts_with("Automod rule `words`"))
        .unwrap();
    assert!(
        line.contains("Discord's AutoMod blocked the message") && line.contains("warned"),
        "{line}"
    );
    assert_eq!(deletes(sim), 0, "nothing left for the bot to delete");

    // A change reaches Discord's rule (the same one); a rule no longer native leaves it.
    let id = keyword_rule["id"].clone();
    configure(node, guild.id, |config| {
        config.automod.rules[0].trigger = Trigger::Keywords {
            words: vec!["*coin".into()],
        };
    })
    .await
    .unwrap();
    wait_until("Discord's rule is changed", || async {
        sim.automod_rules(guild.id)
            .iter()
            .any(|r| r["id"] == id && r["trigger_metadata"]["keyword_filter"] == json!(["*coin"]))
    })
    .await;
    configure(node, guild.id, |config| {
        config.automod.rules[0].native = false;
        config.automod.rules[1].native = false;
    })
    .await
    .unwrap();
    discord_rules(sim, guild.id, 0).await;
    let kept = sim
        .send_message(guild.id, channel, member, "bitcoin here")
        .expect("Discord no longer blocks it");
    wait_until("the bot deleted it itself", || async {
        !sim.message_exists(channel, kept)
    })
    .await;

    // A rule Discord cannot run is refused for native, with the reason, and nothing changes.
    let mut middle = rule(
        "middle",
        Trigger::Keywords {
            words: vec!["sc*m".into()],
        },
        vec![AutomodAction::Delete],
    );
    middle.native = true;
    let refused = configure(node, guild.id, |config| config.automod.rules.push(middle))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, GuildCallError::Invalid { message }
            if message.contains("`middle` cannot be native") && message.contains("start or end")),
        "{refused:?}"
    );
    assert!(sim.automod_rules(guild.id).is_empty());
}

/// The guild's native rules as the bot reads them on Discord (the dashboard's call).
async fn native_status(node: &protonn_cluster::Node, guild_id: u64) -> Vec<NativeRuleStatus> {
    match node
        .guild_calls()
        .call(call(guild_id, GuildRequest::AutomodNative))
        .await
    {
        Ok(GuildResponse::AutomodNative { rules }) => rules,
        other => panic!("{other:?}"),
    }
}

/// A native keyword rule named `name`, blocking `word`.
fn native_words(name: &str, word: &str) -> AutomodRule {
    let mut rule = rule(
        name,
        Trigger::Keywords {
            words: vec![word.to_owned()],
        },
        vec![AutomodAction::Delete],
    );
    rule.native = true;
    rule
}

fn names_on_discord(sim: &SimHandle, guild_id: u64) -> Vec<String> {
    let mut names: Vec<String> = sim
        .automod_rules(guild_id)
        .iter()
        .filter_map(|rule| rule["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_plan_alone_takes_native_rules_off_discord_and_back() {
    let runtime = protonn_actors::RuntimeConfig {
        // The actor reads the plan again this often: the change shows at the next message.
        plan_recheck_every: Duration::from_millis(50),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    let store = node.store();
    give_premium(store.as_ref(), guild.id, guild.owner_id).await;
    // Six rules: the first and the sixth native; the free plan runs the first five.
    configure(node, guild.id, |config| {
        config.automod.rules = (0..6)
            .map(|n| native_words(&format!("rule {n}"), &format!("word{n}")))
            .collect();
        for rule in &mut config.automod.rules[1..5] {
            rule.native = false;
        }
    })
    .await
    .unwrap();
    wait_until("premium pushes both native rules", || async {
        names_on_discord(sim, guild.id) == ["rule 0", "rule 5"]
    })
    .await;
    let saved = store.load(guild.id).await.unwrap().unwrap().version;

    // Premium ends: nobody saves anything, the next message the guild's actor handles (once
    // it reads the plan again) takes the sixth rule off Discord.
    store.remove_slot(guild.owner_id, guild.id).await.unwrap();
    wait_until("the rule past the free plan leaves Discord", || async {
        sim.send_message(guild.id, channel, member, "hello");
        names_on_discord(sim, guild.id) == ["rule 0"]
    })
    .await;
    // Premium again: it comes back.
    give_premium(store.as_ref(), guild.id, guild.owner_id).await;
    wait_until("the rule is back on Discord with premium", || async {
        sim.send_message(guild.id, channel, member, "hello");
        names_on_discord(sim, guild.id) == ["rule 0", "rule 5"]
    })
    .await;
    assert_eq!(
        store.load(guild.id).await.unwrap().unwrap().version,
        saved,
        "no config was saved"
    );
    let statuses = native_status(node, guild.id).await;
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| s.sync == NativeSync::OnDiscord),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_manage_server_the_bot_pushes_no_native_rule_and_says_why() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    configure(node, guild.id, |config| {
        config.automod.rules = vec![rule(
            "marker",
            Trigger::Keywords {
                words: vec!["marker".into()],
            },
            vec![AutomodAction::Delete],
        )];
    })
    .await
    .unwrap();
    // An admin takes Manage Server from the bot's role; a message sent after it, handled
    // once the bot has seen the role change (one shard, in order), shows the bot has.
    assert!(sim.edit_bot_role(
        guild.id,
        Permissions::from_bits_truncate(u64::MAX) - Permissions::MANAGE_GUILD
    ));
    let marker = sim
        .send_message(guild.id, channel, member, "marker")
        .unwrap();
    wait_until(
        "the bot handled a message after the role change",
        || async { !sim.message_exists(channel, marker) },
    )
    .await;

    configure(node, guild.id, |config| {
        config.automod.rules.push(native_words("words", "scam*"));
    })
    .await
    .unwrap();
    let statuses = native_status(node, guild.id).await;
    assert_eq!(
        statuses,
        [NativeRuleStatus {
            rule: "words".into(),
            sync: NativeSync::NotOnDiscord {
                why: "the bot needs the Manage Server permission to manage Discord's AutoMod \
                      rules"
                    .into()
            },
        }]
    );
    // The dashboard, started now, is read again after the permission comes back.
    let mut visit = if browser_installed() {
        Some(SignedIn::start(sim, node, guild.owner_id).await)
    } else {
        None
    };
    if let Some(visit) = &mut visit {
        let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
        browser
            .go(&format!("{origin}/guilds/{}/automod", guild.id))
            .await;
        browser.wait_for("Native rules on Discord").await;
        browser
            .wait_for("No: the bot needs the Manage Server permission")
            .await;
        browser.screenshot("automod-native-permission").await;
    }
    let automod_requests = || {
        sim.ledger()
            .rest
            .iter()
            .filter(|r| r.path.contains("auto-moderation"))
            .count()
    };
    // A save that would push is answered before its push task runs: a later message
    // handled by the actor (after that task was spawned) gives it time to have sent.
    let later = sim
        .send_message(guild.id, channel, member, "marker")
        .unwrap();
    wait_until("the bot handled a later message", || async {
        !sim.message_exists(channel, later)
    })
    .await;
    assert_eq!(automod_requests(), 0, "no AutoMod request reached Discord");
    assert!(sim.automod_rules(guild.id).is_empty());
    assert!(
        !sim.ledger().rest.iter().any(|r| r.status == 403),
        "no request was refused for a missing permission"
    );

    // Manage Server again: the role change alone pushes the rule, nobody saves anything.
    let saved = node.store().load(guild.id).await.unwrap().unwrap().version;
    assert!(sim.edit_bot_role(guild.id, Permissions::from_bits_truncate(u64::MAX)));
    let rules = discord_rules(sim, guild.id, 1).await;
    assert_eq!(rules[0]["name"], "words");
    assert!(
        sim.ledger()
            .rest
            .iter()
            .any(|r| r.method == "POST" && r.path.contains("auto-moderation") && r.status < 300),
        "the push is in the ledger"
    );
    assert_eq!(
        native_status(node, guild.id).await[0].sync,
        NativeSync::OnDiscord
    );
    assert_eq!(
        node.store().load(guild.id).await.unwrap().unwrap().version,
        saved,
        "no config was saved"
    );
    if let Some(mut visit) = visit {
        let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
        browser
            .go(&format!("{origin}/guilds/{}/automod", guild.id))
            .await;
        browser.wait_for("Yes, as configured").await;
        browser
            .screenshot("automod-native-permission-granted")
            .await;
        visit.close().await;
    }

    // A later change of the rule changes Discord's.
    configure(node, guild.id, |config| {
        config.automod.rules[1].trigger = Trigger::Keywords {
            words: vec!["scam*".into(), "*coin".into()],
        };
    })
    .await
    .unwrap();
    wait_until("Discord's rule has both keywords", || async {
        sim.automod_rules(guild.id).first().is_some_and(|rule| {
            rule["trigger_metadata"]["keyword_filter"]
                .as_array()
                .map(Vec::len)
                == Some(2)
        })
    })
    .await;
    assert_eq!(
        native_status(node, guild.id).await[0].sync,
        NativeSync::OnDiscord
    );
}
