//! What workflows keep between runs on redb: their variables and the traces of their recent
//! runs, each row indexed by its member (if any) and by its expiry.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{EmbeddedStore, e, from_json, index, open, open_read, to_json, unindex};
use crate::workflows::{
    check_run, check_variables, run_expiry, run_ref, variable_expiry, variable_ref,
};
use crate::{Retention, StorageError, Timestamp, WorkflowRun, WorkflowVariable};

/// (guild id, user id or 0 for the server's, name) → [`WorkflowVariable`].
pub(super) const WORKFLOW_VARIABLES: TableDefinition<(u64, u64, &str), &[u8]> =
    TableDefinition::new("workflow_variables");
/// (guild id, workflow id, slot) → [`WorkflowRun`].
pub(super) const WORKFLOW_RUNS: TableDefinition<(u64, u64, u32), &[u8]> =
    TableDefinition::new("workflow_runs");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StorageError> {
    open(txn, WORKFLOW_VARIABLES)?;
    open(txn, WORKFLOW_RUNS)?;
    Ok(())
}

/// Removes one variable and its index entries; whether it was there.
pub(super) fn remove_variable(
    txn: &WriteTransaction,
    guild: u64,
    user: u64,
    name: &str,
    retention: &Retention,
) -> Result<bool, StorageError> {
    let old: Option<WorkflowVariable> = open(txn, WORKFLOW_VARIABLES)?
        .remove((guild, user, name))
        .map_err(e)?
        .map(|v| from_json("workflow_variables", v.value()))
        .transpose()?;
    let Some(old) = old else { return Ok(false) };
    let expires = variable_expiry(&old, retention);
    unindex(
        txn,
        &variable_ref(&old),
        old.user_id.as_slice(),
        Some(expires),
    )?;
    Ok(true)
}

/// Removes one kept run and its index entries; whether it was there.
pub(super) fn remove_run(
    txn: &WriteTransaction,
    guild: u64,
    workflow: u64,
    slot: u32,
    retention: &Retention,
) -> Result<bool, StorageError> {
    let old: Option<WorkflowRun> = open(txn, WORKFLOW_RUNS)?
        .remove((guild, workflow, slot))
        .map_err(e)?
        .map(|v| from_json("workflow_runs", v.value()))
        .transpose()?;
    let Some(old) = old else { return Ok(false) };
    let expires = run_expiry(&old, retention);
    unindex(txn, &run_ref(&old), old.user_id.as_slice(), Some(expires))?;
    Ok(true)
}

/// Removes the kept runs of one workflow (`Some`) or of every workflow of the guild; how many.
pub(super) fn delete_runs(
    txn: &WriteTransaction,
    guild: u64,
    workflow: Option<u64>,
    retention: &Retention,
) -> Result<u64, StorageError> {
    let (first, last) = workflow.map_or((0, u64::MAX), |w| (w, w));
    let keys: Vec<(u64, u32)> = {
        let table = open(txn, WORKFLOW_RUNS)?;
        let mut keys = Vec::new();
        for item in table
            .range((guild, first, 0)..=(guild, last, u32::MAX))
            .map_err(e)?
        {
            let (_, workflow, slot) = item.map_err(e)?.0.value();
            keys.push((workflow, slot));
        }
        keys
    };
    for &(workflow, slot) in &keys {
        remove_run(txn, guild, workflow, slot, retention)?;
    }
    Ok(keys.len() as u64)
}

/// Removes every variable and kept run of the guild (the bot left it); how many.
pub(super) fn delete_guild_data(
    txn: &WriteTransaction,
    guild: u64,
    retention: &Retention,
) -> Result<u64, StorageError> {
    let keys: Vec<(u64, String)> = {
        let table = open(txn, WORKFLOW_VARIABLES)?;
        let mut keys = Vec::new();
        for item in table
            .range((guild, 0, "")..=(guild, u64::MAX, "\u{10FFFF}"))
            .map_err(e)?
        {
            let (key, _) = item.map_err(e)?;
            let (_, user, name) = key.value();
            keys.push((user, name.to_owned()));
        }
        keys
    };
    for (user, name) in &keys {
        remove_variable(txn, guild, *user, name, retention)?;
    }
    Ok(keys.len() as u64 + delete_runs(txn, guild, None, retention)?)
}

