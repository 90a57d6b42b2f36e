//! `ShardSupervisor`: one linked `ShardRunner` per shard of this node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent,
};
use twilight_model::gateway::ShardId;

use crate::metrics::{SHARDS_BY_STATE, register_shard};
use crate::runner::{CLOSED_STOP, CloseKind, FATAL_STOP, RunnerArgs, RunnerMsg, ShardRunner};
use crate::{EventSink, ExportedSession, GatewaySettings, IdentifyScheduler, Ledger, ShardError};

/// First restart delay of a failed runner; it doubles per consecutive failure.
const RESTART_BACKOFF_START: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);

pub struct ShardSupervisor;

pub struct SupervisorArgs {
    pub settings: GatewaySettings,
    /// Grants IDENTIFY permits: in-process for one node, the coordinator's for a cluster.
    pub scheduler: Arc<dyn IdentifyScheduler>,
    pub sink: Arc<dyn EventSink>,
}

/// Shards are named with their set's count ([`ShardId`]): during a resharding a node may run
/// shard 3 of 8 and shard 3 of 16 at once.
pub enum SupervisorMsg {
    /// A runner's shard entered a new phase.
    Phase { shard: ShardId, phase: ShardPhase },
    /// Start the runner of a shard again after its back-off.
    Restart { shard: ShardId },
    /// The status of every shard of this node, by shard id (then count).
    Statuses(RpcReplyPort<Vec<ShardStatus>>),
    /// Stop running a shard without ending its session: close with 4000, stop polling at
    /// the close, let every event read reach the sink, then answer with the session (the
    /// handled checkpoint instead if the sink refused an event).
    Drain { shard: ShardId, reply: DrainReply },
    /// Start running a shard, resuming `session` when given (a handoff, or a crashed
    /// owner's checkpoint) instead of identifying.
    Adopt {
        shard: ShardId,
        session: Option<ExportedSession>,
        /// The highest sequence of `session` a crashed previous owner is known to have
        /// delivered: events up to it are delivered again and counted as possible duplicates
        /// (`protonn_shard_replayed_duplicates_total`). `None` after a clean drain.
        seen_up_to: Option<u64>,
        reply: RpcReplyPort<Result<(), ShardError>>,
    },
    /// Send a gateway command (JSON, see [`crate::encode_command`]) on a shard, within
    /// Discord's 120 sends per 60 s.
    Send { shard: ShardId, payload: String },
    /// Close every shard (ending the sessions) and answer once all runners have stopped.
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
    /// Closed on purpose (drain or shutdown).
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
    /// The count of the shard's set.
    pub shard_count: u32,
    pub phase: ShardPhase,
    /// Times the runner was restarted after a failure.
    pub restarts: u32,
    /// Whether a runner (and so a connection) exists for the shard right now.
    pub running: bool,
    /// Where to resume the shard if this node dies: every event of `session_id` up to
    /// `sequence` has been handled by the sink (shed typing and presence events aside).
    /// Moves once per handled batch, never past an event the sink refused. `None` until READY, or the adopted session at first;
    /// a restarted runner identifies anew and starts over.
    pub checkpoint: Option<ExportedSession>,
}

pub struct SupervisorState {
    settings: Arc<GatewaySettings>,
    scheduler: Arc<dyn IdentifyScheduler>,
    sink: Arc<dyn EventSink>,
    /// By (shard id, count).
    shards: BTreeMap<(u32, u32), Slot>,
    runners: HashMap<ActorId, ShardId>,
    shutdown: Option<RpcReplyPort<()>>,
}

struct Slot {
    runner: Option<ActorRef<RunnerMsg>>,
    /// The current runner's; each runner starts its own.
    ledger: Arc<Ledger>,
    phase: ShardPhase,
    restarts: u32,
    /// Being drained: when its runner stops, the shard leaves this node.
    draining: bool,
    /// A drain that reached the runner after it had stopped on its own (fenced, or
    /// failed): answered with the ledger's checkpoint once the runner's end arrives.
    drained: Option<DrainReply>,
}

