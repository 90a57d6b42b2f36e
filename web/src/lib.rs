//! The Pro-tonn dashboard: server-rendered HTML pages (an installable PWA), Discord OAuth2
//! login and server-side sessions.
//!
//! This crate owns the dashboard's HTTP surface. `cluster` serves [`router`] (in `protonn
//! web` and `protonn demo`) and hands it an [`AppState`] with a [`GuildCalls`] implementation
//! and a store.
//!
//! Invariants:
//! - Guilds are reached only through [`GuildCalls`]: the dashboard never reads a node's memory
//!   and never writes a guild's config to storage itself.
//! - Authorization on every guild request: the bot's cache is asked whether the user may
//!   manage the guild (`MemberPermissions`) each time, so losing the permission in Discord
//!   closes the pages at the next request.
//! - Discord tokens never leave the server: sealed (ChaCha20-Poly1305) in the session row,
//!   refreshed before expiry, revoked at logout. Sessions are server-side; the cookie holds a
//!   secret whose hash is the row's key.
//! - Every state-changing request is a POST carrying the session's CSRF token; the OAuth2
//!   `state` is 256 random bits, bound to the browser's pending session, compared in constant
//!   time and spent by compare-and-set.
//! - Every response carries a CSP without inline scripts, `frame-ancestors 'none'`, a
//!   referrer policy and `nosniff`; every asset is in the binary.
//!
//! [`GuildCalls`]: protonn_actors::GuildCalls

mod assets;
mod config;
mod crypto;
mod discord;
mod error;
pub mod metrics;
mod paddle;
mod pages;
mod session;
mod state;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use protonn_storage::Timestamp;

pub use config::{Secret, WebConfig};
pub use error::WebError;
pub use paddle::{PaddleConfig, process_inbox, spawn_processor};
pub use state::AppState;

/// Largest request body: the biggest form (settings with staff roles) is well below.
const BODY_LIMIT: usize = 16 * 1024;

