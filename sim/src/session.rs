//! Gateway sessions: each with its `[shard, num_shards]`, its sequence
//! counter, its replay buffer and the connection it is attached to, if any.
//!
//! Discord lets a bot hold several sessions for one shard (a second IDENTIFY
//! does not end the first: both get the shard's events) and sessions of
//! different shard counts at once (how a bot reshards with no downtime).
//! Sessions of the world's shard count live in one slot per shard, so the
//! hot path locks only its shard; the rare others share one list.
//!
//! Invariant: a session's dispatches reach its connection in `s` order.
//! Sequencing, buffering and handing to the connection's writer happen under
//! the lock holding the session, and each connection has one writer draining
//! a FIFO. Dispatches made while no connection is attached are still
//! sequenced and buffered, as Discord queues them for a RESUME.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use twilight_model::gateway::Intents;

use crate::clock::Clock;
use crate::faults::Fault;
use crate::payloads;
use crate::world::shard_of;

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

/// Close code sent to a connection whose session was taken over by a RESUME
/// on another connection: "session timed out". Discord documents nothing
/// for this case; it is not fatal, so a client that is still alive tries to
/// resume and learns where the session went.
pub(crate) const REPLACED_CLOSE_CODE: u16 = 4009;

/// Close codes after which Discord will not let the session resume: the
/// fatal ones (4004, 4010..=4014, after which twilight stops the shard) and
/// 4007/4009, after which Discord wants a new session (twilight still tries
/// to resume and must then get op 9 `false`).
pub(crate) fn ends_session(code: u16) -> bool {
    matches!(code, 4004 | 4007 | 4009 | 4010..=4014)
}

/// Client close codes that end the session: Discord documents that closing
/// with 1000 or 1001 invalidates it, any other code leaves it resumable.
pub(crate) fn client_close_ends_session(code: u16) -> bool {
    matches!(code, 1000 | 1001)
}

/// The `[shard_id, num_shards]` a session identified with: it gets the
/// events of the guilds with `(guild_id >> 22) % num_shards == shard_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) shard: u32,
    pub(crate) total: u32,
}

impl Layout {
    /// Events with no guild (DMs) go to shard 0.
    pub(crate) fn covers(self, guild_id: Option<u64>) -> bool {
        guild_id.map_or(0, |id| shard_of(id, self.total)) == self.shard
    }
}

/// What an IDENTIFY asked for that decides which events and fields its
/// session gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wants {
    pub(crate) intents: Intents,
    /// Members above which a guild is `large` and its GUILD_CREATE leaves
    /// offline members out (50..=250).
    pub(crate) large_threshold: u32,
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
    /// Send op 1: Discord asks the client for a heartbeat now.
    RequestHeartbeat,
}

/// A sequenced dispatch on its way to a websocket; it becomes a ledger
/// record once written.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) shard: u32,
    /// The session's `num_shards`.
    pub(crate) shards: u32,
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
#[derive(Clone, Debug)]
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
    layout: Layout,
    wants: Wants,
    /// Last sequence number handed out.
    seq: u64,
    buffer: VecDeque<Buffered>,
    buffer_bytes: usize,
    conn: Option<ConnLink>,
    /// When the last connection went; `None` while one is attached.
    detached_at: Option<Instant>,
}

