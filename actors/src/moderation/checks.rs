//! Who may act on whom, as Discord decides it: permissions from @everyone and the member's
//! roles (all of them for the owner and for Administrator), and the role hierarchy: nobody
//! acts on the owner, and a member or the bot acts only on members whose highest role is
//! below their own. Pure functions over a snapshot of the guild's roles.

use std::collections::HashMap;

use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::guild::Permissions;
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;

/// The guild's owner and roles, as the node cache has them.
#[derive(Clone, Debug, Default)]
pub(crate) struct GuildRoles {
    pub(crate) guild_id: u64,
    pub(crate) owner_id: u64,
    /// role id → (position, permissions); @everyone's id is the guild's.
    pub(crate) roles: HashMap<u64, (i64, Permissions)>,
}

impl GuildRoles {
    /// `None` if the cache does not hold the guild.
    pub(crate) fn from_cache(
        cache: &DefaultInMemoryCache,
        guild_id: Id<GuildMarker>,
    ) -> Option<Self> {
        let owner_id = cache.guild(guild_id)?.owner_id().get();
        let roles = cache
            .guild_roles(guild_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|&id| cache.role(id))
                    .map(|role| (role.id.get(), (role.position, role.permissions)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            guild_id: guild_id.get(),
            owner_id,
            roles,
        })
    }

    /// A member's guild permissions: every one for the owner and for Administrator.
    pub(crate) fn permissions(&self, user_id: u64, roles: &[u64]) -> Permissions {
        if user_id == self.owner_id {
            return Permissions::all();
        }
        let granted = std::iter::once(&self.guild_id)
            .chain(roles)
            .filter_map(|role| self.roles.get(role))
            .fold(Permissions::empty(), |all, (_, permissions)| {
                all | *permissions
            });
        if granted.contains(Permissions::ADMINISTRATOR) {
            Permissions::all()
        } else {
            granted
        }
    }

    /// The position of a member's highest role (@everyone's is 0).
    pub(crate) fn rank(&self, roles: &[u64]) -> i64 {
        roles
            .iter()
            .filter_map(|role| self.roles.get(role))
            .map(|(position, _)| *position)
            .max()
            .unwrap_or(0)
            .max(0)
    }
}

/// Why someone may not act on a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Themselves,
    TheBot,
    Owner,
    /// The moderator's highest role is not above the member's.
    ModeratorRank,
    /// The bot's highest role is not above the member's.
    BotRank,
    /// Discord does not time out members with Administrator.
    AdministratorTimeout,
}

