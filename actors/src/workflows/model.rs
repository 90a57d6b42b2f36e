//! The workflow definition (the JSON an admin writes or imports) and its compilation into
//! what the runner uses: templates parsed, regexes built with size limits, every limit of
//! the definition checked. A definition that does not compile is refused with a clear
//! message and nothing is saved.

use std::collections::{HashMap, HashSet};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::template::{ParseError, Template};

/// A workflow's definition, as stored (`Workflow::definition`) and imported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Definition {
    pub(crate) trigger: Trigger,
    /// All must hold for the actions to run; none means always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) conditions: Vec<Condition>,
    pub(crate) actions: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Trigger {
    /// A member's message; every filter given must hold.
    Message(MessageFilter),
    /// `<prefix><name> args…`; the words after the name are `args.1`, `args.2`, …
    Command {
        name: String,
    },
    MemberJoin {},
    MemberLeave {},
    /// A reaction added to a message, of this emoji if given (unicode, or a custom emoji's name).
    ReactionAdd {
        #[serde(default)]
        emoji: Option<String>,
    },
    ReactionRemove {
        #[serde(default)]
        emoji: Option<String>,
    },
    /// A member got this role.
    RoleAdd {
        role: u64,
    },
    /// A member lost this role.
    RoleRemove {
        role: u64,
    },
    /// Every `every_minutes` (at least 5), posting in `channel` by default.
    Schedule {
        every_minutes: u32,
        channel: u64,
    },
    /// Only when another workflow calls it.
    Called {},
    /// A member pressed a workflow's button with this id (see [`Button`]).
    Button {
        id: String,
    },
    /// A member sent this modal, which a press of the workflow button with the same id
    /// opens; its fields are `modal.<field>` in templates.
    Modal {
        id: String,
        title: String,
        fields: Vec<ModalField>,
    },
}

/// A button of a workflow's message: pressing it fires the workflows whose `button` trigger
/// has its id (or opens the modal of the one whose `modal` trigger has it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Button {
    pub(crate) id: String,
    pub(crate) label: String,
}

/// A text field of a workflow's modal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModalField {
    pub(crate) id: String,
    pub(crate) label: String,
    /// A paragraph rather than one line.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) long: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub(crate) required: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_true(value: &bool) -> bool {
    *value
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) starts_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) channel: Option<u64>,
    /// The author has this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// The event's member has the role.
    HasRole(u64),
    /// The event happened in the channel.
    InChannel(u64),
    /// The member's account is at least this many days old.
    AccountOlderThanDays(u32),
    /// The message contains the text (case-insensitive).
    ContentContains(String),
    /// The message matches the regex.
    ContentMatches(String),
    /// Two templates compared: numbers as numbers, anything else as text. Variables, time
    /// (`now.hour`, `now.weekday`) and the event's fields are read this way.
    Compare {
        left: String,
        op: CompareOp,
        right: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Action {
    /// A message to a channel (the event's if none is given), with rows of buttons if any.
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<u64>,
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<Vec<Button>>,
    },
    Embed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<u64>,
        title: String,
        description: String,
    },
    /// A reply to the event's message.
    Reply {
        text: String,
    },
    /// A direct message to the event's member.
    Dm {
        text: String,
    },
    AddRole {
        role: u64,
    },
    RemoveRole {
        role: u64,
    },
    /// Times the event's member out.
    Timeout {
        minutes: u32,
    },
    /// Deletes the event's message.
    DeleteMessage {},
    /// Reacts to the event's message (a unicode emoji).
    React {
        emoji: String,
    },
    /// A public thread in a channel (the event's if none is given), named by a template
    /// (1 to 100 characters once rendered).
    CreateThread {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<u64>,
        name: String,
    },
    /// A public thread on the event's message (in its channel), named by a template.
    ThreadFromMessage {
        name: String,
    },
    /// A line in a log channel.
    Log {
        channel: u64,
        text: String,
    },
    /// Sets a variable of the run (`var.NAME`) to a template's value.
    SetVar {
        name: String,
        value: String,
    },
    /// Adds to a variable of the run (0 if unset).
    IncrementVar {
        name: String,
        #[serde(default = "one")]
        by: i64,
    },
    /// Sets a variable the server keeps between runs (`server_var.NAME`).
    SetServerVar {
        name: String,
        value: String,
    },
    /// Adds to a variable the server keeps between runs (0 if unset).
    IncrementServerVar {
        name: String,
        #[serde(default = "one")]
        by: i64,
    },
    /// Sets the event's member's variable, kept between runs (`member_var.NAME`).
    SetMemberVar {
        name: String,
        value: String,
    },
    /// Adds to the event's member's variable, kept between runs (0 if unset).
    IncrementMemberVar {
        name: String,
        #[serde(default = "one")]
        by: i64,
    },
    /// Carries on after a delay, from a durable timer (as precise as the timer poll).
    Wait {
        seconds: u32,
    },
    /// Runs another workflow of the guild (its trigger is not checked), then carries on.
    Call {
        workflow: u64,
    },
    /// Ends the run here.
    Stop {},
}

