//! Interactions the simulator issued, so callbacks and follow-ups can be
//! checked against what Discord would accept: one initial response within
//! the 3 s deadline, webhook routes while the 15 min token lives, and for
//! each interaction whether it was answered in time, late or never.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::clock::Clock;

/// Discord's first-response deadline.
pub(crate) const RESPONSE_DEADLINE: Duration = Duration::from_secs(3);
/// How long an interaction token (its webhook) stays valid.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// What became of an interaction's first response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionOutcome {
    /// Not answered yet, and the deadline has not passed.
    Pending,
    /// The callback arrived within the deadline.
    InTime,
    /// The first callback arrived after the deadline and got 10062.
    Late,
    /// The deadline passed without any callback.
    Never,
}

/// One issued interaction, in the ledger's `interactions`.
#[derive(Clone, Debug, Serialize)]
pub struct InteractionRecord {
    pub id: u64,
    pub guild_id: u64,
    pub channel_id: u64,
    /// Milliseconds since the simulator started (unscaled).
    pub issued_at_ms: u64,
    /// When the first callback arrived, in time or not.
    pub answered_at_ms: Option<u64>,
    pub outcome: InteractionOutcome,
}

#[derive(Debug)]
struct Issued {
    token: String,
    issued_at: Instant,
    record: InteractionRecord,
}

/// Outcome of an interaction callback.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Accepted,
    /// Discord allows one initial response per interaction (40060).
    AlreadyAnswered,
    /// No such interaction, the token does not match, or the deadline
    /// passed (10062).
    Unknown,
}

/// Where a webhook token's interaction happened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub(crate) channel_id: u64,
    pub(crate) guild_id: u64,
}

/// Exact counts, whatever the ledger capacity.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InteractionCounts {
    pub(crate) issued: u64,
    pub(crate) in_time: u64,
    pub(crate) late: u64,
    pub(crate) never: u64,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<u64, Issued>,
    by_token: HashMap<String, u64>,
    /// Issue order, for the ledger (bounded by the ledger capacity).
    order: Vec<u64>,
    /// Unanswered interactions by deadline (issue order is deadline order).
    pending: VecDeque<(Instant, u64)>,
    counts: InteractionCounts,
    truncated: bool,
}

