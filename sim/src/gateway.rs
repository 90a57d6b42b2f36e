//! Gateway v10 connections: HELLO, heartbeats, IDENTIFY, RESUME, and writing
//! sequenced dispatches.
//!
//! One task per connection both reads the socket and drains the connection's
//! FIFO of [`Outbound`] work, so writes happen in the order sessions queued
//! them. A dispatch is recorded in the ledger only after its frame was
//! written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use flate2::{Compress, Compression};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use twilight_model::gateway::Intents;

use crate::clock::SEND_WINDOW;
use crate::config::{PRIVILEGED_INTENTS, SessionLimitAction};
use crate::identify::Verdict;
use crate::ledger::{
    DispatchRecord, GatewayEventKind, GatewayRecord, IdentifyOutcome, IdentifyRecord,
};
use crate::payloads;
use crate::rest::json_error;
use crate::session::{
    ConnLink, Delivery, Event, Layout, Outbound, Wants, client_close_ends_session, ends_session,
};
use crate::state::{AppState, Shared};
use crate::transport::{Transport, zlib_payload};

/// Close codes, as Discord documents them.
pub(crate) mod close_code {
    pub(crate) const UNKNOWN_OPCODE: u16 = 4001;
    pub(crate) const UNKNOWN_ERROR: u16 = 4000;
    pub(crate) const DECODE_ERROR: u16 = 4002;
    pub(crate) const NOT_AUTHENTICATED: u16 = 4003;
    pub(crate) const AUTHENTICATION_FAILED: u16 = 4004;
    pub(crate) const ALREADY_AUTHENTICATED: u16 = 4005;
    pub(crate) const RATE_LIMITED: u16 = 4008;
    pub(crate) const INVALID_SHARD: u16 = 4010;
    pub(crate) const SHARDING_REQUIRED: u16 = 4011;
    pub(crate) const INVALID_INTENTS: u16 = 4013;
    pub(crate) const DISALLOWED_INTENTS: u16 = 4014;
    /// Not Discord's: the simulator is going away.
    pub(crate) const GOING_AWAY: u16 = 1001;
}

/// How long to wait for the client's close frame after sending ours, so it
/// reads our close code before the TCP connection goes.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Discord's limit on a client payload; larger ones are closed with 4002.
const MAX_CLIENT_PAYLOAD: usize = 4096;

/// Discord's limit on client payloads per connection per (scaled) 60 s;
/// one more is closed with 4008.
const MAX_CLIENT_SENDS: u32 = 120;

/// A connection that sent no heartbeat for this many intervals is closed
/// with 4000, which Discord documents as one to reconnect and resume from:
/// the session stays resumable, as a zombied connection is not the
/// session's fault. The first heartbeat may come up to one interval after
/// HELLO (jitter), so 1.5 leaves room for a late one.
const HEARTBEAT_GRACE: f64 = 1.5;

/// The fallback route: a websocket upgrade on any path is a gateway
/// connection (twilight appends `/?v=10&encoding=json` to whatever URL it
/// was given); anything else is a JSON 404.
pub(crate) async fn upgrade(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws
            // Room above Discord's 4096 B limit, so an oversized payload is
            // read and closed with 4002 as Discord does, not a read error.
            .max_message_size(MAX_CLIENT_PAYLOAD * 16)
            .on_upgrade(move |socket| {
                serve(shared, socket, Transport::from_query(query.as_deref()))
            }),
        Err(_) => json_error(StatusCode::NOT_FOUND, "404: Not Found", 0),
    }
}

#[derive(Debug, Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
}

/// No `Debug`: it holds the token.
#[derive(Deserialize)]
struct Identify {
    token: String,
    /// Required by Discord since v8.
    intents: u64,
    /// Discord defaults a missing shard to `[0, 1]`.
    shard: Option<[u32; 2]>,
    /// Required by Discord; its content is the client's to choose.
    #[serde(rename = "properties")]
    _properties: Properties,
    /// Payload compression: every dispatch a zlib stream of its own.
    #[serde(default)]
    compress: bool,
    #[serde(default = "default_large_threshold")]
    large_threshold: u32,
}

fn default_large_threshold() -> u32 {
    payloads::DEFAULT_LARGE_THRESHOLD
}

