//! Process assembly and control plane: configuration, the `protonn` binary, the node that
//! wires shards to guild actors and storage, and the ops HTTP endpoints.
//!
//! This is the only crate that reads environment variables, installs the Prometheus
//! exporter, handles signals and speaks gRPC (the coordinator and the node agent). `main.rs` only calls [`cli::main`].

mod agent;
mod announce_ops;
mod backup;
mod checkpoints;
pub mod cli;
mod client;
mod config;
mod coordinator;
mod dashboard;
mod demo;
mod error;
mod fence;
mod grpc;
mod guild_calls;
mod journal;
#[cfg(feature = "loadgen")]
pub mod loadgen;
mod metrics;
mod node;
mod ops;
mod privacy_ops;
mod process;
mod remote_store;
mod rest_budget;
mod store;
mod telemetry;

pub use agent::{ClusterMembership, JoinError};
pub use backup::{BackupError, backup, restore};
pub use client::{ClusterClient, ClusterStatus, NodeStatus, ReshardStatus, ShardAssignment};
pub use config::{
    ClusterConfig, ClusterTlsConfig, Config, DiagnosticsSection, DiscordConfig, OpsConfig,
    ScyllaSection, ScyllaTlsSection, StorageBackend, StorageConfig,
};
pub use coordinator::{Coordinator, CoordinatorError, CoordinatorOptions, CoordinatorStore};
pub use dashboard::Dashboard;
pub use error::{ConfigError, NodeError};
pub use grpc::{ClusterTls, ClusterToken};
pub use guild_calls::ClusterGuildCalls;
pub use journal::{HandledJournal, HandledLine, read_journal};
pub use node::{DiscordEndpoint, Node, NodeOptions};
pub use remote_store::RemoteStore;
