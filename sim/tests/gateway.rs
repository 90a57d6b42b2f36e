//! Sessions, closes, heartbeats, IDENTIFY's fields and the transport, as
//! Discord documents them: with real twilight 0.18 shards where twilight
//! exercises the behaviour, and with raw websocket clients for what
//! twilight never sends (invalid pairs, a wrong `v`, compression, op 8 with
//! a list, a RESUME after a 1000 close).

mod common;

use common::*;

use std::io::Read as _;

use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt as _, StreamExt as _};
use protonn_sim::{Fault, GatewayEventKind, SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use twilight_gateway::StreamExt as _;
use twilight_gateway::{ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const GUILDS: u64 = 1;
const GUILD_MEMBERS: u64 = 1 << 1;

fn base() -> SimConfig {
    SimConfig {
        guilds: 12,
        shards: 1,
        max_concurrency: 16,
        time_scale: 0.01,
        ..SimConfig::default()
    }
}

async fn connect(sim: &SimHandle, query: &str) -> Ws {
    let url = format!("{}/?{query}", sim.gateway_url());
    connect_async(url).await.expect("websocket upgrade").0
}

/// The next frame that is not a ping or pong.
async fn frame(ws: &mut Ws) -> Message {
    let deadline = Instant::now() + WAIT;
    loop {
        match timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(message))) => return message,
            Ok(other) => panic!("connection ended: {other:?}"),
            Err(_) => panic!("no frame before the deadline"),
        }
    }
}

/// The next text frame as JSON.
async fn json(ws: &mut Ws) -> Value {
    match frame(ws).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads until the server's close frame: its code.
async fn closed_with(ws: &mut Ws) -> u16 {
    loop {
        if let Message::Close(frame) = frame(ws).await {
            return frame.map(|f| u16::from(f.code)).expect("a close code");
        }
    }
}

/// Reads dispatches until one named `t`.
async fn dispatch(ws: &mut Ws, t: &str) -> Value {
    loop {
        let payload = json(ws).await;
        if payload["t"] == t {
            return payload;
        }
    }
}

fn identify(shard: [u32; 2], intents: u64) -> Value {
    json!({"op": 2, "d": {
        "token": format!("Bot {TOKEN}"),
        "intents": intents,
        "shard": shard,
        "properties": {"os": "linux", "browser": "raw", "device": "raw"},
    }})
}

async fn send(ws: &mut Ws, payload: &Value) {
    ws.send(Message::Text(payload.to_string().into()))
        .await
        .unwrap();
}

/// Connects, reads HELLO, identifies as `shard` and reads READY: the
/// session id. An IDENTIFY refused by the bucket's window (op 9) is tried
/// again on a new connection, as a client would.
async fn ready(sim: &SimHandle, shard: [u32; 2], intents: u64) -> (Ws, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no READY in time");
        let mut ws = connect(sim, "v=10&encoding=json").await;
        assert_eq!(json(&mut ws).await["op"], 10);
        send(&mut ws, &identify(shard, intents)).await;
        let payload = json(&mut ws).await;
        if payload["op"] == 9 {
            continue;
        }
        assert_eq!(payload["t"], "READY", "{payload}");
        let session = payload["d"]["session_id"].as_str().unwrap().to_owned();
        return (ws, session);
    }
}

async fn close(ws: &mut Ws, code: u16) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    };
    ws.close(Some(frame)).await.unwrap();
    // Read the close handshake to its end.
    let deadline = Instant::now() + WAIT;
    while let Ok(Some(Ok(_))) = timeout_at(deadline, ws.next()).await {}
}

/// A RESUME on a new connection: `true` for RESUMED, `false` for op 9.
async fn resumes(sim: &SimHandle, session: &str, seq: u64) -> bool {
    let mut ws = connect(sim, "v=10&encoding=json").await;
    assert_eq!(json(&mut ws).await["op"], 10);
    let resume = json!({"op": 6, "d": {
        "token": TOKEN, "session_id": session, "seq": seq,
    }});
    send(&mut ws, &resume).await;
    loop {
        let payload = json(&mut ws).await;
        match (payload["op"].as_u64(), payload["t"].as_str()) {
            (Some(9), _) => return false,
            (Some(0), Some("RESUMED")) => return true,
            _ => {}
        }
    }
}

fn twilight(sim: &SimHandle, id: u32, total: u32) -> Shard {
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    Shard::with_config(ShardId::new(id, total), config)
}

