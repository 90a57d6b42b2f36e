//! The privacy backfill on ScyllaDB (see `crate::backfill`). A page is a number of
//! partitions in token order (a ticket's transcript, a guild's cases, a guild's timers).
//! A transcript line or a case gets its users' refs, then is written again `USING TTL` of
//! what is left of its retention, counted from its stored time (a ticket's opening, a
//! case's action), so the database expires it as if it had been written with it; a timer
//! gets its parties' refs. The rewrite is a compare-and-set on the document read: a row
//! changed meanwhile (an erasure, a reason edit) went through its own write path, which
//! gave it its entries, and is never put back; the refs this walk added for users the
//! current row no longer names are dropped again. The cursor is the last partition's
//! token, stored after its page: a crash in between walks the page again, which rewrites
//! the same values.

use super::records::{doc, parse};
use super::{ScyllaStore, db_id, parse_lwt, rust_id, ttl};
use crate::backfill::{RowOutcome, check_page};
use crate::moderation::{case_expiry, case_ref, case_users};
use crate::premium::{event_expiry, event_ref};
use crate::row_ref::RowRef;
use crate::timers::timer_ref;
use crate::{
    BackfillProgress, BackfillTable, Case, InboxEvent, ModerationRepo, StorageError, TimerRepo,
    Timestamp, TranscriptMessage,
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
            Some(text) => serde_json::from_str(text)
                .map_err(|err| StorageError::corrupt("backfill cursor", err))?,
        };
        let walked = match table {
            BackfillTable::Transcripts => {
                self.backfill_transcripts(&mut progress, after, page)
                    .await?
            }
            BackfillTable::Cases => self.backfill_cases(&mut progress, after, page).await?,
            BackfillTable::Timers => self.backfill_timers(&mut progress, after, page).await?,
            BackfillTable::BillingInbox => {
                self.backfill_billing_inbox(&mut progress, after, page)
                    .await?
            }
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

    /// Each ticket's lines get their refs and the ticket's TTL; the lines of a ticket past
    /// its retention (or gone) are deleted.
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
            let lines: Vec<(String,)> = self
                .select(
                    "SELECT doc FROM {ks}.transcripts WHERE guild_id = ? AND ticket_id = ?",
                    (guild, ticket),
                )
                .await?;
            let (guild, ticket) = (rust_id(guild), rust_id(ticket));
            let secs = self
                .get_ticket(guild, ticket)
                .await?
                .and_then(|t| ttl(t.opened_at.saturating_add(self.retention().tickets)));
            for (text,) in &lines {
                let line: TranscriptMessage = parse("transcripts", text)?;
                let row = RowRef::Transcript {
                    guild,
                    ticket,
                    message: line.message_id,
                };
                let Some(secs) = secs else {
                    self.remove_row(&row).await?;
                    progress.count(RowOutcome::Deleted);
                    continue;
                };
                for user in line.users() {
                    self.add_ref(user, &row, Some(secs)).await?;
                }
                let kept = parse_lwt(
                    self.execute(
                        "UPDATE {ks}.transcripts USING TTL ? SET doc = ? WHERE guild_id = ? \
                         AND ticket_id = ? AND message_id = ? IF doc = ?",
                        false,
                        (
                            secs,
                            text.as_str(),
                            db_id(guild),
                            db_id(ticket),
                            db_id(line.message_id),
                            text.as_str(),
                        ),
                    )
                    .await?,
                )?
                .applied;
                if kept {
                    progress.count(RowOutcome::Indexed);
                } else {
                    let now = self.transcript_message(guild, ticket, line.message_id);
                    let users = now.await?.map(|l| l.users()).unwrap_or_default();
                    self.drop_refs_not_of(&row, &line.users(), &users).await?;
                    progress.count(RowOutcome::Unchanged);
                }
            }
            progress.cursor = Some(token.to_string());
        }
        Ok(partitions.len())
    }

    /// Each guild's cases get their refs and target index row and the TTL left of their
    /// retention; a case past it gets a TTL of one second (`case_ttl`), so the database
    /// drops it with its refs and index row.
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
            let cases: Vec<(String,)> = self
                .select("SELECT doc FROM {ks}.cases WHERE guild_id = ?", (guild,))
                .await?;
            for (text,) in &cases {
                let case: Case = parse("cases", text)?;
                let live = ttl(case_expiry(&case, self.retention())).is_some();
                let secs = self.case_ttl(&case);
                self.write_case_index(&case, secs).await?;
                let kept = parse_lwt(
                    self.execute(
                        "UPDATE {ks}.cases USING TTL ? SET doc = ? WHERE guild_id = ? \
                         AND number = ? IF doc = ?",
                        false,
                        (
                            secs,
                            text.as_str(),
                            guild,
                            db_id(case.number),
                            text.as_str(),
                        ),
                    )
                    .await?,
                )?
                .applied;
                if !kept {
                    let now = self.case(case.guild_id, case.number).await?;
                    let users = now.as_ref().map(case_users).unwrap_or_default();
                    self.drop_refs_not_of(&case_ref(&case), &case_users(&case), &users)
                        .await?;
                    let target = now.and_then(|c| c.target_id);
                    if let Some(old) = case.target_id.filter(|&t| Some(t) != target) {
                        self.execute(
                            "DELETE FROM {ks}.cases_by_target WHERE guild_id = ? \
                             AND target_id = ? AND number = ?",
                            true,
                            (guild, db_id(old), db_id(case.number)),
                        )
                        .await?;
                    }
                }
                progress.count(match (live, kept) {
                    (false, _) => RowOutcome::Deleted,
                    (true, true) => RowOutcome::Indexed,
                    (true, false) => RowOutcome::Unchanged,
                });
            }
            progress.cursor = Some(token.to_string());
        }
        Ok(partitions.len())
    }

    /// Each guild's timers get the refs of the users they name and mention (timers have
    /// no retention: they are kept until they run). A timer changed or gone meanwhile (an
    /// erasure, a completion) keeps only the refs its current parties justify.
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
                let row = timer_ref(&timer);
                for user in timer.parties() {
                    self.add_ref(user, &row, None).await?;
                }
                let now = self.timer(timer.guild_id, &timer.id).await?;
                let parties = now.map(|t| t.parties()).unwrap_or_default();
                self.drop_refs_not_of(&row, &timer.parties(), &parties)
                    .await?;
                progress.count(RowOutcome::Indexed);
            }
            progress.cursor = Some(token.to_string());
        }
        Ok(partitions.len())
    }

    /// Events get their user's ref; a processed one is written again with the TTL left of
    /// `billing_inbox_days` from its receipt, or removed past it. A pending one waits for
    /// processing without a TTL, as written.
    async fn backfill_billing_inbox(
        &self,
        progress: &mut BackfillProgress,
        after: i64,
        page: usize,
    ) -> Result<usize, StorageError> {
        let rows: Vec<(i64, String)> = self
            .select_limit(
                "SELECT token(event_id), doc FROM {ks}.billing_inbox WHERE token(event_id) > ?",
                (after,),
                page,
            )
            .await?;
        for (token, text) in &rows {
            let event: InboxEvent = parse("billing_inbox", text)?;
            let row = event_ref(&event);
            let users: Vec<u64> = event.user_id.into_iter().collect();
            let secs = match event.outcome {
                None => None,
                Some(_) => match ttl(event_expiry(&event, self.retention())) {
                    Some(secs) => Some(secs),
                    None => {
                        self.remove_event(&event.event_id).await?;
                        progress.count(RowOutcome::Deleted);
                        progress.cursor = Some(token.to_string());
                        continue;
                    }
                },
            };
            for &user in &users {
                self.add_ref(user, &row, secs).await?;
            }
            // A pending event is not rewritten: its refs are checked against it below.
            let kept = match secs {
                None => false,
                Some(secs) => {
                    parse_lwt(
                        self.execute(
                            "UPDATE {ks}.billing_inbox USING TTL ? SET doc = ? \
                             WHERE event_id = ? IF doc = ?",
                            false,
                            (secs, text.as_str(), event.event_id.as_str(), text.as_str()),
                        )
                        .await?,
                    )?
                    .applied
                }
            };
            if !kept {
                let now = self.inbox_doc(&event.event_id).await?;
                let current: Vec<u64> = now.and_then(|e| e.user_id).into_iter().collect();
                self.drop_refs_not_of(&row, &users, &current).await?;
            }
            progress.count(if kept || secs.is_none() {
                RowOutcome::Indexed
            } else {
                RowOutcome::Unchanged
            });
            progress.cursor = Some(token.to_string());
        }
        Ok(rows.len())
    }

    /// Drops the refs to `row` the walk `added` that its current users no longer justify.
    async fn drop_refs_not_of(
        &self,
        row: &RowRef,
        added: &[u64],
        current: &[u64],
    ) -> Result<(), StorageError> {
        for user in added.iter().filter(|user| !current.contains(user)) {
            self.drop_ref(*user, row).await?;
        }
        Ok(())
    }
}
