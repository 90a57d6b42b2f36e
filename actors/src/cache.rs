//! What the node cache may keep, by name, and the gateway events that keep it current.
//!
//! A resource is accepted only if the node's intents bring its updates: twilight fills
//! channels, emojis or members from GUILD_CREATE, but without the events that change them
//! the cache would silently go stale. Choosing a resource also makes the shards deserialise
//! the events that update it.

use protonn_shard::{EventTypeFlags, Intents};
use twilight_cache_inmemory::ResourceType;

use crate::CacheResourcesError;

/// The handlers' minimum, kept whatever the configuration says: the guild (its owner) and
/// its roles, which the permission checks read.
pub const REQUIRED_RESOURCES: ResourceType = ResourceType::GUILD.union(ResourceType::ROLE);

/// One resource type the cache can keep.
struct Resource {
    /// Its name in the configuration: twilight's flag name in lower case.
    name: &'static str,
    flag: ResourceType,
    /// Without these intents Discord never sends its updates.
    needs: Intents,
    /// The events twilight updates it from.
    events: EventTypeFlags,
}

/// What updates members, and users too: they leave the cache only with their last member.
const MEMBER_EVENTS: EventTypeFlags = EventTypeFlags::MEMBER_ADD
    .union(EventTypeFlags::MEMBER_UPDATE)
    .union(EventTypeFlags::MEMBER_REMOVE)
    .union(EventTypeFlags::MEMBER_CHUNK);

const RESOURCES: [Resource; 15] = [
    Resource {
        name: "guild",
        flag: ResourceType::GUILD,
        needs: Intents::GUILDS,
        events: EventTypeFlags::GUILD_CREATE
            .union(EventTypeFlags::GUILD_UPDATE)
            .union(EventTypeFlags::GUILD_DELETE),
    },
    Resource {
        name: "role",
        flag: ResourceType::ROLE,
        needs: Intents::GUILDS,
        events: EventTypeFlags::ROLE_CREATE
            .union(EventTypeFlags::ROLE_UPDATE)
            .union(EventTypeFlags::ROLE_DELETE),
    },
    Resource {
        name: "channel",
        flag: ResourceType::CHANNEL,
        needs: Intents::GUILDS,
        events: EventTypeFlags::CHANNEL_CREATE
            .union(EventTypeFlags::CHANNEL_UPDATE)
            .union(EventTypeFlags::CHANNEL_DELETE)
            .union(EventTypeFlags::CHANNEL_PINS_UPDATE)
            .union(EventTypeFlags::THREAD_CREATE)
            .union(EventTypeFlags::THREAD_UPDATE)
            .union(EventTypeFlags::THREAD_DELETE)
            .union(EventTypeFlags::THREAD_LIST_SYNC),
    },
    Resource {
        name: "stage_instance",
        flag: ResourceType::STAGE_INSTANCE,
        needs: Intents::GUILDS,
        events: EventTypeFlags::STAGE_INSTANCE_CREATE
            .union(EventTypeFlags::STAGE_INSTANCE_UPDATE)
            .union(EventTypeFlags::STAGE_INSTANCE_DELETE),
    },
    Resource {
        name: "message",
        flag: ResourceType::MESSAGE,
        needs: Intents::GUILD_MESSAGES,
        events: EventTypeFlags::MESSAGE_CREATE
            .union(EventTypeFlags::MESSAGE_UPDATE)
            .union(EventTypeFlags::MESSAGE_DELETE)
            .union(EventTypeFlags::MESSAGE_DELETE_BULK),
    },
    Resource {
        name: "user_current",
        flag: ResourceType::USER_CURRENT,
        needs: Intents::empty(),
        events: EventTypeFlags::READY.union(EventTypeFlags::USER_UPDATE),
    },
    Resource {
        name: "emoji",
        flag: ResourceType::EMOJI,
        needs: Intents::GUILD_EMOJIS_AND_STICKERS,
        events: EventTypeFlags::GUILD_EMOJIS_UPDATE,
    },
    Resource {
        name: "sticker",
        flag: ResourceType::STICKER,
        needs: Intents::GUILD_EMOJIS_AND_STICKERS,
        events: EventTypeFlags::GUILD_STICKERS_UPDATE,
    },
    Resource {
        name: "member",
        flag: ResourceType::MEMBER,
        needs: Intents::GUILD_MEMBERS,
        events: MEMBER_EVENTS,
    },
    Resource {
        name: "user",
        flag: ResourceType::USER,
        needs: Intents::GUILD_MEMBERS,
        events: MEMBER_EVENTS,
    },
    Resource {
        name: "presence",
        flag: ResourceType::PRESENCE,
        needs: Intents::GUILD_PRESENCES,
        events: EventTypeFlags::PRESENCE_UPDATE,
    },
    Resource {
        name: "voice_state",
        flag: ResourceType::VOICE_STATE,
        needs: Intents::GUILD_VOICE_STATES,
        events: EventTypeFlags::VOICE_STATE_UPDATE,
    },
    Resource {
        name: "reaction",
        flag: ResourceType::REACTION,
        needs: Intents::GUILD_MESSAGE_REACTIONS,
        events: EventTypeFlags::REACTION_ADD
            .union(EventTypeFlags::REACTION_REMOVE)
            .union(EventTypeFlags::REACTION_REMOVE_ALL)
            .union(EventTypeFlags::REACTION_REMOVE_EMOJI),
    },
    Resource {
        name: "integration",
        flag: ResourceType::INTEGRATION,
        needs: Intents::GUILD_INTEGRATIONS,
        events: EventTypeFlags::INTEGRATION_CREATE
            .union(EventTypeFlags::INTEGRATION_UPDATE)
            .union(EventTypeFlags::INTEGRATION_DELETE),
    },
    Resource {
        name: "guild_scheduled_event",
        flag: ResourceType::GUILD_SCHEDULED_EVENT,
        needs: Intents::GUILD_SCHEDULED_EVENTS,
        events: EventTypeFlags::GUILD_SCHEDULED_EVENT_CREATE
            .union(EventTypeFlags::GUILD_SCHEDULED_EVENT_UPDATE)
            .union(EventTypeFlags::GUILD_SCHEDULED_EVENT_DELETE)
            .union(EventTypeFlags::GUILD_SCHEDULED_EVENT_USER_ADD)
            .union(EventTypeFlags::GUILD_SCHEDULED_EVENT_USER_REMOVE),
    },
];

