//! Moderation commands from text words or slash options to a [`Request`], with every
//! limit Discord or the product sets checked here, before anything is done.

use std::time::Duration;

use protonn_storage::{CASE_REASON_MAX_CHARS, EscalationStep};

use crate::feature::{Args, Invocation};

/// Discord's longest timeout.
pub(crate) const TIMEOUT_MAX: Duration = Duration::from_secs(28 * 86_400);
/// Longest temporary ban; longer is a permanent ban.
pub(crate) const TEMP_BAN_MAX: Duration = Duration::from_secs(365 * 86_400);
/// Discord's longest message-deletion window of a ban.
pub(crate) const BAN_DELETE_MAX: Duration = Duration::from_secs(7 * 86_400);
/// Discord's longest slowmode.
pub(crate) const SLOWMODE_MAX: Duration = Duration::from_secs(6 * 3_600);
/// Messages one purge deletes at most (Discord's bulk-delete limit).
pub(crate) const PURGE_MAX: u8 = 100;
/// Cases one history answer lists.
pub(crate) const HISTORY_LEN: usize = 10;
/// Rungs of an escalation ladder at most.
const ESCALATION_MAX_STEPS: usize = 10;

/// What a moderation command asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Warn {
        user: u64,
        reason: String,
    },
    Timeout {
        user: u64,
        duration: Duration,
        reason: String,
    },
    Kick {
        user: u64,
        reason: String,
    },
    /// A temporary ban with `duration`, permanent without.
    Ban {
        user: u64,
        duration: Option<Duration>,
        delete_messages: Duration,
        reason: String,
    },
    Unban {
        user: u64,
        reason: String,
    },
    Purge {
        count: u8,
        user: Option<u64>,
    },
    Slowmode {
        channel: Option<u64>,
        interval: Duration,
        reason: String,
    },
    Lock {
        channel: Option<u64>,
        reason: String,
    },
    Unlock {
        channel: Option<u64>,
        reason: String,
    },
    Case {
        number: u64,
    },
    Reason {
        number: u64,
        reason: String,
    },
    History {
        user: u64,
    },
}

/// The usage line of each command, with the guild's prefix.
pub(crate) fn usage(prefix: &str, name: &str) -> String {
    let args = match name {
        "warn" => "<user> [reason]",
        "timeout" => "<user> <duration, up to 28d> [reason]",
        "kick" => "<user> [reason]",
        "ban" => "<user> [duration for a temporary ban] [delete=<up to 7d>] [reason]",
        "unban" => "<user id> [reason]",
        "purge" => "<1-100> [user]",
        "slowmode" => "<interval up to 6h, or off> [reason]",
        "lock" | "unlock" => "[reason]",
        "case" => "<number>",
        "reason" => "<case number> <new reason>",
        "history" => "<user>",
        _ => "",
    };
    format!("`{prefix}{name} {args}`")
}

/// The invocation as a request, or the text telling the user what to fix.
pub(crate) fn parse(invocation: &Invocation) -> Result<Request, String> {
    let name = invocation.name.as_str();
    let parsed = match &invocation.args {
        Args::Text(words) => parse_text(name, words),
        Args::Slash(options) => parse_slash(name, options),
    };
    parsed.map_err(|problem| match &invocation.args {
        Args::Text(_) => format!(
            "{problem} Usage: {}.",
            usage(&invocation.prefix, &invocation.name)
        ),
        Args::Slash(_) => problem,
    })
}

