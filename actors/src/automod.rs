//! Automod, a feature of the guild actor: the guild's rules (in its config) checked on every
//! member message, in the actor and without I/O.
//!
//! - Rules are checked against every limit and compiled once per config version
//!   (`rules.rs`), on a blocking thread when the guild actor loads or saves the config
//!   ([`Feature::compile`]): a saved rule applies from the next message, and no message is
//!   handled before the rules of its config are ready. A config over the limits is refused
//!   when it is set, with the reason. The plan decides how many of the compiled rules run.
//! - Members' recent messages, for the spam rules, live in the feature's state, bounded and
//!   dropped when idle (`spam.rs`).
//! - A rule in shadow mode only reports what it would have done; the first enforcing rule
//!   that matches acts (`act.rs`): warnings, timeouts, kicks and bans are moderation's
//!   actions taken by the bot (a case each, the escalation ladder after a warning).
//! - Bots' messages (this bot's included) are never checked.
//! - Native rules run in Discord's own AutoMod (`native.rs`): pushed when the config or
//!   the plan changes which run (and, after a push the bot's missing permission skipped,
//!   when its permissions may have changed), not checked by the bot on messages; Discord's
//!   AUTO_MODERATION_ACTION_EXECUTION for one makes the bot take the rule's other actions.

mod act;
mod native;
mod rules;
mod spam;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protonn_shard::EventTypeFlags;
use protonn_storage::{AutomodConfig, GuildConfig, Plan};
use tokio::time::Instant;
use twilight_model::channel::Message;
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::AutoModerationActionExecution;
use twilight_model::guild::auto_moderation::AutoModerationActionType;

use crate::feature::{CallTask, Compiled, Ctx, Effect, Feature};
use crate::{GuildCall, GuildCallError, GuildRequest, GuildResponse, RuleMatch};
pub(crate) use rules::{Hit, Rules, Said, TRIGGER_KINDS};

/// The feature's name.
pub(crate) const NAME: &str = "automod";

pub(crate) struct Automod;

/// Shadow-mode hits a guild stores per hour at most: enough to tune a rule, and a flood of
/// would-be hits cannot flood the store (the rest are counted in the metric and logged).
const HITS_STORED_PER_HOUR: u32 = 120;

/// Automod's state in one guild.
#[derive(Default)]
struct State {
    /// The rules compiled from the config of this version, all of them (the plan decides
    /// how many run).
    compiled: Option<(u64, Arc<Rules>)>,
    activity: spam::Activity,
    hit_budget: HitBudget,
    /// Held by the task pushing native rules to Discord: pushes one after the other, each
    /// listing what the last one made (two at once would both make a missing rule).
    native_push: Arc<tokio::sync::Mutex<()>>,
    /// The last push was skipped for the bot's missing permission: pushed again when its
    /// permissions may have changed.
    native_blocked: Arc<AtomicBool>,
}

/// How many more shadow-mode hits the guild may store this hour.
#[derive(Default)]
pub(crate) struct HitBudget {
    window_start: Option<Instant>,
    stored: u32,
}

impl HitBudget {
    /// Takes one from the budget; `false` when the hour's is spent.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= Duration::from_secs(3_600) {
            self.window_start = Some(now);
            self.stored = 0;
        }
        if self.stored >= HITS_STORED_PER_HOUR {
            return false;
        }
        self.stored += 1;
        true
    }
}

impl State {
    /// The rules of config `version`: those the actor had compiled for it
    /// ([`Feature::install`]), else compiled here (only if compiling on a blocking thread
    /// failed).
    fn rules(&mut self, version: u64, config: &AutomodConfig, guild_id: u64) -> Arc<Rules> {
        match &self.compiled {
            Some((compiled, rules)) if *compiled == version => Arc::clone(rules),
            _ => self.install(version, Rules::compile(config), guild_id),
        }
    }

