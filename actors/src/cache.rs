//! What the node cache may keep, by name, and the gateway events that keep it current.
//!
//! A resource is accepted only if the node's intents bring its updates: twilight fills
//! channels, emojis or members from GUILD_CREATE, but without the events that change them
//! the cache would silently go stale. Choosing a resource also makes the shards deserialise
//! the events that update it.

use protonn_shard::{EventTypeFlags, GuildLists, Intents};
use twilight_cache_inmemory::{DefaultInMemoryCache, ResourceType};
use twilight_model::channel::{Channel, StageInstance, message::Sticker};
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::gateway::presence::Presence;
use twilight_model::guild::{Emoji, Guild, Member};
use twilight_model::voice::VoiceState;

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

/// The lists of a GUILD_CREATE the shards read for a cache keeping `resources`: what it
/// keeps, and the members, where the bot's own roles are read ([`crate::OwnRoles`]). The
/// others (by default the channels, emojis, presences, stickers, voice states, stage
/// instances and scheduled events) are skipped unread; nothing else reads them.
pub fn guild_lists_for(resources: ResourceType) -> GuildLists {
    GuildLists {
        members: true,
        ..cached_lists(resources)
    }
}

/// The lists of a GUILD_CREATE twilight's cache keeps with `resources` (it keeps no
/// scheduled events).
fn cached_lists(resources: ResourceType) -> GuildLists {
    GuildLists {
        channels: resources.contains(ResourceType::CHANNEL),
        emojis: resources.contains(ResourceType::EMOJI),
        members: resources.contains(ResourceType::MEMBER),
        presences: resources.contains(ResourceType::PRESENCE),
        stickers: resources.contains(ResourceType::STICKER),
        voice_states: resources.contains(ResourceType::VOICE_STATE),
        stage_instances: resources.contains(ResourceType::STAGE_INSTANCE),
        scheduled_events: false,
    }
}

/// Updates the node cache from `event` as twilight's `update` does, without its deep copy of
/// a GUILD_CREATE: twilight clones the whole guild it is given (channels, members, presences,
/// emojis: most of a READY burst's bytes) and then keeps what the resource types say, by
/// default the guild and its roles. The lists the cache does not keep are set aside for the
/// update and put back after it, so whatever reads the event next (the bot's own roles read
/// its members, a resident actor may take it) sees it whole.
pub(crate) fn update_cache(cache: &DefaultInMemoryCache, event: &mut Event) {
    let Event::GuildCreate(create) = event else {
        return cache.update(&*event);
    };
    let unkept = match &mut **create {
        GuildCreate::Available(guild) => Unkept::take(guild, cache.config().resource_types()),
        GuildCreate::Unavailable(_) => Unkept::default(),
    };
    cache.update(&**create);
    if let GuildCreate::Available(guild) = &mut **create {
        unkept.put_back(guild);
    }
}

/// A GUILD_CREATE's lists that twilight's cache reads only when it keeps their resource
/// (its cached guild takes none of them).
#[derive(Default)]
struct Unkept {
    channels: Vec<Channel>,
    threads: Vec<Channel>,
    emojis: Vec<Emoji>,
    members: Vec<Member>,
    presences: Vec<Presence>,
    stickers: Vec<Sticker>,
    voice_states: Vec<VoiceState>,
    stage_instances: Vec<StageInstance>,
}

impl Unkept {
    fn take(guild: &mut Guild, kept: ResourceType) -> Self {
        fn unless<T>(kept: bool, list: &mut Vec<T>) -> Vec<T> {
            if kept {
                Vec::new()
            } else {
                std::mem::take(list)
            }
        }
        let kept = cached_lists(kept);
        Self {
            channels: unless(kept.channels, &mut guild.channels),
            threads: unless(kept.channels, &mut guild.threads),
            emojis: unless(kept.emojis, &mut guild.emojis),
            members: unless(kept.members, &mut guild.members),
            presences: unless(kept.presences, &mut guild.presences),
            stickers: unless(kept.stickers, &mut guild.stickers),
            voice_states: unless(kept.voice_states, &mut guild.voice_states),
            stage_instances: unless(kept.stage_instances, &mut guild.stage_instances),
        }
    }

    fn put_back(self, guild: &mut Guild) {
        /// A list kept was not taken: what was taken is empty then, and its place untouched.
        fn restore<T>(list: &mut Vec<T>, taken: Vec<T>) {
            if !taken.is_empty() {
                *list = taken;
            }
        }
        restore(&mut guild.channels, self.channels);
        restore(&mut guild.threads, self.threads);
        restore(&mut guild.emojis, self.emojis);
        restore(&mut guild.members, self.members);
        restore(&mut guild.presences, self.presences);
        restore(&mut guild.stickers, self.stickers);
        restore(&mut guild.voice_states, self.voice_states);
        restore(&mut guild.stage_instances, self.stage_instances);
    }
}

