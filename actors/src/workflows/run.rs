//! The sandboxed runner: matches an event against compiled triggers and runs a workflow's
//! conditions and actions as pure computation. It sends nothing itself: it answers the
//! Discord calls the run wants, in order, and a trace of every step, so a dry-run is the same
//! run with the calls shown instead of sent.
//!
//! Every limit of the sandbox is a [`Limit`]: hitting one stops the run, is counted in
//! `protonn_workflows_limits_hit_total{limit}` and is the trace's outcome.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::model::{Button, CompareOp, Compiled, CompiledTrigger, Cond, Step, VarScope};
use super::template::{EvalError, Scope, Template, Value};

/// The sandbox's limits of one run (a run includes the workflows it calls).
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Steps: each condition, action and template piece costs one.
    pub(crate) fuel: u32,
    /// Wall-clock time from the start of the run to its last Discord call.
    pub(crate) deadline: Duration,
    /// Discord requests one run may make.
    pub(crate) api_calls: u32,
    /// Characters of one message (Discord's own limit).
    pub(crate) message_chars: usize,
    /// Bytes of template output in one run.
    pub(crate) output_bytes: usize,
    /// Variables the guild may keep between runs (its plan's), the server's and its
    /// members' together.
    pub(crate) kept_variables: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 1_000,
            deadline: Duration::from_secs(10),
            api_calls: 10,
            message_chars: 2_000,
            output_bytes: 25 * 1024,
            kept_variables: protonn_storage::Plan::Free.limits().workflow_variables as usize,
        }
    }
}

/// A limit of the sandbox; its [`label`](Limit::label) is the metric's `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Fuel,
    Deadline,
    ApiCalls,
    MessageLength,
    OutputBytes,
    CallDepth,
    /// More workflows matched one event than may fire for it.
    Fanout,
    /// The guild's runs per minute are spent.
    Rate,
    /// The guild has as many runs waiting (durable waits) as it may.
    Waits,
    /// The guild keeps as many variables as its plan allows.
    Variables,
}

impl Limit {
    pub const LABELS: [&'static str; 10] = [
        "fuel",
        "deadline",
        "api_calls",
        "message_length",
        "output_bytes",
        "call_depth",
        "fanout",
        "rate",
        "waits",
        "variables",
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Fuel => "fuel",
            Limit::Deadline => "deadline",
            Limit::ApiCalls => "api_calls",
            Limit::MessageLength => "message_length",
            Limit::OutputBytes => "output_bytes",
            Limit::CallDepth => "call_depth",
            Limit::Fanout => "fanout",
            Limit::Rate => "rate",
            Limit::Waits => "waits",
            Limit::Variables => "variables",
        }
    }
}

/// What happened, as the runner sees it: the facts of a gateway event (or of a sample event
/// for a dry-run, or the event a waiting run started from).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFacts {
    pub kind: EventKind,
    #[serde(default)]
    pub user_id: Option<u64>,
    #[serde(default)]
    pub user_name: String,
    /// The member's roles (without @everyone).
    #[serde(default)]
    pub roles: Vec<u64>,
    #[serde(default)]
    pub channel_id: Option<u64>,
    #[serde(default)]
    pub channel_name: Option<String>,
    #[serde(default)]
    pub message_id: Option<u64>,
    #[serde(default)]
    pub content: String,
    /// The reaction's emoji (unicode, or a custom emoji's name).
    #[serde(default)]
    pub emoji: Option<String>,
    /// The role added or removed.
    #[serde(default)]
    pub role_id: Option<u64>,
    /// Unix milliseconds when it happened.
    #[serde(default)]
    pub at_ms: u64,
    /// The id of the workflow button pressed, or of the modal sent (without `wf:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// A modal's fields by id, as the member typed them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    #[default]
    Message,
    MemberJoin,
    MemberLeave,
    ReactionAdd,
    ReactionRemove,
    RoleAdd,
    RoleRemove,
    Schedule,
    /// A member pressed a workflow's button.
    Button,
    /// A member sent a workflow's modal.
    Modal,
}

/// A Discord request a run asks for, with its text rendered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Call {
    Send {
        channel: u64,
        content: String,
        /// Rows of the message's buttons.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<Vec<Button>>,
    },
    Embed {
        channel: u64,
        title: String,
        description: String,
    },
    Reply {
        channel: u64,
        message: u64,
        content: String,
    },
    Dm {
        user: u64,
        content: String,
    },
    AddRole {
        user: u64,
        role: u64,
    },
    RemoveRole {
        user: u64,
        role: u64,
    },
    Timeout {
        user: u64,
        minutes: u32,
    },
    DeleteMessage {
        channel: u64,
        message: u64,
    },
    React {
        channel: u64,
        message: u64,
        emoji: String,
    },
    CreateThread {
        channel: u64,
        name: String,
        /// The message it starts from (the thread takes its id), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<u64>,
    },
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every action ran (or is handed to Discord).
    Completed,
    /// A condition did not hold: no action ran.
    ConditionsFailed,
    /// A `stop` action ended it.
    Stopped,
    /// A `wait` parked it; a durable timer carries on from the next action.
    Waiting { seconds: u32 },
    /// A sandbox limit stopped it.
    Limit(Limit),
    /// An action could not be done (a template without a value, no message to reply to, …).
    Failed(String),
}

impl Outcome {
    /// The `outcome` label of `protonn_workflows_runs_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ConditionsFailed => "conditions_failed",
            Outcome::Stopped => "stopped",
            Outcome::Waiting { .. } => "waiting",
            Outcome::Limit(_) => "limit",
            Outcome::Failed(_) => "failed",
        }
    }

    pub const LABELS: [&'static str; 6] = [
        "completed",
        "conditions_failed",
        "stopped",
        "waiting",
        "limit",
        "failed",
    ];
}

