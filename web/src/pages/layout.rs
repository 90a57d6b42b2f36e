//! The frame of every page, the error page and the offline page.

use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::assets::VERSION;

/// The logged-in user in the header, and the token their forms carry.
pub(crate) struct Nav<'a> {
    pub(crate) username: &'a str,
    pub(crate) csrf: &'a str,
}

/// Whether the page shows the user's data (kept for offline reading until logout) or is
/// public (its load forgets every kept page).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    User,
    Public,
    Neutral,
}

pub(crate) fn page(title: &str, nav: Option<Nav<'_>>, audience: Audience, body: Markup) -> Markup {
    let auth = match audience {
        Audience::User => "true",
        Audience::Public => "false",
        Audience::Neutral => "unknown",
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="theme-color" content="#4752c4";
                title { (title) " · Pro-tonn" }
                link rel="stylesheet" href={ "/assets/app.css?v=" (*VERSION) };
                link rel="manifest" href="/manifest.webmanifest";
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                script src={ "/assets/app.js?v=" (*VERSION) } defer {}
            }
            body data-auth=(auth) {
                a.skip href="#main" { "Skip to content" }
                header {
                    a href="/guilds" { strong { "Pro-tonn" } }
                    @if let Some(nav) = nav {
                        nav aria-label="Account" {
                            a href="/guilds" { "Servers" }
                            a href="/premium" { "Premium" }
                            a href="/account" { "Account (" (nav.username) ")" }
                            a href="/privacy" { "Privacy" }
                            form method="post" action="/logout" data-logout {
                                input type="hidden" name="csrf" value=(nav.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A page of the user's data: kept by the service worker for offline reading, never by the
/// HTTP cache.
pub(crate) fn user_page(markup: Markup) -> Response {
    let mut response = markup.into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-protonn-offline", HeaderValue::from_static("page"));
    response
}

/// A public page whose view means nobody is logged in here.
pub(crate) fn public_page(markup: Markup) -> Response {
    let mut response = markup.into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-protonn-offline", HeaderValue::from_static("forget"));
    response
}

pub(crate) fn error_page(message: &str) -> Markup {
    page(
        "Error",
        None,
        Audience::Neutral,
        html! {
            h1 { "Something went wrong" }
            p.error role="alert" { (message) }
            p { a href="/guilds" { "Back to your servers" } " · " a href="/login" { "Log in" } }
        },
    )
}

/// What a browser told to clear its site data shows (children's data).
pub(crate) fn site_data_cleared_page() -> Markup {
    page(
        "Data cleared",
        None,
        Audience::Public,
        html! {
            h1 { "This browser's Pro-tonn data was cleared" }
            p id="site-data-cleared" { "The account that used this browser was erased, and so is everything this site kept in the browser." }
        },
    )
}

pub(crate) fn offline_page() -> Markup {
    page(
        "Offline",
        None,
        Audience::Neutral,
        html! {
            h1 { "You are offline" }
            p { "This page was not saved for offline reading. Pages you viewed while logged in can be read offline until you log out." }
        },
    )
}

pub(crate) fn time(at: protonn_storage::Timestamp) -> String {
    let (date, (h, m, s)) = civil_time(at);
    format!("{date} {h:02}:{m:02}:{s:02} UTC")
}

/// `2026-12-06T10:00:00Z`, for files others read.
pub(crate) fn iso_time(at: protonn_storage::Timestamp) -> String {
    let (date, (h, m, s)) = civil_time(at);
    format!("{date}T{h:02}:{m:02}:{s:02}Z")
}

/// The UTC day, `2026-12-06`.
pub(crate) fn date(at: protonn_storage::Timestamp) -> String {
    civil_time(at).0
}

fn civil_time(at: protonn_storage::Timestamp) -> (String, (u64, u64, u64)) {
    let secs = at.as_millis() / 1000;
    let (y, mo, d) = civil((secs / 86_400) as i64);
    (
        format!("{y:04}-{mo:02}-{d:02}"),
        (secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60),
    )
}

/// Days since 1970-01-01 as a calendar date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(
            time(protonn_storage::Timestamp(0)),
            "1970-01-01 00:00:00 UTC"
        );
        assert_eq!(
            time(protonn_storage::Timestamp(1_700_000_000_000)),
            "2023-11-14 22:13:20 UTC"
        );
    }
}
