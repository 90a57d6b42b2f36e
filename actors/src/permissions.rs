//! What the bot may do in a channel, by the node cache: sending where Discord would answer
//! 403 is an invalid request (10,000 in 10 minutes earn a ban), and a predictable one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use twilight_cache_inmemory::{DefaultInMemoryCache, ResourceType};
use twilight_model::channel::ChannelType;
use twilight_model::channel::permission_overwrite::PermissionOverwriteType;
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::guild::Permissions;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, GuildMarker, RoleMarker, UserMarker};

/// What the cache must keep for the check: the channels' overwrites and the roles. The
/// bot's own roles are kept by [`OwnRoles`] (the node caches no members: that needs the
/// privileged GUILD_MEMBERS intent). Without channels nothing is checked.
pub(crate) const NEEDED: ResourceType = ResourceType::CHANNEL.union(ResourceType::ROLE);

/// Permissions a plain text reply needs.
pub(crate) const SEND_TEXT: Permissions =
    Permissions::VIEW_CHANNEL.union(Permissions::SEND_MESSAGES);

/// The bot's own id and its roles in each guild: the one member a permission check needs.
/// GUILD_CREATE lists the bot among its members, and Discord sends the bot's own
/// GUILD_MEMBER_UPDATE without the GUILD_MEMBERS intent. Written on those rare events only;
/// read when a reply is about to be sent and when moderation checks the bot's rank.
#[derive(Debug, Default)]
pub struct OwnRoles {
    /// Whether the node caches roles (it always does, [`crate::REQUIRED_RESOURCES`]): the
    /// bot's role ids are of no use without the roles they name.
    enabled: bool,
    /// 0 until READY.
    bot: AtomicU64,
    roles: RwLock<RolesByGuild>,
}

type RolesByGuild = HashMap<Id<GuildMarker>, Box<[Id<RoleMarker>]>>;

impl OwnRoles {
    /// Kept if the node cache keeps roles among `resources`; a reply's channel check also
    /// needs channels ([`NEEDED`]), moderation's rank check only roles.
    pub fn new(resources: ResourceType) -> Self {
        Self {
            enabled: resources.contains(ResourceType::ROLE),
            ..Self::default()
        }
    }

    /// Takes what it keeps from one gateway event (the ingress calls it for each).
    pub(crate) fn update(&self, event: &Event) {
        if !self.enabled {
            return;
        }
        match event {
            Event::Ready(ready) => self.bot.store(ready.user.id.get(), Ordering::Release),
            Event::GuildCreate(create) => {
                let (GuildCreate::Available(guild), Some(bot)) = (&**create, self.bot()) else {
                    return;
                };
                if let Some(own) = guild.members.iter().find(|m| m.user.id == bot) {
                    self.set(guild.id, own.roles.as_slice());
                }
            }
            Event::MemberUpdate(update) if Some(update.user.id) == self.bot() => {
                self.set(update.guild_id, update.roles.as_slice());
            }
            Event::GuildDelete(delete) => {
                self.roles
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&delete.id);
            }
            _ => {}
        }
    }

    fn set(&self, guild_id: Id<GuildMarker>, roles: &[Id<RoleMarker>]) {
        self.roles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(guild_id, roles.into());
    }

    pub(crate) fn bot(&self) -> Option<Id<UserMarker>> {
        Id::new_checked(self.bot.load(Ordering::Acquire))
    }

    /// The bot's id learnt another way than READY (a node whose shards all came by
    /// handoff resumed them and saw no READY).
    pub(crate) fn set_bot(&self, bot: Id<UserMarker>) {
        self.bot.store(bot.get(), Ordering::Release);
    }

    /// The bot's roles in `guild_id`, if known.
    pub(crate) fn roles(&self, guild_id: Id<GuildMarker>) -> Option<Vec<Id<RoleMarker>>> {
        self.roles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&guild_id)
            .map(|roles| roles.to_vec())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MaySend {
    Yes,
    /// The cache shows these of the needed permissions missing.
    No(Permissions),
    /// The cache does not hold all it takes to tell: send, and let Discord judge.
    Unknown,
}