/// Every stored variable and run, for the consistency check.
pub(super) fn all(
    txn: &redb::ReadTransaction,
) -> Result<(Vec<WorkflowVariable>, Vec<WorkflowRun>), StorageError> {
    let mut variables = Vec::new();
    for item in open_read(txn, WORKFLOW_VARIABLES)?.iter().map_err(e)? {
        variables.push(from_json("workflow_variables", item.map_err(e)?.1.value())?);
    }
    let mut runs = Vec::new();
    for item in open_read(txn, WORKFLOW_RUNS)?.iter().map_err(e)? {
        runs.push(from_json("workflow_runs", item.map_err(e)?.1.value())?);
    }
    Ok((variables, runs))
}

impl EmbeddedStore {
    pub(super) async fn write_workflow_variables(
        &self,
        variables: &[WorkflowVariable],
    ) -> Result<(), StorageError> {
        check_variables(variables)?;
        let variables = variables.to_vec();
        self.write(move |txn, retention| {
            let now = Timestamp::now();
            for variable in &variables {
                let user = variable.user_id.unwrap_or(0);
                remove_variable(txn, variable.guild_id, user, &variable.name, retention)?;
                let expires = variable_expiry(variable, retention);
                if expires <= now {
                    continue;
                }
                open(txn, WORKFLOW_VARIABLES)?
                    .insert(
                        (variable.guild_id, user, variable.name.as_str()),
                        to_json(variable).as_slice(),
                    )
                    .map_err(e)?;
                let row = variable_ref(variable);
                index(txn, &row, variable.user_id.as_slice(), Some(expires))?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn read_workflow_variables(
        &self,
        guild: u64,
    ) -> Result<Vec<WorkflowVariable>, StorageError> {
        self.read(move |txn, retention| {
            let now = Timestamp::now();
            let mut out = Vec::new();
            for item in open_read(txn, WORKFLOW_VARIABLES)?
                .range((guild, 0, "")..=(guild, u64::MAX, "\u{10FFFF}"))
                .map_err(e)?
            {
                let variable: WorkflowVariable =
                    from_json("workflow_variables", item.map_err(e)?.1.value())?;
                // Past retention but not swept yet: gone as far as readers know.
                if variable_expiry(&variable, retention) > now {
                    out.push(variable);
                }
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn write_workflow_run(&self, run: &WorkflowRun) -> Result<(), StorageError> {
        check_run(run)?;
        let run = run.clone();
        self.write(move |txn, retention| {
            remove_run(txn, run.guild_id, run.workflow_id, run.slot, retention)?;
            let expires = run_expiry(&run, retention);
            if expires <= Timestamp::now() {
                return Ok(());
            }
            open(txn, WORKFLOW_RUNS)?
                .insert(
                    (run.guild_id, run.workflow_id, run.slot),
                    to_json(&run).as_slice(),
                )
                .map_err(e)?;
            index(txn, &run_ref(&run), run.user_id.as_slice(), Some(expires))
        })
        .await
    }

    pub(super) async fn read_workflow_runs(
        &self,
        guild: u64,
    ) -> Result<Vec<WorkflowRun>, StorageError> {
        self.read(move |txn, retention| {
            let now = Timestamp::now();
            let mut out = Vec::new();
            for item in open_read(txn, WORKFLOW_RUNS)?
                .range((guild, 0, 0)..=(guild, u64::MAX, u32::MAX))
                .map_err(e)?
            {
                let run: WorkflowRun = from_json("workflow_runs", item.map_err(e)?.1.value())?;
                if run_expiry(&run, retention) > now {
                    out.push(run);
                }
            }
            Ok(out)
        })
        .await
    }
}
