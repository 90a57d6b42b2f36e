//! REST and control API over plain HTTP/1.1, written by hand so the tests
//! see exactly the bytes a client gets: status, headers, body.

use protonn_sim::{SimConfig, SimHandle, Simulator};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::raw_http::{self, Reply};
use common::start;

/// Discord's JSON conventions: exact content type, no content encoding.
fn assert_discord_json(reply: &Reply) {
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("content-encoding"), None);
}

fn small() -> SimConfig {
    SimConfig {
        guilds: 6,
        shards: 2,
        ..SimConfig::default()
    }
}

async fn request(
    sim: &SimHandle,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut headers = String::new();
    if let Some(auth) = auth {
        headers.push_str(&format!("authorization: {auth}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        headers.push_str("content-type: application/json\r\n");
    }
    raw_http::send(sim.addr(), method, path, &headers, body).await
}

const AUTH: Option<&str> = Some("Bot sim-token");

#[tokio::test]
async fn rest_auth_and_gateway_bot_shape() {
    let sim = start(small()).await;

    for auth in [None, Some("Bot wrong")] {
        let reply = request(&sim, "GET", "/api/v10/gateway/bot", auth, None).await;
        assert_eq!(reply.status, 401);
        assert_discord_json(&reply);
        assert_eq!(
            reply.json(),
            json!({"message": "401: Unauthorized", "code": 0})
        );
    }

    let reply = request(&sim, "GET", "/api/v10/gateway/bot", AUTH, None).await;
    assert_eq!(reply.status, 200);
    assert_discord_json(&reply);
    let body = reply.json();
    assert_eq!(body["url"], json!(sim.gateway_url()));
    assert_eq!(body["shards"], json!(2));
    let limit = &body["session_start_limit"];
    assert_eq!(limit["total"], json!(1000));
    assert_eq!(limit["remaining"], json!(1000));
    assert_eq!(limit["max_concurrency"], json!(1));
    let reset_after = limit["reset_after"].as_u64().unwrap();
    assert!(reset_after > 0 && reset_after <= 86_400_000);

    // Operator resets the token: the old one stops working at once.
    sim.set_token("fresh");
    let old = request(&sim, "GET", "/api/v10/users/@me", AUTH, None).await;
    assert_eq!(old.status, 401);
    let new = request(&sim, "GET", "/api/v10/users/@me", Some("Bot fresh"), None).await;
    assert_eq!(new.status, 200);
    assert_eq!(new.json()["bot"], json!(true));

    let stats = sim.stats();
    assert_eq!(stats.rest_requests, 5);
    let statuses: Vec<u16> = sim.ledger().rest.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 200, 401, 200]);
    sim.shutdown().await;
}

