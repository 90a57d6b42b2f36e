//! The resharding record: the one way the cluster's shard count changes after it formed.
//!
//! A resharding from `from` to `to` shards runs the new set beside the old one; each new
//! shard becomes *ready* (its session up, its guilds' GUILD_CREATEs in), then *switched* (its
//! guilds are handled by it, no longer by the old set). Completing it stores `to` as the
//! shard count in the same decision; aborting keeps `from`. Every write is a compare-and-set
//! on `version`, so two leaders (a failover midway) never both advance it.

use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// The largest shard count a resharding may ask for: far past any bot Discord serves
/// (2,500 guilds a shard), small enough that a record stays a few kilobytes.
pub const MAX_SHARDS: u32 = 65_536;

/// Where a resharding stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReshardPhase {
    /// The new set runs (or is starting) beside the old one.
    Running,
    /// Every guild is handled by the new set and the shard count is `to`.
    Completed,
    /// Given up: the old set keeps running and the shard count is still `from`.
    Aborted,
}

impl ReshardPhase {
    pub fn is_over(self) -> bool {
        self != Self::Running
    }
}

/// A resharding, the running one or the last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resharding {
    pub from: u32,
    pub to: u32,
    pub phase: ReshardPhase,
    /// Shards of the new set whose session is up and whose guilds' GUILD_CREATEs are in,
    /// ascending.
    pub ready: Vec<u32>,
    /// Shards of the new set that handle their guilds now (a subset of `ready`), ascending.
    pub switched: Vec<u32>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    /// The compare-and-set token: a write names the version it read (0 when there was no
    /// record) and the store keeps it with `version + 1`.
    pub version: u64,
    /// Every shard count the cluster had before `from`, ascending: rows stay in the
    /// partition of the count they were written under. `None` in a record written before
    /// they were kept, when they are not known.
    #[serde(default)]
    pub earlier: Option<Vec<u32>>,
}

impl Resharding {
    /// A new resharding as its first write presents it: `previous` is the record read
    /// before (the last resharding, over), `None` if there was none.
    pub fn start(from: u32, to: u32, previous: Option<&Resharding>, at: Timestamp) -> Self {
        Self {
            from,
            to,
            phase: ReshardPhase::Running,
            ready: Vec::new(),
            switched: Vec::new(),
            started_at: at,
            updated_at: at,
            version: previous.map_or(0, |p| p.version),
            earlier: earlier_counts(previous, from),
        }
    }
}

/// The shard counts the cluster had before `count`, the one in force, as `record` (the
/// running or last resharding) tells them, ascending: none if it never resharded, `None`
/// if they are not known (a record from before they were kept).
pub fn earlier_counts(record: Option<&Resharding>, count: u32) -> Option<Vec<u32>> {
    let Some(record) = record else {
        return Some(Vec::new());
    };
    let mut counts = record.earlier.clone()?;
    // A completed resharding's `from` is a count the cluster had; an aborted or running
    // one's is still in force. A running one's `to` is not had yet: no node writes under
    // it before the completion's `Resharded` tells it so.
    counts.extend(Some(record.from).filter(|&c| c != count));
    counts.sort_unstable();
    counts.dedup();
    Some(counts)
}