/// One line of a trace: where (`conditions[0]`, `actions[2] send`, `workflow 7 actions[0]`)
/// and what happened there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub at: String,
    pub detail: String,
}

/// What an admin sees of a run: every step, the resources it used, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub workflow_id: u64,
    pub started_at_ms: u64,
    pub steps: Vec<TraceStep>,
    pub fuel_used: u32,
    pub api_calls: u32,
    pub output_bytes: usize,
    pub elapsed_micros: u64,
    pub outcome: Outcome,
}

/// A run's variables (`var.NAME`): they live for the run, its waits and the workflows it calls.
pub(crate) type Vars = BTreeMap<String, Value>;

/// Whose a kept variable is (a member's id, 0 for the server's) and its name.
pub(crate) type KeptKey = (u64, String);
/// The variables a guild keeps between runs, as its workflows' state holds them.
pub(crate) type KeptVars = HashMap<KeptKey, Value>;

/// Where a run starts: from the top, or after a wait.
pub(crate) struct Start {
    pub(crate) step: usize,
    pub(crate) vars: Vars,
    /// A resumed run has passed its conditions already.
    pub(crate) check_conditions: bool,
}

impl Start {
    pub(crate) fn top() -> Self {
        Self {
            step: 0,
            vars: Vars::new(),
            check_conditions: true,
        }
    }
}

/// The result of a run: the trace, the Discord calls in order, and for a waiting run where
/// it carries on.
pub(crate) struct Run {
    pub(crate) trace: Trace,
    pub(crate) calls: Vec<Call>,
    /// For [`Outcome::Waiting`]: the next action and the variables.
    pub(crate) resume: Option<(usize, Vars)>,
    /// Kept variables the run changed, with their new values: the guild's state takes them
    /// and stores them (also when the run stopped later: what it did stands).
    pub(crate) kept: BTreeMap<KeptKey, Value>,
}

/// Whether the trigger fires for the event, and the command's arguments if it is one.
pub(crate) fn matches(
    trigger: &CompiledTrigger,
    facts: &EventFacts,
    prefix: &str,
) -> Option<Vec<String>> {
    Matching::new(facts).matches(trigger, prefix)
}

/// An event being matched against a guild's triggers: its lowercased content is made once,
/// for the first trigger that needs it.
pub(crate) struct Matching<'a> {
    facts: &'a EventFacts,
    lower: OnceCell<String>,
}

impl<'a> Matching<'a> {
    pub(crate) fn new(facts: &'a EventFacts) -> Self {
        Self {
            facts,
            lower: OnceCell::new(),
        }
    }

    /// The text as sent.
    pub(crate) fn content(&self) -> &str {
        &self.facts.content
    }

    /// The text to look for lowercased texts in, ASCII letters in any case: the text itself
    /// when it is ASCII (its lowercase is ASCII lowercasing, which an ASCII-case-insensitive
    /// search does), else its lowercase.
    pub(crate) fn folded(&self) -> &str {
        if self.facts.content.is_ascii() {
            &self.facts.content
        } else {
            self.lower()
        }
    }

    fn lower(&self) -> &str {
        self.lower.get_or_init(|| self.facts.content.to_lowercase())
    }

    /// Whether the trigger fires for the event, and the command's arguments if it is one.
    pub(crate) fn matches(&self, trigger: &CompiledTrigger, prefix: &str) -> Option<Vec<String>> {
        let facts = self.facts;
        let lower = || self.lower();
        let fired = match (trigger, facts.kind) {
            (
                CompiledTrigger::Message {
                    contains,
                    starts_with,
                    regex,
                    channel,
                    role,
                },
                EventKind::Message,
            ) => {
                channel.is_none_or(|c| facts.channel_id == Some(c))
                    && role.is_none_or(|r| facts.roles.contains(&r))
                    && (contains.is_none() && starts_with.is_none() || {
                        let content = lower();
                        contains
                            .as_ref()
                            .is_none_or(|c| content.contains(c.as_str()))
                            && starts_with
                                .as_ref()
                                .is_none_or(|s| content.starts_with(s.as_str()))
                    })
                    && regex.as_ref().is_none_or(|r| r.is_match(&facts.content))
            }
            (CompiledTrigger::Command(name), EventKind::Message) => {
                let rest = facts.content.strip_prefix(prefix)?;
                let mut words = rest.split_whitespace();
                if !words
                    .next()
                    .is_some_and(|word| word.eq_ignore_ascii_case(name))
                {
                    return None;
                }
                return Some(words.map(str::to_owned).collect());
            }
            (CompiledTrigger::MemberJoin, EventKind::MemberJoin)
            | (CompiledTrigger::MemberLeave, EventKind::MemberLeave) => true,
            (CompiledTrigger::ReactionAdd(emoji), EventKind::ReactionAdd)
            | (CompiledTrigger::ReactionRemove(emoji), EventKind::ReactionRemove) => {
                emoji.is_none() || emoji.as_deref() == facts.emoji.as_deref()
            }
            (CompiledTrigger::Schedule { .. }, EventKind::Schedule) => true,
            (CompiledTrigger::Button(id), EventKind::Button)
            | (CompiledTrigger::Modal { id, .. }, EventKind::Modal) => {
                facts.component.as_deref() == Some(id.as_str())
            }
            (CompiledTrigger::RoleAdd(role), EventKind::RoleAdd)
            | (CompiledTrigger::RoleRemove(role), EventKind::RoleRemove) => {
                facts.role_id == Some(*role)
            }
            _ => false,
        };
        fired.then(Vec::new)
    }
}