/// Every route of the dashboard.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login))
        .route("/auth/login", get(pages::start_login))
        .route("/auth/callback", get(pages::callback))
        .route("/logout", post(pages::logout))
        .route("/guilds", get(pages::guilds))
        .route("/guilds/{guild}", get(pages::overview))
        .route(
            "/guilds/{guild}/settings",
            get(pages::settings).post(pages::save_settings),
        )
        .route("/guilds/{guild}/history", get(pages::history))
        .route("/guilds/{guild}/history/rollback", post(pages::rollback))
        .route("/guilds/{guild}/audit", get(pages::audit))
        .route("/guilds/{guild}/audit.csv", get(pages::audit_csv))
        .route("/guilds/{guild}/audit.json", get(pages::audit_json))
        .route("/guilds/{guild}/analytics", get(pages::analytics))
        .route("/guilds/{guild}/analytics.csv", get(pages::analytics_csv))
        .route("/guilds/{guild}/cases", get(pages::cases))
        .route("/guilds/{guild}/cases/{number}", get(pages::case))
        .route(
            "/guilds/{guild}/announcements",
            get(pages::guild_announcements)
                .post(pages::save_announcement)
                .layer(DefaultBodyLimit::max(pages::ANNOUNCEMENT_BODY_LIMIT)),
        )
        .route(
            "/guilds/{guild}/announcements/{schedule}/paused",
            post(pages::set_announcement_paused),
        )
        .route(
            "/guilds/{guild}/announcements/{schedule}/delete",
            post(pages::delete_announcement),
        )
        .route("/guilds/{guild}/tickets", get(pages::tickets))
        .route(
            "/guilds/{guild}/tickets/settings",
            get(pages::ticket_settings).post(pages::save_ticket_settings),
        )
        .route("/guilds/{guild}/tickets/{number}", get(pages::ticket))
        .route(
            "/guilds/{guild}/tickets/{number}/transcript.html",
            get(pages::transcript_html),
        )
        .route(
            "/guilds/{guild}/tickets/{number}/transcript.json",
            get(pages::transcript_json),
        )
        .route(
            "/guilds/{guild}/automod",
            get(pages::automod)
                .post(pages::save_automod)
                .layer(DefaultBodyLimit::max(pages::AUTOMOD_RULES_BODY_LIMIT)),
        )
        .route(
            "/guilds/{guild}/automod/test",
            post(pages::test_automod).layer(DefaultBodyLimit::max(pages::AUTOMOD_TEST_BODY_LIMIT)),
        )
        .route(
            "/guilds/{guild}/workflows",
            get(pages::workflows)
                .post(pages::save_workflow)
                .layer(DefaultBodyLimit::max(pages::WORKFLOWS_BODY_LIMIT)),
        )
        .route(
            "/guilds/{guild}/workflows.json",
            get(pages::export_workflows),
        )
        .route(
            "/guilds/{guild}/workflows/import",
            post(pages::import_workflow).layer(DefaultBodyLimit::max(pages::WORKFLOWS_BODY_LIMIT)),
        )
        .route(
            "/guilds/{guild}/workflows/dry-run",
            post(pages::dry_run_workflow).layer(DefaultBodyLimit::max(pages::WORKFLOWS_BODY_LIMIT)),
        )
        .route("/guilds/{guild}/workflows/new", get(pages::new_workflow))
        .route("/guilds/{guild}/workflows/{workflow}", get(pages::workflow))
        .route(
            "/guilds/{guild}/workflows/{workflow}/export",
            get(pages::export_workflow),
        )
        .route(
            "/guilds/{guild}/workflows/{workflow}/enabled",
            post(pages::set_workflow_enabled),
        )
        .route(
            "/guilds/{guild}/workflows/{workflow}/duplicate",
            post(pages::duplicate_workflow),
        )
        .route(
            "/guilds/{guild}/workflows/{workflow}/delete",
            post(pages::delete_workflow),
        )
        .route("/premium", get(pages::premium))
        .route("/premium/assign", post(pages::assign_form))
        .route("/premium/move", post(pages::move_form))
        .route("/premium/remove", post(pages::remove_form))
        .route("/premium/redeem", post(pages::redeem_form))
        .route(
            "/admin/announcements",
            get(pages::announcements).post(pages::create_announcement),
        )
        .route(
            "/admin/announcements/cancel",
            post(pages::cancel_announcement),
        )
        .route(
            "/admin/promos",
            get(pages::promos).post(pages::create_promo),
        )
        .route("/account", get(pages::account))
        .route("/account/logout-everywhere", post(pages::logout_everywhere))
        .route(
            "/webhooks/paddle",
            post(paddle::webhook).layer(DefaultBodyLimit::max(paddle::BODY_LIMIT)),
        )
        .route("/privacy", get(pages::privacy))
        .route("/privacy/export", post(pages::request_export))
        .route("/privacy/export/download", post(pages::download_export))
        .route("/privacy/correct", post(pages::correct_profile))
        .route("/privacy/choices", post(pages::save_choices))
        .route("/privacy/delete", post(pages::delete_account))
        .route("/assets/{file}", get(assets::asset))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/sw.js", get(assets::service_worker))
        .route("/offline", get(assets::offline))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(measure))
        .with_state(state)
}

async fn not_found() -> WebError {
    WebError::NotFound
}

/// Removes expired sessions where the store has no TTL (redb), every `every`, until the
/// returned task is aborted.
pub fn spawn_session_sweeper(
    store: std::sync::Arc<dyn protonn_storage::WebSessionRepo>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(err) = store.sweep_web_sessions(Timestamp::now()).await {
                tracing::warn!(error = %err, "sweeping dashboard sessions failed");
            }
        }
    })
}

/// Counts and times every request by its route template (bounded), not its path.
async fn measure(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::request(route, response.status().as_u16(), started.elapsed());
    response
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https://cdn.discordapp.com; connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
