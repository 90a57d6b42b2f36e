//! Support tickets in the dashboard: the guild's tickets (open or closed, by member, page by
//! page), a ticket's page with its transcript, and the transcript as HTML or JSON. Stored
//! tickets are read from the store (written by the guild actors); the downloads are streamed,
//! one page of transcript lines at a time, so a huge ticket is never held whole.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use maud::{DOCTYPE, Markup, html};
use protonn_actors::show_duration;
use protonn_storage::{StorageError, Ticket, TicketQuery, TranscriptMessage};
use serde::Deserialize;

use super::guild::{authorize, summary, tabs};
use super::layout::{self, Audience, Nav};
use super::{guild_id, member_filter};
use crate::session::Authed;
use crate::{AppState, WebError};

/// Tickets on one page of the list.
const PAGE: usize = 50;
/// Transcript lines on one page of a ticket.
const LINES_SHOWN: usize = 200;
/// Transcript lines read from the store per chunk of a download.
const LINES_PER_CHUNK: usize = 500;
/// The guild's figures are the medians of its newest tickets, this many.
const STATS_SAMPLE: usize = 200;
/// Open tickets counted at most ("1000 or more").
const OPEN_COUNTED: usize = 1_000;

/// A guild's ticket figures.
#[derive(Debug, PartialEq)]
struct Stats {
    /// Open tickets, up to [`OPEN_COUNTED`].
    open: usize,
    /// Closed tickets among the newest [`STATS_SAMPLE`]: what the medians are of.
    closed: usize,
    first_response: Option<Duration>,
    resolution: Option<Duration>,
}

