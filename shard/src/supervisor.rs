//! `ShardSupervisor`: owns the identify queue and one linked `ShardRunner` per shard.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use twilight_gateway::CloseFrame;
use twilight_gateway::queue::InMemoryQueue;

use crate::metrics::SHARDS_BY_STATE;
use crate::runner::{FATAL_STOP, RunnerArgs, RunnerMsg, ShardRunner};
use crate::{EventSink, GatewaySettings, ShardError};

/// First restart delay of a failed runner; it doubles per consecutive failure.
const RESTART_BACKOFF_START: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);

pub struct ShardSupervisor;

pub struct SupervisorArgs {
    pub settings: GatewaySettings,
    pub sink: Arc<dyn EventSink>,
}

pub enum SupervisorMsg {
    /// A runner's shard entered a new phase.
    Phase { shard_id: u32, phase: ShardPhase },
    /// Start the runner of a shard again after its back-off.
    Restart { shard_id: u32 },
    /// The status of every shard of this node, by shard id.
    Statuses(RpcReplyPort<Vec<ShardStatus>>),
    /// Close every shard and answer once all runners have stopped.
    Shutdown(RpcReplyPort<()>),
}

/// Where a shard is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardPhase {
    /// Connecting or identifying for the first time.
    Connecting,
    /// READY or RESUMED received: events flow.
    Ready,
    /// The connection closed; twilight is resuming (or re-identifying if it must).
    Reconnecting,
    /// Discord closed the shard with a fatal code; it stays stopped until an operator acts.
    Fatal { code: u16, reason: String },
    /// Closed on purpose (shutdown).
    Stopped,
}

