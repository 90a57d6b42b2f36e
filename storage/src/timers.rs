//! Durable timers: what a guild's features want done later (lift a temporary ban, close a
//! ticket, resume a workflow), kept until done so that a restart, a crash or a shard move
//! does not lose them.
//!
//! A timer lives in its shard's partition, ordered by when it is due, so the node that owns
//! a shard finds its due timers with one range read. Firing is claim, act, complete: a
//! claim is a compare-and-set that holds the timer for a while (a lease), so two nodes that
//! both think they own the guild (a handoff in flight) never act at once, and a node that
//! dies mid-action leaves a claim that lapses and is taken by the next owner.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// Longest timer id, in bytes: a feature's name and a key or two.
pub const TIMER_ID_MAX_LEN: usize = 128;
/// Largest payload, in bytes: ids and a reason, not documents.
pub const TIMER_PAYLOAD_MAX_LEN: usize = 4096;
/// Most users one timer names: a member acted on, an event's author.
pub const TIMER_USERS_MAX: usize = 8;

/// Something to do for a guild at `due`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub guild_id: u64,
    /// The guild's shard (`(guild_id >> 22) % shard_count`), the timer's partition.
    pub shard_id: u32,
    /// Unique within the guild, chosen by the feature (`tempban:<user>`): putting a timer
    /// with the id of a stored one replaces it.
    pub id: String,
    pub due: Timestamp,
    /// The feature that acts when it is due, and what it needs to (JSON).
    pub feature: String,
    pub payload: String,
    /// Who holds the timer now (a node's claimant name), until `claimed_until`.
    #[serde(default)]
    pub claimed_by: Option<String>,
    #[serde(default)]
    pub claimed_until: Timestamp,
    /// The users the timer names (a temporary ban's member, a parked run's event author),
    /// as the feature that schedules it says: indexed in `user_refs` while it is stored, so
    /// their export lists it, their erasure finds it and a breach listing names them. Users
    /// the payload only mentions (`<@id>`) are indexed too ([`Timer::parties`]); their
    /// erasure keeps the timer with the mention replaced by `<@0>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<u64>,
    /// Whether an erasure of one of `users` keeps the timer: a temporary ban's unban must
    /// still happen (deleting it would leave the member banned for good), so it stays, with
    /// its ref, until it has run. Otherwise (a parked workflow run) the erasure deletes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outlives_erasure: bool,
}

/// A timer as its users' export shows it: what will be done, and when; never the claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerExport {
    pub guild_id: u64,
    pub id: String,
    pub feature: String,
    pub due: Timestamp,
    /// What the feature kept to act (JSON): a parked run keeps its event, the user's name
    /// and message text among it.
    pub payload: String,
    pub outlives_erasure: bool,
}

impl From<&Timer> for TimerExport {
    fn from(timer: &Timer) -> Self {
        Self {
            guild_id: timer.guild_id,
            id: timer.id.clone(),
            feature: timer.feature.clone(),
            due: timer.due,
            payload: timer.payload.clone(),
            outlives_erasure: timer.outlives_erasure,
        }
    }
}

impl Timer {
    /// The users whose refs the timer has: those it names ([`users`](Self::users)), then
    /// those its payload mentions (`<@id>`: a parked run's message mentioning members).
    pub(crate) fn parties(&self) -> Vec<u64> {
        let mut parties = self.users.clone();
        for user in crate::mentions::mentioned_users(&self.payload) {
            if !parties.contains(&user) {
                parties.push(user);
            }
        }
        parties
    }

    /// The timer as an erasure of `user_id` leaves it when it must stay: a timer that
    /// outlives its users' erasure, or one that only mentions them. `None` when it goes (a
    /// parked run of theirs).
    pub(crate) fn after_erasure_of(&self, user_id: u64) -> Option<Self> {
        if self.users.contains(&user_id) && !self.outlives_erasure {
            return None;
        }
        Some(Self {
            users: self
                .users
                .iter()
                .copied()
                .filter(|&u| u != user_id)
                .collect(),
            payload: crate::mentions::without_mentions_of(&self.payload, user_id),
            ..self.clone()
        })
    }
}

/// The index entry of a timer (its users' refs).
pub(crate) fn timer_ref(timer: &Timer) -> crate::row_ref::RowRef {
    crate::row_ref::RowRef::Timer {
        guild: timer.guild_id,
        id: timer.id.clone(),
    }
}

/// Durable timers of every guild.
#[async_trait]
pub trait TimerRepo: Send + Sync + 'static {
    /// Stores `timer` unclaimed, replacing one of the same guild and id.
    async fn put_timer(&self, timer: &Timer) -> Result<(), StorageError>;

    /// Removes a timer whatever its claim (the action it stood for was undone); whether it
    /// was there.
    async fn cancel_timer(&self, guild_id: u64, id: &str) -> Result<bool, StorageError>;

    /// The guild's timers, soonest first.
    async fn timers_of_guild(&self, guild_id: u64) -> Result<Vec<Timer>, StorageError>;

    /// Timers of `shard_id` due at `now` or before and not claimed at `now`, soonest first,
    /// at most `limit`.
    async fn due_timers(
        &self,
        shard_id: u32,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Timer>, StorageError>;

    /// Claims the timer for `claimant` until `until` if it is still stored as `timer` says
    /// (same due time) and nobody's claim holds at `now`; whether this call got it.
    async fn claim_timer(
        &self,
        timer: &Timer,
        claimant: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StorageError>;

    /// Removes a timer that `claimant` claimed, once its action is done; `false` if the
    /// claim was lost (it lapsed and another took it, or the timer was cancelled).
    async fn complete_timer(
        &self,
        guild_id: u64,
        id: &str,
        claimant: &str,
    ) -> Result<bool, StorageError>;
}

pub(crate) fn check_timer(timer: &Timer) -> Result<(), StorageError> {
    if timer.id.is_empty() || timer.id.len() > TIMER_ID_MAX_LEN {
        return Err(StorageError::Invalid(format!(
            "a timer id has 1 to {TIMER_ID_MAX_LEN} bytes"
        )));
    }
    if timer.payload.len() > TIMER_PAYLOAD_MAX_LEN || timer.feature.is_empty() {
        return Err(StorageError::Invalid(format!(
            "a timer names its feature and carries at most {TIMER_PAYLOAD_MAX_LEN} bytes"
        )));
    }
    if timer.users.len() > TIMER_USERS_MAX || timer.users.contains(&crate::privacy::ERASED_USER) {
        return Err(StorageError::Invalid(format!(
            "a timer names at most {TIMER_USERS_MAX} users, none of them 0"
        )));
    }
    Ok(())
}
