//! The guild's ticket settings: staff roles, the panel's categories, threads or channels
//! (and the Discord category of ticket channels), the open-ticket limit per member and the
//! idle period. Saved like every config change (a `ChangeConfig` guild
//! call with the version the form showed: checked by the bot, audited, live at once).

use super::settings::SavedQuery;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_actors::{GuildRequest, GuildResponse, GuildSummary};
use protonn_storage::{Plan, TicketPlace, TicketsConfig, Timestamp, VersionedConfig, guild_plan};

use super::guild::{authorize, config, summary, tabs, unexpected};
use super::layout::{self, Audience, Nav};
use super::{Form, guild_form_with_long, guild_id, number};
use crate::crypto::random_token;
use crate::session::Authed;
use crate::{AppState, WebError};

/// The categories field, one name per line: 25 names of 100 characters fit well within.
const CATEGORIES_MAX_CHARS: usize = 4_000;
/// Discord's channel type of a category.
const CATEGORY_CHANNEL: u8 = 4;

pub(crate) async fn ticket_settings(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(q): Query<SavedQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let current = config(&state, &authed, guild_id).await?;
    let notice = q
        .saved
        .map(|v| format!("Saved as version {v}. The bot uses it from now on."));
    let plan = guild_plan(state.store.as_ref(), guild_id, Timestamp::now()).await?;
    Ok(render(
        &authed, &summary, &current, plan, None, notice, None,
    ))
}

/// The form, showing `draft` (what was typed, after a refusal) or the current settings.
fn render(
    authed: &Authed,
    summary: &GuildSummary,
    current: &VersionedConfig,
    plan: Plan,
    draft: Option<&TicketsConfig>,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let guild_id = summary.guild_id;
    let shown = draft.unwrap_or(&current.config.tickets);
    let off = current.config.tickets.over_plan(plan);
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    layout::user_page(layout::page(
        "Ticket settings",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Tickets"))
            h1 { "Ticket settings" }
            p { a href={ "/guilds/" (guild_id) "/tickets" } { "Back to the tickets" } }
            @if let Some(notice) = &notice { p.notice role="status" id="notice" { (notice) } }
            @if let Some(error) = &error { p.error role="alert" id="error" { (error) } }
            @if !off.is_empty() {
                p.error role="alert" id="over-plan" {
                    "The " (plan.name()) " plan offers " (plan.limits().ticket_categories)
                    " ticket categories; these are kept but not on the panel until the server has premium again or you remove others: "
                    @for (n, name) in off.iter().enumerate() { @if n > 0 { ", " } strong { (name) } } "."
                }
            }
            form.card method="post" action={ "/guilds/" (guild_id) "/tickets/settings" } {
                input type="hidden" name="csrf" value=(authed.csrf());
                input type="hidden" name="expected_version" value=(current.version);
                input type="hidden" name="idempotency_key" value=(random_token());
                fieldset {
                    legend { "Ticket staff roles (besides the server's staff roles)" }
                    @for r in &summary.roles {
                        label {
                            input type="checkbox" name="staff_roles" value=(r.id) checked[shown.staff_roles.contains(&r.id)];
                            " " (r.name)
                        }
                    }
                }
                label for="categories" { "Categories on the panel (one per line; none: no choice)" }
                textarea id="categories" name="categories" rows="5" maxlength=(CATEGORIES_MAX_CHARS) {
                    (shown.categories.join("\n"))
                }
                p.muted { "Your plan sets how many categories a panel may offer." }
                fieldset {
                    legend { "Open each ticket as" }
                    label {
                        input type="radio" id="place-thread" name="place" value="thread" checked[shown.place == TicketPlace::Thread];
                        " a private thread of the panel's channel"
                    }
                    label {
                        input type="radio" id="place-channel" name="place" value="channel" checked[shown.place == TicketPlace::Channel];
                        " a private channel (only the member, the ticket and server staff roles and the bot see it)"
                    }
                }
                label for="channel_category" { "Category of ticket channels" }
                select id="channel_category" name="channel_category" {
                    option value="" { "(none: outside any category)" }
                    @for c in summary.channels.iter().filter(|c| c.kind == CATEGORY_CHANNEL) {
                        option value=(c.id) selected[shown.channel_category == Some(c.id)] { (c.name) }
                    }
                }
                p.muted {
                    "For ticket channels the bot needs Manage Channels and Manage Roles. A closed ticket's channel is kept, locked; delete it once you no longer need it (a server has at most 500 channels)."
                }
                label for="max_open" { "Open tickets a member may have at once" }
                input type="number" id="max_open" name="max_open" min="1" max="10" required value=(shown.max_open_per_member);
                label for="idle_hours" { "Close a ticket after this many hours without a message (empty: the bot's default)" }
                input type="number" id="idle_hours" name="idle_hours" min="1" value=[shown.idle_close_hours];
                p { button type="submit" id="save" { "Save" } " " span.muted { "Version " (current.version) } }
            }
        },
    ))
}

