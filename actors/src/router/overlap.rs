//! One guild's switch from the old shard set to the new during a resharding (issue #25).
//!
//! While both sets run, Discord sends every event of a guild to the old set's shard and,
//! once that shard has the guild (its GUILD_CREATE), to the new set's too, in the same
//! order. The old set handles the guild until the new stream is *aligned* with it: an event
//! with an identity (a message, an interaction) found in both streams says where each one
//! is. Then the new set handles the guild, from the first event the old one had not handled,
//! and the old set's copies are dropped: the guild's actor sees each event once, in order.
//!
//! A guild whose streams carry no identity in common (quiet, or only member and reaction
//! events) switches once both sets have been quiet for it [`QUIET`]: nothing of it is on its
//! way any more, so the old set has handled every event the new one holds. Typing and
//! presence events may be shed by one set's buffer and not the other's, so they take no
//! part in the alignment: each is handled from the set that handles the guild when it
//! arrives.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use twilight_model::gateway::event::Event;

/// How long both sets must have been quiet for a guild that has no identified event in both
/// streams before it switches: far longer than an event takes through either set, so none
/// is still on its way.
pub(crate) const QUIET: Duration = Duration::from_secs(2);

/// Old events remembered to find the new stream's place in the old one: enough for the
/// burst a guild receives while the new shard catches up.
const HISTORY: usize = 1_024;
/// New events held until the guild switches; past it the oldest are let go (the old set
/// handles them meanwhile).
const WAITING: usize = 4_096;

/// What the alignment reads of an event.
pub(crate) trait Aligned {
    /// A value that names this event alone among the guild's events, if it has one.
    fn identity(&self) -> Option<(u8, u64)>;
    /// Whether one set may lack it (shed under load) while the other has it.
    fn transient(&self) -> bool;
    /// The guild's GUILD_CREATE: the new set's stream of the guild starts with it.
    fn joins(&self) -> bool;
}

impl Aligned for Event {
    fn identity(&self) -> Option<(u8, u64)> {
        match self {
            Event::MessageCreate(message) => Some((1, message.id.get())),
            Event::MessageDelete(deleted) => Some((2, deleted.id.get())),
            Event::InteractionCreate(interaction) => Some((3, interaction.id.get())),
            _ => None,
        }
    }

    fn transient(&self) -> bool {
        matches!(self, Event::TypingStart(_) | Event::PresenceUpdate(_))
    }

