//! Workflows through the simulator: saved by guild calls (bad definitions refused, nothing
//! saved), triggered by members' messages and commands, acting on simulated Discord, each
//! sandbox limit stopping a run with its reason in the trace, a dry-run with no request in
//! the simulator's ledger, a durable wait carrying a run on, and a member who restricted
//! processing passed over; the dashboard's workflow pages used in Chromium as an admin does.

use std::time::Duration;

use protonn_actors::{
    CallSource, Caller, GuildCall, GuildCallError, GuildCalls, GuildRequest, GuildResponse,
    RuntimeConfig, SampleEvent, SampleEventKind, SandboxLimit, WorkflowOutcome, WorkflowTrace,
};
use protonn_sim::SimHandle;
use protonn_storage::{PrivacyFlags, Timestamp};
use protonn_tests::*;

use crate::dashboard::{SignedIn, browser_installed};

/// A guild call as the dashboard makes it (user 1).
pub(crate) async fn call(
    calls: &dyn GuildCalls,
    guild_id: u64,
    request: GuildRequest,
) -> Result<GuildResponse, GuildCallError> {
    calls
        .call(GuildCall {
            guild_id,
            caller: Caller {
                user_id: Some(1),
                source: CallSource::Dashboard,
            },
            idempotency_key: None,
            deadline: Duration::from_secs(10),
            request,
        })
        .await
}

pub(crate) async fn save(
    calls: &dyn GuildCalls,
    guild_id: u64,
    workflow_id: u64,
    definition: &str,
) -> Result<GuildResponse, GuildCallError> {
    let request = GuildRequest::SaveWorkflow {
        workflow_id,
        name: format!("workflow {workflow_id}"),
        enabled: true,
        definition: definition.to_owned(),
    };
    call(calls, guild_id, request).await
}

async fn saved_ids(calls: &dyn GuildCalls, guild_id: u64) -> Vec<u64> {
    match call(calls, guild_id, GuildRequest::ListWorkflows).await {
        Ok(GuildResponse::Workflows { workflows, .. }) => {
            workflows.iter().map(|w| w.workflow_id).collect()
        }
        other => panic!("{other:?}"),
    }
}

async fn runs(calls: &dyn GuildCalls, guild_id: u64, workflow_id: u64) -> Vec<WorkflowTrace> {
    match call(calls, guild_id, GuildRequest::WorkflowRuns { workflow_id }).await {
        Ok(GuildResponse::WorkflowRuns { traces }) => traces,
        other => panic!("{other:?}"),
    }
}

/// Waits for `workflow_id`'s `n`th trace and returns it.
async fn nth_run(
    calls: &dyn GuildCalls,
    guild_id: u64,
    workflow_id: u64,
    n: usize,
) -> WorkflowTrace {
    wait_until("the workflow's run is traced", || async {
        runs(calls, guild_id, workflow_id).await.len() > n
    })
    .await;
    runs(calls, guild_id, workflow_id).await.swap_remove(n)
}

