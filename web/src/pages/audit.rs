//! The guild's audit log: every admin action (config, moderation, and each feature's) with
//! who, when, to whom and the details (a config change's source, before and after), filtered
//! by action, member and dates, and exported as CSV or JSON.
//!
//! A filter reads the entries of its date range (at most [`READ_MAX`], the newest shown
//! first) and keeps those that match: a guild with more entries than that in its range is
//! told to narrow the dates, rather than the page loading without bound.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_storage::{AuditEntry, Timestamp};
use serde::Deserialize;

use super::guild::{authorize, summary, tabs};
use super::guild_id;
use super::layout::{self, Audience, Nav};
use crate::session::Authed;
use crate::{AppState, WebError};

/// Entries shown on the page, newest first.
const SHOWN: usize = 200;
/// Entries one filter reads at most (the export included).
const READ_MAX: usize = 50_000;
/// The retention: nothing older is kept.
const YEAR: Duration = Duration::from_secs(365 * 86_400);
const DAY: Duration = Duration::from_secs(86_400);
/// Longest action filter (actions are short machine names: `config.change`).
const ACTION_MAX: usize = 64;

/// The filters, as the form sends them (empty fields mean "any").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// The filters, checked.
#[derive(Debug, PartialEq, Eq)]
struct Filter {
    /// Actions starting with this (`moderation.` for every moderation action).
    action: String,
    /// The member who acted or was acted upon.
    user: Option<u64>,
    /// `[from, to)`.
    from: Timestamp,
    to: Timestamp,
}

impl AuditQuery {
    fn filter(&self, now: Timestamp) -> Result<Filter, WebError> {
        let bad = |message: String| WebError::BadForm(message);
        let action = self.action.trim();
        if action.len() > ACTION_MAX {
            return Err(bad(format!(
                "an action has at most {ACTION_MAX} characters"
            )));
        }
        let user = match self.user.trim() {
            "" => None,
            text => Some(
                text.parse::<u64>()
                    .map_err(|_| bad(format!("“{text}” is not a member id (a number)")))?,
            ),
        };
        let day = |field: &str, text: &str| -> Result<Option<Timestamp>, WebError> {
            match text.trim() {
                "" => Ok(None),
                text => Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z"))
                    .map(Some)
                    .ok_or_else(|| {
                        bad(format!("the {field} date must be YYYY-MM-DD, not “{text}”"))
                    }),
            }
        };
        let from = day("from", &self.from)?.unwrap_or(now.saturating_sub(YEAR));
        // The `to` day is included: entries until its end.
        let to = day("to", &self.to)?.map_or(now.saturating_add(Duration::from_secs(60)), |to| {
            to.saturating_add(DAY)
        });
        if from >= to {
            return Err(bad("the from date must come before the to date".to_owned()));
        }
        Ok(Filter {
            action: action.to_owned(),
            user,
            from,
            to,
        })
    }

    /// The same filters in a URL's query, for the export links.
    fn query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("action", self.action.trim())
            .append_pair("user", self.user.trim())
            .append_pair("from", self.from.trim())
            .append_pair("to", self.to.trim())
            .finish()
    }
}

impl Filter {
    fn matches(&self, entry: &AuditEntry) -> bool {
        entry.action.starts_with(&self.action)
            && self
                .user
                .is_none_or(|user| entry.actor_id == user || entry.target_id == Some(user))
    }
}

/// The matching entries, newest first, and whether the range held more than could be read.
async fn entries(
    state: &AppState,
    guild_id: u64,
    filter: &Filter,
) -> Result<(Vec<AuditEntry>, bool), WebError> {
    let read = state
        .audit
        .list_audit(guild_id, filter.from, filter.to, READ_MAX + 1)
        .await?;
    let capped = read.len() > READ_MAX;
    let mut matching: Vec<AuditEntry> = read
        .into_iter()
        .take(READ_MAX)
        .filter(|entry| filter.matches(entry))
        .collect();
    matching.reverse();
    Ok((matching, capped))
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    let filter = query.filter(Timestamp::now())?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let (entries, capped) = entries(&state, guild_id, &filter).await?;
    let exports = format!("/guilds/{guild_id}/audit");
    let query_string = query.query_string();
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
            form.card method="get" action={ "/guilds/" (guild_id) "/audit" } {
                label for="action" { "Action starts with" }
                input type="text" id="action" name="action" value=(query.action) placeholder="moderation." maxlength=(ACTION_MAX);
                label for="user" { "Member id (who acted or was acted upon)" }
                input type="text" id="user" name="user" value=(query.user) inputmode="numeric";
                label for="from" { "From" }
                input type="date" id="from" name="from" value=(query.from);
                label for="to" { "To" }
                input type="date" id="to" name="to" value=(query.to);
                p { button #filter type="submit" { "Filter" } }
            }
            p {
                (entries.len()) @if entries.len() == 1 { " entry. " } @else { " entries. " }
                a #csv href={ (exports) ".csv?" (query_string) } download { "Download CSV" } " · "
                a #json href={ (exports) ".json?" (query_string) } download { "Download JSON" }
            }
            @if capped {
                p.error { "More than " (READ_MAX) " entries in these dates: only the oldest "
                    (READ_MAX) " were searched. Narrow the dates to see the rest." }
            }
            @if entries.is_empty() { p.muted { "Nothing recorded for these filters." } }
            @else {
                @if entries.len() > SHOWN {
                    p.muted { "The newest " (SHOWN) " are shown; the downloads have every one." }
                }
                table {
                    thead { tr { th { "When" } th { "Who" } th { "What" } th { "To whom" } th { "Details" } } }
                    tbody {
                        @for e in entries.iter().take(SHOWN) {
                            tr {
                                td { (layout::time(e.at)) }
                                td { (e.actor_id) }
                                td { (e.action) }
                                td { @if let Some(target) = e.target_id { (target) } }
                                td { code { (e.details) } }
                            }
                        }
                    }
                }
            }
        },
    )))
}

