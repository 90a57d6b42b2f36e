//! What happens to open tickets' messages before they close, which the thread no longer
//! shows at the close: messages deleted (kept from when they were posted) and the earlier
//! texts of edited ones. Kept in the feature's per-guild state, without any storage read per
//! event, bounded, and dropped with the actor: a ticket whose messages came while its guild's
//! actor was elsewhere (another node, passivated) has no notes of them.
//!
//! Which channels are tickets: those the actor opened or reopened, and the guild's open
//! tickets read once (one storage read on a task) on the first message event after the actor
//! starts. Until that read is in, every channel's messages are noted; it keeps the tickets'.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use protonn_storage::{TicketQuery, Timestamp, TranscriptAttachment, TranscriptMessage};
use twilight_model::channel::Message;

use crate::guild::Io;

/// Messages kept per ticket (the newest), and per guild in all: beyond, new ones are not
/// noted (their deletion would then go unnoted).
const PER_TICKET: usize = 100;
const PER_GUILD: usize = 1_000;
/// Earlier texts kept per message.
const EDITS_KEPT: usize = 10;
/// Open tickets read at the start: the store's list is bounded too.
const TICKETS_READ: usize = 1_000;

/// Shared between the actor (events) and the feature's tasks (open, close, the load).
#[derive(Clone, Default)]
pub(crate) struct Notes(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    /// Whether the guild's open tickets were read (or are being read).
    loading: bool,
    loaded: bool,
    /// By channel: its messages by id, as last seen.
    tickets: HashMap<u64, BTreeMap<u64, TranscriptMessage>>,
    /// Tickets this actor opened or reopened: kept whatever the read of open tickets (begun
    /// before they opened) says.
    opened: HashSet<u64>,
    kept: usize,
}

impl Notes {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding it leaves notes that are still consistent enough to read.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the open tickets must be read now (once per actor).
    pub(crate) fn start_loading(&self) -> bool {
        let mut inner = self.lock();
        !std::mem::replace(&mut inner.loading, true)
    }

    /// `channel` is an open ticket's: its messages are noted from now on.
    pub(crate) fn track(&self, channel: u64) {
        let mut inner = self.lock();
        inner.opened.insert(channel);
        inner.tickets.entry(channel).or_default();
    }

    /// The notes of `channel`'s ticket, taken as it closes.
    pub(crate) fn take(&self, channel: u64) -> BTreeMap<u64, TranscriptMessage> {
        let mut inner = self.lock();
        inner.opened.remove(&channel);
        let taken = inner.tickets.remove(&channel).unwrap_or_default();
        inner.kept -= taken.len();
        taken
    }

    /// Notes taken for a close that did not happen, given back.
    pub(crate) fn put_back(&self, channel: u64, messages: BTreeMap<u64, TranscriptMessage>) {
        let mut inner = self.lock();
        inner.kept += messages.len();
        inner.tickets.insert(channel, messages);
    }

    /// The guild's open tickets, read: only their channels' notes are kept.
    fn loaded(&self, channels: &[u64]) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.loaded = true;
        let opened = &inner.opened;
        inner
            .tickets
            .retain(|channel, _| channels.contains(channel) || opened.contains(channel));
        for channel in channels {
            inner.tickets.entry(*channel).or_default();
        }
        // Most guilds have no open ticket: what the notes before the read took is freed.
        inner.tickets.shrink_to_fit();
        inner.kept = inner.tickets.values().map(BTreeMap::len).sum();
    }

    /// A message was posted (or edited: `edit`) in a guild channel.
    pub(crate) fn posted(&self, message: &Message, guild_id: u64, edit: bool) {
        let mut inner = self.lock();
        let loaded = inner.loaded;
        let channel = message.channel_id.get();
        if loaded && !inner.tickets.contains_key(&channel) {
            return;
        }
        let line = line(guild_id, message);
        let full = inner.kept >= PER_GUILD;
        let messages = inner.tickets.entry(channel).or_default();
        let mut added = 0;
        match messages.get_mut(&line.message_id) {
            Some(seen) if edit => {
                if seen.content != line.content {
                    let mut earlier = std::mem::take(&mut seen.earlier_texts);
                    if earlier.len() == EDITS_KEPT {
                        earlier.remove(0);
                    }
                    earlier.push(std::mem::take(&mut seen.content));
                    *seen = TranscriptMessage {
                        earlier_texts: earlier,
                        ..line
                    };
                }
            }
            Some(_) => {}
            None if full => {}
            None => {
                messages.insert(line.message_id, line);
                added += 1;
                if messages.len() > PER_TICKET {
                    messages.pop_first();
                    added -= 1;
                }
            }
        }
        inner.kept += added;
    }

    /// A message was deleted from `channel`.
    pub(crate) fn deleted(&self, channel: u64, message: u64, at: Timestamp) {
        if let Some(seen) = self
            .lock()
            .tickets
            .get_mut(&channel)
            .and_then(|messages| messages.get_mut(&message))
        {
            seen.deleted_at.get_or_insert(at);
        }
    }
}

