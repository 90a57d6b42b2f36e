//! Gateway connections: one [`ShardSupervisor`] per node with one linked `ShardRunner` per shard.
//!
//! This crate is the only one that owns twilight `Shard`s. It knows nothing of storage or of
//! the guild actors: every event goes to an [`EventSink`] that the process assembly provides.
//!
//! Invariants:
//! - The polling task never awaits the rest of the bot. Events go into a bounded buffer that
//!   a forwarder task drains into the sink; when it is full, typing and presence events are
//!   shed (counted) and anything else pauses reading until there is room — never dropped.
//! - IDENTIFY goes through one [`IdentifyScheduler`]; reconnects RESUME whenever twilight
//!   can, and after an invalid session a shard pauses 1–5 s before identifying again.
//! - A fatal close (bad token, invalid shard, bad intents) stops that shard for good: its
//!   runner ends and is not restarted, so a misconfiguration never becomes a reconnect storm.
//! - A drained shard stops polling at its close event and exports its session only after
//!   every event it read has reached the sink: the new owner resumes from exactly there.
//! - A shard's checkpoint ([`ShardStatus::checkpoint`]) moves past a batch only once the
//!   sink has handled it ([`Receipt`]: every event, or shed on purpose), so a resume from it
//!   loses nothing, not even what waited in a mailbox; an event the sink refuses pins it
//!   before that batch. What a resume replays twice up to the adoption's `seen_up_to` is
//!   counted. A drained shard exports its session once everything it read has reached the
//!   sink, and its events still queued are then handled here whatever the fence says.

mod buffer;
mod error;
mod event;
mod identify;
pub mod metrics;
mod parse;
mod receipt;
mod runner;
mod session;
mod settings;
mod supervisor;

pub use error::ShardError;
pub use event::EventSink;
pub use identify::{IdentifyConfig, IdentifyReason, IdentifyScheduler, LocalScheduler};
pub use receipt::{Ledger, Receipt};
pub use session::ExportedSession;
pub use settings::{BotToken, GatewaySettings, GuildLists};
pub use supervisor::{ShardPhase, ShardStatus, ShardSupervisor, SupervisorArgs, SupervisorMsg};
pub use twilight_gateway::{EventTypeFlags, Intents};

/// Encodes a gateway command (presence update, request guild members, …) for
/// [`SupervisorMsg::Send`].
pub fn encode_command(command: &impl twilight_gateway::Command) -> String {
    serde_json::to_string(command).expect("gateway commands serialise to JSON")
}
