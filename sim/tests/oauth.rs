//! The simulator's Discord OAuth2 provider over plain HTTP/1.1: consent, code and refresh
//! grants with Discord's error bodies, revocation, and the Bearer user endpoints.

use protonn_sim::{OAUTH_CLIENT_SECRET, SimConfig, SimHandle};
use serde_json::json;

mod common;

use common::raw_http::{self, Reply};

async fn start() -> SimHandle {
    common::start(SimConfig {
        guilds: 5,
        shards: 1,
        ..SimConfig::default()
    })
    .await
}

async fn request(
    sim: &SimHandle,
    method: &str,
    path: &str,
    auth: Option<&str>,
    form: Option<&str>,
) -> Reply {
    let mut headers = String::new();
    if let Some(auth) = auth {
        headers.push_str(&format!("authorization: {auth}\r\n"));
    }
    if form.is_some() {
        headers.push_str("content-type: application/x-www-form-urlencoded\r\n");
    }
    raw_http::send(sim.addr(), method, path, &headers, form.unwrap_or("")).await
}

const REDIRECT: &str = "http://127.0.0.1:9/auth/callback";

async fn client_id(sim: &SimHandle) -> String {
    let app = request(
        sim,
        "GET",
        "/api/v10/oauth2/applications/@me",
        Some("Bot sim-token"),
        None,
    )
    .await;
    assert_eq!(app.status, 200, "{}", app.body);
    app.json()["id"].as_str().unwrap().to_owned()
}

