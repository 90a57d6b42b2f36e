//! The privacy centre: export (prepared in the background, downloadable once), correction
//! (the profile refreshed from Discord), restriction/objection/consent choices, deletion with
//! confirmation, and the history of the user's requests. Every action is logged as a
//! data-subject request (`protonn_storage::privacy`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_storage::privacy::{self, PrivacyFlags, PrivacyRequest, RequestKind};
use protonn_storage::{Timestamp, WebSession};
use serde::Deserialize;

use super::layout::{self, Audience, Nav};
use super::login::revoke;
use super::user_form;
use crate::crypto::random_id;
use crate::session::{self, Authed, Sealed};
use crate::{AppState, WebError, metrics};

/// What the user types to confirm an erasure: a click alone is too easy.
const DELETE_CONFIRMATION: &str = "delete my data";

#[derive(Debug, Deserialize)]
pub(crate) struct PrivacyQuery {
    notice: Option<String>,
}

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "export" => "Your export is being prepared. Reload this page in a moment to download it.",
        "no_export" => {
            "No export is waiting: each is downloaded once and expires. Request a new one."
        }
        "corrected" => "Your profile was refreshed from Discord.",
        "choices" => "Your choices were saved.",
        _ => return None,
    })
}

fn kind_label(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Access => "Access",
        RequestKind::Export => "Export",
        RequestKind::Correction => "Correction",
        RequestKind::Deletion => "Deletion",
        RequestKind::Restriction => "Restriction",
        RequestKind::Objection => "Objection",
        RequestKind::ConsentWithdrawal => "Consent",
    }
}

pub(crate) async fn privacy(
    State(state): State<AppState>,
    authed: Authed,
    Query(q): Query<PrivacyQuery>,
) -> Result<Response, WebError> {
    let now = Timestamp::now();
    let user = authed.user_id;
    let requests = state.store.privacy_requests_of(user).await?;
    let flags = state.store.privacy_flags(user).await?;
    let export = state.store.export_status(user, now).await?;
    let export_pending = requests
        .iter()
        .any(|r| r.kind == RequestKind::Export && r.done_at.is_none());
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    let csrf = authed.csrf();
    let notice = q.notice.as_deref().and_then(notice_text);
    Ok(layout::user_page(layout::page(
        "Privacy",
        Some(nav),
        Audience::User,
        html! {
            h1 { "Privacy centre" }
            @if let Some(notice) = notice { p.notice role="status" id="notice" { (notice) } }
            p { "What we keep and why is in the privacy policy. Each request below is answered within 30 days; most at once." }
            section.card id="export" {
                h2 { "Your data" }
                @if let Some((prepared, until)) = export {
                    p id="export-ready" { "Your export (JSON) was prepared " (layout::time(prepared)) ". It can be downloaded once, until " (layout::time(until)) "." }
                    form method="post" action="/privacy/export/download" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" id="download-export" { "Download my data" }
                    }
                } @else if export_pending {
                    p id="export-pending" { "Your export is being prepared. Reload this page in a moment." }
                } @else {
                    p { "A copy of everything we hold about you, as a JSON file." }
                    form method="post" action="/privacy/export" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" id="request-export" { "Prepare my export" }
                    }
                }
            }
            section.card id="correction" {
                h2 { "Correction" }
                p { "Your name here comes from Discord: " strong id="profile-name" { (authed.sealed.username) } ". Changed it on Discord? Refresh it." }
                form method="post" action="/privacy/correct" {
                    input type="hidden" name="csrf" value=(csrf);
                    button.secondary type="submit" id="refresh-profile" { "Refresh my profile from Discord" }
                }
            }
            section.card id="choices" {
                h2 { "Your choices" }
                form method="post" action="/privacy/choices" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { input type="checkbox" name="restricted" value="1" id="restricted" checked[flags.restricted]; " Restrict processing: keep my data but do not use it in automations or statistics (moderation still applies)" }
                    label { input type="checkbox" name="objects" value="1" id="objects" checked[flags.objects]; " Object to statistics and announcements" }
                    label { input type="checkbox" name="announcements_consent" value="1" id="announcements-consent" checked[flags.announcements_consent]; " Send me announcements by direct message" }
                    label { input type="checkbox" name="email_consent" value="1" id="email-consent" checked[flags.email_consent]; " Send me optional email" }
                    p { button type="submit" id="save-choices" { "Save my choices" } }
                }
            }
            section.card id="deletion" {
                h2 { "Delete my data" }
                p { "Erases your account, sessions, the audit entries, tickets and messages that name you, your subscriptions and choices. You are logged out everywhere. This cannot be undone." }
                form method="post" action="/privacy/delete" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="confirm-delete" { "Type “" (DELETE_CONFIRMATION) "” to confirm" }
                    input type="text" id="confirm-delete" name="confirm" autocomplete="off" required;
                    p { button.danger type="submit" id="delete-account" { "Delete my data" } }
                }
            }
            section.card id="requests" {
                h2 { "Your requests" }
                @if requests.is_empty() { p.muted { "None yet." } }
                @else {
                    table {
                        thead { tr { th { "Request" } th { "Made" } th { "Due" } th { "Answered" } th { "Outcome" } } }
                        tbody {
                            @for r in &requests {
                                tr data-request=(r.kind.as_str()) {
                                    td { (kind_label(r.kind)) }
                                    td { (layout::time(r.requested_at)) }
                                    td { (layout::time(r.due_at)) }
                                    td { @match r.done_at { Some(at) => (layout::time(at)), None => "pending" } }
                                    td { (r.outcome) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )))
}

fn to_privacy(notice: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, format!("/privacy?notice={notice}"))],
    )
        .into_response()
}

fn request(authed: &Authed, kind: RequestKind, now: Timestamp) -> PrivacyRequest {
    PrivacyRequest::new(authed.user_id, random_id(), kind, "dashboard", now)
}

/// Records an export request and prepares it off the request: the page says it is being
/// prepared, and offers the download once it is. Where this process's store may not read
/// everything (a cluster node's credentials), the store's own process answers it instead.
pub(crate) async fn request_export(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    user_form(&authed, body)?;
    let now = Timestamp::now();
    let request = request(&authed, RequestKind::Export, now);
    state.store.put_privacy_request(&request).await?;
    let store = std::sync::Arc::clone(&state.store);
    let export_for = state.config.export_for;
    tokio::spawn(async move {
        let now = Timestamp::now();
        if let Err(err) = privacy::answer_request(store.as_ref(), &request, now, export_for).await {
            tracing::info!(error = %err, "export left to the store's own process");
        }
    });
    Ok(to_privacy("export"))
}

/// The prepared export, once: it is removed as it is sent.
pub(crate) async fn download_export(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    user_form(&authed, body)?;
    let Some(export) = state
        .store
        .take_export(authed.user_id, Timestamp::now())
        .await?
    else {
        return Ok(to_privacy("no_export"));
    };
    let mut response = export.json.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let disposition = format!(
        "attachment; filename=\"protonn-export-{}.json\"",
        authed.user_id
    );
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("ASCII"),
    );
    Ok(response)
}