/// The filtered entries as CSV, newest first.
pub(crate) async fn audit_csv(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let (guild_id, entries) = exported(&state, &authed, &raw, &query).await?;
    let mut csv = String::from("at_utc,id,actor_id,action,target_id,details\n");
    for e in &entries {
        let target = e.target_id.map(|t| t.to_string()).unwrap_or_default();
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            layout::iso_time(e.at),
            e.id,
            e.actor_id,
            csv_field(&e.action),
            target,
            csv_field(&e.details)
        ));
    }
    Ok(download(guild_id, "csv", "text/csv; charset=utf-8", csv))
}

/// The filtered entries as a JSON array, newest first.
pub(crate) async fn audit_json(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let (guild_id, entries) = exported(&state, &authed, &raw, &query).await?;
    let json = serde_json::to_string_pretty(&entries).map_err(|err| {
        WebError::BadForm(format!("the entries cannot be written as JSON: {err}"))
    })?;
    Ok(download(
        guild_id,
        "json",
        "application/json; charset=utf-8",
        json,
    ))
}

async fn exported(
    state: &AppState,
    authed: &Authed,
    raw: &str,
    query: &AuditQuery,
) -> Result<(u64, Vec<AuditEntry>), WebError> {
    let guild_id = guild_id(raw)?;
    let filter = query.filter(Timestamp::now())?;
    authorize(state, authed, guild_id).await?;
    Ok((guild_id, entries(state, guild_id, &filter).await?.0))
}

fn download(guild_id: u64, extension: &str, content_type: &'static str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"audit-{guild_id}.{extension}\"");
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(action: &str, user: &str, from: &str, to: &str) -> AuditQuery {
        AuditQuery {
            action: action.into(),
            user: user.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    fn entry(action: &str, actor_id: u64, target_id: Option<u64>) -> AuditEntry {
        AuditEntry {
            guild_id: 1,
            at: Timestamp(0),
            id: 1,
            actor_id,
            target_id,
            action: action.into(),
            details: String::new(),
        }
    }

    #[test]
    fn filters_match_an_action_prefix_and_either_party() {
        let now = Timestamp::from_days(20_000);
        let filter = query("moderation.", "7", "", "").filter(now).unwrap();
        assert!(filter.matches(&entry("moderation.ban", 7, Some(8))));
        assert!(filter.matches(&entry("moderation.ban", 8, Some(7))));
        assert!(!filter.matches(&entry("moderation.ban", 8, Some(9))));
        assert!(!filter.matches(&entry("config.change", 7, None)));
        assert_eq!(filter.from, now.saturating_sub(YEAR));
        let dated = query("", "", "2024-10-01", "2024-10-01")
            .filter(now)
            .unwrap();
        let day = Timestamp::parse_rfc3339("2024-10-01T00:00:00Z").unwrap();
        assert_eq!((dated.from, dated.to), (day, day.saturating_add(DAY)));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let now = Timestamp::from_days(20_000);
        let err = |q: AuditQuery| q.filter(now).unwrap_err().to_string();
        assert!(err(query("", "abc", "", "")).contains("not a member id"));
        assert!(err(query("", "", "01/10/2024", "")).contains("YYYY-MM-DD"));
        assert!(err(query("", "", "2024-10-02", "2024-10-01")).contains("before"));
        assert!(err(query(&"x".repeat(65), "", "", "")).contains("at most 64"));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(
            csv_field(r#"{"a":1,"b":"c"}"#),
            r#""{""a"":1,""b"":""c""}""#
        );
    }
}