/// REST requests the guild's workflows could have made: changes to its channels or its
/// members (the dashboard's pages read channels).
fn requests_for(sim: &SimHandle, guild: &protonn_sim::GuildInfo) -> usize {
    let guild_path = format!("/guilds/{}/", guild.id);
    sim.ledger()
        .rest
        .iter()
        .filter(|r| !r.route.starts_with("GET "))
        .filter(|r| {
            r.path.starts_with(&guild_path)
                || guild
                    .channel_ids
                    .iter()
                    .any(|c| r.path.starts_with(&format!("/channels/{c}/")))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_workflow_replies_and_a_command_workflow_reads_its_arguments() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"message": {"contains": "hello"}},
            "actions": [{"reply": {"text": "Hi {user.mention}, welcome to {channel.mention}!"}},
                        {"delete_message": {}}]}"#,
    )
    .await
    .unwrap();
    save(
        calls,
        guild.id,
        2,
        r#"{"trigger": {"command": {"name": "sum"}},
            "conditions": [{"compare": {"left": "{args.count}", "op": "eq", "right": "2"}}],
            "actions": [{"send": {"text": "{args.1} + {args.2} = {args.1 + args.2}{if args.1 + args.2 > 10 then \" (big)\" else \"\"}"}}]}"#,
    )
    .await
    .unwrap();

    let message = sim
        .send_message(guild.id, channel, member, "well HELLO there")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 0).await,
        format!("Hi <@{member}>, welcome to <#{channel}>!")
    );
    let trace = nth_run(calls, guild.id, 1, 0).await;
    assert_eq!(trace.outcome, WorkflowOutcome::Completed, "{trace:?}");
    assert!(!sim.message_exists(channel, message));
    let reply = sim
        .ledger()
        .rest
        .into_iter()
        .find(|r| r.route == "POST /channels/{channel_id}/messages")
        .unwrap();
    let body = reply.body.unwrap();
    assert_eq!(body["message_reference"]["message_id"], message.to_string());
    assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));

    sim.send_message(guild.id, channel, member, "!sum 4 9")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 1).await, "4 + 9 = 13 (big)");
    sim.send_message(guild.id, channel, member, "!sum 4")
        .unwrap();
    let trace = nth_run(calls, guild.id, 2, 1).await;
    assert_eq!(trace.outcome, WorkflowOutcome::ConditionsFailed);
    assert_eq!(channel_replies(sim, channel).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_are_refused_with_a_reason_and_nothing_is_saved() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"called": {}}, "actions": [{"call": {"workflow": 2}}]}"#,
    )
    .await
    .unwrap_err();
    save(
        calls,
        guild.id,
        2,
        r#"{"trigger": {"called": {}}, "actions": [{"stop": {}}]}"#,
    )
    .await
    .unwrap();
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"command": {"name": "go"}}, "actions": [{"call": {"workflow": 2}}]}"#,
    )
    .await
    .unwrap();
    for (definition, expected) in [
        ("{\"trigger\": ", "invalid definition: EOF while parsing"),
        (
            r#"{"trigger": {"member_join": {}}, "actions": [{"stop": {}}], "priority": 1}"#,
            "unknown field `priority`",
        ),
        (
            r#"{"trigger": {"member_join": {}}, "actions": [{"dm": {"text": "Hi {user.name"}}]}"#,
            "actions[0].dm.text: template error: `{` is never closed (write `{{` for a brace) at character 4",
        ),
        (
            r#"{"trigger": {"message": {"regex": "\\w{500}\\w{500}\\w{500}"}}, "actions": [{"stop": {}}]}"#,
            "too large once compiled",
        ),
        (
            r#"{"trigger": {"schedule": {"every_minutes": 1, "channel": 5}}, "actions": [{"stop": {}}]}"#,
            "more frequent is not allowed",
        ),
        (
            r#"{"trigger": {"called": {}}, "actions": [{"call": {"workflow": 1}}]}"#,
            "workflows call each other in a loop: 1 → 2 → 1",
        ),
    ] {
        let err = save(calls, guild.id, 2, definition).await.unwrap_err();
        let GuildCallError::Invalid { message } = err else {
            panic!("{err:?}");
        };
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(saved_ids(calls, guild.id).await, [1, 2]);
    let err = call(
        calls,
        guild.id,
        GuildRequest::DeleteWorkflow { workflow_id: 2 },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("calls it"), "{err}");
    assert_eq!(saved_ids(calls, guild.id).await, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_each_step_and_sends_nothing() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"message": {"starts_with": "report"}},
            "conditions": [{"not": {"has_role": 99}}],
            "actions": [{"send": {"text": "Thanks {user.name}"}},
                        {"add_role": {"role": 98}},
                        {"timeout": {"minutes": 5}},
                        {"react": {"emoji": "✅"}}]}"#,
    )
    .await
    .unwrap();
    let before = requests_for(sim, &guild);
    let sample = SampleEvent {
        kind: SampleEventKind::Message,
        user_id: Some(guild.member_ids[0]),
        user_name: "ada".into(),
        channel_id: Some(channel),
        message_id: Some(123),
        content: "report: spam".into(),
        ..SampleEvent::default()
    };
    let request = GuildRequest::DryRunWorkflow {
        workflow_id: 1,
        definition: None,
        sample,
        recent: None,
    };
    let Ok(GuildResponse::WorkflowTrace(trace)) = call(calls, guild.id, request).await else {
        panic!("no trace");
    };
    assert_eq!(trace.outcome, WorkflowOutcome::Completed);
    let lines: Vec<String> = trace
        .steps
        .iter()
        .map(|s| format!("{}: {}", s.at, s.detail))
        .collect();
    assert_eq!(
        lines,
        [
            "trigger: matches the sample event".to_owned(),
            "conditions[0]: holds".to_owned(),
            format!("actions[0]: send to <#{channel}>: Thanks ada"),
            format!("actions[1]: add role <@&98> to <@{}>", guild.member_ids[0]),
            format!("actions[2]: time out <@{}> for 5 min", guild.member_ids[0]),
            "actions[3]: react ✅".to_owned(),
        ]
    );
    assert_eq!(trace.api_calls, 4);
    assert!(trace.fuel_used > 0);
    assert_eq!(
        requests_for(sim, &guild),
        before,
        "a dry-run made a request"
    );
    assert!(
        runs(calls, guild.id, 1).await.is_empty(),
        "a dry-run is no run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sandbox_limit_stops_a_run_with_its_reason() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    // Workflows with more steps, and more of them, than the free plan allows.
    give_premium(node.store().as_ref(), guild.id, guild.owner_id).await;
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    // Channels 1 and 2 take the sends (5 each: Discord's 5 per 5 s per channel); replies to
    // the tests below go to channel 0.
    let (one, two) = (guild.channel_ids[1], guild.channel_ids[2]);
    let sends = |n: usize, text: &str| {
        (0..n)
            .map(|i| {
                let to = if i % 2 == 0 { one } else { two };
                format!(r#"{{"send": {{"channel": {to}, "text": "{text}"}}}}"#)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let long = "x".repeat(2_001);
    let holes = "{1}".repeat(1_100);
    let big_var = format!(
        r#"{{"set_var": {{"name": "v", "value": "{}"}}}}"#,
        "y".repeat(4_000)
    );
    let limits = [
        (1, "api", sends(11, "api"), SandboxLimit::ApiCalls),
        (2, "long", sends(1, &long), SandboxLimit::MessageLength),
        (3, "fuel", sends(1, &holes), SandboxLimit::Fuel),
        (
            4,
            "bytes",
            vec![big_var; 7].join(", "),
            SandboxLimit::OutputBytes,
        ),
    ];
    for (id, word, actions, _) in &limits {
        let definition = format!(
            r#"{{"trigger": {{"message": {{"starts_with": "{word}"}}}}, "actions": [{actions}]}}"#
        );
        save(calls, guild.id, *id, &definition).await.unwrap();
    }
    for (id, word, _, limit) in &limits {
        sim.send_message(guild.id, channel, member, word).unwrap();
        let trace = nth_run(calls, guild.id, *id, 0).await;
        assert_eq!(trace.outcome, WorkflowOutcome::Limit(*limit), "{word}");
        let reason = format!("stopped: limit {} reached", limit.label());
        assert!(
            trace.steps.iter().any(|step| step.detail == reason),
            "{word}: {trace:?}"
        );
    }
    let sent = || channel_replies(sim, one).len() + channel_replies(sim, two).len();
    assert_eq!(sent(), 10, "the sends allowed, and no more");

    // Four workflows match one message: three fire.
    for id in 10..14 {
        let definition = format!(
            r#"{{"trigger": {{"message": {{"contains": "fan"}}}}, "actions": [{{"send": {{"text": "fan {id}"}}}}]}}"#
        );
        save(calls, guild.id, id, &definition).await.unwrap();
    }
    sim.send_message(guild.id, channel, member, "fan out")
        .unwrap();
    wait_until("three workflows answer", || async {
        channel_replies(sim, channel).len() == 3
    })
    .await;
    assert!(runs(calls, guild.id, 13).await.is_empty(), "a fourth fired");

    // The guild's runs per minute: 30 at once, 7 used above; the rest go, then none.
    save(
        calls,
        guild.id,
        20,
        r#"{"trigger": {"message": {"contains": "rate"}}, "actions": [{"increment_var": {"name": "n"}}]}"#,
    )
    .await
    .unwrap();
    for _ in 0..30 {
        sim.send_message(guild.id, channel, member, "rate").unwrap();
    }
    wait_until("runs beyond the guild's rate are skipped", || async {
        runs(calls, guild.id, 20)
            .await
            .iter()
            .any(|t| t.outcome == WorkflowOutcome::Limit(SandboxLimit::Rate))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_carries_the_run_on_from_a_durable_timer() {
    let runtime = RuntimeConfig {
        timer_poll_every: Duration::from_millis(100),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"command": {"name": "remind"}},
            "actions": [{"set_var": {"name": "what", "value": "{args.all}"}},
                        {"send": {"text": "I will remind you."}},
                        {"wait": {"seconds": 1}},
                        {"send": {"text": "Reminder for {user.mention}: {var.what}"}}]}"#,
    )
    .await
    .unwrap();
    let member = guild.member_ids[0];
    sim.send_message(guild.id, channel, member, "!remind tea time")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "I will remind you.");
    let first = nth_run(calls, guild.id, 1, 0).await;
    assert_eq!(first.outcome, WorkflowOutcome::Waiting { seconds: 1 });
    assert_eq!(
        reply_in(sim, channel, 1).await,
        format!("Reminder for <@{member}>: tea time")
    );
    let second = nth_run(calls, guild.id, 1, 1).await;
    assert_eq!(second.outcome, WorkflowOutcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_restricted_processing_triggers_no_workflow() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    let (restricted, member) = (guild.member_ids[0], guild.member_ids[1]);
    let flags = PrivacyFlags {
        restricted: true,
        ..PrivacyFlags::default()
    };
    node.store()
        .set_privacy_flags(restricted, &flags)
        .await
        .unwrap();
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"message": {"contains": "hello"}},
            "actions": [{"send": {"text": "Hi {user.mention}"}}]}"#,
    )
    .await
    .unwrap();
    save(
        calls,
        guild.id,
        2,
        r#"{"trigger": {"command": {"name": "greet"}}, "actions": [{"send": {"text": "greetings {user.mention}"}}]}"#,
    )
    .await
    .unwrap();

    // First while the workflows load and neither choice is known, then with both known:
    // each time the restricted member's event comes first and is passed over in order.
    for round in 0..2 {
        sim.send_message(guild.id, channel, restricted, "hello")
            .unwrap();
        sim.send_message(guild.id, channel, restricted, "!greet")
            .unwrap();
        sim.send_message(guild.id, channel, member, "hello")
            .unwrap();
        assert_eq!(
            reply_in(sim, channel, round).await,
            format!("Hi <@{member}>"),
            "round {round}"
        );
    }
    sim.send_message(guild.id, channel, member, "!greet")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 2).await,
        format!("greetings <@{member}>")
    );
    assert_eq!(
        channel_replies(sim, channel).len(),
        3,
        "the restricted member's events ran nothing"
    );
    assert_eq!(runs(calls, guild.id, 1).await.len(), 2);
    assert_eq!(runs(calls, guild.id, 2).await.len(), 1);
}

