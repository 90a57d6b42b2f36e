//! Discord REST out: every reply the bot sends goes through here.

use std::sync::Arc;

use metrics::counter;
use twilight_http::request::TryIntoRequest;
use twilight_model::channel::message::{AllowedMentions, Embed, MessageFlags};
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};
use twilight_model::id::Id;
use twilight_model::id::marker::{ApplicationMarker, ChannelMarker, InteractionMarker};

use crate::metrics::REST_REQUESTS;
use crate::rest::{Rest, RestError};

/// Values of the `route` label of `protonn_rest_requests_total`: every request the bot makes.
pub(crate) const REST_ROUTE_LABELS: [&str; 34] = [
    "create_message",
    "interaction_callback",
    "interaction_edit",
    "current_application",
    "set_global_commands",
    "guild_member",
    "guild_channels",
    // Moderation.
    "create_ban",
    "delete_ban",
    "update_member",
    "remove_member",
    "channel_messages",
    "delete_message",
    "delete_messages",
    "get_channel",
    "update_channel",
    "update_permission",
    "create_dm",
    "current_user",
    // Premium: reconciling Discord entitlements.
    "entitlements",
    // Workflows.
    "add_member_role",
    "remove_member_role",
    "create_reaction",
    // Tickets.
    "create_thread",
    "add_thread_member",
    "remove_thread_member",
    "update_thread",
    // Ticket channels.
    "create_guild_channel",
    "delete_permission",
    // Workflows' thread on a message.
    "create_thread_from_message",
    // Automod: rules pushed to Discord's own AutoMod.
    "automod_rules",
    "create_automod_rule",
    "update_automod_rule",
    "delete_automod_rule",
];

/// Sends replies without making the caller wait: each request runs on its own task, so a
/// slow REST round trip never holds up the guild actor that asked for it.
/// The requests are built by twilight-http (which validates them) and sent through [`Rest`].
#[derive(Clone)]
pub struct Replies {
    http: Arc<twilight_http::Client>,
    rest: Rest,
}

impl Replies {
    /// `http` only builds requests (it needs no token); `rest` sends them.
    pub fn new(rest: Rest) -> Self {
        Self {
            http: Arc::new(twilight_http::Client::builder().build()),
            rest,
        }
    }

    /// Builds requests (validated by twilight-http), for lookups that wait for their answer.
    pub(crate) fn http(&self) -> &twilight_http::Client {
        &self.http
    }

    pub(crate) fn rest(&self) -> &Rest {
        &self.rest
    }

    /// Builds a request with twilight-http and sends it through the node's [`Rest`]; the
    /// outcome is in the metrics, so a reply's caller does not wait for it.
    fn spawn_send(
        &self,
        route: &'static str,
        builder: impl TryIntoRequest,
    ) -> Option<tokio::task::JoinHandle<bool>> {
        let request = match builder.try_into_request() {
            Ok(request) => request,
            Err(err) => {
                // twilight's validation: a reply the handlers should never build.
                tracing::error!(route, error = %err, "invalid discord request not sent");
                counter!(REST_REQUESTS, "route" => route, "outcome" => "client_error").increment(1);
                return None;
            }
        };
        let sent = self.rest.send(route, request);
        Some(tokio::spawn(async move { report(route, sent.await) }))
    }

    /// Posts `content` to a channel. Replies never ping anyone: they may echo user input.
    pub fn message(&self, channel_id: Id<ChannelMarker>, content: String) {
        let no_pings = AllowedMentions::default();
        let request = self
            .http
            .create_message(channel_id)
            .content(&content)
            .allowed_mentions(Some(&no_pings));
        self.spawn_send("create_message", request);
    }

