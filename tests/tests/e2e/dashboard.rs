//! The dashboard in a real browser (Debian's Chromium, headless, driven over WebDriver by
//! chromedriver), against `protonn demo`'s wiring: simulator, node and dashboard in one
//! process. Log in through the simulator's OAuth2 page, change the prefix and see the bot
//! answer to it, roll back, read a page offline from the service worker, log out and find
//! nothing of the account offline. Screenshots of each page go to
//! `target/tmp/screenshots/dashboard/` (CI keeps them).
//!
//! Without Chromium the test is skipped, except under `CI=true`, where it fails:
//! `scripts/install-ops-tools` installs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use protonn_cluster::{Config, Dashboard, Node};
use protonn_sim::SimHandle;
use protonn_tests::*;
use protonn_web::Secret;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium and chromedriver, or `None` (skip) when absent outside CI.
pub(crate) fn browser_installed() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present && std::env::var("CI").as_deref() == Ok("true") {
        panic!("Chromium is missing under CI=true: run scripts/install-ops-tools");
    }
    if !present {
        eprintln!(
            "skipped: no {CHROMIUM} / {CHROMEDRIVER} (scripts/install-ops-tools installs them)"
        );
    }
    present
}

/// A TCP relay in front of the dashboard whose "network" can be cut, as a browser going
/// offline sees it: refused connections, open ones dropped.
struct Network {
    online: Arc<AtomicBool>,
    cut: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Network {
    async fn start(listener: TcpListener, backend: SocketAddr) -> Self {
        let online = Arc::new(AtomicBool::new(true));
        let (cut, mut cuts) = tokio::sync::mpsc::unbounded_channel::<()>();
        let up = Arc::clone(&online);
        tokio::spawn(async move {
            let mut relays = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { break };
                        if !up.load(Ordering::SeqCst) {
                            continue;
                        }
                        relays.spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                    Some(()) = cuts.recv() => relays.abort_all(),
                }
            }
        });
        Self { online, cut }
    }

    fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::SeqCst);
        if !online {
            let _ = self.cut.send(());
        }
    }
}

/// The few WebDriver commands the test needs, over plain HTTP/1.1 to chromedriver.
pub(crate) struct WebDriver {
    addr: SocketAddr,
    session: String,
    _driver: Child,
    shots: PathBuf,
    shot: usize,
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // chromedriver keeps the connection open whatever we ask: read by Content-Length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_len, length) = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "chromedriver closed before answering {method} {path}"
        );
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .expect("chromedriver answers with a Content-Length");
            break (end + 4, length);
        }
    };
    while raw.len() < head_len + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "chromedriver closed mid-answer");
        raw.extend_from_slice(&buf[..n]);
    }
    let payload = String::from_utf8_lossy(&raw[head_len..head_len + length]).into_owned();
    let payload = payload.as_str();
    let value: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}: {payload}"));
    if let Some(error) = value["value"].get("error") {
        panic!(
            "WebDriver {method} {path}: {error}: {}",
            value["value"]["message"]
        );
    }
    value["value"].clone()
}

impl WebDriver {
    pub(crate) async fn start(profile: &Path) -> Self {
        // chromedriver's stdout is block-buffered in a pipe, so its "started on port N" line
        // cannot be awaited: it gets a port that was free a moment ago, and the test waits
        // until it accepts connections there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1024,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let session = http(addr, "POST", "/session", Some(&capabilities)).await;
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots/dashboard");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            addr,
            session: session["sessionId"].as_str().unwrap().to_owned(),
            _driver: driver,
            shots,
            shot: 0,
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        http(self.addr, method, &path, body.as_ref()).await
    }

    pub(crate) async fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub(crate) async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn find(&self, css: &str) -> String {
        let found = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub(crate) async fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Runs `script` (an async function body ending in `return value`) in the page.
    pub(crate) async fn script_async(&self, script: &str) -> Value {
        let wrapped = format!(
            "var done = arguments[arguments.length - 1]; (async function () {{ {script} }})().then(done, function (e) {{ done({{error: String(e)}}); }});"
        );
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": wrapped, "args": []})),
        )
        .await
    }

