//! The dashboard's pages: each file holds the handlers of one page and the template they
//! render, with no business logic in templates.

mod account;
mod admin;
mod analytics;
mod audit;
mod automod;
mod charts;
mod guild;
mod guilds;
mod history;
pub(crate) mod layout;
mod login;
mod moderation;
mod premium;
mod privacy;
mod schedules;
mod settings;
mod ticket_settings;
mod tickets;
mod workflows;

pub(crate) use account::{account, logout_everywhere};
pub(crate) use admin::{
    announcements, cancel_announcement, create_announcement, create_promo, promos,
};
pub(crate) use analytics::{analytics, analytics_csv};
pub(crate) use audit::{audit, audit_csv, audit_json};
pub(crate) use automod::{
    RULES_BODY_LIMIT as AUTOMOD_RULES_BODY_LIMIT, TEST_BODY_LIMIT as AUTOMOD_TEST_BODY_LIMIT,
    automod, save_automod, test_automod,
};
pub(crate) use guild::overview;
pub(crate) use guilds::{guilds, home};
pub(crate) use history::{history, rollback};
pub(crate) use login::{callback, login, logout, start_login};
pub(crate) use moderation::{case, cases};
pub(crate) use premium::{assign_form, move_form, premium, redeem_form, remove_form};
pub(crate) use privacy::{
    correct_profile, delete_account, download_export, privacy, request_export, save_choices,
};
pub(crate) use schedules::{
    BODY_LIMIT as ANNOUNCEMENT_BODY_LIMIT, announcements as guild_announcements,
    delete_announcement, save_announcement, set_announcement_paused,
};
pub(crate) use settings::{save_settings, settings};
pub(crate) use ticket_settings::{save_ticket_settings, ticket_settings};
pub(crate) use tickets::{ticket, tickets, transcript_html, transcript_json};
pub(crate) use workflows::{
    BODY_LIMIT as WORKFLOWS_BODY_LIMIT, delete as delete_workflow, dry_run as dry_run_workflow,
    duplicate as duplicate_workflow, export_all as export_workflows, export_one as export_workflow,
    import as import_workflow, new_workflow, save_workflow, set_enabled as set_workflow_enabled,
    workflow, workflows,
};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::session::Authed;
use crate::{AppState, WebError};

/// The preamble of every state-changing request of a logged-in user: the form, parsed, and
/// its CSRF token checked.
pub(crate) fn user_form(
    authed: &Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Form, WebError> {
    let form = Form::parse(body)?;
    authed.check_csrf(form.csrf())?;
    Ok(form)
}

/// The preamble of every state-changing request on a guild: [`user_form`], the guild id of
/// the URL, and the user's right to manage that guild (asked of the bot each time).
pub(crate) async fn guild_form(
    state: &AppState,
    authed: &Authed,
    raw_guild: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Form, u64), WebError> {
    guild_form_with_long(state, authed, raw_guild, body, &[]).await
}

/// [`guild_form`] for a form with long text fields ([`Form::parse_with_long`]).
pub(crate) async fn guild_form_with_long(
    state: &AppState,
    authed: &Authed,
    raw_guild: &str,
    body: Result<Bytes, BytesRejection>,
    long: &[(&str, usize)],
) -> Result<(Form, u64), WebError> {
    let form = Form::parse_with_long(body, long)?;
    authed.check_csrf(form.csrf())?;
    let guild_id = guild_id(raw_guild)?;
    guild::authorize(state, authed, guild_id).await?;
    Ok((form, guild_id))
}

/// Form fields; a field given twice, an undecodable or oversized body is refused.
pub(crate) struct Form(Vec<(String, String)>);

/// Longest value of one form field: ids, a prefix, a locale, tokens.
const FIELD_MAX: usize = 200;
/// Most fields in one form (staff roles are one field each; the workflow editor has five
/// per action row).
const FIELDS_MAX: usize = 400;

impl Form {
    pub(crate) fn parse(body: Result<Bytes, BytesRejection>) -> Result<Self, WebError> {
        Self::parse_with_long(body, &[])
    }

    /// [`parse`](Self::parse) for a form with text fields longer than [`FIELD_MAX`]: each
    /// `(name, most characters)` in `long`.
    pub(crate) fn parse_with_long(
        body: Result<Bytes, BytesRejection>,
        long: &[(&str, usize)],
    ) -> Result<Self, WebError> {
        let body = body.map_err(|_| WebError::TooLarge)?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| WebError::BadForm("the form is not UTF-8".into()))?;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.len() > FIELDS_MAX {
            return Err(WebError::BadForm("the form has too many fields".into()));
        }
        let too_long = |(name, value): &&(String, String)| {
            let max = long
                .iter()
                .find(|(long, _)| long == name)
                .map_or(FIELD_MAX, |(_, max)| *max);
            value.chars().count() > max
        };
        if let Some((name, _)) = pairs.iter().find(too_long) {
            return Err(WebError::BadForm(format!("the field `{name}` is too long")));
        }
        Ok(Self(pairs))
    }

    /// The one value of a field that may appear once.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, WebError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(WebError::BadForm(format!(
                "the field `{name}` is given twice"
            )));
        }
        Ok(first)
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, WebError> {
        self.one(name)?
            .ok_or_else(|| WebError::BadForm(format!("the field `{name}` is missing")))
    }

    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field that is `true` or `false`.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, WebError> {
        match self.required(name)? {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(WebError::BadForm(format!("`{name}` is true or false"))),
        }
    }

    pub(crate) fn csrf(&self) -> Option<&str> {
        self.one("csrf").ok().flatten()
    }

    /// The form's idempotency key (one per rendered form, so a resubmission applies once); a
    /// key too short to be one of ours is ignored.
    pub(crate) fn idempotency_key(&self) -> Result<Option<String>, WebError> {
        Ok(self
            .one("idempotency_key")?
            .filter(|key| key.len() >= 16)
            .map(str::to_owned))
    }
}

/// An id in a URL path (a workflow's, a schedule's): anything but a number is nothing there.
pub(crate) fn id_in_path(raw: &str) -> Result<u64, WebError> {
    raw.parse().map_err(|_| WebError::NotFound)
}

/// The answer to a form that worked: 303, so the browser GETs `location`.
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A form's page shown again with the bot's refusal: 422, so a script tells it from a save.
pub(crate) fn refusal(page: Result<Response, WebError>) -> Result<Response, WebError> {
    let mut response = page?;
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

/// A guild id from a URL: anything but a number is no guild.
pub(crate) fn guild_id(raw: &str) -> Result<u64, WebError> {
    raw.parse().map_err(|_| WebError::GuildNotFound)
}

/// A member filter of a list (a user id, or a mention of one); empty means everyone.
pub(crate) fn member_filter(raw: Option<&str>) -> Result<Option<u64>, WebError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => raw
            .trim_start_matches("<@")
            .trim_end_matches('>')
            .parse::<u64>()
            .ok()
            .filter(|&id| id != 0)
            .map(Some)
            .ok_or_else(|| WebError::BadForm("a member is a user id".into())),
    }
}

pub(crate) fn number(form: &Form, name: &str) -> Result<u64, WebError> {
    form.required(name)?
        .parse()
        .map_err(|_| WebError::BadForm(format!("the field `{name}` is not a number")))
}
