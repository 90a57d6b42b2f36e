//! The coordinator's state machine: one task owns membership and shard ownership, so every
//! decision is made against one consistent view. gRPC handlers only send it messages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use protonn_storage::{ClusterRepo, NodeRecord, ReshardPhase, Resharding, StorageError, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Status;

use super::balance::{self, ShardLoad, Step};
use super::reshard;
use crate::grpc::pb;
use crate::metrics::{
    HANDOFF_SECONDS, HANDOFFS, MOVES, NODE_STATES, NODES, REST_BUDGET_USED, SHARD_STATES, SHARDS,
};
use crate::rest_budget;
use protonn_actors::rest::SlidingCount;

/// How the coordinator paces the cluster.
#[derive(Clone, Debug)]
pub(crate) struct ControlSettings {
    pub(crate) shard_count: u32,
    pub(crate) heartbeat_interval: Duration,
    /// A node silent this long is lost: its shards resume elsewhere.
    pub(crate) failure_timeout: Duration,
    /// A node fences itself when its newest acknowledged heartbeat is this old.
    pub(crate) fence: Duration,
    /// Shards are not placed until this many nodes are attached (or the formation grace
    /// ends), so a cold cluster does not pile every shard on the first node to arrive.
    pub(crate) min_nodes: usize,
    pub(crate) formation_grace: Duration,
    /// Handoffs under way at once.
    pub(crate) max_moves: usize,
    /// Discord's global REST limit for the bot; the nodes' shares add up to
    /// [`rest_budget::cluster_budget`] of it.
    pub(crate) rest_global_per_sec: f64,
}

/// Weight of a new events/s reading in a shard's smoothed rate (per heartbeat).
const RATE_SMOOTHING: f64 = 0.2;

pub(crate) type InstructionTx = mpsc::Sender<Result<pb::Instruction, Status>>;

pub(crate) enum ControlMsg {
    Register {
        name: String,
        ops_address: String,
        reply: oneshot::Sender<pb::RegisterReply>,
    },
    Attach {
        node_id: u64,
        session_key: String,
        link: InstructionTx,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    Report {
        node_id: u64,
        report: pb::node_report::Report,
    },
    Drain {
        name: String,
        /// `None` from an operator; a node draining itself presents its registration's key.
        session_key: Option<String>,
        reply: oneshot::Sender<Result<u32, Status>>,
    },
    /// Whether `session_key` is the key of node `name`'s current registration.
    Verify {
        name: String,
        session_key: String,
        reply: oneshot::Sender<bool>,
    },
    Status(oneshot::Sender<pb::ClusterStatus>),
    ResumeRest(oneshot::Sender<pb::RestStatus>),
    /// Starts a resharding to `shards`; `startups_left` is the identify budget above the
    /// reserve.
    Reshard {
        shards: u32,
        startups_left: u32,
        reply: oneshot::Sender<Result<pb::ReshardStatus, Status>>,
    },
    ReshardProgress(oneshot::Sender<Result<pb::ReshardStatus, Status>>),
    AbortReshard(oneshot::Sender<Result<pb::ReshardStatus, Status>>),
}

struct NodeEntry {
    name: String,
    /// The key its newest registration got: its later calls carry it. Empty for a node
    /// known only from storage (a new leader's), which must register again to attach.
    session_key: String,
    link: Option<InstructionTx>,
    last_seen: Instant,
    draining: bool,
    events_per_sec: f64,
    rss_bytes: u64,
    rest_demand: f64,
    rest_share: f64,
    /// Told the count of now since its registration (`Resharded`): it still ran the set of
    /// a resharding that ended without it.
    settling: bool,
}

#[derive(Default)]
struct ShardEntry {
    owner: Option<u64>,
    epoch: u64,
    ready: bool,
    events_per_sec: f64,
    /// Where a crashed owner's successor resumes: the second newest checkpoint the owner
    /// reported, at least one heartbeat old, so its events have left the guild mailboxes.
    resume_from: Option<pb::Session>,
    /// The newest checkpoint: replayed events up to it are possible duplicates.
    latest: Option<pb::Session>,
    moving: Option<Moving>,
    /// The released shard's cached guilds, for its next owner.
    cache: Vec<u8>,
    /// When the current owner was given the shard; it has until a few heartbeats later to
    /// report it running.
    assigned_at: Option<Instant>,
}

/// A drain call waiting for its node to hold no shard.
struct Drain {
    node_id: u64,
    /// Shards the node held when the drain began.
    held: u32,
    reply: oneshot::Sender<Result<u32, Status>>,
}

struct Moving {
    from: u64,
    to: u64,
    since: Instant,
}

/// A resharding's new set as the leader runs it: each new shard `k` on the node of old shard
/// `k % from` (the count grows by a multiple), whose guilds are the only ones it gets, so
/// that node's router sees both sets' events of every guild it switches. Owners and epochs
/// are in memory; the store's record keeps which shards are ready and switched, and a new
/// leader finds the owners again in the heartbeats.
struct NewSet {
    record: Resharding,
    shards: Vec<NewShard>,
    /// Nothing is placed before this: a new leader first hears which nodes run which.
    place_after: Instant,
    /// Starts so far: each start's epoch is above every earlier one of this leader's.
    starts: u64,
    /// The store's count is `to` already (see [`Control::load`]): it can only complete,
    /// never abort.
    committed: bool,
}

#[derive(Clone, Default)]
struct NewShard {
    owner: Option<u64>,
    epoch: u64,
    /// Its session is up and every guild its READY named has joined (sticky).
    ready: bool,
    /// The new set handles every one of those guilds (sticky).
    switched: bool,
    assigned_at: Option<Instant>,
}

impl NewSet {
    fn new(record: Resharding, place_after: Instant) -> Self {
        let shards = (0..record.to)
            .map(|id| NewShard {
                ready: record.ready.binary_search(&id).is_ok(),
                switched: record.switched.binary_search(&id).is_ok(),
                ..NewShard::default()
            })
            .collect();
        Self {
            record,
            shards,
            place_after,
            starts: 0,
            committed: false,
        }
    }