fn one() -> i64 {
    1
}

impl Definition {
    /// Whether its trigger fires on members' joins, leaves or role changes, which Discord
    /// sends only to a bot with the GUILD_MEMBERS intent.
    pub(crate) fn needs_member_events(&self) -> bool {
        matches!(
            self.trigger,
            Trigger::MemberJoin {}
                | Trigger::MemberLeave {}
                | Trigger::RoleAdd { .. }
                | Trigger::RoleRemove { .. }
        )
    }
}

/// Limits of a definition, checked when it is compiled.
pub(crate) mod limits {
    /// Actions per workflow.
    pub(crate) const ACTIONS: usize = 50;
    /// Conditions per workflow, counting nested ones.
    pub(crate) const CONDITIONS: usize = 50;
    /// Characters of a template's source.
    pub(crate) const TEMPLATE_CHARS: usize = 4_000;
    /// Characters of a regex's source.
    pub(crate) const REGEX_CHARS: usize = 256;
    /// Bytes the compiled regex may take (the `regex` crate's size limit): with its
    /// linear-time engine this also bounds the time of a match.
    pub(crate) const REGEX_BYTES: usize = 64 * 1024;
    /// A wait's longest delay: 28 days.
    pub(crate) const WAIT_SECONDS: u32 = 28 * 24 * 3600;
    /// A schedule's longest interval: 28 days.
    pub(crate) const SCHEDULE_MAX_MINUTES: u32 = 28 * 24 * 60;
    /// Discord's longest timeout: 28 days.
    pub(crate) const TIMEOUT_MINUTES: u32 = 28 * 24 * 60;
    /// How deep workflows may call each other (A calls B calls C).
    pub(crate) const CALL_DEPTH: usize = 2;
    /// Characters of a variable's name.
    pub(crate) const VAR_NAME_CHARS: usize = 32;
    /// Workflows per guild.
    pub(crate) const WORKFLOWS: usize = 50;
    /// The most frequent schedule: every 5 minutes.
    pub(crate) const SCHEDULE_MINUTES: u32 = 5;
    /// Discord's limits on a message's buttons: rows, buttons per row, a label's characters.
    pub(crate) const BUTTON_ROWS: usize = 5;
    pub(crate) const BUTTONS_PER_ROW: usize = 5;
    pub(crate) const BUTTON_LABEL_CHARS: usize = 80;
    /// Characters of a button's or modal's id: Discord's 100 for a custom id, less the
    /// feature's prefix `wf:`.
    pub(crate) const COMPONENT_ID_CHARS: usize = 100 - super::COMPONENT_PREFIX.len();
    /// Discord's limits on a modal: its title's and a field's label's characters, fields.
    pub(crate) const MODAL_TITLE_CHARS: usize = 45;
    pub(crate) const MODAL_LABEL_CHARS: usize = 45;
    pub(crate) const MODAL_FIELDS: usize = 5;
}

/// The prefix of the custom ids of workflows' buttons and modals (`wf:<id>`), which sets
/// them apart from other features' (`ticket:`).
pub(crate) const COMPONENT_PREFIX: &str = "wf:";

/// A compiled workflow: what the runner holds for each enabled workflow of a guild.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) workflow_id: u64,
    pub(crate) name: String,
    /// Conditions and actions: what a plan's `workflow_steps` counts.
    pub(crate) steps: usize,
    pub(crate) trigger: CompiledTrigger,
    pub(crate) conditions: Vec<Cond>,
    pub(crate) actions: Vec<Step>,
}

#[derive(Debug)]
pub(crate) enum CompiledTrigger {
    Message {
        /// Lowercased: matched case-insensitively.
        contains: Option<String>,
        starts_with: Option<String>,
        regex: Option<Regex>,
        channel: Option<u64>,
        role: Option<u64>,
    },
    Command(String),
    MemberJoin,
    MemberLeave,
    ReactionAdd(Option<String>),
    ReactionRemove(Option<String>),
    RoleAdd(u64),
    RoleRemove(u64),
    Schedule {
        every_minutes: u32,
        channel: u64,
    },
    Called,
    Button(String),
    Modal {
        id: String,
        title: String,
        fields: Vec<ModalField>,
    },
}

