//! A guild's ticket settings (`GuildConfig::tickets`): checked when a config is saved, read
//! from the config the actor holds when a ticket is acted on (no storage read per event).

use std::time::Duration;

use protonn_storage::{GuildConfig, Plan, TicketPlace, TicketsConfig};

/// Roles that may be named as ticket staff (as for the guild's staff roles).
const STAFF_ROLES_MAX: usize = 25;
/// Discord's most options in a select menu; the guild's plan may allow fewer.
pub(crate) const CATEGORIES_MAX: usize = 25;
/// Discord's longest select option label.
const CATEGORY_MAX_CHARS: usize = 100;
/// The most open tickets a guild may allow one member.
const MAX_OPEN_MOST: u32 = 10;
/// The longest idle period a guild may set: 90 days.
const IDLE_HOURS_MOST: u32 = 90 * 24;

/// The settings, checked and normalised (category names trimmed); what is wrong otherwise.
pub(crate) fn validate(tickets: &TicketsConfig) -> Result<TicketsConfig, String> {
    let mut valid = TicketsConfig {
        max_open_per_member: tickets.max_open_per_member,
        idle_close_hours: tickets.idle_close_hours,
        place: tickets.place,
        channel_category: tickets.channel_category,
        ..TicketsConfig::default()
    };
    if valid.channel_category == Some(0) {
        return Err("The category of ticket channels is a channel id.".to_owned());
    }
    for &role in &tickets.staff_roles {
        if role == 0 {
            return Err("A ticket staff role is a role id.".to_owned());
        }
        if !valid.staff_roles.contains(&role) {
            valid.staff_roles.push(role);
        }
    }
    if valid.staff_roles.len() > STAFF_ROLES_MAX {
        return Err(format!(
            "Name at most {STAFF_ROLES_MAX} ticket staff roles."
        ));
    }
    for name in &tickets.categories {
        let name = name.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > CATEGORY_MAX_CHARS {
            return Err(format!(
                "A ticket category has 1 to {CATEGORY_MAX_CHARS} characters."
            ));
        }
        if valid
            .categories
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
        {
            return Err(format!("The ticket category “{name}” is named twice."));
        }
        valid.categories.push(name.to_owned());
    }
    if valid.categories.len() > CATEGORIES_MAX {
        return Err(format!(
            "A panel has at most {CATEGORIES_MAX} ticket categories."
        ));
    }
    if !(1..=MAX_OPEN_MOST).contains(&valid.max_open_per_member) {
        return Err(format!(
            "A member may have 1 to {MAX_OPEN_MOST} open tickets at once."
        ));
    }
    if valid
        .idle_close_hours
        .is_some_and(|hours| !(1..=IDLE_HOURS_MOST).contains(&hours))
    {
        return Err(format!(
            "A ticket is closed after 1 to {IDLE_HOURS_MOST} hours without a message."
        ));
    }
    Ok(valid)
}

/// What the feature's actions need of the config, copied for a task.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) max_open_per_member: u32,
    /// A silent ticket is closed after this.
    pub(crate) idle_close: Duration,
    /// The panel's categories, as many as the guild's plan offers.
    pub(crate) categories: Vec<String>,
    /// Threads or channels, for tickets opened from now on.
    pub(crate) place: TicketPlace,
    /// The Discord category ticket channels are made in.
    pub(crate) channel_category: Option<u64>,
    /// The guild's and the tickets' staff roles: they see ticket channels.
    pub(crate) staff_roles: Vec<u64>,
}

impl Settings {
    /// The guild's settings under its `plan`; its idle period, or the operator's
    /// (`default_idle`).
    pub(crate) fn of(config: &GuildConfig, plan: Plan, default_idle: Duration) -> Self {
        Self {
            max_open_per_member: config.tickets.max_open_per_member,
            idle_close: config
                .tickets
                .idle_close_hours
                .map_or(default_idle, |hours| {
                    Duration::from_secs(u64::from(hours) * 3_600)
                }),
            categories: config.tickets.within_plan(plan).to_vec(),
            place: config.tickets.place,
            channel_category: config.tickets.channel_category,
            staff_roles: config
                .staff_roles
                .iter()
                .chain(&config.tickets.staff_roles)
                .fold(Vec::new(), |mut roles, &role| {
                    if !roles.contains(&role) {
                        roles.push(role);
                    }
                    roles
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_within_limits_are_kept_and_trimmed() {
        let valid = validate(&TicketsConfig {
            staff_roles: vec![5, 5, 6],
            categories: vec![" Billing ".into(), "Bugs".into()],
            max_open_per_member: 3,
            idle_close_hours: Some(48),
            place: TicketPlace::Channel,
            channel_category: Some(9),
        })
        .unwrap();
        assert_eq!(valid.staff_roles, [5, 6]);
        assert_eq!(valid.categories, ["Billing", "Bugs"]);
        assert_eq!(
            (valid.place, valid.channel_category),
            (TicketPlace::Channel, Some(9))
        );
        let settings = Settings::of(
            &GuildConfig {
                staff_roles: vec![4, 5],
                tickets: valid,
                ..GuildConfig::default()
            },
            Plan::Free,
            Duration::from_secs(1),
        );
        assert_eq!(settings.idle_close, Duration::from_secs(48 * 3_600));
        assert_eq!(settings.max_open_per_member, 3);
        assert_eq!(
            settings.staff_roles,
            [4, 5, 6],
            "both lists, each role once"
        );
        let default = Settings::of(&GuildConfig::default(), Plan::Free, Duration::from_secs(7));
        assert_eq!(
            (default.idle_close, default.max_open_per_member),
            (Duration::from_secs(7), 1)
        );
    }

    #[test]
    fn a_downgrade_keeps_the_categories_past_the_plan_off_the_panel() {
        let config = GuildConfig {
            tickets: TicketsConfig {
                categories: vec!["Billing".into(), "Bugs".into(), "Other".into()],
                ..TicketsConfig::default()
            },
            ..GuildConfig::default()
        };
        let offered = |plan| Settings::of(&config, plan, Duration::from_secs(1)).categories;
        assert_eq!(offered(Plan::Premium), ["Billing", "Bugs", "Other"]);
        assert_eq!(offered(Plan::Free), ["Billing", "Bugs"]);
        assert_eq!(config.tickets.over_plan(Plan::Free), ["Other"]);
        assert!(config.tickets.over_plan(Plan::Premium).is_empty());
    }

    #[test]
    fn settings_past_a_limit_say_which() {
        let err = |tickets: TicketsConfig| validate(&tickets).unwrap_err();
        let base = TicketsConfig::default;
        assert!(
            err(TicketsConfig {
                categories: vec!["  ".into()],
                ..base()
            })
            .contains("1 to 100 characters")
        );
        assert!(
            err(TicketsConfig {
                categories: vec!["Bugs".into(), "bugs".into()],
                ..base()
            })
            .contains("named twice")
        );
        assert!(
            err(TicketsConfig {
                categories: (0..26).map(|n| n.to_string()).collect(),
                ..base()
            })
            .contains("at most 25")
        );
        assert!(
            err(TicketsConfig {
                max_open_per_member: 0,
                ..base()
            })
            .contains("1 to 10 open tickets")
        );
        assert!(
            err(TicketsConfig {
                idle_close_hours: Some(0),
                ..base()
            })
            .contains("1 to 2160 hours")
        );
        assert!(
            err(TicketsConfig {
                staff_roles: vec![0],
                ..base()
            })
            .contains("role id")
        );
        assert!(
            err(TicketsConfig {
                channel_category: Some(0),
                ..base()
            })
            .contains("channel id")
        );
    }
}
