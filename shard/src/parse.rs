//! A gateway frame to an event, as twilight's `parse` makes it, with GUILD_CREATE and
//! MESSAGE_CREATE read once.
//!
//! twilight's `GuildCreate` is an untagged enum (unavailable, else available): serde first
//! copies the whole payload into a generic tree, tries the unavailable form on it, then
//! builds the guild from the tree. For a READY burst's guilds (channels, roles, emojis,
//! members: tens of KB each) that copy and its freeing were half of the bot's CPU (B3's
//! profile in `benches/RESULTS.md`). Here the guild is read straight from the text, and
//! only a frame that is not an available guild goes the untagged way. And twilight's guild
//! reader makes an error message naming its 51 fields for every key it does not know (six
//! in a guild of the simulator's, more from Discord), only to drop it: the keys it does not
//! name are skipped before it sees them, and so are the lists the node does not read
//! ([`GuildKeys`]).
//!
//! twilight's `MessageCreate` flattens the message beside its `channel_type`, which makes
//! serde copy every message into the same generic tree first (5 % of B1's CPU): here the
//! message is read straight from the text, `channel_type` taken out on the way.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use twilight_gateway::error::ReceiveMessageError;
use twilight_gateway::{EventTypeFlags, Message};
use twilight_model::channel::{ChannelType, Message as DiscordMessage};
use twilight_model::gateway::OpCode;
use twilight_model::gateway::event::{
    DispatchEvent, Event, GatewayEvent, GatewayEventDeserializer,
};
use twilight_model::gateway::payload::incoming::{GuildCreate, MessageCreate};
use twilight_model::guild::{Guild, UnavailableGuild};

use crate::GuildLists;

/// What a gateway message gives the shard: `None` for the event types not wanted, which
/// twilight skips unparsed.
pub(crate) fn event(
    message: Message,
    wanted: EventTypeFlags,
    lists: GuildLists,
) -> Option<Result<Event, ReceiveMessageError>> {
    match message {
        Message::Close(frame) => Some(Ok(Event::GatewayClose(frame))),
        Message::Text(text) => parse(text, wanted, lists)
            .transpose()
            .map(|r| r.map(Event::from)),
    }
}

/// twilight's `parse`, reading an available guild's GUILD_CREATE without the untagged detour
/// (and only its `lists`), and a MESSAGE_CREATE without the flattening one.
pub(crate) fn parse(
    text: String,
    wanted: EventTypeFlags,
    lists: GuildLists,
) -> Result<Option<GatewayEvent>, ReceiveMessageError> {
    let read = match named_type(&text) {
        Some(name @ "GUILD_CREATE") if wanted.contains(EventTypeFlags::GUILD_CREATE) => {
            read_frame(&text, name, GuildSeed(lists)).map(|(s, guild)| {
                let create = if guild.unavailable == Some(true) {
                    // What the untagged enum makes of it: its unavailable form comes first.
                    GuildCreate::Unavailable(UnavailableGuild {
                        id: guild.id,
                        unavailable: true,
                    })
                } else {
                    GuildCreate::Available(guild)
                };
                (s, DispatchEvent::GuildCreate(Box::new(create)))
            })
        }
        Some(name @ "MESSAGE_CREATE") if wanted.contains(EventTypeFlags::MESSAGE_CREATE) => {
            read_frame(&text, name, MessageSeed)
                .map(|(s, message)| (s, DispatchEvent::MessageCreate(Box::new(message))))
        }
        _ => None,
    };
    match read {
        Some((s, event)) => Ok(Some(GatewayEvent::Dispatch(s, event))),
        // Anything else, and a frame of those two that this reading refuses (a GUILD_CREATE
        // that is not a whole guild, a broken one, whose error twilight then reports).
        None => twilight_gateway::parse(text, wanted),
    }
}

