//! A shard's slice of the node cache, carried with the shard when it moves to another node.
//! A RESUME replays the events the new owner missed, never the GUILD_CREATEs, so without
//! this the new owner would not know the shard's guilds (their owners and roles, which the
//! permission checks read) until each one next changed.

use serde::{Deserialize, Serialize};
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::gateway::payload::incoming::{GuildCreate, GuildDelete};
use twilight_model::guild::{Guild, Role};
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;

/// One cached guild: the cached guild's fields, which are `Guild`'s without its lists, and
/// its roles.
#[derive(Serialize, Deserialize)]
struct CachedGuildSnapshot {
    guild: serde_json::Value,
    roles: Vec<Role>,
}

/// The cached guilds of `shard_id` (of `shard_count`), removed from `cache`: they now belong
/// to the shard's next owner. Encoded as JSON.
pub fn take_shard_cache(cache: &DefaultInMemoryCache, shard_id: u32, shard_count: u32) -> Vec<u8> {
    let guild_ids: Vec<Id<GuildMarker>> = cache
        .iter()
        .guilds()
        .map(|entry| *entry.key())
        .filter(|id| protonn_storage::on_shard(id.get(), shard_id, shard_count))
        .collect();
    let snapshots: Vec<CachedGuildSnapshot> = guild_ids
        .iter()
        .filter_map(|&id| snapshot(cache, id))
        .collect();
    for id in guild_ids {
        // Not unavailable: gone from this node, so the cache drops it and its roles.
        cache.update(&GuildDelete {
            id,
            unavailable: None,
        });
    }
    serde_json::to_vec(&snapshots).expect("cached guilds serialise to JSON")
}

/// Loads what [`take_shard_cache`] took on the previous owner; returns the guilds loaded.
/// Refuses (changing nothing) a snapshot it cannot read in full.
pub fn load_shard_cache(
    cache: &DefaultInMemoryCache,
    snapshot: &[u8],
) -> Result<usize, serde_json::Error> {
    if snapshot.is_empty() {
        return Ok(0);
    }
    let snapshots: Vec<CachedGuildSnapshot> = serde_json::from_slice(snapshot)?;
    let guilds = snapshots
        .into_iter()
        .map(|mut snapshot| {
            // The cache keeps some of Guild's plain fields as options (absent reads as unset)
            // and none of its lists; the roles come back, the lists not cached stay empty.
            if let Some(fields) = snapshot.guild.as_object_mut() {
                fields.retain(|_, value| !value.is_null());
                fields.insert("roles".to_owned(), serde_json::to_value(&snapshot.roles)?);
                for list in ["emojis", "stickers"] {
                    fields
                        .entry(list)
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                }
            }
            serde_json::from_value::<Guild>(snapshot.guild)
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    let loaded = guilds.len();
    for guild in guilds {
        cache.update(&GuildCreate::Available(guild));
    }
    Ok(loaded)
}

/// The cached guild and its roles as JSON, to compare two nodes' views of it.
pub fn cached_guild(cache: &DefaultInMemoryCache, guild_id: u64) -> Option<serde_json::Value> {
    let snapshot = snapshot(cache, Id::new_checked(guild_id)?)?;
    serde_json::to_value(snapshot).ok()
}

fn snapshot(cache: &DefaultInMemoryCache, id: Id<GuildMarker>) -> Option<CachedGuildSnapshot> {
    let guild = serde_json::to_value(&*cache.guild(id)?).ok()?;
    let mut roles: Vec<Role> = cache
        .guild_roles(id)
        .map(|ids| {
            ids.iter()
                .filter_map(|&role| cache.role(role).map(|r| r.resource().clone()))
                .collect()
        })
        .unwrap_or_default();
    roles.sort_by_key(|role| role.id);
    Some(CachedGuildSnapshot { guild, roles })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> DefaultInMemoryCache {
        DefaultInMemoryCache::builder()
            .resource_types(crate::cached_resources())
            .build()
    }

    fn guild(id: u64) -> Guild {
        let json = serde_json::json!({
            "id": id.to_string(), "name": format!("guild {id}"), "owner_id": "42",
            "afk_timeout": 60, "default_message_notifications": 0, "explicit_content_filter": 0,
            "features": [], "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US",
            "premium_progress_bar_enabled": false, "premium_tier": 0, "system_channel_flags": 0,
            "verification_level": 0, "emojis": [], "stickers": [],
            "roles": [{
                "id": id.to_string(), "name": "@everyone", "color": 0, "colors": {"primary_color": 0}, "hoist": false,
                "managed": false, "mentionable": false, "permissions": "32", "position": 0,
                "flags": 0
            }, {
                "id": (id + 1).to_string(), "name": "Moderator", "color": 5, "colors": {"primary_color": 5}, "hoist": true,
                "managed": false, "mentionable": true, "permissions": "8", "position": 1,
                "flags": 0
            }]
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_shards_guilds_move_with_it_and_nothing_else_does() {
        let old = cache();
        // Shard of a guild id: (id >> 22) % shard_count; two shards here.
        let id_on = |timestamp: u64| (timestamp << 22) | 7;
        let on_shard_0 = [id_on(4), id_on(6)];
        let on_shard_1 = id_on(5);
        for id in on_shard_0.into_iter().chain([on_shard_1]) {
            old.update(&GuildCreate::Available(guild(id)));
        }
        let before: Vec<_> = on_shard_0
            .iter()
            .map(|&id| cached_guild(&old, id).unwrap())
            .collect();

        let snapshot = take_shard_cache(&old, 0, 2);
        assert!(
            on_shard_0
                .iter()
                .all(|&id| cached_guild(&old, id).is_none()),
            "evicted"
        );
        assert!(
            cached_guild(&old, on_shard_1).is_some(),
            "other shards stay"
        );

        let new = cache();
        assert_eq!(load_shard_cache(&new, &snapshot).unwrap(), 2);
        let after: Vec<_> = on_shard_0
            .iter()
            .map(|&id| cached_guild(&new, id).unwrap())
            .collect();
        assert_eq!(before, after, "the new owner's cache equals the old one's");
        assert_eq!(after[0]["roles"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn an_unreadable_snapshot_changes_nothing() {
        let new = cache();
        assert!(load_shard_cache(&new, b"[{\"guild\": 1}]").is_err());
        assert!(load_shard_cache(&new, b"not json").is_err());
        assert_eq!(new.iter().guilds().count(), 0);
        assert_eq!(load_shard_cache(&new, b"").unwrap(), 0);
    }
}
