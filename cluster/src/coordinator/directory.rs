//! The guild-call directory the leader serves: where each node serves guild calls (as the
//! nodes advertise it) and the shard map built from the current assignment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, oneshot};
use tonic::{Request, Response, Status};

use super::control::{ControlMsg, node_id};
use super::leader::LeaderView;
use super::service::{Leading, serving};
use crate::grpc::{Scope, pb};

/// Longest address a node may advertise (`host:port`; a DNS name is at most 253 bytes).
const MAX_ADDRESS: usize = 300;

pub(super) struct DirectoryService {
    leading: Arc<OnceCell<Leading>>,
    view: Arc<LeaderView>,
    /// Node id → where it serves guild calls. In memory: nodes repeat it every few seconds,
    /// so a new leader knows it as soon as they do.
    addresses: Mutex<HashMap<u64, String>>,
}

impl DirectoryService {
    pub(super) fn new(leading: Arc<OnceCell<Leading>>, view: Arc<LeaderView>) -> Self {
        Self {
            leading,
            view,
            addresses: Mutex::new(HashMap::new()),
        }
    }
}

#[tonic::async_trait]
impl pb::guild_directory_server::GuildDirectory for DirectoryService {
    async fn advertise(
        &self,
        request: Request<pb::AdvertiseRequest>,
    ) -> Result<Response<pb::AdvertiseReply>, Status> {
        Scope::of(&request).require_node("advertising a guild address")?;
        // Only the leader's directory is asked: a standby sends the node to it.
        let leading = serving(&self.leading, &self.view)?;
        let request = request.into_inner();
        let address = request.guild_address;
        if request.node_name.is_empty()
            || address.is_empty()
            || address.len() > MAX_ADDRESS
            || address.contains(['/', ' '])
        {
            return Err(Status::invalid_argument(
                "a node name and a guild address host:port are required",
            ));
        }
        // Only the node itself says where it serves: its registration's key proves it.
        let (reply, answer) = oneshot::channel();
        leading
            .control
            .send(ControlMsg::Verify {
                name: request.node_name.clone(),
                session_key: request.session_key,
                reply,
            })
            .await
            .map_err(|_| Status::unavailable("the coordinator is stopping"))?;
        if !answer.await.unwrap_or(false) {
            return Err(Status::permission_denied(
                "not this node's registration: register again",
            ));
        }
        self.addresses
            .lock()
            .expect("addresses poisoned")
            .insert(node_id(&request.node_name), address);
        Ok(Response::new(pb::AdvertiseReply {}))
    }

    async fn shard_map(
        &self,
        _request: Request<pb::ShardMapRequest>,
    ) -> Result<Response<pb::ShardMapReply>, Status> {
        let leading = serving(&self.leading, &self.view)?;
        let (reply, answer) = oneshot::channel();
        leading
            .control
            .send(ControlMsg::Status(reply))
            .await
            .map_err(|_| Status::unavailable("the coordinator is stopping"))?;
        let status = answer
            .await
            .map_err(|_| Status::unavailable("the coordinator is stopping"))?;
        let addresses = self.addresses.lock().expect("addresses poisoned");
        let shards: Vec<pb::ShardRoute> = status
            .shards
            .iter()
            .map(|shard| pb::ShardRoute {
                shard_id: shard.shard_id,
                guild_address: addresses.get(&shard.node_id).cloned().unwrap_or_default(),
                epoch: shard.epoch,
                moving: shard.moving,
            })
            .collect();
        Ok(Response::new(pb::ShardMapReply {
            leader_epoch: status.leader_epoch,
            shard_count: shards.len() as u32,
            shards,
        }))
    }
}
