//! The guild picker: the user's servers from Discord, split by what the bot's cache says
//! they may manage.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use maud::html;
use protonn_actors::{GuildRequest, GuildResponse};

use super::layout::{self, Audience, Nav};
use crate::discord::{DiscordError, UserGuild};
use crate::session::{self, Authed};
use crate::{AppState, WebError};

/// Discord's Administrator and Manage Server bits: who may add the bot to a server.
const ADMINISTRATOR: u64 = 1 << 3;
const MANAGE_GUILD: u64 = 1 << 5;

pub(crate) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let logged_in = session::read_cookie(&headers, session::cookie_name(&state.config)).is_some();
    let to = if logged_in { "/guilds" } else { "/login" };
    (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
}

enum Entry {
    Manage(UserGuild),
    Invite(UserGuild, String),
    Unavailable(UserGuild, String),
}

pub(crate) async fn guilds(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, WebError> {
    let listed = match state
        .discord
        .guilds(&authed.sealed.tokens.access_token)
        .await
    {
        Ok(guilds) => guilds,
        Err(DiscordError::Revoked) => {
            state
                .sessions
                .delete_web_session(&authed.session.id)
                .await?;
            return Err(WebError::DiscordRevoked);
        }
        Err(err) => return Err(WebError::Discord(err.to_string())),
    };
    let checks = listed.into_iter().map(|guild| {
        let state = state.clone();
        let user_id = authed.user_id;
        async move {
            let asked = state
                .call(
                    user_id,
                    guild.id,
                    GuildRequest::MemberPermissions { user_id },
                    None,
                )
                .await;
            let may_invite = guild.owner || guild.permissions & (ADMINISTRATOR | MANAGE_GUILD) != 0;
            match asked {
                Ok(GuildResponse::Permissions(access)) if access.can_manage => {
                    Some(Entry::Manage(guild))
                }
                Ok(_) | Err(WebError::Forbidden) => None,
                Err(WebError::BotNotInGuild | WebError::GuildNotFound) if may_invite => {
                    let link = state.discord.invite_url(&state.config, guild.id);
                    Some(Entry::Invite(guild, link))
                }
                Err(WebError::BotNotInGuild | WebError::GuildNotFound) => None,
                Err(err) => Some(Entry::Unavailable(guild, err.to_string())),
            }
        }
    });
    let entries: Vec<Entry> = join_all(checks).await.into_iter().flatten().collect();
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Your servers",
        Some(nav),
        Audience::User,
        html! {
            h1 { "Your servers" }
            h2 { "Servers you manage" }
            ul.grid {
                @for entry in &entries {
                    @if let Entry::Manage(g) = entry {
                        li.card { a href={ "/guilds/" (g.id) } data-guild-id=(g.id) { (g.name) } }
                    }
                }
            }
            @if !entries.iter().any(|e| matches!(e, Entry::Manage(_))) {
                p.muted { "No server where you may configure the bot yet." }
            }
            h2 { "Add the bot" }
            ul.grid {
                @for entry in &entries {
                    @if let Entry::Invite(g, link) = entry {
                        li.card { (g.name) br; a href=(link) rel="noopener" { "Add the bot to " (g.name) } }
                    }
                }
            }
            @for entry in &entries {
                @if let Entry::Unavailable(g, why) = entry {
                    p.error { (g.name) ": " (why) }
                }
            }
        },
    )))
}
