//! Moderation, the first feature of the guild actor: warn, timeout, kick, ban (temporary or
//! not), unban, purge, slowmode, lock and unlock, and the cases they leave.
//!
//! - Every command is parsed and bounded first (`parse.rs`): bad input is answered and
//!   changes nothing.
//! - Then, on a task of its own (`act.rs`), the bot checks its own permissions, then the
//!   moderator's (or a staff role), then the role hierarchy (`checks.rs`), and only then asks
//!   Discord to act.
//! - An action that Discord carried out becomes a case: a per-guild number from the store's
//!   compare-and-set counter, an audit entry, an embed in the mod-log channel, and optionally
//!   a DM to the member. A warning may climb the guild's escalation ladder.
//! - A temporary ban's end is a durable timer, lifted by whichever node owns the guild then.

mod act;
mod checks;
mod parse;
mod slash;

use std::sync::Arc;

use protonn_storage::Timer;
use twilight_model::application::command::Command as SlashCommand;

use crate::feature::{Answer, CallTask, Ctx, Effect, Feature, Invocation};
use crate::{GuildCall, GuildCallError, GuildRequest, GuildResponse};

pub(crate) use act::{bot_permissions, by_the_bot, snowflake_ms};
pub(crate) use checks::names as permission_names;
pub(crate) use parse::{Request, parse_escalation, show_escalation, user as parse_user};
pub use parse::{parse_duration, show_duration};

/// Cases one guild call returns at most (a page of the dashboard's list).
const CASES_PER_CALL: u32 = 100;

/// The feature's name: its timers' `feature`.
pub(crate) const NAME: &str = "moderation";

/// Its commands, text and slash alike.
const COMMANDS: &[&str] = &[
    "warn", "timeout", "kick", "ban", "unban", "purge", "slowmode", "lock", "unlock", "case",
    "reason", "history",
];

pub(crate) struct Moderation;

impl Feature for Moderation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn commands(&self) -> &'static [&'static str] {
        COMMANDS
    }

    fn slash_commands(&self) -> Vec<SlashCommand> {
        slash::commands()
    }

    fn on_command(&self, ctx: &mut Ctx<'_>, invocation: Invocation) -> Vec<Effect> {
        match parse::parse(&invocation) {
            Ok(request) => vec![Effect::task(act::run(
                ctx.io.clone(),
                Arc::clone(ctx.shared_config()),
                invocation,
                request,
            ))],
            Err(problem) => vec![Effect::Reply(Answer::new("invalid", problem))],
        }
    }

    fn on_call(&self, ctx: &mut Ctx<'_>, call: &GuildCall) -> Option<CallTask> {
        let GuildRequest::Cases {
            target_id,
            before,
            limit,
        } = call.request
        else {
            return None;
        };
        let io = ctx.io.clone();
        Some(Box::pin(async move {
            if !(1..=CASES_PER_CALL).contains(&limit) {
                return Err(GuildCallError::Invalid {
                    message: format!("ask for 1 to {CASES_PER_CALL} cases"),
                });
            }
            let guild_id = io.guild_id().get();
            let store = io.store();
            let cases = match target_id {
                Some(target) => store.cases_about(guild_id, target, limit as usize).await,
                None => store.cases(guild_id, before, limit as usize).await,
            };
            cases
                .map(|cases| GuildResponse::Cases { cases })
                .map_err(|err| GuildCallError::Unavailable {
                    message: err.to_string(),
                })
        }))
    }

    fn on_timer(&self, ctx: &mut Ctx<'_>, timer: Timer) -> Vec<Effect> {
        vec![Effect::task(act::expire(
            ctx.io.clone(),
            Arc::clone(ctx.shared_config()),
            timer,
        ))]
    }
}

/// The commands, for the help text.
pub(crate) fn help(prefix: &str) -> String {
    COMMANDS
        .iter()
        .map(|name| format!("`{prefix}{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
