//! Synthetic node agents for the control-plane benchmark (B9): each registers, attaches and
//! heartbeats as a real node does, and "runs" the shards the leader gives it without any
//! gateway connection, so one process can load a leader with thousands of shards.
//!
//! They time what the leader does for them: heartbeat → its acknowledgement (the control
//! loop answers each one when it takes it from its inbox), and a released shard → its start
//! on the next owner (a decision made on a report). Only built with the `loadgen` feature.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use crate::ClusterToken;
use crate::grpc::{self, pb};

/// What the synthetic nodes measured, all nodes together.
#[derive(Default)]
pub struct LoadStats {
    acks: Mutex<Vec<Duration>>,
    handoffs: Mutex<Vec<Duration>>,
    /// Shard → when its owner sent `Released`.
    released: Mutex<HashMap<u32, Instant>>,
    running: Mutex<BTreeMap<String, usize>>,
}

impl LoadStats {
    /// Heartbeat → acknowledgement times recorded since the last call.
    pub fn take_acks(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.acks.lock().expect("stats poisoned"))
    }

    /// Released → started-elsewhere times recorded since the last call.
    pub fn take_handoffs(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.handoffs.lock().expect("stats poisoned"))
    }

    /// Shards each synthetic node runs now.
    pub fn running(&self) -> BTreeMap<String, usize> {
        self.running.lock().expect("stats poisoned").clone()
    }
}

/// Synthetic nodes heartbeating a coordinator until dropped.
pub struct SyntheticNodes {
    tasks: JoinSet<()>,
    stats: Arc<LoadStats>,
    coordinator: String,
    token: ClusterToken,
}

impl SyntheticNodes {
    pub fn new(coordinator: String, token: ClusterToken) -> Self {
        Self {
            tasks: JoinSet::new(),
            stats: Arc::default(),
            coordinator,
            token,
        }
    }

    pub fn stats(&self) -> &Arc<LoadStats> {
        &self.stats
    }

    /// Starts one more node called `name`; it retries until the coordinator takes it.
    pub fn add(&mut self, name: String) {
        let node = Synthetic {
            name,
            coordinator: self.coordinator.clone(),
            token: self.token.clone(),
            stats: Arc::clone(&self.stats),
        };
        self.tasks.spawn(async move {
            loop {
                if let Err(err) = node.run().await {
                    tracing::warn!(node = node.name, error = %err, "synthetic node reattaching");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

struct Synthetic {
    name: String,
    coordinator: String,
    token: ClusterToken,
    stats: Arc<LoadStats>,
}

impl Synthetic {
    async fn run(&self) -> Result<(), String> {
        let (_, connection) = grpc::connect(
            std::slice::from_ref(&self.coordinator),
            0,
            &self.token,
            None,
        )
        .await?;
        let mut client = connection.coordinator();
        let reply = client
            .register(pb::RegisterRequest {
                name: self.name.clone(),
                ops_address: "127.0.0.1:9".to_owned(),
            })
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        let (reports, outbound) = mpsc::channel(256);
        let hello = pb::node_report::Report::Hello(pb::Hello {
            node_id: reply.node_id,
            session_key: reply.session_key.clone(),
        });
        let _ = reports.try_send(pb::NodeReport {
            report: Some(hello),
        });
        let mut instructions = client
            .attach(ReceiverStream::new(outbound))
            .await
            .map_err(|status| status.to_string())?
            .into_inner();

        // Shard → (epoch, sequence): every shard moves 250 events per heartbeat.
        let mut shards: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let mut sent: HashMap<u64, Instant> = HashMap::new();
        let mut seq = 0u64;
        let every = Duration::from_millis(u64::from(reply.heartbeat_interval_ms.max(10)));
        let mut heartbeat = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    seq += 1;
                    sent.insert(seq, Instant::now());
                    sent.retain(|&s, _| s + 64 > seq);
                    let report = self.heartbeat(&mut shards, seq, every);
                    if reports.send(report).await.is_err() {
                        return Err("the report stream closed".into());
                    }
                }
                instruction = instructions.message() => {
                    let Some(instruction) = instruction.map_err(|s| s.to_string())? else {
                        return Err("the coordinator ended the stream".into());
                    };
                    match instruction.instruction {
                        Some(pb::instruction::Instruction::Lease(ack)) => {
                            if let Some(at) = sent.remove(&ack.seq) {
                                self.stats.acks.lock().expect("stats poisoned").push(at.elapsed());
                            }
                        }
                        Some(pb::instruction::Instruction::Start(start)) => {
                            shards.insert(start.shard_id, (start.epoch, 0));
                            let released = self.stats.released.lock().expect("stats poisoned").remove(&start.shard_id);
                            if let Some(at) = released {
                                self.stats.handoffs.lock().expect("stats poisoned").push(at.elapsed());
                            }
                        }
                        Some(pb::instruction::Instruction::Release(release)) => {
                            let Some((epoch, sequence)) = shards.remove(&release.shard_id) else {
                                continue;
                            };
                            self.stats.released.lock().expect("stats poisoned").insert(release.shard_id, Instant::now());
                            let released = pb::Released {
                                shard_id: release.shard_id,
                                epoch,
                                session: Some(session(release.shard_id, sequence)),
                                cache: Vec::new(),
                            };
                            let report = pb::node_report::Report::Released(released);
                            if reports.send(pb::NodeReport { report: Some(report) }).await.is_err() {
                                return Err("the report stream closed".into());
                            }
                        }
                        // Simulated nodes run one shard count: no resharding.
                        Some(pb::instruction::Instruction::RestShare(_) | pb::instruction::Instruction::Resharded(_)) | None => {}
                    }
                    self.stats.running.lock().expect("stats poisoned").insert(self.name.clone(), shards.len());
                }
            }
        }
    }

    fn heartbeat(
        &self,
        shards: &mut BTreeMap<u32, (u64, u64)>,
        seq: u64,
        every: Duration,
    ) -> pb::NodeReport {
        let per_sec = 250.0 / every.as_secs_f64();
        let reports = shards
            .iter_mut()
            .map(|(&shard_id, (epoch, sequence))| {
                *sequence += 250;
                pb::ShardReport {
                    shard_id,
                    epoch: *epoch,
                    phase: "ready".to_owned(),
                    checkpoint: Some(session(shard_id, *sequence)),
                    events_per_sec: per_sec,
                    shard_count: 0,
                    resharding: None,
                }
            })
            .collect::<Vec<_>>();
        let heartbeat = pb::Heartbeat {
            events_per_sec: per_sec * reports.len() as f64,
            cpu_seconds: 0.0,
            rss_bytes: 0,
            shards: reports,
            rest_demand_per_sec: 1.0,
            rest_invalid: 0,
            rest_unauthorized: 0,
            seq,
        };
        pb::NodeReport {
            report: Some(pb::node_report::Report::Heartbeat(heartbeat)),
        }
    }
}

fn session(shard_id: u32, sequence: u64) -> pb::Session {
    pb::Session {
        session_id: format!("synthetic-{shard_id}"),
        sequence,
        resume_url: "ws://127.0.0.1:9".to_owned(),
    }
}
