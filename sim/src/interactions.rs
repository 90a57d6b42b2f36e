//! Interactions the simulator issued, so callbacks and follow-ups can be
//! checked against what Discord would accept: one initial response within
//! the 3 s deadline, of a type the interaction's kind allows, webhook routes
//! while the 15 min token lives, and for each interaction whether it was
//! answered in time, late or never. A modal shown in answer is kept with the
//! interaction until the member submits it (once).

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

/// What a member did to cause an interaction (Discord's interaction `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    /// A slash command (`APPLICATION_COMMAND`, 2).
    Command,
    /// A button or select of a message (`MESSAGE_COMPONENT`, 3).
    Component,
    /// A modal filled in and sent (`MODAL_SUBMIT`, 5).
    ModalSubmit,
}

impl InteractionKind {
    pub(crate) fn type_number(self) -> u8 {
        match self {
            Self::Command => 2,
            Self::Component => 3,
            Self::ModalSubmit => 5,
        }
    }
}

/// One issued interaction, in the ledger's `interactions`.
#[derive(Clone, Debug, Serialize)]
pub struct InteractionRecord {
    pub id: u64,
    pub kind: InteractionKind,
    pub guild_id: u64,
    pub channel_id: u64,
    pub user_id: u64,
    /// The message whose component was used (components, and modals opened from one).
    pub message_id: Option<u64>,
    /// The callback type of the accepted first response (4, 5, 6, 7 or 9).
    pub response_type: Option<u8>,
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
    /// The modal shown in answer (callback type 9), until it is submitted.
    modal: Option<serde_json::Value>,
}

/// What an interaction is about, as the simulator issues it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Issue {
    pub(crate) kind: InteractionKind,
    pub(crate) guild_id: u64,
    pub(crate) channel_id: u64,
    pub(crate) user_id: u64,
    pub(crate) message_id: Option<u64>,
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

/// A modal shown to a member and not submitted yet.
#[derive(Clone, Debug)]
pub(crate) struct OpenModal {
    pub(crate) modal: serde_json::Value,
    pub(crate) origin: Issue,
}

/// Exact counts, whatever the ledger capacity.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InteractionCounts {
    pub(crate) issued: u64,
    pub(crate) in_time: u64,
    pub(crate) late: u64,
    pub(crate) never: u64,
}

fn issue_of(r: &InteractionRecord) -> Issue {
    Issue {
        kind: r.kind,
        guild_id: r.guild_id,
        channel_id: r.channel_id,
        user_id: r.user_id,
        message_id: r.message_id,
    }
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

    pub(crate) fn issue(&self, id: u64, token: &str, issue: Issue) {
        let now = self.clock.now();
        let mut inner = self.inner();
        inner.by_id.insert(
            id,
            Issued {
                token: token.to_owned(),
                issued_at: now,
                record: InteractionRecord {
                    id,
                    kind: issue.kind,
                    guild_id: issue.guild_id,
                    channel_id: issue.channel_id,
                    user_id: issue.user_id,
                    message_id: issue.message_id,
                    response_type: None,
                    issued_at_ms: self.clock.ms_at(now),
                    answered_at_ms: None,
                    outcome: InteractionOutcome::Pending,
                },
                modal: None,
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

    /// The interaction behind a callback's id and token, while it may still be answered
    /// (unknown, a wrong token or a missed deadline: `None`, Discord's 10062).
    pub(crate) fn lookup(&self, id: u64, token: &str) -> Option<Issue> {
        let now = self.clock.now();
        let inner = self.inner();
        let issued = inner.by_id.get(&id).filter(|i| i.token == token)?;
        if now.saturating_duration_since(issued.issued_at) > self.deadline
            && issued.record.outcome != InteractionOutcome::InTime
        {
            return None;
        }
        Some(issue_of(&issued.record))
    }

    /// Records the first response's callback type, and the modal it showed.
    pub(crate) fn responded(&self, id: u64, response_type: u8, modal: Option<serde_json::Value>) {
        if let Some(issued) = self.inner().by_id.get_mut(&id) {
            issued.record.response_type = Some(response_type);
            issued.modal = modal;
        }
    }

    /// The modal interaction `id` showed, still open.
    pub(crate) fn modal_of(&self, id: u64) -> Option<OpenModal> {
        let inner = self.inner();
        let issued = inner.by_id.get(&id)?;
        let r = &issued.record;
        Some(OpenModal {
            modal: issued.modal.clone()?,
            origin: issue_of(r),
        })
    }

    /// Takes the modal interaction `id` showed, so it is submitted once (a member closes a
    /// modal by sending it).
    pub(crate) fn take_modal(&self, id: u64) -> Option<OpenModal> {
        let open = self.modal_of(id)?;
        self.inner().by_id.get_mut(&id)?.modal.take()?;
        Some(open)
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

    fn command(channel_id: u64) -> Issue {
        Issue {
            kind: InteractionKind::Command,
            guild_id: 1,
            channel_id,
            user_id: 3,
            message_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_modal_is_submitted_once() {
        let interactions = Interactions::new(Clock::new(1.0), 100);
        interactions.issue(7, "tok", command(2));
        assert!(interactions.take_modal(7).is_none(), "no modal shown yet");
        assert_eq!(interactions.answer(7, "tok"), Answer::Accepted);
        interactions.responded(7, 9, Some(serde_json::json!({"custom_id": "m"})));
        let open = interactions.take_modal(7).unwrap();
        assert_eq!((open.origin.user_id, open.origin.channel_id), (3, 2));
        assert!(interactions.take_modal(7).is_none(), "submitted once");
        let (records, _) = interactions.records(0);
        assert_eq!(records[0].response_type, Some(9));
    }

    #[tokio::test(start_paused = true)]
    async fn one_answer_per_interaction() {
        let interactions = Interactions::new(Clock::new(1.0), 100);
        interactions.issue(7, "tok", command(2));
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
        interactions.issue(1, "a", command(2));
        interactions.issue(2, "b", command(2));
        interactions.issue(3, "c", command(2));
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
