//! Rules pushed to Discord's own AutoMod (`native: true`): Discord blocks a matching message
//! before anyone sees it, and tells the bot (AUTO_MODERATION_ACTION_EXECUTION), which then
//! takes the rule's other actions as if it had matched the message itself (`act.rs`).
//!
//! - Only what Discord can run fits: keyword rules whose `*` are at a word's ends, and
//!   mention-spam rules, within Discord's caps, with `delete` (Discord's block) among their
//!   actions and not in shadow mode; a config asking for more is refused with the reason.
//! - After every config change that touches them, one task reconciles Discord's rules with
//!   the config: the bot's own rules there (made by the bot, named as the config's) are
//!   listed, then made, changed or deleted. Discord keeps each rule's id; the list is where
//!   the bot reads it, so a restart, a handoff or a failed push leaves nothing to remember:
//!   the next change puts Discord right. A change of plan alone reconciles too: rules past
//!   the plan leave Discord, and come back with premium.
//! - The bot checks its own Manage Server permission (from its roles, as moderation checks
//!   its own) before it reads or changes Discord's rules; without it nothing is sent, and the
//!   log and the dashboard (`status`) say what is missing. A push skipped so is tried again
//!   when the bot's permissions may have changed (a role of the guild changed, the bot's
//!   member did, or the guild: its owner), with nobody saving anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use protonn_storage::{AutomodAction, AutomodConfig, AutomodRule, Plan, Trigger};
use serde_json::json;
use twilight_http::request::Request;
use twilight_http::routing::Route;
use twilight_model::gateway::payload::incoming::AutoModerationActionExecution;
use twilight_model::guild::Permissions;
use twilight_model::guild::auto_moderation::{
    AutoModerationActionType, AutoModerationRule, AutoModerationTriggerMetadata,
    AutoModerationTriggerType,
};

use crate::feature::Effect;
use crate::guild::Io;
use crate::{NativeRuleStatus, NativeSync, moderation};

/// Discord's caps: rules of each trigger type a guild may have.
const KEYWORD_RULES_MAX: usize = 6;
const MENTION_RULES_MAX: usize = 1;
/// Keywords of a rule and their length.
const KEYWORDS_MAX: usize = 1_000;
const KEYWORD_MAX_CHARS: usize = 60;
/// Discord fires when a message mentions more than its limit (at most 50); ours fire at
/// `mentions` or more, so the limit is one less.
const MENTION_LIMIT_MAX: u32 = 50;
const EXEMPT_ROLES_MAX: usize = 20;
const EXEMPT_CHANNELS_MAX: usize = 50;

/// A rule as Discord runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NativeRule {
    pub(crate) name: String,
    pub(crate) trigger: NativeTrigger,
    exempt_roles: Vec<u64>,
    exempt_channels: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NativeTrigger {
    Keywords(Vec<String>),
    /// Discord's `mention_total_limit`.
    MentionSpam(u8),
}

/// The rule as Discord would run it, or why it does not fit.
pub(crate) fn fit(rule: &AutomodRule) -> Result<NativeRule, String> {
    if rule.shadow {
        return Err("shadow mode runs in the bot; a native rule is enforced by Discord.".into());
    }
    if !rule.actions.contains(&AutomodAction::Delete) {
        return Err("a native rule blocks the message: give it the `delete` action.".into());
    }
    if rule.exempt_roles.len() > EXEMPT_ROLES_MAX
        || rule.exempt_channels.len() > EXEMPT_CHANNELS_MAX
    {
        return Err(format!(
            "Discord exempts at most {EXEMPT_ROLES_MAX} roles and {EXEMPT_CHANNELS_MAX} channels."
        ));
    }
    let trigger = match &rule.trigger {
        Trigger::Keywords { words } => {
            if words.len() > KEYWORDS_MAX {
                return Err(format!("Discord takes at most {KEYWORDS_MAX} keywords."));
            }
            let mut keywords = Vec::with_capacity(words.len());
            for word in words {
                let word = word.trim();
                if word.trim_matches('*').contains('*') {
                    return Err(format!(
                        "Discord takes `*` only at a keyword's start or end (`{word}`)."
                    ));
                }
                if word.chars().count() > KEYWORD_MAX_CHARS {
                    return Err(format!(
                        "Discord takes keywords of at most {KEYWORD_MAX_CHARS} characters."
                    ));
                }
                keywords.push(word.to_owned());
            }
            NativeTrigger::Keywords(keywords)
        }
        Trigger::MentionSpam { mentions } => {
            let limit = mentions.saturating_sub(1);
            if !(1..=MENTION_LIMIT_MAX).contains(&limit) {
                return Err(format!(
                    "Discord counts 2 to {} mentions.",
                    MENTION_LIMIT_MAX + 1
                ));
            }
            NativeTrigger::MentionSpam(limit as u8)
        }
        _ => {
            return Err("only keyword and mention-spam rules run in Discord's AutoMod.".into());
        }
    };
    Ok(NativeRule {
        name: rule.name.trim().to_owned(),
        trigger,
        exempt_roles: rule.exempt_roles.clone(),
        exempt_channels: rule.exempt_channels.clone(),
    })
}

