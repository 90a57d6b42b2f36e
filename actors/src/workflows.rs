//! Workflows: automations a guild's admins define (trigger → conditions → actions), run in
//! the guild's actor, in event order, inside a sandbox.
//!
//! - A definition (`model.rs`) is JSON, checked and compiled once: templates parsed
//!   (`template.rs`, a small language of its own), regexes built with size limits (linear
//!   time), call chains checked for loops and depth.
//! - The guild's enabled workflows are compiled into its state on the first event that could
//!   trigger one (one storage read, on a task: events arriving meanwhile wait in order) and
//!   kept; an event that matches no trigger costs no storage I/O.
//! - A run (`run.rs`) is pure computation within [`Limits`]; it asks for Discord calls,
//!   which `act.rs` sends in order on a task. A `wait` is a durable timer that carries on
//!   from the next action on whichever node owns the guild then.
//! - Bot-authored events never trigger a workflow; at most [`FANOUT`] workflows fire per
//!   event and [`RUNS_PER_MINUTE`] per guild. Every limit hit is counted
//!   (`protonn_workflows_limits_hit_total{limit}`) and is the outcome of the run's trace; the
//!   last [`TRACES_KEPT`] traces of each workflow are kept with the guild's state and in
//!   storage (a ring of slots per workflow), read back with the first activation.
//! - Variables kept between runs (the server's, each member's) are read with the first
//!   activation and live in the state; a run's changes are stored on a task, one batch at a
//!   time per guild, so the newest value is the one stored.
//! - A workflow's message may carry buttons (`wf:<id>`); a press or a modal sent comes
//!   through [`Feature::on_component`], is answered once at once (the modal the button
//!   opens, or an acknowledgement) and then runs like an event, in order.
//! - The guild's last [`RECENT_EVENTS`] messages, joins, leaves and reactions are kept, as
//!   the actor got them (shared, not copied), for a dry run to replay: in memory only, and
//!   only while the guild has an enabled workflow or its editor was open lately
//!   ([`EDITOR_INTEREST`]). Most guilds have neither, and twenty messages would be most of
//!   an active guild's bytes (B2).
//! - A run's Discord calls wait until every kept value it could have read is stored, so what
//!   members see never rests on a change a crash could lose.
//! - The guild's plan decides which enabled workflows run ([`over_plan`]: the first ones by
//!   id, within its step limit), chosen at match time from views compiled for each plan, so a
//!   downgrade or an upgrade reloads nothing.

mod act;
mod calls;
mod model;
mod prefilter;
mod run;
mod template;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::join_all;
use metrics::counter;
use protonn_shard::EventTypeFlags;
use protonn_storage::{
    Plan, StorageError, Timer, Timestamp, WORKFLOW_RUNS_KEPT, WORKFLOW_TRACE_MAX_BYTES,
    WORKFLOW_VARIABLES_PER_WRITE, WorkflowRun, WorkflowVariable,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use twilight_model::channel::message::EmojiReactionType;
use twilight_model::channel::message::component::{TextInput, TextInputStyle};
use twilight_model::gateway::event::Event;
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseType};
use twilight_model::id::Id;
use twilight_model::user::User;

use crate::GuildCall;
use crate::commands::{self, Parsed};
use crate::feature::{Answer, CallTask, ComponentUse, Ctx, Effect, Feature, Task};
use crate::guild::Io;
use crate::metrics::{COMMANDS_HANDLED, WORKFLOW_ACTIVATIONS, WORKFLOW_LIMITS_HIT, WORKFLOW_RUNS};
use model::{Compiled, CompiledTrigger, Definition};
use run::{EventFacts, EventKind, KeptKey, KeptVars, Limit, Limits, Outcome, Start, Trace, Vars};
use template::Value;

pub use run::{
    EventFacts as SampleEvent, EventKind as SampleEventKind, Limit as SandboxLimit,
    Outcome as WorkflowOutcome, Trace as WorkflowTrace, TraceStep as WorkflowTraceStep,
};

/// Values of the `outcome` label of `protonn_workflows_runs_total`.
pub(crate) const RUN_OUTCOMES: [&str; 6] = Outcome::LABELS;
/// Values of the `limit` label of `protonn_workflows_limits_hit_total`.
pub(crate) const LIMIT_LABELS: [&str; 10] = Limit::LABELS;

/// The feature's name: its timers' `feature`.
pub(crate) const NAME: &str = "workflows";
/// Workflows fired by one event at most; further matches are skipped (limit `fanout`).
pub(crate) const FANOUT: usize = 3;
/// Runs a guild may start per minute (a token bucket: up to this many at once, refilled
/// evenly over the minute); beyond, runs are skipped (limit `rate`).
pub(crate) const RUNS_PER_MINUTE: u32 = 30;
/// Traces kept per workflow, newest last (in memory as in storage).
pub(crate) const TRACES_KEPT: usize = WORKFLOW_RUNS_KEPT as usize;
/// Events held, in order, while the guild's workflows are loaded or members' privacy choices
/// read; beyond, they are not run.
const QUEUED_WHILE_LOADING: usize = 1_000;
/// Members whose privacy choices one [`drain`] reads at most (at once); the events after
/// them wait for the next.
const CHOICES_PER_DRAIN: usize = 100;
/// The guild's recent events a dry run may replay ([`RecentEvents`]).
pub const RECENT_EVENTS: usize = 20;
/// How long after the workflow editor last asked for a guild's recent events (a dry run
/// counts too) the guild keeps them while it has no enabled workflow.
const EDITOR_INTEREST: Duration = Duration::from_secs(15 * 60);
/// Members whose roles are remembered, to tell a role added from a role removed (the node
/// cache holds the roles after the update only).
const MEMBERS_REMEMBERED: usize = 1_000;

pub(crate) struct Workflows;

impl Feature for Workflows {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A workflow's command, or any command while the guild's workflows are not loaded yet
    /// (one may be a workflow's: staying silent is better than answering "unknown").
    fn claims_command(&self, ctx: &mut Ctx<'_>, name: &str) -> bool {
        let plan = ctx.plan;
        let shared = Arc::clone(&ctx.state::<State>().shared);
        let mut guard = lock(&shared);
        guard.plan = plan;
        let Phase::Ready(active) = &guard.phase else {
            // Answered as unknown after the load if no workflow takes it.
            guard.unknown_command = Some(name.to_owned());
            return true;
        };
        has_command(active.view(plan), name)
    }

    fn event_types(&self) -> EventTypeFlags {
        EventTypeFlags::MESSAGE_CREATE
            | EventTypeFlags::MEMBER_ADD
            | EventTypeFlags::MEMBER_REMOVE
            | EventTypeFlags::MEMBER_UPDATE
            | EventTypeFlags::REACTION_ADD
            | EventTypeFlags::REACTION_REMOVE
    }

    fn on_shared_event(&self, ctx: &mut Ctx<'_>, event: &Arc<Event>) -> Vec<Effect> {
        let mut shared = lock(&ctx.state::<State>().shared);
        // Before the workflows are loaded, whether the guild has any is not known yet.
        let has_workflows = match &shared.phase {
            Phase::Unloaded => true,
            Phase::Ready(active) => !active.enabled.is_empty(),
        };
        shared.recent.remember(event, has_workflows);
        drop(shared);
        self.on_event(ctx, event)
    }

    fn on_event(&self, ctx: &mut Ctx<'_>, event: &Event) -> Vec<Effect> {
        let plan = ctx.plan;
        let shared = Arc::clone(&ctx.state::<State>().shared);
        let mut guard = lock(&shared);
        guard.plan = plan;
        let unknown_command = guard.unknown_command.take();
        if let Phase::Ready(active) = &guard.phase
            && !active.view(plan).listens_to(event)
        {
            // Most events of most guilds end here: nothing is copied for them.
            return Vec::new();
        }
        let prefix = ctx.config.prefix.clone();
        let io = ctx.io.clone();
        let facts = facts_of(&io, &mut guard.member_roles, event);
        if facts.is_empty() {
            return Vec::new();
        }
        accept(&io, &shared, guard, facts, unknown_command, &prefix)
    }

    fn answers_privately(&self) -> bool {
        true
    }