/// The guild's enabled workflows, by id, for calls between them.
pub(crate) type Workflows = HashMap<u64, Arc<Compiled>>;

/// Runs `workflow` for `facts` within `limits`. Pure: nothing is sent or stored.
pub(crate) fn run(
    workflows: &Workflows,
    workflow: &Compiled,
    facts: &EventFacts,
    args: &[String],
    start: Start,
    limits: &Limits,
    kept: &KeptVars,
) -> Run {
    let mut runner = Runner {
        workflows,
        facts,
        args,
        limits,
        kept,
        kept_writes: BTreeMap::new(),
        started: Instant::now(),
        fuel_left: limits.fuel,
        api_calls: 0,
        output_bytes: 0,
        vars: start.vars,
        steps: Vec::new(),
        calls: Vec::new(),
        resume: None,
    };
    let outcome = runner.workflow(workflow, start.step, start.check_conditions, 0, "");
    let outcome = match outcome {
        Flow::Next => Outcome::Completed,
        Flow::End(outcome) => outcome,
    };
    Run {
        trace: Trace {
            workflow_id: workflow.workflow_id,
            started_at_ms: facts.at_ms,
            steps: runner.steps,
            fuel_used: limits.fuel - runner.fuel_left,
            api_calls: runner.api_calls,
            output_bytes: runner.output_bytes,
            elapsed_micros: runner.started.elapsed().as_micros() as u64,
            outcome,
        },
        calls: runner.calls,
        resume: runner.resume,
        kept: runner.kept_writes,
    }
}

enum Flow {
    Next,
    End(Outcome),
}

struct Runner<'a> {
    workflows: &'a Workflows,
    facts: &'a EventFacts,
    args: &'a [String],
    limits: &'a Limits,
    kept: &'a KeptVars,
    kept_writes: BTreeMap<KeptKey, Value>,
    started: Instant,
    fuel_left: u32,
    api_calls: u32,
    output_bytes: usize,
    vars: Vars,
    steps: Vec<TraceStep>,
    calls: Vec<Call>,
    resume: Option<(usize, Vars)>,
}