async fn twilight_ready(shard: &mut Shard) -> usize {
    until(shard, |e| match e {
        Event::Ready(ready) => Some(ready.guilds.len()),
        _ => None,
    })
    .await
}

async fn message_ids(shard: &mut Shard, count: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let id = until(shard, |e| match e {
            Event::MessageCreate(m) => Some(m.id.get()),
            _ => None,
        })
        .await;
        ids.push(id);
    }
    ids
}

/// Discord lets a second IDENTIFY for the same `[shard, num_shards]` run
/// next to the first: both sessions get the shard's events.
#[tokio::test]
async fn a_second_identify_for_a_shard_runs_beside_the_first() {
    let sim = start(base()).await;
    let mut first = twilight(&sim, 0, 1);
    twilight_ready(&mut first).await;
    let mut second = twilight(&sim, 0, 1);
    twilight_ready(&mut second).await;
    let guild = &sim.guilds()[0];
    let id = sim
        .send_message(guild.id, guild.channel_ids[0], guild.owner_id, "both")
        .unwrap();
    assert_eq!(message_ids(&mut second, 1).await, [id]);
    assert_eq!(message_ids(&mut first, 1).await, [id]);
    assert!(
        !sim.ledger()
            .gateway
            .iter()
            .any(|g| matches!(g.kind, GatewayEventKind::ClosedByServer { .. }))
    );
    sim.shutdown().await;
}

/// A bot reshards with no downtime by running sessions of two shard counts
/// at once: each gets the guilds of its own `(guild_id >> 22) % num_shards`.
#[tokio::test]
async fn sessions_of_two_shard_counts_run_at_once() {
    let sim = start(base()).await;
    let mut old = twilight(&sim, 0, 1);
    let all = twilight_ready(&mut old).await;
    let mut new = twilight(&sim, 1, 2);
    let half = twilight_ready(&mut new).await;
    let guilds = sim.guilds();
    let odd: Vec<_> = guilds.iter().filter(|g| (g.id >> 22) % 2 == 1).collect();
    let even = guilds.iter().find(|g| (g.id >> 22) % 2 == 0).unwrap();
    assert_eq!((all, half), (guilds.len(), odd.len()));
    let to_even = sim
        .send_message(even.id, even.channel_ids[0], even.owner_id, "old only")
        .unwrap();
    let to_odd = sim
        .send_message(odd[0].id, odd[0].channel_ids[0], odd[0].owner_id, "both")
        .unwrap();
    assert_eq!(message_ids(&mut old, 2).await, [to_even, to_odd]);
    assert_eq!(message_ids(&mut new, 1).await, [to_odd]);
    // The ledger says which session (shard of which count) delivered what.
    let ledger = sim.ledger();
    let delivered_by = |id: u64| {
        let mut by: Vec<(u32, u32)> = ledger
            .dispatches
            .iter()
            .filter(|d| d.event == "MESSAGE_CREATE" && d.entity_id == Some(id))
            .map(|d| (d.shard, d.shards))
            .collect();
        by.sort_unstable();
        by
    };
    assert_eq!(delivered_by(to_even), [(0, 1)]);
    assert_eq!(delivered_by(to_odd), [(0, 1), (1, 2)]);
    let identified: Vec<(u32, u32)> = ledger
        .identifies
        .iter()
        .map(|i| (i.shard, i.shards))
        .collect();
    assert_eq!(identified, [(0, 1), (1, 2)]);
    assert!(ledger.gateway.iter().any(
        |g| g.kind == GatewayEventKind::Identified && (g.shard, g.shards) == (Some(1), Some(2))
    ));
    sim.shutdown().await;
}

/// 4010 is for an invalid pair only; 4011 for a shard that would hold more
/// than `max_guilds_per_shard` guilds, whatever count `/gateway/bot` gave.
#[tokio::test]
async fn invalid_pairs_get_4010_and_crowded_shards_4011() {
    let sim = start(SimConfig {
        guilds: 30,
        shards: 2,
        max_guilds_per_shard: 20,
        ..base()
    })
    .await;
    for (pair, code) in [([1, 1], 4010), ([0, 0], 4010), ([0, 1], 4011)] {
        let mut ws = connect(&sim, "v=10&encoding=json").await;
        json(&mut ws).await;
        send(&mut ws, &identify(pair, GUILDS)).await;
        assert_eq!(closed_with(&mut ws).await, code, "{pair:?}");
    }
    // Two or eight shards keep each under 20 guilds: accepted.
    ready(&sim, [1, 2], GUILDS).await;
    ready(&sim, [7, 8], GUILDS).await;
    assert_eq!(sim.stats().identifies, 2);
    sim.shutdown().await;
}