/// The resource types named in `names` (twilight's flag names, any case: `guild`, `role`,
/// `channel`, …). Refuses an unknown name, a list without `guild` and `role`, and a
/// resource whose updates need an intent the bot does not request.
pub fn cache_resources<S: AsRef<str>>(names: &[S]) -> Result<ResourceType, CacheResourcesError> {
    let mut resources = ResourceType::empty();
    for name in names {
        let name = name.as_ref();
        let resource = RESOURCES
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| CacheResourcesError::Unknown {
                name: name.to_owned(),
                known: RESOURCES.map(|r| r.name).join(", "),
            })?;
        if !crate::intents().contains(resource.needs) {
            return Err(CacheResourcesError::NeedsIntent {
                name: resource.name,
                intents: resource
                    .needs
                    .difference(crate::intents())
                    .iter_names()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>()
                    .join(" and "),
            });
        }
        resources |= resource.flag;
    }
    if let Some(missing) = RESOURCES
        .iter()
        .find(|r| REQUIRED_RESOURCES.contains(r.flag) && !resources.contains(r.flag))
    {
        return Err(CacheResourcesError::Required(missing.name));
    }
    Ok(resources)
}

/// The event types the handlers use ([`crate::event_types`]) and those that keep
/// `resources` current in the cache.
pub fn event_types_for(resources: ResourceType) -> EventTypeFlags {
    RESOURCES
        .iter()
        .filter(|r| resources.contains(r.flag))
        .fold(crate::event_types(), |types, r| types | r.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_twilight_resource_type_has_a_name() {
        let named = RESOURCES
            .iter()
            .fold(ResourceType::empty(), |all, r| all | r.flag);
        assert_eq!(named, ResourceType::all());
        for resource in &RESOURCES {
            let flag = ResourceType::from_name(&resource.name.to_ascii_uppercase());
            assert_eq!(flag, Some(resource.flag), "{}", resource.name);
        }
    }

    #[test]
    fn the_default_is_the_minimum_and_adds_no_event_types() {
        assert_eq!(crate::cached_resources(), REQUIRED_RESOURCES);
        assert_eq!(cache_resources(&["guild", "role"]), Ok(REQUIRED_RESOURCES));
        assert_eq!(event_types_for(REQUIRED_RESOURCES), crate::event_types());
    }

    #[test]
    fn names_are_checked() {
        let with_channels = cache_resources(&["GUILD", "role", "channel", "role"]).unwrap();
        assert_eq!(with_channels, REQUIRED_RESOURCES | ResourceType::CHANNEL);
        assert!(event_types_for(with_channels).contains(EventTypeFlags::CHANNEL_UPDATE));

        let err = cache_resources(&["guild", "role", "chanel"]).unwrap_err();
        assert!(matches!(&err, CacheResourcesError::Unknown { name, .. } if name == "chanel"));
        assert!(
            err.to_string().contains("channel"),
            "lists the known: {err}"
        );

        let err = cache_resources(&["guild", "channel"]).unwrap_err();
        assert_eq!(err, CacheResourcesError::Required("role"));
        assert_eq!(
            cache_resources::<&str>(&[]),
            Err(CacheResourcesError::Required("guild"))
        );

        let err = cache_resources(&["guild", "role", "member"]).unwrap_err();
        assert!(
            matches!(err, CacheResourcesError::NeedsIntent { name: "member", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("GUILD_MEMBERS"), "{err}");
    }
}
