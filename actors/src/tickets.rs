//! Support tickets: a panel message whose button asks the member for a topic in a modal,
//! then opens a private thread for them, numbered per guild by the store (never twice, also
//! across nodes); staff claim, add and remove people, rename, close with a reason and
//! reopen; the opener closes their own. Closing copies the thread into the ticket's
//! transcript page by page, then a durable timer archives and locks the thread (so the
//! answer to the close is posted before the thread locks, and a crash in between still
//! locks it). A ticket silent for the guild's idle period (the runtime's `ticket_idle_close`
//! unless set) is closed by the bot (a
//! durable timer that moves to the last message's time + the period while there is talk).
//! Every action is an audit entry `ticket.<action>`.
//!
//! - `ticket panel` (staff) posts the panel; `ticket close [reason]`, `ticket claim`,
//!   `ticket add <user>`, `ticket remove <user>`, `ticket rename <name>` work in a ticket's
//!   thread; `ticket reopen <number>` anywhere.
//! - A member has at most the guild's `max_open_per_member` open tickets (checked by the
//!   store as it numbers the ticket), and a modal sent again while their ticket is being
//!   opened (a double press) opens nothing.
//! - The guild's settings (`GuildConfig::tickets`: staff roles, limits, the idle period) are
//!   read from the config the actor holds (`settings.rs`).

mod act;
mod notes;
mod parse;
mod place;
mod settings;

pub(crate) use settings::validate;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use protonn_shard::EventTypeFlags;
use protonn_storage::{GuildConfig, Timer, Timestamp};
use tokio::time::Instant;
use twilight_model::application::command::Command as SlashCommand;
use twilight_model::channel::message::component::{
    ButtonStyle, Component, SelectMenu, SelectMenuOption, SelectMenuType, TextInput, TextInputStyle,
};
use twilight_model::gateway::event::Event;
use twilight_model::guild::Permissions;
use twilight_model::http::interaction::InteractionResponse;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, RoleMarker, UserMarker};

use crate::components::{button, modal, row};
use crate::feature::{Answer, ComponentUse, Ctx, Effect, Feature, Invocation};
use notes::Notes;
use settings::Settings;

/// The feature's name: its timers' `feature`.
pub(crate) const NAME: &str = "tickets";
const COMMANDS: &[&str] = &["ticket"];

/// How long a member's modal is taken as a repeat of the one being opened (a double press).
const OPENING_GUARD: Duration = Duration::from_secs(30);
/// Past this many members opening at once, expired guards are pruned.
const OPENING_PRUNE_AT: usize = 64;

/// Custom ids of the feature's components; all start with [`PREFIX`].
const PREFIX: &str = "ticket:";
const OPEN_BUTTON: &str = "ticket:open";
/// The topic modal; `ticket:topic:<n>` after choosing the panel's category number `n`.
const TOPIC_MODAL: &str = "ticket:topic";
/// The panel's category select (when the guild has categories), option values `0`, `1`, …
const CATEGORY_SELECT: &str = "ticket:category";
const TOPIC_FIELD: &str = "topic";
const CLOSE_BUTTON: &str = "ticket:close";
/// Discord's modal text input bounds for the topic.
const TOPIC_MIN_CHARS: u16 = 5;
const TOPIC_MAX_CHARS: u16 = 200;

/// Who may act as staff on tickets: a staff role of the config (the guild's or the tickets'
/// own), or (where Discord says) Manage Server, Manage Threads or Administrator.
const STAFF_PERMISSIONS: Permissions = Permissions::ADMINISTRATOR
    .union(Permissions::MANAGE_GUILD)
    .union(Permissions::MANAGE_THREADS);

pub(crate) struct Tickets;

/// The feature's state in a guild (one value: `Ctx::state` keeps one per feature).
#[derive(Default)]
struct State {
    opening: Opening,
    notes: Notes,
}

/// Per guild: the tickets being opened (a member and a hash of their request), since when.
/// The request counts, not only the member: a guild may allow several open tickets, and a
/// second one about something else is no double press.
#[derive(Default)]
struct Opening {
    since: HashMap<(Id<UserMarker>, u64), Instant>,
}

impl Opening {
    /// Marks `user`'s `request` as being opened; `false` if it already is (a double press).
    fn start(&mut self, user: Id<UserMarker>, request: &str) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        request.to_lowercase().hash(&mut hasher);
        let key = (user, hasher.finish());
        let now = Instant::now();
        if self.since.len() >= OPENING_PRUNE_AT {
            self.since
                .retain(|_, since| now.duration_since(*since) < OPENING_GUARD);
        }
        match self.since.get(&key) {
            Some(since) if now.duration_since(*since) < OPENING_GUARD => false,
            _ => {
                self.since.insert(key, now);
                true
            }
        }
    }
}

fn is_staff(
    config: &GuildConfig,
    roles: &[Id<RoleMarker>],
    permissions: Option<Permissions>,
) -> bool {
    roles.iter().any(|role| {
        config.staff_roles.contains(&role.get()) || config.tickets.staff_roles.contains(&role.get())
    }) || permissions.is_some_and(|p| p.intersects(STAFF_PERMISSIONS))
}

