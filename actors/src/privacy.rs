//! `/privacy` (and `!privacy`): a member's data rights from Discord, beside the dashboard's
//! privacy centre. It shows their choices, changes them (objection to analytics and
//! announcements, restriction of processing, consent to announcement DMs), and asks for an
//! export, which the store's process prepares and the privacy centre hands over once.
//!
//! Answers concern the member alone: a slash command's answer is shown only to them, a text
//! command's goes by direct message. Every change and request is logged as a privacy
//! request (`channel` "discord"), like the dashboard's. Deletion needs the privacy centre's
//! typed confirmation, and the answer says so.

use protonn_storage::{PrivacyFlags, PrivacyRequest, RequestKind, Timestamp, privacy};
use twilight_model::application::command::{
    Command as SlashCommand, CommandOption, CommandOptionChoice, CommandOptionChoiceValue,
    CommandOptionType,
};

use crate::feature::{Answer, Args, Ctx, Effect, Feature, Invocation};
use crate::guild::Io;
use crate::slash::{chat_command, string_option};

const COMMANDS: &[&str] = &["privacy"];

/// What a member can ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Show,
    Export,
    Delete,
    Set(Choice, bool),
}

/// A choice a member can change here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Objection,
    Restriction,
    AnnouncementDms,
}

impl Choice {
    const ALL: [(Choice, &'static str); 3] = [
        (Choice::Objection, "object"),
        (Choice::Restriction, "restrict"),
        (Choice::AnnouncementDms, "announcements"),
    ];

    fn apply(self, flags: &mut PrivacyFlags, on: bool) {
        match self {
            Choice::Objection => flags.objects = on,
            Choice::Restriction => flags.restricted = on,
            Choice::AnnouncementDms => flags.announcements_consent = on,
        }
    }
}

pub(crate) struct Privacy;

impl Feature for Privacy {
    fn name(&self) -> &'static str {
        "privacy"
    }

    fn commands(&self) -> &'static [&'static str] {
        COMMANDS
    }

    fn slash_commands(&self) -> Vec<SlashCommand> {
        let actions = ["show", "export", "delete"]
            .into_iter()
            .chain(Choice::ALL.iter().map(|(_, name)| *name))
            .map(|name| CommandOptionChoice {
                name: name.to_owned(),
                name_localizations: None,
                value: CommandOptionChoiceValue::String(name.to_owned()),
            })
            .collect();
        let on = CommandOption {
            kind: CommandOptionType::Boolean,
            choices: None,
            ..string_option(
                "on",
                "For object, restrict and announcements: on or off",
                false,
                None,
            )
        };
        vec![chat_command(
            "privacy",
            "Your privacy choices and data (only you see the answer)",
            vec![
                string_option(
                    "action",
                    "What to do (show if left out)",
                    false,
                    Some(actions),
                ),
                on,
            ],
        )]
    }

    fn answers_privately(&self) -> bool {
        true
    }

    fn on_command(&self, ctx: &mut Ctx<'_>, invocation: Invocation) -> Vec<Effect> {
        let request = match parse(&invocation.args) {
            Ok(request) => request,
            Err(problem) => return vec![Effect::Reply(Answer::new("invalid", problem))],
        };
        let io = ctx.io.clone();
        let by_text = invocation.message_id.is_some();
        vec![Effect::task(async move {
            let answer = run(&io, invocation.author.get(), request).await;
            if by_text && answer.outcome == "ok" {
                vec![
                    Effect::DirectMessage {
                        user_id: invocation.author,
                        content: answer.text,
                    },
                    Effect::Reply(Answer::ok(
                        "I sent you a direct message: your privacy choices are yours alone.",
                    )),
                ]
            } else {
                vec![Effect::Reply(answer)]
            }
        })]
    }
}

