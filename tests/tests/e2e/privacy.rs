//! `/privacy` and `!privacy` through the simulator: choices shown and changed, answers seen
//! by the member alone (an ephemeral reply, or a DM for a text command), every change logged
//! as a privacy request, an export prepared.

use protonn_storage::{RequestKind, Timestamp};
use protonn_tests::*;

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
