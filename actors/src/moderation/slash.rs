//! The moderation slash commands, with Discord's own limits on their options and default
//! member permissions (Discord hides them from members without; the bot checks again).

use twilight_model::application::command::{Command, CommandOption, CommandOptionType};
use twilight_model::guild::Permissions;

use super::parse::PURGE_MAX;
use crate::slash::{chat_command, option};

fn user(description: &str) -> CommandOption {
    option(CommandOptionType::User, "user", description, true)
}

fn reason() -> CommandOption {
    CommandOption {
        max_length: Some(512),
        ..option(
            CommandOptionType::String,
            "reason",
            "Why (up to 512 characters)",
            false,
        )
    }
}

fn channel() -> CommandOption {
    option(
        CommandOptionType::Channel,
        "channel",
        "The channel (this one if left out)",
        false,
    )
}

fn duration(description: &str, required: bool) -> CommandOption {
    option(CommandOptionType::String, "duration", description, required)
}

fn number() -> CommandOption {
    CommandOption {
        min_value: Some(twilight_model::application::command::CommandOptionValue::Integer(1)),
        ..option(
            CommandOptionType::Integer,
            "number",
            "The case number",
            true,
        )
    }
}

fn moderator(mut command: Command, permissions: Permissions) -> Command {
    command.default_member_permissions = Some(permissions);
    command
}

pub(super) fn commands() -> Vec<Command> {
    use Permissions as P;
    vec![
        moderator(
            chat_command("warn", "Warn a member", vec![user("The member"), reason()]),
            P::MODERATE_MEMBERS,
        ),
        moderator(
            chat_command(
                "timeout",
                "Time a member out (up to 28 days)",
                vec![
                    user("The member"),
                    duration("How long: 10m, 1h, 7d…", true),
                    reason(),
                ],
            ),
            P::MODERATE_MEMBERS,
        ),
        moderator(
            chat_command("kick", "Kick a member", vec![user("The member"), reason()]),
            P::KICK_MEMBERS,
        ),
        moderator(
            chat_command(
                "ban",
                "Ban a user, for good or for a while",
                vec![
                    user("The user"),
                    duration("For a temporary ban: how long (up to 365d)", false),
                    option(
                        CommandOptionType::String,
                        "delete_messages",
                        "Delete their messages of the last … (up to 7d)",
                        false,
                    ),
                    reason(),
                ],
            ),
            P::BAN_MEMBERS,
        ),
        moderator(
            chat_command("unban", "Lift a ban", vec![user("The user"), reason()]),
            P::BAN_MEMBERS,
        ),
        moderator(
            chat_command(
                "purge",
                "Delete recent messages (younger than 14 days)",
                vec![
                    CommandOption {
                        min_value: Some(
                            twilight_model::application::command::CommandOptionValue::Integer(1),
                        ),
                        max_value: Some(
                            twilight_model::application::command::CommandOptionValue::Integer(
                                i64::from(PURGE_MAX),
                            ),
                        ),
                        ..option(
                            CommandOptionType::Integer,
                            "count",
                            "How many (1-100)",
                            true,
                        )
                    },
                    option(CommandOptionType::User, "user", "Only this user's", false),
                ],
            ),
            P::MANAGE_MESSAGES,
        ),
        moderator(
            chat_command(
                "slowmode",
                "Set a channel's slowmode",
                vec![
                    option(
                        CommandOptionType::String,
                        "interval",
                        "Between a member's messages: 10s, 1m… up to 6h, or off",
                        true,
                    ),
                    channel(),
                    reason(),
                ],
            ),
            P::MANAGE_CHANNELS,
        ),
        moderator(
            chat_command(
                "lock",
                "Stop members from posting in a channel",
                vec![channel(), reason()],
            ),
            P::MANAGE_ROLES,
        ),
        moderator(
            chat_command(
                "unlock",
                "Let members post in a channel again",
                vec![channel(), reason()],
            ),
            P::MANAGE_ROLES,
        ),
        moderator(
            chat_command("case", "Show a moderation case", vec![number()]),
            P::MODERATE_MEMBERS,
        ),
        moderator(
            chat_command(
                "reason",
                "Change a case's reason",
                vec![
                    number(),
                    CommandOption {
                        required: Some(true),
                        ..reason()
                    },
                ],
            ),
            P::MODERATE_MEMBERS,
        ),
        moderator(
            chat_command(
                "history",
                "A member's moderation history",
                vec![user("The member")],
            ),
            P::MODERATE_MEMBERS,
        ),
    ]
}