/// Checks the config's native rules: each fits, and Discord's per-guild counts hold.
pub(crate) fn check(config: &AutomodConfig) -> Result<(), String> {
    let (mut keywords, mut mentions) = (0, 0);
    for rule in config.rules.iter().filter(|rule| rule.native) {
        match fit(rule)
            .map_err(|why| format!("Rule `{}` cannot be native: {why}", rule.name.trim()))?
            .trigger
        {
            NativeTrigger::Keywords(_) => keywords += 1,
            NativeTrigger::MentionSpam(_) => mentions += 1,
        }
    }
    if keywords > KEYWORD_RULES_MAX {
        return Err(format!(
            "Discord runs at most {KEYWORD_RULES_MAX} keyword rules a server ({keywords} native)."
        ));
    }
    if mentions > MENTION_RULES_MAX {
        return Err("Discord runs one mention-spam rule a server.".into());
    }
    Ok(())
}

/// The native rules `plan` runs, as Discord should have them (rules past the plan are off
/// on Discord too).
pub(crate) fn wanted(config: &AutomodConfig, plan: Plan) -> Vec<NativeRule> {
    config
        .within_plan(plan)
        .rules
        .iter()
        .filter(|rule| rule.native)
        .filter_map(|rule| fit(rule).ok())
        .collect()
}

/// The name of the config's rule behind an execution: the native rule of its trigger type
/// (for keywords, the one with the keyword that matched).
pub(crate) fn rule_of<'a>(
    config: &'a AutomodConfig,
    plan: Plan,
    execution: &AutoModerationActionExecution,
) -> Option<&'a AutomodRule> {
    let allowed = config.rules.len() - config.over_plan(plan).len();
    config.rules[..allowed]
        .iter()
        .filter(|rule| rule.native)
        .find(|rule| match (&rule.trigger, execution.rule_trigger_type) {
            (Trigger::Keywords { words }, AutoModerationTriggerType::Keyword) => {
                execution.matched_keyword.as_deref().is_some_and(|matched| {
                    words
                        .iter()
                        .any(|word| word.trim().eq_ignore_ascii_case(matched))
                })
            }
            (Trigger::MentionSpam { .. }, AutoModerationTriggerType::MentionSpam) => true,
            _ => false,
        })
}

impl NativeRule {
    fn metadata(&self) -> serde_json::Value {
        match &self.trigger {
            NativeTrigger::Keywords(words) => json!({"keyword_filter": words}),
            NativeTrigger::MentionSpam(limit) => json!({"mention_total_limit": limit}),
        }
    }

    fn trigger_type(&self) -> u8 {
        match self.trigger {
            NativeTrigger::Keywords(_) => 1,
            NativeTrigger::MentionSpam(_) => 5,
        }
    }

    /// The body of a create (a change sends the same, less the trigger type).
    fn body(&self, create: bool) -> serde_json::Value {
        let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>();
        let mut body = json!({
            "name": self.name,
            "event_type": 1,
            "trigger_metadata": self.metadata(),
            "actions": [{"type": 1}],
            "enabled": true,
            "exempt_roles": ids(&self.exempt_roles),
            "exempt_channels": ids(&self.exempt_channels),
        });
        if create {
            body["trigger_type"] = json!(self.trigger_type());
        }
        body
    }

    /// Whether Discord's rule already is this one.
    fn same_as(&self, rule: &AutoModerationRule) -> bool {
        let metadata: Option<AutoModerationTriggerMetadata> =
            serde_json::from_value(self.metadata()).ok();
        let sorted = |mut ids: Vec<u64>| {
            ids.sort_unstable();
            ids
        };
        u8::from(rule.trigger_type) == self.trigger_type()
            && rule.enabled
            && rule.actions.len() == 1
            && rule.actions[0].kind == AutoModerationActionType::BlockMessage
            && metadata.is_some_and(|m| {
                m.keyword_filter == rule.trigger_metadata.keyword_filter
                    && m.mention_total_limit == rule.trigger_metadata.mention_total_limit
            })
            && sorted(rule.exempt_roles.iter().map(|id| id.get()).collect())
                == sorted(self.exempt_roles.clone())
            && sorted(rule.exempt_channels.iter().map(|id| id.get()).collect())
                == sorted(self.exempt_channels.clone())
    }
}