    /// The shards whose flag `of` holds, ascending, as the record lists them.
    fn listed(&self, of: fn(&NewShard) -> bool) -> Vec<u32> {
        (0..self.record.to)
            .filter(|&id| of(&self.shards[id as usize]))
            .collect()
    }
}

pub(crate) struct Control {
    store: Arc<dyn ClusterRepo>,
    settings: ControlSettings,
    leader_epoch: u64,
    nodes: BTreeMap<u64, NodeEntry>,
    shards: Vec<ShardEntry>,
    drains: Vec<Drain>,
    formed: bool,
    started: Instant,
    handoffs: u64,
    rest: RestStanding,
    reshard: Option<NewSet>,
    /// The shard counts the cluster had before the one in force, which nodes read rows
    /// of ([`protonn_storage::earlier_counts`]).
    earlier_counts: pb::EarlierShardCounts,
}

/// The bot's invalid REST responses across nodes, and the halt after a 401. Held by the
/// leader only: a new leader starts with an empty count (each node still counts its own).
#[derive(Default)]
struct RestStanding {
    invalid: SlidingCount,
    halted: bool,
    resumes: u64,
}

impl RestStanding {
    fn status(&mut self) -> pb::RestStatus {
        pb::RestStatus {
            invalid_in_window: self.invalid.total(),
            halted: self.halted,
            resumes: self.resumes,
        }
    }
}

/// Whether `key` is the key of `node`'s newest registration (compared in constant time).
fn holds_key(node: &NodeEntry, key: &str) -> bool {
    !node.session_key.is_empty()
        && crate::grpc::constant_time_eq(node.session_key.as_bytes(), key.as_bytes())
}

/// The counts before `count` as nodes are told them.
fn earlier_pb(record: Option<&Resharding>, count: u32) -> pb::EarlierShardCounts {
    let earlier = protonn_storage::earlier_counts(record, count);
    pb::EarlierShardCounts {
        unknown: earlier.is_none(),
        counts: earlier.unwrap_or_default(),
    }
}

/// The id a node name always maps to (FNV-1a): a restarted pod keeps its identity without
/// a lookup.
pub(crate) fn node_id(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash.max(1)
}

impl Control {
    /// Claims the assignments for `leader_epoch` and loads them. Owners from the table count as alive until they miss
    /// the failure timeout, so a new leader does not move shards whose nodes are fine.
    pub(crate) async fn load(
        store: Arc<dyn ClusterRepo>,
        mut settings: ControlSettings,
        leader_epoch: u64,
    ) -> Result<Self, StorageError> {
        // From here on a leader that froze past its lease can no longer assign.
        store.claim_assignments(leader_epoch).await?;
        let now = Instant::now();
        let record = store.resharding().await?;
        // A completion stopped between the count's write and the record's (ScyllaDB writes
        // the count first): the old set still runs and the new one has no assignment yet,
        // so this leader leads the old count and finishes the resharding.
        let committed = record
            .as_ref()
            .is_some_and(|r| !r.phase.is_over() && r.to == settings.shard_count);
        if let Some(r) = record.as_ref().filter(|_| committed) {
            tracing::warn!(
                from = r.from,
                to = r.to,
                "the last leader stored the new shard count but not the completion; finishing it"
            );
            settings.shard_count = r.from;
        }
        let mut shards: Vec<ShardEntry> = (0..settings.shard_count)
            .map(|_| ShardEntry::default())
            .collect();
        let mut nodes = BTreeMap::new();
        for record in store.nodes().await? {
            nodes.insert(
                record.node_id,
                NodeEntry {
                    name: record.address.clone(),
                    session_key: String::new(),
                    link: None,
                    last_seen: now,
                    draining: record.draining,
                    events_per_sec: 0.0,
                    rss_bytes: 0,
                    rest_demand: 0.0,
                    rest_share: 0.0,
                    settling: false,
                },
            );
        }
        for assignment in store.assignments().await? {
            let Some(shard) = shards.get_mut(assignment.shard_id as usize) else {
                continue;
            };
            shard.epoch = assignment.epoch;
            shard.owner = nodes
                .contains_key(&assignment.node_id)
                .then_some(assignment.node_id);
            shard.assigned_at = Some(now);
            if let Some(checkpoint) = store.checkpoint(assignment.shard_id).await? {
                shard.resume_from = Some(pb::Session {
                    session_id: checkpoint.session_id,
                    sequence: checkpoint.sequence,
                    resume_url: checkpoint.resume_url,
                });
            }
        }
        let formed = shards.iter().any(|s| s.owner.is_some());
        // A resharding survives a failover: the new leader carries on from the record, placing
        // nothing until the nodes had the time to say which new shards they run.
        reshard::report(record.clone(), settings.shard_count);
        let earlier_counts = earlier_pb(record.as_ref(), settings.shard_count);
        let reshard = record
            .filter(|r| !r.phase.is_over() && r.from == settings.shard_count)
            .map(|r| NewSet {
                committed,
                ..NewSet::new(r, now + settings.failure_timeout)
            });
        Ok(Self {
            store,
            settings,
            leader_epoch,
            nodes,
            shards,
            drains: Vec::new(),
            formed,
            started: now,
            handoffs: 0,
            rest: RestStanding::default(),
            reshard,
            earlier_counts,
        })
    }

    /// Runs until every sender is gone; an error means this coordinator was superseded
    /// (a write was fenced) or storage failed, and it must stop leading.
    pub(crate) async fn run(
        mut self,
        mut inbox: mpsc::Receiver<ControlMsg>,
    ) -> Result<(), StorageError> {
        let mut tick = tokio::time::interval(self.settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = inbox.recv() => match message {
                    Some(message) => self.handle(message).await?,
                    None => return Ok(()),
                },
                _ = tick.tick() => self.tick().await?,
            }
        }
    }