impl ShardPhase {
    /// Values of the `state` label of [`SHARDS_BY_STATE`].
    pub const LABELS: [&'static str; 5] =
        ["connecting", "ready", "reconnecting", "fatal", "stopped"];

    pub fn label(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Ready => "ready",
            Self::Reconnecting => "reconnecting",
            Self::Fatal { .. } => "fatal",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ShardStatus {
    pub shard_id: u32,
    pub phase: ShardPhase,
    /// Times the runner was restarted after a failure.
    pub restarts: u32,
    /// Whether a runner (and so a connection) exists for the shard right now.
    pub running: bool,
}

pub struct SupervisorState {
    settings: Arc<GatewaySettings>,
    sink: Arc<dyn EventSink>,
    /// One queue for all shards of the process: IDENTIFY is paced per bucket across them.
    queue: InMemoryQueue,
    shards: BTreeMap<u32, Slot>,
    runners: HashMap<ActorId, u32>,
    shutdown: Option<RpcReplyPort<()>>,
}

struct Slot {
    runner: Option<ActorRef<RunnerMsg>>,
    phase: ShardPhase,
    restarts: u32,
}

impl ShardSupervisor {
    /// Spawns the supervisor and its runners; shards start identifying at once, paced by
    /// the identify queue.
    pub async fn start(
        settings: GatewaySettings,
        sink: Arc<dyn EventSink>,
    ) -> Result<ActorRef<SupervisorMsg>, ShardError> {
        settings.validate()?;
        let (supervisor, _) =
            Actor::spawn(None, ShardSupervisor, SupervisorArgs { settings, sink })
                .await
                .map_err(|err| ShardError::Actor(err.to_string()))?;
        Ok(supervisor)
    }
}

impl SupervisorState {
    async fn spawn_runner(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        shard_id: u32,
    ) -> Result<(), ActorProcessingErr> {
        let args = RunnerArgs {
            shard_id,
            settings: Arc::clone(&self.settings),
            queue: self.queue.clone(),
            sink: Arc::clone(&self.sink),
            supervisor: myself.clone(),
        };
        let (runner, _) = Actor::spawn_linked(None, ShardRunner, args, myself.get_cell()).await?;
        self.runners.insert(runner.get_id(), shard_id);
        let slot = self
            .shards
            .get_mut(&shard_id)
            .expect("slot exists for every shard");
        slot.runner = Some(runner);
        slot.phase = ShardPhase::Connecting;
        self.publish_states();
        Ok(())
    }

    fn publish_states(&self) {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for slot in self.shards.values() {
            *counts.entry(slot.phase.label()).or_default() += 1;
        }
        for state in ShardPhase::LABELS {
            let count = counts.get(state).copied().unwrap_or(0);
            gauge!(SHARDS_BY_STATE, "state" => state).set(count as f64);
        }
    }

    fn answer_shutdown_when_done(&mut self) {
        if self.runners.is_empty()
            && let Some(reply) = self.shutdown.take()
        {
            let _ = reply.send(());
        }
    }
}

impl Actor for ShardSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let limits = args.settings.identify;
        let queue = InMemoryQueue::new(
            limits.max_concurrency,
            limits.remaining,
            limits.reset_after,
            limits.total,
        );
        let shards = args
            .settings
            .shard_ids
            .iter()
            .map(|&id| {
                let slot = Slot {
                    runner: None,
                    phase: ShardPhase::Connecting,
                    restarts: 0,
                };
                (id, slot)
            })
            .collect();
        let mut state = SupervisorState {
            settings: Arc::new(args.settings),
            sink: args.sink,
            queue,
            shards,
            runners: HashMap::new(),
            shutdown: None,
        };
        let ids: Vec<u32> = state.shards.keys().copied().collect();
        for shard_id in ids {
            state.spawn_runner(&myself, shard_id).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Phase { shard_id, phase } => {
                if let Some(slot) = state.shards.get_mut(&shard_id) {
                    slot.phase = phase;
                    state.publish_states();
                }
            }
            SupervisorMsg::Restart { shard_id } => {
                let idle = state
                    .shards
                    .get(&shard_id)
                    .is_some_and(|s| s.runner.is_none());
                if idle && state.shutdown.is_none() {
                    state.spawn_runner(&myself, shard_id).await?;
                }
            }
            SupervisorMsg::Statuses(reply) => {
                let statuses = state
                    .shards
                    .iter()
                    .map(|(&shard_id, slot)| ShardStatus {
                        shard_id,
                        phase: slot.phase.clone(),
                        restarts: slot.restarts,
                        running: slot.runner.is_some(),
                    })
                    .collect();
                let _ = reply.send(statuses);
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutdown = Some(reply);
                for slot in state.shards.values() {
                    if let Some(runner) = &slot.runner {
                        let _ = runner.cast(RunnerMsg::Close(CloseFrame::NORMAL));
                    }
                }
                state.answer_shutdown_when_done();
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure, fatal) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let fatal = reason.as_deref() == Some(FATAL_STOP);
                (cell, None, fatal)
            }
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string()), false),
            _ => return Ok(()),
        };
        let Some(shard_id) = state.runners.remove(&cell.get_id()) else {
            return Ok(());
        };
        let slot = state
            .shards
            .get_mut(&shard_id)
            .expect("slot exists for every shard");
        slot.runner = None;
        if state.shutdown.is_some() {
            slot.phase = ShardPhase::Stopped;
        } else if !fatal {
            // Anything but a fatal close or a shutdown is a fault: restart with back-off.
            let delay = backoff(slot.restarts);
            slot.restarts += 1;
            slot.phase = ShardPhase::Reconnecting;
            tracing::warn!(
                shard_id,
                failure = failure.as_deref().unwrap_or("runner stopped unexpectedly"),
                ?delay,
                "restarting shard runner"
            );
            myself.send_after(delay, move || SupervisorMsg::Restart { shard_id });
        }
        state.publish_states();
        state.answer_shutdown_when_done();
        Ok(())
    }
}

fn backoff(restarts: u32) -> Duration {
    RESTART_BACKOFF_START
        .saturating_mul(1 << restarts.min(16))
        .min(RESTART_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(6), RESTART_BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), RESTART_BACKOFF_MAX);
    }
}