fn parse(args: &Args) -> Result<Request, String> {
    let (action, on) = match args {
        Args::Text(words) => match words.as_slice() {
            [] => ("show", None),
            [action] => (action.as_str(), None),
            [action, on] => (action.as_str(), Some(on.as_str())),
            _ => return Err(usage()),
        },
        Args::Slash(options) => {
            let option = |name: &str| {
                options
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            (option("action").unwrap_or("show"), option("on"))
        }
    };
    let action = action.to_ascii_lowercase();
    let simple = match action.as_str() {
        "show" => Some(Request::Show),
        "export" => Some(Request::Export),
        "delete" => Some(Request::Delete),
        _ => None,
    };
    if let Some(request) = simple {
        return match on {
            None => Ok(request),
            Some(_) => Err(format!("`{action}` takes no on/off. {}", usage())),
        };
    }
    let Some((choice, _)) = Choice::ALL.iter().find(|(_, name)| *name == action) else {
        return Err(usage());
    };
    let on = match on.map(str::to_ascii_lowercase).as_deref() {
        Some("on" | "true" | "yes") => true,
        Some("off" | "false" | "no") => false,
        _ => return Err(format!("Say `{action} on` or `{action} off`.")),
    };
    Ok(Request::Set(*choice, on))
}

fn usage() -> String {
    "Use `privacy` to see your choices, `privacy object on|off` (analytics and announcements), \
     `privacy restrict on|off` (processing), `privacy announcements on|off` (announcement DMs), \
     or `privacy export`."
        .to_owned()
}

async fn run(io: &Io, user_id: u64, request: Request) -> Answer {
    let store = io.store().as_ref();
    let now = Timestamp::now();
    let outcome = match request {
        Request::Show => store.privacy_flags(user_id).await.map(|flags| show(&flags)),
        Request::Set(choice, on) => {
            let set = async {
                let mut wanted = store.privacy_flags(user_id).await?;
                choice.apply(&mut wanted, on);
                let changes =
                    privacy::change_choices(store, user_id, wanted, "discord", now, request_id)
                        .await?;
                // Honoured on this node's event path from now on, not when its memory of
                // the old choice expires.
                io.privacy_choices().remember(user_id, wanted);
                Ok::<_, protonn_storage::StorageError>(changes)
            };
            set.await.map(|changes| match changes.as_slice() {
                [] => "Nothing to change: that is already your choice.".to_owned(),
                changes => format!("Saved: {}.", changes.join(", ")),
            })
        }
        Request::Export => {
            let request =
                PrivacyRequest::new(user_id, request_id(), RequestKind::Export, "discord", now);
            let export_for = io.retention().exports;
            let recorded = store.put_privacy_request(&request).await;
            if recorded.is_ok() {
                // Prepared now where this node's store allows it, else by the store's own
                // process within a minute.
                io.spawn(|io| async move {
                    let answered =
                        privacy::answer_request(io.store().as_ref(), &request, now, export_for);
                    if let Err(err) = answered.await {
                        tracing::debug!(error = %err, "export left to the store's own process");
                    }
                });
            }
            recorded.map(|()| {
                format!(
                    "Your data export is being prepared. Download it once from the dashboard's \
                     privacy centre (Privacy › Download) within {} hours.",
                    export_for.as_secs() / 3_600
                )
            })
        }
        Request::Delete => Ok("Deleting everything we hold about you needs a typed \
                              confirmation: log in to the dashboard and use the privacy \
                              centre (Privacy › Delete my data)."
            .to_owned()),
    };
    outcome.map(Answer::ok).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "privacy command failed");
        Answer::new(
            "error",
            "Your privacy choices cannot be reached right now; nothing was changed. Please \
             try again shortly.",
        )
    })
}

fn show(flags: &PrivacyFlags) -> String {
    let on_off = |on: bool| if on { "on" } else { "off" };
    format!(
        "Your privacy choices:\n\
         - Objection to analytics and announcements: {}\n\
         - Restriction of processing: {}\n\
         - Announcement DMs: {}\n\
         Change one with `privacy object|restrict|announcements on|off`; ask for your data \
         with `privacy export`.",
        on_off(flags.objects),
        on_off(flags.restricted),
        on_off(flags.announcements_consent),
    )
}

/// A privacy request's id: random, never 0 (the id no request has).
fn request_id() -> u64 {
    rand::random::<u64>().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(words: &[&str]) -> Args {
        Args::Text(words.iter().map(|w| (*w).to_owned()).collect())
    }

    #[test]
    fn text_and_slash_ask_the_same_things() {
        assert_eq!(parse(&text(&[])), Ok(Request::Show));
        assert_eq!(parse(&text(&["Export"])), Ok(Request::Export));
        assert_eq!(
            parse(&text(&["object", "on"])),
            Ok(Request::Set(Choice::Objection, true))
        );
        let slash = Args::Slash(vec![
            ("action".into(), "restrict".into()),
            ("on".into(), "false".into()),
        ]);
        assert_eq!(parse(&slash), Ok(Request::Set(Choice::Restriction, false)));
        assert_eq!(parse(&Args::Slash(Vec::new())), Ok(Request::Show));
    }

    #[test]
    fn bad_requests_say_what_is_expected() {
        assert!(parse(&text(&["object"])).unwrap_err().contains("object on"));
        assert!(
            parse(&text(&["export", "on"]))
                .unwrap_err()
                .contains("no on/off")
        );
        assert!(
            parse(&text(&["forget"]))
                .unwrap_err()
                .contains("privacy export")
        );
        assert!(parse(&text(&["object", "maybe"])).is_err());
        assert!(parse(&text(&["a", "b", "c"])).is_err());
    }
}
