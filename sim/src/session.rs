//! Gateway sessions: at most one per shard, each with its sequence counter,
//! its replay buffer and the connection it is attached to, if any.
//!
//! Invariant: a session's dispatches reach its connection in `s` order.
//! Sequencing, buffering and handing to the connection's writer happen under
//! the shard's one lock, and each connection has one writer draining a FIFO.
//! Dispatches made while no connection is attached are still sequenced and
//! buffered, as Discord queues them for a RESUME.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::faults::Fault;
use crate::payloads;

/// Replay buffer bound in bytes, so a thousand idle sessions of a load run
/// cannot hold gigabytes.
pub(crate) const REPLAY_BYTES: usize = 16 << 20;

/// How long sessions live and what they keep for a RESUME (already scaled).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionRules {
    /// Replay buffer bound in events.
    pub(crate) replay_events: usize,
    /// Replay buffer bound in age: older events are gone, and a RESUME that
    /// needs them gets op 9 `false`.
    pub(crate) replay_age: Duration,
    /// A session with no connection for this long expires.
    pub(crate) ttl: Duration,
}

/// Close code sent to a connection whose session was taken over by a new
/// IDENTIFY or by a RESUME on another connection: "session timed out". It is
/// not fatal, so a client that is still alive tries to resume and learns from
/// op 9 that its session is gone.
pub(crate) const REPLACED_CLOSE_CODE: u16 = 4009;

/// Close codes after which Discord will not let the session resume: the
/// fatal ones (4004, 4010..=4014, after which twilight stops the shard) and
/// 4007/4009, after which Discord wants a new session (twilight still tries
/// to resume and must then get op 9 `false`).
pub(crate) fn ends_session(code: u16) -> bool {
    matches!(code, 4004 | 4007 | 4009 | 4010..=4014)
}

/// Work for a connection's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    Dispatch(Delivery),
    /// Send a close frame with this code and end the connection.
    Close(u16),
    /// Send op 7 RECONNECT; the session already let go of the connection
    /// and stays resumable.
    Reconnect,
    /// Send op 9; the session already let go of the connection.
    InvalidSession(bool),
    /// Go silent: write nothing more, never close.
    HalfOpen,
    /// End the TCP connection without a close frame; the session already
    /// let go of the connection.
    Drop,
}

/// A sequenced dispatch on its way to a websocket; it becomes a ledger
/// record once written.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) shard: u32,
    pub(crate) session: Arc<str>,
    pub(crate) seq: u64,
    pub(crate) event: &'static str,
    pub(crate) guild_id: Option<u64>,
    pub(crate) entity_id: Option<u64>,
    pub(crate) replayed: bool,
    pub(crate) frame: Arc<str>,
}

/// A connection as sessions see it: where to send its work.
#[derive(Clone, Debug)]
pub(crate) struct ConnLink {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::UnboundedSender<Outbound>,
}

/// A dispatch to sequence; `d` is serialized JSON.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) name: &'static str,
    pub(crate) guild_id: Option<u64>,
    pub(crate) entity_id: Option<u64>,
    pub(crate) d: String,
}

#[derive(Debug)]
struct Buffered {
    at: Instant,
    seq: u64,
    event: &'static str,
    guild_id: Option<u64>,
    entity_id: Option<u64>,
    frame: Arc<str>,
}

#[derive(Debug)]
struct Session {
    id: Arc<str>,
    shard: u32,
    /// From IDENTIFY; decides which events and fields the session gets.
    intents: u64,
    /// Last sequence number handed out.
    seq: u64,
    buffer: VecDeque<Buffered>,
    buffer_bytes: usize,
    conn: Option<ConnLink>,
    /// When the last connection went; `None` while one is attached.
    detached_at: Option<Instant>,
}

impl Session {
    fn new(id: Arc<str>, shard: u32, intents: u64) -> Self {
        Self {
            id,
            shard,
            intents,
            seq: 0,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            conn: None,
            detached_at: None,
        }
    }