/// Saves workflow 1, which greets whoever says "hello", and checks that it greets `member`.
async fn greets_on_hello(
    calls: &dyn GuildCalls,
    sim: &SimHandle,
    guild_id: u64,
    channel: u64,
    member: u64,
) {
    save(
        calls,
        guild_id,
        1,
        r#"{"trigger": {"message": {"contains": "hello"}},
            "actions": [{"send": {"text": "Hi {user.mention}"}}]}"#,
    )
    .await
    .unwrap();
    sim.send_message(guild_id, channel, member, "hello")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, format!("Hi <@{member}>"));
}

/// A restriction made with `!privacy` applies to the member's very next event on the node
/// that stored it, though it had their earlier choice in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_made_in_discord_applies_to_the_next_event_at_once() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    let (member, other) = (guild.member_ids[0], guild.member_ids[1]);
    greets_on_hello(calls, sim, guild.id, channel, member).await;
    sim.send_message(guild.id, channel, member, "!privacy restrict on")
        .unwrap();
    wait_until("the restriction is saved", || async {
        sim.ledger().rest.iter().any(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b["content"].as_str() == Some("Saved: restriction on."))
        })
    })
    .await;
    // Well within the minute the node trusts a choice it read.
    sim.send_message(guild.id, channel, member, "hello")
        .unwrap();
    sim.send_message(guild.id, channel, other, "hello").unwrap();
    // Replies so far: the first greeting, the note that a DM went out, then the next one.
    reply_in(sim, channel, 2).await;
    let replies = channel_replies(sim, channel);
    let greetings: Vec<&String> = replies.iter().filter(|r| r.starts_with("Hi ")).collect();
    assert_eq!(
        greetings,
        [&format!("Hi <@{member}>"), &format!("Hi <@{other}>")],
        "the restricted member's second hello ran nothing: {replies:?}"
    );
}

