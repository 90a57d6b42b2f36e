//! `ticket <action> …` as text or slash command, bounded before anything happens.

use protonn_storage::TICKET_REASON_MAX_CHARS;
use twilight_model::application::command::{
    Command, CommandOption, CommandOptionChoice, CommandOptionChoiceValue, CommandOptionType,
};

use crate::feature::{Args, Invocation};
use crate::moderation::parse_user;
use crate::slash::{chat_command, option};

/// A thread name's length on Discord; the ticket's number comes first.
const NAME_MAX_CHARS: usize = 80;

const ACTIONS: &[(&str, &str)] = &[
    ("panel", "Post the button that opens tickets here"),
    ("close", "Close this ticket (argument: the reason)"),
    ("claim", "Take this ticket on"),
    ("add", "Add someone to this ticket (argument: the member)"),
    (
        "remove",
        "Remove someone from this ticket (argument: the member)",
    ),
    ("rename", "Rename this ticket's thread (argument: the name)"),
    ("reopen", "Reopen a closed ticket (argument: its number)"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Panel,
    Close { reason: String },
    Claim,
    Add { user: u64 },
    Remove { user: u64 },
    Rename { name: String },
    Reopen { number: u64 },
}

pub(super) fn parse(invocation: &Invocation) -> Result<Request, String> {
    let (action, argument) = match &invocation.args {
        Args::Text(words) => (
            words.first().map(String::as_str).unwrap_or(""),
            words
                .get(1..)
                .map(|rest| rest.join(" "))
                .unwrap_or_default(),
        ),
        Args::Slash(options) => {
            let get = |name: &str| {
                options
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            (
                get("action").unwrap_or(""),
                get("argument").unwrap_or("").to_owned(),
            )
        }
    };
    let argument = argument.trim();
    let usage = || {
        let actions: Vec<&str> = ACTIONS.iter().map(|(name, _)| *name).collect();
        format!(
            "Usage: `{}ticket <{}> [argument]`.",
            invocation.prefix,
            actions.join("|")
        )
    };
    let needed = |what: &str| format!("`ticket {action}` needs {what}.");
    match action {
        "panel" => Ok(Request::Panel),
        "claim" => Ok(Request::Claim),
        "close" => {
            let chars = argument.chars().count();
            if chars > TICKET_REASON_MAX_CHARS {
                return Err(format!(
                    "A reason has at most {TICKET_REASON_MAX_CHARS} characters; this one has {chars}."
                ));
            }
            Ok(Request::Close {
                reason: argument.to_owned(),
            })
        }
        "add" | "remove" => {
            if argument.is_empty() {
                return Err(needed("a member"));
            }
            let user = parse_user(argument)?;
            Ok(if action == "add" {
                Request::Add { user }
            } else {
                Request::Remove { user }
            })
        }
        "rename" => {
            let chars = argument.chars().count();
            if chars == 0 {
                return Err(needed("a name"));
            }
            if chars > NAME_MAX_CHARS {
                return Err(format!(
                    "A ticket's name has at most {NAME_MAX_CHARS} characters; this one has {chars}."
                ));
            }
            Ok(Request::Rename {
                name: argument.to_owned(),
            })
        }
        "reopen" => argument
            .trim_start_matches('#')
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .map(|number| Request::Reopen { number })
            .ok_or_else(|| needed("the ticket's number")),
        _ => Err(usage()),
    }
}

pub(super) fn slash_command() -> Command {
    let choices = ACTIONS
        .iter()
        .map(|(name, _)| CommandOptionChoice {
            name: (*name).to_owned(),
            name_localizations: None,
            value: CommandOptionChoiceValue::String((*name).to_owned()),
        })
        .collect();
    let action = CommandOption {
        choices: Some(choices),
        ..option(CommandOptionType::String, "action", "What to do", true)
    };
    let argument = CommandOption {
        max_length: Some(TICKET_REASON_MAX_CHARS as u16),
        ..option(
            CommandOptionType::String,
            "argument",
            "The reason, member, name or number the action takes",
            false,
        )
    };
    chat_command("ticket", "Support tickets", vec![action, argument])
}

#[cfg(test)]
mod tests {
    use super::*;
    use twilight_model::id::Id;

    fn invocation(args: Args) -> Invocation {
        Invocation {
            name: "ticket".into(),
            args,
            author: Id::new(1),
            author_roles: Vec::new(),
            author_permissions: None,
            bot_permissions: None,
            channel_id: Id::new(2),
            message_id: None,
            prefix: "!".into(),
        }
    }

    fn text(line: &str) -> Result<Request, String> {
        let words = line.split_whitespace().map(str::to_owned).collect();
        parse(&invocation(Args::Text(words)))
    }

    #[test]
    fn text_and_slash_give_the_same_request() {
        assert_eq!(
            text("close it is solved"),
            Ok(Request::Close {
                reason: "it is solved".into()
            })
        );
        let slash = parse(&invocation(Args::Slash(vec![
            ("action".into(), "add".into()),
            ("argument".into(), "42".into()),
        ])));
        assert_eq!(slash, Ok(Request::Add { user: 42 }));
        assert_eq!(text("add <@!42>"), Ok(Request::Add { user: 42 }));
        assert_eq!(text("reopen #7"), Ok(Request::Reopen { number: 7 }));
        assert_eq!(text("panel"), Ok(Request::Panel));
    }

    #[test]
    fn bad_input_is_refused_with_what_it_needs() {
        assert!(text("").unwrap_err().starts_with("Usage"));
        assert!(text("dance").unwrap_err().starts_with("Usage"));
        assert!(text("add").unwrap_err().contains("a member"));
        assert!(text("add someone").is_err());
        assert!(text("reopen zero").is_err());
        assert!(text("reopen 0").is_err());
        assert!(text("rename").is_err());
        assert!(text(&format!("rename {}", "x".repeat(81))).is_err());
        assert!(text(&format!("close {}", "x".repeat(513))).is_err());
    }
}