/// Who acts on whom.
pub(crate) struct Parties<'a> {
    pub(crate) moderator: (u64, &'a [u64]),
    pub(crate) bot: (u64, &'a [u64]),
    /// The member acted on, with their roles.
    pub(crate) target: (u64, &'a [u64]),
}

/// Whether the moderator (and the bot for them) may act on the target. The owner may act on
/// anyone but themselves; `escalated` actions are the bot's own and skip the moderator's rank.
pub(crate) fn may_act_on(
    guild: &GuildRoles,
    parties: &Parties<'_>,
    timeout: bool,
    escalated: bool,
) -> Result<(), Refusal> {
    let (moderator, moderator_roles) = parties.moderator;
    let (bot, bot_roles) = parties.bot;
    let (target, target_roles) = parties.target;
    if target == moderator && !escalated {
        return Err(Refusal::Themselves);
    }
    if target == bot {
        return Err(Refusal::TheBot);
    }
    if target == guild.owner_id {
        return Err(Refusal::Owner);
    }
    let target_rank = guild.rank(target_roles);
    if !escalated && moderator != guild.owner_id && guild.rank(moderator_roles) <= target_rank {
        return Err(Refusal::ModeratorRank);
    }
    if bot != guild.owner_id && guild.rank(bot_roles) <= target_rank {
        return Err(Refusal::BotRank);
    }
    if timeout
        && guild
            .permissions(target, target_roles)
            .contains(Permissions::ADMINISTRATOR)
    {
        return Err(Refusal::AdministratorTimeout);
    }
    Ok(())
}

/// Permission names as Discord's client shows them, for "I need …" answers.
pub(crate) fn names(permissions: Permissions) -> String {
    const NAMES: [(Permissions, &str); 10] = [
        (Permissions::MANAGE_GUILD, "Manage Server"),
        (Permissions::BAN_MEMBERS, "Ban Members"),
        (Permissions::KICK_MEMBERS, "Kick Members"),
        (Permissions::MODERATE_MEMBERS, "Timeout Members"),
        (Permissions::MANAGE_MESSAGES, "Manage Messages"),
        (Permissions::READ_MESSAGE_HISTORY, "Read Message History"),
        (Permissions::MANAGE_CHANNELS, "Manage Channels"),
        (Permissions::MANAGE_ROLES, "Manage Roles"),
        (Permissions::VIEW_CHANNEL, "View Channel"),
        (Permissions::SEND_MESSAGES, "Send Messages"),
    ];
    let named: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| permissions.contains(*bit))
        .map(|(_, name)| *name)
        .collect();
    if named.is_empty() {
        format!("{permissions:?}")
    } else {
        named.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: u64 = 100;
    const OWNER: u64 = 1;
    const MODERATOR: u64 = 2;
    const MEMBER: u64 = 3;
    const BOT: u64 = 4;
    const ADMINS: u64 = 10;
    const MODS: u64 = 11;
    const BOT_ROLE: u64 = 12;
    const MEMBERS: u64 = 13;

    fn guild() -> GuildRoles {
        let roles = [
            (GUILD, (0, Permissions::SEND_MESSAGES)),
            (ADMINS, (4, Permissions::ADMINISTRATOR)),
            (
                MODS,
                (2, Permissions::BAN_MEMBERS | Permissions::KICK_MEMBERS),
            ),
            (BOT_ROLE, (3, Permissions::BAN_MEMBERS)),
            (MEMBERS, (1, Permissions::empty())),
        ];
        GuildRoles {
            guild_id: GUILD,
            owner_id: OWNER,
            roles: roles.into_iter().collect(),
        }
    }

    fn check(moderator: (u64, &[u64]), target: (u64, &[u64])) -> Result<(), Refusal> {
        let parties = Parties {
            moderator,
            bot: (BOT, &[BOT_ROLE]),
            target,
        };
        may_act_on(&guild(), &parties, false, false)
    }

    #[test]
    fn permissions_add_up_and_administrator_and_the_owner_have_all() {
        let guild = guild();
        assert_eq!(
            guild.permissions(MEMBER, &[MEMBERS]),
            Permissions::SEND_MESSAGES
        );
        assert!(
            guild
                .permissions(MODERATOR, &[MODS])
                .contains(Permissions::BAN_MEMBERS | Permissions::SEND_MESSAGES)
        );
        assert_eq!(guild.permissions(MEMBER, &[ADMINS]), Permissions::all());
        assert_eq!(guild.permissions(OWNER, &[]), Permissions::all());
        assert_eq!(
            guild.permissions(MEMBER, &[999]),
            Permissions::SEND_MESSAGES,
            "unknown roles grant nothing"
        );
    }

    #[test]
    fn nobody_acts_on_the_owner_themselves_the_bot_or_a_member_ranked_as_high() {
        assert_eq!(check((MODERATOR, &[MODS]), (MEMBER, &[MEMBERS])), Ok(()));
        assert_eq!(
            check((MODERATOR, &[MODS]), (MODERATOR, &[MODS])),
            Err(Refusal::Themselves)
        );
        assert_eq!(
            check((MODERATOR, &[MODS]), (OWNER, &[])),
            Err(Refusal::Owner)
        );
        assert_eq!(check((OWNER, &[]), (OWNER, &[])), Err(Refusal::Themselves));
        assert_eq!(
            check((MODERATOR, &[MODS]), (BOT, &[BOT_ROLE])),
            Err(Refusal::TheBot)
        );
        // Equal rank is not below.
        assert_eq!(
            check((MODERATOR, &[MODS]), (5, &[MODS])),
            Err(Refusal::ModeratorRank)
        );
        // The owner outranks everyone, but the bot must still outrank the member.
        assert_eq!(check((OWNER, &[]), (5, &[MODS])), Ok(()));
        assert_eq!(check((OWNER, &[]), (5, &[ADMINS])), Err(Refusal::BotRank));
        let admin_target = Parties {
            moderator: (OWNER, &[]),
            bot: (BOT, &[ADMINS]),
            target: (5, &[MODS, ADMINS]),
        };
        assert_eq!(
            may_act_on(&guild(), &admin_target, false, false),
            Err(Refusal::BotRank)
        );
        let admin_below_bot = Parties {
            moderator: (OWNER, &[]),
            bot: (BOT, &[ADMINS, BOT_ROLE]),
            target: (5, &[MEMBERS]),
        };
        assert_eq!(may_act_on(&guild(), &admin_below_bot, true, false), Ok(()));
    }

    #[test]
    fn members_with_administrator_are_not_timed_out() {
        let mut guild = guild();
        guild.roles.insert(20, (1, Permissions::ADMINISTRATOR));
        let parties = Parties {
            moderator: (OWNER, &[]),
            bot: (BOT, &[BOT_ROLE]),
            target: (5, &[20]),
        };
        assert_eq!(
            may_act_on(&guild, &parties, true, false),
            Err(Refusal::AdministratorTimeout)
        );
        assert_eq!(may_act_on(&guild, &parties, false, false), Ok(()));
    }
}
