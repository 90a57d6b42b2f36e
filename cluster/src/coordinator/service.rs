//! The gRPC face of the coordinator: checks each call, then hands it to the control loop or
//! the identify scheduler.

use std::sync::Arc;

use protonn_shard::{IdentifyReason, IdentifyScheduler, LocalScheduler};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use protonn_storage::Store;

use super::control::ControlMsg;
use super::leader::{LeaderView, not_leader};
use crate::grpc::{Scope, pb};
use crate::remote_store::{self, StoreCall};

/// Instructions queued for one node before it is considered not keeping up.
const LINK_CAPACITY: usize = 256;

/// What a leading coordinator serves with.
pub(super) struct Leading {
    pub(super) control: mpsc::Sender<ControlMsg>,
    pub(super) scheduler: Arc<LocalScheduler>,
    /// The store this coordinator opened, served to the nodes; `None` when they open it
    /// themselves (ScyllaDB).
    pub(super) store: Option<Arc<dyn Store>>,
}

/// What the services serve with while this coordinator leads, or the standby's answer.
pub(super) fn serving<'a>(
    leading: &'a OnceCell<Leading>,
    view: &LeaderView,
) -> Result<&'a Leading, Status> {
    match leading.get() {
        Some(leading) if view.leads() => Ok(leading),
        _ => Err(not_leader(view)),
    }
}

pub(super) struct CoordinatorService {
    leading: Arc<OnceCell<Leading>>,
    view: Arc<LeaderView>,
}

impl CoordinatorService {
    pub(super) fn new(leading: Arc<OnceCell<Leading>>, view: Arc<LeaderView>) -> Self {
        Self { leading, view }
    }

    fn leading(&self) -> Result<&Leading, Status> {
        serving(&self.leading, &self.view)
    }