/// A restriction made through the dashboard's path (the leader's store, as `protonn web`
/// reaches it on the embedded backend; never the node) applies to the member's next event on
/// the node running their guild, though that node remembered their earlier choice: the node
/// learns of the change from the store's list of changes and forgets the remembered choice,
/// instead of trusting it for the rest of its minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_made_in_the_dashboard_applies_to_the_next_event_in_a_cluster() {
    use crate::cluster::{dashboard_store, membership, running, start_coordinator, start_node};

    let sim = start_sim(small_world(1, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, _client) = start_coordinator(&sim, dir.path()).await;
    let node = start_node(&sim, dir.path(), membership(&coordinator, "node-a")).await;
    let guild = some_guild(&sim, 0);
    wait_until("node-a runs the shard with the guild cached", || async {
        running(&node).await.len() == 1 && node.cached_guild(guild.id).is_some()
    })
    .await;
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    let (member, other) = (guild.member_ids[0], guild.member_ids[1]);
    greets_on_hello(calls, &sim, guild.id, channel, member).await;
    wait_until("the node remembers the member's choice", || async {
        node.remembered_choice(member) == Some(PrivacyFlags::default())
    })
    .await;

    let dashboard = dashboard_store(&coordinator);
    let restricted = PrivacyFlags {
        restricted: true,
        ..PrivacyFlags::default()
    };
    let mut ids = 1..;
    let said = protonn_storage::privacy::change_choices(
        dashboard.as_ref(),
        member,
        restricted,
        "dashboard",
        Timestamp::now(),
        || ids.next().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(said, ["restriction on"]);
    // The remembered choice would be trusted for a minute; the change makes the node drop
    // it (the wait ends long before the minute, and a remembered entry is kept however old).
    wait_until("the node forgets the changed choice", || async {
        node.remembered_choice(member) != Some(PrivacyFlags::default())
    })
    .await;
    sim.send_message(guild.id, channel, member, "hello")
        .unwrap();
    sim.send_message(guild.id, channel, other, "hello").unwrap();
    reply_in(&sim, channel, 1).await;
    let replies = channel_replies(&sim, channel);
    assert_eq!(
        replies,
        [format!("Hi <@{member}>"), format!("Hi <@{other}>")],
        "the restricted member's next hello ran nothing"
    );

    node.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_builds_dry_runs_and_imports_workflows_in_the_dashboard() {
    if !browser_installed() {
        return;
    }
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
    let list = format!("{origin}/guilds/{}/workflows", guild.id);

    // A new workflow from the form: a field that is no number is refused, nothing saved.
    browser.go(&format!("{origin}/guilds/{}", guild.id)).await;
    browser
        .click(&format!("a[href=\"/guilds/{}/workflows\"]", guild.id))
        .await;
    browser.wait_for("No workflow yet.").await;
    browser.click("#new-workflow").await;
    browser.wait_for("New workflow").await;
    browser.fill("#name", "greeter").await;
    browser
        .click("#trigger_kind option[value=\"message\"]")
        .await;
    browser.fill("#trigger_contains", "hello").await;
    browser
        .click("#action_kind_0 option[value=\"reply\"]")
        .await;
    browser.fill("#action_text_0", "Hi {user.mention}").await;
    // A dry run of the draft: its trace, nothing saved.
    browser.fill("#sample_content", "hello there").await;
    browser.fill("#sample_user_id", &member.to_string()).await;
    browser
        .fill("#sample_channel_id", &channel.to_string())
        .await;
    browser.click("#run-dry").await;
    browser.wait_for("Dry run: completed").await;
    assert!(saved_ids(calls, guild.id).await.is_empty());
    browser.click("#action_kind_1 option[value=\"wait\"]").await;
    browser.fill("#action_number_1", "soon").await;
    browser.click("#save").await;
    browser
        .wait_for("its seconds is not a number: `soon`. Nothing was saved.")
        .await;
    assert!(saved_ids(calls, guild.id).await.is_empty());
    // As typed, the row dropped: saved, and live for the bot.
    browser.click("#action_kind_1 option[value=\"\"]").await;
    browser.click("#save").await;
    browser
        .wait_for("Saved. The bot uses it from now on.")
        .await;
    browser.screenshot("workflow-saved").await;
    sim.send_message(guild.id, channel, member, "well hello")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, format!("Hi <@{member}>"));

    // A template that does not parse: its position shown, the saved one unchanged.
    browser.fill("#action_text_0", "Hi {user.mention").await;
    browser.click("#save").await;
    browser.wait_for("template error").await;
    browser.wait_for("at character 4").await;
    browser.wait_for("Nothing was saved.").await;
    let stored = match call(calls, guild.id, GuildRequest::ListWorkflows).await {
        Ok(GuildResponse::Workflows { workflows, .. }) => workflows,
        other => panic!("{other:?}"),
    };
    assert!(stored[0].definition.contains("Hi {user.mention}\""));

    // The run's trace, then a dry run: each step, and no request to Discord.
    let page = format!("{list}/1");
    wait_until("the run is listed", || async {
        browser.go(&page).await;
        browser.source().await.contains("id=\"runs\"")
    })
    .await;
    let before = requests_for(sim, &guild);
    browser.fill("#sample_user_id", &member.to_string()).await;
    browser
        .fill("#sample_channel_id", &channel.to_string())
        .await;
    browser.fill("#sample_content", "hello there").await;
    browser.click("#run-dry").await;
    browser.wait_for("Dry run: completed").await;
    browser
        .wait_for(&format!("reply: Hi &lt;@{member}&gt;"))
        .await;
    browser.wait_for("Discord calls 1").await;
    browser.screenshot("workflow-dry-run").await;
    assert_eq!(
        requests_for(sim, &guild),
        before,
        "a dry run made a request"
    );

    // Duplicate (a disabled copy), disable the original, delete the copy.
    browser.go(&list).await;
    browser.click("#duplicate-1").await;
    browser.wait_for("A disabled copy of workflow 1").await;
    assert_eq!(saved_ids(calls, guild.id).await, [1, 2]);
    browser.go(&list).await;
    browser.click("#toggle-1").await;
    browser.wait_for("Workflow 1 disabled.").await;
    browser.click("#delete-2").await;
    browser.wait_for("Workflow 2 deleted.").await;
    let stored = match call(calls, guild.id, GuildRequest::ListWorkflows).await {
        Ok(GuildResponse::Workflows { workflows, .. }) => workflows,
        other => panic!("{other:?}"),
    };
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].enabled);

    // Import: each bad input refused with its reason and nothing saved, then one imported.
    for (json, reason) in [
        ("{\"name\": ", "is not valid JSON"),
        (
            r#"{"name": "x", "definition": {"trigger": {"called": {}}, "actions": []}, "priority": 1}"#,
            "unknown field `priority`",
        ),
        (
            r#"{"name": "x", "definition": {"trigger": {"message": {"regex": "\\w{500}\\w{500}\\w{500}"}}, "actions": [{"stop": {}}]}}"#,
            "too large once compiled",
        ),
        (
            r#"{"name": "x", "definition": {"trigger": {"schedule": {"every_minutes": 1, "channel": 5}}, "actions": [{"stop": {}}]}}"#,
            "more frequent is not allowed",
        ),
        (
            r#"{"name": "x", "definition": {"trigger": {"called": {}}, "actions": [{"call": {"workflow": 2}}]}}"#,
            "in a loop",
        ),
    ] {
        browser.go(&list).await;
        browser.fill("#import", json).await;
        browser.click("#do-import").await;
        browser.wait_for("Nothing was saved.").await;
        assert!(browser.source().await.contains(reason), "{reason}");
    }
    assert_eq!(saved_ids(calls, guild.id).await, [1]);
    browser.go(&list).await;
    browser
        .fill(
            "#import",
            r#"{"name": "echo", "definition": {"trigger": {"command": {"name": "echo"}}, "actions": [{"send": {"text": "{args.all}"}}]}}"#,
        )
        .await;
    browser.click("#do-import").await;
    browser.wait_for("Workflow 2 imported.").await;
    browser.screenshot("workflows-list").await;
    sim.send_message(guild.id, channel, member, "!echo back")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 1).await, "back");

    // The export, as the browser downloads it.
    let export = browser
        .script_async(&format!(
            "return await (await fetch('/guilds/{}/workflows.json')).text();",
            guild.id
        ))
        .await;
    let export: serde_json::Value = serde_json::from_str(export.as_str().unwrap()).unwrap();
    let names: Vec<&str> = export
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greeter", "echo"]);
    assert_eq!(
        export[1]["definition"]["trigger"]["command"]["name"],
        "echo"
    );

    // Every change is in the audit log, by the owner.
    let audit = node
        .store()
        .list_audit(guild.id, Timestamp(0), Timestamp(u64::MAX), 100)
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e.actor_id == guild.owner_id)
        .map(|e| e.action.as_str())
        .collect();
    for action in ["workflow.save", "workflow.disable", "workflow.delete"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    visit.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_would_wait_beyond_the_guild_s_cap_stops_with_the_reason() {
    let runtime = RuntimeConfig {
        workflow_waits_per_guild: 1,
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"command": {"name": "later"}},
            "actions": [{"send": {"text": "noted"}}, {"wait": {"seconds": 3600}}, {"send": {"text": "now"}}]}"#,
    )
    .await
    .unwrap();
    let member = guild.member_ids[0];
    for n in 0..2 {
        sim.send_message(guild.id, channel, member, "!later")
            .unwrap();
        assert_eq!(reply_in(sim, channel, n).await, "noted");
    }
    let first = nth_run(calls, guild.id, 1, 0).await;
    assert_eq!(first.outcome, WorkflowOutcome::Waiting { seconds: 3600 });
    let second = nth_run(calls, guild.id, 1, 1).await;
    assert_eq!(second.outcome, WorkflowOutcome::Limit(SandboxLimit::Waits));
    assert!(
        second
            .steps
            .iter()
            .any(|step| step.detail.starts_with("stopped: limit waits reached")),
        "{second:?}"
    );
    let waits = node.store().timers_of_guild(guild.id).await.unwrap();
    assert_eq!(waits.len(), 1, "one wait stored, the refused one not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_join_workflow_needs_the_members_intent_and_then_greets_newcomers() {
    let greeter = r#"{"trigger": {"member_join": {}},
        "actions": [{"send": {"channel": CHANNEL, "text": "Welcome {user.name}"}}]}"#;
    // Without the intent, Discord sends no joins: such a workflow is refused.
    {
        let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
        let guild = some_guild(sim, 0);
        let definition = greeter.replace("CHANNEL", &guild.channel_ids[0].to_string());
        let err = save(node.guild_calls().as_ref(), guild.id, 1, &definition)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("GUILD_MEMBERS"), "{err}");
        assert!(
            saved_ids(node.guild_calls().as_ref(), guild.id)
                .await
                .is_empty()
        );
    }
    // With it (granted to the application, asked for by the bot), a join fires it.
    let mut world = small_world(1, 1);
    world.privileged_intents.push("GUILD_MEMBERS".to_owned());
    let runtime = RuntimeConfig {
        member_events: true,
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(world, runtime).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let definition = greeter.replace("CHANNEL", &channel.to_string());
    save(node.guild_calls().as_ref(), guild.id, 1, &definition)
        .await
        .unwrap();
    let newcomer = sim.member_joins(guild.id).unwrap();
    assert_eq!(
        reply_in(sim, channel, 0).await,
        format!("Welcome newcomer{}", newcomer % 100_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_starts_a_thread_named_by_its_template() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"command": {"name": "discuss"}},
            "actions": [{"create_thread": {"name": "{args.all} ({user.name})"}}]}"#,
    )
    .await
    .unwrap();
    let member = guild.member_ids[0];
    sim.send_message(guild.id, channel, member, "!discuss the roadmap")
        .unwrap();
    let trace = nth_run(calls, guild.id, 1, 0).await;
    assert_eq!(trace.outcome, WorkflowOutcome::Completed, "{trace:?}");
    let threads = sim.threads(guild.id);
    assert_eq!(threads.len(), 1, "{threads:?}");
    let name = threads[0]["name"].as_str().unwrap();
    assert!(name.starts_with("the roadmap ("), "{name}");
    assert_eq!(threads[0]["parent_id"], channel.to_string());
    assert_eq!(threads[0]["type"], 11, "public");

    // A name too long once rendered fails the run with the reason; no thread.
    save(
        calls,
        guild.id,
        2,
        r#"{"trigger": {"command": {"name": "long"}},
            "actions": [{"create_thread": {"name": "{args.all}{args.all}{args.all}"}}]}"#,
    )
    .await
    .unwrap();
    let words = "x".repeat(40);
    sim.send_message(guild.id, channel, member, &format!("!long {words}"))
        .unwrap();
    let trace = nth_run(calls, guild.id, 2, 0).await;
    let WorkflowOutcome::Failed(reason) = &trace.outcome else {
        panic!("{trace:?}");
    };
    assert!(reason.contains("1 to 100 characters"), "{reason}");
    assert_eq!(sim.threads(guild.id).len(), 1);
}