    /// Posts `content` and an optional embed to a channel, pinging nobody.
    pub(crate) fn message_with(
        &self,
        channel_id: Id<ChannelMarker>,
        content: String,
        embed: Option<Embed>,
    ) {
        let no_pings = AllowedMentions::default();
        let embeds: Vec<Embed> = embed.into_iter().collect();
        let mut request = self
            .http
            .create_message(channel_id)
            .allowed_mentions(Some(&no_pings))
            .embeds(&embeds);
        if !content.is_empty() {
            request = request.content(&content);
        }
        self.spawn_send("create_message", request);
    }

    /// Answers an interaction with a message (within Discord's 3 s deadline: this is sent at
    /// once). `private` replies are shown only to the user who asked.
    pub fn interaction(
        &self,
        application_id: Id<ApplicationMarker>,
        interaction_id: Id<InteractionMarker>,
        token: String,
        content: String,
        private: bool,
    ) {
        let response = InteractionResponse {
            kind: InteractionResponseType::ChannelMessageWithSource,
            data: Some(InteractionResponseData {
                content: Some(content),
                allowed_mentions: Some(AllowedMentions::default()),
                flags: private.then_some(MessageFlags::EPHEMERAL),
                ..InteractionResponseData::default()
            }),
        };
        let interaction = self.http.interaction(application_id);
        let request = interaction.create_response(interaction_id, &token, &response);
        self.spawn_send("interaction_callback", request);
    }

    /// Answers an interaction with a response a feature built (a modal).
    pub(crate) fn respond(
        &self,
        application_id: Id<ApplicationMarker>,
        interaction_id: Id<InteractionMarker>,
        token: String,
        response: &InteractionResponse,
    ) {
        let interaction = self.http.interaction(application_id);
        let request = interaction.create_response(interaction_id, &token, response);
        self.spawn_send("interaction_callback", request);
    }

    /// Acknowledges an interaction now (Discord's 3 s deadline), to be answered later with
    /// [`Deferred::finish`] (within the token's 15 minutes); a `private` answer is shown only
    /// to the user who asked.
    pub fn defer(
        &self,
        application_id: Id<ApplicationMarker>,
        interaction_id: Id<InteractionMarker>,
        token: String,
        private: bool,
    ) -> Deferred {
        // A deferred response's flags decide whether the answer that replaces it is private.
        let response = InteractionResponse {
            kind: InteractionResponseType::DeferredChannelMessageWithSource,
            data: private.then(|| InteractionResponseData {
                flags: Some(MessageFlags::EPHEMERAL),
                ..InteractionResponseData::default()
            }),
        };
        let interaction = self.http.interaction(application_id);
        let request = interaction.create_response(interaction_id, &token, &response);
        let acknowledged = self.spawn_send("interaction_callback", request);
        Deferred {
            replies: self.clone(),
            application_id,
            token,
            acknowledged,
        }
    }
}

/// An interaction acknowledged with "thinking…", whose answer follows as an edit.
pub struct Deferred {
    replies: Replies,
    application_id: Id<ApplicationMarker>,
    token: String,
    acknowledged: Option<tokio::task::JoinHandle<bool>>,
}

impl Deferred {
    /// Replaces the "thinking…" response with `content`, once the acknowledgement is in.
    pub fn finish(self, content: String) {
        tokio::spawn(async move {
            let Some(acknowledged) = self.acknowledged else {
                return;
            };
            if !acknowledged.await.unwrap_or(false) {
                // Without the acknowledgement there is no response to edit.
                return;
            }
            let no_pings = AllowedMentions::default();
            let interaction = self.replies.http.interaction(self.application_id);
            let request = interaction
                .update_response(&self.token)
                .content(Some(&content))
                .allowed_mentions(Some(&no_pings));
            self.replies.spawn_send("interaction_edit", request);
        });
    }
}

/// Logs a failure (the metrics were counted by [`Rest`]); whether it went through.
fn report(route: &'static str, outcome: Result<crate::rest::Reply, RestError>) -> bool {
    match outcome {
        Ok(_) => true,
        Err(err) => {
            tracing::debug!(route, error = %err, "reply not sent");
            false
        }
    }
}
