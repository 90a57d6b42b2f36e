//! The guild calls of workflows: list (export), save (import), enable, delete, dry-run and
//! recent runs. Changes are checked first (nothing is saved when anything is wrong), then
//! saved, then live (the guild's compiled workflows are reloaded on next use), then audited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::counter;
use protonn_storage::{AuditEntry, Plan, StorageError, Timestamp, Workflow, guild_plan};
use serde::Serialize;

use super::model::{Definition, Trigger, check_calls, limits};
use super::run::{self, Start, TraceStep};
use super::{Phase, SCHEDULE_PREFIX, Shared, lock};
use crate::feature::{CallTask, Ctx, premium_allows};
use crate::guild::Io;
use crate::metrics::AUDIT_FAILURES;
use crate::{GuildCall, GuildCallError, GuildRequest, GuildResponse};

/// Audit actions of workflow changes.
pub(crate) const AUDIT_SAVE: &str = "workflow.save";
pub(crate) const AUDIT_ENABLE: &str = "workflow.enable";
pub(crate) const AUDIT_DISABLE: &str = "workflow.disable";
pub(crate) const AUDIT_DELETE: &str = "workflow.delete";

/// Longest workflow name, in characters.
const NAME_CHARS: usize = 100;

/// Details of a workflow change's audit entry.
#[derive(Serialize)]
struct AuditDetails<'a> {
    workflow_id: u64,
    name: &'a str,
    enabled: bool,
    source: &'static str,
    idempotency_key: Option<&'a str>,
}

pub(super) fn answer(
    ctx: &mut Ctx<'_>,
    shared: Arc<Mutex<Shared>>,
    call: &GuildCall,
) -> Option<CallTask> {
    let io = ctx.io.clone();
    let prefix = ctx.config.prefix.clone();
    let plan = ctx.plan;
    let call = call.clone();
    let task: CallTask = match call.request.clone() {
        GuildRequest::ListWorkflows => Box::pin(async move {
            let workflows = io
                .store()
                .workflows(io.guild_id().get())
                .await
                .map_err(unavailable)?;
            // As the runs see it: the plan the actor holds.
            let enabled: Vec<(u64, usize)> = workflows
                .iter()
                .filter(|w| w.enabled)
                .filter_map(|w| {
                    Some((
                        w.workflow_id,
                        Definition::from_json(&w.definition).ok()?.steps(),
                    ))
                })
                .collect();
            let off = super::over_plan(&enabled, plan);
            Ok(GuildResponse::Workflows { workflows, off })
        }),
        GuildRequest::SaveWorkflow {
            workflow_id,
            name,
            enabled,
            definition,
        } => Box::pin(async move {
            let workflow = Workflow {
                guild_id: io.guild_id().get(),
                workflow_id,
                name: name.trim().to_owned(),
                created_by: call.caller.user_id,
                enabled,
                definition,
                updated_at: Timestamp::now(),
            };
            save(&io, &shared, &call, workflow, AUDIT_SAVE).await
        }),
        GuildRequest::SetWorkflowEnabled {
            workflow_id,
            enabled,
        } => Box::pin(async move {
            let mut workflow = stored(&io, workflow_id).await?;
            workflow.enabled = enabled;
            workflow.updated_at = Timestamp::now();
            let action = if enabled { AUDIT_ENABLE } else { AUDIT_DISABLE };
            save(&io, &shared, &call, workflow, action).await
        }),
        GuildRequest::DeleteWorkflow { workflow_id } => {
            Box::pin(async move { delete(&io, &shared, &call, workflow_id).await })
        }
        GuildRequest::DryRunWorkflow {
            workflow_id,
            definition,
            sample,
            recent,
        } => Box::pin(async move {
            let sample = match recent {
                None => sample,
                Some(id) => super::recent_events(&io, &shared)
                    .await
                    .into_iter()
                    .find(|(recent, _)| *recent == id)
                    .map(|(_, facts)| facts)
                    .ok_or_else(|| {
                        invalid(format!(
                            "event {id} is no longer among the server's last {} events: choose another",
                            super::RECENT_EVENTS
                        ))
                    })?,
            };
            dry_run(&io, &shared, workflow_id, definition, sample, &prefix, plan).await
        }),
        GuildRequest::RecentWorkflowEvents => Box::pin(async move {
            let events = super::recent_events(&io, &shared)
                .await
                .into_iter()
                .map(|(id, event)| super::RecentEvent { id, event })
                .collect();
            Ok(GuildResponse::RecentWorkflowEvents { events })
        }),
        GuildRequest::WorkflowRuns { workflow_id } => Box::pin(async move {
            // A fresh actor reads the runs kept in storage first.
            super::ensure_kept(&io, &shared)
                .await
                .map_err(unavailable)?;
            let traces = lock(&shared)
                .traces
                .get(&workflow_id)
                .map(|kept| kept.iter().cloned().collect())
                .unwrap_or_default();
            Ok(GuildResponse::WorkflowRuns { traces })
        }),
        _ => return None,
    };
    Some(task)
}

