//! The dashboard against the simulator's OAuth2 provider and an in-memory guild-call fake:
//! login, the guild pages, and every bad input of issue 16 refused with nothing changed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use protonn_actors::{
    ChannelSummary, GuildCall, GuildCallError, GuildCalls, GuildRequest, GuildResponse,
    GuildSummary, MemberAccess, NativeRuleStatus, NativeSync, RoleSummary,
};
use protonn_sim::{GuildInfo, SimConfig, SimHandle, Simulator};
use protonn_storage::{
    AccountRepo, AnnouncementRepo, AuditRepo, BillingRepo, DataRights, EmbeddedStore, GuildConfig,
    Plan, PremiumRepo, PrivacyRepo, PromoCode, Timestamp, VersionedConfig, WebSessionRepo,
    guild_plan,
};
use protonn_web::{AppState, Secret, WebConfig};
use tokio::net::TcpListener;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);
/// What the fake bot says of every native automod rule.
const NO_MANAGE_SERVER: &str =
    "the bot needs the Manage Server permission to manage Discord's AutoMod rules";

/// Guilds as the bot's nodes would answer for them: configs with versions and history, the
/// owner may manage, others may not (unless granted), guilds the sim removed are unknown.
#[derive(Default)]
struct FakeGuilds {
    guilds: Vec<GuildInfo>,
    removed: Mutex<HashSet<u64>>,
    /// Newest first, per guild.
    configs: Mutex<HashMap<u64, Vec<VersionedConfig>>>,
    /// Owners who lost access (as if Discord changed their permissions).
    demoted: Mutex<HashSet<u64>>,
    calls: Mutex<Vec<GuildCall>>,
    applied_keys: Mutex<HashMap<String, GuildResponse>>,
    /// (guild, user) pairs that may manage a guild they do not own (Manage Server).
    managers: Mutex<HashSet<(u64, u64)>>,
}

impl FakeGuilds {
    fn history(&self, guild_id: u64) -> Vec<VersionedConfig> {
        self.configs
            .lock()
            .unwrap()
            .get(&guild_id)
            .cloned()
            .unwrap_or_default()
    }

    fn current(&self, guild_id: u64) -> VersionedConfig {
        self.history(guild_id)
            .first()
            .cloned()
            .unwrap_or(VersionedConfig {
                version: 0,
                config: GuildConfig::default(),
            })
    }

    fn save(
        &self,
        guild_id: u64,
        config: GuildConfig,
        expected: u64,
    ) -> Result<GuildResponse, GuildCallError> {
        let current = self.current(guild_id).version;
        if current != expected {
            return Err(GuildCallError::Conflict { current });
        }
        let saved = VersionedConfig {
            version: current + 1,
            config,
        };
        self.configs
            .lock()
            .unwrap()
            .entry(guild_id)
            .or_default()
            .insert(0, saved.clone());
        Ok(GuildResponse::Config(saved))
    }
}

#[async_trait]
impl GuildCalls for FakeGuilds {
    async fn call(&self, call: GuildCall) -> Result<GuildResponse, GuildCallError> {
        self.calls.lock().unwrap().push(call.clone());
        let guild = self
            .guilds
            .iter()
            .find(|g| g.id == call.guild_id)
            .ok_or(GuildCallError::UnknownGuild)?;
        if self.removed.lock().unwrap().contains(&guild.id) {
            return Err(GuildCallError::BotNotInGuild);
        }
        if let Some(key) = &call.idempotency_key
            && let Some(first) = self.applied_keys.lock().unwrap().get(key)
        {
            return Ok(first.clone());
        }
        let answer = match call.request {
            GuildRequest::ReadConfig => Ok(GuildResponse::Config(self.current(guild.id))),
            GuildRequest::ChangeConfig {
                config,
                expected_version,
            } => self.save(guild.id, config, expected_version),
            GuildRequest::ConfigHistory => Ok(GuildResponse::History {
                versions: self.history(guild.id),
            }),
            GuildRequest::RollbackConfig {
                to_version,
                expected_version,
            } => {
                let Some(old) = self
                    .history(guild.id)
                    .into_iter()
                    .find(|v| v.version == to_version)
                else {
                    return Err(GuildCallError::Invalid {
                        message: "no such version".into(),
                    });
                };
                self.save(guild.id, old.config, expected_version)
            }
            GuildRequest::Summary => Ok(GuildResponse::Summary(GuildSummary {
                guild_id: guild.id,
                name: guild.name.clone(),
                icon: None,
                owner_id: guild.owner_id,
                member_count: Some(guild.member_ids.len() as u64 + 2),
                channels: guild
                    .channel_ids
                    .iter()
                    .enumerate()
                    .map(|(i, &id)| ChannelSummary {
                        id,
                        name: format!("channel-{i}"),
                        kind: 0,
                        position: i as i32,
                        parent_id: None,
                    })
                    .collect(),
                roles: vec![RoleSummary {
                    id: guild.id + 1,
                    name: "Moderator".into(),
                    color: 0x3498db,
                    position: 1,
                }],
                shard_id: guild.shard,
                node: "test-node".into(),
            })),
            // The dashboard has no moderation pages yet.
            GuildRequest::Cases { .. } => Ok(GuildResponse::Cases { cases: Vec::new() }),
            GuildRequest::AutomodHits { .. } => Ok(GuildResponse::AutomodHits { hits: Vec::new() }),
            GuildRequest::AutomodTest { .. } => Ok(GuildResponse::AutomodTest {
                matches: Vec::new(),
            }),
            // As a bot without Manage Server answers.
            GuildRequest::AutomodNative => Ok(GuildResponse::AutomodNative {
                rules: self
                    .current(guild.id)
                    .config
                    .automod
                    .rules
                    .iter()
                    .filter(|rule| rule.native)
                    .map(|rule| NativeRuleStatus {
                        rule: rule.name.clone(),
                        sync: NativeSync::NotOnDiscord {
                            why: NO_MANAGE_SERVER.into(),
                        },
                    })
                    .collect(),
            }),
            // Nor workflow pages.
            GuildRequest::ListWorkflows
            | GuildRequest::SaveWorkflow { .. }
            | GuildRequest::SetWorkflowEnabled { .. }
            | GuildRequest::DeleteWorkflow { .. }
            | GuildRequest::DryRunWorkflow { .. }
            | GuildRequest::WorkflowRuns { .. }
            | GuildRequest::RecentWorkflowEvents => Err(GuildCallError::Invalid {
                message: "no workflows in this fake".into(),
            }),
            // Nor scheduled announcements (the e2e tests use the real bot).
            GuildRequest::ListAnnounceSchedules
            | GuildRequest::SaveAnnounceSchedule { .. }
            | GuildRequest::SetAnnounceSchedulePaused { .. }
            | GuildRequest::DeleteAnnounceSchedule { .. } => Err(GuildCallError::Invalid {
                message: "no scheduled announcements in this fake".into(),
            }),
            GuildRequest::MemberPermissions { user_id } => {
                let owner = (user_id == guild.owner_id
                    || self.managers.lock().unwrap().contains(&(guild.id, user_id)))
                    && !self.demoted.lock().unwrap().contains(&user_id);
                Ok(GuildResponse::Permissions(MemberAccess {
                    permissions: if owner { u64::MAX } else { 0 },
                    is_owner: owner,
                    is_staff: false,
                    can_manage: owner,
                }))
            }
        };
        if let (Some(key), Ok(answer)) = (&call.idempotency_key, &answer) {
            self.applied_keys
                .lock()
                .unwrap()
                .insert(key.clone(), answer.clone());
        }
        answer
    }
}

