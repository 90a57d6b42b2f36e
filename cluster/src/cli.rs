//! The `protonn` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use protonn_shard::BotToken;
use protonn_sim::SimConfig;
use protonn_storage::{Metered, Store};

use crate::config::{
    CLUSTER_TOKEN_ENV, NODE_NAME_ENV, OPERATOR_TOKEN_ENV, TOKEN_ENV, WEB_TOKEN_ENV, process_env,
};
use crate::{
    ClusterClient, ClusterMembership, ClusterTls, ClusterToken, Config, ConfigError, Coordinator,
    CoordinatorOptions, CoordinatorStore, DiscordEndpoint, HandledJournal, Node, NodeOptions,
    StorageBackend, demo, store, telemetry,
};

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
    /// The cluster coordinator (PROTONN_CLUSTER_TOKEN for nodes, PROTONN_WEB_TOKEN for the
    /// dashboard, PROTONN_OPERATOR_TOKEN for operators, DISCORD_TOKEN); a second one on the
    /// same data directory stands by and takes over when the leader dies.
    Coordinator {
        /// Where to serve gRPC; `cluster.listen` from the config when omitted.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where to serve `/metrics`, `/healthz` and `/readyz`; `ops.listen` from the config
        /// when omitted (a second process on the same host needs another port).
        #[arg(long)]
        ops_listen: Option<SocketAddr>,
        /// Where other processes reach this coordinator's gRPC (`http://host:port`, the
        /// pod's address): what a standby tells nodes to try. `cluster.advertise`, else the
        /// listen address as bound.
        #[arg(long)]
        advertise: Option<String>,
    },
    /// A node that joins the cluster's coordinators and runs the shards they assign
    /// (PROTONN_CLUSTER_TOKEN, DISCORD_TOKEN; PROTONN_WEB_TOKEN, the only credentials its
    /// guild calls accept; its name from PROTONN_NODE_NAME or the config).
    Node {
        /// Coordinator address (`http://host:port`), repeatable; `cluster.coordinators`
        /// from the config when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
        /// On SIGTERM, how long the node waits for the leader to hand its shards to other
        /// nodes before it closes what is left, such as `60s` or `2m`.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        drain_timeout: Duration,
        /// Where to serve guild calls; `cluster.guild_listen` when omitted.
        #[arg(long)]
        guild_listen: Option<SocketAddr>,
        /// `host:port` other processes reach this node's guild calls at (the pod's address);
        /// `cluster.guild_advertise` when omitted. Required with a wildcard `--guild-listen`.
        #[arg(long)]
        guild_advertise: Option<String>,
    },
    /// The dashboard as its own stateless process: guild calls routed through the cluster's
    /// coordinators with its own credentials (PROTONN_WEB_TOKEN), sessions in ScyllaDB or the leader's store, the
    /// OAuth2 client secret and session key from PROTONN_WEB_CLIENT_SECRET and
    /// PROTONN_WEB_SESSION_KEY (or the files `[web]` names).
    Web {
        /// Coordinator address (`http://host:port`), repeatable; `cluster.coordinators`
        /// from the config when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
        /// Where to serve `/metrics`, `/healthz` and `/readyz`; `ops.listen` from the config
        /// when omitted.
        #[arg(long)]
        ops_listen: Option<SocketAddr>,
    },
    /// Applies the ScyllaDB schema (`storage/schema/*.cql`) to `[storage.scylla]`, in order,
    /// once each, one migrator at a time (PROTONN_SCYLLA_USERNAME/PASSWORD if needed).
    Migrate {
        /// Print what would be applied, statement by statement, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hands every shard of a node to the others by lossless handoff (an operator's command,
    /// PROTONN_OPERATOR_TOKEN; a node stopped by SIGTERM drains itself).
    Drain {
        /// The node to drain; this node (PROTONN_NODE_NAME or `cluster.name`) when omitted.
        #[arg(long)]
        node: Option<String>,
        /// Coordinator address, repeatable; `cluster.coordinators` when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
        /// Give up after this long, such as `60s` or `2m`.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Lets every node send REST requests again after a 401 from Discord halted them all
    /// (fix the token first: a node that gets another 401 halts the cluster again).
    /// PROTONN_OPERATOR_TOKEN.
    RestResume {
        /// Coordinator address, repeatable; `cluster.coordinators` when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Starts, shows or aborts a resharding of the cluster (PROTONN_OPERATOR_TOKEN).
    /// `--shards M` checks the day's identify budget first and records the plan; see
    /// ARCHITECTURE.md for what the nodes do with it so far.
    Reshard {
        /// The new shard count.
        #[arg(long, required_unless_present_any = ["status", "abort"], conflicts_with_all = ["status", "abort"])]
        shards: Option<u32>,
        /// Show the running or last resharding.
        #[arg(long, conflicts_with = "abort")]
        status: bool,
        /// Abort the running resharding: the old shards keep running.
        #[arg(long)]
        abort: bool,
        /// Coordinator address, repeatable; `cluster.coordinators` when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// The Discord simulator on its own: `[sim]` from the config, or a scenario file, with
    /// the flags below over either.
    Sim {
        /// Address to serve the simulated gateway and REST API on.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// TOML file holding a simulator config (the fields of `[sim]`, at its top level),
        /// used instead of `[sim]`; fields it omits take the simulator's defaults.
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[command(flatten)]
        overrides: SimOverrides,
    },
    /// Writes a consistent copy of the embedded store (`storage.data_dir`) to FILE, which
    /// must not exist; through the running process that holds the store, if one does.
    Backup {
        /// Where to write the copy.
        file: PathBuf,
    },
    /// Replaces the embedded store (`storage.data_dir`) with the backup in FILE; refused
    /// while a process has the store open (stop it first).
    Restore {
        /// A file written by `protonn backup`.
        file: PathBuf,
    },
    /// Creates a promo code users redeem on the dashboard's premium page (an operator's
    /// command: ScyllaDB, or the leader's store with PROTONN_OPERATOR_TOKEN).
    PromoCreate {
        /// The code users type (letters, digits, `-`, `_`; kept upper-case).
        code: String,
        /// Premium days a redemption grants.
        #[arg(long)]
        days: u32,
        /// Premium slots a redemption grants.
        #[arg(long, default_value_t = 1)]
        slots: u32,
        /// Redemptions in total (each user at most once).
        #[arg(long)]
        limit: u32,
        /// How long the code can be redeemed, in days.
        #[arg(long, default_value_t = 30)]
        valid_days: u32,
        /// Only users who never subscribed nor redeemed a code may use it.
        #[arg(long)]
        new_users_only: bool,
        /// Coordinator address, repeatable; `cluster.coordinators` when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// The operators' privacy procedures: the children's-data erasure, the users a breach
    /// touched with draft notices, the request log (PROTONN_OPERATOR_TOKEN in a cluster).
    Privacy {
        #[command(subcommand)]
        command: crate::privacy_ops::PrivacyCommand,
    },
    /// Service announcements to the guilds that opted in: create a campaign, follow its
    /// progress, cancel it (PROTONN_OPERATOR_TOKEN in a cluster).
    Announce {
        #[command(subcommand)]
        command: crate::announce_ops::AnnounceCommand,
    },
}

/// `protonn sim` flags that override single fields of the simulator config.
#[derive(Debug, Default, Args)]
struct SimOverrides {
    /// Shard count Discord recommends and requires (`shards`).
    #[arg(long)]
    shards: Option<u32>,
    /// `session_start_limit.max_concurrency` (`max_concurrency`).
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Generated guilds (`guilds`).
    #[arg(long)]
    guilds: Option<u32>,
    /// Background MESSAGE_CREATEs per second over all guilds (`messages_per_sec`).
    #[arg(long)]
    messages_per_sec: Option<f64>,
    /// Seed of the world, the traffic and the random faults (`seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Multiplier of every Discord time window, 0.01 for fast tests (`time_scale`).
    #[arg(long)]
    time_scale: Option<f64>,
}

/// The config `protonn sim` runs: the scenario file if given, else `[sim]`, with the flags
/// over it, validated before anything starts.
fn sim_config(
    sim: SimConfig,
    scenario: Option<&Path>,
    overrides: &SimOverrides,
) -> anyhow::Result<SimConfig> {
    let mut config = match scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the scenario {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("parsing the scenario {}", path.display()))?
        }
        None => sim,
    };
    let SimOverrides {
        shards,
        max_concurrency,
        guilds,
        messages_per_sec,
        seed,
        time_scale,
    } = *overrides;
    config.shards = shards.unwrap_or(config.shards);
    config.max_concurrency = max_concurrency.unwrap_or(config.max_concurrency);
    config.guilds = guilds.unwrap_or(config.guilds);
    config.messages_per_sec = messages_per_sec.unwrap_or(config.messages_per_sec);
    config.seed = seed.unwrap_or(config.seed);
    config.time_scale = time_scale.unwrap_or(config.time_scale);
    config.validate().context("the simulator config")?;
    Ok(config)
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
    let log_format = telemetry::log_format()?;
    match cli.command.unwrap_or(Command::Demo) {
        Command::Demo => {
            // The demo prints its own progress; logs only for what goes wrong.
            telemetry::init_logging("warn", log_format);
            demo::demo(config).await
        }
        Command::Run => {
            telemetry::init_logging("info,twilight_gateway=warn", log_format);
            run_node(config).await
        }
        Command::Coordinator {
            listen,
            ops_listen,
            advertise,
        } => {
            telemetry::init_logging("info", log_format);
            run_coordinator(config, listen, ops_listen, advertise).await
        }
        Command::Node {
            coordinators,
            drain_timeout,
            guild_listen,
            guild_advertise,
        } => {
            telemetry::init_logging("info,twilight_gateway=warn", log_format);
            let mut config = config;
            if let Some(listen) = guild_listen {
                config.cluster.guild_listen = listen;
            }
            if guild_advertise.is_some() {
                config.cluster.guild_advertise = guild_advertise;
            }
            config.check_guild_address()?;
            run_cluster_node(config, coordinators, drain_timeout).await
        }
        Command::Web {
            coordinators,
            ops_listen,
        } => {
            telemetry::init_logging("info", log_format);
            let mut config = config;
            config.cluster.coordinators = coordinators_or(&config, coordinators);
            let token = web_token()?;
            let tls = cluster_tls(&config)?;
            let ops_listen = ops_listen.unwrap_or(config.ops.listen);
            crate::dashboard::run(config, token, tls, ops_listen).await
        }
        Command::Migrate { dry_run } => {
            telemetry::init_logging("warn", log_format);
            store::migrate(&config, dry_run).await
        }
        Command::Drain {
            node,
            coordinators,
            timeout,
        } => {
            telemetry::init_logging("warn", log_format);
            drain(config, node, coordinators, timeout).await
        }
        Command::RestResume { coordinators } => {
            telemetry::init_logging("warn", log_format);
            let client = cluster_client(&config, coordinators)?;
            let rest = client.resume_rest().await.context("resuming REST")?;
            println!(
                "REST resumed ({} resumes so far); invalid responses in the last 10 min: {}",
                rest.resumes, rest.invalid_in_window
            );
            Ok(())
        }
        Command::Reshard {
            shards,
            abort,
            coordinators,
            ..
        } => {
            telemetry::init_logging("warn", log_format);
            let client = cluster_client(&config, coordinators)?;
            // clap lets through exactly one of `--shards`, `--status` and `--abort`.
            let answer = match (shards, abort) {
                (Some(shards), _) => client.reshard(shards).await,
                (None, true) => client.abort_reshard().await,
                (None, false) => client.reshard_progress().await,
            };
            println!("{}", describe_resharding(&answer.context("resharding")?));
            Ok(())
        }
        Command::Sim {
            listen,
            scenario,
            overrides,
        } => {
            let sim = sim_config(config.sim, scenario.as_deref(), &overrides)?;
            telemetry::init_logging("info", log_format);
            demo::sim_only(sim, listen).await
        }
        Command::Backup { file } => {
            telemetry::init_logging("warn", log_format);
            let rows = crate::backup(&config.storage.data_dir, &file).await?;
            println!("backup written to {} ({rows} rows)", file.display());
            Ok(())
        }
        Command::PromoCreate {
            code,
            days,
            slots,
            limit,
            valid_days,
            new_users_only,
            coordinators,
        } => {
            telemetry::init_logging("warn", log_format);
            let store: std::sync::Arc<dyn protonn_storage::Store> = match config.storage.backend {
                StorageBackend::Scylla => std::sync::Arc::new(store::open_scylla(&config).await?),
                StorageBackend::Embedded => std::sync::Arc::new(crate::RemoteStore::connect(
                    coordinators_or(&config, coordinators),
                    operator_token()?,
                    cluster_tls(&config)?,
                )),
            };
            let new = protonn_storage::NewPromo {
                code,
                days,
                slots,
                limit,
                valid_for: Duration::from_secs(u64::from(valid_days) * 86_400),
                new_users_only,
            };
            // From the command line: no operator's Discord id (0).
            let promo = protonn_storage::create_promo_code(
                store.as_ref(),
                &new,
                0,
                protonn_storage::Timestamp::now(),
            )
            .await
            .context("creating the promo code")?;
            println!(
                "promo {} created: {} slot(s) for {} days, {} redemptions, redeemable until {} ms",
                promo.code,
                promo.slots,
                promo.premium_days,
                promo.max_redemptions,
                promo.expires_at.0
            );
            Ok(())
        }
        Command::Privacy { command } => {
            telemetry::init_logging("warn", log_format);
            crate::privacy_ops::run(config, command).await
        }
        Command::Announce { command } => {
            telemetry::init_logging("warn", log_format);
            crate::announce_ops::run(config, command).await
        }
        Command::Restore { file } => {
            telemetry::init_logging("warn", log_format);
            let rows = crate::restore(&config.storage.data_dir, &file)?;
            println!(
                "{} restored from {} ({rows} rows)",
                config.storage.data_dir.display(),
                file.display()
            );
            Ok(())
        }
    }
}

fn secret(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| ConfigError::MissingToken(name))
}

/// The bot token from `DISCORD_TOKEN`, refused before any network call when it could not
/// be a token: empty, with whitespace or control characters (often a pasted newline), not
/// ASCII, or with the `Bot ` prefix (the client adds it).
fn bot_token() -> Result<BotToken, ConfigError> {
    let token = secret(TOKEN_ENV)?;
    check_bot_token(&token).map_err(|message| ConfigError::Invalid {
        field: TOKEN_ENV,
        message: message.to_owned(),
    })?;
    Ok(BotToken::new(token))
}

fn check_bot_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("must not be empty");
    }
    if token.starts_with("Bot ") || token.starts_with("Bearer ") {
        return Err("must be the token alone, without the `Bot ` prefix");
    }
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces or line breaks");
    }
    Ok(())
}

