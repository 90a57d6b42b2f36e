//! Bot commands: parsing of text and slash commands, and the config keys they may touch.
//!
//! Pure functions only, so the rules are tested without actors or Discord.

use protonn_storage::GuildConfig;

/// Values of the `command` label of `protonn_actors_commands_handled_total`.
pub(crate) const COMMAND_LABELS: [&str; 5] =
    ["ping", "help", "config_get", "config_set", "invalid"];
/// Values of the `outcome` label of `protonn_actors_commands_handled_total`.
pub(crate) const OUTCOME_LABELS: [&str; 6] =
    ["ok", "invalid", "denied", "conflict", "error", "cooldown"];

const PREFIX_MAX_CHARS: usize = 5;
/// Staff roles a guild may name (Discord allows 250 roles; a staff list is a handful).
const STAFF_ROLES_MAX: usize = 25;

/// Discord's locales (the values its `locale` fields take).
const LOCALES: [&str; 32] = [
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl",
    "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th",
    "zh-CN", "ja", "zh-TW", "ko",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Ping,
    Help,
    ConfigGet { key: ConfigKey },
    ConfigSet { key: ConfigKey, value: String },
}

impl Command {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Help => "help",
            Self::ConfigGet { .. } => "config_get",
            Self::ConfigSet { .. } => "config_set",
        }
    }
}

/// What a message or interaction asks of the bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not addressed to the bot: stay silent.
    NotACommand,
    Command(Command),
    /// Addressed to the bot but unusable; the text tells the user how to fix it.
    Invalid(String),
}

/// The keys `config get/set` accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfigKey {
    Prefix,
    Locale,
    LogChannel,
    StaffRoles,
    DmMembers,
    Escalation,
    Automod,
    AnnounceChannel,
}

impl ConfigKey {
    pub(crate) const ALL: [Self; 8] = [
        Self::Prefix,
        Self::Locale,
        Self::LogChannel,
        Self::StaffRoles,
        Self::DmMembers,
        Self::Escalation,
        Self::Automod,
        Self::AnnounceChannel,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Prefix => "prefix",
            Self::Locale => "locale",
            Self::LogChannel => "log_channel",
            Self::StaffRoles => "staff_roles",
            Self::DmMembers => "dm_members",
            Self::Escalation => "escalation",
            Self::Automod => "automod",
            Self::AnnounceChannel => "announce_channel",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|key| key.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("Unknown config key `{name}`. Keys: {}.", key_list()))
    }

    /// The key's current value, as shown to users.
    pub(crate) fn show(self, config: &GuildConfig) -> String {
        match self {
            Self::Prefix => config.prefix.clone(),
            Self::Locale => config.locale.clone(),
            Self::LogChannel => show_channel(config.log_channel),
            Self::AnnounceChannel => show_channel(config.announce_channel),
            Self::StaffRoles if config.staff_roles.is_empty() => "none".to_owned(),
            Self::StaffRoles => config
                .staff_roles
                .iter()
                .map(|id| format!("<@&{id}>"))
                .collect::<Vec<_>>()
                .join(" "),
            Self::DmMembers if config.moderation.dm_members => "on".to_owned(),
            Self::DmMembers => "off".to_owned(),
            Self::Escalation => crate::moderation::show_escalation(&config.moderation.escalation),
            Self::Automod => serde_json::to_string(&config.automod).expect("a config serialises"),
        }
    }

    /// Validates `value` and writes it into `config`; the error tells the user what is allowed.
    pub(crate) fn apply(self, config: &mut GuildConfig, value: &str) -> Result<(), String> {
        match self {
            Self::Prefix => {
                let chars = value.chars().count();
                if chars == 0 || chars > PREFIX_MAX_CHARS {
                    return Err(format!("A prefix has 1 to {PREFIX_MAX_CHARS} characters."));
                }
                if value
                    .chars()
                    .any(|c| c.is_whitespace() || c == '`' || c == '@')
                {
                    return Err("A prefix cannot contain spaces, backticks or @.".to_owned());
                }
                config.prefix = value.to_owned();
            }
            Self::Locale => {
                let Some(locale) = LOCALES.iter().find(|l| l.eq_ignore_ascii_case(value)) else {
                    return Err(format!(
                        "Unknown locale `{value}`. Use one of Discord's locales, such as en-US, de or fr."
                    ));
                };
                config.locale = (*locale).to_owned();
            }
            Self::LogChannel => config.log_channel = parse_channel_or_none(value)?,
            Self::AnnounceChannel => config.announce_channel = parse_channel_or_none(value)?,
            Self::StaffRoles => {
                config.staff_roles = parse_roles(value)?;
            }
            Self::DmMembers => {
                config.moderation.dm_members = match value.to_ascii_lowercase().as_str() {
                    "on" | "yes" | "true" => true,
                    "off" | "no" | "false" => false,
                    _ => return Err("Give `on` or `off`.".to_owned()),
                };
            }
            Self::Escalation => {
                config.moderation.escalation = crate::moderation::parse_escalation(value)?;
            }
            Self::Automod => {
                let automod = serde_json::from_str(value).map_err(|err| {
                    format!(
                        "Automod rules are JSON such as `{}`: {err}.",
                        r#"{"rules":[{"name":"invites","trigger":{"kind":"invite_links"},"actions":[{"kind":"delete"}]}]}"#
                    )
                })?;
                crate::automod::validate(&automod)?;
                config.automod = automod;
            }
        }
        Ok(())
    }
}

