//! Which shards go where: load-aware, stable (as few moves as possible) and bounded.
//!
//! A shard's cost is 1 plus its share of the traffic (an average shard costs 2, an idle one
//! 1), so shard counts even out when traffic is flat and busy shards spread when it is not.
//! A move is made only when it narrows the gap between the heaviest and the lightest node
//! by at least one idle shard, so noise in the load figures never moves anything.

use std::collections::{BTreeMap, BTreeSet};

/// Smallest narrowing of the heaviest–lightest gap worth a handoff.
const MIN_GAIN: f64 = 1.0;
/// Below this mean rate (events/s per shard) traffic is noise, such as the tail of a
/// smoothed startup burst, and shard counts alone decide.
const MIN_MEAN_RATE: f64 = 1.0;
/// A busy shard counts as at most this many average shards: one hot shard must not pin a
/// node as "full".
const MAX_TRAFFIC_SHARE: f64 = 4.0;

#[derive(Clone, Debug)]
pub(crate) struct ShardLoad {
    pub(crate) shard_id: u32,
    /// `None` while the shard runs nowhere (never started, or its node was lost).
    pub(crate) node_id: Option<u64>,
    pub(crate) events_per_sec: f64,
    /// Ready and not already moving: only such shards can be handed off.
    pub(crate) movable: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// Start a shard that runs nowhere on `to`.
    Start { shard_id: u32, to: u64 },
    /// Hand a running shard off from `from` to `to`.
    Move { shard_id: u32, from: u64, to: u64 },
}

