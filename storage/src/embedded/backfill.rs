//! The privacy backfill on redb (see `crate::backfill`): one write transaction per page,
//! the cursor committed with the entries the page added, so a crash repeats nothing and
//! loses nothing.

use std::ops::Bound;

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::{Serialize, de::DeserializeOwned};

use super::moderation::{CASES, remove_case};
use super::premium::{INBOX, event_index, remove_event};
use super::records::ticket_expiry;
use super::rights::remove_row;
use super::timers::TIMERS;
use super::{Indexes, RowRef, TICKETS, TRANSCRIPTS, e, from_json, open, to_json};
use crate::backfill::{RowOutcome, check_page};
use crate::moderation::{case_expiry, case_ref, case_users};
use crate::premium::event_ref;
use crate::timers::timer_ref;
use crate::{
    BackfillProgress, BackfillTable, Case, EmbeddedStore, InboxEvent, Retention, StorageError,
    Ticket, Timer, Timestamp, TranscriptMessage,
};

/// Table name → [`BackfillProgress`].
pub(super) const BACKFILL: TableDefinition<&str, &[u8]> = TableDefinition::new("backfill_progress");

impl EmbeddedStore {
    pub(super) async fn backfill_page(
        &self,
        table: BackfillTable,
        page: usize,
        now: Timestamp,
    ) -> Result<BackfillProgress, StorageError> {
        check_page(page)?;
        let (before, after) = self
            .write(move |txn, retention| {
                let before = stored(txn, table)?;
                let mut progress = before.clone();
                if progress.done() {
                    return Ok((before, progress));
                }
                let walk = Walk {
                    txn,
                    page,
                    now,
                    retention,
                };
                let walked = match table {
                    BackfillTable::Transcripts => walk.transcripts(&mut progress)?,
                    BackfillTable::Cases => walk.cases(&mut progress)?,
                    BackfillTable::Timers => walk.timers(&mut progress)?,
                    BackfillTable::BillingInbox => walk.billing_inbox(&mut progress)?,
                };
                if walked < page {
                    progress.finished_at = Some(now);
                    // A timer's id may name a user: no cursor outlives the walk.
                    progress.cursor = None;
                }
                open(txn, BACKFILL)?
                    .insert(table.as_str(), to_json(&progress).as_slice())
                    .map_err(e)?;
                Ok((before, progress))
            })
            .await?;
        crate::metrics::count_backfilled(&before, &after);
        Ok(after)
    }
}

fn stored(txn: &WriteTransaction, table: BackfillTable) -> Result<BackfillProgress, StorageError> {
    let row = open(txn, BACKFILL)?
        .get(table.as_str())
        .map_err(e)?
        .map(|v| from_json("backfill_progress", v.value()))
        .transpose()?;
    Ok(row.unwrap_or_else(|| BackfillProgress::start(table)))
}

/// The key the cursor names: where the previous page stopped.
fn cursor<K: DeserializeOwned>(progress: &BackfillProgress) -> Result<Option<K>, StorageError> {
    progress
        .cursor
        .as_deref()
        .map(|text| {
            serde_json::from_str(text).map_err(|err| StorageError::corrupt("backfill cursor", err))
        })
        .transpose()
}

fn set_cursor(progress: &mut BackfillProgress, key: &impl Serialize) {
    progress.cursor = Some(serde_json::to_string(key).expect("keys serialise"));
}

/// One page of one table, inside its write transaction.
struct Walk<'a> {
    txn: &'a WriteTransaction,
    page: usize,
    now: Timestamp,
    retention: &'a Retention,
}

