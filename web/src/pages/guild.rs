//! The guild overview, and the authorization every guild page goes through.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use protonn_actors::{GuildRequest, GuildResponse, GuildSummary, MemberAccess};
use protonn_storage::VersionedConfig;

use super::guild_id;
use super::layout::{self, Audience, Nav};
use crate::session::Authed;
use crate::{AppState, WebError};

/// The user's access to the guild, asked of the bot's cache on every request: losing
/// Manage Server (or the staff role) in Discord closes the pages at the next click.
pub(crate) async fn authorize(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
) -> Result<MemberAccess, WebError> {
    let user_id = authed.user_id;
    match state
        .call(
            user_id,
            guild_id,
            GuildRequest::MemberPermissions { user_id },
            None,
        )
        .await?
    {
        GuildResponse::Permissions(access) if access.can_manage => Ok(access),
        GuildResponse::Permissions(_) => Err(WebError::Forbidden),
        _ => Err(unexpected()),
    }
}

pub(crate) fn unexpected() -> WebError {
    WebError::GuildCall(protonn_actors::GuildCallError::Unavailable {
        message: "unexpected answer".into(),
    })
}

pub(crate) async fn summary(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
) -> Result<GuildSummary, WebError> {
    match state
        .call(authed.user_id, guild_id, GuildRequest::Summary, None)
        .await?
    {
        GuildResponse::Summary(summary) => Ok(summary),
        _ => Err(unexpected()),
    }
}

pub(crate) async fn config(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
) -> Result<VersionedConfig, WebError> {
    match state
        .call(authed.user_id, guild_id, GuildRequest::ReadConfig, None)
        .await?
    {
        GuildResponse::Config(config) => Ok(config),
        _ => Err(unexpected()),
    }
}

/// The guild's tabs, shared by its pages.
pub(crate) fn tabs(guild_id: u64, name: &str, current: &str) -> Markup {
    let tabs = [
        ("", "Overview"),
        ("/settings", "Settings"),
        ("/history", "History"),
        ("/audit", "Audit log"),
        ("/analytics", "Analytics"),
        ("/cases", "Cases"),
        ("/tickets", "Tickets"),
        ("/automod", "Automod"),
        ("/workflows", "Workflows"),
        ("/announcements", "Announcements"),
    ];
    html! {
        p.muted { a href="/guilds" { "Servers" } " › " (name) }
        nav aria-label="Server" {
            @for (path, label) in tabs {
                @if label == current {
                    strong aria-current="page" { (label) } " "
                } @else {
                    a href={ "/guilds/" (guild_id) (path) } { (label) } " "
                }
            }
        }
    }
}

pub(crate) async fn overview(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    let access = authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let config = config(&state, &authed, guild_id).await?;
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        &summary.name,
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Overview"))
            h1 { (summary.name) }
            section.card {
                p { "Members: " (summary.member_count.map_or("unknown".to_owned(), |n| n.to_string())) }
                p { "Prefix: " code id="current-prefix" { (config.config.prefix) } " · Locale: " (config.config.locale) " · Settings version " (config.version) }
                p.muted { "Served by shard " (summary.shard_id) " on node " (summary.node) ". "
                    @if access.is_owner { "You own this server." } @else if access.is_staff { "You are staff here." } @else { "You may manage this server." } }
            }
            section.card {
                h2 { "Channels (" (summary.channels.len()) ")" }
                ul { @for c in &summary.channels { li { "#" (c.name) } } }
            }
            section.card {
                h2 { "Roles (" (summary.roles.len()) ")" }
                ul { @for r in &summary.roles { li { (r.name) " " span.muted { (format!("#{:06x}", r.color)) } } } }
            }
        },
    )))
}
