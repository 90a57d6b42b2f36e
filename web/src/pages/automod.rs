//! Automod in the dashboard: the rules (edited as the JSON the bot stores, checked by the
//! bot on save), a "test a message" box that shows which rule would fire and why, whether
//! Discord runs the native rules (or why not), and what rules in shadow mode would have
//! done. Everything goes through guild calls.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use protonn_actors::{
    GuildRequest, GuildResponse, GuildSummary, NativeRuleStatus, NativeSync, RuleMatch,
};
use protonn_storage::{AutomodConfig, AutomodHit, Plan, Timestamp, VersionedConfig, guild_plan};
use serde::Deserialize;

use super::guild::{authorize, config, summary, tabs, unexpected};
use super::layout::{self, Audience, Nav};
use super::{guild_form_with_long, guild_id, number, refusal};
use crate::crypto::random_token;
use crate::session::Authed;
use crate::{AppState, WebError};

/// Shadow-mode hits shown.
const HITS_SHOWN: u32 = 100;
/// The rules as typed, at most (a guild's keyword and pattern limits fit well within), and
/// the body of their form, percent-encoded.
const RULES_MAX_CHARS: usize = 200_000;
pub(crate) const RULES_BODY_LIMIT: usize = 1 << 20;
/// A tested message: Discord's length; its form's body, percent-encoded.
const TEST_MAX_CHARS: usize = 2_000;
pub(crate) const TEST_BODY_LIMIT: usize = 32 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct AutomodQuery {
    saved: Option<u64>,
}

/// What the page shows besides the rules.
#[derive(Default)]
struct Extras {
    notice: Option<String>,
    error: Option<String>,
    /// The text tested and the rules that would fire on it.
    tested: Option<(String, Vec<RuleMatch>)>,
    /// Rules as typed, when a save was refused.
    draft: Option<String>,
}

pub(crate) async fn automod(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    Query(q): Query<AutomodQuery>,
) -> Result<Response, WebError> {
    let guild_id = guild_id(&raw)?;
    authorize(&state, &authed, guild_id).await?;
    let extras = Extras {
        notice: q
            .saved
            .map(|v| format!("Saved as version {v}. The bot uses the rules from now on.")),
        ..Extras::default()
    };
    page(&state, &authed, guild_id, extras).await
}

/// Saves the rules typed in the editor; the bot checks them (limits, patterns).
pub(crate) async fn save_automod(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let long = [("rules", RULES_MAX_CHARS)];
    let (form, guild_id) = guild_form_with_long(&state, &authed, &raw, body, &long).await?;
    let expected_version = number(&form, "expected_version")?;
    let typed = form.required("rules")?.to_owned();
    let refused = |error: String| Extras {
        error: Some(error),
        draft: Some(typed.clone()),
        ..Extras::default()
    };
    let automod: AutomodConfig = match serde_json::from_str(&typed) {
        Ok(automod) => automod,
        Err(err) => {
            let extras = refused(format!(
                "The rules are not valid JSON: {err}. Nothing was saved."
            ));
            return refusal(page(&state, &authed, guild_id, extras).await);
        }
    };
    let mut next = config(&state, &authed, guild_id).await?.config;
    next.automod = automod;
    let key = form.idempotency_key()?;
    let request = GuildRequest::ChangeConfig {
        config: next,
        expected_version,
    };
    match state.call(authed.user_id, guild_id, request, key).await {
        Ok(GuildResponse::Config(saved)) => Ok((
            StatusCode::SEE_OTHER,
            [(
                LOCATION,
                format!("/guilds/{guild_id}/automod?saved={}", saved.version),
            )],
        )
            .into_response()),
        Ok(_) => Err(unexpected()),
        Err(WebError::BadForm(message)) => {
            let extras = refused(format!("{message} Nothing was saved."));
            refusal(page(&state, &authed, guild_id, extras).await)
        }
        Err(WebError::Conflict { current }) => {
            let extras = refused(format!(
                "Someone else saved the configuration meanwhile (version {current} is current); nothing was saved."
            ));
            refusal(page(&state, &authed, guild_id, extras).await)
        }
        Err(err) => Err(err),
    }
}

/// Runs the rules on a text, with no effect, and shows what would fire.
pub(crate) async fn test_automod(
    State(state): State<AppState>,
    authed: Authed,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let long = [("content", TEST_MAX_CHARS)];
    let (form, guild_id) = guild_form_with_long(&state, &authed, &raw, body, &long).await?;
    let content = form.required("content")?.to_owned();
    let request = GuildRequest::AutomodTest {
        content: content.clone(),
    };
    let matches = match state.call(authed.user_id, guild_id, request, None).await? {
        GuildResponse::AutomodTest { matches } => matches,
        _ => return Err(unexpected()),
    };
    let extras = Extras {
        tested: Some((content, matches)),
        ..Extras::default()
    };
    page(&state, &authed, guild_id, extras).await
}

