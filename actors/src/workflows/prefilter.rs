//! One scan of a message for every message trigger a plan runs: the triggers' `contains`
//! and `starts_with` texts are one Aho-Corasick automaton, their regexes one `RegexSet`, both
//! built with the guild's workflows. A trigger whose text or regex the message lacks is not
//! tried, so a message that matches none costs one scan of each, whatever the number of
//! workflows. Exact, not a heuristic: a trigger passed over could not have fired.

use aho_corasick::AhoCorasick;
use regex::{RegexSet, RegexSetBuilder};

use super::model::{CompiledTrigger, limits};
use super::run::Matching;

/// What the message triggers of a view need of a message's text.
#[derive(Default)]
pub(crate) struct Prefilter {
    /// One per workflow of the view, in its order.
    needs: Vec<Needs>,
    /// Every non-empty `contains` and `starts_with`, lowercased, ASCII letters in any case
    /// (see [`Matching::folded`]); `None` when no trigger has one.
    texts: Option<AhoCorasick>,
    text_count: usize,
    /// Every trigger's regex, matched against the message as sent.
    regexes: Option<RegexSet>,
}

/// Indices into [`Prefilter::texts`] and [`Prefilter::regexes`]; `None`: nothing needed.
#[derive(Default)]
struct Needs {
    contains: Option<usize>,
    starts_with: Option<usize>,
    regex: Option<usize>,
}

impl Prefilter {
    /// The prefilter of a view's triggers, in its order.
    pub(crate) fn new<'a>(triggers: impl IntoIterator<Item = &'a CompiledTrigger>) -> Self {
        let mut texts: Vec<&str> = Vec::new();
        let mut regexes: Vec<&str> = Vec::new();
        let add = |list: &mut Vec<&'a str>, item: &'a str| {
            list.push(item);
            Some(list.len() - 1)
        };
        let needs = triggers
            .into_iter()
            .map(|trigger| match trigger {
                CompiledTrigger::Message {
                    contains,
                    starts_with,
                    regex,
                    ..
                } => {
                    // An empty text is in every message: nothing to look for.
                    let mut text = |text: &'a Option<String>| {
                        text.as_deref()
                            .filter(|text| !text.is_empty())
                            .and_then(|text| add(&mut texts, text))
                    };
                    Needs {
                        contains: text(contains),
                        starts_with: text(starts_with),
                        regex: regex.as_ref().and_then(|r| add(&mut regexes, r.as_str())),
                    }
                }
                _ => Needs::default(),
            })
            .collect();
        let text_count = texts.len();
        let texts = (!texts.is_empty()).then(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&texts)
                .expect("a few thousand bytes of literals are within the automaton's limits")
        });
        // Each regex was built alone within the limits; together they fit in the sum. A set
        // refused anyway leaves each regex to be tried on its own.
        let limit = limits::REGEX_BYTES.saturating_mul(regexes.len());
        let regexes = (!regexes.is_empty())
            .then(|| {
                RegexSetBuilder::new(&regexes)
                    .size_limit(limit)
                    .dfa_size_limit(limit)
                    .build()
                    .ok()
            })
            .flatten();
        Self {
            needs,
            texts,
            text_count,
            regexes,
        }
    }

    /// For each workflow of the view, in order, whether the message may fire its trigger.
    pub(crate) fn scan(&self, message: &Matching<'_>) -> Vec<bool> {
        let mut anywhere = vec![false; self.text_count];
        let mut at_start = vec![false; self.text_count];
        if let Some(texts) = &self.texts {
            for found in texts.find_overlapping_iter(message.folded()) {
                let index = found.pattern().as_usize();
                anywhere[index] = true;
                at_start[index] |= found.start() == 0;
            }
        }
        let regexes = self
            .regexes
            .as_ref()
            .map(|set| set.matches(message.content()));
        self.needs
            .iter()
            .map(|needs| {
                needs.contains.is_none_or(|i| anywhere[i])
                    && needs.starts_with.is_none_or(|i| at_start[i])
                    && needs
                        .regex
                        .is_none_or(|i| regexes.as_ref().is_none_or(|set| set.matched(i)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::run::{EventFacts, EventKind};
    use super::*;

    fn message(
        contains: Option<&str>,
        starts_with: Option<&str>,
        regex: Option<&str>,
    ) -> CompiledTrigger {
        CompiledTrigger::Message {
            contains: contains.map(str::to_lowercase),
            starts_with: starts_with.map(str::to_lowercase),
            regex: regex.map(|source| regex::Regex::new(source).unwrap()),
            channel: None,
            role: None,
        }
    }

    fn said(content: &str) -> EventFacts {
        EventFacts {
            kind: EventKind::Message,
            content: content.to_owned(),
            ..EventFacts::default()
        }
    }

    /// Whatever the message, the prefilter passes over only triggers that do not fire.
    #[test]
    fn a_trigger_passed_over_could_not_have_fired() {
        let triggers = [
            message(Some("Hello"), None, None),
            message(None, Some("!Order"), None),
            message(Some("ref"), Some("order"), Some(r"^order #\d+")),
            message(None, None, Some(r"(?i)straße")),
            message(Some("straße"), None, None),
            message(Some(""), Some(""), None),
            message(Some("k"), None, None),
            CompiledTrigger::MemberJoin,
            CompiledTrigger::Command("roll".into()),
        ];
        let prefilter = Prefilter::new(&triggers);
        for content in [
            "hello there",
            "HeLLo",
            "!ORDER now",
            "say !order",
            "order #12 ref 3",
            "Order #x ref",
            "STRASSE",
            "die STRAßE",
            "die straße",
            "\u{212A}elvin",
            "",
            "nothing at all",
            "héllo hello",
        ] {
            let facts = said(content);
            let matching = Matching::new(&facts);
            let may = prefilter.scan(&matching);
            assert_eq!(may.len(), triggers.len());
            for (trigger, may) in triggers.iter().zip(&may) {
                let fires = matching.matches(trigger, "!").is_some();
                assert!(
                    *may || !fires,
                    "{content:?} fires {trigger:?}, which the prefilter passed over"
                );
            }
        }
    }

    #[test]
    fn a_message_without_their_texts_is_tried_against_no_text_trigger() {
        let triggers = [
            message(Some("nomatch1"), None, None),
            message(None, Some("nomatch2"), None),
            message(None, None, Some(r"^order #\d+ ref 41$")),
        ];
        let prefilter = Prefilter::new(&triggers);
        let facts = said("hello there, nothing to see 1001");
        assert_eq!(prefilter.scan(&Matching::new(&facts)), [false; 3]);
        let facts = said("NoMatch2 and NOMATCH1");
        assert_eq!(prefilter.scan(&Matching::new(&facts)), [true, true, false]);
        let facts = said("the text nomatch2");
        assert_eq!(
            prefilter.scan(&Matching::new(&facts)),
            [false, false, false],
            "`starts_with` is at the start only"
        );
    }
}
