//! The `/` filter: one piece of text, matched case-insensitively against
//! what each row shows, the same way on every tab (events, requests,
//! types).

use crate::dashboard::state::{LogLine, TypeStats};
use crate::event::RequestEvent;

/// The text typed after `/`, and whether it is being typed.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    text: String,
    /// `text` in lower case, kept so each row is not lowered twice.
    needle: String,
    pub editing: bool,
}

impl Filter {
    /// The text as typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when nothing is typed (every row passes).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Adds a typed character.
    pub fn push(&mut self, c: char) {
        self.text.push(c);
        self.needle = self.text.to_lowercase();
    }

    /// Drops the last character.
    pub fn pop(&mut self) {
        self.text.pop();
        self.needle = self.text.to_lowercase();
    }

    /// Empties the filter.
    pub fn clear(&mut self) {
        self.text.clear();
        self.needle.clear();
    }

    /// True when any of `fields` contains the text, ignoring case.
    fn passes(&self, fields: &[&str]) -> bool {
        self.needle.is_empty()
            || fields
                .iter()
                .any(|f| f.to_lowercase().contains(&self.needle))
    }

    /// An event line, by its tag as shown (`@system/power/on`) and fields.
    /// The tag without its `@`: `/@system` found nothing (a review).
    pub fn event(&self, l: &LogLine) -> bool {
        self.needle.is_empty() || self.passes(&[&format!("@{}", l.tag), &l.fields])
    }

    /// A request, by peer, unit-id, path, status, method and error, each
    /// as its row shows it: an unanswered one's status is `none` (it was
    /// matched as `0`), a unit-id has its invisible characters as
    /// `\u{..}`, a request without one `-` (a review, December 7).
    pub fn request(&self, r: &RequestEvent) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        let status = match r.status {
            crate::event::NO_ANSWER => "none".to_string(),
            status => status.to_string(),
        };
        self.passes(&[
            &r.peer,
            &crate::dashboard::format::unit_shown(r.unit_id.as_deref().unwrap_or("-")),
            &r.path,
            &status,
            &r.method,
            r.error.as_deref().unwrap_or(""),
        ])
    }

    /// A record type, by its name and last value.
    pub fn record_type(&self, name: &str, s: &TypeStats) -> bool {
        self.passes(&[crate::event::type_label(name), &s.last_value])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_field_ignoring_case() {
        let mut f = Filter::default();
        let line = LogLine {
            ts: "2026-11-27T08:00:00Z".parse().unwrap(),
            rank: "2026-11-27T08:00:00Z".parse().unwrap(),
            tag: "system/power/on".into(),
            fields: "trigger=STN".into(),
            failure: false,
            seq: 1,
            late: None,
        };
        assert!(f.event(&line), "empty passes all");
        for c in "stn".chars() {
            f.push(c);
        }
        assert!(f.event(&line));
        // The tag as the row shows it, with its `@`.
        let mut at = Filter::default();
        "@SYSTEM/power".chars().for_each(|c| at.push(c));
        assert!(at.event(&line));
        f.push('x');
        assert!(!f.event(&line));
        f.pop();
        assert_eq!(f.text(), "stn");
        f.clear();
        assert!(f.is_empty() && f.event(&line));
    }

    #[test]
    fn a_request_is_matched_as_its_row_shows_it() {
        let filter = |text: &str| {
            let mut f = Filter::default();
            text.chars().for_each(|c| f.push(c));
            f
        };
        let at = crate::fixtures::at("2026-11-27T08:00:00Z");
        let mut r = crate::fixtures::accepted(1, at, Some("ctl\u{1b}x"), "[]");
        r.status = crate::event::NO_ANSWER;
        assert!(filter("none").request(&r));
        assert!(filter("ctl\\u{1b}x").request(&r));
        r.unit_id = None;
        assert!(filter("-").request(&r));
    }
}