/// Who acts, with the guild's settings as the actor holds them.
fn actor(
    ctx: &mut Ctx<'_>,
    user: Id<UserMarker>,
    roles: &[Id<RoleMarker>],
    permissions: Option<Permissions>,
    channel_id: Id<ChannelMarker>,
) -> act::Actor {
    act::Actor {
        user,
        staff: is_staff(ctx.config, roles, permissions),
        channel_id,
        settings: settings_of(ctx),
        notes: ctx.state::<State>().notes.clone(),
    }
}

fn settings_of(ctx: &Ctx<'_>) -> Settings {
    Settings::of(ctx.config, ctx.plan, ctx.io.ticket_idle_close())
}

impl Feature for Tickets {
    fn name(&self) -> &'static str {
        NAME
    }

    fn commands(&self) -> &'static [&'static str] {
        COMMANDS
    }

    fn slash_commands(&self) -> Vec<SlashCommand> {
        vec![parse::slash_command()]
    }

    fn on_command(&self, ctx: &mut Ctx<'_>, invocation: Invocation) -> Vec<Effect> {
        let request = match parse::parse(&invocation) {
            Ok(request) => request,
            Err(problem) => return vec![Effect::Reply(Answer::new("invalid", problem))],
        };
        let actor = actor(
            ctx,
            invocation.author,
            &invocation.author_roles,
            invocation.author_permissions,
            invocation.channel_id,
        );
        vec![Effect::task(act::run(ctx.io.clone(), actor, request))]
    }

    fn component_prefix(&self) -> Option<&'static str> {
        Some(PREFIX)
    }

    fn on_component(&self, ctx: &mut Ctx<'_>, used: ComponentUse) -> Vec<Effect> {
        let actor = actor(
            ctx,
            used.author,
            &used.author_roles,
            used.author_permissions,
            used.channel_id,
        );
        // A category is named by its number: the panel's, and its modal's custom id.
        let category = |number: Option<&str>| -> Result<Option<usize>, Answer> {
            let Some(number) = number else {
                return Ok(None);
            };
            number
                .parse::<usize>()
                .ok()
                .filter(|&n| n < actor.settings.categories.len())
                .map(Some)
                .ok_or_else(|| {
                    Answer::new(
                        "invalid",
                        "This category is no longer offered: choose again on the panel.",
                    )
                })
        };
        let (id, number) = match used
            .custom_id
            .strip_prefix(TOPIC_MODAL)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            Some(number) => (TOPIC_MODAL, Some(number)),
            None => (used.custom_id.as_str(), None),
        };
        match id {
            OPEN_BUTTON => vec![Effect::Respond(Box::new(topic_modal(None)))],
            CATEGORY_SELECT => match category(used.values.first().map(String::as_str)) {
                Ok(Some(n)) => vec![Effect::Respond(Box::new(topic_modal(Some(n))))],
                Ok(None) => vec![Effect::Reply(Answer::new("invalid", "Choose a category."))],
                Err(answer) => vec![Effect::Reply(answer)],
            },
            TOPIC_MODAL => {
                let category = match category(number) {
                    Ok(n) => n.map(|n| actor.settings.categories[n].clone()),
                    Err(answer) => return vec![Effect::Reply(answer)],
                };
                let topic = used
                    .field(TOPIC_FIELD)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                if topic.chars().count() < usize::from(TOPIC_MIN_CHARS) {
                    let text =
                        format!("Say in at least {TOPIC_MIN_CHARS} characters what it is about.");
                    return vec![Effect::Reply(Answer::new("invalid", text))];
                }
                let request = format!("{}\n{topic}", category.as_deref().unwrap_or_default());
                if !ctx.state::<State>().opening.start(used.author, &request) {
                    let text = "You opened a ticket moments ago: one at a time, please.";
                    return vec![Effect::Reply(Answer::new("conflict", text))];
                }
                vec![Effect::task(act::open(
                    ctx.io.clone(),
                    actor,
                    topic,
                    category,
                ))]
            }
            CLOSE_BUTTON => {
                let request = parse::Request::Close {
                    reason: String::new(),
                };
                vec![Effect::task(act::run(ctx.io.clone(), actor, request))]
            }
            _ => vec![Effect::Reply(Answer::new(
                "invalid",
                "This button no longer does anything.",
            ))],
        }
    }

    fn on_timer(&self, ctx: &mut Ctx<'_>, timer: Timer) -> Vec<Effect> {
        vec![Effect::task(act::on_timer(
            ctx.io.clone(),
            timer,
            settings_of(ctx),
            ctx.state::<State>().notes.clone(),
        ))]
    }

    fn event_types(&self) -> EventTypeFlags {
        EventTypeFlags::MESSAGE_CREATE
            | EventTypeFlags::MESSAGE_UPDATE
            | EventTypeFlags::MESSAGE_DELETE
    }

    /// Notes what the close would no longer find in the ticket: deleted messages, earlier
    /// texts of edited ones.
    fn on_event(&self, ctx: &mut Ctx<'_>, event: &Event) -> Vec<Effect> {
        let notes = ctx.state::<State>().notes.clone();
        let guild_id = ctx.io.guild_id().get();
        match event {
            Event::MessageCreate(message) => notes.posted(message, guild_id, false),
            Event::MessageUpdate(message) => notes.posted(message, guild_id, true),
            Event::MessageDelete(deleted) => {
                notes.deleted(deleted.channel_id.get(), deleted.id.get(), Timestamp::now());
            }
            _ => {}
        }
        if notes.start_loading() {
            let io = ctx.io.clone();
            return vec![Effect::task(async move {
                notes::load(io, notes).await;
                Vec::new()
            })];
        }
        Vec::new()
    }
}

