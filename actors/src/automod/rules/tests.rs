use std::time::Duration;

use protonn_storage::{AutomodAction, AutomodConfig, AutomodRule, Trigger};
use tokio::time::Instant;
use twilight_model::id::Id;
use twilight_model::id::marker::RoleMarker;

use super::*;

fn rule(name: &str, trigger: Trigger) -> AutomodRule {
    AutomodRule {
        name: name.into(),
        trigger,
        actions: vec![AutomodAction::Delete, AutomodAction::Log],
        shadow: false,
        exempt_roles: Vec::new(),
        exempt_channels: Vec::new(),
        native: false,
    }
}

fn compile(rules: Vec<AutomodRule>) -> Result<Rules, String> {
    Rules::compile(&AutomodConfig { rules })
}

fn said(content: &str) -> Said<'_> {
    Said {
        channel: 10,
        roles: &[],
        content,
        mentions: 0,
        account_age: Duration::from_secs(365 * 86_400),
    }
}

/// Why the one rule of `rules` matches `text` (no recent messages), or `None`.
fn why(trigger: Trigger, text: &str) -> Option<String> {
    let rules = compile(vec![rule("r", trigger)]).unwrap();
    rules
        .check(&said(text), &Recent::new(), Instant::now(), usize::MAX)
        .pop()
        .map(|hit| hit.why)
}

#[test]
fn keywords_match_whole_words_any_case_unless_a_star_says_otherwise() {
    let words = |list: &[&str]| Trigger::Keywords {
        words: list.iter().map(|w| (*w).to_owned()).collect(),
    };
    assert!(why(words(&["scam"]), "what a SCAM!").is_some());
    assert!(why(words(&["scam"]), "a scammer").is_none());
    assert!(why(words(&["scam*"]), "a scammer").is_some());
    assert!(why(words(&["*coin"]), "buy bitcoin now").is_some());
    assert!(why(words(&["*coin"]), "coins").is_none());
    assert!(why(words(&["fr*e"]), "it is frEEEe").is_some());
    assert!(why(words(&["free nitro"]), "get FREE   nitro").is_some());
    assert!(why(words(&["free nitro"]), "freenitro").is_none());
    assert_eq!(
        why(words(&["nope", "a.b"]), "say a.b here").as_deref(),
        Some("the keyword `a.b`"),
        "keywords are literal text, and the reason names the one that matched"
    );
    assert!(why(words(&["a.b"]), "say axb here").is_none());
}

#[test]
fn each_kind_of_content_rule_matches_what_it_names_and_nothing_else() {
    assert!(why(Trigger::InviteLinks, "join discord.gg/abc123").is_some());
    assert!(why(Trigger::InviteLinks, "https://discord.com/invite/x-y").is_some());
    assert!(why(Trigger::InviteLinks, "discord is great").is_none());

    let deny = Trigger::Links {
        allow: Vec::new(),
        deny: vec!["evil.com".into()],
    };
    assert!(why(deny.clone(), "see https://www.EVIL.com/x").is_some());
    assert!(why(deny.clone(), "see https://notevil.com/x").is_none());
    let allow = Trigger::Links {
        allow: vec!["example.org".into()],
        deny: Vec::new(),
    };
    assert!(why(allow.clone(), "docs at https://docs.example.org/a").is_none());
    assert_eq!(
        why(allow, "or http://elsewhere.net").as_deref(),
        Some("a link to elsewhere.net, not an allowed domain")
    );

    let regex = Trigger::Regex {
        patterns: vec![r"\b\d{3}-\d{4}\b".into()],
    };
    assert!(why(regex.clone(), "call 555-1234").is_some());
    assert!(why(regex, "call 5551234").is_none());

    let caps = Trigger::Caps {
        percent: 70,
        min_letters: 10,
    };
    assert!(why(caps.clone(), "STOP SHOUTING AT ME").is_some());
    assert!(why(caps.clone(), "HELLO").is_none(), "too short to judge");
    assert!(why(caps, "Normal Sentence Here, Really").is_none());

    let emojis = Trigger::EmojiFlood { emojis: 5 };
    assert!(why(emojis.clone(), "😀😀😀 <:pog:123> <a:dance:456>").is_some());
    assert!(why(emojis, "😀 hi 😀").is_none());

    let zalgo = Trigger::Zalgo { marks: 10 };
    assert!(
        why(
            zalgo.clone(),
            "h\u{0336}\u{0337}\u{0338}\u{0339}\u{033a}e\u{0300}\u{0301}\u{0302}\u{0303}\u{0304}"
        )
        .is_some()
    );
    assert!(why(zalgo, "café naïve").is_none());
}