    async fn handle(&mut self, message: ControlMsg) -> Result<(), StorageError> {
        match message {
            ControlMsg::Register {
                name,
                ops_address,
                reply,
            } => {
                let node_id = node_id(&name);
                self.store
                    .put_node(&NodeRecord {
                        node_id,
                        address: name.clone(),
                        last_heartbeat: Timestamp::now(),
                        draining: false,
                    })
                    .await?;
                let entry = self.nodes.entry(node_id).or_insert_with(|| NodeEntry {
                    name: name.clone(),
                    session_key: String::new(),
                    link: None,
                    last_seen: Instant::now(),
                    draining: false,
                    events_per_sec: 0.0,
                    rss_bytes: 0,
                    rest_demand: 0.0,
                    rest_share: 0.0,
                    settling: false,
                });
                entry.last_seen = Instant::now();
                entry.draining = false;
                entry.settling = false;
                entry.session_key = format!("{:032x}", rand::random::<u128>());
                let session_key = entry.session_key.clone();
                tracing::info!(node_id, %name, %ops_address, "node registered");
                let _ = reply.send(pb::RegisterReply {
                    node_id,
                    leader_epoch: self.leader_epoch,
                    shard_count: self.settings.shard_count,
                    heartbeat_interval_ms: self.settings.heartbeat_interval.as_millis() as u32,
                    failure_timeout_ms: self.settings.failure_timeout.as_millis() as u32,
                    fence_ms: self.settings.fence.as_millis() as u32,
                    session_key,
                    earlier: Some(self.earlier_counts.clone()),
                });
            }
            ControlMsg::Attach {
                node_id,
                session_key,
                link,
                reply,
            } => {
                let result = match self.nodes.get_mut(&node_id) {
                    Some(node) if !holds_key(node, &session_key) => Err(Status::permission_denied(
                        "not this node's registration: register again",
                    )),
                    Some(node) => {
                        node.link = Some(link);
                        node.last_seen = Instant::now();
                        Ok(())
                    }
                    None => Err(Status::failed_precondition(
                        "unknown node: register with this coordinator first",
                    )),
                };
                let _ = reply.send(result);
                self.publish();
            }
            ControlMsg::Report { node_id, report } => self.report(node_id, report).await?,
            ControlMsg::Verify {
                name,
                session_key,
                reply,
            } => {
                let held = self
                    .nodes
                    .get(&node_id(&name))
                    .is_some_and(|node| holds_key(node, &session_key));
                let _ = reply.send(held);
            }
            ControlMsg::Drain {
                name,
                session_key,
                reply,
            } => {
                let node_id = node_id(&name);
                if let Some(key) = session_key
                    && !self
                        .nodes
                        .get(&node_id)
                        .is_some_and(|node| holds_key(node, &key))
                {
                    let _ = reply.send(Err(Status::permission_denied(
                        "node credentials drain only the node itself; operators drain others (PROTONN_OPERATOR_TOKEN)",
                    )));
                    return Ok(());
                }
                let stranded = self.owned_by(node_id) > 0
                    && !self.accepting().iter().any(|&other| other != node_id);
                match self.nodes.get_mut(&node_id) {
                    Some(_) if stranded => {
                        let _ = reply.send(Err(Status::failed_precondition(
                            "no other node can take the shards",
                        )));
                    }
                    Some(node) => {
                        node.draining = true;
                        self.store
                            .put_node(&NodeRecord {
                                node_id,
                                address: name,
                                last_heartbeat: Timestamp::now(),
                                draining: true,
                            })
                            .await?;
                        let owned = self.owned_by(node_id) as u32;
                        self.drains.push(Drain {
                            node_id,
                            held: owned,
                            reply,
                        });
                        self.rebalance().await?;
                    }
                    None => {
                        let _ = reply.send(Err(Status::not_found(format!("no node named {name}"))));
                    }
                }
            }
            ControlMsg::Status(reply) => {
                let _ = reply.send(self.status());
            }
            ControlMsg::ResumeRest(reply) => {
                if self.rest.halted {
                    tracing::warn!("REST resumed by an operator");
                }
                self.rest.halted = false;
                self.rest.resumes += 1;
                self.share_rest_budget();
                let _ = reply.send(self.rest.status());
            }
            ControlMsg::Reshard {
                shards,
                startups_left,
                reply,
            } => {
                let count = self.settings.shard_count;
                let answer =
                    reshard::start(self.store.as_ref(), count, shards, startups_left).await;
                if answer.is_ok()
                    && let Some(record) = self.store.resharding().await?
                {
                    self.reshard = Some(NewSet::new(record, Instant::now()));
                }
                let _ = reply.send(answer);
            }
            ControlMsg::ReshardProgress(reply) => {
                let count = self.settings.shard_count;
                let _ = reply.send(reshard::progress(self.store.as_ref(), count).await);
            }
            ControlMsg::AbortReshard(reply) => {
                let count = self.settings.shard_count;
                let answer = reshard::abort(self.store.as_ref(), count).await;
                if answer.is_ok() {
                    self.reshard = None;
                    self.announce_resharded(count, &BTreeMap::new());
                }
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn report(
        &mut self,
        node_id: u64,
        report: pb::node_report::Report,
    ) -> Result<(), StorageError> {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return Ok(());
        };
        node.last_seen = Instant::now();
        match report {
            pb::node_report::Report::Hello(_) => {}
            pb::node_report::Report::Heartbeat(heartbeat) => {
                // Renews the node's lease from when it sent this heartbeat, which is before
                // `last_seen`: the node's fence deadline always ends before its failure
                // timeout here.
                self.send(
                    node_id,
                    pb::instruction::Instruction::Lease(pb::LeaseAck { seq: heartbeat.seq }),
                );
                let Some(node) = self.nodes.get_mut(&node_id) else {
                    return Ok(());
                };
                node.events_per_sec = heartbeat.events_per_sec;
                node.rest_demand = heartbeat.rest_demand_per_sec;
                self.rest.invalid.add(heartbeat.rest_invalid);
                if heartbeat.rest_unauthorized > 0 && !self.rest.halted {
                    tracing::error!(
                        node = node.name,
                        "a node got 401 from Discord: REST halted on every node until `protonn rest-resume`"
                    );
                    self.rest.halted = true;
                }
                node.rss_bytes = heartbeat.rss_bytes;
                self.heartbeat(node_id, heartbeat.shards).await?;
            }
            pb::node_report::Report::Released(released) => {
                self.released(node_id, released).await?;
                // The next moves start now, not at the next tick: a drain of many shards is
                // paced by the handoffs themselves.
                if self.formed {
                    self.rebalance().await?;
                }
                self.answer_drains();
            }
            pb::node_report::Report::ReleaseFailed(failed) => {
                let shard = &mut self.shards[failed.shard_id as usize];
                if shard.moving.as_ref().is_some_and(|m| m.from == node_id) {
                    tracing::warn!(shard_id = failed.shard_id, reason = %failed.reason, "handoff refused; retrying later");
                    counter!(HANDOFFS, "outcome" => "refused").increment(1);
                    shard.moving = None;
                }
            }
        }
        Ok(())
    }

    async fn heartbeat(
        &mut self,
        node_id: u64,
        reports: Vec<pb::ShardReport>,
    ) -> Result<(), StorageError> {
        if self.settle_if_behind(node_id, &reports) {
            return Ok(());
        }
        let grace = self.settings.failure_timeout;
        let mut running = BTreeSet::new();
        let mut running_new = BTreeSet::new();
        for report in reports {
            let count = match report.shard_count {
                0 => self.settings.shard_count,
                count => count,
            };
            if count != self.settings.shard_count {
                if self.new_shard_report(node_id, &report) {
                    running_new.insert(report.shard_id);
                } else {
                    tracing::warn!(
                        node_id,
                        shard_id = report.shard_id,
                        shard_count = count,
                        "node runs a shard of a set not running; releasing it"
                    );
                    self.release(node_id, report.shard_id, report.epoch, count);
                }
                continue;
            }
            let Some(shard) = self.shards.get_mut(report.shard_id as usize) else {
                // Not a shard of this cluster (a node started with another shard count):
                // it must not run, so it is stopped like any shard the node does not own.
                tracing::warn!(
                    node_id,
                    shard_id = report.shard_id,
                    "node runs a shard this cluster does not have; releasing it"
                );
                self.release(node_id, report.shard_id, report.epoch, count);
                continue;
            };
            running.insert(report.shard_id);
            if shard.owner == Some(node_id) && report.epoch == shard.epoch {
                let was_ready = shard.ready;
                shard.ready = report.phase == "ready";
                // Smoothed, and only from a shard that was already running: a shard's first
                // report after a move reads 0 events/s, which would make it look idle and
                // move shards back and forth.
                if was_ready && shard.ready {
                    shard.events_per_sec +=
                        RATE_SMOOTHING * (report.events_per_sec - shard.events_per_sec);
                }
                if let Some(checkpoint) = report.checkpoint {
                    // Keep the previous checkpoint of the same session as the resume point.
                    // In memory only: the owner stores it (`checkpoints.rs`), so a heartbeat
                    // costs the leader no storage I/O.
                    let previous = shard.latest.replace(checkpoint.clone());
                    let resume_from = previous
                        .filter(|p| p.session_id == checkpoint.session_id)
                        .unwrap_or(checkpoint);
                    shard.resume_from = Some(resume_from);
                }
            } else if shard.moving.as_ref().is_none_or(|m| m.from != node_id) {
                // The node runs a shard that is no longer its own (it was declared lost, or
                // a stale leader gave it): fence it. Its session is not used.
                tracing::warn!(
                    node_id,
                    shard_id = report.shard_id,
                    epoch = report.epoch,
                    "node runs a shard it does not own; releasing it"
                );
                self.release(node_id, report.shard_id, report.epoch, count);
            }
        }
        if let Some(set) = &mut self.reshard {
            for (shard_id, shard) in set.shards.iter_mut().enumerate() {
                let missing = shard.owner == Some(node_id)
                    && !running_new.contains(&(shard_id as u32))
                    && shard.assigned_at.is_some_and(|at| at.elapsed() > grace);
                if missing {
                    tracing::warn!(
                        node_id,
                        shard_id,
                        "node does not run a new shard it was given; placing it again"
                    );
                    shard.owner = None;
                }
            }
        }
        self.record_reshard_progress().await?;
        // Shards given to this node that it still does not run a failure timeout later run
        // nowhere (a start that never arrived, or a node that stopped them when cut off).
        // Sooner would race a slow start, and place the shard twice.
        for (shard_id, shard) in self.shards.iter_mut().enumerate() {
            let missing = shard.owner == Some(node_id)
                && shard.moving.is_none()
                && !running.contains(&(shard_id as u32))
                && shard.assigned_at.is_some_and(|at| at.elapsed() > grace);
            if missing {
                tracing::warn!(
                    node_id,
                    shard_id,
                    "node does not run a shard it owns; placing it again"
                );
                shard.owner = None;
                shard.ready = false;
            }
        }
        Ok(())
    }

    async fn released(&mut self, node_id: u64, released: pb::Released) -> Result<(), StorageError> {
        let shard_id = released.shard_id;
        let Some(shard) = self.shards.get_mut(shard_id as usize) else {
            return Ok(());
        };
        let expected = shard.moving.as_ref().is_some_and(|m| m.from == node_id)
            && released.epoch == shard.epoch;
        if !expected {
            return Ok(()); // A fenced shard stopping: nothing to hand over.
        }
        let moving = shard.moving.take().expect("checked above");
        shard.owner = None;
        shard.ready = false;
        shard.resume_from = released.session;
        // A drained shard handed over every event it read: nothing is a duplicate.
        shard.latest = None;
        shard.cache = released.cache;
        let to = if self.accepting().contains(&moving.to) {
            Some(moving.to)
        } else {
            // The target left meanwhile: the next round places the shard.
            None
        };
        if let Some(to) = to {
            self.start(shard_id, to, None).await?;
            self.handoffs += 1;
            counter!(HANDOFFS, "outcome" => "handed_over").increment(1);
            histogram!(HANDOFF_SECONDS).record(moving.since.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Gives `shard_id` to `to` under a new epoch and tells it to run it.
    async fn start(
        &mut self,
        shard_id: u32,
        to: u64,
        seen_up_to: Option<u64>,
    ) -> Result<(), StorageError> {
        let shard = &mut self.shards[shard_id as usize];
        let assignment = self
            .store
            .assign_shard(shard_id, to, shard.epoch, self.leader_epoch)
            .await?;
        shard.epoch = assignment.epoch;
        shard.owner = Some(to);
        shard.ready = false;
        shard.assigned_at = Some(Instant::now());
        let start = pb::StartShard {
            shard_id,
            epoch: assignment.epoch,
            resume: shard.resume_from.clone(),
            seen_up_to,
            cache: std::mem::take(&mut shard.cache),
            shard_count: self.settings.shard_count,
        };
        self.send(to, pb::instruction::Instruction::Start(start));
        Ok(())
    }

    /// Tells `node_id` to stop running shard `shard_id` of the set of `shard_count` shards,
    /// at `epoch`.
    fn release(&mut self, node_id: u64, shard_id: u32, epoch: u64, shard_count: u32) {
        let release = pb::ReleaseShard {
            shard_id,
            epoch,
            shard_count,
        };
        self.send(node_id, pb::instruction::Instruction::Release(release));
    }

    fn send(&mut self, node_id: u64, instruction: pb::instruction::Instruction) {
        let Some(link) = self
            .nodes
            .get_mut(&node_id)
            .and_then(|node| node.link.as_ref())
        else {
            return;
        };
        let message = pb::Instruction {
            leader_epoch: self.leader_epoch,
            instruction: Some(instruction),
        };
        // A full or closed link means the node is not keeping up or gone: it will miss its
        // heartbeats and be handled as lost.
        if link.try_send(Ok(message)).is_err() {
            tracing::warn!(node_id, "instruction not delivered");
        }
    }

    async fn tick(&mut self) -> Result<(), StorageError> {
        self.detect_lost().await?;
        self.expire_moves();
        if !self.formed {
            let attached = self.nodes.values().filter(|n| n.link.is_some()).count();
            self.formed = attached >= self.settings.min_nodes
                || (attached > 0 && self.started.elapsed() >= self.settings.formation_grace);
        }
        if self.formed {
            self.rebalance().await?;
            self.place_new_shards();
        }
        self.answer_drains();
        self.share_rest_budget();
        self.publish();
        Ok(())
    }

    /// Gives every attached node its share of the global REST rate for the next interval.
    fn share_rest_budget(&mut self) {
        let demands: Vec<(u64, f64)> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.link.is_some())
            .map(|(&id, node)| (id, node.rest_demand))
            .collect();
        let used: f64 = demands.iter().map(|d| d.1).sum();
        let global = self.settings.rest_global_per_sec;
        gauge!(REST_BUDGET_USED).set(used / global);
        let standing = self.rest.status();
        for (node_id, per_sec) in rest_budget::allot(rest_budget::cluster_budget(global), &demands)
        {
            if let Some(node) = self.nodes.get_mut(&node_id) {
                node.rest_share = per_sec;
            }
            let share = pb::RestShare {
                per_sec,
                invalid_in_window: standing.invalid_in_window,
                halted: standing.halted,
                resumes: standing.resumes,
            };
            self.send(node_id, pb::instruction::Instruction::RestShare(share));
        }
    }

    /// A handoff whose release was never answered (the report was lost with a broken link)
    /// is given up: the shard stays with its owner, and if the owner no longer runs it, the
    /// next heartbeats place it again from its checkpoint.
    fn expire_moves(&mut self) {
        let timeout = self.settings.failure_timeout * 3;
        for (shard_id, shard) in self.shards.iter_mut().enumerate() {
            if shard
                .moving
                .as_ref()
                .is_some_and(|m| m.since.elapsed() > timeout)
            {
                tracing::warn!(shard_id, "handoff not answered in time; given up");
                counter!(HANDOFFS, "outcome" => "timed_out").increment(1);
                shard.moving = None;
                shard.assigned_at = Some(Instant::now());
            }
        }
    }

    async fn detect_lost(&mut self) -> Result<(), StorageError> {
        let timeout = self.settings.failure_timeout;
        let lost: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.last_seen.elapsed() > timeout)
            .map(|(&id, _)| id)
            .collect();
        if !lost.is_empty() {
            // A leader that froze past its lease wakes to find every node lost: it must not
            // erase their records from a store its successor uses (assignments are fenced
            // in the store; node records are checked here).
            self.check_still_leading().await?;
        }
        for node_id in lost {
            let node = self.nodes.remove(&node_id).expect("listed above");
            self.store.remove_node(node_id).await?;
            let mut orphans = 0;
            for shard in &mut self.shards {
                if shard
                    .moving
                    .as_ref()
                    .is_some_and(|m| m.from == node_id || m.to == node_id)
                {
                    shard.moving = None;
                }
                if shard.owner == Some(node_id) {
                    shard.owner = None;
                    shard.ready = false;
                    orphans += 1;
                }
            }
            tracing::warn!(node_id, name = %node.name, orphans, "node lost; its shards resume elsewhere");
            if self.reshard.as_ref().is_some_and(|set| !set.committed) {
                // Its new shards' guilds were switching on its router: the old set takes
                // them back everywhere rather than have them run where no router sees both.
                // (One whose count is stored already places its lost new shards again.)
                self.abort_reshard("a node was lost").await?;
            }
        }
        Ok(())
    }

    /// [`StorageError::Fenced`] unless the leadership lease is still this leader's and runs.
    async fn check_still_leading(&self) -> Result<(), StorageError> {
        let lease = self.store.lease(super::LEASE).await?;
        match lease {
            Some(lease)
                if lease.epoch == self.leader_epoch && lease.expires_at > Timestamp::now() =>
            {
                Ok(())
            }
            other => Err(StorageError::Fenced {
                presented: self.leader_epoch,
                current: other.map_or(0, |lease| lease.epoch),
            }),
        }
    }

    fn accepting(&self) -> BTreeSet<u64> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.link.is_some() && !node.draining)
            .map(|(&id, _)| id)
            .collect()
    }

    async fn rebalance(&mut self) -> Result<(), StorageError> {
        let in_flight = self.shards.iter().filter(|s| s.moving.is_some()).count();
        let budget = self.settings.max_moves.saturating_sub(in_flight);
        // A shard under way counts on the node it goes to: left out, its old node would look
        // lighter than it is, and the rounds that run while moves are in flight would send
        // one shard too many, and then move it back (a RESUME more for nothing). A shard
        // whose owner is not attached (reattaching to a new leader, say) stays: its release
        // could not reach it, and it runs until the owner is declared lost.
        let attached: BTreeSet<u64> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.link.is_some())
            .map(|(&id, _)| id)
            .collect();
        let loads: Vec<ShardLoad> = self
            .shards
            .iter()
            .enumerate()
            .map(|(id, s)| ShardLoad {
                shard_id: id as u32,
                node_id: s.moving.as_ref().map_or(s.owner, |m| Some(m.to)),
                events_per_sec: s.events_per_sec,
                movable: s.ready
                    && s.moving.is_none()
                    && s.owner.is_some_and(|owner| attached.contains(&owner)),
            })
            .collect();
        let resharding = self.reshard.is_some();
        for step in balance::plan(&self.accepting(), &loads, budget) {
            match step {
                // A new shard runs beside the old shard its guilds come from (see `NewSet`).
                Step::Move { .. } if resharding => {}
                Step::Start { shard_id, to } => {
                    // After a crash, what the lost owner last reported may be replayed.
                    let shard = &mut self.shards[shard_id as usize];
                    let seen_up_to = shard
                        .latest
                        .take()
                        .filter(|latest| {
                            shard
                                .resume_from
                                .as_ref()
                                .is_some_and(|r| r.session_id == latest.session_id)
                        })
                        .map(|latest| latest.sequence);
                    let trigger = if shard.resume_from.is_some() {
                        "loss"
                    } else {
                        "start"
                    };
                    counter!(MOVES, "trigger" => trigger).increment(1);
                    self.start(shard_id, to, seen_up_to).await?;
                }
                Step::Move { shard_id, from, to } => {
                    let draining = self.nodes.get(&from).is_some_and(|n| n.draining);
                    let trigger = if draining { "drain" } else { "balance" };
                    counter!(MOVES, "trigger" => trigger).increment(1);
                    let shard = &mut self.shards[shard_id as usize];
                    shard.moving = Some(Moving {
                        from,
                        to,
                        since: Instant::now(),
                    });
                    let epoch = shard.epoch;
                    self.release(from, shard_id, epoch, self.settings.shard_count);
                }
            }
        }
        Ok(())
    }

