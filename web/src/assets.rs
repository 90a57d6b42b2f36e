//! Every static file the dashboard uses, compiled into the binary: no CDN, no build step.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::pages::layout;

/// Name, content type, body. The PNG icons are the SVG ones drawn by Chromium at 192 and
/// 512 px, for browsers that install an app only from bitmap icons.
const FILES: [(&str, &str, &[u8]); 10] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    ),
    (
        "icon-maskable.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon-maskable.svg"),
    ),
    (
        "icon-192.png",
        "image/png",
        include_bytes!("../assets/icon-192.png"),
    ),
    (
        "icon-512.png",
        "image/png",
        include_bytes!("../assets/icon-512.png"),
    ),
    (
        "icon-maskable-192.png",
        "image/png",
        include_bytes!("../assets/icon-maskable-192.png"),
    ),
    (
        "icon-maskable-512.png",
        "image/png",
        include_bytes!("../assets/icon-maskable-512.png"),
    ),
    (
        "manifest.webmanifest",
        "application/manifest+json",
        include_bytes!("../assets/manifest.webmanifest"),
    ),
    (
        "sw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/sw.js"),
    ),
];

/// The release and a hash of every asset: a release with any changed file gets new cache
/// names and asset URLs.
pub(crate) static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut all = Vec::from(env!("CARGO_PKG_VERSION"));
    for (name, _, body) in FILES {
        all.extend_from_slice(name.as_bytes());
        all.extend_from_slice(body);
    }
    format!(
        "{}-{}",
        env!("CARGO_PKG_VERSION"),
        &crate::crypto::digest(&all)[..12]
    )
});

fn file(name: &str) -> Option<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, body)| (*kind, *body))
}

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match file(&name).filter(|_| name != "sw.js" && name != "manifest.webmanifest") {
        Some((kind, body)) => (
            [
                (CONTENT_TYPE, kind),
                (CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(crate) async fn manifest() -> Response {
    let (kind, body) = file("manifest.webmanifest").expect("the manifest is built in");
    (
        [
            (CONTENT_TYPE, kind),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The service worker, named with this build's version; never cached by HTTP, so a release
/// is picked up on the next visit.
pub(crate) async fn service_worker() -> Response {
    let (kind, body) = file("sw.js").expect("the service worker is built in");
    (
        [(CONTENT_TYPE, kind), (CACHE_CONTROL, "no-cache")],
        std::str::from_utf8(body)
            .expect("the service worker is UTF-8")
            .replace("__VERSION__", &VERSION),
    )
        .into_response()
}

pub(crate) async fn offline() -> Response {
    ([(CACHE_CONTROL, "no-cache")], layout::offline_page()).into_response()
}