fn discord_endpoint(config: &Config) -> DiscordEndpoint {
    match &config.discord.simulator {
        Some(addr) => DiscordEndpoint::Simulator(addr.clone()),
        None => DiscordEndpoint::Discord,
    }
}

/// The cluster's mutual TLS files, read once at start.
pub(crate) fn cluster_tls(config: &Config) -> Result<Option<ClusterTls>, ConfigError> {
    let Some(files) = &config.cluster.tls else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok(Some(ClusterTls {
        ca: read(&files.ca)?,
        cert: read(&files.cert)?,
        key: read(&files.key)?,
    }))
}

fn cluster_token() -> Result<ClusterToken, ConfigError> {
    scoped_token(CLUSTER_TOKEN_ENV, secret(CLUSTER_TOKEN_ENV)?, process_env)
}

/// The operators' token (`PROTONN_OPERATOR_TOKEN`).
pub(crate) fn operator_token() -> Result<ClusterToken, ConfigError> {
    scoped_token(OPERATOR_TOKEN_ENV, secret(OPERATOR_TOKEN_ENV)?, process_env)
}

/// The dashboard's token (`PROTONN_WEB_TOKEN`), which `protonn web` calls with.
fn web_token() -> Result<ClusterToken, ConfigError> {
    scoped_token(WEB_TOKEN_ENV, secret(WEB_TOKEN_ENV)?, process_env)
}