fn key_list() -> String {
    ConfigKey::ALL
        .map(|key| format!("`{}`", key.name()))
        .join(", ")
}

/// `config` with one key set from its text form, as `config set key value` would (the
/// CLI's way to change a guild); the error tells a user what is allowed.
pub fn apply_config_key(
    config: &GuildConfig,
    key: &str,
    value: &str,
) -> Result<GuildConfig, String> {
    let mut next = config.clone();
    ConfigKey::parse(key)?.apply(&mut next, value)?;
    Ok(next)
}

/// A key's value in the text form `config set` takes (the dashboard's forms show it so).
pub fn show_config_key(config: &GuildConfig, key: &str) -> Result<String, String> {
    Ok(ConfigKey::parse(key)?.show(config))
}

/// A whole config from outside Discord (the dashboard), checked and normalised by the same
/// rules as `config set`; the error tells a user what is allowed.
pub(crate) fn validate(config: &GuildConfig) -> Result<GuildConfig, String> {
    let mut valid = GuildConfig::default();
    ConfigKey::Prefix.apply(&mut valid, &config.prefix)?;
    ConfigKey::Locale.apply(&mut valid, &config.locale)?;
    if config.log_channel == Some(0) {
        return Err("A log channel is a channel id, or none.".to_owned());
    }
    valid.log_channel = config.log_channel;
    if config.announce_channel == Some(0) {
        return Err("An announcement channel is a channel id, or none.".to_owned());
    }
    valid.announce_channel = config.announce_channel;
    let roles: Vec<String> = config.staff_roles.iter().map(u64::to_string).collect();
    let roles = if roles.is_empty() {
        "none".to_owned()
    } else {
        roles.join(" ")
    };
    ConfigKey::StaffRoles.apply(&mut valid, &roles)?;
    valid.moderation.dm_members = config.moderation.dm_members;
    let escalation = crate::moderation::show_escalation(&config.moderation.escalation);
    ConfigKey::Escalation.apply(&mut valid, &escalation)?;
    crate::automod::validate(&config.automod)?;
    valid.automod = config.automod.clone();
    valid.tickets = crate::tickets::validate(&config.tickets)?;
    Ok(valid)
}

/// Role mentions (`<@&123>`) or ids, separated by spaces or commas; `none` for no roles.
fn parse_roles(value: &str) -> Result<Vec<u64>, String> {
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut roles = Vec::new();
    for word in value.split([' ', ',']).filter(|word| !word.is_empty()) {
        let id = word
            .strip_prefix("<@&")
            .and_then(|rest| rest.strip_suffix('>'))
            .unwrap_or(word);
        let Some(id) = id.parse::<u64>().ok().filter(|&id| id != 0) else {
            return Err(format!(
                "`{word}` is not a role. Give role mentions such as @Moderators, role ids, or `none`."
            ));
        };
        if !roles.contains(&id) {
            roles.push(id);
        }
    }
    if roles.is_empty() || roles.len() > STAFF_ROLES_MAX {
        return Err(format!(
            "Name 1 to {STAFF_ROLES_MAX} staff roles, or `none`."
        ));
    }
    Ok(roles)
}

fn show_channel(channel: Option<u64>) -> String {
    channel.map_or_else(|| "none".to_owned(), |id| format!("<#{id}>"))
}