/// Variables kept between runs and the recent runs outlive the node: a server's counter and
/// a member's score are stored as they change, and a node started again on the same data
/// directory carries on from them; its dashboard lists the runs before any event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_counter_and_the_recent_runs_survive_a_restart_of_the_node() {
    let sim = start_sim(small_world(1, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = std::sync::Arc::new(Recorder::default());
    let guild = some_guild(&sim, 0);
    let start = || async {
        let node = start_node(&sim, dir.path(), &recorder).await;
        wait_all_ready(&node).await;
        wait_until("the guild is cached", || async {
            node.cached_guild(guild.id).is_some()
        })
        .await;
        node
    };
    let node = start().await;
    save(
        node.guild_calls().as_ref(),
        guild.id,
        1,
        r#"{"trigger": {"command": {"name": "count"}},
            "actions": [{"increment_server_var": {"name": "count"}},
                        {"increment_member_var": {"name": "mine", "by": 2}},
                        {"reply": {"text": "count {server_var.count}, yours {member_var.mine}"}}]}"#,
    )
    .await
    .unwrap();
    let (channel, member, other) = (
        guild.channel_ids[0],
        guild.member_ids[0],
        guild.member_ids[1],
    );
    let count = |author: u64| {
        let sim = &sim;
        async move {
            let before = channel_replies(sim, channel).len();
            sim.send_message(guild.id, channel, author, "!count")
                .unwrap();
            reply_in(sim, channel, before).await
        }
    };
    for n in 1..=3 {
        assert_eq!(count(member).await, format!("count {n}, yours {}", 2 * n));
    }
    // Each run's changes and trace are stored on a task after it.
    let store = node.store();
    wait_until("the counter and the runs are stored", || async {
        let counter = store.workflow_variables(guild.id).await.unwrap();
        let stored_runs = store.workflow_runs(guild.id).await.unwrap();
        counter
            .iter()
            .any(|v| v.user_id.is_none() && v.name == "count" && v.value == "3")
            && stored_runs.len() == 3
    })
    .await;
    drop(store);
    node.shutdown().await;

    let node = start().await;
    let calls = node.guild_calls();
    let kept = runs(calls.as_ref(), guild.id, 1).await;
    assert_eq!(kept.len(), 3, "the recent runs came back from storage");
    assert!(kept.iter().all(|t| t.outcome == WorkflowOutcome::Completed));
    assert_eq!(count(member).await, "count 4, yours 8");
    assert_eq!(count(other).await, "count 5, yours 2");
    assert_eq!(runs(calls.as_ref(), guild.id, 1).await.len(), 5);
    drop(calls);
    node.shutdown().await;
    sim.shutdown().await;
}

