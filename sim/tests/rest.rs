//! REST rate limits, the invalid-request ban, scripted and random REST
//! faults and the interaction deadline, with the real twilight-http client
//! (its limiter on and off) and by hand where the exact bytes of a 429
//! matter.

mod common;

use common::*;

use std::time::Duration;

use futures_util::future::join_all;
use protonn_sim::{
    GatewayEventKind, InteractionOutcome, RandomRestFaults, RateLimit, RateLimitScope, RestFault,
    RestFaultResponse, RestLimits, SimConfig, SimHandle,
};
use serde_json::Value;
use tokio::time::{Instant, timeout_at};
use twilight_gateway::{ConfigBuilder, Event, Intents, Shard, ShardId};
use twilight_http::Client;
use twilight_http::error::ErrorType;
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseType};
use twilight_model::id::Id;

const MESSAGES: &str = "POST /channels/{channel_id}/messages";

fn config(time_scale: f64) -> SimConfig {
    SimConfig {
        guilds: 40,
        shards: 1,
        time_scale,
        ..SimConfig::default()
    }
}

fn client(sim: &SimHandle, limiter: bool) -> Client {
    let builder = Client::builder()
        .token(TOKEN.to_owned())
        .proxy(sim.rest_proxy(), true);
    if limiter {
        builder
    } else {
        builder.ratelimiter(None)
    }
    .build()
}

fn channels(sim: &SimHandle) -> Vec<u64> {
    sim.guilds()
        .iter()
        .flat_map(|g| g.channel_ids.clone())
        .collect()
}

/// Sends one message per entry of `to`, all at once; every one must
/// succeed in the end (twilight retries a 429 by itself).
async fn send_all(client: &Client, to: &[u64]) {
    let sends = to.iter().map(|&channel| async move {
        client
            .create_message(Id::new(channel))
            .content("hi")
            .await
            .map(|_| ())
    });
    let deadline = Instant::now() + WAIT;
    let results = timeout_at(deadline, join_all(sends))
        .await
        .expect("sends hung");
    for result in results {
        result.unwrap();
    }
}

fn statuses(sim: &SimHandle, route: &str) -> Vec<u16> {
    sim.ledger()
        .rest
        .iter()
        .filter(|r| r.route == route)
        .map(|r| r.status)
        .collect()
}

/// Discord names `x-ratelimit-scope` only on a 429, and twilight-http 0.18
/// learns a bucket only from a response naming its scope: it learns the
/// bucket from a 429 and waits for its reset, but (the headers of later
/// successes being ignored) it takes one 429 per window of the bucket.
#[tokio::test]
async fn limiter_on_learns_the_route_bucket_from_429s_and_waits() {
    // The route window is 5 s × 0.02 = 100 ms.
    let sim = start(config(0.02)).await;
    let channel = channels(&sim)[0];
    send_all(&client(&sim, true), &[channel; 20]).await;
    let ledger = sim.ledger();
    let records: Vec<_> = ledger.rest.iter().filter(|r| r.route == MESSAGES).collect();
    let sent: Vec<u64> = records
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(sent.len(), 20);
    let limited: Vec<u64> = records
        .iter()
        .filter(|r| r.status == 429)
        .map(|r| r.at_ms)
        .collect();
    // At most one 429 per window: after each, twilight waits for the reset.
    assert!((1..=4).contains(&limited.len()), "{records:?}");
    assert!(limited.windows(2).all(|w| w[1] - w[0] >= 90), "{limited:?}");
    assert_eq!(sim.stats().rate_limited_route, limited.len() as u64);
    // 20 requests at 5 per window need four windows: three resets.
    let span = sent.iter().max().unwrap() - sent.iter().min().unwrap();
    assert!(span >= 3 * 100 - 1, "all sent within {span} ms");
    sim.shutdown().await;
}

#[tokio::test]
async fn limiter_off_gets_route_429s() {
    let sim = start(config(0.02)).await;
    let channel = channels(&sim)[0];
    send_all(&client(&sim, false), &[channel; 20]).await;
    let ledger = sim.ledger();
    let limited: Vec<_> = ledger.rest.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty());
    let bucket = ledger.rest[0].bucket.clone().unwrap();
    assert_eq!(bucket.len(), 32);
    for record in &limited {
        assert_eq!(record.route, MESSAGES);
        assert_eq!(record.rate_limit_scope, Some(RateLimitScope::User));
        assert_eq!(record.bucket.as_ref(), Some(&bucket));
        assert!(!record.injected);
    }
    let stats = sim.stats();
    assert_eq!(stats.rate_limited_route, limited.len() as u64);
    assert_eq!(stats.rate_limited_global, 0);
    assert_eq!(
        statuses(&sim, MESSAGES)
            .iter()
            .filter(|&&s| s == 200)
            .count(),
        20
    );
    sim.shutdown().await;
}

