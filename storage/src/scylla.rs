//! The ScyllaDB backend (scylla 1.x): the production store.
//!
//! - Schema in `schema/*.cql`, applied in order by [`ScyllaStore::migrate`], which records each
//!   applied file in `schema_migrations`.
//! - Statements are prepared once per store and cached; each is marked idempotent or not
//!   (LWT and counter updates are not), and only idempotent ones are retried, at most
//!   [`ScyllaConfig::max_attempts`] times ([`BoundedRetry`]).
//! - LWT only where the design asks for compare-and-set: versioned guild config, shard
//!   assignments, checkpoints, leases and promo counts. `[applied]` is read untyped from
//!   column 0, because ScyllaDB returns the row alongside it and Cassandra does not.
//! - Retention is TTL in the database (`USING TTL ?`, an `i32` of seconds).
//! - Reads of unbounded size page ([`PAGE_SIZE`] rows per page).

mod records;
mod rights;
mod web_sessions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{ExecutionError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::{RequestInfo, RetryDecision, RetryPolicy, RetrySession};
use scylla::response::query_result::QueryResult;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use tokio::sync::RwLock;

use crate::{Retention, StorageError, Timestamp};

/// Rows per page of a paged read.
pub(crate) const PAGE_SIZE: i32 = 1_000;

/// The schema files, in the order they are applied. Appending a file is a migration.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "001_tables.cql",
        include_str!("../schema/001_tables.cql"),
    ),
    (
        2,
        "002_guild_departures.cql",
        include_str!("../schema/002_guild_departures.cql"),
    ),
    (
        3,
        "003_web_sessions.cql",
        include_str!("../schema/003_web_sessions.cql"),
    ),
];

/// How the keyspace is replicated (applied when the migration runner creates it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    /// Single data centre, for development and tests.
    Simple(u32),
    /// Replicas per data centre: what production uses.
    NetworkTopology(Vec<(String, u32)>),
}

/// TLS to the cluster (rustls); the server is verified against `ca_file` (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
}

/// How to reach the cluster.
#[derive(Clone)]
pub struct ScyllaConfig {
    /// `host:port` of a few nodes; the driver discovers the rest.
    pub contact_points: Vec<String>,
    /// Lower-case letters, digits and `_`: it is spliced into statements.
    pub keyspace: String,
    pub replication: Replication,
    /// Requests go to this data centre's nodes first (LOCAL_QUORUM / LOCAL_SERIAL are local
    /// to it).
    pub local_datacenter: Option<String>,
    /// Password authentication; the password never appears in `Debug`.
    pub credentials: Option<(String, String)>,
    pub tls: Option<TlsConfig>,
    pub connection_timeout: Duration,
    /// Client-side deadline of one request, retries included.
    pub request_timeout: Duration,
    /// Attempts per idempotent request on overload, timeouts and unavailability.
    pub max_attempts: u32,
    pub retention: Retention,
}

impl ScyllaConfig {
    pub fn new(contact_points: Vec<String>, keyspace: String) -> Self {
        Self {
            contact_points,
            keyspace,
            replication: Replication::Simple(3),
            local_datacenter: None,
            credentials: None,
            tls: None,
            connection_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            retention: Retention::POLICY,
        }
    }
}

impl std::fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("contact_points", &self.contact_points)
            .field("keyspace", &self.keyspace)
            .field("replication", &self.replication)
            .field("local_datacenter", &self.local_datacenter)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("tls", &self.tls)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Retries idempotent requests on transient failures, at most `max_attempts` tries in all;
/// never retries the others (an LWT or a counter update may have been applied).
#[derive(Debug)]
pub(crate) struct BoundedRetry {
    max_attempts: u32,
}

struct BoundedRetrySession {
    max_attempts: u32,
    attempts: u32,
}

impl RetryPolicy for BoundedRetry {
    fn new_session(&self) -> Box<dyn RetrySession> {
        Box::new(BoundedRetrySession {
            max_attempts: self.max_attempts,
            attempts: 1,
        })
    }
}

impl RetrySession for BoundedRetrySession {
    fn decide_should_retry(&mut self, info: RequestInfo) -> RetryDecision {
        if !info.is_idempotent || self.attempts >= self.max_attempts || !transient(info.error) {
            return RetryDecision::DontRetry;
        }
        self.attempts += 1;
        RetryDecision::RetrySameTarget(None)
    }

    fn reset(&mut self) {
        self.attempts = 1;
    }
}

fn transient(error: &RequestAttemptError) -> bool {
    use scylla::errors::DbError;
    match error {
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Overloaded
                | DbError::Unavailable { .. }
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::IsBootstrapping
                | DbError::RateLimitReached { .. }
        ),
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        _ => false,
    }
}