impl CompiledTrigger {
    /// The id of the workflow button (or of the modal it opens) it listens to, if any.
    pub(crate) fn component(&self) -> Option<&str> {
        match self {
            CompiledTrigger::Button(id) | CompiledTrigger::Modal { id, .. } => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    HasRole(u64),
    InChannel(u64),
    AccountOlderThanDays(u32),
    ContentContains(String),
    ContentMatches(Regex),
    Compare(Template, CompareOp, Template),
}

#[derive(Debug)]
pub(crate) enum Step {
    Send {
        channel: Option<u64>,
        text: Template,
        buttons: Vec<Vec<Button>>,
    },
    Embed {
        channel: Option<u64>,
        title: Template,
        description: Template,
    },
    Reply(Template),
    Dm(Template),
    AddRole(u64),
    RemoveRole(u64),
    Timeout(u32),
    DeleteMessage,
    React(String),
    CreateThread {
        channel: Option<u64>,
        name: Template,
        from_message: bool,
    },
    Log {
        channel: u64,
        text: Template,
    },
    SetVar(VarScope, String, Template),
    IncrementVar(VarScope, String, i64),
    Wait(u32),
    Call(u64),
    Stop,
}

/// Whose a variable is: the run's (gone when it ends), or kept between runs by the server,
/// for itself or for each member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarScope {
    Run,
    Server,
    Member,
}

impl VarScope {
    /// The name templates read it under (`var.x`, `server_var.x`, `member_var.x`).
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            VarScope::Run => "var",
            VarScope::Server => "server_var",
            VarScope::Member => "member_var",
        }
    }
}

/// Why a definition is refused. The message is shown to the admin as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DefinitionError {
    #[error("invalid definition: {0}")]
    Json(String),
    #[error("{field}: template error: {error}")]
    Template { field: String, error: ParseError },
    #[error("{0}")]
    Invalid(String),
}

impl Definition {
    /// Reads a definition from JSON: unknown fields and malformed JSON are refused with
    /// serde's line and column.
    pub(crate) fn from_json(json: &str) -> Result<Self, DefinitionError> {
        serde_json::from_str(json).map_err(|err| DefinitionError::Json(err.to_string()))
    }

    /// Workflows this one calls.
    pub(crate) fn calls(&self) -> impl Iterator<Item = u64> + '_ {
        self.actions.iter().filter_map(|action| match action {
            Action::Call { workflow } => Some(*workflow),
            _ => None,
        })
    }

    fn waits(&self) -> bool {
        self.actions
            .iter()
            .any(|action| matches!(action, Action::Wait { .. }))
    }

    /// Checks and compiles the definition alone (calls are checked against the guild's
    /// other workflows by [`check_calls`]).
    pub(crate) fn compile(
        &self,
        workflow_id: u64,
        name: &str,
    ) -> Result<Compiled, DefinitionError> {
        if self.actions.is_empty() {
            return invalid("actions: a workflow needs at least one action");
        }
        if self.actions.len() > limits::ACTIONS {
            return invalid(format!("actions: at most {} actions", limits::ACTIONS));
        }
        if count_conditions(&self.conditions) > limits::CONDITIONS {
            return invalid(format!(
                "conditions: at most {} conditions",
                limits::CONDITIONS
            ));
        }
        let trigger = match &self.trigger {
            Trigger::Message(filter) => {
                if filter == &MessageFilter::default() {
                    return invalid(
                        "trigger.message: give at least one of contains, starts_with, regex, channel, role",
                    );
                }
                CompiledTrigger::Message {
                    contains: filter.contains.as_deref().map(str::to_lowercase),
                    starts_with: filter.starts_with.as_deref().map(str::to_lowercase),
                    regex: filter
                        .regex
                        .as_deref()
                        .map(|source| regex("trigger.message.regex", source))
                        .transpose()?,
                    channel: filter.channel,
                    role: filter.role,
                }
            }
            Trigger::Command { name } => {
                let name = name.trim().to_lowercase();
                if name.is_empty()
                    || name.len() > 32
                    || name.chars().any(char::is_whitespace)
                    || crate::features::by_command(&name).is_some()
                    || crate::commands::BUILT_IN.contains(&name.as_str())
                {
                    return invalid(
                        "trigger.command.name: one word of 1 to 32 characters that is not a built-in command",
                    );
                }
                CompiledTrigger::Command(name)
            }
            Trigger::MemberJoin {} => CompiledTrigger::MemberJoin,
            Trigger::MemberLeave {} => CompiledTrigger::MemberLeave,
            Trigger::ReactionAdd { emoji } => CompiledTrigger::ReactionAdd(emoji.clone()),
            Trigger::ReactionRemove { emoji } => CompiledTrigger::ReactionRemove(emoji.clone()),
            Trigger::RoleAdd { role } => CompiledTrigger::RoleAdd(*role),
            Trigger::RoleRemove { role } => CompiledTrigger::RoleRemove(*role),
            Trigger::Schedule {
                every_minutes,
                channel,
            } => {
                if !(limits::SCHEDULE_MINUTES..=limits::SCHEDULE_MAX_MINUTES)
                    .contains(every_minutes)
                {
                    return invalid(format!(
                        "trigger.schedule.every_minutes: at least {} (and at most {}): more frequent is not allowed",
                        limits::SCHEDULE_MINUTES,
                        limits::SCHEDULE_MAX_MINUTES
                    ));
                }
                CompiledTrigger::Schedule {
                    every_minutes: *every_minutes,
                    channel: *channel,
                }
            }
            Trigger::Called {} => CompiledTrigger::Called,
            Trigger::Button { id } => {
                CompiledTrigger::Button(component_id("trigger.button.id", id)?)
            }
            Trigger::Modal { id, title, fields } => {
                let id = component_id("trigger.modal.id", id)?;
                within("trigger.modal.title", title, limits::MODAL_TITLE_CHARS)?;
                if !(1..=limits::MODAL_FIELDS).contains(&fields.len()) {
                    return invalid(format!(
                        "trigger.modal.fields: 1 to {} fields",
                        limits::MODAL_FIELDS
                    ));
                }
                for (i, field) in fields.iter().enumerate() {
                    let at = format!("trigger.modal.fields[{i}]");
                    var_name(&format!("{at}.id"), &field.id)?;
                    within(
                        &format!("{at}.label"),
                        &field.label,
                        limits::MODAL_LABEL_CHARS,
                    )?;
                    if fields[..i].iter().any(|other| other.id == field.id) {
                        return invalid(format!("{at}.id: `{}` is used twice", field.id));
                    }
                }
                CompiledTrigger::Modal {
                    id,
                    title: title.clone(),
                    fields: fields.clone(),
                }
            }
        };
        let conditions = self
            .conditions
            .iter()
            .enumerate()
            .map(|(i, condition)| compile_condition(condition, &format!("conditions[{i}]")))
            .collect::<Result<_, _>>()?;
        let actions = self
            .actions
            .iter()
            .enumerate()
            .map(|(i, action)| compile_action(action, &format!("actions[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Compiled {
            workflow_id,
            name: name.to_owned(),
            steps: self.steps(),
            trigger,
            conditions,
            actions,
        })
    }
}

