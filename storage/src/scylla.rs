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

mod announcements;
mod automod;
mod backfill;
mod migrate;
mod moderation;
mod premium;
mod privacy;
mod records;
mod rights;
mod timers;
mod web_sessions;
mod workflow_data;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use scylla::client::caching_session::CachingSession;
use scylla::client::execution_profile::{ExecutionProfile, ExecutionProfileHandle};
use scylla::client::pager::NextRowError;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{ExecutionError, PagerExecutionError, RequestAttemptError, RequestError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::{RequestInfo, RetryDecision, RetryPolicy, RetrySession};
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::batch::BatchValues;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::unprepared::Statement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

pub use migrate::{MigrationReport, MigrationStep};

use crate::{Retention, StorageError, Timestamp};

/// Rows per page of a paged read.
pub(crate) const PAGE_SIZE: i32 = 1_000;
/// Prepared statements kept by the session's cache: every statement text the backend uses
/// (about a hundred) with room to spare, so none is ever re-prepared.
const STATEMENT_CACHE: usize = 512;

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
    /// For clusters that require client certificates (`require_client_auth`).
    pub client_cert: Option<ClientCert>,
}

/// A client certificate chain and its private key, both PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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
    /// An idempotent read not answered after this long is also sent to another replica (the
    /// first answer wins); `None` turns speculation off.
    pub speculative_delay: Option<Duration>,
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
            speculative_delay: Some(Duration::from_millis(200)),
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
            .field("speculative_delay", &self.speculative_delay)
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

fn attempt_kind(error: &RequestAttemptError) -> Option<&'static str> {
    use scylla::errors::DbError;
    match error {
        RequestAttemptError::DbError(db, _) => match db {
            DbError::Overloaded | DbError::RateLimitReached { .. } => Some("overloaded"),
            DbError::Unavailable { .. } | DbError::IsBootstrapping => Some("unavailable"),
            DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => Some("timeout"),
            _ => None,
        },
        RequestAttemptError::BrokenConnectionError(_) => Some("unavailable"),
        _ => None,
    }
}

fn request_kind(error: &RequestError) -> Option<&'static str> {
    match error {
        RequestError::LastAttemptError(attempt) => attempt_kind(attempt),
        RequestError::ConnectionPoolError(_) | RequestError::EmptyPlan => Some("unavailable"),
        RequestError::RequestTimeout(_) => Some("timeout"),
        _ => None,
    }
}

fn storage_error(kind: Option<&'static str>, attempts: u32, message: String) -> StorageError {
    match kind {
        Some(kind) => StorageError::Unavailable {
            kind,
            attempts,
            message,
        },
        None => StorageError::Database(message),
    }
}

/// Maps a driver error to ours; `attempts` is what the retry policy allowed.
pub(crate) fn classify(error: ExecutionError, attempts: u32) -> StorageError {
    let kind = match &error {
        ExecutionError::LastAttemptError(attempt) => attempt_kind(attempt),
        ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => Some("unavailable"),
        ExecutionError::RequestTimeout(_) => Some("timeout"),
        _ => None,
    };
    storage_error(kind, attempts, error.to_string())
}

fn classify_pager(error: PagerExecutionError, attempts: u32) -> StorageError {
    let kind = match &error {
        PagerExecutionError::NextPageError(
            scylla::client::pager::NextPageError::RequestFailure(request),
        ) => request_kind(request),
        _ => None,
    };
    storage_error(kind, attempts, error.to_string())
}

