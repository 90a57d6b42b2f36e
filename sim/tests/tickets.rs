//! What a support-ticket bot needs of Discord: messages with buttons and selects, a member
//! using them (MESSAGE_COMPONENT), modals shown and sent (MODAL_SUBMIT), the callback types
//! each interaction allows, private threads with members added and removed, archived and
//! locked, and a thread's history read page by page; with Discord's validation, the gateway
//! events that follow, and everything in the ledger.

mod common;

use common::*;

use protonn_sim::{GuildInfo, InteractionKind, SimError, SimHandle};
use serde_json::{Value, json};
use twilight_gateway::{ConfigBuilder, Event, Intents, Shard, ShardId};
use twilight_model::application::interaction::InteractionData;
use twilight_model::application::interaction::modal::ModalInteractionComponent;

async fn connect(sim: &SimHandle) -> Shard {
    let intents = Intents::GUILDS
        | Intents::GUILD_MESSAGES
        | Intents::MESSAGE_CONTENT
        | Intents::GUILD_MEMBERS;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard = Shard::with_config(ShardId::new(0, 1), config);
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    shard
}

/// A control route of the simulator.
async fn control(sim: &SimHandle, path: &str, body: Value) -> (u16, Value) {
    let reply = raw_http::send(
        sim.addr(),
        "POST",
        path,
        "content-type: application/json\r\n",
        &body.to_string(),
    )
    .await;
    (reply.status, reply.json())
}

fn panel() -> Value {
    json!({
        "content": "Need help? Open a ticket.",
        "components": [
            {"type": 1, "components": [
                {"type": 2, "style": 1, "label": "Open a ticket", "custom_id": "ticket:open"},
            ]},
            {"type": 1, "components": [
                {"type": 3, "custom_id": "ticket:category", "options": [
                    {"label": "Billing", "value": "billing"},
                    {"label": "Other", "value": "other"},
                ]},
            ]},
        ],
    })
}

fn modal() -> Value {
    json!({"type": 9, "data": {
        "custom_id": "ticket:topic",
        "title": "Open a ticket",
        "components": [{"type": 1, "components": [{
            "type": 4, "custom_id": "topic", "label": "What is it about?", "style": 2,
            "min_length": 5, "max_length": 1000,
        }]}],
    }})
}

/// The id and token of the next INTERACTION_CREATE, with its data.
async fn next_interaction(shard: &mut Shard) -> (u64, String, InteractionData) {
    until(shard, |e| match e {
        Event::InteractionCreate(i) => Some((
            i.id.get(),
            i.token.clone(),
            i.data.clone().expect("interactions carry data"),
        )),
        _ => None,
    })
    .await
}

fn callback_path(id: u64, token: &str) -> String {
    format!("/interactions/{id}/{token}/callback")
}

