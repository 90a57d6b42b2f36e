//! Moderation in the dashboard: the case list (newest first, by member, page by page) and
//! a case's page. Read through guild calls, as every guild page.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use protonn_actors::{GuildRequest, GuildResponse};
use protonn_storage::Case;
use serde::Deserialize;

use super::guild::{authorize, summary, tabs, unexpected};
use super::layout::{self, Audience, Nav};
use super::{guild_id, member_filter};
use crate::session::Authed;
use crate::{AppState, WebError};

/// Cases on one page.
const PAGE: u32 = 50;

#[derive(Debug, Deserialize)]
pub(crate) struct CasesQuery {
    /// Only the cases about this member (an id).
    member: Option<String>,
    /// Only cases numbered below this one (the next page).
    before: Option<u64>,
}

pub(crate) async fn cases(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(q): Query<CasesQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let member = member_filter(q.member.as_deref())?;
    let request = GuildRequest::Cases {
        target_id: member,
        before: q.before,
        limit: PAGE,
    };
    let cases = match state.call(authed.user_id, guild_id, request, None).await? {
        GuildResponse::Cases { cases } => cases,
        _ => return Err(unexpected()),
    };
    let older = (cases.len() == PAGE as usize && member.is_none())
        .then(|| cases.last().map(|c| c.number))
        .flatten();
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Cases",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Cases"))
            h1 { "Moderation cases" }
            form.card method="get" action={ "/guilds/" (guild_id) "/cases" } {
                label for="member" { "About a member (user id)" }
                input type="text" id="member" name="member" value=[member] inputmode="numeric" autocomplete="off";
                p { button type="submit" id="filter" { "Filter" } " " a href={ "/guilds/" (guild_id) "/cases" } { "All cases" } }
            }
            @if cases.is_empty() { p.muted id="no-cases" { "No cases." } }
            @else {
                table id="cases" {
                    thead { tr { th { "Case" } th { "When" } th { "Action" } th { "Member" } th { "Moderator" } th { "Reason" } } }
                    tbody {
                        @for c in &cases {
                            tr {
                                td { a href={ "/guilds/" (guild_id) "/cases/" (c.number) } { "#" (c.number) } }
                                td { (layout::time(c.at)) }
                                td { (c.action) }
                                td { (subject(c)) }
                                td { (c.moderator_id) }
                                td { (c.reason) }
                            }
                        }
                    }
                }
            }
            @if let Some(before) = older {
                p { a id="older" href={ "/guilds/" (guild_id) "/cases?before=" (before) } { "Older cases" } }
            }
        },
    )))
}

pub(crate) async fn case(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, number)): Path<(String, u64)>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let request = GuildRequest::Cases {
        target_id: None,
        before: Some(number.saturating_add(1)),
        limit: 1,
    };
    let case = match state.call(authed.user_id, guild_id, request, None).await? {
        GuildResponse::Cases { cases } => cases.into_iter().find(|c| c.number == number),
        _ => return Err(unexpected()),
    };
    let Some(case) = case else {
        return Err(WebError::BadForm(format!("there is no case #{number}")));
    };
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Case",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Cases"))
            h1 { "Case #" (case.number) }
            dl.card id="case" {
                dt { "Action" } dd { (case.action) }
                dt { "Member or channel" } dd { (subject(&case)) }
                dt { "Moderator" } dd { (case.moderator_id) }
                dt { "When" } dd { (layout::time(case.at)) }
                @if let Some(ms) = case.duration_ms { dt { "Duration" } dd { (ms / 1_000) " s" } }
                dt { "Reason" } dd { @if case.reason.is_empty() { "No reason given" } @else { (case.reason) } }
            }
            @if let Some(target) = case.target_id {
                p { a href={ "/guilds/" (guild_id) "/cases?member=" (target) } { "Every case about this member" } }
            }
        },
    )))
}

fn subject(case: &Case) -> Markup {
    html! {
        @match (case.target_id, case.channel_id) {
            (Some(user), _) => { "member " (user) }
            (None, Some(channel)) => { "channel " (channel) }
            (None, None) => { "—" }
        }
    }
}
