//! The `protonn` configuration: one TOML file, every field defaulted, unknown fields rejected.
//! Secrets never live here: the bot token comes from the `DISCORD_TOKEN` environment variable.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use protonn_actors::RuntimeConfig;
use protonn_sim::SimConfig;
use protonn_storage::Plan;
use serde::Deserialize;
use twilight_cache_inmemory::ResourceType;

use crate::ConfigError;

/// Environment variable holding the bot token.
pub(crate) const TOKEN_ENV: &str = "DISCORD_TOKEN";
/// Environment variable holding the cluster's shared gRPC token: node credentials.
pub(crate) const CLUSTER_TOKEN_ENV: &str = "PROTONN_CLUSTER_TOKEN";
/// Environment variable holding the operators' gRPC token (coordinators, `protonn drain`,
/// `protonn rest-resume`); never given to nodes.
pub(crate) const OPERATOR_TOKEN_ENV: &str = "PROTONN_OPERATOR_TOKEN";
/// Environment variable holding the dashboard's gRPC token: required by `protonn web`; nodes
/// accept guild calls, and coordinators the dashboard's store calls, only with it.
pub(crate) const WEB_TOKEN_ENV: &str = "PROTONN_WEB_TOKEN";
/// Environment variable naming this node when `cluster.name` is unset (the pod name).
pub(crate) const NODE_NAME_ENV: &str = "PROTONN_NODE_NAME";
/// Environment variables holding the ScyllaDB credentials (or `username_file`/`password_file`).
pub(crate) const SCYLLA_USERNAME_ENV: &str = "PROTONN_SCYLLA_USERNAME";
pub(crate) const SCYLLA_PASSWORD_ENV: &str = "PROTONN_SCYLLA_PASSWORD";
/// Environment variables holding the dashboard's OAuth2 client secret and its session key
/// (or `web.client_secret_file`/`web.session_key_file`).
pub(crate) const WEB_CLIENT_SECRET_ENV: &str = "PROTONN_WEB_CLIENT_SECRET";
pub(crate) const WEB_SESSION_KEY_ENV: &str = "PROTONN_WEB_SESSION_KEY";
/// Environment variable holding the Paddle webhook secret(s), several separated by commas
/// during a rotation (or `web.paddle_secret_file`); unset and no file: no webhooks.
pub(crate) const PADDLE_SECRET_ENV: &str = "PROTONN_PADDLE_WEBHOOK_SECRET";

/// A variable of this process's environment; set but empty counts as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub discord: DiscordConfig,
    pub storage: StorageConfig,
    pub ops: OpsConfig,
    pub cache: CacheConfig,
    pub cluster: ClusterConfig,
    /// The embedded simulator of `protonn demo` and `protonn sim`.
    pub sim: SimConfig,
    /// The dashboard.
    pub web: WebSection,
    /// How long each kind of record is kept (the privacy policy's periods by default).
    pub retention: RetentionSection,
    /// Diagnostics for benchmarks and post-mortems; all off by default.
    pub diagnostics: DiagnosticsSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            discord: DiscordConfig::default(),
            storage: StorageConfig::default(),
            ops: OpsConfig::default(),
            cache: CacheConfig::default(),
            cluster: ClusterConfig::default(),
            sim: demo_simulator(),
            web: WebSection::default(),
            retention: RetentionSection::default(),
            diagnostics: DiagnosticsSection::default(),
        }
    }
}

/// Diagnostics a node can be asked for.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosticsSection {
    /// Append one line per event a guild actor handled to this file (time, node, shard,
    /// guild, event and its id; see the crate's `HandledJournal`). It holds guild, message
    /// and interaction ids, no content: a benchmark's or a post-mortem's tool, off by default.
    pub handled_events: Option<PathBuf>,
}

/// The privacy policy's retention periods, in days (the defaults are the policy's). The
/// store enforces them: TTLs on ScyllaDB, the sweeper on redb. Dashboard sessions end after
/// `web.session_max_age_secs` (never more than 90 days); a prepared data export is
/// downloadable for `export_hours`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Audit log entries, from the action they record.
    pub audit_days: u32,
    /// Support tickets and their transcripts, from the opening of the ticket.
    pub tickets_days: u32,
    /// Accounts, from their last activity.
    pub inactive_accounts_days: u32,
    /// A server's data after the bot was removed from it (or found gone at READY), in case
    /// it is added back.
    pub removed_guild_grace_days: u32,
    /// The log of data-subject requests, from the request.
    pub privacy_requests_days: u32,
    /// A prepared data export stays downloadable (once) this long.
    pub export_hours: u32,
    /// Command usage counters (the analytics pages), from the end of their day.
    pub usage_days: u32,
    /// Processed Paddle webhook events (id, type, outcome, the user they were about; the
    /// body goes at processing), from their receipt.
    pub billing_inbox_days: u32,
    /// Moderation cases, from the action they record.
    pub cases_days: u32,
    /// Workflows' kept variables (the server's and its members'), from their last change.
    pub workflow_variables_days: u32,
    /// Traces of workflow runs (the dashboard's recent runs), from the run.
    pub workflow_runs_days: u32,
    /// Operators' announcement campaigns with their delivery records (guilds and DMs), from
    /// the campaign's creation.
    pub campaigns_days: u32,
}