    /// Starts each new shard without an owner on the node that runs the old shard its guilds
    /// come from, through the one identify scheduler like any start.
    fn place_new_shards(&mut self) {
        let accepting = self.accepting();
        let Some(set) = &mut self.reshard else {
            return;
        };
        if Instant::now() < set.place_after {
            return;
        }
        let (from, to) = (set.record.from, set.record.to);
        let mut starts = Vec::new();
        for (shard_id, shard) in set.shards.iter_mut().enumerate() {
            let old = &self.shards[shard_id % from as usize];
            let Some(node) = old.owner.filter(|node| {
                shard.owner.is_none() && old.moving.is_none() && accepting.contains(node)
            }) else {
                continue;
            };
            set.starts += 1;
            // Above every epoch an earlier leader (a smaller lease epoch) gave a new shard.
            shard.epoch = (self.leader_epoch << 32) + set.starts;
            shard.owner = Some(node);
            shard.assigned_at = Some(Instant::now());
            starts.push((node, shard_id as u32, shard.epoch));
        }
        for (node, shard_id, epoch) in starts {
            tracing::info!(
                shard_id,
                shard_count = to,
                node,
                "starting a shard of the new set"
            );
            let start = pb::StartShard {
                shard_id,
                epoch,
                resume: None,
                seen_up_to: None,
                cache: Vec::new(),
                shard_count: to,
            };
            self.send(node, pb::instruction::Instruction::Start(start));
        }
    }