/// A downgrade keeps every workflow but runs what the free plan allows: the first three
/// enabled by id, none longer than ten steps; the list (the dashboard's) names the others
/// and why; premium again runs them all. Nothing is reloaded for it: commands sent right
/// after the change are each answered as the plan says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_downgrade_only_what_the_plan_allows_runs_and_the_list_names_the_rest() {
    use protonn_storage::{Plan, guild_plan};

    let runtime = RuntimeConfig {
        // The downgrade shows in what runs at once.
        plan_recheck_every: Duration::from_millis(50),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    give_premium(node.store().as_ref(), guild.id, guild.owner_id).await;
    let hi = |n: u64| {
        format!(
            r#"{{"trigger": {{"command": {{"name": "hi"}}}}, "actions": [{{"reply": {{"text": "hi from {n}"}}}}]}}"#
        )
    };
    // Workflow 2 has 11 steps (the free plan runs up to 10); 4 and 5 come after three others.
    let mut long = vec![r#"{"set_var": {"name": "x", "value": "1"}}"#; 10];
    long.push(r#"{"reply": {"text": "long"}}"#);
    let long = format!(
        r#"{{"trigger": {{"command": {{"name": "long"}}}}, "actions": [{}]}}"#,
        long.join(",")
    );
    let extra =
        r#"{"trigger": {"command": {"name": "extra"}}, "actions": [{"reply": {"text": "extra"}}]}"#;
    for (id, definition) in [
        (1, hi(1)),
        (2, long),
        (3, hi(3)),
        (4, hi(4)),
        (5, extra.to_owned()),
    ] {
        save(calls, guild.id, id, &definition).await.unwrap();
    }
    let off = || async {
        match call(calls, guild.id, GuildRequest::ListWorkflows).await {
            Ok(GuildResponse::Workflows { off, .. }) => off,
            other => panic!("{other:?}"),
        }
    };
    // `!extra` and `!long` first, then `!hi`, once each; waits for `expected` answers. Runs
    // that read kept variables send once those are stored, so answers may come out of order:
    // a run that must not answer is caught by the rounds where nothing waits (no workflow that
    // sets a variable runs), where the `!hi` answers come last.
    let answers = |expected: usize| async move {
        let before = channel_replies(sim, channel).len();
        for command in ["!extra", "!long", "!hi"] {
            sim.send_message(guild.id, channel, member, command)
                .unwrap();
        }
        let answered = || {
            let mut answers: Vec<String> = channel_replies(sim, channel)[before..]
                .iter()
                .filter(|text| {
                    ["hi from", "long", "extra"]
                        .iter()
                        .any(|w| text.starts_with(w))
                })
                .cloned()
                .collect();
            answers.sort();
            answers
        };
        wait_until("the answers arrive", || async {
            answered().len() >= expected
        })
        .await;
        answered()
    };
    assert!(off().await.is_empty());
    assert_eq!(
        answers(5).await,
        ["extra", "hi from 1", "hi from 3", "hi from 4", "long"]
    );

    node.store()
        .remove_slot(guild.owner_id, guild.id)
        .await
        .unwrap();
    wait_until("the guild is free again", || async {
        guild_plan(node.store().as_ref(), guild.id, Timestamp::now())
            .await
            .unwrap()
            == Plan::Free
    })
    .await;
    wait_until(
        "the bot's list names the workflows switched off",
        || async { off().await.len() == 3 },
    )
    .await;
    let switched_off = off().await;
    let why: Vec<(u64, &str)> = switched_off
        .iter()
        .map(|o| (o.workflow_id, o.why.as_str()))
        .collect();
    assert_eq!(
        why,
        [
            (
                2,
                "it has 11 steps; the free plan runs workflows of up to 10"
            ),
            (4, "the free plan runs 3 workflows"),
            (5, "the free plan runs 3 workflows"),
        ]
    );
    assert_eq!(answers(2).await, ["hi from 1", "hi from 3"]);
    assert_eq!(
        saved_ids(calls, guild.id).await,
        [1, 2, 3, 4, 5],
        "nothing deleted"
    );
    // The dashboard's list says which are off and why, as the automod page does for rules.
    if browser_installed() {
        let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
        let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
        browser
            .go(&format!("{origin}/guilds/{}/workflows", guild.id))
            .await;
        browser
            .wait_for("these are kept but off until the server has premium again")
            .await;
        let text = |css: &str| {
            let script = format!("return document.querySelector('{css}').textContent");
            let browser = &browser;
            async move {
                browser
                    .script(&script)
                    .await
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        let alert = text("#over-plan").await;
        for expected in [
            "workflow 2 (it has 11 steps; the free plan runs workflows of up to 10)",
            "workflow 4 (the free plan runs 3 workflows)",
            "workflow 5 (the free plan runs 3 workflows)",
        ] {
            assert!(alert.contains(expected), "{alert}");
        }
        assert!(
            !alert.contains("workflow 1 ") && !alert.contains("workflow 3 "),
            "{alert}"
        );
        assert_eq!(text("#off-4").await, "off (plan)");
        visit.close().await;
    }

    give_premium(node.store().as_ref(), guild.id, guild.owner_id).await;
    wait_until("premium runs every workflow again", || async {
        off().await.is_empty()
    })
    .await;
    assert_eq!(
        answers(5).await,
        ["extra", "hi from 1", "hi from 3", "hi from 4", "long"]
    );
}

/// `thread_from_message` starts a public thread on the triggering message (the thread takes
/// the message's id, in its channel); Discord allows one per message, so a second workflow
/// doing it on the same message fails with Discord's answer in its trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_starts_a_thread_on_the_triggering_message() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    for id in [1, 2] {
        save(
            calls,
            guild.id,
            id,
            r#"{"trigger": {"message": {"starts_with": "question"}},
                "actions": [{"thread_from_message": {"name": "Q from {user.name}"}}]}"#,
        )
        .await
        .unwrap();
    }
    let bad = save(
        calls,
        guild.id,
        3,
        r#"{"trigger": {"message": {"contains": "x"}},
            "actions": [{"thread_from_message": {"name": "x", "channel": 5}}]}"#,
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("unknown field `channel`"), "{bad}");
    let message = sim
        .send_message(guild.id, channel, member, "question: when is the release?")
        .unwrap();
    let (first, second) = (
        nth_run(calls, guild.id, 1, 0).await,
        nth_run(calls, guild.id, 2, 0).await,
    );
    let threads = sim.threads(guild.id);
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(
        threads[0]["id"],
        message.to_string(),
        "the message's thread"
    );
    assert_eq!(threads[0]["parent_id"], channel.to_string());
    assert_eq!(threads[0]["type"], 11, "public");
    assert!(threads[0]["name"].as_str().unwrap().starts_with("Q from "));
    let mut outcomes = [first.outcome, second.outcome];
    outcomes.sort_by_key(|outcome| outcome.label());
    assert_eq!(outcomes[0], WorkflowOutcome::Completed);
    let WorkflowOutcome::Failed(reason) = &outcomes[1] else {
        panic!("{outcomes:?}");
    };
    assert!(reason.contains("Discord answered 400"), "{reason}");
    let requests: Vec<String> = sim
        .ledger()
        .rest
        .iter()
        .filter(|r| r.route.contains("/messages/{message_id}/threads"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        requests,
        vec![format!("/channels/{channel}/messages/{message}/threads"); 2]
    );
}

/// The callbacks the bot made for an interaction (every one, accepted or not).
fn callbacks(sim: &SimHandle, interaction: u64) -> Vec<serde_json::Value> {
    let prefix = format!("/interactions/{interaction}/");
    sim.ledger()
        .rest
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(&prefix))
        .filter_map(|r| r.body)
        .collect()
}

