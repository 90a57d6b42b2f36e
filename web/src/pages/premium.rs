//! The premium page: the user's slots (from subscriptions and promo codes, whatever the
//! source), assigning them to servers they manage, moving and freeing them, redeeming a
//! promo code, and the link to Paddle's hosted checkout. Every change is audited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use maud::html;
use protonn_actors::{GuildRequest, GuildResponse};
use protonn_storage::{
    AssignRefused, AuditEntry, Plan, StorageError, Store, Timestamp, assign_slot, entitlements_of,
    refresh_slots,
};

use super::layout::{self, Audience, Nav};
use super::{number, user_form};
use crate::discord::{DiscordError, UserGuild};
use crate::session::Authed;
use crate::{AppState, WebError};

/// Audit entries about a user's account rather than a guild (promo redemptions) are kept
/// under this guild id, which no Discord guild has.
pub(crate) const ACCOUNT_AUDIT_GUILD: u64 = 0;

fn store(state: &AppState) -> Result<&Arc<dyn Store>, WebError> {
    state.premium.as_ref().ok_or(WebError::NotFound)
}

/// The servers the user may manage, as the bot's cache says now.
async fn managed_guilds(state: &AppState, authed: &Authed) -> Result<Vec<UserGuild>, WebError> {
    let listed = match state
        .discord
        .guilds(&authed.sealed.tokens.access_token)
        .await
    {
        Ok(guilds) => guilds,
        Err(DiscordError::Revoked) => return Err(WebError::DiscordRevoked),
        Err(err) => return Err(WebError::Discord(err.to_string())),
    };
    let checks = listed.into_iter().map(|guild| async move {
        let user_id = authed.user_id;
        let asked = state
            .call(
                user_id,
                guild.id,
                GuildRequest::MemberPermissions { user_id },
                None,
            )
            .await;
        matches!(asked, Ok(GuildResponse::Permissions(access)) if access.can_manage)
            .then_some(guild)
    });
    Ok(join_all(checks).await.into_iter().flatten().collect())
}