/// Checks the calls between a guild's workflows (`definitions` by id, the one being saved
/// included): every callee exists, is not waiting (a wait ends the caller's run), no loop,
/// and no chain deeper than [`limits::CALL_DEPTH`].
pub(crate) fn check_calls(definitions: &HashMap<u64, &Definition>) -> Result<(), DefinitionError> {
    fn depth(
        id: u64,
        definitions: &HashMap<u64, &Definition>,
        path: &mut Vec<u64>,
        done: &mut HashSet<u64>,
    ) -> Result<usize, DefinitionError> {
        if let Some(at) = path.iter().position(|&seen| seen == id) {
            let cycle: Vec<String> = path[at..]
                .iter()
                .chain(std::iter::once(&id))
                .map(u64::to_string)
                .collect();
            return invalid(format!(
                "workflows call each other in a loop: {}",
                cycle.join(" → ")
            ));
        }
        let definition = definitions[&id];
        path.push(id);
        let mut deepest = 0;
        for callee in definition.calls() {
            let Some(called) = definitions.get(&callee) else {
                return invalid(format!(
                    "workflow {id} calls workflow {callee}, which does not exist"
                ));
            };
            if called.waits() {
                return invalid(format!(
                    "workflow {id} calls workflow {callee}, which waits: only a workflow that is not called may wait"
                ));
            }
            deepest = deepest.max(1 + depth(callee, definitions, path, done)?);
        }
        path.pop();
        done.insert(id);
        Ok(deepest)
    }
    let mut ids: Vec<u64> = definitions.keys().copied().collect();
    ids.sort_unstable();
    let mut done = HashSet::new();
    for id in ids {
        let deepest = depth(id, definitions, &mut Vec::new(), &mut done)?;
        if deepest > limits::CALL_DEPTH {
            return invalid(format!(
                "workflow {id} starts a chain of calls {deepest} deep; at most {} (A calls B calls C)",
                limits::CALL_DEPTH
            ));
        }
    }
    Ok(())
}

fn invalid<T>(message: impl Into<String>) -> Result<T, DefinitionError> {
    Err(DefinitionError::Invalid(message.into()))
}

impl Definition {
    /// Its steps, as the plans count them: conditions (each node of and/or/not) and actions.
    pub(crate) fn steps(&self) -> usize {
        count_conditions(&self.conditions) + self.actions.len()
    }
}

fn count_conditions(conditions: &[Condition]) -> usize {
    conditions
        .iter()
        .map(|condition| {
            1 + match condition {
                Condition::And(inner) | Condition::Or(inner) => count_conditions(inner),
                Condition::Not(inner) => count_conditions(std::slice::from_ref(inner)),
                _ => 0,
            }
        })
        .sum()
}