/// What Discord asks of the bot to read or change a guild's AutoMod rules.
const MANAGE: Permissions = Permissions::MANAGE_GUILD;

/// Why the bot's rules on Discord could not be read.
struct Unread {
    why: String,
    /// The bot lacks the permission: a push is worth trying again once it may have it.
    permission: bool,
}

impl From<String> for Unread {
    fn from(why: String) -> Self {
        Self {
            why,
            permission: false,
        }
    }
}

/// The bot's own rules on Discord (made by it), or why they cannot be read. The bot checks
/// its permission first, as moderation does: without it Discord would answer 50013.
async fn ours_on_discord(io: &Io) -> Result<Vec<AutoModerationRule>, Unread> {
    // Roles not known yet (a moment after a start): Discord is asked and decides.
    if let Ok(granted) = moderation::bot_permissions(io).await
        && !granted.contains(MANAGE)
    {
        return Err(Unread {
            why: format!(
                "the bot needs the {} permission to manage Discord's AutoMod rules",
                moderation::permission_names(MANAGE - granted)
            ),
            permission: true,
        });
    }
    let bot = io
        .bot_id()
        .await
        .ok_or_else(|| "the bot is still connecting".to_owned())?;
    let listed: Vec<AutoModerationRule> = io
        .send(
            "automod_rules",
            io.http().auto_moderation_rules(io.guild_id()),
        )
        .await
        .and_then(|reply| reply.model())
        .map_err(|err| format!("Discord's AutoMod rules could not be read ({err})"))?;
    Ok(listed.into_iter().filter(|r| r.creator_id == bot).collect())
}

/// Makes the bot's rules on Discord what `wanted` says: made, changed or deleted. Failures
/// are logged; the next change of the rules or of the plan tries again, and when the bot
/// lacked the permission, `blocked` says so until a push gets past it (the feature pushes
/// again when the bot's permissions may have changed).
pub(crate) async fn reconcile(
    io: Io,
    wanted: Vec<NativeRule>,
    blocked: Arc<AtomicBool>,
) -> Vec<Effect> {
    let guild_id = io.guild_id();
    let ours = ours_on_discord(&io).await;
    blocked.store(
        ours.as_ref().is_err_and(|unread| unread.permission),
        Ordering::Release,
    );
    let ours = match ours {
        Ok(ours) => ours,
        Err(Unread { why, .. }) => {
            tracing::warn!(%guild_id, %why, "native AutoMod rules not pushed to Discord");
            return Vec::new();
        }
    };
    for rule in &wanted {
        let outcome = match ours.iter().find(|r| r.name == rule.name) {
            Some(theirs) if rule.same_as(theirs) => continue,
            Some(theirs) => {
                let route = Route::UpdateAutoModerationRule {
                    guild_id: guild_id.get(),
                    auto_moderation_rule_id: theirs.id.get(),
                };
                send_json(&io, "update_automod_rule", &route, &rule.body(false)).await
            }
            None => {
                let route = Route::CreateAutoModerationRule {
                    guild_id: guild_id.get(),
                };
                send_json(&io, "create_automod_rule", &route, &rule.body(true)).await
            }
        };
        if let Err(err) = outcome {
            tracing::warn!(%guild_id, rule = %rule.name, error = %err, "cannot push a native AutoMod rule");
        }
    }
    // Rules no longer wanted, and a second of one name (two reconciliations that overlapped
    // may both have made it).
    let kept = |theirs: &AutoModerationRule| {
        wanted.iter().any(|rule| rule.name == theirs.name)
            && ours.iter().find(|r| r.name == theirs.name).map(|r| r.id) == Some(theirs.id)
    };
    for stale in ours.iter().filter(|theirs| !kept(theirs)) {
        let request = io.http().delete_auto_moderation_rule(guild_id, stale.id);
        if let Err(err) = io.send("delete_automod_rule", request).await {
            tracing::warn!(%guild_id, rule = %stale.name, error = %err, "cannot delete a native AutoMod rule");
        }
    }
    Vec::new()
}