/// The dashboard's token where it is only accepted (nodes, coordinators): unset, no
/// dashboard may call; set, it is checked like the others (empty is refused).
fn accepted_web_token() -> Result<Option<ClusterToken>, ConfigError> {
    std::env::var(WEB_TOKEN_ENV)
        .ok()
        .map(|token| scoped_token(WEB_TOKEN_ENV, token, process_env))
        .transpose()
}

/// The token `value` of the scope in `name`: refused when empty, or when it is another
/// scope's token as `env` has it (a node could then act as the dashboard or an operator).
fn scoped_token(
    name: &'static str,
    value: String,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ClusterToken, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        field: name,
        message,
    };
    let token = ClusterToken::new(value).ok_or_else(|| invalid("must not be empty".to_owned()))?;
    for other in [CLUSTER_TOKEN_ENV, WEB_TOKEN_ENV, OPERATOR_TOKEN_ENV] {
        let reused = other != name
            && env(other)
                .and_then(ClusterToken::new)
                .is_some_and(|other| other.same_as(&token));
        if reused {
            return Err(invalid(format!(
                "must differ from {other}: each scope has its own secret"
            )));
        }
    }
    Ok(token)
}

async fn run_coordinator(
    config: Config,
    listen: Option<SocketAddr>,
    ops_listen: Option<SocketAddr>,
    advertise: Option<String>,
) -> anyhow::Result<()> {
    let cluster = &config.cluster;
    // The pod name in the chart; any name that tells the coordinators apart otherwise.
    let name = node_name(&config).unwrap_or_else(|_| format!("coordinator-{}", std::process::id()));
    let store = match config.storage.backend {
        StorageBackend::Embedded => CoordinatorStore::Embedded(config.storage.data_dir.clone()),
        StorageBackend::Scylla => CoordinatorStore::Shared(Arc::new(Metered::new(Arc::new(
            store::open_scylla(&config).await?,
        )))),
    };
    let coordinator = Coordinator::start(CoordinatorOptions {
        discord: discord_endpoint(&config),
        token: bot_token()?,
        cluster_token: cluster_token()?,
        operator_token: operator_token()?,
        web_token: accepted_web_token()?,
        tls: cluster_tls(&config)?,
        listen: listen.unwrap_or(cluster.listen),
        name,
        advertise: advertise.or_else(|| cluster.advertise.clone()),
        ops_listen: ops_listen.unwrap_or(config.ops.listen),
        store,
        retention: config.retention.retention(),
        shards: config.discord.shards,
        heartbeat_interval: Duration::from_millis(cluster.heartbeat_ms),
        failure_timeout: Duration::from_millis(cluster.failure_timeout_ms),
        fence: Some(Duration::from_millis(cluster.fence_ms())),
        min_nodes: cluster.min_nodes,
        formation_grace: Duration::from_millis(cluster.formation_grace_ms),
        max_moves: cluster.max_moves,
        lease_ttl: Duration::from_millis(cluster.lease_ttl_ms),
        rest_global_per_sec: config.discord.rest_global_per_sec,
    })
    .await?;
    // Lines on stdout for scripts and tests that start it on port 0: gRPC first.
    println!("coordinator grpc {}", coordinator.addr());
    println!("coordinator ops {}", coordinator.ops_addr());
    coordinator
        .run_until(shutdown_signal())
        .await
        .context("coordinator stopped")
}

