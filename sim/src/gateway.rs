//! Gateway v10 connections: HELLO, heartbeats, IDENTIFY, RESUME, and writing
//! sequenced dispatches.
//!
//! One task per connection both reads the socket and drains the connection's
//! FIFO of [`Outbound`] work, so writes happen in the order sessions queued
//! them. A dispatch is recorded in the ledger only after its frame was
//! written.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::ledger::{DispatchRecord, GatewayEventKind, GatewayRecord};
use crate::payloads;
use crate::rest::json_error;
use crate::session::{ConnLink, Delivery, Event, Outbound};
use crate::state::{AppState, Shared};

/// Close codes, as Discord documents them.
pub(crate) mod close_code {
    pub(crate) const UNKNOWN_OPCODE: u16 = 4001;
    pub(crate) const DECODE_ERROR: u16 = 4002;
    pub(crate) const NOT_AUTHENTICATED: u16 = 4003;
    pub(crate) const AUTHENTICATION_FAILED: u16 = 4004;
    pub(crate) const ALREADY_AUTHENTICATED: u16 = 4005;
    pub(crate) const INVALID_SHARD: u16 = 4010;
    /// Not Discord's: the simulator is going away.
    pub(crate) const GOING_AWAY: u16 = 1001;
}

/// How long to wait for the client's close frame after sending ours, so it
/// reads our close code before the TCP connection goes.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Discord's limit on a client payload.
const MAX_CLIENT_PAYLOAD: usize = 4096;

/// The fallback route: a websocket upgrade on any path is a gateway
/// connection (twilight appends `/?v=10&encoding=json` to whatever URL it
/// was given); anything else is a JSON 404.
pub(crate) async fn upgrade(
    State(shared): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws
            // Room above Discord's 4096 B limit: the limit itself is a later
            // fidelity feature (close 4002), not a reason to fail the read.
            .max_message_size(MAX_CLIENT_PAYLOAD * 16)
            .on_upgrade(move |socket| serve(shared, socket)),
        Err(_) => json_error(StatusCode::NOT_FOUND, "404: Not Found", 0),
    }
}

#[derive(Debug, Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
}

#[derive(Debug, Deserialize)]
struct Identify {
    token: String,
    /// Required by Discord since v8.
    intents: u64,
    /// Discord defaults a missing shard to `[0, 1]`.
    shard: Option<[u32; 2]>,
}

#[derive(Debug, Deserialize)]
struct Resume {
    token: String,
    session_id: String,
    /// Null when the client never received a dispatch.
    seq: Option<u64>,
}

/// What the connection is serving.
#[derive(Debug)]
struct Attached {
    shard: u32,
    session: Arc<str>,
}

/// What to do after handling one client payload.
enum Next {
    Continue,
    Close(u16),
}

struct Connection {
    shared: Arc<Shared>,
    socket: WebSocket,
    link: ConnLink,
    attached: Option<Attached>,
}

