//! The node's REST client against the simulator, whose REST enforces Discord's limits:
//! buckets learned and never overrun, 429s honoured by scope, identical GETs coalesced, and
//! the invalid-request guard.

use std::sync::Arc;
use std::time::Duration;

use protonn_actors::rest::{
    GlobalLine, GuardLimits, GuardState, InvalidRequestGuard, MAX_QUEUED, Rest, RestError,
    Transport,
};
use protonn_shard::BotToken;
use protonn_sim::{RateLimitScope, RestFault, RestFaultResponse, SimConfig, SimHandle};
use protonn_tests::*;
use twilight_http::request::TryIntoRequest;
use twilight_model::id::Id;

const MESSAGES: &str = "POST /channels/{channel_id}/messages";

fn rest_to(sim: &SimHandle, token: &str, limits: GuardLimits) -> Rest {
    let transport = Transport::new(
        &BotToken::new(token),
        Some(&sim.rest_proxy()),
        Duration::from_secs(10),
    );
    Rest::new(
        Arc::new(transport),
        Arc::new(GlobalLine::unlimited()),
        Arc::new(InvalidRequestGuard::new(limits)),
    )
}

fn builder() -> twilight_http::Client {
    twilight_http::Client::builder().build()
}

fn message(channel: u64, content: &str) -> twilight_http::request::Request {
    builder()
        .create_message(Id::new(channel))
        .content(content)
        .try_into_request()
        .unwrap()
}

fn statuses(sim: &SimHandle, route: &str) -> Vec<(u16, u64)> {
    sim.ledger()
        .rest
        .iter()
        .filter(|r| r.route == route)
        .map(|r| (r.status, r.at_ms))
        .collect()
}

fn first_channel(sim: &SimHandle) -> u64 {
    some_guild(sim, 0).channel_ids[0]
}

