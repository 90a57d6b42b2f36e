//! The node agent: a node's side of the cluster. It registers with the leading
//! coordinator, heartbeats its load and session checkpoints, and runs or releases shards
//! as instructed, refusing instructions from a superseded leader or for a stale epoch.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonn_actors::rest::{Demand, GlobalLine, InvalidRequestGuard};
use protonn_actors::{ConfigChangeError, Departures, RouterMsg};
use protonn_shard::{
    ExportedSession, IdentifyReason, IdentifyScheduler, ShardStatus, SupervisorMsg,
};
use protonn_storage::Store;
use ractor::ActorRef;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use twilight_cache_inmemory::DefaultInMemoryCache;

use crate::grpc::{self, Client, ClusterTls, ClusterToken, pb};
use crate::rest_budget;

/// First pause before trying the coordinators again; doubles up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Bound on a drain or adopt asked of the local shard supervisor.
const SHARD_CALL_TIMEOUT_MS: u64 = 15_000;

/// How a node joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterMembership {
    /// Coordinator addresses (`http://host:port`); the leader is found among them.
    pub coordinators: Vec<String>,
    pub token: ClusterToken,
    /// Mutual TLS (addresses are then `https://`); plain HTTP/2 when `None`.
    pub tls: Option<ClusterTls>,
    /// Stable node name (the StatefulSet pod name).
    pub name: String,
}

/// The node's connection to whichever coordinator leads.
pub(crate) struct Link {
    membership: ClusterMembership,
    /// Index of the coordinator that answered last: tried first.
    preferred: AtomicUsize,
    /// The largest leader epoch seen: anything older is a superseded leader.
    leader_epoch: AtomicU64,
    /// The connection to the coordinator that answered last, shared by every call.
    connection: Mutex<Option<grpc::Connection>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "the coordinator rejected the cluster token (gRPC Unauthenticated): check the cluster token secret"
    )]
    Unauthenticated,
    #[error("coordinator: {0}")]
    Rejected(String),
}

impl Link {
    pub(crate) fn new(membership: ClusterMembership) -> Arc<Self> {
        Arc::new(Self {
            membership,
            preferred: AtomicUsize::new(0),
            leader_epoch: AtomicU64::new(0),
            connection: Mutex::new(None),
        })
    }

    /// The shared connection, or a new one to the first coordinator that accepts.
    async fn connection(&self) -> Result<grpc::Connection, String> {
        if let Some(connection) = self.connection.lock().expect("connection poisoned").clone() {
            return Ok(connection);
        }
        let skip = self.preferred.load(Ordering::Relaxed);
        let (index, connection) = grpc::connect(
            &self.membership.coordinators,
            skip,
            &self.membership.token,
            self.membership.tls.as_ref(),
        )
        .await?;
        self.preferred.store(index, Ordering::Relaxed);
        *self.connection.lock().expect("connection poisoned") = Some(connection.clone());
        Ok(connection)
    }

    async fn client(&self) -> Result<Client, String> {
        Ok(self.connection().await?.coordinator())
    }

    pub(crate) async fn storage_client(&self) -> Result<grpc::Storage, String> {
        Ok(self.connection().await?.storage())
    }

    /// This node's name in the cluster.
    pub(crate) fn node_name(&self) -> &str {
        &self.membership.name
    }

