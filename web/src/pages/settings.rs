//! Live settings: prefix, locale, log channel, announcement channel, staff roles. A save is a guild call with the
//! version the form showed, so a concurrent change is a clear conflict, not a lost update.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_actors::{
    GuildRequest, GuildResponse, GuildSummary, apply_config_key, show_config_key,
};
use protonn_storage::{GuildConfig, VersionedConfig};
use serde::Deserialize;

use super::guild::{authorize, config, summary, tabs, unexpected};
use super::layout::{self, Audience, Nav};
use super::{Form, guild_form, guild_id, number};
use crate::crypto::random_token;
use crate::session::Authed;
use crate::{AppState, WebError, metrics};

/// Discord's locales, as the bot accepts them.
const LOCALES: [&str; 32] = [
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl",
    "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th",
    "zh-CN", "ja", "zh-TW", "ko",
];
/// The bot's own limits, checked here too so a bad form never reaches the guild.
const PREFIX_MAX_CHARS: usize = 5;
const STAFF_ROLES_MAX: usize = 25;
/// Channel types a log or announcement channel may be: text and announcement.
const LOG_CHANNEL_KINDS: [u8; 2] = [0, 5];

/// `?saved=VERSION`, after a settings form was saved.
#[derive(Debug, Deserialize)]
pub(crate) struct SavedQuery {
    pub(super) saved: Option<u64>,
}

pub(crate) async fn settings(
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
    Ok(render(&authed, &summary, &current, notice, None).into_response())
}

fn render(
    authed: &Authed,
    summary: &GuildSummary,
    current: &VersionedConfig,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let config = &current.config;
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    layout::user_page(layout::page(
        "Settings",
        Some(nav),
        Audience::User,
        html! {
            (tabs(summary.guild_id, &summary.name, "Settings"))
            h1 { "Settings" }
            @if let Some(notice) = &notice { p.notice role="status" id="notice" { (notice) } }
            @if let Some(error) = &error { p.error role="alert" id="error" { (error) } }
            form.card method="post" action={ "/guilds/" (summary.guild_id) "/settings" } {
                input type="hidden" name="csrf" value=(authed.csrf());
                input type="hidden" name="expected_version" value=(current.version);
                input type="hidden" name="idempotency_key" value=(random_token());
                label for="prefix" { "Command prefix" }
                input type="text" id="prefix" name="prefix" value=(config.prefix) required maxlength="5" autocomplete="off";
                p.muted { "1 to 5 characters, no spaces, backticks or @." }
                label for="locale" { "Language of the bot's replies" }
                select id="locale" name="locale" {
                    @for locale in LOCALES {
                        option value=(locale) selected[locale == config.locale] { (locale) }
                    }
                }
                label for="log_channel" { "Log channel" }
                select id="log_channel" name="log_channel" {
                    option value="" selected[config.log_channel.is_none()] { "None" }
                    @for c in summary.channels.iter().filter(|c| LOG_CHANNEL_KINDS.contains(&c.kind)) {
                        option value=(c.id) selected[config.log_channel == Some(c.id)] { "#" (c.name) }
                    }
                }
                label for="announce_channel" { "Service announcements" }
                select id="announce_channel" name="announce_channel" {
                    option value="" selected[config.announce_channel.is_none()] { "Off" }
                    @for c in summary.channels.iter().filter(|c| LOG_CHANNEL_KINDS.contains(&c.kind)) {
                        option value=(c.id) selected[config.announce_channel == Some(c.id)] { "#" (c.name) }
                    }
                }
                p.muted { "The bot's operators post news about the service (outages, changes) in this channel, rarely. Off unless you choose a channel." }
                fieldset {
                    legend { "Moderation" }
                    label {
                        input type="checkbox" id="dm_members" name="dm_members" value="on" checked[config.moderation.dm_members];
                        " DM members what was done to them and why"
                    }
                    label for="escalation" { "Escalation ladder" }
                    input type="text" id="escalation" name="escalation" maxlength="200" autocomplete="off"
                        value=(show_config_key(config, "escalation").unwrap_or_default());
                    p.muted { "After a warning, e.g. " code { "3/7d timeout 1h, 4/7d kick, 5/30d ban" } " (warnings/window action), or " code { "none" } ". Moderation actions are logged in the log channel above." }
                }
                fieldset {
                    legend { "Staff roles (may use this dashboard and the config commands)" }
                    @for r in &summary.roles {
                        label {
                            input type="checkbox" name="staff_roles" value=(r.id) checked[config.staff_roles.contains(&r.id)];
                            " " (r.name)
                        }
                    }
                }
                p { button type="submit" id="save" { "Save" } " " span.muted { "Version " (current.version) } }
            }
        },
    ))
}