async fn serve(shared: Arc<Shared>, socket: WebSocket) {
    let Some(_guard) = shared.conn_guard() else {
        // Shutting down: dropping the socket ends it.
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let link = ConnLink {
        id: shared.next_conn_id(),
        tx,
    };
    let mut conn = Connection {
        shared,
        socket,
        link,
        attached: None,
    };
    conn.record(GatewayEventKind::Connected);
    let hello = payloads::hello(conn.shared.config.heartbeat_interval_ms);
    if conn.send_text(hello).await {
        conn.run(&mut rx).await;
    }
    if let Some(attached) = &conn.attached {
        conn.shared.sessions.detach(attached.shard, conn.link.id);
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
        loop {
            // Unbiased on purpose: under heavy traffic the client's
            // heartbeats must still be read and acknowledged.
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Outbound::Dispatch(delivery)) => {
                        if !self.write_dispatch(delivery).await {
                            return;
                        }
                    }
                    Some(Outbound::Close(code)) => {
                        // The session already detached this connection.
                        self.close(code).await;
                        return;
                    }
                    // Unreachable while `self.link` holds a sender.
                    None => return,
                },
                incoming = self.socket.recv() => match incoming {
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
                    Some(Ok(Message::Close(_))) => {
                        // Reading on is what flushes tungstenite's queued
                        // close reply; without it the client sees a reset.
                        self.drain().await;
                        return;
                    }
                    Some(Err(_)) | None => return,
                },
                _ = shutdown.changed() => {
                    self.close_without_linger(close_code::GOING_AWAY).await;
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, text: &str) -> Next {
        let Ok(payload) = serde_json::from_str::<Payload>(text) else {
            return Next::Close(close_code::DECODE_ERROR);
        };
        match payload.op {
            1 => {
                if self.send_text(payloads::heartbeat_ack()).await {
                    Next::Continue
                } else {
                    Next::Close(close_code::GOING_AWAY)
                }
            }
            2 => self.identify(payload.d),
            6 => self.resume(payload.d).await,
            // Presence, voice state, request guild members, request
            // soundboard sounds: accepted once authenticated, not acted on.
            3 | 4 | 8 | 31 if self.attached.is_some() => Next::Continue,
            3 | 4 | 8 | 31 => Next::Close(close_code::NOT_AUTHENTICATED),
            _ => Next::Close(close_code::UNKNOWN_OPCODE),
        }
    }

    fn identify(&mut self, d: Value) -> Next {
        if self.attached.is_some() {
            return Next::Close(close_code::ALREADY_AUTHENTICATED);
        }
        let Ok(identify) = serde_json::from_value::<Identify>(d) else {
            return Next::Close(close_code::DECODE_ERROR);
        };
        let shared = Arc::clone(&self.shared);
        if !shared.token_matches(&identify.token) {
            return Next::Close(close_code::AUTHENTICATION_FAILED);
        }
        let [shard, total] = identify.shard.unwrap_or([0, 1]);
        if total != shared.config.shards || shard >= total {
            return Next::Close(close_code::INVALID_SHARD);
        }
        let session: Arc<str> = shared.random_hex(16).into();
        let world = &shared.world;
        let ready = payloads::ready(world, shard, total, &session, &shared.gateway_url());
        let mut events = vec![Event {
            name: "READY",
            guild_id: None,
            entity_id: None,
            d: ready.to_string(),
        }];
        events.extend(world.guilds_of_shard(shard).map(|guild| Event {
            name: "GUILD_CREATE",
            guild_id: Some(guild.id),
            entity_id: Some(guild.id),
            d: payloads::guild_create(world, guild).to_string(),
        }));
        self.attached = Some(Attached {
            shard,
            session: Arc::clone(&session),
        });
        // Recorded before READY is queued, so the ledger reads in order.
        self.record(GatewayEventKind::Identified);
        shared
            .sessions
            .identify(shard, session, identify.intents, self.link.clone(), events);
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
                    shard: resumed.shard,
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
                if self.send_text(payloads::invalid_session(false)).await {
                    Next::Continue
                } else {
                    Next::Close(close_code::GOING_AWAY)
                }
            }
        }
    }

    async fn write_dispatch(&mut self, delivery: Delivery) -> bool {
        if !self.send_text(delivery.frame.to_string()).await {
            return false;
        }
        self.shared.ledger.record_dispatch(DispatchRecord {
            shard: delivery.shard,
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
        self.socket.send(Message::Text(text.into())).await.is_ok()
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
        let (shard, session) = match &self.attached {
            Some(a) => (Some(a.shard), Some(a.session.to_string())),
            None => (None, None),
        };
        self.shared.ledger.record_gateway(GatewayRecord {
            shard,
            session,
            kind,
        });
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        4000 => "Unknown error.",
        close_code::UNKNOWN_OPCODE => "Unknown opcode.",
        close_code::DECODE_ERROR => "Decode error.",
        close_code::NOT_AUTHENTICATED => "Not authenticated.",
        close_code::AUTHENTICATION_FAILED => "Authentication failed.",
        close_code::ALREADY_AUTHENTICATED => "Already authenticated.",
        4007 => "Invalid seq.",
        4008 => "Rate limited.",
        4009 => "Session timed out.",
        close_code::INVALID_SHARD => "Invalid shard.",
        4011 => "Sharding required.",
        4012 => "Invalid API version.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        _ => "",
    }
}
