//! Members' recent messages, for the rules that count them (message spam, duplicate text):
//! per guild, in the automod feature's state. Bounded three ways: each member keeps at most
//! the largest count a rule needs, only messages within the longest window, and a guild
//! tracks at most [`MEMBERS_MAX`] members, the idle ones dropped first.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use super::rules::Recent;

/// Members whose recent messages a guild keeps; past it the idle ones go, then the stalest.
pub(crate) const MEMBERS_MAX: usize = 10_000;
/// Every this many messages, members idle for the longest window are dropped.
const SWEEP_EVERY: u32 = 1_024;

#[derive(Debug, Default)]
pub(crate) struct Activity {
    members: HashMap<u64, Recent>,
    since_sweep: u32,
}

impl Activity {
    /// Adds a member's message and returns their messages within `window` (at most `keep`).
    pub(crate) fn record(
        &mut self,
        member: u64,
        text: &str,
        now: Instant,
        window: Duration,
        keep: usize,
    ) -> &Recent {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY
            || (self.members.len() >= MEMBERS_MAX && !self.members.contains_key(&member))
        {
            self.sweep(now, window);
        }
        let recent = self.members.entry(member).or_default();
        while recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
            || recent.len() >= keep.max(1)
        {
            recent.pop_front();
        }
        recent.push_back((now, fingerprint(text)));
        recent
    }

    /// Forgets a member's messages: after a rule acted on them, the next ones count anew.
    pub(crate) fn forget(&mut self, member: u64) {
        self.members.remove(&member);
    }

    #[cfg(test)]
    fn members(&self) -> usize {
        self.members.len()
    }

    fn sweep(&mut self, now: Instant, window: Duration) {
        self.since_sweep = 0;
        let idle = |recent: &Recent| {
            recent
                .back()
                .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= window)
        };
        self.members.retain(|_, recent| !idle(recent));
        if self.members.len() >= MEMBERS_MAX {
            let stalest = self
                .members
                .iter()
                .min_by_key(|(_, recent)| recent.back().map(|(at, _)| *at))
                .map(|(member, _)| *member);
            if let Some(member) = stalest {
                self.members.remove(&member);
            }
        }
    }
}

/// The text as duplicates are compared: any case, any spacing.
fn fingerprint(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    for word in text.split_whitespace() {
        for c in word.chars().flat_map(char::to_lowercase) {
            c.hash(&mut hasher);
        }
        ' '.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    #[test]
    fn a_member_keeps_only_the_window_and_the_count_a_rule_needs() {
        let mut activity = Activity::default();
        let start = Instant::now();
        for n in 0..20 {
            activity.record(1, "hi", start + Duration::from_millis(n * 100), WINDOW, 5);
        }
        let recent = activity.record(1, "hi", start + Duration::from_secs(2), WINDOW, 5);
        assert_eq!(recent.len(), 5, "at most `keep`");
        let recent = activity.record(1, "later", start + Duration::from_secs(30), WINDOW, 5);
        assert_eq!(recent.len(), 1, "older than the window: gone");
    }

    #[test]
    fn duplicates_ignore_case_and_spacing() {
        assert_eq!(fingerprint("Buy  NOW"), fingerprint("buy now "));
        assert_ne!(fingerprint("buy now"), fingerprint("buynow"));
    }

    #[test]
    fn members_are_bounded_and_idle_ones_go_first() {
        let mut activity = Activity::default();
        let start = Instant::now();
        for member in 0..MEMBERS_MAX as u64 {
            activity.record(member, "x", start, WINDOW, 3);
        }
        assert_eq!(activity.members(), MEMBERS_MAX);
        // Still active: the stalest one makes room.
        activity.record(u64::MAX, "x", start + Duration::from_secs(1), WINDOW, 3);
        assert_eq!(activity.members(), MEMBERS_MAX);
        // After the window every earlier member is idle and dropped at once.
        activity.record(
            u64::MAX - 1,
            "x",
            start + WINDOW + Duration::from_secs(1),
            WINDOW,
            3,
        );
        assert_eq!(activity.members(), 1);
    }
}