fn unavailable(err: StorageError) -> GuildCallError {
    GuildCallError::Unavailable {
        message: err.to_string(),
    }
}

fn invalid(message: impl Into<String>) -> GuildCallError {
    GuildCallError::Invalid {
        message: message.into(),
    }
}

async fn stored(io: &Io, workflow_id: u64) -> Result<Workflow, GuildCallError> {
    io.store()
        .workflow(io.guild_id().get(), workflow_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| invalid(format!("there is no workflow {workflow_id}")))
}

/// Checks `workflow` against the rules and the guild's other workflows, then saves it,
/// (re)arms or cancels its schedule, reloads the guild's workflows and audits the change.
async fn save(
    io: &Io,
    shared: &Mutex<Shared>,
    call: &GuildCall,
    workflow: Workflow,
    action: &str,
) -> Result<GuildResponse, GuildCallError> {
    if workflow.workflow_id == 0 {
        return Err(invalid("a workflow id is a number from 1"));
    }
    let name_chars = workflow.name.chars().count();
    if !(1..=NAME_CHARS).contains(&name_chars) {
        return Err(invalid(format!(
            "a workflow name has 1 to {NAME_CHARS} characters"
        )));
    }
    let definition =
        Definition::from_json(&workflow.definition).map_err(|e| invalid(e.to_string()))?;
    definition
        .compile(workflow.workflow_id, &workflow.name)
        .map_err(|e| invalid(e.to_string()))?;
    if definition.needs_member_events() && !io.member_events() {
        return Err(invalid(
            "this bot does not receive members' joins, leaves and role changes, which the \
             trigger needs: its operator must enable the privileged GUILD_MEMBERS intent \
             (`[discord] member_events`)",
        ));
    }
    let guild_id = io.guild_id().get();
    let others = io.store().workflows(guild_id).await.map_err(unavailable)?;
    let is_new = others.iter().all(|w| w.workflow_id != workflow.workflow_id);
    // What the guild's plan allows; a downgrade keeps what is over until it is changed.
    let plan = guild_plan(io.store().as_ref(), guild_id, Timestamp::now())
        .await
        .map_err(unavailable)?;
    let allowed = plan.limits();
    let most = (allowed.workflows as usize).min(limits::WORKFLOWS);
    if is_new && others.len() >= most {
        return Err(invalid(format!(
            "the {} plan allows {most} workflows{}",
            plan.name(),
            premium_allows(plan, Plan::Premium.limits().workflows)
        )));
    }
    let steps = definition.steps();
    if steps > allowed.workflow_steps as usize {
        return Err(invalid(format!(
            "the {} plan allows {} steps (conditions and actions) in a workflow, this one has \
             {steps}{}",
            plan.name(),
            allowed.workflow_steps,
            premium_allows(plan, Plan::Premium.limits().workflow_steps)
        )));
    }
    let parsed: Vec<(u64, Definition)> = others
        .iter()
        .filter(|w| w.workflow_id != workflow.workflow_id)
        .filter_map(|w| Some((w.workflow_id, Definition::from_json(&w.definition).ok()?)))
        .collect();
    let mut definitions: HashMap<u64, &Definition> = parsed
        .iter()
        .map(|(id, definition)| (*id, definition))
        .collect();
    definitions.insert(workflow.workflow_id, &definition);
    check_calls(&definitions).map_err(|e| invalid(e.to_string()))?;
    // A press opens one form: two for one button would leave one never shown.
    if let Trigger::Modal { id, .. } = &definition.trigger
        && let Some((other, _)) = parsed.iter().find(
            |(_, other)| matches!(&other.trigger, Trigger::Modal { id: theirs, .. } if theirs == id),
        )
    {
        return Err(invalid(format!(
            "trigger.modal.id: workflow {other} has the form `{id}` already"
        )));
    }

    io.store()
        .put_workflow(&workflow)
        .await
        .map_err(unavailable)?;
    arm_schedule(io, &workflow, &definition).await;
    invalidate(shared);
    audit(io, call, &workflow, action).await;
    Ok(GuildResponse::Workflow(workflow))
}

async fn delete(
    io: &Io,
    shared: &Mutex<Shared>,
    call: &GuildCall,
    workflow_id: u64,
) -> Result<GuildResponse, GuildCallError> {
    let all = io
        .store()
        .workflows(io.guild_id().get())
        .await
        .map_err(unavailable)?;
    if let Some(caller) = all.iter().find(|w| {
        Definition::from_json(&w.definition)
            .is_ok_and(|definition| definition.calls().any(|callee| callee == workflow_id))
    }) {
        return Err(invalid(format!(
            "workflow {} ({}) calls it: change that one first",
            caller.workflow_id, caller.name
        )));
    }
    let Some(workflow) = all.into_iter().find(|w| w.workflow_id == workflow_id) else {
        return Ok(GuildResponse::WorkflowDeleted { existed: false });
    };
    let existed = io
        .store()
        .delete_workflow(workflow.guild_id, workflow_id)
        .await
        .map_err(unavailable)?;
    cancel_schedule(io, workflow_id).await;
    invalidate(shared);
    audit(io, call, &workflow, AUDIT_DELETE).await;
    Ok(GuildResponse::WorkflowDeleted { existed })
}

