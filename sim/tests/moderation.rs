//! The moderation routes: bans, timeouts, kicks, deletes, channel edits and overwrites, with
//! Discord's validation, 50013 from the world's permissions, and the gateway events that
//! follow, all in the ledger.

mod common;

use common::*;

use protonn_sim::SimHandle;
use serde_json::json;
use twilight_gateway::{ConfigBuilder, Event, Intents, Shard, ShardId};

/// A twilight shard, READY, with the intents moderation's events need.
async fn connect(sim: &SimHandle) -> Shard {
    let intents = Intents::GUILDS
        | Intents::GUILD_MESSAGES
        | Intents::GUILD_MEMBERS
        | Intents::GUILD_MODERATION;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard = Shard::with_config(ShardId::new(0, 1), config);
    until(&mut shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
    shard
}

#[tokio::test]
async fn a_ban_removes_the_member_and_is_lifted_once() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let user = guild.member_ids[0];
    let path = format!("/guilds/{}/bans/{user}", guild.id);
    let (status, _) = bot_call(
        &sim,
        "PUT",
        &path,
        Some(json!({"delete_message_seconds": 86_400})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(sim.bans(guild.id), vec![user]);
    assert!(sim.departed(guild.id, user));
    let (status, body) = bot_call(
        &sim,
        "GET",
        &format!("/guilds/{}/members/{user}", guild.id),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (404, Some(10007)),
        "a banned user is no member"
    );
    assert_eq!(bot_call(&sim, "GET", &path, None).await.0, 200);

    assert_eq!(bot_call(&sim, "DELETE", &path, None).await.0, 204);
    let (status, body) = bot_call(&sim, "DELETE", &path, None).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (404, Some(10026)),
        "Unknown Ban"
    );
    assert!(sim.bans(guild.id).is_empty());

    let routes: Vec<(String, u16)> = sim
        .ledger()
        .rest
        .iter()
        .map(|r| (r.route.clone(), r.status))
        .collect();
    assert!(routes.contains(&("PUT /guilds/{guild_id}/bans/{user_id}".to_owned(), 204)));
    assert!(routes.contains(&("DELETE /guilds/{guild_id}/bans/{user_id}".to_owned(), 404)));
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let user = guild.member_ids[0];
    let channel = guild.channel_ids[0];

    let path = format!("/guilds/{}/bans/{user}", guild.id);
    let (status, body) = bot_call(
        &sim,
        "PUT",
        &path,
        Some(json!({"delete_message_seconds": 700_000})),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
    assert!(sim.bans(guild.id).is_empty());

    let far = "2099-01-01T00:00:00.000000+00:00";
    let member = format!("/guilds/{}/members/{user}", guild.id);
    let (status, body) = bot_call(
        &sim,
        "PATCH",
        &member,
        Some(json!({"communication_disabled_until": far})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(50035)),
        "over 28 days"
    );
    assert_eq!(sim.timeout_of(guild.id, user), None);

    let bulk = format!("/channels/{channel}/messages/bulk-delete");
    let (status, body) = bot_call(&sim, "POST", &bulk, Some(json!({"messages": ["1"]}))).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (400, Some(50035)),
        "fewer than 2"
    );
    // A message id from 2020 is older than 14 days.
    let old = (1_577_836_800_000u64 - 1_420_070_400_000) << 22;
    let (status, body) = bot_call(
        &sim,
        "POST",
        &bulk,
        Some(json!({"messages": [old.to_string(), (old + 1).to_string()]})),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50034)));

    let (status, _) = bot_call(
        &sim,
        "PATCH",
        &format!("/channels/{channel}"),
        Some(json!({"rate_limit_per_user": 21_601})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(sim.slowmode_of(channel), 0);
}

#[tokio::test]
async fn the_owner_is_out_of_reach_and_overwrites_take_permissions_away() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let channel = guild.channel_ids[0];
    // Messages reach the world only through a session.
    let _shard = connect(&sim).await;
    let (status, body) = bot_call(
        &sim,
        "PUT",
        &format!("/guilds/{}/bans/{}", guild.id, guild.owner_id),
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (403, Some(50013)));

    // The bot denies itself Manage Messages in one channel: deleting there is refused.
    let (_, me) = bot_call(&sim, "GET", "/users/@me", None).await;
    let bot = me["id"].as_str().unwrap().to_owned();
    let manage_messages = 1u64 << 13;
    let (status, _) = bot_call(
        &sim,
        "PUT",
        &format!("/channels/{channel}/permissions/{bot}"),
        Some(json!({"type": 1, "allow": "0", "deny": manage_messages.to_string()})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(sim.overwrites_of(channel).len(), 1);
    let message = sim
        .send_message(guild.id, channel, guild.member_ids[0], "hello")
        .unwrap();
    let (status, body) = bot_call(
        &sim,
        "DELETE",
        &format!("/channels/{channel}/messages/{message}"),
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (403, Some(50013)));
    assert!(sim.message_exists(channel, message));

    // In another channel it goes, and slowmode is set.
    let other = guild.channel_ids[1];
    let message = sim
        .send_message(guild.id, other, guild.member_ids[0], "hello")
        .unwrap();
    assert_eq!(
        bot_call(
            &sim,
            "DELETE",
            &format!("/channels/{other}/messages/{message}"),
            None
        )
        .await
        .0,
        204
    );
    assert!(!sim.message_exists(other, message));
    let (status, body) = bot_call(
        &sim,
        "PATCH",
        &format!("/channels/{other}"),
        Some(json!({"rate_limit_per_user": 30})),
    )
    .await;
    assert_eq!(
        (status, body["rate_limit_per_user"].as_u64()),
        (200, Some(30))
    );
    assert_eq!(sim.slowmode_of(other), 30);
}

#[tokio::test]
async fn moderation_sends_its_gateway_events() {
    let sim = start(privileged_world()).await;
    let guild = sim.guilds()[0].clone();
    let mut shard = connect(&sim).await;
    let user = guild.member_ids[1];
    let channel = guild.channel_ids[0];
    let first = sim.send_message(guild.id, channel, user, "one").unwrap();
    let second = sim.send_message(guild.id, channel, user, "two").unwrap();
    let bulk = format!("/channels/{channel}/messages/bulk-delete");
    let ids = json!({"messages": [first.to_string(), second.to_string()]});
    assert_eq!(bot_call(&sim, "POST", &bulk, Some(ids)).await.0, 204);
    let lifted = "2000-01-01T00:00:00.000000+00:00";
    let member = format!("/guilds/{}/members/{user}", guild.id);
    assert_eq!(
        bot_call(
            &sim,
            "PATCH",
            &member,
            Some(json!({"communication_disabled_until": lifted}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        bot_call(
            &sim,
            "PUT",
            &format!("/guilds/{}/bans/{user}", guild.id),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        bot_call(
            &sim,
            "DELETE",
            &format!("/guilds/{}/bans/{user}", guild.id),
            None
        )
        .await
        .0,
        204
    );
    until(&mut shard, |e| {
        matches!(e, Event::MessageDeleteBulk(bulk) if bulk.ids.len() == 2).then_some(())
    })
    .await;
    until(&mut shard, |e| {
        matches!(e, Event::MemberUpdate(update) if update.user.id.get() == user).then_some(())
    })
    .await;
    until(&mut shard, |e| {
        matches!(e, Event::BanAdd(ban) if ban.user.id.get() == user).then_some(())
    })
    .await;
    until(&mut shard, |e| {
        matches!(e, Event::BanRemove(ban) if ban.user.id.get() == user).then_some(())
    })
    .await;
    let delivered: Vec<String> = sim
        .ledger()
        .dispatches
        .iter()
        .map(|d| d.event.clone())
        .collect();
    for name in [
        "MESSAGE_DELETE_BULK",
        "GUILD_MEMBER_UPDATE",
        "GUILD_BAN_ADD",
        "GUILD_BAN_REMOVE",
    ] {
        assert!(
            delivered.iter().any(|d| d == name),
            "{name} not in the ledger"
        );
    }
}

#[tokio::test]
async fn a_dm_channel_is_opened_once_and_lists_the_bots_messages() {
    let sim = start(privileged_world()).await;
    let user = sim.guilds()[0].member_ids[0];
    let open = || {
        bot_call(
            &sim,
            "POST",
            "/users/@me/channels",
            Some(json!({"recipient_id": user.to_string()})),
        )
    };
    let (status, channel) = open().await;
    assert_eq!(status, 200);
    let dm = channel["id"].as_str().unwrap().to_owned();
    assert_eq!(
        open().await.1["id"].as_str(),
        Some(dm.as_str()),
        "one DM channel per user"
    );
    assert_eq!(sim.dm_channel_of(user), dm.parse().ok());
    let path = format!("/channels/{dm}/messages");
    for text in ["first", "second"] {
        let (status, _) = bot_call(&sim, "POST", &path, Some(json!({"content": text}))).await;
        assert_eq!(status, 200);
    }
    let (status, listed) = bot_call(&sim, "GET", &format!("{path}?limit=100"), None).await;
    assert_eq!(status, 200);
    let texts: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["second", "first"], "newest first");
    // A message left before the ledger saw anything is listed too.
    sim.bot_dm_sent_before(user, "earlier");
    let (_, listed) = bot_call(&sim, "GET", &format!("{path}?limit=1"), None).await;
    assert_eq!(listed[0]["content"], "earlier");
    let (status, _) = bot_call(&sim, "GET", "/channels/1/messages", None).await;
    assert_eq!(status, 404, "neither a guild's channel nor a DM");
}
