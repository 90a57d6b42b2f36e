//! Shared by the simulator's integration tests: start a simulator, read a twilight shard
//! with deadlines.
#![allow(dead_code)] // each test binary uses its own subset

pub(crate) mod raw_http;

use std::time::Duration;

use protonn_sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout_at};
use twilight_gateway::{Event, EventTypeFlags, Shard, StreamExt as _};

pub(crate) const TOKEN: &str = "sim-token";
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) async fn start(config: SimConfig) -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

/// The shard's next event before `deadline`; panics on an error, the end, or a timeout.
pub(crate) async fn next(shard: &mut Shard, deadline: Instant) -> Event {
    match timeout_at(deadline, shard.next_event(EventTypeFlags::all())).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("gateway error: {e}"),
        Ok(None) => panic!("shard stream ended"),
        Err(_) => panic!("no event before the deadline"),
    }
}

/// Skips events until `pick` returns something.
pub(crate) async fn until<T>(shard: &mut Shard, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let event = next(shard, deadline).await;
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

/// Polls `done` every 10 ms until it holds; panics after [`WAIT`].
pub(crate) async fn poll_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A world of 2 guilds on 1 shard whose bot may have the members and message content
/// intents: what the product features' routes are tested in.
pub(crate) fn privileged_world() -> SimConfig {
    SimConfig {
        guilds: 2,
        shards: 1,
        privileged_intents: vec!["MESSAGE_CONTENT".to_owned(), "GUILD_MEMBERS".to_owned()],
        ..SimConfig::default()
    }
}

/// A REST call as the bot (`path` under `/api/v10`): the status and the JSON body (`Null`
/// when empty).
pub(crate) async fn bot_call(
    sim: &SimHandle,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut headers = format!("authorization: Bot {TOKEN}\r\n");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push_str("content-type: application/json\r\n");
    }
    let reply = raw_http::send(
        sim.addr(),
        method,
        &format!("/api/v10{path}"),
        &headers,
        &body,
    )
    .await;
    let json = if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    };
    (reply.status, json)
}