    /// Keeps the rules of config `version`. A stored config that no longer compiles (limits
    /// lowered since it was saved) runs no rules, loudly.
    fn install(
        &mut self,
        version: u64,
        compiled: Result<Rules, String>,
        guild_id: u64,
    ) -> Arc<Rules> {
        let rules = Arc::new(compiled.unwrap_or_else(|problem| {
            tracing::error!(guild_id, %problem, "the guild's automod rules do not compile; none run");
            Rules::default()
        }));
        self.compiled = Some((version, Arc::clone(&rules)));
        rules
    }
}

/// How many of the config's rules `plan` runs: the first ones (after a downgrade the rules
/// past the plan's limit are kept but not run).
fn running(config: &AutomodConfig, plan: Plan) -> usize {
    config.rules.len() - config.over_plan(plan).len()
}

/// Hits one guild call returns at most (a page of the dashboard's list).
const HITS_PER_CALL: u32 = 100;
/// The longest text "test a message" takes: Discord's message length.
const TEST_MAX_CHARS: usize = 2_000;

/// The rules that would fire on `content` as a member's message, and why: no effect, no
/// member state (one text says nothing of a message rate or an account's age).
fn test_message(rules: &Rules, running: usize, content: &str) -> Vec<RuleMatch> {
    let said = Said {
        channel: 0,
        roles: &[],
        content,
        mentions: content.matches("<@").count() as u32,
        account_age: Duration::MAX,
    };
    let now = Instant::now();
    let alone: rules::Recent = [(now, 0)].into();
    rules
        .check(&said, &alone, now, running)
        .into_iter()
        .map(|hit| {
            let rule = &rules.rules[hit.rule];
            RuleMatch {
                rule: rule.name.clone(),
                why: hit.why,
                shadow: rule.shadow,
                actions: act::show_actions(&rule.actions),
            }
        })
        .collect()
}

/// Checks a config's rules as they would be compiled; the error says what to change.
pub(crate) fn validate(config: &AutomodConfig) -> Result<(), String> {
    Rules::compile(config)?;
    native::check(config)
}

/// Makes Discord's rules `wanted`, on a task, after any push under way.
fn push_native(ctx: &mut Ctx<'_>, wanted: Vec<native::NativeRule>) -> Vec<Effect> {
    let io = ctx.io.clone();
    let state: &mut State = ctx.state();
    let one_at_a_time = Arc::clone(&state.native_push);
    let blocked = Arc::clone(&state.native_blocked);
    vec![Effect::task(async move {
        let _pushing = one_at_a_time.lock().await;
        native::reconcile(io, wanted, blocked).await
    })]
}

/// The bot's permissions may have changed (the cache has the change already): a push
/// skipped for a missing permission is tried again, without anyone saving the rules.
fn permissions_may_have_changed(ctx: &mut Ctx<'_>) -> Vec<Effect> {
    let state: &mut State = ctx.state();
    if !state.native_blocked.load(Ordering::Acquire) {
        return Vec::new();
    }
    let wanted = native::wanted(&ctx.config.automod, ctx.plan);
    push_native(ctx, wanted)
}

/// Discord's AutoMod blocked a member's message for one of the native rules: the bot takes
/// that rule's other actions (a case, the ladder, the mod-log) as if it had matched it.
fn after_discord(ctx: &mut Ctx<'_>, execution: &AutoModerationActionExecution) -> Vec<Effect> {
    let (config, plan, version) = (ctx.config, ctx.plan, ctx.config_version);
    let shared = ctx.shared_config();
    let Some(rule) = native::rule_of(&config.automod, plan, execution) else {
        tracing::info!(guild_id = %execution.guild_id, rule_id = %execution.rule_id, "a Discord AutoMod rule that is not one of ours acted");
        return Vec::new();
    };
    let guild_id = ctx.io.guild_id().get();
    let io = ctx.io.clone();
    let state: &mut State = ctx.state();
    let rules = state.rules(version, &config.automod, guild_id);
    let Some(compiled) = rules.rules.iter().find(|r| r.name == rule.name.trim()) else {
        return Vec::new();
    };
    let why = match &execution.matched_keyword {
        Some(keyword) => format!("Discord's AutoMod matched the keyword `{keyword}`"),
        None => "Discord's AutoMod found too many mentions".to_owned(),
    };
    let Some(channel) = execution.channel_id else {
        return Vec::new();
    };
    act::after_discord(
        &io,
        shared,
        compiled,
        &why,
        execution.user_id.get(),
        channel.get(),
    )
}

