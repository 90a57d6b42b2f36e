//! The operators' admin pages (`[web] operator_ids`): service announcement campaigns, each
//! with its progress (sent, in flight, skipped and failed by reason), a form to start one
//! and a button to cancel one (the same store calls as `protonn announce`); promo codes with
//! their redemptions and a form to create one (the same rules as `protonn promo create`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_storage::{
    CAMPAIGN_MESSAGE_MAX_CHARS, CAMPAIGN_TITLE_MAX_CHARS, CampaignProgress, NewPromo, StorageError,
    Store, Timestamp, create_promo_code, start_campaign, stop_campaign,
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
        let dms = match campaign.dm {
            true => Some(CampaignProgress::of_dms(
                &store.dm_deliveries(campaign.id, None).await?,
            )),
            false => None,
        };
        campaigns.push((campaign, progress, dms));
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
            p.muted { "Sent once to every server that chose an announcement channel, by the node that runs it, below every reply; by DM too, if you choose, to every user who consented to announcement DMs (checked again just before each DM)." }
            form.card method="post" action="/admin/announcements" {
                input type="hidden" name="csrf" value=(authed.csrf());
                label for="title" { "Title (optional)" }
                input type="text" id="title" name="title" maxlength=(CAMPAIGN_TITLE_MAX_CHARS) autocomplete="off";
                label for="message" { "Message" }
                textarea id="message" name="message" required maxlength=(CAMPAIGN_MESSAGE_MAX_CHARS) rows="6" {}
                label { input type="checkbox" name="dm" value="1" id="dm"; " Also by DM to users who consented" }
                p { button type="submit" id="start" { "Start campaign" } }
            }
            @if campaigns.is_empty() {
                p id="no-campaigns" { "No campaigns yet." }
            } @else {
                table id="campaigns" {
                    thead { tr { th { "Campaign" } th { "Title" } th { "State" } th { "Progress" } th { "DMs" } th {} } }
                    tbody {
                        @for (campaign, progress, dms) in &campaigns {
                            tr id={ "campaign-" (campaign.id) } {
                                td { (campaign.id) }
                                td { (campaign.title.as_deref().unwrap_or("—")) }
                                td { @if campaign.cancelled_at.is_some() { "cancelled" } @else { "active" } }
                                td.progress { (progress.summary()) }
                                td.dms {
                                    @match dms {
                                        Some(dms) => (dms.summary()),
                                        None => "not by DM",
                                    }
                                }
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
    let dm = form.one("dm")?.is_some();
    match start_campaign(
        store.as_ref(),
        message,
        title,
        dm,
        Timestamp::now(),
        authed.user_id,
    )
    .await
    {
        Ok(_) => Ok(back(ANNOUNCEMENTS)),
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
        Ok(_) => Ok(back(ANNOUNCEMENTS)),
        Err(StorageError::NotFound(_)) => Err(WebError::BadForm(format!("no campaign {id}"))),
        Err(err) => Err(err.into()),
    }
}

const ANNOUNCEMENTS: &str = "/admin/announcements";
const PROMOS: &str = "/admin/promos";
/// Codes the page lists at most.
const PROMOS_SHOWN: usize = 500;

fn back(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
}

pub(crate) async fn promos(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, WebError> {
    let store = operator_store(&state, &authed)?;
    let codes = store.promos(PROMOS_SHOWN).await?;
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Promo codes",
        Some(nav),
        Audience::User,
        html! {
            h1 { "Promo codes" }
            p.muted { "Each redemption gives the user premium slots for some days; each user redeems a code once, never past its limit." }
            form.card method="post" action=(PROMOS) {
                input type="hidden" name="csrf" value=(authed.csrf());
                label for="code" { "Code" }
                input type="text" id="code" name="code" required minlength="3" maxlength="64" pattern="[A-Za-z0-9_-]+" autocomplete="off";
                label for="days" { "Premium days per redemption" }
                input type="number" id="days" name="days" required min="1" max="3650" value="30";
                label for="slots" { "Slots per redemption" }
                input type="number" id="slots" name="slots" required min="1" max="100" value="1";
                label for="limit" { "Redemptions in total" }
                input type="number" id="limit" name="limit" required min="1" value="100";
                label for="valid_days" { "Redeemable for (days)" }
                input type="number" id="valid_days" name="valid_days" required min="1" max="3650" value="30";
                label { input type="checkbox" name="new_users_only" value="1" id="new-users-only"; " New users only" }
                p { button type="submit" id="create-promo" { "Create code" } }
            }
            @if codes.is_empty() {
                p id="no-promos" { "No promo codes yet." }
            } @else {
                table id="promos" {
                    thead { tr { th { "Code" } th { "Grants" } th { "Redeemed" } th { "Until" } th { "Who" } } }
                    tbody {
                        @for (promo, redeemed) in &codes {
                            tr id={ "promo-" (promo.code) } {
                                td { code { (promo.code) } }
                                td { (promo.slots) " slot(s) × " (promo.premium_days) " days" }
                                td.redeemed { (redeemed) " of " (promo.max_redemptions) }
                                td { (layout::time(promo.expires_at)) }
                                td { @if promo.new_users_only { "new users" } @else { "anyone" } }
                            }
                        }
                    }
                }
            }
        },
    )))
}

pub(crate) async fn create_promo(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let store = operator_store(&state, &authed)?;
    let form = user_form(&authed, body)?;
    let small = |name: &str| {
        u32::try_from(number(&form, name)?)
            .map_err(|_| WebError::BadForm(format!("the field `{name}` is too large")))
    };
    let new = NewPromo {
        code: form.required("code")?.to_owned(),
        days: small("days")?,
        slots: small("slots")?,
        limit: small("limit")?,
        valid_for: std::time::Duration::from_secs(u64::from(small("valid_days")?) * 86_400),
        new_users_only: form.one("new_users_only")?.is_some(),
    };
    match create_promo_code(store.as_ref(), &new, authed.user_id, Timestamp::now()).await {
        Ok(_) => Ok(back(PROMOS)),
        Err(StorageError::Invalid(reason)) => Err(WebError::BadForm(reason)),
        Err(err) => Err(err.into()),
    }
}