/// Whether the bot has `needs` in a guild channel, computed as Discord does: @everyone's and
/// the member's roles, Administrator granting all, then the channel's overwrites for
/// @everyone, the roles together, and the member. Threads (whose overwrites are their
/// parent's, and which need another permission to send in) are not judged.
pub(crate) fn may_send(
    cache: &DefaultInMemoryCache,
    own: &OwnRoles,
    guild_id: Id<GuildMarker>,
    channel_id: Id<ChannelMarker>,
    needs: Permissions,
) -> MaySend {
    let Some(bot) = own.bot() else {
        return MaySend::Unknown;
    };
    if cache
        .guild(guild_id)
        .is_some_and(|guild| guild.owner_id() == bot)
    {
        return MaySend::Yes;
    }
    let Some(channel) = cache.channel(channel_id) else {
        return MaySend::Unknown;
    };
    if channel.guild_id != Some(guild_id)
        || matches!(
            channel.kind,
            ChannelType::PublicThread
                | ChannelType::PrivateThread
                | ChannelType::AnnouncementThread
        )
    {
        return MaySend::Unknown;
    }
    let roles = own.roles.read().unwrap_or_else(PoisonError::into_inner);
    let Some(member_roles) = roles.get(&guild_id) else {
        return MaySend::Unknown;
    };
    let Some(everyone) = cache.role(guild_id.cast()) else {
        return MaySend::Unknown;
    };
    let mut allowed = everyone.resource().permissions;
    for role in member_roles {
        match cache.role(*role) {
            Some(role) => allowed |= role.resource().permissions,
            // A role the cache lost track of may be the one that grants.
            None => return MaySend::Unknown,
        }
    }
    if allowed.contains(Permissions::ADMINISTRATOR) {
        return MaySend::Yes;
    }
    let overwrites = channel.permission_overwrites.as_deref().unwrap_or_default();
    let (mut role_allow, mut role_deny) = (Permissions::empty(), Permissions::empty());
    let mut member_overwrite = None;
    for overwrite in overwrites {
        match overwrite.kind {
            PermissionOverwriteType::Role if overwrite.id == guild_id.cast() => {
                allowed = (allowed - overwrite.deny) | overwrite.allow;
            }
            PermissionOverwriteType::Role if member_roles.contains(&overwrite.id.cast()) => {
                role_allow |= overwrite.allow;
                role_deny |= overwrite.deny;
            }
            PermissionOverwriteType::Member if overwrite.id == bot.cast() => {
                member_overwrite = Some((overwrite.allow, overwrite.deny));
            }
            _ => {}
        }
    }
    allowed = (allowed - role_deny) | role_allow;
    if let Some((allow, deny)) = member_overwrite {
        allowed = (allowed - deny) | allow;
    }
    // Without VIEW_CHANNEL nothing else in the channel counts.
    if !allowed.contains(Permissions::VIEW_CHANNEL) {
        allowed = Permissions::empty();
    }
    match needs - allowed {
        missing if missing.is_empty() => MaySend::Yes,
        missing => MaySend::No(missing),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use twilight_model::gateway::payload::incoming::{ChannelCreate, MemberUpdate, RoleCreate};

    use super::*;

    const GUILD: u64 = 100;
    const BOT: u64 = 5;
    const CHANNEL: u64 = 10;
    const BOT_ROLE: u64 = 20;
    const SEND: u64 = Permissions::SEND_MESSAGES.bits();
    const VIEW: u64 = Permissions::VIEW_CHANNEL.bits();

    fn role(id: u64, permissions: u64) -> Event {
        let role = json!({
            "guild_id": GUILD.to_string(),
            "role": {
                "id": id.to_string(), "name": "r", "color": 0, "hoist": false,
                "managed": false, "mentionable": false, "position": 0, "flags": 0,
                "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                "permissions": permissions.to_string(),
            }
        });
        Event::RoleCreate(serde_json::from_value::<RoleCreate>(role).unwrap())
    }

    fn channel(overwrites: serde_json::Value) -> Event {
        let channel = json!({
            "id": CHANNEL.to_string(), "type": 0, "guild_id": GUILD.to_string(),
            "permission_overwrites": overwrites,
        });
        Event::ChannelCreate(Box::new(
            serde_json::from_value::<ChannelCreate>(channel).unwrap(),
        ))
    }

    fn member_update(user: u64, roles: &[u64]) -> Event {
        let update = json!({
            "guild_id": GUILD.to_string(),
            "user": {"id": user.to_string(), "username": "u", "discriminator": "0001",
                "avatar": null},
            "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
            "joined_at": null, "deaf": false, "mute": false, "pending": false,
            "nick": null, "avatar": null, "premium_since": null,
            "communication_disabled_until": null, "flags": 0,
        });
        Event::MemberUpdate(Box::new(
            serde_json::from_value::<MemberUpdate>(update).unwrap(),
        ))
    }

    /// A cache with @everyone granting `everyone` and the bot's role `bot_role`, and the
    /// bot known to have that role.
    fn world(everyone: u64, bot_role: u64) -> (DefaultInMemoryCache, OwnRoles) {
        let cache = DefaultInMemoryCache::builder()
            .resource_types(NEEDED)
            .build();
        cache.update(&role(GUILD, everyone));
        cache.update(&role(BOT_ROLE, bot_role));
        let own = OwnRoles::new(NEEDED);
        own.bot.store(BOT, Ordering::Release);
        own.update(&member_update(BOT, &[BOT_ROLE]));
        (cache, own)
    }

    fn check(cache: &DefaultInMemoryCache, own: &OwnRoles) -> MaySend {
        may_send(cache, own, Id::new(GUILD), Id::new(CHANNEL), SEND_TEXT)
    }

    #[test]
    fn roles_grant_and_overwrites_take_away_in_discords_order() {
        let (cache, own) = world(VIEW | SEND, 0);
        cache.update(&channel(json!([])));
        assert_eq!(check(&cache, &own), MaySend::Yes);

        // @everyone denied in the channel.
        let deny_everyone = json!({"id": GUILD.to_string(), "type": 0, "allow": "0",
            "deny": SEND.to_string()});
        cache.update(&channel(json!([deny_everyone])));
        assert_eq!(check(&cache, &own), MaySend::No(Permissions::SEND_MESSAGES));

        // The bot's role allowed again: role overwrites come after @everyone's.
        let allow_role = json!({"id": BOT_ROLE.to_string(), "type": 0,
            "allow": SEND.to_string(), "deny": "0"});
        cache.update(&channel(json!([deny_everyone, allow_role])));
        assert_eq!(check(&cache, &own), MaySend::Yes);

        // And the member's own overwrite comes last.
        let deny_bot = json!({"id": BOT.to_string(), "type": 1, "allow": "0",
            "deny": VIEW.to_string()});
        cache.update(&channel(json!([deny_everyone, allow_role, deny_bot])));
        assert_eq!(
            check(&cache, &own),
            MaySend::No(SEND_TEXT),
            "no view, no send"
        );
    }

    #[test]
    fn administrator_overrides_every_overwrite() {
        let (cache, own) = world(0, Permissions::ADMINISTRATOR.bits());
        let deny_all = json!({"id": GUILD.to_string(), "type": 0, "allow": "0",
            "deny": (VIEW | SEND).to_string()});
        cache.update(&channel(json!([deny_all])));
        assert_eq!(check(&cache, &own), MaySend::Yes);
    }

    #[test]
    fn the_bots_roles_follow_its_own_member_updates_only() {
        let (cache, own) = world(VIEW, SEND);
        cache.update(&channel(json!([])));
        assert_eq!(check(&cache, &own), MaySend::Yes);
        // Someone else's update changes nothing; the bot losing its role does.
        own.update(&member_update(BOT + 1, &[]));
        assert_eq!(check(&cache, &own), MaySend::Yes);
        own.update(&member_update(BOT, &[]));
        assert_eq!(check(&cache, &own), MaySend::No(Permissions::SEND_MESSAGES));
    }

    #[test]
    fn nothing_is_kept_when_the_cache_cannot_serve_the_check() {
        let own = OwnRoles::new(ResourceType::GUILD | ResourceType::CHANNEL);
        own.bot.store(BOT, Ordering::Release);
        own.update(&member_update(BOT, &[BOT_ROLE]));
        assert!(own.roles.read().unwrap().is_empty());
    }

    #[test]
    fn without_what_it_takes_nothing_is_judged() {
        // No channel cached (the default resources): unknown, so the reply is sent.
        let (cache, own) = world(0, 0);
        assert_eq!(check(&cache, &own), MaySend::Unknown);
        // The bot's roles not known (no GUILD_CREATE seen yet).
        cache.update(&channel(json!([])));
        let unknown_bot = OwnRoles::default();
        assert_eq!(check(&cache, &unknown_bot), MaySend::Unknown);
        // A role the cache does not know might be the one that grants.
        own.update(&member_update(BOT, &[BOT_ROLE, 999]));
        assert_eq!(check(&cache, &own), MaySend::Unknown);
    }
}