fn node_name(config: &Config) -> Result<String, ConfigError> {
    match &config.cluster.name {
        Some(name) => Ok(name.clone()),
        None => secret(NODE_NAME_ENV),
    }
}

/// The coordinators named on the command line, else those of the config.
fn coordinators_or(config: &Config, given: Vec<String>) -> Vec<String> {
    if given.is_empty() {
        config.cluster.coordinators.clone()
    } else {
        given
    }
}

async fn run_cluster_node(
    config: Config,
    coordinators: Vec<String>,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let membership = ClusterMembership {
        coordinators: coordinators_or(&config, coordinators),
        token: cluster_token()?,
        web_token: accepted_web_token()?,
        tls: cluster_tls(&config)?,
        name: node_name(&config)?,
        guild_listen: config.cluster.guild_listen,
        guild_advertise: config.cluster.guild_advertise.clone(),
        drain_timeout,
    };
    serve_node(config, Some(membership)).await
}

async fn drain(
    config: Config,
    node: Option<String>,
    coordinators: Vec<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let node = match node {
        Some(node) => node,
        None => node_name(&config)?,
    };
    let client = cluster_client(&config, coordinators)?;
    let moved = tokio::time::timeout(timeout, client.drain(&node))
        .await
        .map_err(|_| anyhow::anyhow!("drain of {node} not done within {timeout:?}"))?
        .with_context(|| format!("draining {node}"))?;
    println!("{node}: {moved} shards handed to other nodes");
    Ok(())
}