    fn expired(&self, rules: &SessionRules, now: Instant) -> bool {
        self.conn.is_none() && self.detached_at.is_some_and(|at| now >= at + rules.ttl)
    }

    fn detach(&mut self, now: Instant) -> Option<ConnLink> {
        let conn = self.conn.take();
        if conn.is_some() {
            self.detached_at = Some(now);
        }
        conn
    }

    /// Gives `event` the next `s`, buffers it and hands it to the attached
    /// connection, if any.
    fn sequence(&mut self, event: Event, rules: &SessionRules, now: Instant) -> u64 {
        self.seq += 1;
        let frame: Arc<str> = payloads::dispatch(event.name, self.seq, &event.d).into();
        self.buffer_bytes += frame.len();
        self.buffer.push_back(Buffered {
            at: now,
            seq: self.seq,
            event: event.name,
            guild_id: event.guild_id,
            entity_id: event.entity_id,
            frame,
        });
        while self.buffer.len() > rules.replay_events
            || self.buffer_bytes > REPLAY_BYTES
            || self
                .buffer
                .front()
                .is_some_and(|b| now >= b.at + rules.replay_age)
        {
            match self.buffer.pop_front() {
                Some(old) => self.buffer_bytes -= old.frame.len(),
                None => break,
            }
        }
        if let Some(last) = self.buffer.back() {
            let delivery = self.delivery(last, false);
            self.send(delivery);
        }
        self.seq
    }

    fn delivery(&self, buffered: &Buffered, replayed: bool) -> Delivery {
        Delivery {
            shard: self.shard,
            session: Arc::clone(&self.id),
            seq: buffered.seq,
            event: buffered.event,
            guild_id: buffered.guild_id,
            entity_id: buffered.entity_id,
            replayed,
            frame: Arc::clone(&buffered.frame),
        }
    }

    fn send(&self, delivery: Delivery) {
        if let Some(conn) = &self.conn {
            // A closed receiver means the connection is ending and will
            // detach; the event stays buffered for a resume.
            let _ = conn.tx.send(Outbound::Dispatch(delivery));
        }
    }

    /// Detaches the current connection, telling it to close with `code`.
    fn kick(&mut self, code: u16, now: Instant) {
        if let Some(old) = self.detach(now) {
            let _ = old.tx.send(Outbound::Close(code));
        }
    }
}

/// A RESUME that was accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resumed {
    pub(crate) shard: u32,
    pub(crate) session: Arc<str>,
    pub(crate) replayed: u64,
}

/// All sessions, one slot per shard.
#[derive(Debug)]
pub(crate) struct Sessions {
    clock: Clock,
    rules: SessionRules,
    slots: Vec<Mutex<Option<Session>>>,
    /// Per shard: the added latency of [`Fault::Latency`], in ms.
    latency_ms: Vec<AtomicU64>,
}