fn id_of(value: &Value) -> u64 {
    value["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_member_presses_a_button_fills_a_modal_and_the_bot_answers_as_discord_allows() {
    let sim = start(privileged_world()).await;
    let mut shard = connect(&sim).await;
    let guild: GuildInfo = sim.guilds()[0].clone();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);

    // Components are validated before anything is kept.
    let mut bad = panel();
    bad["components"][0]["components"][0]["custom_id"] = json!("x".repeat(101));
    let path = format!("/channels/{channel}/messages");
    let (status, body) = bot_call(&sim, "POST", &path, Some(bad)).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(50035)),
        "{body}"
    );
    assert!(sim.messages(channel).is_empty());
    let (status, posted) = bot_call(&sim, "POST", &path, Some(panel())).await;
    assert_eq!(status, 200, "{posted}");
    assert_eq!(
        posted["components"][0]["components"][0]["custom_id"],
        "ticket:open"
    );
    let panel_id = id_of(&posted);

    // What the message does not offer cannot be used.
    let refused = sim.use_component(guild.id, channel, panel_id, member, "ticket:nope", None);
    assert!(matches!(refused, Err(SimError::Refused(_))), "{refused:?}");
    let wrong_value = ["gold".to_owned()];
    let refused = sim.use_component(
        guild.id,
        channel,
        panel_id,
        member,
        "ticket:category",
        Some(&wrong_value),
    );
    assert!(refused.is_err());
    let (status, _) = control(
        &sim,
        "/sim/components",
        json!({"guild_id": guild.id, "channel_id": channel, "message_id": panel_id,
               "user_id": member, "custom_id": "ticket:open", "values": ["x"]}),
    )
    .await;
    assert_eq!(status, 400, "a button takes no values");

    // A select, over the control route.
    let (status, chosen) = control(
        &sim,
        "/sim/components",
        json!({"guild_id": guild.id.to_string(), "channel_id": channel, "message_id": panel_id,
               "user_id": member, "custom_id": "ticket:category", "values": ["billing"]}),
    )
    .await;
    assert_eq!(status, 200, "{chosen}");
    let (id, token, data) = next_interaction(&mut shard).await;
    assert_eq!(id, chosen["id"].as_u64().unwrap());
    let InteractionData::MessageComponent(data) = data else {
        panic!("a component interaction");
    };
    assert_eq!(
        (data.custom_id.as_str(), data.values.as_slice()),
        ("ticket:category", &["billing".to_owned()][..])
    );
    let (status, _) = bot_call(
        &sim,
        "POST",
        &callback_path(id, &token),
        Some(json!({"type": 6})),
    )
    .await;
    assert_eq!(
        status, 204,
        "a component may be acknowledged without a message"
    );

    // The button: a bad modal acknowledges nothing, a good one is shown.
    let pressed = sim
        .use_component(guild.id, channel, panel_id, member, "ticket:open", None)
        .unwrap();
    let (id, token, data) = next_interaction(&mut shard).await;
    assert_eq!(id, pressed);
    assert!(matches!(data, InteractionData::MessageComponent(_)));
    let mut untitled = modal();
    untitled["data"]["title"] = json!("");
    let (status, body) = bot_call(&sim, "POST", &callback_path(id, &token), Some(untitled)).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
    assert!(
        sim.submit_modal(pressed, &[("topic", "My refund is late")])
            .is_err(),
        "no modal shown yet"
    );
    let (status, _) = bot_call(&sim, "POST", &callback_path(id, &token), Some(modal())).await;
    assert_eq!(status, 204);

    // The member sends it: checked against the modal's rules, then sent once.
    assert!(
        sim.submit_modal(pressed, &[("topic", "help")]).is_err(),
        "under 5 chars"
    );
    assert!(
        sim.submit_modal(pressed, &[("nope", "hello there")])
            .is_err()
    );
    let submitted = sim
        .submit_modal(pressed, &[("topic", "My refund is late")])
        .unwrap();
    assert!(
        sim.submit_modal(pressed, &[("topic", "again, please")])
            .is_err(),
        "sent once"
    );
    let (id, token, data) = next_interaction(&mut shard).await;
    assert_eq!(id, submitted);
    let InteractionData::ModalSubmit(data) = data else {
        panic!("a modal submit");
    };
    assert_eq!(data.custom_id, "ticket:topic");
    let ModalInteractionComponent::ActionRow(row) = &data.components[0] else {
        panic!("an action row");
    };
    let ModalInteractionComponent::TextInput(input) = &row.components[0] else {
        panic!("a text input");
    };
    assert_eq!(
        (input.custom_id.as_str(), input.value.as_str()),
        ("topic", "My refund is late")
    );

    // No modal in answer to a modal; an answer with a message is posted in the channel.
    let (status, body) = bot_call(&sim, "POST", &callback_path(id, &token), Some(modal())).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
    let answer = json!({"type": 4, "data": {"content": "Ticket #1 opened"}});
    let (status, _) = bot_call(
        &sim,
        "POST",
        &callback_path(id, &token),
        Some(answer.clone()),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = bot_call(&sim, "POST", &callback_path(id, &token), Some(answer)).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(40060)));
    let contents: Vec<String> = sim
        .messages(channel)
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, ["Need help? Open a ticket.", "Ticket #1 opened"]);

    // Updating a message is for components only.
    let command = sim
        .send_command_interaction(guild.id, channel, member, "ticket", &[])
        .unwrap();
    let (id, token, _) = next_interaction(&mut shard).await;
    assert_eq!(id, command);
    let update = json!({"type": 7, "data": {"content": "changed"}});
    let (status, _) = bot_call(&sim, "POST", &callback_path(id, &token), Some(update)).await;
    assert_eq!(status, 400);

    let kinds: Vec<(InteractionKind, Option<u8>)> = sim
        .ledger()
        .interactions
        .iter()
        .map(|i| (i.kind, i.response_type))
        .collect();
    assert_eq!(
        kinds,
        [
            (InteractionKind::Component, Some(6)),
            (InteractionKind::Component, Some(9)),
            (InteractionKind::ModalSubmit, Some(4)),
            (InteractionKind::Command, None),
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn private_threads_take_members_archive_lock_and_say_so_on_the_gateway() {
    let sim = start(privileged_world()).await;
    let mut shard = connect(&sim).await;
    let guild = sim.guilds()[0].clone();
    let (channel, member, other) = (
        guild.channel_ids[0],
        guild.member_ids[0],
        guild.member_ids[1],
    );
    let path = format!("/channels/{channel}/threads");

    for bad in [
        json!({"name": ""}),
        json!({"name": "ticket-1", "type": 10}),
        json!({"name": "ticket-1", "auto_archive_duration": 5}),
    ] {
        let (status, body) = bot_call(&sim, "POST", &path, Some(bad.clone())).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(50035)), "{bad}");
    }
    assert!(sim.threads(guild.id).is_empty(), "bad input made nothing");

    let (status, thread) = bot_call(
        &sim,
        "POST",
        &path,
        Some(json!({"name": "ticket-1", "type": 12, "invitable": false})),
    )
    .await;
    assert_eq!(status, 201, "{thread}");
    assert_eq!(thread["type"], 12);
    let thread_id = id_of(&thread);
    let created = until(&mut shard, |e| match e {
        Event::ThreadCreate(t) => Some(t.id.get()),
        _ => None,
    })
    .await;
    assert_eq!(created, thread_id);
    let (status, body) = bot_call(
        &sim,
        "POST",
        &format!("/channels/{thread_id}/threads"),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(50024)),
        "no thread in a thread"
    );

    // Private: a member not in it cannot post.
    assert!(
        sim.send_message(guild.id, thread_id, member, "hello?")
            .is_none()
    );
    let members = format!("/channels/{thread_id}/thread-members/{member}");
    assert_eq!(bot_call(&sim, "PUT", &members, None).await.0, 204);
    let added = until(&mut shard, |e| match e {
        Event::ThreadMembersUpdate(u) => Some(
            u.added_members
                .iter()
                .map(|m| m.user_id.map(|u| u.get()))
                .collect::<Vec<_>>(),
        ),
        _ => None,
    })
    .await;
    assert_eq!(added, [Some(member)]);
    assert_eq!(sim.thread_members(thread_id), {
        let mut ids = vec![member, sim_bot_id(&sim).await];
        ids.sort_unstable();
        ids
    });
    assert!(
        sim.send_message(guild.id, thread_id, member, "hello?")
            .is_some()
    );
    let (status, body) = bot_call(
        &sim,
        "PUT",
        &format!("/channels/{thread_id}/thread-members/1"),
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10007)));

    // Add and remove someone else.
    let someone = format!("/channels/{thread_id}/thread-members/{other}");
    assert_eq!(bot_call(&sim, "PUT", &someone, None).await.0, 204);
    assert_eq!(bot_call(&sim, "DELETE", &someone, None).await.0, 204);
    let (status, body) = bot_call(&sim, "DELETE", &someone, None).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10007)));
    let removed = until(&mut shard, |e| match e {
        Event::ThreadMembersUpdate(u) if !u.removed_member_ids.is_empty() => {
            Some(u.removed_member_ids[0].get())
        }
        _ => None,
    })
    .await;
    assert_eq!(removed, other);

    // Rename, then archive and lock: THREAD_UPDATE each time; a locked, archived thread
    // takes no message, no member and no change that leaves it archived.
    let thread_path = format!("/channels/{thread_id}");
    let (status, renamed) = bot_call(
        &sim,
        "PATCH",
        &thread_path,
        Some(json!({"name": "ticket-1-refund"})),
    )
    .await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (200, Some("ticket-1-refund"))
    );
    let (status, closed) = bot_call(
        &sim,
        "PATCH",
        &thread_path,
        Some(json!({"archived": true, "locked": true})),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["thread_metadata"]["archived"], true);
    let update = until(&mut shard, |e| match e {
        Event::ThreadUpdate(t) if t.thread_metadata.as_ref().is_some_and(|m| m.locked) => {
            Some(t.name.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(update.as_deref(), Some("ticket-1-refund"));
    assert!(
        sim.send_message(guild.id, thread_id, member, "still there?")
            .is_none()
    );
    let (status, body) = bot_call(
        &sim,
        "POST",
        &format!("{thread_path}/messages"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50083)));
    let (status, body) = bot_call(&sim, "PUT", &someone, None).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50083)));
    let (status, body) = bot_call(&sim, "PATCH", &thread_path, Some(json!({"name": "x"}))).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50083)));

    // Reopened, it takes messages again.
    let (status, reopened) = bot_call(
        &sim,
        "PATCH",
        &thread_path,
        Some(json!({"archived": false, "locked": false})),
    )
    .await;
    assert_eq!(
        (status, reopened["thread_metadata"]["archived"].as_bool()),
        (200, Some(false))
    );
    let (status, _) = bot_call(
        &sim,
        "POST",
        &format!("{thread_path}/messages"),
        Some(json!({"content": "Reopened"})),
    )
    .await;
    assert_eq!(status, 200);

    let routes: Vec<String> = sim.ledger().rest.iter().map(|r| r.route.clone()).collect();
    for route in [
        "POST /channels/{channel_id}/threads",
        "PUT /channels/{channel_id}/thread-members/{user_id}",
        "DELETE /channels/{channel_id}/thread-members/{user_id}",
        "PATCH /channels/{channel_id}",
    ] {
        assert!(routes.iter().any(|r| r == route), "{route} in the ledger");
    }
    sim.shutdown().await;
}