fn parse_text(name: &str, words: &[String]) -> Result<Request, String> {
    let rest = |from: usize| reason(&words.get(from..).unwrap_or_default().join(" "));
    let user_at = |index: usize| -> Result<u64, String> {
        let word = words
            .get(index)
            .ok_or_else(|| "Name a member (a mention or a user id).".to_owned())?;
        user(word)
    };
    Ok(match name {
        "warn" => Request::Warn {
            user: user_at(0)?,
            reason: rest(1)?,
        },
        "timeout" => {
            let user = user_at(0)?;
            let word = words
                .get(1)
                .ok_or_else(|| "Give the timeout's length, such as 10m or 1h.".to_owned())?;
            Request::Timeout {
                user,
                duration: timeout_length(word)?,
                reason: rest(2)?,
            }
        }
        "kick" => Request::Kick {
            user: user_at(0)?,
            reason: rest(1)?,
        },
        "ban" => {
            let user = user_at(0)?;
            let mut next = 1;
            let mut duration = None;
            let mut delete_messages = Duration::ZERO;
            while let Some(word) = words.get(next) {
                if let Some(window) = word.strip_prefix("delete=") {
                    delete_messages = delete_window(window)?;
                } else if duration.is_none()
                    && let Ok(length) = parse_duration(word)
                {
                    duration = Some(temp_ban_length(length)?);
                } else {
                    break;
                }
                next += 1;
            }
            Request::Ban {
                user,
                duration,
                delete_messages,
                reason: rest(next)?,
            }
        }
        "unban" => Request::Unban {
            user: user_at(0)?,
            reason: rest(1)?,
        },
        "purge" => Request::Purge {
            count: purge_count(words.first().map(String::as_str))?,
            user: words.get(1).map(|word| user(word)).transpose()?,
        },
        "slowmode" => Request::Slowmode {
            channel: None,
            interval: slowmode(words.first().map(String::as_str))?,
            reason: rest(1)?,
        },
        "lock" => Request::Lock {
            channel: None,
            reason: rest(0)?,
        },
        "unlock" => Request::Unlock {
            channel: None,
            reason: rest(0)?,
        },
        "case" => Request::Case {
            number: case_number(words.first().map(String::as_str))?,
        },
        "reason" => {
            let number = case_number(words.first().map(String::as_str))?;
            let reason = rest(1)?;
            if reason.is_empty() {
                return Err("Give the new reason.".to_owned());
            }
            Request::Reason { number, reason }
        }
        "history" => Request::History { user: user_at(0)? },
        _ => return Err(format!("Unknown moderation command `{name}`.")),
    })
}

fn parse_slash(name: &str, options: &[(String, String)]) -> Result<Request, String> {
    let option = |wanted: &str| {
        options
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };
    let member = || option("user").map_or_else(|| Err("Name a member.".to_owned()), user);
    let reason_option = || reason(option("reason").unwrap_or_default());
    let channel = || option("channel").map(user).transpose();
    Ok(match name {
        "warn" => Request::Warn {
            user: member()?,
            reason: reason_option()?,
        },
        "timeout" => Request::Timeout {
            user: member()?,
            duration: timeout_length(
                option("duration").ok_or("Give the timeout's length, such as 10m or 1h.")?,
            )?,
            reason: reason_option()?,
        },
        "kick" => Request::Kick {
            user: member()?,
            reason: reason_option()?,
        },
        "ban" => Request::Ban {
            user: member()?,
            duration: option("duration")
                .map(|word| parse_duration(word).and_then(temp_ban_length))
                .transpose()?,
            delete_messages: option("delete_messages")
                .map(delete_window)
                .transpose()?
                .unwrap_or_default(),
            reason: reason_option()?,
        },
        "unban" => Request::Unban {
            user: member()?,
            reason: reason_option()?,
        },
        "purge" => Request::Purge {
            count: purge_count(option("count"))?,
            user: option("user").map(user).transpose()?,
        },
        "slowmode" => Request::Slowmode {
            channel: channel()?,
            interval: slowmode(option("interval"))?,
            reason: reason_option()?,
        },
        "lock" => Request::Lock {
            channel: channel()?,
            reason: reason_option()?,
        },
        "unlock" => Request::Unlock {
            channel: channel()?,
            reason: reason_option()?,
        },
        "case" => Request::Case {
            number: case_number(option("number"))?,
        },
        "reason" => Request::Reason {
            number: case_number(option("number"))?,
            reason: match reason_option()? {
                reason if reason.is_empty() => return Err("Give the new reason.".to_owned()),
                reason => reason,
            },
        },
        "history" => Request::History { user: member()? },
        _ => return Err(format!("Unknown moderation command `/{name}`.")),
    })
}

/// A user mention (`<@123>`, `<@!123>`) or id.
pub(crate) fn user(word: &str) -> Result<u64, String> {
    let id = word
        .strip_prefix("<@")
        .and_then(|rest| rest.strip_suffix('>'))
        .map(|rest| rest.trim_start_matches('!'))
        .or_else(|| {
            word.strip_prefix("<#")
                .and_then(|rest| rest.strip_suffix('>'))
        })
        .unwrap_or(word);
    id.parse::<u64>()
        .ok()
        .filter(|&id| id != 0)
        .ok_or_else(|| format!("`{word}` is not a member: give a mention or a user id."))
}

fn reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars > CASE_REASON_MAX_CHARS {
        return Err(format!(
            "A reason has at most {CASE_REASON_MAX_CHARS} characters; this one has {chars}."
        ));
    }
    Ok(text.to_owned())
}

