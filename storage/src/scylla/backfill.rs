//! The privacy backfill on ScyllaDB (see `crate::backfill`). A page is a number of
//! partitions in token order (a ticket's transcript, a guild's cases, a guild's timers),
//! each rewritten through the write path a row takes today: a transcript line and a case
//! get their refs and a `USING TTL` of what is left of their retention, counted from their
//! stored time (the database then expires them as if written with it); a timer gets its
//! parties' refs. The cursor is the last partition's token, stored after its page: a crash
//! in between walks the page again, which rewrites the same values.

use super::records::doc;
use super::{ScyllaStore, rust_id, ttl};
use crate::backfill::{RowOutcome, check_page};
use crate::moderation::case_expiry;
use crate::row_ref::RowRef;
use crate::timers::timer_ref;
use crate::{
    BackfillProgress, BackfillTable, ModerationRepo, StorageError, TicketRepo, TimerRepo, Timestamp,
};

impl ScyllaStore {
    pub(super) async fn backfill_page(
        &self,
        table: BackfillTable,
        page: usize,
        now: Timestamp,
    ) -> Result<BackfillProgress, StorageError> {
        check_page(page)?;
        let before = self
            .one_doc(
                "SELECT doc FROM {ks}.backfill_progress WHERE table_name = ?",
                "backfill_progress",
                (table.as_str(),),
            )
            .await?
            .unwrap_or_else(|| BackfillProgress::start(table));
        if before.done() {
            return Ok(before);
        }
        let mut progress = before.clone();
        let after: i64 = match progress.cursor.as_deref() {
            None => i64::MIN,
            Some(text) => text.parse().map_err(|_| {
                StorageError::Database(format!("unreadable backfill cursor {text:?}"))
            })?,
        };
        let walked = match table {
            BackfillTable::Transcripts => {
                self.backfill_transcripts(&mut progress, after, page)
                    .await?
            }
            BackfillTable::Cases => self.backfill_cases(&mut progress, after, page).await?,
            BackfillTable::Timers => self.backfill_timers(&mut progress, after, page).await?,
        };
        if walked < page {
            progress.finished_at = Some(now);
            // A timer's id may name a user: no cursor outlives the walk.
            progress.cursor = None;
        }
        self.execute(
            "INSERT INTO {ks}.backfill_progress (table_name, doc) VALUES (?, ?)",
            true,
            (table.as_str(), doc(&progress)),
        )
        .await?;
        crate::metrics::count_backfilled(&before, &progress);
        Ok(progress)
    }

    /// Each ticket's lines, written again with their refs and the ticket's TTL; the lines of
    /// a ticket past its retention (or gone) are deleted.
    async fn backfill_transcripts(
        &self,
        progress: &mut BackfillProgress,
        after: i64,
        page: usize,
    ) -> Result<usize, StorageError> {
        let partitions: Vec<(i64, i64, i64)> = self
            .select_limit(
                "SELECT DISTINCT guild_id, ticket_id, token(guild_id, ticket_id) \
                 FROM {ks}.transcripts WHERE token(guild_id, ticket_id) > ?",
                (after,),
                page,
            )
            .await?;
        for &(guild, ticket, token) in &partitions {
            let (guild, ticket) = (rust_id(guild), rust_id(ticket));
            let lines = self.transcript(guild, ticket).await?;
            let live = self.get_ticket(guild, ticket).await?.is_some_and(|t| {
                ttl(t.opened_at.saturating_add(self.retention().tickets)).is_some()
            });
            if live {
                self.append_transcript(&lines).await?;
            } else {
                for line in &lines {
                    let row = RowRef::Transcript {
                        guild,
                        ticket,
                        message: line.message_id,
                    };
                    self.remove_row(&row).await?;
                }
            }
            for _ in &lines {
                progress.count(if live {
                    RowOutcome::Indexed
                } else {
                    RowOutcome::Deleted
                });
            }
            progress.cursor = Some(token.to_string());
        }
        Ok(partitions.len())
    }

    /// Each guild's cases, written again with their refs and the TTL left of their
    /// retention; a case past it gets a TTL of one second (`case_ttl`), so the database
    /// drops it with its refs and target index row.
    async fn backfill_cases(
        &self,
        progress: &mut BackfillProgress,
        after: i64,
        page: usize,
    ) -> Result<usize, StorageError> {
        let partitions: Vec<(i64, i64)> = self
            .select_limit(
                "SELECT DISTINCT guild_id, token(guild_id) FROM {ks}.cases \
                 WHERE token(guild_id) > ?",
                (after,),
                page,
            )
            .await?;
        for &(guild, token) in &partitions {
            for case in self.cases(rust_id(guild), None, usize::MAX).await? {
                let live = ttl(case_expiry(&case, self.retention())).is_some();
                self.write_case(&case).await?;
                progress.count(if live {
                    RowOutcome::Indexed
                } else {
                    RowOutcome::Deleted
                });
            }
            progress.cursor = Some(token.to_string());
        }
        Ok(partitions.len())
    }

    /// Each guild's timers get the refs of the users they name and mention (timers have
    /// no retention: they are kept until they run).
    async fn backfill_timers(
        &self,
        progress: &mut BackfillProgress,
        after: i64,
        page: usize,
    ) -> Result<usize, StorageError> {
        let partitions: Vec<(i64, i64)> = self
            .select_limit(
                "SELECT DISTINCT guild_id, token(guild_id) FROM {ks}.timers_by_guild \
                 WHERE token(guild_id) > ?",
                (after,),
                page,
            )
            .await?;
        for &(guild, token) in &partitions {
            for timer in self.timers_of_guild(rust_id(guild)).await? {
                for user in timer.parties() {
                    self.add_ref(user, &timer_ref(&timer), None).await?;
                }
                progress.count(RowOutcome::Indexed);
            }
            progress.cursor = Some(token.to_string());
        }
        Ok(partitions.len())
    }
}