#[tokio::test]
async fn create_message_validation() {
    let sim = start(small()).await;
    let channel = sim.guilds()[0].channel_ids[0];
    let path = format!("/api/v10/channels/{channel}/messages");

    let ok = request(&sim, "POST", &path, AUTH, Some(r#"{"content":"hi"}"#)).await;
    assert_eq!(ok.status, 200);
    assert_discord_json(&ok);
    assert_eq!(ok.json()["content"], json!("hi"));
    assert_eq!(ok.json()["channel_id"], json!(channel.to_string()));

    let too_long = json!({"content": "x".repeat(2001)}).to_string();
    let cases = [
        (Some(too_long.as_str()), 400, 50035),
        (Some("{not json"), 400, 50035),
        (Some(r#"{"content":""}"#), 400, 50006),
        (None, 400, 50035),
    ];
    for (body, status, code) in cases {
        let reply = request(&sim, "POST", &path, AUTH, body).await;
        assert_eq!(reply.status, status, "{body:?}");
        assert_discord_json(&reply);
        assert_eq!(reply.json()["code"], json!(code), "{body:?}");
    }

    let unknown = request(
        &sim,
        "POST",
        "/api/v10/channels/123/messages",
        AUTH,
        Some(r#"{"content":"hi"}"#),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({"message": "Unknown Channel", "code": 10003})
    );

    let route = request(&sim, "GET", "/api/v10/nope", AUTH, None).await;
    assert_eq!(route.status, 404);
    assert_discord_json(&route);

    let callback = request(
        &sim,
        "POST",
        "/api/v10/interactions/1/abc/callback",
        None,
        Some(r#"{"type":4,"data":{"content":"x"}}"#),
    )
    .await;
    assert_eq!(callback.status, 404);
    assert_eq!(callback.json()["code"], json!(10062));

    let ledger = sim.ledger();
    assert_eq!(ledger.rest[0].body, Some(json!({"content": "hi"})));
    assert_eq!(ledger.rest[0].path, format!("/channels/{channel}/messages"));
    assert_eq!(
        ledger.rest.last().unwrap().route,
        "POST /interactions/{interaction_id}/{interaction_token}/callback"
    );
    assert_eq!(sim.stats().replies, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api() {
    let sim = start(small()).await;

    let stats = request(&sim, "GET", "/sim/stats", None, None).await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json()["ready_shards"], json!(0));

    let guilds = request(&sim, "GET", "/sim/guilds?limit=3", None, None).await;
    let list = guilds.json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    let guild = &sim.guilds()[0];
    assert_eq!(list[0]["id"], json!(guild.id));

    let bad_query = request(&sim, "GET", "/sim/guilds?limit=lots", None, None).await;
    assert_eq!(bad_query.status, 400);
    assert!(bad_query.json()["message"].is_string());

    let malformed = request(&sim, "POST", "/sim/messages", None, Some("{")).await;
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.json()["message"]
            .as_str()
            .unwrap()
            .contains("malformed")
    );

    let unknown = json!({"guild_id": 1, "channel_id": 2, "author_id": 3, "content": "x"});
    let reply = request(
        &sim,
        "POST",
        "/sim/messages",
        None,
        Some(&unknown.to_string()),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown guild")
    );

    // Ids may come as strings, Discord style.
    let no_session = json!({
        "guild_id": guild.id.to_string(),
        "channel_id": guild.channel_ids[0],
        "author_id": guild.member_ids[0],
        "content": "x",
    });
    let reply = request(
        &sim,
        "POST",
        "/sim/messages",
        None,
        Some(&no_session.to_string()),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("no session")
    );

    let close = request(
        &sim,
        "POST",
        "/sim/shards/9/close",
        None,
        Some(r#"{"code":4000}"#),
    )
    .await;
    assert_eq!(close.status, 404);
    let close = request(
        &sim,
        "POST",
        "/sim/shards/0/close",
        None,
        Some(r#"{"code":4000}"#),
    )
    .await;
    assert_eq!(close.status, 409);

    // Faults: the shard must exist, the body must be a fault, and all but
    // latency need a live connection.
    let fault = |shard: u32, body: &'static str| {
        let path = format!("/sim/shards/{shard}/faults");
        let sim = &sim;
        async move { request(sim, "POST", &path, None, Some(body)).await }
    };
    assert_eq!(fault(9, r#"{"kind":"reconnect"}"#).await.status, 404);
    let bad = fault(0, r#"{"kind":"explode"}"#).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap()
            .contains("malformed")
    );
    assert_eq!(fault(0, r#"{"kind":"close","code":99}"#).await.status, 400);
    assert_eq!(fault(0, r#"{"kind":"half_open"}"#).await.status, 409);
    let latency = fault(1, r#"{"kind":"latency","ms":25}"#).await;
    assert_eq!(latency.status, 200);
    assert_eq!(
        latency.json(),
        json!({"injected": {"kind": "latency", "ms": 25}})
    );
    let ledger = request(&sim, "GET", "/sim/ledger", None, None).await.json();
    let last = ledger["gateway"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["shard"], json!(1));
    assert_eq!(
        last["kind"],
        json!({"kind": "fault_injected", "fault": {"kind": "latency", "ms": 25}})
    );
    assert!(ledger["identifies"].as_array().unwrap().is_empty());

    // Paging: only REST records after the first one.
    request(&sim, "GET", "/api/v10/users/@me", AUTH, None).await;
    request(&sim, "GET", "/api/v10/applications/@me", AUTH, None).await;
    let page = request(&sim, "GET", "/sim/ledger?after_rest=1", None, None).await;
    let rest = page.json()["rest"].as_array().unwrap().clone();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["route"], json!("GET /applications/@me"));
    assert_eq!(page.json()["truncated"], json!(false));

    let interaction = json!({
        "guild_id": guild.id,
        "channel_id": guild.channel_ids[0],
        "user_id": guild.owner_id,
        "command": "ping",
        "options": [["key", "value"]],
    });
    let reply = request(
        &sim,
        "POST",
        "/sim/interactions",
        None,
        Some(&interaction.to_string()),
    )
    .await;
    assert_eq!(reply.status, 404, "no session yet");
    let reply = request(
        &sim,
        "POST",
        "/sim/interactions",
        None,
        Some(r#"{"guild_id":1}"#),
    )
    .await;
    assert_eq!(reply.status, 400);

    let reply = request(
        &sim,
        "POST",
        "/sim/token",
        None,
        Some(r#"{"token":"rotated"}"#),
    )
    .await;
    assert_eq!(reply.status, 200);
    let old = request(&sim, "GET", "/api/v10/users/@me", AUTH, None).await;
    assert_eq!(old.status, 401);

    // Not an upgrade, not a known route: JSON 404.
    let other = request(&sim, "GET", "/anything", None, None).await;
    assert_eq!(other.status, 404);
    assert_discord_json(&other);

    let addr = sim.addr();
    sim.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[tokio::test]
async fn invalid_config_is_rejected_at_start() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = SimConfig {
        command_share: 2.0,
        ..SimConfig::default()
    };
    let error = Simulator::start(config, listener).await.unwrap_err();
    assert!(error.to_string().contains("command_share"), "{error}");
}
