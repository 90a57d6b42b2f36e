//! Gateway connections: one [`ShardSupervisor`] per node with one linked `ShardRunner` per shard.
//!
//! This crate is the only one that owns twilight `Shard`s. It knows nothing of storage or of
//! the guild actors: every event goes to an [`EventSink`] that the process assembly provides.
//!
//! Invariants:
//! - The runner never awaits downstream work: [`EventSink::deliver`] is synchronous and must
//!   not block, so one slow guild cannot stall a shard.
//! - IDENTIFY goes through one queue shared by all shards of the process, built from
//!   Discord's `max_concurrency` (see [`IdentifyLimits`]); reconnects RESUME whenever twilight
//!   can (it only re-identifies after an invalid session).
//! - A fatal close (bad token, invalid shard, bad intents) stops that shard for good: its
//!   runner ends and is not restarted, so a misconfiguration never becomes a reconnect storm.

mod error;
mod event;
pub mod metrics;
mod runner;
mod settings;
mod supervisor;

pub use error::ShardError;
pub use event::{EventSink, ShardEvent};
pub use settings::{BotToken, GatewaySettings, IdentifyLimits};
pub use supervisor::{ShardPhase, ShardStatus, ShardSupervisor, SupervisorArgs, SupervisorMsg};
pub use twilight_gateway::{EventTypeFlags, Intents};