/// What `protonn reshard` prints.
fn describe_resharding(status: &crate::ReshardStatus) -> String {
    if !status.known {
        return format!(
            "no resharding yet; the cluster runs {} shards",
            status.shard_count
        );
    }
    format!(
        "resharding {} → {} shards: {}; new shards ready {}/{}, switched {}/{}; \
         IDENTIFYs of the new set take at least {} s; the cluster runs {} shards",
        status.from,
        status.to,
        status.phase,
        status.shards_ready,
        status.to,
        status.shards_switched,
        status.to,
        status.identify_floor_ms.div_ceil(1_000),
        status.shard_count
    )
}

/// An operator's client (`PROTONN_OPERATOR_TOKEN`) of the coordinators named on the command
/// line (or in the config).
fn cluster_client(config: &Config, coordinators: Vec<String>) -> anyhow::Result<ClusterClient> {
    let client = ClusterClient::new(coordinators_or(config, coordinators), operator_token()?);
    Ok(match cluster_tls(config)? {
        Some(tls) => client.with_tls(tls),
        None => client,
    })
}

/// A plain number of seconds, or what moderators type: `90s`, `2m`, `1h30m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => protonn_actors::parse_duration(text),
    }
}

async fn run_node(config: Config) -> anyhow::Result<()> {
    serve_node(config, None).await
}