/// The bot's user id, from `GET /users/@me`.
async fn sim_bot_id(sim: &SimHandle) -> u64 {
    id_of(&bot_call(sim, "GET", "/users/@me", None).await.1)
}

#[tokio::test]
async fn a_threads_history_reads_page_by_page_with_edits_deletions_and_attachments() {
    let sim = start(privileged_world()).await;
    let mut shard = connect(&sim).await;
    let guild = sim.guilds()[0].clone();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    let (_, thread) = bot_call(
        &sim,
        "POST",
        &format!("/channels/{channel}/threads"),
        Some(json!({"name": "long", "type": 11})),
    )
    .await;
    let thread_id = id_of(&thread);
    let mut posted = Vec::new();
    for n in 0..250 {
        posted.push(
            sim.send_message(guild.id, thread_id, member, &format!("line {n}"))
                .unwrap(),
        );
    }
    let with_file = sim
        .send_message_with_attachments(guild.id, thread_id, member, "see file", &["log.txt"])
        .unwrap();
    posted.push(with_file);
    assert!(sim.edit_message(guild.id, thread_id, posted[3], "line 3, edited"));
    assert!(sim.delete_message(guild.id, thread_id, posted[4]));
    posted.remove(4);
    let edited = until(&mut shard, |e| match e {
        Event::MessageUpdate(m) => {
            Some((m.id.get(), m.content.clone(), m.edited_timestamp.is_some()))
        }
        _ => None,
    })
    .await;
    assert_eq!(edited, (posted[3], "line 3, edited".to_owned(), true));

    // Bad pages are refused.
    let messages = format!("/channels/{thread_id}/messages");
    for query in [
        "limit=0",
        "limit=101",
        "limit=x",
        "before=abc",
        "before=1&after=2",
    ] {
        let (status, body) = bot_call(&sim, "GET", &format!("{messages}?{query}"), None).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(50035)),
            "{query}"
        );
    }
    let (_, default_page) = bot_call(&sim, "GET", &messages, None).await;
    assert_eq!(
        default_page.as_array().unwrap().len(),
        50,
        "Discord's default limit"
    );

    // Backwards with `before`, newest first in each page.
    let mut read: Vec<u64> = Vec::new();
    let mut query = "limit=100".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = bot_call(&sim, "GET", &format!("{messages}?{query}"), None).await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        pages += 1;
        let ids: Vec<u64> = page.iter().map(id_of).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
        query = format!("limit=100&before={}", ids.last().unwrap());
        read.extend(ids);
    }
    read.reverse();
    assert_eq!(
        read, posted,
        "every message once, none lost to a page boundary"
    );
    assert_eq!(pages, 3);

    // Forwards with `after`: the oldest after the id, still newest first.
    let (_, page) = bot_call(
        &sim,
        "GET",
        &format!("{messages}?after={}&limit=2", posted[0]),
        None,
    )
    .await;
    let ids: Vec<u64> = page.as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, [posted[2], posted[1]]);

    let (_, page) = bot_call(&sim, "GET", &format!("{messages}?limit=2"), None).await;
    let newest = &page[0];
    assert_eq!(newest["attachments"][0]["filename"], "log.txt");
    assert!(
        newest["attachments"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://cdn.discordapp.com/")
    );
    let (_, page) = bot_call(
        &sim,
        "GET",
        &format!("{messages}?around={}&limit=3", posted[3]),
        None,
    )
    .await;
    let edited = page
        .as_array()
        .unwrap()
        .iter()
        .find(|m| id_of(m) == posted[3])
        .unwrap();
    assert_eq!(edited["content"], "line 3, edited");
    assert!(edited["edited_timestamp"].is_string());
    sim.shutdown().await;
}

