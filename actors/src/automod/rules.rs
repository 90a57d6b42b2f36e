//! Checking a guild's rules once, when its config changes, and compiling them into what a
//! message is matched against: limits first (a rule over them is refused with the reason),
//! then the patterns, with the `regex` crate's linear-time engine under a size cap. The
//! keywords and regular expressions of all the guild's rules are one `RegexSet`, so a message
//! is scanned for them once, whatever the number of rules.
//!
//! Compiling costs what the word boundaries cost: `\W` is a class of some 700 Unicode ranges,
//! and each copy of it is compiled forwards and backwards. A rule's keywords are therefore one
//! alternation per kind of boundary (at most four patterns a rule, not one per keyword), and
//! the keyword that matched is read from a capture group only when the rule fires.

use std::collections::VecDeque;
use std::sync::LazyLock;
use std::time::Duration;

use protonn_storage::{AutomodAction, AutomodConfig, AutomodRule, Plan, Trigger};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use tokio::time::Instant;
use twilight_model::id::Id;
use twilight_model::id::marker::RoleMarker;

use crate::moderation::show_duration;

/// Rules a guild may have: the most any plan allows (premium's).
pub(crate) const RULES_MAX: usize = Plan::Premium.limits().automod_rules as usize;
const NAME_MAX_CHARS: usize = 32;
/// Keywords of one rule, and their length: Discord's own caps for its AutoMod.
const KEYWORDS_MAX: usize = 1_000;
const KEYWORD_MAX_CHARS: usize = 60;
/// Keywords of all rules of a guild.
const GUILD_KEYWORDS_MAX: usize = 2_000;
/// Regular expressions of one rule and of a guild, and their length (Discord's: 10, 260).
const PATTERNS_MAX: usize = 10;
const GUILD_PATTERNS_MAX: usize = 20;
const PATTERN_MAX_CHARS: usize = 260;
/// Compiled size of one pattern: enough for any sensible one, and it keeps a guild's
/// patterns within a few megabytes whatever they are.
const PATTERN_SIZE_LIMIT: usize = 128 * 1024;
/// Domains of one rule's allow or deny list, and their length.
const DOMAINS_MAX: usize = 200;
const DOMAIN_MAX_CHARS: usize = 253;
/// Exempt roles and channels of one rule.
const EXEMPTIONS_MAX: usize = 50;
/// The longest spam window, and the most messages it counts: what a member's recent
/// messages are kept for, bounded.
pub(crate) const WINDOW_MAX: Duration = Duration::from_secs(300);
pub(crate) const COUNT_MAX: u32 = 50;
/// Discord's longest timeout.
const TIMEOUT_MAX_SECS: u64 = 28 * 86_400;
const ACCOUNT_AGE_MAX_DAYS: u32 = 365;

/// A guild's rules, ready to match messages.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub(crate) rules: Vec<Rule>,
    /// How long a member's recent messages matter, and how many at most: zero when no rule
    /// counts messages.
    pub(crate) window: Duration,
    pub(crate) keep: usize,
    /// Every keyword (as a case-insensitive pattern) and regular expression of the rules, in
    /// rule order; each rule's are a range of it.
    content: RegexSet,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    /// Its trigger's kind, one of [`TRIGGER_KINDS`].
    pub(crate) kind: &'static str,
    check: Check,
    pub(crate) actions: Vec<AutomodAction>,
    pub(crate) shadow: bool,
    /// Enforced by Discord's AutoMod (`native.rs`): the bot does not check it on messages.
    pub(crate) native: bool,
    exempt_roles: Vec<u64>,
    exempt_channels: Vec<u64>,
}

/// A rule's keywords that share their boundaries: one alternation.
#[derive(Debug)]
struct KeywordGroup {
    /// Each with its place in the rule's list.
    words: Vec<(usize, String)>,
    /// The same alternation with a capture group per keyword: which one matched, for the
    /// reason (run only when the group matched).
    which: Regex,
}

