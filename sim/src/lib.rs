//! A stand-in for Discord that unmodified twilight 0.18 clients can use:
//! gateway v10 (JSON text frames), the REST routes a bot needs, and a control
//! API, all on one TCP listener.
//!
//! - `/api/v10/...`: REST, as twilight-http sends it with
//!   `proxy("IP:PORT", true)`.
//! - `/sim/...`: the simulator's own API: stats, guilds, the ledger
//!   (pageable), injecting messages and interactions, closing shards,
//!   resetting the token.
//! - any other path: a websocket upgrade is a gateway connection, as twilight
//!   connects to `proxy_url` + `/?v=10&encoding=json` and resumes there too.
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`SimConfig`] and its validation |
//! | `world` | the generated bot, guilds, channels, roles, users ([`GuildInfo`]) |
//! | `snowflake` | real snowflake ids and Discord timestamps |
//! | `payloads` | JSON of every frame, dispatch body and REST object |
//! | `session` | sessions per shard: sequence, replay buffer, attached connection |
//! | `gateway` | websocket connections: HELLO, heartbeat, IDENTIFY, RESUME, writes |
//! | `rest` | `/api/v10` routes, auth, Discord error bodies |
//! | `interactions` | issued interactions, one answer each |
//! | `control` | the `/sim` HTTP API |
//! | `ledger` | what was delivered and received ([`LedgerSnapshot`], [`SimStats`]) |
//! | `traffic` | background MESSAGE_CREATE load |
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
//!   close codes 4004, 4007, 4009 and 4010..=4014 end the session, others
//!   leave it resumable with its events buffered.
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

mod config;
mod control;
mod error;
mod gateway;
mod interactions;
mod ledger;
mod payloads;
mod rest;
mod server;
mod session;
mod snowflake;
mod state;
mod traffic;
mod world;

pub use config::SimConfig;
pub use error::SimError;
pub use ledger::{
    DispatchRecord, GatewayEventKind, GatewayRecord, LedgerSnapshot, RestRecord, SimStats,
};
pub use server::{SimHandle, Simulator};
pub use world::GuildInfo;