#[test]
fn mentions_and_account_age_come_from_the_message() {
    let rules = compile(vec![
        rule("mentions", Trigger::MentionSpam { mentions: 5 }),
        rule("young", Trigger::NewAccount { min_age_days: 7 }),
    ])
    .unwrap();
    let now = Instant::now();
    let mut message = said("hi");
    assert!(
        rules
            .check(&message, &Recent::new(), now, usize::MAX)
            .is_empty()
    );
    message.mentions = 5;
    message.account_age = Duration::from_secs(86_400);
    let hits = rules.check(&message, &Recent::new(), now, usize::MAX);
    assert_eq!(
        hits.iter().map(|hit| hit.rule).collect::<Vec<_>>(),
        [0, 1],
        "every rule that matches, in order"
    );
}

#[test]
fn spam_counts_a_members_messages_within_the_window() {
    let rules = compile(vec![
        rule(
            "flood",
            Trigger::MessageSpam {
                messages: 4,
                within_secs: 5,
            },
        ),
        rule(
            "copies",
            Trigger::DuplicateText {
                repeats: 3,
                within_secs: 60,
            },
        ),
    ])
    .unwrap();
    assert_eq!((rules.window, rules.keep), (Duration::from_secs(60), 4));
    let start = Instant::now();
    let at = |secs: u64| start + Duration::from_secs(secs);
    let recent: Recent = [(at(0), 1), (at(1), 2), (at(2), 1)].into();
    assert!(
        rules
            .check(&said("x"), &recent, at(2), usize::MAX)
            .is_empty()
    );
    let recent: Recent = [(at(0), 1), (at(1), 2), (at(2), 1), (at(3), 1)].into();
    let hits = rules.check(&said("x"), &recent, at(3), usize::MAX);
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].why, "4 messages within 5s");
    assert_eq!(hits[1].why, "the same text 3 times within 1m");
    // The first message is out of the 5 s window ten seconds later.
    let recent: Recent = [(at(0), 7), (at(6), 8), (at(7), 9), (at(8), 10)].into();
    assert!(
        rules
            .check(&said("x"), &recent, at(8), usize::MAX)
            .is_empty()
    );
}

#[test]
fn exempt_roles_and_channels_are_not_checked() {
    let mut invites = rule("invites", Trigger::InviteLinks);
    invites.exempt_roles = vec![77];
    invites.exempt_channels = vec![11];
    let rules = compile(vec![invites]).unwrap();
    let now = Instant::now();
    let none = Recent::new();
    let mut message = said("discord.gg/abc");
    assert_eq!(rules.check(&message, &none, now, usize::MAX).len(), 1);
    let roles: [Id<RoleMarker>; 1] = [Id::new(77)];
    message.roles = &roles;
    assert!(
        rules.check(&message, &none, now, usize::MAX).is_empty(),
        "exempt role"
    );
    message.roles = &[];
    message.channel = 11;
    assert!(
        rules.check(&message, &none, now, usize::MAX).is_empty(),
        "exempt channel"
    );
}

#[test]
fn rules_over_the_limits_are_refused_with_the_reason() {
    let refused = |rules: Vec<AutomodRule>, wanted: &str| {
        let problem = compile(rules).expect_err(wanted);
        assert!(
            problem.contains(wanted),
            "{problem:?} should say {wanted:?}"
        );
    };
    let many = (0..=RULES_MAX)
        .map(|n| rule(&format!("r{n}"), Trigger::InviteLinks))
        .collect();
    refused(many, &format!("at most {RULES_MAX} automod rules"));
    refused(
        vec![
            rule("Same", Trigger::InviteLinks),
            rule("same", Trigger::InviteLinks),
        ],
        "names are unique",
    );
    refused(vec![rule("", Trigger::InviteLinks)], "a name has 1 to");
    refused(
        vec![rule(
            "words",
            Trigger::Keywords {
                words: vec!["x".into(); KEYWORDS_MAX + 1],
            },
        )],
        "1 to 1000 keywords",
    );
    let thousand: Vec<String> = (0..KEYWORDS_MAX).map(|n| format!("w{n}")).collect();
    refused(
        (0..3)
            .map(|n| {
                rule(
                    &format!("k{n}"),
                    Trigger::Keywords {
                        words: thousand.clone(),
                    },
                )
            })
            .collect(),
        "at most 2000 keywords in all",
    );
    refused(
        vec![rule(
            "stars",
            Trigger::Keywords {
                words: vec!["**".into()],
            },
        )],
        "besides `*`",
    );
    refused(
        vec![rule(
            "bad",
            Trigger::Regex {
                patterns: vec!["(unclosed".into()],
            },
        )],
        "is not a valid regular expression",
    );
    refused(
        vec![rule(
            "huge",
            Trigger::Regex {
                patterns: vec![r"\w{200}\w{200}\w{200}".into()],
            },
        )],
        "too large once compiled",
    );
    refused(
        vec![rule(
            "many",
            Trigger::Regex {
                patterns: vec!["a".into(); PATTERNS_MAX + 1],
            },
        )],
        "1 to 10 regular expressions",
    );
    refused(
        vec![rule(
            "flood",
            Trigger::MessageSpam {
                messages: 5,
                within_secs: 3_600,
            },
        )],
        "a window is 1 second to 5m",
    );
    refused(
        vec![rule(
            "flood",
            Trigger::MessageSpam {
                messages: 1,
                within_secs: 10,
            },
        )],
        "give 2 to 50 messages",
    );
    refused(
        vec![rule(
            "links",
            Trigger::Links {
                allow: Vec::new(),
                deny: vec!["not a domain".into()],
            },
        )],
        "is not a domain",
    );
    let mut two = rule("two", Trigger::InviteLinks);
    two.actions = vec![AutomodAction::Warn, AutomodAction::Ban];
    refused(vec![two], "at most one of warn, timeout, kick and ban");
    let mut none = rule("none", Trigger::InviteLinks);
    none.actions.clear();
    refused(vec![none], "at least one action");
    let mut long = rule("long", Trigger::InviteLinks);
    long.actions = vec![AutomodAction::Timeout { secs: 29 * 86_400 }];
    refused(vec![long], "a timeout lasts 1 second to 28 days");
}