/// The event type a frame names where a dispatch's `t` is, found by a substring search:
/// cheaper than twilight's scan of the frame for `op`, `t` and `s` (1,708 instructions a
/// 1 KB message), which [`read_frame`] does only for the two types read here. Inside a
/// string value the quotes would be escaped, so only a frame's own `t` (or a nested
/// object's, which that scan then rules out) matches; a frame written with spaces goes
/// twilight's way.
fn named_type(text: &str) -> Option<&str> {
    const T: &str = r#""t":""#;
    let start = text.find(T)? + T.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// A dispatch frame of type `name`, its `d` read with `seed`: its sequence and what `d` is.
/// Read whole, as `serde_json::from_str` reads it (nothing may follow it); `None` if it is
/// no such frame or `seed` refuses it.
fn read_frame<S, T>(text: &str, name: &str, seed: S) -> Option<(u64, T)>
where
    S: for<'de> DeserializeSeed<'de, Value = T> + Copy,
{
    let frame = GatewayEventDeserializer::from_json(text)?;
    if frame.op() != OpCode::Dispatch as u8 || frame.event_type() != Some(name) {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let read = FrameSeed(seed).deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(read)
}

/// Reads a dispatch frame's `s` and its `d` with the seed it holds; `op` and `t` were read
/// already.
struct FrameSeed<S>(S);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for FrameSeed<S> {
    type Value = (u64, S::Value);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for FrameSeed<S> {
    type Value = (u64, S::Value);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dispatch frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut s, mut d) = (None, None);
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "s" => s = Some(map.next_value()?),
                "d" => d = Some(map.next_value_seed(self.0)?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((
            s.ok_or_else(|| de::Error::missing_field("s"))?,
            d.ok_or_else(|| de::Error::missing_field("d"))?,
        ))
    }
}

/// Reads a guild with only `lists` of its lists ([`GuildKeys`]).
#[derive(Clone, Copy)]
struct GuildSeed(GuildLists);

impl<'de> DeserializeSeed<'de> for GuildSeed {
    type Value = Guild;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Guild, D::Error> {
        Guild::deserialize(Keys::new(deserializer, GuildKeys(self.0)))
    }
}

/// Keys twilight 0.18's guild reader reads but leaves out of the field list it gives
/// `deserialize_struct` (`a_guild_create_is_what_twilight_makes_of_it` sets each of them).
const READ_BUT_NOT_LISTED: [&str; 5] = [
    "guild_scheduled_events",
    "max_stage_video_channel_users",
    "safety_alerts_channel_id",
    "stage_instances",
    "stickers",
];

/// Which keys of a map a struct's reader is handed ([`Keys`]).
trait KeyFilter<'de> {
    /// Reads `map`'s keys up to the next one for the reader, which `fields` are the fields
    /// of (as it gives them to `deserialize_struct`), dealing with the others on the way,
    /// and hands that one to `seed`.
    fn next<A: MapAccess<'de>, S: DeserializeSeed<'de>>(
        &mut self,
        map: &mut A,
        fields: &'static [&'static str],
        seed: S,
    ) -> Result<Option<S::Value>, A::Error>;
}

/// A struct's reader, handed only the keys `filter` lets through: the deserializer, the
/// visitor and the map access of one reading in turn, each passing the filter on.
struct Keys<T, F> {
    inner: T,
    filter: F,
    fields: &'static [&'static str],
}

impl<D, F> Keys<D, F> {
    fn new(deserializer: D, filter: F) -> Self {
        Self {
            inner: deserializer,
            filter,
            fields: &[],
        }
    }
}

impl<'de, D: Deserializer<'de>, F: KeyFilter<'de>> Deserializer<'de> for Keys<D, F> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Keys {
            inner: visitor,
            filter: self.filter,
            fields,
        };
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

impl<'de, V: Visitor<'de>, F: KeyFilter<'de>> Visitor<'de> for Keys<V, F> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Keys {
            inner: map,
            filter: self.filter,
            fields: self.fields,
        })
    }
}

