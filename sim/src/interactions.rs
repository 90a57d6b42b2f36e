//! Interactions the simulator issued, so callbacks and follow-ups can be
//! checked against what Discord would accept.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

#[derive(Debug)]
struct Issued {
    token: String,
    channel_id: u64,
    guild_id: u64,
    answered: bool,
}

/// Outcome of an interaction callback.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Accepted,
    /// Discord allows one initial response per interaction (40060).
    AlreadyAnswered,
    /// No such interaction, or the token does not match (10062).
    Unknown,
}

/// Where a webhook token's interaction happened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub(crate) channel_id: u64,
    pub(crate) guild_id: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Interactions {
    by_id: Mutex<HashMap<u64, Issued>>,
    by_token: Mutex<HashMap<String, u64>>,
}

impl Interactions {
    pub(crate) fn issue(&self, id: u64, token: &str, guild_id: u64, channel_id: u64) {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Issued {
                    token: token.to_owned(),
                    channel_id,
                    guild_id,
                    answered: false,
                },
            );
        self.by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_owned(), id);
    }

    pub(crate) fn answer(&self, id: u64, token: &str) -> Answer {
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        match by_id.get_mut(&id) {
            Some(issued) if issued.token == token => {
                if issued.answered {
                    Answer::AlreadyAnswered
                } else {
                    issued.answered = true;
                    Answer::Accepted
                }
            }
            _ => Answer::Unknown,
        }
    }

    /// The interaction behind a webhook token (follow-ups, edits).
    pub(crate) fn origin(&self, token: &str) -> Option<Origin> {
        let id = *self
            .by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)?;
        let by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let issued = by_id.get(&id)?;
        Some(Origin {
            channel_id: issued.channel_id,
            guild_id: issued.guild_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_per_interaction() {
        let interactions = Interactions::default();
        interactions.issue(7, "tok", 1, 2);
        assert_eq!(interactions.answer(7, "wrong"), Answer::Unknown);
        assert_eq!(interactions.answer(8, "tok"), Answer::Unknown);
        assert_eq!(interactions.answer(7, "tok"), Answer::Accepted);
        assert_eq!(interactions.answer(7, "tok"), Answer::AlreadyAnswered);
        assert_eq!(interactions.origin("tok").unwrap().channel_id, 2);
        assert!(interactions.origin("nope").is_none());
    }
}
