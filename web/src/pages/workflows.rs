//! Workflows in the dashboard: the list (enable or disable, duplicate, delete, export and
//! import as JSON), a form-based editor (trigger, conditions and actions as fields; nested
//! conditions as JSON), the dry-run panel (a sample event → the trace, nothing sent) and the
//! recent runs with their traces.
//!
//! Every change is a workflows guild call, which checks the definition, saves it and audits
//! it; a refused change shows the bot's reason, keeps what was typed and saves nothing. The
//! page knows the definition's shape only to lay it out in fields: the bot is the judge.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use protonn_actors::{
    GuildRequest, GuildResponse, GuildSummary, RECENT_WORKFLOW_EVENTS, RecentEvent, SampleEvent,
    SampleEventKind, WorkflowOff, WorkflowOutcome, WorkflowTrace,
};
use protonn_storage::{Timestamp, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::guild::{authorize, summary, tabs, unexpected};
use super::layout::{self, Audience, Nav};
use super::{Form, guild_form, guild_form_with_long, guild_id, id_in_path, refusal, see_other};
use crate::crypto::random_token;
use crate::session::Authed;
use crate::{AppState, WebError};

/// The editor's and the import's bodies at most, percent-encoded: 50 actions of 4,000
/// characters fit.
pub(crate) const BODY_LIMIT: usize = 2 << 20;
/// A template's characters at most (the bot's limit), for the editor's text fields.
const TEMPLATE_CHARS: usize = 4_000;
/// Nested conditions as typed, and an imported workflow, in characters at most.
const JSON_CHARS: usize = 200_000;
/// Action rows the editor holds at most (the bot allows 50 actions), and the empty rows it
/// adds after the workflow's own; condition rows likewise.
const ACTION_ROWS: usize = 50;
const EMPTY_ACTION_ROWS: usize = 3;
const CONDITION_ROWS: usize = 20;
const EMPTY_CONDITION_ROWS: usize = 2;
/// The characters of a recent event's message the replay list shows.
const RECENT_CONTENT_CHARS: usize = 80;
/// A workflow's name at most (the bot's limit), where the page makes one up.
const NAME_CHARS: usize = 100;

/// What a definition's field holds, and where the editor keeps it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A row's text (a template).
    Text,
    /// A row's short text: a name, an emoji, a title.
    Name,
    /// A row's number: a channel, role, workflow id, minutes, seconds.
    Number,
    /// JSON: a message's rows of buttons, a modal's fields.
    Json,
}

