//! Process assembly and control plane: configuration, the `protonn` binary, the node that
//! wires shards to guild actors and storage, and the ops HTTP endpoints.
//!
//! This is the only crate that reads environment variables, installs the Prometheus
//! exporter, handles signals and speaks gRPC (the coordinator and the node agent). `main.rs` only calls [`cli::main`].

mod agent;
pub mod cli;
mod client;
mod config;
mod coordinator;
mod dashboard;
mod demo;
mod error;
mod grpc;
mod metrics;
mod node;
mod ops;
mod remote_store;
mod rest_budget;
mod telemetry;

pub use agent::{ClusterMembership, JoinError};
pub use client::{ClusterClient, ClusterStatus, NodeStatus, ShardAssignment};
pub use config::{
    ClusterConfig, ClusterTlsConfig, Config, DiscordConfig, OpsConfig, StorageConfig,
};
pub use coordinator::{Coordinator, CoordinatorError, CoordinatorOptions};
pub use dashboard::Dashboard;
pub use error::{ConfigError, NodeError};
pub use grpc::{ClusterTls, ClusterToken};
pub use node::{DiscordEndpoint, Node, NodeOptions};
pub use remote_store::RemoteStore;
