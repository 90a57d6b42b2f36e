//! Guild channels made, edited and deleted by the bot (what ticket channels need): the
//! routes with Discord's validation and errors, the CHANNEL_* events that follow, and the
//! overwrites deciding who sees a channel and may post in it.

mod common;

use common::*;

use protonn_sim::SimHandle;
use serde_json::{Value, json};
use twilight_gateway::{ConfigBuilder, Event, Intents, Shard, ShardId};
use twilight_model::guild::Permissions;

async fn connect(sim: &SimHandle) -> Shard {
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard = Shard::with_config(ShardId::new(0, 1), config);
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    shard
}

async fn bot_id(sim: &SimHandle) -> String {
    let (_, me) = bot_call(sim, "GET", "/users/@me", None).await;
    me["id"].as_str().unwrap().to_owned()
}

fn id(value: &Value) -> u64 {
    value["id"].as_str().unwrap().parse().unwrap()
}

const IN_TICKET: Permissions = Permissions::VIEW_CHANNEL
    .union(Permissions::SEND_MESSAGES)
    .union(Permissions::READ_MESSAGE_HISTORY);

fn overwrite(id: impl ToString, kind: u8, allow: Permissions, deny: Permissions) -> Value {
    json!({
        "id": id.to_string(),
        "type": kind,
        "allow": allow.bits().to_string(),
        "deny": deny.bits().to_string(),
    })
}

/// The field errors of a 50035 answer.
fn field_error(body: &Value, field: &str) -> String {
    assert_eq!(body["code"], 50035, "{body}");
    body["errors"][field]["_errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error for {field}: {body}"))
        .to_owned()
}

