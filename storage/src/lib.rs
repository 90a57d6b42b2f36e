//! Persistence for Pro-tonn, behind repository traits.
//!
//! This crate owns every byte we keep. It is the only crate that imports a database driver
//! (`redb` now, `scylla` later) and it knows nothing of actors, the gateway or gRPC: callers see
//! repository traits and plain data types keyed by raw Discord ids (`u64`).
//!
//! Invariants:
//! - A write that returned `Ok` is durable: it survives a crash of the process.
//! - Versioned documents change only through compare-and-set on their version, so two
//!   concurrent editors never silently overwrite each other.

mod embedded;
mod error;
mod guild_config;

pub use embedded::EmbeddedStore;
pub use error::StorageError;
pub use guild_config::{GuildConfig, GuildConfigRepo, VersionedConfig};
