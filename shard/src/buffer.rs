//! The bounded buffer between a shard's polling task and its forwarder.

use metrics::counter;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use twilight_model::gateway::event::{Event, EventType};

use crate::metrics::{BUFFER_STALLS, EVENTS_SHED};

/// Event types that may be shed under load: nothing is lost that a handler relies on.
/// Commands, interactions and everything else are never dropped.
pub(crate) const DROPPABLE: [EventType; 2] = [EventType::TypingStart, EventType::PresenceUpdate];

fn droppable(kind: EventType) -> bool {
    DROPPABLE.contains(&kind)
}

/// An event with the gateway sequence it came with, so that the forwarder knows how far
/// the session has reached the sink.
#[derive(Debug)]
pub(crate) struct Sequenced {
    /// The dispatch's own sequence; other events carry the session's current one.
    pub(crate) seq: u64,
    pub(crate) event: Event,
}

pub(crate) fn event_buffer(capacity: usize) -> (BufferTx, mpsc::Receiver<Sequenced>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (BufferTx { tx }, rx)
}

pub(crate) struct BufferTx {
    tx: mpsc::Sender<Sequenced>,
}

impl BufferTx {
    /// Queues `event`. When the buffer is full a droppable event is shed and counted; any
    /// other waits for room, which pauses reading the socket: Discord keeps the events, and
    /// if the pause outlasts a heartbeat the session is resumed with them replayed.
    /// Returns `false` once the forwarder is gone.
    pub(crate) async fn push(&self, seq: u64, event: Event, shard_label: &str) -> bool {
        match self.tx.try_send(Sequenced { seq, event }) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(item)) => {
                let kind = item.event.kind();
                if droppable(kind) {
                    let name = kind.name().unwrap_or("unknown");
                    counter!(EVENTS_SHED, "event" => name).increment(1);
                    return true;
                }
                counter!(BUFFER_STALLS, "shard" => shard_label.to_owned()).increment(1);
                self.tx.send(item).await.is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twilight_model::gateway::payload::incoming::TypingStart;

    fn typing() -> Event {
        let json = r#"{"channel_id":"2","timestamp":1,"user_id":"3"}"#;
        Event::TypingStart(Box::new(serde_json::from_str::<TypingStart>(json).unwrap()))
    }

    #[tokio::test]
    async fn a_full_buffer_sheds_only_droppable_events() {
        let (tx, mut rx) = event_buffer(2);
        assert!(tx.push(1, Event::Resumed, "0").await);
        assert!(tx.push(2, typing(), "0").await);
        assert!(tx.push(3, typing(), "0").await, "shed, not an error");

        // A non-droppable event waits for room instead of being lost.
        let pushed = tokio::spawn(async move { tx.push(3, Event::GatewayReconnect, "0").await });
        let event = |item: Option<Sequenced>| item.unwrap().event;
        assert!(matches!(event(rx.recv().await), Event::Resumed));
        assert!(pushed.await.unwrap());
        assert!(matches!(event(rx.recv().await), Event::TypingStart(_)));
        assert!(matches!(event(rx.recv().await), Event::GatewayReconnect));
        assert!(
            rx.recv().await.is_none(),
            "the shed typing event never arrives"
        );
    }

    #[tokio::test]
    async fn events_keep_their_sequence_through_the_buffer() {
        let (tx, mut rx) = event_buffer(4);
        assert!(tx.push(7, Event::Resumed, "0").await);
        assert!(tx.push(8, typing(), "0").await);
        // A gateway event carries the session's current sequence.
        assert!(tx.push(8, Event::GatewayReconnect, "0").await);
        drop(tx);

        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            got.push((item.seq, item.event.kind()));
        }
        assert_eq!(
            got,
            [
                (7, EventType::Resumed),
                (8, EventType::TypingStart),
                (8, EventType::GatewayReconnect)
            ]
        );
    }
}