/// `30s`, `10m`, `1h30m`, `7d`, `2w`: one or more numbers, each with its unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("`{text}` is not a duration: use forms such as 30s, 10m, 1h30m, 7d or 2w.");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn timeout_length(text: &str) -> Result<Duration, String> {
    let length = parse_duration(text)?;
    if length > TIMEOUT_MAX {
        return Err("A timeout lasts at most 28 days (Discord's limit).".to_owned());
    }
    Ok(length)
}

fn temp_ban_length(length: Duration) -> Result<Duration, String> {
    if length > TEMP_BAN_MAX {
        return Err(
            "A temporary ban lasts at most 365 days; leave the duration out for a permanent ban."
                .to_owned(),
        );
    }
    Ok(length)
}

fn delete_window(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let window = parse_duration(text)?;
    if window > BAN_DELETE_MAX {
        return Err("A ban deletes at most the last 7 days of messages.".to_owned());
    }
    Ok(window)
}

fn slowmode(text: Option<&str>) -> Result<Duration, String> {
    let text = text.ok_or("Give the interval between a member's messages, or `off`.")?;
    if text.eq_ignore_ascii_case("off") || text == "0" {
        return Ok(Duration::ZERO);
    }
    let interval = parse_duration(text)?;
    if interval > SLOWMODE_MAX {
        return Err("Slowmode is at most 6 hours (Discord's limit).".to_owned());
    }
    Ok(interval)
}

fn purge_count(text: Option<&str>) -> Result<u8, String> {
    text.and_then(|text| text.parse::<u8>().ok())
        .filter(|count| (1..=PURGE_MAX).contains(count))
        .ok_or_else(|| format!("Give how many messages to delete, 1 to {PURGE_MAX}."))
}

fn case_number(text: Option<&str>) -> Result<u64, String> {
    text.map(|text| text.trim_start_matches('#'))
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| "Give a case number, such as 12.".to_owned())
}

/// The ladder as `config set escalation` takes it: `3/7d timeout 1h, 4/7d kick, 5/30d ban`
/// (warnings / window, action, optional length), or `none`.
pub(crate) fn parse_escalation(value: &str) -> Result<Vec<EscalationStep>, String> {
    let help = "Give steps such as `3/7d timeout 1h, 4/7d kick, 5/30d ban` \
                (warnings/days, then timeout <length>, kick, ban or ban <length>), or `none`.";
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut steps: Vec<EscalationStep> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (Some(count), Some(action)) = (words.first(), words.get(1)) else {
            return Err(help.to_owned());
        };
        let (warns, days) = count.split_once('/').ok_or_else(|| help.to_owned())?;
        let warns: u32 = warns
            .parse()
            .ok()
            .filter(|&n| (1..=100).contains(&n))
            .ok_or_else(|| help.to_owned())?;
        let days: u32 = days
            .strip_suffix('d')
            .and_then(|d| d.parse().ok())
            .filter(|&d| (1..=365).contains(&d))
            .ok_or_else(|| help.to_owned())?;
        let length = words.get(2).map(|w| parse_duration(w)).transpose()?;
        let duration_secs = match (action.to_ascii_lowercase().as_str(), length) {
            ("timeout", Some(length)) if length <= TIMEOUT_MAX => Some(length.as_secs()),
            ("timeout", _) => {
                return Err("An escalation timeout needs a length of at most 28 days.".to_owned());
            }
            ("kick", None) => None,
            ("ban", None) => None,
            ("ban", Some(length)) if length <= TEMP_BAN_MAX => Some(length.as_secs()),
            _ => return Err(help.to_owned()),
        };
        if words.len() > 3 || steps.iter().any(|step| step.warns == warns) {
            return Err(format!("{help} Each number of warnings appears once."));
        }
        steps.push(EscalationStep {
            warns,
            within_days: days,
            action: action.to_ascii_lowercase(),
            duration_secs,
        });
    }
    if steps.is_empty() || steps.len() > ESCALATION_MAX_STEPS {
        return Err(format!(
            "Give 1 to {ESCALATION_MAX_STEPS} steps, or `none`."
        ));
    }
    steps.sort_by_key(|step| step.warns);
    Ok(steps)
}