    /// Everything the site keeps in this browser: localStorage and sessionStorage as
    /// objects, IndexedDB database names, and every Cache Storage entry with its body.
    async fn local_data(&self) -> Value {
        self.script_async(
            "var out = {local: {}, session: {}, idb: [], caches: {}};
             for (var i = 0; i < localStorage.length; i++) { var k = localStorage.key(i); out.local[k] = localStorage.getItem(k); }
             for (var j = 0; j < sessionStorage.length; j++) { var s = sessionStorage.key(j); out.session[s] = sessionStorage.getItem(s); }
             if (indexedDB.databases) { out.idb = (await indexedDB.databases()).map(function (d) { return d.name; }); }
             for (const name of await caches.keys()) {
               const cache = await caches.open(name);
               out.caches[name] = [];
               for (const request of await cache.keys()) {
                 const response = await cache.match(request);
                 out.caches[name].push({url: request.url, body: await response.text()});
               }
             }
             return out;",
        )
        .await
    }

    /// The value of this site's session cookie, if the browser holds one.
    async fn session_cookie(&self) -> Option<String> {
        let cookies = self.cmd("GET", "/cookie", None).await;
        cookies
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "protonn_session")
            .map(|c| c["value"].as_str().unwrap().to_owned())
    }

    /// Waits until the page source contains `text`.
    pub(crate) async fn wait_for(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if self.source().await.contains(text) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {text:?}: {} {}",
                self.url().await,
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn screenshot(&mut self, name: &str) {
        let png = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        self.shot += 1;
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.shot)), png).unwrap();
    }

    pub(crate) async fn quit(self) {
        let _ = http(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_admin_uses_the_dashboard_in_chromium() {
    if !browser_installed() {
        return;
    }
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(1, 3)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    wait_until("the guild is cached", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;

    // The browser reaches the dashboard through a relay it can be cut off from.
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", front.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.web.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.web.public_url = Some(origin.clone());
    config.storage.data_dir = data.path().to_owned();
    let dashboard = Dashboard::start(
        &config,
        node,
        format!("http://{}", sim.addr()),
        sim.application_id(),
        Secret::new(protonn_sim::OAUTH_CLIENT_SECRET),
    )
    .await
    .unwrap();
    let network = Network::start(front, dashboard.addr()).await;
    let profile = tempfile::tempdir().unwrap();
    let mut browser = WebDriver::start(profile.path()).await;

    // Log in through the simulator's Discord as the guild's owner.
    browser.go(&format!("{origin}/login")).await;
    browser.wait_for("Log in with Discord").await;
    browser.screenshot("login").await;
    browser.click("#login").await;
    browser.wait_for("Pick a simulated user").await;
    browser.screenshot("discord-consent").await;
    browser
        .click(&format!("button[data-user-id=\"{}\"]", guild.owner_id))
        .await;
    browser.wait_for("Servers you manage").await;
    browser.screenshot("guild-picker").await;

    browser
        .click(&format!("a[data-guild-id=\"{}\"]", guild.id))
        .await;
    browser.wait_for("Served by shard").await;
    browser.screenshot("overview").await;

    // Change the prefix; the bot answers to it at once.
    let settings = format!("{origin}/guilds/{}/settings", guild.id);
    for (n, prefix) in [(1, "?"), (2, "$")] {
        browser.go(&settings).await;
        browser.wait_for("Command prefix").await;
        browser.fill("#prefix", prefix).await;
        browser.click("#save").await;
        browser.wait_for(&format!("Saved as version {n}")).await;
    }
    browser.screenshot("settings-saved").await;
    sim.send_message(guild.id, channel, guild.member_ids[0], "$ping")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 0).await,
        "pong",
        "the new prefix is live"
    );

    // Roll back to version 1: `?` works again.
    browser
        .go(&format!("{origin}/guilds/{}/history", guild.id))
        .await;
    browser.wait_for("Version 2 (current)").await;
    browser.screenshot("history").await;
    browser.click("button[data-rollback=\"1\"]").await;
    browser.wait_for("Rolled back").await;
    sim.send_message(guild.id, channel, guild.member_ids[0], "?ping")
        .unwrap();
    assert_eq!(
        reply_in(sim, channel, 1).await,
        "pong",
        "the rollback is live"
    );
    browser
        .go(&format!("{origin}/guilds/{}/audit", guild.id))
        .await;
    browser.wait_for("3 entries.").await;
    browser.screenshot("audit").await;
    // Filter to the rollback, then download what the filter shows.
    browser.fill("#action", "config.rollback").await;
    browser.click("#filter").await;
    browser.wait_for("1 entry.").await;
    let csv = browser
        .script_async(
            "const r = await fetch(document.querySelector('#csv').href); return await r.text();",
        )
        .await;
    let csv: Vec<&str> = csv.as_str().unwrap().lines().collect();
    assert_eq!(csv[0], "at_utc,id,actor_id,action,target_id,details");
    assert_eq!(csv.len(), 2, "{csv:?}");
    assert!(
        csv[1].contains(&format!(",{},config.rollback,", guild.owner_id)),
        "{csv:?}"
    );
    let json = browser
        .script_async(
            "const r = await fetch(document.querySelector('#json').href); return await r.json();",
        )
        .await;
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json[0]["action"], "config.rollback");
    browser
        .go(&format!("{origin}/guilds/{}/audit?user=abc", guild.id))
        .await;
    browser.wait_for("is not a member id").await;
    browser.go(&format!("{origin}/account")).await;
    browser.wait_for("Log out everywhere").await;
    browser.screenshot("account").await;

    // The service worker controls the pages; the overview read while online is kept.
    let overview = format!("{origin}/guilds/{}", guild.id);
    wait_until("the service worker controls the page", || async {
        browser.go(&overview).await;
        browser
            .script("return navigator.serviceWorker.controller !== null")
            .await
            == json!(true)
    })
    .await;
    browser.go(&overview).await;
    browser.wait_for("Served by shard").await;
    network.set_online(false);
    browser.go(&overview).await;
    browser.wait_for("Served by shard").await;
    browser.screenshot("overview-offline").await;
    network.set_online(true);

    // Log out: nothing of the account can be read offline any more.
    browser.go(&format!("{origin}/account")).await;
    browser.wait_for("Log out everywhere").await;
    browser.click("form[action=\"/logout\"] button").await;
    browser.wait_for("You are logged out").await;
    browser.screenshot("logged-out").await;
    network.set_online(false);
    browser.go(&overview).await;
    browser.wait_for("You are offline").await;
    let offline = browser.source().await;
    assert!(!offline.contains(&guild.name), "{offline}");
    assert!(!offline.contains("Served by shard"));
    browser.screenshot("logged-out-offline").await;
    network.set_online(true);

    browser.quit().await;
    dashboard.shutdown().await;
}

