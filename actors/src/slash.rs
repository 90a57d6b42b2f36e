//! The slash commands the bot registers with Discord at start.

use twilight_model::application::command::{
    Command, CommandOption, CommandOptionChoice, CommandOptionChoiceValue, CommandOptionType,
    CommandType,
};
use twilight_model::id::Id;

use crate::commands::ConfigKey;

/// `/ping`, `/help` and `/config key:<key> [value:<value>]`, as parsed by `commands.rs`, and
/// the features' commands.
pub fn slash_commands() -> Vec<Command> {
    let keys = ConfigKey::ALL
        .iter()
        .map(|key| CommandOptionChoice {
            name: key.name().to_owned(),
            name_localizations: None,
            value: CommandOptionChoiceValue::String(key.name().to_owned()),
        })
        .collect();
    let mut commands = vec![
        chat_command("ping", "Check that the bot answers", Vec::new()),
        chat_command("help", "What the bot can do", Vec::new()),
        chat_command(
            "config",
            "Show a setting of this server, or change it (needs Manage Server)",
            vec![
                string_option("key", "The setting", true, Some(keys)),
                string_option(
                    "value",
                    "A new value; leave out to show the current one",
                    false,
                    None,
                ),
            ],
        ),
    ];
    // Each feature's own, as its folder defines them.
    for feature in crate::features::all() {
        commands.extend(feature.slash_commands());
    }
    commands
}

#[allow(deprecated)] // `dm_permission` must still be spelled out in a struct literal
pub(crate) fn chat_command(name: &str, description: &str, options: Vec<CommandOption>) -> Command {
    Command {
        application_id: None,
        contexts: None,
        default_member_permissions: None,
        description: description.to_owned(),
        description_localizations: None,
        dm_permission: Some(false),
        guild_id: None,
        id: None,
        integration_types: None,
        kind: CommandType::ChatInput,
        name: name.to_owned(),
        name_localizations: None,
        nsfw: None,
        options,
        version: Id::new(1),
    }
}

pub(crate) fn string_option(
    name: &str,
    description: &str,
    required: bool,
    choices: Option<Vec<CommandOptionChoice>>,
) -> CommandOption {
    CommandOption {
        autocomplete: None,
        channel_types: None,
        choices,
        description: description.to_owned(),
        description_localizations: None,
        kind: CommandOptionType::String,
        max_length: None,
        max_value: None,
        min_length: None,
        min_value: None,
        name: name.to_owned(),
        name_localizations: None,
        options: None,
        file_types: None,
        required: Some(required),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{Parsed, parse_slash};

    #[test]
    fn every_registered_command_is_one_the_bot_parses() {
        for command in slash_commands() {
            assert!(command.name.len() <= 32 && command.description.len() <= 100);
            // A feature parses its own (and tests it in its folder).
            if crate::features::by_command(&command.name).is_some() {
                continue;
            }
            let options: Vec<(&str, &str)> = command
                .options
                .iter()
                .filter(|option| option.required == Some(true))
                .map(|option| (option.name.as_str(), "prefix"))
                .collect();
            let parsed = parse_slash(&command.name, &options);
            assert!(
                matches!(parsed, Parsed::Command(_)),
                "/{} parses as {parsed:?}",
                command.name
            );
        }
    }
}