/// The settings the form asks for (roles of the guild as the bot sees it); the bot checks
/// their limits when they are saved.
fn parse(form: &Form, summary: &GuildSummary) -> Result<TicketsConfig, WebError> {
    let mut staff_roles = Vec::new();
    for raw in form.all("staff_roles") {
        let id: u64 = raw
            .parse()
            .map_err(|_| WebError::BadForm("a staff role is not a role id".into()))?;
        if !summary.roles.iter().any(|r| r.id == id) {
            return Err(WebError::BadForm(
                "a staff role is not a role of this server".into(),
            ));
        }
        staff_roles.push(id);
    }
    let categories = form
        .one("categories")?
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let max_open_per_member = form
        .required("max_open")?
        .trim()
        .parse()
        .map_err(|_| WebError::BadForm("the open-ticket limit is a whole number".into()))?;
    let idle_close_hours =
        match form.one("idle_hours")?.map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse().map_err(|_| {
                WebError::BadForm("the idle period is a whole number of hours".into())
            })?),
        };
    let place = match form.one("place")? {
        None | Some("thread") => TicketPlace::Thread,
        Some("channel") => TicketPlace::Channel,
        Some(_) => {
            return Err(WebError::BadForm(
                "tickets open as threads or channels".into(),
            ));
        }
    };
    let channel_category = match form.one("channel_category")?.map(str::trim) {
        None | Some("") => None,
        Some(raw) => {
            let id = raw.parse::<u64>().ok().filter(|&id| {
                summary
                    .channels
                    .iter()
                    .any(|c| c.id == id && c.kind == CATEGORY_CHANNEL)
            });
            Some(id.ok_or_else(|| {
                WebError::BadForm(
                    "the ticket channels' category is not a category of this server".into(),
                )
            })?)
        }
    };
    Ok(TicketsConfig {
        staff_roles,
        categories,
        max_open_per_member,
        idle_close_hours,
        place,
        channel_category,
    })
}

pub(crate) async fn save_ticket_settings(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let long = [("categories", CATEGORIES_MAX_CHARS)];
    let (form, guild_id) = guild_form_with_long(&state, &authed, &raw, body, &long).await?;
    let expected_version = number(&form, "expected_version")?;
    let summary = summary(&state, &authed, guild_id).await?;
    let tickets = parse(&form, &summary)?;
    let mut next = config(&state, &authed, guild_id).await?.config;
    next.tickets = tickets.clone();
    let request = GuildRequest::ChangeConfig {
        config: next,
        expected_version,
    };
    let refused = match state
        .call(authed.user_id, guild_id, request, form.idempotency_key()?)
        .await
    {
        Ok(GuildResponse::Config(saved)) => {
            return Ok((
                StatusCode::SEE_OTHER,
                [(
                    LOCATION,
                    format!(
                        "/guilds/{guild_id}/tickets/settings?saved={}",
                        saved.version
                    ),
                )],
            )
                .into_response());
        }
        Ok(_) => return Err(unexpected()),
        Err(WebError::BadForm(message)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{message} Nothing was saved."),
        ),
        Err(WebError::Conflict { current }) => (
            StatusCode::CONFLICT,
            format!(
                "Someone else saved the configuration meanwhile (version {current} is current); nothing was saved."
            ),
        ),
        Err(err) => return Err(err),
    };
    let current = config(&state, &authed, guild_id).await?;
    let plan = guild_plan(state.store.as_ref(), guild_id, Timestamp::now()).await?;
    let mut response = render(
        &authed,
        &summary,
        &current,
        plan,
        Some(&tickets),
        None,
        Some(refused.1),
    );
    *response.status_mut() = refused.0;
    Ok(response)
}