struct Harness {
    sim: SimHandle,
    web: String,
    guilds: Arc<FakeGuilds>,
    store: EmbeddedStore,
    client_id: u64,
    _dir: tempfile::TempDir,
}

async fn start_with(adjust: impl FnOnce(&mut WebConfig)) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(
        SimConfig {
            guilds: 4,
            shards: 1,
            ..SimConfig::default()
        },
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let sim_url = format!("http://{}", sim.addr());
    let app: serde_json::Value = serde_json::from_slice(
        &request_raw(
            Method::GET,
            &format!("{sim_url}/api/v10/oauth2/applications/@me"),
            &[("authorization", "Bot sim-token")],
            None,
        )
        .await
        .2,
    )
    .unwrap();
    let client_id: u64 = app["id"].as_str().unwrap().parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}", listener.local_addr().unwrap());
    let mut config = WebConfig::new(
        web.clone(),
        sim_url,
        client_id,
        Secret::new(protonn_sim::OAUTH_CLIENT_SECRET),
        Secret::new(base64::engine::general_purpose::STANDARD.encode([9u8; 32])),
    );
    // The bot's operator: a member of the first guild (not its owner).
    config.operator_ids = vec![operator(&sim)];
    adjust(&mut config);
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let guilds = Arc::new(FakeGuilds {
        guilds: sim.guilds(),
        ..FakeGuilds::default()
    });
    let state = AppState::new(config, Arc::new(store.clone()), guilds.clone())
        .unwrap()
        .with_premium(Arc::new(store.clone()));
    tokio::spawn(async move {
        axum::serve(listener, protonn_web::router(state))
            .await
            .unwrap();
    });
    Harness {
        sim,
        web,
        guilds,
        store,
        client_id,
        _dir: dir,
    }
}

async fn start() -> Harness {
    start_with(|_| {}).await
}

type Answer = (StatusCode, hyper::HeaderMap, Bytes);