impl<'de, A: MapAccess<'de>, F: KeyFilter<'de>> MapAccess<'de> for Keys<A, F> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.filter.next(&mut self.inner, self.fields, seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A guild's keys its reader reads: those it lists (its `fields`) and
/// [`READ_BUT_NOT_LISTED`], but not the lists left out of the [`GuildLists`]; the others'
/// values are skipped.
struct GuildKeys(GuildLists);

impl<'de> KeyFilter<'de> for GuildKeys {
    fn next<A: MapAccess<'de>, S: DeserializeSeed<'de>>(
        &mut self,
        map: &mut A,
        fields: &'static [&'static str],
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let keys = FieldOf {
            fields,
            lists: self.0,
        };
        loop {
            match map.next_key_seed(keys)? {
                None => return Ok(None),
                Some(Some(field)) => return seed.deserialize(field.into_deserializer()).map(Some),
                Some(None) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }
}

/// A key as the field it names, if the struct names it (`fields`) and it is read (`lists`);
/// read without allocating.
#[derive(Clone, Copy)]
struct FieldOf {
    fields: &'static [&'static str],
    lists: GuildLists,
}

impl<'de> DeserializeSeed<'de> for FieldOf {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for FieldOf {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .fields
            .iter()
            .chain(&READ_BUT_NOT_LISTED)
            .copied()
            .find(|field| *field == key)
            .filter(|field| self.lists.reads(field)))
    }
}

/// Reads a MESSAGE_CREATE's `d`: the message straight from the text, its `channel_type` taken
/// out on the way ([`ChannelTypeTaken`]).
#[derive(Clone, Copy)]
struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = MessageCreate;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<MessageCreate, D::Error> {
        let mut channel_type = None;
        let message = DiscordMessage::deserialize(Keys::new(
            deserializer,
            ChannelTypeTaken(&mut channel_type),
        ))?;
        Ok(MessageCreate {
            channel_type,
            message,
        })
    }
}

/// A message's keys but `channel_type`, whose value is kept.
struct ChannelTypeTaken<'a>(&'a mut Option<ChannelType>);

impl<'de> KeyFilter<'de> for ChannelTypeTaken<'_> {
    fn next<A: MapAccess<'de>, S: DeserializeSeed<'de>>(
        &mut self,
        map: &mut A,
        _fields: &'static [&'static str],
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        loop {
            match map.next_key::<Key<'de>>()? {
                None => return Ok(None),
                Some(Key::ChannelType) => *self.0 = map.next_value()?,
                Some(Key::Borrowed(key)) => {
                    let key = de::value::BorrowedStrDeserializer::new(key);
                    return seed.deserialize(key).map(Some);
                }
                Some(Key::Owned(key)) => {
                    return seed.deserialize(key.into_deserializer()).map(Some);
                }
            }
        }
    }
}