#[tokio::test]
async fn a_busy_channel_is_paced_by_its_bucket_without_a_429() {
    // Discord's 5 messages per 5 s per channel, ten times faster.
    let sim = start_sim(SimConfig {
        time_scale: 0.1,
        ..small_world(1, 1)
    })
    .await;
    let rest = rest_to(&sim, &sim.config().token.clone(), GuardLimits::default());
    let channel = first_channel(&sim);
    // Made at once: they leave in order, five per window.
    let sent: Vec<_> = (0..12)
        .map(|n| rest.send("create_message", message(channel, &n.to_string())))
        .collect();
    for reply in sent {
        reply.await.unwrap();
    }
    let ledger = statuses(&sim, MESSAGES);
    assert!(
        ledger.iter().all(|(status, _)| *status == 200),
        "{ledger:?}"
    );
    assert_eq!(ledger.len(), 12);
    // The sixth waited for the first window (500 ms) to end.
    assert!(ledger[5].1 - ledger[0].1 >= 450, "{ledger:?}");
    let order: Vec<String> = channel_replies(&sim, channel);
    let expected: Vec<String> = (0..12).map(|n| n.to_string()).collect();
    assert_eq!(order, expected);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_global_429_is_waited_out_once_not_retried_at_once() {
    let sim = start_sim(small_world(1, 1)).await;
    let rest = rest_to(&sim, &sim.config().token.clone(), GuardLimits::default());
    sim.inject_rest(RestFault {
        response: RestFaultResponse::RateLimited {
            scope: RateLimitScope::Global,
            retry_after_ms: 300,
        },
        count: 1,
        route: None,
    })
    .unwrap();
    rest.send("create_message", message(first_channel(&sim), "x"))
        .await
        .unwrap();
    // twilight-http 0.18 would knock again at once, up to its 50/s: here one 429, then
    // the retry after `retry_after`.
    let ledger = statuses(&sim, MESSAGES);
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    assert_eq!((ledger[0].0, ledger[1].0), (429, 200));
    assert!(ledger[1].1 - ledger[0].1 >= 290, "{ledger:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn identical_concurrent_gets_are_sent_once() {
    let sim = start_sim(small_world(1, 1)).await;
    let rest = rest_to(&sim, &sim.config().token.clone(), GuardLimits::default());
    let asked: Vec<_> = (0..10)
        .map(|_| {
            let request = builder().current_user_application().try_into_request();
            rest.send("current_application", request.unwrap())
        })
        .collect();
    let mut bodies = Vec::new();
    for answer in asked {
        bodies.push(answer.await.unwrap().body);
    }
    assert!(
        bodies
            .iter()
            .all(|body| *body == bodies[0] && !body.is_empty())
    );
    assert_eq!(statuses(&sim, "GET /applications/@me").len(), 1);
    // Once answered, the next one is sent again.
    let request = builder().current_user_application().try_into_request();
    rest.send("current_application", request.unwrap())
        .await
        .unwrap();
    assert_eq!(statuses(&sim, "GET /applications/@me").len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_responses_hold_messages_back_long_before_a_ban() {
    let sim = start_sim(small_world(1, 1)).await;
    let rest = rest_to(
        &sim,
        &sim.config().token.clone(),
        GuardLimits {
            hold_messages_at: 2,
            hold_all_at: 3,
        },
    );
    // Overwriting another application's commands: 403 Missing Access.
    let forbidden = || {
        builder()
            .interaction(Id::new(1))
            .set_global_commands(&[])
            .try_into_request()
            .unwrap()
    };
    for _ in 0..2 {
        let refused = rest.send("set_global_commands", forbidden()).await;
        assert!(matches!(
            refused,
            Err(RestError::Status { status: 403, .. })
        ));
    }
    assert_eq!(rest.guard().state(), GuardState::HoldingMessages);
    let held = rest
        .send("create_message", message(first_channel(&sim), "x"))
        .await;
    assert!(matches!(held, Err(RestError::HeldBack(_))), "{held:?}");
    assert!(statuses(&sim, MESSAGES).is_empty());
    // Interaction responses still go (this one is for an unknown interaction: 404, which
    // Discord does not count).
    let response = twilight_model::http::interaction::InteractionResponse {
        kind: twilight_model::http::interaction::InteractionResponseType::DeferredChannelMessageWithSource,
        data: None,
    };
    let callback = builder()
        .interaction(Id::new(1))
        .create_response(Id::new(2), "token", &response)
        .try_into_request()
        .unwrap();
    let answered = rest.send("interaction_callback", callback).await;
    assert!(
        !matches!(answered, Err(RestError::HeldBack(_))),
        "{answered:?}"
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.rest.iter().filter(|r| r.invalid).count(), 2);
    assert!(!sim.rest_banned());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_401_stops_every_request() {
    let sim = start_sim(small_world(1, 1)).await;
    let rest = rest_to(&sim, "not-the-token", GuardLimits::default());
    let gateway = builder().gateway().authed().try_into_request().unwrap();
    let refused = rest.send("gateway_bot", gateway).await;
    assert!(matches!(
        refused,
        Err(RestError::Status { status: 401, .. })
    ));
    assert_eq!(rest.guard().state(), GuardState::Halted);
    let held = rest
        .send("create_message", message(first_channel(&sim), "x"))
        .await;
    assert!(matches!(held, Err(RestError::HeldBack(GuardState::Halted))));
    assert_eq!(sim.ledger().rest.len(), 1);
    sim.shutdown().await;
}

fn current_application() -> twilight_http::request::Request {
    builder()
        .current_user_application()
        .try_into_request()
        .unwrap()
}

fn server_errors(count: u32, route: &str) -> RestFault {
    RestFault {
        response: RestFaultResponse::ServerError { status: 503 },
        count,
        route: Some(route.to_owned()),
    }
}

#[tokio::test]
async fn server_errors_are_retried_for_idempotent_requests_only_and_a_bounded_number_of_times() {
    let sim = start_sim(small_world(1, 1)).await;
    let rest = rest_to(&sim, &sim.config().token.clone(), GuardLimits::default());
    const APPLICATION: &str = "GET /applications/@me";

    // A GET means the same twice: two 503s, then the answer.
    sim.inject_rest(server_errors(2, APPLICATION)).unwrap();
    rest.send("current_application", current_application())
        .await
        .unwrap();
    let tries: Vec<u16> = statuses(&sim, APPLICATION).iter().map(|s| s.0).collect();
    assert_eq!(tries, [503, 503, 200]);

    // Three tries at most: the third 503 is the answer.
    sim.inject_rest(server_errors(5, APPLICATION)).unwrap();
    let answer = rest
        .send("current_application", current_application())
        .await;
    assert!(
        matches!(answer, Err(RestError::Status { status: 503, .. })),
        "{answer:?}"
    );
    assert_eq!(statuses(&sim, APPLICATION).len(), 3 + 3);

    // A POST is never repeated: it could post twice.
    sim.inject_rest(server_errors(1, MESSAGES)).unwrap();
    let answer = rest
        .send("create_message", message(first_channel(&sim), "once"))
        .await;
    assert!(
        matches!(answer, Err(RestError::Status { status: 503, .. })),
        "{answer:?}"
    );
    assert_eq!(statuses(&sim, MESSAGES).len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_full_message_backlog_never_refuses_or_delays_an_interaction_response() {
    // A channel bucket of 5 per minute: the backlog does not move during the test.
    let mut world = small_world(1, 1);
    world.rest_limits.channel_messages.per_ms = 60_000;
    let sim = start_sim(world).await;
    let rest = rest_to(&sim, &sim.config().token.clone(), GuardLimits::default());
    let channel = first_channel(&sim);
    let backlog: Vec<_> = (0..MAX_QUEUED)
        .map(|n| rest.send("create_message", message(channel, &format!("{n}"))))
        .collect();
    let refused = rest
        .send("create_message", message(channel, "one too many"))
        .await;
    assert!(matches!(refused, Err(RestError::QueueFull)), "{refused:?}");

    // An interaction made after the backlog is answered while it still waits. (The
    // interaction is unknown to the simulator, which answers 404 10062: Discord's answer,
    // so the request left.)
    let callback = builder()
        .interaction(Id::new(1))
        .create_response(
            Id::new(2),
            "token",
            &twilight_model::http::interaction::InteractionResponse {
                kind: twilight_model::http::interaction::InteractionResponseType::Pong,
                data: None,
            },
        )
        .try_into_request()
        .unwrap();
    let answer = rest.send("interaction_callback", callback).await;
    assert!(
        matches!(answer, Err(RestError::Status { status: 404, .. })),
        "{answer:?}"
    );
    let (messages_waiting, interactions_waiting) = rest.queued();
    assert!(
        messages_waiting >= MAX_QUEUED - 5,
        "the backlog still waits: {messages_waiting}"
    );
    assert_eq!(interactions_waiting, 0);
    assert!(
        statuses(&sim, MESSAGES).len() <= 5,
        "one window's worth at most"
    );
    assert_eq!(
        statuses(
            &sim,
            "POST /interactions/{interaction_id}/{interaction_token}/callback"
        )
        .len(),
        1
    );
    drop(backlog);
    sim.shutdown().await;
}

/// A bot whose global limit is 10/s: a standalone node spends 90 % of it, not of Discord's
/// default 50 (the simulator allows 50, so only the node's own pacing can hold it to 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_keeps_to_the_configured_global_limit() {
    let sim = start_sim(small_world(1, 30)).await;
    let dir = tempfile::tempdir().unwrap();
    let node = protonn_cluster::Node::start(protonn_cluster::NodeOptions {
        discord: protonn_cluster::DiscordEndpoint::Simulator(sim.rest_proxy()),
        token: BotToken::new(sim.config().token.clone()),
        rest_global_per_sec: 10.0,
        shards: None,
        shard_ids: None,
        data_dir: dir.path().to_owned(),
        ops_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        runtime: test_runtime(),
        observer: None,
        cluster: None,
    })
    .await
    .unwrap();
    wait_all_ready(&node).await;

    // 40 pings at once, one per channel of 40 channels: no route bucket holds any back.
    let channels: Vec<(u64, u64)> = sim
        .guilds()
        .iter()
        .flat_map(|g| g.channel_ids.iter().map(move |&c| (g.id, c)))
        .take(40)
        .collect();
    assert_eq!(channels.len(), 40);
    for (i, &(guild, channel)) in channels.iter().enumerate() {
        sim.send_message(guild, channel, 5_000 + i as u64, "!ping")
            .unwrap();
    }
    let sent = || -> Vec<u64> {
        sim.ledger()
            .rest
            .iter()
            .filter(|r| r.route == MESSAGES && r.status == 200)
            .map(|r| r.at_ms)
            .collect()
    };
    wait_until("every ping is answered", || async { sent().len() >= 40 }).await;
    let times = sent();
    let most = times
        .iter()
        .map(|&start| {
            times
                .iter()
                .filter(|&&t| t >= start && t < start + 1_000)
                .count()
        })
        .max()
        .unwrap();
    // 9 a second, plus the line's burst of one.
    assert!(
        most <= 10,
        "{most} messages in one second at a limit of 10/s"
    );
    node.shutdown().await;
}

/// Announcements go in the background lane: a reply made while a campaign's messages wait
/// has at most one of them ahead of it (the one already holding the next place), and the
/// rest leave after it, all within the node's share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_not_queued_behind_background_announcements() {
    let sim = start_sim(small_world(1, 12)).await;
    let rest = Rest::new(
        Arc::new(Transport::new(
            &BotToken::new(sim.config().token.clone()),
            Some(&sim.rest_proxy()),
            Duration::from_secs(10),
        )),
        // 5 places a second: slow enough that the line's order shows in the ledger.
        Arc::new(GlobalLine::new(5.0)),
        Arc::new(InvalidRequestGuard::new(GuardLimits::default())),
    );
    // One channel per message, so no route bucket orders them.
    let channels: Vec<u64> = sim
        .guilds()
        .iter()
        .flat_map(|g| g.channel_ids.clone())
        .take(9)
        .collect();
    let give_up_at = tokio::time::Instant::now() + Duration::from_secs(60);
    let campaign: Vec<_> = channels[..8]
        .iter()
        .map(|&c| rest.send_background("create_message", message(c, "announcement"), give_up_at))
        .collect();
    wait_until("the first announcement left", || async {
        sim.ledger().rest.iter().any(|r| r.route == MESSAGES)
    })
    .await;
    rest.send("create_message", message(channels[8], "reply"))
        .await
        .unwrap();
    for sent in campaign {
        sent.await.unwrap();
    }
    let order: Vec<String> = sim
        .ledger()
        .rest
        .iter()
        .filter(|r| r.route == MESSAGES)
        .map(|r| {
            r.body.as_ref().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(order.len(), 9, "{order:?}");
    let reply_at = order.iter().position(|c| c == "reply").unwrap();
    assert!(
        reply_at <= 2,
        "the reply waited behind at most the announcement holding the next place: {order:?}"
    );

    // A background request whose turn does not come in time is never sent.
    let blocked = rest.send_background(
        "create_message",
        message(channels[0], "late"),
        tokio::time::Instant::now(),
    );
    assert!(matches!(blocked.await, Err(RestError::Timeout)));
    assert_eq!(channel_replies(&sim, channels[0]), ["announcement"]);
    sim.shutdown().await;
}