/// The global window is 1 s × 0.2 = 200 ms (less the 20 ms grace); twilight
/// keeps its own real 1 s window, so with its limiter on it stays under.
#[tokio::test]
async fn global_limit_with_and_without_the_client_limiter() {
    for limiter in [false, true] {
        let sim = start(config(0.2)).await;
        let mut to = channels(&sim);
        to.truncate(60);
        to.extend(to.clone());
        send_all(&client(&sim, limiter), &to).await;
        let stats = sim.stats();
        assert_eq!(stats.rate_limited_route, 0, "limiter {limiter}");
        if limiter {
            assert_eq!(stats.rate_limited_global, 0);
        } else {
            assert!(stats.rate_limited_global > 0);
            let ledger = sim.ledger();
            let global = ledger.rest.iter().find(|r| r.status == 429).unwrap();
            assert_eq!(global.rate_limit_scope, Some(RateLimitScope::Global));
            assert_eq!(global.bucket, None);
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn scripted_faults_with_twilight() {
    let sim = start(config(1.0)).await;
    let channel = Id::new(channels(&sim)[0]);
    let plain = client(&sim, false);

    sim.inject_rest(RestFault {
        response: RestFaultResponse::ServerError { status: 503 },
        count: 1,
        route: Some(MESSAGES.to_owned()),
    })
    .unwrap();
    let failed = plain
        .create_message(channel)
        .content("x")
        .await
        .unwrap_err();
    match failed.kind() {
        ErrorType::Response { status, body, .. } => {
            assert_eq!(status.get(), 503);
            let body: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(body["message"], "503: Service Unavailable");
        }
        other => panic!("unexpected error {other:?}"),
    }
    plain.create_message(channel).content("x").await.unwrap();

    // Without its limiter twilight retries a 429 at once.
    sim.inject_rest(RestFault {
        response: RestFaultResponse::RateLimited {
            scope: RateLimitScope::User,
            retry_after_ms: 50,
        },
        count: 2,
        route: None,
    })
    .unwrap();
    plain.create_message(channel).content("x").await.unwrap();
    assert_eq!(statuses(&sim, MESSAGES), [503, 200, 429, 429, 200]);

    // With it, twilight learns the exhausted bucket and waits it out.
    sim.inject_rest(RestFault {
        response: RestFaultResponse::RateLimited {
            scope: RateLimitScope::User,
            retry_after_ms: 200,
        },
        count: 1,
        route: Some(MESSAGES.to_owned()),
    })
    .unwrap();
    client(&sim, true)
        .create_message(channel)
        .content("x")
        .await
        .unwrap();
    let ledger = sim.ledger();
    let tail: Vec<_> = ledger.rest.iter().rev().take(2).collect();
    assert_eq!((tail[1].status, tail[0].status), (429, 200));
    assert!(tail[1].injected);
    assert!(tail[0].at_ms - tail[1].at_ms >= 199, "{tail:?}");
    let stats = sim.stats();
    assert_eq!((stats.rest_faults, stats.rate_limited_route), (4, 3));
    assert!(
        sim.inject_rest(RestFault {
            response: RestFaultResponse::ServerError { status: 504 },
            count: 1,
            route: None,
        })
        .is_err()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn late_interaction_gets_10062_and_is_recorded_late() {
    // The 3 s deadline becomes 30 ms.
    let sim = start(SimConfig {
        guilds: 4,
        shards: 1,
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await;
    let config = ConfigBuilder::new(TOKEN.to_owned(), Intents::GUILDS)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard = Shard::with_config(ShardId::new(0, 1), config);
    let deadline = Instant::now() + WAIT;
    while !matches!(next(&mut shard, deadline).await, Event::Ready(_)) {}
    let guild = &sim.guilds()[0];
    let id = sim
        .send_command_interaction(guild.id, guild.channel_ids[0], guild.owner_id, "ping", &[])
        .unwrap();
    let interaction = loop {
        if let Event::InteractionCreate(i) = next(&mut shard, deadline).await {
            break i;
        }
    };
    // Let the deadline pass, seen from the simulator's side.
    while sim.ledger().interactions[0].outcome != InteractionOutcome::Never {
        assert!(Instant::now() < deadline, "deadline never passed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sim.stats().interactions_unanswered, 1);
    let api = client(&sim, true);
    let api = api.interaction(interaction.application_id);
    let response = InteractionResponse {
        kind: InteractionResponseType::DeferredChannelMessageWithSource,
        data: None,
    };
    let late = api
        .create_response(interaction.id, &interaction.token, &response)
        .await
        .unwrap_err();
    let code = |error: &twilight_http::Error| match error.kind() {
        ErrorType::Response { status, body, .. } => {
            assert_eq!(status.get(), 404);
            serde_json::from_slice::<Value>(body).unwrap()["code"].clone()
        }
        other => panic!("unexpected error {other:?}"),
    };
    assert_eq!(code(&late), 10062);
    let followup = api
        .create_followup(&interaction.token)
        .content("too late")
        .await
        .unwrap_err();
    assert_eq!(code(&followup), 10015);

    let record = &sim.ledger().interactions[0];
    assert_eq!((record.id, record.outcome), (id, InteractionOutcome::Late));
    assert!(record.answered_at_ms.unwrap() >= record.issued_at_ms + 30);
    let stats = sim.stats();
    assert_eq!(
        (
            stats.interactions,
            stats.interactions_late,
            stats.interactions_unanswered
        ),
        (1, 1, 0)
    );
    assert!(
        sim.ledger()
            .gateway
            .iter()
            .all(|g| g.kind != GatewayEventKind::ClosedByServer { code: 4004 })
    );
    sim.shutdown().await;
}

/// A reply with its body read as JSON (`Null` when it is not).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn seconds(&self, name: &str) -> f64 {
        self.header(name).unwrap().parse().unwrap()
    }
}

async fn raw(sim: &SimHandle, method: &str, path: &str, body: &str) -> Reply {
    raw_as(sim, method, path, body, true).await
}

/// A request with the bot token, or without any authorization.
async fn raw_as(sim: &SimHandle, method: &str, path: &str, body: &str, bot: bool) -> Reply {
    let auth = if bot {
        format!("authorization: Bot {TOKEN}\r\n")
    } else {
        String::new()
    };
    let headers = format!("{auth}content-type: application/json\r\n");
    let reply = common::raw_http::send(sim.addr(), method, path, &headers, body).await;
    Reply {
        body: serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        status: reply.status,
        headers: reply.headers,
    }
}

#[tokio::test]
async fn discord_429_bytes() {
    let sim = start(SimConfig {
        rest_limits: RestLimits {
            global: RateLimit {
                limit: 7,
                per_ms: 60_000,
            },
            ..RestLimits::default()
        },
        ..config(1.0)
    })
    .await;
    let channels = channels(&sim);
    let path = format!("/api/v10/channels/{}/messages", channels[0]);
    let now_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for remaining in (0..5).rev() {
        let ok = raw(&sim, "POST", &path, r#"{"content":"hi"}"#).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            ok.header("x-ratelimit-remaining"),
            Some(&*remaining.to_string())
        );
        // Discord names the scope on 429s only.
        assert_eq!(ok.header("x-ratelimit-scope"), None);
        let after = ok.seconds("x-ratelimit-reset-after");
        assert!(after > 0.0 && after <= 5.0, "{after}");
        let reset = ok.seconds("x-ratelimit-reset");
        assert!(reset > now_epoch && reset < now_epoch + 60.0, "{reset}");
        assert_eq!(ok.header("x-ratelimit-bucket").unwrap().len(), 32);
    }
    let limited = raw(&sim, "POST", &path, r#"{"content":"hi"}"#).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("content-type"), Some("application/json"));
    assert_eq!(limited.header("content-encoding"), None);
    assert_eq!(limited.header("x-ratelimit-scope"), Some("user"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(limited.header("x-ratelimit-global"), None);
    assert_eq!(limited.header("retry-after"), Some("5"));
    let body = &limited.body;
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    let retry = body["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 5.0);
    // `message`, `retry_after`, `global`: Discord sends no `code` with it.
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    // Two more channels spend the global 7; the next is refused globally.
    for channel in &channels[1..3] {
        let path = format!("/api/v10/channels/{channel}/messages");
        assert_eq!(
            raw(&sim, "POST", &path, r#"{"content":"hi"}"#).await.status,
            200
        );
    }
    let global = raw(&sim, "GET", "/api/v10/users/@me", "").await;
    assert_eq!(global.status, 429);
    assert_eq!(global.header("x-ratelimit-scope"), Some("global"));
    assert_eq!(global.header("x-ratelimit-global"), Some("true"));
    assert_eq!(global.header("x-ratelimit-bucket"), None);
    assert_eq!(global.body["global"], true);
    assert_eq!(global.body["message"], "You are being rate limited.");
    assert_eq!(global.body.as_object().unwrap().len(), 3, "{}", global.body);
    // Without a token the request is the IP's, not charged to the bot's
    // spent global limit.
    let anonymous = raw_as(&sim, "GET", "/api/v10/gateway", "", false).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.header("x-ratelimit-scope"), None);
    let stats = sim.stats();
    assert_eq!(
        (stats.rate_limited_route, stats.rate_limited_global),
        (1, 1)
    );

    // Scripted over the control API: a shared 429 and a 502.
    let fault = r#"{"response":{"kind":"rate_limited","scope":"shared","retry_after_ms":1500},"route":"GET /gateway"}"#;
    assert_eq!(
        raw(&sim, "POST", "/sim/rest/faults", fault).await.status,
        200
    );
    let shared = raw(&sim, "GET", "/api/v10/gateway", "").await;
    assert_eq!(shared.status, 429);
    assert_eq!(shared.header("x-ratelimit-scope"), Some("shared"));
    assert_eq!(shared.header("retry-after"), Some("2"));
    assert!(shared.header("x-ratelimit-bucket").is_some());
    assert_eq!(shared.body["retry_after"], 1.5);
    assert_eq!(
        shared.body["message"],
        "The resource is being rate limited."
    );
    assert_eq!(shared.body.as_object().unwrap().len(), 3);
    let fault = r#"{"response":{"kind":"server_error","status":502},"count":1}"#;
    assert_eq!(
        raw(&sim, "POST", "/sim/rest/faults", fault).await.status,
        200
    );
    let bad = raw(&sim, "GET", "/api/v10/gateway", "").await;
    assert_eq!(
        (bad.status, bad.body["message"].clone()),
        (502, "502: Bad Gateway".into())
    );
    let bad_fault = r#"{"response":{"kind":"server_error","status":418}}"#;
    assert_eq!(
        raw(&sim, "POST", "/sim/rest/faults", bad_fault)
            .await
            .status,
        400
    );
    // The faults are spent: the global limit (still spent) answers again.
    let after = raw(&sim, "GET", "/api/v10/gateway", "").await;
    assert_eq!(after.header("x-ratelimit-scope"), Some("global"));
    let stats = sim.stats();
    assert_eq!((stats.rate_limited_shared, stats.rest_faults), (1, 2));
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_earn_a_ban_that_ends() {
    // Five invalid requests within a minute ban REST for 300 ms.
    let sim = start(SimConfig {
        rest_limits: RestLimits {
            invalid_requests: RateLimit {
                limit: 5,
                per_ms: 60_000,
            },
            ban_ms: 300,
            ..RestLimits::default()
        },
        ..config(1.0)
    })
    .await;
    // Neither a 404 nor a shared 429 counts.
    assert_eq!(raw(&sim, "GET", "/api/v10/nowhere", "").await.status, 404);
    sim.inject_rest(RestFault {
        response: RestFaultResponse::RateLimited {
            scope: RateLimitScope::Shared,
            retry_after_ms: 10,
        },
        count: 1,
        route: None,
    })
    .unwrap();
    assert_eq!(raw(&sim, "GET", "/api/v10/gateway", "").await.status, 429);
    // A 403, three 401s (the token changed under the client) and a user 429.
    let foreign = "/api/v10/applications/1/commands";
    assert_eq!(raw(&sim, "PUT", foreign, "[]").await.status, 403);
    sim.set_token("another-token");
    for _ in 0..3 {
        assert_eq!(raw(&sim, "GET", "/api/v10/users/@me", "").await.status, 401);
    }
    sim.set_token(TOKEN);
    assert!(!sim.rest_banned());
    sim.inject_rest(RestFault {
        response: RestFaultResponse::RateLimited {
            scope: RateLimitScope::User,
            retry_after_ms: 10,
        },
        count: 1,
        route: None,
    })
    .unwrap();
    assert_eq!(raw(&sim, "GET", "/api/v10/gateway", "").await.status, 429);
    assert!(sim.rest_banned());

    // Every route, known or not, now gets the ban's 429.
    for path in ["/api/v10/gateway/bot", "/api/v10/nowhere"] {
        let banned = raw(&sim, "GET", path, "").await;
        assert_eq!(banned.status, 429, "{path}");
        assert_eq!(banned.header("retry-after"), Some("1"));
        assert_eq!(banned.header("content-type"), Some("application/json"));
        assert_eq!(banned.header("x-ratelimit-scope"), None);
        assert_eq!(banned.header("x-ratelimit-bucket"), None);
        assert_eq!(banned.body["code"], 0);
        let message = banned.body["message"].as_str().unwrap();
        assert!(message.contains("blocked"), "{message}");
    }
    let stats = sim.stats();
    assert_eq!(
        (
            stats.invalid_requests,
            stats.banned_requests,
            stats.rest_banned
        ),
        (5, 2, true)
    );
    let ledger = sim.ledger();
    let invalid: Vec<u16> = ledger
        .rest
        .iter()
        .filter(|r| r.invalid)
        .map(|r| r.status)
        .collect();
    assert_eq!(invalid, [403, 401, 401, 401, 429]);
    let banned: Vec<&str> = ledger
        .rest
        .iter()
        .filter(|r| r.banned)
        .map(|r| r.route.as_str())
        .collect();
    assert_eq!(banned, ["GET /gateway/bot", "unknown"]);
    assert!(ledger.rest.iter().all(|r| !(r.banned && r.invalid)));
    // Also over the control API.
    let stats = raw(&sim, "GET", "/sim/stats", "").await;
    assert_eq!(stats.body["rest_banned"], true);

    poll_until(|| !sim.rest_banned()).await;
    assert_eq!(raw(&sim, "GET", "/api/v10/gateway", "").await.status, 200);
    assert!(!sim.stats().rest_banned);
    sim.shutdown().await;
}

/// twilight-http 0.18 retries every 429 at once, the ban's too (it carries
/// no scope to wait on and twilight ignores `retry-after`): a banned client
/// knocks at its global 50/s (or without its limiter, as fast as it can)
/// until the ban ends. Measured: 50 banned requests for one call.
#[tokio::test]
async fn twilight_retries_through_a_ban() {
    let sim = start(SimConfig {
        rest_limits: RestLimits {
            invalid_requests: RateLimit {
                limit: 1,
                per_ms: 60_000,
            },
            ban_ms: 200,
            ..RestLimits::default()
        },
        ..config(1.0)
    })
    .await;
    let channel = Id::new(channels(&sim)[0]);
    sim.inject_rest(RestFault {
        response: RestFaultResponse::RateLimited {
            scope: RateLimitScope::Global,
            retry_after_ms: 10,
        },
        count: 1,
        route: None,
    })
    .unwrap();
    assert_eq!(raw(&sim, "GET", "/api/v10/gateway", "").await.status, 429);
    assert!(sim.rest_banned());
    let sent = Instant::now();
    timeout_at(
        sent + WAIT,
        client(&sim, true).create_message(channel).content("x"),
    )
    .await
    .expect("request hung")
    .unwrap();
    assert!(sent.elapsed() >= Duration::from_millis(150));
    let banned = sim.stats().banned_requests;
    // Its own global limiter is all that slows it: at most 50 in its first
    // second, which outlasts the 200 ms ban.
    assert!((2..=50).contains(&banned), "{banned} banned requests");
    assert_eq!(statuses(&sim, MESSAGES).last(), Some(&200));
    sim.shutdown().await;
}

#[tokio::test]
async fn random_rest_faults_follow_the_seed() {
    async fn run(seed: u64) -> (Vec<(u16, bool)>, u64) {
        let sim = start(SimConfig {
            seed,
            random_rest_faults: RandomRestFaults {
                share: 0.3,
                ..RandomRestFaults::default()
            },
            ..config(1.0)
        })
        .await;
        for _ in 0..40 {
            raw(&sim, "GET", "/api/v10/users/@me", "").await;
        }
        let sequence = sim
            .ledger()
            .rest
            .iter()
            .map(|r| {
                if r.injected && r.status == 429 {
                    assert!(r.rate_limit_scope.is_some(), "{r:?}");
                }
                (r.status, r.injected)
            })
            .collect();
        let faults = sim.stats().rest_faults;
        sim.shutdown().await;
        (sequence, faults)
    }
    let (first, faults) = run(11).await;
    assert_eq!(first.len(), 40);
    let injected = first.iter().filter(|(_, injected)| *injected).count() as u64;
    assert_eq!(injected, faults);
    assert!((3..=25).contains(&injected), "{injected} of 40");
    // Every fault is a 429 or a 5xx; every other request was served.
    for (status, injected) in &first {
        assert_eq!(*injected, *status != 200, "{first:?}");
        assert!(*status == 200 || *status == 429 || *status >= 500);
    }
    assert_eq!(run(11).await.0, first);
    assert_ne!(run(12).await.0, first);
}
