use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// A support ticket opened by a member in a guild.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub guild_id: u64,
    pub ticket_id: u64,
    pub opener_id: u64,
    pub channel_id: u64,
    pub subject: String,
    /// Retention (3 years) counts from here, for the ticket and its transcript.
    pub opened_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

/// One message of a ticket's transcript.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptMessage {
    pub guild_id: u64,
    pub ticket_id: u64,
    /// The Discord message id: orders the transcript and makes appends idempotent.
    pub message_id: u64,
    pub author_id: u64,
    pub at: Timestamp,
    pub content: String,
}

/// Support tickets and their transcripts.
#[async_trait]
pub trait TicketRepo: Send + Sync + 'static {
    /// Creates or replaces the ticket.
    async fn put_ticket(&self, ticket: &Ticket) -> Result<(), StorageError>;

    async fn ticket(&self, guild_id: u64, ticket_id: u64) -> Result<Option<Ticket>, StorageError>;

    /// The guild's tickets ordered by id.
    async fn tickets(&self, guild_id: u64) -> Result<Vec<Ticket>, StorageError>;

    /// Appends messages to the transcripts of their tickets, which must exist
    /// ([`StorageError::NotFound`] otherwise); they expire with their ticket.
    async fn append_transcript(&self, messages: &[TranscriptMessage]) -> Result<(), StorageError>;

    /// The transcript ordered by message id.
    async fn transcript(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Vec<TranscriptMessage>, StorageError>;
}