impl Session {
    fn new(id: Arc<str>, layout: Layout, wants: Wants) -> Self {
        Self {
            id,
            layout,
            wants,
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
    fn sequence(&mut self, event: &Event, rules: &SessionRules, now: Instant) -> u64 {
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
            shard: self.layout.shard,
            shards: self.layout.total,
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

    /// Commits `fault` on the attached connection; `false` when the fault
    /// ends the session.
    fn commit(&mut self, fault: &Fault, now: Instant) -> bool {
        match *fault {
            Fault::Close { code } => {
                self.kick(code, now);
                !ends_session(code)
            }
            // Discord writes nothing more on a connection it told to
            // reconnect: later events wait in the buffer for the RESUME.
            Fault::Reconnect => {
                if let Some(conn) = self.detach(now) {
                    let _ = conn.tx.send(Outbound::Reconnect);
                }
                true
            }
            Fault::HalfOpen | Fault::RequestHeartbeat => {
                if let Some(conn) = &self.conn {
                    let work = if *fault == Fault::HalfOpen {
                        Outbound::HalfOpen
                    } else {
                        Outbound::RequestHeartbeat
                    };
                    let _ = conn.tx.send(work);
                }
                true
            }
            Fault::InvalidSession { resumable } => {
                if let Some(conn) = self.detach(now) {
                    let _ = conn.tx.send(Outbound::InvalidSession(resumable));
                }
                resumable
            }
            Fault::Drop => {
                if let Some(conn) = self.detach(now) {
                    let _ = conn.tx.send(Outbound::Drop);
                }
                true
            }
            Fault::Latency { .. } => true,
        }
    }
}

/// A RESUME that was accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resumed {
    pub(crate) layout: Layout,
    pub(crate) wants: Wants,
    pub(crate) session: Arc<str>,
    pub(crate) replayed: u64,
}

type Group = Vec<Session>;

/// All sessions: those of the world's shard count by shard, the others in
/// one list.
#[derive(Debug)]
pub(crate) struct Sessions {
    clock: Clock,
    rules: SessionRules,
    /// The world's shard count.
    shards: u32,
    slots: Vec<Mutex<Group>>,
    /// Sessions identified with another shard count (resharding).
    other_layouts: Mutex<Group>,
    /// Whether `other_layouts` may hold a session, so the hot path takes
    /// no shared lock while no bot reshards. Set under that lock.
    resharding: AtomicBool,
    /// Per shard: the added latency of [`Fault::Latency`], in ms.
    latency_ms: Vec<AtomicU64>,
}

fn lock(group: &Mutex<Group>) -> MutexGuard<'_, Group> {
    group.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    pub(crate) fn new(shards: u32, clock: Clock, rules: SessionRules) -> Self {
        Self {
            clock,
            rules,
            shards,
            slots: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
            other_layouts: Mutex::new(Vec::new()),
            resharding: AtomicBool::new(false),
            latency_ms: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The world's shard count: faults are injected into its sessions.
    pub(crate) fn shards(&self) -> u32 {
        self.shards
    }

    /// The latency added to every frame written to the shard (of the
    /// world's shard count).
    pub(crate) fn latency(&self, layout: Layout) -> Duration {
        if layout.total != self.shards {
            return Duration::ZERO;
        }
        self.latency_ms
            .get(layout.shard as usize)
            .map_or(Duration::ZERO, |ms| {
                Duration::from_millis(ms.load(Ordering::Relaxed))
            })
    }

    /// The group holding sessions of `layout`.
    fn group(&self, layout: Layout) -> Option<MutexGuard<'_, Group>> {
        if layout.total == self.shards {
            self.slots.get(layout.shard as usize).map(lock)
        } else {
            Some(lock(&self.other_layouts))
        }
    }

    /// Starts a new session for `layout` on `conn` and sequences `events`
    /// (READY, GUILD_CREATEs) as its first dispatches. Other sessions of the
    /// same shard carry on, as on Discord.
    pub(crate) fn identify(
        &self,
        layout: Layout,
        session_id: Arc<str>,
        wants: Wants,
        conn: ConnLink,
        events: Vec<Event>,
    ) {
        let Some(mut group) = self.group(layout) else {
            return;
        };
        let now = self.clock.now();
        group.retain(|s| !s.expired(&self.rules, now));
        let mut session = Session::new(session_id, layout, wants);
        session.conn = Some(conn);
        for event in &events {
            session.sequence(event, &self.rules, now);
        }
        group.push(session);
        if layout.total != self.shards {
            self.resharding.store(true, Ordering::Release);
        }
    }

    /// The sessions of other shard counts, unless there are none.
    fn others(&self) -> Option<MutexGuard<'_, Group>> {
        if !self.resharding.load(Ordering::Acquire) {
            return None;
        }
        let group = lock(&self.other_layouts);
        if group.is_empty() {
            self.resharding.store(false, Ordering::Release);
            return None;
        }
        Some(group)
    }

    /// Attaches `conn` to the session `session_id`, queues every buffered
    /// dispatch after `seq` as a replay, then sequences `resumed`. A
    /// connection still attached to the session is closed with
    /// [`REPLACED_CLOSE_CODE`]. `None` when the session is unknown, ended,
    /// expired, or older events than the buffer holds are needed: the client
    /// must identify (op 9 `false`).
    pub(crate) fn resume(
        &self,
        session_id: &str,
        seq: u64,
        conn: ConnLink,
        resumed: Event,
    ) -> Option<Resumed> {
        let now = self.clock.now();
        for group in self
            .slots
            .iter()
            .chain(std::iter::once(&self.other_layouts))
        {
            let mut group = lock(group);
            let Some(index) = group.iter().position(|s| &*s.id == session_id) else {
                continue;
            };
            if group[index].expired(&self.rules, now) {
                group.swap_remove(index);
                return None;
            }
            let session = &mut group[index];
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
            session.sequence(&resumed, &self.rules, now);
            return Some(Resumed {
                layout: session.layout,
                wants: session.wants,
                session: Arc::clone(&session.id),
                replayed,
            });
        }
        None
    }

    /// Sequences `event` in every session that gets its guild (on `shard` of
    /// the world's shard count, or of another count); the `s` it got in one
    /// of them, or `None` when no session got it (then nothing is sent, as
    /// Discord has no one to send it to).
    pub(crate) fn dispatch(&self, shard: u32, event: Event) -> Option<u64> {
        let mut last = None;
        self.each_session(shard, event.guild_id, |session, now| {
            last = Some(session.sequence(&event, &self.rules, now));
        });
        last
    }

    /// As [`dispatch`](Self::dispatch), with the event made for each
    /// session from what it asked for (`None`: not for that session).
    pub(crate) fn dispatch_with(
        &self,
        shard: u32,
        guild_id: Option<u64>,
        mut make: impl FnMut(Wants) -> Option<Event>,
    ) -> Option<u64> {
        let mut last = None;
        self.each_session(shard, guild_id, |session, now| {
            if let Some(event) = make(session.wants) {
                last = Some(session.sequence(&event, &self.rules, now));
            }
        });
        last
    }

    /// Runs `f` on every live session that gets the guild's events, under
    /// the lock holding it. Expired sessions are dropped here, as Discord
    /// forgets them.
    fn each_session(
        &self,
        shard: u32,
        guild_id: Option<u64>,
        mut f: impl FnMut(&mut Session, Instant),
    ) {
        let now = self.clock.now();
        let mut visit = |group: &mut Group, only_covering: bool| {
            group.retain(|s| !s.expired(&self.rules, now));
            for session in group.iter_mut() {
                if !only_covering || session.layout.covers(guild_id) {
                    f(session, now);
                }
            }
        };
        if let Some(slot) = self.slots.get(shard as usize) {
            visit(&mut lock(slot), false);
        }
        if let Some(mut others) = self.others() {
            visit(&mut others, true);
        }
    }

    /// Sequences `event` in the one session `session_id` of `layout` (an
    /// answer to that session's request); its `s`, if the session lives.
    pub(crate) fn dispatch_to(
        &self,
        layout: Layout,
        session_id: &str,
        event: Event,
    ) -> Option<u64> {
        let now = self.clock.now();
        let mut group = self.group(layout)?;
        let session = group
            .iter_mut()
            .find(|s| &*s.id == session_id && !s.expired(&self.rules, now))?;
        Some(session.sequence(&event, &self.rules, now))
    }

    /// The connection `conn_id` went away: its session, if still attached to
    /// it, stays resumable.
    pub(crate) fn detach(&self, layout: Layout, conn_id: u64) {
        let now = self.clock.now();
        if let Some(mut group) = self.group(layout)
            && let Some(session) = group
                .iter_mut()
                .find(|s| s.conn.as_ref().is_some_and(|c| c.id == conn_id))
        {
            session.detach(now);
        }
    }

    /// The connection `conn_id` was closed in a way that ends its session:
    /// the session, if still attached to it, is dropped.
    pub(crate) fn end(&self, layout: Layout, conn_id: u64) {
        if let Some(mut group) = self.group(layout) {
            group.retain(|s| s.conn.as_ref().is_none_or(|c| c.id != conn_id));
        }
    }

    /// Closes the shard's live connections with `code`. Codes that
    /// [end the session](ends_session) drop it; others leave it resumable.
    /// `false` if nothing was connected.
    #[cfg(test)]
    pub(crate) fn close(&self, shard: u32, code: u16) -> bool {
        self.inject(shard, &Fault::Close { code })
    }

    /// Commits `fault` on every live connection of the shard (of the
    /// world's shard count); `false` if it needs one and there is none.
    pub(crate) fn inject(&self, shard: u32, fault: &Fault) -> bool {
        if let Fault::Latency { ms } = fault {
            return self.latency_ms.get(shard as usize).is_some_and(|slot| {
                slot.store(*ms, Ordering::Relaxed);
                true
            });
        }
        let Some(slot) = self.slots.get(shard as usize) else {
            return false;
        };
        Self::commit_all(&mut lock(slot), fault, self.clock.now())
    }

    fn commit_all(group: &mut Group, fault: &Fault, now: Instant) -> bool {
        let mut any = false;
        group.retain_mut(|session| {
            if session.conn.is_none() {
                return true;
            }
            any = true;
            session.commit(fault, now)
        });
        any
    }

    /// Closes every live connection, of any shard count, with `code`
    /// (dropping the sessions if the code ends them): the token was reset.
    pub(crate) fn close_all(&self, code: u16) {
        let fault = Fault::Close { code };
        let now = self.clock.now();
        for group in self
            .slots
            .iter()
            .chain(std::iter::once(&self.other_layouts))
        {
            Self::commit_all(&mut lock(group), &fault, now);
        }
    }

    /// Whether any session gets the events of `guild_id` on `shard` (of the
    /// world's shard count).
    pub(crate) fn has_session_for(&self, shard: u32, guild_id: u64) -> bool {
        self.slots
            .get(shard as usize)
            .is_some_and(|slot| !lock(slot).is_empty())
            || self
                .others()
                .is_some_and(|others| others.iter().any(|s| s.layout.covers(Some(guild_id))))
    }

    /// Whether any session that gets the shard's guilds has all of
    /// `intents`.
    pub(crate) fn anyone_wants(&self, shard: u32, intents: Intents) -> bool {
        let wants = |s: &Session| s.wants.intents.contains(intents);
        self.slots
            .get(shard as usize)
            .is_some_and(|slot| lock(slot).iter().any(wants))
            || self.others().is_some_and(|others| others.iter().any(wants))
    }

    #[cfg(test)]
    fn has_session(&self, shard: u32) -> bool {
        self.slots
            .get(shard as usize)
            .is_some_and(|slot| !lock(slot).is_empty())
    }

    /// Shards (of the world's shard count) with a live connection.
    pub(crate) fn ready_shards(&self) -> u32 {
        u32::try_from(self.live_shards().len()).unwrap_or(u32::MAX)
    }

    /// Shards (of the world's shard count) with a live connection.
    pub(crate) fn live_shards(&self) -> Vec<u32> {
        (0..self.shards)
            .filter(|&shard| {
                lock(&self.slots[shard as usize])
                    .iter()
                    .any(|s| s.conn.is_some())
            })
            .collect()
    }

    /// Shards (of the world's shard count) whose guilds some session gets,
    /// connected or not: every shard while a session of another shard
    /// count lives.
    pub(crate) fn shards_with_session(&self) -> Vec<u32> {
        let resharding = self.others().is_some();
        (0..self.shards)
            .filter(|&shard| resharding || !lock(&self.slots[shard as usize]).is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Wants = Wants {
        intents: Intents::all(),
        large_threshold: 50,
    };

    fn on(shard: u32, total: u32) -> Layout {
        Layout { shard, total }
    }
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
        sessions.identify(on(0, 1), "a".into(), ALL, link, vec![event("READY", 0)]);
        sessions.detach(on(0, 1), 1);
        // Within the TTL: resumable.
        tokio::time::advance(Duration::from_secs(119)).await;
        let (link, _rx2) = conn(2);
        assert!(sessions.resume("a", 1, link, event("RESUMED", 0)).is_some());
        sessions.detach(on(0, 1), 2);
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
        sessions.detach(on(0, 1), 3);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(sessions.dispatch(0, event("MESSAGE_CREATE", 1)), None);
        assert!(!sessions.has_session(0), "expired sessions are forgotten");
    }

    #[test]
    fn faults_reach_the_connection_and_keep_or_drop_the_session() {
        let sessions = sessions(1);
        let (link, mut rx) = conn(1);
        sessions.identify(on(0, 1), "a".into(), ALL, link, vec![event("READY", 0)]);
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
        assert_eq!(sessions.latency(on(0, 1)), Duration::from_millis(30));
        assert!(!sessions.inject(5, &Fault::Latency { ms: 30 }));
    }

    #[test]
    fn identify_sequences_ready_first() {
        let sessions = sessions(2);
        let (link, mut rx) = conn(1);
        sessions.identify(
            on(1, 2),
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
        sessions.identify(on(0, 1), "a".into(), ALL, link, vec![event("READY", 0)]);
        for m in 0..5 {
            sessions.dispatch(0, event("MESSAGE_CREATE", m));
        }
        sessions.detach(on(0, 1), 1);
        assert_eq!(sessions.ready_shards(), 0);
        // Sequenced and buffered while disconnected.
        assert_eq!(sessions.dispatch(0, event("MESSAGE_CREATE", 9)), Some(7));
        drop(drain(&mut rx));

        let (link, mut rx) = conn(2);
        let resumed = sessions.resume("a", 3, link, event("RESUMED", 0)).unwrap();
        assert_eq!(resumed.replayed, 4);
        assert_eq!(resumed.layout, on(0, 1));
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
        sessions.identify(
            on(0, 1),
            "a".into(),
            ALL,
            link.clone(),
            vec![event("READY", 0)],
        );
        assert!(sessions.resume("a", 5, link, event("RESUMED", 0)).is_none());
    }

    #[test]
    fn resume_needing_evicted_events_is_refused() {
        let sessions = sessions(1);
        let (link, _rx) = conn(1);
        sessions.identify(on(0, 1), "a".into(), ALL, link, vec![event("READY", 0)]);
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
    fn a_second_identify_keeps_the_first_session_and_both_get_the_events() {
        let sessions = sessions(1);
        let (old, mut old_rx) = conn(1);
        sessions.identify(on(0, 1), "a".into(), ALL, old, vec![event("READY", 0)]);
        let (new, mut new_rx) = conn(2);
        sessions.identify(on(0, 1), "b".into(), ALL, new, vec![event("READY", 0)]);
        sessions.dispatch(0, event("MESSAGE_CREATE", 1));
        assert_eq!(seqs(&drain(&mut old_rx)), [(1, false), (2, false)]);
        assert_eq!(seqs(&drain(&mut new_rx)), [(1, false), (2, false)]);

        // A RESUME of "a" elsewhere takes it from its open connection.
        let (third, mut third_rx) = conn(3);
        sessions.resume("a", 2, third, event("RESUMED", 0)).unwrap();
        assert!(matches!(
            drain(&mut old_rx)[..],
            [Outbound::Close(REPLACED_CLOSE_CODE)]
        ));
        assert_eq!(seqs(&drain(&mut third_rx)), [(3, false)]);
    }

    #[test]
    fn sessions_of_another_shard_count_get_their_guilds_only() {
        let sessions = sessions(1);
        let (one, mut one_rx) = conn(1);
        sessions.identify(on(0, 1), "a".into(), ALL, one, Vec::new());
        let (two, mut two_rx) = conn(2);
        sessions.identify(on(1, 2), "b".into(), ALL, two, Vec::new());
        // Guild ids whose shard of 2 is 0, then 1.
        let even = Event {
            guild_id: Some(2 << 22),
            ..event("MESSAGE_CREATE", 1)
        };
        let odd = Event {
            guild_id: Some(3 << 22),
            ..event("MESSAGE_CREATE", 2)
        };
        sessions.dispatch(0, even);
        sessions.dispatch(0, odd);
        assert_eq!(seqs(&drain(&mut one_rx)), [(1, false), (2, false)]);
        let two_out = drain(&mut two_rx);
        assert_eq!(seqs(&two_out), [(1, false)]);
        assert!(matches!(&two_out[0], Outbound::Dispatch(d) if d.entity_id == Some(2)));
        assert_eq!(sessions.shards_with_session(), [0]);
        assert!(sessions.has_session_for(0, 3 << 22));
    }

    #[test]
    fn close_keeps_resumable_unless_fatal() {
        let sessions = sessions(1);
        let (link, mut rx) = conn(1);
        sessions.identify(on(0, 1), "a".into(), ALL, link, vec![event("READY", 0)]);
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
        sessions.identify(
            on(0, 1),
            "b".into(),
            ALL,
            link.clone(),
            vec![event("READY", 0)],
        );
        assert!(sessions.close(0, 4009), "session timed out");
        assert!(sessions.resume("b", 1, link, event("RESUMED", 0)).is_none());
    }
}
