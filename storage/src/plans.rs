//! The plans and their limits, in one place: the dashboard shows them, the guild actors apply
//! them (reading the guild's plan with its config), the billing code grants them.

use serde::{Deserialize, Serialize};

/// What a guild runs on.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    #[default]
    Free,
    Premium,
}

/// The most a guild may have of each thing. A downgrade keeps what is over a limit but the
/// guild actor disables it (and tells the admin which).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLimits {
    pub automod_rules: u32,
    pub workflows: u32,
    /// Steps (conditions and actions) in one workflow.
    pub workflow_steps: u32,
    /// Variables workflows keep between runs: the server's and its members' together.
    pub workflow_variables: u32,
    pub ticket_categories: u32,
    /// How far back the analytics pages read.
    pub analytics_history_days: u32,
    pub announcement_schedules: u32,
}

impl Plan {
    pub const ALL: [Plan; 2] = [Plan::Free, Plan::Premium];

    pub const fn limits(self) -> PlanLimits {
        match self {
            Plan::Free => PlanLimits {
                automod_rules: 5,
                workflows: 3,
                workflow_steps: 10,
                workflow_variables: 200,
                ticket_categories: 2,
                analytics_history_days: 7,
                announcement_schedules: 1,
            },
            Plan::Premium => PlanLimits {
                automod_rules: 50,
                workflows: 50,
                workflow_steps: 50,
                workflow_variables: 10_000,
                ticket_categories: 25,
                analytics_history_days: 365,
                announcement_schedules: 25,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Premium => "premium",
        }
    }

    /// The plan a subscription's plan name gives; unknown names give no premium, so a
    /// mistyped price id in the provider's catalogue never grants more than paid for.
    pub fn from_name(name: &str) -> Plan {
        match name {
            "premium" => Plan::Premium,
            _ => Plan::Free,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premium_allows_at_least_what_free_does() {
        let (free, premium) = (Plan::Free.limits(), Plan::Premium.limits());
        assert!(premium.automod_rules >= free.automod_rules);
        assert!(premium.workflows >= free.workflows);
        assert!(premium.workflow_steps >= free.workflow_steps);
        assert!(premium.workflow_variables >= free.workflow_variables);
        assert!(premium.ticket_categories >= free.ticket_categories);
        assert!(premium.analytics_history_days >= free.analytics_history_days);
        assert!(premium.announcement_schedules >= free.announcement_schedules);
        for plan in Plan::ALL {
            assert_eq!(Plan::from_name(plan.name()), plan);
        }
        assert_eq!(Plan::from_name("platinum"), Plan::Free);
    }
}