impl Sessions {
    pub(crate) fn new(shards: u32, clock: Clock, rules: SessionRules) -> Self {
        Self {
            clock,
            rules,
            slots: (0..shards).map(|_| Mutex::new(None)).collect(),
            latency_ms: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The latency added to every frame written to the shard.
    pub(crate) fn latency(&self, shard: u32) -> Duration {
        self.latency_ms
            .get(shard as usize)
            .map_or(Duration::ZERO, |ms| {
                Duration::from_millis(ms.load(Ordering::Relaxed))
            })
    }

    fn slot(&self, shard: u32) -> Option<MutexGuard<'_, Option<Session>>> {
        let slot = self.slots.get(shard as usize)?;
        Some(slot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts a new session for `shard` on `conn`, replacing (and closing)
    /// the previous one, and sequences `events` (READY, GUILD_CREATEs) as
    /// its first dispatches.
    pub(crate) fn identify(
        &self,
        shard: u32,
        session_id: Arc<str>,
        intents: u64,
        conn: ConnLink,
        events: Vec<Event>,
    ) {
        let Some(mut slot) = self.slot(shard) else {
            return;
        };
        let now = self.clock.now();
        if let Some(old) = slot.as_mut() {
            old.kick(REPLACED_CLOSE_CODE, now);
        }
        let session = slot.insert(Session::new(session_id, shard, intents));
        session.conn = Some(conn);
        for event in events {
            session.sequence(event, &self.rules, now);
        }
    }

    /// Attaches `conn` to the session `session_id`, queues every buffered
    /// dispatch after `seq` as a replay, then sequences `resumed`. `None`
    /// when the session is unknown, replaced, expired, or older events than
    /// the buffer holds are needed: the client must identify (op 9 `false`).
    pub(crate) fn resume(
        &self,
        session_id: &str,
        seq: u64,
        conn: ConnLink,
        resumed: Event,
    ) -> Option<Resumed> {
        let now = self.clock.now();
        for slot in &self.slots {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(session) = slot.as_mut().filter(|s| &*s.id == session_id) else {
                continue;
            };
            if session.expired(&self.rules, now) {
                *slot = None;
                return None;
            }
            // Age eviction happens on the next dispatch; apply it here too.
            let oldest = session
                .buffer
                .iter()
                .find(|b| now < b.at + self.rules.replay_age)
                .map_or(session.seq + 1, |b| b.seq);
            if seq > session.seq || seq + 1 < oldest {
                return None;
            }
            if session.conn.as_ref().is_some_and(|c| c.id != conn.id) {
                session.kick(REPLACED_CLOSE_CODE, now);
            }
            session.conn = Some(conn);
            session.detached_at = None;
            let replay: Vec<Delivery> = session
                .buffer
                .iter()
                .filter(|b| b.seq > seq)
                .map(|b| session.delivery(b, true))
                .collect();
            let replayed = replay.len() as u64;
            for delivery in replay {
                session.send(delivery);
            }
            session.sequence(resumed, &self.rules, now);
            return Some(Resumed {
                shard: session.shard,
                session: Arc::clone(&session.id),
                replayed,
            });
        }
        None
    }

    /// Sequences `event` in the shard's session; its `s`, or `None` when the
    /// shard has no session (then nothing is sent, as Discord has no one to
    /// send it to).
    /// An expired session is dropped here, as Discord forgets it.
    pub(crate) fn dispatch(&self, shard: u32, event: Event) -> Option<u64> {
        let mut slot = self.slot(shard)?;
        let now = self.clock.now();
        if slot.as_ref()?.expired(&self.rules, now) {
            *slot = None;
            return None;
        }
        Some(slot.as_mut()?.sequence(event, &self.rules, now))
    }

    /// The connection `conn_id` went away: its session, if still attached to
    /// it, stays resumable.
    pub(crate) fn detach(&self, shard: u32, conn_id: u64) {
        if let Some(mut slot) = self.slot(shard)
            && let Some(session) = slot.as_mut()
            && session.conn.as_ref().is_some_and(|c| c.id == conn_id)
        {
            session.detach(self.clock.now());
        }
    }

    /// The connection `conn_id` was closed with a code that ends its
    /// session: the session, if still attached to it, is dropped.
    pub(crate) fn end(&self, shard: u32, conn_id: u64) {
        if let Some(mut slot) = self.slot(shard)
            && slot
                .as_ref()
                .and_then(|s| s.conn.as_ref())
                .is_some_and(|c| c.id == conn_id)
        {
            *slot = None;
        }
    }

    /// Closes the shard's live connection with `code`. Codes that
    /// [end the session](ends_session) drop it; others leave it resumable.
    /// `false` if nothing was connected.
    pub(crate) fn close(&self, shard: u32, code: u16) -> bool {
        self.inject(shard, &Fault::Close { code })
    }

    /// Commits `fault` on the shard's live connection; `false` if it needs
    /// one and there is none.
    pub(crate) fn inject(&self, shard: u32, fault: &Fault) -> bool {
        if let Fault::Latency { ms } = fault {
            return self.latency_ms.get(shard as usize).is_some_and(|slot| {
                slot.store(*ms, Ordering::Relaxed);
                true
            });
        }
        let Some(mut slot) = self.slot(shard) else {
            return false;
        };
        let Some(session) = slot.as_mut().filter(|s| s.conn.is_some()) else {
            return false;
        };
        let now = self.clock.now();
        match *fault {
            Fault::Close { code } => {
                session.kick(code, now);
                if ends_session(code) {
                    *slot = None;
                }
            }
            // Discord writes nothing more on a connection it told to
            // reconnect: later events wait in the buffer for the RESUME.
            Fault::Reconnect => {
                if let Some(conn) = session.detach(now) {
                    let _ = conn.tx.send(Outbound::Reconnect);
                }
            }
            Fault::HalfOpen => {
                if let Some(conn) = &session.conn {
                    let _ = conn.tx.send(Outbound::HalfOpen);
                }
            }
            Fault::InvalidSession { resumable } => {
                if let Some(conn) = session.detach(now) {
                    let _ = conn.tx.send(Outbound::InvalidSession(resumable));
                }
                if !resumable {
                    *slot = None;
                }
            }
            Fault::Drop => {
                if let Some(conn) = session.detach(now) {
                    let _ = conn.tx.send(Outbound::Drop);
                }
            }
            Fault::Latency { .. } => {}
        }
        true
    }

    /// Closes every live connection with `code` (dropping the sessions if
    /// the code ends them): the token was reset.
    pub(crate) fn close_all(&self, code: u16) {
        for shard in 0..self.slots.len() {
            if let Ok(shard) = u32::try_from(shard) {
                self.close(shard, code);
            }
        }
    }

    /// The intents of the shard's session, if it has one.
    pub(crate) fn intents(&self, shard: u32) -> Option<u64> {
        self.slot(shard)?.as_ref().map(|s| s.intents)
    }

    pub(crate) fn has_session(&self, shard: u32) -> bool {
        self.slot(shard).is_some_and(|slot| slot.is_some())
    }

    /// Shards whose session has a live connection.
    pub(crate) fn ready_shards(&self) -> u32 {
        let live = self.slots.iter().filter(|slot| {
            slot.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|s| s.conn.is_some())
        });
        u32::try_from(live.count()).unwrap_or(u32::MAX)
    }

    /// Shards whose session has a live connection.
    pub(crate) fn live_shards(&self) -> Vec<u32> {
        (0..self.slots.len())
            .filter_map(|i| {
                let shard = u32::try_from(i).ok()?;
                let live = self.slot(shard)?.as_ref().is_some_and(|s| s.conn.is_some());
                live.then_some(shard)
            })
            .collect()
    }

    /// Shards that have a session, connected or not (those receive events).
    pub(crate) fn shards_with_session(&self) -> Vec<u32> {
        (0..self.slots.len())
            .filter_map(|i| {
                let shard = u32::try_from(i).ok()?;
                self.has_session(shard).then_some(shard)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = u64::MAX;
    const REPLAY_EVENTS: usize = 1000;

    fn rules() -> SessionRules {
        SessionRules {
            replay_events: REPLAY_EVENTS,
            replay_age: Duration::from_secs(60),
            ttl: Duration::from_secs(120),
        }
    }

    fn sessions(shards: u32) -> Sessions {
        Sessions::new(shards, Clock::new(1.0), rules())
    }

    fn conn(id: u64) -> (ConnLink, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ConnLink { id, tx }, rx)
    }

    fn event(name: &'static str, entity: u64) -> Event {
        Event {
            name,
            guild_id: Some(1),
            entity_id: Some(entity),
            d: "{}".into(),
        }
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Outbound>) -> Vec<Outbound> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn seqs(out: &[Outbound]) -> Vec<(u64, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Outbound::Dispatch(d) => Some((d.seq, d.replayed)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_and_replay_ages_out() {
        let sessions = sessions(1);
        let (link, _rx) = conn(1);
        sessions.identify(0, "a".into(), ALL, link, vec![event("READY", 0)]);
        sessions.detach(0, 1);
        // Within the TTL: resumable.
        tokio::time::advance(Duration::from_secs(119)).await;
        let (link, _rx2) = conn(2);
        assert!(sessions.resume("a", 1, link, event("RESUMED", 0)).is_some());
        sessions.detach(0, 2);
        // READY is now older than the replay age: a RESUME from seq 0
        // needs it and is refused; one from seq 2 (after RESUMED) is fine.
        tokio::time::advance(Duration::from_secs(61)).await;
        let (link, _rx3) = conn(3);
        assert!(
            sessions
                .resume("a", 0, link.clone(), event("RESUMED", 0))
                .is_none()
        );
        assert!(sessions.resume("a", 2, link, event("RESUMED", 0)).is_some());
        sessions.detach(0, 3);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(sessions.dispatch(0, event("MESSAGE_CREATE", 1)), None);
        assert!(!sessions.has_session(0), "expired sessions are forgotten");
    }

    #[test]
    fn faults_reach_the_connection_and_keep_or_drop_the_session() {
        let sessions = sessions(1);
        let (link, mut rx) = conn(1);
        sessions.identify(0, "a".into(), ALL, link, vec![event("READY", 0)]);
        drop(drain(&mut rx));
        assert!(sessions.inject(0, &Fault::Reconnect));
        assert!(matches!(drain(&mut rx)[..], [Outbound::Reconnect]));
        assert!(
            sessions.live_shards().is_empty(),
            "op 7 lets go of the connection"
        );
        assert!(sessions.has_session(0));

        let (link, mut rx) = conn(4);
        sessions.resume("a", 1, link, event("RESUMED", 0)).unwrap();
        drop(drain(&mut rx));
        assert!(sessions.inject(0, &Fault::InvalidSession { resumable: true }));
        assert!(matches!(
            drain(&mut rx)[..],
            [Outbound::InvalidSession(true)]
        ));
        assert!(sessions.live_shards().is_empty());
        assert!(sessions.has_session(0), "op 9 true keeps the session");
        assert!(!sessions.inject(0, &Fault::Drop), "no live connection left");

        let (link, mut rx) = conn(2);
        sessions.resume("a", 2, link, event("RESUMED", 0)).unwrap();
        drop(drain(&mut rx));
        assert!(sessions.inject(0, &Fault::Drop));
        assert!(matches!(drain(&mut rx)[..], [Outbound::Drop]));
        assert!(sessions.has_session(0));

        let (link, mut rx) = conn(3);
        sessions.resume("a", 3, link, event("RESUMED", 0)).unwrap();
        drop(drain(&mut rx));
        assert!(sessions.inject(0, &Fault::HalfOpen));
        assert!(matches!(drain(&mut rx)[..], [Outbound::HalfOpen]));
        assert!(sessions.inject(0, &Fault::InvalidSession { resumable: false }));
        assert!(!sessions.has_session(0), "op 9 false ends the session");

        assert!(sessions.inject(0, &Fault::Latency { ms: 30 }));
        assert_eq!(sessions.latency(0), Duration::from_millis(30));
        assert!(!sessions.inject(5, &Fault::Latency { ms: 30 }));
    }

    #[test]
    fn identify_sequences_ready_first() {
        let sessions = sessions(2);
        let (link, mut rx) = conn(1);
        sessions.identify(
            1,
            "a".into(),
            ALL,
            link,
            vec![event("READY", 0), event("GUILD_CREATE", 1)],
        );
        let out = drain(&mut rx);
        assert_eq!(seqs(&out), [(1, false), (2, false)]);
        let Outbound::Dispatch(first) = &out[0] else {
            panic!("expected a dispatch");
        };
        assert!(first.frame.starts_with(r#"{"t":"READY","s":1,"op":0,"d":"#));
        assert_eq!(sessions.ready_shards(), 1);
        assert_eq!(sessions.shards_with_session(), [1]);
    }

    #[test]
    fn resume_replays_exactly_the_events_after_seq_in_order() {
        let sessions = sessions(1);
        let (link, mut rx) = conn(1);
        sessions.identify(0, "a".into(), ALL, link, vec![event("READY", 0)]);
        for m in 0..5 {
            sessions.dispatch(0, event("MESSAGE_CREATE", m));
        }
        sessions.detach(0, 1);
        assert_eq!(sessions.ready_shards(), 0);
        // Sequenced and buffered while disconnected.
        assert_eq!(sessions.dispatch(0, event("MESSAGE_CREATE", 9)), Some(7));
        drop(drain(&mut rx));

        let (link, mut rx) = conn(2);
        let resumed = sessions.resume("a", 3, link, event("RESUMED", 0)).unwrap();
        assert_eq!(resumed.replayed, 4);
        assert_eq!(resumed.shard, 0);
        let out = drain(&mut rx);
        assert_eq!(
            seqs(&out),
            [(4, true), (5, true), (6, true), (7, true), (8, false)]
        );
        assert_eq!(sessions.ready_shards(), 1);
    }

    #[test]
    fn resume_of_unknown_or_future_session_is_refused() {
        let sessions = sessions(1);
        let (link, _rx) = conn(1);
        assert!(
            sessions
                .resume("nope", 0, link.clone(), event("RESUMED", 0))
                .is_none()
        );
        sessions.identify(0, "a".into(), ALL, link.clone(), vec![event("READY", 0)]);
        assert!(sessions.resume("a", 5, link, event("RESUMED", 0)).is_none());
    }

    #[test]
    fn resume_needing_evicted_events_is_refused() {
        let sessions = sessions(1);
        let (link, _rx) = conn(1);
        sessions.identify(0, "a".into(), ALL, link, vec![event("READY", 0)]);
        for m in 0..REPLAY_EVENTS as u64 + 10 {
            sessions.dispatch(0, event("MESSAGE_CREATE", m));
        }
        let (link, _rx2) = conn(2);
        assert!(
            sessions
                .resume("a", 1, link.clone(), event("RESUMED", 0))
                .is_none()
        );
        assert!(
            sessions
                .resume("a", 20, link, event("RESUMED", 0))
                .is_some()
        );
    }

    #[test]
    fn new_identify_replaces_and_closes_the_old_session() {
        let sessions = sessions(1);
        let (old, mut old_rx) = conn(1);
        sessions.identify(0, "a".into(), ALL, old, vec![event("READY", 0)]);
        let (new, _new_rx) = conn(2);
        sessions.identify(0, "b".into(), ALL, new.clone(), vec![event("READY", 0)]);
        let out = drain(&mut old_rx);
        assert!(matches!(
            out.last(),
            Some(Outbound::Close(REPLACED_CLOSE_CODE))
        ));
        assert!(sessions.resume("a", 1, new, event("RESUMED", 0)).is_none());
    }

    #[test]
    fn close_keeps_resumable_unless_fatal() {
        let sessions = sessions(1);
        let (link, mut rx) = conn(1);
        sessions.identify(0, "a".into(), ALL, link, vec![event("READY", 0)]);
        assert!(sessions.close(0, 4000));
        assert!(matches!(drain(&mut rx).last(), Some(Outbound::Close(4000))));
        assert!(!sessions.close(0, 4000), "no live connection left");
        assert!(sessions.has_session(0));

        let (link, _rx) = conn(2);
        sessions.resume("a", 1, link, event("RESUMED", 0)).unwrap();
        assert!(sessions.close(0, 4004));
        assert!(!sessions.has_session(0));
        assert_eq!(sessions.dispatch(0, event("MESSAGE_CREATE", 1)), None);

        let (link, _rx) = conn(3);
        sessions.identify(0, "b".into(), ALL, link.clone(), vec![event("READY", 0)]);
        assert!(sessions.close(0, 4009), "session timed out");
        assert!(sessions.resume("b", 1, link, event("RESUMED", 0)).is_none());
    }
}
