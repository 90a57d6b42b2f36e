//! Support tickets through the simulator: a panel posted by staff, a member's button press
//! answered with a modal, the ticket's private thread, staff actions in it, the close with
//! its transcript and the thread archived by the durable timer, a reopen; and the bad input:
//! a double press opens one ticket, the per-member limit holds, closing a closed ticket
//! says so.

use protonn_sim::{GuildInfo, SimHandle};
use protonn_tests::*;
use serde_json::Value;

use crate::dashboard::{SignedIn, WebDriver, browser_installed};

/// The owner runs `/ticket <action> [argument]` in `channel`; the answer's text.
async fn staff(
    sim: &SimHandle,
    guild: &GuildInfo,
    channel: u64,
    action: &str,
    argument: &str,
) -> String {
    let mut options = vec![("action", action)];
    if !argument.is_empty() {
        options.push(("argument", argument));
    }
    let id = sim
        .send_command_interaction(guild.id, channel, guild.owner_id, "ticket", &options)
        .expect("the guild has a session");
    answers_to(sim, id).await.remove(0)
}

/// The panel message's id in `channel`, once posted.
fn panel(sim: &SimHandle, channel: u64) -> u64 {
    panel_message(sim, channel, "ticket:open")
}

/// The message in `channel` whose first component is `custom_id`.
fn panel_message(sim: &SimHandle, channel: u64, custom_id: &str) -> u64 {
    sim.messages(channel)
        .iter()
        .find(|m| m["components"][0]["components"][0]["custom_id"] == custom_id)
        .and_then(|m| m["id"].as_str()?.parse().ok())
        .expect("the panel is posted")
}

/// A member presses the panel's button, and sends the modal the bot shows with `topic`;
/// the answer to the modal.
async fn open_ticket(
    sim: &SimHandle,
    guild: &GuildInfo,
    channel: u64,
    member: u64,
    topic: &str,
) -> String {
    let pressed = press_open(sim, guild, channel, member).await;
    let sent = sim.submit_modal(pressed, &[("topic", topic)]).unwrap();
    answers_to(sim, sent).await.remove(0)
}

/// Presses the panel's button and waits until the bot answered it with a modal.
async fn press_open(sim: &SimHandle, guild: &GuildInfo, channel: u64, member: u64) -> u64 {
    let message = panel(sim, channel);
    let pressed = sim
        .use_component(guild.id, channel, message, member, "ticket:open", None)
        .unwrap();
    modal_shown(sim, pressed).await;
    pressed
}

async fn modal_shown(sim: &SimHandle, interaction: u64) {
    wait_until("the bot shows the topic modal", || async {
        sim.ledger()
            .interactions
            .iter()
            .any(|i| i.id == interaction && i.response_type == Some(9))
    })
    .await;
}

/// A member chooses the category numbered `category` on the panel's select and sends the
/// modal with `topic`; the answer to the modal.
async fn open_in_category(
    sim: &SimHandle,
    guild: &GuildInfo,
    channel: u64,
    member: u64,
    category: &str,
    topic: &str,
) -> String {
    let message = panel_message(sim, channel, "ticket:category");
    let chose = sim
        .use_component(
            guild.id,
            channel,
            message,
            member,
            "ticket:category",
            Some(&[category.to_owned()]),
        )
        .unwrap();
    modal_shown(sim, chose).await;
    let sent = sim.submit_modal(chose, &[("topic", topic)]).unwrap();
    answers_to(sim, sent).await.remove(0)
}

fn thread_of(sim: &SimHandle, guild_id: u64, name: &str) -> Value {
    sim.threads(guild_id)
        .into_iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread {name}"))
}

fn id(value: &Value) -> u64 {
    value["id"].as_str().unwrap().parse().unwrap()
}