#[tokio::test]
async fn a_private_channel_under_a_category_lets_in_only_whom_its_overwrites_name() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let [opener, stranger] = [guild.member_ids[0], guild.member_ids[1]];
    let bot = bot_id(&sim).await;
    let mut shard = connect(&sim).await;
    let create = format!("/guilds/{}/channels", guild.id);

    let (status, category) = bot_call(
        &sim,
        "POST",
        &create,
        Some(json!({"name": "Tickets", "type": 4})),
    )
    .await;
    assert_eq!(
        (status, category["type"].as_u64()),
        (201, Some(4)),
        "{category}"
    );
    let category_id = id(&category);
    let created = until(&mut shard, |e| match e {
        Event::ChannelCreate(c) => Some(c.id.get()),
        _ => None,
    })
    .await;
    assert_eq!(created, category_id);

    let overwrites = json!([
        overwrite(guild.id, 0, Permissions::empty(), Permissions::VIEW_CHANNEL),
        overwrite(opener, 1, IN_TICKET, Permissions::empty()),
        overwrite(&bot, 1, IN_TICKET, Permissions::empty()),
    ]);
    let (status, channel) = bot_call(
        &sim,
        "POST",
        &create,
        Some(json!({
            "name": "ticket-1",
            "type": 0,
            "topic": "My refund is late",
            "parent_id": category_id.to_string(),
            "permission_overwrites": overwrites,
        })),
    )
    .await;
    assert_eq!(status, 201, "{channel}");
    let channel_id = id(&channel);
    assert_eq!(channel["parent_id"], category_id.to_string());
    assert_eq!(channel["topic"], "My refund is late");
    assert_eq!(
        channel["permission_overwrites"].as_array().unwrap().len(),
        3
    );
    let event = until(&mut shard, |e| match e {
        Event::ChannelCreate(c) if c.id.get() == channel_id => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(event.name.as_deref(), Some("ticket-1"));
    assert_eq!(event.parent_id.map(|p| p.get()), Some(category_id));
    let (_, listed) = bot_call(&sim, "GET", &create, None).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| id(c) == channel_id),
        "GET /guilds/{{id}}/channels lists it"
    );
    assert_eq!(sim.channels(guild.id).len(), 2);

    // Who sees it: the opener, the owner, not another member.
    assert!(
        sim.member_permissions(guild.id, channel_id, opener)
            .contains(IN_TICKET)
    );
    assert!(
        sim.member_permissions(guild.id, channel_id, stranger)
            .is_empty()
    );
    assert!(
        sim.send_message(guild.id, channel_id, stranger, "let me in")
            .is_none()
    );
    assert!(
        sim.send_message(guild.id, channel_id, opener, "hello")
            .is_some()
    );
    assert!(
        sim.send_message(guild.id, channel_id, guild.owner_id, "hi")
            .is_some()
    );
    assert!(
        sim.send_message(guild.id, category_id, opener, "in a category")
            .is_none(),
        "nobody posts in a category"
    );
    let (status, body) = bot_call(
        &sim,
        "POST",
        &format!("/channels/{category_id}/messages"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50024)));

    // Renamed, and the opener may no longer send: CHANNEL_UPDATE.
    let locked = json!([
        overwrite(guild.id, 0, Permissions::empty(), Permissions::VIEW_CHANNEL),
        overwrite(
            opener,
            1,
            Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY,
            Permissions::SEND_MESSAGES
        ),
        overwrite(&bot, 1, IN_TICKET, Permissions::empty()),
    ]);
    let path = format!("/channels/{channel_id}");
    let (status, edited) = bot_call(
        &sim,
        "PATCH",
        &path,
        Some(json!({"name": "ticket-1-refund", "permission_overwrites": locked})),
    )
    .await;
    assert_eq!(
        (status, edited["name"].as_str()),
        (200, Some("ticket-1-refund"))
    );
    let updated = until(&mut shard, |e| match e {
        Event::ChannelUpdate(c) if c.id.get() == channel_id => c.name.clone(),
        _ => None,
    })
    .await;
    assert_eq!(updated, "ticket-1-refund");
    assert!(
        sim.send_message(guild.id, channel_id, opener, "wait")
            .is_none()
    );
    assert!(
        sim.member_permissions(guild.id, channel_id, opener)
            .contains(Permissions::VIEW_CHANNEL),
        "they still read it"
    );

    // One overwrite in, then out.
    let stranger_path = format!("{path}/permissions/{stranger}");
    let body = json!({"type": 1, "allow": IN_TICKET.bits().to_string(), "deny": "0"});
    let (status, _) = bot_call(&sim, "PUT", &stranger_path, Some(body)).await;
    assert_eq!(status, 204);
    assert!(
        sim.send_message(guild.id, channel_id, stranger, "thanks")
            .is_some()
    );
    let (status, _) = bot_call(&sim, "DELETE", &stranger_path, None).await;
    assert_eq!(status, 204);
    assert!(
        sim.member_permissions(guild.id, channel_id, stranger)
            .is_empty()
    );
    let (status, body) = bot_call(&sim, "DELETE", &stranger_path, None).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10009)));

    // Deleted: CHANNEL_DELETE, then it is unknown.
    let (status, gone) = bot_call(&sim, "DELETE", &path, None).await;
    assert_eq!((status, id(&gone)), (200, channel_id));
    let deleted = until(&mut shard, |e| match e {
        Event::ChannelDelete(c) => Some(c.id.get()),
        _ => None,
    })
    .await;
    assert_eq!(deleted, channel_id);
    let (status, body) = bot_call(&sim, "GET", &path, None).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10003)));
    assert!(
        sim.send_message(guild.id, channel_id, opener, "hello?")
            .is_none()
    );
    assert!(sim.overwrites_of(channel_id).is_empty());

    let routes: Vec<(String, u16)> = sim
        .ledger()
        .rest
        .iter()
        .map(|r| (r.route.clone(), r.status))
        .collect();
    for (route, status) in [
        ("POST /guilds/{guild_id}/channels", 201),
        ("PATCH /channels/{channel_id}", 200),
        ("PUT /channels/{channel_id}/permissions/{overwrite_id}", 204),
        (
            "DELETE /channels/{channel_id}/permissions/{overwrite_id}",
            204,
        ),
        (
            "DELETE /channels/{channel_id}/permissions/{overwrite_id}",
            404,
        ),
        ("DELETE /channels/{channel_id}", 200),
    ] {
        assert!(
            routes.contains(&(route.to_owned(), status)),
            "{route} {status} in the ledger: {routes:?}"
        );
    }
}