    fn component_prefix(&self) -> Option<&'static str> {
        Some(model::COMPONENT_PREFIX)
    }

    /// A press of a workflow's button, or a workflow's modal sent: answered once, at once
    /// (with the modal the press opens, or an acknowledgement), then run like an event, in
    /// order. Before the guild's workflows are loaded, the answer waits for the load (the
    /// interaction is deferred if that is slow).
    fn on_component(&self, ctx: &mut Ctx<'_>, used: ComponentUse) -> Vec<Effect> {
        let prefix = ctx.config.prefix.clone();
        let io = ctx.io.clone();
        let plan = ctx.plan;
        let shared = Arc::clone(&ctx.state::<State>().shared);
        let facts = component_facts(used);
        let loaded = {
            let mut guard = lock(&shared);
            guard.plan = plan;
            matches!(guard.phase, Phase::Ready(_))
        };
        if loaded {
            return pressed(&io, &shared, facts, &prefix);
        }
        vec![Effect::task(async move {
            if let Err(err) = activate(&io, &shared).await {
                counter!(WORKFLOW_ACTIVATIONS, "outcome" => "error").increment(1);
                tracing::error!(guild_id = %io.guild_id(), error = %err, "workflows not loaded; a button press is not run");
                let text =
                    "This button's workflows cannot run right now; please try again shortly.";
                return vec![Effect::Reply(Answer::new("error", text))];
            }
            pressed(&io, &shared, facts, &prefix)
        })]
    }

    fn on_call(&self, ctx: &mut Ctx<'_>, call: &GuildCall) -> Option<CallTask> {
        let shared = Arc::clone(&ctx.state::<State>().shared);
        lock(&shared).plan = ctx.plan;
        calls::answer(ctx, shared, call)
    }

    fn on_timer(&self, ctx: &mut Ctx<'_>, timer: Timer) -> Vec<Effect> {
        let io = ctx.io.clone();
        let shared = Arc::clone(&ctx.state::<State>().shared);
        lock(&shared).plan = ctx.plan;
        vec![Effect::task(resume(io, shared, timer))]
    }
}

/// The feature's per-guild state: shared with its tasks (activation, runs, resumed waits),
/// each holding the lock only for pure work.
#[derive(Default)]
struct State {
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    phase: Phase,
    /// Events held in order while the workflows load or a member's privacy choice is read
    /// (at most [`QUEUED_WHILE_LOADING`]); a [`drain`] task works through them.
    waiting: VecDeque<Queued>,
    /// Whether a [`drain`] task is under way.
    draining: bool,
    /// The guild's runs parked in a durable wait: counted from its timers at each load, one
    /// more for each wait stored, one less for each that ends.
    pending_waits: usize,
    /// Bumped by every change to the guild's workflows: a load begun before it is stale.
    generation: u64,
    bucket: RunBucket,
    traces: HashMap<u64, VecDeque<Trace>>,
    member_roles: HashMap<u64, Vec<u64>>,
    /// A text command claimed before the workflows were loaded ([`Feature::claims_command`]),
    /// taken by the message's event right after.
    unknown_command: Option<String>,
    /// The guild's plan as of the latest event, call or timer: what the runs started from a
    /// task go by.
    plan: Plan,
    /// What the workflows keep between runs: read once, with their first activation (or on
    /// the first use by a timer or a call), and kept across changes to the workflows.
    kept: Option<Kept>,
    /// Kept variables changed and not stored yet, each with its newest value.
    unsaved: BTreeMap<KeptKey, WorkflowVariable>,
    /// Whether a [`save_variables`] task is under way.
    saving: bool,
    /// Changes to kept variables so far (one per run that made any), and up to which one
    /// they are stored: a run's Discord calls wait for what it could have read
    /// ([`act::Durable`]).
    kept_changes: u64,
    /// Made on first need: most guilds never run a workflow.
    kept_stored: Option<watch::Sender<u64>>,
    /// The guild's last events a workflow could replay in a dry run.
    recent: RecentEvents,
}

/// The guild's last [`RECENT_EVENTS`] messages, joins, leaves and reactions, as the actor got
/// them (the `Arc`: keeping one copies nothing), each with a number of its own. In memory
/// only: they hold members' messages, and go with the actor.
#[derive(Default)]
struct RecentEvents {
    events: VecDeque<(u64, Arc<Event>)>,
    next_id: u64,
    /// Until when the editor's interest keeps them without a workflow ([`EDITOR_INTEREST`]).
    wanted_until: Option<Instant>,
}

impl RecentEvents {
    /// The editor asked for them: kept from now on, for [`EDITOR_INTEREST`].
    fn wanted(&mut self) {
        self.wanted_until = Some(Instant::now() + EDITOR_INTEREST);
    }

    /// Whether they are kept: something may replay them (an enabled workflow, or the editor's
    /// interest). If not, the bytes go back now.
    fn keep(&mut self, has_workflows: bool) -> bool {
        if has_workflows
            || self
                .wanted_until
                .is_some_and(|until| until > Instant::now())
        {
            return true;
        }
        self.wanted_until = None;
        self.events = VecDeque::new();
        false
    }

    fn remember(&mut self, event: &Arc<Event>, has_workflows: bool) {
        if !self.keep(has_workflows) {
            return;
        }
        if !matches!(
            **event,
            Event::MessageCreate(_)
                | Event::MemberAdd(_)
                | Event::MemberRemove(_)
                | Event::ReactionAdd(_)
                | Event::ReactionRemove(_)
        ) {
            return;
        }
        if self.events.len() >= RECENT_EVENTS {
            self.events.pop_front();
        }
        self.next_id += 1;
        self.events.push_back((self.next_id, Arc::clone(event)));
    }
}

/// What the guild's workflows keep between runs.
#[derive(Default)]
struct Kept {
    vars: KeptVars,
    /// Each workflow's storage slot for its next run's trace.
    next_slot: HashMap<u64, u32>,
}

/// An event that waits for the workflows to load or its member's privacy choice.
struct Queued {
    facts: EventFacts,
    /// The command name the built-in parser left to us, to answer as unknown if no workflow
    /// takes it.
    unknown_command: Option<String>,
}

#[derive(Default)]
enum Phase {
    /// Not loaded yet, or dropped by a change (the next [`drain`] loads them).
    #[default]
    Unloaded,
    Ready(Arc<Active>),
}

/// The guild's enabled workflows, compiled, and for each plan those it runs.
#[derive(Default)]
struct Active {
    /// Every enabled workflow (a schedule past the plan stays armed for when it runs again).
    enabled: run::Workflows,
    free: View,
    premium: View,
}

/// The workflows one plan runs.
#[derive(Default)]
struct View {
    /// By id, for calls between workflows.
    workflows: run::Workflows,
    /// In id order: the order in which triggers are tried (no lookup per workflow).
    order: Vec<Arc<Compiled>>,
    /// Which events any trigger listens to.
    listens: Listens,
    /// The message triggers' texts and regexes, looked for once per message.
    prefilter: prefilter::Prefilter,
}

#[derive(Default)]
struct Listens {
    messages: bool,
    members: bool,
    reactions: bool,
    roles: bool,
}

impl Active {
    fn new(compiled: Vec<Compiled>) -> Self {
        let mut enabled: Vec<Arc<Compiled>> = compiled.into_iter().map(Arc::new).collect();
        enabled.sort_by_key(|workflow| workflow.workflow_id);
        let steps: Vec<(u64, usize)> = enabled.iter().map(|w| (w.workflow_id, w.steps)).collect();
        let view = |plan: Plan| {
            let off = over_plan(&steps, plan);
            let mut view = View::default();
            for workflow in &enabled {
                if !off.iter().any(|o| o.workflow_id == workflow.workflow_id) {
                    view.add(Arc::clone(workflow));
                }
            }
            view.prefilter = prefilter::Prefilter::new(view.order.iter().map(|w| &w.trigger));
            view
        };
        Self {
            free: view(Plan::Free),
            premium: view(Plan::Premium),
            enabled: enabled.into_iter().map(|w| (w.workflow_id, w)).collect(),
        }
    }

    fn view(&self, plan: Plan) -> &View {
        match plan {
            Plan::Free => &self.free,
            Plan::Premium => &self.premium,
        }
    }
}

/// One of the guild's recent events, as a dry run may replay it: its number among them and
/// what the workflows see of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEvent {
    pub id: u64,
    pub event: EventFacts,
}

/// An enabled workflow the guild's plan does not run (a downgrade keeps it), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowOff {
    pub workflow_id: u64,
    pub why: String,
}

/// The enabled workflows (`(id, steps)`, in id order) that `plan` does not run, and why: past
/// its count (the first ones made run), or with more steps than it allows.
pub(crate) fn over_plan(enabled: &[(u64, usize)], plan: Plan) -> Vec<WorkflowOff> {
    let limits = plan.limits();
    let most = (limits.workflows as usize).min(model::limits::WORKFLOWS);
    let longest = limits.workflow_steps as usize;
    enabled
        .iter()
        .enumerate()
        .filter_map(|(i, &(workflow_id, steps))| {
            let why = if i >= most {
                format!("the {} plan runs {most} workflows", plan.name())
            } else if steps > longest {
                format!(
                    "it has {steps} steps; the {} plan runs workflows of up to {longest}",
                    plan.name()
                )
            } else {
                return None;
            };
            Some(WorkflowOff { workflow_id, why })
        })
        .collect()
}

