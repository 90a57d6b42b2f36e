//! `GuildActor`: one per guild, holding its live configuration and handling its events in
//! gateway order.

use std::sync::Arc;

use metrics::counter;
use protonn_storage::{StorageError, VersionedConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use twilight_model::application::interaction::application_command::{
    CommandData, CommandOptionValue,
};
use twilight_model::application::interaction::{Interaction, InteractionData};
use twilight_model::channel::Message;
use twilight_model::gateway::event::Event;
use twilight_model::guild::Permissions;
use twilight_model::id::Id;
use twilight_model::id::marker::{
    ApplicationMarker, ChannelMarker, GuildMarker, InteractionMarker,
};

use crate::commands::{self, Command, Parsed};
use crate::metrics::COMMANDS_HANDLED;
use crate::{HandledEvent, Services};

/// Permissions that allow changing a guild's bot configuration.
const MANAGE: Permissions = Permissions::ADMINISTRATOR.union(Permissions::MANAGE_GUILD);

pub struct GuildActor;

pub struct GuildArgs {
    pub(crate) guild_id: Id<GuildMarker>,
    pub(crate) services: Arc<Services>,
}

pub enum GuildMsg {
    /// A gateway event of this guild, in gateway order. Boxed: events are large.
    Event(Box<Event>),
}

pub struct GuildState {
    guild_id: Id<GuildMarker>,
    services: Arc<Services>,
    /// Loaded from storage on first need, so that spawning for a READY burst costs no I/O.
    config: Option<VersionedConfig>,
}

/// Where the answer to a command goes.
enum ReplyTo {
    Channel(Id<ChannelMarker>),
    Interaction {
        application_id: Id<ApplicationMarker>,
        id: Id<InteractionMarker>,
        token: String,
    },
}

/// A command's answer, and how it went (the metric's `outcome`).
struct Answer {
    text: String,
    outcome: &'static str,
}

impl Answer {
    fn ok(text: String) -> Self {
        Self {
            text,
            outcome: "ok",
        }
    }
}

impl Actor for GuildActor {
    type Msg = GuildMsg;
    type State = GuildState;
    type Arguments = GuildArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<GuildMsg>,
        args: GuildArgs,
    ) -> Result<GuildState, ActorProcessingErr> {
        Ok(GuildState {
            guild_id: args.guild_id,
            services: args.services,
            config: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GuildMsg>,
        message: GuildMsg,
        state: &mut GuildState,
    ) -> Result<(), ActorProcessingErr> {
        let GuildMsg::Event(event) = message;
        match *event {
            Event::GuildCreate(_) => state.observe(HandledEvent::GuildCreate),
            // Without `unavailable` the bot was removed from the guild (an outage sets it).
            Event::GuildDelete(delete) if delete.unavailable != Some(true) => {
                tracing::info!(guild_id = %state.guild_id, "removed from guild");
                myself.stop(Some("removed from guild".to_owned()));
            }
            Event::MessageCreate(message) => {
                state.observe(HandledEvent::Message(message.id.get()));
                state.on_message(&message).await;
            }
            Event::InteractionCreate(interaction) => {
                state.observe(HandledEvent::Interaction(interaction.id.get()));
                state.on_interaction(&interaction.0).await;
            }
            _ => {}
        }
        Ok(())
    }
}

impl GuildState {
    fn observe(&self, event: HandledEvent) {
        if let Some(observer) = &self.services.observer {
            observer.handled(self.guild_id.get(), event);
        }
    }

    async fn config(&mut self) -> Result<&VersionedConfig, StorageError> {
        if self.config.is_none() {
            let stored = self.services.store.load(self.guild_id.get()).await?;
            self.config = Some(stored.unwrap_or_else(|| VersionedConfig {
                version: 0,
                config: Default::default(),
            }));
        }
        Ok(self.config.as_ref().expect("loaded above"))
    }

    async fn on_message(&mut self, message: &Message) {
        if message.author.bot {
            return;
        }
        let prefix = match self.config().await {
            Ok(current) => current.config.prefix.clone(),
            Err(err) => {
                // Without the prefix we cannot tell a command from chat: skip, loudly.
                tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
                return;
            }
        };
        let parsed = commands::parse_text(&prefix, &message.content);
        if parsed == Parsed::NotACommand {
            return;
        }
        // Only a config change needs the permission lookup.
        let may_manage = matches!(parsed, Parsed::Command(Command::ConfigSet { .. }))
            && self.member_may_manage(message);
        let answer = self.run(parsed, may_manage).await;
        self.send(ReplyTo::Channel(message.channel_id), answer);
    }

    async fn on_interaction(&mut self, interaction: &Interaction) {
        let Some(InteractionData::ApplicationCommand(data)) = &interaction.data else {
            return;
        };
        let options = string_options(data);
        let options: Vec<(&str, &str)> = options.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let parsed = commands::parse_slash(&data.name, &options);
        // Discord computes the member's permissions in the channel for us.
        let may_manage = interaction
            .member
            .as_ref()
            .and_then(|member| member.permissions)
            .is_some_and(|permissions| permissions.intersects(MANAGE));
        let answer = self.run(parsed, may_manage).await;
        let reply = ReplyTo::Interaction {
            application_id: interaction.application_id,
            id: interaction.id,
            token: interaction.token.clone(),
        };
        self.send(reply, answer);
    }

    fn send(&self, to: ReplyTo, answer: Answer) {
        let replies = &self.services.replies;
        match to {
            ReplyTo::Channel(channel_id) => replies.message(channel_id, answer.text),
            ReplyTo::Interaction {
                application_id,
                id,
                token,
            } => {
                let private = answer.outcome != "ok";
                replies.interaction(application_id, id, token, answer.text, private);
            }
        }
    }

    /// Runs a parsed command and counts it.
    async fn run(&mut self, parsed: Parsed, may_manage: bool) -> Answer {
        let (label, answer) = match parsed {
            Parsed::NotACommand => unreachable!("callers answer only commands"),
            Parsed::Invalid(text) => (
                "invalid",
                Answer {
                    text,
                    outcome: "invalid",
                },
            ),
            Parsed::Command(command) => (command.label(), self.execute(command, may_manage).await),
        };
        counter!(COMMANDS_HANDLED, "command" => label, "outcome" => answer.outcome).increment(1);
        answer
    }

    async fn execute(&mut self, command: Command, may_manage: bool) -> Answer {
        let current = match self.config().await {
            Ok(current) => current.clone(),
            Err(err) => {
                tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
                return unavailable();
            }
        };
        match command {
            Command::Ping => Answer::ok("pong".to_owned()),
            Command::Help => Answer::ok(commands::help(&current.config.prefix)),
            Command::ConfigGet { key } => Answer::ok(format!(
                "`{}` is `{}`.",
                key.name(),
                key.show(&current.config)
            )),
            Command::ConfigSet { key, value } => {
                if !may_manage {
                    return Answer {
                        text: "Changing the configuration needs the Manage Server permission."
                            .to_owned(),
                        outcome: "denied",
                    };
                }
                let mut next = current.config.clone();
                if let Err(text) = key.apply(&mut next, &value) {
                    return Answer {
                        text,
                        outcome: "invalid",
                    };
                }
                // Durable first, then live: an acknowledged change is never lost.
                let saved = self
                    .services
                    .store
                    .save(self.guild_id.get(), current.version, &next)
                    .await;
                match saved {
                    Ok(version) => {
                        let shown = key.show(&next);
                        self.config = Some(VersionedConfig {
                            version,
                            config: next,
                        });
                        Answer::ok(format!("`{}` is now `{shown}`.", key.name()))
                    }
                    Err(StorageError::Conflict { .. }) => {
                        // Someone else changed it meanwhile: reload before the next command.
                        self.config = None;
                        Answer {
                            text: "The configuration was changed elsewhere at the same time; \
                                   nothing was saved. Please try again."
                                .to_owned(),
                            outcome: "conflict",
                        }
                    }
                    Err(err) => {
                        tracing::error!(guild_id = %self.guild_id, error = %err, "cannot save guild config");
                        unavailable()
                    }
                }
            }
        }
    }

    /// Whether the author of a guild message may change the configuration: the owner, or a
    /// member whose roles (with @everyone) grant Administrator or Manage Server.
    fn member_may_manage(&self, message: &Message) -> bool {
        let cache = &self.services.cache;
        let Some(guild) = cache.guild(self.guild_id) else {
            return false;
        };
        if guild.owner_id() == message.author.id {
            return true;
        }
        let member_roles = message
            .member
            .iter()
            .flat_map(|member| member.roles.iter().copied());
        std::iter::once(self.guild_id.cast())
            .chain(member_roles)
            .filter_map(|role_id| cache.role(role_id).map(|role| role.resource().permissions))
            .any(|permissions| permissions.intersects(MANAGE))
    }
}

fn unavailable() -> Answer {
    Answer {
        text: "The configuration store is unavailable right now; nothing was changed. Please try again shortly."
            .to_owned(),
        outcome: "error",
    }
}

fn string_options(data: &CommandData) -> Vec<(&str, String)> {
    data.options
        .iter()
        .filter_map(|option| match &option.value {
            CommandOptionValue::String(value) => Some((option.name.as_str(), value.clone())),
            _ => None,
        })
        .collect()
}