/// IDENTIFY's `properties`: Discord documents the three as required.
#[derive(Deserialize)]
struct Properties {
    #[serde(rename = "os")]
    _os: String,
    #[serde(rename = "browser")]
    _browser: String,
    #[serde(rename = "device")]
    _device: String,
}

/// Discord's bounds on IDENTIFY's `large_threshold`.
const LARGE_THRESHOLD: std::ops::RangeInclusive<u32> = 50..=250;

/// Op 8 REQUEST_GUILD_MEMBERS.
#[derive(Debug, Deserialize)]
pub(crate) struct MemberRequest {
    /// One guild per request: Discord no longer accepts a list.
    pub(crate) guild_id: Snowflake,
    #[serde(default)]
    pub(crate) query: Option<String>,
    #[serde(default)]
    pub(crate) limit: u32,
    #[serde(default)]
    pub(crate) user_ids: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) nonce: Option<String>,
}

/// A snowflake or a list of them, as op 8 allows for `guild_id` and
/// `user_ids`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(Snowflake),
    Many(Vec<Snowflake>),
}

impl OneOrMany {
    pub(crate) fn ids(&self) -> Vec<u64> {
        match self {
            Self::One(id) => vec![id.0],
            Self::Many(ids) => ids.iter().map(|id| id.0).collect(),
        }
    }
}

/// A snowflake as a string (or, leniently, a number).
#[derive(Debug)]
pub(crate) struct Snowflake(pub(crate) u64);

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(text) => text.parse().map(Self).map_err(serde::de::Error::custom),
        }
    }
}

/// No `Debug`: it holds the token.
#[derive(Deserialize)]
struct Resume {
    token: String,
    session_id: String,
    /// Null when the client never received a dispatch.
    seq: Option<u64>,
}

/// What the connection is serving.
#[derive(Debug)]
struct Attached {
    layout: Layout,
    wants: Wants,
    session: Arc<str>,
}

/// What to do after handling one client payload.
enum Next {
    Continue,
    Close(u16),
}

/// A frame on its way out, held back while the shard has added latency.
enum Frame {
    Dispatch(Delivery),
    Text(String),
}

/// Client payloads counted in the current (scaled) 60 s window.
struct SendWindow {
    start: Instant,
    count: u32,
}

struct Connection {
    shared: Arc<Shared>,
    socket: WebSocket,
    link: ConnLink,
    attached: Option<Attached>,
    /// Frames waiting for their due time ([`Fault::Latency`](crate::Fault)).
    delayed: VecDeque<(Instant, Frame)>,
    /// [`Fault::HalfOpen`](crate::Fault): write nothing, never close.
    half_open: bool,
    /// When the client last sent a heartbeat (HELLO at first).
    last_heartbeat: Instant,
    sends: SendWindow,
    /// The code this connection was closed with by the simulator, if any.
    closed_with: Option<u16>,
    /// The client closed first, with this code (`Some(None)`: no code).
    client_closed: Option<Option<u16>>,
    transport: Transport,
    /// IDENTIFY's `compress` on a connection without transport compression: dispatches go
    /// as zlib streams of their own, made on this context.
    payload_compress: Option<Box<Compress>>,
    /// Op 1 was sent and no heartbeat came since.
    heartbeat_requested: bool,
}