/// Correction: the profile fields we show come from Discord; they are fetched again.
pub(crate) async fn correct_profile(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    user_form(&authed, body)?;
    let now = Timestamp::now();
    let user = state
        .discord
        .current_user(&authed.sealed.tokens.access_token)
        .await
        .map_err(|err| WebError::Discord(err.to_string()))?;
    let username = user.global_name.unwrap_or(user.username);
    let sealed = Sealed {
        tokens: authed.sealed.tokens.clone(),
        username: username.clone(),
    };
    let updated = WebSession {
        sealed_tokens: Some(session::seal(&state, authed.user_id, &sealed)),
        ..authed.session.clone()
    };
    state
        .sessions
        .replace_web_session(&authed.session, &updated)
        .await?;
    let done =
        request(&authed, RequestKind::Correction, now).done(now, "profile refreshed from Discord");
    state.store.put_privacy_request(&done).await?;
    Ok(to_privacy("corrected"))
}

/// Restriction, objection and consents: each change is applied at once and logged as the
/// request it is.
pub(crate) async fn save_choices(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let form = user_form(&authed, body)?;
    let checked = |name: &str| -> Result<bool, WebError> {
        match form.one(name)? {
            None => Ok(false),
            Some("1") => Ok(true),
            Some(_) => Err(WebError::BadForm(format!(
                "the field `{name}` is not a choice"
            ))),
        }
    };
    let wanted = PrivacyFlags {
        restricted: checked("restricted")?,
        objects: checked("objects")?,
        announcements_consent: checked("announcements_consent")?,
        email_consent: checked("email_consent")?,
    };
    privacy::change_choices(
        state.store.as_ref(),
        authed.user_id,
        wanted,
        "dashboard",
        Timestamp::now(),
        random_id,
    )
    .await?;
    Ok(to_privacy("choices"))
}

/// Erasure, after the typed confirmation: every session ends (Discord tokens revoked), the
/// data is erased now where this process's store may do it, else by the store's own
/// process within a minute; the browser is told to clear what it keeps, and the user what
/// happened.
pub(crate) async fn delete_account(
    State(state): State<AppState>,
    authed: Authed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let form = user_form(&authed, body)?;
    if form.required("confirm")?.trim() != DELETE_CONFIRMATION {
        return Err(WebError::BadForm(format!(
            "type “{DELETE_CONFIRMATION}” to confirm the deletion"
        )));
    }
    let now = Timestamp::now();
    let request = request(&authed, RequestKind::Deletion, now);
    state.store.put_privacy_request(&request).await?;
    for other in state.sessions.web_sessions_of(authed.user_id, now).await? {
        if let Some(sealed) = session::open(&state, &other) {
            revoke(&state, &sealed).await;
        }
    }
    state
        .sessions
        .delete_web_sessions_of(authed.user_id)
        .await?;
    metrics::login("logout");
    let erased_now =
        match privacy::answer_request(state.store.as_ref(), &request, now, state.config.export_for)
            .await
        {
            Ok(done) => done,
            Err(err) => {
                tracing::info!(error = %err, "erasure left to the store's own process");
                false
            }
        };
    let mut response = layout::public_page(layout::page(
        "Data deleted",
        None,
        Audience::Public,
        html! {
            h1 { "Your data is deleted" }
            @if erased_now {
                p id="deleted" { "Everything we held about you is erased, and you are logged out everywhere. Records the law makes us keep (billing) hold no more than required." }
            } @else {
                p id="deleted" { "You are logged out everywhere, and your erasure is recorded: it completes within a minute. Nothing more to do." }
            }
            p { a href="/login" { "Back to the start" } }
        },
    ));
    let (name, value) = session::clear_cookie(&state.config);
    let headers = response.headers_mut();
    headers.append(name, value);
    headers.insert(
        "clear-site-data",
        HeaderValue::from_static(crate::error::CLEAR_EVERYTHING),
    );
    Ok(response)
}