impl Feature for Automod {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_call(&self, ctx: &mut Ctx<'_>, call: &GuildCall) -> Option<CallTask> {
        match &call.request {
            GuildRequest::AutomodTest { content } => {
                let answer = if content.chars().count() > TEST_MAX_CHARS {
                    Err(GuildCallError::Invalid {
                        message: format!("a message has at most {TEST_MAX_CHARS} characters"),
                    })
                } else {
                    let (config, version) = (ctx.config, ctx.config_version);
                    let running = running(&config.automod, ctx.plan);
                    let guild_id = ctx.io.guild_id().get();
                    let state: &mut State = ctx.state();
                    let rules = state.rules(version, &config.automod, guild_id);
                    Ok(GuildResponse::AutomodTest {
                        matches: test_message(&rules, running, content),
                    })
                };
                Some(Box::pin(std::future::ready(answer)))
            }
            GuildRequest::AutomodNative => {
                let wanted = native::wanted(&ctx.config.automod, ctx.plan);
                let io = ctx.io.clone();
                Some(Box::pin(async move {
                    Ok(GuildResponse::AutomodNative {
                        rules: native::status(io, wanted).await,
                    })
                }))
            }
            GuildRequest::AutomodHits { before, limit } => {
                let (before, limit) = (*before, *limit);
                let io = ctx.io.clone();
                Some(Box::pin(async move {
                    if !(1..=HITS_PER_CALL).contains(&limit) {
                        return Err(GuildCallError::Invalid {
                            message: format!("ask for 1 to {HITS_PER_CALL} hits"),
                        });
                    }
                    io.store()
                        .automod_hits(io.guild_id().get(), before, limit as usize)
                        .await
                        .map(|hits| GuildResponse::AutomodHits { hits })
                        .map_err(|err| GuildCallError::Unavailable {
                            message: err.to_string(),
                        })
                }))
            }
            _ => None,
        }
    }

    fn event_types(&self) -> EventTypeFlags {
        EventTypeFlags::MESSAGE_CREATE
            | EventTypeFlags::MESSAGE_UPDATE
            | EventTypeFlags::AUTO_MODERATION_ACTION_EXECUTION
    }

    /// What may grant the bot its permissions: a push they stopped is retried (an actor
    /// started later reconciles Discord's rules at its first plan read anyway).
    fn resident_event_types(&self) -> EventTypeFlags {
        EventTypeFlags::ROLE_UPDATE | EventTypeFlags::MEMBER_UPDATE | EventTypeFlags::GUILD_UPDATE
    }

    fn wants(&self, event: &Event) -> bool {
        match event {
            Event::MessageCreate(message) => !message.author.bot,
            Event::MessageUpdate(message) => !message.author.bot,
            // Discord sends one per action of its rule; ours have one, the block.
            Event::AutoModerationActionExecution(execution) => {
                execution.action.kind == AutoModerationActionType::BlockMessage
            }
            // What grants the bot its permissions: its roles, its member, the owner.
            Event::RoleUpdate(_) | Event::MemberUpdate(_) | Event::GuildUpdate(_) => true,
            _ => false,
        }
    }

    fn compile(&self, config: &GuildConfig) -> Option<Compiled> {
        Some(Box::new(Rules::compile(&config.automod)))
    }

    /// Without rules no message is checked: nothing to compile.
    fn compiles(&self, config: &GuildConfig) -> bool {
        !config.automod.rules.is_empty()
    }