    /// Whether `node_id` still runs a shard set that no resharding runs now, and was not
    /// told the count of now since it registered: it was not attached (or attached to a
    /// leader that fell) when the resharding ended. It is told now (`Resharded`, with the
    /// epochs of the shards it keeps), settles its router and closes the other set itself;
    /// this report is not read (its kept shards still name the new set's start epochs).
    /// Reports it sent before it heard are read as any: a release they cause names an
    /// epoch the node no longer runs the shard under, and it refuses it.
    fn settle_if_behind(&mut self, node_id: u64, reports: &[pb::ShardReport]) -> bool {
        let count = self.settings.shard_count;
        let behind = self.reshard.is_none()
            && reports
                .iter()
                .any(|r| r.shard_count != 0 && r.shard_count != count);
        let Some(node) = self
            .nodes
            .get_mut(&node_id)
            .filter(|node| behind && !node.settling)
        else {
            return false;
        };
        node.settling = true;
        let epochs = self
            .shards
            .iter()
            .enumerate()
            .filter(|(_, shard)| shard.owner == Some(node_id))
            .map(|(shard_id, shard)| pb::ShardEpoch {
                shard_id: shard_id as u32,
                epoch: shard.epoch,
            })
            .collect();
        tracing::info!(
            node_id,
            shard_count = count,
            "node missed a resharding's end; settling it"
        );
        let resharded = pb::Resharded {
            shard_count: count,
            epochs,
            earlier: Some(self.earlier_counts.clone()),
        };
        self.send(node_id, pb::instruction::Instruction::Resharded(resharded));
        true
    }

    /// A heartbeat's report of a shard of the running resharding's new set: `true` if it is
    /// this node's to run (a new leader takes the owner it hears of).
    fn new_shard_report(&mut self, node_id: u64, report: &pb::ShardReport) -> bool {
        let Some(set) = &mut self.reshard else {
            return false;
        };
        if report.shard_count != set.record.to {
            return false;
        }
        let Some(shard) = set.shards.get_mut(report.shard_id as usize) else {
            return false;
        };
        match shard.owner {
            Some(owner) if owner == node_id && shard.epoch == report.epoch => {}
            None if self.shards[report.shard_id as usize % set.record.from as usize].owner
                == Some(node_id) =>
            {
                shard.owner = Some(node_id);
                shard.epoch = report.epoch;
                shard.assigned_at = Some(Instant::now());
            }
            _ => return false,
        }
        let guilds = report.resharding.as_ref();
        shard.ready |= report.phase == "ready" && guilds.is_some_and(|g| g.joined == g.guilds);
        shard.switched |= shard.ready && guilds.is_some_and(|g| g.switched == g.guilds);
        true
    }

    /// Writes the new set's progress to the record when it moved, and completes the
    /// resharding once every new shard is switched and has a known owner: a new leader
    /// whose record says so already completes it once the owners reported (its last leader
    /// stopped between the progress and the completion).
    async fn record_reshard_progress(&mut self) -> Result<(), StorageError> {
        let Some(set) = &mut self.reshard else {
            return Ok(());
        };
        let ready = set.listed(|s| s.ready);
        let switched = set.listed(|s| s.switched);
        let complete = switched.len() == set.record.to as usize
            && set.shards.iter().all(|s| s.owner.is_some());
        if (&ready, &switched) != (&set.record.ready, &set.record.switched) {
            let next = Resharding {
                ready,
                switched,
                updated_at: Timestamp::now(),
                ..set.record.clone()
            };
            let stored = self.store.put_resharding(&next).await?;
            reshard::report(Some(stored.clone()), self.settings.shard_count);
            set.record = stored;
        }
        if complete {
            self.complete_reshard().await?;
        }
        Ok(())
    }