/// What the policy's "Local Data Storage" section allows in the browser: the theme (and
/// form drafts, none of which the dashboard keeps today), cached pages and assets; never a
/// token, the session, an email or payment data.
fn assert_only_allowed_local_data(data: &Value, secrets: &[&str]) {
    assert!(data.get("error").is_none(), "{data}");
    for key in data["local"].as_object().unwrap().keys() {
        assert!(
            key == "protonn-theme" || key.starts_with("protonn-draft-"),
            "localStorage holds {key}: {data}"
        );
    }
    assert!(
        data["session"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| k.starts_with("protonn-draft-")),
        "{data}"
    );
    assert_eq!(data["idb"], json!([]), "no IndexedDB database");
    for name in data["caches"].as_object().unwrap().keys() {
        assert!(
            name.starts_with("protonn-static-") || name.starts_with("protonn-pages-"),
            "cache {name}"
        );
    }
    let everything = data.to_string();
    for secret in secrets {
        assert!(!everything.contains(secret), "the browser keeps {secret}");
    }
    for word in [
        "access_token",
        "refresh_token",
        "Bearer ",
        "card_number",
        "@example",
    ] {
        assert!(!everything.contains(word), "the browser keeps {word}");
    }
}

/// The dashboard next to `node`, on loopback port 0, its sessions in a temporary directory
/// (kept as long as the returned one).
pub(crate) async fn start_dashboard(
    sim: &SimHandle,
    node: &Node,
) -> (Dashboard, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.web.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.storage.data_dir = data.path().to_owned();
    let dashboard = Dashboard::start(
        &config,
        node,
        format!("http://{}", sim.addr()),
        sim.application_id(),
        Secret::new(protonn_sim::OAUTH_CLIENT_SECRET),
    )
    .await
    .unwrap();
    (dashboard, data)
}

