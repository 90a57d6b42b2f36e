//! The operators' admin page (`[web] operator_ids`): service announcement campaigns, each
//! with its progress (sent, in flight, skipped and failed by reason), a form to start one
//! and a button to cancel one. The same store calls as `protonn announce`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_storage::{
    CAMPAIGN_MESSAGE_MAX_CHARS, CAMPAIGN_TITLE_MAX_CHARS, CampaignProgress, StorageError, Store,
    Timestamp, start_campaign, stop_campaign,
};

use super::layout::{self, Audience, Nav};
use super::{number, user_form};
use crate::session::Authed;
use crate::{AppState, WebError};

/// The store, for an operator; anyone else is refused.
fn operator_store<'a>(
    state: &'a AppState,
    authed: &Authed,
) -> Result<&'a Arc<dyn Store>, WebError> {
    if !state.config.operator_ids.contains(&authed.user_id) {
        return Err(WebError::Forbidden);
    }
    state.premium.as_ref().ok_or(WebError::NotFound)
}

pub(crate) async fn announcements(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, WebError> {
    let store = operator_store(&state, &authed)?;
    let mut campaigns = Vec::new();
    for campaign in store.campaigns().await? {
        let progress = CampaignProgress::of(&store.deliveries(campaign.id, None).await?);
        campaigns.push((campaign, progress));
    }
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Announcements",
        Some(nav),
        Audience::User,
        html! {
            h1 { "Service announcements" }
            p.muted { "Sent once to every server that chose an announcement channel, by the node that runs it, below every reply." }
            form.card method="post" action="/admin/announcements" {
                input type="hidden" name="csrf" value=(authed.csrf());
                label for="title" { "Title (optional)" }
                input type="text" id="title" name="title" maxlength=(CAMPAIGN_TITLE_MAX_CHARS) autocomplete="off";
                label for="message" { "Message" }
                textarea id="message" name="message" required maxlength=(CAMPAIGN_MESSAGE_MAX_CHARS) rows="6" {}
                p { button type="submit" id="start" { "Start campaign" } }
            }
            @if campaigns.is_empty() {
                p id="no-campaigns" { "No campaigns yet." }
            } @else {
                table id="campaigns" {
                    thead { tr { th { "Campaign" } th { "Title" } th { "State" } th { "Progress" } th {} } }
                    tbody {
                        @for (campaign, progress) in &campaigns {
                            tr id={ "campaign-" (campaign.id) } {
                                td { (campaign.id) }
                                td { (campaign.title.as_deref().unwrap_or("—")) }
                                td { @if campaign.cancelled_at.is_some() { "cancelled" } @else { "active" } }
                                td.progress { (progress.summary()) }
                                td {
                                    @if campaign.cancelled_at.is_none() {
                                        form method="post" action="/admin/announcements/cancel" {
                                            input type="hidden" name="csrf" value=(authed.csrf());
                                            input type="hidden" name="id" value=(campaign.id);
                                            button type="submit" { "Cancel" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )))
}

pub(crate) async fn create_announcement(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let store = operator_store(&state, &authed)?;
    let form = user_form(&authed, body)?;
    let message = form.required("message")?;
    let title = form.one("title")?;
    match start_campaign(
        store.as_ref(),
        message,
        title,
        Timestamp::now(),
        authed.user_id,
    )
    .await
    {
        Ok(_) => Ok(back()),
        Err(StorageError::Invalid(reason)) => Err(WebError::BadForm(reason)),
        Err(StorageError::Conflict { .. }) => Err(WebError::BadForm(
            "a campaign was started in the same millisecond; try again".into(),
        )),
        Err(err) => Err(err.into()),
    }
}

pub(crate) async fn cancel_announcement(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let store = operator_store(&state, &authed)?;
    let form = user_form(&authed, body)?;
    let id = number(&form, "id")?;
    match stop_campaign(store.as_ref(), id, Timestamp::now(), authed.user_id).await {
        Ok(_) => Ok(back()),
        Err(StorageError::NotFound(_)) => Err(WebError::BadForm(format!("no campaign {id}"))),
        Err(err) => Err(err.into()),
    }
}

fn back() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/admin/announcements")]).into_response()
}
