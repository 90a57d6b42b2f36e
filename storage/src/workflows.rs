use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

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

    /// Deletes one workflow; true if it existed.
    async fn delete_workflow(&self, guild_id: u64, workflow_id: u64) -> Result<bool, StorageError>;
}