#[test]
fn twenty_five_rules_of_every_kind_compile_within_the_limits() {
    let mut rules = Vec::new();
    let kinds = [
        Trigger::MessageSpam {
            messages: 5,
            within_secs: 5,
        },
        Trigger::DuplicateText {
            repeats: 3,
            within_secs: 30,
        },
        Trigger::MentionSpam { mentions: 8 },
        Trigger::InviteLinks,
        Trigger::Links {
            allow: Vec::new(),
            deny: vec!["evil.com".into()],
        },
        Trigger::Keywords {
            words: (0..500).map(|n| format!("bad{n}*")).collect(),
        },
        Trigger::Regex {
            patterns: vec![r"(?i)fr[e3]{2}\s*n[i1]tro".into()],
        },
        Trigger::Caps {
            percent: 80,
            min_letters: 12,
        },
        Trigger::EmojiFlood { emojis: 10 },
        Trigger::Zalgo { marks: 20 },
        Trigger::NewAccount { min_age_days: 3 },
    ];
    for n in 0..25 {
        rules.push(rule(&format!("rule {n}"), kinds[n % kinds.len()].clone()));
    }
    let compiled = compile(rules).unwrap();
    assert_eq!(compiled.rules.len(), 25);
    assert!(
        compiled
            .check(
                &said("an ordinary message"),
                &Recent::new(),
                Instant::now(),
                usize::MAX
            )
            .is_empty()
    );
}

#[test]
fn the_guilds_keywords_and_patterns_are_one_set_and_each_rule_names_its_own() {
    let words = |list: &[&str]| Trigger::Keywords {
        words: list.iter().map(|w| (*w).to_owned()).collect(),
    };
    let mut exempt = rule("exempt", words(&["shared"]));
    exempt.exempt_channels = vec![10];
    let rules = compile(vec![
        rule("first", words(&["alpha", "shared"])),
        rule(
            "patterns",
            Trigger::Regex {
                patterns: vec![r"\d{3}-\d{4}".into(), "CaseSensitive".into()],
            },
        ),
        exempt,
        rule("second", words(&["beta*", "shared"])),
    ])
    .unwrap();
    let hits = |text: &str| -> Vec<(String, String)> {
        rules
            .check(&said(text), &Recent::new(), Instant::now(), usize::MAX)
            .into_iter()
            .map(|hit| (rules.rules[hit.rule].name.clone(), hit.why))
            .collect()
    };
    let pair = |rule: &str, why: &str| (rule.to_owned(), why.to_owned());
    assert_eq!(
        hits("SHARED betas 555-1234"),
        [
            pair("first", "the keyword `shared`"),
            pair("patterns", "the pattern `\\d{3}-\\d{4}`"),
            pair("second", "the keyword `beta*`"),
        ],
        "the exempt rule is skipped; each rule reports its own first word"
    );
    assert_eq!(hits("alpha"), [pair("first", "the keyword `alpha`")]);
    assert!(hits("casesensitive").is_empty(), "patterns keep their case");
    assert_eq!(
        hits("CaseSensitive"),
        [pair("patterns", "the pattern `CaseSensitive`")]
    );
    assert!(hits("nothing here").is_empty());
}