impl KeywordGroup {
    /// The keyword of the group that matched `text` first (leftmost), if any.
    fn matched(&self, text: &str) -> Option<&(usize, String)> {
        let captures = self.which.captures(text)?;
        (1..captures.len())
            .find(|i| captures.get(*i).is_some())
            .map(|i| &self.words[i - 1])
    }
}

#[derive(Debug)]
enum Check {
    MessageSpam {
        messages: usize,
        within: Duration,
    },
    DuplicateText {
        repeats: usize,
        within: Duration,
    },
    MentionSpam {
        mentions: u32,
    },
    InviteLinks,
    Links {
        allow: Vec<String>,
        deny: Vec<String>,
    },
    /// `groups[i]` is pattern `first + i` of [`Rules::content`].
    Keywords {
        first: usize,
        groups: Vec<KeywordGroup>,
    },
    Regex {
        first: usize,
        patterns: Vec<String>,
    },
    Caps {
        percent: u8,
        min_letters: u32,
    },
    EmojiFlood {
        emojis: u32,
    },
    Zalgo {
        marks: u32,
    },
    NewAccount {
        min_age: Duration,
    },
}

/// The kinds of trigger, as the `trigger` label of the automod metrics.
pub(crate) const TRIGGER_KINDS: [&str; 11] = [
    "message_spam",
    "duplicate_text",
    "mention_spam",
    "invite_links",
    "links",
    "keywords",
    "regex",
    "caps",
    "emoji_flood",
    "zalgo",
    "new_account",
];

fn kind(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::MessageSpam { .. } => "message_spam",
        Trigger::DuplicateText { .. } => "duplicate_text",
        Trigger::MentionSpam { .. } => "mention_spam",
        Trigger::InviteLinks => "invite_links",
        Trigger::Links { .. } => "links",
        Trigger::Keywords { .. } => "keywords",
        Trigger::Regex { .. } => "regex",
        Trigger::Caps { .. } => "caps",
        Trigger::EmojiFlood { .. } => "emoji_flood",
        Trigger::Zalgo { .. } => "zalgo",
        Trigger::NewAccount { .. } => "new_account",
    }
}

/// One message, as the rules see it.
pub(crate) struct Said<'a> {
    pub(crate) channel: u64,
    pub(crate) roles: &'a [Id<RoleMarker>],
    pub(crate) content: &'a str,
    /// Users and roles mentioned (@everyone counts as one).
    pub(crate) mentions: u32,
    pub(crate) account_age: Duration,
}

/// A member's recent messages: when, and a hash of the normalised text; oldest first.
pub(crate) type Recent = VecDeque<(Instant, u64)>;

/// A rule that matched, and why (shown in the mod-log, the cases and the dashboard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) rule: usize,
    pub(crate) why: String,
}

static INVITE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:discord(?:app)?\.com/invite|discord\.gg|discord\.me)/[a-z0-9-]+")
        .expect("a valid pattern")
});
static LINK_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bhttps?://(?:[^\s/@<>]*@)?([a-z0-9.-]+)").expect("a valid pattern")
});
static CUSTOM_EMOJI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<a?:\w{2,32}:\d{1,20}>").expect("a valid pattern"));