fn authorize_query(client_id: &str, state: &str) -> String {
    format!(
        "client_id={client_id}&redirect_uri={}&response_type=code&scope=identify%20guilds&state={state}",
        urlencode(REDIRECT)
    )
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `name` parameter of the Location's query.
fn param(location: &str, name: &str) -> Option<String> {
    location
        .split_once('?')?
        .1
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Consents as `user_id` and returns the code.
async fn code_for(sim: &SimHandle, client_id: &str, user_id: u64) -> String {
    let form = format!("{}&user_id={user_id}", authorize_query(client_id, "st8"));
    let granted = request(sim, "POST", "/oauth2/authorize", None, Some(&form)).await;
    assert_eq!(granted.status, 302, "{}", granted.body);
    let location = granted.header("location").unwrap().to_owned();
    assert!(location.starts_with(REDIRECT));
    assert_eq!(param(&location, "state").as_deref(), Some("st8"));
    param(&location, "code").unwrap()
}

fn code_grant(client_id: &str, code: &str) -> String {
    format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={client_id}&client_secret={OAUTH_CLIENT_SECRET}",
        urlencode(REDIRECT)
    )
}

#[tokio::test]
async fn the_consent_page_lists_world_users_and_refuses_bad_requests() {
    let sim = start().await;
    let id = client_id(&sim).await;
    let owner = sim.guilds()[0].owner_id;
    let page = request(
        &sim,
        "GET",
        &format!("/oauth2/authorize?{}", authorize_query(&id, "s")),
        None,
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("data-user-id=\"{owner}\"")),
        "{}",
        page.body
    );
    for bad in [
        authorize_query("1", "s"),
        authorize_query(&id, "s").replace("response_type=code", "response_type=token"),
        authorize_query(&id, "s").replace("identify%20guilds", "identify%20admin"),
    ] {
        let reply = request(&sim, "GET", &format!("/oauth2/authorize?{bad}"), None, None).await;
        assert_eq!(reply.status, 400, "{bad}");
    }
    let cancel = format!("{}&cancel=1", authorize_query(&id, "s"));
    let denied = request(&sim, "POST", "/oauth2/authorize", None, Some(&cancel)).await;
    let location = denied.header("location").unwrap();
    assert_eq!(param(location, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(location, "code"), None);
    let stranger = format!("{}&user_id=12345", authorize_query(&id, "s"));
    assert_eq!(
        request(&sim, "POST", "/oauth2/authorize", None, Some(&stranger))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn codes_are_used_once_and_tokens_show_the_users_guilds() {
    let sim = start().await;
    let id = client_id(&sim).await;
    let guild = sim.guilds()[0].clone();
    let code = code_for(&sim, &id, guild.owner_id).await;
    let token = request(
        &sim,
        "POST",
        "/api/oauth2/token",
        None,
        Some(&code_grant(&id, &code)),
    )
    .await;
    assert_eq!(token.status, 200, "{}", token.body);
    let body = token.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "identify guilds");
    assert_eq!(body["expires_in"], 604_800);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {access}");

    let me = request(&sim, "GET", "/api/v10/users/@me", Some(&bearer), None).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["id"], guild.owner_id.to_string());
    assert_eq!(me.json()["bot"], false);
    let guilds = request(
        &sim,
        "GET",
        "/api/v10/users/@me/guilds",
        Some(&bearer),
        None,
    )
    .await;
    let listed = guilds.json();
    let own = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"].as_str().and_then(|s| s.parse::<u64>().ok()) == Some(guild.id))
        .unwrap();
    assert_eq!(own["owner"], true);
    let permissions: u64 = own["permissions"].as_str().unwrap().parse().unwrap();
    assert_ne!(permissions & (1 << 5), 0, "an owner has Manage Server");
    // A member sees the guild without ownership or Manage Server.
    let member = guild.member_ids[0];
    let member_code = code_for(&sim, &id, member).await;
    let member_token = request(
        &sim,
        "POST",
        "/api/v10/oauth2/token",
        None,
        Some(&code_grant(&id, &member_code)),
    )
    .await
    .json();
    let member_guilds = request(
        &sim,
        "GET",
        "/api/v10/users/@me/guilds",
        Some(&format!(
            "Bearer {}",
            member_token["access_token"].as_str().unwrap()
        )),
        None,
    )
    .await
    .json();
    let seen = member_guilds
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"].as_str().and_then(|s| s.parse::<u64>().ok()) == Some(guild.id))
        .unwrap();
    assert_eq!(seen["owner"], false);
    let permissions: u64 = seen["permissions"].as_str().unwrap().parse().unwrap();
    assert_eq!(permissions & ((1 << 5) | (1 << 3)), 0);

    // The code again: invalid_grant, and what it granted is revoked.
    let again = request(
        &sim,
        "POST",
        "/api/oauth2/token",
        None,
        Some(&code_grant(&id, &code)),
    )
    .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");
    assert_eq!(
        request(&sim, "GET", "/api/v10/users/@me", Some(&bearer), None)
            .await
            .status,
        401
    );
    // The bot's own token still reaches the bot's /users/@me.
    let bot = request(
        &sim,
        "GET",
        "/api/v10/users/@me",
        Some("Bot sim-token"),
        None,
    )
    .await;
    assert_eq!((bot.status, bot.json()["bot"].clone()), (200, json!(true)));
}

#[tokio::test]
async fn refresh_revoke_and_discords_error_bodies() {
    let sim = start().await;
    let id = client_id(&sim).await;
    let owner = sim.guilds()[0].owner_id;
    let code = code_for(&sim, &id, owner).await;
    let wrong_secret = code_grant(&id, &code).replace(OAUTH_CLIENT_SECRET, "nope");
    let reply = request(&sim, "POST", "/api/oauth2/token", None, Some(&wrong_secret)).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    let unsupported =
        format!("grant_type=password&client_id={id}&client_secret={OAUTH_CLIENT_SECRET}");
    let reply = request(&sim, "POST", "/api/oauth2/token", None, Some(&unsupported)).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (400, json!("unsupported_grant_type"))
    );
    let other_redirect = code_grant(&id, &code).replace("9%2Fauth", "10%2Fauth");
    let reply = request(
        &sim,
        "POST",
        "/api/oauth2/token",
        None,
        Some(&other_redirect),
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_grant");

    let first = request(
        &sim,
        "POST",
        "/api/oauth2/token",
        None,
        Some(&code_grant(&id, &code)),
    )
    .await
    .json();
    let refresh = first["refresh_token"].as_str().unwrap();
    // Client credentials in HTTP Basic, as most clients send them.
    let basic = format!(
        "Basic {}",
        base64_encode(format!("{id}:{OAUTH_CLIENT_SECRET}").as_bytes())
    );
    let form = format!("grant_type=refresh_token&refresh_token={refresh}");
    let second = request(
        &sim,
        "POST",
        "/api/v10/oauth2/token",
        Some(&basic),
        Some(&form),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    let second = second.json();
    let old = format!("Bearer {}", first["access_token"].as_str().unwrap());
    assert_eq!(
        request(&sim, "GET", "/api/v10/users/@me", Some(&old), None)
            .await
            .status,
        401
    );
    let reused = request(
        &sim,
        "POST",
        "/api/v10/oauth2/token",
        Some(&basic),
        Some(&form),
    )
    .await;
    assert_eq!(reused.json()["error"], "invalid_grant");

    let new = format!("Bearer {}", second["access_token"].as_str().unwrap());
    assert_eq!(
        request(&sim, "GET", "/api/v10/users/@me", Some(&new), None)
            .await
            .status,
        200
    );
    let revoke = format!("token={}", second["refresh_token"].as_str().unwrap());
    let revoked = request(
        &sim,
        "POST",
        "/api/oauth2/token/revoke",
        Some(&basic),
        Some(&revoke),
    )
    .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        request(&sim, "GET", "/api/v10/users/@me", Some(&new), None)
            .await
            .status,
        401
    );
    assert_eq!(
        request(&sim, "GET", "/api/v10/oauth2/applications/@me", None, None)
            .await
            .status,
        401
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
