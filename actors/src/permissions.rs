//! A member's guild permissions, computed as Discord does (no channel overwrites: the
//! dashboard asks about the guild, not a channel).

use twilight_model::guild::Permissions;

use crate::MemberAccess;

/// Permissions that allow managing the bot in a guild (its config, the dashboard).
pub(crate) const MANAGE: Permissions = Permissions::ADMINISTRATOR.union(Permissions::MANAGE_GUILD);

/// What a member may do: the owner has every permission; otherwise @everyone's permissions
/// and those of each of the member's roles, all of them if one grants Administrator.
/// `role_permissions` gives a role's permissions (`None` for a role no longer known);
/// `staff_roles` are the guild config's.
pub(crate) fn member_access(
    guild_id: u64,
    owner_id: u64,
    user_id: u64,
    member_roles: &[u64],
    role_permissions: impl Fn(u64) -> Option<Permissions>,
    staff_roles: &[u64],
) -> MemberAccess {
    let is_owner = owner_id == user_id;
    // @everyone's role id is the guild's id.
    let base = std::iter::once(guild_id)
        .chain(member_roles.iter().copied())
        .filter_map(&role_permissions)
        .fold(Permissions::empty(), |all, permissions| all | permissions);
    let permissions = if is_owner || base.contains(Permissions::ADMINISTRATOR) {
        Permissions::all()
    } else {
        base
    };
    let is_staff = member_roles.iter().any(|role| staff_roles.contains(role));
    MemberAccess {
        permissions: permissions.bits(),
        is_owner,
        is_staff,
        can_manage: is_owner || permissions.intersects(MANAGE) || is_staff,
    }
}

/// A user who is not a member of the guild may do nothing there.
pub(crate) fn no_access() -> MemberAccess {
    MemberAccess {
        permissions: 0,
        is_owner: false,
        is_staff: false,
        can_manage: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: u64 = 100;
    const OWNER: u64 = 1;
    const MEMBER: u64 = 2;
    const MODS: u64 = 200;
    const ADMINS: u64 = 201;
    const STAFF: u64 = 202;

    fn roles(role: u64) -> Option<Permissions> {
        match role {
            GUILD => Some(Permissions::SEND_MESSAGES | Permissions::VIEW_CHANNEL),
            MODS => Some(Permissions::MANAGE_GUILD | Permissions::KICK_MEMBERS),
            ADMINS => Some(Permissions::ADMINISTRATOR),
            STAFF => Some(Permissions::empty()),
            _ => None,
        }
    }

    fn access(user: u64, member_roles: &[u64]) -> MemberAccess {
        member_access(GUILD, OWNER, user, member_roles, roles, &[STAFF])
    }

    #[test]
    fn a_plain_member_has_everyones_permissions_and_may_not_manage() {
        let plain = access(MEMBER, &[]);
        assert_eq!(
            plain.permissions,
            (Permissions::SEND_MESSAGES | Permissions::VIEW_CHANNEL).bits()
        );
        assert!(!plain.can_manage && !plain.is_owner && !plain.is_staff);
    }

    #[test]
    fn owner_administrator_manage_server_and_staff_may_manage() {
        let owner = access(OWNER, &[]);
        assert!(owner.is_owner && owner.can_manage);
        assert_eq!(owner.permissions, Permissions::all().bits());

        let admin = access(MEMBER, &[ADMINS]);
        assert!(admin.can_manage && !admin.is_owner);
        assert_eq!(admin.permissions, Permissions::all().bits());

        let manager = access(MEMBER, &[MODS]);
        assert!(manager.can_manage);
        assert!(
            Permissions::from_bits_truncate(manager.permissions).contains(
                Permissions::MANAGE_GUILD | Permissions::KICK_MEMBERS | Permissions::SEND_MESSAGES
            )
        );
        assert!(
            !Permissions::from_bits_truncate(manager.permissions)
                .contains(Permissions::ADMINISTRATOR)
        );

        let staff = access(MEMBER, &[STAFF]);
        assert!(staff.is_staff && staff.can_manage);
        assert_eq!(staff.permissions, access(MEMBER, &[]).permissions);
    }

    #[test]
    fn unknown_roles_grant_nothing() {
        assert_eq!(access(MEMBER, &[999]), access(MEMBER, &[]));
    }
}