impl Runner<'_> {
    fn note(&mut self, at: String, detail: impl Into<String>) {
        self.steps.push(TraceStep {
            at,
            detail: clip(detail.into()),
        });
    }

    /// Spends a step and checks the clock.
    fn tick(&mut self) -> Result<(), Limit> {
        if self.fuel_left == 0 {
            return Err(Limit::Fuel);
        }
        self.fuel_left -= 1;
        if self.started.elapsed() > self.limits.deadline {
            return Err(Limit::Deadline);
        }
        Ok(())
    }

    fn workflow(
        &mut self,
        workflow: &Compiled,
        first_step: usize,
        check_conditions: bool,
        depth: usize,
        prefix: &str,
    ) -> Flow {
        if check_conditions {
            for (i, condition) in workflow.conditions.iter().enumerate() {
                let at = format!("{prefix}conditions[{i}]");
                match self.condition(condition) {
                    Ok(true) => self.note(at, "holds"),
                    Ok(false) => {
                        self.note(at, "does not hold");
                        return Flow::End(Outcome::ConditionsFailed);
                    }
                    Err(end) => return self.end(at, end),
                }
            }
        }
        for (i, step) in workflow.actions.iter().enumerate().skip(first_step) {
            let at = format!("{prefix}actions[{i}]");
            if let Err(limit) = self.tick() {
                return self.end(at, Outcome::Limit(limit));
            }
            match self.action(step, depth, &at) {
                Ok(Flow::Next) => {}
                Ok(Flow::End(Outcome::Waiting { seconds })) => {
                    self.resume = Some((i + 1, self.vars.clone()));
                    return Flow::End(Outcome::Waiting { seconds });
                }
                Ok(end @ Flow::End(_)) => return end,
                Err(outcome) => return self.end(at, outcome),
            }
        }
        Flow::Next
    }

    fn end(&mut self, at: String, outcome: Outcome) -> Flow {
        let detail = match &outcome {
            Outcome::Limit(limit) => format!("stopped: limit {} reached", limit.label()),
            Outcome::Failed(reason) => format!("failed: {reason}"),
            _ => String::new(),
        };
        self.note(at, detail);
        Flow::End(outcome)
    }

    fn condition(&mut self, condition: &Cond) -> Result<bool, Outcome> {
        self.tick().map_err(Outcome::Limit)?;
        let facts = self.facts;
        Ok(match condition {
            Cond::And(all) => {
                for inner in all {
                    if !self.condition(inner)? {
                        return Ok(false);
                    }
                }
                true
            }
            Cond::Or(any) => {
                for inner in any {
                    if self.condition(inner)? {
                        return Ok(true);
                    }
                }
                false
            }
            Cond::Not(inner) => !self.condition(inner)?,
            Cond::HasRole(role) => facts.roles.contains(role),
            Cond::InChannel(channel) => facts.channel_id == Some(*channel),
            Cond::AccountOlderThanDays(days) => {
                // A snowflake's top bits are its creation time in ms since 2015.
                let Some(user) = facts.user_id else {
                    return Ok(false);
                };
                let created_ms = (user >> 22) + 1_420_070_400_000;
                facts.at_ms.saturating_sub(created_ms) >= u64::from(*days) * 86_400_000
            }
            Cond::ContentContains(text) => facts.content.to_lowercase().contains(text.as_str()),
            Cond::ContentMatches(regex) => regex.is_match(&facts.content),
            Cond::Compare(left, op, right) => {
                let left = self.value(left)?;
                let right = self.value(right)?;
                let ordering = match (&left, &right) {
                    (Value::Int(a), Value::Int(b)) => a.cmp(b),
                    _ => match (
                        left.to_string().parse::<i64>(),
                        right.to_string().parse::<i64>(),
                    ) {
                        (Ok(a), Ok(b)) => a.cmp(&b),
                        _ => left.to_string().cmp(&right.to_string()),
                    },
                };
                match op {
                    CompareOp::Eq => ordering.is_eq(),
                    CompareOp::Ne => ordering.is_ne(),
                    CompareOp::Lt => ordering.is_lt(),
                    CompareOp::Le => ordering.is_le(),
                    CompareOp::Gt => ordering.is_gt(),
                    CompareOp::Ge => ordering.is_ge(),
                }
            }
        })
    }

    fn value(&mut self, template: &Template) -> Result<Value, Outcome> {
        let value = template.value(self).map_err(eval_failure)?;
        self.output(&value.to_string(), false)?;
        Ok(value)
    }

    /// Renders a text, counted against the run's output and the message cap.
    fn text(&mut self, template: &Template) -> Result<String, Outcome> {
        let text = template.render(self).map_err(eval_failure)?;
        self.output(&text, true)?;
        Ok(text)
    }

    fn output(&mut self, text: &str, is_message: bool) -> Result<(), Outcome> {
        self.output_bytes += text.len();
        if self.output_bytes > self.limits.output_bytes {
            return Err(Outcome::Limit(Limit::OutputBytes));
        }
        if is_message && text.chars().count() > self.limits.message_chars {
            return Err(Outcome::Limit(Limit::MessageLength));
        }
        Ok(())
    }

    fn call(&mut self, call: Call) -> Result<Flow, Outcome> {
        if self.api_calls >= self.limits.api_calls {
            return Err(Outcome::Limit(Limit::ApiCalls));
        }
        self.api_calls += 1;
        self.calls.push(call);
        Ok(Flow::Next)
    }

    fn action(&mut self, step: &Step, depth: usize, at: &str) -> Result<Flow, Outcome> {
        let facts = self.facts;
        let channel = |given: Option<u64>| {
            given
                .or(facts.channel_id)
                .ok_or_else(|| Outcome::Failed("this event has no channel; name one".into()))
        };
        let user = || {
            facts
                .user_id
                .ok_or_else(|| Outcome::Failed("this event has no member".into()))
        };
        let message = || {
            facts
                .message_id
                .zip(facts.channel_id)
                .ok_or_else(|| Outcome::Failed("this event has no message".into()))
        };
        let (detail, call) = match step {
            Step::Send {
                channel: c,
                text,
                buttons,
            } => {
                let channel = channel(*c)?;
                let content = self.text(text)?;
                let labels: Vec<&str> =
                    buttons.iter().flatten().map(|b| b.label.as_str()).collect();
                let shown = if labels.is_empty() {
                    String::new()
                } else {
                    format!(" [buttons: {}]", labels.join(", "))
                };
                (
                    format!("send to <#{channel}>: {content}{shown}"),
                    Some(Call::Send {
                        channel,
                        content,
                        buttons: buttons.clone(),
                    }),
                )
            }
            Step::Embed {
                channel: c,
                title,
                description,
            } => {
                let channel = channel(*c)?;
                let (title, description) = (self.text(title)?, self.text(description)?);
                (
                    format!("embed to <#{channel}>: {title} / {description}"),
                    Some(Call::Embed {
                        channel,
                        title,
                        description,
                    }),
                )
            }
            Step::Reply(text) => {
                let (message, channel) = message()?;
                let content = self.text(text)?;
                (
                    format!("reply: {content}"),
                    Some(Call::Reply {
                        channel,
                        message,
                        content,
                    }),
                )
            }
            Step::Dm(text) => {
                let user = user()?;
                let content = self.text(text)?;
                (
                    format!("DM to <@{user}>: {content}"),
                    Some(Call::Dm { user, content }),
                )
            }
            Step::AddRole(role) => {
                let user = user()?;
                (
                    format!("add role <@&{role}> to <@{user}>"),
                    Some(Call::AddRole { user, role: *role }),
                )
            }
            Step::RemoveRole(role) => {
                let user = user()?;
                (
                    format!("remove role <@&{role}> from <@{user}>"),
                    Some(Call::RemoveRole { user, role: *role }),
                )
            }
            Step::Timeout(minutes) => {
                let user = user()?;
                (
                    format!("time out <@{user}> for {minutes} min"),
                    Some(Call::Timeout {
                        user,
                        minutes: *minutes,
                    }),
                )
            }
            Step::DeleteMessage => {
                let (message, channel) = message()?;
                (
                    format!("delete message {message}"),
                    Some(Call::DeleteMessage { channel, message }),
                )
            }
            Step::React(emoji) => {
                let (message, channel) = message()?;
                (
                    format!("react {emoji}"),
                    Some(Call::React {
                        channel,
                        message,
                        emoji: emoji.clone(),
                    }),
                )
            }
            Step::CreateThread {
                channel: c,
                name,
                from_message,
            } => {
                let (channel, message) = if *from_message {
                    let (message, channel) = message()?;
                    (channel, Some(message))
                } else {
                    (channel(*c)?, None)
                };
                let name = self.text(name)?;
                if !(1..=THREAD_NAME_CHARS).contains(&name.chars().count()) {
                    return Err(Outcome::Failed(format!(
                        "a thread's name has 1 to {THREAD_NAME_CHARS} characters, this one {}",
                        name.chars().count()
                    )));
                }
                let on = message.map_or(String::new(), |m| format!(" on message {m}"));
                (
                    format!("create thread in <#{channel}>{on}: {name}"),
                    Some(Call::CreateThread {
                        channel,
                        name,
                        message,
                    }),
                )
            }
            Step::Log { channel, text } => {
                let content = self.text(text)?;
                (
                    format!("log to <#{channel}>: {content}"),
                    Some(Call::Send {
                        channel: *channel,
                        content,
                        buttons: Vec::new(),
                    }),
                )
            }
            Step::SetVar(scope, name, value) => {
                let value = self.value(value)?;
                let detail = format!("{}.{name} = {value}", scope.prefix());
                self.set_var(*scope, name, value)?;
                (detail, None)
            }
            Step::IncrementVar(scope, name, by) => {
                let prefix = scope.prefix();
                let current = match self.var(*scope, name) {
                    Value::Int(n) => n,
                    Value::Text(text) => text.trim().parse().map_err(|_| {
                        Outcome::Failed(format!("{prefix}.{name} is \"{text}\", not a number"))
                    })?,
                };
                let next = current
                    .checked_add(*by)
                    .ok_or_else(|| Outcome::Failed(format!("{prefix}.{name} is too large")))?;
                self.set_var(*scope, name, Value::Int(next))?;
                (format!("{prefix}.{name} = {next}"), None)
            }
            Step::Wait(seconds) => {
                self.note(at.to_owned(), format!("wait {seconds} s"));
                return Ok(Flow::End(Outcome::Waiting { seconds: *seconds }));
            }
            Step::Call(id) => {
                if depth >= super::model::limits::CALL_DEPTH {
                    return Err(Outcome::Limit(Limit::CallDepth));
                }
                let Some(callee) = self.workflows.get(id).cloned() else {
                    return Err(Outcome::Failed(format!(
                        "workflow {id} does not exist or is disabled"
                    )));
                };
                self.note(
                    at.to_owned(),
                    format!("call workflow {id} ({})", callee.name),
                );
                let prefix = format!("workflow {id} ");
                return Ok(self.workflow(&callee, 0, true, depth + 1, &prefix));
            }
            Step::Stop => {
                self.note(at.to_owned(), "stop");
                return Ok(Flow::End(Outcome::Stopped));
            }
        };
        if let Some(call) = call {
            self.call(call)?;
        }
        self.note(at.to_owned(), detail);
        Ok(Flow::Next)
    }
}

