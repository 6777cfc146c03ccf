//! Base64 as eKuiper reads and writes it: the standard alphabet, with the strict, lenient and
//! Go readings its functions and `bytea` columns use, all on the `base64` crate.

use std::borrow::Cow;

use ::base64::Engine as _;
use ::base64::alphabet::STANDARD;
use ::base64::engine::general_purpose::STANDARD as PADDED_ENCODER;
use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Reads text whose padding has been taken off; bits past the last whole byte are ignored.
const UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Reads padded text, as Go's `base64.StdEncoding` does: `=` exactly where it belongs, and
/// bits past the last whole byte ignored.
const PADDED: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
pub fn encode(bytes: &[u8]) -> String {
    PADDED_ENCODER.encode(bytes)
}

/// Decodes standard base64 leniently: any `=` at the end are dropped, and a last lone
/// character (too short for a byte) is checked but adds nothing. `None` on any character
/// outside the alphabet.
pub fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=').as_bytes();
    let body = if body.len() % 4 == 1 {
        let (whole, last) = body.split_at(body.len() - 1);
        if !is_symbol(last[0]) {
            return None;
        }
        whole
    } else {
        body
    };
    UNPADDED.decode(body).ok()
}

/// Decodes standard padded base64 only: a length that is a multiple of 4 and `=` only as the
/// one or two last characters that complete the last group.
pub fn decode_padded(text: &str) -> Option<Vec<u8>> {
    PADDED.decode(text).ok()
}

/// Go's `base64.StdEncoding.DecodeString`: padded standard base64 in which line breaks
/// (`\n`, `\r`) are skipped. On bad input, the error is the byte offset Go reports it at
/// (`illegal base64 data at input byte N`).
pub fn decode_go(src: &[u8]) -> Result<Vec<u8>, usize> {
    let text: Cow<'_, [u8]> = if src.iter().any(|&b| is_line_break(b)) {
        Cow::Owned(src.iter().copied().filter(|&b| !is_line_break(b)).collect())
    } else {
        Cow::Borrowed(src)
    };
    PADDED.decode(&text).map_err(|_| go_error_offset(src))
}

/// Where Go's decoder reports `src` as bad: it reads groups of four characters, skipping line
/// breaks, and stops at the first that does not fit. The length of `src` when it finds no fault.
fn go_error_offset(src: &[u8]) -> usize {
    let skip_line_breaks = |mut at: usize| {
        while at < src.len() && is_line_break(src[at]) {
            at += 1;
        }
        at
    };
    let mut si = 0;
    while si < src.len() {
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                // Input ended inside a group: Go points at the group's first character.
                return if j == 0 { src.len() } else { si - j };
            }
            let c = src[si];
            si += 1;
            if is_symbol(c) {
                j += 1;
                continue;
            }
            if is_line_break(c) {
                continue;
            }
            if c != b'=' {
                return si - 1;
            }
            // Padding: only after two or three characters of a group, and then the end.
            match j {
                0 | 1 => return si - 1,
                2 => {
                    si = skip_line_breaks(si);
                    if si == src.len() {
                        return src.len();
                    }
                    if src[si] != b'=' {
                        return si - 1;
                    }
                    si += 1;
                }
                _ => {}
            }
            si = skip_line_breaks(si);
            return if si < src.len() { si } else { src.len() };
        }
    }
    src.len()
}

const fn is_symbol(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

const fn is_line_break(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for input in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            b"\xff\x00\x10",
        ] {
            assert_eq!(decode_lenient(&encode(input)).unwrap(), input);
            assert_eq!(decode_padded(&encode(input)).unwrap(), input);
            assert_eq!(decode_go(encode(input).as_bytes()).unwrap(), input);
        }
        assert_eq!(encode(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn lenient_reading_ignores_padding_and_a_lone_last_character() {
        assert_eq!(decode_lenient("Zm9vYg").unwrap(), b"foob");
        assert_eq!(decode_lenient("Zm9vYg=====").unwrap(), b"foob");
        assert_eq!(decode_lenient("Zm9vY").unwrap(), b"foo");
        assert_eq!(decode_lenient("QR").unwrap(), b"A");
        assert_eq!(decode_lenient("Zm9v!"), None);
        assert_eq!(decode_lenient("Zm=9v"), None);
    }

    #[test]
    fn padded_reading_wants_whole_groups() {
        assert_eq!(decode_padded("QR==").unwrap(), b"A");
        assert_eq!(decode_padded("aGVsbG8"), None);
        assert_eq!(decode_padded("a==="), None);
        assert_eq!(decode_padded("===="), None);
        assert_eq!(decode_padded("!!!!"), None);
    }

    #[test]
    fn go_reading_reports_where_go_does() {
        assert_eq!(decode_go(b"aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_go(b"ab==").unwrap(), b"i");
        assert_eq!(decode_go(b"aGVsbG8"), Err(4));
        assert_eq!(decode_go(b"a!"), Err(1));
        assert_eq!(decode_go(b"abc"), Err(0));
        assert_eq!(decode_go(b"a==="), Err(1));
        assert_eq!(decode_go(b"ab=c"), Err(2));
        assert_eq!(decode_go(b"ab="), Err(3));
        assert_eq!(decode_go(b"YQ==YQ=="), Err(4));
    }
}