/// Reads the guild's open tickets once, so their channels are known.
pub(crate) async fn load(io: Io, notes: Notes) {
    let query = TicketQuery {
        open: Some(true),
        limit: TICKETS_READ,
        ..TicketQuery::default()
    };
    match io.store().list_tickets(io.guild_id().get(), &query).await {
        Ok(open) => {
            let channels: Vec<u64> = open.iter().map(|t| t.channel_id).collect();
            notes.loaded(&channels);
        }
        Err(err) => {
            // Tried again at the next message event.
            tracing::warn!(guild_id = %io.guild_id(), error = %err, "open tickets not read; edits and deletions not noted yet");
            notes.lock().loading = false;
        }
    }
}

/// A message as a transcript line (its ticket number set at the close).
pub(crate) fn line(guild_id: u64, message: &Message) -> TranscriptMessage {
    TranscriptMessage {
        guild_id,
        ticket_id: 0,
        message_id: message.id.get(),
        author_id: message.author.id.get(),
        author_name: message.author.name.clone(),
        at: super::act::snowflake_time(message.id.get()),
        content: message.content.clone(),
        attachments: message
            .attachments
            .iter()
            .map(|attachment| TranscriptAttachment {
                filename: attachment.filename.clone(),
                url: attachment.url.clone(),
            })
            .collect(),
        edited_at: message
            .edited_timestamp
            .map(|at| Timestamp((at.as_micros() / 1_000).max(0) as u64)),
        earlier_texts: Vec::new(),
        deleted_at: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(id: u64, channel: u64, content: &str) -> Message {
        serde_json::from_value(json!({
            "id": id.to_string(), "channel_id": channel.to_string(), "guild_id": "1",
            "author": {"id": "7", "username": "ann", "discriminator": "0", "avatar": null},
            "content": content, "timestamp": "2024-01-01T00:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
        }))
        .unwrap()
    }

    #[test]
    fn a_tickets_deletions_and_earlier_texts_are_noted_and_taken_at_its_close() {
        let notes = Notes::default();
        notes.posted(&message(10, 5, "first"), 1, false);
        notes.posted(&message(11, 6, "elsewhere"), 1, false);
        notes.track(8);
        // The open tickets are read: only channel 5's notes stay, and the ticket opened
        // meanwhile.
        notes.loaded(&[5]);
        notes.posted(&message(15, 8, "new ticket"), 1, false);
        assert_eq!(notes.take(8).len(), 1);
        notes.posted(&message(12, 6, "not a ticket"), 1, false);
        notes.posted(&message(10, 5, "second"), 1, true);
        notes.posted(&message(10, 5, "second"), 1, true);
        notes.posted(&message(13, 5, "oops"), 1, false);
        notes.deleted(5, 13, Timestamp(99));
        notes.deleted(5, 14, Timestamp(99));
        assert!(notes.take(6).is_empty());
        let taken = notes.take(5);
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[&10].content, "second");
        assert_eq!(
            taken[&10].earlier_texts,
            ["first"],
            "an unchanged edit adds nothing"
        );
        assert_eq!(taken[&13].deleted_at, Some(Timestamp(99)));
        assert_eq!(taken[&13].author_name, "ann");
        assert_eq!(notes.lock().kept, 0);
        assert!(notes.take(5).is_empty(), "taken once");
    }

    #[test]
    fn notes_are_bounded_per_ticket_and_per_guild() {
        let notes = Notes::default();
        let tickets: Vec<u64> = (1..=20).collect();
        notes.loaded(&tickets);
        for n in 0..(PER_TICKET as u64 + 5) {
            notes.posted(&message(1_000 + n, 1, "x"), 1, false);
        }
        let first = notes.take(1);
        assert_eq!(first.len(), PER_TICKET);
        assert_eq!(*first.keys().next().unwrap(), 1_005, "the newest kept");
        notes.put_back(1, first);
        for channel in 2..=20 {
            for n in 0..PER_TICKET as u64 {
                notes.posted(&message(channel * 10_000 + n, channel, "x"), 1, false);
            }
        }
        assert_eq!(notes.lock().kept, PER_GUILD);
        for n in 0..(EDITS_KEPT + 3) {
            notes.posted(&message(1_005, 1, &format!("v{n}")), 1, true);
        }
        assert_eq!(notes.take(1)[&1_005].earlier_texts.len(), EDITS_KEPT);
    }
}