impl Rules {
    /// Checks every limit and compiles the patterns; the error says what to change.
    pub(crate) fn compile(config: &AutomodConfig) -> Result<Self, String> {
        if config.rules.len() > RULES_MAX {
            return Err(format!(
                "A server has at most {RULES_MAX} automod rules ({} given).",
                config.rules.len()
            ));
        }
        let (mut keywords, mut patterns) = (0, 0);
        let mut compiled = Rules::default();
        let mut content: Vec<String> = Vec::new();
        for (index, rule) in config.rules.iter().enumerate() {
            let name = rule.name.trim();
            if name.is_empty() || name.chars().count() > NAME_MAX_CHARS {
                return Err(format!(
                    "Rule {}: a name has 1 to {NAME_MAX_CHARS} characters.",
                    index + 1
                ));
            }
            if config.rules[..index]
                .iter()
                .any(|other| other.name.trim().eq_ignore_ascii_case(name))
            {
                return Err(format!("Two rules are called `{name}`: names are unique."));
            }
            let at = |problem: String| format!("Rule `{name}`: {problem}");
            match &rule.trigger {
                Trigger::Keywords { words } => keywords += words.len(),
                Trigger::Regex { patterns: list } => patterns += list.len(),
                _ => {}
            }
            if keywords > GUILD_KEYWORDS_MAX {
                return Err(at(format!(
                    "a server's rules have at most {GUILD_KEYWORDS_MAX} keywords in all."
                )));
            }
            if patterns > GUILD_PATTERNS_MAX {
                return Err(at(format!(
                    "a server's rules have at most {GUILD_PATTERNS_MAX} regular expressions in all."
                )));
            }
            let check = compile_trigger(&rule.trigger, &mut content).map_err(at)?;
            check_actions(&rule.actions).map_err(at)?;
            check_exemptions(rule).map_err(at)?;
            match check {
                Check::MessageSpam { messages, within }
                | Check::DuplicateText {
                    repeats: messages,
                    within,
                } => {
                    compiled.window = compiled.window.max(within);
                    compiled.keep = compiled.keep.max(messages);
                }
                _ => {}
            }
            compiled.rules.push(Rule {
                name: name.to_owned(),
                kind: kind(&rule.trigger),
                check,
                actions: rule.actions.clone(),
                shadow: rule.shadow,
                native: rule.native,
                exempt_roles: rule.exempt_roles.clone(),
                exempt_channels: rule.exempt_channels.clone(),
            });
        }
        compiled.content = pattern_set(
            content,
            PATTERN_SIZE_LIMIT.saturating_mul((keywords + patterns).max(1)),
        )
        .map_err(|_| {
            "the server's keywords and patterns are too large together once compiled; use fewer."
                .to_owned()
        })?;
        Ok(compiled)
    }

    /// Whether a rule needs a member's recent messages.
    pub(crate) fn counts_messages(&self) -> bool {
        self.keep > 0
    }

    /// The rules `said` breaks, in rule order, among the first `running` (those the plan
    /// runs); `recent` holds the member's messages in the longest window, this one included.
    pub(crate) fn check(
        &self,
        said: &Said<'_>,
        recent: &Recent,
        now: Instant,
        running: usize,
    ) -> Vec<Hit> {
        let mut hits = Vec::new();
        // The content patterns are matched at the first rule that needs them, once.
        let mut content = None;
        let mut first_match = |first: usize, count: usize| {
            let matched = content.get_or_insert_with(|| self.content.matches(said.content));
            (0..count).find(|i| matched.matched(first + i))
        };
        let rules = &self.rules[..running.min(self.rules.len())];
        for (index, rule) in rules.iter().enumerate() {
            if rule.exempt_channels.contains(&said.channel)
                || said
                    .roles
                    .iter()
                    .any(|role| rule.exempt_roles.contains(&role.get()))
            {
                continue;
            }
            let why = match &rule.check {
                // Of the groups that matched, the keyword first in the rule's list.
                Check::Keywords { first, groups } => first_match(*first, groups.len())
                    .and_then(|_| {
                        groups
                            .iter()
                            .filter_map(|group| group.matched(said.content))
                            .min_by_key(|(place, _)| *place)
                    })
                    .map(|(_, word)| format!("the keyword `{word}`")),
                Check::Regex { first, patterns } => first_match(*first, patterns.len())
                    .map(|i| format!("the pattern `{}`", patterns[i])),
                other => other.matches(said, recent, now),
            };
            if let Some(why) = why {
                hits.push(Hit { rule: index, why });
            }
        }
        hits
    }
}

