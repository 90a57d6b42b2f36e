//! The node's REST client against the simulator, whose REST enforces Discord's limits:
//! buckets learned and never overrun, 429s honoured by scope, identical GETs coalesced, and
//! the invalid-request guard.

use std::sync::Arc;
use std::time::Duration;

use protonn_actors::rest::{
    GlobalLine, GuardLimits, GuardState, InvalidRequestGuard, Rest, RestError, Transport,
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
