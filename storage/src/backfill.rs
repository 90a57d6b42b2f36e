//! The privacy backfill: rows written before their table's user index, mention index or
//! retention existed get what the write path gives a row today, so an export or an erasure
//! finds them and they expire.
//!
//! Which tables: those whose indexing changed after rows were stored (every other table
//! was indexed and expiring from its first row): ticket transcript lines (mentions
//! indexed since `mentioned_users`), moderation cases (refs and `cases_days` retention
//! added after cases existed), durable timers (users and mentions indexed later) and the
//! payment webhook inbox (its user and `billing_inbox_days` added after events existed:
//! an old event's user, only in a body dropped at processing, cannot be recovered, but its
//! expiry can).
//!
//! A table is walked in pages from a cursor stored with its progress, so the walk resumes
//! where it stopped after a crash or a restart of the command, and a finished table is
//! never walked again. Each row is given the index entries its write would give it (the
//! same functions: [`TranscriptMessage::users`](crate::TranscriptMessage),
//! [`Timer::parties`](crate::Timer), `case_users`) and the expiry its retention class
//! gives from its stored time; a row already past it is deleted as the sweeper would.
//! Adding an entry that exists changes nothing, so a page walked twice (a crash between a
//! ScyllaDB page and its cursor) is harmless.

use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// Most rows (redb) or partitions (ScyllaDB: a ticket's transcript, a guild's cases or
/// timers, an inbox event) one backfill call walks: bounds the time a redb write transaction holds the
/// writer, and the load one call puts on a live cluster.
pub const BACKFILL_PAGE_MAX: usize = 10_000;

/// A table the backfill walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillTable {
    Transcripts,
    Cases,
    Timers,
    BillingInbox,
}

impl BackfillTable {
    pub const ALL: [Self; 4] = [
        Self::Transcripts,
        Self::Cases,
        Self::Timers,
        Self::BillingInbox,
    ];

    /// The table's name, as the `table` label of the backfill metric and the CLI say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transcripts => "transcripts",
            Self::Cases => "cases",
            Self::Timers => "timers",
            Self::BillingInbox => "billing_inbox",
        }
    }
}

/// Where the backfill of one table stands: stored with the table's cursor, so a second run
/// continues (or, once `done`, does nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillProgress {
    pub table: BackfillTable,
    /// After which row (redb: its key, as JSON) or partition (ScyllaDB: its token) the next
    /// page starts; `None` before the first page.
    pub cursor: Option<String>,
    /// Rows walked so far.
    pub rows: u64,
    /// Rows that were given index entries or an expiry (redb: those that lacked one;
    /// ScyllaDB, which cannot tell without reading every ref: every row written again, not
    /// one that changed since it was read).
    pub indexed: u64,
    /// Rows deleted because they were past their retention.
    pub deleted: u64,
    /// When the last row was walked; `None` while rows are left.
    pub finished_at: Option<Timestamp>,
}

impl BackfillProgress {
    pub(crate) fn start(table: BackfillTable) -> Self {
        Self {
            table,
            cursor: None,
            rows: 0,
            indexed: 0,
            deleted: 0,
            finished_at: None,
        }
    }

    pub fn done(&self) -> bool {
        self.finished_at.is_some()
    }
}

/// Refuses a page size of 0 or above [`BACKFILL_PAGE_MAX`].
pub(crate) fn check_page(page: usize) -> Result<(), StorageError> {
    if page == 0 || page > BACKFILL_PAGE_MAX {
        return Err(StorageError::Invalid(format!(
            "a backfill page is 1 to {BACKFILL_PAGE_MAX} rows, not {page}"
        )));
    }
    Ok(())
}

/// One row's outcome in a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowOutcome {
    /// It had every entry it should.
    Unchanged,
    /// It was given entries or an expiry.
    Indexed,
    /// It was past its retention and is gone.
    Deleted,
}

impl RowOutcome {
    pub(crate) const ALL: [Self; 3] = [Self::Unchanged, Self::Indexed, Self::Deleted];
}

impl BackfillProgress {
    /// Counts one walked row (the metric counts a page once it is stored).
    pub(crate) fn count(&mut self, outcome: RowOutcome) {
        self.rows += 1;
        match outcome {
            RowOutcome::Unchanged => {}
            RowOutcome::Indexed => self.indexed += 1,
            RowOutcome::Deleted => self.deleted += 1,
        }
    }
}