impl Stats {
    fn of(open: usize, newest: &[Ticket]) -> Self {
        let closed: Vec<&Ticket> = newest.iter().filter(|t| !t.is_open()).collect();
        let median = |mut spans: Vec<Duration>| {
            spans.sort_unstable();
            spans.get(spans.len() / 2).copied()
        };
        Self {
            open,
            closed: closed.len(),
            first_response: median(
                closed
                    .iter()
                    .filter_map(|t| Some(t.opened_at.until(t.first_response_at?)))
                    .collect(),
            ),
            resolution: median(
                closed
                    .iter()
                    .filter_map(|t| Some(t.opened_at.until(t.closed_at?)))
                    .collect(),
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TicketsQuery {
    /// `open`, `closed`, or `all` (the default).
    status: Option<String>,
    /// Only the tickets this member opened (an id).
    member: Option<String>,
    /// Only tickets numbered below this one (the next page).
    before: Option<u64>,
}

/// Which tickets a status names.
fn status_filter(status: Option<&str>) -> Result<Option<bool>, WebError> {
    match status.map(str::trim) {
        None | Some("" | "all") => Ok(None),
        Some("open") => Ok(Some(true)),
        Some("closed") => Ok(Some(false)),
        Some(other) => Err(WebError::BadForm(format!(
            "the status is open, closed or all, not “{other}”"
        ))),
    }
}

pub(crate) async fn tickets(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(q): Query<TicketsQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    let open = status_filter(q.status.as_deref())?;
    let member = member_filter(q.member.as_deref())?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let query = TicketQuery {
        open,
        opener_id: member,
        before: q.before,
        limit: PAGE,
    };
    let tickets = state.store.list_tickets(guild_id, &query).await?;
    let open_now = TicketQuery {
        open: Some(true),
        limit: OPEN_COUNTED,
        ..TicketQuery::default()
    };
    let newest = TicketQuery {
        limit: STATS_SAMPLE,
        ..TicketQuery::default()
    };
    let stats = Stats::of(
        state.store.list_tickets(guild_id, &open_now).await?.len(),
        &state.store.list_tickets(guild_id, &newest).await?,
    );
    let median = |span: Option<Duration>| span.map_or("—".to_owned(), show_duration);
    let status = match open {
        None => "all",
        Some(true) => "open",
        Some(false) => "closed",
    };
    let older = (tickets.len() == PAGE)
        .then(|| tickets.last().map(|t| t.ticket_id))
        .flatten()
        .map(|before| {
            let mut next = form_urlencoded::Serializer::new(String::new());
            next.append_pair("status", status);
            if let Some(member) = member {
                next.append_pair("member", &member.to_string());
            }
            next.append_pair("before", &before.to_string());
            next.finish()
        });
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        "Tickets",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Tickets"))
            h1 { "Support tickets" }
            p { a id="ticket-settings" href={ "/guilds/" (guild_id) "/tickets/settings" } { "Ticket settings" } }
            dl.card id="ticket-stats" {
                dt { "Open now" } dd id="open-now" { (stats.open) @if stats.open == OPEN_COUNTED { " or more" } }
                dt { "Median first response" } dd id="first-response" { (median(stats.first_response)) }
                dt { "Median resolution" } dd id="resolution" { (median(stats.resolution)) }
                dd.muted { "Of the " (stats.closed) " closed among the newest " (STATS_SAMPLE) " tickets. The first response is the first message by someone other than the member (or a claim)." }
            }
            form.card method="get" action={ "/guilds/" (guild_id) "/tickets" } {
                label for="status" { "Status" }
                select id="status" name="status" {
                    @for (value, label) in [("all", "All"), ("open", "Open"), ("closed", "Closed")] {
                        option value=(value) selected[value == status] { (label) }
                    }
                }
                label for="member" { "Opened by (user id)" }
                input type="text" id="member" name="member" value=[member] inputmode="numeric" autocomplete="off";
                p { button type="submit" id="filter" { "Filter" } " " a href={ "/guilds/" (guild_id) "/tickets" } { "All tickets" } }
            }
            @if tickets.is_empty() { p.muted id="no-tickets" { "No tickets." } }
            @else {
                table id="tickets" {
                    thead { tr { th { "Ticket" } th { "Opened" } th { "By" } th { "Category" } th { "Subject" } th { "Status" } } }
                    tbody {
                        @for t in &tickets {
                            tr {
                                td { a href={ "/guilds/" (guild_id) "/tickets/" (t.ticket_id) } { "#" (t.ticket_id) } }
                                td { (layout::time(t.opened_at)) }
                                td { (t.opener_id) }
                                td { (t.category.as_deref().unwrap_or("—")) }
                                td { (t.subject) }
                                td { (status_text(t)) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = older {
                p { a id="older" href={ "/guilds/" (guild_id) "/tickets?" (next) } { "Older tickets" } }
            }
        },
    )))
}

fn status_text(ticket: &Ticket) -> String {
    match ticket.closed_at {
        None => "open".to_owned(),
        Some(at) => format!("closed {}", layout::time(at)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TicketQueryString {
    /// Transcript lines after this message id (the next page).
    after: Option<u64>,
}

/// The ticket, or the error page's "no such ticket".
async fn stored_ticket(state: &AppState, guild_id: u64, number: u64) -> Result<Ticket, WebError> {
    state
        .store
        .ticket(guild_id, number)
        .await?
        .ok_or_else(|| WebError::BadForm(format!("there is no ticket #{number}")))
}

pub(crate) async fn ticket(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, number)): Path<(String, u64)>,
    Query(q): Query<TicketQueryString>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let summary = summary(&state, &authed, guild_id).await?;
    let ticket = stored_ticket(&state, guild_id, number).await?;
    let after = q.after.unwrap_or(0);
    let lines = state
        .store
        .transcript_page(guild_id, number, after, LINES_SHOWN)
        .await?;
    let later = (lines.len() == LINES_SHOWN)
        .then(|| lines.last().map(|line| line.message_id))
        .flatten();
    let base = format!("/guilds/{guild_id}/tickets/{number}");
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    Ok(layout::user_page(layout::page(
        &format!("Ticket #{number}"),
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Tickets"))
            h1 { "Ticket #" (number) }
            (ticket_details(&ticket))
            p {
                a #download-html href={ (base) "/transcript.html" } download { "Download HTML" } " · "
                a #download-json href={ (base) "/transcript.json" } download { "Download JSON" } " · "
                a href={ "/guilds/" (guild_id) "/tickets?member=" (ticket.opener_id) } { "Every ticket of this member" }
            }
            h2 { "Transcript" }
            @if lines.is_empty() {
                p.muted id="no-transcript" {
                    @if after > 0 { "No later messages." }
                    @else if ticket.is_open() { "The transcript is kept when the ticket closes." }
                    @else { "No messages." }
                }
            }
            section id="transcript" { @for line in &lines { (line_markup(line)) } }
            @if let Some(last) = later {
                p { a id="later" href={ (base) "?after=" (last) } { "Later messages" } }
            }
        },
    )))
}

/// A ticket's facts, on its page and at the top of its HTML transcript.
fn ticket_details(ticket: &Ticket) -> Markup {
    html! {
        dl.card id="ticket" {
            dt { "Subject" } dd { (ticket.subject) }
            @if let Some(category) = &ticket.category { dt { "Category" } dd { (category) } }
            dt { "Opened by" } dd { (ticket.opener_id) }
            dt { "Opened" } dd { (layout::time(ticket.opened_at)) }
            @if let Some(at) = ticket.claimed_at { dt { "Claimed" } dd { (layout::time(at)) } }
            dt { "Status" } dd id="ticket-status" { (status_text(ticket)) }
            @if let Some(reason) = &ticket.close_reason { dt { "Reason" } dd { (reason) } }
        }
    }
}

/// One transcript line: author, time, text, attachments as links, its edits (and earlier
/// texts, when the bot saw them) and its deletion noted.
fn line_markup(line: &TranscriptMessage) -> Markup {
    html! {
        article.line id={ "m" (line.message_id) } {
            p.muted {
                strong.author {
                    @if line.author_name.is_empty() { (line.author_id) }
                    @else { (line.author_name) " (" (line.author_id) ")" }
                }
                " · " (layout::time(line.at))
                @if let Some(at) = line.edited_at { " · " span.edited { "edited " (layout::time(at)) } }
                @if let Some(at) = line.deleted_at { " · " strong.deleted { "deleted " (layout::time(at)) } }
            }
            @for (n, text) in line.earlier_texts.iter().enumerate() {
                p.muted.earlier { "Before edit " (n + 1) ": " span.line-text { (text) } }
            }
            @if !line.content.is_empty() { p.line-text { (line.content) } }
            @for file in &line.attachments {
                p.attachment { "Attachment: "
                    // Only web links are links: a stored URL is never run as script.
                    @if file.url.starts_with("https://") {
                        a href=(file.url) rel="noopener noreferrer" { (file.filename) }
                    } @else { (file.filename) " (" (file.url) ")" }
                }
            }
        }
    }
}

/// The transcript as a standalone HTML document, streamed.
pub(crate) async fn transcript_html(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, number)): Path<(String, u64)>,
) -> Result<Response, WebError> {
    let (guild_id, ticket) = downloaded(&state, &authed, &raw, number).await?;
    let head = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Ticket #" (number) " transcript" }
                style { "body{font-family:sans-serif;max-width:50rem;margin:auto;padding:1rem}.muted{color:#5c6270}.line{border-bottom:1px solid #d5d8df}.line-text{white-space:pre-wrap}" }
            }
            body {
                h1 { "Ticket #" (number) " · server " (guild_id) }
                (ticket_details(&ticket))
                h2 { "Transcript" }
        }}
    }
    .into_string();
    // The head's closing tags come last: cut them off and add them after the lines.
    let (open, _) = head.split_once("</body>").expect("the head renders a body");
    let chunks = transcript_chunks(
        state.store.clone(),
        guild_id,
        number,
        open.to_owned(),
        "</body></html>\n".to_owned(),
        html_lines,
    );
    Ok(download(
        guild_id,
        number,
        "html",
        "text/html; charset=utf-8",
        chunks,
    ))
}

/// The transcript as JSON (`{"ticket": …, "lines": […]}`), streamed.
pub(crate) async fn transcript_json(
    State(state): State<AppState>,
    authed: Authed,
    Path((raw, number)): Path<(String, u64)>,
) -> Result<Response, WebError> {
    let (guild_id, ticket) = downloaded(&state, &authed, &raw, number).await?;
    let ticket = serde_json::to_string(&ticket).expect("a ticket serialises");
    let chunks = transcript_chunks(
        state.store.clone(),
        guild_id,
        number,
        format!("{{\"ticket\":{ticket},\"lines\":["),
        "]}\n".to_owned(),
        json_lines,
    );
    Ok(download(
        guild_id,
        number,
        "json",
        "application/json; charset=utf-8",
        chunks,
    ))
}

fn html_lines(lines: &[TranscriptMessage], _first: bool) -> String {
    html! { @for line in lines { (line_markup(line)) } }.into_string()
}

/// Lines as JSON array elements: a comma before each but the very first.
fn json_lines(lines: &[TranscriptMessage], first: bool) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if !(first && i == 0) {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(line).expect("a line serialises"));
    }
    out
}