/// A regex within the limits: short source, bounded compiled size, linear-time engine.
pub(crate) fn regex(field: &str, source: &str) -> Result<Regex, DefinitionError> {
    if source.chars().count() > limits::REGEX_CHARS {
        return invalid(format!(
            "{field}: a regex of at most {} characters",
            limits::REGEX_CHARS
        ));
    }
    RegexBuilder::new(source)
        .size_limit(limits::REGEX_BYTES)
        .dfa_size_limit(limits::REGEX_BYTES)
        .nest_limit(32)
        .build()
        .map_err(|err| match err {
            regex::Error::CompiledTooBig(_) => DefinitionError::Invalid(format!(
                "{field}: the regex is too large once compiled (limit {} KiB)",
                limits::REGEX_BYTES / 1024
            )),
            other => DefinitionError::Invalid(format!("{field}: invalid regex: {other}")),
        })
}

fn template(field: &str, source: &str) -> Result<Template, DefinitionError> {
    if source.chars().count() > limits::TEMPLATE_CHARS {
        return invalid(format!(
            "{field}: at most {} characters",
            limits::TEMPLATE_CHARS
        ));
    }
    let template = Template::parse(source).map_err(|error| DefinitionError::Template {
        field: field.to_owned(),
        error,
    })?;
    if let Some(unknown) = template.paths().into_iter().find(|path| !known_name(path)) {
        return invalid(format!(
            "{field}: unknown name `{}` (see docs/workflows.md for the names a template can use)",
            unknown.join(".")
        ));
    }
    Ok(template)
}

/// Names a template may read (the runner's `Scope::lookup` answers each).
fn known_name(path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["user", "id" | "mention" | "name"]
        | ["channel", "id" | "mention" | "name"]
        | ["message", "content"]
        | ["emoji", "name"]
        | ["role", "id" | "mention"]
        | ["args", "count" | "all"]
        | ["now", "unix" | "hour" | "minute" | "weekday"] => true,
        ["args", n] => n.parse::<usize>().is_ok_and(|n| n >= 1),
        ["var" | "server_var" | "member_var" | "modal", name] => {
            name.len() <= limits::VAR_NAME_CHARS
        }
        _ => false,
    }
}

fn compile_condition(condition: &Condition, field: &str) -> Result<Cond, DefinitionError> {
    let all = |inner: &[Condition], kind: &str| -> Result<Vec<Cond>, DefinitionError> {
        if inner.is_empty() {
            return invalid(format!("{field}.{kind}: give at least one condition"));
        }
        inner
            .iter()
            .enumerate()
            .map(|(i, c)| compile_condition(c, &format!("{field}.{kind}[{i}]")))
            .collect()
    };
    Ok(match condition {
        Condition::And(inner) => Cond::And(all(inner, "and")?),
        Condition::Or(inner) => Cond::Or(all(inner, "or")?),
        Condition::Not(inner) => {
            Cond::Not(Box::new(compile_condition(inner, &format!("{field}.not"))?))
        }
        Condition::HasRole(role) => Cond::HasRole(*role),
        Condition::InChannel(channel) => Cond::InChannel(*channel),
        Condition::AccountOlderThanDays(days) => Cond::AccountOlderThanDays(*days),
        Condition::ContentContains(text) => Cond::ContentContains(text.to_lowercase()),
        Condition::ContentMatches(source) => {
            Cond::ContentMatches(regex(&format!("{field}.content_matches"), source)?)
        }
        Condition::Compare { left, op, right } => Cond::Compare(
            template(&format!("{field}.compare.left"), left)?,
            *op,
            template(&format!("{field}.compare.right"), right)?,
        ),
    })
}