impl Default for RetentionSection {
    fn default() -> Self {
        let policy = protonn_storage::Retention::POLICY;
        let days = |d: std::time::Duration| (d.as_secs() / 86_400) as u32;
        Self {
            audit_days: days(policy.audit),
            tickets_days: days(policy.tickets),
            inactive_accounts_days: days(policy.inactive_accounts),
            removed_guild_grace_days: days(RuntimeConfig::default().removed_guild_grace),
            privacy_requests_days: days(policy.privacy_requests),
            export_hours: (policy.exports.as_secs() / 3_600) as u32,
            usage_days: days(policy.usage),
            billing_inbox_days: days(policy.billing_inbox),
            cases_days: days(policy.cases),
            workflow_variables_days: days(policy.workflow_variables),
            workflow_runs_days: days(policy.workflow_runs),
            campaigns_days: days(policy.campaigns),
        }
    }
}

impl RetentionSection {
    /// What the store enforces.
    pub fn retention(&self) -> protonn_storage::Retention {
        let days = |d: u32| std::time::Duration::from_secs(u64::from(d) * 86_400);
        protonn_storage::Retention {
            audit: days(self.audit_days),
            tickets: days(self.tickets_days),
            inactive_accounts: days(self.inactive_accounts_days),
            privacy_requests: days(self.privacy_requests_days),
            exports: std::time::Duration::from_secs(u64::from(self.export_hours) * 3_600),
            usage: days(self.usage_days),
            billing_inbox: days(self.billing_inbox_days),
            cases: days(self.cases_days),
            workflow_variables: days(self.workflow_variables_days),
            workflow_runs: days(self.workflow_runs_days),
            campaigns: days(self.campaigns_days),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // ScyllaDB refuses a TTL above 20 years; a zero period would erase on write.
        const MAX_DAYS: u32 = 20 * 365;
        for (field, value) in [
            ("retention.audit_days", self.audit_days),
            ("retention.tickets_days", self.tickets_days),
            (
                "retention.inactive_accounts_days",
                self.inactive_accounts_days,
            ),
            (
                "retention.removed_guild_grace_days",
                self.removed_guild_grace_days,
            ),
            (
                "retention.privacy_requests_days",
                self.privacy_requests_days,
            ),
            ("retention.usage_days", self.usage_days),
            ("retention.billing_inbox_days", self.billing_inbox_days),
            ("retention.cases_days", self.cases_days),
            (
                "retention.workflow_variables_days",
                self.workflow_variables_days,
            ),
            ("retention.workflow_runs_days", self.workflow_runs_days),
            ("retention.campaigns_days", self.campaigns_days),
        ] {
            if value == 0 || value > MAX_DAYS {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{value}: must be 1 to {MAX_DAYS} days"),
                });
            }
        }
        if self.export_hours == 0 || self.export_hours > 30 * 24 {
            return Err(ConfigError::Invalid {
                field: "retention.export_hours",
                message: format!(
                    "{}: must be 1 to 720 hours (an export is short-lived)",
                    self.export_hours
                ),
            });
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// Address (`host:port`) of a simulator to use instead of Discord, for `protonn run`.
    pub simulator: Option<String>,
    /// Total shard count; Discord's recommendation when unset. In a cluster it is fixed in
    /// storage when the cluster forms: later leaders use the stored count, and refuse a
    /// different one here (resharding is a separate operation).
    pub shards: Option<u32>,
    /// Shards this node runs; all of them when unset.
    pub shard_ids: Option<Vec<u32>>,
    /// Discord's global REST limit for this bot, requests per second: 50 unless Discord
    /// raised it. A cluster's leader splits 90 % of it between the nodes (the shares add up
    /// to that), keeping the rest for start-up calls and each node's one-request burst.
    pub rest_global_per_sec: f64,
    /// Discord app subscriptions: SKU id → the plan an entitlement to it grants
    /// (`premium_skus = { "1234567890" = "premium" }`); none by default.
    pub premium_skus: BTreeMap<String, String>,
    /// Ask for the privileged GUILD_MEMBERS intent (enable it for the application in
    /// Discord's developer portal first, or Discord refuses every shard): members' joins,
    /// leaves and role changes, which workflows' member and role triggers need.
    pub member_events: bool,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            simulator: None,
            shards: None,
            shard_ids: None,
            rest_global_per_sec: 50.0,
            premium_skus: BTreeMap::new(),
            member_events: false,
        }
    }
}