#[tokio::test]
async fn bad_channel_bodies_are_refused_field_by_field_and_make_nothing() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let create = format!("/guilds/{}/channels", guild.id);
    let long = "x".repeat(101);
    let text_channel = guild.channel_ids[0].to_string();
    for (body, field, code) in [
        (json!({"name": ""}), "name", "BASE_TYPE_BAD_LENGTH"),
        (json!({"name": long}), "name", "BASE_TYPE_BAD_LENGTH"),
        (json!({"type": 0}), "name", "BASE_TYPE_REQUIRED"),
        (json!({"name": "a", "type": 2}), "type", "BASE_TYPE_CHOICES"),
        (
            json!({"name": "a", "parent_id": text_channel}),
            "parent_id",
            "CHANNEL_PARENT_INVALID_TYPE",
        ),
        (
            json!({"name": "a", "topic": "t".repeat(1025)}),
            "topic",
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({"name": "a", "permission_overwrites": [{"id": "1", "type": 5}]}),
            "permission_overwrites.0.type",
            "BASE_TYPE_CHOICES",
        ),
        (
            json!({"name": "a", "permission_overwrites": [{"id": "x", "type": 0}]}),
            "permission_overwrites.0.id",
            "NUMBER_TYPE_COERCE",
        ),
    ] {
        let (status, answer) = bot_call(&sim, "POST", &create, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(field_error(&answer, field), code, "{body}");
    }
    assert!(sim.channels(guild.id).is_empty(), "nothing was made");

    let (status, body) = bot_call(
        &sim,
        "POST",
        "/guilds/1/channels",
        Some(json!({"name": "a"})),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10004)));
    let (status, body) = bot_call(&sim, "PATCH", "/channels/1", Some(json!({"name": "a"}))).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10003)));
    let generated = format!("/channels/{}", guild.channel_ids[0]);
    let (status, body) = bot_call(&sim, "DELETE", &generated, None).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(50024)),
        "the generated channels stay"
    );
    // A bad field in an edit changes nothing, not even the valid ones.
    let (status, _) = bot_call(
        &sim,
        "PATCH",
        &generated,
        Some(json!({"name": "renamed", "rate_limit_per_user": 99_999})),
    )
    .await;
    assert_eq!(status, 400);
    let (_, channel) = bot_call(&sim, "GET", &generated, None).await;
    assert_eq!(channel["name"], "general");
    let (status, channel) =
        bot_call(&sim, "PATCH", &generated, Some(json!({"name": "renamed"}))).await;
    assert_eq!((status, channel["name"].as_str()), (200, Some("renamed")));
}

#[tokio::test]
async fn without_manage_channels_or_roles_or_a_permission_it_grants_the_bot_is_refused() {
    let sim = start(privileged_world()).await;
    let [first, second] = [sim.guilds()[0].clone(), sim.guilds()[1].clone()];
    let hidden = json!([overwrite(
        first.id,
        0,
        Permissions::empty(),
        Permissions::VIEW_CHANNEL
    )]);

    // Granting what the bot does not hold (Manage Webhooks), or Manage Roles without being
    // an administrator, is refused.
    for granted in [Permissions::MANAGE_WEBHOOKS, Permissions::MANAGE_ROLES] {
        let body = json!({"name": "a", "permission_overwrites": [
            overwrite(first.member_ids[0], 1, granted, Permissions::empty()),
        ]});
        let (status, answer) = bot_call(
            &sim,
            "POST",
            &format!("/guilds/{}/channels", first.id),
            Some(body),
        )
        .await;
        assert_eq!(
            (status, answer["code"].as_u64()),
            (403, Some(50013)),
            "{granted:?}"
        );
    }

    sim.revoke_bot_permissions(first.id, Permissions::MANAGE_ROLES);
    let create = format!("/guilds/{}/channels", first.id);
    let body = json!({"name": "a", "permission_overwrites": hidden});
    let (status, answer) = bot_call(&sim, "POST", &create, Some(body)).await;
    assert_eq!((status, answer["code"].as_u64()), (403, Some(50013)));
    let (status, made) = bot_call(&sim, "POST", &create, Some(json!({"name": "plain"}))).await;
    assert_eq!(status, 201, "without overwrites Manage Channels is enough");
    let path = format!(
        "/channels/{}/permissions/{}",
        id(&made),
        first.member_ids[0]
    );
    let body = json!({"type": 1, "allow": "1024", "deny": "0"});
    let (status, _) = bot_call(&sim, "PUT", &path, Some(body)).await;
    assert_eq!(status, 403);
    assert!(sim.overwrites_of(id(&made)).is_empty());

    sim.revoke_bot_permissions(second.id, Permissions::MANAGE_CHANNELS);
    let (status, answer) = bot_call(
        &sim,
        "POST",
        &format!("/guilds/{}/channels", second.id),
        Some(json!({"name": "a"})),
    )
    .await;
    assert_eq!((status, answer["code"].as_u64()), (403, Some(50013)));
    assert!(sim.channels(second.id).is_empty());
}

#[tokio::test]
async fn a_guild_holds_at_most_500_channels() {
    let sim = start(protonn_sim::SimConfig {
        channels_per_guild: 499,
        ..privileged_world()
    })
    .await;
    let guild = sim.guilds()[0].clone();
    let create = format!("/guilds/{}/channels", guild.id);
    let (status, _) = bot_call(&sim, "POST", &create, Some(json!({"name": "last"}))).await;
    assert_eq!(status, 201);
    let (status, body) =
        bot_call(&sim, "POST", &create, Some(json!({"name": "one too many"}))).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(30013)));
    assert_eq!(sim.channels(guild.id).len(), 1);
}
