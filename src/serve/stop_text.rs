//! The text of a generated sequence as it grows: what is safe to send so far, held back while
//! it ends inside a multi-byte character or with the start of a stop string, and cut before the
//! first stop string.

/// Tracks how much of a sequence's text has been sent.
#[derive(Debug, Clone, Default)]
pub struct StopText {
    stops: Vec<String>,
    sent: usize,
}

impl StopText {
    /// A tracker for the stop strings `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            sent: 0,
        }
    }

    /// Given the whole text so far, the new text that can be sent and whether a stop string
    /// was reached (then nothing from it on is ever sent).
    pub fn update(&mut self, text: &str) -> (String, bool) {
        if text.ends_with('\u{fffd}') || text.len() < self.sent || !text.is_char_boundary(self.sent)
        {
            return (String::new(), false);
        }
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            let at = at.max(self.sent);
            let new = text[self.sent..at].to_string();
            self.sent = at;
            return (new, true);
        }
        let end = text.len() - self.held_back(text);
        if end <= self.sent {
            return (String::new(), false);
        }
        let new = text[self.sent..end].to_string();
        self.sent = end;
        (new, false)
    }

    /// The rest of the text once generation ended without a stop string.
    pub fn finish(&mut self, text: &str) -> String {
        let rest = text.get(self.sent..).unwrap_or_default().to_string();
        self.sent = text.len();
        rest
    }

    /// Bytes at the end of `text` that begin some stop string.
    fn held_back(&self, text: &str) -> usize {
        self.stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|k| s.is_char_boundary(*k))
                    .map(|k| &s[..k])
            })
            .filter(|prefix| {
                prefix.len() <= text.len()
                    && text.is_char_boundary(text.len() - prefix.len())
                    && text.ends_with(prefix)
            })
            .map(str::len)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn text_without_stops_is_sent_as_it_grows() {
        let mut t = StopText::new(&[]);
        assert_eq!(t.update("ab"), ("ab".into(), false));
        assert_eq!(t.update("abc"), ("c".into(), false));
        assert_eq!(t.update("abc\u{fffd}"), (String::new(), false));
        assert_eq!(t.update("abcé"), ("é".into(), false));
        assert_eq!(t.finish("abcé"), "");
    }

    #[test]
    fn the_start_of_a_stop_string_is_held_back_and_the_stop_cuts_the_text() {
        let mut t = StopText::new(&stops(&["END", "xyz"]));
        assert_eq!(t.update("hello E"), ("hello ".into(), false));
        assert_eq!(t.update("hello EN"), (String::new(), false));
        assert_eq!(t.update("hello ENT"), ("ENT".into(), false));
        assert_eq!(t.update("hello ENT and END more"), (" and ".into(), true));
    }

    #[test]
    fn held_back_text_is_sent_at_the_end() {
        let mut t = StopText::new(&stops(&["éz"]));
        assert_eq!(t.update("aé"), ("a".into(), false));
        assert_eq!(t.finish("aé"), "é");
    }

    #[test]
    fn a_stop_string_in_the_first_text_sends_nothing_after_it() {
        let mut t = StopText::new(&stops(&["", "b"]));
        assert_eq!(t.update("abc"), ("a".into(), true));
    }
}
