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
    /// When staff first claimed it (its first response).
    #[serde(default)]
    pub claimed_at: Option<Timestamp>,
    /// Why it was closed, as the closer said (at most [`TICKET_REASON_MAX_CHARS`]).
    #[serde(default)]
    pub close_reason: Option<String>,
}

/// Longest close reason a ticket keeps, in characters.
pub const TICKET_REASON_MAX_CHARS: usize = 512;

impl Ticket {
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
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

    /// Stores `ticket` under its guild's next number and returns the number
    /// (`ticket.ticket_id` is ignored), unless its opener already has `max_open` tickets open
    /// in the guild: then `None`, and nothing is stored. Two callers never get the same
    /// number, whichever node they run on.
    async fn open_ticket(
        &self,
        ticket: &Ticket,
        max_open: u32,
    ) -> Result<Option<u64>, StorageError>;

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
