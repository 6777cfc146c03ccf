//! Strings that cross from a guest into the host (error messages, and any other text a sink
//! hands back) are capped at the boundary, so a few bytes of input cannot become gigabytes of
//! log, summary or dead letters once the host copies, escapes and repeats them.

use std::borrow::Cow;

/// The most bytes of a guest's string the host keeps.
pub const GUEST_STRING_CAP: usize = 4096;

/// `s` cut to at most `cap` bytes (at a character boundary), with a marker saying how long it
/// was; unchanged when it fits.
pub fn cap_guest_string_at(mut s: String, cap: usize) -> String {
    if s.len() <= cap {
        return s;
    }
    let total = s.len();
    s.truncate(s.floor_char_boundary(cap));
    s.shrink_to_fit();
    s.push_str(&marker(total));
    s
}

/// `text` cut to [`GUEST_STRING_CAP`] bytes like [`cap_guest_string`], without copying it when
/// it fits: for a guest string the host only quotes.
pub fn capped(text: &str) -> Cow<'_, str> {
    if text.len() <= GUEST_STRING_CAP {
        return Cow::Borrowed(text);
    }
    let kept = &text[..text.floor_char_boundary(GUEST_STRING_CAP)];
    Cow::Owned(format!("{kept}{}", marker(text.len())))
}

/// What a cut string ends with: how long it was.
fn marker(total: usize) -> String {
    format!("… [truncated: {total} bytes]")
}

/// `s` cut to [`GUEST_STRING_CAP`] bytes, marked as truncated when it was longer.
pub fn cap_guest_string(s: String) -> String {
    cap_guest_string_at(s, GUEST_STRING_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_pass_unchanged() {
        assert_eq!(cap_guest_string("refused".into()), "refused");
        let exact = "x".repeat(GUEST_STRING_CAP);
        assert_eq!(cap_guest_string(exact.clone()), exact);
    }

    #[test]
    fn long_strings_are_cut_and_marked() {
        let long = "\u{1}".repeat(1_000_000);
        let capped = cap_guest_string(long);
        assert!(capped.starts_with(&"\u{1}".repeat(GUEST_STRING_CAP)));
        assert!(capped.ends_with("… [truncated: 1000000 bytes]"), "{capped}");
        assert!(capped.len() < GUEST_STRING_CAP + 64);
    }

    #[test]
    fn the_cut_falls_on_a_character_boundary() {
        // "é" is two bytes: a cap of 3 keeps one of them, not a byte and a half.
        let capped = cap_guest_string_at("ééé".into(), 3);
        assert_eq!(capped, "é… [truncated: 6 bytes]");
    }
}
