use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::row_ref::RowRef;
use crate::{Retention, StorageError, Timestamp};

/// An automation of a guild (triggers → conditions → actions), stored as an opaque document
/// that the actors crate validates and runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub guild_id: u64,
    pub workflow_id: u64,
    pub name: String,
    /// The author; cleared (not the workflow) when the author asks for deletion.
    pub created_by: Option<u64>,
    pub enabled: bool,
    /// The definition, JSON.
    pub definition: String,
    pub updated_at: Timestamp,
}

/// Workflows of guilds.
#[async_trait]
pub trait WorkflowRepo: Send + Sync + 'static {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<(), StorageError>;

    async fn workflow(
        &self,
        guild_id: u64,
        workflow_id: u64,
    ) -> Result<Option<Workflow>, StorageError>;

    /// The guild's workflows ordered by id.
    async fn workflows(&self, guild_id: u64) -> Result<Vec<Workflow>, StorageError>;

    /// Deletes one workflow with its kept runs; true if it existed.
    async fn delete_workflow(&self, guild_id: u64, workflow_id: u64) -> Result<bool, StorageError>;

    /// Writes variables (each replaces the one of its guild, member and name), all or none;
    /// one past its retention is not written.
    async fn put_workflow_variables(
        &self,
        variables: &[WorkflowVariable],
    ) -> Result<(), StorageError>;

    /// The guild's kept variables, the server's and its members', within their retention.
    async fn workflow_variables(
        &self,
        guild_id: u64,
    ) -> Result<Vec<WorkflowVariable>, StorageError>;

    /// Keeps a run's trace in its slot (replacing what the slot held); one past its
    /// retention is not written.
    async fn put_workflow_run(&self, run: &WorkflowRun) -> Result<(), StorageError>;

    /// The guild's kept runs, every workflow's, within their retention.
    async fn workflow_runs(&self, guild_id: u64) -> Result<Vec<WorkflowRun>, StorageError>;
}

/// A workflow's runs whose traces are kept: a new run takes the oldest one's slot.
pub const WORKFLOW_RUNS_KEPT: u32 = 10;
/// The longest trace a stored run keeps, in bytes of JSON.
pub const WORKFLOW_TRACE_MAX_BYTES: usize = 16 * 1024;
/// The longest value a kept variable holds, in bytes of JSON.
pub const WORKFLOW_VARIABLE_MAX_BYTES: usize = 1_024;
/// Characters of a variable's name.
pub const WORKFLOW_VARIABLE_NAME_MAX_CHARS: usize = 32;
/// Variables one call may write.
pub const WORKFLOW_VARIABLES_PER_WRITE: usize = 1_000;

/// A variable a guild's workflows keep between runs: the server's own, or one per member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowVariable {
    pub guild_id: u64,
    /// The member it belongs to; `None` for a variable of the whole server.
    pub user_id: Option<u64>,
    pub name: String,
    /// The value, JSON (a number or a text), at most [`WORKFLOW_VARIABLE_MAX_BYTES`].
    pub value: String,
    /// Its retention (`Retention::workflow_variables`) counts from here.
    pub updated_at: Timestamp,
}

/// The trace of one real run of a workflow, kept for the dashboard's recent runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRun {
    pub guild_id: u64,
    pub workflow_id: u64,
    /// Its place among the workflow's kept runs, below [`WORKFLOW_RUNS_KEPT`]: written again,
    /// a slot holds the newer run.
    pub slot: u32,
    /// The member whose event started the run (the trace may quote them).
    pub user_id: Option<u64>,
    /// When the run started; its retention (`Retention::workflow_runs`) counts from here.
    pub at: Timestamp,
    /// The trace, JSON (the actors crate's), at most [`WORKFLOW_TRACE_MAX_BYTES`].
    pub trace: String,
}

/// Refuses a variable the store must not keep.
pub(crate) fn check_variable(variable: &WorkflowVariable) -> Result<(), StorageError> {
    let chars = variable.name.chars().count();
    if chars == 0 || chars > WORKFLOW_VARIABLE_NAME_MAX_CHARS {
        return Err(StorageError::Invalid(format!(
            "a variable's name has 1 to {WORKFLOW_VARIABLE_NAME_MAX_CHARS} characters"
        )));
    }
    if variable.value.len() > WORKFLOW_VARIABLE_MAX_BYTES {
        return Err(StorageError::Invalid(format!(
            "a variable's value has at most {WORKFLOW_VARIABLE_MAX_BYTES} bytes"
        )));
    }
    if variable.user_id == Some(crate::privacy::ERASED_USER) {
        return Err(StorageError::Invalid(
            "a member's variable needs the member's id".into(),
        ));
    }
    Ok(())
}

/// Refuses a batch of variables the store must not keep.
pub(crate) fn check_variables(variables: &[WorkflowVariable]) -> Result<(), StorageError> {
    if variables.len() > WORKFLOW_VARIABLES_PER_WRITE {
        return Err(StorageError::Invalid(format!(
            "at most {WORKFLOW_VARIABLES_PER_WRITE} variables are written at once"
        )));
    }
    variables.iter().try_for_each(check_variable)
}

/// Refuses a run the store must not keep.
pub(crate) fn check_run(run: &WorkflowRun) -> Result<(), StorageError> {
    if run.slot >= WORKFLOW_RUNS_KEPT {
        return Err(StorageError::Invalid(format!(
            "a run's slot is below {WORKFLOW_RUNS_KEPT}"
        )));
    }
    if run.trace.len() > WORKFLOW_TRACE_MAX_BYTES {
        return Err(StorageError::Invalid(format!(
            "a run's trace has at most {WORKFLOW_TRACE_MAX_BYTES} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn variable_expiry(variable: &WorkflowVariable, retention: &Retention) -> Timestamp {
    variable
        .updated_at
        .saturating_add(retention.workflow_variables)
}

pub(crate) fn run_expiry(run: &WorkflowRun, retention: &Retention) -> Timestamp {
    run.at.saturating_add(retention.workflow_runs)
}

/// The index entry of a variable (a server's names no user).
pub(crate) fn variable_ref(variable: &WorkflowVariable) -> RowRef {
    RowRef::WorkflowVariable {
        guild: variable.guild_id,
        user: variable.user_id.unwrap_or(0),
        name: variable.name.clone(),
    }
}

pub(crate) fn run_ref(run: &WorkflowRun) -> RowRef {
    RowRef::WorkflowRun {
        guild: run.guild_id,
        workflow: run.workflow_id,
        slot: run.slot,
    }
}