    fn install(&self, ctx: &mut Ctx<'_>, compiled: Compiled) {
        let Ok(compiled) = compiled.downcast::<Result<Rules, String>>() else {
            return;
        };
        let (version, guild_id) = (ctx.config_version, ctx.io.guild_id().get());
        ctx.state::<State>().install(version, *compiled, guild_id);
    }

    /// Pushes the native rules to Discord when the config changed them.
    fn on_config_saved(&self, ctx: &mut Ctx<'_>, before: &GuildConfig) -> Vec<Effect> {
        let wanted = native::wanted(&ctx.config.automod, ctx.plan);
        if wanted == native::wanted(&before.automod, ctx.plan) {
            return Vec::new();
        }
        push_native(ctx, wanted)
    }

    /// Pushes the native rules to Discord when the plan changed which of them run. At the
    /// actor's first read of the plan, Discord's rules may have been pushed under another
    /// (it changed while no actor held the guild): reconciled if the plan decides any.
    fn on_plan_changed(&self, ctx: &mut Ctx<'_>, before: Option<Plan>) -> Vec<Effect> {
        let automod = &ctx.config.automod;
        let wanted = native::wanted(automod, ctx.plan);
        let differs = |plan: &Plan| native::wanted(automod, *plan) != wanted;
        let moved = match before {
            Some(before) => differs(&before),
            None => Plan::ALL.iter().any(differs),
        };
        if !moved {
            return Vec::new();
        }
        push_native(ctx, wanted)
    }

    /// A member's message, or an edit of one: an edit is checked like a new message but is
    /// not counted as one more (rate and duplicate rules count messages sent).
    fn on_event(&self, ctx: &mut Ctx<'_>, event: &Event) -> Vec<Effect> {
        let (message, edited): (&Message, bool) = match event {
            Event::MessageCreate(message) => (message, false),
            Event::MessageUpdate(message) => (message, true),
            Event::AutoModerationActionExecution(execution) => {
                return after_discord(ctx, execution);
            }
            Event::RoleUpdate(_) | Event::GuildUpdate(_) => {
                return permissions_may_have_changed(ctx);
            }
            Event::MemberUpdate(member) => {
                let bot = ctx.io.known_bot_id();
                if bot.is_none_or(|bot| bot == member.user.id) {
                    return permissions_may_have_changed(ctx);
                }
                return Vec::new();
            }
            _ => return Vec::new(),
        };
        let config = ctx.config;
        let shared = ctx.shared_config();
        if message.author.bot || config.automod.rules.is_empty() {
            return Vec::new();
        }
        let guild_id = ctx.io.guild_id().get();
        let (version, running) = (ctx.config_version, running(&config.automod, ctx.plan));
        let io = ctx.io.clone();
        let state: &mut State = ctx.state();
        let rules = state.rules(version, &config.automod, guild_id);
        let author = message.author.id.get();
        let now = Instant::now();
        let none = rules::Recent::new();
        let recent = if rules.counts_messages() && !edited {
            state
                .activity
                .record(author, &message.content, now, rules.window, rules.keep)
        } else {
            &none
        };
        let roles = message
            .member
            .as_ref()
            .map_or(&[][..], |member| &member.roles[..]);
        let born = crate::moderation::snowflake_ms(author);
        let now_ms = protonn_storage::Timestamp::now().0;
        let said = Said {
            channel: message.channel_id.get(),
            roles,
            content: &message.content,
            mentions: (message.mentions.len()
                + message.mention_roles.len()
                + usize::from(message.mention_everyone)) as u32,
            account_age: Duration::from_millis(now_ms.saturating_sub(born)),
        };
        let mut hits = rules.check(&said, recent, now, running);
        // Discord checks those: a message it let through is not the bot's to judge again.
        hits.retain(|hit| !rules.rules[hit.rule].native);
        if hits.is_empty() {
            return Vec::new();
        }
        // What a rule acted on (or would have) starts anew: one flood, one action.
        state.activity.forget(author);
        act::respond(&io, shared, &rules, &hits, message, &mut state.hit_budget)
    }
}

#[cfg(test)]
mod tests {
    use protonn_storage::{AutomodAction, AutomodRule, Trigger};

