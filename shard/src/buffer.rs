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

pub(crate) fn event_buffer(capacity: usize) -> (BufferTx, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (BufferTx { tx }, rx)
}

pub(crate) struct BufferTx {
    tx: mpsc::Sender<Event>,
}

impl BufferTx {
    /// Queues `event`. When the buffer is full a droppable event is shed and counted; any
    /// other waits for room, which pauses reading the socket: Discord keeps the events, and
    /// if the pause outlasts a heartbeat the session is resumed with them replayed.
    /// Returns `false` once the forwarder is gone.
    pub(crate) async fn push(&self, event: Event, shard_label: &str) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(event)) => {
                let kind = event.kind();
                if droppable(kind) {
                    let name = kind.name().unwrap_or("unknown");
                    counter!(EVENTS_SHED, "event" => name).increment(1);
                    return true;
                }
                counter!(BUFFER_STALLS, "shard" => shard_label.to_owned()).increment(1);
                self.tx.send(event).await.is_ok()
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
        assert!(tx.push(Event::Resumed, "0").await);
        assert!(tx.push(typing(), "0").await);
        assert!(tx.push(typing(), "0").await, "shed, not an error");

        // A non-droppable event waits for room instead of being lost.
        let pushed = tokio::spawn(async move { tx.push(Event::GatewayReconnect, "0").await });
        assert!(matches!(rx.recv().await, Some(Event::Resumed)));
        assert!(pushed.await.unwrap());
        assert!(matches!(rx.recv().await, Some(Event::TypingStart(_))));
        assert!(matches!(rx.recv().await, Some(Event::GatewayReconnect)));
        assert!(
            rx.recv().await.is_none(),
            "the shed typing event never arrives"
        );
    }
}