/// Maps a driver error to ours; `attempts` is what the retry policy allowed.
pub(crate) fn classify(error: ExecutionError, attempts: u32) -> StorageError {
    use scylla::errors::DbError;
    let kind = match &error {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::Overloaded | DbError::RateLimitReached { .. } => Some("overloaded"),
            DbError::Unavailable { .. } | DbError::IsBootstrapping => Some("unavailable"),
            DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => Some("timeout"),
            _ => None,
        },
        ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(_))
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan => Some("unavailable"),
        ExecutionError::RequestTimeout(_) => Some("timeout"),
        _ => None,
    };
    match kind {
        Some(kind) => StorageError::Unavailable {
            kind,
            attempts,
            message: error.to_string(),
        },
        None => StorageError::Database(error.to_string()),
    }
}

/// The outcome of an LWT: whether it applied, and the columns the database sent back by
/// name (ScyllaDB sends the row in both cases, Cassandra only when not applied).
#[derive(Debug, Default)]
pub(crate) struct Lwt {
    pub(crate) applied: bool,
    pub(crate) columns: HashMap<String, CqlValue>,
}

impl Lwt {
    pub(crate) fn bigint(&self, name: &str) -> Option<i64> {
        match self.columns.get(name) {
            Some(CqlValue::BigInt(v)) => Some(*v),
            _ => None,
        }
    }
}

pub(crate) fn parse_lwt(result: QueryResult) -> Result<Lwt, StorageError> {
    let rows = result
        .into_rows_result()
        .map_err(|err| StorageError::Database(format!("lwt result: {err}")))?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|spec| spec.name().to_owned())
        .collect();
    let row: Option<Row> = rows
        .maybe_first_row()
        .map_err(|err| StorageError::Database(format!("lwt row: {err}")))?;
    let Some(row) = row else {
        return Err(StorageError::Database("lwt returned no row".into()));
    };
    lwt_from_row(&names, row)
}

pub(crate) fn lwt_from_row(names: &[String], row: Row) -> Result<Lwt, StorageError> {
    let mut columns = row.columns.into_iter();
    let applied = match columns.next().flatten() {
        Some(CqlValue::Boolean(applied)) => applied,
        other => {
            return Err(StorageError::Database(format!(
                "lwt result lacks [applied] in column 0 (got {other:?})"
            )));
        }
    };
    let columns = names
        .iter()
        .skip(1)
        .zip(columns)
        .filter_map(|(name, value)| value.map(|v| (name.clone(), v)))
        .collect();
    Ok(Lwt { applied, columns })
}

/// Seconds to live for a row that expires at `expires`, or `None` if it already has (such a
/// row is not written at all). `USING TTL ?` binds an `i32`.
pub(crate) fn ttl(expires: Timestamp) -> Option<i32> {
    let secs = Timestamp::now().until(expires).as_secs();
    (secs > 0).then(|| i32::try_from(secs).unwrap_or(i32::MAX))
}

/// Ids are u64 in Rust and bigint (i64) in CQL: the bits are kept as they are.
pub(crate) fn db_id(id: u64) -> i64 {
    id as i64
}

pub(crate) fn rust_id(id: i64) -> u64 {
    id as u64
}

/// A connected store; clones share one session and statement cache.
#[derive(Clone)]
pub struct ScyllaStore {
    session: Arc<Session>,
    keyspace: String,
    statements: Arc<RwLock<HashMap<&'static str, PreparedStatement>>>,
    max_attempts: u32,
    retention: Retention,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.keyspace)
            .finish_non_exhaustive()
    }
}

fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}