impl View {
    fn add(&mut self, compiled: Arc<Compiled>) {
        let listens = &mut self.listens;
        match compiled.trigger {
            CompiledTrigger::Message { .. } | CompiledTrigger::Command(_) => {
                listens.messages = true
            }
            CompiledTrigger::MemberJoin | CompiledTrigger::MemberLeave => listens.members = true,
            CompiledTrigger::ReactionAdd(_) | CompiledTrigger::ReactionRemove(_) => {
                listens.reactions = true
            }
            CompiledTrigger::RoleAdd(_) | CompiledTrigger::RoleRemove(_) => listens.roles = true,
            // Presses come through `on_component`, not as gateway events.
            CompiledTrigger::Schedule { .. }
            | CompiledTrigger::Called
            | CompiledTrigger::Button(_)
            | CompiledTrigger::Modal { .. } => {}
        }
        self.workflows
            .insert(compiled.workflow_id, Arc::clone(&compiled));
        self.order.push(compiled);
    }

    /// Whether the event can fire a trigger (or tells the roles members had, for role
    /// triggers): the rest costs nothing more than this check.
    fn listens_to(&self, event: &Event) -> bool {
        let Listens {
            messages,
            members,
            reactions,
            roles,
        } = self.listens;
        match event {
            Event::MessageCreate(_) => messages || roles,
            Event::MemberAdd(_) | Event::MemberRemove(_) => members || roles,
            Event::MemberUpdate(_) => roles,
            Event::ReactionAdd(_) | Event::ReactionRemove(_) => reactions,
            _ => false,
        }
    }
}

/// A token bucket of runs: [`RUNS_PER_MINUTE`] at most, refilled evenly.
struct RunBucket {
    tokens: f64,
    at: Instant,
}

impl Default for RunBucket {
    fn default() -> Self {
        Self {
            tokens: f64::from(RUNS_PER_MINUTE),
            at: Instant::now(),
        }
    }
}

impl RunBucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let per_sec = f64::from(RUNS_PER_MINUTE) / 60.0;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec)
            .min(f64::from(RUNS_PER_MINUTE));
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

impl Shared {
    /// What a run started now could have read of the kept variables, and how far they are
    /// stored.
    fn durable(&mut self) -> act::Durable {
        act::Durable {
            stored: self.kept_stored().subscribe(),
            seen: self.kept_changes,
        }
    }