/// Waits until the bot answered the interaction, and the callback type it answered with.
async fn answered_with(sim: &SimHandle, interaction: u64) -> u8 {
    wait_until("the bot answers the interaction", || async {
        sim.ledger()
            .interactions
            .iter()
            .any(|i| i.id == interaction && i.response_type.is_some())
    })
    .await;
    let record = sim.ledger().interactions;
    let record = record.iter().find(|i| i.id == interaction).unwrap();
    assert_eq!(
        record.outcome,
        protonn_sim::InteractionOutcome::InTime,
        "{record:?}"
    );
    record.response_type.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_s_buttons_and_modal_trigger_the_workflows_listening_on_them() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let channel = guild.channel_ids[0];
    let [asker, presser] = [0, 1].map(|i| guild.member_ids[i]);
    save(
        calls,
        guild.id,
        1,
        r#"{"trigger": {"command": {"name": "menu"}},
            "actions": [{"send": {"text": "Pick one", "buttons": [[{"id": "yes", "label": "Yes"}, {"id": "apply", "label": "Apply"}]]}}]}"#,
    )
    .await
    .unwrap();
    save(
        calls,
        guild.id,
        2,
        r#"{"trigger": {"button": {"id": "yes"}},
            "actions": [{"increment_server_var": {"name": "yes"}},
                        {"send": {"text": "{user.mention} said yes ({server_var.yes})"}}]}"#,
    )
    .await
    .unwrap();
    save(
        calls,
        guild.id,
        3,
        r#"{"trigger": {"modal": {"id": "apply", "title": "Apply", "fields": [{"id": "why", "label": "Why?", "long": true}]}},
            "actions": [{"reply": {"text": "{user.mention} applies: {modal.why}"}}]}"#,
    )
    .await
    .unwrap();

    sim.send_message(guild.id, channel, asker, "!menu").unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "Pick one");
    let menu = sim
        .messages(channel)
        .into_iter()
        .find(|m| m["components"][0]["components"][0]["custom_id"] == "wf:yes")
        .expect("the menu has the workflow's buttons");
    assert_eq!(
        menu["components"][0]["components"][1]["custom_id"],
        "wf:apply"
    );
    let menu: u64 = menu["id"].as_str().unwrap().parse().unwrap();

    // A press: acknowledged at once and once, the workflow on it runs with the presser.
    let pressed = sim
        .use_component(guild.id, channel, menu, presser, "wf:yes", None)
        .unwrap();
    assert_eq!(answered_with(sim, pressed).await, 6);
    assert_eq!(
        reply_in(sim, channel, 1).await,
        format!("<@{presser}> said yes (1)")
    );
    let trace = nth_run(calls, guild.id, 2, 0).await;
    assert_eq!(trace.outcome, WorkflowOutcome::Completed, "{trace:?}");
    assert_eq!(callbacks(sim, pressed).len(), 1);

    // A press of the modal's button opens it; what is sent there is in the run's templates.
    let opened = sim
        .use_component(guild.id, channel, menu, presser, "wf:apply", None)
        .unwrap();
    assert_eq!(answered_with(sim, opened).await, 9);
    let modal = &callbacks(sim, opened)[0]["data"];
    assert_eq!(modal["custom_id"], "wf:apply");
    assert_eq!(modal["components"][0]["components"][0]["custom_id"], "why");
    let sent = sim
        .submit_modal(opened, &[("why", "I know the rules")])
        .unwrap();
    assert_eq!(answered_with(sim, sent).await, 6);
    assert_eq!(
        reply_in(sim, channel, 2).await,
        format!("<@{presser}> applies: I know the rules")
    );
    assert_eq!(callbacks(sim, opened).len(), 1);
    assert_eq!(callbacks(sim, sent).len(), 1);
    // One form per id: another workflow with the form is refused, nothing saved.
    let again = r#"{"trigger": {"modal": {"id": "apply", "title": "Again", "fields": [{"id": "x", "label": "X"}]}},
                    "actions": [{"stop": {}}]}"#;
    match save(calls, guild.id, 2, again).await {
        Err(GuildCallError::Invalid { message }) => assert_eq!(
            message,
            "trigger.modal.id: workflow 3 has the form `apply` already"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(saved_ids(calls, guild.id).await, [1, 2, 3]);

    // Once no workflow listens on the button, a press says so (once, to the presser).
    let request = GuildRequest::SetWorkflowEnabled {
        workflow_id: 2,
        enabled: false,
    };
    call(calls, guild.id, request).await.unwrap();
    let stale = sim
        .use_component(guild.id, channel, menu, presser, "wf:yes", None)
        .unwrap();
    assert_eq!(
        answers_to(sim, stale).await,
        ["This button no longer does anything."]
    );
    assert_eq!(callbacks(sim, stale).len(), 1);
    assert_eq!(runs(calls, guild.id, 2).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_beyond_discord_s_limits_are_refused_and_a_button_run_dry_sends_nothing() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let row = |n: usize| {
        let buttons: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"id": "b{i}", "label": "B{i}"}}"#))
            .collect();
        format!("[{}]", buttons.join(", "))
    };
    for (buttons, expected) in [
        (
            format!("[{}]", row(6)),
            "actions[0].send.buttons[0]: 1 to 5 buttons in a row",
        ),
        (
            r#"[[{"id": "wf:x", "label": "X"}]]"#.to_owned(),
            "actions[0].send.buttons[0][0].id: an id is 1 to 97 letters, digits, _ or -",
        ),
    ] {
        let definition = format!(
            r#"{{"trigger": {{"command": {{"name": "menu"}}}}, "actions": [{{"send": {{"text": "x", "buttons": {buttons}}}}}]}}"#
        );
        match save(calls, guild.id, 1, &definition).await {
            Err(GuildCallError::Invalid { message }) => assert_eq!(message, expected),
            other => panic!("{other:?}"),
        }
    }
    assert!(saved_ids(calls, guild.id).await.is_empty());

    let before = requests_for(sim, &guild);
    let sample = SampleEvent {
        kind: SampleEventKind::Modal,
        user_id: Some(guild.member_ids[0]),
        channel_id: Some(guild.channel_ids[0]),
        component: Some("apply".to_owned()),
        fields: [("why".to_owned(), "because".to_owned())].into(),
        ..SampleEvent::default()
    };
    let request = GuildRequest::DryRunWorkflow {
        workflow_id: 0,
        definition: Some(
            r#"{"trigger": {"modal": {"id": "apply", "title": "Apply", "fields": [{"id": "why", "label": "Why?"}]}},
                "actions": [{"send": {"text": "{modal.why}", "buttons": [[{"id": "ok", "label": "OK"}]]}}]}"#
                .to_owned(),
        ),
        sample,
        recent: None,
    };
    let Ok(GuildResponse::WorkflowTrace(trace)) = call(calls, guild.id, request).await else {
        panic!("no trace");
    };
    assert_eq!(trace.steps[0].detail, "matches the sample event");
    assert!(
        trace.steps[1].detail.ends_with(": because [buttons: OK]"),
        "{trace:?}"
    );
    assert_eq!(requests_for(sim, &guild), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_builds_a_button_workflow_in_the_dashboard_editor() {
    if !browser_installed() {
        return;
    }
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
    let new = format!("{origin}/guilds/{}/workflows/new", guild.id);

    // A message with a row of six buttons is refused (Discord allows five), nothing saved.
    browser.go(&new).await;
    browser.wait_for("New workflow").await;
    browser.fill("#name", "menu").await;
    browser
        .click("#trigger_kind option[value=\"command\"]")
        .await;
    browser.fill("#trigger_name", "menu").await;
    browser.click("#action_kind_0 option[value=\"send\"]").await;
    browser.fill("#action_text_0", "Pick one").await;
    let six: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"id": "b{i}", "label": "B{i}"}}"#))
        .collect();
    browser
        .fill("#action_buttons_0", &format!("[[{}]]", six.join(", ")))
        .await;
    browser.click("#save").await;
    browser.wait_for("1 to 5 buttons in a row").await;
    browser.wait_for("Nothing was saved.").await;
    assert!(saved_ids(calls, guild.id).await.is_empty());
    browser
        .fill("#action_buttons_0", r#"[[{"id": "yes", "label": "Yes"}]]"#)
        .await;
    browser.click("#save").await;
    browser
        .wait_for("Saved. The bot uses it from now on.")
        .await;

    // The workflow on the button: a dry run of a press first, then saved.
    browser.go(&new).await;
    browser.wait_for("New workflow").await;
    browser.fill("#name", "on yes").await;
    browser
        .click("#trigger_kind option[value=\"button\"]")
        .await;
    browser.fill("#trigger_id", "yes").await;
    browser.click("#action_kind_0 option[value=\"send\"]").await;
    browser
        .fill("#action_text_0", "{user.mention} pressed yes")
        .await;
    browser.click("#sample_kind option[value=\"button\"]").await;
    browser.fill("#sample_component", "yes").await;
    browser.fill("#sample_user_id", &member.to_string()).await;
    browser
        .fill("#sample_channel_id", &channel.to_string())
        .await;
    let before = requests_for(sim, &guild);
    browser.click("#run-dry").await;
    browser.wait_for("Dry run: completed").await;
    browser.wait_for("matches the sample event").await;
    assert_eq!(
        requests_for(sim, &guild),
        before,
        "a dry run made a request"
    );
    assert_eq!(saved_ids(calls, guild.id).await, [1]);
    browser.click("#save").await;
    browser
        .wait_for("Saved. The bot uses it from now on.")
        .await;
    browser.screenshot("workflow-button").await;
    assert_eq!(saved_ids(calls, guild.id).await, [1, 2]);

    // Live: the menu's button runs the second workflow.
    sim.send_message(guild.id, channel, member, "!menu")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "Pick one");
    let menu = sim
        .messages(channel)
        .into_iter()
        .find(|m| m["components"][0]["components"][0]["custom_id"] == "wf:yes")
        .expect("the menu has its button");
    let menu: u64 = menu["id"].as_str().unwrap().parse().unwrap();
    let pressed = sim
        .use_component(guild.id, channel, menu, member, "wf:yes", None)
        .unwrap();
    assert_eq!(answered_with(sim, pressed).await, 6);
    assert_eq!(
        reply_in(sim, channel, 1).await,
        format!("<@{member}> pressed yes")
    );
    visit.close().await;
}