async fn downloaded(
    state: &AppState,
    authed: &Authed,
    raw: &str,
    number: u64,
) -> Result<(u64, Ticket), WebError> {
    let guild_id = guild_id(raw)?;
    authorize(state, authed, guild_id).await?;
    Ok((guild_id, stored_ticket(state, guild_id, number).await?))
}

/// Where a streamed transcript is.
enum Chunk {
    Head(String),
    Lines { after: u64, first: bool },
    Tail,
    Done,
}

/// `head`, then each page of lines as `render(lines, is_first_page)` makes it, then `tail`:
/// one page of [`LINES_PER_CHUNK`] lines in memory at a time. A store failure midway ends
/// the body with an error (the browser sees a broken download, never a silently short one).
fn transcript_chunks(
    store: std::sync::Arc<dyn protonn_storage::Store>,
    guild_id: u64,
    ticket_id: u64,
    head: String,
    tail: String,
    render: fn(&[TranscriptMessage], bool) -> String,
) -> impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static {
    stream::try_unfold(Chunk::Head(head), move |chunk| {
        let store = store.clone();
        let tail = tail.clone();
        async move {
            Ok(match chunk {
                Chunk::Head(head) => Some((
                    Bytes::from(head),
                    Chunk::Lines {
                        after: 0,
                        first: true,
                    },
                )),
                Chunk::Lines { after, first } => {
                    let lines = store
                        .transcript_page(guild_id, ticket_id, after, LINES_PER_CHUNK)
                        .await?;
                    match lines.last() {
                        None => Some((Bytes::from(tail), Chunk::Done)),
                        Some(last) => {
                            let next = if lines.len() < LINES_PER_CHUNK {
                                Chunk::Tail
                            } else {
                                Chunk::Lines {
                                    after: last.message_id,
                                    first: false,
                                }
                            };
                            Some((Bytes::from(render(&lines, first)), next))
                        }
                    }
                }
                Chunk::Tail => Some((Bytes::from(tail), Chunk::Done)),
                Chunk::Done => None,
            })
        }
    })
}