/// The ladder in the form [`parse_escalation`] takes.
pub(crate) fn show_escalation(steps: &[EscalationStep]) -> String {
    if steps.is_empty() {
        return "none".to_owned();
    }
    steps
        .iter()
        .map(|step| {
            let length = step
                .duration_secs
                .map(|secs| format!(" {}", show_duration(Duration::from_secs(secs))))
                .unwrap_or_default();
            format!(
                "{}/{}d {}{length}",
                step.warns, step.within_days, step.action
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration in the largest units that fit: `1h30m`, `7d`.
pub fn show_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, name) in [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
        if secs >= unit {
            out.push_str(&format!("{}{name}", secs / unit));
            secs %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use twilight_model::id::Id;

    use super::*;

    fn text(name: &str, line: &str) -> Result<Request, String> {
        parse(&Invocation {
            name: name.to_owned(),
            args: Args::Text(line.split_whitespace().map(str::to_owned).collect()),
            author: Id::new(1),
            author_roles: Vec::new(),
            author_permissions: None,
            bot_permissions: None,
            channel_id: Id::new(2),
            message_id: None,
            prefix: "!".to_owned(),
        })
    }

    fn slash(name: &str, options: &[(&str, &str)]) -> Result<Request, String> {
        parse(&Invocation {
            name: name.to_owned(),
            args: Args::Slash(
                options
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            author: Id::new(1),
            author_roles: Vec::new(),
            author_permissions: None,
            bot_permissions: None,
            channel_id: Id::new(2),
            message_id: None,
            prefix: "!".to_owned(),
        })
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "0s", "10", "h", "5y", "1h-2m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(show_duration(Duration::from_secs(5_400)), "1h30m");
    }

    #[test]
    fn text_and_slash_forms_give_the_same_request() {
        let expected = Request::Ban {
            user: 42,
            duration: Some(Duration::from_secs(7 * 86_400)),
            delete_messages: Duration::from_secs(86_400),
            reason: "spam links".to_owned(),
        };
        assert_eq!(
            text("ban", "<@!42> 7d delete=1d spam links"),
            Ok(expected.clone())
        );
        assert_eq!(
            slash(
                "ban",
                &[
                    ("user", "42"),
                    ("duration", "7d"),
                    ("delete_messages", "1d"),
                    ("reason", "spam links")
                ]
            ),
            Ok(expected)
        );
        assert_eq!(
            text("ban", "42 being rude"),
            Ok(Request::Ban {
                user: 42,
                duration: None,
                delete_messages: Duration::ZERO,
                reason: "being rude".to_owned()
            })
        );
        assert_eq!(
            text("purge", "20 <@7>"),
            Ok(Request::Purge {
                count: 20,
                user: Some(7)
            })
        );
        assert_eq!(
            text("slowmode", "off"),
            Ok(Request::Slowmode {
                channel: None,
                interval: Duration::ZERO,
                reason: String::new()
            })
        );
    }

    #[test]
    fn out_of_range_input_is_refused_with_the_limit() {
        let refused = |result: Result<Request, String>, says: &str| {
            let text = result.expect_err("must be refused");
            assert!(text.contains(says), "{text:?} should say {says:?}");
        };
        refused(text("timeout", "<@42> 29d"), "28 days");
        refused(text("timeout", "<@42>"), "length");
        refused(text("ban", "<@42> delete=8d"), "7 days");
        refused(text("ban", "<@42> 400d"), "365 days");
        refused(text("purge", "101"), "1 to 100");
        refused(text("purge", "0"), "1 to 100");
        refused(text("slowmode", "7h"), "6 hours");
        refused(text("warn", "someone"), "not a member");
        refused(text("warn", ""), "Usage: `!warn");
        refused(text("case", "x"), "case number");
        refused(text("reason", "3"), "new reason");
        let long = "x".repeat(513);
        refused(text("kick", &format!("<@42> {long}")), "at most 512");
        refused(
            slash("warn", &[("user", "42"), ("reason", &long)]),
            "at most 512",
        );
        assert!(slash("warn", &[("user", "42"), ("reason", &"x".repeat(512))]).is_ok());
    }

    #[test]
    fn an_escalation_ladder_round_trips_and_bad_ones_are_refused() {
        let steps = parse_escalation("4/7d kick, 3/7d timeout 1h, 5/30d ban").unwrap();
        assert_eq!(steps.iter().map(|s| s.warns).collect::<Vec<_>>(), [3, 4, 5]);
        let shown = show_escalation(&steps);
        assert_eq!(shown, "3/7d timeout 1h, 4/7d kick, 5/30d ban");
        assert_eq!(parse_escalation(&shown).unwrap(), steps);
        assert_eq!(parse_escalation("none").unwrap(), Vec::new());
        for bad in [
            "",
            "3/7d",
            "3/7d timeout",
            "3/7d timeout 30d",
            "3/7 kick",
            "0/7d kick",
            "3/7d kick, 3/7d ban",
            "3/7d explode",
        ] {
            assert!(parse_escalation(bad).is_err(), "{bad:?}");
        }
    }
}