/// A channel mention, a channel id, or `none`.
fn parse_channel_or_none(value: &str) -> Result<Option<u64>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_channel(value).map(Some).ok_or_else(|| {
        "Give a channel mention such as #general, a channel id, or `none`.".to_owned()
    })
}

/// A channel mention (`<#123>`) or a bare id.
fn parse_channel(value: &str) -> Option<u64> {
    let id = value
        .strip_prefix("<#")
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(value);
    id.parse().ok().filter(|&id| id != 0)
}

/// Help text for users, with the guild's prefix.
pub(crate) fn help(prefix: &str) -> String {
    format!(
        "Commands: `{prefix}ping`, `{prefix}config get <key>`, `{prefix}config set <key> <value>`, \
         `{prefix}help` (also as slash commands `/ping` and `/config`). Config keys: {}. \
         Moderation: {}.",
        key_list(),
        crate::moderation::help(prefix)
    )
}

/// A text message under the guild's prefix as its command's name (lowercase) and the words
/// after it; `None` for chat.
pub(crate) fn split_text(prefix: &str, content: &str) -> Option<(String, Vec<String>)> {
    let mut words = content.strip_prefix(prefix)?.split_whitespace();
    let name = words.next()?.to_ascii_lowercase();
    Some((name, words.map(str::to_owned).collect()))
}

/// The actor's own text commands.
pub(crate) const BUILT_IN: [&str; 3] = ["ping", "help", "config"];

/// Parses a text message under the guild's prefix.
pub(crate) fn parse_text(prefix: &str, content: &str) -> Parsed {
    let Some(rest) = content.strip_prefix(prefix) else {
        return Parsed::NotACommand;
    };
    let mut words = rest.split_whitespace();
    let Some(name) = words.next() else {
        return Parsed::NotACommand;
    };
    let args: Vec<&str> = words.collect();
    match name.to_ascii_lowercase().as_str() {
        "ping" => Parsed::Command(Command::Ping),
        "help" => Parsed::Command(Command::Help),
        "config" => parse_config(prefix, &args),
        _ => Parsed::Invalid(format!(
            "Unknown command `{prefix}{name}`. Try `{prefix}help`."
        )),
    }
}

fn parse_config(prefix: &str, args: &[&str]) -> Parsed {
    let usage = || {
        Parsed::Invalid(format!(
            "Usage: `{prefix}config get <key>` or `{prefix}config set <key> <value>`. Keys: {}.",
            key_list()
        ))
    };
    match args {
        [action, key] if action.eq_ignore_ascii_case("get") => config_get(key),
        [action, key, value @ ..] if action.eq_ignore_ascii_case("set") && !value.is_empty() => {
            config_set(key, &value.join(" "))
        }
        _ => usage(),
    }
}

fn config_get(key: &str) -> Parsed {
    match ConfigKey::parse(key) {
        Ok(key) => Parsed::Command(Command::ConfigGet { key }),
        Err(message) => Parsed::Invalid(message),
    }
}

fn config_set(key: &str, value: &str) -> Parsed {
    match ConfigKey::parse(key) {
        Ok(key) => Parsed::Command(Command::ConfigSet {
            key,
            value: value.to_owned(),
        }),
        Err(message) => Parsed::Invalid(message),
    }
}