    /// Every new shard is switched: the record completes (the stored shard count becomes
    /// the new one in the same decision), each new shard is assigned in the store, and the
    /// nodes settle on the new set and close the old one.
    async fn complete_reshard(&mut self) -> Result<(), StorageError> {
        let Some(set) = self.reshard.take() else {
            return Ok(());
        };
        let done = self
            .store
            .put_resharding(&Resharding {
                phase: ReshardPhase::Completed,
                updated_at: Timestamp::now(),
                ..set.record.clone()
            })
            .await?;
        let to = done.to;
        let mut shards = Vec::with_capacity(to as usize);
        let mut epochs: BTreeMap<u64, Vec<pb::ShardEpoch>> = BTreeMap::new();
        for (shard_id, new) in set.shards.iter().enumerate() {
            let previous = self.shards.get(shard_id).map_or(0, |old| old.epoch);
            let mut entry = ShardEntry::default();
            if let Some(owner) = new.owner {
                let assigned = self
                    .store
                    .assign_shard(shard_id as u32, owner, previous, self.leader_epoch)
                    .await?;
                entry.owner = Some(owner);
                entry.epoch = assigned.epoch;
                entry.ready = true;
                entry.assigned_at = Some(Instant::now());
                epochs.entry(owner).or_default().push(pb::ShardEpoch {
                    shard_id: shard_id as u32,
                    epoch: assigned.epoch,
                });
            } else {
                entry.epoch = previous;
            }
            shards.push(entry);
        }
        self.shards = shards;
        self.settings.shard_count = to;
        self.earlier_counts = earlier_pb(Some(&done), to);
        reshard::report(Some(done), to);
        tracing::info!(from = set.record.from, to, "resharding completed");
        self.announce_resharded(to, &epochs);
        Ok(())
    }

    /// Gives up the running resharding on the leader's own account.
    async fn abort_reshard(&mut self, why: &str) -> Result<(), StorageError> {
        let Some(set) = self.reshard.take() else {
            return Ok(());
        };
        let aborted = self
            .store
            .put_resharding(&Resharding {
                phase: ReshardPhase::Aborted,
                updated_at: Timestamp::now(),
                ..set.record
            })
            .await?;
        tracing::warn!(
            from = aborted.from,
            to = aborted.to,
            why,
            "resharding aborted"
        );
        reshard::report(Some(aborted), self.settings.shard_count);
        self.announce_resharded(self.settings.shard_count, &BTreeMap::new());
        Ok(())
    }

    /// Tells every attached node which set stays, with the epochs of the shards it keeps.
    fn announce_resharded(
        &mut self,
        shard_count: u32,
        epochs: &BTreeMap<u64, Vec<pb::ShardEpoch>>,
    ) {
        let nodes: Vec<u64> = self.nodes.keys().copied().collect();
        for node_id in nodes {
            if let Some(node) = self.nodes.get_mut(&node_id) {
                node.settling = true;
            }
            let resharded = pb::Resharded {
                shard_count,
                epochs: epochs.get(&node_id).cloned().unwrap_or_default(),
                earlier: Some(self.earlier_counts.clone()),
            };
            self.send(node_id, pb::instruction::Instruction::Resharded(resharded));
        }
    }

    fn owned_by(&self, node_id: u64) -> usize {
        self.shards
            .iter()
            .filter(|s| {
                s.owner == Some(node_id) || s.moving.as_ref().is_some_and(|m| m.from == node_id)
            })
            .count()
    }

    /// Answers drain calls whose node holds no shard any more (or is gone).
    fn answer_drains(&mut self) {
        for drain in std::mem::take(&mut self.drains) {
            if self.nodes.contains_key(&drain.node_id) && self.owned_by(drain.node_id) > 0 {
                self.drains.push(drain);
            } else {
                let _ = drain.reply.send(Ok(drain.held));
            }
        }
    }

    fn status(&mut self) -> pb::ClusterStatus {
        let mut per_node: BTreeMap<u64, u32> = BTreeMap::new();
        for shard in &self.shards {
            if let Some(owner) = shard.owner {
                *per_node.entry(owner).or_default() += 1;
            }
        }
        let rest_shares = self
            .nodes
            .iter()
            .filter(|(_, node)| node.link.is_some())
            .map(|(&id, node)| (id, node.rest_share))
            .collect();
        pb::ClusterStatus {
            rest: Some(self.rest.status()),
            rest_shares,
            leader_epoch: self.leader_epoch,
            nodes: self
                .nodes
                .iter()
                .map(|(&node_id, node)| pb::NodeStatus {
                    node_id,
                    name: node.name.clone(),
                    draining: node.draining,
                    shards: per_node.get(&node_id).copied().unwrap_or(0),
                    events_per_sec: node.events_per_sec,
                    rss_bytes: node.rss_bytes,
                })
                .collect(),
            shards: self
                .shards
                .iter()
                .enumerate()
                .map(|(id, s)| pb::ShardAssignment {
                    shard_id: id as u32,
                    node_id: s.owner.unwrap_or(0),
                    epoch: s.epoch,
                    moving: s.moving.is_some(),
                })
                .collect(),
            handoffs: self.handoffs,
        }
    }