fn compile_action(action: &Action, field: &str) -> Result<Step, DefinitionError> {
    let text = |name: &str, source: &str| template(&format!("{field}.{name}"), source);
    Ok(match action {
        Action::Send {
            channel,
            text: t,
            buttons,
        } => Step::Send {
            channel: *channel,
            text: text("send.text", t)?,
            buttons: check_buttons(&format!("{field}.send.buttons"), buttons)?,
        },
        Action::Embed {
            channel,
            title,
            description,
        } => Step::Embed {
            channel: *channel,
            title: text("embed.title", title)?,
            description: text("embed.description", description)?,
        },
        Action::Reply { text: t } => Step::Reply(text("reply.text", t)?),
        Action::Dm { text: t } => Step::Dm(text("dm.text", t)?),
        Action::AddRole { role } => Step::AddRole(*role),
        Action::RemoveRole { role } => Step::RemoveRole(*role),
        Action::Timeout { minutes } => {
            if !(1..=limits::TIMEOUT_MINUTES).contains(minutes) {
                return invalid(format!(
                    "{field}.timeout.minutes: 1 to {} (28 days)",
                    limits::TIMEOUT_MINUTES
                ));
            }
            Step::Timeout(*minutes)
        }
        Action::DeleteMessage {} => Step::DeleteMessage,
        Action::React { emoji } => {
            if emoji.is_empty() || emoji.chars().count() > 8 {
                return invalid(format!("{field}.react.emoji: one unicode emoji"));
            }
            Step::React(emoji.clone())
        }
        Action::CreateThread { channel, name } => Step::CreateThread {
            channel: *channel,
            name: text("create_thread.name", name)?,
            from_message: false,
        },
        Action::ThreadFromMessage { name } => Step::CreateThread {
            channel: None,
            name: text("thread_from_message.name", name)?,
            from_message: true,
        },
        Action::Log { channel, text: t } => Step::Log {
            channel: *channel,
            text: text("log.text", t)?,
        },
        Action::SetVar { name, value } => Step::SetVar(
            VarScope::Run,
            var_name(field, name)?,
            text("set_var.value", value)?,
        ),
        Action::IncrementVar { name, by } => {
            Step::IncrementVar(VarScope::Run, var_name(field, name)?, *by)
        }
        Action::SetServerVar { name, value } => Step::SetVar(
            VarScope::Server,
            var_name(field, name)?,
            text("set_server_var.value", value)?,
        ),
        Action::IncrementServerVar { name, by } => {
            Step::IncrementVar(VarScope::Server, var_name(field, name)?, *by)
        }
        Action::SetMemberVar { name, value } => Step::SetVar(
            VarScope::Member,
            var_name(field, name)?,
            text("set_member_var.value", value)?,
        ),
        Action::IncrementMemberVar { name, by } => {
            Step::IncrementVar(VarScope::Member, var_name(field, name)?, *by)
        }
        Action::Wait { seconds } => {
            if !(1..=limits::WAIT_SECONDS).contains(seconds) {
                return invalid(format!(
                    "{field}.wait.seconds: 1 to {} (28 days)",
                    limits::WAIT_SECONDS
                ));
            }
            Step::Wait(*seconds)
        }
        Action::Call { workflow } => Step::Call(*workflow),
        Action::Stop {} => Step::Stop,
    })
}

/// A button's or modal's id: what follows `wf:` in its custom id, 1 to
/// [`limits::COMPONENT_ID_CHARS`] letters, digits, `_` or `-`.
fn component_id(field: &str, id: &str) -> Result<String, DefinitionError> {
    let valid = (1..=limits::COMPONENT_ID_CHARS).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return invalid(format!(
            "{field}: an id is 1 to {} letters, digits, _ or -",
            limits::COMPONENT_ID_CHARS
        ));
    }
    Ok(id.to_owned())
}

/// A text Discord shows as is, 1 to `most` characters.
fn within(field: &str, text: &str, most: usize) -> Result<(), DefinitionError> {
    if text.trim().is_empty() || text.chars().count() > most {
        return invalid(format!("{field}: 1 to {most} characters"));
    }
    Ok(())
}

/// A message's buttons within Discord's limits: up to 5 rows of 1 to 5 buttons, labels of
/// up to 80 characters, ids unique in the message.
fn check_buttons(field: &str, rows: &[Vec<Button>]) -> Result<Vec<Vec<Button>>, DefinitionError> {
    if rows.len() > limits::BUTTON_ROWS {
        return invalid(format!(
            "{field}: at most {} rows of buttons",
            limits::BUTTON_ROWS
        ));
    }
    let mut seen = HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        if !(1..=limits::BUTTONS_PER_ROW).contains(&row.len()) {
            return invalid(format!(
                "{field}[{r}]: 1 to {} buttons in a row",
                limits::BUTTONS_PER_ROW
            ));
        }
        for (b, button) in row.iter().enumerate() {
            let at = format!("{field}[{r}][{b}]");
            component_id(&format!("{at}.id"), &button.id)?;
            within(
                &format!("{at}.label"),
                &button.label,
                limits::BUTTON_LABEL_CHARS,
            )?;
            if !seen.insert(button.id.as_str()) {
                return invalid(format!("{at}.id: `{}` is twice in the message", button.id));
            }
        }
    }
    Ok(rows.to_vec())
}

