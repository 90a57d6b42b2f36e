//! The account page: profile, sessions with "log out everywhere", theme.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use maud::html;
use protonn_storage::Timestamp;

use super::layout::{self, Audience, Nav};
use super::login::{logged_out, revoke};
use super::user_form;
use crate::session::{self, Authed};
use crate::{AppState, WebError, metrics};

pub(crate) async fn account(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, WebError> {
    let sessions = state
        .sessions
        .web_sessions_of(authed.user_id, Timestamp::now())
        .await?;
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Account",
        Some(nav),
        Audience::User,
        html! {
            h1 { "Your account" }
            section.card {
                h2 { "Profile" }
                p { "Discord user " strong { (authed.sealed.username) } " (id " (authed.user_id) ")" }
            }
            section.card {
                h2 { "Sessions" }
                table {
                    thead { tr { th { "Browser" } th { "Logged in" } th { "Last used" } th { "Ends" } } }
                    tbody {
                        @for s in &sessions {
                            tr {
                                td { (s.label) @if s.id == authed.session.id { " " strong { "(this one)" } } }
                                td { (layout::time(s.created_at)) }
                                td { (layout::time(s.last_seen)) }
                                td { (layout::time(s.expires_at)) }
                            }
                        }
                    }
                }
                form method="post" action="/account/logout-everywhere" data-logout {
                    input type="hidden" name="csrf" value=(authed.csrf());
                    button.secondary type="submit" id="logout-everywhere" { "Log out everywhere" }
                }
            }
            section.card {
                h2 { "Appearance" }
                label for="theme" { "Theme" }
                select id="theme" name="theme" {
                    option value="system" { "Same as the system" }
                    option value="light" { "Light" }
                    option value="dark" { "Dark" }
                }
                p.muted { "Kept in this browser only." }
            }
        },
    )))
}

/// Ends every session of the user, revoking each one's Discord tokens.
pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    user_form(&authed, body)?;
    for other in state
        .sessions
        .web_sessions_of(authed.user_id, Timestamp::now())
        .await?
    {
        if let Some(sealed) = session::open(&state, &other) {
            revoke(&state, &sealed).await;
        }
    }
    state
        .sessions
        .delete_web_sessions_of(authed.user_id)
        .await?;
    metrics::login("logout");
    Ok(logged_out(&state))
}
