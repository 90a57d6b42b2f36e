//! `ShardRunner`: a linked child of the supervisor that owns one twilight `Shard`.
//!
//! The actor is the supervision handle; the shard itself is polled by a task the actor
//! spawns, because a gateway connection must be polled continuously while the actor's
//! mailbox only carries control messages.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use metrics::counter;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Shard, ShardId, ShardState, StreamExt as _,
};

use crate::metrics::{DISCONNECTS, EVENTS_RECEIVED, FATAL_CLOSES};
use crate::{EventSink, GatewaySettings, ShardEvent, ShardPhase, SupervisorMsg};

/// Stop reason of a runner whose shard was closed fatally: the supervisor must not restart it.
/// (Supervision events can overtake the phase report, so the reason itself carries this.)
pub(crate) const FATAL_STOP: &str = "fatal gateway close";

/// How long a closing shard waits for Discord's answering close frame before it gives up.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct ShardRunner;

pub(crate) struct RunnerArgs {
    pub(crate) shard_id: u32,
    pub(crate) settings: Arc<GatewaySettings>,
    pub(crate) queue: InMemoryQueue,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) supervisor: ActorRef<SupervisorMsg>,
}

pub(crate) enum RunnerMsg {
    /// Close the connection with this frame and stop.
    Close(CloseFrame<'static>),
    /// The polling task ended.
    Ended(Outcome),
}

pub(crate) enum Outcome {
    /// Closed on request, or the connection ended for good.
    Closed,
    /// Discord closed with a code that forbids reconnecting.
    Fatal,
    /// The polling task panicked: a bug; the supervisor restarts the runner.
    Panicked(String),
}

pub(crate) struct RunnerState {
    control: mpsc::Sender<CloseFrame<'static>>,
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
        let mut config = ConfigBuilder::new(settings.token.expose().to_owned(), settings.intents)
            .queue(args.queue.clone());
        if let Some(url) = &settings.gateway_url {
            config = config.proxy_url(url.clone());
        }
        let shard = Shard::with_config(
            ShardId::new(args.shard_id, settings.shard_count),
            config.build(),
        );
        let (control, control_rx) = mpsc::channel(1);
        let poller = Poller {
            shard,
            // The runner itself needs READY and RESUMED to know when the shard is ready.
            event_types: settings.event_types | EventTypeFlags::READY | EventTypeFlags::RESUMED,
            sink: args.sink,
            supervisor: args.supervisor,
            phase: ShardPhase::Connecting,
            shard_label: args.shard_id.to_string(),
        };
        let task = tokio::spawn(async move {
            let outcome = match AssertUnwindSafe(poller.run(control_rx))
                .catch_unwind()
                .await
            {
                Ok(outcome) => outcome,
                Err(panic) => Outcome::Panicked(panic_message(&panic)),
            };
            // The runner may already be stopping; then nobody needs the outcome.
            let _ = myself.cast(RunnerMsg::Ended(outcome));
        });
        Ok(RunnerState { control, task })
    }

    async fn handle(
        &self,
        myself: ActorRef<RunnerMsg>,
        message: RunnerMsg,
        state: &mut RunnerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RunnerMsg::Close(frame) => {
                // A full channel means a close is already under way.
                let _ = state.control.try_send(frame);
            }
            RunnerMsg::Ended(Outcome::Closed) => myself.stop(None),
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

/// The polling loop of one shard.
struct Poller {
    shard: Shard,
    event_types: EventTypeFlags,
    sink: Arc<dyn EventSink>,
    supervisor: ActorRef<SupervisorMsg>,
    phase: ShardPhase,
    shard_label: String,
}

impl Poller {
    async fn run(mut self, mut control: mpsc::Receiver<CloseFrame<'static>>) -> Outcome {
        let shard_id = self.shard.id().number();
        let mut close_deadline = None;
        loop {
            let item = tokio::select! {
                Some(frame) = control.recv(), if close_deadline.is_none() => {
                    self.shard.close(frame);
                    close_deadline = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                    continue;
                }
                () = sleep_until(close_deadline) => {
                    tracing::warn!(shard_id, "gateway did not answer our close; dropping the connection");
                    return Outcome::Closed;
                }
                item = self.shard.next_event(self.event_types) => item,
            };
            match item {
                // The stream ends only after a fatal close, reported below.
                None => return Outcome::Fatal,
                Some(Ok(Event::GatewayClose(frame))) => {
                    // Polling on would reconnect: after our own close we stop here.
                    if close_deadline.is_some() {
                        self.report(ShardPhase::Stopped);
                        return Outcome::Closed;
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
                        return Outcome::Fatal;
                    }
                    tracing::info!(shard_id, ?code, "gateway connection closed; reconnecting");
                    counter!(DISCONNECTS, "shard" => self.shard_label.clone()).increment(1);
                    self.report(ShardPhase::Reconnecting);
                }
                Some(Ok(event)) => {
                    if matches!(event, Event::Ready(_) | Event::Resumed) {
                        self.report(ShardPhase::Ready);
                    }
                    let name = event.kind().name().unwrap_or("GATEWAY");
                    counter!(EVENTS_RECEIVED, "event" => name).increment(1);
                    self.sink.deliver(ShardEvent { shard_id, event });
                }
                Some(Err(err)) => {
                    // An event we cannot parse is skipped; twilight has already advanced the
                    // sequence, so resuming will not replay it either.
                    tracing::warn!(shard_id, error = %err, "gateway event skipped");
                }
            }
        }
    }

    fn report(&mut self, phase: ShardPhase) {
        if self.phase != phase {
            self.phase = phase.clone();
            let shard_id = self.shard.id().number();
            let _ = self
                .supervisor
                .cast(SupervisorMsg::Phase { shard_id, phase });
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