fn var_name(field: &str, name: &str) -> Result<String, DefinitionError> {
    let valid = !name.is_empty()
        && name.len() <= limits::VAR_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return invalid(format!(
            "{field}: a variable name is 1 to {} letters, digits or _",
            limits::VAR_NAME_CHARS
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<Compiled, DefinitionError> {
        Definition::from_json(json)?.compile(1, "test")
    }

    #[test]
    fn a_full_definition_compiles() {
        let compiled = compile(
            r#"{
                "trigger": {"message": {"contains": "Hello", "channel": 5}},
                "conditions": [{"or": [{"has_role": 7}, {"not": {"content_matches": "^!"}}]},
                               {"compare": {"left": "{args.1}", "op": "gt", "right": "3"}}],
                "actions": [
                    {"send": {"text": "hi {user.mention}"}},
                    {"react": {"emoji": "👋"}},
                    {"increment_var": {"name": "greetings"}},
                    {"wait": {"seconds": 600}},
                    {"stop": {}}
                ]
            }"#,
        )
        .unwrap();
        assert!(matches!(
            compiled.trigger,
            CompiledTrigger::Message { contains: Some(ref c), channel: Some(5), .. } if c == "hello"
        ));
        assert_eq!(compiled.actions.len(), 5);
        assert!(matches!(
            compiled.actions[2],
            Step::IncrementVar(VarScope::Run, _, 1)
        ));
    }

    #[test]
    fn malformed_json_and_unknown_fields_are_refused() {
        let err = compile("{\"trigger\": ").unwrap_err();
        assert!(err.to_string().starts_with("invalid definition: "), "{err}");
        let err =
            compile(r#"{"trigger": {"member_join": {}}, "actions": [{"stop": {}}], "colour": 1}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let err = compile(
            r#"{"trigger": {"member_join": {}}, "actions": [{"send": {"text": "x", "ping": true}}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `ping`"), "{err}");
        let err = compile(r#"{"trigger": {"lunar_eclipse": {}}, "actions": [{"stop": {}}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn a_template_error_names_the_field_and_character() {
        let err = compile(
            r#"{"trigger": {"member_join": {}}, "actions": [{"stop": {}}, {"dm": {"text": "Hi {user.}"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "actions[1].dm.text: template error: expected a name after `.` at character 10"
        );
    }

    #[test]
    fn regexes_over_the_limits_are_refused() {
        let long = "a".repeat(limits::REGEX_CHARS + 1);
        let json = format!(
            r#"{{"trigger": {{"message": {{"regex": "{long}"}}}}, "actions": [{{"stop": {{}}}}]}}"#
        );
        assert!(
            compile(&json)
                .unwrap_err()
                .to_string()
                .contains("at most 256")
        );
        // Short to write, huge to compile: counted repetitions of a Unicode class.
        let json = r#"{"trigger": {"message": {"regex": "\\w{1000}\\w{1000}"}}, "actions": [{"stop": {}}]}"#;
        let err = compile(json).unwrap_err().to_string();
        assert!(err.contains("too large once compiled"), "{err}");
        let json = r#"{"trigger": {"message": {"regex": "(unclosed"}}, "actions": [{"stop": {}}]}"#;
        assert!(
            compile(json)
                .unwrap_err()
                .to_string()
                .contains("invalid regex")
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (action, expected) in [
            (r#"{"wait": {"seconds": 0}}"#, "wait.seconds"),
            (r#"{"timeout": {"minutes": 40321}}"#, "timeout.minutes"),
            (
                r#"{"set_var": {"name": "a b", "value": "1"}}"#,
                "variable name",
            ),
            (r#"{"react": {"emoji": ""}}"#, "react.emoji"),
        ] {
            let json = format!(r#"{{"trigger": {{"member_join": {{}}}}, "actions": [{action}]}}"#);
            let err = compile(&json).unwrap_err().to_string();
            assert!(err.contains(expected), "{action}: {err}");
        }
        let err = compile(r#"{"trigger": {"message": {}}, "actions": [{"stop": {}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one of"), "{err}");
        let err =
            compile(r#"{"trigger": {"command": {"name": "ban"}}, "actions": [{"stop": {}}]}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("built-in"), "{err}");
        let err = compile(
            r#"{"trigger": {"schedule": {"every_minutes": 4, "channel": 1}}, "actions": [{"stop": {}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 5"), "{err}");
        let err = compile(
            r#"{"trigger": {"member_join": {}}, "actions": [{"dm": {"text": "{user.password}"}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown name `user.password`"), "{err}");
        let err = compile(r#"{"trigger": {"member_join": {}}, "actions": []}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one action"), "{err}");
    }

    #[test]
    fn buttons_and_modals_are_held_to_discord_s_limits() {
        let send = |buttons: &str| {
            compile(&format!(
                r#"{{"trigger": {{"member_join": {{}}}}, "actions": [{{"send": {{"text": "pick", "buttons": {buttons}}}}}]}}"#
            ))
        };
        let button = |id: &str| format!(r#"{{"id": "{id}", "label": "L"}}"#);
        let row = |n: usize, from: usize| {
            let buttons: Vec<String> = (from..from + n).map(|i| button(&format!("b{i}"))).collect();
            format!("[{}]", buttons.join(","))
        };
        let full: Vec<String> = (0..5).map(|r| row(5, r * 5)).collect();
        let compiled = send(&format!("[{}]", full.join(","))).unwrap();
        assert!(matches!(&compiled.actions[0], Step::Send { buttons, .. } if buttons.len() == 5));

        let six_rows: Vec<String> = (0..6).map(|r| row(1, r)).collect();
        let refused = [
            (format!("[{}]", six_rows.join(",")), "at most 5 rows"),
            (format!("[{}]", row(6, 0)), "1 to 5 buttons in a row"),
            ("[[]]".to_owned(), "1 to 5 buttons in a row"),
            (format!("[[{}]]", button("has space")), "an id is 1 to 97"),
            (
                format!("[[{}]]", button(&"x".repeat(98))),
                "an id is 1 to 97",
            ),
            (
                format!("[[{}, {}]]", button("a"), button("a")),
                "twice in the message",
            ),
            (
                format!(r#"[[{{"id": "a", "label": "{}"}}]]"#, "l".repeat(81)),
                "label: 1 to 80",
            ),
            (
                r#"[[{"id": "a", "label": " "}]]"#.to_owned(),
                "label: 1 to 80",
            ),
            (
                r#"[[{"id": "a", "label": "L", "url": "x"}]]"#.to_owned(),
                "unknown field `url`",
            ),
        ];
        for (buttons, expected) in refused {
            let err = send(&buttons).unwrap_err().to_string();
            assert!(err.contains(expected), "{buttons}: {err}");
        }
        assert!(send(&format!("[[{}]]", button(&"x".repeat(97)))).is_ok());

        let modal = |title: &str, fields: &str| {
            compile(&format!(
                r#"{{"trigger": {{"modal": {{"id": "apply", "title": "{title}", "fields": {fields}}}}}, "actions": [{{"send": {{"text": "{{modal.why}}"}}}}]}}"#
            ))
        };
        let why = r#"[{"id": "why", "label": "Why?", "long": true}]"#;
        let compiled = modal("Apply", why).unwrap();
        assert!(
            matches!(&compiled.trigger, CompiledTrigger::Modal { id, fields, .. }
            if id == "apply" && fields[0].long && fields[0].required)
        );
        for (title, fields, expected) in [
            ("x".repeat(46), why.to_owned(), "title: 1 to 45"),
            ("Apply".to_owned(), "[]".to_owned(), "1 to 5 fields"),
            (
                "Apply".to_owned(),
                r#"[{"id": "a", "label": "A"}, {"id": "a", "label": "B"}]"#.to_owned(),
                "used twice",
            ),
            (
                "Apply".to_owned(),
                r#"[{"id": "a b", "label": "A"}]"#.to_owned(),
                "variable name",
            ),
        ] {
            let err = modal(&title, &fields).unwrap_err().to_string();
            assert!(err.contains(expected), "{title} {fields}: {err}");
        }
        let err = compile(r#"{"trigger": {"button": {"id": "wf:x"}}, "actions": [{"stop": {}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("trigger.button.id"), "{err}");
    }

    fn calling(callees: &[u64], waits: bool) -> Definition {
        let mut actions: Vec<Action> = callees
            .iter()
            .map(|&workflow| Action::Call { workflow })
            .collect();
        if waits {
            actions.push(Action::Wait { seconds: 5 });
        }
        actions.push(Action::Stop {});
        Definition {
            trigger: Trigger::Called {},
            conditions: Vec::new(),
            actions,
        }
    }

    #[test]
    fn call_loops_chains_too_deep_and_missing_callees_are_refused() {
        let (a, b, c, d) = (
            calling(&[2], false),
            calling(&[3], false),
            calling(&[], false),
            calling(&[1], false),
        );
        let ok = HashMap::from([(1, &a), (2, &b), (3, &c)]);
        assert_eq!(check_calls(&ok), Ok(()));

        let c_calls_d = calling(&[4], false);
        let deep = HashMap::from([(1, &a), (2, &b), (3, &c_calls_d), (4, &c)]);
        let err = check_calls(&deep).unwrap_err().to_string();
        assert!(err.contains("3 deep"), "{err}");

        let looped = calling(&[1], false);
        let cycle = HashMap::from([(1, &a), (2, &looped)]);
        let err = check_calls(&cycle).unwrap_err().to_string();
        assert!(err.contains("loop: 1 → 2 → 1"), "{err}");

        let missing = HashMap::from([(4, &d)]);
        assert!(
            check_calls(&missing)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );

        let waiting = calling(&[], true);
        let calls_a_waiter = HashMap::from([(1, &a), (2, &waiting)]);
        assert!(
            check_calls(&calls_a_waiter)
                .unwrap_err()
                .to_string()
                .contains("which waits")
        );
    }
}
