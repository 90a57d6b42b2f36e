//! Discord REST out: every reply the bot sends goes through here.

use std::future::IntoFuture;
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;

use metrics::{counter, histogram};
use twilight_http::error::ErrorType;
use twilight_model::channel::message::{AllowedMentions, MessageFlags};
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};
use twilight_model::id::Id;
use twilight_model::id::marker::{ApplicationMarker, ChannelMarker, InteractionMarker};

use crate::metrics::{REST_PERMIT_WAIT, REST_REQUESTS};

/// Values of the `route` label of `protonn_rest_requests_total`.
pub(crate) const REST_ROUTE_LABELS: [&str; 3] =
    ["create_message", "interaction_callback", "interaction_edit"];
/// Values of the `outcome` label of `protonn_rest_requests_total`.
pub(crate) const REST_OUTCOME_LABELS: [&str; 5] = [
    "ok",
    "rate_limited",
    "client_error",
    "server_error",
    "transport_error",
];

/// Permits for REST requests under Discord's global limit (50 per second per bot, whatever
/// the process): in a cluster every node holds a share. Interaction responses are exempt
/// and do not ask.
pub trait GlobalRateLimit: Send + Sync + 'static {
    /// Takes a place in line now (so that requests go out in the order they were asked
    /// for); the future resolves when that request may be sent.
    fn permit(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// Sends replies without making the caller wait: each request runs on its own task, so a
/// slow REST round trip never holds up the guild actor that asked for it.
#[derive(Clone)]
pub struct Replies {
    http: Arc<twilight_http::Client>,
    global: Arc<dyn GlobalRateLimit>,
}

impl Replies {
    /// `http` should be built with the bot token (its `Debug` redacts it) and, against the
    /// simulator, with the simulator as proxy. Messages wait for a `global` permit.
    pub fn new(http: Arc<twilight_http::Client>, global: Arc<dyn GlobalRateLimit>) -> Self {
        Self { http, global }
    }

    /// Posts `content` to a channel. Replies never ping anyone: they may echo user input.
    pub fn message(&self, channel_id: Id<ChannelMarker>, content: String) {
        let http = Arc::clone(&self.http);
        let permit = self.global.permit();
        tokio::spawn(async move {
            let asked = std::time::Instant::now();
            permit.await;
            histogram!(REST_PERMIT_WAIT).record(asked.elapsed().as_secs_f64());
            let no_pings = AllowedMentions::default();
            let request = http
                .create_message(channel_id)
                .content(&content)
                .allowed_mentions(Some(&no_pings));
            record("create_message", request.into_future().await.map(drop));
        });
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
        let http = Arc::clone(&self.http);
        tokio::spawn(async move {
            let response = InteractionResponse {
                kind: InteractionResponseType::ChannelMessageWithSource,
                data: Some(InteractionResponseData {
                    content: Some(content),
                    allowed_mentions: Some(AllowedMentions::default()),
                    flags: private.then_some(MessageFlags::EPHEMERAL),
                    ..InteractionResponseData::default()
                }),
            };
            let result = http
                .interaction(application_id)
                .create_response(interaction_id, &token, &response)
                .into_future()
                .await;
            record("interaction_callback", result.map(drop));
        });
    }
}

/// An interaction acknowledged with "thinking…", whose answer follows as an edit.
pub struct Deferred {
    http: Arc<twilight_http::Client>,
    application_id: Id<ApplicationMarker>,
    token: String,
    acknowledged: tokio::task::JoinHandle<bool>,
}

impl Replies {
    /// Acknowledges an interaction now (Discord's 3 s deadline), to be answered later with
    /// [`Deferred::finish`] (within the token's 15 minutes).
    pub fn defer(
        &self,
        application_id: Id<ApplicationMarker>,
        interaction_id: Id<InteractionMarker>,
        token: String,
    ) -> Deferred {
        let http = Arc::clone(&self.http);
        let ack_token = token.clone();
        let acknowledged = tokio::spawn(async move {
            let response = InteractionResponse {
                kind: InteractionResponseType::DeferredChannelMessageWithSource,
                data: None,
            };
            let result = http
                .interaction(application_id)
                .create_response(interaction_id, &ack_token, &response)
                .into_future()
                .await;
            let ok = result.is_ok();
            record("interaction_callback", result.map(drop));
            ok
        });
        Deferred {
            http: Arc::clone(&self.http),
            application_id,
            token,
            acknowledged,
        }
    }
}

impl Deferred {
    /// Replaces the "thinking…" response with `content`, once the acknowledgement is in.
    pub fn finish(self, content: String) {
        tokio::spawn(async move {
            if !self.acknowledged.await.unwrap_or(false) {
                // Without the acknowledgement there is no response to edit.
                return;
            }
            let no_pings = AllowedMentions::default();
            let result = self
                .http
                .interaction(self.application_id)
                .update_response(&self.token)
                .content(Some(&content))
                .allowed_mentions(Some(&no_pings))
                .into_future()
                .await;
            record("interaction_edit", result.map(drop));
        });
    }
}

fn record(route: &'static str, result: Result<(), twilight_http::Error>) {
    let outcome = match &result {
        Ok(()) => "ok",
        Err(err) => match err.kind() {
            ErrorType::Response { status, .. } if status.get() == 429 => "rate_limited",
            ErrorType::Response { status, .. } if status.is_server_error() => "server_error",
            ErrorType::Response { .. } | ErrorType::Unauthorized => "client_error",
            _ => "transport_error",
        },
    };
    if let Err(err) = &result {
        tracing::warn!(route, outcome, error = %err, "discord request failed");
    }
    counter!(REST_REQUESTS, "route" => route, "outcome" => outcome).increment(1);
}
