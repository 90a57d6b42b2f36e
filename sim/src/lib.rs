//! A stand-in for Discord that unmodified twilight 0.18 clients can use:
//! gateway v10 (JSON text frames), the REST routes a bot needs, and a control
//! API, all on one TCP listener.
//!
//! - `/api/v10/...`: REST, as twilight-http sends it with
//!   `proxy("IP:PORT", true)`.
//! - `/sim/...`: the simulator's own API: stats, guilds, the ledger
//!   (pageable), injecting messages and interactions (commands, components
//!   used and modals sent by a member), app subscriptions bought, renewed
//!   and refunded, closing shards,
//!   committing faults (`POST /sim/shards/{shard}/faults`,
//!   `POST /sim/rest/faults`), resetting the token.
//! - any other path: a websocket upgrade is a gateway connection, as twilight
//!   connects to `proxy_url` + `/?v=10&encoding=json` and resumes there too.
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`SimConfig`] and its validation |
//! | `clock` | tokio time and the time scale applied to Discord's windows |
//! | `identify` | the identify rules: buckets, 5 s window, session start budget |
//! | `faults` | [`Fault`], scripted or at random ([`RandomFaults`]) |
//! | `world` | the generated bot, guilds, channels, roles, users ([`GuildInfo`]) |
//! | `snowflake` | real snowflake ids and Discord timestamps |
//! | `payloads` | JSON of every frame, dispatch body and REST object |
//! | `session` | sessions per shard: sequence, replay buffer, attached connection |
//! | `gateway` | websocket connections: HELLO, heartbeat, IDENTIFY and its validation, RESUME, send limits, latency, writes |
//! | `transport` | the gateway query (`v`, `encoding`, `compress`) and zlib compression, per stream or per payload |
//! | `rest` | `/api/v10` routes, auth, Discord error bodies |
//! | `ratelimit` | per-route buckets, the global limit, `x-ratelimit-*` headers, 429s, REST faults scripted ([`RestFault`]) or at random ([`RandomRestFaults`]) |
//! | `ban` | the invalid-request limit (401/403/429 per 10 min) and the REST ban it earns |
//! | `interactions` | issued interactions: one answer each, of a type their kind allows, the 3 s deadline, the 15 min token, the modal shown |
//! | `components` | buttons, selects and modals: Discord's validation, and a member using them |
//! | `channels` | guild channels made, edited and deleted at run time: create with overwrites, edit, overwrite PUT/DELETE, delete, their events |
//! | `threads` | threads and their members: create, add/remove, archive, lock, rename, their events |
//! | `automod` | Discord's native AutoMod: rules CRUD with Discord's caps, their events, keyword and mention-spam rules enforced on members' messages |
//! | `entitlements` | app subscriptions: SKUs, entitlements bought, renewed and refunded, their REST routes and events |
//! | `control` | the `/sim` HTTP API |
//! | `oauth` | Discord's OAuth2 provider: consent page, token grants and revocation, `Bearer` users and guilds |
//! | `ledger` | what was delivered and received ([`LedgerSnapshot`], [`SimStats`]) |
//! | `traffic` | background load: MESSAGE_CREATE at `messages_per_sec`, the weighted event mix (`mix`) |
//! | `state` | state shared by all of the above for one running simulator |
//! | `server` | [`Simulator::start`], [`SimHandle`], shutdown |
//! | `error` | [`SimError`] |
//!
//! # Invariants
//!
//! - **Ledger truth.** A dispatch is in the ledger if and only if its frame
//!   was written to a websocket (replays again, marked `replayed`). Every
//!   REST request is recorded with its final status. Lists stop at
//!   `ledger_capacity` (setting `truncated`); counters in [`SimStats`] stay
//!   exact.
//! - **Sequence order.** Each session's dispatches are written in `s` order,
//!   whatever thread produced them (`session`).
//! - **Protocol facts** follow `shared/DISCORD.md`: every dispatch carries
//!   `s`, JSON responses are `content-type: application/json` with no
//!   `content-encoding`, objects are complete with nullable fields as `null`.
//! - **Discord's rules, not the client's.** MESSAGE_CREATE needs the
//!   GUILD_MESSAGES intent and carries content only with MESSAGE_CONTENT;
//!   close codes 4004, 4007, 4009 and 4010..=4014 from the server, and 1000
//!   or 1001 from the client, end the session; others (and a missed
//!   heartbeat, closed with 4000) leave it resumable with its events
//!   buffered.
//! - **Sessions as Discord keeps them.** Any number of sessions per
//!   `[shard, num_shards]`, and of any shard count at once: each gets the
//!   events of its guilds, `(guild_id >> 22) % num_shards == shard`.
//! - **Identify rules.** An IDENTIFY is judged only after it validated
//!   (token, shard, intents): one per bucket (`shard % max_concurrency`)
//!   per scaled 5 s window, within `session_start_total` per scaled 24 h.
//!   A refused one gets op 9 `false` and spends nothing. Every judged
//!   IDENTIFY is in the ledger's `identifies` with its bucket and time.
//! - **Faults are resumable unless Discord's would not be.** Op 7, op 9
//!   `true`, a drop, a half-open connection and non-fatal close codes leave
//!   the session and its buffer intact; the connection gets nothing more,
//!   so a RESUME replays what it missed.
//! - **REST limits.** Every request to a known, authorized route spends its
//!   route bucket (per major parameter) and, unless it is an interaction
//!   route, the global limit (the bot token's, or the IP's without one); a
//!   refused one spends nothing and gets Discord's 429. Every such response
//!   carries the `x-ratelimit-*` headers, `x-ratelimit-scope` only on a 429.
//!   Every 429 is in the ledger with its scope and bucket.
//! - **Invalid-request ban.** Every REST response with 401, 403 or a 429
//!   not of scope `shared` counts; `rest_limits.invalid_requests` of them
//!   within its window ban every REST request (any route, any token) for
//!   `rest_limits.ban_ms`. Banned requests reach no route, limiter or
//!   fault, and do not count themselves.
//! - **Time.** Every Discord window goes through the clock's time scale;
//!   ledger timestamps are unscaled milliseconds since start.
//! - **Isolation.** This crate imports no other project crate.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), protonn_sim::SimError> {
//! use protonn_sim::{SimConfig, Simulator};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = Simulator::start(SimConfig::default(), listener).await?;
//! println!("gateway {} rest {}", sim.gateway_url(), sim.rest_proxy());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod automod;
mod ban;
mod channels;
mod clock;
mod components;
mod config;
mod control;
mod entitlements;
mod error;
mod faults;
mod gateway;
mod identify;
mod interactions;
mod ledger;
mod moderation;
mod oauth;
mod payloads;
mod ratelimit;
mod rest;
mod server;
mod session;
mod snowflake;
mod state;
mod threads;
mod traffic;
mod transport;
mod world;

pub use config::{EventMix, EventWeights, GuildShape, SessionLimitAction, SimConfig};
pub use error::SimError;
pub use faults::{Fault, RandomFaults};
pub use interactions::{InteractionKind, InteractionOutcome, InteractionRecord};
pub use ledger::{
    DispatchRecord, GatewayEventKind, GatewayRecord, IdentifyOutcome, IdentifyRecord,
    LedgerSnapshot, RestRecord, SimStats,
};
pub use oauth::OAUTH_CLIENT_SECRET;
pub use ratelimit::{
    RandomRestFaults, RateLimit, RateLimitScope, RestFault, RestFaultResponse, RestLimits,
};
pub use server::{SimHandle, Simulator};
pub use world::GuildInfo;