#[cfg(test)]
mod tests {
    use twilight_model::id::Id;

    use super::*;

    /// A GUILD_CREATE with a list of every kind twilight's cache may keep from it.
    fn guild_create() -> Event {
        let id = |n: u64| n.to_string();
        let user = serde_json::json!({"id": id(5), "username": "bot", "discriminator": "0",
            "avatar": null, "bot": true});
        let guild = serde_json::json!({
            "id": id(100), "name": "g", "icon": null, "owner_id": id(1),
            "afk_timeout": 60, "default_message_notifications": 0, "explicit_content_filter": 0,
            "features": [], "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US",
            "premium_progress_bar_enabled": false, "premium_tier": 0, "system_channel_flags": 0,
            "verification_level": 0,
            "roles": [{"id": id(100), "name": "@everyone", "color": 0, "hoist": false,
                "managed": false, "mentionable": false, "position": 0, "flags": 0,
                "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                "permissions": "1024"}],
            "channels": [{"id": id(10), "type": 0, "guild_id": id(100), "name": "c",
                "position": 0, "permission_overwrites": []}],
            "threads": [{"id": id(11), "type": 11, "guild_id": id(100), "name": "t",
                "parent_id": id(10)}],
            "emojis": [{"id": id(20), "name": "e", "roles": [], "require_colons": true,
                "managed": false, "animated": false, "available": true}],
            "members": [{"user": user, "roles": [id(100)], "joined_at": null, "deaf": false,
                "mute": false, "flags": 0}],
            "presences": [{"user": {"id": id(5)}, "status": "online", "activities": [],
                "client_status": {"desktop": "online"}}],
            "stickers": [], "voice_states": [], "stage_instances": [],
        });
        Event::GuildCreate(Box::new(GuildCreate::Available(
            serde_json::from_value(guild).unwrap(),
        )))
    }

    #[test]
    fn a_guild_create_caches_what_twilight_caches_and_stays_whole() {
        for kept in [REQUIRED_RESOURCES, ResourceType::all()] {
            let twilights = DefaultInMemoryCache::builder().resource_types(kept).build();
            let ours = DefaultInMemoryCache::builder().resource_types(kept).build();
            let original = guild_create();
            let mut event = original.clone();
            twilights.update(&original);
            update_cache(&ours, &mut event);

            assert_eq!(event, original, "the event is whole again");
            let guild_id = Id::new(100);
            assert_eq!(
                ours.guild(guild_id).map(|g| g.clone()),
                twilights.guild(guild_id).map(|g| g.clone())
            );
            assert!(ours.guild(guild_id).is_some());
            let (ours, twilights) = (ours.stats(), twilights.stats());
            let counts = |stats: &twilight_cache_inmemory::InMemoryCacheStats<'_, _>| {
                [
                    stats.guilds(),
                    stats.roles(),
                    stats.channels(),
                    stats.emojis(),
                    stats.members(),
                    stats.presences(),
                    stats.users(),
                ]
            };
            assert_eq!(counts(&ours), counts(&twilights), "{kept:?}");
        }
        // The cheaper update does keep every kind when asked to (the comparison above is
        // not of two empty caches).
        let all = DefaultInMemoryCache::builder()
            .resource_types(ResourceType::all())
            .build();
        update_cache(&all, &mut guild_create());
        let stats = all.stats();
        assert_eq!(
            [
                stats.roles(),
                stats.channels(),
                stats.emojis(),
                stats.members(),
                stats.presences()
            ],
            [1, 2, 1, 1, 1]
        );
    }

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

    /// The shards read the lists the cache keeps, and the members (the bot's own roles).
    #[test]
    fn a_guild_create_s_lists_are_read_where_something_keeps_them() {
        let default = guild_lists_for(REQUIRED_RESOURCES);
        assert_eq!(
            default,
            GuildLists {
                channels: false,
                emojis: false,
                members: true,
                presences: false,
                stickers: false,
                voice_states: false,
                stage_instances: false,
                scheduled_events: false,
            }
        );
        let all = guild_lists_for(ResourceType::all());
        assert_eq!(
            all,
            GuildLists {
                scheduled_events: false,
                ..GuildLists::ALL
            },
            "twilight keeps no scheduled events"
        );
        let channels = guild_lists_for(REQUIRED_RESOURCES | ResourceType::CHANNEL);
        assert!(channels.channels && !channels.emojis);
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