/// Whether `next` may replace `stored` (what the store holds) while the shard count is
/// `count`: the checks both backends run inside their compare-and-set, so a bad write
/// changes nothing. [`StorageError::Conflict`] when `next` was not made from the stored
/// version; [`StorageError::Invalid`] when it is not a step a resharding can take.
pub(crate) fn check_next(
    stored: Option<&Resharding>,
    count: Option<u32>,
    next: &Resharding,
) -> Result<(), StorageError> {
    let current = stored.map_or(0, |r| r.version);
    if next.version != current {
        return Err(StorageError::Conflict {
            expected: next.version,
            current,
        });
    }
    let invalid = |why: String| Err(StorageError::Invalid(why));
    match stored {
        Some(running) if !running.phase.is_over() => {
            if (next.from, next.to, next.started_at)
                != (running.from, running.to, running.started_at)
            {
                return invalid(format!(
                    "a resharding from {} to {} shards is running; abort it first",
                    running.from, running.to
                ));
            }
            // The count already changed (a completion on ScyllaDB stored it, then failed
            // before the record): finishing it is the only step left.
            if count == Some(running.to) && next.phase != ReshardPhase::Completed {
                return invalid(format!(
                    "the shard count is already {}: this resharding can only complete",
                    running.to
                ));
            }
        }
        _ => {
            let Some(count) = count else {
                return invalid("the cluster has no shard count yet".to_owned());
            };
            if next.phase != ReshardPhase::Running
                || !next.ready.is_empty()
                || !next.switched.is_empty()
            {
                return invalid("a resharding starts running, with no shard ready".to_owned());
            }
            if next.from != count {
                return invalid(format!("the shard count is {count}, not {}", next.from));
            }
            if next.to == 0 || next.to > MAX_SHARDS || next.to == next.from {
                return invalid(format!(
                    "cannot reshard {} shards to {}: the new count must differ and be 1 to {MAX_SHARDS}",
                    next.from, next.to
                ));
            }
        }
    }
    for (name, list) in [("ready", &next.ready), ("switched", &next.switched)] {
        if !list.windows(2).all(|w| w[0] < w[1]) || list.last().is_some_and(|&s| s >= next.to) {
            return invalid(format!(
                "{name} shards must be ascending shard ids below {}",
                next.to
            ));
        }
    }
    if let Some(shard) = next
        .switched
        .iter()
        .find(|s| next.ready.binary_search(s).is_err())
    {
        return invalid(format!("shard {shard} is switched but not ready"));
    }
    if next.phase == ReshardPhase::Completed && next.switched.len() != next.to as usize {
        return invalid(format!(
            "only {} of {} shards are switched: the resharding cannot complete",
            next.switched.len(),
            next.to
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(from: u32, to: u32) -> Resharding {
        Resharding {
            version: 1,
            ..Resharding::start(from, to, None, Timestamp(5))
        }
    }

    #[test]
    fn a_resharding_starts_only_from_the_count_in_force_to_another() {
        let new = Resharding::start(8, 16, None, Timestamp(1));
        assert!(check_next(None, Some(8), &new).is_ok());
        for (count, to) in [(Some(4), 16), (None, 16), (Some(8), 8), (Some(8), 0)] {
            let next = Resharding { to, ..new.clone() };
            assert!(
                matches!(
                    check_next(None, count, &next),
                    Err(StorageError::Invalid(_))
                ),
                "{count:?} to {to}"
            );
        }
        let too_many = Resharding {
            to: MAX_SHARDS + 1,
            ..new.clone()
        };
        assert!(check_next(None, Some(8), &too_many).is_err());
        // A second one waits for the first to be over, whatever version it names.
        let first = running(8, 16);
        assert!(matches!(
            check_next(Some(&first), Some(8), &new),
            Err(StorageError::Conflict {
                expected: 0,
                current: 1
            })
        ));
        assert!(matches!(
            check_next(
                Some(&first),
                Some(8),
                &Resharding::start(8, 32, Some(&first), Timestamp(9))
            ),
            Err(StorageError::Invalid(_))
        ));
        let over = Resharding {
            phase: ReshardPhase::Aborted,
            ..first
        };
        assert!(
            check_next(
                Some(&over),
                Some(8),
                &Resharding::start(8, 32, Some(&over), Timestamp(9))
            )
            .is_ok()
        );
    }

    #[test]
    fn progress_is_ascending_switched_is_ready_and_completion_needs_every_shard() {
        let stored = running(2, 4);
        let step = |ready: Vec<u32>, switched: Vec<u32>, phase| Resharding {
            ready,
            switched,
            phase,
            ..stored.clone()
        };
        use ReshardPhase::*;
        assert!(check_next(Some(&stored), Some(2), &step(vec![0, 2], vec![2], Running)).is_ok());
        assert!(check_next(Some(&stored), Some(2), &step(vec![2, 0], vec![], Running)).is_err());
        assert!(check_next(Some(&stored), Some(2), &step(vec![0, 4], vec![], Running)).is_err());
        assert!(check_next(Some(&stored), Some(2), &step(vec![0], vec![1], Running)).is_err());
        assert!(
            check_next(
                Some(&stored),
                Some(2),
                &step(vec![0, 1, 2], vec![0, 1, 2], Completed)
            )
            .is_err()
        );
        let all = vec![0, 1, 2, 3];
        assert!(check_next(Some(&stored), Some(2), &step(all.clone(), all, Completed)).is_ok());
        assert!(check_next(Some(&stored), Some(2), &step(vec![], vec![], Aborted)).is_ok());
        // A completion that stored the count but not the record can only be finished.
        assert!(check_next(Some(&stored), Some(4), &step(vec![], vec![], Aborted)).is_err());
        let all = vec![0, 1, 2, 3];
        assert!(check_next(Some(&stored), Some(4), &step(all.clone(), all, Completed)).is_ok());
    }

    #[test]
    fn the_counts_had_before_carry_from_one_resharding_to_the_next() {
        assert_eq!(earlier_counts(None, 4), Some(vec![]));
        let completed = |record: Resharding| Resharding {
            phase: ReshardPhase::Completed,
            ..record
        };
        let first = completed(Resharding::start(2, 4, None, Timestamp(1)));
        assert_eq!(earlier_counts(Some(&first), 4), Some(vec![2]));
        let aborted = Resharding {
            phase: ReshardPhase::Aborted,
            ..Resharding::start(4, 16, Some(&first), Timestamp(2))
        };
        assert_eq!(earlier_counts(Some(&aborted), 4), Some(vec![2]));
        let second = completed(Resharding::start(4, 8, Some(&aborted), Timestamp(3)));
        assert_eq!(earlier_counts(Some(&second), 8), Some(vec![2, 4]));
        // While one runs, its `to` is not had yet.
        let running = Resharding::start(8, 16, Some(&second), Timestamp(4));
        assert_eq!(earlier_counts(Some(&running), 8), Some(vec![2, 4]));
        // A record from before the counts were kept: not known, whatever follows it.
        let old = Resharding {
            earlier: None,
            ..first
        };
        assert_eq!(earlier_counts(Some(&old), 4), None);
        let after_old = completed(Resharding::start(4, 8, Some(&old), Timestamp(5)));
        assert_eq!(earlier_counts(Some(&after_old), 8), None);
        let legacy: Resharding = serde_json::from_str(
            r#"{"from":2,"to":4,"phase":"completed","ready":[],"switched":[],"started_at":1,"updated_at":1,"version":3}"#,
        )
        .expect("a record without `earlier` parses");
        assert_eq!(legacy.earlier, None);
    }
}
