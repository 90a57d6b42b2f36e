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
    /// The category the member chose on the panel, if it offered any.
    #[serde(default)]
    pub category: Option<String>,
    /// Retention (3 years) counts from here, for the ticket and its transcript.
    pub opened_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    /// When staff first claimed it (its first response).
    #[serde(default)]
    pub claimed_at: Option<Timestamp>,
    /// Its first response: the first message in it by someone other than the opener and
    /// bots, or the claim, whichever came first; known from its first close.
    #[serde(default)]
    pub first_response_at: Option<Timestamp>,
    /// Why it was closed, as the closer said (at most [`TICKET_REASON_MAX_CHARS`]).
    #[serde(default)]
    pub close_reason: Option<String>,
    /// Whether `channel_id` is a private thread or a channel of its own.
    #[serde(default)]
    pub place: TicketPlace,
}

/// Where a guild's tickets are opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketPlace {
    /// A private thread of the panel's channel.
    #[default]
    Thread,
    /// A text channel of its own, which only the opener, the staff roles and the bot see.
    Channel,
}

/// A guild's ticket settings, part of its [`GuildConfig`](crate::GuildConfig); the guild
/// actors check them when a config is saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TicketsConfig {
    /// Roles whose members act as staff on tickets, besides the guild's staff roles.
    pub staff_roles: Vec<u64>,
    /// The choices of the panel's category select; none, no select.
    pub categories: Vec<String>,
    /// Open tickets one member may have at once.
    pub max_open_per_member: u32,
    /// Hours without a message before the bot closes a ticket; `None`: the operator's period.
    pub idle_close_hours: Option<u32>,
    /// Threads or channels.
    pub place: TicketPlace,
    /// The category ticket channels are made in; `None`: outside any category.
    pub channel_category: Option<u64>,
}

impl TicketsConfig {
    /// The categories past what `plan` allows (the last ones): kept after a downgrade, but
    /// not offered on the panel until the guild has the plan again or removes others.
    pub fn over_plan(&self, plan: crate::Plan) -> &[String] {
        let allowed = plan.limits().ticket_categories as usize;
        &self.categories[allowed.min(self.categories.len())..]
    }

    /// The categories `plan` offers on the panel: the first ones, as many as it allows
    /// (their numbers on the panel are their places in the list, whatever the plan).
    pub fn within_plan(&self, plan: crate::Plan) -> &[String] {
        let over = self.over_plan(plan).len();
        &self.categories[..self.categories.len() - over]
    }
}

impl Default for TicketsConfig {
    fn default() -> Self {
        Self {
            staff_roles: Vec::new(),
            categories: Vec::new(),
            max_open_per_member: 1,
            idle_close_hours: None,
            place: TicketPlace::Thread,
            channel_category: None,
        }
    }
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
    /// The author's name when the line was copied (lines of older versions have none).
    #[serde(default)]
    pub author_name: String,
    pub at: Timestamp,
    /// The text (lines of older versions also hold their attachments and "(edited)" here).
    pub content: String,
    /// Attachments as links: the files stay on Discord's CDN.
    #[serde(default)]
    pub attachments: Vec<TranscriptAttachment>,
    /// When the message was last edited, if it was.
    #[serde(default)]
    pub edited_at: Option<Timestamp>,
    /// Its earlier texts, oldest first, as the bot saw them while the ticket was open.
    #[serde(default)]
    pub earlier_texts: Vec<String>,
    /// When it was deleted, if it was while the ticket was open (kept as last seen).
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
}

/// A file attached to a transcript's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptAttachment {
    pub filename: String,
    pub url: String,
}

/// Which of a guild's tickets a listing returns: newest first, below `before`, at most
/// `limit`, open or closed ones only, or one member's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketQuery {
    /// `Some(true)`: open tickets only; `Some(false)`: closed ones only.
    pub open: Option<bool>,
    pub opener_id: Option<u64>,
    /// Only tickets numbered below this one (the next page).
    pub before: Option<u64>,
    pub limit: usize,
}

impl TicketQuery {
    pub fn matches(&self, ticket: &Ticket) -> bool {
        self.open.is_none_or(|open| ticket.is_open() == open)
            && self.opener_id.is_none_or(|id| ticket.opener_id == id)
            && self.before.is_none_or(|before| ticket.ticket_id < before)
    }
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

    /// The guild's tickets that `query` selects, newest first (a scan of the guild's tickets
    /// from `before` down that stops at `limit` matches).
    async fn list_tickets(
        &self,
        guild_id: u64,
        query: &TicketQuery,
    ) -> Result<Vec<Ticket>, StorageError>;

    /// The transcript ordered by message id, whole: for exports and tests. Pages of it are
    /// [`transcript_page`](Self::transcript_page).
    async fn transcript(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Vec<TranscriptMessage>, StorageError>;

    /// At most `limit` lines of the transcript after message id `after` (0: from the
    /// start), ordered by message id: a long transcript is read page by page.
    async fn transcript_page(
        &self,
        guild_id: u64,
        ticket_id: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TranscriptMessage>, StorageError>;
}