/// The guild's workflows changed: the compiled ones are dropped, and a load under way is
/// stale (it loads again).
fn invalidate(shared: &Mutex<Shared>) {
    let mut guard = lock(shared);
    guard.generation += 1;
    guard.phase = Phase::Unloaded;
}

fn schedule_id(workflow_id: u64) -> String {
    format!("{SCHEDULE_PREFIX}{workflow_id}")
}

/// An enabled scheduled workflow gets its timer, first due one interval from now; any other
/// has none.
async fn arm_schedule(io: &Io, workflow: &Workflow, definition: &Definition) {
    let every = match definition.trigger {
        super::model::Trigger::Schedule { every_minutes, .. } if workflow.enabled => every_minutes,
        _ => return cancel_schedule(io, workflow.workflow_id).await,
    };
    let timer = super::schedule_timer(io, workflow.workflow_id, every);
    if let Err(err) = io.store().put_timer(&timer).await {
        tracing::error!(guild_id = %io.guild_id(), workflow = workflow.workflow_id, error = %err, "workflow schedule not stored");
    }
}

async fn cancel_schedule(io: &Io, workflow_id: u64) {
    let id = schedule_id(workflow_id);
    if let Err(err) = io.store().cancel_timer(io.guild_id().get(), &id).await {
        tracing::error!(guild_id = %io.guild_id(), workflow = workflow_id, error = %err, "workflow schedule not cancelled");
    }
}

async fn audit(io: &Io, call: &GuildCall, workflow: &Workflow, action: &str) {
    let details = AuditDetails {
        workflow_id: workflow.workflow_id,
        name: &workflow.name,
        enabled: workflow.enabled,
        source: call.caller.source.label(),
        idempotency_key: call.idempotency_key.as_deref(),
    };
    let entry = AuditEntry {
        guild_id: workflow.guild_id,
        at: Timestamp::now(),
        id: workflow.workflow_id,
        actor_id: call.caller.user_id.unwrap_or(0),
        target_id: None,
        action: action.to_owned(),
        details: serde_json::to_string(&details).expect("audit details serialise"),
    };
    if let Err(err) = io.store().append_audit(&[entry]).await {
        // The change is durable and live; only its record is missing, loudly.
        counter!(AUDIT_FAILURES).increment(1);
        tracing::error!(guild_id = %io.guild_id(), error = %err, "workflow change not audited");
    }
}

/// Runs a workflow against a sample event with nothing sent or stored: the trace says what
/// would have happened, the Discord calls included.
async fn dry_run(
    io: &Io,
    shared: &Mutex<Shared>,
    workflow_id: u64,
    definition: Option<String>,
    mut sample: run::EventFacts,
    prefix: &str,
    plan: Plan,
) -> Result<GuildResponse, GuildCallError> {
    let (name, definition) = match definition {
        Some(json) => ("draft".to_owned(), json),
        None => {
            let saved = stored(io, workflow_id).await?;
            (saved.name, saved.definition)
        }
    };
    let compiled = Definition::from_json(&definition)
        .and_then(|definition| definition.compile(workflow_id, &name))
        .map_err(|e| invalid(e.to_string()))?;
    let mut workflows = super::load(io).await.map_err(unavailable)?.enabled.clone();
    let compiled = Arc::new(compiled);
    workflows.insert(workflow_id, Arc::clone(&compiled));
    // Kept variables are read (never changed) by a dry run.
    super::ensure_kept(io, shared).await.map_err(unavailable)?;
    if sample.at_ms == 0 {
        sample.at_ms = Timestamp::now().as_millis();
    }
    let args = run::matches(&compiled.trigger, &sample, prefix);
    let trigger = TraceStep {
        at: "trigger".to_owned(),
        detail: if args.is_some() {
            "matches the sample event".to_owned()
        } else {
            "does not match the sample event (the run goes on as if it did)".to_owned()
        },
    };
    let args = args.unwrap_or_default();
    let result = {
        let guard = lock(shared);
        let no_vars = super::KeptVars::new();
        let kept = guard.kept.as_ref().map_or(&no_vars, |kept| &kept.vars);
        run::run(
            &workflows,
            &compiled,
            &sample,
            &args,
            Start::top(),
            &super::limits_of(plan),
            kept,
        )
    };
    let mut trace = result.trace;
    trace.steps.insert(0, trigger);
    Ok(GuildResponse::WorkflowTrace(trace))
}