    /// After an answer from a coordinator that does not lead (or is gone): try the next.
    pub(crate) fn next_coordinator(&self) {
        *self.connection.lock().expect("connection poisoned") = None;
        self.preferred.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers with the leader, retrying while no coordinator leads. A wrong token or a
    /// refused registration is final.
    pub(crate) async fn register(
        &self,
        ops_addr: SocketAddr,
    ) -> Result<pb::RegisterReply, JoinError> {
        let mut pause = RETRY_START;
        loop {
            let attempt = async {
                let mut client = self.client().await.map_err(tonic::Status::unavailable)?;
                let request = pb::RegisterRequest {
                    name: self.membership.name.clone(),
                    ops_address: ops_addr.to_string(),
                };
                client
                    .register(request)
                    .await
                    .map(tonic::Response::into_inner)
            };
            match attempt.await {
                Ok(reply) if reply.leader_epoch >= self.leader_epoch.load(Ordering::Relaxed) => {
                    self.leader_epoch
                        .fetch_max(reply.leader_epoch, Ordering::Relaxed);
                    return Ok(reply);
                }
                Ok(reply) => {
                    tracing::warn!(
                        epoch = reply.leader_epoch,
                        "a superseded coordinator answered; trying the next"
                    );
                }
                Err(status) if status.code() == Code::Unauthenticated => {
                    return Err(JoinError::Unauthenticated);
                }
                Err(status) if status.code() == Code::InvalidArgument => {
                    return Err(JoinError::Rejected(status.message().to_owned()));
                }
                Err(status) => tracing::debug!(error = %status, "no leading coordinator yet"),
            }
            self.next_coordinator();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// Asks the leader to move this node's shards away; resolves once they are gone.
    pub(crate) async fn drain(&self) -> Result<u32, String> {
        let mut client = self.client().await?;
        let request = pb::DrainRequest {
            name: self.membership.name.clone(),
        };
        match client.drain_node(request).await {
            Ok(reply) => Ok(reply.into_inner().shards_moved),
            Err(status) => {
                self.next_coordinator();
                Err(status.to_string())
            }
        }
    }
}

/// The cluster-wide identify scheduler, reached over gRPC. A request waits (retrying across
/// coordinators) until a leader grants it: a shard never identifies on its own.
pub(crate) struct RemoteIdentify {
    pub(crate) link: Arc<Link>,
}

impl IdentifyScheduler for RemoteIdentify {
    fn acquire(
        &self,
        shard_id: u32,
        reason: IdentifyReason,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let link = Arc::clone(&self.link);
        Box::pin(async move {
            let reason = match reason {
                IdentifyReason::Startup => pb::IdentifyReason::Startup,
                IdentifyReason::InvalidSession => pb::IdentifyReason::InvalidSession,
            };
            let mut pause = RETRY_START;
            loop {
                let granted = async {
                    let mut client = link.client().await.map_err(tonic::Status::unavailable)?;
                    let request = pb::IdentifyRequest {
                        shard_id,
                        reason: reason.into(),
                    };
                    client.acquire_identify(request).await
                };
                match granted.await {
                    Ok(_) => return,
                    Err(status) => {
                        tracing::warn!(shard_id, error = %status, "identify permit not granted; retrying");
                        link.next_coordinator();
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        })
    }
}

/// What the agent runs against.
pub(crate) struct Agent {
    pub(crate) link: Arc<Link>,
    pub(crate) supervisor: ActorRef<SupervisorMsg>,
    /// The node cache: a shard's guilds leave with it and arrive with it.
    pub(crate) cache: Arc<DefaultInMemoryCache>,
    /// The guild actors, for calls routed to this node.
    pub(crate) router: ActorRef<RouterMsg>,
    /// This node's share of the bot's global REST rate, set by the coordinator.
    pub(crate) rest_line: Arc<GlobalLine>,
    /// The node's invalid-request guard: its counts go up, the bot's come back.
    pub(crate) rest_guard: Arc<InvalidRequestGuard>,
    /// The leader's store and this node's view of departed guilds, refreshed from it when a
    /// shard arrives (its last owner may have seen guilds leave).
    pub(crate) store: Arc<dyn Store>,
    pub(crate) departures: Arc<Departures>,
    pub(crate) ops_addr: SocketAddr,
    /// The first registration, made before the shards' supervisor started.
    pub(crate) joined: pb::RegisterReply,
}

/// Shard → the ownership epoch this node runs it under.
type Epochs = Arc<Mutex<HashMap<u32, u64>>>;

impl Agent {
    /// Runs until the task is aborted: attach, follow instructions, reattach when the
    /// stream breaks; stop every shard if cut off for too long.
    pub(crate) async fn run(self) {
        let epochs: Epochs = Arc::default();
        let mut rates = Rates::default();
        let mut joined = Some(self.joined);
        let mut cut_off_since: Option<Instant> = None;
        let fence_after = Duration::from_millis(u64::from(self.joined.failure_timeout_ms)) * 2 / 3;
        let mut pause = RETRY_START;
        loop {
            let reply = match joined.take() {
                Some(reply) => Ok(reply),
                None => tokio::select! {
                    registered = self.link.register(self.ops_addr) => registered,
                    () = fence_deadline(cut_off_since, fence_after) => {
                        self.fence(&epochs).await;
                        cut_off_since = None;
                        continue;
                    }
                },
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(err) => {
                    tracing::error!(error = %err, "cannot rejoin the cluster");
                    self.fence(&epochs).await;
                    return;
                }
            };
            match self
                .attached(&reply, &epochs, &mut rates, &mut cut_off_since)
                .await
            {
                Ok(()) => pause = RETRY_START,
                Err(status) => {
                    tracing::warn!(error = %status, "coordinator link lost; reattaching")
                }
            }
            cut_off_since.get_or_insert_with(Instant::now);
            self.link.next_coordinator();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// One attachment: heartbeats up, instructions down, until the stream breaks.
    async fn attached(
        &self,
        reply: &pb::RegisterReply,
        epochs: &Epochs,
        rates: &mut Rates,
        cut_off_since: &mut Option<Instant>,
    ) -> Result<(), tonic::Status> {
        let (reports, outbound) = mpsc::channel(64);
        let hello = pb::node_report::Report::Hello(pb::Hello {
            node_id: reply.node_id,
        });
        let _ = reports.try_send(pb::NodeReport {
            report: Some(hello),
        });
        let mut client = self
            .link
            .client()
            .await
            .map_err(tonic::Status::unavailable)?;
        let mut instructions = client
            .attach(ReceiverStream::new(outbound))
            .await?
            .into_inner();
        tracing::info!(
            node_id = reply.node_id,
            epoch = reply.leader_epoch,
            "attached to the coordinator"
        );
        *cut_off_since = None;
        let mut heartbeat = tokio::time::interval(Duration::from_millis(u64::from(
            reply.heartbeat_interval_ms.max(10),
        )));
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let report = self.heartbeat(epochs, rates).await;
                    if reports.send(pb::NodeReport { report: Some(report) }).await.is_err() {
                        return Ok(());
                    }
                }
                instruction = instructions.message() => match instruction? {
                    Some(instruction) => self.follow(instruction, epochs, &reports).await,
                    None => return Ok(()),
                },
            }
        }
    }

    async fn heartbeat(&self, epochs: &Epochs, rates: &mut Rates) -> pb::node_report::Report {
        let statuses: Vec<ShardStatus> = ractor::call_t!(
            self.supervisor,
            SupervisorMsg::Statuses,
            SHARD_CALL_TIMEOUT_MS
        )
        .unwrap_or_default();
        let epochs = epochs.lock().expect("epoch map poisoned").clone();
        let shards: Vec<pb::ShardReport> = statuses
            .into_iter()
            .map(|status| pb::ShardReport {
                shard_id: status.shard_id,
                epoch: epochs.get(&status.shard_id).copied().unwrap_or(0),
                phase: status.phase.label().to_owned(),
                events_per_sec: rates.observe(status.shard_id, status.checkpoint.as_ref()),
                checkpoint: status.checkpoint.map(session_to_pb),
            })
            .collect();
        let (cpu_seconds, rss_bytes) = process_usage();
        let invalid = self.rest_guard.take_report();
        pb::node_report::Report::Heartbeat(pb::Heartbeat {
            rest_invalid: invalid.invalid,
            rest_unauthorized: invalid.unauthorized,
            events_per_sec: shards.iter().map(|s| s.events_per_sec).sum(),
            cpu_seconds,
            rss_bytes,
            shards,
            rest_demand_per_sec: rates.rest_demand(self.rest_line.take_demand()),
        })
    }

    async fn follow(
        &self,
        instruction: pb::Instruction,
        epochs: &Epochs,
        reports: &mpsc::Sender<pb::NodeReport>,
    ) {
        let seen = self
            .link
            .leader_epoch
            .fetch_max(instruction.leader_epoch, Ordering::Relaxed);
        if instruction.leader_epoch < seen {
            tracing::warn!(
                epoch = instruction.leader_epoch,
                current = seen,
                "instruction from a superseded coordinator refused"
            );
            return;
        }
        match instruction.instruction {
            Some(pb::instruction::Instruction::Start(start)) => self.start(start, epochs).await,
            Some(pb::instruction::Instruction::Call(call)) => self.answer(call, reports),
            Some(pb::instruction::Instruction::RestShare(share)) => {
                self.rest_line
                    .set_rate(share.per_sec.max(rest_budget::MIN_SHARE));
                self.rest_guard
                    .apply_cluster(share.invalid_in_window, share.halted, share.resumes);
            }
            Some(pb::instruction::Instruction::Release(release)) => {
                self.release(release, epochs, reports)
            }
            None => {}
        }
    }

    async fn start(&self, start: pb::StartShard, epochs: &Epochs) {
        let shard_id = start.shard_id;
        {
            let mut epochs = epochs.lock().expect("epoch map poisoned");
            if epochs
                .get(&shard_id)
                .is_some_and(|&known| known >= start.epoch)
            {
                tracing::warn!(
                    shard_id,
                    epoch = start.epoch,
                    "start with a stale epoch refused"
                );
                return;
            }
            epochs.insert(shard_id, start.epoch);
        }
        if let Err(err) = self.departures.refresh(self.store.as_ref()).await {
            // A guild that left elsewhere and returns here keeps its deletion scheduled
            // until the next refresh; its data is kept for the grace period meanwhile.
            tracing::warn!(shard_id, error = %err, "departed guilds not refreshed");
        }
        match protonn_actors::load_shard_cache(&self.cache, &start.cache) {
            Ok(guilds) => tracing::debug!(shard_id, guilds, "cached guilds taken over"),
            // The guilds fill in again as they change; permission checks fail until then.
            Err(err) => tracing::warn!(shard_id, error = %err, "previous owner's cache unreadable"),
        }
        let session = start.resume.map(|session| ExportedSession {
            shard_id,
            session_id: session.session_id,
            sequence: session.sequence,
            resume_url: (!session.resume_url.is_empty()).then_some(session.resume_url),
        });
        let adopted = ractor::call_t!(
            self.supervisor,
            |reply| SupervisorMsg::Adopt {
                shard_id,
                session,
                seen_up_to: start.seen_up_to,
                reply,
            },
            SHARD_CALL_TIMEOUT_MS
        );
        match adopted {
            Ok(Ok(())) => tracing::info!(shard_id, epoch = start.epoch, "shard started"),
            Ok(Err(err)) => tracing::warn!(shard_id, error = %err, "shard not started"),
            Err(err) => tracing::warn!(shard_id, error = %err, "shard supervisor did not answer"),
        }
    }

    /// Answers a guild call on its own task (a config change waits for its write).
    fn answer(&self, call: pb::GuildCall, reports: &mpsc::Sender<pb::NodeReport>) {
        let Some(request) = call.configure else {
            return;
        };
        let router = self.router.clone();
        let reports = reports.clone();
        tokio::spawn(async move {
            use pb::guild_answer::Outcome;
            let changed = crate::node::configure(
                &router,
                request.guild_id,
                &request.key,
                &request.value,
                request.expected_version,
            )
            .await;
            let outcome = match changed {
                Ok(stored) => Outcome::Configured(pb::ConfigureReply {
                    version: stored.version,
                    config_json: serde_json::to_string(&stored.config)
                        .expect("configs serialise to JSON"),
                }),
                Err(ConfigChangeError::Invalid(message)) => Outcome::Invalid(message),
                Err(ConfigChangeError::Conflict { current }) => Outcome::ConflictCurrent(current),
                Err(ConfigChangeError::Unavailable(message)) => Outcome::Unavailable(message),
            };
            let answer = pb::GuildAnswer {
                call_id: call.call_id,
                outcome: Some(outcome),
            };
            let _ = reports
                .send(pb::NodeReport {
                    report: Some(pb::node_report::Report::Answer(answer)),
                })
                .await;
        });
    }

    /// Drains the shard on its own task (a drain waits for Discord's close and for every
    /// read event to reach the guild actors) and reports the session.
    fn release(
        &self,
        release: pb::ReleaseShard,
        epochs: &Epochs,
        reports: &mpsc::Sender<pb::NodeReport>,
    ) {
        let pb::ReleaseShard { shard_id, epoch } = release;
        let refused = move |reason: &str| {
            pb::node_report::Report::ReleaseFailed(pb::ReleaseFailed {
                shard_id,
                epoch,
                reason: reason.to_owned(),
            })
        };
        if epochs.lock().expect("epoch map poisoned").get(&shard_id) != Some(&epoch) {
            let _ = reports.try_send(pb::NodeReport {
                report: Some(refused("not running under this epoch")),
            });
            return;
        }
        let supervisor = self.supervisor.clone();
        let cache = Arc::clone(&self.cache);
        let shard_count = self.joined.shard_count;
        let epochs = Arc::clone(epochs);
        let reports = reports.clone();
        tokio::spawn(async move {
            let drained = ractor::call_t!(
                supervisor,
                |reply| SupervisorMsg::Drain { shard_id, reply },
                SHARD_CALL_TIMEOUT_MS
            );
            let report = match drained {
                Ok(Ok(session)) => {
                    epochs.lock().expect("epoch map poisoned").remove(&shard_id);
                    tracing::info!(shard_id, sequence = session.sequence, "shard released");
                    pb::node_report::Report::Released(pb::Released {
                        shard_id,
                        epoch,
                        session: Some(session_to_pb(session)),
                        cache: protonn_actors::take_shard_cache(&cache, shard_id, shard_count),
                    })
                }
                Ok(Err(err)) => refused(&err.to_string()),
                Err(err) => refused(&err.to_string()),
            };
            let _ = reports
                .send(pb::NodeReport {
                    report: Some(report),
                })
                .await;
        });
    }

    /// Cut off from every coordinator: stop every shard, keeping the sessions resumable,
    /// before the coordinator gives them to other nodes.
    async fn fence(&self, epochs: &Epochs) {
        let shards: Vec<u32> = epochs
            .lock()
            .expect("epoch map poisoned")
            .drain()
            .map(|(id, _)| id)
            .collect();
        tracing::error!(
            shards = shards.len(),
            "cut off from the coordinators; stopping every shard"
        );
        for shard_id in shards {
            let _ = ractor::call_t!(
                self.supervisor,
                |reply| SupervisorMsg::Drain { shard_id, reply },
                SHARD_CALL_TIMEOUT_MS
            );
        }
    }
}

async fn fence_deadline(since: Option<Instant>, after: Duration) {
    match since {
        Some(since) => tokio::time::sleep_until(since + after).await,
        None => std::future::pending().await,
    }
}

fn session_to_pb(session: ExportedSession) -> pb::Session {
    pb::Session {
        session_id: session.session_id,
        sequence: session.sequence,
        resume_url: session.resume_url.unwrap_or_default(),
    }
}

/// Events per second per shard, from how far each shard's checkpoint moved, and the REST
/// permits asked for per second.
#[derive(Default)]
struct Rates {
    last: HashMap<u32, (String, u64, Instant)>,
    rest_since: Option<Instant>,
}

impl Rates {
    /// Requests per second the node wants to send: the rate they arrived at since the last
    /// report, plus those waiting for a place now (a backlog wants to leave within the
    /// second, even once nothing new arrives).
    fn rest_demand(&mut self, demand: Demand) -> f64 {
        let now = Instant::now();
        let arriving = match self.rest_since.replace(now) {
            Some(since) if now > since => demand.arrived as f64 / (now - since).as_secs_f64(),
            _ => 0.0,
        };
        arriving + demand.waiting as f64
    }

    fn observe(&mut self, shard_id: u32, checkpoint: Option<&ExportedSession>) -> f64 {
        let Some(checkpoint) = checkpoint else {
            return 0.0;
        };
        let now = Instant::now();
        let previous = self.last.insert(
            shard_id,
            (checkpoint.session_id.clone(), checkpoint.sequence, now),
        );
        match previous {
            Some((session, sequence, at)) if session == checkpoint.session_id && now > at => {
                checkpoint.sequence.saturating_sub(sequence) as f64 / (now - at).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// CPU seconds used and resident bytes of this process (Linux `/proc`; zeros elsewhere).
fn process_usage() -> (f64, u64) {
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE: u64 = 4_096;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces) start at "state".
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE);
    (cpu, rss)
}
