//! `ShardRunner`: a linked child of the supervisor that owns one twilight `Shard`.
//!
//! The actor is the supervision handle. The shard is polled by a task the actor spawns
//! (a connection must be polled continuously; the mailbox only carries control), and a
//! second task forwards the shard's buffered events to the sink, so the polling task never
//! waits on the rest of the bot.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt as _};
use metrics::{Counter, counter, gauge};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, MessageSender, Session, Shard, ShardId,
    ShardState,
};

use crate::buffer::{BufferTx, Sequenced, event_buffer};
use crate::identify::ShardQueue;
use crate::metrics::{
    EVENTS_RECEIVED, FATAL_CLOSES, HEARTBEAT_LATENCY, RECONNECTS, REPLAYED_DUPLICATES, RESUMES,
    SHARD_EVENTS, reconnect_reason,
};
use crate::{
    EventSink, ExportedSession, GatewaySettings, GuildLists, IdentifyScheduler, Ledger, ShardError,
    ShardPhase, SupervisorMsg,
};

/// Stop reason of a runner whose shard was closed fatally: the supervisor must not restart it.
/// (Supervision events can overtake the phase report, so the reason itself carries this.)
pub(crate) const FATAL_STOP: &str = "fatal gateway close";
/// Stop reason of a runner that was closed on purpose (drained or shut down).
pub(crate) const CLOSED_STOP: &str = "closed on request";

/// How long a closing shard waits for Discord's answering close frame before it gives up.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most events handed to the sink at once.
const FORWARD_BATCH: usize = 256;

pub(crate) struct ShardRunner;

pub(crate) struct RunnerArgs {
    /// The shard with its set's count: two sets run during a resharding.
    pub(crate) shard: ShardId,
    pub(crate) settings: Arc<GatewaySettings>,
    pub(crate) scheduler: Arc<dyn IdentifyScheduler>,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) supervisor: ActorRef<SupervisorMsg>,
    /// A session to RESUME instead of identifying.
    pub(crate) session: Option<ExportedSession>,
    /// In `session`, the highest sequence a crashed previous owner may have delivered.
    pub(crate) seen_up_to: Option<u64>,
    /// The session as far as the sink has handled it (see
    /// [`crate::ShardStatus::checkpoint`]): the forwarder issues a receipt per batch, the
    /// supervisor reads it.
    pub(crate) ledger: Arc<Ledger>,
}

/// How to close a shard.
pub(crate) enum CloseKind {
    /// End the session (1000): shutdown.
    End,
    /// Keep the session resumable (4000) and export it once every event read has reached
    /// the sink.
    Drain(RpcReplyPort<Result<ExportedSession, ShardError>>),
}

pub(crate) enum RunnerMsg {
    Close(CloseKind),
    /// A gateway command (JSON payload) to send through the shard's rate-limited sender.
    Send(String),
    /// The polling task ended.
    Ended(Outcome),
}

pub(crate) enum Outcome {
    /// Closed on request.
    Closed,
    /// Discord closed with a code that forbids reconnecting.
    Fatal,
    /// The polling task panicked: a bug; the supervisor restarts the runner.
    Panicked(String),
}

pub(crate) struct RunnerState {
    control: mpsc::Sender<CloseKind>,
    sender: MessageSender,
    task: JoinHandle<()>,
}

