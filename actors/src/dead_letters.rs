use std::collections::VecDeque;
use std::sync::Mutex;

use metrics::counter;

use crate::metrics::DEAD_LETTERS;

/// Most dead letters kept in memory; older ones remain in the log.
const KEPT: usize = 1_000;

/// An event whose handling panicked on every try, set aside so it cannot loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub guild_id: u64,
    /// Discord's event name.
    pub event: &'static str,
    /// The message or interaction id, when the event has one.
    pub entity_id: Option<u64>,
    pub attempts: u32,
    pub panic: String,
}

/// The node's dead letters: logged, counted, and the latest kept for operators.
#[derive(Default)]
pub struct DeadLetters {
    latest: Mutex<VecDeque<DeadLetter>>,
}

impl DeadLetters {
    pub(crate) fn record(&self, letter: DeadLetter) {
        tracing::error!(
            guild_id = letter.guild_id,
            event = letter.event,
            entity_id = letter.entity_id,
            attempts = letter.attempts,
            panic = %letter.panic,
            "event dead-lettered after repeated panics"
        );
        counter!(DEAD_LETTERS).increment(1);
        let mut latest = self.latest.lock().expect("dead letters lock");
        if latest.len() == KEPT {
            latest.pop_front();
        }
        latest.push_back(letter);
    }

    /// The most recent dead letters, oldest first.
    pub fn latest(&self) -> Vec<DeadLetter> {
        self.latest
            .lock()
            .expect("dead letters lock")
            .iter()
            .cloned()
            .collect()
    }
}