/// A public thread on a message: it takes the message's id, in the message's channel; an
/// unknown message, a bad name or a second thread on the same message is refused as Discord
/// refuses it, and nothing is made.
#[tokio::test]
async fn a_thread_starts_from_a_message_once() {
    let sim = start(privileged_world()).await;
    let mut shard = connect(&sim).await;
    let guild = sim.guilds()[0].clone();
    let (channel, member) = (guild.channel_ids[0], guild.member_ids[0]);
    let message = sim
        .send_message(guild.id, channel, member, "a question")
        .unwrap();
    let path = format!("/channels/{channel}/messages/{message}/threads");

    let unknown = format!("/channels/{channel}/messages/{}/threads", message + 1);
    let (status, body) = bot_call(&sim, "POST", &unknown, Some(json!({"name": "q"}))).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10008)));
    let (status, body) = bot_call(&sim, "POST", &path, Some(json!({"name": ""}))).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
    assert!(sim.threads(guild.id).is_empty(), "bad input made nothing");

    let (status, thread) = bot_call(&sim, "POST", &path, Some(json!({"name": "q"}))).await;
    assert_eq!(status, 201, "{thread}");
    assert_eq!(id_of(&thread), message);
    assert_eq!(thread["type"], 11);
    assert_eq!(thread["parent_id"], channel.to_string());
    let created = until(&mut shard, |e| match e {
        Event::ThreadCreate(t) => Some(t.id.get()),
        _ => None,
    })
    .await;
    assert_eq!(created, message);
    let (status, body) = bot_call(&sim, "POST", &path, Some(json!({"name": "again"}))).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(160_004)));
    assert_eq!(sim.threads(guild.id).len(), 1);
}