    fn publish(&self) {
        let mut nodes = [0usize; 3];
        for node in self.nodes.values() {
            nodes[match (node.draining, node.link.is_some()) {
                (true, _) => 2,
                (false, true) => 0,
                (false, false) => 1,
            }] += 1;
        }
        for (state, count) in NODE_STATES.into_iter().zip(nodes) {
            gauge!(NODES, "state" => state).set(count as f64);
        }
        let mut shards = [0usize; 3];
        for shard in &self.shards {
            shards[match (shard.moving.is_some(), shard.owner.is_some()) {
                (true, _) => 1,
                (false, true) => 0,
                (false, false) => 2,
            }] += 1;
        }
        for (state, count) in SHARD_STATES.into_iter().zip(shards) {
            gauge!(SHARDS, "state" => state).set(count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonn_storage::EmbeddedStore;

    fn settings() -> ControlSettings {
        ControlSettings {
            shard_count: 2,
            heartbeat_interval: Duration::from_millis(500),
            failure_timeout: Duration::from_secs(5),
            fence: Duration::from_secs(3),
            min_nodes: 2,
            formation_grace: Duration::from_secs(60),
            max_moves: 1,
            rest_global_per_sec: 50.0,
        }
    }

    async fn register(control: &mut Control, name: &str) -> String {
        let (reply, answer) = oneshot::channel();
        control
            .handle(ControlMsg::Register {
                name: name.to_owned(),
                ops_address: "127.0.0.1:1".to_owned(),
                reply,
            })
            .await
            .unwrap();
        answer.await.unwrap().session_key
    }

    async fn attach(control: &mut Control, name: &str, key: &str) -> Result<(), Status> {
        let (link, _instructions) = mpsc::channel(1);
        let (reply, answer) = oneshot::channel();
        control
            .handle(ControlMsg::Attach {
                node_id: node_id(name),
                session_key: key.to_owned(),
                link,
                reply,
            })
            .await
            .unwrap();
        answer.await.unwrap()
    }

    async fn verify(control: &mut Control, name: &str, key: &str) -> bool {
        let (reply, answer) = oneshot::channel();
        control
            .handle(ControlMsg::Verify {
                name: name.to_owned(),
                session_key: key.to_owned(),
                reply,
            })
            .await
            .unwrap();
        answer.await.unwrap()
    }

    async fn drain(control: &mut Control, name: &str, key: Option<&str>) -> Result<u32, Status> {
        let (reply, answer) = oneshot::channel();
        control
            .handle(ControlMsg::Drain {
                name: name.to_owned(),
                session_key: key.map(str::to_owned),
                reply,
            })
            .await
            .unwrap();
        // A drain accepted is answered once the node holds no shard.
        control.answer_drains();
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("the drain is answered")
            .unwrap()
    }

    #[tokio::test]
    async fn a_nodes_calls_about_itself_are_bound_to_its_newest_registration() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ClusterRepo> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut control = Control::load(store, settings(), 1).await.unwrap();
        let a = register(&mut control, "node-a").await;
        let b = register(&mut control, "node-b").await;
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);

        // Another node's key, or none, does not make a node.
        for wrong in ["", b.as_str()] {
            let refused = attach(&mut control, "node-a", wrong).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
            assert!(!verify(&mut control, "node-a", wrong).await);
            let refused = drain(&mut control, "node-a", Some(wrong))
                .await
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        }
        attach(&mut control, "node-a", &a).await.unwrap();
        assert!(verify(&mut control, "node-a", &a).await);

        // A new registration of the name replaces the key: the old one no longer works.
        let again = register(&mut control, "node-a").await;
        assert_ne!(again, a);
        assert!(!verify(&mut control, "node-a", &a).await);
        assert!(verify(&mut control, "node-a", &again).await);

        // A node drains itself with its key (it holds no shard yet: nothing moves); an
        // operator (no key) drains any node.
        assert_eq!(
            drain(&mut control, "node-a", Some(&again)).await.unwrap(),
            0
        );
        assert_eq!(drain(&mut control, "node-b", None).await.unwrap(), 0);
    }

    /// One tick of a leader of epoch 1 with one node attached, after a leader of
    /// `newer_claim` (if any) claimed the assignments: its result and the shards placed.
    async fn placed_in_one_tick(newer_claim: Option<u64>) -> (Result<(), StorageError>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ClusterRepo> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let settings = ControlSettings {
            min_nodes: 1,
            formation_grace: Duration::ZERO,
            ..settings()
        };
        let mut control = Control::load(Arc::clone(&store), settings, 1)
            .await
            .unwrap();
        if let Some(epoch) = newer_claim {
            store.claim_assignments(epoch).await.unwrap();
        }
        let key = register(&mut control, "node-a").await;
        attach(&mut control, "node-a", &key).await.unwrap();
        let ticked = control.tick().await;
        (ticked, store.assignments().await.unwrap().len())
    }

    /// A leader that froze past its lease may still believe it leads when it wakes; the
    /// store refuses its placements once a newer leader has claimed the assignments.
    #[tokio::test]
    async fn a_superseded_leader_places_no_shard() {
        let (ticked, placed) = placed_in_one_tick(None).await;
        ticked.unwrap();
        assert_eq!(placed, 2, "a leader places the shards");

        let (ticked, placed) = placed_in_one_tick(Some(2)).await;
        assert!(
            matches!(
                ticked,
                Err(StorageError::Fenced {
                    presented: 1,
                    current: 2
                })
            ),
            "{ticked:?}"
        );
        assert_eq!(placed, 0);
    }

    /// A node attached with a link whose instructions the test reads.
    async fn attach_listening(
        control: &mut Control,
        name: &str,
    ) -> mpsc::Receiver<Result<pb::Instruction, Status>> {
        let session_key = register(control, name).await;
        let (link, instructions) = mpsc::channel(256);
        let (reply, answer) = oneshot::channel();
        control
            .handle(ControlMsg::Attach {
                node_id: node_id(name),
                session_key,
                link,
                reply,
            })
            .await
            .unwrap();
        answer.await.unwrap().unwrap();
        instructions
    }

    fn received(
        instructions: &mut mpsc::Receiver<Result<pb::Instruction, Status>>,
    ) -> Vec<pb::instruction::Instruction> {
        let mut all = Vec::new();
        while let Ok(Ok(instruction)) = instructions.try_recv() {
            all.extend(instruction.instruction);
        }
        all
    }

    fn starts(instructions: &[pb::instruction::Instruction]) -> Vec<pb::StartShard> {
        instructions
            .iter()
            .filter_map(|i| match i {
                pb::instruction::Instruction::Start(start) => Some(start.clone()),
                _ => None,
            })
            .collect()
    }

    async fn heartbeat(control: &mut Control, name: &str, shards: Vec<pb::ShardReport>) {
        let heartbeat = pb::Heartbeat {
            shards,
            ..pb::Heartbeat::default()
        };
        control
            .handle(ControlMsg::Report {
                node_id: node_id(name),
                report: pb::node_report::Report::Heartbeat(heartbeat),
            })
            .await
            .unwrap();
    }

    /// Its last leader stored every new shard switched and stopped before the completion,
    /// or (on ScyllaDB) after storing the new count but before the record: `leader_count`
    /// is the count the new leader read, 2 or already 4. It completes the resharding once
    /// the nodes reported their new shards, with no new shard started twice.
    async fn finishes_a_completion_its_last_leader_stopped(leader_count: u32) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ClusterRepo> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.fix_shard_count(2).await.unwrap();
        let nodes = ["node-a", "node-b"];
        store.claim_assignments(1).await.unwrap();
        for (shard_id, name) in nodes.iter().enumerate() {
            store
                .put_node(&NodeRecord {
                    node_id: node_id(name),
                    address: (*name).to_owned(),
                    last_heartbeat: Timestamp::now(),
                    draining: false,
                })
                .await
                .unwrap();
            store
                .assign_shard(shard_id as u32, node_id(name), 0, 1)
                .await
                .unwrap();
        }
        let started = store
            .put_resharding(&Resharding::start(2, 4, None, Timestamp::now()))
            .await
            .unwrap();
        store
            .put_resharding(&Resharding {
                ready: vec![0, 1, 2, 3],
                switched: vec![0, 1, 2, 3],
                ..started
            })
            .await
            .unwrap();

        let settings = ControlSettings {
            shard_count: leader_count,
            formation_grace: Duration::ZERO,
            ..settings()
        };
        let mut control = Control::load(Arc::clone(&store), settings, 2)
            .await
            .unwrap();
        assert_eq!(control.settings.shard_count, 2, "the old set still runs");
        let mut links = Vec::new();
        for name in nodes {
            links.push(attach_listening(&mut control, name).await);
        }
        control.tick().await.unwrap();
        assert_eq!(
            store.resharding().await.unwrap().unwrap().phase,
            ReshardPhase::Running,
            "nothing completes before the new shards' owners are heard"
        );
        // Each node runs its old shard and the new shards beside it (k % 2 == its old one).
        let assignments = store.assignments().await.unwrap();
        for name in nodes {
            let old = assignments
                .iter()
                .find(|a| a.node_id == node_id(name))
                .unwrap();
            let mut reports = vec![pb::ShardReport {
                shard_id: old.shard_id,
                epoch: old.epoch,
                phase: "ready".to_owned(),
                shard_count: 2,
                ..pb::ShardReport::default()
            }];
            reports.extend(
                [old.shard_id, old.shard_id + 2].map(|shard_id| pb::ShardReport {
                    shard_id,
                    epoch: 7 + u64::from(shard_id),
                    phase: "ready".to_owned(),
                    shard_count: 4,
                    resharding: Some(pb::NewShardProgress {
                        guilds: 3,
                        joined: 3,
                        switched: 3,
                    }),
                    ..pb::ShardReport::default()
                }),
            );
            heartbeat(&mut control, name, reports).await;
        }
        assert_eq!(
            store.resharding().await.unwrap().unwrap().phase,
            ReshardPhase::Completed
        );
        assert_eq!(store.shard_count().await.unwrap(), Some(4));
        assert_eq!(control.settings.shard_count, 4);
        for (name, link) in nodes.iter().zip(&mut links) {
            let heard = received(link);
            assert!(starts(&heard).is_empty(), "{name}: {heard:?}");
            let kept: Vec<u32> = heard
                .iter()
                .find_map(|i| match i {
                    pb::instruction::Instruction::Resharded(r) if r.shard_count == 4 => {
                        // Rows written under 2 shards are still read in their partitions.
                        assert_eq!(
                            r.earlier,
                            Some(pb::EarlierShardCounts {
                                counts: vec![2],
                                unknown: false
                            }),
                            "{name}"
                        );
                        Some(r.epochs.iter().map(|e| e.shard_id).collect())
                    }
                    _ => None,
                })
                .expect("the node hears the resharding is over");
            let old = assignments
                .iter()
                .find(|a| a.node_id == node_id(name))
                .unwrap()
                .shard_id;
            assert_eq!(kept, [old, old + 2], "{name}");
        }
    }

