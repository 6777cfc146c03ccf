//! The decoder's fast path for the common message: a flat JSON object whose keys are those of
//! the previous one, in the same order, holding only plain scalars.
//!
//! Hand-written on purpose: serde_json hands every key and value through its visitor, and the
//! row decoder then compares each key with the layout it expects; here the input's key bytes
//! are compared with the expected key in place and each value is read straight into a
//! [`Value`], which takes a third of the instructions. It declines (returns `None`) on anything
//! it does not read exactly as serde_json would: another layout, an escape in a string, a
//! nested value, an exponent, a number with more digits than it reads exactly, a kept string
//! that is not UTF-8. The serde path then decodes the message, so values and error messages
//! stay the serde path's. It reads bytes: only kept strings are checked to be UTF-8, as
//! serde_json reading bytes checks no skipped string, which spares checking the whole message.

use std::sync::Arc;

use super::{ColumnKind, SKIPPED};
use crate::value::Value;

/// Powers of ten a float with at most 15 significant digits is divided by: both the digits and
/// the power are exact in an `f64`, so the quotient is the correctly rounded value, the one
/// serde_json computes for such a number (with or without its `float_roundtrip` feature).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// `10^n` for the digits of one eight-byte step.
const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Of eight bytes, a mask with the high bit of each byte that is an ASCII digit.
const fn digit_bytes(word: u64) -> u64 {
    let low = word & !HIGH;
    // No carry crosses a byte: a low seven-bit value plus at most 0x50 stays below 0x100.
    let from_zero = low.wrapping_add(ONES * (0x80 - b'0' as u64));
    let past_nine = low.wrapping_add(ONES * (0x80 - b'9' as u64 - 1));
    from_zero & !past_nine & !word & HIGH
}

/// The number eight digit values spell, the first (most significant) in the lowest byte.
const fn eight_digits(values: u64) -> u64 {
    const MASK: u64 = 0x0000_00ff_0000_00ff;
    const MUL_HIGH: u64 = 100 + (1_000_000 << 32);
    const MUL_LOW: u64 = 1 + (10_000 << 32);
    // Pairs of digits, then pairs of pairs, in one multiply-add each.
    let pairs = values.wrapping_mul(10).wrapping_add(values >> 8);
    ((pairs & MASK)
        .wrapping_mul(MUL_HIGH)
        .wrapping_add(((pairs >> 16) & MASK).wrapping_mul(MUL_LOW)))
        >> 32
}

/// Whether `a` and `b` (of the same length) hold the same bytes: compared eight at a time,
/// which for a key of a few bytes costs less than a call to `memcmp`.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let mut a = a.chunks_exact(8);
    let mut b = b.chunks_exact(8);
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    for (x, y) in a.by_ref().zip(b.by_ref()) {
        if word(x) != word(y) {
            return false;
        }
    }
    a.remainder().iter().zip(b.remainder()).all(|(x, y)| x == y)
}