impl Runner<'_> {
    /// Whose a kept variable of `scope` is: the server's (0) or the event's member's.
    fn owner(&self, scope: VarScope) -> Option<u64> {
        match scope {
            VarScope::Run => None,
            VarScope::Server => Some(0),
            VarScope::Member => self.facts.user_id,
        }
    }

    /// A variable's value, 0 if unset (a member's too when the event has no member).
    fn var(&self, scope: VarScope, name: &str) -> Value {
        let value = match (scope, self.owner(scope)) {
            (VarScope::Run, _) => self.vars.get(name).cloned(),
            (_, Some(owner)) => {
                let key = (owner, name.to_owned());
                self.kept_writes
                    .get(&key)
                    .or_else(|| self.kept.get(&key))
                    .cloned()
            }
            (_, None) => None,
        };
        value.unwrap_or(Value::Int(0))
    }

    /// Sets a variable; a kept one within the guild's count and the store's size.
    fn set_var(&mut self, scope: VarScope, name: &str, value: Value) -> Result<(), Outcome> {
        if scope == VarScope::Run {
            self.vars.insert(name.to_owned(), value);
            return Ok(());
        }
        let owner = self
            .owner(scope)
            .ok_or_else(|| Outcome::Failed("this event has no member".into()))?;
        let bytes = serde_json::to_string(&value).map_or(usize::MAX, |json| json.len());
        if bytes > protonn_storage::WORKFLOW_VARIABLE_MAX_BYTES {
            return Err(Outcome::Failed(format!(
                "{}.{name}: a kept variable holds at most {} bytes",
                scope.prefix(),
                protonn_storage::WORKFLOW_VARIABLE_MAX_BYTES
            )));
        }
        let key = (owner, name.to_owned());
        if !self.kept.contains_key(&key) && !self.kept_writes.contains_key(&key) {
            let new = self
                .kept_writes
                .keys()
                .filter(|key| !self.kept.contains_key(*key))
                .count();
            if self.kept.len() + new >= self.limits.kept_variables {
                return Err(Outcome::Limit(Limit::Variables));
            }
        }
        self.kept_writes.insert(key, value);
        Ok(())
    }
}

/// Characters of a trace line kept: enough to recognise a message, while a guild's kept
/// traces stay small.
const TRACE_DETAIL_CHARS: usize = 200;
/// A thread's name, in characters at most (Discord's).
const THREAD_NAME_CHARS: usize = 100;

/// A trace line, cut to [`TRACE_DETAIL_CHARS`].
pub(crate) fn clip(mut detail: String) -> String {
    if let Some((cut, _)) = detail.char_indices().nth(TRACE_DETAIL_CHARS) {
        detail.truncate(cut);
        detail.push('…');
    }
    detail
}

fn eval_failure(error: EvalError) -> Outcome {
    match error {
        EvalError::OutOfFuel => Outcome::Limit(Limit::Fuel),
        EvalError::Invalid(reason) => Outcome::Failed(reason),
    }
}