async fn request_raw(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<String>,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if form.is_some() {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    let body = Full::new(Bytes::from(form.unwrap_or_default()));
    let response = tokio::time::timeout(WAIT, client.request(builder.body(body).unwrap()))
        .await
        .expect("answered in time")
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn location(answer: &Answer) -> String {
    answer
        .1
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location: {:?} {}", answer.0, text(answer)))
        .to_str()
        .unwrap()
        .to_owned()
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.2).into_owned()
}

/// The value of `name="field" value="…"` in a page.
fn field(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A browser: one cookie (the session), no redirects followed unless asked.
struct Browser {
    web: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(h: &Harness) -> Self {
        Self {
            web: h.web.clone(),
            cookie: None,
        }
    }

    fn keep_cookie(&mut self, answer: &Answer) {
        for value in answer.1.get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap();
            let (_, secret) = pair.split_once('=').unwrap();
            self.cookie = (!secret.is_empty()).then(|| pair.to_owned());
        }
    }

    async fn send(&mut self, method: Method, url: &str, form: Option<String>) -> Answer {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.web)
        };
        let cookie = self.cookie.clone();
        let mut headers = Vec::new();
        if let Some(cookie) = &cookie
            && url.starts_with(&self.web)
        {
            headers.push((COOKIE.as_str(), cookie.as_str()));
        }
        let answer = request_raw(method, &url, &headers, form).await;
        if url.starts_with(&self.web) {
            self.keep_cookie(&answer);
        }
        answer
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        self.send(Method::POST, path, Some(encode(pairs))).await
    }

    /// Logs in as `user_id` through the simulator's consent page; returns the callback URL
    /// the provider sent the browser to, and the answer to it.
    async fn login(&mut self, h: &Harness, user_id: u64, next: &str) -> (String, Answer) {
        let start = self
            .get(&format!(
                "/auth/login?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(start.0, StatusCode::SEE_OTHER);
        let authorize = location(&start);
        let consent = self.get(&authorize).await;
        assert_eq!(consent.0, StatusCode::OK, "{}", text(&consent));
        let query: HashMap<String, String> =
            form_urlencoded::parse(authorize.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(query["client_id"], h.client_id.to_string());
        assert_eq!(query["scope"], "identify guilds");
        assert!(query["state"].len() >= 22, "state has at least 128 bits");
        let mut pairs: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let user = user_id.to_string();
        pairs.push(("user_id", &user));
        let granted = self
            .send(
                Method::POST,
                &format!("http://{}/oauth2/authorize", h.sim.addr()),
                Some(encode(&pairs)),
            )
            .await;
        assert_eq!(granted.0, StatusCode::FOUND, "{}", text(&granted));
        let callback = location(&granted);
        let answer = self.get(&callback).await;
        (callback, answer)
    }
}

fn operator(sim: &SimHandle) -> u64 {
    sim.guilds()[0].member_ids[0]
}

fn owned_guild(h: &Harness) -> GuildInfo {
    h.sim.guilds()[0].clone()
}

async fn logged_in_owner(h: &Harness) -> (Browser, GuildInfo) {
    let guild = owned_guild(h);
    let mut browser = Browser::new(h);
    let (_, answer) = browser.login(h, guild.owner_id, "/guilds").await;
    assert_eq!(answer.0, StatusCode::SEE_OTHER, "{}", text(&answer));
    assert_eq!(location(&answer), "/guilds");
    (browser, guild)
}

/// A guild owner (refused `admin_page`: not an operator) and an operator logged in to it.
async fn owner_and_operator_on(h: &Harness, admin_page: &str) -> (Browser, Browser) {
    let (mut owner, _) = logged_in_owner(h).await;
    assert_eq!(
        owner.get(admin_page).await.0,
        StatusCode::FORBIDDEN,
        "a guild owner is not an operator"
    );
    let mut operator_browser = Browser::new(h);
    let (_, answer) = operator_browser
        .login(h, operator(&h.sim), admin_page)
        .await;
    assert_eq!(answer.0, StatusCode::SEE_OTHER, "{}", text(&answer));
    (owner, operator_browser)
}

async fn sim_stats(h: &Harness) -> serde_json::Value {
    let answer = request_raw(
        Method::GET,
        &format!("http://{}/sim/oauth2/stats", h.sim.addr()),
        &[],
        None,
    )
    .await;
    serde_json::from_slice(&answer.2).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automod_page_says_why_discord_does_not_run_a_native_rule() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    let path = format!("/guilds/{}/automod", guild.id);
    let page = text(&browser.get(&path).await);
    assert!(
        !page.contains("Native rules on Discord"),
        "no native rule, no section (and no call): {page}"
    );
    let rules = r#"{"rules":[{"name":"scams","trigger":{"kind":"keywords","words":["scam*"]},"actions":[{"kind":"delete"}],"native":true},{"name":"invites","trigger":{"kind":"invite_links"},"actions":[{"kind":"delete"}]}]}"#;
    let fields = [
        ("csrf", field(&page, "csrf")),
        ("expected_version", "0".to_owned()),
        ("idempotency_key", field(&page, "idempotency_key")),
        ("rules", rules.to_owned()),
    ];
    let saved = browser.post(&path, &pairs(&fields)).await;
    assert_eq!(saved.0, StatusCode::SEE_OTHER, "{}", text(&saved));
    let page = text(&browser.get(&path).await);
    let section = &page[page
        .find("Native rules on Discord")
        .unwrap_or_else(|| panic!("{page}"))..];
    let table = &section[..section.find("</table>").unwrap()];
    assert!(table.contains("scams"), "{table}");
    assert!(!table.contains("invites"), "only native rules: {table}");
    assert!(
        table.contains("No: the bot needs the Manage Server permission"),
        "{table}"
    );
}

#[tokio::test]
async fn an_owner_logs_in_changes_the_prefix_and_rolls_it_back() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    let picker = browser.get("/guilds").await;
    assert_eq!(picker.0, StatusCode::OK, "{}", text(&picker));
    let page = text(&picker);
    assert!(
        page.contains(&format!("href=\"/guilds/{}\"", guild.id)),
        "{page}"
    );
    assert_eq!(picker.1["x-protonn-offline"], "page");

    let overview = browser.get(&format!("/guilds/{}", guild.id)).await;
    assert_eq!(overview.0, StatusCode::OK);
    assert!(text(&overview).contains(&guild.name));

    let settings_path = format!("/guilds/{}/settings", guild.id);
    let form = text(&browser.get(&settings_path).await);
    let csrf = field(&form, "csrf");
    let key = field(&form, "idempotency_key");
    let channel = guild.channel_ids[1].to_string();
    let role = (guild.id + 1).to_string();
    let fields = [
        ("csrf", csrf.as_str()),
        ("expected_version", "0"),
        ("idempotency_key", key.as_str()),
        ("prefix", "?"),
        ("locale", "de"),
        ("log_channel", channel.as_str()),
        ("announce_channel", channel.as_str()),
        ("staff_roles", role.as_str()),
    ];
    assert!(
        form.contains("name=\"announce_channel\""),
        "the opt-in is on the settings page: {form}"
    );
    let saved = browser.post(&settings_path, &fields).await;
    assert_eq!(saved.0, StatusCode::SEE_OTHER, "{}", text(&saved));
    assert_eq!(location(&saved), format!("{settings_path}?saved=1"));
    let live = h.guilds.current(guild.id);
    assert_eq!(live.version, 1);
    assert_eq!(live.config.prefix, "?");
    assert_eq!(live.config.log_channel, Some(guild.channel_ids[1]));
    assert_eq!(live.config.announce_channel, Some(guild.channel_ids[1]));
    assert_eq!(live.config.staff_roles, vec![guild.id + 1]);
    // The dashboard's call names the user and its source, for the audit log.
    let calls = h.guilds.calls.lock().unwrap().clone();
    let change = calls
        .iter()
        .find(|c| matches!(c.request, GuildRequest::ChangeConfig { .. }))
        .unwrap();
    assert_eq!(change.caller.user_id, Some(guild.owner_id));
    assert_eq!(change.caller.source, protonn_actors::CallSource::Dashboard);

    // The same form sent twice (a double click, a retry) is applied once.
    let again = browser.post(&settings_path, &fields).await;
    assert_eq!(again.0, StatusCode::SEE_OTHER);
    assert_eq!(h.guilds.current(guild.id).version, 1);

    let history_path = format!("/guilds/{}/history", guild.id);
    let history = text(&browser.get(&history_path).await);
    assert!(history.contains("Version 1 (current)"), "{history}");
    // Someone else saves meanwhile: the stale form is a clear conflict, nothing applied.
    let stale = browser
        .post(
            &settings_path,
            &[
                ("csrf", csrf.as_str()),
                ("expected_version", "0"),
                ("prefix", "%"),
                ("locale", "fr"),
            ],
        )
        .await;
    assert_eq!(stale.0, StatusCode::CONFLICT);
    assert!(
        text(&stale).contains("Someone else saved"),
        "{}",
        text(&stale)
    );
    assert_eq!(h.guilds.current(guild.id).config.prefix, "?");

    // Roll back to the defaults by saving them as version 2, then back to version 1.
    h.guilds.save(guild.id, GuildConfig::default(), 1).unwrap();
    let rolled = browser
        .post(
            &format!("{history_path}/rollback"),
            &[
                ("csrf", csrf.as_str()),
                ("to_version", "1"),
                ("expected_version", "2"),
            ],
        )
        .await;
    assert_eq!(rolled.0, StatusCode::SEE_OTHER, "{}", text(&rolled));
    let live = h.guilds.current(guild.id);
    assert_eq!((live.version, live.config.prefix.as_str()), (3, "?"));
    let history = text(&browser.get(&history_path).await);
    assert!(history.contains("<del>!</del> → <ins>?</ins>"), "{history}");

    let audit = browser.get(&format!("/guilds/{}/audit", guild.id)).await;
    assert_eq!(audit.0, StatusCode::OK);
    let account = text(&browser.get("/account").await);
    assert!(account.contains("(this one)"), "{account}");
}

#[tokio::test]
async fn forged_and_replayed_states_log_nobody_in() {
    let h = start().await;
    let guild = owned_guild(&h);
    let mut browser = Browser::new(&h);
    let (callback, answer) = browser.login(&h, guild.owner_id, "/guilds").await;
    assert_eq!(answer.0, StatusCode::SEE_OTHER);
    // The same callback again (a replayed code and state) is refused.
    let replay = browser.get(&callback).await;
    assert_eq!(replay.0, StatusCode::BAD_REQUEST);
    assert!(text(&replay).contains("invalid, used or expired"));

    // A state from another browser's login does not fit this browser's session.
    let mut victim = Browser::new(&h);
    let start = victim.get("/auth/login").await;
    let forged_state: String =
        form_urlencoded::parse(location(&start).split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
    let mut attacker = Browser::new(&h);
    attacker.get("/auth/login").await;
    let forged = attacker
        .get(&format!(
            "/auth/callback?code=whatever&state={forged_state}"
        ))
        .await;
    assert_eq!(forged.0, StatusCode::BAD_REQUEST);
    // A made-up state, and none at all.
    let made_up = victim.get("/auth/callback?code=x&state=AAAA").await;
    assert_eq!(made_up.0, StatusCode::BAD_REQUEST);
    let without = Browser::new(&h).get("/auth/callback?code=x&state=y").await;
    assert_eq!(without.0, StatusCode::BAD_REQUEST);
    // Only the one real login exists.
    assert_eq!(
        h.store
            .web_sessions_of(guild.owner_id, Timestamp::now())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(sim_stats(&h).await["issued_by_code"], 1);
}

#[tokio::test]
async fn a_login_never_redirects_off_site() {
    let h = start().await;
    let guild = owned_guild(&h);
    let mut browser = Browser::new(&h);
    let (_, answer) = browser
        .login(&h, guild.owner_id, "https://evil.example/")
        .await;
    assert_eq!(location(&answer), "/guilds");
    let mut other = Browser::new(&h);
    let (_, answer) = other.login(&h, guild.owner_id, "//evil.example/x").await;
    assert_eq!(location(&answer), "/guilds");
}

#[tokio::test]
async fn a_form_without_its_csrf_token_changes_nothing() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    let path = format!("/guilds/{}/settings", guild.id);
    for csrf in [None, Some("not-the-token")] {
        let mut fields = vec![("expected_version", "0"), ("prefix", "?"), ("locale", "de")];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        let refused = browser.post(&path, &fields).await;
        assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", text(&refused));
        assert!(text(&refused).contains("did not come from this site"));
    }
    let logout = browser.post("/logout", &[]).await;
    assert_eq!(logout.0, StatusCode::FORBIDDEN);
    assert_eq!(h.guilds.current(guild.id).version, 0);
    assert_eq!(
        browser.get("/guilds").await.0,
        StatusCode::OK,
        "still logged in"
    );
}

#[tokio::test]
async fn another_users_guild_and_lost_permissions_are_refused() {
    let h = start().await;
    let guilds = h.sim.guilds();
    let (mut browser, guild) = logged_in_owner(&h).await;
    let foreign = guilds
        .iter()
        .find(|g| g.owner_id != guild.owner_id)
        .unwrap();
    let refused = browser
        .get(&format!("/guilds/{}/settings", foreign.id))
        .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    assert!(text(&refused).contains("cannot manage this server"));
    let csrf = field(&text(&browser.get("/account").await), "csrf");
    let post = browser
        .post(
            &format!("/guilds/{}/settings", foreign.id),
            &[
                ("csrf", &csrf),
                ("expected_version", "0"),
                ("prefix", "?"),
                ("locale", "de"),
            ],
        )
        .await;
    assert_eq!(post.0, StatusCode::FORBIDDEN);
    assert_eq!(h.guilds.current(foreign.id).version, 0);
    assert_eq!(
        browser.get("/guilds/not-a-number").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(browser.get("/guilds/1").await.0, StatusCode::NOT_FOUND);

    // Access goes at the next request once Discord says the user lost it.
    let own = format!("/guilds/{}", guild.id);
    assert_eq!(browser.get(&own).await.0, StatusCode::OK);
    h.guilds.demoted.lock().unwrap().insert(guild.owner_id);
    assert_eq!(browser.get(&own).await.0, StatusCode::FORBIDDEN);
    let picker = text(&browser.get("/guilds").await);
    assert!(!picker.contains(&format!("href=\"{own}\"")), "{picker}");
}

#[tokio::test]
async fn oversized_and_malformed_fields_are_refused() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    let path = format!("/guilds/{}/settings", guild.id);
    let csrf = field(&text(&browser.get(&path).await), "csrf");
    let long = "x".repeat(300);
    let huge = "y".repeat(20_000);
    let foreign_channel = h.sim.guilds()[1].channel_ids[0].to_string();
    type Case<'a> = (Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("prefix", "toolong"), ("locale", "de")],
            StatusCode::BAD_REQUEST,
            "1 to 5",
        ),
        (
            vec![("prefix", "a b"), ("locale", "de")],
            StatusCode::BAD_REQUEST,
            "spaces",
        ),
        (
            vec![("prefix", "?"), ("locale", "xx-XX")],
            StatusCode::BAD_REQUEST,
            "unknown locale",
        ),
        (
            vec![
                ("prefix", "?"),
                ("locale", "de"),
                ("log_channel", &foreign_channel),
            ],
            StatusCode::BAD_REQUEST,
            "not a text channel of this server",
        ),
        (
            vec![
                ("prefix", "?"),
                ("locale", "de"),
                ("announce_channel", &foreign_channel),
            ],
            StatusCode::BAD_REQUEST,
            "the announcement channel is not a text channel of this server",
        ),
        (
            vec![("prefix", "?"), ("locale", "de"), ("staff_roles", "123")],
            StatusCode::BAD_REQUEST,
            "not a role of this server",
        ),
        (
            vec![("prefix", "?"), ("prefix", "!"), ("locale", "de")],
            StatusCode::BAD_REQUEST,
            "given twice",
        ),
        (
            vec![("prefix", &long), ("locale", "de")],
            StatusCode::BAD_REQUEST,
            "too long",
        ),
        (
            vec![("prefix", "?"), ("locale", "de"), ("padding", &huge)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
        ),
    ];
    for (mut fields, status, message) in cases {
        fields.push(("csrf", &csrf));
        fields.push(("expected_version", "0"));
        let answer = browser.post(&path, &fields).await;
        assert_eq!(answer.0, status, "{fields:?}: {}", text(&answer));
        assert!(
            text(&answer).contains(message),
            "{message}: {}",
            text(&answer)
        );
    }
    let no_version = browser
        .post(&path, &[("csrf", &csrf), ("prefix", "?"), ("locale", "de")])
        .await;
    assert_eq!(no_version.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.guilds.current(guild.id).version, 0, "nothing was saved");
}

#[tokio::test]
async fn an_idle_session_ends() {
    let h = start_with(|c| c.session_idle = Duration::from_secs(1)).await;
    let (mut browser, _) = logged_in_owner(&h).await;
    assert_eq!(browser.get("/account").await.0, StatusCode::OK);
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = browser.get("/account").await;
        if answer.0 == StatusCode::SEE_OTHER {
            assert_eq!(location(&answer), "/login?next=%2Faccount&expired=1");
            break;
        }
        assert!(Instant::now() < deadline, "the idle session never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ended for good: the row is gone, not merely refused.
    assert_eq!(browser.get("/account").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_token_revoked_in_discord_ends_the_session() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    let revoked = request_raw(
        Method::POST,
        &format!(
            "http://{}/sim/oauth2/users/{}/revoke",
            h.sim.addr(),
            guild.owner_id
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(revoked.0, StatusCode::OK);
    let answer = browser.get("/guilds").await;
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED);
    assert!(text(&answer).contains("log in again"));
    assert_eq!(browser.get("/guilds").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire_and_revoked_at_logout() {
    let h = start().await;
    // Tokens that expire within the refresh margin get refreshed at the next request.
    request_raw(
        Method::POST,
        &format!("http://{}/sim/oauth2/token_ttl_secs/120", h.sim.addr()),
        &[],
        None,
    )
    .await;
    let (mut browser, _) = logged_in_owner(&h).await;
    assert_eq!(browser.get("/guilds").await.0, StatusCode::OK);
    let stats = sim_stats(&h).await;
    assert!(stats["issued_by_refresh"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(
        stats["access_tokens"], 1,
        "the refreshed token replaced the old one"
    );

    let csrf = field(&text(&browser.get("/account").await), "csrf");
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.0, StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/login?logged_out=1");
    assert!(out.1[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let stats = sim_stats(&h).await;
    assert_eq!(
        (
            stats["access_tokens"].as_u64(),
            stats["refresh_tokens"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert!(browser.cookie.is_none());
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session() {
    let h = start().await;
    let (mut first, guild) = logged_in_owner(&h).await;
    let mut second = Browser::new(&h);
    second.login(&h, guild.owner_id, "/guilds").await;
    let account = text(&first.get("/account").await);
    assert_eq!(
        account.matches("<tr>").count(),
        3,
        "a header and two sessions: {account}"
    );
    let csrf = field(&account, "csrf");
    let out = first
        .post("/account/logout-everywhere", &[("csrf", &csrf)])
        .await;
    assert_eq!(out.0, StatusCode::SEE_OTHER);
    assert_eq!(second.get("/account").await.0, StatusCode::SEE_OTHER);
    assert_eq!(sim_stats(&h).await["access_tokens"], 0);
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_a_strict_cookie() {
    let h = start().await;
    let mut browser = Browser::new(&h);
    let start = browser.get("/auth/login").await;
    let cookie = start.1[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http://127.0.0.1 only");
    for path in ["/login", "/guilds", "/assets/app.js", "/nope", "/sw.js"] {
        let answer = browser.get(path).await;
        let csp = answer.1["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(answer.1["x-content-type-options"], "nosniff");
        assert_eq!(answer.1["referrer-policy"], "same-origin");
    }
    let login = text(&browser.get("/login").await);
    assert!(!login.contains("<script>"), "no inline script");
    let sw = text(&browser.get("/sw.js").await);
    assert!(!sw.contains("__VERSION__"));
}

#[tokio::test]
async fn the_manifest_names_installable_icons_and_each_is_served() {
    let h = start().await;
    let mut browser = Browser::new(&h);
    let manifest: serde_json::Value =
        serde_json::from_slice(&browser.get("/manifest.webmanifest").await.2).unwrap();
    let icons = manifest["icons"].as_array().unwrap();
    // Browsers that install only from bitmaps want a 192 and a 512 px PNG.
    for size in ["192x192", "512x512"] {
        assert!(
            icons
                .iter()
                .any(|icon| icon["sizes"] == size && icon["type"] == "image/png"),
            "no {size} PNG icon in {icons:?}"
        );
    }
    for icon in icons {
        let src = icon["src"].as_str().unwrap();
        let answer = browser.get(src).await;
        assert_eq!(answer.0, StatusCode::OK, "{src}");
        assert_eq!(
            answer.1[CONTENT_TYPE],
            icon["type"].as_str().unwrap(),
            "{src}"
        );
        if icon["type"] == "image/png" {
            // The PNG signature, then IHDR's width and height.
            assert_eq!(&answer.2[..8], b"\x89PNG\r\n\x1a\n", "{src}");
            let width = u32::from_be_bytes(answer.2[16..20].try_into().unwrap());
            let height = u32::from_be_bytes(answer.2[20..24].try_into().unwrap());
            assert_eq!(format!("{width}x{height}"), icon["sizes"], "{src}");
        }
    }
}

#[tokio::test]
async fn secure_cookies_are_required_off_loopback() {
    let mut config = WebConfig::new(
        "http://dash.example.com",
        "https://discord.com",
        1,
        Secret::new("s"),
        Secret::new(base64::engine::general_purpose::STANDARD.encode([1u8; 32])),
    );
    assert!(config.validate().is_err(), "plain http off loopback");
    config.public_url = "https://dash.example.com".into();
    config.validate().unwrap();
    config.secure_cookies = false;
    assert!(config.validate().is_err());
    assert!(
        !format!("{config:?}").contains("AQEB"),
        "the key stays out of Debug"
    );
}

#[tokio::test]
async fn premium_slots_go_only_to_managed_servers_and_move_between_them() {
    let h = start().await;
    let guilds = h.sim.guilds();
    let (mut browser, guild) = logged_in_owner(&h).await;
    let user = guild.owner_id;
    let foreign = guilds.iter().find(|g| g.owner_id != user).unwrap().clone();
    let now = Timestamp::now();
    h.store
        .create_promo(&PromoCode {
            code: "TRY".into(),
            percent_off: 0,
            max_redemptions: 5,
            expires_at: now.saturating_add(Duration::from_secs(3_600)),
            premium_days: 30,
            slots: 1,
            new_users_only: false,
        })
        .await
        .unwrap();
    let page = text(&browser.get("/premium").await);
    assert!(
        page.contains("You have 0 premium slot(s), 0 free."),
        "{page}"
    );
    let csrf = field(&page, "csrf");

    // Without a slot, or without the CSRF token, or with an unknown code: refused.
    let none = browser
        .post(
            "/premium/assign",
            &[("csrf", &csrf), ("guild", &guild.id.to_string())],
        )
        .await;
    assert_eq!(none.0, StatusCode::BAD_REQUEST);
    assert!(text(&none).contains("no free premium slot"));
    let forged = browser.post("/premium/redeem", &[("code", "TRY")]).await;
    assert_eq!(forged.0, StatusCode::FORBIDDEN);
    let unknown = browser
        .post("/premium/redeem", &[("csrf", &csrf), ("code", "NOPE")])
        .await;
    assert_eq!(unknown.0, StatusCode::BAD_REQUEST);
    assert!(
        text(&unknown).contains("unknown code"),
        "{}",
        text(&unknown)
    );
    assert!(h.store.redemptions_of_user(user).await.unwrap().is_empty());

    let redeemed = browser
        .post("/premium/redeem", &[("csrf", &csrf), ("code", "TRY")])
        .await;
    assert_eq!(redeemed.0, StatusCode::SEE_OTHER, "{}", text(&redeemed));

    // A server the user does not manage: refused, nothing assigned.
    let refused = browser
        .post(
            "/premium/assign",
            &[("csrf", &csrf), ("guild", &foreign.id.to_string())],
        )
        .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    assert!(h.store.slots_of_user(user).await.unwrap().is_empty());

    let assigned = browser
        .post(
            "/premium/assign",
            &[("csrf", &csrf), ("guild", &guild.id.to_string())],
        )
        .await;
    assert_eq!(assigned.0, StatusCode::SEE_OTHER, "{}", text(&assigned));
    assert_eq!(
        guild_plan(&h.store, guild.id, now).await.unwrap(),
        Plan::Premium
    );

    // Moving to an unmanaged server fails and keeps the slot where it was.
    let from = guild.id.to_string();
    let to = foreign.id.to_string();
    let moved = browser
        .post(
            "/premium/move",
            &[("csrf", &csrf), ("from", &from), ("to", &to)],
        )
        .await;
    assert_eq!(moved.0, StatusCode::FORBIDDEN);
    assert_eq!(
        guild_plan(&h.store, guild.id, now).await.unwrap(),
        Plan::Premium
    );

    // Once the user may manage it (Manage Server there), the slot moves.
    h.guilds.managers.lock().unwrap().insert((foreign.id, user));
    let moved = browser
        .post(
            "/premium/move",
            &[("csrf", &csrf), ("from", &from), ("to", &to)],
        )
        .await;
    assert_eq!(moved.0, StatusCode::SEE_OTHER, "{}", text(&moved));
    let now = Timestamp::now();
    assert_eq!(
        guild_plan(&h.store, guild.id, now).await.unwrap(),
        Plan::Free
    );
    assert_eq!(
        guild_plan(&h.store, foreign.id, now).await.unwrap(),
        Plan::Premium
    );
    let audit = h
        .store
        .list_audit(foreign.id, Timestamp(0), Timestamp(u64::MAX), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].action.as_str(), audit[0].actor_id),
        ("premium.assign", user)
    );
    let redemptions = h
        .store
        .list_audit(0, Timestamp(0), Timestamp(u64::MAX), 10)
        .await
        .unwrap();
    assert_eq!(redemptions.len(), 1);
    assert_eq!(redemptions[0].action, "promo.redeem");
}

/// Polls the privacy centre until it shows `text`.
async fn privacy_page_showing(browser: &mut Browser, text_wanted: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = text(&browser.get("/privacy").await);
        if page.contains(text_wanted) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "never showed {text_wanted}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_privacy_centre_exports_once_corrects_and_records_choices() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    let user = guild.owner_id;
    h.store.touch_account(user, Timestamp::now()).await.unwrap();
    let page = text(&browser.get("/privacy").await);
    assert!(page.contains("Privacy centre"), "{page}");
    let csrf = field(&page, "csrf");

    // Without the CSRF token nothing is recorded.
    let forged = browser.post("/privacy/export", &[]).await;
    assert_eq!(forged.0, StatusCode::FORBIDDEN);
    assert!(h.store.privacy_requests_of(user).await.unwrap().is_empty());

    // Export: requested, prepared in the background, downloaded once.
    let asked = browser.post("/privacy/export", &[("csrf", &csrf)]).await;
    assert_eq!(location(&asked), "/privacy?notice=export");
    privacy_page_showing(&mut browser, "id=\"download-export\"").await;
    let file = browser
        .post("/privacy/export/download", &[("csrf", &csrf)])
        .await;
    assert_eq!(file.0, StatusCode::OK);
    assert!(
        file.1[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(
        file.1["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let document: serde_json::Value = serde_json::from_slice(&file.2).unwrap();
    assert_eq!(document["schema"], "protonn.user-export/1");
    assert_eq!(document["data"]["user_id"], user);
    assert_eq!(document["data"]["account"]["user_id"], user);
    assert_eq!(
        document["data"]["web_sessions"].as_array().unwrap().len(),
        1
    );
    assert!(
        !String::from_utf8_lossy(&file.2).contains(&csrf),
        "no session secrets"
    );
    let again = browser
        .post("/privacy/export/download", &[("csrf", &csrf)])
        .await;
    assert_eq!(location(&again), "/privacy?notice=no_export");

    // Choices: applied at once, each change logged as its request.
    let bad = browser
        .post(
            "/privacy/choices",
            &[("csrf", &csrf), ("restricted", "yes")],
        )
        .await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.store.privacy_flags(user).await.unwrap(),
        Default::default()
    );
    let saved = browser
        .post(
            "/privacy/choices",
            &[
                ("csrf", &csrf),
                ("restricted", "1"),
                ("announcements_consent", "1"),
            ],
        )
        .await;
    assert_eq!(location(&saved), "/privacy?notice=choices");
    let flags = h.store.privacy_flags(user).await.unwrap();
    assert!(flags.restricted && flags.announcements_consent && !flags.objects);
    assert!(!flags.may_process() && !flags.may_announce());

    // Correction: the profile is fetched again from Discord.
    let corrected = browser.post("/privacy/correct", &[("csrf", &csrf)]).await;
    assert_eq!(location(&corrected), "/privacy?notice=corrected");

    let mut kinds: Vec<&str> = Vec::new();
    let log = h.store.privacy_requests_of(user).await.unwrap();
    for request in &log {
        assert!(request.done_at.is_some(), "{request:?}");
        kinds.push(request.kind.as_str());
    }
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["consent_withdrawal", "correction", "export", "restriction"]
    );
    let page = text(&browser.get("/privacy").await);
    for shown in [
        "data-request=\"export\"",
        "data-request=\"correction\"",
        "restriction on",
    ] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
}

#[tokio::test]
async fn deleting_needs_the_typed_confirmation_then_erases_and_ends_every_session() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    let user = guild.owner_id;
    let mut second = Browser::new(&h);
    second.login(&h, user, "/guilds").await;
    h.store.touch_account(user, Timestamp::now()).await.unwrap();
    let csrf = field(&text(&browser.get("/privacy").await), "csrf");

    let unconfirmed = browser
        .post("/privacy/delete", &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(unconfirmed.0, StatusCode::BAD_REQUEST);
    assert!(h.store.account(user).await.unwrap().is_some());

    let deleted = browser
        .post(
            "/privacy/delete",
            &[("csrf", &csrf), ("confirm", "delete my data")],
        )
        .await;
    assert_eq!(deleted.0, StatusCode::OK);
    assert!(text(&deleted).contains("Everything we held about you is erased"));
    let clear = deleted.1["clear-site-data"].to_str().unwrap();
    assert!(
        clear.contains("\"storage\"") && clear.contains("\"cache\""),
        "{clear}"
    );
    // Every session ended, Discord's tokens revoked, nothing names the user.
    assert_eq!(browser.get("/privacy").await.0, StatusCode::SEE_OTHER);
    assert_eq!(second.get("/account").await.0, StatusCode::SEE_OTHER);
    assert_eq!(sim_stats(&h).await["access_tokens"], 0);
    let needle = user.to_string();
    let left: Vec<_> = h
        .store
        .dump_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.text.contains(&needle))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let log = h
        .store
        .privacy_requests_of(protonn_storage::privacy::ERASED_USER)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|r| r.kind.as_str() == "deletion" && r.done_at.is_some())
    );
}

#[tokio::test]
async fn the_browser_of_an_erased_child_is_told_to_clear_everything_once() {
    let h = start().await;
    let (mut browser, guild) = logged_in_owner(&h).await;
    protonn_storage::privacy::erase_child(&h.store, guild.owner_id, 77, Timestamp::now())
        .await
        .unwrap();
    let visit = browser.get("/guilds").await;
    assert_eq!(visit.0, StatusCode::OK, "{}", text(&visit));
    assert_eq!(
        visit.1["clear-site-data"].to_str().unwrap(),
        "\"cache\", \"cookies\", \"storage\""
    );
    assert!(text(&visit).contains("site-data-cleared"));
    // The mark is spent: the next visit is an ordinary stale cookie.
    let later = browser.get("/guilds").await;
    assert_eq!(later.0, StatusCode::SEE_OTHER);
    assert!(later.1.get("clear-site-data").is_none());
}

#[tokio::test]
async fn a_login_records_the_accounts_activity_for_its_retention() {
    let h = start().await;
    let before = Timestamp::now();
    let (_browser, guild) = logged_in_owner(&h).await;
    let account = h.store.account(guild.owner_id).await.unwrap().unwrap();
    assert!(account.last_active >= before && account.created_at >= before);
    assert!(!account.announcements_consent, "no consent unless given");
}

#[tokio::test]
async fn an_operator_starts_follows_and_cancels_an_announcement_and_nobody_else_may() {
    let h = start().await;
    let (mut owner, mut browser) = owner_and_operator_on(&h, "/admin/announcements").await;
    let page = text(&browser.get("/admin/announcements").await);
    assert!(page.contains("No campaigns yet."), "{page}");
    let csrf = field(&page, "csrf");

    // Bad input: nothing stored.
    let empty = browser
        .post(
            "/admin/announcements",
            &[("csrf", csrf.as_str()), ("message", "  ")],
        )
        .await;
    assert_eq!(empty.0, StatusCode::BAD_REQUEST, "{}", text(&empty));
    let forged = browser
        .post(
            "/admin/announcements",
            &[("csrf", "forged"), ("message", "Hello")],
        )
        .await;
    assert_ne!(forged.0, StatusCode::SEE_OTHER);
    assert!(h.store.campaigns().await.unwrap().is_empty());
    let foreign = owner
        .post(
            "/admin/announcements",
            &[("csrf", csrf.as_str()), ("message", "Hello")],
        )
        .await;
    assert_eq!(foreign.0, StatusCode::FORBIDDEN);

    let started = browser
        .post(
            "/admin/announcements",
            &[
                ("csrf", csrf.as_str()),
                ("title", "Maintenance"),
                ("message", "The bot restarts at 02:00 UTC."),
                ("dm", "1"),
            ],
        )
        .await;
    assert_eq!(started.0, StatusCode::SEE_OTHER, "{}", text(&started));
    let campaigns = h.store.campaigns().await.unwrap();
    assert_eq!(campaigns.len(), 1);
    assert!(campaigns[0].dm, "by DM too, as chosen");
    let id = campaigns[0].id.to_string();
    let page = text(&browser.get("/admin/announcements").await);
    assert!(page.contains("Maintenance"), "{page}");
    assert!(
        page.contains("<td class=\"progress\">sent 0, in flight 0, skipped 0, failed 0</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"dms\">sent 0, in flight 0, skipped 0, failed 0</td>"),
        "the DMs' progress: {page}"
    );

    let cancelled = browser
        .post(
            "/admin/announcements/cancel",
            &[("csrf", csrf.as_str()), ("id", id.as_str())],
        )
        .await;
    assert_eq!(cancelled.0, StatusCode::SEE_OTHER, "{}", text(&cancelled));
    assert!(h.store.campaigns().await.unwrap()[0].cancelled_at.is_some());
    let page = text(&browser.get("/admin/announcements").await);
    assert!(page.contains("cancelled"), "{page}");
    let audited: Vec<(String, u64)> = h
        .store
        .list_audit(0, Timestamp(0), Timestamp(u64::MAX), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor_id))
        .collect();
    let by = operator(&h.sim);
    assert_eq!(
        audited,
        [
            ("announce.create".to_owned(), by),
            ("announce.cancel".to_owned(), by)
        ]
    );
}

#[tokio::test]
async fn an_operator_creates_a_promo_code_and_follows_its_redemptions_and_nobody_else_may() {
    let h = start().await;
    let (mut owner, mut browser) = owner_and_operator_on(&h, "/admin/promos").await;
    let page = text(&browser.get("/admin/promos").await);
    assert!(page.contains("No promo codes yet."), "{page}");
    let csrf = field(&page, "csrf");
    let form = |code: &'static str, days: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("code", code.to_owned()),
            ("days", days.to_owned()),
            ("slots", "1".to_owned()),
            ("limit", "2".to_owned()),
            ("valid_days", "30".to_owned()),
        ]
    };

    // Bad input: nothing stored, the reason shown.
    for (bad, why) in [
        (form("x", "30"), "3 to 64 letters"),
        (form("WINTER", "0"), "at least one slot for one day"),
        (form("WINTER", "many"), "not a number"),
    ] {
        let refused = browser.post("/admin/promos", &pairs(&bad)).await;
        assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{}", text(&refused));
        assert!(text(&refused).contains(why), "{}", text(&refused));
    }
    assert!(h.store.promos(10).await.unwrap().is_empty());
    let good = form("winter-26", "30");
    let refs = pairs(&good);
    assert_eq!(
        owner.post("/admin/promos", &refs).await.0,
        StatusCode::FORBIDDEN
    );

    let created = browser.post("/admin/promos", &refs).await;
    assert_eq!(created.0, StatusCode::SEE_OTHER, "{}", text(&created));
    let again = browser.post("/admin/promos", &refs).await;
    assert_eq!(again.0, StatusCode::BAD_REQUEST, "a code exists once");
    h.store
        .redeem_promo("WINTER-26", 42, Timestamp::now())
        .await
        .unwrap();
    let page = text(&browser.get("/admin/promos").await);
    assert!(page.contains("WINTER-26"), "{page}");
    assert!(page.contains("1 of 2"), "redemptions so far: {page}");
    let audited: Vec<(String, u64)> = h
        .store
        .list_audit(0, Timestamp(0), Timestamp(u64::MAX), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor_id))
        .collect();
    assert_eq!(audited, [("promo.create".to_owned(), operator(&h.sim))]);
}

/// Form fields as the test browser posts them.
fn pairs<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
