//! A guild actor's mailbox: the router's end ([`Mailbox`]) and the actor's ([`Inbox`]).
//!
//! One allocation of about a hundred bytes, and room for a few messages once one came: a
//! node holds a mailbox for every guild with work, most of them empty most of the time. A
//! tokio channel allocates a block of 32 slots up front (1.5 KB a guild, B3).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::GuildMsg;

/// Room an empty mailbox keeps; more, grown by a burst, is given back once it is empty.
const KEPT_ROOM: usize = 4;

/// The router's end. Dropping it closes the mailbox: the actor handles what it holds, then
/// ends.
pub(crate) struct Mailbox(Arc<Shared>);

/// The actor's end. Dropping it drops what is still queued and refuses what is sent after.
pub(crate) struct Inbox(Arc<Shared>);

struct Shared {
    queue: Mutex<Queue>,
    arrived: Notify,
    /// Messages sent and not yet handled: the router's measure of the actor's backlog.
    pending: AtomicU32,
}

struct Queue {
    messages: VecDeque<GuildMsg>,
    /// The router's end is alive: more may come.
    open: bool,
    /// The actor's end is alive: what comes is handled.
    read: bool,
}

/// A new mailbox, open at both ends.
pub(crate) fn mailbox() -> (Mailbox, Inbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            messages: VecDeque::new(),
            open: true,
            read: true,
        }),
        arrived: Notify::new(),
        pending: AtomicU32::new(0),
    });
    (Mailbox(Arc::clone(&shared)), Inbox(shared))
}

impl Shared {
    /// The queue, also after a panic while it was held: every change to it is one step,
    /// so a poisoned lock guards a whole queue.
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Mailbox {
    /// Queues `message` behind the others, counted as pending until the actor has handled
    /// it; gives it back if the actor has ended.
    pub(crate) fn send(&self, message: GuildMsg) -> Result<(), GuildMsg> {
        {
            let mut queue = self.0.queue();
            if !queue.read {
                return Err(message);
            }
            queue.messages.push_back(message);
            self.0.pending.fetch_add(1, Ordering::AcqRel);
        }
        self.0.arrived.notify_one();
        Ok(())
    }

    /// Messages sent and not yet handled.
    pub(crate) fn pending(&self) -> u32 {
        self.0.pending.load(Ordering::Acquire)
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.0.queue().open = false;
        self.0.arrived.notify_one();
    }
}

impl Inbox {
    /// The next message in the order sent, once there is one; `None` once the router's end
    /// is dropped and every message was taken.
    pub(crate) async fn recv(&mut self) -> Option<GuildMsg> {
        loop {
            {
                let mut queue = self.0.queue();
                if let Some(message) = queue.messages.pop_front() {
                    if queue.messages.is_empty() && queue.messages.capacity() > KEPT_ROOM {
                        queue.messages = VecDeque::new();
                    }
                    return Some(message);
                }
                if !queue.open {
                    return None;
                }
            }
            // A send between the look above and this wait left a permit: no wake-up is lost.
            self.0.arrived.notified().await;
        }
    }

    /// The message last taken is handled: it no longer counts as pending.
    pub(crate) fn handled(&self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let left = {
            let mut queue = self.0.queue();
            queue.read = false;
            std::mem::take(&mut queue.messages)
        };
        // Dropped outside the lock: a message's receipt or reply port runs code of its own.
        self.0
            .pending
            .fetch_sub(left.len() as u32, Ordering::AcqRel);
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use twilight_model::gateway::event::Event;
    use twilight_model::gateway::payload::incoming::RoleDelete;
    use twilight_model::id::Id;

    use super::*;

    fn reload() -> GuildMsg {
        GuildMsg::Reload
    }

    /// The `n`th message: an event that says its number.
    fn numbered(n: u64) -> GuildMsg {
        let event = Event::RoleDelete(RoleDelete {
            guild_id: Id::new(1),
            role_id: Id::new(n),
        });
        GuildMsg::Event(Arc::new(event), None)
    }

    fn number(message: GuildMsg) -> u64 {
        match message {
            GuildMsg::Event(event, _) => match &*event {
                Event::RoleDelete(deleted) => deleted.role_id.get(),
                other => panic!("not a numbered message: {other:?}"),
            },
            _ => panic!("not a numbered message"),
        }
    }

    #[tokio::test]
    async fn messages_come_in_order_and_the_inbox_ends_once_the_mailbox_is_dropped_and_empty() {
        let (mailbox, mut inbox) = mailbox();
        let reader = tokio::spawn(async move {
            let mut taken = Vec::new();
            while let Some(message) = inbox.recv().await {
                taken.push(number(message));
                inbox.handled();
            }
            taken
        });
        // Half sent one at a time (the reader waits between), half in a burst.
        for n in 1..=100 {
            assert!(mailbox.send(numbered(n)).is_ok());
            tokio::task::yield_now().await;
        }
        for n in 101..=200 {
            assert!(mailbox.send(numbered(n)).is_ok());
        }
        drop(mailbox);
        assert_eq!(reader.await.unwrap(), (1..=200).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn pending_counts_until_handled_and_a_closed_inbox_refuses() {
        let (mailbox, mut inbox) = mailbox();
        for _ in 0..3 {
            assert!(mailbox.send(reload()).is_ok());
        }
        assert!(inbox.recv().await.is_some());
        assert_eq!(mailbox.pending(), 3, "taken is not handled");
        inbox.handled();
        assert_eq!(mailbox.pending(), 2);
        // The actor ends with two queued: they are dropped, and nothing more is taken.
        drop(inbox);
        assert_eq!(mailbox.pending(), 0);
        assert!(matches!(mailbox.send(reload()), Err(GuildMsg::Reload)));
        assert_eq!(mailbox.pending(), 0);
    }

    #[tokio::test]
    async fn an_empty_mailbox_gives_back_the_room_a_burst_grew() {
        let (mailbox, mut inbox) = mailbox();
        for _ in 0..64 {
            assert!(mailbox.send(reload()).is_ok());
        }
        assert!(inbox.0.queue().messages.capacity() >= 64);
        for _ in 0..64 {
            inbox.recv().await.unwrap();
            inbox.handled();
        }
        assert_eq!(inbox.0.queue().messages.capacity(), 0);
    }
}