    #[tokio::test]
    async fn a_new_leader_completes_a_resharding_whose_every_shard_was_switched() {
        finishes_a_completion_its_last_leader_stopped(2).await;
    }

    #[tokio::test]
    async fn a_new_leader_finishes_a_completion_that_stored_the_count_only() {
        finishes_a_completion_its_last_leader_stopped(4).await;
    }

    #[tokio::test]
    async fn a_resharding_runs_each_new_shard_beside_its_old_one_and_completes_once_all_switched() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ClusterRepo> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.fix_shard_count(2).await.unwrap();
        let settings = ControlSettings {
            min_nodes: 2,
            formation_grace: Duration::ZERO,
            ..settings()
        };
        let mut control = Control::load(Arc::clone(&store), settings, 1)
            .await
            .unwrap();
        let mut a = attach_listening(&mut control, "node-a").await;
        let mut b = attach_listening(&mut control, "node-b").await;
        control.tick().await.unwrap();
        let mut old = Vec::new();
        for (name, link) in [("node-a", &mut a), ("node-b", &mut b)] {
            for start in starts(&received(link)) {
                old.push((name, start.shard_id, start.epoch));
            }
        }
        assert_eq!(old.len(), 2, "{old:?}");
        let old_reports = |name: &str| -> Vec<pb::ShardReport> {
            old.iter()
                .filter(|(owner, _, _)| *owner == name)
                .map(|&(_, shard_id, epoch)| pb::ShardReport {
                    shard_id,
                    epoch,
                    phase: "ready".to_owned(),
                    ..pb::ShardReport::default()
                })
                .collect()
        };
        for name in ["node-a", "node-b"] {
            heartbeat(&mut control, name, old_reports(name)).await;
        }

        let (reply, answer) = oneshot::channel();
        control
            .handle(ControlMsg::Reshard {
                shards: 4,
                startups_left: 100,
                reply,
            })
            .await
            .unwrap();
        answer.await.unwrap().unwrap();
        control.tick().await.unwrap();
        // Each new shard starts on the node of the old shard its guilds come from.
        let mut new = Vec::new();
        for (name, link) in [("node-a", &mut a), ("node-b", &mut b)] {
            for start in starts(&received(link)) {
                assert_eq!(start.shard_count, 4);
                let (owner, _, _) = old
                    .iter()
                    .find(|(_, shard_id, _)| *shard_id == start.shard_id % 2)
                    .unwrap();
                assert_eq!(
                    *owner, name,
                    "new shard {} beside its old one",
                    start.shard_id
                );
                new.push((name, start.shard_id, start.epoch));
            }
        }
        new.sort_by_key(|&(_, shard_id, _)| shard_id);
        assert_eq!(
            new.iter().map(|n| n.1).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );

        // Guilds switch on the new shards: the record follows, and completes with the last.
        let report = |switched: &dyn Fn(u32) -> bool, name: &str| -> Vec<pb::ShardReport> {
            let mut reports = old_reports(name);
            reports.extend(
                new.iter()
                    .filter(|n| n.0 == name)
                    .map(|&(_, shard_id, epoch)| pb::ShardReport {
                        shard_id,
                        epoch,
                        phase: "ready".to_owned(),
                        shard_count: 4,
                        resharding: Some(pb::NewShardProgress {
                            guilds: 3,
                            joined: 3,
                            switched: if switched(shard_id) { 3 } else { 1 },
                        }),
                        ..pb::ShardReport::default()
                    }),
            );
            reports
        };
        for name in ["node-a", "node-b"] {
            heartbeat(&mut control, name, report(&|shard| shard < 2, name)).await;
        }
        let record = store.resharding().await.unwrap().unwrap();
        assert_eq!(
            (record.phase, record.ready, record.switched),
            (ReshardPhase::Running, vec![0, 1, 2, 3], vec![0, 1])
        );
        assert_eq!(store.shard_count().await.unwrap(), Some(2));
        for name in ["node-a", "node-b"] {
            heartbeat(&mut control, name, report(&|_| true, name)).await;
        }
        let record = store.resharding().await.unwrap().unwrap();
        assert_eq!(record.phase, ReshardPhase::Completed);
        assert_eq!(store.shard_count().await.unwrap(), Some(4));
        assert_eq!(control.settings.shard_count, 4);

        // Each node keeps its new shards under the epochs stored for them.
        let assignments = store.assignments().await.unwrap();
        assert_eq!(assignments.len(), 4);
        for (name, link) in [("node-a", &mut a), ("node-b", &mut b)] {
            let resharded = received(link)
                .into_iter()
                .find_map(|i| match i {
                    pb::instruction::Instruction::Resharded(resharded) => Some(resharded),
                    _ => None,
                })
                .expect("the node hears the resharding is over");
            assert_eq!(resharded.shard_count, 4);
            let mine: Vec<u32> = new.iter().filter(|n| n.0 == name).map(|n| n.1).collect();
            assert_eq!(
                resharded
                    .epochs
                    .iter()
                    .map(|e| e.shard_id)
                    .collect::<Vec<_>>(),
                mine
            );
            for given in &resharded.epochs {
                let stored = assignments
                    .iter()
                    .find(|a| a.shard_id == given.shard_id)
                    .unwrap();
                assert_eq!((stored.node_id, stored.epoch), (node_id(name), given.epoch));
            }
        }
        // A shard of the old set still reported now is another count's: released.
        heartbeat(
            &mut control,
            "node-a",
            vec![pb::ShardReport {
                shard_id: 0,
                epoch: 1,
                phase: "ready".to_owned(),
                shard_count: 2,
                ..pb::ShardReport::default()
            }],
        )
        .await;
        assert!(received(&mut a).iter().any(|i| matches!(
            i,
            pb::instruction::Instruction::Release(release)
                if release.shard_id == 0 && release.shard_count == 2
        )));

        // node-b's link broke before it heard: it reattaches still running both sets, its
        // new shards under their start epochs. The leader's answer is the count of now
        // with the epochs stored for the shards it keeps, and nothing of it is released.
        drop(b);
        let mut b = attach_listening(&mut control, "node-b").await;
        let behind: Vec<pb::ShardReport> = report(&|_| true, "node-b")
            .into_iter()
            .map(|shard| pb::ShardReport {
                shard_count: shard.shard_count.max(2),
                ..shard
            })
            .collect();
        heartbeat(&mut control, "node-b", behind.clone()).await;
        let heard = received(&mut b);
        let resharded: Vec<_> = heard
            .iter()
            .filter_map(|i| match i {
                pb::instruction::Instruction::Resharded(resharded) => Some(resharded),
                _ => None,
            })
            .collect();
        assert_eq!(resharded.len(), 1, "{heard:?}");
        assert_eq!(resharded[0].shard_count, 4);
        let kept: Vec<(u32, u64)> = resharded[0]
            .epochs
            .iter()
            .map(|e| (e.shard_id, e.epoch))
            .collect();
        let stored: Vec<(u32, u64)> = assignments
            .iter()
            .filter(|a| a.node_id == node_id("node-b"))
            .map(|a| (a.shard_id, a.epoch))
            .collect();
        assert_eq!(kept, stored);
        assert!(
            !heard
                .iter()
                .any(|i| matches!(i, pb::instruction::Instruction::Release(_))),
            "{heard:?}"
        );
        // Told once per registration: a report sent before it heard is read as any.
        heartbeat(&mut control, "node-b", behind).await;
        assert!(
            !received(&mut b)
                .iter()
                .any(|i| matches!(i, pb::instruction::Instruction::Resharded(_)))
        );
    }
}
