//! The `protonn` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use protonn_actors::RuntimeConfig;
use protonn_shard::BotToken;

use crate::config::TOKEN_ENV;
use crate::{Config, ConfigError, DiscordEndpoint, Node, NodeOptions, demo, telemetry};

/// Pro-tonn: a sharded, actor-based Discord bot cluster.
#[derive(Debug, Parser)]
#[command(name = "protonn", version)]
struct Cli {
    /// TOML configuration file; the embedded defaults when omitted.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process against the built-in simulator (the default).
    Demo,
    /// One node against Discord (DISCORD_TOKEN), or against `discord.simulator` from the config.
    Run,
    /// The Discord simulator on its own.
    Sim {
        /// Address to serve the simulated gateway and REST API on.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("protonn: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("protonn: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Demo) {
        Command::Demo => {
            // The demo prints its own progress; logs only for what goes wrong.
            telemetry::init_logging("warn");
            demo::demo(config).await
        }
        Command::Run => {
            telemetry::init_logging("info,twilight_gateway=warn");
            run_node(config).await
        }
        Command::Sim { listen } => {
            telemetry::init_logging("info");
            demo::sim_only(config.sim, listen).await
        }
    }
}

async fn run_node(config: Config) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_ENV).map_err(|_| ConfigError::MissingToken(TOKEN_ENV))?;
    let discord = match config.discord.simulator {
        Some(addr) => DiscordEndpoint::Simulator(addr),
        None => DiscordEndpoint::Discord,
    };
    let node = Node::start(NodeOptions {
        discord,
        token: BotToken::new(token),
        shards: config.discord.shards,
        shard_ids: config.discord.shard_ids,
        data_dir: config.storage.data_dir,
        ops_listen: config.ops.listen,
        runtime: RuntimeConfig::default(),
        observer: None,
    })
    .await
    .context("starting the node")?;
    tracing::info!(ops = %node.ops_addr(), "running; SIGTERM or Ctrl-C stops");
    shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what Kubernetes sends).
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