/// The panel's button, or its category select when the guild names categories.
fn panel_components(categories: &[String]) -> Vec<Component> {
    if categories.is_empty() {
        return vec![row(vec![button(
            OPEN_BUTTON,
            "Open a ticket",
            ButtonStyle::Primary,
        )])];
    }
    let options = categories
        .iter()
        .enumerate()
        .map(|(n, name)| SelectMenuOption {
            default: false,
            description: None,
            emoji: None,
            label: name.clone(),
            value: n.to_string(),
        })
        .collect();
    vec![row(vec![Component::SelectMenu(SelectMenu {
        channel_types: None,
        custom_id: CATEGORY_SELECT.to_owned(),
        default_values: None,
        disabled: false,
        id: None,
        kind: SelectMenuType::Text,
        max_values: Some(1),
        min_values: Some(1),
        options: Some(options),
        placeholder: Some("What is your ticket about?".to_owned()),
        required: None,
    })])]
}

/// The close button of a ticket's first message.
fn ticket_components() -> Vec<Component> {
    vec![row(vec![button(
        CLOSE_BUTTON,
        "Close",
        ButtonStyle::Danger,
    )])]
}

/// The modal asking what the ticket is about (after choosing category number `category`).
fn topic_modal(category: Option<usize>) -> InteractionResponse {
    let input = TextInput {
        custom_id: TOPIC_FIELD.to_owned(),
        id: None,
        #[allow(deprecated)]
        label: Some("What do you need help with?".to_owned()),
        max_length: Some(TOPIC_MAX_CHARS),
        min_length: Some(TOPIC_MIN_CHARS),
        placeholder: None,
        required: Some(true),
        style: TextInputStyle::Paragraph,
        value: None,
    };
    let custom_id = match category {
        Some(n) => format!("{TOPIC_MODAL}:{n}"),
        None => TOPIC_MODAL.to_owned(),
    };
    modal(custom_id, "Open a ticket".to_owned(), vec![input])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_second_modal_while_opening_is_a_double_press() {
        let mut opening = Opening::default();
        let user = Id::new(7);
        assert!(opening.start(user, "Cannot log in"));
        assert!(!opening.start(user, "cannot log in"), "the double press");
        assert!(opening.start(Id::new(8), "Cannot log in"), "another member");
        assert!(opening.start(user, "Billing"), "another request");
        tokio::time::advance(OPENING_GUARD).await;
        assert!(
            opening.start(user, "Cannot log in"),
            "later, a new ticket may be opened"
        );
    }

    #[test]
    fn a_panel_with_categories_offers_them_and_its_modal_carries_the_choice() {
        let Component::ActionRow(row) = &panel_components(&[])[0] else {
            panic!("a row")
        };
        assert!(
            matches!(&row.components[0], Component::Button(b) if b.custom_id.as_deref() == Some(OPEN_BUTTON))
        );
        let categories = ["Billing".to_owned(), "Bugs".to_owned()];
        let Component::ActionRow(row) = &panel_components(&categories)[0] else {
            panic!("a row")
        };
        let Component::SelectMenu(select) = &row.components[0] else {
            panic!("a select")
        };
        let options: Vec<(&str, &str)> = select
            .options
            .iter()
            .flatten()
            .map(|o| (o.label.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(options, [("Billing", "0"), ("Bugs", "1")]);
        let modal = topic_modal(Some(1));
        assert_eq!(
            modal.data.and_then(|d| d.custom_id).as_deref(),
            Some("ticket:topic:1")
        );
    }

    #[test]
    fn staff_is_a_staff_role_or_a_managing_permission() {
        let role = Id::new(5);
        let staff = |guild: &[u64], tickets: &[u64]| GuildConfig {
            staff_roles: guild.to_vec(),
            tickets: protonn_storage::TicketsConfig {
                staff_roles: tickets.to_vec(),
                ..Default::default()
            },
            ..GuildConfig::default()
        };
        assert!(is_staff(&staff(&[5], &[]), &[role], None));
        assert!(
            is_staff(&staff(&[], &[5]), &[role], None),
            "a ticket staff role"
        );
        assert!(!is_staff(&staff(&[6], &[7]), &[role], None));
        let nobody = GuildConfig::default();
        assert!(is_staff(&nobody, &[], Some(Permissions::MANAGE_THREADS)));
        assert!(!is_staff(&nobody, &[], Some(Permissions::SEND_MESSAGES)));
    }
}