#[derive(Debug)]
pub(crate) struct Interactions {
    clock: Clock,
    deadline: Duration,
    token_ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Inner {
    /// Marks every unanswered interaction past its deadline as `Never`.
    fn sweep(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.pending.front() {
            if deadline >= now {
                break;
            }
            self.pending.pop_front();
            if let Some(issued) = self.by_id.get_mut(&id)
                && issued.record.outcome == InteractionOutcome::Pending
            {
                issued.record.outcome = InteractionOutcome::Never;
                self.counts.never += 1;
            }
        }
    }
}

impl Interactions {
    pub(crate) fn new(clock: Clock, capacity: usize) -> Self {
        Self {
            clock,
            deadline: clock.scaled(RESPONSE_DEADLINE),
            token_ttl: clock.scaled(TOKEN_TTL),
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn issue(&self, id: u64, token: &str, guild_id: u64, channel_id: u64) {
        let now = self.clock.now();
        let mut inner = self.inner();
        inner.by_id.insert(
            id,
            Issued {
                token: token.to_owned(),
                issued_at: now,
                record: InteractionRecord {
                    id,
                    guild_id,
                    channel_id,
                    issued_at_ms: self.clock.ms_at(now),
                    answered_at_ms: None,
                    outcome: InteractionOutcome::Pending,
                },
            },
        );
        inner.by_token.insert(token.to_owned(), id);
        inner.pending.push_back((now + self.deadline, id));
        inner.counts.issued += 1;
        if inner.order.len() < self.capacity {
            inner.order.push(id);
        } else {
            inner.truncated = true;
        }
    }

    pub(crate) fn answer(&self, id: u64, token: &str) -> Answer {
        let now = self.clock.now();
        let at_ms = self.clock.ms_at(now);
        let mut inner = self.inner();
        let inner = &mut *inner;
        let Some(issued) = inner.by_id.get_mut(&id).filter(|i| i.token == token) else {
            return Answer::Unknown;
        };
        let record = &mut issued.record;
        match record.outcome {
            InteractionOutcome::InTime => Answer::AlreadyAnswered,
            InteractionOutcome::Late => Answer::Unknown,
            outcome if now.saturating_duration_since(issued.issued_at) > self.deadline => {
                if outcome == InteractionOutcome::Never {
                    inner.counts.never -= 1;
                }
                record.outcome = InteractionOutcome::Late;
                record.answered_at_ms = Some(at_ms);
                inner.counts.late += 1;
                Answer::Unknown
            }
            _ => {
                record.outcome = InteractionOutcome::InTime;
                record.answered_at_ms = Some(at_ms);
                inner.counts.in_time += 1;
                Answer::Accepted
            }
        }
    }

    /// The interaction behind a webhook token (follow-ups, edits), while
    /// the token lives: not before its deadline was missed, not after
    /// `TOKEN_TTL`.
    pub(crate) fn origin(&self, token: &str) -> Option<Origin> {
        let now = self.clock.now();
        let inner = self.inner();
        let issued = inner.by_id.get(inner.by_token.get(token)?)?;
        let age = now.saturating_duration_since(issued.issued_at);
        let missed = issued.record.outcome != InteractionOutcome::InTime && age > self.deadline;
        if missed || age > self.token_ttl {
            return None;
        }
        Some(Origin {
            channel_id: issued.record.channel_id,
            guild_id: issued.record.guild_id,
        })
    }

    /// Records from index `after` on, in issue order; and whether the list
    /// was truncated.
    pub(crate) fn records(&self, after: usize) -> (Vec<InteractionRecord>, bool) {
        let mut inner = self.inner();
        inner.sweep(self.clock.now());
        let records = inner
            .order
            .iter()
            .skip(after)
            .filter_map(|id| inner.by_id.get(id).map(|i| i.record.clone()))
            .collect();
        (records, inner.truncated)
    }

    pub(crate) fn counts(&self) -> InteractionCounts {
        let mut inner = self.inner();
        inner.sweep(self.clock.now());
        inner.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_answer_per_interaction() {
        let interactions = Interactions::new(Clock::new(1.0), 100);
        interactions.issue(7, "tok", 1, 2);
        assert_eq!(interactions.answer(7, "wrong"), Answer::Unknown);
        assert_eq!(interactions.answer(8, "tok"), Answer::Unknown);
        assert_eq!(interactions.answer(7, "tok"), Answer::Accepted);
        assert_eq!(interactions.answer(7, "tok"), Answer::AlreadyAnswered);
        assert_eq!(interactions.origin("tok").unwrap().channel_id, 2);
        assert!(interactions.origin("nope").is_none());
        let counts = interactions.counts();
        assert_eq!((counts.issued, counts.in_time), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_and_token_lifetime() {
        let interactions = Interactions::new(Clock::new(1.0), 100);
        interactions.issue(1, "a", 1, 2);
        interactions.issue(2, "b", 1, 2);
        interactions.issue(3, "c", 1, 2);
        assert_eq!(interactions.answer(1, "a"), Answer::Accepted);
        tokio::time::advance(RESPONSE_DEADLINE + Duration::from_millis(1)).await;
        // 2 is late; 3 never answered.
        assert_eq!(interactions.answer(2, "b"), Answer::Unknown);
        assert!(interactions.origin("b").is_none());
        assert!(interactions.origin("c").is_none());
        assert!(interactions.origin("a").is_some());
        let (records, truncated) = interactions.records(0);
        assert!(!truncated);
        let outcomes: Vec<_> = records.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                InteractionOutcome::InTime,
                InteractionOutcome::Late,
                InteractionOutcome::Never
            ]
        );
        // A late callback after the sweep moves `never` to `late`.
        assert_eq!(interactions.answer(3, "c"), Answer::Unknown);
        let counts = interactions.counts();
        assert_eq!(
            (counts.in_time, counts.late, counts.never),
            (1, 2, 0),
            "{counts:?}"
        );
        tokio::time::advance(TOKEN_TTL).await;
        assert!(interactions.origin("a").is_none());
    }
}
