//! Process assembly and control plane: configuration, the `protonn` binary, the node that
//! wires shards to guild actors and storage, and the ops HTTP endpoints.
//!
//! This is the only crate that reads environment variables, installs the Prometheus
//! exporter, handles signals (and, later, speaks gRPC). `main.rs` only calls [`cli::main`].

pub mod cli;
mod config;
mod demo;
mod error;
mod node;
mod ops;
mod telemetry;

pub use config::{Config, DiscordConfig, OpsConfig, StorageConfig};
pub use error::{ConfigError, NodeError};
pub use node::{DiscordEndpoint, Node, NodeOptions};
