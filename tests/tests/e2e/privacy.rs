//! `/privacy` and `!privacy` through the simulator: choices shown and changed, answers seen
//! by the member alone (an ephemeral reply, or a DM for a text command), every change logged
//! as a privacy request, an export prepared; an erasure reaching a member's durable timers.

use std::time::Duration;

use protonn_actors::RuntimeConfig;
use protonn_storage::{PrivacyRequest, RequestKind, Retention, Timestamp, privacy};
use protonn_tests::*;

/// An erasure reaches the member's durable timers: their parked workflow run is deleted (it
/// never resumes) while another member's stays, and their temporary ban is still lifted
/// when due, its case no longer naming them; then nothing stored names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_member_deletes_their_parked_wait_and_still_lifts_their_temporary_ban() {
    let runtime = RuntimeConfig {
        timer_poll_every: Duration::from_millis(100),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let (member, other) = (guild.member_ids[0], guild.member_ids[1]);
    let store = node.store();
    let calls = node.guild_calls();
    crate::workflows::save(
        calls.as_ref(),
        guild.id,
        1,
        r#"{"trigger": {"command": {"name": "later"}},
            "actions": [{"send": {"text": "noted"}}, {"wait": {"seconds": 3600}},
                        {"send": {"text": "now: {args.all}"}}]}"#,
    )
    .await
    .unwrap();
    for (n, who) in [member, other].into_iter().enumerate() {
        sim.send_message(guild.id, channel, who, "!later remember the tea")
            .unwrap();
        assert_eq!(reply_in(sim, channel, n).await, "noted");
    }
    let timers_naming = |user: u64| {
        let store = store.clone();
        async move {
            let timers = store.timers_of_guild(guild.id).await.unwrap();
            timers
                .into_iter()
                .filter(|t| t.users.contains(&user))
                .count()
        }
    };
    wait_until("each member's wait is stored", || async {
        timers_naming(member).await == 1 && timers_naming(other).await == 1
    })
    .await;
    sim.send_message(
        guild.id,
        channel,
        guild.owner_id,
        &format!("!ban <@{member}> 3s"),
    )
    .unwrap();
    assert_eq!(
        reply_in(sim, channel, 2).await,
        format!("Case #1: <@{member}> was banned for 3s.")
    );
    wait_until("the unban is stored and the ban audited", || async {
        let audited = store
            .list_audit(guild.id, Timestamp(0), Timestamp::now(), 10)
            .await
            .unwrap();
        timers_naming(member).await == 2 && !audited.is_empty()
    })
    .await;
    let export = store.export_user(member).await.unwrap();
    let mut features: Vec<&str> = export.timers.iter().map(|t| t.feature.as_str()).collect();
    features.sort_unstable();
    assert_eq!(features, ["moderation", "workflows"]);
    assert!(
        export
            .timers
            .iter()
            .any(|t| t.payload.contains("remember the tea")),
        "the parked run keeps the member's message: {:?}",
        export.timers
    );

    // The member's erasure, as the privacy centre asks for it.
    let now = Timestamp::now();
    let request = PrivacyRequest::new(member, 1, RequestKind::Deletion, "dashboard", now);
    store.put_privacy_request(&request).await.unwrap();
    privacy::answer_pending_requests(store.as_ref(), now, Retention::POLICY.exports)
        .await
        .unwrap();
    assert_eq!(timers_naming(member).await, 0);
    assert_eq!(timers_naming(other).await, 1, "another member's wait stays");
    let kept: Vec<String> = store
        .timers_of_guild(guild.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert!(kept.contains(&format!("unban:{member}")), "{kept:?}");
    assert!(store.export_user(member).await.unwrap().timers.is_empty());

    wait_until("the temporary ban is still lifted", || async {
        sim.bans(guild.id).is_empty()
    })
    .await;
    wait_until("the lift is a case that names nobody", || async {
        store
            .case(guild.id, 2)
            .await
            .unwrap()
            .is_some_and(|case| case.target_id == Some(privacy::ERASED_USER))
    })
    .await;
    wait_until("only the other member's wait is left", || async {
        store.timers_of_guild(guild.id).await.unwrap().len() == 1
    })
    .await;
    let needle = member.to_string();
    let naming: Vec<String> = store
        .dump_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.text.contains(&needle))
        .map(|row| format!("{}: {}", row.table, row.text))
        .collect();
    assert_eq!(naming, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_and_changes_their_privacy_choices_in_discord() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    let store = node.store();

    // A text command: the channel learns only that a DM went out.
    sim.send_message(guild.id, channel, member, "!privacy object on")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 0).await,
        "I sent you a direct message: your privacy choices are yours alone."
    );
    wait_until("the DM with the answer", || async {
        sim.ledger().rest.iter().any(|r| {
            r.route == "POST /channels/{channel_id}/messages"
                && r.body
                    .as_ref()
                    .is_some_and(|b| b["content"].as_str() == Some("Saved: objection on."))
        })
    })
    .await;
    assert!(store.privacy_flags(member).await.unwrap().objects);
    let logged = store.privacy_requests_of(member).await.unwrap();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(
        (logged[0].kind, logged[0].channel.as_str()),
        (RequestKind::Objection, "discord")
    );
    assert!(logged[0].done_at.is_some());

    // A slash command: answered privately.
    let id = sim
        .send_command_interaction(guild.id, channel, member, "privacy", &[])
        .unwrap();
    let answers = answers_to(sim, id).await;
    assert!(
        answers[0].contains("Objection to analytics and announcements: on"),
        "{answers:?}"
    );
    let callback = sim
        .ledger()
        .rest
        .into_iter()
        .find(|r| r.path.starts_with(&format!("/interactions/{id}/")))
        .unwrap();
    assert_eq!(callback.body.unwrap()["data"]["flags"], 64, "ephemeral");

    // Asking again for what is already chosen changes and logs nothing.
    let id = sim
        .send_command_interaction(
            guild.id,
            channel,
            member,
            "privacy",
            &[("action", "object"), ("on", "true")],
        )
        .unwrap();
    assert_eq!(
        answers_to(sim, id).await,
        ["Nothing to change: that is already your choice."]
    );
    assert_eq!(store.privacy_requests_of(member).await.unwrap().len(), 1);

    // An export: prepared, to be downloaded once from the privacy centre.
    let id = sim
        .send_command_interaction(
            guild.id,
            channel,
            member,
            "privacy",
            &[("action", "export")],
        )
        .unwrap();
    assert!(answers_to(sim, id).await[0].starts_with("Your data export is being prepared."));
    wait_until("the export is prepared", || async {
        store
            .export_status(member, Timestamp::now())
            .await
            .unwrap()
            .is_some()
    })
    .await;

    // Bad input: said what is expected, nothing changed.
    sim.send_message(guild.id, channel, member, "!privacy restrict maybe")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 1).await,
        "Say `restrict on` or `restrict off`."
    );
    assert!(!store.privacy_flags(member).await.unwrap().restricted);
}