    use super::*;

    fn invites() -> AutomodConfig {
        AutomodConfig {
            rules: vec![AutomodRule {
                name: "invites".into(),
                trigger: Trigger::InviteLinks,
                actions: vec![AutomodAction::Delete],
                shadow: false,
                exempt_roles: Vec::new(),
                exempt_channels: Vec::new(),
                native: false,
            }],
        }
    }

    #[test]
    fn rules_are_compiled_once_per_config_version() {
        let mut state = State::default();
        let installed = state.install(3, Rules::compile(&invites()), 1);
        let again = state.rules(3, &invites(), 1);
        assert!(
            Arc::ptr_eq(&installed, &again),
            "the version installed: not compiled again"
        );
        assert_eq!(again.rules.len(), 1);
        let next = state.rules(4, &AutomodConfig::default(), 1);
        assert!(next.rules.is_empty(), "a new version is compiled anew");
    }

    #[test]
    fn after_a_downgrade_the_rules_past_the_plans_limit_are_kept_but_not_run() {
        let free = Plan::Free.limits().automod_rules as usize;
        let mut config = AutomodConfig::default();
        for n in 0..free + 2 {
            let mut rule = invites().rules.remove(0);
            rule.name = format!("rule {n}");
            config.rules.push(rule);
        }
        let rules = State::default().rules(1, &config, 1);
        assert_eq!(rules.rules.len(), free + 2, "compiled once, for every plan");
        assert_eq!(running(&config, Plan::Premium), free + 2);
        assert_eq!(running(&config, Plan::Free), free);
        let invite = "join discord.gg/abc";
        assert_eq!(
            test_message(&rules, running(&config, Plan::Free), invite).len(),
            free
        );
        let off: Vec<&str> = config
            .over_plan(Plan::Free)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(off, [format!("rule {free}"), format!("rule {}", free + 1)]);
        assert!(config.over_plan(Plan::Premium).is_empty());
    }

    #[test]
    fn testing_a_message_names_the_rules_that_would_fire_and_why() {
        let mut config = invites();
        config.rules[0].shadow = true;
        config.rules.push(AutomodRule {
            name: "words".into(),
            trigger: Trigger::Keywords {
                words: vec!["scam*".into()],
            },
            actions: vec![AutomodAction::Delete, AutomodAction::Timeout { secs: 600 }],
            shadow: false,
            exempt_roles: Vec::new(),
            exempt_channels: Vec::new(),
            native: false,
        });
        let rules = Rules::compile(&config).unwrap();
        assert!(test_message(&rules, 2, "hello there").is_empty());
        let matches = test_message(&rules, 2, "scammers at discord.gg/abc");
        assert_eq!(
            matches,
            [
                RuleMatch {
                    rule: "invites".into(),
                    why: "an invite link (discord.gg/abc)".into(),
                    shadow: true,
                    actions: "delete".into(),
                },
                RuleMatch {
                    rule: "words".into(),
                    why: "the keyword `scam*`".into(),
                    shadow: false,
                    actions: "delete, timeout 10m".into(),
                },
            ]
        );
    }

    #[test]
    fn a_guild_stores_a_bounded_number_of_shadow_hits_an_hour() {
        let mut budget = HitBudget::default();
        let start = Instant::now();
        let taken = (0..HITS_STORED_PER_HOUR + 10)
            .filter(|_| budget.take(start))
            .count();
        assert_eq!(taken, HITS_STORED_PER_HOUR as usize);
        assert!(!budget.take(start + Duration::from_secs(3_599)));
        assert!(
            budget.take(start + Duration::from_secs(3_600)),
            "a new hour"
        );
    }

    #[test]
    fn a_stored_config_that_no_longer_compiles_runs_no_rules() {
        let mut config = invites();
        config.rules[0].actions.clear();
        assert!(validate(&config).is_err());
        let mut state = State::default();
        assert!(state.rules(1, &config, 1).rules.is_empty());
    }
}