/// Closing with 1000 or 1001 invalidates the session (a RESUME gets op 9);
/// any other client close, or none at all, leaves it resumable.
#[tokio::test]
async fn client_closes_1000_and_1001_end_the_session_others_do_not() {
    let sim = start(base()).await;
    for (code, resumable) in [(4000, true), (3000, true), (1000, false), (1001, false)] {
        let (mut ws, session) = ready(&sim, [0, 1], GUILDS).await;
        let before = disconnects(&sim);
        close(&mut ws, code).await;
        // The server has let go of the connection (and judged the close).
        poll_until(|| disconnects(&sim) > before).await;
        assert_eq!(resumes(&sim, &session, 1).await, resumable, "{code}");
    }
    let closes: Vec<_> = sim
        .ledger()
        .gateway
        .iter()
        .filter_map(|g| match g.kind {
            GatewayEventKind::ClosedByClient { code } => code,
            _ => None,
        })
        .collect();
    assert_eq!(closes, [4000, 3000, 1000, 1001]);
    sim.shutdown().await;
}

/// Connections the server has let go of.
fn disconnects(sim: &SimHandle) -> usize {
    let ledger = sim.ledger();
    let gone = ledger.gateway.iter();
    gone.filter(|g| g.kind == GatewayEventKind::Disconnected)
        .count()
}

/// The handoff of `shared/DISCORD.md` with real twilight: closing with
/// `CloseFrame::RESUME` (4000) lets the next owner resume; closing with
/// `CloseFrame::NORMAL` (1000) ends the session, so the next owner's RESUME
/// gets op 9 `false` and twilight identifies anew.
#[tokio::test]
async fn a_twilight_handoff_resumes_after_4000_and_reidentifies_after_1000() {
    let sim = start(base()).await;
    for (frame, resumes) in [
        (twilight_gateway::CloseFrame::RESUME, true),
        (twilight_gateway::CloseFrame::NORMAL, false),
    ] {
        let mut old = twilight(&sim, 0, 1);
        twilight_ready(&mut old).await;
        let session = old.session().cloned().unwrap();
        let resume_url = old.resume_url().unwrap().to_owned();
        let before = disconnects(&sim);
        let code = frame.code;
        old.close(frame);
        // Stop polling at the close, or the old shard reconnects by itself.
        until(&mut old, |e| {
            matches!(e, Event::GatewayClose(_)).then_some(())
        })
        .await;
        drop(old);
        // The server has let go of the connection (and judged the close).
        poll_until(|| disconnects(&sim) > before).await;
        let before = sim.stats();
        let config = ConfigBuilder::new(TOKEN.to_owned(), Intents::GUILDS)
            .proxy_url(sim.gateway_url())
            .session(session)
            .resume_url(resume_url)
            .build();
        let mut new = Shard::with_config(ShardId::new(0, 1), config);
        let resumed = until(&mut new, |e| match e {
            Event::Resumed => Some(true),
            Event::Ready(_) => Some(false),
            _ => None,
        })
        .await;
        assert_eq!(resumed, resumes, "{code}");
        let after = sim.stats();
        assert_eq!(after.identifies - before.identifies, u64::from(!resumes));
    }
    sim.shutdown().await;
}

/// A RESUME of a session whose connection is still open moves the session
/// to the new connection; the old one is closed.
#[tokio::test]
async fn a_resume_takes_the_session_from_its_open_connection() {
    let sim = start(base()).await;
    let (mut old, session) = ready(&sim, [0, 1], GUILDS).await;
    assert!(resumes(&sim, &session, 1).await);
    assert_eq!(closed_with(&mut old).await, 4009);
    sim.shutdown().await;
}

/// The server may send op 1 at any time; twilight answers with a heartbeat.
#[tokio::test]
async fn twilight_answers_the_servers_heartbeat_request() {
    let sim = start(base()).await;
    let mut shard = twilight(&sim, 0, 1);
    twilight_ready(&mut shard).await;
    assert!(sim.inject(0, Fault::RequestHeartbeat));
    let answered = |sim: &SimHandle| {
        sim.ledger()
            .gateway
            .iter()
            .any(|g| g.kind == GatewayEventKind::HeartbeatAnswered)
    };
    let deadline = Instant::now() + WAIT;
    while !answered(&sim) {
        // Polling the shard is what reads op 1 and writes the answer.
        let _ = timeout_at(
            Instant::now() + std::time::Duration::from_millis(20),
            shard.next_event(EventTypeFlags::all()),
        )
        .await;
        assert!(Instant::now() < deadline, "op 1 not answered");
    }
    let kinds: Vec<_> = sim.ledger().gateway.into_iter().map(|g| g.kind).collect();
    let asked = kinds
        .iter()
        .position(|k| *k == GatewayEventKind::HeartbeatRequested)
        .unwrap();
    let answered = kinds
        .iter()
        .position(|k| *k == GatewayEventKind::HeartbeatAnswered)
        .unwrap();
    assert!(asked < answered);
    sim.shutdown().await;
}