impl DiscordConfig {
    /// The SKUs that grant premium, with their plans; `Err` names the first bad entry.
    pub fn premium_skus(&self) -> Result<HashMap<u64, Plan>, String> {
        self.premium_skus
            .iter()
            .map(|(sku, plan)| {
                let id = sku
                    .parse::<u64>()
                    .ok()
                    .filter(|&id| id != 0)
                    .ok_or_else(|| format!("{sku:?} is not a SKU id"))?;
                match Plan::ALL.into_iter().find(|p| p.name() == plan) {
                    Some(Plan::Free) | None => Err(format!(
                        "SKU {sku}: {plan:?} is not a paid plan (expected \"premium\")"
                    )),
                    Some(plan) => Ok((id, plan)),
                }
            })
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded database.
    pub data_dir: PathBuf,
    /// The store every process opens itself: `embedded` (redb in `data_dir`; a cluster's
    /// nodes then use the coordinator's) or `scylla` (`[storage.scylla]`).
    pub backend: StorageBackend,
    pub scylla: ScyllaSection,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            backend: StorageBackend::Embedded,
            scylla: ScyllaSection::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Embedded,
    Scylla,
}

/// How to reach ScyllaDB. Credentials are never here: they come from
/// `PROTONN_SCYLLA_USERNAME`/`PROTONN_SCYLLA_PASSWORD` or the files named below.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaSection {
    /// `host:port` of a few nodes; the driver discovers the rest.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// The data centre this process talks to (LOCAL_QUORUM, LOCAL_SERIAL); requests never
    /// leave it. Must be one of `replication`'s.
    pub local_dc: Option<String>,
    /// Replicas per data centre (NetworkTopologyStrategy), applied by `protonn migrate`.
    pub replication: BTreeMap<String, u32>,
    pub connection_timeout_ms: u64,
    /// Client-side deadline of one request, retries included.
    pub request_timeout_ms: u64,
    pub tls: Option<ScyllaTlsSection>,
    /// Files holding the user name and the password (a mounted Kubernetes Secret), used
    /// when the environment variables are not set.
    pub username_file: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
}

impl Default for ScyllaSection {
    fn default() -> Self {
        Self {
            contact_points: Vec::new(),
            keyspace: "protonn".to_owned(),
            local_dc: None,
            replication: BTreeMap::new(),
            connection_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            tls: None,
            username_file: None,
            password_file: None,
        }
    }
}

/// PEM files: the CA that signed the cluster's certificates, and optionally a client
/// certificate and key for clusters that require them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaTlsSection {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The dashboard (`protonn web`; `protonn demo` serves it next to its node). Durations in
/// seconds. Its secrets are never here: the OAuth2 client secret comes from
/// `PROTONN_WEB_CLIENT_SECRET` or `client_secret_file`, the session key (32 bytes, base64;
/// it seals Discord tokens at rest) from `PROTONN_WEB_SESSION_KEY` or `session_key_file`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    /// Where the dashboard is served.
    pub listen: SocketAddr,
    /// The origin browsers use (`https://dash.example.com`); `http://` + the bound address
    /// when unset, which is right for a demo on 127.0.0.1.
    pub public_url: Option<String>,
    /// A session unused this long ends.
    pub session_idle_secs: u64,
    /// A session ends this long after login.
    pub session_max_age_secs: u64,
    /// The Discord application (its OAuth2 client id) users log in to; `protonn web` needs
    /// it (the demo takes the simulator's).
    pub client_id: Option<u64>,
    /// A file holding the OAuth2 client secret (a mounted Secret), read when
    /// `PROTONN_WEB_CLIENT_SECRET` is not set.
    pub client_secret_file: Option<PathBuf>,
    /// A file holding the session key, read when `PROTONN_WEB_SESSION_KEY` is not set.
    pub session_key_file: Option<PathBuf>,
    /// A file holding the Paddle webhook secret(s), one per line, read when
    /// `PROTONN_PADDLE_WEBHOOK_SECRET` is not set. Neither: `/webhooks/paddle` answers 404.
    pub paddle_secret_file: Option<PathBuf>,
    /// How far a webhook's signed timestamp may be from our clock before it is a replay.
    pub paddle_tolerance_secs: u64,
    /// Paddle's hosted checkout link the premium page offers.
    pub paddle_checkout_url: Option<String>,
    /// Discord user ids of the bot's operators: they see the admin pages (service
    /// announcements). Empty: nobody does.
    pub operator_ids: Vec<u64>,
}

impl Default for WebSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            session_idle_secs: 2 * 3_600,
            session_max_age_secs: 7 * 86_400,
            client_id: None,
            client_secret_file: None,
            session_key_file: None,
            paddle_secret_file: None,
            paddle_tolerance_secs: 5,
            paddle_checkout_url: None,
            operator_ids: Vec::new(),
        }
    }
}