impl Actor for ShardRunner {
    type Msg = RunnerMsg;
    type State = RunnerState;
    type Arguments = RunnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RunnerMsg>,
        args: RunnerArgs,
    ) -> Result<RunnerState, ActorProcessingErr> {
        let settings = &args.settings;
        let queue = ShardQueue::new(
            args.scheduler,
            settings.identify_window,
            args.session.is_some(),
        );
        let forwarder = Forwarder {
            shard: args.shard,
            shard_id: args.shard.number(),
            sink: Arc::clone(&args.sink),
            ledger: Arc::clone(&args.ledger),
            session: args.session.clone(),
            seen_up_to: args.seen_up_to,
        };
        let mut config =
            ConfigBuilder::new(settings.token.expose().to_owned(), settings.intents).queue(queue);
        if let Some(url) = &settings.gateway_url {
            config = config.proxy_url(url.clone());
        }
        if let Some(exported) = args.session {
            config = config.session(Session::new(exported.sequence, exported.session_id));
            if let Some(url) = exported.resume_url {
                config = config.resume_url(url);
            }
        }
        let shard = Shard::with_config(args.shard, config.build());
        let sender = shard.sender();
        let (buffer, buffered) = event_buffer(settings.buffer_capacity);
        let forwarder = tokio::spawn(forwarder.run(buffered));
        let (control, control_rx) = mpsc::channel(1);
        let shard_label = args.shard.number().to_string();
        let poller = Poller {
            shard,
            // The runner itself needs READY/RESUMED (readiness), invalid sessions and
            // heartbeat ACKs (latency), whatever the handlers want.
            event_types: settings.event_types
                | EventTypeFlags::READY
                | EventTypeFlags::RESUMED
                | EventTypeFlags::GATEWAY_INVALIDATE_SESSION
                | EventTypeFlags::GATEWAY_RECONNECT
                | EventTypeFlags::GATEWAY_HEARTBEAT_ACK,
            guild_lists: settings.guild_lists,
            buffer,
            supervisor: args.supervisor,
            phase: ShardPhase::Connecting,
            counted: EventCounters::new(&shard_label),
            shard_label,
            reconnect_reason: None,
            sink: args.sink,
        };
        let ledger = args.ledger;
        let shard_id = args.shard.number();
        let task = tokio::spawn(async move {
            let (outcome, drained) = match AssertUnwindSafe(poller.run(control_rx))
                .catch_unwind()
                .await
            {
                Ok(result) => result,
                Err(panic) => (Outcome::Panicked(panic_message(&panic)), None),
            };
            // The poller is gone, so the buffer is closed: the forwarder ends once every
            // event read from the socket has reached the sink.
            let _ = forwarder.await;
            if let Some((session, reply)) = drained {
                // The next owner resumes after every event read, so this node handles what
                // its mailboxes still hold, fenced or not; if it refused one already, the
                // next owner resumes from before it instead.
                let session = if ledger.hand_over() {
                    session
                } else {
                    ledger.checkpoint().ok_or(ShardError::NoSession(shard_id))
                };
                let _ = reply.send(session);
            }
            // The runner may already be stopping; then nobody needs the outcome.
            let _ = myself.cast(RunnerMsg::Ended(outcome));
        });
        Ok(RunnerState {
            control,
            sender,
            task,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RunnerMsg>,
        message: RunnerMsg,
        state: &mut RunnerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RunnerMsg::Close(kind) => {
                if let Err(mpsc::error::TrySendError::Full(CloseKind::Drain(reply))) =
                    state.control.try_send(kind)
                {
                    let _ = reply.send(Err(ShardError::Busy("a close is already under way")));
                }
            }
            RunnerMsg::Send(json) => {
                // twilight's sender applies Discord's 120 sends per 60 s, keeping room for
                // heartbeats; a closed sender means the connection is being replaced.
                if state.sender.send(json).is_err() {
                    tracing::warn!("gateway command dropped: the shard is not connected");
                }
            }
            RunnerMsg::Ended(Outcome::Closed) => myself.stop(Some(CLOSED_STOP.to_owned())),
            RunnerMsg::Ended(Outcome::Fatal) => myself.stop(Some(FATAL_STOP.to_owned())),
            RunnerMsg::Ended(Outcome::Panicked(message)) => {
                return Err(format!("shard polling task panicked: {message}").into());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RunnerMsg>,
        state: &mut RunnerState,
    ) -> Result<(), ActorProcessingErr> {
        // Dropping the shard drops its connection: nobody may poll it after the runner stops.
        state.task.abort();
        Ok(())
    }
}

/// Hands the shard's buffered events to the sink in batches, in order, each with a receipt
/// that moves the checkpoint past it once the sink has handled it.
struct Forwarder {
    /// The shard with its set's count, as the sink gets it.
    shard: ShardId,
    shard_id: u32,
    sink: Arc<dyn EventSink>,
    ledger: Arc<Ledger>,
    /// The session of the events seen so far, with the sequence of the last dispatch.
    session: Option<ExportedSession>,
    /// Dispatches of the adopted session up to this sequence may already have reached a
    /// crashed owner's sink; cleared when READY starts a new session.
    seen_up_to: Option<u64>,
}

impl Forwarder {
    async fn run(mut self, mut buffered: mpsc::Receiver<Sequenced>) {
        let shard_label = self.shard_id.to_string();
        let mut batch = Vec::with_capacity(FORWARD_BATCH);
        let mut events = Vec::with_capacity(FORWARD_BATCH);
        // Replays come first in a resumed session, so the possible duplicates of a batch
        // are a prefix of it: handing them over first keeps gateway order.
        let mut replayed = Vec::new();
        while buffered.recv_many(&mut batch, FORWARD_BATCH).await > 0 {
            for Sequenced { seq, event } in batch.drain(..) {
                if self.track(seq, &event) && self.seen_up_to.is_some_and(|seen| seq <= seen) {
                    replayed.push(event);
                } else {
                    events.push(event);
                }
            }
            let receipt = self.ledger.issue(self.session.clone());
            if !replayed.is_empty() {
                counter!(REPLAYED_DUPLICATES, "shard" => shard_label.clone())
                    .increment(replayed.len() as u64);
                self.sink
                    .deliver_tracked(
                        self.shard,
                        std::mem::take(&mut replayed),
                        true,
                        receipt.clone(),
                    )
                    .await;
            }
            if !events.is_empty() {
                self.sink
                    .deliver_tracked(self.shard, std::mem::take(&mut events), false, receipt)
                    .await;
                events.reserve(FORWARD_BATCH);
            }
        }
    }

    /// Follows the session through `event`; `true` for a dispatch, the only events with a
    /// sequence of their own (the others carry the current one and move nothing).
    fn track(&mut self, seq: u64, event: &Event) -> bool {
        if let Event::Ready(ready) = event {
            self.session = Some(ExportedSession {
                shard_id: self.shard_id,
                session_id: ready.session_id.clone(),
                sequence: seq,
                resume_url: Some(ready.resume_gateway_url.clone()),
            });
            self.seen_up_to = None;
        }
        let dispatch = event.kind().name().is_some();
        if dispatch && let Some(session) = &mut self.session {
            session.sequence = seq;
        }
        dispatch
    }
}

type Drained = (
    Result<ExportedSession, ShardError>,
    RpcReplyPort<Result<ExportedSession, ShardError>>,
);

/// The polling loop of one shard.
struct Poller {
    shard: Shard<ShardQueue>,
    event_types: EventTypeFlags,
    guild_lists: GuildLists,
    buffer: BufferTx,
    supervisor: ActorRef<SupervisorMsg>,
    phase: ShardPhase,
    shard_label: String,
    counted: EventCounters,
    /// Why the connection was lost, counted once the shard is back.
    reconnect_reason: Option<&'static str>,
    /// Asked at every close whether to connect again.
    sink: Arc<dyn EventSink>,
}

/// The poller's per-event counters, looked up once: a `counter!` finds its handle in the
/// recorder's registry on every call (B1's profile: 1.6 % of the bot's CPU in lookups).
struct EventCounters {
    shard: Counter,
    /// By event name, in the order first seen: a shard sees a dozen kinds.
    by_event: Vec<(&'static str, Counter)>,
}

impl EventCounters {
    fn new(shard_label: &str) -> Self {
        Self {
            shard: counter!(SHARD_EVENTS, "shard" => shard_label.to_owned()),
            by_event: Vec::new(),
        }
    }

    fn event(&mut self, name: &'static str) {
        self.shard.increment(1);
        match self.by_event.iter().find(|(seen, _)| *seen == name) {
            Some((_, counter)) => counter.increment(1),
            None => {
                let counter = counter!(EVENTS_RECEIVED, "event" => name);
                counter.increment(1);
                self.by_event.push((name, counter));
            }
        }
    }
}

impl Poller {
    async fn run(mut self, mut control: mpsc::Receiver<CloseKind>) -> (Outcome, Option<Drained>) {
        let shard_id = self.shard.id().number();
        let mut closing: Option<(tokio::time::Instant, CloseKind)> = None;
        loop {
            let item = tokio::select! {
                Some(kind) = control.recv(), if closing.is_none() => {
                    let frame = match kind {
                        CloseKind::End => CloseFrame::NORMAL,
                        CloseKind::Drain(_) => CloseFrame::RESUME,
                    };
                    self.shard.close(frame);
                    closing = Some((tokio::time::Instant::now() + CLOSE_TIMEOUT, kind));
                    continue;
                }
                () = sleep_until(closing.as_ref().map(|(deadline, _)| *deadline)) => {
                    tracing::warn!(shard_id, "gateway did not answer our close; dropping the connection");
                    let drained = closing.take().and_then(|(_, kind)| self.export(kind));
                    self.report(ShardPhase::Stopped);
                    return (Outcome::Closed, drained);
                }
                message = self.shard.next() => match message {
                    Some(Ok(message)) => match crate::parse::event(message, self.event_types, self.guild_lists) {
                        Some(event) => Some(event),
                        // A type the bot does not handle: skipped unparsed.
                        None => continue,
                    },
                    Some(Err(err)) => Some(Err(err)),
                    None => None,
                },
            };
            match item {
                // The stream ends only after a fatal close, reported below.
                None => return (Outcome::Fatal, None),
                Some(Ok(Event::GatewayClose(frame))) => {
                    // Polling on would reconnect: after our own close we stop here.
                    if let Some((_, kind)) = closing.take() {
                        let drained = self.export(kind);
                        self.report(ShardPhase::Stopped);
                        return (Outcome::Closed, drained);
                    }
                    let code = frame.as_ref().map(|frame| frame.code);
                    if self.shard.state() == ShardState::FatallyClosed {
                        let code = code.unwrap_or_default();
                        let reason = fatal_reason(code);
                        tracing::error!(
                            shard_id,
                            code,
                            "gateway closed the shard for good: {reason}"
                        );
                        counter!(FATAL_CLOSES, "code" => code.to_string()).increment(1);
                        self.report(ShardPhase::Fatal {
                            code,
                            reason: reason.to_owned(),
                        });
                        return (Outcome::Fatal, None);
                    }
                    // twilight reconnects on the next poll: a fenced shard stops here instead.
                    if !self.sink.may_run(shard_id) {
                        tracing::warn!(
                            shard_id,
                            ?code,
                            "gateway connection closed; fenced, so not reconnecting"
                        );
                        self.report(ShardPhase::Stopped);
                        return (Outcome::Closed, None);
                    }
                    tracing::info!(shard_id, ?code, "gateway connection closed; reconnecting");
                    self.reconnect_reason.get_or_insert(reconnect_reason(code));
                    self.report(ShardPhase::Reconnecting);
                }
                Some(Ok(event)) => {
                    if !self.observe(&event) {
                        continue;
                    }
                    self.counted.event(event.kind().name().unwrap_or("GATEWAY"));
                    // twilight has just set the session's sequence to this dispatch's.
                    let seq = self.shard.session().map_or(0, Session::sequence);
                    if !self.buffer.push(seq, event, &self.shard_label).await {
                        // Only if the forwarder died, which it does not by itself.
                        return (Outcome::Panicked("event forwarder stopped".into()), None);
                    }
                }
                Some(Err(err)) => {
                    // An event we cannot parse is skipped; twilight has already advanced the
                    // sequence, so resuming will not replay it either.
                    tracing::warn!(shard_id, error = %err, "gateway event skipped");
                }
            }
        }
    }

    /// Updates the shard's phase and metrics from a gateway event; `false` for the events
    /// only the runner needs (READY and RESUMED go on: the cache wants them).
    fn observe(&mut self, event: &Event) -> bool {
        match event {
            Event::Ready(_) => {
                self.back_online(false);
                true
            }
            Event::Resumed => {
                self.back_online(true);
                true
            }
            Event::GatewayInvalidateSession(resumable) => {
                tracing::info!(shard = %self.shard_label, resumable, "gateway invalidated the session");
                self.reconnect_reason.get_or_insert(if *resumable {
                    "resumable_close"
                } else {
                    "session_close"
                });
                self.report(ShardPhase::Reconnecting);
                false
            }
            Event::GatewayReconnect => {
                self.reconnect_reason.get_or_insert("reconnect_requested");
                self.report(ShardPhase::Reconnecting);
                false
            }
            Event::GatewayHeartbeatAck => {
                if let Some(latency) = self.shard.latency().recent().first() {
                    gauge!(HEARTBEAT_LATENCY, "shard" => self.shard_label.clone())
                        .set(latency.as_secs_f64());
                }
                false
            }
            _ => true,
        }
    }

    fn back_online(&mut self, resumed: bool) {
        if let Some(reason) = self.reconnect_reason.take() {
            counter!(RECONNECTS, "shard" => self.shard_label.clone(), "reason" => reason)
                .increment(1);
        }
        if resumed {
            counter!(RESUMES, "shard" => self.shard_label.clone()).increment(1);
        }
        self.report(ShardPhase::Ready);
    }

    /// The session to hand over, answering a drain; `None` for a plain close.
    fn export(&self, kind: CloseKind) -> Option<Drained> {
        let CloseKind::Drain(reply) = kind else {
            return None;
        };
        let shard_id = self.shard.id().number();
        let session = self
            .shard
            .session()
            .map(|session| ExportedSession {
                shard_id,
                session_id: session.id().to_owned(),
                sequence: session.sequence(),
                resume_url: self.shard.resume_url().map(str::to_owned),
            })
            .ok_or(ShardError::NoSession(shard_id));
        Some((session, reply))
    }

    fn report(&mut self, phase: ShardPhase) {
        if self.phase != phase {
            self.phase = phase.clone();
            let shard = self.shard.id();
            let _ = self.supervisor.cast(SupervisorMsg::Phase { shard, phase });
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What an operator should do about a fatal close code.
pub(crate) fn fatal_reason(code: u16) -> &'static str {
    match code {
        4004 => {
            "authentication failed: the bot token is invalid or was reset; set a valid DISCORD_TOKEN"
        }
        4010 => "invalid shard: the shard id or count is wrong for this bot",
        4011 => "sharding required: the bot is in too many guilds for this shard count",
        4012 => "invalid gateway API version",
        4013 => "invalid intents",
        4014 => {
            "disallowed intents: enable the privileged intents in the developer portal or stop requesting them"
        }
        _ => "closed by the gateway with a code that forbids reconnecting",
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