/// The raw op 1 frame, as Discord sends it.
#[tokio::test]
async fn the_heartbeat_request_is_op_1() {
    let sim = start(base()).await;
    let (mut ws, _) = ready(&sim, [0, 1], GUILDS).await;
    assert!(sim.inject(0, Fault::RequestHeartbeat));
    loop {
        let payload = json(&mut ws).await;
        if payload["op"] == 1 {
            assert_eq!(payload["d"], Value::Null);
            break;
        }
    }
    sim.shutdown().await;
}

/// IDENTIFY without `properties`, or with a `large_threshold` outside
/// 50..=250, is a payload Discord cannot accept: 4002.
#[tokio::test]
async fn identify_needs_properties_and_a_large_threshold_in_range() {
    let sim = start(base()).await;
    let mut without = identify([0, 1], GUILDS);
    without["d"].as_object_mut().unwrap().remove("properties");
    let mut too_large = identify([0, 1], GUILDS);
    too_large["d"]["large_threshold"] = json!(251);
    let mut partial = identify([0, 1], GUILDS);
    partial["d"]["properties"] = json!({"os": "linux"});
    for payload in [without, too_large, partial] {
        let mut ws = connect(&sim, "v=10&encoding=json").await;
        json(&mut ws).await;
        send(&mut ws, &payload).await;
        assert_eq!(closed_with(&mut ws).await, 4002, "{payload}");
    }
    assert_eq!(sim.stats().identifies, 0);
    sim.shutdown().await;
}

/// `v` other than 10 gets 4012; `encoding=etf` is refused as an encoding
/// the server cannot speak (4002), before HELLO.
#[tokio::test]
async fn the_query_is_checked_before_hello() {
    let sim = start(base()).await;
    for (query, code) in [
        ("v=9&encoding=json", 4012),
        ("v=10&encoding=etf", 4002),
        ("v=10&encoding=json&compress=gzip", 4002),
    ] {
        let mut ws = connect(&sim, query).await;
        assert!(
            matches!(frame(&mut ws).await, Message::Close(Some(f)) if u16::from(f.code) == code),
            "{query}"
        );
    }
    let mut ws = connect(&sim, "v=10&encoding=json").await;
    assert_eq!(json(&mut ws).await["op"], 10);
    sim.shutdown().await;
}

/// `compress=zlib-stream`: every frame is binary, and only one inflate
/// context fed every frame in order reads them, each ending with the sync
/// flush suffix.
#[tokio::test]
async fn zlib_stream_compresses_the_whole_stream() {
    let sim = start(base()).await;
    let mut ws = connect(&sim, "v=10&encoding=json&compress=zlib-stream").await;
    let mut inflate = Decompress::new(true);
    assert_eq!(inflated(&mut ws, &mut inflate).await["op"], 10);
    send(&mut ws, &identify([0, 1], GUILDS)).await;
    assert_eq!(inflated(&mut ws, &mut inflate).await["t"], "READY");
    for _ in 0..12 {
        assert_eq!(inflated(&mut ws, &mut inflate).await["t"], "GUILD_CREATE");
    }
    let connected = &sim.ledger().gateway[0];
    assert_eq!(connected.kind, GatewayEventKind::Connected);
    assert_eq!(connected.compress, Some("zlib-stream"));
    sim.shutdown().await;
}