/// Whether `key` can be matched byte for byte against the input: a key holding a quote, a
/// backslash or a control character may be written escaped, so it never is.
pub(super) fn plain_key(key: &str) -> bool {
    !key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Per key, the bytes from the end of the previous value (or the opening brace) to the key's
/// value when the message has no whitespace: `"a":` for the first key, `,"b":` for the others.
/// Matched in one comparison, they spare reading each punctuation mark on its own.
pub(super) fn tokens(keys: &[Arc<str>]) -> Vec<Box<[u8]>> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let mut token = Vec::with_capacity(key.len() + 4);
            if i > 0 {
                token.push(b',');
            }
            token.push(b'"');
            token.extend_from_slice(key.as_bytes());
            token.extend_from_slice(b"\":");
            token.into_boxed_slice()
        })
        .collect()
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        // Most messages have no whitespace between tokens: one comparison then.
        if self.bytes.get(self.at).is_some_and(|&b| b > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    /// After an opening quote: the string's bytes up to its closing quote, if it has no escape
    /// and no control character (not checked to be UTF-8).
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut i = start;
        // Eight bytes at a time up to the first that ends the string or needs a closer look.
        while let Some(chunk) = self.bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let mask = super::escape_mask(word);
            if mask != 0 {
                i += (mask.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        loop {
            match *self.bytes.get(i)? {
                b'"' => {
                    self.at = i + 1;
                    return self.bytes.get(start..i);
                }
                b'\\' | 0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }

    /// Reads a run of ASCII digits, eight at a time where it can, appending them to
    /// `significand` (which wraps past 19 digits: the caller declines such numbers); how many.
    fn digits(&mut self, significand: &mut u64) -> u32 {
        let start = self.at;
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let run = (!digit_bytes(word) & HIGH).trailing_zeros() / 8;
            if run == 0 {
                return (self.at - start) as u32;
            }
            // The run's digit values in its top bytes, zeros (leading zero digits) below: a
            // byte after the run may borrow in the subtraction, but only from bytes after it,
            // which the shift drops.
            let values = word.wrapping_sub(ONES * u64::from(b'0')) << (8 * (8 - run));
            *significand = significand
                .wrapping_mul(POW10_U64[run as usize])
                .wrapping_add(eight_digits(values));
            self.at += run as usize;
            if run < 8 {
                return (self.at - start) as u32;
            }
        }
        while let Some(d @ b'0'..=b'9') = self.peek() {
            *significand = significand
                .wrapping_mul(10)
                .wrapping_add(u64::from(d - b'0'));
            self.at += 1;
        }
        (self.at - start) as u32
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// A number, as serde_json reads it: an integer is a `bigint` (`-0` is a float, as there),
    /// a decimal fraction a `float`.
    fn number(&mut self) -> Option<Value> {
        let negative = self.eat(b'-').is_some();
        let mut digits;
        let mut significand = 0u64;
        match self.peek()? {
            b'0' => {
                self.at += 1;
                digits = 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                digits = self.digits(&mut significand);
                if digits > 18 {
                    return None;
                }
            }
            _ => return None,
        }
        let mut fraction = 0usize;
        if self.eat(b'.').is_some() {
            fraction = self.digits(&mut significand) as usize;
            digits += fraction as u32;
            if fraction == 0 || digits > 15 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        if fraction == 0 {
            return Some(match (negative, significand) {
                (false, m) => Value::Int(m as i64),
                (true, 0) => Value::Float(-0.0),
                (true, m) => Value::Int(-(m as i64)),
            });
        }
        let f = significand as f64 / POW10[fraction];
        Some(Value::Float(if negative { -f } else { f }))
    }

    /// A scalar value; `keep` says whether to build it (a skipped string is only scanned).
    fn value(&mut self, keep: bool) -> Option<Value> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                let s = self.string()?;
                // Only a kept string is checked to be UTF-8: serde_json reading bytes checks no
                // skipped one either.
                Some(if keep {
                    Value::String(std::str::from_utf8(s).ok()?.into())
                } else {
                    Value::Null
                })
            }
            b't' => self.literal(b"true").map(|()| Value::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Value::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }
}

/// The `len` values of the row laid out from `text`, a JSON object whose keys are exactly those
/// of `tokens` (from [`tokens`], all of them [`plain_key`]s) in this order: the value of key `i`
/// at position `slots[i]` (not built when that is [`SKIPPED`]), `NULL` where no key goes; or
/// `None` when the serde path must decode it. Unless `laid_out`, the slots of the kept keys are
/// `0, 1, 2, ...` in key order: the values are pushed as they come. With `kinds` (per key),
/// each kept value is fitted to its kind ([`ColumnKind::fit`]); the flag says whether all fit
/// (always `false` without kinds).
pub(super) fn decode(
    bytes: &[u8],
    tokens: &[Box<[u8]>],
    slots: &[u32],
    kinds: Option<&[ColumnKind]>,
    len: usize,
    laid_out: bool,
) -> Option<(Vec<Value>, bool)> {
    if tokens.is_empty() {
        return None;
    }
    let mut c = Cursor { bytes, at: 0 };
    let mut values = Vec::with_capacity(len);
    if laid_out {
        values.resize_with(len, || Value::Null);
    }
    let mut fitted = kinds.is_some();
    c.skip_ws();
    c.eat(b'{')?;
    for (i, (token, &slot)) in tokens.iter().zip(slots).enumerate() {
        let end = c.at + token.len();
        if c.bytes.get(c.at..end).is_some_and(|t| same_bytes(t, token)) {
            c.at = end;
        } else {
            // Whitespace around the punctuation, or another key.
            c.skip_ws();
            if i > 0 {
                c.eat(b',')?;
                c.skip_ws();
            }
            c.eat(b'"')?;
            let key = &token[usize::from(i > 0) + 1..token.len() - 2];
            let end = c.at + key.len();
            if !c.bytes.get(c.at..end).is_some_and(|k| same_bytes(k, key))
                || c.bytes.get(end) != Some(&b'"')
            {
                return None;
            }
            c.at = end + 1;
            c.skip_ws();
            c.eat(b':')?;
        }
        c.skip_ws();
        let mut value = c.value(slot != SKIPPED)?;
        if let Some(kinds) = kinds
            && slot != SKIPPED
        {
            fitted &= kinds.get(i).is_some_and(|k| k.fit(&mut value));
        }
        if !laid_out {
            if slot != SKIPPED {
                values.push(value);
            }
        } else if let Some(column) = values.get_mut(slot as usize) {
            *column = value;
        }
    }
    c.skip_ws();
    c.eat(b'}')?;
    c.skip_ws();
    (c.at == c.bytes.len()).then_some((values, fitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path's values equal the serde path's wherever it does not decline.
    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        let keys: Vec<Arc<str>> = vec![Arc::from("n")];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "-0.0",
            "0.0",
            "1",
            "-1",
            "20.0",
            "39.9",
            "0.1",
            "0.3",
            "123456789012345",
            "999999999999999999",
            "-999999999999999999",
            "1.000000000000001",
            "0.000000000000001",
            "9007199254740993",
            "1e5",
            "01",
            "-",
            "1.",
            ".5",
            "--1",
            "1.5e3",
            "123456.789012345",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 16) as usize;
            let whole = (x >> 8) % 10u64.pow((x % 10) as u32 + 1);
            let frac = (x >> 20) % 10u64.pow(digits as u32);
            let sign = if x & (1 << 40) != 0 { "-" } else { "" };
            texts.push(if digits == 0 {
                format!("{sign}{whole}")
            } else {
                format!("{sign}{whole}.{frac:0digits$}")
            });
        }
        let mut read = 0;
        for n in &texts {
            let text = format!("{{\"n\":{n}}}");
            let serde = super::super::parse_value(text.as_bytes())
                .ok()
                .and_then(|v| v.field("n").cloned());
            match decode(text.as_bytes(), &tokens(&keys), &[0], None, 1, false) {
                Some((values, _)) => {
                    read += 1;
                    let ours = &values[0];
                    let theirs = serde
                        .as_ref()
                        .expect("serde_json accepts what the fast path reads");
                    assert_eq!(ours.type_name(), theirs.type_name(), "{n}");
                    match (ours, theirs) {
                        (Value::Float(a), Value::Float(b)) => {
                            assert_eq!(a.to_bits(), b.to_bits(), "{n}")
                        }
                        _ => assert_eq!(ours, theirs, "{n}"),
                    }
                }
                None => assert!(
                    serde.is_none() || n.contains('e') || n.trim_start_matches('-').len() > 15,
                    "declined {n}"
                ),
            }
        }
        assert!(read > 10_000, "{read}");
    }

    #[test]
    fn declines_what_it_does_not_read() {
        let keys: Vec<Arc<str>> = vec![Arc::from("a"), Arc::from("b")];
        let slots = [0, SKIPPED];
        let tokens = tokens(&keys);
        let ok = |t: &str| decode(t.as_bytes(), &tokens, &slots, None, 1, false).map(|(v, _)| v);
        assert_eq!(
            ok(" {\"a\" : \"x\" ,\n\"b\":[1]}"),
            None,
            "a nested value, even skipped"
        );
        assert_eq!(ok(r#"{"a":"x","b":"y"}"#), Some(vec![Value::from("x")]));
        assert_eq!(
            ok(" {\"a\" :\t\"x\" ,\r\n\"b\": true } "),
            Some(vec![Value::from("x")])
        );
        for declined in [
            r#"{"a":"x\"","b":1}"#,
            r#"{"a":"x","b":"\u0041"}"#,
            r#"{"b":1,"a":"x"}"#,
            r#"{"a":"x"}"#,
            r#"{"a":"x","b":1,"c":2}"#,
            r#"{"a":"x","b":1} x"#,
            r#"{"a":"x","b":1"#,
            r#"{"a":"x","b":tru}"#,
            r#"{"a":"x","b":1,}"#,
            r#"{"ab":"x","b":1}"#,
            r#"{"a":"x" "b":1}"#,
            "{\"a\":\"x\ty\",\"b\":1}",
            r#"{"a":"a long string, longer than eight bytes","b":1e3}"#,
        ] {
            assert_eq!(ok(declined), None, "{declined}");
        }
        assert_eq!(
            ok(r#"{"a":"a long string, longer than eight bytes é","b":null}"#),
            Some(vec![Value::from(
                "a long string, longer than eight bytes é"
            )])
        );
        assert!(!plain_key("a\"b") && !plain_key("a\\b") && plain_key("temperature"));
    }

    /// Each value goes to its key's slot; a skipped key's value is not built, and a slot no key
    /// fills is `NULL`.
    #[test]
    fn values_go_to_their_slots() {
        let keys: Vec<Arc<str>> = vec![Arc::from("a"), Arc::from("b"), Arc::from("c")];
        let text = br#"{"a":1,"b":"x","c":2.5}"#;
        let tokens = tokens(&keys);
        let slots = [2, SKIPPED, 0];
        assert_eq!(
            decode(text, &tokens, &slots, None, 4, true),
            Some((
                vec![Value::Float(2.5), Value::Null, Value::Int(1), Value::Null],
                false
            ))
        );
        // With kinds: a whole number read for a float column is a float, and the row fits
        // only when every kept value is of its column's kind (a skipped key's is not looked at).
        use ColumnKind::{Float, Int, Other};
        assert_eq!(
            decode(text, &tokens, &slots, Some(&[Float, Int, Float]), 4, true),
            Some((
                vec![
                    Value::Float(2.5),
                    Value::Null,
                    Value::Float(1.0),
                    Value::Null
                ],
                true
            ))
        );
        for kinds in [[Int, Other, Int], [Other, Other, Float]] {
            assert_eq!(
                decode(text, &tokens, &slots, Some(&kinds), 4, true),
                Some((
                    vec![Value::Float(2.5), Value::Null, Value::Int(1), Value::Null],
                    false
                )),
                "{kinds:?}"
            );
        }
    }

    /// Keys longer than eight bytes are compared word by word, then byte by byte.
    #[test]
    fn long_keys_match_exactly() {
        let keys: Vec<Arc<str>> = vec![Arc::from("temperature_celsius"), Arc::from("b")];
        let tokens = tokens(&keys);
        let ok = |t: &str| decode(t.as_bytes(), &tokens, &[0, 1], None, 2, false).map(|(v, _)| v);
        assert_eq!(
            ok(r#"{"temperature_celsius":1,"b":2}"#),
            Some(vec![Value::Int(1), Value::Int(2)])
        );
        for other in [
            "temperaturX_celsius",
            "temperature_celsiuX",
            "Temperature_celsius",
        ] {
            assert_eq!(ok(&format!(r#"{{"{other}":1,"b":2}}"#)), None, "{other}");
        }
    }

    /// Digits are read eight at a time: every length and position of a run reads right.
    #[test]
    fn runs_of_digits_read_at_every_length() {
        for len in 1..=18usize {
            for pad in 0..9 {
                let digits: String = (0..len).map(|i| char::from(b'1' + (i % 9) as u8)).collect();
                let text = format!("{digits},{}", "x".repeat(pad));
                let mut c = Cursor {
                    bytes: text.as_bytes(),
                    at: 0,
                };
                let mut n = 0;
                assert_eq!(c.digits(&mut n) as usize, len, "{text}");
                assert_eq!(n, digits.parse::<u64>().unwrap(), "{text}");
                assert_eq!(c.at, len);
            }
        }
        assert_eq!(digit_bytes(u64::from_le_bytes(*b"09/:\xb0\xb9a ")), 0x8080);
    }
}