async fn serve_node(config: Config, cluster: Option<ClusterMembership>) -> anyhow::Result<()> {
    let runtime = config.runtime();
    let journal = match &config.diagnostics.handled_events {
        Some(path) => {
            let node = cluster
                .as_ref()
                .map_or(crate::node::STANDALONE_NODE, |m| m.name.as_str());
            let journal = HandledJournal::open(path, node).with_context(|| {
                format!("opening the handled-events journal {}", path.display())
            })?;
            tracing::info!(path = %path.display(), "journaling every handled event");
            Some(Arc::new(journal))
        }
        None => None,
    };
    // On ScyllaDB the node opens the database itself, in a cluster too.
    let own_store: Option<Arc<dyn Store>> = match config.storage.backend {
        StorageBackend::Embedded => None,
        StorageBackend::Scylla => Some(Arc::new(Metered::new(Arc::new(
            store::open_scylla(&config).await?,
        )))),
    };
    let node = Node::start_with_store(
        NodeOptions {
            discord: discord_endpoint(&config),
            token: bot_token()?,
            rest_global_per_sec: config.discord.rest_global_per_sec,
            shards: config.discord.shards,
            shard_ids: config.discord.shard_ids,
            data_dir: config.storage.data_dir,
            ops_listen: config.ops.listen,
            runtime,
            observer: journal
                .clone()
                .map(|journal| journal as Arc<dyn protonn_actors::EventObserver>),
            cluster,
        },
        own_store,
    )
    .await
    .context("starting the node")?;
    tracing::info!(ops = %node.ops_addr(), "running; SIGTERM or Ctrl-C stops");
    println!("node ops {}", node.ops_addr());
    let failed = tokio::select! {
        () = shutdown_signal() => None,
        failed = node.failed() => Some(failed),
    };
    node.shutdown().await;
    if let Some(journal) = &journal {
        journal.flush();
    }
    match failed {
        // Exiting with an error gets the process restarted (Kubernetes, systemd).
        Some(failed) => Err(failed).context("the node failed"),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_that_cannot_be_one_is_refused_without_showing_it() {
        assert!(check_bot_token("sim-token").is_ok());
        assert!(check_bot_token("MTIz.NDU2.Nzg5-_abc").is_ok());
        for bad in [
            "",
            "Bot abc.def.ghi",
            "abc def",
            "abc.def\n",
            "jéton",
            "a\tb",
        ] {
            let message = check_bot_token(bad).unwrap_err();
            assert!(bad.is_empty() || !message.contains(bad), "{message}");
        }
    }

    #[test]
    fn a_scoped_token_is_refused_empty_or_equal_to_another_scopes() {
        let env = [
            (CLUSTER_TOKEN_ENV, "node-secret"),
            (WEB_TOKEN_ENV, "web-secret"),
        ];
        let check = |name: &'static str, value: &str| {
            scoped_token(name, value.to_owned(), |wanted| {
                env.iter()
                    .find(|(name, _)| *name == wanted)
                    .map(|(_, value)| (*value).to_owned())
            })
            .map_err(|err| err.to_string())
        };
        assert!(check(OPERATOR_TOKEN_ENV, "operator-secret").is_ok());
        // A scope's own value in the environment is itself, not a reuse.
        assert!(check(WEB_TOKEN_ENV, "web-secret").is_ok());
        assert!(
            check(OPERATOR_TOKEN_ENV, "  ")
                .unwrap_err()
                .contains("empty")
        );
        let same = check(OPERATOR_TOKEN_ENV, "node-secret").unwrap_err();
        assert!(same.contains(CLUSTER_TOKEN_ENV), "{same}");
        assert!(!same.contains("node-secret"), "{same}");
        let web_as_node = check(CLUSTER_TOKEN_ENV, "web-secret").unwrap_err();
        assert!(web_as_node.contains(WEB_TOKEN_ENV), "{web_as_node}");
    }

    /// The `sim` subcommand's scenario and overrides, as parsed from `args`.
    fn sim_args(args: &[&str]) -> (Option<PathBuf>, SimOverrides) {
        let cli = Cli::try_parse_from(["protonn", "sim"].iter().chain(args)).unwrap();
        match cli.command {
            Some(Command::Sim {
                scenario,
                overrides,
                ..
            }) => (scenario, overrides),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn error(result: anyhow::Result<SimConfig>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn a_nodes_guild_address_flags_are_checked_like_the_config() {
        let cli = Cli::try_parse_from([
            "protonn",
            "node",
            "--guild-listen",
            "0.0.0.0:7910",
            "--guild-advertise",
            "10.0.0.7:7910",
        ])
        .unwrap();
        let Some(Command::Node {
            guild_listen,
            guild_advertise,
            ..
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        let mut config = Config::default();
        config.cluster.guild_listen = guild_listen.unwrap();
        assert!(config.check_guild_address().is_err(), "a wildcard alone");
        config.cluster.guild_advertise = guild_advertise;
        config.check_guild_address().unwrap();
        config.cluster.guild_advertise = Some("node-0".to_owned());
        let err = config.check_guild_address().unwrap_err().to_string();
        assert!(err.contains("cluster.guild_advertise"), "{err}");
    }

    #[test]
    fn flags_override_the_sim_section() {
        let (scenario, overrides) = sim_args(&[
            "--shards",
            "8",
            "--max-concurrency",
            "4",
            "--guilds",
            "100",
            "--messages-per-sec",
            "2.5",
            "--seed",
            "9",
            "--time-scale",
            "0.01",
        ]);
        let base = Config::default().sim;
        let config = sim_config(base.clone(), scenario.as_deref(), &overrides).unwrap();
        assert_eq!(
            (
                config.shards,
                config.max_concurrency,
                config.guilds,
                config.seed
            ),
            (8, 4, 100, 9)
        );
        assert_eq!((config.messages_per_sec, config.time_scale), (2.5, 0.01));
        assert_eq!(config.command_share, base.command_share);
        // No flags: `[sim]` as it is.
        let (scenario, overrides) = sim_args(&[]);
        let config = sim_config(base.clone(), scenario.as_deref(), &overrides).unwrap();
        assert_eq!(
            (config.shards, config.guilds, config.messages_per_sec),
            (base.shards, base.guilds, base.messages_per_sec)
        );
    }

    #[test]
    fn a_scenario_replaces_the_sim_section_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.toml");
        std::fs::write(
            &path,
            "shards = 2\nguilds = 50\n[rest_limits.invalid_requests]\nlimit = 10\nper_ms = 1000\n\
             [random_rest_faults]\nshare = 0.1\n",
        )
        .unwrap();
        let path_arg = path.to_str().unwrap();
        let (scenario, overrides) = sim_args(&["--scenario", path_arg, "--guilds", "60"]);
        let config = sim_config(Config::default().sim, scenario.as_deref(), &overrides).unwrap();
        assert_eq!((config.shards, config.guilds), (2, 60));
        assert_eq!(config.rest_limits.invalid_requests.limit, 10);
        assert_eq!(config.random_rest_faults.share, 0.1);
        // Fields the scenario omits are the simulator's defaults, not `[sim]`'s.
        assert_eq!(
            config.messages_per_sec,
            SimConfig::default().messages_per_sec
        );
    }

    #[test]
    fn bad_scenarios_and_flags_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo.toml");
        std::fs::write(&typo, "shardz = 2\n").unwrap();
        let message = error(sim_config(
            SimConfig::default(),
            Some(&typo),
            &SimOverrides::default(),
        ));
        assert!(message.contains("parsing the scenario"), "{message}");
        assert!(message.contains("shardz"), "{message}");

        let missing = dir.path().join("missing.toml");
        let message = error(sim_config(
            SimConfig::default(),
            Some(&missing),
            &SimOverrides::default(),
        ));
        assert!(message.contains("reading the scenario"), "{message}");

        for (flag, value, field) in [
            ("--shards", "0", "shards"),
            ("--time-scale", "0", "time_scale"),
            ("--messages-per-sec", "-1", "messages_per_sec"),
            ("--max-concurrency", "0", "max_concurrency"),
        ] {
            // `=` so that clap takes `-1` as a value, not a flag.
            let (scenario, overrides) = sim_args(&[&format!("{flag}={value}")]);
            let message = error(sim_config(
                SimConfig::default(),
                scenario.as_deref(),
                &overrides,
            ));
            assert!(message.contains(&format!("`{field}`")), "{message}");
        }
        assert!(Cli::try_parse_from(["protonn", "sim", "--shards", "many"]).is_err());
    }

    #[test]
    fn reshard_takes_one_of_a_count_status_or_abort_and_says_where_it_stands() {
        let parsed = |args: &[&str]| {
            Cli::try_parse_from(["protonn", "reshard"].iter().chain(args)).map(|cli| cli.command)
        };
        assert!(matches!(
            parsed(&["--shards", "16"]),
            Ok(Some(Command::Reshard {
                shards: Some(16),
                status: false,
                abort: false,
                ..
            }))
        ));
        assert!(matches!(
            parsed(&["--status"]),
            Ok(Some(Command::Reshard {
                shards: None,
                status: true,
                ..
            }))
        ));
        assert!(matches!(
            parsed(&["--abort"]),
            Ok(Some(Command::Reshard {
                shards: None,
                abort: true,
                ..
            }))
        ));
        for bad in [
            &[][..],
            &["--shards", "16", "--abort"],
            &["--status", "--abort"],
            &["--shards", "sixteen"],
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }

        let none = crate::ReshardStatus {
            shard_count: 8,
            ..crate::ReshardStatus::default()
        };
        assert_eq!(
            describe_resharding(&none),
            "no resharding yet; the cluster runs 8 shards"
        );
        let running = crate::ReshardStatus {
            known: true,
            from: 8,
            to: 16,
            phase: "running".to_owned(),
            shards_ready: 3,
            shards_switched: 1,
            identify_floor_ms: 10_000,
            shard_count: 8,
            ..crate::ReshardStatus::default()
        };
        let text = describe_resharding(&running);
        assert!(
            text.starts_with(
                "resharding 8 → 16 shards: running; new shards ready 3/16, switched 1/16"
            ),
            "{text}"
        );
        assert!(text.contains("at least 10 s"), "{text}");
    }
}