/// Parses a slash command: `/ping`, `/help`, `/config key:<key> [value:<value>]` (with a
/// value it sets, without it reads).
pub(crate) fn parse_slash(name: &str, options: &[(&str, &str)]) -> Parsed {
    let option = |wanted: &str| {
        options
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| *value)
    };
    match name {
        "ping" => Parsed::Command(Command::Ping),
        "help" => Parsed::Command(Command::Help),
        "config" => match (option("key"), option("value")) {
            (Some(key), None) => config_get(key),
            (Some(key), Some(value)) => config_set(key, value),
            (None, _) => Parsed::Invalid(format!("`/config` needs a key: {}.", key_list())),
        },
        _ => Parsed::Invalid(format!("Unknown command `/{name}`. Try `/help`.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_commands_follow_the_prefix() {
        assert_eq!(parse_text("!", "!ping"), Parsed::Command(Command::Ping));
        assert_eq!(parse_text("!", "!PING  "), Parsed::Command(Command::Ping));
        assert_eq!(parse_text("?", "!ping"), Parsed::NotACommand);
        assert_eq!(parse_text("!", "hello there"), Parsed::NotACommand);
        assert_eq!(parse_text("!", "!"), Parsed::NotACommand);
        assert_eq!(parse_text("pt>", "pt>help"), Parsed::Command(Command::Help));
    }

    #[test]
    fn config_commands_parse_keys_and_values() {
        assert_eq!(
            parse_text("!", "!config get prefix"),
            Parsed::Command(Command::ConfigGet {
                key: ConfigKey::Prefix
            })
        );
        assert_eq!(
            parse_text("!", "!config set locale de"),
            Parsed::Command(Command::ConfigSet {
                key: ConfigKey::Locale,
                value: "de".into()
            })
        );
        assert_eq!(
            parse_slash("config", &[("key", "prefix"), ("value", "?")]),
            Parsed::Command(Command::ConfigSet {
                key: ConfigKey::Prefix,
                value: "?".into()
            })
        );
        assert_eq!(
            parse_slash("config", &[("key", "log_channel")]),
            Parsed::Command(Command::ConfigGet {
                key: ConfigKey::LogChannel
            })
        );
    }

    #[test]
    fn bad_input_gets_a_helpful_answer() {
        let Parsed::Invalid(text) = parse_text("!", "!frobnicate") else {
            panic!("unknown command must be invalid")
        };
        assert!(text.contains("!help"), "{text}");
        let Parsed::Invalid(text) = parse_text("!", "!config set") else {
            panic!("missing arguments must be invalid")
        };
        assert!(text.contains("Usage"), "{text}");
        let Parsed::Invalid(text) = parse_text("!", "!config get colour") else {
            panic!("unknown key must be invalid")
        };
        assert!(text.contains("`prefix`"), "{text}");
        assert!(matches!(parse_slash("config", &[]), Parsed::Invalid(_)));
        assert!(matches!(parse_slash("nope", &[]), Parsed::Invalid(_)));
    }

    #[test]
    fn values_are_validated_before_they_change_anything() {
        let mut config = GuildConfig::default();
        for bad in ["", "toolong", "a b", "`", "@"] {
            assert!(
                ConfigKey::Prefix.apply(&mut config, bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(ConfigKey::Locale.apply(&mut config, "xx-XX").is_err());
        assert!(ConfigKey::LogChannel.apply(&mut config, "general").is_err());
        assert_eq!(config, GuildConfig::default(), "failed sets change nothing");

        ConfigKey::Prefix.apply(&mut config, "?").unwrap();
        ConfigKey::Locale.apply(&mut config, "EN-gb").unwrap();
        ConfigKey::LogChannel.apply(&mut config, "<#123>").unwrap();
        assert_eq!(config.prefix, "?");
        assert_eq!(config.locale, "en-GB");
        assert_eq!(ConfigKey::LogChannel.show(&config), "<#123>");
        ConfigKey::LogChannel.apply(&mut config, "none").unwrap();
        assert_eq!(config.log_channel, None);

        assert_eq!(
            ConfigKey::AnnounceChannel.show(&config),
            "none",
            "off by default"
        );
        assert!(
            ConfigKey::AnnounceChannel
                .apply(&mut config, "<#0>")
                .is_err()
        );
        assert!(
            ConfigKey::AnnounceChannel
                .apply(&mut config, "news")
                .is_err()
        );
        assert_eq!(config.announce_channel, None);
        ConfigKey::AnnounceChannel
            .apply(&mut config, "<#456>")
            .unwrap();
        assert_eq!(config.announce_channel, Some(456));
        assert!(validate(&config).is_ok());
        let zero = GuildConfig {
            announce_channel: Some(0),
            ..GuildConfig::default()
        };
        assert!(validate(&zero).is_err(), "a channel id of 0 is refused");
        ConfigKey::AnnounceChannel
            .apply(&mut config, "none")
            .unwrap();
        assert_eq!(config.announce_channel, None);

        for bad in ["", "moderators", "<@&0>", "<#12>"] {
            assert!(
                ConfigKey::StaffRoles.apply(&mut config, bad).is_err(),
                "{bad:?}"
            );
        }
        ConfigKey::StaffRoles
            .apply(&mut config, "<@&12> 34,<@&12>")
            .unwrap();
        assert_eq!(config.staff_roles, [12, 34], "mentions or ids, each once");
        assert_eq!(ConfigKey::StaffRoles.show(&config), "<@&12> <@&34>");
        ConfigKey::StaffRoles.apply(&mut config, "none").unwrap();
        assert!(config.staff_roles.is_empty());
    }
}