    fn joins(&self) -> bool {
        matches!(self, Event::GuildCreate(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The new set does not have the guild yet.
    Old,
    /// The new set has it and its events wait until the streams are aligned.
    Joining { since: Instant },
    /// The new set handles the guild; its next `skip` events were handled from the old one.
    Switched { skip: usize },
}

/// Which set handles one guild, and what waits to be handled when it switches.
#[derive(Debug)]
pub(crate) struct GuildSwitch<E> {
    phase: Phase,
    /// Identities of the old set's latest events handled (`None` for events without one).
    handled: VecDeque<Option<(u8, u64)>>,
    /// The new set's events since its GUILD_CREATE, not handled yet.
    waiting: VecDeque<E>,
    last_old: Option<Instant>,
    last_new: Option<Instant>,
}

impl<E> Default for GuildSwitch<E> {
    fn default() -> Self {
        Self {
            phase: Phase::Old,
            handled: VecDeque::new(),
            waiting: VecDeque::new(),
            last_old: None,
            last_new: None,
        }
    }
}

impl<E: Aligned> GuildSwitch<E> {
    /// Whether the new set has the guild (its GUILD_CREATE arrived).
    pub(crate) fn joined(&self) -> bool {
        self.phase != Phase::Old
    }

    /// Whether the new set handles the guild.
    pub(crate) fn switched(&self) -> bool {
        matches!(self.phase, Phase::Switched { .. })
    }

    /// An event of the old set: the events to handle now, in order.
    pub(crate) fn old_event(&mut self, event: E, now: Instant) -> Vec<E> {
        if self.switched() {
            return Vec::new();
        }
        if event.transient() {
            return vec![event];
        }
        self.last_old = Some(now);
        let identity = event.identity();
        if self.joined()
            && let Some(at) = identity.and_then(|id| {
                self.waiting
                    .iter()
                    .position(|waiting| waiting.identity() == Some(id))
            })
        {
            // The new stream is ahead: what it holds after this event is what the old set
            // has not handled yet.
            let ahead: Vec<E> = self.waiting.drain(..).skip(at + 1).collect();
            self.switch(0);
            return std::iter::once(event).chain(ahead).collect();
        }
        if self.handled.len() == HISTORY {
            self.handled.pop_front();
        }
        self.handled.push_back(identity);
        vec![event]
    }

    /// An event of the new set: the events to handle now, in order.
    pub(crate) fn new_event(&mut self, event: E, now: Instant) -> Vec<E> {
        match self.phase {
            Phase::Old => {
                if event.joins() {
                    self.phase = Phase::Joining { since: now };
                    self.last_new = Some(now);
                }
                // Before its GUILD_CREATE the new set has nothing of the guild; the
                // GUILD_CREATE itself the old set delivered long ago.
                Vec::new()
            }
            Phase::Switched { skip } => {
                if event.transient() {
                    vec![event]
                } else if skip > 0 {
                    self.phase = Phase::Switched { skip: skip - 1 };
                    Vec::new()
                } else {
                    vec![event]
                }
            }
            Phase::Joining { .. } if event.transient() => Vec::new(),
            Phase::Joining { .. } => {
                self.last_new = Some(now);
                let identity = event.identity();
                if let Some(at) = identity.and_then(|id| {
                    self.handled
                        .iter()
                        .rposition(|handled| *handled == Some(id))
                }) {
                    // The old stream is ahead (or level): the events it handled after this
                    // one are the new set's next ones.
                    let skip = self.handled.len() - at - 1;
                    self.waiting.clear();
                    self.switch(skip);
                    return Vec::new();
                }
                if self.waiting.len() == WAITING {
                    self.waiting.pop_front();
                }
                self.waiting.push_back(event);
                Vec::new()
            }
        }
    }

    /// A guild joined for [`QUIET`] whose sets have both been quiet that long switches: the
    /// old set has handled all the new one holds.
    pub(crate) fn tick(&mut self, now: Instant) {
        let Phase::Joining { since } = self.phase else {
            return;
        };
        let quiet = |last: Option<Instant>| last.is_none_or(|at| now.duration_since(at) >= QUIET);
        if now.duration_since(since) >= QUIET && quiet(self.last_old) && quiet(self.last_new) {
            self.switch(0);
        }
    }

    fn switch(&mut self, skip: usize) {
        self.phase = Phase::Switched { skip };
        self.handled = VecDeque::new();
        self.waiting = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A test event: its place in the guild's order, whether it carries an identity, and
    /// whether it is GUILD_CREATE or a transient one.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Ev {
        seq: u64,
        identified: bool,
        create: bool,
        transient: bool,
    }

    impl Aligned for Ev {
        fn identity(&self) -> Option<(u8, u64)> {
            self.identified.then_some((1, self.seq))
        }
        fn transient(&self) -> bool {
            self.transient
        }
        fn joins(&self) -> bool {
            self.create
        }
    }

    fn ev(seq: u64, identified: bool) -> Ev {
        Ev {
            seq,
            identified,
            create: false,
            transient: false,
        }
    }

    const CREATE: Ev = Ev {
        seq: 0,
        identified: false,
        create: true,
        transient: false,
    };

    /// Discord dispatches `events` in order, to the old set and, from `join` on (after the
    /// GUILD_CREATE), to the new one; each set delivers what was dispatched to it in order
    /// and with a lag of its own, drawn at random. When both have delivered everything
    /// dispatched, time may pass (`quiet`). Returns the sequence numbers handled.
    fn run(rng: &mut StdRng, events: &[Ev], join: usize, quiet: bool) -> Vec<u64> {
        let mut switch = GuildSwitch::default();
        let new_stream: Vec<Ev> = std::iter::once(CREATE)
            .chain(events[join..].iter().copied())
            .collect();
        let (mut dispatched, mut old, mut new) = (0, 0, 0);
        // The new set has been sent its stream up to here.
        let new_dispatched = |dispatched: usize| {
            if dispatched < join {
                0
            } else {
                dispatched - join + 1
            }
        };
        let mut now = Instant::now();
        let mut handled = Vec::new();
        let seqs = |out: Vec<Ev>| {
            out.into_iter()
                .filter(|e| !e.transient)
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        while old < events.len() || new < new_stream.len() {
            now += Duration::from_millis(1);
            let caught_up = old == dispatched && new == new_dispatched(dispatched);
            if caught_up && quiet && rng.random_bool(0.2) {
                now += QUIET;
                switch.tick(now);
            }
            match rng.random_range(0..3) {
                0 if dispatched < events.len() => dispatched += 1,
                1 if old < dispatched => {
                    old += 1;
                    handled.extend(seqs(switch.old_event(events[old - 1], now)));
                }
                2 if new < new_dispatched(dispatched) => {
                    new += 1;
                    handled.extend(seqs(switch.new_event(new_stream[new - 1], now)));
                }
                _ if dispatched < events.len() => dispatched += 1,
                _ => {}
            }
            if join == events.len() && dispatched == events.len() && new == 0 {
                // The GUILD_CREATE comes after the last event.
                new += 1;
                handled.extend(seqs(switch.new_event(CREATE, now)));
            }
        }
        handled
    }

    #[test]
    fn a_guild_sees_each_event_once_in_order_whichever_set_runs_ahead() {
        let mut rng = StdRng::seed_from_u64(25);
        for case in 0..2_000 {
            let len = rng.random_range(1..60);
            let identified = rng.random_range(0.0..1.0);
            let events: Vec<Ev> = (1..=len)
                .map(|seq| Ev {
                    transient: rng.random_bool(0.1),
                    ..ev(seq, rng.random_bool(identified))
                })
                .collect();
            let join = rng.random_range(0..=events.len());
            let quiet = rng.random_bool(0.5);
            let handled = run(&mut rng, &events, join, quiet);
            let expected: Vec<u64> = events
                .iter()
                .filter(|e| !e.transient)
                .map(|e| e.seq)
                .collect();
            assert_eq!(handled, expected, "case {case}: join at {join}, {events:?}");
        }
    }

    #[test]
    fn the_old_set_handles_until_an_identified_event_aligns_the_streams() {
        let now = Instant::now();
        let mut switch = GuildSwitch::default();
        assert_eq!(switch.old_event(ev(1, false), now), vec![ev(1, false)]);
        assert!(
            switch.new_event(ev(1, false), now).is_empty(),
            "no GUILD_CREATE yet"
        );
        assert!(switch.new_event(CREATE, now).is_empty());
        assert!(switch.joined() && !switch.switched());
        // The new set runs ahead by two events: they wait.
        assert!(switch.new_event(ev(2, true), now).is_empty());
        assert!(switch.new_event(ev(3, false), now).is_empty());
        // The old set delivers the identified one: from here on the new set handles.
        assert_eq!(
            switch.old_event(ev(2, true), now),
            vec![ev(2, true), ev(3, false)]
        );
        assert!(switch.switched());
        assert!(switch.old_event(ev(3, false), now).is_empty());
        assert_eq!(switch.new_event(ev(4, false), now), vec![ev(4, false)]);
    }

    #[test]
    fn a_quiet_guild_switches_after_both_sets_were_quiet() {
        let start = Instant::now();
        let mut switch: GuildSwitch<Ev> = GuildSwitch::default();
        switch.new_event(CREATE, start);
        switch.tick(start + QUIET / 2);
        assert!(!switch.switched());
        switch.old_event(ev(1, false), start + QUIET / 2);
        switch.new_event(ev(1, false), start + QUIET);
        switch.tick(start + QUIET);
        assert!(!switch.switched(), "both sets spoke within the quiet time");
        switch.tick(start + QUIET * 2);
        assert!(switch.switched());
        assert!(switch.old_event(ev(2, false), start + QUIET * 2).is_empty());
        assert_eq!(
            switch.new_event(ev(2, false), start + QUIET * 2),
            vec![ev(2, false)]
        );
    }
}
