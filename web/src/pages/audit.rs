//! The guild's audit log: every config change with who, when, where from, before and after.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use protonn_storage::Timestamp;

use super::guild::{authorize, summary, tabs};
use super::guild_id;
use super::layout::{self, Audience, Nav};
use crate::session::Authed;
use crate::{AppState, WebError};

/// Entries shown: the newest of the retained year.
const SHOWN: usize = 200;
const YEAR: Duration = Duration::from_secs(365 * 86_400);

pub(crate) async fn audit(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let now = Timestamp::now();
    let mut entries = state
        .audit
        .list_audit(
            guild_id,
            now.saturating_sub(YEAR),
            now.saturating_add(Duration::from_secs(60)),
            usize::MAX,
        )
        .await?;
    entries.reverse();
    entries.truncate(SHOWN);
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Audit log",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Audit log"))
            h1 { "Audit log" }
            @if entries.is_empty() { p.muted { "Nothing recorded yet." } }
            @else {
                table {
                    thead { tr { th { "When" } th { "Who" } th { "What" } th { "Details" } } }
                    tbody {
                        @for e in &entries {
                            tr { td { (layout::time(e.at)) } td { (e.actor_id) } td { (e.action) } td { code { (e.details) } } }
                        }
                    }
                }
            }
        },
    )))
}