/// Whether Discord runs each of `wanted` as configured, or why not: read from Discord now.
pub(crate) async fn status(io: Io, wanted: Vec<NativeRule>) -> Vec<NativeRuleStatus> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let ours = ours_on_discord(&io).await;
    wanted
        .into_iter()
        .map(|rule| {
            let sync = match &ours {
                Err(unread) => NativeSync::NotOnDiscord {
                    why: unread.why.clone(),
                },
                Ok(ours) => match ours.iter().find(|theirs| theirs.name == rule.name) {
                    Some(theirs) if rule.same_as(theirs) => NativeSync::OnDiscord,
                    Some(_) => NativeSync::NotOnDiscord {
                        why: "Discord's rule of this name differs from it (the push failed: \
                              see the bot's log)"
                            .to_owned(),
                    },
                    None => NativeSync::NotOnDiscord {
                        why: "Discord has no rule of this name (the push failed: see the \
                              bot's log)"
                            .to_owned(),
                    },
                },
            };
            NativeRuleStatus {
                rule: rule.name,
                sync,
            }
        })
        .collect()
}

async fn send_json(
    io: &Io,
    route_label: &'static str,
    route: &Route<'_>,
    body: &serde_json::Value,
) -> Result<(), crate::rest::RestError> {
    let request = Request::builder(route)
        .json(body)
        .build()
        .map_err(|err| crate::rest::RestError::Transport(format!("invalid request: {err}")))?;
    io.send_request(route_label, request).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trigger: Trigger, actions: Vec<AutomodAction>) -> AutomodRule {
        AutomodRule {
            name: "native".into(),
            trigger,
            actions,
            shadow: false,
            exempt_roles: Vec::new(),
            exempt_channels: Vec::new(),
            native: true,
        }
    }

    fn keywords(words: &[&str]) -> Trigger {
        Trigger::Keywords {
            words: words.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    #[test]
    fn keyword_and_mention_rules_within_discords_caps_fit() {
        let fitted = fit(&rule(
            keywords(&["scam*", "*coin", "*bad*", "free nitro"]),
            vec![AutomodAction::Delete, AutomodAction::Warn],
        ))
        .unwrap();
        assert_eq!(
            fitted.trigger,
            NativeTrigger::Keywords(vec![
                "scam*".into(),
                "*coin".into(),
                "*bad*".into(),
                "free nitro".into()
            ])
        );
        let mentions = fit(&rule(
            Trigger::MentionSpam { mentions: 5 },
            vec![AutomodAction::Delete],
        ))
        .unwrap();
        assert_eq!(
            mentions.trigger,
            NativeTrigger::MentionSpam(4),
            "Discord fires past its limit, ours at it"
        );
    }

    #[test]
    fn a_rule_that_does_not_fit_is_refused_with_the_reason() {
        let delete = vec![AutomodAction::Delete];
        for (bad, why) in [
            (
                rule(keywords(&["sc*m"]), delete.clone()),
                "only at a keyword's start or end",
            ),
            (
                rule(keywords(&["scam"]), vec![AutomodAction::Warn]),
                "`delete`",
            ),
            (
                rule(Trigger::InviteLinks, delete.clone()),
                "only keyword and mention-spam",
            ),
            (
                rule(Trigger::MentionSpam { mentions: 52 }, delete.clone()),
                "2 to 51 mentions",
            ),
            (
                AutomodRule {
                    shadow: true,
                    ..rule(keywords(&["scam"]), delete.clone())
                },
                "shadow mode",
            ),
            (
                AutomodRule {
                    exempt_roles: (1..=21).collect(),
                    ..rule(keywords(&["scam"]), delete.clone())
                },
                "20 roles",
            ),
        ] {
            let refused = fit(&bad).unwrap_err();
            assert!(refused.contains(why), "{refused:?} says {why:?}");
        }
    }

    #[test]
    fn a_config_with_more_native_rules_than_discord_runs_is_refused() {
        let mut config = AutomodConfig::default();
        for n in 0..7 {
            config.rules.push(AutomodRule {
                name: format!("k{n}"),
                ..rule(keywords(&["scam"]), vec![AutomodAction::Delete])
            });
        }
        assert!(
            check(&config)
                .unwrap_err()
                .contains("at most 6 keyword rules")
        );
        config.rules.pop();
        assert_eq!(check(&config), Ok(()));
        config.rules[0].native = false;
        config.rules[0].trigger = keywords(&["sc*m"]);
        assert_eq!(
            check(&config),
            Ok(()),
            "a rule that is not native may be anything"
        );
    }
}
