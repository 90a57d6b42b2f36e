//! The node agent: a node's side of the cluster. It registers with the leading
//! coordinator, heartbeats its load and session checkpoints, and runs or releases shards
//! as instructed, refusing instructions from a superseded leader or for a stale epoch.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonn_actors::rest::{Demand, GlobalLine, InvalidRequestGuard};
use protonn_actors::{Departures, NewShardProgress, RouterMsg, ShardCounts};
use protonn_shard::{
    ExportedSession, IdentifyReason, IdentifyScheduler, ShardError, ShardStatus, SupervisorMsg,
};
use protonn_storage::Store;
use ractor::ActorRef;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::gateway::ShardId;

use crate::checkpoints::{PendingCheckpoints, ResumePoints};
use crate::fence::Fence;
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
    /// The dashboard's token (`PROTONN_WEB_TOKEN`), the only credentials this node's guild
    /// calls accept (a node's own token may not change guilds); `None`: none accepted.
    pub web_token: Option<ClusterToken>,
    /// Mutual TLS (addresses are then `https://`); plain HTTP/2 when `None`.
    pub tls: Option<ClusterTls>,
    /// Stable node name (the StatefulSet pod name).
    pub name: String,
    /// Where this node serves guild calls (gRPC); port 0 picks a free one.
    pub guild_listen: SocketAddr,
    /// `host:port` other processes reach `guild_listen` at (the pod's address); the bound
    /// address when `None`, which suits only a specific, reachable listen address.
    pub guild_advertise: Option<String>,
    /// Time a stopping node (SIGTERM) gives the leader to hand its shards to other nodes;
    /// then it closes what is left. The node drains itself, with its own credentials.
    pub drain_timeout: Duration,
}