fn classify_row(error: NextRowError, attempts: u32) -> StorageError {
    let kind = match &error {
        NextRowError::NextPageError(scylla::client::pager::NextPageError::RequestFailure(
            request,
        )) => request_kind(request),
        _ => None,
    };
    storage_error(kind, attempts, error.to_string())
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

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        match self.columns.get(name) {
            Some(CqlValue::Text(v)) => Some(v),
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

/// ScyllaDB refuses a TTL above 20 years (`max_ttl`: 630,720,000 s), so a longer retention is
/// stored as 20 years rather than failing the write.
pub(crate) const MAX_TTL_SECS: u64 = 20 * 365 * 86_400;

/// Seconds to live for a row that expires at `expires`, or `None` if it already has (such a
/// row is not written at all). `USING TTL ?` binds an `i32`.
pub(crate) fn ttl(expires: Timestamp) -> Option<i32> {
    ttl_from(Timestamp::now(), expires)
}

pub(crate) fn ttl_from(now: Timestamp, expires: Timestamp) -> Option<i32> {
    let secs = now.until(expires).as_secs().min(MAX_TTL_SECS);
    (secs > 0).then(|| i32::try_from(secs).unwrap_or(i32::MAX))
}

/// Ids are u64 in Rust and bigint (i64) in CQL: the bits are kept as they are.
pub(crate) fn db_id(id: u64) -> i64 {
    id as i64
}

/// Days and hours since the epoch are u32 in Rust and int in CQL (they fit for millennia).
pub(crate) fn db_int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) fn rust_id(id: i64) -> u64 {
    id as u64
}

/// A connected store; clones share one session and its prepared-statement cache.
#[derive(Clone)]
pub struct ScyllaStore {
    session: Arc<CachingSession>,
    keyspace: String,
    max_attempts: u32,
    retention: Retention,
    /// Idempotent reads run under this profile: the default one plus speculative execution.
    reads: ExecutionProfileHandle,
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

fn read_pem_error(path: &std::path::Path, err: impl std::fmt::Display) -> StorageError {
    StorageError::Connection(format!("reading {}: {err}", path.display()))
}

fn tls_context(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, StorageError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&tls.ca_file).map_err(|e| read_pem_error(&tls.ca_file, e))?;
    for cert in certs {
        let cert = cert.map_err(|e| read_pem_error(&tls.ca_file, e))?;
        roots
            .add(cert)
            .map_err(|err| StorageError::Connection(format!("ca certificate: {err}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| StorageError::Connection(format!("tls: {err}")))?
    .with_root_certificates(roots);
    let config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let chain = CertificateDer::pem_file_iter(&client.cert_file)
                .map_err(|e| read_pem_error(&client.cert_file, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read_pem_error(&client.cert_file, e))?;
            let key = PrivateKeyDer::from_pem_file(&client.key_file)
                .map_err(|e| read_pem_error(&client.key_file, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| StorageError::Connection(format!("client certificate: {err}")))?
        }
    };
    Ok(Arc::new(config))
}

/// A logged batch being assembled: a row and its `user_refs` entries, applied all or none, so
/// export and erasure can never miss a personal row.
pub(crate) struct Writes {
    batch: Batch,
    values: Vec<Vec<CqlValue>>,
}

impl Writes {
    pub(crate) fn new() -> Self {
        let mut batch = Batch::new(BatchType::Logged);
        // Every statement put in is an idempotent plain write; so is the batch.
        batch.set_is_idempotent(true);
        Self {
            batch,
            values: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, store: &ScyllaStore, template: &str, values: Vec<CqlValue>) {
        self.batch.append_statement(store.cql(template).as_str());
        self.values.push(values);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
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
        // Token-aware routing sends each prepared statement to a replica of its partition,
        // and the driver then picks the owning shard's connection (shard-aware port).
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.local_datacenter {
            policy = policy
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let policy = policy.build();
        let base = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(config.request_timeout))
            .retry_policy(Arc::new(BoundedRetry {
                max_attempts: config.max_attempts.max(1),
            }))
            .load_balancing_policy(policy);
        // The driver only speculates on statements marked idempotent; reads are given this
        // profile explicitly so that writes never race themselves.
        let speculation = config.speculative_delay.map(|delay| {
            Arc::new(SimpleSpeculativeExecutionPolicy {
                max_retry_count: 1,
                retry_interval: delay,
            })
                as Arc<dyn scylla::policies::speculative_execution::SpeculativeExecutionPolicy>
        });
        let reads = base
            .clone()
            .speculative_execution_policy(speculation)
            .build()
            .into_handle();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.contact_points)
            .connection_timeout(config.connection_timeout)
            .default_execution_profile_handle(base.build().into_handle());
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
        let session = Arc::new(CachingSession::from(session, STATEMENT_CACHE));
        tokio::spawn(crate::metrics::publish_driver_metrics(Arc::downgrade(
            &session,
        )));
        Ok(Self {
            session,
            keyspace: config.keyspace.clone(),
            max_attempts: config.max_attempts.max(1),
            retention: config.retention,
            reads,
        })
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
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
            .get_session()
            .query_unpaged(statement, ())
            .await
            .map_err(|err| classify(err, 1))?;
        Ok(())
    }

    /// `template` with `{ks}` replaced by the keyspace: the text the statement cache keys on.
    fn cql(&self, template: &str) -> String {
        template.replace("{ks}", &self.keyspace)
    }

    fn statement(&self, template: &str, idempotent: bool) -> Statement {
        let mut statement = Statement::new(self.cql(template));
        statement.set_is_idempotent(idempotent);
        statement.set_page_size(PAGE_SIZE);
        statement
    }

    pub(crate) async fn execute(
        &self,
        template: &'static str,
        idempotent: bool,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StorageError> {
        let attempts = if idempotent { self.max_attempts } else { 1 };
        self.session
            .execute_unpaged(self.statement(template, idempotent), values)
            .await
            .map_err(|err| classify(err, attempts))
    }

    /// Applies a logged batch (rows with their index entries).
    pub(crate) async fn apply(&self, writes: Writes) -> Result<(), StorageError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.session
            .batch(&writes.batch, &writes.values)
            .await
            .map_err(|err| classify(err, self.max_attempts))?;
        Ok(())
    }

    /// Runs an LWT once (a blind retry could report "not applied" for its own write). An LWT
    /// whose outcome is unknown (a timeout, a broken connection) is not an answer: `resolve`
    /// reads the row at SERIAL, which completes or supersedes any Paxos round in flight, and
    /// says whether the write is there. Only when that read fails too is the outcome unknown.
    pub(crate) async fn lwt_resolved<F, Fut>(
        &self,
        template: &'static str,
        values: impl SerializeRow,
        resolve: F,
    ) -> Result<Lwt, StorageError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<bool, StorageError>>,
    {
        match self.execute(template, false, values).await {
            Ok(result) => parse_lwt(result),
            Err(err) if err.is_transient() => self.resolve_lwt(err, resolve).await,
            Err(err) => Err(err),
        }
    }

    pub(crate) async fn resolve_lwt<F, Fut>(
        &self,
        err: StorageError,
        resolve: F,
    ) -> Result<Lwt, StorageError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<bool, StorageError>>,
    {
        tracing::warn!(%err, "lwt outcome unknown; resolving with a serial read");
        match resolve().await {
            Ok(applied) => Ok(Lwt {
                applied,
                columns: HashMap::new(),
            }),
            Err(read) => Err(StorageError::OutcomeUnknown {
                write: err.to_string(),
                read: read.to_string(),
            }),
        }
    }

    /// A conditional batch (all its statements in one partition): applied all or none.
    pub(crate) async fn lwt_batch<F, Fut>(
        &self,
        statements: &[&'static str],
        values: impl BatchValues,
        resolve: F,
    ) -> Result<Lwt, StorageError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<bool, StorageError>>,
    {
        let mut batch = Batch::new(BatchType::Logged);
        for template in statements {
            batch.append_statement(self.cql(template).as_str());
        }
        batch.set_is_idempotent(false);
        match self.session.batch(&batch, values).await {
            Ok(result) => parse_lwt(result),
            Err(err) => match classify(err, 1) {
                err if err.is_transient() => self.resolve_lwt(err, resolve).await,
                err => Err(err),
            },
        }
    }

    /// The rows of an idempotent SELECT as a stream: pages are fetched as the stream is read,
    /// so a caller that stops early fetches no more and none holds every page at once.
    pub(crate) async fn rows<R, V>(
        &self,
        template: &'static str,
        values: V,
        serial: bool,
    ) -> Result<impl Stream<Item = Result<R, StorageError>> + use<R, V>, StorageError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
        V: SerializeRow,
    {
        let mut statement = self.statement(template, true);
        if serial {
            // A SERIAL read sees every LWT that completed and finishes any in flight.
            statement.set_consistency(Consistency::LocalSerial);
        } else {
            statement.set_execution_profile_handle(Some(self.reads.clone()));
        }
        let attempts = self.max_attempts;
        let pager = self
            .session
            .execute_iter(statement, values)
            .await
            .map_err(|err| classify_pager(err, attempts))?;
        let rows = pager
            .rows_stream::<R>()
            .map_err(|err| StorageError::Database(err.to_string()))?;
        Ok(rows.map(move |row| row.map_err(|err| classify_row(err, attempts))))
    }

    /// All rows of an idempotent SELECT.
    pub(crate) async fn select<R>(
        &self,
        template: &'static str,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StorageError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        self.rows(template, values, false)
            .await?
            .try_collect()
            .await
    }

    /// At most `limit` rows: pages past the limit are never fetched.
    pub(crate) async fn select_limit<R>(
        &self,
        template: &'static str,
        values: impl SerializeRow,
        limit: usize,
    ) -> Result<Vec<R>, StorageError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        self.rows(template, values, false)
            .await?
            .take(limit)
            .try_collect()
            .await
    }

    /// The first row of a SERIAL read: what compare-and-set loops and LWT resolution read.
    pub(crate) async fn serial_one<R>(
        &self,
        template: &'static str,
        values: impl SerializeRow,
    ) -> Result<Option<R>, StorageError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        let rows = self.rows(template, values, true).await?;
        futures_util::pin_mut!(rows);
        rows.next().await.transpose()
    }

    pub(crate) fn retention(&self) -> &Retention {
        &self.retention
    }
}

#[cfg(test)]
mod tests;
