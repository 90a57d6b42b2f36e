//! Automod's rules, part of a guild's [`GuildConfig`](crate::GuildConfig): what each rule
//! looks for in a message, what it does then, whom it spares, and whether it only reports
//! (shadow mode). The actors check and compile them; the store keeps them as written.

use serde::{Deserialize, Serialize};

/// A guild's automod settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutomodConfig {
    /// Checked in order on every member message; each rule that matches acts.
    pub rules: Vec<AutomodRule>,
}

/// One rule: a trigger, its actions, and whom it spares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomodRule {
    /// Unique in the guild; names the rule in cases, the mod-log and the dashboard.
    pub name: String,
    pub trigger: Trigger,
    pub actions: Vec<AutomodAction>,
    /// Report what the rule would have done, do nothing.
    #[serde(default)]
    pub shadow: bool,
    /// Members with one of these roles are not checked by the rule.
    #[serde(default)]
    pub exempt_roles: Vec<u64>,
    /// Messages in these channels are not checked by the rule.
    #[serde(default)]
    pub exempt_channels: Vec<u64>,
}

/// What a rule looks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A member sends `messages` messages within `within_secs`.
    MessageSpam { messages: u32, within_secs: u32 },
    /// A member sends the same text `repeats` times within `within_secs`.
    DuplicateText { repeats: u32, within_secs: u32 },
    /// A message mentions at least `mentions` users and roles.
    MentionSpam { mentions: u32 },
    /// A Discord server invite.
    InviteLinks,
    /// A link to a domain in `deny`, or, when `allow` is not empty, to one not in it
    /// (a domain covers its subdomains).
    Links {
        #[serde(default)]
        allow: Vec<String>,
        #[serde(default)]
        deny: Vec<String>,
    },
    /// One of these words or phrases, any case; `*` stands for any characters within a word
    /// (`scam*` also matches "scammer").
    Keywords { words: Vec<String> },
    /// One of these regular expressions (matched in linear time).
    Regex { patterns: Vec<String> },
    /// At least `percent` of the letters are capitals, in messages of `min_letters` or more.
    Caps { percent: u8, min_letters: u32 },
    /// At least `emojis` emojis in one message.
    EmojiFlood { emojis: u32 },
    /// At least `marks` combining marks in one message (zalgo text).
    Zalgo { marks: u32 },
    /// The author's account is younger than `min_age_days`.
    NewAccount { min_age_days: u32 },
}

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AutomodAction {
    /// Deletes the message.
    Delete,
    /// A warning case (which may climb the escalation ladder).
    Warn,
    Timeout {
        secs: u64,
    },
    Kick,
    Ban,
    /// A line in the mod-log channel.
    Log,
}