/// The config the form asks for, checked against the guild as the bot sees it.
fn parse(form: &Form, summary: &GuildSummary) -> Result<GuildConfig, WebError> {
    let prefix = form.required("prefix")?.to_owned();
    let chars = prefix.chars().count();
    if chars == 0 || chars > PREFIX_MAX_CHARS {
        return Err(WebError::BadForm(format!(
            "a prefix has 1 to {PREFIX_MAX_CHARS} characters"
        )));
    }
    if prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '`' || c == '@')
    {
        return Err(WebError::BadForm(
            "a prefix cannot contain spaces, backticks or @".into(),
        ));
    }
    let locale = form.required("locale")?;
    let locale = LOCALES
        .iter()
        .find(|l| **l == locale)
        .ok_or_else(|| WebError::BadForm(format!("unknown locale `{locale}`")))?;
    let log_channel = channel(form, summary, "log_channel", "the log channel")?;
    let announce_channel = channel(
        form,
        summary,
        "announce_channel",
        "the announcement channel",
    )?;
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
        if !staff_roles.contains(&id) {
            staff_roles.push(id);
        }
    }
    if staff_roles.len() > STAFF_ROLES_MAX {
        return Err(WebError::BadForm(format!(
            "at most {STAFF_ROLES_MAX} staff roles"
        )));
    }
    Ok(GuildConfig {
        prefix,
        locale: (*locale).to_owned(),
        log_channel,
        staff_roles,
        // Not on this form: `save_settings` keeps the current ones.
        moderation: Default::default(),
        automod: Default::default(),
        tickets: Default::default(),
        announce_channel,
    })
}

/// The text or announcement channel of this guild the form's `field` names, if any.
fn channel(
    form: &Form,
    summary: &GuildSummary,
    field: &str,
    what: &str,
) -> Result<Option<u64>, WebError> {
    let Some(raw) = form.one(field)?.filter(|raw| !raw.is_empty()) else {
        return Ok(None);
    };
    let id: u64 = raw
        .parse()
        .map_err(|_| WebError::BadForm(format!("{what} is not a channel id")))?;
    summary
        .channels
        .iter()
        .find(|c| c.id == id && LOG_CHANNEL_KINDS.contains(&c.kind))
        .ok_or_else(|| WebError::BadForm(format!("{what} is not a text channel of this server")))?;
    Ok(Some(id))
}

pub(crate) async fn save_settings(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let (form, guild_id) = guild_form(&state, &authed, &raw, body).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let expected_version = number(&form, "expected_version")?;
    let mut config = parse(&form, &summary)?;
    // The form edits what it shows; the moderation, automod and tickets settings stay as they
    // are (a change saved meanwhile makes the save a conflict, by `expected_version`).
    let current = super::guild::config(&state, &authed, guild_id)
        .await?
        .config;
    config.moderation = current.moderation;
    config.automod = current.automod;
    config.tickets = current.tickets;
    // The moderation fields, when the form has them (a form of an older page has not).
    if let Some(ladder) = form.one("escalation")? {
        config = apply_config_key(&config, "escalation", ladder).map_err(WebError::BadForm)?;
        config.moderation.dm_members = form.one("dm_members")?.is_some();
    }
    let key = form.idempotency_key()?;
    let answer = state
        .call(
            authed.user_id,
            guild_id,
            GuildRequest::ChangeConfig {
                config,
                expected_version,
            },
            key,
        )
        .await;
    match answer {
        Ok(GuildResponse::Config(saved)) => Ok((
            StatusCode::SEE_OTHER,
            [(
                LOCATION,
                format!("/guilds/{guild_id}/settings?saved={}", saved.version),
            )],
        )
            .into_response()),
        Ok(_) => Err(unexpected()),
        Err(WebError::Conflict { current }) => {
            metrics::rejected("conflict");
            let now = super::guild::config(&state, &authed, guild_id).await?;
            let message = format!(
                "Someone else saved these settings meanwhile (version {current} is current). Your change was not saved: the form now shows the current settings; apply your change again."
            );
            let mut response = render(&authed, &summary, &now, None, Some(message));
            *response.status_mut() = StatusCode::CONFLICT;
            Ok(response)
        }
        Err(err) => Err(err),
    }
}