async fn serve(shared: Arc<Shared>, socket: WebSocket, transport: Result<Transport, u16>) {
    let Some(_guard) = shared.conn_guard() else {
        // Shutting down: dropping the socket ends it.
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let link = ConnLink {
        id: shared.next_conn_id(),
        tx,
    };
    let now = shared.clock.now();
    let refused = transport.as_ref().err().copied();
    let mut conn = Connection {
        shared,
        socket,
        link,
        attached: None,
        delayed: VecDeque::new(),
        half_open: false,
        last_heartbeat: now,
        sends: SendWindow {
            start: now,
            count: 0,
        },
        closed_with: None,
        client_closed: None,
        transport: transport.unwrap_or(Transport::Plain),
        payload_compress: None,
        heartbeat_requested: false,
    };
    conn.record(GatewayEventKind::Connected);
    if let Some(code) = refused {
        // Discord refuses a bad `v` (4012) or an encoding or compression it
        // does not speak before it says anything in it.
        conn.close(code).await;
    } else {
        let hello = payloads::hello(conn.shared.config.heartbeat_interval_ms);
        if conn.send_text(hello).await {
            conn.run(&mut rx).await;
        }
    }
    if let Some(attached) = &conn.attached {
        let sessions = &conn.shared.sessions;
        let ends = conn.closed_with.is_some_and(ends_session)
            || conn
                .client_closed
                .flatten()
                .is_some_and(client_close_ends_session);
        if ends {
            sessions.end(attached.layout, conn.link.id);
        } else {
            sessions.detach(attached.layout, conn.link.id);
        }
    }
    conn.record(GatewayEventKind::Disconnected);
}

impl Connection {
    async fn run(&mut self, rx: &mut mpsc::UnboundedReceiver<Outbound>) {
        let mut shutdown = self.shared.shutdown_signal();
        if *shutdown.borrow_and_update() {
            self.close_without_linger(close_code::GOING_AWAY).await;
            return;
        }
        let heartbeat_timeout = Duration::from_millis(self.shared.config.heartbeat_interval_ms)
            .mul_f64(HEARTBEAT_GRACE);
        loop {
            let due = self.delayed.front().map(|(due, _)| *due);
            let heartbeat_deadline = self.last_heartbeat + heartbeat_timeout;
            // Unbiased on purpose: under heavy traffic the client's
            // heartbeats must still be read and acknowledged.
            tokio::select! {
                out = rx.recv() => {
                    let Some(out) = out else {
                        // Unreachable while `self.link` holds a sender.
                        return;
                    };
                    if !self.outbound(out).await {
                        return;
                    }
                }
                () = sleep_until(due.unwrap_or(heartbeat_deadline)), if due.is_some() => {
                    if let Some((_, frame)) = self.delayed.pop_front()
                        && !self.write(frame).await
                    {
                        return;
                    }
                }
                () = sleep_until(heartbeat_deadline), if !self.half_open => {
                    // Discord drops a connection that stopped heartbeating;
                    // the session stays for the client's RESUME.
                    self.close(close_code::UNKNOWN_ERROR).await;
                    return;
                }
                incoming = self.socket.recv() => match incoming {
                    // A silent connection reads only to notice the end.
                    Some(Ok(Message::Text(_) | Message::Binary(_))) if self.half_open => {}
                    Some(Ok(Message::Text(text))) => {
                        if let Next::Close(code) = self.handle(text.as_str()).await {
                            self.close(code).await;
                            return;
                        }
                    }
                    // The simulator speaks JSON only (no ETF).
                    Some(Ok(Message::Binary(_))) => {
                        self.close(close_code::DECODE_ERROR).await;
                        return;
                    }
                    // tungstenite answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map(|f| f.code);
                        self.client_closed = Some(code);
                        self.record(GatewayEventKind::ClosedByClient { code });
                        if !self.half_open {
                            // Reading on is what flushes tungstenite's queued
                            // close reply; without it the client sees a reset.
                            self.drain().await;
                        }
                        return;
                    }
                    Some(Err(_)) | None => return,
                },
                _ = shutdown.changed() => {
                    if !self.half_open {
                        self.close_without_linger(close_code::GOING_AWAY).await;
                    }
                    return;
                }
            }
        }
    }

    /// Acts on work from the session side; `false` ends the connection.
    async fn outbound(&mut self, out: Outbound) -> bool {
        match out {
            // A silent connection drops what it would write; the session
            // keeps it buffered for the RESUME.
            Outbound::Dispatch(_)
            | Outbound::Reconnect
            | Outbound::InvalidSession(_)
            | Outbound::HalfOpen
            | Outbound::RequestHeartbeat
                if self.half_open =>
            {
                true
            }
            Outbound::Dispatch(delivery) => self.queue(Frame::Dispatch(delivery)).await,
            Outbound::Close(_) | Outbound::Drop if self.half_open => false,
            Outbound::Close(code) => {
                // The session already detached this connection.
                self.close(code).await;
                false
            }
            Outbound::Reconnect => {
                self.attached = None;
                self.queue(Frame::Text(payloads::reconnect())).await
            }
            Outbound::InvalidSession(resumable) => {
                self.record(GatewayEventKind::InvalidSession { resumable });
                // The session let go of this connection; the client may
                // IDENTIFY or RESUME on it again.
                self.attached = None;
                self.queue(Frame::Text(payloads::invalid_session(resumable)))
                    .await
            }
            Outbound::HalfOpen => {
                self.half_open = true;
                self.delayed.clear();
                true
            }
            Outbound::RequestHeartbeat => {
                self.heartbeat_requested = true;
                self.record(GatewayEventKind::HeartbeatRequested);
                self.queue(Frame::Text(payloads::heartbeat_request())).await
            }
            // Dropping the socket ends TCP without a websocket close frame.
            Outbound::Drop => false,
        }
    }

    /// Writes `frame` now, or after the shard's added latency.
    async fn queue(&mut self, frame: Frame) -> bool {
        let latency = self
            .attached
            .as_ref()
            .map_or(Duration::ZERO, |a| self.shared.sessions.latency(a.layout));
        if latency.is_zero() && self.delayed.is_empty() {
            return self.write(frame).await;
        }
        self.delayed
            .push_back((self.shared.clock.now() + latency, frame));
        true
    }

    async fn write(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::Dispatch(delivery) => self.write_dispatch(delivery).await,
            Frame::Text(text) => self.send_text(text).await,
        }
    }

    /// Counts a client payload; `false` once it is over Discord's limit.
    fn count_send(&mut self) -> bool {
        let now = self.shared.clock.now();
        let window = self.shared.clock.scaled(SEND_WINDOW);
        if now >= self.sends.start + window {
            self.sends = SendWindow {
                start: now,
                count: 0,
            };
        }
        self.sends.count += 1;
        self.sends.count <= MAX_CLIENT_SENDS
    }

    async fn handle(&mut self, text: &str) -> Next {
        if text.len() > MAX_CLIENT_PAYLOAD {
            return Next::Close(close_code::DECODE_ERROR);
        }
        if !self.count_send() {
            return Next::Close(close_code::RATE_LIMITED);
        }
        let Ok(payload) = serde_json::from_str::<Payload>(text) else {
            return Next::Close(close_code::DECODE_ERROR);
        };
        match payload.op {
            1 => {
                self.last_heartbeat = self.shared.clock.now();
                if std::mem::take(&mut self.heartbeat_requested) {
                    self.record(GatewayEventKind::HeartbeatAnswered);
                }
                if self.queue(Frame::Text(payloads::heartbeat_ack())).await {
                    Next::Continue
                } else {
                    Next::Close(close_code::GOING_AWAY)
                }
            }
            2 => self.identify(payload.d).await,
            6 => self.resume(payload.d).await,
            8 => match &self.attached {
                Some(attached) => {
                    let Ok(request) = serde_json::from_value::<MemberRequest>(payload.d) else {
                        return Next::Close(close_code::DECODE_ERROR);
                    };
                    let (layout, wants) = (attached.layout, attached.wants);
                    let session = Arc::clone(&attached.session);
                    self.shared
                        .request_guild_members(layout, &session, wants, &request);
                    Next::Continue
                }
                None => Next::Close(close_code::NOT_AUTHENTICATED),
            },
            // Presence, voice state, request soundboard sounds: accepted
            // once authenticated, not acted on.
            3 | 4 | 31 if self.attached.is_some() => Next::Continue,
            3 | 4 | 31 => Next::Close(close_code::NOT_AUTHENTICATED),
            _ => Next::Close(close_code::UNKNOWN_OPCODE),
        }
    }

    /// Discord's validation of an IDENTIFY, in its close codes. Any shard
    /// count is accepted (also one other than `/gateway/bot`'s, and several
    /// at once: how a bot reshards) as long as the pair is valid (else 4010)
    /// and no shard of that count would hold more than
    /// `max_guilds_per_shard` guilds (else 4011).
    fn validate_identify(&self, identify: &Identify) -> Result<Layout, u16> {
        let shared = &self.shared;
        if !LARGE_THRESHOLD.contains(&identify.large_threshold) {
            return Err(close_code::DECODE_ERROR);
        }
        if !shared.token_matches(&identify.token) {
            return Err(close_code::AUTHENTICATION_FAILED);
        }
        let [shard, total] = identify.shard.unwrap_or([0, 1]);
        if total == 0 || shard >= total {
            return Err(close_code::INVALID_SHARD);
        }
        let guilds = shared.world.layout_guild_count(shard, total);
        if guilds > shared.config.max_guilds_per_shard as usize {
            return Err(close_code::SHARDING_REQUIRED);
        }
        let Some(intents) = Intents::from_bits(identify.intents) else {
            return Err(close_code::INVALID_INTENTS);
        };
        let privileged = intents & PRIVILEGED_INTENTS;
        if !shared.config.enabled_privileged().contains(privileged) {
            return Err(close_code::DISALLOWED_INTENTS);
        }
        Ok(Layout { shard, total })
    }

    async fn identify(&mut self, d: Value) -> Next {
        if self.attached.is_some() {
            return Next::Close(close_code::ALREADY_AUTHENTICATED);
        }
        let Ok(identify) = serde_json::from_value::<Identify>(d) else {
            return Next::Close(close_code::DECODE_ERROR);
        };
        let layout = match self.validate_identify(&identify) {
            Ok(layout) => layout,
            Err(code) => return Next::Close(code),
        };
        let shard = layout.shard;
        let shared = Arc::clone(&self.shared);
        let now = shared.clock.now();
        let verdict = shared.identify_limits.check(shard, now);
        let (bucket, outcome) = match verdict {
            Verdict::Accepted { bucket } => (bucket, IdentifyOutcome::Accepted),
            Verdict::RateLimited { bucket } => (bucket, IdentifyOutcome::RateLimited),
            Verdict::Exhausted { bucket } => (bucket, IdentifyOutcome::SessionLimit),
        };
        shared.ledger.record_identify(IdentifyRecord {
            shard,
            shards: layout.total,
            bucket,
            at_ms: shared.clock.ms_at(now),
            outcome,
        });
        match outcome {
            IdentifyOutcome::Accepted => {}
            IdentifyOutcome::SessionLimit
                if shared.config.session_limit_action == SessionLimitAction::ResetToken =>
            {
                shared.reset_token();
                return Next::Close(close_code::AUTHENTICATION_FAILED);
            }
            IdentifyOutcome::RateLimited | IdentifyOutcome::SessionLimit => {
                self.record(GatewayEventKind::InvalidSession { resumable: false });
                return if self
                    .queue(Frame::Text(payloads::invalid_session(false)))
                    .await
                {
                    Next::Continue
                } else {
                    Next::Close(close_code::GOING_AWAY)
                };
            }
        }
        let session: Arc<str> = shared.random_hex(16).into();
        let world = &shared.world;
        let wants = Wants {
            intents: Intents::from_bits_truncate(identify.intents),
            large_threshold: identify.large_threshold,
        };
        let ready = payloads::ready(world, shard, layout.total, &session, &shared.gateway_url());
        let mut events = vec![Event {
            name: "READY",
            guild_id: None,
            entity_id: None,
            d: ready.to_string(),
        }];
        events.extend(
            world
                .guilds_of_layout(shard, layout.total)
                .into_iter()
                .map(|guild| Event {
                    name: "GUILD_CREATE",
                    guild_id: Some(guild.id),
                    entity_id: Some(guild.id),
                    d: crate::channels::guild_create(&shared, guild, wants).to_string(),
                }),
        );
        self.attached = Some(Attached {
            layout,
            wants,
            session: Arc::clone(&session),
        });
        self.payload_compress = (identify.compress && matches!(self.transport, Transport::Plain))
            .then(|| Box::new(Compress::new(Compression::default(), true)));
        // Recorded before READY is queued, so the ledger reads in order.
        self.record(GatewayEventKind::Identified);
        shared
            .sessions
            .identify(layout, session, wants, self.link.clone(), events);
        Next::Continue
    }

    async fn resume(&mut self, d: Value) -> Next {
        if self.attached.is_some() {
            return Next::Close(close_code::ALREADY_AUTHENTICATED);
        }
        let Ok(resume) = serde_json::from_value::<Resume>(d) else {
            return Next::Close(close_code::DECODE_ERROR);
        };
        if !self.shared.token_matches(&resume.token) {
            return Next::Close(close_code::AUTHENTICATION_FAILED);
        }
        let resumed = Event {
            name: "RESUMED",
            guild_id: None,
            entity_id: None,
            d: payloads::resumed().to_string(),
        };
        let seq = resume.seq.unwrap_or(0);
        let outcome =
            self.shared
                .sessions
                .resume(&resume.session_id, seq, self.link.clone(), resumed);
        match outcome {
            Some(resumed) => {
                self.attached = Some(Attached {
                    layout: resumed.layout,
                    wants: resumed.wants,
                    session: resumed.session,
                });
                self.record(GatewayEventKind::Resumed {
                    replayed: resumed.replayed,
                });
                Next::Continue
            }
            None => {
                // The client closes and identifies anew.
                self.record(GatewayEventKind::InvalidSession { resumable: false });
                if self
                    .queue(Frame::Text(payloads::invalid_session(false)))
                    .await
                {
                    Next::Continue
                } else {
                    Next::Close(close_code::GOING_AWAY)
                }
            }
        }
    }

    async fn write_dispatch(&mut self, delivery: Delivery) -> bool {
        let sent = if let Some(context) = self.payload_compress.as_deref_mut() {
            let bytes = zlib_payload(context, &delivery.frame);
            self.shared
                .ledger
                .record_written(delivery.frame.len(), bytes.len());
            self.socket
                .send(Message::Binary(bytes.into()))
                .await
                .is_ok()
        } else {
            self.send_text(delivery.frame.to_string()).await
        };
        if !sent {
            return false;
        }
        self.shared.ledger.record_dispatch(DispatchRecord {
            shard: delivery.shard,
            shards: delivery.shards,
            session: delivery.session.to_string(),
            seq: delivery.seq,
            event: delivery.event.to_owned(),
            guild_id: delivery.guild_id,
            entity_id: delivery.entity_id,
            replayed: delivery.replayed,
        });
        true
    }

    async fn send_text(&mut self, text: String) -> bool {
        let message = match self.transport.encode(&text) {
            Some(bytes) => {
                self.shared.ledger.record_written(text.len(), bytes.len());
                Message::Binary(bytes.into())
            }
            None => {
                self.shared.ledger.record_written(text.len(), text.len());
                Message::Text(text.into())
            }
        };
        self.socket.send(message).await.is_ok()
    }

    /// Sends a close frame, then waits briefly for the client's answer.
    async fn close(&mut self, code: u16) {
        if self.send_close(code).await {
            self.drain().await;
        }
    }

    /// At shutdown: a client that is not being polled (a twilight shard
    /// nobody drives) would never answer, and shutdown must be quick.
    async fn close_without_linger(&mut self, code: u16) {
        self.send_close(code).await;
    }

    async fn send_close(&mut self, code: u16) -> bool {
        self.closed_with = Some(code);
        self.record(GatewayEventKind::ClosedByServer { code });
        let frame = CloseFrame {
            code,
            reason: close_reason(code).into(),
        };
        self.socket.send(Message::Close(Some(frame))).await.is_ok()
    }

    /// Reads until the websocket ends (or a grace period passes): completes
    /// the close handshake in either direction.
    /// Shutdown cuts the wait short.
    async fn drain(&mut self) {
        let mut shutdown = self.shared.shutdown_signal();
        let read_to_end = async { while let Some(Ok(_)) = self.socket.recv().await {} };
        tokio::select! {
            _ = tokio::time::timeout(CLOSE_HANDSHAKE, read_to_end) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    fn record(&self, kind: GatewayEventKind) {
        let (shard, shards, session) = match &self.attached {
            Some(a) => (
                Some(a.layout.shard),
                Some(a.layout.total),
                Some(a.session.to_string()),
            ),
            None => (None, None, None),
        };
        self.shared.ledger.record_gateway(GatewayRecord {
            shard,
            shards,
            session,
            compress: self.transport.compress(),
            kind,
            at_ms: self.shared.clock.now_ms(),
        });
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close_code::UNKNOWN_ERROR => "Unknown error.",
        close_code::UNKNOWN_OPCODE => "Unknown opcode.",
        close_code::DECODE_ERROR => "Decode error.",
        close_code::NOT_AUTHENTICATED => "Not authenticated.",
        close_code::AUTHENTICATION_FAILED => "Authentication failed.",
        close_code::ALREADY_AUTHENTICATED => "Already authenticated.",
        4007 => "Invalid seq.",
        close_code::RATE_LIMITED => "Rate limited.",
        4009 => "Session timed out.",
        close_code::INVALID_SHARD => "Invalid shard.",
        close_code::SHARDING_REQUIRED => "Sharding required.",
        4012 => "Invalid API version.",
        close_code::INVALID_INTENTS => "Invalid intent(s).",
        close_code::DISALLOWED_INTENTS => "Disallowed intent(s).",
        _ => "",
    }
}