const CREATE_THREAD: &str = "POST /channels/{channel_id}/threads";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_opens_a_ticket_staff_work_it_and_its_close_keeps_a_transcript() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let [member, helper, stranger] = [0, 1, 2].map(|i| guild.member_ids[i]);

    // Only staff post the panel.
    let refused = sim
        .send_command_interaction(guild.id, channel, member, "ticket", &[("action", "panel")])
        .unwrap();
    let refused = answers_to(sim, refused).await.remove(0);
    assert!(refused.starts_with("Only staff"), "{refused}");
    assert_eq!(
        staff(sim, &guild, channel, "panel", "").await,
        "Ticket panel posted."
    );

    let opened = open_ticket(sim, &guild, channel, member, "My refund is late").await;
    let thread = thread_of(sim, guild.id, "ticket-1");
    let thread_id = id(&thread);
    assert_eq!(opened, format!("Ticket #1 opened: <#{thread_id}>."));
    assert_eq!(thread["type"], 12, "a private thread");
    assert!(sim.thread_members(thread_id).contains(&member));
    assert!(!sim.thread_members(thread_id).contains(&stranger));
    assert!(
        sim.send_message(guild.id, thread_id, stranger, "let me in")
            .is_none(),
        "a member not in the ticket cannot post in it"
    );
    let welcome = &sim.messages(thread_id)[0];
    assert!(
        welcome["content"]
            .as_str()
            .unwrap()
            .starts_with("Ticket #1: My refund is late")
    );

    // The conversation: an attachment, an edit.
    let first = sim
        .send_message(guild.id, thread_id, member, "Order 1234")
        .unwrap();
    sim.send_message_with_attachments(guild.id, thread_id, member, "receipt", &["receipt.pdf"])
        .unwrap();
    assert!(sim.edit_message(guild.id, thread_id, first, "Order 12345"));
    let typo = sim
        .send_message(guild.id, thread_id, member, "my password is hunter2")
        .unwrap();
    assert!(sim.delete_message(guild.id, thread_id, typo));

    // Staff claim it, bring someone in, rename it.
    let claimed = staff(sim, &guild, thread_id, "claim", "").await;
    assert_eq!(
        claimed,
        format!("Ticket #1 claimed by <@{}>.", guild.owner_id)
    );
    let again = staff(sim, &guild, thread_id, "claim", "").await;
    assert!(again.contains("claimed already"), "{again}");
    let added = staff(sim, &guild, thread_id, "add", &format!("<@{helper}>")).await;
    assert_eq!(added, format!("<@{helper}> added to ticket #1."));
    assert!(sim.thread_members(thread_id).contains(&helper));
    let removed = staff(sim, &guild, thread_id, "remove", &helper.to_string()).await;
    assert_eq!(removed, format!("<@{helper}> removed from ticket #1."));
    assert!(!sim.thread_members(thread_id).contains(&helper));
    let renamed = staff(sim, &guild, thread_id, "rename", "refund").await;
    assert_eq!(renamed, "Ticket #1 is now `ticket-1-refund`.");
    sim.send_message(guild.id, thread_id, guild.owner_id, "Refund sent.")
        .unwrap();

    // The member closes their own ticket as text, with a reason.
    sim.send_message(guild.id, thread_id, member, "!ticket close solved")
        .unwrap();
    let closed = reply_in(sim, thread_id, 1).await;
    assert_eq!(
        closed,
        format!("Ticket #1 closed by <@{member}>: solved. The thread is archived now.")
    );
    wait_until(
        "the closed ticket's thread is archived and locked",
        || async {
            let thread = thread_of(sim, guild.id, "ticket-1-refund");
            thread["thread_metadata"]["archived"] == true
                && thread["thread_metadata"]["locked"] == true
        },
    )
    .await;
    assert!(
        sim.send_message(guild.id, thread_id, member, "one more thing")
            .is_none()
    );

    // Closing a closed ticket says so and changes nothing.
    let twice = staff(sim, &guild, thread_id, "close", "").await;
    assert_eq!(twice, "Ticket #1 is already closed.");

    // The transcript: every message of the thread, authors, the attachment as a link, the
    // edit noted.
    let store = node.store();
    let ticket = store.ticket(guild.id, 1).await.unwrap().unwrap();
    assert_eq!(
        (
            ticket.opener_id,
            ticket.channel_id,
            ticket.close_reason.as_deref()
        ),
        (member, thread_id, Some("solved"))
    );
    assert!(ticket.claimed_at.is_some() && ticket.closed_at.is_some());
    let transcript = store.transcript(guild.id, 1).await.unwrap();
    let lines: Vec<(u64, &str)> = transcript
        .iter()
        .map(|line| (line.author_id, line.content.as_str()))
        .collect();
    assert_eq!(lines[1], (member, "Order 12345"));
    assert!(transcript[1].edited_at.is_some(), "the edit is noted");
    assert_eq!(
        transcript[1].earlier_texts,
        ["Order 1234"],
        "and the text before it"
    );
    let deleted = transcript
        .iter()
        .find(|line| line.message_id == typo)
        .expect("the deleted message is kept");
    assert_eq!(deleted.content, "my password is hunter2");
    assert!(deleted.deleted_at.is_some());
    assert!(!transcript[1].author_name.is_empty(), "the author's name");
    assert_eq!(lines[2], (member, "receipt"));
    let attachment = &transcript[2].attachments[0];
    assert_eq!(attachment.filename, "receipt.pdf");
    assert!(
        attachment.url.starts_with("https://cdn.discordapp.com/"),
        "{}",
        attachment.url
    );
    assert!(lines.contains(&(guild.owner_id, "Refund sent.")));
    assert_eq!(
        lines.last().unwrap(),
        &(member, "!ticket close solved"),
        "up to the close"
    );

    // Reopened, the member can write again; every action is audited.
    let reopened = staff(sim, &guild, channel, "reopen", "1").await;
    assert_eq!(reopened, format!("Ticket #1 reopened: <#{thread_id}>."));
    let thread = thread_of(sim, guild.id, "ticket-1-refund");
    assert_eq!(thread["thread_metadata"]["archived"], false);
    assert!(
        sim.send_message(guild.id, thread_id, member, "thanks")
            .is_some()
    );
    let now = protonn_storage::Timestamp::now();
    wait_until("every ticket action is audited", || async {
        let entries = node
            .audit_log()
            .list_audit(
                guild.id,
                protonn_storage::Timestamp(0),
                now.saturating_add(std::time::Duration::from_secs(60)),
                100,
            )
            .await
            .unwrap();
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        [
            "ticket.panel",
            "ticket.open",
            "ticket.claim",
            "ticket.add",
            "ticket.remove",
            "ticket.rename",
            "ticket.close",
            "ticket.reopen",
        ]
        .iter()
        .all(|action| actions.contains(action))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_press_opens_one_ticket_and_a_member_has_one_open_at_a_time() {
    let Bot { sim, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let [member, other] = [0, 1].map(|i| guild.member_ids[i]);
    staff(sim, &guild, channel, "panel", "").await;

    // Two presses, two modals, both sent: one ticket.
    let first = press_open(sim, &guild, channel, member).await;
    let second = press_open(sim, &guild, channel, member).await;
    let a = sim
        .submit_modal(first, &[("topic", "Cannot log in")])
        .unwrap();
    let b = sim
        .submit_modal(second, &[("topic", "Cannot log in")])
        .unwrap();
    let mut answers = vec![
        answers_to(sim, a).await.remove(0),
        answers_to(sim, b).await.remove(0),
    ];
    answers.sort();
    assert!(answers[0].starts_with("Ticket #1 opened"), "{answers:?}");
    // Refused by the guard against repeats, or (had the first finished) by the limit.
    assert!(
        answers[1] == "You opened a ticket moments ago: one at a time, please."
            || answers[1].starts_with("You have 1 open ticket(s) here already"),
        "{answers:?}"
    );
    let created = sim
        .ledger()
        .rest
        .iter()
        .filter(|r| r.route == CREATE_THREAD && r.status == 201)
        .count();
    assert_eq!(created, 1, "one thread");

    // Another member is numbered next; a short topic is refused and opens nothing.
    let too_short = press_open(sim, &guild, channel, other).await;
    assert!(
        sim.submit_modal(too_short, &[("topic", "hi")]).is_err(),
        "Discord's client holds the modal to its minimum length"
    );
    let opened = open_ticket(sim, &guild, channel, other, "Billing question").await;
    assert!(opened.starts_with("Ticket #2 opened"), "{opened}");
    assert_eq!(sim.threads(guild.id).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_ticket_is_closed_by_its_durable_timer_with_its_transcript() {
    let runtime = protonn_actors::RuntimeConfig {
        timer_poll_every: std::time::Duration::from_millis(100),
        ticket_idle_close: std::time::Duration::from_secs(2),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    staff(sim, &guild, channel, "panel", "").await;
    open_ticket(sim, &guild, channel, member, "Anyone there?").await;
    let thread_id = id(&thread_of(sim, guild.id, "ticket-1"));
    sim.send_message(guild.id, thread_id, member, "hello?")
        .unwrap();

    wait_until(
        "the silent ticket is closed and its thread locked",
        || async {
            let thread = thread_of(sim, guild.id, "ticket-1");
            thread["thread_metadata"]["locked"] == true
        },
    )
    .await;
    let closing = sim
        .messages(thread_id)
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .find(|text| text.starts_with("Ticket #1 closed by"))
        .expect("the close is said in the thread");
    assert!(
        closing.ends_with(": no message for 2s. The thread is archived now."),
        "{closing}"
    );
    let ticket = node.store().ticket(guild.id, 1).await.unwrap().unwrap();
    assert_eq!(ticket.close_reason.as_deref(), Some("no message for 2s"));
    let transcript = node.store().transcript(guild.id, 1).await.unwrap();
    assert!(transcript.iter().any(|line| line.content == "hello?"));
}

/// Fetches `link`'s target in the page as the browser would download it: the
/// content type, the disposition and the body.
async fn fetched(browser: &WebDriver, link: &str) -> (String, String, String) {
    let got = browser
        .script_async(&format!(
            "const r = await fetch(document.querySelector('{link}').href);
             return [r.headers.get('content-type'), r.headers.get('content-disposition'), await r.text()];"
        ))
        .await;
    let part = |i: usize| {
        got[i]
            .as_str()
            .unwrap_or_else(|| panic!("{got}"))
            .to_owned()
    };
    (part(0), part(1), part(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_read_a_closed_tickets_transcript_and_download_it_in_chromium() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let [member, other] = [0, 1].map(|i| guild.member_ids[i]);
    staff(sim, &guild, channel, "panel", "").await;
    open_ticket(sim, &guild, channel, member, "Printer on fire").await;
    let thread_id = id(&thread_of(sim, guild.id, "ticket-1"));
    let first = sim
        .send_message(guild.id, thread_id, member, "It <b>smokes</b>")
        .unwrap();
    sim.send_message_with_attachments(guild.id, thread_id, member, "photo", &["fire.png"])
        .unwrap();
    assert!(sim.edit_message(guild.id, thread_id, first, "It <b>burns</b>"));
    let gone = sim
        .send_message(guild.id, thread_id, member, "wrong ticket, sorry")
        .unwrap();
    assert!(sim.delete_message(guild.id, thread_id, gone));
    sim.send_message(guild.id, thread_id, guild.owner_id, "Extinguisher sent.")
        .unwrap();
    let closed = staff(sim, &guild, thread_id, "close", "resolved").await;
    assert!(closed.starts_with("Ticket #1 closed"), "{closed}");
    let opened = open_ticket(sim, &guild, channel, other, "Another question").await;
    assert!(opened.starts_with("Ticket #2 opened"), "{opened}");

    if !browser_installed() {
        return;
    }
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());

    // From the overview, as staff would: the Tickets tab lists both.
    browser.go(&format!("{origin}/guilds/{}", guild.id)).await;
    browser.wait_for("Served by shard").await;
    let tickets = format!("/guilds/{}/tickets", guild.id);
    browser.click(&format!("a[href=\"{tickets}\"]")).await;
    browser.wait_for("Support tickets").await;
    let page = browser.source().await;
    assert!(page.contains("Printer on fire") && page.contains("Another question"));
    browser.screenshot("tickets").await;
    // The figures: one open; the closed one answered by the owner's message.
    let ticket = node.store().ticket(guild.id, 1).await.unwrap().unwrap();
    let answered = ticket
        .first_response_at
        .expect("the first response is known");
    assert!(ticket.opened_at < answered && Some(answered) <= ticket.closed_at);
    let text = |css: &str| {
        let browser = &browser;
        let script = format!("return document.querySelector('{css}').textContent");
        async move { browser.script(&script).await }
    };
    assert_eq!(text("#open-now").await, "1");
    for figure in ["#first-response", "#resolution"] {
        let shown = text(figure).await;
        assert!(shown.as_str().unwrap().ends_with('s'), "{figure}: {shown}");
    }

    // Closed ones only.
    browser
        .script("document.querySelector('#status').value = 'closed'")
        .await;
    browser.click("#filter").await;
    browser
        .wait_for("<option value=\"closed\" selected=\"\">")
        .await;
    let page = browser.source().await;
    assert!(page.contains("Printer on fire"), "{page}");
    assert!(!page.contains("Another question"), "{page}");

    // The closed ticket's page: authors, the edit noted, the attachment as a link, the
    // text escaped.
    browser.click(&format!("a[href=\"{tickets}/1\"]")).await;
    browser.wait_for("Extinguisher sent.").await;
    browser.screenshot("ticket").await;
    let page = browser.source().await;
    assert!(page.contains("It &lt;b&gt;burns&lt;/b&gt;"), "{page}");
    assert!(page.contains("resolved"), "{page}");
    assert!(page.contains("edited "), "{page}");
    assert!(page.contains("Before edit 1: "), "{page}");
    assert!(page.contains("It &lt;b&gt;smokes&lt;/b&gt;"), "{page}");
    assert!(page.contains("wrong ticket, sorry"), "{page}");
    assert!(page.contains("deleted "), "{page}");
    let link = browser
        .script("return document.querySelector('.attachment a').href")
        .await;
    assert!(
        link.as_str()
            .unwrap()
            .starts_with("https://cdn.discordapp.com/"),
        "{link}"
    );
    let authors = browser
        .script("return document.querySelectorAll('#transcript .line').length")
        .await;
    assert_eq!(
        authors,
        serde_json::json!(5),
        "the welcome, three messages and the deleted one"
    );

    // Both downloads, through the page's own links.
    let (kind, disposition, body) = fetched(browser, "#download-json").await;
    assert!(kind.starts_with("application/json"), "{kind}");
    assert_eq!(
        disposition,
        format!("attachment; filename=\"ticket-{}-1.json\"", guild.id)
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ticket"]["subject"], "Printer on fire");
    let lines = json["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 5, "{body}");
    assert_eq!(lines[1]["content"], "It <b>burns</b>");
    assert!(lines[1]["edited_at"].is_u64());
    assert_eq!(lines[1]["earlier_texts"][0], "It <b>smokes</b>");
    assert_eq!(lines[3]["content"], "wrong ticket, sorry");
    assert!(lines[3]["deleted_at"].is_u64(), "{body}");
    assert_eq!(lines[2]["attachments"][0]["filename"], "fire.png");
    assert_eq!(lines[4]["author_id"], guild.owner_id);

    let (kind, disposition, body) = fetched(browser, "#download-html").await;
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(disposition.ends_with("-1.html\""), "{disposition}");
    assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
    assert!(body.contains("It &lt;b&gt;burns&lt;/b&gt;"), "{body}");
    assert!(body.contains("fire.png</a>"), "{body}");
    assert!(body.trim_end().ends_with("</body></html>"), "{body}");

    // A number with no ticket says so.
    browser.go(&format!("{origin}{tickets}/99")).await;
    browser.wait_for("there is no ticket #99").await;

    visit.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_settings_saved_in_chromium_are_checked_against_the_plan_and_used_by_the_bot() {
    if !browser_installed() {
        return;
    }
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
    browser
        .go(&format!("{origin}/guilds/{}/tickets", guild.id))
        .await;
    browser.wait_for("Support tickets").await;
    browser.click("#ticket-settings").await;
    browser
        .wait_for("Open tickets a member may have at once")
        .await;

    // Three categories are over the free plan: refused, nothing saved, the draft kept.
    browser.fill("#categories", "Billing\nBugs\nOther").await;
    browser.click("input[name=staff_roles]").await;
    browser.click("#save").await;
    browser
        .wait_for("The free plan allows 2 ticket categories (3 given); premium allows 25.")
        .await;
    assert!(
        browser.source().await.contains("Other"),
        "the draft is kept"
    );
    browser.fill("#categories", "Billing\nBugs").await;
    browser.fill("#idle_hours", "5000").await;
    browser.click("#save").await;
    browser
        .wait_for("A ticket is closed after 1 to 2160 hours without a message.")
        .await;
    let stored = || async { node.store().load(guild.id).await.unwrap() };
    assert!(stored().await.is_none(), "nothing saved");

    browser.fill("#idle_hours", "48").await;
    browser.fill("#max_open", "2").await;
    browser.click("#save").await;
    browser.wait_for("Saved as version 1").await;
    browser.screenshot("ticket-settings").await;
    let tickets = stored().await.unwrap().config.tickets;
    assert_eq!(tickets.categories, ["Billing", "Bugs"]);
    assert_eq!(tickets.max_open_per_member, 2);
    assert_eq!(tickets.idle_close_hours, Some(48));
    assert_eq!(tickets.staff_roles.len(), 1);
    visit.close().await;

    // The panel offers the categories; the bot holds members to the new limit at once, and
    // times the idle close by it.
    staff(sim, &guild, channel, "panel", "").await;
    for (n, category) in [(1, "0"), (2, "1")] {
        let topic = format!("Question number {n}");
        let opened = open_in_category(sim, &guild, channel, member, category, &topic).await;
        assert!(
            opened.starts_with(&format!("Ticket #{n} opened")),
            "{opened}"
        );
    }
    for (n, name) in [(1, "Billing"), (2, "Bugs")] {
        let ticket = node.store().ticket(guild.id, n).await.unwrap().unwrap();
        assert_eq!(ticket.category.as_deref(), Some(name));
    }
    let thread = id(&thread_of(sim, guild.id, "ticket-2"));
    let welcome = sim.messages(thread)[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        welcome.starts_with("Ticket #2 (Bugs): Question number 2"),
        "{welcome}"
    );
    let refused = sim.use_component(
        guild.id,
        channel,
        panel_message(sim, channel, "ticket:category"),
        member,
        "ticket:category",
        Some(&["7".to_owned()]),
    );
    assert!(refused.is_err(), "Discord offers only the panel's options");
    let third = open_in_category(sim, &guild, channel, member, "0", "Third question").await;
    assert!(
        third.starts_with("You have 2 open ticket(s) here already"),
        "{third}"
    );
    let hours = |n: u64| {
        protonn_storage::Timestamp::now().saturating_add(std::time::Duration::from_secs(n * 3_600))
    };
    let due = node.store().due_timers(0, hours(49), 100).await.unwrap();
    let idle: Vec<_> = due.iter().filter(|t| t.id.starts_with("idle:")).collect();
    assert_eq!(idle.len(), 2, "{due:?}");
    assert!(
        idle.iter().all(|t| t.due > hours(47)),
        "48 hours, not the node's 7 days"
    );
}

/// The options of the newest category panel in `channel`.
fn newest_panel_options(sim: &SimHandle, channel: u64) -> Vec<String> {
    sim.messages(channel)
        .iter()
        .rev()
        .find(|m| m["components"][0]["components"][0]["custom_id"] == "ticket:category")
        .map(|m| {
            m["components"][0]["components"][0]["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["label"].as_str().unwrap().to_owned())
                .collect()
        })
        .expect("a category panel is posted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_downgrade_categories_past_the_plan_are_kept_off_the_panel_and_named() {
    use protonn_storage::{Plan, Timestamp, guild_plan};

    let runtime = protonn_actors::RuntimeConfig {
        // The downgrade shows at once.
        plan_recheck_every: std::time::Duration::from_millis(50),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    let store = node.store();
    give_premium(store.as_ref(), guild.id, guild.owner_id).await;
    let all = ["Billing", "Bugs", "Other"];
    crate::automod::configure(node, guild.id, |config| {
        config.tickets.categories = all.map(str::to_owned).to_vec();
    })
    .await
    .unwrap();
    staff(sim, &guild, channel, "panel", "").await;
    assert_eq!(newest_panel_options(sim, channel), all);
    let premium_panel = panel_message(sim, channel, "ticket:category");

    store.remove_slot(guild.owner_id, guild.id).await.unwrap();
    wait_until("the guild is free again", || async {
        guild_plan(store.as_ref(), guild.id, Timestamp::now())
            .await
            .unwrap()
            == Plan::Free
    })
    .await;
    // A panel posted now offers the categories the free plan allows; the third is kept.
    wait_until("a new panel offers two categories", || async {
        staff(sim, &guild, channel, "panel", "").await;
        newest_panel_options(sim, channel) == ["Billing", "Bugs"]
    })
    .await;
    let kept = store.load(guild.id).await.unwrap().unwrap();
    assert_eq!(kept.config.tickets.categories, all, "kept in the config");
    // The panel posted under premium still shows it: choosing it is refused.
    let chose = sim
        .use_component(
            guild.id,
            channel,
            premium_panel,
            member,
            "ticket:category",
            Some(&["2".to_owned()]),
        )
        .unwrap();
    assert_eq!(
        answers_to(sim, chose).await.remove(0),
        "This category is no longer offered: choose again on the panel."
    );
    let opened = open_in_category(sim, &guild, channel, member, "1", "A bug to report").await;
    assert!(opened.starts_with("Ticket #1 opened"), "{opened}");

    // The settings page names the category past the plan.
    if !browser_installed() {
        return;
    }
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
    browser
        .go(&format!("{origin}/guilds/{}/tickets/settings", guild.id))
        .await;
    browser
        .wait_for("The free plan offers 2 ticket categories; these are kept but not on the panel")
        .await;
    let text = browser
        .script("return document.querySelector('#over-plan').textContent")
        .await;
    assert!(text.as_str().unwrap().ends_with(": Other."), "{text}");
    visit.close().await;
}

/// The channel the bot made in the guild named `name`.
fn channel_named(sim: &SimHandle, guild_id: u64, name: &str) -> Value {
    sim.channels(guild_id)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no channel {name}"))
}

/// The overwrite of `target` in a channel object: (allow, deny).
fn overwrite_of(channel: &Value, target: u64) -> Option<(u64, u64)> {
    let bits = |o: &Value, key: &str| o[key].as_str()?.parse::<u64>().ok();
    channel["permission_overwrites"]
        .as_array()?
        .iter()
        .find(|o| o["id"].as_str().and_then(|id| id.parse::<u64>().ok()) == Some(target))
        .and_then(|o| Some((bits(o, "allow")?, bits(o, "deny")?)))
}

/// A role id the guild names as its ticket staff (overwrites name it; no member holds it).
const STAFF_ROLE: u64 = 4_242;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_ticket_is_seen_by_its_people_only_and_stays_locked_with_its_transcript() {
    use twilight_model::guild::Permissions;

    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let [member, helper, stranger] = [0, 1, 2].map(|i| guild.member_ids[i]);
    let category = sim.create_category(guild.id, "Tickets").unwrap();
    crate::automod::configure(node, guild.id, |config| {
        config.tickets.place = protonn_storage::TicketPlace::Channel;
        config.tickets.channel_category = Some(category);
        config.tickets.staff_roles = vec![STAFF_ROLE];
    })
    .await
    .unwrap();
    assert_eq!(
        staff(sim, &guild, channel, "panel", "").await,
        "Ticket panel posted."
    );

    let opened = open_ticket(sim, &guild, channel, member, "My refund is late").await;
    let ticket_channel = channel_named(sim, guild.id, "ticket-1");
    let ticket_id = id(&ticket_channel);
    assert_eq!(opened, format!("Ticket #1 opened: <#{ticket_id}>."));
    assert_eq!(ticket_channel["type"], 0, "a text channel");
    assert_eq!(ticket_channel["parent_id"], category.to_string());
    let view = Permissions::VIEW_CHANNEL.bits();
    let in_ticket = (Permissions::VIEW_CHANNEL
        | Permissions::SEND_MESSAGES
        | Permissions::READ_MESSAGE_HISTORY)
        .bits();
    assert_eq!(overwrite_of(&ticket_channel, guild.id), Some((0, view)));
    assert_eq!(overwrite_of(&ticket_channel, member), Some((in_ticket, 0)));
    assert_eq!(
        overwrite_of(&ticket_channel, STAFF_ROLE),
        Some((in_ticket, 0))
    );
    assert!(
        sim.send_message(guild.id, ticket_id, stranger, "let me in")
            .is_none(),
        "another member does not see it"
    );
    assert!(
        sim.messages(ticket_id)[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Ticket #1: My refund is late")
    );
    sim.send_message(guild.id, ticket_id, member, "Order 1234")
        .unwrap();

    // Staff claim it, bring someone in and out, rename it: overwrites and a new name.
    let claimed = staff(sim, &guild, ticket_id, "claim", "").await;
    assert_eq!(
        claimed,
        format!("Ticket #1 claimed by <@{}>.", guild.owner_id)
    );
    let added = staff(sim, &guild, ticket_id, "add", &format!("<@{helper}>")).await;
    assert_eq!(added, format!("<@{helper}> added to ticket #1."));
    assert!(
        sim.send_message(guild.id, ticket_id, helper, "I can help")
            .is_some()
    );
    let removed = staff(sim, &guild, ticket_id, "remove", &helper.to_string()).await;
    assert_eq!(removed, format!("<@{helper}> removed from ticket #1."));
    assert!(
        sim.member_permissions(guild.id, ticket_id, helper)
            .is_empty()
    );
    let again = staff(sim, &guild, ticket_id, "remove", &helper.to_string()).await;
    assert_eq!(again, format!("<@{helper}> is not in ticket #1."));
    let renamed = staff(sim, &guild, ticket_id, "rename", "refund").await;
    assert_eq!(renamed, "Ticket #1 is now `ticket-1-refund`.");
    sim.send_message(guild.id, ticket_id, guild.owner_id, "Refund sent.")
        .unwrap();

    // The member closes it: transcript kept, the channel kept but locked for them.
    sim.send_message(guild.id, ticket_id, member, "!ticket close solved")
        .unwrap();
    let closed = reply_in(sim, ticket_id, 1).await;
    assert_eq!(
        closed,
        format!("Ticket #1 closed by <@{member}>: solved. The channel is locked now.")
    );
    wait_until("the closed ticket's channel is locked", || async {
        let locked = channel_named(sim, guild.id, "ticket-1-refund");
        overwrite_of(&locked, member)
            .is_some_and(|(_, deny)| deny & Permissions::SEND_MESSAGES.bits() != 0)
    })
    .await;
    let can = sim.member_permissions(guild.id, ticket_id, member);
    assert!(can.contains(Permissions::VIEW_CHANNEL) && !can.contains(Permissions::SEND_MESSAGES));
    assert!(
        sim.send_message(guild.id, ticket_id, member, "one more thing")
            .is_none()
    );
    let locks: Vec<_> = sim
        .ledger()
        .rest
        .into_iter()
        .filter(|r| {
            r.route == "PUT /channels/{channel_id}/permissions/{overwrite_id}"
                && r.path.ends_with(&format!("/{member}"))
                && r.status == 204
        })
        .collect();
    assert_eq!(locks.len(), 1, "one lock in the ledger: {locks:?}");
    let twice = staff(sim, &guild, ticket_id, "close", "").await;
    assert_eq!(twice, "Ticket #1 is already closed.");

    let store = node.store();
    let ticket = store.ticket(guild.id, 1).await.unwrap().unwrap();
    assert_eq!(
        (
            ticket.place,
            ticket.channel_id,
            ticket.close_reason.as_deref()
        ),
        (
            protonn_storage::TicketPlace::Channel,
            ticket_id,
            Some("solved")
        )
    );
    let transcript = store.transcript(guild.id, 1).await.unwrap();
    let lines: Vec<(u64, &str)> = transcript
        .iter()
        .map(|line| (line.author_id, line.content.as_str()))
        .collect();
    for line in [
        (member, "Order 1234"),
        (helper, "I can help"),
        (guild.owner_id, "Refund sent."),
        (member, "!ticket close solved"),
    ] {
        assert!(lines.contains(&line), "{line:?} in {lines:?}");
    }

    // Reopened, the member writes again.
    let reopened = staff(sim, &guild, channel, "reopen", "1").await;
    assert_eq!(reopened, format!("Ticket #1 reopened: <#{ticket_id}>."));
    assert!(
        sim.send_message(guild.id, ticket_id, member, "thanks")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_ticket_discord_refuses_says_what_the_bot_needs_and_holds_no_place() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    crate::automod::configure(node, guild.id, |config| {
        config.tickets.place = protonn_storage::TicketPlace::Channel;
    })
    .await
    .unwrap();
    staff(sim, &guild, channel, "panel", "").await;
    // An admin takes Manage Roles from the bot's role after the bot cached it.
    sim.revoke_bot_permissions(guild.id, twilight_model::guild::Permissions::MANAGE_ROLES);
    let answer = open_ticket(sim, &guild, channel, member, "Cannot log in").await;
    assert!(
        answer.starts_with("Discord did not open a channel for the ticket")
            && answer.contains("Manage Roles"),
        "{answer}"
    );
    assert!(sim.channels(guild.id).is_empty());
    let ticket = node.store().ticket(guild.id, 1).await.unwrap().unwrap();
    assert_eq!(
        ticket.close_reason.as_deref(),
        Some("no channel could be opened"),
        "closed at once: the member's limit is not spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_tickets_chosen_in_chromium_open_in_the_chosen_category() {
    if !browser_installed() {
        return;
    }
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 1)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let category = sim.create_category(guild.id, "Support tickets").unwrap();
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());
    let settings = format!("{origin}/guilds/{}/tickets/settings", guild.id);
    browser.go(&settings).await;
    browser.wait_for("Open each ticket as").await;
    browser.click("#place-channel").await;
    browser
        .click(&format!("#channel_category option[value='{category}']"))
        .await;
    browser.click("#save").await;
    browser.wait_for("Saved as version 1").await;
    browser.screenshot("ticket-settings-channels").await;
    let tickets = node
        .store()
        .load(guild.id)
        .await
        .unwrap()
        .unwrap()
        .config
        .tickets;
    assert_eq!(tickets.place, protonn_storage::TicketPlace::Channel);
    assert_eq!(tickets.channel_category, Some(category));
    let checked = browser
        .script("return document.querySelector('#place-channel').checked")
        .await;
    assert_eq!(checked, Value::Bool(true), "the form shows what is saved");
    visit.close().await;

    staff(sim, &guild, channel, "panel", "").await;
    let opened = open_ticket(
        sim,
        &guild,
        channel,
        guild.member_ids[0],
        "Where is my order",
    )
    .await;
    let made = channel_named(sim, guild.id, "ticket-1");
    assert_eq!(opened, format!("Ticket #1 opened: <#{}>.", id(&made)));
    assert_eq!(made["parent_id"], category.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_channels_leaves_open_threads_and_silent_tickets_of_both_close() {
    use twilight_model::guild::Permissions;

    let runtime = protonn_actors::RuntimeConfig {
        timer_poll_every: std::time::Duration::from_millis(100),
        ticket_idle_close: std::time::Duration::from_secs(2),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let [first, second] = [guild.member_ids[0], guild.member_ids[1]];
    staff(sim, &guild, channel, "panel", "").await;
    open_ticket(sim, &guild, channel, first, "Opened as a thread").await;
    crate::automod::configure(node, guild.id, |config| {
        config.tickets.place = protonn_storage::TicketPlace::Channel;
    })
    .await
    .unwrap();
    let opened = open_ticket(sim, &guild, channel, second, "Opened as a channel").await;
    let ticket_channel = id(&channel_named(sim, guild.id, "ticket-2"));
    assert_eq!(opened, format!("Ticket #2 opened: <#{ticket_channel}>."));
    let thread_id = id(&thread_of(sim, guild.id, "ticket-1"));

    wait_until("both silent tickets are closed and locked", || async {
        let thread_locked =
            thread_of(sim, guild.id, "ticket-1")["thread_metadata"]["locked"] == true;
        let can = sim.member_permissions(guild.id, ticket_channel, second);
        thread_locked
            && can.contains(Permissions::VIEW_CHANNEL)
            && !can.contains(Permissions::SEND_MESSAGES)
    })
    .await;
    let closing = |channel_id: u64| {
        sim.messages(channel_id)
            .iter()
            .filter_map(|m| m["content"].as_str().map(str::to_owned))
            .find(|text| text.starts_with("Ticket #") && text.contains(" closed by "))
    };
    assert!(
        closing(thread_id).is_some_and(|t| t.ends_with("The thread is archived now.")),
        "{:?}",
        closing(thread_id)
    );
    assert!(
        closing(ticket_channel).is_some_and(|t| t.ends_with("The channel is locked now.")),
        "{:?}",
        closing(ticket_channel)
    );
    let store = node.store();
    for (number, place) in [
        (1, protonn_storage::TicketPlace::Thread),
        (2, protonn_storage::TicketPlace::Channel),
    ] {
        let ticket = store.ticket(guild.id, number).await.unwrap().unwrap();
        assert_eq!(
            (ticket.place, ticket.close_reason.as_deref()),
            (place, Some("no message for 2s"))
        );
    }
}
