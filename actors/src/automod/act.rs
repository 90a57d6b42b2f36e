//! What automod does about a message that broke rules: shadow rules report, the first
//! enforcing rule acts. Deleting the message is automod's own; warnings, timeouts, kicks and
//! bans are moderation's actions taken by the bot (`moderation::by_the_bot`: a case each,
//! the escalation ladder after a warning).

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use protonn_storage::{
    AUTOMOD_HIT_WHY_MAX_CHARS, AutomodAction, AutomodHit, CASE_REASON_MAX_CHARS, Timestamp,
    VersionedConfig,
};
use tokio::time::Instant;
use twilight_model::channel::Message;
use twilight_model::id::Id;

use super::rules::Rule;
use super::{Hit, HitBudget, Rules};
use crate::feature::Effect;
use crate::guild::Io;
use crate::metrics::AUTOMOD_HITS;
use crate::moderation::{self, Request, show_duration};

/// The effects of `hits` (in rule order) on `message`; shadow-mode hits are stored while
/// `budget` lasts.
pub(super) fn respond(
    io: &Io,
    config: &Arc<VersionedConfig>,
    rules: &Rules,
    hits: &[Hit],
    message: &Message,
    budget: &mut HitBudget,
) -> Vec<Effect> {
    let author = message.author.id.get();
    let channel = message.channel_id;
    let log = config.config.log_channel.and_then(Id::new_checked);
    let mut effects = Vec::new();
    let mut enforced = false;
    for hit in hits {
        let rule = &rules.rules[hit.rule];
        if rule.shadow {
            counter!(AUTOMOD_HITS, "trigger" => rule.kind, "mode" => "shadow").increment(1);
            tracing::info!(guild_id = %io.guild_id(), rule = %rule.name, why = %hit.why, "automod shadow hit");
            if budget.take(Instant::now()) {
                let stored = AutomodHit {
                    guild_id: io.guild_id().get(),
                    message_id: message.id.get(),
                    rule: rule.name.clone(),
                    user_id: author,
                    channel_id: channel.get(),
                    why: hit.why.chars().take(AUTOMOD_HIT_WHY_MAX_CHARS).collect(),
                    actions: show_actions(&rule.actions),
                    at: Timestamp::now(),
                };
                let io = io.clone();
                effects.push(Effect::task(async move {
                    if let Err(err) = io.store().put_automod_hit(&stored).await {
                        tracing::warn!(guild_id = %io.guild_id(), error = %err, "automod shadow hit not stored");
                    }
                    Vec::new()
                }));
            }
            if let Some(log) = log {
                effects.push(Effect::Message {
                    channel_id: log,
                    content: format!(
                        "Automod (shadow mode): rule `{}` would have done {} to <@{author}> in \
                         <#{channel}>: {}.",
                        rule.name,
                        show_actions(&rule.actions),
                        hit.why
                    ),
                    embed: None,
                });
            }
            continue;
        }
        if enforced {
            continue;
        }
        enforced = true;
        counter!(AUTOMOD_HITS, "trigger" => rule.kind, "mode" => "enforced").increment(1);
        let enforcement = Enforcement::of(
            rule,
            &hit.why,
            author,
            Some(message.id.get()),
            channel.get(),
        );
        effects.push(Effect::task(enforce(
            io.clone(),
            Arc::clone(config),
            enforcement,
        )));
    }
    effects
}

/// The effects of a native rule that Discord enforced: Discord blocked the message (it has
/// no id), the bot takes the rule's other actions as if it had matched it.
pub(super) fn after_discord(
    io: &Io,
    config: &Arc<VersionedConfig>,
    rule: &Rule,
    why: &str,
    author: u64,
    channel: u64,
) -> Vec<Effect> {
    counter!(AUTOMOD_HITS, "trigger" => rule.kind, "mode" => "native").increment(1);
    let enforcement = Enforcement::of(rule, why, author, None, channel);
    vec![Effect::task(enforce(
        io.clone(),
        Arc::clone(config),
        enforcement,
    ))]
}