impl Walk<'_> {
    /// Gives a live row its entries (`Indexed` when one was missing), or deletes it with
    /// `remove` when its retention ended at or before now, as the sweeper would.
    fn settle(
        &self,
        row: &RowRef,
        users: &[u64],
        expires: Option<Timestamp>,
        remove: impl FnOnce() -> Result<(), StorageError>,
    ) -> Result<RowOutcome, StorageError> {
        if expires.is_some_and(|at| at <= self.now) {
            remove()?;
            return Ok(RowOutcome::Deleted);
        }
        Ok(if Indexes::open(self.txn)?.add(row, users, expires)? {
            RowOutcome::Indexed
        } else {
            RowOutcome::Unchanged
        })
    }

    /// The values of the next page of `def`'s rows after `after`.
    fn page_of<'k, T: DeserializeOwned, K: redb::Key + 'static>(
        &self,
        def: TableDefinition<K, &'static [u8]>,
        after: Option<K::SelfType<'k>>,
    ) -> Result<Vec<T>, StorageError> {
        let table = open(self.txn, def)?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rows = Vec::new();
        for item in table
            .range::<K::SelfType<'k>>((start, Bound::Unbounded))
            .map_err(e)?
            .take(self.page)
        {
            let (_, value) = item.map_err(e)?;
            rows.push(from_json(def.name(), value.value())?);
        }
        Ok(rows)
    }

    /// Lines get their author's and mentioned users' refs and their ticket's expiry; a line
    /// whose ticket is past retention (or gone) goes.
    fn transcripts(&self, progress: &mut BackfillProgress) -> Result<usize, StorageError> {
        let after: Option<(u64, u64, u64)> = cursor(progress)?;
        let lines: Vec<TranscriptMessage> = self.page_of(TRANSCRIPTS, after)?;
        for line in &lines {
            let row = RowRef::Transcript {
                guild: line.guild_id,
                ticket: line.ticket_id,
                message: line.message_id,
            };
            let ticket: Option<Ticket> = open(self.txn, TICKETS)?
                .get((line.guild_id, line.ticket_id))
                .map_err(e)?
                .map(|v| from_json("tickets", v.value()))
                .transpose()?;
            // Without its ticket a line's retention is unknown: it outlived the ticket.
            let expires =
                Some(ticket.map_or(Timestamp(0), |t| ticket_expiry(t.opened_at, self.retention)));
            let outcome = self.settle(&row, &line.users(), expires, || {
                remove_row(self.txn, &row, self.retention).map(drop)
            })?;
            progress.count(outcome);
            set_cursor(progress, &(line.guild_id, line.ticket_id, line.message_id));
        }
        Ok(lines.len())
    }

    /// Cases get their moderator's and target's refs and their `cases_days` expiry.
    fn cases(&self, progress: &mut BackfillProgress) -> Result<usize, StorageError> {
        let after: Option<(u64, u64)> = cursor(progress)?;
        let cases: Vec<Case> = self.page_of(CASES, after)?;
        for case in &cases {
            let expires = Some(case_expiry(case, self.retention));
            let outcome = self.settle(&case_ref(case), &case_users(case), expires, || {
                remove_case(self.txn, case.guild_id, case.number, self.retention).map(drop)
            })?;
            progress.count(outcome);
            set_cursor(progress, &(case.guild_id, case.number));
        }
        Ok(cases.len())
    }

    /// Timers get the refs of the users they name and mention; they are kept until they
    /// run, so none is past a retention.
    fn timers(&self, progress: &mut BackfillProgress) -> Result<usize, StorageError> {
        let after: Option<(u32, u64, u64, String)> = cursor(progress)?;
        let timers: Vec<Timer> = {
            let after = after
                .as_ref()
                .map(|(s, d, g, id)| (*s, *d, *g, id.as_str()));
            self.page_of(TIMERS, after)?
        };
        for timer in &timers {
            let outcome = self.settle(&timer_ref(timer), &timer.parties(), None, || Ok(()))?;
            progress.count(outcome);
            set_cursor(
                progress,
                &(timer.shard_id, timer.due.0, timer.guild_id, &timer.id),
            );
        }
        Ok(timers.len())
    }

    /// Events get their user's ref and, once processed, their `billing_inbox_days` expiry;
    /// a processed event past it goes. A pending one waits for processing, as written.
    fn billing_inbox(&self, progress: &mut BackfillProgress) -> Result<usize, StorageError> {
        let after: Option<String> = cursor(progress)?;
        let events: Vec<InboxEvent> = self.page_of(INBOX, after.as_deref())?;
        for event in &events {
            let (users, expires) = event_index(event, self.retention);
            let outcome = self.settle(&event_ref(event), &users, expires, || {
                remove_event(self.txn, &event.event_id, self.retention).map(drop)
            })?;
            progress.count(outcome);
            set_cursor(progress, &event.event_id);
        }
        Ok(events.len())
    }
}