impl Scope for Runner<'_> {
    fn lookup(&self, path: &[String]) -> Option<Value> {
        let facts = self.facts;
        let text = |s: String| Some(Value::Text(s));
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let now_secs = (facts.at_ms / 1000) as i64;
        match path.as_slice() {
            ["user", "id"] => facts.user_id.map(|id| Value::Text(id.to_string())),
            ["user", "mention"] => facts.user_id.map(|id| Value::Text(format!("<@{id}>"))),
            ["user", "name"] => text(facts.user_name.clone()),
            ["channel", "id"] => facts.channel_id.map(|id| Value::Text(id.to_string())),
            ["channel", "mention"] => facts.channel_id.map(|id| Value::Text(format!("<#{id}>"))),
            ["channel", "name"] => text(facts.channel_name.clone().unwrap_or_default()),
            ["message", "content"] => text(facts.content.clone()),
            ["emoji", "name"] => text(facts.emoji.clone().unwrap_or_default()),
            ["role", "id"] => facts.role_id.map(|id| Value::Text(id.to_string())),
            ["role", "mention"] => facts.role_id.map(|id| Value::Text(format!("<@&{id}>"))),
            ["args", "count"] => Some(Value::Int(self.args.len() as i64)),
            ["args", "all"] => text(self.args.join(" ")),
            // A missing argument is empty, so `{if args.1 == "" then … else …}` can test it.
            ["args", n] => n
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1)
                .map(|n| Value::Text(self.args.get(n - 1).cloned().unwrap_or_default())),
            ["var", name] => Some(self.var(VarScope::Run, name)),
            ["server_var", name] => Some(self.var(VarScope::Server, name)),
            ["member_var", name] => Some(self.var(VarScope::Member, name)),
            // A field the modal does not have (or an event that is no modal) is empty.
            ["modal", name] => text(facts.fields.get(*name).cloned().unwrap_or_default()),
            ["now", "unix"] => Some(Value::Int(now_secs)),
            ["now", "hour"] => Some(Value::Int(now_secs.rem_euclid(86_400) / 3_600)),
            ["now", "minute"] => Some(Value::Int(now_secs.rem_euclid(3_600) / 60)),
            // 1970-01-01 was a Thursday; 1 is Monday, 7 Sunday.
            ["now", "weekday"] => Some(Value::Int(
                (now_secs.div_euclid(86_400) + 3).rem_euclid(7) + 1,
            )),
            _ => None,
        }
    }

    fn burn(&mut self) -> bool {
        self.tick().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflows::model::Definition;

    fn compiled(id: u64, json: &str) -> Arc<Compiled> {
        Arc::new(
            Definition::from_json(json)
                .unwrap()
                .compile(id, &format!("w{id}"))
                .unwrap(),
        )
    }

    fn message(content: &str) -> EventFacts {
        EventFacts {
            kind: EventKind::Message,
            user_id: Some(42 << 22),
            user_name: "ada".into(),
            roles: vec![7],
            channel_id: Some(5),
            channel_name: Some("general".into()),
            message_id: Some(99),
            content: content.into(),
            at_ms: 1_700_000_000_000,
            ..EventFacts::default()
        }
    }

    fn run_one(workflow: &Arc<Compiled>, facts: &EventFacts, limits: &Limits) -> Run {
        let all = Workflows::from([(workflow.workflow_id, Arc::clone(workflow))]);
        run(
            &all,
            workflow,
            facts,
            &[],
            Start::top(),
            limits,
            &KeptVars::new(),
        )
    }

    #[test]
    fn a_button_or_a_modal_fires_the_workflows_of_its_id_with_the_modal_s_fields() {
        let on_button = compiled(
            1,
            r#"{"trigger": {"button": {"id": "yes"}}, "actions": [{"stop": {}}]}"#,
        );
        let on_modal = compiled(
            2,
            r#"{"trigger": {"modal": {"id": "apply", "title": "Apply", "fields": [{"id": "why", "label": "Why?"}]}},
                "actions": [{"send": {"text": "{user.name} applied: {modal.why}{modal.other}", "buttons": [[{"id": "ok", "label": "OK"}]]}}]}"#,
        );
        let press = |id: &str| EventFacts {
            kind: EventKind::Button,
            component: Some(id.into()),
            ..message("")
        };
        assert!(matches(&on_button.trigger, &press("yes"), "!").is_some());
        assert!(matches(&on_button.trigger, &press("no"), "!").is_none());
        assert!(matches(&on_modal.trigger, &press("apply"), "!").is_none());
        assert!(matches(&on_button.trigger, &message("yes"), "!").is_none());

        let sent = EventFacts {
            kind: EventKind::Modal,
            fields: BTreeMap::from([("why".to_owned(), "I like it".to_owned())]),
            ..press("apply")
        };
        assert!(matches(&on_modal.trigger, &sent, "!").is_some());
        assert!(matches(&on_button.trigger, &sent, "!").is_none());
        let run = run_one(&on_modal, &sent, &Limits::default());
        assert_eq!(run.trace.outcome, Outcome::Completed);
        assert_eq!(
            run.calls,
            vec![Call::Send {
                channel: 5,
                content: "ada applied: I like it".into(),
                buttons: vec![vec![Button {
                    id: "ok".into(),
                    label: "OK".into()
                }]],
            }]
        );
        assert!(run.trace.steps[0].detail.ends_with("[buttons: OK]"));
    }

    #[test]
    fn triggers_match_only_their_events() {
        let hello = compiled(
            1,
            r#"{"trigger": {"message": {"contains": "HELLO", "channel": 5, "role": 7}}, "actions": [{"stop": {}}]}"#,
        );
        assert!(matches(&hello.trigger, &message("well hello there"), "!").is_some());
        assert!(matches(&hello.trigger, &message("goodbye"), "!").is_none());
        let elsewhere = EventFacts {
            channel_id: Some(6),
            ..message("hello")
        };
        assert!(matches(&hello.trigger, &elsewhere, "!").is_none());
        let no_role = EventFacts {
            roles: vec![],
            ..message("hello")
        };
        assert!(matches(&hello.trigger, &no_role, "!").is_none());

        let regex = compiled(
            2,
            r#"{"trigger": {"message": {"regex": "^\\d{3}$"}}, "actions": [{"stop": {}}]}"#,
        );
        assert!(matches(&regex.trigger, &message("123"), "!").is_some());
        assert!(matches(&regex.trigger, &message("1234"), "!").is_none());

        let command = compiled(
            3,
            r#"{"trigger": {"command": {"name": "roll"}}, "actions": [{"stop": {}}]}"#,
        );
        assert_eq!(
            matches(&command.trigger, &message("!ROLL 2 6"), "!"),
            Some(vec!["2".to_owned(), "6".to_owned()])
        );
        assert!(matches(&command.trigger, &message("!rolls"), "!").is_none());
        assert!(matches(&command.trigger, &message("?roll"), "!").is_none());

        let reaction = compiled(
            4,
            r#"{"trigger": {"reaction_add": {"emoji": "⭐"}}, "actions": [{"stop": {}}]}"#,
        );
        let star = EventFacts {
            kind: EventKind::ReactionAdd,
            emoji: Some("⭐".into()),
            ..EventFacts::default()
        };
        assert!(matches(&reaction.trigger, &star, "!").is_some());
        let removed = EventFacts {
            kind: EventKind::ReactionRemove,
            ..star.clone()
        };
        assert!(matches(&reaction.trigger, &removed, "!").is_none());

        let role = compiled(
            5,
            r#"{"trigger": {"role_add": {"role": 9}}, "actions": [{"stop": {}}]}"#,
        );
        let got = EventFacts {
            kind: EventKind::RoleAdd,
            role_id: Some(9),
            ..EventFacts::default()
        };
        assert!(matches(&role.trigger, &got, "!").is_some());
        let join = compiled(
            6,
            r#"{"trigger": {"member_join": {}}, "actions": [{"stop": {}}]}"#,
        );
        assert!(matches(&join.trigger, &got, "!").is_none());
    }

    #[test]
    fn conditions_and_actions_leave_a_trace_and_calls_in_order() {
        let workflow = compiled(
            1,
            r#"{"trigger": {"command": {"name": "greet"}},
                "conditions": [{"and": [{"has_role": 7}, {"not": {"in_channel": 6}}]},
                               {"or": [{"content_contains": "nothing"}, {"account_older_than_days": 30}]}],
                "actions": [
                    {"set_var": {"name": "n", "value": "{2 * 3}"}},
                    {"increment_var": {"name": "n", "by": 4}},
                    {"send": {"text": "Hi {user.mention} in #{channel.name}: {var.n}"}},
                    {"react": {"emoji": "👋"}},
                    {"add_role": {"role": 8}},
                    {"stop": {}},
                    {"delete_message": {}}
                ]}"#,
        );
        let run = run_one(&workflow, &message("!greet"), &Limits::default());
        assert_eq!(run.trace.outcome, Outcome::Stopped);
        assert_eq!(
            run.calls,
            vec![
                Call::Send {
                    channel: 5,
                    content: format!("Hi <@{}> in #general: 10", 42u64 << 22),
                    buttons: Vec::new(),
                },
                Call::React {
                    channel: 5,
                    message: 99,
                    emoji: "👋".into()
                },
                Call::AddRole {
                    user: 42 << 22,
                    role: 8
                },
            ]
        );
        let places: Vec<&str> = run.trace.steps.iter().map(|s| s.at.as_str()).collect();
        assert_eq!(
            places,
            [
                "conditions[0]",
                "conditions[1]",
                "actions[0]",
                "actions[1]",
                "actions[2]",
                "actions[3]",
                "actions[4]",
                "actions[5]"
            ]
        );
        assert_eq!(run.trace.api_calls, 3);
        assert!(run.trace.fuel_used > 8);

        let unprivileged = EventFacts {
            roles: vec![],
            ..message("!greet")
        };
        let run = run_one(&workflow, &unprivileged, &Limits::default());
        assert_eq!(run.trace.outcome, Outcome::ConditionsFailed);
        assert!(run.calls.is_empty());
    }

    #[test]
    fn each_limit_stops_the_run_with_its_reason() {
        let chatty = compiled(
            1,
            r#"{"trigger": {"member_join": {}}, "actions": [
                {"send": {"channel": 1, "text": "{user.name}{user.name}{user.name}"}},
                {"send": {"channel": 1, "text": "two"}},
                {"send": {"channel": 1, "text": "three"}}
            ]}"#,
        );
        let join = EventFacts {
            kind: EventKind::MemberJoin,
            user_id: Some(1),
            user_name: "x".repeat(600),
            ..EventFacts::default()
        };
        let outcome = |limits: Limits| run_one(&chatty, &join, &limits).trace.outcome;
        assert_eq!(outcome(Limits::default()), Outcome::Completed);
        assert_eq!(
            outcome(Limits {
                fuel: 3,
                ..Limits::default()
            }),
            Outcome::Limit(Limit::Fuel)
        );
        assert_eq!(
            outcome(Limits {
                api_calls: 2,
                ..Limits::default()
            }),
            Outcome::Limit(Limit::ApiCalls)
        );
        assert_eq!(
            outcome(Limits {
                output_bytes: 1_500,
                ..Limits::default()
            }),
            Outcome::Limit(Limit::OutputBytes)
        );
        assert_eq!(
            outcome(Limits {
                message_chars: 1_000,
                ..Limits::default()
            }),
            Outcome::Limit(Limit::MessageLength)
        );
        assert_eq!(
            outcome(Limits {
                deadline: Duration::ZERO,
                ..Limits::default()
            }),
            Outcome::Limit(Limit::Deadline)
        );
        let run = run_one(
            &chatty,
            &join,
            &Limits {
                api_calls: 2,
                ..Limits::default()
            },
        );
        assert_eq!(run.calls.len(), 2, "nothing past the limit is asked for");
        assert_eq!(
            run.trace.steps.last().unwrap().detail,
            "stopped: limit api_calls reached"
        );
    }

    #[test]
    fn calls_run_the_callee_and_waits_park_the_run() {
        let caller = compiled(
            1,
            r#"{"trigger": {"member_join": {}}, "actions": [
                {"set_var": {"name": "greeting", "value": "hello"}},
                {"call": {"workflow": 2}},
                {"wait": {"seconds": 600}},
                {"send": {"channel": 3, "text": "later {var.greeting}"}}
            ]}"#,
        );
        let callee = compiled(
            2,
            r#"{"trigger": {"called": {}}, "actions": [{"send": {"channel": 3, "text": "{var.greeting} {user.mention}"}}]}"#,
        );
        let all = Workflows::from([(1, Arc::clone(&caller)), (2, Arc::clone(&callee))]);
        let join = EventFacts {
            kind: EventKind::MemberJoin,
            user_id: Some(4),
            ..EventFacts::default()
        };
        let first = run(
            &all,
            &caller,
            &join,
            &[],
            Start::top(),
            &Limits::default(),
            &KeptVars::new(),
        );
        assert_eq!(first.trace.outcome, Outcome::Waiting { seconds: 600 });
        assert_eq!(
            first.calls,
            vec![Call::Send {
                channel: 3,
                content: "hello <@4>".into(),
                buttons: Vec::new(),
            }]
        );
        assert!(
            first
                .trace
                .steps
                .iter()
                .any(|s| s.at == "workflow 2 actions[0]")
        );
        let (step, vars) = first.resume.unwrap();
        assert_eq!(step, 3);
        let start = Start {
            step,
            vars,
            check_conditions: false,
        };
        let second = run(
            &all,
            &caller,
            &join,
            &[],
            start,
            &Limits::default(),
            &KeptVars::new(),
        );
        assert_eq!(second.trace.outcome, Outcome::Completed);
        assert_eq!(
            second.calls,
            vec![Call::Send {
                channel: 3,
                content: "later hello".into(),
                buttons: Vec::new(),
            }]
        );

        let missing = Workflows::from([(1, Arc::clone(&caller))]);
        let run = run(
            &missing,
            &caller,
            &join,
            &[],
            Start::top(),
            &Limits::default(),
            &KeptVars::new(),
        );
        assert!(
            matches!(run.trace.outcome, Outcome::Failed(ref why) if why.contains("workflow 2"))
        );
    }

    #[test]
    fn kept_variables_are_read_changed_and_held_to_the_guilds_count() {
        let workflow = compiled(
            1,
            r#"{"trigger": {"command": {"name": "visit"}}, "actions": [
                {"increment_server_var": {"name": "visits"}},
                {"set_member_var": {"name": "last", "value": "{server_var.visits}"}},
                {"reply": {"text": "{server_var.visits} {member_var.last} {member_var.other}"}}
            ]}"#,
        );
        let facts = message("!visit");
        let member = facts.user_id.unwrap();
        let all = Workflows::from([(1, Arc::clone(&workflow))]);
        let kept = KeptVars::from([((0, "visits".to_owned()), Value::Int(41))]);
        let first = run(
            &all,
            &workflow,
            &facts,
            &[],
            Start::top(),
            &Limits::default(),
            &kept,
        );
        assert_eq!(first.trace.outcome, Outcome::Completed);
        assert_eq!(
            first.calls[0],
            Call::Reply {
                channel: 5,
                message: 99,
                content: "42 42 0".into()
            }
        );
        assert_eq!(
            first.kept.into_iter().collect::<Vec<_>>(),
            [
                ((0, "visits".to_owned()), Value::Int(42)),
                ((member, "last".to_owned()), Value::Int(42)),
            ]
        );

        // The guild keeps as many as its plan allows: a new one past it stops the run.
        let full = Limits {
            kept_variables: 1,
            ..Limits::default()
        };
        let second = run(&all, &workflow, &facts, &[], Start::top(), &full, &kept);
        assert_eq!(second.trace.outcome, Outcome::Limit(Limit::Variables));
        assert_eq!(
            second.kept.keys().collect::<Vec<_>>(),
            [&(0, "visits".to_owned())],
            "what it changed before stands"
        );
        // A member's variable needs a member.
        let schedule = EventFacts {
            kind: EventKind::Schedule,
            channel_id: Some(5),
            ..EventFacts::default()
        };
        let third = run(
            &all,
            &workflow,
            &schedule,
            &[],
            Start::top(),
            &Limits::default(),
            &kept,
        );
        assert_eq!(
            third.trace.outcome,
            Outcome::Failed("this event has no member".into())
        );
    }

    #[test]
    fn a_template_without_a_value_fails_the_step_with_its_reason() {
        let workflow = compiled(
            1,
            r#"{"trigger": {"member_join": {}}, "actions": [{"send": {"channel": 1, "text": "{1 / 0}"}}]}"#,
        );
        let run = run_one(&workflow, &EventFacts::default(), &Limits::default());
        assert_eq!(
            run.trace.outcome,
            Outcome::Failed("division by zero".into())
        );
        assert_eq!(run.trace.steps[0].detail, "failed: division by zero");
        let long = clip("é".repeat(300));
        assert_eq!(long.chars().count(), TRACE_DETAIL_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
