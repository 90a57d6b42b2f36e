//! Automod's rules, part of a guild's [`GuildConfig`](crate::GuildConfig): what each rule
//! looks for in a message, what it does then, whom it spares, and whether it only reports
//! (shadow mode). The actors check and compile them; the store keeps them as written, and
//! keeps what rules in shadow mode would have done ([`AutomodHit`]) for a few weeks.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Plan, StorageError, Timestamp};

/// A guild's automod settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutomodConfig {
    /// Checked in order on every member message; each rule that matches acts.
    pub rules: Vec<AutomodRule>,
}

impl AutomodConfig {
    /// The rules past what `plan` allows (the last ones): kept after a downgrade, but not
    /// run until the guild has the plan again or removes others.
    pub fn over_plan(&self, plan: Plan) -> &[AutomodRule] {
        let allowed = plan.limits().automod_rules as usize;
        &self.rules[allowed.min(self.rules.len())..]
    }

    /// The settings `plan` runs: the first rules, as many as it allows.
    pub fn within_plan(&self, plan: Plan) -> AutomodConfig {
        let over = self.over_plan(plan).len();
        AutomodConfig {
            rules: self.rules[..self.rules.len() - over].to_vec(),
        }
    }
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
    /// Pushed to Discord's own AutoMod, which blocks a matching message before anyone sees
    /// it; the bot then takes the rule's other actions. Only keyword and mention-spam rules
    /// within Discord's caps fit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub native: bool,
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

/// How long a shadow-mode hit is kept: a few weeks of tuning before a rule is enforced.
pub const AUTOMOD_HIT_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
/// The longest explanation a hit keeps, in characters.
pub const AUTOMOD_HIT_WHY_MAX_CHARS: usize = 300;

/// What a rule in shadow mode would have done to a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomodHit {
    pub guild_id: u64,
    /// The message (a snowflake: hits are listed by it, newest first).
    pub message_id: u64,
    /// The rule's name.
    pub rule: String,
    /// The author of the message.
    pub user_id: u64,
    pub channel_id: u64,
    /// Why the rule matched, at most [`AUTOMOD_HIT_WHY_MAX_CHARS`] characters.
    pub why: String,
    /// What it would have done (`delete, timeout 10m`).
    pub actions: String,
    pub at: Timestamp,
}

/// Shadow-mode hits of every guild, each kept [`AUTOMOD_HIT_RETENTION`] from its `at`.
#[async_trait]
pub trait AutomodRepo: Send + Sync + 'static {
    /// Stores a hit (again: replaced); one already past retention is not stored.
    async fn put_automod_hit(&self, hit: &AutomodHit) -> Result<(), StorageError>;

    /// The guild's hits of messages older than `before` (all if `None`), newest first, at
    /// most `limit`.
    async fn automod_hits(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AutomodHit>, StorageError>;
}

/// Refuses a hit the store must not keep.
pub(crate) fn check_hit(hit: &AutomodHit) -> Result<(), StorageError> {
    if hit.rule.is_empty() || hit.rule.chars().count() > 32 {
        return Err(StorageError::Invalid(
            "a rule name has 1 to 32 characters".into(),
        ));
    }
    if hit.why.chars().count() > AUTOMOD_HIT_WHY_MAX_CHARS || hit.actions.len() > 200 {
        return Err(StorageError::Invalid(format!(
            "a hit's explanation has at most {AUTOMOD_HIT_WHY_MAX_CHARS} characters"
        )));
    }
    Ok(())
}

/// When a hit leaves the store.
pub(crate) fn hit_expiry(hit: &AutomodHit) -> Timestamp {
    hit.at.saturating_add(AUTOMOD_HIT_RETENTION)
}

/// The index entry of a hit.
pub(crate) fn hit_ref(hit: &AutomodHit) -> crate::row_ref::RowRef {
    crate::row_ref::RowRef::AutomodHit {
        guild: hit.guild_id,
        message: hit.message_id,
        rule: hit.rule.clone(),
    }
}