/// The guild's recent events a dry run may replay, newest first.
async fn recent_events(calls: &dyn GuildCalls, guild_id: u64) -> Vec<protonn_actors::RecentEvent> {
    match call(calls, guild_id, GuildRequest::RecentWorkflowEvents).await {
        Ok(GuildResponse::RecentWorkflowEvents { events }) => events,
        other => panic!("{other:?}"),
    }
}

/// A member who restricted processing, and a message of theirs the bot got.
async fn restricted_member_posts(
    node: &protonn_cluster::Node,
    sim: &SimHandle,
    guild: &protonn_sim::GuildInfo,
) {
    let restricted = guild.member_ids[2];
    let flags = PrivacyFlags {
        restricted: true,
        ..PrivacyFlags::default()
    };
    node.store()
        .set_privacy_flags(restricted, &flags)
        .await
        .unwrap();
    sim.send_message(
        guild.id,
        guild.channel_ids[0],
        restricted,
        "my secret hello",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_replays_one_of_the_guild_s_recent_events_and_sends_nothing() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    // The editor opens: a guild without workflows keeps its events from now on.
    assert!(recent_events(calls, guild.id).await.is_empty());
    restricted_member_posts(node, sim, &guild).await;
    sim.send_message(guild.id, channel, member, "hello from the chat")
        .unwrap();
    wait_until(
        "the member's message is among the recent events",
        || async {
            recent_events(calls, guild.id)
                .await
                .iter()
                .any(|e| e.event.content == "hello from the chat")
        },
    )
    .await;
    let recent = recent_events(calls, guild.id).await;
    assert!(
        recent.iter().all(|e| e.event.user_id == Some(member)),
        "a restricted member's event is offered: {recent:?}"
    );
    let hello = &recent[0];
    assert_eq!(hello.event.channel_id, Some(channel));

    let before = requests_for(sim, &guild);
    let dry_run = |recent: u64| GuildRequest::DryRunWorkflow {
        workflow_id: 0,
        definition: Some(
            r#"{"trigger": {"message": {"contains": "hello"}},
                "actions": [{"reply": {"text": "Hi {user.mention}: {message.content}"}}]}"#
                .to_owned(),
        ),
        sample: SampleEvent::default(),
        recent: Some(recent),
    };
    let Ok(GuildResponse::WorkflowTrace(trace)) = call(calls, guild.id, dry_run(hello.id)).await
    else {
        panic!("no trace");
    };
    assert_eq!(trace.outcome, WorkflowOutcome::Completed, "{trace:?}");
    assert_eq!(trace.steps[0].detail, "matches the sample event");
    assert_eq!(
        trace.steps[1].detail,
        format!("reply: Hi <@{member}>: hello from the chat")
    );
    assert_eq!(
        requests_for(sim, &guild),
        before,
        "a dry run made a request"
    );

    // The ring keeps the last events only; an event gone from it is refused by name.
    for i in 0..protonn_actors::RECENT_WORKFLOW_EVENTS {
        sim.send_message(guild.id, channel, member, &format!("chatter {i}"))
            .unwrap();
    }
    let last = format!("chatter {}", protonn_actors::RECENT_WORKFLOW_EVENTS - 1);
    wait_until("the chatter fills the recent events", || async {
        recent_events(calls, guild.id).await[0].event.content == last
    })
    .await;
    assert_eq!(
        recent_events(calls, guild.id).await.len(),
        protonn_actors::RECENT_WORKFLOW_EVENTS
    );
    match call(calls, guild.id, dry_run(hello.id)).await {
        Err(GuildCallError::Invalid { message }) => {
            assert!(
                message.contains("no longer among the server's last 20"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_replays_a_recent_event_in_the_dashboard_s_dry_run() {
    if !browser_installed() {
        return;
    }
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
    let editor = format!("{origin}/guilds/{}/workflows/new", guild.id);

    // The server has no workflow: its events are kept once the editor is open.
    browser.go(&editor).await;
    browser.wait_for("Replay a recent event").await;
    restricted_member_posts(node, sim, &guild).await;
    sim.send_message(guild.id, channel, member, "hello from the chat")
        .unwrap();
    wait_until(
        "the member's message is among the recent events",
        || async { !recent_events(calls, guild.id).await.is_empty() },
    )
    .await;
    browser.go(&editor).await;
    browser.wait_for("hello from the chat").await;
    assert!(
        !browser.source().await.contains("my secret hello"),
        "a restricted member's message is offered"
    );
    browser.fill("#name", "greeter").await;
    browser
        .click("#trigger_kind option[value=\"message\"]")
        .await;
    browser.fill("#trigger_contains", "hello").await;
    browser
        .click("#action_kind_0 option[value=\"reply\"]")
        .await;
    browser.fill("#action_text_0", "Hi {user.mention}").await;
    browser.click("#sample_recent option:nth-child(2)").await;
    let before = requests_for(sim, &guild);
    browser.click("#run-dry").await;
    browser.wait_for("Dry run: completed").await;
    browser
        .wait_for(&format!("reply: Hi &lt;@{member}&gt;"))
        .await;
    browser.screenshot("workflow-replay").await;
    assert_eq!(
        requests_for(sim, &guild),
        before,
        "a dry run made a request"
    );
    assert!(saved_ids(calls, guild.id).await.is_empty());
    visit.close().await;
}