/// The node's connection to whichever coordinator leads.
pub(crate) struct Link {
    membership: ClusterMembership,
    /// Index of the coordinator that answered last: tried first.
    preferred: AtomicUsize,
    /// The leader a standby named ("not leader, try X"): tried before the list, once.
    hint: Mutex<Option<String>>,
    /// The largest leader epoch seen: anything older is a superseded leader.
    leader_epoch: AtomicU64,
    /// The key of this node's newest registration, which its later calls carry.
    session_key: Mutex<String>,
    /// The connection to the coordinator that answered last, shared by every call.
    connection: Mutex<Option<grpc::Connection>>,
    /// The node's lease on its shards, renewed by the leader's acknowledgements.
    pub(crate) fence: Arc<Fence>,
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
            hint: Mutex::new(None),
            leader_epoch: AtomicU64::new(0),
            session_key: Mutex::new(String::new()),
            connection: Mutex::new(None),
            fence: Fence::new(),
        })
    }

    /// The shared connection, or a new one to the first coordinator that accepts.
    async fn connection(&self) -> Result<grpc::Connection, String> {
        if let Some(connection) = self.connection.lock().expect("connection poisoned").clone() {
            return Ok(connection);
        }
        let hint = self.hint.lock().expect("hint poisoned").take();
        if let Some(address) = hint {
            let tls = self.membership.tls.as_ref();
            match grpc::connect(
                std::slice::from_ref(&address),
                0,
                &self.membership.token,
                tls,
            )
            .await
            {
                Ok((_, connection)) => {
                    *self.connection.lock().expect("connection poisoned") =
                        Some(connection.clone());
                    return Ok(connection);
                }
                Err(err) => {
                    tracing::debug!(%address, error = %err, "the named leader is unreachable")
                }
            }
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

    pub(crate) async fn directory_client(&self) -> Result<grpc::Directory, String> {
        Ok(self.connection().await?.directory())
    }

    pub(crate) async fn storage_client(&self) -> Result<grpc::Storage, String> {
        Ok(self.connection().await?.storage())
    }

    pub(crate) fn membership(&self) -> &ClusterMembership {
        &self.membership
    }

    /// This node's name in the cluster.
    pub(crate) fn node_name(&self) -> &str {
        &self.membership.name
    }

    /// The key of this node's newest registration (empty before the first).
    pub(crate) fn session_key(&self) -> String {
        self.session_key.lock().expect("key poisoned").clone()
    }

    /// After an answer from a coordinator that does not lead (or is gone): the leader it
    /// named next, when it named one (answers `true`: no need to pause), else the next
    /// address of the list.
    pub(crate) fn next_coordinator(&self, answer: Option<&tonic::Status>) -> bool {
        *self.connection.lock().expect("connection poisoned") = None;
        if let Some(address) = answer.and_then(grpc::leader_hint) {
            tracing::debug!(%address, "following the leader a standby named");
            if let Some(index) = self
                .membership
                .coordinators
                .iter()
                .position(|a| *a == address)
            {
                self.preferred.store(index, Ordering::Relaxed);
            }
            *self.hint.lock().expect("hint poisoned") = Some(address);
            return true;
        }
        self.preferred.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Registers with the leader, retrying while no coordinator leads. A wrong token or a
    /// refused registration is final.
    pub(crate) async fn register(
        &self,
        ops_addr: SocketAddr,
    ) -> Result<pb::RegisterReply, JoinError> {
        let mut pause = RETRY_START;
        // A standby's hint is followed at once, but not twice in a row (two stale hints
        // must not make a busy loop).
        let mut followed = false;
        loop {
            let sent = Instant::now();
            let attempt = async {
                let mut client = self.client().await.map_err(tonic::Status::unavailable)?;
                let request = pb::RegisterRequest {
                    name: self.membership.name.clone(),
                    ops_address: ops_addr.to_string(),
                };
                client
                    .register(grpc::with_deadline(request, grpc::CALL_DEADLINE))
                    .await
                    .map(tonic::Response::into_inner)
            };
            match attempt.await {
                Ok(reply) if reply.leader_epoch >= self.leader_epoch.load(Ordering::Relaxed) => {
                    self.leader_epoch
                        .fetch_max(reply.leader_epoch, Ordering::Relaxed);
                    // The leader counts this node alive from when it handled the call.
                    self.fence.registered(fence_deadline(&reply), sent);
                    *self.session_key.lock().expect("key poisoned") = reply.session_key.clone();
                    return Ok(reply);
                }
                Ok(reply) => {
                    tracing::warn!(
                        epoch = reply.leader_epoch,
                        "a superseded coordinator answered; trying the next"
                    );
                    self.next_coordinator(None);
                }
                Err(status) if status.code() == Code::Unauthenticated => {
                    return Err(JoinError::Unauthenticated);
                }
                Err(status) if status.code() == Code::InvalidArgument => {
                    return Err(JoinError::Rejected(status.message().to_owned()));
                }
                Err(status) => {
                    tracing::debug!(error = %status, "no leading coordinator yet");
                    if self.next_coordinator(Some(&status)) && !followed {
                        followed = true;
                        continue;
                    }
                    if grpc::from_standby(&status) {
                        // A failover under way: a leader may serve any moment, and this
                        // node's shards stop at its fence deadline.
                        followed = false;
                        tokio::time::sleep(RETRY_START).await;
                        continue;
                    }
                }
            }
            followed = false;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// Asks the leader to move this node's shards away; resolves once they are gone.
    pub(crate) async fn drain(&self) -> Result<u32, String> {
        let mut client = self.client().await?;
        let request = pb::DrainRequest {
            name: self.membership.name.clone(),
            session_key: self.session_key(),
        };
        match client
            .drain_node(grpc::with_deadline(request, grpc::DRAIN_DEADLINE))
            .await
        {
            Ok(reply) => Ok(reply.into_inner().shards_moved),
            Err(status) => {
                self.next_coordinator(Some(&status));
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
            let mut followed = false;
            loop {
                // A fenced shard may run elsewhere: it must not start a session of its own.
                if !link.fence.may_run(shard_id) {
                    tokio::time::sleep(RETRY_MAX).await;
                    continue;
                }
                let granted = async {
                    let mut client = link.client().await.map_err(tonic::Status::unavailable)?;
                    let request = pb::IdentifyRequest {
                        shard_id,
                        reason: reason.into(),
                    };
                    client
                        .acquire_identify(grpc::with_deadline(request, grpc::IDENTIFY_DEADLINE))
                        .await
                };
                match granted.await {
                    Ok(_) => return,
                    Err(status) => {
                        tracing::warn!(shard_id, error = %status, "identify permit not granted; retrying");
                        if link.next_coordinator(Some(&status)) && !followed {
                            followed = true;
                            continue;
                        }
                    }
                }
                followed = false;
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
    /// The cluster's store (the leader's on the embedded store, else ScyllaDB) and this node's
    /// view of departed guilds, refreshed from it when a shard arrives (its last owner may
    /// have seen guilds leave).
    pub(crate) store: Arc<dyn Store>,
    pub(crate) departures: Arc<Departures>,
    pub(crate) ops_addr: SocketAddr,
    /// The first registration, made before the shards' supervisor started.
    pub(crate) joined: pb::RegisterReply,
    /// The cluster's shard count as this node knows it: `joined`'s until a resharding
    /// completes.
    /// Shared with the guild actors ([`protonn_actors::Services::shard_count`]).
    pub(crate) shard_count: protonn_actors::ShardCount,
}

/// Shard (with its set's count) → the ownership epoch this node runs it under.
type Epochs = Arc<Mutex<HashMap<ShardId, u64>>>;

impl Agent {
    /// Runs until the task is aborted: attach, follow instructions, reattach when the
    /// stream breaks; and, apart, stop every shard whenever the lease runs out.
    pub(crate) async fn run(self) {
        let epochs: Epochs = Arc::default();
        let checkpoints = Arc::new(PendingCheckpoints::default());
        let mut resume = ResumePoints::new(Arc::clone(&checkpoints));
        // Resume points go where the leader reads them: the store this node uses, which is
        // the leader's (through its store service) on the embedded store, or ScyllaDB.
        tokio::select! {
            () = self.keep_fence(&epochs) => {}
            () = self.follow_leaders(&epochs, &mut resume) => {}
            () = checkpoints.write_to(self.store.as_ref()) => {}
        }
    }

    /// Fences the node at each lapse of its lease, however the link is doing: a node whose
    /// heartbeats stopped being acknowledged stops its shards even while it still hears the
    /// leader (or believes it does).
    async fn keep_fence(&self, epochs: &Epochs) {
        loop {
            self.link.fence.lapsed().await;
            self.fence(epochs).await;
            self.link.fence.renewed().await;
        }
    }

    async fn follow_leaders(&self, epochs: &Epochs, resume: &mut ResumePoints) {
        let mut rates = Rates::default();
        let mut joined = Some(self.joined.clone());
        let mut pause = RETRY_START;
        loop {
            let reply = match joined.take() {
                Some(reply) => Ok(reply),
                None => self.link.register(self.ops_addr).await,
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(err) => {
                    tracing::error!(error = %err, "cannot rejoin the cluster");
                    self.fence(epochs).await;
                    return;
                }
            };
            match self.attached(&reply, epochs, &mut rates, resume).await {
                Ok(()) => {
                    pause = RETRY_START;
                    self.link.next_coordinator(None);
                }
                Err(status) => {
                    tracing::warn!(error = %status, "coordinator link lost; reattaching");
                    self.link.next_coordinator(Some(&status));
                }
            }
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
        resume: &mut ResumePoints,
    ) -> Result<(), tonic::Status> {
        let (reports, outbound) = mpsc::channel(64);
        let hello = pb::node_report::Report::Hello(pb::Hello {
            node_id: reply.node_id,
            session_key: reply.session_key.clone(),
        });
        let _ = reports.try_send(pb::NodeReport {
            report: Some(hello),
        });
        let mut client = self
            .link
            .client()
            .await
            .map_err(tonic::Status::unavailable)?;
        let attach = client.attach(ReceiverStream::new(outbound));
        let mut instructions = tokio::time::timeout(grpc::CALL_DEADLINE, attach)
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("attach not answered"))??
            .into_inner();
        tracing::info!(
            node_id = reply.node_id,
            epoch = reply.leader_epoch,
            "attached to the coordinator"
        );
        let interval = Duration::from_millis(u64::from(reply.heartbeat_interval_ms.max(10)));
        let mut heartbeat = tokio::time::interval(interval);
        // The leader acknowledges every heartbeat at once: a link this quiet is dead, even
        // if HTTP/2 has not noticed yet, and another coordinator may lead.
        let silence = (interval * 4).max(Duration::from_secs(1));
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let report = self.heartbeat(epochs, rates, resume).await;
                    if reports.send(pb::NodeReport { report: Some(report) }).await.is_err() {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(heard + silence) => {
                    return Err(tonic::Status::unavailable("the coordinator went silent"));
                }
                instruction = instructions.message() => match instruction? {
                    Some(instruction) => {
                        heard = Instant::now();
                        self.follow(instruction, epochs, &reports).await;
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    async fn heartbeat(
        &self,
        epochs: &Epochs,
        rates: &mut Rates,
        resume: &mut ResumePoints,
    ) -> pb::node_report::Report {
        let statuses: Vec<ShardStatus> = ractor::call_t!(
            self.supervisor,
            SupervisorMsg::Statuses,
            SHARD_CALL_TIMEOUT_MS
        )
        .unwrap_or_default();
        let epochs = epochs.lock().expect("epoch map poisoned").clone();
        let fence = &self.link.fence;
        let count = self.shard_count.get();
        // A resharding's new set, as the router sees its guilds switch.
        let progress: HashMap<u32, NewShardProgress> =
            if statuses.iter().any(|status| status.shard_count != count) {
                ractor::call_t!(
                    self.router,
                    RouterMsg::OverlapProgress,
                    SHARD_CALL_TIMEOUT_MS
                )
                .unwrap_or_default()
                .into_iter()
                .map(|shard| (shard.shard_id, shard))
                .collect()
            } else {
                HashMap::new()
            };
        let key = |status: &ShardStatus| ShardId::new(status.shard_id, status.shard_count);
        // A fenced shard's checkpoint is not this node's to give or to store: another node
        // may already run the session further. Resume points are the cluster's set's: a
        // new set's shard has none until its resharding completes.
        resume.observe(
            statuses
                .iter()
                .filter(|status| fence.may_run(status.shard_id) && status.shard_count == count)
                .filter_map(|status| {
                    let epoch = *epochs.get(&key(status))?;
                    Some((status.shard_id, epoch, status.checkpoint.clone()?))
                })
                .collect(),
        );
        let shards: Vec<pb::ShardReport> = statuses
            .into_iter()
            .map(|status| pb::ShardReport {
                shard_id: status.shard_id,
                epoch: epochs.get(&key(&status)).copied().unwrap_or(0),
                phase: status.phase.label().to_owned(),
                events_per_sec: if status.shard_count == count {
                    rates.observe(status.shard_id, status.checkpoint.as_ref())
                } else {
                    0.0
                },
                shard_count: status.shard_count,
                resharding: progress
                    .get(&status.shard_id)
                    .filter(|_| status.shard_count != count)
                    .map(|shard| pb::NewShardProgress {
                        guilds: shard.guilds as u32,
                        joined: shard.joined as u32,
                        switched: shard.switched as u32,
                    }),
                checkpoint: status
                    .checkpoint
                    .filter(|_| fence.may_run(status.shard_id) && status.shard_count == count)
                    .map(session_to_pb),
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
            seq: fence.heartbeat(),
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
            Some(pb::instruction::Instruction::RestShare(share)) => {
                self.rest_line
                    .set_rate(share.per_sec.max(rest_budget::MIN_SHARE));
                self.rest_guard
                    .apply_cluster(share.invalid_in_window, share.halted, share.resumes);
            }
            Some(pb::instruction::Instruction::Release(release)) => {
                self.release(release, epochs, reports)
            }
            Some(pb::instruction::Instruction::Lease(ack)) => {
                self.link.fence.acknowledged(ack.seq);
            }
            Some(pb::instruction::Instruction::Resharded(resharded)) => {
                self.resharded(resharded, epochs);
            }
            None => {}
        }
    }

    async fn start(&self, start: pb::StartShard, epochs: &Epochs) {
        let shard_id = start.shard_id;
        let count = self.shard_count.get();
        let set = if start.shard_count == 0 {
            count
        } else {
            start.shard_count
        };
        let Some(shard) = ShardId::new_checked(shard_id, set) else {
            tracing::warn!(
                shard_id,
                shard_count = set,
                "start of a shard out of its set refused"
            );
            return;
        };
        {
            let mut epochs = epochs.lock().expect("epoch map poisoned");
            if epochs
                .get(&shard)
                .is_some_and(|&known| known >= start.epoch)
            {
                tracing::warn!(
                    shard_id,
                    epoch = start.epoch,
                    "start with a stale epoch refused"
                );
                return;
            }
            epochs.insert(shard, start.epoch);
        }
        if set != count {
            // A resharding's new set: the router takes both sets' events from now on, each
            // guild from one of them. Cast before the shard starts, so it comes first.
            if let Err(err) = self.router.cast(RouterMsg::Overlap {
                from: count,
                to: set,
            }) {
                tracing::error!(shard_id, error = %err, "guild router unreachable");
            }
        }
        self.link.fence.readmit(shard_id);
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
        // Cast before the shard starts, so the router has it ahead of the shard's events.
        let reload = RouterMsg::ShardAdopted {
            shard_id,
            shard_count: set,
        };
        if let Err(err) = self.router.cast(reload) {
            tracing::error!(shard_id, error = %err, "guild router unreachable");
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
                shard,
                session,
                seen_up_to: start.seen_up_to,
                reply,
            },
            SHARD_CALL_TIMEOUT_MS
        );
        match adopted {
            Ok(Ok(())) => {
                tracing::info!(
                    shard_id,
                    shard_count = set,
                    epoch = start.epoch,
                    "shard started"
                )
            }
            Ok(Err(err)) => tracing::warn!(shard_id, error = %err, "shard not started"),
            Err(err) => tracing::warn!(shard_id, error = %err, "shard supervisor did not answer"),
        }
    }

    /// Drains the shard on its own task (a drain waits for Discord's close and for every
    /// read event to reach the guild actors) and reports the session.
    fn release(
        &self,
        release: pb::ReleaseShard,
        epochs: &Epochs,
        reports: &mpsc::Sender<pb::NodeReport>,
    ) {
        let pb::ReleaseShard {
            shard_id,
            epoch,
            shard_count,
        } = release;
        let count = self.shard_count.get();
        let set = if shard_count == 0 { count } else { shard_count };
        let refused = move |reason: &str| {
            pb::node_report::Report::ReleaseFailed(pb::ReleaseFailed {
                shard_id,
                epoch,
                reason: reason.to_owned(),
            })
        };
        let Some(shard) = ShardId::new_checked(shard_id, set) else {
            let _ = reports.try_send(pb::NodeReport {
                report: Some(refused("no such shard")),
            });
            return;
        };
        // A shard this node runs under no epoch (the leader never gave it, or a fence
        // could not stop it) is stopped whatever epoch the leader names.
        let current = epochs
            .lock()
            .expect("epoch map poisoned")
            .get(&shard)
            .copied();
        if current.is_some_and(|current| current != epoch) {
            let _ = reports.try_send(pb::NodeReport {
                report: Some(refused("running under another epoch")),
            });
            return;
        }
        let supervisor = self.supervisor.clone();
        let cache = Arc::clone(&self.cache);
        let epochs = Arc::clone(epochs);
        let reports = reports.clone();
        tokio::spawn(async move {
            let drained = ractor::call_t!(
                supervisor,
                |reply| SupervisorMsg::Drain { shard, reply },
                SHARD_CALL_TIMEOUT_MS
            );
            let report = match drained {
                Ok(Ok(session)) => {
                    forget_epoch(&epochs, shard, epoch);
                    tracing::info!(shard_id, sequence = session.sequence, "shard released");
                    pb::node_report::Report::Released(pb::Released {
                        shard_id,
                        epoch,
                        session: Some(session_to_pb(session)),
                        cache: protonn_actors::take_shard_cache(&cache, shard_id, set),
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

    /// A resharding is over: the router settles on the set that stays, the shards of the
    /// other set close (their sessions are not handed to anyone), and the ones kept run
    /// under the epochs the leader stored for them.
    fn resharded(&self, resharded: pb::Resharded, epochs: &Epochs) {
        let count = resharded.shard_count;
        let previous = self
            .shard_count
            .replace(shard_counts(count, resharded.earlier));
        if let Err(err) = self.router.cast(RouterMsg::Settle { shard_count: count }) {
            tracing::error!(error = %err, "guild router unreachable");
        }
        let leaving: Vec<(ShardId, u64)> = {
            let mut epochs = epochs.lock().expect("epoch map poisoned");
            for given in &resharded.epochs {
                if let Some(shard) = ShardId::new_checked(given.shard_id, count) {
                    epochs.insert(shard, given.epoch);
                }
            }
            epochs
                .iter()
                .filter(|(shard, _)| shard.total() != count)
                .map(|(&shard, &epoch)| (shard, epoch))
                .collect()
        };
        tracing::info!(
            from = previous,
            shard_count = count,
            closing = leaving.len(),
            "resharding over"
        );
        for (shard, epoch) in leaving {
            let supervisor = self.supervisor.clone();
            let epochs = Arc::clone(epochs);
            tokio::spawn(async move {
                match ractor::call_t!(
                    supervisor,
                    |reply| SupervisorMsg::Drain { shard, reply },
                    SHARD_CALL_TIMEOUT_MS
                ) {
                    Ok(Ok(_) | Err(ShardError::UnknownShard(_) | ShardError::NoSession(_))) => {
                        forget_epoch(&epochs, shard, epoch);
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(shard_id = shard.number(), error = %err, "shard of the old set not closed")
                    }
                    Err(err) => {
                        tracing::warn!(shard_id = shard.number(), error = %err, "shard of the old set not closed")
                    }
                }
            });
        }
    }

    /// The lease ran out: stop every shard at once (sessions kept resumable), before the
    /// leader may give them to other nodes. The data path is already shut by the lapse
    /// itself (see `fence.rs`); this closes the connections. A shard keeps its epoch until
    /// it has stopped, so one that would not stop can still be released by the leader.
    async fn fence(&self, epochs: &Epochs) {
        let statuses: Vec<ShardStatus> = ractor::call_t!(
            self.supervisor,
            SupervisorMsg::Statuses,
            SHARD_CALL_TIMEOUT_MS
        )
        .unwrap_or_default();
        let known = epochs.lock().expect("epoch map poisoned").clone();
        let mut shards: BTreeSet<(u32, u32)> = statuses
            .iter()
            .map(|status| (status.shard_id, status.shard_count))
            .collect();
        shards.extend(known.keys().map(|shard| (shard.number(), shard.total())));
        self.link
            .fence
            .trip(shards.iter().map(|&(shard_id, _)| shard_id));
        tracing::error!(
            shards = shards.len(),
            "lease lapsed (no heartbeat acknowledged in time); stopping every shard"
        );
        let mut stopping = JoinSet::new();
        for (shard_id, shard_count) in shards {
            let supervisor = self.supervisor.clone();
            let shard = ShardId::new(shard_id, shard_count);
            stopping.spawn(async move {
                let drained = ractor::call_t!(
                    supervisor,
                    |reply| SupervisorMsg::Drain { shard, reply },
                    SHARD_CALL_TIMEOUT_MS
                );
                (shard, drained)
            });
        }
        while let Some(joined) = stopping.join_next().await {
            let Ok((shard, drained)) = joined else {
                continue;
            };
            let shard_id = shard.number();
            match drained {
                Ok(Ok(_) | Err(ShardError::UnknownShard(_) | ShardError::NoSession(_))) => {
                    if let Some(&epoch) = known.get(&shard) {
                        forget_epoch(epochs, shard, epoch);
                    }
                }
                Ok(Err(err)) => tracing::warn!(shard_id, error = %err, "fenced shard not stopped"),
                Err(err) => tracing::warn!(shard_id, error = %err, "fenced shard not stopped"),
            }
        }
    }
}

/// Forgets a released shard's epoch, unless the leader has given the shard back meanwhile.
fn forget_epoch(epochs: &Epochs, shard: ShardId, epoch: u64) {
    let mut epochs = epochs.lock().expect("epoch map poisoned");
    if epochs.get(&shard).is_none_or(|&current| current == epoch) {
        epochs.remove(&shard);
    }
}

/// The counts a leader told: `earlier` unknown when it did not say (a leader from before
/// they were kept).
pub(crate) fn shard_counts(now: u32, earlier: Option<pb::EarlierShardCounts>) -> ShardCounts {
    ShardCounts {
        now,
        earlier: earlier.filter(|e| !e.unknown).map(|e| e.counts),
    }
}

/// The leader's fence deadline (two thirds of its failure timeout from a leader that does
/// not say).
fn fence_deadline(reply: &pb::RegisterReply) -> Duration {
    let ms = if reply.fence_ms > 0 {
        reply.fence_ms
    } else {
        reply.failure_timeout_ms * 2 / 3
    };
    Duration::from_millis(u64::from(ms))
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