/// The steps that bring `shards` closer to balance over the `accepting` nodes. Every
/// shard without a node gets one (starting is never deferred); shards on nodes that no
/// longer accept (draining) move first; then skew is evened out. At most `move_budget`
/// moves are planned.
pub(crate) fn plan(
    accepting: &BTreeSet<u64>,
    shards: &[ShardLoad],
    move_budget: usize,
) -> Vec<Step> {
    if accepting.is_empty() {
        return Vec::new();
    }
    let mean_rate = {
        let total: f64 = shards.iter().map(|s| s.events_per_sec.max(0.0)).sum();
        total / shards.len().max(1) as f64
    };
    let cost = |shard: &ShardLoad| {
        if mean_rate >= MIN_MEAN_RATE {
            1.0 + (shard.events_per_sec.max(0.0) / mean_rate).min(MAX_TRAFFIC_SHARE)
        } else {
            1.0
        }
    };
    let mut totals: BTreeMap<u64, f64> = accepting.iter().map(|&node| (node, 0.0)).collect();
    for shard in shards {
        if let Some(total) = shard.node_id.and_then(|node| totals.get_mut(&node)) {
            *total += cost(shard);
        }
    }
    let lightest = |totals: &BTreeMap<u64, f64>| {
        totals
            .iter()
            .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(b.0)))
            .map(|(&node, _)| node)
            .expect("at least one accepting node")
    };

    let mut steps = Vec::new();
    // Homeless shards, and shards on nodes that are leaving, heaviest first.
    let mut homeless: Vec<&ShardLoad> = shards
        .iter()
        .filter(|s| s.node_id.is_none_or(|node| !accepting.contains(&node)))
        .collect();
    homeless.sort_by(|a, b| {
        cost(b)
            .total_cmp(&cost(a))
            .then(a.shard_id.cmp(&b.shard_id))
    });
    let mut moves = 0;
    for shard in homeless {
        let to = lightest(&totals);
        match shard.node_id {
            None => steps.push(Step::Start {
                shard_id: shard.shard_id,
                to,
            }),
            Some(from) if shard.movable && moves < move_budget => {
                moves += 1;
                steps.push(Step::Move {
                    shard_id: shard.shard_id,
                    from,
                    to,
                });
            }
            // Not ready yet, or over budget: it leaves in a later round.
            Some(_) => continue,
        }
        *totals.get_mut(&to).expect("accepting node") += cost(shard);
    }

    // Even out skew between accepting nodes.
    let mut placed: BTreeMap<u32, u64> = shards
        .iter()
        .filter_map(|s| {
            s.node_id
                .filter(|n| accepting.contains(n))
                .map(|n| (s.shard_id, n))
        })
        .collect();
    let mut moved = BTreeSet::new();
    while moves < move_budget {
        let to = lightest(&totals);
        let (&from, &heaviest) = totals
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            .expect("at least one accepting node");
        let gap = heaviest - totals[&to];
        // The move that narrows the gap the most: |gap - 2c| is the gap after moving cost c.
        let best = shards
            .iter()
            .filter(|s| s.movable && placed.get(&s.shard_id) == Some(&from))
            .filter(|s| !moved.contains(&s.shard_id))
            .map(|s| (s, gap - (gap - 2.0 * cost(s)).abs()))
            .filter(|(_, gain)| *gain >= MIN_GAIN)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.shard_id.cmp(&a.0.shard_id)));
        let Some((shard, _)) = best else { break };
        moves += 1;
        moved.insert(shard.shard_id);
        placed.insert(shard.shard_id, to);
        *totals.get_mut(&from).expect("accepting node") -= cost(shard);
        *totals.get_mut(&to).expect("accepting node") += cost(shard);
        steps.push(Step::Move {
            shard_id: shard.shard_id,
            from,
            to,
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn idle(assignment: &[(u32, Option<u64>)]) -> Vec<ShardLoad> {
        assignment
            .iter()
            .map(|&(shard_id, node_id)| ShardLoad {
                shard_id,
                node_id,
                events_per_sec: 0.0,
                movable: true,
            })
            .collect()
    }

    /// Applies every step and returns shards per node.
    fn settle(
        accepting: &BTreeSet<u64>,
        shards: &mut [ShardLoad],
        budget: usize,
    ) -> (usize, BTreeMap<u64, usize>) {
        let mut steps_taken = 0;
        loop {
            let steps = plan(accepting, shards, budget);
            if steps.is_empty() {
                break;
            }
            assert!(
                steps
                    .iter()
                    .filter(|s| matches!(s, Step::Move { .. }))
                    .count()
                    <= budget
            );
            for step in steps {
                steps_taken += 1;
                let (Step::Start { shard_id, to } | Step::Move { shard_id, to, .. }) = step;
                shards[shard_id as usize].node_id = Some(to);
            }
            assert!(steps_taken < 1_000, "the plan does not converge");
        }
        let mut counts = BTreeMap::new();
        for shard in shards.iter() {
            *counts.entry(shard.node_id.unwrap()).or_default() += 1;
        }
        (steps_taken, counts)
    }

    #[test]
    fn a_cold_cluster_spreads_shards_evenly() {
        let mut shards = idle(&(0..32).map(|id| (id, None)).collect::<Vec<_>>());
        let (steps, counts) = settle(&nodes(&[1, 2, 3]), &mut shards, 4);
        assert_eq!(steps, 32, "each shard started once, nothing moved");
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [11, 11, 10]);
    }

    #[test]
    fn a_joining_node_takes_only_its_share() {
        let mut shards = idle(
            &(0..32)
                .map(|id| (id, Some(u64::from(id % 3) + 1)))
                .collect::<Vec<_>>(),
        );
        let (moves, counts) = settle(&nodes(&[1, 2, 3, 4]), &mut shards, 2);
        assert_eq!(moves, 8, "only the new node's share moves");
        assert!(counts.values().all(|&count| count == 8), "{counts:?}");
    }

    #[test]
    fn a_draining_node_empties_and_the_rest_stay_put() {
        let mut shards = idle(
            &(0..32)
                .map(|id| (id, Some(u64::from(id % 4) + 1)))
                .collect::<Vec<_>>(),
        );
        let (moves, counts) = settle(&nodes(&[1, 2, 3]), &mut shards, 3);
        assert_eq!(moves, 8, "only the drained node's shards move");
        assert!(!counts.contains_key(&4));
        assert!(
            counts.values().all(|&count| (10..=11).contains(&count)),
            "{counts:?}"
        );
    }

    #[test]
    fn shards_that_are_not_ready_wait_and_the_budget_bounds_a_round() {
        let mut shards = idle(&[(0, Some(9)), (1, Some(9)), (2, Some(9))]);
        shards[0].movable = false;
        let steps = plan(&nodes(&[1]), &shards, 1);
        assert_eq!(
            steps,
            [Step::Move {
                shard_id: 1,
                from: 9,
                to: 1
            }]
        );
    }

    #[test]
    fn busy_shards_spread_and_noise_moves_nothing() {
        // Node 1 holds the four busy shards, node 2 four idle ones: same count, skewed load.
        let mut shards = idle(
            &(0..8)
                .map(|id| (id, Some(if id < 4 { 1 } else { 2 })))
                .collect::<Vec<_>>(),
        );
        for shard in &mut shards[..4] {
            shard.events_per_sec = 100.0;
        }
        let steps = plan(&nodes(&[1, 2]), &shards, 8);
        assert!(!steps.is_empty(), "skewed load moves shards");
        // The same skew at a trickle is noise: equal counts stay.
        for shard in &mut shards[..4] {
            shard.events_per_sec = 0.001;
        }
        assert_eq!(plan(&nodes(&[1, 2]), &shards, 8), []);
        // Balanced counts with a little noise in the rates: nothing moves.
        let mut calm = idle(
            &(0..8)
                .map(|id| (id, Some(u64::from(id % 2) + 1)))
                .collect::<Vec<_>>(),
        );
        for (i, shard) in calm.iter_mut().enumerate() {
            shard.events_per_sec = 50.0 + i as f64;
        }
        assert_eq!(plan(&nodes(&[1, 2]), &calm, 8), []);
        let uneven = idle(&[(0, Some(1)), (1, Some(1)), (2, Some(2))]);
        assert_eq!(
            plan(&nodes(&[1, 2]), &uneven, 8),
            [],
            "a difference of one shard stays"
        );
    }
}