pub(crate) async fn premium(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, WebError> {
    let store = store(&state)?;
    let now = Timestamp::now();
    let slots = refresh_slots(store.as_ref(), authed.user_id, now).await?;
    let entitlements = entitlements_of(store.as_ref(), authed.user_id, now).await?;
    let managed = managed_guilds(&state, &authed).await?;
    let name = |guild_id: u64| {
        managed
            .iter()
            .find(|g| g.id == guild_id)
            .map_or_else(|| format!("server {guild_id}"), |g| g.name.clone())
    };
    let free = entitlements.len().saturating_sub(slots.len());
    let assignable: Vec<&UserGuild> = managed
        .iter()
        .filter(|g| !slots.iter().any(|s| s.guild_id == g.id))
        .collect();
    let checkout = state.config.paddle.as_ref().and_then(|p| {
        p.checkout_url.as_ref().map(|url| {
            let custom = format!(r#"{{"user_id":"{}"}}"#, authed.user_id);
            let custom: String = form_urlencoded::byte_serialize(custom.as_bytes()).collect();
            format!("{url}?custom_data={custom}")
        })
    });
    let limits = Plan::Premium.limits();
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Premium",
        Some(nav),
        Audience::User,
        html! {
            h1 { "Premium" }
            section.card {
                h2 { "Your slots" }
                p id="slot-count" data-total=(entitlements.len()) data-free=(free) {
                    "You have " (entitlements.len()) " premium slot(s), " (free) " free."
                }
                @if slots.is_empty() {
                    p.muted { "No server has one of your slots." }
                } @else {
                    table {
                        thead { tr { th { "Server" } th { "Until" } th { "Move to" } th {} } }
                        tbody {
                            @for slot in &slots {
                                tr data-slot-guild=(slot.guild_id) {
                                    td { (name(slot.guild_id)) }
                                    td { (layout::time(slot.until)) }
                                    td {
                                        @if !assignable.is_empty() {
                                            form method="post" action="/premium/move" {
                                                input type="hidden" name="csrf" value=(authed.csrf());
                                                input type="hidden" name="from" value=(slot.guild_id);
                                                select name="to" aria-label="Move to" {
                                                    @for g in &assignable { option value=(g.id) { (g.name) } }
                                                }
                                                button.secondary type="submit" { "Move" }
                                            }
                                        }
                                    }
                                    td {
                                        form method="post" action="/premium/remove" {
                                            input type="hidden" name="csrf" value=(authed.csrf());
                                            input type="hidden" name="guild" value=(slot.guild_id);
                                            button.secondary type="submit" { "Free this slot" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if free > 0 && !assignable.is_empty() {
                    form method="post" action="/premium/assign" id="assign-form" {
                        input type="hidden" name="csrf" value=(authed.csrf());
                        label for="assign-guild" { "Give a slot to" }
                        select id="assign-guild" name="guild" {
                            @for g in &assignable { option value=(g.id) { (g.name) } }
                        }
                        button type="submit" id="assign" { "Assign" }
                    }
                }
            }
            section.card {
                h2 { "Redeem a code" }
                form method="post" action="/premium/redeem" id="redeem-form" {
                    input type="hidden" name="csrf" value=(authed.csrf());
                    label for="code" { "Promo code" }
                    input id="code" name="code" required maxlength="64" autocomplete="off";
                    button type="submit" id="redeem" { "Redeem" }
                }
            }
            @if let Some(link) = checkout {
                section.card {
                    h2 { "Subscribe" }
                    p { "Payment is handled by Paddle; we never see your card." }
                    a href=(link) rel="noopener" id="checkout" { "Subscribe with Paddle" }
                }
            }
            section.card {
                h2 { "What premium gives a server" }
                ul {
                    li { (limits.automod_rules) " automod rules" }
                    li { (limits.workflows) " workflows of up to " (limits.workflow_steps) " steps, keeping " (limits.workflow_variables) " variables" }
                    li { (limits.ticket_categories) " ticket categories" }
                    li { (limits.analytics_history_days) " days of analytics" }
                    li { (limits.announcement_schedules) " announcement schedules" }
                }
            }
        },
    )))
}

fn back() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/premium")]).into_response()
}

/// A unique-enough audit entry id (entries are keyed by guild, millisecond and id).
fn audit_id() -> u64 {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    u64::from_be_bytes(bytes)
}

async fn audit(
    state: &AppState,
    guild_id: u64,
    actor_id: u64,
    action: &str,
    details: String,
) -> Result<(), WebError> {
    state
        .audit
        .append_audit(&[AuditEntry {
            guild_id,
            at: Timestamp::now(),
            id: audit_id(),
            actor_id,
            target_id: None,
            action: action.to_owned(),
            details,
        }])
        .await?;
    Ok(())
}

/// The guild, if the user may manage it now (the same check as every guild page).
async fn managed(state: &AppState, authed: &Authed, guild_id: u64) -> Result<(), WebError> {
    super::guild::authorize(state, authed, guild_id).await?;
    Ok(())
}

async fn assign(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
    now: Timestamp,
) -> Result<(), WebError> {
    managed(state, authed, guild_id).await?;
    let store = store(state)?;
    match assign_slot(store.as_ref(), authed.user_id, guild_id, now).await? {
        Ok(slot) => {
            audit(
                state,
                guild_id,
                authed.user_id,
                "premium.assign",
                format!(
                    r#"{{"plan":"{}","until":{}}}"#,
                    slot.plan.name(),
                    slot.until.0
                ),
            )
            .await
        }
        Err(AssignRefused::NoFreeSlot) => Err(WebError::BadForm(
            "you have no free premium slot: free one, subscribe or redeem a code".into(),
        )),
        Err(AssignRefused::GuildTaken) => Err(WebError::BadForm(
            "this server already has premium from someone else".into(),
        )),
    }
}

async fn remove(state: &AppState, authed: &Authed, guild_id: u64) -> Result<(), WebError> {
    // Freeing one's own slot needs no permission on the guild: a user who lost Manage
    // Server must still be able to take their slot back.
    if store(state)?.remove_slot(authed.user_id, guild_id).await? {
        audit(
            state,
            guild_id,
            authed.user_id,
            "premium.remove",
            "{}".into(),
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn assign_form(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let form = user_form(&authed, body)?;
    let guild_id = number(&form, "guild")?;
    assign(&state, &authed, guild_id, Timestamp::now()).await?;
    Ok(back())
}

pub(crate) async fn remove_form(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let form = user_form(&authed, body)?;
    remove(&state, &authed, number(&form, "guild")?).await?;
    Ok(back())
}

/// Moving is freeing then assigning; if the assignment fails the slot goes back.
pub(crate) async fn move_form(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let form = user_form(&authed, body)?;
    let (from, to) = (number(&form, "from")?, number(&form, "to")?);
    managed(&state, &authed, to).await?;
    let store = store(&state)?;
    let before = store.slots_of_user(authed.user_id).await?;
    let Some(old) = before.iter().find(|s| s.guild_id == from).cloned() else {
        return Err(WebError::BadForm(
            "no slot of yours is on that server".into(),
        ));
    };
    remove(&state, &authed, from).await?;
    if let Err(err) = assign(&state, &authed, to, Timestamp::now()).await {
        store.put_slot(&old).await?;
        return Err(err);
    }
    Ok(back())
}

pub(crate) async fn redeem_form(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let form = user_form(&authed, body)?;
    let code = form.required("code")?.trim().to_owned();
    let store = store(&state)?;
    let now = Timestamp::now();
    if let Some((promo, _)) = store.promo(&code).await?
        && promo.new_users_only
        && (!store
            .subscriptions_of_user(authed.user_id)
            .await?
            .is_empty()
            || !store.redemptions_of_user(authed.user_id).await?.is_empty())
    {
        return Err(WebError::BadForm(
            "this code is for new subscribers only".into(),
        ));
    }
    match store.redeem_promo(&code, authed.user_id, now).await {
        Ok(_) => {}
        Err(StorageError::PromoRejected { reason, .. }) => {
            return Err(WebError::BadForm(format!(
                "this code cannot be used: {reason}"
            )));
        }
        Err(err) => return Err(err.into()),
    }
    audit(
        &state,
        ACCOUNT_AUDIT_GUILD,
        authed.user_id,
        "promo.redeem",
        serde_json::json!({ "code": code }).to_string(),
    )
    .await?;
    Ok(back())
}