async fn page(
    state: &AppState,
    authed: &Authed,
    guild_id: u64,
    extras: Extras,
) -> Result<Response, WebError> {
    let summary = summary(state, authed, guild_id).await?;
    let current = config(state, authed, guild_id).await?;
    let request = GuildRequest::AutomodHits {
        before: None,
        limit: HITS_SHOWN,
    };
    let hits = match state.call(authed.user_id, guild_id, request, None).await? {
        GuildResponse::AutomodHits { hits } => hits,
        _ => return Err(unexpected()),
    };
    // Read from Discord by the bot: asked only when a rule is native.
    let native = if current.config.automod.rules.iter().any(|rule| rule.native) {
        match state
            .call(authed.user_id, guild_id, GuildRequest::AutomodNative, None)
            .await?
        {
            GuildResponse::AutomodNative { rules } => rules,
            _ => return Err(unexpected()),
        }
    } else {
        Vec::new()
    };
    let plan = guild_plan(state.store.as_ref(), guild_id, Timestamp::now()).await?;
    Ok(render(
        authed, &summary, &current, plan, &hits, &native, extras,
    ))
}

fn render(
    authed: &Authed,
    summary: &GuildSummary,
    current: &VersionedConfig,
    plan: Plan,
    hits: &[AutomodHit],
    native: &[NativeRuleStatus],
    extras: Extras,
) -> Response {
    let off = current.config.automod.over_plan(plan);
    let guild_id = summary.guild_id;
    let rules = extras.draft.clone().unwrap_or_else(|| {
        serde_json::to_string_pretty(&current.config.automod).expect("a config serialises")
    });
    let nav = Nav {
        username: &authed.sealed.username,
        csrf: authed.csrf(),
    };
    layout::user_page(layout::page(
        "Automod",
        Some(nav),
        Audience::User,
        html! {
            (tabs(guild_id, &summary.name, "Automod"))
            h1 { "Automod" }
            @if let Some(notice) = &extras.notice { p.notice role="status" id="notice" { (notice) } }
            @if let Some(error) = &extras.error { p.error role="alert" id="error" { (error) } }
            h2 { "Test a message" }
            form.card method="post" action={ "/guilds/" (guild_id) "/automod/test" } {
                input type="hidden" name="csrf" value=(authed.csrf());
                label for="content" { "Message" }
                textarea id="content" name="content" rows="3" maxlength="2000" required {
                    @if let Some((text, _)) = &extras.tested { (text) }
                }
                p.muted { "Runs the rules on the text and does nothing else. Rules on a member's message rate and account age need real messages." }
                p { button type="submit" id="test" { "Test" } }
            }
            @if let Some((_, matches)) = &extras.tested {
                @if matches.is_empty() { p id="test-result" { "No rule would fire." } }
                @else {
                    table id="test-result" {
                        thead { tr { th { "Rule" } th { "Why" } th { "Would do" } } }
                        tbody {
                            @for m in matches {
                                tr {
                                    td { (m.rule) @if m.shadow { " (shadow mode: reports only)" } }
                                    td { (m.why) }
                                    td { (m.actions) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Rules" }
            @if !off.is_empty() {
                p.error role="alert" id="over-plan" {
                    "The " (plan.name()) " plan runs " (plan.limits().automod_rules) " rules; these are kept but off until the server has premium again or you remove others: "
                    @for (n, rule) in off.iter().enumerate() { @if n > 0 { ", " } strong { (rule.name) } } "."
                }
            }
            form.card method="post" action={ "/guilds/" (guild_id) "/automod" } {
                input type="hidden" name="csrf" value=(authed.csrf());
                input type="hidden" name="expected_version" value=(current.version);
                input type="hidden" name="idempotency_key" value=(random_token());
                label for="rules" { "Rules (JSON)" }
                textarea id="rules" name="rules" rows="16" spellcheck="false" { (rules) }
                p.muted {
                    "Each rule has a " code { "name" } ", a " code { "trigger" } " (" code { "kind" } ": "
                    "message_spam, duplicate_text, mention_spam, invite_links, links, keywords, regex, caps, emoji_flood, zalgo, new_account), "
                    code { "actions" } " (delete, warn, timeout, kick, ban, log), " code { "shadow" } ", "
                    code { "exempt_roles" } " and " code { "exempt_channels" } ". A keyword or mention-spam rule with "
                    code { "\"native\": true" } " runs in Discord's own AutoMod, which blocks the message before anyone sees it. "
                    "See the admin guide for every field and limit."
                }
                p { button type="submit" id="save-rules" { "Save rules" } " " span.muted { "Version " (current.version) } }
            }
            @if !native.is_empty() {
                h2 { "Native rules on Discord" }
                table id="native" {
                    thead { tr { th { "Rule" } th { "On Discord" } } }
                    tbody {
                        @for status in native {
                            tr {
                                td { (status.rule) }
                                @match &status.sync {
                                    NativeSync::OnDiscord => td { "Yes, as configured" },
                                    NativeSync::NotOnDiscord { why } => td { "No: " (why) "." },
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Shadow-mode hits" }
            @if hits.is_empty() { p.muted id="no-hits" { "No rule in shadow mode has matched yet." } }
            @else {
                table id="hits" {
                    thead { tr { th { "When" } th { "Rule" } th { "Member" } th { "Why" } th { "Would have done" } } }
                    tbody {
                        @for h in hits {
                            tr { td { (layout::time(h.at)) } td { (h.rule) } td { (h.user_id) } td { (h.why) } td { (h.actions) } }
                        }
                    }
                }
            }
        },
    ))
}