fn download(
    guild_id: u64,
    number: u64,
    extension: &str,
    content_type: &'static str,
    chunks: impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static,
) -> Response {
    let disposition = format!("attachment; filename=\"ticket-{guild_id}-{number}.{extension}\"");
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use protonn_storage::{EmbeddedStore, Store, TicketRepo, Timestamp};

    fn line(message_id: u64) -> TranscriptMessage {
        TranscriptMessage {
            guild_id: 1,
            ticket_id: 1,
            message_id,
            author_id: 7,
            author_name: "ann".into(),
            at: Timestamp(message_id),
            content: format!("line {message_id}"),
            attachments: Vec::new(),
            edited_at: None,
            earlier_texts: Vec::new(),
            deleted_at: None,
        }
    }

    #[test]
    fn figures_are_medians_of_closed_tickets() {
        let at = |s: u64| Timestamp(s * 1_000);
        let ticket = |opened: u64, first: Option<u64>, closed: Option<u64>| Ticket {
            guild_id: 1,
            ticket_id: opened,
            opener_id: 7,
            channel_id: 3,
            subject: "help".into(),
            category: None,
            opened_at: at(opened),
            closed_at: closed.map(at),
            claimed_at: None,
            first_response_at: first.map(at),
            close_reason: None,
            place: protonn_storage::TicketPlace::Thread,
        };
        let newest = [
            ticket(0, Some(10), Some(100)),
            ticket(0, Some(30), Some(300)),
            ticket(0, None, Some(200)),
            ticket(0, Some(1), None),
        ];
        let stats = Stats::of(1, &newest);
        assert_eq!(
            stats,
            Stats {
                open: 1,
                closed: 3,
                first_response: Some(Duration::from_secs(30)),
                resolution: Some(Duration::from_secs(200)),
            }
        );
        assert_eq!(Stats::of(0, &[]).resolution, None);
    }

    #[test]
    fn statuses_are_open_closed_or_all() {
        assert_eq!(status_filter(None).unwrap(), None);
        assert_eq!(status_filter(Some("all")).unwrap(), None);
        assert_eq!(status_filter(Some("open")).unwrap(), Some(true));
        assert_eq!(status_filter(Some("closed")).unwrap(), Some(false));
        let err = status_filter(Some("pending")).unwrap_err().to_string();
        assert!(err.contains("open, closed or all"), "{err}");
    }

    #[test]
    fn a_line_shows_its_author_edit_and_only_web_links() {
        let mut shown = line(5);
        shown.edited_at = Some(Timestamp(9));
        shown.earlier_texts = vec!["first try".into()];
        shown.deleted_at = Some(Timestamp(10));
        shown.content = "<b>hi</b>".into();
        shown.attachments = vec![
            protonn_storage::TranscriptAttachment {
                filename: "a.png".into(),
                url: "https://cdn.discordapp.com/a.png".into(),
            },
            protonn_storage::TranscriptAttachment {
                filename: "b.png".into(),
                url: "javascript:alert(1)".into(),
            },
        ];
        let html = line_markup(&shown).into_string();
        assert!(html.contains("ann (7)"), "{html}");
        assert!(html.contains("edited 1970-01-01"), "{html}");
        assert!(html.contains("Before edit 1: "), "{html}");
        assert!(html.contains("first try"), "{html}");
        assert!(html.contains("deleted 1970-01-01"), "{html}");
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"), "escaped: {html}");
        assert!(
            html.contains("href=\"https://cdn.discordapp.com/a.png\""),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript"), "{html}");
    }

    /// A transcript of several chunks streams as one valid JSON document, every line once.
    #[tokio::test]
    async fn a_long_transcript_streams_page_by_page_as_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let ticket = Ticket {
            guild_id: 1,
            ticket_id: 1,
            opener_id: 7,
            channel_id: 3,
            subject: "help".into(),
            category: None,
            opened_at: Timestamp::now(),
            closed_at: None,
            claimed_at: None,
            first_response_at: None,
            close_reason: None,
            place: protonn_storage::TicketPlace::Thread,
        };
        store.put_ticket(&ticket).await.unwrap();
        let count = LINES_PER_CHUNK as u64 * 2 + 3;
        let lines: Vec<TranscriptMessage> = (1..=count).map(line).collect();
        store.append_transcript(&lines).await.unwrap();
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);
        let chunks: Vec<Bytes> =
            transcript_chunks(store, 1, 1, "{\"lines\":[".into(), "]}".into(), json_lines)
                .try_collect()
                .await
                .unwrap();
        assert_eq!(chunks.len(), 1 + 3 + 1, "head, three pages, tail");
        let body: Vec<u8> = chunks.concat();
        let read: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let read: Vec<TranscriptMessage> = serde_json::from_value(read["lines"].clone()).unwrap();
        assert_eq!(read, lines);
    }
}