/// What an enforcing rule does to one message and its author.
struct Enforcement {
    author: u64,
    /// `None` when Discord blocked it: there is nothing to delete.
    message: Option<u64>,
    channel: u64,
    delete: bool,
    log: bool,
    punishment: Option<Request>,
    reason: String,
}

impl Enforcement {
    fn of(rule: &Rule, why: &str, author: u64, message: Option<u64>, channel: u64) -> Self {
        let reason: String = format!("Automod rule `{}`: {why}.", rule.name)
            .chars()
            .take(CASE_REASON_MAX_CHARS)
            .collect();
        Self {
            author,
            message,
            channel,
            delete: message.is_some() && rule.actions.contains(&AutomodAction::Delete),
            log: rule.actions.contains(&AutomodAction::Log),
            punishment: rule
                .actions
                .iter()
                .find_map(|action| punishment(action, author, &reason)),
            reason,
        }
    }
}

/// The moderation request of a rule's action on `user`, if it is one.
fn punishment(action: &AutomodAction, user: u64, reason: &str) -> Option<Request> {
    let reason = reason.to_owned();
    match action {
        AutomodAction::Warn => Some(Request::Warn { user, reason }),
        AutomodAction::Timeout { secs } => Some(Request::Timeout {
            user,
            duration: Duration::from_secs(*secs),
            reason,
        }),
        AutomodAction::Kick => Some(Request::Kick { user, reason }),
        AutomodAction::Ban => Some(Request::Ban {
            user,
            duration: None,
            delete_messages: Duration::ZERO,
            reason,
        }),
        AutomodAction::Delete | AutomodAction::Log => None,
    }
}

async fn enforce(io: Io, config: Arc<VersionedConfig>, enforcement: Enforcement) -> Vec<Effect> {
    let Enforcement {
        author,
        message,
        channel,
        delete,
        log,
        punishment,
        reason,
    } = enforcement;
    let Some(channel) = Id::new_checked(channel) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    if let Some(message) = message.and_then(Id::new_checked).filter(|_| delete) {
        match io
            .send("delete_message", io.http().delete_message(channel, message))
            .await
        {
            Ok(_) => done.push("deleted the message".to_owned()),
            Err(err) => {
                tracing::warn!(guild_id = %io.guild_id(), error = %err, "automod could not delete a message");
                done.push(format!("could not delete the message ({err})"));
            }
        }
    }
    let mut effects = Vec::new();
    if let Some(request) = punishment {
        let (acted, more) =
            moderation::by_the_bot(io.clone(), Arc::clone(&config), channel, request).await;
        effects.extend(more);
        match acted {
            Ok(text) => done.push(text),
            Err(answer) => {
                tracing::warn!(guild_id = %io.guild_id(), refusal = %answer.text, "automod's action was not taken");
                done.push(format!("the action was not taken: {}", answer.text));
            }
        }
    }
    if message.is_none() {
        done.insert(0, "Discord's AutoMod blocked the message".to_owned());
    }
    if log && let Some(log_channel) = config.config.log_channel.and_then(Id::new_checked) {
        effects.push(Effect::Message {
            channel_id: log_channel,
            content: format!(
                "{reason} Message of <@{author}> in <#{channel}>: {}.",
                if done.is_empty() {
                    "logged".to_owned()
                } else {
                    done.join("; ")
                }
            ),
            embed: None,
        });
    }
    effects
}

/// The actions as the mod-log names them.
pub(super) fn show_actions(actions: &[AutomodAction]) -> String {
    actions
        .iter()
        .map(|action| match action {
            AutomodAction::Delete => "delete".to_owned(),
            AutomodAction::Warn => "warn".to_owned(),
            AutomodAction::Timeout { secs } => {
                format!("timeout {}", show_duration(Duration::from_secs(*secs)))
            }
            AutomodAction::Kick => "kick".to_owned(),
            AutomodAction::Ban => "ban".to_owned(),
            AutomodAction::Log => "log".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
