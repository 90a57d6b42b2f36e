//! Users a free text mentions (`<@id>`, or `<@!id>` as older clients wrote it): a ticket's
//! transcript line or a parked workflow run's event names them as much as its author, so they
//! are indexed with the row (their export lists it, their erasure reaches it, a breach
//! listing names them), and their erasure replaces the mention with `<@0>`
//! ([`ERASED_USER`](crate::privacy::ERASED_USER)), keeping the rest of the text.

use crate::privacy::ERASED_USER;

/// The ids `text` mentions, ascending, each once; never 0.
pub(crate) fn mentioned_users(text: &str) -> Vec<u64> {
    let mut users: Vec<u64> = mentions(text).map(|(_, user)| user).collect();
    users.sort_unstable();
    users.dedup();
    users.retain(|&user| user != ERASED_USER);
    users
}

/// `text` with every mention of `user_id` replaced by `<@0>`.
pub(crate) fn without_mentions_of(text: &str, user_id: u64) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (span, user) in mentions(text) {
        if user == user_id {
            out.push_str(&text[copied..span.start]);
            out.push_str("<@0>");
            copied = span.end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Each mention in `text`: its byte range and the user.
fn mentions(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, u64)> + '_ {
    text.match_indices("<@").filter_map(move |(start, _)| {
        let rest = &text[start + 2..];
        let digits_from = usize::from(rest.starts_with('!'));
        let digits = rest[digits_from..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let end = start + 2 + digits_from + digits;
        if digits == 0 || text.as_bytes().get(end) != Some(&b'>') {
            return None;
        }
        let user = text[start + 2 + digits_from..end].parse().ok()?;
        Some((start..end + 1, user))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_and_anonymised_and_nothing_else_is() {
        let text = "thanks <@42> and <@!7>, not <@&9> (a role), <#5>, <@>, <@x>, <@42";
        assert_eq!(mentioned_users(text), vec![7, 42]);
        assert_eq!(mentioned_users("<@0> <@42><@42>"), vec![42]);
        assert_eq!(
            without_mentions_of(text, 42),
            "thanks <@0> and <@!7>, not <@&9> (a role), <#5>, <@>, <@x>, <@42"
        );
        assert_eq!(without_mentions_of("<@!7><@7> é", 7), "<@0><@0> é");
        assert_eq!(without_mentions_of("<@71>", 7), "<@71>");
        assert_eq!(
            mentioned_users("<@99999999999999999999999>"),
            Vec::<u64>::new()
        );
    }
}