/// A message's key: `channel_type`, or one for the message's reader, borrowed from the
/// text unless it had escapes.
enum Key<'de> {
    ChannelType,
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(match key {
            "channel_type" => Key::ChannelType,
            _ => Key::Borrowed(key),
        })
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(match key {
            "channel_type" => Key::ChannelType,
            _ => Key::Owned(key.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn frame(d: Value) -> String {
        json!({"op": 0, "s": 7, "t": "GUILD_CREATE", "d": d}).to_string()
    }

    /// A guild as Discord sends it, with fields twilight does not know.
    fn guild(unavailable: Option<bool>) -> Value {
        let mut guild = json!({
            "id": "100", "name": "g", "icon": null, "owner_id": "1",
            "afk_timeout": 60, "default_message_notifications": 0, "explicit_content_filter": 0,
            "features": [], "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US",
            "premium_progress_bar_enabled": false, "premium_tier": 0, "system_channel_flags": 0,
            "verification_level": 0, "lazy": true,
            "soundboard_sounds": [], "incidents_data": {"raid": [1, {"at": null}]},
            "roles": [{"id": "100", "name": "@everyone", "color": 0, "hoist": false,
                "managed": false, "mentionable": false, "position": 0, "flags": 0,
                "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                "permissions": "1024"}],
            "channels": [{"id": "10", "type": 0, "guild_id": "100", "name": "c",
                "position": 0, "permission_overwrites": []}],
            "emojis": [], "members": [], "presences": [],
        });
        // The keys twilight reads without listing them.
        let unlisted = json!({
            "max_stage_video_channel_users": 50, "safety_alerts_channel_id": "12",
            "stickers": [{"id": "30", "name": "s", "description": null, "tags": "t",
                "type": 2, "format_type": 1, "available": true, "guild_id": "100"}],
            "stage_instances": [{"id": "40", "guild_id": "100", "channel_id": "10",
                "topic": "t", "privacy_level": 2, "guild_scheduled_event_id": null}],
            "guild_scheduled_events": [{"id": "50", "guild_id": "100", "channel_id": "10",
                "creator_id": null, "name": "e", "description": null,
                "scheduled_start_time": "2026-12-07T12:00:00.000000+00:00",
                "scheduled_end_time": null, "privacy_level": 2, "status": 1,
                "entity_type": 2, "entity_id": null, "entity_metadata": null,
                "user_count": 3, "image": null}],
        });
        for (key, value) in unlisted.as_object().unwrap() {
            guild[key] = value.clone();
        }
        if let Some(unavailable) = unavailable {
            guild["unavailable"] = json!(unavailable);
        }
        guild
    }

    /// Both readings of `text`, as events (twilight's `GatewayEvent` has no equality).
    fn both(text: String, wanted: EventTypeFlags) -> (Option<Event>, Option<Event>) {
        let ours = parse(text.clone(), wanted, GuildLists::ALL).expect("ours parses");
        let twilights = twilight_gateway::parse(text, wanted).expect("twilight parses");
        (ours.map(Event::from), twilights.map(Event::from))
    }

    #[test]
    fn a_guild_create_is_what_twilight_makes_of_it() {
        let wanted = EventTypeFlags::all();
        for d in [
            guild(Some(false)),
            guild(None),
            guild(Some(true)),
            json!({"id": "100", "unavailable": true}),
        ] {
            let (ours, twilights) = both(frame(d.clone()), wanted);
            assert!(ours.is_some(), "{d}");
            assert_eq!(ours, twilights, "{d}");
        }
        assert!(
            read_frame(
                &frame(guild(None)),
                "GUILD_CREATE",
                GuildSeed(GuildLists::ALL)
            )
            .is_some(),
            "an available guild is read straight, not the untagged way"
        );
        let Some(GatewayEvent::Dispatch(7, DispatchEvent::GuildCreate(create))) =
            parse(frame(guild(Some(false))), wanted, GuildLists::ALL).unwrap()
        else {
            panic!("a dispatch of sequence 7");
        };
        let GuildCreate::Available(guild) = *create else {
            panic!("an available guild");
        };
        assert_eq!(guild.roles.len(), 1);
        let read = (
            guild.stickers.len(),
            guild.stage_instances.len(),
            guild.guild_scheduled_events.len(),
            guild.safety_alerts_channel_id.map(|id| id.get()),
            guild.max_stage_video_channel_users,
        );
        assert_eq!(
            read,
            (1, 1, 1, Some(12), Some(50)),
            "the keys not listed are read"
        );
    }

    /// A list left out is skipped unread and empty; the rest is what twilight reads.
    #[test]
    fn the_lists_left_out_are_skipped_and_the_rest_is_read() {
        let lists = GuildLists {
            channels: false,
            stickers: false,
            ..GuildLists::ALL
        };
        let mut d = guild(None);
        d["members"] = json!([{"user": {"id": "1", "username": "u", "discriminator": "0",
            "avatar": null}, "roles": ["100"], "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "deaf": false, "mute": false, "flags": 0}]);
        let (Ok(Some(ours)), Ok(Some(twilights))) = (
            parse(frame(d.clone()), EventTypeFlags::all(), lists),
            twilight_gateway::parse(frame(d), EventTypeFlags::all()),
        ) else {
            panic!("both read the guild");
        };
        let available = |event: GatewayEvent| match event {
            GatewayEvent::Dispatch(_, DispatchEvent::GuildCreate(create)) => match *create {
                GuildCreate::Available(guild) => guild,
                GuildCreate::Unavailable(_) => panic!("an available guild"),
            },
            _ => panic!("a GUILD_CREATE"),
        };
        let (ours, mut expected) = (available(ours), available(twilights));
        assert_eq!((expected.channels.len(), expected.stickers.len()), (1, 1));
        expected.channels.clear();
        expected.stickers.clear();
        assert_eq!(ours, expected, "only the lists left out differ");
        assert_eq!((ours.members.len(), ours.roles.len()), (1, 1));
    }

    #[test]
    fn only_a_frame_s_own_type_is_taken_for_it() {
        assert_eq!(named_type(&frame(guild(None))), Some("GUILD_CREATE"));
        let text = json!({"op": 0, "s": 8, "t": "MESSAGE_CREATE",
            "d": {"content": r#"{"t":"GUILD_CREATE"}"#}})
        .to_string();
        assert_eq!(named_type(&text), Some("MESSAGE_CREATE"));
        // A nested `t` named first is ruled out by twilight's scan: twilight's way then.
        let nested = r#"{"d":{"x":{"t":"MESSAGE_CREATE"}},"op":0,"s":1,"t":"TYPING_START"}"#;
        assert_eq!(named_type(nested), Some("MESSAGE_CREATE"));
        assert!(read_frame(nested, "MESSAGE_CREATE", MessageSeed).is_none());
    }

    fn message(channel_type: Option<u8>) -> Value {
        let mut d = json!({
            "id": "10", "channel_id": "20", "guild_id": "100",
            "author": {"id": "5", "username": "u\"q", "discriminator": "0", "avatar": null},
            "member": {"roles": ["100"], "joined_at": "2026-01-01T00:00:00.000000+00:00",
                "deaf": false, "mute": false, "flags": 0},
            "content": "hello \"world\"", "timestamp": "2024-01-01T00:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": false, "type": 0, "nonce": "x", "unknown_key": {"a": [1, 2]},
        });
        if let Some(kind) = channel_type {
            d["channel_type"] = json!(kind);
        }
        json!({"t": "MESSAGE_CREATE", "s": 9, "op": 0, "d": d})
    }

    #[test]
    fn a_message_create_is_what_twilight_makes_of_it() {
        for channel_type in [Some(0), Some(11), None] {
            let text = message(channel_type).to_string();
            let (ours, twilights) = both(text.clone(), EventTypeFlags::MESSAGE_CREATE);
            let Some(Event::MessageCreate(create)) = &ours else {
                panic!("a MESSAGE_CREATE: {ours:?}");
            };
            assert_eq!(create.channel_type.map(u8::from), channel_type);
            assert_eq!(create.content, r#"hello "world""#);
            assert_eq!(ours, twilights);
            assert!(
                read_frame(&text, "MESSAGE_CREATE", MessageSeed).is_some(),
                "read straight, not the flattening way"
            );
        }
        // A key with an escape (not borrowed from the text) is read as twilight reads it.
        let escaped = message(Some(0))
            .to_string()
            .replace(r#""content""#, r#""cont\u0065nt""#);
        let (ours, twilights) = both(escaped, EventTypeFlags::MESSAGE_CREATE);
        let Some(Event::MessageCreate(create)) = &ours else {
            panic!("a MESSAGE_CREATE: {ours:?}");
        };
        assert_eq!(create.content, r#"hello "world""#);
        assert_eq!(ours, twilights);
        // A broken one is refused as twilight refuses it.
        let mut broken = message(None);
        broken["d"]["id"] = json!("not a snowflake");
        let broken = broken.to_string();
        assert!(parse(broken.clone(), EventTypeFlags::all(), GuildLists::ALL).is_err());
        assert!(twilight_gateway::parse(broken, EventTypeFlags::all()).is_err());
    }

    #[test]
    fn other_frames_and_unwanted_types_go_twilights_way() {
        let (ours, twilights) = both(frame(guild(None)), EventTypeFlags::MESSAGE_CREATE);
        assert_eq!((ours, twilights), (None, None));

        let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}}).to_string();
        let (ours, twilights) = both(hello, EventTypeFlags::all());
        assert!(ours.is_some());
        assert_eq!(ours, twilights);

        // A GUILD_CREATE that is no guild is refused as twilight refuses it.
        let broken = frame(json!({"id": "100", "name": 5}));
        assert!(parse(broken.clone(), EventTypeFlags::all(), GuildLists::ALL).is_err());
        assert!(twilight_gateway::parse(broken, EventTypeFlags::all()).is_err());
    }
}
