//! Guild calls through a node, in one process (`protonn demo`, `protonn run`): the
//! simulator answers the REST lookups the node cache cannot.

use std::sync::Arc;
use std::time::Duration;

use protonn_actors::{
    CallSource, Caller, GuildCall, GuildCallError, GuildRequest, GuildResponse, MemberAccess,
};
use protonn_storage::GuildConfig;
use protonn_tests::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_change_through_guild_calls_is_live_for_the_next_command() {
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(2, 6)).await;
    let guild = some_guild(sim, 2);
    let channel = guild.channel_ids[0];
    wait_until("the guild is cached", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;
    let calls = node.guild_calls();

    let change = GuildRequest::ChangeConfig {
        config: GuildConfig {
            prefix: "$".to_owned(),
            ..GuildConfig::default()
        },
        expected_version: 0,
    };
    let Ok(GuildResponse::Config(saved)) = calls.call(call(guild.id, change.clone())).await else {
        panic!("the change was refused")
    };
    assert_eq!(saved.version, 1);
    sim.send_message(guild.id, channel, guild.member_ids[0], "$ping")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "pong", "live at once");
    assert_eq!(
        calls.call(call(guild.id, change)).await,
        Err(GuildCallError::Conflict { current: 1 })
    );

    // A change typed in Discord is seen by the dashboard's next read.
    sim.send_message(guild.id, channel, guild.owner_id, "$config set locale de")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 1).await, "`locale` is now `de`.");
    let Ok(GuildResponse::Config(read)) =
        calls.call(call(guild.id, GuildRequest::ReadConfig)).await
    else {
        panic!("no config")
    };
    assert_eq!((read.version, read.config.locale.as_str()), (2, "de"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_and_permissions_come_from_the_cache_and_discord_when_it_lacks_them() {
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(2, 6)).await;
    let guild = some_guild(sim, 1);
    wait_until("the guild is cached", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;
    let calls = node.guild_calls();

    let Ok(GuildResponse::Summary(summary)) =
        calls.call(call(guild.id, GuildRequest::Summary)).await
    else {
        panic!("no summary")
    };
    assert_eq!(summary.name, guild.name);
    assert_eq!(summary.owner_id, guild.owner_id);
    assert_eq!(summary.shard_id, guild.shard);
    // The default cache keeps no channels: they came from GET /guilds/{id}/channels.
    let channel_ids: Vec<u64> = summary.channels.iter().map(|c| c.id).collect();
    assert_eq!(channel_ids, guild.channel_ids);
    assert!(summary.channels.iter().all(|c| c.kind == 0));
    assert!(summary.roles.len() >= 3, "{:?}", summary.roles);
    assert!(
        summary
            .roles
            .windows(2)
            .all(|pair| pair[0].position >= pair[1].position),
        "highest first"
    );

    let guild_id = guild.id;
    let access = |user_id| {
        let calls = Arc::clone(&calls);
        async move {
            match calls
                .call(call(guild_id, GuildRequest::MemberPermissions { user_id }))
                .await
            {
                Ok(GuildResponse::Permissions(access)) => access,
                other => panic!("no permissions: {other:?}"),
            }
        }
    };
    let owner = access(guild.owner_id).await;
    assert!(owner.is_owner && owner.can_manage);
    // Members are not cached: GET /guilds/{id}/members/{user} gives their roles.
    let member = access(guild.member_ids[0]).await;
    assert!(!member.can_manage && !member.is_owner, "{member:?}");
    assert_ne!(member.permissions, 0, "@everyone's permissions");
    // Discord answers 10007 Unknown Member for a user who is not in the guild.
    let stranger = access(guild.member_ids[0] + 1).await;
    assert_eq!(
        stranger,
        MemberAccess {
            permissions: 0,
            is_owner: false,
            is_staff: false,
            can_manage: false,
        }
    );
    let lookups: Vec<(String, u16)> = sim
        .ledger()
        .rest
        .iter()
        .filter(|r| r.route.starts_with("GET /guilds/"))
        .map(|r| (r.route.clone(), r.status))
        .collect();
    assert_eq!(
        lookups,
        [
            ("GET /guilds/{guild_id}/channels".to_owned(), 200),
            ("GET /guilds/{guild_id}/members/{user_id}".to_owned(), 200),
            ("GET /guilds/{guild_id}/members/{user_id}".to_owned(), 404),
        ]
    );

    // A guild the bot was removed from is refused, and no id 0 reaches an actor.
    assert!(sim.remove_guild(guild.id));
    wait_until("the removal reached the cache", || async {
        calls.call(call(guild.id, GuildRequest::Summary)).await
            == Err(GuildCallError::BotNotInGuild)
    })
    .await;
    assert_eq!(
        calls.call(call(0, GuildRequest::ReadConfig)).await,
        Err(GuildCallError::UnknownGuild)
    );
}
