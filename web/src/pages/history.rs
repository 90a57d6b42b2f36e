//! Config history with the diff of each version, and rollback to one of them.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use protonn_actors::{GuildRequest, GuildResponse};
use protonn_storage::GuildConfig;
use serde::Deserialize;

use super::guild::{authorize, summary, tabs, unexpected};
use super::layout::{self, Audience, Nav};
use super::{guild_form, guild_id, number};
use crate::crypto::random_token;
use crate::session::Authed;
use crate::{AppState, WebError};

#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    rolled_back: Option<u64>,
}

fn fields(config: &GuildConfig) -> [(&'static str, String); 5] {
    let roles = if config.staff_roles.is_empty() {
        "none".to_owned()
    } else {
        config
            .staff_roles
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    [
        ("Prefix", config.prefix.clone()),
        ("Locale", config.locale.clone()),
        (
            "Log channel",
            config
                .log_channel
                .map_or("none".to_owned(), |c| c.to_string()),
        ),
        ("Staff roles", roles),
        (
            "Announcement channel",
            config
                .announce_channel
                .map_or("off".to_owned(), |c| c.to_string()),
        ),
    ]
}

/// What changed from `before` to `after`, field by field.
fn diff(before: Option<&GuildConfig>, after: &GuildConfig) -> Markup {
    let after_fields = fields(after);
    let before_fields = before.map(fields);
    html! {
        ul {
            @for (i, (name, value)) in after_fields.iter().enumerate() {
                @match &before_fields {
                    Some(old) if old[i].1 != *value => {
                        li { (name) ": " del { (old[i].1) } " → " ins { (value) } }
                    }
                    Some(_) => {}
                    None => { li { (name) ": " (value) } }
                }
            }
        }
    }
}

pub(crate) async fn history(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let versions = match state
        .call(authed.user_id, guild_id, GuildRequest::ConfigHistory, None)
        .await?
    {
        GuildResponse::History { versions } => versions,
        _ => return Err(unexpected()),
    };
    let newest = versions.first().map_or(0, |v| v.version);
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "History",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "History"))
            h1 { "Settings history" }
            @if let Some(v) = q.rolled_back {
                p.notice role="status" id="notice" { "Rolled back: the settings of that version are live again, as version " (v) "." }
            }
            @if versions.is_empty() { p.muted { "The settings were never changed." } }
            @for (i, v) in versions.iter().enumerate() {
                section.card data-version=(v.version) {
                    h2 { "Version " (v.version) @if v.version == newest { " (current)" } }
                    (diff(versions.get(i + 1).map(|older| &older.config), &v.config))
                    @if v.version != newest {
                        form method="post" action={ "/guilds/" (guild_id) "/history/rollback" } {
                            input type="hidden" name="csrf" value=(authed.csrf());
                            input type="hidden" name="to_version" value=(v.version);
                            input type="hidden" name="expected_version" value=(newest);
                            input type="hidden" name="idempotency_key" value=(random_token());
                            button.secondary type="submit" data-rollback=(v.version) { "Roll back to version " (v.version) }
                        }
                    }
                }
            }
        },
    )))
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (form, guild_id) = guild_form(&state, &authed, &raw, body).await?;
    let to_version = number(&form, "to_version")?;
    let expected_version = number(&form, "expected_version")?;
    let key = form.idempotency_key()?;
    match state
        .call(
            authed.user_id,
            guild_id,
            GuildRequest::RollbackConfig {
                to_version,
                expected_version,
            },
            key,
        )
        .await?
    {
        GuildResponse::Config(now) => Ok((
            StatusCode::SEE_OTHER,
            [(
                LOCATION,
                format!("/guilds/{guild_id}/history?rolled_back={}", now.version),
            )],
        )
            .into_response()),
        _ => Err(unexpected()),
    }
}