type DrainReply = RpcReplyPort<Result<ExportedSession, ShardError>>;

impl Slot {
    fn new(ledger: Arc<Ledger>) -> Self {
        Self {
            runner: None,
            ledger,
            phase: ShardPhase::Connecting,
            restarts: 0,
            draining: false,
            drained: None,
        }
    }

    /// What a drain answers once no runner is left: the checkpoint of the last one (every
    /// event of it delivered).
    fn last_session(&self, shard: ShardId) -> Result<ExportedSession, ShardError> {
        self.ledger
            .checkpoint()
            .ok_or(ShardError::NoSession(shard.number()))
    }
}

impl ShardSupervisor {
    /// Spawns the supervisor and the runners of `settings.shard_ids`; shards start
    /// identifying at once, paced by the scheduler.
    pub async fn start(args: SupervisorArgs) -> Result<ActorRef<SupervisorMsg>, ShardError> {
        args.settings.validate()?;
        let (supervisor, _) = Actor::spawn(None, ShardSupervisor, args)
            .await
            .map_err(|err| ShardError::Actor(err.to_string()))?;
        Ok(supervisor)
    }
}

impl SupervisorState {
    async fn spawn_runner(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        shard: ShardId,
        session: Option<ExportedSession>,
        seen_up_to: Option<u64>,
    ) -> Result<(), ActorProcessingErr> {
        let ledger = Arc::new(Ledger::new(
            shard.number(),
            Arc::clone(&self.sink),
            session.clone(),
        ));
        let args = RunnerArgs {
            shard,
            settings: Arc::clone(&self.settings),
            scheduler: Arc::clone(&self.scheduler),
            sink: Arc::clone(&self.sink),
            supervisor: myself.clone(),
            session,
            seen_up_to,
            ledger: Arc::clone(&ledger),
        };
        let (runner, _) = Actor::spawn_linked(None, ShardRunner, args, myself.get_cell()).await?;
        self.runners.insert(runner.get_id(), shard);
        let slot = self
            .shards
            .entry(key(shard))
            .or_insert_with(|| Slot::new(Arc::clone(&ledger)));
        slot.runner = Some(runner);
        slot.ledger = ledger;
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

    fn statuses(&self) -> Vec<ShardStatus> {
        self.shards
            .iter()
            .map(|(&(shard_id, shard_count), slot)| ShardStatus {
                shard_id,
                shard_count,
                phase: slot.phase.clone(),
                restarts: slot.restarts,
                running: slot.runner.is_some(),
                checkpoint: slot.ledger.checkpoint(),
            })
            .collect()
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
        let shard_ids = args.settings.shard_ids.clone();
        let mut state = SupervisorState {
            settings: Arc::new(args.settings),
            scheduler: args.scheduler,
            sink: args.sink,
            shards: BTreeMap::new(),
            runners: HashMap::new(),
            shutdown: None,
        };
        let count = state.settings.shard_count;
        for shard_id in shard_ids {
            register_shard(&shard_id.to_string());
            state
                .spawn_runner(&myself, ShardId::new(shard_id, count), None, None)
                .await?;
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
            SupervisorMsg::Phase { shard, phase } => {
                if let Some(slot) = state.shards.get_mut(&key(shard)) {
                    slot.phase = phase;
                    state.publish_states();
                }
            }
            SupervisorMsg::Restart { shard } => {
                let idle = state
                    .shards
                    .get(&key(shard))
                    .is_some_and(|slot| slot.runner.is_none() && !slot.draining);
                if idle
                    && state.shutdown.is_none()
                    && let Err(err) = state.spawn_runner(&myself, shard, None, None).await
                {
                    tracing::error!(shard_id = shard.number(), error = %err, "shard runner not restarted; trying again");
                    myself.send_after(RESTART_BACKOFF_MAX, move || SupervisorMsg::Restart {
                        shard,
                    });
                }
            }
            SupervisorMsg::Statuses(reply) => {
                let _ = reply.send(state.statuses());
            }
            SupervisorMsg::Drain { shard, reply } => match state.shards.get_mut(&key(shard)) {
                Some(Slot {
                    runner: Some(runner),
                    draining,
                    drained,
                    ..
                }) if !*draining => {
                    *draining = true;
                    // A runner that closed itself has its end on the way here: the drain
                    // waits for it (a failed cast must not stop the supervisor).
                    if let Err(MessagingErr::SendErr(RunnerMsg::Close(CloseKind::Drain(reply)))) =
                        runner.cast(RunnerMsg::Close(CloseKind::Drain(reply)))
                    {
                        *drained = Some(reply);
                    }
                }
                Some(slot) if slot.draining => {
                    let _ = reply.send(Err(ShardError::Busy("the shard is already draining")));
                }
                Some(slot) => {
                    // No runner: in restart back-off, stopped, or closed fatally. Nothing
                    // is connected, so the shard leaves at once, with the checkpoint of its
                    // last runner (every event of it delivered), and no restart follows.
                    let session = slot.last_session(shard);
                    state.shards.remove(&key(shard));
                    state.publish_states();
                    let _ = reply.send(session);
                }
                None => {
                    let _ = reply.send(Err(ShardError::UnknownShard(shard.number())));
                }
            },
            SupervisorMsg::Adopt {
                shard,
                session,
                seen_up_to,
                reply,
            } => {
                let result = if state.shards.contains_key(&key(shard)) {
                    Err(ShardError::AlreadyRunning(shard.number()))
                } else {
                    register_shard(&shard.number().to_string());
                    state
                        .spawn_runner(&myself, shard, session, seen_up_to)
                        .await
                        .map_err(|err| ShardError::Actor(err.to_string()))
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::Send { shard, payload } => {
                match state
                    .shards
                    .get(&key(shard))
                    .and_then(|slot| slot.runner.as_ref())
                {
                    Some(runner) if runner.cast(RunnerMsg::Send(payload)).is_ok() => {}
                    _ => tracing::warn!(
                        shard_id = shard.number(),
                        shard_count = shard.total(),
                        "gateway command for a shard not running here"
                    ),
                }
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutdown = Some(reply);
                for slot in state.shards.values() {
                    if let Some(runner) = &slot.runner {
                        let _ = runner.cast(RunnerMsg::Close(CloseKind::End));
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
        let (cell, reason) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            _ => return Ok(()),
        };
        let Some(shard) = state.runners.remove(&cell.get_id()) else {
            return Ok(());
        };
        let shard_id = shard.number();
        let slot = state
            .shards
            .get_mut(&key(shard))
            .expect("slot exists for every runner");
        slot.runner = None;
        match reason.as_deref() {
            _ if slot.draining => {
                let mut slot = state.shards.remove(&key(shard)).expect("found above");
                if let Some(reply) = slot.drained.take() {
                    let _ = reply.send(slot.last_session(shard));
                }
            }
            _ if state.shutdown.is_some() => slot.phase = ShardPhase::Stopped,
            Some(FATAL_STOP) => {}
            // Closed by itself, not drained: the sink said it may not run (a fenced cluster
            // node). It leaves the node, so the node no longer reports it as its own and
            // the leader places it again.
            Some(CLOSED_STOP) => {
                state.shards.remove(&key(shard));
            }
            failure => {
                // Anything else is a fault: restart with back-off.
                let delay = backoff(slot.restarts);
                slot.restarts += 1;
                slot.phase = ShardPhase::Reconnecting;
                tracing::warn!(
                    shard_id,
                    failure = failure.unwrap_or("runner stopped unexpectedly"),
                    ?delay,
                    "restarting shard runner"
                );
                myself.send_after(delay, move || SupervisorMsg::Restart { shard });
            }
        }
        state.publish_states();
        state.answer_shutdown_when_done();
        Ok(())
    }
}

/// A shard's place in the supervisor's map: by id, then count.
fn key(shard: ShardId) -> (u32, u32) {
    (shard.number(), shard.total())
}

fn backoff(restarts: u32) -> Duration {
    RESTART_BACKOFF_START
        .saturating_mul(1 << restarts.min(16))
        .min(RESTART_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use twilight_gateway::{EventTypeFlags, Intents};

    use super::*;
    use crate::{BotToken, IdentifyConfig, LocalScheduler};

    /// Stands for a runner that has already stopped by itself.
    struct Gone;

    impl Actor for Gone {
        type Msg = RunnerMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<RunnerMsg>,
            _args: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    /// The race behind a fenced node that once stopped for good: the fence drains a shard
    /// whose runner has just closed itself (the same lapse), before its end reaches the
    /// supervisor. The drain is answered once the end arrives; the supervisor goes on.
    #[tokio::test]
    async fn a_drain_racing_a_runner_that_closed_itself_is_answered_at_its_end() {
        let settings = GatewaySettings {
            token: BotToken::new("token"),
            intents: Intents::GUILDS,
            event_types: EventTypeFlags::all(),
            gateway_url: None,
            shard_count: 8,
            shard_ids: Vec::new(),
            identify_window: Duration::from_secs(5),
            buffer_capacity: 1,
            guild_lists: crate::GuildLists::ALL,
        };
        let scheduler = Arc::new(LocalScheduler::start(IdentifyConfig::discord(
            1,
            10,
            10,
            Duration::from_secs(60),
        )));
        let sink: Arc<dyn EventSink> = crate::receipt::tests::switch(true);
        let (myself, _) = Actor::spawn(
            None,
            ShardSupervisor,
            SupervisorArgs {
                settings: settings.clone(),
                scheduler: scheduler.clone(),
                sink: Arc::clone(&sink),
            },
        )
        .await
        .unwrap();
        let (runner, ended) = Actor::spawn(None, Gone, ()).await.unwrap();
        runner.stop(None);
        ended.await.unwrap();

        let shard = ShardId::new(3, 8);
        let session = ExportedSession {
            shard_id: 3,
            session_id: "s".into(),
            sequence: 42,
            resume_url: None,
        };
        let ledger = Arc::new(Ledger::new(3, Arc::clone(&sink), Some(session)));
        let mut slot = Slot::new(ledger);
        slot.runner = Some(runner.clone());
        let mut state = SupervisorState {
            settings: Arc::new(settings),
            scheduler,
            sink,
            shards: BTreeMap::from([(key(shard), slot)]),
            runners: HashMap::from([(runner.get_id(), shard)]),
            shutdown: None,
        };

        let (reply, mut answer) = tokio::sync::oneshot::channel();
        let drain = SupervisorMsg::Drain {
            shard,
            reply: reply.into(),
        };
        ShardSupervisor
            .handle(myself.clone(), drain, &mut state)
            .await
            .expect("a drain the runner can no longer take does not stop the supervisor");
        assert!(
            answer.try_recv().is_err(),
            "answered before the runner's end"
        );

        let end =
            SupervisionEvent::ActorTerminated(runner.get_cell(), None, Some(CLOSED_STOP.into()));
        ShardSupervisor
            .handle_supervisor_evt(myself.clone(), end, &mut state)
            .await
            .unwrap();
        let drained = answer.await.unwrap().expect("the last runner's checkpoint");
        assert_eq!(drained.sequence, 42);
        assert!(state.shards.is_empty(), "the shard left the node");
        myself.stop(None);
    }

    #[test]
    fn restart_backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(6), RESTART_BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), RESTART_BACKOFF_MAX);
    }
}