    /// Sends `message` to the control loop and waits for its answer.
    async fn ask<T>(
        &self,
        message: impl FnOnce(oneshot::Sender<T>) -> ControlMsg,
    ) -> Result<T, Status> {
        let (reply, answer) = oneshot::channel();
        self.leading()?
            .control
            .send(message(reply))
            .await
            .map_err(|_| Status::unavailable("the coordinator is stopping"))?;
        answer
            .await
            .map_err(|_| Status::unavailable("the coordinator is stopping"))
    }
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        Scope::of(&request).require_node("joining as a node")?;
        let request = request.into_inner();
        if request.name.is_empty() || request.name.len() > 253 {
            return Err(Status::invalid_argument("a node name is 1 to 253 bytes"));
        }
        let reply = self
            .ask(|reply| ControlMsg::Register {
                name: request.name,
                ops_address: request.ops_address,
                reply,
            })
            .await?;
        Ok(Response::new(reply))
    }

    type AttachStream = ReceiverStream<Result<pb::Instruction, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::NodeReport>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        Scope::of(&request).require_node("attaching as a node")?;
        let control = self.leading()?.control.clone();
        let mut reports = request.into_inner();
        let Some(pb::NodeReport {
            report: Some(pb::node_report::Report::Hello(hello)),
        }) = reports.message().await?
        else {
            return Err(Status::invalid_argument("the first report must be a Hello"));
        };
        let node_id = hello.node_id;
        let (link, instructions) = mpsc::channel(LINK_CAPACITY);
        let attached = self
            .ask(|reply| ControlMsg::Attach {
                node_id,
                session_key: hello.session_key,
                link,
                reply,
            })
            .await?;
        attached?;
        tokio::spawn(async move {
            // Ends with the node's stream; the node then misses heartbeats and is handled
            // as lost unless it reattaches.
            while let Ok(Some(report)) = reports.message().await {
                let Some(report) = report.report else {
                    continue;
                };
                if control
                    .send(ControlMsg::Report { node_id, report })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(instructions)))
    }

    async fn acquire_identify(
        &self,
        request: Request<pb::IdentifyRequest>,
    ) -> Result<Response<pb::IdentifyGrant>, Status> {
        Scope::of(&request).require_node("identifying a shard")?;
        let scheduler = Arc::clone(&self.leading()?.scheduler);
        let request = request.into_inner();
        let reason = match pb::IdentifyReason::try_from(request.reason) {
            Ok(pb::IdentifyReason::InvalidSession) => IdentifyReason::InvalidSession,
            _ => IdentifyReason::Startup,
        };
        // A cancelled call drops this future, which withdraws the request.
        scheduler.acquire(request.shard_id, reason).await;
        Ok(Response::new(pb::IdentifyGrant {}))
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainReply>, Status> {
        // An operator drains any node; a node only itself, proven by its registration's key.
        let scope = Scope::of(&request);
        scope.require_node("draining a node")?;
        let session_key = (scope == Scope::Node).then(|| request.get_ref().session_key.clone());
        let name = request.into_inner().name;
        let shards_moved = self
            .ask(|reply| ControlMsg::Drain {
                name,
                session_key,
                reply,
            })
            .await??;
        Ok(Response::new(pb::DrainReply { shards_moved }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(self.ask(ControlMsg::Status).await?))
    }

    async fn resume_rest(
        &self,
        request: Request<pb::ResumeRestRequest>,
    ) -> Result<Response<pb::RestStatus>, Status> {
        Scope::of(&request).require_operator("resuming REST")?;
        Ok(Response::new(self.ask(ControlMsg::ResumeRest).await?))
    }

    async fn reshard(
        &self,
        request: Request<pb::ReshardRequest>,
    ) -> Result<Response<pb::ReshardStatus>, Status> {
        Scope::of(&request).require_operator("resharding")?;
        let shards = request.into_inner().shards;
        let startups_left = self.leading()?.scheduler.startups_left();
        let answer = self
            .ask(|reply| ControlMsg::Reshard {
                shards,
                startups_left,
                reply,
            })
            .await??;
        self.with_floor(answer)
    }

    async fn reshard_progress(
        &self,
        request: Request<pb::ReshardProgressRequest>,
    ) -> Result<Response<pb::ReshardStatus>, Status> {
        Scope::of(&request).require_operator("reading a resharding's progress")?;
        let answer = self.ask(ControlMsg::ReshardProgress).await??;
        self.with_floor(answer)
    }

    async fn abort_reshard(
        &self,
        request: Request<pb::AbortReshardRequest>,
    ) -> Result<Response<pb::ReshardStatus>, Status> {
        Scope::of(&request).require_operator("aborting a resharding")?;
        let answer = self.ask(ControlMsg::AbortReshard).await??;
        self.with_floor(answer)
    }
}

impl CoordinatorService {
    /// The resharding with the least time its new set's IDENTIFYs take under this leader's
    /// identify scheduler.
    fn with_floor(
        &self,
        mut resharding: pb::ReshardStatus,
    ) -> Result<Response<pb::ReshardStatus>, Status> {
        if resharding.known {
            let floor = self.leading()?.scheduler.floor(resharding.to);
            resharding.identify_floor_ms = floor.as_millis() as u64;
        }
        Ok(Response::new(resharding))
    }
}

/// The coordinator's store, served to nodes while it leads.
pub(super) struct StorageService {
    leading: Arc<OnceCell<Leading>>,
    view: Arc<LeaderView>,
}

impl StorageService {
    pub(super) fn new(leading: Arc<OnceCell<Leading>>, view: Arc<LeaderView>) -> Self {
        Self { leading, view }
    }
}

#[tonic::async_trait]
impl pb::storage_server::Storage for StorageService {
    async fn call(
        &self,
        request: Request<pb::StoreCall>,
    ) -> Result<Response<pb::StoreAnswer>, Status> {
        let store = serving(&self.leading, &self.view)?
            .store
            .clone()
            .ok_or_else(|| {
                Status::failed_precondition(
                    "this cluster's store is shared (ScyllaDB): open it, not the coordinator",
                )
            })?;
        let scope = Scope::of(&request);
        let call: StoreCall = serde_json::from_slice(&request.into_inner().call)
            .map_err(|err| Status::invalid_argument(format!("unreadable store call: {err}")))?;
        call.permitted(scope)?;
        let answer = remote_store::serve(store.as_ref(), call).await;
        Ok(Response::new(pb::StoreAnswer {
            answer: serde_json::to_vec(&answer).expect("store answers serialise to JSON"),
        }))
    }
}