impl Check {
    /// Why `said` matches, or `None`.
    fn matches(&self, said: &Said<'_>, recent: &Recent, now: Instant) -> Option<String> {
        let text = said.content;
        match self {
            Check::MessageSpam { messages, within } => {
                let sent = in_window(recent, now, *within).count();
                (sent >= *messages)
                    .then(|| format!("{sent} messages within {}", show_duration(*within)))
            }
            Check::DuplicateText { repeats, within } => {
                let this = recent.back()?.1;
                let same = in_window(recent, now, *within)
                    .filter(|(_, hash)| *hash == this)
                    .count();
                (same >= *repeats).then(|| {
                    format!(
                        "the same text {same} times within {}",
                        show_duration(*within)
                    )
                })
            }
            Check::MentionSpam { mentions } => (said.mentions >= *mentions)
                .then(|| format!("{} mentions (the limit is {mentions})", said.mentions)),
            Check::InviteLinks => INVITE
                .find(text)
                .map(|invite| format!("an invite link ({})", invite.as_str())),
            Check::Links { allow, deny } => LINK_HOST.captures_iter(text).find_map(|link| {
                let host = link[1].trim_end_matches('.').to_ascii_lowercase();
                if deny.iter().any(|domain| covers(domain, &host)) {
                    Some(format!("a link to {host}, a denied domain"))
                } else if !allow.is_empty() && !allow.iter().any(|domain| covers(domain, &host)) {
                    Some(format!("a link to {host}, not an allowed domain"))
                } else {
                    None
                }
            }),
            // Matched with every rule's at once (`Rules::check`).
            Check::Keywords { .. } | Check::Regex { .. } => None,
            Check::Caps {
                percent,
                min_letters,
            } => {
                let (letters, capitals) = text
                    .chars()
                    .filter(|c| c.is_alphabetic())
                    .fold((0u32, 0u32), |(letters, capitals), c| {
                        (letters + 1, capitals + u32::from(c.is_uppercase()))
                    });
                (letters >= *min_letters
                    && u64::from(capitals) * 100 >= u64::from(*percent) * u64::from(letters))
                .then(|| format!("{capitals} of {letters} letters are capitals"))
            }
            Check::EmojiFlood { emojis } => {
                let count = CUSTOM_EMOJI.find_iter(text).count() as u32
                    + text.chars().filter(|&c| is_emoji(c)).count() as u32;
                (count >= *emojis).then(|| format!("{count} emojis (the limit is {emojis})"))
            }
            Check::Zalgo { marks } => {
                let count = text.chars().filter(|&c| is_combining_mark(c)).count() as u32;
                (count >= *marks).then(|| format!("{count} combining marks (zalgo text)"))
            }
            Check::NewAccount { min_age } => (said.account_age < *min_age).then(|| {
                format!(
                    "an account {} old (younger than {})",
                    show_duration(Duration::from_secs(said.account_age.as_secs() / 60 * 60)),
                    show_duration(*min_age)
                )
            }),
        }
    }
}

fn in_window(
    recent: &Recent,
    now: Instant,
    within: Duration,
) -> impl Iterator<Item = &(Instant, u64)> {
    recent
        .iter()
        .filter(move |(at, _)| now.saturating_duration_since(*at) < within)
}

