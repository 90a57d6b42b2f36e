//! Discord's global REST limit (50 requests per second per bot) shared across the cluster.
//! The coordinator splits a budget below it between nodes by their demand (max-min fair);
//! each node spends its share through its REST client's [`GlobalLine`]. A node cut off
//! from the coordinator keeps its last share, so the cluster only ever gets slower, never
//! over.
//!
//! [`GlobalLine`]: protonn_actors::rest::GlobalLine

/// Discord's global limit: requests per second per bot.
pub(crate) const DISCORD_GLOBAL_LIMIT: f64 = 50.0;
/// What the coordinator hands out per second. Discord allows 50; the rest covers what goes
/// around the shares (start-up calls) and each node's one-permit burst.
pub(crate) const CLUSTER_BUDGET: f64 = 45.0;
/// What the coordinator hands out per second under a global limit of `global` (Discord's
/// 50, or the bot's raised limit): the same share of it as [`CLUSTER_BUDGET`] is of 50.
pub(crate) fn cluster_budget(global: f64) -> f64 {
    global * CLUSTER_BUDGET / DISCORD_GLOBAL_LIMIT
}

/// The least a node is given, and what a node uses before its first grant.
pub(crate) const MIN_SHARE: f64 = 1.0;

/// Splits `budget` per second between nodes by their demand, max-min fair: nobody gets
/// more than it asks while another is short, every node gets at least [`MIN_SHARE`], and
/// what nobody asks for is spread evenly (demand grows faster than it is reported).
pub(crate) fn allot(budget: f64, demands: &[(u64, f64)]) -> Vec<(u64, f64)> {
    if demands.is_empty() {
        return Vec::new();
    }
    let floor = MIN_SHARE.min(budget / demands.len() as f64);
    let mut shares: Vec<(u64, f64)> = demands.iter().map(|&(node, _)| (node, floor)).collect();
    let mut left = budget - floor * demands.len() as f64;
    // Water-filling over what each still wants beyond its floor, smallest first.
    let mut wants: Vec<(usize, f64)> = demands
        .iter()
        .enumerate()
        .map(|(i, &(_, demand))| (i, (demand - floor).max(0.0)))
        .collect();
    wants.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut waiting = wants.len();
    for (i, want) in wants {
        let fair = left / waiting as f64;
        let given = want.min(fair);
        shares[i].1 += given;
        left -= given;
        waiting -= 1;
    }
    let spread = left / shares.len() as f64;
    for share in &mut shares {
        share.1 += spread;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(shares: &[(u64, f64)]) -> f64 {
        shares.iter().map(|s| s.1).sum()
    }

    #[test]
    fn a_raised_limit_is_shared_whole_and_a_lost_nodes_share_returns() {
        let budget = cluster_budget(500.0);
        assert_eq!(budget, 450.0);
        assert_eq!(cluster_budget(DISCORD_GLOBAL_LIMIT), CLUSTER_BUDGET);
        let three = allot(budget, &[(1, 1_000.0), (2, 1_000.0), (3, 1_000.0)]);
        assert!((total(&three) - budget).abs() < 1e-9, "{three:?}");
        // Node 3 was lost: the next round splits the whole budget between the other two.
        let two = allot(budget, &[(1, 1_000.0), (2, 1_000.0)]);
        assert!((total(&two) - budget).abs() < 1e-9, "{two:?}");
        assert!(two[0].1 > three[0].1);
    }

    #[test]
    fn shares_follow_demand_fairly_and_never_exceed_the_budget() {
        // Everyone wants more than the budget: equal shares.
        let shares = allot(45.0, &[(1, 100.0), (2, 100.0), (3, 100.0)]);
        assert!(
            shares.iter().all(|s| (s.1 - 15.0).abs() < 1e-9),
            "{shares:?}"
        );
        // A quiet node keeps its floor plus the spread; the busy ones split the rest.
        let shares = allot(45.0, &[(1, 0.0), (2, 100.0), (3, 100.0)]);
        assert!((total(&shares) - 45.0).abs() < 1e-9);
        assert!(
            (shares[0].1 - 1.0).abs() < 1e-9 && (shares[1].1 - 22.0).abs() < 1e-9,
            "{shares:?}"
        );
        // Little demand: everyone gets what it asks, and the rest is spread evenly.
        let shares = allot(45.0, &[(1, 5.0), (2, 10.0)]);
        assert!(shares[0].1 >= 5.0 && shares[1].1 >= 10.0 && (total(&shares) - 45.0).abs() < 1e-9);
        assert!(allot(45.0, &[]).is_empty());
        // More nodes than the budget allows floors for: still within it.
        let many: Vec<(u64, f64)> = (0..90).map(|n| (n, 10.0)).collect();
        assert!(total(&allot(45.0, &many)) <= 45.0 + 1e-9);
    }
}