/// The node cache (twilight-cache-inmemory).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Resource types kept, by twilight's names in lower case (`guild`, `role`, `channel`,
    /// `message`, …). `guild` and `role` must be listed (the permission checks read them);
    /// a resource whose updates need an intent the bot does not request is refused.
    pub resources: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            resources: vec!["guild".to_owned(), "role".to_owned()],
        }
    }
}

impl Config {
    /// The guild actor runtime a node of this configuration runs.
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            cache_resources: self.cache.resource_types(),
            removed_guild_grace: std::time::Duration::from_secs(
                u64::from(self.retention.removed_guild_grace_days) * 86_400,
            ),
            retention: self.retention.retention(),
            premium_skus: std::sync::Arc::new(self.discord.premium_skus().unwrap_or_default()),
            member_events: self.discord.member_events,
            ..RuntimeConfig::default()
        }
    }
}

impl CacheConfig {
    /// The resource types to cache; the handlers' minimum if the list is invalid, which
    /// [`Config::parse`] has refused already.
    pub fn resource_types(&self) -> ResourceType {
        protonn_actors::cache_resources(&self.resources)
            .unwrap_or_else(|_| protonn_actors::cached_resources())
    }
}

/// `protonn coordinator` and `protonn node`. Durations in milliseconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Coordinator addresses a node tries, leader first found (`http://host:port`).
    pub coordinators: Vec<String>,
    /// This node's stable name; `PROTONN_NODE_NAME` (the chart sets the pod name) when unset.
    pub name: Option<String>,
    /// Where a coordinator serves gRPC.
    pub listen: SocketAddr,
    /// Where other processes reach this coordinator's gRPC (`http://host:port`): what a
    /// standby tells nodes to try instead ("not leader, try X"). `listen` as bound when
    /// unset; `protonn coordinator --advertise` overrides it (the chart passes the pod IP).
    pub advertise: Option<String>,
    pub heartbeat_ms: u64,
    /// A node silent this long is lost and its shards resume elsewhere.
    pub failure_timeout_ms: u64,
    /// A node whose lease (the newest heartbeat the leader acknowledged, counted from when
    /// it was sent) is this old is fenced: it hands no event to its guild actors, sends no
    /// REST request and reports no checkpoint, and stops every shard at once. Two thirds of
    /// `failure_timeout_ms` when unset. `fence_ms + shard_stop_ms < failure_timeout_ms`.
    pub fence_ms: Option<u64>,
    /// Time a fenced node is given to stop every shard (all at once, not one by one).
    pub shard_stop_ms: u64,
    /// Nodes a cold cluster waits for before placing shards (at most `formation_grace_ms`).
    pub min_nodes: usize,
    pub formation_grace_ms: u64,
    /// Shard handoffs under way at once.
    pub max_moves: usize,
    /// Leadership lease time-to-live; a standby takes over at most this long after the
    /// leader dies. At most half of `failure_timeout_ms`.
    pub lease_ttl_ms: u64,
    /// Mutual TLS between coordinators and nodes (then every address is `https://`).
    pub tls: Option<ClusterTlsConfig>,
    /// Where a node serves guild calls (gRPC, cluster token) for the shards it runs;
    /// port 0 picks a free one.
    pub guild_listen: SocketAddr,
    /// `host:port` other processes reach a node's guild calls at (the pod's address);
    /// `guild_listen` as bound when unset, which suits only a specific address.
    pub guild_advertise: Option<String>,
}

/// PEM files: the cluster's CA, and this process's certificate and key (signed by it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClusterConfig {
    /// The fence deadline in force: `fence_ms`, or two thirds of the failure timeout.
    pub fn fence_ms(&self) -> u64 {
        self.fence_ms.unwrap_or(self.failure_timeout_ms * 2 / 3)
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            coordinators: vec!["http://127.0.0.1:7900".to_owned()],
            name: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7900)),
            advertise: None,
            // A crashed node's shards resume within 5 s (B6: the failure timeout, then about
            // 0.6 s to notice, assign and RESUME); a standby leads within 1.5 s, well before
            // nodes cut off for 2.7 s stop their shards.
            heartbeat_ms: 500,
            failure_timeout_ms: 4_000,
            fence_ms: None,
            // The gate is checked on every batch and every REST request, so the data path
            // stops at the fence deadline itself; this bounds the close frames going out.
            shard_stop_ms: 500,
            min_nodes: 1,
            formation_grace_ms: 10_000,
            max_moves: 4,
            lease_ttl_ms: 1_500,
            tls: None,
            // Any free port, advertised as bound: several nodes on one machine just work.
            // A deployment sets a fixed port and `guild_advertise`.
            guild_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            guild_advertise: None,
        }
    }
}

/// The demo's world: 4 shards of 500 guilds with steady chat and some commands. Four shards
/// identify in one 5 s window (max_concurrency 4), so the demo is ready within seconds.
fn demo_simulator() -> SimConfig {
    SimConfig {
        shards: 4,
        max_concurrency: 4,
        guilds: 2_000,
        messages_per_sec: 50.0,
        command_share: 0.1,
        ..SimConfig::default()
    }
}