/// A dashboard next to a node with a member signed in from a fresh headless browser. It
/// keeps the dashboard's sessions and the browser's profile (temporary directories) alive.
pub(crate) struct SignedIn {
    pub(crate) browser: WebDriver,
    pub(crate) origin: String,
    dashboard: Dashboard,
    _data: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl SignedIn {
    /// `user` signed in to a dashboard next to `node`.
    pub(crate) async fn start(sim: &SimHandle, node: &Node, user: u64) -> Self {
        let (dashboard, data) = start_dashboard(sim, node).await;
        let origin = dashboard.url().to_owned();
        let profile = tempfile::tempdir().unwrap();
        let browser = WebDriver::start(profile.path()).await;
        login_as(&browser, &origin, user).await;
        Self {
            browser,
            origin,
            dashboard,
            _data: data,
            _profile: profile,
        }
    }

    pub(crate) async fn close(self) {
        self.browser.quit().await;
        self.dashboard.shutdown().await;
    }
}

/// Logs `user` in through the simulator's consent page.
pub(crate) async fn login_as(browser: &WebDriver, origin: &str, user: u64) {
    browser.go(&format!("{origin}/login")).await;
    browser.wait_for("Log in with Discord").await;
    browser.click("#login").await;
    browser.wait_for("Pick a simulated user").await;
    browser
        .click(&format!("button[data-user-id=\"{user}\"]"))
        .await;
    browser.wait_for("Servers you").await;
}

/// Only the release's static assets may remain: the page just shown registers the service
/// worker again, which caches them anew.
fn assert_no_kept_pages(data: &Value) {
    for name in data["caches"].as_object().unwrap().keys() {
        assert!(name.starts_with("protonn-static-"), "{name}: {data}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_keeps_only_what_the_policy_lists_and_the_privacy_centre_works() {
    if !browser_installed() {
        return;
    }
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(1, 3)).await;
    let guild = some_guild(sim, 0);
    wait_until("the guild is cached", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;
    let (dashboard, _data) = start_dashboard(sim, node).await;
    let origin = dashboard.url().to_owned();
    let profile = tempfile::tempdir().unwrap();
    let mut browser = WebDriver::start(profile.path()).await;

    // A session: pages read, the theme chosen, the service worker in control.
    login_as(&browser, &origin, guild.owner_id).await;
    let overview = format!("{origin}/guilds/{}", guild.id);
    wait_until("the service worker controls the page", || async {
        browser.go(&overview).await;
        browser
            .script("return navigator.serviceWorker.controller !== null")
            .await
            == json!(true)
    })
    .await;
    browser.go(&format!("{origin}/account")).await;
    browser.wait_for("Log out everywhere").await;
    browser
        .script("var s = document.getElementById('theme'); s.value = 'dark'; s.dispatchEvent(new Event('change')); return true")
        .await;
    browser.go(&format!("{origin}/privacy")).await;
    browser.wait_for("Privacy centre").await;
    let source = browser.source().await;
    let csrf_at = source.find("name=\"csrf\" value=\"").unwrap() + 20;
    let csrf = source[csrf_at..csrf_at + source[csrf_at..].find('"').unwrap()].to_owned();
    let cookie = browser.session_cookie().await.expect("logged in");
    wait_until("the privacy page is kept for offline reading", || async {
        let kept = browser.local_data().await;
        kept["caches"]
            .as_object()
            .unwrap()
            .iter()
            .any(|(name, entries)| {
                name.starts_with("protonn-pages-")
                    && entries
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["url"].as_str().unwrap().ends_with("/privacy"))
            })
    })
    .await;
    let during = browser.local_data().await;
    assert_eq!(during["local"]["protonn-theme"], "dark");
    assert_only_allowed_local_data(&during, &[&csrf, &cookie]);
    browser.screenshot("privacy-centre").await;

    // Logout: the kept pages go, the theme (a preference) stays, nothing else appears.
    browser.click("form[action=\"/logout\"] button").await;
    browser.wait_for("You are logged out").await;
    let after = browser.local_data().await;
    assert_only_allowed_local_data(&after, &[&csrf, &cookie]);
    assert!(
        after["caches"]
            .as_object()
            .unwrap()
            .keys()
            .all(|n| !n.starts_with("protonn-pages-")),
        "{after}"
    );
    assert_eq!(after["local"]["protonn-theme"], "dark");
    assert_eq!(browser.session_cookie().await, None);

    // The privacy centre, clicked through: export, choices, correction, history, deletion.
    login_as(&browser, &origin, guild.owner_id).await;
    browser.go(&format!("{origin}/privacy")).await;
    browser.click("#request-export").await;
    browser.wait_for("being prepared").await;
    wait_until("the export is ready", || async {
        browser.go(&format!("{origin}/privacy")).await;
        browser.source().await.contains("id=\"download-export\"")
    })
    .await;
    browser.screenshot("privacy-export-ready").await;
    browser.click("#objects").await;
    browser.click("#save-choices").await;
    browser.wait_for("Your choices were saved").await;
    assert!(
        node.store()
            .privacy_flags(guild.owner_id)
            .await
            .unwrap()
            .objects
    );
    browser.click("#refresh-profile").await;
    browser
        .wait_for("Your profile was refreshed from Discord")
        .await;
    for row in [
        "data-request=\"export\"",
        "data-request=\"objection\"",
        "data-request=\"correction\"",
    ] {
        browser.wait_for(row).await;
    }
    browser.screenshot("privacy-history").await;
    browser.fill("#confirm-delete", "delete my data").await;
    browser.click("#delete-account").await;
    browser.wait_for("Your data is deleted").await;
    browser.screenshot("privacy-deleted").await;
    let erased = browser.local_data().await;
    assert_eq!(erased["local"], json!({}), "{erased}");
    assert_no_kept_pages(&erased);
    assert_eq!(browser.session_cookie().await, None);
    let needle = guild.owner_id.to_string();
    let rows = node.store().dump_rows().await.unwrap();
    assert!(rows.iter().all(|r| !r.text.contains(&needle)));

    // A member reported under the minimum age: the operators' erasure reaches their
    // browser at its next visit.
    let member = guild.member_ids[0];
    login_as(&browser, &origin, member).await;
    browser
        .script("localStorage.setItem('protonn-theme', 'light'); return true")
        .await;
    protonn_storage::privacy::erase_child(
        node.store().as_ref(),
        member,
        4242,
        protonn_storage::Timestamp::now(),
    )
    .await
    .unwrap();
    browser.go(&format!("{origin}/guilds")).await;
    browser.wait_for("site-data-cleared").await;
    let cleared = browser.local_data().await;
    assert_eq!(cleared["local"], json!({}), "{cleared}");
    assert_no_kept_pages(&cleared);
    assert_eq!(browser.session_cookie().await, None);
    browser.screenshot("child-data-cleared").await;

    browser.quit().await;
    dashboard.shutdown().await;
}