/// One field of a definition's part: its JSON key, its slot, whether it may be left out.
type FieldSpec = (&'static str, Slot, bool);

/// Trigger kinds: JSON name, what the admin reads, the fields it uses (the trigger's fields
/// are named by their JSON key).
const TRIGGERS: &[(&str, &str, &[FieldSpec])] = &[
    (
        "message",
        "A member's message",
        &[
            ("contains", Slot::Text, true),
            ("starts_with", Slot::Text, true),
            ("regex", Slot::Text, true),
            ("channel", Slot::Number, true),
            ("role", Slot::Number, true),
        ],
    ),
    ("command", "A command", &[("name", Slot::Name, false)]),
    ("member_join", "A member joins", &[]),
    ("member_leave", "A member leaves", &[]),
    (
        "reaction_add",
        "A reaction is added",
        &[("emoji", Slot::Name, true)],
    ),
    (
        "reaction_remove",
        "A reaction is removed",
        &[("emoji", Slot::Name, true)],
    ),
    (
        "role_add",
        "A member gets a role",
        &[("role", Slot::Number, false)],
    ),
    (
        "role_remove",
        "A member loses a role",
        &[("role", Slot::Number, false)],
    ),
    (
        "schedule",
        "On a schedule",
        &[
            ("every_minutes", Slot::Number, false),
            ("channel", Slot::Number, false),
        ],
    ),
    ("called", "Called by another workflow", &[]),
    (
        "button",
        "A member presses a workflow's button",
        &[("id", Slot::Name, false)],
    ),
    (
        "modal",
        "A member sends a workflow's form (modal)",
        &[
            ("id", Slot::Name, false),
            ("title", Slot::Name, false),
            ("fields", Slot::Json, false),
        ],
    ),
];

/// The trigger's fields, in the order the editor shows them, with their labels.
const TRIGGER_FIELDS: &[(&str, &str)] = &[
    ("contains", "Message contains"),
    ("starts_with", "Message starts with"),
    ("regex", "Message matches (regex)"),
    ("channel", "Channel id"),
    ("role", "Role id"),
    ("name", "Command name"),
    ("emoji", "Emoji"),
    ("every_minutes", "Every (minutes, at least 5)"),
    ("id", "Button id (the form opens on the button of this id)"),
    ("title", "Form title"),
    (
        "fields",
        r#"Form fields (JSON: [{"id": "why", "label": "Why?", "long": true}])"#,
    ),
];

/// Action kinds: JSON name, what the admin reads, the fields of its row it uses.
const ACTIONS: &[(&str, &str, &[FieldSpec])] = &[
    (
        "send",
        "Send a message",
        &[
            ("channel", Slot::Number, true),
            ("text", Slot::Text, false),
            ("buttons", Slot::Json, true),
        ],
    ),
    (
        "embed",
        "Send an embed",
        &[
            ("channel", Slot::Number, true),
            ("title", Slot::Name, false),
            ("description", Slot::Text, false),
        ],
    ),
    (
        "reply",
        "Reply to the message",
        &[("text", Slot::Text, false)],
    ),
    ("dm", "DM the member", &[("text", Slot::Text, false)]),
    ("add_role", "Add a role", &[("role", Slot::Number, false)]),
    (
        "remove_role",
        "Remove a role",
        &[("role", Slot::Number, false)],
    ),
    (
        "timeout",
        "Time the member out (minutes)",
        &[("minutes", Slot::Number, false)],
    ),
    ("delete_message", "Delete the message", &[]),
    ("react", "React (emoji)", &[("emoji", Slot::Name, false)]),
    (
        "create_thread",
        "Start a public thread (name)",
        &[("channel", Slot::Number, true), ("name", Slot::Name, false)],
    ),
    (
        "thread_from_message",
        "Start a thread on the message (name)",
        &[("name", Slot::Name, false)],
    ),
    (
        "log",
        "Log to a channel",
        &[
            ("channel", Slot::Number, false),
            ("text", Slot::Text, false),
        ],
    ),
    (
        "set_var",
        "Set a variable",
        &[("name", Slot::Name, false), ("value", Slot::Text, false)],
    ),
    (
        "increment_var",
        "Add to a variable",
        &[("name", Slot::Name, false), ("by", Slot::Number, true)],
    ),
    (
        "set_server_var",
        "Set a server variable (kept)",
        &[("name", Slot::Name, false), ("value", Slot::Text, false)],
    ),
    (
        "increment_server_var",
        "Add to a server variable (kept)",
        &[("name", Slot::Name, false), ("by", Slot::Number, true)],
    ),
    (
        "set_member_var",
        "Set the member's variable (kept)",
        &[("name", Slot::Name, false), ("value", Slot::Text, false)],
    ),
    (
        "increment_member_var",
        "Add to the member's variable (kept)",
        &[("name", Slot::Name, false), ("by", Slot::Number, true)],
    ),
    (
        "wait",
        "Wait (seconds)",
        &[("seconds", Slot::Number, false)],
    ),
    (
        "call",
        "Call a workflow (id)",
        &[("workflow", Slot::Number, false)],
    ),
    ("stop", "Stop", &[]),
];

/// Conditions a row holds: JSON name (`not_` + a name is that condition negated), what the
/// admin reads, whether its value is a number.
const CONDITIONS: &[(&str, &str, bool)] = &[
    ("has_role", "The member has the role (id)", true),
    ("not_has_role", "The member lacks the role (id)", true),
    ("in_channel", "In the channel (id)", true),
    ("not_in_channel", "Not in the channel (id)", true),
    (
        "account_older_than_days",
        "The account is older than (days)",
        true,
    ),
    ("content_contains", "The message contains", false),
    ("content_matches", "The message matches (regex)", false),
];

/// The editor's fields, as stored or as typed (a refused form shows again as it was).
#[derive(Clone, Debug, Default, PartialEq)]
struct Editor {
    /// 0 for a new workflow.
    workflow_id: u64,
    name: String,
    enabled: bool,
    trigger_kind: String,
    /// By the trigger field's JSON key.
    trigger: Vec<(&'static str, String)>,
    conditions: Vec<ConditionRow>,
    /// Conditions the rows cannot show (`and`, `or`, other negations, `compare`), as a JSON
    /// list; they must hold too.
    advanced: String,
    actions: Vec<ActionRow>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ConditionRow {
    kind: String,
    value: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ActionRow {
    kind: String,
    text: String,
    name: String,
    number: String,
    /// A message's buttons, as JSON rows.
    json: String,
}

impl ActionRow {
    fn slot(&self, slot: Slot) -> &str {
        match slot {
            Slot::Text => &self.text,
            Slot::Name => &self.name,
            Slot::Number => &self.number,
            Slot::Json => &self.json,
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut String {
        match slot {
            Slot::Text => &mut self.text,
            Slot::Name => &mut self.name,
            Slot::Number => &mut self.number,
            Slot::Json => &mut self.json,
        }
    }
}

impl Editor {
    fn new_workflow() -> Self {
        Self {
            enabled: true,
            trigger_kind: "message".into(),
            ..Self::default()
        }
    }

    fn trigger_field(&self, key: &str) -> &str {
        self.trigger
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The fields of a stored workflow: what the rows cannot show goes to the JSON box.
    fn of(workflow: &Workflow) -> Result<Self, String> {
        let definition: Value = serde_json::from_str(&workflow.definition)
            .map_err(|err| format!("the stored definition is not JSON: {err}"))?;
        let (trigger_kind, body) =
            single(&definition["trigger"]).ok_or("the stored trigger has no kind")?;
        let trigger = TRIGGER_FIELDS
            .iter()
            .filter_map(|(key, _)| Some((*key, scalar(body.get(*key)?))))
            .collect();
        let mut conditions = Vec::new();
        let mut advanced = Vec::new();
        for condition in definition["conditions"].as_array().into_iter().flatten() {
            match condition_row(condition) {
                Some(row) => conditions.push(row),
                None => advanced.push(condition.clone()),
            }
        }
        let mut actions = Vec::new();
        for action in definition["actions"].as_array().into_iter().flatten() {
            let (kind, body) = single(action).ok_or("a stored action has no kind")?;
            let mut row = ActionRow {
                kind: kind.to_owned(),
                ..ActionRow::default()
            };
            let fields = ACTIONS
                .iter()
                .find(|(name, ..)| *name == kind)
                .map_or(&[][..], |(_, _, fields)| fields);
            for (key, slot, _) in fields {
                if let Some(value) = body.get(*key) {
                    *row.slot_mut(*slot) = scalar(value);
                }
            }
            actions.push(row);
        }
        Ok(Self {
            workflow_id: workflow.workflow_id,
            name: workflow.name.clone(),
            enabled: workflow.enabled,
            trigger_kind: trigger_kind.to_owned(),
            trigger,
            conditions,
            advanced: if advanced.is_empty() {
                String::new()
            } else {
                serde_json::to_string_pretty(&advanced).expect("JSON serialises")
            },
            actions,
        })
    }

    /// The editor's fields from its form, as typed.
    fn from_form(form: &Form) -> Result<Self, WebError> {
        let text = |name: &str| -> Result<String, WebError> {
            Ok(form.one(name)?.unwrap_or_default().trim().to_owned())
        };
        let workflow_id = text("workflow_id")?.parse().unwrap_or(0);
        let trigger = TRIGGER_FIELDS
            .iter()
            .map(|(key, _)| Ok((*key, text(&format!("trigger_{key}"))?)))
            .collect::<Result<_, WebError>>()?;
        let mut conditions = Vec::new();
        for i in 0..CONDITION_ROWS + EMPTY_CONDITION_ROWS {
            let kind = text(&format!("condition_kind_{i}"))?;
            let value = text(&format!("condition_value_{i}"))?;
            if !kind.is_empty() {
                conditions.push(ConditionRow { kind, value });
            }
        }
        let mut actions = Vec::new();
        for i in 0..ACTION_ROWS + EMPTY_ACTION_ROWS {
            let row = ActionRow {
                kind: text(&format!("action_kind_{i}"))?,
                // Templates keep their spaces.
                text: form
                    .one(&format!("action_text_{i}"))?
                    .unwrap_or_default()
                    .to_owned(),
                name: text(&format!("action_name_{i}"))?,
                number: text(&format!("action_number_{i}"))?,
                json: text(&format!("action_buttons_{i}"))?,
            };
            if !row.kind.is_empty() {
                actions.push(row);
            }
        }
        Ok(Self {
            workflow_id,
            name: text("name")?,
            enabled: form.one("enabled")?.is_some(),
            trigger_kind: text("trigger_kind")?,
            trigger,
            conditions,
            advanced: text("advanced")?,
            actions,
        })
    }

    /// The definition the fields say, as JSON; a field that cannot be one says which.
    fn definition(&self) -> Result<Value, String> {
        let (_, _, fields) = TRIGGERS
            .iter()
            .find(|(name, ..)| *name == self.trigger_kind)
            .ok_or_else(|| format!("`{}` is no trigger", self.trigger_kind))?;
        let mut trigger = Map::new();
        for (key, slot, optional) in *fields {
            let typed = self.trigger_field(key);
            if let Some(value) = field(&format!("the trigger's {key}"), typed, *slot, *optional)? {
                trigger.insert((*key).to_owned(), value);
            }
        }
        let mut conditions = Vec::new();
        for (i, row) in self.conditions.iter().enumerate() {
            let (_, _, number) = CONDITIONS
                .iter()
                .find(|(name, ..)| *name == row.kind)
                .ok_or_else(|| format!("conditions[{i}]: `{}` is no condition", row.kind))?;
            let slot = if *number { Slot::Number } else { Slot::Text };
            let value =
                field(&format!("conditions[{i}]"), &row.value, slot, false)?.unwrap_or_default();
            let condition = match row.kind.strip_prefix("not_") {
                Some(kind) => single_object("not", single_object(kind, value)),
                None => single_object(&row.kind, value),
            };
            conditions.push(condition);
        }
        if !self.advanced.is_empty() {
            let advanced: Vec<Value> = serde_json::from_str(&self.advanced).map_err(|err| {
                format!("the other conditions are not a JSON list of conditions: {err}")
            })?;
            conditions.extend(advanced);
        }
        let mut actions = Vec::new();
        for (i, row) in self.actions.iter().enumerate() {
            let (_, _, fields) = ACTIONS
                .iter()
                .find(|(name, ..)| *name == row.kind)
                .ok_or_else(|| format!("actions[{i}]: `{}` is no action", row.kind))?;
            let mut body = Map::new();
            for (key, slot, optional) in *fields {
                let what = format!("actions[{i}] ({}): its {key}", row.kind);
                if let Some(value) = field(&what, row.slot(*slot), *slot, *optional)? {
                    body.insert((*key).to_owned(), value);
                }
            }
            actions.push(single_object(&row.kind, Value::Object(body)));
        }
        let mut definition = Map::new();
        definition.insert(
            "trigger".into(),
            single_object(&self.trigger_kind, Value::Object(trigger)),
        );
        if !conditions.is_empty() {
            definition.insert("conditions".into(), Value::Array(conditions));
        }
        definition.insert("actions".into(), Value::Array(actions));
        Ok(Value::Object(definition))
    }
}

/// A field's JSON value: `None` when optional and empty; a number slot must hold a number.
fn field(what: &str, typed: &str, slot: Slot, optional: bool) -> Result<Option<Value>, String> {
    if typed.trim().is_empty() {
        return if optional {
            Ok(None)
        } else {
            Err(format!("{what} is missing"))
        };
    }
    match slot {
        Slot::Number => {}
        Slot::Json => {
            return serde_json::from_str(typed)
                .map(Some)
                .map_err(|err| format!("{what} is not JSON: {err}"));
        }
        Slot::Text | Slot::Name => return Ok(Some(Value::String(typed.to_owned()))),
    }
    let typed = typed.trim();
    let number = typed
        .parse::<u64>()
        .map(Value::from)
        .or_else(|_| typed.parse::<i64>().map(Value::from))
        .map_err(|_| format!("{what} is not a number: `{typed}`"))?;
    Ok(Some(number))
}

fn single_object(key: &str, value: Value) -> Value {
    let mut object = Map::new();
    object.insert(key.to_owned(), value);
    Value::Object(object)
}

/// The one key of an object such as `{"send": {...}}`, and its value.
fn single(value: &Value) -> Option<(&str, &Value)> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// A JSON number or string as a field shows it.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The row a top-level condition fits in, if one does.
fn condition_row(condition: &Value) -> Option<ConditionRow> {
    let (kind, value) = single(condition)?;
    let (kind, value) = match (kind, value) {
        ("not", inner) => {
            let (inner_kind, value) = single(inner)?;
            (format!("not_{inner_kind}"), value)
        }
        (kind, value) => (kind.to_owned(), value),
    };
    let (_, _, number) = CONDITIONS.iter().find(|(name, ..)| *name == kind)?;
    let fits = if *number {
        value.is_u64()
    } else {
        value.is_string()
    };
    fits.then(|| ConditionRow {
        kind,
        value: scalar(value),
    })
}

/// A workflow as exported and imported: `workflow_id` is informative (an import takes the
/// next free id, so it never overwrites).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Portable {
    #[serde(default)]
    workflow_id: Option<u64>,
    name: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    definition: Value,
}

fn enabled_by_default() -> bool {
    true
}

impl Portable {
    fn of(workflow: &Workflow) -> Self {
        Self {
            workflow_id: Some(workflow.workflow_id),
            name: workflow.name.clone(),
            enabled: workflow.enabled,
            definition: serde_json::from_str(&workflow.definition)
                .unwrap_or_else(|_| Value::String(workflow.definition.clone())),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    saved: Option<u64>,
    deleted: Option<u64>,
    enabled: Option<u64>,
    disabled: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EditorQuery {
    saved: Option<u64>,
    copied_from: Option<u64>,
}

async fn list(state: &AppState, authed: &Authed, guild_id: u64) -> Result<Vec<Workflow>, WebError> {
    Ok(listing(state, authed, guild_id).await?.0)
}

/// The guild's workflows, and the enabled ones its plan switches off (a downgrade keeps them).
async fn listing(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
) -> Result<(Vec<Workflow>, Vec<WorkflowOff>), WebError> {
    match state
        .call(authed.user_id, guild_id, GuildRequest::ListWorkflows, None)
        .await?
    {
        GuildResponse::Workflows { workflows, off } => Ok((workflows, off)),
        _ => Err(unexpected()),
    }
}

async fn one(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
    workflow_id: u64,
) -> Result<Workflow, WebError> {
    list(state, authed, guild_id)
        .await?
        .into_iter()
        .find(|w| w.workflow_id == workflow_id)
        .ok_or(WebError::NotFound)
}

fn next_id(workflows: &[Workflow]) -> u64 {
    workflows.iter().map(|w| w.workflow_id).max().unwrap_or(0) + 1
}

/// Saves through the bot; its refusal (a reason) comes back as `Err(Ok(reason))`.
async fn save(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
    workflow: (u64, String, bool, String),
    key: Option<String>,
) -> Result<Result<Workflow, String>, WebError> {
    let (workflow_id, name, enabled, definition) = workflow;
    let request = GuildRequest::SaveWorkflow {
        workflow_id,
        name,
        enabled,
        definition,
    };
    match state.call(authed.user_id, guild_id, request, key).await {
        Ok(GuildResponse::Workflow(saved)) => Ok(Ok(saved)),
        Ok(_) => Err(unexpected()),
        Err(WebError::BadForm(reason)) => Ok(Err(reason)),
        Err(err) => Err(err),
    }
}

// ---- the list ----

pub(crate) async fn workflows(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let notice = q
        .saved
        .map(|id| format!("Workflow {id} imported. The bot uses it from now on."))
        .or(q.deleted.map(|id| format!("Workflow {id} deleted.")))
        .or(q.enabled.map(|id| format!("Workflow {id} enabled.")))
        .or(q.disabled.map(|id| format!("Workflow {id} disabled.")));
    list_page(&state, &authed, guild_id, notice, None, None).await
}

async fn list_page(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
    notice: Option<String>,
    error: Option<String>,
    import_draft: Option<String>,
) -> Result<Response, WebError> {
    let summary = summary(state, authed, guild_id).await?;
    let (workflows, off) = listing(state, authed, guild_id).await?;
    let why_off = |id: u64| {
        off.iter()
            .find(|o| o.workflow_id == id)
            .map(|o| o.why.as_str())
    };
    let base = format!("/guilds/{guild_id}/workflows");
    let csrf = authed.csrf();
    let body = html! {
        (tabs(guild_id, &summary.name, "Workflows"))
        h1 { "Workflows" }
        @if let Some(notice) = &notice { p.notice role="status" id="notice" { (notice) } }
        @if let Some(error) = &error { p.error role="alert" id="error" { (error) } }
        p {
            a id="new-workflow" href={ (base) "/new" } { "New workflow" } " · "
            a id="export-all" href={ "/guilds/" (guild_id) "/workflows.json" } download { "Export all (JSON)" }
        }
        @if !off.is_empty() {
            p.error role="alert" id="over-plan" {
                "Your server's plan does not run every enabled workflow; these are kept but off until the server has premium again or you disable or shorten others: "
                @for (n, o) in off.iter().enumerate() {
                    @if n > 0 { ", " }
                    strong { (workflows.iter().find(|w| w.workflow_id == o.workflow_id).map_or("", |w| w.name.as_str())) } " (" (o.why) ")"
                }
                "."
            }
        }
        @if workflows.is_empty() { p.muted id="no-workflows" { "No workflow yet." } }
        @else {
            table id="workflows" {
                thead { tr { th { "Id" } th { "Name" } th { "Trigger" } th { "State" } th { "" } } }
                tbody {
                    @for w in &workflows {
                        @let id = w.workflow_id;
                        tr id={ "workflow-" (id) } {
                            td { (id) }
                            td { a href={ (base) "/" (id) } { (w.name) } }
                            td { (trigger_summary(w)) }
                            td {
                                @if let Some(why) = why_off(id) { span.error id={ "off-" (id) } title=(why) { "off (plan)" } }
                                @else if w.enabled { "enabled" } @else { span.muted { "disabled" } }
                            }
                            td {
                                form.inline method="post" action={ (base) "/" (id) "/enabled" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="idempotency_key" value=(random_token());
                                    input type="hidden" name="enabled" value=(!w.enabled);
                                    button type="submit" id={ "toggle-" (id) } { @if w.enabled { "Disable" } @else { "Enable" } }
                                }
                                " "
                                form.inline method="post" action={ (base) "/" (id) "/duplicate" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="idempotency_key" value=(random_token());
                                    button type="submit" id={ "duplicate-" (id) } { "Duplicate" }
                                }
                                " "
                                form.inline method="post" action={ (base) "/" (id) "/delete" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="idempotency_key" value=(random_token());
                                    button type="submit" id={ "delete-" (id) } { "Delete" }
                                }
                                " "
                                a href={ (base) "/" (id) "/export" } download { "Export" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Import a workflow" }
        form.card method="post" action={ (base) "/import" } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="idempotency_key" value=(random_token());
            label for="import" { "Workflow (JSON, as exported)" }
            textarea id="import" name="json" rows="8" spellcheck="false" required {
                @if let Some(draft) = &import_draft { (draft) }
            }
            p.muted { "One workflow: " code { "{\"name\": …, \"enabled\": …, \"definition\": {…}}" } ". It gets the next free id; the bot checks it and saves nothing it refuses." }
            p { button type="submit" id="do-import" { "Import" } }
        }
    };
    Ok(frame(authed, "Workflows", body))
}

fn frame(authed: &Authed, title: &str, body: Markup) -> Response {
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    layout::user_page(layout::page(title, Some(nav), Audience::User, body))
}

/// The trigger in a few words, for the list.
fn trigger_summary(workflow: &Workflow) -> String {
    let definition: Value = serde_json::from_str(&workflow.definition).unwrap_or_default();
    let Some((kind, body)) = single(&definition["trigger"]) else {
        return "?".into();
    };
    let label = TRIGGERS
        .iter()
        .find(|(name, ..)| *name == kind)
        .map_or(kind, |(_, label, _)| label);
    let details: Vec<String> = body
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {}", scalar(v)))
        .collect();
    if details.is_empty() {
        label.to_owned()
    } else {
        format!("{label} ({})", details.join(", "))
    }
}

/// Every workflow of the guild, as a JSON list of [`Portable`]s.
pub(crate) async fn export_all(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let all: Vec<Portable> = list(&state, &authed, guild_id)
        .await?
        .iter()
        .map(Portable::of)
        .collect();
    Ok(json_download(&all, &format!("workflows-{guild_id}.json")))
}

pub(crate) async fn export_one(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, raw_id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    let workflow_id = id_in_path(&raw_id)?;
    authorize(&state, &authed, guild_id).await?;
    let workflow = one(&state, &authed, guild_id, workflow_id).await?;
    Ok(json_download(
        &Portable::of(&workflow),
        &format!("workflow-{guild_id}-{workflow_id}.json"),
    ))
}

fn json_download(value: &impl Serialize, file: &str) -> Response {
    let body = serde_json::to_string_pretty(value).expect("JSON serialises");
    (
        [
            (CONTENT_TYPE, "application/json".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// Imports one workflow under the next free id; the bot checks it.
pub(crate) async fn import(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let long = [("json", JSON_CHARS)];
    let (form, guild_id) = guild_form_with_long(&state, &authed, &raw, body, &long).await?;
    let typed = form.required("json")?.to_owned();
    let refused = |reason: String| {
        let error = format!("{reason} Nothing was saved.");
        list_page(
            &state,
            &authed,
            guild_id,
            None,
            Some(error),
            Some(typed.clone()),
        )
    };
    let portable: Portable = match serde_json::from_str::<Value>(&typed) {
        Ok(Value::Array(_)) => {
            return refusal(
                refused(
                    "Give one workflow (an object); the export of all workflows is a list of them."
                        .into(),
                )
                .await,
            );
        }
        Ok(value) => match serde_json::from_value(value) {
            Ok(portable) => portable,
            Err(err) => {
                return refusal(refused(format!("The workflow is not valid: {err}.")).await);
            }
        },
        Err(err) => {
            return refusal(refused(format!("The workflow is not valid JSON: {err}.")).await);
        }
    };
    let workflow_id = next_id(&list(&state, &authed, guild_id).await?);
    let definition = match portable.definition {
        Value::String(text) => text,
        other => other.to_string(),
    };
    let key = form.idempotency_key()?;
    let workflow = (workflow_id, portable.name, portable.enabled, definition);
    match save(&state, &authed, guild_id, workflow, key).await? {
        Ok(saved) => Ok(see_other(&format!(
            "/guilds/{guild_id}/workflows?saved={}",
            saved.workflow_id
        ))),
        Err(reason) => refusal(refused(reason).await),
    }
}

pub(crate) async fn set_enabled(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, raw_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (form, guild_id) = guild_form(&state, &authed, &raw, body).await?;
    let workflow_id = id_in_path(&raw_id)?;
    let enabled = form.flag("enabled")?;
    let request = GuildRequest::SetWorkflowEnabled {
        workflow_id,
        enabled,
    };
    match state
        .call(authed.user_id, guild_id, request, form.idempotency_key()?)
        .await
    {
        Ok(GuildResponse::Workflow(_)) => {
            let done = if enabled { "enabled" } else { "disabled" };
            Ok(see_other(&format!(
                "/guilds/{guild_id}/workflows?{done}={workflow_id}"
            )))
        }
        Ok(_) => Err(unexpected()),
        Err(WebError::BadForm(reason)) => {
            let error = format!("{reason} Nothing was changed.");
            refusal(list_page(&state, &authed, guild_id, None, Some(error), None).await)
        }
        Err(err) => Err(err),
    }
}

/// A copy under the next free id, disabled (so the copy does not double the original's
/// runs until it is changed), opened in the editor.
pub(crate) async fn duplicate(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, raw_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (form, guild_id) = guild_form(&state, &authed, &raw, body).await?;
    let workflow_id = id_in_path(&raw_id)?;
    let all = list(&state, &authed, guild_id).await?;
    let original = all
        .iter()
        .find(|w| w.workflow_id == workflow_id)
        .ok_or(WebError::NotFound)?;
    let name: String = format!("Copy of {}", original.name)
        .chars()
        .take(NAME_CHARS)
        .collect();
    let copy = (next_id(&all), name, false, original.definition.clone());
    match save(&state, &authed, guild_id, copy, form.idempotency_key()?).await? {
        Ok(saved) => Ok(see_other(&format!(
            "/guilds/{guild_id}/workflows/{}?copied_from={workflow_id}",
            saved.workflow_id
        ))),
        Err(reason) => {
            let error = format!("{reason} Nothing was saved.");
            refusal(list_page(&state, &authed, guild_id, None, Some(error), None).await)
        }
    }
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, raw_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (form, guild_id) = guild_form(&state, &authed, &raw, body).await?;
    let workflow_id = id_in_path(&raw_id)?;
    let request = GuildRequest::DeleteWorkflow { workflow_id };
    match state
        .call(authed.user_id, guild_id, request, form.idempotency_key()?)
        .await
    {
        Ok(GuildResponse::WorkflowDeleted { .. }) => Ok(see_other(&format!(
            "/guilds/{guild_id}/workflows?deleted={workflow_id}"
        ))),
        Ok(_) => Err(unexpected()),
        Err(WebError::BadForm(reason)) => {
            let error = format!("Workflow {workflow_id} was not deleted: {reason}.");
            refusal(list_page(&state, &authed, guild_id, None, Some(error), None).await)
        }
        Err(err) => Err(err),
    }
}

// ---- the editor, the dry-run panel and the runs ----

/// What the editor page shows besides the fields.
#[derive(Default)]
struct Shown {
    notice: Option<String>,
    error: Option<String>,
    /// The dry run's sample event as typed, and its trace.
    sample: SampleForm,
    trace: Option<WorkflowTrace>,
}

pub(crate) async fn new_workflow(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    editor_page(
        &state,
        &authed,
        guild_id,
        Editor::new_workflow(),
        Shown::default(),
    )
    .await
}

pub(crate) async fn workflow(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, raw_id)): Path<(String, String)>,
    Query(q): Query<EditorQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    let workflow_id = id_in_path(&raw_id)?;
    authorize(&state, &authed, guild_id).await?;
    let workflow = one(&state, &authed, guild_id, workflow_id).await?;
    let mut shown = Shown {
        notice: q
            .saved
            .map(|_| "Saved. The bot uses it from now on.".to_owned())
            .or(q.copied_from.map(|from| {
                format!("A disabled copy of workflow {from}: change it, then enable it.")
            })),
        ..Shown::default()
    };
    let editor = Editor::of(&workflow).unwrap_or_else(|err| {
        shown.error = Some(format!("{err}: export it and import it again fixed."));
        Editor::new_workflow()
    });
    editor_page(&state, &authed, guild_id, editor, shown).await
}

/// Saves the editor's workflow (a new one under the next free id).
pub(crate) async fn save_workflow(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let long = long_fields();
    let long: Vec<(&str, usize)> = long.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let (form, guild_id) = guild_form_with_long(&state, &authed, &raw, body, &long).await?;
    let editor = Editor::from_form(&form)?;
    let refused = |reason: &str| Shown {
        error: Some(format!("{}. Nothing was saved.", capitalised(reason))),
        ..Shown::default()
    };
    let definition = match editor.definition() {
        Ok(definition) => definition.to_string(),
        Err(reason) => {
            let shown = refused(&reason);
            return refusal(editor_page(&state, &authed, guild_id, editor, shown).await);
        }
    };
    let workflow_id = if editor.workflow_id == 0 {
        next_id(&list(&state, &authed, guild_id).await?)
    } else {
        editor.workflow_id
    };
    let workflow = (workflow_id, editor.name.clone(), editor.enabled, definition);
    match save(&state, &authed, guild_id, workflow, form.idempotency_key()?).await? {
        Ok(saved) => Ok(see_other(&format!(
            "/guilds/{guild_id}/workflows/{}?saved=1",
            saved.workflow_id
        ))),
        Err(reason) => {
            let shown = refused(reason.trim_end_matches('.'));
            refusal(editor_page(&state, &authed, guild_id, editor, shown).await)
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The editor's fields longer than a form field's default, with their limits.
fn long_fields() -> Vec<(String, usize)> {
    let mut long = vec![
        ("advanced".to_owned(), JSON_CHARS),
        ("trigger_contains".to_owned(), TEMPLATE_CHARS),
        ("trigger_starts_with".to_owned(), TEMPLATE_CHARS),
        ("trigger_regex".to_owned(), TEMPLATE_CHARS),
        ("trigger_fields".to_owned(), TEMPLATE_CHARS),
    ];
    for i in 0..ACTION_ROWS + EMPTY_ACTION_ROWS {
        long.push((format!("action_text_{i}"), TEMPLATE_CHARS));
        long.push((format!("action_name_{i}"), TEMPLATE_CHARS));
        long.push((format!("action_buttons_{i}"), TEMPLATE_CHARS));
    }
    for i in 0..CONDITION_ROWS + EMPTY_CONDITION_ROWS {
        long.push((format!("condition_value_{i}"), TEMPLATE_CHARS));
    }
    long
}

/// A dry-run's sample event as typed.
#[derive(Clone, Debug, Default)]
struct SampleForm {
    kind: String,
    user_id: String,
    user_name: String,
    roles: String,
    channel_id: String,
    content: String,
    emoji: String,
    role_id: String,
    /// The button pressed or the form sent.
    component: String,
    /// A form's fields, one `id=value` a line.
    fields: String,
    /// The number of one of the guild's recent events to replay instead; empty for the
    /// sample described.
    recent: String,
}

const SAMPLE_KINDS: &[(&str, &str, SampleEventKind)] = &[
    ("message", "A message", SampleEventKind::Message),
    ("member_join", "A member joins", SampleEventKind::MemberJoin),
    (
        "member_leave",
        "A member leaves",
        SampleEventKind::MemberLeave,
    ),
    (
        "reaction_add",
        "A reaction is added",
        SampleEventKind::ReactionAdd,
    ),
    (
        "reaction_remove",
        "A reaction is removed",
        SampleEventKind::ReactionRemove,
    ),
    ("role_add", "A role is added", SampleEventKind::RoleAdd),
    (
        "role_remove",
        "A role is removed",
        SampleEventKind::RoleRemove,
    ),
    ("schedule", "The schedule", SampleEventKind::Schedule),
    ("button", "A button is pressed", SampleEventKind::Button),
    ("modal", "A form is sent", SampleEventKind::Modal),
];

impl SampleForm {
    fn from_form(form: &Form) -> Result<Self, WebError> {
        let text = |name: &str| -> Result<String, WebError> {
            Ok(form.one(name)?.unwrap_or_default().trim().to_owned())
        };
        Ok(Self {
            kind: text("sample_kind")?,
            user_id: text("sample_user_id")?,
            user_name: text("sample_user_name")?,
            roles: text("sample_roles")?,
            channel_id: text("sample_channel_id")?,
            content: form.one("sample_content")?.unwrap_or_default().to_owned(),
            emoji: text("sample_emoji")?,
            role_id: text("sample_role_id")?,
            component: text("sample_component")?,
            fields: form.one("sample_fields")?.unwrap_or_default().to_owned(),
            recent: text("sample_recent")?,
        })
    }

    /// The recent event to replay, if one is chosen.
    fn recent(&self) -> Result<Option<u64>, String> {
        if self.recent.is_empty() {
            return Ok(None);
        }
        self.recent
            .parse()
            .map(Some)
            .map_err(|_| format!("`{}` is no recent event", self.recent))
    }

    fn sample(&self) -> Result<SampleEvent, String> {
        let kind = SAMPLE_KINDS
            .iter()
            .find(|(name, ..)| *name == self.kind)
            .map(|(_, _, kind)| *kind)
            .ok_or_else(|| format!("`{}` is no kind of event", self.kind))?;
        let id = |what: &str, typed: &str| -> Result<Option<u64>, String> {
            if typed.is_empty() {
                return Ok(None);
            }
            typed
                .parse()
                .map(Some)
                .map_err(|_| format!("the sample's {what} is not a number: `{typed}`"))
        };
        let roles = self
            .roles
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|r| !r.is_empty())
            .map(|r| {
                r.parse()
                    .map_err(|_| format!("the sample's roles: `{r}` is not a number"))
            })
            .collect::<Result<Vec<u64>, String>>()?;
        let fields = self
            .fields
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let (id, value) = line.split_once('=').ok_or_else(|| {
                    format!("the sample's form fields: `{line}` is not `id=value`")
                })?;
                Ok((id.trim().to_owned(), value.trim().to_owned()))
            })
            .collect::<Result<_, String>>()?;
        Ok(SampleEvent {
            kind,
            user_id: id("member id", &self.user_id)?,
            user_name: self.user_name.clone(),
            roles,
            channel_id: id("channel id", &self.channel_id)?,
            // A sample message has an id, so reply, react and delete show what they would do.
            // A button's message too.
            message_id: matches!(
                kind,
                SampleEventKind::Message | SampleEventKind::Button | SampleEventKind::Modal
            )
            .then_some(1),
            content: self.content.clone(),
            emoji: (!self.emoji.is_empty()).then(|| self.emoji.clone()),
            role_id: id("role id", &self.role_id)?,
            component: (!self.component.is_empty()).then(|| self.component.clone()),
            fields,
            at_ms: Timestamp::now().as_millis(),
            ..SampleEvent::default()
        })
    }
}

/// Runs the editor's workflow as typed (saved or not) on a sample event: the trace, nothing
/// sent and nothing saved; the fields stay as typed.
pub(crate) async fn dry_run(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let mut long = long_fields();
    long.push(("sample_content".to_owned(), TEMPLATE_CHARS));
    long.push(("sample_fields".to_owned(), TEMPLATE_CHARS));
    let long: Vec<(&str, usize)> = long.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let (form, guild_id) = guild_form_with_long(&state, &authed, &raw, body, &long).await?;
    let editor = Editor::from_form(&form)?;
    let sample = SampleForm::from_form(&form)?;
    let refused = |reason: &str, sample: SampleForm| Shown {
        error: Some(format!(
            "{}. Nothing was run.",
            capitalised(reason.trim_end_matches('.'))
        )),
        sample,
        ..Shown::default()
    };
    let built = editor.definition().and_then(|definition| {
        let recent = sample.recent()?;
        // A replay needs no sample: the one described is not checked.
        let event = match recent {
            Some(_) => SampleEvent::default(),
            None => sample.sample()?,
        };
        Ok((definition.to_string(), event, recent))
    });
    let (definition, event, recent) = match built {
        Ok(built) => built,
        Err(reason) => {
            let shown = refused(&reason, sample);
            return refusal(editor_page(&state, &authed, guild_id, editor, shown).await);
        }
    };
    let request = GuildRequest::DryRunWorkflow {
        workflow_id: editor.workflow_id,
        definition: Some(definition),
        sample: event,
        recent,
    };
    let shown = match state.call(authed.user_id, guild_id, request, None).await {
        Ok(GuildResponse::WorkflowTrace(trace)) => Shown {
            sample,
            trace: Some(trace),
            ..Shown::default()
        },
        Ok(_) => return Err(unexpected()),
        Err(WebError::BadForm(reason)) => {
            let shown = refused(&reason, sample);
            return refusal(editor_page(&state, &authed, guild_id, editor, shown).await);
        }
        Err(err) => return Err(err),
    };
    editor_page(&state, &authed, guild_id, editor, shown).await
}

async fn editor_page(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
    editor: Editor,
    shown: Shown,
) -> Result<Response, WebError> {
    let summary = summary(state, authed, guild_id).await?;
    let runs = if editor.workflow_id == 0 {
        Vec::new()
    } else {
        let request = GuildRequest::WorkflowRuns {
            workflow_id: editor.workflow_id,
        };
        match state.call(authed.user_id, guild_id, request, None).await? {
            GuildResponse::WorkflowRuns { traces } => traces,
            _ => return Err(unexpected()),
        }
    };
    // What the bot holds in memory, through a guild call; the page works without it.
    let recent = match state
        .call(
            authed.user_id,
            guild_id,
            GuildRequest::RecentWorkflowEvents,
            None,
        )
        .await
    {
        Ok(GuildResponse::RecentWorkflowEvents { events }) => events,
        _ => Vec::new(),
    };
    let title = if editor.workflow_id == 0 {
        "New workflow".to_owned()
    } else {
        format!("Workflow {}: {}", editor.workflow_id, editor.name)
    };
    let body = render_editor(authed, &summary, &editor, &shown, &runs, &recent, &title);
    Ok(frame(authed, &title, body))
}

fn render_editor(
    authed: &Authed,
    summary: &GuildSummary,
    editor: &Editor,
    shown: &Shown,
    runs: &[WorkflowTrace],
    recent: &[RecentEvent],
    title: &str,
) -> Markup {
    let guild_id = summary.guild_id;
    let base = format!("/guilds/{guild_id}/workflows");
    let condition_rows = editor.conditions.len().min(CONDITION_ROWS) + EMPTY_CONDITION_ROWS;
    let action_rows = editor.actions.len().min(ACTION_ROWS) + EMPTY_ACTION_ROWS;
    let no_condition = ConditionRow::default();
    let no_action = ActionRow::default();
    html! {
        (tabs(guild_id, &summary.name, "Workflows"))
        p { a href=(base) { "All workflows" } }
        h1 { (title) }
        @if let Some(notice) = &shown.notice { p.notice role="status" id="notice" { (notice) } }
        @if let Some(error) = &shown.error { p.error role="alert" id="error" { (error) } }
        form.card method="post" action=(base) id="editor" {
            input type="hidden" name="csrf" value=(authed.csrf());
            input type="hidden" name="idempotency_key" value=(random_token());
            input type="hidden" name="workflow_id" value=(editor.workflow_id);
            label for="name" { "Name" }
            input id="name" name="name" maxlength="100" required value=(editor.name);
            label { input type="checkbox" id="enabled" name="enabled" checked[editor.enabled]; " Enabled" }

            h2 { "Trigger" }
            label for="trigger_kind" { "When" }
            select id="trigger_kind" name="trigger_kind" {
                @for (name, label, _) in TRIGGERS {
                    option value=(name) selected[*name == editor.trigger_kind] { (label) }
                }
            }
            @for (key, label) in TRIGGER_FIELDS {
                label for={ "trigger_" (key) } { (label) " " span.muted { "(" (used_by(key)) ")" } }
                input id={ "trigger_" (key) } name={ "trigger_" (key) } value=(editor.trigger_field(key));
            }
            p.muted { "Only the fields the chosen trigger uses are read." }

            h2 { "Conditions" }
            p.muted { "All must hold; leave a row's kind empty to drop it." }
            @for i in 0..condition_rows {
                @let row = editor.conditions.get(i).unwrap_or(&no_condition);
                div.row {
                    select id={ "condition_kind_" (i) } name={ "condition_kind_" (i) } aria-label={ "Condition " (i + 1) } {
                        option value="" selected[row.kind.is_empty()] { "—" }
                        @for (name, label, _) in CONDITIONS {
                            option value=(name) selected[*name == row.kind] { (label) }
                        }
                    }
                    input id={ "condition_value_" (i) } name={ "condition_value_" (i) } aria-label={ "Condition " (i + 1) " value" } value=(row.value);
                }
            }
            label for="advanced" { "Other conditions (JSON list: and, or, not, compare)" }
            textarea id="advanced" name="advanced" rows="4" spellcheck="false" { (editor.advanced) }

            h2 { "Actions" }
            p.muted { "In order; leave a row's kind empty to drop it. Texts are templates: " code { "{user.mention}" } ", " code { "{args.1}" } ", " code { "{var.name}" } "…" }
            @for i in 0..action_rows {
                @let row = editor.actions.get(i).unwrap_or(&no_action);
                fieldset id={ "action_" (i) } {
                    legend { "Action " (i + 1) }
                    select id={ "action_kind_" (i) } name={ "action_kind_" (i) } aria-label={ "Action " (i + 1) } {
                        option value="" selected[row.kind.is_empty()] { "—" }
                        @for (name, label, _) in ACTIONS {
                            option value=(name) selected[*name == row.kind] { (label) }
                        }
                    }
                    label for={ "action_number_" (i) } { "Channel, role, workflow, minutes, seconds or amount" }
                    input id={ "action_number_" (i) } name={ "action_number_" (i) } value=(row.number);
                    label for={ "action_name_" (i) } { "Variable name, emoji or title" }
                    input id={ "action_name_" (i) } name={ "action_name_" (i) } value=(row.name);
                    label for={ "action_text_" (i) } { "Text" }
                    textarea id={ "action_text_" (i) } name={ "action_text_" (i) } rows="2" { (row.text) }
                    label for={ "action_buttons_" (i) } { "Buttons of a message (JSON rows: " code { r#"[[{"id": "yes", "label": "Yes"}]]"# } ")" }
                    input id={ "action_buttons_" (i) } name={ "action_buttons_" (i) } spellcheck="false" value=(row.json);
                }
            }
            (sample_fields(&shown.sample, recent))
            p {
                button type="submit" id="save" { "Save workflow" } " "
                button type="submit" id="run-dry" formaction={ (base) "/dry-run" } { "Dry run" }
            }
        }
        @if let Some(trace) = &shown.trace {
            section.card id="dry-run-trace" {
                h3 { "Dry run: " (outcome_text(&trace.outcome)) }
                (trace_table(trace))
            }
        }
        @if editor.workflow_id != 0 {
            h2 { "Recent runs" }
            @if runs.is_empty() { p.muted id="no-runs" { "No run yet." } }
            @else {
                div id="runs" {
                    @for trace in runs.iter().rev() {
                        details {
                            summary { (layout::time(Timestamp(trace.started_at_ms))) " · " (outcome_text(&trace.outcome)) }
                            (trace_table(trace))
                        }
                    }
                }
            }
        }
    }
}

/// The dry run's sample event, in the editor's form: its button runs the workflow as typed.
fn sample_fields(typed: &SampleForm, recent: &[RecentEvent]) -> Markup {
    html! {
        h2 { "Dry run" }
        p.muted { "Runs the workflow as typed above (saved or not) on one of the server's recent events, or on a sample event you describe, and shows each step: nothing is sent to Discord and nothing is saved." }
        label for="sample_recent" { "Replay a recent event " span.muted { "(the bot's last " (RECENT_WORKFLOW_EVENTS) ", held in its memory only: while the server has an enabled workflow, or for 15 minutes after this editor was opened)" } }
        select id="sample_recent" name="sample_recent" {
            option value="" selected[typed.recent.is_empty()] { "— the sample event described below —" }
            @for event in recent {
                option value=(event.id) selected[typed.recent == event.id.to_string()] { (recent_summary(&event.event)) }
            }
        }
        label for="sample_kind" { "Event" }
        select id="sample_kind" name="sample_kind" {
            @for (name, label, _) in SAMPLE_KINDS {
                option value=(name) selected[*name == typed.kind] { (label) }
            }
        }
        label for="sample_user_id" { "Member id" }
        input id="sample_user_id" name="sample_user_id" value=(typed.user_id);
        label for="sample_user_name" { "Member name" }
        input id="sample_user_name" name="sample_user_name" value=(typed.user_name);
        label for="sample_roles" { "Member's role ids (comma-separated)" }
        input id="sample_roles" name="sample_roles" value=(typed.roles);
        label for="sample_channel_id" { "Channel id" }
        input id="sample_channel_id" name="sample_channel_id" value=(typed.channel_id);
        label for="sample_content" { "Message" }
        textarea id="sample_content" name="sample_content" rows="2" { (typed.content) }
        label for="sample_emoji" { "Emoji" }
        input id="sample_emoji" name="sample_emoji" value=(typed.emoji);
        label for="sample_role_id" { "Role added or removed (id)" }
        input id="sample_role_id" name="sample_role_id" value=(typed.role_id);
        label for="sample_component" { "Button or form id" }
        input id="sample_component" name="sample_component" value=(typed.component);
        label for="sample_fields" { "Form fields (one " code { "id=value" } " a line)" }
        textarea id="sample_fields" name="sample_fields" rows="2" { (typed.fields) }
    }
}

/// A recent event in a line: its kind, member, channel and the start of its message.
fn recent_summary(event: &SampleEvent) -> String {
    let kind = SAMPLE_KINDS
        .iter()
        .find(|(.., kind)| *kind == event.kind)
        .map_or("An event", |(_, label, _)| label);
    let mut line = format!("{kind} by {}", event.user_name);
    if let Some(channel) = event.channel_id {
        line.push_str(&format!(" in channel {channel}"));
    }
    if let Some(emoji) = &event.emoji {
        line.push_str(&format!(": {emoji}"));
    }
    if !event.content.is_empty() {
        let start: String = event.content.chars().take(RECENT_CONTENT_CHARS).collect();
        let more = if start.len() < event.content.len() {
            "…"
        } else {
            ""
        };
        line.push_str(&format!(": {start}{more}"));
    }
    line
}

fn trace_table(trace: &WorkflowTrace) -> Markup {
    html! {
        p.muted {
            "Fuel " (trace.fuel_used) " · Discord calls " (trace.api_calls) " · output "
            (trace.output_bytes) " bytes · " (format!("{:.3} ms", trace.elapsed_micros as f64 / 1000.0))
        }
        table {
            thead { tr { th { "Step" } th { "What happened" } } }
            tbody { @for step in &trace.steps { tr { td { code { (step.at) } } td { (step.detail) } } } }
        }
    }
}

fn outcome_text(outcome: &WorkflowOutcome) -> String {
    match outcome {
        WorkflowOutcome::Completed => "completed".into(),
        WorkflowOutcome::ConditionsFailed => "a condition did not hold".into(),
        WorkflowOutcome::Stopped => "stopped".into(),
        WorkflowOutcome::Waiting { seconds } => format!("waiting {seconds} s"),
        WorkflowOutcome::Limit(limit) => format!("stopped: limit {} reached", limit.label()),
        WorkflowOutcome::Failed(reason) => format!("failed: {reason}"),
    }
}

/// Which triggers read a trigger field.
fn used_by(key: &str) -> String {
    TRIGGERS
        .iter()
        .filter(|(_, _, fields)| fields.iter().any(|(k, ..)| *k == key))
        .map(|(name, ..)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(definition: &str) -> Workflow {
        Workflow {
            guild_id: 1,
            workflow_id: 7,
            name: "w".into(),
            created_by: None,
            enabled: true,
            definition: definition.into(),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn a_definition_goes_through_the_editor_unchanged() {
        let definition = serde_json::json!({
            "trigger": {"message": {"contains": "hi", "channel": 5}},
            "conditions": [
                {"has_role": 3},
                {"not": {"in_channel": 4}},
                {"content_matches": "a+"},
                {"or": [{"has_role": 1}, {"has_role": 2}]},
                {"compare": {"left": "{var.n}", "op": "gt", "right": "2"}}
            ],
            "actions": [
                {"send": {"text": "Hi {user.mention}"}},
                {"embed": {"channel": 9, "title": "T", "description": "D"}},
                {"increment_var": {"name": "n", "by": -2}},
                {"set_var": {"name": "x", "value": " spaced "}},
                {"delete_message": {}},
                {"wait": {"seconds": 60}},
                {"stop": {}}
            ]
        });
        let editor = Editor::of(&stored(&definition.to_string())).unwrap();
        assert_eq!(editor.conditions.len(), 3);
        assert!(editor.advanced.contains("compare"));
        assert_eq!(editor.definition().unwrap(), definition);
    }

    #[test]
    fn buttons_and_a_modal_go_through_the_editor_unchanged() {
        let definition = serde_json::json!({
            "trigger": {"modal": {"id": "apply", "title": "Apply",
                                  "fields": [{"id": "why", "label": "Why?", "long": true}]}},
            "actions": [
                {"send": {"channel": 4, "text": "{modal.why}",
                          "buttons": [[{"id": "yes", "label": "Yes"}], [{"id": "no", "label": "No"}]]}}
            ]
        });
        let editor = Editor::of(&stored(&definition.to_string())).unwrap();
        assert_eq!(
            editor.trigger_field("fields"),
            r#"[{"id":"why","label":"Why?","long":true}]"#
        );
        assert_eq!(editor.definition().unwrap(), definition);

        let mut typed = editor;
        typed.actions[0].json = "[[{\"id\": ".into();
        let err = typed.definition().unwrap_err();
        assert!(
            err.starts_with("actions[0] (send): its buttons is not JSON: "),
            "{err}"
        );
    }

    #[test]
    fn a_field_that_cannot_be_one_says_which() {
        let editor = Editor {
            trigger_kind: "command".into(),
            trigger: vec![("name", "go".into())],
            actions: vec![ActionRow {
                kind: "add_role".into(),
                number: "twelve".into(),
                ..ActionRow::default()
            }],
            ..Editor::default()
        };
        assert_eq!(
            editor.definition().unwrap_err(),
            "actions[0] (add_role): its role is not a number: `twelve`"
        );
        let editor = Editor {
            trigger_kind: "schedule".into(),
            ..Editor::default()
        };
        assert_eq!(
            editor.definition().unwrap_err(),
            "the trigger's every_minutes is missing"
        );
        let editor = Editor {
            trigger_kind: "called".into(),
            advanced: "{\"has_role\": 1}".into(),
            ..Editor::default()
        };
        assert!(
            editor
                .definition()
                .unwrap_err()
                .starts_with("the other conditions are not a JSON list")
        );
    }
}
