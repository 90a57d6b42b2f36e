//! What workflows keep between runs on ScyllaDB: variables (one partition per guild) and the
//! traces of recent runs (a ring of slots per workflow), each row written in one batch with
//! its `user_refs` entry and the same TTL.

use scylla::value::CqlValue;

use super::records::doc;
use super::{ScyllaStore, Writes, db_id, ttl};
use crate::row_ref::RowRef;
use crate::workflows::{
    check_run, check_variables, run_expiry, run_ref, variable_expiry, variable_ref,
};
use crate::{StorageError, WorkflowRun, WorkflowVariable};

/// Statements in one batch at most: a guild's changes are few, but a batch stays small.
const BATCH_ROWS: usize = 50;

impl ScyllaStore {
    pub(super) async fn write_workflow_variables(
        &self,
        variables: &[WorkflowVariable],
    ) -> Result<(), StorageError> {
        check_variables(variables)?;
        // A variable's key names its member, so a write replaces the row and its one ref.
        for chunk in variables.chunks(BATCH_ROWS) {
            let mut writes = Writes::new();
            for variable in chunk {
                let Some(secs) = ttl(variable_expiry(variable, self.retention())) else {
                    continue;
                };
                writes.push(
                    self,
                    "INSERT INTO {ks}.workflow_variables (guild_id, user_id, name, doc) \
                     VALUES (?, ?, ?, ?) USING TTL ?",
                    vec![
                        CqlValue::BigInt(db_id(variable.guild_id)),
                        CqlValue::BigInt(db_id(variable.user_id.unwrap_or(0))),
                        CqlValue::Text(variable.name.clone()),
                        CqlValue::Text(doc(variable)),
                        CqlValue::Int(secs),
                    ],
                );
                if let Some(user) = variable.user_id {
                    self.push_ref(&mut writes, user, &variable_ref(variable), Some(secs));
                }
            }
            if !writes.is_empty() {
                self.apply(writes).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn read_workflow_variables(
        &self,
        guild: u64,
    ) -> Result<Vec<WorkflowVariable>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.workflow_variables WHERE guild_id = ?",
            "workflow_variables",
            (db_id(guild),),
        )
        .await
    }

    pub(super) async fn workflow_variable(
        &self,
        guild: u64,
        user: u64,
        name: &str,
    ) -> Result<Option<WorkflowVariable>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.workflow_variables WHERE guild_id = ? AND user_id = ? \
             AND name = ?",
            "workflow_variables",
            (db_id(guild), db_id(user), name),
        )
        .await
    }

    pub(super) async fn workflow_run(
        &self,
        guild: u64,
        workflow: u64,
        slot: u32,
    ) -> Result<Option<WorkflowRun>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.workflow_runs WHERE guild_id = ? AND workflow_id = ? \
             AND slot = ?",
            "workflow_runs",
            (db_id(guild), db_id(workflow), slot as i32),
        )
        .await
    }

    pub(super) async fn write_workflow_run(&self, run: &WorkflowRun) -> Result<(), StorageError> {
        check_run(run)?;
        let mut writes = Writes::new();
        // The slot held another member's run: its ref goes with it.
        if let Some(old) = self
            .workflow_run(run.guild_id, run.workflow_id, run.slot)
            .await?
            && let Some(user) = old.user_id
            && old.user_id != run.user_id
        {
            self.push_drop_ref(&mut writes, user, &run_ref(&old));
        }
        if let Some(secs) = ttl(run_expiry(run, self.retention())) {
            writes.push(
                self,
                "INSERT INTO {ks}.workflow_runs (guild_id, workflow_id, slot, doc) \
                 VALUES (?, ?, ?, ?) USING TTL ?",
                vec![
                    CqlValue::BigInt(db_id(run.guild_id)),
                    CqlValue::BigInt(db_id(run.workflow_id)),
                    CqlValue::Int(run.slot as i32),
                    CqlValue::Text(doc(run)),
                    CqlValue::Int(secs),
                ],
            );
            if let Some(user) = run.user_id {
                self.push_ref(&mut writes, user, &run_ref(run), Some(secs));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.apply(writes).await
    }

    pub(super) async fn read_workflow_runs(
        &self,
        guild: u64,
    ) -> Result<Vec<WorkflowRun>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.workflow_runs WHERE guild_id = ?",
            "workflow_runs",
            (db_id(guild),),
        )
        .await
    }

    /// Removes the kept runs of one workflow with their refs; how many.
    pub(super) async fn delete_workflow_runs(
        &self,
        guild: u64,
        workflow: u64,
    ) -> Result<u64, StorageError> {
        let runs: Vec<WorkflowRun> = self
            .docs(
                "SELECT doc FROM {ks}.workflow_runs WHERE guild_id = ? AND workflow_id = ?",
                "workflow_runs",
                (db_id(guild), db_id(workflow)),
            )
            .await?;
        for run in &runs {
            if let Some(user) = run.user_id {
                self.drop_ref(user, &run_ref(run)).await?;
            }
        }
        self.execute(
            "DELETE FROM {ks}.workflow_runs WHERE guild_id = ? AND workflow_id = ?",
            true,
            (db_id(guild), db_id(workflow)),
        )
        .await?;
        Ok(runs.len() as u64)
    }

    /// Removes every variable and kept run of the guild (the bot left it); how many.
    pub(super) async fn delete_guild_workflow_data(&self, guild: u64) -> Result<u64, StorageError> {
        let variables = self.read_workflow_variables(guild).await?;
        for variable in &variables {
            if let Some(user) = variable.user_id {
                self.drop_ref(user, &variable_ref(variable)).await?;
            }
        }
        self.execute(
            "DELETE FROM {ks}.workflow_variables WHERE guild_id = ?",
            true,
            (db_id(guild),),
        )
        .await?;
        let runs = self.read_workflow_runs(guild).await?;
        for run in &runs {
            if let Some(user) = run.user_id {
                self.drop_ref(user, &run_ref(run)).await?;
            }
        }
        self.execute(
            "DELETE FROM {ks}.workflow_runs WHERE guild_id = ?",
            true,
            (db_id(guild),),
        )
        .await?;
        Ok((variables.len() + runs.len()) as u64)
    }

    /// Removes one variable or kept run named by an index entry, with its ref; how many.
    pub(super) async fn remove_workflow_row(&self, row: &RowRef) -> Result<u64, StorageError> {
        match row {
            RowRef::WorkflowVariable { guild, user, name } => {
                let Some(old) = self.workflow_variable(*guild, *user, name).await? else {
                    return Ok(0);
                };
                self.execute(
                    "DELETE FROM {ks}.workflow_variables WHERE guild_id = ? AND user_id = ? \
                     AND name = ?",
                    true,
                    (db_id(*guild), db_id(*user), name.as_str()),
                )
                .await?;
                if let Some(user) = old.user_id {
                    self.drop_ref(user, row).await?;
                }
                Ok(1)
            }
            RowRef::WorkflowRun {
                guild,
                workflow,
                slot,
            } => {
                let Some(old) = self.workflow_run(*guild, *workflow, *slot).await? else {
                    return Ok(0);
                };
                self.execute(
                    "DELETE FROM {ks}.workflow_runs WHERE guild_id = ? AND workflow_id = ? \
                     AND slot = ?",
                    true,
                    (db_id(*guild), db_id(*workflow), *slot as i32),
                )
                .await?;
                if let Some(user) = old.user_id {
                    self.drop_ref(user, row).await?;
                }
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}