/// Whether `domain` is `host` or one of its parents.
fn covers(domain: &str, host: &str) -> bool {
    host.strip_suffix(domain)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

/// Pictographs, symbols and flags; custom emojis are counted apart.
fn is_emoji(c: char) -> bool {
    matches!(c as u32, 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF)
}

/// Combining diacritical marks, which zalgo text stacks on letters.
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

const RULE_TOO_LARGE: &str = "the rule's patterns are too large together once compiled; use fewer.";

/// Compiles a trigger; its keywords or patterns are added to the guild's `content`.
fn compile_trigger(trigger: &Trigger, content: &mut Vec<String>) -> Result<Check, String> {
    let count = |n: u32, what: &str| {
        if (2..=COUNT_MAX).contains(&n) {
            Ok(n as usize)
        } else {
            Err(format!("give 2 to {COUNT_MAX} {what}."))
        }
    };
    let window = |secs: u32| {
        let within = Duration::from_secs(u64::from(secs));
        if secs == 0 || within > WINDOW_MAX {
            Err(format!(
                "a window is 1 second to {}.",
                show_duration(WINDOW_MAX)
            ))
        } else {
            Ok(within)
        }
    };
    Ok(match trigger {
        Trigger::MessageSpam {
            messages,
            within_secs,
        } => Check::MessageSpam {
            messages: count(*messages, "messages")?,
            within: window(*within_secs)?,
        },
        Trigger::DuplicateText {
            repeats,
            within_secs,
        } => Check::DuplicateText {
            repeats: count(*repeats, "repeats")?,
            within: window(*within_secs)?,
        },
        Trigger::MentionSpam { mentions } => Check::MentionSpam {
            mentions: count(*mentions, "mentions")? as u32,
        },
        Trigger::InviteLinks => Check::InviteLinks,
        Trigger::Links { allow, deny } => {
            if allow.is_empty() && deny.is_empty() {
                return Err("a link rule needs an allow list or a deny list.".to_owned());
            }
            Check::Links {
                allow: domains(allow)?,
                deny: domains(deny)?,
            }
        }
        Trigger::Keywords { words } => {
            if words.is_empty() || words.len() > KEYWORDS_MAX {
                return Err(format!("give 1 to {KEYWORDS_MAX} keywords."));
            }
            let mut compiled: Vec<String> = Vec::with_capacity(words.len());
            for word in words {
                let word = word.trim();
                let chars = word.chars().count();
                if word.trim_matches('*').trim().is_empty() || chars > KEYWORD_MAX_CHARS {
                    return Err(format!(
                        "a keyword has 1 to {KEYWORD_MAX_CHARS} characters besides `*` (`{word}`)."
                    ));
                }
                compiled.push(word.to_owned());
            }
            let first = content.len();
            let mut groups = Vec::new();
            for (before, after) in [(true, true), (true, false), (false, true), (false, false)] {
                let words: Vec<(usize, String)> = compiled
                    .iter()
                    .enumerate()
                    .filter(|(_, word)| {
                        (!word.starts_with('*'), !word.ends_with('*')) == (before, after)
                    })
                    .map(|(place, word)| (place, word.clone()))
                    .collect();
                if words.is_empty() {
                    continue;
                }
                let bodies = words.iter().map(|(_, word)| keyword_body(word));
                let (before, after) = (
                    if before { r"(?:^|\W)" } else { "" },
                    if after { r"(?:\W|$)" } else { "" },
                );
                let any = bodies.clone().collect::<Vec<_>>().join("|");
                let each = bodies.map(|body| format!("({body})")).collect::<Vec<_>>();
                // The same size as its part of the guild's set: a rule too large is refused as
                // that rule.
                let which =
                    RegexBuilder::new(&format!("(?i:{before}(?:{}){after})", each.join("|")))
                        .size_limit(PATTERN_SIZE_LIMIT.saturating_mul(words.len()))
                        .build()
                        .map_err(|_| RULE_TOO_LARGE.to_owned())?;
                content.push(format!("(?i:{before}(?:{any}){after})"));
                groups.push(KeywordGroup { words, which });
            }
            Check::Keywords { first, groups }
        }
        Trigger::Regex { patterns } => {
            if patterns.is_empty() || patterns.len() > PATTERNS_MAX {
                return Err(format!("give 1 to {PATTERNS_MAX} regular expressions."));
            }
            for pattern in patterns {
                if pattern.is_empty() || pattern.chars().count() > PATTERN_MAX_CHARS {
                    return Err(format!(
                        "a regular expression has 1 to {PATTERN_MAX_CHARS} characters."
                    ));
                }
                RegexBuilder::new(pattern)
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .build()
                    .map_err(|err| match err {
                        regex::Error::CompiledTooBig(_) => format!(
                            "the regular expression `{pattern}` is too large once compiled; \
                             make it simpler."
                        ),
                        other => format!("`{pattern}` is not a valid regular expression: {other}"),
                    })?;
            }
            let first = content.len();
            content.extend(patterns.iter().cloned());
            Check::Regex {
                first,
                patterns: patterns.clone(),
            }
        }
        Trigger::Caps {
            percent,
            min_letters,
        } => {
            if !(50..=100).contains(percent) || !(1..=2_000).contains(min_letters) {
                return Err(
                    "a caps rule has a share of 50 to 100 percent, for messages of 1 to 2000 \
                     letters."
                        .to_owned(),
                );
            }
            Check::Caps {
                percent: *percent,
                min_letters: *min_letters,
            }
        }
        Trigger::EmojiFlood { emojis } => Check::EmojiFlood {
            emojis: count(*emojis, "emojis")? as u32,
        },
        Trigger::Zalgo { marks } => {
            if !(1..=1_000).contains(marks) {
                return Err("give 1 to 1000 combining marks.".to_owned());
            }
            Check::Zalgo { marks: *marks }
        }
        Trigger::NewAccount { min_age_days } => {
            if !(1..=ACCOUNT_AGE_MAX_DAYS).contains(min_age_days) {
                return Err(format!(
                    "an account age is 1 to {ACCOUNT_AGE_MAX_DAYS} days."
                ));
            }
            Check::NewAccount {
                min_age: Duration::from_secs(u64::from(*min_age_days) * 86_400),
            }
        }
    })
}

/// A keyword as a pattern, without its boundaries: any run of spaces between the words of a
/// phrase, any characters within a word for an inner `*`. Whole words unless `*` says
/// otherwise: the caller adds `(?:^|\W)` before a keyword that does not start with `*`, and
/// `(?:\W|$)` after one that does not end with it.
fn keyword_body(word: &str) -> String {
    word.trim_matches('*')
        .split('*')
        .map(|part| {
            part.split_whitespace()
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(r"\s+")
        })
        .collect::<Vec<_>>()
        .join(r"\S*")
}

fn pattern_set(patterns: Vec<String>, limit: usize) -> Result<RegexSet, regex::Error> {
    RegexSetBuilder::new(&patterns)
        .size_limit(limit)
        .dfa_size_limit(limit)
        .build()
}

fn domains(list: &[String]) -> Result<Vec<String>, String> {
    if list.len() > DOMAINS_MAX {
        return Err(format!("a domain list has at most {DOMAINS_MAX} domains."));
    }
    list.iter()
        .map(|domain| {
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !domain.is_empty()
                && domain.len() <= DOMAIN_MAX_CHARS
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !domain.starts_with('.');
            if valid {
                Ok(domain)
            } else {
                Err(format!("`{domain}` is not a domain such as example.com."))
            }
        })
        .collect()
}

fn check_actions(actions: &[AutomodAction]) -> Result<(), String> {
    if actions.is_empty() {
        return Err(
            "give at least one action (delete, warn, timeout, kick, ban or log).".to_owned(),
        );
    }
    let punishments = actions
        .iter()
        .filter(|action| !matches!(action, AutomodAction::Delete | AutomodAction::Log))
        .count();
    if punishments > 1 {
        return Err("give at most one of warn, timeout, kick and ban.".to_owned());
    }
    for (index, action) in actions.iter().enumerate() {
        if actions[..index].contains(action) {
            return Err("each action is given once.".to_owned());
        }
        if let AutomodAction::Timeout { secs } = action
            && !(1..=TIMEOUT_MAX_SECS).contains(secs)
        {
            return Err("a timeout lasts 1 second to 28 days.".to_owned());
        }
    }
    Ok(())
}

fn check_exemptions(rule: &AutomodRule) -> Result<(), String> {
    if rule.exempt_roles.len() > EXEMPTIONS_MAX || rule.exempt_channels.len() > EXEMPTIONS_MAX {
        return Err(format!(
            "a rule exempts at most {EXEMPTIONS_MAX} roles and {EXEMPTIONS_MAX} channels."
        ));
    }
    if rule.exempt_roles.contains(&0) || rule.exempt_channels.contains(&0) {
        return Err("an exemption is a role or channel id.".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