    /// Up to which change the kept variables are stored, for the runs to wait on.
    fn kept_stored(&mut self) -> &watch::Sender<u64> {
        self.kept_stored.get_or_insert_with(|| watch::channel(0).0)
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding it leaves pure data behind: carry on with it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn queue(waiting: &mut VecDeque<Queued>, queued: impl Iterator<Item = Queued>) {
    for item in queued {
        if waiting.len() >= QUEUED_WHILE_LOADING {
            counter!(WORKFLOW_ACTIVATIONS, "outcome" => "overflow").increment(1);
            continue;
        }
        waiting.push_back(item);
    }
}

fn has_command(view: &View, name: &str) -> bool {
    view.order
        .iter()
        .any(|w| matches!(&w.trigger, CompiledTrigger::Command(command) if command == name))
}

/// The guild's recent events (newest first, with their numbers) that a dry run may replay:
/// those of bots left out, as the runs leave them out, and those of members who restricted
/// processing (or whose choice cannot be read) too.
async fn recent_events(io: &Io, shared: &Mutex<Shared>) -> Vec<(u64, EventFacts)> {
    let events: Vec<(u64, Arc<Event>)> = {
        let mut shared = lock(shared);
        shared.recent.wanted();
        shared.recent.events.iter().cloned().collect()
    };
    let mut recent = Vec::new();
    for (id, event) in events.into_iter().rev() {
        // Replays change nothing: not even the roles remembered.
        for facts in facts_of(io, &mut HashMap::new(), &event) {
            let may = match facts.user_id {
                None => true,
                Some(user) => match io.privacy_choices().known(user) {
                    Some(flags) => flags.may_process(),
                    None => io
                        .privacy_choices()
                        .read(user)
                        .await
                        .is_ok_and(|flags| flags.may_process()),
                },
            };
            if may {
                recent.push((id, facts));
            }
        }
    }
    recent
}

/// Runs an event's facts now if nothing waits before them and every member's privacy
/// choice is known; else queues them, in order, for a [`drain`].
fn accept(
    io: &Io,
    shared: &Arc<Mutex<Shared>>,
    mut guard: MutexGuard<'_, Shared>,
    facts: Vec<EventFacts>,
    unknown_command: Option<String>,
    prefix: &str,
) -> Vec<Effect> {
    if guard.waiting.is_empty()
        && unknown_command.is_none()
        && matches!(guard.phase, Phase::Ready(_))
    {
        let no_reads = HashMap::new();
        let decided: Option<Vec<bool>> = facts
            .iter()
            .map(|facts| may_process(io, facts, &no_reads))
            .collect();
        if let Some(decided) = decided {
            let mut effects = Vec::new();
            for (facts, may) in facts.into_iter().zip(decided) {
                if may {
                    effects.extend(dispatch(&mut guard, shared, io, facts, prefix));
                }
            }
            return effects;
        }
    }
    let queued = facts.into_iter().map(|facts| Queued {
        unknown_command: unknown_command.clone(),
        facts,
    });
    queue(&mut guard.waiting, queued);
    if guard.draining {
        return Vec::new();
    }
    guard.draining = true;
    drop(guard);
    vec![Effect::Task(drain(
        io.clone(),
        Arc::clone(shared),
        prefix.to_owned(),
    ))]
}

/// What the runner needs of a press of a workflow's button or of a modal sent.
fn component_facts(used: ComponentUse) -> EventFacts {
    let id = used.custom_id.strip_prefix(model::COMPONENT_PREFIX);
    EventFacts {
        kind: if used.modal {
            EventKind::Modal
        } else {
            EventKind::Button
        },
        user_id: Some(used.author.get()),
        user_name: used.author_name,
        roles: used.author_roles.iter().map(|role| role.get()).collect(),
        channel_id: Some(used.channel_id.get()),
        message_id: used.message_id.map(Id::get),
        at_ms: Timestamp::now().as_millis(),
        component: id.map(str::to_owned),
        fields: used.fields.into_iter().collect(),
        ..EventFacts::default()
    }
}

/// Answers a press or a modal, once: a press of a button whose id a `modal` trigger has
/// opens that modal (the first such workflow's); otherwise it is acknowledged and runs the
/// workflows it triggers, in order with the guild's events. A button no workflow listens to
/// (deleted, disabled) says so.
fn pressed(io: &Io, shared: &Arc<Mutex<Shared>>, facts: EventFacts, prefix: &str) -> Vec<Effect> {
    let guard = lock(shared);
    let Phase::Ready(active) = &guard.phase else {
        // The workflows changed in the instant since they were loaded.
        let text = "The workflows changed meanwhile; please press again.";
        return vec![Effect::Reply(Answer::new("conflict", text))];
    };
    let view = active.view(guard.plan);
    let listening: Vec<&Compiled> = view
        .order
        .iter()
        .map(Arc::as_ref)
        .filter(|w| w.trigger.component() == facts.component.as_deref())
        .collect();
    if facts.kind == EventKind::Button
        && let Some(modal) = listening.iter().find_map(|w| modal_of(&w.trigger))
    {
        return vec![Effect::Respond(Box::new(modal))];
    }
    let fires = listening
        .iter()
        .any(|w| run::matches(&w.trigger, &facts, prefix).is_some());
    if !fires {
        let text = "This button no longer does anything.";
        return vec![Effect::Reply(Answer::new("invalid", text))];
    }
    // Acknowledged without a visible answer: what the workflows do is their answer.
    let acknowledged = InteractionResponse {
        kind: InteractionResponseType::DeferredUpdateMessage,
        data: None,
    };
    let mut effects = vec![Effect::Respond(Box::new(acknowledged))];
    effects.extend(accept(io, shared, guard, vec![facts], None, prefix));
    effects
}

/// The modal a `modal` trigger shows, its custom id `wf:<id>`.
fn modal_of(trigger: &CompiledTrigger) -> Option<InteractionResponse> {
    let CompiledTrigger::Modal { id, title, fields } = trigger else {
        return None;
    };
    let inputs = fields
        .iter()
        .map(|field| TextInput {
            custom_id: field.id.clone(),
            id: None,
            #[allow(deprecated)]
            label: Some(field.label.clone()),
            max_length: None,
            min_length: None,
            placeholder: None,
            required: Some(field.required),
            style: if field.long {
                TextInputStyle::Paragraph
            } else {
                TextInputStyle::Short
            },
            value: None,
        })
        .collect();
    Some(crate::components::modal(
        format!("{}{id}", model::COMPONENT_PREFIX),
        title.clone(),
        inputs,
    ))
}

/// The built-in parser's answer to a command no workflow took, as it would have given it.
fn unknown_command_answer(facts: &EventFacts, prefix: &str) -> Option<Effect> {
    let Parsed::Invalid(text) = commands::parse_text(prefix, &facts.content) else {
        return None;
    };
    counter!(COMMANDS_HANDLED, "command" => "invalid", "outcome" => "invalid").increment(1);
    Some(Effect::Message {
        channel_id: Id::new(facts.channel_id?),
        content: text,
        embed: None,
    })
}

/// What the runner needs of a gateway event: nothing for bot-authored events, which never
/// trigger a workflow (no loops between bots, or with ourselves).
fn facts_of(io: &Io, member_roles: &mut HashMap<u64, Vec<u64>>, event: &Event) -> Vec<EventFacts> {
    let now = Timestamp::now().as_millis();
    let bot = io.known_bot_id().map(Id::get);
    let is_bot = |user: &User| user.bot || Some(user.id.get()) == bot;
    let channel_name = |channel: u64| {
        io.cache()
            .channel(Id::new(channel))
            .and_then(|channel| channel.name.clone())
    };
    match event {
        Event::MessageCreate(message) => {
            if is_bot(&message.author) || message.webhook_id.is_some() {
                return Vec::new();
            }
            let roles: Vec<u64> = message
                .member
                .as_ref()
                .map(|member| member.roles.iter().map(|role| role.get()).collect())
                .unwrap_or_default();
            remember_roles(member_roles, message.author.id.get(), &roles);
            vec![EventFacts {
                kind: EventKind::Message,
                user_id: Some(message.author.id.get()),
                user_name: message.author.name.clone(),
                roles,
                channel_id: Some(message.channel_id.get()),
                channel_name: channel_name(message.channel_id.get()),
                message_id: Some(message.id.get()),
                content: message.content.clone(),
                at_ms: (message.timestamp.as_micros() / 1_000).max(0) as u64,
                ..EventFacts::default()
            }]
        }
        Event::MemberAdd(added) => {
            let user = &added.member.user;
            if is_bot(user) {
                return Vec::new();
            }
            let roles: Vec<u64> = added.member.roles.iter().map(|role| role.get()).collect();
            remember_roles(member_roles, user.id.get(), &roles);
            vec![member_facts(EventKind::MemberJoin, user, roles, now)]
        }
        Event::MemberRemove(removed) => {
            member_roles.remove(&removed.user.id.get());
            if is_bot(&removed.user) {
                return Vec::new();
            }
            vec![member_facts(
                EventKind::MemberLeave,
                &removed.user,
                Vec::new(),
                now,
            )]
        }
        Event::MemberUpdate(update) => {
            let roles: Vec<u64> = update.roles.iter().map(|role| role.get()).collect();
            let before = member_roles.get(&update.user.id.get()).cloned();
            remember_roles(member_roles, update.user.id.get(), &roles);
            // Without the roles before, a change cannot be told apart: nothing fires.
            let Some(before) = before else {
                return Vec::new();
            };
            if is_bot(&update.user) {
                return Vec::new();
            }
            let added = roles.iter().filter(|role| !before.contains(role));
            let removed = before.iter().filter(|role| !roles.contains(role));
            added
                .map(|&role| (EventKind::RoleAdd, role))
                .chain(removed.map(|&role| (EventKind::RoleRemove, role)))
                .map(|(kind, role)| EventFacts {
                    role_id: Some(role),
                    ..member_facts(kind, &update.user, roles.clone(), now)
                })
                .collect()
        }
        Event::ReactionAdd(reaction) => reaction_facts(EventKind::ReactionAdd, reaction, bot, now),
        Event::ReactionRemove(reaction) => {
            reaction_facts(EventKind::ReactionRemove, reaction, bot, now)
        }
        _ => Vec::new(),
    }
}

fn member_facts(kind: EventKind, user: &User, roles: Vec<u64>, now: u64) -> EventFacts {
    EventFacts {
        kind,
        user_id: Some(user.id.get()),
        user_name: user.name.clone(),
        roles,
        at_ms: now,
        ..EventFacts::default()
    }
}

fn reaction_facts(
    kind: EventKind,
    reaction: &twilight_model::gateway::GatewayReaction,
    bot: Option<u64>,
    now: u64,
) -> Vec<EventFacts> {
    let by_bot = reaction
        .member
        .as_ref()
        .is_some_and(|member| member.user.bot)
        || Some(reaction.user_id.get()) == bot;
    if by_bot {
        return Vec::new();
    }
    let emoji = match &reaction.emoji {
        EmojiReactionType::Unicode { name } => Some(name.clone()),
        EmojiReactionType::Custom { name, .. } => name.clone(),
    };
    vec![EventFacts {
        kind,
        user_id: Some(reaction.user_id.get()),
        user_name: reaction
            .member
            .as_ref()
            .map(|member| member.user.name.clone())
            .unwrap_or_default(),
        roles: reaction
            .member
            .as_ref()
            .map(|member| member.roles.iter().map(|role| role.get()).collect())
            .unwrap_or_default(),
        channel_id: Some(reaction.channel_id.get()),
        message_id: Some(reaction.message_id.get()),
        emoji,
        at_ms: now,
        ..EventFacts::default()
    }]
}

fn remember_roles(remembered: &mut HashMap<u64, Vec<u64>>, user: u64, roles: &[u64]) {
    if remembered.len() >= MEMBERS_REMEMBERED
        && !remembered.contains_key(&user)
        && let Some(&any) = remembered.keys().next()
    {
        remembered.remove(&any);
    }
    remembered.insert(user, roles.to_vec());
}

/// Runs the workflows the event triggers (at most [`FANOUT`], each within the guild's rate):
/// effects that send their calls and store their waits.
fn dispatch(
    shared: &mut Shared,
    handle: &Arc<Mutex<Shared>>,
    io: &Io,
    facts: EventFacts,
    prefix: &str,
) -> Vec<Effect> {
    let Phase::Ready(active) = &shared.phase else {
        return Vec::new();
    };
    let active = Arc::clone(active);
    let plan = shared.plan;
    let view = active.view(plan);
    let matching = run::Matching::new(&facts);
    let may_fire = (facts.kind == EventKind::Message).then(|| view.prefilter.scan(&matching));
    let mut fired = view
        .order
        .iter()
        .enumerate()
        .filter(|(index, _)| may_fire.as_ref().is_none_or(|may| may[*index]))
        .filter_map(|(_, workflow)| {
            matching
                .matches(&workflow.trigger, prefix)
                .map(|args| (workflow, args))
        });
    let mut effects = Vec::new();
    for (workflow, args) in fired.by_ref().take(FANOUT) {
        if !shared.bucket.take() {
            let trace = skipped(workflow.workflow_id, &facts, Limit::Rate);
            effects.extend(
                finish(shared, io, trace, facts.user_id).map(|run| store_run_later(io, run)),
            );
            continue;
        }
        let limits = limits_of(plan);
        let no_vars = KeptVars::new();
        let kept = shared.kept.as_ref().map_or(&no_vars, |kept| &kept.vars);
        let mut result = run::run(
            &view.workflows,
            workflow,
            &facts,
            &args,
            Start::top(),
            &limits,
            kept,
        );
        effects.extend(keep(shared, handle, io, std::mem::take(&mut result.kept)));
        effects.extend(follow_up(
            shared, handle, io, &facts, &args, result, &limits,
        ));
    }
    if fired.next().is_some() {
        counter!(WORKFLOW_LIMITS_HIT, "limit" => Limit::Fanout.label()).increment(1);
        tracing::debug!(guild_id = %io.guild_id(), "more than {FANOUT} workflows matched one event");
    }
    effects
}

/// The trace of a run skipped before it started.
fn skipped(workflow_id: u64, facts: &EventFacts, limit: Limit) -> Trace {
    Trace {
        workflow_id,
        started_at_ms: facts.at_ms,
        steps: vec![run::TraceStep {
            at: "start".into(),
            detail: format!("skipped: limit {} reached", limit.label()),
        }],
        fuel_used: 0,
        api_calls: 0,
        output_bytes: 0,
        elapsed_micros: 0,
        outcome: Outcome::Limit(limit),
    }
}

/// The sandbox's limits for a guild on `plan`.
fn limits_of(plan: Plan) -> Limits {
    Limits {
        kept_variables: plan.limits().workflow_variables as usize,
        ..Limits::default()
    }
}

/// Records a finished trace: counted, and kept as the workflow's latest; answers the row
/// that keeps it in storage (once the guild's stored runs are known, so their slots are).
/// Runs skipped for the guild's rate are as many as the events past it: they stay in memory
/// only, so storage writes are bounded by the runs the rate lets through.
fn finish(shared: &mut Shared, io: &Io, trace: Trace, user: Option<u64>) -> Option<WorkflowRun> {
    counter!(WORKFLOW_RUNS, "outcome" => trace.outcome.label()).increment(1);
    if let Outcome::Limit(limit) = trace.outcome {
        counter!(WORKFLOW_LIMITS_HIT, "limit" => limit.label()).increment(1);
    }
    let skipped = trace.outcome == Outcome::Limit(Limit::Rate);
    let stored = shared.kept.as_mut().filter(|_| !skipped).and_then(|kept| {
        let slot = kept.next_slot.entry(trace.workflow_id).or_default();
        let run = stored_run(io, &trace, *slot, user)?;
        *slot = (*slot + 1) % WORKFLOW_RUNS_KEPT;
        Some(run)
    });
    let kept = shared.traces.entry(trace.workflow_id).or_default();
    if kept.len() >= TRACES_KEPT {
        kept.pop_front();
    }
    kept.push_back(trace);
    stored
}

/// A trace as storage keeps it: its first steps, as many as fit the stored size.
fn stored_run(io: &Io, trace: &Trace, slot: u32, user: Option<u64>) -> Option<WorkflowRun> {
    let mut trace = trace.clone();
    // Room for the rest of the trace and the note that steps were left out.
    let mut room = WORKFLOW_TRACE_MAX_BYTES.saturating_sub(1_024);
    let fit = trace
        .steps
        .iter()
        .take_while(|step| {
            let size = step.at.len() + step.detail.len() + 32;
            room = room.saturating_sub(size);
            room > 0
        })
        .count();
    if fit < trace.steps.len() {
        let left = trace.steps.len() - fit;
        trace.steps.truncate(fit);
        trace.steps.push(run::TraceStep {
            at: "…".into(),
            detail: format!("{left} more steps not kept"),
        });
    }
    let json = serde_json::to_string(&trace).ok()?;
    (json.len() <= WORKFLOW_TRACE_MAX_BYTES).then(|| WorkflowRun {
        guild_id: io.guild_id().get(),
        workflow_id: trace.workflow_id,
        slot,
        user_id: user,
        at: Timestamp(trace.started_at_ms),
        trace: json,
    })
}

/// Stores a run's trace (on a task; a failure loses that trace only, loudly).
async fn store_run(io: &Io, run: WorkflowRun) {
    if let Err(err) = io.store().put_workflow_run(&run).await {
        tracing::warn!(guild_id = %io.guild_id(), workflow = run.workflow_id, error = %err, "a workflow run's trace is not stored");
    }
}

fn store_run_later(io: &Io, run: WorkflowRun) -> Effect {
    let io = io.clone();
    Effect::task(async move {
        store_run(&io, run).await;
        Vec::new()
    })
}

/// Takes a run's changes to kept variables: live at once for the next runs, and stored on a
/// task, one batch at a time per guild (the newest value of each is the one stored).
fn keep(
    shared: &mut Shared,
    handle: &Arc<Mutex<Shared>>,
    io: &Io,
    changes: BTreeMap<KeptKey, Value>,
) -> Option<Effect> {
    if changes.is_empty() {
        return None;
    }
    let now = Timestamp::now();
    let kept = shared.kept.get_or_insert_with(Kept::default);
    for ((owner, name), value) in changes {
        let stored = WorkflowVariable {
            guild_id: io.guild_id().get(),
            user_id: (owner != 0).then_some(owner),
            name: name.clone(),
            value: serde_json::to_string(&value).expect("a value serialises"),
            updated_at: now,
        };
        kept.vars.insert((owner, name.clone()), value);
        shared.unsaved.insert((owner, name), stored);
    }
    shared.kept_changes += 1;
    if shared.saving {
        return None;
    }
    shared.saving = true;
    let (io, handle) = (io.clone(), Arc::clone(handle));
    Some(Effect::task(save_variables(io, handle)))
}

/// Stores the changed variables until none are left. A failed write keeps them for the next
/// change to store again (unless a newer value replaced one meanwhile).
async fn save_variables(io: Io, shared: Arc<Mutex<Shared>>) -> Vec<Effect> {
    loop {
        // Every change up to `upto` is in this batch or stored already.
        let (batch, upto): (Vec<WorkflowVariable>, u64) = {
            let mut guard = lock(&shared);
            if guard.unsaved.is_empty() {
                guard.saving = false;
                return Vec::new();
            }
            let batch = std::mem::take(&mut guard.unsaved).into_values().collect();
            (batch, guard.kept_changes)
        };
        for (i, chunk) in batch.chunks(WORKFLOW_VARIABLES_PER_WRITE).enumerate() {
            if let Err(err) = io.store().put_workflow_variables(chunk).await {
                tracing::warn!(guild_id = %io.guild_id(), error = %err, "workflow variables not stored yet");
                let mut guard = lock(&shared);
                for variable in &batch[i * WORKFLOW_VARIABLES_PER_WRITE..] {
                    let key = (variable.user_id.unwrap_or(0), variable.name.clone());
                    guard.unsaved.entry(key).or_insert_with(|| variable.clone());
                }
                guard.saving = false;
                return Vec::new();
            }
        }
        lock(&shared)
            .kept_stored()
            .send_modify(|stored| *stored = (*stored).max(upto));
    }
}

/// Reads what the guild's workflows keep (variables, recent runs) if the state does not hold
/// it yet; the traces already in memory are newer than the stored ones.
async fn ensure_kept(io: &Io, shared: &Mutex<Shared>) -> Result<(), StorageError> {
    if lock(shared).kept.is_some() {
        return Ok(());
    }
    let guild = io.guild_id().get();
    let (variables, mut runs) = futures_util::try_join!(
        io.store().workflow_variables(guild),
        io.store().workflow_runs(guild)
    )?;
    let mut kept = Kept::default();
    for variable in variables {
        match serde_json::from_str::<Value>(&variable.value) {
            Ok(value) => {
                kept.vars
                    .insert((variable.user_id.unwrap_or(0), variable.name), value);
            }
            Err(err) => {
                tracing::warn!(guild_id = guild, error = %err, "an unreadable workflow variable is skipped")
            }
        }
    }
    runs.sort_by_key(|run| (run.workflow_id, run.at, run.slot));
    let mut stored: HashMap<u64, VecDeque<Trace>> = HashMap::new();
    for run in runs {
        // Oldest first: the newest run's slot is the last one set.
        kept.next_slot
            .insert(run.workflow_id, (run.slot + 1) % WORKFLOW_RUNS_KEPT);
        if let Ok(trace) = serde_json::from_str::<Trace>(&run.trace) {
            stored.entry(run.workflow_id).or_default().push_back(trace);
        }
    }
    let mut guard = lock(shared);
    if guard.kept.is_some() {
        return Ok(());
    }
    guard.kept = Some(kept);
    for (workflow, mut traces) in stored {
        traces.extend(guard.traces.remove(&workflow).unwrap_or_default());
        while traces.len() > TRACES_KEPT {
            traces.pop_front();
        }
        guard.traces.insert(workflow, traces);
    }
    Ok(())
}

/// What a run leaves to do: its wait stored, its calls sent on a task, then its trace kept.
fn follow_up(
    shared: &mut Shared,
    handle: &Arc<Mutex<Shared>>,
    io: &Io,
    facts: &EventFacts,
    args: &[String],
    mut result: run::Run,
    limits: &Limits,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    if let Some(timer) = parked(io, facts, args, &mut result) {
        let most = io.workflow_waits_per_guild();
        if shared.pending_waits >= most {
            let trace = &mut result.trace;
            trace.outcome = Outcome::Limit(Limit::Waits);
            trace.steps.push(run::TraceStep {
                at: "wait".into(),
                detail: format!(
                    "stopped: limit waits reached ({most} runs of this server are waiting already)"
                ),
            });
        } else {
            shared.pending_waits += 1;
            effects.push(Effect::Timer(timer));
        }
    }
    let run::Run {
        mut trace, calls, ..
    } = result;
    let user = facts.user_id;
    if calls.is_empty() {
        effects.extend(finish(shared, io, trace, user).map(|run| store_run_later(io, run)));
        return effects;
    }
    let deadline = deadline(&trace, limits);
    let durable = shared.durable();
    let (io, handle) = (io.clone(), Arc::clone(handle));
    effects.push(Effect::task(async move {
        act::execute(&io, calls, deadline, &mut trace, durable).await;
        let stored = finish(&mut lock(&handle), &io, trace, user);
        if let Some(run) = stored {
            store_run(&io, run).await;
        }
        Vec::new()
    }));
    effects
}

/// The timer a waiting run carries on from; a run too large to park fails instead.
fn parked(io: &Io, facts: &EventFacts, args: &[String], result: &mut run::Run) -> Option<Timer> {
    let trace = &mut result.trace;
    let Outcome::Waiting { seconds } = trace.outcome else {
        return None;
    };
    let (step, vars) = result.resume.take()?;
    match wait_timer(io, trace.workflow_id, seconds, step, vars, facts, args) {
        Ok(timer) => Some(timer),
        Err(reason) => {
            trace.outcome = Outcome::Failed(reason);
            None
        }
    }
}

/// What is left of the run's deadline for its Discord calls.
fn deadline(trace: &Trace, limits: &Limits) -> Instant {
    Instant::now() + limits.deadline.saturating_sub(elapsed(trace))
}

fn elapsed(trace: &Trace) -> Duration {
    Duration::from_micros(trace.elapsed_micros)
}

/// Timer ids of schedules: this and the workflow's id.
const SCHEDULE_PREFIX: &str = "schedule:";
/// Timer ids of waits: this, the workflow's id and a random number.
const WAIT_PREFIX: &str = "wait:";

/// What a workflow timer holds.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TimerPayload {
    /// A parked run.
    Wait(Box<Waiting>),
    /// A scheduled workflow's next run.
    Schedule { workflow_id: u64 },
}

/// A parked run, stored in its wait's timer.
#[derive(Serialize, Deserialize)]
struct Waiting {
    workflow_id: u64,
    step: usize,
    vars: Vars,
    facts: EventFacts,
    args: Vec<String>,
}

fn wait_timer(
    io: &Io,
    workflow_id: u64,
    seconds: u32,
    step: usize,
    vars: Vars,
    facts: &EventFacts,
    args: &[String],
) -> Result<Timer, String> {
    let waiting = TimerPayload::Wait(Box::new(Waiting {
        workflow_id,
        step,
        vars,
        facts: facts.clone(),
        args: args.to_vec(),
    }));
    let payload = serde_json::to_string(&waiting).map_err(|err| err.to_string())?;
    if payload.len() > protonn_storage::TIMER_PAYLOAD_MAX_LEN {
        return Err(format!(
            "the run is too large to wait (its event and variables take over {} bytes)",
            protonn_storage::TIMER_PAYLOAD_MAX_LEN
        ));
    }
    let due = Timestamp::now().saturating_add(Duration::from_secs(u64::from(seconds)));
    Ok(Timer {
        guild_id: io.guild_id().get(),
        shard_id: io.shard_id(),
        id: format!("{WAIT_PREFIX}{workflow_id}:{:016x}", rand::random::<u64>()),
        due,
        feature: NAME.to_owned(),
        payload,
        claimed_by: None,
        claimed_until: Timestamp(0),
        // The event's member: the wait keeps their id, name and message. Their erasure
        // deletes it (the run does not go on).
        users: facts.user_id.into_iter().collect(),
        outlives_erasure: false,
    })
}

/// The timer of a scheduled workflow's next run, `every_minutes` from now.
fn schedule_timer(io: &Io, workflow_id: u64, every_minutes: u32) -> Timer {
    let payload = serde_json::to_string(&TimerPayload::Schedule { workflow_id })
        .expect("a schedule payload serialises");
    Timer {
        guild_id: io.guild_id().get(),
        shard_id: io.shard_id(),
        id: format!("{SCHEDULE_PREFIX}{workflow_id}"),
        due: Timestamp::now().saturating_add(Duration::from_secs(u64::from(every_minutes) * 60)),
        feature: NAME.to_owned(),
        payload,
        claimed_by: None,
        claimed_until: Timestamp(0),
        users: Vec::new(),
        outlives_erasure: false,
    }
}

/// Whether workflows may act on the event's member (a member who restricted processing is
/// skipped before any trigger is tried): from `read` (this drain's reads) or the node's
/// memory; `None` while unknown.
fn may_process(io: &Io, facts: &EventFacts, read: &HashMap<u64, bool>) -> Option<bool> {
    let Some(user) = facts.user_id else {
        return Some(true);
    };
    read.get(&user).copied().or_else(|| {
        io.privacy_choices()
            .known(user)
            .map(|flags| flags.may_process())
    })
}

/// Works through the events that wait, in order: loads and compiles the guild's enabled
/// workflows if they are not, reads the privacy choices not known yet (one read per member,
/// at once), then runs the events now decided. Events still waiting (they came meanwhile)
/// go to the next drain, so the effects of these go out now.
fn drain(io: Io, shared: Arc<Mutex<Shared>>, prefix: String) -> Task {
    // A task by name (not an `async fn`): the next drain it may hand on is one of its own.
    Box::pin(drain_once(io, shared, prefix))
}

async fn drain_once(io: Io, shared: Arc<Mutex<Shared>>, prefix: String) -> Vec<Effect> {
    if let Err(err) = activate(&io, &shared).await {
        counter!(WORKFLOW_ACTIVATIONS, "outcome" => "error").increment(1);
        tracing::error!(guild_id = %io.guild_id(), error = %err, "workflows not loaded; the events that waited are not run");
        let mut guard = lock(&shared);
        guard.waiting.clear();
        guard.draining = false;
        return Vec::new();
    }

    let unknown: Vec<u64> = {
        let guard = lock(&shared);
        let mut users = Vec::new();
        let members = guard.waiting.iter().filter_map(|item| item.facts.user_id);
        for user in members {
            if users.len() >= CHOICES_PER_DRAIN {
                break;
            }
            if !users.contains(&user) && io.privacy_choices().known(user).is_none() {
                users.push(user);
            }
        }
        users
    };
    let reads = join_all(unknown.iter().map(|&user| io.privacy_choices().read(user))).await;
    let mut read = HashMap::new();
    for (user, choice) in unknown.into_iter().zip(reads) {
        let may = choice.map(|flags| flags.may_process()).unwrap_or_else(|err| {
            tracing::warn!(guild_id = %io.guild_id(), error = %err, "cannot read a member's privacy choices; their event triggers no workflow");
            false
        });
        read.insert(user, may);
    }

    let mut guard = lock(&shared);
    let mut effects = Vec::new();
    while let Phase::Ready(active) = &guard.phase {
        let Some(may) = guard
            .waiting
            .front()
            .and_then(|item| may_process(&io, &item.facts, &read))
        else {
            break;
        };
        let active = Arc::clone(active);
        let Some(item) = guard.waiting.pop_front() else {
            break;
        };
        if let Some(name) = &item.unknown_command
            && !has_command(active.view(guard.plan), name)
        {
            effects.extend(unknown_command_answer(&item.facts, &prefix));
        }
        if may {
            effects.extend(dispatch(&mut guard, &shared, &io, item.facts, &prefix));
        }
    }
    if guard.waiting.is_empty() {
        // The queue fills only while loading or reading choices: its room goes back.
        guard.waiting = VecDeque::new();
        guard.draining = false;
    } else {
        drop(guard);
        effects.push(Effect::Task(drain(io, shared, prefix)));
    }
    effects
}

/// Reads what the guild's workflows keep, then loads and compiles its enabled workflows if
/// they are not (again if they changed while loading).
async fn activate(io: &Io, shared: &Mutex<Shared>) -> Result<(), StorageError> {
    ensure_kept(io, shared).await?;
    loop {
        let generation = {
            let guard = lock(shared);
            if let Phase::Ready(_) = guard.phase {
                return Ok(());
            }
            guard.generation
        };
        let active = load(io).await?;
        let waits = waits_pending(io).await?;
        let mut guard = lock(shared);
        if guard.generation != generation {
            continue;
        }
        counter!(WORKFLOW_ACTIVATIONS, "outcome" => "loaded").increment(1);
        // What came before the load was kept in case a workflow could replay it, and the
        // roles of its members in case one compares them.
        let has_workflows = !active.enabled.is_empty();
        guard.recent.keep(has_workflows);
        if !has_workflows {
            guard.member_roles = HashMap::new();
        }
        guard.phase = Phase::Ready(active);
        guard.pending_waits = waits;
    }
}

/// The guild's runs parked in a wait now.
async fn waits_pending(io: &Io) -> Result<usize, protonn_storage::StorageError> {
    let timers = io.store().timers_of_guild(io.guild_id().get()).await?;
    Ok(timers
        .iter()
        .filter(|timer| timer.feature == NAME && timer.id.starts_with(WAIT_PREFIX))
        .count())
}

async fn load(io: &Io) -> Result<Arc<Active>, protonn_storage::StorageError> {
    let stored = io.store().workflows(io.guild_id().get()).await?;
    let mut enabled = Vec::new();
    for workflow in stored.into_iter().filter(|workflow| workflow.enabled) {
        let compiled = Definition::from_json(&workflow.definition)
            .and_then(|definition| definition.compile(workflow.workflow_id, &workflow.name));
        match compiled {
            Ok(compiled) => enabled.push(compiled),
            // Saved by an older version with other rules: skipped, loudly.
            Err(err) => {
                tracing::warn!(guild_id = %io.guild_id(), workflow = workflow.workflow_id, error = %err, "stored workflow does not compile; skipped")
            }
        }
    }
    if enabled.is_empty() {
        // Most guilds: they share one empty set.
        static NONE: LazyLock<Arc<Active>> = LazyLock::new(|| Arc::new(Active::new(Vec::new())));
        return Ok(Arc::clone(&NONE));
    }
    Ok(Arc::new(Active::new(enabled)))
}

/// A wait or a schedule fell due: claims it, runs, and completes it (a schedule's next
/// timer replaces it instead).
async fn resume(io: Io, shared: Arc<Mutex<Shared>>, timer: Timer) -> Vec<Effect> {
    let Ok(payload) = serde_json::from_str::<TimerPayload>(&timer.payload) else {
        tracing::error!(guild_id = timer.guild_id, timer = %timer.id, "unreadable workflow timer dropped");
        let _ = io.store().cancel_timer(timer.guild_id, &timer.id).await;
        return Vec::new();
    };
    if !io.claim_timer(&timer).await {
        return Vec::new();
    }
    // A member who restricted processing since the run parked: the rest of it is dropped.
    if let TimerPayload::Wait(waiting) = &payload
        && let Some(user) = waiting.facts.user_id
    {
        let choice = match io.privacy_choices().known(user) {
            Some(flags) => Ok(flags),
            None => io.privacy_choices().read(user).await,
        };
        match choice {
            Ok(flags) if flags.may_process() => {}
            Ok(_) => {
                complete(&io, &timer).await;
                wait_ended(&shared);
                return Vec::new();
            }
            Err(err) => {
                // The claim lapses and the next poll tries again.
                tracing::warn!(guild_id = timer.guild_id, error = %err, "workflow wait not resumed yet: a member's privacy choices cannot be read");
                return Vec::new();
            }
        }
    }
    let loaded = match ensure_kept(&io, &shared).await {
        Ok(()) => load(&io).await,
        Err(err) => Err(err),
    };
    let active = match loaded {
        Ok(active) => active,
        Err(err) => {
            // The claim lapses and the next poll tries again.
            tracing::warn!(guild_id = timer.guild_id, error = %err, "workflow timer not handled yet");
            return Vec::new();
        }
    };
    let plan = lock(&shared).plan;
    let view = active.view(plan);
    let limits = limits_of(plan);
    let (workflow_id, facts, args, start) = match payload {
        TimerPayload::Wait(waiting) => {
            let start = Start {
                step: waiting.step,
                vars: waiting.vars,
                check_conditions: false,
            };
            (waiting.workflow_id, waiting.facts, waiting.args, start)
        }
        TimerPayload::Schedule { workflow_id } => {
            // A schedule past the plan stays armed (its runs are skipped below), so it runs
            // again once the plan allows it.
            let channel = match active.enabled.get(&workflow_id).map(|w| &w.trigger) {
                Some(CompiledTrigger::Schedule {
                    every_minutes,
                    channel,
                }) => {
                    // The next run replaces this timer (before this one runs: a crash
                    // after it misses one run rather than repeating one).
                    let next = schedule_timer(&io, workflow_id, *every_minutes);
                    if let Err(err) = io.store().put_timer(&next).await {
                        tracing::warn!(guild_id = timer.guild_id, error = %err, "next scheduled run not stored; retried when the claim lapses");
                        return Vec::new();
                    }
                    *channel
                }
                // Deleted, disabled or no longer scheduled: the schedule ends.
                _ => {
                    complete(&io, &timer).await;
                    return Vec::new();
                }
            };
            if !lock(&shared).bucket.take() {
                let now = Timestamp::now().as_millis();
                let facts = EventFacts {
                    at_ms: now,
                    ..EventFacts::default()
                };
                let trace = skipped(workflow_id, &facts, Limit::Rate);
                let stored = finish(&mut lock(&shared), &io, trace, None);
                if let Some(run) = stored {
                    store_run(&io, run).await;
                }
                return Vec::new();
            }
            let facts = EventFacts {
                kind: EventKind::Schedule,
                channel_id: Some(channel),
                at_ms: Timestamp::now().as_millis(),
                ..EventFacts::default()
            };
            (workflow_id, facts, Vec::new(), Start::top())
        }
    };
    let is_wait = timer.id.starts_with(WAIT_PREFIX);
    let mut parked_again = false;
    // Deleted, disabled or past the plan meanwhile: the rest of the run goes with it.
    if let Some(workflow) = view.workflows.get(&workflow_id) {
        let mut result = {
            let guard = lock(&shared);
            let no_vars = KeptVars::new();
            let kept = guard.kept.as_ref().map_or(&no_vars, |kept| &kept.vars);
            run::run(
                &view.workflows,
                workflow,
                &facts,
                &args,
                start,
                &limits,
                kept,
            )
        };
        let changes = std::mem::take(&mut result.kept);
        // Started now, not with this task's effects: the calls below wait for it.
        if let Some(Effect::Task(save)) = keep(&mut lock(&shared), &shared, &io, changes) {
            // Its effects are none: a save of kept values only writes.
            io.spawn(|_| async move {
                save.await;
            });
        }
        let durable = lock(&shared).durable();
        // Done before this timer completes: a crash in between repeats the step at most.
        // A run that waits again takes the place of the wait it came from.
        if let Some(next) = parked(&io, &facts, &args, &mut result) {
            match io.store().put_timer(&next).await {
                Ok(()) => parked_again = true,
                Err(err) => {
                    result.trace.outcome =
                        Outcome::Failed(format!("the next wait was not stored: {err}"));
                }
            }
        }
        let deadline = deadline(&result.trace, &limits);
        act::execute(&io, result.calls, deadline, &mut result.trace, durable).await;
        let stored = finish(&mut lock(&shared), &io, result.trace, facts.user_id);
        if let Some(run) = stored {
            store_run(&io, run).await;
        }
    }
    if is_wait {
        complete(&io, &timer).await;
        if !parked_again {
            wait_ended(&shared);
        }
    }
    Vec::new()
}

fn wait_ended(shared: &Mutex<Shared>) {
    let mut guard = lock(shared);
    guard.pending_waits = guard.pending_waits.saturating_sub(1);
}

async fn complete(io: &Io, timer: &Timer) {
    if let Err(err) = io
        .store()
        .complete_timer(timer.guild_id, &timer.id, &io.claimant())
        .await
    {
        tracing::warn!(guild_id = timer.guild_id, error = %err, "workflow timer not completed; its claim will lapse");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protonn_shard::BotToken;
    use protonn_storage::{EmbeddedStore, Store};
    use serde_json::json;
    use twilight_cache_inmemory::DefaultInMemoryCache;
    use twilight_model::gateway::payload::incoming::{MemberUpdate, MessageCreate, ReactionAdd};

    use super::*;
    use crate::rest::{GlobalLine, GuardLimits, InvalidRequestGuard, Rest, Transport};
    use crate::{Replies, RuntimeConfig, Services};

    const GUILD: u64 = 661_000_000_000_000_000;
    const BOT: u64 = 99;

    /// Services whose REST goes nowhere (these tests send nothing); the bot's id is known.
    fn io(data: &std::path::Path) -> Io {
        let rest = Rest::new(
            Arc::new(Transport::new(
                &BotToken::new("test"),
                Some("127.0.0.1:9"),
                Duration::from_secs(1),
            )),
            Arc::new(GlobalLine::unlimited()),
            Arc::new(InvalidRequestGuard::new(GuardLimits::default())),
        );
        let store = Arc::new(EmbeddedStore::open(data).unwrap()) as Arc<dyn Store>;
        let services = Services {
            usage: crate::CommandUsage::new(&store),
            tasks: Default::default(),
            store,
            departures: Arc::default(),
            replies: Replies::new(rest),
            cache: Arc::new(DefaultInMemoryCache::new()),
            own_roles: Arc::default(),
            runtime: RuntimeConfig::default(),
            dead_letters: Arc::default(),
            observer: None,
            node_name: "test".to_owned(),
            shard_count: crate::ShardCount::new(1),
        };
        services.own_roles.set_bot(Id::new(BOT));
        Io::new(Arc::new(services), Id::new(GUILD))
    }

    fn user(id: u64, bot: bool) -> serde_json::Value {
        json!({"id": id.to_string(), "username": "u", "discriminator": "0", "avatar": null, "bot": bot})
    }

    fn message(author: u64, bot: bool, webhook: bool) -> Event {
        let mut message = json!({
            "id": "10", "channel_id": "20", "guild_id": GUILD.to_string(), "author": user(author, bot),
            "content": "hello", "timestamp": "2024-01-01T00:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
        });
        if webhook {
            message["webhook_id"] = json!("30");
        }
        Event::MessageCreate(Box::new(MessageCreate {
            channel_type: None,
            message: serde_json::from_value(message).unwrap(),
        }))
    }

    fn member_update(member: u64, roles: &[u64]) -> Event {
        let roles: Vec<String> = roles.iter().map(u64::to_string).collect();
        let update: MemberUpdate = serde_json::from_value(json!({
            "guild_id": GUILD.to_string(), "roles": roles, "user": user(member, false),
            "joined_at": null, "pending": false, "premium_since": null, "nick": null,
            "avatar": null, "communication_disabled_until": null, "deaf": false, "mute": false,
        }))
        .unwrap();
        Event::MemberUpdate(Box::new(update))
    }

    fn reaction(by: u64) -> Event {
        let reaction: ReactionAdd = serde_json::from_value(json!({
            "channel_id": "20", "message_id": "10", "user_id": by.to_string(),
            "guild_id": GUILD.to_string(), "emoji": {"id": null, "name": "⭐"}, "burst": false,
        }))
        .unwrap();
        Event::ReactionAdd(Box::new(reaction))
    }

    /// A guild without an enabled workflow keeps its recent events only while the editor
    /// was open lately; with one, it keeps them always.
    #[tokio::test(start_paused = true)]
    async fn recent_events_are_kept_only_while_something_may_replay_them() {
        let event = Arc::new(message(5, false, false));
        let mut recent = RecentEvents::default();
        recent.remember(&event, false);
        assert!(
            recent.events.is_empty(),
            "kept with no workflow and no editor"
        );
        recent.remember(&event, true);
        assert_eq!(recent.events.len(), 1, "not kept for an enabled workflow");

        recent.remember(&event, false);
        assert!(
            recent.events.is_empty(),
            "kept after the last workflow went"
        );
        recent.wanted();
        recent.remember(&event, false);
        tokio::time::advance(EDITOR_INTEREST - Duration::from_secs(1)).await;
        recent.remember(&event, false);
        assert_eq!(
            recent.events.len(),
            2,
            "not kept while the editor was open lately"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        recent.remember(&event, false);
        assert!(
            recent.events.is_empty(),
            "kept after the editor's interest lapsed"
        );
    }

    /// The first events come before the load tells whether the guild has a workflow: they
    /// are kept until then, and the load of a guild without one gives them back.
    #[tokio::test]
    async fn the_load_forgets_what_came_before_it_when_nothing_may_replay_it() {
        let dir = tempfile::tempdir().unwrap();
        let io = io(dir.path());
        let shared = Mutex::new(Shared::default());
        lock(&shared)
            .recent
            .remember(&Arc::new(message(5, false, false)), true);
        activate(&io, &shared).await.unwrap();
        let guard = lock(&shared);
        assert!(matches!(guard.phase, Phase::Ready(_)));
        assert!(guard.recent.events.is_empty(), "kept without a workflow");
    }

    #[tokio::test]
    async fn bot_authored_events_and_the_bot_s_own_never_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let io = io(dir.path());
        let mut shared = Shared::default();
        assert_eq!(
            facts_of(&io, &mut shared.member_roles, &message(5, false, false)).len(),
            1
        );
        assert!(facts_of(&io, &mut shared.member_roles, &message(5, true, false)).is_empty());
        assert!(facts_of(&io, &mut shared.member_roles, &message(BOT, false, false)).is_empty());
        assert!(facts_of(&io, &mut shared.member_roles, &message(5, false, true)).is_empty());
        let star = facts_of(&io, &mut shared.member_roles, &reaction(5));
        assert_eq!(star[0].emoji.as_deref(), Some("⭐"));
        assert!(facts_of(&io, &mut shared.member_roles, &reaction(BOT)).is_empty());
    }

    #[tokio::test]
    async fn a_member_update_is_a_role_added_or_removed_once_the_roles_before_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let io = io(dir.path());
        let mut shared = Shared::default();
        assert!(
            facts_of(&io, &mut shared.member_roles, &member_update(5, &[1, 2])).is_empty(),
            "the roles before are not known"
        );
        let changes: Vec<(EventKind, Option<u64>)> =
            facts_of(&io, &mut shared.member_roles, &member_update(5, &[2, 3]))
                .into_iter()
                .map(|facts| (facts.kind, facts.role_id))
                .collect();
        assert_eq!(
            changes,
            [
                (EventKind::RoleAdd, Some(3)),
                (EventKind::RoleRemove, Some(1))
            ]
        );
    }

    #[test]
    fn a_plan_runs_its_first_workflows_within_its_step_limit() {
        let enabled = [(1, 3), (2, 20), (4, 5), (7, 2)];
        let off = over_plan(&enabled, Plan::Free);
        let ids: Vec<u64> = off.iter().map(|o| o.workflow_id).collect();
        assert_eq!(ids, [2, 7]);
        assert_eq!(
            off[0].why,
            "it has 20 steps; the free plan runs workflows of up to 10"
        );
        assert_eq!(off[1].why, "the free plan runs 3 workflows");
        assert!(over_plan(&enabled, Plan::Premium).is_empty());
    }

    #[tokio::test]
    async fn a_long_trace_is_stored_with_its_first_steps_and_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let io = io(dir.path());
        let step = run::TraceStep {
            at: "actions[0]".into(),
            detail: "x".repeat(200),
        };
        let trace = Trace {
            workflow_id: 3,
            started_at_ms: 1_700_000_000_000,
            steps: vec![step; 1_000],
            fuel_used: 1_000,
            api_calls: 0,
            output_bytes: 0,
            elapsed_micros: 5,
            outcome: Outcome::Limit(Limit::Fuel),
        };
        let run = stored_run(&io, &trace, 4, Some(8)).unwrap();
        assert!(run.trace.len() <= WORKFLOW_TRACE_MAX_BYTES);
        let stored: Trace = serde_json::from_str(&run.trace).unwrap();
        assert!(stored.steps.len() > 10 && stored.steps.len() < 1_000);
        assert!(
            stored
                .steps
                .last()
                .unwrap()
                .detail
                .ends_with("more steps not kept")
        );
        assert_eq!(stored.outcome, trace.outcome);
        assert_eq!(
            (run.slot, run.user_id, run.at),
            (4, Some(8), Timestamp(trace.started_at_ms))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_sends_nothing_before_the_kept_values_it_could_read_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let io = io(dir.path());
        let trace = || Trace {
            workflow_id: 1,
            started_at_ms: 0,
            steps: Vec::new(),
            fuel_used: 0,
            api_calls: 1,
            output_bytes: 0,
            elapsed_micros: 0,
            outcome: Outcome::Completed,
        };
        let calls = || {
            vec![run::Call::Send {
                channel: 20,
                content: "counter: 1".into(),
                buttons: Vec::new(),
            }]
        };
        let mut shared = Shared {
            kept_changes: 1,
            ..Shared::default()
        };

        // Never stored by the deadline: nothing is sent, and the trace says why.
        let mut unsaved = trace();
        let deadline = Instant::now() + Duration::from_secs(10);
        act::execute(&io, calls(), deadline, &mut unsaved, shared.durable()).await;
        assert_eq!(
            unsaved.outcome,
            Outcome::Failed(
                "the server's kept variables were not stored in time; nothing was sent".into()
            )
        );
        assert_eq!(unsaved.steps.len(), 1);

        // Stored meanwhile: the calls go (here to nowhere, which the trace reports).
        let durable = shared.durable();
        shared.kept_stored().send_replace(1);
        let mut stored = trace();
        let deadline = Instant::now() + Duration::from_secs(10);
        act::execute(&io, calls(), deadline, &mut stored, durable).await;
        assert!(
            stored
                .steps
                .iter()
                .any(|step| step.detail.starts_with("send: ")),
            "{stored:?}"
        );
    }

    #[test]
    fn the_run_bucket_allows_a_burst_then_refills_over_the_minute() {
        let mut bucket = RunBucket::default();
        for _ in 0..RUNS_PER_MINUTE {
            assert!(bucket.take());
        }
        assert!(!bucket.take());
        bucket.at -= Duration::from_secs(2);
        assert!(bucket.take(), "one run every 2 s");
        assert!(!bucket.take());
    }
}