fn tls_context(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, StorageError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&tls.ca_file).map_err(|err| {
        StorageError::Connection(format!("reading {}: {err}", tls.ca_file.display()))
    })?;
    for cert in certs {
        let cert = cert.map_err(|err| {
            StorageError::Connection(format!("reading {}: {err}", tls.ca_file.display()))
        })?;
        roots
            .add(cert)
            .map_err(|err| StorageError::Connection(format!("ca certificate: {err}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| StorageError::Connection(format!("tls: {err}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl ScyllaStore {
    /// Connects to the cluster. The keyspace need not exist yet: [`migrate`](Self::migrate)
    /// creates it.
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, StorageError> {
        if !valid_keyspace(&config.keyspace) {
            return Err(StorageError::Invalid(format!(
                "keyspace name {:?} must be lower-case letters, digits and _",
                config.keyspace
            )));
        }
        if config.contact_points.is_empty() {
            return Err(StorageError::Invalid("no contact points".into()));
        }
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.local_datacenter {
            policy = policy
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(config.request_timeout))
            .retry_policy(Arc::new(BoundedRetry {
                max_attempts: config.max_attempts.max(1),
            }))
            .load_balancing_policy(policy.build())
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.contact_points)
            .connection_timeout(config.connection_timeout)
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = &config.credentials {
            builder = builder.user(user, password);
        }
        if let Some(tls) = &config.tls {
            builder = builder.tls_context(Some(tls_context(tls)?));
        }
        let session = builder
            .build()
            .await
            .map_err(|err| StorageError::Connection(err.to_string()))?;
        Ok(Self {
            session: Arc::new(session),
            keyspace: config.keyspace.clone(),
            statements: Arc::default(),
            max_attempts: config.max_attempts.max(1),
            retention: config.retention,
        })
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// Creates the keyspace if needed and applies every schema file not yet recorded in
    /// `schema_migrations`, in order. Safe to run from several processes at once: every
    /// statement is `IF NOT EXISTS`. Returns how many files it applied.
    pub async fn migrate_with(&self, replication: &Replication) -> Result<u32, StorageError> {
        let replication = match replication {
            Replication::Simple(rf) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let dcs: Vec<String> = dcs
                    .iter()
                    .map(|(dc, rf)| format!("'{}': {rf}", dc.replace('\'', "")))
                    .collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        };
        let ks = &self.keyspace;
        self.ddl(&format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"
        ))
        .await?;
        self.ddl(&format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations \
             (version int PRIMARY KEY, name text, applied_at bigint)"
        ))
        .await?;
        let applied: Vec<(i32,)> = self
            .select("SELECT version FROM {ks}.schema_migrations", ())
            .await?;
        let mut count = 0;
        for (version, name, text) in MIGRATIONS {
            if applied.iter().any(|(v,)| v == version) {
                continue;
            }
            for statement in cql_statements(text) {
                self.ddl(&statement.replace("{ks}", ks)).await?;
            }
            self.execute(
                "INSERT INTO {ks}.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                true,
                (*version, *name, db_id(Timestamp::now().as_millis())),
            )
            .await?;
            tracing::info!(version, name, keyspace = %ks, "schema migration applied");
            count += 1;
        }
        Ok(count)
    }

    /// [`migrate_with`](Self::migrate_with) a single replica: for tests and development.
    pub async fn migrate(&self) -> Result<u32, StorageError> {
        self.migrate_with(&Replication::Simple(1)).await
    }

    /// Drops a keyspace (tests clean up with it).
    pub async fn drop_keyspace(&self, keyspace: &str) -> Result<(), StorageError> {
        if !valid_keyspace(keyspace) {
            return Err(StorageError::Invalid(format!("keyspace {keyspace:?}")));
        }
        self.ddl(&format!("DROP KEYSPACE IF EXISTS {keyspace}"))
            .await
    }

    async fn ddl(&self, statement: &str) -> Result<(), StorageError> {
        self.session
            .query_unpaged(statement, ())
            .await
            .map_err(|err| classify(err, 1))?;
        Ok(())
    }

    /// The prepared form of `template` (`{ks}` stands for the keyspace), prepared on first use.
    async fn prepared(
        &self,
        template: &'static str,
        idempotent: bool,
    ) -> Result<PreparedStatement, StorageError> {
        if let Some(prepared) = self.statements.read().await.get(template) {
            return Ok(prepared.clone());
        }
        let text = template.replace("{ks}", &self.keyspace);
        let mut prepared = self
            .session
            .prepare(text)
            .await
            .map_err(|err| classify(ExecutionError::PrepareError(err), 1))?;
        prepared.set_is_idempotent(idempotent);
        prepared.set_page_size(PAGE_SIZE);
        self.statements
            .write()
            .await
            .insert(template, prepared.clone());
        Ok(prepared)
    }

    pub(crate) async fn execute(
        &self,
        template: &'static str,
        idempotent: bool,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StorageError> {
        let prepared = self.prepared(template, idempotent).await?;
        let attempts = if idempotent { self.max_attempts } else { 1 };
        self.session
            .execute_unpaged(&prepared, values)
            .await
            .map_err(|err| classify(err, attempts))
    }

    /// Runs an LWT (never retried: a retry could report "not applied" for its own write).
    pub(crate) async fn lwt(
        &self,
        template: &'static str,
        values: impl SerializeRow,
    ) -> Result<Lwt, StorageError> {
        parse_lwt(self.execute(template, false, values).await?)
    }

    /// All rows of an idempotent SELECT, page by page.
    pub(crate) async fn select<R>(
        &self,
        template: &'static str,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StorageError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        self.select_limit(template, values, usize::MAX).await
    }

    pub(crate) async fn select_limit<R>(
        &self,
        template: &'static str,
        values: impl SerializeRow,
        limit: usize,
    ) -> Result<Vec<R>, StorageError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let prepared = self.prepared(template, true).await?;
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(&prepared, &values, paging)
                .await
                .map_err(|err| classify(err, self.max_attempts))?;
            let rows = result
                .into_rows_result()
                .map_err(|err| StorageError::Database(err.to_string()))?;
            for row in rows
                .rows::<R>()
                .map_err(|err| StorageError::Database(err.to_string()))?
            {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(row.map_err(|err| StorageError::Database(err.to_string()))?);
            }
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(out),
            }
        }
    }

    pub(crate) fn retention(&self) -> &Retention {
        &self.retention
    }
}

/// Splits a schema file into statements: `--` comments dropped, `;` separated.
fn cql_statements(text: &str) -> Vec<String> {
    let without_comments: String = text
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;