/// The next binary frame of a zlib-stream connection, inflated on the
/// connection's one context.
async fn inflated(ws: &mut Ws, inflate: &mut Decompress) -> Value {
    let Message::Binary(bytes) = frame(ws).await else {
        panic!("expected a binary frame");
    };
    assert!(bytes.ends_with(&[0, 0, 0xff, 0xff]), "sync flush suffix");
    let mut out = Vec::with_capacity(bytes.len() * 50 + 1024);
    inflate
        .decompress_vec(&bytes, &mut out, FlushDecompress::Sync)
        .unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// `compress=zstd-stream`: every frame is binary, a flushed piece of one
/// zstd stream that only one decoder fed every frame in order reads.
#[tokio::test]
async fn zstd_stream_compresses_the_whole_stream() {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    let sim = start(base()).await;
    let mut ws = connect(&sim, "v=10&encoding=json&compress=zstd-stream").await;
    let mut decoder = Decoder::new().unwrap();
    // Bytes received, and bytes of JSON they decoded to.
    let (mut wire, mut text) = (0, 0);
    let mut read = async |ws: &mut Ws| -> Value {
        let Message::Binary(bytes) = frame(ws).await else {
            panic!("expected a binary frame");
        };
        let mut out = vec![0; 1 << 20];
        let mut input = InBuffer::around(&bytes);
        let mut output = OutBuffer::around(&mut out[..]);
        while input.pos() < bytes.len() {
            decoder.run(&mut input, &mut output).unwrap();
        }
        let written = output.pos();
        (wire, text) = (wire + bytes.len() as u64, text + written as u64);
        serde_json::from_slice(&out[..written]).unwrap()
    };
    assert_eq!(read(&mut ws).await["op"], 10);
    send(&mut ws, &identify([0, 1], GUILDS)).await;
    assert_eq!(read(&mut ws).await["t"], "READY");
    for _ in 0..12 {
        assert_eq!(read(&mut ws).await["t"], "GUILD_CREATE");
    }
    assert_eq!(sim.ledger().gateway[0].compress, Some("zstd-stream"));
    // The simulator counts at least what was read (it may have written more since), and the
    // text before compression: several times the bytes on the wire.
    let stats = sim.stats();
    assert!(stats.gateway_bytes >= wire && stats.gateway_text_bytes >= text);
    assert!(
        stats.gateway_bytes * 2 < stats.gateway_text_bytes,
        "{} B written for {} B of JSON",
        stats.gateway_bytes,
        stats.gateway_text_bytes
    );
    sim.shutdown().await;
}

/// IDENTIFY's `compress: true`: dispatches arrive as binary frames, each a
/// whole zlib stream of its own.
#[tokio::test]
async fn payload_compression_sends_each_dispatch_as_its_own_zlib_stream() {
    let sim = start(base()).await;
    let mut ws = connect(&sim, "v=10&encoding=json").await;
    assert_eq!(json(&mut ws).await["op"], 10);
    let mut payload = identify([0, 1], GUILDS);
    payload["d"]["compress"] = json!(true);
    send(&mut ws, &payload).await;
    for t in ["READY", "GUILD_CREATE"] {
        let Message::Binary(bytes) = frame(&mut ws).await else {
            panic!("expected a binary frame");
        };
        let mut text = String::new();
        flate2::read::ZlibDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["t"], t);
    }
    sim.shutdown().await;
}

/// Op 8 names one guild (a list is a decode error, 4002) and is limited to
/// one request per guild per 30 s: the next gets a RATE_LIMITED dispatch
/// with `opcode` 8, `retry_after` and `meta`.
#[tokio::test]
async fn op_8_takes_one_guild_and_is_rate_limited_per_guild() {
    let sim = start(SimConfig {
        privileged_intents: vec!["GUILD_MEMBERS".to_owned()],
        time_scale: 1.0,
        ..base()
    })
    .await;
    let guild = sim.guilds()[0].id.to_string();
    let (mut ws, _) = ready(&sim, [0, 1], GUILDS | GUILD_MEMBERS).await;
    let request = |nonce: &str| json!({"op": 8, "d": {"guild_id": guild, "query": "", "limit": 0, "nonce": nonce}});
    send(&mut ws, &request("first")).await;
    let chunk = dispatch(&mut ws, "GUILD_MEMBERS_CHUNK").await;
    assert_eq!(chunk["d"]["nonce"], "first");
    send(&mut ws, &request("second")).await;
    let limited = dispatch(&mut ws, "RATE_LIMITED").await;
    assert_eq!(limited["d"]["opcode"], 8);
    assert_eq!(limited["d"]["meta"]["guild_id"], json!(guild));
    assert_eq!(limited["d"]["meta"]["nonce"], "second");
    let retry = limited["d"]["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 30.0, "{retry}");

    let mut list = request("list");
    list["d"]["guild_id"] = json!([guild]);
    send(&mut ws, &list).await;
    assert_eq!(closed_with(&mut ws).await, 4002);
    sim.shutdown().await;
}