impl ScyllaSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| ConfigError::Invalid { field, message };
        if self.contact_points.is_empty() {
            return Err(invalid(
                "storage.scylla.contact_points",
                "must name at least one host:port".into(),
            ));
        }
        for point in &self.contact_points {
            let port = point
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                return Err(invalid(
                    "storage.scylla.contact_points",
                    format!("{point:?} is not host:port"),
                ));
            }
        }
        let keyspace_ok = self.keyspace.len() <= 48
            && self.keyspace.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .keyspace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !keyspace_ok {
            return Err(invalid(
                "storage.scylla.keyspace",
                format!(
                    "{:?}: lower-case letters, digits and _, starting with a letter, at most 48",
                    self.keyspace
                ),
            ));
        }
        if self.replication.is_empty() {
            return Err(invalid(
                "storage.scylla.replication",
                "must give each data centre its replica count, e.g. { dc1 = 3 }".into(),
            ));
        }
        for (dc, factor) in &self.replication {
            let name_ok = !dc.is_empty()
                && dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok || *factor == 0 {
                return Err(invalid(
                    "storage.scylla.replication",
                    format!("{dc:?} = {factor}: a data centre name and at least 1 replica"),
                ));
            }
        }
        if let Some(dc) = &self.local_dc
            && !self.replication.contains_key(dc)
        {
            return Err(invalid(
                "storage.scylla.local_dc",
                format!("{dc:?} is not one of the data centres in `replication`"),
            ));
        }
        if self.connection_timeout_ms == 0 {
            return Err(invalid(
                "storage.scylla.connection_timeout_ms",
                "must be positive".into(),
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(invalid(
                "storage.scylla.request_timeout_ms",
                "must be positive".into(),
            ));
        }
        if let Some(tls) = &self.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            return Err(invalid(
                "storage.scylla.tls",
                "a client certificate needs both `cert` and `key`".into(),
            ));
        }
        if self.username_file.is_some() != self.password_file.is_some() {
            return Err(invalid(
                "storage.scylla.password_file",
                "`username_file` and `password_file` go together".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The embedded defaults, or the file at `path` over them.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a TOML document.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: err.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Where a node's guild calls are reached: a wildcard `guild_listen` needs
    /// `guild_advertise`, which must be `host:port`. Checked at load, and again after
    /// `protonn node`'s flags override them.
    pub(crate) fn check_guild_address(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| ConfigError::Invalid {
            field,
            message: message.to_owned(),
        };
        match self.cluster.guild_advertise.as_deref() {
            None if self.cluster.guild_listen.ip().is_unspecified() => {
                return Err(invalid(
                    "cluster.guild_advertise",
                    "must be set (or --guild-advertise) when the guild calls listen on a wildcard address: others cannot reach that",
                ));
            }
            Some(address)
                if address.is_empty()
                    || address.len() > 300
                    || address.contains(['/', ' '])
                    || !address.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port != 0)
                    }) =>
            {
                return Err(invalid(
                    "cluster.guild_advertise",
                    "must be host:port (the address other processes reach this node's guild calls at)",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| ConfigError::Invalid {
            field,
            message: message.to_owned(),
        };
        if self
            .diagnostics
            .handled_events
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(invalid(
                "diagnostics.handled_events",
                "must be a file path (leave it out to keep the journal off)",
            ));
        }
        let web = &self.web;
        if web.session_idle_secs == 0 || web.session_max_age_secs < web.session_idle_secs {
            return Err(invalid(
                "web.session_idle_secs",
                "must be at least 1 and at most web.session_max_age_secs",
            ));
        }
        if u128::from(web.session_max_age_secs) * 1000
            > u128::from(protonn_storage::WEB_SESSION_MAX_AGE_MS)
        {
            return Err(invalid(
                "web.session_max_age_secs",
                "at most 90 days (7776000): sessions are not kept longer",
            ));
        }
        if web
            .public_url
            .as_deref()
            .is_some_and(|url| !url.starts_with("https://") && !url.starts_with("http://127.0.0.1"))
        {
            return Err(invalid(
                "web.public_url",
                "expected https://host, or http://127.0.0.1:PORT for a local demo",
            ));
        }
        if web.client_id == Some(0) {
            return Err(invalid(
                "web.client_id",
                "must be the Discord application's id",
            ));
        }
        let simulator = self.discord.simulator.as_deref();
        if simulator.is_some_and(|addr| addr.contains("://") || !addr.contains(':')) {
            return Err(invalid(
                "discord.simulator",
                "expected host:port, such as 127.0.0.1:7878",
            ));
        }
        let global = self.discord.rest_global_per_sec;
        if !(10.0..=100_000.0).contains(&global) {
            return Err(invalid(
                "discord.rest_global_per_sec",
                "must be 10 to 100000 (Discord's default is 50)",
            ));
        }
        if self.discord.shards == Some(0) {
            return Err(invalid("discord.shards", "must be at least 1"));
        }
        if let Err(message) = self.discord.premium_skus() {
            return Err(invalid("discord.premium_skus", &message));
        }
        let total = self.discord.shards;
        let ids = self.discord.shard_ids.as_deref().unwrap_or_default();
        if total.is_some_and(|total| ids.iter().any(|&id| id >= total)) {
            return Err(invalid(
                "discord.shard_ids",
                "every shard id must be below discord.shards",
            ));
        }
        if self.discord.shard_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid("discord.shard_ids", "must name at least one shard"));
        }
        let cluster = &self.cluster;
        if cluster.heartbeat_ms == 0 || cluster.heartbeat_ms > 60_000 {
            return Err(invalid("cluster.heartbeat_ms", "must be 1 to 60000"));
        }
        if cluster.failure_timeout_ms < 3 * cluster.heartbeat_ms {
            return Err(invalid(
                "cluster.failure_timeout_ms",
                "must be at least three heartbeats",
            ));
        }
        if cluster.lease_ttl_ms < 3 * cluster.heartbeat_ms.min(1_000) {
            return Err(invalid(
                "cluster.lease_ttl_ms",
                "is too short to be renewed in time",
            ));
        }
        // A node cut off from every coordinator stops its shards after two thirds of the
        // failure timeout; a standby must lead well before that.
        if cluster.failure_timeout_ms < 2 * cluster.lease_ttl_ms {
            return Err(invalid(
                "cluster.failure_timeout_ms",
                "must be at least twice cluster.lease_ttl_ms, or a coordinator failover stops every shard",
            ));
        }
        // Fence before reassign: a node stops handling, sending and reporting for its
        // shards before the leader may give them to another node; and a failover (a
        // standby leads within the lease TTL) must not fence anyone.
        if cluster.fence_ms() + cluster.shard_stop_ms >= cluster.failure_timeout_ms {
            return Err(invalid(
                "cluster.fence_ms",
                "plus cluster.shard_stop_ms must be less than cluster.failure_timeout_ms, or a cut-off node may still run its shards when the leader gives them to another",
            ));
        }
        if cluster.fence_ms() <= cluster.lease_ttl_ms + cluster.heartbeat_ms {
            return Err(invalid(
                "cluster.fence_ms",
                "must be more than cluster.lease_ttl_ms plus a heartbeat, or a coordinator failover fences every node",
            ));
        }
        self.check_guild_address()?;
        if cluster.max_moves == 0 {
            return Err(invalid("cluster.max_moves", "must be at least 1"));
        }
        let scheme = if cluster.tls.is_some() {
            "https://"
        } else {
            "http://"
        };
        if cluster
            .coordinators
            .iter()
            .any(|addr| !addr.starts_with(scheme))
        {
            return Err(invalid(
                "cluster.coordinators",
                "expected http://host:port addresses (https:// with cluster.tls)",
            ));
        }
        if cluster
            .advertise
            .as_deref()
            .is_some_and(|addr| !addr.starts_with(scheme) || addr.contains(' '))
        {
            return Err(invalid(
                "cluster.advertise",
                "expected http://host:port (https:// with cluster.tls)",
            ));
        }
        self.retention.validate()?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        if self.storage.backend == StorageBackend::Scylla {
            self.storage.scylla.validate()?;
        }
        if let Err(err) = protonn_actors::cache_resources(&self.cache.resources) {
            return Err(invalid("cache.resources", &err.to_string()));
        }
        self.sim.validate().map_err(|err| ConfigError::Invalid {
            field: "sim",
            message: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_the_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.storage.data_dir, PathBuf::from("data"));
        assert_eq!(config.ops.listen.port(), 9464);
        assert_eq!(config.sim.guilds, 2_000, "demo world by default");
        assert!(
            config.runtime().premium_skus.is_empty(),
            "no SKU is premium unless mapped"
        );
    }

    #[test]
    fn mapped_skus_reach_the_runtime() {
        let config = Config::parse("[discord.premium_skus]\n\"1234\" = \"premium\"\n").unwrap();
        assert_eq!(
            config.runtime().premium_skus.get(&1234),
            Some(&Plan::Premium)
        );
    }

    #[test]
    fn retention_defaults_to_the_policy_and_each_period_is_configurable() {
        let config = Config::parse("").unwrap();
        assert_eq!(
            config.retention.retention(),
            protonn_storage::Retention::POLICY
        );
        assert_eq!(
            config.runtime().retention,
            protonn_storage::Retention::POLICY
        );
        assert_eq!(
            config.runtime().removed_guild_grace,
            std::time::Duration::from_secs(30 * 86_400)
        );
        let config = Config::parse(
            "[retention]\naudit_days = 90\ntickets_days = 400\ninactive_accounts_days = 100\nremoved_guild_grace_days = 7\n",
        )
        .unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let retention = config.runtime().retention;
        assert_eq!(retention.audit, 90 * day);
        assert_eq!(retention.tickets, 400 * day);
        assert_eq!(retention.inactive_accounts, 100 * day);
        assert_eq!(config.runtime().removed_guild_grace, 7 * day);
        let config = Config::parse(
            "[retention]\nprivacy_requests_days = 10\nexport_hours = 2\nusage_days = 31\n\
             billing_inbox_days = 60\ncases_days = 730\nworkflow_variables_days = 60\n\
             workflow_runs_days = 2\ncampaigns_days = 90\n",
        )
        .unwrap();
        let retention = config.runtime().retention;
        assert_eq!(retention.billing_inbox, 60 * day);
        assert_eq!(retention.cases, 730 * day);
        assert_eq!(retention.privacy_requests, 10 * day);
        assert_eq!(retention.usage, 31 * day);
        assert_eq!(retention.workflow_variables, 60 * day);
        assert_eq!(retention.workflow_runs, 2 * day);
        assert_eq!(retention.campaigns, 90 * day);
        assert_eq!(retention.exports, std::time::Duration::from_secs(7_200));
        assert!(Config::parse("[retention]\nexport_hours = 721\n").is_err());
        for bad in [
            "audit_days = 0",
            "tickets_days = 7301",
            "usage_days = 0",
            "billing_inbox_days = 0",
            "cases_days = 0",
            "workflow_runs_days = 0",
            "campaigns_days = 0",
        ] {
            let err = Config::parse(&format!("[retention]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            let field = bad.split(' ').next().unwrap();
            assert!(err.contains(&format!("retention.{field}")), "{err}");
        }
    }

    #[test]
    fn the_handled_events_journal_is_off_unless_given_a_path() {
        assert_eq!(Config::parse("").unwrap().diagnostics.handled_events, None);
        let config =
            Config::parse("[diagnostics]\nhandled_events = \"/tmp/handled.tsv\"\n").unwrap();
        assert_eq!(
            config.diagnostics.handled_events,
            Some(PathBuf::from("/tmp/handled.tsv"))
        );
        let err = Config::parse("[diagnostics]\nhandled_events = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("diagnostics.handled_events"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = Config::parse("[discord]\nshard = 4\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard"), "{err}");
        let err = Config::parse("[storage]\ndatadir = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("datadir"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("[discord]\nshards = 0\n", "discord.shards"),
            (
                "[discord]\nshards = 2\nshard_ids = [2]\n",
                "discord.shard_ids",
            ),
            ("[discord]\nsimulator = \"ws://x\"\n", "discord.simulator"),
            ("[web]\nsession_idle_secs = 0\n", "web.session_idle_secs"),
            (
                "[web]\nsession_max_age_secs = 99999999\n",
                "web.session_max_age_secs",
            ),
            (
                "[web]\npublic_url = \"http://dash.example.com\"\n",
                "web.public_url",
            ),
            ("[web]\nclient_id = 0\n", "web.client_id"),
            ("[web]\nclient_secret = \"x\"\n", "client_secret"),
            ("[ops]\nlisten = \"nowhere\"\n", "listen"),
            ("[discord]\nshards = \"four\"\n", "shards"),
            (
                "[cluster]\nheartbeat_ms = 1000\nfailure_timeout_ms = 1500\n",
                "cluster.failure_timeout_ms",
            ),
            (
                "[cluster]\nlease_ttl_ms = 6000\n",
                "cluster.failure_timeout_ms",
            ),
            (
                "[cluster]\ncoordinators = [\"10.0.0.1:7900\"]\n",
                "cluster.coordinators",
            ),
            ("[cluster]\nmax_moves = 0\n", "cluster.max_moves"),
            (
                "[discord]\nrest_global_per_sec = 0\n",
                "discord.rest_global_per_sec",
            ),
            (
                "[discord.premium_skus]\n\"12\" = \"gold\"\n",
                "discord.premium_skus",
            ),
            (
                "[discord.premium_skus]\nsku = \"premium\"\n",
                "discord.premium_skus",
            ),
            (
                "[discord.premium_skus]\n\"12\" = \"free\"\n",
                "discord.premium_skus",
            ),
            ("[cluster]\nfence_ms = 4000\n", "cluster.fence_ms"),
            (
                "[cluster]\nfence_ms = 3500\nshard_stop_ms = 1000\n",
                "cluster.fence_ms",
            ),
            ("[cluster]\nfence_ms = 1900\n", "cluster.fence_ms"),
            (
                "[cluster]\nguild_listen = \"0.0.0.0:7910\"\n",
                "cluster.guild_advertise",
            ),
            (
                "[cluster]\nguild_advertise = \"http://node-0:7910\"\n",
                "cluster.guild_advertise",
            ),
            (
                "[cluster]\nguild_advertise = \"node-0\"\n",
                "cluster.guild_advertise",
            ),
            (
                "[cluster]\nadvertise = \"10.0.0.5:7900\"\n",
                "cluster.advertise",
            ),
            (
                "[cluster]\ntls = { ca = \"ca.pem\", cert = \"c.pem\", key = \"k.pem\" }\n",
                "cluster.coordinators",
            ),
            ("[cluster.tls]\nca = \"ca.pem\"\n", "cert"),
        ];
        for (text, field) in cases {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?} gave {err}");
        }
    }

    #[test]
    fn the_fence_comes_before_the_failure_timeout() {
        let cluster = Config::parse("").unwrap().cluster;
        assert_eq!(cluster.fence_ms(), 2_666);
        assert!(cluster.fence_ms() + cluster.shard_stop_ms < cluster.failure_timeout_ms);
        let cluster = Config::parse("[cluster]\nfence_ms = 2600\n")
            .unwrap()
            .cluster;
        assert_eq!(cluster.fence_ms(), 2_600);
    }

    #[test]
    fn cache_resources_are_checked_by_name() {
        let defaults = Config::parse("").unwrap().cache.resource_types();
        assert_eq!(defaults, protonn_actors::cached_resources());
        let config =
            Config::parse("[cache]\nresources = [\"guild\", \"role\", \"channel\"]\n").unwrap();
        assert_eq!(
            config.cache.resource_types(),
            ResourceType::GUILD | ResourceType::ROLE | ResourceType::CHANNEL
        );
        for (list, says) in [
            (
                "[\"guild\", \"role\", \"chanels\"]",
                "unknown cache resource `chanels`",
            ),
            ("[\"guild\", \"channel\"]", "`role` must be cached"),
            ("[]", "`guild` must be cached"),
            ("[\"guild\", \"role\", \"presence\"]", "GUILD_PRESENCES"),
        ] {
            let err = Config::parse(&format!("[cache]\nresources = {list}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("cache.resources") && err.contains(says),
                "{list}: {err}"
            );
        }
    }

    #[test]
    fn the_scylla_backend_is_chosen_and_checked_field_by_field() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.storage.backend, StorageBackend::Embedded);
        let good = r#"
            [storage]
            backend = "scylla"
            [storage.scylla]
            contact_points = ["10.0.0.5:9042", "scylla-1.db:9042"]
            keyspace = "protonn_prod"
            local_dc = "eu-west"
            replication = { eu-west = 3, us-east = 2 }
            request_timeout_ms = 2000
            [storage.scylla.tls]
            ca = "/etc/scylla/ca.pem"
        "#;
        let config = Config::parse(good).unwrap();
        assert_eq!(config.storage.backend, StorageBackend::Scylla);
        assert_eq!(config.storage.scylla.replication.len(), 2);
        assert_eq!(config.storage.scylla.request_timeout_ms, 2_000);
        let with = |line: &str| format!("{good}\n{line}\n");
        for (text, field) in [
            (
                good.replace("[\"10.0.0.5:9042\", \"scylla-1.db:9042\"]", "[]"),
                "storage.scylla.contact_points",
            ),
            (
                good.replace("10.0.0.5:9042", "10.0.0.5"),
                "storage.scylla.contact_points",
            ),
            (
                good.replace("protonn_prod", "Protonn-Prod"),
                "storage.scylla.keyspace",
            ),
            (
                good.replace("{ eu-west = 3, us-east = 2 }", "{}"),
                "storage.scylla.replication",
            ),
            (
                good.replace("us-east = 2", "us-east = 0"),
                "storage.scylla.replication",
            ),
            (
                good.replace("local_dc = \"eu-west\"", "local_dc = \"ap-south\""),
                "storage.scylla.local_dc",
            ),
            (
                good.replace("request_timeout_ms = 2000", "request_timeout_ms = 0"),
                "storage.scylla.request_timeout_ms",
            ),
            (with("cert = \"/etc/client.pem\""), "storage.scylla.tls"),
        ] {
            match Config::parse(&text) {
                Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, field, "{text}"),
                other => panic!("expected {field} refused, got {other:?}"),
            }
        }
        // Credentials are never config fields; nor is an unknown backend.
        for text in [
            good.replace("keyspace = ", "password = \"x\"\nkeyspace = "),
            good.replace("keyspace = ", "username = \"x\"\nkeyspace = "),
            good.replace("backend = \"scylla\"", "backend = \"cassandra\""),
        ] {
            assert!(
                matches!(Config::parse(&text), Err(ConfigError::Parse { .. })),
                "{text}"
            );
        }
        // The embedded backend ignores an incomplete scylla section.
        assert!(Config::parse("[storage.scylla]\nkeyspace = \"x\"\n").is_ok());
    }

    #[test]
    fn the_token_is_not_a_config_field() {
        let err = Config::parse("[discord]\ntoken = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
